/* Expert usage and unevenness (PEER.md's metrics) on cases worked out by hand, and the statistics
 * accumulated from real forwards against a naive recount. */
#include <math.h>
#include <string.h>

#include "expert-stats.h"
#include "test-util.h"

static void check_usage(const expert_usage *u, double usage, double unevenness, int64_t dead,
                        double total, const char *what)
{
    test_assert_close(u->usage, usage, 1e-12, 0.0, "%s usage", what);
    /* The gates are floats, so z carries their rounding, ~1e-7 relative. */
    test_assert_close(u->unevenness, unevenness, 1e-6, 0.0, "%s unevenness", what);
    g_assert_cmpint(u->dead, ==, dead);
    test_assert_close(u->total, total, 1e-6, 0.0, "%s total", what);
}

/* Σ z log z of z' normalised, written out so each hand case reads like its formula. */
static double plogp(double mass, double total)
{
    double z = mass / total;
    return z * log(z);
}

static void test_uniform(void)
{
    expert_stats stats;
    peer_error err;
    g_assert_true(expert_stats_init(&stats, 4, 1, &err));
    /* Two tokens, k = 2, half the gate on each: every expert receives exactly 0.5. */
    const int32_t expert[] = { 0, 1, 2, 3 };
    const float gate[] = { 0.5f, 0.5f, 0.5f, 0.5f };
    const float preact[] = { 1.0f, -0.5f, 2.0f, 0.25f };
    expert_stats_accumulate(&stats, expert, gate, preact, 2, 2, PEER_ACTIVATION_GELU);
    g_assert_cmpuint(stats.tokens, ==, 2);
    expert_usage u;
    expert_stats_usage(&stats, 0, false, &u);
    check_usage(&u, 1.0, 0.0, 0, 2.0, "uniform, head 0");
    expert_stats_usage(&stats, -1, false, &u);
    check_usage(&u, 1.0, 0.0, 0, 2.0, "uniform, all heads");
    expert_stats_usage(&stats, 0, true, &u);
    check_usage(&u, 1.0, 0.0, 0, 4.0, "uniform, by count");
    for (int i = 0; i < 4; i++) {
        g_assert_cmpuint(stats.count[i], ==, 1);
        test_assert_close(stats.gate_mass[i], 0.5, 0.0, 0.0, "gate mass of %d", i);
        test_assert_close(stats.activation[i], test_activation(PEER_ACTIVATION_GELU, preact[i]),
                          1e-6, 1e-6, "activation sum of %d", i);
    }
    expert_stats_free(&stats);
}

static void test_one_expert(void)
{
    expert_stats stats;
    peer_error err;
    g_assert_true(expert_stats_init(&stats, 9, 1, &err));
    /* Five tokens, k = 2: expert 4 takes all of every gate, expert 7 is chosen with gate 0. */
    int32_t expert[10];
    float gate[10], preact[10];
    for (int t = 0; t < 5; t++) {
        expert[2 * t] = 4;
        expert[2 * t + 1] = 7;
        gate[2 * t] = 1.0f;
        gate[2 * t + 1] = 0.0f;
        preact[2 * t] = -1.0f + 0.5f * t;
        preact[2 * t + 1] = 0.5f;
    }
    expert_stats_accumulate(&stats, expert, gate, preact, 5, 2, PEER_ACTIVATION_RELU);
    expert_usage u;
    /* z = (0, 0, 0, 0, 1, 0, ...): KL to uniform over 9 is log 9. */
    expert_stats_usage(&stats, 0, false, &u);
    check_usage(&u, 1.0 / 9.0, log(9.0), 8, 5.0, "one expert");
    /* By count, experts 4 and 7 share evenly: log 9 + 2·½·log ½ = log 9 − log 2. */
    expert_stats_usage(&stats, -1, true, &u);
    check_usage(&u, 2.0 / 9.0, log(9.0) - log(2.0), 7, 10.0, "one expert, by count");
    /* ReLU activations of preact −1, −0.5, 0, 0.5, 1 sum to 1.5. */
    test_assert_close(stats.activation[4], 1.5, 1e-6, 0.0, "activation sum of expert 4");
    test_assert_close(stats.activation[7], 2.5, 1e-6, 0.0, "activation sum of expert 7");
    g_assert_cmpuint(stats.count[4], ==, 5);
    g_assert_cmpuint(stats.count[0], ==, 0);

    /* Accumulating the same batch again changes the totals, not the shape. */
    expert_stats_accumulate(&stats, expert, gate, preact, 5, 2, PEER_ACTIVATION_RELU);
    g_assert_cmpuint(stats.tokens, ==, 10);
    expert_stats_usage(&stats, 0, false, &u);
    check_usage(&u, 1.0 / 9.0, log(9.0), 8, 10.0, "one expert, twice");

    expert_stats_reset(&stats);
    g_assert_cmpuint(stats.tokens, ==, 0);
    for (int i = 0; i < 9; i++) {
        g_assert_cmpuint(stats.count[i], ==, 0);
        g_assert_cmpfloat(stats.gate_mass[i], ==, 0.0);
        g_assert_cmpfloat(stats.activation[i], ==, 0.0);
    }
    /* Nothing seen yet: nothing used, every expert dead, and no division by a zero total. */
    expert_stats_usage(&stats, 0, false, &u);
    g_assert_cmpfloat(u.usage, ==, 0.0);
    g_assert_cmpint(u.dead, ==, 9);
    g_assert_cmpfloat(u.total, ==, 0.0);
    g_assert_false(isnan(u.unevenness));
    expert_stats_free(&stats);
}

