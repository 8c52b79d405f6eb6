/* A text read for the Tokens page (app/token-analysis.h): every token's retrieval path, in every
 * PEER and PKM layer and head, is the engine's trace of that token computed directly from a
 * forward of the same window, bit for bit, and its experts are the brute-force top k over all N
 * full keys; the losses are the model's cross-entropy and the guesses its softmax; long texts
 * are read in windows and cut where their paths would pass the memory budget; passages come
 * from the validation text and samples continue their prompt; and the reading runs as an
 * inspection on a session's worker, giving what a direct trace gives at the same step. */
#define _GNU_SOURCE /* memmem */
#include <math.h>
#include <string.h>

#include "retrieval-trace.h"
#include "session.h"
#include "test-util.h"
#include "token-analysis.h"

#define WINDOW 16

/* A PEER layer with per-head keys and batch-norm, a dense block, and a PKM layer with shared
 * keys and layer-norm: both kinds of retrieval, both key arrangements. */
static const char *model_json =
    "{\"vocab_size\": 256, \"context\": 32, \"d_model\": 16, \"n_layers\": 3, \"n_heads\": 2, "
    "\"layers\": [{\"ffn\": \"peer\", \"n_experts\": 64, \"heads\": 3, \"topk\": 4, "
    "\"d_key\": 8, \"shared_keys\": false, \"query_norm\": \"batch\", \"activation\": \"gelu\"}, "
    "{\"ffn\": \"dense\", \"d_ff\": 32}, "
    "{\"ffn\": \"pkm\", \"n_memories\": 100, \"heads\": 2, \"topk\": 5, \"d_key\": 6, "
    "\"shared_keys\": true, \"query_norm\": \"layer\"}]}";

static const char *text =
    "It is a truth universally acknowledged, that a single man — é!\n";

static peer_model *make_model(void)
{
    model_config cfg;
    peer_error err;
    if (!model_config_from_json(&cfg, model_json, &err))
        g_error("%s", err.message);
    peer_model *model = peer_model_new(&cfg, 1, WINDOW, TEST_SEED, &err);
    if (!model)
        g_error("%s", err.message);
    /* Running statistics away from their initial 0 and 1, so batch-norm does something. */
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED + 1);
    peer_layer_params *p = &model->params.blocks[0].peer;
    int HK = cfg.layers[0].peer.heads * cfg.layers[0].peer.d_key;
    for (int i = 0; i < HK; i++) {
        p->running_mean[i] = 0.3f * peer_rng_normal(&rng);
        p->running_var[i] = 0.5f + peer_rng_uniform(&rng);
    }
    return model;
}

static PeerTokenAnalysis *read_text(peer_model *model, const char *bytes, size_t budget,
                                    thread_pool *pool)
{
    PeerTokenRequest *request = peer_token_request_new_text(bytes, -1);
    request->memory_budget = budget;
    GError *error = NULL;
    PeerTokenAnalysis *analysis = peer_token_analysis_compute(model, NULL, request, 7, pool,
                                                              &error);
    g_assert_no_error(error);
    peer_token_request_free(request);
    return analysis;
}

