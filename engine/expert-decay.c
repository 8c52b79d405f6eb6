#include "expert-decay.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "expert-kernel.h"

/* w is divided out of the sums once it passes this. Float sums stay far from overflow: a cell
 * holds at most w · (selections per step) / (1 - γ), under 2^64 · 2^20 · 2^21 for any allowed
 * half-life. */
#define RESCALE_WEIGHT 18446744073709551616.0 /* 2^64 */
/* Sums that a rescale brings below this are decades under the used threshold: they become 0,
 * so they never turn into subnormal floats. */
#define NEGLIGIBLE_COUNT 1e-20f
#define MAX_HALF_LIFE 1e6

bool expert_decayed_stats_init(expert_decayed_stats *stats, int n_experts, int heads,
                               double half_life, peer_error *err)
{
    memset(stats, 0, sizeof *stats);
    if (n_experts < 1 || heads < 1)
        return peer_error_set(err,
                              "decayed expert statistics need n_experts >= 1 and heads >= 1 "
                              "(got %d, %d)",
                              n_experts, heads);
    if (!(half_life >= 1.0 && half_life <= MAX_HALF_LIFE))
        return peer_error_set(err, "half-life of %g steps: use 1 to %g steps", half_life,
                              MAX_HALF_LIFE);
    size_t cells = (size_t)n_experts * heads;
    stats->count = calloc(cells, sizeof *stats->count);
    stats->gate_mass = calloc(cells, sizeof *stats->gate_mass);
    stats->activation = calloc(cells, sizeof *stats->activation);
    if (!stats->count || !stats->gate_mass || !stats->activation) {
        expert_decayed_stats_free(stats);
        return peer_error_set(err,
                              "out of memory for decayed expert statistics (%d heads × %d "
                              "experts)",
                              heads, n_experts);
    }
    stats->n_experts = n_experts;
    stats->heads = heads;
    stats->half_life = half_life;
    stats->decay = pow(2.0, -1.0 / half_life);
    stats->weight = 1.0;
    return true;
}

void expert_decayed_stats_free(expert_decayed_stats *stats)
{
    free(stats->count);
    free(stats->gate_mass);
    free(stats->activation);
    memset(stats, 0, sizeof *stats);
}

void expert_decayed_stats_reset(expert_decayed_stats *stats)
{
    size_t cells = (size_t)stats->n_experts * stats->heads;
    memset(stats->count, 0, cells * sizeof *stats->count);
    memset(stats->gate_mass, 0, cells * sizeof *stats->gate_mass);
    memset(stats->activation, 0, cells * sizeof *stats->activation);
    stats->weight = 1.0;
    stats->tokens = 0.0;
    stats->steps = 0;
}

/* Divides w out of every sum: the one pass over all cells, once per log2(2^64) half-lives. */
static void rescale(expert_decayed_stats *stats)
{
    size_t cells = (size_t)stats->n_experts * stats->heads;
    float inverse = (float)(1.0 / stats->weight);
    for (size_t i = 0; i < cells; i++) {
        if (stats->count[i] == 0.0f)
            continue;
        float count = stats->count[i] * inverse;
        if (count < NEGLIGIBLE_COUNT) {
            stats->count[i] = stats->gate_mass[i] = stats->activation[i] = 0.0f;
            continue;
        }
        stats->count[i] = count;
        stats->gate_mass[i] *= inverse;
        stats->activation[i] *= inverse;
    }
    stats->tokens /= stats->weight;
    stats->weight = 1.0;
}

void expert_decayed_stats_begin_step(expert_decayed_stats *stats)
{
    if (stats->steps > 0) {
        stats->weight /= stats->decay;
        if (stats->weight >= RESCALE_WEIGHT)
            rescale(stats);
    }
    stats->steps++;
}

void expert_decayed_stats_accumulate_head(expert_decayed_stats *stats, int head,
                                          const int32_t *expert, const float *gate,
                                          const float *preact, int BT, int topk,
                                          peer_activation activation)
{
    size_t N = (size_t)stats->n_experts;
    float w = (float)stats->weight;
    float *count = stats->count + head * N;
    float *gate_mass = stats->gate_mass + head * N;
    float *activation_sum = stats->activation + head * N;
    for (int t = 0; t < BT; t++) {
        size_t base = ((size_t)t * stats->heads + head) * topk;
        for (int s = 0; s < topk; s++) {
            size_t e = (size_t)expert[base + s];
            count[e] += w;
            gate_mass[e] += w * gate[base + s];
            activation_sum[e] +=
                w * (preact ? expert_activation(preact[base + s], activation) : 1.0f);
        }
    }
}

void expert_decayed_stats_add_tokens(expert_decayed_stats *stats, int BT)
{
    stats->tokens += stats->weight * BT;
}

