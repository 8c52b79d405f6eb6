/* The token-choice MoE layer: routing (the chosen experts are the router's top-k, gates are a
 * distribution, best first), the auxiliary loss against a hand computation and its value 1 for
 * uniform routing, the forward against a double-precision reference, the backward against
 * central finite differences of Σ out·R + 0.5·aux with the routing held fixed, and every result
 * bit-identical with 1, 2 and 3 threads. */
#include <math.h>
#include <string.h>

#include "moe-layer.h"
#include "test-util.h"
#include "thread-pool.h"

/* The auxiliary loss's coefficient in the differenced loss: not 1, so that a backward that
 * ignored aux_scale would fail. */
#define AUX_COEFF 0.5f

/* Step and tolerance of the finite differences. The forward runs in float32: with ~50 outputs of
 * size ~1 the loss carries a rounding noise of ~1e-6, which (L+ - L-)/2ε turns into ~5e-5 at
 * ε = 1e-2; the truncation error ε²/6·f''' of GELU and the two softmaxes stays near 1e-4. A wrong
 * term is off by the scale of the gradient itself (0.1 to 1), far above 2e-3 + 1e-2 relative. A
 * step that changes some token's top-k makes the loss jump; those elements are skipped. */
#define FD_EPS 1e-2f
#define FD_ATOL 2e-3
#define FD_RTOL 1e-2

typedef struct {
    int BT, D, F, E, k;
    float *arena;      /* (moe_params_count) */
    float *grad_arena; /* (moe_params_count) */
    moe_params params;
    moe_params grads;
    moe_acts acts;
    float *inp;        /* (BT, D) */
    float *out;        /* (BT, D) */
    float *R;          /* (BT, D) */
    int32_t *chosen;   /* (BT, k) the routing at the base point */
    bool rerouted;     /* set by a forward whose routing differs from chosen */
} moe_case;

static void moe_case_init(moe_case *mc, int BT, int D, int F, int E, int k, uint64_t seed)
{
    memset(mc, 0, sizeof *mc);
    mc->BT = BT;
    mc->D = D;
    mc->F = F;
    mc->E = E;
    mc->k = k;
    size_t count = moe_params_count(D, F, E);
    mc->arena = g_new0(float, count);
    mc->grad_arena = g_new0(float, count);
    moe_params_point(&mc->params, D, F, E, mc->arena);
    moe_params_point(&mc->grads, D, F, E, mc->grad_arena);

    peer_rng rng;
    peer_rng_seed(&rng, seed);
    moe_params *p = &mc->params;
    /* a router with spread-out logits, so that small steps rarely reorder the top-k */
    peer_rng_fill_normal(&rng, p->router_weight, (size_t)E * D, 1.0f);
    peer_rng_fill_normal(&rng, p->fc_weight, (size_t)E * F * D, 0.5f);
    peer_rng_fill_normal(&rng, p->fc_bias, (size_t)E * F, 0.2f);
    peer_rng_fill_normal(&rng, p->proj_weight, (size_t)E * D * F, 0.4f);
    peer_rng_fill_normal(&rng, p->proj_bias, (size_t)E * D, 0.2f);
    mc->inp = test_random_floats(&rng, (size_t)BT * D, 1.0f);
    mc->R = test_random_floats(&rng, (size_t)BT * D, 1.0f);
    mc->out = g_new(float, (size_t)BT * D);
    mc->chosen = g_new(int32_t, (size_t)BT * k);

    peer_error err = { { 0 } };
    if (!moe_acts_init(&mc->acts, D, F, E, k, BT, &err))
        g_error("moe_acts_init: %s", err.message);
}

static void moe_case_free(moe_case *mc)
{
    moe_acts_free(&mc->acts);
    g_free(mc->arena);
    g_free(mc->grad_arena);
    g_free(mc->inp);
    g_free(mc->out);
    g_free(mc->R);
    g_free(mc->chosen);
}

