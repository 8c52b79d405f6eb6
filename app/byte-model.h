/* The command-line demo's model: a byte-level next-byte predictor whose only nonlinearity is
 * one PEER layer.
 *
 *   x      = W_in · [emb(b_{t-3}); emb(b_{t-2}); emb(b_{t-1})] + b_in
 *   h      = x + peer(x)
 *   logits = W_out · h + b_out,   loss = cross-entropy against b_t
 *
 * Sizes: BT tokens, V = 256 bytes, C = BYTE_MODEL_CONTEXT, D = d_model.
 * Dense parameters live in one arena and their gradients in a second with the same layout;
 * the expert tables get sparse gradients and sparse Adam. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "adam.h"
#include "peer-layer.h"

#define BYTE_MODEL_VOCAB 256
#define BYTE_MODEL_CONTEXT 3

typedef struct {
    float *tok_emb;    /* (V, D) */
    float *in_weight;  /* (D, C·D) */
    float *in_bias;    /* (D) */
    float *out_weight; /* (V, D) */
    float *out_bias;   /* (V) */
} byte_model_weights;

typedef struct {
    peer_layer_config cfg; /* cfg.d_model is D */
    int max_tokens;

    float *params_memory;      /* the dense weights, then the PEER layer's tensors */
    size_t n_params;
    byte_model_weights params;
    peer_layer_params peer;

    float *grads_memory;       /* the dense weights, then the PEER layer's dense tensors */
    size_t n_grads;
    byte_model_weights grads;
    peer_layer_params peer_grads;
    peer_sparse_grad sparse;   /* gradient of the expert tables */

    float *m_memory;           /* (n_grads) Adam moments, laid out like grads_memory */
    float *v_memory;           /* (n_grads) */
    float *m_down, *v_down;    /* (N, D) */
    float *m_up, *v_up;        /* (N, D) */

    peer_layer_acts peer_acts;
    float *embedded;           /* (BT, C·D) */
    float *x;                  /* (BT, D) input of the PEER layer */
    float *peer_out;           /* (BT, D) */
    float *residual;           /* (BT, D) x + peer(x) */
    float *logits;             /* (BT, V) */
    float *probs;              /* (BT, V) */
    float *losses;             /* (BT) nats */
    float *dlogits;            /* (BT, V) */
    float *dresidual;          /* (BT, D) */
    float *dx;                 /* (BT, D) */
    float *dembedded;          /* (BT, C·D) */
} byte_model;

/* Lays out and initialises every tensor from seed; BT <= max_tokens in every later call. */
bool byte_model_init(byte_model *model, const peer_layer_config *cfg, int max_tokens,
                     uint64_t seed, peer_error *err);
void byte_model_free(byte_model *model);

/* Trainable parameters: the dense ones, and the expert tables' 2·N·D. */
size_t byte_model_dense_count(const byte_model *model);
size_t byte_model_expert_count(const byte_model *model);

/* context (BT, C) bytes, the oldest first; targets (BT) or NULL. Leaves model->logits and
 * model->probs; returns the mean loss in nats, or 0 when targets is NULL. */
float byte_model_forward(byte_model *model, const uint8_t *context, const uint8_t *targets,
                         int BT, peer_mode mode, thread_pool *pool);

void byte_model_zero_grad(byte_model *model);
/* Adds the gradient of the mean loss of the last forward, which must have had these arguments
 * and PEER_MODE_TRAIN. */
void byte_model_backward(byte_model *model, const uint8_t *context, const uint8_t *targets,
                         int BT, thread_pool *pool);
/* One Adam step: dense for every trained dense tensor, sparse on the expert rows touched since
 * the last byte_model_zero_grad. step counts from 1. */
bool byte_model_update(byte_model *model, const adam_config *dense, const adam_config *experts,
                       int step, thread_pool *pool, peer_error *err);
