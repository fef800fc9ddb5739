/* Autodiff (passes/autodiff.c): every gradient rule checked against central differences
 * in f64 through the reference evaluator (pass_gradcheck, what `tdslc gradcheck` runs),
 * over several shapes, broadcasting and views; the user errors of `grad` exports and the
 * gradient-flow warning; and the programs of tests/autodiff against PyTorch's autograd through both
 * the evaluator and the JIT (gen_reference.py wrote the .npy files). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tdsl/runtime.h>
#include "codegen/llvm.h"
#include "frontend/ast.h"
#include "frontend/lower.h"
#include "compile.h"
#include "ir/eval.h"
#include "passes/passes.h"
#include "tools/npy.h"

static arena ar;
static src_file src;
static char diag_buf[16384];

static ir_module *compile(const char *text)
{
    ir_module *m = compile_source(&ar, &src, "t", text, 0, NULL, diag_buf, sizeof diag_buf);
    if (m)
        ck_assert_int_eq(ir_verify(m, stderr), 0);
    return m;
}

/* deterministic pseudo-normal values (sum of uniforms), away from kinks: |v| >= 0.05 */
static uint64_t rng = 88172645463325252ull;
static double rnd(void)
{
    double s = 0;
    for (int k = 0; k < 4; k++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        s += (double)(rng >> 11) / 9007199254740992.0 - 0.5;
    }
    s *= 1.7;
    return fabs(s) < 0.05 ? (s < 0 ? s - 0.05 : s + 0.05) : s;
}

static void fill(host_tensor *t, ir_dtype dt, int rank, const int64_t *shape, bool positive, int64_t ibound)
{
    ck_assert(host_tensor_alloc(t, dt, rank, shape));
    for (int64_t i = 0; i < host_tensor_numel(t); i++) {
        double v = rnd();
        if (!ir_dtype_is_float(dt))
            v = (double)(rng % (uint64_t)ibound);
        else if (positive)
            v = fabs(v) + 0.5;
        host_tensor_set(t, i, v);
    }
}

/* checks grad export `fn` of text: every gradient within tolerance of central differences.
 * positive: float inputs in [0.5, ...) (log, sqrt, pow); integer inputs in [0, ibound). */
static void gradcheck_opts(const char *text, const char *fn, bool positive, int64_t ibound)
{
    ir_module *m = compile(text);
    if (!m)
        ck_abort_msg("does not compile:\n%s\n%s", text, diag_buf);
    ir_func *g = ir_module_find(m, fn);
    ck_assert_ptr_nonnull(g);
    host_tensor args[16], params[16];
    ck_assert_int_le(g->nargs, 16);
    ck_assert_int_le(m->nparams, 16);
    for (int k = 0; k < g->nargs; k++)
        fill(&args[k], g->args[k].dtype, g->args[k].rank, g->args[k].shape, positive, ibound);
    for (int k = 0; k < m->nparams; k++)
        fill(&params[k], m->params[k].dtype, m->params[k].rank, m->params[k].shape, positive, ibound);
    pass_gradcheck_row rows[16];
    char err[512];
    ck_assert_int_le(g->nouts, 17);
    if (pass_gradcheck(g, args, params, 1e-6, 1e-5, 1e-7, rows, err, sizeof err) != 0)
        ck_abort_msg("gradcheck failed to run: %s\n%s", err, text);
    for (int k = 0; k + 1 < g->nouts; k++)
        if (!rows[k].ok)
            ck_abort_msg("%s: %s max abs err %g rel %g\n%s", fn, rows[k].name, rows[k].max_abs, rows[k].max_rel, text);
    for (int k = 0; k < g->nargs; k++)
        host_tensor_free(&args[k]);
    for (int k = 0; k < m->nparams; k++)
        host_tensor_free(&params[k]);
}

static void gradcheck(const char *text) { gradcheck_opts(text, "g", false, 3); }

/* `loss` of one argument x with body `expr` (using x), checked on shape `type` */
static void check_expr(const char *type, const char *expr, bool positive)
{
    char text[2048];
    snprintf(text, sizeof text, "fn loss(x: %s) { return %s }\nexport g = grad(loss, wrt=[x])\n", type, expr);
    gradcheck_opts(text, "g", positive, 3);
}

static void assert_error(const char *text, const char *needle)
{
    ck_assert_ptr_null(compile(text));
    if (!strstr(diag_buf, needle))
        ck_abort_msg("expected '%s' in diagnostics:\n%s", needle, diag_buf);
}

START_TEST(unary_rules)
{
    static const char *ops[] = {"neg(x)", "abs(x)", "exp(x)", "sin(x)", "cos(x)", "tanh(x)", "sigmoid(x)",
                                "relu(x)", "gelu(x)", "gelu(x, approximate=\"tanh\")", "silu(x)", "softplus(x)",
                                "softplus(x * 30)", "leaky_relu(x, slope=0.2)", "clamp(x, -0.5, 0.5)",
                                "clamp(x, lo=-0.3)", "x.to(f64).to(f32)", "sign(x) * x", "-x"};
    static const char *types[] = {"f32[5]", "f64[2, 3]", "f32"};
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++)
        for (size_t t = 0; t < 3; t++) {
            char e[256];
            snprintf(e, sizeof e, "sum(%s * %s)", ops[k], ops[k]);   /* squared: dy is not all ones */
            check_expr(types[t], e, false);
        }
    static const char *pos[] = {"log(x)", "log1p(x)", "sqrt(x)", "rsqrt(x)"};
    for (size_t k = 0; k < sizeof pos / sizeof *pos; k++) {
        char e[256];
        snprintf(e, sizeof e, "sum(%s * %s)", pos[k], pos[k]);
        check_expr("f32[2, 3]", e, true);
        check_expr("f32", e, true);
    }
    /* gelu through x == 0 exactly (its Phi(x) = gelu(x) / x guard) */
    check_expr("f32[3]", "sum(gelu(x - x) * x)", false);
}
END_TEST

START_TEST(binary_rules_and_broadcasting)
{
    static const char *ops[] = {"a + b", "a - b", "a * b", "a / b", "maximum(a, b)", "minimum(a, b)", "a ** b",
                                "a % b", "where(a > b, a * b, a - b)", "where(a > 0, a, 2.0)"};
    static const char *shapes[][2] = {{"f32[3]", "f32[3]"}, {"f32[2, 3]", "f32[3]"}, {"f32[4, 1]", "f32[1, 3]"},
                                      {"f64[2, 3, 2]", "f64[3, 1]"}, {"f32", "f32[2, 2]"}};
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++)
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
            char text[1024];
            snprintf(text, sizeof text, "fn loss(a: %s, b: %s) { y = %s\n return sum(y * y) }\n"
                                        "export g = grad(loss, wrt=[a, b])\n", shapes[s][0], shapes[s][1], ops[k]);
            /* pow and % need a positive base / divisor */
            gradcheck_opts(text, "g", strstr(ops[k], "**") || strstr(ops[k], "%"), 3);
        }
    /* literals and promotion: a scalar literal, an i32 operand promoted to f32 */
    gradcheck("fn loss(a: f32[3], n: i32[3]) { return sum((a * 2 + n) ** 2) }\nexport g = grad(loss, wrt=[a])\n");
}
END_TEST

