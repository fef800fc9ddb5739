/* elementwise: a fused chain of 3 elementwise ops against a STREAM-style triad in C.
 *
 * The target: "a chain of 3 elementwise ops over 32M floats against a STREAM-style
 * triad in C: at least 0.7x its bandwidth."
 *
 *   export fn chain(a: f32[N], b: f32[N], c: f32[N]) -> f32[N] { return relu(a * b + c) }
 *
 * is built through the library as `tdslc run` builds it (lower, cg_llvm_build at -O3 for
 * the host CPU, LLJIT), once fused (one kernel: the pass pipeline is checked to give 1) and
 * once with cg_options.no_fuse (3 kernels through two arena temporaries). It runs in the
 * same process as C loops compiled by gcc with -O3 and the host's vector ISA:
 *   triad      x[i] = y[i] + s * z[i]                 the reference (plain stores)
 *   triad-nt   the same with non-temporal stores       (the DRAM ceiling; information only)
 *   chain      x[i] = max(a[i] * b[i] + c[i], 0) in C  (what gcc makes of tdsl's loop)
 *   chain-nt   the same with non-temporal stores       (what such stores would give tdsl)
 * (The -nt rows are x86 only: SSE or AVX-512 intrinsics, chosen at run time.)
 * With 1 and 2 threads: tdsl_options.threads for tdsl; for C, the caller plus T-1
 * pthreads started once, each taking an equal slice of the range per call.
 *
 * Every buffer is written before timing (first-touch page faults stay out), then each
 * variant runs untimed calls; then --runs rounds, each timing one call of every variant in
 * turn, so that load from elsewhere on the machine hits all alike. Medians. GB/s counts
 * bytes read + bytes written once per element: 16 B for the chain (3 reads, 1 write),
 * 12 B for the triad (2 reads, 1 write); write-allocate traffic is not counted, as STREAM
 * does not count it. The ratio column is GB/s over the triad's with the same threads.
 *
 * usage: elementwise [--runs N] [--n ELEMS] [--threads T1,T2,...] [--cpu NAME]
 * Exits 0 whatever the timings; 1 if a module does not build or a result is wrong. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define HAVE_X86_CLONES 1
#endif

#include "bench.h"
#include "codegen/llvm.h"
#include "common/arena.h"
#include "frontend/ast.h"
#include "frontend/lower.h"
#include "passes/passes.h"

enum { MAX_RUNS = 101, MAX_THREADS = 8, WARM_CALLS = 3 };
#define TARGET 0.7
#define SCALAR 3.0f

/* ---- the C loops ----
 * The bench is built with the project's flags; these loops get gcc -O3 and, through
 * target_clones, the host's ISA (x86-64-v4 = AVX-512 here: the same zmm loop as
 * `gcc -O3 -march=native`, checked with objdump). */
#ifdef HAVE_X86_CLONES
#pragma GCC push_options
#pragma GCC optimize("O3")
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CLONES
#endif

CLONES static void triad_loop(float *restrict x, const float *restrict y, const float *restrict z, float s,
                              int64_t lo, int64_t hi)
{
    for (int64_t i = lo; i < hi; i++)
        x[i] = y[i] + s * z[i];
}

CLONES static void chain_loop(float *restrict x, const float *restrict a, const float *restrict b,
                              const float *restrict c, int64_t lo, int64_t hi)
{
    for (int64_t i = lo; i < hi; i++) {
        float v = a[i] * b[i] + c[i];
        x[i] = v > 0.0f ? v : 0.0f;
    }
}

#ifdef HAVE_X86_CLONES
/* Non-temporal stores need x aligned; the ranges start at multiples of 16 elements and the
 * buffers are 64-byte aligned. */
__attribute__((target("avx512f"))) static void triad_nt_avx512(float *restrict x, const float *restrict y,
                                                               const float *restrict z, float s, int64_t lo,
                                                               int64_t hi)
{
    __m512 vs = _mm512_set1_ps(s);
    int64_t i = lo;
    for (; i + 16 <= hi; i += 16)
        _mm512_stream_ps(x + i, _mm512_fmadd_ps(vs, _mm512_loadu_ps(z + i), _mm512_loadu_ps(y + i)));
    for (; i < hi; i++)
        x[i] = y[i] + s * z[i];
    _mm_sfence();
}

