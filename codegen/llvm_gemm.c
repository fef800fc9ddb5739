/* Matrix multiply for the CPU backend: one kernel per OP_matmul node, generated for its
 * static shapes and strides (Goto and van de Geijn, "Anatomy of High-Performance Matrix
 * Multiplication", TOMS 2008; BLIS's Zen 4 kernel, transposed for row-major C).
 *
 *   for each job (a batch element, or a slab of its N or M panels; jobs split over tasks)
 *     for jc in N step NC
 *       for pc in K step KC
 *         pack B[pc:+KC, jc:+NC] -> Bp             KC x NR micro-panels
 *         for ic in M step MC
 *           pack A[ic:+MC, pc:+KC] -> Ap           MR x KC micro-panels (L2)
 *           for each NR micro-panel of Bp          reused by every A micro-panel
 *             for each MR micro-panel of Ap
 *               C[MR x NR] (+)= Ap_panel * Bp_panel       the micro-kernel
 *
 * The micro-kernel keeps an MR x NR tile of C in registers (MR rows x NV vectors of VL
 * lanes; 12 x 2 zmm by default: 24 accumulators of the 32 registers) and per k loads NV
 * vectors of B and broadcasts MR elements of A (2 loads + 12 broadcasts per 24 FMAs). It
 * prefetches its C tile, which comes from L3 or memory. Packing reads the operands
 * through their real strides (a transposed operand costs no copy of its own; f32 rows are
 * transposed 4 x 16 at a time in registers) and converts f16/bf16 to f32. Problems whose A
 * fits in L2 skip packing A (the micro-kernel then reads A through its strides) and, when
 * B's rows are unit-stride, packing B too. Edge tiles use micro-kernel variants
 * specialized for the static remainders M % MR and N % NR (masked loads and stores).
 * Tasks run on tdsl_rt_parallel_for; each job packs into its task's own buffers (on the
 * stack when small, else one aligned_alloc per task and call). docs/gemm.md has the
 * measurements behind the choices.
 *
 * Arithmetic: f32/f64 with fma (llvm.fmuladd); f16/bf16 in f32 over the whole K (no K blocking, so C is
 * rounded once); i32/i64 with wrapping mul/add (the evaluator's semantics). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <llvm-c/DebugInfo.h>
#include "llvm_internal.h"

/* ---- tuning (defaults measured on Zen 5; bench/matmul may override them) ---- */
typedef struct cg_gemm_tuning {
    int mr, nv;               /* micro-tile: mr rows x nv vectors (0: default for the target) */
    int64_t mc, kc, nc;       /* cache blocks in elements (0: default) */
    int pack;                 /* -1 auto, 0 never pack A (B only when it must), 1 always pack both */
    int64_t par_flops;        /* flops per task below which fewer tasks are used (0: default) */
    int swap;                 /* 0 auto, 1 always compute C^T = B^T A^T, -1 never */
} cg_gemm_tuning;

void cg_gemm_set_tuning(const cg_gemm_tuning *t);   /* for benchmarks only; NULL resets */
static cg_gemm_tuning tuning = {0, 0, 0, 0, 0, -1, 0, 0};

void cg_gemm_set_tuning(const cg_gemm_tuning *t)
{
    cg_gemm_tuning def = {0, 0, 0, 0, 0, -1, 0, 0};
    tuning = t ? *t : def;
}

#define STACK_BYTES (160 * 1024)   /* per task; larger packing buffers come from the heap */
#define UNROLL 4                   /* k-loop unroll of the micro-kernel */
#define MAX_TASKS 256
#define PACK_A_BYTES (256 * 1024)  /* A larger than this (one matrix) is packed */
#define PACK_A_MAX (1 << 20)         /* bytes of a packed A block (MC x KC), at most */
#define PACK_B_MAX (4 << 20)         /* bytes of a packed B block (KC x NC), at most */

typedef struct opnd {
    int param;                     /* kernel parameter of its storage; -1 when const-backed */
    LLVMValueRef cst;              /* const-backed: a private global holding the value */
    int64_t off;                   /* element offset */
    int64_t bst[IR_MAX_RANK];      /* strides of the (collapsed) batch dims */
    int64_t s0, s1;                /* strides of the matrix dims: A (i, k), B (k, j), C (i, j) */
    bool pack;
} opnd;

typedef struct gemm {
    cg_llvm *cg;
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    const char *name;
    ir_dtype dt;
    bool isf;                      /* floating-point compute */
    LLVMTypeRef st, ct, vt, svt;   /* storage / compute element; <VL x ct>, <VL x st> */
    LLVMTypeRef i1, i32, i64, ptr, vd;
    int vl, mr, nv, nr;
    int64_t M, N, K, nbatch;
    int nbd;
    int64_t bshape[IR_MAX_RANK];
    opnd a, bo, c;
    int64_t MC, KC, NC;
    int64_t bufa, bufb;            /* packing buffers, elements of ct */
    bool heap;
    bool split_n;
    bool swapped;                  /* computing C^T = B^T A^T (a, bo, c, M, N swapped) */
    int64_t tmax, maxp;
    LLVMValueRef uk[2][2];         /* [M edge][N edge] micro-kernels (NULL when no tile needs one) */
    LLVMTypeRef uk_ty;
    LLVMValueRef pack_a_fn, pack_b_fn;
    LLVMTypeRef pack_ty;
    LLVMTypeRef ctx_ty;            /* {out, a, b, inst, T, P, i32 out-of-memory flag} */
} gemm;

/* ---- small builders ---- */
static LLVMValueRef ci(gemm *g, int64_t v) { return LLVMConstInt(g->i64, (unsigned long long)v, 1); }
static LLVMValueRef ci32(gemm *g, int v) { return LLVMConstInt(g->i32, (unsigned long long)v, 1); }

static LLVMValueRef gep(gemm *g, LLVMTypeRef t, LLVMValueRef p, LLVMValueRef idx)
{
    return LLVMBuildInBoundsGEP2(g->b, t, p, &idx, 1, "");
}

static LLVMValueRef gepc(gemm *g, LLVMTypeRef t, LLVMValueRef p, int64_t idx)
{
    return idx == 0 ? p : gep(g, t, p, ci(g, idx));
}

static LLVMValueRef load(gemm *g, LLVMTypeRef t, LLVMValueRef p, unsigned align)
{
    LLVMValueRef v = LLVMBuildLoad2(g->b, t, p, "");
    LLVMSetAlignment(v, align);
    return v;
}

static void store(gemm *g, LLVMValueRef v, LLVMValueRef p, unsigned align)
{
    LLVMSetAlignment(LLVMBuildStore(g->b, v, p), align);
}

static LLVMValueRef smin(gemm *g, LLVMValueRef x, LLVMValueRef y)
{
    return LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, x, y, ""), x, y, "");
}

static LLVMValueRef intrinsic(gemm *g, const char *name, LLVMTypeRef *types, size_t ntypes, LLVMTypeRef *fty)
{
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(g->mod, id, types, ntypes);
    *fty = LLVMGlobalGetValueType(fn);
    return fn;
}

static LLVMValueRef call(gemm *g, LLVMValueRef fn, LLVMTypeRef fty, LLVMValueRef *args, unsigned n)
{
    return LLVMBuildCall2(g->b, fty, fn, args, n, "");
}

static unsigned ssize(gemm *g) { return (unsigned)ir_dtype_size(g->dt); }
static unsigned csize(gemm *g) { return g->dt == DT_F16 || g->dt == DT_BF16 ? 4 : ssize(g); }

static LLVMValueRef splat(gemm *g, LLVMValueRef x)
{
    LLVMValueRef v = LLVMBuildInsertElement(g->b, LLVMGetUndef(g->vt), x, ci32(g, 0), "");
    LLVMValueRef zeros = LLVMConstNull(LLVMVectorType(g->i32, (unsigned)g->vl));
    return LLVMBuildShuffleVector(g->b, v, LLVMGetUndef(g->vt), zeros, "");
}

/* <VL x i1> with the first n lanes set */
static LLVMValueRef lane_mask(gemm *g, int n)
{
    LLVMValueRef m[64];
    for (int l = 0; l < g->vl; l++)
        m[l] = LLVMConstInt(g->i1, l < n, 0);
    return LLVMConstVector(m, (unsigned)g->vl);
}

static LLVMValueRef masked_load(gemm *g, LLVMTypeRef vty, LLVMValueRef p, LLVMValueRef mask, unsigned align)
{
    LLVMTypeRef tys[2] = {vty, g->ptr}, fty;
    LLVMValueRef fn = intrinsic(g, "llvm.masked.load", tys, 2, &fty);
    LLVMValueRef args[4] = {p, ci32(g, (int)align), mask, LLVMConstNull(vty)};
    return call(g, fn, fty, args, 4);
}

