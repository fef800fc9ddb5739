/* Training-step exports: `export step = sgd|adam|adamw(F, ...)`, the gradient of F by its
 * params followed by torch.optim's update rules as IR. */
#include "lower_internal.h"
#include <math.h>
#include <string.h>

/* Options of sgd/adam/adamw (spec 3.7): the numeric ones may also come positionally, in
 * this order, after the function. */
enum { O_LR, O_MOMENTUM, O_WD, O_NESTEROV, O_BETA1, O_BETA2, O_EPS, O_PARAMS, O_ACCUMULATE, O_PRECISION, O_COUNT };
static const char *const opt_names[O_COUNT] = {"lr", "momentum", "weight_decay", "nesterov", "beta1", "beta2", "eps",
                                               "params", "accumulate", "precision"};
typedef enum { OPT_SGD, OPT_ADAM, OPT_ADAMW } opt_kind;
/* per optimizer: its options in positional order, -1 ended */
static const int opt_order[3][9] = {
    {O_LR, O_MOMENTUM, O_WD, O_NESTEROV, O_PARAMS, O_ACCUMULATE, O_PRECISION, -1},
    {O_LR, O_BETA1, O_BETA2, O_EPS, O_WD, O_PARAMS, O_ACCUMULATE, O_PRECISION, -1},
    {O_LR, O_BETA1, O_BETA2, O_EPS, O_WD, O_PARAMS, O_ACCUMULATE, O_PRECISION, -1},
};
static const int opt_npositional[3] = {4, 5, 5};

typedef struct step_ctx {
    lower_ctx *c;
    const ast_decl *d;
    int apply;           /* bool scalar: this call applies the update (accumulate=N), or -1: always */
} step_ctx;

static int sval(value v) { return v.k == V_TENSOR ? v.id : -1; }

/* A rank-0 constant of dtype dt. */
static int sconst(step_ctx *S, double v, ir_dtype dt) { return sval(lw_emit_const(S->c, v, dt)); }

/* op(a, b), a rank-0 operand expanded to the other's shape (both of one dtype). */
static int sbin(step_ctx *S, ir_opcode op, int a, int b)
{
    if (a < 0 || b < 0)
        return -1;
    const ir_node *na = node(S->c, a), *nb = node(S->c, b);
    if (na->rank == 0 && nb->rank > 0)
        a = sval(lw_emit_expand(S->c, a, nb->rank, nb->shape));
    else if (nb->rank == 0 && na->rank > 0)
        b = sval(lw_emit_expand(S->c, b, na->rank, na->shape));
    if (a < 0 || b < 0)
        return -1;
    int in[2] = {a, b};
    ir_proto p = {.op = op, .nin = 2, .in = in};
    return sval(lw_emit(S->c, &p));
}

static int sun(step_ctx *S, ir_opcode op, int a) { return a < 0 ? -1 : sval(lw_emit1(S->c, op, a)); }

/* With accumulate=N: the new value only on the calls that apply the update, else the old. */
static int gated(step_ctx *S, int upd, int old)
{
    if (S->apply < 0 || upd < 0 || old < 0)
        return upd;
    const ir_node *n = node(S->c, upd);
    int cond = n->rank ? sval(lw_emit_expand(S->c, S->apply, n->rank, n->shape)) : S->apply;
    if (cond < 0)
        return -1;
    int in[3] = {cond, upd, old};
    ir_proto p = {.op = OP_where, .nin = 3, .in = in};
    return sval(lw_emit(S->c, &p));
}

/* A new module state `<export>.<param>.<what>` (zeros at create) and its `state` leaf. */
static int new_state(step_ctx *S, const char *pname, const char *what, ir_dtype dt, int rank, const int64_t *shape,
                     int *index)
{
    lower_ctx *c = S->c;
    ir_state st = {.dtype = dt, .rank = rank, .line = S->d->loc.line, .col = S->d->loc.col};
    if (rank > 0)   /* scalars pass shape NULL */
        memcpy(st.shape, shape, sizeof(int64_t) * (size_t)rank);
    st.name = pname ? arena_printf(c->ar, "%s.%s.%s", S->d->name, pname, what) : arena_printf(c->ar, "%s.%s", S->d->name, what);
    *index = ir_add_state(c->mod, &st);
    ir_proto p = {.op = OP_state, .i = {*index}, .name = st.name};
    return sval(lw_emit(c, &p));
}

