/* Unit tests for the matmul kernels of the LLVM backend (codegen/llvm_gemm.c), through the
 * real module path: .tdsl source (or text IR) -> lower -> cg_llvm_build -> JIT, each export
 * run through the generated C interface and compared with the reference evaluator.
 *
 * Shapes cover 1..70 with primes (edge tiles in M and N, k-loop remainders), sizes that
 * take the packed (Goto) path and the unpacked one, transposed operands (B transposed
 * forces B's packing), sliced and permuted operands, batches with broadcast (stride 0)
 * batch dims, operands sharing one storage, a const-backed operand, empty dims, N of a
 * few columns (computed as C^T = B^T A^T), every dtype (f16/bf16 rounding exactly as the
 * evaluator's, on integer-valued inputs), 256- and 128-bit targets, -O0 and -O2, and 1 vs
 * 2 threads (bit-identical: each C element sees the same FMA sequence).
 *
 * Tolerances: integers exact. Floats: |got - want| <= rtol * sqrt(K) * (|want| + S) with
 * S = sqrt(K) * max|a| * max|b| (the size of a sum of K random-signed products; the
 * evaluator accumulates in f64 and rounds once), rtol 1e-5 for f32, 1e-13 for f64; f16 and
 * bf16 add their own rounding of the result (2^-10 and 2^-7 of |want|). */
#include <check.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "codegen/llvm_internal.h"
#include "frontend/ast.h"
#include "frontend/lower.h"
#include "ir/eval.h"

static arena ar;
static char err[512];

static void setup(void) { arena_init(&ar); }
static void teardown(void) { arena_free(&ar); }

static ir_module *from_source(const char *name, const char *text)
{
    src_file *sf = arena_alloc(&ar, sizeof *sf);
    sf->name = arena_printf(&ar, "%s.tdsl", name);
    sf->text = arena_strdup(&ar, text);
    sf->len = strlen(text);
    ast_file *ast = parse_file(&ar, sf);
    ck_assert_msg(ast != NULL, "parse failed:\n%s", text);
    lower_opts lo = {.module_name = name};
    ir_module *m = lower_file(&ar, ast, &lo);
    ck_assert_msg(m != NULL, "lowering failed:\n%s", text);
    ck_assert_int_eq(ir_verify(m, stderr), 0);
    return m;
}

static ir_module *from_ir(const char *text)
{
    src_file *sf = arena_alloc(&ar, sizeof *sf);
    sf->name = "test.ir";
    sf->text = arena_strdup(&ar, text);
    sf->len = strlen(text);
    ir_module *m = ir_parse_module(&ar, sf);
    ck_assert_msg(m != NULL, "IR parse failed");
    ck_assert_int_eq(ir_verify(m, stderr), 0);
    return m;
}

static const char *opt_cpu = "native";   /* what jit_of builds for */
static int opt_level = 3;

static cg_jit *jit_of(const ir_module *m)
{
    cg_options o = {.cpu = opt_cpu, .opt_level = opt_level};
    cg_llvm *cg = cg_llvm_build(m, &o, err, sizeof err);
    ck_assert_msg(cg != NULL, "build: %s", err);
    cg_jit *j = cg_jit_create(cg, err, sizeof err);
    ck_assert_msg(j != NULL, "jit: %s", err);
    cg_llvm_free(cg);
    return j;
}

/* ---- calling generated code (object pointers to function pointers via memcpy) ---- */
typedef void *(*create_fn)(const tdsl_options *);
typedef void (*destroy_fn)(void *);
typedef const char *(*error_fn)(const void *);

static void *sym(cg_jit *j, const char *mod, const char *what)
{
    char name[160];
    snprintf(name, sizeof name, "%s_%s", mod, what);
    void *p = cg_jit_lookup(j, name);
    ck_assert_msg(p != NULL, "symbol %s not found", name);
    return p;
}

