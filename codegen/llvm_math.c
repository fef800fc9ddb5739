/* Elementary functions as straight-line LLVM IR (FMA polynomials, bit tricks, selects), so
 * that they run at the full vector width where a libm call would be scalar. Each takes a
 * float or double scalar, or a vector of them, and returns a value of the same type.
 *
 * Coefficients are our own near-minimax fits (Lawson's iteratively reweighted least squares
 * in mpmath, docs/codegen.md shows the script); the approximation error of every polynomial
 * is far below the rounding error of its evaluation. Measured accuracy against libm (max
 * ulp over dense sweeps, tests/unit/test_llvm_math.c) is tabulated in docs/codegen.md.
 *
 * Special values follow C99 Annex F: NaN in -> NaN out; exp(+-inf) = inf, 0; log(0) = -inf,
 * log(<0) = NaN; tanh and erf saturate to +-1; sin/cos(inf) = NaN; signed zeros are kept
 * where libm keeps them. Denormal inputs and results are handled (no flush to zero).
 *
 * cg_sin and cg_cos reduce by pi/2 with a three-part constant (exact to ~2^-160) and call
 * libm's sin/cos for the rare lanes beyond 2^30 (Payne-Hanek territory): they emit a
 * branch, so they may return in a different basic block than the one they started in.
 * The other functions emit no control flow. f32 sin/cos are computed in f64. */
#include "llvm_internal.h"
#include <math.h>
#include <string.h>

typedef struct mx {
    cg_llvm *cg;
    LLVMBuilderRef b;
    LLVMTypeRef vt;     /* type of x */
    LLVMTypeRef et;     /* float or double */
    LLVMTypeRef it;     /* i32 or i64 with x's shape */
    LLVMTypeRef eit;
    unsigned lanes;     /* 0: scalar */
    bool dbl;
} mx;

static void mx_init(mx *m, cg_llvm *cg, LLVMValueRef x)
{
    m->cg = cg;
    m->b = cg->b;
    m->vt = LLVMTypeOf(x);
    m->lanes = LLVMGetTypeKind(m->vt) == LLVMVectorTypeKind ? LLVMGetVectorSize(m->vt) : 0;
    m->et = m->lanes ? LLVMGetElementType(m->vt) : m->vt;
    m->dbl = LLVMGetTypeKind(m->et) == LLVMDoubleTypeKind;
    m->eit = m->dbl ? LLVMInt64TypeInContext(cg->ctx) : LLVMInt32TypeInContext(cg->ctx);
    m->it = m->lanes ? LLVMVectorType(m->eit, m->lanes) : m->eit;
}

static LLVMValueRef splat(const mx *m, LLVMValueRef c)
{
    if (!m->lanes)
        return c;
    LLVMValueRef v[64];
    for (unsigned i = 0; i < m->lanes; i++)
        v[i] = c;
    return LLVMConstVector(v, m->lanes);
}

static LLVMValueRef K(const mx *m, double v) { return splat(m, LLVMConstReal(m->et, v)); }
static LLVMValueRef KI(const mx *m, long long v) { return splat(m, LLVMConstInt(m->eit, (unsigned long long)v, 1)); }

static LLVMValueRef add(mx *m, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFAdd(m->b, a, b, ""); }
static LLVMValueRef sub(mx *m, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFSub(m->b, a, b, ""); }
static LLVMValueRef mul(mx *m, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFMul(m->b, a, b, ""); }
static LLVMValueRef fdiv(mx *m, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFDiv(m->b, a, b, ""); }
static LLVMValueRef sel(mx *m, LLVMValueRef c, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildSelect(m->b, c, a, b, ""); }
static LLVMValueRef cmp(mx *m, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFCmp(m->b, p, a, b, ""); }
static LLVMValueRef bits(mx *m, LLVMValueRef x) { return LLVMBuildBitCast(m->b, x, m->it, ""); }
static LLVMValueRef from_bits(mx *m, LLVMValueRef i) { return LLVMBuildBitCast(m->b, i, m->vt, ""); }

