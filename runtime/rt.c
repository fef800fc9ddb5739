/* Instances of compiled modules: memory (arena, state, params), errors, parameter
 * initialization, save/load and introspection (tdsl/runtime.h). No compiler headers. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "tdsl/runtime.h"
#include "philox.h"
#include "safetensors.h"
#include "threads.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERRLEN 512

struct tdsl_instance {
    const tdsl_module_desc *desc;   /* the module's constant descriptor: outlives us */
    tdsl_options opts;
    rt_pool *pool;
    void *arena, *state;
    void *backup;                   /* check_finite: old values of in-place updates, else NULL */
    void **params;                  /* nparams dense buffers */
    size_t *param_bytes;
    int64_t *param_numel;
    char err[ERRLEN];
};

/* Errors with no instance to hold them (a failed create, a NULL instance) live here, per
 * thread, and tdsl_rt_error(NULL) returns them. */
static _Thread_local char tls_err[ERRLEN];

static void set_msg(char *dst, const char *fmt, va_list ap)
{
    char buf[ERRLEN];   /* formatted apart: an argument may be dst itself */
    vsnprintf(buf, sizeof buf, fmt, ap);
    memcpy(dst, buf, sizeof buf);
}

int tdsl_rt_fail(tdsl_instance *inst, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_msg(inst ? inst->err : tls_err, fmt ? fmt : "(no message)", ap);
    va_end(ap);
    return status;
}

/* The error slot is mutable state even behind a const instance (save takes one), and
 * every instance is allocated writable, so casting the const away is defined. */
static int fail_c(const tdsl_instance *inst, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static int fail_c(const tdsl_instance *inst, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_msg(inst ? ((tdsl_instance *)inst)->err : tls_err, fmt, ap);
    va_end(ap);
    return status;
}

const char *tdsl_rt_error(const tdsl_instance *inst)
{
    if (inst)
        return inst->err;
    return tls_err[0] ? tls_err : "NULL instance";
}

void tdsl_rt_clear_error(tdsl_instance *inst)
{
    if (inst)
        inst->err[0] = 0;
    else
        tls_err[0] = 0;
}

/* ---- rounding a double to a param's dtype: the same as host_tensor_set in
 * common/tensor.c (bit for bit), copied because the runtime takes no compiler code ---- */
static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static uint16_t to_bf16(float f)
{
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)        /* NaN: keep it quiet */
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);             /* round to nearest even */
    return (uint16_t)(u >> 16);
}

static uint16_t to_f16(float f)
{
    uint32_t u = f2u(f), sign = (u >> 16) & 0x8000;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00);            /* NaN */
    if (a >= 0x477ff000u)                            /* rounds to >= 65520: inf */
        return (uint16_t)(sign | 0x7c00);
    if (a < 0x38800000u) {                           /* below 2^-14: subnormal half */
        float r = nearbyintf(u2f(a) * 16777216.0f);  /* v / 2^-24, nearest even */
        return (uint16_t)(sign | (uint32_t)r);
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1);      /* round mantissa to 10 bits, ties even */
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

/* (int64_t)v where it is defined; x86's answer (INT64_MIN) for NaN and out of range. */
static int64_t to_i64(double v)
{
    if (isnan(v) || v >= 9223372036854775808.0 || v < -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)v;
}

static void store_value(void *data, int dtype, int64_t i, double v)
{
    switch (dtype) {
    case TDSL_BOOL: ((uint8_t *)data)[i] = v != 0; break;
    case TDSL_I32: ((int32_t *)data)[i] = (int32_t)(uint32_t)(uint64_t)to_i64(v); break;
    case TDSL_I64: ((int64_t *)data)[i] = to_i64(v); break;
    case TDSL_F16: ((uint16_t *)data)[i] = to_f16((float)v); break;
    case TDSL_BF16: ((uint16_t *)data)[i] = to_bf16((float)v); break;
    case TDSL_F32: ((float *)data)[i] = (float)v; break;
    case TDSL_F64: ((double *)data)[i] = v; break;
    default: break;
    }
}

static int is_constant_init(int kind)
{
    return kind == RT_INIT_ZEROS || kind == RT_INIT_ONES || kind == RT_INIT_FULL;
}

