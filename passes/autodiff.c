/* Reverse-mode differentiation of an IR function into a new IR function (passes.h).
 *
 * The new function re-emits F's live forward nodes, seeds the scalar result's cotangent
 * with 1 and walks F's nodes in reverse, asking each node's gradient rule (the 7th column
 * of ir/ops.def) for its inputs' cotangents, summing cotangents that meet (add). Every
 * node is built with ir_append, so layouts are exact and the result verifies. Rules use
 * existing ops only; a gradient node is named after the value it is the gradient of
 * (`dW1`). Only values that are floating point and depend on a requested input get
 * cotangents: integer/bool values, stop_gradient and unrequested leaves cut the path. */
#include "passes.h"
#include "../ir/eval.h"
#include <stdlib.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

typedef struct ad {
    const ir_func *src;
    ir_func *dst;
    int *map;          /* src id -> dst id of the re-emitted forward value, or -1 */
    int *ct;           /* src id -> dst id of its accumulated cotangent, or -1 */
    bool *vary;        /* src id: float and depends on a requested leaf */
    int line, col;     /* location of the node being differentiated */
    bool failed;
    int *eline, *ecol;
    char *err;
    size_t errlen;
} ad;

static void fail(ad *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(ad *a, const char *fmt, ...)
{
    if (a->failed)
        return;
    a->failed = true;
    *a->eline = a->line;
    *a->ecol = a->col;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->err, a->errlen, fmt, ap);
    va_end(ap);
}

static const ir_node *D(ad *a, int id) { return &a->dst->nodes[id]; }
static const ir_node *S(ad *a, int id) { return &a->src->nodes[id]; }

static int app(ad *a, ir_proto *p)
{
    if (a->failed)
        return -1;
    for (int k = 0; k < p->nin; k++)
        if (p->in[k] < 0)
            return -1;
    p->line = a->line;
    p->col = a->col;
    char e[256];
    int id = ir_append(a->dst, p, e, sizeof e);
    if (id < 0)
        fail(a, "internal error building the gradient ('%s'): %s", ir_ops[p->op].name, e);
    return id;
}

static int op1(ad *a, ir_opcode op, int x)
{
    ir_proto p = {.op = op, .nin = 1, .in = &x};
    return app(a, &p);
}

static int op2(ad *a, ir_opcode op, int x, int y)
{
    int in[2] = {x, y};
    ir_proto p = {.op = op, .nin = 2, .in = in};
    return app(a, &p);
}

static int op3(ad *a, ir_opcode op, int x, int y, int z)
{
    int in[3] = {x, y, z};
    ir_proto p = {.op = op, .nin = 3, .in = in};
    return app(a, &p);
}

static int cast_to(ad *a, int x, ir_dtype dt)
{
    if (x < 0 || D(a, x)->dtype == dt)
        return x;
    ir_proto p = {.op = OP_cast, .dtype = dt, .nin = 1, .in = &x};
    return app(a, &p);
}

static int expand_to(ad *a, int x, int rank, const int64_t *shape)
{
    if (x < 0)
        return -1;
    const ir_node *n = D(a, x);
    if (n->rank == rank && memcmp(n->shape, shape, sizeof(int64_t) * (size_t)rank) == 0)
        return x;
    ir_proto p = {.op = OP_expand, .nin = 1, .in = &x, .nlist = rank};
    memcpy(p.list, shape, sizeof(int64_t) * (size_t)rank);
    return app(a, &p);
}

/* the scalar v in like's dtype and shape (a broadcast view of one constant) */
static int konst(ad *a, double v, int like)
{
    if (like < 0)
        return -1;
    ir_proto p = {.op = OP_constant, .dtype = D(a, like)->dtype, .f = {v}};
    int c = app(a, &p);
    if (c < 0)
        return -1;
    return expand_to(a, c, D(a, like)->rank, D(a, like)->shape);
}

static int zeros(ad *a, ir_dtype dt, int rank, const int64_t *shape)
{
    ir_proto p = {.op = OP_full, .dtype = dt, .nlist = rank};
    memcpy(p.list, shape, sizeof(int64_t) * (size_t)rank);
    return app(a, &p);
}

static int reduce(ad *a, ir_opcode op, int x, int naxes, const int64_t *axes, bool keepdim)
{
    ir_proto p = {.op = op, .nin = 1, .in = &x, .nlist = naxes, .i = {keepdim}};
    memcpy(p.list, axes, sizeof(int64_t) * (size_t)naxes);
    return app(a, &p);
}

static int contig(ad *a, int x)
{
    return x < 0 || ir_is_contiguous(D(a, x)) ? x : op1(a, OP_copy, x);
}

static int view_as(ad *a, int x, int rank, const int64_t *shape)
{
    x = contig(a, x);
    if (x < 0)
        return -1;
    if (D(a, x)->rank == rank && memcmp(D(a, x)->shape, shape, sizeof(int64_t) * (size_t)rank) == 0)
        return x;
    ir_proto p = {.op = OP_view, .nin = 1, .in = &x, .nlist = rank};
    memcpy(p.list, shape, sizeof(int64_t) * (size_t)rank);
    return app(a, &p);
}

/* x holds a reduction's result (axes, keepdim of src node n): back to n's input shape */
static int unreduce(ad *a, const ir_node *n, int x)
{
    const ir_node *in = S(a, n->in[0]);
    if (!n->i[0])
        for (int k = 0; k < n->nlist && x >= 0; k++) {
            ir_proto p = {.op = OP_unsqueeze, .nin = 1, .in = &x, .i = {n->list[k]}};
            x = app(a, &p);
        }
    return expand_to(a, x, in->rank, in->shape);
}

