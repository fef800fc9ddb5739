/* The CPU backend's driver: one LLVM module per tdsl module. For each function it runs
 * schedule and memplan (passes/), emits a kernel per scheduled kernel (llvm_kernels.c),
 * the copy-outs (llvm_copy.c) and the C-callable export `<mod>_<fn>`; then the instance
 * functions of spec section 4 (`<mod>_create`, ...), which call libtdslrt through the ABI
 * of tdsl/runtime.h. The module is verified and optimized with the new pass manager
 * ("default<ON>") using the target machine, so the vectorizers see the real target. */
#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <llvm-c/Analysis.h>
#include <llvm-c/Target.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include "llvm_internal.h"

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    /* one line: LLVM messages may span several */
    char *nl = strchr(err, '\n');
    if (nl)
        *nl = '\0';
}

/* ---- target selection ----
 * The x86-64 CPUs LLVM 16 knows (llc -mcpu=help, 64-bit capable ones) and the widest
 * vector each supports by default (clang -march=NAME: __AVX512F__ 512, __AVX__ 256). The
 * C API cannot ask LLVM whether a name is valid (it only warns on stderr), so a table
 * gives `--cpu foo` a clear error instead. */
static const struct { const char *name; short bits; } known_cpus[] = {
    {"alderlake", 256}, {"amdfam10", 128}, {"athlon-fx", 128}, {"athlon64", 128},
    {"athlon64-sse3", 128}, {"atom", 128}, {"barcelona", 128}, {"bdver1", 256}, {"bdver2", 256},
    {"bdver3", 256}, {"bdver4", 256}, {"bonnell", 128}, {"broadwell", 256}, {"btver1", 128},
    {"btver2", 256}, {"cannonlake", 512}, {"cascadelake", 512}, {"cooperlake", 512},
    {"core-avx-i", 256}, {"core-avx2", 256}, {"core2", 128}, {"corei7", 128}, {"corei7-avx", 256},
    {"emeraldrapids", 512}, {"generic", 128}, {"goldmont", 128}, {"goldmont-plus", 128},
    {"grandridge", 256}, {"graniterapids", 512}, {"haswell", 256}, {"icelake-client", 512},
    {"icelake-server", 512}, {"ivybridge", 256}, {"k8", 128}, {"k8-sse3", 128}, {"knl", 512},
    {"knm", 512}, {"meteorlake", 256}, {"nehalem", 128}, {"nocona", 128}, {"opteron", 128},
    {"opteron-sse3", 128}, {"penryn", 128}, {"raptorlake", 256}, {"rocketlake", 512},
    {"sandybridge", 256}, {"sapphirerapids", 512}, {"sierraforest", 256}, {"silvermont", 128},
    {"skx", 512}, {"skylake", 256}, {"skylake-avx512", 512}, {"slm", 128}, {"tigerlake", 512},
    {"tremont", 128}, {"westmere", 128}, {"x86-64", 128}, {"x86-64-v2", 128}, {"x86-64-v3", 256},
    {"x86-64-v4", 512}, {"znver1", 256}, {"znver2", 256}, {"znver3", 256}, {"znver4", 512},
};

/* the widest vector of a CPU in the table, or 0 for a name LLVM 16 does not know */
static int cpu_vector_bits(const char *name)
{
    for (size_t k = 0; k < sizeof known_cpus / sizeof *known_cpus; k++)
        if (!strcmp(known_cpus[k].name, name))
            return known_cpus[k].bits;
    return 0;
}

int cg_check_cpu(const char *cpu, char *err, size_t errlen)
{
    if (!cpu || !strcmp(cpu, "native") || cpu_vector_bits(cpu))
        return 0;
    set_err(err, errlen, "unknown CPU '%s' (use native, x86-64-v3, x86-64-v4 or an LLVM x86-64 CPU name)", cpu);
    return -1;
}

/* true when the comma-separated feature list enables `feat` ("+avx512f") exactly */
static bool has_feature(const char *features, const char *feat)
{
    size_t n = strlen(feat);
    for (const char *p = features; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && memcmp(p, feat, n) == 0)
            return true;
        p = e ? e + 1 : NULL;
    }
    return false;
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static void init_llvm(void)
{
    LLVMInitializeNativeTarget();
    LLVMInitializeNativeAsmPrinter();
}

/* ---- helpers shared by the backend files ---- */
LLVMTypeRef cg_storage_type(cg_llvm *cg, ir_dtype t)
{
    switch (t) {
    case DT_BOOL: return cg->t_i8;
    case DT_I32: return cg->t_i32;
    case DT_I64: return cg->t_i64;
    case DT_F16:
    case DT_BF16: return cg->t_i16;
    case DT_F32: return cg->t_f32;
    case DT_F64: return cg->t_f64;
    default: return NULL;
    }
}

LLVMTypeRef cg_compute_type(cg_llvm *cg, ir_dtype t)
{
    switch (t) {
    case DT_BOOL: return cg->t_i1;
    case DT_F16:
    case DT_BF16: return cg->t_f32;
    default: return cg_storage_type(cg, t);
    }
}

/* %struct.tdsl_tensor of tdsl/runtime.h: {name, dtype, rank, shape[8], strides[8], data} */
static LLVMTypeRef tensor_type(cg_llvm *cg)
{
    LLVMTypeRef t = LLVMGetTypeByName2(cg->ctx, "tdsl_tensor");
    if (t)
        return t;
    t = LLVMStructCreateNamed(cg->ctx, "tdsl_tensor");
    LLVMTypeRef dims = LLVMArrayType(cg->t_i64, TDSL_MAX_RANK);
    LLVMTypeRef el[] = {cg->t_ptr, cg->t_i32, cg->t_i32, dims, dims, cg->t_ptr};
    LLVMStructSetBody(t, el, 6, 0);
    return t;
}

static unsigned attr_kind(const char *name) { return LLVMGetEnumAttributeKindForName(name, strlen(name)); }

/* The runtime ABI (tdsl/runtime.h), as LLVM function types. `int` is i32 and every
 * pointer is `ptr` (x86-64 SysV). tdsl_rt_param returns a 152-byte struct: in memory,
 * through a hidden first `sret` pointer. */
static LLVMTypeRef runtime_fn_type(cg_llvm *cg, const char *name)
{
    LLVMTypeRef P = cg->t_ptr, I = cg->t_i32, L = cg->t_i64, V = cg->t_void;
#define FT(ret, va, ...) LLVMFunctionType(ret, (LLVMTypeRef[]){__VA_ARGS__}, \
                                          sizeof((LLVMTypeRef[]){__VA_ARGS__}) / sizeof(LLVMTypeRef), va)
    static const char *const ptr_of_ptr[] = {"tdsl_rt_error", "tdsl_rt_arena", "tdsl_rt_state", "tdsl_rt_backup"};
    for (size_t k = 0; k < sizeof ptr_of_ptr / sizeof *ptr_of_ptr; k++)
        if (!strcmp(name, ptr_of_ptr[k]))
            return FT(P, 0, P);
    if (!strcmp(name, "tdsl_rt_create")) return FT(P, 0, P, P);
    if (!strcmp(name, "tdsl_rt_destroy")) return FT(V, 0, P);
    if (!strcmp(name, "tdsl_rt_clear_error")) return FT(V, 0, P);
    if (!strcmp(name, "tdsl_rt_fail")) return FT(I, 1, P, I, P);
    if (!strcmp(name, "tdsl_rt_param_data")) return FT(P, 0, P, I);
    if (!strcmp(name, "tdsl_rt_num_threads")) return FT(I, 0, P);
    if (!strcmp(name, "tdsl_rt_check_finite")) return FT(I, 0, P);
    if (!strcmp(name, "tdsl_rt_parallel_for")) return FT(V, 0, P, L, P, P);
    if (!strcmp(name, "tdsl_rt_save")) return FT(I, 0, P, P);
    if (!strcmp(name, "tdsl_rt_load")) return FT(I, 0, P, P);
    if (!strcmp(name, "tdsl_rt_param")) return FT(V, 0, P, P, I);
    if (!strcmp(name, "tdsl_rt_reset_params")) return FT(V, 0, P, L);
    if (!strcmp(name, "tdsl_status_name")) return FT(P, 0, I);
    if (!strcmp(name, "tdsl_dtype_name")) return FT(P, 0, I);
    if (!strcmp(name, "tdsl_dtype_size")) return FT(L, 0, I);
