/* The scatter ops (index_add, gather_add, slice_scatter: the adjoints of index, gather and
 * strided slice): their shape rules and text form, the evaluator against hand-computed
 * values, the evaluator against the compiled code (JIT and AOT, tests/unit/engines.h) on odd
 * shapes, strided and constant sources and every dtype (results must agree exactly: both
 * sum floats in f64 and round once), out-of-range indices as run-time errors in all three,
 * and the ops' own gradient rules by central differences. */
#include <check.h>
#include <math.h>
#include <tdsl/runtime.h>
#include "engines.h"
#include "ir/eval.h"
#include "passes/passes.h"

static arena ar;

static ir_module *parse(const char *text, FILE *diags)
{
    arena_free(&ar);
    arena_init(&ar);
    diag_reset(diags);
    src_file *f = arena_alloc(&ar, sizeof *f);
    f->name = "t.ir";
    f->text = arena_strdup(&ar, text);
    f->len = strlen(text);
    ir_module *m = ir_parse_module(&ar, f);
    diag_reset(NULL);
    if (m)
        ck_assert_int_eq(ir_verify(m, stderr), 0);
    return m;
}

/* parses text, expecting an error that contains needle */
static void parse_error(const char *text, const char *needle)
{
    FILE *tmp = tmpfile();
    ck_assert_ptr_nonnull(tmp);
    ir_module *m = parse(text, tmp);
    char buf[4096];
    rewind(tmp);
    size_t n = fread(buf, 1, sizeof buf - 1, tmp);
    buf[n] = 0;
    fclose(tmp);
    ck_assert_msg(m == NULL, "parsed, but expected an error '%s':\n%s", needle, text);
    ck_assert_msg(strstr(buf, needle) != NULL, "expected '%s' in:\n%s", needle, buf);
}

static char *print(const ir_module *m)
{
    char *s = NULL;
    size_t len = 0;
    FILE *o = open_memstream(&s, &len);
    ck_assert_ptr_nonnull(o);
    ir_print_module(o, m);
    fclose(o);
    return s;
}