static void moe_case_forward(moe_case *mc, thread_pool *pool)
{
    moe_forward(mc->out, &mc->acts, mc->inp, &mc->params, mc->BT, mc->D, mc->F, mc->E, mc->k,
                pool);
}

static double moe_loss(moe_case *mc)
{
    moe_case_forward(mc, NULL);
    size_t slots = (size_t)mc->BT * mc->k;
    if (memcmp(mc->acts.expert, mc->chosen, slots * sizeof(int32_t)) != 0)
        mc->rerouted = true;
    double sum = 0.0;
    for (size_t i = 0; i < (size_t)mc->BT * mc->D; i++)
        sum += (double)mc->out[i] * (double)mc->R[i];
    return sum + AUX_COEFF * (double)mc->acts.aux_loss;
}

/* Central differences at every element of param, skipping steps that reroute a token; returns
 * how many were skipped. */
static int check_gradient(moe_case *mc, const char *what, float *param, const float *grad,
                          size_t n, double atol)
{
    int skipped = 0;
    for (size_t i = 0; i < n; i++) {
        float saved = param[i];
        mc->rerouted = false;
        param[i] = saved + FD_EPS;
        double up = param[i];
        double loss_up = moe_loss(mc);
        param[i] = saved - FD_EPS;
        double down = param[i];
        double loss_down = moe_loss(mc);
        param[i] = saved;
        if (mc->rerouted) {
            skipped++;
            continue;
        }
        test_assert_close(grad[i], (loss_up - loss_down) / (up - down), atol, FD_RTOL,
                          "%s[%zu]", what, i);
    }
    return skipped;
}

