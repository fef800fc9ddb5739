/* Unit tests for the reference evaluator (ir/eval.c): small functions built with the
 * ir.h builder, evaluated, and compared with values worked out by hand or with numpy
 * (float64, then rounded to the result dtype where it matters; noted per test). */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include "ir/eval.h"

/* ---- building ---- */
static arena ar;
static ir_module *M;
static ir_func *F;
static char err[512];

static void begin(int nargs, const ir_arg *args)
{
    arena_init(&ar);
    M = ir_module_new(&ar, "t");
    F = ir_func_new(M, "f", nargs, args);
}

static void end(void) { arena_free(&ar); }

static int append_(const ir_proto *p, int line)
{
    char e[256];
    int id = ir_append(F, p, e, sizeof e);
    ck_assert_msg(id >= 0, "line %d: ir_append: %s", line, e);
    return id;
}

#define P(...) append_(&(ir_proto){__VA_ARGS__}, __LINE__)
#define NUM(T, ...) ((int)(sizeof((T[]){__VA_ARGS__}) / sizeof(T)))
#define IN(...) .nin = NUM(int, __VA_ARGS__), .in = (const int[]){__VA_ARGS__}
#define LIST(...) .nlist = NUM(int64_t, __VA_ARGS__), .list = {__VA_ARGS__}
#define ARGN(k) P(.op = OP_arg, .i = {k})
#define OUT(id) ir_add_output(F, id)

/* ---- tensors ---- */
#define SHAPE(...) NUM(int64_t, __VA_ARGS__), (const int64_t[]){__VA_ARGS__}
#define SCALAR 0, (const int64_t *)NULL
#define VALS(...) (int64_t)NUM(double, __VA_ARGS__), (const double[]){__VA_ARGS__}

static host_tensor ht(ir_dtype dt, int rank, const int64_t *shape, int64_t n, const double *v)
{
    host_tensor t;
    ck_assert(host_tensor_alloc(&t, dt, rank, shape));
    ck_assert_int_eq(host_tensor_numel(&t), n);
    for (int64_t k = 0; k < n; k++)
        host_tensor_set(&t, k, v[k]);
    return t;
}

static void expect_(const host_tensor *t, ir_dtype dt, int rank, const int64_t *shape, int64_t n, const double *v,
                    double tol, int line)
{
    ck_assert_msg(t->data != NULL, "line %d: no output data", line);
    ck_assert_msg(t->dtype == dt, "line %d: dtype %s, want %s", line, ir_dtype_name(t->dtype), ir_dtype_name(dt));
    ck_assert_msg(t->rank == rank, "line %d: rank %d, want %d", line, t->rank, rank);
    for (int d = 0; d < rank; d++)
        ck_assert_msg(t->shape[d] == shape[d], "line %d: dim %d is %lld, want %lld", line, d,
                      (long long)t->shape[d], (long long)shape[d]);
    ck_assert_int_eq(host_tensor_numel(t), n);
    for (int64_t k = 0; k < n; k++) {
        double got = host_tensor_get(t, k);
        if (isnan(v[k])) {
            ck_assert_msg(isnan(got), "line %d: [%lld] = %.9g, want nan", line, (long long)k, got);
            continue;
        }
        bool ok = isinf(v[k]) ? got == v[k] : fabs(got - v[k]) <= tol * (1 + fabs(v[k]));
        ck_assert_msg(ok, "line %d: [%lld] = %.17g, want %.17g", line, (long long)k, got, v[k]);
    }
}

#define EXPECT(t, dt, shape, vals, tol) expect_(&(t), dt, shape, vals, tol, __LINE__)
#define EXPECT_SCALAR(t, dt, val, tol) expect_(&(t), dt, SCALAR, 1, (const double[]){val}, tol, __LINE__)

static int run_(host_tensor *args, host_tensor *params, host_tensor *outs, bool f64)
{
    ir_eval_opts o = {.force_f64 = f64};
    err[0] = '\0';
    return ir_eval(F, args, params, outs, &o, err, sizeof err);
}

#define RUN_OK(args, outs) ck_assert_msg(run_(args, NULL, outs, false) == 0, "eval failed: %s", err)

static void free_all(host_tensor *t, int n)
{
    for (int k = 0; k < n; k++)
        host_tensor_free(&t[k]);
}

#define ARG(nm, dt, ...) {nm, dt, NUM(int64_t, __VA_ARGS__), {__VA_ARGS__}}
#define EXACT 0.0
#define F32TOL 1e-6

/* ---- tests ---- */

START_TEST(elementwise_broadcast_via_expand)
{
    ir_arg a[] = {ARG("x", DT_F32, 2, 3), ARG("b", DT_F32, 3), ARG("c", DT_F32, 2, 1)};
    begin(3, a);
    int x = ARGN(0), b = ARGN(1), c = ARGN(2);
    int be = P(.op = OP_expand, IN(b), LIST(2, 3));
    int ce = P(.op = OP_expand, IN(c), LIST(2, 3));
    ck_assert_int_eq(F->nodes[be].strides[0], 0);   /* broadcast = stride 0 */
    ck_assert_int_eq(F->nodes[ce].strides[1], 0);
    int s = P(.op = OP_add, IN(x, be));
    int m = P(.op = OP_mul, IN(s, ce));
    int k = P(.op = OP_constant, .dtype = DT_F32, .f = {0.5});
    int ke = P(.op = OP_expand, IN(k), LIST(2, 3));   /* rank 0 -> [2, 3] */
    int d = P(.op = OP_sub, IN(m, ke));
    OUT(m);
    OUT(d);
    OUT(be);   /* a view as an output comes back dense */
    host_tensor in[3] = {ht(DT_F32, SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6)), ht(DT_F32, SHAPE(3), VALS(10, 20, 30)),
                         ht(DT_F32, SHAPE(2, 1), VALS(2, -1))};
    host_tensor out[3];
    RUN_OK(in, out);
    EXPECT(out[0], DT_F32, SHAPE(2, 3), VALS(22, 44, 66, -14, -25, -36), EXACT);
    EXPECT(out[1], DT_F32, SHAPE(2, 3), VALS(21.5, 43.5, 65.5, -14.5, -25.5, -36.5), EXACT);
    EXPECT(out[2], DT_F32, SHAPE(2, 3), VALS(10, 20, 30, 10, 20, 30), EXACT);
    free_all(in, 3);
    free_all(out, 3);
    end();
}
END_TEST

