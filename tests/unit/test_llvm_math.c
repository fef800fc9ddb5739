/* Accuracy of the polynomial math of codegen/llvm_math.c against libm.
 *
 * Each function is emitted twice per type, as a loop over <W x T> vectors and as a scalar
 * loop, optimized at O3 for the host and run through LLJIT over dense sweeps: every k-th
 * bit pattern of the type (both signs: denormals, huge values, inf and NaN included) plus
 * a uniform grid over the interesting range. The error is measured in ulps of the result
 * type against libm in the next wider type (double for f32, long double for f64) and the
 * maximum is asserted per function and type (the bounds are docs/codegen.md's table).
 * Special values (inf, -inf, NaN, +-0, huge, tiny, denormals) must match libm's class
 * exactly, including the sign of a zero; the scalar and vector code must agree bit for bit.
 * A third variant compiled for SSE2 only (no FMA: the exact steps become libm fma calls
 * and Horner steps round twice) runs a sparser sweep with its own bounds. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include "codegen/llvm_internal.h"

enum { F_EXP, F_LOG, F_LOG1P, F_TANH, F_ERF, F_SIN, F_COS, NFN };
static const char *const fn_names[NFN] = {"exp", "log", "log1p", "tanh", "erf", "sin", "cos"};
typedef LLVMValueRef (*emit_fn)(cg_llvm *, LLVMValueRef);
static const emit_fn emitters[NFN] = {cg_exp, cg_log, cg_log1p, cg_tanh, cg_erf, cg_sin, cg_cos};

/* max ulp error allowed, per function: f32, f64 (measured values in docs/codegen.md) */
static const double bound32[NFN] = {1.0, 1.0, 1.5, 1.5, 1.25, 0.51, 0.51};
static const double bound64[NFN] = {1.0, 1.0, 1.5, 1.5, 1.25, 0.8, 0.8};
/* the same code for a CPU without FMA (x86-64 baseline): Horner steps round twice */
static const double nofma32[NFN] = {1.0, 1.0, 1.5, 1.5, 1.5, 0.51, 0.51};
static const double nofma64[NFN] = {1.0, 1.0, 1.5, 1.5, 1.25, 0.8, 0.8};

typedef void (*k32)(const float *, float *, int64_t);
typedef void (*k64)(const double *, double *, int64_t);
static k32 vec32[NFN], sc32[NFN], nf32[NFN];
static k64 vec64[NFN], sc64[NFN], nf64[NFN];
static char build_error[512];
static LLVMOrcLLJITRef the_jit;

/* ---- building: one module, 4 loops per function ---- */
static void emit_loop(cg_llvm *cg, const char *name, emit_fn f, LLVMTypeRef et, unsigned lanes, const char *features)
{
    LLVMTypeRef params[3] = {cg->t_ptr, cg->t_ptr, cg->t_i64};
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, LLVMFunctionType(cg->t_void, params, 3, 0));
    if (features)
        LLVMAddTargetDependentFunctionAttr(fn, "target-features", features);
    LLVMValueRef in = LLVMGetParam(fn, 0), out = LLVMGetParam(fn, 1), n = LLVMGetParam(fn, 2);
    LLVMTypeRef vt = lanes ? LLVMVectorType(et, lanes) : et;
    unsigned step = lanes ? lanes : 1;
    unsigned align = LLVMGetTypeKind(et) == LLVMDoubleTypeKind ? 8 : 4;
    LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry");
    LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(cg->ctx, fn, "head");
    LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(cg->ctx, fn, "body");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(cg->ctx, fn, "done");
    LLVMPositionBuilderAtEnd(cg->b, entry);
    LLVMBuildBr(cg->b, head);
    LLVMPositionBuilderAtEnd(cg->b, head);
    LLVMValueRef i = LLVMBuildPhi(cg->b, cg->t_i64, "i");
    LLVMValueRef next = LLVMBuildAdd(cg->b, i, LLVMConstInt(cg->t_i64, step, 0), "");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLE, next, n, ""), body, done);
    LLVMPositionBuilderAtEnd(cg->b, body);
    LLVMValueRef x = LLVMBuildLoad2(cg->b, vt, LLVMBuildInBoundsGEP2(cg->b, et, in, &i, 1, ""), "");
    LLVMSetAlignment(x, align);
    LLVMValueRef y = f(cg, x);
    LLVMValueRef st = LLVMBuildStore(cg->b, y, LLVMBuildInBoundsGEP2(cg->b, et, out, &i, 1, ""));
    LLVMSetAlignment(st, align);
    LLVMBasicBlockRef body_end = LLVMGetInsertBlock(cg->b);   /* the math may add blocks */
    LLVMBuildBr(cg->b, head);
    LLVMValueRef zero = LLVMConstInt(cg->t_i64, 0, 0);
    LLVMValueRef vals[2] = {zero, next};
    LLVMBasicBlockRef from[2] = {entry, body_end};
    LLVMAddIncoming(i, vals, from, 2);
    LLVMPositionBuilderAtEnd(cg->b, done);
    LLVMBuildRetVoid(cg->b);
}

