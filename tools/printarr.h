/* NumPy-style repr of a host tensor, byte-for-byte what numpy 2.x prints for repr(arr) with
 * the default print options (precision 8, linewidth 75, threshold 1000, edgeitems 3):
 *   array([[1., 2.],
 *          [3., 4.]], dtype=float32)
 * bf16 (no NumPy dtype) prints like ml_dtypes' bfloat16: shortest digits that round-trip. */
#ifndef TDSL_PRINTARR_H
#define TDSL_PRINTARR_H
#include <stdio.h>
#include "common/tensor.h"

/* Writes the repr followed by a newline. */
void print_array(FILE *out, const host_tensor *t);
/* The repr without a trailing newline, malloc'd (caller frees); NULL if out of memory. */
char *format_array(const host_tensor *t);

#endif