START_TEST(matmul_of_permuted_input)
{
    ir_arg a[] = {ARG("a", DT_F32, 3, 2), ARG("b", DT_F32, 3, 2)};
    begin(2, a);
    int x = ARGN(0), y = ARGN(1);
    int xt = P(.op = OP_permute, IN(x), LIST(1, 0));
    ck_assert(!ir_is_contiguous(&F->nodes[xt]));
    int mm = P(.op = OP_matmul, IN(xt, y));
    int cp = P(.op = OP_copy, IN(xt));
    ck_assert(ir_is_contiguous(&F->nodes[cp]));
    OUT(mm);
    OUT(cp);
    host_tensor in[2] = {ht(DT_F32, SHAPE(3, 2), VALS(1, 2, 3, 4, 5, 6)), ht(DT_F32, SHAPE(3, 2), VALS(1, 0, 0, 1, 1, 1))};
    host_tensor out[2];
    RUN_OK(in, out);
    /* [[1,3,5],[2,4,6]] @ [[1,0],[0,1],[1,1]] */
    EXPECT(out[0], DT_F32, SHAPE(2, 2), VALS(6, 8, 8, 10), EXACT);
    EXPECT(out[1], DT_F32, SHAPE(2, 3), VALS(1, 3, 5, 2, 4, 6), EXACT);
    free_all(in, 2);
    free_all(out, 2);
    end();
}
END_TEST

START_TEST(batched_matmul_and_eye)
{
    ir_arg a[] = {ARG("a", DT_F32, 2, 2, 3), ARG("b", DT_F32, 2, 3, 2), ARG("m", DT_I32, 2, 2)};
    begin(3, a);
    int x = ARGN(0), y = ARGN(1), z = ARGN(2);
    int mm = P(.op = OP_matmul, IN(x, y));
    int ey = P(.op = OP_eye, .dtype = DT_F32, .i = {3});
    int xe = P(.op = OP_select, IN(x), .i = {0, 1});   /* x[1]: [2, 3] */
    int me = P(.op = OP_matmul, IN(xe, ey));
    int zz = P(.op = OP_matmul, IN(z, z));             /* integer matmul */
    OUT(mm);
    OUT(me);
    OUT(zz);
    host_tensor in[3] = {ht(DT_F32, SHAPE(2, 2, 3), VALS(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)),
                         ht(DT_F32, SHAPE(2, 3, 2), VALS(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)),
                         ht(DT_I32, SHAPE(2, 2), VALS(1, 2, 3, 4))};
    host_tensor out[3];
    RUN_OK(in, out);
    /* numpy: np.arange(1,13.).reshape(2,2,3) @ np.arange(1,13.).reshape(2,3,2) */
    EXPECT(out[0], DT_F32, SHAPE(2, 2, 2), VALS(22, 28, 49, 64, 220, 244, 301, 334), EXACT);
    EXPECT(out[1], DT_F32, SHAPE(2, 3), VALS(7, 8, 9, 10, 11, 12), EXACT);
    EXPECT(out[2], DT_I32, SHAPE(2, 2), VALS(7, 10, 15, 22), EXACT);
    free_all(in, 3);
    free_all(out, 3);
    end();
}
END_TEST

START_TEST(slices_with_steps_and_select)
{
    ir_arg a[] = {ARG("x", DT_F32, 3, 4)};
    begin(1, a);
    int x = ARGN(0);
    int s = P(.op = OP_slice, IN(x), .i = {1, 1, 4, 2});   /* x[:, 1:4:2] */
    int t = P(.op = OP_slice, IN(s), .i = {0, 0, 3, 2});   /* then [0:3:2, :] */
    ck_assert_int_eq(F->nodes[t].offset, 1);
    ck_assert_int_eq(F->nodes[t].strides[0], 8);
    ck_assert_int_eq(F->nodes[t].strides[1], 2);
    int nt = P(.op = OP_neg, IN(t));
    int row = P(.op = OP_select, IN(x), .i = {0, 2});
    int xt = P(.op = OP_permute, IN(x), LIST(1, 0));
    int col = P(.op = OP_select, IN(xt), .i = {0, 1});
    int ar_ = P(.op = OP_arange, .dtype = DT_I64, .i = {2, 3, 12});   /* [2, 5, 8, 11] */
    int as = P(.op = OP_slice, IN(ar_), .i = {0, 1, 4, 2});
    OUT(t);
    OUT(nt);
    OUT(row);
    OUT(col);
    OUT(ar_);
    OUT(as);
    host_tensor in[1] = {ht(DT_F32, SHAPE(3, 4), VALS(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11))};
    host_tensor out[6];
    RUN_OK(in, out);
    EXPECT(out[0], DT_F32, SHAPE(2, 2), VALS(1, 3, 9, 11), EXACT);
    EXPECT(out[1], DT_F32, SHAPE(2, 2), VALS(-1, -3, -9, -11), EXACT);
    EXPECT(out[2], DT_F32, SHAPE(4), VALS(8, 9, 10, 11), EXACT);
    EXPECT(out[3], DT_F32, SHAPE(3), VALS(1, 5, 9), EXACT);
    EXPECT(out[4], DT_I64, SHAPE(4), VALS(2, 5, 8, 11), EXACT);
    EXPECT(out[5], DT_I64, SHAPE(2), VALS(5, 11), EXACT);
    free_all(in, 1);
    free_all(out, 6);
    end();
}
END_TEST

