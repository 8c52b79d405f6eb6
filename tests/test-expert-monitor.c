/* The live expert statistics of a training run: metric grids against their sums written out; the
 * decayed window against a brute-force decayed sum over every step (across several rescales of
 * its lazy weight); the usage history bounded in memory with series that add up to the total
 * counts, coarsening and regridding included; and the monitor over a real model: its since-start
 * window equals a plain recount, its validation window equals trainer_evaluate's usage, and a
 * grid that grows keeps each expert at its (a, b). */
#include <math.h>
#include <string.h>

#include "expert-monitor.h"
#include "test-util.h"
#include "trainer.h"

/* ---- random choices -------------------------------------------------------------------------- */

typedef struct {
    int BT, heads, topk;
    int32_t *expert; /* (BT, h, k) */
    float *gate;
    float *preact;
} choices;

/* Distinct experts per head and token, as retrieval gives; softmax-like positive gates. */
static void choices_random(choices *c, peer_rng *rng, int BT, int heads, int topk, int n_experts)
{
    c->BT = BT;
    c->heads = heads;
    c->topk = topk;
    size_t slots = (size_t)BT * heads * topk;
    c->expert = g_new(int32_t, slots);
    c->gate = g_new(float, slots);
    c->preact = g_new(float, slots);
    for (size_t base = 0; base < slots; base += topk) {
        float sum = 0.0f;
        for (int s = 0; s < topk; s++) {
            int32_t e;
            bool repeated;
            /* A skewed choice: low ids far more often, so some experts stay unused. */
            do {
                double u = peer_rng_uniform(rng);
                e = (int32_t)(u * u * n_experts);
                repeated = false;
                for (int r = 0; r < s; r++)
                    repeated |= c->expert[base + r] == e;
            } while (repeated);
            c->expert[base + s] = e;
            c->gate[base + s] = 0.05f + (float)peer_rng_uniform(rng);
            sum += c->gate[base + s];
            c->preact[base + s] = (float)(2.0 * peer_rng_uniform(rng) - 1.0);
        }
        for (int s = 0; s < topk; s++)
            c->gate[base + s] /= sum;
    }
}

static void choices_free(choices *c)
{
    g_free(c->expert);
    g_free(c->gate);
    g_free(c->preact);
}

/* ---- metric grids ---------------------------------------------------------------------------- */

static void test_metric_grid(void)
{
    const int N = 25, H = 3, K = 2;
    expert_stats stats;
    peer_error err;
    g_assert_true(expert_stats_init(&stats, N, H, &err));
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED);
    choices c;
    choices_random(&c, &rng, 40, H, K, N);
    expert_stats_accumulate(&stats, c.expert, c.gate, c.preact, c.BT, K, PEER_ACTIVATION_GELU);

    float *grid = g_new(float, N);
    for (int head = -1; head < H; head++) {
        double count[25] = { 0 }, mass[25] = { 0 }, act[25] = { 0 };
        for (int t = 0; t < c.BT; t++)
            for (int j = 0; j < H; j++)
                for (int s = 0; s < K; s++) {
                    if (head >= 0 && j != head)
                        continue;
                    size_t slot = ((size_t)t * H + j) * K + s;
                    int e = c.expert[slot];
                    count[e] += 1.0;
                    mass[e] += c.gate[slot];
                    act[e] += test_activation(PEER_ACTIVATION_GELU, c.preact[slot]);
                }
        expert_stats_metric(&stats, EXPERT_METRIC_COUNT, head, grid);
        for (int e = 0; e < N; e++)
            test_assert_close(grid[e], count[e], 0.0, 0.0, "count of %d, head %d", e, head);
        expert_stats_metric(&stats, EXPERT_METRIC_GATE_MASS, head, grid);
        for (int e = 0; e < N; e++)
            test_assert_close(grid[e], mass[e], 1e-6, 1e-6, "gate mass of %d, head %d", e, head);
        expert_stats_metric(&stats, EXPERT_METRIC_MEAN_ACTIVATION, head, grid);
        for (int e = 0; e < N; e++) {
            if (count[e] == 0.0)
                g_assert_true(isnan(grid[e]));
            else
                test_assert_close(grid[e], act[e] / count[e], 1e-6, 1e-5,
                                  "mean activation of %d, head %d", e, head);
        }
    }
    g_free(grid);
    choices_free(&c);
    expert_stats_free(&stats);
}

