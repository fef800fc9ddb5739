/* AST builders (called from grammar/parser.y, one per action) and the tree printer
 * behind `tdslc dump --stage ast`. */
#include "ast_build.h"
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

const char *ast_binop_str(ast_binop op)
{
    static const char *const names[] = {
        [BIN_OR] = "|",  [BIN_AND] = "&", [BIN_EQ] = "==", [BIN_NE] = "!=", [BIN_LT] = "<",
        [BIN_LE] = "<=", [BIN_GT] = ">",  [BIN_GE] = ">=", [BIN_ADD] = "+", [BIN_SUB] = "-",
        [BIN_MUL] = "*", [BIN_DIV] = "/", [BIN_MOD] = "%", [BIN_MATMUL] = "@", [BIN_POW] = "**",
    };
    if ((unsigned)op < sizeof names / sizeof names[0] && names[op])
        return names[op];
    return "?";
}

/* ---- lists */

ast_expr_list *ast_expr_list_push(arena *ar, ast_expr_list *list, ast_expr *e)
{
    if (!list)
        list = arena_alloc(ar, sizeof *list);
    ARR_PUSH(ar, list->items, list->n, list->cap, e);
    return list;
}

ast_arg_list *ast_arg_list_push(arena *ar, ast_arg_list *list, ast_arg a)
{
    if (!list)
        list = arena_alloc(ar, sizeof *list);
    ARR_PUSH(ar, list->items, list->n, list->cap, a);
    return list;
}

ast_stmt_list *ast_stmt_list_push(arena *ar, ast_stmt_list *list, ast_stmt *s)
{
    if (!list)
        list = arena_alloc(ar, sizeof *list);
    ARR_PUSH(ar, list->items, list->n, list->cap, s);
    return list;
}

ast_name_list *ast_name_list_push(arena *ar, ast_name_list *list, const char *name, src_loc loc)
{
    if (!list)
        list = arena_alloc(ar, sizeof *list);
    int n = list->n;
    ARR_PUSH(ar, list->names, list->n, list->cap, name);
    ARR_PUSH(ar, list->locs, n, list->ncap, loc);
    return list;
}

ast_param_list *ast_param_list_push(arena *ar, ast_param_list *list, ast_param_decl p)
{
    if (!list)
        list = arena_alloc(ar, sizeof *list);
    ARR_PUSH(ar, list->items, list->n, list->cap, p);
    return list;
}

/* ---- expressions */

ast_expr *ast_new_expr(arena *ar, ast_expr_kind kind, src_loc loc)
{
    ast_expr *e = arena_alloc(ar, sizeof *e);
    e->kind = kind;
    e->loc = loc;
    return e;
}

ast_expr *ast_new_int(arena *ar, int64_t v, src_loc loc)
{
    ast_expr *e = ast_new_expr(ar, AST_INT, loc);
    e->ival = v;
    return e;
}

ast_expr *ast_new_float(arena *ar, double v, src_loc loc)
{
    ast_expr *e = ast_new_expr(ar, AST_FLOAT, loc);
    e->fval = v;
    return e;
}

ast_expr *ast_new_bool(arena *ar, bool v, src_loc loc)
{
    ast_expr *e = ast_new_expr(ar, AST_BOOL, loc);
    e->ival = v;
    return e;
}

ast_expr *ast_new_string(arena *ar, ast_expr_kind kind, const char *s, src_loc loc)
{
    ast_expr *e = ast_new_expr(ar, kind, loc);
    e->str = s;
    return e;
}

ast_expr *ast_new_unary(arena *ar, int op, ast_expr *x, src_loc loc)
{
    ast_expr *e = ast_new_expr(ar, AST_UNARY, loc);
    e->op = op;
    e->kids[0] = x;
    return e;
}

ast_expr *ast_new_binary(arena *ar, ast_binop op, ast_expr *a, ast_expr *b, src_loc loc)
{
    ast_expr *e = ast_new_expr(ar, AST_BINARY, loc);
    e->op = (int)op;
    e->kids[0] = a;
    e->kids[1] = b;
    return e;
}

static void set_args(ast_expr *e, ast_arg_list *args)
{
    if (args) {
        e->args = args->items;
        e->nargs = args->n;
    }
}