static void name_node(step_ctx *S, int id, const char *fmt, const char *a, const char *b)
{
    if (id >= 0)
        node(S->c, id)->name = arena_printf(S->c->ar, fmt, a, b);
}

/* Reads the options of sgd/adam/adamw; false after an error. opt[] holds numbers, params the
 * list expression (or NULL: all float params). */
static bool step_options(lower_ctx *c, const ast_expr *v, opt_kind kind, double *opt, bool *given,
                         const ast_expr **params)
{
    static const double defaults[3][O_COUNT] = {
        /* lr, momentum, wd, nesterov, beta1, beta2, eps, params, accumulate, precision */
        {0, 0, 0, 0, 0, 0, 0, 0, 1, 0},
        {1e-3, 0, 0, 0, 0.9, 0.999, 1e-8, 0, 1, 0},
        {1e-3, 0, 1e-2, 0, 0.9, 0.999, 1e-8, 0, 1, 0},
    };
    memcpy(opt, defaults[kind], sizeof defaults[kind]);
    const ast_expr *where[O_COUNT] = {0};
    bool ok = true;
    *params = NULL;
    int npos = 0;
    for (int k = 1; k < v->nargs; k++) {
        const ast_arg *a = &v->args[k];
        int o = -1;
        if (!a->name) {
            if (npos >= opt_npositional[kind]) {
                diag_error(a->value->loc, "%s() takes at most %d options by position (%s, ...); name the others, e.g. "
                                          "accumulate=4", v->str, opt_npositional[kind], opt_names[opt_order[kind][0]]);
                ok = false;
                continue;
            }
            o = opt_order[kind][npos++];
        } else {
            for (int j = 0; opt_order[kind][j] >= 0 && o < 0; j++)
                if (strcmp(a->name, opt_names[opt_order[kind][j]]) == 0)
                    o = opt_order[kind][j];
            if (o < 0) {
                diag_error(a->loc, "%s() has no option '%s'", v->str, a->name);
                const char *best = NULL;
                int bd = 3;
                for (int j = 0; opt_order[kind][j] >= 0; j++)
                    if (lw_edit_distance(a->name, opt_names[opt_order[kind][j]]) < bd)
                        bd = lw_edit_distance(a->name, opt_names[opt_order[kind][j]]),
                        best = opt_names[opt_order[kind][j]];
                if (best)
                    diag_note(a->loc, "did you mean '%s'?", best);
                else {
                    char all[200] = "";
                    size_t n = 0;
                    for (int j = 0; opt_order[kind][j] >= 0 && n < sizeof all; j++)
                        n += (size_t)snprintf(all + n, sizeof all - n, "%s%s", j ? ", " : "", opt_names[opt_order[kind][j]]);
                    diag_note(a->loc, "%s() takes: %s", v->str, all);
                }
                ok = false;
                continue;
            }
        }
        if (where[o]) {
            diag_error(a->name ? a->loc : a->value->loc, "%s() option '%s' is given twice", v->str, opt_names[o]);
            ok = false;
            continue;
        }
        where[o] = a->value;
        given[o] = true;
        if (o == O_PRECISION) {
            diag_error(a->name ? a->loc : a->value->loc, "precision= comes with mixed precision, not in this version");
            ok = false;
            continue;
        }
        if (o == O_PARAMS) {
            *params = a->value;
            continue;
        }
        value x = lw_const_expr(c, a->value);
        if (x.k == V_ERR) {
            ok = false;
            continue;
        }
        if (o == O_NESTEROV && x.k != V_BOOL) {
            diag_error(a->value->loc, "nesterov= takes true or false");
            ok = false;
            continue;
        }
        if (o == O_ACCUMULATE && (x.k != V_INT || x.i < 1 || x.i > (1 << 30))) {
            diag_error(a->value->loc, "accumulate= takes a whole number of calls >= 1 (1: update on every call)");
            ok = false;
            continue;
        }
        if (o != O_NESTEROV && x.k == V_BOOL) {
            diag_error(a->value->loc, "%s= takes a number, got %s", opt_names[o], x.i ? "true" : "false");
            ok = false;
            continue;
        }
        opt[o] = num(x);
    }
    if (!ok)
        return false;
    /* torch.optim's own checks */
    const src_loc at = v->loc;
    if (kind == OPT_SGD && !given[O_LR]) {
        diag_error(at, "sgd() needs a learning rate: sgd(%s, lr=0.1)", v->args[0].value->str);
        return false;
    }
    struct { int o; double lo, hi; bool hi_open; } ranges[] = {
        {O_LR, 0, INFINITY, false}, {O_MOMENTUM, 0, INFINITY, false}, {O_WD, 0, INFINITY, false},
        {O_BETA1, 0, 1, true}, {O_BETA2, 0, 1, true}, {O_EPS, 0, INFINITY, false},
    };
    for (size_t k = 0; k < sizeof ranges / sizeof *ranges; k++) {
        double x = opt[ranges[k].o];
        if (!(x >= ranges[k].lo) || (ranges[k].hi_open ? x >= ranges[k].hi : x > ranges[k].hi) || isinf(x)) {
            diag_error(where[ranges[k].o] ? where[ranges[k].o]->loc : at, "%s() needs %s in %s, got %g", v->str,
                       opt_names[ranges[k].o], ranges[k].hi_open ? "[0, 1)" : "[0, inf)", x);
            ok = false;
        }
    }
    if (kind == OPT_SGD && opt[O_NESTEROV] != 0 && opt[O_MOMENTUM] <= 0) {
        diag_error(where[O_NESTEROV]->loc, "nesterov=true needs a momentum > 0 (torch.optim.SGD says the same)");
        ok = false;
    }
    return ok;
}