static void triad_nt_sse(float *restrict x, const float *restrict y, const float *restrict z, float s, int64_t lo,
                         int64_t hi)
{
    __m128 vs = _mm_set1_ps(s);
    int64_t i = lo;
    for (; i + 4 <= hi; i += 4)
        _mm_stream_ps(x + i, _mm_add_ps(_mm_loadu_ps(y + i), _mm_mul_ps(vs, _mm_loadu_ps(z + i))));
    for (; i < hi; i++)
        x[i] = y[i] + s * z[i];
    _mm_sfence();
}

static void triad_nt_loop(float *x, const float *y, const float *z, float s, int64_t lo, int64_t hi)
{
    if (__builtin_cpu_supports("avx512f"))
        triad_nt_avx512(x, y, z, s, lo, hi);
    else
        triad_nt_sse(x, y, z, s, lo, hi);
}

__attribute__((target("avx512f"))) static void chain_nt_avx512(float *restrict x, const float *restrict a,
                                                               const float *restrict b, const float *restrict c,
                                                               int64_t lo, int64_t hi)
{
    __m512 zero = _mm512_setzero_ps();
    int64_t i = lo;
    for (; i + 16 <= hi; i += 16) {
        __m512 v = _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)), _mm512_loadu_ps(c + i));
        _mm512_stream_ps(x + i, _mm512_max_ps(v, zero));
    }
    for (; i < hi; i++) {
        float v = a[i] * b[i] + c[i];
        x[i] = v > 0.0f ? v : 0.0f;
    }
    _mm_sfence();
}

static void chain_nt_sse(float *restrict x, const float *restrict a, const float *restrict b,
                         const float *restrict c, int64_t lo, int64_t hi)
{
    __m128 zero = _mm_setzero_ps();
    int64_t i = lo;
    for (; i + 4 <= hi; i += 4) {
        __m128 v = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(a + i), _mm_loadu_ps(b + i)), _mm_loadu_ps(c + i));
        _mm_stream_ps(x + i, _mm_max_ps(v, zero));
    }
    for (; i < hi; i++) {
        float v = a[i] * b[i] + c[i];
        x[i] = v > 0.0f ? v : 0.0f;
    }
    _mm_sfence();
}

static void chain_nt_loop(float *x, const float *a, const float *b, const float *c, int64_t lo, int64_t hi)
{
    if (__builtin_cpu_supports("avx512f"))
        chain_nt_avx512(x, a, b, c, lo, hi);
    else
        chain_nt_sse(x, a, b, c, lo, hi);
}
#pragma GCC pop_options
#endif

/* ---- the variants ---- */
typedef enum { V_TRIAD, V_TRIAD_NT, V_CHAIN_C, V_CHAIN_NT, V_TDSL, V_TDSL_NOFUSE, NV } variant;
static const char *const vname[NV] = {"triad (C)",  "triad-nt (C)", "chain (C)",
                                      "chain-nt (C)", "tdsl fused",   "tdsl --no-fuse"};
static const double vbytes[NV] = {12, 12, 16, 16, 16, 16};   /* counted bytes per element */

typedef int (*chain_fn)(void *, const float *, const float *, const float *, float *);

typedef struct bufs {
    int64_t n;
    float *a, *b, *c, *out, *out_nf;   /* chain: inputs; out for fused tdsl and C, out_nf */
    float *x, *y, *z;                  /* triad */
} bufs;

typedef struct cpart {
    variant v;
    const bufs *B;
    int64_t lo, hi;
} cpart;

static void run_c_part(const cpart *p)
{
    const bufs *B = p->B;
    switch (p->v) {
    case V_TRIAD: triad_loop(B->x, B->y, B->z, SCALAR, p->lo, p->hi); break;
#ifdef HAVE_X86_CLONES
    case V_TRIAD_NT: triad_nt_loop(B->x, B->y, B->z, SCALAR, p->lo, p->hi); break;
    case V_CHAIN_NT: chain_nt_loop(B->out, B->a, B->b, B->c, p->lo, p->hi); break;
#endif
    case V_CHAIN_C: chain_loop(B->out, B->a, B->b, B->c, p->lo, p->hi); break;
    default: break;
    }
}

/* A team for the C loops: the caller plus T-1 threads started once, which meet the caller
 * at a barrier per call (like tdsl's pool, they sleep between calls). */
typedef struct team {
    int threads;
    pthread_t tid[MAX_THREADS];
    pthread_barrier_t start, done;
    cpart parts[MAX_THREADS];
    bool stop;
} team;

typedef struct member {
    team *tm;
    int t;
} member;

static void *team_main(void *arg)
{
    member *m = arg;
    team *tm = m->tm;
    for (;;) {
        pthread_barrier_wait(&tm->start);
        if (tm->stop)
            return NULL;
        run_c_part(&tm->parts[m->t]);
        pthread_barrier_wait(&tm->done);
    }
}

