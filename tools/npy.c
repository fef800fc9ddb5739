/* .npy reader and writer (format: numpy/lib/format.py, NEP 1).
 * Layout: "\x93NUMPY", major, minor, header length (u16 LE for 1.0, u32 LE for 2.0/3.0),
 * a Python dict literal {'descr': ..., 'fortran_order': ..., 'shape': (...)} padded with
 * spaces and '\n' so the data starts 64-byte aligned, then the raw C-order data. */
#include "npy.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NPY_MAX_HEADER (1u << 20)  /* real headers are < 200 bytes; bounds the parse of junk */

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

typedef struct {
    ir_dtype dtype;
    int rank;
    int64_t shape[TDSL_MAX_RANK];
    uint64_t data_bytes;
} npy_info;

/* ---- header dict: the subset of Python literal syntax np.save produces ---- */
typedef struct {
    const char *s;
    size_t n, i;
} cursor;

static void skip_ws(cursor *c)
{
    while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t' || c->s[c->i] == '\n' ||
                           c->s[c->i] == '\r'))
        c->i++;
}

static int peek(cursor *c) { return c->i < c->n ? (unsigned char)c->s[c->i] : -1; }

static int accept(cursor *c, char ch)
{
    skip_ws(c);
    if (peek(c) == ch) {
        c->i++;
        return 1;
    }
    return 0;
}

/* string := '...' | "..." (no escapes in any header numpy writes; a backslash is rejected) */
static int parse_str(cursor *c, char *buf, size_t cap)
{
    skip_ws(c);
    int q = peek(c);
    if (q != '\'' && q != '"')
        return 0;
    c->i++;
    size_t k = 0;
    while (c->i < c->n && c->s[c->i] != q) {
        if (c->s[c->i] == '\\' || k + 1 >= cap)
            return 0;
        buf[k++] = c->s[c->i++];
    }
    if (c->i >= c->n)
        return 0;
    c->i++;
    buf[k] = 0;
    return 1;
}

static int parse_word(cursor *c, const char *w)
{
    skip_ws(c);
    size_t len = strlen(w);
    if (c->n - c->i >= len && memcmp(c->s + c->i, w, len) == 0) {
        char next = c->i + len < c->n ? c->s[c->i + len] : ' ';
        if (!(next == '_' || (next >= 'a' && next <= 'z') || (next >= 'A' && next <= 'Z') ||
              (next >= '0' && next <= '9'))) {
            c->i += len;
            return 1;
        }
    }
    return 0;
}

/* tuple := '(' [int (',' int)* [',']] ')', a 1-tuple needs its comma as in Python.
 * Returns 1 ok, 0 syntax error, -1 rank > 8, -2 dimension too large. */
static int parse_shape(cursor *c, npy_info *info)
{
    if (!accept(c, '('))
        return 0;
    info->rank = 0;
    int commas = 0;
    for (;;) {
        skip_ws(c);
        if (peek(c) == ')') {
            c->i++;
            break;
        }
        if (peek(c) < '0' || peek(c) > '9')
            return 0;
        int64_t v = 0;
        int big = 0;
        while (peek(c) >= '0' && peek(c) <= '9') {
            int d = c->s[c->i++] - '0';
            if (v > (INT64_MAX - d) / 10)
                big = 1;
            else
                v = v * 10 + d;
        }
        if (peek(c) == 'L' || peek(c) == 'l')  /* Python 2 longs */
            c->i++;
        if (big)
            return -2;
        if (info->rank == TDSL_MAX_RANK)
            return -1;
        info->shape[info->rank++] = v;
        if (accept(c, ',')) {
            commas++;
            continue;
        }
        if (!accept(c, ')'))
            return 0;
        break;
    }
    if (info->rank == 1 && commas == 0)
        return 0;  /* "(3)" is an int in Python, not a tuple */
    return 1;
}

static int parse_descr(const char *name, const char *d, npy_info *info, char *err, size_t errlen)
{
    static const struct { const char *code; ir_dtype dt; } codes[] = {
        {"f2", DT_F16}, {"f4", DT_F32}, {"f8", DT_F64}, {"i4", DT_I32}, {"i8", DT_I64}, {"b1", DT_BOOL},
    };
    char order = d[0];
    const char *code = (order == '<' || order == '>' || order == '|' || order == '=') ? d + 1 : d;
    for (size_t k = 0; k < sizeof codes / sizeof codes[0]; k++) {
        if (strcmp(code, codes[k].code) != 0)
            continue;
        int onebyte = codes[k].dt == DT_BOOL;
        if (order == '>') {
            seterr(err, errlen, "%s: big-endian arrays ('%s') are not supported; convert with "
                   "arr.astype('<%s')", name, d, code);
            return -1;
        }
        if (order == '<' || (order == '|' && onebyte)) {
            info->dtype = codes[k].dt;
            return 0;
        }
        break;
    }
    seterr(err, errlen, "%s: unsupported dtype '%s' (supported: <f2, <f4, <f8, <i4, <i8, |b1)",
           name, d);
    return -1;
}

