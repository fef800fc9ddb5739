/* Copy-outs: an output that is a view, a leaf, a const or a repeated value is gathered
 * into the caller's dense buffer after the kernels ran (passes/memplan.c decides which).
 * Dimensions are collapsed first (size-1 dims dropped, dims that are contiguous with
 * their inner neighbour merged), so a contiguous source is one stride-1 loop that the
 * vectorizer (or the memcpy idiom) takes, and an innermost stride of 1 stays the inner
 * loop. The copy moves storage bits: no conversion. */
#include <math.h>
#include "llvm_internal.h"

/* The constant as the evaluator stores it (ir/eval.c wrf: round to the dtype; integers
 * as x86 converts, INT_MIN for NaN and out of range). */
static LLVMValueRef const_value(cg_llvm *cg, ir_dtype t, double v)
{
    switch (t) {
    case DT_BOOL: return LLVMConstInt(cg->t_i8, v != 0, 0);
    case DT_I32: {
        int64_t x = isnan(v) || v >= 2147483648.0 || v <= -2147483649.0 ? INT32_MIN : (int32_t)v;
        return LLVMConstInt(cg->t_i32, (unsigned long long)x, 1);
    }
    case DT_I64: {
        int64_t x = isnan(v) || v >= 9223372036854775808.0 || v < -9223372036854775808.0 ? INT64_MIN : (int64_t)v;
        return LLVMConstInt(cg->t_i64, (unsigned long long)x, 1);
    }
    case DT_F16: return LLVMConstInt(cg->t_i16, f32_to_f16((float)v), 0);
    case DT_BF16: return LLVMConstInt(cg->t_i16, f32_to_bf16((float)v), 0);
    case DT_F32: return LLVMConstReal(cg->t_f32, (double)(float)v);
    default: return LLVMConstReal(cg->t_f64, v);
    }
}

typedef struct loop_nest {
    int rank;
    int64_t shape[IR_MAX_RANK];
    int64_t in_stride[IR_MAX_RANK];    /* source strides (elements) */
    int64_t out_stride[IR_MAX_RANK];   /* dense row-major */
} loop_nest;

/* Drops size-1 dims and merges d into d+1 where the source is contiguous across them. */
static void collapse(const ir_node *n, loop_nest *L)
{
    L->rank = 0;
    for (int d = 0; d < n->rank; d++) {
        if (n->shape[d] == 1)
            continue;
        int r = L->rank;
        if (r > 0 && L->in_stride[r - 1] == n->strides[d] * n->shape[d]) {
            L->shape[r - 1] *= n->shape[d];
            L->in_stride[r - 1] = n->strides[d];
            continue;
        }
        L->shape[r] = n->shape[d];
        L->in_stride[r] = n->strides[d];
        L->rank++;
    }
    int64_t s = 1;
    for (int d = L->rank - 1; d >= 0; d--) {
        L->out_stride[d] = s;
        s *= L->shape[d];
    }
}

typedef struct copy_ctx {
    cg_llvm *cg;
    LLVMValueRef fn, out, in, fill;   /* fill: the constant, or NULL to copy from in */
    LLVMTypeRef ty;
    unsigned align;
    const loop_nest *L;
} copy_ctx;

/* for (i = 0; i < shape[d]; i++) at in_off + i*in_stride[d], out_off + i*out_stride[d];
 * bottom-tested (every trip count is >= 1 here) */
static void emit_level(copy_ctx *c, int d, LLVMValueRef in_off, LLVMValueRef out_off)
{
    cg_llvm *cg = c->cg;
    LLVMBuilderRef b = cg->b;
    if (d == c->L->rank) {
        LLVMValueRef v = c->fill;
        if (!v) {
            LLVMValueRef p = LLVMBuildInBoundsGEP2(b, c->ty, c->in, &in_off, 1, "src");
            v = LLVMBuildLoad2(b, c->ty, p, "v");
            LLVMSetAlignment(v, c->align);
        }
        LLVMValueRef q = LLVMBuildInBoundsGEP2(b, c->ty, c->out, &out_off, 1, "dst");
        LLVMSetAlignment(LLVMBuildStore(b, v, q), c->align);
        return;
    }
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(b);
    LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(cg->ctx, c->fn, "loop");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(cg->ctx, c->fn, "done");
    LLVMBuildBr(b, head);
    LLVMPositionBuilderAtEnd(b, head);
    LLVMValueRef i = LLVMBuildPhi(b, cg->t_i64, "i");
    LLVMValueRef zero = LLVMConstInt(cg->t_i64, 0, 0);
    LLVMValueRef si = LLVMConstInt(cg->t_i64, (unsigned long long)c->L->in_stride[d], 1);
    LLVMValueRef so = LLVMConstInt(cg->t_i64, (unsigned long long)c->L->out_stride[d], 1);
    LLVMValueRef in2 = LLVMBuildNSWAdd(b, in_off, LLVMBuildNSWMul(b, i, si, ""), "");
    LLVMValueRef out2 = LLVMBuildNSWAdd(b, out_off, LLVMBuildNSWMul(b, i, so, ""), "");
    emit_level(c, d + 1, in2, out2);
    LLVMValueRef next = LLVMBuildNUWAdd(b, i, LLVMConstInt(cg->t_i64, 1, 0), "i.next");
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(b);
    LLVMValueRef more = LLVMBuildICmp(b, LLVMIntSLT, next, LLVMConstInt(cg->t_i64, (unsigned long long)c->L->shape[d], 1), "");
    LLVMBuildCondBr(b, more, head, done);
    LLVMValueRef iv[] = {zero, next};
    LLVMBasicBlockRef ib[] = {pre, latch};
    LLVMAddIncoming(i, iv, ib, 2);
    LLVMPositionBuilderAtEnd(b, done);
}

LLVMValueRef cg_emit_copy_out(cg_llvm *cg, const ir_func *f, int id, const char *name)
{
    if (id < 0 || id >= f->nnodes)
        return NULL;
    const ir_node *n = &f->nodes[id];
    const ir_node *src = &f->nodes[n->storage];
    LLVMTypeRef ty = cg_storage_type(cg, n->dtype);
    if (!ty)
        return NULL;
    LLVMTypeRef pt[] = {cg->t_ptr, cg->t_ptr, cg->t_ptr};
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, LLVMFunctionType(cg->t_void, pt, 3, 0));
    unsigned noalias = LLVMGetEnumAttributeKindForName("noalias", 7);
    for (unsigned k = 1; k <= 2; k++)
        LLVMAddAttributeAtIndex(fn, k, LLVMCreateEnumAttribute(cg->ctx, noalias, 0));
    LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"));

    copy_ctx c = {cg, fn, LLVMGetParam(fn, 0), LLVMGetParam(fn, 1), NULL, ty, (unsigned)ir_dtype_size(n->dtype), NULL};
    loop_nest L;
    if (ir_numel(n) > 0) {
        if (src->op == OP_constant) {
            /* every element is the constant: one dense loop */
            c.fill = const_value(cg, n->dtype, src->f[0]);
            L.rank = 1;
            L.shape[0] = ir_numel(n);
            L.in_stride[0] = 0;
            L.out_stride[0] = 1;
            if (L.shape[0] == 1)
                L.rank = 0;
        } else {
            collapse(n, &L);
        }
        c.L = &L;
        LLVMValueRef off = LLVMConstInt(cg->t_i64, (unsigned long long)n->offset, 1);
        emit_level(&c, 0, off, LLVMConstInt(cg->t_i64, 0, 0));
    }
    LLVMBuildRetVoid(cg->b);
    return fn;
}
