/* Lowering: AST -> IR (see lower.h). The front end's user-facing checks live here, each
 * with the source location of the offending expression; the IR shape rules behind
 * ir_append() are the second line of defence and report through the same location.
 * This file is the core (lower_internal.h lists what the other lower*.c files hold). */
#include "lower_internal.h"
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ helpers */

const char *lw_vkind_name(vkind k)
{
    switch (k) {
    case V_TENSOR: return "a tensor";
    case V_INT: return "an integer";
    case V_FLOAT: return "a float";
    case V_BOOL: return "a bool";
    case V_STR: return "a string";
    case V_NONE: return "none";
    case V_LIST: return "a list";
    case V_DTYPE: return "a dtype";
    case V_FN: return "a function";
    default: return "an invalid value";
    }
}

void lw_shape_str(char *buf, size_t n, const ir_node *t)
{
    snprintf(buf, n, "%s", ir_dtype_name(t->dtype));
    size_t o = strlen(buf);
    if (t->rank)
        ir_format_shape(buf + o, n - o, t->rank, t->shape);
}

/* Appends a node at the current location; a shape-rule failure is a user error here. */
value lw_emit(lower_ctx *c, ir_proto *p)
{
    char err[256];
    if (!c->fn) {   /* a constant expression (const, a declared shape) that needs a tensor */
        diag_error(c->loc, "not a constant expression: constants and declared shapes use numbers, consts and "
                           "+ - * / %% **");
        return VERR;
    }
    p->line = c->loc.line;
    p->col = c->loc.col;
    int id = ir_append(c->fn, p, err, sizeof err);
    if (id < 0) {
        diag_error(c->loc, "%s", err);
        return VERR;
    }
    return vtensor(id);
}

value lw_emit1(lower_ctx *c, ir_opcode op, int a)
{
    ir_proto p = {.op = op, .nin = 1, .in = &a};
    return lw_emit(c, &p);
}

value lw_emit_cast(lower_ctx *c, int a, ir_dtype dt)
{
    if (node(c, a)->dtype == dt)
        return vtensor(a);
    ir_proto p = {.op = OP_cast, .dtype = dt, .nin = 1, .in = &a};
    return lw_emit(c, &p);
}

value lw_emit_expand(lower_ctx *c, int a, int rank, const int64_t *shape)
{
    ir_node *n = node(c, a);
    bool same = n->rank == rank;
    for (int d = 0; same && d < rank; d++)
        same = n->shape[d] == shape[d];
    if (same)
        return vtensor(a);
    ir_proto p = {.op = OP_expand, .nin = 1, .in = &a, .nlist = rank};
    memcpy(p.list, shape, sizeof(int64_t) * (size_t)rank);
    return lw_emit(c, &p);
}

value lw_emit_const(lower_ctx *c, double v, ir_dtype dt)
{
    ir_proto p = {.op = OP_constant, .dtype = dt, .f = {v}};
    return lw_emit(c, &p);
}

/* ------------------------------------------------------------------ names */

static uint32_t name_hash(const char *s)
{
    uint32_t h = 2166136261u;   /* FNV-1a */
    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

/* index of key's slot, or of the empty slot where it would go */
static int map_slot(const name_map *m, const char *key)
{
    int mask = m->cap - 1, k = (int)(name_hash(key) & (uint32_t)mask);
    while (m->keys[k] && strcmp(m->keys[k], key) != 0)
        k = (k + 1) & mask;
    return k;
}

static void *map_get(const name_map *m, const char *key)
{
    if (!m || !m->cap)
        return NULL;
    return m->vals[map_slot(m, key)];
}

static void map_put(arena *ar, name_map *m, const char *key, void *val)
{
    if (2 * (m->n + 1) > m->cap) {   /* keep the load under 1/2 */
        name_map g = {.cap = m->cap ? 2 * m->cap : 16};
        g.keys = arena_alloc(ar, sizeof *g.keys * (size_t)g.cap);
        g.vals = arena_alloc(ar, sizeof *g.vals * (size_t)g.cap);
        for (int k = 0; k < m->cap; k++)
            if (m->keys[k]) {
                int j = map_slot(&g, m->keys[k]);
                g.keys[j] = m->keys[k];
                g.vals[j] = m->vals[k];
            }
        g.n = m->n;
        *m = g;
    }
    int k = map_slot(m, key);
    if (!m->keys[k]) {
        m->keys[k] = key;
        m->n++;
    }
    m->vals[k] = val;
}

/* the newest binding of name in the current scope, or NULL */
static binding *find_local(lower_ctx *c, const char *name)
{
    return c->scope ? map_get(c->scope->root->map, name) : NULL;
}

global *lw_find_global(lower_ctx *c, const char *name)
{
    uintptr_t k = (uintptr_t)map_get(&c->gmap, name);   /* index + 1; 0: absent */
    return k ? &c->globals[k - 1] : NULL;
}

int lw_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 32 || lb > 32)
        return 99;
    int d[33][33];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            d[i][j] = best;
        }
    return d[la][lb];
}

static void suggest_name(lower_ctx *c, const char *name, bool functions)
{
    const char *best = NULL;
    int bd = 3;
    for (binding *b = c->scope; b && !functions; b = b->next)
        if (lw_edit_distance(name, b->name) < bd)
            bd = lw_edit_distance(name, b->name), best = b->name;
    for (int k = 0; k < c->nglobals; k++)
        if (c->globals[k].kind != DECL_EXPORT && !(c->globals[k].kind == DECL_FN && c->globals[k].decl->exported) &&
            lw_edit_distance(name, c->globals[k].name) < bd)
            bd = lw_edit_distance(name, c->globals[k].name), best = c->globals[k].name;
    for (size_t k = 0; functions && k < lw_nbuiltins; k++)
        if (lw_edit_distance(name, lw_builtins[k].name) < bd)
            bd = lw_edit_distance(name, lw_builtins[k].name), best = lw_builtins[k].name;
    if (best)
        diag_note(c->loc, "did you mean '%s'?", best);
}

