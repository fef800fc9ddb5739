/* safetensors reader and atomic writer. The reader trusts nothing: every length, offset and
 * shape is checked against the buffer before a tensor is exposed. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "safetensors.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER 100000000u   /* the reference implementation's limit */

struct st_file {
    uint8_t *buf;          /* the whole file, owned */
    size_t len;
    int n;
    st_tensor *ts;         /* sorted by name */
    cJSON *meta;           /* "__metadata__" object or NULL */
};

static const char *const dtype_names[ST_DTYPE_COUNT] = {"BOOL", "I32", "I64", "F16", "BF16", "F32", "F64"};
static const size_t dtype_sizes[ST_DTYPE_COUNT] = {1, 4, 8, 2, 2, 4, 8};

const char *st_dtype_name(int dt) { return dt >= 0 && dt < ST_DTYPE_COUNT ? dtype_names[dt] : NULL; }
size_t st_dtype_size(int dt) { return dt >= 0 && dt < ST_DTYPE_COUNT ? dtype_sizes[dt] : 0; }

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int valid_utf8(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xe0) == 0xc0) k = 1, cp = c & 0x1f;
        else if ((c & 0xf0) == 0xe0) k = 2, cp = c & 0x0f;
        else if ((c & 0xf8) == 0xf0) k = 3, cp = c & 0x07;
        else return 0;
        if (n - i <= k)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* A JSON number that is an exact non-negative integer representable in a double. */
static int json_uint(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j))
        return 0;
    double v = j->valuedouble;
    if (!isfinite(v) || v < 0 || v > 9007199254740992.0 || v != floor(v))
        return 0;
    *out = (uint64_t)v;
    return 1;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int cmp_begin(const void *a, const void *b)
{
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    const uint8_t *px = x->data, *py = y->data;
    return px < py ? -1 : px > py ? 1 : 0;
}

static int parse_entry(const char *name, const cJSON *e, const uint8_t *data, uint64_t dlen,
                       st_tensor *t, char *err, size_t errlen)
{
    const char *key = e->string;
    if (strlen(key) > ST_MAX_NAME) {
        seterr(err, errlen, "%s: tensor name '%.40s...' is longer than %d bytes", name, key, ST_MAX_NAME);
        return -1;
    }
    if (!cJSON_IsObject(e)) {
        seterr(err, errlen, "%s: tensor '%s': entry is not a JSON object", name, key);
        return -1;
    }
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off)) {
        seterr(err, errlen, "%s: tensor '%s': needs \"dtype\" (string), \"shape\" and "
               "\"data_offsets\" (arrays)", name, key);
        return -1;
    }
    memset(t, 0, sizeof *t);
    strcpy(t->name, key);
    t->dtype = -1;
    for (int k = 0; k < ST_DTYPE_COUNT; k++)
        if (strcmp(dt->valuestring, dtype_names[k]) == 0)
            t->dtype = k;
    if (t->dtype < 0) {
        seterr(err, errlen, "%s: tensor '%s': unsupported dtype \"%.32s\" (supported: BOOL, I32, "
               "I64, F16, BF16, F32, F64)", name, key, dt->valuestring);
        return -1;
    }
    int rank = cJSON_GetArraySize(sh);
    if (rank > ST_MAX_RANK) {
        seterr(err, errlen, "%s: tensor '%s': rank %d exceeds the maximum of %d", name, key, rank,
               ST_MAX_RANK);
        return -1;
    }
    t->rank = rank;
    uint64_t bytes = dtype_sizes[t->dtype];
    int i = 0;
    for (const cJSON *d = sh->child; d; d = d->next, i++) {
        uint64_t v;
        if (!json_uint(d, &v)) {
            seterr(err, errlen, "%s: tensor '%s': shape entries must be integers >= 0", name, key);
            return -1;
        }
        t->shape[i] = (int64_t)v;
        if (v != 0 && bytes > (uint64_t)INT64_MAX / v) {
            seterr(err, errlen, "%s: tensor '%s': shape is too large", name, key);
            return -1;
        }
        bytes *= v;
    }
    uint64_t b, en;
    if (cJSON_GetArraySize(off) != 2 || !json_uint(off->child, &b) || !json_uint(off->child->next, &en)) {
        seterr(err, errlen, "%s: tensor '%s': data_offsets must be [begin, end] integers", name, key);
        return -1;
    }
    if (b > en || en > dlen) {
        seterr(err, errlen, "%s: tensor '%s': data_offsets [%llu, %llu] are outside the data "
               "section of %llu bytes", name, key, (unsigned long long)b, (unsigned long long)en,
               (unsigned long long)dlen);
        return -1;
    }
    if (en - b != bytes) {
        seterr(err, errlen, "%s: tensor '%s': data_offsets span %llu bytes but the shape and dtype "
               "need %llu", name, key, (unsigned long long)(en - b), (unsigned long long)bytes);
        return -1;
    }
    t->data = data + b;
    t->nbytes = (size_t)bytes;
    return 0;
}

