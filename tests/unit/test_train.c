/* Compiled training steps (docs/training.md): sgd/adam/adamw exports against torch.optim.
 *
 * tests/train/{mlp,linreg}.tdsl declare one step export per optimizer configuration;
 * tests/train/gen_reference.py ran the same configurations in torch.optim 1.13 and wrote
 * tests/train/ref/<model>_<config>.npy: per call, F's value, then every param after the
 * call. Each configuration runs from the same initial params (ref/<model>_init_*.npy) in
 * the reference evaluator (ir_eval_step) and through the generated C API, in-process (JIT)
 * and as an object in a shared library (AOT). Also: check_finite on steps, reset of the
 * optimizer state, the text IR of steps, and the user errors of the step forms. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "engines.h"
#include "frontend/ast.h"
#include "frontend/lower.h"
#include "compile.h"
#include "ir/eval.h"
#include "codegen/header.h"
#include "passes/passes.h"
#include "tools/npy.h"
#include "runtime/safetensors.h"

#define TRAIN_DIR TDSL_SOURCE_DIR "/tests/train"

static arena ar;
static src_file src;
static char diag_buf[16384];
static char *file_text;

/* Parses and lowers text; diagnostics land in diag_buf. */
static ir_module *compile(const char *name, const char *text)
{
    ir_module *m = compile_source(&ar, &src, name, text, 0, NULL, diag_buf, sizeof diag_buf);
    if (m)
        ck_assert_msg(ir_verify(m, stderr) == 0, "%s: the lowered IR does not verify", name);
    return m;
}

static ir_module *compile_file(const char *model)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.tdsl", TRAIN_DIR, model);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    free(file_text);
    file_text = calloc(1, 1 << 16);
    size_t n = fread(file_text, 1, (1 << 16) - 1, f);
    fclose(f);
    file_text[n] = 0;
    ir_module *m = compile(model, file_text);
    ck_assert_msg(m != NULL, "%s.tdsl: %s", model, diag_buf);
    return m;
}

static void load_npy(const char *name, host_tensor *t)
{
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/ref/%s.npy", TRAIN_DIR, name);
    ck_assert_msg(npy_read(path, t, err, sizeof err) == 0, "%s (run tests/train/gen_reference.py)", err);
}

/* Row i of a stacked [calls, ...] array, as a tensor of the remaining dims. */
static host_tensor row_of(const host_tensor *all, int i)
{
    host_tensor r = {.dtype = all->dtype, .rank = all->rank - 1};
    memcpy(r.shape, all->shape + 1, sizeof(int64_t) * (size_t)r.rank);
    ck_assert(host_tensor_alloc(&r, r.dtype, r.rank, r.shape));
    size_t b = host_tensor_bytes(&r);
    memcpy(r.data, (const char *)all->data + b * (size_t)i, b);
    return r;
}

static void copy_tensor(host_tensor *dst, const host_tensor *src_t)
{
    ck_assert(host_tensor_alloc(dst, src_t->dtype, src_t->rank, src_t->shape));
    memcpy(dst->data, src_t->data, host_tensor_bytes(src_t));
}

/* |got - want| <= atol + rtol |want|, like numpy.allclose */
static void expect_close(const char *what, int call, const char *pname, int64_t at, double got, double want,
                         double rtol, double atol)
{
    ck_assert_msg(fabs(got - want) <= atol + rtol * fabs(want),
                  "%s, call %d, %s[%lld]: got %.9g, torch.optim gives %.9g", what, call, pname, (long long)at, got, want);
}

/* The configurations of tests/train/mlp.tdsl and linreg.tdsl, and the calls each reference made. */
static const struct { const char *name; int calls; } configs[] = {
    {"sgd_plain", 5}, {"sgd_momentum", 5}, {"sgd_nesterov", 5}, {"sgd_wd", 5}, {"sgd_some", 5},
    {"adam_plain", 5}, {"adam_wd", 5}, {"adamw_plain", 5}, {"adamw_betas", 5}, {"sgd_accum", 10},
    {"adam_accum", 9},
};
#define NCONFIGS ((int)(sizeof configs / sizeof *configs))

/* f32 throughout. The evaluator rounds every node to f32 but computes each in f64; torch
 * and the compiled code compute in f32 with their own FMA contraction and summation order.
 * Measured here: every value within 1e-5 relative + 1e-6 absolute; twice that allowed. */
#define RTOL 2e-5
#define ATOL 2e-6

typedef struct model_data {
    const char *name;
    ir_module *m;
    host_tensor x, y;
    host_tensor init[8];
} model_data;

static void load_model(model_data *d, const char *name)
{
    memset(d, 0, sizeof *d);
    d->name = name;
    d->m = compile_file(name);
    ck_assert_int_le(d->m->nparams, 8);
    char key[256];
    snprintf(key, sizeof key, "%s_x", name);
    load_npy(key, &d->x);
    snprintf(key, sizeof key, "%s_y", name);
    load_npy(key, &d->y);
    for (int k = 0; k < d->m->nparams; k++) {
        snprintf(key, sizeof key, "%s_init_%s", name, d->m->params[k].name);
        load_npy(key, &d->init[k]);
        const ir_param *p = &d->m->params[k];
        ck_assert_int_eq(d->init[k].dtype, p->dtype);
        ck_assert_int_eq(d->init[k].rank, p->rank);
        for (int dd = 0; dd < p->rank; dd++)
            ck_assert_int_eq(d->init[k].shape[dd], p->shape[dd]);
    }
}

static void free_model(model_data *d)
{
    host_tensor_free(&d->x);
    host_tensor_free(&d->y);
    for (int k = 0; k < 8; k++)
        host_tensor_free(&d->init[k]);
}