START_TEST(reductions_axes_and_keepdim)
{
    ir_arg a[] = {ARG("a", DT_F32, 2, 3, 4)};
    begin(1, a);
    int x = ARGN(0);
    int s0 = P(.op = OP_sum, IN(x), LIST(0, 2));
    int s1 = P(.op = OP_sum, IN(x), LIST(0, 2), .i = {1});
    int mn = P(.op = OP_mean, IN(x), LIST(1));
    int vr = P(.op = OP_var, IN(x), LIST(1));
    int pr = P(.op = OP_prod, IN(x), LIST(2));
    int mx = P(.op = OP_max, IN(x), LIST(0, 1, 2));
    int mi = P(.op = OP_min, IN(x), LIST(0, 1, 2), .i = {1});
    int ls = P(.op = OP_logsumexp, IN(x), LIST(0, 2));
    int xp = P(.op = OP_permute, IN(x), LIST(2, 0, 1));   /* reduce a strided view too */
    int sp = P(.op = OP_sum, IN(xp), LIST(0));
    int outs[] = {s0, s1, mn, vr, pr, mx, mi, ls, sp};
    for (int k = 0; k < 9; k++)
        OUT(outs[k]);
    double v[24];
    for (int k = 0; k < 24; k++)
        v[k] = k * 0.5 - 3;   /* numpy: np.arange(24.).reshape(2,3,4)*0.5-3 */
    host_tensor in[1] = {ht(DT_F32, SHAPE(2, 3, 4), 24, v)};
    host_tensor out[9];
    RUN_OK(in, out);
    EXPECT(out[0], DT_F32, SHAPE(3), VALS(6, 22, 38), EXACT);
    EXPECT(out[1], DT_F32, SHAPE(1, 3, 1), VALS(6, 22, 38), EXACT);
    EXPECT(out[2], DT_F32, SHAPE(2, 4), VALS(-1, -0.5, 0, 0.5, 5, 5.5, 6, 6.5), EXACT);
    EXPECT(out[3], DT_F32, SHAPE(2, 4), VALS(8. / 3, 8. / 3, 8. / 3, 8. / 3, 8. / 3, 8. / 3, 8. / 3, 8. / 3), F32TOL);
    EXPECT(out[4], DT_F32, SHAPE(2, 3), VALS(22.5, 0, 7.5, 189, 1072.5, 3570), EXACT);
    EXPECT_SCALAR(out[5], DT_F32, 8.5, EXACT);
    EXPECT(out[6], DT_F32, SHAPE(1, 1, 1), VALS(-3), EXACT);
    EXPECT(out[7], DT_F32, SHAPE(3), VALS(5.28981435683606, 7.28981435683606, 9.28981435683606), F32TOL);
    /* sum over the original last axis: rows of x */
    EXPECT(out[8], DT_F32, SHAPE(2, 3), VALS(-9, -1, 7, 15, 23, 31), EXACT);
    free_all(in, 1);
    free_all(out, 9);
    end();
}
END_TEST

START_TEST(reductions_nan_ties_and_ints)
{
    ir_arg a[] = {ARG("x", DT_F32, 2, 3), ARG("t", DT_F32, 2, 3), ARG("i", DT_I32, 2, 3)};
    begin(3, a);
    int x = ARGN(0), t = ARGN(1), i = ARGN(2);
    int mx = P(.op = OP_max, IN(x), LIST(1));
    int mi = P(.op = OP_min, IN(x), LIST(1));
    int amx = P(.op = OP_argmax, IN(x), LIST(1));
    int amn = P(.op = OP_argmin, IN(x), LIST(1));
    int tmx = P(.op = OP_argmax, IN(t), LIST(1));
    int tmn = P(.op = OP_argmin, IN(t), LIST(1));
    int tall = P(.op = OP_argmax, IN(t), LIST(0, 1));
    int t0 = P(.op = OP_argmax, IN(t), LIST(0), .i = {1});
    int zero = P(.op = OP_full, .dtype = DT_F32, LIST(2, 3), .f = {0});
    int pos = P(.op = OP_gt, IN(t, zero));
    int cnt = P(.op = OP_sum, IN(pos), LIST(0, 1));
    int isum = P(.op = OP_sum, IN(i), LIST(1));
    int imax = P(.op = OP_max, IN(i), LIST(0));
    int outs[] = {mx, mi, amx, amn, tmx, tmn, tall, t0, cnt, isum, imax};
    for (int k = 0; k < 11; k++)
        OUT(outs[k]);
    host_tensor in[3] = {ht(DT_F32, SHAPE(2, 3), VALS(1, NAN, 3, 4, 5, 6)),
                         ht(DT_F32, SHAPE(2, 3), VALS(5, 1, 5, 0, 5, 0)),
                         ht(DT_I32, SHAPE(2, 3), VALS(2000000000, 2000000000, 1, -7, 3, 9))};
    host_tensor out[11];
    RUN_OK(in, out);
    EXPECT(out[0], DT_F32, SHAPE(2), VALS(NAN, 6), EXACT);
    EXPECT(out[1], DT_F32, SHAPE(2), VALS(NAN, 4), EXACT);
    EXPECT(out[2], DT_I64, SHAPE(2), VALS(1, 2), EXACT);   /* torch: NaN is the extreme */
    EXPECT(out[3], DT_I64, SHAPE(2), VALS(1, 0), EXACT);
    EXPECT(out[4], DT_I64, SHAPE(2), VALS(0, 1), EXACT);   /* ties: first index */
    EXPECT(out[5], DT_I64, SHAPE(2), VALS(1, 0), EXACT);
    EXPECT_SCALAR(out[6], DT_I64, 0, EXACT);               /* flat index over all axes */
    EXPECT(out[7], DT_I64, SHAPE(1, 3), VALS(0, 1, 0), EXACT);
    EXPECT_SCALAR(out[8], DT_I64, 4, EXACT);               /* bool sum -> i64 */
    EXPECT(out[9], DT_I64, SHAPE(2), VALS(4000000001.0, 5), EXACT);   /* no i32 overflow */
    EXPECT(out[10], DT_I32, SHAPE(3), VALS(2000000000, 2000000000, 9), EXACT);
    free_all(in, 3);
    free_all(out, 11);
    end();
}
END_TEST

