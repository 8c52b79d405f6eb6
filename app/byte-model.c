#include "byte-model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cross-entropy.h"
#include "linear.h"
#include "rng.h"

#define V BYTE_MODEL_VOCAB
#define C BYTE_MODEL_CONTEXT

static size_t weights_count(int D)
{
    return (size_t)V * D + (size_t)D * C * D + D + (size_t)V * D + V;
}

static void weights_point(byte_model_weights *w, int D, float *arena)
{
    w->tok_emb = arena;
    w->in_weight = w->tok_emb + (size_t)V * D;
    w->in_bias = w->in_weight + (size_t)D * C * D;
    w->out_weight = w->in_bias + D;
    w->out_bias = w->out_weight + (size_t)V * D;
}

static float *alloc_floats(size_t n, const char *what, peer_error *err)
{
    float *p = calloc(n, sizeof(float));
    if (!p)
        peer_error_set(err, "out of memory allocating %s (%zu floats)", what, n);
    return p;
}

bool byte_model_init(byte_model *model, const peer_layer_config *cfg, int max_tokens,
                     uint64_t seed, peer_error *err)
{
    memset(model, 0, sizeof(*model));
    if (!peer_layer_config_validate(cfg, err))
        return false;
    if (max_tokens < 1)
        return peer_error_set(err, "max_tokens is %d; it must be at least 1", max_tokens);
    model->cfg = *cfg;
    model->max_tokens = max_tokens;
    int D = cfg->d_model;
    size_t BT = (size_t)max_tokens;

    size_t dense = weights_count(D);
    model->n_params = dense + peer_layer_params_count(cfg);
    model->n_grads = dense + peer_layer_grads_count(cfg);
    if (!(model->params_memory = alloc_floats(model->n_params, "the parameters", err)) ||
        !(model->grads_memory = alloc_floats(model->n_grads, "the gradients", err)))
        goto fail;
    weights_point(&model->params, D, model->params_memory);
    weights_point(&model->grads, D, model->grads_memory);
    peer_layer_params_point(&model->peer, cfg, model->params_memory + dense);
    peer_layer_grads_point(&model->peer_grads, cfg, model->grads_memory + dense);
    if (!peer_sparse_grad_init(&model->sparse, cfg->n_experts, D, err) ||
        !peer_layer_acts_init(&model->peer_acts, cfg, max_tokens, err))
        goto fail;

    if (!(model->embedded = alloc_floats(BT * C * D, "activations", err)) ||
        !(model->x = alloc_floats(BT * D, "activations", err)) ||
        !(model->peer_out = alloc_floats(BT * D, "activations", err)) ||
        !(model->residual = alloc_floats(BT * D, "activations", err)) ||
        !(model->logits = alloc_floats(BT * V, "activations", err)) ||
        !(model->probs = alloc_floats(BT * V, "activations", err)) ||
        !(model->losses = alloc_floats(BT, "activations", err)) ||
        !(model->dlogits = alloc_floats(BT * V, "activations", err)) ||
        !(model->dresidual = alloc_floats(BT * D, "activations", err)) ||
        !(model->dx = alloc_floats(BT * D, "activations", err)) ||
        !(model->dembedded = alloc_floats(BT * C * D, "activations", err)))
        goto fail;

    /* Unit-variance embeddings and a 1/√fan-in input projection keep x near unit scale, which
     * the experts' u_i ~ N(0, 1/√D) expect. The output starts small so the first predictions
     * are close to uniform (8 bits per byte) rather than confidently wrong. */
    peer_rng rng;
    peer_rng_seed(&rng, seed);
    peer_rng_fill_normal(&rng, model->params.tok_emb, (size_t)V * D, 1.0f);
    peer_rng_fill_normal(&rng, model->params.in_weight, (size_t)D * C * D, 1.0f / sqrtf(C * D));
    peer_rng_fill_normal(&rng, model->params.out_weight, (size_t)V * D, 0.02f);
    peer_layer_params_init(&model->peer, cfg, &rng);
    return true;

fail:
    byte_model_free(model);
    return false;
}

void byte_model_free(byte_model *model)
{
    free(model->params_memory);
    free(model->grads_memory);
    free(model->m_memory);
    free(model->v_memory);
    free(model->m_down);
    free(model->v_down);
    free(model->m_up);
    free(model->v_up);
    peer_sparse_grad_free(&model->sparse);
    peer_layer_acts_free(&model->peer_acts);
    free(model->embedded);
    free(model->x);
    free(model->peer_out);
    free(model->residual);
    free(model->logits);
    free(model->probs);
    free(model->losses);
    free(model->dlogits);
    free(model->dresidual);
    free(model->dx);
    free(model->dembedded);
    memset(model, 0, sizeof(*model));
}

size_t byte_model_dense_count(const byte_model *model)
{
    return model->n_grads;
}

size_t byte_model_expert_count(const byte_model *model)
{
    return 2 * (size_t)model->cfg.n_experts * model->cfg.d_model;
}

/* out (BT, C·D): the embeddings of each token's C context bytes side by side. */
static void embed_forward(float *out, const uint8_t *context, const float *tok_emb, int BT, int D)
{
    for (int t = 0; t < BT; t++)
        for (int c = 0; c < C; c++)
            memcpy(out + ((size_t)t * C + c) * D, tok_emb + (size_t)context[t * C + c] * D,
                   (size_t)D * sizeof(float));
}