/* Compares the loss of call i and every param after it with row i of the reference. */
static void check_row(const char *what, const ir_module *m, const host_tensor *ref, int i, double loss,
                      float *const *pdata)
{
    int64_t cols = ref->shape[1];
    const float *r = (const float *)ref->data + (size_t)(i * cols);
    expect_close(what, i, "loss", 0, loss, r[0], RTOL, ATOL);
    int64_t at = 1;
    for (int k = 0; k < m->nparams; k++) {
        int64_t n = 1;
        for (int dd = 0; dd < m->params[k].rank; dd++)
            n *= m->params[k].shape[dd];
        ck_assert_int_le(at + n, cols);
        for (int64_t e = 0; e < n; e++)
            expect_close(what, i, m->params[k].name, e, pdata[k][e], r[at + e], RTOL, ATOL);
        at += n;
    }
    ck_assert_int_eq(at, cols);
}

static void run_model(const char *model)
{
    model_data d;
    load_model(&d, model);
    ir_module *m = d.m;
    char what[256], err[512];
    /* the reference evaluator */
    for (int c = 0; c < NCONFIGS; c++) {
        const ir_func *f = ir_module_find(m, configs[c].name);
        ck_assert_msg(f != NULL, "%s.tdsl has no export %s", model, configs[c].name);
        ck_assert_int_eq(ir_num_results(f), 1);
        ck_assert_int_gt(f->nouts, 1);
        host_tensor ref;
        snprintf(what, sizeof what, "%s_%s", model, configs[c].name);
        load_npy(what, &ref);
        ck_assert_int_eq(ref.shape[0], configs[c].calls);
        host_tensor params[8] = {{0}}, *states = calloc((size_t)m->nstates + 1, sizeof *states);
        for (int k = 0; k < m->nparams; k++)
            copy_tensor(&params[k], &d.init[k]);
        for (int s = 0; s < m->nstates; s++)
            ck_assert(host_tensor_alloc(&states[s], m->states[s].dtype, m->states[s].rank, m->states[s].shape));
        snprintf(what, sizeof what, "%s %s (evaluator)", model, configs[c].name);
        for (int i = 0; i < configs[c].calls; i++) {
            host_tensor args[2] = {row_of(&d.x, i), row_of(&d.y, i)}, out = {0};
            ck_assert_msg(ir_eval_step(f, args, params, states, &out, NULL, err, sizeof err) == 0, "%s: %s", what, err);
            float *pd[8];
            for (int k = 0; k < m->nparams; k++)
                pd[k] = params[k].data;
            check_row(what, m, &ref, i, host_tensor_get(&out, 0), pd);
            host_tensor_free(&out);
            host_tensor_free(&args[0]);
            host_tensor_free(&args[1]);
        }
        for (int k = 0; k < m->nparams; k++)
            host_tensor_free(&params[k]);
        for (int s = 0; s < m->nstates; s++)
            host_tensor_free(&states[s]);
        free(states);
        host_tensor_free(&ref);
    }
    /* compiled: JIT and AOT; one instance each, every export has its own optimizer state */
    engines e;
    ck_assert_msg(engines_open(&e, m, model, err, sizeof err) == 0, "%s: %s", model, err);
    for (int k = 0; k < 2; k++) {
        compiled *cc = &e.c[k];
        tdsl_tensor (*param)(void *, int);
        *(void **)&param = engine_lookup(cc, model, "param");
        ck_assert(param != NULL);
        for (int c = 0; c < NCONFIGS; c++) {
            const ir_func *f = ir_module_find(m, configs[c].name);
            host_tensor ref;
            snprintf(what, sizeof what, "%s_%s", model, configs[c].name);
            load_npy(what, &ref);
            float *pd[8];
            for (int p = 0; p < m->nparams; p++) {   /* the same start for every configuration */
                tdsl_tensor t = param(cc->inst, p);
                ck_assert_ptr_nonnull(t.data);
                memcpy(t.data, d.init[p].data, host_tensor_bytes(&d.init[p]));
                pd[p] = t.data;
            }
            snprintf(what, sizeof what, "%s %s (%s)", model, configs[c].name, cc->engine);
            for (int i = 0; i < configs[c].calls; i++) {
                host_tensor args[2] = {row_of(&d.x, i), row_of(&d.y, i)}, out = {0};
                ck_assert_msg(engine_call(cc, model, f, args, &out, err, sizeof err) == 0, "%s: %s", what, err);
                check_row(what, m, &ref, i, host_tensor_get(&out, 0), pd);
                host_tensor_free(&out);
                host_tensor_free(&args[0]);
                host_tensor_free(&args[1]);
            }
            host_tensor_free(&ref);
        }
    }
    engines_close(&e);
    free_model(&d);
}

static const char *const models[] = {"mlp", "linreg"};

START_TEST(trajectories)
{
    run_model(models[_i]);
}
END_TEST

/* ---- check_finite: a NaN or Inf in the loss or in a new param is an error, and the step
 * is not applied ---- */
static const char *const finite_src =
    "param W: f32[3] = ones\n"
    "fn f(x: f32[3]) { return sum(x * W) }\n"
    "export step = sgd(f, lr=3e38)\n";

