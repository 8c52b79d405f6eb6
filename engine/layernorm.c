#include "layernorm.h"

#include <math.h>
#include <stddef.h>

/* Fixed block sizes: task boundaries must not depend on the thread count, so that every output
 * element is computed by the same sequence of operations however many threads run. */
#define LAYERNORM_TOKEN_BLOCK 32
#define LAYERNORM_CHANNEL_BLOCK 64

typedef struct {
    float *out;
    float *mean;
    float *rstd;
    float *dinp;
    float *dweight;
    float *dbias;
    const float *inp;
    const float *dout;
    const float *weight;
    const float *bias;
    const float *saved_mean;
    const float *saved_rstd;
    int BT, C;
} layernorm_job;

static int block_count(int n, int block)
{
    return (n + block - 1) / block;
}

static void forward_block(void *data, int task, int thread)
{
    const layernorm_job *job = data;
    int C = job->C;
    int t0 = task * LAYERNORM_TOKEN_BLOCK;
    int t1 = job->BT - t0 < LAYERNORM_TOKEN_BLOCK ? job->BT : t0 + LAYERNORM_TOKEN_BLOCK;
    for (int t = t0; t < t1; t++) {
        const float *x = job->inp + (size_t)t * C;  /* (C) */
        float *y = job->out + (size_t)t * C;        /* (C) */
        float sum = 0.0f;
        for (int i = 0; i < C; i++)
            sum += x[i];
        float m = sum / C;
        /* the variance from the centred values, not E[x²] - m², which cancels badly when the
         * residual stream drifts far from zero */
        float var = 0.0f;
        for (int i = 0; i < C; i++) {
            float d = x[i] - m;
            var += d * d;
        }
        var /= C;
        float s = 1.0f / sqrtf(var + LAYERNORM_EPS);
        for (int i = 0; i < C; i++)
            y[i] = (x[i] - m) * s * job->weight[i] + job->bias[i];
        job->mean[t] = m;
        job->rstd[t] = s;
    }
}

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                       const float *bias, int BT, int C, thread_pool *pool)
{
    layernorm_job job = { .out = out, .mean = mean, .rstd = rstd, .inp = inp, .weight = weight,
                          .bias = bias, .BT = BT, .C = C };
    thread_pool_run(pool, block_count(BT, LAYERNORM_TOKEN_BLOCK), forward_block, &job);
}

static void backward_input_block(void *data, int task, int thread)
{
    const layernorm_job *job = data;
    int C = job->C;
    int t0 = task * LAYERNORM_TOKEN_BLOCK;
    int t1 = job->BT - t0 < LAYERNORM_TOKEN_BLOCK ? job->BT : t0 + LAYERNORM_TOKEN_BLOCK;
    for (int t = t0; t < t1; t++) {
        const float *x = job->inp + (size_t)t * C;   /* (C) */
        const float *dy = job->dout + (size_t)t * C; /* (C) */
        float *dx = job->dinp + (size_t)t * C;       /* (C) */
        float m = job->saved_mean[t], s = job->saved_rstd[t];
        /* dx = s·(dnorm - mean(dnorm) - norm·mean(dnorm·norm)), dnorm = weight·dy */
        float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - m) * s;
            float dnorm = job->weight[i] * dy[i];
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * norm;
        }
        dnorm_mean /= C;
        dnorm_norm_mean /= C;
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - m) * s;
            float dnorm = job->weight[i] * dy[i];
            dx[i] += s * (dnorm - dnorm_mean - norm * dnorm_norm_mean);
        }
    }
}

/* The weight and bias gradients sum over tokens: each task owns a block of channels and walks
 * every token in order, so the sum's order is fixed. */
static void backward_param_block(void *data, int task, int thread)
{
    const layernorm_job *job = data;
    int C = job->C;
    int c0 = task * LAYERNORM_CHANNEL_BLOCK;
    int n = C - c0 < LAYERNORM_CHANNEL_BLOCK ? C - c0 : LAYERNORM_CHANNEL_BLOCK;
    float dw[LAYERNORM_CHANNEL_BLOCK] = { 0 };
    float db[LAYERNORM_CHANNEL_BLOCK] = { 0 };
    for (int t = 0; t < job->BT; t++) {
        const float *x = job->inp + (size_t)t * C + c0;   /* (n) */
        const float *dy = job->dout + (size_t)t * C + c0; /* (n) */
        float m = job->saved_mean[t], s = job->saved_rstd[t];
        for (int i = 0; i < n; i++) {
            dw[i] += (x[i] - m) * s * dy[i];
            db[i] += dy[i];
        }
    }
    for (int i = 0; i < n; i++) {
        job->dweight[c0 + i] += dw[i];
        job->dbias[c0 + i] += db[i];
    }
}

void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const float *mean,
                        const float *rstd, int BT, int C, thread_pool *pool)
{
    layernorm_job job = { .dinp = dinp, .dweight = dweight, .dbias = dbias, .dout = dout,
                          .inp = inp, .weight = weight, .saved_mean = mean, .saved_rstd = rstd,
                          .BT = BT, .C = C };
    thread_pool_run(pool, block_count(BT, LAYERNORM_TOKEN_BLOCK), backward_input_block, &job);
    thread_pool_run(pool, block_count(C, LAYERNORM_CHANNEL_BLOCK), backward_param_block, &job);
}
