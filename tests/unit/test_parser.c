/* Unit tests for the grammar (grammar/lexer.l, grammar/parser.y) and the AST
 * builders/printer (frontend/ast.c): tree shapes as S-expressions, locations,
 * several errors per file, and inputs that must not crash the parser. */
#include <check.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "frontend/ast.h"

static arena ar;
static FILE *diag_out;

static void setup(void)
{
    arena_init(&ar);
    diag_out = tmpfile();
    ck_assert_ptr_nonnull(diag_out);
    diag_reset(diag_out);
}

static void teardown(void)
{
    arena_free(&ar);
    fclose(diag_out);
    diag_reset(NULL);
}

/* Parses `len` bytes (which may hold NULs) as file "t.tdsl". */
static ast_file *parse_n(const char *text, size_t len)
{
    char *copy = arena_alloc(&ar, len + 1);
    memcpy(copy, text, len);
    src_file *f = arena_alloc(&ar, sizeof *f);
    f->name = "t.tdsl";
    f->text = copy;
    f->len = len;
    return parse_file(&ar, f);
}

static ast_file *parse(const char *text) { return parse_n(text, strlen(text)); }

/* Everything diag printed so far. */
static const char *diags(void)
{
    fflush(diag_out);
    long n = ftell(diag_out);
    char *s = arena_alloc(&ar, (size_t)n + 1);
    rewind(diag_out);
    size_t got = fread(s, 1, (size_t)n, diag_out);
    s[got] = 0;
    fseek(diag_out, 0, SEEK_END);
    return s;
}

static ast_file *parse_ok(const char *text)
{
    ast_file *f = parse(text);
    ck_assert_msg(f != NULL, "parse failed:\n%s\n---\n%s", text, diags());
    ck_assert_int_eq(diag_error_count(), 0);
    return f;
}

/* ---- expressions as S-expressions: (op a b), (u- x), (call f a k=v), (index b i...) */

typedef struct { char *s; size_t n, cap; } sbuf;

static void put(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int w = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    ck_assert(w >= 0 && (size_t)w < sizeof tmp);
    if (b->n + (size_t)w + 1 > b->cap) {
        size_t nc = (b->cap + (size_t)w + 1) * 2;
        b->s = arena_realloc(&ar, b->s, b->cap, nc);
        b->cap = nc;
    }
    memcpy(b->s + b->n, tmp, (size_t)w + 1);
    b->n += (size_t)w;
}

static void sx(sbuf *b, const ast_expr *e)
{
    if (!e) {
        put(b, "_");
        return;
    }
    switch (e->kind) {
    case AST_INT: put(b, "%lld", (long long)e->ival); return;
    case AST_FLOAT: put(b, "%g", e->fval); return;
    case AST_BOOL: put(b, e->ival ? "true" : "false"); return;
    case AST_STRING: put(b, "\"%s\"", e->str); return;
    case AST_NONE: put(b, "none"); return;
    case AST_NAME: put(b, "%s", e->str); return;
    case AST_ELLIPSIS: put(b, "..."); return;
    case AST_UNARY: put(b, "(u%c ", e->op); sx(b, e->kids[0]); put(b, ")"); return;
    case AST_BINARY:
        put(b, "(%s ", ast_binop_str((ast_binop)e->op));
        sx(b, e->kids[0]);
        put(b, " ");
        sx(b, e->kids[1]);
        put(b, ")");
        return;
    case AST_SLICE:
        put(b, "(slice ");
        sx(b, e->kids[0]);
        put(b, " ");
        sx(b, e->kids[1]);
        put(b, " ");
        sx(b, e->kids[2]);
        put(b, ")");
        return;
    case AST_LIST: put(b, "["); break;
    case AST_TUPLE: put(b, "(tuple"); break;
    case AST_CALL: put(b, "(call %s", e->str); break;
    case AST_METHOD: put(b, "(method %s ", e->str); sx(b, e->kids[0]); break;
    case AST_FIELD: put(b, "(field %s ", e->str); sx(b, e->kids[0]); break;
    case AST_INDEX: put(b, "(index "); sx(b, e->kids[0]); break;
    case AST_TYPE: put(b, "(type %s%s", e->str, e->has_dims ? "[]" : ""); break;
    default: put(b, "?"); return;
    }
    for (int i = 0; i < e->nitems; i++) {
        if (i || e->kind != AST_LIST)
            put(b, " ");
        sx(b, e->items[i]);
    }
    for (int i = 0; i < e->nargs; i++) {
        put(b, " ");
        if (e->args[i].name)
            put(b, "%s=", e->args[i].name);
        sx(b, e->args[i].value);
    }
    put(b, e->kind == AST_LIST ? "]" : ")");
}

