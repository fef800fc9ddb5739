/* Unit tests for the LLVM backend's module level (codegen/llvm_module.c, llvm_jit.c,
 * llvm_copy.c): modules built from .tdsl source or text IR, compiled, run in the JIT
 * through the generated C interface (`<mod>_create`, `<mod>_<fn>`, ...) and compared with
 * the reference evaluator (ir/eval.h) on the same inputs and the instance's own params.
 * Views and copy-outs are bit copies, so those results must be identical. Also: object
 * files and their symbols, IR and assembly dumps, -O0..-O3, CPUs, NULL pointers. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "codegen/llvm_internal.h"
#include "frontend/ast.h"
#include "frontend/lower.h"
#include "ir/eval.h"

static arena ar;
static char err[512];

static void setup(void) { arena_init(&ar); }
static void teardown(void) { arena_free(&ar); }

static ir_module *from_source(const char *name, const char *text)
{
    src_file sf = {arena_printf(&ar, "%s.tdsl", name), text, strlen(text)};
    ast_file *ast = parse_file(&ar, &sf);
    ck_assert_msg(ast != NULL, "parse failed");
    lower_opts lo = {.module_name = name};
    ir_module *m = lower_file(&ar, ast, &lo);
    ck_assert_msg(m != NULL, "lowering failed");
    ck_assert_int_eq(ir_verify(m, stderr), 0);
    return m;
}

static ir_module *from_ir(const char *text)
{
    src_file sf = {"test.ir", text, strlen(text)};
    ir_module *m = ir_parse_module(&ar, &sf);
    ck_assert_msg(m != NULL, "IR parse failed");
    ck_assert_int_eq(ir_verify(m, stderr), 0);
    return m;
}

static cg_jit *jit_of(const ir_module *m, const char *cpu, int opt)
{
    cg_options o = {.cpu = cpu, .opt_level = opt};
    cg_llvm *cg = cg_llvm_build(m, &o, err, sizeof err);
    ck_assert_msg(cg != NULL, "build: %s", err);
    cg_jit *j = cg_jit_create(cg, err, sizeof err);
    ck_assert_msg(j != NULL, "jit: %s", err);
    cg_llvm_free(cg);   /* the JIT must outlive the builder */
    return j;
}

/* ---- calling generated code (object pointers to function pointers via memcpy: ISO C) ---- */
typedef void *(*create_fn)(const tdsl_options *);
typedef void (*destroy_fn)(void *);
typedef const char *(*error_fn)(const void *);
typedef int (*io_fn)(void *, const char *);
typedef int (*count_fn)(void);
typedef tdsl_tensor (*param_fn)(void *, int);

#define SYM(j, T, var, ...)                                                        \
    T var;                                                                         \
    do {                                                                           \
        char name_[128];                                                           \
        snprintf(name_, sizeof name_, __VA_ARGS__);                                \
        void *p_ = cg_jit_lookup(j, name_);                                        \
        ck_assert_msg(p_ != NULL, "symbol %s not found", name_);                   \
        memcpy(&var, &p_, sizeof var);                                             \
    } while (0)

static int call_export(void *fp, void *inst, void **p, int n)
{
    typedef int (*f0)(void *);
    typedef int (*f1)(void *, void *);
    typedef int (*f2)(void *, void *, void *);
    typedef int (*f3)(void *, void *, void *, void *);
    typedef int (*f4)(void *, void *, void *, void *, void *);
    typedef int (*f5)(void *, void *, void *, void *, void *, void *);
    typedef int (*f6)(void *, void *, void *, void *, void *, void *, void *);
    typedef int (*f7)(void *, void *, void *, void *, void *, void *, void *, void *);
    switch (n) {
    case 0: { f0 f_; memcpy(&f_, &fp, sizeof f_); return f_(inst); }
    case 1: { f1 f_; memcpy(&f_, &fp, sizeof f_); return f_(inst, p[0]); }
    case 2: { f2 f_; memcpy(&f_, &fp, sizeof f_); return f_(inst, p[0], p[1]); }
    case 3: { f3 f_; memcpy(&f_, &fp, sizeof f_); return f_(inst, p[0], p[1], p[2]); }
    case 4: { f4 f_; memcpy(&f_, &fp, sizeof f_); return f_(inst, p[0], p[1], p[2], p[3]); }
    case 5: { f5 f_; memcpy(&f_, &fp, sizeof f_); return f_(inst, p[0], p[1], p[2], p[3], p[4]); }
    case 6: { f6 f_; memcpy(&f_, &fp, sizeof f_); return f_(inst, p[0], p[1], p[2], p[3], p[4], p[5]); }
    case 7: { f7 f_; memcpy(&f_, &fp, sizeof f_); return f_(inst, p[0], p[1], p[2], p[3], p[4], p[5], p[6]); }
    default: ck_abort_msg("too many pointers: %d", n); return -1;
    }
}

