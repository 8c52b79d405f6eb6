#include "expert-stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "expert-kernel.h"

bool expert_stats_init(expert_stats *stats, int n_experts, int heads, peer_error *err)
{
    memset(stats, 0, sizeof *stats);
    if (n_experts < 1 || heads < 1)
        return peer_error_set(err, "expert statistics need n_experts >= 1 and heads >= 1 (got %d, %d)",
                              n_experts, heads);
    size_t cells = (size_t)n_experts * heads;
    stats->count = calloc(cells, sizeof *stats->count);
    stats->gate_mass = calloc(cells, sizeof *stats->gate_mass);
    stats->activation = calloc(cells, sizeof *stats->activation);
    if (!stats->count || !stats->gate_mass || !stats->activation) {
        expert_stats_free(stats);
        return peer_error_set(err,
                              "out of memory for expert statistics (%d heads × %d experts)",
                              heads, n_experts);
    }
    stats->n_experts = n_experts;
    stats->heads = heads;
    return true;
}

void expert_stats_free(expert_stats *stats)
{
    free(stats->count);
    free(stats->gate_mass);
    free(stats->activation);
    memset(stats, 0, sizeof *stats);
}

void expert_stats_reset(expert_stats *stats)
{
    size_t cells = (size_t)stats->n_experts * stats->heads;
    memset(stats->count, 0, cells * sizeof *stats->count);
    memset(stats->gate_mass, 0, cells * sizeof *stats->gate_mass);
    memset(stats->activation, 0, cells * sizeof *stats->activation);
    stats->tokens = 0;
}

void expert_stats_accumulate_head(expert_stats *stats, int head, const int32_t *expert,
                                  const float *gate, const float *preact, int BT, int topk,
                                  peer_activation activation)
{
    size_t N = (size_t)stats->n_experts;
    uint32_t *count = stats->count + head * N;
    double *gate_mass = stats->gate_mass + head * N;
    double *activation_sum = stats->activation + head * N;
    for (int t = 0; t < BT; t++) {
        size_t base = ((size_t)t * stats->heads + head) * topk;
        for (int s = 0; s < topk; s++) {
            size_t e = (size_t)expert[base + s];
            count[e]++;
            gate_mass[e] += gate[base + s];
            activation_sum[e] += preact ? expert_activation(preact[base + s], activation) : 1.0f;
        }
    }
}

void expert_stats_accumulate(expert_stats *stats, const int32_t *expert, const float *gate,
                             const float *preact, int BT, int topk, peer_activation activation)
{
    /* Head by head: each cell belongs to one head, so it sums its selections in token order
     * either way. */
    for (int j = 0; j < stats->heads; j++)
        expert_stats_accumulate_head(stats, j, expert, gate, preact, BT, topk, activation);
    stats->tokens += (uint64_t)BT;
}

/* Running sums of the usage metrics: with T = Σ z and S = Σ z log z over the experts,
 * Σ p log p = S / T - log T for p = z / T, so one pass gives the unevenness. */
typedef struct {
    double total; /* T */
    double zlogz; /* S */
    int64_t used;
} usage_sums;

static inline void usage_sums_add(usage_sums *sums, double z)
{
    sums->total += z;
    if (z > 0.0) {
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

static inline double cell_mass(const expert_stats *stats, size_t cell, bool by_count)
{
    return by_count ? (double)stats->count[cell] : stats->gate_mass[cell];
}

void expert_stats_usage(const expert_stats *stats, int head, bool by_count, expert_usage *out)
{
    size_t N = (size_t)stats->n_experts;
    int j0 = head < 0 ? 0 : head, j1 = head < 0 ? stats->heads : head + 1;
    usage_sums sums = {0};
    for (size_t i = 0; i < N; i++) {
        double z = 0.0;
        for (int j = j0; j < j1; j++)
            z += cell_mass(stats, j * N + i, by_count);
        usage_sums_add(&sums, z);
    }
    usage_sums_finish(&sums, N, out);
}

void expert_stats_usage_heads(const expert_stats *stats, bool by_count, expert_usage *out)
{
    size_t N = (size_t)stats->n_experts;
    int h = stats->heads;
    usage_sums *sums = calloc((size_t)h + 1, sizeof *sums);
    if (!sums) {
        for (int j = -1; j < h; j++)
            expert_stats_usage(stats, j, by_count, &out[j + 1]);
        return;
    }
    for (size_t i = 0; i < N; i++) {
        /* The same sums in the same order as expert_stats_usage, so the numbers are equal. */
        double all = 0.0;
        for (int j = 0; j < h; j++) {
            double z = cell_mass(stats, j * N + i, by_count);
            all += z;
            usage_sums_add(&sums[j + 1], 0.0 + z);
        }
        usage_sums_add(&sums[0], all);
    }
    for (int j = 0; j <= h; j++)
        usage_sums_finish(&sums[j], N, &out[j]);
    free(sums);
}

void expert_stats_metrics(const expert_stats *stats, int head, float *count, float *gate_mass,
                          float *mean_activation)
{
    size_t N = (size_t)stats->n_experts;
    int j0 = head < 0 ? 0 : head, j1 = head < 0 ? stats->heads : head + 1;
    for (size_t i = 0; i < N; i++) {
        double c = 0.0, mass = 0.0, act = 0.0;
        for (int j = j0; j < j1; j++) {
            size_t cell = j * N + i;
            c += stats->count[cell];
            mass += stats->gate_mass[cell];
            act += stats->activation[cell];
        }
        if (count)
            count[i] = (float)c;
        if (gate_mass)
            gate_mass[i] = (float)mass;
        if (mean_activation)
            mean_activation[i] = c > 0.0 ? (float)(act / c) : NAN;
    }
}

void expert_stats_metric(const expert_stats *stats, expert_metric metric, int head, float *out)
{
    expert_stats_metrics(stats, head, metric == EXPERT_METRIC_COUNT ? out : NULL,
                         metric == EXPERT_METRIC_GATE_MASS ? out : NULL,
                         metric == EXPERT_METRIC_MEAN_ACTIVATION ? out : NULL);
}