static double gelu_double(double x)
{
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

/* The router logits of token t in double. */
static void reference_logits(double *z, const moe_case *mc, int t)
{
    for (int e = 0; e < mc->E; e++) {
        double sum = 0.0;
        for (int d = 0; d < mc->D; d++)
            sum += (double)mc->params.router_weight[(size_t)e * mc->D + d] *
                   (double)mc->inp[(size_t)t * mc->D + d];
        z[e] = sum;
    }
}

static void test_routing(void)
{
    moe_case mc;
    moe_case_init(&mc, 40, 6, 10, 5, 2, TEST_SEED);
    moe_case_forward(&mc, NULL);
    int E = mc.E, k = mc.k;
    double z[16];
    for (int t = 0; t < mc.BT; t++) {
        const float *logits = mc.acts.router_logits + (size_t)t * E;
        const int32_t *chosen = mc.acts.expert + (size_t)t * k;
        const float *gate = mc.acts.gate + (size_t)t * k;
        reference_logits(z, &mc, t);
        double psum = 0.0;
        for (int e = 0; e < E; e++) {
            test_assert_close(logits[e], z[e], 1e-5, 1e-5, "router logit [%d, %d]", t, e);
            psum += mc.acts.router_probs[(size_t)t * E + e];
        }
        test_assert_close(psum, 1.0, 1e-6, 0.0, "Σ router probs [%d]", t);

        /* the top-k of the logits the layer computed, best first */
        double gsum = 0.0;
        for (int j = 0; j < k; j++) {
            g_assert_cmpint(chosen[j], >=, 0);
            g_assert_cmpint(chosen[j], <, E);
            for (int i = 0; i < j; i++)
                g_assert_cmpint(chosen[i], !=, chosen[j]);
            if (j > 0) {
                g_assert_cmpfloat(logits[chosen[j - 1]], >=, logits[chosen[j]]);
                g_assert_cmpfloat(gate[j - 1], >=, gate[j]);
            }
            gsum += gate[j];
        }
        for (int e = 0; e < E; e++) {
            bool is_chosen = false;
            for (int j = 0; j < k; j++)
                is_chosen = is_chosen || chosen[j] == e;
            if (!is_chosen)
                g_assert_cmpfloat(logits[e], <=, logits[chosen[k - 1]]);
        }
        test_assert_close(gsum, 1.0, 1e-6, 0.0, "Σ gates [%d]", t);

        /* gates are the softmax over the chosen logits */
        double gz = 0.0;
        for (int j = 0; j < k; j++)
            gz += exp(z[chosen[j]] - z[chosen[0]]);
        for (int j = 0; j < k; j++)
            test_assert_close(gate[j], exp(z[chosen[j]] - z[chosen[0]]) / gz, 1e-6, 1e-5,
                              "gate [%d, %d]", t, j);
    }
    moe_case_free(&mc);
}

static void test_forward_reference(void)
{
    moe_case mc;
    moe_case_init(&mc, 40, 6, 10, 5, 2, TEST_SEED + 1);
    moe_case_forward(&mc, NULL);
    int D = mc.D, F = mc.F, k = mc.k;
    const moe_params *p = &mc.params;
    double z[16], h[64];
    for (int t = 0; t < mc.BT; t++) {
        const float *x = mc.inp + (size_t)t * D;
        const int32_t *chosen = mc.acts.expert + (size_t)t * k;
        reference_logits(z, &mc, t);
        double gz = 0.0;
        for (int j = 0; j < k; j++)
            gz += exp(z[chosen[j]] - z[chosen[0]]);
        for (int d = 0; d < D; d++) {
            double expected = 0.0;
            for (int j = 0; j < k; j++) {
                int e = chosen[j];
                for (int f = 0; f < F; f++) {
                    double sum = p->fc_bias[(size_t)e * F + f];
                    for (int i = 0; i < D; i++)
                        sum += (double)p->fc_weight[((size_t)e * F + f) * D + i] * x[i];
                    h[f] = gelu_double(sum);
                }
                double y = p->proj_bias[(size_t)e * D + d];
                for (int f = 0; f < F; f++)
                    y += (double)p->proj_weight[((size_t)e * D + d) * F + f] * h[f];
                expected += exp(z[e] - z[chosen[0]]) / gz * y;
            }
            /* two float products of 6 and 10 terms and a mixture: errors of a few 1e-7 */
            test_assert_close(mc.out[(size_t)t * D + d], expected, 1e-5, 1e-5, "out[%d, %d]", t,
                              d);
        }
    }
    moe_case_free(&mc);
}

/* E · Σ_e f_e · P_e from the routing and router probabilities the forward recorded. */
static double hand_aux_loss(const moe_case *mc)
{
    int E = mc->E, S = mc->BT * mc->k;
    double aux = 0.0;
    for (int e = 0; e < E; e++) {
        int count = 0;
        for (int s = 0; s < S; s++)
            count += mc->acts.expert[s] == e;
        double P = 0.0;
        for (int t = 0; t < mc->BT; t++)
            P += mc->acts.router_probs[(size_t)t * E + e];
        aux += (double)count / S * (P / mc->BT);
    }
    return E * aux;
}

static void test_aux_loss(void)
{
    moe_case mc;
    moe_case_init(&mc, 33, 6, 10, 5, 2, TEST_SEED + 2);
    moe_case_forward(&mc, NULL);
    /* the layer's float result of the same double sums */
    test_assert_close(mc.acts.aux_loss, hand_aux_loss(&mc), 0.0, 1e-6, "aux loss");
    g_assert_cmpfloat(mc.acts.aux_loss, >, 1.0f);

    /* a silent router: every probability is 1/E, so the loss is 1 however the ties fall */
    memset(mc.params.router_weight, 0, (size_t)mc.E * mc.D * sizeof(float));
    moe_case_forward(&mc, NULL);
    test_assert_close(mc.acts.aux_loss, 1.0, 1e-6, 0.0, "aux loss, uniform probabilities");
    moe_case_free(&mc);

    /* perfectly balanced: token t prefers expert t mod E, then t + 1 mod E, so every expert gets
     * the same share of slots and, over a whole cycle, the same mean probability */
    int E = 4, BT = 12;
    moe_case_init(&mc, BT, E, 8, E, 2, TEST_SEED + 3);
    memset(mc.params.router_weight, 0, (size_t)E * E * sizeof(float));
    for (int e = 0; e < E; e++)
        mc.params.router_weight[(size_t)e * E + e] = 1.0f;
    memset(mc.inp, 0, (size_t)BT * E * sizeof(float));
    for (int t = 0; t < BT; t++) {
        mc.inp[(size_t)t * E + t % E] = 3.0f;
        mc.inp[(size_t)t * E + (t + 1) % E] = 1.5f;
    }
    moe_case_forward(&mc, NULL);
    for (int t = 0; t < BT; t++) {
        g_assert_cmpint(mc.acts.expert[(size_t)t * 2], ==, t % E);
        g_assert_cmpint(mc.acts.expert[(size_t)t * 2 + 1], ==, (t + 1) % E);
    }
    test_assert_close(mc.acts.aux_loss, 1.0, 1e-6, 0.0, "aux loss, balanced routing");
    moe_case_free(&mc);
}

static void test_gradients(void)
{
    moe_case mc;
    moe_case_init(&mc, 9, 6, 10, 4, 2, TEST_SEED + 4);
    int BT = mc.BT, D = mc.D;
    size_t count = moe_params_count(D, mc.F, mc.E);
    size_t n_inp = (size_t)BT * D;

    /* gradients start from random values: the backward must add */
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED + 5);
    float *grad0 = test_random_floats(&rng, count, 1.0f);
    float *dinp0 = test_random_floats(&rng, n_inp, 1.0f);
    memcpy(mc.grad_arena, grad0, count * sizeof(float));
    float *dinp = test_copy_floats(dinp0, n_inp);

    moe_case_forward(&mc, NULL);
    memcpy(mc.chosen, mc.acts.expert, (size_t)BT * mc.k * sizeof(int32_t));
    moe_backward(dinp, &mc.grads, &mc.acts, mc.R, AUX_COEFF, mc.inp, &mc.params, BT, D, mc.F,
                 mc.E, mc.k, NULL);
    float *grad = g_new(float, count);
    for (size_t i = 0; i < count; i++)
        grad[i] = mc.grad_arena[i] - grad0[i];
    float *ginp = g_new(float, n_inp);
    for (size_t i = 0; i < n_inp; i++)
        ginp[i] = dinp[i] - dinp0[i];

    moe_params g;
    moe_params_point(&g, D, mc.F, mc.E, grad);
    const moe_params *p = &mc.params;
    size_t ED = (size_t)mc.E * D, EF = (size_t)mc.E * mc.F, EFD = EF * D;
    int skipped = 0;
    skipped += check_gradient(&mc, "dinp", mc.inp, ginp, n_inp, FD_ATOL);
    skipped += check_gradient(&mc, "drouter_weight", p->router_weight, g.router_weight, ED,
                              FD_ATOL);
    skipped += check_gradient(&mc, "dfc_weight", p->fc_weight, g.fc_weight, EFD, FD_ATOL);
    skipped += check_gradient(&mc, "dfc_bias", p->fc_bias, g.fc_bias, EF, FD_ATOL);
    skipped += check_gradient(&mc, "dproj_weight", p->proj_weight, g.proj_weight, EFD, FD_ATOL);
    skipped += check_gradient(&mc, "dproj_bias", p->proj_bias, g.proj_bias, ED, FD_ATOL);

    /* The auxiliary loss alone (R = 0), whose gradient is small beside the main term's: its
     * rounding noise, ~1e-7 in a loss of ~1, allows a much tighter absolute slack. */
    float *R = mc.R;
    mc.R = g_new0(float, n_inp);
    memset(mc.grad_arena, 0, count * sizeof(float));
    memset(dinp, 0, n_inp * sizeof(float));
    moe_case_forward(&mc, NULL);
    moe_backward(dinp, &mc.grads, &mc.acts, mc.R, AUX_COEFF, mc.inp, &mc.params, BT, D, mc.F,
                 mc.E, mc.k, NULL);
    skipped += check_gradient(&mc, "dinp (aux only)", mc.inp, dinp, n_inp, 1e-4);
    skipped += check_gradient(&mc, "drouter_weight (aux only)", p->router_weight,
                              mc.grads.router_weight, ED, 1e-4);
    g_free(mc.R);
    mc.R = R;
    size_t total = 2 * n_inp + 3 * ED + 2 * EFD + EF;
    if (g_test_verbose())
        g_test_message("%d of %zu elements skipped: their step rerouted a token", skipped, total);
    /* only the router's and the input's steps can reroute, and rarely at this router's spread */
    g_assert_cmpint(skipped, <, (int)(total / 50));

    g_free(grad);
    g_free(ginp);
    g_free(grad0);
    g_free(dinp0);
    g_free(dinp);
    moe_case_free(&mc);
}