/* adds g to the cotangent of src value v (if v carries one) */
static void give(ad *a, int v, int g)
{
    if (g < 0 || a->failed || !a->vary[v])
        return;
    const ir_node *s = S(a, v);
    if (D(a, g)->dtype != s->dtype)
        g = cast_to(a, g, s->dtype);
    if (a->ct[v] >= 0)
        g = op2(a, OP_add, a->ct[v], g);
    if (g < 0)
        return;
    a->ct[v] = g;
    if (s->name && !D(a, g)->name) {
        size_t len = strlen(s->name) + 2;
        char *nm = arena_alloc(a->dst->mod->ar, len);
        snprintf(nm, len, "d%s", s->name);
        a->dst->nodes[g].name = nm;
    }
}

/* ---- the rules: rule(a, id) pushes node id's cotangent a->ct[id] to its inputs ---- */

static void grad_leaf(ad *a, int id) { (void)a, (void)id; }
static void grad_none(ad *a, int id) { (void)a, (void)id; }
static void grad_stop(ad *a, int id) { (void)a, (void)id; }

/* index -> index_add, gather -> gather_add: dy summed back into the rows it was read from
 * (duplicate indices accumulate) */
static void grad_index(ad *a, int id)
{
    const ir_node *n = S(a, id), *x = S(a, n->in[0]);
    int in[2] = {a->ct[id], a->map[n->in[1]]};
    ir_proto p = {.op = n->op == OP_index ? OP_index_add : OP_gather_add, .nin = 2, .in = in, .i = {n->i[0]},
                  .nlist = x->rank};
    memcpy(p.list, x->shape, sizeof(int64_t) * (size_t)x->rank);
    give(a, n->in[0], app(a, &p));
}

/* the scatters are linear in their source: its cotangent is dy read back the way the
 * forward op reads (index, gather, slice) */
static void grad_scatter(ad *a, int id)
{
    const ir_node *n = S(a, id);
    int dy = a->ct[id];
    if (n->op == OP_slice_scatter) {
        ir_proto p = {.op = OP_slice, .nin = 1, .in = &dy, .i = {n->i[0], n->i[1], n->i[2], n->i[3]}};
        give(a, n->in[0], app(a, &p));
        return;
    }
    int in[2] = {dy, a->map[n->in[1]]};
    ir_proto p = {.op = n->op == OP_index_add ? OP_index : OP_gather, .nin = 2, .in = in, .i = {n->i[0]}};
    give(a, n->in[0], app(a, &p));
}

static void grad_copy(ad *a, int id) { give(a, S(a, id)->in[0], a->ct[id]); }

static void grad_cast(ad *a, int id)
{
    give(a, S(a, id)->in[0], cast_to(a, a->ct[id], S(a, S(a, id)->in[0])->dtype));
}

static void grad_unary(ad *a, int id)
{
    const ir_node *n = S(a, id);
    int dy = a->ct[id], x = a->map[n->in[0]], y = a->map[id], d = -1;
    switch (n->op) {
    case OP_neg: d = op1(a, OP_neg, dy); break;
    case OP_abs: d = op2(a, OP_mul, dy, op1(a, OP_sign, x)); break;
    case OP_sign: return;   /* zero almost everywhere */
    case OP_exp: d = op2(a, OP_mul, dy, y); break;
    case OP_log: d = op2(a, OP_div, dy, x); break;
    case OP_log1p: d = op2(a, OP_div, dy, op2(a, OP_add, x, konst(a, 1, x))); break;
    case OP_sqrt: d = op2(a, OP_div, dy, op2(a, OP_mul, y, konst(a, 2, y))); break;
    case OP_rsqrt: {   /* -y^3 / 2 */
        int y3 = op2(a, OP_mul, op2(a, OP_mul, y, y), y);
        d = op2(a, OP_mul, dy, op2(a, OP_mul, y3, konst(a, -0.5, y)));
        break;
    }
    case OP_sin: d = op2(a, OP_mul, dy, op1(a, OP_cos, x)); break;
    case OP_cos: d = op2(a, OP_mul, dy, op1(a, OP_neg, op1(a, OP_sin, x))); break;
    case OP_tanh: d = op2(a, OP_mul, dy, op2(a, OP_sub, konst(a, 1, y), op2(a, OP_mul, y, y))); break;
    case OP_sigmoid: d = op2(a, OP_mul, dy, op2(a, OP_mul, y, op2(a, OP_sub, konst(a, 1, y), y))); break;
    case OP_relu: d = op3(a, OP_where, op2(a, OP_gt, x, konst(a, 0, x)), dy, konst(a, 0, dy)); break;
    case OP_leaky_relu:
        d = op3(a, OP_where, op2(a, OP_gt, x, konst(a, 0, x)), dy, op2(a, OP_mul, dy, konst(a, n->f[0], dy)));
        break;
    case OP_clamp: {   /* torch: passes where lo <= x <= hi (infinite bounds: none) */
        int m = -1;
        if (!isinf(n->f[0]))
            m = op2(a, OP_ge, x, konst(a, n->f[0], x));
        if (!isinf(n->f[1])) {
            int m2 = op2(a, OP_le, x, konst(a, n->f[1], x));
            m = m < 0 ? m2 : op2(a, OP_land, m, m2);
        }
        d = m < 0 ? dy : op3(a, OP_where, m, dy, konst(a, 0, dy));
        break;
    }
    case OP_silu: {   /* s (1 + x (1 - s)) */
        int s = op1(a, OP_sigmoid, x);
        int t = op2(a, OP_add, konst(a, 1, x), op2(a, OP_mul, x, op2(a, OP_sub, konst(a, 1, x), s)));
        d = op2(a, OP_mul, dy, op2(a, OP_mul, s, t));
        break;
    }
    case OP_softplus:   /* torch's threshold 20: identity above */
        d = op2(a, OP_mul, dy, op3(a, OP_where, op2(a, OP_gt, x, konst(a, 20, x)), konst(a, 1, x), op1(a, OP_sigmoid, x)));
        break;
    case OP_gelu:
        if (n->i[0]) {   /* tanh form: u = c (x + k x^3), t = tanh(u) */
            const double c = 0.79788456080286535588, k = 0.044715;
            int x2 = op2(a, OP_mul, x, x);
            int u = op2(a, OP_mul, konst(a, c, x), op2(a, OP_add, x, op2(a, OP_mul, konst(a, k, x), op2(a, OP_mul, x2, x))));
            int t = op1(a, OP_tanh, u);
            int du = op2(a, OP_mul, konst(a, c, x), op2(a, OP_add, konst(a, 1, x), op2(a, OP_mul, konst(a, 3 * k, x), x2)));
            int half = konst(a, 0.5, x);
            int g = op2(a, OP_add, op2(a, OP_mul, half, op2(a, OP_add, konst(a, 1, x), t)),
                        op2(a, OP_mul, op2(a, OP_mul, half, x), op2(a, OP_mul, op2(a, OP_sub, konst(a, 1, x), op2(a, OP_mul, t, t)), du)));
            d = op2(a, OP_mul, dy, g);
        } else {
            /* Phi(x) + x phi(x); no erf op: Phi(x) = gelu(x) / x (0.5 at x = 0) */
            int z = op2(a, OP_eq, x, konst(a, 0, x));
            int xs = op3(a, OP_where, z, konst(a, 1, x), x);
            int Phi = op3(a, OP_where, z, konst(a, 0.5, x), op2(a, OP_div, y, xs));
            int e = op1(a, OP_exp, op2(a, OP_mul, konst(a, -0.5, x), op2(a, OP_mul, x, x)));
            int phi = op2(a, OP_mul, e, konst(a, 0.39894228040143267794, x));
            d = op2(a, OP_mul, dy, op2(a, OP_add, Phi, op2(a, OP_mul, x, phi)));
        }
        break;
    default: fail(a, "no gradient rule for '%s'", ir_ops[n->op].name); return;
    }
    give(a, n->in[0], d);
}