value lw_param_value(lower_ctx *c, global *g)
{
    int *slot = &c->param_nodes[g->param_index];
    if (*slot < 0) {
        ir_proto p = {.op = OP_param, .i = {g->param_index}, .name = g->name};
        src_loc saved = c->loc;
        c->loc = g->loc;
        value v = lw_emit(c, &p);
        c->loc = saved;
        if (v.k == V_ERR)
            return VERR;
        *slot = v.id;
    }
    return vtensor(*slot);
}

static value lookup(lower_ctx *c, const char *name, src_loc loc)
{
    binding *b = find_local(c, name);
    if (b)
        return b->v;
    global *g = lw_find_global(c, name);
    if (g) {
        if (g->kind == DECL_PARAM) {
            if (!c->fn) {
                diag_error(loc, "param '%s' cannot be used in a constant expression", name);
                return VERR;
            }
            return lw_param_value(c, g);
        }
        if (g->kind == DECL_FN) {
            value v = {.k = V_FN, .fn = g->decl};
            return v;
        }
        if (g->kind == DECL_EXPORT) {
            diag_error(loc, "'%s' is an exported training or gradient function; it cannot be called from tdsl code", name);
            return VERR;
        }
        return g->v;
    }
    ir_dtype dt;
    if (ir_dtype_parse(name, &dt)) {
        value v = {.k = V_DTYPE, .dt = dt};
        return v;
    }
    src_loc saved = c->loc;
    c->loc = loc;
    if (lw_find_builtin(name))
        diag_error(loc, "'%s' is a builtin function; call it: %s(...)", name, name);
    else {
        const ast_decl *later = NULL;
        for (int k = 0; k < c->file->ndecls && !later; k++)
            if (strcmp(c->file->decls[k]->name, name) == 0)
                later = c->file->decls[k];
        if (later) {
            diag_error(loc, "'%s' is defined later (line %d); constants and params can use only earlier constants",
                       name, later->loc.line);
        } else {
            diag_error(loc, "unknown name '%s'", name);
            suggest_name(c, name, false);
        }
    }
    c->loc = saved;
    return VERR;
}

void lw_bind_quiet(lower_ctx *c, const char *name, value v)
{
    binding *b = arena_alloc(c->ar, sizeof *b);
    b->name = name;
    b->v = v;
    b->next = c->scope;
    b->root = c->scope ? c->scope->root : b;
    if (!c->scope)
        b->map = arena_alloc(c->ar, sizeof *b->map);
    map_put(c->ar, b->root->map, name, b);
    c->scope = b;
}

/* A binding also names the value it binds, if it has no name yet (`h = relu(..)` -> %h). */
static void bind(lower_ctx *c, const char *name, value v)
{
    lw_bind_quiet(c, name, v);
    if (v.k == V_TENSOR && c->fn && !node(c, v.id)->name)
        node(c, v.id)->name = name;
}

/* ------------------------------------------------------------------ expressions */

static value lower_expr(lower_ctx *c, const ast_expr *e);
static value call_fn(lower_ctx *c, const ast_decl *fn, int npos, value *pos, const ast_arg *kw, int nkw,
                     const value *kwv, src_loc call_loc);

static const ir_opcode binop_ops[] = {
    [BIN_OR] = OP_lor, [BIN_AND] = OP_land, [BIN_EQ] = OP_eq, [BIN_NE] = OP_ne, [BIN_LT] = OP_lt,
    [BIN_LE] = OP_le,  [BIN_GT] = OP_gt,    [BIN_GE] = OP_ge, [BIN_ADD] = OP_add, [BIN_SUB] = OP_sub,
    [BIN_MUL] = OP_mul, [BIN_DIV] = OP_div, [BIN_MOD] = OP_mod, [BIN_MATMUL] = OP_matmul, [BIN_POW] = OP_pow,
};

static value apply_binop(lower_ctx *c, int op, value a, value b)
{
    if (a.k == V_ERR || b.k == V_ERR)
        return VERR;
    if (op == BIN_MATMUL)
        return lw_matmul(c, a, b);
    return lw_binary(c, binop_ops[op], a, b);
}

/* Python slice bounds, clamped (torch forbids negative steps) */
static bool slice_bounds(lower_ctx *c, const ast_expr *s, int64_t size, int64_t *start, int64_t *stop, int64_t *step)
{
    int64_t v[3] = {0, size, 1};
    for (int k = 0; k < 3; k++) {
        if (!s->kids[k])
            continue;
        value x = lower_expr(c, s->kids[k]);
        if (x.k == V_NONE)
            continue;
        if (!lw_get_int(c, x, k == 2 ? "a slice step" : "a slice bound", &v[k]))
            return false;
    }
    if (v[2] <= 0) {
        diag_error(c->loc, "slice step must be positive, got %lld (reverse with a gather or index instead)", (long long)v[2]);
        return false;
    }
    for (int k = 0; k < 2; k++) {
        if (v[k] < 0)
            v[k] += size;
        if (v[k] < 0)
            v[k] = 0;
        if (v[k] > size)
            v[k] = size;
    }
    if (v[1] < v[0])
        v[1] = v[0];
    *start = v[0];
    *stop = v[1];
    *step = v[2];
    return true;
}

