/* Kernels: one LLVM function per scheduled kernel, one loop nest each, reading every value
 * through its own (storage, offset, strides) as ir_eval does (llvm_internal.h has the
 * signature). Semantics are ir_eval's op by op; f32 is computed in f32 (f16/bf16 in f32),
 * float sums and means accumulate in f64 as the evaluator does.
 *
 * Families:
 *  - pointwise (every OPF_ELEM op and copy): the kernel's members form an elementwise DAG
 *    evaluated per element; dims of size 1 are dropped and dims every operand walks
 *    contiguously are merged; the innermost loop runs over explicit <W x T> vectors (W =
 *    vector_bits / 32) when every read has inner stride 0 or 1 and the write stride 1,
 *    then a scalar tail;
 *  - fills (full, arange, eye) through the same loops;
 *  - reductions, softmax/log_softmax, layer_norm and cross_entropy as "lines": kept dims
 *    outside, reduced dims inside; vectorized across the line (H: reduced dim contiguous,
 *    W partial accumulators combined by a shuffle tree) or across W neighbouring lines
 *    (V: kept dim contiguous; one-pass reductions take blocks of VB_COLS lines with their
 *    accumulators in a stack buffer), else scalar;
 *  - copies with checks (one_hot, index, gather) and concat;
 *  - scatters (index_add, gather_add, slice_scatter): scalar loops that zero the output,
 *    then add the source in (float sums in an f64 accumulator, as ir_eval).
 * Kernels with >= 256K elements of work that cannot fail split their outer loop into tasks
 * for tdsl_rt_parallel_for. Kernels that can fail return i32 (see cg_emit_kernel). */
#include "llvm_internal.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define R IR_MAX_RANK
#define MAX_IN 64
#define MAX_OPS 256                      /* operands of one loop nest (pointwise: 1 + reads) */
#define PAR_MIN ((int64_t)256 * 1024)    /* work (elements) below which a kernel is serial */
#define UNIT ((int64_t)32 * 1024)        /* work per parallel task */
#define VB_COLS 512                      /* lines per block of a blocked V-mode reduction */

typedef struct kctx {
    cg_llvm *cg;
    LLVMBuilderRef b;
    const ir_func *f;
    const pass_kernel *k;
    const ir_node *root;
    const char *name;
    int nin;
    int ins[MAX_IN];
    bool status;              /* the kernel returns i32 */
    bool aliased;             /* the output buffer is also an input: no noalias */
    int64_t scratch;          /* arena offset of the kernel's scratch (passes.h), or -1 */
    int W;                    /* vector lanes */
    LLVMValueRef fn;          /* function being emitted: the kernel or its .rng */
    LLVMValueRef out, inst;
    LLVMValueRef in[MAX_IN];
} kctx;

/* where a value is read from */
typedef struct src {
    bool imm;                 /* const-backed: the constant itself */
    double value;
    int slot;                 /* -1: the kernel's output storage, else in[slot] */
    ir_dtype dt;
} src;

static const ir_node *node(const kctx *kc, int id) { return &kc->f->nodes[id]; }
static const ir_node *input(const kctx *kc, const ir_node *n, int k) { return &kc->f->nodes[n->in[k]]; }
static bool isf(ir_dtype t) { return ir_dtype_is_float(t); }

static int64_t prod(int rank, const int64_t *shape)
{
    int64_t n = 1;
    for (int d = 0; d < rank; d++)
        n *= shape[d];
    return n;
}

/* ---- constants and types ---- */
static LLVMValueRef I64(kctx *kc, int64_t v) { return LLVMConstInt(kc->cg->t_i64, (unsigned long long)v, 1); }
static LLVMValueRef I32(kctx *kc, int64_t v) { return LLVMConstInt(kc->cg->t_i32, (unsigned long long)v, 1); }

static LLVMTypeRef vty(LLVMTypeRef t, int lanes) { return lanes > 1 ? LLVMVectorType(t, (unsigned)lanes) : t; }

static LLVMValueRef splat(kctx *kc, LLVMValueRef v, int lanes)
{
    if (lanes <= 1)
        return v;
    if (LLVMIsConstant(v)) {
        LLVMValueRef e[64];
        for (int i = 0; i < lanes; i++)
            e[i] = v;
        return LLVMConstVector(e, (unsigned)lanes);
    }
    LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(v), (unsigned)lanes);
    LLVMValueRef one = LLVMBuildInsertElement(kc->b, LLVMGetPoison(vt), v, I32(kc, 0), "");
    return LLVMBuildShuffleVector(kc->b, one, LLVMGetPoison(vt), LLVMConstNull(LLVMVectorType(kc->cg->t_i32, (unsigned)lanes)), "");
}

static LLVMValueRef KI(kctx *kc, LLVMTypeRef t, int64_t v, int lanes) { return splat(kc, LLVMConstInt(t, (unsigned long long)v, 1), lanes); }
static LLVMValueRef KF(kctx *kc, LLVMTypeRef t, double v, int lanes) { return splat(kc, LLVMConstReal(t, v), lanes); }

static LLVMValueRef iota(kctx *kc, int lanes)
{
    LLVMValueRef e[64];
    for (int i = 0; i < lanes; i++)
        e[i] = I64(kc, i);
    return LLVMConstVector(e, (unsigned)lanes);
}

/* col, col+1, ... as an i64 vector (or col itself) */
static LLVMValueRef lane_index(kctx *kc, LLVMValueRef col, int lanes)
{
    return lanes > 1 ? LLVMBuildAdd(kc->b, splat(kc, col, lanes), iota(kc, lanes), "") : col;
}

static LLVMValueRef any_lane(kctx *kc, LLVMValueRef c, int lanes)
{
    if (lanes <= 1)
        return c;
    LLVMTypeRef it = LLVMIntTypeInContext(kc->cg->ctx, (unsigned)lanes);
    return LLVMBuildICmp(kc->b, LLVMIntNE, LLVMBuildBitCast(kc->b, c, it, ""), LLVMConstNull(it), "");
}

static LLVMValueRef smin64(kctx *kc, LLVMValueRef a, LLVMValueRef b)
{
    return LLVMBuildSelect(kc->b, LLVMBuildICmp(kc->b, LLVMIntSLT, a, b, ""), a, b, "");
}

static LLVMValueRef intrinsic(kctx *kc, const char *name, LLVMTypeRef over, LLVMValueRef *args, unsigned n)
{
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(kc->cg->mod, id, &over, 1);
    return LLVMBuildCall2(kc->b, LLVMIntrinsicGetType(kc->cg->ctx, id, &over, 1), fn, args, n, "");
}

/* float-to-int conversion as ir_eval (and x86) does it: truncation, NaN and out-of-range
 * give the most negative value */
static int64_t float_to_int(ir_dtype t, double v)
{
    if (t == DT_BOOL)
        return v != 0;
    if (t == DT_I32)
        return isnan(v) || v >= 2147483648.0 || v <= -2147483649.0 ? INT32_MIN : (int32_t)v;
    return isnan(v) || v >= 9223372036854775808.0 || v < -9223372036854775808.0 ? INT64_MIN : (int64_t)v;
}

/* The value v stored in dtype t (rounded as ir_eval's wrf does), in t's compute type. */
static LLVMValueRef value_const(kctx *kc, ir_dtype t, double v, int lanes)
{
    LLVMTypeRef ct = cg_compute_type(kc->cg, t);
    switch (t) {
    case DT_F16: return KF(kc, ct, f16_to_f32(f32_to_f16((float)v)), lanes);
    case DT_BF16: return KF(kc, ct, bf16_to_f32(f32_to_bf16((float)v)), lanes);
    case DT_F32: return KF(kc, ct, (float)v, lanes);
    case DT_F64: return KF(kc, ct, v, lanes);
    default: return KI(kc, ct, float_to_int(t, v), lanes);
    }
}

/* An attribute constant (slope, bounds) in the compute type of float dtype t. */
static LLVMValueRef compute_const(kctx *kc, ir_dtype t, double v, int lanes)
{
    LLVMTypeRef ct = cg_compute_type(kc->cg, t);
    return KF(kc, ct, t == DT_F64 ? v : (float)v, lanes);
}

static LLVMBasicBlockRef block(kctx *kc, const char *name)
{
    return LLVMAppendBasicBlockInContext(kc->cg->ctx, kc->fn, name);
}

/* an alloca in the entry block, so mem2reg/SROA promote it */
static LLVMValueRef entry_alloca(kctx *kc, LLVMTypeRef t)
{
    LLVMBuilderRef eb = LLVMCreateBuilderInContext(kc->cg->ctx);
    LLVMBasicBlockRef entry = LLVMGetEntryBasicBlock(kc->fn);
    LLVMValueRef first = LLVMGetFirstInstruction(entry);
    if (first)
        LLVMPositionBuilderBefore(eb, first);
    else
        LLVMPositionBuilderAtEnd(eb, entry);
    LLVMValueRef a = LLVMBuildAlloca(eb, t, "");
    LLVMDisposeBuilder(eb);
    return a;
}

/* ---- loops: for (iv = lo; iv + step <= hi; iv += step) ---- */
typedef struct loop {
    LLVMBasicBlockRef head, exit;
    LLVMValueRef iv;
    int64_t step;
} loop;

static LLVMValueRef loop_begin(kctx *kc, loop *L, LLVMValueRef lo, LLVMValueRef hi, int64_t step)
{
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(kc->b);
    L->head = block(kc, "loop");
    LLVMBasicBlockRef body = block(kc, "body");
    L->exit = block(kc, "exit");
    L->step = step;
    LLVMBuildBr(kc->b, L->head);
    LLVMPositionBuilderAtEnd(kc->b, L->head);
    L->iv = LLVMBuildPhi(kc->b, kc->cg->t_i64, "i");
    LLVMAddIncoming(L->iv, &lo, &pre, 1);
    LLVMValueRef c = step == 1 ? LLVMBuildICmp(kc->b, LLVMIntSLT, L->iv, hi, "")
                               : LLVMBuildICmp(kc->b, LLVMIntSLE, LLVMBuildNSWAdd(kc->b, L->iv, I64(kc, step), ""), hi, "");
    LLVMBuildCondBr(kc->b, c, body, L->exit);
    LLVMPositionBuilderAtEnd(kc->b, body);
    return L->iv;
}

static void loop_end(kctx *kc, loop *L)
{
    LLVMValueRef next = LLVMBuildNSWAdd(kc->b, L->iv, I64(kc, L->step), "");
    LLVMBasicBlockRef from = LLVMGetInsertBlock(kc->b);
    LLVMBuildBr(kc->b, L->head);
    LLVMAddIncoming(L->iv, &next, &from, 1);
    LLVMPositionBuilderAtEnd(kc->b, L->exit);
}

/* Strip-mined columns [lo, hi): W lanes at a time (when vec), then a scalar tail. The
 * body is written once, for S.lanes columns from S.c:
 *   for (strip S = {.lo = lo, .hi = hi, .vec = true}; strip_next(kc, &S);) ... */
typedef struct strip {
    LLVMValueRef lo, hi;
    bool vec;
    int lanes;                /* of the open loop: W (>= 4), then 1; 0 before the first */
    LLVMValueRef c;
    loop L;
} strip;

/* closes the open loop and opens the next; false after the tail */
static bool strip_next(kctx *kc, strip *S)
{
    if (S->lanes) {
        loop_end(kc, &S->L);
        if (S->lanes == 1)
            return false;
        S->lo = S->L.iv;
    }
    S->lanes = S->lanes == 0 && S->vec ? kc->W : 1;
    S->c = loop_begin(kc, &S->L, S->lo, S->hi, S->lanes);
    return true;
}

/* Loops over shape[0..rank) (outermost first); off[j] = base[j] + sum_d i_d * st[j][d]. */
typedef struct nest {
    int rank;
    loop L[R];
} nest;

static void nest_open(kctx *kc, nest *N, int rank, const int64_t *shape, int nops, int64_t (*st)[R],
                      const LLVMValueRef *base, LLVMValueRef *off)
{
    N->rank = rank;
    for (int j = 0; j < nops; j++)
        off[j] = base[j];
    for (int d = 0; d < rank; d++) {
        LLVMValueRef iv = loop_begin(kc, &N->L[d], I64(kc, 0), I64(kc, shape[d]), 1);
        for (int j = 0; j < nops; j++)
            if (st[j][d])
                off[j] = LLVMBuildNSWAdd(kc->b, off[j], LLVMBuildNSWMul(kc->b, iv, I64(kc, st[j][d]), ""), "");
    }
}

static void nest_close(kctx *kc, nest *N)
{
    for (int d = N->rank - 1; d >= 0; d--)
        loop_end(kc, &N->L[d]);
}

/* off[j] += offsets of the row-major flat index r over shape[0..rank) */
static void flat_offsets(kctx *kc, LLVMValueRef r, int rank, const int64_t *shape, int nops, int64_t (*st)[R],
                         LLVMValueRef *off)
{
    for (int d = rank - 1; d >= 0; d--) {
        if (shape[d] == 1)
            continue;
        LLVMValueRef idx = r;
        if (d > 0) {
            idx = LLVMBuildURem(kc->b, r, I64(kc, shape[d]), "");
            r = LLVMBuildUDiv(kc->b, r, I64(kc, shape[d]), "");
        }
        for (int j = 0; j < nops; j++)
            if (st[j][d])
                off[j] = LLVMBuildNSWAdd(kc->b, off[j], LLVMBuildNSWMul(kc->b, idx, I64(kc, st[j][d]), ""), "");
    }
}

/* Drops dims of size 1 and merges neighbours that every operand walks contiguously. */
static void collapse(int *rank, int64_t *shape, int nops, int64_t (*st)[R])
{
    int r = 0;
    for (int d = 0; d < *rank; d++) {
        if (shape[d] == 1)
            continue;
        shape[r] = shape[d];
        for (int j = 0; j < nops; j++)
            st[j][r] = st[j][d];
        r++;
    }
    int w = 0;
    for (int d = 0; d < r; d++) {
        bool merge = w > 0;
        for (int j = 0; merge && j < nops; j++)
            merge = st[j][w - 1] == st[j][d] * shape[d];
        if (merge) {
            shape[w - 1] *= shape[d];
            for (int j = 0; j < nops; j++)
                st[j][w - 1] = st[j][d];
        } else {
            shape[w] = shape[d];
            for (int j = 0; j < nops; j++)
                st[j][w] = st[j][d];
            w++;
        }
    }
    *rank = w;
}

/* ---- element access: storage types <-> compute types ---- */
/* IEEE half bits -> float (as common/tensor.c: exact, denormals included) */
static LLVMValueRef f16_to_f32_ir(kctx *kc, LLVMValueRef h, int lanes)
{
    LLVMBuilderRef b = kc->b;
    LLVMTypeRef i32 = vty(kc->cg->t_i32, lanes), f32 = vty(kc->cg->t_f32, lanes);
    LLVMValueRef u = LLVMBuildZExt(b, h, i32, "");
    LLVMValueRef sign = LLVMBuildShl(b, LLVMBuildAnd(b, u, KI(kc, kc->cg->t_i32, 0x8000, lanes), ""), KI(kc, kc->cg->t_i32, 16, lanes), "");
    LLVMValueRef e = LLVMBuildAnd(b, LLVMBuildLShr(b, u, KI(kc, kc->cg->t_i32, 10, lanes), ""), KI(kc, kc->cg->t_i32, 0x1f, lanes), "");
    LLVMValueRef man = LLVMBuildAnd(b, u, KI(kc, kc->cg->t_i32, 0x3ff, lanes), "");
    LLVMValueRef mant = LLVMBuildShl(b, man, KI(kc, kc->cg->t_i32, 13, lanes), "");
    LLVMValueRef normal = LLVMBuildOr(b, sign, LLVMBuildOr(b, LLVMBuildShl(b, LLVMBuildAdd(b, e, KI(kc, kc->cg->t_i32, 112, lanes), ""), KI(kc, kc->cg->t_i32, 23, lanes), ""), mant, ""), "");
    LLVMValueRef infnan = LLVMBuildOr(b, sign, LLVMBuildOr(b, KI(kc, kc->cg->t_i32, 0x7f800000, lanes), mant, ""), "");
    LLVMValueRef sub = LLVMBuildFMul(b, LLVMBuildSIToFP(b, man, f32, ""), KF(kc, kc->cg->t_f32, 0x1p-24, lanes), "");
    LLVMValueRef subb = LLVMBuildOr(b, LLVMBuildBitCast(b, sub, i32, ""), sign, "");
    LLVMValueRef r = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntEQ, e, KI(kc, kc->cg->t_i32, 0x1f, lanes), ""), infnan, normal, "");
    r = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntEQ, e, KI(kc, kc->cg->t_i32, 0, lanes), ""), subb, r, "");
    return LLVMBuildBitCast(b, r, f32, "");
}

