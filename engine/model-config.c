#include "model-config.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VOCAB_SIZE 256
#define MAX_CONTEXT 65536
#define MAX_D_MODEL 65536
#define MAX_D_FF (1 << 20)
#define MAX_MOE_EXPERTS 1024

const char *ffn_kind_name(ffn_kind kind)
{
    switch (kind) {
    case FFN_DENSE: return "dense";
    case FFN_PEER: return "peer";
    case FFN_PKM: return "pkm";
    case FFN_MOE: return "moe";
    }
    return "unknown";
}

/* ---- validation ------------------------------------------------------------------------------ */

/* The divisors of d_model nearest to n_heads, below and above (0 when there is none). */
static void nearest_divisors(int d_model, int n_heads, int *below, int *above)
{
    *below = 0;
    *above = 0;
    for (int h = n_heads - 1 < d_model ? n_heads - 1 : d_model; h >= 1; h--)
        if (d_model % h == 0) {
            *below = h;
            break;
        }
    for (int h = n_heads + 1; h <= d_model; h++)
        if (d_model % h == 0) {
            *above = h;
            break;
        }
}

static bool validate_heads(const model_config *cfg, peer_error *err)
{
    if (cfg->n_heads < 1)
        return peer_error_set(err,
                              "n_heads = %d: attention needs at least 1 head; use a divisor of "
                              "d_model = %d",
                              cfg->n_heads, cfg->d_model);
    if (cfg->d_model % cfg->n_heads == 0)
        return true;
    int below, above;
    nearest_divisors(cfg->d_model, cfg->n_heads, &below, &above);
    if (above)
        return peer_error_set(err,
                              "n_heads = %d does not divide d_model = %d (each head takes "
                              "d_model / n_heads features): use a divisor of %d such as %d or %d",
                              cfg->n_heads, cfg->d_model, cfg->d_model, below, above);
    return peer_error_set(err,
                          "n_heads = %d does not divide d_model = %d (each head takes "
                          "d_model / n_heads features): use a divisor of %d such as %d",
                          cfg->n_heads, cfg->d_model, cfg->d_model, below);
}

static bool validate_d_ff(int layer, const char *kind, int d_ff, peer_error *err)
{
    if (d_ff < 1 || d_ff > MAX_D_FF)
        return peer_error_set(err, "layer %d (%s): d_ff = %d is out of range: use 1 to %d",
                              layer, kind, d_ff, MAX_D_FF);
    return true;
}

static bool validate_moe(int layer, const ffn_config *ffn, peer_error *err)
{
    if (ffn->moe_experts < 1 || ffn->moe_experts > MAX_MOE_EXPERTS)
        return peer_error_set(err, "layer %d (moe): n_experts = %d is out of range: use 1 to %d",
                              layer, ffn->moe_experts, MAX_MOE_EXPERTS);
    if (ffn->moe_topk < 1 || ffn->moe_topk > ffn->moe_experts)
        return peer_error_set(err,
                              "layer %d (moe): topk = %d is out of range: each token goes to 1 "
                              "to n_experts = %d experts",
                              layer, ffn->moe_topk, ffn->moe_experts);
    return validate_d_ff(layer, "moe", ffn->d_ff, err);
}

/* The PEER layer's own checks. A pkm layer calls its pool "n_memories" and has no activation,
 * so its messages say so. */
static bool validate_retrieval(int layer, const ffn_config *ffn, int d_model, peer_error *err)
{
    peer_layer_config peer = ffn->peer;
    peer.d_model = d_model;
    if (ffn->kind == FFN_PKM)
        peer.activation = PEER_ACTIVATION_GELU;
    peer_error cause;
    if (peer_layer_config_validate(&peer, &cause))
        return true;
    const char *kind = ffn_kind_name(ffn->kind);
    const char *pool = strstr(cause.message, "n_experts");
    if (ffn->kind == FFN_PKM && pool)
        return peer_error_set(err, "layer %d (%s): %.*sn_memories%s", layer, kind,
                              (int)(pool - cause.message), cause.message,
                              pool + strlen("n_experts"));
    return peer_error_set(err, "layer %d (%s): %s", layer, kind, cause.message);
}