static void masked_store(gemm *g, LLVMValueRef v, LLVMValueRef p, LLVMValueRef mask, unsigned align)
{
    LLVMTypeRef tys[2] = {LLVMTypeOf(v), g->ptr}, fty;
    LLVMValueRef fn = intrinsic(g, "llvm.masked.store", tys, 2, &fty);
    LLVMValueRef args[4] = {v, p, ci32(g, (int)align), mask};
    call(g, fn, fty, args, 4);
}

/* i32 x, or <n x i32> of x for n > 1 */
static LLVMValueRef vconst_i32(gemm *g, unsigned n, int64_t x)
{
    LLVMValueRef e[64];
    for (unsigned l = 0; l < n; l++)
        e[l] = LLVMConstInt(g->i32, (unsigned long long)x, 0);
    return n == 1 ? e[0] : LLVMConstVector(e, n);
}

/* storage value (scalar or vector) -> compute type */
static LLVMValueRef to_compute(gemm *g, LLVMValueRef v)
{
    LLVMTypeRef t = LLVMTypeOf(v);
    bool vec = LLVMGetTypeKind(t) == LLVMVectorTypeKind;
    unsigned n = vec ? LLVMGetVectorSize(t) : 1;
    LLVMTypeRef f32 = vec ? LLVMVectorType(g->cg->t_f32, n) : g->cg->t_f32;
    if (g->dt == DT_F16) {
        LLVMTypeRef h = LLVMHalfTypeInContext(g->ctx);
        return LLVMBuildFPExt(g->b, LLVMBuildBitCast(g->b, v, vec ? LLVMVectorType(h, n) : h, ""), f32, "");
    }
    if (g->dt == DT_BF16) {
        LLVMTypeRef i32 = vec ? LLVMVectorType(g->i32, n) : g->i32;
        LLVMValueRef w = LLVMBuildZExt(g->b, v, i32, "");
        return LLVMBuildBitCast(g->b, LLVMBuildShl(g->b, w, vconst_i32(g, n, 16), ""), f32, "");
    }
    return v;
}

/* compute value (f32 for f16/bf16) -> storage, rounding to nearest even */
static LLVMValueRef to_storage(gemm *g, LLVMValueRef v)
{
    LLVMTypeRef t = LLVMTypeOf(v);
    bool vec = LLVMGetTypeKind(t) == LLVMVectorTypeKind;
    unsigned n = vec ? LLVMGetVectorSize(t) : 1;
    LLVMTypeRef i16 = vec ? LLVMVectorType(g->cg->t_i16, n) : g->cg->t_i16;
    if (g->dt == DT_F16) {
        LLVMTypeRef h = LLVMHalfTypeInContext(g->ctx);
        return LLVMBuildBitCast(g->b, LLVMBuildFPTrunc(g->b, v, vec ? LLVMVectorType(h, n) : h, ""), i16, "");
    }
    if (g->dt == DT_BF16) {   /* as f32_to_bf16: NaN stays quiet, else round to nearest even */
        LLVMTypeRef i32 = vec ? LLVMVectorType(g->i32, n) : g->i32;
        LLVMValueRef u = LLVMBuildBitCast(g->b, v, i32, "");
        LLVMValueRef s16 = vconst_i32(g, n, 16);
        LLVMValueRef hi = LLVMBuildLShr(g->b, u, s16, "");
        LLVMValueRef odd = LLVMBuildAnd(g->b, hi, vconst_i32(g, n, 1), "");
        LLVMValueRef r = LLVMBuildAdd(g->b, u, LLVMBuildAdd(g->b, odd, vconst_i32(g, n, 0x7fff), ""), "");
        r = LLVMBuildLShr(g->b, r, s16, "");
        LLVMValueRef qnan = LLVMBuildOr(g->b, hi, vconst_i32(g, n, 0x40), "");
        LLVMValueRef isnan = LLVMBuildICmp(g->b, LLVMIntUGT, LLVMBuildAnd(g->b, u, vconst_i32(g, n, 0x7fffffff), ""),
                                           vconst_i32(g, n, 0x7f800000), "");
        return LLVMBuildTrunc(g->b, LLVMBuildSelect(g->b, isnan, qnan, r, ""), i16, "");
    }
    return v;
}

static LLVMValueRef madd(gemm *g, LLVMValueRef x, LLVMValueRef y, LLVMValueRef acc)
{
    if (g->isf) {
        LLVMTypeRef fty, vt = LLVMTypeOf(acc);
        /* fused where the target has FMA; a multiply and an add (no libcall) where not */
        LLVMValueRef fn = intrinsic(g, "llvm.fmuladd", &vt, 1, &fty);
        LLVMValueRef args[3] = {x, y, acc};
        return call(g, fn, fty, args, 3);
    }
    return LLVMBuildAdd(g->b, acc, LLVMBuildMul(g->b, x, y, ""), "");
}

static LLVMValueRef add(gemm *g, LLVMValueRef x, LLVMValueRef y)
{
    return g->isf ? LLVMBuildFAdd(g->b, x, y, "") : LLVMBuildAdd(g->b, x, y, "");
}

static void fn_attrs(gemm *g, LLVMValueRef fn)
{
    char w[16];
    snprintf(w, sizeof w, "%d", g->cg->vector_bits);
    const char *kv[][2] = {{"prefer-vector-width", w}, {"min-legal-vector-width", w}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex,
                                LLVMCreateStringAttribute(g->ctx, kv[i][0], (unsigned)strlen(kv[i][0]), kv[i][1],
                                                          (unsigned)strlen(kv[i][1])));
    unsigned k = LLVMGetEnumAttributeKindForName("nounwind", 8);
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(g->ctx, k, 0));
}

static void param_attr(gemm *g, LLVMValueRef fn, unsigned i, const char *name)
{
    unsigned k = LLVMGetEnumAttributeKindForName(name, strlen(name));
    LLVMAddAttributeAtIndex(fn, i + 1, LLVMCreateEnumAttribute(g->ctx, k, 0));
}

static LLVMValueRef new_fn(gemm *g, const char *suffix, LLVMTypeRef fty, bool internal)
{
    char nm[512];
    snprintf(nm, sizeof nm, "%s%s", g->name, suffix);
    LLVMValueRef fn = LLVMAddFunction(g->mod, nm, fty);
    if (internal)
        LLVMSetLinkage(fn, LLVMInternalLinkage);
    fn_attrs(g, fn);
    return fn;
}

static LLVMBasicBlockRef block(gemm *g, LLVMValueRef fn, const char *nm)
{
    return LLVMAppendBasicBlockInContext(g->ctx, fn, nm);
}

/* ---- counted loops: for (iv = lo; iv < hi; iv += step) ---- */
typedef struct loop {
    LLVMBasicBlockRef pre, head, body, exit;
    LLVMValueRef iv, step;
    bool novec;                    /* keep the loop vectorizer off it */
} loop;

static LLVMValueRef loop_begin(gemm *g, loop *l, LLVMValueRef lo, LLVMValueRef hi, LLVMValueRef step)
{
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(g->b));
    l->pre = LLVMGetInsertBlock(g->b);
    l->head = block(g, fn, "head");
    l->body = block(g, fn, "body");
    l->exit = block(g, fn, "exit");
    l->step = step;
    l->novec = false;
    LLVMBuildBr(g->b, l->head);
    LLVMPositionBuilderAtEnd(g->b, l->head);
    l->iv = LLVMBuildPhi(g->b, g->i64, "iv");
    LLVMAddIncoming(l->iv, &lo, &l->pre, 1);
    LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, l->iv, hi, ""), l->body, l->exit);
    LLVMPositionBuilderAtEnd(g->b, l->body);
    return l->iv;
}

static void loop_end(gemm *g, loop *l)
{
    LLVMValueRef next = LLVMBuildNSWAdd(g->b, l->iv, l->step, "");
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(g->b);
    LLVMValueRef br = LLVMBuildBr(g->b, l->head);
    if (l->novec) {   /* !llvm.loop !{self, !{"llvm.loop.vectorize.enable", i1 false}} */
        const char *key = "llvm.loop.vectorize.enable";
        LLVMMetadataRef opt[2] = {LLVMMDStringInContext2(g->ctx, key, strlen(key)),
                                  LLVMValueAsMetadata(LLVMConstInt(g->i1, 0, 0))};
        LLVMMetadataRef tmp = LLVMTemporaryMDNode(g->ctx, NULL, 0);
        LLVMMetadataRef ops[2] = {tmp, LLVMMDNodeInContext2(g->ctx, opt, 2)};
        LLVMMetadataRef id = LLVMMDNodeInContext2(g->ctx, ops, 2);
        LLVMMetadataReplaceAllUsesWith(tmp, id);
        LLVMSetMetadata(br, LLVMGetMDKindIDInContext(g->ctx, "llvm.loop", 9), LLVMMetadataAsValue(g->ctx, id));
    }
    LLVMAddIncoming(l->iv, &next, &latch, 1);
    LLVMPositionBuilderAtEnd(g->b, l->exit);
}