START_TEST(softmax_logsumexp_large_values)
{
    ir_arg a[] = {ARG("x", DT_F32, 3, 2), ARG("y", DT_F32, 2, 3)};
    begin(2, a);
    int x = ARGN(0), y = ARGN(1);
    int sm = P(.op = OP_softmax, IN(x), .i = {0});
    int lsm = P(.op = OP_log_softmax, IN(x), .i = {0});
    int lse = P(.op = OP_logsumexp, IN(y), LIST(1), .i = {1});
    OUT(sm);
    OUT(lsm);
    OUT(lse);
    host_tensor in[2] = {ht(DT_F32, SHAPE(3, 2), VALS(1000, 0, 1000, 1, 999, 2)),
                         ht(DT_F32, SHAPE(2, 3), VALS(1000, 1000, 999, -INFINITY, -INFINITY, -INFINITY))};
    host_tensor out[3];
    RUN_OK(in, out);
    /* numpy, max-shifted in f64: column 0 is [1000, 1000, 999], column 1 is [0, 1, 2] */
    EXPECT(out[0], DT_F32, SHAPE(3, 2),
           VALS(0.4223187982515182, 0.09003057317038046, 0.4223187982515182, 0.24472847105479764,
                0.15536240349696362, 0.6652409557748219),
           F32TOL);
    EXPECT(out[1], DT_F32, SHAPE(3, 2),
           VALS(-0.861994804058213, log(0.09003057317038046), -0.861994804058213, log(0.24472847105479764),
                -1.861994804058213, log(0.6652409557748219)),
           F32TOL);
    EXPECT(out[2], DT_F32, SHAPE(2, 1), VALS(1000.8619948040582, -INFINITY), F32TOL);
    free_all(in, 2);
    free_all(out, 3);
    end();
}
END_TEST

START_TEST(cross_entropy_and_layer_norm)
{
    ir_arg a[] = {ARG("l", DT_F32, 3, 3), ARG("y", DT_I64, 3), ARG("x", DT_F32, 2, 4), ARG("w", DT_F32, 4),
                  ARG("b", DT_F32, 4)};
    begin(5, a);
    int l = ARGN(0), y = ARGN(1), x = ARGN(2), w = ARGN(3), b = ARGN(4);
    int ce = P(.op = OP_cross_entropy, IN(l, y));
    int ln = P(.op = OP_layer_norm, IN(x, w, b), .f = {1e-5});
    OUT(ce);
    OUT(ln);
    host_tensor in[5] = {ht(DT_F32, SHAPE(3, 3), VALS(1, 2, 3, 1000, 0, -1000, 0.5, 0.5, 0.5)),
                         ht(DT_I64, SHAPE(3), VALS(2, 1, 0)),
                         ht(DT_F32, SHAPE(2, 4), VALS(1, 2, 3, 4, 10, -10, 5, 0)),
                         ht(DT_F32, SHAPE(4), VALS(1, 2, 0.5, -1)), ht(DT_F32, SHAPE(4), VALS(0, 1, 0, -1))};
    host_tensor out[2];
    RUN_OK(in, out);
    /* numpy: mean(logsumexp(row) - row[label]) in f64 */
    EXPECT_SCALAR(out[0], DT_F32, 333.83540608437085, F32TOL);
    /* numpy: (x - mean) / sqrt(var + 1e-5) * w + b, var biased */
    EXPECT(out[1], DT_F32, SHAPE(2, 4),
           VALS(-1.3416354656219482, 0.10557638853788376, 0.2236059010028839, -2.3416354656219482,
                1.183215856552124, -2.042555093765259, 0.25354626774787903, -0.8309691548347473),
           F32TOL);
    free_all(in, 5);
    free_all(out, 2);
    end();
}
END_TEST

