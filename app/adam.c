#include "adam.h"

#include <math.h>

/* Work per task: large enough that handing it to a thread costs little beside it. */
#define ADAM_CHUNK 16384
#define ADAM_ROW_BLOCK 64

typedef struct {
    float *param;
    const float *grad;
    float *m;
    float *v;
    size_t n;
    const int32_t *rows; /* adam_update_rows only */
    int n_rows;
    int D;
    float beta1, beta2, eps, learning_rate;
    float inv_correction1, inv_correction2;
} adam_job;

static void adam_span(const adam_job *job, float *param, const float *grad, float *m, float *v,
                      size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float g = grad[i];
        m[i] = job->beta1 * m[i] + (1.0f - job->beta1) * g;
        v[i] = job->beta2 * v[i] + (1.0f - job->beta2) * g * g;
        float m_hat = m[i] * job->inv_correction1;
        float v_hat = v[i] * job->inv_correction2;
        param[i] -= job->learning_rate * m_hat / (sqrtf(v_hat) + job->eps);
    }
}

static void adam_job_init(adam_job *job, const adam_config *cfg, int step)
{
    job->beta1 = cfg->beta1;
    job->beta2 = cfg->beta2;
    job->eps = cfg->eps;
    job->learning_rate = cfg->learning_rate;
    job->inv_correction1 = 1.0f / (1.0f - powf(cfg->beta1, (float)step));
    job->inv_correction2 = 1.0f / (1.0f - powf(cfg->beta2, (float)step));
}

static void dense_chunk(void *ctx, int task, int thread)
{
    const adam_job *job = ctx;
    size_t start = (size_t)task * ADAM_CHUNK;
    size_t n = job->n - start < ADAM_CHUNK ? job->n - start : ADAM_CHUNK;
    adam_span(job, job->param + start, job->grad + start, job->m + start, job->v + start, n);
}

void adam_update(float *param, const float *grad, float *m, float *v, size_t n,
                 const adam_config *cfg, int step, thread_pool *pool)
{
    adam_job job = { .param = param, .grad = grad, .m = m, .v = v, .n = n };
    adam_job_init(&job, cfg, step);
    thread_pool_run(pool, (int)((n + ADAM_CHUNK - 1) / ADAM_CHUNK), dense_chunk, &job);
}

static void row_block(void *ctx, int task, int thread)
{
    const adam_job *job = ctx;
    int first = task * ADAM_ROW_BLOCK;
    int last = first + ADAM_ROW_BLOCK < job->n_rows ? first + ADAM_ROW_BLOCK : job->n_rows;
    for (int r = first; r < last; r++) {
        size_t offset = (size_t)job->rows[r] * job->D;
        adam_span(job, job->param + offset, job->grad + (size_t)r * job->D, job->m + offset,
                  job->v + offset, (size_t)job->D);
    }
}

void adam_update_rows(float *table, const int32_t *rows, int n_rows, const float *grad, float *m,
                      float *v, int D, const adam_config *cfg, int step, thread_pool *pool)
{
    adam_job job = { .param = table, .grad = grad, .m = m, .v = v, .rows = rows,
                     .n_rows = n_rows, .D = D };
    adam_job_init(&job, cfg, step);
    thread_pool_run(pool, (n_rows + ADAM_ROW_BLOCK - 1) / ADAM_ROW_BLOCK, row_block, &job);
}