START_TEST(check_finite_steps)
{
    ir_module *m = compile("fin", finite_src);
    ck_assert_msg(m != NULL, "%s", diag_buf);
    const ir_func *f = ir_module_find(m, "step");
    char err[512];
    engines e;
    ck_assert_msg(engines_open(&e, m, "fin", err, sizeof err) == 0, "%s", err);
    compiled *cc = &e.c[0];
    void *(*create)(const tdsl_options *);
    tdsl_tensor (*param)(void *, int);
    *(void **)&create = engine_lookup(cc, "fin", "create");
    *(void **)&param = engine_lookup(cc, "fin", "param");
    tdsl_options o = TDSL_OPTIONS_INIT;
    o.check_finite = 1;
    void *checked = create(&o);
    ck_assert_ptr_nonnull(checked);
    compiled cf = *cc;
    cf.inst = checked;
    float xs[3] = {1, 0, 0};   /* the gradient of sum(x * W) is x */
    host_tensor x = {.dtype = DT_F32, .rank = 1, .shape = {3}, .data = xs}, out = {0};
    /* a finite step applies: W[0] = 1 - 3e38 */
    ck_assert_int_eq(engine_call(&cf, "fin", f, &x, &out, err, sizeof err), 0);
    ck_assert(fabsf(((float *)param(checked, 0).data)[0] + 3e38f) <= 1e32f);
    host_tensor_free(&out);
    /* the loss (-3e38) is finite, but W[0] - 3e38 is -inf */
    float before[3];
    memcpy(before, param(checked, 0).data, sizeof before);
    int rc = engine_call(&cf, "fin", f, &x, &out, err, sizeof err);
    ck_assert_int_eq(rc, TDSL_ERR_NONFINITE);
    ck_assert_msg(strstr(err, "new value of param 'W' has NaN or Inf") && strstr(err, "not applied"), "%s", err);
    ck_assert_mem_eq(param(checked, 0).data, before, sizeof before);
    host_tensor_free(&out);
    /* a NaN input: the loss itself is NaN */
    xs[1] = NAN;
    rc = engine_call(&cf, "fin", f, &x, &out, err, sizeof err);
    ck_assert_int_eq(rc, TDSL_ERR_NONFINITE);
    ck_assert_msg(strstr(err, "fin_step: output 0 has NaN or Inf"), "%s", err);
    ck_assert_mem_eq(param(checked, 0).data, before, sizeof before);
    host_tensor_free(&out);
    /* without check_finite the same call goes through */
    ck_assert_int_eq(engine_call(cc, "fin", f, &x, &out, err, sizeof err), 0);
    ck_assert(isnan(((float *)param(cc->inst, 0).data)[1]));
    host_tensor_free(&out);
    cc->destroy(checked);
    engines_close(&e);
}
END_TEST

/* ---- tdsl_rt_reset_params starts training afresh: params from the seed, optimizer state
 * (Adam's moments and step count) back to zero ---- */
START_TEST(reset_zeroes_state)
{
    ir_module *m = compile("rs", "param W: f32[4] = normal(0, 1)\n"
                                 "fn f(x: f32[4]) { return sum(x * W * W) }\n"
                                 "export step = adam(f, lr=0.1)\n");
    ck_assert_msg(m != NULL, "%s", diag_buf);
    const ir_func *f = ir_module_find(m, "step");
    char err[512];
    engines e;
    ck_assert_msg(engines_open(&e, m, "rs", err, sizeof err) == 0, "%s", err);
    compiled *cc = &e.c[0];   /* the JIT: its runtime is this process's libtdslrt */
    tdsl_tensor (*param)(void *, int);
    *(void **)&param = engine_lookup(cc, "rs", "param");
    float xs[4] = {1, -2, 0.5f, 3};
    host_tensor x = {.dtype = DT_F32, .rank = 1, .shape = {4}, .data = xs}, out = {0};
    float first[4], later[4];
    ck_assert_int_eq(engine_call(cc, "rs", f, &x, &out, err, sizeof err), 0);
    memcpy(first, param(cc->inst, 0).data, sizeof first);
    host_tensor_free(&out);
    ck_assert_int_eq(engine_call(cc, "rs", f, &x, &out, err, sizeof err), 0);
    host_tensor_free(&out);
    tdsl_rt_reset_params(cc->inst, 0);
    ck_assert_int_eq(engine_call(cc, "rs", f, &x, &out, err, sizeof err), 0);
    memcpy(later, param(cc->inst, 0).data, sizeof later);
    host_tensor_free(&out);
    /* Adam's first step moves each param by lr * sign(g) (m/sqrt(v) = g/|g|): with stale
     * state (step 3, old moments) it would not */
    for (int k = 0; k < 4; k++)
        ck_assert_msg(fabsf(first[k] - later[k]) <= 1e-6f, "W[%d]: %g after reset, %g at first", k, later[k], first[k]);
    engines_close(&e);
}
END_TEST

/* ---- resuming training (docs/c-api.md, saving and loading): save after k steps, load
 * into a fresh instance, go on: the same losses and params, bit for bit, as one
 * uninterrupted run. A params-only file leaves the state alone; a bad state or a foreign
 * tensor is refused and changes nothing. JIT and AOT. ---- */
typedef struct rt_fns {
    void *(*create)(const tdsl_options *);
    void (*destroy)(void *);
    int (*save)(const void *, const char *);
    int (*load)(void *, const char *);
    tdsl_tensor (*param)(void *, int);
    void *(*state)(tdsl_instance *);   /* tdsl_rt_state of the runtime this engine's instances use */
} rt_fns;

static rt_fns fns_of(const compiled *c, const char *mod)
{
    rt_fns r;
    *(void **)&r.create = engine_lookup(c, mod, "create");
    *(void **)&r.destroy = engine_lookup(c, mod, "destroy");
    *(void **)&r.save = engine_lookup(c, mod, "save");
    *(void **)&r.load = engine_lookup(c, mod, "load");
    *(void **)&r.param = engine_lookup(c, mod, "param");
    /* the AOT library's instances live in the shared libtdslrt it links, the JIT's in ours */
    if (c->jit)
        r.state = tdsl_rt_state;
    else
        *(void **)&r.state = dlsym(c->dl, "tdsl_rt_state");
    ck_assert(r.create && r.destroy && r.save && r.load && r.param && r.state);
    return r;
}

