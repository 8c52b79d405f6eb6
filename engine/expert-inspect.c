#include "expert-inspect.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "expert-kernel.h"

#define MAX_BINS 4096
#define MAX_CONTEXTS 100000

void expert_inspect_settings_default(expert_inspect_settings *settings, int layer, int expert)
{
    *settings = (expert_inspect_settings){ .layer = layer, .expert = expert, .head = -1,
                                           .windows = 32, .top_contexts = 12, .bins = 24,
                                           .top_bytes = 8 };
}

/* ---- checks ---------------------------------------------------------------------------------- */

static bool check_expert(const peer_model *model, int layer, int expert, peer_error *err)
{
    const model_config *cfg = &model->cfg;
    if (layer < 0 || layer >= cfg->n_layers)
        return peer_error_set(err, "layer %d does not exist: the model has layers 0 to %d", layer,
                              cfg->n_layers - 1);
    const ffn_config *ffn = &cfg->layers[layer];
    if (ffn->kind != FFN_PEER && ffn->kind != FFN_PKM)
        return peer_error_set(err,
                              "layer %d is not a PEER or PKM layer and has no experts: choose "
                              "one of the model's expert layers",
                              layer);
    if (expert < 0 || expert >= ffn->peer.n_experts)
        return peer_error_set(err, "expert %d does not exist: layer %d has experts 0 to %d",
                              expert, layer, ffn->peer.n_experts - 1);
    return true;
}

/* The windows to read: as many as asked, at most what the validation text holds. */
static bool windows_to_read(const peer_model *model, const corpus *data, int asked, int *windows,
                            peer_error *err)
{
    if (asked < 1)
        return peer_error_set(err, "%d validation windows asked for: use 1 or more", asked);
    size_t available = corpus_validation_windows(data, model->seq);
    if (available == 0)
        return peer_error_set(err,
                              "the validation text holds no window of %d bytes: use a longer "
                              "text",
                              model->seq + 1);
    *windows = (size_t)asked < available ? asked : (int)available;
    return true;
}

/* ---- inspection ------------------------------------------------------------------------------ */

typedef struct {
    float *values;
    size_t n, capacity;
} value_list;

static bool value_list_push(value_list *list, float value)
{
    if (list->n == list->capacity) {
        size_t capacity = list->capacity ? 2 * list->capacity : 256;
        float *values = realloc(list->values, capacity * sizeof *values);
        if (!values)
            return false;
        list->values = values;
        list->capacity = capacity;
    }
    list->values[list->n++] = value;
    return true;
}

static void value_range(const value_list *list, double *lo, double *hi)
{
    if (list->n == 0) {
        *lo = 0.0;
        *hi = 1.0;
        return;
    }
    *lo = *hi = list->values[0];
    for (size_t i = 1; i < list->n; i++) {
        *lo = fmin(*lo, list->values[i]);
        *hi = fmax(*hi, list->values[i]);
    }
    if (*lo == *hi) {
        *lo -= 0.5;
        *hi += 0.5;
    }
}

static bool histogram_fill(expert_histogram *histogram, const value_list *list, int bins,
                           double lo, double hi)
{
    histogram->counts = calloc((size_t)bins, sizeof *histogram->counts);
    if (!histogram->counts)
        return false;
    histogram->bins = bins;
    histogram->lo = lo;
    histogram->hi = hi;
    for (size_t i = 0; i < list->n; i++) {
        double position = (list->values[i] - lo) / (hi - lo) * bins;
        int b = position < 0.0 ? 0 : (position >= bins ? bins - 1 : (int)position);
        histogram->counts[b]++;
    }
    histogram->total = list->n;
    return true;
}

/* What ranks a context: its activation, or its gate for PKM, whose activation is always 1. */
static float context_key(const expert_context *c, bool by_gate)
{
    return by_gate ? c->gate : c->activation;
}

/* Keeps the best `capacity` contexts, best first; a newcomer must beat the last strictly, so
 * among equals the earlier position stays ahead. */
