/* The golden programs (every .tdsl in tests/golden) through the compiled code: each export runs in
 * the reference evaluator and, on the same random inputs and params, through the LLVM
 * backend both as JIT and as an AOT object (tests/unit/engines.h); results must agree:
 * integers and bools exactly, floats within rtol 1e-4 / atol 1e-5 (the compiled code
 * computes f32 in f32 with its own summation orders and polynomial math). */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include "engines.h"
#include "frontend/ast.h"
#include "frontend/lower.h"
#include "ir/eval.h"
#include "runtime/philox.h"

#define GOLDEN_DIR TDSL_SOURCE_DIR "/tests/golden"
#define MAX_FILES 128

static char *files[MAX_FILES];
static int nfiles;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void scan(void)
{
    DIR *d = opendir(GOLDEN_DIR);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) && nfiles < MAX_FILES) {
        size_t n = strlen(de->d_name);
        if (n > 5 && strcmp(de->d_name + n - 5, ".tdsl") == 0)
            files[nfiles++] = strndup(de->d_name, n - 5);
    }
    closedir(d);
    qsort(files, (size_t)nfiles, sizeof *files, cmp_str);
}

/* values the generator gives element i of a tensor named key; integers in [0, 2) so that
 * integer arguments are valid indices for every golden program */
static void fill(host_tensor *t, const char *key, uint64_t seed, int init, double a, double b, int64_t fan_in)
{
    int64_t n = host_tensor_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    ck_assert(v != NULL);
    rt_init_values(init, a, b, fan_in, seed, key, n, v);
    for (int64_t i = 0; i < n; i++)
        host_tensor_set(t, i, ir_dtype_is_float(t->dtype) ? v[i] : floor(v[i]));
    free(v);
}

START_TEST(golden_program)
{
    const char *name = files[_i];
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/%s.tdsl", GOLDEN_DIR, name);
    FILE *fp = fopen(path, "rb");
    ck_assert_msg(fp != NULL, "cannot read %s", path);
    static char text[1 << 16];
    size_t len = fread(text, 1, sizeof text - 1, fp);
    fclose(fp);
    text[len] = 0;
    src_file src = {.name = path, .text = text, .len = len};
    diag_reset(stderr);
    arena ar;
    arena_init(&ar);
    ast_file *ast = parse_file(&ar, &src);
    ck_assert_msg(ast != NULL, "%s: syntax errors", name);
    lower_opts lo = {.module_name = name};
    ir_module *m = lower_file(&ar, ast, &lo);
    ck_assert_msg(m != NULL, "%s: lowering failed", name);
    /* params exactly as <mod>_create(NULL) initializes them: seed 0 */
    host_tensor *params = calloc((size_t)m->nparams + 1, sizeof *params);
    for (int k = 0; k < m->nparams; k++) {
        const ir_param *p = &m->params[k];
        ck_assert(host_tensor_alloc(&params[k], p->dtype, p->rank, p->shape));
        fill(&params[k], p->name, 0, (int)p->init, p->a, p->b, p->rank ? p->shape[0] : 1);
    }
    engines e;
    ck_assert_msg(engines_open(&e, m, name, err, sizeof err) == 0, "%s: %s", name, err);
    for (int fi = 0; fi < m->nfuncs; fi++) {
        const ir_func *f = m->funcs[fi];
        host_tensor args[CG_MAX_CALL_BUFFERS], want[CG_MAX_CALL_BUFFERS], got[CG_MAX_CALL_BUFFERS];
        for (int a = 0; a < f->nargs; a++) {
            const ir_arg *ar_ = &f->args[a];
            ck_assert(host_tensor_alloc(&args[a], ar_->dtype, ar_->rank, ar_->shape));
            char key[300];
            snprintf(key, sizeof key, "input:%s", ar_->name);
            bool fl = ir_dtype_is_float(ar_->dtype);
            fill(&args[a], key, 1, fl ? RT_INIT_NORMAL : RT_INIT_UNIFORM, 0, fl ? 1 : 2, 1);
        }
        ir_eval_opts eo = {0};
        ck_assert_msg(ir_eval(f, args, params, want, &eo, err, sizeof err) == 0, "%s.%s: %s", name, f->name, err);
        for (int c = 0; c < 2; c++) {
            int rc = engine_call(&e.c[c], name, f, args, got, err, sizeof err);
            ck_assert_msg(rc == 0, "%s %s.%s failed: %s", e.c[c].engine, name, f->name, err);
            for (int k = 0; k < f->nouts; k++) {
                int64_t n = host_tensor_numel(&want[k]);
                for (int64_t i = 0; i < n; i++) {
                    double g = host_tensor_get(&got[k], i), w = host_tensor_get(&want[k], i);
                    bool ok = ir_dtype_is_float(want[k].dtype)
                                  ? (isnan(w) ? isnan(g) : fabs(g - w) <= 1e-5 + 1e-4 * fabs(w))
                                  : g == w;
                    ck_assert_msg(ok, "%s %s.%s output %d element %lld: got %.9g, the evaluator gives %.9g",
                                  e.c[c].engine, name, f->name, k, (long long)i, g, w);
                }
                host_tensor_free(&got[k]);
            }
        }
        for (int k = 0; k < f->nouts; k++)
            host_tensor_free(&want[k]);
        for (int a = 0; a < f->nargs; a++)
            host_tensor_free(&args[a]);
    }
    engines_close(&e);
    for (int k = 0; k < m->nparams; k++)
        host_tensor_free(&params[k]);
    free(params);
    arena_free(&ar);
}
END_TEST

START_TEST(golden_found) { ck_assert_msg(nfiles >= 10, "found %d golden programs in %s", nfiles, GOLDEN_DIR); }
END_TEST

int main(void)
{
    scan();
    Suite *s = suite_create("golden_engines");
    TCase *tc = tcase_create("corpus");
    tcase_add_test(tc, golden_found);
    suite_add_tcase(s, tc);
    for (int k = 0; k < nfiles; k++) {
        tc = tcase_create(files[k]);
        tcase_set_timeout(tc, 120);
        tcase_add_loop_test(tc, golden_program, k, k + 1);
        suite_add_tcase(s, tc);
    }
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    for (int k = 0; k < nfiles; k++)
        free(files[k]);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