static value index_expr(lower_ctx *c, const ast_expr *e)
{
    value base = lower_expr(c, e->kids[0]);
    if (base.k == V_ERR)
        return VERR;
    c->loc = e->loc;
    if (base.k == V_LIST) {   /* x.shape[i], tuple and list elements */
        if (e->nitems != 1 || e->items[0]->kind == AST_SLICE || e->items[0]->kind == AST_ELLIPSIS) {
            diag_error(e->loc, "a list takes a single integer index");
            return VERR;
        }
        int64_t i;
        if (!lw_get_int(c, lower_expr(c, e->items[0]), "a list index", &i))
            return VERR;
        if (i < -base.n || i >= base.n) {
            diag_error(e->loc, "index %lld is out of range for a list of %d elements", (long long)i, base.n);
            return VERR;
        }
        return base.items[i < 0 ? i + base.n : i];
    }
    if (base.k != V_TENSOR) {
        diag_error(e->loc, "cannot index %s", lw_vkind_name(base.k));
        return VERR;
    }
    int x = base.id, rank = node(c, x)->rank;
    /* evaluate items; count those that consume a dimension */
    value *vals = arena_alloc(c->ar, sizeof(value) * (size_t)(e->nitems + 1));
    int consumed = 0, ellipsis = -1, tensor_item = -1;
    for (int k = 0; k < e->nitems; k++) {
        const ast_expr *it = e->items[k];
        if (it->kind == AST_ELLIPSIS) {
            if (ellipsis >= 0) {
                diag_error(it->loc, "an index can have only one '...'");
                return VERR;
            }
            ellipsis = k;
            continue;
        }
        consumed++;
        if (it->kind == AST_SLICE)
            continue;
        vals[k] = lower_expr(c, it);
        c->loc = it->loc;
        if (vals[k].k == V_ERR)
            return VERR;
        if (vals[k].k == V_TENSOR) {
            if (node(c, vals[k].id)->dtype == DT_BOOL) {
                diag_error(it->loc, "a boolean mask cannot be used as an index: its result would have a "
                                    "data-dependent shape, which a static graph cannot hold");
                diag_note(it->loc, "use where(mask, x, 0) or masked_fill(x, !mask, 0) to keep the shape");
                return VERR;
            }
            if (tensor_item >= 0) {
                diag_error(it->loc, "indexing with more than one tensor is not supported; use gather()");
                return VERR;
            }
            tensor_item = k;
        } else if (vals[k].k == V_NONE) {
            diag_error(it->loc, "indexing with none (a new axis) is not supported; use unsqueeze(axis)");
            return VERR;
        } else if (vals[k].k != V_INT) {
            diag_error(it->loc, "an index must be an integer, a slice, '...' or an integer tensor, got %s",
                       lw_vkind_name(vals[k].k));
            return VERR;
        }
    }
    if (consumed > rank) {
        char sx[128];
        lw_shape_str(sx, sizeof sx, node(c, x));
        diag_error(e->loc, "too many indices for %s: %d given", sx, consumed);
        return VERR;
    }
    if (tensor_item >= 0)
        for (int k = 0; k < e->nitems; k++)
            if (vals[k].k == V_INT && k != tensor_item)
                for (int j = (k < tensor_item ? k : tensor_item) + 1; j < (k < tensor_item ? tensor_item : k); j++)
                    if (e->items[j]->kind == AST_SLICE || e->items[j]->kind == AST_ELLIPSIS) {
                        diag_error(e->loc, "an integer and a tensor index separated by a slice are not supported; "
                                           "index in two steps");
                        return VERR;
                    }
    int d = 0, tensor_axis = -1;
    value cur = base;
    for (int k = 0; k < e->nitems; k++) {
        const ast_expr *it = e->items[k];
        c->loc = it->loc;
        ir_node *cn = node(c, cur.id);
        if (it->kind == AST_ELLIPSIS) {
            d += rank - consumed;
            continue;
        }
        if (it->kind == AST_SLICE) {
            int64_t start, stop, step;
            if (!slice_bounds(c, it, cn->shape[d], &start, &stop, &step))
                return VERR;
            c->loc = it->loc;
            if (start != 0 || stop != cn->shape[d] || step != 1) {
                ir_proto p = {.op = OP_slice, .nin = 1, .in = &cur.id, .i = {d, start, stop, step}};
                if ((cur = lw_emit(c, &p)).k == V_ERR)
                    return VERR;
            }
            d++;
        } else if (vals[k].k == V_INT) {
            int64_t i = vals[k].i, size = cn->shape[d];
            if (i < -size || i >= size) {
                diag_error(it->loc, "index %lld is out of bounds for dimension %d with size %lld", (long long)i, d,
                           (long long)size);
                return VERR;
            }
            ir_proto p = {.op = OP_select, .nin = 1, .in = &cur.id, .i = {d, i < 0 ? i + size : i}};
            if ((cur = lw_emit(c, &p)).k == V_ERR)
                return VERR;
        } else {
            tensor_axis = d++;
        }
    }
    if (tensor_item >= 0) {
        c->loc = e->loc;
        return lw_index_along(c, cur.id, tensor_axis, vals[tensor_item], OP_index, "indexing");
    }
    return cur;
}

