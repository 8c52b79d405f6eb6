/* The whole transformer: the gradient of the model's loss (cross-entropy plus the weighted MoE
 * auxiliary loss) against central finite differences for every tensor of models built from each
 * kind of feed-forward block, with the experts each layer chose held fixed; and one batch
 * overfitted to near-zero loss by the optimiser. */
#include <math.h>
#include <string.h>

#include "model.h"
#include "optimizer.h"
#include "test-util.h"

/* ---- tiny models ----------------------------------------------------------------------------- */

#define TINY_B 2
#define TINY_T 8

/* The contract's JSON of a model of context 8, width 16, 2 attention heads and the given
 * blocks. */
static void tiny_config(model_config *cfg, const char *layers_json, int n_layers)
{
    char *json = g_strdup_printf("{\"vocab_size\": 256, \"context\": %d, \"d_model\": 16, "
                                 "\"n_layers\": %d, \"n_heads\": 2, \"layers\": [%s]}",
                                 TINY_T, n_layers, layers_json);
    peer_error err = { { 0 } };
    if (!model_config_from_json(cfg, json, &err))
        g_error("tiny config rejected: %s\n%s", err.message, json);
    g_free(json);
}

static bool has_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), s = strlen(suffix);
    return n >= s && strcmp(name + n - s, suffix) == 0;
}

/* Random weights of a useful scale: the initialisation's 0.02 leaves attention uniform and the
 * logits flat, where most gradients are too small for finite differences to see. Matrices get
 * N(0, 1/√fan-in), norm gains 1 ± 0.2, biases N(0, 0.1), embeddings N(0, 0.5); the PEER and PKM
 * keys and tables keep their own initialisation, which already has unit-scale scores. */
static void randomise_params(peer_model *model, uint64_t seed)
{
    peer_rng rng;
    peer_rng_seed(&rng, seed);
    for (int i = 0; i < model->n_tensors; i++) {
        model_tensor *t = &model->tensors[i];
        if (t->buffer || t->expert_table || has_suffix(t->name, ".keys"))
            continue;
        if (has_suffix(t->name, "bias")) {
            peer_rng_fill_normal(&rng, t->param, t->n_elements, 0.1f);
        } else if (t->n_dims == 1) {
            for (size_t k = 0; k < t->n_elements; k++)
                t->param[k] = 1.0f + 0.2f * peer_rng_normal(&rng);
        } else if (strcmp(t->name, "tok_emb") == 0 || strcmp(t->name, "pos_emb") == 0) {
            peer_rng_fill_normal(&rng, t->param, t->n_elements, 0.5f);
        } else {
            float fan_in = (float)t->shape[t->n_dims - 1];
            peer_rng_fill_normal(&rng, t->param, t->n_elements, 1.0f / sqrtf(fan_in));
        }
    }
}

static void random_bytes(peer_rng *rng, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(peer_rng_next(rng) & 0xff);
}

/* ---- finite differences ---------------------------------------------------------------------- */

/* Step and tolerance. The loss is a mean of 16 float32 cross-entropies of about 5 nats, computed
 * from logits that each carry a rounding error of ~1e-7 relative: the loss is noisy at a few
 * 1e-7, which the central difference divides by 2ε = 2e-3 into ~2e-4. The truncation error
 * ε²/6·f''' is ~1e-6 at ε = 1e-3, and so small a step rarely changes which experts a token
 * chooses. The largest error over all cases is ~3.5e-4, on gradients whose mean size is ~0.05
 * (half of them above 2e-2): 1e-3 absolute plus 1e-2 relative leaves a margin of about 3, while
 * a wrong term (a missing path, a factor of 2, a transposed index) is off by the gradient's own
 * size. */
#define FD_EPS 1e-3f
#define FD_ATOL 1e-3
#define FD_RTOL 1e-2

/* Entries differenced per tensor: all of a small tensor, a sample of a large one. */
#define FD_SAMPLES 40