static const char *sexp(const ast_expr *e)
{
    sbuf b = {0};
    put(&b, "%s", "");
    sx(&b, e);
    return b.s;
}

/* The value of `return EXPR` in a one-line fn. */
static const ast_expr *ret_expr(const char *expr)
{
    char src[512];
    snprintf(src, sizeof src, "fn f(x) { return %s }\n", expr);
    ast_file *f = parse_ok(src);
    ck_assert_int_eq(f->ndecls, 1);
    ck_assert_int_eq(f->decls[0]->nbody, 1);
    ck_assert_int_eq(f->decls[0]->body[0]->kind, STMT_RETURN);
    return f->decls[0]->body[0]->value;
}

#define EXPECT_EXPR(src, want) ck_assert_str_eq(sexp(ret_expr(src)), want)

START_TEST(precedence)
{
    EXPECT_EXPR("-x**2", "(u- (** x 2))");
    EXPECT_EXPR("a + b * c @ d", "(+ a (* b (@ c d)))");
    EXPECT_EXPR("a ** b ** c", "(** a (** b c))");
    EXPECT_EXPR("2**-1", "(** 2 (u- 1))");
    EXPECT_EXPR("a - b - c", "(- (- a b) c)");
    EXPECT_EXPR("a / b % c * d", "(* (% (/ a b) c) d)");
    EXPECT_EXPR("a | b & c == d + e", "(| a (& b (== c (+ d e))))");
    EXPECT_EXPR("a & b | c", "(| (& a b) c)");
    EXPECT_EXPR("!a & b", "(& (u! a) b)");
    EXPECT_EXPR("-a @ b", "(@ (u- a) b)");
    EXPECT_EXPR("- -a", "(u- (u- a))");
    EXPECT_EXPR("(a + b) * c", "(* (+ a b) c)");
    EXPECT_EXPR("a < b + 1", "(< a (+ b 1))");
    EXPECT_EXPR("a <= b", "(<= a b)");
    EXPECT_EXPR("a == (b >= c)", "(== a (>= b c))");
}
END_TEST

START_TEST(comparisons_do_not_chain)
{
    ck_assert_ptr_null(parse("fn f(a, b, c) { return a < b < c }\n"));
    ck_assert_ptr_nonnull(strstr(diags(), "t.tdsl:1:30: error: unexpected '<'"));
    ck_assert_ptr_nonnull(strstr(diags(), "comparisons do not chain"));
}
END_TEST

START_TEST(postfix_chains)
{
    EXPECT_EXPR("x.T.view(2, 3)[0].shape[1]", "(index (field shape (index (method view (field T x) 2 3) 0)) 1)");
    EXPECT_EXPR("x.shape", "(field shape x)");
    EXPECT_EXPR("x.to(f32)", "(method to x f32)");
    EXPECT_EXPR("f(a, k=v)", "(call f a k=v)");
    EXPECT_EXPR("f()", "(call f)");
    EXPECT_EXPR("f(a,)", "(call f a)");
    EXPECT_EXPR("cast(x, f32)", "(call cast x f32)");
    EXPECT_EXPR("zeros([2, 3], dtype=f32)", "(call zeros [2 3] dtype=f32)");
    EXPECT_EXPR("-x.T ** 2", "(u- (** (field T x) 2))");
    EXPECT_EXPR("(a + b).sum(axis=0)", "(method sum (+ a b) axis=0)");
    EXPECT_EXPR("checkpoint(block, h, W)", "(call checkpoint block h W)");
    EXPECT_EXPR("x.shape[0] * 2", "(* (index (field shape x) 0) 2)");
}
END_TEST

START_TEST(indexing_and_slices)
{
    EXPECT_EXPR("x[i, 1:3, ::2, ..., -1]", "(index x i (slice 1 3 _) (slice _ _ 2) ... (u- 1))");
    EXPECT_EXPR("x[:, 1:, :5, ::]", "(index x (slice _ _ _) (slice 1 _ _) (slice _ 5 _) (slice _ _ _))");
    EXPECT_EXPR("x[a:b:c, :-1:]", "(index x (slice a b c) (slice _ (u- 1) _))");
    EXPECT_EXPR("x[..., 0]", "(index x ... 0)");
    EXPECT_EXPR("x[idx][0]", "(index (index x idx) 0)");
    EXPECT_EXPR("x[x > 0]", "(index x (> x 0))");
}
END_TEST

