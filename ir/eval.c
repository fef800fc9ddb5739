/* The reference evaluator (see eval.h). Every storage-owning node (args, params and
 * every non-view op) gets one buffer; a view node owns nothing and every read or write
 * of any node goes through its (storage buffer, offset, shape, strides). Float storages
 * hold doubles rounded to the dtype on every store (unless force_f64); bool and integer
 * storages hold int64_t, i32 wrapped to 32 bits. Semantics follow PyTorch op by op.
 *
 * The IR is trusted for nothing that could crash: every node's ids, arity, shapes
 * (against its inputs) and layout (against its storage) are checked before it runs,
 * so malformed IR gives an error message, never an out-of-bounds access. */
#include "eval.h"
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define R IR_MAX_RANK
#define MAX_OPS 4
/* Spans beyond this are rejected so offset arithmetic can never overflow int64. */
#define SPAN_LIMIT ((int64_t)1 << 58)

static const double SQRT1_2 = 0.70710678118654752440;
static const double SQRT_2_OVER_PI = 0.79788456080286535588;

/* ---- the strided iterator: a multi-index over a shape, with one running element
 * offset per operand (each operand has its own strides over the same shape) ---- */
typedef struct iter {
    int rank, nops;
    int64_t shape[R], idx[R];
    int64_t pos[MAX_OPS];
    int64_t st[MAX_OPS][R];
} iter;

static void it_init(iter *it, int rank, const int64_t *shape)
{
    it->rank = rank;
    it->nops = 0;
    for (int d = 0; d < rank; d++) {
        it->shape[d] = shape[d];
        it->idx[d] = 0;
    }
}

/* Adds an operand starting at `offset`; NULL strides means a broadcast (all 0). */
static int it_add(iter *it, int64_t offset, const int64_t *strides)
{
    int k = it->nops++;
    it->pos[k] = offset;
    for (int d = 0; d < it->rank; d++)
        it->st[k][d] = strides ? strides[d] : 0;
    return k;
}

static void it_next(iter *it)
{
    for (int d = it->rank - 1; d >= 0; d--) {
        it->idx[d]++;
        for (int k = 0; k < it->nops; k++)
            it->pos[k] += it->st[k][d];
        if (it->idx[d] < it->shape[d])
            return;
        for (int k = 0; k < it->nops; k++)
            it->pos[k] -= it->st[k][d] * it->shape[d];
        it->idx[d] = 0;
    }
}

static int64_t prod(int rank, const int64_t *shape)
{
    int64_t n = 1;
    for (int d = 0; d < rank; d++)
        n *= shape[d];
    return n;
}

/* ---- evaluation state ---- */
typedef struct buf {
    double *f;       /* float storages */
    int64_t *i;      /* bool / integer storages */
    int64_t len;     /* elements */
} buf;

typedef struct ev {
    const ir_func *fn;
    bool f64;
    const host_tensor *states;   /* ir_eval_opts.states */
    buf *bufs;       /* indexed by the storage-owning node's id */
    int cur;         /* node being evaluated, for messages; -1 outside */
    char *err;
    size_t errlen;
} ev;

