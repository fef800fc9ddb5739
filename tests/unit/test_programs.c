/* Whole programs checked against PyTorch: every tests/programs/<prog>.tdsl is parsed,
 * lowered and verified through the library, and each of its exported fns is run by the
 * reference evaluator, then compiled by the LLVM backend and called through the generated
 * C API both in-process (JIT) and as an object file in a shared library (AOT), on the inputs in tests/programs/data/<prog>.<fn>.in.<arg>.npy;
 * its results must equal <prog>.<fn>.out.<k>.npy, written by gen_reference.py with
 * PyTorch (CI has no Python: the .npy files are committed).
 *
 * Result dtypes and shapes must match exactly (so type promotion is checked too);
 * integer and bool values exactly; floats within the tolerances per dtype below. One
 * Check tcase per program, named after it, so a failure names the program, fn, output
 * and element. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "engines.h"
#include "frontend/ast.h"
#include "frontend/lower.h"
#include "ir/eval.h"
#include "tools/npy.h"

#define PROG_DIR TDSL_SOURCE_DIR "/tests/programs"
#define DATA_DIR PROG_DIR "/data"
#define MAX_PROGS 256
#define MAX_GROUPS 1024
#define MAX_OUTS 32

/* ---- tolerances: |got - want| <= atol + rtol * |want| (numpy.allclose) ----
 * f32: the evaluator computes in f64 and rounds each node to f32; PyTorch computes in
 * f32 (other summation orders), so results differ by a few ulps at most: the largest
 * difference over the corpus is 2.4e-7 absolute (a matmul), 4x inside these bounds.
 * f16: both round every op's result to f16 (PyTorch through f32); identical today,
 * two f16 ulps allowed for double rounding. f64: only summation order differs. */
typedef struct tol {
    double rtol, atol;
} tol;

/* The compiled code (--engine jit, AOT objects) computes f32 in f32, with its own
 * summation orders and polynomial exp/log/tanh/erf (docs/codegen.md): a little looser. */
static tol jit_tol(ir_dtype dt)
{
    switch (dt) {
    case DT_F64: return (tol){1e-10, 1e-12};
    case DT_F32: return (tol){1e-4, 1e-5};
    case DT_F16: return (tol){4e-3, 4e-3};
    default: return (tol){0, 0};
    }
}

static tol dtype_tol(ir_dtype dt)
{
    switch (dt) {
    case DT_F64: return (tol){1e-12, 1e-12};
    case DT_F32: return (tol){1e-5, 1e-6};
    case DT_F16: return (tol){2e-3, 2e-3};
    default: return (tol){0, 0};   /* integers and bool: exact (.npy has no bf16) */
    }
}

/* ---- discovery (in the runner, before forking) ---- */
static char *progs[MAX_PROGS];      /* program stems, sorted */
static int nprogs;
static char *groups[MAX_GROUPS];    /* "<prog>.<fn>" with a data file, sorted, distinct */
static int ngroups;
static char scan_error[256];

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* "<prog>.<fn>.in.<arg>.npy" or "<prog>.<fn>.out.<k>.npy" -> "<prog>.<fn>", else NULL */
static char *group_of(const char *file)
{
    if (!ends_with(file, ".npy"))
        return NULL;
    const char *d1 = strchr(file, '.');
    const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    if (!d2 || d1 == file || d2 == d1 + 1 || (strncmp(d2, ".in.", 4) != 0 && strncmp(d2, ".out.", 5) != 0))
        return NULL;
    return strndup(file, (size_t)(d2 - file));
}

static void scan(void)
{
    DIR *d = opendir(PROG_DIR);
    if (!d) {
        snprintf(scan_error, sizeof scan_error, "cannot open %s", PROG_DIR);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)))
        if (ends_with(e->d_name, ".tdsl") && e->d_name[0] != '.') {
            if (nprogs == MAX_PROGS) {
                snprintf(scan_error, sizeof scan_error, "more than %d programs: raise MAX_PROGS", MAX_PROGS);
                break;
            }
            progs[nprogs++] = strndup(e->d_name, strlen(e->d_name) - 5);
        }
    closedir(d);
    qsort(progs, (size_t)nprogs, sizeof *progs, cmp_str);
    d = opendir(DATA_DIR);
    if (!d) {
        snprintf(scan_error, sizeof scan_error, "cannot open %s", DATA_DIR);
        return;
    }
    while ((e = readdir(d))) {
        char *g = group_of(e->d_name);
        if (!g)
            continue;
        bool dup = false;
        for (int k = 0; k < ngroups && !dup; k++)
            dup = strcmp(groups[k], g) == 0;
        if (!dup && ngroups == MAX_GROUPS)
            snprintf(scan_error, sizeof scan_error, "more than %d fns with data: raise MAX_GROUPS", MAX_GROUPS);
        if (dup || ngroups == MAX_GROUPS)
            free(g);
        else
            groups[ngroups++] = g;
    }
    closedir(d);
    qsort(groups, (size_t)ngroups, sizeof *groups, cmp_str);
}

