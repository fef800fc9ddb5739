/* The thread pool: nthreads - 1 pthreads workers plus the calling thread.
 *
 * One atomic word `js` holds the job state: a generation (bumped per job), a `closed` bit
 * and the number of workers inside the job. A worker joins a job with a CAS that fails once
 * the job is closed, runs tasks claimed from the atomic counter `next` (chunks of `chunk`
 * indices) and leaves by decrementing the count. The caller runs tasks too, then closes the
 * job and waits only for workers that joined: a worker that is asleep or preempted never
 * delays a call, and after close + count 0 nobody reads the job fields, so the next call
 * may rewrite them. Between jobs a worker spins for SPIN_NS (back-to-back calls from
 * generated code see no wake-up latency), then sleeps on `wake_cv`. Sleeping is announced
 * through `sleepers` (and `caller_waiting` the other way): each side stores, then loads
 * the other's word, all seq_cst, so one of them sees the other and no wake-up is lost. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "threads.h"
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SPIN_NS 50000u   /* how long an idle thread spins before it sleeps */

/* js = gen << GEN_SHIFT | CLOSED? | workers inside */
#define ACTIVE_MASK UINT64_C(0xffff)
#define CLOSED (UINT64_C(1) << 16)
#define GEN_SHIFT 17
#define GEN(js) ((js) >> GEN_SHIFT)

