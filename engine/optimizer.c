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

static void adam_update(float *param, float *m, float *v, float grad, float lr, float decay,
                        const step_job *job)
{
    const adamw_settings *s = job->settings;
    *m = s->beta1 * *m + (1.0f - s->beta1) * grad;
    *v = s->beta2 * *v + (1.0f - s->beta2) * grad * grad;
    float m_hat = *m / job->correction1, v_hat = *v / job->correction2;
    *param -= lr * (m_hat / (sqrtf(v_hat) + s->eps) + decay * *param);
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
        float decay = t->no_decay ? 0.0f : job->settings->weight_decay;
        for (size_t k = lo; k < hi; k++)
            adam_update(&t->param[k - t_begin], &job->opt->m[k], &job->opt->v[k],
                        model->grads_memory[k] * job->grad_scale, job->lr, decay, job);
    }
}

static void sparse_step_block(void *data, int task, int thread)
{
    const step_job *job = data;
    const peer_model *model = job->model;
    const model_tensor *t = &model->tensors[job->opt->table_tensor[job->table]];
    const peer_sparse_grad *sparse = &model->sparse[t->layer];
    const float *grad = table_sparse_grad(model, t);
    int D = sparse->d_model;
    int r0 = task * 64, r1 = r0 + 64 < sparse->n_rows ? r0 + 64 : sparse->n_rows;
    for (int r = r0; r < r1; r++) {
        size_t row = (size_t)sparse->rows[r] * D;
        for (int d = 0; d < D; d++)
            adam_update(&t->param[row + d], &job->opt->table_m[job->table][row + d],
                        &job->opt->table_v[job->table][row + d],
                        grad[(size_t)r * D + d] * job->grad_scale, job->expert_lr, 0.0f, job);
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
