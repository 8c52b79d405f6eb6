/* Causal multi-head self-attention on a fused qkv input whose rows hold q, then k, then v;
 * scores scaled by 1/√head_dim. */
#pragma once

#include "thread-pool.h"

/* inp (B, T, 3C) → out (B, T, C); preatt and att (B, NH, T, T) kept for the backward (only the
 * causal lower triangle is meaningful). */
void attention_forward(float *out, float *preatt, float *att, const float *inp, int B, int T,
                       int C, int NH, thread_pool *pool);
/* dinp (B, T, 3C) +=; dpreatt, datt (B, NH, T, T) are scratch. */
void attention_backward(float *dinp, float *dpreatt, float *datt, const float *dout,
                        const float *inp, const float *att, int B, int T, int C, int NH,
                        thread_pool *pool);
