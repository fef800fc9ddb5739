/* The builtin functions of tdsl (spec 3, "Operations"): the table, argument binding, and each
 * builtin's checks and lowering, with PyTorch's dtype promotion and NumPy broadcasting. */
#include "lower_internal.h"
#include <math.h>
#include <string.h>

static value emit_view(lower_ctx *c, ir_opcode op, int a, int n, const int64_t *list)
{
    ir_proto p = {.op = op, .nin = 1, .in = &a, .nlist = n};
    memcpy(p.list, list, sizeof(int64_t) * (size_t)n);
    return lw_emit(c, &p);
}

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
                    lw_shape_str(buf[m++], sizeof buf[0], node(c, vs[j].id));
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
            v = lw_emit_const(c, num(v), dt);
        else
            v = lw_emit_cast(c, v.id, dt);
        if (v.k == V_ERR)
            return false;
        v = lw_emit_expand(c, v.id, rank, shape);
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
        diag_error(c->loc, "%s must be a tensor or a number, got %s", what, lw_vkind_name(v.k));
    return false;
}

value lw_to_tensor(lower_ctx *c, value v)
{
    if (v.k == V_TENSOR || v.k == V_ERR)
        return v;
    if (is_number(v))
        return lw_emit_const(c, num(v), v.k == V_FLOAT ? DT_F32 : v.k == V_INT ? DT_I64 : DT_BOOL);
    diag_error(c->loc, "expected a tensor, got %s", lw_vkind_name(v.k));
    return VERR;
}

/* ------------------------------------------------------------------ argument binding */

/* Binds positional and keyword arguments to the signature's slots. Absent optional
 * arguments are V_NONE; `*rest` collects remaining positionals into a V_LIST (or takes
 * a single list argument as is, so `view(x, [2, 3])` equals `x.view(2, 3)`). */
