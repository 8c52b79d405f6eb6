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

void expert_stats_accumulate(expert_stats *stats, const int32_t *expert, const float *gate,
                             const float *preact, int BT, int topk, peer_activation activation)
{
    size_t N = (size_t)stats->n_experts;
    for (int t = 0; t < BT; t++) {
        for (int j = 0; j < stats->heads; j++) {
            size_t base = ((size_t)t * stats->heads + j) * topk;
            for (int s = 0; s < topk; s++) {
                size_t cell = j * N + (size_t)expert[base + s];
                stats->count[cell]++;
                stats->gate_mass[cell] += gate[base + s];
                stats->activation[cell] +=
                    preact ? expert_activation(preact[base + s], activation) : 1.0f;
            }
        }
    }
    stats->tokens += (uint64_t)BT;
}

void expert_stats_usage(const expert_stats *stats, int head, bool by_count, expert_usage *out)
{
    size_t N = (size_t)stats->n_experts;
    int j0 = head < 0 ? 0 : head, j1 = head < 0 ? stats->heads : head + 1;
    double total = 0.0;
    int64_t used = 0;
    for (size_t i = 0; i < N; i++) {
        double z = 0.0;
        for (int j = j0; j < j1; j++)
            z += by_count ? (double)stats->count[j * N + i] : stats->gate_mass[j * N + i];
        total += z;
        used += z > 0.0;
    }
    /* KL(z ‖ uniform) = log N + Σ z log z over the normalised z, with 0·log 0 = 0. */
    double entropy_term = 0.0;
    if (total > 0.0) {
        for (size_t i = 0; i < N; i++) {
            double z = 0.0;
            for (int j = j0; j < j1; j++)
                z += by_count ? (double)stats->count[j * N + i] : stats->gate_mass[j * N + i];
            if (z > 0.0) {
                double p = z / total;
                entropy_term += p * log(p);
            }
        }
    }
    out->total = total;
    out->usage = (double)used / (double)N;
    out->dead = (int64_t)N - used;
    out->unevenness = total > 0.0 ? log((double)N) + entropy_term : 0.0;
}
