/* Links three compiled modules into one program: affine (affine.tdsl), pair (pair.tdsl)
 * and affine2 (affine.tdsl again, under another name). Both sources export `forward`;
 * the prefixes keep them apart, and each module's instances own their params.
 * Expected values are exact (small integers in f32). Exit status 0 if all hold. */
#include <stdio.h>
#include <string.h>

#include "affine.h"
#include "affine2.h"
#include "pair.h"

static int failures;

static void check(int ok, const char *what)
{
    printf("%s: %s\n", ok ? "ok" : "FAILED", what);
    failures += !ok;
}

int main(void)
{
    affine *a = affine_create(NULL);
    affine2 *a2 = affine2_create(NULL);
    pair *p = pair_create(NULL);
    if (!a || !a2 || !p) {
        fprintf(stderr, "create failed\n");
        return 1;
    }
    const float x[4] = {1, 2, 3, 4}, y[4] = {4, 3, 2, 1};

    float ya[4], ya2[4], diff[4], dot = 0;
    check(affine_forward(a, x, ya) == 0, "affine_forward runs");
    check(ya[0] == 3 && ya[1] == 5 && ya[2] == 7 && ya[3] == 9, "affine: x * 2 + 1");
    check(pair_forward(p, x, y, &dot, diff) == 0, "pair_forward runs");
    check(dot == 20, "pair: sum(x * y) = 20");
    check(diff[0] == -3 && diff[1] == -1 && diff[2] == 1 && diff[3] == 3, "pair: x - y");
    const int32_t v[5] = {-1, 2, 0, 7, 9};
    int64_t n = -1;
    check(pair_count(p, v, &n) == 0 && n == 3, "pair_count: three positive");

    /* changing affine's param through introspection leaves affine2 alone */
    check(affine_num_params() == 1 && affine2_num_params() == 1 && pair_num_params() == 1, "one param each");
    tdsl_tensor s = affine_param(a, 0);
    tdsl_tensor w = pair_param(p, 0);
    check(s.data && strcmp(s.name, "s") == 0 && s.rank == 1 && s.shape[0] == 4, "affine's param is s: f32[4]");
    check(w.data && strcmp(w.name, "w") == 0 && w.rank == 2 && w.shape[0] == 2 && w.shape[1] == 4,
          "pair's param is w: f32[2, 4]");
    if (s.data)
        for (int i = 0; i < 4; i++)
            ((float *)s.data)[i] = 3;
    check(affine_forward(a, x, ya) == 0 && ya[0] == 4 && ya[3] == 13, "affine with s = 3: x * 3 + 1");
    check(affine2_forward(a2, x, ya2) == 0 && ya2[0] == 3 && ya2[3] == 9, "affine2 still computes x * 2 + 1");

    pair_destroy(p);
    affine2_destroy(a2);
    affine_destroy(a);
    return failures ? 1 : 0;
}
