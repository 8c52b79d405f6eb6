/* Growing the expert grid of PEER and PKM layers: every old parameter is kept bit for bit at its
 * mapped place (expert a·n + b at a·n' + b, sub-keys in place), the new ones are drawn as at
 * initialisation, the Adam moments move with their rows; a token whose retrieval picks only old
 * experts gets exactly the old output; a grown trainer saves, resumes and continues bit for bit;
 * training goes on and picks new experts; held old experts never change; bad growths are
 * refused with a message naming the value and the valid range. */
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#include "checkpoint.h"
#include "model-grow.h"
#include "test-util.h"

/* ---- helpers --------------------------------------------------------------------------------- */

static void assert_contains(const char *message, const char *word)
{
    if (!strstr(message, word))
        test_fail("the message lacks \"%s\": %s", word, message);
}

static void config_from_json(model_config *cfg, const char *json)
{
    peer_error err = { { 0 } };
    if (!model_config_from_json(cfg, json, &err))
        g_error("config rejected: %s\n%s", err.message, json);
}

#define PEER_LAYER(n_experts, norm, shared)                                                       \
    "{\"ffn\": \"peer\", \"n_experts\": " n_experts ", \"heads\": 2, \"topk\": 2, \"d_key\": 8, " \
    "\"shared_keys\": " shared ", \"query_norm\": \"" norm "\", \"activation\": \"gelu\"}"
#define PKM_LAYER(n_memories, norm)                                                               \
    "{\"ffn\": \"pkm\", \"n_memories\": " n_memories ", \"heads\": 2, \"topk\": 2, "             \
    "\"d_key\": 8, \"shared_keys\": true, \"query_norm\": \"" norm "\"}"
#define DENSE_LAYER "{\"ffn\": \"dense\", \"d_ff\": 32}"
#define MODEL_JSON(n_layers, layers)                                                              \
    "{\"vocab_size\": 256, \"context\": 16, \"d_model\": 16, \"n_layers\": " n_layers ", "       \
    "\"n_heads\": 2, \"layers\": [" layers "]}"

/* A PEER layer with per-head keys and batch-norm (4 × 4 grid, grows to 6 × 6), a PKM layer with
 * shared keys and layer-norm (3 × 3, grows to 5 × 5), and a dense block. */
static const char grow_model[] =
    MODEL_JSON("3", PEER_LAYER("16", "batch", "false") ", " PKM_LAYER("9", "layer") ", "
                    DENSE_LAYER);

static model_growth grow_model_growth(void)
{
    model_growth growth = { { 0 } };
    growth.side[0] = 6;
    growth.side[1] = 5;
    return growth;
}

static peer_model *model_new(const char *json, int B, int T, uint64_t seed)
{
    model_config cfg;
    config_from_json(&cfg, json);
    peer_error err = { { 0 } };
    peer_model *model = peer_model_new(&cfg, B, T, seed, &err);
    if (!model)
        g_error("peer_model_new: %s", err.message);
    return model;
}

/* Running statistics away from their initial 0 and 1, so that a buffer not copied is seen. */
static void randomise_buffers(peer_model *model, uint64_t seed)
{
    peer_rng rng;
    peer_rng_seed(&rng, seed);
    for (int i = 0; i < model->n_tensors; i++) {
        model_tensor *t = &model->tensors[i];
        if (strstr(t->name, "running_mean"))
            peer_rng_fill_normal(&rng, t->param, t->n_elements, 0.3f);
        else if (strstr(t->name, "running_var"))
            for (size_t k = 0; k < t->n_elements; k++)
                t->param[k] = 0.5f + peer_rng_uniform(&rng);
    }
}

static peer_model *grow(const peer_model *model, const model_growth *growth, uint64_t seed)
{
    peer_error err = { { 0 } };
    peer_model *grown = peer_model_grow(model, growth, seed, &err);
    if (!grown)
        g_error("peer_model_grow: %s", err.message);
    return grown;
}

static bool same_floats(const float *a, const float *b, size_t n)
{
    return memcmp(a, b, n * sizeof(float)) == 0;
}

static int side_of(const peer_model *model, int layer)
{
    return peer_layer_side(&model->cfg.layers[layer].peer);
}

static bool is_grid_tensor(const model_tensor *t)
{
    return t->expert_table || strstr(t->name, ".ffn.keys") != NULL;
}

/* Where `old` (a tensor of `model`, or a moment of it) went in `grown`: every old sub-key and
 * expert row bit for bit at its mapped place; every other tensor bit for bit. With new_zero the
 * new rows must be zero (moments); otherwise they must all be drawn (no zero row). */