/* deterministic, varied inputs (negative, fractional, large) */
static void fill_input(host_tensor *t, int salt)
{
    int64_t n = host_tensor_numel(t);
    for (int64_t k = 0; k < n; k++) {
        int64_t h = (k * 7919 + salt * 104729) % 1009;
        double v = t->dtype == DT_BOOL ? (double)(h % 3 == 0)
                 : ir_dtype_is_float(t->dtype) ? (double)(h - 504) / 37.0
                 : (double)(h - 504) * (t->dtype == DT_I64 ? 1e9 : 1e5) / 3;
        host_tensor_set(t, k, v);
    }
}

/* Runs export `fn` of module `m` through the JIT and through ir_eval on the same inputs and
 * the instance's params. tol 0: bit-identical storage; else |got-want| <= tol*(1+|want|). */
static void diff_export(cg_jit *j, const ir_module *m, const char *fn, double tol)
{
    const ir_func *f = ir_module_find(m, fn);
    ck_assert_msg(f != NULL, "no fn %s", fn);
    SYM(j, create_fn, create, "%s_create", m->name);
    SYM(j, destroy_fn, destroy, "%s_destroy", m->name);
    SYM(j, error_fn, error, "%s_error", m->name);
    SYM(j, param_fn, param, "%s_param", m->name);
    char ename[128];
    snprintf(ename, sizeof ename, "%s_%s", m->name, fn);
    void *efn = cg_jit_lookup(j, ename);
    ck_assert_msg(efn != NULL, "no symbol %s", ename);

    void *inst = create(NULL);
    ck_assert(inst != NULL);
    host_tensor args[8], params[16], want[8], got[8];
    ck_assert(f->nargs <= 8 && f->nouts <= 8 && m->nparams <= 16);
    void *ptrs[16];
    for (int a = 0; a < f->nargs; a++) {
        ck_assert(host_tensor_alloc(&args[a], f->args[a].dtype, f->args[a].rank, f->args[a].shape));
        fill_input(&args[a], a + 1);
        ptrs[a] = args[a].data ? args[a].data : (void *)&args[a];   /* empty: any non-NULL pointer */
    }
    for (int i = 0; i < m->nparams; i++) {
        tdsl_tensor t = param(inst, i);
        ck_assert_msg(t.data != NULL, "param %d has no data", i);
        ck_assert(host_tensor_alloc(&params[i], (ir_dtype)t.dtype, t.rank, t.shape));
        memcpy(params[i].data, t.data, host_tensor_bytes(&params[i]));
    }
    int rc = ir_eval(f, args, params, want, NULL, err, sizeof err);
    ck_assert_msg(rc == 0, "ir_eval: %s", err);
    for (int o = 0; o < f->nouts; o++) {
        ck_assert(host_tensor_alloc(&got[o], want[o].dtype, want[o].rank, want[o].shape));
        memset(got[o].data, 0xAB, host_tensor_bytes(&got[o]));   /* unwritten elements show */
        ptrs[f->nargs + o] = got[o].data ? got[o].data : (void *)&got[o];
    }
    rc = call_export(efn, inst, ptrs, f->nargs + f->nouts);
    ck_assert_msg(rc == 0, "%s returned %d: %s", ename, rc, error(inst));
    ck_assert_str_eq(error(inst), "");
    for (int o = 0; o < f->nouts; o++) {
        int64_t n = host_tensor_numel(&want[o]);
        if (tol == 0 || !ir_dtype_is_float(want[o].dtype)) {
            for (int64_t k = 0; k < n; k++) {
                size_t es = ir_dtype_size(want[o].dtype);
                ck_assert_msg(!memcmp((char *)got[o].data + k * es, (char *)want[o].data + k * es, es),
                              "%s out %d [%lld]: got %.9g, want %.9g", ename, o, (long long)k,
                              host_tensor_get(&got[o], k), host_tensor_get(&want[o], k));
            }
        } else {
            for (int64_t k = 0; k < n; k++) {
                double g = host_tensor_get(&got[o], k), w = host_tensor_get(&want[o], k);
                ck_assert_msg(fabs(g - w) <= tol * (1 + fabs(w)) || (isnan(g) && isnan(w)),
                              "%s out %d [%lld]: got %.9g, want %.9g", ename, o, (long long)k, g, w);
            }
        }
        host_tensor_free(&got[o]);
        host_tensor_free(&want[o]);
    }
    for (int a = 0; a < f->nargs; a++)
        host_tensor_free(&args[a]);
    for (int i = 0; i < m->nparams; i++)
        host_tensor_free(&params[i]);
    destroy(inst);
}