static int fail(ev *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(ev *e, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (e->cur < 0) {
        snprintf(e->err, e->errlen, "eval: %s", msg);
        return 1;
    }
    const ir_node *n = &e->fn->nodes[e->cur];
    const char *op = (unsigned)n->op < OP_COUNT ? ir_ops[n->op].name : "?";
    char name[140] = "";
    if (n->name)
        snprintf(name, sizeof name, " '%s'", n->name);
    /* "LINE:COL: " first when the node has a source location, so drivers can print file:line:col */
    char at[48] = "";
    if (n->line > 0)
        snprintf(at, sizeof at, "%d:%d: ", n->line, n->col);
    snprintf(e->err, e->errlen, "%s%s (in %s, node %%%d %s%s)", at, msg, e->fn->name ? e->fn->name : "?", e->cur,
             op, name);
    return 1;
}

static const ir_node *IN(const ev *e, const ir_node *n, int k) { return &e->fn->nodes[n->in[k]]; }
static buf *BUF(const ev *e, const ir_node *n) { return &e->bufs[n->storage]; }

static const char *shp(char *b, size_t len, const ir_node *n)
{
    ir_format_shape(b, len, n->rank, n->shape);
    return b;
}

/* ---- conversions and element access ---- */
static int64_t f2i64(double v)
{   /* x86's answer for NaN and out of range, which is what torch gives there */
    if (isnan(v) || v >= 9223372036854775808.0 || v < -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)v;
}

static int64_t f2i32(double v)
{
    if (isnan(v) || v >= 2147483648.0 || v <= -2147483649.0)
        return INT32_MIN;
    return (int32_t)v;
}

static int64_t wrap_int(ir_dtype t, int64_t v)
{
    if (t == DT_BOOL)
        return v != 0;
    if (t == DT_I32)
        return (int32_t)(uint32_t)(uint64_t)v;
    return v;
}

/* A float converted to an integer dtype: truncation toward zero, like torch. */
static int64_t float_to_int(ir_dtype t, double v)
{
    if (t == DT_BOOL)
        return v != 0;
    if (t == DT_I32)
        return f2i32(v);
    return f2i64(v);
}

static double round_to(ir_dtype t, double v)
{
    switch (t) {
    case DT_F32: return (double)(float)v;
    case DT_F16: return f16_to_f32(f32_to_f16((float)v));
    case DT_BF16: return bf16_to_f32(f32_to_bf16((float)v));
    default: return v;
    }
}

static double rdf(const ev *e, const ir_node *n, int64_t pos)
{
    const buf *b = BUF(e, n);
    return b->f ? b->f[pos] : (double)b->i[pos];
}

static int64_t rdi(const ev *e, const ir_node *n, int64_t pos)
{
    const buf *b = BUF(e, n);
    return b->f ? f2i64(b->f[pos]) : b->i[pos];
}

static void wrf(const ev *e, const ir_node *n, int64_t pos, double v)
{
    buf *b = BUF(e, n);
    if (b->f)
        b->f[pos] = e->f64 ? v : round_to(n->dtype, v);
    else
        b->i[pos] = float_to_int(n->dtype, v);
}

static void wri(const ev *e, const ir_node *n, int64_t pos, int64_t v)
{
    buf *b = BUF(e, n);
    if (b->f)
        b->f[pos] = e->f64 ? (double)v : round_to(n->dtype, (double)v);
    else
        b->i[pos] = wrap_int(n->dtype, v);
}

static bool isf(const ir_node *n) { return ir_dtype_is_float(n->dtype); }

/* Wrapping integer arithmetic (no signed-overflow UB). */
static int64_t iadd(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }
static int64_t isub(int64_t a, int64_t b) { return (int64_t)((uint64_t)a - (uint64_t)b); }
static int64_t imul(int64_t a, int64_t b) { return (int64_t)((uint64_t)a * (uint64_t)b); }

static bool same_shape(const ir_node *a, const ir_node *b)
{
    if (a->rank != b->rank)
        return false;
    for (int d = 0; d < a->rank; d++)
        if (a->shape[d] != b->shape[d])
            return false;
    return true;
}

static int need_same_shape(ev *e, const ir_node *n, const ir_node *x)
{
    if (same_shape(n, x))
        return 0;
    char a[96], b[96];
    return fail(e, "input shape %s differs from the result's %s", shp(a, sizeof a, x), shp(b, sizeof b, n));
}

/* Normalizes an axis attribute (negative counts from the end); -1 if out of range. */
static int norm_axis(int64_t axis, int rank)
{
    if (axis < 0)
        axis += rank;
    return axis >= 0 && axis < rank ? (int)axis : -1;
}

/* ---- structural checks and buffers ---- */
/* Element-offset range [lo, hi] a node can touch; false if absurdly large. */
static bool node_span(const ir_node *n, int64_t *lo, int64_t *hi)
{
    if (n->offset < 0 || n->offset > SPAN_LIMIT)
        return false;
    *lo = *hi = n->offset;
    for (int d = 0; d < n->rank; d++) {
        int64_t s = n->strides[d], m = n->shape[d] - 1;
        if (m <= 0 || s == 0)
            continue;
        if (s < -SPAN_LIMIT || s > SPAN_LIMIT || m > SPAN_LIMIT / (s < 0 ? -s : s))
            return false;
        if (s > 0)
            *hi += m * s;
        else
            *lo += m * s;
    }
    return *hi - *lo <= SPAN_LIMIT * 4;
}

static int check_node(ev *e, int id)
{
    const ir_func *f = e->fn;
    const ir_node *n = &f->nodes[id];
    if ((unsigned)n->op >= OP_COUNT)
        return fail(e, "unknown opcode %d", (int)n->op);
    if ((unsigned)n->dtype >= DT_COUNT)
        return fail(e, "unknown dtype %d", (int)n->dtype);
    if (n->rank < 0 || n->rank > R)
        return fail(e, "rank %d out of range", n->rank);
    if (n->nlist < 0 || n->nlist > R)
        return fail(e, "attribute list of length %d", n->nlist);
    const ir_opinfo *oi = &ir_ops[n->op];
    if (oi->nin >= 0 ? n->nin != oi->nin : n->nin < 1)
        return fail(e, "%d inputs", n->nin);
    if (n->nin > 0 && !n->in)
        return fail(e, "missing input list");
    for (int k = 0; k < n->nin; k++)
        if (n->in[k] < 0 || n->in[k] >= id)
            return fail(e, "input %d is node %d, not an earlier node", k, n->in[k]);
    int64_t numel = 1;
    for (int d = 0; d < n->rank; d++) {
        if (n->shape[d] < 0)
            return fail(e, "negative dimension %lld", (long long)n->shape[d]);
        if (n->shape[d] > 0 && numel > SPAN_LIMIT / n->shape[d])
            return fail(e, "tensor too large");
        numel *= n->shape[d];
    }
    int64_t lo = 0, hi = 0;
    if (numel > 0 && !node_span(n, &lo, &hi))
        return fail(e, "layout out of range (offset %lld)", (long long)n->offset);
    if (oi->flags & OPF_VIEW) {
        const ir_node *x = IN(e, n, 0);
        if (n->storage != x->storage)
            return fail(e, "view with storage %d, but its input's storage is %d", n->storage, x->storage);
        if (n->dtype != x->dtype)
            return fail(e, "view changes dtype %s to %s", ir_dtype_name(x->dtype), ir_dtype_name(n->dtype));
        const buf *b = BUF(e, n);
        if (numel > 0 && (lo < 0 || hi >= b->len))
            return fail(e, "view reaches elements [%lld, %lld] of a storage of %lld",
                        (long long)lo, (long long)hi, (long long)b->len);
        return 0;
    }
    if (n->storage != id)
        return fail(e, "non-view node with storage %d", n->storage);
    buf *b = &e->bufs[id];
    b->len = numel > 0 ? hi + 1 : 0;
    size_t cnt = b->len > 0 ? (size_t)b->len : 1;
    if (ir_dtype_is_float(n->dtype))
        b->f = calloc(cnt, sizeof(double));
    else
        b->i = calloc(cnt, sizeof(int64_t));
    if (!b->f && !b->i)
        return fail(e, "out of memory for %lld elements", (long long)b->len);
    return 0;
}

/* ---- leaves ---- */
static bool host_matches(const host_tensor *t, ir_dtype dt, int rank, const int64_t *shape)
{
    if (t->dtype != dt || t->rank != rank)
        return false;
    for (int d = 0; d < rank; d++)
        if (t->shape[d] != shape[d])
            return false;
    return true;
}

/* Copies a dense host tensor into node n's buffer, through n's strides. */
static int load_host(ev *e, const ir_node *n, const host_tensor *t, const char *what, const char *name,
                     ir_dtype want, int rank, const int64_t *shape)
{
    char a[96], b[96];
    bool ok = host_matches(t, want, rank, shape);
    /* gradcheck feeds f64 points into float inputs */
    if (!ok && e->f64 && ir_dtype_is_float(want))
        ok = host_matches(t, DT_F64, rank, shape);
    if (!ok) {
        ir_format_shape(a, sizeof a, t->rank < 0 || t->rank > R ? 0 : t->rank, t->shape);
        ir_format_shape(b, sizeof b, rank, shape);
        return fail(e, "%s '%s' expects %s%s, got %s%s", what, name ? name : "?", ir_dtype_name(want), b,
                    ir_dtype_name(t->dtype), a);
    }
    if (n->dtype != want || n->rank != rank || prod(rank, shape) != prod(n->rank, n->shape))
        return fail(e, "node's type differs from the declaration of %s '%s'", what, name ? name : "?");
    int64_t numel = prod(n->rank, n->shape);
    if (numel > 0 && !t->data)
        return fail(e, "%s '%s' has no data", what, name ? name : "?");
    iter it;
    it_init(&it, n->rank, n->shape);
    it_add(&it, n->offset, n->strides);
    for (int64_t k = 0; k < numel; k++, it_next(&it)) {
        const void *d = t->data;
        switch (t->dtype) {
        case DT_BOOL: wri(e, n, it.pos[0], ((const uint8_t *)d)[k] != 0); break;
        case DT_I32: wri(e, n, it.pos[0], ((const int32_t *)d)[k]); break;
        case DT_I64: wri(e, n, it.pos[0], ((const int64_t *)d)[k]); break;
        default: wrf(e, n, it.pos[0], host_tensor_get(t, k)); break;
        }
    }
    return 0;
}

static int op_leaf(ev *e, const ir_node *n, const host_tensor *args, const host_tensor *params)
{
    const ir_func *f = e->fn;
    int64_t numel = prod(n->rank, n->shape);
    iter it;
    it_init(&it, n->rank, n->shape);
    it_add(&it, n->offset, n->strides);
    switch (n->op) {
    case OP_arg: {
        int64_t k = n->i[0];
        if (k < 0 || k >= f->nargs)
            return fail(e, "argument index %lld out of range (%d arguments)", (long long)k, f->nargs);
        const ir_arg *a = &f->args[k];
        return load_host(e, n, &args[k], "argument", a->name, a->dtype, a->rank, a->shape);
    }
    case OP_param: {
        const ir_module *m = f->mod;
        int64_t k = n->i[0];
        if (!m || k < 0 || k >= m->nparams)
            return fail(e, "parameter index %lld out of range", (long long)k);
        const ir_param *p = &m->params[k];
        return load_host(e, n, &params[k], "parameter", p->name, p->dtype, p->rank, p->shape);
    }
    case OP_state: {
        const ir_module *m = f->mod;
        int64_t k = n->i[0];
        if (!m || k < 0 || k >= m->nstates)
            return fail(e, "state index %lld out of range", (long long)k);
        const ir_state *st = &m->states[k];
        if (!e->states)
            return fail(e, "state '%s' has no value (a training step needs the module's states)", st->name);
        return load_host(e, n, &e->states[k], "state", st->name, st->dtype, st->rank, st->shape);
    }
    case OP_constant:
    case OP_full:
        for (int64_t k = 0; k < numel; k++, it_next(&it))
            wrf(e, n, it.pos[0], n->f[0]);
        return 0;
    case OP_arange:
        if (n->rank != 1)
            return fail(e, "arange of rank %d", n->rank);
        for (int64_t k = 0; k < numel; k++, it_next(&it))
            wri(e, n, it.pos[0], iadd(n->i[0], imul(k, n->i[1])));
        return 0;
    case OP_eye:
        if (n->rank != 2)
            return fail(e, "eye of rank %d", n->rank);
        for (int64_t k = 0; k < numel; k++, it_next(&it))
            wri(e, n, it.pos[0], it.idx[0] == it.idx[1]);
        return 0;
    default:
        return fail(e, "not a leaf");
    }
}

/* ---- unary elementwise ---- */
static double unary_f(const ir_node *n, double x)
{
    switch (n->op) {
    case OP_neg: return -x;
    case OP_abs: return fabs(x);
    case OP_sign: return (double)((0 < x) - (x < 0));   /* torch: NaN -> 0 */
    case OP_exp: return exp(x);
    case OP_log: return log(x);
    case OP_log1p: return log1p(x);
    case OP_sqrt: return sqrt(x);
    case OP_rsqrt: return 1.0 / sqrt(x);
    case OP_sin: return sin(x);
    case OP_cos: return cos(x);
    case OP_tanh: return tanh(x);
    case OP_sigmoid: return 1.0 / (1.0 + exp(-x));
    case OP_relu: return x > 0 || isnan(x) ? x : 0.0;
    case OP_gelu:
        if (n->i[0])   /* tanh approximation */
            return 0.5 * x * (1.0 + tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)));
        return 0.5 * x * (1.0 + erf(x * SQRT1_2));
    case OP_silu: return x / (1.0 + exp(-x));
    case OP_softplus: return x > 20.0 ? x : log1p(exp(x));   /* torch's threshold=20 */
    case OP_leaky_relu: return x > 0 ? x : x * n->f[0];
    case OP_clamp:
        if (isnan(x))
            return x;
        if (!isinf(n->f[0]) && x < n->f[0])
            x = n->f[0];
        if (!isinf(n->f[1]) && x > n->f[1])
            x = n->f[1];
        return x;
    case OP_lnot: return x == 0;
    default: return NAN;
    }
}

