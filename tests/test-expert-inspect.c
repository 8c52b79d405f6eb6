/* The expert inspector's numbers against a direct recount from the model's own forwards: counts
 * and gate mass against expert_stats, histograms and top contexts against every selection
 * listed and sorted, the logit effect against its matrix-vector product, the ablation's losses
 * against trainer_evaluate; and the model left bit for bit as it was. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "expert-inspect.h"
#include "expert-kernel.h"
#include "test-util.h"
#include "trainer.h"

#define PEER_BLOCK 1
#define PKM_BLOCK 2
#define WINDOWS 10
#define ACTIVATION_TOLERANCE 1e-6 /* with batches of 4: two full forwards and a partial one */

static const char *model_json =
    "{\"vocab_size\": 256, \"context\": 16, \"d_model\": 16, \"n_layers\": 3, \"n_heads\": 2, "
    "\"layers\": [{\"ffn\": \"dense\", \"d_ff\": 32}, "
    "{\"ffn\": \"peer\", \"n_experts\": 64, \"heads\": 2, \"topk\": 4, \"d_key\": 8, "
    "\"shared_keys\": false, \"query_norm\": \"batch\", \"activation\": \"gelu\"}, "
    "{\"ffn\": \"pkm\", \"n_memories\": 36, \"heads\": 2, \"topk\": 3, \"d_key\": 8, "
    "\"shared_keys\": true, \"query_norm\": \"layer\"}]}";

typedef struct {
    corpus data;
    trainer tr;
} fixture;

static const char *const corpus_words[] = { "the ", "of ", "and ", "to ", "a ", "in ", "was ",
                                            "her ", "she ", "not ", "be ", "that ", "Anne ",
                                            "Wentworth ", "said, ", "Lady Russell. ", "had ",
                                            "would " };

static void word_corpus(corpus *c, int seq_len)
{
    test_word_corpus(c, corpus_words, G_N_ELEMENTS(corpus_words), 20000, seq_len);
}

static void settings_for(train_settings *s, const model_config *cfg)
{
    train_settings_default(s, cfg);
    s->batch_size = 4;
    s->seq_len = 16;
    s->steps = 100;
    s->warmup = 2;
    s->seed = 7;
}

/* A model trained a few steps, so that the running statistics and the weights have moved. */
static void fixture_init(fixture *f, int steps)
{
    model_config cfg;
    train_settings s;
    peer_error err = { { 0 } };
    if (!model_config_from_json(&cfg, model_json, &err))
        g_error("config: %s", err.message);
    settings_for(&s, &cfg);
    word_corpus(&f->data, s.seq_len);
    if (!trainer_init(&f->tr, &cfg, &s, &f->data, &err))
        g_error("trainer_init: %s", err.message);
    for (int i = 0; i < steps; i++)
        if (!trainer_step(&f->tr, NULL, &err))
            g_error("trainer_step: %s", err.message);
}

static void fixture_free(fixture *f)
{
    trainer_free(&f->tr);
    corpus_free(&f->data);
}

/* ---- the recount ------------------------------------------------------------------------------ */

typedef struct {
    size_t offset, window_start;
    float preact, activation, gate;
    int head, heads;
} token_hit;

typedef struct {
    expert_stats stats;      /* every expert, from peer_model_accumulate_stats */
    GArray *activations;     /* float, per selection under the filter */
    GArray *preacts;         /* float */
    GArray *gates;           /* float */
    GArray *all_preacts;     /* float, per token */
    GArray *hits;            /* token_hit, per token chosen under the filter */
    double rstd_sum;
    long tokens;
} recount;

/* Runs the forwards the inspector runs (the same windows in batches of the model's size) and
 * lists everything about expert e straight from the activations. */