/* float -> IEEE half bits, round to nearest even (as common/tensor.c) */
static LLVMValueRef f32_to_f16_ir(kctx *kc, LLVMValueRef x, int lanes)
{
    LLVMBuilderRef b = kc->b;
    LLVMTypeRef t32 = kc->cg->t_i32;
    LLVMTypeRef i32 = vty(t32, lanes), f32 = vty(kc->cg->t_f32, lanes);
    LLVMValueRef u = LLVMBuildBitCast(b, x, i32, "");
    LLVMValueRef sign = LLVMBuildAnd(b, LLVMBuildLShr(b, u, KI(kc, t32, 16, lanes), ""), KI(kc, t32, 0x8000, lanes), "");
    LLVMValueRef a = LLVMBuildAnd(b, u, KI(kc, t32, 0x7fffffff, lanes), "");
    /* normal: round the mantissa to 10 bits, ties to even */
    LLVMValueRef odd = LLVMBuildAnd(b, LLVMBuildLShr(b, a, KI(kc, t32, 13, lanes), ""), KI(kc, t32, 1, lanes), "");
    LLVMValueRef rnd = LLVMBuildAdd(b, LLVMBuildAdd(b, a, KI(kc, t32, 0xfff, lanes), ""), odd, "");
    LLVMValueRef normal = LLVMBuildLShr(b, LLVMBuildSub(b, rnd, KI(kc, t32, 0x38000000, lanes), ""), KI(kc, t32, 13, lanes), "");
    /* below 2^-14: a / 2^-24 rounded to nearest even (exact: q < 2^10, magic-number rounding) */
    LLVMValueRef q = LLVMBuildFMul(b, LLVMBuildBitCast(b, a, f32, ""), KF(kc, kc->cg->t_f32, 16777216.0, lanes), "");
    q = LLVMBuildFSub(b, LLVMBuildFAdd(b, q, KF(kc, kc->cg->t_f32, 8388608.0, lanes), ""), KF(kc, kc->cg->t_f32, 8388608.0, lanes), "");
    LLVMValueRef small = LLVMBuildFPToSI(b, q, i32, "");
    LLVMValueRef r = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntULT, a, KI(kc, t32, 0x38800000, lanes), ""), small, normal, "");
    r = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntUGE, a, KI(kc, t32, 0x477ff000, lanes), ""), KI(kc, t32, 0x7c00, lanes), r, "");
    r = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntUGT, a, KI(kc, t32, 0x7f800000, lanes), ""), KI(kc, t32, 0x7e00, lanes), r, "");
    return LLVMBuildTrunc(b, LLVMBuildOr(b, r, sign, ""), vty(kc->cg->t_i16, lanes), "");
}

static LLVMValueRef bf16_to_f32_ir(kctx *kc, LLVMValueRef h, int lanes)
{
    LLVMValueRef u = LLVMBuildZExt(kc->b, h, vty(kc->cg->t_i32, lanes), "");
    u = LLVMBuildShl(kc->b, u, KI(kc, kc->cg->t_i32, 16, lanes), "");
    return LLVMBuildBitCast(kc->b, u, vty(kc->cg->t_f32, lanes), "");
}

static LLVMValueRef f32_to_bf16_ir(kctx *kc, LLVMValueRef x, int lanes)
{
    LLVMBuilderRef b = kc->b;
    LLVMTypeRef t32 = kc->cg->t_i32;
    LLVMValueRef u = LLVMBuildBitCast(b, x, vty(t32, lanes), "");
    LLVMValueRef hi = LLVMBuildLShr(b, u, KI(kc, t32, 16, lanes), "");
    LLVMValueRef nan = LLVMBuildICmp(b, LLVMIntUGT, LLVMBuildAnd(b, u, KI(kc, t32, 0x7fffffff, lanes), ""), KI(kc, t32, 0x7f800000, lanes), "");
    LLVMValueRef qnan = LLVMBuildOr(b, hi, KI(kc, t32, 0x40, lanes), "");
    LLVMValueRef odd = LLVMBuildAnd(b, hi, KI(kc, t32, 1, lanes), "");
    LLVMValueRef r = LLVMBuildLShr(b, LLVMBuildAdd(b, LLVMBuildAdd(b, u, KI(kc, t32, 0x7fff, lanes), ""), odd, ""), KI(kc, t32, 16, lanes), "");
    return LLVMBuildTrunc(b, LLVMBuildSelect(b, nan, qnan, r, ""), vty(kc->cg->t_i16, lanes), "");
}

static LLVMValueRef to_compute(kctx *kc, ir_dtype t, LLVMValueRef v, int lanes)
{
    switch (t) {
    case DT_BOOL: return LLVMBuildICmp(kc->b, LLVMIntNE, v, LLVMConstNull(LLVMTypeOf(v)), "");
    case DT_F16: return f16_to_f32_ir(kc, v, lanes);
    case DT_BF16: return bf16_to_f32_ir(kc, v, lanes);
    default: return v;
    }
}

static LLVMValueRef to_storage(kctx *kc, ir_dtype t, LLVMValueRef v, int lanes)
{
    switch (t) {
    case DT_BOOL: return LLVMBuildZExt(kc->b, v, vty(kc->cg->t_i8, lanes), "");
    case DT_F16: return f32_to_f16_ir(kc, v, lanes);
    case DT_BF16: return f32_to_bf16_ir(kc, v, lanes);
    default: return v;
    }
}

static LLVMValueRef elem_ptr(kctx *kc, LLVMValueRef base, ir_dtype t, LLVMValueRef off)
{
    return LLVMBuildInBoundsGEP2(kc->b, cg_storage_type(kc->cg, t), base, &off, 1, "");
}

/* lanes elements at off, off + stride, ... (stride 1: one vector load; 0: one load, splat) */
static LLVMValueRef load_elems(kctx *kc, LLVMValueRef base, ir_dtype t, LLVMValueRef off, int lanes, int64_t stride)
{
    LLVMTypeRef st = cg_storage_type(kc->cg, t);
    unsigned align = (unsigned)ir_dtype_size(t);
    LLVMValueRef v;
    if (lanes <= 1 || stride == 0) {
        v = LLVMBuildLoad2(kc->b, st, elem_ptr(kc, base, t, off), "");
        LLVMSetAlignment(v, align);
        v = splat(kc, v, lanes);
    } else if (stride == 1) {
        v = LLVMBuildLoad2(kc->b, LLVMVectorType(st, (unsigned)lanes), elem_ptr(kc, base, t, off), "");
        LLVMSetAlignment(v, align);
    } else {
        v = LLVMGetPoison(LLVMVectorType(st, (unsigned)lanes));
        for (int i = 0; i < lanes; i++) {
            LLVMValueRef o = LLVMBuildNSWAdd(kc->b, off, I64(kc, stride * i), "");
            LLVMValueRef e = LLVMBuildLoad2(kc->b, st, elem_ptr(kc, base, t, o), "");
            LLVMSetAlignment(e, align);
            v = LLVMBuildInsertElement(kc->b, v, e, I32(kc, i), "");
        }
    }
    return to_compute(kc, t, v, lanes);
}

static void store_elems(kctx *kc, LLVMValueRef base, ir_dtype t, LLVMValueRef off, int lanes, int64_t stride,
                        LLVMValueRef v)
{
    unsigned align = (unsigned)ir_dtype_size(t);
    v = to_storage(kc, t, v, lanes);
    if (lanes <= 1 || stride == 1) {
        LLVMValueRef s = LLVMBuildStore(kc->b, v, elem_ptr(kc, base, t, off));
        LLVMSetAlignment(s, align);
        return;
    }
    for (int i = 0; i < lanes; i++) {
        LLVMValueRef o = LLVMBuildNSWAdd(kc->b, off, I64(kc, stride * i), "");
        LLVMValueRef s = LLVMBuildStore(kc->b, LLVMBuildExtractElement(kc->b, v, I32(kc, i), ""), elem_ptr(kc, base, t, o));
        LLVMSetAlignment(s, align);
    }
}

static bool src_of(const kctx *kc, int id, src *s)
{
    const ir_node *x = node(kc, id);
    const ir_node *st = node(kc, x->storage);
    s->dt = x->dtype;
    s->imm = st->op == OP_constant;
    s->value = s->imm ? st->f[0] : 0;
    s->slot = -1;
    if (s->imm || x->storage == kc->root->storage)
        return true;
    for (int j = 0; j < kc->nin; j++)
        if (kc->ins[j] == x->storage) {
            s->slot = j;
            return true;
        }
    return false;
}

static LLVMValueRef src_ptr(const kctx *kc, const src *s) { return s->slot < 0 ? kc->out : kc->in[s->slot]; }

static LLVMValueRef read_src(kctx *kc, const src *s, LLVMValueRef off, int lanes, int64_t stride)
{
    if (s->imm)
        return value_const(kc, s->dt, s->value, lanes);
    return load_elems(kc, src_ptr(kc, s), s->dt, off, lanes, stride);
}

/* ---- run-time errors: tdsl_rt_fail(inst, TDSL_ERR_RUNTIME, ...) and return it ---- */
static LLVMValueRef cstring(kctx *kc, const char *s)
{
    LLVMValueRef init = LLVMConstStringInContext(kc->cg->ctx, s, (unsigned)strlen(s), 0);
    LLVMValueRef g = LLVMAddGlobal(kc->cg->mod, LLVMTypeOf(init), ".kmsg");
    LLVMSetInitializer(g, init);
    LLVMSetGlobalConstant(g, 1);
    LLVMSetLinkage(g, LLVMPrivateLinkage);
    LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
    LLVMSetAlignment(g, 1);
    return g;
}

/* if (cond) return tdsl_rt_fail(inst, TDSL_ERR_RUNTIME, "LINE:COL: what (in FN, node %ID OP)", args...) */
static void fail_if(kctx *kc, const ir_node *n, LLVMValueRef cond, const char *what, LLVMValueRef *args, int nargs)
{
    char fmt[512], at[48] = "";
    if (n->line > 0)
        snprintf(at, sizeof at, "%d:%d: ", n->line, n->col);
    snprintf(fmt, sizeof fmt, "%s%s (in %s, node %%%%%d %s)", at, what, kc->f->name ? kc->f->name : "?",
             (int)(n - kc->f->nodes), ir_ops[n->op].name);
    LLVMBasicBlockRef bad = block(kc, "fail"), ok = block(kc, "ok");
    LLVMBuildCondBr(kc->b, cond, bad, ok);
    LLVMPositionBuilderAtEnd(kc->b, bad);
    LLVMTypeRef fty;
    LLVMValueRef fn = cg_runtime_fn(kc->cg, "tdsl_rt_fail", &fty);
    LLVMValueRef a[8] = {kc->inst, I32(kc, TDSL_ERR_RUNTIME), cstring(kc, fmt)};
    for (int i = 0; i < nargs && i < 5; i++)
        a[3 + i] = args[i];
    LLVMBuildRet(kc->b, LLVMBuildCall2(kc->b, fty, fn, a, (unsigned)(3 + (nargs < 5 ? nargs : 5)), ""));
    LLVMPositionBuilderAtEnd(kc->b, ok);
}

/* ---- conversions between dtypes (compute types), as ir_eval's cast ---- */
static LLVMValueRef cvt(kctx *kc, LLVMValueRef v, ir_dtype from, ir_dtype to, int lanes)
{
    LLVMBuilderRef b = kc->b;
    LLVMTypeRef tt = vty(cg_compute_type(kc->cg, to), lanes);
    LLVMTypeRef ft = cg_compute_type(kc->cg, from);
    if (from == to)
        return v;
    if (to == DT_BOOL)
        return isf(from) ? LLVMBuildFCmp(b, LLVMRealUNE, v, LLVMConstNull(LLVMTypeOf(v)), "")
                         : LLVMBuildICmp(b, LLVMIntNE, v, LLVMConstNull(LLVMTypeOf(v)), "");
    if (from == DT_BOOL)
        return isf(to) ? LLVMBuildUIToFP(b, v, tt, "") : LLVMBuildZExt(b, v, tt, "");
    if (!isf(from) && !isf(to))
        return from == DT_I32 ? LLVMBuildSExt(b, v, tt, "") : LLVMBuildTrunc(b, v, tt, "");
    if (!isf(from)) {   /* i64 -> f32 goes through f64 like the evaluator's (double) */
        if (from == DT_I64 && LLVMGetTypeKind(cg_compute_type(kc->cg, to)) == LLVMFloatTypeKind)
            return LLVMBuildFPTrunc(b, LLVMBuildSIToFP(b, v, vty(kc->cg->t_f64, lanes), ""), tt, "");
        return LLVMBuildSIToFP(b, v, tt, "");
    }
    if (isf(to)) {
        LLVMTypeRef ct = cg_compute_type(kc->cg, to);
        if (ct == ft)
            return v;
        return ct == kc->cg->t_f64 ? LLVMBuildFPExt(b, v, tt, "") : LLVMBuildFPTrunc(b, v, tt, "");
    }
    /* float -> int: truncation; NaN and out of range give INT_MIN (checked in f64) */
    LLVMTypeRef d = vty(kc->cg->t_f64, lanes);
    LLVMValueRef vd = ft == kc->cg->t_f64 ? v : LLVMBuildFPExt(b, v, d, "");
    LLVMValueRef lo, hi;
    if (to == DT_I32) {
        lo = LLVMBuildFCmp(b, LLVMRealOGT, vd, KF(kc, kc->cg->t_f64, -2147483649.0, lanes), "");
        hi = LLVMBuildFCmp(b, LLVMRealOLT, vd, KF(kc, kc->cg->t_f64, 2147483648.0, lanes), "");
    } else {
        lo = LLVMBuildFCmp(b, LLVMRealOGE, vd, KF(kc, kc->cg->t_f64, -9223372036854775808.0, lanes), "");
        hi = LLVMBuildFCmp(b, LLVMRealOLT, vd, KF(kc, kc->cg->t_f64, 9223372036854775808.0, lanes), "");
    }
    LLVMValueRef ok = LLVMBuildAnd(b, lo, hi, "");
    LLVMValueRef safe = LLVMBuildSelect(b, ok, vd, LLVMConstNull(d), "");
    LLVMValueRef r = LLVMBuildFPToSI(b, safe, tt, "");
    LLVMTypeRef it = cg_compute_type(kc->cg, to);
    return LLVMBuildSelect(b, ok, r, KI(kc, it, to == DT_I32 ? INT32_MIN : INT64_MIN, lanes), "");
}