static void context_offer(expert_context *kept, int *n, int capacity, const expert_context *c,
                          bool by_gate)
{
    if (capacity == 0)
        return;
    float key = context_key(c, by_gate);
    if (*n == capacity && !(key > context_key(&kept[*n - 1], by_gate)))
        return;
    int at = *n < capacity ? (*n)++ : capacity - 1;
    while (at > 0 && key > context_key(&kept[at - 1], by_gate)) {
        kept[at] = kept[at - 1];
        at--;
    }
    kept[at] = *c;
}

/* A byte and its logit effect; sorted largest effect first, the smaller byte first among equals. */
typedef struct {
    float value;
    int index;
} ranked_byte;

static int compare_ranked_bytes(const void *a, const void *b)
{
    const ranked_byte *x = a, *y = b;
    if (x->value != y->value)
        return x->value > y->value ? -1 : 1;
    return x->index - y->index;
}

static bool check_settings(const peer_model *model, const expert_inspect_settings *s,
                           peer_error *err)
{
    if (!check_expert(model, s->layer, s->expert, err))
        return false;
    const ffn_config *ffn = &model->cfg.layers[s->layer];
    if (s->head < -1 || s->head >= ffn->peer.heads)
        return peer_error_set(err, "head %d does not exist: use -1 for every head or 0 to %d",
                              s->head, ffn->peer.heads - 1);
    if (s->bins < 1 || s->bins > MAX_BINS)
        return peer_error_set(err, "%d histogram bins: use 1 to %d", s->bins, MAX_BINS);
    if (s->top_contexts < 0 || s->top_contexts > MAX_CONTEXTS)
        return peer_error_set(err, "%d top contexts: use 0 to %d", s->top_contexts,
                              MAX_CONTEXTS);
    if (s->top_bytes < 0 || s->top_bytes > model->cfg.vocab_size)
        return peer_error_set(err, "%d bytes pushed up and down: use 0 to %d (the vocabulary)",
                              s->top_bytes, model->cfg.vocab_size);
    return true;
}

/* The direct logit effect of v (D) through ln_f and the tied embedding, at the norm scale s;
 * direction (D) is scratch. */
static void logit_effect(const peer_model *model, const float *v, double s, double *direction,
                         float *effect)
{
    int D = model->cfg.d_model, V = model->cfg.vocab_size;
    const model_params *p = &model->params;
    double mean = 0.0;
    for (int d = 0; d < D; d++)
        mean += v[d];
    mean /= D;
    for (int d = 0; d < D; d++)
        direction[d] = (double)p->lnf_weight[d] * ((double)v[d] - mean) * s;
    for (int b = 0; b < V; b++) {
        const float *row = p->tok_emb + (size_t)b * D;
        double sum = 0.0;
        for (int d = 0; d < D; d++)
            sum += (double)row[d] * direction[d];
        effect[b] = (float)sum;
    }
}

static double row_norm(const float *row, int D)
{
    double sum = 0.0;
    for (int d = 0; d < D; d++)
        sum += (double)row[d] * row[d];
    return sqrt(sum);
}

