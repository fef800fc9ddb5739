/* libtdslrt: instances, errors, parameter initialization (bit-identical to the compiler's
 * host_tensor_set rounding), the thread pool, and safetensors save/load with every refusal. */
#include <check.h>
#include "files.h"
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/tensor.h"
#include "runtime/philox.h"
#include "runtime/safetensors.h"
#include "tdsl/runtime.h"

/* Sanitizers abort on an impossible allocation unless told to return NULL, which is the
 * behaviour bad_descriptors_refused tests. (Hooks the sanitizer runtimes look up.) */
const char *__asan_default_options(void);
const char *__tsan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }
const char *__tsan_default_options(void) { return "allocator_may_return_null=1"; }

/* ---------------------------------------------------------------- fixtures */

/* A small module: every initializer kind and four dtypes. The f16 uniform range passes
 * 65504, so rounding to inf is exercised too. */
static const tdsl_param_desc PARAMS[] = {
    {"W1", TDSL_F32, 2, {7, 5}, RT_INIT_KAIMING_UNIFORM, 0, 0},
    {"b1", TDSL_F32, 1, {5}, RT_INIT_FULL, 0.1, 0},
    {"E", TDSL_BF16, 2, {3, 4}, RT_INIT_NORMAL, 0.5, 2},
    {"h", TDSL_F16, 1, {9}, RT_INIT_UNIFORM, -70000, 70000},
    {"step", TDSL_I64, 0, {0}, RT_INIT_FULL, -3.9, 0},
    {"mask", TDSL_BOOL, 1, {3}, RT_INIT_ONES, 0, 0},
    {"w64", TDSL_F64, 1, {4}, RT_INIT_NORMAL, 0, 1},
    {"k", TDSL_I32, 1, {2}, RT_INIT_FULL, 7.9, 0},
};
#define NP ((int)(sizeof PARAMS / sizeof PARAMS[0]))
static const tdsl_module_desc DESC = {TDSL_ABI_VERSION, "tmod", NP, PARAMS, 1000, 72, 0, NULL, 0};

/* The same params with optimizer state, laid out as pass_state_layout does (64-byte slots). */
static const tdsl_state_desc STATES[] = {
    {"step.W1.exp_avg", TDSL_F32, 2, {7, 5}, 0},
    {"step.step", TDSL_I64, 0, {0}, 192},
    {"step.h.exp_avg_sq", TDSL_F16, 1, {9}, 256},
    {"step.calls", TDSL_I32, 0, {0}, 320},
};
#define NS ((int)(sizeof STATES / sizeof STATES[0]))
static const tdsl_module_desc SDESC = {TDSL_ABI_VERSION, "tmod", NP, PARAMS, 1000, 384, NS, STATES, 0};

static tdsl_instance *make(uint64_t seed, int threads)
{
    tdsl_options o = TDSL_OPTIONS_INIT;
    o.seed = seed;
    o.threads = threads;
    tdsl_instance *m = tdsl_rt_create(&DESC, &o);
    ck_assert_msg(m != NULL, "%s", tdsl_rt_error(NULL));
    return m;
}

static char tmpdir[256];

static void rm_rf(const char *path)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "chmod -R u+w '%s' 2>/dev/null; rm -rf '%s'", path, path);
    if (system(cmd) != 0) { /* best effort */ }
}

/* Unchecked fixtures run in the runner, which keeps its privileges. */
static void dir_setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tdsl_test_rt_XXXXXX");
    if (!mkdtemp(tmpdir) || chmod(tmpdir, 0755) != 0)
        tmpdir[0] = 0;
}

static void dir_teardown(void)
{
    if (tmpdir[0])
        rm_rf(tmpdir);
}

static void tmp_path(char *out, size_t n, const char *name)
{
    ck_assert(tmpdir[0]);
    snprintf(out, n, "%s/%s", tmpdir, name);
}

static size_t param_bytes(tdsl_instance *m, int i)
{
    tdsl_tensor t = tdsl_rt_param(m, i);
    size_t n = tdsl_dtype_size(t.dtype);
    for (int k = 0; k < t.rank; k++)
        n *= (size_t)t.shape[k];
    return n;
}

/* All params concatenated: to see that a failed load changed nothing. */
static uint8_t *snapshot(tdsl_instance *m, size_t *len)
{
    size_t total = 0;
    for (int i = 0; i < NP; i++)
        total += param_bytes(m, i);
    uint8_t *b = malloc(total), *p = b;
    for (int i = 0; i < NP; i++) {
        memcpy(p, tdsl_rt_param(m, i).data, param_bytes(m, i));
        p += param_bytes(m, i);
    }
    *len = total;
    return b;
}

static void assert_unchanged(tdsl_instance *m, const uint8_t *snap, size_t len)
{
    size_t now_len;
    uint8_t *now = snapshot(m, &now_len);
    ck_assert_uint_eq(now_len, len);
    ck_assert_msg(memcmp(now, snap, len) == 0, "a failed load modified the params");
    free(now);
}

/* ---------------------------------------------------------------- instances */

START_TEST(create_destroy_cycles)
{
    for (int k = 0; k < 100; k++) {
        tdsl_options o = TDSL_OPTIONS_INIT;
        o.seed = (uint64_t)k;
        o.threads = 1 + k % 4;
        tdsl_instance *m = tdsl_rt_create(&DESC, &o);
        ck_assert_ptr_nonnull(m);
        ck_assert_int_eq(tdsl_rt_num_threads(m), 1 + k % 4);
        tdsl_rt_destroy(m);
    }
    tdsl_instance *m = tdsl_rt_create(&DESC, NULL);   /* defaults */
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(tdsl_rt_error(m), "");
    tdsl_rt_destroy(m);
}
END_TEST

START_TEST(memory_blocks)
{
    tdsl_options o = TDSL_OPTIONS_INIT;
    o.check_finite = 1;
    tdsl_instance *m = tdsl_rt_create(&DESC, &o);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(tdsl_rt_check_finite(m), 1);
    uint8_t *a = tdsl_rt_arena(m), *s = tdsl_rt_state(m);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq((uintptr_t)a % 64, 0);
    ck_assert_uint_eq((uintptr_t)s % 64, 0);
    memset(a, 0xab, DESC.arena_bytes);   /* ASan: the whole arena is ours */
    for (uint64_t i = 0; i < DESC.state_bytes; i++)
        ck_assert_uint_eq(s[i], 0);
    for (int i = 0; i < NP; i++) {
        void *d = tdsl_rt_param_data(m, i);
        ck_assert_ptr_eq(d, tdsl_rt_param(m, i).data);
        ck_assert_uint_eq((uintptr_t)d % 64, 0);
    }
    tdsl_rt_destroy(m);
    /* empty blocks are still valid pointers */
    static const tdsl_module_desc empty = {TDSL_ABI_VERSION, "empty", 0, NULL, 0, 0, 0, NULL, 0};
    m = tdsl_rt_create(&empty, NULL);
    ck_assert_ptr_nonnull(m);
    ck_assert_ptr_nonnull(tdsl_rt_arena(m));
    ck_assert_ptr_nonnull(tdsl_rt_state(m));
    ck_assert_ptr_null(tdsl_rt_param(m, 0).data);
    tdsl_rt_destroy(m);
}
END_TEST

