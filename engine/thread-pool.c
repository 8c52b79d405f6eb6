#define _GNU_SOURCE
#include "thread-pool.h"

#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct thread_pool {
    int n_threads;
    pthread_t *threads; /* (n_threads - 1) workers; the caller is thread 0 */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t done;
    unsigned long generation; /* bumped for every run, so a worker joins each run once */
    bool quit;
    /* the current run */
    thread_pool_fn fn;
    void *ctx;
    int n_tasks;
    atomic_int next_task;
    int busy_workers;
};

typedef struct {
    thread_pool *pool;
    int thread;
} worker_arg;

static void run_tasks(thread_pool *pool, int thread)
{
    for (;;) {
        int task = atomic_fetch_add_explicit(&pool->next_task, 1, memory_order_relaxed);
        if (task >= pool->n_tasks)
            break;
        pool->fn(pool->ctx, task, thread);
    }
}

static void *worker_main(void *data)
{
    worker_arg *arg = data;
    thread_pool *pool = arg->pool;
    int thread = arg->thread;
    free(arg);

    unsigned long seen = 0;
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (!pool->quit && pool->generation == seen)
            pthread_cond_wait(&pool->wake, &pool->lock);
        if (pool->quit)
            break;
        seen = pool->generation;
        pthread_mutex_unlock(&pool->lock);

        run_tasks(pool, thread);

        pthread_mutex_lock(&pool->lock);
        if (--pool->busy_workers == 0)
            pthread_cond_signal(&pool->done);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

static pthread_once_t blas_pinned = PTHREAD_ONCE_INIT;

static void pin_blas_once(void)
{
    openblas_set_num_threads(1);
}

void thread_pool_pin_blas(void)
{
    pthread_once(&blas_pinned, pin_blas_once);
}

int thread_pool_default_threads(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int count = CPU_COUNT(&set);
        if (count > 0)
            return count;
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}

thread_pool *thread_pool_new(int n_threads, peer_error *err)
{
    if (n_threads < 1 || n_threads > THREAD_POOL_MAX_THREADS) {
        peer_error_set(err, "threads = %d is out of range: use 1 to %d (this machine has %d)",
                       n_threads, THREAD_POOL_MAX_THREADS, thread_pool_default_threads());
        return NULL;
    }
    /* The pool splits matrix products itself, at boundaries that do not depend on the thread
     * count; OpenBLAS threads on top would oversubscribe the cores. */
    thread_pool_pin_blas();

    thread_pool *pool = calloc(1, sizeof *pool);
    if (!pool) {
        peer_error_set(err, "out of memory creating a thread pool");
        return NULL;
    }
    pool->n_threads = n_threads;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->done, NULL);
    atomic_init(&pool->next_task, 0);
    if (n_threads > 1) {
        pool->threads = calloc((size_t)n_threads - 1, sizeof *pool->threads);
        if (!pool->threads) {
            thread_pool_free(pool);
            peer_error_set(err, "out of memory creating a thread pool");
            return NULL;
        }
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *arg = malloc(sizeof *arg);
        if (arg)
            *arg = (worker_arg){ .pool = pool, .thread = i };
        if (!arg || pthread_create(&pool->threads[i - 1], NULL, worker_main, arg) != 0) {
            free(arg);
            pool->n_threads = i;
            thread_pool_free(pool);
            peer_error_set(err, "could not start thread %d of %d; try fewer threads", i + 1,
                           n_threads);
            return NULL;
        }
    }
    return pool;
}

void thread_pool_free(thread_pool *pool)
{
    if (!pool)
        return;
    pthread_mutex_lock(&pool->lock);
    pool->quit = true;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 1; i < pool->n_threads; i++)
        pthread_join(pool->threads[i - 1], NULL);
    pthread_cond_destroy(&pool->done);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->lock);
    free(pool->threads);
    free(pool);
}

int thread_pool_get_threads(const thread_pool *pool)
{
    return pool ? pool->n_threads : 1;
}

void thread_pool_run(thread_pool *pool, int n_tasks, thread_pool_fn fn, void *ctx)
{
    if (n_tasks <= 0)
        return;
    thread_pool_pin_blas();
    if (!pool || pool->n_threads == 1 || n_tasks == 1) {
        for (int task = 0; task < n_tasks; task++)
            fn(ctx, task, 0);
        return;
    }
    pthread_mutex_lock(&pool->lock);
    pool->fn = fn;
    pool->ctx = ctx;
    pool->n_tasks = n_tasks;
    atomic_store(&pool->next_task, 0);
    pool->busy_workers = pool->n_threads - 1;
    pool->generation++;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->lock);

    run_tasks(pool, 0);

    pthread_mutex_lock(&pool->lock);
    while (pool->busy_workers > 0)
        pthread_cond_wait(&pool->done, &pool->lock);
    pthread_mutex_unlock(&pool->lock);
}