static bool unary_i(const ir_node *n, int64_t x, int64_t *out)
{
    switch (n->op) {
    case OP_neg: *out = isub(0, x); return true;
    case OP_abs: *out = x < 0 ? isub(0, x) : x; return true;
    case OP_sign: *out = (0 < x) - (x < 0); return true;
    case OP_relu: *out = x > 0 ? x : 0; return true;
    case OP_lnot: *out = x == 0; return true;
    case OP_clamp:   /* min(max(x, lo), hi); infinite bounds mean none */
        if (!isinf(n->f[0]) && (double)x < n->f[0])
            x = f2i64(ceil(n->f[0]));
        if (!isinf(n->f[1]) && (double)x > n->f[1])
            x = f2i64(floor(n->f[1]));
        *out = x;
        return true;
    default: return false;
    }
}

static int op_cast(ev *e, const ir_node *n)
{
    const ir_node *x = IN(e, n, 0);
    iter it;
    it_init(&it, n->rank, n->shape);
    it_add(&it, x->offset, x->strides);
    it_add(&it, n->offset, n->strides);
    int64_t numel = prod(n->rank, n->shape);
    for (int64_t k = 0; k < numel; k++, it_next(&it)) {
        if (isf(x))
            wrf(e, n, it.pos[1], rdf(e, x, it.pos[0]));   /* wrf truncates into ints, != 0 into bool */
        else if (isf(n))
            wrf(e, n, it.pos[1], (double)rdi(e, x, it.pos[0]));
        else
            wri(e, n, it.pos[1], rdi(e, x, it.pos[0]));
    }
    return 0;
}

static int op_unary(ev *e, const ir_node *n)
{
    const ir_node *x = IN(e, n, 0);
    if (need_same_shape(e, n, x))
        return 1;
    if (n->op == OP_cast)
        return op_cast(e, n);
    bool ints = !isf(n);
    int64_t probe;
    if (ints && !unary_i(n, 0, &probe))
        return fail(e, "needs a floating-point result, not %s", ir_dtype_name(n->dtype));
    iter it;
    it_init(&it, n->rank, n->shape);
    it_add(&it, x->offset, x->strides);
    it_add(&it, n->offset, n->strides);
    int64_t numel = prod(n->rank, n->shape);
    for (int64_t k = 0; k < numel; k++, it_next(&it)) {
        if (ints) {
            int64_t r = 0;
            unary_i(n, rdi(e, x, it.pos[0]), &r);
            wri(e, n, it.pos[1], r);
        } else {
            wrf(e, n, it.pos[1], unary_f(n, rdf(e, x, it.pos[0])));
        }
    }
    return 0;
}

/* ---- binary elementwise and where ---- */
/* Python/torch remainder: the result has the divisor's sign. */
static double fmod_py(double a, double b)
{
    double r = fmod(a, b);
    if (r != 0 && ((b < 0) != (r < 0)))
        r += b;
    return r;
}

static double binary_f(ir_opcode op, double a, double b)
{
    switch (op) {
    case OP_add: return a + b;
    case OP_sub: return a - b;
    case OP_mul: return a * b;
    case OP_div: return a / b;
    case OP_mod: return fmod_py(a, b);
    case OP_pow: return pow(a, b);
    case OP_maximum: return isnan(a) || isnan(b) ? a + b : (a > b ? a : b);
    case OP_minimum: return isnan(a) || isnan(b) ? a + b : (a < b ? a : b);
    case OP_land: return a != 0 && b != 0;
    case OP_lor: return a != 0 || b != 0;
    default: return NAN;
    }
}

static int64_t ipow(int64_t a, int64_t b)
{
    if (b < 0)   /* C integer semantics: only 1 and -1 survive a negative power */
        return a == 1 ? 1 : a == -1 ? (b % 2 ? -1 : 1) : 0;
    int64_t r = 1;
    while (b) {
        if (b & 1)
            r = imul(r, a);
        a = imul(a, a);
        b >>= 1;
    }
    return r;
}

/* Returns false on an integer division by zero. */
static bool binary_i(ir_opcode op, int64_t a, int64_t b, int64_t *out)
{
    switch (op) {
    case OP_add: *out = iadd(a, b); return true;
    case OP_sub: *out = isub(a, b); return true;
    case OP_mul: *out = imul(a, b); return true;
    case OP_mod:
        if (b == 0)
            return false;
        if (b == -1) {   /* INT64_MIN % -1 traps in C */
            *out = 0;
            return true;
        }
        *out = a % b;
        if (*out != 0 && ((b < 0) != (*out < 0)))
            *out += b;
        return true;
    case OP_pow: *out = ipow(a, b); return true;
    case OP_maximum: *out = a > b ? a : b; return true;
    case OP_minimum: *out = a < b ? a : b; return true;
    case OP_land: *out = a != 0 && b != 0; return true;
    case OP_lor: *out = a != 0 || b != 0; return true;
    default: *out = 0; return true;
    }
}

static bool compare(ir_opcode op, double a, double b)
{
    switch (op) {
    case OP_eq: return a == b;
    case OP_ne: return a != b;
    case OP_lt: return a < b;
    case OP_le: return a <= b;
    case OP_gt: return a > b;
    case OP_ge: return a >= b;
    default: return false;
    }
}

static bool compare_i(ir_opcode op, int64_t a, int64_t b)
{
    switch (op) {
    case OP_eq: return a == b;
    case OP_ne: return a != b;
    case OP_lt: return a < b;
    case OP_le: return a <= b;
    case OP_gt: return a > b;
    case OP_ge: return a >= b;
    default: return false;
    }
}

