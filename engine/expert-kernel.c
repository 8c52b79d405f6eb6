#include "expert-kernel.h"

#include <string.h>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#define EXPERT_LANES 16
typedef float expert_lanes __attribute__((vector_size(EXPERT_LANES * sizeof(float))));
/* How many slots ahead the rows of the next experts are requested from memory: at N = 1024²
 * the tables span gigabytes and every row is a cache miss. */
#define EXPERT_PREFETCH_DISTANCE 4

/* The kernels' own copy, always inlined: in a -fPIC build the exported expert_dot stays a call,
 * one per slot. Both sum in the same order, so callers reproduce the kernels' bits. */
static inline __attribute__((always_inline)) float dot_lanes(const float *a, const float *b, int n)
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

float expert_dot(const float *a, const float *b, int n)
{
    return dot_lanes(a, b, n);
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

static inline __attribute__((always_inline)) void prefetch_slot(const int32_t *expert, int slot,
                                                                 int total, const float *down,
                                                                 const float *up, int D)
{
    if (slot < total) {
        prefetch_row(table_row(down, expert[slot], D), D);
        prefetch_row(up + (size_t)expert[slot] * D, D);
    }
}

/* dot_lanes (a0, b) and (a1, b) in one loop, summed exactly as dot_lanes sums them (n a multiple
 * of EXPERT_LANES), while the four rows a pair of slots further on will need are requested a
 * line at a time: spread over the loop instead of in one burst, the requests keep the memory
 * system busy while the core computes. */
static inline __attribute__((always_inline)) void dot_pair(float *dot0, float *dot1,
                                                          const float *a0, const float *a1,
                                                          const float *b, int n, const float *p0,
                                                          const float *p1, const float *p2,
                                                          const float *p3)
{
    /* Vector types keep the sixteen running sums in registers whatever the code around them:
     * lane l still sums a[i + l]·b[i + l] in the order dot_lanes does. */
    expert_lanes lanes0 = { 0 }, lanes1 = { 0 };
    for (int i = 0; i < n; i += EXPERT_LANES) {
        __builtin_prefetch(p0 + i, 0, 0);
        __builtin_prefetch(p1 + i, 0, 0);
        __builtin_prefetch(p2 + i, 0, 0);
        __builtin_prefetch(p3 + i, 0, 0);
        expert_lanes x0, x1, y;
        memcpy(&x0, a0 + i, sizeof x0);
        memcpy(&x1, a1 + i, sizeof x1);
        memcpy(&y, b + i, sizeof y);
        lanes0 += x0 * y;
        lanes1 += x1 * y;
    }
    float sum0 = 0.0f, sum1 = 0.0f;
    for (int l = 0; l < EXPERT_LANES; l++) {
        sum0 += lanes0[l];
        sum1 += lanes1[l];
    }
    *dot0 = sum0;
    *dot1 = sum1;
}

/* The slot whose rows a pair iteration requests: EXPERT_PREFETCH_DISTANCE ahead, or, past the
 * end, the slot itself again. */
static inline int slot_ahead(int slot, int total)
{
    return slot + EXPERT_PREFETCH_DISTANCE < total ? slot + EXPERT_PREFETCH_DISTANCE : slot;
}

/* Slots are taken two at a time: the two dot products and activations are independent, so the
 * core works on both while their rows arrive, and the output row is read and written once per
 * pair. */
void expert_forward_tokens(float *out, float *preact, const float *x, const int32_t *expert,
                           const float *gate, const float *down, const float *up, int rows,
                           int slots_per_token, int D, peer_activation act)
{
    int total = rows * slots_per_token;
    bool spread_prefetch = down && D % EXPERT_LANES == 0;
    for (int s = 0; s < EXPERT_PREFETCH_DISTANCE; s++)
        prefetch_slot(expert, s, total, down, up, D);
    for (int t = 0; t < rows; t++) {
        const float *xt = x + (size_t)t * D;
        float *restrict acc = out + (size_t)t * D;
        memset(acc, 0, (size_t)D * sizeof(float));
        int first = t * slots_per_token, end = first + slots_per_token;
        int slot = first;
        /* With u and whole vector blocks, the dot products request the rows ahead themselves. */
        for (; spread_prefetch && slot + 1 < end; slot += 2) {
            size_t e0 = (size_t)expert[slot], e1 = (size_t)expert[slot + 1];
            size_t f0 = (size_t)expert[slot_ahead(slot, total)] * D;
            size_t f1 = (size_t)expert[slot_ahead(slot + 1, total)] * D;
            float z0, z1;
            dot_pair(&z0, &z1, down + e0 * D, down + e1 * D, xt, D, down + f0, up + f0,
                     down + f1, up + f1);
            preact[slot] = z0;
            preact[slot + 1] = z1;
            float w0 = gate[slot] * expert_activation(z0, act);
            float w1 = gate[slot + 1] * expert_activation(z1, act);
            const float *restrict v0 = up + e0 * D, *restrict v1 = up + e1 * D;
            for (int i = 0; i < D; i++)
                acc[i] += w0 * v0[i] + w1 * v1[i];
        }
        for (; slot + 1 < end; slot += 2) {
            prefetch_slot(expert, slot + EXPERT_PREFETCH_DISTANCE, total, down, up, D);
            prefetch_slot(expert, slot + 1 + EXPERT_PREFETCH_DISTANCE, total, down, up, D);
            size_t e0 = (size_t)expert[slot], e1 = (size_t)expert[slot + 1];
            /* Without u (PKM) the "activation" is 1 and the value is added by its gate alone. */
            float z0 = down ? dot_lanes(down + e0 * D, xt, D) : 0.0f;
            float z1 = down ? dot_lanes(down + e1 * D, xt, D) : 0.0f;
            preact[slot] = z0;
            preact[slot + 1] = z1;
            float w0 = down ? gate[slot] * expert_activation(z0, act) : gate[slot];
            float w1 = down ? gate[slot + 1] * expert_activation(z1, act) : gate[slot + 1];
            const float *restrict v0 = up + e0 * D, *restrict v1 = up + e1 * D;
            for (int i = 0; i < D; i++)
                acc[i] += w0 * v0[i] + w1 * v1[i];
        }
        for (; slot < end; slot++) {
            prefetch_slot(expert, slot + EXPERT_PREFETCH_DISTANCE, total, down, up, D);
            size_t e = (size_t)expert[slot];
            float z = down ? dot_lanes(down + e * D, xt, D) : 0.0f;
            preact[slot] = z;
            float weight = down ? gate[slot] * expert_activation(z, act) : gate[slot];
            axpy(acc, weight, up + e * D, D);
        }
    }
}

void expert_store_scaled(float *dst, float alpha, const float *src, int n)
{
    /* Whole cache lines per instruction where the vector units allow: beside the table reads,
     * four 16-byte streaming stores per line made the backward kernel a fifth slower than one. */
#if defined(__AVX512F__)
    if (((uintptr_t)dst & 63) == 0 && n % 16 == 0) {
        __m512 a = _mm512_set1_ps(alpha);
        for (int i = 0; i < n; i += 16)
            _mm512_stream_ps(dst + i, _mm512_mul_ps(a, _mm512_loadu_ps(src + i)));
        return;
    }
#elif defined(__AVX__)
    if (((uintptr_t)dst & 31) == 0 && n % 8 == 0) {
        __m256 a = _mm256_set1_ps(alpha);
        for (int i = 0; i < n; i += 8)
            _mm256_stream_ps(dst + i, _mm256_mul_ps(a, _mm256_loadu_ps(src + i)));
        return;
    }
#endif
#if defined(__SSE2__)
    if (((uintptr_t)dst & 15) == 0 && n % 4 == 0) {
        __m128 a = _mm_set1_ps(alpha);
        for (int i = 0; i < n; i += 4)
            _mm_stream_ps(dst + i, _mm_mul_ps(a, _mm_loadu_ps(src + i)));
        return;
    }
#endif
    for (int i = 0; i < n; i++)
        dst[i] = alpha * src[i];
}

void expert_stores_fence(void)
{
#if defined(__SSE2__)
    _mm_sfence();
#endif
}

/* One slot's scalars: dz and the gate gradient σ·(dout·v), kept raw in dscore until the head's
 * softmax backward; an owned gradient row is written while dout and x are in L1. */
static inline __attribute__((always_inline)) float backward_slot(
    int slot, float dy_v, const float *dy, const float *xt, float *dpreact, float *dscore,
    const float *preact, const float *gate, bool has_down, const expert_owned_rows *owned, int D,
    peer_activation act)
{
    float z = preact[slot];
    float dgate = has_down ? expert_activation(z, act) * dy_v : dy_v;
    float dz = has_down ? gate[slot] * dy_v * expert_activation_derivative(z, act) : 0.0f;
    dpreact[slot] = dz;
    dscore[slot] = dgate;
    int32_t r = owned ? owned->slot_row[slot] : -1;
    if (r >= 0) {
        float gate_act = has_down ? gate[slot] * expert_activation(z, act) : gate[slot];
        expert_store_scaled(owned->up + (size_t)r * D, gate_act, dy, D);
        if (has_down)
            expert_store_scaled(owned->down + (size_t)r * D, dz, xt, D);
    }
    return dz;
}

/* Slots two at a time, as in the forward. */
void expert_backward_tokens(float *dinp, float *dpreact, float *dscore, const float *dout,
                            const float *preact, const int32_t *expert, const float *gate,
                            const float *down, const float *up, const expert_owned_rows *owned,
                            int rows, int heads, int topk, int D, peer_activation act)
{
    int per_token = heads * topk;
    int total = rows * per_token;
    bool has_down = down != NULL;
    for (int s = 0; s < EXPERT_PREFETCH_DISTANCE; s++)
        prefetch_slot(expert, s, total, down, up, D);
    for (int t = 0; t < rows; t++) {
        const float *dy = dout + (size_t)t * D;
        const float *xt = owned ? owned->inp + (size_t)t * D : NULL;
        float *restrict dx = dinp && has_down ? dinp + (size_t)t * D : NULL;
        int first = t * per_token, end = first + per_token;
        int slot = first;
        for (; slot + 1 < end; slot += 2) {
            size_t e0 = (size_t)expert[slot], e1 = (size_t)expert[slot + 1];
            float dy_v0, dy_v1;
            if (D % EXPERT_LANES == 0) {
                size_t f0 = (size_t)expert[slot_ahead(slot, total)] * D;
                size_t f1 = (size_t)expert[slot_ahead(slot + 1, total)] * D;
                const float *u0 = down ? down + f0 : up + f0, *u1 = down ? down + f1 : up + f1;
                dot_pair(&dy_v0, &dy_v1, up + e0 * D, up + e1 * D, dy, D, u0, up + f0, u1,
                         up + f1);
            } else {
                prefetch_slot(expert, slot + EXPERT_PREFETCH_DISTANCE, total, down, up, D);
                prefetch_slot(expert, slot + 1 + EXPERT_PREFETCH_DISTANCE, total, down, up, D);
                dy_v0 = dot_lanes(up + e0 * D, dy, D);
                dy_v1 = dot_lanes(up + e1 * D, dy, D);
            }
            float dz0 = backward_slot(slot, dy_v0, dy, xt, dpreact, dscore, preact, gate,
                                      has_down, owned, D, act);
            float dz1 = backward_slot(slot + 1, dy_v1, dy, xt, dpreact, dscore, preact, gate,
                                      has_down, owned, D, act);
            if (dx) {
                const float *restrict u0 = down + e0 * D, *restrict u1 = down + e1 * D;
                for (int i = 0; i < D; i++)
                    dx[i] += dz0 * u0[i] + dz1 * u1[i];
            }
        }
        for (; slot < end; slot++) {
            prefetch_slot(expert, slot + EXPERT_PREFETCH_DISTANCE, total, down, up, D);
            size_t e = (size_t)expert[slot];
            float dz = backward_slot(slot, dot_lanes(up + e * D, dy, D), dy, xt, dpreact, dscore,
                                     preact, gate, has_down, owned, D, act);
            if (dx)
                axpy(dx, dz, down + e * D, D);
        }
        /* Softmax backward per head: dscore = gate·(dgate − Σ gate·dgate). */
        for (int j = 0; j < heads; j++) {
            int base = first + j * topk;
            float weighted = 0.0f;
            for (int s = 0; s < topk; s++)
                weighted += gate[base + s] * dscore[base + s];
            for (int s = 0; s < topk; s++)
                dscore[base + s] = gate[base + s] * (dscore[base + s] - weighted);
        }
    }
    if (owned)
        expert_stores_fence();
}
