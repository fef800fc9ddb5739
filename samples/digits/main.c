/* Trains the MLP of digits.tdsl on scikit-learn's 8x8 digits (export_data.py wrote the
 * .bin files: f32 pixels, i32 labels, little-endian), prints a progress bar per epoch,
 * checks the test accuracy (>= 95%), saves the params, reloads them into a fresh instance
 * and checks it gives the same test accuracy. Exit status 0 only if every check holds.
 * usage: digits [--epochs N] [--data DIR] [--out FILE.safetensors] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "digits.h"

enum { B = 32, IN = 64, NCLASS = 10, BAR = 20 };

#ifndef DIGITS_DATA_DIR
#define DIGITS_DATA_DIR "."
#endif

typedef struct {
    float *x;       /* [n, IN] */
    int32_t *y;     /* [n] */
    int n;
} dataset;

/* Reads a whole file of `elem`-byte items; returns the count, -1 on error (message printed). */
static long read_file(const char *dir, const char *name, size_t elem, void **out)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "digits: cannot open %s (run samples/digits/export_data.py)\n", path);
        return -1;
    }
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) {
        long bytes = ftell(f);
        rewind(f);
        if (bytes > 0 && bytes % (long)elem == 0) {
            *out = malloc((size_t)bytes);
            if (*out && fread(*out, 1, (size_t)bytes, f) == (size_t)bytes)
                n = bytes / (long)elem;
        }
    }
    fclose(f);
    if (n < 0)
        fprintf(stderr, "digits: %s is empty, unreadable or not a whole number of items\n", path);
    return n;
}

static int load_set(const char *dir, const char *split, dataset *d)
{
    char xn[64], yn[64];
    snprintf(xn, sizeof xn, "%s_x.bin", split);
    snprintf(yn, sizeof yn, "%s_y.bin", split);
    void *x = NULL, *y = NULL;
    long nx = read_file(dir, xn, sizeof(float) * IN, &x);
    long ny = nx < 0 ? -1 : read_file(dir, yn, sizeof(int32_t), &y);
    if (nx < 0 || ny < 0 || nx != ny) {
        if (nx >= 0 && ny >= 0)
            fprintf(stderr, "digits: %s: %ld images but %ld labels\n", split, nx, ny);
        free(x);
        free(y);
        return -1;
    }
    d->x = x;
    d->y = y;
    d->n = (int)nx;
    for (int i = 0; i < d->n; i++)
        if (d->y[i] < 0 || d->y[i] >= NCLASS) {
            fprintf(stderr, "digits: %s label %d is %d, not in [0, %d)\n", split, i, d->y[i], NCLASS);
            return -1;
        }
    return 0;
}

/* Test accuracy in batches of B; the last partial batch is padded with row 0 and the
 * padding is not counted. */
static double accuracy(digits *m, const dataset *d)
{
    float xb[B * IN];
    int64_t pred[B];
    int correct = 0;
    for (int s = 0; s < d->n; s += B) {
        int k = d->n - s < B ? d->n - s : B;
        for (int i = 0; i < B; i++)
            memcpy(xb + i * IN, d->x + (size_t)(i < k ? s + i : 0) * IN, sizeof(float) * IN);
        if (digits_predict(m, xb, pred) != 0) {
            fprintf(stderr, "digits_predict: %s\n", digits_error(m));
            return -1;
        }
        for (int i = 0; i < k; i++)
            correct += pred[i] == d->y[s + i];
    }
    return 100.0 * correct / d->n;
}

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint32_t next_u32(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (uint32_t)((rng * 2685821657736338717ull) >> 32);
}

static int tty;   /* stdout is a terminal */

