#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "cross-entropy.h"
#include "embedding.h"
#include "layernorm.h"
#include "linear.h"

/* ---- tensors --------------------------------------------------------------------------------- */

typedef struct {
    model_tensor *tensors;
    int count;
    size_t offset;      /* elements laid out so far in the parameter arena */
    size_t grad_offset; /* in the gradient arena */
} tensor_list;

static void add_tensor(tensor_list *list, int layer, const char *name, int n_dims, int64_t d0,
                       int64_t d1, int64_t d2, int64_t d3, bool buffer, bool expert_table,
                       bool no_decay)
{
    model_tensor *t = list->tensors ? &list->tensors[list->count] : NULL;
    int64_t dims[4] = { d0, d1, d2, d3 };
    size_t n = 1;
    for (int i = 0; i < n_dims; i++)
        n *= (size_t)dims[i];
    if (t) {
        memset(t, 0, sizeof *t);
        if (layer >= 0)
            snprintf(t->name, sizeof t->name, "blocks.%d.%s", layer, name);
        else
            snprintf(t->name, sizeof t->name, "%s", name);
        t->n_dims = n_dims;
        for (int i = 0; i < n_dims; i++)
            t->shape[i] = dims[i];
        t->n_elements = n;
        t->layer = layer;
        t->buffer = buffer;
        t->expert_table = expert_table;
        t->no_decay = no_decay;
        /* Offsets now; pointers once the arenas exist. */
        t->param = (float *)(uintptr_t)(list->offset * sizeof(float));
        t->grad = buffer || expert_table ? NULL
                                         : (float *)(uintptr_t)(list->grad_offset * sizeof(float));
        list->offset += n;
        if (!buffer && !expert_table)
            list->grad_offset += n;
    }
    list->count++;
}

/* Lists the contract's tensors in checkpoint order; with list->tensors NULL only counts them. */
static void list_tensors(const model_config *cfg, tensor_list *list)
{
    int64_t V = cfg->vocab_size, T = cfg->context, D = cfg->d_model;
    add_tensor(list, -1, "tok_emb", 2, V, D, 0, 0, false, false, false);
    add_tensor(list, -1, "pos_emb", 2, T, D, 0, 0, false, false, true);
    for (int l = 0; l < cfg->n_layers; l++) {
        const ffn_config *ffn = &cfg->layers[l];
        add_tensor(list, l, "ln1.weight", 1, D, 0, 0, 0, false, false, true);
        add_tensor(list, l, "ln1.bias", 1, D, 0, 0, 0, false, false, true);
        add_tensor(list, l, "attn.qkv.weight", 2, 3 * D, D, 0, 0, false, false, false);
        add_tensor(list, l, "attn.qkv.bias", 1, 3 * D, 0, 0, 0, false, false, true);
        add_tensor(list, l, "attn.out.weight", 2, D, D, 0, 0, false, false, false);
        add_tensor(list, l, "attn.out.bias", 1, D, 0, 0, 0, false, false, true);
        add_tensor(list, l, "ln2.weight", 1, D, 0, 0, 0, false, false, true);
        add_tensor(list, l, "ln2.bias", 1, D, 0, 0, 0, false, false, true);
        switch (ffn->kind) {
        case FFN_DENSE: {
            int64_t F = ffn->d_ff;
            add_tensor(list, l, "ffn.fc.weight", 2, F, D, 0, 0, false, false, false);
            add_tensor(list, l, "ffn.fc.bias", 1, F, 0, 0, 0, false, false, true);
            add_tensor(list, l, "ffn.proj.weight", 2, D, F, 0, 0, false, false, false);
            add_tensor(list, l, "ffn.proj.bias", 1, D, 0, 0, 0, false, false, true);
            break;
        }
        case FFN_PEER:
        case FFN_PKM: {
            const peer_layer_config *p = &ffn->peer;
            int64_t HK = (int64_t)p->heads * p->d_key, N = p->n_experts;
            int64_t n = peer_layer_side(p), G = peer_layer_key_groups(p);
            add_tensor(list, l, "ffn.query.weight", 2, HK, D, 0, 0, false, false, false);
            add_tensor(list, l, "ffn.query.bias", 1, HK, 0, 0, 0, false, false, true);
            if (p->query_norm != PEER_NORM_NONE) {
                add_tensor(list, l, "ffn.query_norm.weight", 1, HK, 0, 0, 0, false, false, true);
                add_tensor(list, l, "ffn.query_norm.bias", 1, HK, 0, 0, 0, false, false, true);
            }
            if (p->query_norm == PEER_NORM_BATCH) {
                add_tensor(list, l, "ffn.query_norm.running_mean", 1, HK, 0, 0, 0, true, false,
                           true);
                add_tensor(list, l, "ffn.query_norm.running_var", 1, HK, 0, 0, 0, true, false,
                           true);
            }
            add_tensor(list, l, "ffn.keys", 4, G, 2, n, p->d_key / 2, false, false, false);
            if (ffn->kind == FFN_PEER) {
                add_tensor(list, l, "ffn.down", 2, N, D, 0, 0, false, true, false);
                add_tensor(list, l, "ffn.up", 2, N, D, 0, 0, false, true, false);
            } else {
                add_tensor(list, l, "ffn.values", 2, N, D, 0, 0, false, true, false);
            }
            break;
        }
        case FFN_MOE: {
            int64_t E = ffn->moe_experts, F = ffn->d_ff;
            add_tensor(list, l, "ffn.router.weight", 2, E, D, 0, 0, false, false, false);
            add_tensor(list, l, "ffn.fc.weight", 3, E, F, D, 0, false, false, false);
            add_tensor(list, l, "ffn.fc.bias", 2, E, F, 0, 0, false, false, true);
            add_tensor(list, l, "ffn.proj.weight", 3, E, D, F, 0, false, false, false);
            add_tensor(list, l, "ffn.proj.bias", 2, E, D, 0, 0, false, false, true);
            break;
        }
        }
    }
    add_tensor(list, -1, "ln_f.weight", 1, D, 0, 0, 0, false, false, true);
    add_tensor(list, -1, "ln_f.bias", 1, D, 0, 0, 0, false, false, true);
}

