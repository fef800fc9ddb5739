/* Karpathy's makemore MLP in tdsl: trains the character-level model of makemore.tdsl on
 * the lowercase a-z words of a word list (Debian's wamerican by default), prints the loss
 * curve (Adam at lr 0.01, then 0.001 for the last quarter of the steps), the loss on
 * held-out words, and samples new words with a fixed seed from the
 * softmax of the compiled `logits` export.
 * usage: makemore [--steps N] [--words FILE] [--max-loss L]
 * Exit status 1 when the held-out loss is not below --max-loss (default 2.6). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "makemore.h"

enum { B = 64, T = 3, V = 27, MAXLEN = 32, NSAMPLES = 10, DEV_MAX = 16384 };

typedef struct {
    int32_t (*ctx)[T];   /* [n][T] previous characters, 0 = '.' */
    int32_t *next;       /* [n] */
    long n, cap;
} examples;

static uint64_t rng = 0x853C49E6748FEA9Bull;
static uint64_t next_u64(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ull;
}
static double uniform01(void) { return (double)(next_u64() >> 11) / 9007199254740992.0; }

static int push(examples *e, const int32_t *ctx, int32_t next)
{
    if (e->n == e->cap) {
        long cap = e->cap ? e->cap * 2 : 4096;
        void *c = realloc(e->ctx, sizeof *e->ctx * (size_t)cap);
        if (!c)
            return -1;
        e->ctx = c;
        void *y = realloc(e->next, sizeof *e->next * (size_t)cap);
        if (!y)
            return -1;
        e->next = y;
        e->cap = cap;
    }
    memcpy(e->ctx[e->n], ctx, sizeof(int32_t) * T);
    e->next[e->n++] = next;
    return 0;
}

/* Every (context, next character) pair of ".word.", as makemore builds its dataset. */
static int add_word(examples *e, const char *w)
{
    int32_t ctx[T] = {0};
    for (const char *p = w;; p++) {
        int32_t c = *p ? *p - 'a' + 1 : 0;
        if (push(e, ctx, c) != 0)
            return -1;
        if (!*p)
            return 0;
        memmove(ctx, ctx + 1, sizeof(int32_t) * (T - 1));
        ctx[T - 1] = c;
    }
}

/* Mean cross-entropy of the model on about DEV_MAX examples, from the logits export. */
static double eval_loss(makemore *m, const examples *e)
{
    static int32_t ix[B][T];
    static float lg[B * V];
    /* evenly spaced examples: the word list is sorted, so a prefix would be all 'a' words */
    long stride = e->n > DEV_MAX ? e->n / DEV_MAX : 1, n = e->n / stride, cnt = 0;
    static int32_t y[B];
    double sum = 0;
    for (long s = 0; s + B <= n; s += B) {
        for (int i = 0; i < B; i++) {
            memcpy(ix[i], e->ctx[(s + i) * stride], sizeof(int32_t) * T);
            y[i] = e->next[(s + i) * stride];
        }
        if (makemore_logits(m, &ix[0][0], lg) != 0) {
            fprintf(stderr, "makemore_logits: %s\n", makemore_error(m));
            return -1;
        }
        for (int i = 0; i < B; i++) {
            const float *z = lg + i * V;
            float mx = z[0];
            for (int k = 1; k < V; k++)
                mx = z[k] > mx ? z[k] : mx;
            double se = 0;
            for (int k = 0; k < V; k++)
                se += exp((double)(z[k] - mx));
            sum += log(se) + mx - z[y[i]];
            cnt++;
        }
    }
    return cnt ? sum / (double)cnt : -1;
}

/* NSAMPLES words at once, one per batch row: each row draws its next character from
 * the softmax of its logits until it draws '.'. */
static int sample_words(makemore *m)
{
    static int32_t ix[B][T];
    static float lg[B * V];
    char words[NSAMPLES][MAXLEN + 1];
    int len[NSAMPLES] = {0}, done[NSAMPLES] = {0}, left = NSAMPLES;
    memset(ix, 0, sizeof ix);
    for (int pos = 0; pos < MAXLEN && left > 0; pos++) {
        if (makemore_logits(m, &ix[0][0], lg) != 0) {
            fprintf(stderr, "makemore_logits: %s\n", makemore_error(m));
            return -1;
        }
        for (int i = 0; i < NSAMPLES; i++) {
            if (done[i])
                continue;
            const float *z = lg + i * V;
            float mx = z[0];
            for (int k = 1; k < V; k++)
                mx = z[k] > mx ? z[k] : mx;
            double p[V], tot = 0;
            for (int k = 0; k < V; k++)
                tot += p[k] = exp((double)(z[k] - mx));
            double u = uniform01() * tot;
            int c = V - 1;
            for (int k = 0; k < V; k++) {
                if (u < p[k]) {
                    c = k;
                    break;
                }
                u -= p[k];
            }
            if (c == 0 || pos == MAXLEN - 1) {
                done[i] = 1;
                left--;
            } else {
                words[i][len[i]++] = (char)('a' + c - 1);
            }
            memmove(ix[i], ix[i] + 1, sizeof(int32_t) * (T - 1));
            ix[i][T - 1] = c;
        }
    }
    printf("samples:");
    for (int i = 0; i < NSAMPLES; i++) {
        words[i][len[i]] = '\0';
        printf(" %s", words[i]);
    }
    printf("\n");
    return 0;
}

