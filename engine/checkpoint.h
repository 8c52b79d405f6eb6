/* Checkpoints as the contract has them: the model in one safetensors file (the contract's tensor
 * names, metadata format "peer-workbench", format_version "1" and the config JSON), and the
 * optimiser state with the trainer's position in a second file beside it, so that a resumed run
 * continues exactly as if it had never stopped. Saves are atomic; loads refuse anything that
 * disagrees with the contract, naming the tensor and the problem. */
#pragma once

#include <stdbool.h>

#include "model.h"
#include "peer-error.h"
#include "trainer.h"

#define CHECKPOINT_FORMAT "peer-workbench"
#define CHECKPOINT_FORMAT_VERSION "1"
#define CHECKPOINT_TRAINER_FORMAT "peer-workbench-trainer"

bool checkpoint_save_model(const peer_model *model, const char *path, peer_error *err);

/* The config a model file declares, checked against the contract. */
bool checkpoint_read_config(const char *path, model_config *cfg, peer_error *err);

/* A model from a model file, with activations for B × T tokens (T <= its context; T = 0 takes
 * the context). */
peer_model *checkpoint_load_model(const char *path, int B, int T, peer_error *err);

/* The trainer file's usual name beside a model file: "run.safetensors" → "run.trainer.safetensors". */
char *checkpoint_trainer_path(const char *model_path);

bool checkpoint_save_trainer(const trainer *tr, const char *path, peer_error *err);

/* A trainer that continues the run saved in model_path and trainer_path on data. When
 * steps_override is not NULL it replaces the saved run length (to train further). */
bool checkpoint_resume(trainer *tr, const char *model_path, const char *trainer_path,
                       const corpus *data, const long *steps_override, peer_error *err);