/* ---- the functions every engine runs ---- */
/* the module, one function per string (joined by module_text) */
static const char *const MODULE[] = {
    "module sc seed=0\n"
    /* 2-D index along a middle axis, with duplicates and negative indices */
    "func ia_f32(s: f32[3, 2, 3, 5], i: i64[2, 3]) {\n"
    "  %0 = arg index=0 : f32[3, 2, 3, 5]\n"
    "  %1 = arg index=1 : i64[2, 3]\n"
    "  %2 = index_add %0, %1 axis=1 shape=[3, 4, 5] : f32[3, 4, 5]  ; @7:3\n"
    "  return %2\n"
    "}\n",
    "func ia_f64(s: f64[7, 3], i: i32[7]) {\n"
    "  %0 = arg index=0 : f64[7, 3]\n"
    "  %1 = arg index=1 : i32[7]\n"
    "  %2 = index_add %0, %1 axis=0 shape=[5, 3] : f64[5, 3]\n"
    "  return %2\n"
    "}\n",
    "func ia_f16(s: f16[2, 3, 9], i: i64[9]) {\n"
    "  %0 = arg index=0 : f16[2, 3, 9]\n"
    "  %1 = arg index=1 : i64[9]\n"
    "  %2 = index_add %0, %1 axis=2 shape=[2, 3, 6] : f16[2, 3, 6]\n"
    "  return %2\n"
    "}\n",
    /* 40 rows into 3: bf16 sums that per-add rounding would get wrong */
    "func ia_bf16(s: bf16[40, 3], i: i64[40]) {\n"
    "  %0 = arg index=0 : bf16[40, 3]\n"
    "  %1 = arg index=1 : i64[40]\n"
    "  %2 = index_add %0, %1 axis=0 shape=[3, 3] : bf16[3, 3]\n"
    "  return %2\n"
    "}\n",
    "func ia_int(s: i32[6, 2], t: i64[6], i: i64[6]) {\n"
    "  %0 = arg index=0 : i32[6, 2]\n"
    "  %1 = arg index=1 : i64[6]\n"
    "  %2 = arg index=2 : i64[6]\n"
    "  %3 = index_add %0, %2 axis=0 shape=[4, 2] : i32[4, 2]\n"
    "  %4 = index_add %1, %2 axis=0 shape=[4] : i64[4]\n"
    "  return %3, %4\n"
    "}\n",
    /* a transposed source, a constant (broadcast) source and a scalar index */
    "func ia_views(x: f32[5, 3], i: i64[5], j: i64) {\n"
    "  %0 = arg index=0 : f32[5, 3]\n"
    "  %1 = arg index=1 : i64[5]\n"
    "  %2 = arg index=2 : i64\n"
    "  %3 = permute %0 dims=[1, 0] : f32[3, 5]\n"
    "  %4 = index_add %3, %1 axis=1 shape=[3, 4] : f32[3, 4]\n"
    "  %5 = const value=1 : f32\n"
    "  %6 = expand %5 shape=[5, 2] : f32[5, 2]\n"
    "  %7 = index_add %6, %1 axis=0 shape=[4, 2] : f32[4, 2]\n"
    "  %8 = slice %0 axis=0 start=0 stop=5 step=2 : f32[3, 3]\n"
    "  %9 = select %8 axis=0 index=1 : f32[3]\n"
    "  %10 = index_add %9, %2 axis=0 shape=[2, 3] : f32[2, 3]\n"
    "  return %4, %7, %10\n"
    "}\n",
    "func ia_big(s: f32[257, 19], i: i32[257]) {\n"
    "  %0 = arg index=0 : f32[257, 19]\n"
    "  %1 = arg index=1 : i32[257]\n"
    "  %2 = index_add %0, %1 axis=0 shape=[50, 19] : f32[50, 19]\n"
    "  return %2\n"
    "}\n",
    /* an empty axis: every index is out of range */
    "func ia_empty(s: f32[2, 3], i: i64[2]) {\n"
    "  %0 = arg index=0 : f32[2, 3]\n"
    "  %1 = arg index=1 : i64[2]\n"
    "  %2 = index_add %0, %1 axis=0 shape=[0, 3] : f32[0, 3]\n"
    "  return %2\n"
    "}\n",
    "func ga_f32(s: f32[5, 2], i: i64[5, 2]) {\n"
    "  %0 = arg index=0 : f32[5, 2]\n"
    "  %1 = arg index=1 : i64[5, 2]\n"
    "  %2 = gather_add %0, %1 axis=0 shape=[4, 3] : f32[4, 3]  ; @9:4\n"
    "  return %2\n"
    "}\n",
    "func ga_f64(s: f64[2, 6], i: i32[2, 6]) {\n"
    "  %0 = arg index=0 : f64[2, 6]\n"
    "  %1 = arg index=1 : i32[2, 6]\n"
    "  %2 = gather_add %0, %1 axis=1 shape=[3, 4] : f64[3, 4]\n"
    "  return %2\n"
    "}\n",
    "func ga_f16(s: f16[2, 2, 5], i: i64[2, 2, 5]) {\n"
    "  %0 = arg index=0 : f16[2, 2, 5]\n"
    "  %1 = arg index=1 : i64[2, 2, 5]\n"
    "  %2 = gather_add %0, %1 axis=2 shape=[2, 3, 4] : f16[2, 3, 4]\n"
    "  return %2\n"
    "}\n",
    "func ga_bf16(s: bf16[30, 2], i: i64[30, 2]) {\n"
    "  %0 = arg index=0 : bf16[30, 2]\n"
    "  %1 = arg index=1 : i64[30, 2]\n"
    "  %2 = gather_add %0, %1 axis=0 shape=[3, 2] : bf16[3, 2]\n"
    "  return %2\n"
    "}\n",
    "func ga_other(s: i64[3, 2], x: f32[4, 3], i: i64[3, 2]) {\n"
    "  %0 = arg index=0 : i64[3, 2]\n"
    "  %1 = arg index=1 : f32[4, 3]\n"
    "  %2 = arg index=2 : i64[3, 2]\n"
    "  %3 = gather_add %0, %2 axis=0 shape=[3, 3] : i64[3, 3]\n"
    "  %4 = permute %1 dims=[1, 0] : f32[3, 4]\n"
    "  %5 = slice %4 axis=1 start=0 stop=2 step=1 : f32[3, 2]\n"
    "  %6 = gather_add %5, %2 axis=0 shape=[3, 5] : f32[3, 5]\n"
    "  return %3, %6\n"
    "}\n",
    "func ss_f32(s: f32[3, 3]) {\n"
    "  %0 = arg index=0 : f32[3, 3]\n"
    "  %1 = slice_scatter %0 axis=0 start=1 stop=7 step=2 shape=[7, 3] : f32[7, 3]\n"
    "  return %1\n"
    "}\n",
    "func ss_f64(s: f64[2, 4]) {\n"
    "  %0 = arg index=0 : f64[2, 4]\n"
    "  %1 = slice_scatter %0 axis=1 start=0 stop=10 step=3 shape=[2, 10] : f64[2, 10]\n"
    "  return %1\n"
    "}\n",
    "func ss_half(s: f16[2, 3, 3], t: bf16[2, 2]) {\n"
    "  %0 = arg index=0 : f16[2, 3, 3]\n"
    "  %1 = arg index=1 : bf16[2, 2]\n"
    "  %2 = slice_scatter %0 axis=2 start=2 stop=5 step=1 shape=[2, 3, 8] : f16[2, 3, 8]\n"
    "  %3 = slice_scatter %1 axis=0 start=3 stop=9 step=5 shape=[9, 2] : bf16[9, 2]\n"
    "  return %2, %3\n"
    "}\n",
    "func ss_other(s: i32[2, 3], x: f32[6, 4]) {\n"
    "  %0 = arg index=0 : i32[2, 3]\n"
    "  %1 = slice_scatter %0 axis=1 start=1 stop=8 step=3 shape=[2, 8] : i32[2, 8]\n"
    "  %2 = arg index=1 : f32[6, 4]\n"
    "  %3 = permute %2 dims=[1, 0] : f32[4, 6]\n"
    "  %4 = slice_scatter %3 axis=0 start=0 stop=10 step=3 shape=[11, 6] : f32[11, 6]\n"
    "  %5 = const value=2.5 : f32\n"
    "  %6 = expand %5 shape=[0, 6] : f32[0, 6]\n"
    "  %7 = slice_scatter %6 axis=0 start=4 stop=4 step=5 shape=[5, 6] : f32[5, 6]\n"
    "  %8 = expand %5 shape=[2, 6] : f32[2, 6]\n"
    "  %9 = slice_scatter %8 axis=0 start=1 stop=5 step=2 shape=[5, 6] : f32[5, 6]\n"
    "  return %1, %4, %7, %9\n"
    "}\n",
    "func ss_big(s: f32[100, 33]) {\n"
    "  %0 = arg index=0 : f32[100, 33]\n"
    "  %1 = slice_scatter %0 axis=0 start=2 stop=300 step=3 shape=[300, 33] : f32[300, 33]\n"
    "  return %1\n"
    "}\n",
};