/* ---- the micro-kernel: void uk(ptr a, ptr b, ptr c, i64 kc, i1 accumulate) ----
 * a: A micro-panel at (i0, pc): packed (k stride MR, row stride 1) or the operand itself;
 * b: B micro-panel at (pc, j0): packed (k stride NR) or the operand (unit or zero N stride);
 * c: C at (i0, j0). mr x nr is the tile (nr lanes over nvv vectors, the last masked). */
typedef struct ukdesc {
    int mr, nr, nvv, last;         /* rows, columns, vectors, lanes of the last vector */
    int64_t ak, ar, bk;            /* element strides: A per k, per row; B per k */
    int bmode;                     /* 0: vector load, 1: splat of one element */
} ukdesc;

static void uk_step(gemm *g, const ukdesc *d, LLVMValueRef pa, LLVMValueRef pb, int u, LLVMValueRef *acc)
{
    LLVMValueRef bv[16];
    unsigned sa = ssize(g), ca = csize(g);
    if (d->bmode == 1) {
        LLVMValueRef x = load(g, g->st, gepc(g, g->st, pb, u * d->bk), sa);
        LLVMValueRef s = splat(g, to_compute(g, x));
        for (int v = 0; v < d->nvv; v++)
            bv[v] = s;
    } else {
        bool packed = g->bo.pack;
        LLVMTypeRef et = packed ? g->ct : g->st, vt = packed ? g->vt : g->svt;
        unsigned al = packed ? ca : sa;
        for (int v = 0; v < d->nvv; v++) {
            LLVMValueRef p = gepc(g, et, pb, u * d->bk + (int64_t)v * g->vl);
            LLVMValueRef x;
            if (!packed && v == d->nvv - 1 && d->last < g->vl)
                x = masked_load(g, vt, p, lane_mask(g, d->last), al);
            else
                x = load(g, vt, p, al);
            bv[v] = packed ? x : to_compute(g, x);
        }
    }
    LLVMTypeRef aet = g->a.pack ? g->ct : g->st;
    unsigned aal = g->a.pack ? ca : sa;
    for (int r = 0; r < d->mr; r++) {
        LLVMValueRef x = load(g, aet, gepc(g, aet, pa, u * d->ak + r * d->ar), aal);
        LLVMValueRef s = splat(g, g->a.pack ? x : to_compute(g, x));
        for (int v = 0; v < d->nvv; v++)
            acc[r * d->nvv + v] = madd(g, s, bv[v], acc[r * d->nvv + v]);
    }
}

/* A k-loop of `count` iterations, each doing `unroll` steps; pa/pb/acc are updated to
 * the values after the loop. */
static void uk_loop(gemm *g, const ukdesc *d, LLVMValueRef fn, int unroll, LLVMValueRef count, LLVMValueRef *pa,
                    LLVMValueRef *pb, LLVMValueRef *acc)
{
    int nacc = d->mr * d->nvv;
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(g->b), body = block(g, fn, "k"), exit = block(g, fn, "kx");
    LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntSGT, count, ci(g, 0), ""), body, exit);
    LLVMPositionBuilderAtEnd(g->b, body);
    LLVMValueRef i = LLVMBuildPhi(g->b, g->i64, "i");
    LLVMValueRef qa = LLVMBuildPhi(g->b, g->ptr, "pa"), qb = LLVMBuildPhi(g->b, g->ptr, "pb");
    LLVMValueRef ph[64], cur[64];
    for (int j = 0; j < nacc; j++)
        cur[j] = ph[j] = LLVMBuildPhi(g->b, g->vt, "acc");
    LLVMTypeRef aet = g->a.pack ? g->ct : g->st, bet = g->bo.pack ? g->ct : g->st;
    for (int u = 0; u < unroll; u++)
        uk_step(g, d, qa, qb, u, cur);
    /* plain GEPs: after the last iteration the pointers may pass the operand's end */
    LLVMValueRef ia = ci(g, unroll * d->ak), ib = ci(g, unroll * d->bk);
    LLVMValueRef na = LLVMBuildGEP2(g->b, aet, qa, &ia, 1, ""), nb = LLVMBuildGEP2(g->b, bet, qb, &ib, 1, "");
    LLVMValueRef ni = LLVMBuildNSWAdd(g->b, i, ci(g, 1), "");
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(g->b);
    LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, ni, count, ""), body, exit);
    LLVMValueRef zero = ci(g, 0);
    LLVMAddIncoming(i, &zero, &pre, 1);
    LLVMAddIncoming(i, &ni, &latch, 1);
    LLVMAddIncoming(qa, pa, &pre, 1);
    LLVMAddIncoming(qa, &na, &latch, 1);
    LLVMAddIncoming(qb, pb, &pre, 1);
    LLVMAddIncoming(qb, &nb, &latch, 1);
    for (int j = 0; j < nacc; j++) {
        LLVMAddIncoming(ph[j], &acc[j], &pre, 1);
        LLVMAddIncoming(ph[j], &cur[j], &latch, 1);
    }
    LLVMPositionBuilderAtEnd(g->b, exit);
    LLVMValueRef xa = LLVMBuildPhi(g->b, g->ptr, ""), xb = LLVMBuildPhi(g->b, g->ptr, "");
    LLVMAddIncoming(xa, pa, &pre, 1);
    LLVMAddIncoming(xa, &na, &latch, 1);
    LLVMAddIncoming(xb, pb, &pre, 1);
    LLVMAddIncoming(xb, &nb, &latch, 1);
    *pa = xa;
    *pb = xb;
    for (int j = 0; j < nacc; j++) {
        LLVMValueRef x = LLVMBuildPhi(g->b, g->vt, "");
        LLVMAddIncoming(x, &acc[j], &pre, 1);
        LLVMAddIncoming(x, &cur[j], &latch, 1);
        acc[j] = x;
    }
}

static void uk_store(gemm *g, const ukdesc *d, LLVMValueRef c, LLVMValueRef *acc, bool accumulate)
{
    unsigned sa = ssize(g);
    for (int r = 0; r < d->mr; r++)
        for (int v = 0; v < d->nvv; v++) {
            LLVMValueRef x = acc[r * d->nvv + v];
            int lanes = v == d->nvv - 1 ? d->last : g->vl;
            int64_t at = r * g->c.s0 + (int64_t)v * g->vl * g->c.s1;
            if (g->c.s1 == 1) {
                LLVMValueRef p = gepc(g, g->st, c, at);
                LLVMValueRef m = lanes < g->vl ? lane_mask(g, lanes) : NULL;
                if (accumulate) {
                    LLVMValueRef old = m ? masked_load(g, g->svt, p, m, sa) : load(g, g->svt, p, sa);
                    x = add(g, to_compute(g, old), x);
                }
                x = to_storage(g, x);
                if (m)
                    masked_store(g, x, p, m, sa);
                else
                    store(g, x, p, sa);
            } else {   /* a strided C (not produced by today's layouts): lane by lane */
                for (int l = 0; l < lanes; l++) {
                    LLVMValueRef p = gepc(g, g->st, c, at + l * g->c.s1);
                    LLVMValueRef e = LLVMBuildExtractElement(g->b, x, ci32(g, l), "");
                    if (accumulate)
                        e = add(g, to_compute(g, load(g, g->st, p, sa)), e);
                    store(g, to_storage(g, e), p, sa);
                }
            }
        }
}

static LLVMValueRef emit_uk(gemm *g, int mr, int nr)
{
    char sfx[64];
    snprintf(sfx, sizeof sfx, ".uk%dx%d", mr, nr);
    LLVMValueRef fn = new_fn(g, sfx, g->uk_ty, true);
    for (unsigned i = 0; i < 3; i++)
        param_attr(g, fn, i, "noalias");
    ukdesc d = {.mr = mr, .nr = nr};
    d.nvv = (nr + g->vl - 1) / g->vl;
    d.last = nr - (d.nvv - 1) * g->vl;
    d.ak = g->a.pack ? g->mr : g->a.s1;
    d.ar = g->a.pack ? 1 : g->a.s0;
    d.bk = g->bo.pack ? g->nr : g->bo.s0;
    d.bmode = !g->bo.pack && g->bo.s1 == 0;
    if (d.bmode)
        d.nvv = (nr + g->vl - 1) / g->vl;
    LLVMPositionBuilderAtEnd(g->b, block(g, fn, "entry"));
    LLVMValueRef pa = LLVMGetParam(fn, 0), pb = LLVMGetParam(fn, 1), c = LLVMGetParam(fn, 2);
    LLVMValueRef kc = LLVMGetParam(fn, 3), accum = LLVMGetParam(fn, 4);
    LLVMValueRef acc[64];
    for (int j = 0; j < mr * d.nvv; j++)
        acc[j] = LLVMConstNull(g->vt);
    /* C comes from L3 or memory: fetch the tile's lines while the k-loop runs */
    if (g->c.s1 == 1) {
        LLVMTypeRef pty = g->ptr, fty;
        LLVMValueRef pf = intrinsic(g, "llvm.prefetch", &pty, 1, &fty);
        int64_t bytes = (int64_t)nr * ssize(g);
        for (int r = 0; r < mr; r++)
            for (int64_t o = 0; o < bytes + 63; o += 64) {
                int64_t at = r * g->c.s0 * ssize(g) + (o < bytes ? o : bytes - 1);
                LLVMValueRef args[4] = {gepc(g, g->cg->t_i8, c, at), ci32(g, 1), ci32(g, 3), ci32(g, 1)};
                call(g, pf, fty, args, 4);
                if (o >= bytes)
                    break;
            }
    }
    /* the unrolled loop, then the remainder */
    uk_loop(g, &d, fn, UNROLL, LLVMBuildSDiv(g->b, kc, ci(g, UNROLL), ""), &pa, &pb, acc);
    uk_loop(g, &d, fn, 1, LLVMBuildSRem(g->b, kc, ci(g, UNROLL), ""), &pa, &pb, acc);
    LLVMBasicBlockRef st = block(g, fn, "store"), ac = block(g, fn, "accumulate");
    LLVMBuildCondBr(g->b, accum, ac, st);
    LLVMPositionBuilderAtEnd(g->b, st);
    uk_store(g, &d, c, acc, false);
    LLVMBuildRetVoid(g->b);
    LLVMPositionBuilderAtEnd(g->b, ac);
    uk_store(g, &d, c, acc, true);
    LLVMBuildRetVoid(g->b);
    return fn;
}

