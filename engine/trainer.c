#include "trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void train_settings_default(train_settings *s, const model_config *cfg)
{
    memset(s, 0, sizeof *s);
    s->batch_size = 16;
    s->seq_len = cfg->context;
    s->steps = 2000;
    s->lr = 3e-3f;
    s->min_lr = 3e-4f;
    s->warmup = 100;
    s->expert_lr = 1e-3f;
    s->grad_clip = 1.0f;
    s->adam = (adamw_settings){ .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                                .weight_decay = 0.1f };
    s->moe_aux_weight = 0.01f;
    s->seed = 1337;
    s->eval_interval = 200;
    s->eval_windows = 16;
}

bool train_settings_validate(const train_settings *s, const model_config *cfg, peer_error *err)
{
    if (s->batch_size < 1 || s->batch_size > 4096)
        return peer_error_set(err, "batch_size = %d: use 1 to 4096 sequences per step",
                              s->batch_size);
    if (s->seq_len < 1 || s->seq_len > cfg->context)
        return peer_error_set(err, "seq_len = %d: use 1 to the model's context (%d)", s->seq_len,
                              cfg->context);
    if (s->steps < 0)
        return peer_error_set(err, "steps = %ld: use 0 or more", s->steps);
    if (!(s->lr >= 0.0f && s->lr <= 1.0f))
        return peer_error_set(err, "lr = %g: use a learning rate from 0 to 1, e.g. 3e-3",
                              (double)s->lr);
    if (!(s->min_lr >= 0.0f && s->min_lr <= s->lr))
        return peer_error_set(err, "min_lr = %g: use 0 to lr (%g)", (double)s->min_lr,
                              (double)s->lr);
    if (s->warmup < 0)
        return peer_error_set(err, "warmup = %ld: use 0 or more steps", s->warmup);
    if (!(s->expert_lr >= 0.0f && s->expert_lr <= 1.0f))
        return peer_error_set(err, "expert_lr = %g: use 0 to 1, e.g. 1e-3",
                              (double)s->expert_lr);
    if (!(s->grad_clip >= 0.0f) || isinf(s->grad_clip))
        return peer_error_set(err, "grad_clip = %g: use a finite norm, or 0 for no clipping",
                              (double)s->grad_clip);
    if (!(s->adam.beta1 >= 0.0f && s->adam.beta1 < 1.0f))
        return peer_error_set(err, "beta1 = %g: use 0 <= beta1 < 1", (double)s->adam.beta1);
    if (!(s->adam.beta2 >= 0.0f && s->adam.beta2 < 1.0f))
        return peer_error_set(err, "beta2 = %g: use 0 <= beta2 < 1", (double)s->adam.beta2);
    if (!(s->adam.eps > 0.0f) || isinf(s->adam.eps))
        return peer_error_set(err, "eps = %g: use a small positive number, e.g. 1e-8",
                              (double)s->adam.eps);
    if (!(s->adam.weight_decay >= 0.0f) || isinf(s->adam.weight_decay))
        return peer_error_set(err, "weight_decay = %g: use 0 or more, e.g. 0.1",
                              (double)s->adam.weight_decay);
    if (!(s->moe_aux_weight >= 0.0f) || isinf(s->moe_aux_weight))
        return peer_error_set(err, "moe_aux_weight = %g: use 0 or more, e.g. 0.01",
                              (double)s->moe_aux_weight);
    if (s->eval_interval < 0)
        return peer_error_set(err, "eval_interval = %ld: use 0 (never) or more steps",
                              s->eval_interval);
    if (s->eval_windows < 1)
        return peer_error_set(err, "eval_windows = %d: use 1 or more", s->eval_windows);
    return true;
}

bool trainer_init(trainer *tr, const model_config *cfg, const train_settings *settings,
                  const corpus *data, peer_error *err)
{
    memset(tr, 0, sizeof *tr);
    if (!train_settings_validate(settings, cfg, err))
        return false;
    tr->settings = *settings;
    tr->data = data;
    tr->model = peer_model_new(cfg, settings->batch_size, settings->seq_len, settings->seed, err);
    if (!tr->model)
        return false;
    tr->model->moe_aux_weight = settings->moe_aux_weight;
    if (!optimizer_init(&tr->opt, tr->model, err)) {
        trainer_free(tr);
        return false;
    }
    size_t BT = (size_t)settings->batch_size * settings->seq_len;
    tr->batch_tokens = malloc(BT);
    tr->batch_targets = malloc(BT);
    for (int i = 0; i < tr->model->n_tensors; i++)
        if (tr->model->tensors[i].buffer)
            tr->n_buffer_floats += tr->model->tensors[i].n_elements;
    tr->saved_buffers = malloc((tr->n_buffer_floats ? tr->n_buffer_floats : 1) * sizeof(float));
    if (!tr->batch_tokens || !tr->batch_targets || !tr->saved_buffers) {
        trainer_free(tr);
        return peer_error_set(err, "out of memory for a batch");
    }
    /* Batch order has its own stream, so it does not shift when the model's shape changes. */
    peer_rng_seed(&tr->data_rng, settings->seed ^ 0x5eed0fba7c4e5ull);
    return true;
}

void trainer_free(trainer *tr)
{
    optimizer_free(&tr->opt);
    peer_model_free(tr->model);
    free(tr->batch_tokens);
    free(tr->batch_targets);
    free(tr->saved_buffers);
    memset(tr, 0, sizeof *tr);
}

