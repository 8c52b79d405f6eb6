/* Threads change nothing: the forward's outputs and activations, the running statistics, every
 * dense gradient, the input gradient and the sparse gradient are bit-identical with no pool and
 * with pools of 1, 2, 3 and the most threads a pool may have. 300 tokens do not divide evenly
 * into the engine's blocks, so the last block is short and the threads finish at different
 * times. */
#include <string.h>

#include "test-util.h"

#define THREADS_BT 300

typedef struct {
    float *out;         /* (BT, D) */
    float *running;     /* (2, HK) mean then var, batch-norm only */
    float *query;       /* (BT, HK) */
    float *query_normed;/* (BT, HK) */
    float *norm_mean;   /* (norm stats) */
    float *norm_rstd;
    int32_t *expert;    /* (BT, h, k) */
    float *score, *gate, *preact; /* (BT, h, k) */
    float *dense;       /* (grads count) */
    float *dinp;        /* (BT, D) */
    int n_rows;
    int32_t *rows;      /* (n_rows) */
    int32_t *position;  /* (N) */
    float *down, *up;   /* (n_rows, D) */
} run_result;

static size_t norm_stats_size(const peer_layer_config *cfg, int BT)
{
    switch (cfg->query_norm) {
    case PEER_NORM_LAYER:
        return (size_t)BT * cfg->heads;
    case PEER_NORM_BATCH:
        return (size_t)cfg->heads * cfg->d_key;
    case PEER_NORM_NONE:
        break;
    }
    return 0;
}

static void run_layer(run_result *res, const peer_layer_config *cfg, peer_mode mode,
                      const float *inp, const float *dout, thread_pool *pool)
{
    int BT = THREADS_BT, D = cfg->d_model, HK = cfg->heads * cfg->d_key;
    size_t slots = (size_t)BT * cfg->heads * cfg->topk;
    memset(res, 0, sizeof *res);
    test_layer layer;
    test_layer_init(&layer, cfg, BT, TEST_SEED + 2024u);
    test_layer_zero_grads(&layer);

    res->out = g_new(float, (size_t)BT * D);
    res->dinp = g_new0(float, (size_t)BT * D);
    peer_layer_forward(res->out, &layer.acts, inp, &layer.params, cfg, BT, mode,
                       PEER_SELECT_RETRIEVE, pool);
    peer_layer_backward(res->dinp, &layer.grads, &layer.sparse, &layer.acts, dout, inp,
                        &layer.params, cfg, BT, pool);

    const peer_layer_acts *acts = &layer.acts;
    size_t stats = norm_stats_size(cfg, BT);
    res->query = test_copy_floats(acts->query, (size_t)BT * HK);
    res->query_normed = test_copy_floats(acts->query_normed, (size_t)BT * HK);
    res->norm_mean = stats && mode == PEER_MODE_TRAIN ? test_copy_floats(acts->norm_mean, stats)
                                                      : NULL;
    res->norm_rstd = stats && mode == PEER_MODE_TRAIN ? test_copy_floats(acts->norm_rstd, stats)
                                                      : NULL;
    res->expert = g_memdup2(acts->expert, slots * sizeof(int32_t));
    res->score = test_copy_floats(acts->score, slots);
    res->gate = test_copy_floats(acts->gate, slots);
    res->preact = test_copy_floats(acts->preact, slots);
    res->dense = test_copy_floats(layer.grad_arena, peer_layer_grads_count(cfg));
    if (cfg->query_norm == PEER_NORM_BATCH) {
        res->running = g_new(float, 2 * (size_t)HK);
        memcpy(res->running, layer.params.running_mean, HK * sizeof(float));
        memcpy(res->running + HK, layer.params.running_var, HK * sizeof(float));
    }
    res->n_rows = layer.sparse.n_rows;
    res->rows = g_memdup2(layer.sparse.rows, MAX(res->n_rows, 1) * sizeof(int32_t));
    res->position = g_memdup2(layer.sparse.position, (size_t)cfg->n_experts * sizeof(int32_t));
    res->down = test_copy_floats(layer.sparse.down, (size_t)res->n_rows * D);
    res->up = test_copy_floats(layer.sparse.up, (size_t)res->n_rows * D);
    test_layer_free(&layer);
}

static void run_result_clear(run_result *res)
{
    g_free(res->out);
    g_free(res->running);
    g_free(res->query);
    g_free(res->query_normed);
    g_free(res->norm_mean);
    g_free(res->norm_rstd);
    g_free(res->expert);
    g_free(res->score);
    g_free(res->gate);
    g_free(res->preact);
    g_free(res->dense);
    g_free(res->dinp);
    g_free(res->rows);
    g_free(res->position);
    g_free(res->down);
    g_free(res->up);
    memset(res, 0, sizeof *res);
}

#define assert_same(name, a, b, bytes)                                                         \
    do {                                                                                       \
        if (((a) == NULL) != ((b) == NULL) || ((a) && memcmp((a), (b), (bytes)) != 0))        \
            test_fail("%s differs from the run without a pool (%s)", name, label);             \
    } while (0)