static void recount_expert(recount *r, peer_model *model, const corpus *data, int layer, int e,
                           int head, int windows)
{
    const ffn_config *ffn = &model->cfg.layers[layer];
    const peer_layer_config *peer = &ffn->peer;
    const float *u = model->params.blocks[layer].peer.down;
    int D = model->cfg.d_model, B = model->batch, T = model->seq, h = peer->heads;
    int k = peer->topk;
    peer_error err = { { 0 } };
    g_assert_true(expert_stats_init(&r->stats, peer->n_experts, h, &err));
    r->activations = g_array_new(FALSE, FALSE, sizeof(float));
    r->preacts = g_array_new(FALSE, FALSE, sizeof(float));
    r->gates = g_array_new(FALSE, FALSE, sizeof(float));
    r->all_preacts = g_array_new(FALSE, FALSE, sizeof(float));
    r->hits = g_array_new(FALSE, FALSE, sizeof(token_hit));
    r->rstd_sum = 0.0;
    r->tokens = 0;
    expert_stats *stats_of[MODEL_MAX_LAYERS] = { 0 };
    stats_of[layer] = &r->stats;
    uint8_t *tokens = g_malloc((size_t)B * T), *targets = g_malloc((size_t)B * T);
    for (int w = 0; w < windows; w += B) {
        int count = MIN(B, windows - w), BT = count * T;
        for (int b = 0; b < count; b++)
            corpus_validation_window(data, (size_t)(w + b), T, tokens + b * T, targets + b * T);
        peer_model_forward(model, tokens, targets, count, T, PEER_MODE_EVAL, NULL);
        peer_model_accumulate_stats(model, stats_of);
        const peer_layer_acts *acts = &model->acts.peer[layer];
        const float *x = model->acts.ln2 + (size_t)layer * BT * D;
        for (int t = 0; t < BT; t++) {
            r->rstd_sum += model->acts.lnf_rstd[t];
            r->tokens++;
            float z = 0.0f;
            if (u) {
                const float *ue = u + (size_t)e * D, *xt = x + (size_t)t * D;
                z = expert_dot(ue, xt, D);
                double exact = 0.0, scale = 0.0;
                for (int d = 0; d < D; d++) {
                    exact += (double)ue[d] * xt[d];
                    scale += fabs((double)ue[d] * xt[d]);
                }
                test_assert_close(z, exact, 1e-6 * scale, 0.0, "u·x of token %d", t);
                g_array_append_val(r->all_preacts, z);
            }
            token_hit hit = { .head = -1 };
            float best_gate = -1.0f;
            for (int j = 0; j < h; j++) {
                if (head >= 0 && j != head)
                    continue;
                for (int s = 0; s < k; s++) {
                    size_t slot = ((size_t)t * h + j) * k + s;
                    if (acts->expert[slot] != e)
                        continue;
                    float gate = acts->gate[slot];
                    float activation = u ? expert_activation(acts->preact[slot], peer->activation)
                                         : 1.0f;
                    /* The forward's pre-activation is the same dot product, bit for bit. */
                    if (u)
                        g_assert_true(memcmp(&acts->preact[slot], &z, sizeof z) == 0);
                    g_array_append_val(r->gates, gate);
                    if (u) {
                        g_array_append_val(r->activations, activation);
                        g_array_append_val(r->preacts, z);
                    }
                    if (gate > best_gate) {
                        best_gate = gate;
                        hit.head = j;
                    }
                    hit.preact = z;
                    hit.activation = activation;
                    hit.heads++;
                    hit.gate += gate;
                }
            }
            if (hit.heads > 0) {
                size_t start = data->train_size + (size_t)(w + t / T) * (T + 1);
                hit.window_start = start;
                hit.offset = start + (size_t)(t % T);
                g_assert_cmpint(data->bytes[hit.offset], ==, tokens[t]);
                g_array_append_val(r->hits, hit);
            }
        }
    }
    g_free(tokens);
    g_free(targets);
}

static void recount_free(recount *r)
{
    expert_stats_free(&r->stats);
    g_array_unref(r->activations);
    g_array_unref(r->preacts);
    g_array_unref(r->gates);
    g_array_unref(r->all_preacts);
    g_array_unref(r->hits);
}

/* The histogram's definition (expert-inspect.h), from the listed values. tol is how far a listed
 * value may be from the inspector's (0 when they are the same floats): a value that close to a
 * bin edge may fall on either side of it. */
