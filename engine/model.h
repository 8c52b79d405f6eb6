/* The byte-level decoder-only transformer of the model contract (ARCHITECTURE.md):
 *   x = tok_emb[byte] + pos_emb[t]; per block x += attn(ln1(x)); x += ffn(ln2(x));
 *   logits = ln_f(x) · tok_embᵀ; loss = mean next-byte cross-entropy (+ the MoE auxiliary loss).
 * One arena holds every parameter, a second the dense gradients, both with typed views; the
 * expert and memory tables of PEER and PKM blocks have sparse gradients. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dense-ffn.h"
#include "expert-stats.h"
#include "model-config.h"
#include "moe-layer.h"
#include "peer-layer.h"
#include "thread-pool.h"

typedef struct {
    float *ln1_weight;  /* (D) */
    float *ln1_bias;    /* (D) */
    float *qkv_weight;  /* (3D, D) rows q, then k, then v */
    float *qkv_bias;    /* (3D) */
    float *out_weight;  /* (D, D) */
    float *out_bias;    /* (D) */
    float *ln2_weight;  /* (D) */
    float *ln2_bias;    /* (D) */
    dense_ffn_params dense; /* FFN_DENSE */
    peer_layer_params peer; /* FFN_PEER and FFN_PKM */
    moe_params moe;         /* FFN_MOE */
} model_block_params;

typedef struct {
    float *tok_emb; /* (V, D) */
    float *pos_emb; /* (T, D) */
    model_block_params blocks[MODEL_MAX_LAYERS];
    float *lnf_weight; /* (D) */
    float *lnf_bias;   /* (D) */
} model_params;

/* One named tensor of the checkpoint contract, with its parameter and gradient views. */
typedef struct {
    char name[64];      /* "blocks.1.ffn.keys" */
    int n_dims;
    int64_t shape[4];
    size_t n_elements;
    float *param;
    float *grad;        /* NULL for buffers and for expert tables (sparse) */
    int layer;          /* -1 outside the blocks */
    bool buffer;        /* running statistics: saved, never trained */
    bool expert_table;  /* PEER u and v, PKM values: sparse gradient and optimiser state */
    bool no_decay;      /* biases, norms, embeddings of positions: no weight decay */
} model_tensor;

typedef struct {
    float *residual;     /* (L + 1, BT, D) the stream entering each block, and the last */
    float *ln1;          /* (L, BT, D) */
    float *ln1_mean;     /* (L, BT) */
    float *ln1_rstd;     /* (L, BT) */
    float *qkv;          /* (L, BT, 3D) */
    float *atty;         /* (L, BT, D) attention output before its projection */
    float *preatt;       /* (L, B, NH, T, T) */
    float *att;          /* (L, B, NH, T, T) */
    float *mid;          /* (L, BT, D) the stream after attention */
    float *ln2;          /* (L, BT, D) */
    float *ln2_mean;     /* (L, BT) */
    float *ln2_rstd;     /* (L, BT) */
    float *ffn_out;      /* (BT, D) scratch: one block's FFN output */
    float *lnf;          /* (BT, D) */
    float *lnf_mean;     /* (BT) */
    float *lnf_rstd;     /* (BT) */
    float *logits;       /* (BT, V) */
    float *probs;        /* (BT, V) */
    float *losses;       /* (BT) */
    dense_ffn_acts dense[MODEL_MAX_LAYERS];
    peer_layer_acts peer[MODEL_MAX_LAYERS];
    moe_acts moe[MODEL_MAX_LAYERS];
    /* backward scratch */
    float *dresidual;    /* (BT, D) */
    float *dln;          /* (BT, D) */
    float *dqkv;         /* (BT, 3D) */
    float *datty;        /* (BT, D) */
    float *dpreatt;      /* (B, NH, T, T) */
    float *datt;         /* (B, NH, T, T) */
    float *dlogits;      /* (BT, V) */
} model_acts;

typedef struct {
    model_config cfg;
    size_t n_params;
    float *params_memory;
    model_params params;
    size_t n_grads;
    float *grads_memory;
    model_params grads;
    peer_sparse_grad sparse[MODEL_MAX_LAYERS]; /* PEER and PKM blocks */
    int n_tensors;
    model_tensor *tensors;

    int batch, seq;      /* activation capacity: B sequences of T tokens */
    model_acts acts;
    int last_B, last_T;  /* shape of the last forward */
    peer_mode last_mode;
    bool has_targets;
    float moe_aux_weight; /* coefficient of the MoE auxiliary loss in the training loss */
    double last_ce;       /* mean cross-entropy of the last forward with targets */
    double last_aux;      /* Σ of the MoE blocks' auxiliary losses */
} peer_model;

/* Validates cfg, allocates parameters (initialised from seed), gradients and activations for
 * batches of up to B × T tokens (T <= context). */
peer_model *peer_model_new(const model_config *cfg, int B, int T, uint64_t seed, peer_error *err);
/* The same with the weights left zero, for a caller about to fill them (a checkpoint load):
 * initialising a million-expert table is seconds of work. */
peer_model *peer_model_new_uninitialised(const model_config *cfg, int B, int T, peer_error *err);
void peer_model_free(peer_model *model);

/* The contract's tensors of a config, in checkpoint order: names, shapes and flags, no storage
 * (param and grad are NULL). malloc'd; NULL when out of memory. Lets a loader check a file
 * against its config before allocating anything. */
model_tensor *peer_model_list_tensors(const model_config *cfg, int *count);

/* A tensor of the model by its checkpoint name, or NULL. */
const model_tensor *peer_model_find_tensor(const peer_model *model, const char *name);

/* Runs the model on tokens (B, T). With targets (B, T) computes the loss (returned: cross-entropy
 * plus moe_aux_weight × the auxiliary losses; model->last_ce holds the cross-entropy alone);
 * without, returns 0 and leaves the logits in acts.logits. */
double peer_model_forward(peer_model *model, const uint8_t *tokens, const uint8_t *targets, int B,
                          int T, peer_mode mode, thread_pool *pool);
/* Zeroes the dense gradients (one memset) and forgets the sparse rows. */
void peer_model_zero_grad(peer_model *model);
/* Adds the gradient of the last forward's loss (which needs targets). */
void peer_model_backward(peer_model *model, const uint8_t *tokens, const uint8_t *targets,
                         thread_pool *pool);

/* Floating-point operations of one token's forward at context T (two per multiply-add), with
 * retrieval. The trainer counts a training step as three forwards, the usual convention for
 * comparing runs at equal compute; for PEER blocks the true backward is lighter, since it never
 * repeats the sub-key scoring. */
double peer_model_forward_flops_per_token(const model_config *cfg, int T);

/* For PEER and PKM blocks: the block's expert statistics accumulate the last forward's
 * choices. stats[l] may be NULL to skip a layer. */
void peer_model_accumulate_stats(const peer_model *model, expert_stats *const *stats);
