/* Lowering: names, constants, promotion, broadcasting, matmul rules and exact layouts,
 * checked on the IR that lower_file() produces from small sources. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/ast.h"
#include "frontend/lower.h"
#include "compile.h"
#include "ir/ir.h"

static arena ar;
static src_file src;
static char diag_buf[8192];

/* Compiles text; returns the module or NULL, with diagnostics in diag_buf. */
static ir_module *compile_defs(const char *text, int ndefs, lower_define *defs)
{
    ir_module *m = compile_source(&ar, &src, "t", text, ndefs, defs, diag_buf, sizeof diag_buf);
    if (m)
        ck_assert_int_eq(ir_verify(m, stderr), 0);
    return m;
}

static ir_module *compile(const char *text) { return compile_defs(text, 0, NULL); }

/* the node returned as output k of the first function */
static const ir_node *out(ir_module *m, int k)
{
    ck_assert_ptr_nonnull(m);
    ir_func *f = m->funcs[0];
    ck_assert_int_lt(k, f->nouts);
    return &f->nodes[f->outs[k]];
}

static void assert_shape(const ir_node *n, int rank, const int64_t *shape)
{
    ck_assert_int_eq(n->rank, rank);
    for (int d = 0; d < rank; d++)
        ck_assert_int_eq(n->shape[d], shape[d]);
}

static void assert_strides(const ir_node *n, const int64_t *strides, int64_t offset)
{
    for (int d = 0; d < n->rank; d++)
        ck_assert_int_eq(n->strides[d], strides[d]);
    ck_assert_int_eq(n->offset, offset);
}

static void assert_error(const char *text, const char *needle)
{
    ck_assert_ptr_null(compile(text));
    if (!strstr(diag_buf, needle))
        ck_abort_msg("expected '%s' in diagnostics:\n%s", needle, diag_buf);
}

START_TEST(promotion)
{
    ir_module *m = compile("export fn f(a: i32[3], b: f32[3], h: f16[3], s: f64, t: bool[3]) {\n"
                           "  return a + b, a * 2, a * 2.5, h + b, b + s, h * 2.0, t + t, a / a, a > 1, h + a\n}\n");
    /* each checked against PyTorch 2.x */
    ir_dtype want[] = {DT_F32, DT_I32, DT_F32, DT_F32, DT_F32, DT_F16, DT_BOOL, DT_F32, DT_BOOL, DT_F16};
    for (int k = 0; k < 10; k++)
        ck_assert_msg(out(m, k)->dtype == want[k], "output %d: got %s, want %s", k, ir_dtype_name(out(m, k)->dtype),
                      ir_dtype_name(want[k]));
}
END_TEST

START_TEST(broadcasting)
{
    ir_module *m = compile("export fn f(a: f32[3, 1], b: f32[4], c: f32) { return a + b, b * c, a - 1 }\n");
    assert_shape(out(m, 0), 2, (int64_t[]){3, 4});
    assert_shape(out(m, 1), 1, (int64_t[]){4});
    assert_shape(out(m, 2), 2, (int64_t[]){3, 1});
    /* the broadcast operand is an expand view with stride 0 */
    ir_func *f = m->funcs[0];
    const ir_node *add = out(m, 0);
    const ir_node *ea = &f->nodes[add->in[0]], *eb = &f->nodes[add->in[1]];
    ck_assert_int_eq(ea->op, OP_expand);
    assert_strides(ea, (int64_t[]){1, 0}, 0);
    assert_strides(eb, (int64_t[]){0, 1}, 0);
    assert_error("export fn f(a: f32[3, 2], b: f32[4]) { return a + b }\n", "f32[3, 2] and f32[4] cannot be broadcast");
}
END_TEST