#undef FT
    return NULL;
}

LLVMValueRef cg_runtime_fn(cg_llvm *cg, const char *name, LLVMTypeRef *fn_type)
{
    LLVMValueRef fn = LLVMGetNamedFunction(cg->mod, name);
    if (!fn) {
        LLVMTypeRef ty = runtime_fn_type(cg, name);
        if (!ty)
            return NULL;
        fn = LLVMAddFunction(cg->mod, name, ty);
        LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(cg->ctx, attr_kind("nounwind"), 0));
        if (!strcmp(name, "tdsl_rt_param"))
            LLVMAddAttributeAtIndex(fn, 1, LLVMCreateTypeAttribute(cg->ctx, attr_kind("sret"), tensor_type(cg)));
    }
    if (fn_type)
        *fn_type = LLVMGlobalGetValueType(fn);
    return fn;
}

static LLVMValueRef call_rt(cg_llvm *cg, const char *name, LLVMValueRef *args, unsigned n)
{
    LLVMTypeRef ty = NULL;
    LLVMValueRef fn = cg_runtime_fn(cg, name, &ty);
    return LLVMBuildCall2(cg->b, ty, fn, args, n, "");
}

/* a private constant C string; with opaque pointers the global is the pointer */
static LLVMValueRef cstr(cg_llvm *cg, const char *s)
{
    LLVMValueRef init = LLVMConstStringInContext(cg->ctx, s, (unsigned)strlen(s), 0);
    LLVMValueRef g = LLVMAddGlobal(cg->mod, LLVMTypeOf(init), ".str");
    LLVMSetInitializer(g, init);
    LLVMSetGlobalConstant(g, 1);
    LLVMSetLinkage(g, LLVMPrivateLinkage);
    LLVMSetUnnamedAddress(g, LLVMGlobalUnnamedAddr);
    LLVMSetAlignment(g, 1);
    return g;
}

static LLVMValueRef i32c(cg_llvm *cg, long long v) { return LLVMConstInt(cg->t_i32, (unsigned long long)v, 1); }
static LLVMValueRef i64c(cg_llvm *cg, long long v) { return LLVMConstInt(cg->t_i64, (unsigned long long)v, 1); }

static LLVMValueRef add_fn(cg_llvm *cg, const char *name, LLVMTypeRef ret, LLVMTypeRef *params, unsigned n)
{
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, LLVMFunctionType(ret, params, n, 0));
    LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"));
    return fn;
}

static LLVMBasicBlockRef block(cg_llvm *cg, LLVMValueRef fn, const char *name)
{
    return LLVMAppendBasicBlockInContext(cg->ctx, fn, name);
}

/* if (p == NULL) return ret;  -- leaves the builder in the non-NULL path */
static void return_if_null(cg_llvm *cg, LLVMValueRef fn, LLVMValueRef p, LLVMValueRef ret)
{
    LLVMBasicBlockRef bad = block(cg, fn, "null"), ok = block(cg, fn, "ok");
    LLVMBuildCondBr(cg->b, LLVMBuildIsNull(cg->b, p, ""), bad, ok);
    LLVMPositionBuilderAtEnd(cg->b, bad);
    if (ret)
        LLVMBuildRet(cg->b, ret);
    else
        LLVMBuildRetVoid(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, ok);
}

/* if (p == NULL) return tdsl_rt_fail(inst, TDSL_ERR_NULL, "%s", msg); */
static void fail_if_null(cg_llvm *cg, LLVMValueRef fn, LLVMValueRef inst, LLVMValueRef p, const char *msg)
{
    LLVMBasicBlockRef bad = block(cg, fn, "null"), ok = block(cg, fn, "ok");
    LLVMBuildCondBr(cg->b, LLVMBuildIsNull(cg->b, p, ""), bad, ok);
    LLVMPositionBuilderAtEnd(cg->b, bad);
    LLVMValueRef a[] = {inst, i32c(cg, TDSL_ERR_NULL), cstr(cg, "%s"), cstr(cg, msg)};
    LLVMBuildRet(cg->b, call_rt(cg, "tdsl_rt_fail", a, 4));
    LLVMPositionBuilderAtEnd(cg->b, ok);
}

static bool is_c_ident(const char *s)
{
    if (!s || !(isalpha((unsigned char)*s) || *s == '_'))
        return false;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || *s == '_'))
            return false;
    return true;
}

/* ---- one export ---- */
typedef struct fn_plan {
    const ir_func *f;
    pass_schedule *s;
    pass_memplan *p;
    const int64_t *state_off;   /* byte offset of each module state in the state block */
} fn_plan;

static bool is_const_backed(const ir_func *f, int id) { return f->nodes[f->nodes[id].storage].op == OP_constant; }

static LLVMValueRef storage_base(cg_llvm *cg, LLVMValueRef fn, const fn_plan *fp, int sid, LLVMValueRef inst,
                                 LLVMValueRef *arena_ptr);

/* `i1 name(ptr p)`: whether any of the n dense elements of a float dtype is NaN or Inf
 * (all exponent bits set), as an integer OR-reduction the vectorizer takes. */
static LLVMValueRef emit_nonfinite_scan(cg_llvm *cg, const char *name, ir_dtype t, int64_t n)
{
    LLVMTypeRef it = t == DT_F64 ? cg->t_i64 : t == DT_F32 ? cg->t_i32 : cg->t_i16;
    unsigned long long mask = t == DT_F64 ? 0x7ff0000000000000ull : t == DT_F32 ? 0x7f800000u
                            : t == DT_F16 ? 0x7c00u : 0x7f80u;
    LLVMValueRef fn = add_fn(cg, name, cg->t_i1, &cg->t_ptr, 1);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    LLVMBasicBlockRef entry = LLVMGetInsertBlock(cg->b), loop = block(cg, fn, "loop"), done = block(cg, fn, "done");
    LLVMBuildBr(cg->b, loop);
    LLVMPositionBuilderAtEnd(cg->b, loop);
    LLVMValueRef i = LLVMBuildPhi(cg->b, cg->t_i64, "i"), acc = LLVMBuildPhi(cg->b, cg->t_i32, "acc");
    LLVMValueRef p = LLVMBuildInBoundsGEP2(cg->b, it, LLVMGetParam(fn, 0), &i, 1, "");
    LLVMValueRef bits = LLVMBuildLoad2(cg->b, it, p, "");
    LLVMValueRef m = LLVMConstInt(it, mask, 0);
    LLVMValueRef bad = LLVMBuildICmp(cg->b, LLVMIntEQ, LLVMBuildAnd(cg->b, bits, m, ""), m, "");
    LLVMValueRef acc2 = LLVMBuildOr(cg->b, acc, LLVMBuildZExt(cg->b, bad, cg->t_i32, ""), "");
    LLVMValueRef next = LLVMBuildNUWAdd(cg->b, i, i64c(cg, 1), "");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, next, i64c(cg, n), ""), loop, done);
    LLVMBasicBlockRef from[] = {entry, loop};
    LLVMAddIncoming(i, (LLVMValueRef[]){i64c(cg, 0), next}, from, 2);
    LLVMAddIncoming(acc, (LLVMValueRef[]){i32c(cg, 0), acc2}, from, 2);
    LLVMPositionBuilderAtEnd(cg->b, done);
    LLVMBuildRet(cg->b, LLVMBuildICmp(cg->b, LLVMIntNE, acc2, i32c(cg, 0), ""));
    return fn;
}

/* The param or state that update output o of fp's function commits to (computed in the
 * current block: callers may be in conditional blocks). */
