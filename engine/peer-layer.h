/* The PEER layer: a pool of N = n² single-neuron experts e_i(x) = σ(u_iᵀx)·v_i, chosen per
 * token and head by exact product-key retrieval, mixed with softmax gates.
 *
 * Sizes used in the shape comments:
 *   BT tokens, D = d_model, h heads, k = topk, dk = d_key, HK = h·dk, n = √N sub-keys per side,
 *   G key groups (1 when shared, h otherwise).
 *
 * Parameters live in an arena owned by the caller (a model lays out every layer in one
 * allocation); this file gives the sizes and the typed views. Dense gradients use the same view
 * type; the expert tables' gradients are sparse (peer_sparse_grad). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peer-error.h"
#include "rng.h"
#include "thread-pool.h"

typedef enum {
    PEER_NORM_NONE,
    PEER_NORM_LAYER, /* per head over dk, then an affine per feature */
    PEER_NORM_BATCH, /* per feature over all BT tokens; running statistics in evaluation */
} peer_query_norm;

typedef enum {
    PEER_ACTIVATION_GELU, /* tanh approximation */
    PEER_ACTIVATION_RELU,
} peer_activation;

typedef enum {
    PEER_MODE_TRAIN, /* batch-norm uses batch statistics and updates the running ones */
    PEER_MODE_EVAL,  /* batch-norm uses the running statistics */
} peer_mode;

typedef enum {
    PEER_SELECT_RETRIEVE, /* product-key top-k */
    PEER_SELECT_REUSE,    /* keep the experts the previous forward chose (finite differences) */
} peer_select;

typedef struct {
    int d_model;      /* D */
    int n_experts;    /* N, a perfect square */
    int heads;        /* h */
    int topk;         /* k experts per head, 1 <= k <= n */
    int d_key;        /* dk, even: the query splits into two halves */
    bool shared_keys; /* one key group for all heads (the paper's text), else one per head */
    peer_query_norm query_norm;
    peer_activation activation;
    bool values_only; /* product-key memory (PKM): no u table, out = Σ gate·v */
} peer_layer_config;

#define PEER_BATCH_NORM_EPS 1e-5f
#define PEER_BATCH_NORM_MOMENTUM 0.1f
#define PEER_LAYER_NORM_EPS 1e-5f

/* Checks every field; on failure names the value and what would be valid. */
bool peer_layer_config_validate(const peer_layer_config *cfg, peer_error *err);
int peer_layer_side(const peer_layer_config *cfg);       /* n */
int peer_layer_key_groups(const peer_layer_config *cfg); /* G */
const char *peer_query_norm_name(peer_query_norm norm);  /* "none", "layer", "batch" */
const char *peer_activation_name(peer_activation act);   /* "gelu", "relu" */

/* ---- parameters ---------------------------------------------------------------------------- */

typedef enum {
    PEER_TENSOR_QUERY_WEIGHT,
    PEER_TENSOR_QUERY_BIAS,
    PEER_TENSOR_NORM_WEIGHT,
    PEER_TENSOR_NORM_BIAS,
    PEER_TENSOR_RUNNING_MEAN,
    PEER_TENSOR_RUNNING_VAR,
    PEER_TENSOR_KEYS,
    PEER_TENSOR_DOWN,
    PEER_TENSOR_UP,
    PEER_LAYER_N_TENSORS,
} peer_layer_tensor;

typedef struct {
    float *query_weight; /* (HK, D) */
    float *query_bias;   /* (HK) */
    float *norm_weight;  /* (HK)  absent (NULL) with PEER_NORM_NONE */
    float *norm_bias;    /* (HK)  absent with PEER_NORM_NONE */
    float *running_mean; /* (HK)  PEER_NORM_BATCH only; a buffer, not trained */
    float *running_var;  /* (HK)  PEER_NORM_BATCH only */
    float *keys;         /* (G, 2, n, dk/2): [g][0] is C, [g][1] is C' */
    float *down;         /* (N, D) u_i; absent when values_only */
    float *up;           /* (N, D) v_i; PKM's values */
} peer_layer_params;

/* Elements of one tensor; 0 when this configuration has no such tensor. */
size_t peer_layer_tensor_size(const peer_layer_config *cfg, peer_layer_tensor tensor);
/* The checkpoint name suffix: "query.weight", ..., "keys", "down", "up". */
const char *peer_layer_tensor_name(peer_layer_tensor tensor);
/* Running statistics: saved, never trained. */
bool peer_layer_tensor_is_buffer(peer_layer_tensor tensor);
/* The expert tables, whose gradients and optimiser state are sparse. */
bool peer_layer_tensor_is_expert_table(peer_layer_tensor tensor);
/* The field for a tensor, so callers can walk every tensor generically. */
float **peer_layer_params_field(peer_layer_params *params, peer_layer_tensor tensor);

/* Elements of all tensors together. */
size_t peer_layer_params_count(const peer_layer_config *cfg);
/* Points each present tensor at consecutive slices of arena, in enum order; absent ones NULL. */
void peer_layer_params_point(peer_layer_params *params, const peer_layer_config *cfg, float *arena);
/* Elements of the dense gradient: every tensor but the buffers and the expert tables. */
size_t peer_layer_grads_count(const peer_layer_config *cfg);
/* Like _params_point for the dense gradient; buffers and expert tables are NULL. */
void peer_layer_grads_point(peer_layer_params *grads, const peer_layer_config *cfg, float *arena);
/* Fresh weights: query N(0, 1/√D), norm weight 1 and bias 0, running var 1, sub-keys
 * N(0, 1/√(dk/2)), u_i N(0, 1/√D), v_i N(0, 1/√(h·k)). */