static void diff_all(cg_jit *j, const ir_module *m, double tol)
{
    for (int i = 0; i < m->nfuncs; i++)
        diff_export(j, m, m->funcs[i]->name, tol);
}

/* ---- programs ---- */
static const char *VIEWS_SRC =
    "param W: f32[2, 3] = normal(0, 1)\n"
    "param b: f32[3] = full(0.5)\n"
    "export fn tr(x: f32[3, 4]) -> f32[4, 3] { return x.T }\n"
    "export fn sl(x: f32[5, 6]) -> f32[2, 3] { return x[1:3, ::2] }\n"
    "export fn cst() -> f32 { return 2.5 }\n"
    "export fn ident(x: i32[3]) -> i32[3] { return x }\n"
    "export fn two(x: f64[2, 2]) -> (f64[2], f64[2, 2]) { return x[:, 1], x }\n"
    "export fn bc(x: f16[4]) -> f16[3, 4] { return x.expand(3, 4) }\n"
    "export fn pw() -> f32[2, 3] { return W }\n"
    "export fn perm(x: i64[2, 3, 4]) -> i64[4, 2, 3] { return x.permute(2, 0, 1) }\n"
    "export fn elem(x: bf16[2, 3]) -> bf16 { return x[1, 2] }\n"
    "export fn mask(x: bool[4, 5]) -> bool[2, 5] { return x[1::2] }\n"
    "export fn empty(x: f32[0, 3]) -> f32[3, 0] { return x.T }\n"
    "export fn wide(x: f32[64, 100]) -> (f32[64, 96], f32[32, 34], f32[100, 64]) {\n"
    "    return x[:, 3:99], x[::2, ::3], x.T\n"
    "}\n";

/* const-backed outputs, an output returned twice, a view of a kernel result */
static const char *CONST_IR =
    "module cir seed=0\n"
    "\n"
    "func fill() {\n"
    "  %0 = const value=2.5 : f32\n"
    "  %1 = expand %0 shape=[2, 3] : f32[2, 3]\n"
    "  return %1\n"
    "}\n"
    "\n"
    "func ints() {\n"
    "  %0 = const value=-7 : i64\n"
    "  %1 = unsqueeze %0 axis=0 : i64[1]\n"
    "  %2 = expand %1 shape=[5] : i64[5]\n"
    "  %3 = const value=1 : bool\n"
    "  %4 = const value=0.1 : f16\n"
    "  %5 = unsqueeze %4 axis=0 : f16[1]\n"
    "  %6 = expand %5 shape=[3] : f16[3]\n"
    "  return %2, %3, %6\n"
    "}\n"
    "\n"
    "func twice(x: f32[3]) {\n"
    "  %0 = arg index=0 : f32[3]\n"
    "  %1 = neg %0 : f32[3]\n"
    "  return %1, %1, %0\n"
    "}\n";

/* kernels reading args, params and consts, writing arena, outputs in place, copied views */
static const char *KERNELS_SRC =
    "param b: f32[3] = uniform(-1, 1)\n"
    "export fn lin(x: f32[2, 3]) -> (f32[2, 3], f32[3, 2]) {\n"
    "    y = -x\n"
    "    z = y + b\n"
    "    return z, (z * 2.0).T\n"
    "}\n"
    "export fn chain(x: f32[4, 5], w: f32[5, 4]) -> f32[4, 5] {\n"
    "    return (x + w.T) * x - full([4, 5], 1.5)\n"
    "}\n";

