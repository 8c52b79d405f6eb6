#include "optimizer.h"

#include <math.h>
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
    int table; /* for the sparse pass */
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
        adam_update_span(job, t->param + (lo - t_begin), job->opt->m + lo, job->opt->v + lo,
                         model->grads_memory + lo, hi - lo, job->lr, decay);
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
        int rows = model->sparse[t->layer].n_rows;
        thread_pool_run(pool, (rows + 63) / 64, sparse_step_block, &job);
    }
}
