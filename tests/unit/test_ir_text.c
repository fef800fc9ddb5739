/* The IR's text form, verifier, layout table and Graphviz output (ir/print.c, parse.c,
 * verify.c, dot.c): print -> parse -> print is the identity, node for node; hand-written
 * text with every op parses; errors carry exact line:col; garbage never crashes. */
#include "ir/ir.h"
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

/* Runs fn(out, arg) into a malloc'd string (through a temporary file). */
typedef void (*emit_fn)(FILE *, const void *);
static char *capture(emit_fn fn, const void *arg)
{
    FILE *t = tmpfile();
    ck_assert_ptr_nonnull(t);
    fn(t, arg);
    long n = ftell(t);
    char *s = calloc(1, (size_t)n + 1);
    rewind(t);
    size_t got = fread(s, 1, (size_t)n, t);
    s[got] = 0;
    fclose(t);
    return s;
}
static void emit_module(FILE *o, const void *m) { ir_print_module(o, m); }
static void emit_layout(FILE *o, const void *f) { ir_print_layout(o, f); }
static void emit_dot(FILE *o, const void *f) { ir_print_dot(o, f, false); }
static void emit_dot_layout(FILE *o, const void *f) { ir_print_dot(o, f, true); }

static char *print_module(const ir_module *m) { return capture(emit_module, m); }

/* Diagnostics go to a temporary file; read back what was written since diag_begin. */
static FILE *diag_file;
static void diag_begin(void)
{
    diag_file = tmpfile();
    ck_assert_ptr_nonnull(diag_file);
    diag_reset(diag_file);
}
static char *diag_end(void)
{
    long n = ftell(diag_file);
    char *s = calloc(1, (size_t)n + 1);
    rewind(diag_file);
    size_t got = fread(s, 1, (size_t)n, diag_file);
    s[got] = 0;
    fclose(diag_file);
    diag_reset(NULL);
    return s;
}

static ir_module *parse_text(arena *ar, const char *name, const char *text)
{
    src_file *f = arena_alloc(ar, sizeof *f);
    f->name = name;
    f->text = arena_strdup(ar, text);
    f->len = strlen(text);
    return ir_parse_module(ar, f);
}