static value call_expr(lower_ctx *c, const ast_expr *e)
{
    bool method = e->kind == AST_METHOD;
    int npos = 0, nkw = 0;
    value *pos = arena_alloc(c->ar, sizeof(value) * (size_t)(e->nargs + 2));
    value *kwv = arena_alloc(c->ar, sizeof(value) * (size_t)(e->nargs + 1));
    ast_arg *kw = arena_alloc(c->ar, sizeof(ast_arg) * (size_t)(e->nargs + 1));
    bool bad = false;
    if (method) {
        pos[npos++] = lower_expr(c, e->kids[0]);
        bad |= pos[0].k == V_ERR;
    }
    for (int k = 0; k < e->nargs; k++) {
        value v = lower_expr(c, e->args[k].value);
        bad |= v.k == V_ERR;
        if (e->args[k].name) {
            kw[nkw] = e->args[k];
            kwv[nkw++] = v;
        } else {
            if (nkw) {
                diag_error(e->args[k].loc, "a positional argument cannot follow a keyword argument");
                bad = true;
            }
            pos[npos++] = v;
        }
    }
    c->loc = e->loc;
    if (bad)
        return VERR;
    const char *name = e->str;
    /* a name bound to a helper fn, or a global fn */
    value callee = {.k = V_NONE};
    if (!method) {
        binding *local = find_local(c, name);
        if (local)
            callee = local->v;
        global *g = callee.k == V_NONE ? lw_find_global(c, name) : NULL;
        if (g && g->kind == DECL_FN)
            callee = (value){.k = V_FN, .fn = g->decl};
        else if (g && g->kind == DECL_EXPORT) {
            diag_error(e->loc, "'%s' is an exported training or gradient function; it cannot be called from tdsl code", name);
            return VERR;
        }
        if (callee.k == V_FN)
            return call_fn(c, callee.fn, npos, pos, kw, nkw, kwv, e->loc);
        if (callee.k != V_NONE) {
            diag_error(e->loc, "'%s' is %s, not a function", name, lw_vkind_name(callee.k));
            return VERR;
        }
    }
    if (strcmp(name, "checkpoint") == 0 && !method) {
        /* checkpoint(f, args...) is the call f(args...). In a function being differentiated
         * the nodes the call makes are a checkpoint region (outermost only), which autodiff
         * recomputes in the backward pass instead of keeping (passes.h) */
        if (npos < 1 || pos[0].k != V_FN) {
            diag_error(e->loc, "checkpoint() needs a helper fn as its first argument: checkpoint(f, x, ...)");
            return VERR;
        }
        bool region = c->grad_export && c->fn && c->in_checkpoint == 0 && !(c->opts && c->opts->no_recompute);
        int first = c->fn ? c->fn->nnodes : 0;
        c->in_checkpoint += region;
        value r = call_fn(c, pos[0].fn, npos - 1, pos + 1, kw, nkw, kwv, e->loc);
        c->in_checkpoint -= region;
        if (region && r.k != V_ERR && c->fn->nnodes > first) {
            pass_checkpoint cp = {first, c->fn->nnodes - 1};
            ARR_PUSH(c->ar, c->checkpoints, c->ncheckpoints, c->checkpointcap, cp);
            if (c->opts)
                c->opts->ncheckpoints++;
        }
        return r;
    }
    if (!method && (strcmp(name, "grad") == 0 || strcmp(name, "sgd") == 0 || strcmp(name, "adam") == 0 ||
                    strcmp(name, "adamw") == 0)) {
        diag_error(e->loc, "%s(...) makes an exported function; write it at top level: export g = %s(f, ...)", name, name);
        return VERR;
    }
    const builtin *b = lw_find_builtin(name);
    if (!b) {
        if (method)
            diag_error(e->loc, "tensors have no method '%s'", name);
        else
            diag_error(e->loc, "unknown function '%s'", name);
        suggest_name(c, name, true);
        return VERR;
    }
    value args[MAX_ARGS];
    if (!lw_bind_args(c, name, b->sig, npos, pos, kw, nkw, kwv, args))
        return VERR;
    return b->fn(c, args, b);
}

static value field_expr(lower_ctx *c, const ast_expr *e)
{
    value x = lower_expr(c, e->kids[0]);
    c->loc = e->loc;
    if (x.k == V_ERR)
        return VERR;
    if (x.k != V_TENSOR) {
        diag_error(e->loc, "%s has no property '%s'", lw_vkind_name(x.k), e->str);
        return VERR;
    }
    if (strcmp(e->str, "T") == 0)
        return lw_reverse_dims(c, x.id);
    if (strcmp(e->str, "shape") == 0) {
        value a[2] = {x, {.k = V_NONE}};
        return lw_bi_size(c, a, lw_find_builtin("size"));
    }
    if (strcmp(e->str, "ndim") == 0)
        return vint(node(c, x.id)->rank);
    diag_error(e->loc, "tensors have no property '%s' (they have .T, .shape and .ndim)", e->str);
    return VERR;
}

static value lower_expr_inner(lower_ctx *c, const ast_expr *e)
{
    switch (e->kind) {
    case AST_INT: return vint(e->ival);
    case AST_FLOAT: return vfloat(e->fval);
    case AST_BOOL: return (value){.k = V_BOOL, .i = e->ival};
    case AST_STRING: return (value){.k = V_STR, .s = e->str};
    case AST_NONE: return (value){.k = V_NONE};
    case AST_NAME: return lookup(c, e->str, e->loc);
    case AST_LIST:
    case AST_TUPLE: {
        value l = {.k = V_LIST, .n = e->nitems, .tuple = e->kind == AST_TUPLE};
        l.items = arena_alloc(c->ar, sizeof(value) * (size_t)(e->nitems + 1));
        for (int k = 0; k < e->nitems; k++)
            if ((l.items[k] = lower_expr(c, e->items[k])).k == V_ERR)
                return VERR;
        return l;
    }
    case AST_UNARY: {
        value x = lower_expr(c, e->kids[0]);
        c->loc = e->loc;
        if (x.k == V_ERR)
            return VERR;
        if (e->op == '-') {
            if (x.k == V_INT && x.i != INT64_MIN)
                return vint(-x.i);
            if (x.k == V_FLOAT)
                return vfloat(-x.f);
            return lw_unary(c, OP_neg, x, NULL, 0);
        }
        if (x.k == V_BOOL)
            return (value){.k = V_BOOL, .i = !x.i};
        return lw_unary(c, OP_lnot, x, NULL, 0);
    }
    case AST_BINARY: {
        value a = lower_expr(c, e->kids[0]);
        value b = lower_expr(c, e->kids[1]);
        c->loc = e->loc;
        return apply_binop(c, e->op, a, b);
    }
    case AST_CALL:
    case AST_METHOD: return call_expr(c, e);
    case AST_FIELD: return field_expr(c, e);
    case AST_INDEX: return index_expr(c, e);
    case AST_SLICE:
    case AST_ELLIPSIS: diag_error(e->loc, "a slice or '...' can only appear inside [ ]"); return VERR;
    case AST_TYPE: diag_error(e->loc, "a tensor type cannot be used as a value here"); return VERR;
    }
    return VERR;
}