/* The params a step trains: params=[names] or every floating-point param. */
static int step_params(lower_ctx *c, const ast_expr *v, const ast_decl *fn, const ast_expr *list, pass_wrt *wrt,
                       const char **wname, src_loc *wloc)
{
    int n = 0;
    if (!list) {
        for (int k = 0; k < c->mod->nparams && n < 128; k++)
            if (ir_dtype_is_float(c->mod->params[k].dtype)) {
                wname[n] = c->mod->params[k].name;
                wloc[n] = v->loc;
                wrt[n++] = (pass_wrt){.is_param = true, .index = k};
            }
        if (n == 0)
            diag_error(v->loc, "%s(%s) has nothing to train: the module declares no floating-point params", v->str,
                       fn->name);
        else if (c->mod->nparams > 128)
            diag_error(v->loc, "a training step trains at most 128 params; list them with params=[...]"), n = 0;
        return n;
    }
    const ast_expr *const *items = (const ast_expr *const *)&list;
    int cnt = 1;
    if (list->kind == AST_LIST) {
        items = (const ast_expr *const *)list->items;
        cnt = list->nitems;
    }
    if (cnt == 0 || cnt > 128) {
        diag_error(list->loc, "params= needs a list of 1 to 128 param names");
        return 0;
    }
    bool ok = true;
    for (int k = 0; k < cnt; k++) {
        const ast_expr *e = items[k];
        global *g = e->kind == AST_NAME ? lw_find_global(c, e->str) : NULL;
        if (!g || g->kind != DECL_PARAM) {
            if (e->kind == AST_NAME)
                diag_error(e->loc, "params= names params to train; '%s' is not a param", e->str);
            else
                diag_error(e->loc, "params= takes param names: params=[W1, b1]");
            if (e->kind == AST_NAME) {
                const char *best = NULL;
                int bd = 3;
                for (int j = 0; j < c->mod->nparams; j++)
                    if (lw_edit_distance(e->str, c->mod->params[j].name) < bd)
                        bd = lw_edit_distance(e->str, c->mod->params[j].name), best = c->mod->params[j].name;
                if (best)
                    diag_note(e->loc, "did you mean '%s'?", best);
            }
            ok = false;
            continue;
        }
        for (int j = 0; j < n; j++)
            if (wrt[j].index == g->param_index) {
                diag_error(e->loc, "'%s' appears twice in params=", e->str);
                ok = false;
            }
        wname[n] = e->str;
        wloc[n] = e->loc;
        wrt[n++] = (pass_wrt){.is_param = true, .index = g->param_index};
    }
    return ok ? n : 0;
}

/* `export step = sgd|adam|adamw(F, ...)`: the gradient function of F by its params
 * (pass_autodiff), then the update rules of torch.optim (docs/training.md) as IR: F's
 * value is the one result; the new params and optimizer states are update outputs. */