static LLVMValueRef intrinsic(mx *m, const char *name, LLVMValueRef *args, unsigned n)
{
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMTypeRef ty = m->vt;
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(m->cg->mod, id, &ty, 1);
    return LLVMBuildCall2(m->b, LLVMIntrinsicGetType(m->cg->ctx, id, &ty, 1), fn, args, n, "");
}

/* a*b + c rounded once: only where the algorithm needs the exact product (argument
 * reduction, x^2 split); a target without FMA gets a libm call there */
static LLVMValueRef fma3(mx *m, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c)
{
    LLVMValueRef args[3] = {a, b, c};
    return intrinsic(m, "llvm.fma", args, 3);
}

/* a*b + c, fused where the target has FMA (Horner steps: exactness not required) */
static LLVMValueRef fmuladd(mx *m, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c)
{
    LLVMValueRef args[3] = {a, b, c};
    return intrinsic(m, "llvm.fmuladd", args, 3);
}

static LLVMValueRef fabs1(mx *m, LLVMValueRef x) { return intrinsic(m, "llvm.fabs", &x, 1); }

static LLVMValueRef copysign2(mx *m, LLVMValueRef mag, LLVMValueRef sgn)
{
    LLVMValueRef args[2] = {mag, sgn};
    return intrinsic(m, "llvm.copysign", args, 2);
}

static LLVMValueRef isnan1(mx *m, LLVMValueRef x) { return cmp(m, LLVMRealUNO, x, x); }

/* c[0] + x*(c[1] + x*(...)) */
static LLVMValueRef poly(mx *m, LLVMValueRef x, const double *c, int n)
{
    LLVMValueRef p = K(m, c[n - 1]);
    for (int k = n - 2; k >= 0; k--)
        p = fmuladd(m, p, x, K(m, c[k]));
    return p;
}

/* Round to the nearest integer (ties even) by adding and subtracting 1.5 * 2^mant:
 * exact for |v| < 2^22 (f32) / 2^51 (f64). *k gets the integer, read from the sum's
 * low bits, so that no fptosi of a NaN can make poison. */
static LLVMValueRef round_int(mx *m, LLVMValueRef v, LLVMValueRef *k)
{
    double magic = m->dbl ? 6755399441055744.0 : 12582912.0;
    LLVMValueRef t = add(m, v, K(m, magic));
    *k = LLVMBuildSub(m->b, bits(m, t), bits(m, K(m, magic)), "");
    return sub(m, t, K(m, magic));
}

/* 2^k for k within the normal exponent range */
static LLVMValueRef pow2i(mx *m, LLVMValueRef k)
{
    LLVMValueRef e = LLVMBuildAdd(m->b, k, KI(m, m->dbl ? 1023 : 127), "");
    return from_bits(m, LLVMBuildShl(m->b, e, KI(m, m->dbl ? 52 : 23), ""));
}

/* ---- exp: x = n ln2 + r, |r| <= ln2/2; e^r = 1 + r + r^2 Q(r); scale by 2^n in two
 * steps so results that are denormal or near overflow round once. ---- */
static const double EXP_Q32[] = {0.5, 0.1666666716337204, 0.04166646674275398, 0.008333360776305199,
                                 0.0013933597365394235, 0.00019857795268762857};
static const double EXP_Q64[] = {0.5, 0.1666666666666667, 0.041666666666666616, 0.008333333333326167,
                                 0.001388888888891796, 0.00019841269874720812, 2.4801587245738984e-05,
                                 2.7557255514225417e-06, 2.7557349622968373e-07, 2.5105173626464864e-08,
                                 2.0889372702656437e-09};

