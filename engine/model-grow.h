/* Growing the expert pool of PEER and PKM layers in the middle of training (lifelong learning):
 * a layer's n × n grid of product keys becomes n' × n' (n' >= n), so it gains rows and columns.
 *
 * Expert (a, b) has id a·n + b; in the grown grid it is a·n' + b, and keeps its u and v rows bit
 * for bit there. Sub-keys 0..n-1 of every key group and half stay where they are, so an old
 * expert keeps its score; sub-keys n..n'-1 and the u and v of the n'² - n² new experts are drawn
 * as at initialisation (peer_layer_params_init's distributions). Every other tensor, the running
 * statistics included, is copied bit for bit. The Adam moments move with their rows; new rows
 * start at zero, like rows never updated. A token whose retrieval picks only old experts gets
 * exactly the old layer's output.
 *
 * The grown model is an ordinary model whose config has the larger n_experts: checkpoints save
 * and load it as any other. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "model.h"
#include "optimizer.h"
#include "trainer.h"

typedef struct {
    int side[MODEL_MAX_LAYERS]; /* n' per layer; 0 leaves the layer as it is */
} model_growth;

/* The id in the grown n'-side grid of expert `expert` of the n-side grid. */
static inline int32_t model_growth_expert_id(int32_t expert, int n, int grown_n)
{
    return expert / n * grown_n + expert % n;
}

/* Checks a growth against a config and writes the grown config: only PEER and PKM layers grow,
 * to n' >= n sub-keys per side and at most the engine's largest grid. The message names the
 * layer, the value and the valid range. */
bool model_growth_config(const model_config *cfg, const model_growth *growth, model_config *grown,
                         peer_error *err);

/* A new model with model's weights and the grown layers' new sub-keys and experts drawn from
 * seed, with activations for the same B × T tokens. model is left as it was. */
peer_model *peer_model_grow(const peer_model *model, const model_growth *growth, uint64_t seed,
                            peer_error *err);

/* The optimiser state of grown (made from model by peer_model_grow): opt's step, moments moved
 * with their rows and zero for new rows, and its held experts, which keep their (a, b). */
bool optimizer_grow(optimizer_state *grown_opt, const optimizer_state *opt,
                    const peer_model *model, const peer_model *grown, peer_error *err);

/* Grows the trainer's model and optimiser in place; its step, schedule and batch order go on.
 * The new weights are drawn from the run's seed and step. With freeze_old, the experts and
 * sub-keys each grown layer had before are held from now on (optimizer_freeze_experts); the hold
 * lives in the optimiser in memory, not in its checkpoint, so a resumed run trains them all. On
 * failure the trainer is left as it was. */
bool trainer_grow(trainer *tr, const model_growth *growth, bool freeze_old, peer_error *err);