static void assert_same_head(const peer_head_trace *shown, const peer_head_trace *engine, int n,
                             int k, int d_key, int t, int j)
{
    g_assert_cmpint(shown->key_group, ==, engine->key_group);
#define SAME(field, count)                                                                      \
    if (memcmp(shown->field, engine->field, (size_t)(count) * sizeof *engine->field) != 0)      \
    test_fail("token %d head %d: %s differs from the engine's trace", t, j, #field)
    SAME(query, d_key);
    SAME(sub_score[0], n);
    SAME(sub_score[1], n);
    SAME(sub_top[0], k);
    SAME(sub_top[1], k);
    SAME(candidate, k * k);
    SAME(pick_i, k);
    SAME(pick_j, k);
    SAME(expert, k);
    SAME(row, k);
    SAME(col, k);
    SAME(score, k);
    SAME(gate, k);
    SAME(activation, k);
    SAME(contribution, k);
#undef SAME
}

/* The k best experts over all N full keys [c_a; c'_b] of the head's group, scored in double;
 * checked against the path's experts when the k-th and the next are told apart. Returns whether
 * it could tell. */
static gboolean check_brute_force(const peer_head_trace *shown, const peer_layer_config *cfg,
                                  const peer_layer_params *params, int t, int j)
{
    int n = peer_layer_side(cfg), k = cfg->topk, half = cfg->d_key / 2, N = n * n;
    const float *group = params->keys + (size_t)shown->key_group * 2 * n * half;
    double *score = g_new(double, N);
    int *order = g_new(int, N);
    for (int e = 0; e < N; e++) {
        int a = e / n, b = e % n;
        double sum = 0.0;
        for (int i = 0; i < half; i++)
            sum += (double)shown->query[i] * group[(size_t)a * half + i] +
                   (double)shown->query[half + i] * group[(size_t)(n + b) * half + i];
        score[e] = sum;
        order[e] = e;
    }
    /* Selection sort of the first k + 1: N is small. */
    for (int r = 0; r <= k && r < N; r++)
        for (int s = r + 1; s < N; s++)
            if (score[order[s]] > score[order[r]]) {
                int swap = order[r];
                order[r] = order[s];
                order[s] = swap;
            }
    gboolean distinct = k >= N || score[order[k - 1]] - score[order[k]] > 1e-4;
    if (distinct)
        for (int r = 0; r < k; r++) {
            gboolean found = FALSE;
            for (int s = 0; s < k; s++)
                found = found || shown->expert[s] == order[r];
            if (!found)
                test_fail("token %d head %d: the brute-force top %d holds expert %d, which the "
                          "path does not", t, j, k, order[r]);
        }
    g_free(score);
    g_free(order);
    return distinct;
}

/* Reads the text with a pool of two threads, then runs each window of it through the model
 * without a pool and traces every token directly. */
static void test_paths_equal_engine_trace(void)
{
    peer_model *model = make_model();
    peer_error err;
    thread_pool *pool = thread_pool_new(2, &err);
    g_assert_nonnull(pool);
    PeerTokenAnalysis *a = read_text(model, text, 0, pool);
    size_t length = strlen(text);
    g_assert_cmpint(a->n_tokens, ==, (int)length);
    g_assert_cmpint(a->window, ==, WINDOW);
    g_assert_cmpint(a->step, ==, 7);
    g_assert_cmpmem(a->bytes, length, text, length);
    g_assert_cmpint(a->final_next, ==, -1);
    g_assert_null(a->cut_reason);
    g_assert_cmpint(a->n_layers, ==, 2);
    g_assert_cmpint(a->layers[0].layer, ==, 0);
    g_assert_cmpint(a->layers[0].kind, ==, FFN_PEER);
    g_assert_cmpint(a->layers[1].layer, ==, 2);
    g_assert_cmpint(a->layers[1].kind, ==, FFN_PKM);
    g_assert_cmpint(peer_token_analysis_find_layer(a, 2), ==, 1);
    g_assert_cmpint(peer_token_analysis_find_layer(a, 1), ==, -1);

    int told = 0, compared = 0, D = model->cfg.d_model;
    for (int start = 0; start < a->n_tokens; start += WINDOW) {
        int T = MIN(WINDOW, a->n_tokens - start);
        peer_model_forward(model, (const uint8_t *)text + start, NULL, 1, T, PEER_MODE_EVAL,
                           NULL);
        for (int s = 0; s < a->n_layers; s++) {
            int l = a->layers[s].layer;
            const peer_layer_config *cfg = &a->layers[s].cfg;
            const peer_layer_params *params = &model->params.blocks[l].peer;
            int HK = cfg->heads * cfg->d_key, n = peer_layer_side(cfg);
            peer_head_trace *heads = g_new(peer_head_trace, cfg->heads);
            for (int t = 0; t < T; t++) {
                peer_token_trace engine, shown;
                const float *x = model->acts.ln2 + ((size_t)l * T + t) * D;
                const float *query = model->acts.peer[l].query_normed + (size_t)t * HK;
                g_assert_true(peer_token_trace_compute(&engine, cfg, params, x, query, &err));
                peer_token_analysis_get_path(a, s, start + t, &shown, heads);
                g_assert_cmpint(shown.heads, ==, engine.heads);
                g_assert_cmpint(shown.n, ==, n);
                g_assert_cmpint(shown.topk, ==, engine.topk);
                for (int j = 0; j < engine.heads; j++) {
                    assert_same_head(&shown.head[j], &engine.head[j], n, cfg->topk, cfg->d_key,
                                     start + t, j);
                    told += check_brute_force(&shown.head[j], cfg, params, start + t, j);
                    compared++;
                }
                peer_token_trace_free(&engine);
            }
            g_free(heads);
        }
    }
    /* Ties between the k-th and the next expert are rare with random weights. */
    g_assert_cmpint(told, >=, compared * 9 / 10);
    peer_token_analysis_free(a);
    thread_pool_free(pool);
    peer_model_free(model);
}

/* The losses are the model's own cross-entropy of each next byte; the guesses its softmax. */
static void test_losses_and_guesses(void)
{
    peer_model *model = make_model();
    PeerTokenAnalysis *a = read_text(model, text, 0, NULL);
    int V = model->cfg.vocab_size, n = a->n_tokens;
    for (int start = 0; start < n; start += WINDOW) {
        int T = MIN(WINDOW, n - start);
        /* Targets exist for all but the text's last byte: compare the window's positions that
         * have one through the forward's own cross-entropy. */
        int with_target = start + T < n ? T : T - 1;
        if (with_target == 0)
            continue;
        const uint8_t *tokens = (const uint8_t *)text + start;
        peer_model_forward(model, tokens, tokens + 1, 1, with_target, PEER_MODE_EVAL, NULL);
        for (int t = 0; t < with_target; t++) {
            test_assert_close(a->loss[start + t], model->acts.losses[t], 1e-5, 1e-5,
                              "loss of token %d", start + t);
            test_assert_close(a->next_prob[start + t], exp(-model->acts.losses[t]), 1e-6, 1e-5,
                              "probability of the byte after token %d", start + t);
            double best = 0.0;
            int argmax = 0;
            for (int v = 0; v < V; v++)
                if (model->acts.probs[(size_t)t * V + v] > best) {
                    best = model->acts.probs[(size_t)t * V + v];
                    argmax = v;
                }
            const uint8_t *top = a->top_byte + (size_t)(start + t) * TOKEN_ANALYSIS_TOP;
            const float *prob = a->top_prob + (size_t)(start + t) * TOKEN_ANALYSIS_TOP;
            g_assert_cmpint(top[0], ==, argmax);
            test_assert_close(prob[0], best, 1e-6, 1e-5, "best guess after token %d", start + t);
            double sum = 0.0;
            for (int r = 0; r < TOKEN_ANALYSIS_TOP; r++) {
                sum += prob[r];
                if (r > 0)
                    g_assert_cmpfloat(prob[r], <=, prob[r - 1]);
                test_assert_close(prob[r], model->acts.probs[(size_t)t * V + top[r]], 1e-6, 1e-5,
                                  "guess %d after token %d", r, start + t);
                for (int s = 0; s < r; s++)
                    g_assert_cmpint(top[s], !=, top[r]);
            }
            g_assert_cmpfloat(sum, <=, 1.0 + 1e-5);
        }
    }
    /* The text's last byte has nothing to predict. */
    g_assert_true(isnan(a->loss[n - 1]));
    g_assert_true(isnan(a->next_prob[n - 1]));
    g_assert_cmpint(peer_token_analysis_next_byte(a, n - 1), ==, -1);
    g_assert_cmpint(peer_token_analysis_next_byte(a, 0), ==, (uint8_t)text[1]);
    double mean = 0.0;
    for (int t = 0; t < n - 1; t++)
        mean += a->loss[t];
    test_assert_close(peer_token_analysis_mean_loss(a), mean / (n - 1), 1e-6, 1e-6, "mean loss");
    peer_token_analysis_free(a);
    peer_model_free(model);
}

/* A budget that holds the paths of 10 tokens cuts the text there, keeping the byte after. */
static void test_cut(void)
{
    peer_model *model = make_model();
    PeerTokenAnalysis *whole = read_text(model, text, 0, NULL);
    size_t per_token = 0;
    for (int s = 0; s < whole->n_layers; s++) {
        const PeerTokenLayerPaths *p = &whole->layers[s];
        per_token += (size_t)p->cfg.heads * (p->float_stride + p->int_stride) * 4;
    }
    PeerTokenAnalysis *cut = read_text(model, text, 10 * per_token + per_token / 2, NULL);
    g_assert_cmpint(cut->n_tokens, ==, 10);
    g_assert_cmpuint(cut->source_length, ==, strlen(text));
    g_assert_nonnull(cut->cut_reason);
    g_assert_cmpint(cut->final_next, ==, (uint8_t)text[10]);
    /* The last token kept predicts the byte after it: it has a loss. */
    test_assert_close(cut->loss[9], whole->loss[9], 1e-6, 1e-6, "loss at the cut");
    peer_token_analysis_free(cut);

    /* Less than one token's paths: refused, saying so. */
    PeerTokenRequest *request = peer_token_request_new_text(text, -1);
    request->memory_budget = per_token / 2;
    GError *error = NULL;
    g_assert_null(peer_token_analysis_compute(model, NULL, request, 0, NULL, &error));
    g_assert_nonnull(error);
    g_assert_nonnull(strstr(error->message, "single token"));
    g_clear_error(&error);
    peer_token_request_free(request);

    request = peer_token_request_new_text("", 0);
    g_assert_null(peer_token_analysis_compute(model, NULL, request, 0, NULL, &error));
    g_assert_nonnull(strstr(error->message, "empty"));
    g_clear_error(&error);
    peer_token_request_free(request);
    peer_token_analysis_free(whole);
    peer_model_free(model);
}

static void test_passage(void)
{
    peer_model *model = make_model();
    GString *book = g_string_new(NULL);
    for (int i = 0; g_utf8_strlen(book->str, -1) < 2000; i++)
        g_string_append_printf(book, "Sentence %d of the book. It goes on a while.\n", i);
    corpus data;
    peer_error err;
    g_assert_true(corpus_from_bytes(&data, (const uint8_t *)book->str, book->len, WINDOW,
                                    "the book", &err));
    GError *error = NULL;
    PeerTokenRequest *request = peer_token_request_new_passage(3);
    PeerTokenAnalysis *a = peer_token_analysis_compute(model, &data, request, 0, NULL, &error);
    g_assert_no_error(error);
    long count = a->n_passages;
    g_assert_cmpint(count, ==, (long)((data.size - data.train_size - 1) / WINDOW));
    g_assert_cmpint(a->passage, ==, 3);
    g_assert_cmpint(a->n_tokens, ==, WINDOW);
    /* The passage is the validation text's fourth window, starting early in it where a
     * sentence, a line or a word starts. */
    size_t window_start = data.train_size + 3 * WINDOW;
    const uint8_t *found = memmem(data.bytes + window_start, WINDOW / 2 + WINDOW, a->bytes,
                                  (size_t)a->n_tokens);
    g_assert_nonnull(found);
    size_t offset = (size_t)(found - data.bytes);
    g_assert_cmpuint(offset - window_start, <=, WINDOW / 2);
    g_assert_cmpint(a->final_next, ==, data.bytes[offset + (size_t)a->n_tokens]);
    g_assert_true(offset == window_start || data.bytes[offset - 1] == ' ' ||
                  data.bytes[offset - 1] == '\n');
    peer_token_analysis_free(a);
    peer_token_request_free(request);

    /* Passages wrap around: one past the last is the first. */
    PeerTokenRequest *first = peer_token_request_new_passage(0);
    PeerTokenRequest *wrapped = peer_token_request_new_passage(count);
    PeerTokenAnalysis *a0 = peer_token_analysis_compute(model, &data, first, 0, NULL, &error);
    PeerTokenAnalysis *a1 = peer_token_analysis_compute(model, &data, wrapped, 0, NULL, &error);
    g_assert_no_error(error);
    g_assert_cmpint(a1->passage, ==, 0);
    g_assert_cmpmem(a0->bytes, a0->n_tokens, a1->bytes, a1->n_tokens);
    peer_token_analysis_free(a0);
    peer_token_analysis_free(a1);
    peer_token_request_free(first);
    peer_token_request_free(wrapped);

    /* Without a corpus there is no passage. */
    request = peer_token_request_new_passage(0);
    g_assert_null(peer_token_analysis_compute(model, NULL, request, 0, NULL, &error));
    g_assert_nonnull(error);
    g_clear_error(&error);
    peer_token_request_free(request);
    corpus_free(&data);
    g_string_free(book, TRUE);
    peer_model_free(model);
}

static void test_sample(void)
{
    peer_model *model = make_model();
    GError *error = NULL;
    PeerTokenRequest *request = peer_token_request_new_sample("It is", 20, 0.8, 42);
    PeerTokenAnalysis *a = peer_token_analysis_compute(model, NULL, request, 0, NULL, &error);
    g_assert_no_error(error);
    g_assert_cmpint(a->n_tokens, ==, 25);
    g_assert_cmpmem(a->bytes, 5, "It is", 5);
    /* The same seed writes the same text. */
    PeerTokenAnalysis *again = peer_token_analysis_compute(model, NULL, request, 0, NULL, &error);
    g_assert_cmpmem(a->bytes, a->n_tokens, again->bytes, again->n_tokens);
    peer_token_analysis_free(again);
    peer_token_request_free(request);
    peer_token_analysis_free(a);

    /* An empty prompt starts from a new line. */
    request = peer_token_request_new_sample("", 5, 1.0, 1);
    a = peer_token_analysis_compute(model, NULL, request, 0, NULL, &error);
    g_assert_no_error(error);
    g_assert_cmpint(a->n_tokens, ==, 6);
    g_assert_cmpint(a->bytes[0], ==, '\n');
    peer_token_analysis_free(a);
    peer_token_request_free(request);
    peer_model_free(model);
}

/* ---- through a session ----------------------------------------------------------------------- */

static const char *tiny_run =
    "{\"model\": {\"vocab_size\": 256, \"context\": 16, \"d_model\": 16, \"n_layers\": 2, "
    "\"n_heads\": 2, \"layers\": [{\"ffn\": \"dense\", \"d_ff\": 32}, {\"ffn\": \"peer\", "
    "\"n_experts\": 64, \"heads\": 2, \"topk\": 3, \"d_key\": 8, \"shared_keys\": false, "
    "\"query_norm\": \"batch\", \"activation\": \"gelu\"}]}, "
    "\"training\": {\"batch_size\": 2, \"seq_len\": 16, \"steps\": 1000000, "
    "\"eval_interval\": 0, \"eval_windows\": 2}}";

#define SESSION_TOKEN 5

/* A direct trace of one token of the text's first window, on the worker. */
static gpointer trace_directly(const PeerInspectContext *context, gpointer data, GError **error)
{
    peer_model *model = context->model;
    const char *bytes = data;
    int T = MIN((int)strlen(bytes), model->seq), l = 1, D = model->cfg.d_model;
    peer_model_forward(model, (const uint8_t *)bytes, NULL, 1, T, PEER_MODE_EVAL, NULL);
    peer_layer_config cfg = model->cfg.layers[l].peer;
    cfg.d_model = D;
    int HK = cfg.heads * cfg.d_key;
    peer_token_trace *trace = g_new0(peer_token_trace, 1);
    peer_error err;
    g_assert_true(peer_token_trace_compute(trace, &cfg, &model->params.blocks[l].peer,
                                           model->acts.ln2 + ((size_t)l * T + SESSION_TOKEN) * D,
                                           model->acts.peer[l].query_normed +
                                               (size_t)SESSION_TOKEN * HK,
                                           &err));
    return trace;
}

static void free_trace(gpointer data)
{
    peer_token_trace_free(data);
    g_free(data);
}

typedef struct {
    gpointer analysis;
    gpointer trace;
    int answers;
} Answers;

static void on_analysis(PeerSession *session, gpointer result, const GError *error,
                        gpointer data)
{
    g_assert_no_error((GError *)error);
    ((Answers *)data)->analysis = result;
    ((Answers *)data)->answers++;
}

static void on_trace(PeerSession *session, gpointer result, const GError *error, gpointer data)
{
    g_assert_no_error((GError *)error);
    ((Answers *)data)->trace = result;
    ((Answers *)data)->answers++;
}

static void test_session(void)
{
    model_config cfg;
    train_settings settings;
    peer_error err;
    g_assert_true(run_config_from_json(&cfg, &settings, tiny_run, &err));
    GString *book = g_string_new(NULL);
    for (int i = 0; i < 200; i++)
        g_string_append(book, "It is a truth universally acknowledged. ");
    GBytes *bytes = g_string_free_to_bytes(book);
    GError *error = NULL;
    PeerSession *session = peer_session_new("tiny", &cfg, &settings, bytes, 2, &error);
    g_assert_no_error(error);

    /* Trained a few steps, then paused: both inspections see the same weights. */
    peer_session_start(session);
    gint64 deadline = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;
    while (peer_session_get_step(session) < 3 && g_get_monotonic_time() < deadline)
        g_main_context_iteration(NULL, TRUE);
    peer_session_pause(session);
    while (peer_session_get_state(session) != PEER_SESSION_PAUSED &&
           g_get_monotonic_time() < deadline)
        g_main_context_iteration(NULL, TRUE);
    g_assert_cmpint(peer_session_get_state(session), ==, PEER_SESSION_PAUSED);

    Answers answers = {0};
    peer_session_inspect(session, peer_token_analysis_inspect,
                         peer_token_request_new_text(text, -1),
                         (GDestroyNotify)peer_token_request_free,
                         (GDestroyNotify)peer_token_analysis_free, NULL, on_analysis, &answers);
    peer_session_inspect(session, trace_directly, g_strdup(text), g_free, free_trace, NULL,
                         on_trace, &answers);
    while (answers.answers < 2 && g_get_monotonic_time() < deadline)
        g_main_context_iteration(NULL, TRUE);
    g_assert_cmpint(answers.answers, ==, 2);

    PeerTokenAnalysis *a = answers.analysis;
    peer_token_trace *engine = answers.trace;
    g_assert_cmpint(a->step, ==, peer_session_get_step(session));
    g_assert_cmpint(a->window, ==, 16);
    g_assert_cmpint(a->n_layers, ==, 1);
    peer_head_trace heads[2];
    peer_token_trace shown;
    peer_token_analysis_get_path(a, 0, SESSION_TOKEN, &shown, heads);
    for (int j = 0; j < engine->heads; j++)
        assert_same_head(&shown.head[j], &engine->head[j], engine->n, engine->topk,
                         engine->d_key, SESSION_TOKEN, j);
    peer_token_analysis_free(a);
    free_trace(engine);
    peer_session_shutdown(session);
    g_object_unref(session);
    g_bytes_unref(bytes);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/token-analysis/paths-equal-engine-trace", test_paths_equal_engine_trace);
    g_test_add_func("/token-analysis/losses-and-guesses", test_losses_and_guesses);
    g_test_add_func("/token-analysis/cut", test_cut);
    g_test_add_func("/token-analysis/passage", test_passage);
    g_test_add_func("/token-analysis/sample", test_sample);
    g_test_add_func("/token-analysis/session", test_session);
    return g_test_run();
}