static const char *module_text(void)
{
    static char *t;
    if (t)
        return t;
    size_t n = 1;
    for (size_t k = 0; k < sizeof MODULE / sizeof *MODULE; k++)
        n += strlen(MODULE[k]);
    t = calloc(1, n);
    ck_assert_ptr_nonnull(t);
    for (size_t k = 0; k < sizeof MODULE / sizeof *MODULE; k++)
        strcat(t, MODULE[k]);
    return t;
}

/* index values per function (cycled), for integer args whose name starts with 'i' or 'j' */
typedef struct icase {
    const char *fn;
    int64_t idx[16];
    int nidx;
} icase;

static const icase CASES[] = {
    {"ia_f32", {0, 3, -1, 3, 0, -4}, 6},
    {"ia_f64", {4, 0, -5, 2, 2, -1, 0}, 7},
    {"ia_f16", {5, 0, 0, -6, 3, 5, -1, 2, 2}, 9},
    {"ia_bf16", {0, 1, 1, 2, 0, -1, 1}, 7},
    {"ia_int", {3, 0, -1, 3, 1, 0}, 6},
    {"ia_views", {1, -1, 0, 0, 2}, 5},
    {"ia_big", {7, -3, 49, 0, 12, -50, 31, 7, 7, 25, 44}, 11},
    {"ga_f32", {3, 0, 1, 3, 3, 0, 2, 2, 0, 1}, 10},
    {"ga_f64", {0, 3, 3, 1, 2, 0, 1, 1, 3, 0, 2, 2}, 12},
    {"ga_f16", {3, 0, 1, 1, 2, 0, 0, 3}, 8},
    {"ga_bf16", {0, 2, 1, 1, 2, 0, 2}, 7},
    {"ga_other", {2, 0, 0, 1, 2, 2}, 6},
    {"ss_f32", {0}, 1},
    {"ss_f64", {0}, 1},
    {"ss_half", {0}, 1},
    {"ss_other", {0}, 1},
    {"ss_big", {0}, 1},
};