static void check_histogram(const expert_histogram *histogram, GArray *values, int bins,
                            const double *range, double tol, const char *what)
{
    double lo = 0.0, hi = 1.0;
    if (range) {
        lo = range[0];
        hi = range[1];
    } else if (values->len > 0) {
        lo = hi = g_array_index(values, float, 0);
        for (guint i = 1; i < values->len; i++) {
            lo = MIN(lo, g_array_index(values, float, i));
            hi = MAX(hi, g_array_index(values, float, i));
        }
        if (lo == hi) {
            lo -= 0.5;
            hi += 0.5;
        }
    }
    g_assert_cmpint(histogram->bins, ==, bins);
    test_assert_close(histogram->lo, lo, tol, 0.0, "%s: lowest value", what);
    test_assert_close(histogram->hi, hi, tol, 0.0, "%s: highest value", what);
    g_assert_cmpuint(histogram->total, ==, values->len);
    uint64_t *sure = g_new0(uint64_t, bins), *maybe = g_new0(uint64_t, bins);
    for (guint i = 0; i < values->len; i++) {
        double x = g_array_index(values, float, i);
        int first = CLAMP((int)floor((x - tol - lo) / (hi - lo) * bins), 0, bins - 1);
        int last = CLAMP((int)floor((x + tol - lo) / (hi - lo) * bins), 0, bins - 1);
        if (first == last)
            sure[first]++;
        for (int b = first; first != last && b <= last; b++)
            maybe[b]++;
    }
    for (int b = 0; b < bins; b++)
        if (histogram->counts[b] < sure[b] || histogram->counts[b] > sure[b] + maybe[b])
            test_fail("%s: bin %d holds %" G_GUINT64_FORMAT ", the recount %" G_GUINT64_FORMAT
                      " (and up to %" G_GUINT64_FORMAT " on its edges)",
                      what, b, histogram->counts[b], sure[b], maybe[b]);
    g_free(sure);
    g_free(maybe);
}

static gboolean hit_before(const token_hit *a, const token_hit *b, gboolean by_gate)
{
    float ka = by_gate ? a->gate : a->activation, kb = by_gate ? b->gate : b->activation;
    return ka > kb || (ka == kb && a->offset < b->offset);
}

static int compare_by_activation(gconstpointer a, gconstpointer b)
{
    return hit_before(a, b, FALSE) ? -1 : (hit_before(b, a, FALSE) ? 1 : 0);
}

static int compare_by_gate(gconstpointer a, gconstpointer b)
{
    return hit_before(a, b, TRUE) ? -1 : (hit_before(b, a, TRUE) ? 1 : 0);
}

/* The expert of the layer chosen most often over the windows, so that every check has data. */
static int busiest_expert(peer_model *model, const corpus *data, int layer, int windows)
{
    recount r;
    recount_expert(&r, model, data, layer, 0, -1, windows);
    int N = r.stats.n_experts, best = 0;
    uint64_t best_count = 0;
    for (int i = 0; i < N; i++) {
        uint64_t count = 0;
        for (int j = 0; j < r.stats.heads; j++)
            count += r.stats.count[(size_t)j * N + i];
        if (count > best_count) {
            best_count = count;
            best = i;
        }
    }
    recount_free(&r);
    g_assert_cmpuint(best_count, >, 0);
    return best;
}

/* A copy of everything an inspection must leave as it was. */
typedef struct {
    float *params;
    float *grads;
    int sparse_rows[MODEL_MAX_LAYERS];
} model_state;

static void model_state_save(model_state *state, const peer_model *model)
{
    state->params = test_copy_floats(model->params_memory, model->n_params);
    state->grads = test_copy_floats(model->grads_memory, model->n_grads);
    for (int l = 0; l < model->cfg.n_layers; l++)
        state->sparse_rows[l] = model->sparse[l].n_rows;
}

static void model_state_check(model_state *state, const peer_model *model, const char *what)
{
    for (size_t i = 0; i < model->n_params; i++)
        if (memcmp(&state->params[i], &model->params_memory[i], sizeof(float)) != 0)
            test_fail("%s changed parameter %zu from %.9g to %.9g", what, i,
                      (double)state->params[i], (double)model->params_memory[i]);
    g_assert_true(memcmp(state->grads, model->grads_memory, model->n_grads * sizeof(float)) == 0);
    for (int l = 0; l < model->cfg.n_layers; l++)
        g_assert_cmpint(state->sparse_rows[l], ==, model->sparse[l].n_rows);
    g_free(state->params);
    g_free(state->grads);
}

/* ---- tests ------------------------------------------------------------------------------------ */