START_TEST(param_introspection)
{
    tdsl_instance *m = make(0, 1);
    tdsl_tensor t = tdsl_rt_param(m, 0);
    ck_assert_str_eq(t.name, "W1");
    ck_assert_int_eq(t.dtype, TDSL_F32);
    ck_assert_int_eq(t.rank, 2);
    ck_assert_int_eq(t.shape[0], 7);
    ck_assert_int_eq(t.shape[1], 5);
    ck_assert_int_eq(t.strides[0], 5);
    ck_assert_int_eq(t.strides[1], 1);
    t = tdsl_rt_param(m, 4);
    ck_assert_str_eq(t.name, "step");
    ck_assert_int_eq(t.rank, 0);
    ck_assert_ptr_nonnull(t.data);
    t = tdsl_rt_param(m, 2);
    ck_assert_int_eq(t.strides[0], 4);
    ck_assert_str_eq(tdsl_rt_error(m), "");
    for (int bad = -1; bad <= NP; bad += NP + 1) {
        t = tdsl_rt_param(m, bad);
        ck_assert_ptr_null(t.data);
        ck_assert_int_eq(t.rank, 0);
        ck_assert_ptr_nonnull(t.name);
        ck_assert_msg(strstr(tdsl_rt_error(m), "out of range"), "%s", tdsl_rt_error(m));
        tdsl_rt_clear_error(m);
        ck_assert_ptr_null(tdsl_rt_param_data(m, bad));
        ck_assert_str_ne(tdsl_rt_error(m), "");
        tdsl_rt_clear_error(m);
    }
    tdsl_rt_destroy(m);
}
END_TEST

/* The compiler's way (tools/main.c): rt_init_values, then host_tensor_set per element. */
static void assert_params_match_evaluator(tdsl_instance *m, uint64_t seed)
{
    for (int i = 0; i < NP; i++) {
        const tdsl_param_desc *p = &PARAMS[i];
        host_tensor h;
        ck_assert(host_tensor_alloc(&h, (ir_dtype)p->dtype, p->rank, p->shape));
        int64_t n = host_tensor_numel(&h);
        double *v = malloc(sizeof(double) * (size_t)n);
        rt_init_values(p->init, p->a, p->b, p->rank ? p->shape[0] : 1, seed, p->name, n, v);
        for (int64_t k = 0; k < n; k++)
            host_tensor_set(&h, k, v[k]);
        tdsl_tensor t = tdsl_rt_param(m, i);
        ck_assert_uint_eq(param_bytes(m, i), host_tensor_bytes(&h));
        ck_assert_msg(memcmp(t.data, h.data, host_tensor_bytes(&h)) == 0, "param '%s' differs (seed %llu)",
                      p->name, (unsigned long long)seed);
        free(v);
        host_tensor_free(&h);
    }
}

START_TEST(params_bit_identical_to_evaluator)
{
    uint64_t seeds[] = {0, 1, 42, (UINT64_C(1) << 40) + 5};
    for (int s = 0; s < 4; s++) {
        tdsl_instance *m = make(seeds[s], 1);
        assert_params_match_evaluator(m, seeds[s]);
        tdsl_rt_destroy(m);
    }
    /* spot values: rounding really happened, and the f16 range overflowed to +-inf */
    tdsl_instance *m = make(0, 1);
    ck_assert(((float *)tdsl_rt_param(m, 1).data)[4] == 0.1f);
    ck_assert_int_eq(((int64_t *)tdsl_rt_param(m, 4).data)[0], -3);
    ck_assert_int_eq(((int32_t *)tdsl_rt_param(m, 7).data)[1], 7);
    ck_assert_int_eq(((uint8_t *)tdsl_rt_param(m, 5).data)[2], 1);
    const uint16_t *h = tdsl_rt_param(m, 3).data;
    int infs = 0;
    for (int k = 0; k < 9; k++)
        infs += (h[k] & 0x7fff) == 0x7c00;
    ck_assert_int_lt(infs, 9);
    float bound = 1.0f / sqrtf(7.0f);
    const float *w = tdsl_rt_param(m, 0).data;
    for (int k = 0; k < 35; k++)
        ck_assert(w[k] > -bound && w[k] < bound);
    tdsl_rt_destroy(m);
    /* the documented known answer: normal(0, 1), seed 0, "W1" */
    static const tdsl_param_desc one[] = {{"W1", TDSL_F32, 1, {4}, RT_INIT_NORMAL, 0, 1}};
    static const tdsl_module_desc d1 = {TDSL_ABI_VERSION, "ka", 1, one, 0, 0, 0, NULL, 0};
    m = tdsl_rt_create(&d1, NULL);
    ck_assert_ptr_nonnull(m);
    const float *x = tdsl_rt_param(m, 0).data;
    ck_assert(x[0] == (float)0.83807304691256723 && x[3] == (float)-1.0616653019159117);
    tdsl_rt_destroy(m);
}
END_TEST

START_TEST(reset_params_reinitializes)
{
    tdsl_instance *m = make(0, 1);
    size_t l0, l5;
    uint8_t *s0 = snapshot(m, &l0);
    tdsl_rt_reset_params(m, 5);
    assert_params_match_evaluator(m, 5);
    uint8_t *s5 = snapshot(m, &l5);
    ck_assert(memcmp(s0, s5, l0) != 0);
    memset(tdsl_rt_param(m, 0).data, 0, param_bytes(m, 0));
    tdsl_rt_reset_params(m, 0);
    assert_unchanged(m, s0, l0);
    tdsl_rt_reset_params(NULL, 3);   /* no crash */
    free(s0);
    free(s5);
    tdsl_rt_destroy(m);
}
END_TEST