static void grad_binary(ad *a, int id)
{
    const ir_node *n = S(a, id);
    int dy = a->ct[id], x = a->map[n->in[0]], w = a->map[n->in[1]], y = a->map[id];
    int va = a->vary[n->in[0]], vb = a->vary[n->in[1]];
    int da = -1, db = -1;
    switch (n->op) {
    case OP_add: da = dy, db = dy; break;
    case OP_sub: da = dy, db = vb ? op1(a, OP_neg, dy) : -1; break;
    case OP_mul:
        da = va ? op2(a, OP_mul, dy, w) : -1;
        db = vb ? op2(a, OP_mul, dy, x) : -1;
        break;
    case OP_div:   /* db = -dy x / w^2 */
        da = va ? op2(a, OP_div, dy, w) : -1;
        db = vb ? op1(a, OP_neg, op2(a, OP_div, op2(a, OP_mul, dy, x), op2(a, OP_mul, w, w))) : -1;
        break;
    case OP_mod:   /* torch remainder: db = -dy * floor(x / w) = -dy (x - y) / w */
        da = dy;
        db = vb ? op1(a, OP_neg, op2(a, OP_mul, dy, op2(a, OP_div, op2(a, OP_sub, x, y), w))) : -1;
        break;
    case OP_pow:   /* torch: 0 where w == 0 (da) / where x == 0 and w >= 0 (db) */
        if (va) {
            int p = op2(a, OP_mul, w, op2(a, OP_pow, x, op2(a, OP_sub, w, konst(a, 1, w))));
            p = op3(a, OP_where, op2(a, OP_eq, w, konst(a, 0, w)), konst(a, 0, w), p);
            da = op2(a, OP_mul, dy, p);
        }
        if (vb) {
            int m = op2(a, OP_land, op2(a, OP_eq, x, konst(a, 0, x)), op2(a, OP_ge, w, konst(a, 0, w)));
            int xs = op3(a, OP_where, m, konst(a, 1, x), x);
            db = op2(a, OP_mul, dy, op3(a, OP_where, m, konst(a, 0, x), op2(a, OP_mul, y, op1(a, OP_log, xs))));
        }
        break;
    case OP_maximum:
    case OP_minimum: {   /* torch: the larger (smaller) input gets dy, a tie half each */
        ir_opcode win = n->op == OP_maximum ? OP_gt : OP_lt;
        int tie = op2(a, OP_eq, x, w);
        int half = op2(a, OP_mul, dy, konst(a, 0.5, dy)), zero = konst(a, 0, dy);
        if (va)
            da = op3(a, OP_where, tie, half, op3(a, OP_where, op2(a, win, x, w), dy, zero));
        if (vb)
            db = op3(a, OP_where, tie, half, op3(a, OP_where, op2(a, win, w, x), dy, zero));
        break;
    }
    default: fail(a, "no gradient rule for '%s'", ir_ops[n->op].name); return;
    }
    give(a, n->in[0], da);
    give(a, n->in[1], db);
}

static void grad_where(ad *a, int id)
{
    const ir_node *n = S(a, id);
    int dy = a->ct[id], c = a->map[n->in[0]];
    if (a->vary[n->in[1]])
        give(a, n->in[1], op3(a, OP_where, c, dy, konst(a, 0, dy)));
    if (a->vary[n->in[2]])
        give(a, n->in[2], op3(a, OP_where, c, konst(a, 0, dy), dy));
}

