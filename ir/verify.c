/* The verifier: run after every pass (the driver's flat list). It checks what every
 * later stage assumes of a module and never trusts a field before checking its range:
 *   - params and args: valid dtypes, ranks and dims; unique names;
 *   - nodes: known op, arity from the op table, operands defined earlier, attribute
 *     fields outside the op's signature left zero (else the text form would lose them);
 *   - layout: each node is rebuilt with ir_append in a scratch function, which re-runs
 *     the shape rule; dtype, shape, strides, offset, storage and view_of must agree;
 *   - outputs: at least one, each a node of the function; update outputs (training steps)
 *     after the plain results, each with its target's dtype and shape, no target twice;
 *   - states: valid dtypes and dims, unique names.
 * Problems print as `verify: FUNC %ID: reason`; the return value is their count. */
#include "ir.h"
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct vctx {
    FILE *out;
    int count;
} vctx;

__attribute__((format(printf, 2, 3))) static void problem(vctx *v, const char *fmt, ...)
{
    v->count++;
    if (!v->out)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("verify: ", v->out);
    vfprintf(v->out, fmt, ap);
    fputc('\n', v->out);
    va_end(ap);
}

static const char *nm(const char *s) { return s ? s : "<unnamed>"; }

static bool dims_ok(int rank, const int64_t *shape)
{
    if (rank < 0 || rank > IR_MAX_RANK)
        return false;
    for (int d = 0; d < rank; d++)
        if (shape[d] < 0)
            return false;
    return true;
}

static void fmt_ints(char *buf, size_t len, int rank, const int64_t *v)
{
    ir_format_shape(buf, len, rank < 0 ? 0 : rank > IR_MAX_RANK ? IR_MAX_RANK : rank, v);
}

/* Which ir_node attribute fields the op's signature names (see ops.def). */
typedef struct {
    bool list, str, i[4], f[2];
} sig_fields;

static sig_fields sig_of(ir_opcode op)
{
    sig_fields s;
    memset(&s, 0, sizeof s);
    for (const char *p = ir_ops[op].attrs; p && *p; p++) {
        if (p != ir_ops[op].attrs && p[-1] != ' ')
            continue;
        if (strncmp(p, "list:", 5) == 0)
            s.list = true;
        else if (strncmp(p, "s:", 2) == 0)
            s.str = true;
        else if (p[0] == 'i' && p[1] >= '0' && p[1] <= '3' && p[2] == ':')
            s.i[p[1] - '0'] = true;
        else if (p[0] == 'f' && p[1] >= '0' && p[1] <= '1' && p[2] == ':')
            s.f[p[1] - '0'] = true;
    }
    return s;
}

static void check_unsigned_attrs(vctx *v, const ir_func *f, int id, const ir_node *n)
{
    sig_fields s = sig_of(n->op);
    const char *op = ir_ops[n->op].name;
    if (!s.list && n->nlist != 0)
        problem(v, "%s %%%d: '%s' has no list attribute but nlist is %d (the text form would lose it)",
                nm(f->name), id, op, n->nlist);
    if (!s.str && n->str)
        problem(v, "%s %%%d: '%s' has no string attribute but str is set (the text form would lose it)",
                nm(f->name), id, op);
    for (int k = 0; k < 4; k++)
        if (!s.i[k] && n->i[k] != 0)
            problem(v, "%s %%%d: '%s' has no attribute in i[%d] but it holds %" PRId64 " (the text form would lose it)",
                    nm(f->name), id, op, k, n->i[k]);
    for (int k = 0; k < 2; k++)
        if (!s.f[k] && (n->f[k] != 0 || isnan(n->f[k])))
            problem(v, "%s %%%d: '%s' has no attribute in f[%d] but it holds %g (the text form would lose it)",
                    nm(f->name), id, op, k, n->f[k]);
}