static void assert_grown_tensor(const float *old, const float *grown_data, int index,
                                const peer_model *model, const peer_model *grown, bool new_zero,
                                const char *what)
{
    const model_tensor *t = &model->tensors[index], *gt = &grown->tensors[index];
    g_assert_cmpstr(t->name, ==, gt->name);
    if (t->n_elements == gt->n_elements) {
        if (!same_floats(old, grown_data, t->n_elements))
            test_fail("%s: %s changed though its layer did not grow", what, t->name);
        return;
    }
    g_assert_true(is_grid_tensor(t));
    int n = side_of(model, t->layer), grown_n = side_of(grown, t->layer);
    size_t width = t->expert_table ? (size_t)t->shape[1] : (size_t)t->shape[3];
    int blocks = t->expert_table ? 1 : (int)(t->shape[0] * t->shape[1]);
    int rows = t->expert_table ? n * n : n, grown_rows = t->expert_table ? grown_n * grown_n
                                                                         : grown_n;
    for (int block = 0; block < blocks; block++) {
        const float *src = old + (size_t)block * rows * width;
        const float *dst = grown_data + (size_t)block * grown_rows * width;
        bool *is_old = g_new0(bool, grown_rows);
        for (int r = 0; r < rows; r++) {
            int mapped = t->expert_table ? model_growth_expert_id(r, n, grown_n) : r;
            is_old[mapped] = true;
            if (!same_floats(src + (size_t)r * width, dst + (size_t)mapped * width, width))
                test_fail("%s: %s block %d row %d is not at row %d of the grown grid", what,
                          t->name, block, r, mapped);
        }
        for (int r = 0; r < grown_rows; r++) {
            if (is_old[r])
                continue;
            bool all_zero = true;
            for (size_t k = 0; k < width; k++)
                all_zero = all_zero && dst[(size_t)r * width + k] == 0.0f;
            if (all_zero != new_zero)
                test_fail("%s: %s block %d new row %d is %s", what, t->name, block, r,
                          new_zero ? "not zero" : "zero (never drawn)");
        }
        g_free(is_old);
    }
}

static const float *moment_of(const optimizer_state *opt, const peer_model *model, int index,
                              bool second)
{
    const model_tensor *t = &model->tensors[index];
    if (!t->expert_table)
        return (second ? opt->v : opt->m) + (t->grad - model->grads_memory);
    for (int k = 0; k < opt->n_tables; k++)
        if (opt->table_tensor[k] == index)
            return second ? opt->table_v[k] : opt->table_m[k];
    g_error("%s has no moments", t->name);
}

/* Copies of every parameter and moment of a trainer, by tensor index. */
typedef struct {
    int n_tensors;
    float **param;
    float **m, **v; /* NULL for buffers */
    long step, opt_step;
    model_config cfg;
} trainer_snapshot;

static void snapshot_take(trainer_snapshot *snap, const trainer *tr)
{
    const peer_model *model = tr->model;
    snap->n_tensors = model->n_tensors;
    snap->param = g_new0(float *, model->n_tensors);
    snap->m = g_new0(float *, model->n_tensors);
    snap->v = g_new0(float *, model->n_tensors);
    for (int i = 0; i < model->n_tensors; i++) {
        const model_tensor *t = &model->tensors[i];
        size_t bytes = t->n_elements * sizeof(float);
        snap->param[i] = g_memdup2(t->param, bytes);
        if (!t->buffer) {
            snap->m[i] = g_memdup2(moment_of(&tr->opt, model, i, false), bytes);
            snap->v[i] = g_memdup2(moment_of(&tr->opt, model, i, true), bytes);
        }
    }
    snap->step = tr->step;
    snap->opt_step = tr->opt.step;
    snap->cfg = model->cfg;
}

static void snapshot_free(trainer_snapshot *snap)
{
    for (int i = 0; i < snap->n_tensors; i++) {
        g_free(snap->param[i]);
        g_free(snap->m[i]);
        g_free(snap->v[i]);
    }
    g_free(snap->param);
    g_free(snap->m);
    g_free(snap->v);
}

/* Words from a small vocabulary, so that a model has something to learn. */
static const char *const corpus_words[] = { "the ", "of ", "and ", "to ", "a ", "in ", "was ",
                                            "her ", "she ", "not ", "be ", "that ", "Emma ",
                                            "Harriet ", "Mr. Knightley ", "Highbury. ", "said ",
                                            "had ", "would " };

