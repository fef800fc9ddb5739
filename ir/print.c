/* The IR's text form (printer half; ir/parse.c reads it back) and the layout table.
 *
 *   module NAME seed=N
 *   param NAME: TYPE = INIT                              ; @line:col
 *   state NAME: TYPE                                     ; @line:col
 *   func NAME(ARG: TYPE, ...) {                          ; @line:col
 *     %ID = OP %IN, ... ATTR=VALUE ... : TYPE            ; name @line:col
 *     return %ID, ..., update param NAME = %ID, update state NAME = %ID, ...
 *   }
 *
 * Everything the parser needs to rebuild a node exactly is printed; the layout is not
 * (ir_append re-derives it). Doubles print in the shortest form that reads back to the
 * same bits, so print -> parse -> print is the identity. docs/ir.md documents the form. */
#include "ir.h"
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Column where `; metadata` starts on node lines, when the instruction is shorter. */
#define META_COL 50

/* ---- small formatting helpers ---- */

/* Shortest %.Ng that strtod reads back to the same double; inf, -inf, nan spelled out. */
static void fmt_double(char *buf, size_t len, double v)
{
    if (isnan(v)) {
        snprintf(buf, len, "nan");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, len, v < 0 ? "-inf" : "inf");
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v && (v != 0 || signbit(strtod(buf, NULL)) == signbit(v)))
            return;
    }
    snprintf(buf, len, "%.17g", v);
}

static bool is_ident(const char *s)
{
    if (!s || !*s || !(isalpha((unsigned char)*s) || *s == '_'))
        return false;
    for (const char *p = s; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '.'))
            return false;
    return true;
}

