/* One run in the workbench window: what the sidebar lists, the plot overlays and the pages show.
 *
 * A run wraps a session (session.h), which may not exist yet (the model is still being built on
 * another thread) or at all (a peer-train log replayed without its model). It keeps every loss
 * and evaluation point the run has, replayed ones first, and the latest progress, sample and
 * message, and tells the window of each change with ::changed and ::snapshot. Main thread only. */
#pragma once

#include <gio/gio.h>

#include "model-config.h"
#include "session.h"
#include "trainer.h"

G_BEGIN_DECLS

typedef enum {
  PEER_RUN_PREPARING, /* the model is being built */
  PEER_RUN_READY,
  PEER_RUN_RUNNING,
  PEER_RUN_PAUSED,
  PEER_RUN_FINISHED,
  PEER_RUN_STOPPED,
  PEER_RUN_FAILED,    /* the message says why; the weights are the last good ones */
  PEER_RUN_LOG_ONLY,  /* a replayed log without a model to train */
} PeerRunState;

/* "Ready", "Training", ... for labels. */
const char *peer_run_state_to_label (PeerRunState state);

#define PEER_TYPE_RUN (peer_run_get_type ())
G_DECLARE_FINAL_TYPE (PeerRun, peer_run, PEER, RUN, GObject)

/* A run named name, preparing until a session is attached or it fails. */
PeerRun *peer_run_new (const char *name);

/* The run's model and settings, for its description and the pages. */
void peer_run_set_config (PeerRun *self, const model_config *cfg, const train_settings *settings);
/* Points from an earlier run (a replayed log), shown before the live ones. Takes neither array. */
void peer_run_set_history (PeerRun *self, GArray *loss_points, GArray *eval_points);
/* The session that trains the run from now on; the run takes a reference. */
void peer_run_attach_session (PeerRun *self, PeerSession *session);
/* Building the model failed (or the run has no model): the state becomes FAILED, or LOG_ONLY
 * when message is NULL. */
void peer_run_fail (PeerRun *self, const char *message);

guint peer_run_get_id (PeerRun *self);
const char *peer_run_get_name (PeerRun *self);
PeerRunState peer_run_get_state (PeerRun *self);
/* Whether start, step and stop mean anything now. */
gboolean peer_run_can_train (PeerRun *self);
PeerSession *peer_run_get_session (PeerRun *self);
/* NULL until set. */
const model_config *peer_run_get_config (PeerRun *self);
const train_settings *peer_run_get_settings (PeerRun *self);
/* "PEER 128² · 4 blocks · d_model 128" */
const char *peer_run_get_description (PeerRun *self);

/* Every point so far: PeerLossPoint and PeerEvalPoint. */
GArray *peer_run_get_loss_points (PeerRun *self);
GArray *peer_run_get_eval_points (PeerRun *self);
long peer_run_get_step (PeerRun *self);
long peer_run_get_total_steps (PeerRun *self);
double peer_run_get_tokens_per_second (PeerRun *self);
double peer_run_get_eta_seconds (PeerRun *self);
/* The last training loss, NaN when there is none. */
double peer_run_get_last_loss (PeerRun *self);
/* The last text sample and the step it was taken at, or NULL. */
const char *peer_run_get_sample (PeerRun *self, long *step);
/* The last prompt continuation, with its prompt and step, or NULL. */
const char *peer_run_get_continuation (PeerRun *self, const char **prompt, long *step);
/* Why the run failed, or NULL. */
const char *peer_run_get_failure (PeerRun *self);
gboolean peer_run_has_unsaved_work (PeerRun *self);

/* Shown on the plot. */
gboolean peer_run_get_visible (PeerRun *self);
void peer_run_set_visible (PeerRun *self, gboolean visible);

/* Where the run was opened from or last saved to: the default of the next save; NULL. */
const char *peer_run_get_path (PeerRun *self);
void peer_run_set_path (PeerRun *self, const char *path);

/* Starts the run as soon as its session is attached (the --start option). */
void peer_run_start_when_ready (PeerRun *self);

G_END_DECLS