START_TEST(literals)
{
    EXPECT_EXPR("1.5 + .5 + 1e-3 + 2. + 3E+2", "(+ (+ (+ (+ 1.5 0.5) 0.001) 2) 300)");
    EXPECT_EXPR("[a, b, c]", "[a b c]");
    EXPECT_EXPR("[a, b,]", "[a b]");
    EXPECT_EXPR("[]", "[]");
    EXPECT_EXPR("f(true, false, none)", "(call f true false none)");
    EXPECT_EXPR("gelu(x, approximate=\"tanh\")", "(call gelu x approximate=\"tanh\")");
    EXPECT_EXPR("\"a\\\"b\"", "\"a\"b\"");
    EXPECT_EXPR("9223372036854775807", "9223372036854775807");
    const ast_expr *e = ret_expr("1.5");
    ck_assert_int_eq(e->kind, AST_FLOAT);
    ck_assert(e->fval == 1.5);
    e = ret_expr("42");
    ck_assert_int_eq(e->kind, AST_INT);
    ck_assert_int_eq(e->ival, 42);
}
END_TEST

START_TEST(locations)
{
    /* col 1-based; binary at its operator, the rest at their first character */
    ast_file *f = parse_ok("export fn forward(x: f32[B, 784]) -> f32[B, 10] {\n"
                           "    h = x @ W1\n"
                           "\th2 = f(x).T\n"
                           "}\n");
    const ast_decl *d = f->decls[0];
    ck_assert_int_eq(d->loc.line, 1);
    ck_assert_int_eq(d->loc.col, 1);
    ck_assert_int_eq(d->name_loc.col, 11);
    ck_assert_int_eq(d->params[0].loc.col, 19);
    ck_assert_int_eq(d->params[0].type->loc.col, 22);
    ck_assert_int_eq(d->type->loc.col, 38);
    const ast_stmt *s = d->body[0];
    ck_assert_int_eq(s->loc.line, 2);
    ck_assert_int_eq(s->loc.col, 5);
    ck_assert_int_eq(s->value->loc.col, 11);
    ck_assert_int_eq(s->value->kids[0]->loc.col, 9);
    ck_assert_int_eq(s->value->kids[1]->loc.col, 13);
    s = d->body[1];
    ck_assert_int_eq(s->loc.line, 3);
    ck_assert_int_eq(s->loc.col, 2);
    ck_assert_int_eq(s->value->kind, AST_FIELD);
    ck_assert_int_eq(s->value->loc.col, 7);
    ck_assert_ptr_eq(s->value->loc.file, f->file);
}
END_TEST

START_TEST(newlines_and_separators)
{
    ast_file *f = parse_ok("\n\n# comment\nfn f(a,\n     b) {\n"
                           "    x = g(a,\n"
                           "          [1,\n"
                           "           2],   # inside brackets\n"
                           "          k = b\n"
                           "    )\n"
                           "\n;;\n"
                           "    y = 1; z = 2;; w = 3;\n"
                           "    return x\n"
                           "};\n"
                           "const C = 1; const D = 2");
    ck_assert_int_eq(f->ndecls, 3);
    const ast_decl *d = f->decls[0];
    ck_assert_int_eq(d->nparams, 2);
    ck_assert_int_eq(d->nbody, 5);
    ck_assert_str_eq(sexp(d->body[0]->value), "(call g a [1 2] k=b)");
    ck_assert_str_eq(d->body[1]->targets[0], "y");
    ck_assert_str_eq(d->body[2]->targets[0], "z");
    ck_assert_str_eq(d->body[3]->targets[0], "w");
    ck_assert_int_eq(d->body[4]->kind, STMT_RETURN);
    ck_assert_int_eq(d->body[4]->loc.line, 14);
    ck_assert_str_eq(f->decls[2]->name, "D");
    /* inside { } newlines count again, even when the { } sits in nothing */
    ck_assert_ptr_null(parse("fn f(x) { y = x z = x }\n"));
}
END_TEST