/* dtok_emb (V, D) += the slices of dout (BT, C·D). Serial: the same byte appears in many
 * contexts, and a fixed order of additions keeps runs reproducible. */
static void embed_backward(float *dtok_emb, const float *dout, const uint8_t *context, int BT,
                           int D)
{
    for (int t = 0; t < BT; t++)
        for (int c = 0; c < C; c++) {
            float *row = dtok_emb + (size_t)context[t * C + c] * D;
            const float *d = dout + ((size_t)t * C + c) * D;
            for (int i = 0; i < D; i++)
                row[i] += d[i];
        }
}

float byte_model_forward(byte_model *model, const uint8_t *context, const uint8_t *targets,
                         int BT, peer_mode mode, thread_pool *pool)
{
    int D = model->cfg.d_model;
    const byte_model_weights *p = &model->params;
    size_t n = (size_t)BT * D;

    embed_forward(model->embedded, context, p->tok_emb, BT, D);
    linear_forward(model->x, model->embedded, p->in_weight, p->in_bias, BT, C * D, D, pool);
    peer_layer_forward(model->peer_out, &model->peer_acts, model->x, &model->peer, &model->cfg,
                       BT, mode, PEER_SELECT_RETRIEVE, pool);
    for (size_t i = 0; i < n; i++)
        model->residual[i] = model->x[i] + model->peer_out[i];
    linear_forward(model->logits, model->residual, p->out_weight, p->out_bias, BT, D, V, pool);
    if (!targets)
        return 0.0f;
    return (float)cross_entropy_forward(model->probs, model->losses, model->logits, targets, BT,
                                        V, pool);
}

void byte_model_zero_grad(byte_model *model)
{
    memset(model->grads_memory, 0, model->n_grads * sizeof(float));
    peer_sparse_grad_zero(&model->sparse);
}

void byte_model_backward(byte_model *model, const uint8_t *context, const uint8_t *targets,
                         int BT, thread_pool *pool)
{
    int D = model->cfg.d_model;
    const byte_model_weights *p = &model->params;
    byte_model_weights *g = &model->grads;
    size_t n = (size_t)BT * D;

    memset(model->dlogits, 0, (size_t)BT * V * sizeof(float));
    cross_entropy_backward(model->dlogits, model->probs, targets, BT, V, 1.0f / BT, pool);

    memset(model->dresidual, 0, n * sizeof(float));
    linear_backward(model->dresidual, g->out_weight, g->out_bias, model->dlogits,
                    model->residual, p->out_weight, BT, D, V, pool);

    /* The residual path hands dresidual straight to x; the PEER layer adds its own part. */
    memcpy(model->dx, model->dresidual, n * sizeof(float));
    peer_layer_backward(model->dx, &model->peer_grads, &model->sparse, &model->peer_acts,
                        model->dresidual, model->x, &model->peer, &model->cfg, BT, pool);

    memset(model->dembedded, 0, n * C * sizeof(float));
    linear_backward(model->dembedded, g->in_weight, g->in_bias, model->dx, model->embedded,
                    p->in_weight, BT, C * D, D, pool);
    embed_backward(g->tok_emb, model->dembedded, context, BT, D);
}

bool byte_model_update(byte_model *model, const adam_config *dense, const adam_config *experts,
                       int step, thread_pool *pool, peer_error *err)
{
    int D = model->cfg.d_model;
    size_t table = (size_t)model->cfg.n_experts * D;
    if (!model->m_memory) {
        if (!(model->m_memory = alloc_floats(model->n_grads, "Adam moments", err)) ||
            !(model->v_memory = alloc_floats(model->n_grads, "Adam moments", err)) ||
            !(model->m_down = alloc_floats(table, "Adam moments", err)) ||
            !(model->v_down = alloc_floats(table, "Adam moments", err)) ||
            !(model->m_up = alloc_floats(table, "Adam moments", err)) ||
            !(model->v_up = alloc_floats(table, "Adam moments", err)))
            return false;
    }

    size_t dense_weights = weights_count(D);
    adam_update(model->params_memory, model->grads_memory, model->m_memory, model->v_memory,
                dense_weights, dense, step, pool);

    /* The PEER layer's parameter arena also holds buffers and the expert tables, which its
     * gradient arena leaves out, so its tensors are matched one by one. */
    for (int t = 0; t < PEER_LAYER_N_TENSORS; t++) {
        size_t size = peer_layer_tensor_size(&model->cfg, (peer_layer_tensor)t);
        if (size == 0 || peer_layer_tensor_is_buffer((peer_layer_tensor)t) ||
            peer_layer_tensor_is_expert_table((peer_layer_tensor)t))
            continue;
        float *param = *peer_layer_params_field(&model->peer, (peer_layer_tensor)t);
        float *grad = *peer_layer_params_field(&model->peer_grads, (peer_layer_tensor)t);
        size_t offset = (size_t)(grad - model->grads_memory);
        adam_update(param, grad, model->m_memory + offset, model->v_memory + offset, size, dense,
                    step, pool);
    }

    const peer_sparse_grad *s = &model->sparse;
    adam_update_rows(model->peer.down, s->rows, s->n_rows, s->down, model->m_down, model->v_down,
                     D, experts, step, pool);
    adam_update_rows(model->peer.up, s->rows, s->n_rows, s->up, model->m_up, model->v_up, D,
                     experts, step, pool);
    return true;
}