typedef struct {
    peer_model *model;
    const uint8_t *tokens;  /* (B, T) */
    const uint8_t *targets; /* (B, T) */
    int32_t *chosen[MODEL_MAX_LAYERS]; /* per PEER/PKM/MoE layer: the base point's experts */
    float *preact[MODEL_MAX_LAYERS];   /* per PEER layer with ReLU: the base point's u·x */
    size_t chosen_count[MODEL_MAX_LAYERS];
    size_t preact_count[MODEL_MAX_LAYERS];
    int checked, skipped;
    double worst_error; /* largest |analytic - numeric| seen */
} fd_case;

static double fd_forward(fd_case *fc)
{
    return peer_model_forward(fc->model, fc->tokens, fc->targets, TINY_B, TINY_T,
                              PEER_MODE_TRAIN, NULL);
}

/* The chosen experts (and ReLU signs) of layer l in the last forward. */
static const int32_t *layer_chosen(const peer_model *model, int l)
{
    ffn_kind kind = model->cfg.layers[l].kind;
    if (kind == FFN_PEER || kind == FFN_PKM)
        return model->acts.peer[l].expert;
    if (kind == FFN_MOE)
        return model->acts.moe[l].expert;
    return NULL;
}

static void fd_case_record(fd_case *fc)
{
    const peer_model *model = fc->model;
    int BT = TINY_B * TINY_T;
    for (int l = 0; l < model->cfg.n_layers; l++) {
        const ffn_config *ffn = &model->cfg.layers[l];
        if (ffn->kind == FFN_PEER || ffn->kind == FFN_PKM)
            fc->chosen_count[l] = (size_t)BT * ffn->peer.heads * ffn->peer.topk;
        else if (ffn->kind == FFN_MOE)
            fc->chosen_count[l] = (size_t)BT * ffn->moe_topk;
        if (fc->chosen_count[l])
            fc->chosen[l] = g_memdup2(layer_chosen(model, l),
                                      fc->chosen_count[l] * sizeof(int32_t));
        if (ffn->kind == FFN_PEER && ffn->peer.activation == PEER_ACTIVATION_RELU) {
            fc->preact_count[l] = fc->chosen_count[l];
            fc->preact[l] = test_copy_floats(model->acts.peer[l].preact, fc->preact_count[l]);
        }
    }
}

/* Whether the last forward chose other experts than the base point, or crossed a ReLU kink. */
static bool fd_case_selection_changed(const fd_case *fc)
{
    const peer_model *model = fc->model;
    for (int l = 0; l < model->cfg.n_layers; l++) {
        if (fc->chosen[l] && memcmp(layer_chosen(model, l), fc->chosen[l],
                                    fc->chosen_count[l] * sizeof(int32_t)) != 0)
            return true;
        for (size_t i = 0; i < fc->preact_count[l]; i++)
            if ((model->acts.peer[l].preact[i] > 0.0f) != (fc->preact[l][i] > 0.0f))
                return true;
    }
    return false;
}

static void fd_case_free(fd_case *fc)
{
    for (int l = 0; l < MODEL_MAX_LAYERS; l++) {
        g_free(fc->chosen[l]);
        g_free(fc->preact[l]);
    }
}

/* Differences entry i of param against the analytic gradient. */
static void fd_check_entry(fd_case *fc, const char *name, float *param, size_t i, double analytic)
{
    float saved = param[i];
    param[i] = saved + FD_EPS;
    double up = param[i];
    double loss_up = fd_forward(fc);
    bool changed = fd_case_selection_changed(fc);
    param[i] = saved - FD_EPS;
    double down = param[i];
    double loss_down = fd_forward(fc);
    changed = changed || fd_case_selection_changed(fc);
    param[i] = saved;
    fc->checked++;
    if (changed) {
        fc->skipped++;
        return;
    }
    double numeric = (loss_up - loss_down) / (up - down);
    fc->worst_error = MAX(fc->worst_error, fabs(analytic - numeric));
    test_assert_close(analytic, numeric, FD_ATOL, FD_RTOL, "%s[%zu]", name, i);
}