static uint8_t *word_text(uint64_t seed, size_t n)
{
    return test_word_text(corpus_words, G_N_ELEMENTS(corpus_words), seed, n);
}

static void word_corpus(corpus *c, int seq_len)
{
    test_word_corpus(c, corpus_words, G_N_ELEMENTS(corpus_words), 50000, seq_len);
}

static void trainer_start(trainer *tr, const char *json, const corpus *data)
{
    model_config cfg;
    config_from_json(&cfg, json);
    train_settings s;
    train_settings_default(&s, &cfg);
    s.batch_size = 4;
    s.seq_len = 16;
    s.steps = 40;
    s.warmup = 2;
    s.expert_lr = 1e-2f;
    peer_error err = { { 0 } };
    if (!trainer_init(tr, &cfg, &s, data, &err))
        g_error("trainer_init: %s", err.message);
}

static void trainer_steps(trainer *tr, int steps)
{
    peer_error err = { { 0 } };
    for (int i = 0; i < steps; i++) {
        if (!trainer_step(tr, NULL, &err))
            test_fail("step %ld failed: %s", tr->step + 1, err.message);
        if (!isfinite(tr->last_loss))
            test_fail("step %ld: the loss is %g", tr->step, tr->last_loss);
    }
}

static void trainer_grow_or_fail(trainer *tr, const model_growth *growth, bool freeze_old)
{
    peer_error err = { { 0 } };
    if (!trainer_grow(tr, growth, freeze_old, &err))
        g_error("trainer_grow: %s", err.message);
}

/* Slots of the last forward of a layer that chose an expert outside the first side × side. */
static int count_new_choices(const peer_model *model, int layer, int side)
{
    const peer_layer_config *p = &model->cfg.layers[layer].peer;
    int n = peer_layer_side(p), count = 0;
    size_t slots = (size_t)model->last_B * model->last_T * p->heads * p->topk;
    for (size_t s = 0; s < slots; s++) {
        int e = model->acts.peer[layer].expert[s];
        count += e / n >= side || e % n >= side;
    }
    return count;
}

/* ---- parameters ------------------------------------------------------------------------------ */

static void test_keeps_parameters(void)
{
    peer_model *model = model_new(grow_model, 2, 16, TEST_SEED);
    randomise_buffers(model, TEST_SEED + 1);
    model_growth growth = grow_model_growth();
    peer_model *grown = grow(model, &growth, TEST_SEED + 2);

    g_assert_cmpint(grown->cfg.layers[0].peer.n_experts, ==, 36);
    g_assert_cmpint(grown->cfg.layers[1].peer.n_experts, ==, 25);
    g_assert_cmpint(grown->n_tensors, ==, model->n_tensors);
    /* Only n_experts changed in the config. */
    model_config expected = model->cfg;
    expected.layers[0].peer.n_experts = 36;
    expected.layers[1].peer.n_experts = 25;
    char *want = model_config_to_json(&expected), *got = model_config_to_json(&grown->cfg);
    g_assert_cmpstr(got, ==, want);
    free(want);
    free(got);
    for (int i = 0; i < model->n_tensors; i++)
        assert_grown_tensor(model->tensors[i].param, grown->tensors[i].param, i, model, grown,
                            false, "parameters");
    /* The model is left as it was, and the same seed draws the same new weights. */
    peer_model *again = grow(model, &growth, TEST_SEED + 2);
    peer_model *other = grow(model, &growth, TEST_SEED + 3);
    g_assert_true(same_floats(again->params_memory, grown->params_memory, grown->n_params));
    g_assert_false(same_floats(other->params_memory, grown->params_memory, grown->n_params));
    peer_model_free(again);
    peer_model_free(other);

    /* A growth that changes nothing (n' = n, or no layer named) copies the model exactly. */
    model_growth same = { { 0 } };
    same.side[0] = 4;
    peer_model *copy = grow(model, &same, TEST_SEED + 2);
    g_assert_cmpuint(copy->n_params, ==, model->n_params);
    g_assert_true(same_floats(copy->params_memory, model->params_memory, model->n_params));
    peer_model_free(copy);

    peer_model_free(grown);
    peer_model_free(model);
}

