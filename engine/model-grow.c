#include "model-grow.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

/* The largest grid peer_layer_config_validate accepts: 32768² = 2³⁰ experts. */
#define GROW_MAX_SIDE 32768
/* Mixed into the run's seed for the new weights, so that they are not the initial weights'
 * first draws again. */
#define GROW_SEED_MIX 0x67726f77e5a1c0deull

bool model_growth_config(const model_config *cfg, const model_growth *growth, model_config *grown,
                         peer_error *err)
{
    *grown = *cfg;
    for (int l = 0; l < MODEL_MAX_LAYERS; l++) {
        int side = growth->side[l];
        if (side == 0)
            continue;
        if (l >= cfg->n_layers)
            return peer_error_set(err, "layer %d does not exist: the model has layers 0 to %d", l,
                                  cfg->n_layers - 1);
        const ffn_config *ffn = &cfg->layers[l];
        if (ffn->kind != FFN_PEER && ffn->kind != FFN_PKM)
            return peer_error_set(err,
                                  "layer %d is a %s block: only PEER and PKM layers have an "
                                  "expert grid to grow",
                                  l, ffn_kind_name(ffn->kind));
        int n = peer_layer_side(&ffn->peer);
        if (side < n || side > GROW_MAX_SIDE)
            return peer_error_set(err,
                                  "layer %d: a grid of %d × %d = %lld experts cannot replace its "
                                  "%d × %d = %d: growth keeps every expert, use %d to %d "
                                  "sub-keys per side (%d to %lld experts)",
                                  l, side, side, (long long)side * side, n, n,
                                  ffn->peer.n_experts, n, GROW_MAX_SIDE, n * n,
                                  (long long)GROW_MAX_SIDE * GROW_MAX_SIDE);
        grown->layers[l].peer.n_experts = side * side;
    }
    peer_error inner;
    if (!model_config_validate(grown, &inner))
        return peer_error_set(err, "the grown model is not valid: %s", inner.message);
    return true;
}

/* ---- moving rows into the grown grid --------------------------------------------------------- */

/* New entries: drawn from rng with std, or zero when rng is NULL (optimiser moments). */
static void fill_new(float *out, size_t count, peer_rng *rng, float std)
{
    if (rng)
        peer_rng_fill_normal(rng, out, count, std);
    else
        memset(out, 0, count * sizeof(float));
}

/* An expert table (n², width) into (n'², width): row a·n + b goes to a·n' + b; the new rows are
 * filled in id order. */
static void grow_table(float *dst, const float *src, int n, int grown_n, size_t width,
                       peer_rng *rng, float std)
{
    for (int a = 0; a < grown_n; a++) {
        float *row = dst + (size_t)a * grown_n * width;
        if (a < n) {
            memcpy(row, src + (size_t)a * n * width, (size_t)n * width * sizeof(float));
            fill_new(row + (size_t)n * width, (size_t)(grown_n - n) * width, rng, std);
        } else {
            fill_new(row, (size_t)grown_n * width, rng, std);
        }
    }
}

/* Sub-keys (blocks, n, half) into (blocks, n', half), blocks = 2G: each block keeps its first n
 * sub-keys and gains n' - n. */
static void grow_keys(float *dst, const float *src, int blocks, int n, int grown_n, size_t half,
                      peer_rng *rng, float std)
{
    for (int k = 0; k < blocks; k++) {
        float *block = dst + (size_t)k * grown_n * half;
        memcpy(block, src + (size_t)k * n * half, (size_t)n * half * sizeof(float));
        fill_new(block + (size_t)n * half, (size_t)(grown_n - n) * half, rng, std);
    }
}

/* The tensor of a grown layer: which layout it has and how its new entries are drawn. */
typedef enum { GROW_COPY, GROW_KEYS, GROW_TABLE } grow_kind;

static grow_kind tensor_grow_kind(const model_tensor *t, const model_tensor *grown_t)
{
    if (t->n_elements == grown_t->n_elements)
        return GROW_COPY;
    return t->expert_table ? GROW_TABLE : GROW_KEYS;
}