static int op_binary(ev *e, const ir_node *n)
{
    const ir_node *a = IN(e, n, 0), *b = IN(e, n, 1);
    if (need_same_shape(e, n, a) || need_same_shape(e, n, b))
        return 1;
    bool cmp = ir_ops[n->op].flags & OPF_CMP;
    bool fl = cmp ? isf(a) || isf(b) : isf(n);
    if (!fl && n->op == OP_div)
        return fail(e, "integer division is not an IR op (lowering casts to float first)");
    iter it;
    it_init(&it, n->rank, n->shape);
    it_add(&it, a->offset, a->strides);
    it_add(&it, b->offset, b->strides);
    it_add(&it, n->offset, n->strides);
    int64_t numel = prod(n->rank, n->shape);
    for (int64_t k = 0; k < numel; k++, it_next(&it)) {
        if (cmp && fl) {
            wri(e, n, it.pos[2], compare(n->op, rdf(e, a, it.pos[0]), rdf(e, b, it.pos[1])));
        } else if (cmp) {
            wri(e, n, it.pos[2], compare_i(n->op, rdi(e, a, it.pos[0]), rdi(e, b, it.pos[1])));
        } else if (fl) {
            wrf(e, n, it.pos[2], binary_f(n->op, rdf(e, a, it.pos[0]), rdf(e, b, it.pos[1])));
        } else {
            int64_t r;
            if (!binary_i(n->op, rdi(e, a, it.pos[0]), rdi(e, b, it.pos[1]), &r))
                return fail(e, "integer remainder by zero");
            wri(e, n, it.pos[2], r);
        }
    }
    return 0;
}

static int op_where(ev *e, const ir_node *n)
{
    const ir_node *c = IN(e, n, 0), *a = IN(e, n, 1), *b = IN(e, n, 2);
    if (need_same_shape(e, n, c) || need_same_shape(e, n, a) || need_same_shape(e, n, b))
        return 1;
    iter it;
    it_init(&it, n->rank, n->shape);
    it_add(&it, c->offset, c->strides);
    it_add(&it, a->offset, a->strides);
    it_add(&it, b->offset, b->strides);
    it_add(&it, n->offset, n->strides);
    int64_t numel = prod(n->rank, n->shape);
    for (int64_t k = 0; k < numel; k++, it_next(&it)) {
        bool t = isf(c) ? rdf(e, c, it.pos[0]) != 0 : rdi(e, c, it.pos[0]) != 0;
        const ir_node *s = t ? a : b;
        int64_t p = t ? it.pos[1] : it.pos[2];
        if (isf(n))
            wrf(e, n, it.pos[3], rdf(e, s, p));
        else
            wri(e, n, it.pos[3], rdi(e, s, p));
    }
    return 0;
}

/* ---- reductions ---- */
/* One reduction: `count` elements of x reached by an iterator over the reduced dims. */
typedef struct red {
    int rank;
    int64_t shape[R], st[R];
    int64_t count;
} red;

static double red_sum_f(const ev *e, const ir_node *x, const red *r, int64_t base, double shift, int mode)
{   /* mode 0: sum x; 1: sum exp(x - shift); 2: sum (x - shift)^2 */
    iter it;
    it_init(&it, r->rank, r->shape);
    it_add(&it, base, r->st);
    double s = 0;
    for (int64_t k = 0; k < r->count; k++, it_next(&it)) {
        double v = rdf(e, x, it.pos[0]);
        s += mode == 0 ? v : mode == 1 ? exp(v - shift) : (v - shift) * (v - shift);
    }
    return s;
}

/* max/min (want_max) or the index of the first extreme; NaN counts as the extreme. */
static void red_extreme(const ev *e, const ir_node *x, const red *r, int64_t base, bool want_max,
                        double *best_f, int64_t *best_i, int64_t *where)
{
    iter it;
    it_init(&it, r->rank, r->shape);
    it_add(&it, base, r->st);
    bool fl = isf(x);
    *best_f = 0;
    *best_i = 0;
    *where = 0;
    for (int64_t k = 0; k < r->count; k++, it_next(&it)) {
        if (fl) {
            double v = rdf(e, x, it.pos[0]);
            if (k == 0 || (!isnan(*best_f) && (isnan(v) || (want_max ? v > *best_f : v < *best_f)))) {
                *best_f = v;
                *where = k;
            }
        } else {
            int64_t v = rdi(e, x, it.pos[0]);
            if (k == 0 || (want_max ? v > *best_i : v < *best_i)) {
                *best_i = v;
                *where = k;
            }
        }
    }
}

static int op_reduce(ev *e, const ir_node *n)
{
    const ir_node *x = IN(e, n, 0);
    bool is_red[R] = {false};
    for (int k = 0; k < n->nlist; k++) {
        int64_t a = n->list[k];
        if (a < 0 || a >= x->rank || (k > 0 && a <= n->list[k - 1]))
            return fail(e, "axes must be sorted, distinct and within rank %d", x->rank);
        is_red[a] = true;
    }
    bool keep = n->i[0] != 0;
    /* the result's shape, and the split of x's dims into kept (outer) and reduced (inner) */
    int orank = 0, ko = 0;
    int64_t oshape[R], kshape[R], kxst[R], knst[R];
    red r = {.rank = 0, .count = 1};
    for (int d = 0; d < x->rank; d++) {
        if (is_red[d]) {
            r.shape[r.rank] = x->shape[d];
            r.st[r.rank++] = x->strides[d];
            r.count *= x->shape[d];
            if (keep)
                oshape[orank++] = 1;
        } else {
            kshape[ko] = x->shape[d];
            kxst[ko] = x->strides[d];
            knst[ko++] = orank < n->rank ? n->strides[orank] : 0;
            oshape[orank++] = x->shape[d];
        }
    }
    bool ok = orank == n->rank;
    for (int d = 0; ok && d < orank; d++)
        ok = oshape[d] == n->shape[d];
    if (!ok) {
        char a[96], b[96];
        return fail(e, "result shape %s does not match reducing %s", shp(a, sizeof a, n), shp(b, sizeof b, x));
    }
    int64_t nout = prod(ko, kshape);
    bool ext = n->op == OP_max || n->op == OP_min || n->op == OP_argmax || n->op == OP_argmin;
    if (ext && r.count == 0 && nout > 0)
        return fail(e, "reduction over an empty dimension has no identity");
    iter o;
    it_init(&o, ko, kshape);
    it_add(&o, x->offset, kxst);
    it_add(&o, n->offset, knst);
    bool ints = !isf(n);
    for (int64_t k = 0; k < nout; k++, it_next(&o)) {
        int64_t base = o.pos[0], dst = o.pos[1];
        switch (n->op) {
        case OP_sum:
        case OP_prod: {
            bool sum = n->op == OP_sum;
            iter it;
            it_init(&it, r.rank, r.shape);
            it_add(&it, base, r.st);
            double sf = sum ? 0 : 1;
            int64_t si = sum ? 0 : 1;
            for (int64_t j = 0; j < r.count; j++, it_next(&it)) {
                if (ints)
                    si = sum ? iadd(si, rdi(e, x, it.pos[0])) : imul(si, rdi(e, x, it.pos[0]));
                else
                    sf = sum ? sf + rdf(e, x, it.pos[0]) : sf * rdf(e, x, it.pos[0]);
            }
            if (ints)
                wri(e, n, dst, si);
            else
                wrf(e, n, dst, sf);
            break;
        }
        case OP_mean:
            wrf(e, n, dst, red_sum_f(e, x, &r, base, 0, 0) / (double)r.count);
            break;
        case OP_var: {   /* biased (unbiased=false), two passes */
            double mean = red_sum_f(e, x, &r, base, 0, 0) / (double)r.count;
            wrf(e, n, dst, red_sum_f(e, x, &r, base, mean, 2) / (double)r.count);
            break;
        }
        case OP_logsumexp: {   /* max-shifted; an infinite max shifts by 0 (all -inf -> -inf) */
            double m;
            int64_t bi, w;
            red_extreme(e, x, &r, base, true, &m, &bi, &w);
            if (r.count == 0 || isinf(m))
                m = 0;
            wrf(e, n, dst, isnan(m) ? m : log(red_sum_f(e, x, &r, base, m, 1)) + m);
            break;
        }
        default: {   /* max, min, argmax, argmin */
            bool want_max = n->op == OP_max || n->op == OP_argmax;
            double bf;
            int64_t bi, w;
            red_extreme(e, x, &r, base, want_max, &bf, &bi, &w);
            if (n->op == OP_argmax || n->op == OP_argmin)
                wri(e, n, dst, w);
            else if (isf(x))
                wrf(e, n, dst, bf);
            else
                wri(e, n, dst, bi);
            break;
        }
        }
    }
    return 0;
}

