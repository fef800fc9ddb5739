/* Linear regression from scratch: synthetic data y = x @ w_true + b_true + noise, made here
 * with a fixed seed, fitted by the SGD step compiled from linreg.tdsl. Prints the recovered
 * weights; exit status 1 unless every one is within 1e-2 of the truth.
 * usage: linreg [--steps N] */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linreg.h"

enum { B = 64, D = 4, N = 4096 };

static const float w_true[D] = {2.0f, -3.5f, 0.5f, 1.25f};
static const float b_true = 0.75f;

/* xorshift64*: the same data on every machine, unlike rand() */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double uniform01(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static double gaussian(void)
{
    double u = uniform01(), v = uniform01();
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

static int parse_count(const char *s, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1 || v > 100000000)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    long steps = 500;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) {
            if (parse_count(argv[++i], &steps) != 0) {
                fprintf(stderr, "linreg: --steps takes a whole number >= 1, got '%s'\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: linreg [--steps N]\n");
            return 2;
        }
    }

    static float x[N * D], y[N];
    for (int i = 0; i < N; i++) {
        double t = b_true + 0.01 * gaussian();   /* a little noise */
        for (int j = 0; j < D; j++) {
            x[i * D + j] = (float)gaussian();
            t += (double)w_true[j] * x[i * D + j];
        }
        y[i] = (float)t;
    }

    tdsl_options opts = TDSL_OPTIONS_INIT;
    opts.seed = 1;
    opts.threads = 1;
    linreg *m = linreg_create(&opts);
    if (!m) {
        fprintf(stderr, "linreg_create failed\n");
        return 1;
    }
    float loss = 0;
    for (long s = 0; s < steps; s++) {
        int off = (int)((s * B) % N);      /* N is a multiple of B: batches never wrap */
        if (linreg_step(m, x + (size_t)off * D, y + off, &loss) != 0) {
            fprintf(stderr, "linreg_step: %s\n", linreg_error(m));
            linreg_destroy(m);
            return 1;
        }
        if (s % 100 == 0 || s == steps - 1)
            printf("step %5ld  loss %.6f\n", s, loss);
    }

    tdsl_tensor W = linreg_param(m, 0), b = linreg_param(m, 1);
    const float *w = W.data, *bb = b.data;
    int ok = 1;
    printf("%-6s %10s %10s\n", "", "true", "learned");
    for (int j = 0; j < D; j++) {
        printf("w[%d]   %10.4f %10.4f\n", j, w_true[j], w[j]);
        ok &= fabsf(w[j] - w_true[j]) <= 1e-2f;
    }
    printf("b      %10.4f %10.4f\n", b_true, bb[0]);
    ok &= fabsf(bb[0] - b_true) <= 1e-2f;
    linreg_destroy(m);
    printf(ok ? "PASS: every weight within 1e-2 of the truth\n"
              : "FAIL: a weight is off by more than 1e-2\n");
    return ok ? 0 : 1;
}