/* The dense (N, D) gradient of an expert table from the sparse rows; g_free it. */
static float *table_gradient(const peer_model *model, const model_tensor *t, bool **touched)
{
    const peer_sparse_grad *sparse = &model->sparse[t->layer];
    const float *rows_grad = has_suffix(t->name, ".down") ? sparse->down : sparse->up;
    size_t N = (size_t)t->shape[0], D = (size_t)t->shape[1];
    float *grad = g_new0(float, N * D);
    *touched = g_new0(bool, N);
    for (int r = 0; r < sparse->n_rows; r++) {
        int32_t row = sparse->rows[r];
        g_assert_cmpint(row, >=, 0);
        g_assert_cmpint(row, <, (int)N);
        g_assert_cmpint(sparse->position[row], ==, r);
        g_assert_false((*touched)[row]);
        (*touched)[row] = true;
        memcpy(grad + (size_t)row * D, rows_grad + (size_t)r * D, D * sizeof(float));
    }
    return grad;
}

static void gradient_check(const char *layers_json, int n_layers, float aux_weight,
                           uint64_t seed)
{
    model_config cfg;
    tiny_config(&cfg, layers_json, n_layers);
    peer_error err = { { 0 } };
    peer_model *model = peer_model_new(&cfg, TINY_B, TINY_T, seed, &err);
    if (!model)
        g_error("peer_model_new: %s", err.message);
    model->moe_aux_weight = aux_weight;
    randomise_params(model, seed + 1);

    peer_rng rng;
    peer_rng_seed(&rng, seed + 2);
    uint8_t tokens[TINY_B * TINY_T], targets[TINY_B * TINY_T];
    random_bytes(&rng, tokens, sizeof tokens);
    random_bytes(&rng, targets, sizeof targets);

    fd_case fc = { .model = model, .tokens = tokens, .targets = targets };
    double loss = fd_forward(&fc);
    g_assert_true(isfinite(loss));
    test_assert_close(loss, model->last_ce + aux_weight * model->last_aux, 1e-12, 1e-12,
                      "loss = cross-entropy + aux");
    fd_case_record(&fc);
    peer_model_zero_grad(model);
    peer_model_backward(model, tokens, targets, NULL);
    float *dense_grad = test_copy_floats(model->grads_memory, model->n_grads);

    for (int ti = 0; ti < model->n_tensors; ti++) {
        model_tensor *t = &model->tensors[ti];
        if (t->buffer) {
            g_assert_null(t->grad);
            continue;
        }
        if (t->expert_table) {
            /* Touched rows carry the gradient; an untouched row's is exactly zero, and so is its
             * finite difference, since retrieval never reads the tables. */
            bool *touched;
            float *grad = table_gradient(model, t, &touched);
            size_t N = (size_t)t->shape[0], D = (size_t)t->shape[1];
            int n_touched = 0;
            for (size_t r = 0; r < N; r++)
                n_touched += touched[r];
            g_assert_cmpint(n_touched, >, 0);
            int from_touched = 0, from_untouched = 0;
            for (int attempt = 0; attempt < 100 * FD_SAMPLES &&
                                  from_touched + from_untouched < FD_SAMPLES;
                 attempt++) {
                size_t i = (size_t)(peer_rng_next(&rng) % (N * D));
                bool is_touched = touched[i / D];
                if (is_touched ? from_touched >= FD_SAMPLES * 3 / 4
                               : from_untouched >= FD_SAMPLES / 4)
                    continue;
                if (is_touched)
                    from_touched++;
                else
                    from_untouched++;
                fd_check_entry(&fc, t->name, t->param, i, grad[i]);
            }
            g_free(grad);
            g_free(touched);
            continue;
        }
        g_assert_nonnull(t->grad);
        const float *grad = dense_grad + (t->grad - model->grads_memory);
        if (t->n_elements <= FD_SAMPLES) {
            for (size_t i = 0; i < t->n_elements; i++)
                fd_check_entry(&fc, t->name, t->param, i, grad[i]);
        } else {
            for (int s = 0; s < FD_SAMPLES; s++) {
                size_t i = (size_t)(peer_rng_next(&rng) % t->n_elements);
                fd_check_entry(&fc, t->name, t->param, i, grad[i]);
            }
        }
    }
    g_test_message("%s: %d entries differenced, %d skipped for a changed choice of experts, "
                   "worst error %.3g",
                   layers_json, fc.checked, fc.skipped, fc.worst_error);
    /* A step of 1e-3 moves a top-k score by ~1e-3; ties that close are rare among 16 tokens. */
    g_assert_cmpint(fc.skipped * 10, <=, fc.checked);

    g_free(dense_grad);
    fd_case_free(&fc);
    peer_model_free(model);
}