/* Runs calls [from, to) of export f on inst (rows of the model's data); the losses go to loss[]. */
static void run_calls(const compiled *c, void *inst, const model_data *d, const ir_func *f, int from, int to,
                      float *loss)
{
    compiled ci = *c;
    ci.inst = inst;
    char err[512];
    for (int i = from; i < to; i++) {
        host_tensor args[2] = {row_of(&d->x, i), row_of(&d->y, i)}, out = {0};
        ck_assert_msg(engine_call(&ci, d->name, f, args, &out, err, sizeof err) == 0, "%s call %d: %s", f->name, i, err);
        loss[i] = ((float *)out.data)[0];
        host_tensor_free(&out);
        host_tensor_free(&args[0]);
        host_tensor_free(&args[1]);
    }
}

static void set_init(const rt_fns *r, void *inst, const model_data *d)
{
    for (int p = 0; p < d->m->nparams; p++)
        memcpy(r->param(inst, p).data, d->init[p].data, host_tensor_bytes(&d->init[p]));
}

/* Every param and the whole state block of inst, concatenated. */
static uint8_t *snapshot_all(const rt_fns *r, void *inst, const ir_module *m, size_t *len)
{
    size_t sb = (size_t)pass_state_layout(m, NULL), n = sb;
    for (int p = 0; p < m->nparams; p++) {
        tdsl_tensor t = r->param(inst, p);
        size_t b = tdsl_dtype_size(t.dtype);
        for (int k = 0; k < t.rank; k++)
            b *= (size_t)t.shape[k];
        n += b;
    }
    uint8_t *buf = malloc(n), *at = buf;
    for (int p = 0; p < m->nparams; p++) {
        tdsl_tensor t = r->param(inst, p);
        size_t b = tdsl_dtype_size(t.dtype);
        for (int k = 0; k < t.rank; k++)
            b *= (size_t)t.shape[k];
        memcpy(at, t.data, b);
        at += b;
    }
    memcpy(at, r->state((tdsl_instance *)inst), sb);
    *len = n;
    return buf;
}

/* Writes the params of inst and, when extra is given, one more tensor: a file as another
 * tool (PyTorch, NumPy) would write it, without the module's metadata. */
static void write_params(const char *path, const rt_fns *r, void *inst, const ir_module *m, const st_tensor *extra)
{
    st_tensor ts[9];
    memset(ts, 0, sizeof ts);
    ck_assert_int_le(m->nparams, 8);
    for (int p = 0; p < m->nparams; p++) {
        tdsl_tensor t = r->param(inst, p);
        snprintf(ts[p].name, sizeof ts[p].name, "%s", t.name);
        ts[p].dtype = t.dtype;
        ts[p].rank = t.rank;
        memcpy(ts[p].shape, t.shape, sizeof ts[p].shape);
        ts[p].data = t.data;
        ts[p].nbytes = tdsl_dtype_size(t.dtype);
        for (int k = 0; k < t.rank; k++)
            ts[p].nbytes *= (size_t)t.shape[k];
    }
    int n = m->nparams;
    if (extra)
        ts[n++] = *extra;
    char err[512];
    ck_assert_msg(st_save(path, ts, n, err, sizeof err) == 0, "%s", err);
}

#define RESUME_CALLS 7
#define RESUME_AT 4   /* adam_accum (accumulate=3): one gradient is pending in the saved state */

