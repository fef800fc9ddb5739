/* Fusion: merges chains of elementwise kernels into one loop nest, so intermediate values
 * never travel through memory (`(a * b + c).relu()` reads a, b, c once and writes once).
 * Runs after scheduling, before memory planning. A producer kernel P is merged into its
 * consumer K when P's root is elementwise over the same shape as K's root, every use of
 * P's value is a direct operand of a member of K (no view, no other kernel, not an
 * output), so the value can be computed per element where it is read and dropped.
 * (Fused f16/bf16 members still round to 16 bits between ops: the kernel does it in registers.)
 * Post: every kernel's members are elementwise over the root's shape except, for an
 * unfused kernel, its single member; members stay in node order (a topological order). */
#include "passes.h"
#include <stdlib.h>
#include <string.h>

static bool elementwise(const ir_node *n) { return (ir_ops[n->op].flags & OPF_ELEM) != 0; }

static bool same_shape(const ir_node *a, const ir_node *b)
{
    if (a->rank != b->rank)
        return false;
    for (int d = 0; d < a->rank; d++)
        if (a->shape[d] != b->shape[d])
            return false;
    return true;
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

void pass_fuse(arena *ar, const ir_func *f, pass_schedule *s)
{
    int n = f->nnodes;
    int *uses = arena_alloc(ar, sizeof(int) * (size_t)(n + 1));      /* operand uses + outputs */
    int *kernel_of = arena_alloc(ar, sizeof(int) * (size_t)(n + 1)); /* kernel computing node, or -1 */
    for (int i = 0; i < n; i++) {
        kernel_of[i] = -1;
        for (int k = 0; k < f->nodes[i].nin; k++)
            uses[f->nodes[i].in[k]]++;
    }
    for (int k = 0; k < f->nouts; k++)
        uses[f->outs[k]] += 1 << 20;   /* an output must stay in memory */
    for (int k = 0; k < s->nkernels; k++)
        kernel_of[s->kernels[k].root] = k;
    bool *dead = arena_alloc(ar, sizeof(bool) * (size_t)(s->nkernels + 1));

    for (int k = 0; k < s->nkernels; k++) {
        pass_kernel *K = &s->kernels[k];
        const ir_node *root = &f->nodes[K->root];
        if (!elementwise(root))
            continue;
        for (bool changed = true; changed;) {
            changed = false;
            for (int m = 0; m < K->nmembers && !changed; m++) {
                const ir_node *mn = &f->nodes[K->members[m]];
                for (int i = 0; i < mn->nin && !changed; i++) {
                    int p = mn->in[i], pk = kernel_of[p];
                    if (pk < 0 || pk == k || dead[pk] || s->kernels[pk].root != p)
                        continue;
                    const ir_node *pn = &f->nodes[p];
                    if (!elementwise(pn) || !same_shape(pn, root))
                        continue;
                    int inside = 0;   /* uses of p as a direct operand of K's members */
                    for (int q = 0; q < K->nmembers; q++) {
                        const ir_node *qn = &f->nodes[K->members[q]];
                        for (int j = 0; j < qn->nin; j++)
                            inside += qn->in[j] == p;
                    }
                    if (inside != uses[p])
                        continue;
                    pass_kernel *P = &s->kernels[pk];
                    int total = P->nmembers + K->nmembers;
                    int *mem = arena_alloc(ar, sizeof(int) * (size_t)total);
                    memcpy(mem, P->members, sizeof(int) * (size_t)P->nmembers);
                    memcpy(mem + P->nmembers, K->members, sizeof(int) * (size_t)K->nmembers);
                    qsort(mem, (size_t)total, sizeof(int), cmp_int);
                    K->members = mem;
                    K->nmembers = total;
                    for (int q = 0; q < P->nmembers; q++)
                        kernel_of[P->members[q]] = k;
                    dead[pk] = true;
                    changed = true;
                }
            }
        }
    }
    int w = 0;
    for (int k = 0; k < s->nkernels; k++)
        if (!dead[k])
            s->kernels[w++] = s->kernels[k];
    s->nkernels = w;
}
