/* Softmax cross-entropy of next-byte logits. */
#pragma once

#include <stdint.h>

#include "thread-pool.h"

/* probs (BT, V) = softmax(logits); losses (BT) = -log probs[target]; returns the mean loss
 * (accumulated in double). */
double cross_entropy_forward(float *probs, float *losses, const float *logits,
                             const uint8_t *targets, int BT, int V, thread_pool *pool);
/* dlogits (BT, V) += scale · (probs - onehot(target)); scale is dloss/dlosses, 1/BT for the
 * mean. */
void cross_entropy_backward(float *dlogits, const float *probs, const uint8_t *targets, int BT,
                            int V, float scale, thread_pool *pool);