static void fill_args(const ir_func *f, host_tensor *args, const int64_t *idx, int nidx)
{
    for (int a = 0; a < f->nargs; a++) {
        const ir_arg *g = &f->args[a];
        ck_assert(host_tensor_alloc(&args[a], g->dtype, g->rank, g->shape));
        bool is_index = g->name[0] == 'i' || g->name[0] == 'j';
        for (int64_t k = 0; k < host_tensor_numel(&args[a]); k++) {
            double v;
            if (!ir_dtype_is_float(g->dtype))
                v = is_index ? (double)idx[k % nidx] : (double)((k * 7 + a * 5) % 23 - 11);
            else   /* varied magnitudes so that f16/bf16 sums round */
                v = sin((double)k * 1.37 + a) * (1.0 + (double)(k % 7) * 3.1);
            host_tensor_set(&args[a], k, v);
        }
    }
}

static bool same_value(double g, double w) { return (isnan(g) && isnan(w)) || g == w; }

START_TEST(engines_agree_with_the_evaluator)
{
    const icase *c = &CASES[_i];
    ir_module *m = parse(module_text(), stderr);
    ck_assert_ptr_nonnull(m);
    ir_func *f = ir_module_find(m, c->fn);
    ck_assert_ptr_nonnull(f);
    host_tensor args[8], want[8], got[8];
    fill_args(f, args, c->idx, c->nidx);
    char err[512];
    ck_assert_msg(ir_eval(f, args, NULL, want, &(ir_eval_opts){0}, err, sizeof err) == 0, "%s: %s", c->fn, err);
    engines e;
    ck_assert_msg(engines_open(&e, m, "sc", err, sizeof err) == 0, "%s", err);
    for (int k = 0; k < 2; k++) {
        int rc = engine_call(&e.c[k], "sc", f, args, got, err, sizeof err);
        ck_assert_msg(rc == 0, "%s %s: %s", e.c[k].engine, c->fn, err);
        for (int o = 0; o < f->nouts; o++) {
            ck_assert_int_eq(got[o].dtype, want[o].dtype);
            for (int64_t i = 0; i < host_tensor_numel(&want[o]); i++) {
                double g = host_tensor_get(&got[o], i), w = host_tensor_get(&want[o], i);
                ck_assert_msg(same_value(g, w), "%s %s output %d element %lld: %.9g, the evaluator gives %.9g",
                              e.c[k].engine, c->fn, o, (long long)i, g, w);
            }
            host_tensor_free(&got[o]);
        }
    }
    engines_close(&e);
    for (int o = 0; o < f->nouts; o++)
        host_tensor_free(&want[o]);
    for (int a = 0; a < f->nargs; a++)
        host_tensor_free(&args[a]);
}
END_TEST

/* fn with these indices fails in the evaluator and both engines with the same message */
static void expect_failure(ir_module *m, engines *e, const char *fn, const int64_t *idx, int nidx, const char *msg)
{
    ir_func *f = ir_module_find(m, fn);
    ck_assert_ptr_nonnull(f);
    host_tensor args[8], outs[8];
    fill_args(f, args, idx, nidx);
    char err[512], err2[512];
    ck_assert_int_ne(ir_eval(f, args, NULL, outs, &(ir_eval_opts){0}, err, sizeof err), 0);
    ck_assert_msg(strcmp(err, msg) == 0, "evaluator: '%s', expected '%s'", err, msg);
    for (int k = 0; k < 2; k++) {
        int rc = engine_call(&e->c[k], "sc", f, args, outs, err2, sizeof err2);
        ck_assert_int_eq(rc, TDSL_ERR_RUNTIME);
        ck_assert_msg(strstr(err2, msg) != NULL, "%s: '%s', expected '%s'", e->c[k].engine, err2, msg);
        for (int o = 0; o < f->nouts; o++)
            host_tensor_free(&outs[o]);
    }
    for (int a = 0; a < f->nargs; a++)
        host_tensor_free(&args[a]);
}