START_TEST(maximum_ties_split_like_torch)
{
    /* maximum(a, a): each side gets half, like torch; amax ties share equally */
    ir_module *m = compile("fn loss(a: f32[3]) { return sum(maximum(a, a) * 3) + max(a * 0) }\n"
                           "export g = grad(loss, wrt=[a])\n");
    ck_assert_ptr_nonnull(m);
    ir_func *g = ir_module_find(m, "g");
    host_tensor a, outs[2];
    int64_t sh[1] = {3};
    ck_assert(host_tensor_alloc(&a, DT_F32, 1, sh));
    for (int i = 0; i < 3; i++)
        host_tensor_set(&a, i, i + 1.0);
    char err[256];
    ck_assert_int_eq(ir_eval(g, &a, NULL, outs, &(ir_eval_opts){0}, err, sizeof err), 0);
    for (int i = 0; i < 3; i++)   /* 3 (both halves) + 0 * 1/3 */
        ck_assert_double_eq_tol(host_tensor_get(&outs[1], i), 3.0, 1e-6);
    host_tensor_free(&a);
    host_tensor_free(&outs[0]);
    host_tensor_free(&outs[1]);
}
END_TEST

START_TEST(reduction_rules)
{
    static const char *ops[] = {"sum", "mean", "max", "min", "prod", "logsumexp", "var"};
    static const char *axes[] = {"", ", axis=0", ", axis=1", ", axis=[0, 2]", ", axis=1, keepdim=true", ", axis=-1"};
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++)
        for (size_t a = 0; a < sizeof axes / sizeof *axes; a++) {
            char e[256];
            snprintf(e, sizeof e, "sum(%s(x%s) ** 2)", ops[k], axes[a]);
            check_expr("f32[2, 3, 4]", e, false);
        }
    /* prod through zeros: one zero (the others' product) and two zeros (0) */
    gradcheck("fn loss(x: f32[2, 3]) { z = where(x > 100, x, x * 0)\n"
              "  y = concat([x[:, 0:2], z[:, 2:3]], 1)\n return sum(prod(y, axis=1)) + sum(prod(z * x, axis=0)) }\n"
              "export g = grad(loss, wrt=[x])\n");
}
END_TEST

START_TEST(nn_rules)
{
    check_expr("f32[3, 4]", "sum(softmax(x, 1) * x)", false);
    check_expr("f32[3, 4]", "sum(softmax(x, 0) ** 2)", false);
    check_expr("f32[2, 3, 4]", "sum(log_softmax(x, 2) * x)", false);
    check_expr("f32[2, 3]", "sum(log_softmax(x, 0) ** 2)", false);
    /* cross_entropy: i64 and i32 labels; mse (lowered to sub/mul/mean) */
    gradcheck_opts("fn loss(x: f32[4, 3], y: i64[4]) { return cross_entropy(x * x, y) }\n"
                   "export g = grad(loss, wrt=[x])\n", "g", false, 3);
    gradcheck_opts("fn loss(x: f32[4, 5], y: i32[4]) { return cross_entropy(x, y) * 3 }\n"
                   "export g = grad(loss, wrt=[x])\n", "g", false, 5);
    gradcheck("fn loss(a: f32[2, 3], b: f32[2, 3]) { return mse(a * b, b) }\nexport g = grad(loss, wrt=[a, b])\n");
    /* layer_norm: x, weight and bias; ranks 1, 2 and 3 */
    gradcheck("param w: f32[4]\nparam b: f32[4]\n"
              "fn loss(x: f32[3, 4]) { return sum(layer_norm(x, w, b) ** 2) }\nexport g = grad(loss, wrt=[x, w, b])\n");
    gradcheck("param w: f32[5]\nparam b: f32[5]\n"
              "fn loss(x: f32[2, 3, 5]) { return sum(layer_norm(x, w, b, eps=0.1) * x) }\nexport g = grad(loss, wrt=[x, w, b])\n");
    gradcheck("param w: f32[4]\nparam b: f32[4]\n"
              "fn loss(x: f32[4]) { return sum(layer_norm(x, w, b) * x) }\nexport g = grad(loss, wrt=[x, w, b])\n");
}
END_TEST

START_TEST(matmul_rules)
{
    static const char *shapes[][2] = {{"f32[3, 4]", "f32[4, 2]"}, {"f32[4]", "f32[4, 2]"}, {"f32[3, 4]", "f32[4]"},
                                      {"f32[2, 3, 4]", "f32[4, 5]"}, {"f32[2, 1, 3, 4]", "f32[3, 4, 2]"},
                                      {"f32[4]", "f32[4]"}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        char text[1024];
        snprintf(text, sizeof text, "fn loss(a: %s, b: %s) { y = a @ b\n return sum(y * y) }\n"
                                    "export g = grad(loss, wrt=[a, b])\n", shapes[s][0], shapes[s][1]);
        gradcheck(text);
    }
    gradcheck("fn loss(a: f32[3, 4], b: f32[2, 4]) { return sum((a @ b.T) ** 2) + sum(a.T @ a) }\n"
              "export g = grad(loss, wrt=[a, b])\n");
}
END_TEST

START_TEST(view_rules)
{
    static const char *ops[] = {"x.view(6, 4)", "x.T.reshape(24)", "x.permute(2, 0, 1)", "x.transpose(0, 2)",
                                "x[1]", "x[:, 1:3]", "x[..., -1]", "x[0, 1:2, 1:4]", "x.unsqueeze(1)",
                                "x[:, 0:1].squeeze(1)", "x.flatten()", "expand(x[:, :, 0:1], [2, 3, 5])",
                                "concat([x, x * 2], 1)", "stack([x, x], 0)", "clone(x)", "contiguous(x.T)",
                                "x.T.contiguous().view(24)"};
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++) {
        char e[256];
        snprintf(e, sizeof e, "sum(%s * %s)", ops[k], ops[k]);
        check_expr("f32[2, 3, 4]", e, false);
    }
    /* concat of distinct inputs, one of them constant */
    gradcheck("fn loss(a: f32[2, 3], b: f32[2, 1]) { return sum(concat([a, zeros([2, 2]), b], 1) ** 2) }\n"
              "export g = grad(loss, wrt=[a, b])\n");
}
END_TEST