static void grad_reduce(ad *a, int id)
{
    const ir_node *n = S(a, id);
    const ir_node *in = S(a, n->in[0]);
    int dy = a->ct[id], x = a->map[n->in[0]], y = a->map[id];
    int64_t count = 1;
    for (int k = 0; k < n->nlist; k++)
        count *= in->shape[n->list[k]];
    int g = unreduce(a, n, dy), d = -1;
    switch (n->op) {
    case OP_sum: d = g; break;
    case OP_mean: d = op2(a, OP_mul, g, konst(a, count ? 1.0 / (double)count : 0, g)); break;
    case OP_max:
    case OP_min: {   /* torch.amax: split equally among the ties */
        int m = cast_to(a, op2(a, OP_eq, x, unreduce(a, n, y)), in->dtype);
        int cnt = reduce(a, OP_sum, m, n->nlist, n->list, true);
        int share = op2(a, OP_div, op2(a, OP_mul, m, g), expand_to(a, cnt, in->rank, in->shape));
        d = share;
        break;
    }
    case OP_prod: {   /* zeros: prod of the others, without dividing by zero */
        int z = op2(a, OP_eq, x, konst(a, 0, x));
        int xs = op3(a, OP_where, z, konst(a, 1, x), x);
        int pnz = expand_to(a, reduce(a, OP_prod, xs, n->nlist, n->list, true), in->rank, in->shape);
        int nz = expand_to(a, reduce(a, OP_sum, cast_to(a, z, in->dtype), n->nlist, n->list, true), in->rank, in->shape);
        int none = op2(a, OP_eq, nz, konst(a, 0, x));
        int one = op2(a, OP_land, op2(a, OP_eq, nz, konst(a, 1, x)), z);
        int p = op3(a, OP_where, none, op2(a, OP_div, pnz, xs), op3(a, OP_where, one, pnz, konst(a, 0, x)));
        d = op2(a, OP_mul, g, p);
        break;
    }
    case OP_logsumexp: d = op2(a, OP_mul, g, op1(a, OP_exp, op2(a, OP_sub, x, unreduce(a, n, y)))); break;
    case OP_var: {   /* biased: 2 (x - mean) / N */
        int mu = expand_to(a, reduce(a, OP_mean, x, n->nlist, n->list, true), in->rank, in->shape);
        d = op2(a, OP_mul, g, op2(a, OP_mul, op2(a, OP_sub, x, mu), konst(a, count ? 2.0 / (double)count : 0, x)));
        break;
    }
    default: fail(a, "no gradient rule for '%s'", ir_ops[n->op].name); return;
    }
    give(a, n->in[0], d);
}

static void grad_softmax(ad *a, int id)
{
    const ir_node *n = S(a, id);
    int dy = a->ct[id], y = a->map[id];
    int64_t ax = n->i[0];
    int rank = n->rank;
    if (rank == 0) {   /* softmax of a scalar is 1: no gradient */
        return;
    }
    int d;
    if (n->op == OP_softmax) {   /* y (dy - sum(dy y)) */
        int s = expand_to(a, reduce(a, OP_sum, op2(a, OP_mul, dy, y), 1, &ax, true), rank, n->shape);
        d = op2(a, OP_mul, y, op2(a, OP_sub, dy, s));
    } else {   /* dy - exp(y) sum(dy) */
        int s = expand_to(a, reduce(a, OP_sum, dy, 1, &ax, true), rank, n->shape);
        d = op2(a, OP_sub, dy, op2(a, OP_mul, op1(a, OP_exp, y), s));
    }
    give(a, n->in[0], d);
}

static void grad_xent(ad *a, int id)
{
    const ir_node *n = S(a, id);
    const ir_node *lg = S(a, n->in[0]);
    int dy = a->ct[id], x = a->map[n->in[0]], lab = a->map[n->in[1]];
    ir_proto sp = {.op = OP_softmax, .nin = 1, .in = &x, .i = {1}};
    int sm = app(a, &sp);
    ir_proto oh = {.op = OP_one_hot, .nin = 1, .in = &lab, .i = {lg->shape[1]}};
    int hot = cast_to(a, app(a, &oh), lg->dtype);
    int scale = op2(a, OP_mul, dy, konst(a, lg->shape[0] ? 1.0 / (double)lg->shape[0] : 0, dy));
    give(a, n->in[0], op2(a, OP_mul, op2(a, OP_sub, sm, hot), expand_to(a, scale, lg->rank, lg->shape)));
}

static void grad_layer_norm(ad *a, int id)
{
    const ir_node *n = S(a, id);
    const ir_node *xn = S(a, n->in[0]);
    int dy = a->ct[id], x = a->map[n->in[0]], w = a->map[n->in[1]];
    int r = xn->rank;
    int64_t last = r - 1, D = xn->shape[r - 1];
    const int64_t *shp = xn->shape;
    /* xhat = (x - mu) rstd, recomputed */
    int mu = expand_to(a, reduce(a, OP_mean, x, 1, &last, true), r, shp);
    int xc = op2(a, OP_sub, x, mu);
    int var = reduce(a, OP_mean, op2(a, OP_mul, xc, xc), 1, &last, true);
    int rstd = expand_to(a, op1(a, OP_rsqrt, op2(a, OP_add, var, konst(a, n->f[0], var))), r, shp);
    int xhat = op2(a, OP_mul, xc, rstd);
    int64_t lead[IR_MAX_RANK];
    for (int k = 0; k < r - 1; k++)
        lead[k] = k;
    if (a->vary[n->in[0]]) {   /* rstd (g - mean(g) - xhat mean(g xhat)), g = dy w */
        int g = op2(a, OP_mul, dy, expand_to(a, w, r, shp));
        int mg = expand_to(a, reduce(a, OP_mean, g, 1, &last, true), r, shp);
        int mgx = expand_to(a, reduce(a, OP_mean, op2(a, OP_mul, g, xhat), 1, &last, true), r, shp);
        give(a, n->in[0], op2(a, OP_mul, rstd, op2(a, OP_sub, op2(a, OP_sub, g, mg), op2(a, OP_mul, xhat, mgx))));
    }
    (void)D;
    if (a->vary[n->in[1]]) {
        int t = op2(a, OP_mul, dy, xhat);
        give(a, n->in[1], r > 1 ? reduce(a, OP_sum, t, r - 1, lead, false) : t);
    }
    if (a->vary[n->in[2]])
        give(a, n->in[2], r > 1 ? reduce(a, OP_sum, dy, r - 1, lead, false) : dy);
}

