/* Product-key retrieval against brute force over all N keys.
 *
 * Product keys: peer_layer_forward at a tiny d_model with query_norm none, so the query and the
 * experts cost almost nothing and the forward is retrieval (sub-key scores, two top-k over n,
 * the k² candidates, the final top-k) plus a thin rest. The same forward with
 * PEER_SELECT_REUSE skips the sub-key scoring and both top-k, so the difference of the two
 * isolates retrieval.
 *
 * Brute force: each key group's full key matrix K (N, dk), row a·n + b = [c_a; c'_b], built once
 * outside the timing; then per head, scores = Q · Kᵀ with cblas_sgemm over chunks of keys and a
 * top-k over all N. It is handed the forward's normalised queries, so it pays for nothing but
 * scoring and selection, and its choices are checked against the forward's. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-common.h"
#include "peer-layer.h"
#include "thread-pool.h"

typedef struct {
    bench_int_list sides;
    int tokens;
    int brute_tokens;
    int reps;
    int brute_min_ms;
    int threads;
    int d_model;
    int heads;
    int topk;
    int d_key;
    int chunk;
    bool shared_keys;
} retrieval_options;

/* The k best of a stream, best first; a later equal value loses the tie, as in the engine. */
static void topk_insert(float *val, int32_t *idx, int *count, int k, float v, int32_t i)
{
    if (*count == k) {
        if (!(v > val[k - 1]))
            return;
        (*count)--;
    }
    int p = *count;
    while (p > 0 && val[p - 1] < v) {
        val[p] = val[p - 1];
        idx[p] = idx[p - 1];
        p--;
    }
    val[p] = v;
    idx[p] = i;
    (*count)++;
}

typedef struct {
    const float *keys; /* (G, 2, n, half) */
    float *full;       /* (N, dk) */
    int group, n, half;
} materialise_job;

static void materialise_rows(void *data, int task, int thread)
{
    const materialise_job *job = data;
    int n = job->n, half = job->half, dk = 2 * half;
    const float *c1 = job->keys + ((size_t)job->group * 2 + 0) * n * half + (size_t)task * half;
    const float *c2_all = job->keys + ((size_t)job->group * 2 + 1) * n * half;
    for (int b = 0; b < n; b++) {
        float *row = job->full + ((size_t)task * n + b) * dk;
        memcpy(row, c1, (size_t)half * sizeof(float));
        memcpy(row + half, c2_all + (size_t)b * half, (size_t)half * sizeof(float));
    }
}

typedef struct {
    const float *query;  /* (B, HK) rows of the head's queries, row stride HK */
    int HK;
    const float *full;   /* (N, dk) */
    int N, dk, k, B, chunk;
    float *scores;       /* (threads, B, chunk) */
    float *chunk_val;    /* (chunks, B, k) */
    int32_t *chunk_idx;  /* (chunks, B, k) */
    int *chunk_count;    /* (chunks, B) */
    double sgemm_seconds[THREAD_POOL_MAX_THREADS];
    double select_seconds[THREAD_POOL_MAX_THREADS];
} brute_job;

static void brute_chunk(void *data, int task, int thread)
{
    brute_job *job = data;
    int c0 = task * job->chunk;
    int cols = job->N - c0 < job->chunk ? job->N - c0 : job->chunk;
    float *scores = job->scores + (size_t)thread * job->B * job->chunk;
    double t0 = bench_now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, job->B, cols, job->dk, 1.0f, job->query,
                job->HK, job->full + (size_t)c0 * job->dk, job->dk, 0.0f, scores, cols);
    double t1 = bench_now();
    for (int t = 0; t < job->B; t++) {
        size_t at = (size_t)task * job->B + t;
        float *val = job->chunk_val + at * job->k;
        int32_t *idx = job->chunk_idx + at * job->k;
        int count = 0;
        const float *row = scores + (size_t)t * cols;
        for (int c = 0; c < cols; c++)
            topk_insert(val, idx, &count, job->k, row[c], c0 + c);
        job->chunk_count[at] = count;
    }
    job->sgemm_seconds[thread] += t1 - t0;
    job->select_seconds[thread] += bench_now() - t1;
}

