/* The fused expert kernel: gather u_i and v_i, dot, activation, gate and weighted sum, one token
 * at a time, so the gathered (BT, h, k, D) tensor never exists. Internal to the engine. */
#pragma once

#include <stdint.h>

#include "activation.h"
#include "peer-layer.h"

static inline float expert_activation(float z, peer_activation act)
{
    return act == PEER_ACTIVATION_RELU ? relu(z) : gelu(z);
}

static inline float expert_activation_derivative(float z, peer_activation act)
{
    return act == PEER_ACTIVATION_RELU ? relu_derivative(z) : gelu_derivative(z);
}

/* Σ a[i]·b[i] in a fixed order (sixteen running sums), so every caller gets the same bits. */
float expert_dot(const float *a, const float *b, int n);

/* out (rows, D) = Σ_slots gate·σ(u·x)·v over the rows tokens starting at x (rows, D); expert,
 * gate (rows, h·k); preact (rows, h·k) written. */
void expert_forward_tokens(float *out, float *preact, const float *x, const int32_t *expert,
                           const float *gate, const float *down, const float *up, int rows,
                           int slots_per_token, int D, peer_activation act);

/* The gradient rows of u and v that one slot alone contributes to, written by the backward kernel
 * while that slot's input and output-gradient rows are in L1. */
typedef struct {
    const float *inp;        /* (rows, D) the tokens' layer input */
    const int32_t *slot_row; /* (rows, h·k) the new sparse-gradient row slot s alone owns, or -1 */
    float *down;             /* (sparse rows, D) gradient of u; NULL without u */
    float *up;               /* (sparse rows, D) gradient of v */
} expert_owned_rows;

/* For the same rows: dinp (rows, D) += Σ dz·u (dinp may be NULL); dpreact = dz = gate·σ'·(dout·v);
 * dscore = softmax backward of the gate gradients σ·(dout·v), per head of k slots. Each owned row
 * (owned may be NULL) is written whole: up = gate·σ(z)·dout, down = dz·inp. */
void expert_backward_tokens(float *dinp, float *dpreact, float *dscore, const float *dout,
                            const float *preact, const int32_t *expert, const float *gate,
                            const float *down, const float *up, const expert_owned_rows *owned,
                            int rows, int heads, int topk, int D, peer_activation act);

/* dst (n) = alpha·src with streaming stores where dst allows them: for a gradient row written once
 * and read only after the whole backward, its cache lines are never read in first. Callers end
 * their task with expert_stores_fence(). */
void expert_store_scaled(float *dst, float alpha, const float *src, int n);
void expert_stores_fence(void);