bool model_config_validate(const model_config *cfg, peer_error *err)
{
    if (cfg->vocab_size != VOCAB_SIZE)
        return peer_error_set(err,
                              "vocab_size = %d: the model reads and predicts bytes, so the "
                              "vocabulary must be %d",
                              cfg->vocab_size, VOCAB_SIZE);
    if (cfg->context < 1 || cfg->context > MAX_CONTEXT)
        return peer_error_set(err, "context = %d is out of range: use 1 to %d bytes",
                              cfg->context, MAX_CONTEXT);
    if (cfg->d_model < 1 || cfg->d_model > MAX_D_MODEL)
        return peer_error_set(err, "d_model = %d is out of range: use 1 to %d", cfg->d_model,
                              MAX_D_MODEL);
    if (!validate_heads(cfg, err))
        return false;
    if (cfg->n_layers < 1 || cfg->n_layers > MODEL_MAX_LAYERS)
        return peer_error_set(err, "n_layers = %d is out of range: use 1 to %d", cfg->n_layers,
                              MODEL_MAX_LAYERS);
    for (int l = 0; l < cfg->n_layers; l++) {
        const ffn_config *ffn = &cfg->layers[l];
        bool ok;
        switch (ffn->kind) {
        case FFN_DENSE: ok = validate_d_ff(l, "dense", ffn->d_ff, err); break;
        case FFN_MOE: ok = validate_moe(l, ffn, err); break;
        case FFN_PEER:
        case FFN_PKM: ok = validate_retrieval(l, ffn, cfg->d_model, err); break;
        default:
            ok = peer_error_set(err,
                                "layer %d: ffn kind %d is unknown: use dense, peer, pkm or moe", l,
                                (int)ffn->kind);
        }
        if (!ok)
            return false;
    }
    return true;
}

/* ---- parsing --------------------------------------------------------------------------------- */

/* Where a key lives, for messages: "" for the model, "layer 2 (peer): " for a layer. */
typedef struct {
    char prefix[48];
} place;

static const char *json_type_name(const json_t *value)
{
    switch (json_typeof(value)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "an unknown JSON value";
}

/* Keys longer than this are cut in messages. */
#define KEY_QUOTE_MAX 64

/* Refuses any key of obj not among the NULL-terminated known ones, listing them. */
static bool check_keys(const json_t *obj, const char *const *known, const place *where,
                       peer_error *err)
{
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)obj, key, value) {
        bool found = false;
        for (int i = 0; known[i] && !found; i++)
            found = strcmp(key, known[i]) == 0;
        if (found)
            continue;
        char list[256] = "";
        for (int i = 0; known[i]; i++) {
            size_t used = strlen(list);
            snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", known[i]);
        }
        return peer_error_set(err, "%sunknown key \"%.*s\" (the keys are %s)", where->prefix,
                              KEY_QUOTE_MAX, key, list);
    }
    return true;
}

static const json_t *get_key(const json_t *obj, const char *key, const place *where,
                             peer_error *err)
{
    const json_t *value = json_object_get(obj, key);
    if (!value)
        peer_error_set(err, "%smissing key \"%s\"", where->prefix, key);
    return value;
}

static bool get_int(const json_t *obj, const char *key, int *out, const place *where,
                    peer_error *err)
{
    const json_t *value = get_key(obj, key, where, err);
    if (!value)
        return false;
    if (json_is_real(value)) {
        double real = json_real_value(value);
        bool whole = real > -1e15 && real < 1e15 && real == (double)(long long)real;
        return peer_error_set(err, whole ? "%s\"%s\" must be an integer, not the real number %.1f"
                                         : "%s\"%s\" must be an integer, not the real number %g",
                              where->prefix, key, real);
    }
    if (!json_is_integer(value))
        return peer_error_set(err, "%s\"%s\" must be an integer, not %s", where->prefix, key,
                              json_type_name(value));
    json_int_t number = json_integer_value(value);
    if (number < INT_MIN || number > INT_MAX)
        return peer_error_set(err, "%s\"%s\" = %lld is far out of range", where->prefix, key,
                              (long long)number);
    *out = (int)number;
    return true;
}

static bool get_bool(const json_t *obj, const char *key, bool *out, const place *where,
                     peer_error *err)
{
    const json_t *value = get_key(obj, key, where, err);
    if (!value)
        return false;
    if (!json_is_boolean(value))
        return peer_error_set(err, "%s\"%s\" must be true or false, not %s", where->prefix, key,
                              json_type_name(value));
    *out = json_is_true(value);
    return true;
}

