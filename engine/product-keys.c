#include "product-keys.h"

#include <cblas.h>

#include "thread-pool.h"
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#define PRODUCT_KEYS_MAX_K 1024

/* Inserts v at index i into the kept list (count, best first); returns the new count. */
static inline int topk_insert(float v, int i, int k, int count, int32_t *idx, float *val)
{
    if (count == k) {
        /* Strictly better than the worst kept: an equal later value loses the tie. */
        if (!(v > val[k - 1]))
            return count;
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
    return count + 1;
}

static void topk_scan(const float *values, int n, int k, int32_t *idx, float *val)
{
    int count = 0;
    for (int i = 0; i < n; i++)
        count = topk_insert(values[i], i, k, count, idx, val);
}

/* Values are split into TOPK_GROUPS interleaved groups (i mod TOPK_GROUPS). The k-th largest of
 * the groups' maxima is a floor: at least k values reach it, so nothing below it can be among
 * the k largest. Only values at or above it go through the insertion, in index order, which
 * keeps the tie rule. Both passes are plain vector loops. */
#define TOPK_GROUPS 64
#define TOPK_BLOCK 16

/* Bit l set when block[l] >= floor, for a block of TOPK_BLOCK values. */
static inline unsigned reaching_floor(const float *block, float floor)
{
#if defined(__AVX512F__)
    return _mm512_cmp_ps_mask(_mm512_loadu_ps(block), _mm512_set1_ps(floor), _CMP_GE_OQ);
#elif defined(__AVX__)
    __m256 f = _mm256_set1_ps(floor);
    unsigned lo = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(block), f, _CMP_GE_OQ));
    unsigned hi =
        (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(block + 8), f, _CMP_GE_OQ));
    return lo | hi << 8;
#elif defined(__SSE2__)
    __m128 f = _mm_set1_ps(floor);
    unsigned mask = 0;
    for (int q = 0; q < 4; q++)
        mask |= (unsigned)_mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(block + 4 * q), f)) << 4 * q;
    return mask;
#else
    unsigned mask = 0;
    for (int l = 0; l < TOPK_BLOCK; l++)
        mask |= (unsigned)(block[l] >= floor) << l;
    return mask;
#endif
}

void topk_select(const float *values, int n, int k, int32_t *idx, float *val)
{
    if (k > TOPK_GROUPS / 2 || n < 4 * TOPK_GROUPS) {
        topk_scan(values, n, k, idx, val);
        return;
    }
    float group_max[TOPK_GROUPS];
    int unordered = 0; /* a NaN anywhere: the plain scan defines what happens */
    memcpy(group_max, values, sizeof group_max);
    int full = n / TOPK_GROUPS * TOPK_GROUPS;
    for (int i = 0; i < full; i += TOPK_GROUPS)
        for (int g = 0; g < TOPK_GROUPS; g++) {
            float v = values[i + g];
            unordered |= v != v;
            group_max[g] = v > group_max[g] ? v : group_max[g];
        }
    for (int i = full; i < n; i++)
        unordered |= values[i] != values[i];
    if (unordered) {
        topk_scan(values, n, k, idx, val);
        return;
    }
    int32_t floor_idx[TOPK_GROUPS];
    float floor_val[TOPK_GROUPS];
    topk_scan(group_max, TOPK_GROUPS, k, floor_idx, floor_val);
    float floor = floor_val[k - 1];

    int count = 0, i = 0;
    for (; i + TOPK_BLOCK <= n; i += TOPK_BLOCK) {
        /* Set bits in index order, so the insertion sees the values as the plain scan would. */
        for (unsigned reach = reaching_floor(values + i, floor); reach; reach &= reach - 1) {
            int l = __builtin_ctz(reach);
            count = topk_insert(values[i + l], i + l, k, count, idx, val);
        }
    }
    for (; i < n; i++)
        if (values[i] >= floor)
            count = topk_insert(values[i], i, k, count, idx, val);
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