/* ---- the decayed window ---------------------------------------------------------------------- */

/* The decayed sums written out: every step kept, each weighed γ^(newest - step). */
typedef struct {
    int N, H;
    double decay;
    int steps;
    double *count;  /* (steps, H, N) per step */
    double *mass;
    double *act;
    double *tokens; /* (steps) */
} brute_window;

static void brute_add_step(brute_window *b, const choices *c)
{
    size_t cells = (size_t)b->H * b->N;
    b->steps++;
    b->count = g_renew(double, b->count, b->steps * cells);
    b->mass = g_renew(double, b->mass, b->steps * cells);
    b->act = g_renew(double, b->act, b->steps * cells);
    b->tokens = g_renew(double, b->tokens, b->steps);
    double *count = b->count + (b->steps - 1) * cells;
    double *mass = b->mass + (b->steps - 1) * cells;
    double *act = b->act + (b->steps - 1) * cells;
    memset(count, 0, cells * sizeof *count);
    memset(mass, 0, cells * sizeof *mass);
    memset(act, 0, cells * sizeof *act);
    for (int t = 0; t < c->BT; t++)
        for (int j = 0; j < c->heads; j++)
            for (int s = 0; s < c->topk; s++) {
                size_t slot = ((size_t)t * c->heads + j) * c->topk + s;
                size_t cell = (size_t)j * b->N + c->expert[slot];
                count[cell] += 1.0;
                mass[cell] += c->gate[slot];
                act[cell] += test_activation(PEER_ACTIVATION_GELU, c->preact[slot]);
            }
    b->tokens[b->steps - 1] = c->BT;
}

/* The decayed count, gate mass and activation of expert e over heads [j0, j1). */
static void brute_sums(const brute_window *b, int e, int head, double *count, double *mass,
                       double *act)
{
    int j0 = head < 0 ? 0 : head, j1 = head < 0 ? b->H : head + 1;
    *count = *mass = *act = 0.0;
    for (int s = 0; s < b->steps; s++) {
        double w = pow(b->decay, b->steps - 1 - s);
        for (int j = j0; j < j1; j++) {
            size_t cell = (size_t)s * b->H * b->N + (size_t)j * b->N + e;
            *count += w * b->count[cell];
            *mass += w * b->mass[cell];
            *act += w * b->act[cell];
        }
    }
}