START_TEST(statements)
{
    ast_file *f = parse_ok("fn f(x) {\n"
                           "    a, b = two(x)\n"
                           "    p, q, r = three(x)\n"
                           "    x += 1\n"
                           "    x -= a\n"
                           "    x *= 2\n"
                           "    x /= b\n"
                           "    for i in 0..L {\n"
                           "        h = block(h, Ws[i])\n"
                           "    }\n"
                           "    for j in 1..N + 1 { }\n"
                           "    g(x)\n"
                           "    return a, b * 2\n"
                           "}\n");
    const ast_decl *d = f->decls[0];
    ck_assert_int_eq(d->nbody, 10);
    const ast_stmt *s = d->body[0];
    ck_assert_int_eq(s->kind, STMT_ASSIGN);
    ck_assert_int_eq(s->ntargets, 2);
    ck_assert_str_eq(s->targets[0], "a");
    ck_assert_str_eq(s->targets[1], "b");
    ck_assert_int_eq(s->target_locs[1].col, 8);
    ck_assert_str_eq(sexp(s->value), "(call two x)");
    ck_assert_int_eq(d->body[1]->ntargets, 3);
    ck_assert_str_eq(d->body[1]->targets[2], "r");
    static const ast_binop ops[] = {BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV};
    for (int i = 0; i < 4; i++) {
        s = d->body[2 + i];
        ck_assert_int_eq(s->kind, STMT_AUGASSIGN);
        ck_assert_int_eq(s->op, ops[i]);
        ck_assert_int_eq(s->ntargets, 1);
        ck_assert_str_eq(s->targets[0], "x");
    }
    s = d->body[6];
    ck_assert_int_eq(s->kind, STMT_FOR);
    ck_assert_str_eq(s->var, "i");
    ck_assert_str_eq(sexp(s->lo), "0");
    ck_assert_str_eq(sexp(s->hi), "L");
    ck_assert_int_eq(s->nbody, 1);
    ck_assert_str_eq(sexp(s->body[0]->value), "(call block h (index Ws i))");
    s = d->body[7];
    ck_assert_str_eq(sexp(s->lo), "1");
    ck_assert_str_eq(sexp(s->hi), "(+ N 1)");
    ck_assert_int_eq(s->nbody, 0);
    ck_assert_int_eq(d->body[8]->kind, STMT_EXPR);
    ck_assert_str_eq(sexp(d->body[8]->value), "(call g x)");
    s = d->body[9];
    ck_assert_int_eq(s->kind, STMT_RETURN);
    ck_assert_str_eq(sexp(s->value), "(tuple a (* b 2))");
}
END_TEST

START_TEST(declarations)
{
    ast_file *f = parse_ok("const B = 64\n"
                           "const H = 4 * B\n"
                           "param W1: f32[784, 256] = normal(0, 0.05)\n"
                           "param b1: f32[256]\n"
                           "param s: f32\n"
                           "param e: f32[]\n"
                           "fn helper(x, y) { return x }\n"
                           "fn typed(x: f32[3], n: i64) -> f32[3] { return x }\n"
                           "fn pair(x: f32[2]) -> (f32[2], f32) { return x, sum(x) }\n"
                           "export fn forward(x: f32[B, 784]) -> f32[B, 10] {\n    return x\n}\n"
                           "export g = grad(loss)\n"
                           "export gx = grad(loss, wrt=[x, W1])\n"
                           "export step = sgd(loss, lr=0.1, momentum=0.9)\n");
    ck_assert_int_eq(f->ndecls, 13);
    const ast_decl *d = f->decls[0];
    ck_assert_int_eq(d->kind, DECL_CONST);
    ck_assert_str_eq(d->name, "B");
    ck_assert_str_eq(sexp(d->value), "64");
    ck_assert_str_eq(sexp(f->decls[1]->value), "(* 4 B)");
    d = f->decls[2];
    ck_assert_int_eq(d->kind, DECL_PARAM);
    ck_assert_str_eq(sexp(d->type), "(type f32[] 784 256)");
    ck_assert_str_eq(sexp(d->value), "(call normal 0 0.05)");
    ck_assert_ptr_null(f->decls[3]->value);
    ck_assert_str_eq(sexp(f->decls[4]->type), "(type f32)");
    ck_assert(!f->decls[4]->type->has_dims);
    ck_assert(f->decls[5]->type->has_dims);
    ck_assert_int_eq(f->decls[5]->type->nitems, 0);
    d = f->decls[6];
    ck_assert_int_eq(d->kind, DECL_FN);
    ck_assert(!d->exported && !d->has_grad);
    ck_assert_int_eq(d->nparams, 2);
    ck_assert_ptr_null(d->params[0].type);
    ck_assert_ptr_null(d->type);
    d = f->decls[7];
    ck_assert_str_eq(sexp(d->params[0].type), "(type f32[] 3)");
    ck_assert_str_eq(sexp(d->params[1].type), "(type i64)");
    ck_assert_str_eq(sexp(d->type), "(type f32[] 3)");
    ck_assert_str_eq(sexp(f->decls[8]->type), "(tuple (type f32[] 2) (type f32))");
    d = f->decls[9];
    ck_assert(d->exported);
    ck_assert_str_eq(d->name, "forward");
    ck_assert_int_eq(d->loc.col, 1);
    ck_assert_str_eq(sexp(d->type), "(type f32[] B 10)");
    d = f->decls[10];
    ck_assert_int_eq(d->kind, DECL_EXPORT);
    ck_assert_str_eq(d->name, "g");
    ck_assert_str_eq(sexp(d->value), "(call grad loss)");
    ck_assert_str_eq(sexp(f->decls[11]->value), "(call grad loss wrt=[x W1])");
    ck_assert_str_eq(sexp(f->decls[12]->value), "(call sgd loss lr=0.1 momentum=0.9)");
}
END_TEST