static bool check_err(LLVMErrorRef e, const char *what)
{
    if (!e)
        return true;
    char *msg = LLVMGetErrorMessage(e);
    snprintf(build_error, sizeof build_error, "%s: %s", what, msg);
    LLVMDisposeErrorMessage(msg);
    return false;
}

static bool build_all(void)
{
    LLVMInitializeNativeTarget();
    LLVMInitializeNativeAsmPrinter();
    LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
    cg_llvm cg;
    memset(&cg, 0, sizeof cg);
    cg.ctx = LLVMOrcThreadSafeContextGetContext(tsc);
    cg.mod = LLVMModuleCreateWithNameInContext("mathtest", cg.ctx);
    cg.b = LLVMCreateBuilderInContext(cg.ctx);
    cg.t_void = LLVMVoidTypeInContext(cg.ctx);
    cg.t_i1 = LLVMInt1TypeInContext(cg.ctx);
    cg.t_i8 = LLVMInt8TypeInContext(cg.ctx);
    cg.t_i16 = LLVMInt16TypeInContext(cg.ctx);
    cg.t_i32 = LLVMInt32TypeInContext(cg.ctx);
    cg.t_i64 = LLVMInt64TypeInContext(cg.ctx);
    cg.t_f32 = LLVMFloatTypeInContext(cg.ctx);
    cg.t_f64 = LLVMDoubleTypeInContext(cg.ctx);
    cg.t_ptr = LLVMPointerTypeInContext(cg.ctx, 0);
    cg.vector_bits = 512;
    cg.opt_level = 3;
    char name[64];
    for (int f = 0; f < NFN; f++) {
        snprintf(name, sizeof name, "v32_%s", fn_names[f]);
        emit_loop(&cg, name, emitters[f], cg.t_f32, 16, NULL);
        snprintf(name, sizeof name, "s32_%s", fn_names[f]);
        emit_loop(&cg, name, emitters[f], cg.t_f32, 0, NULL);
        snprintf(name, sizeof name, "v64_%s", fn_names[f]);
        emit_loop(&cg, name, emitters[f], cg.t_f64, 8, NULL);
        snprintf(name, sizeof name, "s64_%s", fn_names[f]);
        emit_loop(&cg, name, emitters[f], cg.t_f64, 0, NULL);
        /* SSE2 only, as for --cpu x86-64 */
        const char *base = "-fma,-avx,-avx2,-avx512f,-f16c,-fma4,-sse4.1,-sse4.2,-ssse3,-sse3";
        snprintf(name, sizeof name, "n32_%s", fn_names[f]);
        emit_loop(&cg, name, emitters[f], cg.t_f32, 4, base);
        snprintf(name, sizeof name, "n64_%s", fn_names[f]);
        emit_loop(&cg, name, emitters[f], cg.t_f64, 2, base);
    }
    LLVMDisposeBuilder(cg.b);
    char *msg = NULL;
    if (LLVMVerifyModule(cg.mod, LLVMReturnStatusAction, &msg)) {
        snprintf(build_error, sizeof build_error, "invalid module: %.400s", msg);
        return false;
    }
    LLVMDisposeMessage(msg);
    /* optimize as the backend does: O3 for the host */
    char *triple = LLVMGetDefaultTargetTriple();
    LLVMTargetRef target;
    if (LLVMGetTargetFromTriple(triple, &target, &msg)) {
        snprintf(build_error, sizeof build_error, "no target: %s", msg);
        return false;
    }
    char *cpu = LLVMGetHostCPUName(), *features = LLVMGetHostCPUFeatures();
    LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, triple, cpu, features, LLVMCodeGenLevelAggressive,
                                                      LLVMRelocDefault, LLVMCodeModelJITDefault);
    LLVMSetTarget(cg.mod, triple);
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    bool ok = check_err(LLVMRunPasses(cg.mod, "default<O3>", tm, po), "passes");
    LLVMDisposePassBuilderOptions(po);
    LLVMDisposeTargetMachine(tm);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(features);
    LLVMDisposeMessage(triple);
    if (!ok)
        return false;
    if (!check_err(LLVMOrcCreateLLJIT(&the_jit, LLVMOrcCreateLLJITBuilder()), "lljit"))
        return false;
    LLVMOrcLLJITRef jit = the_jit;
    LLVMOrcJITDylibRef jd = LLVMOrcLLJITGetMainJITDylib(jit);
    LLVMOrcDefinitionGeneratorRef gen;
    if (!check_err(LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(jit),
                                                                          NULL, NULL), "generator"))
        return false;
    LLVMOrcJITDylibAddGenerator(jd, gen);
    if (!check_err(LLVMOrcLLJITAddLLVMIRModule(jit, jd, LLVMOrcCreateNewThreadSafeModule(cg.mod, tsc)), "add"))
        return false;
    LLVMOrcDisposeThreadSafeContext(tsc);
    for (int f = 0; f < NFN; f++) {
        LLVMOrcExecutorAddress a[6];
        const char *pre[6] = {"v32", "s32", "v64", "s64", "n32", "n64"};
        for (int k = 0; k < 6; k++) {
            snprintf(name, sizeof name, "%s_%s", pre[k], fn_names[f]);
            if (!check_err(LLVMOrcLLJITLookup(jit, &a[k], name), name))
                return false;
        }
        vec32[f] = (k32)(uintptr_t)a[0];
        sc32[f] = (k32)(uintptr_t)a[1];
        vec64[f] = (k64)(uintptr_t)a[2];
        sc64[f] = (k64)(uintptr_t)a[3];
        nf32[f] = (k32)(uintptr_t)a[4];
        nf64[f] = (k64)(uintptr_t)a[5];
    }
    return true;   /* the JIT lives until main disposes of it */
}