/* Fills param i from seed; scratch holds numel doubles for the random kinds. */
static void init_param(tdsl_instance *inst, int i, uint64_t seed, double *scratch)
{
    const tdsl_param_desc *pd = &inst->desc->params[i];
    int64_t n = inst->param_numel[i], fan_in = pd->rank ? pd->shape[0] : 1;
    void *d = inst->params[i];
    if (is_constant_init(pd->init)) {   /* the value does not depend on the index */
        double v;
        rt_init_values(pd->init, pd->a, pd->b, fan_in, seed, pd->name, 1, &v);
        for (int64_t k = 0; k < n; k++)
            store_value(d, pd->dtype, k, v);
        return;
    }
    rt_init_values(pd->init, pd->a, pd->b, fan_in, seed, pd->name, n, scratch);
    for (int64_t k = 0; k < n; k++)
        store_value(d, pd->dtype, k, scratch[k]);
}

/* Doubles that init_param's scratch needs (0: none); -1 when that cannot be allocated. */
static int64_t scratch_len(const tdsl_instance *inst)
{
    int64_t m = 0;
    for (int i = 0; i < inst->desc->nparams; i++)
        if (!is_constant_init(inst->desc->params[i].init) && inst->param_numel[i] > m)
            m = inst->param_numel[i];
    return (uint64_t)m > SIZE_MAX / sizeof(double) ? -1 : m;
}

static int init_all(tdsl_instance *inst, uint64_t seed)
{
    int64_t m = scratch_len(inst);
    double *scratch = m > 0 ? malloc((size_t)m * sizeof(double)) : NULL;
    if (m < 0 || (m > 0 && !scratch))
        return 0;
    for (int i = 0; i < inst->desc->nparams; i++)
        init_param(inst, i, seed, scratch);
    free(scratch);
    return 1;
}

/* ---- create / destroy ---- */
static void *alloc64(uint64_t bytes)
{
    if (bytes > SIZE_MAX - 64)
        return NULL;
    size_t sz = (size_t)((bytes + 63) & ~(uint64_t)63);
    void *p = NULL;
    return posix_memalign(&p, 64, sz ? sz : 64) == 0 ? p : NULL;
}

/* Bytes of a dense tensor, or -1 when the dtype, rank or shape is invalid or too large. */
static int64_t dense_bytes(int dtype, int rank, const int64_t *shape)
{
    if (tdsl_dtype_size(dtype) == 0 || rank < 0 || rank > TDSL_MAX_RANK)
        return -1;
    uint64_t bytes = tdsl_dtype_size(dtype);
    for (int k = 0; k < rank; k++) {
        if (shape[k] < 0 || (shape[k] && bytes > (uint64_t)(INT64_MAX / 2) / (uint64_t)shape[k]))
            return -1;
        bytes *= (uint64_t)shape[k];
    }
    return (int64_t)bytes;
}

/* A name save can write: 1-127 bytes, not the safetensors metadata key. */
static int valid_name(const char *name)
{
    size_t nl = name ? strlen(name) : 0;
    return nl > 0 && nl <= ST_MAX_NAME && strcmp(name, "__metadata__") != 0;
}

/* The state table: names unique among params and states (they share the file), each tensor
 * inside the state block and apart from the others, so that load may copy them blindly. */
static int check_states(const tdsl_module_desc *d)
{
    if (d->nstates < 0 || (d->nstates > 0 && !d->states))
        return !tdsl_rt_fail(NULL, TDSL_ERR_ARG, "tdsl_rt_create: malformed module descriptor (state table)");
    for (int i = 0; i < d->nstates; i++) {
        const tdsl_state_desc *s = &d->states[i];
        if (!valid_name(s->name))
            return !tdsl_rt_fail(NULL, TDSL_ERR_ARG, "module '%s': state %d has an invalid name", d->name, i);
        int64_t bytes = dense_bytes(s->dtype, s->rank, s->shape);
        if (bytes < 0)
            return !tdsl_rt_fail(NULL, TDSL_ERR_ARG, "module '%s': state '%s' has an invalid dtype, rank or shape",
                                 d->name, s->name);
        if (s->offset > d->state_bytes || (uint64_t)bytes > d->state_bytes - s->offset)
            return !tdsl_rt_fail(NULL, TDSL_ERR_ARG, "module '%s': state '%s' lies outside the state block",
                                 d->name, s->name);
        for (int j = 0; j < d->nparams; j++)
            if (strcmp(d->params[j].name, s->name) == 0)
                return !tdsl_rt_fail(NULL, TDSL_ERR_ARG, "module '%s': state '%s' has the name of a param", d->name,
                                     s->name);
        for (int j = 0; j < i; j++) {
            const tdsl_state_desc *o = &d->states[j];
            if (strcmp(o->name, s->name) == 0)
                return !tdsl_rt_fail(NULL, TDSL_ERR_ARG, "module '%s': state name '%s' is used twice", d->name,
                                     s->name);
            uint64_t ob = (uint64_t)dense_bytes(o->dtype, o->rank, o->shape);
            if (bytes && ob && s->offset < o->offset + ob && o->offset < s->offset + (uint64_t)bytes)
                return !tdsl_rt_fail(NULL, TDSL_ERR_ARG, "module '%s': states '%s' and '%s' overlap", d->name,
                                     o->name, s->name);
        }
    }
    return 1;
}