static LLVMValueRef update_target(cg_llvm *cg, const fn_plan *fp, LLVMValueRef inst, int o)
{
    const ir_update *u = &fp->f->updates[o];
    if (u->kind == IR_UPD_PARAM) {
        LLVMValueRef a[] = {inst, i32c(cg, u->index)};
        return call_rt(cg, "tdsl_rt_param_data", a, 2);
    }
    LLVMValueRef off = i64c(cg, fp->state_off[u->index]);
    return LLVMBuildInBoundsGEP2(cg->b, cg->t_i8, call_rt(cg, "tdsl_rt_state", &inst, 1), &off, 1, "");
}

static int64_t output_bytes(const ir_func *f, int o)
{
    const ir_node *n = &f->nodes[f->outs[o]];
    return ir_numel(n) * (int64_t)ir_dtype_size(n->dtype);
}

/* Updates written in place (passes.h): with check_finite, save (to_backup) or restore
 * their old values, in the current block. */
static void copy_in_place_updates(cg_llvm *cg, const fn_plan *fp, LLVMValueRef inst, bool to_backup)
{
    LLVMValueRef bk = NULL;
    for (int o = ir_num_results(fp->f); o < fp->f->nouts; o++) {
        if (!fp->p->in_place[o])
            continue;
        if (!bk)
            bk = call_rt(cg, "tdsl_rt_backup", &inst, 1);
        LLVMValueRef off = i64c(cg, fp->p->backup[o]);
        LLVMValueRef saved = LLVMBuildInBoundsGEP2(cg->b, cg->t_i8, bk, &off, 1, "backup");
        LLVMValueRef target = update_target(cg, fp, inst, o), n = i64c(cg, output_bytes(fp->f, o));
        if (to_backup)
            LLVMBuildMemCpy(cg->b, saved, 64, target, 64, n);
        else
            LLVMBuildMemCpy(cg->b, target, 64, saved, 64, n);
    }
}

/* With tdsl_options.check_finite, a NaN or Inf in a float output is an error
 * (TDSL_ERR_NONFINITE naming the output); the outputs keep their values. ptrs[o]: where
 * output o's dense value is (the caller's buffer; a training step's update outputs: their
 * staging slots). A step checks before it commits, so a failing step changes no param or
 * state. */
static void emit_finite_checks(cg_llvm *cg, LLVMValueRef fn, const fn_plan *fp, LLVMValueRef inst, const char *ename,
                               LLVMValueRef *ptrs)
{
    const ir_func *f = fp->f;
    LLVMValueRef *scan = arena_alloc(cg->ar, sizeof *scan * (size_t)(f->nouts ? f->nouts : 1));
    bool any = false;
    for (int o = 0; o < f->nouts; o++) {
        const ir_node *n = &f->nodes[f->outs[o]];
        if (ir_dtype_is_float(n->dtype) && ir_numel(n) > 0) {
            LLVMBasicBlockRef here = LLVMGetInsertBlock(cg->b);
            scan[o] = emit_nonfinite_scan(cg, arena_printf(cg->ar, "%s__finite%d", ename, o), n->dtype, ir_numel(n));
            LLVMPositionBuilderAtEnd(cg->b, here);
            any = true;
        }
    }
    if (!any)
        return;
    LLVMBasicBlockRef check = block(cg, fn, "check_finite"), done = block(cg, fn, "finite");
    LLVMValueRef on = call_rt(cg, "tdsl_rt_check_finite", &inst, 1);
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntNE, on, i32c(cg, 0), ""), check, done);
    LLVMPositionBuilderAtEnd(cg->b, check);
    int nres = ir_num_results(f);
    const char *step = nres < f->nouts ? "; the step was not applied (params and state unchanged)" : "";
    for (int o = 0; o < f->nouts; o++) {
        if (!scan[o])
            continue;
        LLVMValueRef out = ptrs[o];
        LLVMValueRef bad = LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(scan[o]), scan[o], &out, 1, "");
        LLVMBasicBlockRef fail = block(cg, fn, "nonfinite"), next = block(cg, fn, "next");
        LLVMBuildCondBr(cg->b, bad, fail, next);
        LLVMPositionBuilderAtEnd(cg->b, fail);
        const char *msg;
        if (o < nres) {
            msg = arena_printf(cg->ar, "%s: output %d has NaN or Inf%s", ename, o, step);
        } else {
            const ir_update *u = &f->updates[o];
            bool is_param = u->kind == IR_UPD_PARAM;
            msg = arena_printf(cg->ar, "%s: the new value of %s '%s' has NaN or Inf%s", ename,
                               is_param ? "param" : "state",
                               is_param ? cg->irm->params[u->index].name : cg->irm->states[u->index].name, step);
        }
        copy_in_place_updates(cg, fp, inst, false);   /* the step leaves no trace */
        LLVMValueRef a[] = {inst, i32c(cg, TDSL_ERR_NONFINITE), cstr(cg, "%s"), cstr(cg, msg)};
        LLVMBuildRet(cg->b, call_rt(cg, "tdsl_rt_fail", a, 4));
        LLVMPositionBuilderAtEnd(cg->b, next);
    }
    LLVMBuildBr(cg->b, done);
    LLVMPositionBuilderAtEnd(cg->b, done);
}

/* Whether kernel kr's output shares memory with one of its inputs (the memory plan lets
 * an elementwise kernel write over an input it reads last, or an update over its param). */
static bool writes_over_input(const fn_plan *fp, const pass_kernel *kr)
{
    const ir_func *f = fp->f;
    const pass_mem *out = &fp->p->mem[f->nodes[kr->root].storage];
    int ins[64];
    int nin = cg_kernel_inputs(f, kr, ins);
    for (int j = 0; j < nin && j < 64; j++) {
        const pass_mem *in = &fp->p->mem[ins[j]];
        if (in->kind != out->kind || in->kind == MEM_NONE)
            continue;
        if (in->kind == MEM_ARENA ? in->offset < out->offset + out->bytes && out->offset < in->offset + in->bytes
                                  : in->index == out->index)
            return true;
    }
    return false;
}