static int call_export(void *fp, void *inst, void **p, int n)
{
    typedef int (*f2)(void *, void *, void *);
    typedef int (*f3)(void *, void *, void *, void *);
    typedef int (*f4)(void *, void *, void *, void *, void *);
    typedef int (*f5)(void *, void *, void *, void *, void *, void *);
    switch (n) {
    case 2: { f2 f_; memcpy(&f_, &fp, sizeof f_); return f_(inst, p[0], p[1]); }
    case 3: { f3 f_; memcpy(&f_, &fp, sizeof f_); return f_(inst, p[0], p[1], p[2]); }
    case 4: { f4 f_; memcpy(&f_, &fp, sizeof f_); return f_(inst, p[0], p[1], p[2], p[3]); }
    case 5: { f5 f_; memcpy(&f_, &fp, sizeof f_); return f_(inst, p[0], p[1], p[2], p[3], p[4]); }
    default: ck_abort_msg("unsupported pointer count %d", n); return -1;
    }
}

/* deterministic values of both signs; integers small enough that no i32 sum wraps in
 * most cases (wrapping is still compared exactly) */
static void fill(host_tensor *t, int salt, bool intvals)
{
    int64_t n = host_tensor_numel(t);
    for (int64_t k = 0; k < n; k++) {
        int64_t h = (k * 7919 + salt * 104729) % 1009;
        double v = ir_dtype_is_float(t->dtype) && !intvals ? (double)(h - 504) / 251.0 : (double)(h % 23) - 11;
        host_tensor_set(t, k, v);
    }
}

static double max_abs(const host_tensor *t)
{
    double m = 0;
    for (int64_t k = 0; k < host_tensor_numel(t); k++)
        m = fmax(m, fabs(host_tensor_get(t, k)));
    return m;
}

/* the largest inner dim K of the fn's matmuls (1 when none) */
static int64_t inner_dim(const ir_func *f)
{
    int64_t k = 1;
    for (int i = 0; i < f->nnodes; i++)
        if (f->nodes[i].op == OP_matmul) {
            const ir_node *a = &f->nodes[f->nodes[i].in[0]];
            k = a->shape[a->rank - 1] > k ? a->shape[a->rank - 1] : k;
        }
    return k;
}

typedef struct run_result {
    host_tensor out[4];
    int nouts;
} run_result;

/* Runs export fn on an instance with `threads` threads; inputs from fill(). */
static void run_export(cg_jit *j, const ir_module *m, const ir_func *f, int threads, host_tensor *args,
                       run_result *r)
{
    create_fn create;
    destroy_fn destroy;
    error_fn error;
    void *p = sym(j, m->name, "create");
    memcpy(&create, &p, sizeof p);
    p = sym(j, m->name, "destroy");
    memcpy(&destroy, &p, sizeof p);
    p = sym(j, m->name, "error");
    memcpy(&error, &p, sizeof p);
    void *efn = sym(j, m->name, f->name);
    tdsl_options o = TDSL_OPTIONS_INIT;
    o.threads = threads;
    void *inst = create(&o);
    ck_assert(inst != NULL);
    void *ptrs[8];
    ck_assert(f->nargs + f->nouts <= 5 && f->nouts <= 4);
    for (int a = 0; a < f->nargs; a++)
        ptrs[a] = args[a].data ? args[a].data : (void *)&args[a];   /* empty: any non-NULL */
    r->nouts = f->nouts;
    for (int o2 = 0; o2 < f->nouts; o2++) {
        const ir_node *x = &f->nodes[f->outs[o2]];
        ck_assert(host_tensor_alloc(&r->out[o2], x->dtype, x->rank, x->shape));
        if (r->out[o2].data)
            memset(r->out[o2].data, 0xAB, host_tensor_bytes(&r->out[o2]));   /* unwritten elements show */
        ptrs[f->nargs + o2] = r->out[o2].data ? r->out[o2].data : (void *)&r->out[o2];
    }
    int rc = call_export(efn, inst, ptrs, f->nargs + f->nouts);
    ck_assert_msg(rc == 0, "%s_%s returned %d: %s", m->name, f->name, rc, error(inst));
    destroy(inst);
}