/* to f64 (sums, layer_norm) from a float or integer compute value */
static LLVMValueRef to_f64(kctx *kc, LLVMValueRef v, ir_dtype from, int lanes)
{
    return cvt(kc, v, from, DT_F64, lanes);
}

/* ---- elementwise ops ---- */
static LLVMValueRef fsel(kctx *kc, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b, LLVMValueRef t, LLVMValueRef f)
{
    return LLVMBuildSelect(kc->b, LLVMBuildFCmp(kc->b, p, a, b, ""), t, f, "");
}

static LLVMValueRef isel(kctx *kc, LLVMIntPredicate p, LLVMValueRef a, LLVMValueRef b, LLVMValueRef t, LLVMValueRef f)
{
    return LLVMBuildSelect(kc->b, LLVMBuildICmp(kc->b, p, a, b, ""), t, f, "");
}

/* C integer power as ir_eval's ipow: squaring loop until every lane's exponent is 0 */
static LLVMValueRef ipow(kctx *kc, LLVMValueRef a, LLVMValueRef e, int lanes)
{
    LLVMBuilderRef b = kc->b;
    LLVMTypeRef t = LLVMTypeOf(a);
    LLVMTypeRef et = lanes > 1 ? LLVMGetElementType(t) : t;
    LLVMValueRef zero = KI(kc, et, 0, lanes), one = KI(kc, et, 1, lanes), mone = KI(kc, et, -1, lanes);
    LLVMValueRef neg = LLVMBuildICmp(b, LLVMIntSLT, e, zero, "");
    LLVMValueRef e0 = LLVMBuildSelect(b, neg, zero, e, "");
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(b), head = block(kc, "pow"), body = block(kc, "pow.step"),
                      done = block(kc, "pow.done");
    LLVMBuildBr(b, head);
    LLVMPositionBuilderAtEnd(b, head);
    LLVMValueRef r = LLVMBuildPhi(b, t, ""), base = LLVMBuildPhi(b, t, ""), ex = LLVMBuildPhi(b, t, "");
    LLVMBuildCondBr(b, any_lane(kc, LLVMBuildICmp(b, LLVMIntNE, ex, zero, ""), lanes), body, done);
    LLVMPositionBuilderAtEnd(b, body);
    LLVMValueRef bit = LLVMBuildICmp(b, LLVMIntNE, LLVMBuildAnd(b, ex, one, ""), zero, "");
    LLVMValueRef r2 = LLVMBuildSelect(b, bit, LLVMBuildMul(b, r, base, ""), r, "");
    LLVMValueRef base2 = LLVMBuildMul(b, base, base, "");
    LLVMValueRef ex2 = LLVMBuildLShr(b, ex, one, "");
    LLVMBuildBr(b, head);
    LLVMAddIncoming(r, (LLVMValueRef[]){one, r2}, (LLVMBasicBlockRef[]){pre, body}, 2);
    LLVMAddIncoming(base, (LLVMValueRef[]){a, base2}, (LLVMBasicBlockRef[]){pre, body}, 2);
    LLVMAddIncoming(ex, (LLVMValueRef[]){e0, ex2}, (LLVMBasicBlockRef[]){pre, body}, 2);
    LLVMPositionBuilderAtEnd(b, done);
    /* negative powers: only 1 and -1 survive */
    LLVMValueRef odd = LLVMBuildICmp(b, LLVMIntNE, LLVMBuildAnd(b, e, one, ""), zero, "");
    LLVMValueRef negr = isel(kc, LLVMIntEQ, a, one, one,
                             isel(kc, LLVMIntEQ, a, mone, LLVMBuildSelect(b, odd, mone, one, ""), zero));
    return LLVMBuildSelect(b, neg, negr, r, "");
}

/* input k of n is the constant v (a const-backed value) */
static bool input_is_const(const kctx *kc, const ir_node *n, int k, double v)
{
    const ir_node *s = node(kc, input(kc, n, k)->storage);
    return s->op == OP_constant && s->f[0] == v;
}

static const double SQRT1_2 = 0.70710678118654752440;
static const double SQRT_2_OVER_PI = 0.79788456080286535588;

/* n's value from its inputs' values (compute types), as ir_eval's unary_f/unary_i/
 * binary_f/binary_i/compare/where/cast. */
static LLVMValueRef elem_op(kctx *kc, const ir_node *n, LLVMValueRef *a, int lanes)
{
    LLVMBuilderRef b = kc->b;
    cg_llvm *cg = kc->cg;
    ir_dtype dt = n->dtype, xt = input(kc, n, 0)->dtype;
    bool fl = isf(dt);
    LLVMTypeRef et = cg_compute_type(cg, dt);
    LLVMValueRef x = a[0];
#define FK(v) compute_const(kc, dt, (v), lanes)
#define IK(v) KI(kc, et, (v), lanes)
    switch (n->op) {
    case OP_cast: return cvt(kc, x, xt, dt, lanes);
    case OP_copy: return x;
    case OP_neg: return fl ? LLVMBuildFNeg(b, x, "") : LLVMBuildSub(b, IK(0), x, "");
    case OP_abs:
        if (fl)
            return intrinsic(kc, "llvm.fabs", LLVMTypeOf(x), &x, 1);
        return isel(kc, LLVMIntSLT, x, IK(0), LLVMBuildSub(b, IK(0), x, ""), x);
    case OP_sign:
        if (fl)   /* NaN -> 0 */
            return fsel(kc, LLVMRealOGT, x, FK(0), FK(1), fsel(kc, LLVMRealOLT, x, FK(0), FK(-1), FK(0)));
        return isel(kc, LLVMIntSGT, x, IK(0), IK(1), isel(kc, LLVMIntSLT, x, IK(0), IK(-1), IK(0)));
    case OP_exp: return cg_exp(cg, x);
    case OP_log: return cg_log(cg, x);
    case OP_log1p: return cg_log1p(cg, x);
    case OP_sqrt: return intrinsic(kc, "llvm.sqrt", LLVMTypeOf(x), &x, 1);
    case OP_rsqrt: return LLVMBuildFDiv(b, FK(1), intrinsic(kc, "llvm.sqrt", LLVMTypeOf(x), &x, 1), "");
    case OP_sin: return cg_sin(cg, x);
    case OP_cos: return cg_cos(cg, x);
    case OP_tanh: return cg_tanh(cg, x);
    case OP_sigmoid:
        return LLVMBuildFDiv(b, FK(1), LLVMBuildFAdd(b, FK(1), cg_exp(cg, LLVMBuildFNeg(b, x, "")), ""), "");
    case OP_relu:
        if (fl)   /* NaN passes */
            return fsel(kc, LLVMRealUGT, x, FK(0), x, FK(0));
        return isel(kc, LLVMIntSGT, x, IK(0), x, IK(0));
    case OP_gelu: {
        LLVMValueRef t;
        if (n->i[0]) {   /* tanh approximation */
            LLVMValueRef x3 = LLVMBuildFMul(b, LLVMBuildFMul(b, x, x, ""), x, "");
            LLVMValueRef in = LLVMBuildFMul(b, FK(SQRT_2_OVER_PI), LLVMBuildFAdd(b, x, LLVMBuildFMul(b, FK(0.044715), x3, ""), ""), "");
            t = cg_tanh(cg, in);
        } else {
            t = cg_erf(cg, LLVMBuildFMul(b, x, FK(SQRT1_2), ""));
        }
        return LLVMBuildFMul(b, LLVMBuildFMul(b, FK(0.5), x, ""), LLVMBuildFAdd(b, FK(1), t, ""), "");
    }
    case OP_silu:
        return LLVMBuildFDiv(b, x, LLVMBuildFAdd(b, FK(1), cg_exp(cg, LLVMBuildFNeg(b, x, "")), ""), "");
    case OP_softplus:   /* torch's threshold = 20 */
        return fsel(kc, LLVMRealOGT, x, FK(20), x, cg_log1p(cg, cg_exp(cg, x)));
    case OP_leaky_relu: return fsel(kc, LLVMRealOGT, x, FK(0), x, LLVMBuildFMul(b, x, FK(n->f[0]), ""));
    case OP_clamp: {
        double lo = n->f[0], hi = n->f[1];
        if (fl) {   /* NaN passes; infinite bounds mean none */
            if (!isinf(lo))
                x = fsel(kc, LLVMRealOLT, x, FK(lo), FK(lo), x);
            if (!isinf(hi))
                x = fsel(kc, LLVMRealOGT, x, FK(hi), FK(hi), x);
            return x;
        }
        /* integers: compare in i64 with ceil(lo) / floor(hi), then wrap to the dtype */
        LLVMValueRef w = cvt(kc, x, dt, DT_I64, lanes);
        LLVMTypeRef l = cg->t_i64;
        if (!isinf(lo)) {
            LLVMValueRef c = KI(kc, l, float_to_int(DT_I64, ceil(lo)), lanes);
            w = isel(kc, LLVMIntSLT, w, c, c, w);
        }
        if (!isinf(hi)) {
            LLVMValueRef c = KI(kc, l, float_to_int(DT_I64, floor(hi)), lanes);
            w = isel(kc, LLVMIntSGT, w, c, c, w);
        }
        return cvt(kc, w, DT_I64, dt, lanes);
    }
    case OP_lnot: return LLVMBuildNot(b, x, "");
    case OP_where: return LLVMBuildSelect(b, a[0], a[1], a[2], "");
    default: break;
    }
    LLVMValueRef y = a[1];
    if (ir_ops[n->op].flags & OPF_CMP) {
        static const LLVMRealPredicate fp[] = {LLVMRealOEQ, LLVMRealUNE, LLVMRealOLT, LLVMRealOLE, LLVMRealOGT, LLVMRealOGE};
        static const LLVMIntPredicate sp[] = {LLVMIntEQ, LLVMIntNE, LLVMIntSLT, LLVMIntSLE, LLVMIntSGT, LLVMIntSGE};
        static const LLVMIntPredicate up[] = {LLVMIntEQ, LLVMIntNE, LLVMIntULT, LLVMIntULE, LLVMIntUGT, LLVMIntUGE};
        int k = n->op - OP_eq;
        if (isf(xt))
            return LLVMBuildFCmp(b, fp[k], x, y, "");
        return LLVMBuildICmp(b, xt == DT_BOOL ? up[k] : sp[k], x, y, "");
    }
    switch (n->op) {
    case OP_add: return fl ? LLVMBuildFAdd(b, x, y, "") : LLVMBuildAdd(b, x, y, "");
    case OP_sub: return fl ? LLVMBuildFSub(b, x, y, "") : LLVMBuildSub(b, x, y, "");
    case OP_mul: return fl ? LLVMBuildFMul(b, x, y, "") : LLVMBuildMul(b, x, y, "");
    case OP_div: return LLVMBuildFDiv(b, x, y, "");
    case OP_mod: {   /* Python's: the result has the divisor's sign */
        LLVMValueRef r;
        if (fl) {
            r = LLVMBuildFRem(b, x, y, "");
            LLVMValueRef fix = LLVMBuildAnd(b, LLVMBuildFCmp(b, LLVMRealUNE, r, FK(0), ""),
                                            LLVMBuildXor(b, LLVMBuildFCmp(b, LLVMRealOLT, y, FK(0), ""),
                                                         LLVMBuildFCmp(b, LLVMRealOLT, r, FK(0), ""), ""), "");
            return LLVMBuildSelect(b, fix, LLVMBuildFAdd(b, r, y, ""), r, "");
        }
        LLVMValueRef zero = LLVMBuildICmp(b, LLVMIntEQ, y, IK(0), "");
        fail_if(kc, n, any_lane(kc, zero, lanes), "integer remainder by zero", NULL, 0);
        LLVMValueRef m1 = LLVMBuildICmp(b, LLVMIntEQ, y, IK(-1), "");
        LLVMValueRef safe = LLVMBuildSelect(b, LLVMBuildOr(b, zero, m1, ""), IK(1), y, "");
        r = LLVMBuildSelect(b, m1, IK(0), LLVMBuildSRem(b, x, safe, ""), "");
        LLVMValueRef fix = LLVMBuildAnd(b, LLVMBuildICmp(b, LLVMIntNE, r, IK(0), ""),
                                        LLVMBuildXor(b, LLVMBuildICmp(b, LLVMIntSLT, y, IK(0), ""),
                                                     LLVMBuildICmp(b, LLVMIntSLT, r, IK(0), ""), ""), "");
        return LLVMBuildSelect(b, fix, LLVMBuildAdd(b, r, y, ""), r, "");
    }
    case OP_pow:
        if (fl) {
            if (input_is_const(kc, n, 1, 2.0))
                return LLVMBuildFMul(b, x, x, "");
            /* libm's pow in f64, like the evaluator, then rounded */
            LLVMTypeRef d = vty(cg->t_f64, lanes);
            LLVMValueRef args[2] = {cvt(kc, x, dt, DT_F64, lanes), cvt(kc, y, dt, DT_F64, lanes)};
            LLVMValueRef p = intrinsic(kc, "llvm.pow", d, args, 2);
            return cvt(kc, p, DT_F64, dt == DT_F64 ? DT_F64 : DT_F32, lanes);
        }
        return ipow(kc, x, y, lanes);
    case OP_maximum:
    case OP_minimum: {
        bool mx = n->op == OP_maximum;
        if (fl)   /* a NaN operand gives NaN (a + b) */
            return fsel(kc, LLVMRealUNO, x, y, LLVMBuildFAdd(b, x, y, ""), fsel(kc, mx ? LLVMRealOGT : LLVMRealOLT, x, y, x, y));
        return isel(kc, mx ? LLVMIntSGT : LLVMIntSLT, x, y, x, y);
    }
    case OP_land: return LLVMBuildAnd(b, x, y, "");
    case OP_lor: return LLVMBuildOr(b, x, y, "");
    default: return NULL;
    }
#undef FK
#undef IK
}

/* ---- pointwise loops ---- */
typedef struct pw pw;
typedef LLVMValueRef (*pw_elem_fn)(kctx *kc, pw *P, int lanes, LLVMValueRef *vals, LLVMValueRef row, LLVMValueRef col);

struct pw {
    int rank;
    int64_t shape[R];
    int nops;                 /* ops[0] is written; the others are read */
    src s[MAX_OPS];
    int64_t off[MAX_OPS];
    int64_t st[MAX_OPS][R];
    pw_elem_fn elem;
    void *user;
    bool keep_dims;           /* elem uses (row, col) of the shape itself: no collapsing */
};

static void pw_prepare(pw *P)
{
    for (int j = 0; j < P->nops; j++)
        if (P->s[j].imm)
            for (int d = 0; d < P->rank; d++)
                P->st[j][d] = 0;
    if (!P->keep_dims)
        collapse(&P->rank, P->shape, P->nops, P->st);
    if (P->rank == 0) {
        P->rank = 1;
        P->shape[0] = 1;
        for (int j = 0; j < P->nops; j++)
            P->st[j][0] = 0;
    }
}

static bool pw_vector(const kctx *kc, const pw *P)
{
    int in = P->rank - 1;
    if (kc->W < 2 || P->shape[in] < kc->W || P->st[0][in] != 1)
        return false;
    for (int j = 1; j < P->nops; j++)
        if (P->st[j][in] != 0 && P->st[j][in] != 1)
            return false;
    return true;
}

