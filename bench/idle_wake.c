/* idle_wake: how fast a multithreaded call runs right after the instance was idle.
 *
 * An app that calls a model now and then (a server between requests, a training loop
 * that loads data between steps) calls it after its pool's workers went to sleep. This
 * bench builds `x @ W` (512x512x512 f32, JIT, --cpu native) with 2 threads, then repeats:
 * sleep --gap ms (default 150), call it back to back for 100 ms, and sorts each call into
 * 20 ms windows after the wake. Per window: median GFLOP/s over --rounds rounds, next to
 * the same call on 1 thread and on 2 threads with no gaps. A pool whose woken worker
 * shares the caller's CPU runs the first windows at 1-thread speed.
 *
 * usage: idle_wake [--rounds N] [--gap MS]
 * Exits 0 whatever the numbers; 1 if the module does not build. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "codegen/llvm.h"
#include "common/arena.h"
#include "frontend/ast.h"
#include "frontend/lower.h"

enum { N = 512, WINDOWS = 5, WINDOW_MS = 20, MAX_ROUNDS = 64 };

static const char SRC[] = "param W: f32[512, 512] = normal(0, 0.05)\n"
                          "export fn f(x: f32[512, 512]) -> f32[512, 512] { return x @ W }\n";

typedef int (*call_fn)(void *, const float *, float *);

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* GFLOP/s of each window's calls after a gap of gap_ms (0: no gap), one round */
static void round_speeds(call_fn f, void *inst, const float *x, float *y, int gap_ms, double *gflops)
{
    if (gap_ms > 0)
        sleep_ms(gap_ms);
    double t0 = now_ns(), flop = 2.0 * N * N * N;
    int calls[WINDOWS] = {0};
    double busy[WINDOWS] = {0};
    for (;;) {
        double a = now_ns();
        int w = (int)((a - t0) / (WINDOW_MS * 1e6));
        if (w >= WINDOWS)
            break;
        f(inst, x, y);
        calls[w]++;
        busy[w] += now_ns() - a;
    }
    for (int w = 0; w < WINDOWS; w++)
        gflops[w] = calls[w] ? flop * calls[w] / busy[w] : 0;
}

int main(int argc, char **argv)
{
    int rounds = 8, gap = 150;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--gap") && i + 1 < argc)
            gap = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: idle_wake [--rounds N] [--gap MS]\n");
            return 2;
        }
    }
    if (rounds < 1 || rounds > MAX_ROUNDS || gap < 1) {
        fprintf(stderr, "idle_wake: --rounds 1..%d, --gap >= 1\n", MAX_ROUNDS);
        return 2;
    }
    arena ar;
    arena_init(&ar);
    src_file sf = {"idle_wake.tdsl", SRC, sizeof SRC - 1};
    ast_file *ast = parse_file(&ar, &sf);
    lower_opts lo = {.module_name = "w"};
    ir_module *m = ast ? lower_file(&ar, ast, &lo) : NULL;
    char err[512] = "the source does not compile";
    cg_options o = {.cpu = "native", .opt_level = 3};
    cg_llvm *cg = m ? cg_llvm_build(m, &o, err, sizeof err) : NULL;
    cg_jit *jit = cg ? cg_jit_create(cg, err, sizeof err) : NULL;
    if (cg)
        cg_llvm_free(cg);
    void *pf = jit ? cg_jit_lookup(jit, "w_f") : NULL, *pc = jit ? cg_jit_lookup(jit, "w_create") : NULL;
    void *pd = jit ? cg_jit_lookup(jit, "w_destroy") : NULL;
    if (!pf || !pc || !pd) {
        fprintf(stderr, "idle_wake: %s\n", err);
        return 1;
    }
    call_fn f;
    create_fn create;
    destroy_fn destroy;
    memcpy(&f, &pf, sizeof pf);
    memcpy(&create, &pc, sizeof pc);
    memcpy(&destroy, &pd, sizeof pd);
    float *x = malloc(sizeof(float) * N * N), *y = malloc(sizeof(float) * N * N);
    for (int i = 0; i < N * N; i++)
        x[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    tdsl_options o1 = TDSL_OPTIONS_INIT, o2 = TDSL_OPTIONS_INIT;
    o1.threads = 1;
    o2.threads = 2;
    void *one = create(&o1), *two = create(&o2);
    double w1[MAX_ROUNDS][WINDOWS], w2[MAX_ROUNDS][WINDOWS], wg[MAX_ROUNDS][WINDOWS];
    for (int r = 0; r < rounds; r++) {
        round_speeds(f, one, x, y, 0, w1[r]);
        round_speeds(f, two, x, y, 0, w2[r]);
        round_speeds(f, two, x, y, gap, wg[r]);
    }
    printf("idle_wake: %dx%dx%d f32 matmul, GFLOP/s per %d ms window, median of %d rounds\n", N, N, N, WINDOW_MS,
           rounds);
    printf("%-28s", "window (ms)");
    for (int w = 0; w < WINDOWS; w++)
        printf("  %3d-%-3d", w * WINDOW_MS, (w + 1) * WINDOW_MS);
    printf("\n");
    const char *names[] = {"1 thread", "2 threads, back to back", "2 threads, after a gap"};
    double (*rows[])[WINDOWS] = {w1, w2, wg};
    for (int k = 0; k < 3; k++) {
        printf("%-28s", names[k]);
        for (int w = 0; w < WINDOWS; w++) {
            double v[MAX_ROUNDS];
            for (int r = 0; r < rounds; r++)
                v[r] = rows[k][r][w];
            printf("  %7.1f", median(v, rounds));
        }
        printf("\n");
    }
    printf("(gap: %d ms of sleep before each round of the last row)\n", gap);
    destroy(one);
    destroy(two);
    free(x);
    free(y);
    cg_jit_free(jit);
    arena_free(&ar);
    return 0;
}
