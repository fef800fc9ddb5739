/* Grad exports: `export g = grad(F, wrt=[...])` and the differentiation that training steps
 * share. A call of a helper with a custom gradient, inlined while F is lowered, is recorded
 * as a region; pass_autodiff calls back here to lower the helper's grad block. */
#include "lower_internal.h"
#include <string.h>

/* ------------------------------------------------------------------ custom-gradient regions */

/* What the custom gradient of one inlined call needs later (pass_custom.data). */
typedef struct custom_rec {
    const ast_decl *fn;
    binding *scope;                /* the call's bindings (arguments, body) after its body */
    src_loc call_loc;
} custom_rec;

/* appends the tensor nodes of v (lists too) to keep */
static void keep_value(lower_ctx *c, value v, int **keep, int *n, int *cap)
{
    if (v.k == V_LIST) {
        for (int k = 0; k < v.n; k++)
            keep_value(c, v.items[k], keep, n, cap);
        return;
    }
    if (v.k != V_TENSOR)
        return;
    if (*n == *cap) {
        int *m = arena_alloc(c->ar, sizeof(int) * (size_t)*cap * 2);
        memcpy(m, *keep, sizeof(int) * (size_t)*n);
        *keep = m;
        *cap *= 2;
    }
    (*keep)[(*n)++] = v.id;
}

/* Records the region of an inlined call of fn (a helper with a custom gradient). */
value lw_record_custom(lower_ctx *c, const ast_decl *fn, value r, const value *args, int first, binding *inner,
                       src_loc call_loc)
{
    if (is_number(r) || (r.k == V_TENSOR && !ir_dtype_is_float(node(c, r.id)->dtype)))
        return r;   /* carries no gradient: nothing to record */
    if (r.k != V_TENSOR) {
        diag_error(call_loc, "'%s' has a custom gradient, so it must return one tensor, got %s", fn->name,
                   lw_vkind_name(r.k));
        diag_note(fn->grad_loc, "the custom gradient is here");
        return VERR;
    }
    if (fn->ngrad_params != 1) {
        diag_error(fn->grad_loc, "the custom gradient of '%s' takes one parameter, the cotangent of its result "
                                 "(grad (dy) { ... }), got %d", fn->name, fn->ngrad_params);
        return VERR;
    }
    if (r.id < first || node(c, r.id)->op == OP_param) {   /* `return x`, `return W`: a node of its own */
        src_loc saved = c->loc;
        c->loc = call_loc;
        r = lw_emit1(c, OP_copy, r.id);
        c->loc = saved;
        if (r.k == V_ERR)
            return VERR;
    }
    int *ids = arena_alloc(c->ar, sizeof(int) * (size_t)(fn->nparams ? fn->nparams : 1));
    for (int k = 0; k < fn->nparams; k++)
        ids[k] = args[k].k == V_TENSOR ? args[k].id : -1;
    int nkeep = 0, keepcap = 16;
    int *keep = arena_alloc(c->ar, sizeof(int) * (size_t)keepcap);
    for (binding *b = inner; b; b = b->next)
        keep_value(c, b->v, &keep, &nkeep, &keepcap);
    custom_rec *rec = arena_alloc(c->ar, sizeof *rec);
    rec->fn = fn;
    rec->scope = inner;
    rec->call_loc = call_loc;
    if (c->ncustom == c->customcap) {
        int cap = c->customcap ? 2 * c->customcap : 8;
        pass_custom *n = arena_alloc(c->ar, sizeof *n * (size_t)cap);
        if (c->ncustom)
            memcpy(n, c->customs, sizeof *n * (size_t)c->ncustom);
        c->customs = n;
        c->customcap = cap;
    }
    c->customs[c->ncustom++] = (pass_custom){.result = r.id, .nargs = fn->nparams, .args = ids, .nkeep = nkeep,
                                             .keep = keep, .data = rec};
    return r;
}

/* v with its tensors moved from F to the gradient function (map); false if one is missing */
static bool remap_value(lower_ctx *c, value *v, const int *map)
{
    if (v->k == V_TENSOR) {
        if (map[v->id] < 0)
            return false;
        v->id = map[v->id];
    } else if (v->k == V_LIST) {
        value *items = arena_alloc(c->ar, sizeof *items * (size_t)(v->n ? v->n : 1));
        for (int k = 0; k < v->n; k++) {
            items[k] = v->items[k];
            if (!remap_value(c, &items[k], map))
                return false;
        }
        v->items = items;
    }
    return true;
}