static bool group_in_prog(const char *group, const char *prog)
{
    size_t n = strlen(prog);
    return strncmp(group, prog, n) == 0 && group[n] == '.';
}

/* ---- files ---- */
static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = (cap + 4096) * 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

static bool file_exists(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f)
        fclose(f);
    return f != NULL;
}

/* ---- comparison ---- */
static void fmt_shape(char *buf, size_t len, const host_tensor *t)
{
    snprintf(buf, len, "%s", ir_dtype_name(t->dtype));
    size_t o = strlen(buf);
    ir_format_shape(buf + o, len - o, t->rank, t->shape);
}

/* Compares one output; on mismatch fails the test with the first bad element. */
static void compare(const char *prog, const char *fn, int k, const host_tensor *got, const host_tensor *want,
                    const char *engine)
{
    char sg[160], sw[160];
    fmt_shape(sg, sizeof sg, got);
    fmt_shape(sw, sizeof sw, want);
    bool same = got->dtype == want->dtype && got->rank == want->rank;
    for (int d = 0; same && d < got->rank; d++)
        same = got->shape[d] == want->shape[d];
    ck_assert_msg(same, "%s %s.%s output %d: got %s, PyTorch gives %s", engine, prog, fn, k, sg, sw);
    int64_t n = host_tensor_numel(want);
    tol t = strcmp(engine, "interp") != 0 ? jit_tol(want->dtype) : dtype_tol(want->dtype);
    bool fl = ir_dtype_is_float(want->dtype);
    for (int64_t i = 0; i < n; i++) {
        double g = host_tensor_get(got, i), w = host_tensor_get(want, i);
        bool ok;
        if (!fl)
            ok = g == w;   /* i32, i64 (exact in a double at these sizes) and bool */
        else if (isnan(w) || isnan(g))
            ok = isnan(w) && isnan(g);
        else if (isinf(w) || isinf(g))
            ok = g == w;
        else
            ok = fabs(g - w) <= t.atol + t.rtol * fabs(w);
        ck_assert_msg(ok, "%s %s.%s output %d %s, element %lld: got %.9g, PyTorch gives %.9g (rtol %g, atol %g)",
                      engine, prog, fn, k, sw, (long long)i, g, w, t.rtol, t.atol);
    }
}

/* ---- one program: every exported fn against its data, on one engine ---- */
static void run_fn(const char *prog, const ir_func *f, const compiled *jit)
{
    char path[1024], err[512];
    int nargs = f->nargs;
    host_tensor *args = calloc((size_t)(nargs ? nargs : 1), sizeof *args);
    ck_assert(args != NULL);
    for (int a = 0; a < nargs; a++) {
        snprintf(path, sizeof path, "%s/%s.%s.in.%s.npy", DATA_DIR, prog, f->name, f->args[a].name);
        ck_assert_msg(npy_read(path, &args[a], err, sizeof err) == 0, "%s.%s: argument '%s': %s", prog, f->name,
                      f->args[a].name, err);
    }
    host_tensor outs[MAX_OUTS];
    ck_assert_msg(f->nouts >= 1 && f->nouts <= MAX_OUTS, "%s.%s: %d outputs", prog, f->name, f->nouts);
    const char *engine = jit ? jit->engine : "interp";
    if (jit) {
        int rc = engine_call(jit, prog, f, args, outs, err, sizeof err);
        ck_assert_msg(rc == 0, "%s %s.%s: failed (%d): %s", engine, prog, f->name, rc, err);
    } else {
        ir_eval_opts opts = {.force_f64 = false};
        int rc = ir_eval(f, args, NULL, outs, &opts, err, sizeof err);
        ck_assert_msg(rc == 0, "%s.%s: evaluation failed: %s", prog, f->name, err);
    }
    for (int k = 0; k < f->nouts; k++) {
        host_tensor want;
        snprintf(path, sizeof path, "%s/%s.%s.out.%d.npy", DATA_DIR, prog, f->name, k);
        ck_assert_msg(npy_read(path, &want, err, sizeof err) == 0, "%s.%s output %d: %s", prog, f->name, k, err);
        compare(prog, f->name, k, &outs[k], &want, engine);
        host_tensor_free(&want);
    }
    /* PyTorch's mirror has exactly as many results */
    snprintf(path, sizeof path, "%s/%s.%s.out.%d.npy", DATA_DIR, prog, f->name, f->nouts);
    ck_assert_msg(!file_exists(path), "%s.%s returns %d values, but PyTorch's reference has more", prog, f->name,
                  f->nouts);
    for (int k = 0; k < f->nouts; k++)
        host_tensor_free(&outs[k]);
    for (int a = 0; a < nargs; a++)
        host_tensor_free(&args[a]);
    free(args);
}

