/* The PEER layer's forward against a double-precision reference, and its backward against central
 * finite differences of loss = Σ out·R (so dout = R) for every parameter tensor and the input,
 * with the chosen experts held fixed (PEER_SELECT_REUSE) while differencing. */
#include <math.h>
#include <string.h>

#include "test-util.h"

typedef struct {
    int D, N, h, k, dk, BT;
    bool shared_keys;
    peer_query_norm norm;
    peer_activation act;
    peer_mode mode;
} grad_case;

/* Step and tolerance of the finite differences. The forward runs in float32: out carries a
 * relative rounding error of ~1e-7, so the loss, a sum of ~100 such terms, is noisy at a few
 * 1e-6, and divided by the step 2ε = 2e-2 that is ~2e-4 in the difference quotient, the largest
 * error these cases show. ε = 1e-2 keeps the central difference's truncation error (ε²/6·f''',
 * with norms over only 4..12 values) near 1e-4 relative. Hence 1e-3 absolute plus 1e-2 relative,
 * about 4x the worst error seen (each tensor reports its share); a wrong formula (a missing path,
 * a factor, a transposed index) is off by far more. */
#define FD_EPS 1e-2f
#define FD_ATOL 1e-3
#define FD_RTOL 1e-2

typedef struct {
    test_layer *layer;
    const grad_case *gc;
    float *inp;           /* (BT, D) */
    const float *R;       /* (BT, D) */
    float *out;           /* (BT, D) */
    const int32_t *chosen;      /* (BT, h, k) the experts of the first forward */
    const float *base_preact;   /* (BT, h, k) */
} fd_context;

static double loss_of(const float *out, const float *R, size_t n)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += (double)out[i] * (double)R[i];
    return sum;
}

/* The loss at the current parameters and input with the first forward's experts; sets *kink when
 * some ReLU pre-activation has a different sign than at the base point. */
static double fd_loss(fd_context *ctx, bool *kink)
{
    test_layer *layer = ctx->layer;
    const grad_case *gc = ctx->gc;
    size_t slots = (size_t)gc->BT * gc->h * gc->k;
    peer_layer_forward(ctx->out, &layer->acts, ctx->inp, &layer->params, &layer->cfg, gc->BT,
                       gc->mode, PEER_SELECT_REUSE, NULL);
    g_assert_cmpmem(layer->acts.expert, slots * sizeof(int32_t), ctx->chosen,
                    slots * sizeof(int32_t));
    if (gc->act == PEER_ACTIVATION_RELU) {
        for (size_t i = 0; i < slots; i++)
            if ((layer->acts.preact[i] > 0.0f) != (ctx->base_preact[i] > 0.0f))
                *kink = true;
    }
    return loss_of(ctx->out, ctx->R, (size_t)gc->BT * gc->D);
}

/* Central differences of every element of values (n) against analytic (n). */
static void check_tensor(fd_context *ctx, float *values, const float *analytic, size_t n,
                         const char *name)
{
    size_t compared = 0, kinks = 0;
    double worst = 0.0; /* the largest share of the tolerance an entry used */
    for (size_t i = 0; i < n; i++) {
        float orig = values[i];
        float plus = orig + FD_EPS, minus = orig - FD_EPS;
        bool kink = false;
        values[i] = plus;
        double loss_plus = fd_loss(ctx, &kink);
        values[i] = minus;
        double loss_minus = fd_loss(ctx, &kink);
        values[i] = orig;
        if (kink) {
            kinks++;
            continue;
        }
        /* The step actually taken, after float rounding of orig ± ε. */
        double fd = (loss_plus - loss_minus) / ((double)plus - (double)minus);
        test_assert_close(analytic[i], fd, FD_ATOL, FD_RTOL, "d loss / d %s[%zu]", name, i);
        worst = MAX(worst, fabs(analytic[i] - fd) / (FD_ATOL + FD_RTOL * fabs(fd)));
        compared++;
    }
    g_test_message("%s: %zu entries compared, %zu skipped at a ReLU kink, worst used %.0f%% of "
                   "the tolerance", name, compared, kinks, 100.0 * worst);
    /* Kinks are rare at random points; many would mean the sign test is broken. */
    g_assert_cmpuint(kinks * 4, <=, n);
}

