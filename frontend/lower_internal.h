/* Shared by the files of the lowering (frontend/lower*.c); not a public interface (that is lower.h).
 *
 *   lower.c           the core: values and emit helpers, names and scopes, expressions,
 *                     statements, declared types, calls and helper inlining (call_fn), exported
 *                     fns, consts and -D, export declarations, lower_file
 *   lower_builtins.c  the builtin table: argument binding, dtype promotion and broadcasting,
 *                     and each builtin (math, reductions, nn, matmul, views, creation)
 *   lower_grad.c      grad exports: custom-gradient regions recorded while lowering, their
 *                     blocks lowered for pass_autodiff, lw_differentiate()
 *   lower_step.c      training-step exports: sgd/adam/adamw options and update rules as IR
 *
 * Everything here works on a lower_ctx; user errors go through diag at c->loc. */
#ifndef TDSL_LOWER_INTERNAL_H
#define TDSL_LOWER_INTERNAL_H
#include "lower.h"
#include "../passes/passes.h"
#include <stdint.h>

#define MAX_CALL_DEPTH 64

typedef enum { V_ERR, V_TENSOR, V_INT, V_FLOAT, V_BOOL, V_STR, V_NONE, V_LIST, V_DTYPE, V_FN } vkind;

typedef struct value {
    vkind k;
    int id;                 /* V_TENSOR: node id */
    int64_t i;              /* V_INT, V_BOOL */
    double f;               /* V_FLOAT */
    const char *s;          /* V_STR */
    ir_dtype dt;            /* V_DTYPE */
    const ast_decl *fn;     /* V_FN */
    int n;                  /* V_LIST */
    struct value *items;
    bool tuple;             /* V_LIST made by `return a, b` */
} value;

/* Name -> pointer hash map (open addressing; keys are not copied). Name lookups were
 * linear scans, which made long fns and many params quadratic (bench/frontend_scale). */
typedef struct name_map {
    int cap, n;             /* cap: 0 or a power of two */
    const char **keys;
    void **vals;
} name_map;

/* A scope is a chain of bindings, newest first. A chain only grows: code leaves a scope by
 * restoring a saved chain or starting a new one (scope = NULL), never by cutting a chain,
 * so the map in a chain's first binding (its root) holds the newest binding of each name. */
typedef struct binding {
    const char *name;
    value v;
    struct binding *next;
    struct binding *root;   /* first binding of this chain */
    name_map *map;          /* root only: name -> newest binding of the chain */
} binding;

typedef struct global {
    const char *name;
    src_loc loc;
    int kind;               /* DECL_* */
    value v;                /* consts: V_INT/V_FLOAT */
    const ast_decl *decl;
    int param_index;
} global;

typedef struct lower_ctx {
    arena *ar;
    const ast_file *file;
    lower_opts *opts;
    ir_module *mod;
    int nglobals, gcap;
    global *globals;
    name_map gmap;          /* global name -> index + 1 */
    /* per export function */
    ir_func *fn;
    int *param_nodes;       /* node id of each param in fn, or -1 */
    binding *scope;
    const ast_decl *stack[MAX_CALL_DEPTH];
    int depth;
    src_loc loc;            /* location of the expression being lowered */
    const char *bind_name;  /* name the current statement binds, for node names */
    const ast_decl *grad_export;   /* the grad export being lowered, or NULL */
    /* custom-gradient regions of the function being differentiated (passes.h) */
    int ncustom, customcap;
    pass_custom *customs;
    int in_custom;                 /* > 0 inside a recorded region: inner ones are not recorded */
    /* checkpoint regions of the function being differentiated (passes.h) */
    int ncheckpoints, checkpointcap;
    pass_checkpoint *checkpoints;
    int in_checkpoint;             /* > 0 inside a recorded one: inner ones are not recorded */
} lower_ctx;

/* The state of a block being executed: its return, once one has run. */
typedef struct exec_state {
    bool returned;
    value ret;
    src_loc ret_loc;
} exec_state;

#define MAX_ARGS 8

typedef struct builtin builtin;
typedef value (*builtin_fn)(lower_ctx *c, value *a, const builtin *b);
struct builtin {
    const char *name;
    const char *sig;        /* "x, axis=, keepdim=": `=` optional, `*rest` varargs (a list) */
    builtin_fn fn;
    ir_opcode op;
    int extra;
};