START_TEST(views_have_pytorch_strides)
{
    ir_module *m = compile("export fn f(x: f32[3, 4]) {\n"
                           "  return x.T, x[1:3, ::2], x[:, -1], x.unsqueeze(1), x.T.unsqueeze(0), x.expand(2, 3, 4),"
                           " x.view(2, 6), x.T.reshape(12), x[1], x.T.contiguous()\n}\n");
    assert_strides(out(m, 0), (int64_t[]){1, 4}, 0);
    assert_shape(out(m, 1), 2, (int64_t[]){2, 2});
    assert_strides(out(m, 1), (int64_t[]){4, 2}, 4);
    assert_strides(out(m, 2), (int64_t[]){4}, 3);
    assert_strides(out(m, 3), (int64_t[]){4, 4, 1}, 0);
    assert_strides(out(m, 4), (int64_t[]){4, 1, 4}, 0);   /* torch: x.T.unsqueeze(0).stride() == (4, 1, 4) */
    assert_strides(out(m, 5), (int64_t[]){0, 4, 1}, 0);
    assert_strides(out(m, 6), (int64_t[]){6, 1}, 0);
    /* reshape of a transposed tensor must copy: its input is a copy node */
    const ir_node *r = out(m, 7);
    ck_assert_int_eq(r->op, OP_view);
    ck_assert_int_eq(m->funcs[0]->nodes[r->in[0]].op, OP_copy);
    assert_strides(out(m, 8), (int64_t[]){1}, 4);
    ck_assert_int_eq(out(m, 9)->op, OP_copy);
    ck_assert(ir_is_contiguous(out(m, 9)));
    /* views share storage with the argument */
    ck_assert_int_eq(out(m, 0)->storage, out(m, 1)->storage);
}
END_TEST

START_TEST(view_error)
{
    assert_error("export fn f(x: f32[3, 4]) { return x.T.view(12) }\n", "cannot view f32[4, 3] with strides [1, 4]");
    ck_assert_ptr_nonnull(strstr(diag_buf, "t.tdsl:1:"));
    ck_assert_ptr_nonnull(strstr(diag_buf, "contiguous()"));
    /* contiguous() of a contiguous value is the value itself: no copy */
    ir_module *m = compile("export fn f(x: f32[3, 4]) { return x.contiguous() }\n");
    ck_assert_int_eq(out(m, 0)->op, OP_arg);
}
END_TEST

START_TEST(matmul_forms)
{
    ir_module *m = compile("export fn f(v: f32[4], a: f32[3, 4], b: f32[2, 3, 4], c: f32[4, 5], d: f32[2, 1, 3, 4],"
                           " e: f32[5, 4, 6]) {\n  return v @ v, a @ v, v @ c, b @ v, a @ c, d @ e, b @ c\n}\n");
    assert_shape(out(m, 0), 0, NULL);
    assert_shape(out(m, 1), 1, (int64_t[]){3});
    assert_shape(out(m, 2), 1, (int64_t[]){5});
    assert_shape(out(m, 3), 2, (int64_t[]){2, 3});
    assert_shape(out(m, 4), 2, (int64_t[]){3, 5});
    assert_shape(out(m, 5), 4, (int64_t[]){2, 5, 3, 6});
    assert_shape(out(m, 6), 3, (int64_t[]){2, 3, 5});
    assert_error("export fn f(a: f32[3, 4], b: f32[3, 4]) { return a @ b }\n", "f32[3, 4] and f32[3, 4] do not match");
}
END_TEST

START_TEST(constants_and_defines)
{
    const char *text = "const B = 2 * 3\nconst H = B + 1\nexport fn f(x: f32[B, H]) { return x.shape[1] * B }\n";
    ir_module *m = compile(text);
    ck_assert_int_eq(m->funcs[0]->args[0].shape[0], 6);
    ck_assert_int_eq(m->funcs[0]->args[0].shape[1], 7);
    lower_define d = {"B", "10", false};
    m = compile_defs(text, 1, &d);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(m->funcs[0]->args[0].shape[1], 11);
    lower_define bad = {"Q", "1", false};
    ck_assert_ptr_null(compile_defs(text, 1, &bad));
    ck_assert_ptr_nonnull(strstr(diag_buf, "no const named 'Q'"));
}
END_TEST