/* Takes ownership of buf (freed on failure too). */
static st_file *st_parse(const char *name, uint8_t *buf, size_t len, char *err, size_t errlen)
{
    st_file *f = NULL;
    cJSON *root = NULL;
    st_tensor **byoff = NULL;
    if (len < 8) {
        seterr(err, errlen, "%s: too small to be a safetensors file (%zu bytes)", name, len);
        goto fail;
    }
    uint64_t n = 0;
    for (int k = 7; k >= 0; k--)
        n = n << 8 | buf[k];
    if (n > ST_MAX_HEADER) {
        seterr(err, errlen, "%s: header length %llu exceeds the 100 MB limit", name, (unsigned long long)n);
        goto fail;
    }
    if (n > len - 8) {
        seterr(err, errlen, "%s: header length %llu exceeds the file size (%zu bytes)", name,
               (unsigned long long)n, len);
        goto fail;
    }
    const char *hdr = (const char *)buf + 8;
    if (n < 2 || hdr[0] != '{') {
        seterr(err, errlen, "%s: header is not a JSON object", name);
        goto fail;
    }
    if (!valid_utf8((const uint8_t *)hdr, (size_t)n)) {
        seterr(err, errlen, "%s: header is not valid UTF-8", name);
        goto fail;
    }
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(hdr, (size_t)n, &end, 0);
    if (!root || !cJSON_IsObject(root)) {
        seterr(err, errlen, "%s: header is not a valid JSON object", name);
        goto fail;
    }
    for (const char *p = end; p < hdr + n; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            seterr(err, errlen, "%s: unexpected bytes after the JSON header", name);
            goto fail;
        }
    f = calloc(1, sizeof *f);
    if (!f)
        goto oom;
    int count = 0;
    for (cJSON *e = root->child; e; e = e->next)
        count += strcmp(e->string, "__metadata__") != 0;
    f->ts = calloc(count ? (size_t)count : 1, sizeof *f->ts);
    byoff = calloc(count ? (size_t)count : 1, sizeof *byoff);
    if (!f->ts || !byoff)
        goto oom;
    const uint8_t *data = buf + 8 + n;
    uint64_t dlen = len - 8 - n;
    for (cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (f->meta || !cJSON_IsObject(e)) {
                seterr(err, errlen, "%s: \"__metadata__\" must be one object of strings", name);
                goto fail;
            }
            for (cJSON *m = e->child; m; m = m->next)
                if (!cJSON_IsString(m)) {
                    seterr(err, errlen, "%s: \"__metadata__\" value for '%.64s' is not a string",
                           name, m->string);
                    goto fail;
                }
            f->meta = e;
            continue;
        }
        if (parse_entry(name, e, data, dlen, &f->ts[f->n], err, errlen))
            goto fail;
        f->n++;
    }
    qsort(f->ts, (size_t)f->n, sizeof *f->ts, cmp_name);
    for (int k = 1; k < f->n; k++)
        if (strcmp(f->ts[k - 1].name, f->ts[k].name) == 0) {
            seterr(err, errlen, "%s: tensor '%s' appears twice", name, f->ts[k].name);
            goto fail;
        }
    /* no two non-empty tensors may share bytes */
    int m = 0;
    for (int k = 0; k < f->n; k++)
        if (f->ts[k].nbytes)
            byoff[m++] = &f->ts[k];
    qsort(byoff, (size_t)m, sizeof *byoff, cmp_begin);
    for (int k = 1; k < m; k++) {
        const uint8_t *prev_end = (const uint8_t *)byoff[k - 1]->data + byoff[k - 1]->nbytes;
        if ((const uint8_t *)byoff[k]->data < prev_end) {
            seterr(err, errlen, "%s: tensors '%s' and '%s' overlap in the data section", name,
                   byoff[k - 1]->name, byoff[k]->name);
            goto fail;
        }
    }
    free(byoff);
    if (f->meta) {  /* keep only the metadata; the rest was copied out */
        cJSON_DetachItemViaPointer(root, f->meta);
    }
    cJSON_Delete(root);
    f->buf = buf;
    f->len = len;
    return f;
oom:
    seterr(err, errlen, "%s: out of memory", name);
fail:
    if (f) {
        free(f->ts);
        free(f);
    }
    free(byoff);
    cJSON_Delete(root);
    free(buf);
    return NULL;
}

st_file *st_open_mem(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) {
        seterr(err, errlen, "<memory>: out of memory");
        return NULL;
    }
    if (len)
        memcpy(copy, buf, len);
    return st_parse("<memory>", copy, len, err, errlen);
}