/* ---- references and ulp errors ---- */
static double ref32(int f, double x)
{
    switch (f) {
    case F_EXP: return exp(x);
    case F_LOG: return log(x);
    case F_LOG1P: return log1p(x);
    case F_TANH: return tanh(x);
    case F_ERF: return erf(x);
    case F_SIN: return sin(x);
    default: return cos(x);
    }
}

static long double ref64(int f, long double x)
{
    switch (f) {
    case F_EXP: return expl(x);
    case F_LOG: return logl(x);
    case F_LOG1P: return log1pl(x);
    case F_TANH: return tanhl(x);
    case F_ERF: return erfl(x);
    case F_SIN: return sinl(x);
    default: return cosl(x);
    }
}

/* Error of `got` in ulps of the correctly rounded reference; INFINITY for a wrong class
 * (NaN, infinity, or the sign of a zero). mant: 24 or 53; emin: -149 or -1074. */
static double ulp_error(long double got, long double ref, long double rounded, int mant, int emin)
{
    if (isnan(ref) || isnan(got))
        return isnan(ref) && isnan(got) ? 0 : INFINITY;
    if (isinf(rounded) || isinf(got)) {
        if (got == rounded)
            return 0;
        if (isinf(ref) || isinf(got))
            return INFINITY;
        rounded = copysignl(mant == 24 ? FLT_MAX : DBL_MAX, ref);   /* ref between MAX and inf */
    }
    if (ref == 0)
        return got == 0 && signbit(got) == signbit(ref) ? 0 : INFINITY;
    int e;
    frexpl(ref, &e);
    long double ulp = ldexpl(1.0L, e - mant < emin ? emin : e - mant);
    return (double)(fabsl(got - ref) / ulp);
}