static void pw_elems(kctx *kc, pw *P, int lanes, const LLVMValueRef *off, LLVMValueRef col, LLVMValueRef row)
{
    int in = P->rank - 1;
    LLVMValueRef vals[MAX_OPS];
    for (int j = 1; j < P->nops; j++) {
        LLVMValueRef pos = LLVMBuildNSWAdd(kc->b, off[j], LLVMBuildNSWMul(kc->b, col, I64(kc, P->st[j][in]), ""), "");
        vals[j] = read_src(kc, &P->s[j], pos, lanes, P->st[j][in]);
    }
    LLVMValueRef v = P->elem(kc, P, lanes, vals, row, lane_index(kc, col, lanes));
    LLVMValueRef pos = LLVMBuildNSWAdd(kc->b, off[0], LLVMBuildNSWMul(kc->b, col, I64(kc, P->st[0][in]), ""), "");
    store_elems(kc, src_ptr(kc, &P->s[0]), P->s[0].dt, pos, lanes, P->st[0][in], v);
}

/* rows [r0, r1) of the flattened outer dims, columns [c0, c1) of the innermost dim, with
 * operand j starting at base[j] + P->off[j] (base may be NULL: 0) */
static void pw_body(kctx *kc, pw *P, const LLVMValueRef *base, LLVMValueRef r0, LLVMValueRef r1, LLVMValueRef c0,
                    LLVMValueRef c1)
{
    loop LR;
    LLVMValueRef row = loop_begin(kc, &LR, r0, r1, 1);
    LLVMValueRef off[MAX_OPS];
    for (int j = 0; j < P->nops; j++)
        off[j] = base ? LLVMBuildNSWAdd(kc->b, base[j], I64(kc, P->off[j]), "") : I64(kc, P->off[j]);
    flat_offsets(kc, row, P->rank - 1, P->shape, P->nops, P->st, off);
    for (strip S = {.lo = c0, .hi = c1, .vec = pw_vector(kc, P)}; strip_next(kc, &S);)
        pw_elems(kc, P, S.lanes, off, S.c, row);
    loop_end(kc, &LR);
}

/* all of P's rows and columns (P prepared) */
static void pw_all(kctx *kc, pw *P, const LLVMValueRef *base)
{
    pw_body(kc, P, base, I64(kc, 0), I64(kc, prod(P->rank - 1, P->shape)), I64(kc, 0), I64(kc, P->shape[P->rank - 1]));
}

/* ---- parallel split: body(r0, r1, c0, c1) over rows x cols, in tasks when big ---- */
typedef void (*range_fn)(kctx *kc, void *user, LLVMValueRef r0, LLVMValueRef r1, LLVMValueRef c0, LLVMValueRef c1);

static LLVMValueRef add_kernel_fn(kctx *kc, const char *name, LLVMTypeRef ret, int extra_i64)
{
    cg_llvm *cg = kc->cg;
    LLVMTypeRef pt[MAX_IN + 8];
    unsigned np = 0;
    pt[np++] = cg->t_ptr;
    for (int j = 0; j < kc->nin; j++)
        pt[np++] = cg->t_ptr;
    pt[np++] = cg->t_ptr;
    for (int j = 0; j < extra_i64; j++)
        pt[np++] = cg->t_i64;
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, LLVMFunctionType(ret, pt, np, 0));
    unsigned noalias = LLVMGetEnumAttributeKindForName("noalias", 7);
    unsigned nocapture = LLVMGetEnumAttributeKindForName("nocapture", 9);
    for (unsigned j = 0; j < (unsigned)kc->nin + 1; j++) {
        if (!kc->aliased)
            LLVMAddAttributeAtIndex(fn, j + 1, LLVMCreateEnumAttribute(cg->ctx, noalias, 0));
        LLVMAddAttributeAtIndex(fn, j + 1, LLVMCreateEnumAttribute(cg->ctx, nocapture, 0));
    }
    if (cg->vector_bits >= 512) {   /* keep the explicit 512-bit vectors whole */
        LLVMAddTargetDependentFunctionAttr(fn, "prefer-vector-width", "512");
        LLVMAddTargetDependentFunctionAttr(fn, "min-legal-vector-width", "512");
    }
    return fn;
}

