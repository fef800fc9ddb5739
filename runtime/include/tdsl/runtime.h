/* libtdslrt: the run-time library that every object built by tdslc links against.
 * Public API for applications (tdsl_options, tdsl_tensor, status codes), plus, at the end,
 * the small ABI that generated code calls (tdsl_rt_*). No compiler headers; libc, libm,
 * pthreads and cJSON only. */
#ifndef TDSL_RUNTIME_H
#define TDSL_RUNTIME_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes: 0 is success; every generated function returns one of these ---- */
typedef enum tdsl_status {
    TDSL_OK = 0,
    TDSL_ERR_NULL = 1,       /* a NULL instance, input or output pointer */
    TDSL_ERR_NOMEM = 2,      /* allocation failed */
    TDSL_ERR_IO = 3,         /* a file could not be read or written */
    TDSL_ERR_FORMAT = 4,     /* a params file is malformed or does not match the module */
    TDSL_ERR_NONFINITE = 5,  /* check_finite: a NaN or Inf appeared */
    TDSL_ERR_DEVICE = 6,     /* no usable GPU / driver error */
    TDSL_ERR_ARG = 7,        /* an argument out of range (e.g. a param index) */
    TDSL_ERR_RUNTIME = 8,    /* a run-time check failed (e.g. an index out of range) */
} tdsl_status;

const char *tdsl_status_name(int status);   /* "TDSL_ERR_NULL" */

/* ---- options for <module>_create ---- */
typedef struct tdsl_options {
    uint64_t seed;      /* parameter initialization seed */
    int threads;        /* 0: TDSL_NUM_THREADS from the environment, else all cores */
    int check_finite;   /* report NaN/Inf produced by a step as an error */
    int device;         /* CUDA ordinal (GPU builds) */
} tdsl_options;

#define TDSL_OPTIONS_INIT {0, 0, 0, 0}

/* ---- dtypes (same numbering as the compiler's) ---- */
typedef enum tdsl_dtype {
    TDSL_BOOL, TDSL_I32, TDSL_I64, TDSL_F16, TDSL_BF16, TDSL_F32, TDSL_F64
} tdsl_dtype;

const char *tdsl_dtype_name(int dtype);      /* "f32" */
size_t tdsl_dtype_size(int dtype);           /* bytes per element */

#define TDSL_MAX_RANK 8

/* A view of a tensor owned by an instance (parameters): introspection and direct access. */
typedef struct tdsl_tensor {
    const char *name;
    int dtype;                      /* tdsl_dtype */
    int rank;
    int64_t shape[TDSL_MAX_RANK];
    int64_t strides[TDSL_MAX_RANK]; /* elements */
    void *data;                     /* NULL for an invalid index */
} tdsl_tensor;

/* ---- the ABI between generated code and the runtime ----
 * Each compiled module holds one constant descriptor; <module>_create passes it here.
 * Applications do not call these directly. */
#define TDSL_ABI_VERSION 2   /* 2: the state table (names, shapes, offsets) for save/load */

typedef struct tdsl_param_desc {
    const char *name;
    int dtype;
    int rank;
    int64_t shape[TDSL_MAX_RANK];
    int init;            /* 0 zeros, 1 ones, 2 full(a), 3 normal(a, b), 4 uniform(a, b), 5 kaiming_uniform */
    double a, b;
} tdsl_param_desc;

/* One tensor of the state block (optimizer moments, step counters): dense row-major at
 * offset bytes into it, always zero at create. Names ("step.W1.exp_avg") are what save and
 * load use in the file, next to the param names. */
typedef struct tdsl_state_desc {
    const char *name;
    int dtype;
    int rank;
    int64_t shape[TDSL_MAX_RANK];
    uint64_t offset;             /* bytes into the state block */
} tdsl_state_desc;

typedef struct tdsl_module_desc {
    uint32_t abi_version;        /* TDSL_ABI_VERSION */
    const char *name;            /* module name */
    int nparams;
    const tdsl_param_desc *params;
    uint64_t arena_bytes;        /* scratch the exports need (max over exports) */
    uint64_t state_bytes;        /* persistent state beyond params (optimizer moments, ...) */
    int nstates;                 /* (ABI 2) the tensors of the state block */
    const tdsl_state_desc *states;
    uint64_t backup_bytes;       /* (ABI 2) with check_finite: room for the old values of the
                                    updates a step writes in place, restored if it fails */
} tdsl_module_desc;

typedef struct tdsl_instance tdsl_instance;

tdsl_instance *tdsl_rt_create(const tdsl_module_desc *desc, const tdsl_options *opts);
void tdsl_rt_destroy(tdsl_instance *inst);
const char *tdsl_rt_error(const tdsl_instance *inst);      /* "" when there was none */
/* (tdsl_rt_error(NULL): why the last create, or call with a NULL instance, failed on this thread.) */
/* Records an error (printf-style) and returns status, so `return tdsl_rt_fail(...)` reads well. */
int tdsl_rt_fail(tdsl_instance *inst, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void tdsl_rt_clear_error(tdsl_instance *inst);
void *tdsl_rt_arena(tdsl_instance *inst);                  /* 64-byte aligned, arena_bytes long */
void *tdsl_rt_state(tdsl_instance *inst);                  /* 64-byte aligned, state_bytes long, zeroed */
void *tdsl_rt_backup(tdsl_instance *inst);                 /* backup_bytes long with check_finite, else NULL */
void *tdsl_rt_param_data(tdsl_instance *inst, int i);      /* 64-byte aligned, dense row-major */
int  tdsl_rt_num_threads(const tdsl_instance *inst);
int  tdsl_rt_check_finite(const tdsl_instance *inst);
/* Runs fn(ctx, i) for i in [0, n) on the instance's thread pool and waits; n <= threads
 * runs each task on its own thread, larger n is split into chunks. The calling thread
 * takes part. Nested calls run serially. */
typedef void (*tdsl_task_fn)(void *ctx, int64_t i);
void tdsl_rt_parallel_for(tdsl_instance *inst, int64_t n, tdsl_task_fn fn, void *ctx);
/* Params, then every state under its name: one safetensors file, written atomically. */
int  tdsl_rt_save(const tdsl_instance *inst, const char *path);
/* Every param (exact dtype and shape); the states the file holds (absent ones keep their
 * values); any other tensor or any mismatch is TDSL_ERR_FORMAT and changes nothing. */
int  tdsl_rt_load(tdsl_instance *inst, const char *path);
tdsl_tensor tdsl_rt_param(tdsl_instance *inst, int i);
/* Re-initializes every param from the seed and zeroes the state block (as at create). */
void tdsl_rt_reset_params(tdsl_instance *inst, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif
