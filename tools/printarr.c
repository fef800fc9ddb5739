/* NumPy repr, following numpy/_core/arrayprint.py (numpy 2.x, legacy=False):
 * _array_repr_implementation -> array2string -> _formatArray, with FloatingFormat,
 * IntegerFormat and BoolFormat. Floats use Dragon4's "unique" digits (the shortest decimal
 * that rounds back to the same value of the array's dtype, found here with printf and an
 * exact round-trip interval) cut off at 8 digits. */
#include "printarr.h"
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum { LINEWIDTH = 75, THRESHOLD = 1000, EDGEITEMS = 3, PRECISION = 8 };

/* ---- growable string ---- */
typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} strbuf;

static void sb_putn(strbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 128;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->s = p, b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}
static void sb_puts(strbuf *b, const char *s) { sb_putn(b, s, strlen(s)); }
static void sb_spaces(strbuf *b, int n)
{
    for (int i = 0; i < n; i++)
        sb_putn(b, " ", 1);
}

/* ---- Dragon4 digits ---- */

/* d[0].d[1]...d[n-1] * 10^e, n >= 1 significant digits */
typedef struct {
    char d[800];
    int n, e;
} decimal;

typedef struct {
    int p, emin;  /* significand bits including the implicit one, min normal exponent */
} fpfmt;

static fpfmt fmt_of(ir_dtype dt)
{
    switch (dt) {
    case DT_F16: return (fpfmt){11, -14};
    case DT_BF16: return (fpfmt){8, -126};
    case DT_F32: return (fpfmt){24, -126};
    default: return (fpfmt){53, -1022};
    }
}

/* The interval of reals that round to x (> 0, finite) in the format, round-half-even: the
 * ends belong to it when x's significand is even (numpy's Dragon4 does the same). Exact in
 * double for the formats narrower than f64; f64 uses a strtod round trip instead. */
static void round_interval(double x, fpfmt f, double *lo, double *hi, int *closed)
{
    int k;
    frexp(x, &k);
    int e = k - 1;                       /* x in [2^e, 2^(e+1)) */
    int ee = e < f.emin ? f.emin : e;
    double ulp = ldexp(1.0, ee - (f.p - 1));
    double below = ulp;
    if (e > f.emin && x == ldexp(1.0, e))  /* bottom of a binade: the gap below is half */
        below = ulp / 2;
    *lo = x - below / 2;
    *hi = x + ulp / 2;
    *closed = fmod(x / ulp, 2.0) == 0;
}

/* Exact decimal digits of a > 0: printf prints binary values exactly when asked for as
 * many digits as a = m * 2^q (m odd) has: the integer digits plus -q fraction digits. */
static void exact_digits(double a, decimal *x)
{
    char buf[840];
    int k;
    double f = frexp(a, &k);
    long long m = (long long)ldexp(f, 53);
    int q = k - 53;
    while (m % 2 == 0)
        m /= 2, q++;
    int e10 = (int)floor(log10(a)) + 1;  /* may overshoot by one: an extra exact zero */
    int prec = q < 0 ? e10 - q : e10 + 1;
    if (prec < 1)
        prec = 1;
    if (prec > 780)
        prec = 780;
    snprintf(buf, sizeof buf, "%.*e", prec, a);
    x->n = 0;
    const char *p = buf;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            x->d[x->n++] = *p;
    x->e = atoi(p + 1);
    while (x->n > 1 && x->d[x->n - 1] == '0')
        x->n--;
    x->d[x->n] = 0;
}

typedef struct {
    double a, lo, hi;
    int closed;
    ir_dtype dt;
    decimal ex;       /* exact digits of a */
} fpval;

static void fpval_init(fpval *v, double a, ir_dtype dt)
{
    v->a = a, v->dt = dt;
    v->lo = v->hi = 0;
    v->closed = 0;
    if (dt != DT_F64)
        round_interval(a, fmt_of(dt), &v->lo, &v->hi, &v->closed);
    exact_digits(a, &v->ex);
}