START_TEST(custom_gradient)
{
    ast_file *f = parse_ok("fn swish(x) {\n"
                           "    return x * sigmoid(x)\n"
                           "} grad (dy) {\n"
                           "    s = sigmoid(x)\n"
                           "    return dy * s * (1 + x * (1 - s))\n"
                           "}\n"
                           "fn two(a, b) { return a * b }\n"
                           "\n  # the block may start on a later line\n"
                           "grad (dy, extra) { return dy * b, none }\n"
                           "fn plain(x) { return grad(x) }\n"
                           "fn calls(x) {\n    grad(x)\n    y = f(x,\n        grad(x))\n}\n");
    ck_assert_int_eq(f->ndecls, 4);
    const ast_decl *d = f->decls[0];
    ck_assert(d->has_grad);
    ck_assert_int_eq(d->grad_loc.line, 3);
    ck_assert_int_eq(d->grad_loc.col, 3);
    ck_assert_int_eq(d->ngrad_params, 1);
    ck_assert_str_eq(d->grad_params[0].name, "dy");
    ck_assert_int_eq(d->ngrad_body, 2);
    ck_assert_str_eq(sexp(d->grad_body[1]->value), "(* (* dy s) (+ 1 (* x (- 1 s))))");
    d = f->decls[1];
    ck_assert(d->has_grad);
    ck_assert_int_eq(d->grad_loc.line, 10);
    ck_assert_int_eq(d->grad_loc.col, 1);
    ck_assert_int_eq(d->ngrad_params, 2);
    ck_assert_str_eq(d->grad_params[1].name, "extra");
    ck_assert_str_eq(sexp(d->grad_body[0]->value), "(tuple (* dy b) none)");
    ck_assert(!f->decls[2]->has_grad);
    ck_assert_str_eq(sexp(f->decls[2]->body[0]->value), "(call grad x)");
    d = f->decls[3];
    ck_assert_int_eq(d->nbody, 2);
    ck_assert_int_eq(d->body[0]->kind, STMT_EXPR);
    ck_assert_str_eq(sexp(d->body[1]->value), "(call f x (call grad x))");
}
END_TEST

START_TEST(grad_block_needs_a_fn)
{
    ck_assert_ptr_null(parse("const A = 1\ngrad (dy) { return dy }\n"));
    const char *out = diags();
    ck_assert_ptr_nonnull(strstr(out, "t.tdsl:2:1: error: unexpected 'grad'"));
    ck_assert_ptr_nonnull(strstr(out, "must follow the closing '}' of a fn"));
    ck_assert_ptr_null(parse("fn f(x) { return x } grad () { return 1 }\n"));
}
END_TEST

START_TEST(brace_on_next_line)
{
    ast_file *f = parse_ok("fn f(x)\n{\n    return x\n}\n");
    ck_assert_int_eq(f->decls[0]->nbody, 1);
}
END_TEST