static void set_items(ast_expr *e, ast_expr_list *items)
{
    if (items) {
        e->items = items->items;
        e->nitems = items->n;
    }
}

ast_expr *ast_new_call(arena *ar, const char *callee, ast_arg_list *args, src_loc loc)
{
    ast_expr *e = ast_new_expr(ar, AST_CALL, loc);
    e->str = callee;
    set_args(e, args);
    return e;
}

ast_expr *ast_new_method(arena *ar, ast_expr *recv, const char *name, ast_arg_list *args, src_loc loc)
{
    ast_expr *e = ast_new_expr(ar, AST_METHOD, loc);
    e->kids[0] = recv;
    e->str = name;
    set_args(e, args);
    return e;
}

ast_expr *ast_new_field(arena *ar, ast_expr *recv, const char *name, src_loc loc)
{
    ast_expr *e = ast_new_expr(ar, AST_FIELD, loc);
    e->kids[0] = recv;
    e->str = name;
    return e;
}

ast_expr *ast_new_index(arena *ar, ast_expr *base, ast_expr_list *items, src_loc loc)
{
    ast_expr *e = ast_new_expr(ar, AST_INDEX, loc);
    e->kids[0] = base;
    set_items(e, items);
    return e;
}

ast_expr *ast_new_slice(arena *ar, ast_expr *start, ast_expr *stop, ast_expr *step, src_loc loc)
{
    ast_expr *e = ast_new_expr(ar, AST_SLICE, loc);
    e->kids[0] = start;
    e->kids[1] = stop;
    e->kids[2] = step;
    return e;
}

ast_expr *ast_new_list(arena *ar, ast_expr_kind kind, ast_expr_list *items, src_loc loc)
{
    ast_expr *e = ast_new_expr(ar, kind, loc);
    set_items(e, items);
    return e;
}

ast_expr *ast_new_type(arena *ar, const char *dtype, ast_expr_list *dims, bool has_dims, src_loc loc)
{
    ast_expr *e = ast_new_expr(ar, AST_TYPE, loc);
    e->str = dtype;
    e->has_dims = has_dims;
    set_items(e, dims);
    return e;
}

ast_arg ast_make_arg(const char *name, ast_expr *value, src_loc loc)
{
    ast_arg a = {name, value, loc};
    return a;
}

/* ---- statements */

static ast_stmt *new_stmt(arena *ar, ast_stmt_kind kind, src_loc loc)
{
    ast_stmt *s = arena_alloc(ar, sizeof *s);
    s->kind = kind;
    s->loc = loc;
    return s;
}

static void set_body(ast_stmt ***body, int *n, ast_stmt_list *list)
{
    if (list) {
        *body = list->items;
        *n = list->n;
    }
}

ast_stmt *ast_new_assign(arena *ar, ast_name_list *targets, ast_expr *value, src_loc loc)
{
    ast_stmt *s = new_stmt(ar, STMT_ASSIGN, loc);
    if (targets) {
        s->targets = targets->names;
        s->target_locs = targets->locs;
        s->ntargets = targets->n;
    }
    s->value = value;
    return s;
}

ast_stmt *ast_new_augassign(arena *ar, const char *target, src_loc target_loc, ast_binop op,
                            ast_expr *value, src_loc loc)
{
    ast_stmt *s = new_stmt(ar, STMT_AUGASSIGN, loc);
    ast_name_list *t = ast_name_list_push(ar, NULL, target, target_loc);
    s->targets = t->names;
    s->target_locs = t->locs;
    s->ntargets = 1;
    s->op = (int)op;
    s->value = value;
    return s;
}

ast_stmt *ast_new_return(arena *ar, ast_expr_list *values, src_loc loc)
{
    ast_stmt *s = new_stmt(ar, STMT_RETURN, loc);
    if (values && values->n == 1)
        s->value = values->items[0];
    else if (values && values->n > 1)
        s->value = ast_new_list(ar, AST_TUPLE, values, values->items[0]->loc);
    return s;
}