static const value VERR = {.k = V_ERR};

static inline value vint(int64_t i) { value v = {.k = V_INT, .i = i}; return v; }
static inline value vfloat(double f) { value v = {.k = V_FLOAT, .f = f}; return v; }
static inline value vtensor(int id) { value v = {.k = V_TENSOR, .id = id}; return v; }
static inline ir_node *node(lower_ctx *c, int id) { return &c->fn->nodes[id]; }
static inline bool is_number(value v) { return v.k == V_INT || v.k == V_FLOAT || v.k == V_BOOL; }
static inline double num(value v) { return v.k == V_FLOAT ? v.f : (double)v.i; }

/* ---- lower.c: values, emit helpers, names, statements, types, exported fns ---- */
const char *lw_vkind_name(vkind k);                          /* "a tensor", "an integer", ... */
void lw_shape_str(char *buf, size_t n, const ir_node *t);     /* "f32[2, 3]" */
void lw_type_str(char *buf, size_t len, ir_dtype dt, int rank, const int64_t *shape);
/* Appends a node at the current location; a shape-rule failure is a user error here. */
value lw_emit(lower_ctx *c, ir_proto *p);
value lw_emit1(lower_ctx *c, ir_opcode op, int a);
value lw_emit_cast(lower_ctx *c, int a, ir_dtype dt);        /* a itself when already dt */
value lw_emit_expand(lower_ctx *c, int a, int rank, const int64_t *shape);   /* a itself when same shape */
value lw_emit_const(lower_ctx *c, double v, ir_dtype dt);
int lw_edit_distance(const char *a, const char *b);          /* for did-you-mean notes */
global *lw_find_global(lower_ctx *c, const char *name);
value lw_param_value(lower_ctx *c, global *g);               /* the param's node in c->fn, made once */
void lw_bind_quiet(lower_ctx *c, const char *name, value v); /* binds without naming the node */
void lw_exec_block(lower_ctx *c, ast_stmt **body, int n, exec_state *st);
value lw_const_expr(lower_ctx *c, const ast_expr *e);        /* consts, literals, + - * / % ** */
void lw_export_fn(lower_ctx *c, const ast_decl *d);
/* Lowering continues in f: c->fn = f, with f's param nodes (made once per function) found. */
void lw_enter_fn(lower_ctx *c, ir_func *f);

/* ---- lower_builtins.c ---- */
extern const builtin lw_builtins[];
extern const size_t lw_nbuiltins;
const builtin *lw_find_builtin(const char *name);
bool lw_bind_args(lower_ctx *c, const char *fname, const char *sig, int npos, value *pos, const ast_arg *kw, int nkw,
                  const value *kwv, value *out);
bool lw_get_int(lower_ctx *c, value v, const char *what, int64_t *out);
value lw_to_tensor(lower_ctx *c, value v);                   /* numbers become rank-0 tensors */
value lw_binary(lower_ctx *c, ir_opcode op, value a, value b);
value lw_unary(lower_ctx *c, ir_opcode op, value x, const double *fattr, int64_t iattr);
value lw_matmul(lower_ctx *c, value a, value b);
value lw_reverse_dims(lower_ctx *c, int x);                  /* x.T */
value lw_index_along(lower_ctx *c, int x, int64_t ax, value idx, ir_opcode op, const char *fname);
value lw_bi_size(lower_ctx *c, value *a, const builtin *b);

/* ---- lower_grad.c ---- */
/* Records the region of an inlined call of fn (a helper with a custom gradient). */
value lw_record_custom(lower_ctx *c, const ast_decl *fn, value r, const value *args, int first, binding *inner,
                       src_loc call_loc);
/* `export g = grad(F[, wrt=[...]])` */
void lw_grad_export(lower_ctx *c, const ast_decl *d, const ast_decl *fn);
/* F's body lowered and differentiated into the function d->name (F's value, then one
 * gradient per wrt entry); NULL after an error. */
ir_func *lw_differentiate(lower_ctx *c, const ast_decl *d, const ast_decl *fn, int nwrt, const pass_wrt *wrt,
                          const char *const *wname, const src_loc *wloc);

/* ---- lower_step.c ---- */
/* `export step = sgd|adam|adamw(F, ...)` */
void lw_step_export(lower_ctx *c, const ast_decl *d, const ast_decl *fn);

#endif