/* Looks up a string value among the NULL-terminated names; *out is its index. */
static bool get_choice(const json_t *obj, const char *key, const char *const *names, int *out,
                       const place *where, peer_error *err)
{
    const json_t *value = get_key(obj, key, where, err);
    if (!value)
        return false;
    char list[128] = "";
    for (int i = 0; names[i]; i++) {
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", names[i]);
    }
    if (!json_is_string(value))
        return peer_error_set(err, "%s\"%s\" must be a string (%s), not %s", where->prefix, key,
                              list, json_type_name(value));
    const char *text = json_string_value(value);
    for (int i = 0; names[i]; i++)
        if (strcmp(text, names[i]) == 0) {
            *out = i;
            return true;
        }
    return peer_error_set(err, "%s\"%s\" = \"%.*s\" is unknown: use %s", where->prefix, key,
                          KEY_QUOTE_MAX, text, list);
}

static const char *const ffn_names[] = { "dense", "peer", "pkm", "moe", NULL };
static const char *const norm_names[] = { "none", "layer", "batch", NULL };
static const char *const activation_names[] = { "gelu", "relu", NULL };

static bool parse_retrieval(ffn_config *ffn, const json_t *obj, const place *where,
                            peer_error *err)
{
    peer_layer_config *peer = &ffn->peer;
    int norm, activation = 0;
    if (!get_int(obj, ffn->kind == FFN_PKM ? "n_memories" : "n_experts", &peer->n_experts, where,
                 err) ||
        !get_int(obj, "heads", &peer->heads, where, err) ||
        !get_int(obj, "topk", &peer->topk, where, err) ||
        !get_int(obj, "d_key", &peer->d_key, where, err) ||
        !get_bool(obj, "shared_keys", &peer->shared_keys, where, err) ||
        !get_choice(obj, "query_norm", norm_names, &norm, where, err))
        return false;
    if (ffn->kind == FFN_PEER &&
        !get_choice(obj, "activation", activation_names, &activation, where, err))
        return false;
    peer->query_norm = norm == 0 ? PEER_NORM_NONE : norm == 1 ? PEER_NORM_LAYER : PEER_NORM_BATCH;
    peer->activation = activation == 0 ? PEER_ACTIVATION_GELU : PEER_ACTIVATION_RELU;
    return true;
}

static bool parse_layer(ffn_config *ffn, const json_t *obj, int layer, int d_model,
                        peer_error *err)
{
    static const char *const dense_keys[] = { "ffn", "d_ff", NULL };
    static const char *const peer_keys[] = { "ffn", "n_experts", "heads", "topk", "d_key",
                                             "shared_keys", "query_norm", "activation", NULL };
    static const char *const pkm_keys[] = { "ffn", "n_memories", "heads", "topk", "d_key",
                                            "shared_keys", "query_norm", NULL };
    static const char *const moe_keys[] = { "ffn", "n_experts", "topk", "d_ff", NULL };
    place where;
    snprintf(where.prefix, sizeof where.prefix, "layer %d: ", layer);
    if (!json_is_object(obj))
        return peer_error_set(err, "%sthe entry must be an object, not %s", where.prefix,
                              json_type_name(obj));
    int kind;
    if (!get_choice(obj, "ffn", ffn_names, &kind, &where, err))
        return false;
    ffn->kind = kind == 0 ? FFN_DENSE : kind == 1 ? FFN_PEER : kind == 2 ? FFN_PKM : FFN_MOE;
    snprintf(where.prefix, sizeof where.prefix, "layer %d (%s): ", layer, ffn_names[kind]);
    ffn->peer.d_model = d_model;
    switch (ffn->kind) {
    case FFN_DENSE:
        return check_keys(obj, dense_keys, &where, err) &&
               get_int(obj, "d_ff", &ffn->d_ff, &where, err);
    case FFN_PEER:
        return check_keys(obj, peer_keys, &where, err) && parse_retrieval(ffn, obj, &where, err);
    case FFN_PKM:
        return check_keys(obj, pkm_keys, &where, err) && parse_retrieval(ffn, obj, &where, err);
    case FFN_MOE:
        return check_keys(obj, moe_keys, &where, err) &&
               get_int(obj, "n_experts", &ffn->moe_experts, &where, err) &&
               get_int(obj, "topk", &ffn->moe_topk, &where, err) &&
               get_int(obj, "d_ff", &ffn->d_ff, &where, err);
    }
    return false;
}