void peer_layer_params_init(peer_layer_params *params, const peer_layer_config *cfg, peer_rng *rng);

/* ---- sparse gradient of the expert tables --------------------------------------------------- */

typedef struct {
    int n_experts;
    int d_model;
    int n_rows;        /* rows touched since the last _zero */
    int capacity;      /* rows allocated */
    int32_t *rows;     /* (n_rows) expert ids, in first-touch order */
    int32_t *position; /* (N) index into rows, or -1 when untouched */
    float *down;       /* (n_rows, D) gradient of u_rows[r] */
    float *up;         /* (n_rows, D) gradient of v_rows[r] */
    int32_t *row_start; /* (N + 1) backward scratch: where each row's slots start */
    void *down_memory;  /* the allocations down and up point into, cache-line aligned */
    void *up_memory;
} peer_sparse_grad;

bool peer_sparse_grad_init(peer_sparse_grad *grad, int n_experts, int d_model, peer_error *err);
void peer_sparse_grad_free(peer_sparse_grad *grad);
/* Forgets the touched rows; costs O(rows touched), never O(N). */
void peer_sparse_grad_zero(peer_sparse_grad *grad);

/* ---- activations ----------------------------------------------------------------------------- */

typedef struct {
    int capacity;          /* tokens */
    peer_mode mode;        /* of the last forward */
    float *query;          /* (BT, HK) before the norm */
    float *query_normed;   /* (BT, HK) what retrieval sees */
    float *norm_mean;      /* batch: (HK); layer: (BT, h) */
    float *norm_rstd;      /* batch: (HK); layer: (BT, h) */
    int32_t *expert;       /* (BT, h, k) chosen experts, best first; row a = e / n, col b = e % n */
    float *score;          /* (BT, h, k) q¹·c_a + q²·c'_b */
    float *gate;           /* (BT, h, k) softmax of the head's k scores */
    float *preact;         /* (BT, h, k) u_iᵀx */
    float *dquery;         /* (BT, HK) backward scratch */
    float *dscore;         /* (BT, h, k) backward scratch */
    float *dpreact;        /* (BT, h, k) backward scratch */
    int32_t *row_slots;    /* (BT·h·k) backward scratch: the slots of each touched row */
    int32_t *slot_row;     /* (BT, h, k) backward scratch: the new gradient row the slot alone
                            * writes, or -1 */
    int32_t *pooled_rows;  /* (BT·h·k) backward scratch: rows summed over their slots */
    float *retrieve_scratch; /* sub-key scores of one block of tokens, per thread */
} peer_layer_acts;

bool peer_layer_acts_init(peer_layer_acts *acts, const peer_layer_config *cfg, int max_tokens,
                          peer_error *err);
void peer_layer_acts_free(peer_layer_acts *acts);

/* ---- forward and backward -------------------------------------------------------------------- */

/* out (BT, D) = Σ_heads Σ_chosen gate·σ(u·x)·v, overwritten. inp (BT, D). BT <= acts->capacity.
 * PEER_MODE_TRAIN with batch-norm updates params->running_mean/var. pool may be NULL. */
void peer_layer_forward(float *out, peer_layer_acts *acts, const float *inp,
                        peer_layer_params *params, const peer_layer_config *cfg, int BT,
                        peer_mode mode, peer_select select, thread_pool *pool);

/* Adds the gradients of the last forward: dinp (BT, D) +=, grads (dense tensors) +=, sparse +=.
 * dinp may be NULL when the input needs no gradient. */
void peer_layer_backward(float *dinp, peer_layer_params *grads, peer_sparse_grad *sparse,
                         peer_layer_acts *acts, const float *dout, const float *inp,
                         const peer_layer_params *params, const peer_layer_config *cfg, int BT,
                         thread_pool *pool);

/* The expert part alone, as forward and backward run it: the fused kernel over the experts and
 * gates in acts (a forward must have chosen them), and its backward with the sparse u and v
 * rows. What benchmarks time against the machine's row-read limit. */
void peer_layer_experts_forward(float *out, peer_layer_acts *acts, const float *inp,
                                const peer_layer_params *params, const peer_layer_config *cfg,
                                int BT, thread_pool *pool);
void peer_layer_experts_backward(float *dinp, peer_sparse_grad *sparse, peer_layer_acts *acts,
                                 const float *dout, const float *inp,
                                 const peer_layer_params *params, const peer_layer_config *cfg,
                                 int BT, thread_pool *pool);

/* Floating-point operations of one token's forward, two per multiply-add, by PEER.md's formulas
 * (query, sub-key scores, candidate sums, experts). The backward never repeats the sub-key
 * scoring, so at large n it costs less than the forward (docs/BENCHMARKS.md, section 2). */
double peer_layer_forward_flops_per_token(const peer_layer_config *cfg);

/* ---- memory ---------------------------------------------------------------------------------- */

typedef struct {
    size_t params;      /* weights and buffers */
    size_t grads;       /* dense gradients and the worst-case sparse gradient */
    size_t optimizer;   /* Adam moments for every trained tensor */
    size_t activations; /* per batch of `tokens` */
} peer_memory;

/* Bytes a training setup of this layer needs at `tokens` tokens per batch. */
void peer_layer_memory_estimate(const peer_layer_config *cfg, int tokens, peer_memory *out);
size_t peer_memory_total(const peer_memory *mem);
/* MemAvailable from /proc/meminfo (or physical pages when that is missing), in bytes. */
size_t peer_memory_available(void);
/* Refuses a setup whose estimate exceeds `available` bytes (pass peer_memory_available()),
 * naming the need, what is free, and the largest n_experts that fits. */
bool peer_layer_check_memory(const peer_layer_config *cfg, int tokens, size_t available,
                             peer_error *err);