/* ---- packing ----
 * pack(dst, src, n, kc) copies n rows of A (or columns of B) from src = &A[ic, pc]
 * (&B[pc, jc]) into panels of W = MR (NR) lanes:
 *     dst[w0*kc + k*W + w] = X[w0 + w, k]     for each panel w0 = 0, W, 2W, ...
 * sw: X's stride along w, sk: along k. In the last panel, lanes w >= n - w0 are read only
 * by B's edge micro-kernel, whose masked store drops them: they are zeroed up to the next
 * multiple of `zround` (VL for B; 0 for A, whose edge kernel reads only valid rows). */
#define PACK_KB 16   /* k block of the transposing copy: one cache line of an f32 row */

/* dst[k*W + w] = 0 for w in [w_lo, w_hi) */
static void zero_tail(gemm *g, LLVMValueRef pdst, int W, LLVMValueRef w_lo, LLVMValueRef w_hi, LLVMValueRef kc)
{
    unsigned ca = csize(g);
    loop lk, lw;
    LLVMValueRef k = loop_begin(g, &lk, ci(g, 0), kc, ci(g, 1));
    LLVMValueRef row = gep(g, g->ct, pdst, LLVMBuildNSWMul(g->b, k, ci(g, W), ""));
    LLVMValueRef w = loop_begin(g, &lw, w_lo, w_hi, ci(g, 1));
    store(g, LLVMConstNull(g->ct), gep(g, g->ct, row, w), ca);
    loop_end(g, &lw);
    loop_end(g, &lk);
}

/* lanes [w_lo, w_hi) of a panel, element by element; each lane reads PACK_KB
 * consecutive k (one cache line when sk == 1) at a time */
static void copy_lanes(gemm *g, LLVMValueRef psrc, LLVMValueRef pdst, int W, int64_t sw, int64_t sk, LLVMValueRef w_lo,
                       LLVMValueRef w_hi, LLVMValueRef kc)
{
    LLVMBuilderRef b = g->b;
    unsigned sa = ssize(g), ca = csize(g);
    loop lw, lkb, lk;
    LLVMValueRef kfull = LLVMBuildMul(b, LLVMBuildSDiv(b, kc, ci(g, PACK_KB), ""), ci(g, PACK_KB), "");
    LLVMValueRef w = loop_begin(g, &lw, w_lo, w_hi, ci(g, 1));
    lw.novec = true;   /* across lanes it would gather */
    LLVMValueRef s0 = gep(g, g->st, psrc, LLVMBuildNSWMul(b, w, ci(g, sw), ""));
    LLVMValueRef d0 = gep(g, g->ct, pdst, w);
    LLVMValueRef kb = loop_begin(g, &lkb, ci(g, 0), kfull, ci(g, PACK_KB));
    LLVMValueRef sk0 = gep(g, g->st, s0, LLVMBuildNSWMul(b, kb, ci(g, sk), ""));
    LLVMValueRef dk0 = gep(g, g->ct, d0, LLVMBuildNSWMul(b, kb, ci(g, W), ""));
    for (int k = 0; k < PACK_KB; k++) {
        LLVMValueRef x = to_compute(g, load(g, g->st, gepc(g, g->st, sk0, k * sk), sa));
        store(g, x, gepc(g, g->ct, dk0, (int64_t)k * W), ca);
    }
    loop_end(g, &lkb);
    LLVMValueRef k = loop_begin(g, &lk, kfull, kc, ci(g, 1));
    LLVMValueRef x = to_compute(g, load(g, g->st, gep(g, g->st, s0, LLVMBuildNSWMul(b, k, ci(g, sk), "")), sa));
    store(g, x, gep(g, g->ct, d0, LLVMBuildNSWMul(b, k, ci(g, W), "")), ca);
    loop_end(g, &lk);
    loop_end(g, &lw);
}

static LLVMValueRef shuffle(gemm *g, LLVMValueRef x, LLVMValueRef y, const int *idx, int n)
{
    LLVMValueRef m[64];
    for (int i = 0; i < n; i++)
        m[i] = ci32(g, idx[i]);
    return LLVMBuildShuffleVector(g->b, x, y, LLVMConstVector(m, (unsigned)n), "");
}

/* f32, unit k stride, lanes [0, w_hi) with w_hi % 4 == 0: per 4 lanes and 16 k, rows
 * r0..r3 (16 k each) become, in each 128-bit lane L, the 4 lanes at k = 4L + j
 * (unpcklps/unpckhps, then unpcklpd/unpckhpd) */
static void copy_quads(gemm *g, LLVMValueRef psrc, LLVMValueRef pdst, int W, int64_t sw, LLVMValueRef w_hi,
                       LLVMValueRef kc)
{
    LLVMBuilderRef b = g->b;
    loop lw, lkb, lk;
    LLVMValueRef kfull = LLVMBuildMul(b, LLVMBuildSDiv(b, kc, ci(g, 16), ""), ci(g, 16), "");
    LLVMValueRef w = loop_begin(g, &lw, ci(g, 0), w_hi, ci(g, 4));
    LLVMValueRef s0 = gep(g, g->st, psrc, LLVMBuildNSWMul(b, w, ci(g, sw), ""));
    LLVMValueRef d0 = gep(g, g->ct, pdst, w);
    LLVMValueRef kb = loop_begin(g, &lkb, ci(g, 0), kfull, ci(g, 16));
    LLVMValueRef r[4], t[4], u[4];
    for (int i = 0; i < 4; i++)
        r[i] = load(g, g->vt, gep(g, g->st, s0, LLVMBuildNSWAdd(b, kb, ci(g, i * sw), "")), 4);
    int lo_ps[16], hi_ps[16], lo_pd[16], hi_pd[16];
    for (int L = 0; L < 4; L++) {
        int q = 4 * L;
        int a1[4] = {q, 16 + q, q + 1, 17 + q}, a2[4] = {q + 2, 18 + q, q + 3, 19 + q};
        int a3[4] = {q, q + 1, 16 + q, 17 + q}, a4[4] = {q + 2, q + 3, 18 + q, 19 + q};
        memcpy(lo_ps + q, a1, sizeof a1);
        memcpy(hi_ps + q, a2, sizeof a2);
        memcpy(lo_pd + q, a3, sizeof a3);
        memcpy(hi_pd + q, a4, sizeof a4);
    }
    t[0] = shuffle(g, r[0], r[1], lo_ps, 16);
    t[1] = shuffle(g, r[0], r[1], hi_ps, 16);
    t[2] = shuffle(g, r[2], r[3], lo_ps, 16);
    t[3] = shuffle(g, r[2], r[3], hi_ps, 16);
    u[0] = shuffle(g, t[0], t[2], lo_pd, 16);
    u[1] = shuffle(g, t[0], t[2], hi_pd, 16);
    u[2] = shuffle(g, t[1], t[3], lo_pd, 16);
    u[3] = shuffle(g, t[1], t[3], hi_pd, 16);
    LLVMValueRef dk0 = gep(g, g->ct, d0, LLVMBuildNSWMul(b, kb, ci(g, W), ""));
    for (int L = 0; L < 4; L++)
        for (int j = 0; j < 4; j++) {
            int q[4] = {4 * L, 4 * L + 1, 4 * L + 2, 4 * L + 3};
            LLVMValueRef x = shuffle(g, u[j], LLVMGetUndef(g->vt), q, 4);
            store(g, x, gepc(g, g->ct, dk0, (int64_t)(4 * L + j) * W), 4);
        }
    loop_end(g, &lkb);
    /* the k tail, 4 lanes at a time */
    LLVMValueRef k = loop_begin(g, &lk, kfull, kc, ci(g, 1));
    LLVMValueRef v = LLVMGetUndef(LLVMVectorType(g->ct, 4));
    for (int i = 0; i < 4; i++)
        v = LLVMBuildInsertElement(b, v, load(g, g->st, gep(g, g->st, s0, LLVMBuildNSWAdd(b, k, ci(g, i * sw), "")), 4),
                                   ci32(g, i), "");
    store(g, v, gep(g, g->ct, d0, LLVMBuildNSWMul(b, k, ci(g, W), "")), 4);
    loop_end(g, &lk);
    loop_end(g, &lw);
}