static int transpose_last(ad *a, int x)
{
    const ir_node *n = D(a, x);
    ir_proto p = {.op = OP_permute, .nin = 1, .in = &x, .nlist = n->rank};
    for (int d = 0; d < n->rank; d++)
        p.list[d] = d;
    p.list[n->rank - 2] = n->rank - 1;
    p.list[n->rank - 1] = n->rank - 2;
    return app(a, &p);
}

static void grad_matmul(ad *a, int id)
{
    const ir_node *n = S(a, id);
    int dy = a->ct[id], x = a->map[n->in[0]], w = a->map[n->in[1]];
    if (a->vary[n->in[0]])
        give(a, n->in[0], op2(a, OP_matmul, dy, transpose_last(a, w)));
    if (a->vary[n->in[1]])
        give(a, n->in[1], op2(a, OP_matmul, transpose_last(a, x), dy));
}

/* dy placed at [start, stop) of axis in a zero tensor of in's shape */
static int pad_axis(ad *a, int dy, const ir_node *in, int64_t axis, int64_t start, int64_t stop)
{
    int parts[3], np = 0;
    int64_t shp[IR_MAX_RANK];
    memcpy(shp, in->shape, sizeof shp);
    if (start > 0) {
        shp[axis] = start;
        parts[np++] = zeros(a, in->dtype, in->rank, shp);
    }
    parts[np++] = dy;
    if (stop < in->shape[axis]) {
        shp[axis] = in->shape[axis] - stop;
        parts[np++] = zeros(a, in->dtype, in->rank, shp);
    }
    if (np == 1)
        return dy;
    ir_proto p = {.op = OP_concat, .nin = np, .in = parts, .i = {axis}};
    return app(a, &p);
}

static void grad_view(ad *a, int id)
{
    const ir_node *n = S(a, id);
    const ir_node *in = S(a, n->in[0]);
    int dy = a->ct[id], d = -1;
    switch (n->op) {
    case OP_view: d = view_as(a, dy, in->rank, in->shape); break;
    case OP_permute: {
        ir_proto p = {.op = OP_permute, .nin = 1, .in = &dy, .nlist = n->nlist};
        for (int k = 0; k < n->nlist; k++)
            p.list[n->list[k]] = k;
        d = app(a, &p);
        break;
    }
    case OP_expand: {   /* sum over the broadcast axes, then back to the input's shape */
        int lead = n->rank - in->rank, na = 0;
        int64_t axes[IR_MAX_RANK];
        for (int k = 0; k < n->rank; k++)
            if (k < lead || (in->shape[k - lead] == 1 && n->shape[k] != 1))
                axes[na++] = k;
        d = na ? reduce(a, OP_sum, dy, na, axes, true) : dy;
        d = view_as(a, d, in->rank, in->shape);
        break;
    }
    case OP_slice:
        if (n->i[3] == 1) {
            d = pad_axis(a, dy, in, n->i[0], n->i[1], n->i[2]);
        } else {   /* strided: dy at start:stop:step of a zero tensor */
            ir_proto p = {.op = OP_slice_scatter, .nin = 1, .in = &dy, .i = {n->i[0], n->i[1], n->i[2], n->i[3]},
                          .nlist = in->rank};
            memcpy(p.list, in->shape, sizeof(int64_t) * (size_t)in->rank);
            d = app(a, &p);
        }
        break;
    case OP_select: {
        ir_proto p = {.op = OP_unsqueeze, .nin = 1, .in = &dy, .i = {n->i[0]}};
        d = pad_axis(a, app(a, &p), in, n->i[0], n->i[1], n->i[1] + 1);
        break;
    }
    case OP_squeeze:
        d = dy;
        for (int k = 0; k < n->nlist && d >= 0; k++) {
            ir_proto p = {.op = OP_unsqueeze, .nin = 1, .in = &d, .i = {n->list[k]}};
            d = app(a, &p);
        }
        break;
    case OP_unsqueeze: {
        ir_proto p = {.op = OP_squeeze, .nin = 1, .in = &dy, .nlist = 1, .list = {n->i[0]}};
        d = app(a, &p);
        break;
    }
    default: fail(a, "no gradient rule for '%s'", ir_ops[n->op].name); return;
    }
    give(a, n->in[0], d);
}

static void grad_concat(ad *a, int id)
{
    const ir_node *n = S(a, id);
    int64_t ax = n->i[0], at = 0;
    for (int k = 0; k < n->nin; k++) {
        int64_t len = S(a, n->in[k])->shape[ax];
        if (a->vary[n->in[k]]) {
            int dy = a->ct[id];
            ir_proto p = {.op = OP_slice, .nin = 1, .in = &dy, .i = {ax, at, at + len, 1}};
            give(a, n->in[k], app(a, &p));
        }
        at += len;
    }
}