START_TEST(views_match_evaluator)
{
    ir_module *m = from_source("v", VIEWS_SRC);
    cg_jit *j = jit_of(m, "native", 3);
    diff_all(j, m, 0);
    cg_jit_free(j);
}
END_TEST

START_TEST(consts_and_repeated_outputs)
{
    ir_module *m = from_ir(CONST_IR);
    cg_jit *j = jit_of(m, "native", 3);
    diff_all(j, m, 0);
    /* the values themselves, not only agreement */
    SYM(j, create_fn, create, "cir_create");
    SYM(j, destroy_fn, destroy, "cir_destroy");
    void *inst = create(NULL);
    float f[6] = {0};
    void *pf[] = {f};
    ck_assert_int_eq(call_export(cg_jit_lookup(j, "cir_fill"), inst, pf, 1), 0);
    for (int k = 0; k < 6; k++)
        ck_assert(f[k] == 2.5f);
    int64_t l[5];
    uint8_t bl = 7;
    uint16_t h[3];
    void *pi[] = {l, &bl, h};
    ck_assert_int_eq(call_export(cg_jit_lookup(j, "cir_ints"), inst, pi, 3), 0);
    for (int k = 0; k < 5; k++)
        ck_assert_int_eq(l[k], -7);
    ck_assert_int_eq(bl, 1);
    ck_assert_int_eq(h[2], f32_to_f16(0.1f));
    destroy(inst);
    cg_jit_free(j);
}
END_TEST

START_TEST(kernels_args_params_arena)
{
    ir_module *m = from_source("k", KERNELS_SRC);
    cg_jit *j = jit_of(m, "native", 3);
    diff_all(j, m, 1e-6);
    cg_jit_free(j);
}
END_TEST

/* every CPU flavour and optimization level gives the same results */
START_TEST(cpus_and_opt_levels)
{
    static const char *cpus[] = {"native", "x86-64-v3", "x86-64-v4", "x86-64"};
    ir_module *v = from_source("v", VIEWS_SRC);
    ir_module *k = from_source("k", KERNELS_SRC);
    for (size_t c = 0; c < sizeof cpus / sizeof *cpus; c++) {
        for (int opt = 0; opt <= 3; opt += 3) {
            if ((!strcmp(cpus[c], "x86-64-v4") && !__builtin_cpu_supports("avx512f")) ||
                (!strcmp(cpus[c], "x86-64-v3") && !__builtin_cpu_supports("avx2")))
                continue;   /* this host cannot run that code */
            cg_jit *j = jit_of(v, cpus[c], opt);
            diff_all(j, v, 0);
            cg_jit_free(j);
            j = jit_of(k, cpus[c], opt);
            diff_all(j, k, 1e-6);
            cg_jit_free(j);
        }
    }
}
END_TEST

static char *ir_text(cg_llvm *cg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cg_llvm_print_ir(cg, f);
    fclose(f);
    return buf;
}

START_TEST(vector_width_attributes)
{
    ir_module *m = from_source("k", KERNELS_SRC);
    struct { const char *cpu; int bits; } cases[] = {{"x86-64-v3", 256}, {"x86-64-v4", 512}, {"x86-64", 128},
                                                     {"skylake-avx512", 512}, {"znver4", 512}, {"znver3", 256}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        cg_options o = {.cpu = cases[c].cpu, .opt_level = 2};
        cg_llvm *cg = cg_llvm_build(m, &o, err, sizeof err);
        ck_assert_msg(cg != NULL, "%s: %s", cases[c].cpu, err);
        ck_assert_int_eq(cg->vector_bits, cases[c].bits);
        char *ir = ir_text(cg);
        ck_assert_msg(strstr(ir, "\"target-cpu\"=\"") != NULL, "no target-cpu attribute");
        bool pref = strstr(ir, "\"prefer-vector-width\"=\"512\"") != NULL;
        ck_assert_msg(pref == (cases[c].bits == 512), "%s: prefer-vector-width", cases[c].cpu);
        free(ir);
        cg_llvm_free(cg);
    }
    /* native: the host's own features decide */
    cg_llvm *cg = cg_llvm_build(m, NULL, err, sizeof err);
    ck_assert_msg(cg != NULL, "%s", err);
    ck_assert_int_eq(cg->vector_bits, __builtin_cpu_supports("avx512f") ? 512 : __builtin_cpu_supports("avx") ? 256 : 128);
    ck_assert_int_eq(cg->opt_level, 3);
    cg_llvm_free(cg);
}
END_TEST