static double dec_value(const char *d, int n, int e)
{
    char buf[840];
    snprintf(buf, sizeof buf, "%c.%.*se%d", d[0], n - 1, d + 1, e);
    return strtod(buf, NULL);
}

static int in_interval(const fpval *v, const char *d, int n, int e)
{
    double c = dec_value(d, n, e);
    if (v->dt == DT_F64)
        return c == v->a;
    return v->closed ? c >= v->lo && c <= v->hi : c > v->lo && c < v->hi;
}

/* digits + 1 in the last place; returns 1 on a carry out (then d = "1000..") */
static int dec_increment(char *d, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        if (d[i] != '9') {
            d[i]++;
            return 0;
        }
        d[i] = '0';
    }
    d[0] = '1';
    return 1;
}

/* Exact remainder after k digits against half a unit: -1, 0 (tie), 1; *zero if it is 0. */
static int rest_vs_half(const decimal *x, int k, int *zero)
{
    *zero = k >= x->n;
    if (*zero)
        return -1;
    if (x->d[k] != '5')
        return x->d[k] > '5' ? 1 : -1;
    return k + 1 < x->n ? 1 : 0;  /* no trailing zeros are kept: more digits mean above */
}

/* Dragon4's last digit at k significant digits: round towards the neighbour that still
 * identifies the value when only one does, else to the closest (ties to even). */
static void round_at(fpval *v, int k, decimal *out)
{
    int zero, cmp = rest_vs_half(&v->ex, k, &zero);
    out->e = v->ex.e;
    for (int i = 0; i < k; i++)
        out->d[i] = i < v->ex.n ? v->ex.d[i] : '0';
    out->n = k;
    if (!zero) {
        char up[800];
        memcpy(up, out->d, (size_t)k);
        int carry = dec_increment(up, k);
        int in_lo = in_interval(v, out->d, k, out->e);
        int in_hi = in_interval(v, up, k, out->e + carry);
        int round_up = in_hi && !in_lo ? 1 : in_lo && !in_hi ? 0
                     : cmp > 0 || (cmp == 0 && (out->d[k - 1] - '0') % 2 == 1);
        if (round_up) {
            memcpy(out->d, up, (size_t)k);
            out->e += carry;
        }
    }
    while (out->n > 1 && out->d[out->n - 1] == '0')
        out->n--;
    out->d[out->n] = 0;
}

/* Number of significant digits after which Dragon4's "unique" mode stops: the first k at
 * which the truncation or the truncation + 1 lies strictly inside the rounding interval. */
static int unique_len(fpval *v)
{
    char d[800], up[800];
    for (int k = 1; k < 780; k++) {
        if (k >= v->ex.n)
            return k;
        for (int i = 0; i < k; i++)
            d[i] = i < v->ex.n ? v->ex.d[i] : '0';
        memcpy(up, d, (size_t)k);
        int carry = dec_increment(up, k);
        if (in_interval(v, d, k, v->ex.e) || in_interval(v, up, k, v->ex.e + carry))
            return k;
    }
    return 780;
}

/* dragon4_positional(x, precision=prec, unique=True, fractional=True, trim='.'): integer and
 * fraction digits of x (sign included in the integer part). */