static int emit_export(cg_llvm *cg, const fn_plan *fp, char *err, size_t errlen)
{
    const ir_func *f = fp->f;
    const char *mod = cg->irm->name;
    int nk = fp->s->nkernels;
    int nres = ir_num_results(f);   /* a training step's update outputs are not in its C signature */
    LLVMValueRef *kfn = arena_alloc(cg->ar, sizeof *kfn * (size_t)(nk + f->nouts + 1));
    LLVMValueRef *cfn = kfn + nk;

    /* kernels first: each positions the builder in its own function */
    for (int k = 0; k < nk; k++) {
        const ir_node *root = &f->nodes[fp->s->kernels[k].root];
        char *name = arena_printf(cg->ar, "%s__%s__k%d", mod, f->name, k);
        kfn[k] = cg_emit_kernel(cg, f, fp->s, k, name, writes_over_input(fp, &fp->s->kernels[k]), fp->p->scratch[k]);
        if (!kfn[k]) {
            set_err(err, errlen, "%s_%s: no CPU code for op '%s' (node %%%d, line %d:%d)", mod, f->name,
                    ir_ops[root->op].name, fp->s->kernels[k].root, root->line, root->col);
            return -1;
        }
        LLVMSetLinkage(kfn[k], LLVMInternalLinkage);
    }
    for (int o = 0; o < f->nouts; o++) {
        cfn[o] = NULL;
        if (!fp->p->out_copy[o])
            continue;   /* (an update output: its kernel's arena slot is its staging slot) */
        char *name = arena_printf(cg->ar, "%s__%s__out%d", mod, f->name, o);
        cfn[o] = cg_emit_copy_out(cg, f, f->outs[o], name);
        if (!cfn[o]) {
            set_err(err, errlen, "%s_%s: cannot copy out output %d", mod, f->name, o);
            return -1;
        }
        LLVMSetLinkage(cfn[o], LLVMInternalLinkage);
    }

    /* int <mod>_<fn>(void *inst, const T *arg0, ..., T *out0, ...) */
    unsigned np = 1 + (unsigned)f->nargs + (unsigned)nres;
    LLVMTypeRef *pt = arena_alloc(cg->ar, sizeof *pt * np);
    for (unsigned j = 0; j < np; j++)
        pt[j] = cg->t_ptr;
    const char *ename = arena_printf(cg->ar, "%s_%s", mod, f->name);
    if (LLVMGetNamedFunction(cg->mod, ename)) {
        set_err(err, errlen, "export '%s' gives the symbol %s, which the module already defines", f->name, ename);
        return -1;
    }
    LLVMValueRef fn = add_fn(cg, ename, cg->t_i32, pt, np);
    LLVMValueRef inst = LLVMGetParam(fn, 0);
    LLVMSetValueName2(inst, "inst", 4);
    for (int a = 0; a < f->nargs; a++)
        LLVMSetValueName2(LLVMGetParam(fn, 1 + (unsigned)a), f->args[a].name, strlen(f->args[a].name));
    return_if_null(cg, fn, inst, i32c(cg, TDSL_ERR_NULL));
    for (int a = 0; a < f->nargs; a++)
        fail_if_null(cg, fn, inst, LLVMGetParam(fn, 1 + (unsigned)a),
                     arena_printf(cg->ar, "%s: argument '%s' is NULL", ename, f->args[a].name));
    for (int o = 0; o < nres; o++)
        fail_if_null(cg, fn, inst, LLVMGetParam(fn, 1 + (unsigned)(f->nargs + o)),
                     arena_printf(cg->ar, "%s: output %d is NULL", ename, o));
    call_rt(cg, "tdsl_rt_clear_error", &inst, 1);

    bool any_in_place = false;
    for (int o = nres; o < f->nouts; o++)
        any_in_place |= fp->p->in_place[o];
    if (any_in_place) {   /* check_finite: keep the old values of what the kernels overwrite */
        LLVMBasicBlockRef save = block(cg, fn, "backup"), go = block(cg, fn, "kernels");
        LLVMValueRef on = call_rt(cg, "tdsl_rt_check_finite", &inst, 1);
        LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntNE, on, i32c(cg, 0), ""), save, go);
        LLVMPositionBuilderAtEnd(cg->b, save);
        copy_in_place_updates(cg, fp, inst, true);
        LLVMBuildBr(cg->b, go);
        LLVMPositionBuilderAtEnd(cg->b, go);
    }
    /* base pointer of each storage, computed once, on first use */
    LLVMValueRef *base = arena_alloc(cg->ar, sizeof *base * (size_t)(f->nnodes ? f->nnodes : 1));
    LLVMValueRef arena_ptr = NULL;
    LLVMValueRef null = LLVMConstNull(cg->t_ptr);
#define BASE(sid) (base[(sid)] ? base[(sid)] : (base[(sid)] = storage_base(cg, fn, fp, (sid), inst, &arena_ptr)))
    for (int k = 0; k < nk; k++) {
        const pass_kernel *kr = &fp->s->kernels[k];
        int ins[64];
        int nin = cg_kernel_inputs(f, kr, ins);
        if (nin < 0 || nin > 64) {
            set_err(err, errlen, "%s: kernel %d reads %d storages", ename, k, nin);
            return -1;
        }
        LLVMValueRef av[66];
        unsigned n = 0;
        av[n++] = BASE(f->nodes[kr->root].storage);
        for (int j = 0; j < nin; j++)
            av[n++] = BASE(ins[j]);
        av[n++] = inst;
        LLVMTypeRef kt = LLVMGlobalGetValueType(kfn[k]);
        LLVMValueRef st = LLVMBuildCall2(cg->b, kt, kfn[k], av, n, "");
        if (LLVMGetReturnType(kt) != cg->t_void) {
            /* a kernel that can fail (a label or index out of range) returns its status,
             * having recorded the message with tdsl_rt_fail: return it at once */
            LLVMBasicBlockRef failed = LLVMAppendBasicBlockInContext(cg->ctx, fn, "kernel_failed");
            LLVMBasicBlockRef next = LLVMAppendBasicBlockInContext(cg->ctx, fn, "kernel_ok");
            LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntNE, st, i32c(cg, 0), ""), failed, next);
            LLVMPositionBuilderAtEnd(cg->b, failed);
            LLVMBuildRet(cg->b, st);
            LLVMPositionBuilderAtEnd(cg->b, next);
        }
    }
    /* plain results to the caller, then update outputs to their staging slots: all before
     * the commit, since they may read a param or state that the commit overwrites */
    LLVMValueRef *dst = arena_alloc(cg->ar, sizeof *dst * (size_t)(f->nouts ? f->nouts : 1));
    for (int o = 0; o < f->nouts; o++) {
        if (o < nres) {
            dst[o] = LLVMGetParam(fn, 1 + (unsigned)(f->nargs + o));
        } else if (fp->p->in_place[o]) {   /* its kernel wrote the param or state */
            dst[o] = BASE(f->outs[o]);
        } else {
            if (!arena_ptr)
                arena_ptr = call_rt(cg, "tdsl_rt_arena", &inst, 1);
            LLVMValueRef off = i64c(cg, fp->p->stage[o]);
            dst[o] = LLVMBuildInBoundsGEP2(cg->b, cg->t_i8, arena_ptr, &off, 1, "stage");
        }
        if (!cfn[o])
            continue;
        int sid = f->nodes[f->outs[o]].storage;
        LLVMValueRef av[] = {dst[o], is_const_backed(f, f->outs[o]) ? null : BASE(sid), inst};
        LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(cfn[o]), cfn[o], av, 3, "");
    }
    emit_finite_checks(cg, fn, fp, inst, ename, dst);
    /* commit: each staged update's dense value into its param or state */
    for (int o = nres; o < f->nouts; o++) {
        int64_t bytes = output_bytes(f, o);
        if (bytes == 0 || fp->p->in_place[o])
            continue;
        LLVMBuildMemCpy(cg->b, update_target(cg, fp, inst, o), 64, dst[o], 64, i64c(cg, bytes));
    }
#undef BASE
    LLVMBuildRet(cg->b, i32c(cg, TDSL_OK));
    return 0;
}

/* Where storage `sid` lives when the export runs (passes/memplan.c decides). */
static LLVMValueRef storage_base(cg_llvm *cg, LLVMValueRef fn, const fn_plan *fp, int sid, LLVMValueRef inst,
                                 LLVMValueRef *arena_ptr)
{
    const pass_mem *m = &fp->p->mem[sid];
    switch (m->kind) {
    case MEM_ARG: return LLVMGetParam(fn, 1 + (unsigned)m->index);
    case MEM_OUTPUT: return LLVMGetParam(fn, 1 + (unsigned)(fp->f->nargs + m->index));
    case MEM_PARAM: {
        LLVMValueRef a[] = {inst, i32c(cg, m->index)};
        return call_rt(cg, "tdsl_rt_param_data", a, 2);
    }
    case MEM_ARENA: {
        if (!*arena_ptr)
            *arena_ptr = call_rt(cg, "tdsl_rt_arena", &inst, 1);
        LLVMValueRef off = i64c(cg, m->offset);
        return LLVMBuildInBoundsGEP2(cg->b, cg->t_i8, *arena_ptr, &off, 1, "");
    }
    case MEM_STATE: {   /* a state, or the update a kernel writes into it in place */
        LLVMValueRef off = i64c(cg, m->offset);
        return LLVMBuildInBoundsGEP2(cg->b, cg->t_i8, call_rt(cg, "tdsl_rt_state", &inst, 1), &off, 1, "");
    }
    default: return LLVMConstNull(cg->t_ptr);   /* a const: kernels use the immediate */
    }
}

/* ---- the module's instance functions (spec section 4) ---- */
/* A constant array global of n structs of type ty (internal), or a null pointer when n is 0. */
static LLVMValueRef const_table(cg_llvm *cg, LLVMTypeRef ty, LLVMValueRef *vals, int n, const char *name)
{
    if (n <= 0)
        return LLVMConstNull(cg->t_ptr);
    LLVMValueRef init = LLVMConstArray(ty, vals, (unsigned)n);
    LLVMValueRef g = LLVMAddGlobal(cg->mod, LLVMTypeOf(init), name);
    LLVMSetInitializer(g, init);
    LLVMSetGlobalConstant(g, 1);
    LLVMSetLinkage(g, LLVMInternalLinkage);
    return g;
}