START_TEST(stop_gradient_cuts)
{
    ir_module *m = compile("fn loss(x: f32[3]) { return sum(stop_gradient(x) * x) }\nexport g = grad(loss, wrt=[x])\n");
    ck_assert_ptr_nonnull(m);
    ir_func *g = ir_module_find(m, "g");
    host_tensor a, outs[2];
    int64_t sh[1] = {3};
    ck_assert(host_tensor_alloc(&a, DT_F32, 1, sh));
    for (int i = 0; i < 3; i++)
        host_tensor_set(&a, i, i + 1.0);
    char err[256];
    ck_assert_int_eq(ir_eval(g, &a, NULL, outs, &(ir_eval_opts){0}, err, sizeof err), 0);
    for (int i = 0; i < 3; i++)   /* d/dx (c * x) = c = x, not 2x */
        ck_assert_double_eq_tol(host_tensor_get(&outs[1], i), i + 1.0, 1e-6);
    host_tensor_free(&a);
    host_tensor_free(&outs[0]);
    host_tensor_free(&outs[1]);
}
END_TEST

START_TEST(exports_names_and_order)
{
    ir_module *m = compile("param W1: f32[4, 3] = normal(0, 0.5)\nparam b1: f32[3]\nparam unused: f32[2]\n"
                           "fn layer(x, W, b) { return tanh(x @ W + b) }\n"
                           "fn loss(x: f32[2, 4], y: i64[2]) { return cross_entropy(layer(x, W1, b1), y) }\n"
                           "export g = grad(loss)\nexport gx = grad(loss, wrt=[b1, x])\n");
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(m->nfuncs, 2);   /* the scratch function is dropped */
    ir_func *g = ir_module_find(m, "g"), *gx = ir_module_find(m, "gx");
    ck_assert_ptr_nonnull(g);
    ck_assert_ptr_nonnull(gx);
    ck_assert_int_eq(g->nargs, 2);
    ck_assert_str_eq(g->args[1].name, "y");
    ck_assert_int_eq(g->nouts, 4);   /* value, dW1, db1, dunused */
    ck_assert_int_eq(g->nodes[g->outs[0]].rank, 0);
    ck_assert_str_eq(g->nodes[g->outs[1]].name, "dW1");
    ck_assert_str_eq(g->nodes[g->outs[2]].name, "db1");
    ck_assert_str_eq(g->nodes[g->outs[3]].name, "dunused");
    ck_assert_int_eq(g->nodes[g->outs[1]].shape[0], 4);
    ck_assert_int_eq(gx->nouts, 3);
    ck_assert_str_eq(gx->nodes[gx->outs[1]].name, "db1");
    ck_assert_str_eq(gx->nodes[gx->outs[2]].name, "dx");
    /* the gradient-flow warning names the param the result does not depend on */
    ck_assert_ptr_nonnull(strstr(diag_buf, "warning: the result of 'loss' does not depend on param 'unused'"));
    ck_assert_ptr_null(strstr(diag_buf, "'W1': its gradient"));
    gradcheck_opts("param W1: f32[4, 3] = normal(0, 0.5)\nparam b1: f32[3]\nparam unused: f32[2]\n"
                   "fn layer(x, W, b) { return tanh(x @ W + b) }\n"
                   "fn loss(x: f32[2, 4], y: i64[2]) { return cross_entropy(layer(x, W1, b1), y) }\n"
                   "export g = grad(loss)\nexport gx = grad(loss, wrt=[b1, x])\n", "gx", false, 3);
    /* sgd and friends compile to training steps (tests/unit/test_train.c has the rest) */
    m = compile("param W: f32[2]\nfn loss(x: f32[2]) { return sum(x * W) }\nexport s = sgd(loss, lr=0.1)\n");
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(m->nfuncs, 1);
    ck_assert_int_eq(ir_num_results(m->funcs[0]), 1);
    ck_assert_int_eq(m->funcs[0]->nouts, 2);   /* the loss, then the new W */
    /* a custom gradient block is used, without a warning (the custom TCase has the rest) */
    m = compile("fn sw(x) {\n return x * sigmoid(x)\n} grad (dy) {\n return dy\n}\n"
                "fn loss(x: f32[3]) { return sum(sw(x)) }\nexport g = grad(loss, wrt=[x])\n");
    ck_assert_ptr_nonnull(m);
    ck_assert_ptr_null(strstr(diag_buf, "warning"));
}
END_TEST

START_TEST(user_errors)
{
    assert_error("fn loss(x: f32[3]) { return x * 2 }\nexport g = grad(loss, wrt=[x])\n",
                 "grad(loss) needs a scalar result; loss returns f32[3]: reduce it with sum(...) or mean(...)");
    assert_error("fn loss(x: f32[3]) { return sum(x) }\nexport g = grad(loss, wrt=[xx])\n",
                 "'xx' is neither an argument of 'loss' nor a param");
    assert_error("fn loss(x: f32[3]) { return sum(x) }\nexport g = grad(loss, wrt=[xx])\n", "did you mean 'x'?");
    assert_error("fn loss(x: f32[3], n: i64[3]) { return sum(x * n) }\nexport g = grad(loss, wrt=[n])\n",
                 "t.tdsl:2:28: error: gradients through integer values");
    assert_error("fn loss(x) { return sum(x) }\nexport g = grad(loss, wrt=[x])\n",
                 "t.tdsl:1:9: error: grad(loss) needs every argument of 'loss' typed");
    assert_error("fn loss(x: f32[3]) { return sum(x) }\nexport g = grad(loss)\n", "there are none");
    assert_error("fn loss(x: f32[3]) { return sum(x) }\nexport g = grad(loss, wrt=[x, x])\n", "appears twice");
    assert_error("fn loss(x: f32[3]) { return sum(x) }\nexport g = grad(loss, foo=[x])\n", "no option 'foo'");
    assert_error("export fn f(x: f32[3]) -> f32 { return sum(x) }\nexport g = grad(f, wrt=[x])\n", "exported fn");
    assert_error("fn loss(x: f32[3]) { return argmax(x) }\nexport g = grad(loss, wrt=[x])\n", "floating-point scalar");
    /* indexing off the differentiated path is fine */
    gradcheck("fn loss(x: f32[3], t: f32[4], i: i64[3]) { return sum(x * t[i]) }\nexport g = grad(loss, wrt=[x])\n");
}
END_TEST

/* ---- composite programs against PyTorch (tests/autodiff) ---- */
#define AD_DIR TDSL_SOURCE_DIR "/tests/autodiff"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s)
        s[n] = 0;
    fclose(f);
    return s;
}

static void check_close(const host_tensor *got, const host_tensor *want, double rtol, double atol, const char *what)
{
    ck_assert_int_eq(got->rank, want->rank);
    for (int d = 0; d < got->rank; d++)
        ck_assert_int_eq(got->shape[d], want->shape[d]);
    for (int64_t i = 0; i < host_tensor_numel(want); i++) {
        double g = host_tensor_get(got, i), w = host_tensor_get(want, i);
        if (!(fabs(g - w) <= atol + rtol * fabs(w)))
            ck_abort_msg("%s: element %lld is %.9g, PyTorch says %.9g", what, (long long)i, g, w);
    }
}

