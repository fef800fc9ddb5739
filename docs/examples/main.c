/* The example of docs/c-api.md: an application that uses a model compiled ahead of time.
 *   tdslc build tiny.tdsl -o tiny.o --header tiny.h
 *   cc main.c tiny.o $(pkg-config --cflags --libs tdsl) -o tiny_app && ./tiny_app
 * (docs/examples/run.sh does all of this, three ways.) It creates an instance, checks
 * tiny_logits against the same math done here in C on the instance's own params, shows
 * the error paths, saves and reloads the params, runs two instances on two threads, and
 * trains with plain SGD written in C on the gradients of tiny_grads.
 * Exit status 0 only if every check holds. usage: tiny_app [PARAMS.safetensors] */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "tiny.h"

enum { B = 2, IN = 4, C = 3 };

static int failures;

static void check(int ok, const char *what)
{
    printf("%s %s\n", ok ? "  ok  " : "FAILED", what);
    failures += !ok;
}

/* the reference: x @ W + b, from the params the instance holds */
static void reference_logits(tiny *m, const float *x, float *out)
{
    const float *W = tiny_param(m, 0).data, *b = tiny_param(m, 1).data;
    for (int i = 0; i < B; i++)
        for (int j = 0; j < C; j++) {
            float s = b[j];
            for (int k = 0; k < IN; k++)
                s += x[i * IN + k] * W[k * C + j];
            out[i * C + j] = s;
        }
}

static int close_to(const float *a, const float *b, int n)
{
    for (int i = 0; i < n; i++)
        if (fabsf(a[i] - b[i]) > 1e-5f * (1 + fabsf(b[i])))
            return 0;
    return 1;
}

/* one instance per thread: each thread creates, uses and destroys its own */
typedef struct job {
    const float *x;
    float out[B * C];
    int rc;
} job;

