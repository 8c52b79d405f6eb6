/* Training a model on a corpus: batches, the learning-rate schedule (linear warm-up, then cosine
 * decay to a floor), gradient clipping, AdamW with sparse Adam for the expert tables, FLOP and
 * throughput accounting, and evaluation on the validation part. With one thread and a fixed
 * seed a run is reproducible bit for bit, also across a save and a resume. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "corpus.h"
#include "expert-stats.h"
#include "model.h"
#include "optimizer.h"
#include "thread-pool.h"

typedef struct {
    int batch_size;       /* B sequences per step */
    int seq_len;          /* T bytes per sequence, <= context */
    long steps;           /* length of the run, for the schedule */
    float lr;             /* peak learning rate of the dense parameters */
    float min_lr;         /* floor of the cosine decay */
    long warmup;          /* steps of linear warm-up */
    float expert_lr;      /* sparse Adam, constant */
    float grad_clip;      /* maximum global gradient norm; 0 turns clipping off */
    adamw_settings adam;
    float moe_aux_weight; /* coefficient of the MoE load-balancing loss */
    uint64_t seed;        /* initial weights and batch order */
    long eval_interval;   /* steps between evaluations; 0 for none */
    int eval_windows;     /* validation windows per evaluation */
} train_settings;

/* The defaults: B 16, T = context, 2000 steps, lr 3e-3 to 3e-4, warm-up 100, expert lr 1e-3,
 * clip 1.0, AdamW (0.9, 0.95, 1e-8, decay 0.1), aux 0.01, seed 1337, evaluation every 200 steps
 * on 16 windows. */
void train_settings_default(train_settings *settings, const model_config *cfg);
/* Checks every field against the model; names the field, value and valid range. */
bool train_settings_validate(const train_settings *settings, const model_config *cfg,
                             peer_error *err);

typedef struct {
    double loss;          /* mean cross-entropy, nats */
    double bits_per_byte; /* loss / ln 2 */
    double perplexity;    /* e^loss */
    long tokens;
    /* per layer, PEER and PKM blocks only (others 0) */
    expert_usage usage[MODEL_MAX_LAYERS];
} eval_result;

typedef struct {
    train_settings settings;
    peer_model *model;
    optimizer_state opt;
    const corpus *data;    /* borrowed */
    peer_rng data_rng;     /* batch order */
    long step;             /* steps done */
    double tokens;         /* tokens trained on */
    double flops;          /* training FLOPs spent, 3 × forward */
    uint8_t *batch_tokens; /* (B, T) */
    uint8_t *batch_targets;
    double last_loss;      /* cross-entropy of the last step */
    double last_grad_norm; /* before clipping */
    float last_lr;
    float *saved_buffers;  /* running statistics before the step, restored if it fails */
    size_t n_buffer_floats;
} trainer;

/* Builds the model (weights from settings->seed) and optimiser. data must outlive the trainer. */
bool trainer_init(trainer *tr, const model_config *cfg, const train_settings *settings,
                  const corpus *data, peer_error *err);
void trainer_free(trainer *tr);

/* The dense learning rate at a step. */
float trainer_lr_at(const train_settings *settings, long step);

/* One optimiser step. A loss or gradient that is not finite leaves every weight as it was and
 * fails with a message saying so (the caller keeps the last good weights). */
bool trainer_step(trainer *tr, thread_pool *pool, peer_error *err);

/* Validation loss on the first `windows` windows of the validation part (evaluation mode:
 * batch-norm uses its running statistics), with the usage of every PEER and PKM layer. */
bool trainer_evaluate(trainer *tr, int windows, eval_result *out, thread_pool *pool,
                      peer_error *err);

/* Reads a JSON object of training settings (keys as the fields above, adam's as "beta1",
 * "beta2", "eps", "weight_decay"); keys it leaves out keep their values in s. Strict: unknown
 * keys and wrong types are errors that name the key. Validates the result. */
bool train_settings_from_json(train_settings *s, const model_config *cfg, const char *json,
                              peer_error *err);
/* Every setting as one compact JSON object; malloc'd, NULL when out of memory. */
char *train_settings_to_json(const train_settings *s);

/* A run file: {"model": <the contract's config>, "training": <settings>}; "training" may be left
 * out for the defaults. */
bool run_config_from_json(model_config *cfg, train_settings *s, const char *json, peer_error *err);