static member members[MAX_THREADS];

static int team_start(team *tm, int threads)
{
    tm->threads = threads;
    tm->stop = false;
    if (threads == 1)
        return 0;
    if (pthread_barrier_init(&tm->start, NULL, (unsigned)threads) ||
        pthread_barrier_init(&tm->done, NULL, (unsigned)threads))
        return -1;
    for (int t = 1; t < threads; t++) {
        members[t] = (member){tm, t};
        if (pthread_create(&tm->tid[t], NULL, team_main, &members[t]) != 0)
            return -1;   /* a barrier would wait forever: the caller exits */
    }
    return 0;
}

static void team_stop(team *tm)
{
    if (tm->threads == 1)
        return;
    tm->stop = true;
    pthread_barrier_wait(&tm->start);
    for (int t = 1; t < tm->threads; t++)
        pthread_join(tm->tid[t], NULL);
    pthread_barrier_destroy(&tm->start);
    pthread_barrier_destroy(&tm->done);
}

/* The caller takes part 0; parts start at multiples of 16 elements (whole cache lines). */
static void run_c(team *tm, variant v, const bufs *B)
{
    int T = tm->threads;
    int64_t per = (B->n / T + 15) / 16 * 16;
    for (int t = 0; t < T; t++) {
        int64_t lo = per * t < B->n ? per * t : B->n, hi = per * (t + 1) < B->n ? per * (t + 1) : B->n;
        tm->parts[t] = (cpart){v, B, lo, hi};
    }
    if (T > 1)
        pthread_barrier_wait(&tm->start);
    run_c_part(&tm->parts[0]);
    if (T > 1)
        pthread_barrier_wait(&tm->done);
}

typedef struct tdsl_mod {
    cg_jit *jit;
    create_fn create;
    destroy_fn destroy;
    error_fn error;
    chain_fn chain;
    int nkernels;
    double build_ms;
} tdsl_mod;

static void *lookup(cg_jit *j, const char *name)
{
    void *p = cg_jit_lookup(j, name);
    if (!p)
        fprintf(stderr, "elementwise: symbol %s not found\n", name);
    return p;
}

/* Lowers src as module `name`, counts its kernels with the pass pipeline, builds and JITs. */
static int build_mod(const char *src, const char *name, const char *cpu, bool no_fuse, tdsl_mod *M)
{
    arena ar;
    arena_init(&ar);
    src_file sf = {"elementwise.tdsl", src, strlen(src)};
    ast_file *ast = parse_file(&ar, &sf);
    lower_opts lo = {.module_name = name};
    ir_module *m = ast ? lower_file(&ar, ast, &lo) : NULL;
    ir_func *f = m ? ir_module_find(m, "chain") : NULL;
    if (!f) {
        arena_free(&ar);
        return -1;
    }
    M->nkernels = pass_pipeline(&ar, f, !no_fuse).schedule->nkernels;
    char err[512];
    cg_options o = {.cpu = cpu, .opt_level = 3, .no_fuse = no_fuse};
    double t0 = now_ns();
    cg_llvm *cg = cg_llvm_build(m, &o, err, sizeof err);
    M->jit = cg ? cg_jit_create(cg, err, sizeof err) : NULL;
    if (cg)
        cg_llvm_free(cg);
    M->build_ms = (now_ns() - t0) / 1e6;
    arena_free(&ar);
    if (!M->jit) {
        fprintf(stderr, "elementwise: %s: %s\n", name, err);
        return -1;
    }
    char sym[64];
    void *p[4];
    const char *suffix[4] = {"create", "destroy", "error", "chain"};
    for (int i = 0; i < 4; i++) {
        snprintf(sym, sizeof sym, "%s_%s", name, suffix[i]);
        if (!(p[i] = lookup(M->jit, sym)))
            return -1;
    }
    memcpy(&M->create, &p[0], sizeof p[0]);
    memcpy(&M->destroy, &p[1], sizeof p[1]);
    memcpy(&M->error, &p[2], sizeof p[2]);
    memcpy(&M->chain, &p[3], sizeof p[3]);
    return 0;
}

static float *alloc_floats(int64_t n)
{
    size_t bytes = ((size_t)n * sizeof(float) + 63) / 64 * 64;
    return aligned_alloc(64, bytes);
}