START_TEST(bad_descriptors_refused)
{
    ck_assert_ptr_null(tdsl_rt_create(NULL, NULL));
    ck_assert_msg(strstr(tdsl_rt_error(NULL), "NULL module descriptor"), "%s", tdsl_rt_error(NULL));

    tdsl_module_desc d = DESC;
    d.abi_version = TDSL_ABI_VERSION + 1;
    ck_assert_ptr_null(tdsl_rt_create(&d, NULL));
    char want[160];
    snprintf(want, sizeof want, "module 'tmod' was compiled for runtime ABI %d, but this libtdslrt has ABI %d",
             TDSL_ABI_VERSION + 1, TDSL_ABI_VERSION);
    ck_assert_msg(strstr(tdsl_rt_error(NULL), want), "%s", tdsl_rt_error(NULL));
    d.abi_version = 1;   /* an object from before the state table: refused before it is read */
    ck_assert_ptr_null(tdsl_rt_create(&d, NULL));
    ck_assert_msg(strstr(tdsl_rt_error(NULL), "compiled for runtime ABI 1"), "%s", tdsl_rt_error(NULL));

    d = DESC;
    d.nparams = -1;
    ck_assert_ptr_null(tdsl_rt_create(&d, NULL));
    ck_assert_msg(strstr(tdsl_rt_error(NULL), "malformed"), "%s", tdsl_rt_error(NULL));

    tdsl_param_desc ps[2] = {PARAMS[0], PARAMS[1]};
    d.nparams = 2;
    d.params = ps;
    ps[1].name = "W1";
    ck_assert_ptr_null(tdsl_rt_create(&d, NULL));
    ck_assert_msg(strstr(tdsl_rt_error(NULL), "'W1' is used twice"), "%s", tdsl_rt_error(NULL));

    ps[1] = PARAMS[1];
    ps[1].dtype = 42;
    ck_assert_ptr_null(tdsl_rt_create(&d, NULL));
    ck_assert_msg(strstr(tdsl_rt_error(NULL), "param 'b1' has an invalid dtype"), "%s", tdsl_rt_error(NULL));

    ps[1] = PARAMS[1];
    ps[1].shape[0] = -3;
    ck_assert_ptr_null(tdsl_rt_create(&d, NULL));
    ck_assert_msg(strstr(tdsl_rt_error(NULL), "param 'b1' has an invalid shape"), "%s", tdsl_rt_error(NULL));

    ps[1] = PARAMS[1];
    ps[1].rank = 3;   /* overflow: 2^40 * 2^40 * 2^40 elements */
    ps[1].shape[0] = ps[1].shape[1] = ps[1].shape[2] = INT64_C(1) << 40;
    ck_assert_ptr_null(tdsl_rt_create(&d, NULL));
    ck_assert_msg(strstr(tdsl_rt_error(NULL), "invalid shape"), "%s", tdsl_rt_error(NULL));

    char longname[200];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    ps[1] = PARAMS[1];
    ps[1].name = longname;
    ck_assert_ptr_null(tdsl_rt_create(&d, NULL));
    ck_assert_msg(strstr(tdsl_rt_error(NULL), "invalid name"), "%s", tdsl_rt_error(NULL));

    /* an arena nobody can allocate: NULL with a message, nothing leaked (ASan) */
    d = DESC;
    d.arena_bytes = UINT64_C(1) << 62;
    ck_assert_ptr_null(tdsl_rt_create(&d, NULL));
    ck_assert_msg(strstr(tdsl_rt_error(NULL), "out of memory allocating the arena"), "%s", tdsl_rt_error(NULL));

    /* the state table: names shared with params or each other, tensors outside the block
     * or on top of each other */
    tdsl_state_desc ss[NS];
    memcpy(ss, STATES, sizeof ss);
    d = SDESC;
    d.states = ss;
    ss[1].name = "W1";
    ck_assert_ptr_null(tdsl_rt_create(&d, NULL));
    ck_assert_msg(strstr(tdsl_rt_error(NULL), "state 'W1' has the name of a param"), "%s", tdsl_rt_error(NULL));
    ss[1].name = "step.calls";
    ck_assert_ptr_null(tdsl_rt_create(&d, NULL));
    ck_assert_msg(strstr(tdsl_rt_error(NULL), "state name 'step.calls' is used twice"), "%s", tdsl_rt_error(NULL));
    ss[1] = STATES[1];
    ss[1].name = "__metadata__";
    ck_assert_ptr_null(tdsl_rt_create(&d, NULL));
    ck_assert_msg(strstr(tdsl_rt_error(NULL), "state 1 has an invalid name"), "%s", tdsl_rt_error(NULL));
    ss[1] = STATES[1];
    ss[3].offset = 380;   /* 4 bytes from 380 end at 384: fits; from 381 they do not */
    tdsl_instance *fits = tdsl_rt_create(&d, NULL);
    ck_assert_msg(fits != NULL, "%s", tdsl_rt_error(NULL));
    tdsl_rt_destroy(fits);
    ss[3].offset = 381;
    ck_assert_ptr_null(tdsl_rt_create(&d, NULL));
    ck_assert_msg(strstr(tdsl_rt_error(NULL), "state 'step.calls' lies outside the state block"), "%s",
                  tdsl_rt_error(NULL));
    ss[3].offset = UINT64_MAX - 1;   /* offset + bytes would wrap */
    ck_assert_ptr_null(tdsl_rt_create(&d, NULL));
    ck_assert_msg(strstr(tdsl_rt_error(NULL), "lies outside the state block"), "%s", tdsl_rt_error(NULL));
    ss[3] = STATES[3];
    ss[1].offset = 136;   /* the last 4 bytes of step.W1.exp_avg (140 bytes) */
    ck_assert_ptr_null(tdsl_rt_create(&d, NULL));
    ck_assert_msg(strstr(tdsl_rt_error(NULL), "states 'step.W1.exp_avg' and 'step.step' overlap"), "%s",
                  tdsl_rt_error(NULL));
    ss[1] = STATES[1];
    ss[2].dtype = 9;
    ck_assert_ptr_null(tdsl_rt_create(&d, NULL));
    ck_assert_msg(strstr(tdsl_rt_error(NULL), "state 'step.h.exp_avg_sq' has an invalid dtype, rank or shape"), "%s",
                  tdsl_rt_error(NULL));
    d = SDESC;
    d.states = NULL;
    ck_assert_ptr_null(tdsl_rt_create(&d, NULL));
    ck_assert_msg(strstr(tdsl_rt_error(NULL), "malformed module descriptor (state table)"), "%s", tdsl_rt_error(NULL));
    d.nstates = -1;
    ck_assert_ptr_null(tdsl_rt_create(&d, NULL));

    /* a successful create clears the per-thread message */
    tdsl_instance *m = make(0, 1);
    ck_assert_str_eq(tdsl_rt_error(NULL), "NULL instance");
    tdsl_rt_destroy(m);
}
END_TEST

START_TEST(errors_are_bounded_and_formatted)
{
    tdsl_instance *m = make(0, 1);
    ck_assert_int_eq(tdsl_rt_fail(m, TDSL_ERR_RUNTIME, "index %d out of range [0, %d)", 12, 10), TDSL_ERR_RUNTIME);
    ck_assert_str_eq(tdsl_rt_error(m), "index 12 out of range [0, 10)");
    char big[3000];
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = 0;
    tdsl_rt_fail(m, TDSL_ERR_ARG, "%s", big);
    size_t len = strlen(tdsl_rt_error(m));
    ck_assert(len > 100 && len < 1024);
    /* the message may quote the previous one */
    tdsl_rt_fail(m, TDSL_ERR_ARG, "short");
    tdsl_rt_fail(m, TDSL_ERR_ARG, "again: %s", tdsl_rt_error(m));
    ck_assert_str_eq(tdsl_rt_error(m), "again: short");
    tdsl_rt_clear_error(m);
    ck_assert_str_eq(tdsl_rt_error(m), "");
    /* instances are independent */
    tdsl_instance *m2 = make(0, 1);
    tdsl_rt_fail(m2, TDSL_ERR_IO, "only m2");
    ck_assert_str_eq(tdsl_rt_error(m), "");
    ck_assert_str_eq(tdsl_rt_error(m2), "only m2");
    /* with no instance the message is kept per thread */
    ck_assert_int_eq(tdsl_rt_fail(NULL, TDSL_ERR_NULL, "mod_forward: NULL instance"), TDSL_ERR_NULL);
    ck_assert_str_eq(tdsl_rt_error(NULL), "mod_forward: NULL instance");
    tdsl_rt_clear_error(NULL);
    ck_assert_str_eq(tdsl_rt_error(NULL), "NULL instance");
    tdsl_rt_destroy(m);
    tdsl_rt_destroy(m2);
}
END_TEST

START_TEST(names_of_dtypes_and_statuses)
{
    const char *names[] = {"bool", "i32", "i64", "f16", "bf16", "f32", "f64"};
    const size_t sizes[] = {1, 4, 8, 2, 2, 4, 8};
    for (int i = 0; i < 7; i++) {
        ck_assert_str_eq(tdsl_dtype_name(i), names[i]);
        ck_assert_uint_eq(tdsl_dtype_size(i), sizes[i]);
        ck_assert_str_eq(tdsl_dtype_name(i), ir_dtype_name((ir_dtype)i));   /* same numbering */
    }
    ck_assert_str_eq(tdsl_dtype_name(7), "?");
    ck_assert_str_eq(tdsl_dtype_name(-1), "?");
    ck_assert_uint_eq(tdsl_dtype_size(99), 0);
    ck_assert_str_eq(tdsl_status_name(TDSL_OK), "TDSL_OK");
    ck_assert_str_eq(tdsl_status_name(TDSL_ERR_NULL), "TDSL_ERR_NULL");
    ck_assert_str_eq(tdsl_status_name(TDSL_ERR_FORMAT), "TDSL_ERR_FORMAT");
    ck_assert_str_eq(tdsl_status_name(TDSL_ERR_RUNTIME), "TDSL_ERR_RUNTIME");
    ck_assert_str_eq(tdsl_status_name(-4), "TDSL_ERR_UNKNOWN");
}
END_TEST