START_TEST(bad_options_and_names)
{
    ir_module *m = from_source("v", VIEWS_SRC);
    cg_options o = {.cpu = "pentium-9000", .opt_level = 3};
    ck_assert(cg_llvm_build(m, &o, err, sizeof err) == NULL);
    ck_assert_msg(strstr(err, "unknown CPU 'pentium-9000'") != NULL, "%s", err);
    o = (cg_options){.cpu = "native", .opt_level = 4};
    ck_assert(cg_llvm_build(m, &o, err, sizeof err) == NULL);
    ck_assert_msg(strstr(err, "optimization level 4") != NULL, "%s", err);
    o.opt_level = -1;
    ck_assert(cg_llvm_build(m, &o, err, sizeof err) == NULL);

    ir_module *bad = from_source("v", "export fn f(x: f32[2]) -> f32[2] { return x }\n");
    bad->name = "my-model";
    ck_assert(cg_llvm_build(bad, NULL, err, sizeof err) == NULL);
    ck_assert_msg(strstr(err, "'my-model' is not a C identifier") != NULL, "%s", err);

    ir_module *clash = from_source("v", "export fn create(x: f32[2]) -> f32[2] { return x }\n");
    ck_assert(cg_llvm_build(clash, NULL, err, sizeof err) == NULL);
    ck_assert_msg(strstr(err, "collides with the module function v_create") != NULL, "%s", err);
    ck_assert(cg_llvm_build(NULL, NULL, err, sizeof err) == NULL);
}
END_TEST

START_TEST(null_pointers_and_errors)
{
    ir_module *m = from_source("v", VIEWS_SRC);
    cg_jit *j = jit_of(m, "native", 2);
    SYM(j, create_fn, create, "v_create");
    SYM(j, destroy_fn, destroy, "v_destroy");
    SYM(j, error_fn, error, "v_error");
    SYM(j, io_fn, save, "v_save");
    SYM(j, io_fn, load, "v_load");
    void *tr = cg_jit_lookup(j, "v_tr");
    void *two = cg_jit_lookup(j, "v_two");
    ck_assert(tr && two);
    float x[12] = {0}, out[12];
    double xd[4] = {0}, o1[2], o2[4];

    ck_assert_int_eq(call_export(tr, NULL, (void *[]){x, out}, 2), TDSL_ERR_NULL);
    void *inst = create(NULL);
    ck_assert(inst != NULL);
    ck_assert_int_eq(call_export(tr, inst, (void *[]){NULL, out}, 2), TDSL_ERR_NULL);
    ck_assert_str_eq(error(inst), "v_tr: argument 'x' is NULL");
    ck_assert_int_eq(call_export(two, inst, (void *[]){xd, o1, NULL}, 3), TDSL_ERR_NULL);
    ck_assert_str_eq(error(inst), "v_two: output 1 is NULL");
    /* a good call clears the last error */
    ck_assert_int_eq(call_export(two, inst, (void *[]){xd, o1, o2}, 3), 0);
    ck_assert_str_eq(error(inst), "");

    ck_assert(error(NULL) != NULL);
    destroy(NULL);
    ck_assert_int_eq(save(NULL, "/tmp/x.safetensors"), TDSL_ERR_NULL);
    ck_assert_int_eq(load(inst, NULL), TDSL_ERR_NULL);
    ck_assert_str_eq(error(inst), "v_load: path is NULL");
    ck_assert_int_ne(load(inst, "/nonexistent/dir/p.safetensors"), 0);
    ck_assert_str_ne(error(inst), "");
    destroy(inst);
    cg_jit_free(j);
}
END_TEST