static void check_against_brute(const expert_decayed_stats *stats, const brute_window *b)
{
    float *grid = g_new(float, b->N);
    double *count = g_new(double, b->N), *mass = g_new(double, b->N), *act = g_new(double, b->N);
    double tokens = 0.0;
    for (int s = 0; s < b->steps; s++)
        tokens += pow(b->decay, b->steps - 1 - s) * b->tokens[s];
    /* Float sums of a few hundred terms: relative rounding well under 1e-5. */
    test_assert_close(expert_decayed_stats_tokens(stats), tokens, 1e-9, 1e-9, "tokens");
    for (int head = -1; head < b->H; head++) {
        double largest = 0.0;
        for (int e = 0; e < b->N; e++) {
            brute_sums(b, e, head, &count[e], &mass[e], &act[e]);
            largest = fmax(largest, count[e]);
        }
        double atol = 1e-6 * largest;
        expert_decayed_stats_metric(stats, EXPERT_METRIC_COUNT, head, grid);
        for (int e = 0; e < b->N; e++)
            test_assert_close(grid[e], count[e], atol, 1e-5, "decayed count of %d, head %d, step %d",
                              e, head, b->steps);
        expert_decayed_stats_metric(stats, EXPERT_METRIC_GATE_MASS, head, grid);
        for (int e = 0; e < b->N; e++)
            test_assert_close(grid[e], mass[e], atol, 1e-5, "decayed gate mass of %d, step %d", e,
                              b->steps);
        expert_decayed_stats_metric(stats, EXPERT_METRIC_MEAN_ACTIVATION, head, grid);
        for (int e = 0; e < b->N; e++) {
            if (count[e] < EXPERT_DECAYED_USED_COUNT)
                g_assert_true(isnan(grid[e]));
            else
                test_assert_close(grid[e], act[e] / count[e], 1e-5, 1e-4,
                                  "decayed mean activation of %d, step %d", e, b->steps);
        }

        /* Usage and unevenness as PEER.md defines them, over the experts still in use. */
        for (int by_count = 0; by_count < 2; by_count++) {
            double total = 0.0, entropy = 0.0;
            int64_t used = 0;
            for (int e = 0; e < b->N; e++) {
                double z = by_count ? count[e] : mass[e];
                if (count[e] >= EXPERT_DECAYED_USED_COUNT) {
                    total += z;
                    used++;
                }
            }
            for (int e = 0; e < b->N; e++) {
                double z = by_count ? count[e] : mass[e];
                if (count[e] >= EXPERT_DECAYED_USED_COUNT)
                    entropy += z / total * log(z / total);
            }
            expert_usage u;
            expert_decayed_stats_usage(stats, head, by_count, &u);
            g_assert_cmpint(u.dead, ==, b->N - used);
            test_assert_close(u.usage, (double)used / b->N, 1e-12, 0.0, "usage, head %d", head);
            test_assert_close(u.total, total, 1e-6 * total, 1e-5, "total, head %d", head);
            test_assert_close(u.unevenness, log((double)b->N) + entropy, 1e-5, 1e-5,
                              "unevenness, head %d, step %d", head, b->steps);
        }
    }
    g_free(grid);
    g_free(count);
    g_free(mass);
    g_free(act);
}

static void test_decayed_matches_brute_force(void)
{
    const int N = 49, H = 2, K = 3;
    /* A short half-life makes the lazy weight pass 2^64 every ~110 steps: the 400 steps rescale
     * the sums three times, and experts chosen early fall out of use. */
    const double half_life = 1.7;
    expert_decayed_stats stats;
    peer_error err;
    g_assert_true(expert_decayed_stats_init(&stats, N, H, half_life, &err));
    brute_window brute = { .N = N, .H = H, .decay = pow(2.0, -1.0 / half_life) };
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED + 1);
    const int checks[] = { 1, 7, 60, 120, 240, 400 };
    int next_check = 0;
    int rescales = 0;
    for (int step = 1; step <= 400; step++) {
        /* Each stretch of steps chooses from a different part of the grid. */
        choices c;
        int BT = 1 + (int)(peer_rng_uniform(&rng) * 4);
        choices_random(&c, &rng, BT, H, K, N);
        if ((step / 50) % 2)
            for (size_t i = 0; i < (size_t)BT * H * K; i++)
                c.expert[i] = N - 1 - c.expert[i];
        double weight_before = stats.weight;
        expert_decayed_stats_begin_step(&stats);
        rescales += stats.weight < weight_before;
        expert_decayed_stats_accumulate(&stats, c.expert, c.gate, c.preact, c.BT, K,
                                        PEER_ACTIVATION_GELU);
        brute_add_step(&brute, &c);
        choices_free(&c);
        if (step == checks[next_check]) {
            check_against_brute(&stats, &brute);
            next_check++;
        }
    }
    g_assert_cmpint(next_check, ==, G_N_ELEMENTS(checks));
    g_assert_cmpint(rescales, >=, 3);
    /* The early experts really fell out of use: live usage is below the union of all steps. */
    expert_usage u;
    expert_decayed_stats_usage(&stats, -1, true, &u);
    g_assert_cmpfloat(u.usage, <, 1.0);
    g_assert_cmpfloat(u.usage, >, 0.0);

    expert_decayed_stats_reset(&stats);
    expert_decayed_stats_usage(&stats, -1, false, &u);
    g_assert_cmpfloat(u.usage, ==, 0.0);
    g_assert_cmpfloat(u.unevenness, ==, 0.0);
    g_free(brute.count);
    g_free(brute.mass);
    g_free(brute.act);
    g_free(brute.tokens);
    expert_decayed_stats_free(&stats);

    g_assert_false(expert_decayed_stats_init(&stats, N, H, 0.0, &err));
    g_assert_nonnull(strstr(err.message, "half-life"));
}