static void positional_parts(double x, ir_dtype dt, int prec, char *ip, char *fp)
{
    double a = fabs(x);
    char *o = ip;
    if (signbit(x))
        *o++ = '-';
    if (a == 0) {
        strcpy(o, "0");
        fp[0] = 0;
        return;
    }
    fpval v;
    fpval_init(&v, a, dt);
    int k = unique_len(&v), cut = v.ex.e + 1 + prec;
    decimal d;
    if (cut < 1) {  /* below half a unit of the last place: rounds to 0 (never shown by
                     * repr, which switches to scientific below 1e-4) */
        strcpy(o, "0");
        fp[0] = 0;
        return;
    }
    round_at(&v, k < cut ? k : cut, &d);
    if (d.e >= 0) {
        for (int i = 0; i <= d.e; i++)
            *o++ = i < d.n ? d.d[i] : '0';
        *o = 0;
        int j = 0;
        for (int i = d.e + 1; i < d.n; i++)
            fp[j++] = d.d[i];
        fp[j] = 0;
    } else {
        strcpy(o, "0");
        int j = 0;
        for (int i = 0; i < -d.e - 1; i++)
            fp[j++] = '0';
        for (int i = 0; i < d.n; i++)
            fp[j++] = d.d[i];
        fp[j] = 0;
    }
}

/* dragon4_scientific(x, precision=prec, min_digits=mind, unique=True): mantissa digits and
 * exponent, trailing zeros trimmed (the caller pads to min_digits). */
static void scientific_parts(double x, ir_dtype dt, int prec, int mind, char *ip, char *fp,
                             int *exp10)
{
    double a = fabs(x);
    char *o = ip;
    if (signbit(x))
        *o++ = '-';
    if (a == 0) {
        strcpy(o, "0");
        fp[0] = 0;
        *exp10 = 0;
        return;
    }
    fpval v;
    fpval_init(&v, a, dt);
    int k = unique_len(&v);
    if (k < mind + 1)
        k = mind + 1;
    if (k > prec + 1)
        k = prec + 1;
    decimal d;
    round_at(&v, k, &d);
    o[0] = d.d[0];
    o[1] = 0;
    memcpy(fp, d.d + 1, (size_t)d.n);  /* includes the NUL */
    *exp10 = d.e;
}

/* ---- element formatters ---- */
typedef struct {
    const host_tensor *t;
    int kind;              /* 0 bool, 1 int, 2 float */
    int scalar;
    int width;             /* ints */
    int exp_format, pad_left, pad_right, precision, exp_size;
} formatter;

static double round_to(double v, ir_dtype dt)
{
    switch (dt) {
    case DT_F16: return f16_to_f32(f32_to_f16((float)v));
    case DT_BF16: return bf16_to_f32(f32_to_bf16((float)v));
    case DT_F32: return (float)v;
    default: return v;
    }
}

static int ndigits_ll(long long v)
{
    char buf[32];
    return snprintf(buf, sizeof buf, "%lld", v);
}