bool lw_bind_args(lower_ctx *c, const char *fname, const char *sig, int npos, value *pos,
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
                if (strlen(names[t]) > 1 && lw_edit_distance(kn, names[t]) <= 2) {
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

bool lw_get_int(lower_ctx *c, value v, const char *what, int64_t *out)
{
    if (v.k == V_INT) {
        *out = v.i;
        return true;
    }
    if (v.k != V_ERR)
        diag_error(c->loc, "%s must be a compile-time integer, got %s", what, lw_vkind_name(v.k));
    return false;
}

static bool get_num(lower_ctx *c, value v, const char *what, double *out)
{
    if (is_number(v)) {
        *out = num(v);
        return true;
    }
    if (v.k != V_ERR)
        diag_error(c->loc, "%s must be a compile-time number, got %s", what, lw_vkind_name(v.k));
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
        diag_error(c->loc, "expected true or false, got %s", lw_vkind_name(v.k));
    return false;
}

static bool get_tensor(lower_ctx *c, value v, const char *what, int *id)
{
    if (v.k == V_TENSOR) {
        *id = v.id;
        return true;
    }
    if (v.k != V_ERR)
        diag_error(c->loc, "%s must be a tensor, got %s", what, lw_vkind_name(v.k));
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
            diag_error(c->loc, "a shape must be a list of integers, got %s", lw_vkind_name(v.k));
        return false;
    }
    if (v.n > IR_MAX_RANK) {
        diag_error(c->loc, "shapes have at most %d dimensions, got %d", IR_MAX_RANK, v.n);
        return false;
    }
    for (int d = 0; d < v.n; d++) {
        if (!lw_get_int(c, v.items[d], "a dimension", &shape[d]))
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
            if (!lw_get_int(c, v.k == V_LIST ? v.items[k] : one, "an axis", &ax) || !wrap_axis(c, ax, rank, &ax))
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
value lw_binary(lower_ctx *c, ir_opcode op, value a, value b)
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
    return lw_emit(c, &p);
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
value lw_unary(lower_ctx *c, ir_opcode op, value x, const double *fattr, int64_t iattr)
{
    if (!expect_tensorish(c, x, "the operand"))
        return VERR;
    x = lw_to_tensor(c, x);
    if (x.k == V_ERR)
        return VERR;
    ir_dtype dt = node(c, x.id)->dtype;
    unsigned fl = ir_ops[op].flags;
    if ((fl & OPF_FLOAT) && !ir_dtype_is_float(dt))
        x = lw_emit_cast(c, x.id, DT_F32);
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
    return lw_emit(c, &p);
}

static value bi_unary(lower_ctx *c, value *a, const builtin *b) { return lw_unary(c, b->op, a[0], NULL, 0); }
static value bi_binary(lower_ctx *c, value *a, const builtin *b) { return lw_binary(c, b->op, a[0], a[1]); }

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
    return lw_unary(c, OP_gelu, a[0], NULL, tanh_form);
}

static value bi_leaky_relu(lower_ctx *c, value *a, const builtin *b)
{
    double f[2] = {0.01, 0};
    value s = a[1].k != V_NONE ? a[1] : a[2];
    if (s.k != V_NONE && !get_num(c, s, "slope", &f[0]))
        return VERR;
    return lw_unary(c, OP_leaky_relu, a[0], f, 0);
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
    value x = lw_to_tensor(c, a[0]);
    if (x.k == V_ERR)
        return VERR;
    /* torch: a float bound on an integer tensor gives a float result */
    if (!ir_dtype_is_float(node(c, x.id)->dtype) && (a[1].k == V_FLOAT || a[2].k == V_FLOAT))
        x = lw_emit_cast(c, x.id, DT_F32);
    if (x.k == V_ERR)
        return VERR;
    return lw_unary(c, OP_clamp, x, f, 0);
}

static value bi_where(lower_ctx *c, value *a, const builtin *b)
{
    if (!expect_tensorish(c, a[0], "the condition") || !expect_tensorish(c, a[1], "where's second argument") ||
        !expect_tensorish(c, a[2], "where's third argument"))
        return VERR;
    value m = lw_to_tensor(c, a[0]);
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
        value v = k == 0 ? m
                  : all[k].k == V_TENSOR ? lw_emit_cast(c, all[k].id, dt) : lw_emit_const(c, num(all[k]), dt);
        if (v.k == V_ERR || (v = lw_emit_expand(c, v.id, rank, shape)).k == V_ERR)
            return VERR;
        ids[k] = v.id;
    }
    ir_proto p = {.op = OP_where, .nin = 3, .in = ids};
    return lw_emit(c, &p);
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
    return lw_emit_cast(c, r.id, xn->dtype);
}

/* ------------------------------------------------------------------ reductions and nn */

static value bi_reduce(lower_ctx *c, value *a, const builtin *b)
{
    value x = lw_to_tensor(c, a[0]);
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
            x = lw_emit_cast(c, x.id, DT_F32);   /* torch.logsumexp promotes integers */
        } else {
            diag_error(c->loc, "%s() needs a floating-point tensor, got %s; cast it first (x.to(f32))",
                       ir_ops[op].name, ir_dtype_name(xn->dtype));
            return VERR;
        }
    } else if (xn->dtype == DT_BOOL && (op == OP_argmax || op == OP_argmin)) {
        x = lw_emit_cast(c, x.id, DT_I64);
    }
    if (x.k == V_ERR)
        return VERR;
    ir_proto p = {.op = op, .nin = 1, .in = &x.id, .nlist = n, .i = {keep}};
    memcpy(p.list, axes, sizeof(int64_t) * (size_t)n);
    return lw_emit(c, &p);
}

static bool float_input(lower_ctx *c, value *v, const char *fname)
{
    *v = lw_to_tensor(c, *v);
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
    if (a[1].k != V_NONE && !lw_get_int(c, a[1], "axis", &ax))
        return VERR;
    if (!wrap_axis(c, ax, node(c, x.id)->rank, &ax))
        return VERR;
    if (node(c, x.id)->rank == 0) {
        diag_error(c->loc, "%s() needs a tensor of rank >= 1", b->name);
        return VERR;
    }
    ir_proto p = {.op = b->op, .nin = 1, .in = &x.id, .i = {ax}};
    return lw_emit(c, &p);
}

