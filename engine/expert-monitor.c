#include "expert-monitor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool is_expert_layer(const ffn_config *ffn)
{
    return ffn->kind == FFN_PEER || ffn->kind == FFN_PKM;
}

static int side_of(int n_experts)
{
    return (int)lround(sqrt((double)n_experts));
}

static void layer_free(expert_monitor_layer *layer)
{
    expert_stats_free(&layer->since_start);
    expert_decayed_stats_free(&layer->live);
    expert_history_free(&layer->history);
    expert_stats_free(&layer->validation);
    memset(layer, 0, sizeof *layer);
}

static bool layer_init(expert_monitor_layer *layer, int n_experts, int heads, double half_life,
                       size_t history_bytes, peer_error *err)
{
    memset(layer, 0, sizeof *layer);
    layer->validation_step = -1;
    if (!expert_stats_init(&layer->since_start, n_experts, heads, err) ||
        !expert_decayed_stats_init(&layer->live, n_experts, heads, half_life, err) ||
        !expert_history_init(&layer->history, n_experts, history_bytes, err)) {
        layer_free(layer);
        return false;
    }
    layer->active = true;
    layer->side = side_of(n_experts);
    layer->heads = heads;
    return true;
}

bool expert_monitor_init(expert_monitor *monitor, const model_config *cfg, double half_life,
                         size_t history_bytes, peer_error *err)
{
    memset(monitor, 0, sizeof *monitor);
    monitor->n_layers = cfg->n_layers;
    monitor->half_life = half_life;
    monitor->history_bytes = history_bytes;
    monitor->first_step = -1;
    monitor->last_step = -1;
    for (int l = 0; l < cfg->n_layers; l++) {
        const ffn_config *ffn = &cfg->layers[l];
        if (!is_expert_layer(ffn))
            continue;
        if (!layer_init(&monitor->layers[l], ffn->peer.n_experts, ffn->peer.heads, half_life,
                        history_bytes, err)) {
            expert_monitor_free(monitor);
            return false;
        }
    }
    return true;
}

void expert_monitor_free(expert_monitor *monitor)
{
    for (int l = 0; l < MODEL_MAX_LAYERS; l++)
        layer_free(&monitor->layers[l]);
    memset(monitor, 0, sizeof *monitor);
}

/* Copies per-head rows of an old n-side grid into a new n'-side one: (a, b) stays (a, b). */
#define COPY_GRID(to, from, heads, side, new_side)                                               \
    do {                                                                                         \
        size_t old_n_ = (size_t)(side) * (side), new_n_ = (size_t)(new_side) * (new_side);       \
        for (int j_ = 0; j_ < (heads); j_++)                                                     \
            for (int a_ = 0; a_ < (side); a_++)                                                  \
                memcpy((to) + j_ * new_n_ + (size_t)a_ * (new_side),                             \
                       (from) + j_ * old_n_ + (size_t)a_ * (side), (side) * sizeof *(to));       \
    } while (0)

/* A layer whose grid grew from n to n' sides: every statistic moves to the larger grid, each
 * expert keeping its (a, b). All or nothing. */
static bool layer_regrid(expert_monitor_layer *layer, int new_side, size_t history_bytes,
                         peer_error *err)
{
    int side = layer->side, heads = layer->heads, new_n = new_side * new_side;
    expert_stats since_start;
    expert_decayed_stats live;
    if (!expert_stats_init(&since_start, new_n, heads, err))
        return false;
    if (!expert_decayed_stats_init(&live, new_n, heads, layer->live.half_life, err)) {
        expert_stats_free(&since_start);
        return false;
    }
    if (!expert_history_regrid(&layer->history, side, new_side, history_bytes, err)) {
        expert_stats_free(&since_start);
        expert_decayed_stats_free(&live);
        return false;
    }
    COPY_GRID(since_start.count, layer->since_start.count, heads, side, new_side);
    COPY_GRID(since_start.gate_mass, layer->since_start.gate_mass, heads, side, new_side);
    COPY_GRID(since_start.activation, layer->since_start.activation, heads, side, new_side);
    since_start.tokens = layer->since_start.tokens;
    COPY_GRID(live.count, layer->live.count, heads, side, new_side);
    COPY_GRID(live.gate_mass, layer->live.gate_mass, heads, side, new_side);
    COPY_GRID(live.activation, layer->live.activation, heads, side, new_side);
    live.weight = layer->live.weight;
    live.tokens = layer->live.tokens;
    live.steps = layer->live.steps;
    expert_stats_free(&layer->since_start);
    expert_decayed_stats_free(&layer->live);
    layer->since_start = since_start;
    layer->live = live;
    /* The validation text was measured on the smaller grid: it is measured again when asked. */
    expert_stats_free(&layer->validation);
    layer->validation_step = -1;
    layer->side = new_side;
    return true;
}