/* FloatingFormat.fillFormat / IntegerFormat.__init__ over the displayed elements. */
static void fill_format(formatter *f, const int64_t *idx, int64_t n)
{
    const host_tensor *t = f->t;
    if (f->kind == 1) {
        long long mx = 0, mn = 0;
        for (int64_t i = 0; i < n; i++) {
            long long v = t->dtype == DT_I32 ? ((const int32_t *)t->data)[idx[i]]
                                             : (long long)((const int64_t *)t->data)[idx[i]];
            if (i == 0 || v > mx)
                mx = v;
            if (i == 0 || v < mn)
                mn = v;
        }
        int a = ndigits_ll(mx), b = ndigits_ll(mn);
        f->width = n ? (a > b ? a : b) : 0;
        return;
    }
    if (f->kind != 2)
        return;
    ir_dtype dt = t->dtype;
    double mx = 0, mn = 0;
    int64_t nfinite = 0, nnz = 0;
    int neginf = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = host_tensor_get(t, idx[i]);
        if (!isfinite(v)) {
            neginf |= isinf(v) && v < 0;
            continue;
        }
        nfinite++;
        double a = fabs(v);
        if (a != 0) {
            if (nnz == 0 || a > mx)
                mx = a;
            if (nnz == 0 || a < mn)
                mn = a;
            nnz++;
        }
    }
    /* comparisons in the array's precision: NumPy 2 casts the Python floats to the dtype */
    /* numpy >= 2.3: the cutoff is 10**min(8, finfo(dtype).precision) */
    double cutoff = dt == DT_F16 ? 1e3 : dt == DT_BF16 ? 1e2 : dt == DT_F32 ? 1e6 : 1e8;
    f->exp_format = nnz > 0 && (mx >= round_to(cutoff, dt) || mn < round_to(0.0001, dt) ||
                                round_to(mx / mn, dt) > 1000.0);
    f->pad_left = f->pad_right = 0;
    f->precision = PRECISION;
    f->exp_size = -1;
    char ip[400], fp[400];
    if (nfinite > 0 && f->exp_format) {
        int maxfrac = 0, maxint = 0, maxexp = 0;
        for (int64_t i = 0; i < n; i++) {
            double v = host_tensor_get(t, idx[i]);
            if (!isfinite(v))
                continue;
            int e;
            scientific_parts(v, dt, PRECISION, 0, ip, fp, &e);
            int el = ndigits_ll(e < 0 ? -(long long)e : e);
            if (el < 2)
                el = 2;
            int l;
            if ((l = (int)strlen(fp)) > maxfrac) maxfrac = l;
            if ((l = (int)strlen(ip)) > maxint) maxint = l;
            if (el > maxexp) maxexp = el;
        }
        f->exp_size = maxexp;
        f->precision = maxfrac;
        f->pad_left = maxint;
        f->pad_right = f->exp_size + 2 + f->precision;
    } else if (nfinite > 0) {
        for (int64_t i = 0; i < n; i++) {
            double v = host_tensor_get(t, idx[i]);
            if (!isfinite(v))
                continue;
            positional_parts(v, dt, PRECISION, ip, fp);
            int l;
            if ((l = (int)strlen(ip)) > f->pad_left) f->pad_left = l;
            if ((l = (int)strlen(fp)) > f->pad_right) f->pad_right = l;
        }
    }
    if (nfinite != n) {
        int offset = f->pad_right + 1;
        if (3 - offset > f->pad_left)
            f->pad_left = 3 - offset;
        if (3 + neginf - offset > f->pad_left)
            f->pad_left = 3 + neginf - offset;
    }
}

static void format_elem(const formatter *f, int64_t i, strbuf *b)
{
    const host_tensor *t = f->t;
    char buf[512];
    if (f->kind == 0) {
        int v = ((const uint8_t *)t->data)[i] != 0;
        sb_puts(b, v ? (f->scalar ? "True" : " True") : "False");
        return;
    }
    if (f->kind == 1) {
        long long v = t->dtype == DT_I32 ? ((const int32_t *)t->data)[i]
                                         : (long long)((const int64_t *)t->data)[i];
        snprintf(buf, sizeof buf, "%*lld", f->width, v);
        sb_puts(b, buf);
        return;
    }
    double v = host_tensor_get(t, i);
    if (!isfinite(v)) {
        const char *r = isnan(v) ? "nan" : v < 0 ? "-inf" : "inf";
        sb_spaces(b, f->pad_left + f->pad_right + 1 - (int)strlen(r));
        sb_puts(b, r);
        return;
    }
    char ip[400], fp[400];
    if (f->exp_format) {
        int e;
        scientific_parts(v, t->dtype, f->precision, f->precision, ip, fp, &e);
        sb_spaces(b, f->pad_left - (int)strlen(ip));
        sb_puts(b, ip);
        sb_puts(b, ".");
        sb_puts(b, fp);
        for (int k = (int)strlen(fp); k < f->precision; k++)
            sb_puts(b, "0");
        snprintf(buf, sizeof buf, "e%c%0*d", e < 0 ? '-' : '+', f->exp_size, e < 0 ? -e : e);
        sb_puts(b, buf);
    } else {
        positional_parts(v, t->dtype, PRECISION, ip, fp);
        sb_spaces(b, f->pad_left - (int)strlen(ip));
        sb_puts(b, ip);
        sb_puts(b, ".");
        sb_puts(b, fp);
        sb_spaces(b, f->pad_right - (int)strlen(fp));
    }
}