model_tensor *peer_model_list_tensors(const model_config *cfg, int *count)
{
    tensor_list list = { 0 };
    list_tensors(cfg, &list);
    model_tensor *tensors = calloc((size_t)list.count, sizeof *tensors);
    if (!tensors)
        return NULL;
    list = (tensor_list){ .tensors = tensors };
    list_tensors(cfg, &list);
    for (int i = 0; i < list.count; i++)
        tensors[i].param = tensors[i].grad = NULL;
    *count = list.count;
    return tensors;
}

static float *tensor_param(peer_model *model, const char *name)
{
    const model_tensor *t = peer_model_find_tensor(model, name);
    return t ? t->param : NULL;
}

static float *tensor_grad(peer_model *model, const char *name)
{
    const model_tensor *t = peer_model_find_tensor(model, name);
    return t ? t->grad : NULL;
}

/* Fills the typed views of params (or grads) from the tensor list. */
static void point_views(peer_model *model, model_params *views, bool grads)
{
    float *(*get)(peer_model *, const char *) = grads ? tensor_grad : tensor_param;
    char name[96];
    memset(views, 0, sizeof *views);
    views->tok_emb = get(model, "tok_emb");
    views->pos_emb = get(model, "pos_emb");
    views->lnf_weight = get(model, "ln_f.weight");
    views->lnf_bias = get(model, "ln_f.bias");
    for (int l = 0; l < model->cfg.n_layers; l++) {
        model_block_params *b = &views->blocks[l];
#define VIEW(field, suffix)                                                                         \
    do {                                                                                            \
        snprintf(name, sizeof name, "blocks.%d.%s", l, suffix);                                     \
        b->field = get(model, name);                                                                \
    } while (0)
        VIEW(ln1_weight, "ln1.weight");
        VIEW(ln1_bias, "ln1.bias");
        VIEW(qkv_weight, "attn.qkv.weight");
        VIEW(qkv_bias, "attn.qkv.bias");
        VIEW(out_weight, "attn.out.weight");
        VIEW(out_bias, "attn.out.bias");
        VIEW(ln2_weight, "ln2.weight");
        VIEW(ln2_bias, "ln2.bias");
        switch (model->cfg.layers[l].kind) {
        case FFN_DENSE:
            VIEW(dense.fc_weight, "ffn.fc.weight");
            VIEW(dense.fc_bias, "ffn.fc.bias");
            VIEW(dense.proj_weight, "ffn.proj.weight");
            VIEW(dense.proj_bias, "ffn.proj.bias");
            break;
        case FFN_PEER:
        case FFN_PKM:
            VIEW(peer.query_weight, "ffn.query.weight");
            VIEW(peer.query_bias, "ffn.query.bias");
            VIEW(peer.norm_weight, "ffn.query_norm.weight");
            VIEW(peer.norm_bias, "ffn.query_norm.bias");
            VIEW(peer.running_mean, "ffn.query_norm.running_mean");
            VIEW(peer.running_var, "ffn.query_norm.running_var");
            VIEW(peer.keys, "ffn.keys");
            VIEW(peer.down, "ffn.down");
            VIEW(peer.up, model->cfg.layers[l].kind == FFN_PKM ? "ffn.values" : "ffn.up");
            break;
        case FFN_MOE:
            VIEW(moe.router_weight, "ffn.router.weight");
            VIEW(moe.fc_weight, "ffn.fc.weight");
            VIEW(moe.fc_bias, "ffn.fc.bias");
            VIEW(moe.proj_weight, "ffn.proj.weight");
            VIEW(moe.proj_bias, "ffn.proj.bias");
            break;
        }
#undef VIEW
    }
}