/* Brings a layer to the model's grid; a layer that shrank or changed its heads starts afresh. */
static bool layer_follow_config(expert_monitor *monitor, expert_monitor_layer *layer,
                                const ffn_config *ffn, peer_error *err)
{
    int side = side_of(ffn->peer.n_experts);
    if (side == layer->side && ffn->peer.heads == layer->heads)
        return true;
    if (side > layer->side && ffn->peer.heads == layer->heads)
        return layer_regrid(layer, side, monitor->history_bytes, err);
    expert_monitor_layer fresh;
    if (!layer_init(&fresh, ffn->peer.n_experts, ffn->peer.heads, monitor->half_life,
                    monitor->history_bytes, err))
        return false;
    layer_free(layer);
    *layer = fresh;
    return true;
}

/* The history's experts are split into this many ranges, counted by separate tasks. */
#define HISTORY_PARTS 4

/* One layer's choices of one step, added by tasks: one per head (since start and live), one per
 * range of experts (history). Every task writes cells no other writes, in token order, so the
 * sums are those of a single thread bit for bit. */
typedef struct {
    expert_monitor_layer *layer;
    const ffn_config *ffn;
    const peer_layer_acts *acts;
    int BT;
    bool saturated[HISTORY_PARTS];
} add_task;

static void add_task_run(void *ctx, int task, int thread)
{
    add_task *t = ctx;
    expert_monitor_layer *layer = t->layer;
    const peer_layer_config *peer = &t->ffn->peer;
    const float *preact = t->ffn->kind == FFN_PKM ? NULL : t->acts->preact;
    if (task < layer->heads) {
        expert_stats_accumulate_head(&layer->since_start, task, t->acts->expert, t->acts->gate,
                                     preact, t->BT, peer->topk, peer->activation);
        expert_decayed_stats_accumulate_head(&layer->live, task, t->acts->expert, t->acts->gate,
                                             preact, t->BT, peer->topk, peer->activation);
        return;
    }
    int part = task - layer->heads;
    int64_t N = layer->history.n_experts;
    t->saturated[part] = expert_history_count(
        &layer->history, t->acts->expert, (size_t)t->BT * peer->heads * peer->topk,
        (int32_t)(N * part / HISTORY_PARTS), (int32_t)(N * (part + 1) / HISTORY_PARTS));
}

bool expert_monitor_add_step(expert_monitor *monitor, const peer_model *model, long step,
                             thread_pool *pool, peer_error *err)
{
    int BT = model->last_B * model->last_T;
    for (int l = 0; l < monitor->n_layers; l++) {
        expert_monitor_layer *layer = &monitor->layers[l];
        const ffn_config *ffn = &model->cfg.layers[l];
        if (!layer->active || !is_expert_layer(ffn))
            continue;
        if (!layer_follow_config(monitor, layer, ffn, err))
            return false;
        expert_decayed_stats_begin_step(&layer->live);
        expert_history_begin_step(&layer->history, step);
        add_task task = { .layer = layer, .ffn = ffn, .acts = &model->acts.peer[l], .BT = BT };
        thread_pool_run(pool, layer->heads + HISTORY_PARTS, add_task_run, &task);
        layer->since_start.tokens += (uint64_t)BT;
        expert_decayed_stats_add_tokens(&layer->live, BT);
        layer->history.total += (uint64_t)BT * ffn->peer.heads * ffn->peer.topk;
        for (int part = 0; part < HISTORY_PARTS; part++)
            layer->history.saturated |= task.saturated[part];
    }
    if (monitor->first_step < 0)
        monitor->first_step = step;
    monitor->last_step = step;
    return true;
}