/* Mean and standard deviation of the new rows of a grown grid tensor. */
static void new_row_moments(const peer_model *model, const peer_model *grown, const char *name,
                            double *mean, double *std, size_t *count)
{
    const model_tensor *t = peer_model_find_tensor(model, name);
    const model_tensor *gt = peer_model_find_tensor(grown, name);
    g_assert_nonnull(t);
    int n = side_of(model, t->layer), grown_n = side_of(grown, t->layer);
    size_t width = t->expert_table ? (size_t)t->shape[1] : (size_t)t->shape[3];
    int blocks = t->expert_table ? 1 : (int)(t->shape[0] * t->shape[1]);
    int grown_rows = t->expert_table ? grown_n * grown_n : grown_n;
    double sum = 0.0, sum2 = 0.0;
    size_t k = 0;
    for (int block = 0; block < blocks; block++) {
        for (int r = 0; r < grown_rows; r++) {
            bool is_new = t->expert_table ? (r / grown_n >= n || r % grown_n >= n) : r >= n;
            if (!is_new)
                continue;
            const float *row = gt->param + ((size_t)block * grown_rows + r) * width;
            for (size_t d = 0; d < width; d++, k++) {
                sum += row[d];
                sum2 += (double)row[d] * row[d];
            }
        }
    }
    *mean = sum / (double)k;
    *std = sqrt(sum2 / (double)k - *mean * *mean);
    *count = k;
}

/* The new weights follow peer_layer_params_init's distributions: sub-keys N(0, 1/√(dk/2)),
 * u N(0, 1/√D), v N(0, 1/√(h·k)). Thousands of draws each, so the sample deviation is within a
 * few percent of the true one. */
static void test_new_weights_distribution(void)
{
    static const char json[] =
        "{\"vocab_size\": 256, \"context\": 8, \"d_model\": 32, \"n_layers\": 1, "
        "\"n_heads\": 2, \"layers\": [{\"ffn\": \"peer\", \"n_experts\": 64, \"heads\": 4, "
        "\"topk\": 4, \"d_key\": 32, \"shared_keys\": false, \"query_norm\": \"batch\", "
        "\"activation\": \"gelu\"}]}";
    peer_model *model = model_new(json, 1, 8, TEST_SEED);
    model_growth growth = { { 0 } };
    growth.side[0] = 40;
    peer_model *grown = grow(model, &growth, TEST_SEED + 5);
    struct {
        const char *name;
        double std;
    } expected[] = {
        { "blocks.0.ffn.keys", 1.0 / sqrt(16.0) },
        { "blocks.0.ffn.down", 1.0 / sqrt(32.0) },
        { "blocks.0.ffn.up", 1.0 / sqrt(16.0) },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(expected); i++) {
        double mean, std;
        size_t count;
        new_row_moments(model, grown, expected[i].name, &mean, &std, &count);
        g_assert_cmpuint(count, >=, 4000);
        double tolerance = 4.0 / sqrt((double)count); /* four standard errors, in units of σ */
        test_assert_close(std, expected[i].std, 0.0, 3.0 * tolerance,
                          "%s: deviation of %zu new values", expected[i].name, count);
        test_assert_close(mean, 0.0, tolerance * expected[i].std, 0.0,
                          "%s: mean of %zu new values", expected[i].name, count);
    }
    peer_model_free(grown);
    peer_model_free(model);
}

/* ---- outputs --------------------------------------------------------------------------------- */

static void random_tokens(uint8_t *tokens, size_t n, uint64_t seed)
{
    uint8_t *text = word_text(seed, n);
    memcpy(tokens, text, n);
    g_free(text);
}

/* Whether every head of token t chose old experts (a, b < n) in a layer of the grown model, and
 * those are the old model's choices, mapped, with the same gates bit for bit. */
static bool token_uses_old_experts(const peer_model *model, const peer_model *grown, int layer,
                                   int t)
{
    const peer_layer_config *p = &grown->cfg.layers[layer].peer;
    int n = side_of(model, layer), grown_n = side_of(grown, layer);
    int per_token = p->heads * p->topk;
    const peer_layer_acts *old_acts = &model->acts.peer[layer], *acts = &grown->acts.peer[layer];
    for (int s = t * per_token; s < (t + 1) * per_token; s++) {
        int e = acts->expert[s];
        if (e / grown_n >= n || e % grown_n >= n)
            return false;
    }
    for (int s = t * per_token; s < (t + 1) * per_token; s++) {
        if (acts->expert[s] != model_growth_expert_id(old_acts->expert[s], n, grown_n))
            test_fail("layer %d token %d slot %d: expert %d where the old model's %d maps to %d",
                      layer, t, s - t * per_token, acts->expert[s], old_acts->expert[s],
                      model_growth_expert_id(old_acts->expert[s], n, grown_n));
        if (memcmp(&acts->gate[s], &old_acts->gate[s], sizeof(float)) != 0)
            test_fail("layer %d token %d slot %d: gate %.9g, the old model's %.9g", layer, t,
                      s - t * per_token, (double)acts->gate[s], (double)old_acts->gate[s]);
    }
    return true;
}