static void torch_program(const char *prog)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.tdsl", AD_DIR, prog);
    char *text = slurp(path);
    ck_assert_msg(text != NULL, "cannot read %s", path);
    ir_module *m = compile(text);
    if (!m)
        ck_abort_msg("%s does not compile:\n%s", prog, diag_buf);
    ir_func *g = ir_module_find(m, "g");
    ck_assert_ptr_nonnull(g);
    host_tensor args[16], params[16], outs[16], want[16];
    char err[512];
    ck_assert_int_le(g->nargs, 16);
    ck_assert_int_le(g->nouts, 16);
    for (int k = 0; k < g->nargs; k++) {
        snprintf(path, sizeof path, "%s/data/%s.in.%s.npy", AD_DIR, prog, g->args[k].name);
        ck_assert_msg(npy_read(path, &args[k], err, sizeof err) == 0, "%s", err);
    }
    for (int k = 0; k < m->nparams; k++) {
        snprintf(path, sizeof path, "%s/data/%s.param.%s.npy", AD_DIR, prog, m->params[k].name);
        ck_assert_msg(npy_read(path, &params[k], err, sizeof err) == 0, "%s", err);
    }
    for (int k = 0; k < g->nouts; k++) {
        snprintf(path, sizeof path, "%s/data/%s.out.%d.npy", AD_DIR, prog, k);
        ck_assert_msg(npy_read(path, &want[k], err, sizeof err) == 0, "%s", err);
    }
    /* the evaluator (f32 rounding per node) */
    ck_assert_msg(ir_eval(g, args, params, outs, &(ir_eval_opts){0}, err, sizeof err) == 0, "%s", err);
    for (int k = 0; k < g->nouts; k++) {
        char what[256];
        snprintf(what, sizeof what, "%s interp output %d", prog, k);
        check_close(&outs[k], &want[k], 1e-4, 1e-5, what);
        host_tensor_free(&outs[k]);
    }
    /* the JIT, called through the generated API: params loaded into the instance */
    cg_options co = {.cpu = "native", .opt_level = 2};
    cg_llvm *cg = cg_llvm_build(m, &co, err, sizeof err);
    ck_assert_msg(cg != NULL, "%s", err);
    cg_jit *jit = cg_jit_create(cg, err, sizeof err);
    ck_assert_msg(jit != NULL, "%s", err);
    void *(*create)(const tdsl_options *);
    void (*destroy)(void *);
    tdsl_tensor (*param)(void *, int);
    *(void **)&create = cg_jit_lookup(jit, "t_create");
    *(void **)&destroy = cg_jit_lookup(jit, "t_destroy");
    *(void **)&param = cg_jit_lookup(jit, "t_param");
    ck_assert(create && destroy && param);
    void *inst = create(NULL);
    ck_assert_ptr_nonnull(inst);
    for (int k = 0; k < m->nparams; k++) {   /* the instance's params, dense: PyTorch's values */
        tdsl_tensor t = param(inst, k);
        ck_assert_ptr_nonnull(t.data);
        memcpy(t.data, params[k].data, host_tensor_bytes(&params[k]));
    }
    void *bufs[64];
    for (int k = 0; k < g->nargs; k++)
        bufs[k] = args[k].data;
    for (int k = 0; k < g->nouts; k++) {
        const ir_node *n = &g->nodes[g->outs[k]];
        ck_assert(host_tensor_alloc(&outs[k], n->dtype, n->rank, n->shape));
        bufs[g->nargs + k] = outs[k].data;
    }
    ck_assert_int_eq(cg_call_export(cg_jit_lookup(jit, "t_g"), inst, g->nargs + g->nouts, bufs), 0);
    for (int k = 0; k < g->nouts; k++) {
        char what[256];
        snprintf(what, sizeof what, "%s jit output %d", prog, k);
        check_close(&outs[k], &want[k], 1e-3, 1e-4, what);
        host_tensor_free(&outs[k]);
        host_tensor_free(&want[k]);
    }
    destroy(inst);
    cg_jit_free(jit);
    cg_llvm_free(cg);
    for (int k = 0; k < g->nargs; k++)
        host_tensor_free(&args[k]);
    for (int k = 0; k < m->nparams; k++)
        host_tensor_free(&params[k]);
    free(text);
}

START_TEST(torch_mlp_xent) { torch_program("mlp_xent"); }
END_TEST
START_TEST(torch_layernorm_gelu) { torch_program("layernorm_gelu"); }
END_TEST
START_TEST(torch_attention) { torch_program("attention"); }
END_TEST
START_TEST(torch_bias_broadcast) { torch_program("bias_broadcast"); }
END_TEST

/* ---- tensor indexing, gather and strided slices (index_add, gather_add, slice_scatter) ---- */

/* gradcheck of export g: floats random, integer arguments taken from idx (cycled) */
static void gradcheck_idx(const char *text, const int64_t *idx, int nidx)
{
    ir_module *m = compile(text);
    if (!m)
        ck_abort_msg("does not compile:\n%s\n%s", text, diag_buf);
    ir_func *g = ir_module_find(m, "g");
    ck_assert_ptr_nonnull(g);
    host_tensor args[16], params[16];
    ck_assert_int_le(g->nargs, 16);
    ck_assert_int_le(m->nparams, 16);
    for (int k = 0; k < g->nargs; k++) {
        fill(&args[k], g->args[k].dtype, g->args[k].rank, g->args[k].shape, false, 1);
        if (!ir_dtype_is_float(g->args[k].dtype))
            for (int64_t i = 0; i < host_tensor_numel(&args[k]); i++)
                host_tensor_set(&args[k], i, (double)idx[i % nidx]);
    }
    for (int k = 0; k < m->nparams; k++)
        fill(&params[k], m->params[k].dtype, m->params[k].rank, m->params[k].shape, false, 1);
    pass_gradcheck_row rows[16];
    char err[512];
    ck_assert_int_le(g->nouts, 17);
    if (pass_gradcheck(g, args, params, 1e-6, 1e-5, 1e-7, rows, err, sizeof err) != 0)
        ck_abort_msg("gradcheck failed to run: %s\n%s", err, text);
    for (int k = 0; k + 1 < g->nouts; k++)
        if (!rows[k].ok)
            ck_abort_msg("%s max abs err %g rel %g\n%s", rows[k].name, rows[k].max_abs, rows[k].max_rel, text);
    for (int k = 0; k < g->nargs; k++)
        host_tensor_free(&args[k]);
    for (int k = 0; k < m->nparams; k++)
        host_tensor_free(&params[k]);
}

