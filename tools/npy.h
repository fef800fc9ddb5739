/* NumPy .npy files <-> host_tensor. Reads format versions 1.0, 2.0 and 3.0 with dtypes
 * <f2 <f4 <f8 <i4 <i8 |b1 (C order, little-endian); writes version 1.0 (2.0 when the
 * header does not fit) byte-for-byte like np.save. bf16 has no NumPy dtype: writing a bf16
 * tensor stores f32 values, and reading never yields bf16.
 * All functions return 0 on success, or -1 with a one-line message starting with the path
 * (or "<memory>") in err. On failure *out is left with data == NULL. */
#ifndef TDSL_NPY_H
#define TDSL_NPY_H
#include <stddef.h>
#include <stdint.h>
#include "common/tensor.h"

int npy_read(const char *path, host_tensor *out, char *err, size_t errlen);
int npy_read_mem(const uint8_t *buf, size_t len, host_tensor *out, char *err, size_t errlen);
int npy_write(const char *path, const host_tensor *t, char *err, size_t errlen);

#endif