START_TEST(params_introspection_and_save_load)
{
    ir_module *m = from_source("v", VIEWS_SRC);
    cg_jit *j = jit_of(m, "native", 3);
    SYM(j, create_fn, create, "v_create");
    SYM(j, destroy_fn, destroy, "v_destroy");
    SYM(j, count_fn, num_params, "v_num_params");
    SYM(j, param_fn, param, "v_param");
    SYM(j, io_fn, save, "v_save");
    SYM(j, io_fn, load, "v_load");
    ck_assert_int_eq(num_params(), 2);
    void *inst = create(&(tdsl_options){.seed = 3, .threads = 1});
    ck_assert(inst != NULL);
    tdsl_tensor w = param(inst, 0);
    ck_assert_str_eq(w.name, "W");
    ck_assert_int_eq(w.dtype, TDSL_F32);
    ck_assert_int_eq(w.rank, 2);
    ck_assert_int_eq(w.shape[0], 2);
    ck_assert_int_eq(w.shape[1], 3);
    ck_assert_int_eq(w.strides[0], 3);
    ck_assert_int_eq(w.strides[1], 1);
    ck_assert(w.data != NULL);
    tdsl_tensor b = param(inst, 1);
    ck_assert_str_eq(b.name, "b");
    ck_assert_int_eq(b.rank, 1);
    for (int k = 0; k < 3; k++)
        ck_assert(((float *)b.data)[k] == 0.5f);
    ck_assert(param(inst, 2).data == NULL);
    ck_assert(param(inst, -1).data == NULL);
    tdsl_tensor none = param(NULL, 0);
    ck_assert(none.data == NULL && none.name == NULL && none.rank == 0);

    /* pw returns W through a copy-out: the export reads the instance's param memory */
    float out[6];
    ck_assert_int_eq(call_export(cg_jit_lookup(j, "v_pw"), inst, (void *[]){out}, 1), 0);
    ck_assert(!memcmp(out, w.data, sizeof out));

    char path[] = "/tmp/tdsl_llvm_module_XXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    close(fd);
    ck_assert_int_eq(save(inst, path), 0);
    float before = ((float *)w.data)[4];
    ((float *)w.data)[4] = 123.0f;
    ck_assert_int_eq(load(inst, path), 0);
    ck_assert(((float *)param(inst, 0).data)[4] == before);
    unlink(path);
    destroy(inst);
    cg_jit_free(j);
}
END_TEST

/* tdsl_options.check_finite: a NaN or Inf in a float output is TDSL_ERR_NONFINITE */
START_TEST(check_finite_outputs)
{
    ir_module *m = from_source("cf", "export fn f(x: f32[37], h: bf16[5], i: i32[2]) -> (f32[37], bf16[5], i32[2], f32) {\n"
                                     "    return x, h, i, 1.0\n}\n");
    cg_jit *j = jit_of(m, "native", 3);
    SYM(j, create_fn, create, "cf_create");
    SYM(j, destroy_fn, destroy, "cf_destroy");
    SYM(j, error_fn, error, "cf_error");
    void *fn = cg_jit_lookup(j, "cf_f");
    float x[37], xo[37];
    uint16_t h[5], ho[5];
    int32_t i[2] = {0x7f800000, -1}, io[2];   /* integer bits of an Inf are not an Inf */
    float d;
    for (int k = 0; k < 37; k++)
        x[k] = k == 3 ? 3.4e38f : k == 5 ? -0.0f : k == 7 ? 1e-45f : (float)k;
    for (int k = 0; k < 5; k++)
        h[k] = f32_to_bf16((float)k - 2);
    void *p[] = {x, h, i, xo, ho, io, &d};
    void *off = create(NULL), *on = create(&(tdsl_options){.check_finite = 1});
    ck_assert_int_eq(call_export(fn, on, p, 7), 0);
    x[36] = INFINITY;
    ck_assert_int_eq(call_export(fn, off, p, 7), 0);
    ck_assert(isinf(xo[36]));
    ck_assert_int_eq(call_export(fn, on, p, 7), TDSL_ERR_NONFINITE);
    ck_assert_str_eq(error(on), "cf_f: output 0 has NaN or Inf");
    x[36] = 0;
    h[4] = 0x7fc0;   /* bf16 NaN */
    ck_assert_int_eq(call_export(fn, on, p, 7), TDSL_ERR_NONFINITE);
    ck_assert_str_eq(error(on), "cf_f: output 1 has NaN or Inf");
    h[4] = 0;
    ck_assert_int_eq(call_export(fn, on, p, 7), 0);
    ck_assert_str_eq(error(on), "");
    destroy(on);
    destroy(off);
    cg_jit_free(j);
}
END_TEST

static char *slurp_cmd(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    ck_assert(p != NULL);
    char *buf = calloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, p);
    buf[n] = '\0';
    pclose(p);
    return buf;
}