ast_stmt *ast_new_for(arena *ar, const char *var, ast_expr *lo, ast_expr *hi, ast_stmt_list *body,
                      src_loc loc)
{
    ast_stmt *s = new_stmt(ar, STMT_FOR, loc);
    s->var = var;
    s->lo = lo;
    s->hi = hi;
    set_body(&s->body, &s->nbody, body);
    return s;
}

ast_stmt *ast_new_expr_stmt(arena *ar, ast_expr *e, src_loc loc)
{
    ast_stmt *s = new_stmt(ar, STMT_EXPR, loc);
    s->value = e;
    return s;
}

/* ---- declarations */

ast_param_decl ast_make_param_decl(const char *name, ast_expr *type, src_loc loc)
{
    ast_param_decl p = {name, type, loc};
    return p;
}

ast_grad_block *ast_new_grad_block(arena *ar, ast_param_list *params, ast_stmt_list *body, src_loc loc)
{
    ast_grad_block *g = arena_alloc(ar, sizeof *g);
    g->loc = loc;
    g->params = params;
    g->body = body;
    return g;
}

static ast_decl *new_decl(arena *ar, ast_decl_kind kind, const char *name, src_loc name_loc, src_loc loc)
{
    ast_decl *d = arena_alloc(ar, sizeof *d);
    d->kind = kind;
    d->name = name;
    d->name_loc = name_loc;
    d->loc = loc;
    return d;
}

ast_decl *ast_new_const(arena *ar, const char *name, src_loc name_loc, ast_expr *value, src_loc loc)
{
    ast_decl *d = new_decl(ar, DECL_CONST, name, name_loc, loc);
    d->value = value;
    return d;
}

ast_decl *ast_new_param(arena *ar, const char *name, src_loc name_loc, ast_expr *type, ast_expr *init,
                        src_loc loc)
{
    ast_decl *d = new_decl(ar, DECL_PARAM, name, name_loc, loc);
    d->type = type;
    d->value = init;
    return d;
}

ast_decl *ast_new_fn(arena *ar, const char *name, src_loc name_loc, ast_param_list *params,
                     ast_expr *result, ast_stmt_list *body, ast_grad_block *grad, src_loc loc)
{
    ast_decl *d = new_decl(ar, DECL_FN, name, name_loc, loc);
    if (params) {
        d->params = params->items;
        d->nparams = params->n;
    }
    d->type = result;
    set_body(&d->body, &d->nbody, body);
    if (grad) {
        d->has_grad = true;
        d->grad_loc = grad->loc;
        if (grad->params) {
            d->grad_params = grad->params->items;
            d->ngrad_params = grad->params->n;
        }
        set_body(&d->grad_body, &d->ngrad_body, grad->body);
    }
    return d;
}

ast_decl *ast_decl_export(ast_decl *fn, src_loc loc)
{
    fn->exported = true;
    fn->loc = loc;
    return fn;
}

ast_decl *ast_new_export(arena *ar, const char *name, src_loc name_loc, ast_expr *value, src_loc loc)
{
    ast_decl *d = new_decl(ar, DECL_EXPORT, name, name_loc, loc);
    d->value = value;
    return d;
}

ast_file *ast_new_file(arena *ar, const src_file *file)
{
    ast_file *f = arena_alloc(ar, sizeof *f);
    f->file = file;
    return f;
}

ast_file *ast_file_add(arena *ar, ast_file *f, ast_decl *d)
{
    /* ast_file has no capacity field: it is max(8, ndecls rounded up to a power of two). */
    int n = f->ndecls;
    if (n == 0 || (n >= 8 && (n & (n - 1)) == 0)) {
        size_t cap = n ? (size_t)n * 2 : 8;
        f->decls = arena_realloc(ar, f->decls, sizeof(*f->decls) * (size_t)n, sizeof(*f->decls) * cap);
    }
    f->decls[f->ndecls++] = d;
    return f;
}

/* ---- depth limit */

static bool expr_too_deep(const ast_expr *e, int depth, int limit, src_loc *where)
{
    if (!e)
        return false;
    if (depth > limit) {
        *where = e->loc;
        return true;
    }
    for (int i = 0; i < 3; i++)
        if (expr_too_deep(e->kids[i], depth + 1, limit, where))
            return true;
    for (int i = 0; i < e->nitems; i++)
        if (expr_too_deep(e->items[i], depth + 1, limit, where))
            return true;
    for (int i = 0; i < e->nargs; i++)
        if (expr_too_deep(e->args[i].value, depth + 1, limit, where))
            return true;
    return false;
}

