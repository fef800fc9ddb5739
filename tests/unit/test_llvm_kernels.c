/* The LLVM kernels (codegen/llvm_kernels.c) against the reference evaluator, op family by
 * op family. Each case is a small .tdsl program compiled by cg_llvm_build, JIT-compiled and
 * called through its generated C API (`k_create(NULL)`, `k_<fn>`); every exported fn runs
 * on seeded random inputs through ir_eval and through the JIT, and every output must agree:
 *   - integers and bools exactly, and floats too in a case with no tolerance (casts);
 *   - floats within |got - want| <= atol + rtol |want| with the case's tolerance (f16 and
 *     bf16 at least two of their ulps), NaN where the evaluator has NaN, infinities exact.
 * Tolerances per family: f32 arithmetic is correctly rounded in both (rtol 2e-7: one ulp);
 * transcendental ops carry the polynomial error of docs/codegen.md (a few ulps: rtol 5e-7,
 * and atol 3e-7 for gelu's tail, where 1 + erf cancels); reductions accumulate in another order
 * (rtol 1e-5). Shapes are chosen to hit the vector loops and their scalar tails (sizes that
 * are not multiples of 16), size-1 dims, broadcasting (stride 0), transposed and stepped
 * views, and the parallel split (>= 256K elements). A case whose inputs make the evaluator
 * fail (a label or index out of range, an integer remainder by zero) must make the export
 * return TDSL_ERR_RUNTIME with a message saying so. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "codegen/llvm_internal.h"
#include "frontend/ast.h"
#include "frontend/lower.h"
#include "ir/eval.h"

typedef struct tcase {
    const char *name;
    const char *src;
    double lo, hi;        /* inputs: floats uniform in [lo, hi], integers uniform in [lo, hi] */
    double rtol, atol;
    bool specials;        /* every 5th float input is NaN, +-inf, +-0, huge or denormal */
    const char *fails;    /* NULL, or the words the run-time error must contain */
} tcase;

#define ARITH 2e-7, 0
#define TRANS 5e-7, 3e-7
#define REDUCE 1e-5, 1e-6