#define DENSE_LAYER "{\"ffn\": \"dense\", \"d_ff\": 32}"
#define PEER_LAYER(norm, act, shared)                                                             \
    "{\"ffn\": \"peer\", \"n_experts\": 64, \"heads\": 2, \"topk\": 2, \"d_key\": 8, "          \
    "\"shared_keys\": " shared ", \"query_norm\": \"" norm "\", \"activation\": \"" act "\"}"
#define PKM_LAYER(norm)                                                                           \
    "{\"ffn\": \"pkm\", \"n_memories\": 64, \"heads\": 2, \"topk\": 2, \"d_key\": 8, "          \
    "\"shared_keys\": false, \"query_norm\": \"" norm "\"}"
#define MOE_LAYER "{\"ffn\": \"moe\", \"n_experts\": 4, \"topk\": 2, \"d_ff\": 16}"

/* The auxiliary loss's weight: far above the trainer's 0.01, so that a wrong auxiliary gradient
 * is as visible as a wrong main one. */
#define GRAD_AUX_WEIGHT 0.3f

static void test_gradients_dense(void)
{
    gradient_check(DENSE_LAYER ", " DENSE_LAYER, 2, GRAD_AUX_WEIGHT, TEST_SEED);
}

static void test_gradients_peer_batch(void)
{
    gradient_check(PEER_LAYER("batch", "gelu", "false") ", " PEER_LAYER("batch", "gelu", "false"),
                   2, GRAD_AUX_WEIGHT, TEST_SEED + 10);
}

static void test_gradients_peer_layer(void)
{
    gradient_check(PEER_LAYER("layer", "gelu", "true") ", " PEER_LAYER("layer", "gelu", "false"),
                   2, GRAD_AUX_WEIGHT, TEST_SEED + 20);
}

static void test_gradients_peer_none(void)
{
    gradient_check(PEER_LAYER("none", "relu", "false") ", " PEER_LAYER("none", "gelu", "true"), 2,
                   GRAD_AUX_WEIGHT, TEST_SEED + 30);
}

static void test_gradients_pkm(void)
{
    gradient_check(PKM_LAYER("batch") ", " PKM_LAYER("layer"), 2, GRAD_AUX_WEIGHT,
                   TEST_SEED + 40);
}

static void test_gradients_moe(void)
{
    gradient_check(MOE_LAYER ", " MOE_LAYER, 2, GRAD_AUX_WEIGHT, TEST_SEED + 50);
}

/* Every kind in one stack, so each block's input gradient flows through the others. */
static void test_gradients_mixed(void)
{
    gradient_check(MOE_LAYER ", " PEER_LAYER("batch", "gelu", "false") ", " PKM_LAYER("none")
                   ", " DENSE_LAYER,
                   4, GRAD_AUX_WEIGHT, TEST_SEED + 60);
}

/* ---- overfitting one batch ------------------------------------------------------------------- */

#define FIT_B 4
#define FIT_T 16
#define FIT_STEPS 600
#define FIT_TARGET 0.01