float trainer_lr_at(const train_settings *s, long step)
{
    if (step < s->warmup)
        return s->lr * (float)(step + 1) / (float)s->warmup;
    long decay_steps = s->steps - s->warmup;
    if (decay_steps <= 0)
        return s->lr;
    double progress = (double)(step - s->warmup) / (double)decay_steps;
    if (progress > 1.0)
        progress = 1.0;
    double cosine = 0.5 * (1.0 + cos(M_PI * progress));
    return (float)(s->min_lr + (s->lr - s->min_lr) * cosine);
}

/* The running statistics, which a training forward updates before its loss is known. */
static void copy_buffers(trainer *tr, bool restore)
{
    float *saved = tr->saved_buffers;
    for (int i = 0; i < tr->model->n_tensors; i++) {
        const model_tensor *t = &tr->model->tensors[i];
        if (!t->buffer)
            continue;
        if (restore)
            memcpy(t->param, saved, t->n_elements * sizeof(float));
        else
            memcpy(saved, t->param, t->n_elements * sizeof(float));
        saved += t->n_elements;
    }
}

bool trainer_step(trainer *tr, thread_pool *pool, peer_error *err)
{
    const train_settings *s = &tr->settings;
    int B = s->batch_size, T = s->seq_len;
    corpus_train_batch(tr->data, &tr->data_rng, B, T, tr->batch_tokens, tr->batch_targets);
    copy_buffers(tr, false);
    double loss = peer_model_forward(tr->model, tr->batch_tokens, tr->batch_targets, B, T,
                                     PEER_MODE_TRAIN, pool);
    if (!isfinite(loss)) {
        copy_buffers(tr, true);
        return peer_error_set(err,
                              "the loss became %s at step %ld: training stopped with the weights "
                              "of step %ld; lower the learning rate (now %g) or the gradient clip",
                              isnan(loss) ? "NaN" : "infinite", tr->step + 1, tr->step,
                              (double)trainer_lr_at(s, tr->step));
    }
    peer_model_zero_grad(tr->model);
    peer_model_backward(tr->model, tr->batch_tokens, tr->batch_targets, pool);
    optimizer_drop_frozen_grads(&tr->opt, tr->model);
    double norm = optimizer_grad_norm(tr->model);
    if (!isfinite(norm)) {
        copy_buffers(tr, true);
        return peer_error_set(err,
                              "the gradient became %s at step %ld: training stopped with the "
                              "weights of step %ld; lower the learning rate (now %g)",
                              isnan(norm) ? "NaN" : "infinite", tr->step + 1, tr->step,
                              (double)trainer_lr_at(s, tr->step));
    }
    float scale = 1.0f;
    if (s->grad_clip > 0.0f && norm > s->grad_clip)
        scale = (float)(s->grad_clip / norm);
    float lr = trainer_lr_at(s, tr->step);
    optimizer_step(&tr->opt, tr->model, &s->adam, lr, s->expert_lr, scale, pool);

    tr->step++;
    tr->tokens += (double)B * T;
    tr->flops += 3.0 * peer_model_forward_flops_per_token(&tr->model->cfg, T) * B * T;
    tr->last_loss = tr->model->last_ce;
    tr->last_grad_norm = norm;
    tr->last_lr = lr;
    return true;
}

bool trainer_evaluate(trainer *tr, int windows, eval_result *out, thread_pool *pool,
                      peer_error *err)
{
    memset(out, 0, sizeof *out);
    peer_model *model = tr->model;
    int B = model->batch, T = model->seq;
    size_t available = corpus_validation_windows(tr->data, T);
    if (windows < 1 || (size_t)windows > available)
        return peer_error_set(err,
                              "%d validation windows asked for, but the validation text holds "
                              "%zu windows of %d bytes: use 1 to %zu",
                              windows, available, T + 1, available);
    expert_stats stats[MODEL_MAX_LAYERS];
    expert_stats *stats_of[MODEL_MAX_LAYERS] = { 0 };
    bool ok = true;
    for (int l = 0; l < model->cfg.n_layers; l++) {
        const ffn_config *ffn = &model->cfg.layers[l];
        if (ffn->kind != FFN_PEER && ffn->kind != FFN_PKM)
            continue;
        if (!expert_stats_init(&stats[l], ffn->peer.n_experts, ffn->peer.heads, err)) {
            ok = false;
            break;
        }
        stats_of[l] = &stats[l];
    }
    double loss_sum = 0.0;
    long tokens = 0;
    for (int w = 0; ok && w < windows; w += B) {
        int count = windows - w < B ? windows - w : B;
        for (int b = 0; b < count; b++)
            corpus_validation_window(tr->data, (size_t)(w + b), T, tr->batch_tokens + b * T,
                                     tr->batch_targets + b * T);
        peer_model_forward(model, tr->batch_tokens, tr->batch_targets, count, T, PEER_MODE_EVAL,
                           pool);
        loss_sum += model->last_ce * count * T;
        tokens += (long)count * T;
        peer_model_accumulate_stats(model, stats_of);
    }
    if (ok) {
        out->loss = loss_sum / (double)tokens;
        out->bits_per_byte = out->loss / M_LN2;
        out->perplexity = exp(out->loss);
        out->tokens = tokens;
        for (int l = 0; l < model->cfg.n_layers; l++)
            if (stats_of[l])
                expert_stats_usage(stats_of[l], -1, false, &out->usage[l]);
    }
    for (int l = 0; l < model->cfg.n_layers; l++)
        if (stats_of[l])
            expert_stats_free(stats_of[l]);
    return ok;
}
