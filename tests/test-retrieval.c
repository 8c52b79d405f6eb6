/* Product-key retrieval against brute force: for every token and head, the k experts the forward
 * chose must be the k best of all N full keys [C[a]; C'[b]] scored in double, best first, with
 * their scores and softmax gates. */
#include <math.h>
#include <string.h>

#include "product-keys.h"
#include "test-util.h"

typedef struct {
    int n_experts, heads, topk, d_key, tokens;
    bool shared_keys;
    peer_query_norm norm;
    bool memory_gated; /* the N = 1024² table: run only where the machine has room */
    bool tied_keys;    /* only 3 distinct sub-keys per side: many experts score exactly alike */
} retrieval_case;

typedef struct {
    double score;
    int expert;
} scored_expert;

/* The float forward and the double brute force may order two keys whose scores are this close
 * (relative to Σ|q_i·key_i|, the scale of a float dot product's rounding error) differently. */
#define RETRIEVAL_TIE_RTOL 1e-5

/* best (k + 1), best first: every full key scored in double, kept by insertion. */
static void brute_force_top(scored_expert *best, int keep, const peer_layer_params *params,
                            const peer_layer_config *cfg, int head, const float *q)
{
    int n = peer_layer_side(cfg);
    int half = cfg->d_key / 2;
    int group = cfg->shared_keys ? 0 : head;
    int filled = 0;
    double *key_q = g_new(double, cfg->d_key);
    for (int i = 0; i < cfg->d_key; i++)
        key_q[i] = q[i];
    for (int a = 0; a < n; a++) {
        const float *c = test_subkey(params, cfg, group, 0, a);
        for (int b = 0; b < n; b++) {
            const float *c2 = test_subkey(params, cfg, group, 1, b);
            double s = 0.0;
            for (int i = 0; i < half; i++)
                s += key_q[i] * (double)c[i];
            for (int i = 0; i < half; i++)
                s += key_q[half + i] * (double)c2[i];
            if (filled == keep && s <= best[keep - 1].score)
                continue;
            int pos = filled < keep ? filled++ : keep - 1;
            while (pos > 0 && best[pos - 1].score < s) {
                best[pos] = best[pos - 1];
                pos--;
            }
            best[pos].score = s;
            best[pos].expert = a * n + b;
        }
    }
    g_free(key_q);
    g_assert_cmpint(filled, ==, keep);
}

static bool near_tie(const peer_layer_params *params, const peer_layer_config *cfg, int head,
                     const float *q, const scored_expert *x, const scored_expert *y)
{
    double scale = MAX(test_expert_score_scale(params, cfg, head, q, x->expert),
                       test_expert_score_scale(params, cfg, head, q, y->expert));
    return fabs(x->score - y->score) < RETRIEVAL_TIE_RTOL * scale;
}