const model_tensor *peer_model_find_tensor(const peer_model *model, const char *name)
{
    for (int i = 0; i < model->n_tensors; i++)
        if (strcmp(model->tensors[i].name, name) == 0)
            return &model->tensors[i];
    return NULL;
}

/* ---- initialisation -------------------------------------------------------------------------- */

static void fill_constant(float *p, size_t n, float value)
{
    for (size_t i = 0; i < n; i++)
        p[i] = value;
}

/* GPT-2's initialisation: weights N(0, 0.02), the projections into the residual stream scaled
 * by 1/√(2L), norms at 1 and biases at 0; PEER and PKM layers use their own (peer-layer.h). */
static void init_params(peer_model *model, uint64_t seed)
{
    const model_config *cfg = &model->cfg;
    peer_rng rng;
    peer_rng_seed(&rng, seed);
    float std = 0.02f, residual_std = 0.02f / sqrtf(2.0f * cfg->n_layers);
    model_params *p = &model->params;
    size_t D = (size_t)cfg->d_model;
    peer_rng_fill_normal(&rng, p->tok_emb, (size_t)cfg->vocab_size * D, std);
    peer_rng_fill_normal(&rng, p->pos_emb, (size_t)cfg->context * D, std);
    for (int l = 0; l < cfg->n_layers; l++) {
        model_block_params *b = &p->blocks[l];
        const ffn_config *ffn = &cfg->layers[l];
        fill_constant(b->ln1_weight, D, 1.0f);
        fill_constant(b->ln1_bias, D, 0.0f);
        peer_rng_fill_normal(&rng, b->qkv_weight, 3 * D * D, std);
        fill_constant(b->qkv_bias, 3 * D, 0.0f);
        peer_rng_fill_normal(&rng, b->out_weight, D * D, residual_std);
        fill_constant(b->out_bias, D, 0.0f);
        fill_constant(b->ln2_weight, D, 1.0f);
        fill_constant(b->ln2_bias, D, 0.0f);
        switch (ffn->kind) {
        case FFN_DENSE: {
            size_t F = (size_t)ffn->d_ff;
            peer_rng_fill_normal(&rng, b->dense.fc_weight, F * D, std);
            fill_constant(b->dense.fc_bias, F, 0.0f);
            peer_rng_fill_normal(&rng, b->dense.proj_weight, D * F, residual_std);
            fill_constant(b->dense.proj_bias, D, 0.0f);
            break;
        }
        case FFN_PEER:
        case FFN_PKM:
            peer_layer_params_init(&b->peer, &ffn->peer, &rng);
            break;
        case FFN_MOE: {
            size_t E = (size_t)ffn->moe_experts, F = (size_t)ffn->d_ff;
            peer_rng_fill_normal(&rng, b->moe.router_weight, E * D, std);
            peer_rng_fill_normal(&rng, b->moe.fc_weight, E * F * D, std);
            fill_constant(b->moe.fc_bias, E * F, 0.0f);
            peer_rng_fill_normal(&rng, b->moe.proj_weight, E * D * F, residual_std);
            fill_constant(b->moe.proj_bias, E * D, 0.0f);
            break;
        }
        }
    }
    fill_constant(p->lnf_weight, D, 1.0f);
    fill_constant(p->lnf_bias, D, 0.0f);
}