static LLVMValueRef exp_impl(mx *m, LLVMValueRef x)
{
    /* beyond these e^x is inf / rounds to 0; the clamp keeps n in range (NaN passes) */
    double hi = m->dbl ? 710.0 : 89.0, lo = m->dbl ? -746.0 : -104.0;
    x = sel(m, cmp(m, LLVMRealOGT, x, K(m, hi)), K(m, hi), x);
    x = sel(m, cmp(m, LLVMRealOLT, x, K(m, lo)), K(m, lo), x);
    LLVMValueRef k;
    LLVMValueRef n = round_int(m, mul(m, x, K(m, 1.4426950408889634)), &k);
    LLVMValueRef nn = LLVMBuildFNeg(m->b, n, "");
    /* n * ln2hi is exact inside the fma and x - n*ln2hi fits: r is exact up to ln2lo's rounding */
    LLVMValueRef r = fma3(m, nn, K(m, m->dbl ? 0.6931471805599453 : 0.6931471824645996), x);
    r = fmuladd(m, nn, K(m, m->dbl ? 2.3190468138462996e-17 : -1.9046542121259336e-09), r);
    LLVMValueRef q = m->dbl ? poly(m, r, EXP_Q64, 11) : poly(m, r, EXP_Q32, 6);
    LLVMValueRef p = add(m, K(m, 1.0), fmuladd(m, mul(m, r, r), q, r));
    LLVMValueRef k1 = LLVMBuildAShr(m->b, k, KI(m, 1), "");
    LLVMValueRef k2 = LLVMBuildSub(m->b, k, k1, "");
    return mul(m, mul(m, p, pow2i(m, k1)), pow2i(m, k2));
}

LLVMValueRef cg_exp(cg_llvm *cg, LLVMValueRef x)
{
    mx m;
    mx_init(&m, cg, x);
    return exp_impl(&m, x);
}

/* ---- log: x = 2^k m, m in [sqrt(1/2), sqrt(2)), f = m - 1, s = f / (2 + f);
 * log(1+f) = 2 atanh(s) = f - f^2/2 + s (f^2/2 + R), R = z Q(z), z = s^2. ---- */
static const double LOG_Q32[] = {0.6666666865348816, 0.4000012278556824, 0.2855079770088196, 0.23330992460250854};
static const double LOG_Q64[] = {0.6666666666666666, 0.4000000000000088, 0.28571428570801927, 0.222222223920574,
                                 0.18181795606759427, 0.1538624136704536, 0.1326873199255846,
                                 0.13087025752086595};

static LLVMValueRef log_impl(mx *m, LLVMValueRef x)
{
    bool d = m->dbl;
    /* denormals: scale into the normal range first */
    LLVMValueRef tiny = cmp(m, LLVMRealOLT, x, K(m, d ? 2.2250738585072014e-308 : 1.1754943508222875e-38));
    LLVMValueRef xs = sel(m, tiny, mul(m, x, K(m, d ? 18014398509481984.0 : 8388608.0)), x);
    LLVMValueRef adj = sel(m, tiny, KI(m, d ? 54 : 23), KI(m, 0));
    long long one = d ? 0x3ff0000000000000LL : 0x3f800000LL;
    long long rt = d ? 0x3fe6a09e667f3bcdLL : 0x3f3504f3LL;    /* sqrt(1/2) */
    long long mant = d ? 0x000fffffffffffffLL : 0x007fffffLL;
    LLVMValueRef ix = LLVMBuildAdd(m->b, bits(m, xs), KI(m, one - rt), "");
    LLVMValueRef k = LLVMBuildSub(m->b, LLVMBuildAShr(m->b, ix, KI(m, d ? 52 : 23), ""), KI(m, d ? 1023 : 127), "");
    k = LLVMBuildSub(m->b, k, adj, "");
    LLVMValueRef mi = LLVMBuildAdd(m->b, LLVMBuildAnd(m->b, ix, KI(m, mant), ""), KI(m, rt), "");
    LLVMValueRef f = sub(m, from_bits(m, mi), K(m, 1.0));
    LLVMValueRef s = fdiv(m, f, add(m, K(m, 2.0), f));
    LLVMValueRef z = mul(m, s, s);
    LLVMValueRef R = mul(m, z, d ? poly(m, z, LOG_Q64, 8) : poly(m, z, LOG_Q32, 4));
    LLVMValueRef hfsq = mul(m, K(m, 0.5), mul(m, f, f));
    LLVMValueRef kf = LLVMBuildSIToFP(m->b, k, m->vt, "");
    /* ln2hi has trailing zeros: k * ln2hi is exact */
    LLVMValueRef l2hi = K(m, d ? 0.6931471805598903 : 0.693145751953125);
    LLVMValueRef l2lo = K(m, d ? 5.497923018708371e-14 : 1.428606765330187e-06);
    LLVMValueRef t = fmuladd(m, s, add(m, hfsq, R), mul(m, kf, l2lo));
    LLVMValueRef res = fmuladd(m, kf, l2hi, sub(m, f, sub(m, hfsq, t)));
    /* specials */
    res = sel(m, cmp(m, LLVMRealOLT, x, K(m, 0.0)), K(m, NAN), res);
    res = sel(m, cmp(m, LLVMRealOEQ, x, K(m, 0.0)), K(m, -INFINITY), res);
    res = sel(m, cmp(m, LLVMRealOEQ, x, K(m, INFINITY)), x, res);
    return sel(m, isnan1(m, x), x, res);
}

