/* LayerNorm over the last dimension, with weight and bias, eps 1e-5. */
#pragma once

#include "thread-pool.h"

#define LAYERNORM_EPS 1e-5f

/* out (BT, C); mean, rstd (BT) kept for the backward. */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                       const float *bias, int BT, int C, thread_pool *pool);
/* dinp (BT, C) +=, dweight (C) +=, dbias (C) +=. */
void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const float *mean,
                        const float *rstd, int BT, int C, thread_pool *pool);