START_TEST(null_pointers_everywhere)
{
    tdsl_rt_destroy(NULL);
    ck_assert_ptr_null(tdsl_rt_arena(NULL));
    ck_assert_ptr_null(tdsl_rt_state(NULL));
    ck_assert_ptr_null(tdsl_rt_param_data(NULL, 0));
    ck_assert_int_eq(tdsl_rt_num_threads(NULL), 1);
    ck_assert_int_eq(tdsl_rt_check_finite(NULL), 0);
    tdsl_tensor t = tdsl_rt_param(NULL, 0);
    ck_assert_ptr_null(t.data);
    ck_assert_int_eq(t.rank, 0);
    ck_assert_int_eq(tdsl_rt_save(NULL, "/tmp/x.safetensors"), TDSL_ERR_NULL);
    ck_assert_int_eq(tdsl_rt_load(NULL, "/tmp/x.safetensors"), TDSL_ERR_NULL);
    ck_assert_msg(strstr(tdsl_rt_error(NULL), "NULL instance"), "%s", tdsl_rt_error(NULL));
    tdsl_instance *m = make(0, 2);
    ck_assert_int_eq(tdsl_rt_save(m, NULL), TDSL_ERR_NULL);
    ck_assert_str_eq(tdsl_rt_error(m), "tmod_save: NULL path");
    ck_assert_int_eq(tdsl_rt_load(m, NULL), TDSL_ERR_NULL);
    ck_assert_str_eq(tdsl_rt_error(m), "tmod_load: NULL path");
    tdsl_rt_parallel_for(m, 10, NULL, NULL);   /* no function: nothing to run */
    tdsl_rt_clear_error(NULL);
    tdsl_rt_destroy(m);
}
END_TEST

/* ---------------------------------------------------------------- threads */

START_TEST(thread_counts)
{
    unsetenv("TDSL_NUM_THREADS");
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    tdsl_instance *m = make(0, 0);
    ck_assert_int_eq(tdsl_rt_num_threads(m), cpus < 1 ? 1 : cpus);
    tdsl_rt_destroy(m);
    m = tdsl_rt_create(&DESC, NULL);
    ck_assert_int_eq(tdsl_rt_num_threads(m), cpus < 1 ? 1 : cpus);
    tdsl_rt_destroy(m);

    setenv("TDSL_NUM_THREADS", "3", 1);
    m = make(0, 0);
    ck_assert_int_eq(tdsl_rt_num_threads(m), 3);
    tdsl_rt_destroy(m);
    m = make(0, 2);   /* explicit wins over the environment */
    ck_assert_int_eq(tdsl_rt_num_threads(m), 2);
    tdsl_rt_destroy(m);

    const char *bad[] = {"abc", "0", "-2", "3x", "", "99999999999999999999"};
    for (int i = 0; i < 6; i++) {
        setenv("TDSL_NUM_THREADS", bad[i], 1);
        m = make(0, 0);
        ck_assert_msg(tdsl_rt_num_threads(m) == (cpus < 1 ? 1 : cpus), "TDSL_NUM_THREADS=%s gave %d", bad[i],
                      tdsl_rt_num_threads(m));
        tdsl_rt_destroy(m);
    }
    unsetenv("TDSL_NUM_THREADS");
    m = make(0, 100000);   /* clamped, not 100000 threads */
    ck_assert_int_eq(tdsl_rt_num_threads(m), 256);
    tdsl_rt_destroy(m);
}
END_TEST

#define NTASKS 1000000
typedef struct sum_ctx {
    atomic_int *hits;
    atomic_llong sum;
} sum_ctx;

