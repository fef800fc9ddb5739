/* Lowering: AST -> IR (see lower.h). The front end's user-facing checks live here, each
 * with the source location of the offending expression; the IR shape rules behind
 * ir_append() are the second line of defence and report through the same location. */
#include "lower.h"
#include "../passes/passes.h"
#include <errno.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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
} lower_ctx;

/* What the custom gradient of one inlined call needs later (pass_custom.data). */
typedef struct custom_rec {
    const ast_decl *fn;
    binding *scope;                /* the call's bindings (arguments, body) after its body */
    src_loc call_loc;
} custom_rec;

static const value VERR = {.k = V_ERR};

/* ------------------------------------------------------------------ helpers */

static value vint(int64_t i) { value v = {.k = V_INT, .i = i}; return v; }
static value vfloat(double f) { value v = {.k = V_FLOAT, .f = f}; return v; }
static value vtensor(int id) { value v = {.k = V_TENSOR, .id = id}; return v; }

static const char *vkind_name(vkind k)
{
    switch (k) {
    case V_TENSOR: return "a tensor";
    case V_INT: return "an integer";
    case V_FLOAT: return "a float";
    case V_BOOL: return "a bool";
    case V_STR: return "a string";
    case V_NONE: return "none";
    case V_LIST: return "a list";
    case V_DTYPE: return "a dtype";
    case V_FN: return "a function";
    default: return "an invalid value";
    }
}

static ir_node *node(lower_ctx *c, int id) { return &c->fn->nodes[id]; }

static void shape_str(char *buf, size_t n, const ir_node *t)
{
    snprintf(buf, n, "%s", ir_dtype_name(t->dtype));
    size_t o = strlen(buf);
    if (t->rank)
        ir_format_shape(buf + o, n - o, t->rank, t->shape);
}

/* Appends a node at the current location; a shape-rule failure is a user error here. */
static value emit(lower_ctx *c, ir_proto *p)
{
    char err[256];
    if (!c->fn) {   /* a constant expression (const, a declared shape) that needs a tensor */
        diag_error(c->loc, "not a constant expression: constants and declared shapes use numbers, consts and "
                           "+ - * / %% **");
        return VERR;
    }
    p->line = c->loc.line;
    p->col = c->loc.col;
    int id = ir_append(c->fn, p, err, sizeof err);
    if (id < 0) {
        diag_error(c->loc, "%s", err);
        return VERR;
    }
    return vtensor(id);
}

static value emit1(lower_ctx *c, ir_opcode op, int a)
{
    ir_proto p = {.op = op, .nin = 1, .in = &a};
    return emit(c, &p);
}

static value emit_cast(lower_ctx *c, int a, ir_dtype dt)
{
    if (node(c, a)->dtype == dt)
        return vtensor(a);
    ir_proto p = {.op = OP_cast, .dtype = dt, .nin = 1, .in = &a};
    return emit(c, &p);
}

static value emit_expand(lower_ctx *c, int a, int rank, const int64_t *shape)
{
    ir_node *n = node(c, a);
    bool same = n->rank == rank;
    for (int d = 0; same && d < rank; d++)
        same = n->shape[d] == shape[d];
    if (same)
        return vtensor(a);
    ir_proto p = {.op = OP_expand, .nin = 1, .in = &a, .nlist = rank};
    memcpy(p.list, shape, sizeof(int64_t) * (size_t)rank);
    return emit(c, &p);
}

static value emit_const(lower_ctx *c, double v, ir_dtype dt)
{
    ir_proto p = {.op = OP_constant, .dtype = dt, .f = {v}};
    return emit(c, &p);
}

static value emit_view(lower_ctx *c, ir_opcode op, int a, int n, const int64_t *list)
{
    ir_proto p = {.op = op, .nin = 1, .in = &a, .nlist = n};
    memcpy(p.list, list, sizeof(int64_t) * (size_t)n);
    return emit(c, &p);
}

static bool is_number(value v) { return v.k == V_INT || v.k == V_FLOAT || v.k == V_BOOL; }
static double num(value v) { return v.k == V_FLOAT ? v.f : (double)v.i; }

/* ------------------------------------------------------------------ type promotion */

static int category(ir_dtype t) { return t == DT_BOOL ? 0 : ir_dtype_is_int(t) ? 1 : 2; }
static int scalar_category(value v) { return v.k == V_BOOL ? 0 : v.k == V_INT ? 1 : 2; }

/* PyTorch's promote_types for two dtypes of equal standing */
static ir_dtype promote2(ir_dtype a, ir_dtype b)
{
    if (a == b)
        return a;
    int ca = category(a), cb = category(b);
    if (ca != cb)
        return ca > cb ? a : b;
    if (ca == 1)
        return DT_I64;
    if ((a == DT_F16 && b == DT_BF16) || (a == DT_BF16 && b == DT_F16))
        return DT_F32;
    static const int rank_of[DT_COUNT] = {0, 1, 2, 3, 3, 4, 5};
    return rank_of[a] > rank_of[b] ? a : b;
}

/* dtype of a weak scalar meeting a tensor of dtype t */
static ir_dtype scalar_with(value s, ir_dtype t)
{
    int cs = scalar_category(s), ct = category(t);
    if (cs <= ct)
        return t;
    return cs == 2 ? DT_F32 : DT_I64;
}

/* Result dtype of operands (tensors and weak scalars), by PyTorch's three tiers:
 * tensors with dims, then zero-dim tensors, then Python scalars. */
static ir_dtype promote_values(lower_ctx *c, const value *vs, int n)
{
    int have[3] = {0};
    ir_dtype best[3] = {DT_BOOL, DT_BOOL, DT_BOOL};
    int scat = -1;
    value sbest = VERR;
    for (int k = 0; k < n; k++) {
        if (vs[k].k == V_TENSOR) {
            ir_node *t = node(c, vs[k].id);
            int tier = t->rank ? 0 : 1;
            best[tier] = have[tier] ? promote2(best[tier], t->dtype) : t->dtype;
            have[tier] = 1;
        } else if (is_number(vs[k]) && scalar_category(vs[k]) > scat) {
            scat = scalar_category(vs[k]);
            sbest = vs[k];
        }
    }
    ir_dtype r;
    if (have[0]) {
        r = best[0];
        if (have[1] && category(best[1]) > category(r))
            r = best[1];
    } else if (have[1]) {
        r = best[1];
    } else {
        return scat == 2 ? DT_F32 : scat == 1 ? DT_I64 : DT_BOOL;
    }
    if (scat >= 0)
        r = scalar_with(sbest, r);
    return r;
}

/* NumPy broadcasting of several shapes; error names the shapes. */
static bool broadcast_shapes(lower_ctx *c, const value *vs, int n, int *rank, int64_t *shape)
{
    int r = 0;
    for (int k = 0; k < n; k++)
        if (vs[k].k == V_TENSOR && node(c, vs[k].id)->rank > r)
            r = node(c, vs[k].id)->rank;
    for (int d = 0; d < r; d++)
        shape[d] = 1;
    for (int k = 0; k < n; k++) {
        if (vs[k].k != V_TENSOR)
            continue;
        ir_node *t = node(c, vs[k].id);
        for (int d = 0; d < t->rank; d++) {
            int64_t *s = &shape[r - t->rank + d], ts = t->shape[d];
            if (*s == ts || ts == 1)
                continue;
            if (*s == 1) {
                *s = ts;
                continue;
            }
            char buf[6][128];
            int m = 0;
            for (int j = 0; j < n && m < 6; j++)
                if (vs[j].k == V_TENSOR)
                    shape_str(buf[m++], sizeof buf[0], node(c, vs[j].id));
            diag_error(c->loc, "shapes %s and %s cannot be broadcast: dimension %d is %lld in one and %lld in the other",
                       buf[0], m > 1 ? buf[1] : "?", d - t->rank, (long long)*s, (long long)ts);
            diag_note(c->loc, "broadcasting aligns shapes from the right; each dimension must match or be 1");
            return false;
        }
    }
    *rank = r;
    return true;
}

/* Materializes operands at one dtype and one shape: casts and stride-0 expands. */
static bool unify(lower_ctx *c, value *vs, int n, ir_dtype dt, int *out_ids)
{
    int rank;
    int64_t shape[IR_MAX_RANK];
    if (!broadcast_shapes(c, vs, n, &rank, shape))
        return false;
    for (int k = 0; k < n; k++) {
        value v = vs[k];
        if (v.k != V_TENSOR)
            v = emit_const(c, num(v), dt);
        else
            v = emit_cast(c, v.id, dt);
        if (v.k == V_ERR)
            return false;
        v = emit_expand(c, v.id, rank, shape);
        if (v.k == V_ERR)
            return false;
        out_ids[k] = v.id;
    }
    return true;
}

static bool expect_tensorish(lower_ctx *c, value v, const char *what)
{
    if (v.k == V_TENSOR || is_number(v))
        return true;
    if (v.k != V_ERR)
        diag_error(c->loc, "%s must be a tensor or a number, got %s", what, vkind_name(v.k));
    return false;
}

static value to_tensor(lower_ctx *c, value v)
{
    if (v.k == V_TENSOR || v.k == V_ERR)
        return v;
    if (is_number(v))
        return emit_const(c, num(v), v.k == V_FLOAT ? DT_F32 : v.k == V_INT ? DT_I64 : DT_BOOL);
    diag_error(c->loc, "expected a tensor, got %s", vkind_name(v.k));
    return VERR;
}

/* ------------------------------------------------------------------ argument binding */

static int edit_distance(const char *a, const char *b);

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

/* Binds positional and keyword arguments to the signature's slots. Absent optional
 * arguments are V_NONE; `*rest` collects remaining positionals into a V_LIST (or takes
 * a single list argument as is, so `view(x, [2, 3])` equals `x.view(2, 3)`). */