/* ---- the history ----------------------------------------------------------------------------- */

static void check_history_consistent(const expert_history *h, const uint64_t *expected, int N,
                                     long first, long last)
{
    g_assert_cmpint(h->used, >=, 1);
    g_assert_cmpint(h->used, <=, h->capacity);
    long *starts = g_new(long, h->capacity), *ends = g_new(long, h->capacity);
    uint32_t *count = g_new(uint32_t, h->capacity);
    uint64_t all = 0;
    for (int e = 0; e < N; e++) {
        int n = expert_history_series(h, e, starts, ends, count);
        g_assert_cmpint(n, ==, h->used);
        uint64_t sum = 0;
        for (int i = 0; i < n; i++)
            sum += count[i];
        g_assert_cmpuint(sum, ==, expected[e]);
        all += sum;
    }
    g_assert_cmpuint(all, ==, h->total);
    /* The intervals tile the steps: consecutive, each at most one span long. */
    g_assert_cmpint(starts[0], ==, first);
    g_assert_cmpint(ends[h->used - 1], ==, last + 1);
    for (int i = 0; i < h->used; i++) {
        g_assert_cmpint(ends[i] - starts[i], >=, 1);
        g_assert_cmpint(ends[i] - starts[i], <=, h->span);
        if (i + 1 < h->used) {
            g_assert_cmpint(ends[i], ==, starts[i + 1]);
            g_assert_cmpint(ends[i] - starts[i], ==, h->span);
        }
    }
    g_free(starts);
    g_free(ends);
    g_free(count);
}

static void test_history_bounded(void)
{
    const int N = 36;
    const size_t budget = 10 * N * sizeof(uint16_t);
    expert_history h;
    peer_error err;
    g_assert_true(expert_history_init(&h, N, budget, &err));
    g_assert_cmpint(h.capacity, ==, 10);
    size_t bytes = expert_history_bytes(&h);
    g_assert_cmpuint(bytes, <=, budget);

    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED + 2);
    uint64_t expected[36] = { 0 };
    const long first = 5000; /* a run resumed from a checkpoint */
    int coarsenings = 0;
    long span = h.span;
    for (long step = first; step < first + 1000; step++) {
        int32_t experts[24];
        size_t n = 1 + (size_t)(peer_rng_uniform(&rng) * 24);
        for (size_t s = 0; s < n; s++) {
            experts[s] = (int32_t)(peer_rng_uniform(&rng) * N);
            expected[experts[s]]++;
        }
        /* Two calls for one step (two parts of a batch) land in the same interval. */
        expert_history_add(&h, step, experts, n / 2);
        expert_history_add(&h, step, experts + n / 2, n - n / 2);
        coarsenings += h.span != span;
        span = h.span;
        g_assert_cmpuint(expert_history_bytes(&h), ==, bytes);
        if (step % 97 == 0)
            check_history_consistent(&h, expected, N, first, step);
    }
    check_history_consistent(&h, expected, N, first, first + 999);
    g_assert_false(h.saturated);
    /* 1000 steps in at most 10 intervals: spans of 128 after 7 doublings. */
    g_assert_cmpint(coarsenings, ==, 7);
    g_assert_cmpint(h.span, ==, 128);

    /* A count that would pass 65535 stops there, and says so. */
    expert_history_reset(&h);
    int32_t *same = g_new(int32_t, 70000);
    for (int s = 0; s < 70000; s++)
        same[s] = 3;
    expert_history_add(&h, 1, same, 70000);
    uint32_t count[10];
    g_assert_cmpint(expert_history_series(&h, 3, NULL, NULL, count), ==, 1);
    g_assert_cmpuint(count[0], ==, EXPERT_HISTORY_MAX_COUNT);
    g_assert_true(h.saturated);
    g_free(same);
    expert_history_free(&h);

    /* The default budget holds a 1024² grid in 32 intervals of 2 MiB: 64 MiB. */
    g_assert_cmpint(expert_history_capacity_for(1 << 20, EXPERT_MONITOR_HISTORY_BYTES), ==, 32);
    g_assert_cmpint(expert_history_capacity_for(64, EXPERT_MONITOR_HISTORY_BYTES), ==,
                    EXPERT_HISTORY_MAX_INTERVALS);
}