/* pass_custom_fn: lowers the grad block of one region into the gradient function dst. */
static int emit_custom_grad(void *ctx, const ir_func *src, ir_func *dst, const pass_custom *r, const int *map, int dy,
                            int *cts)
{
    lower_ctx *c = ctx;
    const custom_rec *rec = r->data;
    const ast_decl *fn = rec->fn;
    /* the lowering's state is reused: save what this changes */
    ir_func *sfn = c->fn;
    binding *sscope = c->scope;
    int *sparam = c->param_nodes, sdepth = c->depth, sin = c->in_custom;
    const ast_decl *sexport = c->grad_export;
    src_loc sloc = c->loc;
    const char *sbind = c->bind_name;
    int errors = diag_error_count();
    lw_enter_fn(c, dst);
    c->scope = NULL;
    c->grad_export = NULL;   /* helpers called by the block just run forward */
    c->in_custom = 1;
    c->bind_name = NULL;
    c->loc = fn->grad_loc;
    /* the call's bindings, oldest first, so the newest of each name wins */
    int nb = 0;
    for (binding *b = rec->scope; b; b = b->next)
        nb++;
    binding **bs = arena_alloc(c->ar, sizeof *bs * (size_t)(nb ? nb : 1));
    nb = 0;
    for (binding *b = rec->scope; b; b = b->next)
        bs[nb++] = b;
    bool ok = true;
    for (int k = nb - 1; k >= 0; k--) {
        value v = bs[k]->v;
        if (remap_value(c, &v, map))
            lw_bind_quiet(c, bs[k]->name, v);
    }
    lw_bind_quiet(c, fn->grad_params[0].name, vtensor(dy));
    c->depth = 0;   /* the block may call fn itself: not a recursion */
    exec_state st = {0};
    lw_exec_block(c, fn->grad_body, fn->ngrad_body, &st);
    if (diag_error_count() == errors && !st.returned) {
        diag_error(fn->grad_loc, "the custom gradient of '%s' ends without a return", fn->name);
        ok = false;
    }
    int n = st.ret.k == V_LIST && st.ret.tuple ? st.ret.n : 1;
    if (ok && diag_error_count() == errors && n != fn->nparams) {
        diag_error(st.ret_loc, "the custom gradient of '%s' returns %d cotangent%s; it needs %d, one per argument of "
                               "'%s' (none for an argument without a gradient)", fn->name, n, n == 1 ? "" : "s",
                   fn->nparams, fn->name);
        ok = false;
    }
    for (int k = 0; ok && diag_error_count() == errors && k < n; k++) {
        value v = n == 1 && !(st.ret.k == V_LIST && st.ret.tuple) ? st.ret : st.ret.items[k];
        int a = r->args[k];
        if (v.k == V_NONE || a < 0)
            continue;   /* no gradient: zeros; a number argument carries none */
        const ir_node *an = &src->nodes[a];
        char want[160], got[160];
        lw_type_str(want, sizeof want, an->dtype, an->rank, an->shape);
        if (is_number(v)) {
            c->loc = st.ret_loc;
            v = lw_to_tensor(c, v);
        }
        if (v.k != V_TENSOR) {
            diag_error(st.ret_loc, "cotangent %d of the custom gradient of '%s' (for argument '%s') should be a tensor "
                                   "%s or none, got %s", k, fn->name, fn->params[k].name, want, lw_vkind_name(v.k));
            ok = false;
            break;
        }
        const ir_node *g = &dst->nodes[v.id];
        if (g->dtype != an->dtype || g->rank != an->rank ||
            memcmp(g->shape, an->shape, sizeof(int64_t) * (size_t)an->rank) != 0) {
            lw_type_str(got, sizeof got, g->dtype, g->rank, g->shape);
            diag_error(st.ret_loc, "cotangent %d of the custom gradient of '%s' is %s, but argument '%s' is %s: they "
                                   "must match", k, fn->name, got, fn->params[k].name, want);
            ok = false;
            break;
        }
        cts[k] = v.id;
    }
    if (diag_error_count() > errors) {
        diag_note(rec->call_loc, "in the custom gradient of the call of '%s' here", fn->name);
        ok = false;
    }
    c->fn = sfn;
    c->scope = sscope;
    c->param_nodes = sparam;
    c->depth = sdepth;
    c->in_custom = sin;
    c->grad_export = sexport;
    c->loc = sloc;
    c->bind_name = sbind;
    return ok ? 0 : -1;
}