typedef void (*grad_rule)(ad *a, int id);
static const grad_rule rules[OP_COUNT] = {
#define OP(id, name, nin, flags, rule, attrs, grad) [OP_##id] = grad,
#include "../ir/ops.def"
#undef OP
};

void pass_drop_func(ir_module *m, const ir_func *f)
{
    for (int k = 0; k < m->nfuncs; k++)
        if (m->funcs[k] == f) {
            memmove(&m->funcs[k], &m->funcs[k + 1], sizeof *m->funcs * (size_t)(m->nfuncs - k - 1));
            m->nfuncs--;
            return;
        }
}

ir_func *pass_autodiff(ir_func *F, const char *name, int nwrt, const pass_wrt *wrt, bool *independent,
                       int *err_line, int *err_col, char *err, size_t errlen)
{
    return pass_autodiff_regions(F, name, nwrt, wrt, independent, NULL, err_line, err_col, err, errlen);
}

/* node id's custom region, or NULL */
static const pass_custom *region_of(int ncustom, const pass_custom *customs, int id)
{
    for (int k = 0; k < ncustom; k++)
        if (customs[k].result == id)
            return &customs[k];
    return NULL;
}

/* A region's result: the custom gradient block gives the arguments' cotangents. Interior
 * nodes get no cotangent from the result (only from users outside the region, if any). */
static void grad_custom(ad *a, int id, const pass_custom *r, const pass_regions *rg)
{
    int cts[64];
    if (r->nargs > 64) {
        fail(a, "a custom gradient supports at most 64 arguments");
        return;
    }
    for (int k = 0; k < r->nargs; k++)
        cts[k] = -1;
    if (!rg->emit || rg->emit(rg->ctx, a->src, a->dst, r, a->map, a->ct[id], cts) != 0) {
        fail(a, "the custom gradient failed");
        return;
    }
    for (int k = 0; k < r->nargs && !a->failed; k++) {
        if (r->args[k] < 0 || cts[k] < 0)
            continue;
        const ir_node *s = S(a, r->args[k]), *g = D(a, cts[k]);
        if (s->rank != g->rank || memcmp(s->shape, g->shape, sizeof(int64_t) * (size_t)s->rank) != 0 ||
            s->dtype != g->dtype) {   /* the lowering checks first, with names: a safety net */
            fail(a, "custom gradient: cotangent %d does not match its argument's type", k);
            return;
        }
        give(a, r->args[k], cts[k]);
    }
}

/* Emits a copy of src node id into a->dst, its inputs moved by map. */
static int reemit(ad *a, const ir_func *src, int id, const int *map)
{
    const ir_node *n = &src->nodes[id];
    int in[64];
    int *ins = n->nin <= 64 ? in : arena_alloc(a->dst->mod->ar, sizeof(int) * (size_t)n->nin);
    for (int k = 0; k < n->nin; k++)
        ins[k] = map[n->in[k]];
    ir_proto p = {.op = n->op, .dtype = n->dtype, .nin = n->nin, .in = ins, .nlist = n->nlist, .str = n->str,
                  .name = n->name};
    memcpy(p.list, n->list, sizeof p.list);
    memcpy(p.i, n->i, sizeof p.i);
    memcpy(p.f, n->f, sizeof p.f);
    a->line = n->line;
    a->col = n->col;
    return app(a, &p);
}

/* A checkpoint region reached by the backward walk: its nodes are emitted again here,
 * late, and from now on the region's rules read these copies, so the forward's values
 * of the region are dead once the forward has used them. Leaves stay as they are. */
static void recompute(ad *a, const pass_checkpoint *r, const bool *live)
{
    for (int id = r->first; id <= r->last && !a->failed; id++) {
        ir_opcode op = a->src->nodes[id].op;
        if (live[id] && op != OP_arg && op != OP_param && op != OP_state && op != OP_constant)
            a->map[id] = reemit(a, a->src, id, a->map);
    }
}

/* Drops the nodes of a->dst that no output needs (recomputed values no rule read, forward
 * values only the removed nodes read): a new function replaces a->dst. */
static void prune(ad *a)
{
    ir_func *G = a->dst;
    ir_module *m = G->mod;
    int nn = G->nnodes;
    bool *need = arena_alloc(m->ar, sizeof(bool) * (size_t)(nn ? nn : 1));
    memset(need, 0, sizeof(bool) * (size_t)(nn ? nn : 1));
    for (int k = 0; k < G->nouts; k++)
        need[G->outs[k]] = true;
    int kept = 0;
    for (int id = nn - 1; id >= 0; id--) {
        for (int k = 0; need[id] && k < G->nodes[id].nin; k++)
            need[G->nodes[id].in[k]] = true;
        kept += need[id];
    }
    if (kept == nn)
        return;
    int *map = arena_alloc(m->ar, sizeof(int) * (size_t)nn);
    pass_drop_func(m, G);
    a->dst = ir_func_new(m, G->name, G->nargs, G->args);
    a->dst->line = G->line;
    a->dst->col = G->col;
    for (int id = 0; id < nn && !a->failed; id++)
        map[id] = need[id] ? reemit(a, G, id, map) : -1;
    for (int k = 0; k < G->nouts && !a->failed; k++)
        ir_add_output(a->dst, map[G->outs[k]]);
}