static value bi_cross_entropy(lower_ctx *c, value *a, const builtin *b)
{
    value x = a[0];
    int y;
    if (!float_input(c, &x, "cross_entropy") || !get_tensor(c, a[1], "labels", &y))
        return VERR;
    ir_node *xn = node(c, x.id), *yn = node(c, y);
    char sx[128], sy[128];
    lw_shape_str(sx, sizeof sx, xn);
    lw_shape_str(sy, sizeof sy, yn);
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
    return lw_emit(c, &p);
}

static value bi_mse(lower_ctx *c, value *a, const builtin *b)
{
    value d = lw_binary(c, OP_sub, a[0], a[1]);
    if (d.k == V_ERR)
        return VERR;
    if (!ir_dtype_is_float(node(c, d.id)->dtype)) {
        diag_error(c->loc, "mse() needs floating-point tensors");
        return VERR;
    }
    value sq = lw_binary(c, OP_mul, d, d);
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
            w = lw_emit(c, &p);
        } else if (w.k == V_TENSOR) {
            ir_node *wn = node(c, w.id);
            if (wn->rank != 1 || wn->shape[0] != d) {
                char sw[128], sx[128];
                lw_shape_str(sw, sizeof sw, wn);
                lw_shape_str(sx, sizeof sx, node(c, x.id));
                diag_error(c->loc, "layer_norm() %s must have shape [%lld] (the last dimension of x %s), got %s",
                           k == 1 ? "weight" : "bias", (long long)d, sx, sw);
                return VERR;
            }
            w = lw_emit_cast(c, w.id, node(c, x.id)->dtype);
        } else {
            diag_error(c->loc, "layer_norm() %s must be a tensor", k == 1 ? "weight" : "bias");
            return VERR;
        }
        if (w.k == V_ERR)
            return VERR;
        ids[k] = w.id;
    }
    ir_proto p = {.op = OP_layer_norm, .nin = 3, .in = ids, .f = {eps}};
    return lw_emit(c, &p);
}

static value bi_one_hot(lower_ctx *c, value *a, const builtin *b)
{
    int y;
    int64_t n;
    if (!get_tensor(c, a[0], "labels", &y) || !lw_get_int(c, a[1], "num_classes", &n))
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
    return lw_emit(c, &p);
}

/* ------------------------------------------------------------------ matmul (torch.matmul's rules) */