static void test_history_regrid(void)
{
    const int side = 3, new_side = 5;
    expert_history h;
    peer_error err;
    /* Room for 6 intervals of 9 experts, but only 2 of 25 after growing. */
    size_t budget = 6 * 9 * sizeof(uint16_t);
    g_assert_true(expert_history_init(&h, side * side, budget, &err));
    g_assert_cmpint(h.capacity, ==, 6);
    uint64_t expected[25] = { 0 };
    for (long step = 0; step < 5; step++) {
        int32_t experts[] = { (int32_t)(step % 9), 4, 8 };
        for (int s = 0; s < 3; s++)
            expected[experts[s] / side * new_side + experts[s] % side]++;
        expert_history_add(&h, step, experts, 3);
    }
    g_assert_cmpint(h.used, ==, 5);
    g_assert_false(expert_history_regrid(&h, side, side - 1, budget, &err));
    g_assert_true(expert_history_regrid(&h, side, new_side, budget, &err));
    g_assert_cmpint(h.n_experts, ==, 25);
    g_assert_cmpint(h.capacity, ==, 2);
    g_assert_cmpuint(expert_history_bytes(&h), <=, budget);
    g_assert_cmpint(h.used, <, h.capacity);
    /* Expert (a, b) of the old grid keeps its selections at a·5 + b; the new ones have none. */
    for (long step = 5; step < 9; step++) {
        int32_t experts[] = { 24, 0 };
        expected[24]++;
        expected[0]++;
        expert_history_add(&h, step, experts, 2);
    }
    check_history_consistent(&h, expected, 25, 0, 8);
    expert_history_free(&h);
}

/* ---- the monitor over a real model ----------------------------------------------------------- */

static const char *MODEL_JSON =
    "{\"vocab_size\": 256, \"context\": 32, \"d_model\": 32, \"n_layers\": 2, \"n_heads\": 2, "
    "\"layers\": [{\"ffn\": \"peer\", \"n_experts\": 64, \"heads\": 2, \"topk\": 4, "
    "\"d_key\": 16, \"shared_keys\": false, \"query_norm\": \"batch\", \"activation\": \"gelu\"}, "
    "{\"ffn\": \"pkm\", \"n_memories\": 36, \"heads\": 2, \"topk\": 3, \"d_key\": 8, "
    "\"shared_keys\": false, \"query_norm\": \"layer\"}]}";

static const char *const corpus_words[] = { "the ", "of ", "and ", "to ", "Elinor ", "Marianne ",
                                            "sister, ", "mother. ", "said ", "would " };

static void word_corpus(corpus *c, int seq_len)
{
    test_word_corpus(c, corpus_words, G_N_ELEMENTS(corpus_words), 60000, seq_len);
}