LLVMValueRef cg_log(cg_llvm *cg, LLVMValueRef x)
{
    mx m;
    mx_init(&m, cg, x);
    return log_impl(&m, x);
}

/* log1p(x) = log(u) + (x - (u - 1)) / u with u = 1 + x: the second term is the rounding
 * error of u, carried through d log(u) = du / u. */
LLVMValueRef cg_log1p(cg_llvm *cg, LLVMValueRef x)
{
    mx m;
    mx_init(&m, cg, x);
    LLVMValueRef u = add(&m, K(&m, 1.0), x);
    LLVMValueRef lu = log_impl(&m, u);
    LLVMValueRef c = fdiv(&m, sub(&m, x, sub(&m, u, K(&m, 1.0))), u);
    /* for huge x the correction is 0 (and inf - inf must not make a NaN); u = 0 is x = -1 */
    LLVMValueRef use = LLVMBuildAnd(m.b, cmp(&m, LLVMRealOLT, x, K(&m, m.dbl ? 9007199254740992.0 : 16777216.0)),
                                    cmp(&m, LLVMRealONE, u, K(&m, 0.0)), "");
    c = sel(&m, use, c, K(&m, 0.0));
    LLVMValueRef res = add(&m, lu, c);
    /* u == 1: log1p(x) = x to within half an ulp (keeps -0) */
    return sel(&m, cmp(&m, LLVMRealOEQ, u, K(&m, 1.0)), x, res);
}

/* ---- tanh: |x| < 0.625: x + x^3 Q(x^2); else sign(x) (1 - 2 / (e^{2|x|} + 1)) ---- */
static const double TANH_Q32[] = {-0.3333333432674408, 0.13333304226398468, -0.05395926535129547,
                                  0.021768946200609207, -0.008344028145074844, 0.0022928286343812943};
static const double TANH_Q64[] = {-0.3333333333333333, 0.13333333333333042, -0.05396825396789723,
                                  0.021869488519017773, -0.008863235103433956, 0.0035921217534530493,
                                  -0.001455775429106872, 0.0005896607391268034, -0.00023759089888450845,
                                  9.257163570976906e-05, -3.12016117573759e-05, 6.485400583780652e-06};

LLVMValueRef cg_tanh(cg_llvm *cg, LLVMValueRef x)
{
    mx m;
    mx_init(&m, cg, x);
    LLVMValueRef a = fabs1(&m, x);
    LLVMValueRef z = mul(&m, x, x);
    LLVMValueRef q = m.dbl ? poly(&m, z, TANH_Q64, 12) : poly(&m, z, TANH_Q32, 6);
    LLVMValueRef small = fmuladd(&m, mul(&m, x, z), q, x);
    LLVMValueRef e = exp_impl(&m, add(&m, a, a));
    LLVMValueRef big = sub(&m, K(&m, 1.0), fdiv(&m, K(&m, 2.0), add(&m, e, K(&m, 1.0))));
    big = copysign2(&m, big, x);
    LLVMValueRef res = sel(&m, cmp(&m, LLVMRealOLT, a, K(&m, 0.625)), small, big);
    return sel(&m, cmp(&m, LLVMRealOEQ, x, K(&m, 0.0)), x, res);   /* tanh(-0) = -0 */
}

/* ---- erf: |x| < 1: x + x Q(x^2); 1 <= |x| < X: 1 - e^{-x^2} g(|x|) with g = erfc e^{x^2}
 * a polynomial in a scaled variable (two pieces for f64); beyond X erf rounds to 1.
 * e^{-x^2} uses x^2 = h + l split exactly by an fma: e^{-h} (1 - l). ---- */