/* Scores every key for B tokens of one head and keeps the top k: out_idx (B, k), best first. */
static void brute_force_head(brute_job *job, thread_pool *pool, int32_t *out_idx)
{
    int chunks = (job->N + job->chunk - 1) / job->chunk;
    thread_pool_run(pool, chunks, brute_chunk, job);
    for (int t = 0; t < job->B; t++) {
        float val[1024];
        int32_t *idx = out_idx + (size_t)t * job->k;
        int count = 0;
        for (int c = 0; c < chunks; c++) {
            size_t at = (size_t)c * job->B + t;
            for (int s = 0; s < job->chunk_count[at]; s++)
                topk_insert(val, idx, &count, job->k, job->chunk_val[at * job->k + s],
                            job->chunk_idx[at * job->k + s]);
        }
    }
}

static int compare_int32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static bool same_set(const int32_t *a, const int32_t *b, int k)
{
    int32_t sa[1024], sb[1024];
    memcpy(sa, a, (size_t)k * sizeof(int32_t));
    memcpy(sb, b, (size_t)k * sizeof(int32_t));
    qsort(sa, (size_t)k, sizeof(int32_t), compare_int32);
    qsort(sb, (size_t)k, sizeof(int32_t), compare_int32);
    return memcmp(sa, sb, (size_t)k * sizeof(int32_t)) == 0;
}

typedef struct {
    int side;
    double pk_forward;  /* seconds per token */
    double pk_reuse;    /* seconds per token */
    double pk_spread;
    double brute;       /* seconds per token */
    double brute_spread;
    double ratio;           /* median over rounds of brute / forward, per token */
    double ratio_min;
    double ratio_retrieval; /* median over rounds of brute / (forward - reuse) */
    double sgemm_share;     /* of the brute-force thread time */
    int agree, compared;
} retrieval_result;