typedef struct stats {
    double max_err;
    double worst_x;
    long long n;
} stats;

static void note(stats *s, double err, double x)
{
    s->n++;
    if (err > s->max_err || (isinf(err) && !isinf(s->max_err))) {
        s->max_err = err;
        s->worst_x = x;
    }
}

#define CHUNK 65536

/* Runs f over xs through the vector and the scalar code; the two must agree bit for bit. */
static void run32(int f, const float *xs, int64_t n, stats *st)
{
    float *yv = malloc(sizeof(float) * (size_t)n), *ys = malloc(sizeof(float) * (size_t)n);
    ck_assert(yv && ys);
    vec32[f](xs, yv, n);
    /* the vector loop leaves n % 16 elements: the scalar loop fills them */
    int64_t done = n - n % 16;
    sc32[f](xs + done, yv + done, n - done);
    sc32[f](xs, ys, n);
    for (int64_t i = 0; i < n; i++) {
        if (!(isnan(yv[i]) && isnan(ys[i])) && memcmp(&yv[i], &ys[i], sizeof(float)) != 0)
            ck_abort_msg("%s f32: vector %a and scalar %a differ at x = %a", fn_names[f], (double)yv[i],
                         (double)ys[i], (double)xs[i]);
        double r = ref32(f, xs[i]);
        note(st, ulp_error(yv[i], r, (float)r, 24, -149), xs[i]);
    }
    free(yv);
    free(ys);
}

static void run64(int f, const double *xs, int64_t n, stats *st)
{
    double *yv = malloc(sizeof(double) * (size_t)n), *ys = malloc(sizeof(double) * (size_t)n);
    ck_assert(yv && ys);
    vec64[f](xs, yv, n);
    int64_t done = n - n % 8;
    sc64[f](xs + done, yv + done, n - done);
    sc64[f](xs, ys, n);
    for (int64_t i = 0; i < n; i++) {
        if (!(isnan(yv[i]) && isnan(ys[i])) && memcmp(&yv[i], &ys[i], sizeof(double)) != 0)
            ck_abort_msg("%s f64: vector %a and scalar %a differ at x = %a", fn_names[f], yv[i], ys[i], xs[i]);
        long double r = ref64(f, xs[i]);
        note(st, ulp_error(yv[i], r, (double)r, 53, -1074), xs[i]);
    }
    free(yv);
    free(ys);
}

/* the uniform grid of each function: where its polynomials and branches are */
static void grid(int f, double *lo, double *hi)
{
    static const double r[NFN][2] = {{-104, 89}, {0, 4}, {-1, 4}, {-10, 10}, {-6.5, 6.5}, {-40, 40}, {-40, 40}};
    *lo = r[f][0];
    *hi = r[f][1];
}

static const float specials32[] = {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, 2.0f, FLT_MAX, -FLT_MAX, FLT_MIN, -FLT_MIN,
                                   0x1p-149f, -0x1p-149f, 0x1.fffffep-127f, 1e-30f, -1e-30f, 88.72f, -87.0f,
                                   -103.0f, 0.625f, 4.0f, 3.9f, 1e7f, 1073741824.0f, 1e30f, -1e30f};
static const double specials64[] = {0.0, -0.0, 1.0, -1.0, 0.5, 2.0, DBL_MAX, -DBL_MAX, DBL_MIN, -DBL_MIN,
                                    0x1p-1074, -0x1p-1074, 0x1.fffffffffffffp-1023, 1e-300, -1e-300, 709.7,
                                    -708.0, -745.0, 0.625, 6.0, 5.9, 1e15, 1073741824.0, 1e300, -1e300};

