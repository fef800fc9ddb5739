/* Shape rules: for each op, the result's dtype and shape, and for views the exact
 * strides and offset PyTorch would give (c10's computeStride, expand, as_strided).
 * A rule rejects a malformed node with a one-line reason; the front end checks user
 * errors first, with locations, so reasons here surface mainly from the text IR parser. */
#include "shape.h"
#include <stdarg.h>
#include <string.h>

int64_t ir_numel(const ir_node *n)
{
    int64_t e = 1;
    for (int d = 0; d < n->rank; d++)
        e *= n->shape[d];
    return e;
}

void ir_contiguous_strides(int rank, const int64_t *shape, int64_t *strides)
{
    int64_t s = 1;
    for (int d = rank - 1; d >= 0; d--) {
        strides[d] = s;
        s *= shape[d] > 1 ? shape[d] : 1;
    }
}

/* TensorImpl::compute_contiguous: size-1 dims may have any stride. */
bool ir_is_contiguous(const ir_node *n)
{
    if (ir_numel(n) == 0)
        return true;
    int64_t expected = 1;
    for (int d = n->rank - 1; d >= 0; d--) {
        if (n->shape[d] == 1)
            continue;
        if (n->strides[d] != expected)
            return false;
        expected *= n->shape[d];
    }
    return true;
}

/* c10 computeStride: view (shape, strides) as new_shape without copying. Dimensions
 * are grouped into chunks that are contiguous among themselves; each new dim must
 * fall inside one chunk. */