static const tcase cases[] = {
    {"unary_f32",
     "export fn basic(x: f32[3, 37]) -> (f32[3, 37], f32[3, 37], f32[3, 37], f32[3, 37], f32[3, 37], f32[3, 37], f32[3, 37]) {\n"
     "    return -x, abs(x), sign(x), sqrt(x), rsqrt(x), relu(x), leaky_relu(x, 0.2)\n}\n"
     "export fn trans(x: f32[3, 37]) -> (f32[3, 37], f32[3, 37], f32[3, 37], f32[3, 37], f32[3, 37], f32[3, 37], f32[3, 37]) {\n"
     "    return exp(x), log(x), log1p(x), sin(x), cos(x), tanh(x), sigmoid(x)\n}\n"
     "export fn acts(x: f32[3, 37]) -> (f32[3, 37], f32[3, 37], f32[3, 37], f32[3, 37], f32[3, 37], f32[3, 37], f32[3, 37]) {\n"
     "    return gelu(x), gelu(x, approximate=\"tanh\"), silu(x), softplus(x * 8), clamp(x, -0.5, 0.5), clamp(x, lo=0), clamp(x, 1, -1)\n}\n",
     -6, 6, TRANS, true, NULL},
    {"unary_f32_wide",
     "export fn wide(x: f32[1000]) -> (f32[1000], f32[1000], f32[1000], f32[1000], f32[1000], f32[1000]) {\n"
     "    return exp(x), log(x), tanh(x), gelu(x), sin(x), log1p(x)\n}\n",
     -90, 90, TRANS, false, NULL},
    {"binary_broadcast",
     "export fn bin(x: f32[5, 1, 33], y: f32[1, 7, 1]) -> (f32[5, 7, 33], f32[5, 7, 33], f32[5, 7, 33], f32[5, 7, 33], f32[5, 7, 33], f32[5, 7, 33], f32[5, 7, 33], f32[5, 7, 33]) {\n"
     "    return x + y, x - y, x * y, x / y, maximum(x, y), minimum(x, y), x % y, x ** y\n}\n"
     "export fn cmp(x: f32[5, 1, 33], y: f32[1, 7, 1]) -> (bool[5, 7, 33], bool[5, 7, 33], bool[5, 7, 33], bool[5, 7, 33], bool[5, 7, 33], bool[5, 7, 33], f32[5, 7, 33], bool[5, 7, 33]) {\n"
     "    return x == y, x != y, x < y, x <= y, x > y, x >= y, where(x > y, x, y), (x > 0) & (y < 0) | !(x < y)\n}\n"
     "export fn lit(x: f32[2, 17]) -> (f32[2, 17], f32[2, 17], f32[2, 17], f32[2, 17]) {\n"
     "    return x * 2 + 1, 3 - x, x ** 2, 2 ** x\n}\n",
     -3, 3, ARITH, true, NULL},
    {"long_chain",   /* fusion makes one kernel of 300 members */
     "export fn chain(x: f32[3, 37], y: f32[37]) -> f32[3, 37] {\n"
     "    for i in 0..100 {\n        x = relu(x * 0.99 + y) - 0.5\n    }\n"
     "    return x\n}\n",
     -1, 1, 1e-5, 1e-6, false, NULL},
    {"strided_views",
     "export fn views(x: f32[6, 40], y: f32[40, 6]) -> (f32[40, 6], f32[3, 40], f32[6, 37], f32[6, 40], f32[4, 6], f32[6, 3, 40], f32[20, 6]) {\n"
     "    return x.T * y, x[::2] + 1, x[:, 3:] * 2, exp(y.T), x.T[1:5] - y[0:4], x.unsqueeze(1).expand(6, 3, 40) * x[0], y[::2] + x.T[1::2]\n}\n"
     "export fn size_one(a: f32[1, 17, 1], b: f32[4, 1, 3]) -> (f32[4, 17, 3], f32[17], f32[1, 17, 1]) {\n"
     "    return a * b, a.squeeze() + 1, tanh(a)\n}\n"
     "export fn rank0(s: f32, v: f32[19]) -> (f32, f32[19]) {\n"
     "    return exp(s) * 2, v * s\n}\n",
     -2, 2, TRANS, false, NULL},
    {"integers",
     "export fn ints(a: i32[4, 19], b: i32[4, 19]) -> (i32[4, 19], i32[4, 19], i32[4, 19], i32[4, 19], i32[4, 19], i32[4, 19], i32[4, 19], i32[4, 19], i32[4, 19], i32[4, 19], f32[4, 19]) {\n"
     "    return a + b, a - b, a * b * 100000, -a, abs(a), sign(a), relu(a), maximum(a, b), minimum(a, b), clamp(a, -3, 5), clamp(a, -2.5, 3.5)\n}\n"
     "export fn mods(a: i32[4, 19], b: i64[4, 19]) -> (i32[4, 19], i32[4, 19], i64[4, 19], i32[4, 19], i64[4, 19], i32[4, 19]) {\n"
     "    return a % (a * a + 1), a % -(a * a + 1), b % 7, a ** 3, b ** (b % 5), a ** (a - 40)\n}\n"
     "export fn icmp(a: i64[4, 19], b: i64[4, 19]) -> (bool[4, 19], bool[4, 19], bool[4, 19], i64[4, 19], i64[4, 19]) {\n"
     "    return a == b, a < b, a >= b, where(a > b, a, b * 3), a * b\n}\n",
     -50, 50, 0, 0, false, NULL},
    {"casts",
     "export fn casts(x: f32[50], n: i64[50]) -> (i32[50], i64[50], bool[50], f16[50], bf16[50], f64[50], f32[50], f64[50], i32[50], bool[50]) {\n"
     "    return (x * 1e9).to(i32), (x * 1e18).to(i64), x.to(bool), (x * 1e4).to(f16), (x * 1e30).to(bf16), x.to(f64), n.to(f32), n.to(f64), n.to(i32), n.to(bool)\n}\n"
     "export fn casts2(b: bool[50], h: f16[50]) -> (f32[50], i64[50], f32[50], i32[50], bf16[50], bool[50]) {\n"
     "    return b.to(f32), b.to(i64), h.to(f32), h.to(i32), h.to(bf16), h.to(bool)\n}\n",
     -9.2e18, 9.2e18, 0, 0, true, NULL},
    {"half_conv",
     "export fn hc(x: f32[200]) -> (f16[200], f32[200], bf16[200], f32[200], f16[200]) {\n"
     "    h = x.to(f16)\n"
     "    return h, h.to(f32) * 3, (x * 1e-35).to(bf16), (x * 1e-35).to(bf16).to(f32), (x * 1e9).to(f16)\n}\n",
     -1e-4, 1e-4, 0, 0, true, NULL},
    {"half",
     "export fn half(a: f16[3, 40], b: bf16[3, 40]) -> (f16[3, 40], f16[3, 40], bf16[3, 40], bf16[3, 40], f16[3], bf16[40], f16[3, 40]) {\n"
     "    return a + a * a, exp(a), b * b - b, tanh(b), a.sum(1), b.max(0), softmax(a, 1)\n}\n",
     -3, 3, 1e-6, 1e-6, false, NULL},
    {"float64",
     "export fn f64s(x: f64[3, 37], y: f64[37]) -> (f64[3, 37], f64[3, 37], f64[3, 37], f64[3, 37], f64[3, 37], f64[3, 37], f64[3], f64[3, 37], f64[3]) {\n"
     "    return exp(x), log(x), tanh(x), gelu(x), sin(x) + cos(x), x * y, x.sum(1), softmax(x, 1), logsumexp(x, 1)\n}\n",
     -5, 5, 1e-13, 1e-15, false, NULL},
    {"reductions",
     "export fn sums(x: f32[7, 45, 33]) -> (f32[45, 33], f32[7, 33], f32[7, 45], f32[45], f32, f32[7, 1, 33]) {\n"
     "    return x.sum(0), x.sum(1), x.sum(2), x.sum([0, 2]), x.sum(), x.sum(1, keepdim=true)\n}\n"
     "export fn stats(x: f32[7, 45, 33]) -> (f32[45, 33], f32[7, 45], f32[7, 33], f32[7], f32[45, 33], f32[7, 45], f32) {\n"
     "    return x.mean(0), x.var(2), logsumexp(x, 1), x.var([1, 2]), logsumexp(x, 0), x.mean(2), x.var()\n}\n"
     "export fn extremes(x: f32[7, 45, 33]) -> (f32[45, 33], f32[7, 33], f32[7, 45], i64[45, 33], i64[7, 33], i64[7, 45], i64) {\n"
     "    return x.max(0), x.min(1), x.max(2), argmax(x, 0), argmin(x, 1), argmax(x, 2), argmin(x)\n}\n"
     "export fn strided(x: f32[33, 7]) -> (f32[33], f32[7], i64[33], f32[7], f32[33], f32[7]) {\n"
     "    t = x.T\n"
     "    return t.sum(0), t.max(1), t.argmax(0), x[::2].prod(0), logsumexp(t, 0), x.expand(2, 33, 7).sum([0, 1])\n}\n",
     -2, 2, REDUCE, false, NULL},
    {"reductions_special",
     "export fn red(x: f32[5, 40]) -> (f32[5], f32[40], i64[5], i64[40], f32[5], f32[5], f32[40]) {\n"
     "    return x.sum(1), x.max(0), argmax(x, 1), argmin(x, 0), logsumexp(x, 1), x.min(1), x.mean(0)\n}\n",
     -2, 2, REDUCE, true, NULL},
    {"argmax_ties",
     "export fn ties(n: i32[5, 40]) -> (i64[5], i64[40], i64[5], i64[40], f32[5], i64) {\n"
     "    x = n.to(f32)\n"
     "    y = where(x > 1, (x - x) / (x - x), x)\n"
     "    return argmax(x, 1), argmin(x, 0), argmax(y, 1), argmin(y, 0), y.max(1), argmax(y)\n}\n",
     -3, 3, 0, 0, false, NULL},
    {"reductions_int",
     "export fn ired(n: i32[9, 20], b: bool[9, 20], m: i64[9, 20]) -> (i64[20], i64[9], i32[20], i32[9], i64[9], i64[20], bool[9], bool[20], i64[9], i64, i64[9, 1]) {\n"
     "    return n.sum(0), n.prod(1), n.max(0), n.min(1), argmax(n, 1), argmin(m, 0), b.max(1), b.min(0), b.sum(1), m.sum(), m.max(1, keepdim=true)\n}\n",
     -3, 3, 0, 0, false, NULL},
    {"reductions_empty",
     "export fn empty(x: f32[5]) -> (f32, f32, f32) {\n"
     "    e = x[3:3]\n"
     "    return e.sum(), e.prod(), e.mean()\n}\n",
     -1, 1, REDUCE, false, NULL},
    {"nn_ops",
     "export fn sm(x: f32[6, 50]) -> (f32[6, 50], f32[6, 50], f32[6, 50], f32[50, 6], f32[6, 50]) {\n"
     "    return softmax(x, 1), softmax(x, 0), log_softmax(x, 1), log_softmax(x.T, 0), softmax(x * 100, 1)\n}\n"
     "export fn ln(x: f32[6, 50], w: f32[50], b: f32[50], v: f32[12]) -> (f32[6, 50], f32[50, 6], f32[6, 50]) {\n"
     "    return layer_norm(x, w, b), layer_norm(x.T, v[::2], v[1::2]), layer_norm(x + 1000, w, b, eps=1e-3)\n}\n"
     "export fn xe(x: f32[9, 21], y: i64[9], z: i32[9]) -> (f32, f32, f32) {\n"
     "    return cross_entropy(x, y), cross_entropy(x * 300, z), cross_entropy(x.T[:9, :], y)\n}\n"
     "export fn oh(y: i64[9], z: i32[3, 5]) -> (i64[9, 21], i64[3, 5, 4], f32[9, 21]) {\n"
     "    return one_hot(y, 21), one_hot(z, 4), one_hot(y, 21).to(f32) * 0.5\n}\n",
     0, 3, 1e-5, 1e-6, false, NULL},
    {"creation",
     "export fn cr(x: f32[3, 20]) -> (f32[3, 20], i64[20], f32[17], f32[5, 5], bool[4, 4], i32[2, 3], f32[3, 20], i64[4], f16[3, 20]) {\n"
     "    return full([3, 20], 1.5) + x, arange(20), arange(17, dtype=f32), eye(5), eye(4, dtype=bool), zeros([2, 3], dtype=i32), x * eye(20)[:3], arange(7, -1, -2), ones(3, 20, dtype=f16) * 0.1\n}\n",
     -1, 1, ARITH, false, NULL},
    {"copies",
     "export fn cc(a: f32[2, 37], b: f32[3, 37], c: f32[2, 5]) -> (f32[5, 37], f32[2, 42], f32[2, 2, 37], f32[37, 4], f32[2, 37]) {\n"
     "    return concat([a, b], 0), concat([a, c], 1), stack([a, a * 2]), concat([a.T, b.T[:, 1:]], 1), a.T.contiguous().T.contiguous()\n}\n"
     "export fn ix(x: f32[5, 40], i: i64[4], j: i32[2, 3]) -> (f32[4, 40], f32[2, 3, 40], f32[5, 4], f32[4], f32[40, 4]) {\n"
     "    return x[i], x[j], index_select(x, 1, i), x[i, 1], x.T[:, i]\n}\n",
     -4, 3, ARITH, false, NULL},
    {"gather",
     "export fn ga(x: f32[4, 40], i: i64[4, 6], j: i32[3, 40]) -> (f32[4, 6], f32[3, 40], f32[6, 4]) {\n"
     "    return gather(x, 1, i), gather(x, 0, j), gather(x.T, 0, i.T)\n}\n",
     0, 3, ARITH, false, NULL},
    {"parallel",
     "export fn big(x: f32[600, 1000], y: f32[1000]) -> (f32[600, 1000], f32[1000], f32[600], f32[600, 1000], i64[600]) {\n"
     "    return exp(x) * y, x.sum(0), x.max(1), softmax(x, 1), argmax(x, 1)\n}\n"
     "export fn long(v: f32[300001]) -> (f32[300001], f32) {\n"
     "    return tanh(v) + 1, v.sum()\n}\n",
     -3, 3, 1e-5, 1e-6, false, NULL},
    /* run-time errors: the export fails cleanly with the evaluator's reason */
    {"bad_label_xent", "export fn f(x: f32[9, 21], y: i64[9]) -> f32 {\n    return cross_entropy(x, y)\n}\n",
     -30, 30, 0, 0, false, "out of range"},
    {"bad_label_onehot", "export fn f(y: i32[9]) -> i64[9, 5] {\n    return one_hot(y, 5)\n}\n",
     -30, 30, 0, 0, false, "out of range"},
    {"bad_index", "export fn f(x: f32[5, 3], i: i64[6]) -> f32[6, 3] {\n    return x[i]\n}\n",
     -30, 30, 0, 0, false, "index"},
    {"bad_gather", "export fn f(x: f32[4, 6], i: i64[4, 2]) -> f32[4, 2] {\n    return gather(x, 1, i)\n}\n",
     -30, 30, 0, 0, false, "index"},
    {"int_mod_zero", "export fn f(a: i32[40], b: i32[40]) -> i32[40] {\n    return a % b\n}\n",
     -1, 1, 0, 0, false, "remainder by zero"},
};
#define NCASES ((int)(sizeof cases / sizeof *cases))