static void check_token_head(const test_layer *layer, int t, int j, bool tied_keys)
{
    const peer_layer_config *cfg = &layer->cfg;
    const peer_layer_acts *acts = &layer->acts;
    int k = cfg->topk, N = cfg->n_experts, HK = cfg->heads * cfg->d_key;
    const float *q = acts->query_normed + (size_t)t * HK + (size_t)j * cfg->d_key;
    size_t slot0 = ((size_t)t * cfg->heads + (size_t)j) * (size_t)k;
    const int32_t *expert = acts->expert + slot0;
    const float *score = acts->score + slot0;
    const float *gate = acts->gate + slot0;

    /* k + 1 when there is a (k+1)-th key to tell a boundary tie from a wrong pick. */
    int keep = k < N ? k + 1 : k;
    scored_expert *best = g_new(scored_expert, keep);
    brute_force_top(best, keep, &layer->params, cfg, j, q);

    for (int s = 0; s < k; s++) {
        g_assert_cmpint(expert[s], >=, 0);
        g_assert_cmpint(expert[s], <, N);
        for (int r = 0; r < s; r++)
            g_assert_cmpint(expert[r], !=, expert[s]);
    }

    /* The s-th chosen has the s-th best exact score, whichever of several tied experts it is. */
    for (int s = 0; s < k; s++) {
        double exact = test_expert_score(&layer->params, cfg, j, q, expert[s]);
        double scale = test_expert_score_scale(&layer->params, cfg, j, q, expert[s]);
        test_assert_close(exact, best[s].score, RETRIEVAL_TIE_RTOL * scale, 0.0,
                          "token %d head %d: exact score of the expert in slot %d", t, j, s);
    }

    /* The chosen set is the brute-force top k; the only allowed difference is the k-th expert
     * traded for the (k+1)-th when their exact scores are a rounding error apart. With tied
     * keys any of the tied experts may be chosen, which the check above has covered. */
    int swapped = 0;
    for (int s = 0; s < k && !tied_keys; s++) {
        bool found = false;
        for (int r = 0; r < k && !found; r++)
            found = best[r].expert == expert[s];
        if (found)
            continue;
        swapped++;
        if (keep > k && expert[s] == best[k].expert && near_tie(&layer->params, cfg, j, q,
                                                                 &best[k - 1], &best[k]))
            continue;
        test_fail("token %d head %d slot %d: expert %d (exact score %.9g) is not in the top %d; "
                  "the %d-th best is %d with %.9g", t, j, s, expert[s],
                  test_expert_score(&layer->params, cfg, j, q, expert[s]), k, k,
                  best[k - 1].expert, best[k - 1].score);
    }
    g_assert_cmpint(swapped, <=, 1);

    for (int s = 0; s < k; s++) {
        double exact = test_expert_score(&layer->params, cfg, j, q, expert[s]);
        double scale = test_expert_score_scale(&layer->params, cfg, j, q, expert[s]);
        test_assert_close(score[s], exact, 1e-5 * scale + 1e-6, 0.0,
                          "token %d head %d slot %d expert %d score", t, j, s, expert[s]);
        if (s > 0) {
            /* Best first: the forward's own scores never increase, and the exact scores agree
             * with that order up to rounding. */
            g_assert_cmpfloat(score[s - 1], >=, score[s]);
            scored_expert prev = { test_expert_score(&layer->params, cfg, j, q, expert[s - 1]),
                                   expert[s - 1] };
            scored_expert cur = { exact, expert[s] };
            if (!tied_keys && prev.score < cur.score &&
                !near_tie(&layer->params, cfg, j, q, &prev, &cur))
                test_fail("token %d head %d: expert %d (%.9g) ranked before expert %d (%.9g)", t,
                          j, prev.expert, prev.score, cur.expert, cur.score);
        }
    }

    double max_score = score[0], total = 0.0, gate_sum = 0.0;
    for (int s = 0; s < k; s++)
        total += exp((double)score[s] - max_score);
    for (int s = 0; s < k; s++) {
        double expected = exp((double)score[s] - max_score) / total;
        test_assert_close(gate[s], expected, 1e-6, 1e-5, "token %d head %d slot %d gate", t, j,
                          s);
        g_assert_cmpfloat(gate[s], >, 0.0f);
        gate_sum += gate[s];
    }
    test_assert_close(gate_sum, 1.0, 1e-5, 0.0, "token %d head %d gate sum", t, j);
    g_free(best);
}

static void test_retrieval_case(gconstpointer data)
{
    const retrieval_case *rc = data;
    int D = rc->memory_gated ? 8 : 16;
    peer_layer_config cfg = test_config(D, rc->n_experts, rc->heads, rc->topk, rc->d_key,
                                        rc->shared_keys, rc->norm, PEER_ACTIVATION_GELU);
    if (rc->memory_gated) {
        peer_memory mem;
        peer_layer_memory_estimate(&cfg, rc->tokens, &mem);
        /* The estimate counts gradients and Adam moments this test never allocates; twice it
         * leaves room for a sanitizer's shadow memory. */
        size_t need = 2 * peer_memory_total(&mem);
        if (need > peer_memory_available()) {
            g_test_skip("not enough free memory for the N = 1024² table");
            return;
        }
    }

    test_layer layer;
    test_layer_init(&layer, &cfg, rc->tokens, TEST_SEED + (uint64_t)rc->n_experts);
    if (rc->tied_keys) {
        int n = peer_layer_side(&cfg), half = rc->d_key / 2;
        for (int g = 0; g < peer_layer_key_groups(&cfg); g++)
            for (int side = 0; side < 2; side++)
                for (int a = 3; a < n; a++)
                    memcpy((float *)test_subkey(&layer.params, &cfg, g, side, a),
                           test_subkey(&layer.params, &cfg, g, side, a % 3),
                           half * sizeof(float));
    }
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED ^ (uint64_t)rc->d_key);
    float *inp = test_random_floats(&rng, (size_t)rc->tokens * D, 1.0f);
    float *out = g_new(float, (size_t)rc->tokens * D);

    peer_layer_forward(out, &layer.acts, inp, &layer.params, &cfg, rc->tokens, PEER_MODE_TRAIN,
                       PEER_SELECT_RETRIEVE, NULL);

    int HK = rc->heads * rc->d_key;
    if (rc->norm == PEER_NORM_NONE) {
        /* Without a norm retrieval sees exactly x·Wqᵀ + b. */
        double *query = g_new(double, (size_t)rc->tokens * HK);
        test_reference_query(query, inp, &layer.params, &cfg, rc->tokens);
        for (size_t i = 0; i < (size_t)rc->tokens * HK; i++) {
            test_assert_close(layer.acts.query_normed[i], query[i], 1e-5, 1e-5,
                              "query element %zu", i);
            g_assert_cmpfloat(layer.acts.query_normed[i], ==, layer.acts.query[i]);
        }
        g_free(query);
    }

    for (int t = 0; t < rc->tokens; t++)
        for (int j = 0; j < rc->heads; j++)
            check_token_head(&layer, t, j, rc->tied_keys);

    g_free(out);
    g_free(inp);
    test_layer_free(&layer);
}