bool expert_monitor_measure_validation(expert_monitor *monitor, peer_model *model,
                                       const corpus *data, int windows, long step,
                                       thread_pool *pool, peer_error *err)
{
    int B = model->batch, T = model->seq;
    size_t available = corpus_validation_windows(data, T);
    if (available < 1)
        return peer_error_set(err,
                              "the validation text is shorter than one window of %d bytes: "
                              "use a longer text",
                              T + 1);
    if (windows < 1)
        return peer_error_set(err, "%d validation windows asked for: use 1 to %zu", windows,
                              available);
    if ((size_t)windows > available)
        windows = (int)available;

    expert_stats *stats_of[MODEL_MAX_LAYERS] = { 0 };
    for (int l = 0; l < monitor->n_layers; l++) {
        expert_monitor_layer *layer = &monitor->layers[l];
        const ffn_config *ffn = &model->cfg.layers[l];
        if (!layer->active || !is_expert_layer(ffn))
            continue;
        if (!layer_follow_config(monitor, layer, ffn, err))
            return false;
        if (layer->validation.n_experts != ffn->peer.n_experts) {
            expert_stats_free(&layer->validation);
            if (!expert_stats_init(&layer->validation, ffn->peer.n_experts, ffn->peer.heads,
                                   err))
                return false;
        }
        expert_stats_reset(&layer->validation);
        layer->validation_step = -1;
        stats_of[l] = &layer->validation;
    }
    uint8_t *tokens = malloc((size_t)B * T);
    uint8_t *targets = malloc((size_t)B * T);
    if (!tokens || !targets) {
        free(tokens);
        free(targets);
        return peer_error_set(err, "out of memory for %d validation windows of %d bytes", B, T);
    }
    for (int w = 0; w < windows; w += B) {
        int count = windows - w < B ? windows - w : B;
        for (int b = 0; b < count; b++)
            corpus_validation_window(data, (size_t)(w + b), T, tokens + (size_t)b * T,
                                     targets + (size_t)b * T);
        peer_model_forward(model, tokens, targets, count, T, PEER_MODE_EVAL, pool);
        peer_model_accumulate_stats(model, stats_of);
    }
    free(tokens);
    free(targets);
    for (int l = 0; l < monitor->n_layers; l++)
        if (stats_of[l])
            monitor->layers[l].validation_step = step;
    return true;
}

static const expert_monitor_layer *find_layer(const expert_monitor *monitor, int layer,
                                              peer_error *err)
{
    if (layer < 0 || layer >= monitor->n_layers || !monitor->layers[layer].active) {
        peer_error_set(err, "layer %d has no experts: choose a PEER or PKM layer", layer);
        return NULL;
    }
    return &monitor->layers[layer];
}

bool expert_monitor_grid(const expert_monitor *monitor, int layer, expert_window window,
                         int head, float *count, float *gate_mass, float *mean_activation,
                         expert_usage *usage, double *tokens, peer_error *err)
{
    const expert_monitor_layer *found = find_layer(monitor, layer, err);
    if (!found)
        return false;
    if (head < -1 || head >= found->heads)
        return peer_error_set(err, "head %d of layer %d: use -1 (all) or 0 to %d", head, layer,
                              found->heads - 1);
    if (window == EXPERT_WINDOW_LIVE) {
        expert_decayed_stats_metrics(&found->live, head, count, gate_mass, mean_activation);
        if (usage)
            expert_decayed_stats_usage_heads(&found->live, false, usage);
        if (tokens)
            *tokens = expert_decayed_stats_tokens(&found->live);
        return true;
    }
    const expert_stats *stats = &found->since_start;
    if (window == EXPERT_WINDOW_VALIDATION) {
        if (found->validation_step < 0)
            return peer_error_set(err, "layer %d: the validation text has not been measured "
                                       "yet",
                                  layer);
        stats = &found->validation;
    }
    expert_stats_metrics(stats, head, count, gate_mass, mean_activation);
    if (usage)
        expert_stats_usage_heads(stats, false, usage);
    if (tokens)
        *tokens = (double)stats->tokens;
    return true;
}

int expert_monitor_history(const expert_monitor *monitor, int layer, int32_t expert,
                           long *first_step, long *end_step, uint32_t *count)
{
    const expert_monitor_layer *found = find_layer(monitor, layer, NULL);
    if (!found || expert < 0 || expert >= found->history.n_experts)
        return -1;
    return expert_history_series(&found->history, expert, first_step, end_step, count);
}

const char *expert_window_name(expert_window window)
{
    switch (window) {
    case EXPERT_WINDOW_LIVE:
        return "live";
    case EXPERT_WINDOW_SINCE_START:
        return "since start";
    case EXPERT_WINDOW_VALIDATION:
        return "validation";
    }
    return "unknown";
}