START_TEST(unary_math)
{
    ir_arg a[] = {ARG("g", DT_F32, 7), ARG("x", DT_F32, 7)};
    begin(2, a);
    int g = ARGN(0), x = ARGN(1);
    int ge = P(.op = OP_gelu, IN(g));
    int gt = P(.op = OP_gelu, IN(g), .i = {1});
    int re = P(.op = OP_relu, IN(x));
    int sg = P(.op = OP_sign, IN(x));
    int sp = P(.op = OP_softplus, IN(x));
    int cl = P(.op = OP_clamp, IN(x), .f = {-1, 1});
    int ch = P(.op = OP_clamp, IN(x), .f = {-INFINITY, 0});
    int lr = P(.op = OP_leaky_relu, IN(x), .f = {0.1});
    int si = P(.op = OP_sigmoid, IN(x));
    int sl = P(.op = OP_silu, IN(x));
    int outs[] = {ge, gt, re, sg, sp, cl, ch, lr, si, sl};
    for (int k = 0; k < 10; k++)
        OUT(outs[k]);
    host_tensor in[2] = {ht(DT_F32, SHAPE(7), VALS(-3, -1, -0.5, 0, 0.5, 1, 3)),
                         ht(DT_F32, SHAPE(7), VALS(-2, -0.5, 0, 0.5, 30, NAN, 1000))};
    host_tensor out[10];
    RUN_OK(in, out);
    /* python math.erf / math.tanh in f64, rounded to f32 */
    EXPECT(out[0], DT_F32, SHAPE(7),
           VALS(-0.004049694165587425, -0.15865525603294373, -0.1542687714099884, 0.0, 0.3457312285900116,
                0.8413447737693787, 2.995950222015381),
           F32TOL);
    EXPECT(out[1], DT_F32, SHAPE(7),
           VALS(-0.003637392073869705, -0.15880800783634186, -0.1542859971523285, 0.0, 0.3457140028476715,
                0.8411920070648193, 2.9963626861572266),
           F32TOL);
    EXPECT(out[2], DT_F32, SHAPE(7), VALS(0, 0, 0, 0.5, 30, NAN, 1000), EXACT);
    EXPECT(out[3], DT_F32, SHAPE(7), VALS(-1, -1, 0, 1, 1, 0, 1), EXACT);   /* torch: sign(nan) = 0 */
    EXPECT(out[4], DT_F32, SHAPE(7),   /* torch's threshold 20 keeps x = 1000 finite */
           VALS(0.12692801654338837, 0.4740769863128662, 0.6931471824645996, 0.9740769863128662, 30, NAN, 1000),
           F32TOL);
    EXPECT(out[5], DT_F32, SHAPE(7), VALS(-1, -0.5, 0, 0.5, 1, NAN, 1), EXACT);
    EXPECT(out[6], DT_F32, SHAPE(7), VALS(-2, -0.5, 0, 0, 0, NAN, 0), EXACT);
    EXPECT(out[7], DT_F32, SHAPE(7), VALS(-0.2, -0.05, 0, 0.5, 30, NAN, 1000), F32TOL);
    EXPECT(out[8], DT_F32, SHAPE(7),
           VALS(0.11920291930437088, 0.3775406777858734, 0.5, 0.622459352016449, 1, NAN, 1), F32TOL);
    EXPECT(out[9], DT_F32, SHAPE(7),
           VALS(-0.23840583860874176, -0.1887703388929367, 0, 0.3112296760082245, 30, NAN, 1000), F32TOL);
    free_all(in, 2);
    free_all(out, 10);
    end();
}
END_TEST

START_TEST(binary_compare_where)
{
    ir_arg a[] = {ARG("x", DT_F32, 6), ARG("fa", DT_F32, 6), ARG("fb", DT_F32, 6), ARG("ia", DT_I32, 5),
                  ARG("ib", DT_I32, 5)};
    begin(5, a);
    int x = ARGN(0), fa = ARGN(1), fb = ARGN(2), ia = ARGN(3), ib = ARGN(4);
    int z = P(.op = OP_full, .dtype = DT_F32, LIST(6), .f = {0});
    int m1 = P(.op = OP_full, .dtype = DT_F32, LIST(6), .f = {-1});
    int mx = P(.op = OP_maximum, IN(x, z));
    int mn = P(.op = OP_minimum, IN(x, z));
    int gt = P(.op = OP_gt, IN(x, z));
    int wh = P(.op = OP_where, IN(gt, x, m1));
    int nt = P(.op = OP_lnot, IN(gt));
    int fm = P(.op = OP_mod, IN(fa, fb));
    int im = P(.op = OP_mod, IN(ia, ib));
    int ia2 = P(.op = OP_add, IN(ia, ia));   /* i32 wraps */
    int pw = P(.op = OP_pow, IN(fa, fb));
    int le = P(.op = OP_le, IN(ia, ib));
    int outs[] = {mx, mn, gt, wh, nt, fm, im, ia2, pw, le};
    for (int k = 0; k < 10; k++)
        OUT(outs[k]);
    host_tensor in[5] = {ht(DT_F32, SHAPE(6), VALS(-2, -0.5, 0, 0.5, 30, NAN)),
                         ht(DT_F32, SHAPE(6), VALS(5.5, -5.5, 5.5, -5.5, 3, -3)),
                         ht(DT_F32, SHAPE(6), VALS(2, 2, -2, -2, 3, 3)),
                         ht(DT_I32, SHAPE(5), VALS(7, -7, 7, -7, 2147483647)),
                         ht(DT_I32, SHAPE(5), VALS(3, 3, -3, -3, 5))};
    host_tensor out[10];
    RUN_OK(in, out);
    EXPECT(out[0], DT_F32, SHAPE(6), VALS(0, 0, 0, 0.5, 30, NAN), EXACT);
    EXPECT(out[1], DT_F32, SHAPE(6), VALS(-2, -0.5, 0, 0, 0, NAN), EXACT);
    EXPECT(out[2], DT_BOOL, SHAPE(6), VALS(0, 0, 0, 1, 1, 0), EXACT);
    EXPECT(out[3], DT_F32, SHAPE(6), VALS(-1, -1, -1, 0.5, 30, -1), EXACT);
    EXPECT(out[4], DT_BOOL, SHAPE(6), VALS(1, 1, 1, 0, 0, 1), EXACT);
    /* numpy.remainder: the sign of the divisor */
    EXPECT(out[5], DT_F32, SHAPE(6), VALS(1.5, 0.5, -0.5, -1.5, 0, 0), EXACT);
    EXPECT(out[6], DT_I32, SHAPE(5), VALS(1, 2, -2, -1, 2), EXACT);
    EXPECT(out[7], DT_I32, SHAPE(5), VALS(14, -14, 14, -14, -2), EXACT);
    EXPECT(out[8], DT_F32, SHAPE(6), VALS(30.25, 30.25, 1 / 30.25, 1 / 30.25, 27, -27), F32TOL);
    EXPECT(out[9], DT_BOOL, SHAPE(5), VALS(0, 1, 0, 1, 0), EXACT);
    free_all(in, 5);
    free_all(out, 10);
    end();
}
END_TEST