#define IDX(...) (const int64_t[]){__VA_ARGS__}, (int)(sizeof (const int64_t[]){__VA_ARGS__} / sizeof(int64_t))

START_TEST(indexing_rules)
{
    /* x[idx]: 1-D and 2-D indices, duplicates and negative indices accumulate */
    gradcheck_idx("fn loss(x: f32[5, 3], i: i64[7]) { y = x[i]\n return sum(y * y) }\n"
                  "export g = grad(loss, wrt=[x])\n", IDX(0, 4, -1, 2, 0, -5, 4));
    gradcheck_idx("fn loss(x: f64[6, 2], i: i32[3, 4]) { y = x[i]\n return sum(tanh(y) * y) }\n"
                  "export g = grad(loss, wrt=[x])\n", IDX(5, -6, 0, 0, 3, -1, 5, 2, 2, 1, -2, 4));
    gradcheck_idx("fn loss(x: f32[4, 2, 3], i: i64[2, 2]) { y = x[i]\n return sum(y * y) + sum(x) }\n"
                  "export g = grad(loss, wrt=[x])\n", IDX(3, -4, 0, 3));
    gradcheck_idx("fn loss(x: f32[3, 5], i: i64[4]) { return sum(x[:, i] ** 2) }\nexport g = grad(loss, wrt=[x])\n",
                  IDX(4, -5, 1, 1));
    /* index_select along each axis */
    gradcheck_idx("fn loss(x: f32[2, 5, 3], i: i32[6]) { y = index_select(x, 1, i)\n z = index_select(x, 0, i[0:3])\n"
                  " return sum(y * y) + sum(z * z * z) }\nexport g = grad(loss, wrt=[x])\n",
                  IDX(0, 1, 1, -1, 4, 0));
    gradcheck_idx("fn loss(x: f32[4, 3], i: i64[5]) { y = index_select(x, -1, i)\n return sum(y * y) }\n"
                  "export g = grad(loss, wrt=[x])\n", IDX(2, 2, 0, -3, 1));
    /* gather along each axis (indices in range: gather does not wrap) */
    gradcheck_idx("fn loss(x: f32[3, 4], j: i64[2, 4]) { y = gather(x, 0, j)\n return sum(y * y) }\n"
                  "export g = grad(loss, wrt=[x])\n", IDX(2, 0, 1, 2, 2, 2, 0, 1));
    gradcheck_idx("fn loss(x: f32[3, 4], j: i32[3, 2]) { y = gather(x, 1, j)\n return sum(y * y) }\n"
                  "export g = grad(loss, wrt=[x])\n", IDX(3, 0, 3, 1, 2, 2));
    gradcheck_idx("fn loss(x: f64[2, 3, 4], j: i64[2, 2, 5]) { y = gather(x, 2, j)\n z = gather(x, 0, j[:, :, 0:4] % 2)\n"
                  " return sum(y * y) + sum(sin(z)) }\nexport g = grad(loss, wrt=[x])\n", IDX(3, 0, 1, 1, 3, 0, 2));
    /* slices with steps 2 and 3 (and a step-1 slice of a strided one) */
    static const char *slices[] = {"x[::2]", "x[1::3]", "x[:, 1:6:2]", "x[::2, ::3]", "x[1:7:3, 2:6]",
                                   "x[::2][1:3]", "x.T[::3]"};
    for (size_t k = 0; k < sizeof slices / sizeof *slices; k++) {
        char e[256];
        snprintf(e, sizeof e, "sum(%s * %s * %s)", slices[k], slices[k], slices[k]);
        check_expr("f32[7, 6]", e, false);
    }
}
END_TEST

/* makemore's embedding lookup: emb = C[ix] of a [B, block] index, tanh MLP, cross_entropy */
START_TEST(embedding_lookup_rule)
{
    gradcheck_idx("param C: f32[10, 4] = normal(0, 1)\nparam W1: f32[12, 8] = normal(0, 0.3)\nparam b1: f32[8]\n"
                  "param W2: f32[8, 10] = normal(0, 0.3)\nparam b2: f32[10]\n"
                  "fn loss(ix: i64[5, 3], y: i64[5]) {\n emb = C[ix]\n h = tanh(emb.view(5, 12) @ W1 + b1)\n"
                  " return cross_entropy(h @ W2 + b2, y)\n}\nexport g = grad(loss)\n",
                  IDX(0, 3, 3, 9, 0, 1, 7, 3, 2, 9, 0, 5, 3, 3, 8));
    /* the gradient of C is zero in the rows no index names, and the dump names it dC */
    ir_module *m = compile("param C: f32[6, 2]\nfn loss(ix: i64[3]) { return sum(C[ix] * C[ix]) }\n"
                           "export g = grad(loss)\n");
    ck_assert_ptr_nonnull(m);
    ir_func *g = ir_module_find(m, "g");
    ck_assert_str_eq(g->nodes[g->outs[1]].name, "dC");
    host_tensor ix, c, outs[2];
    int64_t s1[1] = {3}, s2[2] = {6, 2};
    ck_assert(host_tensor_alloc(&ix, DT_I64, 1, s1));
    ck_assert(host_tensor_alloc(&c, DT_F32, 2, s2));
    for (int i = 0; i < 3; i++)
        host_tensor_set(&ix, i, i == 2 ? -1 : 4);   /* rows 4, 4, 5 */
    for (int i = 0; i < 12; i++)
        host_tensor_set(&c, i, i + 1);
    char err[256];
    ck_assert_int_eq(ir_eval(g, &ix, &c, outs, &(ir_eval_opts){0}, err, sizeof err), 0);
    for (int i = 0; i < 12; i++)   /* d/dC sum(C[ix]^2) = 2 C times the row's count */
        ck_assert_double_eq_tol(host_tensor_get(&outs[1], i), i / 2 == 4 ? 4.0 * (i + 1) : i / 2 == 5 ? 2.0 * (i + 1) : 0,
                                1e-6);
    host_tensor_free(&ix);
    host_tensor_free(&c);
    host_tensor_free(&outs[0]);
    host_tensor_free(&outs[1]);
}
END_TEST

START_TEST(torch_embedding) { torch_program("embedding"); }
END_TEST

/* ---- custom gradients (`fn f(..) { } grad (dy) { }`, docs/autodiff.md) ---- */

#define SWISH "fn swish(x) {\n    return x * sigmoid(x)\n} grad (dy) {\n    s = sigmoid(x)\n" \
              "    return dy * s * (1 + x * (1 - s))\n}\n"

/* dx of grad export g at x (one f32 argument, no params) into out */
static void eval_grad(ir_module *m, const char *fn, host_tensor *x, host_tensor *outs)
{
    ir_func *g = ir_module_find(m, fn);
    ck_assert_ptr_nonnull(g);
    char err[512];
    ck_assert_msg(ir_eval(g, x, NULL, outs, NULL, err, sizeof err) == 0, "%s", err);
}

