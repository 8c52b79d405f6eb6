/* A peer-train run folder read back: its run file (config.json), its log (log.jsonl, as
 * run-log.h writes it) as loss and evaluation points, and its checkpoint (model.safetensors),
 * so the workbench can replay the curves of a run made on the command line and, when the
 * checkpoint is there, continue it. */
#pragma once

#include <gio/gio.h>

#include "model-config.h"
#include "trainer.h"

G_BEGIN_DECLS

typedef struct {
  char *dir;
  char *log_path;
  char *checkpoint_path;   /* NULL when the folder has no model.safetensors */
  gboolean has_config;
  model_config cfg;
  train_settings settings;
  GArray *loss_points;     /* PeerLossPoint */
  GArray *eval_points;     /* PeerEvalPoint; tokens and FLOPs from the step lines around it */
} PeerRunHistory;

/* Whether path is a run folder (holds log.jsonl) or a run's log.jsonl itself. */
gboolean peer_run_history_is_run (const char *path);

/* Reads the folder at path, or the folder of the log.jsonl at path. A line that does not parse
 * is an error naming the file and the line; a missing config.json only leaves has_config false. */
PeerRunHistory *peer_run_history_load (const char *path, GError **error);
void peer_run_history_free (PeerRunHistory *history);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (PeerRunHistory, peer_run_history_free)

G_END_DECLS