static void bind_params(kctx *kc, LLVMValueRef fn)
{
    kc->fn = fn;
    kc->out = LLVMGetParam(fn, 0);
    for (int j = 0; j < kc->nin; j++)
        kc->in[j] = LLVMGetParam(fn, 1 + (unsigned)j);
    kc->inst = LLVMGetParam(fn, 1 + (unsigned)kc->nin);
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Tasks are blocks of rows, or when rows are few and long, column chunks of at least
 * min_cols columns (a multiple of align). */
static void run_ranged(kctx *kc, range_fn body, void *user, int64_t rows, int64_t cols, int64_t work, int64_t align,
                       int64_t min_cols)
{
    int64_t units = 0, rb = 1, ncc = 1, C = cols;
    if (!kc->status && work >= PAR_MIN && rows > 0 && cols > 0) {
        int64_t per_row = work / rows > 0 ? work / rows : 1;
        if (per_row >= 2 * UNIT && cols >= 2 * min_cols) {
            ncc = cdiv(per_row, UNIT);
            if (ncc > cols / min_cols)
                ncc = cols / min_cols;
            C = cdiv(cdiv(cols, ncc), align) * align;
            ncc = cdiv(cols, C);
        } else {
            rb = UNIT / per_row > 1 ? UNIT / per_row : 1;
        }
        units = cdiv(rows, rb) * ncc;
    }
    if (units < 2) {
        body(kc, user, I64(kc, 0), I64(kc, rows), I64(kc, 0), I64(kc, cols));
        return;
    }
    cg_llvm *cg = kc->cg;
    LLVMBasicBlockRef here = LLVMGetInsertBlock(kc->b);
    LLVMValueRef kfn = kc->fn, kout = kc->out, kinst = kc->inst, kin[MAX_IN];
    memcpy(kin, kc->in, sizeof kin);
    const char *rname = arena_printf(cg->ar, "%s.rng", kc->name);
    const char *tname = arena_printf(cg->ar, "%s.task", kc->name);

    /* void name.rng(out, in..., inst, r0, r1, c0, c1) */
    LLVMValueRef rng = add_kernel_fn(kc, rname, cg->t_void, 4);
    LLVMSetLinkage(rng, LLVMInternalLinkage);
    bind_params(kc, rng);
    LLVMPositionBuilderAtEnd(kc->b, block(kc, "entry"));
    unsigned p0 = 2 + (unsigned)kc->nin;
    body(kc, user, LLVMGetParam(rng, p0), LLVMGetParam(rng, p0 + 1), LLVMGetParam(rng, p0 + 2), LLVMGetParam(rng, p0 + 3));
    LLVMBuildRetVoid(kc->b);

    /* void name.task(ptr ctx, i64 u): ctx holds out, in..., inst */
    LLVMTypeRef tp[2] = {cg->t_ptr, cg->t_i64};
    LLVMValueRef task = LLVMAddFunction(cg->mod, tname, LLVMFunctionType(cg->t_void, tp, 2, 0));
    LLVMSetLinkage(task, LLVMInternalLinkage);
    kc->fn = task;
    LLVMPositionBuilderAtEnd(kc->b, block(kc, "entry"));
    LLVMValueRef args[MAX_IN + 8];
    unsigned na = 0;
    for (int j = 0; j < kc->nin + 2; j++) {
        LLVMValueRef idx = I64(kc, j);
        LLVMValueRef p = LLVMBuildInBoundsGEP2(kc->b, cg->t_ptr, LLVMGetParam(task, 0), &idx, 1, "");
        args[na++] = LLVMBuildLoad2(kc->b, cg->t_ptr, p, "");
    }
    LLVMValueRef u = LLVMGetParam(task, 1);
    LLVMValueRef rbi = LLVMBuildUDiv(kc->b, u, I64(kc, ncc), ""), cc = LLVMBuildURem(kc->b, u, I64(kc, ncc), "");
    LLVMValueRef r0 = LLVMBuildMul(kc->b, rbi, I64(kc, rb), ""), c0 = LLVMBuildMul(kc->b, cc, I64(kc, C), "");
    args[na++] = r0;
    args[na++] = smin64(kc, LLVMBuildAdd(kc->b, r0, I64(kc, rb), ""), I64(kc, rows));
    args[na++] = c0;
    args[na++] = smin64(kc, LLVMBuildAdd(kc->b, c0, I64(kc, C), ""), I64(kc, cols));
    LLVMBuildCall2(kc->b, LLVMGlobalGetValueType(rng), rng, args, na, "");
    LLVMBuildRetVoid(kc->b);

    /* back in the kernel: ctx on the stack, then the runtime's pool */
    kc->fn = kfn;
    kc->out = kout;
    kc->inst = kinst;
    memcpy(kc->in, kin, sizeof kin);
    LLVMPositionBuilderAtEnd(kc->b, here);
    LLVMValueRef ctx = entry_alloca(kc, LLVMArrayType(cg->t_ptr, (unsigned)kc->nin + 2));
    for (int j = 0; j < kc->nin + 2; j++) {
        LLVMValueRef idx = I64(kc, j);
        LLVMValueRef p = LLVMBuildInBoundsGEP2(kc->b, cg->t_ptr, ctx, &idx, 1, "");
        LLVMBuildStore(kc->b, j == 0 ? kc->out : j <= kc->nin ? kc->in[j - 1] : kc->inst, p);
    }
    LLVMTypeRef fty;
    LLVMValueRef pf = cg_runtime_fn(cg, "tdsl_rt_parallel_for", &fty);
    LLVMValueRef a[4] = {kc->inst, I64(kc, units), task, ctx};
    LLVMBuildCall2(kc->b, fty, pf, a, 4, "");
}

static void pw_range(kctx *kc, void *user, LLVMValueRef r0, LLVMValueRef r1, LLVMValueRef c0, LLVMValueRef c1)
{
    pw_body(kc, user, NULL, r0, r1, c0, c1);
}

static void pw_run(kctx *kc, pw *P)
{
    pw_prepare(P);
    int64_t cols = P->shape[P->rank - 1];
    int64_t rows = prod(P->rank - 1, P->shape);
    run_ranged(kc, pw_range, P, rows, cols, rows * cols, kc->W, 4 * kc->W);
}

/* ---- the pointwise kernel: members' DAG per element ---- */
typedef struct dag {
    int *opnd;                /* by node id: its operand (>= 1), or -2: a const-backed immediate */
    int *mpos;                /* by node id: its position among the members, or -1 */
} dag;

static int member_index(const pass_kernel *k, int id)
{
    for (int m = 0; m < k->nmembers; m++)
        if (k->members[m] == id)
            return m;
    return -1;
}

static LLVMValueRef dag_elem(kctx *kc, pw *P, int lanes, LLVMValueRef *vals, LLVMValueRef row, LLVMValueRef col)
{
    const dag *D = P->user;
    const pass_kernel *k = kc->k;
    LLVMValueRef *mv = arena_alloc(kc->cg->ar, sizeof *mv * (size_t)k->nmembers);
    for (int m = 0; m < k->nmembers; m++) {
        const ir_node *n = node(kc, k->members[m]);
        LLVMValueRef a[4];
        for (int i = 0; i < n->nin; i++) {
            int id = n->in[i];
            if (D->mpos[id] >= 0) {
                a[i] = mv[D->mpos[id]];
            } else if (D->opnd[id] == -2) {
                const ir_node *c = node(kc, node(kc, id)->storage);
                a[i] = value_const(kc, node(kc, id)->dtype, c->f[0], lanes);
            } else {
                a[i] = vals[D->opnd[id]];
            }
        }
        mv[m] = elem_op(kc, n, a, lanes);
        /* a fused f16/bf16 member rounds to its dtype, as it would through memory */
        if (m < k->nmembers - 1 && (n->dtype == DT_F16 || n->dtype == DT_BF16))
            mv[m] = to_compute(kc, n->dtype, to_storage(kc, n->dtype, mv[m], lanes), lanes);
    }
    return mv[k->nmembers - 1];
}

/* Operands: the output, then one per distinct layout read (views of one storage with the
 * same offset and strides, e.g. the `expand`s of a bias in a fused chain, share one load);
 * const-backed inputs are immediates and take none. False past MAX_OPS layouts. */
static bool emit_pointwise(kctx *kc)
{
    const pass_kernel *k = kc->k;
    const ir_node *root = kc->root;
    pw *P = arena_alloc(kc->cg->ar, sizeof *P);
    dag *D = arena_alloc(kc->cg->ar, sizeof *D);
    D->opnd = arena_alloc(kc->cg->ar, sizeof(int) * (size_t)kc->f->nnodes);
    D->mpos = arena_alloc(kc->cg->ar, sizeof(int) * (size_t)kc->f->nnodes);
    for (int i = 0; i < kc->f->nnodes; i++)
        D->opnd[i] = D->mpos[i] = -1;
    for (int m = 0; m < k->nmembers; m++)
        D->mpos[k->members[m]] = m;
    P->rank = root->rank;
    memcpy(P->shape, root->shape, sizeof P->shape);
    P->nops = 1;
    P->s[0] = (src){false, 0, -1, root->dtype};
    P->off[0] = root->offset;
    memcpy(P->st[0], root->strides, sizeof P->st[0]);
    for (int m = 0; m < k->nmembers; m++) {
        const ir_node *n = node(kc, k->members[m]);
        for (int i = 0; i < n->nin; i++) {
            int id = n->in[i];
            if (D->mpos[id] >= 0 || D->opnd[id] != -1)
                continue;
            const ir_node *x = node(kc, id);
            src sx;
            if (!src_of(kc, id, &sx))
                return false;
            if (sx.imm) {
                D->opnd[id] = -2;
                continue;
            }
            int j;
            for (j = 1; j < P->nops; j++)
                if (P->s[j].slot == sx.slot && P->s[j].dt == sx.dt && P->off[j] == x->offset &&
                    !memcmp(P->st[j], x->strides, sizeof(int64_t) * (size_t)root->rank))
                    break;
            if (j == P->nops) {
                if (P->nops == MAX_OPS)
                    return false;
                P->nops++;
                P->s[j] = sx;
                P->off[j] = x->offset;
                memcpy(P->st[j], x->strides, sizeof P->st[j]);
            }
            D->opnd[id] = j;
        }
    }
    P->elem = dag_elem;
    P->user = D;
    pw_run(kc, P);
    return true;
}

/* ---- fills ---- */
static LLVMValueRef fill_elem(kctx *kc, pw *P, int lanes, LLVMValueRef *vals, LLVMValueRef row, LLVMValueRef col)
{
    const ir_node *n = kc->root;
    switch (n->op) {
    case OP_arange: {   /* start + k * step, wrapping, then converted like ir_eval's wri */
        LLVMValueRef v = LLVMBuildAdd(kc->b, KI(kc, kc->cg->t_i64, n->i[0], lanes),
                                      LLVMBuildMul(kc->b, col, KI(kc, kc->cg->t_i64, n->i[1], lanes), ""), "");
        return cvt(kc, v, DT_I64, n->dtype, lanes);
    }
    case OP_eye: {
        LLVMValueRef eq = LLVMBuildICmp(kc->b, LLVMIntEQ, splat(kc, row, lanes), col, "");
        return cvt(kc, eq, DT_BOOL, n->dtype, lanes);
    }
    default: return value_const(kc, n->dtype, n->f[0], lanes);   /* full */
    }
}

/* elem written over the whole output, read from nothing (fills, scatters' zeros) */
static pw *out_pw(kctx *kc, pw_elem_fn elem)
{
    const ir_node *n = kc->root;
    pw *P = arena_alloc(kc->cg->ar, sizeof *P);
    P->rank = n->rank;
    memcpy(P->shape, n->shape, sizeof P->shape);
    P->nops = 1;
    P->s[0] = (src){false, 0, -1, n->dtype};
    P->off[0] = n->offset;
    memcpy(P->st[0], n->strides, sizeof P->st[0]);
    P->elem = elem;
    return P;
}

static void emit_fill(kctx *kc)
{
    pw *P = out_pw(kc, fill_elem);
    P->keep_dims = kc->root->op != OP_full;   /* arange and eye use the indices */
    pw_run(kc, P);
}

/* ---- lines: reductions, softmax, layer_norm, cross_entropy ---- */
enum { RK_SUM, RK_PROD, RK_MAX, RK_MIN, RK_ARGMAX, RK_ARGMIN, RK_SUMEXP, RK_SUMSQ };
enum { LX, LI, LO, LW, LB, NL };   /* operands along a line: x, flat index, out, weight, bias */

typedef struct lines lines;
typedef void (*group_fn)(kctx *kc, lines *L, int lanes, LLVMValueRef xoff, LLVMValueRef ooff);

struct lines {
    const ir_node *n;
    src x, w, b;
    bool has_wb;
    ir_dtype xt;
    int krank;                /* kept dims: [0] x, [1] out */
    int64_t kshape[R], kst[2][R];
    int rrank;                /* line dims */
    int64_t rshape[R], rst[NL][R];
    int64_t xoff, ooff, woff, boff;
    int64_t count;
    char mode;                /* 'H': vectors along the line; 'V': across lines; 'S': scalar */
    group_fn group;
    LLVMValueRef store_ooff;  /* softmax: the exp pass stores exp(x - m) at this out offset */
    bool reread;              /* ... and the write pass reads it back instead of x */
};

/* line_dim[d]: x's dim d is walked inside a line. same_shape: the result has x's shape
 * (softmax, layer_norm), else it is x's reduction by n's axes and keepdim. */
static lines *lines_new(kctx *kc, const ir_node *x, const bool *line_dim, bool same_shape, const ir_node *w,
                        const ir_node *bias)
{
    const ir_node *n = kc->root;
    lines *L = arena_alloc(kc->cg->ar, sizeof *L);
    L->n = n;
    src_of(kc, (int)(x - kc->f->nodes), &L->x);
    L->xt = x->dtype;
    L->xoff = x->offset;
    L->ooff = n->offset;
    if (w) {
        L->has_wb = true;
        src_of(kc, (int)(w - kc->f->nodes), &L->w);
        src_of(kc, (int)(bias - kc->f->nodes), &L->b);
        L->woff = w->offset;
        L->boff = bias->offset;
    }
    int orank = 0;
    for (int d = 0; d < x->rank; d++) {
        int64_t xs = L->x.imm ? 0 : x->strides[d];
        if (line_dim[d]) {
            int r = L->rrank++;
            L->rshape[r] = x->shape[d];
            L->rst[LX][r] = xs;
            L->rst[LO][r] = same_shape ? n->strides[d] : 0;
            if (w) {
                L->rst[LW][r] = L->w.imm ? 0 : w->strides[0];
                L->rst[LB][r] = L->b.imm ? 0 : bias->strides[0];
            }
            if (!same_shape && n->i[0])
                orank++;
        } else {
            int k = L->krank++;
            L->kshape[k] = x->shape[d];
            L->kst[0][k] = xs;
            L->kst[1][k] = same_shape ? n->strides[d] : orank < n->rank ? n->strides[orank] : 0;
            orank++;
        }
    }
    int64_t c = 1;
    for (int r = L->rrank - 1; r >= 0; r--) {
        L->rst[LI][r] = c;
        c *= L->rshape[r];
    }
    L->count = c;
    collapse(&L->krank, L->kshape, 2, L->kst);
    collapse(&L->rrank, L->rshape, NL, L->rst);
    int W = kc->W;
    if (W >= 2 && !L->x.imm && L->rrank >= 1 && L->rst[LX][L->rrank - 1] == 1 && L->rshape[L->rrank - 1] >= W)
        L->mode = 'H';
    else if (W >= 2 && !L->x.imm && L->krank >= 1 && L->kst[0][L->krank - 1] == 1 && L->kst[1][L->krank - 1] == 1 &&
             L->kshape[L->krank - 1] >= W)
        L->mode = 'V';
    else
        L->mode = 'S';
    return L;
}

static bool is_arg(int kind) { return kind == RK_ARGMAX || kind == RK_ARGMIN; }

static LLVMTypeRef acc_type(kctx *kc, const lines *L, int kind)
{
    if (kind == RK_SUM || kind == RK_PROD || kind == RK_SUMEXP || kind == RK_SUMSQ)
        return isf(L->xt) ? kc->cg->t_f64 : kc->cg->t_i64;
    return L->xt == DT_BOOL ? kc->cg->t_i32 : cg_compute_type(kc->cg, L->xt);
}

static LLVMValueRef acc_init(kctx *kc, const lines *L, int kind, int lanes)
{
    LLVMTypeRef t = acc_type(kc, L, kind);
    bool hi = kind == RK_MIN || kind == RK_ARGMIN;
    switch (kind) {
    case RK_PROD: return isf(L->xt) ? KF(kc, t, 1.0, lanes) : KI(kc, t, 1, lanes);
    case RK_MAX:
    case RK_MIN:
    case RK_ARGMAX:
    case RK_ARGMIN:
        if (isf(L->xt))
            return KF(kc, t, hi ? INFINITY : -INFINITY, lanes);
        if (t == kc->cg->t_i64)
            return KI(kc, t, hi ? INT64_MAX : INT64_MIN, lanes);
        return KI(kc, t, hi ? INT32_MAX : INT32_MIN, lanes);
    default: return LLVMConstNull(vty(t, lanes));
    }
}

/* the element's contribution, in the accumulator type */
static LLVMValueRef acc_value(kctx *kc, const lines *L, int kind, LLVMValueRef v, LLVMValueRef shift, int lanes)
{
    switch (kind) {
    case RK_SUM:
    case RK_PROD: return cvt(kc, v, L->xt, isf(L->xt) ? DT_F64 : DT_I64, lanes);
    case RK_SUMEXP: return to_f64(kc, cg_exp(kc->cg, LLVMBuildFSub(kc->b, v, shift, "")), L->xt, lanes);
    case RK_SUMSQ: {
        LLVMValueRef d = LLVMBuildFSub(kc->b, to_f64(kc, v, L->xt, lanes), shift, "");
        return LLVMBuildFMul(kc->b, d, d, "");
    }
    default: return L->xt == DT_BOOL ? LLVMBuildZExt(kc->b, v, vty(kc->cg->t_i32, lanes), "") : v;
    }
}

/* (a, ai) <- a combined with (v, vi). in_order: v comes after a (a plain fold); otherwise
 * the index breaks ties (combining partial results of a shuffle tree). */
static void acc_combine(kctx *kc, const lines *L, int kind, LLVMValueRef *a, LLVMValueRef *ai, LLVMValueRef v,
                        LLVMValueRef vi, bool in_order)
{
    LLVMBuilderRef b = kc->b;
    bool fl = isf(L->xt);
    switch (kind) {
    case RK_SUM:
    case RK_SUMEXP:
    case RK_SUMSQ: *a = fl || kind != RK_SUM ? LLVMBuildFAdd(b, *a, v, "") : LLVMBuildAdd(b, *a, v, ""); return;
    case RK_PROD: *a = fl ? LLVMBuildFMul(b, *a, v, "") : LLVMBuildMul(b, *a, v, ""); return;
    default: break;
    }
    bool want_max = kind == RK_MAX || kind == RK_ARGMAX;
    LLVMValueRef take;
    if (fl) {
        LLVMValueRef better = LLVMBuildFCmp(b, want_max ? LLVMRealOGT : LLVMRealOLT, v, *a, "");
        LLVMValueRef vnan = LLVMBuildFCmp(b, LLVMRealUNO, v, v, "");
        LLVMValueRef anan = LLVMBuildFCmp(b, LLVMRealUNO, *a, *a, "");
        if (!is_arg(kind)) {   /* NaN wins and stays */
            take = LLVMBuildOr(b, better, vnan, "");
        } else {               /* the first NaN, else the first extreme */
            take = LLVMBuildOr(b, better, LLVMBuildAnd(b, vnan, LLVMBuildNot(b, anan, ""), ""), "");
            if (!in_order) {
                LLVMValueRef same = LLVMBuildOr(b, LLVMBuildFCmp(b, LLVMRealOEQ, v, *a, ""), LLVMBuildAnd(b, vnan, anan, ""), "");
                take = LLVMBuildOr(b, take, LLVMBuildAnd(b, same, LLVMBuildICmp(b, LLVMIntSLT, vi, *ai, ""), ""), "");
            }
        }
    } else {
        take = LLVMBuildICmp(b, want_max ? LLVMIntSGT : LLVMIntSLT, v, *a, "");
        if (is_arg(kind) && !in_order)
            take = LLVMBuildOr(b, take, LLVMBuildAnd(b, LLVMBuildICmp(b, LLVMIntEQ, v, *a, ""),
                                                     LLVMBuildICmp(b, LLVMIntSLT, vi, *ai, ""), ""), "");
    }
    *a = LLVMBuildSelect(b, take, v, *a, "");
    if (ai)
        *ai = LLVMBuildSelect(b, take, vi, *ai, "");
}

/* a vector of partial results -> one scalar, halving with shuffles */
static void acc_tree(kctx *kc, const lines *L, int kind, LLVMValueRef *a, LLVMValueRef *ai, int lanes)
{
    while (lanes > 1) {
        int h = lanes / 2;
        LLVMValueRef lo, hi, loi = NULL, hii = NULL;
        if (h == 1) {
            lo = LLVMBuildExtractElement(kc->b, *a, I32(kc, 0), "");
            hi = LLVMBuildExtractElement(kc->b, *a, I32(kc, 1), "");
            if (ai) {
                loi = LLVMBuildExtractElement(kc->b, *ai, I32(kc, 0), "");
                hii = LLVMBuildExtractElement(kc->b, *ai, I32(kc, 1), "");
            }
        } else {
            LLVMValueRef ml[32], mh[32];
            for (int i = 0; i < h; i++) {
                ml[i] = I32(kc, i);
                mh[i] = I32(kc, h + i);
            }
            LLVMValueRef mlo = LLVMConstVector(ml, (unsigned)h), mhi = LLVMConstVector(mh, (unsigned)h);
            lo = LLVMBuildShuffleVector(kc->b, *a, LLVMGetPoison(LLVMTypeOf(*a)), mlo, "");
            hi = LLVMBuildShuffleVector(kc->b, *a, LLVMGetPoison(LLVMTypeOf(*a)), mhi, "");
            if (ai) {
                loi = LLVMBuildShuffleVector(kc->b, *ai, LLVMGetPoison(LLVMTypeOf(*ai)), mlo, "");
                hii = LLVMBuildShuffleVector(kc->b, *ai, LLVMGetPoison(LLVMTypeOf(*ai)), mhi, "");
            }
        }
        acc_combine(kc, L, kind, &lo, ai ? &loi : NULL, hi, hii, false);
        *a = lo;
        if (ai)
            *ai = loi;
        lanes = h;
    }
}

/* folds lanes elements v (flat indices k) into the accumulator slots acc (and ia); with
 * opos, softmax's exp pass also stores every exp(x - m) there (lane stride os) */
static void fold(kctx *kc, lines *L, int kind, LLVMValueRef acc, LLVMValueRef ia, int lanes, LLVMValueRef v,
                 LLVMValueRef k, LLVMValueRef shift, LLVMValueRef opos, int64_t os)
{
    LLVMBuilderRef b = kc->b;
    LLVMTypeRef at = acc_type(kc, L, kind);
    LLVMValueRef a = LLVMBuildLoad2(b, vty(at, lanes), acc, "");
    LLVMValueRef ai = ia ? LLVMBuildLoad2(b, vty(kc->cg->t_i64, lanes), ia, "") : NULL;
    LLVMValueRef val;
    if (opos) {
        LLVMValueRef e = cg_exp(kc->cg, LLVMBuildFSub(b, v, shift, ""));
        store_elems(kc, kc->out, L->n->dtype, opos, lanes, os, e);
        val = to_f64(kc, e, L->xt, lanes);
    } else {
        val = acc_value(kc, L, kind, v, shift, lanes);
    }
    acc_combine(kc, L, kind, &a, ia ? &ai : NULL, val, k, true);
    LLVMBuildStore(b, a, acc);
    if (ia)
        LLVMBuildStore(b, ai, ia);
}

/* One pass over the lines at xoff (lanes neighbouring lines in V mode): the accumulated
 * value, and in *idx the flat index of the extreme for argmax/argmin. */
static LLVMValueRef line_pass(kctx *kc, lines *L, int kind, int lanes, LLVMValueRef xoff, LLVMValueRef shift,
                              LLVMValueRef *idx)
{
    LLVMBuilderRef b = kc->b;
    bool h = L->mode == 'H' && lanes == 1;
    int vl = h ? kc->W : lanes;
    LLVMTypeRef at = acc_type(kc, L, kind), it = kc->cg->t_i64;
    bool arg = is_arg(kind), store = kind == RK_SUMEXP && L->store_ooff;
    LLVMValueRef acc = entry_alloca(kc, vty(at, vl)), ia = arg ? entry_alloca(kc, vty(it, vl)) : NULL;
    LLVMBuildStore(b, acc_init(kc, L, kind, vl), acc);
    if (arg)
        LLVMBuildStore(b, LLVMConstNull(vty(it, vl)), ia);
    LLVMValueRef sacc = NULL, sia = NULL, vshift = shift;
    if (h) {
        sacc = entry_alloca(kc, at);
        LLVMBuildStore(b, acc_init(kc, L, kind, 1), sacc);
        if (arg) {
            sia = entry_alloca(kc, it);
            LLVMBuildStore(b, I64(kc, 0), sia);
        }
        if (shift)
            vshift = splat(kc, shift, kc->W);
    }
    int64_t st[3][R];
    memcpy(st[0], L->rst[LX], sizeof st[0]);
    memcpy(st[1], L->rst[LI], sizeof st[1]);
    memcpy(st[2], L->rst[LO], sizeof st[2]);
    LLVMValueRef base[3] = {xoff, I64(kc, 0), store ? L->store_ooff : I64(kc, 0)}, off[3];
    nest N;
    nest_open(kc, &N, h ? L->rrank - 1 : L->rrank, L->rshape, 3, st, base, off);
    if (h) {   /* W lanes into acc, the tail into sacc */
        int in = L->rrank - 1;
        int64_t os = L->rst[LO][in];
        for (strip S = {.lo = I64(kc, 0), .hi = I64(kc, L->rshape[in]), .vec = true}; strip_next(kc, &S);) {
            bool tail = S.lanes == 1;
            LLVMValueRef v = read_src(kc, &L->x, LLVMBuildNSWAdd(b, off[0], S.c, ""), S.lanes, 1);
            LLVMValueRef opos = store ? LLVMBuildNSWAdd(b, off[2], LLVMBuildNSWMul(b, S.c, I64(kc, os), ""), "") : NULL;
            LLVMValueRef k = lane_index(kc, LLVMBuildNSWAdd(b, off[1], S.c, ""), S.lanes);
            fold(kc, L, kind, tail ? sacc : acc, tail ? sia : ia, S.lanes, v, k, tail ? shift : vshift, opos, os);
        }
    } else {
        LLVMValueRef v = read_src(kc, &L->x, off[0], lanes, 1);
        fold(kc, L, kind, acc, ia, lanes, v, splat(kc, off[1], lanes), shift, store ? off[2] : NULL, 1);
    }
    nest_close(kc, &N);
    LLVMValueRef a = LLVMBuildLoad2(b, vty(at, vl), acc, "");
    LLVMValueRef ai = arg ? LLVMBuildLoad2(b, vty(it, vl), ia, "") : NULL;
    if (h) {
        acc_tree(kc, L, kind, &a, arg ? &ai : NULL, kc->W);
        LLVMValueRef s = LLVMBuildLoad2(b, at, sacc, ""), si = arg ? LLVMBuildLoad2(b, it, sia, "") : NULL;
        acc_combine(kc, L, kind, &a, arg ? &ai : NULL, s, si, false);
    }
    if (idx)
        *idx = ai;
    return a;
}

typedef LLVMValueRef (*write_fn)(kctx *kc, lines *L, int lanes, LLVMValueRef x, LLVMValueRef w, LLVMValueRef b, void *u);

/* one element (or lanes of them) of a line write: along the line dim `in` at c (H), or
 * across neighbouring lines (V: x and out contiguous there, w and b shared) */
static void line_elem(kctx *kc, lines *L, int vl, const LLVMValueRef *off, LLVMValueRef c, write_fn fn, void *u)
{
    int in = L->rrank - 1;
    LLVMValueRef o[NL];
    int64_t s[NL];
    for (int j = 0; j < NL; j++) {
        o[j] = c ? LLVMBuildNSWAdd(kc->b, off[j], LLVMBuildNSWMul(kc->b, c, I64(kc, L->rst[j][in]), ""), "") : off[j];
        s[j] = c ? L->rst[j][in] : (j == LX || j == LO);
    }
    src os = {false, 0, -1, L->n->dtype};
    LLVMValueRef x = L->reread ? read_src(kc, &os, o[LO], vl, s[LO]) : read_src(kc, &L->x, o[LX], vl, s[LX]);
    LLVMValueRef wv = L->has_wb ? read_src(kc, &L->w, o[LW], vl, s[LW]) : NULL;
    LLVMValueRef bv = L->has_wb ? read_src(kc, &L->b, o[LB], vl, s[LB]) : NULL;
    store_elems(kc, kc->out, L->n->dtype, o[LO], vl, s[LO], fn(kc, L, vl, x, wv, bv, u));
}

/* writes every element of the lines at (xoff, ooff): out = fn(x[, w, b]) */
static void line_write(kctx *kc, lines *L, int lanes, LLVMValueRef xoff, LLVMValueRef ooff, write_fn fn, void *u)
{
    bool h = L->mode == 'H' && lanes == 1;
    LLVMValueRef base[NL] = {xoff, I64(kc, 0), ooff, I64(kc, L->woff), I64(kc, L->boff)}, off[NL];
    nest N;
    nest_open(kc, &N, h ? L->rrank - 1 : L->rrank, L->rshape, NL, L->rst, base, off);
    if (h) {
        for (strip S = {.lo = I64(kc, 0), .hi = I64(kc, L->rshape[L->rrank - 1]), .vec = true}; strip_next(kc, &S);)
            line_elem(kc, L, S.lanes, off, S.c, fn, u);
    } else {
        line_elem(kc, L, lanes, off, NULL, fn, u);
    }
    nest_close(kc, &N);
}

static LLVMValueRef count_f64(kctx *kc, const lines *L, int lanes) { return KF(kc, kc->cg->t_f64, (double)L->count, lanes); }

/* a value of dtype `from`'s compute type (or f64 / i64 accumulator) stored into the result */
static void store_result(kctx *kc, lines *L, int lanes, LLVMValueRef ooff, LLVMValueRef v)
{
    store_elems(kc, kc->out, L->n->dtype, ooff, lanes, 1, v);
}

/* the reductions done in one pass, and their accumulator kinds */
static int single_kind(ir_opcode op)
{
    switch (op) {
    case OP_sum:
    case OP_mean: return RK_SUM;
    case OP_prod: return RK_PROD;
    case OP_max: return RK_MAX;
    case OP_min: return RK_MIN;
    case OP_argmax: return RK_ARGMAX;
    case OP_argmin: return RK_ARGMIN;
    default: return -1;
    }
}

/* the result of a one-pass reduction from its accumulator (and index) */
static LLVMValueRef single_finish(kctx *kc, lines *L, int lanes, LLVMValueRef acc, LLVMValueRef idx)
{
    ir_dtype dt = L->n->dtype;
    switch (L->n->op) {
    case OP_sum:
    case OP_prod: return cvt(kc, acc, isf(dt) ? DT_F64 : DT_I64, dt, lanes);
    case OP_mean: return cvt(kc, LLVMBuildFDiv(kc->b, acc, count_f64(kc, L, lanes), ""), DT_F64, dt, lanes);
    case OP_argmax:
    case OP_argmin: return idx;
    default:   /* max, min */
        return L->xt == DT_BOOL ? LLVMBuildICmp(kc->b, LLVMIntNE, acc, LLVMConstNull(LLVMTypeOf(acc)), "") : acc;
    }
}

/* the biased variance of the lines at xoff in f64, in two passes (as ir_eval); their mean in *mean */
static LLVMValueRef line_var(kctx *kc, lines *L, int lanes, LLVMValueRef xoff, LLVMValueRef *mean)
{
    LLVMBuilderRef b = kc->b;
    LLVMValueRef m = LLVMBuildFDiv(b, line_pass(kc, L, RK_SUM, lanes, xoff, NULL, NULL), count_f64(kc, L, lanes), "");
    if (mean)
        *mean = m;
    return LLVMBuildFDiv(b, line_pass(kc, L, RK_SUMSQ, lanes, xoff, m, NULL), count_f64(kc, L, lanes), "");
}

/* log(sum(exp(x - sh))) + sh in f64 over the lines at xoff, shifted by their max m (by 0
 * when m is infinite or there is none, so no inf - inf); m in *max */
static LLVMValueRef line_logsumexp(kctx *kc, lines *L, int lanes, LLVMValueRef xoff, LLVMValueRef *max)
{
    LLVMValueRef m = line_pass(kc, L, RK_MAX, lanes, xoff, NULL, NULL);
    LLVMTypeRef ct = LLVMTypeOf(m);
    LLVMValueRef am = intrinsic(kc, "llvm.fabs", ct, &m, 1);
    LLVMValueRef zero = LLVMConstNull(ct);
    LLVMValueRef sh = L->count == 0 ? zero : fsel(kc, LLVMRealOEQ, am, KF(kc, cg_compute_type(kc->cg, L->xt), INFINITY, lanes), zero, m);
    LLVMValueRef s = line_pass(kc, L, RK_SUMEXP, lanes, xoff, sh, NULL);
    if (max)
        *max = m;
    return LLVMBuildFAdd(kc->b, cg_log(kc->cg, s), to_f64(kc, sh, L->xt, lanes), "");
}

static void reduce_group(kctx *kc, lines *L, int lanes, LLVMValueRef xoff, LLVMValueRef ooff)
{
    const ir_node *n = L->n;
    ir_dtype dt = n->dtype;
    LLVMValueRef r = NULL, idx = NULL;
    int kind = single_kind(n->op);
    if (kind >= 0) {
        LLVMValueRef acc = line_pass(kc, L, kind, lanes, xoff, NULL, &idx);
        r = single_finish(kc, L, lanes, acc, idx);
    } else if (n->op == OP_var) {
        r = cvt(kc, line_var(kc, L, lanes, xoff, NULL), DT_F64, dt, lanes);
    } else {   /* logsumexp; a NaN max is the result */
        LLVMValueRef m;
        LLVMValueRef l = line_logsumexp(kc, L, lanes, xoff, &m);
        l = fsel(kc, LLVMRealUNO, m, m, to_f64(kc, m, L->xt, lanes), l);
        r = cvt(kc, l, DT_F64, dt, lanes);
    }
    store_result(kc, L, lanes, ooff, r);
}

/* ---- V mode for one-pass reductions over big strides: blocks of VB_COLS neighbouring
 * lines accumulate in a stack buffer while the reduced dims run outside, so every step
 * reads VB_COLS contiguous elements (a line-by-line walk down a large stride misses the
 * TLB on every element). ---- */
typedef struct vb {
    lines *L;
    int kind;
    LLVMTypeRef at;
    LLVMValueRef buf, ibuf;     /* [VB_COLS] accumulators and indices */
    LLVMValueRef cb;            /* first column of the block */
    LLVMValueRef xoff, ooff, koff;
    int step;                   /* 0 init, 1 fold, 2 finish */
} vb;

static LLVMValueRef vb_slot(kctx *kc, vb *V, LLVMValueRef buf, LLVMTypeRef t, LLVMValueRef c)
{
    LLVMValueRef j = LLVMBuildSub(kc->b, c, V->cb, "");
    return LLVMBuildInBoundsGEP2(kc->b, t, buf, &j, 1, "");
}

static void vb_cols(kctx *kc, vb *V, int lanes, LLVMValueRef c)
{
    lines *L = V->L;
    LLVMBuilderRef b = kc->b;
    LLVMTypeRef it = kc->cg->t_i64;
    bool arg = is_arg(V->kind);
    LLVMValueRef pa = vb_slot(kc, V, V->buf, V->at, c), pi = arg ? vb_slot(kc, V, V->ibuf, it, c) : NULL;
    if (V->step == 0) {
        LLVMSetAlignment(LLVMBuildStore(b, acc_init(kc, L, V->kind, lanes), pa), 8);
        if (arg)
            LLVMSetAlignment(LLVMBuildStore(b, LLVMConstNull(vty(it, lanes)), pi), 8);
        return;
    }
    LLVMValueRef a = LLVMBuildLoad2(b, vty(V->at, lanes), pa, "");
    LLVMValueRef ai = arg ? LLVMBuildLoad2(b, vty(it, lanes), pi, "") : NULL;
    LLVMSetAlignment(a, 8);
    if (ai)
        LLVMSetAlignment(ai, 8);
    if (V->step == 1) {
        LLVMValueRef v = read_src(kc, &L->x, LLVMBuildNSWAdd(b, V->xoff, c, ""), lanes, 1);
        acc_combine(kc, L, V->kind, &a, arg ? &ai : NULL, acc_value(kc, L, V->kind, v, NULL, lanes),
                    splat(kc, V->koff, lanes), true);
        LLVMSetAlignment(LLVMBuildStore(b, a, pa), 8);
        if (arg)
            LLVMSetAlignment(LLVMBuildStore(b, ai, pi), 8);
        return;
    }
    store_result(kc, L, lanes, LLVMBuildNSWAdd(b, V->ooff, c, ""), single_finish(kc, L, lanes, a, ai));
}

/* one step over the block's columns [V->cb, ce) */
static void vb_step(kctx *kc, vb *V, int step, LLVMValueRef ce)
{
    V->step = step;
    for (strip S = {.lo = V->cb, .hi = ce, .vec = true}; strip_next(kc, &S);)
        vb_cols(kc, V, S.lanes, S.c);
}

/* columns [cb, ce) of the kept row whose column 0 is at (xoff, ooff) */
static void vb_block(kctx *kc, vb *V, LLVMValueRef xoff, LLVMValueRef ooff, LLVMValueRef cb, LLVMValueRef ce)
{
    lines *L = V->L;
    V->cb = cb;
    V->ooff = ooff;
    vb_step(kc, V, 0, ce);
    int64_t st[2][R];
    memcpy(st[0], L->rst[LX], sizeof st[0]);
    memcpy(st[1], L->rst[LI], sizeof st[1]);
    LLVMValueRef base[2] = {xoff, I64(kc, 0)}, off[2];
    nest N;
    nest_open(kc, &N, L->rrank, L->rshape, 2, st, base, off);
    V->xoff = off[0];
    V->koff = off[1];
    vb_step(kc, V, 1, ce);
    nest_close(kc, &N);
    vb_step(kc, V, 2, ce);
}

/* softmax: exp(x - m) / s; log_softmax: (x - m) - log(s) in f64 (as ir_eval) */
typedef struct smx {
    LLVMValueRef m, s, ls;
} smx;

static LLVMValueRef softmax_elem(kctx *kc, lines *L, int lanes, LLVMValueRef x, LLVMValueRef w, LLVMValueRef b, void *u)
{
    smx *S = u;
    LLVMValueRef m = splat(kc, S->m, lanes > 1 && LLVMGetTypeKind(LLVMTypeOf(S->m)) != LLVMVectorTypeKind ? lanes : 1);
    if (L->n->op == OP_log_softmax) {
        LLVMValueRef ls = splat(kc, S->ls, LLVMGetTypeKind(LLVMTypeOf(S->ls)) != LLVMVectorTypeKind ? lanes : 1);
        LLVMValueRef d = LLVMBuildFSub(kc->b, to_f64(kc, x, L->xt, lanes), to_f64(kc, m, L->xt, lanes), "");
        return cvt(kc, LLVMBuildFSub(kc->b, d, ls, ""), DT_F64, L->n->dtype, lanes);
    }
    LLVMValueRef s = splat(kc, S->s, LLVMGetTypeKind(LLVMTypeOf(S->s)) != LLVMVectorTypeKind ? lanes : 1);
    LLVMValueRef e = L->reread ? x : cg_exp(kc->cg, LLVMBuildFSub(kc->b, x, m, ""));
    return LLVMBuildFDiv(kc->b, e, s, "");
}

static void softmax_group(kctx *kc, lines *L, int lanes, LLVMValueRef xoff, LLVMValueRef ooff)
{
    smx S;
    S.m = line_pass(kc, L, RK_MAX, lanes, xoff, NULL, NULL);
    /* softmax into f32/f64: keep each exp(x - m) in the output, then divide it in place */
    bool keep = L->n->op == OP_softmax && (L->n->dtype == DT_F32 || L->n->dtype == DT_F64);
    L->store_ooff = keep ? ooff : NULL;
    LLVMValueRef s = line_pass(kc, L, RK_SUMEXP, lanes, xoff, S.m, NULL);
    L->store_ooff = NULL;
    L->reread = keep;
    if (L->n->op == OP_log_softmax)
        S.ls = cg_log(kc->cg, s);
    else
        S.s = cvt(kc, s, DT_F64, L->xt == DT_F64 ? DT_F64 : DT_F32, lanes);
    line_write(kc, L, lanes, xoff, ooff, softmax_elem, &S);
    L->reread = false;
}

/* layer_norm: ((x - mean) * rstd) * w + b, all in f64 (as ir_eval) */
typedef struct lnorm {
    LLVMValueRef mean, rstd;
} lnorm;

static LLVMValueRef lnorm_elem(kctx *kc, lines *L, int lanes, LLVMValueRef x, LLVMValueRef w, LLVMValueRef b, void *u)
{
    lnorm *S = u;
    bool vec = LLVMGetTypeKind(LLVMTypeOf(S->mean)) == LLVMVectorTypeKind;
    LLVMValueRef mean = vec ? S->mean : splat(kc, S->mean, lanes), rstd = vec ? S->rstd : splat(kc, S->rstd, lanes);
    LLVMValueRef y = LLVMBuildFMul(kc->b, LLVMBuildFSub(kc->b, to_f64(kc, x, L->xt, lanes), mean, ""), rstd, "");
    y = LLVMBuildFAdd(kc->b, LLVMBuildFMul(kc->b, y, to_f64(kc, w, L->xt, lanes), ""), to_f64(kc, b, L->xt, lanes), "");
    return cvt(kc, y, DT_F64, L->n->dtype, lanes);
}

static void lnorm_group(kctx *kc, lines *L, int lanes, LLVMValueRef xoff, LLVMValueRef ooff)
{
    LLVMBuilderRef b = kc->b;
    lnorm S;
    LLVMValueRef ve = LLVMBuildFAdd(b, line_var(kc, L, lanes, xoff, &S.mean), KF(kc, kc->cg->t_f64, L->n->f[0], lanes), "");
    S.rstd = LLVMBuildFDiv(b, KF(kc, kc->cg->t_f64, 1.0, lanes), intrinsic(kc, "llvm.sqrt", LLVMTypeOf(ve), &ve, 1), "");
    line_write(kc, L, lanes, xoff, ooff, lnorm_elem, &S);
}

/* rows of the kept dims [r0, r1); in V mode columns [c0, c1) of the innermost kept dim */
static void lines_range(kctx *kc, void *user, LLVMValueRef r0, LLVMValueRef r1, LLVMValueRef c0, LLVMValueRef c1)
{
    lines *L = user;
    bool v = L->mode == 'V';
    loop LR;
    LLVMValueRef row = loop_begin(kc, &LR, r0, r1, 1);
    LLVMValueRef off[2] = {I64(kc, L->xoff), I64(kc, L->ooff)};
    flat_offsets(kc, row, v ? L->krank - 1 : L->krank, L->kshape, 2, L->kst, off);
    if (v && L->group == reduce_group && single_kind(L->n->op) >= 0) {
        vb V = {.L = L, .kind = single_kind(L->n->op)};
        V.at = acc_type(kc, L, V.kind);
        V.buf = entry_alloca(kc, LLVMArrayType(V.at, VB_COLS));
        V.ibuf = is_arg(V.kind) ? entry_alloca(kc, LLVMArrayType(kc->cg->t_i64, VB_COLS)) : NULL;
        loop LC;
        LLVMValueRef cb = loop_begin(kc, &LC, c0, c1, 1);
        LLVMValueRef ce = smin64(kc, LLVMBuildNSWAdd(kc->b, cb, I64(kc, VB_COLS), ""), c1);
        vb_block(kc, &V, off[0], off[1], cb, ce);
        LC.step = VB_COLS;   /* while (cb < c1) ... cb += VB_COLS */
        loop_end(kc, &LC);
    } else if (v) {
        for (strip S = {.lo = c0, .hi = c1, .vec = true}; strip_next(kc, &S);)
            L->group(kc, L, S.lanes, LLVMBuildNSWAdd(kc->b, off[0], S.c, ""), LLVMBuildNSWAdd(kc->b, off[1], S.c, ""));
    } else {
        L->group(kc, L, 1, off[0], off[1]);
    }
    loop_end(kc, &LR);
}

static void run_lines(kctx *kc, lines *L, group_fn group)
{
    L->group = group;
    bool v = L->mode == 'V';
    int64_t rows = prod(v ? L->krank - 1 : L->krank, L->kshape);
    int64_t cols = v ? L->kshape[L->krank - 1] : 1;
    int64_t c = L->count > 0 ? L->count : 1;
    run_ranged(kc, lines_range, L, rows, cols, rows * cols * c, kc->W,
               L->group == reduce_group && single_kind(L->n->op) >= 0 ? VB_COLS : 4 * kc->W);
}

static void emit_reduce(kctx *kc)
{
    const ir_node *n = kc->root, *x = input(kc, n, 0);
    bool line_dim[R] = {false};
    for (int k = 0; k < n->nlist; k++)
        line_dim[n->list[k]] = true;
    lines *L = lines_new(kc, x, line_dim, false, NULL, NULL);
    bool ext = n->op == OP_max || n->op == OP_min || n->op == OP_argmax || n->op == OP_argmin;
    if (ext && L->count == 0) {
        fail_if(kc, n, LLVMConstInt(kc->cg->t_i1, 1, 0), "reduction over an empty dimension has no identity", NULL, 0);
        return;
    }
    run_lines(kc, L, reduce_group);
}

static void emit_softmax(kctx *kc)
{
    const ir_node *n = kc->root, *x = input(kc, n, 0);
    bool line_dim[R] = {false};
    if (x->rank > 0)
        line_dim[n->i[0] < 0 ? n->i[0] + x->rank : n->i[0]] = true;
    run_lines(kc, lines_new(kc, x, line_dim, true, NULL, NULL), softmax_group);
}

static void emit_layer_norm(kctx *kc)
{
    const ir_node *n = kc->root, *x = input(kc, n, 0);
    bool line_dim[R] = {false};
    line_dim[x->rank - 1] = true;
    run_lines(kc, lines_new(kc, x, line_dim, true, input(kc, n, 1), input(kc, n, 2)), lnorm_group);
}

/* v < 0 || v >= size, for a label or index v */
static LLVMValueRef out_of_range(kctx *kc, LLVMValueRef v, int64_t size)
{
    LLVMBuilderRef b = kc->b;
    return LLVMBuildOr(b, LLVMBuildICmp(b, LLVMIntSLT, v, I64(kc, 0), ""), LLVMBuildICmp(b, LLVMIntSGE, v, I64(kc, size), ""), "");
}

/* mean over rows of logsumexp(row) - row[label], with the label checked per row */
static void emit_cross_entropy(kctx *kc)
{
    LLVMBuilderRef b = kc->b;
    const ir_node *n = kc->root, *x = input(kc, n, 0), *lab = input(kc, n, 1);
    bool line_dim[R] = {false, true};
    lines *L = lines_new(kc, x, line_dim, false, NULL, NULL);
    if (L->mode == 'V')
        L->mode = 'S';
    src ls;
    src_of(kc, n->in[1], &ls);
    int64_t rows = x->shape[0], classes = x->shape[1];
    LLVMValueRef total = entry_alloca(kc, kc->cg->t_f64);
    LLVMBuildStore(b, LLVMConstReal(kc->cg->t_f64, 0), total);
    loop LR;
    LLVMValueRef i = loop_begin(kc, &LR, I64(kc, 0), I64(kc, rows), 1);
    LLVMValueRef lpos = LLVMBuildNSWAdd(b, I64(kc, lab->offset), LLVMBuildNSWMul(b, i, I64(kc, ls.imm ? 0 : lab->strides[0]), ""), "");
    LLVMValueRef y = cvt(kc, read_src(kc, &ls, lpos, 1, 0), lab->dtype, DT_I64, 1);
    LLVMValueRef args[3] = {y, i, I64(kc, classes)};
    fail_if(kc, n, out_of_range(kc, y, classes), "label %lld (row %lld) out of range [0, %lld)", args, 3);
    int64_t xs0 = L->x.imm ? 0 : x->strides[0], xs1 = L->x.imm ? 0 : x->strides[1];
    LLVMValueRef xoff = LLVMBuildNSWAdd(b, I64(kc, x->offset), LLVMBuildNSWMul(b, i, I64(kc, xs0), ""), "");
    LLVMValueRef lse = line_logsumexp(kc, L, 1, xoff, NULL);
    LLVMValueRef xl = read_src(kc, &L->x, LLVMBuildNSWAdd(b, xoff, LLVMBuildNSWMul(b, y, I64(kc, xs1), ""), ""), 1, 0);
    LLVMValueRef t = LLVMBuildFSub(b, lse, to_f64(kc, xl, x->dtype, 1), "");
    LLVMBuildStore(b, LLVMBuildFAdd(b, LLVMBuildLoad2(b, kc->cg->t_f64, total, ""), t, ""), total);
    loop_end(kc, &LR);
    LLVMValueRef r = LLVMBuildFDiv(b, LLVMBuildLoad2(b, kc->cg->t_f64, total, ""), LLVMConstReal(kc->cg->t_f64, (double)rows), "");
    store_elems(kc, kc->out, n->dtype, I64(kc, n->offset), 1, 1, cvt(kc, r, DT_F64, n->dtype, 1));
}

/* ---- copies with checks ---- */
static void emit_one_hot(kctx *kc)
{
    LLVMBuilderRef b = kc->b;
    const ir_node *n = kc->root, *lab = input(kc, n, 0);
    src ls;
    src_of(kc, n->in[0], &ls);
    int64_t classes = n->shape[n->rank - 1], cs = n->strides[n->rank - 1];
    int64_t st[2][R];
    for (int d = 0; d < lab->rank; d++) {
        st[0][d] = ls.imm ? 0 : lab->strides[d];
        st[1][d] = n->strides[d];
    }
    LLVMValueRef base[2] = {I64(kc, lab->offset), I64(kc, n->offset)}, off[2];
    nest N;
    nest_open(kc, &N, lab->rank, lab->shape, 2, st, base, off);
    LLVMValueRef y = cvt(kc, read_src(kc, &ls, off[0], 1, 0), lab->dtype, DT_I64, 1);
    LLVMValueRef args[2] = {y, I64(kc, classes)};
    fail_if(kc, n, out_of_range(kc, y, classes), "label %lld out of range [0, %lld)", args, 2);
    for (strip S = {.lo = I64(kc, 0), .hi = I64(kc, classes), .vec = cs == 1 && kc->W >= 2}; strip_next(kc, &S);) {
        LLVMValueRef eq = LLVMBuildICmp(b, LLVMIntEQ, lane_index(kc, S.c, S.lanes), splat(kc, y, S.lanes), "");
        LLVMValueRef pos = LLVMBuildNSWAdd(b, off[1], LLVMBuildNSWMul(b, S.c, I64(kc, cs), ""), "");
        store_elems(kc, kc->out, n->dtype, pos, S.lanes, cs, cvt(kc, eq, DT_BOOL, n->dtype, S.lanes));
    }
    nest_close(kc, &N);
}

static LLVMValueRef copy_elem(kctx *kc, pw *P, int lanes, LLVMValueRef *vals, LLVMValueRef row, LLVMValueRef col)
{
    return vals[1];
}

/* a strided copy of x (shape x_shape) into the kernel's output: pw with two operands */
static pw *copy_pw(kctx *kc, int rank, const int64_t *shape, const src *xs, int64_t xoff, const int64_t *xst,
                   int64_t ooff, const int64_t *ost)
{
    pw *P = arena_alloc(kc->cg->ar, sizeof *P);
    P->rank = rank;
    for (int d = 0; d < rank; d++) {
        P->shape[d] = shape[d];
        P->st[0][d] = ost[d];
        P->st[1][d] = xst[d];
    }
    P->nops = 2;
    P->s[0] = (src){false, 0, -1, kc->root->dtype};
    P->s[1] = *xs;
    P->off[0] = ooff;
    P->off[1] = xoff;
    P->elem = copy_elem;
    pw_prepare(P);
    return P;
}

static void emit_concat(kctx *kc)
{
    const ir_node *n = kc->root;
    int axis = (int)n->i[0];
    int64_t at = 0;
    for (int k = 0; k < n->nin; k++) {
        const ir_node *x = input(kc, n, k);
        src xs;
        src_of(kc, n->in[k], &xs);
        if (prod(x->rank, x->shape) > 0) {
            pw *P = copy_pw(kc, x->rank, x->shape, &xs, x->offset, x->strides, n->offset + at * n->strides[axis], n->strides);
            pw_all(kc, P, NULL);
        }
        at += x->shape[axis];
    }
}

static LLVMValueRef read_index(kctx *kc, const src *is, const ir_node *idx, LLVMValueRef off)
{
    return cvt(kc, read_src(kc, is, off, 1, 0), idx->dtype, DT_I64, 1);
}

/* i + size when negative (index_add, like index); else i */
static LLVMValueRef wrap_index(kctx *kc, LLVMValueRef i, int64_t size, bool wrap)
{
    LLVMBuilderRef b = kc->b;
    if (!wrap)
        return i;
    return LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSLT, i, I64(kc, 0), ""), LLVMBuildAdd(b, i, I64(kc, size), ""), i, "");
}

