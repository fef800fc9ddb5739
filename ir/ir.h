/* The IR: a module of params and functions; each function is a DAG of nodes kept in
 * one array, operands as integer ids (always smaller than the user's id), each node
 * with its source location. Every node is a value with an exact layout:
 * (storage, offset, shape, strides), strides in elements, as PyTorch would give them.
 * All memory comes from the module's arena. */
#ifndef TDSL_IR_H
#define TDSL_IR_H
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include "../common/arena.h"
#include "../common/diag.h"

#include "../common/tensor.h"

#define IR_MAX_RANK TDSL_MAX_RANK

enum {
    OPF_LEAF = 1 << 0,    /* no inputs */
    OPF_ELEM = 1 << 1,    /* elementwise over the result shape */
    OPF_UNARY = 1 << 2,
    OPF_BINARY = 1 << 3,
    OPF_CMP = 1 << 4,     /* result is bool */
    OPF_BOOLIO = 1 << 5,  /* logical: bool in, bool out */
    OPF_REDUCE = 1 << 6,
    OPF_VIEW = 1 << 7,    /* result shares its input's storage */
    OPF_FLOAT = 1 << 8,   /* inputs must be floating point */
};

typedef enum {
#define OP(id, name, nin, flags, rule, attrs, grad) OP_##id,
#include "ops.def"
#undef OP
    OP_COUNT
} ir_opcode;

typedef struct ir_opinfo {
    const char *name;   /* text IR spelling */
    int nin;            /* -1: variadic */
    unsigned flags;
    const char *attrs;  /* attribute signature, see ops.def */
} ir_opinfo;

extern const ir_opinfo ir_ops[OP_COUNT];
bool ir_op_parse(const char *name, ir_opcode *out);

/* An op's attributes, read from its signature in ops.def: kind, slot (i[slot] / f[slot]), name. */
typedef enum { IR_ATTR_LIST, IR_ATTR_INT, IR_ATTR_FLOAT, IR_ATTR_STR } ir_attr_kind;
typedef struct ir_attr_desc {
    ir_attr_kind kind;
    int slot;
    char name[32];
} ir_attr_desc;
int ir_op_attrs(ir_opcode op, ir_attr_desc *out, int max);   /* returns the count */

typedef struct ir_node {
    ir_opcode op;
    ir_dtype dtype;
    int rank;
    int64_t shape[IR_MAX_RANK];
    int64_t strides[IR_MAX_RANK];  /* elements */
    int64_t offset;                /* elements from the start of the storage */
    int storage;                   /* id of the node that owns the buffer */
    int view_of;                   /* view ops: the input viewed; else -1 */
    int nin;
    int *in;                       /* input node ids */
    /* attributes (meaning per op: ops.def) */
    int nlist;
    int64_t list[IR_MAX_RANK];
    int64_t i[4];
    double f[2];
    const char *str;
    /* provenance */
    const char *name;              /* source binding name, or NULL */
    int line, col;                 /* source location, 0 if none */
} ir_node;

typedef struct ir_arg {
    const char *name;
    ir_dtype dtype;
    int rank;
    int64_t shape[IR_MAX_RANK];
} ir_arg;

/* A training step's outputs after its results: "this output is the new value of param i /
 * state i". The export writes them back after all its kernels ran (docs/training.md). */
typedef enum { IR_UPD_NONE, IR_UPD_PARAM, IR_UPD_STATE } ir_update_kind;
typedef struct ir_update {
    ir_update_kind kind;
    int index;                 /* param or state index */
} ir_update;

typedef struct ir_func {
    const char *name;
    int line, col;
    int nargs;
    ir_arg *args;
    int nnodes, cap;
    ir_node *nodes;
    int nouts;
    int *outs;                 /* node ids of the results, in order */
    struct ir_module *mod;
    ir_update *updates;        /* NULL, or per output (nouts): its update target; the plain
                                  results come first, update outputs after them */
} ir_func;

typedef enum { INIT_ZEROS, INIT_ONES, INIT_FULL, INIT_NORMAL, INIT_UNIFORM, INIT_KAIMING_UNIFORM } ir_init_kind;
const char *ir_init_name(ir_init_kind k);

