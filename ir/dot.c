/* Graphviz output of one function (tdslc dump --format dot): a node per IR node, an
 * edge from each input to its user. Shapes tell leaves apart (args: ellipses, params:
 * cylinders, other leaves: rounded boxes); views are dashed. With layout=true each label
 * also shows strides, offset and storage, and non-contiguous values are drawn in red. */
#include "ir.h"
#include <inttypes.h>
#include <string.h>

/* Writes s escaped for a double-quoted DOT string. */
static void put_esc(FILE *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", out);
        else if (*p < 0x20)
            fputc(' ', out);
        else
            fputc(*p, out);
    }
}

static void put_ints(FILE *out, int rank, const int64_t *v)
{
    fputc('[', out);
    for (int d = 0; d < rank && d < IR_MAX_RANK; d++)
        fprintf(out, "%s%" PRId64, d ? ", " : "", v[d]);
    fputc(']', out);
}

/* One node's statement, after indent. */
static void put_node(FILE *out, const ir_func *f, int i, bool layout, const char *indent)
{
    const ir_node *n = &f->nodes[i];
    bool known = (unsigned)n->op < OP_COUNT;
    int rank = n->rank < 0 ? 0 : n->rank > IR_MAX_RANK ? IR_MAX_RANK : n->rank;
    fprintf(out, "%sn%d [label=\"%%%d", indent, i, i);
    if (n->name) {
        fputc(' ', out);
        put_esc(out, n->name);
    }
    fprintf(out, "\\n%s\\n%s", known ? ir_ops[n->op].name : "?", ir_dtype_name(n->dtype));
    if (rank > 0)
        put_ints(out, rank, n->shape);
    bool contig = ir_is_contiguous(n);
    if (layout) {
        fputs("\\nstrides ", out);
        put_ints(out, rank, n->strides);
        fprintf(out, " +%" PRId64 " s%d", n->offset, n->storage);
        if (!contig)
            fputs("\\nNOT contiguous", out);
        if (n->view_of >= 0)
            fprintf(out, "\\nview of %%%d", n->view_of);
    }
    fputc('"', out);
    if (known && n->op == OP_arg)
        fputs(", shape=ellipse", out);
    else if (known && n->op == OP_param)
        fputs(", shape=cylinder", out);
    else if (known && (ir_ops[n->op].flags & OPF_LEAF))
        fputs(", style=rounded", out);
    else if (known && (ir_ops[n->op].flags & OPF_VIEW))
        fputs(", style=dashed", out);
    if (layout && !contig)
        fputs(", color=red, fontcolor=red", out);
    fputs("];\n", out);
}

static void print_dot(FILE *out, const ir_func *f, bool layout, const int *cluster, int nclusters)
{
    fputs("digraph \"", out);
    put_esc(out, f->name);
    fputs("\" {\n", out);
    fputs("  node [shape=box, fontname=\"monospace\", fontsize=10];\n", out);
    fputs("  edge [fontname=\"monospace\", fontsize=8];\n", out);
    for (int i = 0; i < f->nnodes; i++)
        if (!cluster || cluster[i] < 0 || cluster[i] >= nclusters)
            put_node(out, f, i, layout, "  ");
    for (int k = 0; cluster && k < nclusters; k++) {
        fprintf(out, "  subgraph cluster_%d {\n    label=\"kernel %d\"; style=filled; fillcolor=\"#f2f2f2\";\n", k, k);
        for (int i = 0; i < f->nnodes; i++)
            if (cluster[i] == k)
                put_node(out, f, i, layout, "    ");
        fputs("  }\n", out);
    }
    for (int i = 0; i < f->nnodes; i++) {
        const ir_node *n = &f->nodes[i];
        for (int k = 0; k < n->nin && n->in; k++) {
            fprintf(out, "  n%d -> n%d", n->in[k], i);
            if (n->nin > 1)   /* operand order matters for sub, div, matmul, ... */
                fprintf(out, " [label=\"%d\"]", k);
            fputs(";\n", out);
        }
    }
    for (int k = 0; k < f->nouts; k++) {
        const ir_update *u = f->updates ? &f->updates[k] : NULL;
        const ir_module *m = f->mod;
        bool p = u && u->kind == IR_UPD_PARAM && m && u->index >= 0 && u->index < m->nparams;
        bool st = u && u->kind == IR_UPD_STATE && m && u->index >= 0 && u->index < m->nstates;
        if (p || st) {   /* a training step's update output */
            fprintf(out, "  out%d [label=\"new %s ", k, p ? "param" : "state");
            put_esc(out, p ? m->params[u->index].name : m->states[u->index].name);
            fputs("\", shape=plaintext];\n", out);
        } else
            fprintf(out, "  out%d [label=\"output %d\", shape=plaintext];\n", k, k);
        fprintf(out, "  n%d -> out%d;\n", f->outs[k], k);
    }
    fputs("}\n", out);
}

void ir_print_dot(FILE *out, const ir_func *f, bool layout) { print_dot(out, f, layout, NULL, 0); }

void ir_print_dot_clusters(FILE *out, const ir_func *f, bool layout, const int *cluster, int nclusters)
{
    print_dot(out, f, layout, cluster, nclusters);
}