ir_func *pass_autodiff_regions(ir_func *F, const char *name, int nwrt, const pass_wrt *wrt, bool *independent,
                               const pass_regions *regions, int *err_line, int *err_col, char *err, size_t errlen)
{
    static const pass_regions none;
    const pass_regions *rg = regions ? regions : &none;
    int ncustom = rg->ncustom;
    const pass_custom *customs = rg->customs;
    ir_module *m = F->mod;
    arena *ar = m->ar;
    int nn = F->nnodes;
    *err_line = F->line;
    *err_col = F->col;
    if (F->nouts != 1 || nn == 0) {
        snprintf(err, errlen, "grad needs a function with one result, got %d", F->nouts);
        return NULL;
    }
    const ir_node *out = &F->nodes[F->outs[0]];
    if (out->rank != 0 || !ir_dtype_is_float(out->dtype)) {
        char s[128];
        ir_format_shape(s, sizeof s, out->rank, out->shape);
        snprintf(err, errlen, "grad(F) needs a scalar result; F returns %s%s%s", ir_dtype_name(out->dtype),
                 out->rank ? s : "", out->rank ? ": reduce it with sum(...) or mean(...)" : ": it must be floating point");
        return NULL;
    }
    ad A = {.src = F, .eline = err_line, .ecol = err_col, .err = err, .errlen = errlen, .line = F->line, .col = F->col};
    ad *a = &A;
    a->map = arena_alloc(ar, sizeof(int) * (size_t)nn);
    a->ct = arena_alloc(ar, sizeof(int) * (size_t)nn);
    a->vary = arena_alloc(ar, sizeof(bool) * (size_t)nn);
    bool *live = arena_alloc(ar, sizeof(bool) * (size_t)nn);
    int *leaf = arena_alloc(ar, sizeof(int) * (size_t)(nwrt ? nwrt : 1));
    memset(live, 0, sizeof(bool) * (size_t)nn);
    live[F->outs[0]] = true;
    for (int id = nn - 1; id >= 0; id--) {
        const pass_custom *r = live[id] ? region_of(ncustom, customs, id) : NULL;
        if (r) {   /* the gradient block may read any body binding or argument */
            for (int k = 0; k < r->nkeep; k++)
                if (r->keep[k] >= 0 && r->keep[k] < id)
                    live[r->keep[k]] = true;
            for (int k = 0; k < r->nargs; k++)
                if (r->args[k] >= 0 && r->args[k] < nn)
                    live[r->args[k]] = true;
        }
        for (int k = 0; live[id] && k < F->nodes[id].nin; k++)
            live[F->nodes[id].in[k]] = true;
    }
    for (int w = 0; w < nwrt; w++) {
        leaf[w] = -1;
        for (int id = 0; id < nn && leaf[w] < 0; id++)
            if (F->nodes[id].op == (wrt[w].is_param ? OP_param : OP_arg) && F->nodes[id].i[0] == wrt[w].index &&
                live[id])
                leaf[w] = id;
    }
    for (int id = 0; id < nn; id++) {
        const ir_node *n = &F->nodes[id];
        a->map[id] = a->ct[id] = -1;
        bool v = false;
        if (n->op == OP_arg || n->op == OP_param)
            for (int w = 0; w < nwrt; w++)
                v |= leaf[w] == id;
        else if (n->op != OP_stop_gradient)
            for (int k = 0; k < n->nin; k++)
                v |= a->vary[n->in[k]];
        a->vary[id] = v && live[id] && ir_dtype_is_float(n->dtype);
    }
    ir_func *G = ir_func_new(m, name, F->nargs, F->args);
    G->line = F->line;
    G->col = F->col;
    a->dst = G;
    /* forward: re-emit the live nodes */
    for (int id = 0; id < nn && !a->failed; id++)
        if (live[id])
            a->map[id] = reemit(a, F, id, a->map);
    /* backward */
    bool *recomputed = arena_alloc(ar, sizeof(bool) * (size_t)(rg->ncheckpoints + 1));
    memset(recomputed, 0, sizeof(bool) * (size_t)(rg->ncheckpoints + 1));
    int root = F->outs[0];
    if (a->vary[root] && !a->failed) {
        a->line = F->nodes[root].line;
        a->col = F->nodes[root].col;
        ir_proto one = {.op = OP_constant, .dtype = out->dtype, .f = {1.0}};
        a->ct[root] = app(a, &one);
    }
    for (int id = root; id >= 0 && !a->failed; id--) {
        if (!a->vary[id] || a->ct[id] < 0)
            continue;
        a->line = F->nodes[id].line;
        a->col = F->nodes[id].col;
        for (int k = 0; k < rg->ncheckpoints; k++)
            if (!recomputed[k] && rg->checkpoints[k].first <= id && id <= rg->checkpoints[k].last) {
                recomputed[k] = true;
                recompute(a, &rg->checkpoints[k], live);
                a->line = F->nodes[id].line;
                a->col = F->nodes[id].col;
            }
        const pass_custom *r = region_of(ncustom, customs, id);
        if (r)
            grad_custom(a, id, r, rg);
        else
            rules[F->nodes[id].op](a, id);
    }
    if (!a->failed) {
        ir_add_output(G, a->map[root]);
        for (int w = 0; w < nwrt; w++) {
            const char *lname = wrt[w].is_param ? m->params[wrt[w].index].name : F->args[wrt[w].index].name;
            int g = leaf[w] >= 0 ? a->ct[leaf[w]] : -1;
            independent[w] = g < 0;
            if (g < 0) {
                a->line = F->line;
                a->col = F->col;
                g = wrt[w].is_param ? zeros(a, m->params[wrt[w].index].dtype, m->params[wrt[w].index].rank,
                                            m->params[wrt[w].index].shape)
                                    : zeros(a, F->args[wrt[w].index].dtype, F->args[wrt[w].index].rank,
                                            F->args[wrt[w].index].shape);
                if (g < 0)
                    break;
            }
            for (int k = 0; k < G->nouts; k++)   /* one node per output: names tell them apart */
                if (G->outs[k] == g) {
                    g = op1(a, OP_copy, g);
                    break;
                }
            if (g < 0)
                break;
            size_t len = strlen(lname) + 2;
            char *nm = arena_alloc(ar, len);
            snprintf(nm, len, "d%s", lname);
            G->nodes[g].name = nm;
            ir_add_output(G, g);
        }
    }
    if (!a->failed)
        prune(a);
    if (a->failed) {
        pass_drop_func(m, a->dst);
        return NULL;
    }
    return a->dst;
}