/* A name bare when it is an identifier, else quoted with C escapes. */
static void put_name(FILE *out, const char *s)
{
    if (is_ident(s)) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", out);
        else if (*p == '\t')
            fputs("\\t", out);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(out, "\\x%02x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

static void put_dims(FILE *out, int rank, const int64_t *shape)
{
    fputc('[', out);
    for (int d = 0; d < rank; d++)
        fprintf(out, "%s%" PRId64, d ? ", " : "", shape[d]);
    fputc(']', out);
}

/* `f32` for a scalar, `f32[2, 3]` for a tensor. */
static void put_type(FILE *out, ir_dtype dt, int rank, const int64_t *shape)
{
    fputs(ir_dtype_name(dt), out);
    if (rank > 0 && rank <= IR_MAX_RANK)
        put_dims(out, rank, shape);
    else if (rank != 0)
        fprintf(out, "[<rank %d>]", rank);
}

static void put_loc(FILE *out, int line, int col)
{
    if (line > 0 || col > 0)
        fprintf(out, "@%d:%d", line, col);
}

/* ---- attributes, driven by the signature string in ops.def (ir_op_attrs) ---- */

static void put_attrs(FILE *out, const ir_node *n)
{
    if ((unsigned)n->op >= OP_COUNT)
        return;
    ir_attr_desc ds[8];
    int nd = ir_op_attrs(n->op, ds, 8);
    for (int k = 0; k < nd; k++) {
        const ir_attr_desc *d = &ds[k];
        char buf[64];
        switch (d->kind) {
        case IR_ATTR_LIST:
            fprintf(out, " %s=", d->name);
            put_dims(out, n->nlist < 0 ? 0 : n->nlist > IR_MAX_RANK ? IR_MAX_RANK : n->nlist, n->list);
            break;
        case IR_ATTR_INT:
            fprintf(out, " %s=%" PRId64, d->name, n->i[d->slot]);
            break;
        case IR_ATTR_FLOAT:
            fmt_double(buf, sizeof buf, n->f[d->slot]);
            fprintf(out, " %s=%s", d->name, buf);
            break;
        case IR_ATTR_STR:
            if (n->str) {   /* absent string: nothing printed, parsed back as NULL */
                fprintf(out, " %s=", d->name);
                fputc('"', out);
                for (const unsigned char *p = (const unsigned char *)n->str; *p; p++) {
                    if (*p == '"' || *p == '\\')
                        fprintf(out, "\\%c", *p);
                    else if (*p == '\n')
                        fputs("\\n", out);
                    else if (*p < 0x20 || *p == 0x7f)
                        fprintf(out, "\\x%02x", *p);
                    else
                        fputc(*p, out);
                }
                fputc('"', out);
            }
            break;
        }
    }
}

/* ---- module, params, functions ---- */

static void put_node(FILE *out, const ir_node *n, int id, const char *indent)
{
    /* The instruction goes to a memory stream first so the metadata can be aligned. */
    char *text = NULL;
    size_t tlen = 0;
    FILE *m = open_memstream(&text, &tlen);
    if (!m) {
        fprintf(out, "  %%%d = <out of memory>\n", id);
        return;
    }
    fprintf(m, "%s%%%d = %s", indent, id, (unsigned)n->op < OP_COUNT ? ir_ops[n->op].name : "<bad op>");
    for (int k = 0; k < n->nin; k++)
        fprintf(m, "%s%%%d", k ? ", " : " ", n->in ? n->in[k] : -1);
    put_attrs(m, n);
    fputs(" : ", m);
    put_type(m, n->dtype, n->rank, n->shape);
    fclose(m);
    fputs(text, out);
    if (n->name || n->line > 0 || n->col > 0) {
        for (size_t c = tlen; c < META_COL; c++)
            fputc(' ', out);
        fputs("  ;", out);
        if (n->name) {
            fputc(' ', out);
            put_name(out, n->name);
        }
        if (n->line > 0 || n->col > 0) {
            fputc(' ', out);
            put_loc(out, n->line, n->col);
        }
    }
    fputc('\n', out);
    free(text);
}

void ir_print_node(FILE *out, const ir_func *f, int id, const char *indent)
{
    put_node(out, &f->nodes[id], id, indent);
}

void ir_print_func(FILE *out, const ir_func *f)
{
    fputs("func ", out);
    put_name(out, f->name);
    fputc('(', out);
    for (int a = 0; a < f->nargs; a++) {
        if (a)
            fputs(", ", out);
        put_name(out, f->args[a].name);
        fputs(": ", out);
        put_type(out, f->args[a].dtype, f->args[a].rank, f->args[a].shape);
    }
    fputs(") {", out);
    if (f->line > 0 || f->col > 0) {
        fputs("  ; ", out);
        put_loc(out, f->line, f->col);
    }
    fputc('\n', out);
    for (int i = 0; i < f->nnodes; i++)
        put_node(out, &f->nodes[i], i, "  ");
    fputs("  return", out);
    for (int k = 0; k < f->nouts; k++) {
        fputs(k ? ", " : " ", out);
        const ir_update *u = f->updates ? &f->updates[k] : NULL;
        const ir_module *m = f->mod;
        if (u && u->kind == IR_UPD_PARAM) {
            fputs("update param ", out);
            put_name(out, m && u->index >= 0 && u->index < m->nparams ? m->params[u->index].name : "<bad param>");
            fputs(" = ", out);
        } else if (u && u->kind == IR_UPD_STATE) {
            fputs("update state ", out);
            put_name(out, m && u->index >= 0 && u->index < m->nstates ? m->states[u->index].name : "<bad state>");
            fputs(" = ", out);
        }
        fprintf(out, "%%%d", f->outs[k]);
    }
    fputs("\n}\n", out);
}

static void put_param(FILE *out, const ir_param *p)
{
    char a[64], b[64];
    fputs("param ", out);
    put_name(out, p->name);
    fputs(": ", out);
    put_type(out, p->dtype, p->rank, p->shape);
    fmt_double(a, sizeof a, p->a);
    fmt_double(b, sizeof b, p->b);
    fprintf(out, " = %s", ir_init_name(p->init));
    switch (p->init) {
    case INIT_FULL:
        fprintf(out, "(%s)", a);
        break;
    case INIT_NORMAL:
    case INIT_UNIFORM:
        fprintf(out, "(%s, %s)", a, b);
        break;
    default:
        break;
    }
    if (p->line > 0 || p->col > 0) {
        fputs("  ; ", out);
        put_loc(out, p->line, p->col);
    }
    fputc('\n', out);
}

static void put_state(FILE *out, const ir_state *st)
{
    fputs("state ", out);
    put_name(out, st->name);
    fputs(": ", out);
    put_type(out, st->dtype, st->rank, st->shape);
    if (st->line > 0 || st->col > 0) {
        fputs("  ; ", out);
        put_loc(out, st->line, st->col);
    }
    fputc('\n', out);
}

void ir_print_module(FILE *out, const ir_module *m)
{
    fputs("module ", out);
    put_name(out, m->name);
    fprintf(out, " seed=%" PRIu64 "\n", m->seed);
    for (int i = 0; i < m->nparams; i++)
        put_param(out, &m->params[i]);
    for (int i = 0; i < m->nstates; i++)
        put_state(out, &m->states[i]);
    for (int i = 0; i < m->nfuncs; i++) {
        fputc('\n', out);
        ir_print_func(out, m->funcs[i]);
    }
}

/* ---- the layout table (tdslc dump --stage layout) ---- */

enum { LC_ID, LC_NAME, LC_OP, LC_DTYPE, LC_SHAPE, LC_STORAGE, LC_OFFSET, LC_STRIDES, LC_CONTIG, LC_VIEW, LC_N };
static const char *const layout_head[LC_N] = {"id", "name", "op", "dtype", "shape", "storage",
                                              "offset", "strides", "contiguous", "view-of"};

static void fmt_dims(char *buf, size_t len, int rank, const int64_t *v)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, len - o, "[");
    for (int d = 0; d < rank && d < IR_MAX_RANK && o < len; d++)
        o += (size_t)snprintf(buf + o, len - o, "%s%" PRId64, d ? ", " : "", v[d]);
    if (o < len)
        snprintf(buf + o, len - o, "]");
}