/* ---- ops over lines along one axis (softmax, log_softmax, layer_norm) ---- */
/* Iterates the lines of n (and x, same shape) along `axis`: the outer iterator runs
 * over the shape with that dim set to 1. Rank 0 is one line of one element. */
static void lines_init(iter *o, const ir_node *x, const ir_node *n, int axis, int64_t *len,
                       int64_t *xs, int64_t *ns)
{
    int64_t shape[R];
    for (int d = 0; d < x->rank; d++)
        shape[d] = d == axis ? 1 : x->shape[d];
    it_init(o, x->rank, shape);
    it_add(o, x->offset, x->strides);
    it_add(o, n->offset, n->strides);
    *len = x->rank ? x->shape[axis] : 1;
    *xs = x->rank ? x->strides[axis] : 0;
    *ns = x->rank ? n->strides[axis] : 0;
}

static int op_softmax(ev *e, const ir_node *n)
{
    const ir_node *x = IN(e, n, 0);
    if (need_same_shape(e, n, x))
        return 1;
    int axis = x->rank ? norm_axis(n->i[0], x->rank) : 0;
    if (axis < 0 || (x->rank == 0 && n->i[0] != 0 && n->i[0] != -1))
        return fail(e, "axis %lld out of range for rank %d", (long long)n->i[0], x->rank);
    iter o;
    int64_t len, xs, ns;
    lines_init(&o, x, n, axis, &len, &xs, &ns);
    int64_t nlines = len ? prod(x->rank, x->shape) / len : 0;
    bool log_form = n->op == OP_log_softmax;
    for (int64_t l = 0; l < nlines; l++, it_next(&o)) {
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < len; j++) {
            double v = rdf(e, x, o.pos[0] + j * xs);
            if (isnan(v) || v > m)
                m = isnan(m) ? m : v;
        }
        for (int64_t j = 0; j < len; j++)
            s += exp(rdf(e, x, o.pos[0] + j * xs) - m);
        double ls = log(s);
        for (int64_t j = 0; j < len; j++) {
            double d = rdf(e, x, o.pos[0] + j * xs) - m;
            wrf(e, n, o.pos[1] + j * ns, log_form ? d - ls : exp(d) / s);
        }
    }
    return 0;
}

static int op_layer_norm(ev *e, const ir_node *n)
{
    const ir_node *x = IN(e, n, 0), *w = IN(e, n, 1), *b = IN(e, n, 2);
    if (need_same_shape(e, n, x))
        return 1;
    if (x->rank < 1)
        return fail(e, "needs rank >= 1");
    int axis = x->rank - 1;
    int64_t dim = x->shape[axis];
    if (w->rank != 1 || w->shape[0] != dim || b->rank != 1 || b->shape[0] != dim)
        return fail(e, "weight and bias must have shape [%lld]", (long long)dim);
    iter o;
    int64_t len, xs, ns;
    lines_init(&o, x, n, axis, &len, &xs, &ns);
    int64_t nlines = len ? prod(x->rank, x->shape) / len : 0;
    for (int64_t l = 0; l < nlines; l++, it_next(&o)) {
        double mean = 0, var = 0;
        for (int64_t j = 0; j < len; j++)
            mean += rdf(e, x, o.pos[0] + j * xs);
        mean /= (double)len;
        for (int64_t j = 0; j < len; j++) {
            double d = rdf(e, x, o.pos[0] + j * xs) - mean;
            var += d * d;
        }
        var /= (double)len;
        double rstd = 1.0 / sqrt(var + n->f[0]);
        for (int64_t j = 0; j < len; j++) {
            double y = (rdf(e, x, o.pos[0] + j * xs) - mean) * rstd;
            y = y * rdf(e, w, w->offset + j * w->strides[0]) + rdf(e, b, b->offset + j * b->strides[0]);
            wrf(e, n, o.pos[1] + j * ns, y);
        }
    }
    return 0;
}

/* mean over rows of logsumexp(row) - row[label] */
static int op_cross_entropy(ev *e, const ir_node *n)
{
    const ir_node *x = IN(e, n, 0), *lab = IN(e, n, 1);
    if (x->rank != 2 || lab->rank != 1 || lab->shape[0] != x->shape[0] || n->rank != 0)
        return fail(e, "needs logits [N, C], labels [N] and a scalar result");
    int64_t rows = x->shape[0], classes = x->shape[1];
    double total = 0;
    for (int64_t i = 0; i < rows; i++) {
        int64_t y = rdi(e, lab, lab->offset + i * lab->strides[0]);
        if (y < 0 || y >= classes)
            return fail(e, "label %lld (row %lld) out of range for %lld classes", (long long)y, (long long)i,
                        (long long)classes);
        int64_t row = x->offset + i * x->strides[0], cs = x->strides[1];
        double m = -INFINITY, s = 0;
        for (int64_t j = 0; j < classes; j++) {
            double v = rdf(e, x, row + j * cs);
            if (isnan(v) || v > m)
                m = isnan(m) ? m : v;
        }
        double shift = isinf(m) ? 0 : m;
        for (int64_t j = 0; j < classes; j++)
            s += exp(rdf(e, x, row + j * cs) - shift);
        total += log(s) + shift - rdf(e, x, row + y * cs);
    }
    wrf(e, n, n->offset, total / (double)rows);
    return 0;
}

static int op_one_hot(ev *e, const ir_node *n)
{
    const ir_node *lab = IN(e, n, 0);
    bool ok = n->rank == lab->rank + 1;
    for (int d = 0; ok && d < lab->rank; d++)
        ok = n->shape[d] == lab->shape[d];
    if (!ok) {
        char a[96], b[96];
        return fail(e, "result %s does not fit labels %s", shp(a, sizeof a, n), shp(b, sizeof b, lab));
    }
    int64_t classes = n->shape[n->rank - 1];
    iter it;
    int64_t lst[R];
    for (int d = 0; d < n->rank; d++)
        lst[d] = d < lab->rank ? lab->strides[d] : 0;
    it_init(&it, n->rank, n->shape);
    it_add(&it, lab->offset, lst);
    it_add(&it, n->offset, n->strides);
    int64_t numel = prod(n->rank, n->shape);
    for (int64_t k = 0; k < numel; k++, it_next(&it)) {
        int64_t y = rdi(e, lab, it.pos[0]);
        if (y < 0 || y >= classes)
            return fail(e, "label %lld out of range for %lld classes", (long long)y, (long long)classes);
        wri(e, n, it.pos[1], it.idx[n->rank - 1] == y);
    }
    return 0;
}