START_TEST(several_errors)
{
    ast_file *f = parse("fn f(x) {\n"            /* 1 */
                        "    y = f(x, )\n"       /* 2: fine, trailing comma */
                        "    z = (x + )\n"       /* 3 */
                        "    w = x +\n"          /* 4 */
                        "    a b\n"              /* 5 */
                        "    return x\n"         /* 6 */
                        "}\n"                    /* 7 */
                        "const = 3\n"            /* 8 */
                        "fn g(x) { return x }\n" /* 9 */
                        "param W f32[3]\n");     /* 10 */
    ck_assert_ptr_null(f);
    const char *out = diags();
    ck_assert_int_eq(diag_error_count(), 5);
    ck_assert_ptr_nonnull(strstr(out, "t.tdsl:3:14: error: unexpected ')', expected an expression\n"
                                      "      z = (x + )\n"
                                      "               ^\n"));
    ck_assert_ptr_nonnull(strstr(out, "t.tdsl:4:12: error: unexpected end of line, expected an expression\n"));
    ck_assert_ptr_nonnull(strstr(out, "t.tdsl:5:7: error: unexpected identifier 'b'"));
    ck_assert_ptr_nonnull(strstr(out, "t.tdsl:8:7: error: unexpected '=', expected a name\n"));
    ck_assert_ptr_nonnull(strstr(out, "t.tdsl:10:9: error: unexpected identifier 'f32', expected ':'\n"));
    ck_assert_ptr_null(strstr(out, "t.tdsl:2:"));
    ck_assert_ptr_null(strstr(out, "t.tdsl:9:"));
}
END_TEST

START_TEST(error_hints)
{
    ck_assert_ptr_null(parse("fn f(x) {\n    y = g(x\n    return y\n}\nfn h(x) { return x }\n"));
    const char *out = diags();
    ck_assert_int_eq(diag_error_count(), 1);
    ck_assert_ptr_nonnull(strstr(out, "t.tdsl:3:5: error: unexpected 'return'"));
    ck_assert_ptr_nonnull(strstr(out, "t.tdsl:2:10: note: this '(' is not closed"));

    diag_reset(diag_out);
    ck_assert_ptr_null(parse("fn f(x) {\n  return [1, 2\n"));
    ck_assert_ptr_nonnull(strstr(diags(), "t.tdsl:2:15: error: unexpected end of file, expected ',' or ']'"));
    ck_assert_ptr_nonnull(strstr(diags(), "t.tdsl:2:10: note: this '[' is not closed"));

    diag_reset(diag_out);
    ck_assert_ptr_null(parse("fn in(x) { return x }\nx = 3\n"));
    ck_assert_ptr_nonnull(strstr(diags(), "t.tdsl:1:4: error: unexpected 'in', expected a name ('in' is a keyword"));
    ck_assert_ptr_nonnull(strstr(diags(), "t.tdsl:2:1: error: unexpected identifier 'x', expected a declaration"));
    ck_assert_ptr_nonnull(strstr(diags(), "note: statements go inside a fn body"));

    diag_reset(diag_out);
    ck_assert_ptr_null(parse("const b = f(a=1, 2)\n"));
    ck_assert_ptr_nonnull(strstr(diags(), "t.tdsl:1:18: error: positional argument after keyword argument 'a'"));

    /* a broken fn header: its body is skipped, the next fn is parsed */
    diag_reset(diag_out);
    ck_assert_ptr_null(parse("fn f(x: ) {\n  return x\n}\nfn g(x) { return x ++ }\n"));
    ck_assert_int_eq(diag_error_count(), 2);
    ck_assert_ptr_nonnull(strstr(diags(), "t.tdsl:1:9: error: unexpected ')', expected a name\n"));
    ck_assert_ptr_nonnull(strstr(diags(), "t.tdsl:4:21: error: unexpected '+', expected an expression\n"));
}
END_TEST