static const double ERF_Q32[] = {0.12837916612625122, -0.3761262595653534, 0.11283600330352783,
                                 -0.026854444295167923, 0.005189535208046436, -0.0008020841050893068,
                                 7.889119297033176e-05};
static const double ERF_Q64[] = {0.1283791670955126, -0.3761263890318375, 0.11283791670954885,
                                 -0.02686617064507787, 0.005223977624828387, -0.0008548326981423488,
                                 0.00012055331132895485, -1.49255957710385e-05, 1.6461008463810614e-06,
                                 -1.6350396115025837e-07, 1.466032823814475e-08, -1.1374954687290011e-09,
                                 5.96068480231331e-11};
/* g on [1, 4], s = (x - 2.5) * 2/3 */
static const double ERFC_G32[] = {0.21080635488033295, -0.11152102798223495, 0.056110918521881104,
                                  -0.02700520120561123, 0.0124843530356884, -0.005570322275161743,
                                  0.002424983074888587, -0.0010101872030645609, 0.00036891078343614936,
                                  -0.00015095670823939145, 9.598414180800319e-05, -3.435741746216081e-05};
/* g on [1, 2.5], s = (x - 1.75) * 4/3 */
static const double ERFC_G64A[] = {0.2849722347374364, -0.09823225913586388, 0.031367041923984595,
                                   -0.009390935492462041, 0.0026591791242474984, -0.0007168914455876099,
                                   0.00018495607778267538, -4.585616728996108e-05, 1.0962896490602964e-05,
                                   -2.5345102692437044e-06, 5.680083605539447e-07, -1.236613333965663e-07,
                                   2.621443718699224e-08, -5.412498227098527e-09, 1.0772098016919464e-09,
                                   -2.1305837071057688e-10, 4.852596574067526e-11, -8.968981205135093e-12};
/* g on [2.5, 6], s = (x - 4.25) * 4/7 */
static const double ERFC_G64B[] = {0.12934527478599236, -0.050652579975570225, 0.01939134046300961,
                                   -0.007266954317618746, 0.0026690037365042284, -0.0009617329808476797,
                                   0.0003403114141611405, -0.00011835415481508096, 4.048729882436145e-05,
                                   -1.3631959976922714e-05, 4.51765561861133e-06, -1.4767225072703104e-06,
                                   4.809418530297637e-07, -1.525339326522953e-07, 4.2813757862076405e-08,
                                   -1.3473529803454865e-08, 6.821114517259291e-09, -2.011502192741712e-09};

LLVMValueRef cg_erf(cg_llvm *cg, LLVMValueRef x)
{
    mx m;
    mx_init(&m, cg, x);
    LLVMValueRef a = fabs1(&m, x);
    LLVMValueRef z = mul(&m, x, x);
    LLVMValueRef q = m.dbl ? poly(&m, z, ERF_Q64, 13) : poly(&m, z, ERF_Q32, 7);
    LLVMValueRef small = fmuladd(&m, x, q, x);
    LLVMValueRef g;
    if (m.dbl) {
        LLVMValueRef ga = poly(&m, mul(&m, sub(&m, a, K(&m, 1.75)), K(&m, 4.0 / 3.0)), ERFC_G64A, 18);
        LLVMValueRef gb = poly(&m, mul(&m, sub(&m, a, K(&m, 4.25)), K(&m, 4.0 / 7.0)), ERFC_G64B, 18);
        g = sel(&m, cmp(&m, LLVMRealOLT, a, K(&m, 2.5)), ga, gb);
    } else {
        g = poly(&m, mul(&m, sub(&m, a, K(&m, 2.5)), K(&m, 2.0 / 3.0)), ERFC_G32, 12);
    }
    double xmax = m.dbl ? 6.0 : 4.0;
    LLVMValueRef ac = sel(&m, cmp(&m, LLVMRealOLT, a, K(&m, xmax)), a, K(&m, xmax));   /* keeps exp finite */
    LLVMValueRef h = mul(&m, ac, ac);
    LLVMValueRef l = fma3(&m, ac, ac, LLVMBuildFNeg(m.b, h, ""));
    LLVMValueRef e = mul(&m, exp_impl(&m, LLVMBuildFNeg(m.b, h, "")), sub(&m, K(&m, 1.0), l));
    LLVMValueRef mid = sub(&m, K(&m, 1.0), mul(&m, e, g));
    LLVMValueRef big = sel(&m, cmp(&m, LLVMRealOLT, a, K(&m, xmax)), mid, K(&m, 1.0));
    big = copysign2(&m, big, x);
    LLVMValueRef res = sel(&m, cmp(&m, LLVMRealOLT, a, K(&m, 1.0)), small, big);
    return sel(&m, isnan1(&m, x), x, res);
}