/* ---- inputs ---- */
static uint64_t rng_state;

static double uniform(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static void fill(host_tensor *t, const tcase *tc)
{
    static const double special[] = {NAN, INFINITY, -INFINITY, 0.0, -0.0, 1e30, -1e30, 1e-40, 65504.0, -1e-3};
    int64_t n = host_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        double u = uniform();
        if (t->dtype == DT_BOOL) {
            host_tensor_set(t, i, u < 0.5);
        } else if (ir_dtype_is_float(t->dtype)) {
            double v = tc->lo + (tc->hi - tc->lo) * u;
            if (tc->specials && i % 5 == 2)
                v = special[(i / 5) % (sizeof special / sizeof *special)];
            host_tensor_set(t, i, v);
        } else {
            double v = floor(tc->lo + (tc->hi - tc->lo + 1) * u);
            if (v > tc->hi)
                v = tc->hi;
            if (t->dtype == DT_I32)
                ((int32_t *)t->data)[i] = (int32_t)fmax(fmin(v, 2147483647.0), -2147483648.0);
            else
                ((int64_t *)t->data)[i] = (int64_t)fmax(fmin(v, 9.2e18), -9.2e18);
        }
    }
}

/* ---- comparison ---- */
static double ulp_of(ir_dtype t)
{
    switch (t) {
    case DT_F16: return 0x1p-10;
    case DT_BF16: return 0x1p-7;
    default: return 0;
    }
}