void ir_print_layout(FILE *out, const ir_func *f)
{
    typedef char cell[256];
    int rows = f->nnodes;
    cell *tab = calloc((size_t)(rows + 1) * LC_N, sizeof(cell));
    if (!tab) {
        fputs("<out of memory>\n", out);
        return;
    }
    int width[LC_N];
    for (int c = 0; c < LC_N; c++) {
        snprintf(tab[c], sizeof(cell), "%s", layout_head[c]);
        width[c] = (int)strlen(layout_head[c]);
    }
    int noncontig = 0;
    for (int i = 0; i < rows; i++) {
        const ir_node *n = &f->nodes[i];
        cell *r = tab + (size_t)(i + 1) * LC_N;
        int rank = n->rank < 0 ? 0 : n->rank > IR_MAX_RANK ? IR_MAX_RANK : n->rank;
        bool contig = ir_is_contiguous(n);
        noncontig += !contig;
        snprintf(r[LC_ID], sizeof(cell), "%%%d", i);
        snprintf(r[LC_NAME], sizeof(cell), "%s", n->name ? n->name : "-");
        snprintf(r[LC_OP], sizeof(cell), "%s", (unsigned)n->op < OP_COUNT ? ir_ops[n->op].name : "?");
        snprintf(r[LC_DTYPE], sizeof(cell), "%s", ir_dtype_name(n->dtype));
        fmt_dims(r[LC_SHAPE], sizeof(cell), rank, n->shape);
        snprintf(r[LC_STORAGE], sizeof(cell), "s%d", n->storage);
        snprintf(r[LC_OFFSET], sizeof(cell), "+%" PRId64, n->offset);
        fmt_dims(r[LC_STRIDES], sizeof(cell), rank, n->strides);
        snprintf(r[LC_CONTIG], sizeof(cell), "%s", contig ? "yes" : "NO");
        if (n->view_of >= 0)
            snprintf(r[LC_VIEW], sizeof(cell), "view of %%%d", n->view_of);
        else
            snprintf(r[LC_VIEW], sizeof(cell), "-");
        for (int c = 0; c < LC_N; c++) {
            int w = (int)strlen(r[c]);
            if (w > width[c])
                width[c] = w;
        }
    }
    fprintf(out, "func %s: %d value%s\n", f->name, rows, rows == 1 ? "" : "s");
    for (int i = 0; i <= rows; i++) {
        cell *r = tab + (size_t)i * LC_N;
        fputs("  ", out);
        for (int c = 0; c < LC_N; c++) {
            if (c == LC_N - 1)   /* no trailing blanks */
                fputs(r[c], out);
            else
                fprintf(out, "%-*s  ", width[c], r[c]);
        }
        fputc('\n', out);
    }
    free(tab);
    fputs("  outputs:", out);
    for (int k = 0; k < f->nouts; k++)
        fprintf(out, "%s%%%d", k ? ", " : " ", f->outs[k]);
    fputc('\n', out);
    if (noncontig) {
        fputs("  non-contiguous:", out);
        int k = 0;
        for (int i = 0; i < rows; i++)
            if (!ir_is_contiguous(&f->nodes[i]))
                fprintf(out, "%s%%%d", k++ ? ", " : " ", i);
        fputc('\n', out);
    }
}
