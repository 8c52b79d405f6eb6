/* AdamW for the dense parameters and a sparse Adam for the expert and memory tables, which
 * updates only the rows touched this step (its moments for other rows, and those rows, stay as
 * they were), with its own constant learning rate, as the PKM authors' code does. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "peer-error.h"
#include "thread-pool.h"

typedef struct {
    float beta1;        /* 0.9 */
    float beta2;        /* 0.95 */
    float eps;          /* 1e-8 */
    float weight_decay; /* 0.1, decoupled; not on biases, norms, positions or expert tables */
} adamw_settings;

/* A PEER or PKM layer's first side × side experts (a, b < side: their u and v rows) and its
 * sub-keys below side in every key group and half, held as they are: after the layer's grid has
 * grown, the experts it had before. */
typedef struct {
    int layer;
    int side;
    int keys_tensor; /* index of the layer's keys in model->tensors */
} optimizer_frozen_grid;

typedef struct {
    long step;                 /* updates done */
    size_t n_dense;            /* = model->n_grads */
    float *m, *v;              /* (n_dense) moments of the dense gradient arena */
    /* Per expert table (tensor index in model->tensors), moments of all N rows, allocated zeroed
     * so that the pages of rows never touched never become resident. */
    int n_tables;
    int table_tensor[2 * MODEL_MAX_LAYERS];
    float *table_m[2 * MODEL_MAX_LAYERS];
    float *table_v[2 * MODEL_MAX_LAYERS];
    int n_frozen;
    optimizer_frozen_grid frozen[MODEL_MAX_LAYERS];
} optimizer_state;

bool optimizer_init(optimizer_state *opt, const peer_model *model, peer_error *err);
void optimizer_free(optimizer_state *opt);

/* Holds a layer's first side × side experts and its sub-keys below side (side <= n, the grid's
 * side): optimizer_step leaves them and their moments as they are from now on. side 0 releases
 * the layer. Fails, naming the value, for a layer without an expert grid or a side beyond n. */
bool optimizer_freeze_experts(optimizer_state *opt, const peer_model *model, int layer, int side,
                              peer_error *err);
/* The side held in a layer, 0 when none. */
int optimizer_frozen_side(const optimizer_state *opt, int layer);
/* Zeroes the gradients of the held rows, so that clipping measures only what is trained. */
void optimizer_drop_frozen_grads(const optimizer_state *opt, peer_model *model);

/* √(Σ g²) over the dense gradients and the touched rows of the sparse ones. */
double optimizer_grad_norm(const peer_model *model);

/* One step: dense parameters with AdamW at lr, expert tables with sparse Adam at expert_lr; all
 * gradients first multiplied by grad_scale (gradient clipping). */
void optimizer_step(optimizer_state *opt, peer_model *model, const adamw_settings *settings,
                    float lr, float expert_lr, float grad_scale, thread_pool *pool);