/* ---- construction ---------------------------------------------------------------------------- */

static bool alloc_floats(float **out, size_t n)
{
    *out = malloc((n ? n : 1) * sizeof(float));
    return *out != NULL;
}

static bool alloc_acts(peer_model *model, peer_error *err)
{
    const model_config *cfg = &model->cfg;
    model_acts *a = &model->acts;
    size_t B = (size_t)model->batch, T = (size_t)model->seq, BT = B * T;
    size_t L = (size_t)cfg->n_layers, D = (size_t)cfg->d_model, V = (size_t)cfg->vocab_size;
    size_t NH = (size_t)cfg->n_heads;
    bool ok = alloc_floats(&a->residual, (L + 1) * BT * D) && alloc_floats(&a->ln1, L * BT * D) &&
              alloc_floats(&a->ln1_mean, L * BT) && alloc_floats(&a->ln1_rstd, L * BT) &&
              alloc_floats(&a->qkv, L * BT * 3 * D) && alloc_floats(&a->atty, L * BT * D) &&
              alloc_floats(&a->preatt, L * B * NH * T * T) &&
              alloc_floats(&a->att, L * B * NH * T * T) && alloc_floats(&a->mid, L * BT * D) &&
              alloc_floats(&a->ln2, L * BT * D) && alloc_floats(&a->ln2_mean, L * BT) &&
              alloc_floats(&a->ln2_rstd, L * BT) && alloc_floats(&a->ffn_out, BT * D) &&
              alloc_floats(&a->lnf, BT * D) && alloc_floats(&a->lnf_mean, BT) &&
              alloc_floats(&a->lnf_rstd, BT) && alloc_floats(&a->logits, BT * V) &&
              alloc_floats(&a->probs, BT * V) && alloc_floats(&a->losses, BT) &&
              alloc_floats(&a->dresidual, BT * D) && alloc_floats(&a->dln, BT * D) &&
              alloc_floats(&a->dqkv, BT * 3 * D) && alloc_floats(&a->datty, BT * D) &&
              alloc_floats(&a->dpreatt, B * NH * T * T) && alloc_floats(&a->datt, B * NH * T * T) &&
              alloc_floats(&a->dlogits, BT * V);
    if (!ok)
        return peer_error_set(err,
                              "out of memory for activations of %zu sequences of %zu bytes: use a "
                              "smaller batch or context",
                              B, T);
    for (int l = 0; l < cfg->n_layers; l++) {
        const ffn_config *ffn = &cfg->layers[l];
        bool layer_ok = true;
        switch (ffn->kind) {
        case FFN_DENSE:
            layer_ok = dense_ffn_acts_init(&a->dense[l], ffn->d_ff, (int)BT, err);
            break;
        case FFN_PEER:
        case FFN_PKM:
            layer_ok = peer_layer_acts_init(&a->peer[l], &ffn->peer, (int)BT, err) &&
                       peer_sparse_grad_init(&model->sparse[l], ffn->peer.n_experts,
                                             cfg->d_model, err);
            break;
        case FFN_MOE:
            layer_ok = moe_acts_init(&a->moe[l], cfg->d_model, ffn->d_ff, ffn->moe_experts,
                                     ffn->moe_topk, (int)BT, err);
            break;
        }
        if (!layer_ok)
            return false;
    }
    return true;
}