void expert_decayed_stats_accumulate(expert_decayed_stats *stats, const int32_t *expert,
                                     const float *gate, const float *preact, int BT, int topk,
                                     peer_activation activation)
{
    for (int j = 0; j < stats->heads; j++)
        expert_decayed_stats_accumulate_head(stats, j, expert, gate, preact, BT, topk,
                                             activation);
    expert_decayed_stats_add_tokens(stats, BT);
}

double expert_decayed_stats_tokens(const expert_decayed_stats *stats)
{
    return stats->tokens / stats->weight;
}

void expert_decayed_stats_metrics(const expert_decayed_stats *stats, int head, float *count,
                                  float *gate_mass, float *mean_activation)
{
    size_t N = (size_t)stats->n_experts;
    int j0 = head < 0 ? 0 : head, j1 = head < 0 ? stats->heads : head + 1;
    double inverse = 1.0 / stats->weight;
    for (size_t i = 0; i < N; i++) {
        double c = 0.0, mass = 0.0, act = 0.0;
        for (int j = j0; j < j1; j++) {
            size_t cell = j * N + i;
            c += stats->count[cell];
            mass += stats->gate_mass[cell];
            act += stats->activation[cell];
        }
        c *= inverse;
        if (count)
            count[i] = (float)c;
        if (gate_mass)
            gate_mass[i] = (float)(mass * inverse);
        if (mean_activation)
            mean_activation[i] =
                c >= EXPERT_DECAYED_USED_COUNT ? (float)(act * inverse / c) : NAN;
    }
}

void expert_decayed_stats_metric(const expert_decayed_stats *stats, expert_metric metric,
                                 int head, float *out)
{
    expert_decayed_stats_metrics(stats, head, metric == EXPERT_METRIC_COUNT ? out : NULL,
                                 metric == EXPERT_METRIC_GATE_MASS ? out : NULL,
                                 metric == EXPERT_METRIC_MEAN_ACTIVATION ? out : NULL);
}

/* As expert-stats.c: T = Σ z, S = Σ z log z, and Σ p log p = S / T - log T. */
typedef struct {
    double total;
    double zlogz;
    int64_t used;
} usage_sums;

/* An expert's decayed selections c and mass z (gate mass, or c itself by count); below the used
 * threshold it counts as unused, with no mass. */
static inline void usage_sums_add(usage_sums *sums, double c, double z)
{
    if (c >= EXPERT_DECAYED_USED_COUNT && z > 0.0) {
        sums->total += z;
        sums->zlogz += z * log(z);
        sums->used++;
    }
}

static void usage_sums_finish(const usage_sums *sums, size_t N, expert_usage *out)
{
    out->total = sums->total;
    out->usage = (double)sums->used / (double)N;
    out->dead = (int64_t)N - sums->used;
    /* KL(z ‖ uniform) = log N + Σ p log p, with 0·log 0 = 0. */
    out->unevenness = sums->total > 0.0
                          ? log((double)N) + sums->zlogz / sums->total - log(sums->total)
                          : 0.0;
}

void expert_decayed_stats_usage(const expert_decayed_stats *stats, int head, bool by_count,
                                expert_usage *out)
{
    size_t N = (size_t)stats->n_experts;
    int j0 = head < 0 ? 0 : head, j1 = head < 0 ? stats->heads : head + 1;
    double inverse = 1.0 / stats->weight;
    usage_sums sums = {0};
    for (size_t i = 0; i < N; i++) {
        double c = 0.0, mass = 0.0;
        for (int j = j0; j < j1; j++) {
            c += stats->count[j * N + i];
            mass += stats->gate_mass[j * N + i];
        }
        c *= inverse;
        usage_sums_add(&sums, c, by_count ? c : mass * inverse);
    }
    usage_sums_finish(&sums, N, out);
}

void expert_decayed_stats_usage_heads(const expert_decayed_stats *stats, bool by_count,
                                      expert_usage *out)
{
    size_t N = (size_t)stats->n_experts;
    int h = stats->heads;
    double inverse = 1.0 / stats->weight;
    usage_sums *sums = calloc((size_t)h + 1, sizeof *sums);
    if (!sums) {
        for (int j = -1; j < h; j++)
            expert_decayed_stats_usage(stats, j, by_count, &out[j + 1]);
        return;
    }
    for (size_t i = 0; i < N; i++) {
        /* The same sums in the same order as expert_decayed_stats_usage. */
        double all_c = 0.0, all_mass = 0.0;
        for (int j = 0; j < h; j++) {
            double c = stats->count[j * N + i], mass = stats->gate_mass[j * N + i];
            all_c += c;
            all_mass += mass;
            double head_c = (0.0 + c) * inverse;
            usage_sums_add(&sums[j + 1], head_c, by_count ? head_c : (0.0 + mass) * inverse);
        }
        all_c *= inverse;
        usage_sums_add(&sums[0], all_c, by_count ? all_c : all_mass * inverse);
    }
    for (int j = 0; j <= h; j++)
        usage_sums_finish(&sums[j], N, &out[j]);
    free(sums);
}