/* relu(a * b + c) within a rounding or two (FMA contraction may differ between compilers) */
static int check_chain(const bufs *B, const float *out, const char *what)
{
    for (int64_t i = 0; i < B->n; i++) {
        double v = (double)B->a[i] * B->b[i] + B->c[i];
        double want = v > 0 ? v : 0;
        double tol = 2e-7 * (fabs((double)B->a[i] * B->b[i]) + fabs((double)B->c[i])) + 1e-30;
        if (!(fabs(out[i] - want) <= tol)) {
            fprintf(stderr, "elementwise: %s: element %lld is %.9g, expected %.9g\n", what, (long long)i,
                    (double)out[i], want);
            return 1;
        }
    }
    return 0;
}

static int check_triad(const bufs *B)
{
    for (int64_t i = 0; i < B->n; i++) {
        double want = (double)B->y[i] + (double)SCALAR * B->z[i];
        if (!(fabs(B->x[i] - want) <= 2e-7 * (fabs((double)B->y[i]) + fabs(SCALAR * (double)B->z[i])))) {
            fprintf(stderr, "elementwise: triad: element %lld is %.9g, expected %.9g\n", (long long)i,
                    (double)B->x[i], want);
            return 1;
        }
    }
    return 0;
}

static int parse_list(const char *s, int64_t *out, int max)
{
    int n = 0;
    for (const char *p = s; *p;) {
        char *e;
        long long v = strtoll(p, &e, 10);
        if (e == p || v <= 0 || n == max || (*e && *e != ','))
            return -1;
        out[n++] = v;
        p = *e == ',' ? e + 1 : e;
    }
    return n;
}

static int usage(void)
{
    fprintf(stderr, "usage: elementwise [--runs N] [--n ELEMS] [--threads T1,T2,...] [--cpu NAME]\n");
    return 2;
}