START_TEST(helpers_loops_tuples)
{
    ir_module *m = compile("const L = 3\n"
                           "export fn f(x: f32[2, 2]) -> (f32[2, 2], f32) {\n"
                           "  h = x\n  for i in 0..L { h = layer(h) }\n  a, b = pair(h)\n  return a, b\n}\n"
                           "fn layer(x) { return tanh(x) * 2 }\n"
                           "fn pair(x) { return x, sum(x) }\n");
    ir_func *f = m->funcs[0];
    int tanhs = 0;
    for (int k = 0; k < f->nnodes; k++)
        tanhs += f->nodes[k].op == OP_tanh;
    ck_assert_int_eq(tanhs, 3);
    ck_assert_int_eq(f->nouts, 2);
    assert_shape(out(m, 1), 0, NULL);
}
END_TEST

START_TEST(user_errors)
{
    assert_error("export fn f(x: f32[3]) { return foo(x) }\n", "unknown function 'foo'");
    assert_error("export fn f(x: f32[3]) { return xx }\n", "did you mean 'x'");
    assert_error("fn a(x) { return b(x) }\nfn b(x) { return a(x) }\nexport fn f(x: f32[3]) { return a(x) }\n",
                 "recursion");
    assert_error("export fn f(x: f32[3]) { return x[x > 0] }\n", "boolean mask");
    ck_assert_ptr_nonnull(strstr(diag_buf, "where(mask, x, 0)"));
    assert_error("export fn f(x: f32[3]) -> f32[4] { return x }\n", "should be f32[4], got f32[3]");
    assert_error("export fn f(x: f32[3]) { return sum(x, axis=1) }\n", "axis 1 is out of range");
    assert_error("export fn f(x: f32[3]) { return softmax(x, 0, 1) }\n", "at most 2 positional");
    assert_error("export fn f(x: f32[3]) { return x & x }\n", "needs bool operands");
    assert_error("fn h(x: f32[2]) { return x }\nexport fn f(x: f32[3]) { return h(x) }\n",
                 "argument 'x' of 'h' should be f32[2], got f32[3]");
    assert_error("export fn f(x: f32[3]) { y = grad(x)\n return y }\n", "export g = grad");
    /* several errors in one file are all reported */
    ck_assert_ptr_null(compile("export fn f(x: f32[3]) { return aa }\nexport fn g(x: f32[3]) { return bb }\n"));
    ck_assert_ptr_nonnull(strstr(diag_buf, "'aa'"));
    ck_assert_ptr_nonnull(strstr(diag_buf, "'bb'"));
}
END_TEST

START_TEST(params_and_exports)
{
    ir_module *m = compile("param W: f32[4, 2] = normal(0, 0.5)\nparam b: f32[2]\n"
                           "fn loss(x: f32[3, 4]) { return sum(x @ W + b) }\n"
                           "export fn fwd(x: f32[3, 4]) { return x @ W + b }\n"
                           "export g = grad(loss)\n");
    ck_assert_int_eq(m->nparams, 2);
    ck_assert_int_eq(m->params[0].init, INIT_NORMAL);
    ck_assert(m->params[0].b == 0.5);
    ck_assert_int_eq(m->params[1].init, INIT_ZEROS);
    ck_assert_int_eq(m->nfuncs, 2);   /* fwd, and g made by autodiff (tests/unit/test_autodiff.c) */
    ck_assert_str_eq(m->funcs[1]->name, "g");
    ck_assert_int_eq(m->funcs[1]->nouts, 3);
    assert_error("param W: f32[2] = normal(0)\n", "normal takes 2 arguments");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("frontend");
    TCase *tc = tcase_create("lower");
    tcase_add_test(tc, promotion);
    tcase_add_test(tc, broadcasting);
    tcase_add_test(tc, views_have_pytorch_strides);
    tcase_add_test(tc, view_error);
    tcase_add_test(tc, matmul_forms);
    tcase_add_test(tc, constants_and_defines);
    tcase_add_test(tc, helpers_loops_tuples);
    tcase_add_test(tc, user_errors);
    tcase_add_test(tc, params_and_exports);
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
