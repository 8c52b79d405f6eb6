/* The retrieval trace of a token shows the path the forward took: its sub-key scores are the
 * half-query dot products, its sub-key top-k the true top-k, its candidate grid the sums, and its
 * chosen experts, scores, gates and activations those of the forward. */
#include <math.h>
#include <string.h>

#include "retrieval-trace.h"
#include "test-util.h"

typedef struct {
    int D, N, h, k, dk, BT;
    bool shared_keys;
    peer_query_norm norm;
    peer_activation act;
} trace_case;

static int compare_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

static void check_head(const peer_head_trace *head, const test_layer *layer, int t, int j,
                       const float *x)
{
    const peer_layer_config *cfg = &layer->cfg;
    const peer_layer_acts *acts = &layer->acts;
    int n = peer_layer_side(cfg), k = cfg->topk, dk = cfg->d_key, half = dk / 2;
    int D = cfg->d_model, HK = cfg->heads * dk;
    size_t slot0 = ((size_t)t * cfg->heads + j) * k;

    g_assert_cmpint(head->key_group, ==, cfg->shared_keys ? 0 : j);
    g_assert_cmpmem(head->query, dk * sizeof(float), acts->query_normed + (size_t)t * HK + j * dk,
                    dk * sizeof(float));

    for (int side = 0; side < 2; side++) {
        const float *q = head->query + side * half;
        for (int a = 0; a < n; a++) {
            const float *c = test_subkey(&layer->params, cfg, head->key_group, side, a);
            double dot = 0.0, scale = 0.0;
            for (int i = 0; i < half; i++) {
                dot += (double)q[i] * (double)c[i];
                scale += fabs((double)q[i] * (double)c[i]);
            }
            test_assert_close(head->sub_score[side][a], dot, 1e-5 * scale + 1e-7, 0.0,
                              "token %d head %d sub_score[%d][%d]", t, j, side, a);
        }
        /* sub_top: distinct, best first, and no sub-key left out scores higher than the k-th. */
        bool *in_top = g_new0(bool, n);
        for (int i = 0; i < k; i++) {
            int a = head->sub_top[side][i];
            g_assert_cmpint(a, >=, 0);
            g_assert_cmpint(a, <, n);
            g_assert_false(in_top[a]);
            in_top[a] = true;
            if (i > 0)
                g_assert_cmpfloat(head->sub_score[side][head->sub_top[side][i - 1]], >=,
                                  head->sub_score[side][a]);
        }
        float kth = head->sub_score[side][head->sub_top[side][k - 1]];
        for (int a = 0; a < n; a++)
            if (!in_top[a] && head->sub_score[side][a] > kth)
                test_fail("token %d head %d side %d: sub-key %d (%g) beats the k-th of sub_top "
                          "(%g) but is not in it", t, j, side, a, head->sub_score[side][a], kth);
        g_free(in_top);
    }

    for (int i = 0; i < k; i++)
        for (int jj = 0; jj < k; jj++)
            g_assert_cmpfloat(head->candidate[i * k + jj], ==,
                              head->sub_score[0][head->sub_top[0][i]] +
                                  head->sub_score[1][head->sub_top[1][jj]]);

    /* The chosen are the k best of the k × k grid, best first, each a distinct cell. */
    float *sorted = test_copy_floats(head->candidate, (size_t)k * k);
    qsort(sorted, (size_t)k * k, sizeof(float), compare_desc);
    bool *picked = g_new0(bool, (size_t)k * k);
    for (int s = 0; s < k; s++) {
        int pi = head->pick_i[s], pj = head->pick_j[s];
        g_assert_cmpint(pi, >=, 0);
        g_assert_cmpint(pi, <, k);
        g_assert_cmpint(pj, >=, 0);
        g_assert_cmpint(pj, <, k);
        g_assert_false(picked[pi * k + pj]);
        picked[pi * k + pj] = true;
        g_assert_cmpfloat(head->score[s], ==, head->candidate[pi * k + pj]);
        g_assert_cmpfloat(head->score[s], ==, sorted[s]);
        g_assert_cmpint(head->row[s], ==, head->sub_top[0][pi]);
        g_assert_cmpint(head->col[s], ==, head->sub_top[1][pj]);
        g_assert_cmpint(head->expert[s], ==, head->row[s] * n + head->col[s]);
        g_assert_cmpint(head->row[s], ==, head->expert[s] / n);
        g_assert_cmpint(head->col[s], ==, head->expert[s] % n);
    }
    g_free(picked);
    g_free(sorted);

    /* The same experts as the forward, with its scores, gates and activations. */
    double gate_sum = 0.0;
    for (int s = 0; s < k; s++) {
        int e = head->expert[s];
        if (e != acts->expert[slot0 + s])
            test_fail("token %d head %d slot %d: the trace chose expert %d, the forward %d", t, j,
                      s, e, acts->expert[slot0 + s]);
        test_assert_close(head->score[s], acts->score[slot0 + s], 1e-5, 1e-5,
                          "token %d head %d score %d", t, j, s);
        test_assert_close(head->gate[s], acts->gate[slot0 + s], 1e-6, 1e-5,
                          "token %d head %d gate %d", t, j, s);
        gate_sum += head->gate[s];
        double pre = 0.0;
        for (int c = 0; c < D; c++)
            pre += (double)layer->params.down[(size_t)e * D + c] * (double)x[c];
        test_assert_close(acts->preact[slot0 + s], pre, 1e-5, 1e-5, "token %d head %d preact %d",
                          t, j, s);
        test_assert_close(head->activation[s], test_activation(cfg->activation, pre), 1e-5, 1e-5,
                          "token %d head %d activation %d", t, j, s);
        double v_norm = 0.0;
        for (int c = 0; c < D; c++)
            v_norm += (double)layer->params.up[(size_t)e * D + c] *
                      (double)layer->params.up[(size_t)e * D + c];
        v_norm = sqrt(v_norm);
        test_assert_close(head->contribution[s],
                          fabs((double)head->gate[s] * (double)head->activation[s]) * v_norm, 1e-7,
                          1e-5, "token %d head %d contribution %d", t, j, s);
        g_assert_cmpfloat(head->contribution[s], >=, 0.0f);
    }
    test_assert_close(gate_sum, 1.0, 1e-5, 0.0, "token %d head %d gate sum", t, j);
}