bool expert_inspect(peer_model *model, const corpus *data, const expert_inspect_settings *settings,
                    expert_inspection *out, thread_pool *pool, peer_error *err)
{
    memset(out, 0, sizeof *out);
    if (!check_settings(model, settings, err))
        return false;
    expert_inspect_settings s = *settings;
    if (!windows_to_read(model, data, s.windows, &s.windows, err))
        return false;
    out->settings = s;

    const model_config *cfg = &model->cfg;
    const ffn_config *ffn = &cfg->layers[s.layer];
    const peer_layer_config *peer = &ffn->peer;
    const peer_layer_params *params = &model->params.blocks[s.layer].peer;
    int D = cfg->d_model, V = cfg->vocab_size, h = peer->heads, k = peer->topk;
    int B = model->batch, T = model->seq, n = peer_layer_side(peer);
    int e = s.expert;
    const float *u = params->down ? params->down + (size_t)e * D : NULL;
    const float *v = params->up + (size_t)e * D;
    out->has_u = u != NULL;
    out->row = e / n;
    out->col = e % n;
    out->heads = h;
    out->vocab = V;
    out->u_norm = u ? row_norm(u, D) : 0.0;
    out->v_norm = row_norm(v, D);

    bool ok = false;
    value_list activations = { 0 }, preacts = { 0 }, gates = { 0 }, all_preacts = { 0 };
    uint8_t *tokens = malloc((size_t)B * T);
    ranked_byte *ranking = malloc((size_t)V * sizeof *ranking);
    double *direction = malloc((size_t)D * sizeof *direction);
    out->head_count = calloc((size_t)h, sizeof *out->head_count);
    out->head_gate_mass = calloc((size_t)h, sizeof *out->head_gate_mass);
    out->contexts = malloc((size_t)(s.top_contexts ? s.top_contexts : 1) * sizeof *out->contexts);
    out->logit_effect = malloc((size_t)V * sizeof *out->logit_effect);
    out->pushed_up = malloc((size_t)(s.top_bytes ? s.top_bytes : 1) * sizeof(int));
    out->pushed_down = malloc((size_t)(s.top_bytes ? s.top_bytes : 1) * sizeof(int));
    if (!tokens || !ranking || !direction || !out->head_count || !out->head_gate_mass || !out->contexts ||
        !out->logit_effect || !out->pushed_up || !out->pushed_down)
        goto out_of_memory;

    double rstd_sum = 0.0;
    for (int w = 0; w < s.windows; w += B) {
        int count = s.windows - w < B ? s.windows - w : B;
        int BT = count * T;
        /* The inputs of the windows (corpus.h: consecutive runs of T + 1 bytes from the start of
         * the validation part); no loss, so no targets. */
        for (int b = 0; b < count; b++)
            memcpy(tokens + (size_t)b * T,
                   data->bytes + data->train_size + (size_t)(w + b) * (T + 1), (size_t)T);
        peer_model_forward(model, tokens, NULL, count, T, PEER_MODE_EVAL, pool);
        const peer_layer_acts *acts = &model->acts.peer[s.layer];
        const float *x = model->acts.ln2 + (size_t)s.layer * BT * D;
        for (int t = 0; t < BT; t++) {
            rstd_sum += model->acts.lnf_rstd[t];
            if (u && !value_list_push(&all_preacts, expert_dot(u, x + (size_t)t * D, D)))
                goto out_of_memory;
            expert_context here = { .head = -1 };
            float best_gate = 0.0f;
            for (int j = 0; j < h; j++) {
                size_t base = ((size_t)t * h + j) * k;
                for (int slot = 0; slot < k; slot++) {
                    if (acts->expert[base + slot] != e)
                        continue;
                    float gate = acts->gate[base + slot];
                    float preact = u ? acts->preact[base + slot] : 0.0f;
                    float activation = u ? expert_activation(preact, peer->activation) : 1.0f;
                    out->head_count[j]++;
                    out->head_gate_mass[j] += gate;
                    if (s.head >= 0 && j != s.head)
                        continue;
                    out->count++;
                    out->gate_mass += gate;
                    out->activation_sum += activation;
                    if (!value_list_push(&gates, gate) ||
                        (u && (!value_list_push(&activations, activation) ||
                               !value_list_push(&preacts, preact))))
                        goto out_of_memory;
                    if (here.heads == 0 || gate > best_gate) {
                        best_gate = gate;
                        here.head = j;
                    }
                    here.preact = preact;
                    here.activation = activation;
                    here.gate += gate;
                    here.heads++;
                }
            }
            if (here.heads > 0) {
                int window = w + t / T;
                here.window_start = data->train_size + (size_t)window * (T + 1);
                here.offset = here.window_start + (size_t)(t % T);
                context_offer(out->contexts, &out->n_contexts, s.top_contexts, &here, !u);
            }
        }
    }
    out->tokens = (long)s.windows * T;
    out->norm_scale = rstd_sum / (double)out->tokens;

    double lo, hi;
    value_range(&activations, &lo, &hi);
    if (!histogram_fill(&out->activation, &activations, s.bins, lo, hi))
        goto out_of_memory;
    /* Both pre-activation histograms over the range of every token, which holds the chosen
     * ones, so that they can be drawn over each other. */
    value_range(&all_preacts, &lo, &hi);
    if (!histogram_fill(&out->preact_all, &all_preacts, s.bins, lo, hi) ||
        !histogram_fill(&out->preact_selected, &preacts, s.bins, lo, hi))
        goto out_of_memory;
    value_range(&gates, &lo, &hi);
    if (!histogram_fill(&out->gate, &gates, s.bins, lo, hi))
        goto out_of_memory;

    logit_effect(model, v, out->norm_scale, direction, out->logit_effect);
    for (int b = 0; b < V; b++)
        ranking[b] = (ranked_byte){ out->logit_effect[b], b };
    qsort(ranking, (size_t)V, sizeof *ranking, compare_ranked_bytes);
    for (int i = 0; i < s.top_bytes; i++) {
        out->pushed_up[i] = ranking[i].index;
        out->pushed_down[i] = ranking[V - 1 - i].index;
    }
    ok = true;
    goto done;

out_of_memory:
    peer_error_set(err, "out of memory inspecting expert %d of layer %d over %d windows", e,
                   s.layer, s.windows);
done:
    free(activations.values);
    free(preacts.values);
    free(gates.values);
    free(all_preacts.values);
    free(tokens);
    free(ranking);
    free(direction);
    return ok;
}