static void compare(const tcase *tc, const char *fn, int k, const host_tensor *got, const host_tensor *want)
{
    int64_t n = host_tensor_numel(want);
    bool fl = ir_dtype_is_float(want->dtype);
    /* a case with no tolerance wants every float bit for bit (NaN payloads aside) */
    bool exact = tc->rtol == 0 && tc->atol == 0;
    double rtol = exact ? 0 : fmax(tc->rtol, 2 * ulp_of(want->dtype));
    double atol = exact ? 0 : fmax(tc->atol, 2 * ulp_of(want->dtype));
    for (int64_t i = 0; i < n; i++) {
        double g = host_tensor_get(got, i), w = host_tensor_get(want, i);
        bool ok;
        if (!fl)
            ok = want->dtype == DT_I64 ? ((int64_t *)got->data)[i] == ((int64_t *)want->data)[i] : g == w;
        else if (isnan(w))
            ok = isnan(g);
        else if (isinf(w) || exact)
            ok = g == w && signbit(g) == signbit(w);
        else
            ok = fabs(g - w) <= atol + rtol * fabs(w);
        ck_assert_msg(ok, "%s.%s output %d (%s), element %lld of %lld: jit %.9g, evaluator %.9g (rtol %g, atol %g)",
                      tc->name, fn, k, ir_dtype_name(want->dtype), (long long)i, (long long)n, g, w, rtol, atol);
    }
}