st_file *st_open(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        seterr(err, errlen, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        seterr(err, errlen, "%s: out of memory reading %zu bytes", path, len);
        close(fd);
        return NULL;
    }
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            seterr(err, errlen, "%s: read error: %s", path, r < 0 ? strerror(errno) : "unexpected end of file");
            free(buf);
            close(fd);
            return NULL;
        }
        got += (size_t)r;
    }
    close(fd);
    return st_parse(path, buf, len, err, errlen);
}

int st_count(const st_file *f) { return f ? f->n : 0; }

const st_tensor *st_get(const st_file *f, int i) { return f && i >= 0 && i < f->n ? &f->ts[i] : NULL; }

const st_tensor *st_find(const st_file *f, const char *name)
{
    if (!f || !name)
        return NULL;
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(name, f->ts[mid].name);
        if (c == 0)
            return &f->ts[mid];
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *st_metadata(const st_file *f, const char *key)
{
    if (!f || !f->meta || !key)
        return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(f->meta, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int st_metadata_lists(const st_file *f, const char *key, const char *name)
{
    const char *v = st_metadata(f, key);
    size_t n = strlen(name);
    for (const char *line = v; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len == n && memcmp(line, name, n) == 0)
            return 1;
        line = end ? end + 1 : NULL;
    }
    return 0;
}

void st_close(st_file *f)
{
    if (!f)
        return;
    cJSON_Delete(f->meta);
    free(f->ts);
    free(f->buf);
    free(f);
}

/* ---- writer ---- */

/* The reference writer orders tensors by dtype, largest alignment first, then by name, so
 * every tensor is naturally aligned once the header is padded to a multiple of 8. This is
 * its Dtype enum order (descending); we reproduce it to write byte-identical files. */
static int dtype_rank(int dt)
{
    static const int rank[ST_DTYPE_COUNT] = {[ST_BOOL] = 0, [ST_F16] = 1, [ST_BF16] = 2,
                                             [ST_I32] = 3, [ST_F32] = 4, [ST_F64] = 5, [ST_I64] = 6};
    return rank[dt];
}

static int cmp_save(const void *a, const void *b)
{
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    int rx = dtype_rank(x->dtype), ry = dtype_rank(y->dtype);
    if (rx != ry)
        return ry - rx;
    return strcmp(x->name, y->name);
}

static int cmp_name_ptr(const void *a, const void *b)
{
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
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

static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_put(b, tmp, (size_t)k);
}

/* JSON string with the escapes serde_json uses. */
static void sb_json_str(sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            sb_put(b, e, 2);
        } else if (c == '\n') sb_put(b, "\\n", 2);
        else if (c == '\t') sb_put(b, "\\t", 2);
        else if (c == '\r') sb_put(b, "\\r", 2);
        else if (c == '\b') sb_put(b, "\\b", 2);
        else if (c == '\f') sb_put(b, "\\f", 2);
        else if (c < 0x20) sb_printf(b, "\\u%04x", c);
        else sb_put(b, (const char *)&c, 1);
    }
    sb_put(b, "\"", 1);
}

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *q = p;
    while (n) {
        ssize_t w = write(fd, q, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        q += w, n -= (size_t)w;
    }
    return 0;
}

int st_save(const char *path, const st_tensor *ts, int n, char *err, size_t errlen)
{
    return st_save_meta(path, ts, n, NULL, NULL, 0, err, errlen);
}