static LLVMValueRef emit_pack(gemm *g, const char *suffix, int W, int64_t sw, int64_t sk, int zround)
{
    LLVMValueRef fn = new_fn(g, suffix, g->pack_ty, true);
    param_attr(g, fn, 0, "noalias");
    param_attr(g, fn, 1, "noalias");
    LLVMBuilderRef b = g->b;
    LLVMPositionBuilderAtEnd(b, block(g, fn, "entry"));
    LLVMValueRef dst = LLVMGetParam(fn, 0), src = LLVMGetParam(fn, 1);
    LLVMValueRef n = LLVMGetParam(fn, 2), kc = LLVMGetParam(fn, 3);
    unsigned sa = ssize(g), ca = csize(g);
    loop lp;
    LLVMValueRef w0 = loop_begin(g, &lp, ci(g, 0), n, ci(g, W));
    LLVMValueRef wv = smin(g, ci(g, W), LLVMBuildNSWSub(b, n, w0, ""));   /* valid lanes */
    LLVMValueRef pdst = gep(g, g->ct, dst, LLVMBuildNSWMul(b, w0, kc, ""));
    LLVMValueRef psrc = gep(g, g->st, src, LLVMBuildNSWMul(b, w0, ci(g, sw), ""));
    if (sw == 1) {
        /* contiguous panel rows: one (masked) vector per k */
        LLVMTypeRef svt = LLVMVectorType(g->st, (unsigned)W);
        LLVMValueRef iota[256];
        for (int l = 0; l < W; l++)
            iota[l] = ci(g, l);
        LLVMTypeRef v64 = LLVMVectorType(g->i64, (unsigned)W);
        LLVMValueRef nv = LLVMBuildInsertElement(b, LLVMGetUndef(v64), wv, ci32(g, 0), "");
        nv = LLVMBuildShuffleVector(b, nv, LLVMGetUndef(v64), LLVMConstNull(LLVMVectorType(g->i32, (unsigned)W)), "");
        LLVMValueRef mask = LLVMBuildICmp(b, LLVMIntSLT, LLVMConstVector(iota, (unsigned)W), nv, "");
        LLVMValueRef full = LLVMBuildICmp(b, LLVMIntEQ, wv, ci(g, W), "");
        LLVMBasicBlockRef bf = block(g, fn, "full"), bp = block(g, fn, "part"), bj = block(g, fn, "join");
        LLVMBuildCondBr(b, full, bf, bp);
        for (int part = 0; part < 2; part++) {
            LLVMPositionBuilderAtEnd(b, part ? bp : bf);
            loop lk;
            LLVMValueRef k = loop_begin(g, &lk, ci(g, 0), kc, ci(g, 1));
            LLVMValueRef p = gep(g, g->st, psrc, LLVMBuildNSWMul(b, k, ci(g, sk), ""));
            LLVMValueRef x = part ? masked_load(g, svt, p, mask, sa) : load(g, svt, p, sa);
            store(g, to_compute(g, x), gep(g, g->ct, pdst, LLVMBuildNSWMul(b, k, ci(g, W), "")), ca);
            loop_end(g, &lk);
            LLVMBuildBr(b, bj);
        }
        LLVMPositionBuilderAtEnd(b, bj);
    } else {
        /* a transposing copy. f32 rows with unit k stride: 4 lanes x 16 k at a time
         * (four vector loads, an in-lane 4x4 transpose, sixteen 4-wide stores) */
        LLVMValueRef wq = ci(g, 0);
        if (g->dt == DT_F32 && sk == 1 && W % 4 == 0 && g->vl == 16) {
            wq = LLVMBuildMul(b, LLVMBuildSDiv(b, wv, ci(g, 4), ""), ci(g, 4), "");
            copy_quads(g, psrc, pdst, W, sw, wq, kc);
        }
        copy_lanes(g, psrc, pdst, W, sw, sk, wq, wv, kc);
        if (zround > 0) {   /* lanes the edge micro-kernel loads but does not store */
            LLVMValueRef zw = LLVMBuildMul(b, LLVMBuildSDiv(b, LLVMBuildAdd(b, wv, ci(g, zround - 1), ""), ci(g, zround), ""),
                                           ci(g, zround), "");
            zw = smin(g, zw, ci(g, W));
            LLVMBasicBlockRef bz = block(g, fn, "zero"), bn = block(g, fn, "nozero");
            LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, wv, zw, ""), bz, bn);
            LLVMPositionBuilderAtEnd(b, bz);
            zero_tail(g, pdst, W, wv, zw, kc);
            LLVMBuildBr(b, bn);
            LLVMPositionBuilderAtEnd(b, bn);
        }
    }
    loop_end(g, &lp);
    LLVMBuildRetVoid(b);
    return fn;
}

/* ---- the task: void task(ptr ctx, i64 t) ---- */
static LLVMValueRef ctx_field(gemm *g, LLVMValueRef ctx, unsigned i, LLVMTypeRef t)
{
    return load(g, t, LLVMBuildStructGEP2(g->b, g->ctx_ty, ctx, i, ""), 8);
}

static LLVMValueRef runtime_fn(gemm *g, const char *name, LLVMTypeRef *fty)
{
    return cg_runtime_fn(g->cg, name, fty);
}

static LLVMValueRef libc_fn(gemm *g, const char *name, LLVMTypeRef ret, LLVMTypeRef *params, unsigned n,
                            LLVMTypeRef *fty)
{
    *fty = LLVMFunctionType(ret, params, n, 0);
    LLVMValueRef fn = LLVMGetNamedFunction(g->mod, name);
    return fn ? fn : LLVMAddFunction(g->mod, name, *fty);
}

/* Goto's loops over C[m0:m1, n0:n1] of one batch element */
static void emit_block(gemm *g, LLVMValueRef A, LLVMValueRef B, LLVMValueRef C, LLVMValueRef m0, LLVMValueRef m1,
                       LLVMValueRef n0, LLVMValueRef n1, LLVMValueRef bufa, LLVMValueRef bufb)
{
    LLVMBuilderRef b = g->b;
    loop ljc, lpc, lic, lq, lp;
    LLVMValueRef jc = loop_begin(g, &ljc, n0, n1, ci(g, g->NC));
    LLVMValueRef nc = smin(g, ci(g, g->NC), LLVMBuildNSWSub(b, n1, jc, ""));
    LLVMValueRef pc = loop_begin(g, &lpc, ci(g, 0), ci(g, g->K), ci(g, g->KC));
    LLVMValueRef kc = smin(g, ci(g, g->KC), LLVMBuildNSWSub(b, ci(g, g->K), pc, ""));
    LLVMValueRef accum = LLVMBuildICmp(b, LLVMIntNE, pc, ci(g, 0), "");
    LLVMValueRef bpc = gep(g, g->st, B, LLVMBuildNSWAdd(b, LLVMBuildNSWMul(b, pc, ci(g, g->bo.s0), ""),
                                                        LLVMBuildNSWMul(b, jc, ci(g, g->bo.s1), ""), ""));
    if (g->bo.pack) {
        LLVMValueRef args[4] = {bufb, bpc, nc, kc};   /* (dst, src, n, kc) */
        call(g, g->pack_b_fn, g->pack_ty, args, 4);
    }
    LLVMValueRef ic = loop_begin(g, &lic, m0, m1, ci(g, g->MC));
    LLVMValueRef mc = smin(g, ci(g, g->MC), LLVMBuildNSWSub(b, m1, ic, ""));
    LLVMValueRef apc = gep(g, g->st, A, LLVMBuildNSWAdd(b, LLVMBuildNSWMul(b, ic, ci(g, g->a.s0), ""),
                                                        LLVMBuildNSWMul(b, pc, ci(g, g->a.s1), ""), ""));
    if (g->a.pack) {
        LLVMValueRef args[4] = {bufa, apc, mc, kc};
        call(g, g->pack_a_fn, g->pack_ty, args, 4);
    }
    /* micro-panels: B's (q) outside, A's (p) inside */
    LLVMValueRef q = loop_begin(g, &lq, ci(g, 0), nc, ci(g, g->nr));
    LLVMValueRef j = LLVMBuildNSWAdd(b, jc, q, "");
    LLVMValueRef bptr = g->bo.pack ? gep(g, g->ct, bufb, LLVMBuildNSWMul(b, q, kc, ""))
                                   : gep(g, g->st, bpc, LLVMBuildNSWMul(b, q, ci(g, g->bo.s1), ""));
    LLVMValueRef nedge = LLVMBuildICmp(b, LLVMIntSGT, LLVMBuildNSWAdd(b, j, ci(g, g->nr), ""), ci(g, g->N), "");
    LLVMValueRef p = loop_begin(g, &lp, ci(g, 0), mc, ci(g, g->mr));
    LLVMValueRef i = LLVMBuildNSWAdd(b, ic, p, "");
    LLVMValueRef aptr = g->a.pack ? gep(g, g->ct, bufa, LLVMBuildNSWMul(b, p, kc, ""))
                                  : gep(g, g->st, apc, LLVMBuildNSWMul(b, p, ci(g, g->a.s0), ""));
    LLVMValueRef cptr = gep(g, g->st, C, LLVMBuildNSWAdd(b, LLVMBuildNSWMul(b, i, ci(g, g->c.s0), ""),
                                                         LLVMBuildNSWMul(b, j, ci(g, g->c.s1), ""), ""));
    LLVMValueRef medge = LLVMBuildICmp(b, LLVMIntSGT, LLVMBuildNSWAdd(b, i, ci(g, g->mr), ""), ci(g, g->M), "");
    LLVMValueRef u[2];
    for (int em = 0; em < 2; em++)
        u[em] = !g->uk[em][0]   ? g->uk[em][1]
                : !g->uk[em][1] ? g->uk[em][0]
                                : LLVMBuildSelect(b, nedge, g->uk[em][1], g->uk[em][0], "");
    LLVMValueRef ukf = !u[0] ? u[1] : !u[1] ? u[0] : LLVMBuildSelect(b, medge, u[1], u[0], "");
    LLVMValueRef args[5] = {aptr, bptr, cptr, kc, accum};
    call(g, ukf, g->uk_ty, args, 5);
    loop_end(g, &lp);
    loop_end(g, &lq);
    loop_end(g, &lic);
    loop_end(g, &lpc);
    loop_end(g, &ljc);
}