static void free_result(run_result *r)
{
    for (int o = 0; o < r->nouts; o++)
        host_tensor_free(&r->out[o]);
}

/* Every export of m against ir_eval; with threads2 also 1 vs 2 threads bit for bit.
 * intvals: integer-valued inputs, so every float sum is exact before the result's one
 * rounding (f16, bf16: to nearest even, as the evaluator rounds) and results must match
 * exactly. */
static void diff_module(const ir_module *m, bool threads2, bool intvals)
{
    cg_jit *j = jit_of(m);
    for (int fi = 0; fi < m->nfuncs; fi++) {
        const ir_func *f = m->funcs[fi];
        host_tensor args[8], want[4];
        double ma = 1;
        for (int a = 0; a < f->nargs; a++) {
            ck_assert(host_tensor_alloc(&args[a], f->args[a].dtype, f->args[a].rank, f->args[a].shape));
            fill(&args[a], a + 1, intvals);
            ma = fmax(ma, max_abs(&args[a]));
        }
        int rc = ir_eval(f, args, NULL, want, NULL, err, sizeof err);
        ck_assert_msg(rc == 0, "ir_eval %s: %s", f->name, err);
        run_result got;
        run_export(j, m, f, threads2 ? 2 : 1, args, &got);
        double K = (double)inner_dim(f), S = sqrt(K) * ma * ma;
        for (int o = 0; o < f->nouts; o++) {
            ir_dtype dt = want[o].dtype;
            ck_assert_int_eq(got.out[o].dtype, dt);
            double rtol = dt == DT_F64 ? 1e-13 : 1e-5, rrnd = dt == DT_F16 ? 1.0 / 1024 : dt == DT_BF16 ? 1.0 / 128 : 0;
            bool exact = intvals || !ir_dtype_is_float(dt);
            for (int64_t k = 0; k < host_tensor_numel(&want[o]); k++) {
                double w = host_tensor_get(&want[o], k), g = host_tensor_get(&got.out[o], k);
                double tol = rtol * sqrt(K) * (fabs(w) + S) + rrnd * fabs(w);
                if (exact)
                    ck_assert_msg(g == w, "%s out %d [%lld]: got %.17g want %.17g", f->name, o, (long long)k, g, w);
                else
                    ck_assert_msg(fabs(g - w) <= tol, "%s out %d [%lld]: got %.9g want %.9g (tol %.3g)", f->name, o,
                                  (long long)k, g, w, tol);
            }
        }
        if (threads2) {
            run_result one;
            run_export(j, m, f, 1, args, &one);
            for (int o = 0; o < f->nouts; o++)
                ck_assert_msg(!got.out[o].data ||
                                  memcmp(one.out[o].data, got.out[o].data, host_tensor_bytes(&got.out[o])) == 0,
                              "%s out %d: 1 and 2 threads differ", f->name, o);
            free_result(&one);
        }
        free_result(&got);
        for (int o = 0; o < f->nouts; o++)
            host_tensor_free(&want[o]);
        for (int a = 0; a < f->nargs; a++)
            host_tensor_free(&args[a]);
    }
    cg_jit_free(j);
}

/* ---- source builders ---- */
typedef struct srcbuf {
    char *s;
    size_t len, cap;
    int nfn;
} srcbuf;

static void emitf(srcbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emitf(srcbuf *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap + (size_t)n + 1) * 2;
        char *s = arena_alloc(&ar, cap);
        if (b->s)
            memcpy(s, b->s, b->len + 1);
        else
            s[0] = '\0';
        b->s = s;
        b->cap = cap;
    }
}