typedef struct ir_param {
    const char *name;
    ir_dtype dtype;
    int rank;
    int64_t shape[IR_MAX_RANK];
    ir_init_kind init;
    double a, b;               /* full(a), normal(a=mean, b=std), uniform(a=lo, b=hi) */
    int line, col;
} ir_param;

/* Optimizer state (momentum buffers, moments, step counters): module storage like a param,
 * always zero at instance creation, read by `state` nodes, written only as update outputs. */
typedef struct ir_state {
    const char *name;
    ir_dtype dtype;
    int rank;
    int64_t shape[IR_MAX_RANK];
    int line, col;
} ir_state;

typedef struct ir_module {
    arena *ar;
    const char *name;          /* module name */
    uint64_t seed;             /* module seed for parameter initialization (default 0) */
    int nparams, pcap;
    ir_param *params;
    int nfuncs, fcap;
    ir_func **funcs;
    int nstates, scap;
    ir_state *states;
} ir_module;

/* ---- building (ir/graph.c) ---- */
ir_module *ir_module_new(arena *ar, const char *name);
int        ir_add_param(ir_module *m, const ir_param *p);         /* returns index */
int        ir_add_state(ir_module *m, const ir_state *st);        /* returns index */
ir_func   *ir_func_new(ir_module *m, const char *name, int nargs, const ir_arg *args);
ir_func   *ir_module_find(const ir_module *m, const char *name);

/* A node under construction: fill op, inputs and attributes, then ir_append() runs the
 * op's shape rule. On success returns the new node id; on failure returns -1 and
 * writes a one-line reason (no location) into err (size errlen). */
typedef struct ir_proto {
    ir_opcode op;
    ir_dtype dtype;            /* needed only by: arg, param (taken from the decl), const, full,
                                  arange, eye, cast */
    int nin;
    const int *in;
    int nlist;
    int64_t list[IR_MAX_RANK];
    int64_t i[4];
    double f[2];
    const char *str;
    const char *name;
    int line, col;
} ir_proto;

int  ir_append(ir_func *f, const ir_proto *p, char *err, size_t errlen);
ir_node *ir_node_at(ir_func *f, int id);
void ir_add_output(ir_func *f, int id);
/* Appends output id as the new value of param / state `index` (after the plain results). */
void ir_add_update(ir_func *f, int id, ir_update_kind kind, int index);
/* The plain results: outputs without an update target (all outputs of a non-step function). */
int  ir_num_results(const ir_func *f);

/* ---- layout helpers (ir/shape.c) ---- */
int64_t ir_numel(const ir_node *n);
bool ir_is_contiguous(const ir_node *n);      /* PyTorch's is_contiguous() */
void ir_contiguous_strides(int rank, const int64_t *shape, int64_t *strides);
/* PyTorch's computeStride: strides for viewing (shape, strides) as new_shape, or false */
bool ir_view_strides(int rank, const int64_t *shape, const int64_t *strides,
                     int new_rank, const int64_t *new_shape, int64_t *new_strides);
void ir_format_shape(char *buf, size_t len, int rank, const int64_t *shape); /* "[2, 3]" */

/* ---- checking and text (ir/verify.c, ir/print.c, ir/parse.c, ir/dot.c) ---- */
/* Re-derives every node's layout from its inputs and checks ids, arities, dtypes.
 * Returns 0 if well formed, else prints reasons to `out` and returns the count. */
int  ir_verify(const ir_module *m, FILE *out);
void ir_print_module(FILE *out, const ir_module *m);
void ir_print_func(FILE *out, const ir_func *f);
/* One node's line of ir_print_func, after `indent` instead of two spaces. */
void ir_print_node(FILE *out, const ir_func *f, int id, const char *indent);
/* Parses text printed by ir_print_module. Errors: file:line:col via diag; NULL on error. */
ir_module *ir_parse_module(arena *ar, const src_file *file);
void ir_print_layout(FILE *out, const ir_func *f);     /* dump --stage layout */
void ir_print_dot(FILE *out, const ir_func *f, bool layout);
/* The same graph with the nodes of each kernel in a box labeled "kernel K" (dump --stage
 * fused): cluster[id] is node id's kernel, or -1 for nodes no kernel computes. */
void ir_print_dot_clusters(FILE *out, const ir_func *f, bool layout, const int *cluster, int nclusters);

#endif
