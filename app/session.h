/* A run: one model and its trainer, trained on a worker thread of its own.
 *
 * The main thread sends commands (start, pause, step once, stop, evaluate, sample, save) through
 * a queue; the worker carries them out between steps, so a pause or a stop takes effect within
 * one step. The worker answers with snapshots (PeerSnapshot): immutable, built on the worker and
 * handed to the main thread with an idle source on the main context, where the session appends them to its
 * history and emits ::snapshot. Nothing here touches a widget. */
#pragma once

#include <gio/gio.h>

#include "corpus.h"
#include "expert-monitor.h"
#include "model-config.h"
#include "model.h"
#include "thread-pool.h"
#include "trainer.h"

G_BEGIN_DECLS

typedef enum {
    PEER_SESSION_READY,    /* built, not yet started */
    PEER_SESSION_RUNNING,
    PEER_SESSION_PAUSED,
    PEER_SESSION_FINISHED, /* reached its step count */
    PEER_SESSION_STOPPED,  /* stopped by the user */
    PEER_SESSION_FAILED,   /* a NaN or another error; the weights are the last good ones */
} PeerSessionState;

const char *peer_session_state_to_string (PeerSessionState state);

#define PEER_SESSION_ERROR (peer_session_error_quark ())
GQuark peer_session_error_quark (void);

/* One logged training step. */
typedef struct {
    long step;
    double loss;
    double tokens;
    double flops;
    double lr;
    double grad_norm;
    double seconds;    /* since the run started */
} PeerLossPoint;

/* One evaluation on the validation text. */
typedef struct {
    long step;
    double tokens;
    double flops;
    double loss;
    double bits_per_byte;
    double usage[MODEL_MAX_LAYERS];      /* PEER and PKM layers, else 0 */
    double unevenness[MODEL_MAX_LAYERS];
} PeerEvalPoint;

/* What the worker reports: everything since the snapshot before it. Immutable once delivered. */
typedef struct {
    gatomicrefcount ref_count;
    PeerSessionState state;
    long step;
    long total_steps;
    double tokens_per_second;
    double eta_seconds;          /* < 0 when unknown */
    GArray *loss_points;         /* PeerLossPoint, new since the last snapshot */
    GArray *eval_points;         /* PeerEvalPoint, new since the last snapshot */
    char *sample;                /* a text sample from the model, or NULL */
    char *message;               /* an error or a notice ("saved to …"), or NULL */
    gboolean saved;              /* a save finished with this snapshot */
    char *prompt;                /* with continuation: the answer to peer_session_sample () */
    char *continuation;
} PeerSnapshot;

PeerSnapshot *peer_snapshot_ref (PeerSnapshot *snapshot);
void peer_snapshot_unref (PeerSnapshot *snapshot);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (PeerSnapshot, peer_snapshot_unref)

#define PEER_TYPE_SESSION (peer_session_get_type ())
G_DECLARE_FINAL_TYPE (PeerSession, peer_session, PEER, SESSION, GObject)

/* A new run of cfg and settings on text (the whole corpus; it is split as corpus.h says). */
PeerSession *peer_session_new (const char *name, const model_config *cfg,
                               const train_settings *settings, GBytes *text, int threads,
                               GError **error);
/* A run continued from a checkpoint (and its trainer file, when it exists beside it). */
PeerSession *peer_session_new_from_checkpoint (const char *path, GBytes *text, int threads,
                                               GError **error);

const char *peer_session_get_name (PeerSession *self);
PeerSessionState peer_session_get_state (PeerSession *self);
/* Steps trained so far, as of the last snapshot (a resumed checkpoint starts at its step). */
long peer_session_get_step (PeerSession *self);
const model_config *peer_session_get_config (PeerSession *self);
const train_settings *peer_session_get_settings (PeerSession *self);
/* The whole history so far (main thread): every loss and evaluation point delivered. */
GArray *peer_session_get_loss_points (PeerSession *self);
GArray *peer_session_get_eval_points (PeerSession *self);
/* The last sample text, or NULL. */
const char *peer_session_get_sample (PeerSession *self);
/* Whether there are steps since the last save. */
gboolean peer_session_has_unsaved_work (PeerSession *self);

void peer_session_start (PeerSession *self);   /* also resumes */
void peer_session_pause (PeerSession *self);
void peer_session_step_once (PeerSession *self);
void peer_session_stop (PeerSession *self);
void peer_session_evaluate (PeerSession *self);
/* Saves model and trainer files between steps; the snapshot that follows says how it went. */
void peer_session_save (PeerSession *self, const char *path);
/* Continues prompt by length bytes at temperature (> 0), between steps; the snapshot that
 * follows carries prompt and continuation, or a message saying why there is none. */
void peer_session_sample (PeerSession *self, const char *prompt, int length, double temperature);

/* What an inspection sees, on the worker thread between two steps: the run's model with its
 * latest weights (a forward may use its activations, but the weights, gradients and running
 * statistics must be left as they are), the trainer, the corpus (its validation part for
 * contexts and losses) and the run's thread pool. */
typedef struct {
    peer_model *model;
    const trainer *tr;
    const corpus *data;
    thread_pool *pool;
    long step;
    /* The expert statistics of every training step so far (live, since start, validation) and
     * each expert's usage over training; the session adds every step to them. */
    expert_monitor *experts;
} PeerInspectContext;

/* Runs on the worker: returns a result (which result_free frees), or NULL with error set. */
typedef gpointer (*PeerInspectFunc) (const PeerInspectContext *context, gpointer data,
                                     GError **error);
/* Main thread: the result (transfer full; NULL on error) or the error (owned by the session). */
typedef void (*PeerInspectCallback) (PeerSession *session, gpointer result, const GError *error,
                                     gpointer user_data);

/* Asks the worker to run func on the model between steps (training goes on afterwards), and
 * calls callback on the main thread with its result. Commands run in order. Once cancellable is
 * cancelled, func is skipped if it has not started and callback is never called; data is freed
 * with data_free either way, and a result nobody takes with result_free. */
void peer_session_inspect (PeerSession *self, PeerInspectFunc func, gpointer data,
                           GDestroyNotify data_free, GDestroyNotify result_free,
                           GCancellable *cancellable, PeerInspectCallback callback,
                           gpointer user_data);

/* Blocks until the worker has finished what it is doing and exited; used on shutdown. */
void peer_session_shutdown (PeerSession *self);

G_END_DECLS