/* Checks everything create relies on; 0 with tls_err set when the descriptor is bad. */
static int check_desc(const tdsl_module_desc *d)
{
    if (!d)
        return !tdsl_rt_fail(NULL, TDSL_ERR_NULL, "tdsl_rt_create: NULL module descriptor");
    if (d->abi_version != TDSL_ABI_VERSION)
        return !tdsl_rt_fail(NULL, TDSL_ERR_ARG,
                             "module '%s' was compiled for runtime ABI %u, but this libtdslrt has ABI %d",
                             d->name ? d->name : "?", (unsigned)d->abi_version, TDSL_ABI_VERSION);
    if (!d->name || d->nparams < 0 || (d->nparams > 0 && !d->params))
        return !tdsl_rt_fail(NULL, TDSL_ERR_ARG, "tdsl_rt_create: malformed module descriptor");
    for (int i = 0; i < d->nparams; i++) {
        const tdsl_param_desc *p = &d->params[i];
        size_t nl = p->name ? strlen(p->name) : 0;
        if (nl == 0 || nl > ST_MAX_NAME || strcmp(p->name, "__metadata__") == 0)
            return !tdsl_rt_fail(NULL, TDSL_ERR_ARG, "module '%s': param %d has an invalid name", d->name, i);
        if (tdsl_dtype_size(p->dtype) == 0 || p->rank < 0 || p->rank > TDSL_MAX_RANK ||
            p->init < RT_INIT_ZEROS || p->init > RT_INIT_KAIMING_UNIFORM)
            return !tdsl_rt_fail(NULL, TDSL_ERR_ARG, "module '%s': param '%s' has an invalid dtype, rank or initializer",
                                 d->name, p->name);
        uint64_t bytes = tdsl_dtype_size(p->dtype);
        for (int k = 0; k < p->rank; k++) {
            if (p->shape[k] < 0 || (p->shape[k] && bytes > (uint64_t)(INT64_MAX / 2) / (uint64_t)p->shape[k]))
                return !tdsl_rt_fail(NULL, TDSL_ERR_ARG, "module '%s': param '%s' has an invalid shape",
                                     d->name, p->name);
            bytes *= (uint64_t)p->shape[k];
        }
        for (int j = 0; j < i; j++)
            if (strcmp(d->params[j].name, p->name) == 0)
                return !tdsl_rt_fail(NULL, TDSL_ERR_ARG, "module '%s': param name '%s' is used twice", d->name,
                                     p->name);
    }
    return check_states(d);
}

static void free_instance(tdsl_instance *inst)
{
    rt_pool_destroy(inst->pool);
    if (inst->params)
        for (int i = 0; i < inst->desc->nparams; i++)
            free(inst->params[i]);
    free(inst->params);
    free(inst->param_bytes);
    free(inst->param_numel);
    free(inst->arena);
    free(inst->state);
    free(inst->backup);
    free(inst);
}