/* fn gN(a, b) -> (expr) for a 2-D matmul form: bit 0 transposes A, bit 1 transposes B */
static void mm2(srcbuf *b, const char *dt, int form, int64_t M, int64_t N, int64_t K)
{
    int64_t a0 = form & 1 ? K : M, a1 = form & 1 ? M : K, b0 = form & 2 ? N : K, b1 = form & 2 ? K : N;
    emitf(b, "export fn g%d(a: %s[%lld, %lld], b: %s[%lld, %lld]) -> %s[%lld, %lld] { return %s @ %s }\n", b->nfn++,
          dt, (long long)a0, (long long)a1, dt, (long long)b0, (long long)b1, dt, (long long)M, (long long)N,
          form & 1 ? "a.T" : "a", form & 2 ? "b.T" : "b");
}

static const int64_t sizes[] = {1, 2, 3, 5, 7, 11, 12, 13, 16, 17, 31, 32, 33, 47, 64, 70};
#define NSIZES ((int)(sizeof sizes / sizeof *sizes))

START_TEST(test_sizes_f32)
{
    /* every size as M, N and K at least once, in varied combinations, all four forms */
    srcbuf b = {0};
    for (int i = 0; i < NSIZES; i++) {
        int64_t M = sizes[i], N = sizes[(i * 7 + 3) % NSIZES], K = sizes[(i * 5 + 11) % NSIZES];
        mm2(&b, "f32", i % 4, M, N, K);
        mm2(&b, "f32", (i + 1) % 4, N, K, M);
    }
    diff_module(from_source("sz", b.s), false, false);
}
END_TEST

START_TEST(test_packed_f32)
{
    /* A over 256 KiB: A and B packed, several MC/KC blocks, edge tiles in M and N, a KC
     * remainder; each form reads its operands through their own strides */
    srcbuf b = {0};
    mm2(&b, "f32", 0, 181, 67, 521);
    mm2(&b, "f32", 1, 173, 50, 433);
    mm2(&b, "f32", 2, 150, 97, 470);
    mm2(&b, "f32", 3, 307, 35, 300);
    mm2(&b, "f32", 0, 129, 1, 600);    /* N = 1: one masked lane */
    mm2(&b, "f32", 2, 64, 33, 1100);   /* unpacked A, packed (transposed) B, K blocks */
    diff_module(from_source("pk", b.s), false, false);
}
END_TEST

START_TEST(test_narrow_n)
{
    /* N <= VL/2 runs as C^T = B^T A^T: lane-by-lane stores of C, K blocks accumulated
     * through them, A^T packed, batches, 1-column results */
    srcbuf b = {0};
    mm2(&b, "f32", 0, 64, 4, 784);
    mm2(&b, "f32", 2, 70, 1, 33);
    mm2(&b, "f32", 1, 300, 7, 500);    /* big: both packed */
    mm2(&b, "f32", 3, 47, 8, 13);
    mm2(&b, "f64", 0, 33, 3, 300);
    mm2(&b, "i32", 2, 40, 2, 50);
    mm2(&b, "bf16", 1, 90, 5, 70);
    emitf(&b, "export fn bn(a: f32[3, 50, 20], b: f32[20, 6]) -> f32[3, 50, 6] { return a @ b }\n");
    emitf(&b, "export fn mv(a: f32[200, 300], v: f32[300]) -> f32[200] { return a @ v }\n");
    diff_module(from_source("nn", b.s), true, false);
}
END_TEST

START_TEST(test_dtypes)
{
    static const char *const dts[] = {"f64", "i32", "i64", "f16", "bf16"};
    for (int d = 0; d < 5; d++) {
        srcbuf b = {0};
        for (int i = 0; i < NSIZES; i += 3)
            mm2(&b, dts[d], i % 4, sizes[i], sizes[(i * 7 + 3) % NSIZES], sizes[(i * 5 + 11) % NSIZES]);
        mm2(&b, dts[d], 1, 140, 45, 260);   /* packed for the 4- and 8-byte types */
        mm2(&b, dts[d], 2, 37, 29, 300);
        diff_module(from_source(arena_printf(&ar, "dt_%s", dts[d]), b.s), false, false);
    }
}
END_TEST