/* ---- sin, cos (computed in f64): x = n pi/2 + r, |r| <= pi/4, with pi/2 = P1 + P2 + P3;
 * fma makes x - n P1 exact and the rest is rounded once, so r keeps full relative precision
 * for |n| < 2^30. sin r = r + r^3 S(r^2); cos r = 1 - r^2/2 + r^4 C(r^2), the subtraction
 * compensated. Quadrant n mod 4 picks the polynomial and the sign. ---- */
static const double SIN_S[] = {-0.16666666666666666, 0.008333333333333331, -0.00019841269841265027,
                               2.7557319219313417e-06, -2.505210622440438e-08, 1.6058530460838686e-10,
                               -7.586634572953198e-13};
static const double COS_C[] = {0.041666666666666664, -0.0013888888888888887, 2.4801587301584632e-05,
                               -2.7557319221393507e-07, 2.0876755788169883e-09, -1.1470460468424879e-11,
                               4.745849260189749e-14};
#define TRIG_LIMIT 1073741824.0   /* 2^30: beyond it libm reduces */

static LLVMValueRef trig64(mx *m, LLVMValueRef x, bool want_cos)
{
    LLVMValueRef k;
    LLVMValueRef n = round_int(m, mul(m, x, K(m, 0.6366197723675814)), &k);
    LLVMValueRef nn = LLVMBuildFNeg(m->b, n, "");
    LLVMValueRef r1 = fma3(m, nn, K(m, 1.5707963267948966), x);
    /* the reduced argument as r + rl: n P2 split exactly (fma), r1 - n P2 by TwoSum */
    LLVMValueRef wh = mul(m, n, K(m, 6.123233995736766e-17));
    LLVMValueRef wl = fma3(m, n, K(m, 6.123233995736766e-17), LLVMBuildFNeg(m->b, wh, ""));
    LLVMValueRef r = sub(m, r1, wh);
    LLVMValueRef bp = sub(m, r, r1), ap = sub(m, r, bp);
    LLVMValueRef e = sub(m, sub(m, r1, ap), add(m, wh, bp));
    LLVMValueRef rl = fmuladd(m, nn, K(m, -1.4973849048591698e-33), sub(m, e, wl));
    LLVMValueRef z = mul(m, r, r);
    LLVMValueRef hz = mul(m, K(m, 0.5), z);
    /* sin(r + rl) = sin r + rl cos r; cos(r + rl) = cos r - rl sin r */
    LLVMValueRef s = add(m, r, fmuladd(m, mul(m, r, z), poly(m, z, SIN_S, 7), fmuladd(m, LLVMBuildFNeg(m->b, hz, ""), rl, rl)));
    s = sel(m, cmp(m, LLVMRealOEQ, x, K(m, 0.0)), x, s);   /* sin(-0) = -0 */
    LLVMValueRef w = sub(m, K(m, 1.0), hz);
    LLVMValueRef tail = fmuladd(m, LLVMBuildFNeg(m->b, r, ""), rl, sub(m, sub(m, K(m, 1.0), w), hz));
    LLVMValueRef c = add(m, w, fmuladd(m, mul(m, z, z), poly(m, z, COS_C, 7), tail));
    if (want_cos)
        k = LLVMBuildAdd(m->b, k, KI(m, 1), "");
    LLVMValueRef odd = LLVMBuildICmp(m->b, LLVMIntNE, LLVMBuildAnd(m->b, k, KI(m, 1), ""), KI(m, 0), "");
    /* cos(x) = sin(x + pi/2): quadrant k+1 */
    LLVMValueRef v = sel(m, odd, c, s);
    LLVMValueRef sign = LLVMBuildShl(m->b, LLVMBuildAnd(m->b, k, KI(m, 2), ""), KI(m, 62), "");
    return from_bits(m, LLVMBuildXor(m->b, bits(m, v), sign, ""));
}