START_TEST(lexical_errors)
{
    ck_assert_ptr_null(parse("const a = 1 $ 2\n"
                             "const s = \"abc\n"
                             "const n = 99999999999999999999\n"
                             "const m = 3x\n"
                             "const q = 'tanh'\n"
                             "const f = 1e999\n"
                             "const u = \xc3\xa9\n"));
    const char *out = diags();
    ck_assert_int_eq(diag_error_count(), 7);
    ck_assert_ptr_nonnull(strstr(out, "t.tdsl:1:13: error: invalid character '$'\n"));
    ck_assert_ptr_nonnull(strstr(out, "t.tdsl:2:11: error: unterminated string literal"));
    ck_assert_ptr_nonnull(strstr(out, "t.tdsl:3:11: error: integer literal '99999999999999999999' is too large"));
    ck_assert_ptr_nonnull(strstr(out, "t.tdsl:4:11: error: invalid number '3x'"));
    ck_assert_ptr_nonnull(strstr(out, "t.tdsl:5:11: error: strings use double quotes: \"tanh\""));
    ck_assert_ptr_nonnull(strstr(out, "t.tdsl:6:11: error: float literal '1e999' is out of range"));
    ck_assert_ptr_nonnull(strstr(out, "t.tdsl:7:11: error: invalid character: non-ASCII"));
    /* a NUL byte is an invalid character, not the end of the file */
    diag_reset(diag_out);
    ck_assert_ptr_null(parse_n("const a = 1\0\nconst b = $", 24));
    ck_assert_ptr_nonnull(strstr(diags(), "t.tdsl:1:12: error: invalid character (byte 0x00)"));
    ck_assert_ptr_nonnull(strstr(diags(), "t.tdsl:2:11: error: invalid character '$'"));
}
END_TEST

START_TEST(empty_and_trivial_files)
{
    ast_file *f = parse_ok("");
    ck_assert_int_eq(f->ndecls, 0);
    f = parse_ok("# only a comment");
    ck_assert_int_eq(f->ndecls, 0);
    f = parse_ok("\n\n;\n");
    ck_assert_int_eq(f->ndecls, 0);
    f = parse_ok("const N = 1");   /* no final newline */
    ck_assert_int_eq(f->ndecls, 1);
    ck_assert_ptr_null(parse("}"));
    ck_assert_ptr_null(parse("fn f(x) {"));
    ck_assert_ptr_null(parse("fn f(x) { return x"));
    ck_assert_ptr_null(parse("(((("));
    ck_assert_ptr_null(parse("const a = )))"));
}
END_TEST

static char *repeat(const char *prefix, const char *unit, int n, const char *suffix)
{
    size_t pl = strlen(prefix), ul = strlen(unit), sl = strlen(suffix);
    char *s = arena_alloc(&ar, pl + ul * (size_t)n + sl + 1);
    memcpy(s, prefix, pl);
    for (int i = 0; i < n; i++)
        memcpy(s + pl + ul * (size_t)i, unit, ul);
    memcpy(s + pl + ul * (size_t)n, suffix, sl + 1);
    return s;
}

START_TEST(deep_nesting)
{
    /* 10k parens: bison's stack limit, reported as an error */
    char *s = repeat("const a = ", "(", 10000, "1");
    size_t n = strlen(s);
    char *t = repeat(s, ")", 10000, "\n");
    ck_assert_ptr_null(parse(t));
    ck_assert_ptr_nonnull(strstr(diags(), "error: nesting is too deep for the parser"));
    ck_assert_uint_gt(n, 10000);

    diag_reset(diag_out);
    ck_assert_ptr_null(parse(repeat("const a = ", "-", 20000, "1\n")));
    ck_assert_ptr_null(parse(repeat("const a = 1", "**1", 20000, "\n")));
    ck_assert_ptr_null(parse(repeat("const a = ", "[", 20000, "\n")));
    ck_assert_ptr_null(parse(repeat("fn f(x) {", "for i in 0..2 {", 5000, "\n")));
    /* shallow for the parser's stack, too deep for later recursive passes */
    diag_reset(diag_out);
    ck_assert_ptr_null(parse(repeat("const a = 1", "+1", 100000, "\n")));
    ck_assert_ptr_nonnull(strstr(diags(), "nested more than 512 levels deep"));
    /* 300 levels are fine */
    diag_reset(diag_out);
    s = repeat("const a = ", "(", 300, "1");
    ck_assert_ptr_nonnull(parse_ok(repeat(s, ")", 300, "\n")));
}
END_TEST