static peer_model *model_create(const model_config *cfg, int B, int T, const uint64_t *seed,
                                peer_error *err)
{
    if (!model_config_validate(cfg, err))
        return NULL;
    if (B < 1 || T < 1 || T > cfg->context) {
        peer_error_set(err,
                       "batch %d × %d bytes is not possible: use at least 1 sequence of 1 to %d "
                       "bytes (the model's context)",
                       B, T, cfg->context);
        return NULL;
    }
    peer_model *model = calloc(1, sizeof *model);
    if (!model) {
        peer_error_set(err, "out of memory creating the model");
        return NULL;
    }
    model->cfg = *cfg;
    for (int l = 0; l < cfg->n_layers; l++) {
        peer_layer_config *p = &model->cfg.layers[l].peer;
        p->d_model = cfg->d_model;
        p->values_only = cfg->layers[l].kind == FFN_PKM;
    }
    model->batch = B;
    model->seq = T;
    model->moe_aux_weight = 0.01f;

    tensor_list list = { 0 };
    list_tensors(&model->cfg, &list);
    model->tensors = calloc((size_t)list.count, sizeof *model->tensors);
    if (!model->tensors)
        goto out_of_memory;
    list = (tensor_list){ .tensors = model->tensors };
    list_tensors(&model->cfg, &list);
    model->n_tensors = list.count;
    model->n_params = list.offset;
    model->n_grads = list.grad_offset;
    if (!(model->params_memory = calloc(model->n_params ? model->n_params : 1, sizeof(float))) ||
        !(model->grads_memory = calloc(model->n_grads ? model->n_grads : 1, sizeof(float))))
        goto out_of_memory;
    for (int i = 0; i < model->n_tensors; i++) {
        model_tensor *t = &model->tensors[i];
        t->param = model->params_memory + (uintptr_t)t->param / sizeof(float);
        if (!t->buffer && !t->expert_table)
            t->grad = model->grads_memory + (uintptr_t)t->grad / sizeof(float);
    }
    point_views(model, &model->params, false);
    point_views(model, &model->grads, true);
    if (seed)
        init_params(model, *seed);
    if (!alloc_acts(model, err)) {
        peer_model_free(model);
        return NULL;
    }
    return model;

out_of_memory:
    peer_model_free(model);
    peer_error_set(err, "out of memory for the model's parameters and gradients");
    return NULL;
}

peer_model *peer_model_new(const model_config *cfg, int B, int T, uint64_t seed, peer_error *err)
{
    return model_create(cfg, B, T, &seed, err);
}

peer_model *peer_model_new_uninitialised(const model_config *cfg, int B, int T, peer_error *err)
{
    return model_create(cfg, B, T, NULL, err);
}

void peer_model_free(peer_model *model)
{
    if (!model)
        return;
    model_acts *a = &model->acts;
    float *buffers[] = { a->residual, a->ln1, a->ln1_mean, a->ln1_rstd, a->qkv, a->atty,
                         a->preatt, a->att, a->mid, a->ln2, a->ln2_mean, a->ln2_rstd,
                         a->ffn_out, a->lnf, a->lnf_mean, a->lnf_rstd, a->logits, a->probs,
                         a->losses, a->dresidual, a->dln, a->dqkv, a->datty, a->dpreatt,
                         a->datt, a->dlogits };
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++)
        free(buffers[i]);
    for (int l = 0; l < model->cfg.n_layers; l++) {
        switch (model->cfg.layers[l].kind) {
        case FFN_DENSE: dense_ffn_acts_free(&a->dense[l]); break;
        case FFN_PEER:
        case FFN_PKM:
            peer_layer_acts_free(&a->peer[l]);
            peer_sparse_grad_free(&model->sparse[l]);
            break;
        case FFN_MOE: moe_acts_free(&a->moe[l]); break;
        }
    }
    free(model->params_memory);
    free(model->grads_memory);
    free(model->tensors);
    free(model);
}

/* ---- forward --------------------------------------------------------------------------------- */