tdsl_instance *tdsl_rt_create(const tdsl_module_desc *desc, const tdsl_options *opts)
{
    tls_err[0] = 0;
    if (!check_desc(desc))
        return NULL;
    tdsl_instance *inst = calloc(1, sizeof *inst);
    if (!inst) {
        tdsl_rt_fail(NULL, TDSL_ERR_NOMEM, "%s_create: out of memory", desc->name);
        return NULL;
    }
    static const tdsl_options defaults = TDSL_OPTIONS_INIT;
    inst->desc = desc;
    inst->opts = opts ? *opts : defaults;
    int np = desc->nparams;
    size_t cnt = np ? (size_t)np : 1;
    inst->params = calloc(cnt, sizeof *inst->params);
    inst->param_bytes = calloc(cnt, sizeof *inst->param_bytes);
    inst->param_numel = calloc(cnt, sizeof *inst->param_numel);
    inst->arena = alloc64(desc->arena_bytes);
    inst->state = alloc64(desc->state_bytes);
    if (inst->opts.check_finite && desc->backup_bytes)   /* only a checked step restores */
        inst->backup = alloc64(desc->backup_bytes);
    const char *what = "memory";
    char pname[ST_MAX_NAME + 16];
    int ok = inst->params && inst->param_bytes && inst->param_numel && inst->arena && inst->state &&
             (inst->backup || !inst->opts.check_finite || !desc->backup_bytes);
    if (!ok)
        what = !inst->arena ? "the arena" : !inst->state ? "the state block" : !inst->backup ? "the backup for check_finite"
                                                                                            : "bookkeeping";
    for (int i = 0; ok && i < np; i++) {
        const tdsl_param_desc *p = &desc->params[i];
        int64_t n = 1;
        for (int k = 0; k < p->rank; k++)
            n *= p->shape[k];
        uint64_t bytes = (uint64_t)n * tdsl_dtype_size(p->dtype);   /* < 2^62: check_desc */
        inst->param_numel[i] = n;
        inst->param_bytes[i] = (size_t)bytes;
        inst->params[i] = alloc64(bytes);   /* fails when bytes does not fit a size_t */
        if (!inst->params[i]) {
            snprintf(pname, sizeof pname, "param '%s'", p->name);
            ok = 0, what = pname;
        }
    }
    if (ok) {
        memset(inst->state, 0, (size_t)desc->state_bytes);
        if (!init_all(inst, inst->opts.seed))
            ok = 0, what = "parameter initialization";
    }
    if (!ok) {
        tdsl_rt_fail(NULL, TDSL_ERR_NOMEM, "%s_create: out of memory allocating %s", desc->name, what);
        free_instance(inst);
        return NULL;
    }
    inst->pool = rt_pool_create(rt_resolve_threads(inst->opts.threads));
    if (!inst->pool) {
        tdsl_rt_fail(NULL, TDSL_ERR_NOMEM, "%s_create: cannot start %d threads", desc->name,
                     rt_resolve_threads(inst->opts.threads));
        free_instance(inst);
        return NULL;
    }
    return inst;
}

void tdsl_rt_destroy(tdsl_instance *inst)
{
    if (inst)
        free_instance(inst);
}

/* ---- accessors for generated code ---- */
void *tdsl_rt_arena(tdsl_instance *inst) { return inst ? inst->arena : NULL; }
void *tdsl_rt_state(tdsl_instance *inst) { return inst ? inst->state : NULL; }
void *tdsl_rt_backup(tdsl_instance *inst) { return inst ? inst->backup : NULL; }
int tdsl_rt_num_threads(const tdsl_instance *inst) { return inst ? rt_pool_threads(inst->pool) : 1; }
int tdsl_rt_check_finite(const tdsl_instance *inst) { return inst ? inst->opts.check_finite != 0 : 0; }

void *tdsl_rt_param_data(tdsl_instance *inst, int i)
{
    if (!inst) {
        tdsl_rt_fail(NULL, TDSL_ERR_NULL, "param: NULL instance");
        return NULL;
    }
    if (i < 0 || i >= inst->desc->nparams) {
        tdsl_rt_fail(inst, TDSL_ERR_ARG, "%s_param: index %d is out of range (the module has %d params)",
                     inst->desc->name, i, inst->desc->nparams);
        return NULL;
    }
    return inst->params[i];
}

void tdsl_rt_parallel_for(tdsl_instance *inst, int64_t n, tdsl_task_fn fn, void *ctx)
{
    rt_pool_run(inst ? inst->pool : NULL, n, fn, ctx);
}

tdsl_tensor tdsl_rt_param(tdsl_instance *inst, int i)
{
    tdsl_tensor t;
    memset(&t, 0, sizeof t);
    t.name = "";
    t.dtype = -1;
    void *d = tdsl_rt_param_data(inst, i);
    if (!d)
        return t;
    const tdsl_param_desc *p = &inst->desc->params[i];
    t.name = p->name;
    t.dtype = p->dtype;
    t.rank = p->rank;
    int64_t s = 1;
    for (int k = p->rank - 1; k >= 0; k--) {
        t.shape[k] = p->shape[k];
        t.strides[k] = s;
        s *= p->shape[k];
    }
    t.data = d;
    return t;
}