static bool body_too_deep(ast_stmt *const *body, int n, int depth, int limit, src_loc *where)
{
    for (int i = 0; i < n; i++) {
        const ast_stmt *s = body[i];
        if (depth > limit) {
            *where = s->loc;
            return true;
        }
        if (expr_too_deep(s->value, depth + 1, limit, where) ||
            expr_too_deep(s->lo, depth + 1, limit, where) ||
            expr_too_deep(s->hi, depth + 1, limit, where) ||
            body_too_deep(s->body, s->nbody, depth + 1, limit, where))
            return true;
    }
    return false;
}

bool ast_too_deep(const ast_file *f, int limit, src_loc *where)
{
    for (int i = 0; i < f->ndecls; i++) {
        const ast_decl *d = f->decls[i];
        if (expr_too_deep(d->type, 1, limit, where) || expr_too_deep(d->value, 1, limit, where) ||
            body_too_deep(d->body, d->nbody, 1, limit, where) ||
            body_too_deep(d->grad_body, d->ngrad_body, 1, limit, where))
            return true;
        for (int j = 0; j < d->nparams; j++)
            if (expr_too_deep(d->params[j].type, 1, limit, where))
                return true;
    }
    return false;
}

/* ---- printer: one node per line, `kind detail @line:col`, two spaces per level */

static void indent(FILE *out, int depth)
{
    for (int i = 0; i < depth; i++)
        fputs("  ", out);
}

static void print_loc(FILE *out, src_loc loc) { fprintf(out, " @%d:%d\n", loc.line, loc.col); }