static void check_against_recount(fixture *f, int layer, int head)
{
    peer_model *model = f->tr.model;
    int e = busiest_expert(model, &f->data, layer, WINDOWS);
    expert_inspect_settings s;
    expert_inspect_settings_default(&s, layer, e);
    s.head = head;
    s.windows = WINDOWS;
    s.top_contexts = 5;
    s.bins = 7;
    s.top_bytes = 6;

    model_state before;
    model_state_save(&before, model);
    expert_inspection in;
    peer_error err = { { 0 } };
    if (!expert_inspect(model, &f->data, &s, &in, NULL, &err))
        test_fail("expert_inspect: %s", err.message);
    model_state_check(&before, model, "expert_inspect");

    recount r;
    recount_expert(&r, model, &f->data, layer, e, head, WINDOWS);
    const peer_layer_config *peer = &model->cfg.layers[layer].peer;
    const peer_layer_params *params = &model->params.blocks[layer].peer;
    int D = model->cfg.d_model, V = model->cfg.vocab_size, N = peer->n_experts;
    int n = (int)lround(sqrt(N));
    gboolean pkm = params->down == NULL;

    g_assert_cmpint(in.settings.windows, ==, WINDOWS);
    g_assert_cmpint(in.tokens, ==, r.tokens);
    g_assert_cmpint(in.row, ==, e / n);
    g_assert_cmpint(in.col, ==, e % n);
    g_assert_true(in.has_u == !pkm);
    double u_sq = 0.0, v_sq = 0.0;
    for (int d = 0; d < D; d++) {
        if (!pkm)
            u_sq += (double)params->down[(size_t)e * D + d] * params->down[(size_t)e * D + d];
        v_sq += (double)params->up[(size_t)e * D + d] * params->up[(size_t)e * D + d];
    }
    test_assert_close(in.u_norm, sqrt(u_sq), 1e-12, 1e-12, "‖u‖");
    test_assert_close(in.v_norm, sqrt(v_sq), 1e-12, 1e-12, "‖v‖");

    /* Selections and gate mass: expert_stats's, head by head, exactly. */
    uint64_t count = 0;
    double gate_mass = 0.0, activation_sum = 0.0;
    for (int j = 0; j < peer->heads; j++) {
        size_t cell = (size_t)j * N + e;
        g_assert_cmpuint(in.head_count[j], ==, r.stats.count[cell]);
        test_assert_close(in.head_gate_mass[j], r.stats.gate_mass[cell], 0.0, 0.0,
                          "gate mass of head %d", j);
        if (head >= 0 && j != head)
            continue;
        count += r.stats.count[cell];
        gate_mass += r.stats.gate_mass[cell];
        activation_sum += r.stats.activation[cell];
    }
    g_assert_cmpuint(in.count, >, 0);
    g_assert_cmpuint(in.count, ==, count);
    g_assert_cmpuint(in.count, ==, r.gates->len);
    test_assert_close(in.gate_mass, gate_mass, 1e-12, 1e-12, "gate mass");
    test_assert_close(in.activation_sum, activation_sum, 1e-6, 1e-6, "activation sum");

    check_histogram(&in.gate, r.gates, s.bins, NULL, 0.0, "gate histogram");
    if (pkm) {
        g_assert_cmpuint(in.activation.total, ==, 0);
        g_assert_cmpuint(in.preact_all.total, ==, 0);
    } else {
        /* σ is inlined into the engine and into this test, which are compiled for different vector
         * units (fused multiply-adds or not): the same pre-activation may give activations an
         * ulp or two apart. */
        check_histogram(&in.activation, r.activations, s.bins, NULL, ACTIVATION_TOLERANCE,
                        "activation histogram");
        check_histogram(&in.preact_all, r.all_preacts, s.bins, NULL, 0.0, "u·x over every token");
        g_assert_cmpuint(in.preact_all.total, ==, (uint64_t)r.tokens);
        double range[2] = { in.preact_all.lo, in.preact_all.hi };
        check_histogram(&in.preact_selected, r.preacts, s.bins, range, 0.0, "u·x when chosen");
    }

    /* The top contexts: every chosen position, sorted, cut to M. */
    g_array_sort(r.hits, pkm ? compare_by_gate : compare_by_activation);
    int expected_contexts = MIN((int)r.hits->len, s.top_contexts);
    g_assert_cmpint(in.n_contexts, ==, expected_contexts);
    for (int i = 0; i < in.n_contexts; i++) {
        const expert_context *c = &in.contexts[i];
        const token_hit *hit = &g_array_index(r.hits, token_hit, i);
        if (c->offset != hit->offset)
            test_fail("context %d is at %zu, the recount's at %zu", i, c->offset, hit->offset);
        g_assert_cmpuint(c->window_start, ==, hit->window_start);
        g_assert_true(c->preact == hit->preact);
        test_assert_close(c->activation, hit->activation, ACTIVATION_TOLERANCE, 0.0,
                          "activation of context %d", i);
        test_assert_close(c->gate, hit->gate, 0.0, 0.0, "gate of context %d", i);
        g_assert_cmpint(c->head, ==, hit->head);
        g_assert_cmpint(c->heads, ==, hit->heads);
        if (i > 0)
            g_assert_true(pkm ? in.contexts[i - 1].gate >= c->gate
                              : in.contexts[i - 1].activation >= c->activation);
    }

    /* The logit effect: W_E · (γ ⊙ (v − mean v)) · s, s the mean 1/σ of ln_f. */
    test_assert_close(in.norm_scale, r.rstd_sum / (double)r.tokens, 1e-12, 1e-12, "norm scale");
    const float *v = params->up + (size_t)e * D;
    double mean = 0.0;
    for (int d = 0; d < D; d++)
        mean += v[d];
    mean /= D;
    for (int b = 0; b < V; b++) {
        double sum = 0.0, scale = 0.0;
        for (int d = 0; d < D; d++) {
            double term = (double)model->params.tok_emb[(size_t)b * D + d] *
                          model->params.lnf_weight[d] * (v[d] - mean) * in.norm_scale;
            sum += term;
            scale += fabs(term);
        }
        test_assert_close(in.logit_effect[b], sum, 1e-6 * scale, 0.0, "logit effect on %d", b);
    }
    for (int i = 0; i < s.top_bytes; i++) {
        int up = in.pushed_up[i], down = in.pushed_down[i];
        int above = 0, below = 0;
        for (int b = 0; b < V; b++) {
            above += in.logit_effect[b] > in.logit_effect[up];
            below += in.logit_effect[b] < in.logit_effect[down];
        }
        g_assert_cmpint(above, <=, i);
        g_assert_cmpint(below, <=, i);
        if (i > 0) {
            g_assert_true(in.logit_effect[in.pushed_up[i - 1]] >= in.logit_effect[up]);
            g_assert_true(in.logit_effect[in.pushed_down[i - 1]] <= in.logit_effect[down]);
        }
    }
    recount_free(&r);
    expert_inspection_free(&in);
}