static LLVMValueRef const_shape(cg_llvm *cg, int rank, const int64_t *shape)
{
    LLVMValueRef sh[TDSL_MAX_RANK];
    for (int d = 0; d < TDSL_MAX_RANK; d++)
        sh[d] = i64c(cg, d < rank ? shape[d] : 0);
    return LLVMConstArray(cg->t_i64, sh, TDSL_MAX_RANK);
}

/* The module's tdsl_module_desc (runtime.h, ABI 2): params with their initializers, and the
 * state table (name, type, offset from pass_state_layout) that save and load use. The
 * struct types mirror the C ones field for field (abi_layouts in test_llvm_module.c checks
 * the module struct; test_train.c resume_bit_exact reads the state table back). */
static LLVMValueRef emit_desc(cg_llvm *cg, int64_t arena_bytes, int64_t state_bytes, const int64_t *state_off,
                              int64_t backup_bytes)
{
    const ir_module *m = cg->irm;
    LLVMTypeRef dims = LLVMArrayType(cg->t_i64, TDSL_MAX_RANK);
    LLVMTypeRef pd_el[] = {cg->t_ptr, cg->t_i32, cg->t_i32, dims, cg->t_i32, cg->t_f64, cg->t_f64};
    LLVMTypeRef pd = LLVMStructCreateNamed(cg->ctx, "tdsl_param_desc");
    LLVMStructSetBody(pd, pd_el, 7, 0);
    LLVMTypeRef sd_el[] = {cg->t_ptr, cg->t_i32, cg->t_i32, dims, cg->t_i64};
    LLVMTypeRef sd = LLVMStructCreateNamed(cg->ctx, "tdsl_state_desc");
    LLVMStructSetBody(sd, sd_el, 5, 0);
    LLVMTypeRef md_el[] = {cg->t_i32, cg->t_ptr, cg->t_i32, cg->t_ptr, cg->t_i64, cg->t_i64, cg->t_i32, cg->t_ptr,
                           cg->t_i64};
    LLVMTypeRef md = LLVMStructCreateNamed(cg->ctx, "tdsl_module_desc");
    LLVMStructSetBody(md, md_el, 9, 0);

    LLVMValueRef *pv = arena_alloc(cg->ar, sizeof *pv * (size_t)(m->nparams + 1));
    for (int i = 0; i < m->nparams; i++) {
        const ir_param *p = &m->params[i];
        LLVMValueRef f[] = {cstr(cg, p->name), i32c(cg, p->dtype), i32c(cg, p->rank), const_shape(cg, p->rank, p->shape),
                            i32c(cg, (int)p->init), LLVMConstReal(cg->t_f64, p->a), LLVMConstReal(cg->t_f64, p->b)};
        pv[i] = LLVMConstNamedStruct(pd, f, 7);
    }
    LLVMValueRef params = const_table(cg, pd, pv, m->nparams, arena_printf(cg->ar, "%s__params", m->name));
    LLVMValueRef *sv = arena_alloc(cg->ar, sizeof *sv * (size_t)(m->nstates + 1));
    for (int i = 0; i < m->nstates; i++) {
        const ir_state *st = &m->states[i];
        LLVMValueRef f[] = {cstr(cg, st->name), i32c(cg, st->dtype), i32c(cg, st->rank),
                            const_shape(cg, st->rank, st->shape), i64c(cg, state_off[i])};
        sv[i] = LLVMConstNamedStruct(sd, f, 5);
    }
    LLVMValueRef states = const_table(cg, sd, sv, m->nstates, arena_printf(cg->ar, "%s__states", m->name));
    LLVMValueRef f[] = {i32c(cg, TDSL_ABI_VERSION), cstr(cg, m->name), i32c(cg, m->nparams), params,
                        i64c(cg, arena_bytes), i64c(cg, state_bytes), i32c(cg, m->nstates), states,
                        i64c(cg, backup_bytes)};
    LLVMValueRef desc = LLVMAddGlobal(cg->mod, md, arena_printf(cg->ar, "%s__desc", m->name));
    LLVMSetInitializer(desc, LLVMConstNamedStruct(md, f, 9));
    LLVMSetGlobalConstant(desc, 1);
    LLVMSetLinkage(desc, LLVMInternalLinkage);
    return desc;
}

static const char *const instance_fns[] = {"create", "destroy", "error", "save", "load", "num_params", "param"};

static void emit_instance_fns(cg_llvm *cg, LLVMValueRef desc)
{
    const char *mod = cg->irm->name;
    LLVMTypeRef P = cg->t_ptr;
#define NAME(s) arena_printf(cg->ar, "%s_%s", mod, s)

    /* mlp *mlp_create(const tdsl_options *opts) */
    LLVMValueRef fn = add_fn(cg, NAME("create"), P, &P, 1);
    LLVMValueRef a2[] = {desc, LLVMGetParam(fn, 0)};
    LLVMBuildRet(cg->b, call_rt(cg, "tdsl_rt_create", a2, 2));

    /* void mlp_destroy(mlp *m): NULL is a no-op, like free */
    fn = add_fn(cg, NAME("destroy"), cg->t_void, &P, 1);
    LLVMValueRef m = LLVMGetParam(fn, 0);
    return_if_null(cg, fn, m, NULL);
    call_rt(cg, "tdsl_rt_destroy", &m, 1);
    LLVMBuildRetVoid(cg->b);

    /* const char *mlp_error(const mlp *m): with NULL, why the last create (or a call with a
     * NULL instance) failed on this thread, which the runtime keeps */
    fn = add_fn(cg, NAME("error"), P, &P, 1);
    m = LLVMGetParam(fn, 0);
    LLVMBuildRet(cg->b, call_rt(cg, "tdsl_rt_error", &m, 1));

    /* int mlp_save(const mlp *m, const char *path), int mlp_load(mlp *m, const char *path) */
    for (int k = 0; k < 2; k++) {
        const char *what = k ? "load" : "save";
        LLVMTypeRef pp[] = {P, P};
        fn = add_fn(cg, NAME(what), cg->t_i32, pp, 2);
        m = LLVMGetParam(fn, 0);
        LLVMValueRef path = LLVMGetParam(fn, 1);
        return_if_null(cg, fn, m, i32c(cg, TDSL_ERR_NULL));
        fail_if_null(cg, fn, m, path, arena_printf(cg->ar, "%s_%s: path is NULL", mod, what));
        LLVMValueRef a[] = {m, path};
        LLVMBuildRet(cg->b, call_rt(cg, k ? "tdsl_rt_load" : "tdsl_rt_save", a, 2));
    }

    /* int mlp_num_params(void) */
    add_fn(cg, NAME("num_params"), cg->t_i32, NULL, 0);
    LLVMBuildRet(cg->b, i32c(cg, cg->irm->nparams));

    /* tdsl_tensor mlp_param(mlp *m, int i): the struct is returned through a hidden sret
     * pointer (SysV: class MEMORY, > 16 bytes); a NULL instance gives a zeroed tensor */
    LLVMTypeRef pp[] = {P, P, cg->t_i32};
    fn = add_fn(cg, NAME("param"), cg->t_void, pp, 3);
    LLVMValueRef ret = LLVMGetParam(fn, 0);
    LLVMAddAttributeAtIndex(fn, 1, LLVMCreateTypeAttribute(cg->ctx, attr_kind("sret"), tensor_type(cg)));
    LLVMAddAttributeAtIndex(fn, 1, LLVMCreateEnumAttribute(cg->ctx, attr_kind("noalias"), 0));
    m = LLVMGetParam(fn, 1);
    LLVMBasicBlockRef bad = block(cg, fn, "null"), ok = block(cg, fn, "ok");
    LLVMBuildCondBr(cg->b, LLVMBuildIsNull(cg->b, m, ""), bad, ok);
    LLVMPositionBuilderAtEnd(cg->b, bad);
    LLVMBuildStore(cg->b, LLVMConstNull(tensor_type(cg)), ret);
    LLVMBuildRetVoid(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, ok);
    LLVMValueRef a3[] = {ret, m, LLVMGetParam(fn, 2)};
    LLVMValueRef call = call_rt(cg, "tdsl_rt_param", a3, 3);
    LLVMAddCallSiteAttribute(call, 1, LLVMCreateTypeAttribute(cg->ctx, attr_kind("sret"), tensor_type(cg)));
    LLVMBuildRetVoid(cg->b);
#undef NAME
}