/* A model evaluated before and after growing one layer: the stream that leaves that layer's
 * block (residual[layer + 1]) is bit for bit the old one at every token that picked only old
 * experts, and differs at tokens that picked a new one. Evaluation mode, so that the batch-norm
 * uses running statistics and each token's retrieval depends on nothing but the token. The
 * sub-key scores are sgemm dot products over dk/2 whose order does not depend on how many
 * sub-keys there are, so even the gates agree exactly. */
static void check_old_token_outputs(const char *json, int layer, int grown_side)
{
    enum { B = 4, T = 16 };
    peer_model *model = model_new(json, B, T, TEST_SEED + 10);
    randomise_buffers(model, TEST_SEED + 11);
    model_growth growth = { { 0 } };
    growth.side[layer] = grown_side;
    peer_model *grown = grow(model, &growth, TEST_SEED + 12);
    uint8_t tokens[B * T];
    random_tokens(tokens, sizeof tokens, TEST_SEED + 13);
    peer_model_forward(model, tokens, NULL, B, T, PEER_MODE_EVAL, NULL);
    peer_model_forward(grown, tokens, NULL, B, T, PEER_MODE_EVAL, NULL);

    int D = model->cfg.d_model, V = model->cfg.vocab_size;
    bool last_layer = layer == model->cfg.n_layers - 1;
    size_t stream = (size_t)(layer + 1) * B * T * D;
    int old_tokens = 0, new_tokens = 0;
    for (int t = 0; t < B * T; t++) {
        const float *out = model->acts.residual + stream + (size_t)t * D;
        const float *grown_out = grown->acts.residual + stream + (size_t)t * D;
        if (token_uses_old_experts(model, grown, layer, t)) {
            old_tokens++;
            if (!same_floats(out, grown_out, (size_t)D))
                test_fail("layer %d token %d picked only old experts but its output differs",
                          layer, t);
            /* With the grown layer last, nothing after it mixes tokens: the logits agree. */
            if (last_layer && !same_floats(model->acts.logits + (size_t)t * V,
                                           grown->acts.logits + (size_t)t * V, (size_t)V))
                test_fail("token %d picked only old experts but its logits differ", t);
        } else {
            new_tokens++;
            g_assert_false(same_floats(out, grown_out, (size_t)D));
        }
    }
    if (g_test_verbose())
        g_test_message("layer %d: %d tokens on old experts, %d with a new one", layer,
                       old_tokens, new_tokens);
    g_assert_cmpint(old_tokens, >=, 4);
    g_assert_cmpint(new_tokens, >=, 4);
    peer_model_free(grown);
    peer_model_free(model);
}

static void test_old_token_outputs(void)
{
    /* The grown PEER layer last (batch-norm, per-head keys): its tokens' logits. */
    check_old_token_outputs(MODEL_JSON("2", DENSE_LAYER ", " PEER_LAYER("16", "batch", "false")),
                            1, 5);
    /* The grown layer first (layer-norm, shared keys), PKM next. */
    check_old_token_outputs(MODEL_JSON("2", PEER_LAYER("25", "layer", "true") ", "
                                            PKM_LAYER("9", "none")),
                            0, 6);
    check_old_token_outputs(MODEL_JSON("2", PEER_LAYER("9", "none", "false") ", "
                                            PKM_LAYER("9", "batch")),
                            1, 4);
}

/* ---- optimiser ------------------------------------------------------------------------------- */

static void test_optimizer_state(void)
{
    corpus data;
    word_corpus(&data, 16);
    trainer tr;
    trainer_start(&tr, grow_model, &data);
    trainer_steps(&tr, 3);

    /* Through the model and optimiser functions, so the old state can be compared directly. */
    model_growth growth = grow_model_growth();
    peer_model *grown = grow(tr.model, &growth, TEST_SEED);
    optimizer_state grown_opt;
    peer_error err = { { 0 } };
    g_assert_true(optimizer_grow(&grown_opt, &tr.opt, tr.model, grown, &err));
    g_assert_cmpint(grown_opt.step, ==, tr.opt.step);
    int nonzero_moments = 0;
    for (int i = 0; i < grown->n_tensors; i++) {
        if (tr.model->tensors[i].buffer)
            continue;
        for (int second = 0; second < 2; second++)
            assert_grown_tensor(moment_of(&tr.opt, tr.model, i, second),
                                moment_of(&grown_opt, grown, i, second), i, tr.model, grown,
                                true, second ? "second moment" : "first moment");
        if (tr.model->tensors[i].expert_table) {
            const float *m = moment_of(&tr.opt, tr.model, i, false);
            for (size_t k = 0; k < tr.model->tensors[i].n_elements; k++)
                nonzero_moments += m[k] != 0.0f;
        }
    }
    /* Three steps touched rows: the mapping was tested on moments that are not zero. */
    g_assert_cmpint(nonzero_moments, >, 0);
    optimizer_free(&grown_opt);
    peer_model_free(grown);
    trainer_free(&tr);
    corpus_free(&data);
}

