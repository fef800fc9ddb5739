/* Readable dumps of the passes' decisions: `tdslc dump --stage fused` (the kernels after
 * fusion, as IR, or Graphviz with a box per kernel) and `--stage planned` (kernels and the
 * memory plan). Printing only: nothing here changes a plan. */
#include "passes.h"
#include <stdlib.h>

void pass_print_fused(FILE *out, const ir_func *f, const pass_schedule *s, bool dot)
{
    int *kernel_of = malloc(sizeof(int) * (size_t)(f->nnodes ? f->nnodes : 1));
    if (!kernel_of) {
        fputs("out of memory\n", out);
        return;
    }
    for (int i = 0; i < f->nnodes; i++)
        kernel_of[i] = -1;
    int ncomputed = 0;
    for (int k = 0; k < s->nkernels; k++)
        for (int j = 0; j < s->kernels[k].nmembers; j++) {
            kernel_of[s->kernels[k].members[j]] = k;
            ncomputed++;
        }
    if (dot) {
        ir_print_dot_clusters(out, f, false, kernel_of, s->nkernels);
        free(kernel_of);
        return;
    }
    fprintf(out, "func %s: %d kernel%s compute %d value%s\n", f->name, s->nkernels, s->nkernels == 1 ? "" : "s",
            ncomputed, ncomputed == 1 ? "" : "s");
    bool header = false;
    for (int i = 0; i < f->nnodes; i++)
        if (kernel_of[i] < 0) {
            if (!header)
                fputs("  no code (leaves, constants and views: read where they are)\n", out);
            header = true;
            ir_print_node(out, f, i, "    ");
        }
    for (int k = 0; k < s->nkernels; k++) {
        const pass_kernel *kr = &s->kernels[k];
        const ir_node *root = &f->nodes[kr->root];
        fprintf(out, "  kernel %d: %s -> %%%d%s%s", k, ir_ops[root->op].name, kr->root, root->name ? " " : "",
                root->name ? root->name : "");
        if (kr->nmembers > 1)
            fprintf(out, " (%d ops fused: only %%%d is stored)", kr->nmembers, kr->root);
        fputc('\n', out);
        for (int j = 0; j < kr->nmembers; j++)
            ir_print_node(out, f, kr->members[j], "    ");
    }
    free(kernel_of);
}

static const char *const kind_names[] = {"none", "arg", "param", "output", "arena", "state"};

void pass_print_plan(FILE *out, const ir_func *f, const pass_schedule *s, const pass_memplan *p)
{
    fprintf(out, "func %s: %d kernels, arena %lld bytes (%lld without reuse)\n", f->name, s->nkernels,
            (long long)p->arena_bytes, (long long)p->arena_bytes_unshared);
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
        if (p->scratch[k] >= 0)
            fprintf(out, "  scratch +%lld (%lld bytes)", (long long)p->scratch[k], (long long)pass_kernel_scratch(f, kr));
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
        fprintf(out, "  update %s %s = %%%d ", is_param ? "param" : "state",
                is_param ? f->mod->params[u->index].name : f->mod->states[u->index].name, f->outs[k]);
        if (p->in_place[k])
            fputs("(written in place by its kernel; no later kernel reads the old value)\n", out);
        else
            fprintf(out, "(arena +%lld%s, committed after the kernels)\n", (long long)p->stage[k],
                    p->out_copy[k] ? ", staged by a copy" : "");
    }
}