static void print_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", out);
        else if (c == '\t')
            fputs("\\t", out);
        else if (c < 32 || c == 127)
            fprintf(out, "\\x%02x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

/* The shortest %g form that reads back as the same double. */
static void print_float(FILE *out, double v)
{
    char buf[40];
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    fprintf(out, "float %s", buf);
}

static void print_expr(FILE *out, const ast_expr *e, int depth, const char *label);

static void print_args(FILE *out, const ast_expr *e, int depth)
{
    for (int i = 0; i < e->nargs; i++) {
        const ast_arg *a = &e->args[i];
        if (a->name) {
            indent(out, depth);
            fprintf(out, "kwarg %s", a->name);
            print_loc(out, a->loc);
            print_expr(out, a->value, depth + 1, NULL);
        } else {
            print_expr(out, a->value, depth, NULL);
        }
    }
}

static void print_expr(FILE *out, const ast_expr *e, int depth, const char *label)
{
    indent(out, depth);
    if (label)
        fprintf(out, "%s: ", label);
    if (!e) {
        fputs("-\n", out);
        return;
    }
    if (depth > 1000) {   /* the parser rejects deeper trees; this guards hand-built ones */
        fputs("...\n", out);
        return;
    }
    switch (e->kind) {
    case AST_INT: fprintf(out, "int %" PRId64, e->ival); break;
    case AST_FLOAT: print_float(out, e->fval); break;
    case AST_BOOL: fputs(e->ival ? "bool true" : "bool false", out); break;
    case AST_STRING: fputs("string ", out); print_string(out, e->str); break;
    case AST_NONE: fputs("none", out); break;
    case AST_NAME: fprintf(out, "name %s", e->str); break;
    case AST_LIST: fputs("list", out); break;
    case AST_TUPLE: fputs("tuple", out); break;
    case AST_UNARY: fprintf(out, "unary %c", e->op); break;
    case AST_BINARY: fprintf(out, "binary %s", ast_binop_str((ast_binop)e->op)); break;
    case AST_CALL: fprintf(out, "call %s", e->str); break;
    case AST_METHOD: fprintf(out, "method %s", e->str); break;
    case AST_FIELD: fprintf(out, "field %s", e->str); break;
    case AST_INDEX: fputs("index", out); break;
    case AST_SLICE: fputs("slice", out); break;
    case AST_ELLIPSIS: fputs("ellipsis", out); break;
    case AST_TYPE: fprintf(out, "type %s%s", e->str, e->has_dims ? "[]" : ""); break;
    default: fprintf(out, "?kind%d", (int)e->kind); break;
    }
    print_loc(out, e->loc);
    switch (e->kind) {
    case AST_UNARY: print_expr(out, e->kids[0], depth + 1, NULL); break;
    case AST_BINARY:
        print_expr(out, e->kids[0], depth + 1, NULL);
        print_expr(out, e->kids[1], depth + 1, NULL);
        break;
    case AST_METHOD:
    case AST_FIELD:
    case AST_INDEX: print_expr(out, e->kids[0], depth + 1, NULL); break;
    case AST_SLICE:
        print_expr(out, e->kids[0], depth + 1, "start");
        print_expr(out, e->kids[1], depth + 1, "stop");
        print_expr(out, e->kids[2], depth + 1, "step");
        break;
    default: break;
    }
    for (int i = 0; i < e->nitems; i++)
        print_expr(out, e->items[i], depth + 1, NULL);
    print_args(out, e, depth + 1);
}

static void print_body(FILE *out, ast_stmt *const *body, int n, int depth)
{
    for (int i = 0; i < n; i++) {
        const ast_stmt *s = body[i];
        indent(out, depth);
        switch (s->kind) {
        case STMT_ASSIGN:
            fputs("assign ", out);
            for (int t = 0; t < s->ntargets; t++)
                fprintf(out, "%s%s", t ? ", " : "", s->targets[t]);
            break;
        case STMT_AUGASSIGN:
            fprintf(out, "augassign %s %s=", s->ntargets ? s->targets[0] : "?",
                    ast_binop_str((ast_binop)s->op));
            break;
        case STMT_RETURN: fputs("return", out); break;
        case STMT_FOR: fprintf(out, "for %s", s->var); break;
        case STMT_EXPR: fputs("expr", out); break;
        default: fprintf(out, "?stmt%d", (int)s->kind); break;
        }
        print_loc(out, s->loc);
        if (s->kind == STMT_FOR) {
            print_expr(out, s->lo, depth + 1, "from");
            print_expr(out, s->hi, depth + 1, "to");
            print_body(out, s->body, s->nbody, depth + 1);
        } else if (s->value) {
            print_expr(out, s->value, depth + 1, NULL);
        }
    }
}

static void print_params(FILE *out, const ast_param_decl *p, int n, int depth, const char *what)
{
    for (int i = 0; i < n; i++) {
        indent(out, depth);
        fprintf(out, "%s %s", what, p[i].name);
        print_loc(out, p[i].loc);
        if (p[i].type)
            print_expr(out, p[i].type, depth + 1, NULL);
    }
}

void ast_print(FILE *out, const ast_file *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->ndecls; i++) {
        const ast_decl *d = f->decls[i];
        switch (d->kind) {
        case DECL_CONST:
            fprintf(out, "const %s", d->name);
            print_loc(out, d->loc);
            print_expr(out, d->value, 1, NULL);
            break;
        case DECL_PARAM:
            fprintf(out, "param %s", d->name);
            print_loc(out, d->loc);
            print_expr(out, d->type, 1, NULL);
            if (d->value)
                print_expr(out, d->value, 1, "init");
            break;
        case DECL_FN:
            fprintf(out, "fn %s%s", d->name, d->exported ? " (export)" : "");
            print_loc(out, d->loc);
            print_params(out, d->params, d->nparams, 1, "arg");
            if (d->type)
                print_expr(out, d->type, 1, "result");
            print_body(out, d->body, d->nbody, 1);
            if (d->has_grad) {
                fputs("  grad", out);
                print_loc(out, d->grad_loc);
                print_params(out, d->grad_params, d->ngrad_params, 2, "arg");
                print_body(out, d->grad_body, d->ngrad_body, 2);
            }
            break;
        case DECL_EXPORT:
            fprintf(out, "export %s", d->name);
            print_loc(out, d->loc);
            print_expr(out, d->value, 1, NULL);
            break;
        default: fprintf(out, "?decl%d\n", (int)d->kind); break;
        }
    }
}
