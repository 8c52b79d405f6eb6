/* The model config of the checkpoint contract (ARCHITECTURE.md): a byte-level GPT-2-shaped
 * transformer whose blocks each choose their feed-forward kind. Parsed from and written to the
 * JSON that checkpoints carry in their metadata. */
#pragma once

#include <stdbool.h>

#include "peer-error.h"
#include "peer-layer.h"

#define MODEL_MAX_LAYERS 64

typedef enum {
    FFN_DENSE, /* fc → GELU → proj */
    FFN_PEER,  /* PEER layer */
    FFN_PKM,   /* product-key memory: PEER's retrieval, out = Σ gate·value */
    FFN_MOE,   /* token-choice top-k over dense experts */
} ffn_kind;

typedef struct {
    ffn_kind kind;
    int d_ff;               /* dense and moe: hidden size F */
    int moe_experts;        /* moe: E */
    int moe_topk;           /* moe: experts per token */
    /* peer and pkm: n_experts (pkm's "n_memories"), heads, topk, d_key, shared_keys,
     * query_norm; activation for peer only. d_model is copied from the model. */
    peer_layer_config peer;
} ffn_config;

typedef struct {
    int vocab_size; /* 256: bytes */
    int context;    /* T */
    int d_model;    /* D */
    int n_layers;   /* L */
    int n_heads;    /* attention heads */
    ffn_config layers[MODEL_MAX_LAYERS];
} model_config;

const char *ffn_kind_name(ffn_kind kind); /* "dense", "peer", "pkm", "moe" */

/* Checks every field of every layer; the message names the layer, the field, the value and what
 * would be valid. */
bool model_config_validate(const model_config *cfg, peer_error *err);

/* Parses the contract's JSON (strict: unknown keys, wrong types and missing fields are errors
 * that name the key and its layer) and validates it. */
bool model_config_from_json(model_config *cfg, const char *json, peer_error *err);

/* The contract's JSON for cfg, compact, keys in the contract's order; malloc'd, NULL when out of
 * memory. Round-trips through model_config_from_json. */
char *model_config_to_json(const model_config *cfg);
