/* The dense feed-forward block: fc → GELU → proj. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "peer-error.h"
#include "thread-pool.h"

typedef struct {
    float *fc_weight;   /* (F, D) */
    float *fc_bias;     /* (F) */
    float *proj_weight; /* (D, F) */
    float *proj_bias;   /* (D) */
} dense_ffn_params;

typedef struct {
    int capacity; /* tokens */
    float *fc;    /* (BT, F) before GELU */
    float *hidden;/* (BT, F) after GELU */
    float *dhidden; /* (BT, F) backward scratch */
} dense_ffn_acts;

size_t dense_ffn_params_count(int D, int F);
void dense_ffn_params_point(dense_ffn_params *params, int D, int F, float *arena);
bool dense_ffn_acts_init(dense_ffn_acts *acts, int F, int max_tokens, peer_error *err);
void dense_ffn_acts_free(dense_ffn_acts *acts);

/* out (BT, D), overwritten. */
void dense_ffn_forward(float *out, dense_ffn_acts *acts, const float *inp,
                       const dense_ffn_params *params, int BT, int D, int F, thread_pool *pool);
/* dinp (BT, D) += (may be NULL), grads +=. */
void dense_ffn_backward(float *dinp, dense_ffn_params *grads, dense_ffn_acts *acts,
                        const float *dout, const float *inp, const dense_ffn_params *params,
                        int BT, int D, int F, thread_pool *pool);