START_TEST(test_f32)
{
    int f = _i;
    stats st = {0, 0, 0};
    float *xs = malloc(sizeof(float) * (CHUNK + 64));
    ck_assert_ptr_nonnull(xs);
    /* every 521st bit pattern, both signs: 2 x 8.2M values over all exponents */
    int64_t n = 0;
    for (uint64_t u = 0; u <= 0xffffffffu; u += 521) {
        uint32_t b = (uint32_t)u;
        memcpy(&xs[n++], &b, 4);
        if (n == CHUNK) {
            run32(f, xs, n, &st);
            n = 0;
        }
    }
    run32(f, xs, n, &st);
    double lo, hi;
    grid(f, &lo, &hi);
    for (int c = 0; c < 32; c++) {   /* 2M points on the grid */
        for (n = 0; n < CHUNK; n++)
            xs[n] = (float)(lo + (hi - lo) * (double)(c * CHUNK + n) / (32.0 * CHUNK));
        run32(f, xs, n, &st);
    }
    /* near multiples of pi/2 (the hardest reductions) */
    if (f == F_SIN || f == F_COS) {
        n = 0;
        for (int k = 1; k < 20000; k++) {
            float x = (float)(k * 1.5707963267948966 * (k < 10000 ? 1 : 97.0));
            xs[n++] = x;
            xs[n++] = nextafterf(x, 0);
            xs[n++] = nextafterf(x, INFINITY);
        }
        run32(f, xs, n, &st);
    }
    n = 0;
    for (size_t k = 0; k < sizeof specials32 / sizeof *specials32; k++) {
        xs[n++] = specials32[k];
        xs[n++] = nextafterf(specials32[k], INFINITY);
    }
    xs[n++] = INFINITY;
    xs[n++] = -INFINITY;
    xs[n++] = NAN;
    xs[n++] = -NAN;
    run32(f, xs, n, &st);
    printf("f32 %-6s max error %.3f ulp at %a (%lld points)\n", fn_names[f], st.max_err, st.worst_x, st.n);
    ck_assert_msg(st.max_err <= bound32[f], "%s f32: %.3f ulp at x = %a exceeds the bound %.2f", fn_names[f],
                  st.max_err, st.worst_x, bound32[f]);
    free(xs);
}
END_TEST

START_TEST(test_f64)
{
    int f = _i;
    stats st = {0, 0, 0};
    double *xs = malloc(sizeof(double) * (CHUNK + 64));
    ck_assert_ptr_nonnull(xs);
    /* 2M bit patterns spread over all exponents and both signs */
    int64_t n = 0;
    const uint64_t step = 0xffffffffffffffffull / (1u << 21);
    for (uint64_t k = 0; k < (1u << 21); k++) {
        uint64_t b = k * step + (k * 0x9e3779b97f4a7c15ull >> 40);   /* vary the low bits too */
        memcpy(&xs[n++], &b, 8);
        if (n == CHUNK) {
            run64(f, xs, n, &st);
            n = 0;
        }
    }
    run64(f, xs, n, &st);
    double lo, hi;
    grid(f, &lo, &hi);
    for (int c = 0; c < 16; c++) {   /* 1M points on the grid */
        for (n = 0; n < CHUNK; n++)
            xs[n] = lo + (hi - lo) * (double)(c * CHUNK + n) / (16.0 * CHUNK) + 1e-9 * (n & 7);
        run64(f, xs, n, &st);
    }
    if (f == F_SIN || f == F_COS) {
        n = 0;
        for (int k = 1; k < 20000; k++) {
            double x = (double)((long double)k * 1.57079632679489661923132169163975144L * (k < 10000 ? 1 : 50021));
            xs[n++] = x;
            xs[n++] = nextafter(x, 0);
            xs[n++] = nextafter(x, INFINITY);
        }
        run64(f, xs, n, &st);
    }
    n = 0;
    for (size_t k = 0; k < sizeof specials64 / sizeof *specials64; k++) {
        xs[n++] = specials64[k];
        xs[n++] = nextafter(specials64[k], INFINITY);
    }
    xs[n++] = INFINITY;
    xs[n++] = -INFINITY;
    xs[n++] = NAN;
    xs[n++] = -NAN;
    run64(f, xs, n, &st);
    printf("f64 %-6s max error %.3f ulp at %a (%lld points)\n", fn_names[f], st.max_err, st.worst_x, st.n);
    ck_assert_msg(st.max_err <= bound64[f], "%s f64: %.3f ulp at x = %a exceeds the bound %.2f", fn_names[f],
                  st.max_err, st.worst_x, bound64[f]);
    free(xs);
}
END_TEST