static void test_peer_every_head(void)
{
    fixture f;
    fixture_init(&f, 6);
    check_against_recount(&f, PEER_BLOCK, -1);
    fixture_free(&f);
}

static void test_peer_one_head(void)
{
    fixture f;
    fixture_init(&f, 6);
    check_against_recount(&f, PEER_BLOCK, 1);
    fixture_free(&f);
}

static void test_pkm(void)
{
    fixture f;
    fixture_init(&f, 6);
    check_against_recount(&f, PKM_BLOCK, -1);
    fixture_free(&f);
}

/* The loss with the expert on is trainer_evaluate's, bit for bit; with it off, trainer_evaluate's
 * on the model with the row zeroed by hand; and the row comes back exactly. */
static void test_ablation(void)
{
    fixture f;
    fixture_init(&f, 6);
    peer_model *model = f.tr.model;
    int e = busiest_expert(model, &f.data, PEER_BLOCK, WINDOWS);
    model_state before;
    model_state_save(&before, model);
    expert_ablation ablation;
    peer_error err = { { 0 } };
    if (!expert_ablate(model, &f.data, PEER_BLOCK, e, WINDOWS, &ablation, NULL, &err))
        test_fail("expert_ablate: %s", err.message);
    model_state_check(&before, model, "expert_ablate");
    g_assert_cmpint(ablation.windows, ==, WINDOWS);
    g_assert_cmpint(ablation.tokens, ==, WINDOWS * model->seq);

    eval_result on, off;
    g_assert_true(trainer_evaluate(&f.tr, WINDOWS, &on, NULL, &err));
    test_assert_close(ablation.loss, on.loss, 0.0, 0.0, "loss with the expert on");
    int D = model->cfg.d_model;
    float *row = model->params.blocks[PEER_BLOCK].peer.up + (size_t)e * D;
    float *saved = test_copy_floats(row, D);
    memset(row, 0, D * sizeof *row);
    g_assert_true(trainer_evaluate(&f.tr, WINDOWS, &off, NULL, &err));
    memcpy(row, saved, D * sizeof *row);
    g_free(saved);
    test_assert_close(ablation.ablated_loss, off.loss, 0.0, 0.0, "loss with the expert off");
    /* The busiest expert matters to the loss one way or the other. */
    g_assert_true(ablation.ablated_loss != ablation.loss);
    fixture_free(&f);
}