static bool same_double(double a, double b)
{
    return (isnan(a) && isnan(b)) || (a == b && signbit(a) == signbit(b));
}
static bool same_str(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

/* Field-by-field equality of two modules (layout included: it is re-derived). */
static void assert_modules_equal(const ir_module *a, const ir_module *b)
{
    ck_assert_str_eq(a->name, b->name);
    ck_assert_uint_eq(a->seed, b->seed);
    ck_assert_int_eq(a->nparams, b->nparams);
    for (int i = 0; i < a->nparams; i++) {
        const ir_param *p = &a->params[i], *q = &b->params[i];
        ck_assert_str_eq(p->name, q->name);
        ck_assert_int_eq(p->dtype, q->dtype);
        ck_assert_int_eq(p->rank, q->rank);
        for (int d = 0; d < p->rank; d++)
            ck_assert_int_eq(p->shape[d], q->shape[d]);
        ck_assert_int_eq(p->init, q->init);
        ck_assert(same_double(p->a, q->a) && same_double(p->b, q->b));
        ck_assert_int_eq(p->line, q->line);
        ck_assert_int_eq(p->col, q->col);
    }
    ck_assert_int_eq(a->nfuncs, b->nfuncs);
    for (int fi = 0; fi < a->nfuncs; fi++) {
        const ir_func *f = a->funcs[fi], *g = b->funcs[fi];
        ck_assert_str_eq(f->name, g->name);
        ck_assert_int_eq(f->line, g->line);
        ck_assert_int_eq(f->col, g->col);
        ck_assert_int_eq(f->nargs, g->nargs);
        for (int k = 0; k < f->nargs; k++) {
            ck_assert_str_eq(f->args[k].name, g->args[k].name);
            ck_assert_int_eq(f->args[k].dtype, g->args[k].dtype);
            ck_assert_int_eq(f->args[k].rank, g->args[k].rank);
            for (int d = 0; d < f->args[k].rank; d++)
                ck_assert_int_eq(f->args[k].shape[d], g->args[k].shape[d]);
        }
        ck_assert_int_eq(f->nnodes, g->nnodes);
        for (int i = 0; i < f->nnodes; i++) {
            const ir_node *n = &f->nodes[i], *m = &g->nodes[i];
            ck_assert_int_eq(n->op, m->op);
            ck_assert_int_eq(n->dtype, m->dtype);
            ck_assert_int_eq(n->rank, m->rank);
            for (int d = 0; d < n->rank; d++) {
                ck_assert_int_eq(n->shape[d], m->shape[d]);
                ck_assert_int_eq(n->strides[d], m->strides[d]);
            }
            ck_assert_int_eq(n->offset, m->offset);
            ck_assert_int_eq(n->storage, m->storage);
            ck_assert_int_eq(n->view_of, m->view_of);
            ck_assert_int_eq(n->nin, m->nin);
            for (int k = 0; k < n->nin; k++)
                ck_assert_int_eq(n->in[k], m->in[k]);
            ck_assert_int_eq(n->nlist, m->nlist);
            for (int k = 0; k < n->nlist; k++)
                ck_assert_int_eq(n->list[k], m->list[k]);
            for (int k = 0; k < 4; k++)
                ck_assert_int_eq(n->i[k], m->i[k]);
            for (int k = 0; k < 2; k++)
                ck_assert_msg(same_double(n->f[k], m->f[k]), "%%%d f[%d]: %.17g vs %.17g", i, k, n->f[k], m->f[k]);
            ck_assert(same_str(n->str, m->str));
            ck_assert_msg(same_str(n->name, m->name), "%%%d name", i);
            ck_assert_int_eq(n->line, m->line);
            ck_assert_int_eq(n->col, m->col);
        }
        ck_assert_int_eq(f->nouts, g->nouts);
        for (int k = 0; k < f->nouts; k++)
            ck_assert_int_eq(f->outs[k], g->outs[k]);
    }
}

/* Builder shorthand: appends a node and fails the test if the shape rule rejects it. */
static int node(ir_func *f, ir_proto p)
{
    char err[256] = "";
    int id = ir_append(f, &p, err, sizeof err);
    ck_assert_msg(id >= 0, "ir_append: %s", err);
    return id;
}
#define IN(...) (const int[]){__VA_ARGS__}

/* A module with awkward values everywhere the text form has to be exact. */
static ir_module *build_module(arena *ar)
{
    ir_module *m = ir_module_new(ar, "my model");
    m->seed = UINT64_MAX;
    ir_add_param(m, &(ir_param){.name = "W1", .dtype = DT_F32, .rank = 2, .shape = {3, 4},
                                .init = INIT_NORMAL, .a = 0, .b = 0.05, .line = 2, .col = 1});
    ir_add_param(m, &(ir_param){.name = "b1", .dtype = DT_F32, .rank = 1, .shape = {4}, .init = INIT_ZEROS});
    ir_add_param(m, &(ir_param){.name = "s", .dtype = DT_F64, .rank = 0, .init = INIT_FULL, .a = INFINITY});
    ir_add_param(m, &(ir_param){.name = "U", .dtype = DT_BF16, .rank = 1, .shape = {2}, .init = INIT_UNIFORM,
                                .a = -0.1, .b = 1.0 / 3});
    ir_add_param(m, &(ir_param){.name = "K", .dtype = DT_F32, .rank = 2, .shape = {4, 4},
                                .init = INIT_KAIMING_UNIFORM});
    ir_arg args[2] = {{.name = "x", .dtype = DT_F32, .rank = 2, .shape = {2, 3}},
                      {.name = "odd arg", .dtype = DT_I32, .rank = 1, .shape = {2}}};
    ir_func *f = ir_func_new(m, "forward", 2, args);
    f->line = 12;
    f->col = 1;
    int x = node(f, (ir_proto){.op = OP_arg, .i = {0}, .name = "x", .line = 12, .col = 19});
    int w = node(f, (ir_proto){.op = OP_param, .i = {0}, .name = "W1", .line = 13, .col = 9});
    int h = node(f, (ir_proto){.op = OP_matmul, .nin = 2, .in = IN(x, w), .name = "h", .line = 13, .col = 11});
    int b = node(f, (ir_proto){.op = OP_param, .i = {1}});
    int bu = node(f, (ir_proto){.op = OP_unsqueeze, .nin = 1, .in = IN(b), .i = {0}});
    int be = node(f, (ir_proto){.op = OP_expand, .nin = 1, .in = IN(bu), .nlist = 2, .list = {2, 4}});
    int y = node(f, (ir_proto){.op = OP_add, .nin = 2, .in = IN(h, be), .name = "y"});
    int t = node(f, (ir_proto){.op = OP_permute, .nin = 1, .in = IN(y), .nlist = 2, .list = {1, 0}, .name = "xt"});
    node(f, (ir_proto){.op = OP_leaky_relu, .nin = 1, .in = IN(y), .f = {0.1}});
    node(f, (ir_proto){.op = OP_clamp, .nin = 1, .in = IN(y), .f = {-INFINITY, NAN}});
    node(f, (ir_proto){.op = OP_constant, .dtype = DT_F64, .f = {1e-300}, .name = "tiny"});
    node(f, (ir_proto){.op = OP_constant, .dtype = DT_F32, .f = {5e-324}});
    int s = node(f, (ir_proto){.op = OP_sum, .nin = 1, .in = IN(t), .nlist = 2, .list = {0, 1}, .name = "a \"q\"\n\t"});
    node(f, (ir_proto){.op = OP_copy, .nin = 1, .in = IN(t), .line = 20});
    node(f, (ir_proto){.op = OP_full, .dtype = DT_F16, .nlist = 1, .list = {2}, .f = {-0.0}, .col = 7});
    node(f, (ir_proto){.op = OP_slice, .nin = 1, .in = IN(t), .i = {0, 1, 4, 2}});
    node(f, (ir_proto){.op = OP_arg, .i = {1}, .name = "odd arg"});
    ir_add_output(f, y);
    ir_add_output(f, s);
    ir_add_output(f, y);

    ir_func *g = ir_func_new(m, "g", 0, NULL);
    int e = node(g, (ir_proto){.op = OP_eye, .dtype = DT_F32, .i = {2}});
    ir_add_output(g, e);
    return m;
}

/* Every op of ops.def, hand-written with comments, blank lines and loose spacing. */
static const char *all_ops_text =
    "# every op once\n"
    "module allops seed=42\n"
    "param W: f32[3, 4] = normal(0, 0.05)   ; @3:1\n"
    "param b: f32[4]            # default init: zeros\n"
    "param g: f32[4] = ones\n"
    "state s: i64[2]   ; @5:1\n"
    "\n"
    "func f(x: f32[2, 3], y: i64[2], m: bool[2, 4]) {   ; @10:1\n"
    "  %0 = arg index=0 : f32[2, 3]      ; x @10:8\n"
    "  %1 = param index=0 : f32[3, 4]    ; W\n"
    "  %2 = matmul %0, %1 : f32[2, 4]    ; @11:5\n"
    "  %3 = param index=1 : f32[4]\n"
    "  %4 = unsqueeze %3 axis=0 : f32[1, 4]\n"
    "  %5 = expand %4 shape=[2, 4] : f32[2, 4]\n"
    "  %6 = add %2, %5 : f32[2, 4]\n"
    "  %7 = neg %6 : f32[2, 4]\n"
    "  %8 = abs %7 : f32[2, 4]\n"
    "  %9 = sign %8 : f32[2, 4]\n"
    "  %10 = exp %9 : f32[2, 4]\n"
    "  %11 = log %10 : f32[2, 4]\n"
    "  %12 = log1p %11 : f32[2, 4]\n"
    "  %13 = sqrt %12 : f32[2, 4]\n"
    "  %14 = rsqrt %13 : f32[2, 4]\n"
    "  %15 = sin %14 : f32[2, 4]\n"
    "  %16 = cos %15 : f32[2, 4]\n"
    "  %17 = tanh %16 : f32[2, 4]\n"
    "  %18 = sigmoid %17 : f32[2, 4]\n"
    "  %19 = relu %18 : f32[2, 4]\n"
    "  %20 = gelu %19 tanh=1 : f32[2, 4]\n"
    "  %21 = silu %20 : f32[2, 4]\n"
    "  %22 = softplus %21 : f32[2, 4]\n"
    "  %23 = leaky_relu %22 slope=0.01 : f32[2, 4]\n"
    "  %24 = clamp %23 hi=6 lo=-inf : f32[2, 4]   # attributes in any order\n"
    "  %25 = arg index=2 : bool[2, 4]\n"
    "  %26 = not %25 : bool[2, 4]\n"
    "  %27 = cast %26 : f32[2, 4]\n"
    "  %28 = sub %24, %27 : f32[2, 4]\n"
    "  %29 = mul %28, %28 : f32[2, 4]\n"
    "  %30 = div %29, %27 : f32[2, 4]\n"
    "  %31 = mod %30, %27 : f32[2, 4]\n"
    "  %32 = pow %31, %27 : f32[2, 4]\n"
    "  %33 = maximum %32, %27 : f32[2, 4]\n"
    "  %34 = minimum %33, %27 : f32[2, 4]\n"
    "  %35 = eq %34, %27 : bool[2, 4]\n"
    "  %36 = ne %34, %27 : bool[2, 4]\n"
    "  %37 = lt %34, %27 : bool[2, 4]\n"
    "  %38 = le %34, %27 : bool[2, 4]\n"
    "  %39 = gt %34, %27 : bool[2, 4]\n"
    "  %40 = ge %34, %27 : bool[2, 4]\n"
    "  %41 = and %35, %36 : bool[2, 4]\n"
    "  %42 = or %41, %37 : bool[2, 4]\n"
    "  %43 = where %42, %34, %27 : f32[2, 4]\n"
    "  %44 = sum %43 axes=[0, 1] keepdim=0 : f32\n"
    "  %45 = mean %43 axes=[1] keepdim=1 : f32[2, 1]\n"
    "  %46 = max %43 axes=[0] keepdim=0 : f32[4]\n"
    "  %47 = min %43 axes=[1] : f32[2]          # keepdim omitted: 0\n"
    "  %48 = prod %43 axes=[1] keepdim=0 : f32[2]\n"
    "  %49 = argmax %43 axes=[1] keepdim=0 : i64[2]\n"
    "  %50 = argmin %43 axes=[0, 1] keepdim=1 : i64[1, 1]\n"
    "  %51 = logsumexp %43 axes=[1] keepdim=0 : f32[2]\n"
    "  %52 = var %43 axes=[1] keepdim=0 : f32[2]\n"
    "  %53 = softmax %43 axis=1 : f32[2, 4]\n"
    "  %54 = log_softmax %53 axis=1 : f32[2, 4]\n"
    "  %55 = arg index=1 : i64[2]\n"
    "  %56 = cross_entropy %54, %55 : f32     ; loss @20:3\n"
    "  %57 = param index=2 : f32[4]\n"
    "  %58 = layer_norm %54, %57, %3 eps=1e-05 : f32[2, 4]\n"
    "  %59 = one_hot %55 classes=4 : i64[2, 4]\n"
    "  %60 = view %58 shape=[8] : f32[8]\n"
    "  %61 = permute %58 dims=[1, 0] : f32[4, 2]   ; \"x t\"\n"
    "  %62 = slice %61 axis=0 start=1 stop=4 step=2 : f32[2, 2]\n"
    "  %63 = select %61 axis=1 index=0 : f32[4]\n"
    "  %64 = unsqueeze %63 axis=1 : f32[4, 1]\n"
    "  %65 = squeeze %64 axes=[1] : f32[4]\n"
    "  %66 = stop_gradient %65 : f32[4]\n"
    "  %67 = copy %61 : f32[4, 2]\n"
    "  %68 = concat %67, %61, %67 axis=1 : f32[4, 6]\n"
    "  %69 = index %68, %55 axis=0 : f32[2, 6]\n"
    "  %70 = gather %68, %59 axis=1 : f32[2, 4]\n"
    "  %71 = const value=2.5 : f32\n"
    "  %72 = full shape=[2, 2] value=-0 : f64[2, 2]\n"
    "  %73 = arange start=0 stop=10 step=3 : i64[4]\n"
    "  %74 = eye n=3 : f32[3, 3]\n"
    "  %75 = arange start=5 stop=0 step=-2 : i32[3]\n"
    "  %76 = const value=nan : f64\n"
    "  %77 = index_add %69, %55 axis=0 shape=[4, 6] : f32[4, 6]\n"
    "  %78 = gather_add %70, %59 axis=1 shape=[2, 6] : f32[2, 6]\n"
    "  %79 = slice_scatter %62 axis=0 start=1 stop=4 step=2 shape=[4, 2] : f32[4, 2]\n"
    "  %80 = state index=0 : i64[2]\n"
    "\n"
    "  return %44, %56, %62, %66, %70\n"
    "}\n";

/* ---- tests ---- */

START_TEST(builder_roundtrip)
{
    arena ar;
    arena_init(&ar);
    ir_module *m = build_module(&ar);
    ck_assert_int_eq(ir_verify(m, stderr), 0);
    char *t1 = print_module(m);
    /* a few spellings the format promises */
    ck_assert_ptr_nonnull(strstr(t1, "module \"my model\" seed=18446744073709551615\n"));
    ck_assert_ptr_nonnull(strstr(t1, "param W1: f32[3, 4] = normal(0, 0.05)  ; @2:1\n"));
    ck_assert_ptr_nonnull(strstr(t1, "param s: f64 = full(inf)\n"));
    ck_assert_ptr_nonnull(strstr(t1, "param K: f32[4, 4] = kaiming_uniform\n"));
    ck_assert_ptr_nonnull(strstr(t1, "func forward(x: f32[2, 3], \"odd arg\": i32[2]) {  ; @12:1\n"));
    ck_assert_ptr_nonnull(strstr(t1, "  %2 = matmul %0, %1 : f32[2, 4]"));
    ck_assert_ptr_nonnull(strstr(t1, "; h @13:11\n"));
    ck_assert_ptr_nonnull(strstr(t1, "clamp %6 lo=-inf hi=nan : f32[2, 4]\n"));
    ck_assert_ptr_nonnull(strstr(t1, "leaky_relu %6 slope=0.1 : f32[2, 4]\n"));
    ck_assert_ptr_nonnull(strstr(t1, "sum %7 axes=[0, 1] keepdim=0 : f32 "));
    ck_assert_ptr_nonnull(strstr(t1, "; \"a \\\"q\\\"\\n\\t\"\n"));
    ck_assert_ptr_nonnull(strstr(t1, "full shape=[2] value=-0 : f16"));
    ck_assert_ptr_nonnull(strstr(t1, "  return %6, %12, %6\n}\n"));
    ck_assert_ptr_nonnull(strstr(t1, "  %0 = eye n=2 : f32[2, 2]\n"));

    diag_begin();
    ir_module *m2 = parse_text(&ar, "rt.ir", t1);
    char *d = diag_end();
    ck_assert_msg(m2 != NULL, "parse failed:\n%s\n---\n%s", d, t1);
    ck_assert_str_eq(d, "");
    char *t2 = print_module(m2);
    ck_assert_str_eq(t1, t2);
    assert_modules_equal(m, m2);
    free(t1);
    free(t2);
    free(d);
    arena_free(&ar);
}
END_TEST

START_TEST(every_op_parses)
{
    arena ar;
    arena_init(&ar);
    diag_begin();
    ir_module *m = parse_text(&ar, "all.ir", all_ops_text);
    char *d = diag_end();
    ck_assert_msg(m != NULL, "%s", d);
    ck_assert_int_eq(ir_verify(m, stderr), 0);
    ir_func *f = ir_module_find(m, "f");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(f->line, 10);
    ck_assert_int_eq(f->nnodes, 81);
    ck_assert_int_eq(f->nouts, 5);
    bool seen[OP_COUNT] = {0};
    for (int i = 0; i < f->nnodes; i++)
        seen[f->nodes[i].op] = true;
    for (int op = 0; op < OP_COUNT; op++)
        ck_assert_msg(seen[op], "op '%s' missing from the hand-written text", ir_ops[op].name);
    /* metadata and attributes landed in the right fields */
    ck_assert_str_eq(f->nodes[0].name, "x");
    ck_assert_int_eq(f->nodes[0].line, 10);
    ck_assert_int_eq(f->nodes[0].col, 8);
    ck_assert_ptr_null(f->nodes[2].name);
    ck_assert_int_eq(f->nodes[2].line, 11);
    ck_assert_str_eq(f->nodes[61].name, "x t");
    ck_assert(isinf(f->nodes[24].f[0]) && f->nodes[24].f[0] < 0);
    ck_assert(f->nodes[24].f[1] == 6);
    ck_assert(isnan(f->nodes[76].f[0]));
    ck_assert(f->nodes[72].f[0] == 0 && signbit(f->nodes[72].f[0]));
    ck_assert_int_eq(f->nodes[73].i[2], 10);
    ck_assert_int_eq(f->nodes[73].i[1], 3);
    /* layout came from ir_append: the permute is a strided view of %58 */
    ck_assert_int_eq(f->nodes[61].strides[0], 1);
    ck_assert_int_eq(f->nodes[61].strides[1], 4);
    ck_assert_int_eq(f->nodes[61].view_of, 58);
    ck_assert_int_eq(f->nodes[62].offset, 1);
    ck_assert_int_eq(f->nodes[62].strides[0], 2);
    ck_assert_int_eq(f->nodes[5].strides[0], 0);   /* expand: stride 0 */
    ck_assert_int_eq(f->nodes[5].storage, 3);
    ck_assert_int_eq(m->params[1].init, INIT_ZEROS);
    ck_assert_int_eq(m->params[0].line, 3);
    /* canonical form is a fixed point, and equal node for node */
    char *t1 = print_module(m);
    ir_module *m2 = parse_text(&ar, "all2.ir", t1);
    ck_assert_ptr_nonnull(m2);
    char *t2 = print_module(m2);
    ck_assert_str_eq(t1, t2);
    assert_modules_equal(m, m2);
    free(t1);
    free(t2);
    free(d);
    arena_free(&ar);
}
END_TEST

static const char *bad_text =
    "module bad seed=1\n"
    "param W: f32[3, 4] = normal(0)\n"
    "func f(x: f32[2, 3]) {\n"
    "  %0 = arg index=0 : f32[2, 3]\n"
    "  %1 = permute %0 dims=[1, 0] : f32[3, 2]\n"
    "  %2 = view %1 shape=[6] : f32[6]\n"
    "  %3 = frob %0 : f32[2, 3]\n"
    "  %4 = neg %9 : f32[2, 3]\n"
    "  %5 = neg %0 : f32[3, 2]\n"
    "  %7 = neg %0 : f32[2, 3]\n"
    "  %8 = sum %0 axis=[0] : f32[3]\n"
    "  %9 = neg %2 : f32[6]\n"
    "  %10 = add %0, %1 : f32[2, 3]\n"
    "  %11 = const value=1e999x : f32\n"
    "  return %0\n"
    "}\n";

START_TEST(errors_have_locations)
{
    arena ar;
    arena_init(&ar);
    diag_begin();
    ir_module *m = parse_text(&ar, "t.ir", bad_text);
    char *d = diag_end();
    ck_assert_ptr_null(m);
    static const char *want[] = {
        "t.ir:2:22: error: initializer 'normal' takes 2 arguments, got 1",
        "t.ir:6:8: error: %2: view: view size is not compatible",
        "t.ir:7:8: error: unknown op 'frob'",
        "t.ir:8:12: error: operand %9 is not defined before %4",
        "t.ir:9:17: error: %5: result type f32[3, 2] does not match the type 'neg' derives: f32[2, 3]",
        "t.ir:10:3: error: expected %6 here",
        "t.ir:11:15: error: 'sum' has no attribute 'axis' (it has: axes, keepdim)",
        "t.ir:13:9: error: %10: add: operand shapes differ ([2, 3] and [3, 2])",
        "t.ir:14:21: error: expected a number, found '1e999x'",
    };
    for (size_t k = 0; k < sizeof want / sizeof *want; k++)
        ck_assert_msg(strstr(d, want[k]), "missing <%s> in:\n%s", want[k], d);
    /* %9 uses the failed %2: no second report for it */
    ck_assert_ptr_null(strstr(d, "t.ir:12:"));
    int n = 0;
    for (const char *p = d; (p = strstr(p, ": error: ")); p++)
        n++;
    ck_assert_int_eq(n, (int)(sizeof want / sizeof *want));
    /* the caret line from diag */
    ck_assert_ptr_nonnull(strstr(d, "  %3 = frob %0 : f32[2, 3]\n         ^\n"));
    free(d);
    arena_free(&ar);
}
END_TEST

/* Structural errors: each text must fail with the given message. */
START_TEST(structural_errors)
{
    static const struct {
        const char *text, *msg;
    } cases[] = {
        {"param W: f32 = zeros\n", "1:1: error: expected 'module NAME' before any other line"},
        {"", "expected 'module NAME'"},
        {"module m\nmodule n\n", "2:1: error: a second 'module' line"},
        {"module m\nparam a: f32\nparam a: f64\n", "3:7: error: param 'a' is declared twice"},
        {"module m\nfunc f() {\n  %0 = eye n=1 : f32[1, 1]\n  return %0\n}\nfunc f() {\n  return\n}\n", "6:6: error: function 'f' is defined twice"},
        {"module m\nfunc f() {\n  %0 = eye n=1 : f32[1, 1]\n  return %0\n  return %0\n}\n", "5:3: error: a second 'return'"},
        {"module m\nfunc f() {\n  return # %0\n}\n", "3:3: error: 'return' needs at least one result (%N, ...)"},
        {"module m\nfunc f() {\n  %0 = const value=1 : f32\n", "4:1: error: end of file inside function 'f'"},
        {"module m\nfunc f() {\n  %0 = const value=1 : f32\n}\n", "4:1: error: function 'f' has no 'return'"},
        {"module m\nfunc f() {\n  %0 = const value=1 : f32\n  return %0\n  %1 = const value=1 : f32\n}\n", "5:3: error: node after 'return'"},
        {"module m\nfunc f() {\n  return %0\n}\n", "3:10: error: 'return' refers to %0, which is not defined"},
        {"module m\nfunc f() {\n  %0 = const value=1 : q32\n  return %0\n}\n", "3:24: error: unknown dtype 'q32'"},
        {"module m\nfunc f() {\n  %0 = const value=1 : f32[-1]\n  return %0\n}\n", "3:28: error: a dimension -1 is out of range"},
        {"module m\nfunc f() {\n  %0 = arg index=0 : f32\n  return %0\n}\n", "3:8: error: %0: arg: index 0 out of range"},
        {"module m\nfunc f() {\n  %0 = const value=1 : f32 ; x @1\n  return %0\n}\n", "3:34: error: expected ':', found end of line"},
        {"module m\nfunc f() {\n  %0 = neg : f32\n  return %0\n}\n", "3:8: error: %0: 'neg' takes 1 input, got 0"},
        {"module m\nfunc f() {\n  %0 = const \"v\" : f32\n  return %0\n}\n", "3:14: error: expected ':' and the result type, found string"},
        {"module m\nfunc f() {\n  %0 = full shape=[1, 2, 3, 4, 5, 6, 7, 8, 9] : f32\n  return %0\n}\n", "more than 8 entries"},
        {"module m\nfunc f() {\n  %0 = full shape=[1048576, 1048576, 1048576] : f32\n  return %0\n}\n", "is too large"},
        {"module m\nfunc f() { ; nope\n  return %0\n}\n", "2:14: error: only a location"},
        {"module m\n}\n", "2:1: error: '}' outside a function"},
        {"module m\nfunc f() {\n  %0 = const value=1 : f32 ; \"unterminated\n  return %0\n}\n", "3:30: error: expected end of line, found unterminated string"},
        {"module m seed=-1\n", "1:15: error: expected the seed"},
        {"module m\nfunc f() {\n  %0 = const value=1 : f32\n  return %0\n}\n\x01\n", "6:1: error: expected 'module', 'param', 'state' or 'func', found stray byte 0x01"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        arena ar;
        arena_init(&ar);
        diag_begin();
        ir_module *m = parse_text(&ar, "s.ir", cases[k].text);
        char *d = diag_end();
        ck_assert_msg(m == NULL, "case %zu parsed", k);
        ck_assert_msg(strstr(d, cases[k].msg), "case %zu: missing <%s> in:\n%s", k, cases[k].msg, d);
        free(d);
        arena_free(&ar);
    }
}
END_TEST

START_TEST(minimal_module)
{
    arena ar;
    arena_init(&ar);
    ir_module *m = parse_text(&ar, "m.ir", "module m\n");
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(m->name, "m");
    ck_assert_uint_eq(m->seed, 0);
    char *t = print_module(m);
    ck_assert_str_eq(t, "module m seed=0\n");
    free(t);
    arena_free(&ar);
}
END_TEST

/* Every prefix and many random mutations of a valid file: never a crash, and whatever
 * does parse is well formed and prints back to itself. */
START_TEST(garbage_never_crashes)
{
    arena ar0;
    arena_init(&ar0);
    ir_module *m0 = parse_text(&ar0, "all.ir", all_ops_text);
    ck_assert_ptr_nonnull(m0);
    char *good = print_module(m0);
    size_t len = strlen(good);
    FILE *sink = tmpfile();
    char *buf = malloc(len + 1);
    unsigned seed = 12345;
    static const char alphabet[] = "%=:,[]{}();@#\"\\-+.0123456789eEinfax \n\t\x01\x80\xff";
    int parsed = 0;
    for (size_t it = 0; it < len + 3000; it++) {
        size_t n = len;
        memcpy(buf, good, len);
        if (it < len) {
            n = it;   /* a prefix */
        } else {
            int edits = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 4;
            for (int e = 0; e < edits; e++) {
                seed = seed * 1103515245u + 12345u;
                size_t pos = (seed >> 8) % len;
                seed = seed * 1103515245u + 12345u;
                buf[pos] = alphabet[(seed >> 8) % (sizeof alphabet - 1)];
            }
        }
        buf[n] = 0;
        arena ar;
        arena_init(&ar);
        diag_reset(sink);
        src_file f = {"g.ir", buf, n};
        ir_module *m = ir_parse_module(&ar, &f);
        if (m) {
            parsed++;
            ck_assert_int_eq(ir_verify(m, stderr), 0);
            char *t1 = print_module(m);
            src_file f2 = {"g2.ir", t1, strlen(t1)};
            ir_module *m2 = ir_parse_module(&ar, &f2);
            ck_assert_ptr_nonnull(m2);
            char *t2 = print_module(m2);
            ck_assert_str_eq(t1, t2);
            free(t1);
            free(t2);
        }
        arena_free(&ar);
        if (it % 512 == 0)
            rewind(sink);
    }
    ck_assert_int_gt(parsed, 0);
    diag_reset(NULL);
    fclose(sink);
    free(buf);
    free(good);
    arena_free(&ar0);
}
END_TEST

START_TEST(verifier_catches_corruption)
{
    arena ar;
    arena_init(&ar);
    ir_module *m = build_module(&ar);
    ir_func *f = m->funcs[0];
    ck_assert_int_eq(ir_verify(m, NULL), 0);
    char *out;
    size_t len;
    FILE *o;

    /* a shape changed by hand: one report, none for the users of the node */
    f->nodes[2].shape[1] = 5;
    o = open_memstream(&out, &len);
    ck_assert_int_eq(ir_verify(m, o), 1);
    fclose(o);
    ck_assert_str_eq(out, "verify: forward %2: shape is [2, 5] but 'matmul' derives [2, 4]\n");
    free(out);
    f->nodes[2].shape[1] = 4;

    /* a permute's strides */
    f->nodes[7].strides[0] = 4;
    o = open_memstream(&out, &len);
    ck_assert_int_eq(ir_verify(m, o), 1);
    fclose(o);
    ck_assert_ptr_nonnull(strstr(out, "verify: forward %7: strides are [4, 4] but 'permute' derives [1, 4]"));
    free(out);
    f->nodes[7].strides[0] = 1;

    /* offset, storage and view_of of a view */
    f->nodes[15].offset = 0;
    f->nodes[5].storage = 5;
    f->nodes[7].view_of = -1;
    o = open_memstream(&out, &len);
    ck_assert_int_eq(ir_verify(m, o), 3);
    fclose(o);
    ck_assert_ptr_nonnull(strstr(out, "forward %15: offset is 0 but 'slice' derives 1"));
    ck_assert_ptr_nonnull(strstr(out, "forward %5: storage is s5"));
    ck_assert_ptr_nonnull(strstr(out, "forward %7: view_of is -1 but 'permute' derives a view"));
    free(out);
    f->nodes[15].offset = 1;
    f->nodes[5].storage = 3;
    f->nodes[7].view_of = 6;
    ck_assert_int_eq(ir_verify(m, NULL), 0);

    /* operands, arity, outputs, stray attributes, dtype */
    int saved_in = f->nodes[6].in[1];
    f->nodes[6].in[1] = 9;
    f->nodes[8].nin = 2;
    f->outs[1] = 99;
    f->nodes[9].i[2] = 5;
    f->nodes[16].dtype = DT_I64;
    o = open_memstream(&out, &len);
    int n = ir_verify(m, o);
    fclose(o);
    ck_assert_ptr_nonnull(strstr(out, "forward %6: input 1 is %9, not an earlier node"));
    ck_assert_ptr_nonnull(strstr(out, "forward %8: 'leaky_relu' takes 1 input, has 2"));
    ck_assert_ptr_nonnull(strstr(out, "forward: output 1 is %99"));
    ck_assert_ptr_nonnull(strstr(out, "forward %9: 'clamp' has no attribute in i[2] but it holds 5"));
    ck_assert_ptr_nonnull(strstr(out, "forward %16: dtype is i64 but 'arg' derives i32"));
    ck_assert_int_eq(n, 5);
    free(out);
    f->nodes[6].in[1] = saved_in;
    f->nodes[8].nin = 1;
    f->outs[1] = 12;
    f->nodes[9].i[2] = 0;
    f->nodes[16].dtype = DT_I32;
    ck_assert_int_eq(ir_verify(m, NULL), 0);

    /* bad param, no outputs */
    m->params[1].shape[0] = -3;
    m->funcs[1]->nouts = 0;
    o = open_memstream(&out, &len);
    ck_assert_int_ge(ir_verify(m, o), 2);
    fclose(o);
    ck_assert_ptr_nonnull(strstr(out, "param b1: bad dtype, rank or dimension"));
    ck_assert_ptr_nonnull(strstr(out, "verify: g: the function has no outputs"));
    free(out);
    arena_free(&ar);
}
END_TEST

START_TEST(layout_table)
{
    arena ar;
    arena_init(&ar);
    ir_module *m = build_module(&ar);
    char *t = capture(emit_layout, m->funcs[0]);
    /* header, then aligned rows; the permute is a non-contiguous view of %6 */
    ck_assert_ptr_nonnull(strstr(t, "func forward: 17 values\n"));
    ck_assert_ptr_nonnull(strstr(t, "  id   name"));
    ck_assert_ptr_nonnull(strstr(t, "storage"));
    ck_assert_ptr_nonnull(strstr(t, "contiguous"));
    const char *row = strstr(t, "  %7 ");
    ck_assert_ptr_nonnull(row);
    const char *eol = strchr(row, '\n');
    char line[512];
    snprintf(line, sizeof line, "%.*s", (int)(eol - row), row);
    ck_assert_ptr_nonnull(strstr(line, " xt "));
    ck_assert_ptr_nonnull(strstr(line, " permute "));
    ck_assert_ptr_nonnull(strstr(line, " [4, 2] "));
    ck_assert_ptr_nonnull(strstr(line, " s6 "));
    ck_assert_ptr_nonnull(strstr(line, " +0 "));
    ck_assert_ptr_nonnull(strstr(line, " [1, 4] "));
    ck_assert_ptr_nonnull(strstr(line, " NO "));
    ck_assert_msg(strstr(line, "view of %6") && line[strlen(line) - 1] == '6', "%s", line);
    /* the slice: offset 1 (start 1 along a stride-1 axis), strides [2, 4] */
    ck_assert_ptr_nonnull(strstr(t, " +1 "));
    ck_assert_ptr_nonnull(strstr(t, " [2, 4] "));
    ck_assert_ptr_nonnull(strstr(t, "  outputs: %6, %12, %6\n"));
    ck_assert_ptr_nonnull(strstr(t, "  non-contiguous: %5, %7, %15\n"));
    /* columns align: every row has "view-of"'s column at the same offset */
    const char *hdr = strstr(t, "  id ");
    int col = (int)(strstr(hdr, "view-of") - hdr);
    const char *r2 = strstr(t, "  %5 ");
    ck_assert_int_eq((int)(strstr(r2, "view of %4") - r2), col);
    free(t);
    arena_free(&ar);
}
END_TEST

START_TEST(dot_output)
{
    arena ar;
    arena_init(&ar);
    ir_module *m = build_module(&ar);
    ir_func *f = m->funcs[0];
    char *t = capture(emit_dot, f);
    ck_assert_ptr_nonnull(strstr(t, "digraph \"forward\" {\n"));
    ck_assert_ptr_nonnull(strstr(t, "  n0 [label=\"%0 x\\narg\\nf32[2, 3]\", shape=ellipse];\n"));
    ck_assert_ptr_nonnull(strstr(t, "  n1 [label=\"%1 W1\\nparam\\nf32[3, 4]\", shape=cylinder];\n"));
    ck_assert_ptr_nonnull(strstr(t, "  n7 [label=\"%7 xt\\npermute\\nf32[4, 2]\", style=dashed];\n"));
    ck_assert_ptr_nonnull(strstr(t, "  n0 -> n2 [label=\"0\"];\n"));
    ck_assert_ptr_nonnull(strstr(t, "  n1 -> n2 [label=\"1\"];\n"));
    ck_assert_ptr_nonnull(strstr(t, "  n6 -> n7;\n"));
    ck_assert_ptr_nonnull(strstr(t, "a \\\"q\\\"\\n"));   /* quotes escaped */
    ck_assert_ptr_nonnull(strstr(t, "n12 -> out1;"));
    ck_assert_ptr_null(strstr(t, "strides"));
    ck_assert(t[strlen(t) - 2] == '}');
    free(t);
    t = capture(emit_dot_layout, f);
    ck_assert_ptr_nonnull(strstr(t, "%7 xt\\npermute\\nf32[4, 2]\\nstrides [1, 4] +0 s6\\nNOT contiguous\\nview of %6\", "
                                    "style=dashed, color=red, fontcolor=red];"));
    ck_assert_ptr_nonnull(strstr(t, "%2 h\\nmatmul\\nf32[2, 4]\\nstrides [4, 1] +0 s2\"];"));
    free(t);
    arena_free(&ar);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("ir_text");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, builder_roundtrip);
    tcase_add_test(tc, every_op_parses);
    tcase_add_test(tc, errors_have_locations);
    tcase_add_test(tc, structural_errors);
    tcase_add_test(tc, minimal_module);
    tcase_add_test(tc, garbage_never_crashes);
    tcase_add_test(tc, verifier_catches_corruption);
    tcase_add_test(tc, layout_table);
    tcase_add_test(tc, dot_output);
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
