#include "activation.h"

void gelu_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = gelu(inp[i]);
}

void gelu_backward(float *dinp, const float *inp, const float *dout, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dinp[i] += gelu_derivative(inp[i]) * dout[i];
}
