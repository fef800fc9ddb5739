/* The per-instance thread pool behind tdsl_rt_parallel_for (runtime/threads.c).
 * Internal to libtdslrt: generated code and apps go through tdsl/runtime.h. */
#ifndef TDSL_RT_THREADS_H
#define TDSL_RT_THREADS_H
#include "tdsl/runtime.h"

#define RT_MAX_THREADS 256   /* larger requests are clamped */

typedef struct rt_pool rt_pool;

/* nthreads counts the calling thread: nthreads - 1 workers are started (none for 1).
 * NULL if memory or a thread could not be had (nothing is left running). */
rt_pool *rt_pool_create(int nthreads);
/* Wakes and joins the workers. No rt_pool_run may be in progress. NULL is a no-op. */
void rt_pool_destroy(rt_pool *p);
int rt_pool_threads(const rt_pool *p);
/* fn(ctx, i) for every i in [0, n), on the workers and the calling thread; returns when all
 * are done. A call made while this pool is already running a job (from inside a task)
 * runs its tasks serially on the thread that made it. */
void rt_pool_run(rt_pool *p, int64_t n, tdsl_task_fn fn, void *ctx);

/* The thread count create uses for `requested` (tdsl_options.threads): > 0 is taken as is
 * (clamped to RT_MAX_THREADS); 0 (or negative) reads TDSL_NUM_THREADS when it is a whole
 * number in [1, RT_MAX_THREADS], else the number of online CPUs. */
int rt_resolve_threads(int requested);

#endif