/* fails the kernel unless j (index i, wrapped) is in [0, size) */
static void check_index(kctx *kc, LLVMValueRef i, LLVMValueRef j, int axis, int64_t size)
{
    LLVMValueRef args[3] = {i, I32(kc, axis), I64(kc, size)};
    fail_if(kc, kc->root, out_of_range(kc, j, size), "index %lld out of range for axis %d of size %lld", args, 3);
}

/* out = x.shape[:axis] + idx.shape + x.shape[axis+1:]; negative indices wrap */
static void emit_index(kctx *kc)
{
    LLVMBuilderRef b = kc->b;
    const ir_node *n = kc->root, *x = input(kc, n, 0), *idx = input(kc, n, 1);
    int axis = (int)n->i[0], ir = idx->rank;
    src xs, is;
    src_of(kc, n->in[0], &xs);
    src_of(kc, n->in[1], &is);
    int64_t size = x->shape[axis];
    int64_t shape[R], st[3][R];
    int r = 0;
    for (int d = 0; d < axis; d++, r++) {
        shape[r] = x->shape[d];
        st[0][r] = x->strides[d];
        st[1][r] = 0;
        st[2][r] = n->strides[d];
    }
    for (int d = 0; d < ir; d++, r++) {
        shape[r] = idx->shape[d];
        st[0][r] = 0;
        st[1][r] = is.imm ? 0 : idx->strides[d];
        st[2][r] = n->strides[axis + d];
    }
    LLVMValueRef base[3] = {I64(kc, x->offset), I64(kc, idx->offset), I64(kc, n->offset)}, off[3];
    nest N;
    nest_open(kc, &N, r, shape, 3, st, base, off);
    LLVMValueRef i = read_index(kc, &is, idx, off[1]), j = wrap_index(kc, i, size, true);
    check_index(kc, i, j, axis, size);
    LLVMValueRef xbase = LLVMBuildNSWAdd(b, off[0], LLVMBuildNSWMul(b, j, I64(kc, xs.imm ? 0 : x->strides[axis]), ""), "");
    /* the rest of x's dims, copied row by row */
    int64_t bshape[R], bxs[R], bos[R];
    int br = 0;
    for (int d = axis + 1; d < x->rank; d++, br++) {
        bshape[br] = x->shape[d];
        bxs[br] = x->strides[d];
        bos[br] = n->strides[axis + ir + br];
    }
    pw *P = copy_pw(kc, br, bshape, &xs, 0, bxs, 0, bos);
    LLVMValueRef pb[2] = {off[2], xbase};
    pw_all(kc, P, pb);
    nest_close(kc, &N);
}