START_TEST(index_gather_concat_one_hot)
{
    ir_arg a[] = {ARG("x", DT_F32, 4, 2), ARG("i2", DT_I64, 2, 2), ARG("i1", DT_I32, 3), ARG("g", DT_F32, 2, 3),
                  ARG("gi", DT_I64, 2, 2), ARG("lab", DT_I64, 2, 2)};
    begin(6, a);
    int x = ARGN(0), i2 = ARGN(1), i1 = ARGN(2), g = ARGN(3), gi = ARGN(4), lab = ARGN(5);
    int ix = P(.op = OP_index, IN(x, i2), .i = {0});    /* [2, 2, 2] */
    int ix1 = P(.op = OP_index, IN(x, i1), .i = {1});   /* [4, 3] */
    int ga = P(.op = OP_gather, IN(g, gi), .i = {1});
    int gs = P(.op = OP_slice, IN(gi), .i = {0, 1, 2, 1});   /* [[1, 1]] */
    int ga0 = P(.op = OP_gather, IN(g, gs), .i = {0});
    int xs = P(.op = OP_slice, IN(x), .i = {0, 0, 2, 1});   /* [[0,1],[2,3]] */
    int xst = P(.op = OP_permute, IN(xs), LIST(1, 0));     /* [[0,2],[1,3]] */
    int c1 = P(.op = OP_slice, IN(g), .i = {1, 2, 3, 1});  /* [[3],[6]] */
    int cc = P(.op = OP_concat, IN(c1, xst, xs), .i = {1});
    int c0 = P(.op = OP_concat, IN(xst, xs), .i = {0});
    int oh = P(.op = OP_one_hot, IN(lab), .i = {3});
    int outs[] = {ix, ix1, ga, ga0, cc, c0, oh};
    for (int k = 0; k < 7; k++)
        OUT(outs[k]);
    host_tensor in[6] = {ht(DT_F32, SHAPE(4, 2), VALS(0, 1, 2, 3, 4, 5, 6, 7)),
                         ht(DT_I64, SHAPE(2, 2), VALS(0, -1, 2, -4)), ht(DT_I32, SHAPE(3), VALS(1, 0, -1)),
                         ht(DT_F32, SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6)),
                         ht(DT_I64, SHAPE(2, 2), VALS(2, 0, 1, 1)), ht(DT_I64, SHAPE(2, 2), VALS(0, 2, 1, 2))};
    host_tensor out[7];
    RUN_OK(in, out);
    EXPECT(out[0], DT_F32, SHAPE(2, 2, 2), VALS(0, 1, 6, 7, 4, 5, 0, 1), EXACT);
    EXPECT(out[1], DT_F32, SHAPE(4, 3), VALS(1, 0, 1, 3, 2, 3, 5, 4, 5, 7, 6, 7), EXACT);
    EXPECT(out[2], DT_F32, SHAPE(2, 2), VALS(3, 1, 5, 5), EXACT);
    EXPECT(out[3], DT_F32, SHAPE(1, 2), VALS(4, 5), EXACT);   /* g[idx[0][j]][j] */
    EXPECT(out[4], DT_F32, SHAPE(2, 5), VALS(3, 0, 2, 0, 1, 6, 1, 3, 2, 3), EXACT);
    EXPECT(out[5], DT_F32, SHAPE(4, 2), VALS(0, 2, 1, 3, 0, 1, 2, 3), EXACT);
    EXPECT(out[6], DT_I64, SHAPE(2, 2, 3), VALS(1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1), EXACT);
    free_all(in, 6);
    free_all(out, 7);
    end();
}
END_TEST

START_TEST(casts)
{
    ir_arg a[] = {ARG("x", DT_F32, 5), ARG("i", DT_I64, 3)};
    begin(2, a);
    int x = ARGN(0), i = ARGN(1);
    int ti = P(.op = OP_cast, .dtype = DT_I32, IN(x));
    int tb = P(.op = OP_cast, .dtype = DT_BOOL, IN(x));
    int bf = P(.op = OP_cast, .dtype = DT_F32, IN(tb));
    int i32 = P(.op = OP_cast, .dtype = DT_I32, IN(i));
    int i2f = P(.op = OP_cast, .dtype = DT_F16, IN(i));
    int outs[] = {ti, tb, bf, i32, i2f};
    for (int k = 0; k < 5; k++)
        OUT(outs[k]);
    host_tensor in[2] = {ht(DT_F32, SHAPE(5), VALS(-2.7, 3.9, 0, -0.0, 0.5)), {0}};
    ck_assert(host_tensor_alloc(&in[1], DT_I64, 1, (const int64_t[]){3}));
    int64_t *iv = in[1].data;
    iv[0] = 4294967297LL;   /* 2^32 + 1 wraps to 1 */
    iv[1] = -5;
    iv[2] = 2049;           /* f16 has 11 bits: 2049 rounds to 2048 */
    host_tensor out[5];
    RUN_OK(in, out);
    EXPECT(out[0], DT_I32, SHAPE(5), VALS(-2, 3, 0, 0, 0), EXACT);   /* truncation toward zero */
    EXPECT(out[1], DT_BOOL, SHAPE(5), VALS(1, 1, 0, 0, 1), EXACT);
    EXPECT(out[2], DT_F32, SHAPE(5), VALS(1, 1, 0, 0, 1), EXACT);
    EXPECT(out[3], DT_I32, SHAPE(3), VALS(1, -5, 2049), EXACT);
    EXPECT(out[4], DT_F16, SHAPE(3), VALS(INFINITY, -5, 2048), EXACT);
    free_all(in, 2);
    free_all(out, 5);
    end();
}
END_TEST