START_TEST(custom_gradients_match_central_differences)
{
    /* swish twice, a two-argument fn with `none` (its argument is not in wrt) */
    char *text = slurp(AD_DIR "/custom_swish.tdsl");
    ck_assert_ptr_nonnull(text);
    gradcheck(text);
    free(text);
    /* two arguments, one a param passed in: both cotangents from the block */
    gradcheck("param W: f32[3, 4]\n"
              "fn prod(x, y) {\n    return x * y + y\n} grad (dy) {\n    return dy * y, dy * (x + 1)\n}\n"
              "fn loss(x: f32[3, 4]) { return sum(prod(x, W) * x) }\n"
              "export g = grad(loss, wrt=[x, W])\n");
    /* the helper's result is an argument (`return x`), a number argument, a reduction */
    gradcheck("fn ident(x, k) {\n    return x\n} grad (dy) {\n    return dy, none\n}\n"
              "fn msum(x) {\n    return sum(x * x)\n} grad (dy) {\n    return 2 * dy * x\n}\n"
              "fn loss(x: f32[2, 3]) { return msum(ident(x, 2)) + sum(ident(x, 1.5) * x) }\n"
              "export g = grad(loss, wrt=[x])\n");
    /* the block calls its own fn and another helper; an integer result carries no gradient */
    gradcheck(SWISH "fn cube(x) {\n    return x * x * x\n} grad (dy) {\n    y = cube(x)\n"
                    "    return dy * 3 * y / x\n}\n"
                    "fn idx(x) {\n    return argmax(x, 0)\n} grad (dy) {\n    return none\n}\n"
                    "fn loss(x: f32[4]) { return sum(cube(swish(x))) + sum(idx(x).to(f32)) }\n"
                    "export g = grad(loss, wrt=[x])\n");
    /* custom gradients inside a function called by the helper that has one: the outer wins */
    gradcheck(SWISH "fn sq(x) {\n    h = swish(x)\n    return h * h\n} grad (dy) {\n    return 2 * dy * h * "
                    "(sigmoid(x) * (1 + x * (1 - sigmoid(x))))\n}\n"
                    "fn loss(x: f32[5]) { return sum(sq(x)) }\nexport g = grad(loss, wrt=[x])\n");
}
END_TEST

START_TEST(custom_gradient_is_used_not_derived)
{
    /* a block that is not the derivative: the gradient is what it says, exactly */
    ir_module *m = compile("fn f(x) {\n    return x * x\n} grad (dy) {\n    return dy * 3\n}\n"
                           "fn outer(x) {\n    return f(x) * 5\n} grad (dy) {\n    return dy * 7\n}\n"
                           "fn loss(x: f32[4]) { return sum(f(x)) + sum(outer(x)) }\n"
                           "fn l2(x: f32[4], y: f32[4]) { return sum(outer(x) * y) }\n"
                           "fn two(x, y) {\n    return x * y\n} grad (dy) {\n    return dy * y, none\n}\n"
                           "fn l3(x: f32[4], y: f32[4]) { return sum(two(x, y)) }\n"
                           "export g = grad(loss, wrt=[x])\nexport g3 = grad(l3, wrt=[x, y])\n");
    ck_assert_msg(m != NULL, "%s", diag_buf);
    ck_assert_msg(!strstr(diag_buf, "not used yet"), "%s", diag_buf);
    float xs[4] = {1, -2, 3, 0.5f}, ys[4] = {2, 2, 2, 2};
    host_tensor x[2] = {{.dtype = DT_F32, .rank = 1, .shape = {4}, .data = xs},
                        {.dtype = DT_F32, .rank = 1, .shape = {4}, .data = ys}};
    host_tensor outs[3] = {{0}};
    eval_grad(m, "g", x, outs);
    for (int k = 0; k < 4; k++)   /* 3 from f, 7 from outer (the inner f's 3 is not used) */
        ck_assert_double_eq_tol(host_tensor_get(&outs[1], k), 10.0, 1e-6);
    host_tensor_free(&outs[0]);
    host_tensor_free(&outs[1]);
    eval_grad(m, "g3", x, outs);
    for (int k = 0; k < 4; k++) {   /* `none` where a gradient is required: zeros */
        ck_assert_double_eq_tol(host_tensor_get(&outs[1], k), 2.0, 1e-6);
        ck_assert_double_eq(host_tensor_get(&outs[2], k), 0.0);
    }
    for (int k = 0; k < 3; k++)
        host_tensor_free(&outs[k]);
    /* a param read directly inside the region (its node made there, used after it too):
     * no gradient through the block, the outside use still counts: dW = 2 W */
    m = compile("param W: f32[4]\nfn f(x) {\n    return x * W\n} grad (dy) {\n    return dy * W\n}\n"
                "fn loss(x: f32[4]) { return sum(f(x)) + sum(W * W) }\nexport g = grad(loss, wrt=[x, W])\n");
    ck_assert_msg(m != NULL, "%s", diag_buf);
    char err[512];
    ck_assert_msg(ir_eval(ir_module_find(m, "g"), x, &x[1], outs, NULL, err, sizeof err) == 0, "%s", err);
    for (int k = 0; k < 4; k++) {
        ck_assert_double_eq_tol(host_tensor_get(&outs[1], k), 2.0, 1e-6);
        ck_assert_double_eq_tol(host_tensor_get(&outs[2], k), 4.0, 1e-6);
    }
    for (int k = 0; k < 3; k++)
        host_tensor_free(&outs[k]);
}
END_TEST