value lw_matmul(lower_ctx *c, value a, value b)
{
    if (a.k != V_TENSOR || b.k != V_TENSOR) {
        if (a.k != V_ERR && b.k != V_ERR)
            diag_error(c->loc, "'@' needs two tensors, got %s and %s", lw_vkind_name(a.k), lw_vkind_name(b.k));
        return VERR;
    }
    ir_node *an = node(c, a.id), *bn = node(c, b.id);
    char sa[128], sb[128];
    lw_shape_str(sa, sizeof sa, an);
    lw_shape_str(sb, sizeof sb, bn);
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
    a = lw_emit_cast(c, a.id, dt);
    b = lw_emit_cast(c, b.id, dt);
    if (a.k == V_ERR || b.k == V_ERR)
        return VERR;
    /* 1-D operands become [1, K] / [K, 1] and the extra dim is dropped afterwards */
    if (ra == 1) {
        ir_proto p = {.op = OP_unsqueeze, .nin = 1, .in = &a.id, .i = {0}};
        if ((a = lw_emit(c, &p)).k == V_ERR)
            return VERR;
    }
    if (rb == 1) {
        ir_proto p = {.op = OP_unsqueeze, .nin = 1, .in = &b.id, .i = {1}};
        if ((b = lw_emit(c, &p)).k == V_ERR)
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
    a = lw_emit_expand(c, a.id, br + 2, sha);
    if (a.k == V_ERR)
        return VERR;
    b = lw_emit_expand(c, b.id, br + 2, shb);
    if (b.k == V_ERR)
        return VERR;
    int ids[2] = {a.id, b.id};
    ir_proto p = {.op = OP_matmul, .nin = 2, .in = ids};
    value r = lw_emit(c, &p);
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

static value copy_of(lower_ctx *c, int x) { return lw_emit1(c, OP_copy, x); }

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
    lw_shape_str(sx, sizeof sx, xn);
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
    if (!get_tensor(c, a[0], "the input", &x) || (a[1].k != V_NONE && !lw_get_int(c, a[1], "start_dim", &s)) ||
        (a[2].k != V_NONE && !lw_get_int(c, a[2], "end_dim", &e)))
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
        if (!lw_get_int(c, l.items[d], "a dim", &dims[d]) || !wrap_axis(c, dims[d], r, &dims[d]))
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
    if (!get_tensor(c, a[0], "the input", &x) || !lw_get_int(c, a[1], "dim0", &d0) || !lw_get_int(c, a[2], "dim1", &d1))
        return VERR;
    return transpose_dims(c, x, d0, d1);
}

value lw_reverse_dims(lower_ctx *c, int x)
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
    if (!get_tensor(c, a[0], "the input", &x) || !lw_get_int(c, a[1], "axis", &ax))
        return VERR;
    int r = node(c, x)->rank;
    if (ax < -(r + 1) || ax > r) {
        diag_error(c->loc, "unsqueeze() of a rank-%d tensor takes an axis in %d..%d, got %lld", r, -(r + 1), r, (long long)ax);
        return VERR;
    }
    ax = ax < 0 ? ax + r + 1 : ax;
    ir_proto p = {.op = OP_unsqueeze, .nin = 1, .in = &x, .i = {ax}};
    return lw_emit(c, &p);
}

static value bi_expand(lower_ctx *c, value *a, const builtin *b)
{
    int x, rank;
    int64_t shape[IR_MAX_RANK];
    if (!get_tensor(c, a[0], "the input", &x) || !get_shape(c, a[1], &rank, shape, true))
        return VERR;
    ir_node *xn = node(c, x);
    char sx[128], sn[128];
    lw_shape_str(sx, sizeof sx, xn);
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
    return lw_emit_expand(c, x, rank, shape);
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
    return lw_emit1(c, OP_stop_gradient, x);
}

static value bi_cast(lower_ctx *c, value *a, const builtin *b)
{
    value x = lw_to_tensor(c, a[0]);
    if (x.k == V_ERR)
        return VERR;
    if (a[1].k != V_DTYPE) {
        if (a[1].k != V_ERR)
            diag_error(c->loc, "%s() needs a dtype (f16 bf16 f32 f64 i32 i64 bool), got %s", b->name,
                       lw_vkind_name(a[1].k));
        return VERR;
    }
    ir_proto p = {.op = OP_cast, .dtype = a[1].dt, .nin = 1, .in = &x.id};
    return lw_emit(c, &p);
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
                diag_error(c->loc, "%s(): element %d is %s, not a tensor", b->name, k, lw_vkind_name(vs[k].k));
            return VERR;
        }
    int64_t ax = 0;
    if (a[1].k != V_NONE && !lw_get_int(c, a[1], "axis", &ax))
        return VERR;
    ir_node *first = node(c, vs[0].id);
    bool stack = b->extra;
    if (!wrap_axis(c, ax, first->rank + stack, &ax))
        return VERR;
    ir_dtype dt = promote_values(c, vs, n);
    int *ids = arena_alloc(c->ar, sizeof(int) * (size_t)n);
    char s0[128], sk[128];
    lw_shape_str(s0, sizeof s0, first);
    for (int k = 0; k < n; k++) {
        ir_node *t = node(c, vs[k].id);
        lw_shape_str(sk, sizeof sk, t);
        bool ok = t->rank == first->rank && (stack || t->rank > 0);
        for (int d = 0; ok && d < t->rank; d++)
            ok = t->shape[d] == first->shape[d] || (!stack && d == ax);
        if (!ok) {
            diag_error(c->loc, "%s(): tensor %d has shape %s, tensor 0 has %s; %s", b->name, k, sk, s0,
                       stack ? "stack needs equal shapes" : "all dimensions but the axis must match");
            return VERR;
        }
        value v = lw_emit_cast(c, vs[k].id, dt);
        if (v.k != V_ERR && stack) {
            ir_proto p = {.op = OP_unsqueeze, .nin = 1, .in = &v.id, .i = {ax}};
            v = lw_emit(c, &p);
        }
        if (v.k == V_ERR)
            return VERR;
        ids[k] = v.id;
    }
    ir_proto p = {.op = OP_concat, .nin = n, .in = ids, .i = {ax}};
    return lw_emit(c, &p);
}