int main(int argc, char **argv)
{
    long steps = 20000;
    double max_loss = 2.6;
    const char *path = "/usr/share/dict/american-english";
    for (int i = 1; i < argc; i++) {
        char *end;
        if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) {
            steps = strtol(argv[++i], &end, 10);
            if (*argv[i] == '\0' || *end != '\0' || steps < 1 || steps > 100000000) {
                fprintf(stderr, "makemore: --steps takes a whole number >= 1, got '%s'\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--max-loss") == 0 && i + 1 < argc) {
            max_loss = strtod(argv[++i], &end);
            if (*argv[i] == '\0' || *end != '\0' || !(max_loss > 0)) {
                fprintf(stderr, "makemore: --max-loss takes a number > 0, got '%s'\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--words") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else {
            fprintf(stderr, "usage: makemore [--steps N] [--words FILE] [--max-loss L]\n");
            return 2;
        }
    }

    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "makemore: cannot open %s (install Debian's wamerican, or pass --words FILE)\n",
                path);
        return 1;
    }
    /* Words made of a-z only (no capitals, apostrophes or accents), at most MAXLEN long;
     * every tenth one is held out to measure the loss on words never trained on. */
    examples train = {0}, dev = {0};
    char line[256];
    long nwords = 0;
    while (fgets(line, sizeof line, f)) {
        size_t n = strcspn(line, "\r\n");
        line[n] = '\0';
        int ok = n > 0 && n <= MAXLEN;
        for (size_t i = 0; ok && i < n; i++)
            ok = line[i] >= 'a' && line[i] <= 'z';
        if (!ok)
            continue;
        if (add_word(nwords % 10 == 9 ? &dev : &train, line) != 0) {
            fprintf(stderr, "makemore: out of memory\n");
            return 1;
        }
        nwords++;
    }
    fclose(f);
    if (train.n < B || dev.n < B) {
        fprintf(stderr, "makemore: %s has too few lowercase a-z words (%ld)\n", path, nwords);
        return 1;
    }
    printf("makemore: %ld words from %s: %ld training examples, %ld held out\n", nwords, path,
           train.n, dev.n);

    tdsl_options opts = TDSL_OPTIONS_INIT;
    opts.seed = 2147483647;   /* makemore's torch.Generator seed */
    opts.threads = 1;
    makemore *m = makemore_create(&opts);
    if (!m) {
        fprintf(stderr, "makemore_create failed\n");
        return 1;
    }

    static int32_t ix[B][T], y[B];
    long every = steps >= 20 ? steps / 10 : 1;
    double sum = 0;
    long cnt = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long s = 1; s <= steps; s++) {
        for (int i = 0; i < B; i++) {   /* a random minibatch, as makemore draws it */
            long r = (long)(next_u64() % (uint64_t)train.n);
            memcpy(ix[i], train.ctx[r], sizeof(int32_t) * T);
            y[i] = train.next[r];
        }
        float loss;
        int rc = s <= steps - steps / 4 ? makemore_step(m, &ix[0][0], y, &loss)
                                        : makemore_step_fine(m, &ix[0][0], y, &loss);
        if (rc != 0) {
            fprintf(stderr, "makemore_step: %s\n", makemore_error(m));
            return 1;
        }
        sum += loss;
        cnt++;
        if (s % every == 0 || s == steps) {
            printf("step %7ld  loss %.4f\n", s, sum / (double)cnt);   /* mean since the last line */
            fflush(stdout);
            sum = 0;
            cnt = 0;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    double tl = eval_loss(m, &train), dl = eval_loss(m, &dev);
    if (tl < 0 || dl < 0)
        return 1;
    printf("%ld steps in %.2f s; loss: train %.4f, held out %.4f (uniform: %.4f)\n", steps, secs,
           tl, dl, log((double)V));
    if (sample_words(m) != 0)
        return 1;
    makemore_destroy(m);
    free(train.ctx);
    free(train.next);
    free(dev.ctx);
    free(dev.next);
    if (!(dl < max_loss)) {
        fprintf(stderr, "FAIL: held-out loss %.4f is not below %.4f\n", dl, max_loss);
        return 1;
    }
    printf("PASS: held-out loss %.4f < %.4f\n", dl, max_loss);
    return 0;
}
