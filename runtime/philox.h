/* Philox4x32-10 counter-based generator and the parameter initializer built on it.
 * The initial value of a parameter element is a pure function of (module seed, parameter
 * name, element index), so the CPU and GPU runtimes produce identical parameters; the exact
 * definition is in docs/formats.md. Self-contained: libc/libm only. */
#ifndef TDSL_RT_PHILOX_H
#define TDSL_RT_PHILOX_H
#include <stdint.h>

/* Same order as ir_init_kind in ir/ir.h. */
enum { RT_INIT_ZEROS, RT_INIT_ONES, RT_INIT_FULL, RT_INIT_NORMAL, RT_INIT_UNIFORM,
       RT_INIT_KAIMING_UNIFORM };

/* One Philox4x32 block with 10 rounds (Salmon et al., SC'11), as Random123's philox4x32_R(10). */
void rt_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* FNV-1a 64-bit hash of a NUL-terminated name (the counter's high half). */
uint64_t rt_fnv1a64(const char *s);

/* Fills out[0..n): element i of the parameter `name`. a, b = full value (a) / mean, std /
 * lo, hi; kaiming_uniform draws U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (fan_in < 1 is taken as 1).
 * An unknown kind fills zeros. */
void rt_init_values(int kind, double a, double b, int64_t fan_in, uint64_t seed, const char *name,
                    int64_t n, double *out);

#endif
