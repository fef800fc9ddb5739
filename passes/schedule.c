/* Scheduling: which nodes become kernels (see passes.h). Runs after lowering (and later
 * after autodiff); leaves fusion to passes/fusion.c, which merges kernels. Node order is
 * a topological order, so kernels in node order respect dependencies. */
#include "passes.h"

static bool is_kernel_root(const ir_node *n)
{
    unsigned fl = ir_ops[n->op].flags;
    return !(fl & OPF_VIEW) && n->op != OP_arg && n->op != OP_param && n->op != OP_state && n->op != OP_constant;
}

pass_schedule *pass_schedule_func(arena *ar, const ir_func *f)
{
    pass_schedule *s = arena_alloc(ar, sizeof *s);
    int n = 0;
    for (int i = 0; i < f->nnodes; i++)
        n += is_kernel_root(&f->nodes[i]);
    s->kernels = arena_alloc(ar, sizeof(pass_kernel) * (size_t)(n ? n : 1));
    for (int i = 0; i < f->nnodes; i++) {
        if (!is_kernel_root(&f->nodes[i]))
            continue;
        pass_kernel *k = &s->kernels[s->nkernels++];
        k->root = i;
        k->nmembers = 1;
        k->members = arena_alloc(ar, sizeof(int));
        k->members[0] = i;
    }
    return s;
}
