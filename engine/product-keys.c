#include "product-keys.h"

#include <cblas.h>

#include "thread-pool.h"
#include <stdlib.h>

#define PRODUCT_KEYS_MAX_K 1024

void topk_select(const float *values, int n, int k, int32_t *idx, float *val)
{
    int count = 0;
    for (int i = 0; i < n; i++) {
        float v = values[i];
        if (count == k) {
            /* Strictly better than the worst kept: an equal later value loses the tie. */
            if (!(v > val[k - 1]))
                continue;
            count--;
        }
        int p = count;
        while (p > 0 && val[p - 1] < v) {
            val[p] = val[p - 1];
            idx[p] = idx[p - 1];
            p--;
        }
        val[p] = v;
        idx[p] = i;
        count++;
    }
}

void product_keys_merge(const float *val1, const float *val2, int k, int32_t *pick_i,
                        int32_t *pick_j, float *score)
{
    int count = 0;
    for (int i = 0; i < k; i++) {
        for (int j = 0; (i + 1) * (j + 1) <= k; j++) {
            float v = val1[i] + val2[j];
            if (count == k) {
                if (!(v > score[k - 1]))
                    continue;
                count--;
            }
            int p = count;
            while (p > 0 && score[p - 1] < v) {
                score[p] = score[p - 1];
                pick_i[p] = pick_i[p - 1];
                pick_j[p] = pick_j[p - 1];
                p--;
            }
            score[p] = v;
            pick_i[p] = i;
            pick_j[p] = j;
            count++;
        }
    }
}

void product_keys_score(float *out, const float *query, int ld, const float *keys, int rows,
                        int n, int half)
{
    thread_pool_pin_blas();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n, half, 1.0f, query, ld, keys,
                half, 0.0f, out, n);
}

void product_keys_retrieve(int32_t *expert, float *score, const float *query, const float *keys,
                           int rows, int heads, int n, int d_key, int k, bool shared_keys,
                           float *scratch)
{
    int half = d_key / 2;
    int HK = heads * d_key;
    float *scores1 = scratch;                   /* (rows, n) */
    float *scores2 = scratch + (size_t)rows * n; /* (rows, n) */
    int32_t idx1[PRODUCT_KEYS_MAX_K], idx2[PRODUCT_KEYS_MAX_K];
    int32_t pick_i[PRODUCT_KEYS_MAX_K], pick_j[PRODUCT_KEYS_MAX_K];
    float val1[PRODUCT_KEYS_MAX_K], val2[PRODUCT_KEYS_MAX_K];

    for (int j = 0; j < heads; j++) {
        const float *group = keys + (size_t)(shared_keys ? 0 : j) * 2 * n * half;
        const float *sub1 = group;                    /* C  (n, half) */
        const float *sub2 = group + (size_t)n * half; /* C' (n, half) */
        product_keys_score(scores1, query + (size_t)j * d_key, HK, sub1, rows, n, half);
        product_keys_score(scores2, query + (size_t)j * d_key + half, HK, sub2, rows, n, half);
        for (int t = 0; t < rows; t++) {
            topk_select(scores1 + (size_t)t * n, n, k, idx1, val1);
            topk_select(scores2 + (size_t)t * n, n, k, idx2, val2);
            size_t slot = ((size_t)t * heads + j) * k;
            product_keys_merge(val1, val2, k, pick_i, pick_j, score + slot);
            for (int s = 0; s < k; s++)
                expert[slot + s] = idx1[pick_i[s]] * n + idx2[pick_j[s]];
        }
    }
}
