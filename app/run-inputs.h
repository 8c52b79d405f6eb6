/* Where a training run's config and text come from: a file the user names, or the defaults built
 * into the programs (the run files of resources/runs/ as presets, and the Jane Austen corpus). */
#pragma once

#include <gio/gio.h>
#include <stdbool.h>

#include "model-config.h"
#include "peer-error.h"
#include "trainer.h"

#define RUN_INPUTS_DEFAULT_PRESET "peer-small"
#define RUN_INPUTS_DEFAULT_TEXT_NAME "the built-in Jane Austen corpus"

/* Whether a preset of that name is built in. */
bool run_inputs_has_preset(const char *name);
/* The built-in presets' names, comma-separated, for messages. g_free it. */
char *run_inputs_list_presets(void);

/* A run file ({"model": ..., "training": ...}) from path, or, when path is NULL, the built-in
 * preset (NULL: the default one). The message of a failure names the file. */
bool run_inputs_load_config(const char *path, const char *preset, model_config *cfg,
                            train_settings *settings, peer_error *err);

/* The training text: the file at path, or the built-in corpus when path is NULL. *name is what
 * messages call it (g_free it). */
bool run_inputs_load_text(const char *path, GBytes **text, char **name, peer_error *err);
