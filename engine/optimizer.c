#include "optimizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPTIMIZER_BLOCK 65536

bool optimizer_init(optimizer_state *opt, const peer_model *model, peer_error *err)
{
    memset(opt, 0, sizeof *opt);
    opt->n_dense = model->n_grads;
    opt->m = calloc(opt->n_dense ? opt->n_dense : 1, sizeof(float));
    opt->v = calloc(opt->n_dense ? opt->n_dense : 1, sizeof(float));
    if (!opt->m || !opt->v)
        goto out_of_memory;
    for (int i = 0; i < model->n_tensors; i++) {
        const model_tensor *t = &model->tensors[i];
        if (!t->expert_table)
            continue;
        int k = opt->n_tables++;
        opt->table_tensor[k] = i;
        opt->table_m[k] = calloc(t->n_elements, sizeof(float));
        opt->table_v[k] = calloc(t->n_elements, sizeof(float));
        if (!opt->table_m[k] || !opt->table_v[k])
            goto out_of_memory;
    }
    return true;

out_of_memory:
    optimizer_free(opt);
    return peer_error_set(err, "out of memory for the optimiser state (%.1f GiB of parameters)",
                          (double)model->n_params * sizeof(float) / (1 << 30));
}

void optimizer_free(optimizer_state *opt)
{
    free(opt->m);
    free(opt->v);
    for (int k = 0; k < opt->n_tables; k++) {
        free(opt->table_m[k]);
        free(opt->table_v[k]);
    }
    memset(opt, 0, sizeof *opt);
}

/* ---- frozen experts -------------------------------------------------------------------------- */

int optimizer_frozen_side(const optimizer_state *opt, int layer)
{
    for (int f = 0; f < opt->n_frozen; f++)
        if (opt->frozen[f].layer == layer)
            return opt->frozen[f].side;
    return 0;
}

bool optimizer_freeze_experts(optimizer_state *opt, const peer_model *model, int layer, int side,
                              peer_error *err)
{
    if (layer < 0 || layer >= model->cfg.n_layers)
        return peer_error_set(err, "layer %d does not exist: the model has layers 0 to %d", layer,
                              model->cfg.n_layers - 1);
    const ffn_config *ffn = &model->cfg.layers[layer];
    if (ffn->kind != FFN_PEER && ffn->kind != FFN_PKM)
        return peer_error_set(err,
                              "layer %d is a %s block: only PEER and PKM layers have experts to "
                              "hold",
                              layer, ffn_kind_name(ffn->kind));
    int n = peer_layer_side(&ffn->peer);
    if (side < 0 || side > n)
        return peer_error_set(err,
                              "layer %d: cannot hold the first %d × %d experts of its %d × %d "
                              "grid: use 0 to %d",
                              layer, side, side, n, n, n);
    char name[64];
    snprintf(name, sizeof name, "blocks.%d.ffn.keys", layer);
    int keys = -1;
    for (int i = 0; i < model->n_tensors; i++)
        if (strcmp(model->tensors[i].name, name) == 0)
            keys = i;
    int f = 0;
    while (f < opt->n_frozen && opt->frozen[f].layer != layer)
        f++;
    if (side == 0) {
        if (f < opt->n_frozen)
            opt->frozen[f] = opt->frozen[--opt->n_frozen];
        return true;
    }
    if (f == opt->n_frozen)
        opt->n_frozen++;
    opt->frozen[f] = (optimizer_frozen_grid){ .layer = layer, .side = side, .keys_tensor = keys };
    return true;
}

static bool expert_is_frozen(int expert, int n, int side)
{
    return expert / n < side && expert % n < side;
}

void optimizer_drop_frozen_grads(const optimizer_state *opt, peer_model *model)
{
    for (int f = 0; f < opt->n_frozen; f++) {
        const optimizer_frozen_grid *grid = &opt->frozen[f];
        const peer_layer_config *cfg = &model->cfg.layers[grid->layer].peer;
        int n = peer_layer_side(cfg);
        size_t half = (size_t)cfg->d_key / 2;
        float *dkeys = model->tensors[grid->keys_tensor].grad;
        for (int block = 0; block < 2 * peer_layer_key_groups(cfg); block++)
            memset(dkeys + (size_t)block * n * half, 0, (size_t)grid->side * half * sizeof(float));
        peer_sparse_grad *sparse = &model->sparse[grid->layer];
        size_t D = (size_t)sparse->d_model;
        for (int r = 0; r < sparse->n_rows; r++) {
            if (!expert_is_frozen(sparse->rows[r], n, grid->side))
                continue;
            memset(sparse->up + (size_t)r * D, 0, D * sizeof(float));
            if (!cfg->values_only)
                memset(sparse->down + (size_t)r * D, 0, D * sizeof(float));
        }
    }
}

/* The sparse gradient rows of an expert table: PEER's u and v share one row list. */
static const float *table_sparse_grad(const peer_model *model, const model_tensor *t)
{
    const peer_sparse_grad *sparse = &model->sparse[t->layer];
    return strstr(t->name, ".down") ? sparse->down : sparse->up;
}

double optimizer_grad_norm(const peer_model *model)
{
    double sum = 0.0;
    for (size_t i = 0; i < model->n_grads; i++)
        sum += (double)model->grads_memory[i] * model->grads_memory[i];
    for (int i = 0; i < model->n_tensors; i++) {
        const model_tensor *t = &model->tensors[i];
        if (!t->expert_table)
            continue;
        const peer_sparse_grad *sparse = &model->sparse[t->layer];
        const float *grad = table_sparse_grad(model, t);
        size_t n = (size_t)sparse->n_rows * sparse->d_model;
        for (size_t k = 0; k < n; k++)
            sum += (double)grad[k] * grad[k];
    }
    return sqrt(sum);
}