/* ------------------------------------------------------------------ grad exports */

/* did-you-mean among F's arguments and the params */
static void suggest_wrt(lower_ctx *c, const ast_decl *fn, const char *name, src_loc loc)
{
    const char *best = NULL;
    int bd = 3;
    for (int k = 0; k < fn->nparams; k++)
        if (lw_edit_distance(name, fn->params[k].name) < bd)
            bd = lw_edit_distance(name, fn->params[k].name), best = fn->params[k].name;
    for (int k = 0; k < c->mod->nparams; k++)
        if (lw_edit_distance(name, c->mod->params[k].name) < bd)
            bd = lw_edit_distance(name, c->mod->params[k].name), best = c->mod->params[k].name;
    if (best)
        diag_note(loc, "did you mean '%s'?", best);
}

/* `export g = grad(F[, wrt=[...]])`: F's body lowered into a scratch function, differentiated
 * by pass_autodiff into the export g, the scratch function dropped. */
void lw_grad_export(lower_ctx *c, const ast_decl *d, const ast_decl *fn)
{
    const ast_expr *v = d->value;
    const ast_expr *wrtl = NULL;
    for (int k = 1; k < v->nargs; k++) {
        if (!v->args[k].name) {
            diag_error(v->args[k].value->loc, "grad() takes the function and wrt=[...] only");
            return;
        }
        if (strcmp(v->args[k].name, "wrt") != 0) {
            diag_error(v->args[k].loc, "grad() has no option '%s'; it takes wrt=[names]", v->args[k].name);
            return;
        }
        wrtl = v->args[k].value;
    }
    bool ok = true;
    /* the wrt list: argument or param names */
    pass_wrt wrt[128];
    int nwrt = 0;
    const char *wname[128];
    src_loc wloc[128];
    if (wrtl) {
        const ast_expr *const *items = (const ast_expr *const *)&wrtl;
        int n = 1;
        if (wrtl->kind == AST_LIST) {
            items = (const ast_expr *const *)wrtl->items;
            n = wrtl->nitems;
        }
        if (n == 0 || n > 128) {
            diag_error(wrtl->loc, "wrt= needs a list of 1 to 128 argument or param names");
            return;
        }
        for (int k = 0; k < n; k++) {
            const ast_expr *e = items[k];
            if (e->kind != AST_NAME) {
                diag_error(e->loc, "wrt= takes names of arguments of '%s' or params", fn->name);
                ok = false;
                continue;
            }
            pass_wrt w = {.is_param = false, .index = -1};
            for (int j = 0; j < fn->nparams; j++)
                if (strcmp(fn->params[j].name, e->str) == 0)
                    w.index = j;
            global *g = w.index < 0 ? lw_find_global(c, e->str) : NULL;
            if (g && g->kind == DECL_PARAM)
                w = (pass_wrt){.is_param = true, .index = g->param_index};
            if (w.index < 0) {
                diag_error(e->loc, "grad(%s, wrt=...): '%s' is neither an argument of '%s' nor a param", fn->name, e->str,
                           fn->name);
                suggest_wrt(c, fn, e->str, e->loc);
                ok = false;
                continue;
            }
            for (int j = 0; j < nwrt; j++)
                if (strcmp(wname[j], e->str) == 0) {
                    diag_error(e->loc, "'%s' appears twice in wrt=", e->str);
                    ok = false;
                }
            wname[nwrt] = e->str;
            wloc[nwrt] = e->loc;
            wrt[nwrt++] = w;
        }
    } else {
        if (c->mod->nparams == 0) {
            diag_error(v->loc, "grad(%s) without wrt= differentiates by every param, but there are none; name the "
                               "arguments: grad(%s, wrt=[%s])", fn->name, fn->name, fn->nparams ? fn->params[0].name : "x");
            return;
        }
        if (c->mod->nparams > 128) {
            diag_error(v->loc, "grad() supports at most 128 gradients");
            return;
        }
        for (int k = 0; k < c->mod->nparams; k++) {
            wname[nwrt] = c->mod->params[k].name;
            wloc[nwrt] = v->loc;
            wrt[nwrt++] = (pass_wrt){.is_param = true, .index = k};
        }
    }
    if (!ok)
        return;
    lw_differentiate(c, d, fn, nwrt, wrt, wname, wloc);
}