static void run_side(const retrieval_options *opt, int side, thread_pool *pool,
                     retrieval_result *res)
{
    peer_layer_config cfg = {
        .d_model = opt->d_model, .n_experts = side * side, .heads = opt->heads,
        .topk = opt->topk, .d_key = opt->d_key, .shared_keys = opt->shared_keys,
        .query_norm = PEER_NORM_NONE, .activation = PEER_ACTIVATION_GELU,
    };
    peer_error err;
    if (!peer_layer_config_validate(&cfg, &err)) {
        fprintf(stderr, "bench-retrieval: %s\n", err.message);
        exit(1);
    }
    int N = cfg.n_experts, HK = cfg.heads * cfg.d_key, BT = opt->tokens;
    int B = opt->brute_tokens < BT ? opt->brute_tokens : BT;

    float *arena = bench_alloc(peer_layer_params_count(&cfg) * sizeof(float));
    peer_layer_params params;
    peer_layer_params_point(&params, &cfg, arena);
    peer_rng rng;
    peer_rng_seed(&rng, 1234 + (uint64_t)side);
    peer_layer_params_init(&params, &cfg, &rng);
    /* A non-zero bias, so queries are not centred on the origin. */
    peer_rng_fill_normal(&rng, params.query_bias, (size_t)HK, 0.1f);

    peer_layer_acts acts;
    if (!peer_layer_acts_init(&acts, &cfg, BT, &err)) {
        fprintf(stderr, "bench-retrieval: %s\n", err.message);
        exit(1);
    }
    float *inp = bench_alloc((size_t)BT * cfg.d_model * sizeof(float));
    float *out = bench_alloc((size_t)BT * cfg.d_model * sizeof(float));
    peer_rng_fill_normal(&rng, inp, (size_t)BT * cfg.d_model, 1.0f);

    peer_layer_forward(out, &acts, inp, &params, &cfg, BT, PEER_MODE_EVAL, PEER_SELECT_RETRIEVE,
                       pool);

    /* Brute force runs on the first B tokens of the same batch, one head at a time so only one
     * group's (N, dk) key matrix is resident. */
    int threads = thread_pool_get_threads(pool);
    float *full = bench_alloc((size_t)N * cfg.d_key * sizeof(float));
    brute_job job = { .HK = HK, .full = full, .N = N, .dk = cfg.d_key, .k = cfg.topk, .B = B,
                      .chunk = opt->chunk < N ? opt->chunk : N };
    int chunks = (N + job.chunk - 1) / job.chunk;
    job.scores = bench_alloc((size_t)threads * B * job.chunk * sizeof(float));
    job.chunk_val = bench_alloc((size_t)chunks * B * cfg.topk * sizeof(float));
    job.chunk_idx = bench_alloc((size_t)chunks * B * cfg.topk * sizeof(int32_t));
    job.chunk_count = bench_alloc((size_t)chunks * B * sizeof(int));
    int32_t *chosen = bench_alloc((size_t)B * cfg.topk * sizeof(int32_t));

    /* Every round times both sides, so a burst of load from elsewhere on a shared machine lands
     * in one round's ratio instead of favouring one side; the medians are over rounds. */
    bench_samples fwd = { 0 }, reuse = { 0 }, brute = { 0 }, ratio = { 0 }, ratio_retrieval = { 0 };
    double sgemm_time = 0.0, select_time = 0.0;
    int built_group = -1;
    res->agree = res->compared = 0;
    for (int r = 0; r < opt->reps; r++) {
        double t0 = bench_now();
        peer_layer_forward(out, &acts, inp, &params, &cfg, BT, PEER_MODE_EVAL,
                           PEER_SELECT_RETRIEVE, pool);
        double t1 = bench_now();
        peer_layer_forward(out, &acts, inp, &params, &cfg, BT, PEER_MODE_EVAL, PEER_SELECT_REUSE,
                           pool);
        double t2 = bench_now();
        bench_samples_add(&fwd, t1 - t0);
        bench_samples_add(&reuse, t2 - t1);

        double brute_round = 0.0;
        for (int j = 0; j < cfg.heads; j++) {
            int group = cfg.shared_keys ? 0 : j;
            if (group != built_group) {
                materialise_job mj = { .keys = params.keys, .full = full, .group = group,
                                       .n = side, .half = cfg.d_key / 2 };
                thread_pool_run(pool, side, materialise_rows, &mj);
                built_group = group;
            }
            job.query = acts.query_normed + (size_t)j * cfg.d_key;
            memset(job.sgemm_seconds, 0, sizeof job.sgemm_seconds);
            memset(job.select_seconds, 0, sizeof job.select_seconds);
            /* A small N finishes a head in a millisecond: repeat it for a measurable time. */
            int runs = 0;
            double spent = 0.0;
            do {
                double h0 = bench_now();
                brute_force_head(&job, pool, chosen);
                spent += bench_now() - h0;
                runs++;
            } while (spent < 1e-3 * opt->brute_min_ms && runs < 1000);
            brute_round += spent / runs;
            for (int t = 0; t < threads; t++) {
                sgemm_time += job.sgemm_seconds[t];
                select_time += job.select_seconds[t];
            }
            if (r == 0) {
                for (int t = 0; t < B; t++) {
                    const int32_t *pk = acts.expert + ((size_t)t * cfg.heads + j) * cfg.topk;
                    res->agree += same_set(pk, chosen + (size_t)t * cfg.topk, cfg.topk);
                    res->compared++;
                }
            }
        }
        bench_samples_add(&brute, brute_round);
        bench_samples_add(&ratio, (brute_round / B) / ((t1 - t0) / BT));
        bench_samples_add(&ratio_retrieval, (brute_round / B) / ((t1 - t0 - (t2 - t1)) / BT));
    }
    res->side = side;
    res->pk_forward = bench_samples_median(&fwd) / BT;
    res->pk_reuse = bench_samples_median(&reuse) / BT;
    res->pk_spread = bench_samples_spread(&fwd);
    res->brute = bench_samples_median(&brute) / B;
    res->brute_spread = bench_samples_spread(&brute);
    res->ratio = bench_samples_median(&ratio);
    res->ratio_min = bench_samples_min(&ratio);
    res->ratio_retrieval = bench_samples_median(&ratio_retrieval);
    res->sgemm_share = sgemm_time / (sgemm_time + select_time);

    free(chosen);
    free(job.chunk_count);
    free(job.chunk_idx);
    free(job.chunk_val);
    free(job.scores);
    free(full);
    free(out);
    free(inp);
    peer_layer_acts_free(&acts);
    free(arena);
}

