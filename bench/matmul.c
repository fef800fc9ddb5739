/* matmul: tdsl's generated f32 matrix multiply against OpenBLAS cblas_sgemm, side by side
 * in one process.
 *
 * One .tdsl module (an export per shape) is built through the library as `tdslc run` builds
 * it (cg_llvm_build, -O3 for the host CPU, then the LLJIT), and each export is timed
 * against cblas_sgemm on the same inputs, with 1 and 2 threads (tdsl_options.threads and
 * openblas_set_num_threads). Per shape, --runs rounds of: an OpenBLAS sample, a tdsl
 * sample, so that load from elsewhere on a shared machine hits both alike. A sample is the
 * mean of enough calls to last about 20 ms, after untimed calls (warm caches, clocks and
 * thread placement); with 2+ threads tdsl's sample also waits until OpenBLAS's idle
 * threads stop spinning. The table gives the median sample as GFLOP/s (2 M N K / time)
 * and the ratio tdsl / OpenBLAS. Results are checked against OpenBLAS's.
 *
 * Square sizes 256, 512, 1024, 2048 (the issue's), then the MLP's shapes (x @ W.T,
 * dW = dY.T @ x, ...), which take the unpacked path.
 *
 * Compare with OpenBLAS's best kernel: unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE in the
 * benchmark command only, e.g.
 *     env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE build-bench/bench/matmul
 * (OpenBLAS reads them when it loads; the kernel it chose is printed).
 *
 * usage: matmul [--runs N] [--sizes A,B,...] [--threads T1,T2] [--no-mlp] [--cpu NAME]
 * Exits 0 whatever the timings; 1 if the module does not build or a result is wrong. */
#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "codegen/llvm.h"
#include "common/arena.h"
#include "frontend/ast.h"
#include "frontend/lower.h"

enum { MAX_SHAPES = 32, MAX_RUNS = 101, MAX_THREADS = 8 };
#define SAMPLE_NS 20e6   /* one sample lasts about this long */
/* OpenBLAS's worker threads spin (with sched_yield) for 2^28 cycles after a call before
 * they sleep (OPENBLAS_THREAD_TIMEOUT): up to ~0.1 s, in which they take a core from
 * tdsl's threads (TSC cycles: 0.1 s at 2.6 GHz). */
#define BLAS_IDLE_NS 150000000L
#define WARM_NS 80e6

typedef struct shape {
    const char *label;
    int64_t m, n, k;
    bool ta, tb;         /* A is stored [K, M] and used as A.T; B stored [N, K] used as B.T */
} shape;

typedef int (*mm_fn)(void *, const float *, const float *, float *);

static void *lookup(cg_jit *j, const char *name)
{
    void *p = cg_jit_lookup(j, name);
    if (!p) {
        fprintf(stderr, "matmul: symbol %s not found\n", name);
        exit(1);
    }
    return p;
}

typedef struct bench_ctx {
    const shape *s;
    mm_fn fn;
    void *inst;
    const float *a, *b;
    float *c;
} bench_ctx;

static void run_tdsl(bench_ctx *x)
{
    if (x->fn(x->inst, x->a, x->b, x->c) != 0) {
        fprintf(stderr, "matmul: %s failed\n", x->s->label);
        exit(1);
    }
}

static void run_blas(bench_ctx *x)
{
    const shape *s = x->s;
    int m = (int)s->m, n = (int)s->n, k = (int)s->k;
    cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f,
                x->a, s->ta ? m : k, x->b, s->tb ? k : n, 0.0f, x->c, n);
}

/* With 2+ threads, tdsl's samples start after a pause in which OpenBLAS's idle threads
 * stop spinning. */
static void pause_if(bool on)
{
    if (on)
        nanosleep(&(struct timespec){0, BLAS_IDLE_NS}, NULL);
}

/* Untimed calls for WARM_NS before a sample: after an idle period the OS may run a woken
 * worker next to the caller on one CPU until it rebalances (measured: up to ~60 ms with
 * tdsl's pool), and CPUs ramp up. */
static void warm(void (*run)(bench_ctx *), bench_ctx *x)
{
    double t = now_ns();
    while (now_ns() - t < WARM_NS)
        run(x);
}

/* mean ns per call over `calls` calls */
static double sample(void (*run)(bench_ctx *), bench_ctx *x, int calls)
{
    double t = now_ns();
    for (int i = 0; i < calls; i++)
        run(x);
    return (now_ns() - t) / calls;
}

