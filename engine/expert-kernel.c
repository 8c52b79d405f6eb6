#include "expert-kernel.h"

#include <string.h>

#define EXPERT_LANES 16
/* How many slots ahead the rows of the next experts are requested from memory: at N = 1024²
 * the tables span gigabytes and every row is a cache miss. */
#define EXPERT_PREFETCH_DISTANCE 8

float expert_dot(const float *a, const float *b, int n)
{
    float lanes[EXPERT_LANES] = { 0 };
    int i = 0;
    for (; i + EXPERT_LANES <= n; i += EXPERT_LANES)
        for (int l = 0; l < EXPERT_LANES; l++)
            lanes[l] += a[i + l] * b[i + l];
    float sum = 0.0f;
    for (; i < n; i++)
        sum += a[i] * b[i];
    for (int l = 0; l < EXPERT_LANES; l++)
        sum += lanes[l];
    return sum;
}

static inline void axpy(float *restrict y, float alpha, const float *restrict x, int n)
{
    for (int i = 0; i < n; i++)
        y[i] += alpha * x[i];
}

/* Always inlined: GCC finds a function that only prefetches free of side effects and, from -O2
 * on, deletes every call to it. */
static inline __attribute__((always_inline)) void prefetch_row(const float *row, int D)
{
    if (!row)
        return;
    for (int i = 0; i < D; i += 16)
        __builtin_prefetch(row + i, 0, 0);
}

/* Row e of a table that may be absent (PKM has no u table). */
static inline const float *table_row(const float *table, int32_t e, int D)
{
    return table ? table + (size_t)e * D : NULL;
}

void expert_forward_tokens(float *out, float *preact, const float *x, const int32_t *expert,
                           const float *gate, const float *down, const float *up, int rows,
                           int slots_per_token, int D, peer_activation act)
{
    int total = rows * slots_per_token;
    for (int s = 0; s < EXPERT_PREFETCH_DISTANCE && s < total; s++) {
        prefetch_row(table_row(down, expert[s], D), D);
        prefetch_row(up + (size_t)expert[s] * D, D);
    }
    for (int t = 0; t < rows; t++) {
        const float *xt = x + (size_t)t * D;
        float *acc = out + (size_t)t * D;
        memset(acc, 0, (size_t)D * sizeof(float));
        for (int s = 0; s < slots_per_token; s++) {
            int slot = t * slots_per_token + s;
            if (slot + EXPERT_PREFETCH_DISTANCE < total) {
                int32_t ahead = expert[slot + EXPERT_PREFETCH_DISTANCE];
                prefetch_row(table_row(down, ahead, D), D);
                prefetch_row(up + (size_t)ahead * D, D);
            }
            size_t e = (size_t)expert[slot];
            /* Without u (PKM) the "activation" is 1 and the value is added by its gate alone. */
            float z = down ? expert_dot(down + e * D, xt, D) : 0.0f;
            preact[slot] = z;
            float weight = down ? gate[slot] * expert_activation(z, act) : gate[slot];
            axpy(acc, weight, up + e * D, D);
        }
    }
}

void expert_backward_tokens(float *dinp, float *dpreact, float *dscore, const float *dout,
                            const float *preact, const int32_t *expert, const float *gate,
                            const float *down, const float *up, int rows, int heads, int topk,
                            int D, peer_activation act)
{
    int per_token = heads * topk;
    int total = rows * per_token;
    for (int s = 0; s < EXPERT_PREFETCH_DISTANCE && s < total; s++) {
        prefetch_row(table_row(down, expert[s], D), D);
        prefetch_row(up + (size_t)expert[s] * D, D);
    }
    for (int t = 0; t < rows; t++) {
        const float *dy = dout + (size_t)t * D;
        for (int j = 0; j < heads; j++) {
            int base = t * per_token + j * topk;
            float weighted = 0.0f; /* Σ_s gate_s · dgate_s, for the softmax backward */
            for (int s = 0; s < topk; s++) {
                int slot = base + s;
                if (slot + EXPERT_PREFETCH_DISTANCE < total) {
                    int32_t ahead = expert[slot + EXPERT_PREFETCH_DISTANCE];
                    prefetch_row(table_row(down, ahead, D), D);
                    prefetch_row(up + (size_t)ahead * D, D);
                }
                size_t e = (size_t)expert[slot];
                float z = preact[slot];
                float dy_v = expert_dot(up + e * D, dy, D);
                float dgate = down ? expert_activation(z, act) * dy_v : dy_v;
                float dz = down ? gate[slot] * dy_v * expert_activation_derivative(z, act) : 0.0f;
                dpreact[slot] = dz;
                dscore[slot] = dgate; /* finished below, once the head's sum is known */
                weighted += gate[slot] * dgate;
                if (dinp && down)
                    axpy(dinp + (size_t)t * D, dz, down + e * D, D);
            }
            for (int s = 0; s < topk; s++)
                dscore[base + s] = gate[base + s] * (dscore[base + s] - weighted);
        }
    }
}
