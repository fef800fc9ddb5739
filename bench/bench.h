/* Helpers shared by the benchmarks: the clock, medians, and the function types of the
 * generated C API. Header-only (static inline): each bench is one .c file and its own
 * executable, with no library of its own. */
#ifndef TDSL_BENCH_H
#define TDSL_BENCH_H
#include <stdlib.h>
#include <time.h>

#include "tdsl/runtime.h"

/* The time of `clock` in ns: CLOCK_MONOTONIC for wall time, CLOCK_PROCESS_CPUTIME_ID for CPU
 * time (steadier on a loaded machine). */
static inline double clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Wall time in ns. */
static inline double now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v[0..n) in place, so v[0] is then the smallest and v[n-1] the largest, and returns
 * the median (the mean of the two middle values for an even n). n >= 1. */
static inline double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The generated C API's functions that every module has, for cg_jit_lookup's results
 * (`<module>_create`, ...: docs/c-api.md). */
typedef void *(*create_fn)(const tdsl_options *);
typedef void (*destroy_fn)(void *);
typedef const char *(*error_fn)(const void *);
typedef tdsl_tensor (*param_fn)(void *, int);

#endif