static void test_monitor_on_model(void)
{
    model_config cfg;
    peer_error err;
    if (!model_config_from_json(&cfg, MODEL_JSON, &err))
        g_error("%s", err.message);
    train_settings settings;
    train_settings_default(&settings, &cfg);
    settings.batch_size = 2;
    settings.seq_len = 32;
    settings.steps = 100;
    settings.eval_windows = 6;
    corpus data;
    word_corpus(&data, settings.seq_len);
    trainer tr;
    if (!trainer_init(&tr, &cfg, &settings, &data, &err))
        g_error("%s", err.message);

    expert_monitor monitor;
    g_assert_true(expert_monitor_init(&monitor, &cfg, 5.0, 4096, &err));
    g_assert_true(monitor.layers[0].active && monitor.layers[1].active);
    g_assert_cmpint(monitor.layers[0].side, ==, 8);
    g_assert_cmpint(monitor.layers[1].side, ==, 6);

    /* The recount: plain expert statistics of the same forwards. */
    expert_stats recount[2];
    expert_stats *recount_of[MODEL_MAX_LAYERS] = { &recount[0], &recount[1] };
    g_assert_true(expert_stats_init(&recount[0], 64, 2, &err));
    g_assert_true(expert_stats_init(&recount[1], 36, 2, &err));
    /* Added by three threads, head by head and range by range: the same sums as one. */
    thread_pool *pool = thread_pool_new(3, &err);
    g_assert_nonnull(pool);
    for (int s = 0; s < 12; s++) {
        g_assert_true(trainer_step(&tr, NULL, &err));
        g_assert_true(expert_monitor_add_step(&monitor, tr.model, tr.step, pool, &err));
        peer_model_accumulate_stats(tr.model, recount_of);
    }
    thread_pool_free(pool);
    g_assert_cmpint(monitor.first_step, ==, 1);
    g_assert_cmpint(monitor.last_step, ==, 12);
    for (int l = 0; l < 2; l++) {
        const expert_monitor_layer *layer = &monitor.layers[l];
        size_t cells = (size_t)recount[l].n_experts * 2;
        g_assert_cmpmem(layer->since_start.count, cells * sizeof(uint32_t), recount[l].count,
                        cells * sizeof(uint32_t));
        g_assert_cmpmem(layer->since_start.gate_mass, cells * sizeof(double),
                        recount[l].gate_mass, cells * sizeof(double));
        g_assert_cmpmem(layer->since_start.activation, cells * sizeof(double),
                        recount[l].activation, cells * sizeof(double));

        /* The grid and usage of the since-start window are the recount's. */
        int N = recount[l].n_experts;
        float *count = g_new(float, N), *mass = g_new(float, N), *act = g_new(float, N);
        float *expected = g_new(float, N);
        expert_usage usage[3];
        double tokens;
        g_assert_true(expert_monitor_grid(&monitor, l, EXPERT_WINDOW_SINCE_START, 1, count, mass,
                                          act, usage, &tokens, &err));
        expert_stats_metric(&recount[l], EXPERT_METRIC_GATE_MASS, 1, expected);
        g_assert_cmpmem(mass, N * sizeof(float), expected, N * sizeof(float));
        g_assert_cmpfloat(tokens, ==, 12 * 64);
        for (int j = -1; j < 2; j++) {
            expert_usage u;
            expert_stats_usage(&recount[l], j, false, &u);
            g_assert_cmpmem(&usage[j + 1], sizeof u, &u, sizeof u);
        }

        /* The history: each expert's series sums to its selections over both heads. */
        long starts[64], ends[64];
        uint32_t series[64];
        for (int e = 0; e < N; e++) {
            int n = expert_monitor_history(&monitor, l, e, starts, ends, series);
            g_assert_cmpint(n, >=, 1);
            uint64_t sum = 0;
            for (int i = 0; i < n; i++)
                sum += series[i];
            g_assert_cmpuint(sum, ==, (uint64_t)recount[l].count[e] + recount[l].count[N + e]);
            g_assert_cmpint(starts[0], ==, 1);
            g_assert_cmpint(ends[n - 1], ==, 13);
        }
        g_assert_cmpint(expert_monitor_history(&monitor, l, N, NULL, NULL, NULL), ==, -1);

        /* The live window's grid holds the decayed statistics. */
        g_assert_true(expert_monitor_grid(&monitor, l, EXPERT_WINDOW_LIVE, -1, count, NULL, NULL,
                                          usage, &tokens, &err));
        expert_decayed_stats_metric(&layer->live, EXPERT_METRIC_COUNT, -1, expected);
        g_assert_cmpmem(count, N * sizeof(float), expected, N * sizeof(float));
        g_assert_cmpfloat(tokens, <, 12 * 64);
        g_assert_cmpfloat(tokens, >, 64);
        g_free(count);
        g_free(mass);
        g_free(act);
        g_free(expected);
    }

    /* The validation window: the windows trainer_evaluate reads, with its usage. */
    g_assert_false(expert_monitor_grid(&monitor, 0, EXPERT_WINDOW_VALIDATION, -1, NULL, NULL,
                                       NULL, NULL, NULL, &err));
    g_assert_nonnull(strstr(err.message, "not been measured"));
    g_assert_true(expert_monitor_measure_validation(&monitor, tr.model, &data,
                                                    settings.eval_windows, tr.step, NULL, &err));
    eval_result result;
    g_assert_true(trainer_evaluate(&tr, settings.eval_windows, &result, NULL, &err));
    for (int l = 0; l < 2; l++) {
        expert_usage usage[3];
        double tokens;
        g_assert_true(expert_monitor_grid(&monitor, l, EXPERT_WINDOW_VALIDATION, -1, NULL, NULL,
                                          NULL, usage, &tokens, &err));
        g_assert_cmpint(monitor.layers[l].validation_step, ==, 12);
        g_assert_cmpfloat(tokens, ==, (double)result.tokens);
        g_assert_cmpfloat(usage[0].usage, ==, result.usage[l].usage);
        g_assert_cmpfloat(usage[0].unevenness, ==, result.usage[l].unevenness);
        g_assert_cmpint(usage[0].dead, ==, result.usage[l].dead);
    }
    g_assert_false(expert_monitor_grid(&monitor, 0, EXPERT_WINDOW_LIVE, 2, NULL, NULL, NULL,
                                       NULL, NULL, &err));
    g_assert_nonnull(strstr(err.message, "head 2"));

    /* The first layer's grid grows from 8² to 12² experts: a model with the larger config. */
    model_config grown_cfg = cfg;
    grown_cfg.layers[0].peer.n_experts = 144;
    peer_model *grown = peer_model_new(&grown_cfg, 2, 32, TEST_SEED, &err);
    g_assert_nonnull(grown);
    uint8_t tokens_in[64], targets[64];
    corpus_train_batch(&data, &tr.data_rng, 2, 32, tokens_in, targets);
    peer_model_forward(grown, tokens_in, targets, 2, 32, PEER_MODE_TRAIN, NULL);
    expert_stats fresh;
    expert_stats *fresh_of[MODEL_MAX_LAYERS] = { &fresh, NULL };
    g_assert_true(expert_stats_init(&fresh, 144, 2, &err));
    peer_model_accumulate_stats(grown, fresh_of);
    g_assert_true(expert_monitor_add_step(&monitor, grown, 13, NULL, &err));
    const expert_monitor_layer *layer = &monitor.layers[0];
    g_assert_cmpint(layer->side, ==, 12);
    g_assert_cmpint(layer->validation_step, ==, -1);
    for (int j = 0; j < 2; j++)
        for (int a = 0; a < 12; a++)
            for (int b = 0; b < 12; b++) {
                uint32_t before = a < 8 && b < 8 ? recount[0].count[j * 64 + a * 8 + b] : 0;
                size_t cell = (size_t)j * 144 + a * 12 + b;
                g_assert_cmpuint(layer->since_start.count[cell], ==, before + fresh.count[cell]);
            }
    for (int a = 0; a < 12; a++)
        for (int b = 0; b < 12; b++) {
            uint32_t before = a < 8 && b < 8 ? recount[0].count[a * 8 + b] +
                                                   recount[0].count[64 + a * 8 + b]
                                             : 0;
            uint32_t series[64];
            int n = expert_monitor_history(&monitor, 0, a * 12 + b, NULL, NULL, series);
            uint64_t sum = 0;
            for (int i = 0; i < n; i++)
                sum += series[i];
            g_assert_cmpuint(sum, ==, before + fresh.count[a * 12 + b] + fresh.count[144 + a * 12 + b]);
        }

    expert_stats_free(&fresh);
    peer_model_free(grown);
    expert_stats_free(&recount[0]);
    expert_stats_free(&recount[1]);
    expert_monitor_free(&monitor);
    trainer_free(&tr);
    corpus_free(&data);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/expert-monitor/metric-grid", test_metric_grid);
    g_test_add_func("/expert-monitor/decayed-matches-brute-force",
                    test_decayed_matches_brute_force);
    g_test_add_func("/expert-monitor/history-bounded", test_history_bounded);
    g_test_add_func("/expert-monitor/history-regrid", test_history_regrid);
    g_test_add_func("/expert-monitor/on-model", test_monitor_on_model);
    return g_test_run();
}