static value lower_expr(lower_ctx *c, const ast_expr *e)
{
    src_loc saved = c->loc;
    c->loc = e->loc;
    value v = lower_expr_inner(c, e);
    c->loc = saved;
    return v;
}

/* ------------------------------------------------------------------ statements */

#define MAX_UNROLL 1000000

static void exec_stmt(lower_ctx *c, const ast_stmt *s, exec_state *st)
{
    c->loc = s->loc;
    switch (s->kind) {
    case STMT_ASSIGN: {
        value v = lower_expr(c, s->value);
        if (s->ntargets == 1) {
            bind(c, s->targets[0], v);
            break;
        }
        if (v.k != V_ERR && (v.k != V_LIST || v.n != s->ntargets)) {
            diag_error(s->loc, "cannot unpack %s into %d names", v.k == V_LIST ? "a tuple of a different length"
                                                                        : lw_vkind_name(v.k), s->ntargets);
            if (v.k == V_LIST)
                diag_note(s->loc, "the value has %d elements", v.n);
            v = VERR;
        }
        for (int k = 0; k < s->ntargets; k++)
            bind(c, s->targets[k], v.k == V_ERR ? VERR : v.items[k]);
        break;
    }
    case STMT_AUGASSIGN: {
        value old = lookup(c, s->targets[0], s->target_locs ? s->target_locs[0] : s->loc);
        value rhs = lower_expr(c, s->value);
        c->loc = s->loc;
        bind(c, s->targets[0], apply_binop(c, s->op, old, rhs));
        break;
    }
    case STMT_RETURN:
        st->returned = true;
        st->ret = lower_expr(c, s->value);
        st->ret_loc = s->value ? s->value->loc : s->loc;
        break;
    case STMT_FOR: {
        value lo = lower_expr(c, s->lo), hi = lower_expr(c, s->hi);
        int64_t a, b;
        c->loc = s->loc;
        if (!lw_get_int(c, lo, "a loop bound", &a) || !lw_get_int(c, hi, "a loop bound", &b))
            break;
        if (b - a > MAX_UNROLL) {
            diag_error(s->loc, "loop of %lld iterations is too long to unroll (at most %d)", (long long)(b - a), MAX_UNROLL);
            break;
        }
        int errors = diag_error_count();
        for (int64_t i = a; i < b && !st->returned; i++) {
            bind(c, s->var, vint(i));
            lw_exec_block(c, s->body, s->nbody, st);
            if (diag_error_count() > errors)
                break;   /* report a body's errors once, not once per iteration */
        }
        break;
    }
    case STMT_EXPR:
        diag_error(s->loc, "this expression has no effect; bind it (name = ...) or return it");
        break;
    }
}

void lw_exec_block(lower_ctx *c, ast_stmt **body, int n, exec_state *st)
{
    for (int k = 0; k < n && !st->returned; k++)
        exec_stmt(c, body[k], st);
}

/* ------------------------------------------------------------------ types and calls */

/* Evaluates a constant expression (consts, literals, + - * / % **). */
value lw_const_expr(lower_ctx *c, const ast_expr *e)
{
    ir_func *saved = c->fn;
    binding *scope = c->scope;
    c->fn = NULL;
    c->scope = NULL;
    value v = lower_expr(c, e);
    c->fn = saved;
    c->scope = scope;
    if (v.k != V_ERR && !is_number(v)) {
        diag_error(e->loc, "expected a constant number, got %s", lw_vkind_name(v.k));
        return VERR;
    }
    return v;
}

/* A declared type `f32[B, 10]`: dtype and shape, dims from constants. */
static bool eval_type(lower_ctx *c, const ast_expr *t, ir_dtype *dt, int *rank, int64_t *shape)
{
    if (!t || t->kind != AST_TYPE || !ir_dtype_parse(t->str, dt)) {
        diag_error(t ? t->loc : c->loc, "expected a type such as f32[3, 4] (dtypes: f16 bf16 f32 f64 i32 i64 bool)");
        return false;
    }
    if (t->nitems > IR_MAX_RANK) {
        diag_error(t->loc, "types have at most %d dimensions", IR_MAX_RANK);
        return false;
    }
    *rank = t->nitems;
    for (int d = 0; d < t->nitems; d++) {
        value v = c->fn ? lower_expr(c, t->items[d]) : lw_const_expr(c, t->items[d]);
        if (v.k == V_ERR)
            return false;
        if (v.k != V_INT || v.i < 0) {
            diag_error(t->items[d]->loc, "a dimension must be a non-negative compile-time integer");
            return false;
        }
        shape[d] = v.i;
    }
    return true;
}

static bool same_type(const ir_node *n, ir_dtype dt, int rank, const int64_t *shape)
{
    if (n->dtype != dt || n->rank != rank)
        return false;
    for (int d = 0; d < rank; d++)
        if (n->shape[d] != shape[d])
            return false;
    return true;
}

void lw_type_str(char *buf, size_t len, ir_dtype dt, int rank, const int64_t *shape)
{
    snprintf(buf, len, "%s", ir_dtype_name(dt));
    size_t o = strlen(buf);
    if (rank)
        ir_format_shape(buf + o, len - o, rank, shape);
}