/* Compares the node with its rebuilt twin r; map translates ids of f to ids of the scratch. */
static void compare_layout(vctx *v, const ir_func *f, int id, const ir_node *n, const ir_node *r, const int *map)
{
    char a[200], b[200];
    const char *fn = nm(f->name);
    if (n->dtype != r->dtype)
        problem(v, "%s %%%d: dtype is %s but '%s' derives %s", fn, id, ir_dtype_name(n->dtype),
                ir_ops[n->op].name, ir_dtype_name(r->dtype));
    bool shape_same = n->rank == r->rank;
    for (int d = 0; shape_same && d < n->rank; d++)
        shape_same = n->shape[d] == r->shape[d];
    if (!shape_same) {
        fmt_ints(a, sizeof a, n->rank, n->shape);
        fmt_ints(b, sizeof b, r->rank, r->shape);
        problem(v, "%s %%%d: shape is %s but '%s' derives %s", fn, id, a, ir_ops[n->op].name, b);
        return;   /* strides of different shapes say nothing more */
    }
    bool strides_same = true;
    for (int d = 0; d < n->rank; d++)
        strides_same = strides_same && n->strides[d] == r->strides[d];
    if (!strides_same) {
        fmt_ints(a, sizeof a, n->rank, n->strides);
        fmt_ints(b, sizeof b, r->rank, r->strides);
        problem(v, "%s %%%d: strides are %s but '%s' derives %s", fn, id, a, ir_ops[n->op].name, b);
    }
    if (n->offset != r->offset)
        problem(v, "%s %%%d: offset is %" PRId64 " but '%s' derives %" PRId64, fn, id, n->offset,
                ir_ops[n->op].name, r->offset);
    if (map[n->storage] != r->storage)
        problem(v, "%s %%%d: storage is s%d but '%s' derives the storage of a different node", fn, id,
                n->storage, ir_ops[n->op].name);
    if ((n->view_of < 0) != (r->view_of < 0) || (n->view_of >= 0 && map[n->view_of] != r->view_of))
        problem(v, "%s %%%d: view_of is %d but '%s' derives %s", fn, id, n->view_of, ir_ops[n->op].name,
                r->view_of < 0 ? "no view" : "a view of another node");
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

typedef struct named_index {
    const char *name;
    int index;
} named_index;

static int cmp_named(const void *a, const void *b)
{
    const named_index *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : x->index - y->index;
}

/* Reports param names that occur twice, by sorting: O(P log P), not all pairs. */
static void report_twice(vctx *v, int n, const ir_param *params)
{
    named_index *ix = malloc(sizeof *ix * (size_t)(n + 1));
    if (!ix)
        return;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (params[i].name)
            ix[k++] = (named_index){params[i].name, i};
    qsort(ix, (size_t)k, sizeof *ix, cmp_named);
    for (int i = 1; i < k; i++)
        if (strcmp(ix[i - 1].name, ix[i].name) == 0)
            problem(v, "param %s: declared twice (params %d and %d)", ix[i].name, ix[i - 1].index, ix[i].index);
    free(ix);
}

/* Output k of a step: a plain result before any update; an update has a valid target of
 * its own dtype and shape that no earlier output updates. */
static void check_update(vctx *v, const ir_module *m, const ir_func *f, int k)
{
    const char *fn = nm(f->name);
    const ir_update *u = &f->updates[k];
    if (u->kind == IR_UPD_NONE) {
        if (k > 0 && f->updates[k - 1].kind != IR_UPD_NONE)
            problem(v, "%s: output %d is a plain result after an update output (results come first)", fn, k);
        return;
    }
    bool is_param = u->kind == IR_UPD_PARAM;
    if (u->kind != IR_UPD_PARAM && u->kind != IR_UPD_STATE) {
        problem(v, "%s: output %d has an unknown update kind %d", fn, k, (int)u->kind);
        return;
    }
    int n = is_param ? m->nparams : m->nstates;
    if (u->index < 0 || u->index >= n) {
        problem(v, "%s: output %d updates %s %d, but the module has %d", fn, k, is_param ? "param" : "state",
                u->index, n);
        return;
    }
    for (int j = 0; j < k; j++)
        if (f->updates[j].kind == u->kind && f->updates[j].index == u->index)
            problem(v, "%s: outputs %d and %d update the same %s", fn, j, k, is_param ? "param" : "state");
    const char *tn = is_param ? m->params[u->index].name : m->states[u->index].name;
    ir_dtype dt = is_param ? m->params[u->index].dtype : m->states[u->index].dtype;
    int rank = is_param ? m->params[u->index].rank : m->states[u->index].rank;
    const int64_t *shape = is_param ? m->params[u->index].shape : m->states[u->index].shape;
    const ir_node *o = &f->nodes[f->outs[k]];
    bool same = o->dtype == dt && o->rank == rank;
    for (int d = 0; same && d < rank; d++)
        same = o->shape[d] == shape[d];
    if (!same) {
        char a[200], b[200];
        fmt_ints(a, sizeof a, o->rank, o->shape);
        fmt_ints(b, sizeof b, rank, shape);
        problem(v, "%s: output %d (%%%d, %s%s) updates %s %s, which is %s%s", fn, k, f->outs[k],
                ir_dtype_name(o->dtype), a, is_param ? "param" : "state", nm(tn), ir_dtype_name(dt), b);
    }
}

static void report_states_twice(vctx *v, int n, const ir_state *states)
{
    named_index *ix = malloc(sizeof *ix * (size_t)(n + 1));
    if (!ix)
        return;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (states[i].name)
            ix[k++] = (named_index){states[i].name, i};
    qsort(ix, (size_t)k, sizeof *ix, cmp_named);
    for (int i = 1; i < k; i++)
        if (strcmp(ix[i - 1].name, ix[i].name) == 0)
            problem(v, "state %s: declared twice (states %d and %d)", ix[i].name, ix[i - 1].index, ix[i].index);
    free(ix);
}

/* The scratch module holds copies of the params once for all functions (sm), so checking
 * F functions costs O(F + P), not O(F * P). */
static void verify_func(vctx *v, const ir_module *m, ir_module *sm, const ir_func *f)
{
    const char *fn = nm(f->name);
    if (!f->name)
        problem(v, "a function has no name");
    if (f->mod != m)
        problem(v, "%s: the function's module pointer is not its module", fn);
    bool args_ok = f->nargs >= 0 && (f->nargs == 0 || f->args);
    if (!args_ok)
        problem(v, "%s: bad argument list (nargs %d)", fn, f->nargs);
    for (int a = 0; args_ok && a < f->nargs; a++) {
        const ir_arg *g = &f->args[a];
        if ((unsigned)g->dtype >= DT_COUNT || !dims_ok(g->rank, g->shape)) {
            problem(v, "%s: argument %d (%s) has a bad dtype, rank or dimension", fn, a, nm(g->name));
            args_ok = false;
        }
    }
    if (f->nnodes < 0 || (f->nnodes > 0 && !f->nodes)) {
        problem(v, "%s: bad node array (nnodes %d)", fn, f->nnodes);
        return;
    }

    /* The scratch twin: a module with the same params, a function with the same args. */
    arena tmp;
    arena_init(&tmp);
    ir_func *sf = NULL;
    if (args_ok) {
        sf = ir_func_new(sm, f->name ? f->name : "", f->nargs, f->args);
        sm->nfuncs = 0;   /* the scratch functions need not be listed */
    }
    int *map = arena_alloc(&tmp, sizeof(int) * (size_t)(f->nnodes + 1));

    for (int i = 0; i < f->nnodes; i++) {
        const ir_node *n = &f->nodes[i];
        map[i] = -1;
        if ((unsigned)n->op >= OP_COUNT) {
            problem(v, "%s %%%d: unknown op %d", fn, i, (int)n->op);
            continue;
        }
        const ir_opinfo *info = &ir_ops[n->op];
        bool ok = true;
        if ((unsigned)n->dtype >= DT_COUNT) {
            problem(v, "%s %%%d: bad dtype %d", fn, i, (int)n->dtype);
            ok = false;
        }
        if (n->rank < 0 || n->rank > IR_MAX_RANK || !dims_ok(n->rank, n->shape)) {
            problem(v, "%s %%%d: bad rank %d or a negative dimension", fn, i, n->rank);
            ok = false;
        }
        if (n->nlist < 0 || n->nlist > IR_MAX_RANK) {
            problem(v, "%s %%%d: attribute list of %d entries", fn, i, n->nlist);
            ok = false;
        }
        if (info->nin >= 0 ? n->nin != info->nin : n->nin < 1) {
            if (info->nin >= 0)
                problem(v, "%s %%%d: '%s' takes %d input%s, has %d", fn, i, info->name, info->nin,
                        info->nin == 1 ? "" : "s", n->nin);
            else
                problem(v, "%s %%%d: '%s' takes at least 1 input, has %d", fn, i, info->name, n->nin);
            ok = false;
        } else if (n->nin > 0 && !n->in) {
            problem(v, "%s %%%d: no input array", fn, i);
            ok = false;
        }
        bool inputs_rebuilt = true;
        for (int k = 0; ok && k < n->nin; k++) {
            if (n->in[k] < 0 || n->in[k] >= i) {
                problem(v, "%s %%%d: input %d is %%%d, not an earlier node", fn, i, k, n->in[k]);
                ok = false;
            } else if (map[n->in[k]] < 0)
                inputs_rebuilt = false;
        }
        if (n->storage < 0 || n->storage > i) {
            problem(v, "%s %%%d: storage s%d is not this node or an earlier one", fn, i, n->storage);
            ok = false;
        }
        if (n->view_of < -1 || n->view_of >= i) {
            problem(v, "%s %%%d: view_of %d is not an earlier node", fn, i, n->view_of);
            ok = false;
        }
        if (ok)
            check_unsigned_attrs(v, f, i, n);
        /* Rebuild only on sound fields and inputs that were rebuilt themselves, so one
         * broken node gives one report rather than one per user. */
        if (!ok || !sf || !inputs_rebuilt)
            continue;
        ir_proto pr;
        memset(&pr, 0, sizeof pr);
        pr.op = n->op;
        pr.dtype = n->dtype;
        pr.nin = n->nin;
        int *in = arena_alloc(&tmp, sizeof(int) * (size_t)(n->nin + 1));
        for (int k = 0; k < n->nin; k++)
            in[k] = map[n->in[k]];
        pr.in = in;
        pr.nlist = n->nlist;
        memcpy(pr.list, n->list, sizeof pr.list);
        memcpy(pr.i, n->i, sizeof pr.i);
        memcpy(pr.f, n->f, sizeof pr.f);
        pr.str = n->str;
        char err[256];
        int rid = ir_append(sf, &pr, err, sizeof err);
        if (rid < 0) {
            problem(v, "%s %%%d: the shape rule rejects the node: %s", fn, i, err);
            continue;
        }
        map[i] = rid;
        compare_layout(v, f, i, n, &sf->nodes[rid], map);
    }

    if (f->nouts <= 0)
        problem(v, "%s: the function has no outputs", fn);
    else if (!f->outs)
        problem(v, "%s: %d outputs but no output array", fn, f->nouts);
    else
        for (int k = 0; k < f->nouts; k++)
            if (f->outs[k] < 0 || f->outs[k] >= f->nnodes)
                problem(v, "%s: output %d is %%%d, not a node of the function", fn, k, f->outs[k]);
            else if (f->updates)
                check_update(v, m, f, k);
    arena_free(&tmp);
}

int ir_verify(const ir_module *m, FILE *out)
{
    vctx v = {out, 0};
    if (!m) {
        problem(&v, "no module");
        return v.count;
    }
    if (m->nparams < 0 || (m->nparams > 0 && !m->params) || m->nfuncs < 0 || (m->nfuncs > 0 && !m->funcs)) {
        problem(&v, "module %s: bad param or function array", nm(m->name));
        return v.count;
    }
    for (int i = 0; i < m->nparams; i++) {
        const ir_param *p = &m->params[i];
        if (!p->name)
            problem(&v, "param %d has no name", i);
        if ((unsigned)p->dtype >= DT_COUNT || !dims_ok(p->rank, p->shape))
            problem(&v, "param %s: bad dtype, rank or dimension", nm(p->name));
        if ((unsigned)p->init > INIT_KAIMING_UNIFORM)
            problem(&v, "param %s: unknown initializer %d", nm(p->name), (int)p->init);
    }
    report_twice(&v, m->nparams, m->params);
    if (m->nstates < 0 || (m->nstates > 0 && !m->states)) {
        problem(&v, "module %s: bad state array", nm(m->name));
        return v.count;
    }
    for (int i = 0; i < m->nstates; i++) {
        const ir_state *st = &m->states[i];
        if (!st->name)
            problem(&v, "state %d has no name", i);
        if ((unsigned)st->dtype >= DT_COUNT || !dims_ok(st->rank, st->shape))
            problem(&v, "state %s: bad dtype, rank or dimension", nm(st->name));
    }
    report_states_twice(&v, m->nstates, m->states);
    arena scratch;
    arena_init(&scratch);
    ir_module *sm = ir_module_new(&scratch, m->name);
    for (int i = 0; i < m->nparams; i++) {
        ir_param p = m->params[i];
        if (!p.name)
            p.name = "";
        ir_add_param(sm, &p);
    }
    for (int i = 0; i < m->nstates; i++) {
        ir_state st = m->states[i];
        if (!st.name)
            st.name = "";
        ir_add_state(sm, &st);
    }
    for (int i = 0; i < m->nfuncs; i++) {
        const ir_func *f = m->funcs[i];
        if (!f) {
            problem(&v, "function %d is NULL", i);
            continue;
        }
        verify_func(&v, m, sm, f);
    }
    arena_free(&scratch);
    /* names of functions, by sorting: O(F log F) */
    const char **fnames = malloc(sizeof(char *) * (size_t)(m->nfuncs + 1));
    int nf = 0;
    for (int i = 0; fnames && i < m->nfuncs; i++)
        if (m->funcs[i] && m->funcs[i]->name)
            fnames[nf++] = m->funcs[i]->name;
    if (fnames) {
        qsort(fnames, (size_t)nf, sizeof *fnames, cmp_name);
        for (int i = 1; i < nf; i++)
            if (strcmp(fnames[i - 1], fnames[i]) == 0)
                problem(&v, "%s: defined twice", fnames[i]);
    }
    free(fnames);
    return v.count;
}