/* Forward quantities against a double reference built from the engine's own choice of experts
 * (retrieval itself is test-retrieval's business). */
static void check_forward(const test_layer *layer, const grad_case *gc, const float *inp,
                          const float *out, const float *running_mean0,
                          const float *running_var0)
{
    const peer_layer_config *cfg = &layer->cfg;
    const peer_layer_acts *acts = &layer->acts;
    const peer_layer_params *p = &layer->params;
    int BT = gc->BT, D = gc->D, h = gc->h, k = gc->k, dk = gc->dk, HK = h * dk;
    int n = peer_layer_side(cfg);

    double *query = g_new(double, (size_t)BT * HK);
    double *normed = g_new(double, (size_t)BT * HK);
    test_reference_query(query, inp, p, cfg, BT);
    for (size_t i = 0; i < (size_t)BT * HK; i++)
        test_assert_close(acts->query[i], query[i], 1e-5, 1e-5, "query[%zu]", i);

    /* The norm from the engine's own query, so only the norm's error is measured. In evaluation
     * the reference reads params' running statistics, which the forward must not have moved. */
    for (size_t i = 0; i < (size_t)BT * HK; i++)
        query[i] = acts->query[i];
    test_reference_norm(normed, query, p, cfg, BT, gc->mode);
    for (size_t i = 0; i < (size_t)BT * HK; i++)
        test_assert_close(acts->query_normed[i], normed[i], 1e-4, 1e-4, "query_normed[%zu]", i);

    if (gc->norm == PEER_NORM_BATCH && gc->mode == PEER_MODE_TRAIN) {
        for (int f = 0; f < HK; f++) {
            double mean = 0.0, var = 0.0;
            for (int t = 0; t < BT; t++)
                mean += query[(size_t)t * HK + f];
            mean /= BT;
            for (int t = 0; t < BT; t++)
                var += (query[(size_t)t * HK + f] - mean) * (query[(size_t)t * HK + f] - mean);
            test_assert_close(acts->norm_mean[f], mean, 1e-5, 1e-5, "batch mean[%d]", f);
            test_assert_close(acts->norm_rstd[f], 1.0 / sqrt(var / BT + PEER_BATCH_NORM_EPS), 1e-5,
                              1e-4, "batch rstd[%d]", f);
            /* Running statistics: momentum 0.1, from the unbiased batch variance. */
            test_assert_close(p->running_mean[f],
                              0.9 * running_mean0[f] + 0.1 * mean, 1e-6, 1e-5,
                              "running_mean[%d]", f);
            test_assert_close(p->running_var[f],
                              0.9 * running_var0[f] + 0.1 * var / (BT - 1), 1e-6, 1e-5,
                              "running_var[%d]", f);
        }
    } else if (gc->norm == PEER_NORM_BATCH) {
        g_assert_cmpmem(p->running_mean, HK * sizeof(float), running_mean0, HK * sizeof(float));
        g_assert_cmpmem(p->running_var, HK * sizeof(float), running_var0, HK * sizeof(float));
    } else if (gc->norm == PEER_NORM_LAYER) {
        for (int t = 0; t < BT; t++) {
            for (int j = 0; j < h; j++) {
                const double *q = query + (size_t)t * HK + (size_t)j * dk;
                double mean = 0.0, var = 0.0;
                for (int i = 0; i < dk; i++)
                    mean += q[i];
                mean /= dk;
                for (int i = 0; i < dk; i++)
                    var += (q[i] - mean) * (q[i] - mean);
                test_assert_close(acts->norm_mean[t * h + j], mean, 1e-5, 1e-5,
                                  "layer mean[%d, %d]", t, j);
                test_assert_close(acts->norm_rstd[t * h + j],
                                  1.0 / sqrt(var / dk + PEER_LAYER_NORM_EPS), 1e-5, 1e-4,
                                  "layer rstd[%d, %d]", t, j);
            }
        }
    }

    double *ref_out = g_new0(double, (size_t)BT * D);
    for (int t = 0; t < BT; t++) {
        const float *x = inp + (size_t)t * D;
        for (int j = 0; j < h; j++) {
            size_t slot0 = ((size_t)t * h + (size_t)j) * (size_t)k;
            const float *qn = acts->query_normed + (size_t)t * HK + (size_t)j * dk;
            double scores[64], max_score = -INFINITY, total = 0.0;
            g_assert_cmpint(k, <=, 64);
            for (int s = 0; s < k; s++) {
                int e = acts->expert[slot0 + s];
                g_assert_cmpint(e, >=, 0);
                g_assert_cmpint(e, <, n * n);
                scores[s] = test_expert_score(p, cfg, j, qn, e);
                test_assert_close(acts->score[slot0 + s], scores[s], 1e-5, 1e-5,
                                  "score[%d, %d, %d]", t, j, s);
                max_score = MAX(max_score, scores[s]);
            }
            for (int s = 0; s < k; s++)
                total += exp(scores[s] - max_score);
            for (int s = 0; s < k; s++) {
                int e = acts->expert[slot0 + s];
                double gate = exp(scores[s] - max_score) / total;
                test_assert_close(acts->gate[slot0 + s], gate, 1e-6, 1e-5, "gate[%d, %d, %d]", t,
                                  j, s);
                double pre = 0.0;
                for (int c = 0; c < D; c++)
                    pre += (double)p->down[(size_t)e * D + c] * (double)x[c];
                test_assert_close(acts->preact[slot0 + s], pre, 1e-5, 1e-5,
                                  "preact[%d, %d, %d]", t, j, s);
                double a = gate * test_activation(gc->act, pre);
                for (int c = 0; c < D; c++)
                    ref_out[(size_t)t * D + c] += a * (double)p->up[(size_t)e * D + c];
            }
        }
    }
    for (size_t i = 0; i < (size_t)BT * D; i++)
        test_assert_close(out[i], ref_out[i], 1e-5, 1e-4, "out[%zu]", i);
    g_free(ref_out);
    g_free(normed);
    g_free(query);
}