/* ---- matmul: [..., M, K] @ [..., K, N], equal batch dims, double accumulation ---- */
static int op_matmul(ev *e, const ir_node *n)
{
    const ir_node *a = IN(e, n, 0), *b = IN(e, n, 1);
    int r = n->rank;
    bool ok = r >= 2 && a->rank == r && b->rank == r && a->shape[r - 1] == b->shape[r - 2] &&
              n->shape[r - 2] == a->shape[r - 2] && n->shape[r - 1] == b->shape[r - 1];
    for (int d = 0; ok && d < r - 2; d++)
        ok = a->shape[d] == n->shape[d] && b->shape[d] == n->shape[d];
    if (!ok) {
        char x[96], y[96], z[96];
        return fail(e, "shapes %s @ %s -> %s do not fit", shp(x, sizeof x, a), shp(y, sizeof y, b),
                    shp(z, sizeof z, n));
    }
    int64_t ast[R], bst[R], kdim = a->shape[r - 1];
    for (int d = 0; d < r - 2; d++) {
        ast[d] = a->strides[d];
        bst[d] = b->strides[d];
    }
    ast[r - 2] = a->strides[r - 2];
    ast[r - 1] = 0;
    bst[r - 2] = 0;
    bst[r - 1] = b->strides[r - 1];
    int64_t ak = a->strides[r - 1], bk = b->strides[r - 2];
    iter it;
    it_init(&it, r, n->shape);
    it_add(&it, a->offset, ast);
    it_add(&it, b->offset, bst);
    it_add(&it, n->offset, n->strides);
    int64_t numel = prod(r, n->shape);
    bool fl = isf(n);
    for (int64_t k = 0; k < numel; k++, it_next(&it)) {
        double sf = 0;
        int64_t si = 0;
        for (int64_t j = 0; j < kdim; j++) {
            if (fl)
                sf += rdf(e, a, it.pos[0] + j * ak) * rdf(e, b, it.pos[1] + j * bk);
            else
                si = iadd(si, imul(rdi(e, a, it.pos[0] + j * ak), rdi(e, b, it.pos[1] + j * bk)));
        }
        if (fl)
            wrf(e, n, it.pos[2], sf);
        else
            wri(e, n, it.pos[2], si);
    }
    return 0;
}

/* ---- copies ---- */
static void copy_elem(const ev *e, const ir_node *dst, int64_t dpos, const ir_node *src, int64_t spos)
{
    if (isf(dst))
        wrf(e, dst, dpos, rdf(e, src, spos));
    else
        wri(e, dst, dpos, rdi(e, src, spos));
}

static int op_copy(ev *e, const ir_node *n)
{
    const ir_node *x = IN(e, n, 0);
    if (need_same_shape(e, n, x))
        return 1;
    iter it;
    it_init(&it, n->rank, n->shape);
    it_add(&it, x->offset, x->strides);
    it_add(&it, n->offset, n->strides);
    int64_t numel = prod(n->rank, n->shape);
    for (int64_t k = 0; k < numel; k++, it_next(&it))
        copy_elem(e, n, it.pos[1], x, it.pos[0]);
    return 0;
}

static int op_concat(ev *e, const ir_node *n)
{
    int axis = norm_axis(n->i[0], n->rank);
    if (axis < 0)
        return fail(e, "axis %lld out of range for rank %d", (long long)n->i[0], n->rank);
    int64_t at = 0;
    for (int k = 0; k < n->nin; k++) {
        const ir_node *x = IN(e, n, k);
        bool ok = x->rank == n->rank;
        for (int d = 0; ok && d < n->rank; d++)
            ok = d == axis || x->shape[d] == n->shape[d];
        if (!ok || x->shape[axis] > n->shape[axis] - at) {
            char a[96], b[96];
            return fail(e, "input %d of shape %s does not fit the result %s", k, shp(a, sizeof a, x),
                        shp(b, sizeof b, n));
        }
        iter it;
        it_init(&it, x->rank, x->shape);
        it_add(&it, x->offset, x->strides);
        it_add(&it, n->offset + at * n->strides[axis], n->strides);
        int64_t numel = prod(x->rank, x->shape);
        for (int64_t j = 0; j < numel; j++, it_next(&it))
            copy_elem(e, n, it.pos[1], x, it.pos[0]);
        at += x->shape[axis];
    }
    if (at != n->shape[axis])
        return fail(e, "inputs cover %lld of %lld along axis %d", (long long)at, (long long)n->shape[axis], axis);
    return 0;
}

/* ---- index and gather (their checks shared with the adjoints index_add and gather_add) ---- */
/* index's result, index_add's source: does `big` have x.shape[:axis] + idx.shape + x.shape[axis+1:]? */
static bool index_fits(const ir_node *big, const ir_node *x, const ir_node *idx, int axis)
{
    int ir = idx->rank;
    bool ok = big->rank == x->rank - 1 + ir;
    for (int d = 0; ok && d < big->rank; d++)
        ok = big->shape[d] == (d < axis ? x->shape[d] : d < axis + ir ? idx->shape[d - axis] : x->shape[d - ir + 1]);
    return ok;
}

/* strides that walk that shape (of this rank) through x (0 over idx's dims) and idx (0 elsewhere) */
static void index_strides(const ir_node *x, const ir_node *idx, int axis, int rank, int64_t *xst, int64_t *ist)
{
    int ir = idx->rank;
    for (int d = 0; d < rank; d++) {
        bool in_idx = d >= axis && d < axis + ir;
        xst[d] = d < axis ? x->strides[d] : in_idx ? 0 : x->strides[d - ir + 1];
        ist[d] = in_idx ? idx->strides[d - axis] : 0;
    }
}

/* gather's and gather_add's idx: x's rank, and no larger than x off the axis */
static bool gather_fits(const ir_node *idx, const ir_node *x, int axis)
{
    bool ok = idx->rank == x->rank;
    for (int d = 0; ok && d < x->rank; d++)
        ok = d == axis || idx->shape[d] <= x->shape[d];
    return ok;
}

/* x's strides with the axis' at 0: the index supplies that position */
static void strides_off_axis(const ir_node *x, int axis, int64_t *st)
{
    for (int d = 0; d < x->rank; d++)
        st[d] = d == axis ? 0 : x->strides[d];
}

static int64_t wrap_index(int64_t i, int64_t size, bool wrap) { return wrap && i < 0 ? i + size : i; }

/* an error unless index i (negatives wrapped when wrap) is within [0, size) */
static int check_index(ev *e, int64_t i, int axis, int64_t size, bool wrap)
{
    int64_t j = wrap_index(i, size, wrap);
    if (j < 0 || j >= size)
        return fail(e, "index %lld out of range for axis %d of size %lld", (long long)i, axis, (long long)size);
    return 0;
}

/* out = x.shape[:axis] + idx.shape + x.shape[axis+1:]; negative indices wrap */
static int op_index(ev *e, const ir_node *n)
{
    const ir_node *x = IN(e, n, 0), *idx = IN(e, n, 1);
    int axis = norm_axis(n->i[0], x->rank);
    if (axis < 0)
        return fail(e, "axis %lld out of range for rank %d", (long long)n->i[0], x->rank);
    if (!index_fits(n, x, idx, axis)) {
        char a[96], b[96], c[96];
        return fail(e, "result %s does not fit x %s indexed by %s", shp(a, sizeof a, n), shp(b, sizeof b, x),
                    shp(c, sizeof c, idx));
    }
    int64_t xst[R], ist[R], size = x->shape[axis];
    index_strides(x, idx, axis, n->rank, xst, ist);
    iter it;
    it_init(&it, n->rank, n->shape);
    it_add(&it, x->offset, xst);
    it_add(&it, idx->offset, ist);
    it_add(&it, n->offset, n->strides);
    int64_t numel = prod(n->rank, n->shape);
    for (int64_t k = 0; k < numel; k++, it_next(&it)) {
        int64_t i = rdi(e, idx, it.pos[1]);
        if (check_index(e, i, axis, size, true))
            return 1;
        copy_elem(e, n, it.pos[2], x, it.pos[0] + wrap_index(i, size, true) * x->strides[axis]);
    }
    return 0;
}