START_TEST(test_half_rounding)
{
    /* integer-valued f16/bf16/f32 inputs: sums up to ~36k are exact in f32, so the only
     * rounding is the result's, which must be the evaluator's (nearest, ties to even) */
    static const char *const dts[] = {"f16", "bf16", "f32"};
    for (int d = 0; d < 3; d++) {
        srcbuf b = {0};
        mm2(&b, dts[d], 0, 13, 37, 300);
        mm2(&b, dts[d], 1, 29, 40, 111);
        mm2(&b, dts[d], 2, 150, 20, 260);   /* packed A and B (f16 packs at 4 bytes) */
        mm2(&b, dts[d], 3, 7, 70, 64);
        diff_module(from_source(arena_printf(&ar, "hr_%s", dts[d]), b.s), false, true);
    }
}
END_TEST

START_TEST(test_views)
{
    const char *src =
        /* batched, broadcast batch dims (stride 0), 1-D forms (unsqueezed views) */
        "export fn bb(a: f32[2, 1, 13, 9], b: f32[5, 9, 7]) -> f32[2, 5, 13, 7] { return a @ b }\n"
        "export fn vb(v: f32[9], b: f32[3, 9, 20]) -> f32[3, 20] { return v @ b }\n"
        "export fn bv(a: f32[3, 17, 9], v: f32[9]) -> f32[3, 17] { return a @ v }\n"
        /* permuted batch and matrix dims, a shared operand */
        "export fn pm(a: f32[9, 4, 11], b: f32[4, 11, 6]) -> f32[4, 9, 6] { return a.permute(1, 0, 2) @ b }\n"
        "export fn tb(a: f32[3, 20, 18]) -> f32[3, 18, 18] { return a.transpose(1, 2) @ a }\n"
        "export fn aat(a: f32[33, 19]) -> f32[33, 33] { return a @ a.T }\n"
        /* sliced with steps and offsets: no dim is unit-stride */
        "export fn sl(a: f32[40, 30], b: f32[30, 50]) -> f32[13, 16] { return a[1::3, ::2] @ b[0:15, 3::3] }\n"
        /* a batch large enough to run on several tasks, in parts or whole */
        "export fn bt(a: f32[3, 100, 130], b: f32[3, 130, 110]) -> f32[3, 100, 110] { return a @ b }\n"
        "export fn bw(a: f32[8, 60, 70], b: f32[70, 90]) -> f32[8, 60, 90] { return a @ b }\n"
        /* a result that is used, then copied out through a view */
        "export fn tr(a: f32[21, 16], b: f32[16, 35]) -> f32[35, 21] { return (a @ b).T }\n";
    diff_module(from_source("vw", src), true, false);
}
END_TEST

START_TEST(test_threads)
{
    /* split by N, split by M, packed and not: 1 and 2 threads give the same bits */
    srcbuf b = {0};
    mm2(&b, "f32", 0, 300, 200, 150);
    mm2(&b, "f32", 1, 700, 40, 300);
    mm2(&b, "f32", 3, 64, 256, 784);
    mm2(&b, "f32", 2, 250, 260, 270);
    mm2(&b, "f64", 0, 120, 130, 140);
    mm2(&b, "bf16", 2, 100, 90, 300);
    diff_module(from_source("th", b.s), true, false);
}
END_TEST

START_TEST(test_targets)
{
    /* 256-bit (AVX2: 6 x 2 ymm tiles), 128-bit (SSE2: no masked moves, f16 by libcalls)
     * and AVX-512 by name; -O0 and -O2 */
    static const struct { const char *cpu; int opt; } t[] = {
        {"x86-64-v3", 3}, {"x86-64", 3}, {"x86-64-v4", 3}, {"native", 0}, {"native", 2}};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        srcbuf b = {0};
        mm2(&b, "f32", 0, 13, 37, 29);
        mm2(&b, "f32", 3, 150, 45, 470);   /* packed */
        mm2(&b, "f64", 1, 31, 17, 9);
        mm2(&b, "f16", 2, 7, 20, 33);
        mm2(&b, "bf16", 0, 19, 5, 40);
        mm2(&b, "i64", 3, 6, 11, 13);
        opt_cpu = t[i].cpu;
        opt_level = t[i].opt;
        diff_module(from_source(arena_printf(&ar, "tg%d", (int)i), b.s), false, false);
    }
    opt_cpu = "native";
    opt_level = 3;
}
END_TEST

