/* Memory planning: gives every storage a home (see passes.h). Runs after scheduling.
 * Outputs whose value is the whole, contiguous storage a kernel writes are written in
 * place into the caller's buffer; any other output gets a final copy. An update output of
 * a training step is never written into its param or state directly (a later kernel may
 * still read the old value): its dense value waits in an arena slot (its own kernel's slot
 * when that holds it whole, else a staging slot filled by a copy) until the export commits. */
#include "passes.h"
#include <string.h>

static int64_t storage_bytes(const ir_node *n) { return ir_numel(n) * (int64_t)ir_dtype_size(n->dtype); }

static int64_t align64(int64_t b) { return (b + 63) & ~(int64_t)63; }

int64_t pass_state_layout(const ir_module *m, int64_t *offsets)
{
    int64_t off = 0;
    for (int i = 0; i < m->nstates; i++) {
        const ir_state *st = &m->states[i];
        int64_t n = 1;
        for (int d = 0; d < st->rank; d++)
            n *= st->shape[d];
        if (offsets)
            offsets[i] = off;
        off += align64(n * (int64_t)ir_dtype_size(st->dtype));
    }
    return off;
}

pass_memplan *pass_memplan_func(arena *ar, const ir_func *f, const pass_schedule *s)
{
    pass_memplan *p = arena_alloc(ar, sizeof *p);
    p->mem = arena_alloc(ar, sizeof(pass_mem) * (size_t)(f->nnodes ? f->nnodes : 1));
    p->nouts = f->nouts;
    p->out_copy = arena_alloc(ar, sizeof(bool) * (size_t)(f->nouts ? f->nouts : 1));
    p->stage = arena_alloc(ar, sizeof(int64_t) * (size_t)(f->nouts ? f->nouts : 1));
    int64_t *state_off = arena_alloc(ar, sizeof(int64_t) * (size_t)(f->mod->nstates + 1));
    pass_state_layout(f->mod, state_off);
    for (int i = 0; i < f->nnodes; i++) {
        const ir_node *n = &f->nodes[i];
        if (n->op == OP_arg)
            p->mem[i] = (pass_mem){MEM_ARG, (int)n->i[0], 0, storage_bytes(n)};
        else if (n->op == OP_param)
            p->mem[i] = (pass_mem){MEM_PARAM, (int)n->i[0], 0, storage_bytes(n)};
        else if (n->op == OP_state)
            p->mem[i] = (pass_mem){MEM_STATE, (int)n->i[0], state_off[n->i[0]], storage_bytes(n)};
    }
    int nres = ir_num_results(f);
    /* outputs written in place: a kernel root, contiguous, output only once */
    for (int k = 0; k < nres; k++) {
        int id = f->outs[k];
        const ir_node *n = &f->nodes[id];
        bool twice = false;
        for (int j = 0; j < k; j++)
            twice |= f->outs[j] == id;
        /* n->storage == id: n owns its buffer (not a view), so the kernel writes all of it */
        bool in_place = !twice && n->storage == id && n->op != OP_arg && n->op != OP_param && n->op != OP_state &&
                        n->op != OP_constant && ir_is_contiguous(n);
        p->out_copy[k] = !in_place;
        p->stage[k] = -1;
        if (in_place)
            p->mem[id] = (pass_mem){MEM_OUTPUT, k, 0, storage_bytes(n)};
    }
    int64_t off = 0;
    for (int k = 0; k < s->nkernels; k++) {
        int id = s->kernels[k].root;
        const ir_node *n = &f->nodes[id];
        if (p->mem[id].kind != MEM_NONE)
            continue;
        int64_t bytes = storage_bytes(n);
        p->mem[id] = (pass_mem){MEM_ARENA, 0, off, bytes};
        off += align64(bytes);
    }
    /* update outputs: their own arena slot when it holds the dense value, else a staging slot */
    for (int k = nres; k < f->nouts; k++) {
        int id = f->outs[k];
        const ir_node *n = &f->nodes[id];
        bool own = n->storage == id && p->mem[id].kind == MEM_ARENA && ir_is_contiguous(n);
        p->out_copy[k] = !own;
        if (own) {
            p->stage[k] = p->mem[id].offset;
        } else {
            p->stage[k] = off;
            off += align64(storage_bytes(n));
        }
    }
    p->arena_bytes = off;
    return p;
}

static const char *const kind_names[] = {"none", "arg", "param", "output", "arena", "state"};

void pass_print_plan(FILE *out, const ir_func *f, const pass_schedule *s, const pass_memplan *p)
{
    fprintf(out, "func %s: %d kernels, arena %lld bytes\n", f->name, s->nkernels, (long long)p->arena_bytes);
    for (int k = 0; k < s->nkernels; k++) {
        const pass_kernel *kr = &s->kernels[k];
        const ir_node *n = &f->nodes[kr->root];
        const pass_mem *m = &p->mem[kr->root];
        char shape[128];
        ir_format_shape(shape, sizeof shape, n->rank, n->shape);
        fprintf(out, "  kernel %-3d %-12s -> %%%d%s%s %s%s  ", k, ir_ops[n->op].name, kr->root, n->name ? " " : "",
                n->name ? n->name : "", ir_dtype_name(n->dtype), n->rank ? shape : "");
        if (m->kind == MEM_ARENA)
            fprintf(out, "arena +%lld (%lld bytes)", (long long)m->offset, (long long)m->bytes);
        else
            fprintf(out, "%s %d (%lld bytes)", kind_names[m->kind], m->index, (long long)m->bytes);
        if (kr->nmembers > 1) {
            fputs("  fuses", out);
            for (int j = 0; j < kr->nmembers; j++)
                fprintf(out, " %%%d", kr->members[j]);
        }
        fputc('\n', out);
    }
    int nres = ir_num_results(f);
    for (int k = 0; k < nres; k++)
        fprintf(out, "  output %d = %%%d%s\n", k, f->outs[k], p->out_copy[k] ? " (copied out: a view, leaf or repeated value)" : " (written in place)");
    for (int k = nres; k < f->nouts; k++) {
        const ir_update *u = &f->updates[k];
        bool is_param = u->kind == IR_UPD_PARAM;
        fprintf(out, "  update %s %s = %%%d (arena +%lld%s, committed after the kernels)\n", is_param ? "param" : "state",
                is_param ? f->mod->params[u->index].name : f->mod->states[u->index].name, f->outs[k],
                (long long)p->stage[k], p->out_copy[k] ? ", staged by a copy" : "");
    }
}