START_TEST(out_of_range_indices_fail_everywhere)
{
    ir_module *m = parse(module_text(), stderr);
    ck_assert_ptr_nonnull(m);
    engines e;
    char err[512];
    ck_assert_msg(engines_open(&e, m, "sc", err, sizeof err) == 0, "%s", err);
    /* index_add wraps one negative turn, no more */
    expect_failure(m, &e, "ia_f32", (int64_t[]){0, 3, -1, 4, 0, 0}, 6,
                   "7:3: index 4 out of range for axis 1 of size 4 (in ia_f32, node %2 index_add)");
    expect_failure(m, &e, "ia_f32", (int64_t[]){0, -5}, 2,
                   "7:3: index -5 out of range for axis 1 of size 4 (in ia_f32, node %2 index_add)");
    expect_failure(m, &e, "ia_f64", (int64_t[]){0, 1, 2, 3, 4, 5, 0}, 7,
                   "index 5 out of range for axis 0 of size 5 (in ia_f64, node %2 index_add)");
    expect_failure(m, &e, "ia_bf16", (int64_t[]){0, 1, 2, 1000000}, 4,
                   "index 1000000 out of range for axis 0 of size 3 (in ia_bf16, node %2 index_add)");
    expect_failure(m, &e, "ia_empty", (int64_t[]){0}, 1,
                   "index 0 out of range for axis 0 of size 0 (in ia_empty, node %2 index_add)");
    /* gather_add does not wrap, like gather */
    expect_failure(m, &e, "ga_f32", (int64_t[]){0, 1, -1}, 3,
                   "9:4: index -1 out of range for axis 0 of size 4 (in ga_f32, node %2 gather_add)");
    expect_failure(m, &e, "ga_f64", (int64_t[]){0, 1, 2, 3, 4}, 5,
                   "index 4 out of range for axis 1 of size 4 (in ga_f64, node %2 gather_add)");
    engines_close(&e);
}
END_TEST

/* the evaluator against values worked out by hand */
START_TEST(evaluator_values)
{
    ir_module *m = parse(module_text(), stderr);
    ck_assert_ptr_nonnull(m);
    char err[256];
    /* ia_int: rows of s (i32[6, 2]: (k*7 % 23) - 11) into 4 rows at 3, 0, 3, 3, 1, 0 */
    ir_func *f = ir_module_find(m, "ia_int");
    host_tensor args[3], outs[2];
    fill_args(f, args, (int64_t[]){3, 0, -1, 3, 1, 0}, 6);
    ck_assert_int_eq(ir_eval(f, args, NULL, outs, &(ir_eval_opts){0}, err, sizeof err), 0);
    int64_t want[4][2] = {{0}};
    int64_t rows[6] = {3, 0, 3, 3, 1, 0};
    for (int r = 0; r < 6; r++)
        for (int c = 0; c < 2; c++)
            want[rows[r]][c] += host_tensor_get(&args[0], r * 2 + c);
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq((int64_t)host_tensor_get(&outs[0], i), want[i / 2][i % 2]);
    ck_assert_double_eq(host_tensor_get(&outs[1], 2), 0);   /* no index names row 2 */
    for (int k = 0; k < 2; k++)
        host_tensor_free(&outs[k]);
    for (int k = 0; k < 3; k++)
        host_tensor_free(&args[k]);
    /* ia_views: the constant source counts how often each row is named (1, -1 -> 3, 0, 0, 2);
     * the scalar index j = 1 puts row 2 of x (a strided select) in row 1 */
    f = ir_module_find(m, "ia_views");
    host_tensor a3[3], o3[3];
    fill_args(f, a3, (int64_t[]){1, -1, 0, 0, 2}, 5);
    ck_assert_int_eq(ir_eval(f, a3, NULL, o3, &(ir_eval_opts){0}, err, sizeof err), 0);
    double counts[4] = {2, 1, 1, 1};
    for (int i = 0; i < 8; i++)
        ck_assert_double_eq(host_tensor_get(&o3[1], i), counts[i / 2]);
    for (int c = 0; c < 3; c++) {
        ck_assert_double_eq(host_tensor_get(&o3[2], c), 0);
        ck_assert_double_eq(host_tensor_get(&o3[2], 3 + c), host_tensor_get(&a3[0], 2 * 3 + c));
    }
    for (int k = 0; k < 3; k++)
        host_tensor_free(&o3[k]);
    for (int k = 0; k < 3; k++)
        host_tensor_free(&a3[k]);
    /* ss_f64: s[r][k] lands at column 3k; the rest is zero */
    f = ir_module_find(m, "ss_f64");
    host_tensor s, o;
    fill_args(f, &s, NULL, 1);
    ck_assert_int_eq(ir_eval(f, &s, NULL, &o, &(ir_eval_opts){0}, err, sizeof err), 0);
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < 10; c++)
            ck_assert_double_eq(host_tensor_get(&o, r * 10 + c), c % 3 ? 0.0 : host_tensor_get(&s, r * 4 + c / 3));
    host_tensor_free(&o);
    host_tensor_free(&s);
}
END_TEST