START_TEST(resume_bit_exact)
{
    static const char *const exports[] = {"adam_plain", "adam_accum", "adamw_betas", "sgd_momentum"};
    model_data d;
    load_model(&d, "mlp");
    ir_module *m = d.m;
    char err[512], dir[] = "/tmp/tdsl-resume-XXXXXX", path[600], ponly[600], bad[600];
    ck_assert(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    snprintf(ponly, sizeof ponly, "%s/params.safetensors", dir);
    snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
    engines e;
    ck_assert_msg(engines_open(&e, m, "mlp", err, sizeof err) == 0, "%s", err);
    size_t sbytes = (size_t)pass_state_layout(m, NULL);
    for (int k = 0; k < 2; k++) {
        const compiled *c = &e.c[k];
        rt_fns r = fns_of(c, "mlp");
        tdsl_options seeded = TDSL_OPTIONS_INIT;
        seeded.seed = 77;   /* other initial params: a resumed run must not depend on them */
        for (size_t x = 0; x < sizeof exports / sizeof *exports; x++) {
            const ir_func *f = ir_module_find(m, exports[x]);
            ck_assert_ptr_nonnull(f);
            /* uninterrupted */
            float want[RESUME_CALLS], got[RESUME_CALLS];
            void *a = r.create(NULL);
            set_init(&r, a, &d);
            run_calls(c, a, &d, f, 0, RESUME_CALLS, want);
            size_t la;
            uint8_t *end_a = snapshot_all(&r, a, m, &la);
            /* interrupted: save after RESUME_AT calls, resume in a fresh instance */
            void *b = r.create(NULL);
            set_init(&r, b, &d);
            run_calls(c, b, &d, f, 0, RESUME_AT, got);
            ck_assert_int_eq(r.save(b, path), 0);
            write_params(ponly, &r, b, m, NULL);
            void *cc = r.create(&seeded);
            ck_assert_int_eq(r.load(cc, path), 0);
            size_t lb, lc;
            uint8_t *at_b = snapshot_all(&r, b, m, &lb), *at_c = snapshot_all(&r, cc, m, &lc);
            ck_assert(lb == lc && memcmp(at_b, at_c, lb) == 0);   /* params and the whole state block */
            run_calls(c, cc, &d, f, RESUME_AT, RESUME_CALLS, got);
            for (int i = RESUME_AT; i < RESUME_CALLS; i++)
                ck_assert_msg(memcmp(&got[i], &want[i], sizeof want[i]) == 0, "%s %s call %d: loss %.9g resumed, %.9g uninterrupted",
                              c->engine, exports[x], i, got[i], want[i]);
            uint8_t *end_c = snapshot_all(&r, cc, m, &lc);
            ck_assert_msg(lc == la && memcmp(end_c, end_a, la) == 0, "%s %s: the resumed run ends elsewhere", c->engine,
                          exports[x]);
            free(end_c);

            /* a params-only file: the params load, the state stays as it was (here: zero, so
             * Adam restarts its moments and the run ends elsewhere) */
            void *p = r.create(&seeded);
            ck_assert_int_eq(r.load(p, ponly), 0);
            size_t lp;
            uint8_t *at_p = snapshot_all(&r, p, m, &lp), *zeros = calloc(1, sbytes + 1);
            ck_assert(memcmp(at_p, at_b, lp - sbytes) == 0);
            ck_assert(memcmp(at_p + (lp - sbytes), zeros, sbytes) == 0);
            run_calls(c, p, &d, f, RESUME_AT, RESUME_CALLS, got);
            uint8_t *end_p = snapshot_all(&r, p, m, &lp);
            ck_assert_msg(memcmp(end_p, end_a, la - sbytes) != 0, "%s %s: the state made no difference", c->engine,
                          exports[x]);
            /* ... and over a trained instance it keeps that instance's state */
            uint8_t *before = snapshot_all(&r, p, m, &lp);
            ck_assert_int_eq(r.load(p, ponly), 0);
            uint8_t *after = snapshot_all(&r, p, m, &lp);
            ck_assert(memcmp(after + (lp - sbytes), before + (lp - sbytes), sbytes) == 0);
            ck_assert(memcmp(after, at_b, lp - sbytes) == 0);
            free(after);

            /* a state of the wrong shape, and a tensor the module does not have: refused,
             * nothing changed */
            char sname[128];
            snprintf(sname, sizeof sname, "%s.W1.%s", exports[x], strncmp(exports[x], "sgd", 3) ? "exp_avg" : "momentum_buffer");
            float junk[4 * 5] = {0};
            st_tensor wrong = {.dtype = ST_F32, .rank = 2, .shape = {4, 5}, .data = junk, .nbytes = sizeof junk};
            snprintf(wrong.name, sizeof wrong.name, "%s", sname);
            write_params(bad, &r, b, m, &wrong);
            before = (free(before), snapshot_all(&r, p, m, &lp));
            compiled cp = *c;
            cp.inst = p;
            ck_assert_int_eq(r.load(p, bad), TDSL_ERR_FORMAT);
            char want_msg[300];
            snprintf(want_msg, sizeof want_msg, "state '%s' is f32[4, 5] in the file, f32[4, 6] in the module", sname);
            ck_assert_msg(strstr(cp.error(p), want_msg), "%s", cp.error(p));
            after = snapshot_all(&r, p, m, &lp);
            ck_assert(memcmp(after, before, lp) == 0);
            free(after);
            snprintf(wrong.name, sizeof wrong.name, "%s.W9.exp_avg", exports[x]);
            wrong.rank = 1, wrong.shape[0] = 20;
            write_params(bad, &r, b, m, &wrong);
            ck_assert_int_eq(r.load(p, bad), TDSL_ERR_FORMAT);
            ck_assert_msg(strstr(cp.error(p), "in the file is not a param or state of module 'mlp'"), "%s", cp.error(p));
            after = snapshot_all(&r, p, m, &lp);
            ck_assert(memcmp(after, before, lp) == 0);
            free(after);
            free(before);
            free(end_p);
            free(at_p);
            free(zeros);
            free(at_b);
            free(at_c);
            free(end_a);
            r.destroy(p);
            r.destroy(cc);
            r.destroy(b);
            r.destroy(a);
        }
    }
    engines_close(&e);
    remove(path);
    remove(ponly);
    remove(bad);
    rmdir(dir);
    free_model(&d);
}
END_TEST

/* ---- the text IR of steps: print -> parse -> print is the identity, and the parsed
 * module runs the same step ---- */
static char *print_module(const ir_module *m)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ir_print_module(f, m);
    fclose(f);
    return buf;
}