static int parse_list(const char *s, int64_t *out, int max)
{
    int n = 0;
    for (const char *p = s; *p && n < max;) {
        char *e;
        long long v = strtoll(p, &e, 10);
        if (e == p || v <= 0)
            return -1;
        out[n++] = v;
        p = *e == ',' ? e + 1 : e;
        if (*e && *e != ',')
            return -1;
    }
    return n;
}

int main(int argc, char **argv)
{
    int runs = 11;
    int64_t sizes[MAX_SHAPES] = {256, 512, 1024, 2048}, threads[MAX_THREADS] = {1, 2};
    int nsizes = 4, nthreads = 2;
    bool mlp = true;
    const char *cpu = "native";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
            runs = atoi(argv[++i]);
            if (runs < 1 || runs > MAX_RUNS) {
                fprintf(stderr, "matmul: --runs must be 1..%d\n", MAX_RUNS);
                return 2;
            }
        } else if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
            nsizes = parse_list(argv[++i], sizes, MAX_SHAPES - 8);
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            nthreads = parse_list(argv[++i], threads, MAX_THREADS);
        } else if (!strcmp(argv[i], "--no-mlp")) {
            mlp = false;
        } else if (!strcmp(argv[i], "--cpu") && i + 1 < argc) {
            cpu = argv[++i];
        } else {
            fprintf(stderr, "usage: matmul [--runs N] [--sizes A,B,...] [--threads T1,T2] [--no-mlp] [--cpu NAME]\n");
            return 2;
        }
        if (nsizes < 0 || nthreads < 0) {
            fprintf(stderr, "matmul: bad list '%s'\n", argv[i]);
            return 2;
        }
    }

    shape shapes[MAX_SHAPES];
    int ns = 0;
    static char labels[MAX_SHAPES][64];
    for (int i = 0; i < nsizes; i++) {
        snprintf(labels[ns], sizeof labels[ns], "%lld^3", (long long)sizes[i]);
        shapes[ns] = (shape){labels[ns], sizes[i], sizes[i], sizes[i], false, false};
        ns++;
    }
    if (mlp) {   /* MLP 784-256-10, batch 64: forward, and the gradients of layer 1 */
        shapes[ns++] = (shape){"x@W1.T 64x256x784", 64, 256, 784, false, true};
        shapes[ns++] = (shape){"x@W1 64x256x784", 64, 256, 784, false, false};
        shapes[ns++] = (shape){"h@W2.T 64x10x256", 64, 10, 256, false, true};
        shapes[ns++] = (shape){"dY.T@x 256x784x64", 256, 784, 64, true, false};
        shapes[ns++] = (shape){"dY@W1 64x784x256", 64, 784, 256, false, false};
    }

    /* the module: one export per shape */
    size_t cap = 256 * (size_t)ns + 64, len = 0;
    char *src = malloc(cap);
    if (!src)
        return 1;
    for (int i = 0; i < ns; i++) {
        const shape *s = &shapes[i];
        long long m = s->m, n = s->n, k = s->k;
        len += (size_t)snprintf(src + len, cap - len,
                                "export fn mm%d(a: f32[%lld, %lld], b: f32[%lld, %lld]) -> f32[%lld, %lld] { "
                                "return %s @ %s }\n",
                                i, s->ta ? k : m, s->ta ? m : k, s->tb ? n : k, s->tb ? k : n, m, n,
                                s->ta ? "a.T" : "a", s->tb ? "b.T" : "b");
    }
    arena ar;
    arena_init(&ar);
    src_file sf = {"matmul.tdsl", src, len};
    ast_file *ast = parse_file(&ar, &sf);
    lower_opts lo = {.module_name = "bm"};
    ir_module *m = ast ? lower_file(&ar, ast, &lo) : NULL;
    if (!m)
        return 1;
    char err[512];
    cg_options o = {.cpu = cpu, .opt_level = 3};
    double t0 = now_ns();
    cg_llvm *cg = cg_llvm_build(m, &o, err, sizeof err);
    cg_jit *j = cg ? cg_jit_create(cg, err, sizeof err) : NULL;
    if (!j) {
        fprintf(stderr, "matmul: %s\n", err);
        return 1;
    }
    cg_llvm_free(cg);
    double build_ms = (now_ns() - t0) / 1e6;

    const char *ct = getenv("OPENBLAS_CORETYPE"), *l2 = getenv("OPENBLAS_L2_SIZE");
    printf("matmul: tdsl (LLVM, --cpu %s, %d exports built and JIT-compiled in %.0f ms) vs OpenBLAS %s\n", cpu, ns,
           build_ms, openblas_get_corename());
    if (ct || l2)
        printf("note: OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s are set: OpenBLAS may not use its best kernel\n",
               ct ? ct : "(unset)", l2 ? l2 : "(unset)");
    printf("median of %d samples (each ~%.0f ms of calls, after %.0f ms of warm-up), OpenBLAS and tdsl alternating\n\n",
           runs, SAMPLE_NS / 1e6, WARM_NS / 1e6);
    printf("%-20s %3s %12s %12s %7s %9s\n", "shape", "thr", "tdsl GF/s", "OpenBLAS", "ratio", "max err");

    void *p = lookup(j, "bm_create");
    create_fn create;
    memcpy(&create, &p, sizeof p);
    p = lookup(j, "bm_destroy");
    destroy_fn destroy;
    memcpy(&destroy, &p, sizeof p);
    int bad = 0;
    double ratio1024[MAX_THREADS] = {0};
    for (int ti = 0; ti < nthreads; ti++) {
        tdsl_options opt = TDSL_OPTIONS_INIT;
        opt.threads = (int)threads[ti];
        void *inst = create(&opt);
        if (!inst) {
            fprintf(stderr, "matmul: bm_create failed\n");
            return 1;
        }
        openblas_set_num_threads((int)threads[ti]);
        for (int i = 0; i < ns; i++) {
            const shape *s = &shapes[i];
            size_t na = (size_t)(s->m * s->k), nb = (size_t)(s->k * s->n), nc = (size_t)(s->m * s->n);
            float *a = malloc(na * 4), *b = malloc(nb * 4), *c = malloc(nc * 4), *cref = malloc(nc * 4);
            if (!a || !b || !c || !cref) {
                fprintf(stderr, "matmul: out of memory\n");
                return 1;
            }
            for (size_t q = 0; q < na; q++)
                a[q] = (float)((int)(q * 7919 % 1009) - 504) / 504.0f;
            for (size_t q = 0; q < nb; q++)
                b[q] = (float)((int)(q * 104729 % 1013) - 506) / 506.0f;
            char name[32];
            snprintf(name, sizeof name, "bm_mm%d", i);
            p = lookup(j, name);
            bench_ctx x = {s, NULL, inst, a, b, c};
            memcpy(&x.fn, &p, sizeof p);
            /* warm up (page faults, thread pools), check, and size the samples */
            run_tdsl(&x);
            run_blas(&(bench_ctx){s, NULL, NULL, a, b, cref});
            double em = 0, cm = 0;
            for (size_t q = 0; q < nc; q++) {
                em = fmax(em, fabs((double)c[q] - cref[q]));
                cm = fmax(cm, fabs((double)cref[q]));
            }
            double rel = em / (cm > 0 ? cm : 1);
            if (!(rel <= 1e-5 * sqrt((double)s->k))) {
                bad = 1;
                fprintf(stderr, "matmul: %s: results differ from OpenBLAS (max error %.3g of %.3g)\n", s->label,
                        em, cm);
            }
            double est = sample(run_tdsl, &x, 1);
            int calls = est > SAMPLE_NS ? 1 : (int)(SAMPLE_NS / (est > 1 ? est : 1));
            double tt[MAX_RUNS], tb[MAX_RUNS];
            bench_ctx xb = x;
            xb.c = cref;
            for (int r = 0; r < runs; r++) {
                warm(run_blas, &xb);
                tb[r] = sample(run_blas, &xb, calls);
                pause_if(threads[ti] > 1);
                warm(run_tdsl, &x);
                tt[r] = sample(run_tdsl, &x, calls);
            }
            double flop = 2.0 * (double)s->m * (double)s->n * (double)s->k;
            double gt = flop / median(tt, runs), gb = flop / median(tb, runs);
            printf("%-20s %3lld %12.1f %12.1f %7.2f %9.1e\n", s->label, (long long)threads[ti], gt, gb, gt / gb, rel);
            fflush(stdout);
            if (s->m == 1024 && s->n == 1024 && s->k == 1024)
                ratio1024[ti] = gt / gb;
            free(a);
            free(b);
            free(c);
            free(cref);
        }
        destroy(inst);
        printf("\n");
    }
    for (int ti = 0; ti < nthreads; ti++)
        if (ratio1024[ti] > 0)
            printf("target 1024^3, %lld thread%s: tdsl / OpenBLAS %s = %.2f (>= 0.80: %s)\n", (long long)threads[ti],
                   threads[ti] > 1 ? "s" : "", openblas_get_corename(), ratio1024[ti],
                   ratio1024[ti] >= 0.8 ? "PASS" : "FAIL");
    cg_jit_free(j);
    arena_free(&ar);
    free(src);
    return bad;
}