/* dict := '{' [str ':' value (',' str ':' value)* [',']] '}' with exactly the keys descr,
 * fortran_order and shape, in any order. */
static int parse_dict(const char *name, const char *h, size_t n, npy_info *info, char *err,
                      size_t errlen)
{
    cursor c = {h, n, 0};
    char key[32], descr[64];
    int have_descr = 0, have_fortran = 0, have_shape = 0, fortran = 0;
    if (!accept(&c, '{'))
        goto syntax;
    for (;;) {
        if (accept(&c, '}'))
            break;
        if (!parse_str(&c, key, sizeof key) || !accept(&c, ':'))
            goto syntax;
        if (strcmp(key, "descr") == 0 && !have_descr) {
            skip_ws(&c);
            if (peek(&c) == '[') {
                seterr(err, errlen, "%s: structured dtypes are not supported", name);
                return -1;
            }
            if (!parse_str(&c, descr, sizeof descr)) {
                seterr(err, errlen, "%s: invalid .npy header: 'descr' is not a dtype string", name);
                return -1;
            }
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !have_fortran) {
            if (parse_word(&c, "True"))
                fortran = 1;
            else if (!parse_word(&c, "False")) {
                seterr(err, errlen, "%s: invalid .npy header: 'fortran_order' is not True or False",
                       name);
                return -1;
            }
            have_fortran = 1;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            int r = parse_shape(&c, info);
            if (r == -1) {
                seterr(err, errlen, "%s: arrays of rank above %d are not supported", name,
                       TDSL_MAX_RANK);
                return -1;
            }
            if (r == -2) {
                seterr(err, errlen, "%s: invalid .npy header: a dimension of 'shape' overflows", name);
                return -1;
            }
            if (r == 0) {
                seterr(err, errlen, "%s: invalid .npy header: 'shape' is not a tuple of "
                       "non-negative integers", name);
                return -1;
            }
            have_shape = 1;
        } else {
            seterr(err, errlen, "%s: invalid .npy header: unexpected or repeated key '%s'", name, key);
            return -1;
        }
        if (accept(&c, ','))
            continue;
        if (!accept(&c, '}'))
            goto syntax;
        break;
    }
    skip_ws(&c);
    if (c.i != c.n)
        goto syntax;
    if (!have_descr || !have_fortran || !have_shape) {
        seterr(err, errlen, "%s: invalid .npy header: missing key '%s'", name,
               !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape");
        return -1;
    }
    if (parse_descr(name, descr, info, err, errlen))
        return -1;
    if (fortran) {
        seterr(err, errlen, "%s: Fortran-order arrays are not supported; save with "
               "np.ascontiguousarray", name);
        return -1;
    }
    /* numel * itemsize must fit in 63 bits (and in size_t), multiplied left to right as
     * host_tensor_numel does, so no later product overflows either */
    uint64_t bytes = ir_dtype_size(info->dtype);
    for (int k = 0; k < info->rank; k++) {
        uint64_t d = (uint64_t)info->shape[k];
        if (d != 0 && bytes > (uint64_t)INT64_MAX / d) {
            seterr(err, errlen, "%s: shape is too large: the data would exceed 2^63 bytes", name);
            return -1;
        }
        bytes *= d;
    }
    if (bytes > SIZE_MAX) {
        seterr(err, errlen, "%s: shape is too large for this machine's address space", name);
        return -1;
    }
    info->data_bytes = bytes;
    return 0;
syntax:
    seterr(err, errlen, "%s: invalid .npy header: malformed dictionary near byte %zu", name, c.i);
    return -1;
}

/* Magic and version from the first bytes; *prefix = 10 or 12, *hlen = header length. */
static int parse_prefix(const char *name, const uint8_t *b, size_t avail, size_t *prefix,
                        size_t *hlen, char *err, size_t errlen)
{
    if (avail < 6 || memcmp(b, "\x93NUMPY", 6) != 0) {
        seterr(err, errlen, "%s: not a .npy file (bad magic)", name);
        return -1;
    }
    if (avail < 8) {
        seterr(err, errlen, "%s: file is truncated inside the .npy header", name);
        return -1;
    }
    int major = b[6], minor = b[7];
    if ((major != 1 && major != 2 && major != 3) || minor != 0) {
        seterr(err, errlen, "%s: unsupported .npy format version %d.%d (supported: 1.0, 2.0, 3.0)",
               name, major, minor);
        return -1;
    }
    *prefix = major == 1 ? 10 : 12;
    if (avail < *prefix) {
        seterr(err, errlen, "%s: file is truncated inside the .npy header", name);
        return -1;
    }
    *hlen = major == 1 ? (size_t)b[8] | (size_t)b[9] << 8
                       : (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
    if (*hlen > NPY_MAX_HEADER) {
        seterr(err, errlen, "%s: invalid .npy header: header length %zu is implausibly large",
               name, *hlen);
        return -1;
    }
    return 0;
}

static int check_header_chars(const char *name, const uint8_t *h, size_t n, char *err, size_t errlen)
{
    for (size_t k = 0; k < n; k++)
        if (h[k] == 0) {
            seterr(err, errlen, "%s: invalid .npy header: NUL byte in header", name);
            return -1;
        }
    return 0;
}

static int check_size(const char *name, uint64_t expect, uint64_t found, char *err, size_t errlen)
{
    if (found < expect) {
        seterr(err, errlen, "%s: file is truncated: expected %llu bytes of data, found %llu", name,
               (unsigned long long)expect, (unsigned long long)found);
        return -1;
    }
    if (found > expect) {
        seterr(err, errlen, "%s: file has %llu bytes of data, expected %llu (trailing bytes)", name,
               (unsigned long long)found, (unsigned long long)expect);
        return -1;
    }
    return 0;
}

static int alloc_out(const char *name, const npy_info *info, host_tensor *out, char *err,
                     size_t errlen)
{
    if (!host_tensor_alloc(out, info->dtype, info->rank, info->shape)) {
        out->data = NULL;
        seterr(err, errlen, "%s: out of memory allocating %llu bytes", name,
               (unsigned long long)info->data_bytes);
        return -1;
    }
    return 0;
}

static void normalize_bool(host_tensor *t, uint64_t n)
{
    if (t->dtype == DT_BOOL)
        for (uint64_t k = 0; k < n; k++)
            ((uint8_t *)t->data)[k] = ((uint8_t *)t->data)[k] != 0;
}

int npy_read_mem(const uint8_t *buf, size_t len, host_tensor *out, char *err, size_t errlen)
{
    const char *name = "<memory>";
    size_t prefix, hlen;
    npy_info info;
    memset(out, 0, sizeof *out);
    if (parse_prefix(name, buf, len, &prefix, &hlen, err, errlen))
        return -1;
    if (len - prefix < hlen) {
        seterr(err, errlen, "%s: file is truncated inside the .npy header", name);
        return -1;
    }
    if (check_header_chars(name, buf + prefix, hlen, err, errlen) ||
        parse_dict(name, (const char *)buf + prefix, hlen, &info, err, errlen))
        return -1;
    if (check_size(name, info.data_bytes, len - prefix - hlen, err, errlen) ||
        alloc_out(name, &info, out, err, errlen))
        return -1;
    if (info.data_bytes)
        memcpy(out->data, buf + prefix + hlen, (size_t)info.data_bytes);
    normalize_bool(out, info.data_bytes);
    return 0;
}

int npy_read(const char *path, host_tensor *out, char *err, size_t errlen)
{
    uint8_t head[12];
    char *hdr = NULL;
    size_t prefix, hlen, got;
    npy_info info;
    struct stat st;
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) {
        seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        seterr(err, errlen, "%s: not a regular file", path);
        goto fail;
    }
    got = fread(head, 1, sizeof head, f);
    if (parse_prefix(path, head, got, &prefix, &hlen, err, errlen))
        goto fail;
    if ((uint64_t)st.st_size < prefix + hlen) {
        seterr(err, errlen, "%s: file is truncated inside the .npy header", path);
        goto fail;
    }
    hdr = malloc(hlen + 1);
    if (!hdr || fseek(f, (long)prefix, SEEK_SET) != 0 || fread(hdr, 1, hlen, f) != hlen) {
        seterr(err, errlen, "%s: cannot read the .npy header", path);
        goto fail;
    }
    if (check_header_chars(path, (const uint8_t *)hdr, hlen, err, errlen) ||
        parse_dict(path, hdr, hlen, &info, err, errlen))
        goto fail;
    if (check_size(path, info.data_bytes, (uint64_t)st.st_size - prefix - hlen, err, errlen) ||
        alloc_out(path, &info, out, err, errlen))
        goto fail;
    if (info.data_bytes && fread(out->data, 1, (size_t)info.data_bytes, f) != info.data_bytes) {
        seterr(err, errlen, "%s: read error: %s", path, ferror(f) ? strerror(errno) : "short read");
        host_tensor_free(out);
        goto fail;
    }
    normalize_bool(out, info.data_bytes);
    free(hdr);
    fclose(f);
    return 0;
fail:
    free(hdr);
    fclose(f);
    return -1;
}

/* ---- writer ---- */

static const char *descr_of(ir_dtype dt)
{
    switch (dt) {
    case DT_BOOL: return "|b1";
    case DT_I32: return "<i4";
    case DT_I64: return "<i8";
    case DT_F16: return "<f2";
    case DT_BF16: return "<f4";  /* no NumPy bf16: stored widened to f32 */
    case DT_F32: return "<f4";
    case DT_F64: return "<f8";
    default: return NULL;
    }
}

/* Builds the complete prefix+header exactly as numpy.lib.format._wrap_header does,
 * including the spare spaces np.save leaves for growing axis 0. Returns its length. */
static size_t build_header(const host_tensor *t, char *out, size_t cap)
{
    char dict[512];
    int k = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                     descr_of(t->dtype));
    int first_len = 0;
    for (int i = 0; i < t->rank; i++) {
        int start = k;
        k += snprintf(dict + k, sizeof dict - (size_t)k, i ? ", %lld" : "%lld",
                      (long long)t->shape[i]);
        if (i == 0)
            first_len = k - start;
    }
    k += snprintf(dict + k, sizeof dict - (size_t)k, "%s), }", t->rank == 1 ? "," : "");
    if (t->rank > 0)  /* GROWTH_AXIS_MAX_DIGITS = 21 */
        for (int i = first_len; i < 21; i++)
            dict[k++] = ' ';
    size_t hlen = (size_t)k + 1;  /* + '\n' */
    int version = 1;
    size_t pre = 10;
    size_t pad = 64 - (pre + hlen) % 64;
    if (hlen + pad > 65535) {
        version = 2, pre = 12;
        pad = 64 - (pre + hlen) % 64;
    }
    size_t total = pre + hlen + pad;
    if (total > cap)
        return 0;
    size_t body = hlen + pad;
    memcpy(out, "\x93NUMPY", 6);
    out[6] = (char)version, out[7] = 0;
    out[8] = (char)(body & 0xff), out[9] = (char)(body >> 8 & 0xff);
    if (version == 2)
        out[10] = (char)(body >> 16 & 0xff), out[11] = (char)(body >> 24 & 0xff);
    memcpy(out + pre, dict, (size_t)k);
    memset(out + pre + k, ' ', pad);
    out[total - 1] = '\n';
    return total;
}

