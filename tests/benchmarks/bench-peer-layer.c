/* One PEER layer in training: forward + backward throughput against a dense 4D FFN on the same
 * tokens, peak memory, and where the forward's time goes.
 *
 * Phases are timed through the public API only:
 *   query      linear_forward on the query's shape, the call the forward makes;
 *   retrieval  forward with PEER_SELECT_RETRIEVE minus forward with PEER_SELECT_REUSE (reuse
 *              keeps the chosen experts and only rescores them, skipping the sub-key sgemm and
 *              every top-k);
 *   experts    peer_layer_experts_forward and _backward on the experts the forward chose: the
 *              fused expert kernel, and its backward with the sparse u and v gradient rows.
 * The experts' reference is the row-read limit: the same rows of u and v, in the same order and
 * token blocks, read with no arithmetic. */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-common.h"
#include "dense-ffn.h"
#include "linear.h"
#include "peer-layer.h"
#include "thread-pool.h"

typedef struct {
    int side;
    int tokens;
    int d_model;
    int heads;
    int topk;
    int d_key;
    int threads;
    int reps;
    int expert_block;
    int retrieve_block;
    bool shared_keys;
} layer_options;

static void print_samples(const char *what, const bench_samples *s, double scale, const char *unit)
{
    printf("  %-44s %10.3f %s  (min %.3f, max %.3f, n = %d)\n", what,
           scale * bench_samples_median(s), unit, scale * bench_samples_min(s),
           scale * bench_samples_max(s), s->count);
}

/* ---- the row-read limit ---------------------------------------------------------------------- */

typedef struct {
    const int32_t *expert; /* (BT, h·k) */
    const uint32_t *down;  /* (N, D) the bits of u */
    const uint32_t *up;    /* (N, D) the bits of v */
    int BT, per_token, D, block;
    int distance;  /* slots ahead the rows are prefetched, 0 for none */
    int line_step; /* words between prefetches: 16, every cache line, or 32, every other one */
    volatile uint32_t sink[THREAD_POOL_MAX_THREADS];
} row_read_job;

#define READ_LANES 16

/* XOR of every word of a row pair: a read the compiler cannot drop and that costs no more than
 * one vector instruction per cache line. */
static void row_read_block(void *data, int task, int thread)
{
    row_read_job *job = data;
    int t0 = task * job->block;
    int t1 = t0 + job->block < job->BT ? t0 + job->block : job->BT;
    int D = job->D;
    size_t first = (size_t)t0 * job->per_token, last = (size_t)t1 * job->per_token;
    uint32_t lanes[READ_LANES] = { 0 };
    for (size_t slot = first; slot < last; slot++) {
        if (job->distance && slot + job->distance < last) {
            size_t ahead = (size_t)job->expert[slot + job->distance] * D;
            for (int d = 0; d < D; d += job->line_step) {
                __builtin_prefetch(job->down + ahead + d, 0, 0);
                __builtin_prefetch(job->up + ahead + d, 0, 0);
            }
        }
        const uint32_t *u = job->down + (size_t)job->expert[slot] * D;
        const uint32_t *v = job->up + (size_t)job->expert[slot] * D;
        int d = 0;
        for (; d + READ_LANES <= D; d += READ_LANES)
            for (int l = 0; l < READ_LANES; l++)
                lanes[l] ^= u[d + l] ^ v[d + l];
        for (; d < D; d++)
            lanes[0] ^= u[d] ^ v[d];
    }
    uint32_t folded = 0;
    for (int l = 0; l < READ_LANES; l++)
        folded ^= lanes[l];
    job->sink[thread] ^= folded;
}

#define STREAM_BLOCK (1 << 18) /* words per task: 1 MiB */

/* Writing the gradient rows once, in parallel blocks: what the backward must store besides
 * reading the table rows. */
typedef struct {
    float *rows;
    size_t count;
} row_write_job;