START_TEST(text_round_trip)
{
    ir_module *m = compile_file("linreg");
    char *a = print_module(m);
    ck_assert_msg(strstr(a, "state adam_plain.W.exp_avg: f32[3, 1]"), "%s", a);
    ck_assert_msg(strstr(a, ", update param W = %"), "%s", a);
    ck_assert_msg(strstr(a, ", update state adam_plain.step = %"), "%s", a);
    arena ar2;
    arena_init(&ar2);
    src_file s2 = {.name = "linreg.ir", .text = a, .len = strlen(a)};
    ir_module *m2 = ir_parse_module(&ar2, &s2);
    ck_assert_msg(m2 != NULL, "the printed module does not parse back");
    ck_assert_int_eq(ir_verify(m2, stderr), 0);
    char *b = print_module(m2);
    ck_assert_str_eq(a, b);
    ck_assert_int_eq(m2->nstates, m->nstates);
    /* the parsed step computes what the original does */
    model_data d;
    load_model(&d, "linreg");   /* recompiles m: compare with m2 only */
    const ir_func *f = ir_module_find(m2, "adamw_plain");
    host_tensor params[2], *states = calloc((size_t)m2->nstates, sizeof *states), ref;
    for (int k = 0; k < 2; k++)
        copy_tensor(&params[k], &d.init[k]);
    for (int s = 0; s < m2->nstates; s++)
        ck_assert(host_tensor_alloc(&states[s], m2->states[s].dtype, m2->states[s].rank, m2->states[s].shape));
    load_npy("linreg_adamw_plain", &ref);
    char err[512];
    for (int i = 0; i < 5; i++) {
        host_tensor args[2] = {row_of(&d.x, i), row_of(&d.y, i)}, out = {0};
        ck_assert_msg(ir_eval_step(f, args, params, states, &out, NULL, err, sizeof err) == 0, "%s", err);
        float *pd[2] = {params[0].data, params[1].data};
        check_row("parsed linreg adamw_plain", m2, &ref, i, host_tensor_get(&out, 0), pd);
        host_tensor_free(&out);
        host_tensor_free(&args[0]);
        host_tensor_free(&args[1]);
    }
    /* the step count is a state too: 5 after five calls */
    int t = -1;
    for (int s = 0; s < m2->nstates; s++)
        if (strcmp(m2->states[s].name, "adamw_plain.step") == 0)
            t = s;
    ck_assert_int_ge(t, 0);
    ck_assert_int_eq(((int64_t *)states[t].data)[0], 5);
    for (int s = 0; s < m2->nstates; s++)
        host_tensor_free(&states[s]);
    free(states);
    host_tensor_free(&params[0]);
    host_tensor_free(&params[1]);
    host_tensor_free(&ref);
    free_model(&d);
    free(a);
    free(b);
    arena_free(&ar2);
}
END_TEST

/* Parses IR text that must fail; the first diagnostic must contain want. */
static void expect_ir_error(const char *text, const char *want)
{
    arena a2;
    arena_init(&a2);
    FILE *tmp = tmpfile();
    diag_reset(tmp);
    src_file s2 = {.name = "t.ir", .text = text, .len = strlen(text)};
    ir_module *m = ir_parse_module(&a2, &s2);
    rewind(tmp);
    char buf[2048];
    size_t n = fread(buf, 1, sizeof buf - 1, tmp);
    buf[n] = 0;
    fclose(tmp);
    diag_reset(stderr);
    ck_assert_msg(m == NULL, "expected an error for:\n%s", text);
    ck_assert_msg(strstr(buf, want), "expected '%s' in:\n%s", want, buf);
    arena_free(&a2);
}

#define HEAD "module t\nparam W: f32[2]\nstate m: f32[2]\nstate t: i64\nfunc s() {\n  %0 = param index=0 : f32[2]\n" \
             "  %1 = state index=0 : f32[2]\n  %2 = add %0, %1 : f32[2]\n  %3 = state index=1 : i64\n"

START_TEST(text_errors)
{
    expect_ir_error(HEAD "  return %2, update param V = %2\n}\n", "the module has no param named 'V'");
    expect_ir_error(HEAD "  return update param W = %2, %2\n}\n", "plain results come before the update outputs");
    expect_ir_error(HEAD "  return %2, update param W = %2, update param W = %0\n}\n", "param 'W' is updated twice");
    expect_ir_error(HEAD "  return %2, update state t = %2\n}\n", "the update of state 't' is f32[2], but state 't' is i64");
    expect_ir_error(HEAD "  return %2, update thing W = %2\n}\n", "expected 'param' or 'state' after 'update'");
    expect_ir_error("module t\nstate m: f32[2]\nstate m: f32[3]\n", "state 'm' is declared twice");
    expect_ir_error("module t\nfunc s() {\n  %0 = state index=0 : f32\n  return %0\n}\n",
                    "index 0 out of range (module has 0 states)");
    /* a well-formed one parses, and the verifier catches what the builder API can break */
    arena a2;
    arena_init(&a2);
    const char *ok = HEAD "  return %2, update param W = %2, update state m = %1\n}\n";
    src_file s2 = {.name = "t.ir", .text = ok, .len = strlen(ok)};
    ir_module *m = ir_parse_module(&a2, &s2);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(ir_verify(m, NULL), 0);
    ir_func *f = m->funcs[0];
    ck_assert_int_eq(ir_num_results(f), 1);
    f->updates[2].index = 1;   /* state t is i64 */
    ck_assert_int_eq(ir_verify(m, NULL), 1);
    f->updates[2] = (ir_update){IR_UPD_PARAM, 0};   /* W twice */
    ck_assert_int_ge(ir_verify(m, NULL), 1);
    f->updates[2] = (ir_update){IR_UPD_NONE, 0};   /* a result after an update */
    ck_assert_int_eq(ir_verify(m, NULL), 1);
    arena_free(&a2);
}
END_TEST

/* ---- every update reads the old values: a step that swaps two params (IR text), and one
 * whose new param is also read by a later kernel ---- */