/* ---- layout (_formatArray) ---- */
typedef struct {
    const host_tensor *t;
    const formatter *f;
    int summarize;
    int64_t stride[TDSL_MAX_RANK];
} layout;

/* _extendLine: wrap before `word` if the line would pass `width`, unless that cannot help. */
static void extend_line(strbuf *s, strbuf *line, const char *word, size_t wlen, int width, int hang)
{
    int wrap = (int)(line->len + wlen) > width && (int)line->len > hang;
    if (wrap) {
        size_t n = line->len;
        while (n > 0 && line->s[n - 1] == ' ')
            n--;
        sb_putn(s, line->s, n);
        sb_puts(s, "\n");
        line->len = 0;
        sb_spaces(line, hang);
    }
    sb_putn(line, word, wlen);
}

static void recurse(const layout *L, int depth, int64_t off, int hang, int width, strbuf *out)
{
    const host_tensor *t = L->t;
    if (depth == t->rank) {
        format_elem(L->f, off, out);
        return;
    }
    int64_t len = t->shape[depth];
    int show_summary = L->summarize && 2 * EDGEITEMS < len;
    int64_t leading = show_summary ? EDGEITEMS : 0, trailing = show_summary ? EDGEITEMS : len;
    int axes_left = t->rank - depth;
    strbuf s = {0};
    sb_spaces(&s, 0);
    if (axes_left == 1) {
        int elem_width = width - 1;  /* max(len(","), len("]")) */
        strbuf line = {0}, word = {0};
        sb_spaces(&line, hang);
        for (int64_t i = 0; i < leading + trailing; i++) {
            int64_t k = i < leading ? i : len - (leading + trailing - i);
            if (show_summary && i == leading) {
                extend_line(&s, &line, "...", 3, elem_width, hang);
                sb_puts(&line, ", ");
            }
            word.len = 0;
            sb_spaces(&word, 0);
            format_elem(L->f, off + k * L->stride[depth], &word);
            extend_line(&s, &line, word.s, word.len, elem_width, hang);
            if (i + 1 < leading + trailing)
                sb_puts(&line, ", ");
        }
        sb_putn(&s, line.s, line.len);
        s.oom |= line.oom | word.oom;
        free(line.s);
        free(word.s);
    } else {
        char sep[TDSL_MAX_RANK + 2] = ",";
        for (int k = 1; k < axes_left; k++)
            sep[k] = '\n';
        sep[axes_left] = 0;
        for (int64_t i = 0; i < leading + trailing; i++) {
            int64_t k = i < leading ? i : len - (leading + trailing - i);
            if (show_summary && i == leading) {
                sb_spaces(&s, hang);
                sb_puts(&s, "...");
                sb_puts(&s, sep);
            }
            sb_spaces(&s, hang);
            recurse(L, depth + 1, off + k * L->stride[depth], hang + 1, width - 1, &s);
            if (i + 1 < leading + trailing)
                sb_puts(&s, sep);
        }
    }
    sb_puts(out, "[");
    if (s.len > (size_t)hang)
        sb_putn(out, s.s + hang, s.len - (size_t)hang);
    sb_puts(out, "]");
    out->oom |= s.oom;
    free(s.s);
}

/* Flat indices of the elements shown (_leading_trailing). */
static void collect(const host_tensor *t, int summarize, int depth, int64_t off, const int64_t *stride,
                    int64_t *idx, int64_t *n)
{
    if (depth == t->rank) {
        idx[(*n)++] = off;
        return;
    }
    int64_t len = t->shape[depth];
    int cut = summarize && 2 * EDGEITEMS < len;
    for (int64_t i = 0; i < len; i++) {
        if (cut && i == EDGEITEMS)
            i = len - EDGEITEMS;
        collect(t, summarize, depth + 1, off + i * stride[depth], stride, idx, n);
    }
}