/* Checks a value against a declared type; what names the value for the message. */
static bool check_type(lower_ctx *c, value v, const ast_expr *t, const char *what, src_loc where)
{
    if (v.k == V_ERR || !t)
        return v.k != V_ERR;
    ir_dtype dt;
    int rank;
    int64_t shape[IR_MAX_RANK];
    if (!eval_type(c, t, &dt, &rank, shape))
        return false;
    char want[160], got[160];
    lw_type_str(want, sizeof want, dt, rank, shape);
    if (v.k != V_TENSOR) {
        diag_error(where, "%s should be %s, got %s", what, want, lw_vkind_name(v.k));
        diag_note(t->loc, "declared here");
        return false;
    }
    if (!same_type(node(c, v.id), dt, rank, shape)) {
        lw_shape_str(got, sizeof got, node(c, v.id));
        diag_error(where, "%s should be %s, got %s", what, want, got);
        diag_note(t->loc, "declared here");
        return false;
    }
    return true;
}

static value call_fn(lower_ctx *c, const ast_decl *fn, int npos, value *pos, const ast_arg *kw, int nkw,
                     const value *kwv, src_loc call_loc)
{
    if (fn->exported) {
        diag_error(call_loc, "'%s' is an exported fn; call a helper fn instead (move the body into `fn %s_impl(...)`)",
                   fn->name, fn->name);
        return VERR;
    }
    for (int k = 0; k < c->depth; k++)
        if (c->stack[k] == fn) {
            char chain[512] = "";
            size_t o = 0;
            for (int j = k + 1; j < c->depth && o < sizeof chain; j++)
                o += (size_t)snprintf(chain + o, sizeof chain - o, "%s'%s'", j > k + 1 ? ", " : " through ", c->stack[j]->name);
            diag_error(call_loc, "recursion: '%s' calls itself%s; tdsl inlines every call, so fns cannot recurse",
                       fn->name, chain);
            diag_note(fn->loc, "'%s' is defined here", fn->name);
            return VERR;
        }
    if (c->depth == MAX_CALL_DEPTH) {
        diag_error(call_loc, "calls nested more than %d deep", MAX_CALL_DEPTH);
        return VERR;
    }
    value args[64];
    bool set[64] = {0};
    if (fn->nparams > 64 || npos > fn->nparams) {
        diag_error(call_loc, "'%s' takes %d argument%s, got %d", fn->name, fn->nparams, fn->nparams == 1 ? "" : "s",
                   npos + nkw);
        diag_note(fn->loc, "'%s' is defined here", fn->name);
        return VERR;
    }
    for (int k = 0; k < npos; k++) {
        args[k] = pos[k];
        set[k] = true;
    }
    for (int j = 0; j < nkw; j++) {
        int k = 0;
        while (k < fn->nparams && strcmp(fn->params[k].name, kw[j].name) != 0)
            k++;
        if (k == fn->nparams || set[k]) {
            diag_error(kw[j].loc, k == fn->nparams ? "'%s' has no argument named '%s'" : "'%s' got argument '%s' twice",
                       fn->name, kw[j].name);
            return VERR;
        }
        args[k] = kwv[j];
        set[k] = true;
    }
    for (int k = 0; k < fn->nparams; k++)
        if (!set[k]) {
            diag_error(call_loc, "'%s' takes %d argument%s, got %d: missing '%s'", fn->name, fn->nparams,
                       fn->nparams == 1 ? "" : "s", npos + nkw, fn->params[k].name);
            diag_note(fn->loc, "'%s' is defined here", fn->name);
            return VERR;
        }
    /* a call of a helper with a custom gradient, in a function being differentiated, is a
     * region (outermost only); elsewhere the block is unused and the call just runs */
    bool region = fn->has_grad && c->grad_export && c->in_custom == 0 && c->fn;
    int first = region ? c->fn->nnodes : 0;
    c->in_custom += region;
    binding *saved = c->scope;
    c->scope = NULL;
    c->stack[c->depth++] = fn;
    int errors = diag_error_count();
    bool ok = true;
    for (int k = 0; k < fn->nparams; k++) {
        if (fn->params[k].type) {
            char what[160];
            snprintf(what, sizeof what, "argument '%s' of '%s'", fn->params[k].name, fn->name);
            ok &= check_type(c, args[k], fn->params[k].type, what, call_loc);
        }
        lw_bind_quiet(c, fn->params[k].name, args[k]);
    }
    exec_state st = {0};
    if (ok)
        lw_exec_block(c, fn->body, fn->nbody, &st);
    c->depth--;
    binding *inner = c->scope;
    c->scope = saved;
    c->in_custom -= region;
    value r = st.ret;
    if (ok && !st.returned && diag_error_count() == errors) {
        diag_error(fn->loc, "fn '%s' ends without a return", fn->name);
        r = VERR;
    }
    if (diag_error_count() > errors) {
        diag_note(call_loc, "in the call of '%s' here", fn->name);
        return VERR;
    }
    if (r.k != V_ERR && fn->type) {
        char what[160];
        snprintf(what, sizeof what, "the result of '%s'", fn->name);
        if (!check_type(c, r, fn->type, what, st.ret_loc))
            return VERR;
    }
    if (region && r.k != V_ERR)
        r = lw_record_custom(c, fn, r, args, first, inner, call_loc);
    return r;
}

/* ------------------------------------------------------------------ exported fns */

/* A declared result: one type, or a tuple of types for `return a, b`. */
static bool check_result(lower_ctx *c, value r, const ast_expr *t, const char *fname, src_loc where)
{
    if (!t || r.k == V_ERR)
        return r.k != V_ERR;
    bool tuple_t = t->kind == AST_TUPLE, tuple_v = r.k == V_LIST && r.tuple;
    int nt = tuple_t ? t->nitems : 1, nv = tuple_v ? r.n : 1;
    if (nt != nv) {
        diag_error(where, "'%s' returns %d value%s but its declared result has %d", fname, nv, nv == 1 ? "" : "s", nt);
        diag_note(t->loc, "declared here");
        return false;
    }
    bool ok = true;
    for (int k = 0; k < nt; k++) {
        char what[160];
        if (nt == 1)
            snprintf(what, sizeof what, "the result of '%s'", fname);
        else
            snprintf(what, sizeof what, "result %d of '%s'", k, fname);
        ok &= check_type(c, tuple_v ? r.items[k] : r, tuple_t ? t->items[k] : t, what, where);
    }
    return ok;
}