/* Copies or grows one tensor's data (parameters, or a moment with rng NULL) from model to grown. */
static void grow_tensor(float *dst, const float *src, int index, const peer_model *model,
                        const peer_model *grown, peer_rng *rng)
{
    const model_tensor *t = &model->tensors[index], *grown_t = &grown->tensors[index];
    grow_kind kind = tensor_grow_kind(t, grown_t);
    if (kind == GROW_COPY) {
        memcpy(dst, src, t->n_elements * sizeof(float));
        return;
    }
    const peer_layer_config *p = &grown->cfg.layers[t->layer].peer;
    int n = peer_layer_side(&model->cfg.layers[t->layer].peer), grown_n = peer_layer_side(p);
    if (kind == GROW_TABLE) {
        /* As peer_layer_params_init draws them: u from N(0, 1/√D), v from N(0, 1/√(h·k)). */
        bool is_down = strstr(t->name, ".ffn.down") != NULL;
        float std = is_down ? 1.0f / sqrtf((float)p->d_model)
                            : 1.0f / sqrtf((float)(p->heads * p->topk));
        grow_table(dst, src, n, grown_n, (size_t)t->shape[1], rng, std);
    } else {
        grow_keys(dst, src, (int)(t->shape[0] * t->shape[1]), n, grown_n, (size_t)t->shape[3],
                  rng, 1.0f / sqrtf((float)(p->d_key / 2)));
    }
}

/* ---- the model ------------------------------------------------------------------------------- */

peer_model *peer_model_grow(const peer_model *model, const model_growth *growth, uint64_t seed,
                            peer_error *err)
{
    model_config grown_cfg;
    if (!model_growth_config(&model->cfg, growth, &grown_cfg, err))
        return NULL;
    peer_model *grown = peer_model_new_uninitialised(&grown_cfg, model->batch, model->seq, err);
    if (!grown)
        return NULL;
    grown->moe_aux_weight = model->moe_aux_weight;
    /* One stream per layer: a layer's new weights do not depend on which other layers grow. */
    peer_rng rng[MODEL_MAX_LAYERS];
    for (int l = 0; l < grown->cfg.n_layers; l++)
        peer_rng_seed(&rng[l], seed ^ GROW_SEED_MIX ^ ((uint64_t)(l + 1) * 0x9e3779b97f4a7c15ull));
    /* Both configs list the same tensors in the same order; only grown shapes differ. */
    for (int i = 0; i < grown->n_tensors; i++) {
        const model_tensor *grown_t = &grown->tensors[i];
        grow_tensor(grown_t->param, model->tensors[i].param, i, model, grown,
                    grown_t->layer >= 0 ? &rng[grown_t->layer] : NULL);
    }
    return grown;
}

/* ---- the optimiser --------------------------------------------------------------------------- */

/* A tensor's first or second moment: dense ones at the tensor's place in the gradient arena. */
static float *moment_of(const optimizer_state *opt, const peer_model *model, int index,
                        bool second)
{
    const model_tensor *t = &model->tensors[index];
    if (t->expert_table) {
        for (int k = 0; k < opt->n_tables; k++)
            if (opt->table_tensor[k] == index)
                return second ? opt->table_v[k] : opt->table_m[k];
        return NULL;
    }
    size_t offset = (size_t)(t->grad - model->grads_memory);
    return (second ? opt->v : opt->m) + offset;
}

bool optimizer_grow(optimizer_state *grown_opt, const optimizer_state *opt,
                    const peer_model *model, const peer_model *grown, peer_error *err)
{
    if (!optimizer_init(grown_opt, grown, err))
        return false;
    grown_opt->step = opt->step;
    for (int i = 0; i < grown->n_tensors; i++) {
        if (model->tensors[i].buffer)
            continue;
        for (int second = 0; second < 2; second++)
            grow_tensor(moment_of(grown_opt, grown, i, second), moment_of(opt, model, i, second),
                        i, model, grown, NULL);
    }
    /* An expert (a, b) held before is still (a, b): the same side holds it in the grown grid. */
    grown_opt->n_frozen = opt->n_frozen;
    memcpy(grown_opt->frozen, opt->frozen, sizeof opt->frozen);
    return true;
}

/* ---- the trainer ----------------------------------------------------------------------------- */

bool trainer_grow(trainer *tr, const model_growth *growth, bool freeze_old, peer_error *err)
{
    uint64_t seed = tr->settings.seed ^ ((uint64_t)tr->step * 0xbf58476d1ce4e5b9ull);
    peer_model *grown = peer_model_grow(tr->model, growth, seed, err);
    if (!grown)
        return false;
    optimizer_state grown_opt;
    if (!optimizer_grow(&grown_opt, &tr->opt, tr->model, grown, err)) {
        peer_model_free(grown);
        return false;
    }
    for (int l = 0; freeze_old && l < grown->cfg.n_layers; l++) {
        if (growth->side[l] == 0)
            continue;
        int old_side = peer_layer_side(&tr->model->cfg.layers[l].peer);
        if (!optimizer_freeze_experts(&grown_opt, grown, l, old_side, err)) {
            optimizer_free(&grown_opt);
            peer_model_free(grown);
            return false;
        }
    }
    optimizer_free(&tr->opt);
    peer_model_free(tr->model);
    tr->model = grown;
    tr->opt = grown_opt;
    return true;
}