/* torch.gather: out[..i..] = x[..idx[..i..] at axis..]; indices must be in [0, size) */
static void emit_gather(kctx *kc)
{
    LLVMBuilderRef b = kc->b;
    const ir_node *n = kc->root, *x = input(kc, n, 0), *idx = input(kc, n, 1);
    int axis = (int)n->i[0];
    src xs, is;
    src_of(kc, n->in[0], &xs);
    src_of(kc, n->in[1], &is);
    int64_t size = x->shape[axis];
    int64_t st[3][R];
    for (int d = 0; d < n->rank; d++) {
        st[0][d] = d == axis || xs.imm ? 0 : x->strides[d];
        st[1][d] = is.imm ? 0 : idx->strides[d];
        st[2][d] = n->strides[d];
    }
    LLVMValueRef base[3] = {I64(kc, x->offset), I64(kc, idx->offset), I64(kc, n->offset)}, off[3];
    nest N;
    nest_open(kc, &N, n->rank, n->shape, 3, st, base, off);
    LLVMValueRef i = read_index(kc, &is, idx, off[1]);
    check_index(kc, i, i, axis, size);
    LLVMValueRef pos = LLVMBuildNSWAdd(b, off[0], LLVMBuildNSWMul(b, i, I64(kc, xs.imm ? 0 : x->strides[axis]), ""), "");
    store_elems(kc, kc->out, n->dtype, off[2], 1, 1, read_src(kc, &xs, pos, 1, 0));
    nest_close(kc, &N);
}

/* ---- scatters (index_add, gather_add, slice_scatter): zeros, then the source added in ---- */
static LLVMValueRef zero_elem(kctx *kc, pw *P, int lanes, LLVMValueRef *vals, LLVMValueRef row, LLVMValueRef col)
{
    return value_const(kc, kc->root->dtype, 0, lanes);
}