START_TEST(object_file_symbols)
{
    ir_module *m = from_source("v", VIEWS_SRC);
    cg_llvm *cg = cg_llvm_build(m, NULL, err, sizeof err);
    ck_assert_msg(cg != NULL, "%s", err);
    char path[] = "/tmp/tdsl_llvm_obj_XXXXXX";
    int fd = mkstemp(path);
    ck_assert(fd >= 0);
    close(fd);
    ck_assert_msg(cg_llvm_emit_object(cg, path, err, sizeof err) == 0, "%s", err);
    FILE *f = fopen(path, "rb");
    ck_assert(f != NULL);
    unsigned char magic[4];
    ck_assert_int_eq(fread(magic, 1, 4, f), 4);
    fclose(f);
    ck_assert(!memcmp(magic, "\177ELF", 4));
    char cmd[256];
    snprintf(cmd, sizeof cmd, "nm %s", path);
    char *syms = slurp_cmd(cmd);
    static const char *exported[] = {"v_create", "v_destroy", "v_error", "v_save", "v_load", "v_num_params",
                                     "v_param", "v_tr", "v_wide", "v_empty"};
    for (size_t k = 0; k < sizeof exported / sizeof *exported; k++) {
        char want[64];
        snprintf(want, sizeof want, " T %s\n", exported[k]);
        ck_assert_msg(strstr(syms, want) != NULL, "missing%s in:\n%s", want, syms);
    }
    ck_assert_msg(strstr(syms, " U tdsl_rt_create\n") != NULL, "%s", syms);
    ck_assert_msg(strstr(syms, " T v__") == NULL, "internal symbols exported:\n%s", syms);
    free(syms);
    unlink(path);
    /* the module is still usable after emission: a second object, then the JIT */
    ck_assert(cg_llvm_emit_object(cg, "/nonexistent/dir/x.o", err, sizeof err) != 0);
    ck_assert_msg(strstr(err, "/nonexistent/dir/x.o") != NULL, "%s", err);
    cg_jit *j = cg_jit_create(cg, err, sizeof err);
    ck_assert_msg(j != NULL, "%s", err);
    diff_export(j, m, "wide", 0);
    /* the JIT took the module */
    ck_assert(cg_jit_create(cg, err, sizeof err) == NULL);
    ck_assert(cg_llvm_emit_object(cg, path, err, sizeof err) != 0);
    cg_llvm_free(cg);
    cg_jit_free(j);
}
END_TEST

START_TEST(print_ir_and_asm)
{
    ir_module *m = from_source("k", KERNELS_SRC);
    for (int opt = 0; opt <= 3; opt += 3) {
        cg_options o = {.cpu = "x86-64-v4", .opt_level = opt};
        cg_llvm *cg = cg_llvm_build(m, &o, err, sizeof err);
        ck_assert_msg(cg != NULL, "%s", err);
        char *ir = ir_text(cg);
        ck_assert_msg(strstr(ir, "define i32 @k_lin(ptr") != NULL, "%s", ir);
        ck_assert(strstr(ir, "define ptr @k_create(ptr") != NULL);
        ck_assert(strstr(ir, "@k__desc = internal") != NULL);
        ck_assert(strstr(ir, "sret(%tdsl_tensor)") != NULL);
        ck_assert(strstr(ir, "k_lin: argument 'x' is NULL") != NULL);
        free(ir);
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        ck_assert_msg(cg_llvm_print_asm(cg, f, err, sizeof err) == 0, "%s", err);
        fclose(f);
        ck_assert(strstr(buf, "k_create:") != NULL);
        ck_assert(strstr(buf, "k_chain:") != NULL);
        ck_assert(strstr(buf, "tdsl_rt_create") != NULL);
        free(buf);
        cg_llvm_free(cg);
    }
}
END_TEST