/* Target attributes on every defined function, as clang writes them: the optimizer's
 * cost model and the JIT then see the same subtarget as the object emitter. */
static void tag_functions(cg_llvm *cg)
{
    char *cpu = LLVMGetTargetMachineCPU(cg->tm), *features = LLVMGetTargetMachineFeatureString(cg->tm);
    for (LLVMValueRef fn = LLVMGetFirstFunction(cg->mod); fn; fn = LLVMGetNextFunction(fn)) {
        if (LLVMIsDeclaration(fn))
            continue;
        LLVMAddTargetDependentFunctionAttr(fn, "target-cpu", cpu);
        if (*features)
            LLVMAddTargetDependentFunctionAttr(fn, "target-features", features);
        if (cg->vector_bits == 512)   /* LLVM prefers 256 on most AVX-512 CPUs otherwise */
            LLVMAddTargetDependentFunctionAttr(fn, "prefer-vector-width", "512");
        LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(cg->ctx, attr_kind("nounwind"), 0));
        /* 2 = asynchronous unwind tables: debuggers and profilers can walk the stack */
        LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(cg->ctx, attr_kind("uwtable"), 2));
    }
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(features);
}

static int make_target(cg_llvm *cg, const cg_options *o, char *err, size_t errlen)
{
    const char *want = o && o->cpu ? o->cpu : "native";
    char *host_cpu = NULL, *host_feat = NULL, *msg = NULL;
    const char *cpu = want, *features = "";
    if (!strcmp(want, "native")) {
        host_cpu = LLVMGetHostCPUName();
        host_feat = LLVMGetHostCPUFeatures();
        cpu = host_cpu;
        features = host_feat;
        cg->vector_bits = has_feature(features, "+avx512f") ? 512 : has_feature(features, "+avx") ? 256 : 128;
    } else {
        if (cg_check_cpu(want, err, errlen))
            return -1;
        cg->vector_bits = cpu_vector_bits(want);
    }
    int rc = -1;
    char *triple = LLVMGetDefaultTargetTriple();
    LLVMTargetRef target;
    if (LLVMGetTargetFromTriple(triple, &target, &msg)) {
        set_err(err, errlen, "no LLVM target for %s: %s", triple, msg ? msg : "?");
        goto out;
    }
    static const LLVMCodeGenOptLevel levels[] = {LLVMCodeGenLevelNone, LLVMCodeGenLevelLess, LLVMCodeGenLevelDefault,
                                                 LLVMCodeGenLevelAggressive};
    cg->tm = LLVMCreateTargetMachine(target, triple, cpu, features, levels[cg->opt_level], LLVMRelocPIC,
                                     LLVMCodeModelDefault);
    if (!cg->tm) {
        set_err(err, errlen, "cannot create a target machine for %s (cpu %s)", triple, cpu);
        goto out;
    }
    cg->target_triple = arena_strdup(cg->ar, triple);
    LLVMSetTarget(cg->mod, triple);
    LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(cg->tm);
    LLVMSetModuleDataLayout(cg->mod, dl);
    LLVMDisposeTargetData(dl);
    rc = 0;
out:
    LLVMDisposeMessage(msg);
    LLVMDisposeMessage(triple);
    LLVMDisposeMessage(host_cpu);
    LLVMDisposeMessage(host_feat);
    return rc;
}

static int optimize(cg_llvm *cg, char *err, size_t errlen)
{
    char *msg = NULL;
    if (LLVMVerifyModule(cg->mod, LLVMReturnStatusAction, &msg)) {
        set_err(err, errlen, "internal error: invalid LLVM IR: %s", msg ? msg : "?");
        LLVMDisposeMessage(msg);
        return -1;
    }
    LLVMDisposeMessage(msg);
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    LLVMPassBuilderOptionsSetLoopVectorization(po, cg->opt_level >= 2);
    LLVMPassBuilderOptionsSetSLPVectorization(po, cg->opt_level >= 2);
    LLVMPassBuilderOptionsSetLoopUnrolling(po, cg->opt_level >= 2);
    LLVMPassBuilderOptionsSetLoopInterleaving(po, cg->opt_level >= 2);
    char pipeline[32];
    snprintf(pipeline, sizeof pipeline, "default<O%d>", cg->opt_level);
    LLVMErrorRef e = LLVMRunPasses(cg->mod, pipeline, cg->tm, po);
    LLVMDisposePassBuilderOptions(po);
    if (e) {
        char *m = LLVMGetErrorMessage(e);
        set_err(err, errlen, "LLVM passes failed: %s", m);
        LLVMDisposeErrorMessage(m);
        return -1;
    }
    return 0;
}

cg_llvm *cg_llvm_build(const ir_module *m, const cg_options *o, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!m || !is_c_ident(m->name)) {
        set_err(err, errlen, "module name '%s' is not a C identifier (use --name)", m && m->name ? m->name : "");
        return NULL;
    }
    int opt = o ? o->opt_level : 3;
    if (opt < 0 || opt > 3) {
        set_err(err, errlen, "optimization level %d is not 0..3", opt);
        return NULL;
    }
    pthread_once(&init_once, init_llvm);

    cg_llvm *cg = calloc(1, sizeof *cg);
    arena *ar = malloc(sizeof *ar);
    if (!cg || !ar) {
        free(cg);
        free(ar);
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    arena_init(ar);
    cg->ar = ar;
    cg->irm = m;
    cg->opt_level = opt;
    /* the context lives in a ThreadSafeContext so the JIT can take the module as it is */
    cg->tsctx = LLVMOrcCreateNewThreadSafeContext();
    cg->ctx = LLVMOrcThreadSafeContextGetContext(cg->tsctx);
    cg->mod = LLVMModuleCreateWithNameInContext(m->name, cg->ctx);
    cg->b = LLVMCreateBuilderInContext(cg->ctx);
    cg->t_void = LLVMVoidTypeInContext(cg->ctx);
    cg->t_i1 = LLVMInt1TypeInContext(cg->ctx);
    cg->t_i8 = LLVMInt8TypeInContext(cg->ctx);
    cg->t_i16 = LLVMInt16TypeInContext(cg->ctx);
    cg->t_i32 = LLVMInt32TypeInContext(cg->ctx);
    cg->t_i64 = LLVMInt64TypeInContext(cg->ctx);
    cg->t_f32 = LLVMFloatTypeInContext(cg->ctx);
    cg->t_f64 = LLVMDoubleTypeInContext(cg->ctx);
    cg->t_ptr = LLVMPointerTypeInContext(cg->ctx, 0);
    if (make_target(cg, o, err, errlen))
        goto fail;

    for (int i = 0; i < m->nfuncs; i++) {
        const char *fname = m->funcs[i]->name;
        if (!is_c_ident(fname)) {
            set_err(err, errlen, "function name '%s' is not a C identifier", fname ? fname : "");
            goto fail;
        }
        for (size_t k = 0; k < sizeof instance_fns / sizeof *instance_fns; k++)
            if (!strcmp(fname, instance_fns[k])) {
                set_err(err, errlen, "export '%s' collides with the module function %s_%s; rename it", fname,
                        m->name, fname);
                goto fail;
            }
    }
    int64_t arena_bytes = 0, backup_bytes = 0;
    int64_t *state_off = arena_alloc(cg->ar, sizeof(int64_t) * (size_t)(m->nstates + 1));
    int64_t state_bytes = pass_state_layout(m, state_off);
    for (int i = 0; i < m->nfuncs; i++) {
        fn_plan fp = {m->funcs[i], NULL, NULL, state_off};
        pass_plan pl = pass_pipeline(cg->ar, fp.f, !(o && o->no_fuse));   /* NULL o: defaults */
        fp.s = pl.schedule;
        fp.p = pl.mem;
        if (fp.p->arena_bytes > arena_bytes)
            arena_bytes = fp.p->arena_bytes;
        if (fp.p->backup_bytes > backup_bytes)
            backup_bytes = fp.p->backup_bytes;
        if (emit_export(cg, &fp, err, errlen))
            goto fail;
    }
    emit_instance_fns(cg, emit_desc(cg, arena_bytes, state_bytes, state_off, backup_bytes));
    tag_functions(cg);
    if (optimize(cg, err, errlen))
        goto fail;
    return cg;
fail:
    cg_llvm_free(cg);
    return NULL;
}