int st_save_meta(const char *path, const st_tensor *ts, int n, const char *const *meta_keys,
                 const char *const *meta_values, int nmeta, char *err, size_t errlen)
{
    const st_tensor **ord = NULL;
    sbuf h = {0};
    char *tmp = NULL;
    int fd = -1, rc = -1;
    if (!path || n < 0 || (n > 0 && !ts)) {
        seterr(err, errlen, "%s: invalid arguments to st_save", path ? path : "(null)");
        return -1;
    }
    ord = malloc((n ? (size_t)n : 1) * sizeof *ord);
    if (!ord) {
        seterr(err, errlen, "%s: out of memory", path);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        const st_tensor *t = &ts[i];
        size_t nl = strnlen(t->name, sizeof t->name);
        if (nl == sizeof t->name) {
            seterr(err, errlen, "%s: tensor %d: name is not NUL-terminated within %d bytes", path, i,
                   ST_MAX_NAME);
            goto out;
        }
        if (strcmp(t->name, "__metadata__") == 0 || !valid_utf8((const uint8_t *)t->name, nl)) {
            seterr(err, errlen, "%s: tensor %d: invalid name '%s'", path, i, t->name);
            goto out;
        }
        if (t->dtype < 0 || t->dtype >= ST_DTYPE_COUNT || t->rank < 0 || t->rank > ST_MAX_RANK) {
            seterr(err, errlen, "%s: tensor '%s': invalid dtype or rank", path, t->name);
            goto out;
        }
        uint64_t bytes = dtype_sizes[t->dtype];
        for (int k = 0; k < t->rank; k++) {
            if (t->shape[k] < 0 || (t->shape[k] && bytes > (uint64_t)INT64_MAX / (uint64_t)t->shape[k])) {
                seterr(err, errlen, "%s: tensor '%s': invalid shape", path, t->name);
                goto out;
            }
            bytes *= (uint64_t)t->shape[k];
        }
        if (bytes != t->nbytes || (bytes && !t->data)) {
            seterr(err, errlen, "%s: tensor '%s': nbytes is %zu but the shape and dtype need %llu",
                   path, t->name, t->nbytes, (unsigned long long)bytes);
            goto out;
        }
        ord[i] = t;
    }
    {
        const st_tensor **byname = malloc((n ? (size_t)n : 1) * sizeof *byname);
        if (!byname) {
            seterr(err, errlen, "%s: out of memory", path);
            goto out;
        }
        memcpy(byname, ord, (size_t)n * sizeof *byname);
        qsort(byname, (size_t)n, sizeof *byname, cmp_name_ptr);
        for (int i = 1; i < n; i++)
            if (strcmp(byname[i - 1]->name, byname[i]->name) == 0) {
                seterr(err, errlen, "%s: tensor name '%s' is used twice", path, byname[i]->name);
                free(byname);
                goto out;
            }
        free(byname);
    }
    qsort(ord, (size_t)n, sizeof *ord, cmp_save);
    /* header: {"name":{"dtype":"F32","shape":[2,3],"data_offsets":[b,e]},...} + spaces to 8 */
    uint64_t off = 0;
    sb_put(&h, "{", 1);
    if (nmeta > 0) {   /* "__metadata__":{"key":"value",...} first, as the reference writer does */
        sb_json_str(&h, "__metadata__");
        sb_put(&h, ":{", 2);
        for (int i = 0; i < nmeta; i++) {
            if (i)
                sb_put(&h, ",", 1);
            sb_json_str(&h, meta_keys[i]);
            sb_put(&h, ":", 1);
            sb_json_str(&h, meta_values[i]);
        }
        sb_put(&h, "}", 1);
        if (n)
            sb_put(&h, ",", 1);
    }
    for (int i = 0; i < n; i++) {
        const st_tensor *t = ord[i];
        if (i)
            sb_put(&h, ",", 1);
        sb_json_str(&h, t->name);
        sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", dtype_names[t->dtype]);
        for (int k = 0; k < t->rank; k++)
            sb_printf(&h, k ? ",%lld" : "%lld", (long long)t->shape[k]);
        sb_printf(&h, "],\"data_offsets\":[%llu,", (unsigned long long)off);
        off += t->nbytes;
        sb_printf(&h, "%llu]}", (unsigned long long)off);
    }
    sb_put(&h, "}", 1);
    while (!h.oom && h.len % 8)
        sb_put(&h, " ", 1);
    size_t tl = strlen(path) + 32;
    tmp = malloc(tl);
    if (h.oom || !tmp) {
        seterr(err, errlen, "%s: out of memory", path);
        goto out;
    }
    snprintf(tmp, tl, "%s.tmp.%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        seterr(err, errlen, "%s: cannot create %s: %s", path, tmp, strerror(errno));
        goto out;
    }
    uint8_t len8[8];
    for (int k = 0; k < 8; k++)
        len8[k] = (uint8_t)((uint64_t)h.len >> (8 * k));
    int ok = write_all(fd, len8, 8) == 0 && write_all(fd, h.s, h.len) == 0;
    for (int i = 0; ok && i < n; i++)
        ok = ord[i]->nbytes == 0 || write_all(fd, ord[i]->data, ord[i]->nbytes) == 0;
    if (!ok || fsync(fd) != 0) {
        seterr(err, errlen, "%s: write failed: %s", path, strerror(errno));
        goto out;
    }
    int c = close(fd);
    fd = -1;
    if (c != 0) {
        seterr(err, errlen, "%s: write failed: %s", path, strerror(errno));
        goto out;
    }
    if (rename(tmp, path) != 0) {
        seterr(err, errlen, "%s: cannot replace the file: %s", path, strerror(errno));
        goto out;
    }
    /* make the rename itself durable; failure here does not undo a completed save */
    char *slash = strrchr(tmp, '/');
    if (slash) {
        *slash = 0;
        int dfd = open(slash == tmp ? "/" : tmp, O_RDONLY);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    } else {
        int dfd = open(".", O_RDONLY);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    free(tmp);
    tmp = NULL;
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    free(h.s);
    free(ord);
    return rc;
}
