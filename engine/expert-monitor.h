/* The expert statistics of every PEER and PKM layer of a model while it trains, over three
 * windows, and each expert's usage over training:
 *
 *   live         the training steps, each weighing less the older it is (expert-decay.h);
 *   since start  every training step added since the monitor began;
 *   validation   one pass over the validation windows in evaluation mode, measured on demand.
 *
 * The history (expert-history.h) keeps per-expert selections over training in bounded memory.
 * A layer whose grid grows in the middle of training (model-grow.h) keeps all of it: expert
 * (a, b) stays at (a, b) in the larger grid. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "corpus.h"
#include "expert-decay.h"
#include "expert-history.h"
#include "expert-stats.h"
#include "model.h"
#include "thread-pool.h"

typedef enum {
    EXPERT_WINDOW_LIVE,
    EXPERT_WINDOW_SINCE_START,
    EXPERT_WINDOW_VALIDATION,
} expert_window;

/* The live window's default half-life, in steps. */
#define EXPERT_MONITOR_HALF_LIFE 50.0
/* The usage history's default budget per layer: 32 intervals of a 1024² grid. */
#define EXPERT_MONITOR_HISTORY_BYTES ((size_t)64 << 20)

typedef struct {
    bool active;                 /* a PEER or PKM layer */
    int side;                    /* n: the grid is n × n */
    int heads;
    expert_stats since_start;
    expert_decayed_stats live;
    expert_history history;
    expert_stats validation;     /* allocated at the first measurement */
    long validation_step;        /* the step it was measured at; -1 before */
} expert_monitor_layer;

typedef struct {
    int n_layers;
    double half_life;
    size_t history_bytes;
    long first_step;             /* the first step added; -1 before */
    long last_step;
    expert_monitor_layer layers[MODEL_MAX_LAYERS];
} expert_monitor;

bool expert_monitor_init(expert_monitor *monitor, const model_config *cfg, double half_life,
                         size_t history_bytes, peer_error *err);
void expert_monitor_free(expert_monitor *monitor);

/* After a training step: adds the choices of the model's last forward, at step (the trainer's
 * step count after it), on pool's threads (NULL: this one; the sums are the same either way).
 * Fails only when a grown layer's statistics find no memory; they are then left as they were. */
bool expert_monitor_add_step(expert_monitor *monitor, const peer_model *model, long step,
                             thread_pool *pool, peer_error *err);

/* Measures the validation window of every layer: the first `windows` validation windows of data
 * (as trainer_evaluate reads them), run through the model in evaluation mode at step. The
 * weights, gradients and running statistics are left as they are; the activations are not. */
bool expert_monitor_measure_validation(expert_monitor *monitor, peer_model *model,
                                       const corpus *data, int windows, long step,
                                       thread_pool *pool, peer_error *err);

/* The grid of one layer, window and head (-1: all heads) as a heat map needs it: selections,
 * gate mass and mean activation of every expert (each N = n², row-major over (a, b); decayed
 * for live; any may be NULL), the usage of all heads together in usage[0] and of head j in
 * usage[1 + j] (heads + 1 entries; may be NULL), and the tokens in the window. Fails for a layer
 * without experts, a head out of range or a validation window not measured yet. */
bool expert_monitor_grid(const expert_monitor *monitor, int layer, expert_window window,
                         int head, float *count, float *gate_mass, float *mean_activation,
                         expert_usage *usage, double *tokens, peer_error *err);

/* One expert's selections over training (summed over heads), as expert_history_series; the
 * number of intervals, or -1 for a layer without experts or an expert out of range. */
int expert_monitor_history(const expert_monitor *monitor, int layer, int32_t expert,
                           long *first_step, long *end_step, uint32_t *count);

const char *expert_window_name(expert_window window); /* "live", "since start", "validation" */