typedef struct jitted {
    cg_llvm *cg;
    cg_jit *jit;
    void *inst;
    void (*destroy)(void *);
    const char *(*error)(const void *);
} jitted;

static void build(const tcase *tc, ir_module *m, jitted *j)
{
    char err[512];
    cg_options co = {.cpu = "native", .opt_level = 3};
    j->cg = cg_llvm_build(m, &co, err, sizeof err);
    ck_assert_msg(j->cg != NULL, "%s: code generation failed: %s", tc->name, err);
    j->jit = cg_jit_create(j->cg, err, sizeof err);
    ck_assert_msg(j->jit != NULL, "%s: JIT failed: %s", tc->name, err);
    void *(*create)(const void *);
    *(void **)&create = cg_jit_lookup(j->jit, "k_create");
    *(void **)&j->destroy = cg_jit_lookup(j->jit, "k_destroy");
    *(void **)&j->error = cg_jit_lookup(j->jit, "k_error");
    ck_assert_msg(create && j->destroy && j->error, "%s: no instance functions", tc->name);
    j->inst = create(NULL);
    ck_assert_msg(j->inst != NULL, "%s: k_create failed", tc->name);
}

static void run_fn(const tcase *tc, const ir_func *f, jitted *j)
{
    host_tensor args[16], want[16], got[16];
    ck_assert(f->nargs + f->nouts <= CG_MAX_CALL_BUFFERS);
    void *bufs[CG_MAX_CALL_BUFFERS];
    for (int a = 0; a < f->nargs; a++) {
        ck_assert(host_tensor_alloc(&args[a], f->args[a].dtype, f->args[a].rank, f->args[a].shape));
        fill(&args[a], tc);
        bufs[a] = args[a].data;
    }
    for (int o = 0; o < f->nouts; o++) {
        const ir_node *n = &f->nodes[f->outs[o]];
        ck_assert(host_tensor_alloc(&got[o], n->dtype, n->rank, n->shape));
        bufs[f->nargs + o] = got[o].data;
    }
    char err[512];
    int erc = ir_eval(f, args, NULL, want, NULL, err, sizeof err);
    char sym[256];
    snprintf(sym, sizeof sym, "k_%s", f->name);
    void *fp = cg_jit_lookup(j->jit, sym);
    ck_assert_msg(fp != NULL, "%s: no symbol %s", tc->name, sym);
    int rc = cg_call_export(fp, j->inst, f->nargs + f->nouts, bufs);
    if (tc->fails) {
        ck_assert_msg(erc != 0, "%s.%s: the inputs were meant to make the evaluator fail", tc->name, f->name);
        ck_assert_msg(rc == 8, "%s.%s: status %d, want TDSL_ERR_RUNTIME (evaluator: %s)", tc->name, f->name, rc, err);
        const char *msg = j->error(j->inst);
        ck_assert_msg(strstr(msg, tc->fails) != NULL, "%s.%s: message '%s' lacks '%s' (evaluator: %s)", tc->name,
                      f->name, msg, tc->fails, err);
    } else {
        ck_assert_msg(erc == 0, "%s.%s: evaluator failed: %s", tc->name, f->name, err);
        ck_assert_msg(rc == 0, "%s.%s: status %d: %s", tc->name, f->name, rc, j->error(j->inst));
        for (int o = 0; o < f->nouts; o++) {
            compare(tc, f->name, o, &got[o], &want[o]);
            host_tensor_free(&want[o]);
        }
    }
    for (int o = 0; o < f->nouts; o++)
        host_tensor_free(&got[o]);
    for (int a = 0; a < f->nargs; a++)
        host_tensor_free(&args[a]);
}