START_TEST(updates_commit_after_reads)
{
    const char *text = "module sw\nparam A: f32[3] = ones\nparam B: f32[3] = full(2)\nstate n: f32[3]\n"
                       "func f(x: f32[3]) {\n"
                       "  %0 = param index=0 : f32[3]\n  %1 = param index=1 : f32[3]\n  %2 = arg index=0 : f32[3]\n"
                       "  %3 = add %0, %2 : f32[3]\n  %4 = mul %3, %1 : f32[3]\n  %5 = sum %4 axes=[0] keepdim=0 : f32\n"
                       "  %6 = state index=0 : f32[3]\n  %7 = add %6, %3 : f32[3]\n"
                       "  return %5, update param A = %1, update param B = %3, update state n = %7\n}\n";
    arena a2;
    arena_init(&a2);
    src_file s2 = {.name = "sw.ir", .text = text, .len = strlen(text)};
    ir_module *m = ir_parse_module(&a2, &s2);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(ir_verify(m, stderr), 0);
    const ir_func *f = m->funcs[0];
    float xs[3] = {1, 2, 3};
    host_tensor x = {.dtype = DT_F32, .rank = 1, .shape = {3}, .data = xs};
    /* A, B, n after two calls: A1 = B0 = 2, B1 = A0 + x = 1 + x, n1 = 1 + x;
     * A2 = B1 = 1 + x, B2 = A1 + x = 2 + x, n2 = n1 + A1 + x = 3 + 2x; loss2 = sum((A1 + x) B1) */
    float wantA[3], wantB[3], wantN[3], wantLoss = 0;
    for (int k = 0; k < 3; k++) {
        wantA[k] = 1 + xs[k], wantB[k] = 2 + xs[k], wantN[k] = 3 + 2 * xs[k];
        wantLoss += (2 + xs[k]) * (1 + xs[k]);
    }
    /* the evaluator */
    host_tensor params[2], state = {0}, out = {0};
    float a0[3] = {1, 1, 1}, b0[3] = {2, 2, 2};
    ck_assert(host_tensor_alloc(&params[0], DT_F32, 1, (int64_t[]){3}));
    ck_assert(host_tensor_alloc(&params[1], DT_F32, 1, (int64_t[]){3}));
    ck_assert(host_tensor_alloc(&state, DT_F32, 1, (int64_t[]){3}));
    memcpy(params[0].data, a0, sizeof a0);
    memcpy(params[1].data, b0, sizeof b0);
    char err[512];
    for (int call = 0; call < 2; call++) {
        ck_assert_msg(ir_eval_step(f, &x, params, &state, &out, NULL, err, sizeof err) == 0, "%s", err);
        if (call == 1)
            ck_assert_float_eq(host_tensor_get(&out, 0), wantLoss);
        host_tensor_free(&out);
    }
    ck_assert_mem_eq(params[0].data, wantA, sizeof wantA);
    ck_assert_mem_eq(params[1].data, wantB, sizeof wantB);
    ck_assert_mem_eq(state.data, wantN, sizeof wantN);
    /* compiled */
    engines e;
    ck_assert_msg(engines_open(&e, m, "sw", err, sizeof err) == 0, "%s", err);
    for (int k = 0; k < 2; k++) {
        compiled *cc = &e.c[k];
        tdsl_tensor (*param)(void *, int);
        *(void **)&param = engine_lookup(cc, "sw", "param");
        for (int call = 0; call < 2; call++) {
            ck_assert_msg(engine_call(cc, "sw", f, &x, &out, err, sizeof err) == 0, "%s", err);
            if (call == 1)
                ck_assert_msg(host_tensor_get(&out, 0) == wantLoss, "%s: loss %g", cc->engine, host_tensor_get(&out, 0));
            host_tensor_free(&out);
        }
        ck_assert_msg(memcmp(param(cc->inst, 0).data, wantA, sizeof wantA) == 0, "%s: A", cc->engine);
        ck_assert_msg(memcmp(param(cc->inst, 1).data, wantB, sizeof wantB) == 0, "%s: B", cc->engine);
    }
    engines_close(&e);
    host_tensor_free(&params[0]);
    host_tensor_free(&params[1]);
    host_tensor_free(&state);
    arena_free(&a2);
}
END_TEST

/* ---- user errors of sgd/adam/adamw: clear messages with locations ---- */
static void expect_error(const char *decl, const char *want)
{
    char text[2048];
    snprintf(text, sizeof text,
             "param W: f32[3]\nparam k: i32[2]\nfn f(x: f32[3]) { return sum(x * W) }\n"
             "export fn g(x: f32[3]) -> f32 { return sum(x) }\n%s\n", decl);
    ir_module *m = compile("t", text);
    ck_assert_msg(m == NULL, "expected an error for: %s", decl);
    ck_assert_msg(strstr(diag_buf, want), "for '%s': expected '%s' in:\n%s", decl, want, diag_buf);
}