static void test_gradients(gconstpointer data)
{
    const grad_case *gc = data;
    peer_layer_config cfg = test_config(gc->D, gc->N, gc->h, gc->k, gc->dk, gc->shared_keys,
                                        gc->norm, gc->act);
    test_layer layer;
    test_layer_init(&layer, &cfg, gc->BT, TEST_SEED + (uint64_t)gc->N * 31u + (uint64_t)gc->BT);
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED + 7u * (uint64_t)gc->D);
    size_t BTD = (size_t)gc->BT * gc->D;
    int HK = gc->h * gc->dk, n = peer_layer_side(&cfg);
    size_t slots = (size_t)gc->BT * gc->h * gc->k;
    float *inp = test_random_floats(&rng, BTD, 1.0f);
    float *R = test_random_floats(&rng, BTD, 1.0f);
    float *out = g_new(float, BTD);
    float *running_mean0 = NULL, *running_var0 = NULL;
    if (gc->norm == PEER_NORM_BATCH) {
        running_mean0 = test_copy_floats(layer.params.running_mean, HK);
        running_var0 = test_copy_floats(layer.params.running_var, HK);
    }

    peer_layer_forward(out, &layer.acts, inp, &layer.params, &cfg, gc->BT, gc->mode,
                       PEER_SELECT_RETRIEVE, NULL);
    g_assert_cmpint(layer.acts.mode, ==, gc->mode);
    check_forward(&layer, gc, inp, out, running_mean0, running_var0);

    int32_t *chosen = g_memdup2(layer.acts.expert, slots * sizeof(int32_t));
    float *base_preact = test_copy_floats(layer.acts.preact, slots);

    test_layer_zero_grads(&layer);
    float *dinp = g_new0(float, BTD);
    peer_layer_backward(dinp, &layer.grads, &layer.sparse, &layer.acts, R, inp, &layer.params,
                        &cfg, gc->BT, NULL);

    /* Without an input gradient the parameter gradients are the same, bit for bit. */
    float *dense_with_dinp = test_copy_floats(layer.grad_arena, peer_layer_grads_count(&cfg));
    float *down_with_dinp = test_copy_floats(layer.sparse.down,
                                             (size_t)layer.sparse.n_rows * gc->D);
    int rows_with_dinp = layer.sparse.n_rows;
    test_layer_zero_grads(&layer);
    peer_layer_backward(NULL, &layer.grads, &layer.sparse, &layer.acts, R, inp, &layer.params,
                        &cfg, gc->BT, NULL);
    g_assert_cmpint(layer.sparse.n_rows, ==, rows_with_dinp);
    g_assert_cmpmem(layer.grad_arena, peer_layer_grads_count(&cfg) * sizeof(float),
                    dense_with_dinp, peer_layer_grads_count(&cfg) * sizeof(float));
    g_assert_cmpmem(layer.sparse.down, (size_t)rows_with_dinp * gc->D * sizeof(float),
                    down_with_dinp, (size_t)rows_with_dinp * gc->D * sizeof(float));
    g_free(down_with_dinp);
    g_free(dense_with_dinp);

    /* Reusing the choice at the same point reproduces the forward. Not bit for bit: retrieval
     * scores sub-keys with one matrix product, reuse rescores the chosen ones alone, and the
     * two sum in different orders. */
    float *out_again = g_new(float, BTD);
    peer_layer_forward(out_again, &layer.acts, inp, &layer.params, &cfg, gc->BT, gc->mode,
                       PEER_SELECT_REUSE, NULL);
    for (size_t i = 0; i < BTD; i++)
        test_assert_close(out_again[i], out[i], 1e-6, 1e-5, "out[%zu] with the choice reused", i);
    g_free(out_again);

    fd_context ctx = { .layer = &layer, .gc = gc, .inp = inp, .R = R, .out = out,
                       .chosen = chosen, .base_preact = base_preact };

    for (int tensor = 0; tensor < PEER_LAYER_N_TENSORS; tensor++) {
        if (!test_tensor_has_dense_grad(&cfg, tensor))
            continue;
        float *values = *peer_layer_params_field(&layer.params, tensor);
        float *analytic = *peer_layer_params_field(&layer.grads, tensor);
        g_assert_nonnull(values);
        g_assert_nonnull(analytic);
        check_tensor(&ctx, values, analytic, peer_layer_tensor_size(&cfg, tensor),
                     peer_layer_tensor_name(tensor));
    }

    /* The sparse tables as dense arrays: untouched rows must have exactly zero difference. */
    size_t ND = (size_t)gc->N * gc->D;
    float *ddown = g_new0(float, ND), *dup = g_new0(float, ND);
    for (int r = 0; r < layer.sparse.n_rows; r++) {
        int e = layer.sparse.rows[r];
        g_assert_cmpint(layer.sparse.position[e], ==, r);
        memcpy(ddown + (size_t)e * gc->D, layer.sparse.down + (size_t)r * gc->D,
               gc->D * sizeof(float));
        memcpy(dup + (size_t)e * gc->D, layer.sparse.up + (size_t)r * gc->D,
               gc->D * sizeof(float));
    }
    check_tensor(&ctx, layer.params.down, ddown, ND, "down");
    check_tensor(&ctx, layer.params.up, dup, ND, "up");
    check_tensor(&ctx, inp, dinp, BTD, "input");

    /* Gradient reaches every sub-key a chosen expert uses, and no other. */
    int G = peer_layer_key_groups(&cfg), half = gc->dk / 2;
    bool *used = g_new0(bool, (size_t)G * 2 * n);
    for (size_t i = 0; i < slots; i++) {
        int head = (int)((i / (size_t)gc->k) % (size_t)gc->h);
        int g = gc->shared_keys ? 0 : head;
        used[((size_t)g * 2 + 0) * n + chosen[i] / n] = true;
        used[((size_t)g * 2 + 1) * n + chosen[i] % n] = true;
    }
    for (size_t row = 0; row < (size_t)G * 2 * n; row++) {
        double norm = 0.0;
        for (int i = 0; i < half; i++)
            norm += fabs(layer.grads.keys[row * half + i]);
        if (used[row] && norm == 0.0)
            test_fail("sub-key row %zu (group %zu side %zu index %zu) is used by a chosen expert "
                      "but got no gradient", row, row / (2 * n), (row / n) % 2, row % n);
        if (!used[row] && norm != 0.0)
            test_fail("sub-key row %zu is used by no chosen expert but got gradient %g", row,
                      norm);
    }

    g_free(used);
    g_free(dup);
    g_free(ddown);
    g_free(dinp);
    g_free(base_preact);
    g_free(chosen);
    g_free(running_var0);
    g_free(running_mean0);
    g_free(out);
    g_free(R);
    g_free(inp);
    test_layer_free(&layer);
}

