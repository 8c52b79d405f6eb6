/* Adam (Kingma & Ba 2015), dense for ordinary tensors and lazy-sparse for the expert tables,
 * whose gradient only ever touches the rows that retrieval chose. Every element is updated on
 * its own, so the result is the same whatever the number of threads. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "thread-pool.h"

typedef struct {
    float learning_rate;
    float beta1;
    float beta2;
    float eps;
} adam_config;

/* Step `step` (1 for the first) on param (n) with grad (n); m, v (n) are its moments. pool may
 * be NULL. */
void adam_update(float *param, const float *grad, float *m, float *v, size_t n,
                 const adam_config *cfg, int step, thread_pool *pool);

/* The same step on the touched rows of a table (N, D) only: rows (n_rows) are distinct row ids
 * and grad (n_rows, D) their gradients; m, v (N, D). Untouched rows keep their weights and
 * moments, as in PyTorch's SparseAdam; the bias correction follows the global step. */
void adam_update_rows(float *table, const int32_t *rows, int n_rows, const float *grad, float *m,
                      float *v, int D, const adam_config *cfg, int step, thread_pool *pool);