START_TEST(run_program)
{
    const char *prog = progs[_i];
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.tdsl", PROG_DIR, prog);
    size_t len = 0;
    char *text = read_text(path, &len);
    ck_assert_msg(text != NULL, "cannot read %s", path);
    src_file src = {.name = path, .text = text, .len = len};
    diag_reset(stderr);
    arena ar;
    arena_init(&ar);
    ast_file *ast = parse_file(&ar, &src);
    ck_assert_msg(ast != NULL, "%s: syntax errors (printed above)", prog);
    lower_opts lo = {.module_name = prog};
    ir_module *m = lower_file(&ar, ast, &lo);
    ck_assert_msg(m != NULL, "%s: lowering failed (errors printed above)", prog);
    ck_assert_msg(ir_verify(m, stderr) == 0, "%s: the lowered IR does not verify", prog);
    ck_assert_msg(m->nparams == 0, "%s: programs here take everything as arguments, not params", prog);
    ck_assert_msg(m->nfuncs >= 1, "%s: no exported fn", prog);
    /* every exported fn has reference data, and all data belongs to an exported fn */
    for (int k = 0; k < m->nfuncs; k++) {
        char key[512];
        snprintf(key, sizeof key, "%s.%s", prog, m->funcs[k]->name);
        bool found = false;
        for (int g = 0; g < ngroups && !found; g++)
            found = strcmp(groups[g], key) == 0;
        ck_assert_msg(found, "%s: no reference data for fn '%s' (run gen_reference.py)", prog, m->funcs[k]->name);
    }
    for (int g = 0; g < ngroups; g++)
        if (group_in_prog(groups[g], prog))
            ck_assert_msg(ir_module_find(m, groups[g] + strlen(prog) + 1) != NULL,
                          "data %s has no exported fn in %s.tdsl", groups[g], prog);
    for (int k = 0; k < m->nfuncs; k++)
        run_fn(prog, m->funcs[k], NULL);
    /* the same programs compiled by the LLVM backend, through the generated C API */
    char err[512];
    engines e;
    ck_assert_msg(engines_open(&e, m, prog, err, sizeof err) == 0, "%s: %s", prog, err);
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < m->nfuncs; j++)
            run_fn(prog, m->funcs[j], &e.c[k]);
    engines_close(&e);
    arena_free(&ar);
    free(text);
}
END_TEST

/* The corpus is there: an empty or missing directory must fail, not pass vacuously. */
START_TEST(programs_found)
{
    ck_assert_msg(scan_error[0] == 0, "%s", scan_error);
    ck_assert_msg(nprogs > 20, "found %d programs in %s, expected more than 20", nprogs, PROG_DIR);
    ck_assert_msg(ngroups >= nprogs, "found %d fns with data in %s for %d programs", ngroups, DATA_DIR, nprogs);
    for (int g = 0; g < ngroups; g++) {
        bool owned = false;
        for (int p = 0; p < nprogs && !owned; p++)
            owned = group_in_prog(groups[g], progs[p]);
        ck_assert_msg(owned, "data for %s, but no such program in %s", groups[g], PROG_DIR);
    }
}
END_TEST

static Suite *programs_suite(void)
{
    Suite *s = suite_create("programs");
    TCase *tc = tcase_create("corpus");
    tcase_add_test(tc, programs_found);
    suite_add_tcase(s, tc);
    for (int p = 0; p < nprogs; p++) {
        tc = tcase_create(progs[p]);   /* Check keeps the name pointer: progs live to exit */
        tcase_set_timeout(tc, 60);     /* ASan builds are slower */
        tcase_add_loop_test(tc, run_program, p, p + 1);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    scan();
    SRunner *sr = srunner_create(programs_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    for (int p = 0; p < nprogs; p++)
        free(progs[p]);
    for (int g = 0; g < ngroups; g++)
        free(groups[g]);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