/* After trainer_grow every old parameter and moment is at its mapped place. */
static void assert_trainer_grown_from(const trainer *tr, const trainer_snapshot *before)
{
    peer_error err = { { 0 } };
    peer_model *old_shape = peer_model_new_uninitialised(&before->cfg, 1, 1, &err);
    g_assert_nonnull(old_shape);
    for (int i = 0; i < tr->model->n_tensors; i++) {
        assert_grown_tensor(before->param[i], tr->model->tensors[i].param, i, old_shape,
                            tr->model, false, "parameters");
        if (before->m[i]) {
            assert_grown_tensor(before->m[i], moment_of(&tr->opt, tr->model, i, false), i,
                                old_shape, tr->model, true, "first moment");
            assert_grown_tensor(before->v[i], moment_of(&tr->opt, tr->model, i, true), i,
                                old_shape, tr->model, true, "second moment");
        }
    }
    peer_model_free(old_shape);
}

static void test_trainer_grow(void)
{
    corpus data;
    word_corpus(&data, 16);
    trainer tr;
    trainer_start(&tr, grow_model, &data);
    trainer_steps(&tr, 3);
    trainer_snapshot before;
    snapshot_take(&before, &tr);
    uint64_t rng_state = tr.data_rng.state;
    model_growth growth = grow_model_growth();
    trainer_grow_or_fail(&tr, &growth, false);
    g_assert_cmpint(tr.step, ==, before.step);
    g_assert_cmpint(tr.opt.step, ==, before.opt_step);
    g_assert_cmpuint(tr.data_rng.state, ==, rng_state);
    g_assert_cmpint(tr.opt.n_frozen, ==, 0);
    assert_trainer_grown_from(&tr, &before);
    snapshot_free(&before);
    trainer_free(&tr);
    corpus_free(&data);
}

/* ---- checkpoints ----------------------------------------------------------------------------- */

static void assert_same_trainers(const trainer *a, const trainer *b, const char *what)
{
    g_assert_cmpint(a->model->n_tensors, ==, b->model->n_tensors);
    for (int i = 0; i < a->model->n_tensors; i++) {
        const model_tensor *ta = &a->model->tensors[i], *tb = &b->model->tensors[i];
        g_assert_cmpstr(ta->name, ==, tb->name);
        if (!same_floats(ta->param, tb->param, ta->n_elements))
            test_fail("%s: %s differs", what, ta->name);
        if (ta->buffer)
            continue;
        for (int second = 0; second < 2; second++)
            if (!same_floats(moment_of(&a->opt, a->model, i, second),
                             moment_of(&b->opt, b->model, i, second), ta->n_elements))
                test_fail("%s: the %s moment of %s differs", what, second ? "second" : "first",
                          ta->name);
    }
    g_assert_cmpint(a->step, ==, b->step);
    g_assert_cmpint(a->opt.step, ==, b->opt.step);
    g_assert_cmpuint(a->data_rng.state, ==, b->data_rng.state);
}