static bool parse_model(model_config *cfg, const json_t *root, peer_error *err)
{
    static const char *const model_keys[] = { "vocab_size", "context", "d_model", "n_layers",
                                              "n_heads", "layers", NULL };
    const place model = { "" };
    if (!json_is_object(root))
        return peer_error_set(err, "the model config must be a JSON object, not %s",
                              json_type_name(root));
    if (!check_keys(root, model_keys, &model, err) ||
        !get_int(root, "vocab_size", &cfg->vocab_size, &model, err) ||
        !get_int(root, "context", &cfg->context, &model, err) ||
        !get_int(root, "d_model", &cfg->d_model, &model, err) ||
        !get_int(root, "n_layers", &cfg->n_layers, &model, err) ||
        !get_int(root, "n_heads", &cfg->n_heads, &model, err))
        return false;
    if (cfg->n_layers < 1 || cfg->n_layers > MODEL_MAX_LAYERS)
        return peer_error_set(err, "n_layers = %d is out of range: use 1 to %d", cfg->n_layers,
                              MODEL_MAX_LAYERS);
    const json_t *layers = get_key(root, "layers", &model, err);
    if (!layers)
        return false;
    if (!json_is_array(layers))
        return peer_error_set(err, "\"layers\" must be an array of layer objects, not %s",
                              json_type_name(layers));
    if (json_array_size(layers) != (size_t)cfg->n_layers)
        return peer_error_set(err, "\"layers\" has %zu entries but n_layers = %d: give one per "
                              "layer",
                              json_array_size(layers), cfg->n_layers);
    for (int l = 0; l < cfg->n_layers; l++)
        if (!parse_layer(&cfg->layers[l], json_array_get(layers, (size_t)l), l, cfg->d_model,
                         err))
            return false;
    return true;
}

bool model_config_from_json(model_config *cfg, const char *json, peer_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    if (!json)
        return peer_error_set(err, "no model config given");
    json_error_t json_err;
    json_t *root = json_loadb(json, strlen(json), JSON_REJECT_DUPLICATES, &json_err);
    if (!root)
        return peer_error_set(err, "the model config is not valid JSON: %s (line %d, column %d)",
                              json_err.text, json_err.line, json_err.column);
    bool ok = parse_model(cfg, root, err) && model_config_validate(cfg, err);
    json_decref(root);
    return ok;
}

/* ---- writing --------------------------------------------------------------------------------- */

static json_t *layer_to_json(const ffn_config *ffn)
{
    const peer_layer_config *peer = &ffn->peer;
    switch (ffn->kind) {
    case FFN_DENSE: return json_pack("{s:s, s:i}", "ffn", "dense", "d_ff", ffn->d_ff);
    case FFN_PEER:
        return json_pack("{s:s, s:i, s:i, s:i, s:i, s:b, s:s, s:s}", "ffn", "peer", "n_experts",
                         peer->n_experts, "heads", peer->heads, "topk", peer->topk, "d_key",
                         peer->d_key, "shared_keys", peer->shared_keys, "query_norm",
                         peer_query_norm_name(peer->query_norm), "activation",
                         peer_activation_name(peer->activation));
    case FFN_PKM:
        return json_pack("{s:s, s:i, s:i, s:i, s:i, s:b, s:s}", "ffn", "pkm", "n_memories",
                         peer->n_experts, "heads", peer->heads, "topk", peer->topk, "d_key",
                         peer->d_key, "shared_keys", peer->shared_keys, "query_norm",
                         peer_query_norm_name(peer->query_norm));
    case FFN_MOE:
        return json_pack("{s:s, s:i, s:i, s:i}", "ffn", "moe", "n_experts", ffn->moe_experts,
                         "topk", ffn->moe_topk, "d_ff", ffn->d_ff);
    }
    return json_pack("{s:s}", "ffn", ffn_kind_name(ffn->kind));
}

char *model_config_to_json(const model_config *cfg)
{
    json_t *layers = json_array();
    int n_layers = cfg->n_layers < 0 ? 0
                   : cfg->n_layers > MODEL_MAX_LAYERS ? MODEL_MAX_LAYERS
                                                      : cfg->n_layers;
    for (int l = 0; layers && l < n_layers; l++)
        if (json_array_append_new(layers, layer_to_json(&cfg->layers[l])) != 0) {
            json_decref(layers);
            layers = NULL;
        }
    json_t *root = json_pack("{s:i, s:i, s:i, s:i, s:i, s:o}", "vocab_size", cfg->vocab_size,
                             "context", cfg->context, "d_model", cfg->d_model, "n_layers",
                             cfg->n_layers, "n_heads", cfg->n_heads, "layers", layers);
    if (!root)
        return NULL;
    char *json = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return json;
}
