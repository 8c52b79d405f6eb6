/* The activations of the model contract: GELU in its tanh form everywhere, ReLU as a variant. */
#pragma once

#include <math.h>
#include <stddef.h>

#define GELU_SCALE 0.7978845608028654f /* √(2/π) */

static inline float gelu(float x)
{
    float cube = 0.044715f * x * x * x;
    return 0.5f * x * (1.0f + tanhf(GELU_SCALE * (x + cube)));
}

static inline float gelu_derivative(float x)
{
    float cube = 0.044715f * x * x * x;
    float t = tanhf(GELU_SCALE * (x + cube));
    float sech2 = 1.0f - t * t;
    return 0.5f * (1.0f + t) + 0.5f * x * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
}

static inline float relu(float x)
{
    return x > 0.0f ? x : 0.0f;
}

static inline float relu_derivative(float x)
{
    return x > 0.0f ? 1.0f : 0.0f;
}

/* out (n) = gelu(inp); dinp (n) += gelu'(inp)·dout. */
void gelu_forward(float *out, const float *inp, size_t n);
void gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);