bool ir_view_strides(int rank, const int64_t *shape, const int64_t *strides,
                     int new_rank, const int64_t *new_shape, int64_t *new_strides)
{
    int64_t numel = 1;
    for (int d = 0; d < rank; d++)
        numel *= shape[d];
    if (rank == 0) {
        for (int d = 0; d < new_rank; d++)
            new_strides[d] = 1;
        return true;
    }
    if (numel == 0) {
        bool same = rank == new_rank;
        for (int d = 0; same && d < rank; d++)
            same = shape[d] == new_shape[d];
        if (same)
            memcpy(new_strides, strides, sizeof(int64_t) * (size_t)rank);
        else
            ir_contiguous_strides(new_rank, new_shape, new_strides);
        return true;
    }
    int view_d = new_rank - 1;
    int64_t chunk_base_stride = strides[rank - 1];
    int64_t tensor_numel = 1, view_numel = 1;
    for (int tensor_d = rank - 1; tensor_d >= 0; tensor_d--) {
        tensor_numel *= shape[tensor_d];
        if (tensor_d == 0 ||
            (shape[tensor_d - 1] != 1 && strides[tensor_d - 1] != tensor_numel * chunk_base_stride)) {
            while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
                new_strides[view_d] = view_numel * chunk_base_stride;
                view_numel *= new_shape[view_d];
                view_d--;
            }
            if (view_numel != tensor_numel)
                return false;
            if (tensor_d > 0) {
                chunk_base_stride = strides[tensor_d - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    return view_d == -1;
}

void ir_format_shape(char *buf, size_t len, int rank, const int64_t *shape)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, o < len ? len - o : 0, "[");
    for (int d = 0; d < rank; d++)
        o += (size_t)snprintf(buf + o, o < len ? len - o : 0, d ? ", %lld" : "%lld", (long long)shape[d]);
    snprintf(buf + o, o < len ? len - o : 0, "]");
}

/* ---- rules ---- */

typedef struct rule_ctx {
    const ir_func *f;
    ir_node *n;
    char *err;
    size_t errlen;
} rule_ctx;

__attribute__((format(printf, 2, 3))) static bool fail(rule_ctx *c, const char *fmt, ...)
{
    int o = snprintf(c->err, c->errlen, "%s: ", ir_ops[c->n->op].name);
    va_list ap;
    va_start(ap, fmt);
    if (o >= 0 && (size_t)o < c->errlen)
        vsnprintf(c->err + o, c->errlen - (size_t)o, fmt, ap);
    va_end(ap);
    return false;
}

static const ir_node *in(rule_ctx *c, int k) { return &c->f->nodes[c->n->in[k]]; }

static void set_shape(ir_node *n, int rank, const int64_t *shape)
{
    n->rank = rank;
    memmove(n->shape, shape, sizeof(int64_t) * (size_t)rank);
}

static void copy_shape(ir_node *n, const ir_node *a) { set_shape(n, a->rank, a->shape); }

static bool same_shape(const ir_node *a, const ir_node *b)
{
    if (a->rank != b->rank)
        return false;
    for (int d = 0; d < a->rank; d++)
        if (a->shape[d] != b->shape[d])
            return false;
    return true;
}

static bool check_dims(rule_ctx *c, int rank, const int64_t *shape)
{
    for (int d = 0; d < rank; d++)
        if (shape[d] < 0)
            return fail(c, "negative dimension %lld", (long long)shape[d]);
    return true;
}

/* A view: same storage as input 0; strides/offset already set by the rule. */
static void as_view(rule_ctx *c)
{
    const ir_node *a = in(c, 0);
    c->n->storage = a->storage;
    c->n->view_of = c->n->in[0];
}

static bool rule_leaf(rule_ctx *c)
{
    ir_node *n = c->n;
    if (n->op == OP_arg) {
        if (n->i[0] < 0 || n->i[0] >= c->f->nargs)
            return fail(c, "index %lld out of range (function has %d arguments)", (long long)n->i[0], c->f->nargs);
        const ir_arg *a = &c->f->args[n->i[0]];
        n->dtype = a->dtype;
        set_shape(n, a->rank, a->shape);
    } else if (n->op == OP_param) {
        const ir_module *m = c->f->mod;
        if (n->i[0] < 0 || n->i[0] >= m->nparams)
            return fail(c, "index %lld out of range (module has %d params)", (long long)n->i[0], m->nparams);
        const ir_param *p = &m->params[n->i[0]];
        n->dtype = p->dtype;
        set_shape(n, p->rank, p->shape);
    } else if (n->op == OP_state) {
        const ir_module *m = c->f->mod;
        if (n->i[0] < 0 || n->i[0] >= m->nstates)
            return fail(c, "index %lld out of range (module has %d states)", (long long)n->i[0], m->nstates);
        const ir_state *st = &m->states[n->i[0]];
        n->dtype = st->dtype;
        set_shape(n, st->rank, st->shape);
    } else {
        n->rank = 0;   /* const: a scalar */
    }
    return (unsigned)n->dtype < DT_COUNT || fail(c, "bad dtype");
}

static bool rule_full(rule_ctx *c)
{
    if (!check_dims(c, c->n->nlist, c->n->list))
        return false;
    set_shape(c->n, c->n->nlist, c->n->list);
    return true;
}

static bool rule_arange(rule_ctx *c)
{
    ir_node *n = c->n;
    int64_t start = n->i[0], step = n->i[1], stop = n->i[2];
    if (step == 0)
        return fail(c, "step must be nonzero");
    int64_t len = (stop - start + step + (step > 0 ? -1 : 1)) / step;
    n->rank = 1;
    n->shape[0] = len > 0 ? len : 0;
    return true;
}

static bool rule_eye(rule_ctx *c)
{
    if (c->n->i[0] < 0)
        return fail(c, "negative size %lld", (long long)c->n->i[0]);
    c->n->rank = 2;
    c->n->shape[0] = c->n->shape[1] = c->n->i[0];
    return true;
}

static bool check_operand_dtype(rule_ctx *c, ir_dtype t)
{
    unsigned fl = ir_ops[c->n->op].flags;
    if ((fl & OPF_FLOAT) && !ir_dtype_is_float(t))
        return fail(c, "needs a floating-point input, got %s", ir_dtype_name(t));
    if ((fl & OPF_BOOLIO) && t != DT_BOOL)
        return fail(c, "needs bool inputs, got %s", ir_dtype_name(t));
    if (!(fl & (OPF_BOOLIO | OPF_CMP)) && t == DT_BOOL && c->n->op != OP_where)
        return fail(c, "does not take bool inputs (cast first)");
    return true;
}

static bool rule_unary(rule_ctx *c)
{
    const ir_node *a = in(c, 0);
    if (!check_operand_dtype(c, a->dtype))
        return false;
    c->n->dtype = a->dtype;
    copy_shape(c->n, a);
    return true;
}

static bool rule_cast(rule_ctx *c)
{
    if ((unsigned)c->n->dtype >= DT_COUNT)
        return fail(c, "bad target dtype");
    copy_shape(c->n, in(c, 0));
    return true;
}

static bool binary_common(rule_ctx *c)
{
    const ir_node *a = in(c, 0), *b = in(c, 1);
    if (a->dtype != b->dtype)
        return fail(c, "operand dtypes differ (%s and %s)", ir_dtype_name(a->dtype), ir_dtype_name(b->dtype));
    if (!same_shape(a, b)) {
        char sa[128], sb[128];
        ir_format_shape(sa, sizeof sa, a->rank, a->shape);
        ir_format_shape(sb, sizeof sb, b->rank, b->shape);
        return fail(c, "operand shapes differ (%s and %s)", sa, sb);
    }
    if (!check_operand_dtype(c, a->dtype))
        return false;
    copy_shape(c->n, a);
    return true;
}

static bool rule_binary(rule_ctx *c)
{
    if (!binary_common(c))
        return false;
    c->n->dtype = in(c, 0)->dtype;
    return true;
}

static bool rule_compare(rule_ctx *c)
{
    if (!binary_common(c))
        return false;
    c->n->dtype = DT_BOOL;
    return true;
}

static bool rule_where(rule_ctx *c)
{
    const ir_node *m = in(c, 0), *a = in(c, 1), *b = in(c, 2);
    if (m->dtype != DT_BOOL)
        return fail(c, "condition must be bool, got %s", ir_dtype_name(m->dtype));
    if (a->dtype != b->dtype)
        return fail(c, "branch dtypes differ (%s and %s)", ir_dtype_name(a->dtype), ir_dtype_name(b->dtype));
    if (!same_shape(m, a) || !same_shape(a, b))
        return fail(c, "condition and branches must have one shape");
    c->n->dtype = a->dtype;
    copy_shape(c->n, a);
    return true;
}

/* axes: sorted, distinct, in range */
static bool check_axes(rule_ctx *c, int rank)
{
    for (int k = 0; k < c->n->nlist; k++) {
        if (c->n->list[k] < 0 || c->n->list[k] >= rank)
            return fail(c, "axis %lld out of range for rank %d", (long long)c->n->list[k], rank);
        if (k && c->n->list[k] <= c->n->list[k - 1])
            return fail(c, "axes must be sorted and distinct");
    }
    return true;
}

static void reduce_shape(rule_ctx *c, const ir_node *a)
{
    ir_node *n = c->n;
    int r = 0, k = 0;
    int64_t shape[IR_MAX_RANK];
    for (int d = 0; d < a->rank; d++) {
        bool reduced = k < n->nlist && n->list[k] == d;
        if (reduced)
            k++;
        if (!reduced)
            shape[r++] = a->shape[d];
        else if (n->i[0])
            shape[r++] = 1;
    }
    set_shape(n, r, shape);
}

static bool rule_reduce(rule_ctx *c)
{
    const ir_node *a = in(c, 0);
    if (!check_axes(c, a->rank))
        return false;
    unsigned fl = ir_ops[c->n->op].flags;
    if ((fl & OPF_FLOAT) && !ir_dtype_is_float(a->dtype))
        return fail(c, "needs a floating-point input, got %s", ir_dtype_name(a->dtype));
    /* torch: integral (and bool) sums and products accumulate in i64 */
    if ((c->n->op == OP_sum || c->n->op == OP_prod) && !ir_dtype_is_float(a->dtype))
        c->n->dtype = DT_I64;
    else if (a->dtype == DT_BOOL && (c->n->op == OP_max || c->n->op == OP_min))
        c->n->dtype = DT_BOOL;
    else
        c->n->dtype = a->dtype;
    reduce_shape(c, a);
    return true;
}

static bool rule_argreduce(rule_ctx *c)
{
    const ir_node *a = in(c, 0);
    if (!check_axes(c, a->rank))
        return false;
    if (a->dtype == DT_BOOL)
        return fail(c, "does not take bool inputs (cast first)");
    c->n->dtype = DT_I64;
    reduce_shape(c, a);
    return true;
}

static bool rule_axisop(rule_ctx *c)
{
    const ir_node *a = in(c, 0);
    if (!check_operand_dtype(c, a->dtype))
        return false;
    if (c->n->i[0] < 0 || c->n->i[0] >= (a->rank ? a->rank : 1))
        return fail(c, "axis %lld out of range for rank %d", (long long)c->n->i[0], a->rank);
    c->n->dtype = a->dtype;
    copy_shape(c->n, a);
    return true;
}

static bool rule_xent(rule_ctx *c)
{
    const ir_node *x = in(c, 0), *y = in(c, 1);
    if (!ir_dtype_is_float(x->dtype))
        return fail(c, "logits must be floating point, got %s", ir_dtype_name(x->dtype));
    if (!ir_dtype_is_int(y->dtype))
        return fail(c, "labels must be i32 or i64, got %s", ir_dtype_name(y->dtype));
    if (x->rank != 2 || y->rank != 1 || x->shape[0] != y->shape[0])
        return fail(c, "needs logits [N, C] and labels [N]");
    c->n->dtype = x->dtype;
    c->n->rank = 0;
    return true;
}

static bool rule_layernorm(rule_ctx *c)
{
    const ir_node *x = in(c, 0), *w = in(c, 1), *b = in(c, 2);
    if (!ir_dtype_is_float(x->dtype) || w->dtype != x->dtype || b->dtype != x->dtype)
        return fail(c, "needs x, weight and bias of one floating-point dtype");
    if (x->rank < 1 || w->rank != 1 || b->rank != 1 || w->shape[0] != x->shape[x->rank - 1] ||
        b->shape[0] != x->shape[x->rank - 1])
        return fail(c, "weight and bias must be 1-D of the last dimension of x");
    c->n->dtype = x->dtype;
    copy_shape(c->n, x);
    return true;
}

static bool rule_onehot(rule_ctx *c)
{
    const ir_node *a = in(c, 0);
    if (!ir_dtype_is_int(a->dtype))
        return fail(c, "needs integer labels, got %s", ir_dtype_name(a->dtype));
    if (a->rank + 1 > IR_MAX_RANK)
        return fail(c, "result rank exceeds %d", IR_MAX_RANK);
    if (c->n->i[0] < 1)
        return fail(c, "classes must be positive");
    c->n->dtype = DT_I64;
    copy_shape(c->n, a);
    c->n->shape[c->n->rank++] = c->n->i[0];
    return true;
}

static bool rule_matmul(rule_ctx *c)
{
    const ir_node *a = in(c, 0), *b = in(c, 1);
    if (a->dtype != b->dtype || a->dtype == DT_BOOL)
        return fail(c, "needs two operands of one numeric dtype");
    if (a->rank < 2 || a->rank != b->rank)
        return fail(c, "needs operands of equal rank >= 2 ([..., M, K] and [..., K, N])");
    int r = a->rank;
    for (int d = 0; d < r - 2; d++)
        if (a->shape[d] != b->shape[d])
            return fail(c, "batch dimensions differ");
    if (a->shape[r - 1] != b->shape[r - 2])
        return fail(c, "inner dimensions differ (%lld and %lld)", (long long)a->shape[r - 1], (long long)b->shape[r - 2]);
    c->n->dtype = a->dtype;
    copy_shape(c->n, a);
    c->n->shape[r - 1] = b->shape[r - 1];
    return true;
}

static bool rule_view(rule_ctx *c)
{
    const ir_node *a = in(c, 0);
    ir_node *n = c->n;
    if (!check_dims(c, n->nlist, n->list))
        return false;
    int64_t e = 1;
    for (int d = 0; d < n->nlist; d++)
        e *= n->list[d];
    if (e != ir_numel(a)) {
        char sa[128], sb[128];
        ir_format_shape(sa, sizeof sa, a->rank, a->shape);
        ir_format_shape(sb, sizeof sb, n->nlist, n->list);
        return fail(c, "shape %s is invalid for input of shape %s (%lld elements)", sb, sa, (long long)ir_numel(a));
    }
    if (!ir_view_strides(a->rank, a->shape, a->strides, n->nlist, n->list, n->strides))
        return fail(c, "view size is not compatible with input tensor's size and stride (at least one "
                       "dimension spans across two contiguous subspaces)");
    n->dtype = a->dtype;
    set_shape(n, n->nlist, n->list);
    n->offset = a->offset;
    as_view(c);
    return true;
}

static bool rule_permute(rule_ctx *c)
{
    const ir_node *a = in(c, 0);
    ir_node *n = c->n;
    if (n->nlist != a->rank)
        return fail(c, "dims has %d entries for a tensor of rank %d", n->nlist, a->rank);
    bool seen[IR_MAX_RANK] = {0};
    for (int d = 0; d < n->nlist; d++) {
        int64_t p = n->list[d];
        if (p < 0 || p >= a->rank || seen[p])
            return fail(c, "dims must be a permutation of 0..%d", a->rank - 1);
        seen[p] = true;
        n->shape[d] = a->shape[p];
        n->strides[d] = a->strides[p];
    }
    n->rank = a->rank;
    n->dtype = a->dtype;
    n->offset = a->offset;
    as_view(c);
    return true;
}

/* torch expand: new leading dims and size-1 dims get stride 0 */
static bool rule_expand(rule_ctx *c)
{
    const ir_node *a = in(c, 0);
    ir_node *n = c->n;
    if (n->nlist < a->rank)
        return fail(c, "cannot expand rank %d to rank %d", a->rank, n->nlist);
    if (!check_dims(c, n->nlist, n->list))
        return false;
    int lead = n->nlist - a->rank;
    for (int d = n->nlist - 1; d >= 0; d--) {
        int ad = d - lead;
        if (ad < 0)
            n->strides[d] = 0;
        else if (a->shape[ad] == n->list[d])
            n->strides[d] = a->strides[ad];
        else if (a->shape[ad] == 1)
            n->strides[d] = 0;
        else
            return fail(c, "dimension %d of size %lld cannot expand to %lld", ad, (long long)a->shape[ad],
                        (long long)n->list[d]);
    }
    n->dtype = a->dtype;
    set_shape(n, n->nlist, n->list);
    n->offset = a->offset;
    as_view(c);
    return true;
}

static bool rule_slice(rule_ctx *c)
{
    const ir_node *a = in(c, 0);
    ir_node *n = c->n;
    int64_t axis = n->i[0], start = n->i[1], stop = n->i[2], step = n->i[3];
    if (axis < 0 || axis >= a->rank)
        return fail(c, "axis %lld out of range for rank %d", (long long)axis, a->rank);
    if (step < 1)
        return fail(c, "step must be positive");
    if (start < 0 || stop < start || stop > a->shape[axis])
        return fail(c, "bounds must satisfy 0 <= start <= stop <= %lld", (long long)a->shape[axis]);
    n->dtype = a->dtype;
    copy_shape(n, a);
    memcpy(n->strides, a->strides, sizeof n->strides);
    n->shape[axis] = (stop - start + step - 1) / step;
    n->strides[axis] = a->strides[axis] * step;
    n->offset = a->offset + start * a->strides[axis];
    as_view(c);
    return true;
}

static bool rule_select(rule_ctx *c)
{
    const ir_node *a = in(c, 0);
    ir_node *n = c->n;
    int64_t axis = n->i[0], idx = n->i[1];
    if (axis < 0 || axis >= a->rank)
        return fail(c, "axis %lld out of range for rank %d", (long long)axis, a->rank);
    if (idx < 0 || idx >= a->shape[axis])
        return fail(c, "index %lld out of range for dimension of size %lld", (long long)idx, (long long)a->shape[axis]);
    n->dtype = a->dtype;
    n->offset = a->offset + idx * a->strides[axis];
    int r = 0;
    for (int d = 0; d < a->rank; d++)
        if (d != axis) {
            n->shape[r] = a->shape[d];
            n->strides[r++] = a->strides[d];
        }
    n->rank = r;
    as_view(c);
    return true;
}

static bool rule_squeeze(rule_ctx *c)
{
    const ir_node *a = in(c, 0);
    ir_node *n = c->n;
    if (!check_axes(c, a->rank))
        return false;
    int r = 0, k = 0;
    for (int d = 0; d < a->rank; d++) {
        if (k < n->nlist && n->list[k] == d) {
            k++;
            if (a->shape[d] != 1)
                return fail(c, "dimension %d has size %lld, not 1", d, (long long)a->shape[d]);
            continue;
        }
        n->shape[r] = a->shape[d];
        n->strides[r++] = a->strides[d];
    }
    n->rank = r;
    n->dtype = a->dtype;
    n->offset = a->offset;
    as_view(c);
    return true;
}

/* torch unsqueeze: the new dim's stride is size*stride of the dim it precedes (1 at the end) */
static bool rule_unsqueeze(rule_ctx *c)
{
    const ir_node *a = in(c, 0);
    ir_node *n = c->n;
    int64_t ax = n->i[0];
    if (ax < 0 || ax > a->rank)
        return fail(c, "axis %lld out of range for rank %d", (long long)ax, a->rank);
    if (a->rank + 1 > IR_MAX_RANK)
        return fail(c, "result rank exceeds %d", IR_MAX_RANK);
    int r = 0;
    for (int d = 0; d <= a->rank; d++) {
        if (d == ax) {
            n->shape[r] = 1;
            n->strides[r++] = d >= a->rank ? 1 : a->shape[d] * a->strides[d];
        }
        if (d < a->rank) {
            n->shape[r] = a->shape[d];
            n->strides[r++] = a->strides[d];
        }
    }
    n->rank = r;
    n->dtype = a->dtype;
    n->offset = a->offset;
    as_view(c);
    return true;
}

static bool rule_alias(rule_ctx *c)
{
    const ir_node *a = in(c, 0);
    ir_node *n = c->n;
    n->dtype = a->dtype;
    copy_shape(n, a);
    memcpy(n->strides, a->strides, sizeof n->strides);
    n->offset = a->offset;
    as_view(c);
    return true;
}

static bool rule_copy(rule_ctx *c)
{
    c->n->dtype = in(c, 0)->dtype;
    copy_shape(c->n, in(c, 0));
    return true;
}

static bool rule_concat(rule_ctx *c)
{
    const ir_node *a = in(c, 0);
    ir_node *n = c->n;
    int64_t ax = n->i[0];
    if (ax < 0 || ax >= a->rank)
        return fail(c, "axis %lld out of range for rank %d", (long long)ax, a->rank);
    int64_t total = 0;
    for (int k = 0; k < n->nin; k++) {
        const ir_node *b = in(c, k);
        if (b->dtype != a->dtype || b->rank != a->rank)
            return fail(c, "input %d differs in dtype or rank from input 0", k);
        for (int d = 0; d < a->rank; d++)
            if (d != ax && b->shape[d] != a->shape[d])
                return fail(c, "input %d has size %lld in dimension %d, input 0 has %lld", k,
                            (long long)b->shape[d], d, (long long)a->shape[d]);
        total += b->shape[ax];
    }
    n->dtype = a->dtype;
    copy_shape(n, a);
    n->shape[ax] = total;
    return true;
}

static bool rule_index(rule_ctx *c)
{
    const ir_node *x = in(c, 0), *idx = in(c, 1);
    ir_node *n = c->n;
    int64_t ax = n->i[0];
    if (!ir_dtype_is_int(idx->dtype))
        return fail(c, "indices must be i32 or i64, got %s", ir_dtype_name(idx->dtype));
    if (ax < 0 || ax >= x->rank)
        return fail(c, "axis %lld out of range for rank %d", (long long)ax, x->rank);
    if (x->rank - 1 + idx->rank > IR_MAX_RANK)
        return fail(c, "result rank exceeds %d", IR_MAX_RANK);
    int r = 0;
    for (int d = 0; d < ax; d++)
        n->shape[r++] = x->shape[d];
    for (int d = 0; d < idx->rank; d++)
        n->shape[r++] = idx->shape[d];
    for (int d = (int)ax + 1; d < x->rank; d++)
        n->shape[r++] = x->shape[d];
    n->rank = r;
    n->dtype = x->dtype;
    return true;
}

static bool rule_gather(rule_ctx *c)
{
    const ir_node *x = in(c, 0), *idx = in(c, 1);
    ir_node *n = c->n;
    int64_t ax = n->i[0];
    if (!ir_dtype_is_int(idx->dtype))
        return fail(c, "indices must be i32 or i64, got %s", ir_dtype_name(idx->dtype));
    if (x->rank != idx->rank)
        return fail(c, "index must have the rank of the input (%d), got %d", x->rank, idx->rank);
    if (ax < 0 || ax >= x->rank)
        return fail(c, "axis %lld out of range for rank %d", (long long)ax, x->rank);
    for (int d = 0; d < x->rank; d++)
        if (d != ax && idx->shape[d] > x->shape[d])
            return fail(c, "index size %lld exceeds input size %lld in dimension %d",
                        (long long)idx->shape[d], (long long)x->shape[d], d);
    n->dtype = x->dtype;
    copy_shape(n, idx);
    return true;
}

/* The scatters below are the adjoints of index, gather and slice: a zero tensor of
 * `shape` (the forward input's) with the source added in where the forward read. */
static bool scatter_common(rule_ctx *c, const ir_node *src)
{
    ir_node *n = c->n;
    if (src->dtype == DT_BOOL)
        return fail(c, "does not take bool inputs (cast first)");
    if (!check_dims(c, n->nlist, n->list))
        return false;
    if (n->i[0] < 0 || n->i[0] >= n->nlist)
        return fail(c, "axis %lld out of range for rank %d", (long long)n->i[0], n->nlist);
    n->dtype = src->dtype;
    set_shape(n, n->nlist, n->list);
    return true;
}

static bool scatter_fits(rule_ctx *c, int rank, const int64_t *want, const char *what)
{
    const ir_node *src = in(c, 0);
    bool ok = src->rank == rank;
    for (int d = 0; ok && d < rank; d++)
        ok = src->shape[d] == want[d];
    if (ok)
        return true;
    char ss[128], sw[128];
    ir_format_shape(ss, sizeof ss, src->rank, src->shape);
    ir_format_shape(sw, sizeof sw, rank, want);
    return fail(c, "source of shape %s does not fit %s (expected %s)", ss, what, sw);
}

/* index_add src, idx: src has index's result shape for an input of `shape` */
static bool rule_index_add(rule_ctx *c)
{
    const ir_node *src = in(c, 0), *idx = in(c, 1);
    ir_node *n = c->n;
    if (!ir_dtype_is_int(idx->dtype))
        return fail(c, "indices must be i32 or i64, got %s", ir_dtype_name(idx->dtype));
    if (!scatter_common(c, src))
        return false;
    int ax = (int)n->i[0];
    if (n->rank - 1 + idx->rank > IR_MAX_RANK)
        return fail(c, "source rank exceeds %d", IR_MAX_RANK);
    int64_t want[IR_MAX_RANK];
    int r = 0;
    for (int d = 0; d < n->rank; d++) {
        if (d != ax)
            want[r++] = n->shape[d];
        else
            for (int k = 0; k < idx->rank; k++)
                want[r++] = idx->shape[k];
    }
    return scatter_fits(c, r, want, "the shape indexed along the axis");
}

/* gather_add src, idx: src has idx's shape, of rank len(shape), no larger off the axis */
static bool rule_gather_add(rule_ctx *c)
{
    const ir_node *src = in(c, 0), *idx = in(c, 1);
    ir_node *n = c->n;
    if (!ir_dtype_is_int(idx->dtype))
        return fail(c, "indices must be i32 or i64, got %s", ir_dtype_name(idx->dtype));
    if (!scatter_common(c, src))
        return false;
    if (idx->rank != n->rank)
        return fail(c, "index must have the rank of the result (%d), got %d", n->rank, idx->rank);
    for (int d = 0; d < n->rank; d++)
        if (d != n->i[0] && idx->shape[d] > n->shape[d])
            return fail(c, "index size %lld exceeds result size %lld in dimension %d", (long long)idx->shape[d],
                        (long long)n->shape[d], d);
    return scatter_fits(c, idx->rank, idx->shape, "the index");
}

/* slice_scatter src: src has the shape of `shape` sliced start:stop:step along axis */
static bool rule_slice_scatter(rule_ctx *c)
{
    const ir_node *src = in(c, 0);
    ir_node *n = c->n;
    if (!scatter_common(c, src))
        return false;
    int64_t axis = n->i[0], start = n->i[1], stop = n->i[2], step = n->i[3];
    if (step < 1)
        return fail(c, "step must be positive");
    if (start < 0 || stop < start || stop > n->shape[axis])
        return fail(c, "bounds must satisfy 0 <= start <= stop <= %lld", (long long)n->shape[axis]);
    int64_t want[IR_MAX_RANK];
    memcpy(want, n->shape, sizeof want);
    want[axis] = (stop - start + step - 1) / step;
    return scatter_fits(c, n->rank, want, "the slice");
}

bool ir_shape_rule(const ir_func *f, ir_node *n, char *err, size_t errlen)
{
    rule_ctx c = {f, n, err, errlen};
    switch (n->op) {
#define OP(id, name, nin, flags, rule, attrs, grad) case OP_##id: return rule_##rule(&c);
#include "ops.def"
#undef OP
    default: return fail(&c, "unknown op");
    }
}