int main(int argc, char **argv)
{
    retrieval_options opt = {
        .sides = { .count = 4, .value = { 128, 256, 512, 1024 } },
        .tokens = 4096, .brute_tokens = 32, .reps = 5, .brute_min_ms = 50, .threads = 2,
        .d_model = 8, .heads = 8, .topk = 16, .d_key = 128, .chunk = 16384,
    };
    const bench_option options[] = {
        { "sides", BENCH_OPTION_LIST, &opt.sides, "sub-keys per side n; N = n²" },
        { "tokens", BENCH_OPTION_INT, &opt.tokens, "tokens per product-key forward" },
        { "brute-tokens", BENCH_OPTION_INT, &opt.brute_tokens, "tokens scored by brute force" },
        { "reps", BENCH_OPTION_INT, &opt.reps, "timed rounds, each timing both sides" },
        { "brute-min-ms", BENCH_OPTION_INT, &opt.brute_min_ms,
          "brute force repeats each head in a round for at least this long" },
        { "threads", BENCH_OPTION_INT, &opt.threads, "worker threads" },
        { "d-model", BENCH_OPTION_INT, &opt.d_model, "D, kept tiny so experts cost nothing" },
        { "heads", BENCH_OPTION_INT, &opt.heads, "h" },
        { "topk", BENCH_OPTION_INT, &opt.topk, "k experts per head" },
        { "d-key", BENCH_OPTION_INT, &opt.d_key, "dk" },
        { "chunk", BENCH_OPTION_INT, &opt.chunk, "keys per brute-force sgemm" },
        { "shared-keys", BENCH_OPTION_FLAG, &opt.shared_keys, "one key group for all heads" },
    };
    if (!bench_parse_options(argc, argv, options, sizeof options / sizeof options[0],
                             "Per-token retrieval time, product keys against brute force."))
        return 2;
    if (opt.reps > BENCH_MAX_SAMPLES || opt.topk > 1024) {
        fprintf(stderr, "bench-retrieval: at most %d reps and topk <= 1024\n", BENCH_MAX_SAMPLES);
        return 2;
    }

    peer_error err;
    thread_pool *pool = thread_pool_new(opt.threads, &err);
    if (!pool) {
        fprintf(stderr, "bench-retrieval: %s\n", err.message);
        return 1;
    }
    printf("%s, kernels for %s\n", openblas_get_config(), openblas_get_corename());
    printf("retrieval: h = %d, k = %d, dk = %d, %s keys, D = %d, query_norm none, %d threads\n",
           opt.heads, opt.topk, opt.d_key, opt.shared_keys ? "shared" : "per-head", opt.d_model,
           opt.threads);
    printf("product keys: forward of %d tokens; brute force: %d tokens, each head for >= %d ms; "
           "median of %d rounds\n\n",
           opt.tokens, opt.brute_tokens, opt.brute_min_ms, opt.reps);
    printf("| N | product-key forward µs/token | retrieval only µs/token | brute force µs/token "
           "| brute / forward | brute / retrieval only | sgemm share of brute | same top-k |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < opt.sides.count; i++) {
        retrieval_result res;
        run_side(&opt, opt.sides.value[i], pool, &res);
        printf("| %d² = %d | %.1f (±%.0f%%) | %.1f | %.0f (±%.0f%%) | %.0f× (min %.0f×) | %.0f× "
               "| %.0f%% | %d/%d |\n",
               res.side, res.side * res.side, 1e6 * res.pk_forward, 50.0 * res.pk_spread,
               1e6 * (res.pk_forward - res.pk_reuse), 1e6 * res.brute, 50.0 * res.brute_spread,
               res.ratio, res.ratio_min, res.ratio_retrieval, 100.0 * res.sgemm_share, res.agree,
               res.compared);
        fflush(stdout);
    }
    printf("\npeak RSS %.0f MiB\n", bench_peak_rss_mib());
    thread_pool_free(pool);
    return 0;
}