static const char *numpy_dtype(ir_dtype dt)
{
    switch (dt) {
    case DT_BOOL: return "bool";
    case DT_I32: return "int32";
    case DT_I64: return "int64";
    case DT_F16: return "float16";
    case DT_BF16: return "bfloat16";
    case DT_F32: return "float32";
    default: return "float64";
    }
}

static void shape_repr(const host_tensor *t, strbuf *b)
{
    char buf[32];
    sb_puts(b, "(");
    for (int i = 0; i < t->rank; i++) {
        snprintf(buf, sizeof buf, i ? ", %lld" : "%lld", (long long)t->shape[i]);
        sb_puts(b, buf);
    }
    sb_puts(b, t->rank == 1 ? ",)" : ")");
}

char *format_array(const host_tensor *t)
{
    strbuf out = {0};
    if (!t || (unsigned)t->dtype >= DT_COUNT || t->rank < 0 || t->rank > TDSL_MAX_RANK) {
        sb_puts(&out, "array(<invalid tensor>)");
        return out.oom ? (free(out.s), NULL) : out.s;
    }
    int64_t numel = host_tensor_numel(t);
    int summarize = numel > THRESHOLD;
    sb_puts(&out, "array(");
    if (numel == 0) {
        sb_puts(&out, "[]");
    } else {
        layout L = {.t = t, .summarize = summarize};
        int64_t s = 1;
        for (int i = t->rank - 1; i >= 0; i--) {
            L.stride[i] = s;
            s *= t->shape[i];
        }
        int64_t shown = 1;
        for (int i = 0; i < t->rank; i++)
            shown *= summarize && t->shape[i] > 2 * EDGEITEMS ? 2 * EDGEITEMS : t->shape[i];
        int64_t *idx = malloc((size_t)shown * sizeof *idx), n = 0;
        if (!idx) {
            free(out.s);
            return NULL;
        }
        collect(t, summarize, 0, 0, L.stride, idx, &n);
        formatter f = {.t = t, .scalar = t->rank == 0};
        f.kind = t->dtype == DT_BOOL ? 0 : ir_dtype_is_int(t->dtype) ? 1 : 2;
        fill_format(&f, idx, n);
        free(idx);
        L.f = &f;
        /* next_line_prefix is " " + len("array(") spaces; the suffix ")" shortens the line */
        recurse(&L, 0, 0, 7, LINEWIDTH - 1, &out);
    }
    /* extras that cannot be inferred from the digits */
    strbuf extra = {0};
    int show_shape = (numel == 0 && !(t->rank == 1)) || summarize;
    int implied = t->dtype == DT_F64 || t->dtype == DT_I64 || t->dtype == DT_BOOL;
    if (show_shape) {
        sb_puts(&extra, "shape=");
        shape_repr(t, &extra);
    }
    if (!implied || numel == 0) {
        if (extra.len)
            sb_puts(&extra, ", ");
        sb_puts(&extra, "dtype=");
        sb_puts(&extra, numpy_dtype(t->dtype));
    }
    if (extra.len) {
        sb_puts(&out, ",");
        const char *nl = out.s ? strrchr(out.s, '\n') : NULL;
        size_t last = nl ? out.len - (size_t)(nl - out.s + 1) : out.len;
        if (last + extra.len + 1 + 1 > LINEWIDTH) {  /* + ")" */
            sb_puts(&out, "\n");
            sb_spaces(&out, 6);
        } else {
            sb_puts(&out, " ");
        }
        sb_putn(&out, extra.s, extra.len);
        out.oom |= extra.oom;
    }
    free(extra.s);
    sb_puts(&out, ")");
    if (out.oom) {
        free(out.s);
        return NULL;
    }
    return out.s;
}

void print_array(FILE *out, const host_tensor *t)
{
    char *s = format_array(t);
    if (!s) {
        fputs("array(<out of memory>)\n", out);
        return;
    }
    fputs(s, out);
    fputc('\n', out);
    free(s);
}