int main(int argc, char **argv)
{
    int runs = 11, nthreads = 2;
    int64_t n = 32 * 1024 * 1024, threads[MAX_THREADS] = {1, 2};
    const char *cpu = "native";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc) {
            runs = atoi(argv[++i]);
            if (runs < 1 || runs > MAX_RUNS) {
                fprintf(stderr, "elementwise: --runs must be 1..%d\n", MAX_RUNS);
                return 2;
            }
        } else if (!strcmp(argv[i], "--n") && i + 1 < argc) {
            char *e;
            n = strtoll(argv[++i], &e, 10);
            if (*e || n < 16 || n > ((int64_t)1 << 32)) {
                fprintf(stderr, "elementwise: --n must be 16..2^32\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            nthreads = parse_list(argv[++i], threads, MAX_THREADS);
            for (int t = 0; t < nthreads; t++)
                if (threads[t] > MAX_THREADS)
                    nthreads = -1;
            if (nthreads < 1) {
                fprintf(stderr, "elementwise: --threads takes up to %d counts, each 1..%d\n", MAX_THREADS,
                        MAX_THREADS);
                return 2;
            }
        } else if (!strcmp(argv[i], "--cpu") && i + 1 < argc) {
            cpu = argv[++i];
        } else {
            return usage();
        }
    }

    char src[256];
    snprintf(src, sizeof src,
             "const N = %lld\n"
             "export fn chain(a: f32[N], b: f32[N], c: f32[N]) -> f32[N] { return relu(a * b + c) }\n",
             (long long)n);
    tdsl_mod mf = {0}, mn = {0};
    if (build_mod(src, "ew", cpu, false, &mf) || build_mod(src, "ewnf", cpu, true, &mn))
        return 1;
    printf("elementwise: relu(a * b + c) over %lld f32 (%.0f MiB per array), tdsl LLVM --cpu %s -O3\n",
           (long long)n, (double)n * 4 / (1 << 20), cpu);
    printf("  fused: %d kernel%s (built + JIT %.0f ms); --no-fuse: %d kernels (%.0f ms)\n", mf.nkernels,
           mf.nkernels == 1 ? "" : "s", mf.build_ms, mn.nkernels, mn.build_ms);
    int bad = 0;
    if (mf.nkernels != 1) {
        fprintf(stderr, "elementwise: the chain is not fused into one kernel (%d kernels)\n", mf.nkernels);
        bad = 1;
    }

    bufs B = {n, alloc_floats(n), alloc_floats(n), alloc_floats(n), alloc_floats(n), alloc_floats(n),
              alloc_floats(n), alloc_floats(n), alloc_floats(n)};
    if (!B.a || !B.b || !B.c || !B.out || !B.out_nf || !B.x || !B.y || !B.z) {
        fprintf(stderr, "elementwise: out of memory\n");
        return 1;
    }
    /* every buffer written once here: no first-touch page faults in the timed calls */
    for (int64_t i = 0; i < n; i++) {
        B.a[i] = (float)((int)(i * 7919 % 1009) - 504) / 504.0f;
        B.b[i] = (float)((int)(i * 104729 % 1013) - 506) / 506.0f;
        B.c[i] = (float)((int)(i * 31 % 997) - 498) / 498.0f;
        B.y[i] = B.a[i];
        B.z[i] = B.b[i];
        B.x[i] = B.out[i] = B.out_nf[i] = 0;
    }

    bool have[NV] = {true, false, true, false, true, true};
#ifdef HAVE_X86_CLONES
    have[V_TRIAD_NT] = have[V_CHAIN_NT] = true;
#endif
    printf("  median of %d rounds (one call of each variant per round, after %d untimed calls each);\n"
           "  GB/s = (bytes read + written) / time: chain 16 B/elem, triad 12 B/elem\n\n",
           runs, WARM_CALLS);
    printf("%-16s %3s %10s %9s %14s %8s\n", "variant", "thr", "ms", "GB/s", "min..max GB/s", "/triad");
    double ratio[MAX_THREADS] = {0}, fuse_gain[MAX_THREADS] = {0};
    for (int ti = 0; ti < nthreads; ti++) {
        int T = (int)threads[ti];
        tdsl_options opt = TDSL_OPTIONS_INIT;
        opt.threads = T;
        void *inf = mf.create(&opt), *inn = mn.create(&opt);
        static team tm;
        if (!inf || !inn || team_start(&tm, T)) {
            fprintf(stderr, "elementwise: cannot start %d threads\n", T);
            return 1;
        }
        double t[NV][MAX_RUNS];
        for (int r = -WARM_CALLS; r < runs; r++) {
            for (int v = 0; v < NV; v++) {
                if (!have[v])
                    continue;
                int rc = 0;
                double t0 = now_ns();
                if (v == V_TDSL)
                    rc = mf.chain(inf, B.a, B.b, B.c, B.out);
                else if (v == V_TDSL_NOFUSE)
                    rc = mn.chain(inn, B.a, B.b, B.c, B.out_nf);
                else
                    run_c(&tm, (variant)v, &B);
                double dt = now_ns() - t0;
                if (rc != 0) {
                    fprintf(stderr, "elementwise: %s failed: %s\n", vname[v],
                            v == V_TDSL ? mf.error(inf) : mn.error(inn));
                    return 1;
                }
                if (r >= 0)
                    t[v][r] = dt;
                if (r == -WARM_CALLS && ti == 0) {   /* results checked once */
                    if (v == V_TDSL)
                        bad |= check_chain(&B, B.out, "tdsl fused");
                    else if (v == V_TDSL_NOFUSE)
                        bad |= check_chain(&B, B.out_nf, "tdsl --no-fuse");
                    else if (v == V_TRIAD || v == V_TRIAD_NT)
                        bad |= check_triad(&B);
                    else
                        bad |= check_chain(&B, B.out, vname[v]);
                }
            }
        }
        double gbs[NV] = {0};
        for (int v = 0; v < NV; v++) {
            if (!have[v])
                continue;
            double med = median(t[v], runs);   /* sorts t[v]: t[v][0] is the fastest */
            double bytes = vbytes[v] * (double)n;
            gbs[v] = bytes / med;
            printf("%-16s %3d %10.2f %9.1f %6.1f..%-6.1f %8.2f\n", vname[v], T, med / 1e6, gbs[v],
                   bytes / t[v][runs - 1], bytes / t[v][0], gbs[v] / gbs[V_TRIAD]);
        }
        ratio[ti] = gbs[V_TDSL] / gbs[V_TRIAD];
        fuse_gain[ti] = gbs[V_TDSL] / gbs[V_TDSL_NOFUSE];
        printf("\n");
        fflush(stdout);
        team_stop(&tm);
        mf.destroy(inf);
        mn.destroy(inn);
    }
    for (int ti = 0; ti < nthreads; ti++)
        printf("target, %lld thread%s: tdsl fused / triad bandwidth = %.2f (>= %.2f: %s); fused is %.2fx "
               "--no-fuse\n",
               (long long)threads[ti], threads[ti] > 1 ? "s" : "", ratio[ti], TARGET,
               ratio[ti] >= TARGET ? "PASS" : "FAIL", fuse_gain[ti]);
    cg_jit_free(mf.jit);
    cg_jit_free(mn.jit);
    free(B.a);
    free(B.b);
    free(B.c);
    free(B.out);
    free(B.out_nf);
    free(B.x);
    free(B.y);
    free(B.z);
    return bad;
}