static LLVMValueRef operand_base(gemm *g, const opnd *o, LLVMValueRef fn)
{
    return o->param < 0 ? o->cst : LLVMGetParam(fn, (unsigned)o->param);
}

static LLVMValueRef emit_task(gemm *g)
{
    LLVMTypeRef pt[2] = {g->ptr, g->i64};
    LLVMValueRef fn = new_fn(g, ".task", LLVMFunctionType(g->vd, pt, 2, 0), true);
    LLVMBuilderRef b = g->b;
    LLVMPositionBuilderAtEnd(b, block(g, fn, "entry"));
    LLVMValueRef ctx = LLVMGetParam(fn, 0), t = LLVMGetParam(fn, 1);
    LLVMValueRef out = ctx_field(g, ctx, 0, g->ptr), A = ctx_field(g, ctx, 1, g->ptr);
    LLVMValueRef B = ctx_field(g, ctx, 2, g->ptr);
    LLVMValueRef T = ctx_field(g, ctx, 4, g->i64), P = ctx_field(g, ctx, 5, g->i64);
    /* packing buffers */
    int64_t bytes = (g->bufa + g->bufb) * csize(g);
    LLVMValueRef buf = NULL, bufa = NULL, bufb = NULL, freefn = NULL;
    LLVMTypeRef free_ty = NULL;
    if (bytes > 0) {
        bytes = (bytes + 63) / 64 * 64;
        if (!g->heap) {
            buf = LLVMBuildAlloca(b, LLVMArrayType(g->cg->t_i8, (unsigned)bytes), "pack");
            LLVMSetAlignment(buf, 64);
        } else {
            LLVMTypeRef aty, ps[2] = {g->i64, g->i64};
            LLVMValueRef al = libc_fn(g, "aligned_alloc", g->ptr, ps, 2, &aty);
            LLVMValueRef args[2] = {ci(g, 64), ci(g, bytes)};
            buf = call(g, al, aty, args, 2);
            freefn = libc_fn(g, "free", g->vd, &g->ptr, 1, &free_ty);
            /* out of memory: flag it for the entry (which reports it once, on the
             * calling thread) and leave */
            LLVMBasicBlockRef oom = block(g, fn, "oom"), ok = block(g, fn, "ok");
            LLVMBuildCondBr(b, LLVMBuildIsNull(b, buf, ""), oom, ok);
            LLVMPositionBuilderAtEnd(b, oom);
            LLVMValueRef st = LLVMBuildStore(b, ci32(g, 1), LLVMBuildStructGEP2(b, g->ctx_ty, ctx, 6, ""));
            LLVMSetOrdering(st, LLVMAtomicOrderingMonotonic);
            LLVMSetAlignment(st, 4);
            LLVMBuildRetVoid(b);
            LLVMPositionBuilderAtEnd(b, ok);
        }
        bufa = buf;
        bufb = gepc(g, g->ct, buf, g->bufa);
    }
    /* jobs [t*J/T, (t+1)*J/T), J = nbatch * P */
    LLVMValueRef J = LLVMBuildNSWMul(b, ci(g, g->nbatch), P, "");
    LLVMValueRef j0 = LLVMBuildSDiv(b, LLVMBuildNSWMul(b, t, J, ""), T, "");
    LLVMValueRef j1 = LLVMBuildSDiv(b, LLVMBuildNSWMul(b, LLVMBuildNSWAdd(b, t, ci(g, 1), ""), J, ""), T, "");
    loop lj;
    LLVMValueRef job = loop_begin(g, &lj, j0, j1, ci(g, 1));
    LLVMValueRef bi = LLVMBuildSDiv(b, job, P, ""), part = LLVMBuildSRem(b, job, P, "");
    LLVMValueRef ao = ci(g, g->a.off), bo = ci(g, g->bo.off), co = ci(g, g->c.off), rem = bi;
    for (int d = g->nbd - 1; d >= 0; d--) {
        LLVMValueRef idx = d ? LLVMBuildSRem(b, rem, ci(g, g->bshape[d]), "") : rem;
        if (d)
            rem = LLVMBuildSDiv(b, rem, ci(g, g->bshape[d]), "");
        ao = LLVMBuildNSWAdd(b, ao, LLVMBuildNSWMul(b, idx, ci(g, g->a.bst[d]), ""), "");
        bo = LLVMBuildNSWAdd(b, bo, LLVMBuildNSWMul(b, idx, ci(g, g->bo.bst[d]), ""), "");
        co = LLVMBuildNSWAdd(b, co, LLVMBuildNSWMul(b, idx, ci(g, g->c.bst[d]), ""), "");
    }
    LLVMValueRef Ab = gep(g, g->st, A, ao), Bb = gep(g, g->st, B, bo), Cb = gep(g, g->st, out, co);
    /* this part's slab of panels: [part*np/P, (part+1)*np/P) panels of the split dim */
    int64_t tile = g->split_n ? g->nr : g->mr, ext = g->split_n ? g->N : g->M;
    int64_t np = (ext + tile - 1) / tile;
    LLVMValueRef lo = LLVMBuildNSWMul(b, LLVMBuildSDiv(b, LLVMBuildNSWMul(b, part, ci(g, np), ""), P, ""),
                                      ci(g, tile), "");
    LLVMValueRef hi = LLVMBuildNSWMul(
        b, LLVMBuildSDiv(b, LLVMBuildNSWMul(b, LLVMBuildNSWAdd(b, part, ci(g, 1), ""), ci(g, np), ""), P, ""),
        ci(g, tile), "");
    hi = smin(g, hi, ci(g, ext));
    if (g->split_n)
        emit_block(g, Ab, Bb, Cb, ci(g, 0), ci(g, g->M), lo, hi, bufa, bufb);
    else
        emit_block(g, Ab, Bb, Cb, lo, hi, ci(g, 0), ci(g, g->N), bufa, bufb);
    loop_end(g, &lj);
    if (freefn)
        call(g, freefn, free_ty, &buf, 1);
    LLVMBuildRetVoid(b);
    return fn;
}

/* ---- planning ---- */

/* the operand's value as the kernel sees it; false if it cannot be read */
static void plan_operand(gemm *g, const ir_func *f, const ir_node *x, opnd *o, const int *storages, int nin,
                         const int64_t *dshape, int r)
{
    memset(o, 0, sizeof *o);
    const ir_node *s = &f->nodes[x->storage];
    if (s->op == OP_constant) {
        /* a view of a scalar constant: every element is the value */
        LLVMTypeRef st = g->st;
        LLVMValueRef v;
        if (g->dt == DT_F16)
            v = LLVMConstInt(st, f32_to_f16((float)s->f[0]), 0);
        else if (g->dt == DT_BF16)
            v = LLVMConstInt(st, f32_to_bf16((float)s->f[0]), 0);
        else if (ir_dtype_is_float(g->dt))
            v = LLVMConstReal(st, s->f[0]);
        else
            v = LLVMConstInt(st, (unsigned long long)(int64_t)s->f[0], 1);
        char nm[512];
        snprintf(nm, sizeof nm, "%s.const", g->name);
        o->cst = LLVMAddGlobal(g->mod, st, nm);
        LLVMSetInitializer(o->cst, v);
        LLVMSetGlobalConstant(o->cst, 1);
        LLVMSetLinkage(o->cst, LLVMPrivateLinkage);
        o->param = -1;
        return;   /* offset and strides stay 0 */
    }
    o->param = -1;
    for (int i = 0; i < nin; i++)
        if (storages[i] == x->storage)
            o->param = 1 + i;
    o->off = x->offset;
    for (int d = 0; d < r; d++) {
        int64_t st = dshape[d] == 1 ? 0 : x->strides[d];   /* size-1 dims never move */
        if (d < r - 2)
            o->bst[d] = st;
        else if (d == r - 2)
            o->s0 = st;
        else
            o->s1 = st;
    }
}