void expert_inspection_free(expert_inspection *inspection)
{
    free(inspection->head_count);
    free(inspection->head_gate_mass);
    free(inspection->activation.counts);
    free(inspection->preact_selected.counts);
    free(inspection->preact_all.counts);
    free(inspection->gate.counts);
    free(inspection->contexts);
    free(inspection->logit_effect);
    free(inspection->pushed_up);
    free(inspection->pushed_down);
    memset(inspection, 0, sizeof *inspection);
}

/* ---- ablation -------------------------------------------------------------------------------- */

/* Mean cross-entropy over the first `windows` validation windows, as trainer_evaluate sums it. */
static double validation_loss(peer_model *model, const corpus *data, int windows,
                              uint8_t *tokens, uint8_t *targets, thread_pool *pool)
{
    int B = model->batch, T = model->seq;
    double loss_sum = 0.0;
    long count_tokens = 0;
    for (int w = 0; w < windows; w += B) {
        int count = windows - w < B ? windows - w : B;
        for (int b = 0; b < count; b++)
            corpus_validation_window(data, (size_t)(w + b), T, tokens + b * T, targets + b * T);
        peer_model_forward(model, tokens, targets, count, T, PEER_MODE_EVAL, pool);
        loss_sum += model->last_ce * count * T;
        count_tokens += (long)count * T;
    }
    return loss_sum / (double)count_tokens;
}

bool expert_ablate(peer_model *model, const corpus *data, int layer, int expert, int windows,
                   expert_ablation *out, thread_pool *pool, peer_error *err)
{
    memset(out, 0, sizeof *out);
    if (!check_expert(model, layer, expert, err) ||
        !windows_to_read(model, data, windows, &out->windows, err))
        return false;
    int D = model->cfg.d_model;
    size_t BT = (size_t)model->batch * model->seq;
    float *row = model->params.blocks[layer].peer.up + (size_t)expert * D;
    float *saved = malloc((size_t)D * sizeof *saved);
    uint8_t *tokens = malloc(BT), *targets = malloc(BT);
    if (!saved || !tokens || !targets) {
        free(saved);
        free(tokens);
        free(targets);
        return peer_error_set(err, "out of memory for the ablation of expert %d", expert);
    }
    out->tokens = (long)out->windows * model->seq;
    out->loss = validation_loss(model, data, out->windows, tokens, targets, pool);
    memcpy(saved, row, (size_t)D * sizeof *saved);
    memset(row, 0, (size_t)D * sizeof *row);
    out->ablated_loss = validation_loss(model, data, out->windows, tokens, targets, pool);
    memcpy(row, saved, (size_t)D * sizeof *saved);
    free(saved);
    free(tokens);
    free(targets);
    return true;
}