START_TEST(custom_gradient_in_training_step)
{
    const char *text = "param W: f32[2, 3] = ones\n" SWISH
                       "fn loss(x: f32[2, 3]) { return sum(swish(x * W) * x) }\n"
                       "export g = grad(loss)\nexport step = sgd(loss, lr=0.5)\n";
    gradcheck(text);
    ir_module *m = compile(text);
    ck_assert_msg(m != NULL, "%s", diag_buf);
    float xs[6] = {0.5f, -1, 2, 1.5f, -0.25f, 1}, ws[6] = {1, 2, -1, 0.5f, 1, -2};
    host_tensor x = {.dtype = DT_F32, .rank = 2, .shape = {2, 3}, .data = xs};
    host_tensor W = {.dtype = DT_F32, .rank = 2, .shape = {2, 3}, .data = ws};
    host_tensor outs[2] = {{0}}, out = {0};
    char err[512];
    ck_assert_msg(ir_eval(ir_module_find(m, "g"), &x, &W, outs, NULL, err, sizeof err) == 0, "%s", err);
    float w0[6];
    memcpy(w0, ws, sizeof w0);
    ck_assert_int_eq(m->nstates, 0);
    ck_assert_msg(ir_eval_step(ir_module_find(m, "step"), &x, &W, NULL, &out, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_double_eq_tol(host_tensor_get(&out, 0), host_tensor_get(&outs[0], 0), 1e-5);
    for (int k = 0; k < 6; k++)   /* W - lr * dW, dW from the custom block */
        ck_assert_double_eq_tol(ws[k], w0[k] - 0.5 * host_tensor_get(&outs[1], k), 1e-5);
    host_tensor_free(&outs[0]);
    host_tensor_free(&outs[1]);
    host_tensor_free(&out);
}
END_TEST

START_TEST(custom_gradient_errors)
{
    /* forward only: the block is not lowered, no warning */
    ir_module *m = compile(SWISH "export fn fwd(x: f32[3]) { return swish(x) }\n");
    ck_assert_msg(m != NULL, "%s", diag_buf);
    ck_assert_msg(!strstr(diag_buf, "custom gradient"), "%s", diag_buf);
    /* wrong number of cotangents, at the block's return */
    assert_error("fn f(x, y) {\n    return x * y\n} grad (dy) {\n    return dy * y\n}\n"
                 "fn loss(x: f32[3]) { return sum(f(x, x)) }\nexport g = grad(loss, wrt=[x])\n",
                 "t.tdsl:4:15: error: the custom gradient of 'f' returns 1 cotangent; it needs 2");
    ck_assert_msg(strstr(diag_buf, "in the custom gradient of the call of 'f' here"), "%s", diag_buf);
    /* a cotangent of the wrong shape, and of the wrong dtype: both types said */
    assert_error("fn f(x) {\n    return x * x\n} grad (dy) {\n    return sum(dy)\n}\n"
                 "fn loss(x: f32[3]) { return sum(f(x)) }\nexport g = grad(loss, wrt=[x])\n",
                 "t.tdsl:4:12: error: cotangent 0 of the custom gradient of 'f' is f32, but argument 'x' is f32[3]");
    assert_error("fn f(x) {\n    return x * x\n} grad (dy) {\n    return dy.to(f64)\n}\n"
                 "fn loss(x: f32[3]) { return sum(f(x)) }\nexport g = grad(loss, wrt=[x])\n",
                 "is f64[3], but argument 'x' is f32[3]");
    /* not a tensor, no return, errors inside the block */
    assert_error("fn f(x) {\n    return x * x\n} grad (dy) {\n    return [dy]\n}\n"
                 "fn loss(x: f32[3]) { return sum(f(x)) }\nexport g = grad(loss, wrt=[x])\n",
                 "should be a tensor f32[3] or none, got a list");
    assert_error("fn f(x) {\n    return x * x\n} grad (dy) {\n    t = dy\n}\n"
                 "fn loss(x: f32[3]) { return sum(f(x)) }\nexport g = grad(loss, wrt=[x])\n",
                 "the custom gradient of 'f' ends without a return");
    assert_error("fn f(x) {\n    return x * x\n} grad (dy) {\n    return dy * nosuch\n}\n"
                 "fn loss(x: f32[3]) { return sum(f(x)) }\nexport g = grad(loss, wrt=[x])\n",
                 "nosuch");
    /* a helper with a custom gradient returns one float tensor; the block takes one dy */
    assert_error("fn f(x) {\n    return x, x\n} grad (dy) {\n    return dy\n}\n"
                 "fn loss(x: f32[3]) { a, b = f(x)\n return sum(a) }\nexport g = grad(loss, wrt=[x])\n",
                 "'f' has a custom gradient, so it must return one tensor, got a list");
    assert_error("fn f(x) {\n    return x * x\n} grad (dy, dz) {\n    return dy\n}\n"
                 "fn loss(x: f32[3]) { return sum(f(x)) }\nexport g = grad(loss, wrt=[x])\n",
                 "takes one parameter, the cotangent of its result");
}
END_TEST

/* ---- checkpoint(f, args...): recomputed in the backward pass ---- */

START_TEST(torch_checkpoint_resnet) { torch_program("checkpoint_resnet"); }
END_TEST

/* f's outputs at random args and params: bitwise equal between two functions */
static void assert_same_outputs(const ir_module *m1, const ir_func *f1, const ir_func *f2)
{
    host_tensor args[16], params[16], o1[32], o2[32];
    ck_assert_int_le(f1->nargs, 16);
    ck_assert_int_le(m1->nparams, 16);
    ck_assert_int_le(f1->nouts, 32);
    ck_assert_int_eq(f1->nouts, f2->nouts);
    for (int k = 0; k < f1->nargs; k++)
        fill(&args[k], f1->args[k].dtype, f1->args[k].rank, f1->args[k].shape, false, 3);
    for (int k = 0; k < m1->nparams; k++)
        fill(&params[k], m1->params[k].dtype, m1->params[k].rank, m1->params[k].shape, false, 3);
    host_tensor states[16];   /* a training step's, as before its first call: zeros */
    ck_assert_int_le(m1->nstates, 16);
    for (int k = 0; k < m1->nstates; k++) {
        ck_assert(host_tensor_alloc(&states[k], m1->states[k].dtype, m1->states[k].rank, m1->states[k].shape));
        memset(states[k].data, 0, host_tensor_bytes(&states[k]));
    }
    ir_eval_opts eo = {.states = states};
    char err[512];
    ck_assert_msg(ir_eval(f1, args, params, o1, &eo, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(ir_eval(f2, args, params, o2, &eo, err, sizeof err) == 0, "%s", err);
    for (int k = 0; k < f1->nouts; k++) {
        ck_assert_int_eq(host_tensor_bytes(&o1[k]), host_tensor_bytes(&o2[k]));
        ck_assert_msg(memcmp(o1[k].data, o2[k].data, host_tensor_bytes(&o1[k])) == 0, "output %d differs", k);
        host_tensor_free(&o1[k]);
        host_tensor_free(&o2[k]);
    }
    for (int k = 0; k < f1->nargs; k++)
        host_tensor_free(&args[k]);
    for (int k = 0; k < m1->nparams; k++)
        host_tensor_free(&params[k]);
    for (int k = 0; k < m1->nstates; k++)
        host_tensor_free(&states[k]);
}

/* text lowered twice: into ar with checkpoint regions (m[0], its region count in *n), and
 * into ar2 with checkpoint(f, ...) as a plain call (m[1]); both verified */
static arena ar2;
static src_file src2;
static void compile_both(const char *text, ir_module **m, int *n)
{
    lower_opts with = {.module_name = "t"}, without = {.module_name = "t", .no_recompute = true};
    m[0] = compile_source_opts(&ar, &src, text, &with, diag_buf, sizeof diag_buf);
    ck_assert_msg(m[0] != NULL, "%s", diag_buf);
    m[1] = compile_source_opts(&ar2, &src2, text, &without, diag_buf, sizeof diag_buf);
    ck_assert_msg(m[1] != NULL, "%s", diag_buf);
    ck_assert_int_eq(ir_verify(m[0], stderr), 0);
    ck_assert_int_eq(ir_verify(m[1], stderr), 0);
    ck_assert_int_eq(without.ncheckpoints, 0);
    *n = with.ncheckpoints;
}

START_TEST(checkpoint_recomputes_and_saves_memory)
{
    char *text = slurp(AD_DIR "/checkpoint_resnet.tdsl");
    ck_assert_ptr_nonnull(text);
    ir_module *m[2];
    int n;
    compile_both(text, m, &n);
    ck_assert_int_eq(n, 3);
    ir_module *m1 = m[0], *m2 = m[1];
    ir_func *g1 = ir_module_find(m1, "g"), *g2 = ir_module_find(m2, "g");
    ck_assert(g1 && g2);
    /* each block's matmuls, relu and tanh run again in the backward pass */
    int mm1 = 0, mm2 = 0;
    for (int i = 0; i < g1->nnodes; i++)
        mm1 += g1->nodes[i].op == OP_matmul;
    for (int i = 0; i < g2->nnodes; i++)
        mm2 += g2->nodes[i].op == OP_matmul;
    ck_assert_int_eq(mm1, mm2 + 6);
    /* the same gradients, to the bit (the same ops on the same values) */
    assert_same_outputs(m1, g1, g2);
    /* and a smaller arena: the blocks' activations do not wait for the backward pass */
    pass_plan p1 = pass_pipeline(&ar, g1, true), p2 = pass_pipeline(&ar2, g2, true);
    ck_assert_int_lt(p1.mem->arena_bytes, p2.mem->arena_bytes);
    free(text);
}
END_TEST

#define BLOCK "fn block(h, W) {\n    u = tanh(h @ W)\n    return h + u * u\n}\n"

START_TEST(checkpoint_forms)
{
    /* nested: the outer region is recomputed once, the inner one inside it */
    gradcheck("param W: f32[4, 4]\n" BLOCK "fn two(h, W) {\n    return checkpoint(block, checkpoint(block, h, W), W)\n}\n"
              "fn loss(x: f32[3, 4]) { return sum(checkpoint(two, x, W) * x) }\nexport g = grad(loss, wrt=[x, W])\n");
    /* a custom gradient inside; keyword arguments; a tuple result; an argument returned as is */
    gradcheck(SWISH "param W: f32[4, 4]\n"
              "fn pair(h, W) {\n    return swish(h @ W), h\n}\n"
              "fn same(h) {\n    return h\n}\n"
              "fn loss(x: f32[3, 4]) {\n    a, b = checkpoint(pair, x, W=W)\n"
              "    return sum(a * b) + sum(checkpoint(same, x) * a)\n}\nexport g = grad(loss, wrt=[x, W])\n");
    /* a param read inside the region and after it */
    gradcheck("param W: f32[4, 4]\n" BLOCK "fn blockw(h) {\n    return tanh(h @ W)\n}\n"
              "fn loss(x: f32[3, 4]) { return sum(checkpoint(blockw, x) @ W) }\nexport g = grad(loss)\n");
    /* a training step: the same update as without checkpoint */
    const char *step = "param W: f32[4, 4] = normal(0, 0.5)\n" BLOCK
                       "fn loss(x: f32[3, 4]) { return sum(checkpoint(block, checkpoint(block, x, W), W)) }\n"
                       "export step = adam(loss, lr=0.1)\n";
    ir_module *m[2];
    int n;
    compile_both(step, m, &n);
    ck_assert_int_eq(n, 2);
    ir_module *m1 = m[0], *m2 = m[1];
    ir_func *s1 = ir_module_find(m1, "step"), *s2 = ir_module_find(m2, "step");
    ck_assert(s1 && s2 && s1->nnodes > s2->nnodes);
    assert_same_outputs(m1, s1, s2);   /* loss, then the updated W and Adam's state */
    /* outside a gradient, checkpoint is a plain call: nothing recorded */
    lower_opts fwd = {.module_name = "t"};
    ck_assert_ptr_nonnull(compile_source_opts(&ar, &src, "param W: f32[4, 4]\n" BLOCK
                                              "export fn f(x: f32[3, 4]) { return checkpoint(block, x, W) }\n",
                                              &fwd, diag_buf, sizeof diag_buf));
    ck_assert_int_eq(fwd.ncheckpoints, 0);
    /* the first argument must be a helper fn */
    assert_error(BLOCK "fn loss(x: f32[3]) { return sum(checkpoint(x, x)) }\nexport g = grad(loss, wrt=[x])\n",
                 "checkpoint() needs a helper fn as its first argument");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("autodiff");
    TCase *tc = tcase_create("rules");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, unary_rules);
    tcase_add_test(tc, binary_rules_and_broadcasting);
    tcase_add_test(tc, maximum_ties_split_like_torch);
    tcase_add_test(tc, reduction_rules);
    tcase_add_test(tc, nn_rules);
    tcase_add_test(tc, matmul_rules);
    tcase_add_test(tc, view_rules);
    tcase_add_test(tc, stop_gradient_cuts);
    suite_add_tcase(s, tc);
    TCase *te = tcase_create("exports");
    tcase_add_test(te, exports_names_and_order);
    tcase_add_test(te, user_errors);
    suite_add_tcase(s, te);
    TCase *tt = tcase_create("torch");
    tcase_set_timeout(tt, 120);
    tcase_add_test(tt, torch_mlp_xent);
    tcase_add_test(tt, torch_layernorm_gelu);
    tcase_add_test(tt, torch_attention);
    tcase_add_test(tt, torch_bias_broadcast);
    suite_add_tcase(s, tt);
    TCase *ts = tcase_create("scatter");
    tcase_set_timeout(ts, 120);
    tcase_add_test(ts, indexing_rules);
    tcase_add_test(ts, embedding_lookup_rule);
    tcase_add_test(ts, torch_embedding);
    suite_add_tcase(s, ts);
    TCase *tg = tcase_create("custom");
    tcase_set_timeout(tg, 120);
    tcase_add_test(tg, custom_gradients_match_central_differences);
    tcase_add_test(tg, custom_gradient_is_used_not_derived);
    tcase_add_test(tg, custom_gradient_in_training_step);
    tcase_add_test(tg, custom_gradient_errors);
    suite_add_tcase(s, tg);
    TCase *tk = tcase_create("checkpoint");
    tcase_set_timeout(tk, 120);
    tcase_add_test(tk, torch_checkpoint_resnet);
    tcase_add_test(tk, checkpoint_recomputes_and_saves_memory);
    tcase_add_test(tk, checkpoint_forms);
    suite_add_tcase(s, tk);
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