void cg_llvm_free(cg_llvm *cg)
{
    if (!cg)
        return;
    if (cg->b)
        LLVMDisposeBuilder(cg->b);
    if (cg->mod)
        LLVMDisposeModule(cg->mod);
    if (cg->tm)
        LLVMDisposeTargetMachine(cg->tm);
    /* drops our reference: the context dies here, or with the JIT that took the module */
    if (cg->tsctx)
        LLVMOrcDisposeThreadSafeContext(cg->tsctx);
    if (cg->ar) {
        arena_free(cg->ar);
        free(cg->ar);
    }
    free(cg);
}

/* s is `<word><N>`, possibly followed by a `.suffix` */
static bool is_numbered(const char *s, const char *word)
{
    size_t n = strlen(word);
    if (strncmp(s, word, n) || !isdigit((unsigned char)s[n]))
        return false;
    for (s += n; isdigit((unsigned char)*s); s++)
        ;
    return *s == '\0' || *s == '.';
}

/* ---- the dump of one export ----
 * An export owns its C function `<mod>_<fn>` and the internal functions emit_export names
 * `<mod>__<fn>__k<N>`, `<mod>__<fn>__out<N>` and `<mod>_<fn>__finite<N>`, with any
 * `.suffix` that the kernel emitters (`.task`, `.rng`, GEMM's `.uk12x32`, `.pack...`, all
 * per kernel) or LLVM add. Matching the whole form keeps export `f` from claiming the
 * functions of an export `f__k1`. */
static bool owned_by_export(const char *name, const char *mod, const char *fn)
{
    size_t lm = strlen(mod), lf = strlen(fn);
    const char *p = name + lm;
    if (strncmp(name, mod, lm) || p[0] != '_')
        return false;
    if (!strncmp(p + 1, fn, lf) && (p[1 + lf] == '\0' || is_numbered(p + 1 + lf, "__finite")))
        return true;   /* <mod>_<fn>, <mod>_<fn>__finite<N> */
    if (p[1] != '_' || strncmp(p + 2, fn, lf))
        return false;
    return is_numbered(p + 2 + lf, "__k") || is_numbered(p + 2 + lf, "__out");
}

/* A set of globals (functions and variables), small enough for a linear search. */
typedef struct gset {
    LLVMValueRef *v;
    size_t n, cap;
    arena *ar;
} gset;

static bool gset_has(const gset *s, LLVMValueRef g)
{
    for (size_t k = 0; k < s->n; k++)
        if (s->v[k] == g)
            return true;
    return false;
}

/* adds the globals that value v refers to, looking through constant expressions and
 * aggregates (a GEP into a string, a table of pointers) */
static void gset_add_uses(gset *s, LLVMValueRef v)
{
    if (LLVMIsAGlobalValue(v)) {
        if (!gset_has(s, v))
            ARR_PUSH(s->ar, s->v, s->n, s->cap, v);
        return;
    }
    if (!LLVMIsAConstant(v) || !LLVMIsAUser(v))
        return;
    for (int k = 0, n = LLVMGetNumOperands(v); k < n; k++)
        gset_add_uses(s, LLVMGetOperand(v, (unsigned)k));
}

/* What the dump of export fn shows: its functions, then (closure) every function and
 * global variable they refer to, declarations included. False when fn owns nothing. */
static bool export_closure(cg_llvm *cg, const char *fn, gset *s)
{
    for (LLVMValueRef f = LLVMGetFirstFunction(cg->mod); f; f = LLVMGetNextFunction(f)) {
        size_t len;
        if (!LLVMIsDeclaration(f) && owned_by_export(LLVMGetValueName2(f, &len), cg->irm->name, fn))
            ARR_PUSH(s->ar, s->v, s->n, s->cap, f);
    }
    if (s->n == 0)
        return false;
    for (size_t k = 0; k < s->n; k++) {   /* s grows while we walk it */
        LLVMValueRef g = s->v[k];
        if (LLVMIsAGlobalVariable(g)) {
            if (LLVMGetInitializer(g))
                gset_add_uses(s, LLVMGetInitializer(g));
            continue;
        }
        if (!LLVMIsAFunction(g))
            continue;
        for (LLVMBasicBlockRef bb = LLVMGetFirstBasicBlock(g); bb; bb = LLVMGetNextBasicBlock(bb))
            for (LLVMValueRef in = LLVMGetFirstInstruction(bb); in; in = LLVMGetNextInstruction(in))
                for (int j = 0, n = LLVMGetNumOperands(in); j < n; j++)
                    gset_add_uses(s, LLVMGetOperand(in, (unsigned)j));
    }
    return true;
}

/* The start of the first line of text that begins with one of the prefixes, or NULL. */
static const char *find_line(const char *text, const char *const *prefixes, size_t n)
{
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        for (size_t k = 0; k < n; k++)
            if (!strncmp(p, prefixes[k], strlen(prefixes[k])))
                return p;
    return NULL;
}

static void print_value(LLVMValueRef v, FILE *out)
{
    char *s = LLVMPrintValueToString(v);
    size_t n = strlen(s);
    fputs(s, out);
    if (n && s[n - 1] != '\n')
        fputc('\n', out);
    LLVMDisposeMessage(s);
}

/* Marks in seen[0..n) each id that [p, end) refers to as `<sigil>N` (`#3`, `!12`); true if
 * one was new. A match inside a string only keeps an extra line. */
static bool mark_refs(const char *p, const char *end, char sigil, bool *seen, size_t n)
{
    bool more = false;
    for (; p < end; p++) {
        if (*p != sigil || p + 1 >= end || !isdigit((unsigned char)p[1]))
            continue;
        size_t id = 0;
        while (p + 1 < end && isdigit((unsigned char)p[1]) && id < n)
            id = id * 10 + (size_t)(*++p - '0');
        if (id < n && !seen[id])
            more = seen[id] = true;
    }
    return more;
}

/* The attribute groups (`attributes #N`) and metadata (`!N = `) at the end of the module
 * text that body refers to, directly or through other metadata; named metadata
 * (`!llvm.module.flags`) is module-wide and always kept. */
static void print_tail_subset(const char *tail, const char *body, size_t nbody, FILE *out)
{
    size_t n = 1;   /* ids are dense, so each is below the number of lines */
    for (const char *p = tail; (p = strchr(p, '\n')); p++)
        n++;
    bool *attr = calloc(n, 1), *md = calloc(n, 1);
    if (!attr || !md) {   /* out of memory: the whole tail, still a valid module */
        fputs(tail, out);
        free(attr);
        free(md);
        return;
    }
    mark_refs(body, body + nbody, '#', attr, n);
    mark_refs(body, body + nbody, '!', md, n);
    for (bool more = true; more;) {   /* metadata refers to metadata: to a fixed point */
        more = false;
        for (const char *p = tail; *p;) {
            const char *e = strchr(p, '\n');
            e = e ? e : p + strlen(p);
            size_t id = 0;
            bool named = p[0] == '!' && !isdigit((unsigned char)p[1]);
            if (named || (p[0] == '!' && sscanf(p + 1, "%zu", &id) == 1 && id < n && md[id]))
                more |= mark_refs(strchr(p, '='), e, '!', md, n);
            p = *e ? e + 1 : e;
        }
    }
    for (const char *p = tail; *p;) {
        const char *e = strchr(p, '\n');
        e = e ? e + 1 : p + strlen(p);
        size_t id = 0;
        bool keep;
        if (!strncmp(p, "attributes #", 12))
            keep = sscanf(p + 12, "%zu", &id) == 1 && id < n && attr[id];
        else if (p[0] == '!' && isdigit((unsigned char)p[1]))
            keep = sscanf(p + 1, "%zu", &id) == 1 && id < n && md[id];
        else
            keep = true;   /* named metadata, blank lines */
        if (keep)
            fwrite(p, 1, (size_t)(e - p), out);
        p = e;
    }
    free(attr);
    free(md);
}