START_TEST(low_precision_rounding_and_force_f64)
{
    ir_arg a[] = {ARG("h", DT_F16, 2), ARG("k", DT_F16, 2), ARG("b", DT_BF16, 1), ARG("c", DT_BF16, 1),
                  ARG("x", DT_F32, 1), ARG("y", DT_F32, 1)};
    begin(6, a);
    int h = ARGN(0), k = ARGN(1), b = ARGN(2), c = ARGN(3), x = ARGN(4), y = ARGN(5);
    int hs = P(.op = OP_add, IN(h, k));
    int bs = P(.op = OP_add, IN(b, c));
    int xs = P(.op = OP_add, IN(x, y));
    /* (a + b) - a shows whether the sum was rounded when stored */
    OUT(P(.op = OP_sub, IN(hs, h)));
    OUT(P(.op = OP_sub, IN(bs, b)));
    OUT(P(.op = OP_sub, IN(xs, x)));
    host_tensor in[6] = {ht(DT_F16, SHAPE(2), VALS(1, 0.1)), ht(DT_F16, SHAPE(2), VALS(0.0004, 1. / 3)),
                         ht(DT_BF16, SHAPE(1), VALS(1)), ht(DT_BF16, SHAPE(1), VALS(0.003)),
                         ht(DT_F32, SHAPE(1), VALS(1)), ht(DT_F32, SHAPE(1), VALS(1e-8))};
    host_tensor out[3];
    RUN_OK(in, out);
    /* numpy: float((np.float16(0.1) + np.float16(1/3)) - np.float16(0.1)) */
    EXPECT(out[0], DT_F16, SHAPE(2), VALS(0, 0.3330078125), EXACT);
    EXPECT(out[1], DT_BF16, SHAPE(1), VALS(0), EXACT);
    EXPECT(out[2], DT_F32, SHAPE(1), VALS(0), EXACT);
    free_all(out, 3);

    /* force_f64: no rounding anywhere, float results come back as f64, f64 inputs accepted */
    host_tensor_free(&in[5]);
    in[5] = ht(DT_F64, SHAPE(1), VALS(1e-8));
    ck_assert_msg(run_(in, NULL, out, true) == 0, "%s", err);
    double h1 = f16_to_f32(f32_to_f16(0.1f)), h2 = f16_to_f32(f32_to_f16((float)(1. / 3)));
    EXPECT(out[0], DT_F64, SHAPE(2), VALS((1 + (double)f16_to_f32(f32_to_f16(0.0004f))) - 1, (h1 + h2) - h1), EXACT);
    EXPECT(out[2], DT_F64, SHAPE(1), VALS((1 + 1e-8) - 1), EXACT);
    free_all(out, 3);
    /* without force_f64 the f64 input is a type error */
    ck_assert_int_ne(run_(in, NULL, out, false), 0);
    ck_assert_ptr_nonnull(strstr(err, "'y' expects f32[1], got f64[1]"));
    free_all(in, 6);
    end();
}
END_TEST

START_TEST(params_are_inputs)
{
    arena_init(&ar);
    M = ir_module_new(&ar, "t");
    ir_param p = {.name = "w", .dtype = DT_F32, .rank = 1, .shape = {2}};
    ir_add_param(M, &p);
    ir_arg a[] = {ARG("x", DT_F32, 2)};
    F = ir_func_new(M, "f", 1, a);
    int x = ARGN(0), w = P(.op = OP_param, .i = {0});
    OUT(P(.op = OP_mul, IN(x, w)));
    host_tensor in[1] = {ht(DT_F32, SHAPE(2), VALS(3, 4))}, pr[1] = {ht(DT_F32, SHAPE(2), VALS(0.5, -2))};
    host_tensor out[1];
    ck_assert_msg(run_(in, pr, out, false) == 0, "%s", err);
    EXPECT(out[0], DT_F32, SHAPE(2), VALS(1.5, -8), EXACT);
    free_all(out, 1);
    ck_assert_int_ne(run_(in, NULL, out, false), 0);   /* params missing */
    host_tensor_free(&pr[0]);
    pr[0] = ht(DT_F32, SHAPE(3), VALS(1, 2, 3));
    ck_assert_int_ne(run_(in, pr, out, false), 0);
    ck_assert_ptr_nonnull(strstr(err, "parameter 'w'"));
    free_all(in, 1);
    free_all(pr, 1);
    end();
}
END_TEST