typedef struct {
    optimizer_state *opt;
    peer_model *model;
    const adamw_settings *settings;
    float lr, expert_lr, grad_scale;
    float correction1, correction2;
    int table;       /* for the sparse pass */
    int table_side;  /* its grid's side n */
    int frozen_side; /* experts (a, b) with a, b below it are held; 0 for none */
} step_job;

/* Adam over a contiguous span; restrict lets the compiler vectorise it. */
static void adam_update_span(const step_job *job, float *restrict param, float *restrict m,
                             float *restrict v, const float *restrict grad, size_t n, float lr,
                             float decay)
{
    const adamw_settings *s = job->settings;
    float beta1 = s->beta1, beta2 = s->beta2, eps = s->eps, scale = job->grad_scale;
    float inv1 = 1.0f / job->correction1, inv2 = 1.0f / job->correction2;
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] * scale;
        m[i] = beta1 * m[i] + (1.0f - beta1) * g;
        v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
        param[i] -= lr * ((m[i] * inv1) / (sqrtf(v[i] * inv2) + eps) + decay * param[i]);
    }
}

static void dense_step_block(void *data, int task, int thread)
{
    const step_job *job = data;
    const peer_model *model = job->model;
    size_t begin = (size_t)task * OPTIMIZER_BLOCK;
    size_t end = begin + OPTIMIZER_BLOCK < job->opt->n_dense ? begin + OPTIMIZER_BLOCK
                                                              : job->opt->n_dense;
    /* Walk the tensors overlapping [begin, end): each knows whether it takes weight decay. */
    for (int i = 0; i < model->n_tensors; i++) {
        const model_tensor *t = &model->tensors[i];
        if (!t->grad)
            continue;
        size_t t_begin = (size_t)(t->grad - model->grads_memory), t_end = t_begin + t->n_elements;
        size_t lo = t_begin > begin ? t_begin : begin, hi = t_end < end ? t_end : end;
        if (lo >= hi)
            continue;
        float decay = t->no_decay ? 0.0f : job->settings->weight_decay;
        int held = 0;
        for (int f = 0; f < job->opt->n_frozen; f++)
            if (job->opt->frozen[f].keys_tensor == i)
                held = job->opt->frozen[f].side;
        if (held == 0) {
            adam_update_span(job, t->param + (lo - t_begin), job->opt->m + lo, job->opt->v + lo,
                             model->grads_memory + lo, hi - lo, job->lr, decay);
            continue;
        }
        /* Keys (G, 2, n, dk/2): in each of the 2G blocks of n sub-keys the first `held` stay. */
        size_t half = (size_t)t->shape[3], block = (size_t)t->shape[2] * half;
        for (size_t start = (lo - t_begin) / block * block; t_begin + start < hi; start += block) {
            size_t from = t_begin + start + (size_t)held * half, to = t_begin + start + block;
            from = from > lo ? from : lo;
            to = to < hi ? to : hi;
            if (from < to)
                adam_update_span(job, t->param + (from - t_begin), job->opt->m + from,
                                 job->opt->v + from, model->grads_memory + from, to - from,
                                 job->lr, decay);
        }
    }
}

static void sparse_step_block(void *data, int task, int thread)
{
    const step_job *job = data;
    const peer_model *model = job->model;
    const model_tensor *t = &model->tensors[job->opt->table_tensor[job->table]];
    const peer_sparse_grad *sparse = &model->sparse[t->layer];
    const float *grad = table_sparse_grad(model, t);
    size_t D = (size_t)sparse->d_model;
    int r0 = task * 64, r1 = r0 + 64 < sparse->n_rows ? r0 + 64 : sparse->n_rows;
    for (int r = r0; r < r1; r++) {
        if (job->frozen_side && expert_is_frozen(sparse->rows[r], job->table_side,
                                                 job->frozen_side))
            continue;
        size_t row = (size_t)sparse->rows[r] * D;
        adam_update_span(job, t->param + row, job->opt->table_m[job->table] + row,
                         job->opt->table_v[job->table] + row, grad + (size_t)r * D, D,
                         job->expert_lr, 0.0f);
    }
}

void optimizer_step(optimizer_state *opt, peer_model *model, const adamw_settings *settings,
                    float lr, float expert_lr, float grad_scale, thread_pool *pool)
{
    opt->step++;
    step_job job = { .opt = opt, .model = model, .settings = settings, .lr = lr,
                     .expert_lr = expert_lr, .grad_scale = grad_scale };
    job.correction1 = 1.0f - powf(settings->beta1, (float)opt->step);
    job.correction2 = 1.0f - powf(settings->beta2, (float)opt->step);
    int dense_tasks = (int)((opt->n_dense + OPTIMIZER_BLOCK - 1) / OPTIMIZER_BLOCK);
    thread_pool_run(pool, dense_tasks, dense_step_block, &job);
    for (int k = 0; k < opt->n_tables; k++) {
        job.table = k;
        const model_tensor *t = &model->tensors[opt->table_tensor[k]];
        job.table_side = peer_layer_side(&model->cfg.layers[t->layer].peer);
        job.frozen_side = optimizer_frozen_side(opt, t->layer);
        int rows = model->sparse[t->layer].n_rows;
        thread_pool_run(pool, (rows + 63) / 64, sparse_step_block, &job);
    }
}