void lw_step_export(lower_ctx *c, const ast_decl *d, const ast_decl *fn)
{
    const ast_expr *v = d->value;
    opt_kind kind = strcmp(v->str, "sgd") == 0 ? OPT_SGD : strcmp(v->str, "adam") == 0 ? OPT_ADAM : OPT_ADAMW;
    double opt[O_COUNT];
    bool given[O_COUNT] = {0};
    const ast_expr *plist;
    if (!step_options(c, v, kind, opt, given, &plist))
        return;
    pass_wrt wrt[128];
    const char *wname[128];
    src_loc wloc[128];
    int np = step_params(c, v, fn, plist, wrt, wname, wloc);
    if (np == 0)
        return;
    ir_func *G = lw_differentiate(c, d, fn, np, wrt, wname, wloc);
    if (!G)
        return;
    /* G returns F's value, then one gradient per param: keep them, rebuild the outputs */
    int loss = G->outs[0];
    int grads[128];
    for (int k = 0; k < np; k++)
        grads[k] = G->outs[1 + k];
    G->nouts = 0;
    G->outs = NULL;
    G->updates = NULL;
    ir_add_output(G, loss);

    lw_enter_fn(c, G);
    c->loc = d->loc;
    step_ctx S = {.c = c, .d = d, .apply = -1};
    int errors = diag_error_count();
    int64_t N = (int64_t)opt[O_ACCUMULATE];
    int upd_state[3 * 128 + 4], upd_state_val[3 * 128 + 4], nst = 0;
#define PUSH_STATE(index, val) (upd_state[nst] = (index), upd_state_val[nst++] = (val))
    if (N > 1) {   /* a call counter: the update applies when it reaches N, then restarts */
        int idx, calls = new_state(&S, NULL, "calls", DT_I64, 0, NULL, &idx);
        int c1 = sbin(&S, OP_add, calls, sconst(&S, 1, DT_I64));
        S.apply = sbin(&S, OP_eq, c1, sconst(&S, (double)N, DT_I64));
        name_node(&S, S.apply, "%s.apply%s", d->name, "");
        int in[3] = {S.apply, sconst(&S, 0, DT_I64), c1};
        ir_proto w = {.op = OP_where, .nin = 3, .in = in, .name = arena_printf(c->ar, "%s.calls", d->name)};
        PUSH_STATE(idx, sval(lw_emit(c, &w)));
    }
    /* Adam's step count and bias corrections, as f64 scalars like torch's Python floats */
    int neg_step_size = -1, bc2_sqrt = -1, t_idx = -1, t_new = -1;
    if (kind != OPT_SGD) {
        int t = new_state(&S, NULL, "step", DT_I64, 0, NULL, &t_idx);
        int t1 = sbin(&S, OP_add, t, sconst(&S, 1, DT_I64));
        t_new = gated(&S, t1, t);
        name_node(&S, t_new, "%s.step%s", d->name, "");
        int tf = sval(lw_emit_cast(c, t1, DT_F64));
        int bc1 = sbin(&S, OP_sub, sconst(&S, 1, DT_F64), sbin(&S, OP_pow, sconst(&S, opt[O_BETA1], DT_F64), tf));
        int bc2 = sbin(&S, OP_sub, sconst(&S, 1, DT_F64), sbin(&S, OP_pow, sconst(&S, opt[O_BETA2], DT_F64), tf));
        neg_step_size = sun(&S, OP_neg, sbin(&S, OP_div, sconst(&S, opt[O_LR], DT_F64), bc1));
        bc2_sqrt = sun(&S, OP_sqrt, bc2);
        name_node(&S, neg_step_size, "%s.neg_step_size%s", d->name, "");
        name_node(&S, bc2_sqrt, "%s.bias_correction2_sqrt%s", d->name, "");
    }
    int pnew[128];
    for (int k = 0; k < np && diag_error_count() == errors; k++) {
        const ir_param *P = &c->mod->params[wrt[k].index];
        const char *pn = P->name;
        ir_dtype dt = P->dtype;
        global pg = {.name = pn, .loc = d->loc, .kind = DECL_PARAM, .param_index = wrt[k].index};
        int p = sval(lw_param_value(c, &pg));
        c->loc = d->loc;
        int g = grads[k];
        if (N > 1) {   /* the mean of N gradients: acc + g/N, zeroed when applied */
            int idx, acc = new_state(&S, pn, "grad_acc", dt, P->rank, P->shape, &idx);
            g = sbin(&S, OP_add, acc, sbin(&S, OP_div, g, sconst(&S, (double)N, dt)));
            name_node(&S, g, "%s.grad_mean%s", pn, "");
            int zero = sval(lw_emit_expand(c, sconst(&S, 0, dt), P->rank, P->shape));
            int acc_new = gated(&S, zero, g);
            name_node(&S, acc_new, "%s.%s.grad_acc", d->name, pn);
            PUSH_STATE(idx, acc_new);
        }
        if (kind == OPT_SGD) {
            if (opt[O_WD] != 0)   /* d_p = d_p.add(param, alpha=weight_decay) */
                g = sbin(&S, OP_add, g, sbin(&S, OP_mul, sconst(&S, opt[O_WD], dt), p));
            if (opt[O_MOMENTUM] != 0) {   /* buf = buf * momentum + d_p (buf starts at zero) */
                int idx, buf = new_state(&S, pn, "momentum_buffer", dt, P->rank, P->shape, &idx);
                int b = sbin(&S, OP_add, sbin(&S, OP_mul, buf, sconst(&S, opt[O_MOMENTUM], dt)), g);
                name_node(&S, b, "%s.%s.momentum_buffer", d->name, pn);
                PUSH_STATE(idx, gated(&S, b, buf));
                g = opt[O_NESTEROV] != 0 ? sbin(&S, OP_add, g, sbin(&S, OP_mul, sconst(&S, opt[O_MOMENTUM], dt), b)) : b;
            }
            /* param.add_(d_p, alpha=-lr) */
            pnew[k] = sbin(&S, OP_add, p, sbin(&S, OP_mul, sconst(&S, -opt[O_LR], dt), g));
        } else {
            int base = p;
            if (kind == OPT_ADAM && opt[O_WD] != 0)   /* grad = grad.add(param, alpha=weight_decay) */
                g = sbin(&S, OP_add, g, sbin(&S, OP_mul, sconst(&S, opt[O_WD], dt), p));
            if (kind == OPT_ADAMW && opt[O_WD] != 0)   /* param.mul_(1 - lr * weight_decay) */
                base = sbin(&S, OP_mul, p, sconst(&S, 1 - opt[O_LR] * opt[O_WD], dt));
            int im, iv;
            int m = new_state(&S, pn, "exp_avg", dt, P->rank, P->shape, &im);
            int vv = new_state(&S, pn, "exp_avg_sq", dt, P->rank, P->shape, &iv);
            /* exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1) */
            int m1 = sbin(&S, OP_add, sbin(&S, OP_mul, m, sconst(&S, opt[O_BETA1], dt)),
                          sbin(&S, OP_mul, sconst(&S, 1 - opt[O_BETA1], dt), g));
            /* exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2) */
            int v1 = sbin(&S, OP_add, sbin(&S, OP_mul, vv, sconst(&S, opt[O_BETA2], dt)),
                          sbin(&S, OP_mul, sbin(&S, OP_mul, sconst(&S, 1 - opt[O_BETA2], dt), g), g));
            name_node(&S, m1, "%s.%s.exp_avg", d->name, pn);
            name_node(&S, v1, "%s.%s.exp_avg_sq", d->name, pn);
            /* denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps) */
            int denom = sbin(&S, OP_add, sbin(&S, OP_div, sun(&S, OP_sqrt, v1), sval(lw_emit_cast(c, bc2_sqrt, dt))),
                             sconst(&S, opt[O_EPS], dt));
            /* param.addcdiv_(exp_avg, denom, value=-step_size) */
            pnew[k] = sbin(&S, OP_add, base, sbin(&S, OP_mul, sval(lw_emit_cast(c, neg_step_size, dt)),
                                                  sbin(&S, OP_div, m1, denom)));
            PUSH_STATE(im, gated(&S, m1, m));
            PUSH_STATE(iv, gated(&S, v1, vv));
        }
        pnew[k] = gated(&S, pnew[k], p);
        name_node(&S, pnew[k], "%s.%s", d->name, pn);
    }
    if (t_idx >= 0)
        PUSH_STATE(t_idx, t_new);
#undef PUSH_STATE
    c->fn = NULL;
    if (diag_error_count() > errors)
        return;
    for (int k = 0; k < np; k++) {
        if (pnew[k] < 0)
            return;
        ir_add_update(G, pnew[k], IR_UPD_PARAM, wrt[k].index);
    }
    for (int k = 0; k < nst; k++) {
        if (upd_state_val[k] < 0)
            return;
        if (!G->nodes[upd_state_val[k]].name)   /* dumps name each new value after its state */
            G->nodes[upd_state_val[k]].name = c->mod->states[upd_state[k]].name;
        ir_add_update(G, upd_state_val[k], IR_UPD_STATE, upd_state[k]);
    }
}