START_TEST(text_form_and_shape_rules)
{
    /* prints and parses back to the same text */
    ir_module *m = parse(module_text(), stderr);
    ck_assert_ptr_nonnull(m);
    char *t1 = print(m);
    ck_assert_ptr_nonnull(strstr(t1, "index_add %0, %1 axis=1 shape=[3, 4, 5] : f32[3, 4, 5]"));
    ck_assert_ptr_nonnull(strstr(t1, "slice_scatter %0 axis=0 start=1 stop=7 step=2 shape=[7, 3] : f32[7, 3]"));
    ir_module *m2 = parse(t1, stderr);
    ck_assert_ptr_nonnull(m2);
    char *t2 = print(m2);
    ck_assert_str_eq(t1, t2);
    free(t1);
    free(t2);
    /* malformed nodes are rejected with a reason */
    const char *head = "module e\nfunc f(s: f32[3, 2], i: i64[3], b: bool[3, 2], x: f32[3], k: i64[2, 2]) {\n"
                       "  %0 = arg index=0 : f32[3, 2]\n  %1 = arg index=1 : i64[3]\n"
                       "  %2 = arg index=2 : bool[3, 2]\n  %3 = arg index=3 : f32[3]\n"
                       "  %4 = arg index=4 : i64[2, 2]\n";
    static const char *bad[][2] = {
        {"index_add %0, %1 axis=0 shape=[4, 3] : f32[4, 3]", "source of shape [3, 2] does not fit"},
        {"index_add %0, %1 axis=2 shape=[4, 2] : f32[4, 2]", "axis 2 out of range for rank 2"},
        {"index_add %0, %3 axis=0 shape=[4, 2] : f32[4, 2]", "indices must be i32 or i64, got f32"},
        {"index_add %2, %1 axis=0 shape=[4, 2] : bool[4, 2]", "does not take bool inputs"},
        {"index_add %0, %1 axis=0 shape=[-4, 2] : f32[4, 2]", "negative dimension"},
        {"gather_add %0, %1 axis=0 shape=[4, 2] : f32[4, 2]", "index must have the rank of the result (2), got 1"},
        {"gather_add %0, %4 axis=0 shape=[4, 2] : f32[4, 2]", "source of shape [3, 2] does not fit the index (expected [2, 2])"},
        {"gather_add %0, %4 axis=1 shape=[1, 2] : f32[1, 2]", "index size 2 exceeds result size 1 in dimension 0"},
        {"slice_scatter %0 axis=0 start=0 stop=6 step=0 shape=[6, 2] : f32[6, 2]", "step must be positive"},
        {"slice_scatter %0 axis=0 start=0 stop=7 step=2 shape=[6, 2] : f32[6, 2]", "0 <= start <= stop <= 6"},
        {"slice_scatter %0 axis=0 start=0 stop=6 step=3 shape=[6, 2] : f32[6, 2]", "source of shape [3, 2] does not fit the slice (expected [2, 2])"},
        {"slice_scatter %0 axis=1 start=0 stop=2 step=1 shape=[6, 2] : f32[6, 2]", "expected [6, 2]"},
        {"index_add %0, %1 axis=0 shape=[4, 2] : f32[5, 2]", "does not match"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        char text[1024];
        snprintf(text, sizeof text, "%s  %%5 = %s\n  return %%5\n}\n", head, bad[k][0]);
        parse_error(text, bad[k][1]);
    }
}
END_TEST

/* ---- gradients of the scatters themselves (their rules use index, gather, slice) ---- */
static void gradcheck_ir(const char *text, const int64_t *idx, int nidx)
{
    ir_module *m = parse(text, stderr);
    ck_assert_ptr_nonnull(m);
    ir_func *f = m->funcs[0];
    pass_wrt w = {false, 0};
    bool indep;
    int line, col;
    char err[512];
    ir_func *g = pass_autodiff(f, "g", 1, &w, &indep, &line, &col, err, sizeof err);
    ck_assert_msg(g != NULL, "%s", err);
    ck_assert(!indep);
    ck_assert_int_eq(ir_verify(m, stderr), 0);
    host_tensor args[4];
    fill_args(g, args, idx, nidx);
    pass_gradcheck_row row;
    ck_assert_msg(pass_gradcheck(g, args, NULL, 1e-6, 1e-5, 1e-7, &row, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(row.ok, "%s: max abs err %g\n%s", row.name, row.max_abs, text);
    for (int a = 0; a < g->nargs; a++)
        host_tensor_free(&args[a]);
}

START_TEST(scatter_gradients)
{
    /* loss = sum(y * y * c) with y the scatter: dy is not uniform */
    gradcheck_ir("module g\nfunc f(s: f32[2, 5, 3], i: i64[5]) {\n"
                 "  %0 = arg index=0 : f32[2, 5, 3]\n  %1 = arg index=1 : i64[5]\n"
                 "  %2 = index_add %0, %1 axis=1 shape=[2, 4, 3] : f32[2, 4, 3]\n"
                 "  %3 = mul %2, %2 : f32[2, 4, 3]\n"
                 "  %4 = sum %3 axes=[0, 1, 2] keepdim=0 : f32\n  return %4\n}\n",
                 (int64_t[]){3, 0, -1, 1, 0}, 5);
    gradcheck_ir("module g\nfunc f(s: f64[3, 2], i: i32[3, 2]) {\n"
                 "  %0 = arg index=0 : f64[3, 2]\n  %1 = arg index=1 : i32[3, 2]\n"
                 "  %2 = gather_add %0, %1 axis=1 shape=[4, 3] : f64[4, 3]\n"
                 "  %3 = mul %2, %2 : f64[4, 3]\n"
                 "  %4 = sum %3 axes=[0, 1] keepdim=0 : f64\n  return %4\n}\n",
                 (int64_t[]){2, 2, 0, 1, 1, 0}, 6);
    gradcheck_ir("module g\nfunc f(s: f32[2, 3]) {\n"
                 "  %0 = arg index=0 : f32[2, 3]\n"
                 "  %1 = slice_scatter %0 axis=1 start=1 stop=8 step=3 shape=[2, 8] : f32[2, 8]\n"
                 "  %2 = mul %1, %1 : f32[2, 8]\n"
                 "  %3 = sum %2 axes=[0, 1] keepdim=0 : f32\n  return %3\n}\n",
                 NULL, 1);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("scatter_ops");
    TCase *tc = tcase_create("engines");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, engines_agree_with_the_evaluator, 0, (int)(sizeof CASES / sizeof *CASES));
    tcase_add_test(tc, out_of_range_indices_fail_everywhere);
    suite_add_tcase(s, tc);
    TCase *te = tcase_create("eval");
    tcase_add_test(te, evaluator_values);
    tcase_add_test(te, text_form_and_shape_rules);
    tcase_add_test(te, scatter_gradients);
    suite_add_tcase(s, te);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