static const retrieval_case cases[] = {
    { 16, 1, 1, 2, 16, false, PEER_NORM_NONE, false },
    { 16, 2, 4, 2, 16, true, PEER_NORM_NONE, false },     /* k = n */
    { 64, 2, 8, 4, 24, false, PEER_NORM_NONE, false },    /* k = n, every candidate */
    { 256, 3, 5, 8, 24, true, PEER_NORM_NONE, false },
    { 1024, 4, 3, 16, 32, false, PEER_NORM_NONE, false },
    { 4096, 4, 16, 32, 32, false, PEER_NORM_NONE, false },
    { 4096, 4, 16, 32, 32, true, PEER_NORM_NONE, false },
    { 4096, 2, 8, 32, 32, false, PEER_NORM_LAYER, false },
    { 4096, 2, 8, 32, 32, true, PEER_NORM_BATCH, false },
    { 16384, 8, 16, 64, 8, false, PEER_NORM_NONE, false },
    { 65536, 2, 32, 128, 4, true, PEER_NORM_NONE, false },
    { 65536, 2, 32, 128, 4, false, PEER_NORM_NONE, false },
    { 16384, 2, 128, 16, 4, false, PEER_NORM_NONE, false }, /* k = n = 128 */
    { 1024, 2, 8, 8, 16, false, PEER_NORM_NONE, false, true },
    { 4096, 3, 16, 16, 16, true, PEER_NORM_LAYER, false, true },
    { 1024 * 1024, 4, 16, 64, 4, false, PEER_NORM_NONE, true },
    { 1024 * 1024, 3, 32, 32, 3, true, PEER_NORM_NONE, true },
};

/* topk_select against sorting: best first, ties to the lower index, over lengths around its
 * 16-value blocks, with distinct values and with only a few distinct values (many ties). */
static int compare_desc_then_index(const void *a, const void *b, void *data)
{
    const float *values = data;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (values[i] != values[j])
        return values[i] > values[j] ? -1 : 1;
    return (i > j) - (i < j);
}

static void test_topk_select(void)
{
    static const int lengths[] = { 1, 5, 15, 16, 17, 31, 33, 100, 1024, 1031 };
    static const int ks[] = { 1, 2, 5, 16, 40 };
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED + 17u);
    for (size_t a = 0; a < G_N_ELEMENTS(lengths); a++) {
        int n = lengths[a];
        float *values = g_new(float, n);
        int32_t *order = g_new(int32_t, n);
        for (int tied = 0; tied < 2; tied++) {
            for (int i = 0; i < n; i++) {
                values[i] = peer_rng_normal(&rng);
                if (tied)
                    values[i] = floorf(values[i] * 1.5f);
                order[i] = i;
            }
            g_qsort_with_data(order, n, sizeof(int32_t), compare_desc_then_index, values);
            for (size_t b = 0; b <= G_N_ELEMENTS(ks); b++) {
                int k = b < G_N_ELEMENTS(ks) ? MIN(ks[b], n) : n;
                int32_t idx[1031];
                float val[1031];
                topk_select(values, n, k, idx, val);
                for (int s = 0; s < k; s++) {
                    if (idx[s] != order[s] || val[s] != values[order[s]])
                        g_error("topk_select n = %d, k = %d%s: place %d holds index %d (%g), "
                                "expected %d (%g)",
                                n, k, tied ? ", tied values" : "", s, idx[s], val[s], order[s],
                                values[order[s]]);
                }
            }
        }
        g_free(order);
        g_free(values);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/retrieval/topk-select", test_topk_select);
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        const retrieval_case *rc = &cases[i];
        char *path = g_strdup_printf("/retrieval/N=%d/h=%d/k=%d/dk=%d/%s/%s%s", rc->n_experts,
                                     rc->heads, rc->topk, rc->d_key,
                                     rc->shared_keys ? "shared" : "per-head",
                                     peer_query_norm_name(rc->norm),
                                     rc->tied_keys ? "/tied-keys" : "");
        g_test_add_data_func(path, rc, test_retrieval_case);
        g_free(path);
    }
    return g_test_run();
}