START_TEST(garbage)
{
    static const char *const bits[] = {
        "fn", "export", "const", "param", "grad", "for", "in", "return", "(", ")", "[", "]", "{", "}",
        "\n", ";", ",", ":", "=", "+=", "..", "...", ".", "->", "**", "-", "@", "x", "f32", "1", "2.5",
        "\"s\"", "#c\n", " ", "\n grad", "none", "|", "!", "\0", "\xff", "'", "\"",
    };
    const int nbits = (int)(sizeof bits / sizeof bits[0]);
    unsigned seed = 12345;
    char buf[4096];
    for (int iter = 0; iter < 3000; iter++) {
        size_t len = 0;
        int pieces = 1 + iter % 60;
        for (int p = 0; p < pieces; p++) {
            seed = seed * 1103515245u + 12345u;
            if ((seed >> 16) % 8 == 0) {           /* a raw byte */
                buf[len++] = (char)(seed >> 8);
                continue;
            }
            const char *b = bits[(seed >> 16) % (unsigned)nbits];
            size_t bl = b[0] ? strlen(b) : 1;
            memcpy(buf + len, b, bl);
            len += bl;
        }
        diag_reset(diag_out);
        ast_file *f = parse_n(buf, len);
        /* any result is fine as long as errors and the result agree */
        ck_assert((f == NULL) == (diag_error_count() > 0));
        if (f) {
            FILE *sink = fopen("/dev/null", "w");
            ast_print(sink, f);
            fclose(sink);
        }
        if (iter % 100 == 99) {   /* keep the diag file small */
            fclose(diag_out);
            diag_out = tmpfile();
        }
    }
}
END_TEST

START_TEST(error_cap)
{
    /* 1000 bad lines: the parser stops after diag's cap instead of going on */
    ck_assert_ptr_null(parse(repeat("", "const = 1\n", 1000, "")));
    ck_assert_int_ge(diag_error_count(), 20);
    ck_assert_int_le(diag_error_count(), 21);
}
END_TEST

START_TEST(print_tree)
{
    ast_file *f = parse_ok("export fn forward(x: f32[B, 784]) -> f32[B, 10] {\n"
                           "    h = x @ W1\n"
                           "    return h[:, 0]\n"
                           "} grad (dy) { return dy, none }\n"
                           "const N = 2.5\n");
    char *out = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);
    ast_print(m, f);
    fclose(m);
    const char *want = "fn forward (export) @1:1\n"
                       "  arg x @1:19\n"
                       "    type f32[] @1:22\n"
                       "      name B @1:26\n"
                       "      int 784 @1:29\n"
                       "  result: type f32[] @1:38\n"
                       "    name B @1:42\n"
                       "    int 10 @1:45\n"
                       "  assign h @2:5\n"
                       "    binary @ @2:11\n"
                       "      name x @2:9\n"
                       "      name W1 @2:13\n"
                       "  return @3:5\n"
                       "    index @3:12\n"
                       "      name h @3:12\n"
                       "      slice @3:14\n"
                       "        start: -\n"
                       "        stop: -\n"
                       "        step: -\n"
                       "      int 0 @3:17\n"
                       "  grad @4:3\n"
                       "    arg dy @4:9\n"
                       "    return @4:15\n"
                       "      tuple @4:22\n"
                       "        name dy @4:22\n"
                       "        none @4:26\n"
                       "const N @5:1\n"
                       "  float 2.5 @5:11\n";
    ck_assert_str_eq(out, want);
    free(out);
    ck_assert_str_eq(ast_binop_str(BIN_POW), "**");
    ck_assert_str_eq(ast_binop_str(BIN_MATMUL), "@");
    ck_assert_str_eq(ast_binop_str(BIN_NE), "!=");
}
END_TEST

static Suite *parser_suite(void)
{
    Suite *s = suite_create("parser");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, precedence);
    tcase_add_test(tc, comparisons_do_not_chain);
    tcase_add_test(tc, postfix_chains);
    tcase_add_test(tc, indexing_and_slices);
    tcase_add_test(tc, literals);
    tcase_add_test(tc, locations);
    tcase_add_test(tc, newlines_and_separators);
    tcase_add_test(tc, statements);
    tcase_add_test(tc, declarations);
    tcase_add_test(tc, custom_gradient);
    tcase_add_test(tc, grad_block_needs_a_fn);
    tcase_add_test(tc, brace_on_next_line);
    tcase_add_test(tc, several_errors);
    tcase_add_test(tc, error_hints);
    tcase_add_test(tc, lexical_errors);
    tcase_add_test(tc, empty_and_trivial_files);
    tcase_add_test(tc, deep_nesting);
    tcase_add_test(tc, garbage);
    tcase_add_test(tc, error_cap);
    tcase_add_test(tc, print_tree);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(parser_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