int npy_write(const char *path, const host_tensor *t, char *err, size_t errlen)
{
    char header[1024];
    if (!t || (unsigned)t->dtype >= DT_COUNT || t->rank < 0 || t->rank > TDSL_MAX_RANK) {
        seterr(err, errlen, "%s: invalid tensor", path);
        return -1;
    }
    for (int i = 0; i < t->rank; i++)
        if (t->shape[i] < 0) {
            seterr(err, errlen, "%s: invalid tensor: negative dimension", path);
            return -1;
        }
    int64_t n = host_tensor_numel(t);
    if (n > 0 && !t->data) {
        seterr(err, errlen, "%s: invalid tensor", path);
        return -1;
    }
    size_t hl = build_header(t, header, sizeof header);
    FILE *f = fopen(path, "wb");
    if (!f) {
        seterr(err, errlen, "%s: cannot create: %s", path, strerror(errno));
        return -1;
    }
    int ok = fwrite(header, 1, hl, f) == hl;
    if (t->dtype == DT_BF16) {
        const uint16_t *src = t->data;
        float chunk[1024];
        for (int64_t i = 0; ok && i < n; i += 1024) {
            size_t m = (size_t)(n - i < 1024 ? n - i : 1024);
            for (size_t j = 0; j < m; j++)
                chunk[j] = bf16_to_f32(src[i + (int64_t)j]);
            ok = fwrite(chunk, sizeof(float), m, f) == m;
        }
    } else if (n > 0) {
        size_t bytes = host_tensor_bytes(t);
        ok = ok && fwrite(t->data, 1, bytes, f) == bytes;
    }
    int saved = errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        saved = errno;
    }
    if (!ok) {
        seterr(err, errlen, "%s: write failed: %s", path, strerror(saved));
        remove(path);
        return -1;
    }
    return 0;
}