/* The module's text, keeping of its globals and functions only those in s, and of its
 * attribute groups and metadata those they use: still a module that llvm-as reads. */
static void print_ir_subset(cg_llvm *cg, const char *fn, const gset *s, FILE *out)
{
    char *text = LLVMPrintModuleToString(cg->mod);
    static const char *const body_start[] = {"@", "define ", "declare ", "; Function Attrs"};
    static const char *const tail_start[] = {"attributes #", "!"};
    const char *b = find_line(text, body_start, 4), *t = find_line(text, tail_start, 2);
    size_t nhead = b ? (size_t)(b - text) : t ? (size_t)(t - text) : strlen(text);
    fwrite(text, 1, nhead, out);
    fprintf(out, "; export '%s' only: %s_%s, its kernels and what they use (no --fn: the whole module)\n\n",
            fn, cg->irm->name, fn);
    char *body = NULL;
    size_t nbody = 0;
    FILE *mem = open_memstream(&body, &nbody);
    FILE *to = mem ? mem : out;   /* without memory: all attributes and metadata below */
    bool any = false;
    for (LLVMValueRef g = LLVMGetFirstGlobal(cg->mod); g; g = LLVMGetNextGlobal(g))
        if (gset_has(s, g)) {
            print_value(g, to);
            any = true;
        }
    for (LLVMValueRef f = LLVMGetFirstFunction(cg->mod); f; f = LLVMGetNextFunction(f))
        if (gset_has(s, f)) {
            if (any)
                fputc('\n', to);
            print_value(f, to);
            any = true;
        }
    if (mem) {
        fclose(mem);
        fwrite(body, 1, nbody, out);
    }
    if (t) {
        fputc('\n', out);
        if (mem && body)
            print_tail_subset(t, body, nbody, out);
        else
            fputs(t, out);
    }
    free(body);
    LLVMDisposeMessage(text);
}

int cg_llvm_print_export_ir(cg_llvm *cg, const char *fn, FILE *out, char *err, size_t errlen)
{
    if (!cg || !cg->mod) {
        set_err(err, errlen, "no LLVM module (already handed to the JIT)");
        return -1;
    }
    if (!fn) {
        char *s = LLVMPrintModuleToString(cg->mod);
        fputs(s, out);
        LLVMDisposeMessage(s);
        return 0;
    }
    arena ar;
    arena_init(&ar);
    gset s = {.ar = &ar};
    int rc = -1;
    if (!export_closure(cg, fn, &s))
        set_err(err, errlen, "module '%s' has no export named '%s'", cg->irm->name, fn);
    else {
        print_ir_subset(cg, fn, &s, out);
        rc = 0;
    }
    arena_free(&ar);
    return rc;
}

void cg_llvm_print_ir(cg_llvm *cg, FILE *out)
{
    char err[128];
    if (cg_llvm_print_export_ir(cg, NULL, out, err, sizeof err))
        fputs("; (module handed to the JIT)\n", out);
}

/* Code generation rewrites the IR it runs on (CodeGenPrepare), so it runs on a clone:
 * the module stays valid for a later object, assembly or JIT. */
static int emit(cg_llvm *cg, LLVMCodeGenFileType kind, LLVMMemoryBufferRef *buf, const char *path, char *err,
                size_t errlen)
{
    if (!cg || !cg->mod) {
        set_err(err, errlen, "no LLVM module (already handed to the JIT)");
        return -1;
    }
    LLVMModuleRef clone = LLVMCloneModule(cg->mod);
    char *msg = NULL;
    LLVMBool bad;
    if (buf) {
        bad = LLVMTargetMachineEmitToMemoryBuffer(cg->tm, clone, kind, &msg, buf);
    } else {
        char *p = strdup(path);   /* the C API wants a mutable string */
        bad = !p || LLVMTargetMachineEmitToFile(cg->tm, clone, p, kind, &msg);
        free(p);
    }
    LLVMDisposeModule(clone);
    if (bad) {
        set_err(err, errlen, "%s%s%s", buf ? "" : path, buf ? "" : ": ", msg ? msg : "code generation failed");
        LLVMDisposeMessage(msg);
        return -1;
    }
    return 0;
}

/* Whether the line `\t.type NAME,@function` names a function of s; other lines: false,
 * and *is_fn says whether the line starts a function at all. */
static bool asm_function_in(const char *line, size_t len, const gset *s, bool *is_fn)
{
    static const char type[] = "\t.type\t", tag[] = ",@function";
    size_t lt = sizeof type - 1, lg = sizeof tag - 1;
    *is_fn = len > lt + lg && !strncmp(line, type, lt) && !strncmp(line + len - lg, tag, lg);
    if (!*is_fn)
        return false;
    for (size_t k = 0; k < s->n; k++) {
        size_t n;
        const char *name = LLVMGetValueName2(s->v[k], &n);
        if (LLVMIsAFunction(s->v[k]) && n == len - lt - lg && !strncmp(line + lt, name, n))
            return true;
    }
    return false;
}

/* Prints the file's leading `.text`/`.file` directives and the blocks of the functions in
 * s. A function's block runs from the line after the previous blank line (its constant
 * pool, `.globl`, `.p2align`) through `.type NAME,@function`, its body, `.size` and
 * `.cfi_endproc`, to the blank line LLVM puts after each function. Blocks without a
 * function (strings, tables, the module descriptor) are left out. */
static void print_asm_subset(const char *text, size_t len, const char *fn, const gset *s, FILE *out)
{
    const char *p = text, *end = text + len;
    while (p < end && (!strncmp(p, "\t.text\n", 7) || !strncmp(p, "\t.file\t", 7))) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        p = nl ? nl + 1 : end;
    }
    fwrite(text, 1, (size_t)(p - text), out);
    fprintf(out, "# export '%s' only: its functions, without the data they use (no --fn: the whole module)\n", fn);
    const char *block = p;   /* start of the block being read */
    int keep = -1;           /* -1: no `.type @function` line seen in this block yet */
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        const char *next = nl ? nl + 1 : end;
        bool is_fn, mine = asm_function_in(p, n, s, &is_fn);
        if (is_fn && keep < 0)
            keep = mine;
        if (n == 0 || next == end) {   /* a blank line (or the end) closes the block */
            if (keep == 1)
                fwrite(block, 1, (size_t)(next - block), out);
            block = next;
            keep = -1;
        }
        p = next;
    }
}

int cg_llvm_print_export_asm(cg_llvm *cg, const char *fn, FILE *out, char *err, size_t errlen)
{
    arena ar;
    arena_init(&ar);
    gset s = {.ar = &ar};
    LLVMMemoryBufferRef buf = NULL;
    int rc = -1;
    if (fn && cg && cg->mod && !export_closure(cg, fn, &s))
        set_err(err, errlen, "module '%s' has no export named '%s'", cg->irm->name, fn);
    else if (emit(cg, LLVMAssemblyFile, &buf, NULL, err, errlen) == 0) {
        const char *text = LLVMGetBufferStart(buf);
        size_t n = LLVMGetBufferSize(buf);
        if (fn)
            print_asm_subset(text, n, fn, &s, out);
        else
            fwrite(text, 1, n, out);
        rc = ferror(out) ? -1 : 0;
        if (rc)
            set_err(err, errlen, "cannot write the assembly");
        LLVMDisposeMemoryBuffer(buf);
    }
    arena_free(&ar);
    return rc;
}

int cg_llvm_print_asm(cg_llvm *cg, FILE *out, char *err, size_t errlen)
{
    return cg_llvm_print_export_asm(cg, NULL, out, err, errlen);
}

int cg_llvm_emit_object(cg_llvm *cg, const char *path, char *err, size_t errlen)
{
    if (!path) {
        set_err(err, errlen, "no output path");
        return -1;
    }
    return emit(cg, LLVMObjectFile, NULL, path, err, errlen);
}