void lw_enter_fn(lower_ctx *c, ir_func *f)
{
    c->fn = f;
    c->param_nodes = arena_alloc(c->ar, sizeof(int) * (size_t)(c->mod->nparams + 1));
    for (int k = 0; k < c->mod->nparams; k++)
        c->param_nodes[k] = -1;
    for (int id = 0; id < f->nnodes; id++)
        if (f->nodes[id].op == OP_param)
            c->param_nodes[f->nodes[id].i[0]] = id;
}

void lw_export_fn(lower_ctx *c, const ast_decl *d)
{
    ir_arg args[64];
    c->fn = NULL;     /* argument types see only constants */
    c->scope = NULL;
    if (d->nparams > 64) {
        diag_error(d->loc, "an exported fn takes at most 64 arguments");
        return;
    }
    bool ok = true;
    for (int k = 0; k < d->nparams; k++) {
        const ast_param_decl *p = &d->params[k];
        args[k].name = p->name;
        if (!p->type) {
            diag_error(p->loc, "argument '%s' of exported fn '%s' needs a type, e.g. %s: f32[B, 784]", p->name, d->name,
                       p->name);
            ok = false;
            continue;
        }
        ok &= eval_type(c, p->type, &args[k].dtype, &args[k].rank, args[k].shape);
        for (int j = 0; j < k; j++)
            if (strcmp(d->params[j].name, p->name) == 0) {
                diag_error(p->loc, "duplicate argument name '%s'", p->name);
                ok = false;
            }
    }
    if (!ok)
        return;
    ir_func *f = ir_func_new(c->mod, d->name, d->nparams, args);
    f->line = d->loc.line;
    f->col = d->loc.col;
    lw_enter_fn(c, f);
    c->scope = NULL;
    c->depth = 0;
    for (int k = 0; k < d->nparams; k++) {
        c->loc = d->params[k].loc;
        ir_proto p = {.op = OP_arg, .i = {k}, .name = d->params[k].name};
        bind(c, d->params[k].name, lw_emit(c, &p));
    }
    c->stack[c->depth++] = d;
    exec_state st = {0};
    int errors = diag_error_count();
    lw_exec_block(c, d->body, d->nbody, &st);
    c->depth = 0;
    if (diag_error_count() > errors)
        return;
    if (!st.returned) {
        diag_error(d->loc, "exported fn '%s' ends without a return", d->name);
        return;
    }
    c->loc = st.ret_loc;
    value r = st.ret;
    /* numbers become rank-0 tensors before the declared result type is checked */
    if (is_number(r))
        r = lw_to_tensor(c, r);
    for (int k = 0; r.k == V_LIST && r.tuple && k < r.n; k++)
        if (is_number(r.items[k]))
            r.items[k] = lw_to_tensor(c, r.items[k]);
    if (!check_result(c, r, d->type, d->name, st.ret_loc))
        return;
    int n = r.k == V_LIST && r.tuple ? r.n : 1;
    for (int k = 0; k < n; k++) {
        value v = n > 1 || (r.k == V_LIST && r.tuple) ? r.items[k] : r;
        if (is_number(v))
            v = lw_to_tensor(c, v);
        if (v.k != V_TENSOR) {
            if (v.k != V_ERR)
                diag_error(st.ret_loc, "an exported fn must return tensors, got %s", lw_vkind_name(v.k));
            return;
        }
        ir_add_output(f, v.id);
    }
}

/* ------------------------------------------------------------------ params, consts and -D */

static bool param_init(lower_ctx *c, const ast_expr *e, ir_param *p)
{
    p->init = INIT_ZEROS;
    if (!e)
        return true;
    const char *name = e->kind == AST_NAME || e->kind == AST_CALL ? e->str : NULL;
    static const struct { const char *name; ir_init_kind kind; int nargs; } inits[] = {
        {"zeros", INIT_ZEROS, 0}, {"ones", INIT_ONES, 0}, {"full", INIT_FULL, 1}, {"normal", INIT_NORMAL, 2},
        {"uniform", INIT_UNIFORM, 2}, {"kaiming_uniform", INIT_KAIMING_UNIFORM, 0},
    };
    for (size_t k = 0; name && k < sizeof inits / sizeof *inits; k++) {
        if (strcmp(name, inits[k].name) != 0)
            continue;
        int nargs = e->kind == AST_CALL ? e->nargs : 0;
        if (nargs != inits[k].nargs) {
            diag_error(e->loc, "initializer %s takes %d argument%s, got %d", name, inits[k].nargs,
                       inits[k].nargs == 1 ? "" : "s", nargs);
            return false;
        }
        double v[2] = {0, 0};
        for (int j = 0; j < nargs; j++) {
            value x = lw_const_expr(c, e->args[j].value);
            if (x.k == V_ERR)
                return false;
            v[j] = num(x);
        }
        p->init = inits[k].kind;
        p->a = v[0];
        p->b = v[1];
        if (p->init == INIT_NORMAL && p->b < 0) {
            diag_error(e->loc, "normal(mean, std) needs std >= 0, got %g", p->b);
            return false;
        }
        if (p->init == INIT_KAIMING_UNIFORM && (p->rank == 0 || p->shape[0] == 0)) {
            diag_error(e->loc, "kaiming_uniform needs a param whose first dimension (fan_in) is positive");
            return false;
        }
        return true;
    }
    diag_error(e->loc, "unknown initializer; use zeros, ones, full(v), normal(mean, std), uniform(lo, hi) or kaiming_uniform");
    return false;
}

