#include "cross-entropy.h"

#include <math.h>
#include <stddef.h>

/* Fixed block size: task boundaries must not depend on the thread count. */
#define CROSS_ENTROPY_TOKEN_BLOCK 32

typedef struct {
    float *probs;
    float *losses;
    float *dlogits;
    const float *logits;
    const float *saved_probs;
    const uint8_t *targets;
    int BT, V;
    float scale;
} cross_entropy_job;

static int block_end(int BT, int t0)
{
    return BT - t0 < CROSS_ENTROPY_TOKEN_BLOCK ? BT : t0 + CROSS_ENTROPY_TOKEN_BLOCK;
}

static void forward_block(void *data, int task, int thread)
{
    const cross_entropy_job *job = data;
    int V = job->V;
    int t0 = task * CROSS_ENTROPY_TOKEN_BLOCK, t1 = block_end(job->BT, t0);
    for (int t = t0; t < t1; t++) {
        const float *z = job->logits + (size_t)t * V; /* (V) */
        float *p = job->probs + (size_t)t * V;        /* (V) */
        float maxval = z[0];
        for (int i = 1; i < V; i++)
            maxval = z[i] > maxval ? z[i] : maxval;
        float sum = 0.0f;
        for (int i = 0; i < V; i++) {
            p[i] = expf(z[i] - maxval);
            sum += p[i];
        }
        float inv = 1.0f / sum;
        for (int i = 0; i < V; i++)
            p[i] *= inv;
        /* -log p[target] from the log-sum-exp, which stays finite when p[target] underflows */
        job->losses[t] = logf(sum) - (z[job->targets[t]] - maxval);
    }
}

double cross_entropy_forward(float *probs, float *losses, const float *logits,
                             const uint8_t *targets, int BT, int V, thread_pool *pool)
{
    cross_entropy_job job = { .probs = probs, .losses = losses, .logits = logits,
                              .targets = targets, .BT = BT, .V = V };
    thread_pool_run(pool, (BT + CROSS_ENTROPY_TOKEN_BLOCK - 1) / CROSS_ENTROPY_TOKEN_BLOCK,
                    forward_block, &job);
    double sum = 0.0;
    for (int t = 0; t < BT; t++)
        sum += losses[t];
    return BT > 0 ? sum / BT : 0.0;
}

static void backward_block(void *data, int task, int thread)
{
    const cross_entropy_job *job = data;
    int V = job->V;
    int t0 = task * CROSS_ENTROPY_TOKEN_BLOCK, t1 = block_end(job->BT, t0);
    for (int t = t0; t < t1; t++) {
        const float *p = job->saved_probs + (size_t)t * V; /* (V) */
        float *dz = job->dlogits + (size_t)t * V;          /* (V) */
        int target = job->targets[t];
        for (int i = 0; i < V; i++) {
            float indicator = i == target ? 1.0f : 0.0f;
            dz[i] += job->scale * (p[i] - indicator);
        }
    }
}

void cross_entropy_backward(float *dlogits, const float *probs, const uint8_t *targets, int BT,
                            int V, float scale, thread_pool *pool)
{
    cross_entropy_job job = { .dlogits = dlogits, .saved_probs = probs, .targets = targets,
                              .BT = BT, .V = V, .scale = scale };
    thread_pool_run(pool, (BT + CROSS_ENTROPY_TOKEN_BLOCK - 1) / CROSS_ENTROPY_TOKEN_BLOCK,
                    backward_block, &job);
}
