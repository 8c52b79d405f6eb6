#include "query-norm.h"

#include <math.h>

/* Task sizes fixed so results do not depend on the thread count. A feature block reads 64
 * features, four cache lines, of every token row: with one line (16) the batch-norm forward of
 * 4096 × 1024 queries took twice as long and its backward a third longer. */
#define NORM_FEATURE_BLOCK 64
#define NORM_TOKEN_BLOCK 64

static int min_int(int a, int b)
{
    return a < b ? a : b;
}

typedef struct {
    float *out, *dinp, *dweight, *dbias, *mean, *rstd, *running_mean, *running_var;
    const float *inp, *dout, *weight, *bias;
    int BT, F, heads, d_key;
    peer_mode mode;
} norm_job;

static void batch_stats_block(void *data, int task, int thread)
{
    const norm_job *job = data;
    int f0 = task * NORM_FEATURE_BLOCK, f1 = min_int(job->F, f0 + NORM_FEATURE_BLOCK);
    double sum[NORM_FEATURE_BLOCK] = { 0 }, sq[NORM_FEATURE_BLOCK] = { 0 };
    for (int t = 0; t < job->BT; t++) {
        const float *row = job->inp + (size_t)t * job->F;
        for (int f = f0; f < f1; f++)
            sum[f - f0] += row[f];
    }
    for (int f = f0; f < f1; f++)
        sum[f - f0] /= job->BT;
    for (int t = 0; t < job->BT; t++) {
        const float *row = job->inp + (size_t)t * job->F;
        for (int f = f0; f < f1; f++) {
            double d = row[f] - sum[f - f0];
            sq[f - f0] += d * d;
        }
    }
    for (int f = f0; f < f1; f++) {
        double mean = sum[f - f0];
        double var = sq[f - f0] / job->BT;
        job->mean[f] = (float)mean;
        job->rstd[f] = (float)(1.0 / sqrt(var + PEER_BATCH_NORM_EPS));
        double unbiased = job->BT > 1 ? sq[f - f0] / (job->BT - 1) : var;
        float m = PEER_BATCH_NORM_MOMENTUM;
        job->running_mean[f] = (1.0f - m) * job->running_mean[f] + m * (float)mean;
        job->running_var[f] = (1.0f - m) * job->running_var[f] + m * (float)unbiased;
    }
}

static void batch_apply_block(void *data, int task, int thread)
{
    const norm_job *job = data;
    int t0 = task * NORM_TOKEN_BLOCK, t1 = min_int(job->BT, t0 + NORM_TOKEN_BLOCK);
    for (int t = t0; t < t1; t++) {
        const float *x = job->inp + (size_t)t * job->F;
        float *y = job->out + (size_t)t * job->F;
        for (int f = 0; f < job->F; f++)
            y[f] = (x[f] - job->mean[f]) * job->rstd[f] * job->weight[f] + job->bias[f];
    }
}

void batch_norm_forward(float *out, float *mean, float *rstd, const float *inp,
                        const float *weight, const float *bias, float *running_mean,
                        float *running_var, int BT, int F, peer_mode mode, thread_pool *pool)
{
    norm_job job = { .out = out, .mean = mean, .rstd = rstd, .inp = inp, .weight = weight,
                     .bias = bias, .running_mean = running_mean, .running_var = running_var,
                     .BT = BT, .F = F, .mode = mode };
    if (mode == PEER_MODE_TRAIN) {
        thread_pool_run(pool, (F + NORM_FEATURE_BLOCK - 1) / NORM_FEATURE_BLOCK,
                        batch_stats_block, &job);
    } else {
        for (int f = 0; f < F; f++) {
            mean[f] = running_mean[f];
            rstd[f] = 1.0f / sqrtf(running_var[f] + PEER_BATCH_NORM_EPS);
        }
    }
    thread_pool_run(pool, (BT + NORM_TOKEN_BLOCK - 1) / NORM_TOKEN_BLOCK, batch_apply_block, &job);
}

static void batch_backward_block(void *data, int task, int thread)
{
    const norm_job *job = data;
    int f0 = task * NORM_FEATURE_BLOCK, f1 = min_int(job->F, f0 + NORM_FEATURE_BLOCK);
    /* Σ dy and Σ dy·x̂ per feature: the weight and bias gradients, and in training the two
     * terms through which every token's statistics reach every other token. */
    double sum_dy[NORM_FEATURE_BLOCK] = { 0 }, sum_dy_xhat[NORM_FEATURE_BLOCK] = { 0 };
    for (int t = 0; t < job->BT; t++) {
        const float *x = job->inp + (size_t)t * job->F;
        const float *dy = job->dout + (size_t)t * job->F;
        for (int f = f0; f < f1; f++) {
            float xhat = (x[f] - job->mean[f]) * job->rstd[f];
            sum_dy[f - f0] += dy[f];
            sum_dy_xhat[f - f0] += (double)dy[f] * xhat;
        }
    }
    for (int f = f0; f < f1; f++) {
        job->dweight[f] += (float)sum_dy_xhat[f - f0];
        job->dbias[f] += (float)sum_dy[f - f0];
    }
    for (int t = 0; t < job->BT; t++) {
        const float *x = job->inp + (size_t)t * job->F;
        const float *dy = job->dout + (size_t)t * job->F;
        float *dx = job->dinp + (size_t)t * job->F;
        for (int f = f0; f < f1; f++) {
            float scale = job->weight[f] * job->rstd[f];
            if (job->mode == PEER_MODE_TRAIN) {
                float xhat = (x[f] - job->mean[f]) * job->rstd[f];
                float mean_dy = (float)(sum_dy[f - f0] / job->BT);
                float mean_dy_xhat = (float)(sum_dy_xhat[f - f0] / job->BT);
                dx[f] = scale * (dy[f] - mean_dy - xhat * mean_dy_xhat);
            } else {
                dx[f] = scale * dy[f];
            }
        }
    }
}