static bool bind_args(lower_ctx *c, const char *fname, const char *sig, int npos, value *pos,
                      const ast_arg *kw, int nkw, const value *kwv, value *out)
{
    char names[MAX_ARGS][24];
    bool optional[MAX_ARGS], vararg[MAX_ARGS], set[MAX_ARGS];
    int n = 0;
    for (const char *p = sig; *p && n < MAX_ARGS;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        vararg[n] = *p == '*';
        if (vararg[n])
            p++;
        int len = 0;
        while (*p && *p != ',' && *p != '=' && *p != ' ' && len < 23)
            names[n][len++] = *p++;
        names[n][len] = 0;
        optional[n] = *p == '=';
        while (*p && *p != ',')
            p++;
        set[n] = false;
        out[n].k = V_NONE;
        n++;
    }
    int k = 0;
    for (int s = 0; s < n; s++) {
        if (vararg[s]) {
            if (k == npos)
                break;
            if (npos - k == 1 && pos[k].k == V_LIST) {
                out[s] = pos[k++];
            } else {
                value l = {.k = V_LIST, .n = npos - k};
                l.items = arena_alloc(c->ar, sizeof(value) * (size_t)(npos - k));
                memcpy(l.items, pos + k, sizeof(value) * (size_t)(npos - k));
                out[s] = l;
                k = npos;
            }
            set[s] = true;
            break;
        }
        if (k == npos)
            break;
        out[s] = pos[k++];
        set[s] = true;
    }
    if (k < npos) {
        diag_error(c->loc, "%s() takes at most %d positional argument%s, got %d", fname, k, k == 1 ? "" : "s", npos);
        return false;
    }
    for (int j = 0; j < nkw; j++) {
        const char *kn = kw[j].name;
        int s = -1;
        for (int t = 0; t < n; t++)
            if (strcmp(names[t], kn) == 0 || (strcmp(kn, "dim") == 0 && strcmp(names[t], "axis") == 0))
                s = t;
        if (s < 0) {
            diag_error(kw[j].loc, "%s() has no argument named '%s'", fname, kn);
            for (int t = 0; t < n; t++)
                if (strlen(names[t]) > 1 && edit_distance(kn, names[t]) <= 2) {
                    diag_note(kw[j].loc, "did you mean '%s'?", names[t]);
                    break;
                }
            return false;
        }
        if (set[s]) {
            diag_error(kw[j].loc, "%s() got argument '%s' twice", fname, names[s]);
            return false;
        }
        out[s] = kwv[j];
        set[s] = true;
    }
    for (int s = 0; s < n; s++) {
        if (set[s] && out[s].k == V_ERR)
            return false;
        if (!set[s] && !optional[s] && !vararg[s]) {
            diag_error(c->loc, "%s() is missing argument '%s' (signature: %s(%s))", fname, names[s], fname, sig);
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------------ argument coercions */

static bool get_int(lower_ctx *c, value v, const char *what, int64_t *out)
{
    if (v.k == V_INT) {
        *out = v.i;
        return true;
    }
    if (v.k != V_ERR)
        diag_error(c->loc, "%s must be a compile-time integer, got %s", what, vkind_name(v.k));
    return false;
}

static bool get_num(lower_ctx *c, value v, const char *what, double *out)
{
    if (is_number(v)) {
        *out = num(v);
        return true;
    }
    if (v.k != V_ERR)
        diag_error(c->loc, "%s must be a compile-time number, got %s", what, vkind_name(v.k));
    return false;
}

static bool get_bool(lower_ctx *c, value v, bool dflt, bool *out)
{
    if (v.k == V_NONE) {
        *out = dflt;
        return true;
    }
    if (v.k == V_BOOL || v.k == V_INT) {
        *out = v.i != 0;
        return true;
    }
    if (v.k != V_ERR)
        diag_error(c->loc, "expected true or false, got %s", vkind_name(v.k));
    return false;
}

static bool get_tensor(lower_ctx *c, value v, const char *what, int *id)
{
    if (v.k == V_TENSOR) {
        *id = v.id;
        return true;
    }
    if (v.k != V_ERR)
        diag_error(c->loc, "%s must be a tensor, got %s", what, vkind_name(v.k));
    return false;
}

/* Normalizes a possibly negative axis against a rank (PyTorch's maybe_wrap_dim). */
static bool wrap_axis(lower_ctx *c, int64_t ax, int rank, int64_t *out)
{
    int r = rank ? rank : 1;
    if (ax < -r || ax >= r) {
        diag_error(c->loc, "axis %lld is out of range for a tensor of rank %d (expected %d..%d)", (long long)ax,
                   rank, -r, r - 1);
        return false;
    }
    *out = ax < 0 ? ax + r : ax;
    return true;
}

/* A shape: a list of compile-time ints (from a list literal, varargs or x.shape). */
static bool get_shape(lower_ctx *c, value v, int *rank, int64_t *shape, bool allow_infer)
{
    if (v.k == V_INT) {
        value l = {.k = V_LIST, .n = 1, .items = &v};
        return get_shape(c, l, rank, shape, allow_infer);
    }
    if (v.k != V_LIST) {
        if (v.k != V_ERR)
            diag_error(c->loc, "a shape must be a list of integers, got %s", vkind_name(v.k));
        return false;
    }
    if (v.n > IR_MAX_RANK) {
        diag_error(c->loc, "shapes have at most %d dimensions, got %d", IR_MAX_RANK, v.n);
        return false;
    }
    for (int d = 0; d < v.n; d++) {
        if (!get_int(c, v.items[d], "a dimension", &shape[d]))
            return false;
        if (shape[d] < 0 && !(allow_infer && shape[d] == -1)) {
            diag_error(c->loc, "dimension %d is %lld; sizes must be >= 0%s", d, (long long)shape[d],
                       allow_infer ? " (or -1 to infer one)" : "");
            return false;
        }
    }
    *rank = v.n;
    return true;
}

/* Axis list for reductions: none = all, an int, or a list; sorted, distinct. */
static bool get_axes(lower_ctx *c, value v, int rank, int *n, int64_t *axes)
{
    bool mark[IR_MAX_RANK] = {0};
    if (v.k == V_NONE) {
        for (int d = 0; d < rank; d++)
            mark[d] = true;
    } else {
        value one = v;
        int cnt = v.k == V_LIST ? v.n : 1;
        for (int k = 0; k < cnt; k++) {
            int64_t ax;
            if (!get_int(c, v.k == V_LIST ? v.items[k] : one, "an axis", &ax) || !wrap_axis(c, ax, rank, &ax))
                return false;
            if (rank == 0)
                continue;
            if (mark[ax]) {
                diag_error(c->loc, "axis %lld appears more than once", (long long)ax);
                return false;
            }
            mark[ax] = true;
        }
    }
    *n = 0;
    for (int d = 0; d < rank; d++)
        if (mark[d])
            axes[(*n)++] = d;
    return true;
}

/* ------------------------------------------------------------------ elementwise */

static value fold_binary(lower_ctx *c, ir_opcode op, value a, value b);

/* a OP b with broadcasting and promotion; comparisons give bool; `/` is true division */
static value binary(lower_ctx *c, ir_opcode op, value a, value b)
{
    if (!expect_tensorish(c, a, "the left operand") || !expect_tensorish(c, b, "the right operand"))
        return VERR;
    if (a.k != V_TENSOR && b.k != V_TENSOR)
        return fold_binary(c, op, a, b);
    value vs[2] = {a, b};
    ir_dtype dt = promote_values(c, vs, 2);
    unsigned fl = ir_ops[op].flags;
    if (fl & OPF_BOOLIO) {
        if (dt != DT_BOOL) {
            diag_error(c->loc, "'%s' needs bool operands, got %s; compare first (e.g. x > 0)",
                       op == OP_land ? "&" : "|", ir_dtype_name(dt));
            return VERR;
        }
    } else if (!(fl & OPF_CMP) && dt == DT_BOOL && op != OP_div) {
        /* torch: bool + bool and bool * bool stay bool (or / and); other arithmetic is refused */
        if (op == OP_add || op == OP_mul || op == OP_maximum || op == OP_minimum)
            op = op == OP_add || op == OP_maximum ? OP_lor : OP_land;
        else {
            diag_error(c->loc, "'%s' of bool tensors is not supported; use | & and ! on bools, or cast them first "
                               "(x.to(i64))", ir_ops[op].name);
            return VERR;
        }
    }
    if (op == OP_div && !ir_dtype_is_float(dt))
        dt = DT_F32;   /* true division, like torch.div */
    if (op == OP_pow && !ir_dtype_is_float(dt) && b.k == V_INT && b.i < 0) {
        diag_error(c->loc, "integers to negative integer powers are not allowed; use a float exponent (x ** -1.0)");
        return VERR;
    }
    int ids[2];
    if (!unify(c, vs, 2, dt, ids))
        return VERR;
    ir_proto p = {.op = op, .nin = 2, .in = ids};
    return emit(c, &p);
}

/* compile-time arithmetic on literals and consts */
static value fold_binary(lower_ctx *c, ir_opcode op, value a, value b)
{
    bool ints = a.k != V_FLOAT && b.k != V_FLOAT;
    double x = num(a), y = num(b);
    int64_t i = a.i, j = b.i;
    value r;
    int64_t w;
    switch (op) {
    case OP_add:
    case OP_sub:
    case OP_mul:
        if (!ints)
            return vfloat(op == OP_add ? x + y : op == OP_sub ? x - y : x * y);
        if (op == OP_add ? __builtin_add_overflow(i, j, &w)
                         : op == OP_sub ? __builtin_sub_overflow(i, j, &w) : __builtin_mul_overflow(i, j, &w)) {
            diag_error(c->loc, "integer overflow in a compile-time expression");
            return VERR;
        }
        return vint(w);
    case OP_div:
    case OP_mod:
        if (ints && j == 0) {
            diag_error(c->loc, "division by zero in a compile-time expression");
            return VERR;
        }
        if (!ints)
            return op == OP_div ? vfloat(x / y) : vfloat(x - floor(x / y) * y);
        if (i == INT64_MIN && j == -1) {
            diag_error(c->loc, "integer overflow in a compile-time expression");
            return VERR;
        }
        if (op == OP_div)   /* Python's value (1 / 2 is 0.5); exact quotients stay integers for shapes */
            return i % j == 0 ? vint(i / j) : vfloat((double)i / (double)j);
        return vint(((i % j) + j) % j);
    case OP_pow:
        if (ints && j >= 0) {
            if (i == 0 || i == 1)
                return vint(j == 0 ? 1 : i);
            if (i == -1)
                return vint(j % 2 ? -1 : 1);
            int64_t p = 1;   /* |i| >= 2 overflows within 63 steps */
            for (int64_t k = 0; k < j; k++)
                if (__builtin_mul_overflow(p, i, &p)) {
                    diag_error(c->loc, "integer overflow in a compile-time expression");
                    return VERR;
                }
            return vint(p);
        }
        return vfloat(pow(x, y));
    case OP_maximum: return ints ? vint(i > j ? i : j) : vfloat(fmax(x, y));
    case OP_minimum: return ints ? vint(i < j ? i : j) : vfloat(fmin(x, y));
    case OP_eq: r.i = x == y; break;
    case OP_ne: r.i = x != y; break;
    case OP_lt: r.i = x < y; break;
    case OP_le: r.i = x <= y; break;
    case OP_gt: r.i = x > y; break;
    case OP_ge: r.i = x >= y; break;
    case OP_land: r.i = x != 0 && y != 0; break;
    case OP_lor: r.i = x != 0 || y != 0; break;
    default: diag_ice("fold_binary", "op %s", ir_ops[op].name);
    }
    r.k = V_BOOL;
    return r;
}

/* unary math: integer inputs of float-only ops promote to f32, like torch.exp(int) */
static value unary(lower_ctx *c, ir_opcode op, value x, const double *fattr, int64_t iattr)
{
    if (!expect_tensorish(c, x, "the operand"))
        return VERR;
    x = to_tensor(c, x);
    if (x.k == V_ERR)
        return VERR;
    ir_dtype dt = node(c, x.id)->dtype;
    unsigned fl = ir_ops[op].flags;
    if ((fl & OPF_FLOAT) && !ir_dtype_is_float(dt))
        x = emit_cast(c, x.id, DT_F32);
    else if (op == OP_lnot && dt != DT_BOOL) {
        diag_error(c->loc, "'!' needs a bool operand, got %s; compare first (e.g. x != 0)", ir_dtype_name(dt));
        return VERR;
    } else if (op != OP_lnot && dt == DT_BOOL) {
        diag_error(c->loc, "%s does not take a bool tensor; cast it first (x.to(f32))", ir_ops[op].name);
        return VERR;
    }
    if (x.k == V_ERR)
        return VERR;
    ir_proto p = {.op = op, .nin = 1, .in = &x.id, .i = {iattr}};
    if (fattr)
        memcpy(p.f, fattr, sizeof p.f);
    return emit(c, &p);
}

static value bi_unary(lower_ctx *c, value *a, const builtin *b) { return unary(c, b->op, a[0], NULL, 0); }
static value bi_binary(lower_ctx *c, value *a, const builtin *b) { return binary(c, b->op, a[0], a[1]); }

static value bi_gelu(lower_ctx *c, value *a, const builtin *b)
{
    int tanh_form = 0;
    if (a[1].k == V_STR) {
        if (strcmp(a[1].s, "tanh") == 0)
            tanh_form = 1;
        else if (strcmp(a[1].s, "none") != 0) {
            diag_error(c->loc, "approximate must be \"none\" or \"tanh\", got \"%s\"", a[1].s);
            return VERR;
        }
    } else if (a[1].k != V_NONE) {
        diag_error(c->loc, "approximate must be \"none\" or \"tanh\"");
        return VERR;
    }
    return unary(c, OP_gelu, a[0], NULL, tanh_form);
}

static value bi_leaky_relu(lower_ctx *c, value *a, const builtin *b)
{
    double f[2] = {0.01, 0};
    value s = a[1].k != V_NONE ? a[1] : a[2];
    if (s.k != V_NONE && !get_num(c, s, "slope", &f[0]))
        return VERR;
    return unary(c, OP_leaky_relu, a[0], f, 0);
}

static value bi_clamp(lower_ctx *c, value *a, const builtin *b)
{
    double f[2] = {-INFINITY, INFINITY};
    if (a[1].k != V_NONE && !get_num(c, a[1], "lo", &f[0]))
        return VERR;
    if (a[2].k != V_NONE && !get_num(c, a[2], "hi", &f[1]))
        return VERR;
    if (a[1].k == V_NONE && a[2].k == V_NONE) {
        diag_error(c->loc, "clamp() needs at least one of lo and hi");
        return VERR;
    }
    value x = to_tensor(c, a[0]);
    if (x.k == V_ERR)
        return VERR;
    /* torch: a float bound on an integer tensor gives a float result */
    if (!ir_dtype_is_float(node(c, x.id)->dtype) && (a[1].k == V_FLOAT || a[2].k == V_FLOAT))
        x = emit_cast(c, x.id, DT_F32);
    if (x.k == V_ERR)
        return VERR;
    return unary(c, OP_clamp, x, f, 0);
}

static value bi_where(lower_ctx *c, value *a, const builtin *b)
{
    if (!expect_tensorish(c, a[0], "the condition") || !expect_tensorish(c, a[1], "where's second argument") ||
        !expect_tensorish(c, a[2], "where's third argument"))
        return VERR;
    value m = to_tensor(c, a[0]);
    if (m.k == V_ERR)
        return VERR;
    if (node(c, m.id)->dtype != DT_BOOL) {
        diag_error(c->loc, "where() needs a bool condition, got %s; compare first (e.g. x > 0)",
                   ir_dtype_name(node(c, m.id)->dtype));
        return VERR;
    }
    value br[2] = {a[1], a[2]};
    ir_dtype dt = promote_values(c, br, 2);
    value all[3] = {m, a[1], a[2]};
    int ids[3], rank;
    int64_t shape[IR_MAX_RANK];
    if (!broadcast_shapes(c, all, 3, &rank, shape))
        return VERR;
    for (int k = 0; k < 3; k++) {   /* the condition stays bool; the branches meet at dt */
        value v = k == 0 ? m : all[k].k == V_TENSOR ? emit_cast(c, all[k].id, dt) : emit_const(c, num(all[k]), dt);
        if (v.k == V_ERR || (v = emit_expand(c, v.id, rank, shape)).k == V_ERR)
            return VERR;
        ids[k] = v.id;
    }
    ir_proto p = {.op = OP_where, .nin = 3, .in = ids};
    return emit(c, &p);
}

static value bi_masked_fill(lower_ctx *c, value *a, const builtin *b)
{
    int x;
    if (!get_tensor(c, a[0], "masked_fill's input", &x))
        return VERR;
    if (!is_number(a[2]) && a[2].k != V_TENSOR) {
        diag_error(c->loc, "masked_fill's value must be a number or a tensor");
        return VERR;
    }
    value w[3] = {a[1], a[2], a[0]};
    value r = bi_where(c, w, b);
    if (r.k == V_ERR)
        return VERR;
    ir_node *rn = node(c, r.id), *xn = node(c, x);
    if (rn->rank != xn->rank) {
        diag_error(c->loc, "masked_fill's mask must broadcast to the input's shape");
        return VERR;
    }
    return emit_cast(c, r.id, xn->dtype);
}

/* ------------------------------------------------------------------ reductions and nn */

static value bi_reduce(lower_ctx *c, value *a, const builtin *b)
{
    value x = to_tensor(c, a[0]);
    if (x.k == V_ERR)
        return VERR;
    ir_node *xn = node(c, x.id);
    int n;
    int64_t axes[IR_MAX_RANK];
    bool keep;
    if (!get_axes(c, a[1], xn->rank, &n, axes) || !get_bool(c, a[2], false, &keep))
        return VERR;
    ir_opcode op = b->op;
    if ((op == OP_argmax || op == OP_argmin) && a[1].k == V_LIST) {
        diag_error(c->loc, "%s() takes a single axis (or none for the flattened index), not a list", b->name);
        return VERR;
    }
    if (op == OP_max || op == OP_min || op == OP_argmax || op == OP_argmin) {
        for (int k = 0; k < n; k++)
            if (xn->shape[axes[k]] == 0) {
                diag_error(c->loc, "%s() over an empty dimension (axis %lld has size 0) has no result", b->name,
                           (long long)axes[k]);
                return VERR;
            }
    }
    if ((ir_ops[op].flags & OPF_FLOAT) && !ir_dtype_is_float(xn->dtype)) {
        if (op == OP_logsumexp) {
            x = emit_cast(c, x.id, DT_F32);   /* torch.logsumexp promotes integers */
        } else {
            diag_error(c->loc, "%s() needs a floating-point tensor, got %s; cast it first (x.to(f32))",
                       ir_ops[op].name, ir_dtype_name(xn->dtype));
            return VERR;
        }
    } else if (xn->dtype == DT_BOOL && (op == OP_argmax || op == OP_argmin)) {
        x = emit_cast(c, x.id, DT_I64);
    }
    if (x.k == V_ERR)
        return VERR;
    ir_proto p = {.op = op, .nin = 1, .in = &x.id, .nlist = n, .i = {keep}};
    memcpy(p.list, axes, sizeof(int64_t) * (size_t)n);
    return emit(c, &p);
}

static bool float_input(lower_ctx *c, value *v, const char *fname)
{
    *v = to_tensor(c, *v);
    if (v->k == V_ERR)
        return false;
    ir_dtype dt = node(c, v->id)->dtype;
    if (!ir_dtype_is_float(dt)) {
        diag_error(c->loc, "%s() needs a floating-point tensor, got %s; cast it first (x.to(f32))", fname,
                   ir_dtype_name(dt));
        return false;
    }
    return true;
}

static value bi_softmax(lower_ctx *c, value *a, const builtin *b)
{
    value x = a[0];
    if (!float_input(c, &x, b->name))
        return VERR;
    int64_t ax = -1;
    if (a[1].k != V_NONE && !get_int(c, a[1], "axis", &ax))
        return VERR;
    if (!wrap_axis(c, ax, node(c, x.id)->rank, &ax))
        return VERR;
    if (node(c, x.id)->rank == 0) {
        diag_error(c->loc, "%s() needs a tensor of rank >= 1", b->name);
        return VERR;
    }
    ir_proto p = {.op = b->op, .nin = 1, .in = &x.id, .i = {ax}};
    return emit(c, &p);
}

static value bi_cross_entropy(lower_ctx *c, value *a, const builtin *b)
{
    value x = a[0];
    int y;
    if (!float_input(c, &x, "cross_entropy") || !get_tensor(c, a[1], "labels", &y))
        return VERR;
    ir_node *xn = node(c, x.id), *yn = node(c, y);
    char sx[128], sy[128];
    shape_str(sx, sizeof sx, xn);
    shape_str(sy, sizeof sy, yn);
    if (!ir_dtype_is_int(yn->dtype)) {
        diag_error(c->loc, "cross_entropy() needs integer class labels (i32 or i64), got %s", sy);
        return VERR;
    }
    if (xn->rank != 2 || yn->rank != 1 || xn->shape[0] != yn->shape[0]) {
        diag_error(c->loc, "cross_entropy() needs logits [N, C] and labels [N], got %s and %s", sx, sy);
        return VERR;
    }
    int ids[2] = {x.id, y};
    ir_proto p = {.op = OP_cross_entropy, .nin = 2, .in = ids};
    return emit(c, &p);
}

static value bi_mse(lower_ctx *c, value *a, const builtin *b)
{
    value d = binary(c, OP_sub, a[0], a[1]);
    if (d.k == V_ERR)
        return VERR;
    if (!ir_dtype_is_float(node(c, d.id)->dtype)) {
        diag_error(c->loc, "mse() needs floating-point tensors");
        return VERR;
    }
    value sq = binary(c, OP_mul, d, d);
    if (sq.k == V_ERR)
        return VERR;
    value r[3] = {sq, {.k = V_NONE}, {.k = V_NONE}};
    builtin mean = {.name = "mean", .op = OP_mean};
    return bi_reduce(c, r, &mean);
}

static value bi_layer_norm(lower_ctx *c, value *a, const builtin *b)
{
    value x = a[0];
    if (!float_input(c, &x, "layer_norm"))
        return VERR;
    ir_node *xn = node(c, x.id);
    if (xn->rank == 0) {
        diag_error(c->loc, "layer_norm() needs a tensor of rank >= 1");
        return VERR;
    }
    int64_t d = xn->shape[xn->rank - 1];
    double eps = 1e-5;
    if (a[3].k != V_NONE && !get_num(c, a[3], "eps", &eps))
        return VERR;
    int ids[3] = {x.id, -1, -1};
    for (int k = 1; k <= 2; k++) {
        value w = a[k];
        if (w.k == V_NONE) {   /* no affine part: weight 1, bias 0 */
            ir_proto p = {.op = OP_full, .dtype = xn->dtype, .nlist = 1, .list = {d}, .f = {k == 1 ? 1.0 : 0.0}};
            w = emit(c, &p);
        } else if (w.k == V_TENSOR) {
            ir_node *wn = node(c, w.id);
            if (wn->rank != 1 || wn->shape[0] != d) {
                char sw[128], sx[128];
                shape_str(sw, sizeof sw, wn);
                shape_str(sx, sizeof sx, node(c, x.id));
                diag_error(c->loc, "layer_norm() %s must have shape [%lld] (the last dimension of x %s), got %s",
                           k == 1 ? "weight" : "bias", (long long)d, sx, sw);
                return VERR;
            }
            w = emit_cast(c, w.id, node(c, x.id)->dtype);
        } else {
            diag_error(c->loc, "layer_norm() %s must be a tensor", k == 1 ? "weight" : "bias");
            return VERR;
        }
        if (w.k == V_ERR)
            return VERR;
        ids[k] = w.id;
    }
    ir_proto p = {.op = OP_layer_norm, .nin = 3, .in = ids, .f = {eps}};
    return emit(c, &p);
}

static value bi_one_hot(lower_ctx *c, value *a, const builtin *b)
{
    int y;
    int64_t n;
    if (!get_tensor(c, a[0], "labels", &y) || !get_int(c, a[1], "num_classes", &n))
        return VERR;
    if (!ir_dtype_is_int(node(c, y)->dtype)) {
        diag_error(c->loc, "one_hot() needs integer labels, got %s", ir_dtype_name(node(c, y)->dtype));
        return VERR;
    }
    if (n < 1) {
        diag_error(c->loc, "one_hot() needs a positive number of classes, got %lld", (long long)n);
        return VERR;
    }
    ir_proto p = {.op = OP_one_hot, .nin = 1, .in = &y, .i = {n}};
    return emit(c, &p);
}

/* ------------------------------------------------------------------ matmul (torch.matmul's rules) */

static value matmul(lower_ctx *c, value a, value b)
{
    if (a.k != V_TENSOR || b.k != V_TENSOR) {
        if (a.k != V_ERR && b.k != V_ERR)
            diag_error(c->loc, "'@' needs two tensors, got %s and %s", vkind_name(a.k), vkind_name(b.k));
        return VERR;
    }
    ir_node *an = node(c, a.id), *bn = node(c, b.id);
    char sa[128], sb[128];
    shape_str(sa, sizeof sa, an);
    shape_str(sb, sizeof sb, bn);
    if (an->rank == 0 || bn->rank == 0) {
        diag_error(c->loc, "'@' needs tensors of rank >= 1, got %s and %s; use '*' for scalars", sa, sb);
        return VERR;
    }
    int ra = an->rank, rb = bn->rank;
    int64_t ka = an->shape[ra - 1], kb = bn->shape[rb >= 2 ? rb - 2 : 0];
    if (ka != kb) {
        diag_error(c->loc, "matmul shapes %s and %s do not match: %lld columns against %lld rows", sa, sb,
                   (long long)ka, (long long)kb);
        return VERR;
    }
    value vs[2] = {a, b};
    ir_dtype dt = promote_values(c, vs, 2);
    if (dt == DT_BOOL) {
        diag_error(c->loc, "'@' of bool tensors is not supported; cast them first");
        return VERR;
    }
    a = emit_cast(c, a.id, dt);
    b = emit_cast(c, b.id, dt);
    if (a.k == V_ERR || b.k == V_ERR)
        return VERR;
    /* 1-D operands become [1, K] / [K, 1] and the extra dim is dropped afterwards */
    if (ra == 1) {
        ir_proto p = {.op = OP_unsqueeze, .nin = 1, .in = &a.id, .i = {0}};
        if ((a = emit(c, &p)).k == V_ERR)
            return VERR;
    }
    if (rb == 1) {
        ir_proto p = {.op = OP_unsqueeze, .nin = 1, .in = &b.id, .i = {1}};
        if ((b = emit(c, &p)).k == V_ERR)
            return VERR;
    }
    an = node(c, a.id);
    bn = node(c, b.id);
    int bra = an->rank - 2, brb = bn->rank - 2, br = bra > brb ? bra : brb;
    if (br + 2 > IR_MAX_RANK) {
        diag_error(c->loc, "matmul result rank exceeds %d", IR_MAX_RANK);
        return VERR;
    }
    int64_t batch[IR_MAX_RANK];
    for (int d = 0; d < br; d++) {
        int da = d - (br - bra), db = d - (br - brb);
        int64_t x = da >= 0 ? an->shape[da] : 1, y = db >= 0 ? bn->shape[db] : 1;
        if (x != y && x != 1 && y != 1) {
            diag_error(c->loc, "matmul batch dimensions of %s and %s cannot be broadcast", sa, sb);
            return VERR;
        }
        batch[d] = x == 1 ? y : x;
    }
    int64_t sha[IR_MAX_RANK], shb[IR_MAX_RANK];
    memcpy(sha, batch, sizeof(int64_t) * (size_t)br);
    memcpy(shb, batch, sizeof(int64_t) * (size_t)br);
    sha[br] = an->shape[an->rank - 2];
    sha[br + 1] = an->shape[an->rank - 1];
    shb[br] = bn->shape[bn->rank - 2];
    shb[br + 1] = bn->shape[bn->rank - 1];
    a = emit_expand(c, a.id, br + 2, sha);
    if (a.k == V_ERR)
        return VERR;
    b = emit_expand(c, b.id, br + 2, shb);
    if (b.k == V_ERR)
        return VERR;
    int ids[2] = {a.id, b.id};
    ir_proto p = {.op = OP_matmul, .nin = 2, .in = ids};
    value r = emit(c, &p);
    if (r.k != V_ERR && rb == 1) {
        int64_t ax = node(c, r.id)->rank - 1;
        r = emit_view(c, OP_squeeze, r.id, 1, &ax);
    }
    if (r.k != V_ERR && ra == 1) {
        int64_t ax = node(c, r.id)->rank - (rb == 1 ? 1 : 2);
        r = emit_view(c, OP_squeeze, r.id, 1, &ax);
    }
    return r;
}

/* ------------------------------------------------------------------ views and copies */

static value copy_of(lower_ctx *c, int x) { return emit1(c, OP_copy, x); }

/* view(x, shape) with one -1 inferred; strides by PyTorch's rule or a located error */
static value do_view(lower_ctx *c, int x, value shp, bool reshape, const char *fname)
{
    ir_node *xn = node(c, x);
    int rank;
    int64_t shape[IR_MAX_RANK];
    if (!get_shape(c, shp, &rank, shape, true))
        return VERR;
    int infer = -1;
    int64_t known = 1;
    for (int d = 0; d < rank; d++) {
        if (shape[d] == -1) {
            if (infer >= 0) {
                diag_error(c->loc, "%s(): only one dimension can be -1", fname);
                return VERR;
            }
            infer = d;
        } else
            known *= shape[d];
    }
    int64_t numel = ir_numel(xn);
    char sx[128], sn[128];
    shape_str(sx, sizeof sx, xn);
    if (infer >= 0) {
        if (known == 0 || numel % known) {
            ir_format_shape(sn, sizeof sn, rank, shape);
            diag_error(c->loc, "%s(): shape %s is invalid for input %s of %lld elements", fname, sn, sx,
                       (long long)numel);
            return VERR;
        }
        shape[infer] = numel / known;
        known = numel;
    }
    ir_format_shape(sn, sizeof sn, rank, shape);
    if (known != numel) {
        diag_error(c->loc, "%s(): shape %s is invalid for input %s of %lld elements", fname, sn, sx, (long long)numel);
        return VERR;
    }
    int64_t st[IR_MAX_RANK];
    if (!ir_view_strides(xn->rank, xn->shape, xn->strides, rank, shape, st)) {
        if (reshape) {   /* reshape copies exactly when view cannot */
            value cp = copy_of(c, x);
            if (cp.k == V_ERR)
                return VERR;
            x = cp.id;
        } else {
            char ss[128];
            ir_format_shape(ss, sizeof ss, xn->rank, xn->strides);
            diag_error(c->loc, "view(): cannot view %s with strides %s as %s without copying: at least one "
                               "new dimension spans two non-contiguous parts of the storage", sx, ss, sn);
            diag_note(c->loc, "use .contiguous().view(...) to copy first, or reshape(...), which copies only when it must");
            return VERR;
        }
    }
    return emit_view(c, OP_view, x, rank, shape);
}

static value bi_view(lower_ctx *c, value *a, const builtin *b)
{
    int x;
    if (!get_tensor(c, a[0], "the input", &x))
        return VERR;
    if (a[1].k == V_NONE) {
        diag_error(c->loc, "%s() needs a shape", b->name);
        return VERR;
    }
    return do_view(c, x, a[1], b->extra, b->name);
}

static value bi_flatten(lower_ctx *c, value *a, const builtin *b)
{
    int x;
    int64_t s = 0, e = -1;
    if (!get_tensor(c, a[0], "the input", &x) || (a[1].k != V_NONE && !get_int(c, a[1], "start_dim", &s)) ||
        (a[2].k != V_NONE && !get_int(c, a[2], "end_dim", &e)))
        return VERR;
    ir_node *xn = node(c, x);
    if (xn->rank == 0) {
        value one = vint(1);
        return do_view(c, x, one, true, "flatten");
    }
    if (!wrap_axis(c, s, xn->rank, &s) || !wrap_axis(c, e, xn->rank, &e))
        return VERR;
    if (s > e) {
        diag_error(c->loc, "flatten(): start_dim %lld comes after end_dim %lld", (long long)s, (long long)e);
        return VERR;
    }
    if (s == e)
        return vtensor(x);   /* torch returns the input itself: no view, strides kept */
    value l = {.k = V_LIST};
    l.items = arena_alloc(c->ar, sizeof(value) * IR_MAX_RANK);
    for (int d = 0; d < xn->rank; d++) {
        if (d > s && d <= e) {
            l.items[l.n - 1].i *= xn->shape[d];
            continue;
        }
        l.items[l.n++] = vint(xn->shape[d]);
    }
    return do_view(c, x, l, true, "flatten");
}

static value bi_permute(lower_ctx *c, value *a, const builtin *b)
{
    int x;
    int64_t dims[IR_MAX_RANK];
    if (!get_tensor(c, a[0], "the input", &x))
        return VERR;
    value l = a[1];
    int r = node(c, x)->rank;
    if (l.k != V_LIST || l.n != r) {
        diag_error(c->loc, "permute() needs %d dims for a tensor of rank %d", r, r);
        return VERR;
    }
    for (int d = 0; d < r; d++)
        if (!get_int(c, l.items[d], "a dim", &dims[d]) || !wrap_axis(c, dims[d], r, &dims[d]))
            return VERR;
    return emit_view(c, OP_permute, x, r, dims);
}

static value transpose_dims(lower_ctx *c, int x, int64_t d0, int64_t d1)
{
    int r = node(c, x)->rank;
    if (r == 0)
        return vtensor(x);
    if (!wrap_axis(c, d0, r, &d0) || !wrap_axis(c, d1, r, &d1))
        return VERR;
    int64_t perm[IR_MAX_RANK];
    for (int d = 0; d < r; d++)
        perm[d] = d;
    perm[d0] = d1;
    perm[d1] = d0;
    return emit_view(c, OP_permute, x, r, perm);
}

static value bi_transpose(lower_ctx *c, value *a, const builtin *b)
{
    int x;
    int64_t d0, d1;
    if (!get_tensor(c, a[0], "the input", &x) || !get_int(c, a[1], "dim0", &d0) || !get_int(c, a[2], "dim1", &d1))
        return VERR;
    return transpose_dims(c, x, d0, d1);
}

static value reverse_dims(lower_ctx *c, int x)
{
    int r = node(c, x)->rank;
    if (r < 2)
        return vtensor(x);
    int64_t perm[IR_MAX_RANK];
    for (int d = 0; d < r; d++)
        perm[d] = r - 1 - d;
    return emit_view(c, OP_permute, x, r, perm);
}

static value bi_squeeze(lower_ctx *c, value *a, const builtin *b)
{
    int x;
    if (!get_tensor(c, a[0], "the input", &x))
        return VERR;
    ir_node *xn = node(c, x);
    int n, m = 0;
    int64_t axes[IR_MAX_RANK], keep[IR_MAX_RANK];
    if (!get_axes(c, a[1], xn->rank, &n, axes))
        return VERR;
    for (int k = 0; k < n; k++)   /* torch: dims that are not size 1 are left alone */
        if (xn->shape[axes[k]] == 1)
            keep[m++] = axes[k];
    if (m == 0)
        return vtensor(x);
    return emit_view(c, OP_squeeze, x, m, keep);
}

static value bi_unsqueeze(lower_ctx *c, value *a, const builtin *b)
{
    int x;
    int64_t ax;
    if (!get_tensor(c, a[0], "the input", &x) || !get_int(c, a[1], "axis", &ax))
        return VERR;
    int r = node(c, x)->rank;
    if (ax < -(r + 1) || ax > r) {
        diag_error(c->loc, "unsqueeze() of a rank-%d tensor takes an axis in %d..%d, got %lld", r, -(r + 1), r, (long long)ax);
        return VERR;
    }
    ax = ax < 0 ? ax + r + 1 : ax;
    ir_proto p = {.op = OP_unsqueeze, .nin = 1, .in = &x, .i = {ax}};
    return emit(c, &p);
}

static value bi_expand(lower_ctx *c, value *a, const builtin *b)
{
    int x, rank;
    int64_t shape[IR_MAX_RANK];
    if (!get_tensor(c, a[0], "the input", &x) || !get_shape(c, a[1], &rank, shape, true))
        return VERR;
    ir_node *xn = node(c, x);
    char sx[128], sn[128];
    shape_str(sx, sizeof sx, xn);
    if (rank < xn->rank) {
        ir_format_shape(sn, sizeof sn, rank, shape);
        diag_error(c->loc, "%s(): cannot expand %s to the smaller rank of %s", b->name, sx, sn);
        return VERR;
    }
    for (int d = 0; d < rank; d++) {
        int xd = d - (rank - xn->rank);
        if (shape[d] == -1) {
            if (xd < 0) {
                diag_error(c->loc, "%s(): -1 is not allowed for a new leading dimension", b->name);
                return VERR;
            }
            shape[d] = xn->shape[xd];
        }
        if (xd >= 0 && xn->shape[xd] != shape[d] && xn->shape[xd] != 1) {
            ir_format_shape(sn, sizeof sn, rank, shape);
            diag_error(c->loc, "%s(): cannot expand %s to %s: dimension %d has size %lld, not 1", b->name, sx, sn,
                       xd, (long long)xn->shape[xd]);
            return VERR;
        }
    }
    return emit_expand(c, x, rank, shape);
}

static value bi_contiguous(lower_ctx *c, value *a, const builtin *b)
{
    int x;
    if (!get_tensor(c, a[0], "the input", &x))
        return VERR;
    if (b->extra == 0 && ir_is_contiguous(node(c, x)))
        return vtensor(x);   /* contiguous() copies only when it must */
    return copy_of(c, x);
}

static value bi_stop_gradient(lower_ctx *c, value *a, const builtin *b)
{
    int x;
    if (!get_tensor(c, a[0], "the input", &x))
        return VERR;
    return emit1(c, OP_stop_gradient, x);
}

static value bi_cast(lower_ctx *c, value *a, const builtin *b)
{
    value x = to_tensor(c, a[0]);
    if (x.k == V_ERR)
        return VERR;
    if (a[1].k != V_DTYPE) {
        if (a[1].k != V_ERR)
            diag_error(c->loc, "%s() needs a dtype (f16 bf16 f32 f64 i32 i64 bool), got %s", b->name, vkind_name(a[1].k));
        return VERR;
    }
    ir_proto p = {.op = OP_cast, .dtype = a[1].dt, .nin = 1, .in = &x.id};
    return emit(c, &p);
}

/* concat / stack: inputs promoted to one dtype; stack inserts the new axis by unsqueeze */
static value bi_concat(lower_ctx *c, value *a, const builtin *b)
{
    if (a[0].k != V_LIST || a[0].n == 0) {
        if (a[0].k != V_ERR)
            diag_error(c->loc, "%s() needs a non-empty list of tensors", b->name);
        return VERR;
    }
    int n = a[0].n;
    value *vs = a[0].items;
    for (int k = 0; k < n; k++)
        if (vs[k].k != V_TENSOR) {
            if (vs[k].k != V_ERR)
                diag_error(c->loc, "%s(): element %d is %s, not a tensor", b->name, k, vkind_name(vs[k].k));
            return VERR;
        }
    int64_t ax = 0;
    if (a[1].k != V_NONE && !get_int(c, a[1], "axis", &ax))
        return VERR;
    ir_node *first = node(c, vs[0].id);
    bool stack = b->extra;
    if (!wrap_axis(c, ax, first->rank + stack, &ax))
        return VERR;
    ir_dtype dt = promote_values(c, vs, n);
    int *ids = arena_alloc(c->ar, sizeof(int) * (size_t)n);
    char s0[128], sk[128];
    shape_str(s0, sizeof s0, first);
    for (int k = 0; k < n; k++) {
        ir_node *t = node(c, vs[k].id);
        shape_str(sk, sizeof sk, t);
        bool ok = t->rank == first->rank && (stack || t->rank > 0);
        for (int d = 0; ok && d < t->rank; d++)
            ok = t->shape[d] == first->shape[d] || (!stack && d == ax);
        if (!ok) {
            diag_error(c->loc, "%s(): tensor %d has shape %s, tensor 0 has %s; %s", b->name, k, sk, s0,
                       stack ? "stack needs equal shapes" : "all dimensions but the axis must match");
            return VERR;
        }
        value v = emit_cast(c, vs[k].id, dt);
        if (v.k != V_ERR && stack) {
            ir_proto p = {.op = OP_unsqueeze, .nin = 1, .in = &v.id, .i = {ax}};
            v = emit(c, &p);
        }
        if (v.k == V_ERR)
            return VERR;
        ids[k] = v.id;
    }
    ir_proto p = {.op = OP_concat, .nin = n, .in = ids, .i = {ax}};
    return emit(c, &p);
}

static value index_along(lower_ctx *c, int x, int64_t ax, value idx, ir_opcode op, const char *fname)
{
    int id;
    if (!get_tensor(c, idx, "the index", &id))
        return VERR;
    ir_node *in = node(c, id);
    if (in->dtype == DT_BOOL) {
        diag_error(c->loc, "a boolean mask cannot be used as an index: its result would have a data-dependent shape");
        diag_note(c->loc, "use where(mask, x, 0) or masked_fill(x, !mask, 0) to keep the shape");
        return VERR;
    }
    if (!ir_dtype_is_int(in->dtype)) {
        diag_error(c->loc, "%s: indices must be i32 or i64, got %s", fname, ir_dtype_name(in->dtype));
        return VERR;
    }
    if (!wrap_axis(c, ax, node(c, x)->rank, &ax))
        return VERR;
    if (op == OP_index && node(c, x)->rank == 0) {
        diag_error(c->loc, "%s: cannot index a scalar", fname);
        return VERR;
    }
    if (op == OP_gather) {
        ir_node *xn = node(c, x);
        char sx[128], si[128];
        shape_str(sx, sizeof sx, xn);
        shape_str(si, sizeof si, in);
        bool ok = xn->rank == in->rank;
        for (int d = 0; ok && d < xn->rank; d++)
            ok = d == ax || in->shape[d] <= xn->shape[d];
        if (!ok) {
            diag_error(c->loc, "gather(): index %s must have the rank of the input %s and no larger size outside axis %lld",
                       si, sx, (long long)ax);
            return VERR;
        }
    }
    int ids[2] = {x, id};
    ir_proto p = {.op = op, .nin = 2, .in = ids, .i = {ax}};
    return emit(c, &p);
}

static value bi_index_select(lower_ctx *c, value *a, const builtin *b)
{
    int x;
    int64_t ax;
    if (!get_tensor(c, a[0], "the input", &x) || !get_int(c, a[1], "axis", &ax))
        return VERR;
    if (b->op == OP_index && a[2].k == V_TENSOR && node(c, a[2].id)->rank != 1) {
        diag_error(c->loc, "index_select() needs a 1-D index; use x[idx] for other shapes");
        return VERR;
    }
    return index_along(c, x, ax, a[2], b->op, b->name);
}

/* ------------------------------------------------------------------ creation */

static bool get_dtype(lower_ctx *c, value v, ir_dtype dflt, ir_dtype *out)
{
    if (v.k == V_NONE) {
        *out = dflt;
        return true;
    }
    if (v.k == V_DTYPE) {
        *out = v.dt;
        return true;
    }
    if (v.k != V_ERR)
        diag_error(c->loc, "dtype must be one of f16 bf16 f32 f64 i32 i64 bool, got %s", vkind_name(v.k));
    return false;
}

static value bi_full(lower_ctx *c, value *a, const builtin *b)
{
    int rank;
    int64_t shape[IR_MAX_RANK];
    if (!get_shape(c, a[0], &rank, shape, false))
        return VERR;
    double v = b->extra;   /* zeros: 0, ones: 1, full: the value */
    value dflt = vfloat(0);
    if (b->op == OP_full && strcmp(b->name, "full") == 0) {
        if (!get_num(c, a[1], "the fill value", &v))
            return VERR;
        dflt = a[1];
    }
    ir_dtype dt;
    /* torch.full infers the dtype from the value: float -> f32, int -> i64, bool -> bool */
    ir_dtype infer = dflt.k == V_INT ? DT_I64 : dflt.k == V_BOOL ? DT_BOOL : DT_F32;
    if (!get_dtype(c, a[b->op == OP_full && strcmp(b->name, "full") == 0 ? 2 : 1], infer, &dt))
        return VERR;
    ir_proto p = {.op = OP_full, .dtype = dt, .nlist = rank, .f = {v}};
    memcpy(p.list, shape, sizeof(int64_t) * (size_t)rank);
    return emit(c, &p);
}

static value bi_arange(lower_ctx *c, value *a, const builtin *b)
{
    int64_t start = 0, stop, step = 1;
    if (a[1].k == V_NONE) {
        if (!get_int(c, a[0], "arange's end", &stop))
            return VERR;
    } else if (!get_int(c, a[0], "arange's start", &start) || !get_int(c, a[1], "arange's end", &stop) ||
               (a[2].k != V_NONE && !get_int(c, a[2], "arange's step", &step)))
        return VERR;
    if (step == 0) {
        diag_error(c->loc, "arange(): step must be nonzero");
        return VERR;
    }
    ir_dtype dt;
    if (!get_dtype(c, a[3], DT_I64, &dt))
        return VERR;
    ir_proto p = {.op = OP_arange, .dtype = dt, .i = {start, step, stop}};
    return emit(c, &p);
}

static value bi_eye(lower_ctx *c, value *a, const builtin *b)
{
    int64_t n;
    ir_dtype dt;
    if (!get_int(c, a[0], "eye's size", &n) || !get_dtype(c, a[1], DT_F32, &dt))
        return VERR;
    if (n < 0) {
        diag_error(c->loc, "eye(): size must be >= 0, got %lld", (long long)n);
        return VERR;
    }
    ir_proto p = {.op = OP_eye, .dtype = dt, .i = {n}};
    return emit(c, &p);
}

/* ------------------------------------------------------------------ the builtin table */

static value bi_size(lower_ctx *c, value *a, const builtin *b)
{
    int x;
    if (!get_tensor(c, a[0], "the input", &x))
        return VERR;
    ir_node *xn = node(c, x);
    if (b->extra == 1) {   /* numel */
        return vint(ir_numel(xn));
    }
    if (a[1].k == V_NONE) {
        value l = {.k = V_LIST, .n = xn->rank};
        l.items = arena_alloc(c->ar, sizeof(value) * (size_t)(xn->rank + 1));
        for (int d = 0; d < xn->rank; d++)
            l.items[d] = vint(xn->shape[d]);
        return l;
    }
    int64_t ax;
    if (!get_int(c, a[1], "axis", &ax) || !wrap_axis(c, ax, xn->rank, &ax))
        return VERR;
    return vint(xn->rank ? xn->shape[ax] : 1);
}

static const builtin builtins[] = {
    /* unary math */
    {"neg", "x", bi_unary, OP_neg, 0},           {"abs", "x", bi_unary, OP_abs, 0},
    {"sign", "x", bi_unary, OP_sign, 0},         {"exp", "x", bi_unary, OP_exp, 0},
    {"log", "x", bi_unary, OP_log, 0},           {"log1p", "x", bi_unary, OP_log1p, 0},
    {"sqrt", "x", bi_unary, OP_sqrt, 0},         {"rsqrt", "x", bi_unary, OP_rsqrt, 0},
    {"sin", "x", bi_unary, OP_sin, 0},           {"cos", "x", bi_unary, OP_cos, 0},
    {"tanh", "x", bi_unary, OP_tanh, 0},         {"sigmoid", "x", bi_unary, OP_sigmoid, 0},
    {"relu", "x", bi_unary, OP_relu, 0},         {"silu", "x", bi_unary, OP_silu, 0},
    {"swish", "x", bi_unary, OP_silu, 0},        {"softplus", "x", bi_unary, OP_softplus, 0},
    {"gelu", "x, approximate=", bi_gelu, OP_gelu, 0},
    {"leaky_relu", "x, slope=, negative_slope=", bi_leaky_relu, OP_leaky_relu, 0},
    {"clamp", "x, lo=, hi=", bi_clamp, OP_clamp, 0},
    {"clip", "x, lo=, hi=", bi_clamp, OP_clamp, 0},
    {"cast", "x, dtype", bi_cast, OP_cast, 0},   {"to", "x, dtype", bi_cast, OP_cast, 0},
    /* binary */
    {"maximum", "a, b", bi_binary, OP_maximum, 0}, {"minimum", "a, b", bi_binary, OP_minimum, 0},
    {"pow", "a, b", bi_binary, OP_pow, 0},
    {"where", "cond, a, b", bi_where, OP_where, 0},
    {"masked_fill", "x, mask, value", bi_masked_fill, OP_where, 0},
    /* reductions */
    {"sum", "x, axis=, keepdim=", bi_reduce, OP_sum, 0},   {"mean", "x, axis=, keepdim=", bi_reduce, OP_mean, 0},
    {"max", "x, axis=, keepdim=", bi_reduce, OP_max, 0},   {"min", "x, axis=, keepdim=", bi_reduce, OP_min, 0},
    {"amax", "x, axis=, keepdim=", bi_reduce, OP_max, 0},  {"amin", "x, axis=, keepdim=", bi_reduce, OP_min, 0},
    {"prod", "x, axis=, keepdim=", bi_reduce, OP_prod, 0},
    {"argmax", "x, axis=, keepdim=", bi_reduce, OP_argmax, 0},
    {"argmin", "x, axis=, keepdim=", bi_reduce, OP_argmin, 0},
    {"logsumexp", "x, axis=, keepdim=", bi_reduce, OP_logsumexp, 0},
    {"var", "x, axis=, keepdim=", bi_reduce, OP_var, 0},
    /* neural-net */
    {"softmax", "x, axis=", bi_softmax, OP_softmax, 0},
    {"log_softmax", "x, axis=", bi_softmax, OP_log_softmax, 0},
    {"cross_entropy", "logits, labels", bi_cross_entropy, OP_cross_entropy, 0},
    {"mse", "a, b", bi_mse, OP_mean, 0},
    {"layer_norm", "x, weight=, bias=, eps=", bi_layer_norm, OP_layer_norm, 0},
    {"one_hot", "labels, num_classes", bi_one_hot, OP_one_hot, 0},
    /* views */
    {"view", "x, *shape", bi_view, OP_view, 0},  {"reshape", "x, *shape", bi_view, OP_view, 1},
    {"flatten", "x, start_dim=, end_dim=", bi_flatten, OP_view, 0},
    {"permute", "x, *dims", bi_permute, OP_permute, 0},
    {"transpose", "x, dim0, dim1", bi_transpose, OP_permute, 0},
    {"squeeze", "x, axis=", bi_squeeze, OP_squeeze, 0},
    {"unsqueeze", "x, axis", bi_unsqueeze, OP_unsqueeze, 0},
    {"expand", "x, *shape", bi_expand, OP_expand, 0},
    {"broadcast_to", "x, *shape", bi_expand, OP_expand, 0},
    {"contiguous", "x", bi_contiguous, OP_copy, 0}, {"clone", "x", bi_contiguous, OP_copy, 1},
    {"stop_gradient", "x", bi_stop_gradient, OP_stop_gradient, 0},
    {"detach", "x", bi_stop_gradient, OP_stop_gradient, 0},
    /* copies and indexing */
    {"concat", "tensors, axis=", bi_concat, OP_concat, 0}, {"cat", "tensors, axis=", bi_concat, OP_concat, 0},
    {"stack", "tensors, axis=", bi_concat, OP_concat, 1},
    {"index_select", "x, axis, index", bi_index_select, OP_index, 0},
    {"gather", "x, axis, index", bi_index_select, OP_gather, 0},
    /* creation */
    {"zeros", "*shape, dtype=", bi_full, OP_full, 0}, {"ones", "*shape, dtype=", bi_full, OP_full, 1},
    {"full", "shape, value, dtype=", bi_full, OP_full, 0},
    {"arange", "start, end=, step=, dtype=", bi_arange, OP_arange, 0},
    {"eye", "n, dtype=", bi_eye, OP_eye, 0},
    /* introspection (compile-time integers) */
    {"size", "x, axis=", bi_size, OP_COUNT, 0}, {"numel", "x", bi_size, OP_COUNT, 1},
};

static const builtin *find_builtin(const char *name)
{
    for (size_t k = 0; k < sizeof builtins / sizeof *builtins; k++)
        if (strcmp(builtins[k].name, name) == 0)
            return &builtins[k];
    return NULL;
}

/* ------------------------------------------------------------------ names */

static uint32_t name_hash(const char *s)
{
    uint32_t h = 2166136261u;   /* FNV-1a */
    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

/* index of key's slot, or of the empty slot where it would go */
static int map_slot(const name_map *m, const char *key)
{
    int mask = m->cap - 1, k = (int)(name_hash(key) & (uint32_t)mask);
    while (m->keys[k] && strcmp(m->keys[k], key) != 0)
        k = (k + 1) & mask;
    return k;
}

static void *map_get(const name_map *m, const char *key)
{
    if (!m || !m->cap)
        return NULL;
    return m->vals[map_slot(m, key)];
}

static void map_put(arena *ar, name_map *m, const char *key, void *val)
{
    if (2 * (m->n + 1) > m->cap) {   /* keep the load under 1/2 */
        name_map g = {.cap = m->cap ? 2 * m->cap : 16};
        g.keys = arena_alloc(ar, sizeof *g.keys * (size_t)g.cap);
        g.vals = arena_alloc(ar, sizeof *g.vals * (size_t)g.cap);
        for (int k = 0; k < m->cap; k++)
            if (m->keys[k]) {
                int j = map_slot(&g, m->keys[k]);
                g.keys[j] = m->keys[k];
                g.vals[j] = m->vals[k];
            }
        g.n = m->n;
        *m = g;
    }
    int k = map_slot(m, key);
    if (!m->keys[k]) {
        m->keys[k] = key;
        m->n++;
    }
    m->vals[k] = val;
}

/* the newest binding of name in the current scope, or NULL */
static binding *find_local(lower_ctx *c, const char *name)
{
    return c->scope ? map_get(c->scope->root->map, name) : NULL;
}

static global *find_global(lower_ctx *c, const char *name)
{
    uintptr_t k = (uintptr_t)map_get(&c->gmap, name);   /* index + 1; 0: absent */
    return k ? &c->globals[k - 1] : NULL;
}

static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 32 || lb > 32)
        return 99;
    int d[33][33];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            d[i][j] = best;
        }
    return d[la][lb];
}

static void suggest_name(lower_ctx *c, const char *name, bool functions)
{
    const char *best = NULL;
    int bd = 3;
    for (binding *b = c->scope; b && !functions; b = b->next)
        if (edit_distance(name, b->name) < bd)
            bd = edit_distance(name, b->name), best = b->name;
    for (int k = 0; k < c->nglobals; k++)
        if (c->globals[k].kind != DECL_EXPORT && !(c->globals[k].kind == DECL_FN && c->globals[k].decl->exported) &&
            edit_distance(name, c->globals[k].name) < bd)
            bd = edit_distance(name, c->globals[k].name), best = c->globals[k].name;
    for (size_t k = 0; functions && k < sizeof builtins / sizeof *builtins; k++)
        if (edit_distance(name, builtins[k].name) < bd)
            bd = edit_distance(name, builtins[k].name), best = builtins[k].name;
    if (best)
        diag_note(c->loc, "did you mean '%s'?", best);
}

static value param_value(lower_ctx *c, global *g)
{
    int *slot = &c->param_nodes[g->param_index];
    if (*slot < 0) {
        ir_proto p = {.op = OP_param, .i = {g->param_index}, .name = g->name};
        src_loc saved = c->loc;
        c->loc = g->loc;
        value v = emit(c, &p);
        c->loc = saved;
        if (v.k == V_ERR)
            return VERR;
        *slot = v.id;
    }
    return vtensor(*slot);
}

static value lookup(lower_ctx *c, const char *name, src_loc loc)
{
    binding *b = find_local(c, name);
    if (b)
        return b->v;
    global *g = find_global(c, name);
    if (g) {
        if (g->kind == DECL_PARAM) {
            if (!c->fn) {
                diag_error(loc, "param '%s' cannot be used in a constant expression", name);
                return VERR;
            }
            return param_value(c, g);
        }
        if (g->kind == DECL_FN) {
            value v = {.k = V_FN, .fn = g->decl};
            return v;
        }
        if (g->kind == DECL_EXPORT) {
            diag_error(loc, "'%s' is an exported training or gradient function; it cannot be called from tdsl code", name);
            return VERR;
        }
        return g->v;
    }
    ir_dtype dt;
    if (ir_dtype_parse(name, &dt)) {
        value v = {.k = V_DTYPE, .dt = dt};
        return v;
    }
    src_loc saved = c->loc;
    c->loc = loc;
    if (find_builtin(name))
        diag_error(loc, "'%s' is a builtin function; call it: %s(...)", name, name);
    else {
        const ast_decl *later = NULL;
        for (int k = 0; k < c->file->ndecls && !later; k++)
            if (strcmp(c->file->decls[k]->name, name) == 0)
                later = c->file->decls[k];
        if (later) {
            diag_error(loc, "'%s' is defined later (line %d); constants and params can use only earlier constants",
                       name, later->loc.line);
        } else {
            diag_error(loc, "unknown name '%s'", name);
            suggest_name(c, name, false);
        }
    }
    c->loc = saved;
    return VERR;
}

static void bind_quiet(lower_ctx *c, const char *name, value v)
{
    binding *b = arena_alloc(c->ar, sizeof *b);
    b->name = name;
    b->v = v;
    b->next = c->scope;
    b->root = c->scope ? c->scope->root : b;
    if (!c->scope)
        b->map = arena_alloc(c->ar, sizeof *b->map);
    map_put(c->ar, b->root->map, name, b);
    c->scope = b;
}

/* A binding also names the value it binds, if it has no name yet (`h = relu(..)` -> %h). */
static void bind(lower_ctx *c, const char *name, value v)
{
    bind_quiet(c, name, v);
    if (v.k == V_TENSOR && c->fn && !node(c, v.id)->name)
        node(c, v.id)->name = name;
}

/* ------------------------------------------------------------------ expressions */

static value lower_expr(lower_ctx *c, const ast_expr *e);
static value call_fn(lower_ctx *c, const ast_decl *fn, int npos, value *pos, const ast_arg *kw, int nkw,
                     const value *kwv, src_loc call_loc);

static const ir_opcode binop_ops[] = {
    [BIN_OR] = OP_lor, [BIN_AND] = OP_land, [BIN_EQ] = OP_eq, [BIN_NE] = OP_ne, [BIN_LT] = OP_lt,
    [BIN_LE] = OP_le,  [BIN_GT] = OP_gt,    [BIN_GE] = OP_ge, [BIN_ADD] = OP_add, [BIN_SUB] = OP_sub,
    [BIN_MUL] = OP_mul, [BIN_DIV] = OP_div, [BIN_MOD] = OP_mod, [BIN_MATMUL] = OP_matmul, [BIN_POW] = OP_pow,
};

static value apply_binop(lower_ctx *c, int op, value a, value b)
{
    if (a.k == V_ERR || b.k == V_ERR)
        return VERR;
    if (op == BIN_MATMUL)
        return matmul(c, a, b);
    return binary(c, binop_ops[op], a, b);
}

/* Python slice bounds, clamped (torch forbids negative steps) */
static bool slice_bounds(lower_ctx *c, const ast_expr *s, int64_t size, int64_t *start, int64_t *stop, int64_t *step)
{
    int64_t v[3] = {0, size, 1};
    for (int k = 0; k < 3; k++) {
        if (!s->kids[k])
            continue;
        value x = lower_expr(c, s->kids[k]);
        if (x.k == V_NONE)
            continue;
        if (!get_int(c, x, k == 2 ? "a slice step" : "a slice bound", &v[k]))
            return false;
    }
    if (v[2] <= 0) {
        diag_error(c->loc, "slice step must be positive, got %lld (reverse with a gather or index instead)", (long long)v[2]);
        return false;
    }
    for (int k = 0; k < 2; k++) {
        if (v[k] < 0)
            v[k] += size;
        if (v[k] < 0)
            v[k] = 0;
        if (v[k] > size)
            v[k] = size;
    }
    if (v[1] < v[0])
        v[1] = v[0];
    *start = v[0];
    *stop = v[1];
    *step = v[2];
    return true;
}

static value index_expr(lower_ctx *c, const ast_expr *e)
{
    value base = lower_expr(c, e->kids[0]);
    if (base.k == V_ERR)
        return VERR;
    c->loc = e->loc;
    if (base.k == V_LIST) {   /* x.shape[i], tuple and list elements */
        if (e->nitems != 1 || e->items[0]->kind == AST_SLICE || e->items[0]->kind == AST_ELLIPSIS) {
            diag_error(e->loc, "a list takes a single integer index");
            return VERR;
        }
        int64_t i;
        if (!get_int(c, lower_expr(c, e->items[0]), "a list index", &i))
            return VERR;
        if (i < -base.n || i >= base.n) {
            diag_error(e->loc, "index %lld is out of range for a list of %d elements", (long long)i, base.n);
            return VERR;
        }
        return base.items[i < 0 ? i + base.n : i];
    }
    if (base.k != V_TENSOR) {
        diag_error(e->loc, "cannot index %s", vkind_name(base.k));
        return VERR;
    }
    int x = base.id, rank = node(c, x)->rank;
    /* evaluate items; count those that consume a dimension */
    value *vals = arena_alloc(c->ar, sizeof(value) * (size_t)(e->nitems + 1));
    int consumed = 0, ellipsis = -1, tensor_item = -1;
    for (int k = 0; k < e->nitems; k++) {
        const ast_expr *it = e->items[k];
        if (it->kind == AST_ELLIPSIS) {
            if (ellipsis >= 0) {
                diag_error(it->loc, "an index can have only one '...'");
                return VERR;
            }
            ellipsis = k;
            continue;
        }
        consumed++;
        if (it->kind == AST_SLICE)
            continue;
        vals[k] = lower_expr(c, it);
        c->loc = it->loc;
        if (vals[k].k == V_ERR)
            return VERR;
        if (vals[k].k == V_TENSOR) {
            if (node(c, vals[k].id)->dtype == DT_BOOL) {
                diag_error(it->loc, "a boolean mask cannot be used as an index: its result would have a "
                                    "data-dependent shape, which a static graph cannot hold");
                diag_note(it->loc, "use where(mask, x, 0) or masked_fill(x, !mask, 0) to keep the shape");
                return VERR;
            }
            if (tensor_item >= 0) {
                diag_error(it->loc, "indexing with more than one tensor is not supported; use gather()");
                return VERR;
            }
            tensor_item = k;
        } else if (vals[k].k == V_NONE) {
            diag_error(it->loc, "indexing with none (a new axis) is not supported; use unsqueeze(axis)");
            return VERR;
        } else if (vals[k].k != V_INT) {
            diag_error(it->loc, "an index must be an integer, a slice, '...' or an integer tensor, got %s",
                       vkind_name(vals[k].k));
            return VERR;
        }
    }
    if (consumed > rank) {
        char sx[128];
        shape_str(sx, sizeof sx, node(c, x));
        diag_error(e->loc, "too many indices for %s: %d given", sx, consumed);
        return VERR;
    }
    if (tensor_item >= 0)
        for (int k = 0; k < e->nitems; k++)
            if (vals[k].k == V_INT && k != tensor_item)
                for (int j = (k < tensor_item ? k : tensor_item) + 1; j < (k < tensor_item ? tensor_item : k); j++)
                    if (e->items[j]->kind == AST_SLICE || e->items[j]->kind == AST_ELLIPSIS) {
                        diag_error(e->loc, "an integer and a tensor index separated by a slice are not supported; "
                                           "index in two steps");
                        return VERR;
                    }
    int d = 0, tensor_axis = -1;
    value cur = base;
    for (int k = 0; k < e->nitems; k++) {
        const ast_expr *it = e->items[k];
        c->loc = it->loc;
        ir_node *cn = node(c, cur.id);
        if (it->kind == AST_ELLIPSIS) {
            d += rank - consumed;
            continue;
        }
        if (it->kind == AST_SLICE) {
            int64_t start, stop, step;
            if (!slice_bounds(c, it, cn->shape[d], &start, &stop, &step))
                return VERR;
            c->loc = it->loc;
            if (start != 0 || stop != cn->shape[d] || step != 1) {
                ir_proto p = {.op = OP_slice, .nin = 1, .in = &cur.id, .i = {d, start, stop, step}};
                if ((cur = emit(c, &p)).k == V_ERR)
                    return VERR;
            }
            d++;
        } else if (vals[k].k == V_INT) {
            int64_t i = vals[k].i, size = cn->shape[d];
            if (i < -size || i >= size) {
                diag_error(it->loc, "index %lld is out of bounds for dimension %d with size %lld", (long long)i, d,
                           (long long)size);
                return VERR;
            }
            ir_proto p = {.op = OP_select, .nin = 1, .in = &cur.id, .i = {d, i < 0 ? i + size : i}};
            if ((cur = emit(c, &p)).k == V_ERR)
                return VERR;
        } else {
            tensor_axis = d++;
        }
    }
    if (tensor_item >= 0) {
        c->loc = e->loc;
        return index_along(c, cur.id, tensor_axis, vals[tensor_item], OP_index, "indexing");
    }
    return cur;
}

static value call_expr(lower_ctx *c, const ast_expr *e)
{
    bool method = e->kind == AST_METHOD;
    int npos = 0, nkw = 0;
    value *pos = arena_alloc(c->ar, sizeof(value) * (size_t)(e->nargs + 2));
    value *kwv = arena_alloc(c->ar, sizeof(value) * (size_t)(e->nargs + 1));
    ast_arg *kw = arena_alloc(c->ar, sizeof(ast_arg) * (size_t)(e->nargs + 1));
    bool bad = false;
    if (method) {
        pos[npos++] = lower_expr(c, e->kids[0]);
        bad |= pos[0].k == V_ERR;
    }
    for (int k = 0; k < e->nargs; k++) {
        value v = lower_expr(c, e->args[k].value);
        bad |= v.k == V_ERR;
        if (e->args[k].name) {
            kw[nkw] = e->args[k];
            kwv[nkw++] = v;
        } else {
            if (nkw) {
                diag_error(e->args[k].loc, "a positional argument cannot follow a keyword argument");
                bad = true;
            }
            pos[npos++] = v;
        }
    }
    c->loc = e->loc;
    if (bad)
        return VERR;
    const char *name = e->str;
    /* a name bound to a helper fn, or a global fn */
    value callee = {.k = V_NONE};
    if (!method) {
        binding *local = find_local(c, name);
        if (local)
            callee = local->v;
        global *g = callee.k == V_NONE ? find_global(c, name) : NULL;
        if (g && g->kind == DECL_FN)
            callee = (value){.k = V_FN, .fn = g->decl};
        else if (g && g->kind == DECL_EXPORT) {
            diag_error(e->loc, "'%s' is an exported training or gradient function; it cannot be called from tdsl code", name);
            return VERR;
        }
        if (callee.k == V_FN)
            return call_fn(c, callee.fn, npos, pos, kw, nkw, kwv, e->loc);
        if (callee.k != V_NONE) {
            diag_error(e->loc, "'%s' is %s, not a function", name, vkind_name(callee.k));
            return VERR;
        }
    }
    if (strcmp(name, "checkpoint") == 0 && !method) {
        /* forward semantics of checkpoint(f, args...) are f(args...); recomputation is autodiff's */
        if (npos < 1 || pos[0].k != V_FN) {
            diag_error(e->loc, "checkpoint() needs a helper fn as its first argument: checkpoint(f, x, ...)");
            return VERR;
        }
        return call_fn(c, pos[0].fn, npos - 1, pos + 1, kw, nkw, kwv, e->loc);
    }
    if (!method && (strcmp(name, "grad") == 0 || strcmp(name, "sgd") == 0 || strcmp(name, "adam") == 0 ||
                    strcmp(name, "adamw") == 0)) {
        diag_error(e->loc, "%s(...) makes an exported function; write it at top level: export g = %s(f, ...)", name, name);
        return VERR;
    }
    const builtin *b = find_builtin(name);
    if (!b) {
        if (method)
            diag_error(e->loc, "tensors have no method '%s'", name);
        else
            diag_error(e->loc, "unknown function '%s'", name);
        suggest_name(c, name, true);
        return VERR;
    }
    value args[MAX_ARGS];
    if (!bind_args(c, name, b->sig, npos, pos, kw, nkw, kwv, args))
        return VERR;
    return b->fn(c, args, b);
}

static value field_expr(lower_ctx *c, const ast_expr *e)
{
    value x = lower_expr(c, e->kids[0]);
    c->loc = e->loc;
    if (x.k == V_ERR)
        return VERR;
    if (x.k != V_TENSOR) {
        diag_error(e->loc, "%s has no property '%s'", vkind_name(x.k), e->str);
        return VERR;
    }
    if (strcmp(e->str, "T") == 0)
        return reverse_dims(c, x.id);
    if (strcmp(e->str, "shape") == 0) {
        value a[2] = {x, {.k = V_NONE}};
        return bi_size(c, a, find_builtin("size"));
    }
    if (strcmp(e->str, "ndim") == 0)
        return vint(node(c, x.id)->rank);
    diag_error(e->loc, "tensors have no property '%s' (they have .T, .shape and .ndim)", e->str);
    return VERR;
}

static value lower_expr_inner(lower_ctx *c, const ast_expr *e)
{
    switch (e->kind) {
    case AST_INT: return vint(e->ival);
    case AST_FLOAT: return vfloat(e->fval);
    case AST_BOOL: return (value){.k = V_BOOL, .i = e->ival};
    case AST_STRING: return (value){.k = V_STR, .s = e->str};
    case AST_NONE: return (value){.k = V_NONE};
    case AST_NAME: return lookup(c, e->str, e->loc);
    case AST_LIST:
    case AST_TUPLE: {
        value l = {.k = V_LIST, .n = e->nitems, .tuple = e->kind == AST_TUPLE};
        l.items = arena_alloc(c->ar, sizeof(value) * (size_t)(e->nitems + 1));
        for (int k = 0; k < e->nitems; k++)
            if ((l.items[k] = lower_expr(c, e->items[k])).k == V_ERR)
                return VERR;
        return l;
    }
    case AST_UNARY: {
        value x = lower_expr(c, e->kids[0]);
        c->loc = e->loc;
        if (x.k == V_ERR)
            return VERR;
        if (e->op == '-') {
            if (x.k == V_INT && x.i != INT64_MIN)
                return vint(-x.i);
            if (x.k == V_FLOAT)
                return vfloat(-x.f);
            return unary(c, OP_neg, x, NULL, 0);
        }
        if (x.k == V_BOOL)
            return (value){.k = V_BOOL, .i = !x.i};
        return unary(c, OP_lnot, x, NULL, 0);
    }
    case AST_BINARY: {
        value a = lower_expr(c, e->kids[0]);
        value b = lower_expr(c, e->kids[1]);
        c->loc = e->loc;
        return apply_binop(c, e->op, a, b);
    }
    case AST_CALL:
    case AST_METHOD: return call_expr(c, e);
    case AST_FIELD: return field_expr(c, e);
    case AST_INDEX: return index_expr(c, e);
    case AST_SLICE:
    case AST_ELLIPSIS: diag_error(e->loc, "a slice or '...' can only appear inside [ ]"); return VERR;
    case AST_TYPE: diag_error(e->loc, "a tensor type cannot be used as a value here"); return VERR;
    }
    return VERR;
}

static value lower_expr(lower_ctx *c, const ast_expr *e)
{
    src_loc saved = c->loc;
    c->loc = e->loc;
    value v = lower_expr_inner(c, e);
    c->loc = saved;
    return v;
}

/* ------------------------------------------------------------------ statements */

#define MAX_UNROLL 1000000

typedef struct exec_state {
    bool returned;
    value ret;
    src_loc ret_loc;
} exec_state;

static void exec_block(lower_ctx *c, ast_stmt **body, int n, exec_state *st);

static void exec_stmt(lower_ctx *c, const ast_stmt *s, exec_state *st)
{
    c->loc = s->loc;
    switch (s->kind) {
    case STMT_ASSIGN: {
        value v = lower_expr(c, s->value);
        if (s->ntargets == 1) {
            bind(c, s->targets[0], v);
            break;
        }
        if (v.k != V_ERR && (v.k != V_LIST || v.n != s->ntargets)) {
            diag_error(s->loc, "cannot unpack %s into %d names", v.k == V_LIST ? "a tuple of a different length"
                                                                        : vkind_name(v.k), s->ntargets);
            if (v.k == V_LIST)
                diag_note(s->loc, "the value has %d elements", v.n);
            v = VERR;
        }
        for (int k = 0; k < s->ntargets; k++)
            bind(c, s->targets[k], v.k == V_ERR ? VERR : v.items[k]);
        break;
    }
    case STMT_AUGASSIGN: {
        value old = lookup(c, s->targets[0], s->target_locs ? s->target_locs[0] : s->loc);
        value rhs = lower_expr(c, s->value);
        c->loc = s->loc;
        bind(c, s->targets[0], apply_binop(c, s->op, old, rhs));
        break;
    }
    case STMT_RETURN:
        st->returned = true;
        st->ret = lower_expr(c, s->value);
        st->ret_loc = s->value ? s->value->loc : s->loc;
        break;
    case STMT_FOR: {
        value lo = lower_expr(c, s->lo), hi = lower_expr(c, s->hi);
        int64_t a, b;
        c->loc = s->loc;
        if (!get_int(c, lo, "a loop bound", &a) || !get_int(c, hi, "a loop bound", &b))
            break;
        if (b - a > MAX_UNROLL) {
            diag_error(s->loc, "loop of %lld iterations is too long to unroll (at most %d)", (long long)(b - a), MAX_UNROLL);
            break;
        }
        int errors = diag_error_count();
        for (int64_t i = a; i < b && !st->returned; i++) {
            bind(c, s->var, vint(i));
            exec_block(c, s->body, s->nbody, st);
            if (diag_error_count() > errors)
                break;   /* report a body's errors once, not once per iteration */
        }
        break;
    }
    case STMT_EXPR:
        diag_error(s->loc, "this expression has no effect; bind it (name = ...) or return it");
        break;
    }
}

static void exec_block(lower_ctx *c, ast_stmt **body, int n, exec_state *st)
{
    for (int k = 0; k < n && !st->returned; k++)
        exec_stmt(c, body[k], st);
}

/* ------------------------------------------------------------------ types and calls */

/* Evaluates a constant expression (consts, literals, + - * / % **). */
static value const_expr(lower_ctx *c, const ast_expr *e)
{
    ir_func *saved = c->fn;
    binding *scope = c->scope;
    c->fn = NULL;
    c->scope = NULL;
    value v = lower_expr(c, e);
    c->fn = saved;
    c->scope = scope;
    if (v.k != V_ERR && !is_number(v)) {
        diag_error(e->loc, "expected a constant number, got %s", vkind_name(v.k));
        return VERR;
    }
    return v;
}

/* A declared type `f32[B, 10]`: dtype and shape, dims from constants. */
static bool eval_type(lower_ctx *c, const ast_expr *t, ir_dtype *dt, int *rank, int64_t *shape)
{
    if (!t || t->kind != AST_TYPE || !ir_dtype_parse(t->str, dt)) {
        diag_error(t ? t->loc : c->loc, "expected a type such as f32[3, 4] (dtypes: f16 bf16 f32 f64 i32 i64 bool)");
        return false;
    }
    if (t->nitems > IR_MAX_RANK) {
        diag_error(t->loc, "types have at most %d dimensions", IR_MAX_RANK);
        return false;
    }
    *rank = t->nitems;
    for (int d = 0; d < t->nitems; d++) {
        value v = c->fn ? lower_expr(c, t->items[d]) : const_expr(c, t->items[d]);
        if (v.k == V_ERR)
            return false;
        if (v.k != V_INT || v.i < 0) {
            diag_error(t->items[d]->loc, "a dimension must be a non-negative compile-time integer");
            return false;
        }
        shape[d] = v.i;
    }
    return true;
}

static bool same_type(const ir_node *n, ir_dtype dt, int rank, const int64_t *shape)
{
    if (n->dtype != dt || n->rank != rank)
        return false;
    for (int d = 0; d < rank; d++)
        if (n->shape[d] != shape[d])
            return false;
    return true;
}

static void type_str(char *buf, size_t len, ir_dtype dt, int rank, const int64_t *shape)
{
    snprintf(buf, len, "%s", ir_dtype_name(dt));
    size_t o = strlen(buf);
    if (rank)
        ir_format_shape(buf + o, len - o, rank, shape);
}

/* Checks a value against a declared type; what names the value for the message. */
static bool check_type(lower_ctx *c, value v, const ast_expr *t, const char *what, src_loc where)
{
    if (v.k == V_ERR || !t)
        return v.k != V_ERR;
    ir_dtype dt;
    int rank;
    int64_t shape[IR_MAX_RANK];
    if (!eval_type(c, t, &dt, &rank, shape))
        return false;
    char want[160], got[160];
    type_str(want, sizeof want, dt, rank, shape);
    if (v.k != V_TENSOR) {
        diag_error(where, "%s should be %s, got %s", what, want, vkind_name(v.k));
        diag_note(t->loc, "declared here");
        return false;
    }
    if (!same_type(node(c, v.id), dt, rank, shape)) {
        shape_str(got, sizeof got, node(c, v.id));
        diag_error(where, "%s should be %s, got %s", what, want, got);
        diag_note(t->loc, "declared here");
        return false;
    }
    return true;
}

/* appends the tensor nodes of v (lists too) to keep */
static void keep_value(lower_ctx *c, value v, int **keep, int *n, int *cap)
{
    if (v.k == V_LIST) {
        for (int k = 0; k < v.n; k++)
            keep_value(c, v.items[k], keep, n, cap);
        return;
    }
    if (v.k != V_TENSOR)
        return;
    if (*n == *cap) {
        int *m = arena_alloc(c->ar, sizeof(int) * (size_t)*cap * 2);
        memcpy(m, *keep, sizeof(int) * (size_t)*n);
        *keep = m;
        *cap *= 2;
    }
    (*keep)[(*n)++] = v.id;
}

/* Records the region of an inlined call of fn (a helper with a custom gradient). */
static value record_custom(lower_ctx *c, const ast_decl *fn, value r, const value *args, int first, binding *inner,
                           src_loc call_loc)
{
    if (is_number(r) || (r.k == V_TENSOR && !ir_dtype_is_float(node(c, r.id)->dtype)))
        return r;   /* carries no gradient: nothing to record */
    if (r.k != V_TENSOR) {
        diag_error(call_loc, "'%s' has a custom gradient, so it must return one tensor, got %s", fn->name,
                   vkind_name(r.k));
        diag_note(fn->grad_loc, "the custom gradient is here");
        return VERR;
    }
    if (fn->ngrad_params != 1) {
        diag_error(fn->grad_loc, "the custom gradient of '%s' takes one parameter, the cotangent of its result "
                                 "(grad (dy) { ... }), got %d", fn->name, fn->ngrad_params);
        return VERR;
    }
    if (r.id < first || node(c, r.id)->op == OP_param) {   /* `return x`, `return W`: a node of its own */
        src_loc saved = c->loc;
        c->loc = call_loc;
        r = emit1(c, OP_copy, r.id);
        c->loc = saved;
        if (r.k == V_ERR)
            return VERR;
    }
    int *ids = arena_alloc(c->ar, sizeof(int) * (size_t)(fn->nparams ? fn->nparams : 1));
    for (int k = 0; k < fn->nparams; k++)
        ids[k] = args[k].k == V_TENSOR ? args[k].id : -1;
    int nkeep = 0, keepcap = 16;
    int *keep = arena_alloc(c->ar, sizeof(int) * (size_t)keepcap);
    for (binding *b = inner; b; b = b->next)
        keep_value(c, b->v, &keep, &nkeep, &keepcap);
    custom_rec *rec = arena_alloc(c->ar, sizeof *rec);
    rec->fn = fn;
    rec->scope = inner;
    rec->call_loc = call_loc;
    if (c->ncustom == c->customcap) {
        int cap = c->customcap ? 2 * c->customcap : 8;
        pass_custom *n = arena_alloc(c->ar, sizeof *n * (size_t)cap);
        if (c->ncustom)
            memcpy(n, c->customs, sizeof *n * (size_t)c->ncustom);
        c->customs = n;
        c->customcap = cap;
    }
    c->customs[c->ncustom++] = (pass_custom){.result = r.id, .nargs = fn->nparams, .args = ids, .nkeep = nkeep,
                                             .keep = keep, .data = rec};
    return r;
}

/* v with its tensors moved from F to the gradient function (map); false if one is missing */
static bool remap_value(lower_ctx *c, value *v, const int *map)
{
    if (v->k == V_TENSOR) {
        if (map[v->id] < 0)
            return false;
        v->id = map[v->id];
    } else if (v->k == V_LIST) {
        value *items = arena_alloc(c->ar, sizeof *items * (size_t)(v->n ? v->n : 1));
        for (int k = 0; k < v->n; k++) {
            items[k] = v->items[k];
            if (!remap_value(c, &items[k], map))
                return false;
        }
        v->items = items;
    }
    return true;
}

/* pass_custom_fn: lowers the grad block of one region into the gradient function dst. */
static int emit_custom_grad(void *ctx, const ir_func *src, ir_func *dst, const pass_custom *r, const int *map, int dy,
                            int *cts)
{
    lower_ctx *c = ctx;
    const custom_rec *rec = r->data;
    const ast_decl *fn = rec->fn;
    /* the lowering's state is reused: save what this changes */
    ir_func *sfn = c->fn;
    binding *sscope = c->scope;
    int *sparam = c->param_nodes, sdepth = c->depth, sin = c->in_custom;
    const ast_decl *sexport = c->grad_export;
    src_loc sloc = c->loc;
    const char *sbind = c->bind_name;
    int errors = diag_error_count();
    c->fn = dst;
    c->scope = NULL;
    c->grad_export = NULL;   /* helpers called by the block just run forward */
    c->in_custom = 1;
    c->bind_name = NULL;
    c->loc = fn->grad_loc;
    c->param_nodes = arena_alloc(c->ar, sizeof(int) * (size_t)(c->mod->nparams + 1));
    for (int k = 0; k < c->mod->nparams; k++)
        c->param_nodes[k] = -1;
    for (int id = 0; id < dst->nnodes; id++)
        if (dst->nodes[id].op == OP_param)
            c->param_nodes[dst->nodes[id].i[0]] = id;
    /* the call's bindings, oldest first, so the newest of each name wins */
    int nb = 0;
    for (binding *b = rec->scope; b; b = b->next)
        nb++;
    binding **bs = arena_alloc(c->ar, sizeof *bs * (size_t)(nb ? nb : 1));
    nb = 0;
    for (binding *b = rec->scope; b; b = b->next)
        bs[nb++] = b;
    bool ok = true;
    for (int k = nb - 1; k >= 0; k--) {
        value v = bs[k]->v;
        if (remap_value(c, &v, map))
            bind_quiet(c, bs[k]->name, v);
    }
    bind_quiet(c, fn->grad_params[0].name, vtensor(dy));
    c->depth = 0;   /* the block may call fn itself: not a recursion */
    exec_state st = {0};
    exec_block(c, fn->grad_body, fn->ngrad_body, &st);
    if (diag_error_count() == errors && !st.returned) {
        diag_error(fn->grad_loc, "the custom gradient of '%s' ends without a return", fn->name);
        ok = false;
    }
    int n = st.ret.k == V_LIST && st.ret.tuple ? st.ret.n : 1;
    if (ok && diag_error_count() == errors && n != fn->nparams) {
        diag_error(st.ret_loc, "the custom gradient of '%s' returns %d cotangent%s; it needs %d, one per argument of "
                               "'%s' (none for an argument without a gradient)", fn->name, n, n == 1 ? "" : "s",
                   fn->nparams, fn->name);
        ok = false;
    }
    for (int k = 0; ok && diag_error_count() == errors && k < n; k++) {
        value v = n == 1 && !(st.ret.k == V_LIST && st.ret.tuple) ? st.ret : st.ret.items[k];
        int a = r->args[k];
        if (v.k == V_NONE || a < 0)
            continue;   /* no gradient: zeros; a number argument carries none */
        const ir_node *an = &src->nodes[a];
        char want[160], got[160];
        type_str(want, sizeof want, an->dtype, an->rank, an->shape);
        if (is_number(v)) {
            c->loc = st.ret_loc;
            v = to_tensor(c, v);
        }
        if (v.k != V_TENSOR) {
            diag_error(st.ret_loc, "cotangent %d of the custom gradient of '%s' (for argument '%s') should be a tensor "
                                   "%s or none, got %s", k, fn->name, fn->params[k].name, want, vkind_name(v.k));
            ok = false;
            break;
        }
        const ir_node *g = &dst->nodes[v.id];
        if (g->dtype != an->dtype || g->rank != an->rank ||
            memcmp(g->shape, an->shape, sizeof(int64_t) * (size_t)an->rank) != 0) {
            type_str(got, sizeof got, g->dtype, g->rank, g->shape);
            diag_error(st.ret_loc, "cotangent %d of the custom gradient of '%s' is %s, but argument '%s' is %s: they "
                                   "must match", k, fn->name, got, fn->params[k].name, want);
            ok = false;
            break;
        }
        cts[k] = v.id;
    }
    if (diag_error_count() > errors) {
        diag_note(rec->call_loc, "in the custom gradient of the call of '%s' here", fn->name);
        ok = false;
    }
    c->fn = sfn;
    c->scope = sscope;
    c->param_nodes = sparam;
    c->depth = sdepth;
    c->in_custom = sin;
    c->grad_export = sexport;
    c->loc = sloc;
    c->bind_name = sbind;
    return ok ? 0 : -1;
}

static value call_fn(lower_ctx *c, const ast_decl *fn, int npos, value *pos, const ast_arg *kw, int nkw,
                     const value *kwv, src_loc call_loc)
{
    if (fn->exported) {
        diag_error(call_loc, "'%s' is an exported fn; call a helper fn instead (move the body into `fn %s_impl(...)`)",
                   fn->name, fn->name);
        return VERR;
    }
    for (int k = 0; k < c->depth; k++)
        if (c->stack[k] == fn) {
            char chain[512] = "";
            size_t o = 0;
            for (int j = k + 1; j < c->depth && o < sizeof chain; j++)
                o += (size_t)snprintf(chain + o, sizeof chain - o, "%s'%s'", j > k + 1 ? ", " : " through ", c->stack[j]->name);
            diag_error(call_loc, "recursion: '%s' calls itself%s; tdsl inlines every call, so fns cannot recurse",
                       fn->name, chain);
            diag_note(fn->loc, "'%s' is defined here", fn->name);
            return VERR;
        }
    if (c->depth == MAX_CALL_DEPTH) {
        diag_error(call_loc, "calls nested more than %d deep", MAX_CALL_DEPTH);
        return VERR;
    }
    value args[64];
    bool set[64] = {0};
    if (fn->nparams > 64 || npos > fn->nparams) {
        diag_error(call_loc, "'%s' takes %d argument%s, got %d", fn->name, fn->nparams, fn->nparams == 1 ? "" : "s",
                   npos + nkw);
        diag_note(fn->loc, "'%s' is defined here", fn->name);
        return VERR;
    }
    for (int k = 0; k < npos; k++) {
        args[k] = pos[k];
        set[k] = true;
    }
    for (int j = 0; j < nkw; j++) {
        int k = 0;
        while (k < fn->nparams && strcmp(fn->params[k].name, kw[j].name) != 0)
            k++;
        if (k == fn->nparams || set[k]) {
            diag_error(kw[j].loc, k == fn->nparams ? "'%s' has no argument named '%s'" : "'%s' got argument '%s' twice",
                       fn->name, kw[j].name);
            return VERR;
        }
        args[k] = kwv[j];
        set[k] = true;
    }
    for (int k = 0; k < fn->nparams; k++)
        if (!set[k]) {
            diag_error(call_loc, "'%s' takes %d argument%s, got %d: missing '%s'", fn->name, fn->nparams,
                       fn->nparams == 1 ? "" : "s", npos + nkw, fn->params[k].name);
            diag_note(fn->loc, "'%s' is defined here", fn->name);
            return VERR;
        }
    /* a call of a helper with a custom gradient, in a function being differentiated, is a
     * region (outermost only); elsewhere the block is unused and the call just runs */
    bool region = fn->has_grad && c->grad_export && c->in_custom == 0 && c->fn;
    int first = region ? c->fn->nnodes : 0;
    c->in_custom += region;
    binding *saved = c->scope;
    c->scope = NULL;
    c->stack[c->depth++] = fn;
    int errors = diag_error_count();
    bool ok = true;
    for (int k = 0; k < fn->nparams; k++) {
        if (fn->params[k].type) {
            char what[160];
            snprintf(what, sizeof what, "argument '%s' of '%s'", fn->params[k].name, fn->name);
            ok &= check_type(c, args[k], fn->params[k].type, what, call_loc);
        }
        bind_quiet(c, fn->params[k].name, args[k]);
    }
    exec_state st = {0};
    if (ok)
        exec_block(c, fn->body, fn->nbody, &st);
    c->depth--;
    binding *inner = c->scope;
    c->scope = saved;
    c->in_custom -= region;
    value r = st.ret;
    if (ok && !st.returned && diag_error_count() == errors) {
        diag_error(fn->loc, "fn '%s' ends without a return", fn->name);
        r = VERR;
    }
    if (diag_error_count() > errors) {
        diag_note(call_loc, "in the call of '%s' here", fn->name);
        return VERR;
    }
    if (r.k != V_ERR && fn->type) {
        char what[160];
        snprintf(what, sizeof what, "the result of '%s'", fn->name);
        if (!check_type(c, r, fn->type, what, st.ret_loc))
            return VERR;
    }
    if (region && r.k != V_ERR)
        r = record_custom(c, fn, r, args, first, inner, call_loc);
    return r;
}

/* A declared result: one type, or a tuple of types for `return a, b`. */
static bool check_result(lower_ctx *c, value r, const ast_expr *t, const char *fname, src_loc where)
{
    if (!t || r.k == V_ERR)
        return r.k != V_ERR;
    bool tuple_t = t->kind == AST_TUPLE, tuple_v = r.k == V_LIST && r.tuple;
    int nt = tuple_t ? t->nitems : 1, nv = tuple_v ? r.n : 1;
    if (nt != nv) {
        diag_error(where, "'%s' returns %d value%s but its declared result has %d", fname, nv, nv == 1 ? "" : "s", nt);
        diag_note(t->loc, "declared here");
        return false;
    }
    bool ok = true;
    for (int k = 0; k < nt; k++) {
        char what[160];
        if (nt == 1)
            snprintf(what, sizeof what, "the result of '%s'", fname);
        else
            snprintf(what, sizeof what, "result %d of '%s'", k, fname);
        ok &= check_type(c, tuple_v ? r.items[k] : r, tuple_t ? t->items[k] : t, what, where);
    }
    return ok;
}

static void lower_export_fn(lower_ctx *c, const ast_decl *d)
{
    ir_arg args[64];
    c->fn = NULL;     /* argument types see only constants */
    c->scope = NULL;
    if (d->nparams > 64) {
        diag_error(d->loc, "an exported fn takes at most 64 arguments");
        return;
    }
    bool ok = true;
    for (int k = 0; k < d->nparams; k++) {
        const ast_param_decl *p = &d->params[k];
        args[k].name = p->name;
        if (!p->type) {
            diag_error(p->loc, "argument '%s' of exported fn '%s' needs a type, e.g. %s: f32[B, 784]", p->name, d->name,
                       p->name);
            ok = false;
            continue;
        }
        ok &= eval_type(c, p->type, &args[k].dtype, &args[k].rank, args[k].shape);
        for (int j = 0; j < k; j++)
            if (strcmp(d->params[j].name, p->name) == 0) {
                diag_error(p->loc, "duplicate argument name '%s'", p->name);
                ok = false;
            }
    }
    if (!ok)
        return;
    ir_func *f = ir_func_new(c->mod, d->name, d->nparams, args);
    f->line = d->loc.line;
    f->col = d->loc.col;
    c->fn = f;
    c->scope = NULL;
    c->depth = 0;
    c->param_nodes = arena_alloc(c->ar, sizeof(int) * (size_t)(c->mod->nparams + 1));
    for (int k = 0; k < c->mod->nparams; k++)
        c->param_nodes[k] = -1;
    for (int k = 0; k < d->nparams; k++) {
        c->loc = d->params[k].loc;
        ir_proto p = {.op = OP_arg, .i = {k}, .name = d->params[k].name};
        bind(c, d->params[k].name, emit(c, &p));
    }
    c->stack[c->depth++] = d;
    exec_state st = {0};
    int errors = diag_error_count();
    exec_block(c, d->body, d->nbody, &st);
    c->depth = 0;
    if (diag_error_count() > errors)
        return;
    if (!st.returned) {
        diag_error(d->loc, "exported fn '%s' ends without a return", d->name);
        return;
    }
    c->loc = st.ret_loc;
    value r = st.ret;
    /* numbers become rank-0 tensors before the declared result type is checked */
    if (is_number(r))
        r = to_tensor(c, r);
    for (int k = 0; r.k == V_LIST && r.tuple && k < r.n; k++)
        if (is_number(r.items[k]))
            r.items[k] = to_tensor(c, r.items[k]);
    if (!check_result(c, r, d->type, d->name, st.ret_loc))
        return;
    int n = r.k == V_LIST && r.tuple ? r.n : 1;
    for (int k = 0; k < n; k++) {
        value v = n > 1 || (r.k == V_LIST && r.tuple) ? r.items[k] : r;
        if (is_number(v))
            v = to_tensor(c, v);
        if (v.k != V_TENSOR) {
            if (v.k != V_ERR)
                diag_error(st.ret_loc, "an exported fn must return tensors, got %s", vkind_name(v.k));
            return;
        }
        ir_add_output(f, v.id);
    }
}

static bool param_init(lower_ctx *c, const ast_expr *e, ir_param *p)
{
    p->init = INIT_ZEROS;
    if (!e)
        return true;
    const char *name = e->kind == AST_NAME || e->kind == AST_CALL ? e->str : NULL;
    static const struct { const char *name; ir_init_kind kind; int nargs; } inits[] = {
        {"zeros", INIT_ZEROS, 0}, {"ones", INIT_ONES, 0}, {"full", INIT_FULL, 1}, {"normal", INIT_NORMAL, 2},
        {"uniform", INIT_UNIFORM, 2}, {"kaiming_uniform", INIT_KAIMING_UNIFORM, 0},
    };
    for (size_t k = 0; name && k < sizeof inits / sizeof *inits; k++) {
        if (strcmp(name, inits[k].name) != 0)
            continue;
        int nargs = e->kind == AST_CALL ? e->nargs : 0;
        if (nargs != inits[k].nargs) {
            diag_error(e->loc, "initializer %s takes %d argument%s, got %d", name, inits[k].nargs,
                       inits[k].nargs == 1 ? "" : "s", nargs);
            return false;
        }
        double v[2] = {0, 0};
        for (int j = 0; j < nargs; j++) {
            value x = const_expr(c, e->args[j].value);
            if (x.k == V_ERR)
                return false;
            v[j] = num(x);
        }
        p->init = inits[k].kind;
        p->a = v[0];
        p->b = v[1];
        if (p->init == INIT_NORMAL && p->b < 0) {
            diag_error(e->loc, "normal(mean, std) needs std >= 0, got %g", p->b);
            return false;
        }
        if (p->init == INIT_KAIMING_UNIFORM && (p->rank == 0 || p->shape[0] == 0)) {
            diag_error(e->loc, "kaiming_uniform needs a param whose first dimension (fan_in) is positive");
            return false;
        }
        return true;
    }
    diag_error(e->loc, "unknown initializer; use zeros, ones, full(v), normal(mean, std), uniform(lo, hi) or kaiming_uniform");
    return false;
}

static bool parse_define(const char *text, value *out)
{
    char *end;
    errno = 0;
    long long i = strtoll(text, &end, 0);
    if (*text && !*end && !errno) {
        *out = vint(i);
        return true;
    }
    double f = strtod(text, &end);
    if (*text && !*end) {
        *out = vfloat(f);
        return true;
    }
    return false;
}

static void add_global(lower_ctx *c, const ast_decl *d, int kind, value v, int param_index)
{
    global *prev = find_global(c, d->name);
    if (prev) {
        diag_error(d->name_loc.line ? d->name_loc : d->loc, "'%s' is already defined", d->name);
        diag_note(prev->loc, "previous definition here");
        return;
    }
    if (find_builtin(d->name) && kind != DECL_CONST)
        diag_warning(d->name_loc.line ? d->name_loc : d->loc, "'%s' shadows the builtin of the same name", d->name);
    global g = {.name = d->name, .loc = d->loc, .kind = kind, .v = v, .decl = d, .param_index = param_index};
    ARR_PUSH(c->ar, c->globals, c->nglobals, c->gcap, g);
    map_put(c->ar, &c->gmap, d->name, (void *)(uintptr_t)c->nglobals);
}

/* did-you-mean among F's arguments and the params */
static void suggest_wrt(lower_ctx *c, const ast_decl *fn, const char *name, src_loc loc)
{
    const char *best = NULL;
    int bd = 3;
    for (int k = 0; k < fn->nparams; k++)
        if (edit_distance(name, fn->params[k].name) < bd)
            bd = edit_distance(name, fn->params[k].name), best = fn->params[k].name;
    for (int k = 0; k < c->mod->nparams; k++)
        if (edit_distance(name, c->mod->params[k].name) < bd)
            bd = edit_distance(name, c->mod->params[k].name), best = c->mod->params[k].name;
    if (best)
        diag_note(loc, "did you mean '%s'?", best);
}

static ir_func *differentiate(lower_ctx *c, const ast_decl *d, const ast_decl *fn, int nwrt, const pass_wrt *wrt,
                              const char *const *wname, const src_loc *wloc);

/* `export g = grad(F[, wrt=[...]])`: F's body lowered into a scratch function, differentiated
 * by pass_autodiff into the export g, the scratch function dropped. */
static void lower_grad_export(lower_ctx *c, const ast_decl *d, const ast_decl *fn)
{
    const ast_expr *v = d->value;
    const ast_expr *wrtl = NULL;
    for (int k = 1; k < v->nargs; k++) {
        if (!v->args[k].name) {
            diag_error(v->args[k].value->loc, "grad() takes the function and wrt=[...] only");
            return;
        }
        if (strcmp(v->args[k].name, "wrt") != 0) {
            diag_error(v->args[k].loc, "grad() has no option '%s'; it takes wrt=[names]", v->args[k].name);
            return;
        }
        wrtl = v->args[k].value;
    }
    bool ok = true;
    /* the wrt list: argument or param names */
    pass_wrt wrt[128];
    int nwrt = 0;
    const char *wname[128];
    src_loc wloc[128];
    if (wrtl) {
        const ast_expr *const *items = (const ast_expr *const *)&wrtl;
        int n = 1;
        if (wrtl->kind == AST_LIST) {
            items = (const ast_expr *const *)wrtl->items;
            n = wrtl->nitems;
        }
        if (n == 0 || n > 128) {
            diag_error(wrtl->loc, "wrt= needs a list of 1 to 128 argument or param names");
            return;
        }
        for (int k = 0; k < n; k++) {
            const ast_expr *e = items[k];
            if (e->kind != AST_NAME) {
                diag_error(e->loc, "wrt= takes names of arguments of '%s' or params", fn->name);
                ok = false;
                continue;
            }
            pass_wrt w = {.is_param = false, .index = -1};
            for (int j = 0; j < fn->nparams; j++)
                if (strcmp(fn->params[j].name, e->str) == 0)
                    w.index = j;
            global *g = w.index < 0 ? find_global(c, e->str) : NULL;
            if (g && g->kind == DECL_PARAM)
                w = (pass_wrt){.is_param = true, .index = g->param_index};
            if (w.index < 0) {
                diag_error(e->loc, "grad(%s, wrt=...): '%s' is neither an argument of '%s' nor a param", fn->name, e->str,
                           fn->name);
                suggest_wrt(c, fn, e->str, e->loc);
                ok = false;
                continue;
            }
            for (int j = 0; j < nwrt; j++)
                if (strcmp(wname[j], e->str) == 0) {
                    diag_error(e->loc, "'%s' appears twice in wrt=", e->str);
                    ok = false;
                }
            wname[nwrt] = e->str;
            wloc[nwrt] = e->loc;
            wrt[nwrt++] = w;
        }
    } else {
        if (c->mod->nparams == 0) {
            diag_error(v->loc, "grad(%s) without wrt= differentiates by every param, but there are none; name the "
                               "arguments: grad(%s, wrt=[%s])", fn->name, fn->name, fn->nparams ? fn->params[0].name : "x");
            return;
        }
        if (c->mod->nparams > 128) {
            diag_error(v->loc, "grad() supports at most 128 gradients");
            return;
        }
        for (int k = 0; k < c->mod->nparams; k++) {
            wname[nwrt] = c->mod->params[k].name;
            wloc[nwrt] = v->loc;
            wrt[nwrt++] = (pass_wrt){.is_param = true, .index = k};
        }
    }
    if (!ok)
        return;
    differentiate(c, d, fn, nwrt, wrt, wname, wloc);
}

/* The part of grad(F, wrt) that sgd/adam/adamw share: F's body lowered into a scratch
 * function, checked (typed arguments, float wrt entries, a scalar float result),
 * differentiated by pass_autodiff into the function d->name, the scratch dropped.
 * Returns the new function (F's value, then one gradient per wrt entry) or NULL. */
static ir_func *differentiate(lower_ctx *c, const ast_decl *d, const ast_decl *fn, int nwrt, const pass_wrt *wrt,
                              const char *const *wname, const src_loc *wloc)
{
    const ast_expr *v = d->value;
    bool ok = true;
    for (int k = 0; k < fn->nparams; k++)
        if (!fn->params[k].type) {
            diag_error(fn->params[k].loc, "%s(%s) needs every argument of '%s' typed: '%s' has no type (e.g. %s: f32[B, 784])",
                       v->str, fn->name, fn->name, fn->params[k].name, fn->params[k].name);
            diag_note(v->loc, "differentiated here");
            ok = false;
        }
    if (!ok)
        return NULL;
    /* F's body into a scratch function */
    int nf = c->mod->nfuncs, errors = diag_error_count();
    c->grad_export = d;
    c->ncustom = 0;
    c->in_custom = 0;
    lower_export_fn(c, fn);
    c->grad_export = NULL;
    int ncustom = c->ncustom;
    const pass_custom *customs = c->customs;
    c->ncustom = 0;
    ir_func *F = c->mod->nfuncs > nf ? c->mod->funcs[c->mod->nfuncs - 1] : NULL;
    if (diag_error_count() > errors || !F) {
        if (F)
            pass_drop_func(c->mod, F);
        diag_note(v->loc, "in %s(%s) here", v->str, fn->name);
        return NULL;
    }
    pass_drop_func(c->mod, F);
    /* argument types are known now: integer wrt entries carry no gradient */
    for (int k = 0; k < nwrt; k++) {
        ir_dtype dt = wrt[k].is_param ? c->mod->params[wrt[k].index].dtype : F->args[wrt[k].index].dtype;
        if (!ir_dtype_is_float(dt)) {
            diag_error(wloc[k], "gradients through integer values are not defined: %s '%s' is %s; only floating-point "
                                "arguments and params have gradients", wrt[k].is_param ? "param" : "argument", wname[k],
                       ir_dtype_name(dt));
            ok = false;
        }
    }
    if (!ok)
        return NULL;
    const ir_node *r = F->nouts == 1 ? &F->nodes[F->outs[0]] : NULL;
    if (!r || r->rank != 0 || !ir_dtype_is_float(r->dtype)) {
        char ts[160] = "several values";
        if (r)
            type_str(ts, sizeof ts, r->dtype, r->rank, r->shape);
        if (r && r->rank == 0)
            diag_error(v->loc, "%s(%s) needs a floating-point scalar result; %s returns %s: cast it with %s.to(f32)",
                       v->str, fn->name, fn->name, ts, fn->name);
        else
            diag_error(v->loc, "%s(%s) needs a scalar result; %s returns %s: reduce it with sum(...) or mean(...)",
                       v->str, fn->name, fn->name, ts);
        return NULL;
    }
    bool indep[128];
    int eline, ecol;
    char err[512];
    int errors2 = diag_error_count();
    ir_func *G = pass_autodiff_custom(F, d->name, nwrt, wrt, indep, ncustom, customs, emit_custom_grad, c, &eline,
                                      &ecol, err, sizeof err);
    if (!G) {
        if (diag_error_count() == errors2)   /* a custom gradient reports its own errors */
            diag_error(src_loc_make(c->file->file, eline, ecol), "%s", err);
        diag_note(v->loc, "while differentiating '%s' for export '%s'", fn->name, d->name);
        return NULL;
    }
    G->line = d->loc.line;
    G->col = d->loc.col;
    for (int k = 0; k < nwrt; k++)
        if (indep[k])
            diag_warning(wloc[k], "the result of '%s' does not depend on %s '%s': its gradient is zeros", fn->name,
                         wrt[k].is_param ? "param" : "argument", wname[k]);
    return G;
}


/* ------------------------------------------------------------------ training steps */

/* Options of sgd/adam/adamw (spec 3.7): the numeric ones may also come positionally, in
 * this order, after the function. */
enum { O_LR, O_MOMENTUM, O_WD, O_NESTEROV, O_BETA1, O_BETA2, O_EPS, O_PARAMS, O_ACCUMULATE, O_PRECISION, O_COUNT };
static const char *const opt_names[O_COUNT] = {"lr", "momentum", "weight_decay", "nesterov", "beta1", "beta2", "eps",
                                               "params", "accumulate", "precision"};
typedef enum { OPT_SGD, OPT_ADAM, OPT_ADAMW } opt_kind;
/* per optimizer: its options in positional order, -1 ended */
static const int opt_order[3][9] = {
    {O_LR, O_MOMENTUM, O_WD, O_NESTEROV, O_PARAMS, O_ACCUMULATE, O_PRECISION, -1},
    {O_LR, O_BETA1, O_BETA2, O_EPS, O_WD, O_PARAMS, O_ACCUMULATE, O_PRECISION, -1},
    {O_LR, O_BETA1, O_BETA2, O_EPS, O_WD, O_PARAMS, O_ACCUMULATE, O_PRECISION, -1},
};
static const int opt_npositional[3] = {4, 5, 5};

typedef struct step_ctx {
    lower_ctx *c;
    const ast_decl *d;
    int apply;           /* bool scalar: this call applies the update (accumulate=N), or -1: always */
} step_ctx;

static int sval(value v) { return v.k == V_TENSOR ? v.id : -1; }

/* A rank-0 constant of dtype dt. */
static int sconst(step_ctx *S, double v, ir_dtype dt) { return sval(emit_const(S->c, v, dt)); }

/* op(a, b), a rank-0 operand expanded to the other's shape (both of one dtype). */
static int sbin(step_ctx *S, ir_opcode op, int a, int b)
{
    if (a < 0 || b < 0)
        return -1;
    const ir_node *na = node(S->c, a), *nb = node(S->c, b);
    if (na->rank == 0 && nb->rank > 0)
        a = sval(emit_expand(S->c, a, nb->rank, nb->shape));
    else if (nb->rank == 0 && na->rank > 0)
        b = sval(emit_expand(S->c, b, na->rank, na->shape));
    if (a < 0 || b < 0)
        return -1;
    int in[2] = {a, b};
    ir_proto p = {.op = op, .nin = 2, .in = in};
    return sval(emit(S->c, &p));
}

static int sun(step_ctx *S, ir_opcode op, int a) { return a < 0 ? -1 : sval(emit1(S->c, op, a)); }

/* With accumulate=N: the new value only on the calls that apply the update, else the old. */
static int gated(step_ctx *S, int upd, int old)
{
    if (S->apply < 0 || upd < 0 || old < 0)
        return upd;
    const ir_node *n = node(S->c, upd);
    int cond = n->rank ? sval(emit_expand(S->c, S->apply, n->rank, n->shape)) : S->apply;
    if (cond < 0)
        return -1;
    int in[3] = {cond, upd, old};
    ir_proto p = {.op = OP_where, .nin = 3, .in = in};
    return sval(emit(S->c, &p));
}

/* A new module state `<export>.<param>.<what>` (zeros at create) and its `state` leaf. */
static int new_state(step_ctx *S, const char *pname, const char *what, ir_dtype dt, int rank, const int64_t *shape,
                     int *index)
{
    lower_ctx *c = S->c;
    ir_state st = {.dtype = dt, .rank = rank, .line = S->d->loc.line, .col = S->d->loc.col};
    if (rank > 0)   /* scalars pass shape NULL */
        memcpy(st.shape, shape, sizeof(int64_t) * (size_t)rank);
    st.name = pname ? arena_printf(c->ar, "%s.%s.%s", S->d->name, pname, what) : arena_printf(c->ar, "%s.%s", S->d->name, what);
    *index = ir_add_state(c->mod, &st);
    ir_proto p = {.op = OP_state, .i = {*index}, .name = st.name};
    return sval(emit(c, &p));
}

static void name_node(step_ctx *S, int id, const char *fmt, const char *a, const char *b)
{
    if (id >= 0)
        node(S->c, id)->name = arena_printf(S->c->ar, fmt, a, b);
}

/* Reads the options of sgd/adam/adamw; false after an error. opt[] holds numbers, params the
 * list expression (or NULL: all float params). */
static bool step_options(lower_ctx *c, const ast_expr *v, opt_kind kind, double *opt, bool *given,
                         const ast_expr **params)
{
    static const double defaults[3][O_COUNT] = {
        /* lr, momentum, wd, nesterov, beta1, beta2, eps, params, accumulate, precision */
        {0, 0, 0, 0, 0, 0, 0, 0, 1, 0},
        {1e-3, 0, 0, 0, 0.9, 0.999, 1e-8, 0, 1, 0},
        {1e-3, 0, 1e-2, 0, 0.9, 0.999, 1e-8, 0, 1, 0},
    };
    memcpy(opt, defaults[kind], sizeof defaults[kind]);
    const ast_expr *where[O_COUNT] = {0};
    bool ok = true;
    *params = NULL;
    int npos = 0;
    for (int k = 1; k < v->nargs; k++) {
        const ast_arg *a = &v->args[k];
        int o = -1;
        if (!a->name) {
            if (npos >= opt_npositional[kind]) {
                diag_error(a->value->loc, "%s() takes at most %d options by position (%s, ...); name the others, e.g. "
                                          "accumulate=4", v->str, opt_npositional[kind], opt_names[opt_order[kind][0]]);
                ok = false;
                continue;
            }
            o = opt_order[kind][npos++];
        } else {
            for (int j = 0; opt_order[kind][j] >= 0 && o < 0; j++)
                if (strcmp(a->name, opt_names[opt_order[kind][j]]) == 0)
                    o = opt_order[kind][j];
            if (o < 0) {
                diag_error(a->loc, "%s() has no option '%s'", v->str, a->name);
                const char *best = NULL;
                int bd = 3;
                for (int j = 0; opt_order[kind][j] >= 0; j++)
                    if (edit_distance(a->name, opt_names[opt_order[kind][j]]) < bd)
                        bd = edit_distance(a->name, opt_names[opt_order[kind][j]]), best = opt_names[opt_order[kind][j]];
                if (best)
                    diag_note(a->loc, "did you mean '%s'?", best);
                else {
                    char all[200] = "";
                    size_t n = 0;
                    for (int j = 0; opt_order[kind][j] >= 0 && n < sizeof all; j++)
                        n += (size_t)snprintf(all + n, sizeof all - n, "%s%s", j ? ", " : "", opt_names[opt_order[kind][j]]);
                    diag_note(a->loc, "%s() takes: %s", v->str, all);
                }
                ok = false;
                continue;
            }
        }
        if (where[o]) {
            diag_error(a->name ? a->loc : a->value->loc, "%s() option '%s' is given twice", v->str, opt_names[o]);
            ok = false;
            continue;
        }
        where[o] = a->value;
        given[o] = true;
        if (o == O_PRECISION) {
            diag_error(a->name ? a->loc : a->value->loc, "precision= comes with mixed precision, not in this version");
            ok = false;
            continue;
        }
        if (o == O_PARAMS) {
            *params = a->value;
            continue;
        }
        value x = const_expr(c, a->value);
        if (x.k == V_ERR) {
            ok = false;
            continue;
        }
        if (o == O_NESTEROV && x.k != V_BOOL) {
            diag_error(a->value->loc, "nesterov= takes true or false");
            ok = false;
            continue;
        }
        if (o == O_ACCUMULATE && (x.k != V_INT || x.i < 1 || x.i > (1 << 30))) {
            diag_error(a->value->loc, "accumulate= takes a whole number of calls >= 1 (1: update on every call)");
            ok = false;
            continue;
        }
        if (o != O_NESTEROV && x.k == V_BOOL) {
            diag_error(a->value->loc, "%s= takes a number, got %s", opt_names[o], x.i ? "true" : "false");
            ok = false;
            continue;
        }
        opt[o] = num(x);
    }
    if (!ok)
        return false;
    /* torch.optim's own checks */
    const src_loc at = v->loc;
    if (kind == OPT_SGD && !given[O_LR]) {
        diag_error(at, "sgd() needs a learning rate: sgd(%s, lr=0.1)", v->args[0].value->str);
        return false;
    }
    struct { int o; double lo, hi; bool hi_open; } ranges[] = {
        {O_LR, 0, INFINITY, false}, {O_MOMENTUM, 0, INFINITY, false}, {O_WD, 0, INFINITY, false},
        {O_BETA1, 0, 1, true}, {O_BETA2, 0, 1, true}, {O_EPS, 0, INFINITY, false},
    };
    for (size_t k = 0; k < sizeof ranges / sizeof *ranges; k++) {
        double x = opt[ranges[k].o];
        if (!(x >= ranges[k].lo) || (ranges[k].hi_open ? x >= ranges[k].hi : x > ranges[k].hi) || isinf(x)) {
            diag_error(where[ranges[k].o] ? where[ranges[k].o]->loc : at, "%s() needs %s in %s, got %g", v->str,
                       opt_names[ranges[k].o], ranges[k].hi_open ? "[0, 1)" : "[0, inf)", x);
            ok = false;
        }
    }
    if (kind == OPT_SGD && opt[O_NESTEROV] != 0 && opt[O_MOMENTUM] <= 0) {
        diag_error(where[O_NESTEROV]->loc, "nesterov=true needs a momentum > 0 (torch.optim.SGD says the same)");
        ok = false;
    }
    return ok;
}

/* The params a step trains: params=[names] or every floating-point param. */
static int step_params(lower_ctx *c, const ast_expr *v, const ast_decl *fn, const ast_expr *list, pass_wrt *wrt,
                       const char **wname, src_loc *wloc)
{
    int n = 0;
    if (!list) {
        for (int k = 0; k < c->mod->nparams && n < 128; k++)
            if (ir_dtype_is_float(c->mod->params[k].dtype)) {
                wname[n] = c->mod->params[k].name;
                wloc[n] = v->loc;
                wrt[n++] = (pass_wrt){.is_param = true, .index = k};
            }
        if (n == 0)
            diag_error(v->loc, "%s(%s) has nothing to train: the module declares no floating-point params", v->str,
                       fn->name);
        else if (c->mod->nparams > 128)
            diag_error(v->loc, "a training step trains at most 128 params; list them with params=[...]"), n = 0;
        return n;
    }
    const ast_expr *const *items = (const ast_expr *const *)&list;
    int cnt = 1;
    if (list->kind == AST_LIST) {
        items = (const ast_expr *const *)list->items;
        cnt = list->nitems;
    }
    if (cnt == 0 || cnt > 128) {
        diag_error(list->loc, "params= needs a list of 1 to 128 param names");
        return 0;
    }
    bool ok = true;
    for (int k = 0; k < cnt; k++) {
        const ast_expr *e = items[k];
        global *g = e->kind == AST_NAME ? find_global(c, e->str) : NULL;
        if (!g || g->kind != DECL_PARAM) {
            if (e->kind == AST_NAME)
                diag_error(e->loc, "params= names params to train; '%s' is not a param", e->str);
            else
                diag_error(e->loc, "params= takes param names: params=[W1, b1]");
            if (e->kind == AST_NAME) {
                const char *best = NULL;
                int bd = 3;
                for (int j = 0; j < c->mod->nparams; j++)
                    if (edit_distance(e->str, c->mod->params[j].name) < bd)
                        bd = edit_distance(e->str, c->mod->params[j].name), best = c->mod->params[j].name;
                if (best)
                    diag_note(e->loc, "did you mean '%s'?", best);
            }
            ok = false;
            continue;
        }
        for (int j = 0; j < n; j++)
            if (wrt[j].index == g->param_index) {
                diag_error(e->loc, "'%s' appears twice in params=", e->str);
                ok = false;
            }
        wname[n] = e->str;
        wloc[n] = e->loc;
        wrt[n++] = (pass_wrt){.is_param = true, .index = g->param_index};
    }
    return ok ? n : 0;
}

/* `export step = sgd|adam|adamw(F, ...)`: the gradient function of F by its params
 * (pass_autodiff), then the update rules of torch.optim (docs/training.md) as IR: F's
 * value is the one result; the new params and optimizer states are update outputs. */
static void lower_step_export(lower_ctx *c, const ast_decl *d, const ast_decl *fn)
{
    const ast_expr *v = d->value;
    opt_kind kind = strcmp(v->str, "sgd") == 0 ? OPT_SGD : strcmp(v->str, "adam") == 0 ? OPT_ADAM : OPT_ADAMW;
    double opt[O_COUNT];
    bool given[O_COUNT] = {0};
    const ast_expr *plist;
    if (!step_options(c, v, kind, opt, given, &plist))
        return;
    pass_wrt wrt[128];
    const char *wname[128];
    src_loc wloc[128];
    int np = step_params(c, v, fn, plist, wrt, wname, wloc);
    if (np == 0)
        return;
    ir_func *G = differentiate(c, d, fn, np, wrt, wname, wloc);
    if (!G)
        return;
    /* G returns F's value, then one gradient per param: keep them, rebuild the outputs */
    int loss = G->outs[0];
    int grads[128];
    for (int k = 0; k < np; k++)
        grads[k] = G->outs[1 + k];
    G->nouts = 0;
    G->outs = NULL;
    G->updates = NULL;
    ir_add_output(G, loss);

    c->fn = G;
    c->loc = d->loc;
    c->param_nodes = arena_alloc(c->ar, sizeof(int) * (size_t)(c->mod->nparams + 1));
    for (int k = 0; k < c->mod->nparams; k++)
        c->param_nodes[k] = -1;
    for (int id = 0; id < G->nnodes; id++)
        if (G->nodes[id].op == OP_param)
            c->param_nodes[G->nodes[id].i[0]] = id;
    step_ctx S = {.c = c, .d = d, .apply = -1};
    int errors = diag_error_count();
    int64_t N = (int64_t)opt[O_ACCUMULATE];
    int upd_state[3 * 128 + 4], upd_state_val[3 * 128 + 4], nst = 0;
#define PUSH_STATE(index, val) (upd_state[nst] = (index), upd_state_val[nst++] = (val))
    if (N > 1) {   /* a call counter: the update applies when it reaches N, then restarts */
        int idx, calls = new_state(&S, NULL, "calls", DT_I64, 0, NULL, &idx);
        int c1 = sbin(&S, OP_add, calls, sconst(&S, 1, DT_I64));
        S.apply = sbin(&S, OP_eq, c1, sconst(&S, (double)N, DT_I64));
        name_node(&S, S.apply, "%s.apply%s", d->name, "");
        int in[3] = {S.apply, sconst(&S, 0, DT_I64), c1};
        ir_proto w = {.op = OP_where, .nin = 3, .in = in, .name = arena_printf(c->ar, "%s.calls", d->name)};
        PUSH_STATE(idx, sval(emit(c, &w)));
    }
    /* Adam's step count and bias corrections, as f64 scalars like torch's Python floats */
    int neg_step_size = -1, bc2_sqrt = -1, t_idx = -1, t_new = -1;
    if (kind != OPT_SGD) {
        int t = new_state(&S, NULL, "step", DT_I64, 0, NULL, &t_idx);
        int t1 = sbin(&S, OP_add, t, sconst(&S, 1, DT_I64));
        t_new = gated(&S, t1, t);
        name_node(&S, t_new, "%s.step%s", d->name, "");
        int tf = sval(emit_cast(c, t1, DT_F64));
        int bc1 = sbin(&S, OP_sub, sconst(&S, 1, DT_F64), sbin(&S, OP_pow, sconst(&S, opt[O_BETA1], DT_F64), tf));
        int bc2 = sbin(&S, OP_sub, sconst(&S, 1, DT_F64), sbin(&S, OP_pow, sconst(&S, opt[O_BETA2], DT_F64), tf));
        neg_step_size = sun(&S, OP_neg, sbin(&S, OP_div, sconst(&S, opt[O_LR], DT_F64), bc1));
        bc2_sqrt = sun(&S, OP_sqrt, bc2);
        name_node(&S, neg_step_size, "%s.neg_step_size%s", d->name, "");
        name_node(&S, bc2_sqrt, "%s.bias_correction2_sqrt%s", d->name, "");
    }
    int pnew[128];
    for (int k = 0; k < np && diag_error_count() == errors; k++) {
        const ir_param *P = &c->mod->params[wrt[k].index];
        const char *pn = P->name;
        ir_dtype dt = P->dtype;
        int p = sval(param_value(c, &(global){.name = pn, .loc = d->loc, .kind = DECL_PARAM, .param_index = wrt[k].index}));
        c->loc = d->loc;
        int g = grads[k];
        if (N > 1) {   /* the mean of N gradients: acc + g/N, zeroed when applied */
            int idx, acc = new_state(&S, pn, "grad_acc", dt, P->rank, P->shape, &idx);
            g = sbin(&S, OP_add, acc, sbin(&S, OP_div, g, sconst(&S, (double)N, dt)));
            name_node(&S, g, "%s.grad_mean%s", pn, "");
            int zero = sval(emit_expand(c, sconst(&S, 0, dt), P->rank, P->shape));
            int acc_new = gated(&S, zero, g);
            name_node(&S, acc_new, "%s.%s.grad_acc", d->name, pn);
            PUSH_STATE(idx, acc_new);
        }
        if (kind == OPT_SGD) {
            if (opt[O_WD] != 0)   /* d_p = d_p.add(param, alpha=weight_decay) */
                g = sbin(&S, OP_add, g, sbin(&S, OP_mul, sconst(&S, opt[O_WD], dt), p));
            if (opt[O_MOMENTUM] != 0) {   /* buf = buf * momentum + d_p (buf starts at zero) */
                int idx, buf = new_state(&S, pn, "momentum_buffer", dt, P->rank, P->shape, &idx);
                int b = sbin(&S, OP_add, sbin(&S, OP_mul, buf, sconst(&S, opt[O_MOMENTUM], dt)), g);
                name_node(&S, b, "%s.%s.momentum_buffer", d->name, pn);
                PUSH_STATE(idx, gated(&S, b, buf));
                g = opt[O_NESTEROV] != 0 ? sbin(&S, OP_add, g, sbin(&S, OP_mul, sconst(&S, opt[O_MOMENTUM], dt), b)) : b;
            }
            /* param.add_(d_p, alpha=-lr) */
            pnew[k] = sbin(&S, OP_add, p, sbin(&S, OP_mul, sconst(&S, -opt[O_LR], dt), g));
        } else {
            int base = p;
            if (kind == OPT_ADAM && opt[O_WD] != 0)   /* grad = grad.add(param, alpha=weight_decay) */
                g = sbin(&S, OP_add, g, sbin(&S, OP_mul, sconst(&S, opt[O_WD], dt), p));
            if (kind == OPT_ADAMW && opt[O_WD] != 0)   /* param.mul_(1 - lr * weight_decay) */
                base = sbin(&S, OP_mul, p, sconst(&S, 1 - opt[O_LR] * opt[O_WD], dt));
            int im, iv;
            int m = new_state(&S, pn, "exp_avg", dt, P->rank, P->shape, &im);
            int vv = new_state(&S, pn, "exp_avg_sq", dt, P->rank, P->shape, &iv);
            /* exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1) */
            int m1 = sbin(&S, OP_add, sbin(&S, OP_mul, m, sconst(&S, opt[O_BETA1], dt)),
                          sbin(&S, OP_mul, sconst(&S, 1 - opt[O_BETA1], dt), g));
            /* exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2) */
            int v1 = sbin(&S, OP_add, sbin(&S, OP_mul, vv, sconst(&S, opt[O_BETA2], dt)),
                          sbin(&S, OP_mul, sbin(&S, OP_mul, sconst(&S, 1 - opt[O_BETA2], dt), g), g));
            name_node(&S, m1, "%s.%s.exp_avg", d->name, pn);
            name_node(&S, v1, "%s.%s.exp_avg_sq", d->name, pn);
            /* denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps) */
            int denom = sbin(&S, OP_add, sbin(&S, OP_div, sun(&S, OP_sqrt, v1), sval(emit_cast(c, bc2_sqrt, dt))),
                             sconst(&S, opt[O_EPS], dt));
            /* param.addcdiv_(exp_avg, denom, value=-step_size) */
            pnew[k] = sbin(&S, OP_add, base, sbin(&S, OP_mul, sval(emit_cast(c, neg_step_size, dt)),
                                                  sbin(&S, OP_div, m1, denom)));
            PUSH_STATE(im, gated(&S, m1, m));
            PUSH_STATE(iv, gated(&S, v1, vv));
        }
        pnew[k] = gated(&S, pnew[k], p);
        name_node(&S, pnew[k], "%s.%s", d->name, pn);
    }
    if (t_idx >= 0)
        PUSH_STATE(t_idx, t_new);
#undef PUSH_STATE
    c->fn = NULL;
    if (diag_error_count() > errors)
        return;
    for (int k = 0; k < np; k++) {
        if (pnew[k] < 0)
            return;
        ir_add_update(G, pnew[k], IR_UPD_PARAM, wrt[k].index);
    }
    for (int k = 0; k < nst; k++) {
        if (upd_state_val[k] < 0)
            return;
        if (!G->nodes[upd_state_val[k]].name)   /* dumps name each new value after its state */
            G->nodes[upd_state_val[k]].name = c->mod->states[upd_state[k]].name;
        ir_add_update(G, upd_state_val[k], IR_UPD_STATE, upd_state[k]);
    }
}

static void lower_export_decl(lower_ctx *c, const ast_decl *d)
{
    const ast_expr *v = d->value;
    static const char *const forms[] = {"grad", "sgd", "adam", "adamw"};
    bool known = false;
    for (int k = 0; v && v->kind == AST_CALL && k < 4; k++)
        known |= strcmp(v->str, forms[k]) == 0;
    if (!known) {
        diag_error(v ? v->loc : d->loc, "an export declaration must be grad(f, ...), sgd(f, ...), adam(f, ...) or adamw(f, ...)");
        return;
    }
    if (v->nargs < 1 || v->args[0].name || v->args[0].value->kind != AST_NAME) {
        diag_error(v->loc, "%s() needs the function to differentiate as its first argument: %s(loss, ...)", v->str, v->str);
        return;
    }
    const char *fname = v->args[0].value->str;
    global *g = find_global(c, fname);
    if (!g || g->kind != DECL_FN) {
        diag_error(v->args[0].value->loc, "%s() of '%s', which is not a fn", v->str, fname);
        if (!g)
            suggest_name(c, fname, false);
        return;
    }
    if (strcmp(v->str, "grad") == 0) {
        if (g->decl->exported) {
            diag_error(v->args[0].value->loc, "grad() of '%s', which is an exported fn; differentiate a helper fn "
                                              "(move the body into `fn %s_impl(...)`)", fname, fname);
            return;
        }
        lower_grad_export(c, d, g->decl);
        return;
    }
    if (g->decl->exported) {
        diag_error(v->args[0].value->loc, "%s() of '%s', which is an exported fn; train a helper fn "
                                          "(move the body into `fn %s_impl(...)`)", v->str, fname, fname);
        return;
    }
    lower_step_export(c, d, g->decl);
}

ir_module *lower_file(arena *ar, const ast_file *file, lower_opts *opts)
{
    lower_ctx ctx = {.ar = ar, .file = file, .opts = opts};
    lower_ctx *c = &ctx;
    int errors0 = diag_error_count();
    c->mod = ir_module_new(ar, opts && opts->module_name ? opts->module_name : "module");
    /* pass 1: constants in order, params, fn names (fns may be called before they are defined) */
    for (int k = 0; k < file->ndecls; k++) {
        const ast_decl *d = file->decls[k];
        c->loc = d->loc;
        switch (d->kind) {
        case DECL_CONST: {
            value v = VERR;
            lower_define *def = NULL;
            for (int j = 0; opts && j < opts->ndefines; j++)
                if (strcmp(opts->defines[j].name, d->name) == 0)
                    def = &opts->defines[j];
            if (def) {
                def->used = true;
                if (!parse_define(def->value, &v)) {
                    diag_error(d->loc, "-D %s=%s: the value is not a number", def->name, def->value);
                    v = VERR;
                }
            } else {
                v = const_expr(c, d->value);
            }
            add_global(c, d, DECL_CONST, v, -1);
            break;
        }
        case DECL_PARAM: {
            ir_param p = {.name = d->name, .line = d->loc.line, .col = d->loc.col};
            if (!eval_type(c, d->type, &p.dtype, &p.rank, p.shape) || !param_init(c, d->value, &p)) {
                add_global(c, d, DECL_CONST, VERR, -1);   /* later uses stay quiet */
                break;
            }
            add_global(c, d, DECL_PARAM, VERR, ir_add_param(c->mod, &p));
            break;
        }
        case DECL_FN:
            add_global(c, d, DECL_FN, VERR, -1);
            if (d->has_grad && d->exported)
                diag_error(d->grad_loc, "a custom gradient belongs to a helper fn, not an exported one");
            break;
        case DECL_EXPORT:
            add_global(c, d, DECL_EXPORT, VERR, -1);
            break;
        }
    }
    for (int j = 0; opts && j < opts->ndefines; j++)
        if (!opts->defines[j].used) {
            diag_error(src_loc_make(file->file, 0, 0), "-D %s: there is no const named '%s' to override",
                       opts->defines[j].name, opts->defines[j].name);
        }
    /* pass 2: exported fns and export declarations */
    for (int k = 0; k < file->ndecls; k++) {
        const ast_decl *d = file->decls[k];
        if (d->kind == DECL_FN && d->exported)
            lower_export_fn(c, d);
        else if (d->kind == DECL_EXPORT)
            lower_export_decl(c, d);
    }
    c->fn = NULL;
    return diag_error_count() > errors0 ? NULL : c->mod;
}
