/* Exact product-key retrieval (Lample et al. 2019): top-k on each half of the query against n
 * sub-keys, then the best k of the k² candidate sums. Internal to the engine. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* The k largest of values (n), best first; ties go to the lower index. idx (k), val (k). */
void topk_select(const float *values, int n, int k, int32_t *idx, float *val);

/* The k best sums val1[i] + val2[j] over the k × k grid, given val1 and val2 (k) sorted best
 * first. Only cells with (i+1)(j+1) <= k are visited: any other cell has at least k cells at
 * least as good (every (i', j') with i' <= i and j' <= j), so it can never be needed. */
void product_keys_merge(const float *val1, const float *val2, int k, int32_t *pick_i,
                        int32_t *pick_j, float *score);

/* Sub-key scores of `rows` queries against one key half: out (rows, n) = q (rows, half; row
 * stride ld) · keys (n, half)ᵀ. */
void product_keys_score(float *out, const float *query, int ld, const float *keys, int rows,
                        int n, int half);

/* Retrieval for a block of tokens: query (rows, h·dk), keys (G, 2, n, dk/2); writes expert and
 * score (rows, h, k), best first. scratch holds 2·rows·n floats. */
void product_keys_retrieve(int32_t *expert, float *score, const float *query, const float *keys,
                           int rows, int heads, int n, int d_key, int k, bool shared_keys,
                           float *scratch);
