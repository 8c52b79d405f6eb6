/* An experiment suite trained on a worker thread of its own, for the Experiments page.
 *
 * The worker opens (or creates) the experiment folder and runs experiment_run (); its events
 * become immutable updates (PeerExperimentUpdate), handed to the main thread through an outbox
 * under the session's lock and delivered by an idle source on the main context, where the
 * session emits ::update. A stop takes effect before the next step and leaves a checkpoint, so
 * the same folder continues later. Nothing here touches a widget. */
#pragma once

#include <gio/gio.h>

#include "experiment-results.h"
#include "experiment.h"

G_BEGIN_DECLS

typedef enum {
  PEER_EXPERIMENT_OPENING,  /* reading the folder and the text */
  PEER_EXPERIMENT_RUNNING,
  PEER_EXPERIMENT_STOPPED,  /* by the user; the folder continues where it stopped */
  PEER_EXPERIMENT_FINISHED, /* every variant has a result */
  PEER_EXPERIMENT_FAILED,   /* message says why */
} PeerExperimentState;

/* What the worker reports: the whole state of the suite at one moment. Immutable. */
typedef struct {
  gatomicrefcount ref_count;
  PeerExperimentState state;
  const experiment *ex;        /* NULL until opened; owned by the session */
  experiment_result *results;  /* (ex->n_variants), a copy */
  int current;                 /* the variant training, or -1 */
  double train_loss;           /* of the current variant's last step */
  double tokens_per_second;
  double suite_flops_done, suite_flops_total;
  double eta_seconds;          /* < 0 when unknown */
  char *message;               /* an error, or NULL */
} PeerExperimentUpdate;

PeerExperimentUpdate *peer_experiment_update_ref (PeerExperimentUpdate *update);
void peer_experiment_update_unref (PeerExperimentUpdate *update);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (PeerExperimentUpdate, peer_experiment_update_unref)

#define PEER_TYPE_EXPERIMENT_SESSION (peer_experiment_session_get_type ())
G_DECLARE_FINAL_TYPE (PeerExperimentSession, peer_experiment_session, PEER, EXPERIMENT_SESSION,
                      GObject)

/* Starts at once: the experiment in dir, or a new one of suite_name (NULL: dir's, else quick)
 * at budget (0: the suite's), on the built-in text, with threads workers. */
PeerExperimentSession *peer_experiment_session_new (const char *dir, const char *suite_name,
                                                    double budget, int threads);

const char *peer_experiment_session_get_dir (PeerExperimentSession *self);
/* The last update delivered, or NULL before the first (main thread). */
PeerExperimentUpdate *peer_experiment_session_get_update (PeerExperimentSession *self);

/* Asks the worker to stop before its next step, saving where it is. */
void peer_experiment_session_stop (PeerExperimentSession *self);
/* Stops and waits for the worker to exit. The owner calls it before dropping its reference:
 * the worker holds none of its own. */
void peer_experiment_session_shutdown (PeerExperimentSession *self);

G_END_DECLS