static void print_bar(int epoch, int epochs, int done, int total, double loss, double acc)
{
    /* \r redraws the line on a terminal; the final bar of an epoch ends it */
    char bar[BAR + 1];
    int fill = (int)((long)done * BAR / total);
    for (int i = 0; i < BAR; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[BAR] = '\0';
    printf("%sepoch %d/%d [%s] loss %.3f", tty ? "\r" : "", epoch, epochs, bar, loss);
    if (acc >= 0)
        printf(" acc %.1f%%\n", acc);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    long epochs = 20;
    const char *dir = DIGITS_DATA_DIR, *out = "digits.safetensors";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--epochs") == 0 && i + 1 < argc) {
            char *end;
            epochs = strtol(argv[++i], &end, 10);
            if (*argv[i] == '\0' || *end != '\0' || epochs < 1 || epochs > 100000) {
                fprintf(stderr, "digits: --epochs takes a whole number >= 1, got '%s'\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
            out = argv[++i];
        } else {
            fprintf(stderr, "usage: digits [--epochs N] [--data DIR] [--out FILE.safetensors]\n");
            return 2;
        }
    }

    dataset train, test;
    if (load_set(dir, "train", &train) != 0 || load_set(dir, "test", &test) != 0)
        return 1;
    printf("digits: %d training and %d test images of 8x8 pixels, batch %d\n", train.n, test.n, B);

    tdsl_options opts = TDSL_OPTIONS_INIT;
    opts.seed = 3;
    opts.threads = 1;     /* the model is tiny: threads would cost more than they save */
    digits *m = digits_create(&opts);
    if (!m) {
        fprintf(stderr, "digits_create failed\n");
        return 1;
    }

    int *order = malloc(sizeof(int) * (size_t)train.n);
    if (!order)
        return 1;
    for (int i = 0; i < train.n; i++)
        order[i] = i;
    float xb[B * IN];
    int32_t yb[B];
    int nbatch = train.n / B;   /* the remainder waits for the next shuffle */
    double acc = 0;
    tty = isatty(STDOUT_FILENO);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long e = 1; e <= epochs; e++) {
        for (int i = train.n - 1; i > 0; i--) {   /* Fisher-Yates */
            int j = (int)(next_u32() % (uint32_t)(i + 1)), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        double sum = 0;
        for (int bi = 0; bi < nbatch; bi++) {
            for (int i = 0; i < B; i++) {
                int r = order[bi * B + i];
                memcpy(xb + i * IN, train.x + (size_t)r * IN, sizeof(float) * IN);
                yb[i] = train.y[r];
            }
            float loss;
            if (digits_step(m, xb, yb, &loss) != 0) {
                fprintf(stderr, "\ndigits_step: %s\n", digits_error(m));
                return 1;
            }
            sum += loss;
            if (tty && (bi + 1) % 5 == 0 && bi + 1 < nbatch)   /* a moving bar only on a terminal */
                print_bar((int)e, (int)epochs, bi + 1, nbatch, sum / (bi + 1), -1);
        }
        acc = accuracy(m, &test);
        if (acc < 0)
            return 1;
        print_bar((int)e, (int)epochs, nbatch, nbatch, sum / nbatch, acc);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("trained %ld epochs in %.2f s; test accuracy %.1f%%\n", epochs, secs, acc);

    int ok = 1;
    if (acc < 95.0) {
        fprintf(stderr, "FAIL: test accuracy %.1f%% is below 95%%\n", acc);
        ok = 0;
    }
    if (digits_save(m, out) != 0) {
        fprintf(stderr, "digits_save: %s\n", digits_error(m));
        return 1;
    }
    opts.seed = 99;       /* other initial params: the load must replace them all */
    digits *m2 = digits_create(&opts);
    if (!m2) {
        fprintf(stderr, "digits_create failed\n");
        return 1;
    }
    double before = accuracy(m2, &test);
    if (digits_load(m2, out) != 0) {
        fprintf(stderr, "digits_load: %s\n", digits_error(m2));
        return 1;
    }
    double acc2 = accuracy(m2, &test);
    printf("saved %s; a fresh instance: %.1f%% before loading, %.1f%% after\n", out, before, acc2);
    if (acc2 != acc) {
        fprintf(stderr, "FAIL: the reloaded model gives %.1f%%, not %.1f%%\n", acc2, acc);
        ok = 0;
    }
    digits_destroy(m);
    digits_destroy(m2);
    free(order);
    free(train.x);
    free(train.y);
    free(test.x);
    free(test.y);
    printf(ok ? "PASS\n" : "FAIL\n");
    return ok ? 0 : 1;
}
