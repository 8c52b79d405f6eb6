/* The activations against their definitions in double precision. */
#include <glib.h>
#include <math.h>

#include "activation.h"

static double gelu_reference(double x)
{
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

static double gelu_derivative_reference(double x)
{
    double u = sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
    double t = tanh(u);
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * sqrt(2.0 / M_PI) * (1.0 + 3.0 * 0.044715 * x * x);
}

/* The rational tanh is within 5e-7 of tanh on the whole line, saturation included. */
static void test_fast_tanh(void)
{
    double worst = 0.0;
    for (double x = -20.0; x <= 20.0; x += 1e-4) {
        double error = fabs((double)fast_tanh((float)x) - tanh((double)(float)x));
        worst = fmax(worst, error);
    }
    g_assert_cmpfloat(worst, <, 5e-7);
    g_assert_cmpfloat(fast_tanh(0.0f), ==, 0.0f);
    g_assert_cmpfloat(fast_tanh(1e30f), <=, 1.0f);
    g_assert_cmpfloat(fast_tanh(-1e30f), >=, -1.0f);
}

/* GELU within a few float ulps of its value, relative to max(1, |value|); the derivative sums
 * float terms up to x·sech²·(1 + 3·0.044715·x²) ≈ 10 in size, so a few ulps of those. */
static void test_gelu(void)
{
    double worst = 0.0, worst_derivative = 0.0;
    for (double x = -12.0; x <= 12.0; x += 1e-3) {
        float xf = (float)x;
        double want = gelu_reference(xf), want_d = gelu_derivative_reference(xf);
        worst = fmax(worst, fabs(gelu(xf) - want) / fmax(1.0, fabs(want)));
        worst_derivative =
            fmax(worst_derivative, fabs(gelu_derivative(xf) - want_d) / fmax(1.0, fabs(want_d)));
    }
    g_assert_cmpfloat(worst, <, 2e-6);
    g_assert_cmpfloat(worst_derivative, <, 1e-5);

    float inp[5] = { -3.0f, -0.5f, 0.0f, 0.7f, 4.0f }, out[5], dout[5] = { 1, 2, 3, 4, 5 };
    float dinp[5] = { 1, 1, 1, 1, 1 };
    gelu_forward(out, inp, 5);
    gelu_backward(dinp, inp, dout, 5);
    for (int i = 0; i < 5; i++) {
        g_assert_cmpfloat(fabs(out[i] - gelu_reference(inp[i])), <, 2e-6);
        /* backward adds into dinp */
        g_assert_cmpfloat(fabs(dinp[i] - (1.0 + dout[i] * gelu_derivative_reference(inp[i]))), <, 1e-5);
    }
}

static void test_relu(void)
{
    g_assert_cmpfloat(relu(-2.0f), ==, 0.0f);
    g_assert_cmpfloat(relu(3.5f), ==, 3.5f);
    g_assert_cmpfloat(relu_derivative(-1.0f), ==, 0.0f);
    g_assert_cmpfloat(relu_derivative(1.0f), ==, 1.0f);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/activation/fast-tanh", test_fast_tanh);
    g_test_add_func("/activation/gelu", test_gelu);
    g_test_add_func("/activation/relu", test_relu);
    return g_test_run();
}