static void row_write_block(void *data, int task, int thread)
{
    row_write_job *job = data;
    size_t i0 = (size_t)task * STREAM_BLOCK;
    size_t i1 = i0 + STREAM_BLOCK < job->count ? i0 + STREAM_BLOCK : job->count;
    memset(job->rows + i0, 0, (i1 - i0) * sizeof(float));
}

typedef struct {
    const uint32_t *words;
    size_t count;
    volatile uint32_t sink[THREAD_POOL_MAX_THREADS];
} stream_job;

static void stream_read_block(void *data, int task, int thread)
{
    stream_job *job = data;
    size_t i0 = (size_t)task * STREAM_BLOCK;
    size_t i1 = i0 + STREAM_BLOCK < job->count ? i0 + STREAM_BLOCK : job->count;
    uint32_t lanes[READ_LANES] = { 0 };
    size_t i = i0;
    for (; i + READ_LANES <= i1; i += READ_LANES)
        for (int l = 0; l < READ_LANES; l++)
            lanes[l] ^= job->words[i + l];
    for (; i < i1; i++)
        lanes[0] ^= job->words[i];
    uint32_t folded = 0;
    for (int l = 0; l < READ_LANES; l++)
        folded ^= lanes[l];
    job->sink[thread] ^= folded;
}

/* ---- sub-key scoring as plain sgemm ---------------------------------------------------------- */

typedef struct {
    const float *query; /* (BT, HK) normalised */
    const float *keys;  /* (G, 2, n, dk/2) */
    float *scratch;     /* (threads, block, n) */
    int BT, HK, heads, n, d_key, block;
    bool shared_keys;
} subkey_job;

/* One block of tokens against both halves of every head's keys: the sgemm calls retrieval
 * makes, without the top-k that follows them. */
static void subkey_block(void *data, int task, int thread)
{
    const subkey_job *job = data;
    int t0 = task * job->block;
    int rows = job->BT - t0 < job->block ? job->BT - t0 : job->block;
    int half = job->d_key / 2;
    float *out = job->scratch + (size_t)thread * job->block * job->n;
    for (int j = 0; j < job->heads; j++) {
        const float *group = job->keys + (size_t)(job->shared_keys ? 0 : j) * 2 * job->n * half;
        for (int s = 0; s < 2; s++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, job->n, half, 1.0f,
                        job->query + (size_t)t0 * job->HK + (size_t)j * job->d_key + s * half,
                        job->HK, group + (size_t)s * job->n * half, half, 0.0f, out, job->n);
    }
}

/* ---- setup helpers --------------------------------------------------------------------------- */

static void die_on(bool ok, const peer_error *err)
{
    if (!ok) {
        fprintf(stderr, "bench-peer-layer: %s\n", err->message);
        exit(1);
    }
}

static double gflops(double flops_per_token, int tokens, double seconds)
{
    return seconds > 0 ? flops_per_token * tokens / seconds * 1e-9 : 0.0;
}

static void print_ratio(const char *what, const bench_samples *s, double scale, const char *unit)
{
    printf("  %-44s %10.2f%s  (min %.2f, max %.2f)\n", what, scale * bench_samples_median(s), unit,
           scale * bench_samples_min(s), scale * bench_samples_max(s));
}