/* torch.gather: out[..i..] = x[..idx[..i..] at axis..]; indices must be in range */
static int op_gather(ev *e, const ir_node *n)
{
    const ir_node *x = IN(e, n, 0), *idx = IN(e, n, 1);
    int axis = norm_axis(n->i[0], x->rank);
    if (axis < 0)
        return fail(e, "axis %lld out of range for rank %d", (long long)n->i[0], x->rank);
    if (!same_shape(n, idx) || !gather_fits(idx, x, axis)) {
        char a[96], b[96], c[96];
        return fail(e, "result %s does not fit x %s gathered by %s", shp(a, sizeof a, n), shp(b, sizeof b, x),
                    shp(c, sizeof c, idx));
    }
    int64_t xst[R], size = x->shape[axis];
    strides_off_axis(x, axis, xst);
    iter it;
    it_init(&it, n->rank, n->shape);
    it_add(&it, x->offset, xst);
    it_add(&it, idx->offset, idx->strides);
    it_add(&it, n->offset, n->strides);
    int64_t numel = prod(n->rank, n->shape);
    for (int64_t k = 0; k < numel; k++, it_next(&it)) {
        int64_t i = rdi(e, idx, it.pos[1]);
        if (check_index(e, i, axis, size, false))
            return 1;
        copy_elem(e, n, it.pos[2], x, it.pos[0] + i * x->strides[axis]);
    }
    return 0;
}

/* ---- scatters: zeros of n's shape, then the source added (or placed) in ---- */
static int scatter_misfit(ev *e, const ir_node *n, const ir_node *src)
{
    char a[96], b[96];
    return fail(e, "source %s does not fit the result %s", shp(a, sizeof a, src), shp(b, sizeof b, n));
}

static void zero_fill(ev *e, const ir_node *n)
{
    iter it;
    it_init(&it, n->rank, n->shape);
    it_add(&it, n->offset, n->strides);
    int64_t numel = prod(n->rank, n->shape);
    for (int64_t k = 0; k < numel; k++, it_next(&it))
        wri(e, n, it.pos[0], 0);
}

/* every index (negatives wrapped when wrap) within [0, size); checked before anything is
 * added, in idx's row-major order, as the compiled kernels do */
static int check_indices(ev *e, const ir_node *idx, int axis, int64_t size, bool wrap)
{
    iter it;
    it_init(&it, idx->rank, idx->shape);
    it_add(&it, idx->offset, idx->strides);
    int64_t numel = prod(idx->rank, idx->shape);
    for (int64_t k = 0; k < numel; k++, it_next(&it))
        if (check_index(e, rdi(e, idx, it.pos[0]), axis, size, wrap))
            return 1;
    return 0;
}

/* Adds each element of src into n at (its position under out_st) + index * n's stride
 * along axis; the index is read from idx through idx_st (both iterate src's shape).
 * Floats sum in f64 and round once at the end, as `sum` does; integers wrap. */
static int scatter_add(ev *e, const ir_node *n, const ir_node *src, const ir_node *idx, const int64_t *idx_st,
                       const int64_t *out_st, int axis, bool wrap)
{
    int64_t size = n->shape[axis];
    if (prod(src->rank, src->shape) > 0 && check_indices(e, idx, axis, size, wrap))
        return 1;
    zero_fill(e, n);
    buf *b = BUF(e, n);
    double *acc = NULL;   /* by storage position, like n's buffer */
    if (isf(n) && !(acc = calloc(b->len > 0 ? (size_t)b->len : 1, sizeof(double))))
        return fail(e, "out of memory for %lld elements", (long long)b->len);
    iter it;
    it_init(&it, src->rank, src->shape);
    it_add(&it, src->offset, src->strides);
    it_add(&it, idx->offset, idx_st);
    it_add(&it, n->offset, out_st);
    int64_t numel = prod(src->rank, src->shape);
    for (int64_t k = 0; k < numel; k++, it_next(&it)) {
        int64_t pos = it.pos[2] + wrap_index(rdi(e, idx, it.pos[1]), size, wrap) * n->strides[axis];
        if (acc)
            acc[pos] += rdf(e, src, it.pos[0]);
        else
            wri(e, n, pos, iadd(rdi(e, n, pos), rdi(e, src, it.pos[0])));
    }
    if (acc) {
        it_init(&it, n->rank, n->shape);
        it_add(&it, n->offset, n->strides);
        numel = prod(n->rank, n->shape);
        for (int64_t k = 0; k < numel; k++, it_next(&it))
            wrf(e, n, it.pos[0], acc[it.pos[0]]);
        free(acc);
    }
    return 0;
}

/* index_add: the adjoint of index. src = n.shape[:axis] + idx.shape + n.shape[axis+1:];
 * n[.., wrap(idx[p]), ..] += src[.., p, ..]; negative indices wrap, duplicates accumulate */
static int op_index_add(ev *e, const ir_node *n)
{
    const ir_node *src = IN(e, n, 0), *idx = IN(e, n, 1);
    int axis = norm_axis(n->i[0], n->rank);
    if (axis < 0)
        return fail(e, "axis %lld out of range for rank %d", (long long)n->i[0], n->rank);
    if (isf(src) != isf(n) || !index_fits(src, n, idx, axis))
        return scatter_misfit(e, n, src);
    int64_t ist[R], ost[R];
    index_strides(n, idx, axis, src->rank, ost, ist);
    return scatter_add(e, n, src, idx, ist, ost, axis, true);
}

/* gather_add: the adjoint of torch.gather. src and idx have one shape;
 * n[..idx[p] at axis..] += src[p]; indices must be in range (no wrapping, like gather) */
static int op_gather_add(ev *e, const ir_node *n)
{
    const ir_node *src = IN(e, n, 0), *idx = IN(e, n, 1);
    int axis = norm_axis(n->i[0], n->rank);
    if (axis < 0)
        return fail(e, "axis %lld out of range for rank %d", (long long)n->i[0], n->rank);
    if (isf(src) != isf(n) || !same_shape(src, idx) || !gather_fits(idx, n, axis))
        return scatter_misfit(e, n, src);
    int64_t ost[R];
    strides_off_axis(n, axis, ost);
    return scatter_add(e, n, src, idx, idx->strides, ost, axis, false);
}

/* slice_scatter: the adjoint of a strided slice: zeros, and src at start:stop:step */
static int op_slice_scatter(ev *e, const ir_node *n)
{
    const ir_node *src = IN(e, n, 0);
    int axis = norm_axis(n->i[0], n->rank);
    int64_t start = n->i[1], stop = n->i[2], step = n->i[3];
    if (axis < 0 || step < 1 || start < 0 || stop < start || stop > n->shape[axis])
        return fail(e, "slice %lld:%lld:%lld along axis %lld does not fit %s", (long long)start, (long long)stop,
                    (long long)step, (long long)n->i[0], n->rank ? "the result" : "a scalar");
    bool ok = src->rank == n->rank && isf(src) == isf(n);
    for (int d = 0; ok && d < n->rank; d++)
        ok = src->shape[d] == (d == axis ? (stop - start + step - 1) / step : n->shape[d]);
    if (!ok)
        return scatter_misfit(e, n, src);
    zero_fill(e, n);
    int64_t ost[R];
    memcpy(ost, n->strides, sizeof ost);
    ost[axis] *= step;
    iter it;
    it_init(&it, src->rank, src->shape);
    it_add(&it, src->offset, src->strides);
    it_add(&it, n->offset + start * n->strides[axis], ost);
    int64_t numel = prod(src->rank, src->shape);
    for (int64_t k = 0; k < numel; k++, it_next(&it))
        copy_elem(e, n, it.pos[1], src, it.pos[0]);
    return 0;
}