void tdsl_rt_reset_params(tdsl_instance *inst, uint64_t seed)
{
    if (!inst) {
        tdsl_rt_fail(NULL, TDSL_ERR_NULL, "reset_params: NULL instance");
        return;
    }
    if (!init_all(inst, seed)) {   /* nothing was touched */
        tdsl_rt_fail(inst, TDSL_ERR_NOMEM, "%s: out of memory re-initializing the params", inst->desc->name);
        return;
    }
    /* a fresh start for training too: optimizer state (moments, step counts) back to zero */
    memset(inst->state, 0, (size_t)inst->desc->state_bytes);
    inst->opts.seed = seed;
}

/* ---- save / load ---- */

/* "f32[784, 128]"; a scalar is "f32". */
static void type_str(char *buf, size_t len, int dtype, int rank, const int64_t *shape)
{
    size_t o = (size_t)snprintf(buf, len, "%s", tdsl_dtype_name(dtype));
    for (int k = 0; k < rank && o < len; k++)
        o += (size_t)snprintf(buf + o, len - o, k ? ", %lld" : "[%lld", (long long)shape[k]);
    if (rank && o < len)
        snprintf(buf + o, len - o, "]");
}

int tdsl_rt_save(const tdsl_instance *inst, const char *path)
{
    if (!inst)
        return fail_c(NULL, TDSL_ERR_NULL, "save: NULL instance");
    const tdsl_module_desc *d = inst->desc;
    if (!path)
        return fail_c(inst, TDSL_ERR_NULL, "%s_save: NULL path", d->name);
    /* params and states in one dict, as torch.save({"model": ..., "optimizer": ...}) would
     * keep them together; the writer orders them, so the bytes do not depend on this order */
    int n = d->nparams + d->nstates;
    st_tensor *ts = calloc(n ? (size_t)n : 1, sizeof *ts);
    if (!ts)
        return fail_c(inst, TDSL_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < d->nparams; i++) {
        const tdsl_param_desc *p = &d->params[i];
        memcpy(ts[i].name, p->name, strlen(p->name) + 1);   /* <= ST_MAX_NAME: checked at create */
        ts[i].dtype = p->dtype;                              /* same numbering as ST_* */
        ts[i].rank = p->rank;
        memcpy(ts[i].shape, p->shape, sizeof ts[i].shape);
        ts[i].data = inst->params[i];
        ts[i].nbytes = inst->param_bytes[i];
    }
    for (int i = 0; i < d->nstates; i++) {
        const tdsl_state_desc *sd = &d->states[i];
        st_tensor *t = &ts[d->nparams + i];
        memcpy(t->name, sd->name, strlen(sd->name) + 1);
        t->dtype = sd->dtype;
        t->rank = sd->rank;
        memcpy(t->shape, sd->shape, sizeof t->shape);
        t->data = (const uint8_t *)inst->state + sd->offset;
        t->nbytes = (size_t)dense_bytes(sd->dtype, sd->rank, sd->shape);   /* inside the block: check_states */
    }
    /* metadata: the module (load names it when a file does not match), and the optimizer
     * state's names, one per line, so that a module without those training steps (an
     * inference app) can load the params and pass over the state */
    size_t len = 1;
    for (int i = 0; i < d->nstates; i++)
        len += strlen(d->states[i].name) + 1;
    char *names = malloc(len);
    if (!names) {
        free(ts);
        return fail_c(inst, TDSL_ERR_NOMEM, "%s: out of memory", path);
    }
    names[0] = 0;
    for (int i = 0, o = 0; i < d->nstates; i++)
        o += snprintf(names + o, len - (size_t)o, "%s%s", i ? "\n" : "", d->states[i].name);
    char err[ERRLEN];
    const char *keys[] = {"module", OPTIMIZER_STATE_KEY}, *values[] = {d->name, names};
    int rc = st_save_meta(path, ts, n, keys, values, d->nstates ? 2 : 1, err, sizeof err);
    free(names);
    free(ts);
    return rc == 0 ? TDSL_OK : fail_c(inst, TDSL_ERR_IO, "%s", err);
}

/* st_open's messages tell a file that cannot be read from one that is not valid. */
static int open_status(const char *msg)
{
    if (strstr(msg, ": out of memory"))
        return TDSL_ERR_NOMEM;
    if (strstr(msg, ": cannot open: ") || strstr(msg, ": not a regular file") || strstr(msg, ": read error: "))
        return TDSL_ERR_IO;
    return TDSL_ERR_FORMAT;
}