/* Lanes beyond TRIG_LIMIT (and infinities) go to libm; the branch is taken only when some
 * lane needs it. */
static LLVMValueRef trig(cg_llvm *cg, LLVMValueRef x, bool want_cos)
{
    mx m0;
    mx_init(&m0, cg, x);
    LLVMTypeRef f64 = LLVMDoubleTypeInContext(cg->ctx);
    LLVMTypeRef dt = m0.lanes ? LLVMVectorType(f64, m0.lanes) : f64;
    LLVMValueRef xd = m0.dbl ? x : LLVMBuildFPExt(cg->b, x, dt, "");
    mx m;
    mx_init(&m, cg, xd);
    LLVMValueRef fast = trig64(&m, xd, want_cos);
    LLVMValueRef huge = cmp(&m, LLVMRealUGT, fabs1(&m, xd), K(&m, TRIG_LIMIT));
    LLVMValueRef any = huge;
    if (m.lanes)
        any = LLVMBuildICmp(cg->b, LLVMIntNE,
                            LLVMBuildBitCast(cg->b, huge, LLVMIntTypeInContext(cg->ctx, m.lanes), ""),
                            LLVMConstInt(LLVMIntTypeInContext(cg->ctx, m.lanes), 0, 0), "");
    LLVMBasicBlockRef from = LLVMGetInsertBlock(cg->b);
    LLVMValueRef fn = LLVMGetBasicBlockParent(from);
    LLVMBasicBlockRef slow = LLVMAppendBasicBlockInContext(cg->ctx, fn, "trig.libm");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(cg->ctx, fn, "trig.join");
    LLVMBuildCondBr(cg->b, any, slow, join);

    LLVMPositionBuilderAtEnd(cg->b, slow);
    const char *name = want_cos ? "cos" : "sin";
    LLVMTypeRef fty = LLVMFunctionType(f64, &f64, 1, 0);
    LLVMValueRef libm = LLVMGetNamedFunction(cg->mod, name);
    if (!libm)
        libm = LLVMAddFunction(cg->mod, name, fty);
    LLVMValueRef sv;
    if (m.lanes) {
        sv = fast;
        for (unsigned i = 0; i < m.lanes; i++) {
            LLVMValueRef idx = LLVMConstInt(LLVMInt32TypeInContext(cg->ctx), i, 0);
            LLVMValueRef xi = LLVMBuildExtractElement(cg->b, xd, idx, "");
            LLVMValueRef yi = LLVMBuildCall2(cg->b, fty, libm, &xi, 1, "");
            LLVMValueRef hi = LLVMBuildExtractElement(cg->b, huge, idx, "");
            LLVMValueRef fi = LLVMBuildExtractElement(cg->b, fast, idx, "");
            sv = LLVMBuildInsertElement(cg->b, sv, LLVMBuildSelect(cg->b, hi, yi, fi, ""), idx, "");
        }
    } else {
        sv = LLVMBuildCall2(cg->b, fty, libm, &xd, 1, "");
    }
    LLVMBasicBlockRef slow_end = LLVMGetInsertBlock(cg->b);
    LLVMBuildBr(cg->b, join);

    LLVMPositionBuilderAtEnd(cg->b, join);
    LLVMValueRef phi = LLVMBuildPhi(cg->b, dt, "");
    LLVMValueRef vals[2] = {fast, sv};
    LLVMBasicBlockRef blocks[2] = {from, slow_end};
    LLVMAddIncoming(phi, vals, blocks, 2);
    return m0.dbl ? phi : LLVMBuildFPTrunc(cg->b, phi, m0.vt, "");
}

LLVMValueRef cg_sin(cg_llvm *cg, LLVMValueRef x) { return trig(cg, x, false); }
LLVMValueRef cg_cos(cg_llvm *cg, LLVMValueRef x) { return trig(cg, x, true); }
