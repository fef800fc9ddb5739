/* `tdslc stats`: per export, what running it costs: kernels, floating-point operations,
 * bytes moved by the kernels, and peak memory (arena + params + arguments + results).
 * Counts come from the schedule and memory plan, so they describe what the backend runs. */
#include "passes.h"

/* FLOPs of one node: multiply-adds count 2; each transcendental counts 1 like any other op. */
static int64_t node_flops(const ir_func *f, const ir_node *n)
{
    int64_t out = ir_numel(n);
    const ir_node *a = n->nin ? &f->nodes[n->in[0]] : NULL;
    switch (n->op) {
    case OP_matmul: {
        int64_t k = a->shape[a->rank - 1];
        return 2 * out * k;
    }
    case OP_copy: case OP_concat: case OP_index: case OP_gather: case OP_full: case OP_arange:
    case OP_eye: case OP_one_hot: case OP_cast:
        return 0;
    case OP_softmax: case OP_log_softmax: return 5 * out;
    case OP_layer_norm: return 8 * out;
    case OP_cross_entropy: return 5 * ir_numel(a);
    default:
        if (ir_ops[n->op].flags & OPF_REDUCE)
            return ir_numel(a) * (n->op == OP_var || n->op == OP_logsumexp ? 3 : 1);
        return out;
    }
}

static int64_t node_bytes(const ir_node *n) { return ir_numel(n) * (int64_t)ir_dtype_size(n->dtype); }

int64_t pass_flops(const ir_func *f, const pass_schedule *s)
{
    int64_t flops = 0;
    for (int k = 0; k < s->nkernels; k++)
        for (int j = 0; j < s->kernels[k].nmembers; j++)
            flops += node_flops(f, &f->nodes[s->kernels[k].members[j]]);
    return flops;
}

void pass_print_stats(FILE *out, const ir_module *m, const ir_func *f, const pass_schedule *s, const pass_memplan *p)
{
    int64_t flops = pass_flops(f, s), moved = 0, params = 0, io = 0;
    for (int k = 0; k < s->nkernels; k++) {
        const pass_kernel *kr = &s->kernels[k];
        const ir_node *root = &f->nodes[kr->root];
        moved += node_bytes(root);
        for (int j = 0; j < kr->nmembers; j++) {
            const ir_node *n = &f->nodes[kr->members[j]];
            for (int i = 0; i < n->nin; i++) {   /* reads of values made outside the kernel */
                const ir_node *in = &f->nodes[n->in[i]];
                bool inside = false;
                for (int q = 0; q < kr->nmembers; q++)
                    inside |= kr->members[q] == n->in[i];
                if (!inside && f->nodes[in->storage].op != OP_constant)
                    moved += node_bytes(in);
            }
        }
    }
    for (int i = 0; i < m->nparams; i++) {
        int64_t e = (int64_t)ir_dtype_size(m->params[i].dtype);
        for (int d = 0; d < m->params[i].rank; d++)
            e *= m->params[i].shape[d];
        params += e;
    }
    for (int i = 0; i < f->nargs; i++) {
        int64_t e = (int64_t)ir_dtype_size(f->args[i].dtype);
        for (int d = 0; d < f->args[i].rank; d++)
            e *= f->args[i].shape[d];
        io += e;
    }
    for (int k = 0; k < ir_num_results(f); k++)   /* update outputs live in the arena */
        io += node_bytes(&f->nodes[f->outs[k]]);
    int64_t state = pass_state_layout(m, NULL);
    int copies = 0;
    for (int k = 0; k < f->nouts; k++)
        copies += p->out_copy[k];
    fprintf(out, "%s:\n", f->name);
    fprintf(out, "  kernels      %d (+%d copy-out)\n", s->nkernels, copies);
    fprintf(out, "  flops        %lld\n", (long long)flops);
    fprintf(out, "  bytes moved  %lld\n", (long long)moved);
    fprintf(out, "  arena        %lld bytes (%lld without buffer reuse)\n", (long long)p->arena_bytes,
            (long long)p->arena_bytes_unshared);
    fprintf(out, "  params       %lld bytes\n", (long long)params);
    if (p->backup_bytes > 0)   /* a step that writes updates in place */
        fprintf(out, "  backup       %lld bytes (only with check_finite: the old values of the updates written in place)\n",
                (long long)p->backup_bytes);
    if (state > 0) {   /* optimizer state of the module's training steps */
        fprintf(out, "  state        %lld bytes\n", (long long)state);
        fprintf(out, "  peak memory  %lld bytes (arena + params + state + arguments and results)\n",
                (long long)(p->arena_bytes + params + state + io));
        return;
    }
    fprintf(out, "  peak memory  %lld bytes (arena + params + arguments and results)\n",
            (long long)(p->arena_bytes + params + io));
}