double peer_model_forward(peer_model *model, const uint8_t *tokens, const uint8_t *targets, int B,
                          int T, peer_mode mode, thread_pool *pool)
{
    const model_config *cfg = &model->cfg;
    model_params *p = &model->params;
    model_acts *a = &model->acts;
    int BT = B * T, D = cfg->d_model, V = cfg->vocab_size, NH = cfg->n_heads;
    size_t BTD = (size_t)BT * D, att_size = (size_t)B * NH * T * T;
    model->last_B = B;
    model->last_T = T;
    model->last_mode = mode;
    model->has_targets = targets != NULL;
    model->last_aux = 0.0;

    embedding_forward(a->residual, tokens, p->tok_emb, p->pos_emb, B, T, D, pool);
    for (int l = 0; l < cfg->n_layers; l++) {
        const ffn_config *ffn = &cfg->layers[l];
        model_block_params *b = &p->blocks[l];
        float *x = a->residual + l * BTD;
        float *ln1 = a->ln1 + l * BTD, *qkv = a->qkv + l * BTD * 3, *atty = a->atty + l * BTD;
        float *mid = a->mid + l * BTD, *ln2 = a->ln2 + l * BTD;
        float *out = a->residual + (l + 1) * BTD;

        layernorm_forward(ln1, a->ln1_mean + (size_t)l * BT, a->ln1_rstd + (size_t)l * BT, x,
                          b->ln1_weight, b->ln1_bias, BT, D, pool);
        linear_forward(qkv, ln1, b->qkv_weight, b->qkv_bias, BT, D, 3 * D, pool);
        attention_forward(atty, a->preatt + l * att_size, a->att + l * att_size, qkv, B, T, D, NH,
                          pool);
        linear_forward(mid, atty, b->out_weight, b->out_bias, BT, D, D, pool);
        for (size_t i = 0; i < BTD; i++)
            mid[i] += x[i];

        layernorm_forward(ln2, a->ln2_mean + (size_t)l * BT, a->ln2_rstd + (size_t)l * BT, mid,
                          b->ln2_weight, b->ln2_bias, BT, D, pool);
        switch (ffn->kind) {
        case FFN_DENSE:
            dense_ffn_forward(a->ffn_out, &a->dense[l], ln2, &b->dense, BT, D, ffn->d_ff, pool);
            break;
        case FFN_PEER:
        case FFN_PKM:
            peer_layer_forward(a->ffn_out, &a->peer[l], ln2, &b->peer, &ffn->peer, BT, mode,
                               PEER_SELECT_RETRIEVE, pool);
            break;
        case FFN_MOE:
            moe_forward(a->ffn_out, &a->moe[l], ln2, &b->moe, BT, D, ffn->d_ff, ffn->moe_experts,
                        ffn->moe_topk, pool);
            model->last_aux += a->moe[l].aux_loss;
            break;
        }
        for (size_t i = 0; i < BTD; i++)
            out[i] = mid[i] + a->ffn_out[i];
    }
    float *last = a->residual + (size_t)cfg->n_layers * BTD;
    layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, last, p->lnf_weight, p->lnf_bias, BT, D,
                      pool);
    linear_forward(a->logits, a->lnf, p->tok_emb, NULL, BT, D, V, pool);
    if (!targets)
        return 0.0;
    model->last_ce = cross_entropy_forward(a->probs, a->losses, a->logits, targets, BT, V, pool);
    return model->last_ce + model->moe_aux_weight * model->last_aux;
}

/* ---- backward -------------------------------------------------------------------------------- */

void peer_model_zero_grad(peer_model *model)
{
    memset(model->grads_memory, 0, model->n_grads * sizeof(float));
    for (int l = 0; l < model->cfg.n_layers; l++) {
        ffn_kind kind = model->cfg.layers[l].kind;
        if (kind == FFN_PEER || kind == FFN_PKM)
            peer_sparse_grad_zero(&model->sparse[l]);
    }
}