static void sum_task(void *c, int64_t i)
{
    sum_ctx *s = c;
    atomic_fetch_add_explicit(&s->hits[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->sum, (long long)(i % 1000) * 3 + 1, memory_order_relaxed);
}

static long long expected_sum(int64_t n)
{
    long long e = 0;
    for (int64_t i = 0; i < n; i++)
        e += (long long)(i % 1000) * 3 + 1;
    return e;
}

START_TEST(parallel_for_sums)
{
    int threads[] = {1, 2, 4};
    atomic_int *hits = malloc(sizeof(atomic_int) * NTASKS);
    long long want = expected_sum(NTASKS);
    for (int t = 0; t < 3; t++) {
        tdsl_instance *m = make(0, threads[t]);
        int64_t ns[] = {NTASKS, 1, 2, 3, 5, 17, 1000};
        for (int k = 0; k < 7; k++) {
            int64_t n = ns[k];
            for (int64_t i = 0; i < n; i++)
                atomic_init(&hits[i], 0);
            sum_ctx c = {hits, 0};
            tdsl_rt_parallel_for(m, n, sum_task, &c);
            ck_assert_msg(atomic_load(&c.sum) == expected_sum(n), "threads %d, n %lld", threads[t], (long long)n);
            for (int64_t i = 0; i < n; i++)
                ck_assert_msg(atomic_load(&hits[i]) == 1, "task %lld ran %d times", (long long)i,
                              atomic_load(&hits[i]));
        }
        /* many calls in a row, as a training step makes */
        for (int rep = 0; rep < 200; rep++) {
            sum_ctx c = {hits, 0};
            for (int64_t i = 0; i < 64; i++)
                atomic_init(&hits[i], 0);
            tdsl_rt_parallel_for(m, 64, sum_task, &c);
            ck_assert(atomic_load(&c.sum) == expected_sum(64));
        }
        tdsl_rt_parallel_for(m, 0, sum_task, NULL);    /* nothing to do */
        tdsl_rt_parallel_for(m, -5, sum_task, NULL);
        tdsl_rt_destroy(m);
    }
    ck_assert(want == expected_sum(NTASKS));
    /* a NULL instance runs the tasks inline */
    for (int64_t i = 0; i < 10; i++)
        atomic_init(&hits[i], 0);
    sum_ctx c = {hits, 0};
    tdsl_rt_parallel_for(NULL, 10, sum_task, &c);
    ck_assert(atomic_load(&c.sum) == expected_sum(10));
    free(hits);
}
END_TEST

typedef struct nest_ctx {
    tdsl_instance *m;
    atomic_llong sum;
    atomic_int wrong_thread;
} nest_ctx;

typedef struct inner_ctx {
    nest_ctx *outer;
    pthread_t owner;
} inner_ctx;

static void inner_task(void *c, int64_t i)
{
    inner_ctx *in = c;
    if (!pthread_equal(pthread_self(), in->owner))
        atomic_fetch_add(&in->outer->wrong_thread, 1);
    atomic_fetch_add(&in->outer->sum, i);
}

static void outer_task(void *c, int64_t i)
{
    nest_ctx *n = c;
    inner_ctx in = {n, pthread_self()};
    tdsl_rt_parallel_for(n->m, 1000 + i, inner_task, &in);
}

START_TEST(parallel_for_nested_runs_serially)
{
    int threads[] = {1, 2, 4};
    for (int t = 0; t < 3; t++) {
        nest_ctx c = {make(0, threads[t]), 0, 0};
        tdsl_rt_parallel_for(c.m, 16, outer_task, &c);
        long long want = 0;
        for (int i = 0; i < 16; i++)
            want += (long long)(1000 + i) * (999 + i) / 2;
        ck_assert_int_eq(atomic_load(&c.sum), want);
        ck_assert_int_eq(atomic_load(&c.wrong_thread), 0);
        /* the pool is usable again afterwards */
        c.sum = 0;
        tdsl_rt_parallel_for(c.m, 16, outer_task, &c);
        ck_assert_int_eq(atomic_load(&c.sum), want);
        tdsl_rt_destroy(c.m);
    }
}
END_TEST

typedef struct who_ctx {
    pthread_t ids[8];
} who_ctx;

static void who_task(void *c, int64_t i)
{
    who_ctx *w = c;
    w->ids[i] = pthread_self();
    struct timespec ts = {0, 30 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

START_TEST(parallel_for_uses_the_workers)
{
    tdsl_instance *m = make(0, 2);
    who_ctx w;
    tdsl_rt_parallel_for(m, 4, who_task, &w);
    int others = 0, caller = 0;
    for (int i = 0; i < 4; i++) {
        if (pthread_equal(w.ids[i], pthread_self()))
            caller++;
        else
            others++;
    }
    ck_assert_msg(caller > 0 && others > 0, "caller ran %d tasks, workers %d", caller, others);
    tdsl_rt_destroy(m);
}
END_TEST

static void empty_task(void *c, int64_t i) { (void)c, (void)i; }

static double now_s(int clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static pthread_t lat_caller;
static double lat_worker_start;

static void timed_task(void *c, int64_t i)
{
    (void)c, (void)i;
    double t0 = now_s(CLOCK_MONOTONIC);
    if (!pthread_equal(pthread_self(), lat_caller))
        lat_worker_start = t0;   /* only one worker with 2 threads: no race */
    while (now_s(CLOCK_MONOTONIC) - t0 < 5e-6) {
    }
}

/* Median time of an empty parallel_for over 2 tasks with 2 threads, printed for the record.
 * The bound asserted is loose (machines in CI are loaded); the target is < 10 us. */
START_TEST(parallel_for_latency_and_idle)
{
    tdsl_instance *m = make(0, 2);
    enum { BATCHES = 31, CALLS = 2000 };
    double per[BATCHES];
    for (int b = 0; b < BATCHES; b++) {
        double t0 = now_s(CLOCK_MONOTONIC);
        for (int k = 0; k < CALLS; k++)
            tdsl_rt_parallel_for(m, 2, empty_task, NULL);
        per[b] = (now_s(CLOCK_MONOTONIC) - t0) / CALLS;
    }
    qsort(per, BATCHES, sizeof per[0], cmp_double);
    fprintf(stderr, "test_runtime: empty parallel_for, 2 threads: median %.2f us per call\n", per[BATCHES / 2] * 1e6);
    ck_assert_msg(per[BATCHES / 2] < 200e-6, "median %.2f us", per[BATCHES / 2] * 1e6);

    /* dispatch: from the call to a worker starting a task (when one took part) */
    enum { CALLS2 = 4000 };
    static double lat[CALLS2];
    int took = 0;
    lat_caller = pthread_self();
    for (int k = 0; k < CALLS2; k++) {
        lat_worker_start = 0;
        double t0 = now_s(CLOCK_MONOTONIC);
        tdsl_rt_parallel_for(m, 2, timed_task, NULL);
        if (lat_worker_start > 0)
            lat[took++] = lat_worker_start - t0;
    }
    ck_assert_int_gt(took, 0);
    qsort(lat, (size_t)took, sizeof lat[0], cmp_double);
    fprintf(stderr, "test_runtime: a worker took part in %d of %d calls of 2 x 5 us tasks; dispatch latency median %.2f us\n",
            took, CALLS2, lat[took / 2] * 1e6);

    /* idle workers sleep: the process uses (almost) no CPU while the app does not call */
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);   /* let the spin window pass */
    double c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    ts.tv_nsec = 300 * 1000 * 1000;
    nanosleep(&ts, NULL);
    double used = now_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    ck_assert_msg(used < 0.03, "idle pool used %.1f ms of CPU in 300 ms", used * 1e3);
    /* and wakes up from sleep correctly */
    tdsl_rt_parallel_for(m, 2, empty_task, NULL);
    tdsl_rt_destroy(m);
}
END_TEST

/* ---------------------------------------------------------------- save / load */

START_TEST(save_load_round_trip)
{
    char path[512];
    tmp_path(path, sizeof path, "rt.safetensors");
    tdsl_instance *a = make(11, 2), *b = make(22, 1);
    ck_assert_int_eq(tdsl_rt_save(a, path), TDSL_OK);
    size_t la, lb;
    uint8_t *sa = snapshot(a, &la), *sb = snapshot(b, &lb);
    ck_assert(memcmp(sa, sb, la) != 0);
    ck_assert_int_eq(tdsl_rt_load(b, path), TDSL_OK);
    assert_unchanged(b, sa, la);   /* b now holds a's params exactly */
    ck_assert_str_eq(tdsl_rt_error(b), "");
    /* overwrite: save again after a reset, load back */
    tdsl_rt_reset_params(a, 99);
    uint8_t *s99 = snapshot(a, &la);
    ck_assert_int_eq(tdsl_rt_save(a, path), TDSL_OK);
    ck_assert_int_eq(tdsl_rt_load(b, path), TDSL_OK);
    assert_unchanged(b, s99, la);
    /* no temporary files left behind */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "! ls -A '%s' | grep -q 'tmp'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
    free(sa);
    free(sb);
    free(s99);
    tdsl_rt_destroy(a);
    tdsl_rt_destroy(b);
}
END_TEST

/* Saves a file from a module with params ps (same names as DESC, altered). */
static void save_variant(const char *path, const tdsl_param_desc *ps, int n, uint64_t seed)
{
    tdsl_module_desc d = {TDSL_ABI_VERSION, "other", n, ps, 0, 0, 0, NULL, 0};
    tdsl_options o = TDSL_OPTIONS_INIT;
    o.seed = seed;
    o.threads = 1;
    tdsl_instance *m = tdsl_rt_create(&d, &o);
    ck_assert_msg(m != NULL, "%s", tdsl_rt_error(NULL));
    ck_assert_msg(tdsl_rt_save(m, path) == TDSL_OK, "%s", tdsl_rt_error(m));
    tdsl_rt_destroy(m);
}

static void expect_load_error(tdsl_instance *m, const char *path, int status, const char *msg)
{
    size_t len;
    uint8_t *snap = snapshot(m, &len);
    tdsl_rt_clear_error(m);
    int rc = tdsl_rt_load(m, path);
    ck_assert_msg(rc == status, "load %s: got %s, want %s (%s)", path, tdsl_status_name(rc), tdsl_status_name(status),
                  tdsl_rt_error(m));
    ck_assert_msg(strncmp(tdsl_rt_error(m), path, strlen(path)) == 0, "message does not start with the path: %s",
                  tdsl_rt_error(m));
    ck_assert_msg(strstr(tdsl_rt_error(m), msg), "message '%s' lacks '%s'", tdsl_rt_error(m), msg);
    assert_unchanged(m, snap, len);
    free(snap);
}

START_TEST(load_refuses_bad_files)
{
    char path[512], good[512];
    tdsl_instance *m = make(3, 1);
    tmp_path(good, sizeof good, "good.safetensors");
    tdsl_instance *src = make(4, 1);
    ck_assert_int_eq(tdsl_rt_save(src, good), TDSL_OK);
    tdsl_rt_destroy(src);
    size_t glen;
    uint8_t *gbuf = slurp(good, &glen);

    tmp_path(path, sizeof path, "missing.safetensors");
    expect_load_error(m, path, TDSL_ERR_IO, "cannot open");

    expect_load_error(m, tmpdir, TDSL_ERR_IO, "not a regular file");

    tmp_path(path, sizeof path, "truncated.safetensors");
    spit(path, gbuf, glen - 5);
    expect_load_error(m, path, TDSL_ERR_FORMAT, "are outside the data section");
    spit(path, gbuf, 4);
    expect_load_error(m, path, TDSL_ERR_FORMAT, "too small to be a safetensors file (4 bytes)");
    spit(path, gbuf, 0);
    expect_load_error(m, path, TDSL_ERR_FORMAT, "too small to be a safetensors file (0 bytes)");

    tmp_path(path, sizeof path, "random.safetensors");
    uint8_t rnd[4096];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof rnd; i++)
        x = x * 1103515245u + 12345u, rnd[i] = (uint8_t)(x >> 16);
    spit(path, rnd, sizeof rnd);
    expect_load_error(m, path, TDSL_ERR_FORMAT, "exceeds the 100 MB limit");
    /* a plausible header length followed by garbage */
    memcpy(rnd, (uint8_t[8]){16, 0, 0, 0, 0, 0, 0, 0}, 8);
    spit(path, rnd, 64);
    expect_load_error(m, path, TDSL_ERR_FORMAT, "header is not a JSON object");
    /* JSON, but not a safetensors header */
    static const char json[] = "\x10\0\0\0\0\0\0\0{\"W1\": [1, 2]}  ";
    spit(path, json, sizeof json - 1);
    expect_load_error(m, path, TDSL_ERR_FORMAT, "'W1'");

    tdsl_param_desc ps[NP];
    memcpy(ps, PARAMS, sizeof ps);
    tmp_path(path, sizeof path, "dtype.safetensors");
    ps[2].dtype = TDSL_F32;   /* E: f32 in the file, bf16 in the module */
    save_variant(path, ps, NP, 9);
    expect_load_error(m, path, TDSL_ERR_FORMAT, "param 'E' is f32[3, 4] in the file, bf16[3, 4] in the module");

    memcpy(ps, PARAMS, sizeof ps);
    tmp_path(path, sizeof path, "shape.safetensors");
    ps[0].shape[1] = 6;
    save_variant(path, ps, NP, 9);
    expect_load_error(m, path, TDSL_ERR_FORMAT, "param 'W1' is f32[7, 6] in the file, f32[7, 5] in the module");

    memcpy(ps, PARAMS, sizeof ps);
    tmp_path(path, sizeof path, "rank.safetensors");
    ps[4].rank = 1;
    ps[4].shape[0] = 1;
    save_variant(path, ps, NP, 9);
    expect_load_error(m, path, TDSL_ERR_FORMAT, "param 'step' is i64[1] in the file, i64 in the module");

    memcpy(ps, PARAMS, sizeof ps);
    tmp_path(path, sizeof path, "missing_param.safetensors");
    save_variant(path, ps, NP - 1, 9);   /* no 'k'; the others have different values */
    expect_load_error(m, path, TDSL_ERR_FORMAT, "param 'k' (i32[2]) is missing from the file");

    tdsl_param_desc more[NP + 1];
    memcpy(more, PARAMS, sizeof ps);
    more[NP] = (tdsl_param_desc){"zzz_extra", TDSL_F32, 1, {3}, RT_INIT_ONES, 0, 0};
    tmp_path(path, sizeof path, "extra.safetensors");
    save_variant(path, more, NP + 1, 9);
    expect_load_error(m, path, TDSL_ERR_FORMAT, "tensor 'zzz_extra' in the file is not a param or state of module 'tmod'");

    /* after all that, a good file still loads */
    ck_assert_int_eq(tdsl_rt_load(m, good), TDSL_OK);
    free(gbuf);
    tdsl_rt_destroy(m);
}
END_TEST

/* ---------------------------------------------------------------- optimizer state */

static tdsl_instance *make_s(uint64_t seed)
{
    tdsl_options o = TDSL_OPTIONS_INIT;
    o.seed = seed;
    o.threads = 1;
    tdsl_instance *m = tdsl_rt_create(&SDESC, &o);
    ck_assert_msg(m != NULL, "%s", tdsl_rt_error(NULL));
    return m;
}

/* A recognizable state block, different per seed (as training would leave it). */
static void fill_state(tdsl_instance *m, uint8_t seed)
{
    uint8_t *st = tdsl_rt_state(m);
    for (uint64_t i = 0; i < SDESC.state_bytes; i++)
        st[i] = (uint8_t)(seed * 31u + i * 7u + 1u);
}

static uint8_t *state_copy(tdsl_instance *m)
{
    uint8_t *b = malloc(SDESC.state_bytes);
    memcpy(b, tdsl_rt_state(m), SDESC.state_bytes);
    return b;
}

/* Bytes of state i within the block. */
static int state_eq(tdsl_instance *a, const uint8_t *b, int i)
{
    size_t n = tdsl_dtype_size(STATES[i].dtype);
    for (int k = 0; k < STATES[i].rank; k++)
        n *= (size_t)STATES[i].shape[k];
    return memcmp((uint8_t *)tdsl_rt_state(a) + STATES[i].offset, b + STATES[i].offset, n) == 0;
}

/* Saves from a module with params ps and states ss (altered copies of SDESC's). */
static void save_variant_s(const char *path, const tdsl_param_desc *ps, int n, const tdsl_state_desc *ss, int ns,
                           uint64_t state_bytes, uint64_t seed)
{
    tdsl_module_desc d = {TDSL_ABI_VERSION, "other", n, ps, 0, state_bytes, ns, ss, 0};
    tdsl_options o = TDSL_OPTIONS_INIT;
    o.seed = seed;
    o.threads = 1;
    tdsl_instance *m = tdsl_rt_create(&d, &o);
    ck_assert_msg(m != NULL, "%s", tdsl_rt_error(NULL));
    memset(tdsl_rt_state(m), 0x5a, (size_t)state_bytes);
    ck_assert_msg(tdsl_rt_save(m, path) == TDSL_OK, "%s", tdsl_rt_error(m));
    tdsl_rt_destroy(m);
}

START_TEST(save_load_with_state)
{
    char path[512];
    tmp_path(path, sizeof path, "ckpt.safetensors");
    tdsl_instance *a = make_s(11), *b = make_s(22);
    fill_state(a, 1);
    fill_state(b, 2);
    ck_assert_int_eq(tdsl_rt_save(a, path), TDSL_OK);
    /* the file: params and states under their names, with their types and bytes */
    char err[512];
    st_file *f = st_open(path, err, sizeof err);
    ck_assert_msg(f != NULL, "%s", err);
    ck_assert_int_eq(st_count(f), NP + NS);
    ck_assert_str_eq(st_metadata(f, "module"), "tmod");
    for (int i = 0; i < NS; i++)   /* the state's names, listed for modules that lack them */
        ck_assert(st_metadata_lists(f, OPTIMIZER_STATE_KEY, STATES[i].name));
    ck_assert(!st_metadata_lists(f, OPTIMIZER_STATE_KEY, PARAMS[0].name));
    for (int i = 0; i < NS; i++) {
        const st_tensor *t = st_find(f, STATES[i].name);
        ck_assert_msg(t != NULL, "state '%s' is not in the file", STATES[i].name);
        ck_assert_int_eq(t->dtype, STATES[i].dtype);
        ck_assert_int_eq(t->rank, STATES[i].rank);
        for (int k = 0; k < t->rank; k++)
            ck_assert_int_eq(t->shape[k], STATES[i].shape[k]);
        ck_assert(memcmp(t->data, (uint8_t *)tdsl_rt_state(a) + STATES[i].offset, t->nbytes) == 0);
    }
    st_close(f);
    /* load: b becomes a, params and every state */
    size_t la;
    uint8_t *sa = snapshot(a, &la), *sta = state_copy(a);
    ck_assert_int_eq(tdsl_rt_load(b, path), TDSL_OK);
    assert_unchanged(b, sa, la);
    for (int i = 0; i < NS; i++)
        ck_assert_msg(state_eq(b, sta, i), "state '%s' was not loaded", STATES[i].name);
    /* a module without these states (an inference app) loads the params and passes over the
     * state the file lists as optimizer state */
    tdsl_instance *c = make(5, 1);
    ck_assert_msg(tdsl_rt_load(c, path) == TDSL_OK, "%s", tdsl_rt_error(c));
    assert_unchanged(c, sa, la);   /* a's params */
    tdsl_rt_destroy(c);
    free(sa);
    free(sta);
    tdsl_rt_destroy(a);
    tdsl_rt_destroy(b);
}
END_TEST

/* A params-only file (an older save, a model from PyTorch) loads the params and leaves the
 * optimizer state as it was; a file with some states loads those. */
START_TEST(params_only_file_keeps_state)
{
    char path[512];
    tmp_path(path, sizeof path, "params_only.safetensors");
    tdsl_instance *src = make(5, 1);   /* DESC: the same params, no state */
    ck_assert_int_eq(tdsl_rt_save(src, path), TDSL_OK);
    size_t ls;
    uint8_t *s5 = snapshot(src, &ls);
    tdsl_rt_destroy(src);
    tdsl_instance *m = make_s(6);
    fill_state(m, 3);
    uint8_t *before = state_copy(m);
    ck_assert_msg(tdsl_rt_load(m, path) == TDSL_OK, "%s", tdsl_rt_error(m));
    assert_unchanged(m, s5, ls);
    ck_assert(memcmp(tdsl_rt_state(m), before, SDESC.state_bytes) == 0);

    /* some states: only step.step and step.calls in the file */
    tdsl_state_desc some[2] = {STATES[1], STATES[3]};
    some[0].offset = 0;
    some[1].offset = 64;
    tmp_path(path, sizeof path, "some_states.safetensors");
    save_variant_s(path, PARAMS, NP, some, 2, 128, 7);   /* states filled with 0x5a */
    ck_assert_msg(tdsl_rt_load(m, path) == TDSL_OK, "%s", tdsl_rt_error(m));
    ck_assert(state_eq(m, before, 0) && state_eq(m, before, 2));
    ck_assert_int_eq(*(int64_t *)((uint8_t *)tdsl_rt_state(m) + STATES[1].offset), INT64_C(0x5a5a5a5a5a5a5a5a));
    ck_assert_int_eq(*(int32_t *)((uint8_t *)tdsl_rt_state(m) + STATES[3].offset), 0x5a5a5a5a);
    free(before);
    free(s5);
    tdsl_rt_destroy(m);
}
END_TEST

/* expect_load_error, and the state block is unchanged too */
static void expect_state_load_error(tdsl_instance *m, const char *path, const char *msg)
{
    uint8_t *before = state_copy(m);
    expect_load_error(m, path, TDSL_ERR_FORMAT, msg);
    ck_assert_msg(memcmp(tdsl_rt_state(m), before, SDESC.state_bytes) == 0, "a failed load modified the state");
    free(before);
}

START_TEST(load_refuses_bad_state)
{
    char path[512];
    tdsl_instance *m = make_s(3);
    fill_state(m, 4);
    tdsl_state_desc ss[NS];

    memcpy(ss, STATES, sizeof ss);
    ss[0].shape[1] = 6;   /* 168 bytes: still inside its 192-byte slot */
    tmp_path(path, sizeof path, "state_shape.safetensors");
    save_variant_s(path, PARAMS, NP, ss, NS, SDESC.state_bytes, 9);
    expect_state_load_error(m, path, "state 'step.W1.exp_avg' is f32[7, 6] in the file, f32[7, 5] in the module "
                                     "(the file was saved by module 'other')");

    memcpy(ss, STATES, sizeof ss);
    ss[1].dtype = TDSL_I32;
    tmp_path(path, sizeof path, "state_dtype.safetensors");
    save_variant_s(path, PARAMS, NP, ss, NS, SDESC.state_bytes, 9);
    expect_state_load_error(m, path, "state 'step.step' is i32 in the file, i64 in the module");

    memcpy(ss, STATES, sizeof ss);
    ss[2].name = "step.b1.exp_avg_sq";   /* a state this module does not have: passed over */
    tmp_path(path, sizeof path, "state_unknown.safetensors");
    save_variant_s(path, PARAMS, NP, ss, NS, SDESC.state_bytes, 9);
    uint8_t *before = state_copy(m);
    ck_assert_msg(tdsl_rt_load(m, path) == TDSL_OK, "%s", tdsl_rt_error(m));
    ck_assert(state_eq(m, before, 2));    /* its own state 2 is not in the file: kept */
    ck_assert(!state_eq(m, before, 0));   /* the others were loaded (0x5a bytes) */
    free(before);
    fill_state(m, 4);

    /* good states but a bad param: the states are not loaded either */
    tdsl_param_desc ps[NP];
    memcpy(ps, PARAMS, sizeof ps);
    ps[1].shape[0] = 4;
    tmp_path(path, sizeof path, "param_bad_state_good.safetensors");
    save_variant_s(path, ps, NP, STATES, NS, SDESC.state_bytes, 9);
    expect_state_load_error(m, path, "param 'b1' is f32[4] in the file, f32[5] in the module");
    /* and a missing param with every state present */
    tmp_path(path, sizeof path, "no_param.safetensors");
    save_variant_s(path, PARAMS, NP - 1, STATES, NS, SDESC.state_bytes, 9);
    expect_state_load_error(m, path, "param 'k' (i32[2]) is missing from the file");
    tdsl_rt_destroy(m);
}
END_TEST

/* The bytes of a checkpoint are what safetensors 0.8.0 writes for the same dict:
 *   t = {'w': np.array([1.5, -2], np.float32), 'w2': np.ones((2, 3), np.float16),
 *        's.w.exp_avg': np.array([0.25, 4], np.float32), 's.step': np.array(3, np.int64),
 *        's.calls': np.array(-7, np.int32), 's.w2.m': np.zeros((2, 3), np.float16)}
 *   safetensors.numpy.save_file(t, path, metadata={'module': 'ck',
 *                               'optimizer_state': 's.w.exp_avg\ns.step\ns.calls\ns.w2.m'}) */
START_TEST(checkpoint_bytes_match_python)
{
    static const tdsl_param_desc ps[] = {{"w", TDSL_F32, 1, {2}, RT_INIT_ZEROS, 0, 0},
                                         {"w2", TDSL_F16, 2, {2, 3}, RT_INIT_ONES, 0, 0}};
    static const tdsl_state_desc ss[] = {{"s.w.exp_avg", TDSL_F32, 1, {2}, 0},
                                         {"s.step", TDSL_I64, 0, {0}, 64},
                                         {"s.calls", TDSL_I32, 0, {0}, 128},
                                         {"s.w2.m", TDSL_F16, 2, {2, 3}, 192}};
    static const tdsl_module_desc d = {TDSL_ABI_VERSION, "ck", 2, ps, 0, 256, 4, ss, 0};
    static const char header[] =
        "{\"__metadata__\":{\"module\":\"ck\",\"optimizer_state\":\"s.w.exp_avg\\ns.step\\ns.calls\\ns.w2.m\"},"
        "\"s.step\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
        "\"s.w.exp_avg\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
        "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]},"
        "\"s.calls\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[24,28]},"
        "\"s.w2.m\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[28,40]},"
        "\"w2\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[40,52]}}   ";
    static const uint8_t data[52] = {3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x3e, 0, 0, 0x80, 0x40, 0, 0, 0xc0, 0x3f,
                                     0, 0, 0, 0xc0, 0xf9, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                     0, 0x3c, 0, 0x3c, 0, 0x3c, 0, 0x3c, 0, 0x3c, 0, 0x3c};
    tdsl_instance *m = tdsl_rt_create(&d, NULL);
    ck_assert_msg(m != NULL, "%s", tdsl_rt_error(NULL));
    float w[2] = {1.5f, -2}, ea[2] = {0.25f, 4};
    int64_t step = 3;
    int32_t calls = -7;
    memcpy(tdsl_rt_param(m, 0).data, w, sizeof w);
    uint8_t *st = tdsl_rt_state(m);
    memcpy(st, ea, sizeof ea);
    memcpy(st + 64, &step, sizeof step);
    memcpy(st + 128, &calls, sizeof calls);
    char path[512];
    tmp_path(path, sizeof path, "ck.safetensors");
    ck_assert_int_eq(tdsl_rt_save(m, path), TDSL_OK);
    size_t len, hl = sizeof header - 1;
    uint8_t *got = slurp(path, &len);
    ck_assert_uint_eq(hl, 448);
    ck_assert_uint_eq(len, 8 + hl + sizeof data);
    uint8_t len8[8] = {(uint8_t)(hl & 0xff), (uint8_t)(hl >> 8), 0, 0, 0, 0, 0, 0};
    ck_assert(memcmp(got, len8, 8) == 0);
    ck_assert_msg(memcmp(got + 8, header, hl) == 0, "header:\n%.*s", (int)hl, (const char *)got + 8);
    ck_assert(memcmp(got + 8 + hl, data, sizeof data) == 0);
    /* and it loads back into a fresh instance */
    tdsl_instance *b = tdsl_rt_create(&d, NULL);
    ck_assert_int_eq(tdsl_rt_load(b, path), TDSL_OK);
    ck_assert(memcmp(tdsl_rt_state(b), st, 256) == 0);
    ck_assert(memcmp(tdsl_rt_param(b, 0).data, w, sizeof w) == 0);
    free(got);
    tdsl_rt_destroy(b);
    tdsl_rt_destroy(m);
}
END_TEST

START_TEST(failed_save_leaves_old_file)
{
    char path[512], sub[512];
    tmp_path(path, sizeof path, "keep.safetensors");
    tdsl_instance *m = make(1, 1);
    ck_assert_int_eq(tdsl_rt_save(m, path), TDSL_OK);
    size_t old_len;
    uint8_t *old = slurp(path, &old_len);
    tdsl_rt_reset_params(m, 2);

    /* the path is a directory */
    tmp_path(sub, sizeof sub, "adir");
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    const tdsl_instance *cm = m;   /* save takes a const instance and still reports */
    ck_assert_int_eq(tdsl_rt_save(cm, sub), TDSL_ERR_IO);
    ck_assert_msg(strncmp(tdsl_rt_error(m), sub, strlen(sub)) == 0, "%s", tdsl_rt_error(m));
    struct stat st;
    ck_assert_int_eq(stat(sub, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));

    /* an unwritable directory: root ignores permissions, so become nobody in this forked
     * test process first */
    ck_assert_int_eq(chmod(tmpdir, 0555), 0);
    const char *fork_env = getenv("CK_FORK");
    int can_test = 1;
    if (geteuid() == 0) {
        if (fork_env && strcmp(fork_env, "no") == 0)
            can_test = 0;   /* would drop privileges for the whole runner */
        else
            ck_assert(setgid(65534) == 0 && setuid(65534) == 0);
    }
    if (can_test) {
        tdsl_rt_clear_error(m);
        ck_assert_int_eq(tdsl_rt_save(m, path), TDSL_ERR_IO);
        ck_assert_msg(strncmp(tdsl_rt_error(m), path, strlen(path)) == 0 && strstr(tdsl_rt_error(m), "cannot create"),
                      "%s", tdsl_rt_error(m));
        size_t now_len;
        uint8_t *now = slurp(path, &now_len);
        ck_assert_ptr_nonnull(now);
        ck_assert_uint_eq(now_len, old_len);
        ck_assert(memcmp(now, old, old_len) == 0);
        free(now);
        /* and the old file still loads, giving back the seed-1 params */
        ck_assert_int_eq(tdsl_rt_load(m, path), TDSL_OK);
        assert_params_match_evaluator(m, 1);
    }
    free(old);
    tdsl_rt_destroy(m);
    /* (cleanup is the parent's: this process may have dropped privileges) */
}
END_TEST

static Suite *runtime_suite(void)
{
    Suite *s = suite_create("runtime");
    TCase *inst = tcase_create("instances");
    tcase_set_timeout(inst, 60);
    tcase_add_test(inst, create_destroy_cycles);
    tcase_add_test(inst, memory_blocks);
    tcase_add_test(inst, param_introspection);
    tcase_add_test(inst, params_bit_identical_to_evaluator);
    tcase_add_test(inst, reset_params_reinitializes);
    tcase_add_test(inst, bad_descriptors_refused);
    tcase_add_test(inst, errors_are_bounded_and_formatted);
    tcase_add_test(inst, names_of_dtypes_and_statuses);
    tcase_add_test(inst, null_pointers_everywhere);
    suite_add_tcase(s, inst);
    TCase *thr = tcase_create("threads");
    tcase_set_timeout(thr, 120);
    tcase_add_test(thr, thread_counts);
    tcase_add_test(thr, parallel_for_sums);
    tcase_add_test(thr, parallel_for_nested_runs_serially);
    tcase_add_test(thr, parallel_for_uses_the_workers);
    tcase_add_test(thr, parallel_for_latency_and_idle);
    suite_add_tcase(s, thr);
    TCase *io = tcase_create("save_load");
    tcase_set_timeout(io, 60);
    tcase_add_unchecked_fixture(io, dir_setup, dir_teardown);
    tcase_add_test(io, save_load_round_trip);
    tcase_add_test(io, load_refuses_bad_files);
    tcase_add_test(io, failed_save_leaves_old_file);
    tcase_add_test(io, save_load_with_state);
    tcase_add_test(io, params_only_file_keeps_state);
    tcase_add_test(io, load_refuses_bad_state);
    tcase_add_test(io, checkpoint_bytes_match_python);
    suite_add_tcase(s, io);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(runtime_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
