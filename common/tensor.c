#include "tensor.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const dtype_names[DT_COUNT] = {"bool", "i32", "i64", "f16", "bf16", "f32", "f64"};
static const size_t dtype_sizes[DT_COUNT] = {1, 4, 8, 2, 2, 4, 8};

const char *ir_dtype_name(ir_dtype t) { return (unsigned)t < DT_COUNT ? dtype_names[t] : "?"; }

bool ir_dtype_parse(const char *s, ir_dtype *out)
{
    for (int i = 0; i < DT_COUNT; i++)
        if (strcmp(s, dtype_names[i]) == 0) {
            *out = (ir_dtype)i;
            return true;
        }
    return false;
}

bool ir_dtype_is_float(ir_dtype t) { return t == DT_F16 || t == DT_BF16 || t == DT_F32 || t == DT_F64; }
bool ir_dtype_is_int(ir_dtype t) { return t == DT_I32 || t == DT_I64; }
size_t ir_dtype_size(ir_dtype t) { return (unsigned)t < DT_COUNT ? dtype_sizes[t] : 0; }

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t f32_to_bf16(float f)
{
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)        /* NaN: keep it quiet */
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);             /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f)
        return u2f(sign | 0x7f800000u | (man << 13));
    if (exp == 0)   /* zero or subnormal: man * 2^-24 */
        return sign ? -ldexpf((float)man, -24) : ldexpf((float)man, -24);
    return u2f(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t f32_to_f16(float f)
{
    uint32_t u = f2u(f), sign = (u >> 16) & 0x8000;
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00);            /* NaN */
    if (a >= 0x477ff000u)                            /* rounds to >= 65520: inf */
        return (uint16_t)(sign | 0x7c00);
    if (a < 0x38800000u) {                           /* below 2^-14: subnormal half */
        float v = u2f(a);
        /* v / 2^-24 rounded to nearest even */
        float q = v * 16777216.0f;
        float r = nearbyintf(q);
        return (uint16_t)(sign | (uint32_t)r);
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1);      /* round mantissa to 10 bits, ties even */
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

int64_t host_tensor_numel(const host_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++)
        n *= t->shape[i];
    return n;
}

size_t host_tensor_bytes(const host_tensor *t)
{
    return (size_t)host_tensor_numel(t) * ir_dtype_size(t->dtype);
}

bool host_tensor_alloc(host_tensor *t, ir_dtype dt, int rank, const int64_t *shape)
{
    t->dtype = dt;
    t->rank = rank;
    for (int i = 0; i < rank; i++)
        t->shape[i] = shape[i];
    size_t bytes = host_tensor_bytes(t);
    t->data = calloc(bytes ? bytes : 1, 1);
    return t->data != NULL;
}

void host_tensor_free(host_tensor *t)
{
    free(t->data);
    t->data = NULL;
}

double host_tensor_get(const host_tensor *t, int64_t i)
{
    const void *d = t->data;
    switch (t->dtype) {
    case DT_BOOL: return ((const uint8_t *)d)[i] != 0;
    case DT_I32: return ((const int32_t *)d)[i];
    case DT_I64: return (double)((const int64_t *)d)[i];
    case DT_F16: return f16_to_f32(((const uint16_t *)d)[i]);
    case DT_BF16: return bf16_to_f32(((const uint16_t *)d)[i]);
    case DT_F32: return ((const float *)d)[i];
    case DT_F64: return ((const double *)d)[i];
    default: return 0;
    }
}

void host_tensor_set(host_tensor *t, int64_t i, double v)
{
    void *d = t->data;
    switch (t->dtype) {
    case DT_BOOL: ((uint8_t *)d)[i] = v != 0; break;
    case DT_I32: ((int32_t *)d)[i] = (int32_t)(int64_t)v; break;
    case DT_I64: ((int64_t *)d)[i] = (int64_t)v; break;
    case DT_F16: ((uint16_t *)d)[i] = f32_to_f16((float)v); break;
    case DT_BF16: ((uint16_t *)d)[i] = f32_to_bf16((float)v); break;
    case DT_F32: ((float *)d)[i] = (float)v; break;
    case DT_F64: ((double *)d)[i] = v; break;
    default: break;
    }
}