static void default_tiles(gemm *g)
{
    int bits = g->cg->vector_bits >= 512 ? 512 : g->cg->vector_bits >= 256 ? 256 : 128;
    int ebits = (int)csize(g) * 8;
    g->vl = bits / ebits;
    /* 32 zmm: 12 x 2 vectors (24 accumulators); 16 ymm/xmm: 6 x 2 (12) */
    g->mr = bits == 512 ? 12 : 6;
    g->nv = 2;
    if (tuning.mr > 0)
        g->mr = tuning.mr;
    if (tuning.nv > 0)
        g->nv = tuning.nv;
    if (g->mr > 32)
        g->mr = 32;
    if (g->nv > 8)
        g->nv = 8;
    if (g->mr * g->nv > 48)
        g->nv = 48 / g->mr > 0 ? 48 / g->mr : 1;
    g->nr = g->nv * g->vl;
}

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static bool plan(gemm *g, const ir_func *f, int id, char *why, size_t whylen)
{
    const ir_node *n = &f->nodes[id];
    if (n->op != OP_matmul || n->nin != 2 || n->rank < 2) {
        snprintf(why, whylen, "node %%%d is not a matmul", id);
        return false;
    }
    const ir_node *A = &f->nodes[n->in[0]], *B = &f->nodes[n->in[1]];
    int r = n->rank;
    if (A->rank != r || B->rank != r || A->dtype != n->dtype || B->dtype != n->dtype || n->dtype == DT_BOOL) {
        snprintf(why, whylen, "matmul %%%d has operands of another rank or dtype", id);
        return false;
    }
    g->dt = n->dtype;
    g->isf = ir_dtype_is_float(g->dt);
    g->st = cg_storage_type(g->cg, g->dt);
    g->ct = cg_compute_type(g->cg, g->dt);
    g->M = n->shape[r - 2];
    g->N = n->shape[r - 1];
    g->K = A->shape[r - 1];
    if (B->shape[r - 2] != g->K || A->shape[r - 2] != g->M || B->shape[r - 1] != g->N) {
        snprintf(why, whylen, "matmul %%%d: operand shapes do not fit", id);
        return false;
    }
    for (int d = 0; d < r - 2; d++)
        if (A->shape[d] != n->shape[d] || B->shape[d] != n->shape[d]) {
            snprintf(why, whylen, "matmul %%%d: batch dims differ", id);
            return false;
        }
    int storages[64];
    pass_kernel k = {.root = id, .nmembers = 1, .members = &id};
    int nin = cg_kernel_inputs(f, &k, storages);
    plan_operand(g, f, A, &g->a, storages, nin, A->shape, r);
    plan_operand(g, f, B, &g->bo, storages, nin, B->shape, r);
    plan_operand(g, f, n, &g->c, storages, 0, n->shape, r);
    g->c.param = 0;
    if ((g->a.param < 0 && !g->a.cst) || (g->bo.param < 0 && !g->bo.cst)) {
        snprintf(why, whylen, "matmul %%%d: an operand's storage is not among the kernel inputs", id);
        return false;
    }
    /* batch dims: drop size 1, merge neighbours that are one dim for A, B and C */
    g->nbatch = 1;
    g->nbd = 0;
    for (int d = 0; d < r - 2; d++) {
        g->nbatch *= n->shape[d];
        if (n->shape[d] == 1)
            continue;
        int e = g->nbd;
        if (e > 0 && g->a.bst[e - 1] == g->a.bst[d] * n->shape[d] && g->bo.bst[e - 1] == g->bo.bst[d] * n->shape[d] &&
            g->c.bst[e - 1] == g->c.bst[d] * n->shape[d]) {
            g->bshape[e - 1] *= n->shape[d];
            g->a.bst[e - 1] = g->a.bst[d];
            g->bo.bst[e - 1] = g->bo.bst[d];
            g->c.bst[e - 1] = g->c.bst[d];
            continue;
        }
        g->bshape[e] = n->shape[d];
        g->a.bst[e] = g->a.bst[d];
        g->bo.bst[e] = g->bo.bst[d];
        g->c.bst[e] = g->c.bst[d];
        g->nbd++;
    }
    default_tiles(g);
    /* N of half a vector or less leaves most lanes of every FMA idle: compute C^T = B^T A^T
     * instead (vectors along M; C is then stored lane by lane, N apart). Measured: wins
     * 1.1-1.8x for N <= 8 (f32), ties at N = 10, loses from N = 12 (docs/gemm.md). */
    g->swapped = false;
    if ((2 * g->N <= g->vl && g->M >= 2 * g->vl && tuning.swap >= 0) || tuning.swap > 0) {
        opnd t = g->a;
        g->a = g->bo;
        g->bo = t;
        int64_t x = g->a.s0;
        g->a.s0 = g->a.s1;
        g->a.s1 = x;
        x = g->bo.s0;
        g->bo.s0 = g->bo.s1;
        g->bo.s1 = x;
        x = g->c.s0;
        g->c.s0 = g->c.s1;
        g->c.s1 = x;
        x = g->M;
        g->M = g->N;
        g->N = x;
        g->swapped = true;
    }
    g->vt = LLVMVectorType(g->ct, (unsigned)g->vl);
    g->svt = LLVMVectorType(g->st, (unsigned)g->vl);

    /* packing. A when it does not stay in L2 by itself (the micro-kernel re-reads it for
     * every NR columns), and then B too (Goto's scheme); else only B when its rows are not
     * unit-stride or a splat. Small and skinny problems (the MLP's 64 x 784 @ 784 x 256)
     * run faster unpacked: measured in docs/gemm.md. */
    bool half = g->dt == DT_F16 || g->dt == DT_BF16;
    bool b_direct_ok = g->bo.s1 == 1 || g->bo.s1 == 0;
    double a_bytes = (double)g->M * (double)g->K * csize(g);
    bool big = a_bytes > PACK_A_BYTES && g->M > 2 * g->mr && g->K >= 16;
    if (tuning.pack == 0)
        big = false;
    if (tuning.pack == 1)
        big = true;
    g->a.pack = big && g->a.param >= 0;
    g->bo.pack = g->bo.param >= 0 && (!b_direct_ok || big);
    /* blocks */
    /* packed: KC = 1024 (a B micro-panel of 128 KiB and the A block stream from L2; one
     * pass over C per 1024 of K); unpacked A: KC = 256 keeps B's block in L2 beside A */
    int64_t kc = tuning.kc > 0 ? tuning.kc : g->a.pack ? 1024 : 256, mc = tuning.mc > 0 ? tuning.mc : 96;
    int64_t nc = tuning.nc > 0 ? tuning.nc : 2048;
    g->KC = half ? max64(g->K, 1) : min64(kc, max64(g->K, 1));   /* f16/bf16: C rounded once */
    g->MC = min64(round_up(mc, g->mr), round_up(g->M, g->mr));
    g->NC = min64(round_up(nc, g->nr), round_up(g->N, g->nr));
    /* f16/bf16 take all of K in one block: keep the buffers bounded all the same */
    g->MC = max64(g->mr, min64(g->MC, PACK_A_MAX / (g->KC * csize(g)) / g->mr * g->mr));
    g->NC = max64(g->nr, min64(g->NC, PACK_B_MAX / (g->KC * csize(g)) / g->nr * g->nr));
    if (!g->a.pack)
        g->MC = round_up(g->M, g->mr);
    if (!g->bo.pack)
        g->NC = round_up(g->N, g->nr);
    g->bufa = g->a.pack ? g->MC * g->KC : 0;
    g->bufb = g->bo.pack ? g->KC * g->NC : 0;
    g->heap = (g->bufa + g->bufb) * (int64_t)csize(g) > STACK_BYTES;
    /* parallel split: by N panels when there are as many as M panels, else by M */
    int64_t npm = (g->M + g->mr - 1) / g->mr, npn = (g->N + g->nr - 1) / g->nr;
    g->split_n = npn >= npm;
    g->maxp = g->split_n ? npn : npm;
    double flops = 2.0 * (double)g->M * (double)g->N * (double)g->K * (double)g->nbatch;
    double per = tuning.par_flops > 0 ? (double)tuning.par_flops : (double)(1 << 22);
    double tm = flops / per;
    int64_t maxjobs = g->nbatch * g->maxp;
    g->tmax = tm < 1 ? 1 : tm > MAX_TASKS ? MAX_TASKS : (int64_t)tm;
    g->tmax = min64(g->tmax, maxjobs);
    return true;
}