struct rt_pool {
    int nthreads, nworkers;
    int oversubscribed;          /* more threads than CPUs: spin with sched_yield */
    pthread_t *tids;
    pthread_mutex_t mu;
    pthread_cond_t wake_cv, done_cv;
    /* the job: plain fields, written before js publishes it, read only by joined workers */
    tdsl_task_fn fn;
    void *ctx;
    int64_t n, chunk;
    /* polled by spinning workers */
    _Alignas(64) atomic_uint_fast64_t js;
    atomic_int stop;
    atomic_int sleepers;
    atomic_int caller_waiting;
    atomic_int busy;             /* a job is running: nested calls go serial */
    /* claimed by every thread during a job */
    _Alignas(64) atomic_int_fast64_t next;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void relax(const rt_pool *p)
{
    if (p->oversubscribed) {
        sched_yield();   /* the thread we wait for may need this CPU */
        return;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Spinning: every 64th step reads the clock and yields. The yield matters on a loaded
 * machine, where the thread we wait for may be queued behind us on this CPU. Only time
 * actually spent spinning counts toward SPIN_NS: a gap between two checks longer than
 * PREEMPTED_NS means we were off the CPU, and a spinner that went to sleep because it was
 * preempted would then be woken next to the caller, on its CPU, and stay slow. */
#define PREEMPTED_NS 20000u
typedef struct spin { uint64_t last, spent; } spin;

static int spun_out(spin *s, unsigned k)
{
    if ((k & 63) != 0)
        return 0;
    sched_yield();
    uint64_t t = now_ns();
    if (s->last && t - s->last < PREEMPTED_NS)
        s->spent += t - s->last;
    s->last = t;
    return s->spent > SPIN_NS;
}

static void run_tasks(rt_pool *p)
{
    const int64_t n = p->n, chunk = p->chunk;
    const tdsl_task_fn fn = p->fn;
    void *const ctx = p->ctx;
    for (;;) {
        int64_t b = atomic_fetch_add_explicit(&p->next, chunk, memory_order_relaxed);
        if (b >= n)
            return;
        int64_t e = n - b < chunk ? n : b + chunk;
        for (int64_t i = b; i < e; i++)
            fn(ctx, i);
    }
}

/* Returns js once its generation differs from seen (or stop is set). */
static uint64_t wait_for_job(rt_pool *p, uint64_t seen)
{
    uint64_t js;
    spin sp = {0, 0};
    for (unsigned k = 1;; k++) {
        js = atomic_load_explicit(&p->js, memory_order_acquire);
        if (GEN(js) != seen || atomic_load_explicit(&p->stop, memory_order_relaxed))
            return js;
        if (spun_out(&sp, k))
            break;
        relax(p);
    }
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->sleepers, 1);
    while (GEN(js = atomic_load(&p->js)) == seen && !atomic_load(&p->stop))
        pthread_cond_wait(&p->wake_cv, &p->mu);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->mu);
    return js;
}

static void *worker_main(void *arg)
{
    rt_pool *p = arg;
    uint64_t seen = 0;
    for (;;) {
        uint64_t js = wait_for_job(p, seen);
        if (atomic_load(&p->stop))
            return NULL;
        seen = GEN(js);
        /* join unless the job is closed (or already replaced: then the CAS fails on gen) */
        int joined = 0;
        while (GEN(js) == seen && !(js & CLOSED))
            if (atomic_compare_exchange_weak(&p->js, &js, js + 1)) {
                joined = 1;
                break;
            }
        if (!joined)
            continue;
        run_tasks(p);
        uint64_t left = atomic_fetch_sub(&p->js, 1) - 1;
        if ((left & ACTIVE_MASK) == 0 && atomic_load(&p->caller_waiting)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

static void stop_workers(rt_pool *p, int started)
{
    atomic_store(&p->stop, 1);
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->wake_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < started; i++)
        pthread_join(p->tids[i], NULL);
}

static long online_cpus(void)
{
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c < 1 ? 1 : c;
}

rt_pool *rt_pool_create(int nthreads)
{
    if (nthreads < 1)
        nthreads = 1;
    if (nthreads > RT_MAX_THREADS)
        nthreads = RT_MAX_THREADS;
    void *mem = NULL;
    if (posix_memalign(&mem, 64, sizeof(rt_pool)) != 0)
        return NULL;
    rt_pool *p = mem;
    memset(p, 0, sizeof *p);
    p->nthreads = nthreads;
    p->nworkers = nthreads - 1;
    p->oversubscribed = nthreads > online_cpus();
    atomic_init(&p->js, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->caller_waiting, 0);
    atomic_init(&p->busy, 0);
    atomic_init(&p->next, 0);
    if (p->nworkers == 0)
        return p;
    int have_mu = pthread_mutex_init(&p->mu, NULL) == 0;
    int have_wake = have_mu && pthread_cond_init(&p->wake_cv, NULL) == 0;
    int have_done = have_wake && pthread_cond_init(&p->done_cv, NULL) == 0;
    p->tids = have_done ? calloc((size_t)p->nworkers, sizeof *p->tids) : NULL;
    int started = 0;
    if (p->tids) {
        /* workers block all signals so that the application's handlers run on its threads */
        sigset_t all, old;
        sigfillset(&all);
        int masked = pthread_sigmask(SIG_SETMASK, &all, &old) == 0;
        while (started < p->nworkers && pthread_create(&p->tids[started], NULL, worker_main, p) == 0)
            started++;
        if (masked)
            pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (started == p->nworkers)
            return p;
        stop_workers(p, started);
    }
    free(p->tids);
    if (have_done)
        pthread_cond_destroy(&p->done_cv);
    if (have_wake)
        pthread_cond_destroy(&p->wake_cv);
    if (have_mu)
        pthread_mutex_destroy(&p->mu);
    free(p);
    return NULL;
}

void rt_pool_destroy(rt_pool *p)
{
    if (!p)
        return;
    if (p->nworkers > 0) {
        stop_workers(p, p->nworkers);
        free(p->tids);
        pthread_cond_destroy(&p->done_cv);
        pthread_cond_destroy(&p->wake_cv);
        pthread_mutex_destroy(&p->mu);
    }
    free(p);
}

int rt_pool_threads(const rt_pool *p) { return p ? p->nthreads : 1; }

void rt_pool_run(rt_pool *p, int64_t n, tdsl_task_fn fn, void *ctx)
{
    if (!fn || n <= 0)
        return;
    if (!p || p->nworkers == 0 || n == 1 || atomic_exchange(&p->busy, 1)) {
        for (int64_t i = 0; i < n; i++)   /* one thread, one task, or nested: inline */
            fn(ctx, i);
        return;
    }
    /* n <= threads: a task per claim; more: ~8 claims per thread balance uneven tasks.
     * next can overshoot n by nthreads * chunk <= 2n, fine for any realistic n. */
    int64_t chunk = n <= p->nthreads ? 1 : n / (8 * (int64_t)p->nthreads);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->chunk = chunk < 1 ? 1 : chunk;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    uint64_t gen = GEN(atomic_load_explicit(&p->js, memory_order_relaxed)) + 1;
    atomic_store(&p->js, gen << GEN_SHIFT);   /* seq_cst: publishes the job, then sleepers is read */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake_cv);
        pthread_mutex_unlock(&p->mu);
    }
    run_tasks(p);
    /* every task is claimed: close the job, then wait for the workers inside it */
    uint64_t js = atomic_fetch_or(&p->js, CLOSED) | CLOSED;
    spin sp = {0, 0};
    for (unsigned k = 1; (js & ACTIVE_MASK) != 0; k++) {
        if (spun_out(&sp, k)) {
            pthread_mutex_lock(&p->mu);
            atomic_store(&p->caller_waiting, 1);
            while ((atomic_load(&p->js) & ACTIVE_MASK) != 0)
                pthread_cond_wait(&p->done_cv, &p->mu);
            atomic_store(&p->caller_waiting, 0);
            pthread_mutex_unlock(&p->mu);
            break;
        }
        relax(p);
        js = atomic_load_explicit(&p->js, memory_order_acquire);
    }
    atomic_store_explicit(&p->busy, 0, memory_order_release);
}

int rt_resolve_threads(int requested)
{
    if (requested > 0)
        return requested > RT_MAX_THREADS ? RT_MAX_THREADS : requested;
    const char *s = getenv("TDSL_NUM_THREADS");
    if (s && *s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno == 0 && end != s && *end == 0 && v >= 1 && v <= RT_MAX_THREADS)
            return (int)v;
    }
    long c = online_cpus();
    return c > RT_MAX_THREADS ? RT_MAX_THREADS : (int)c;
}