START_TEST(user_errors)
{
    expect_error("export s = sgd(f, lr=0.1, precision=\"mixed-bf16\")",
                 "5:27: error: precision= comes with mixed precision, not in this version");
    expect_error("export s = sgd(f, lr=0.1, precision=f32)", "precision= comes with mixed precision, not in this version");
    expect_error("export s = sgd(f, lr=0.1, momentun=0.9)", "sgd() has no option 'momentun'");
    expect_error("export s = sgd(f, lr=0.1, momentun=0.9)", "did you mean 'momentum'?");
    expect_error("export s = adam(f, betas=0.9)", "did you mean 'beta1'?");
    expect_error("export s = adamw(f, zzz=1)", "adamw() takes: lr, beta1, beta2, eps, weight_decay, params, accumulate, precision");
    expect_error("export s = sgd(f)", "sgd() needs a learning rate: sgd(f, lr=0.1)");
    expect_error("export s = sgd(f, lr=0.1, nesterov=true)", "nesterov=true needs a momentum > 0");
    expect_error("export s = sgd(f, lr=0.1, nesterov=1)", "nesterov= takes true or false");
    expect_error("export s = sgd(f, lr=-1)", "sgd() needs lr in [0, inf), got -1");
    expect_error("export s = adam(f, beta1=1)", "adam() needs beta1 in [0, 1), got 1");
    expect_error("export s = sgd(f, lr=0.1, accumulate=0)", "accumulate= takes a whole number of calls >= 1");
    expect_error("export s = sgd(f, lr=0.1, accumulate=1.5)", "accumulate= takes a whole number of calls >= 1");
    expect_error("export s = sgd(f, lr=0.1, lr=0.2)", "sgd() option 'lr' is given twice");
    expect_error("export s = sgd(f, 0.1, 0.9, 0, false, 3)", "sgd() takes at most 4 options by position");
    expect_error("export s = sgd(f, lr=0.1, params=[V])", "params= names params to train; 'V' is not a param");
    expect_error("export s = sgd(f, lr=0.1, params=[V])", "did you mean 'W'?");
    expect_error("export s = sgd(f, lr=0.1, params=[W, W])", "'W' appears twice in params=");
    expect_error("export s = sgd(f, lr=0.1, params=[k])", "gradients through integer values are not defined");
    expect_error("export s = sgd(g, lr=0.1)", "sgd() of 'g', which is an exported fn");
    expect_error("export s = adam(h)", "adam() of 'h', which is not a fn");
    expect_error("fn v(x: f32[3]) { return x * W }\nexport s = sgd(v, lr=0.1)",
                 "sgd(v) needs a scalar result; v returns f32[3]: reduce it with sum(...) or mean(...)");
    expect_error("fn u(x) { return sum(x * W) }\nexport s = sgd(u, lr=0.1)", "sgd(u) needs every argument of 'u' typed");
    /* a module with no float params has nothing to train */
    ir_module *m = compile("t", "param k: i32[2]\nfn f(x: f32[3]) { return sum(x) }\nexport s = sgd(f, lr=0.1)\n");
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(diag_buf, "sgd(f) has nothing to train: the module declares no floating-point params"), "%s",
                  diag_buf);
    /* integer params are left out by default: this one compiles */
    m = compile("t", "param W: f32[3]\nparam k: i32[2]\nfn f(x: f32[3]) { return sum(x * W) }\n"
                     "export s = sgd(f, lr=0.1, momentum=0.9)\n");
    ck_assert_msg(m != NULL, "%s", diag_buf);
    const ir_func *f = ir_module_find(m, "s");
    ck_assert_int_eq(f->nouts, 3);   /* loss, W, W's momentum buffer */
    ck_assert_int_eq(f->updates[1].kind, IR_UPD_PARAM);
    ck_assert_int_eq(f->updates[1].index, 0);
    ck_assert_int_eq(f->updates[2].kind, IR_UPD_STATE);
    ck_assert_str_eq(m->states[f->updates[2].index].name, "s.W.momentum_buffer");
}
END_TEST

/* ---- the C interface: the step shows only F's value; `tdslc run` semantics ---- */
START_TEST(header_and_plan)
{
    ir_module *m = compile("hm", "param W: f32[3]\nfn f(x: f32[3]) { return sum(x * W) }\n"
                                 "export s = adam(f, lr=0.1, accumulate=2)\n");
    ck_assert_msg(m != NULL, "%s", diag_buf);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    cg_emit_header(out, m, NULL);
    fclose(out);
    ck_assert_msg(strstr(buf, "int hm_s(hm *m,\n"), "%s", buf);
    ck_assert_msg(strstr(buf, "float *loss);"), "%s", buf);
    ck_assert_msg(strstr(buf, "a training step: updates 1 param and 5 optimizer state tensors inside m"), "%s", buf);
    free(buf);
    /* the memory plan writes each update in place (its kernel is elementwise, nothing after
     * it reads the old value), with a slot in the check_finite backup, or stages it in the
     * arena and commits it after the kernels */
    const ir_func *f = ir_module_find(m, "s");
    arena a2;
    arena_init(&a2);
    pass_plan pl = pass_pipeline(&a2, f, true);
    int in_place = 0;
    for (int k = ir_num_results(f); k < f->nouts; k++) {
        const pass_mem *home = &pl.mem->mem[f->outs[k]];
        if (pl.mem->in_place[k]) {
            in_place++;
            ck_assert_int_eq(pl.mem->stage[k], -1);
            ck_assert(home->kind == (f->updates[k].kind == IR_UPD_PARAM ? MEM_PARAM : MEM_STATE));
            ck_assert_int_eq(home->index, f->updates[k].index);
            ck_assert_int_ge(pl.mem->backup[k], 0);
            ck_assert_int_le(pl.mem->backup[k] + home->bytes, pl.mem->backup_bytes);
        } else {
            ck_assert_int_ge(pl.mem->stage[k], 0);
            ck_assert_int_le(pl.mem->stage[k] + 4, pl.mem->arena_bytes);
        }
    }
    ck_assert_int_ge(in_place, 1);
    ck_assert_int_eq(pl.mem->mem[f->outs[1]].kind, MEM_PARAM);   /* W itself */
    ck_assert_int_eq(pl.mem->stage[0], -1);
    ck_assert_int_eq(pass_state_layout(m, NULL), 5 * 64);   /* calls, step, acc, m, v: 64-byte slots */
    arena_free(&a2);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("train");
    TCase *tt = tcase_create("torch");
    tcase_set_timeout(tt, 600);
    tcase_add_loop_test(tt, trajectories, 0, 2);
    suite_add_tcase(s, tt);
    TCase *tr = tcase_create("runtime");
    tcase_set_timeout(tr, 120);
    tcase_add_test(tr, check_finite_steps);
    tcase_add_test(tr, reset_zeroes_state);
    tcase_add_test(tr, updates_commit_after_reads);
    tcase_add_test(tr, resume_bit_exact);
    suite_add_tcase(s, tr);
    TCase *tx = tcase_create("text");
    tcase_set_timeout(tx, 60);
    tcase_add_test(tx, text_round_trip);
    tcase_add_test(tx, text_errors);
    tcase_add_test(tx, user_errors);
    tcase_add_test(tx, header_and_plan);
    suite_add_tcase(s, tx);
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