/* Batch-norm in evaluation after a training forward: the running statistics the training forward
 * left behind are what the evaluation forward normalises with. */
static void test_batch_norm_train_then_eval(void)
{
    peer_layer_config cfg = test_config(12, 36, 2, 3, 6, false, PEER_NORM_BATCH,
                                        PEER_ACTIVATION_GELU);
    int BT = 9, HK = cfg.heads * cfg.d_key;
    test_layer layer;
    test_layer_init(&layer, &cfg, BT, TEST_SEED + 99u);
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED + 100u);
    float *inp = test_random_floats(&rng, (size_t)BT * cfg.d_model, 1.5f);
    float *out = g_new(float, (size_t)BT * cfg.d_model);
    float *mean0 = test_copy_floats(layer.params.running_mean, HK);
    float *var0 = test_copy_floats(layer.params.running_var, HK);

    /* Two training steps over the same batch: each moves the running statistics 10% of the way
     * to the batch's, so after two, 19%. */
    peer_layer_forward(out, &layer.acts, inp, &layer.params, &cfg, BT, PEER_MODE_TRAIN,
                       PEER_SELECT_RETRIEVE, NULL);
    peer_layer_forward(out, &layer.acts, inp, &layer.params, &cfg, BT, PEER_MODE_TRAIN,
                       PEER_SELECT_RETRIEVE, NULL);
    double *query = g_new(double, (size_t)BT * HK);
    for (size_t i = 0; i < (size_t)BT * HK; i++)
        query[i] = layer.acts.query[i];
    for (int f = 0; f < HK; f++) {
        double mean = 0.0, var = 0.0;
        for (int t = 0; t < BT; t++)
            mean += query[(size_t)t * HK + f];
        mean /= BT;
        for (int t = 0; t < BT; t++)
            var += (query[(size_t)t * HK + f] - mean) * (query[(size_t)t * HK + f] - mean);
        var /= BT - 1;
        test_assert_close(layer.params.running_mean[f], 0.81 * mean0[f] + 0.19 * mean, 1e-6, 1e-5,
                          "running_mean[%d] after two steps", f);
        test_assert_close(layer.params.running_var[f], 0.81 * var0[f] + 0.19 * var, 1e-6, 1e-5,
                          "running_var[%d] after two steps", f);
    }

    float *mean2 = test_copy_floats(layer.params.running_mean, HK);
    float *var2 = test_copy_floats(layer.params.running_var, HK);
    peer_layer_forward(out, &layer.acts, inp, &layer.params, &cfg, BT, PEER_MODE_EVAL,
                       PEER_SELECT_RETRIEVE, NULL);
    g_assert_cmpint(layer.acts.mode, ==, PEER_MODE_EVAL);
    g_assert_cmpmem(layer.params.running_mean, HK * sizeof(float), mean2, HK * sizeof(float));
    g_assert_cmpmem(layer.params.running_var, HK * sizeof(float), var2, HK * sizeof(float));
    double *normed = g_new(double, (size_t)BT * HK);
    test_reference_norm(normed, query, &layer.params, &cfg, BT, PEER_MODE_EVAL);
    for (size_t i = 0; i < (size_t)BT * HK; i++)
        test_assert_close(layer.acts.query_normed[i], normed[i], 1e-5, 1e-5,
                          "evaluation query_normed[%zu]", i);

    /* One token alone in evaluation normalises the same as within the batch: no batch
     * statistics leak in. */
    float *one = g_new(float, cfg.d_model);
    peer_layer_forward(one, &layer.acts, inp + 4 * cfg.d_model, &layer.params, &cfg, 1,
                       PEER_MODE_EVAL, PEER_SELECT_RETRIEVE, NULL);
    for (int f = 0; f < HK; f++)
        test_assert_close(layer.acts.query_normed[f], normed[4 * HK + f], 1e-5, 1e-5,
                          "single-token evaluation query_normed[%d]", f);
    for (int c = 0; c < cfg.d_model; c++)
        test_assert_close(one[c], out[4 * cfg.d_model + c], 1e-6, 1e-5, "single-token out[%d]",
                          c);

    g_free(one);
    g_free(normed);
    g_free(var2);
    g_free(mean2);
    g_free(query);
    g_free(var0);
    g_free(mean0);
    g_free(out);
    g_free(inp);
    test_layer_free(&layer);
}

