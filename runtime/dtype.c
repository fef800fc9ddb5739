/* Names and sizes of dtypes and status codes (tdsl/runtime.h). */
#include "tdsl/runtime.h"

static const char *const dtype_names[] = {"bool", "i32", "i64", "f16", "bf16", "f32", "f64"};
static const size_t dtype_sizes[] = {1, 4, 8, 2, 2, 4, 8};
#define NDTYPES ((int)(sizeof dtype_sizes / sizeof dtype_sizes[0]))

const char *tdsl_dtype_name(int dtype) { return dtype >= 0 && dtype < NDTYPES ? dtype_names[dtype] : "?"; }

size_t tdsl_dtype_size(int dtype) { return dtype >= 0 && dtype < NDTYPES ? dtype_sizes[dtype] : 0; }

const char *tdsl_status_name(int status)
{
    switch (status) {
    case TDSL_OK: return "TDSL_OK";
    case TDSL_ERR_NULL: return "TDSL_ERR_NULL";
    case TDSL_ERR_NOMEM: return "TDSL_ERR_NOMEM";
    case TDSL_ERR_IO: return "TDSL_ERR_IO";
    case TDSL_ERR_FORMAT: return "TDSL_ERR_FORMAT";
    case TDSL_ERR_NONFINITE: return "TDSL_ERR_NONFINITE";
    case TDSL_ERR_DEVICE: return "TDSL_ERR_DEVICE";
    case TDSL_ERR_ARG: return "TDSL_ERR_ARG";
    case TDSL_ERR_RUNTIME: return "TDSL_ERR_RUNTIME";
    default: return "TDSL_ERR_UNKNOWN";
    }
}