/* ---- entry: void name(ptr out, ptr in_0, ..., ptr inst) ---- */
LLVMValueRef cg_emit_matmul(cg_llvm *cg, const ir_func *f, int id, const char *name)
{
    if (!cg || !f || id < 0 || id >= f->nnodes || !name)
        return NULL;
    gemm g0, *g = &g0;
    memset(g, 0, sizeof *g);
    g->cg = cg;
    g->ctx = cg->ctx;
    g->mod = cg->mod;
    g->name = name;
    g->i1 = cg->t_i1;
    g->i32 = cg->t_i32;
    g->i64 = cg->t_i64;
    g->ptr = cg->t_ptr;
    g->vd = cg->t_void;
    char why[256];
    if (!plan(g, f, id, why, sizeof why))
        return NULL;
    int storages[64];
    pass_kernel k = {.root = id, .nmembers = 1, .members = &id};
    int nin = cg_kernel_inputs(f, &k, storages);
    if (nin < 0 || nin > 2)
        return NULL;
    LLVMTypeRef params[66];
    for (int i = 0; i < nin + 2; i++)
        params[i] = g->ptr;
    /* heap buffers can fail: then the kernel returns i32 (0 or the status it reported) */
    bool can_fail = g->heap && g->nbatch * g->M * g->N > 0 && g->K > 0;
    LLVMValueRef fn =
        LLVMAddFunction(g->mod, name, LLVMFunctionType(can_fail ? g->i32 : g->vd, params, (unsigned)nin + 2, 0));
    fn_attrs(g, fn);
    for (int i = 0; i < nin + 1; i++)
        param_attr(g, fn, (unsigned)i, "noalias");
    g->b = LLVMCreateBuilderInContext(g->ctx);
    LLVMBuilderRef b = g->b;
    LLVMValueRef inst = LLVMGetParam(fn, (unsigned)nin + 1);

    if (g->nbatch * g->M * g->N == 0) {   /* nothing to write */
        LLVMPositionBuilderAtEnd(b, block(g, fn, "entry"));
        LLVMBuildRetVoid(b);
        LLVMDisposeBuilder(b);
        return fn;
    }
    const ir_node *n = &f->nodes[id];
    if (g->K == 0) {   /* an empty sum: zeros (C is the node's own dense storage) */
        LLVMPositionBuilderAtEnd(b, block(g, fn, "entry"));
        LLVMValueRef p = gepc(g, g->st, LLVMGetParam(fn, 0), n->offset);
        LLVMBuildMemSet(b, p, LLVMConstInt(cg->t_i8, 0, 0), ci(g, ir_numel(n) * (int64_t)ssize(g)), 1);
        LLVMBuildRetVoid(b);
        LLVMDisposeBuilder(b);
        return fn;
    }

    /* helpers first (each positions the builder in its own function) */
    LLVMTypeRef ukp[5] = {g->ptr, g->ptr, g->ptr, g->i64, g->i1};
    g->uk_ty = LLVMFunctionType(g->vd, ukp, 5, 0);
    LLVMTypeRef pkp[4] = {g->ptr, g->ptr, g->i64, g->i64};
    g->pack_ty = LLVMFunctionType(g->vd, pkp, 4, 0);
    /* only the variants some tile uses (N = 10 needs no full-width one) */
    int mre = (int)(g->M % g->mr), nre = (int)(g->N % g->nr);
    for (int em = 0; em < 2; em++)
        for (int en = 0; en < 2; en++)
            if ((em ? mre > 0 : g->M >= g->mr) && (en ? nre > 0 : g->N >= g->nr))
                g->uk[em][en] = emit_uk(g, em ? mre : g->mr, en ? nre : g->nr);
    if (g->a.pack)
        g->pack_a_fn = emit_pack(g, ".packA", g->mr, g->a.s0, g->a.s1, 0);
    if (g->bo.pack)
        g->pack_b_fn = emit_pack(g, ".packB", g->nr, g->bo.s1, g->bo.s0, g->vl);
    LLVMTypeRef fields[7] = {g->ptr, g->ptr, g->ptr, g->ptr, g->i64, g->i64, g->i32};
    g->ctx_ty = LLVMStructTypeInContext(g->ctx, fields, 7, 0);
    LLVMValueRef task = emit_task(g);

    /* the entry: fill the context, pick the task count, run */
    LLVMPositionBuilderAtEnd(b, block(g, fn, "entry"));
    LLVMValueRef ctx = LLVMBuildAlloca(b, g->ctx_ty, "ctx");
    LLVMValueRef vals[4] = {LLVMGetParam(fn, 0), operand_base(g, &g->a, fn), operand_base(g, &g->bo, fn), inst};
    for (unsigned i = 0; i < 4; i++)
        store(g, vals[i], LLVMBuildStructGEP2(b, g->ctx_ty, ctx, i, ""), 8);
    LLVMValueRef T = ci(g, 1), P = ci(g, 1);
    if (g->tmax > 1) {
        LLVMTypeRef fty;
        LLVMValueRef ntf = runtime_fn(g, "tdsl_rt_num_threads", &fty);
        LLVMValueRef nth = call(g, ntf, fty, &inst, 1);
        nth = LLVMBuildSExt(b, nth, g->i64, "");
        nth = LLVMBuildSelect(b, LLVMBuildICmp(b, LLVMIntSLT, nth, ci(g, 1), ""), ci(g, 1), nth, "");
        T = smin(g, nth, ci(g, g->tmax));
        /* whole matrices per task when the batch divides evenly or is large; else each
         * matrix in T parts (so J = nbatch * T divides by T) */
        if (g->nbatch == 1)
            P = smin(g, T, ci(g, g->maxp));
        else {
            LLVMValueRef even = LLVMBuildICmp(b, LLVMIntEQ, LLVMBuildSRem(b, ci(g, g->nbatch), T, ""), ci(g, 0), "");
            LLVMValueRef many = LLVMBuildICmp(b, LLVMIntSGE, ci(g, g->nbatch), LLVMBuildNSWMul(b, T, ci(g, 4), ""), "");
            P = LLVMBuildSelect(b, LLVMBuildOr(b, even, many, ""), ci(g, 1), smin(g, T, ci(g, g->maxp)), "");
        }
    }
    store(g, T, LLVMBuildStructGEP2(b, g->ctx_ty, ctx, 4, ""), 8);
    store(g, P, LLVMBuildStructGEP2(b, g->ctx_ty, ctx, 5, ""), 8);
    store(g, ci32(g, 0), LLVMBuildStructGEP2(b, g->ctx_ty, ctx, 6, ""), 4);
    LLVMBasicBlockRef done = block(g, fn, "done");
    if (g->tmax > 1) {
        LLVMBasicBlockRef one = block(g, fn, "serial"), par = block(g, fn, "parallel");
        LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntEQ, T, ci(g, 1), ""), one, par);
        LLVMPositionBuilderAtEnd(b, par);
        LLVMTypeRef fty;
        LLVMValueRef pf = runtime_fn(g, "tdsl_rt_parallel_for", &fty);
        LLVMValueRef args[4] = {inst, T, task, ctx};
        call(g, pf, fty, args, 4);
        LLVMBuildBr(b, done);
        LLVMPositionBuilderAtEnd(b, one);
    }
    LLVMTypeRef tp[2] = {g->ptr, g->i64};
    LLVMValueRef targs[2] = {ctx, ci(g, 0)};
    call(g, task, LLVMFunctionType(g->vd, tp, 2, 0), targs, 2);
    LLVMBuildBr(b, done);
    LLVMPositionBuilderAtEnd(b, done);
    if (!can_fail) {
        LLVMBuildRetVoid(b);
    } else {
        LLVMValueRef flag = load(g, g->i32, LLVMBuildStructGEP2(b, g->ctx_ty, ctx, 6, ""), 4);
        LLVMBasicBlockRef oom = block(g, fn, "oom"), ok = block(g, fn, "ok");
        LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntNE, flag, ci32(g, 0), ""), oom, ok);
        LLVMPositionBuilderAtEnd(b, ok);
        LLVMBuildRet(b, ci32(g, 0));
        LLVMPositionBuilderAtEnd(b, oom);
        LLVMTypeRef fty;
        LLVMValueRef fail = runtime_fn(g, "tdsl_rt_fail", &fty);
        char msg[200];
        snprintf(msg, sizeof msg, "out of memory: a matmul (%s) needs %lld bytes of packing buffers per thread",
                 name, (long long)((g->bufa + g->bufb) * csize(g)));
        LLVMValueRef fargs[4] = {inst, ci32(g, TDSL_ERR_NOMEM), LLVMBuildGlobalStringPtr(b, "%s", ""),
                                 LLVMBuildGlobalStringPtr(b, msg, "")};
        LLVMBuildRet(b, call(g, fail, fty, fargs, 4));
    }
    LLVMDisposeBuilder(b);
    return fn;
}