/* With dinp NULL the parameter gradients are the same, bit for bit. */
static void test_no_input_gradient(void)
{
    moe_case mc;
    moe_case_init(&mc, 50, 8, 12, 4, 2, TEST_SEED + 6);
    size_t count = moe_params_count(mc.D, mc.F, mc.E);
    float *dinp = g_new0(float, (size_t)mc.BT * mc.D);
    moe_case_forward(&mc, NULL);
    moe_backward(dinp, &mc.grads, &mc.acts, mc.R, AUX_COEFF, mc.inp, &mc.params, mc.BT, mc.D,
                 mc.F, mc.E, mc.k, NULL);
    float *with_dinp = test_copy_floats(mc.grad_arena, count);
    memset(mc.grad_arena, 0, count * sizeof(float));
    moe_backward(NULL, &mc.grads, &mc.acts, mc.R, AUX_COEFF, mc.inp, &mc.params, mc.BT, mc.D,
                 mc.F, mc.E, mc.k, NULL);
    g_assert_cmpmem(mc.grad_arena, count * sizeof(float), with_dinp, count * sizeof(float));
    g_free(with_dinp);
    g_free(dinp);
    moe_case_free(&mc);
}

static void test_init_rejects(void)
{
    moe_acts acts;
    peer_error err = { { 0 } };
    g_assert_false(moe_acts_init(&acts, 8, 16, 4, 0, 10, &err));
    g_assert_cmpstr(err.message, !=, "");
    err.message[0] = '\0';
    g_assert_false(moe_acts_init(&acts, 8, 16, 4, 5, 10, &err));
    g_assert_cmpstr(err.message, !=, "");
    err.message[0] = '\0';
    g_assert_false(moe_acts_init(&acts, 0, 16, 4, 2, 10, &err));
    g_assert_cmpstr(err.message, !=, "");
    g_assert_true(moe_acts_init(&acts, 8, 16, 4, 4, 10, &err));
    moe_acts_free(&acts);
}