/* Four windows of one sentence: every (sequence, position) has its own prefix, so a model can
 * drive the loss on them to zero. */
static const char fit_text[] =
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife.";

/* A small model of width 32 learns one batch of 64 bytes by heart: AdamW without weight decay
 * and sparse Adam at a high learning rate, the gradient of the full training loss. */
static void overfit(const char *layers_json)
{
    char *json = g_strdup_printf("{\"vocab_size\": 256, \"context\": %d, \"d_model\": 32, "
                                 "\"n_layers\": 2, \"n_heads\": 2, \"layers\": [%s]}",
                                 FIT_T, layers_json);
    model_config cfg;
    peer_error err = { { 0 } };
    if (!model_config_from_json(&cfg, json, &err))
        g_error("config rejected: %s", err.message);
    g_free(json);
    peer_model *model = peer_model_new(&cfg, FIT_B, FIT_T, TEST_SEED, &err);
    if (!model)
        g_error("peer_model_new: %s", err.message);
    optimizer_state opt;
    if (!optimizer_init(&opt, model, &err))
        g_error("optimizer_init: %s", err.message);

    uint8_t tokens[FIT_B * FIT_T], targets[FIT_B * FIT_T];
    for (int b = 0; b < FIT_B; b++) {
        const char *start = fit_text + b * 25;
        memcpy(tokens + b * FIT_T, start, FIT_T);
        memcpy(targets + b * FIT_T, start + 1, FIT_T);
    }
    adamw_settings adam = { .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f, .weight_decay = 0.0f };
    double first = 0.0, loss = 0.0;
    int step;
    for (step = 0; step < FIT_STEPS; step++) {
        loss = peer_model_forward(model, tokens, targets, FIT_B, FIT_T, PEER_MODE_TRAIN, NULL);
        g_assert_true(isfinite(loss));
        if (step == 0)
            first = loss;
        if (model->last_ce < FIT_TARGET)
            break;
        peer_model_zero_grad(model);
        peer_model_backward(model, tokens, targets, NULL);
        optimizer_step(&opt, model, &adam, 1e-2f, 1e-2f, 1.0f, NULL);
    }
    g_test_message("%s: cross-entropy %.3f at first, %.4f after %d steps", layers_json, first,
                   model->last_ce, step);
    g_assert_cmpfloat(first, >, 4.0);
    g_assert_cmpfloat(model->last_ce, <, FIT_TARGET);
    optimizer_free(&opt);
    peer_model_free(model);
}

static void test_overfit_dense(void)
{
    overfit(DENSE_LAYER ", " DENSE_LAYER);
}

static void test_overfit_peer(void)
{
    overfit(PEER_LAYER("batch", "gelu", "false") ", " PEER_LAYER("layer", "relu", "true"));
}

static void test_overfit_pkm(void)
{
    overfit(PKM_LAYER("batch") ", " PKM_LAYER("none"));
}

static void test_overfit_moe(void)
{
    overfit(MOE_LAYER ", " MOE_LAYER);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/model/gradients/dense", test_gradients_dense);
    g_test_add_func("/model/gradients/peer-batch-norm", test_gradients_peer_batch);
    g_test_add_func("/model/gradients/peer-layer-norm", test_gradients_peer_layer);
    g_test_add_func("/model/gradients/peer-no-norm", test_gradients_peer_none);
    g_test_add_func("/model/gradients/pkm", test_gradients_pkm);
    g_test_add_func("/model/gradients/moe", test_gradients_moe);
    g_test_add_func("/model/gradients/mixed", test_gradients_mixed);
    g_test_add_func("/model/overfit/dense", test_overfit_dense);
    g_test_add_func("/model/overfit/peer", test_overfit_peer);
    g_test_add_func("/model/overfit/pkm", test_overfit_pkm);
    g_test_add_func("/model/overfit/moe", test_overfit_moe);
    return g_test_run();
}
