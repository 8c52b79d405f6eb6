/* Mixture of experts, token choice: each token's router picks its top-k of E dense experts
 * (fc → GELU → proj), gates are the softmax over the selected router logits, and the usual
 * load-balancing auxiliary loss E · Σ_e f_e · P_e (f_e the fraction of routed slots that went to
 * expert e, P_e the mean router probability of e over all tokens) keeps the experts in use. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peer-error.h"
#include "thread-pool.h"

typedef struct {
    float *router_weight; /* (E, D) */
    float *fc_weight;     /* (E, F, D) */
    float *fc_bias;       /* (E, F) */
    float *proj_weight;   /* (E, D, F) */
    float *proj_bias;     /* (E, D) */
} moe_params;

typedef struct {
    int capacity;         /* tokens */
    float *router_logits; /* (BT, E) */
    float *router_probs;  /* (BT, E) softmax over all E, for the auxiliary loss */
    int32_t *expert;      /* (BT, k) chosen experts, best first */
    float *gate;          /* (BT, k) softmax over the chosen logits */
    float *fc;            /* (BT, k, F) before GELU, per routed slot */
    float *hidden;        /* (BT, k, F) after GELU */
    float *expert_out;    /* (BT, k, D) each chosen expert's output before gating */
    float *scratch;       /* backward scratch, sized at init */
    float aux_loss;       /* of the last forward */
} moe_acts;

size_t moe_params_count(int D, int F, int E);
void moe_params_point(moe_params *params, int D, int F, int E, float *arena);
bool moe_acts_init(moe_acts *acts, int D, int F, int E, int topk, int max_tokens,
                   peer_error *err);
void moe_acts_free(moe_acts *acts);

/* out (BT, D) overwritten; sets acts->aux_loss. */
void moe_forward(float *out, moe_acts *acts, const float *inp, const moe_params *params, int BT,
                 int D, int F, int E, int topk, thread_pool *pool);
/* dinp (BT, D) += (may be NULL), grads +=; aux_scale is dloss/daux_loss (the auxiliary loss
 * coefficient, 0 to train without it). */
void moe_backward(float *dinp, moe_params *grads, moe_acts *acts, const float *dout,
                  float aux_scale, const float *inp, const moe_params *params, int BT, int D,
                  int F, int E, int topk, thread_pool *pool);
