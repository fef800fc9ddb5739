/* The sample app: runs a classifier compiled by tdslc (classifier.o + classifier.h, from
 * classifier.tdsl), saves its params, reloads them into a second instance and checks that
 * the outputs are identical. Exit status 0 only if every check holds.
 * usage: classify [PARAMS.safetensors]   (default: classifier.safetensors) */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "classifier.h"

enum { B = 4, IN = 8, C = 3 };

static int failures;

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "FAILED: %s\n", what);
        failures++;
    }
}

static void print_probs(const char *title, const float *p)
{
    printf("%s\n", title);
    for (int i = 0; i < B; i++) {
        printf("  [");
        for (int j = 0; j < C; j++)
            printf("%s%.6f", j ? ", " : "", p[i * C + j]);
        printf("]\n");
    }
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "classifier.safetensors";
    float x[B * IN];
    for (int i = 0; i < B * IN; i++)
        x[i] = (float)((i * 37) % 17) / 8.0f - 1.0f;

    tdsl_options opts = TDSL_OPTIONS_INIT;
    opts.seed = 42;
    opts.threads = 1;
    classifier *a = classifier_create(&opts);
    if (!a) {
        fprintf(stderr, "classifier_create failed\n");
        return 1;
    }

    float pa[B * C];
    int rc = classifier_forward(a, x, pa);
    if (rc != 0) {
        fprintf(stderr, "classifier_forward: %s (%s)\n", classifier_error(a), tdsl_status_name(rc));
        return 1;
    }
    print_probs("classifier_forward (seed 42):", pa);
    for (int i = 0; i < B; i++) {
        float s = 0;
        for (int j = 0; j < C; j++) {
            check(pa[i * C + j] >= 0 && pa[i * C + j] <= 1, "probabilities lie in [0, 1]");
            s += pa[i * C + j];
        }
        check(fabsf(s - 1) < 1e-5f, "each row of probabilities sums to 1");
    }

    int64_t cls[B];
    float conf[B];
    check(classifier_predict(a, x, cls, conf) == 0, "classifier_predict succeeds");
    for (int i = 0; i < B; i++) {
        printf("  row %d: class %lld, p = %.6f\n", i, (long long)cls[i], conf[i]);
        int best = 0;
        for (int j = 1; j < C; j++)
            best = pa[i * C + j] > pa[i * C + best] ? j : best;
        check(cls[i] == best && conf[i] == pa[i * C + best], "predict agrees with forward");
    }

    printf("%d params:\n", classifier_num_params());
    static const char *const names[] = {"W1", "b1", "W2", "b2"};
    check(classifier_num_params() == 4, "four params");
    for (int i = 0; i < classifier_num_params(); i++) {
        tdsl_tensor t = classifier_param(a, i);
        printf("  %d %s %s[", i, t.name, tdsl_dtype_name(t.dtype));
        for (int d = 0; d < t.rank; d++)
            printf("%s%lld", d ? ", " : "", (long long)t.shape[d]);
        printf("]\n");
        check(t.data != NULL && t.dtype == TDSL_F32 && i < 4 && strcmp(t.name, names[i]) == 0, "param introspection");
    }
    check(classifier_param(a, 4).data == NULL, "an out-of-range param index gives no data");

    rc = classifier_save(a, path);
    if (rc != 0) {
        fprintf(stderr, "classifier_save(%s): %s\n", path, classifier_error(a));
        return 1;
    }
    printf("saved params to %s\n", path);

    /* another seed gives other params, so another output, until the saved ones are loaded */
    opts.seed = 7;
    classifier *b = classifier_create(&opts);
    if (!b) {
        fprintf(stderr, "classifier_create failed\n");
        return 1;
    }
    float pb[B * C], pc[B * C];
    check(classifier_forward(b, x, pb) == 0, "forward on the second instance");
    check(memcmp(pa, pb, sizeof pa) != 0, "a different seed gives a different output");
    rc = classifier_load(b, path);
    if (rc != 0) {
        fprintf(stderr, "classifier_load(%s): %s\n", path, classifier_error(b));
        return 1;
    }
    check(classifier_forward(b, x, pc) == 0, "forward after load");
    check(memcmp(pa, pc, sizeof pa) == 0, "reloaded params give the identical output");
    print_probs("after reloading the params into an instance created with seed 7:", pc);

    /* bad input is an error code and a message, never a crash */
    rc = classifier_load(b, "/nonexistent-dir/params.safetensors");
    check(rc != 0 && classifier_error(b)[0] != 0, "loading a missing file is an error with a message");
    printf("missing params file: %s: %s\n", tdsl_status_name(rc), classifier_error(b));
    check(classifier_forward(b, x, pc) == 0 && memcmp(pa, pc, sizeof pa) == 0, "a failed load keeps the params");
    check(classifier_forward(NULL, x, pc) == TDSL_ERR_NULL, "a NULL instance is TDSL_ERR_NULL");
    check(classifier_forward(a, NULL, pc) == TDSL_ERR_NULL, "a NULL input is TDSL_ERR_NULL");

    classifier_destroy(b);
    classifier_destroy(a);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("ok: save, reload and identical output\n");
    return 0;
}