/* the struct returned by <mod>_param follows the C ABI: the LLVM layouts match C's */
START_TEST(abi_layouts)
{
    ir_module *m = from_source("v", VIEWS_SRC);
    cg_llvm *cg = cg_llvm_build(m, &(cg_options){.cpu = "x86-64-v3", .opt_level = 0}, err, sizeof err);
    ck_assert_msg(cg != NULL, "%s", err);
    LLVMTargetDataRef dl = LLVMCreateTargetDataLayout(cg->tm);
    LLVMTypeRef t = LLVMGetTypeByName2(cg->ctx, "tdsl_tensor");
    ck_assert(t != NULL);
    ck_assert_int_eq(LLVMABISizeOfType(dl, t), sizeof(tdsl_tensor));
    ck_assert_int_eq(LLVMOffsetOfElement(dl, t, 5), offsetof(tdsl_tensor, data));
    t = LLVMGetTypeByName2(cg->ctx, "tdsl_param_desc");
    ck_assert_int_eq(LLVMABISizeOfType(dl, t), sizeof(tdsl_param_desc));
    ck_assert_int_eq(LLVMOffsetOfElement(dl, t, 5), offsetof(tdsl_param_desc, a));
    t = LLVMGetTypeByName2(cg->ctx, "tdsl_module_desc");
    ck_assert_int_eq(LLVMABISizeOfType(dl, t), sizeof(tdsl_module_desc));
    ck_assert_int_eq(LLVMOffsetOfElement(dl, t, 4), offsetof(tdsl_module_desc, arena_bytes));
    LLVMDisposeTargetData(dl);
    /* every runtime function of the ABI is declarable; unknown names are not */
    LLVMTypeRef ty;
    ck_assert(cg_runtime_fn(cg, "tdsl_rt_parallel_for", &ty) != NULL);
    ck_assert_int_eq(LLVMCountParamTypes(ty), 4);
    ck_assert(cg_runtime_fn(cg, "tdsl_rt_fail", &ty) != NULL);
    ck_assert(LLVMIsFunctionVarArg(ty));
    ck_assert(cg_runtime_fn(cg, "tdsl_rt_nope", &ty) == NULL);
    ck_assert(cg_storage_type(cg, DT_BF16) == cg->t_i16);
    ck_assert(cg_compute_type(cg, DT_BF16) == cg->t_f32);
    ck_assert(cg_compute_type(cg, DT_BOOL) == cg->t_i1);
    ck_assert(cg_storage_type(cg, DT_BOOL) == cg->t_i8);
    cg_llvm_free(cg);
}
END_TEST

/* two modules live in one process, each with its own instances */
START_TEST(two_modules_one_process)
{
    ir_module *a = from_source("ma", "export fn f(x: f32[2, 2]) -> f32[2, 2] { return x.T }\n");
    ir_module *b = from_source("mb", "param p: f32[2] = full(4)\nexport fn f() -> f32[2] { return p }\n");
    cg_jit *ja = jit_of(a, "native", 3), *jb = jit_of(b, "native", 1);
    ck_assert(cg_jit_lookup(ja, "mb_f") == NULL);
    ck_assert(cg_jit_lookup(ja, "no_such_symbol") == NULL);
    SYM(ja, create_fn, ca, "ma_create");
    SYM(jb, create_fn, cb, "mb_create");
    SYM(ja, destroy_fn, da, "ma_destroy");
    SYM(jb, destroy_fn, db, "mb_destroy");
    for (int cycle = 0; cycle < 20; cycle++) {   /* create/destroy cycles: ASan sees leaks */
        void *ia = ca(NULL), *ib = cb(NULL);
        float x[4] = {1, 2, 3, 4}, y[4], z[2];
        ck_assert_int_eq(call_export(cg_jit_lookup(ja, "ma_f"), ia, (void *[]){x, y}, 2), 0);
        ck_assert(y[1] == 3 && y[2] == 2);
        ck_assert_int_eq(call_export(cg_jit_lookup(jb, "mb_f"), ib, (void *[]){z}, 1), 0);
        ck_assert(z[0] == 4 && z[1] == 4);
        da(ia);
        db(ib);
    }
    cg_jit_free(ja);
    cg_jit_free(jb);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("llvm_module");
    TCase *tc = tcase_create("module");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, views_match_evaluator);
    tcase_add_test(tc, consts_and_repeated_outputs);
    tcase_add_test(tc, kernels_args_params_arena);
    tcase_add_test(tc, cpus_and_opt_levels);
    tcase_add_test(tc, vector_width_attributes);
    tcase_add_test(tc, bad_options_and_names);
    tcase_add_test(tc, null_pointers_and_errors);
    tcase_add_test(tc, check_finite_outputs);
    tcase_add_test(tc, params_introspection_and_save_load);
    tcase_add_test(tc, object_file_symbols);
    tcase_add_test(tc, print_ir_and_asm);
    tcase_add_test(tc, abi_layouts);
    tcase_add_test(tc, two_modules_one_process);
    suite_add_tcase(s, tc);
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