static void *worker(void *arg)
{
    job *j = arg;
    tdsl_options o = TDSL_OPTIONS_INIT;
    o.seed = 42;
    o.threads = 1;
    tiny *m = tiny_create(&o);
    j->rc = m ? tiny_logits(m, j->x, j->out) : -1;
    tiny_destroy(m);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "tiny.safetensors";
    const float x[B * IN] = {1, 2, 3, 4, -1, 0.5f, 0, 2};

    /* 1. create: params initialized from the seed */
    tdsl_options opts = TDSL_OPTIONS_INIT;
    opts.seed = 42;
    tiny *m = tiny_create(&opts);
    if (!m) {   /* why: tdsl_rt_error(NULL) (tiny_error(NULL) should say it too; see c-api.md) */
        fprintf(stderr, "tiny_create failed: %s\n", tdsl_rt_error(NULL));
        return 1;
    }

    /* 2. params: names, types and data, in declaration order */
    for (int i = 0; i < tiny_num_params(); i++) {
        tdsl_tensor t = tiny_param(m, i);
        printf("param %d: %s %s[", i, t.name, tdsl_dtype_name(t.dtype));
        for (int d = 0; d < t.rank; d++)
            printf("%s%lld", d ? ", " : "", (long long)t.shape[d]);
        printf("]\n");
    }

    /* 3. one input, one output */
    float z[B * C], want[B * C];
    int rc = tiny_logits(m, x, z);
    if (rc != 0) {
        fprintf(stderr, "tiny_logits: %s (%s)\n", tiny_error(m), tdsl_status_name(rc));
        return 1;
    }
    for (int i = 0; i < B; i++)
        printf("logits[%d] = [%9.6f, %9.6f, %9.6f]\n", i, z[i * C], z[i * C + 1], z[i * C + 2]);
    reference_logits(m, x, want);
    check(close_to(z, want, B * C), "tiny_logits equals x @ W + b computed in C");

    /* 4. two inputs, two outputs; a scalar output is a pointer to one element */
    const int64_t labels[B] = {2, 0};
    int64_t pred[B];
    float loss = -1;
    rc = tiny_evaluate(m, x, labels, pred, &loss);
    printf("evaluate: rc %d, pred = [%lld, %lld], loss = %.6f\n", rc, (long long)pred[0], (long long)pred[1], loss);
    check(rc == 0 && loss > 0, "tiny_evaluate gives a positive loss");
    for (int i = 0; i < B; i++) {
        int best = 0;
        for (int j = 1; j < C; j++)
            best = z[i * C + j] > z[i * C + best] ? j : best;
        check(pred[i] == best, "the predicted class is the largest logit");
    }

    /* 5. errors: a status code and a message, never a crash */
    const int64_t bad_labels[B] = {2, 7};
    rc = tiny_evaluate(m, x, bad_labels, pred, &loss);
    printf("label 7: %s: %s\n", tdsl_status_name(rc), tiny_error(m));
    check(rc == TDSL_ERR_RUNTIME, "an out-of-range label is TDSL_ERR_RUNTIME");
    rc = tiny_logits(m, NULL, z);
    printf("NULL input: %s: %s\n", tdsl_status_name(rc), tiny_error(m));
    check(rc == TDSL_ERR_NULL, "a NULL input is TDSL_ERR_NULL");
    tdsl_tensor none = tiny_param(m, 5);
    check(none.data == NULL && none.rank == 0, "param index 5 gives no data");
    printf("param 5: %s\n", tiny_error(m));

    /* 6. save; a second instance with another seed computes something else until it loads */
    rc = tiny_save(m, path);
    check(rc == 0, "tiny_save");
    if (rc != 0)
        printf("  %s\n", tiny_error(m));
    opts.seed = 7;
    tiny *m2 = tiny_create(&opts);
    float z2[B * C];
    check(m2 && tiny_logits(m2, x, z2) == 0 && memcmp(z, z2, sizeof z) != 0, "seed 7 gives other logits");
    check(m2 && tiny_load(m2, path) == 0, "tiny_load");
    check(m2 && tiny_logits(m2, x, z2) == 0 && memcmp(z, z2, sizeof z) == 0, "after load: identical logits");
    rc = tiny_load(m2, "no-such-file.safetensors");
    printf("missing file: %s: %s\n", tdsl_status_name(rc), tiny_error(m2));
    check(rc == TDSL_ERR_IO, "loading a missing file is TDSL_ERR_IO");

    /* 7. params are the instance's memory: writing b changes the next result */
    float *b = tiny_param(m, 1).data, b0 = b[0];
    b[0] += 1;
    check(tiny_logits(m, x, z2) == 0 && fabsf(z2[0] - (z[0] + 1)) < 1e-5f, "writing param b shifts logits[0][0] by 1");
    b[0] = b0;

    /* 8. threads: two instances used at the same time, one per thread */
    job jobs[2] = {{.x = x, .rc = -1}, {.x = x, .rc = -1}};
    pthread_t th[2];
    int started[2];
    for (int i = 0; i < 2; i++)
        started[i] = pthread_create(&th[i], NULL, worker, &jobs[i]) == 0;
    for (int i = 0; i < 2; i++)
        if (started[i])
            pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++)
        check(jobs[i].rc == 0 && memcmp(jobs[i].out, z, sizeof z) == 0, "a thread's own instance (seed 42) agrees");

    /* 9. gradients: tiny_grads gives the loss, dW and db; an SGD step is written here in C
     *    on the param memory (an `export step = sgd(...)` does it in one call: docs/training.md) */
    float loss0 = 0, dW[IN * C], db[C];
    rc = tiny_grads(m, x, labels, &loss0, dW, db);
    check(rc == 0 && fabsf(loss0 - loss) < 1e-6f, "tiny_grads' loss equals tiny_evaluate's");
    float want_db[C] = {0};   /* d(mean cross-entropy)/db = mean over rows of softmax - one_hot */
    for (int i = 0; i < B; i++) {
        float mx = fmaxf(z[i * C], fmaxf(z[i * C + 1], z[i * C + 2])), sum = 0;
        for (int j = 0; j < C; j++)
            sum += expf(z[i * C + j] - mx);
        for (int j = 0; j < C; j++)
            want_db[j] += (expf(z[i * C + j] - mx) / sum - (j == labels[i])) / B;
    }
    check(close_to(db, want_db, C), "db equals mean(softmax - one_hot) computed in C");
    float *W = tiny_param(m, 0).data, step_loss = loss0;
    for (int step = 0; step < 50 && rc == 0; step++) {
        for (int i = 0; i < IN * C; i++)
            W[i] -= 0.5f * dW[i];
        for (int j = 0; j < C; j++)
            b[j] -= 0.5f * db[j];
        rc = tiny_grads(m, x, labels, &step_loss, dW, db);
    }
    printf("SGD: loss %.6f -> %.6f after 50 steps\n", loss0, step_loss);
    check(rc == 0 && step_loss < 0.1f * loss0, "50 SGD steps cut the loss tenfold");
    check(tiny_evaluate(m, x, labels, pred, &loss) == 0 && pred[0] == labels[0] && pred[1] == labels[1],
          "after training, both rows are classified as labelled");

    tiny_destroy(m2);
    tiny_destroy(m);
    printf(failures ? "%d check(s) FAILED\n" : "all checks passed\n", failures);
    return failures ? 1 : 0;
}