/* The part of grad(F, wrt) that sgd/adam/adamw share: F's body lowered into a scratch
 * function, checked (typed arguments, float wrt entries, a scalar float result),
 * differentiated by pass_autodiff into the function d->name, the scratch dropped.
 * Returns the new function (F's value, then one gradient per wrt entry) or NULL. */
ir_func *lw_differentiate(lower_ctx *c, const ast_decl *d, const ast_decl *fn, int nwrt, const pass_wrt *wrt,
                          const char *const *wname, const src_loc *wloc)
{
    const ast_expr *v = d->value;
    bool ok = true;
    for (int k = 0; k < fn->nparams; k++)
        if (!fn->params[k].type) {
            diag_error(fn->params[k].loc, "%s(%s) needs every argument of '%s' typed: '%s' has no type (e.g. %s: f32[B, 784])",
                       v->str, fn->name, fn->name, fn->params[k].name, fn->params[k].name);
            diag_note(v->loc, "differentiated here");
            ok = false;
        }
    if (!ok)
        return NULL;
    /* F's body into a scratch function */
    int nf = c->mod->nfuncs, errors = diag_error_count();
    c->grad_export = d;
    c->ncustom = 0;
    c->in_custom = 0;
    c->ncheckpoints = 0;
    c->in_checkpoint = 0;
    lw_export_fn(c, fn);
    c->grad_export = NULL;
    int ncustom = c->ncustom;
    const pass_custom *customs = c->customs;
    c->ncustom = 0;
    ir_func *F = c->mod->nfuncs > nf ? c->mod->funcs[c->mod->nfuncs - 1] : NULL;
    if (diag_error_count() > errors || !F) {
        if (F)
            pass_drop_func(c->mod, F);
        diag_note(v->loc, "in %s(%s) here", v->str, fn->name);
        return NULL;
    }
    pass_drop_func(c->mod, F);
    /* argument types are known now: integer wrt entries carry no gradient */
    for (int k = 0; k < nwrt; k++) {
        ir_dtype dt = wrt[k].is_param ? c->mod->params[wrt[k].index].dtype : F->args[wrt[k].index].dtype;
        if (!ir_dtype_is_float(dt)) {
            diag_error(wloc[k], "gradients through integer values are not defined: %s '%s' is %s; only floating-point "
                                "arguments and params have gradients", wrt[k].is_param ? "param" : "argument", wname[k],
                       ir_dtype_name(dt));
            ok = false;
        }
    }
    if (!ok)
        return NULL;
    const ir_node *r = F->nouts == 1 ? &F->nodes[F->outs[0]] : NULL;
    if (!r || r->rank != 0 || !ir_dtype_is_float(r->dtype)) {
        char ts[160] = "several values";
        if (r)
            lw_type_str(ts, sizeof ts, r->dtype, r->rank, r->shape);
        if (r && r->rank == 0)
            diag_error(v->loc, "%s(%s) needs a floating-point scalar result; %s returns %s: cast it with %s.to(f32)",
                       v->str, fn->name, fn->name, ts, fn->name);
        else
            diag_error(v->loc, "%s(%s) needs a scalar result; %s returns %s: reduce it with sum(...) or mean(...)",
                       v->str, fn->name, fn->name, ts);
        return NULL;
    }
    bool indep[128];
    int eline, ecol;
    char err[512];
    int errors2 = diag_error_count();
    pass_regions rg = {.ncustom = ncustom, .customs = customs, .emit = emit_custom_grad, .ctx = c,
                       .ncheckpoints = c->ncheckpoints, .checkpoints = c->checkpoints};
    c->ncheckpoints = 0;
    ir_func *G = pass_autodiff_regions(F, d->name, nwrt, wrt, indep, &rg, &eline, &ecol, err, sizeof err);
    if (!G) {
        if (diag_error_count() == errors2)   /* a custom gradient reports its own errors */
            diag_error(src_loc_make(c->file->file, eline, ecol), "%s", err);
        diag_note(v->loc, "while differentiating '%s' for export '%s'", fn->name, d->name);
        return NULL;
    }
    G->line = d->loc.line;
    G->col = d->loc.col;
    for (int k = 0; k < nwrt; k++)
        if (indep[k])
            diag_warning(wloc[k], "the result of '%s' does not depend on %s '%s': its gradient is zeros", fn->name,
                         wrt[k].is_param ? "param" : "argument", wname[k]);
    return G;
}