int main(int argc, char **argv)
{
    layer_options opt = {
        .side = 1024, .tokens = 4096, .d_model = 256, .heads = 8, .topk = 16, .d_key = 128,
        .threads = 2, .reps = 7, .expert_block = 8, .retrieve_block = 32,
    };
    const bench_option options[] = {
        { "side", BENCH_OPTION_INT, &opt.side, "sub-keys per side n; N = n²" },
        { "tokens", BENCH_OPTION_INT, &opt.tokens, "tokens per batch (BT)" },
        { "d-model", BENCH_OPTION_INT, &opt.d_model, "D" },
        { "heads", BENCH_OPTION_INT, &opt.heads, "h" },
        { "topk", BENCH_OPTION_INT, &opt.topk, "k experts per head" },
        { "d-key", BENCH_OPTION_INT, &opt.d_key, "dk" },
        { "threads", BENCH_OPTION_INT, &opt.threads, "worker threads" },
        { "reps", BENCH_OPTION_INT, &opt.reps, "timed rounds, each timing every measurement" },
        { "expert-block", BENCH_OPTION_INT, &opt.expert_block,
          "tokens per task of the row-read limit (the engine's expert block)" },
        { "retrieve-block", BENCH_OPTION_INT, &opt.retrieve_block,
          "tokens per sub-key sgemm (the engine's retrieval block)" },
        { "shared-keys", BENCH_OPTION_FLAG, &opt.shared_keys, "one key group for all heads" },
    };
    if (!bench_parse_options(argc, argv, options, sizeof options / sizeof options[0],
                             "Forward + backward of one PEER layer against a dense 4D FFN."))
        return 2;
    if (opt.reps > BENCH_MAX_SAMPLES) {
        fprintf(stderr, "bench-peer-layer: at most %d reps\n", BENCH_MAX_SAMPLES);
        return 2;
    }

    peer_error err;
    thread_pool *pool = thread_pool_new(opt.threads, &err);
    die_on(pool != NULL, &err);

    peer_layer_config cfg = {
        .d_model = opt.d_model, .n_experts = opt.side * opt.side, .heads = opt.heads,
        .topk = opt.topk, .d_key = opt.d_key, .shared_keys = opt.shared_keys,
        .query_norm = PEER_NORM_BATCH, .activation = PEER_ACTIVATION_GELU,
    };
    die_on(peer_layer_config_validate(&cfg, &err), &err);
    int BT = opt.tokens, D = cfg.d_model, HK = cfg.heads * cfg.d_key, n = opt.side;
    int F = 4 * D, per_token = cfg.heads * cfg.topk;
    die_on(peer_layer_check_memory(&cfg, BT, peer_memory_available(), &err), &err);

    printf("%s, kernels for %s\n", openblas_get_config(), openblas_get_corename());
    printf("PEER layer: D = %d, N = %d² = %d, h = %d, k = %d, dk = %d, %s keys, batch-norm, "
           "gelu; BT = %d tokens, %d threads; medians over %d rounds\n",
           D, n, cfg.n_experts, cfg.heads, cfg.topk, cfg.d_key,
           cfg.shared_keys ? "shared" : "per-head", BT, opt.threads, opt.reps);
    double rss_start = bench_peak_rss_mib();

    /* ---- the layer, its gradients and a batch ---- */
    double t_init = bench_now();
    size_t n_params = peer_layer_params_count(&cfg);
    float *arena = bench_alloc(n_params * sizeof(float));
    peer_layer_params params;
    peer_layer_params_point(&params, &cfg, arena);
    peer_rng rng;
    peer_rng_seed(&rng, 42);
    peer_layer_params_init(&params, &cfg, &rng);

    size_t n_grads = peer_layer_grads_count(&cfg);
    float *grad_arena = bench_alloc(n_grads * sizeof(float));
    memset(grad_arena, 0, n_grads * sizeof(float));
    peer_layer_params grads;
    peer_layer_grads_point(&grads, &cfg, grad_arena);
    peer_sparse_grad sparse;
    die_on(peer_sparse_grad_init(&sparse, cfg.n_experts, D, &err), &err);
    peer_layer_acts acts;
    die_on(peer_layer_acts_init(&acts, &cfg, BT, &err), &err);

    size_t act_bytes = (size_t)BT * D * sizeof(float);
    float *inp = bench_alloc(act_bytes), *out = bench_alloc(act_bytes);
    float *dout = bench_alloc(act_bytes), *dinp = bench_alloc(act_bytes);
    peer_rng_fill_normal(&rng, inp, (size_t)BT * D, 1.0f);
    peer_rng_fill_normal(&rng, dout, (size_t)BT * D, 1.0f);
    printf("  set-up (weights drawn by the engine's initialisation) %.1f s\n\n",
           bench_now() - t_init);

    /* One training step touches every page the layer will ever use: the peak after it is the
     * layer's footprint, before anything else of the benchmark is allocated. */
    peer_layer_forward(out, &acts, inp, &params, &cfg, BT, PEER_MODE_TRAIN, PEER_SELECT_RETRIEVE,
                       pool);
    peer_layer_backward(dinp, &grads, &sparse, &acts, dout, inp, &params, &cfg, BT, pool);
    double rss_peer = bench_peak_rss_mib();
    int touched_rows = sparse.n_rows;

    /* ---- everything the rounds compare against ---- */
    size_t dense_count = dense_ffn_params_count(D, F);
    float *dense_arena = bench_alloc(dense_count * sizeof(float));
    float *dense_grad_arena = bench_alloc(dense_count * sizeof(float));
    dense_ffn_params dense, dense_grads;
    dense_ffn_params_point(&dense, D, F, dense_arena);
    dense_ffn_params_point(&dense_grads, D, F, dense_grad_arena);
    peer_rng_fill_normal(&rng, dense.fc_weight, (size_t)F * D, 1.0f / sqrtf((float)D));
    peer_rng_fill_normal(&rng, dense.fc_bias, (size_t)F, 0.02f);
    peer_rng_fill_normal(&rng, dense.proj_weight, (size_t)D * F, 1.0f / sqrtf((float)F));
    peer_rng_fill_normal(&rng, dense.proj_bias, (size_t)D, 0.02f);
    dense_ffn_acts dense_acts;
    die_on(dense_ffn_acts_init(&dense_acts, F, BT, &err), &err);

    int threads = thread_pool_get_threads(pool);
    subkey_job sj = { .query = acts.query_normed, .keys = params.keys, .BT = BT, .HK = HK,
                      .heads = cfg.heads, .n = n, .d_key = cfg.d_key,
                      .block = opt.retrieve_block, .shared_keys = cfg.shared_keys };
    sj.scratch = bench_alloc((size_t)(threads > 1 ? threads : 1) * BT * n * sizeof(float));

    row_read_job rj = { .expert = acts.expert, .down = (const uint32_t *)params.down,
                        .up = (const uint32_t *)params.up, .BT = BT, .per_token = per_token,
                        .D = D, .block = opt.expert_block };
    int row_tasks = (BT + rj.block - 1) / rj.block;
    /* The limit is the best this machine does: try prefetch distances, and prefetching every
     * cache line or every other one (the hardware fetches the pair's other line itself), and
     * keep the fastest for the rounds. */
    static const int distances[] = { 0, 2, 4, 8, 12 };
    static const int line_steps[] = { 16, 32 };
    enum { N_DISTANCES = sizeof distances / sizeof distances[0], N_STEPS = 2 };
    double distance_time[N_STEPS][N_DISTANCES];
    int best_step = 0, best = 0;
    for (int l = 0; l < N_STEPS; l++) {
        for (int i = 0; i < N_DISTANCES; i++) {
            rj.distance = distances[i];
            rj.line_step = line_steps[l];
            distance_time[l][i] = INFINITY;
            for (int r = 0; r < 3; r++) {
                double t0 = bench_now();
                thread_pool_run(pool, row_tasks, row_read_block, &rj);
                double took = bench_now() - t0;
                distance_time[l][i] = took < distance_time[l][i] ? took : distance_time[l][i];
            }
            if (distance_time[l][i] < distance_time[best_step][best]) {
                best_step = l;
                best = i;
            }
        }
    }
    rj.distance = distances[best];
    rj.line_step = line_steps[best_step];

    row_write_job write_j = { .count = (size_t)touched_rows * 2 * D };
    write_j.rows = bench_alloc(write_j.count * sizeof(float));
    memset(write_j.rows, 1, write_j.count * sizeof(float));
    int write_tasks = (int)((write_j.count + STREAM_BLOCK - 1) / STREAM_BLOCK);

    stream_job stream_j = { .words = (const uint32_t *)params.down,
                            .count = 2 * (size_t)cfg.n_experts * D };
    int stream_tasks = (int)((stream_j.count + STREAM_BLOCK - 1) / STREAM_BLOCK);

    /* ---- the rounds: every measurement once per round, so load from elsewhere on a shared
     * machine spreads over all of them and the per-round ratios stay fair ---- */
    bench_samples fwd = { 0 }, bwd = { 0 }, reuse = { 0 }, query = { 0 }, subkey = { 0 };
    bench_samples efwd = { 0 }, ebwd = { 0 }, row_read = { 0 }, stream = { 0 };
    bench_samples dfwd = { 0 }, dbwd = { 0 };
    bench_samples retrieval = { 0 }, peer_over_dense = { 0 }, efwd_share = { 0 },
                  efwd_cpu_share = { 0 }, ebwd_bytes_share = { 0 }, ebwd_bytes_cpu_share = { 0 },
                  row_write = { 0 }, bwd_limit_share = { 0 }, bwd_limit_cpu_share = { 0 };
    double write_bytes = (double)write_j.count * sizeof(float);
    double row_bytes = (double)BT * per_token * 2 * D * sizeof(float);
    /* The backward's bytes per second against the row-read limit's: it reads the same rows and
     * also writes the gradient rows. */
    double bwd_bytes_scale = (row_bytes + write_bytes) / row_bytes;
    for (int r = 0; r < opt.reps; r++) {
        double t0 = bench_now();
        peer_layer_forward(out, &acts, inp, &params, &cfg, BT, PEER_MODE_TRAIN,
                           PEER_SELECT_RETRIEVE, pool);
        double t1 = bench_now();
        memset(grad_arena, 0, n_grads * sizeof(float));
        memset(dinp, 0, act_bytes);
        peer_sparse_grad_zero(&sparse);
        double t2 = bench_now();
        peer_layer_backward(dinp, &grads, &sparse, &acts, dout, inp, &params, &cfg, BT, pool);
        double t3 = bench_now();
        peer_layer_forward(out, &acts, inp, &params, &cfg, BT, PEER_MODE_TRAIN,
                           PEER_SELECT_REUSE, pool);
        double t4 = bench_now();
        linear_forward(acts.query, inp, params.query_weight, params.query_bias, BT, D, HK, pool);
        double t5 = bench_now();
        thread_pool_run(pool, (BT + sj.block - 1) / sj.block, subkey_block, &sj);
        double t6 = bench_now();
        double c6 = bench_cpu_now();
        peer_layer_experts_forward(out, &acts, inp, &params, &cfg, BT, pool);
        double t7 = bench_now(), c7 = bench_cpu_now();
        memset(dinp, 0, act_bytes);
        peer_sparse_grad_zero(&sparse);
        double t8 = bench_now(), c8 = bench_cpu_now();
        peer_layer_experts_backward(dinp, &sparse, &acts, dout, inp, &params, &cfg, BT, pool);
        double t9 = bench_now(), c9 = bench_cpu_now();
        thread_pool_run(pool, row_tasks, row_read_block, &rj);
        double t10 = bench_now(), c10 = bench_cpu_now();
        thread_pool_run(pool, write_tasks, row_write_block, &write_j);
        double t10w = bench_now(), c10w = bench_cpu_now();
        double t10s = bench_now();
        thread_pool_run(pool, stream_tasks, stream_read_block, &stream_j);
        double t11 = bench_now();
        dense_ffn_forward(out, &dense_acts, inp, &dense, BT, D, F, pool);
        double t12 = bench_now();
        memset(dense_grad_arena, 0, dense_count * sizeof(float));
        memset(dinp, 0, act_bytes);
        double t13 = bench_now();
        dense_ffn_backward(dinp, &dense_grads, &dense_acts, dout, inp, &dense, BT, D, F, pool);
        double t14 = bench_now();

        bench_samples_add(&fwd, t1 - t0);
        bench_samples_add(&bwd, t3 - t2);
        bench_samples_add(&reuse, t4 - t3);
        bench_samples_add(&query, t5 - t4);
        bench_samples_add(&subkey, t6 - t5);
        bench_samples_add(&efwd, t7 - t6);
        bench_samples_add(&ebwd, t9 - t8);
        bench_samples_add(&row_read, t10 - t9);
        bench_samples_add(&stream, t11 - t10s);
        bench_samples_add(&row_write, t10w - t10);
        bench_samples_add(&bwd_limit_share, (t10w - t9) / (t9 - t8));
        bench_samples_add(&bwd_limit_cpu_share, (c10w - c9) / (c9 - c8));
        bench_samples_add(&dfwd, t12 - t11);
        bench_samples_add(&dbwd, t14 - t13);
        bench_samples_add(&retrieval, (t1 - t0) - (t4 - t3));
        bench_samples_add(&peer_over_dense, ((t12 - t11) + (t14 - t13)) / ((t1 - t0) + (t3 - t2)));
        bench_samples_add(&efwd_share, (t10 - t9) / (t7 - t6));
        bench_samples_add(&efwd_cpu_share, (c10 - c9) / (c7 - c6));
        bench_samples_add(&ebwd_bytes_share, bwd_bytes_scale * (t10 - t9) / (t9 - t8));
        bench_samples_add(&ebwd_bytes_cpu_share, bwd_bytes_scale * (c10 - c9) / (c9 - c8));
    }

    /* ---- plain sgemm with OpenBLAS's own threads, last: its idle threads spin for a while
     * after each call and would steal a core from whatever ran next ---- */
    bench_samples query_blas = { 0 }, subkey_whole = { 0 };
    float *blas_out = bench_alloc((size_t)BT * HK * sizeof(float));
    openblas_set_num_threads(opt.threads);
    for (int r = -1; r < opt.reps; r++) {
        double t0 = bench_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, BT, HK, D, 1.0f, inp, D,
                    params.query_weight, D, 0.0f, blas_out, HK);
        if (r >= 0)
            bench_samples_add(&query_blas, bench_now() - t0);
    }
    free(blas_out);
    /* The sub-key products as one sgemm per head and half over every token: the shape BLAS
     * likes best. */
    sj.block = BT;
    for (int r = -1; r < opt.reps; r++) {
        double t0 = bench_now();
        subkey_block(&sj, 0, 0);
        if (r >= 0)
            bench_samples_add(&subkey_whole, bench_now() - t0);
    }
    openblas_set_num_threads(1);

    /* ---- report ---- */
    double h = cfg.heads, k = cfg.topk, dk = cfg.d_key;
    double ma_query = h * D * dk, ma_subkeys = h * n * dk, ma_experts = 2.0 * h * k * D;
    double add_candidates = h * k * k;
    double peer_fwd_flops = 2.0 * (ma_query + ma_subkeys + ma_experts) + add_candidates;
    /* The backward never repeats the sub-key scoring: it runs the query projection twice (input
     * and weight gradients), the expert rows twice (dot and input gradient, then the sparse
     * u and v gradients), and the chosen scores back to the query and the sub-keys. */
    double peer_bwd_flops = 2.0 * (2.0 * ma_query + 2.0 * ma_experts + 2.0 * h * k * dk);
    double dense_fwd_flops = 2.0 * 2.0 * D * F;
    double dense_bwd_flops = 2.0 * dense_fwd_flops;
    double f_med = bench_samples_median(&fwd), b_med = bench_samples_median(&bwd);
    double df = bench_samples_median(&dfwd), db = bench_samples_median(&dbwd);
    double gb = 1e-9, mib = 1.0 / (1024.0 * 1024.0);

    printf("PEER layer forward + backward\n");
    print_samples("forward", &fwd, 1e3, "ms");
    print_samples("backward", &bwd, 1e3, "ms");
    printf("  %-44s %10.0f tokens/s\n", "forward + backward", BT / (f_med + b_med));
    printf("  %-44s %10.2f M fwd, %.2f M bwd\n", "flops per token (2 per multiply-add)",
           peer_fwd_flops * 1e-6, peer_bwd_flops * 1e-6);
    printf("  %-44s %10.1f fwd, %.1f bwd, %.1f both\n", "GFLOP/s",
           gflops(peer_fwd_flops, BT, f_med), gflops(peer_bwd_flops, BT, b_med),
           gflops(peer_fwd_flops + peer_bwd_flops, BT, f_med + b_med));
    printf("  %-44s %10d of %d slots\n", "distinct experts touched per batch", touched_rows,
           BT * per_token);
    peer_memory estimate;
    peer_layer_memory_estimate(&cfg, BT, &estimate);
    printf("  %-44s %10.0f MiB (process before the layer %.0f MiB)\n",
           "peak RSS with gradients and activations", rss_peer, rss_start);
    printf("  %-44s %10.0f MiB (params %.0f, grads %.0f, activations %.0f; optimiser %.0f not "
           "allocated here)\n\n",
           "engine estimate without optimiser",
           (estimate.params + estimate.grads + estimate.activations) * mib, estimate.params * mib,
           estimate.grads * mib, estimate.activations * mib, estimate.optimizer * mib);

    printf("dense FFN, hidden %d, same tokens\n", F);
    print_samples("forward", &dfwd, 1e3, "ms");
    print_samples("backward", &dbwd, 1e3, "ms");
    printf("  %-44s %10.0f tokens/s\n", "forward + backward", BT / (df + db));
    printf("  %-44s %10.2f M fwd, %.2f M bwd\n", "flops per token (2 per multiply-add)",
           dense_fwd_flops * 1e-6, dense_bwd_flops * 1e-6);
    printf("  %-44s %10.1f fwd, %.1f bwd, %.1f both\n", "GFLOP/s", gflops(dense_fwd_flops, BT, df),
           gflops(dense_bwd_flops, BT, db),
           gflops(dense_fwd_flops + dense_bwd_flops, BT, df + db));
    print_ratio("PEER tokens/s over dense tokens/s", &peer_over_dense, 1.0, "");
    printf("\n");

    double q_med = bench_samples_median(&query);
    printf("query projection (BT, D) · (HK, D)ᵀ = %d × %d × %d\n", BT, HK, D);
    print_samples("linear_forward (pool, 128-token blocks)", &query, 1e3, "ms");
    print_samples("cblas_sgemm, OpenBLAS threads", &query_blas, 1e3, "ms");
    printf("  %-44s %10.1f vs %.1f GFLOP/s (%.0f%%)\n\n", "GFLOP/s",
           gflops(2.0 * ma_query, BT, q_med),
           gflops(2.0 * ma_query, BT, bench_samples_median(&query_blas)),
           100.0 * bench_samples_median(&query_blas) / q_med);

    double ret_med = bench_samples_median(&retrieval);
    printf("retrieval: sub-key scores %d × (%d × %d × %d), two top-k of %d, %d candidates, "
           "per head\n", 2 * cfg.heads, BT, n, cfg.d_key / 2, n, cfg.topk * cfg.topk);
    print_samples("forward REUSE", &reuse, 1e3, "ms");
    print_samples("retrieval = RETRIEVE - REUSE, per round", &retrieval, 1e3, "ms");
    print_samples("sub-key sgemm alone, engine blocks, pool", &subkey, 1e3, "ms");
    print_samples("sub-key sgemm alone, whole batch, OpenBLAS", &subkey_whole, 1e3, "ms");
    printf("  %-44s %10.1f GFLOP/s over the sub-key multiply-adds\n", "retrieval",
           gflops(2.0 * ma_subkeys, BT, ret_med));
    printf("  %-44s %10.1f GFLOP/s\n", "sgemm alone, engine blocks",
           gflops(2.0 * ma_subkeys, BT, bench_samples_median(&subkey)));
    printf("  %-44s %10.1f GFLOP/s\n\n", "sgemm alone, whole batch",
           gflops(2.0 * ma_subkeys, BT, bench_samples_median(&subkey_whole)));

    double e_f = bench_samples_median(&efwd), e_b = bench_samples_median(&ebwd);
    double rr = bench_samples_median(&row_read);
    printf("experts: %d rows of u and %d of v per token, %.0f KiB per token, %.2f GB per batch\n",
           per_token, per_token, 2.0 * per_token * D * sizeof(float) / 1024.0, row_bytes * gb);
    for (int l = 0; l < N_STEPS; l++) {
        for (int i = 0; i < N_DISTANCES; i++) {
            char label[64];
            snprintf(label, sizeof label, "row read, %s prefetched %d ahead",
                     line_steps[l] == 16 ? "every line" : "every 2nd line", distances[i]);
            printf("  %-44s %10.3f ms (best of 3)\n", label, 1e3 * distance_time[l][i]);
        }
    }
    print_samples("row read (the rounds use the fastest)", &row_read, 1e3, "ms");
    printf("  %-44s %10.2f GB/s\n", "row-read limit", row_bytes / rr * gb);
    printf("  %-44s %10.2f GB/s\n", "sequential read of both tables",
           2.0 * cfg.n_experts * D * sizeof(float) / bench_samples_median(&stream) * gb);
    print_samples("expert forward (peer_layer_experts_forward)", &efwd, 1e3, "ms");
    print_samples("expert backward (peer_layer_experts_backward)", &ebwd, 1e3, "ms");
    printf("  %-44s %10.2f GB/s\n", "expert forward, table rows", row_bytes / e_f * gb);
    print_ratio("  of the row-read limit, per round", &efwd_share, 100.0, "%");
    print_ratio("  the same in CPU time, per round", &efwd_cpu_share, 100.0, "%");
    printf("  %-44s %10.2f GB/s\n", "expert backward, rows read + gradient rows",
           (row_bytes + write_bytes) / e_b * gb);
    printf("  %-44s %10.2f GB\n", "  gradient rows written", write_bytes * gb);
    print_ratio("  of the row-read limit, per round", &ebwd_bytes_share, 100.0, "%");
    print_ratio("  the same in CPU time, per round", &ebwd_bytes_cpu_share, 100.0, "%");
    print_samples("gradient rows written once, alone", &row_write, 1e3, "ms");
    print_ratio("  of row read + rows written, per round", &bwd_limit_share, 100.0, "%");
    print_ratio("  the same in CPU time, per round", &bwd_limit_cpu_share, 100.0, "%");
    printf("\nforward breakdown (ms): query %.1f, retrieval %.1f, experts %.1f, rest %.1f, "
           "total %.1f\n",
           1e3 * q_med, 1e3 * ret_med, 1e3 * e_f, 1e3 * (f_med - q_med - ret_med - e_f),
           1e3 * f_med);
    printf("backward breakdown (ms): experts and sparse gradient %.1f, rest %.1f, total %.1f\n",
           1e3 * e_b, 1e3 * (b_med - e_b), 1e3 * b_med);

    free(sj.scratch);
    dense_ffn_acts_free(&dense_acts);
    free(dense_grad_arena);
    free(dense_arena);
    free(dout);
    free(dinp);
    free(out);
    free(inp);
    peer_layer_acts_free(&acts);
    peer_sparse_grad_free(&sparse);
    free(grad_arena);
    free(arena);
    thread_pool_free(pool);
    return 0;
}