static void test_trace(gconstpointer data)
{
    const trace_case *tc = data;
    peer_layer_config cfg = test_config(tc->D, tc->N, tc->h, tc->k, tc->dk, tc->shared_keys,
                                        tc->norm, tc->act);
    test_layer layer;
    test_layer_init(&layer, &cfg, tc->BT, TEST_SEED + 77u + (uint64_t)tc->N);
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED + 78u);
    float *inp = test_random_floats(&rng, (size_t)tc->BT * tc->D, 1.0f);
    float *out = g_new(float, (size_t)tc->BT * tc->D);
    peer_layer_forward(out, &layer.acts, inp, &layer.params, &cfg, tc->BT, PEER_MODE_TRAIN,
                       PEER_SELECT_RETRIEVE, NULL);
    int HK = tc->h * tc->dk;

    for (int t = 0; t < tc->BT; t++) {
        peer_token_trace trace;
        peer_error err;
        const float *x = inp + (size_t)t * tc->D;
        if (!peer_token_trace_compute(&trace, &cfg, &layer.params, x,
                                      layer.acts.query_normed + (size_t)t * HK, &err))
            test_fail("peer_token_trace_compute: %s", err.message);
        g_assert_cmpint(trace.heads, ==, tc->h);
        g_assert_cmpint(trace.n, ==, peer_layer_side(&cfg));
        g_assert_cmpint(trace.topk, ==, tc->k);
        g_assert_cmpint(trace.d_key, ==, tc->dk);
        for (int j = 0; j < tc->h; j++)
            check_head(&trace.head[j], &layer, t, j, x);
        peer_token_trace_free(&trace);
    }

    g_free(out);
    g_free(inp);
    test_layer_free(&layer);
}

static void test_trace_refuses(void)
{
    peer_layer_config cfg = test_config(8, 1000, 2, 4, 8, false, PEER_NORM_NONE,
                                        PEER_ACTIVATION_GELU);
    peer_token_trace trace;
    peer_error err;
    memset(&err, 0, sizeof err);
    peer_layer_params params;
    memset(&params, 0, sizeof params);
    float x[8] = { 0 }, q[16] = { 0 };
    g_assert_false(peer_token_trace_compute(&trace, &cfg, &params, x, q, &err));
    g_assert_nonnull(strstr(err.message, "1000"));
    peer_token_trace_free(&trace);
}

static const trace_case cases[] = {
    { 8, 16, 1, 1, 2, 4, true, PEER_NORM_NONE, PEER_ACTIVATION_GELU },
    { 16, 64, 2, 8, 8, 6, false, PEER_NORM_NONE, PEER_ACTIVATION_RELU }, /* k = n */
    { 16, 1024, 4, 8, 16, 10, false, PEER_NORM_LAYER, PEER_ACTIVATION_GELU },
    { 32, 4096, 3, 16, 32, 12, true, PEER_NORM_BATCH, PEER_ACTIVATION_GELU },
    { 24, 16384, 2, 32, 64, 5, false, PEER_NORM_BATCH, PEER_ACTIVATION_RELU },
};

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        const trace_case *tc = &cases[i];
        char *path = g_strdup_printf("/retrieval-trace/N=%d/h=%d/k=%d/%s/%s", tc->N, tc->h, tc->k,
                                     tc->shared_keys ? "shared" : "per-head",
                                     peer_query_norm_name(tc->norm));
        g_test_add_data_func(path, tc, test_trace);
        g_free(path);
    }
    g_test_add_func("/retrieval-trace/refuses-invalid-config", test_trace_refuses);
    return g_test_run();
}