static void test_checkpoint_round_trip(void)
{
    GError *error = NULL;
    char *dir = g_dir_make_tmp("test-grow-XXXXXX", &error);
    g_assert_no_error(error);
    char *model_path = g_build_filename(dir, "grown.safetensors", NULL);
    char *trainer_path = checkpoint_trainer_path(model_path);

    corpus data;
    word_corpus(&data, 16);
    trainer tr;
    trainer_start(&tr, grow_model, &data);
    trainer_steps(&tr, 3);
    model_growth growth = grow_model_growth();
    trainer_grow_or_fail(&tr, &growth, false);
    trainer_steps(&tr, 2);

    peer_error err = { { 0 } };
    if (!checkpoint_save_model(tr.model, model_path, &err) ||
        !checkpoint_save_trainer(&tr, trainer_path, &err))
        g_error("save: %s", err.message);
    model_config cfg;
    g_assert_true(checkpoint_read_config(model_path, &cfg, &err));
    g_assert_cmpint(cfg.layers[0].peer.n_experts, ==, 36);
    g_assert_cmpint(cfg.layers[1].peer.n_experts, ==, 25);

    peer_model *loaded = checkpoint_load_model(model_path, 2, 0, &err);
    if (!loaded)
        g_error("checkpoint_load_model: %s", err.message);
    g_assert_cmpuint(loaded->n_params, ==, tr.model->n_params);
    g_assert_true(same_floats(loaded->params_memory, tr.model->params_memory, loaded->n_params));
    peer_model_free(loaded);

    trainer resumed;
    if (!checkpoint_resume(&resumed, model_path, trainer_path, &data, NULL, &err))
        g_error("checkpoint_resume: %s", err.message);
    assert_same_trainers(&tr, &resumed, "resumed");
    /* And both continue the same way. */
    trainer_steps(&tr, 2);
    trainer_steps(&resumed, 2);
    assert_same_trainers(&tr, &resumed, "after two more steps");

    trainer_free(&resumed);
    trainer_free(&tr);
    corpus_free(&data);
    g_assert_cmpint(g_unlink(model_path), ==, 0);
    g_assert_cmpint(g_unlink(trainer_path), ==, 0);
    g_assert_cmpint(g_rmdir(dir), ==, 0);
    g_free(trainer_path);
    g_free(model_path);
    g_free(dir);
}

/* ---- training after growth ------------------------------------------------------------------- */

/* Rows of a grid tensor's data (parameters or a moment) that differ between before and now, old
 * and new rows counted apart. */
static void count_changed_rows(const float *before, const float *now, const model_tensor *t,
                               int n, int grown_n, int *old_changed, int *new_changed)
{
    size_t width = t->expert_table ? (size_t)t->shape[1] : (size_t)t->shape[3];
    int blocks = t->expert_table ? 1 : (int)(t->shape[0] * t->shape[1]);
    int rows = t->expert_table ? grown_n * grown_n : grown_n;
    *old_changed = *new_changed = 0;
    for (int block = 0; block < blocks; block++) {
        for (int r = 0; r < rows; r++) {
            bool is_old = t->expert_table ? (r / grown_n < n && r % grown_n < n) : r < n;
            size_t at = ((size_t)block * rows + r) * width;
            if (!same_floats(before + at, now + at, width))
                (*(is_old ? old_changed : new_changed))++;
        }
    }
}

/* Trains six steps after growing, with or without the old experts held: both layers pick new
 * and old experts, new rows and sub-keys train, old ones train too unless held, and held ones
 * keep their parameters and moments bit for bit. */
static void check_training_after_growth(bool freeze_old)
{
    corpus data;
    word_corpus(&data, 16);
    trainer tr;
    trainer_start(&tr, grow_model, &data);
    trainer_steps(&tr, 4);
    int old_side[2] = { side_of(tr.model, 0), side_of(tr.model, 1) };
    model_growth growth = grow_model_growth();
    trainer_grow_or_fail(&tr, &growth, freeze_old);
    if (freeze_old) {
        g_assert_cmpint(optimizer_frozen_side(&tr.opt, 0), ==, old_side[0]);
        g_assert_cmpint(optimizer_frozen_side(&tr.opt, 1), ==, old_side[1]);
    }
    trainer_snapshot grown;
    snapshot_take(&grown, &tr);

    int new_choices[2] = { 0, 0 }, old_choices[2] = { 0, 0 };
    for (int step = 0; step < 6; step++) {
        trainer_steps(&tr, 1);
        for (int l = 0; l < 2; l++) {
            const peer_layer_config *p = &tr.model->cfg.layers[l].peer;
            int slots = tr.model->last_B * tr.model->last_T * p->heads * p->topk;
            int fresh = count_new_choices(tr.model, l, old_side[l]);
            new_choices[l] += fresh;
            old_choices[l] += slots - fresh;
        }
    }
    for (int i = 0; i < tr.model->n_tensors; i++) {
        const model_tensor *t = &tr.model->tensors[i];
        if (t->layer < 0 || t->layer > 1 || !is_grid_tensor(t))
            continue;
        int n = old_side[t->layer], grown_n = side_of(tr.model, t->layer);
        int old_changed, new_changed;
        count_changed_rows(grown.param[i], t->param, t, n, grown_n, &old_changed, &new_changed);
        if (g_test_verbose())
            g_test_message("%s: %d old and %d new rows changed", t->name, old_changed,
                           new_changed);
        g_assert_cmpint(new_changed, >, 0);
        if (!freeze_old) {
            g_assert_cmpint(old_changed, >, 0);
            continue;
        }
        if (old_changed != 0)
            test_fail("%s: %d held rows changed", t->name, old_changed);
        /* Their moments stay as they were too. */
        for (int second = 0; second < 2; second++) {
            count_changed_rows(second ? grown.v[i] : grown.m[i],
                               moment_of(&tr.opt, tr.model, i, second), t, n, grown_n,
                               &old_changed, &new_changed);
            if (old_changed != 0)
                test_fail("%s: the moments of %d held rows changed", t->name, old_changed);
        }
    }
    /* The rest of the model trains either way. */
    const model_tensor *query = peer_model_find_tensor(tr.model, "blocks.0.ffn.query.weight");
    g_assert_false(same_floats(grown.param[query - tr.model->tensors], query->param,
                               query->n_elements));
    for (int l = 0; l < 2; l++) {
        if (g_test_verbose())
            g_test_message("layer %d: %d picks of new experts, %d of old", l, new_choices[l],
                           old_choices[l]);
        g_assert_cmpint(new_choices[l], >, 0);
        g_assert_cmpint(old_choices[l], >, 0);
    }
    snapshot_free(&grown);
    trainer_free(&tr);
    corpus_free(&data);
}

