/* Linear layers y = x·Wᵀ + b with W stored (out, in), as PyTorch stores it. */
#pragma once

#include "thread-pool.h"

/* out (BT, OC) = inp (BT, C) · weight (OC, C)ᵀ + bias (OC), overwritten; bias may be NULL. */
void linear_forward(float *out, const float *inp, const float *weight, const float *bias, int BT,
                    int C, int OC, thread_pool *pool);

/* dinp (BT, C) +=, dweight (OC, C) +=, dbias (OC) +=; dinp and dbias may be NULL. */
void linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                     const float *inp, const float *weight, int BT, int C, int OC,
                     thread_pool *pool);
