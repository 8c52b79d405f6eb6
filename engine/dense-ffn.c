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

void dense_ffn_forward(float *out, dense_ffn_acts *acts, const float *inp,
                       const dense_ffn_params *params, int BT, int D, int F, thread_pool *pool)
{
    linear_forward(acts->fc, inp, params->fc_weight, params->fc_bias, BT, D, F, pool);
    gelu_forward(acts->hidden, acts->fc, (size_t)BT * F);
    linear_forward(out, acts->hidden, params->proj_weight, params->proj_bias, BT, F, D, pool);
}

void dense_ffn_backward(float *dinp, dense_ffn_params *grads, dense_ffn_acts *acts,
                        const float *dout, const float *inp, const dense_ffn_params *params,
                        int BT, int D, int F, thread_pool *pool)
{
    memset(acts->dhidden, 0, (size_t)BT * F * sizeof(float));
    linear_backward(acts->dhidden, grads->proj_weight, grads->proj_bias, dout, acts->hidden,
                    params->proj_weight, BT, F, D, pool);
    /* GELU backward in place: dhidden becomes the gradient of fc's output. */
    size_t n = (size_t)BT * F;
    for (size_t i = 0; i < n; i++)
        acts->dhidden[i] *= gelu_derivative(acts->fc[i]);
    linear_backward(dinp, grads->fc_weight, grads->fc_bias, acts->dhidden, inp,
                    params->fc_weight, BT, D, F, pool);
}