static void test_mixed(void)
{
    expert_stats stats;
    peer_error err;
    g_assert_true(expert_stats_init(&stats, 4, 2, &err));
    /* Three tokens, two heads, k = 2; (BT, h, k). */
    const int32_t expert[] = {
        0, 1,  3, 2, /* token 0: head 0, head 1 */
        0, 2,  3, 1, /* token 1 */
        1, 0,  2, 3, /* token 2 */
    };
    const float gate[] = {
        0.75f, 0.25f,  0.9f, 0.1f,
        0.5f, 0.5f,    0.5f, 0.5f,
        0.6f, 0.4f,    0.7f, 0.3f,
    };
    float preact[12];
    for (int i = 0; i < 12; i++)
        preact[i] = 0.3f * (float)(i - 5);
    expert_stats_accumulate(&stats, expert, gate, preact, 3, 2, PEER_ACTIVATION_GELU);

    expert_usage u;
    /* Head 0: z' = (0.75 + 0.5 + 0.4, 0.25 + 0.6, 0.5, 0) = (1.65, 0.85, 0.5, 0), ‖z'‖ = 3. */
    expert_stats_usage(&stats, 0, false, &u);
    check_usage(&u, 0.75,
                log(4.0) + plogp(1.65, 3.0) + plogp(0.85, 3.0) + plogp(0.5, 3.0), 1, 3.0,
                "head 0");
    /* Head 0 by count: (3, 2, 1, 0) of 6. */
    expert_stats_usage(&stats, 0, true, &u);
    check_usage(&u, 0.75, log(4.0) + plogp(3, 6) + plogp(2, 6) + plogp(1, 6), 1, 6.0,
                "head 0 by count");
    /* Head 1: z' = (0, 0.5, 0.1 + 0.7, 0.9 + 0.5 + 0.3) = (0, 0.5, 0.8, 1.7). */
    expert_stats_usage(&stats, 1, false, &u);
    check_usage(&u, 0.75, log(4.0) + plogp(0.5, 3.0) + plogp(0.8, 3.0) + plogp(1.7, 3.0), 1,
                3.0, "head 1");
    /* All heads: z' = (1.65, 1.35, 1.3, 1.7), ‖z'‖ = 6; every expert used. */
    expert_stats_usage(&stats, -1, false, &u);
    check_usage(&u, 1.0,
                log(4.0) + plogp(1.65, 6.0) + plogp(1.35, 6.0) + plogp(1.3, 6.0) +
                    plogp(1.7, 6.0),
                0, 6.0, "all heads");
    /* All heads by count: (3, 3, 3, 3), perfectly even. */
    expert_stats_usage(&stats, -1, true, &u);
    check_usage(&u, 1.0, 0.0, 0, 12.0, "all heads by count");

    /* Per cell: head 1, expert 3 was chosen in slots 2, 6 and 11. */
    g_assert_cmpuint(stats.count[1 * 4 + 3], ==, 3);
    test_assert_close(stats.gate_mass[1 * 4 + 3], 1.7, 1e-6, 0.0, "gate mass of head 1 expert 3");
    double act = test_activation(PEER_ACTIVATION_GELU, preact[2]) +
                 test_activation(PEER_ACTIVATION_GELU, preact[6]) +
                 test_activation(PEER_ACTIVATION_GELU, preact[11]);
    test_assert_close(stats.activation[1 * 4 + 3], act, 1e-6, 0.0,
                      "activation sum of head 1 expert 3");
    expert_stats_free(&stats);
}

/* The metrics written from PEER.md's definitions over a (N) mass vector. */
static void naive_usage(const double *mass, int N, expert_usage *out)
{
    double total = 0.0;
    int64_t used = 0;
    for (int i = 0; i < N; i++) {
        total += mass[i];
        used += mass[i] > 0.0;
    }
    double kl = log((double)N);
    for (int i = 0; i < N; i++)
        if (mass[i] > 0.0)
            kl += plogp(mass[i], total);
    out->usage = (double)used / N;
    out->dead = N - used;
    out->total = total;
    out->unevenness = kl;
}

