/* Per-expert usage over a stream of tokens: how often each expert was chosen, the gate mass it
 * received (the paper's z'), and the sum of its activations; per head, so heads with their own
 * keys can be told apart. Usage and unevenness follow PEER.md exactly. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "peer-error.h"
#include "peer-layer.h"

typedef struct {
    int n_experts;        /* N */
    int heads;            /* h */
    uint64_t tokens;      /* tokens accumulated */
    uint32_t *count;      /* (h, N) selections */
    double *gate_mass;    /* (h, N) Σ gate */
    double *activation;   /* (h, N) Σ σ(u·x) over selections */
} expert_stats;

/* What a heat map of the experts shows for each expert. */
typedef enum {
    EXPERT_METRIC_COUNT,           /* selections */
    EXPERT_METRIC_GATE_MASS,       /* Σ gate: the paper's z' */
    EXPERT_METRIC_MEAN_ACTIVATION, /* Σ σ(u·x) / selections; NaN for an expert never selected */
} expert_metric;

typedef struct {
    double usage;          /* fraction of experts with z_i > 0, in [0, 1] */
    double unevenness;     /* KL(z ‖ uniform) = log N + Σ z log z, nats; 0 when z is all zero */
    int64_t dead;          /* experts with z_i = 0 */
    double total;          /* ‖z'‖₁ */
} expert_usage;

bool expert_stats_init(expert_stats *stats, int n_experts, int heads, peer_error *err);
void expert_stats_free(expert_stats *stats);
void expert_stats_reset(expert_stats *stats);

/* Adds BT tokens' choices from a forward: expert, gate, preact are (BT, h, k). preact may be
 * NULL (PKM, whose activation is 1). */
void expert_stats_accumulate(expert_stats *stats, const int32_t *expert, const float *gate,
                             const float *preact, int BT, int topk, peer_activation activation);
/* The selections of one head only, tokens not counted: threads may add different heads of the
 * same choices at once (the caller adds BT to tokens). The sums equal expert_stats_accumulate's
 * bit for bit. */
void expert_stats_accumulate_head(expert_stats *stats, int head, const int32_t *expert,
                                  const float *gate, const float *preact, int BT, int topk,
                                  peer_activation activation);

/* Usage of one head (0 <= head < h) or of all heads together (head = -1). by_count weighs each
 * selection as 1 instead of by its gate (the count-weighted variant). */
void expert_stats_usage(const expert_stats *stats, int head, bool by_count, expert_usage *out);
/* The usage of all heads together in out[0] and of each head j in out[1 + j] (heads + 1
 * entries), equal to expert_stats_usage's for each, in one pass over the statistics. */
void expert_stats_usage_heads(const expert_stats *stats, bool by_count, expert_usage *out);

/* One metric of every expert of one head (0 <= head < h) or of all heads together (head = -1:
 * counts and gate masses summed over heads, the mean activation over all their selections) into
 * out (N). Expert (a, b) is out[a·n + b], so out is the n × n grid of the product keys. */
void expert_stats_metric(const expert_stats *stats, expert_metric metric, int head, float *out);
/* The three metrics at once, in one pass (each out may be NULL). */
void expert_stats_metrics(const expert_stats *stats, int head, float *count, float *gate_mass,
                          float *mean_activation);