START_TEST(test_case)
{
    const tcase *tc = &cases[_i];
    rng_state = 0x9e3779b97f4a7c15ull ^ (uint64_t)(_i + 1) * 0x2545f4914f6cdd1dull;
    src_file src = {.name = tc->name, .text = tc->src, .len = strlen(tc->src)};
    diag_reset(stderr);
    arena ar;
    arena_init(&ar);
    ast_file *ast = parse_file(&ar, &src);
    ck_assert_msg(ast != NULL, "%s: syntax errors (printed above)", tc->name);
    lower_opts lo = {.module_name = "k"};
    ir_module *m = lower_file(&ar, ast, &lo);
    ck_assert_msg(m != NULL, "%s: lowering failed (printed above)", tc->name);
    jitted j;
    build(tc, m, &j);
    for (int k = 0; k < m->nfuncs; k++)
        run_fn(tc, m->funcs[k], &j);
    j.destroy(j.inst);
    cg_jit_free(j.jit);
    cg_llvm_free(j.cg);
    arena_free(&ar);
}
END_TEST

/* The same programs at -O0 and for a 256-bit target: the explicit vectors change width and
 * the optimizer does not help. */
START_TEST(test_other_targets)
{
    static const char *const pick[] = {"unary_f32", "binary_broadcast", "reductions", "argmax_ties", "nn_ops"};
    const tcase *tc = NULL;
    for (int k = 0; k < NCASES && !tc; k++)
        if (!strcmp(cases[k].name, pick[_i % 5]))
            tc = &cases[k];
    ck_assert(tc != NULL);
    rng_state = 0x12345 + (uint64_t)_i;
    src_file src = {.name = tc->name, .text = tc->src, .len = strlen(tc->src)};
    diag_reset(stderr);
    arena ar;
    arena_init(&ar);
    ast_file *ast = parse_file(&ar, &src);
    lower_opts lo = {.module_name = "k"};
    ir_module *m = ast ? lower_file(&ar, ast, &lo) : NULL;
    ck_assert(m != NULL);
    char err[512];
    cg_options co = {.cpu = _i < 5 ? "native" : "x86-64-v3", .opt_level = _i < 5 ? 0 : 2};
    jitted j;
    j.cg = cg_llvm_build(m, &co, err, sizeof err);
    ck_assert_msg(j.cg != NULL, "%s: %s", tc->name, err);
    j.jit = cg_jit_create(j.cg, err, sizeof err);
    ck_assert_msg(j.jit != NULL, "%s: %s", tc->name, err);
    void *(*create)(const void *);
    *(void **)&create = cg_jit_lookup(j.jit, "k_create");
    *(void **)&j.destroy = cg_jit_lookup(j.jit, "k_destroy");
    *(void **)&j.error = cg_jit_lookup(j.jit, "k_error");
    j.inst = create(NULL);
    ck_assert(j.inst != NULL);
    for (int k = 0; k < m->nfuncs; k++)
        run_fn(tc, m->funcs[k], &j);
    j.destroy(j.inst);
    cg_jit_free(j.jit);
    cg_llvm_free(j.cg);
    arena_free(&ar);
}
END_TEST