/* ---- gradcheck ---- */

/* the arg (is_param false) or param a gradient output is named after ("dW1" -> W1) */
static bool grad_target(const ir_func *G, int out, bool *is_param, int *index)
{
    const ir_node *n = &G->nodes[G->outs[out]];
    if (!n->name || n->name[0] != 'd')
        return false;
    const char *nm = n->name + 1;
    for (int k = 0; k < G->nargs; k++)
        if (strcmp(G->args[k].name, nm) == 0) {
            *is_param = false, *index = k;
            return true;
        }
    for (int k = 0; k < G->mod->nparams; k++)
        if (strcmp(G->mod->params[k].name, nm) == 0) {
            *is_param = true, *index = k;
            return true;
        }
    return false;
}

static bool to_f64(host_tensor *dst, const host_tensor *src)
{
    ir_dtype dt = ir_dtype_is_float(src->dtype) ? DT_F64 : src->dtype;
    if (!host_tensor_alloc(dst, dt, src->rank, src->shape))
        return false;
    if (dt == DT_F64) {
        for (int64_t i = 0; i < host_tensor_numel(src); i++)
            host_tensor_set(dst, i, host_tensor_get(src, i));
    } else {
        memcpy(dst->data, src->data, (size_t)host_tensor_numel(src) * ir_dtype_size(dt));
    }
    return true;
}

static int eval_value(const ir_func *G, const host_tensor *args, const host_tensor *params, double *v, char *err,
                      size_t errlen)
{
    host_tensor *outs = calloc((size_t)G->nouts, sizeof *outs);
    if (!outs) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    ir_eval_opts eo = {.force_f64 = true};
    int rc = ir_eval(G, args, params, outs, &eo, err, errlen);
    if (!rc)
        *v = host_tensor_get(&outs[0], 0);
    for (int k = 0; !rc && k < G->nouts; k++)
        host_tensor_free(&outs[k]);
    free(outs);
    return rc;
}

int pass_gradcheck(const ir_func *G, const host_tensor *args_in, const host_tensor *params_in, double eps, double rtol,
                   double atol, pass_gradcheck_row *rows, char *err, size_t errlen)
{
    const ir_module *m = G->mod;
    int na = G->nargs, np = m->nparams, rc = -1;
    host_tensor *args = calloc((size_t)na + 1, sizeof *args), *params = calloc((size_t)np + 1, sizeof *params);
    host_tensor *outs = calloc((size_t)G->nouts + 1, sizeof *outs);
    if (!args || !params || !outs) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    if (G->nouts < 2 || G->nodes[G->outs[0]].rank != 0) {
        snprintf(err, errlen, "'%s' is not a grad export (its value, then gradients)", G->name);
        goto done;
    }
    for (int k = 0; k < na; k++)
        if (!to_f64(&args[k], &args_in[k])) {
            snprintf(err, errlen, "out of memory");
            goto done;
        }
    for (int k = 0; k < np; k++)
        if (!to_f64(&params[k], &params_in[k])) {
            snprintf(err, errlen, "out of memory");
            goto done;
        }
    ir_eval_opts eo = {.force_f64 = true};
    if (ir_eval(G, args, params, outs, &eo, err, errlen) != 0)
        goto done;
    for (int o = 1; o < G->nouts; o++) {
        pass_gradcheck_row *r = &rows[o - 1];
        bool is_param;
        int idx;
        if (!grad_target(G, o, &is_param, &idx)) {
            snprintf(err, errlen, "output %d of '%s' is not named after an argument or param", o, G->name);
            goto done;
        }
        host_tensor *t = is_param ? &params[idx] : &args[idx];
        snprintf(r->name, sizeof r->name, "%s", G->nodes[G->outs[o]].name);
        r->max_abs = r->max_rel = 0;
        r->ok = true;
        int64_t n = host_tensor_numel(t);
        if (t->dtype != DT_F64 || host_tensor_numel(&outs[o]) != n) {
            snprintf(err, errlen, "gradient %s does not match its input", r->name);
            goto done;
        }
        for (int64_t i = 0; i < n; i++) {
            double x0 = host_tensor_get(t, i), fp, fm;
            host_tensor_set(t, i, x0 + eps);
            int e1 = eval_value(G, args, params, &fp, err, errlen);
            host_tensor_set(t, i, x0 - eps);
            int e2 = e1 ? e1 : eval_value(G, args, params, &fm, err, errlen);
            host_tensor_set(t, i, x0);
            if (e1 || e2)
                goto done;
            double num = (fp - fm) / (2 * eps), ana = host_tensor_get(&outs[o], i);
            double ae = fabs(num - ana), scale = fmax(fabs(num), fabs(ana));
            double re = scale > 0 ? ae / scale : 0;
            if (!(ae <= atol + rtol * fabs(num)))
                r->ok = false;
            if (ae > r->max_abs || isnan(ae))
                r->max_abs = ae;
            if (re > r->max_rel || isnan(re))
                r->max_rel = re;
        }
    }
    rc = 0;
done:
    for (int k = 0; args && k < na; k++)
        host_tensor_free(&args[k]);
    for (int k = 0; params && k < np; k++)
        host_tensor_free(&params[k]);
    for (int k = 0; outs && k < G->nouts; k++)
        host_tensor_free(&outs[k]);
    free(args);
    free(params);
    free(outs);
    return rc;
}