static void test_from_forward(void)
{
    peer_layer_config cfg = test_config(16, 256, 4, 8, 16, false, PEER_NORM_LAYER,
                                        PEER_ACTIVATION_RELU);
    int BT = 64, h = cfg.heads, k = cfg.topk, N = cfg.n_experts;
    test_layer layer;
    test_layer_init(&layer, &cfg, BT, TEST_SEED + 11u);
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED + 12u);
    expert_stats stats;
    peer_error err;
    g_assert_true(expert_stats_init(&stats, N, h, &err));
    uint32_t *count = g_new0(uint32_t, (size_t)h * N);
    double *mass = g_new0(double, (size_t)h * N);
    double *act = g_new0(double, (size_t)h * N);
    float *out = g_new(float, (size_t)BT * cfg.d_model);

    for (int batch = 0; batch < 3; batch++) {
        float *inp = test_random_floats(&rng, (size_t)BT * cfg.d_model, 1.0f);
        peer_layer_forward(out, &layer.acts, inp, &layer.params, &cfg, BT, PEER_MODE_EVAL,
                           PEER_SELECT_RETRIEVE, NULL);
        expert_stats_accumulate(&stats, layer.acts.expert, layer.acts.gate, layer.acts.preact, BT,
                                k, cfg.activation);
        for (int t = 0; t < BT; t++) {
            for (int j = 0; j < h; j++) {
                for (int s = 0; s < k; s++) {
                    size_t slot = ((size_t)t * h + j) * k + s;
                    size_t cell = (size_t)j * N + (size_t)layer.acts.expert[slot];
                    count[cell]++;
                    mass[cell] += layer.acts.gate[slot];
                    act[cell] += test_activation(cfg.activation, layer.acts.preact[slot]);
                }
            }
        }
        g_free(inp);
    }
    g_assert_cmpuint(stats.tokens, ==, 3 * (uint64_t)BT);
    g_assert_cmpmem(stats.count, (size_t)h * N * sizeof(uint32_t), count,
                    (size_t)h * N * sizeof(uint32_t));
    for (size_t i = 0; i < (size_t)h * N; i++) {
        test_assert_close(stats.gate_mass[i], mass[i], 1e-9, 1e-9, "gate mass cell %zu", i);
        test_assert_close(stats.activation[i], act[i], 1e-6, 1e-6, "activation cell %zu", i);
    }

    double *z = g_new(double, N);
    for (int head = -1; head < h; head++) {
        for (int by_count = 0; by_count < 2; by_count++) {
            for (int i = 0; i < N; i++) {
                z[i] = 0.0;
                for (int j = head < 0 ? 0 : head; j < (head < 0 ? h : head + 1); j++)
                    z[i] += by_count ? count[(size_t)j * N + i] : mass[(size_t)j * N + i];
            }
            expert_usage expected, got;
            naive_usage(z, N, &expected);
            expert_stats_usage(&stats, head, by_count, &got);
            g_test_message("head %d%s: usage %.3f unevenness %.3f dead %lld", head,
                           by_count ? " by count" : "", got.usage, got.unevenness,
                           (long long)got.dead);
            check_usage(&got, expected.usage, expected.unevenness, expected.dead, expected.total,
                        by_count ? "forward, by count" : "forward");
        }
    }
    /* 192 tokens × 8 choices per head over 256 experts: some are chosen, some not. */
    expert_usage all;
    expert_stats_usage(&stats, 0, false, &all);
    g_assert_cmpfloat(all.usage, >, 0.0);
    g_assert_cmpfloat(all.unevenness, >, 0.0);

    g_free(z);
    g_free(out);
    g_free(act);
    g_free(mass);
    g_free(count);
    expert_stats_free(&stats);
    test_layer_free(&layer);
}

static void test_init_refuses(void)
{
    expert_stats stats;
    peer_error err;
    memset(&err, 0, sizeof err);
    g_assert_false(expert_stats_init(&stats, 0, 2, &err));
    g_assert_cmpuint(strlen(err.message), >, 0);
    g_assert_false(expert_stats_init(&stats, 16, 0, &err));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/expert-stats/uniform", test_uniform);
    g_test_add_func("/expert-stats/one-expert", test_one_expert);
    g_test_add_func("/expert-stats/mixed", test_mixed);
    g_test_add_func("/expert-stats/from-forward", test_from_forward);
    g_test_add_func("/expert-stats/init-refuses", test_init_refuses);
    return g_test_run();
}