static void test_training_continues(void)
{
    check_training_after_growth(false);
}

static void test_frozen_old_experts(void)
{
    check_training_after_growth(true);
}

/* ---- refusals -------------------------------------------------------------------------------- */

static void expect_growth_error(const model_config *cfg, int layer, int side, const char *word1,
                                const char *word2)
{
    model_growth growth = { { 0 } };
    growth.side[layer] = side;
    model_config grown;
    peer_error err = { { 0 } };
    if (model_growth_config(cfg, &growth, &grown, &err))
        test_fail("growing layer %d to %d sub-keys per side was accepted", layer, side);
    assert_contains(err.message, word1);
    assert_contains(err.message, word2);
}

static void test_refusals(void)
{
    model_config cfg;
    config_from_json(&cfg, grow_model);
    expect_growth_error(&cfg, 2, 6, "layer 2 is a dense block", "only PEER and PKM");
    expect_growth_error(&cfg, 0, 3, "3 × 3 = 9 experts", "use 4 to 32768");
    expect_growth_error(&cfg, 1, 40000, "40000 × 40000", "use 3 to 32768");
    expect_growth_error(&cfg, 5, 6, "layer 5 does not exist", "layers 0 to 2");

    /* A refused growth leaves the trainer as it was. */
    corpus data;
    word_corpus(&data, 16);
    trainer tr;
    trainer_start(&tr, grow_model, &data);
    peer_model *model = tr.model;
    model_growth growth = { { 0 } };
    growth.side[0] = 2;
    peer_error err = { { 0 } };
    g_assert_false(trainer_grow(&tr, &growth, true, &err));
    assert_contains(err.message, "use 4 to 32768");
    g_assert_true(tr.model == model);
    g_assert_cmpint(tr.model->cfg.layers[0].peer.n_experts, ==, 16);
    g_assert_cmpint(tr.opt.n_frozen, ==, 0);

    g_assert_false(optimizer_freeze_experts(&tr.opt, tr.model, 2, 1, &err));
    assert_contains(err.message, "layer 2 is a dense block");
    g_assert_false(optimizer_freeze_experts(&tr.opt, tr.model, 0, 5, &err));
    assert_contains(err.message, "use 0 to 4");
    g_assert_true(optimizer_freeze_experts(&tr.opt, tr.model, 0, 2, &err));
    g_assert_cmpint(optimizer_frozen_side(&tr.opt, 0), ==, 2);
    g_assert_true(optimizer_freeze_experts(&tr.opt, tr.model, 0, 0, &err));
    g_assert_cmpint(tr.opt.n_frozen, ==, 0);
    trainer_free(&tr);
    corpus_free(&data);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/grow/keeps-parameters", test_keeps_parameters);
    g_test_add_func("/grow/new-weights-distribution", test_new_weights_distribution);
    g_test_add_func("/grow/old-token-outputs", test_old_token_outputs);
    g_test_add_func("/grow/optimizer-state", test_optimizer_state);
    g_test_add_func("/grow/trainer-grow", test_trainer_grow);
    g_test_add_func("/grow/checkpoint-round-trip", test_checkpoint_round_trip);
    g_test_add_func("/grow/training-continues", test_training_continues);
    g_test_add_func("/grow/frozen-old-experts", test_frozen_old_experts);
    g_test_add_func("/grow/refusals", test_refusals);
    return g_test_run();
}