/* 300 tokens × 2 slots cross the engine's 64-slot blocks at places that cut experts' rows, and
 * D = 36, F = 40 leave short weight-row blocks. */
typedef struct {
    float *out, *logits, *probs, *gate, *fc, *hidden, *expert_out, *grads, *dinp;
    int32_t *expert;
    float aux;
} moe_result;

enum { TH_BT = 300, TH_D = 36, TH_F = 40, TH_E = 5, TH_K = 2 };

static void run_moe(moe_result *res, thread_pool *pool)
{
    moe_case mc;
    moe_case_init(&mc, TH_BT, TH_D, TH_F, TH_E, TH_K, TEST_SEED + 7);
    size_t count = moe_params_count(TH_D, TH_F, TH_E), S = (size_t)TH_BT * TH_K;
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED + 8);
    peer_rng_fill_normal(&rng, mc.grad_arena, count, 1.0f);
    res->dinp = test_random_floats(&rng, (size_t)TH_BT * TH_D, 1.0f);
    moe_case_forward(&mc, pool);
    moe_backward(res->dinp, &mc.grads, &mc.acts, mc.R, AUX_COEFF, mc.inp, &mc.params, TH_BT,
                 TH_D, TH_F, TH_E, TH_K, pool);
    res->out = test_copy_floats(mc.out, (size_t)TH_BT * TH_D);
    res->logits = test_copy_floats(mc.acts.router_logits, (size_t)TH_BT * TH_E);
    res->probs = test_copy_floats(mc.acts.router_probs, (size_t)TH_BT * TH_E);
    res->gate = test_copy_floats(mc.acts.gate, S);
    res->fc = test_copy_floats(mc.acts.fc, S * TH_F);
    res->hidden = test_copy_floats(mc.acts.hidden, S * TH_F);
    res->expert_out = test_copy_floats(mc.acts.expert_out, S * TH_D);
    res->grads = test_copy_floats(mc.grad_arena, count);
    res->expert = g_memdup2(mc.acts.expert, S * sizeof(int32_t));
    res->aux = mc.acts.aux_loss;
    moe_case_free(&mc);
}