/* The file's tensor for a module tensor of this type: NULL when absent, else checked
 * (TDSL_ERR_FORMAT in *rc with the message on inst when it does not match). */
static const st_tensor *match(tdsl_instance *inst, const st_file *f, const char *path, const char *what,
                              const char *name, int dtype, int rank, const int64_t *shape, const char *hint, int *rc)
{
    const st_tensor *s = st_find(f, name);
    if (!s)
        return NULL;
    char want[160], got[160];
    type_str(want, sizeof want, dtype, rank, shape);
    type_str(got, sizeof got, s->dtype, s->rank, s->shape);
    /* the text covers dtype, rank and every dim (a shape too long for it still differs
     * in nbytes or in its prefix) */
    if (strcmp(want, got) != 0 || (int64_t)s->nbytes != dense_bytes(dtype, rank, shape))
        *rc = tdsl_rt_fail(inst, TDSL_ERR_FORMAT, "%s: %s '%s' is %s in the file, %s in the module%s", path, what,
                           name, got, want, hint);
    return s;
}

int tdsl_rt_load(tdsl_instance *inst, const char *path)
{
    if (!inst)
        return tdsl_rt_fail(NULL, TDSL_ERR_NULL, "load: NULL instance");
    const tdsl_module_desc *d = inst->desc;
    if (!path)
        return tdsl_rt_fail(inst, TDSL_ERR_NULL, "%s_load: NULL path", d->name);
    char err[ERRLEN];
    st_file *f = st_open(path, err, sizeof err);
    if (!f)
        return tdsl_rt_fail(inst, open_status(err), "%s", err);
    /* validate everything before the first byte is copied */
    const char *saved_by = st_metadata(f, "module");
    char hint[200] = "";
    if (saved_by && strcmp(saved_by, d->name) != 0)
        snprintf(hint, sizeof hint, " (the file was saved by module '%.100s')", saved_by);
    int rc = TDSL_OK;
    for (int i = 0; i < d->nparams && rc == TDSL_OK; i++) {
        const tdsl_param_desc *p = &d->params[i];
        if (!match(inst, f, path, "param", p->name, p->dtype, p->rank, p->shape, hint, &rc)) {
            char want[160];
            type_str(want, sizeof want, p->dtype, p->rank, p->shape);
            rc = tdsl_rt_fail(inst, TDSL_ERR_FORMAT, "%s: param '%s' (%s) is missing from the file%s", path, p->name,
                              want, hint);
        }
    }
    /* optimizer state is optional: a params-only file (an older save, a model exported
     * from PyTorch) leaves it as it is, like model.load_state_dict leaves the optimizer */
    int nfound = d->nparams;
    for (int i = 0; i < d->nstates && rc == TDSL_OK; i++) {
        const tdsl_state_desc *sd = &d->states[i];
        nfound += match(inst, f, path, "state", sd->name, sd->dtype, sd->rank, sd->shape, hint, &rc) != NULL;
    }
    /* names are unique on both sides: with these found, more tensors mean extras */
    for (int k = 0; k < st_count(f) && rc == TDSL_OK && st_count(f) > nfound; k++) {
        const st_tensor *s = st_get(f, k);
        int found = 0;
        for (int i = 0; i < d->nparams && !found; i++)
            found = strcmp(d->params[i].name, s->name) == 0;
        for (int i = 0; i < d->nstates && !found; i++)
            found = strcmp(d->states[i].name, s->name) == 0;
        /* another module's optimizer state (its save listed it): not ours to load */
        found = found || st_metadata_lists(f, OPTIMIZER_STATE_KEY, s->name);
        if (!found)
            rc = tdsl_rt_fail(inst, TDSL_ERR_FORMAT,
                              "%s: tensor '%s' in the file is not a param or state of module '%s'%s", path, s->name,
                              d->name, hint);
    }
    if (rc == TDSL_OK) {
        for (int i = 0; i < d->nparams; i++)
            if (inst->param_bytes[i])
                memcpy(inst->params[i], st_find(f, d->params[i].name)->data, inst->param_bytes[i]);
        for (int i = 0; i < d->nstates; i++) {
            const st_tensor *s = st_find(f, d->states[i].name);
            if (s && s->nbytes)
                memcpy((uint8_t *)inst->state + d->states[i].offset, s->data, s->nbytes);
        }
    }
    st_close(f);
    return rc;
}