void peer_model_backward(peer_model *model, const uint8_t *tokens, const uint8_t *targets,
                         thread_pool *pool)
{
    const model_config *cfg = &model->cfg;
    model_params *p = &model->params, *g = &model->grads;
    model_acts *a = &model->acts;
    int B = model->last_B, T = model->last_T;
    int BT = B * T, D = cfg->d_model, V = cfg->vocab_size, NH = cfg->n_heads;
    size_t BTD = (size_t)BT * D, att_size = (size_t)B * NH * T * T;

    memset(a->dlogits, 0, (size_t)BT * V * sizeof(float));
    cross_entropy_backward(a->dlogits, a->probs, targets, BT, V, 1.0f / BT, pool);
    memset(a->dln, 0, BTD * sizeof(float));
    linear_backward(a->dln, g->tok_emb, NULL, a->dlogits, a->lnf, p->tok_emb, BT, D, V, pool);
    memset(a->dresidual, 0, BTD * sizeof(float));
    float *last = a->residual + (size_t)cfg->n_layers * BTD;
    layernorm_backward(a->dresidual, g->lnf_weight, g->lnf_bias, a->dln, last, p->lnf_weight,
                       a->lnf_mean, a->lnf_rstd, BT, D, pool);

    for (int l = cfg->n_layers - 1; l >= 0; l--) {
        const ffn_config *ffn = &cfg->layers[l];
        model_block_params *b = &p->blocks[l], *gb = &g->blocks[l];
        float *x = a->residual + l * BTD;
        float *ln1 = a->ln1 + l * BTD, *qkv = a->qkv + l * BTD * 3, *atty = a->atty + l * BTD;
        float *mid = a->mid + l * BTD, *ln2 = a->ln2 + l * BTD;

        /* out = mid + ffn(ln2(mid)): dresidual reaches mid directly and through the FFN. */
        memset(a->dln, 0, BTD * sizeof(float));
        switch (ffn->kind) {
        case FFN_DENSE:
            dense_ffn_backward(a->dln, &gb->dense, &a->dense[l], a->dresidual, ln2, &b->dense, BT,
                               D, ffn->d_ff, pool);
            break;
        case FFN_PEER:
        case FFN_PKM:
            peer_layer_backward(a->dln, &gb->peer, &model->sparse[l], &a->peer[l], a->dresidual,
                                ln2, &b->peer, &ffn->peer, BT, pool);
            break;
        case FFN_MOE:
            moe_backward(a->dln, &gb->moe, &a->moe[l], a->dresidual, model->moe_aux_weight, ln2,
                         &b->moe, BT, D, ffn->d_ff, ffn->moe_experts, ffn->moe_topk, pool);
            break;
        }
        layernorm_backward(a->dresidual, gb->ln2_weight, gb->ln2_bias, a->dln, mid,
                           b->ln2_weight, a->ln2_mean + (size_t)l * BT,
                           a->ln2_rstd + (size_t)l * BT, BT, D, pool);

        /* mid = x + out_proj(attn(qkv(ln1(x)))). */
        memset(a->datty, 0, BTD * sizeof(float));
        linear_backward(a->datty, gb->out_weight, gb->out_bias, a->dresidual, atty, b->out_weight,
                        BT, D, D, pool);
        memset(a->dqkv, 0, BTD * 3 * sizeof(float));
        attention_backward(a->dqkv, a->dpreatt, a->datt, a->datty, qkv, a->att + l * att_size, B,
                           T, D, NH, pool);
        memset(a->dln, 0, BTD * sizeof(float));
        linear_backward(a->dln, gb->qkv_weight, gb->qkv_bias, a->dqkv, ln1, b->qkv_weight, BT, D,
                        3 * D, pool);
        layernorm_backward(a->dresidual, gb->ln1_weight, gb->ln1_bias, a->dln, x, b->ln1_weight,
                           a->ln1_mean + (size_t)l * BT, a->ln1_rstd + (size_t)l * BT, BT, D,
                           pool);
    }
    embedding_backward(g->tok_emb, g->pos_emb, a->dresidual, tokens, B, T, D, pool);
}

/* ---- accounting ------------------------------------------------------------------------------ */

double peer_model_forward_flops_per_token(const model_config *cfg, int T)
{
    double D = cfg->d_model, V = cfg->vocab_size;
    double flops = 2.0 * D * V; /* tied unembedding */
    for (int l = 0; l < cfg->n_layers; l++) {
        const ffn_config *ffn = &cfg->layers[l];
        /* qkv and output projections, and causal attention: on average (T+1)/2 positions get a
         * score and a weighted value each. */
        flops += 2.0 * (3.0 * D * D + D * D) + 2.0 * 2.0 * D * (T + 1) / 2.0;
        switch (ffn->kind) {
        case FFN_DENSE: flops += 2.0 * 2.0 * D * ffn->d_ff; break;
        case FFN_PEER:
        case FFN_PKM: {
            peer_layer_config p = ffn->peer;
            p.d_model = cfg->d_model;
            flops += peer_layer_forward_flops_per_token(&p);
            if (ffn->kind == FFN_PKM) /* no u·x */
                flops -= 2.0 * p.heads * p.topk * D;
            break;
        }
        case FFN_MOE:
            flops += 2.0 * D * ffn->moe_experts + ffn->moe_topk * 2.0 * 2.0 * D * ffn->d_ff;
            break;
        }
    }
    return flops;
}

void peer_model_accumulate_stats(const peer_model *model, expert_stats *const *stats)
{
    int BT = model->last_B * model->last_T;
    for (int l = 0; l < model->cfg.n_layers; l++) {
        const ffn_config *ffn = &model->cfg.layers[l];
        if (!stats[l] || (ffn->kind != FFN_PEER && ffn->kind != FFN_PKM))
            continue;
        const peer_layer_acts *acts = &model->acts.peer[l];
        expert_stats_accumulate(stats[l], acts->expert, acts->gate,
                                ffn->kind == FFN_PKM ? NULL : acts->preact, BT, ffn->peer.topk,
                                ffn->peer.activation);
    }
}