static void moe_result_free(moe_result *res)
{
    g_free(res->out);
    g_free(res->logits);
    g_free(res->probs);
    g_free(res->gate);
    g_free(res->fc);
    g_free(res->hidden);
    g_free(res->expert_out);
    g_free(res->grads);
    g_free(res->dinp);
    g_free(res->expert);
}

#define ASSERT_SAME_BITS(field, bytes, n_threads)                                              \
    do {                                                                                        \
        if (memcmp(a->field, b->field, (bytes)) != 0)                                           \
            test_fail("%s differs between 1 thread and %d (0: no pool)", #field, (n_threads)); \
    } while (0)

static void compare_moe(const moe_result *a, const moe_result *b, int n_threads)
{
    size_t S = (size_t)TH_BT * TH_K, f = sizeof(float);
    ASSERT_SAME_BITS(out, (size_t)TH_BT * TH_D * f, n_threads);
    ASSERT_SAME_BITS(logits, (size_t)TH_BT * TH_E * f, n_threads);
    ASSERT_SAME_BITS(probs, (size_t)TH_BT * TH_E * f, n_threads);
    ASSERT_SAME_BITS(expert, S * sizeof(int32_t), n_threads);
    ASSERT_SAME_BITS(gate, S * f, n_threads);
    ASSERT_SAME_BITS(fc, S * TH_F * f, n_threads);
    ASSERT_SAME_BITS(hidden, S * TH_F * f, n_threads);
    ASSERT_SAME_BITS(expert_out, S * TH_D * f, n_threads);
    ASSERT_SAME_BITS(grads, moe_params_count(TH_D, TH_F, TH_E) * f, n_threads);
    ASSERT_SAME_BITS(dinp, (size_t)TH_BT * TH_D * f, n_threads);
    if (memcmp(&a->aux, &b->aux, sizeof a->aux) != 0)
        test_fail("aux loss differs between 1 thread and %d (0: no pool)", n_threads);
}

static void test_threads_identical(void)
{
    /* the pools exist before any run, so OpenBLAS is pinned to one thread for all of them */
    thread_pool *pools[3];
    for (int i = 0; i < 3; i++) {
        peer_error err = { { 0 } };
        pools[i] = thread_pool_new(i + 1, &err);
        if (!pools[i])
            g_error("thread_pool_new(%d): %s", i + 1, err.message);
    }
    moe_result reference, other;
    run_moe(&reference, pools[0]);
    run_moe(&other, NULL);
    compare_moe(&reference, &other, 0);
    moe_result_free(&other);
    for (int i = 1; i < 3; i++) {
        run_moe(&other, pools[i]);
        compare_moe(&reference, &other, i + 1);
        moe_result_free(&other);
    }
    moe_result_free(&reference);
    for (int i = 0; i < 3; i++)
        thread_pool_free(pools[i]);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/moe/routing", test_routing);
    g_test_add_func("/moe/forward-reference", test_forward_reference);
    g_test_add_func("/moe/aux-loss", test_aux_loss);
    g_test_add_func("/moe/gradients", test_gradients);
    g_test_add_func("/moe/no-input-gradient", test_no_input_gradient);
    g_test_add_func("/moe/init-rejects", test_init_rejects);
    g_test_add_func("/moe/threads-identical", test_threads_identical);
    return g_test_run();
}
