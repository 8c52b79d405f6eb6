/* A fixed set of worker threads for the engine's outer loops (tokens, heads, rows).
 *
 * Work is cut into tasks whose boundaries never depend on the number of threads, and each task
 * writes outputs no other task writes, so a result is bit-identical with 1 or 8 threads. */
#pragma once

#include "peer-error.h"

#define THREAD_POOL_MAX_THREADS 64

typedef struct thread_pool thread_pool;

/* Called once per task; `thread` in [0, threads) names the caller's scratch space. */
typedef void (*thread_pool_fn)(void *ctx, int task, int thread);

/* 1 <= n_threads <= THREAD_POOL_MAX_THREADS. Also pins OpenBLAS to one thread: the pool does the parallel split itself. */
thread_pool *thread_pool_new(int n_threads, peer_error *err);
void thread_pool_free(thread_pool *pool);
/* 1 for a NULL pool, which runs everything on the calling thread. */
int thread_pool_get_threads(const thread_pool *pool);
/* Runs fn(ctx, task, thread) for every task in [0, n_tasks) and returns when all are done. */
void thread_pool_run(thread_pool *pool, int n_tasks, thread_pool_fn fn, void *ctx);
/* Pins OpenBLAS to one thread, once per process. Every engine path to BLAS passes here first, so
 * a run without a pool computes exactly what a one-thread pool computes, whatever
 * OPENBLAS_NUM_THREADS says. */
void thread_pool_pin_blas(void);
/* The number of processors this process may run on. */
int thread_pool_default_threads(void);