static const grad_case cases[] = {
    { 12, 36, 2, 3, 6, 7, false, PEER_NORM_NONE, PEER_ACTIVATION_GELU, PEER_MODE_TRAIN },
    { 16, 64, 3, 4, 8, 9, true, PEER_NORM_NONE, PEER_ACTIVATION_RELU, PEER_MODE_TRAIN },
    { 8, 16, 2, 2, 4, 5, true, PEER_NORM_LAYER, PEER_ACTIVATION_GELU, PEER_MODE_TRAIN },
    { 12, 49, 3, 3, 8, 10, false, PEER_NORM_LAYER, PEER_ACTIVATION_RELU, PEER_MODE_TRAIN },
    { 8, 16, 3, 4, 4, 6, false, PEER_NORM_LAYER, PEER_ACTIVATION_GELU, PEER_MODE_TRAIN }, /* k = n */
    { 10, 25, 2, 4, 6, 12, false, PEER_NORM_BATCH, PEER_ACTIVATION_GELU, PEER_MODE_TRAIN },
    { 16, 64, 2, 3, 8, 8, true, PEER_NORM_BATCH, PEER_ACTIVATION_RELU, PEER_MODE_TRAIN },
    { 8, 16, 3, 2, 4, 6, false, PEER_NORM_BATCH, PEER_ACTIVATION_GELU, PEER_MODE_EVAL },
    { 12, 36, 2, 3, 6, 7, true, PEER_NORM_BATCH, PEER_ACTIVATION_RELU, PEER_MODE_EVAL },
};

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        const grad_case *gc = &cases[i];
        char *path = g_strdup_printf("/peer-gradients/%s/%s/%s/%s",
                                     peer_query_norm_name(gc->norm),
                                     peer_activation_name(gc->act),
                                     gc->mode == PEER_MODE_TRAIN ? "train" : "eval",
                                     gc->shared_keys ? "shared" : "per-head");
        g_test_add_data_func(path, gc, test_gradients);
        g_free(path);
    }
    g_test_add_func("/peer-gradients/batch-norm/train-then-eval", test_batch_norm_train_then_eval);
    return g_test_run();
}