static void zero_output(kctx *kc)
{
    pw *P = out_pw(kc, zero_elem);
    pw_prepare(P);
    pw_all(kc, P, NULL);
}

/* Every index checked against [0, size) in idx's row-major order, before anything is
 * written (as ir_eval does): a bad one fails the kernel and leaves nothing allocated. */
static void check_indices(kctx *kc, const ir_node *idx, const src *is, int axis, int64_t size, bool wrap)
{
    int64_t st[1][R];
    for (int d = 0; d < idx->rank; d++)
        st[0][d] = is->imm ? 0 : idx->strides[d];
    LLVMValueRef base[1] = {I64(kc, idx->offset)}, off[1];
    nest N;
    nest_open(kc, &N, idx->rank, idx->shape, 1, st, base, off);
    LLVMValueRef i = read_index(kc, is, idx, off[0]);
    check_index(kc, i, wrap_index(kc, i, size, wrap), axis, size);
    nest_close(kc, &N);
}

static LLVMValueRef libc_call(kctx *kc, const char *name, LLVMValueRef arg)
{
    cg_llvm *cg = kc->cg;
    bool is_malloc = strcmp(name, "malloc") == 0;
    LLVMTypeRef pt = is_malloc ? cg->t_i64 : cg->t_ptr;
    LLVMTypeRef fty = LLVMFunctionType(is_malloc ? cg->t_ptr : cg->t_void, &pt, 1, 0);
    LLVMValueRef fn = LLVMGetNamedFunction(cg->mod, name);
    if (!fn)
        fn = LLVMAddFunction(cg->mod, name, fty);
    return LLVMBuildCall2(kc->b, fty, fn, &arg, 1, "");
}

/* Sums src into the output at (src's position under ost) + index * the output's stride
 * along axis: floats in f64 (a malloc'ed accumulator laid out like the output unless it
 * is f64 itself) rounded once at the end, as `sum` does and ir_eval; integers wrap. The
 * index is read through ist (both iterate src's shape); every index is checked first,
 * even when the output is empty. */
static void scatter_add(kctx *kc, const ir_node *srcn, const src *ss, const ir_node *idx, const src *is,
                        const int64_t *ist, const int64_t *ost, int axis, bool wrap)
{
    LLVMBuilderRef b = kc->b;
    const ir_node *n = kc->root;
    int64_t size = n->shape[axis];
    if (prod(srcn->rank, srcn->shape) > 0)
        check_indices(kc, idx, is, axis, size, wrap);
    if (prod(n->rank, n->shape) == 0)
        return;
    bool scratch = isf(n->dtype) && n->dtype != DT_F64;
    ir_dtype at = isf(n->dtype) ? DT_F64 : n->dtype;
    /* the accumulator's extent: the output's storage span (offset and strides kept) */
    int64_t span = n->offset + 1;
    for (int d = 0; d < n->rank; d++)
        span += (n->shape[d] - 1) * n->strides[d];
    LLVMValueRef acc = kc->out;
    if (scratch) {   /* the memory plan's scratch slot in the arena, or (no plan) the heap */
        if (kc->scratch >= 0) {
            LLVMTypeRef fty;
            LLVMValueRef fn = cg_runtime_fn(kc->cg, "tdsl_rt_arena", &fty);
            LLVMValueRef base = LLVMBuildCall2(b, fty, fn, &kc->inst, 1, ""), off = I64(kc, kc->scratch);
            acc = LLVMBuildInBoundsGEP2(b, kc->cg->t_i8, base, &off, 1, "scratch");
        } else {
            acc = libc_call(kc, "malloc", I64(kc, span * 8));
            LLVMValueRef none = LLVMBuildICmp(b, LLVMIntEQ, acc, LLVMConstNull(kc->cg->t_ptr), "");
            LLVMValueRef args[1] = {I64(kc, span)};
            fail_if(kc, n, none, "out of memory for a %lld-element accumulator", args, 1);
        }
    }
    /* zero it over the output's layout */
    int64_t zst[1][R];
    memcpy(zst[0], n->strides, sizeof zst[0]);
    LLVMValueRef zb[1] = {I64(kc, n->offset)}, zo[1];
    nest Z;
    nest_open(kc, &Z, n->rank, n->shape, 1, zst, zb, zo);
    store_elems(kc, acc, at, zo[0], 1, 1, value_const(kc, at, 0, 1));
    nest_close(kc, &Z);
    /* accumulate, in src's row-major order */
    int64_t st[3][R];
    for (int d = 0; d < srcn->rank; d++) {
        st[0][d] = ss->imm ? 0 : srcn->strides[d];
        st[1][d] = is->imm ? 0 : ist[d];
        st[2][d] = ost[d];
    }
    LLVMValueRef base[3] = {I64(kc, srcn->offset), I64(kc, idx->offset), I64(kc, n->offset)}, off[3];
    nest N;
    nest_open(kc, &N, srcn->rank, srcn->shape, 3, st, base, off);
    LLVMValueRef j = wrap_index(kc, read_index(kc, is, idx, off[1]), size, wrap);
    LLVMValueRef pos = LLVMBuildNSWAdd(b, off[2], LLVMBuildNSWMul(b, j, I64(kc, n->strides[axis]), ""), "");
    LLVMValueRef v = cvt(kc, read_src(kc, ss, off[0], 1, 0), srcn->dtype, at, 1);
    LLVMValueRef old = load_elems(kc, acc, at, pos, 1, 0);
    store_elems(kc, acc, at, pos, 1, 1, isf(at) ? LLVMBuildFAdd(b, old, v, "") : LLVMBuildAdd(b, old, v, ""));
    nest_close(kc, &N);
    if (!scratch)
        return;
    /* round once into the output */
    LLVMValueRef rb[1] = {I64(kc, n->offset)}, ro[1];
    nest_open(kc, &Z, n->rank, n->shape, 1, zst, rb, ro);
    LLVMValueRef s = load_elems(kc, acc, DT_F64, ro[0], 1, 0);
    store_elems(kc, kc->out, n->dtype, ro[0], 1, 1, cvt(kc, s, DT_F64, n->dtype, 1));
    nest_close(kc, &Z);
    if (kc->scratch < 0)
        libc_call(kc, "free", acc);
}

/* index_add: src = out.shape[:axis] + idx.shape + out.shape[axis+1:];
 * out[.., wrap(idx[p]), ..] += src[.., p, ..] */
static void emit_index_add(kctx *kc)
{
    const ir_node *n = kc->root, *s = input(kc, n, 0), *idx = input(kc, n, 1);
    int axis = (int)n->i[0], ir = idx->rank;
    src ss, is;
    src_of(kc, n->in[0], &ss);
    src_of(kc, n->in[1], &is);
    int64_t ist[R], ost[R];
    for (int d = 0; d < s->rank; d++) {
        bool in_idx = d >= axis && d < axis + ir;
        ist[d] = in_idx ? idx->strides[d - axis] : 0;
        ost[d] = d < axis ? n->strides[d] : in_idx ? 0 : n->strides[d - ir + 1];
    }
    scatter_add(kc, s, &ss, idx, &is, ist, ost, axis, true);
}

/* gather_add: out[..idx[p] at axis..] += src[p], src and idx of one shape */
static void emit_gather_add(kctx *kc)
{
    const ir_node *n = kc->root, *s = input(kc, n, 0), *idx = input(kc, n, 1);
    int axis = (int)n->i[0];
    src ss, is;
    src_of(kc, n->in[0], &ss);
    src_of(kc, n->in[1], &is);
    int64_t ost[R];
    for (int d = 0; d < n->rank; d++)
        ost[d] = d == axis ? 0 : n->strides[d];
    scatter_add(kc, s, &ss, idx, &is, idx->strides, ost, axis, false);
}

/* slice_scatter: zeros, then src copied to start:stop:step along axis */
static void emit_slice_scatter(kctx *kc)
{
    const ir_node *n = kc->root, *s = input(kc, n, 0);
    int axis = (int)n->i[0];
    zero_output(kc);
    if (prod(s->rank, s->shape) == 0)
        return;
    src ss;
    src_of(kc, n->in[0], &ss);
    int64_t ost[R];
    memcpy(ost, n->strides, sizeof ost);
    ost[axis] *= n->i[3];
    pw *P = copy_pw(kc, s->rank, s->shape, &ss, s->offset, s->strides, n->offset + n->i[1] * n->strides[axis], ost);
    pw_all(kc, P, NULL);
}

/* ---- entry points ---- */
int cg_kernel_inputs(const ir_func *f, const pass_kernel *k, int *storages)
{
    int n = 0;
    int root_storage = f->nodes[k->root].storage;
    for (int m = 0; m < k->nmembers; m++) {
        const ir_node *x = &f->nodes[k->members[m]];
        for (int i = 0; i < x->nin; i++) {
            int id = x->in[i];
            if (member_index(k, id) >= 0)
                continue;
            int sid = f->nodes[id].storage;
            if (f->nodes[sid].op == OP_constant || sid == root_storage)
                continue;
            bool dup = false;
            for (int j = 0; j < n && !dup; j++)
                dup = storages[j] == sid;
            if (dup)
                continue;
            if (n == MAX_IN)
                return -1;
            storages[n++] = sid;
        }
    }
    return n;
}

static bool same_dims(const ir_node *a, const ir_node *b)
{
    if (a->rank != b->rank)
        return false;
    for (int d = 0; d < a->rank; d++)
        if (a->shape[d] != b->shape[d])
            return false;
    return true;
}

static bool pointwise_op(ir_opcode op) { return (ir_ops[op].flags & OPF_ELEM) || op == OP_copy; }

/* what this file can generate: checked before any IR is emitted */
static bool supported(const kctx *kc)
{
    const pass_kernel *k = kc->k;
    const ir_node *root = kc->root;
    if (kc->nin < 0 || k->nmembers < 1 || k->members[k->nmembers - 1] != k->root || (unsigned)root->dtype >= DT_COUNT)
        return false;
    if (k->nmembers > 1 || pointwise_op(root->op)) {
        for (int m = 0; m < k->nmembers; m++) {
            const ir_node *n = node(kc, k->members[m]);
            if (!pointwise_op(n->op) || !same_dims(n, root) || n->nin > 4 || (n->op == OP_div && !isf(n->dtype)))
                return false;   /* integer division is not an IR op (lowering casts first) */
            for (int i = 0; i < n->nin; i++) {
                if (member_index(k, n->in[i]) >= 0)
                    continue;
                const ir_node *x = node(kc, n->in[i]);
                if (!same_dims(x, root))
                    return false;
                /* a view of a fused member has no storage to read */
                if (member_index(k, x->storage) >= 0 && x->storage != k->root)
                    return false;
            }
        }
        return true;
    }
    switch (root->op) {
    case OP_full:
    case OP_arange:
    case OP_eye:
    case OP_softmax:
    case OP_log_softmax:
    case OP_one_hot:
    case OP_concat:
    case OP_gather:
        return true;
    case OP_cross_entropy: return input(kc, root, 0)->rank == 2 && input(kc, root, 1)->rank == 1;
    case OP_layer_norm: return input(kc, root, 0)->rank >= 1;
    case OP_index: {
        const ir_node *x = input(kc, root, 0);
        return root->i[0] >= 0 && root->i[0] < x->rank;
    }
    case OP_index_add:
    case OP_gather_add:
    case OP_slice_scatter: return root->i[0] >= 0 && root->i[0] < root->rank;
    default: return (ir_ops[root->op].flags & OPF_REDUCE) != 0;
    }
}

static bool can_fail(const kctx *kc)
{
    const ir_node *root = kc->root;
    switch (root->op) {
    case OP_cross_entropy:
    case OP_one_hot:
    case OP_index:
    case OP_gather:
    case OP_index_add:   /* an index out of range, or no memory for the f64 accumulator */
    case OP_gather_add:
        return true;
    case OP_max:
    case OP_min:
    case OP_argmax:
    case OP_argmin: {
        const ir_node *x = input(kc, root, 0);
        int64_t count = 1;
        for (int k = 0; k < root->nlist; k++)
            count *= x->shape[root->list[k]];
        return count == 0 && prod(root->rank, root->shape) > 0;
    }
    default: break;
    }
    for (int m = 0; m < kc->k->nmembers; m++) {
        const ir_node *n = node(kc, kc->k->members[m]);
        if (n->op == OP_mod && !isf(n->dtype))
            return true;
    }
    return false;
}

/* Emits kernel k of f. Returns the function, or NULL for a kernel this backend cannot
 * generate (an internal error for the caller to report). The function returns void, or
 * i32 when the kernel can fail at run time (a label or index out of range, an integer
 * remainder by zero, a max/argmax over an empty dim): 0, or the status of the
 * tdsl_rt_fail call it made. */
LLVMValueRef cg_emit_kernel(cg_llvm *cg, const ir_func *f, const pass_schedule *s, int k, const char *name,
                            bool aliased, int64_t scratch)
{
    if (!cg || !f || !s || !name || k < 0 || k >= s->nkernels)
        return NULL;
    const pass_kernel *kr = &s->kernels[k];
    if (kr->root < 0 || kr->root >= f->nnodes)
        return NULL;
    if (f->nodes[kr->root].op == OP_matmul && kr->nmembers == 1)
        return cg_emit_matmul(cg, f, kr->root, name);
    kctx kc;
    memset(&kc, 0, sizeof kc);
    kc.cg = cg;
    kc.b = cg->b;
    kc.aliased = aliased;
    kc.scratch = scratch;
    kc.f = f;
    kc.k = kr;
    kc.root = &f->nodes[kr->root];
    kc.name = name;
    kc.nin = cg_kernel_inputs(f, kr, kc.ins);
    kc.W = cg->vector_bits >= 512 ? 16 : cg->vector_bits >= 256 ? 8 : 4;
    if (!supported(&kc))
        return NULL;
    kc.status = can_fail(&kc);
    LLVMValueRef fn = add_kernel_fn(&kc, name, kc.status ? cg->t_i32 : cg->t_void, 0);
    bind_params(&kc, fn);
    LLVMPositionBuilderAtEnd(kc.b, block(&kc, "entry"));
    const ir_node *root = kc.root;
    bool ok = true;
    /* an index_add/gather_add into an empty axis still checks (and rejects) its indices */
    bool scatter = root->op == OP_index_add || root->op == OP_gather_add;
    if (prod(root->rank, root->shape) > 0 || scatter) {
        if (kr->nmembers > 1 || pointwise_op(root->op))
            ok = emit_pointwise(&kc);
        else if (ir_ops[root->op].flags & OPF_REDUCE)
            emit_reduce(&kc);
        else
            switch (root->op) {
            case OP_full:
            case OP_arange:
            case OP_eye: emit_fill(&kc); break;
            case OP_softmax:
            case OP_log_softmax: emit_softmax(&kc); break;
            case OP_layer_norm: emit_layer_norm(&kc); break;
            case OP_cross_entropy: emit_cross_entropy(&kc); break;
            case OP_one_hot: emit_one_hot(&kc); break;
            case OP_concat: emit_concat(&kc); break;
            case OP_index: emit_index(&kc); break;
            case OP_gather: emit_gather(&kc); break;
            case OP_index_add: emit_index_add(&kc); break;
            case OP_gather_add: emit_gather_add(&kc); break;
            case OP_slice_scatter: emit_slice_scatter(&kc); break;
            default: ok = false; break;
            }
    }
    if (!ok) {
        LLVMDeleteFunction(fn);
        return NULL;
    }
    if (kc.status)
        LLVMBuildRet(kc.b, I32(&kc, 0));
    else
        LLVMBuildRetVoid(kc.b);
    return fn;
}
