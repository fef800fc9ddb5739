/* Dtypes and dense host tensors: what crosses the boundary between the compiler and
 * files (.npy, safetensors), the evaluator and the command line. Row-major, owned data. */
#ifndef TDSL_TENSOR_H
#define TDSL_TENSOR_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TDSL_MAX_RANK 8

typedef enum {
    DT_BOOL, DT_I32, DT_I64, DT_F16, DT_BF16, DT_F32, DT_F64, DT_COUNT
} ir_dtype;

const char *ir_dtype_name(ir_dtype t);             /* "f32" */
bool ir_dtype_parse(const char *s, ir_dtype *out); /* "f32" -> DT_F32 */
bool ir_dtype_is_float(ir_dtype t);
bool ir_dtype_is_int(ir_dtype t);                  /* i32, i64 (not bool) */
size_t ir_dtype_size(ir_dtype t);                  /* bytes per element */

/* IEEE half and bfloat16 travel as uint16_t bits; conversions round to nearest even. */
float    f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float    bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);

typedef struct host_tensor {
    ir_dtype dtype;
    int rank;
    int64_t shape[TDSL_MAX_RANK];
    void *data;                 /* malloc'd, numel * ir_dtype_size(dtype) bytes */
} host_tensor;

int64_t host_tensor_numel(const host_tensor *t);
size_t  host_tensor_bytes(const host_tensor *t);
/* Allocates zeroed data for the given dtype/shape; false if out of memory. */
bool host_tensor_alloc(host_tensor *t, ir_dtype dt, int rank, const int64_t *shape);
void host_tensor_free(host_tensor *t);
/* Element i (row-major) as double / stores a double with the dtype's rounding. */
double host_tensor_get(const host_tensor *t, int64_t i);
void   host_tensor_set(host_tensor *t, int64_t i, double v);

#endif
