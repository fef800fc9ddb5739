/* Building IR: the op table, modules, functions, and ir_append, which runs an op's
 * shape rule (ir/shape.c) so that every node is born with its exact layout. */
#include "ir.h"
#include "shape.h"
#include <string.h>

const ir_opinfo ir_ops[OP_COUNT] = {
#define OP(id, name, nin, flags, rule, attrs, grad) {name, nin, flags, attrs},
#include "ops.def"
#undef OP
};

bool ir_op_parse(const char *name, ir_opcode *out)
{
    for (int i = 0; i < OP_COUNT; i++)
        if (strcmp(ir_ops[i].name, name) == 0) {
            *out = (ir_opcode)i;
            return true;
        }
    return false;
}

/* "list:shape f0:value" (ops.def) -> descriptors; returns the count (malformed entries skipped).
 * The printer, the parser and the verifier all read attributes through this. */
int ir_op_attrs(ir_opcode op, ir_attr_desc *out, int max)
{
    const char *sig = (unsigned)op < OP_COUNT ? ir_ops[op].attrs : NULL;
    int n = 0;
    const char *p = sig ? sig : "";
    while (*p && n < max) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        const char *colon = strchr(p, ':');
        const char *end = strchr(p, ' ');
        if (!end)
            end = p + strlen(p);
        if (!colon || colon > end)
            break;
        ir_attr_desc d = {IR_ATTR_INT, 0, ""};
        size_t fl = (size_t)(colon - p);
        if (fl == 4 && strncmp(p, "list", 4) == 0)
            d.kind = IR_ATTR_LIST;
        else if (fl == 1 && *p == 's')
            d.kind = IR_ATTR_STR;
        else if (fl == 2 && p[0] == 'i' && p[1] >= '0' && p[1] <= '3')
            d.kind = IR_ATTR_INT, d.slot = p[1] - '0';
        else if (fl == 2 && p[0] == 'f' && p[1] >= '0' && p[1] <= '1')
            d.kind = IR_ATTR_FLOAT, d.slot = p[1] - '0';
        else {
            p = end;
            continue;
        }
        size_t nl = (size_t)(end - colon - 1);
        if (nl >= sizeof d.name)
            nl = sizeof d.name - 1;
        memcpy(d.name, colon + 1, nl);
        d.name[nl] = 0;
        out[n++] = d;
        p = end;
    }
    return n;
}

static const char *const init_names[] = {"zeros", "ones", "full", "normal", "uniform", "kaiming_uniform"};

const char *ir_init_name(ir_init_kind k)
{
    return (unsigned)k < sizeof init_names / sizeof *init_names ? init_names[k] : "?";
}

ir_module *ir_module_new(arena *ar, const char *name)
{
    ir_module *m = arena_alloc(ar, sizeof *m);
    m->ar = ar;
    m->name = arena_strdup(ar, name ? name : "module");
    return m;
}

int ir_add_param(ir_module *m, const ir_param *p)
{
    ir_param c = *p;
    c.name = arena_strdup(m->ar, p->name);
    ARR_PUSH(m->ar, m->params, m->nparams, m->pcap, c);
    return m->nparams - 1;
}

int ir_add_state(ir_module *m, const ir_state *st)
{
    ir_state c = *st;
    c.name = arena_strdup(m->ar, st->name);
    ARR_PUSH(m->ar, m->states, m->nstates, m->scap, c);
    return m->nstates - 1;
}

ir_func *ir_func_new(ir_module *m, const char *name, int nargs, const ir_arg *args)
{
    ir_func *f = arena_alloc(m->ar, sizeof *f);
    f->name = arena_strdup(m->ar, name);
    f->mod = m;
    f->nargs = nargs;
    f->args = arena_alloc(m->ar, sizeof(ir_arg) * (size_t)(nargs ? nargs : 1));
    for (int i = 0; i < nargs; i++) {
        f->args[i] = args[i];
        f->args[i].name = arena_strdup(m->ar, args[i].name ? args[i].name : "arg");
    }
    ARR_PUSH(m->ar, m->funcs, m->nfuncs, m->fcap, f);
    return f;
}

ir_func *ir_module_find(const ir_module *m, const char *name)
{
    for (int i = 0; i < m->nfuncs; i++)
        if (strcmp(m->funcs[i]->name, name) == 0)
            return m->funcs[i];
    return NULL;
}

ir_node *ir_node_at(ir_func *f, int id)
{
    return id >= 0 && id < f->nnodes ? &f->nodes[id] : NULL;
}

void ir_add_output(ir_func *f, int id)
{
    int cap = f->nouts;   /* outputs are few: grow one by one */
    f->outs = arena_realloc(f->mod->ar, f->outs, sizeof(int) * (size_t)cap, sizeof(int) * (size_t)(cap + 1));
    if (f->updates) {
        f->updates = arena_realloc(f->mod->ar, f->updates, sizeof(ir_update) * (size_t)cap,
                                   sizeof(ir_update) * (size_t)(cap + 1));
        f->updates[cap] = (ir_update){IR_UPD_NONE, 0};
    }
    f->outs[f->nouts++] = id;
}

void ir_add_update(ir_func *f, int id, ir_update_kind kind, int index)
{
    int n = f->nouts;
    if (!f->updates) {   /* first update: every earlier output is a plain result */
        f->updates = arena_alloc(f->mod->ar, sizeof(ir_update) * (size_t)(n + 1));
        for (int k = 0; k < n; k++)
            f->updates[k] = (ir_update){IR_UPD_NONE, 0};
    }
    ir_add_output(f, id);
    f->updates[n] = (ir_update){kind, index};
}

int ir_num_results(const ir_func *f)
{
    int n = 0;
    while (n < f->nouts && (!f->updates || f->updates[n].kind == IR_UPD_NONE))
        n++;
    return n;
}

int ir_append(ir_func *f, const ir_proto *p, char *err, size_t errlen)
{
    if ((unsigned)p->op >= OP_COUNT) {
        snprintf(err, errlen, "unknown op %d", (int)p->op);
        return -1;
    }
    const ir_opinfo *info = &ir_ops[p->op];
    if (info->nin >= 0 ? p->nin != info->nin : p->nin < 1) {
        if (info->nin < 0)
            snprintf(err, errlen, "'%s' takes at least 1 input, got %d", info->name, p->nin);
        else
            snprintf(err, errlen, "'%s' takes %d input%s, got %d", info->name, info->nin, info->nin == 1 ? "" : "s", p->nin);
        return -1;
    }
    for (int k = 0; k < p->nin; k++)
        if (p->in[k] < 0 || p->in[k] >= f->nnodes) {
            snprintf(err, errlen, "'%s' input %d refers to %%%d, which is not defined before it",
                     info->name, k, p->in[k]);
            return -1;
        }
    if (p->nlist < 0 || p->nlist > IR_MAX_RANK) {
        snprintf(err, errlen, "'%s': attribute list of %d entries (at most %d)", info->name, p->nlist, IR_MAX_RANK);
        return -1;
    }
    ir_node n;
    memset(&n, 0, sizeof n);
    n.op = p->op;
    n.dtype = p->dtype;
    n.nin = p->nin;
    n.in = arena_alloc(f->mod->ar, sizeof(int) * (size_t)(p->nin ? p->nin : 1));
    if (p->nin)
        memcpy(n.in, p->in, sizeof(int) * (size_t)p->nin);
    n.nlist = p->nlist;
    memcpy(n.list, p->list, sizeof n.list);
    memcpy(n.i, p->i, sizeof n.i);
    memcpy(n.f, p->f, sizeof n.f);
    n.str = p->str ? arena_strdup(f->mod->ar, p->str) : NULL;
    n.name = p->name ? arena_strdup(f->mod->ar, p->name) : NULL;
    n.line = p->line;
    n.col = p->col;
    n.view_of = -1;
    int id = f->nnodes;
    n.storage = id;
    if (!ir_shape_rule(f, &n, err, errlen))
        return -1;
    int64_t numel = 1;   /* byte offsets of every element must fit in int64 */
    for (int d = 0; d < n.rank; d++)
        if (__builtin_mul_overflow(numel, n.shape[d], &numel) || numel > ((int64_t)1 << 48)) {
            snprintf(err, errlen, "'%s': a tensor of more than 2^48 elements is too large", info->name);
            return -1;
        }
    if (!(info->flags & OPF_VIEW)) {
        n.storage = id;
        n.offset = 0;
        n.view_of = -1;
        ir_contiguous_strides(n.rank, n.shape, n.strides);
    }
    ARR_PUSH(f->mod->ar, f->nodes, f->nnodes, f->cap, n);
    return id;
}