static bool parse_define(const char *text, value *out)
{
    char *end;
    errno = 0;
    long long i = strtoll(text, &end, 0);
    if (*text && !*end && !errno) {
        *out = vint(i);
        return true;
    }
    double f = strtod(text, &end);
    if (*text && !*end) {
        *out = vfloat(f);
        return true;
    }
    return false;
}

static void add_global(lower_ctx *c, const ast_decl *d, int kind, value v, int param_index)
{
    global *prev = lw_find_global(c, d->name);
    if (prev) {
        diag_error(d->name_loc.line ? d->name_loc : d->loc, "'%s' is already defined", d->name);
        diag_note(prev->loc, "previous definition here");
        return;
    }
    if (lw_find_builtin(d->name) && kind != DECL_CONST)
        diag_warning(d->name_loc.line ? d->name_loc : d->loc, "'%s' shadows the builtin of the same name", d->name);
    global g = {.name = d->name, .loc = d->loc, .kind = kind, .v = v, .decl = d, .param_index = param_index};
    ARR_PUSH(c->ar, c->globals, c->nglobals, c->gcap, g);
    map_put(c->ar, &c->gmap, d->name, (void *)(uintptr_t)c->nglobals);
}

/* ------------------------------------------------------------------ export declarations, the file */

static void lower_export_decl(lower_ctx *c, const ast_decl *d)
{
    const ast_expr *v = d->value;
    static const char *const forms[] = {"grad", "sgd", "adam", "adamw"};
    bool known = false;
    for (int k = 0; v && v->kind == AST_CALL && k < 4; k++)
        known |= strcmp(v->str, forms[k]) == 0;
    if (!known) {
        diag_error(v ? v->loc : d->loc, "an export declaration must be grad(f, ...), sgd(f, ...), adam(f, ...) or adamw(f, ...)");
        return;
    }
    if (v->nargs < 1 || v->args[0].name || v->args[0].value->kind != AST_NAME) {
        diag_error(v->loc, "%s() needs the function to differentiate as its first argument: %s(loss, ...)", v->str, v->str);
        return;
    }
    const char *fname = v->args[0].value->str;
    global *g = lw_find_global(c, fname);
    if (!g || g->kind != DECL_FN) {
        diag_error(v->args[0].value->loc, "%s() of '%s', which is not a fn", v->str, fname);
        if (!g)
            suggest_name(c, fname, false);
        return;
    }
    if (strcmp(v->str, "grad") == 0) {
        if (g->decl->exported) {
            diag_error(v->args[0].value->loc, "grad() of '%s', which is an exported fn; differentiate a helper fn "
                                              "(move the body into `fn %s_impl(...)`)", fname, fname);
            return;
        }
        lw_grad_export(c, d, g->decl);
        return;
    }
    if (g->decl->exported) {
        diag_error(v->args[0].value->loc, "%s() of '%s', which is an exported fn; train a helper fn "
                                          "(move the body into `fn %s_impl(...)`)", v->str, fname, fname);
        return;
    }
    lw_step_export(c, d, g->decl);
}

ir_module *lower_file(arena *ar, const ast_file *file, lower_opts *opts)
{
    lower_ctx ctx = {.ar = ar, .file = file, .opts = opts};
    lower_ctx *c = &ctx;
    int errors0 = diag_error_count();
    c->mod = ir_module_new(ar, opts && opts->module_name ? opts->module_name : "module");
    /* pass 1: constants in order, params, fn names (fns may be called before they are defined) */
    for (int k = 0; k < file->ndecls; k++) {
        const ast_decl *d = file->decls[k];
        c->loc = d->loc;
        switch (d->kind) {
        case DECL_CONST: {
            value v = VERR;
            lower_define *def = NULL;
            for (int j = 0; opts && j < opts->ndefines; j++)
                if (strcmp(opts->defines[j].name, d->name) == 0)
                    def = &opts->defines[j];
            if (def) {
                def->used = true;
                if (!parse_define(def->value, &v)) {
                    diag_error(d->loc, "-D %s=%s: the value is not a number", def->name, def->value);
                    v = VERR;
                }
            } else {
                v = lw_const_expr(c, d->value);
            }
            add_global(c, d, DECL_CONST, v, -1);
            break;
        }
        case DECL_PARAM: {
            ir_param p = {.name = d->name, .line = d->loc.line, .col = d->loc.col};
            if (!eval_type(c, d->type, &p.dtype, &p.rank, p.shape) || !param_init(c, d->value, &p)) {
                add_global(c, d, DECL_CONST, VERR, -1);   /* later uses stay quiet */
                break;
            }
            add_global(c, d, DECL_PARAM, VERR, ir_add_param(c->mod, &p));
            break;
        }
        case DECL_FN:
            add_global(c, d, DECL_FN, VERR, -1);
            if (d->has_grad && d->exported)
                diag_error(d->grad_loc, "a custom gradient belongs to a helper fn, not an exported one");
            break;
        case DECL_EXPORT:
            add_global(c, d, DECL_EXPORT, VERR, -1);
            break;
        }
    }
    for (int j = 0; opts && j < opts->ndefines; j++)
        if (!opts->defines[j].used) {
            diag_error(src_loc_make(file->file, 0, 0), "-D %s: there is no const named '%s' to override",
                       opts->defines[j].name, opts->defines[j].name);
        }
    /* pass 2: exported fns and export declarations */
    for (int k = 0; k < file->ndecls; k++) {
        const ast_decl *d = file->decls[k];
        if (d->kind == DECL_FN && d->exported)
            lw_export_fn(c, d);
        else if (d->kind == DECL_EXPORT)
            lower_export_decl(c, d);
    }
    c->fn = NULL;
    return diag_error_count() > errors0 ? NULL : c->mod;
}