/* Training after an inspection and an ablation goes exactly as training without them. */
static void test_training_unchanged(void)
{
    fixture inspected, plain;
    fixture_init(&inspected, 4);
    fixture_init(&plain, 4);
    peer_error err = { { 0 } };
    expert_inspect_settings s;
    expert_inspect_settings_default(&s, PEER_BLOCK, 5);
    s.windows = WINDOWS;
    expert_inspection in;
    g_assert_true(expert_inspect(inspected.tr.model, &inspected.data, &s, &in, NULL, &err));
    expert_inspection_free(&in);
    expert_ablation ablation;
    g_assert_true(expert_ablate(inspected.tr.model, &inspected.data, PKM_BLOCK, 3, WINDOWS,
                                &ablation, NULL, &err));
    for (int i = 0; i < 3; i++) {
        g_assert_true(trainer_step(&inspected.tr, NULL, &err));
        g_assert_true(trainer_step(&plain.tr, NULL, &err));
    }
    peer_model *a = inspected.tr.model, *b = plain.tr.model;
    g_assert_true(memcmp(a->params_memory, b->params_memory, a->n_params * sizeof(float)) == 0);
    test_assert_close(inspected.tr.last_loss, plain.tr.last_loss, 0.0, 0.0, "loss after");
    fixture_free(&inspected);
    fixture_free(&plain);
}

/* Asking for more windows than the text holds reads them all. */
static void test_windows_clamped(void)
{
    fixture f;
    fixture_init(&f, 1);
    expert_inspect_settings s;
    expert_inspect_settings_default(&s, PEER_BLOCK, 0);
    s.windows = 1000000;
    expert_inspection in;
    peer_error err = { { 0 } };
    g_assert_true(expert_inspect(f.tr.model, &f.data, &s, &in, NULL, &err));
    size_t available = corpus_validation_windows(&f.data, f.tr.model->seq);
    g_assert_cmpint(in.settings.windows, ==, (int)available);
    g_assert_cmpint(in.tokens, ==, (long)available * f.tr.model->seq);
    expert_inspection_free(&in);
    fixture_free(&f);
}

static void expect_refused(peer_model *model, const corpus *data, expert_inspect_settings s,
                           const char *words)
{
    expert_inspection in;
    peer_error err = { { 0 } };
    g_assert_false(expert_inspect(model, data, &s, &in, NULL, &err));
    if (!strstr(err.message, words))
        test_fail("the message \"%s\" does not say \"%s\"", err.message, words);
    expert_inspection_free(&in);
}

static void test_bad_requests(void)
{
    fixture f;
    fixture_init(&f, 0);
    peer_model *model = f.tr.model;
    expert_inspect_settings good;
    expert_inspect_settings_default(&good, PEER_BLOCK, 0);
    expert_inspect_settings s = good;
    s.layer = 0;
    expect_refused(model, &f.data, s, "not a PEER or PKM layer");
    s = good;
    s.layer = 3;
    expect_refused(model, &f.data, s, "layers 0 to 2");
    s = good;
    s.expert = 64;
    expect_refused(model, &f.data, s, "experts 0 to 63");
    s = good;
    s.head = 2;
    expect_refused(model, &f.data, s, "0 to 1");
    s = good;
    s.windows = 0;
    expect_refused(model, &f.data, s, "1 or more");
    s = good;
    s.bins = 0;
    expect_refused(model, &f.data, s, "histogram bins");
    s = good;
    s.top_bytes = 257;
    expect_refused(model, &f.data, s, "0 to 256");
    expert_ablation ablation;
    peer_error err = { { 0 } };
    g_assert_false(expert_ablate(model, &f.data, 0, 0, 4, &ablation, NULL, &err));
    g_assert_nonnull(strstr(err.message, "not a PEER or PKM layer"));
    fixture_free(&f);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/expert-inspect/peer-every-head", test_peer_every_head);
    g_test_add_func("/expert-inspect/peer-one-head", test_peer_one_head);
    g_test_add_func("/expert-inspect/pkm", test_pkm);
    g_test_add_func("/expert-inspect/ablation", test_ablation);
    g_test_add_func("/expert-inspect/training-unchanged", test_training_unchanged);
    g_test_add_func("/expert-inspect/windows-clamped", test_windows_clamped);
    g_test_add_func("/expert-inspect/bad-requests", test_bad_requests);
    return g_test_run();
}