/* Fusion hands the backend kernels with several elementwise members: the whole chain
 * below (broadcast y, literals, an f16 detour that must round to f16 in registers) as one
 * kernel, emitted into a built module, JIT-compiled and called directly, against the
 * evaluator. (Every case above also runs through pass_fuse inside cg_llvm_build.) */
START_TEST(test_fused_members)
{
    static const char *src_text =
        "export fn f(x: f32[5, 37], y: f32[37], n: i32[5, 37]) -> f32[5, 37] {\n"
        "    return tanh(x * y + 1) - x + exp(n.to(f32) * 0.25) * where(x > 0, x, -x) + (x.to(f16) * 3).to(f32)\n}\n";
    rng_state = 77;
    tcase tc = {"fused", src_text, -3, 3, TRANS, false, NULL};
    src_file src = {.name = "fused", .text = src_text, .len = strlen(src_text)};
    diag_reset(stderr);
    arena ar;
    arena_init(&ar);
    ast_file *ast = parse_file(&ar, &src);
    lower_opts lo = {.module_name = "k"};
    ir_module *m = ast ? lower_file(&ar, ast, &lo) : NULL;
    ck_assert(m != NULL);
    ir_func *f = m->funcs[0];
    /* one kernel: every elementwise node, the output last */
    int members[64], nm = 0;
    for (int i = 0; i < f->nnodes; i++)
        if (ir_ops[f->nodes[i].op].flags & OPF_ELEM)
            members[nm++] = i;
    ck_assert_int_ge(nm, 8);
    ck_assert_int_eq(members[nm - 1], f->outs[0]);
    pass_kernel kr = {.root = f->outs[0], .nmembers = nm, .members = members};
    pass_schedule sched = {.nkernels = 1, .kernels = &kr};
    int ins[64];
    int nin = cg_kernel_inputs(f, &kr, ins);
    ck_assert_int_eq(nin, 3);   /* x, y and n: the literals are immediates */
    char err[512];
    cg_options co = {.cpu = "native", .opt_level = 2};
    jitted j;
    j.cg = cg_llvm_build(m, &co, err, sizeof err);
    ck_assert_msg(j.cg != NULL, "%s", err);
    ck_assert(cg_emit_kernel(j.cg, f, &sched, 0, "fused_kernel", false, -1) != NULL);
    j.jit = cg_jit_create(j.cg, err, sizeof err);
    ck_assert_msg(j.jit != NULL, "%s", err);
    void *(*create)(const void *);
    *(void **)&create = cg_jit_lookup(j.jit, "k_create");
    *(void **)&j.destroy = cg_jit_lookup(j.jit, "k_destroy");
    void (*kernel)(void *, void *, void *, void *, void *);
    *(void **)&kernel = cg_jit_lookup(j.jit, "fused_kernel");
    ck_assert(create && kernel);
    j.inst = create(NULL);
    host_tensor args[3], want, got;
    for (int a = 0; a < 3; a++) {
        ck_assert(host_tensor_alloc(&args[a], f->args[a].dtype, f->args[a].rank, f->args[a].shape));
        fill(&args[a], &tc);
    }
    ck_assert(host_tensor_alloc(&got, DT_F32, 2, (int64_t[]){5, 37}));
    ck_assert_msg(ir_eval(f, args, NULL, &want, NULL, err, sizeof err) == 0, "%s", err);
    void *base[3];
    for (int k = 0; k < 3; k++)   /* storages are the args, in cg_kernel_inputs order */
        base[k] = args[f->nodes[ins[k]].i[0]].data;
    kernel(got.data, base[0], base[1], base[2], j.inst);
    compare(&tc, "f", 0, &got, &want);
    j.destroy(j.inst);
    cg_jit_free(j.jit);
    cg_llvm_free(j.cg);
    for (int a = 0; a < 3; a++)
        host_tensor_free(&args[a]);
    host_tensor_free(&want);
    host_tensor_free(&got);
    arena_free(&ar);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("llvm_kernels");
    TCase *tc = tcase_create("differential");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_case, 0, NCASES);
    tcase_add_loop_test(tc, test_other_targets, 0, 10);
    tcase_add_test(tc, test_fused_members);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