value lw_index_along(lower_ctx *c, int x, int64_t ax, value idx, ir_opcode op, const char *fname)
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
        lw_shape_str(sx, sizeof sx, xn);
        lw_shape_str(si, sizeof si, in);
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
    return lw_emit(c, &p);
}

static value bi_index_select(lower_ctx *c, value *a, const builtin *b)
{
    int x;
    int64_t ax;
    if (!get_tensor(c, a[0], "the input", &x) || !lw_get_int(c, a[1], "axis", &ax))
        return VERR;
    if (b->op == OP_index && a[2].k == V_TENSOR && node(c, a[2].id)->rank != 1) {
        diag_error(c->loc, "index_select() needs a 1-D index; use x[idx] for other shapes");
        return VERR;
    }
    return lw_index_along(c, x, ax, a[2], b->op, b->name);
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
        diag_error(c->loc, "dtype must be one of f16 bf16 f32 f64 i32 i64 bool, got %s", lw_vkind_name(v.k));
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
    return lw_emit(c, &p);
}

static value bi_arange(lower_ctx *c, value *a, const builtin *b)
{
    int64_t start = 0, stop, step = 1;
    if (a[1].k == V_NONE) {
        if (!lw_get_int(c, a[0], "arange's end", &stop))
            return VERR;
    } else if (!lw_get_int(c, a[0], "arange's start", &start) || !lw_get_int(c, a[1], "arange's end", &stop) ||
               (a[2].k != V_NONE && !lw_get_int(c, a[2], "arange's step", &step)))
        return VERR;
    if (step == 0) {
        diag_error(c->loc, "arange(): step must be nonzero");
        return VERR;
    }
    ir_dtype dt;
    if (!get_dtype(c, a[3], DT_I64, &dt))
        return VERR;
    ir_proto p = {.op = OP_arange, .dtype = dt, .i = {start, step, stop}};
    return lw_emit(c, &p);
}

static value bi_eye(lower_ctx *c, value *a, const builtin *b)
{
    int64_t n;
    ir_dtype dt;
    if (!lw_get_int(c, a[0], "eye's size", &n) || !get_dtype(c, a[1], DT_F32, &dt))
        return VERR;
    if (n < 0) {
        diag_error(c->loc, "eye(): size must be >= 0, got %lld", (long long)n);
        return VERR;
    }
    ir_proto p = {.op = OP_eye, .dtype = dt, .i = {n}};
    return lw_emit(c, &p);
}

/* ------------------------------------------------------------------ the builtin table */

value lw_bi_size(lower_ctx *c, value *a, const builtin *b)
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
    if (!lw_get_int(c, a[1], "axis", &ax) || !wrap_axis(c, ax, xn->rank, &ax))
        return VERR;
    return vint(xn->rank ? xn->shape[ax] : 1);
}

const builtin lw_builtins[] = {
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
    {"size", "x, axis=", lw_bi_size, OP_COUNT, 0}, {"numel", "x", lw_bi_size, OP_COUNT, 1},
};
const size_t lw_nbuiltins = sizeof lw_builtins / sizeof *lw_builtins;

const builtin *lw_find_builtin(const char *name)
{
    for (size_t k = 0; k < sizeof lw_builtins / sizeof *lw_builtins; k++)
        if (strcmp(lw_builtins[k].name, name) == 0)
            return &lw_builtins[k];
    return NULL;
}