void batch_norm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                         const float *inp, const float *mean, const float *rstd,
                         const float *weight, int BT, int F, peer_mode mode, thread_pool *pool)
{
    norm_job job = { .dinp = dinp, .dweight = dweight, .dbias = dbias, .dout = dout,
                     .inp = inp, .mean = (float *)mean, .rstd = (float *)rstd, .weight = weight,
                     .BT = BT, .F = F, .mode = mode };
    thread_pool_run(pool, (F + NORM_FEATURE_BLOCK - 1) / NORM_FEATURE_BLOCK, batch_backward_block,
                    &job);
}

static void head_forward_block(void *data, int task, int thread)
{
    const norm_job *job = data;
    int t0 = task * NORM_TOKEN_BLOCK, t1 = min_int(job->BT, t0 + NORM_TOKEN_BLOCK);
    int dk = job->d_key, HK = job->heads * dk;
    for (int t = t0; t < t1; t++) {
        for (int j = 0; j < job->heads; j++) {
            const float *x = job->inp + (size_t)t * HK + (size_t)j * dk;
            float *y = job->out + (size_t)t * HK + (size_t)j * dk;
            const float *w = job->weight + (size_t)j * dk;
            const float *b = job->bias + (size_t)j * dk;
            float mean = 0.0f;
            for (int i = 0; i < dk; i++)
                mean += x[i];
            mean /= dk;
            float var = 0.0f;
            for (int i = 0; i < dk; i++)
                var += (x[i] - mean) * (x[i] - mean);
            var /= dk;
            float rstd = 1.0f / sqrtf(var + PEER_LAYER_NORM_EPS);
            for (int i = 0; i < dk; i++)
                y[i] = (x[i] - mean) * rstd * w[i] + b[i];
            job->mean[(size_t)t * job->heads + j] = mean;
            job->rstd[(size_t)t * job->heads + j] = rstd;
        }
    }
}

void head_norm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                       const float *bias, int BT, int heads, int d_key, thread_pool *pool)
{
    norm_job job = { .out = out, .mean = mean, .rstd = rstd, .inp = inp, .weight = weight,
                     .bias = bias, .BT = BT, .heads = heads, .d_key = d_key };
    thread_pool_run(pool, (BT + NORM_TOKEN_BLOCK - 1) / NORM_TOKEN_BLOCK, head_forward_block, &job);
}

static void head_param_grad_block(void *data, int task, int thread)
{
    const norm_job *job = data;
    int F = job->heads * job->d_key;
    int f0 = task * NORM_FEATURE_BLOCK, f1 = min_int(F, f0 + NORM_FEATURE_BLOCK);
    for (int f = f0; f < f1; f++) {
        int j = f / job->d_key;
        float sum_dy = 0.0f, sum_dy_xhat = 0.0f;
        for (int t = 0; t < job->BT; t++) {
            size_t th = (size_t)t * job->heads + j;
            float xhat = (job->inp[(size_t)t * F + f] - job->mean[th]) * job->rstd[th];
            float dy = job->dout[(size_t)t * F + f];
            sum_dy += dy;
            sum_dy_xhat += dy * xhat;
        }
        job->dweight[f] += sum_dy_xhat;
        job->dbias[f] += sum_dy;
    }
}

static void head_input_grad_block(void *data, int task, int thread)
{
    const norm_job *job = data;
    int t0 = task * NORM_TOKEN_BLOCK, t1 = min_int(job->BT, t0 + NORM_TOKEN_BLOCK);
    int dk = job->d_key, HK = job->heads * dk;
    for (int t = t0; t < t1; t++) {
        for (int j = 0; j < job->heads; j++) {
            size_t off = (size_t)t * HK + (size_t)j * dk;
            const float *x = job->inp + off;
            const float *dy = job->dout + off;
            const float *w = job->weight + (size_t)j * dk;
            float *dx = job->dinp + off;
            float mean = job->mean[(size_t)t * job->heads + j];
            float rstd = job->rstd[(size_t)t * job->heads + j];
            float mean_g = 0.0f, mean_g_xhat = 0.0f;
            for (int i = 0; i < dk; i++) {
                float g = dy[i] * w[i];
                mean_g += g;
                mean_g_xhat += g * (x[i] - mean) * rstd;
            }
            mean_g /= dk;
            mean_g_xhat /= dk;
            for (int i = 0; i < dk; i++) {
                float xhat = (x[i] - mean) * rstd;
                dx[i] = rstd * (dy[i] * w[i] - mean_g - xhat * mean_g_xhat);
            }
        }
    }
}

void head_norm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *mean, const float *rstd,
                        const float *weight, int BT, int heads, int d_key, thread_pool *pool)
{
    norm_job job = { .dinp = dinp, .dweight = dweight, .dbias = dbias, .dout = dout,
                     .inp = inp, .mean = (float *)mean, .rstd = (float *)rstd, .weight = weight,
                     .BT = BT, .heads = heads, .d_key = d_key };
    int F = heads * d_key;
    /* Parameter gradients first: the input gradient may overwrite dout in place. */
    thread_pool_run(pool, (F + NORM_FEATURE_BLOCK - 1) / NORM_FEATURE_BLOCK, head_param_grad_block,
                    &job);
    thread_pool_run(pool, (BT + NORM_TOKEN_BLOCK - 1) / NORM_TOKEN_BLOCK, head_input_grad_block,
                    &job);
}