static void assert_identical(const run_result *a, const run_result *b,
                             const peer_layer_config *cfg, const char *label)
{
    int BT = THREADS_BT, D = cfg->d_model, HK = cfg->heads * cfg->d_key;
    size_t slots = (size_t)BT * cfg->heads * cfg->topk;
    size_t stats = norm_stats_size(cfg, BT);
    assert_same("out", a->out, b->out, (size_t)BT * D * sizeof(float));
    assert_same("running statistics", a->running, b->running, 2 * (size_t)HK * sizeof(float));
    assert_same("query", a->query, b->query, (size_t)BT * HK * sizeof(float));
    assert_same("query_normed", a->query_normed, b->query_normed,
                (size_t)BT * HK * sizeof(float));
    assert_same("norm_mean", a->norm_mean, b->norm_mean, stats * sizeof(float));
    assert_same("norm_rstd", a->norm_rstd, b->norm_rstd, stats * sizeof(float));
    assert_same("expert", a->expert, b->expert, slots * sizeof(int32_t));
    assert_same("score", a->score, b->score, slots * sizeof(float));
    assert_same("gate", a->gate, b->gate, slots * sizeof(float));
    assert_same("preact", a->preact, b->preact, slots * sizeof(float));
    assert_same("dense gradients", a->dense, b->dense,
                peer_layer_grads_count(cfg) * sizeof(float));
    assert_same("dinp", a->dinp, b->dinp, (size_t)BT * D * sizeof(float));
    g_assert_cmpint(a->n_rows, ==, b->n_rows);
    assert_same("sparse rows", a->rows, b->rows, (size_t)a->n_rows * sizeof(int32_t));
    assert_same("sparse position", a->position, b->position,
                (size_t)cfg->n_experts * sizeof(int32_t));
    assert_same("sparse down", a->down, b->down, (size_t)a->n_rows * D * sizeof(float));
    assert_same("sparse up", a->up, b->up, (size_t)a->n_rows * D * sizeof(float));
}

typedef struct {
    peer_query_norm norm;
    peer_mode mode;
    bool shared_keys;
} threads_case;

static void test_threads_identical(gconstpointer data)
{
    const threads_case *tc = data;
    peer_layer_config cfg = test_config(64, 64 * 64, 4, 8, 32, tc->shared_keys, tc->norm,
                                        PEER_ACTIVATION_GELU);
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED + 300u);
    float *inp = test_random_floats(&rng, (size_t)THREADS_BT * cfg.d_model, 1.0f);
    float *dout = test_random_floats(&rng, (size_t)THREADS_BT * cfg.d_model, 1.0f);

    run_result reference;
    run_layer(&reference, &cfg, tc->mode, inp, dout, NULL);
    /* A run that chose nothing in common would make the comparison vacuous. */
    g_assert_cmpint(reference.n_rows, >, 0);

    /* The most threads a pool may have, too: every thread index gets its own scratch. */
    static const int thread_counts[] = { 1, 2, 3, THREAD_POOL_MAX_THREADS };
    for (size_t i = 0; i < G_N_ELEMENTS(thread_counts); i++) {
        peer_error err = { { 0 } };
        thread_pool *pool = thread_pool_new(thread_counts[i], &err);
        g_assert_nonnull(pool);
        g_assert_cmpint(thread_pool_get_threads(pool), ==, thread_counts[i]);
        char *label = g_strdup_printf("%d threads", thread_counts[i]);
        /* Twice on the same pool: a pool's second run must not see the first's state. */
        for (int repeat = 0; repeat < 2; repeat++) {
            run_result res;
            run_layer(&res, &cfg, tc->mode, inp, dout, pool);
            assert_identical(&reference, &res, &cfg, label);
            run_result_clear(&res);
        }
        g_free(label);
        thread_pool_free(pool);
    }
    run_result_clear(&reference);
    g_free(dout);
    g_free(inp);
}

/* Every task of a run is executed exactly once, whatever the thread count. */
typedef struct {
    int *hits;
    int *thread_of;
    int n_threads;
} count_ctx;

static void count_task(void *data, int task, int thread)
{
    count_ctx *ctx = data;
    g_atomic_int_inc(&ctx->hits[task]);
    ctx->thread_of[task] = thread;
}

static void test_pool_runs_every_task(void)
{
    for (int threads = 1; threads <= 3; threads++) {
        peer_error err = { { 0 } };
        thread_pool *pool = thread_pool_new(threads, &err);
        g_assert_nonnull(pool);
        for (int n_tasks = 0; n_tasks < 50; n_tasks += 7) {
            count_ctx ctx = { g_new0(int, MAX(n_tasks, 1)), g_new0(int, MAX(n_tasks, 1)),
                              threads };
            thread_pool_run(pool, n_tasks, count_task, &ctx);
            for (int t = 0; t < n_tasks; t++) {
                g_assert_cmpint(ctx.hits[t], ==, 1);
                g_assert_cmpint(ctx.thread_of[t], >=, 0);
                g_assert_cmpint(ctx.thread_of[t], <, threads);
            }
            g_free(ctx.hits);
            g_free(ctx.thread_of);
        }
        thread_pool_free(pool);
    }
    g_assert_cmpint(thread_pool_get_threads(NULL), ==, 1);
}

static const threads_case cases[] = {
    { PEER_NORM_NONE, PEER_MODE_TRAIN, false },
    { PEER_NORM_LAYER, PEER_MODE_TRAIN, true },
    { PEER_NORM_BATCH, PEER_MODE_TRAIN, false },
    { PEER_NORM_BATCH, PEER_MODE_EVAL, true },
};

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        const threads_case *tc = &cases[i];
        char *path = g_strdup_printf("/threads/identical/%s/%s/%s",
                                     peer_query_norm_name(tc->norm),
                                     tc->mode == PEER_MODE_TRAIN ? "train" : "eval",
                                     tc->shared_keys ? "shared" : "per-head");
        g_test_add_data_func(path, tc, test_threads_identical);
        g_free(path);
    }
    /* Last, so the first run without a pool happens before any pool has pinned OpenBLAS to
     * one thread: the engine must not depend on that. */
    g_test_add_func("/threads/pool-runs-every-task", test_pool_runs_every_task);
    return g_test_run();
}