START_TEST(test_const_operand)
{
    /* B is a scalar const viewed as [4, 5] (no memory: the kernel reads the immediate);
     * A is a broadcast row */
    const char *text = "module cm seed=0\n"
                       "\n"
                       "func f(a: f32[3, 4], r: f32[6]) {\n"
                       "  %0 = arg index=0 : f32[3, 4]\n"
                       "  %1 = const value=2.5 : f32\n"
                       "  %2 = unsqueeze %1 axis=0 : f32[1]\n"
                       "  %3 = unsqueeze %2 axis=0 : f32[1, 1]\n"
                       "  %4 = expand %3 shape=[4, 5] : f32[4, 5]\n"
                       "  %5 = matmul %0, %4 : f32[3, 5]\n"
                       "  %6 = arg index=1 : f32[6]\n"
                       "  %7 = unsqueeze %6 axis=0 : f32[1, 6]\n"
                       "  %8 = expand %7 shape=[5, 6] : f32[5, 6]\n"
                       "  %9 = matmul %5, %8 : f32[3, 6]\n"
                       "  return %5, %9\n"
                       "}\n";
    diff_module(from_ir(text), false, false);
}
END_TEST

START_TEST(test_empty_dims)
{
    /* K = 0 gives zeros; M = 0 writes nothing */
    const char *src = "export fn k0(a: f32[3, 0], b: f32[0, 4]) -> f32[3, 4] { return a @ b }\n"
                      "export fn m0(c: f32[0, 5], d: f32[5, 2]) -> f32[0, 2] { return c @ d }\n"
                      "export fn i0(a: i32[2, 0], b: i32[0, 3]) -> i32[2, 3] { return a @ b }\n";
    diff_module(from_source("em", src), false, false);
}
END_TEST

START_TEST(test_rejects_non_matmul)
{
    /* cg_emit_matmul on a node that is not a matmul: NULL, no crash */
    ir_module *m = from_source("nm", "export fn f(a: f32[2, 3], b: f32[4, 3]) -> f32[2, 4] { return a @ b.T }\n");
    cg_options o = {.cpu = "native", .opt_level = 0};
    cg_llvm *cg = cg_llvm_build(m, &o, err, sizeof err);
    ck_assert_msg(cg != NULL, "build: %s", err);
    const ir_func *f = m->funcs[0];
    int nm = 0;
    for (int id = 0; id < f->nnodes; id++)
        if (f->nodes[id].op != OP_matmul) {
            ck_assert_ptr_null(cg_emit_matmul(cg, f, id, arena_printf(&ar, "not_a_matmul%d", id)));
            nm++;
        }
    ck_assert_int_ge(nm, 3);   /* two args and a permute */
    ck_assert_ptr_null(cg_emit_matmul(cg, f, -1, "x"));
    ck_assert_ptr_null(cg_emit_matmul(cg, f, f->nnodes, "x"));
    cg_llvm_free(cg);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("llvm_gemm");
    TCase *tc = tcase_create("gemm");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_sizes_f32);
    tcase_add_test(tc, test_packed_f32);
    tcase_add_test(tc, test_narrow_n);
    tcase_add_test(tc, test_dtypes);
    tcase_add_test(tc, test_half_rounding);
    tcase_add_test(tc, test_views);
    tcase_add_test(tc, test_threads);
    tcase_add_test(tc, test_targets);
    tcase_add_test(tc, test_const_operand);
    tcase_add_test(tc, test_empty_dims);
    tcase_add_test(tc, test_rejects_non_matmul);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