START_TEST(errors_return_nonzero)
{
    ir_arg a[] = {ARG("l", DT_F32, 2, 3), ARG("y", DT_I32, 2), ARG("x", DT_F32, 3, 2)};
    begin(3, a);
    int l = ARGN(0), y = ARGN(1);
    ARGN(2);
    OUT(P(.op = OP_cross_entropy, IN(l, y)));
    host_tensor in[3] = {ht(DT_F32, SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6)), ht(DT_I32, SHAPE(2), VALS(0, 3)),
                         ht(DT_F32, SHAPE(3, 2), VALS(0, 0, 0, 0, 0, 0))};
    host_tensor out[2] = {{.data = (void *)1}, {0}};
    ck_assert_int_ne(run_(in, NULL, out, false), 0);
    ck_assert_ptr_nonnull(strstr(err, "label 3"));
    ck_assert_ptr_null(out[0].data);   /* nothing left allocated on failure */
    ((int32_t *)in[1].data)[1] = -1;
    ck_assert_int_ne(run_(in, NULL, out, false), 0);
    ((int32_t *)in[1].data)[1] = 2;
    ck_assert_msg(run_(in, NULL, out, false) == 0, "%s", err);
    host_tensor_free(&out[0]);

    /* argument shape and dtype mismatches */
    host_tensor_free(&in[0]);
    in[0] = ht(DT_F32, SHAPE(3, 2), VALS(1, 2, 3, 4, 5, 6));
    ck_assert_int_ne(run_(in, NULL, out, false), 0);
    ck_assert_ptr_nonnull(strstr(err, "'l' expects f32[2, 3], got f32[3, 2]"));
    host_tensor_free(&in[0]);
    in[0] = ht(DT_F64, SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6));
    ck_assert_int_ne(run_(in, NULL, out, false), 0);
    ck_assert_int_ne(run_(NULL, NULL, out, false), 0);
    host_tensor_free(&in[0]);
    in[0] = ht(DT_F32, SHAPE(2, 3), VALS(1, 2, 3, 4, 5, 6));

    /* data-dependent index errors: one_hot, index, gather */
    F = ir_func_new(M, "g", 3, a);
    int y2 = ARGN(1), x2;
    OUT(P(.op = OP_one_hot, IN(y2), .i = {3}));
    ((int32_t *)in[1].data)[1] = 3;
    ck_assert_int_ne(run_(in, NULL, out, false), 0);
    ck_assert_ptr_nonnull(strstr(err, "out of range"));
    F = ir_func_new(M, "h", 3, a);
    y2 = ARGN(1), x2 = ARGN(2);
    OUT(P(.op = OP_index, IN(x2, y2), .i = {0}));
    ((int32_t *)in[1].data)[1] = -4;   /* -3 would wrap to 0 */
    ck_assert_int_ne(run_(in, NULL, out, false), 0);
    ((int32_t *)in[1].data)[1] = -3;
    ck_assert_msg(run_(in, NULL, out, false) == 0, "%s", err);
    host_tensor_free(&out[0]);
    F = ir_func_new(M, "k", 3, a);
    x2 = ARGN(2);
    int gi = P(.op = OP_full, .dtype = DT_I64, LIST(3, 1), .f = {2});
    OUT(P(.op = OP_gather, IN(x2, gi), .i = {1}));
    ck_assert_int_ne(run_(in, NULL, out, false), 0);
    ck_assert_ptr_nonnull(strstr(err, "index 2 out of range"));
    free_all(in, 3);
    end();
}
END_TEST

START_TEST(malformed_ir_is_an_error_not_a_crash)
{
    ir_arg a[] = {ARG("x", DT_F32, 2, 3)};
    begin(1, a);
    int x = ARGN(0);
    int t = P(.op = OP_permute, IN(x), LIST(1, 0));
    int e = P(.op = OP_exp, IN(t));
    OUT(e);
    host_tensor in[1] = {ht(DT_F32, SHAPE(2, 3), VALS(0, 0, 0, 0, 0, 0))};
    host_tensor out[1];
    RUN_OK(in, out);
    host_tensor_free(&out[0]);
    F->nodes[t].offset = 100;   /* a view past the end of its storage */
    ck_assert_int_ne(run_(in, NULL, out, false), 0);
    ck_assert_ptr_nonnull(strstr(err, "view reaches"));
    F->nodes[t].offset = 0;
    F->nodes[t].strides[0] = 7;
    ck_assert_int_ne(run_(in, NULL, out, false), 0);
    F->nodes[t].strides[0] = 1;
    F->nodes[e].in[0] = e;   /* a cycle */
    ck_assert_int_ne(run_(in, NULL, out, false), 0);
    F->nodes[e].in[0] = t;
    F->nodes[e].shape[0] = 4;   /* result shape disagrees with its input */
    ck_assert_int_ne(run_(in, NULL, out, false), 0);
    F->nodes[e].shape[0] = 3;
    F->outs[0] = 99;
    ck_assert_int_ne(run_(in, NULL, out, false), 0);
    F->outs[0] = e;
    RUN_OK(in, out);
    EXPECT(out[0], DT_F32, SHAPE(3, 2), VALS(1, 1, 1, 1, 1, 1), EXACT);
    free_all(out, 1);
    free_all(in, 1);
    end();
}
END_TEST

static Suite *eval_suite(void)
{
    Suite *s = suite_create("eval");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, elementwise_broadcast_via_expand);
    tcase_add_test(tc, matmul_of_permuted_input);
    tcase_add_test(tc, batched_matmul_and_eye);
    tcase_add_test(tc, slices_with_steps_and_select);
    tcase_add_test(tc, reductions_axes_and_keepdim);
    tcase_add_test(tc, reductions_nan_ties_and_ints);
    tcase_add_test(tc, softmax_logsumexp_large_values);
    tcase_add_test(tc, cross_entropy_and_layer_norm);
    tcase_add_test(tc, unary_math);
    tcase_add_test(tc, binary_compare_where);
    tcase_add_test(tc, index_gather_concat_one_hot);
    tcase_add_test(tc, casts);
    tcase_add_test(tc, low_precision_rounding_and_force_f64);
    tcase_add_test(tc, params_are_inputs);
    tcase_add_test(tc, errors_return_nonzero);
    tcase_add_test(tc, malformed_ir_is_an_error_not_a_crash);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(eval_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