static int eval_node(ev *e, const ir_node *n, const host_tensor *args, const host_tensor *params)
{
    unsigned fl = ir_ops[n->op].flags;
    if (fl & OPF_VIEW)
        return 0;   /* shares its input's storage: reads go through its own layout */
    if (fl & OPF_LEAF)
        return op_leaf(e, n, args, params);
    if (fl & OPF_REDUCE)
        return op_reduce(e, n);
    if (fl & OPF_UNARY)
        return op_unary(e, n);
    if (fl & OPF_BINARY)
        return op_binary(e, n);
    switch (n->op) {
    case OP_where: return op_where(e, n);
    case OP_softmax:
    case OP_log_softmax: return op_softmax(e, n);
    case OP_cross_entropy: return op_cross_entropy(e, n);
    case OP_layer_norm: return op_layer_norm(e, n);
    case OP_one_hot: return op_one_hot(e, n);
    case OP_matmul: return op_matmul(e, n);
    case OP_copy: return op_copy(e, n);
    case OP_concat: return op_concat(e, n);
    case OP_index: return op_index(e, n);
    case OP_gather: return op_gather(e, n);
    case OP_index_add: return op_index_add(e, n);
    case OP_gather_add: return op_gather_add(e, n);
    case OP_slice_scatter: return op_slice_scatter(e, n);
    default: return fail(e, "the evaluator does not know this op");
    }
}

/* Gathers node n through its strides into a new dense host tensor. */
static int store_output(ev *e, const ir_node *n, host_tensor *t)
{
    ir_dtype dt = e->f64 && isf(n) ? DT_F64 : n->dtype;
    if (!host_tensor_alloc(t, dt, n->rank, n->shape))
        return fail(e, "out of memory for an output");
    iter it;
    it_init(&it, n->rank, n->shape);
    it_add(&it, n->offset, n->strides);
    int64_t numel = prod(n->rank, n->shape);
    for (int64_t k = 0; k < numel; k++, it_next(&it)) {
        switch (dt) {
        case DT_BOOL: ((uint8_t *)t->data)[k] = rdi(e, n, it.pos[0]) != 0; break;
        case DT_I32: ((int32_t *)t->data)[k] = (int32_t)wrap_int(DT_I32, rdi(e, n, it.pos[0])); break;
        case DT_I64: ((int64_t *)t->data)[k] = rdi(e, n, it.pos[0]); break;
        default: host_tensor_set(t, k, rdf(e, n, it.pos[0])); break;
        }
    }
    return 0;
}

int ir_eval(const ir_func *f, const host_tensor *args, const host_tensor *params, host_tensor *outs,
            const ir_eval_opts *opts, char *err, size_t errlen)
{
    char local[8];
    if (!err || errlen == 0) {
        err = local;
        errlen = sizeof local;
    }
    err[0] = '\0';
    ev e = {.fn = f, .f64 = opts && opts->force_f64, .states = opts ? opts->states : NULL, .cur = -1, .err = err,
            .errlen = errlen};
    if (!f)
        return fail(&e, "no function");
    if (f->nouts > 0 && !outs)
        return fail(&e, "no place for the outputs");
    for (int k = 0; k < f->nouts; k++)
        outs[k].data = NULL;
    if (f->nargs > 0 && !args)
        return fail(&e, "%s takes %d arguments, none given", f->name ? f->name : "?", f->nargs);
    if (f->mod && f->mod->nparams > 0 && !params)
        return fail(&e, "the module has %d parameters, none given", f->mod->nparams);
    if (f->nnodes < 0 || (f->nnodes > 0 && !f->nodes))
        return fail(&e, "malformed function");
    for (int k = 0; k < f->nouts; k++)
        if (!f->outs || f->outs[k] < 0 || f->outs[k] >= f->nnodes)
            return fail(&e, "output %d is not a node", k);
    e.bufs = calloc(f->nnodes ? (size_t)f->nnodes : 1, sizeof(buf));
    if (!e.bufs)
        return fail(&e, "out of memory");
    int rc = 0;
    for (int id = 0; id < f->nnodes && !rc; id++) {
        e.cur = id;
        rc = check_node(&e, id);
        if (!rc)
            rc = eval_node(&e, &f->nodes[id], args, params);
    }
    for (int k = 0; k < f->nouts && !rc; k++) {
        e.cur = f->outs[k];
        rc = store_output(&e, &f->nodes[f->outs[k]], &outs[k]);
    }
    for (int id = 0; id < f->nnodes; id++) {
        free(e.bufs[id].f);
        free(e.bufs[id].i);
    }
    free(e.bufs);
    if (rc)
        for (int k = 0; k < f->nouts; k++)
            host_tensor_free(&outs[k]);
    return rc;
}

int ir_eval_step(const ir_func *f, const host_tensor *args, host_tensor *params, host_tensor *states,
                 host_tensor *outs, const ir_eval_opts *opts, char *err, size_t errlen)
{
    char local[8];
    if (!err || errlen == 0) {
        err = local;
        errlen = sizeof local;
    }
    err[0] = '\0';
    ev e = {.fn = f, .cur = -1, .err = err, .errlen = errlen};
    if (!f || !f->mod)
        return fail(&e, "no function");
    const ir_module *m = f->mod;
    int nres = ir_num_results(f);
    if ((nres > 0 && !outs) || (m->nstates > 0 && !states))
        return fail(&e, "no place for the results or the states");
    ir_eval_opts o = opts ? *opts : (ir_eval_opts){0};
    o.states = states;
    host_tensor *all = calloc((size_t)f->nouts + 1, sizeof *all);
    if (!all)
        return fail(&e, "out of memory");
    int rc = ir_eval(f, args, params, all, &o, err, errlen);
    /* every target must take its value before the first one is written */
    for (int k = nres; !rc && k < f->nouts; k++) {
        const ir_update *u = &f->updates[k];
        bool is_param = u->kind == IR_UPD_PARAM;
        int n = is_param ? m->nparams : m->nstates;
        if ((u->kind != IR_UPD_PARAM && u->kind != IR_UPD_STATE) || u->index < 0 || u->index >= n) {
            rc = fail(&e, "output %d has a bad update target", k);
            break;
        }
        const host_tensor *t = is_param ? &params[u->index] : &states[u->index];
        const char *name = is_param ? m->params[u->index].name : m->states[u->index].name;
        bool ok = t->rank == all[k].rank && host_tensor_numel(t) == host_tensor_numel(&all[k]) &&
                  (t->dtype == all[k].dtype || (ir_dtype_is_float(t->dtype) && ir_dtype_is_float(all[k].dtype)));
        for (int d = 0; ok && d < t->rank; d++)
            ok = t->shape[d] == all[k].shape[d];
        if (!ok || (host_tensor_numel(t) > 0 && !t->data))
            rc = fail(&e, "%s '%s' does not match its update (output %d)", is_param ? "param" : "state", name, k);
    }
    for (int k = nres; !rc && k < f->nouts; k++) {
        const ir_update *u = &f->updates[k];
        host_tensor *t = u->kind == IR_UPD_PARAM ? &params[u->index] : &states[u->index];
        if (t->dtype == all[k].dtype) {
            if (host_tensor_bytes(t))
                memcpy(t->data, all[k].data, host_tensor_bytes(t));
        } else {   /* force_f64 computed a float target in f64 */
            for (int64_t i = 0; i < host_tensor_numel(t); i++)
                host_tensor_set(t, i, host_tensor_get(&all[k], i));
        }
    }
    for (int k = 0; k < f->nouts; k++) {
        if (!rc && k < nres)
            outs[k] = all[k];   /* the caller owns the plain results now */
        else
            host_tensor_free(&all[k]);
    }
    free(all);
    return rc;
}