/* Without FMA (the exact steps become libm fma calls, Horner steps round twice): a
 * sparser sweep through 4-lane f32 and 2-lane f64 code. */
START_TEST(test_nofma)
{
    int f = _i;
    stats s32 = {0, 0, 0}, s64 = {0, 0, 0};
    enum { N = 1 << 20 };
    float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
    double *xd = malloc(sizeof(double) * N), *yd = malloc(sizeof(double) * N);
    ck_assert(x && y && xd && yd);
    double lo, hi;
    grid(f, &lo, &hi);
    for (int64_t i = 0; i < N; i++) {
        uint32_t b = (uint32_t)(i * 4099u);
        memcpy(&x[i], &b, 4);
        if (i % 2)
            x[i] = (float)(lo + (hi - lo) * (double)i / N);
        uint64_t bd = (uint64_t)i * 0x9e3779b97f4a7c15ull;
        memcpy(&xd[i], &bd, 8);
        if (i % 2)
            xd[i] = lo + (hi - lo) * (double)i / N;
    }
    nf32[f](x, y, N);
    nf64[f](xd, yd, N);
    for (int64_t i = 0; i < N; i++) {
        double r = ref32(f, x[i]);
        note(&s32, ulp_error(y[i], r, (float)r, 24, -149), x[i]);
        long double rd = ref64(f, xd[i]);
        note(&s64, ulp_error(yd[i], rd, (double)rd, 53, -1074), xd[i]);
    }
    printf("no-fma f32 %-6s %.3f ulp at %a, f64 %.3f ulp at %a\n", fn_names[f], s32.max_err, s32.worst_x, s64.max_err,
           s64.worst_x);
    ck_assert_msg(s32.max_err <= nofma32[f], "%s f32 without FMA: %.3f ulp at %a", fn_names[f], s32.max_err, s32.worst_x);
    ck_assert_msg(s64.max_err <= nofma64[f], "%s f64 without FMA: %.3f ulp at %a", fn_names[f], s64.max_err, s64.worst_x);
    free(x);
    free(y);
    free(xd);
    free(yd);
}
END_TEST

/* exact values the kernels rely on */
START_TEST(test_exact_points)
{
    float x[16], y[16];
    for (int i = 0; i < 16; i++)
        x[i] = (float)i;
    vec32[F_EXP](x, y, 16);
    ck_assert_float_eq(y[0], 1.0f);
    vec32[F_LOG](x, y, 16);
    ck_assert(isinf(y[0]) && y[0] < 0);
    ck_assert_float_eq(y[1], 0.0f);
    ck_assert(!signbit(y[1]));
    vec32[F_TANH](x, y, 16);
    ck_assert_float_eq(y[15], 1.0f);
    vec32[F_ERF](x, y, 16);
    ck_assert_float_eq(y[0], 0.0f);
    ck_assert_float_eq(y[5], 1.0f);
    x[0] = -0.0f;
    vec32[F_LOG1P](x, y, 16);
    ck_assert(y[0] == 0 && signbit(y[0]));
    vec32[F_SIN](x, y, 16);
    ck_assert(y[0] == 0 && signbit(y[0]));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("llvm_math");
    TCase *tc = tcase_create("accuracy");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_f32, 0, NFN);
    tcase_add_loop_test(tc, test_f64, 0, NFN);
    tcase_add_test(tc, test_exact_points);
    tcase_add_loop_test(tc, test_nofma, 0, NFN);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    if (!build_all()) {
        fprintf(stderr, "test_llvm_math: cannot build the math module: %s\n", build_error);
        return EXIT_FAILURE;
    }
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    LLVMErrorRef e = LLVMOrcDisposeLLJIT(the_jit);
    if (e)
        LLVMConsumeError(e);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
