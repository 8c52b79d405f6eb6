/* Everything the retrieval-path view draws for one token: per head, the sub-key scores on each
 * half, their top-k, the k × k candidate sums, and the chosen experts with their grid position,
 * score, gate, activation and the size of their contribution. Computed from the token's layer
 * input and normalised query, the same way the forward computes them. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "peer-error.h"
#include "peer-layer.h"

typedef struct {
    int key_group;        /* g: the head's key group */
    float *query;         /* (dk) normalised query: q¹ then q² */
    float *sub_score[2];  /* (n) each: q¹·c_a over a, q²·c'_b over b */
    int32_t *sub_top[2];  /* (k) each: sub-key indices, best first */
    float *candidate;     /* (k, k) sub_score[0][sub_top[0][i]] + sub_score[1][sub_top[1][j]] */
    int32_t *pick_i;      /* (k) candidate row of each chosen expert */
    int32_t *pick_j;      /* (k) candidate column */
    int32_t *expert;      /* (k) chosen experts, best first: row·n + col */
    int32_t *row;         /* (k) a, the sub-key from C */
    int32_t *col;         /* (k) b, the sub-key from C' */
    float *score;         /* (k) */
    float *gate;          /* (k) */
    float *activation;    /* (k) σ(u_iᵀx); 1 for PKM, which has no u */
    float *contribution;  /* (k) ‖gate·σ(u_iᵀx)·v_i‖₂ */
} peer_head_trace;

typedef struct {
    int heads, n, topk, d_key;
    peer_head_trace *head; /* (h) */
} peer_token_trace;

/* x (D) is the token's layer input; query_normed (HK) its normalised query, as in
 * peer_layer_acts.query_normed. */
bool peer_token_trace_compute(peer_token_trace *trace, const peer_layer_config *cfg,
                              const peer_layer_params *params, const float *x,
                              const float *query_normed, peer_error *err);
void peer_token_trace_free(peer_token_trace *trace);
