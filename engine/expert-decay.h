/* Expert statistics of recent training: the choices of each step weigh γ^age, age in steps
 * behind the newest, so a step's weight halves every half_life steps.
 *
 * Ageing all N·h sums every step would touch every cell of a million-expert grid per step.
 * Instead a step adds its choices at weight w = γ^-t (t steps since the sums were last rescaled),
 * so older additions shrink relative to newer ones without being touched; the decayed value of
 * a sum is the stored sum divided by w. When w grows large the sums are divided by it once and w
 * starts again at 1. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "expert-stats.h"
#include "peer-error.h"
#include "peer-layer.h"

/* An expert counts as used while its decayed selections reach this: one selection four half-lives
 * ago. Below it the expert is treated as unused, with no gate mass, by the usage figures. */
#define EXPERT_DECAYED_USED_COUNT (1.0 / 16.0)

typedef struct {
    int n_experts;     /* N */
    int heads;         /* h */
    double half_life;  /* steps */
    double decay;      /* γ = 2^(-1 / half_life) */
    double weight;     /* w: the weight of the newest step's additions */
    double tokens;     /* Σ w_step · tokens of the step (scaled like the sums) */
    long steps;        /* steps begun */
    float *count;      /* (h, N) Σ w · selections */
    float *gate_mass;  /* (h, N) Σ w · gate */
    float *activation; /* (h, N) Σ w · σ(u·x) */
} expert_decayed_stats;

bool expert_decayed_stats_init(expert_decayed_stats *stats, int n_experts, int heads,
                               double half_life, peer_error *err);
void expert_decayed_stats_free(expert_decayed_stats *stats);
void expert_decayed_stats_reset(expert_decayed_stats *stats);

/* Begins a step: everything added before ages by one step. Call before each step's
 * accumulate. */
void expert_decayed_stats_begin_step(expert_decayed_stats *stats);

/* Adds BT tokens' choices to the current step, as expert_stats_accumulate does. */
void expert_decayed_stats_accumulate(expert_decayed_stats *stats, const int32_t *expert,
                                     const float *gate, const float *preact, int BT, int topk,
                                     peer_activation activation);
/* expert_decayed_stats_accumulate in parts, for threads: one head's selections (different heads
 * may be added at once), and the step's tokens once. */
void expert_decayed_stats_accumulate_head(expert_decayed_stats *stats, int head,
                                          const int32_t *expert, const float *gate,
                                          const float *preact, int BT, int topk,
                                          peer_activation activation);
void expert_decayed_stats_add_tokens(expert_decayed_stats *stats, int BT);

/* Decayed tokens: Σ γ^age · tokens of each step. */
double expert_decayed_stats_tokens(const expert_decayed_stats *stats);

/* The decayed metric of every expert of head (or all heads, -1) into out (N), as
 * expert_stats_metric. An expert below EXPERT_DECAYED_USED_COUNT selections has NaN mean
 * activation. */
void expert_decayed_stats_metric(const expert_decayed_stats *stats, expert_metric metric,
                                 int head, float *out);
/* The three metrics at once, in one pass (each out may be NULL). */
void expert_decayed_stats_metrics(const expert_decayed_stats *stats, int head, float *count,
                                  float *gate_mass, float *mean_activation);

/* Usage and unevenness of the decayed gate mass (or selections, by_count), as expert_stats_usage
 * computes them, over the experts with at least EXPERT_DECAYED_USED_COUNT decayed selections. */
void expert_decayed_stats_usage(const expert_decayed_stats *stats, int head, bool by_count,
                                expert_usage *out);
/* All heads together in out[0] and head j in out[1 + j] (heads + 1 entries), equal to
 * expert_decayed_stats_usage's for each, in one pass. */
void expert_decayed_stats_usage_heads(const expert_decayed_stats *stats, bool by_count,
                                      expert_usage *out);
