#include "dense-ffn.h"

#include <stdlib.h>
#include <string.h>

#include "activation.h"
#include "linear.h"

size_t dense_ffn_params_count(int D, int F)
{
    return (size_t)F * D + (size_t)F + (size_t)D * F + (size_t)D;
}

void dense_ffn_params_point(dense_ffn_params *params, int D, int F, float *arena)
{
    params->fc_weight = arena;
    arena += (size_t)F * D;
    params->fc_bias = arena;
    arena += F;
    params->proj_weight = arena;
    arena += (size_t)D * F;
    params->proj_bias = arena;
}

bool dense_ffn_acts_init(dense_ffn_acts *acts, int F, int max_tokens, peer_error *err)
{
    memset(acts, 0, sizeof *acts);
    size_t n = (size_t)max_tokens * F;
    acts->fc = malloc(n * sizeof(float));
    acts->hidden = malloc(n * sizeof(float));
    acts->dhidden = malloc(n * sizeof(float));
    if (!acts->fc || !acts->hidden || !acts->dhidden) {
        dense_ffn_acts_free(acts);
        return peer_error_set(err, "out of memory for dense FFN activations (%d tokens × %d)",
                              max_tokens, F);
    }
    acts->capacity = max_tokens;
    return true;
}

void dense_ffn_acts_free(dense_ffn_acts *acts)
{
    free(acts->fc);
    free(acts->hidden);
    free(acts->dhidden);
    memset(acts, 0, sizeof *acts);
}

#define GELU_BLOCK 16384

typedef struct {
    float *out;
    const float *inp;
    size_t n;
} gelu_job;

static void gelu_forward_block(void *data, int task, int thread)
{
    const gelu_job *job = data;
    size_t i0 = (size_t)task * GELU_BLOCK;
    size_t count = job->n - i0 < GELU_BLOCK ? job->n - i0 : GELU_BLOCK;
    gelu_forward(job->out + i0, job->inp + i0, count);
}

/* Backward in place: out holds the gradient of GELU's output and becomes that of its input. */
static void gelu_backward_block(void *data, int task, int thread)
{
    const gelu_job *job = data;
    size_t i0 = (size_t)task * GELU_BLOCK;
    size_t end = job->n - i0 < GELU_BLOCK ? job->n : i0 + GELU_BLOCK;
    for (size_t i = i0; i < end; i++)
        job->out[i] *= gelu_derivative(job->inp[i]);
}

static int gelu_tasks(size_t n)
{
    return (int)((n + GELU_BLOCK - 1) / GELU_BLOCK);
}

void dense_ffn_forward(float *out, dense_ffn_acts *acts, const float *inp,
                       const dense_ffn_params *params, int BT, int D, int F, thread_pool *pool)
{
    linear_forward(acts->fc, inp, params->fc_weight, params->fc_bias, BT, D, F, pool);
    gelu_job gelu_work = { .out = acts->hidden, .inp = acts->fc, .n = (size_t)BT * F };
    thread_pool_run(pool, gelu_tasks(gelu_work.n), gelu_forward_block, &gelu_work);
    linear_forward(out, acts->hidden, params->proj_weight, params->proj_bias, BT, F, D, pool);
}

void dense_ffn_backward(float *dinp, dense_ffn_params *grads, dense_ffn_acts *acts,
                        const float *dout, const float *inp, const dense_ffn_params *params,
                        int BT, int D, int F, thread_pool *pool)
{
    memset(acts->dhidden, 0, (size_t)BT * F * sizeof(float));
    linear_backward(acts->dhidden, grads->proj_weight, grads->proj_bias, dout, acts->hidden,
                    params->proj_weight, BT, F, D, pool);
    gelu_job gelu_work = { .out = acts->dhidden, .inp = acts->fc, .n = (size_t)BT * F };
    thread_pool_run(pool, gelu_tasks(gelu_work.n), gelu_backward_block, &gelu_work);
    linear_backward(dinp, grads->fc_weight, grads->fc_bias, acts->dhidden, inp,
                    params->fc_weight, BT, D, F, pool);
}
