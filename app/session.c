#include "session.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "checkpoint.h"
#include "sampler.h"

#define SNAPSHOT_INTERVAL_US (100 * 1000)
#define SAMPLE_LENGTH 240
#define SAMPLE_PROMPT "\n"

typedef enum {
    COMMAND_STEP_ONCE,
    COMMAND_EVALUATE,
    COMMAND_SAVE,
    COMMAND_SAMPLE,
    COMMAND_INSPECT,
} CommandKind;

/* An inspection travels main → worker as a command and back through the inspection outbox. */
typedef struct {
    PeerInspectFunc func;
    gpointer data;
    GDestroyNotify data_free;
    GDestroyNotify result_free;
    GCancellable *cancellable;
    PeerInspectCallback callback;
    gpointer user_data;
    gpointer result;
    GError *error;
} Inspection;

typedef struct {
    CommandKind kind;
    char *path;         /* save: the model file; sample: the prompt */
    int length;         /* sample: bytes to generate */
    double temperature; /* sample */
    Inspection *inspection;
} Command;

struct _PeerSession {
    GObject parent_instance;

    char *name;
    GMainContext *context; /* where snapshots are delivered */

    /* Owned by the worker once it runs. */
    corpus data;
    trainer tr;
    thread_pool *pool;
    GArray *pending_loss;
    GArray *pending_eval;
    char *pending_sample;
    char *pending_prompt;       /* the answer to a sample command */
    char *pending_continuation;
    gint64 last_snapshot_us;
    gint64 started_us;
    double seconds_before;   /* training time of earlier runs (a resumed checkpoint) */
    double recent_step_seconds;
    PeerSessionState worker_state;
    peer_rng sample_rng;
    expert_monitor experts;
    gboolean experts_stopped;  /* out of memory for them once: not tried again */

    /* Shared with the worker, under lock: POSIX primitives, which the thread sanitizer
     * understands (GLib's own futex-based GMutex is invisible to it). */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    GQueue commands;
    GQueue outbox;            /* PeerSnapshot, posted by the worker, taken by the main thread */
    GQueue inspected;         /* Inspection, done by the worker, answered on the main thread */
    gboolean delivery_pending; /* an idle source will take the outbox */
    gboolean want_running;
    gboolean want_stop;
    gboolean quit;
    GThread *worker;

    /* Main thread only. */
    PeerSessionState state;
    GArray *loss_history;
    GArray *eval_history;
    char *sample;
    long step;
    long saved_step;
};

G_DEFINE_TYPE (PeerSession, peer_session, G_TYPE_OBJECT)

enum { PROP_0, PROP_STATE, N_PROPS };
static GParamSpec *properties[N_PROPS];

enum { SIGNAL_SNAPSHOT, N_SIGNALS };
static guint signals[N_SIGNALS];

G_DEFINE_QUARK (peer-session-error-quark, peer_session_error)

const char *
peer_session_state_to_string (PeerSessionState state)
{
  switch (state)
    {
    case PEER_SESSION_READY: return "ready";
    case PEER_SESSION_RUNNING: return "running";
    case PEER_SESSION_PAUSED: return "paused";
    case PEER_SESSION_FINISHED: return "finished";
    case PEER_SESSION_STOPPED: return "stopped";
    case PEER_SESSION_FAILED: return "failed";
    }
  return "unknown";
}

/* ---- snapshots ------------------------------------------------------------------------------- */

PeerSnapshot *
peer_snapshot_ref (PeerSnapshot *snapshot)
{
  g_atomic_ref_count_inc (&snapshot->ref_count);
  return snapshot;
}

void
peer_snapshot_unref (PeerSnapshot *snapshot)
{
  if (!g_atomic_ref_count_dec (&snapshot->ref_count))
    return;
  g_array_unref (snapshot->loss_points);
  g_array_unref (snapshot->eval_points);
  g_free (snapshot->sample);
  g_free (snapshot->message);
  g_free (snapshot->prompt);
  g_free (snapshot->continuation);
  g_free (snapshot);
}

/* Main thread: one snapshot joins the history and the UI hears of it. */
static void
apply_snapshot (PeerSession *self, PeerSnapshot *snapshot)
{
  g_array_append_vals (self->loss_history, snapshot->loss_points->data, snapshot->loss_points->len);
  g_array_append_vals (self->eval_history, snapshot->eval_points->data, snapshot->eval_points->len);
  if (snapshot->sample)
    {
      g_free (self->sample);
      self->sample = g_strdup (snapshot->sample);
    }
  self->step = snapshot->step;
  if (snapshot->saved)
    self->saved_step = snapshot->step;
  if (self->state != snapshot->state)
    {
      self->state = snapshot->state;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_STATE]);
    }
  g_signal_emit (self, signals[SIGNAL_SNAPSHOT], 0, snapshot);
}

static void
inspection_free (Inspection *inspection)
{
  if (inspection->data_free)
    inspection->data_free (inspection->data);
  if (inspection->result && inspection->result_free)
    inspection->result_free (inspection->result);
  g_clear_error (&inspection->error);
  g_clear_object (&inspection->cancellable);
  g_free (inspection);
}

static void
command_free (Command *command)
{
  if (command->inspection)
    inspection_free (command->inspection);
  g_free (command->path);
  g_free (command);
}

/* Main thread: takes every snapshot and inspection the worker has posted, in order. */
static gboolean
deliver_snapshots (gpointer data)
{
  PeerSession *self = data;
  GQueue arrived = G_QUEUE_INIT;
  GQueue answered = G_QUEUE_INIT;
  pthread_mutex_lock (&self->lock);
  while (!g_queue_is_empty (&self->outbox))
    g_queue_push_tail (&arrived, g_queue_pop_head (&self->outbox));
  while (!g_queue_is_empty (&self->inspected))
    g_queue_push_tail (&answered, g_queue_pop_head (&self->inspected));
  self->delivery_pending = FALSE;
  pthread_mutex_unlock (&self->lock);

  PeerSnapshot *snapshot;
  while ((snapshot = g_queue_pop_head (&arrived)))
    {
      apply_snapshot (self, snapshot);
      peer_snapshot_unref (snapshot);
    }
  Inspection *inspection;
  while ((inspection = g_queue_pop_head (&answered)))
    {
      if (!g_cancellable_is_cancelled (inspection->cancellable))
        inspection->callback (self, g_steal_pointer (&inspection->result), inspection->error,
                              inspection->user_data);
      inspection_free (inspection);
    }
  return G_SOURCE_REMOVE;
}

/* Worker: tells the main context that there is mail in the outboxes. */
static void
schedule_delivery (PeerSession *self)
{
  GSource *source = g_idle_source_new ();
  g_source_set_priority (source, G_PRIORITY_DEFAULT);
  g_source_set_callback (source, deliver_snapshots, g_object_ref (self), g_object_unref);
  g_source_set_static_name (source, "peer-session snapshots");
  g_source_attach (source, self->context);
  g_source_unref (source);
}

/* Worker: hands everything gathered since the last snapshot to the main thread. */
static void
post_snapshot (PeerSession *self, const char *message, gboolean saved)
{
  PeerSnapshot *snapshot = g_new0 (PeerSnapshot, 1);
  g_atomic_ref_count_init (&snapshot->ref_count);
  snapshot->state = self->worker_state;
  snapshot->step = self->tr.step;
  snapshot->total_steps = self->tr.settings.steps;
  snapshot->loss_points = self->pending_loss;
  snapshot->eval_points = self->pending_eval;
  snapshot->sample = g_steal_pointer (&self->pending_sample);
  snapshot->message = g_strdup (message);
  snapshot->saved = saved;
  snapshot->prompt = g_steal_pointer (&self->pending_prompt);
  snapshot->continuation = g_steal_pointer (&self->pending_continuation);
  double step_seconds = self->recent_step_seconds;
  double tokens_per_step = (double) self->tr.settings.batch_size * self->tr.settings.seq_len;
  snapshot->tokens_per_second = step_seconds > 0 ? tokens_per_step / step_seconds : 0.0;
  long remaining = self->tr.settings.steps - self->tr.step;
  snapshot->eta_seconds = step_seconds > 0 && remaining >= 0 ? remaining * step_seconds : -1.0;

  self->pending_loss = g_array_new (FALSE, FALSE, sizeof (PeerLossPoint));
  self->pending_eval = g_array_new (FALSE, FALSE, sizeof (PeerEvalPoint));
  self->last_snapshot_us = g_get_monotonic_time ();

  /* The snapshot travels through the outbox under the session's own lock, so the thread
   * sanitizer sees it handed over; the idle source on the main context only says that there is
   * mail. (g_main_context_invoke would not do: it calls the function right here on the worker
   * whenever it can acquire the context, which it can between two main-loop iterations.) */
  pthread_mutex_lock (&self->lock);
  g_queue_push_tail (&self->outbox, snapshot);
  gboolean need_source = !self->delivery_pending;
  self->delivery_pending = TRUE;
  pthread_mutex_unlock (&self->lock);
  if (need_source)
    schedule_delivery (self);
}

/* Worker: hands a finished inspection to the main thread, as post_snapshot does a snapshot. */
static void
post_inspection (PeerSession *self, Inspection *inspection)
{
  pthread_mutex_lock (&self->lock);
  g_queue_push_tail (&self->inspected, inspection);
  gboolean need_source = !self->delivery_pending;
  self->delivery_pending = TRUE;
  pthread_mutex_unlock (&self->lock);
  if (need_source)
    schedule_delivery (self);
}

/* ---- the worker ------------------------------------------------------------------------------ */

static double
elapsed_seconds (PeerSession *self)
{
  return self->seconds_before + (g_get_monotonic_time () - self->started_us) / 1e6;
}

static void
worker_evaluate (PeerSession *self)
{
  trainer *tr = &self->tr;
  peer_error err;
  eval_result result;
  int available = (int) corpus_validation_windows (&self->data, tr->settings.seq_len);
  int windows = MIN (tr->settings.eval_windows, available);
  if (windows < 1 || !trainer_evaluate (tr, windows, &result, self->pool, &err))
    return;
  PeerEvalPoint point = { .step = tr->step, .tokens = tr->tokens, .flops = tr->flops,
                          .loss = result.loss, .bits_per_byte = result.bits_per_byte };
  for (int l = 0; l < tr->model->cfg.n_layers; l++)
    {
      point.usage[l] = result.usage[l].usage;
      point.unevenness[l] = result.usage[l].unevenness;
    }
  g_array_append_val (self->pending_eval, point);

  uint8_t text[SAMPLE_LENGTH];
  sampler_settings sampling = { .temperature = 0.8f, .top_k = 0 };
  if (sampler_generate (tr->model, (const uint8_t *) SAMPLE_PROMPT, strlen (SAMPLE_PROMPT), text,
                        sizeof text, &sampling, &self->sample_rng, self->pool, &err))
    {
      g_free (self->pending_sample);
      self->pending_sample = g_utf8_make_valid ((const char *) text, sizeof text);
    }
}

/* One training step; false when the run can go no further. */
static gboolean
worker_step (PeerSession *self)
{
  trainer *tr = &self->tr;
  peer_error err;
  gint64 before = g_get_monotonic_time ();
  if (!trainer_step (tr, self->pool, &err))
    {
      self->worker_state = PEER_SESSION_FAILED;
      post_snapshot (self, err.message, FALSE);
      return FALSE;
    }
  /* The step's own choices, before an evaluation's forwards replace them. */
  if (!self->experts_stopped &&
      !expert_monitor_add_step (&self->experts, tr->model, tr->step, self->pool, &err))
    {
      g_autofree char *message = g_strdup_printf ("Expert statistics stopped: %s", err.message);
      self->experts_stopped = TRUE;
      post_snapshot (self, message, FALSE);
    }
  double seconds = (g_get_monotonic_time () - before) / 1e6;
  self->recent_step_seconds = self->recent_step_seconds > 0
                                  ? 0.9 * self->recent_step_seconds + 0.1 * seconds
                                  : seconds;
  PeerLossPoint point = { .step = tr->step, .loss = tr->last_loss, .tokens = tr->tokens,
                          .flops = tr->flops, .lr = tr->last_lr,
                          .grad_norm = tr->last_grad_norm, .seconds = elapsed_seconds (self) };
  g_array_append_val (self->pending_loss, point);
  if (tr->settings.eval_interval > 0 && tr->step % tr->settings.eval_interval == 0)
    worker_evaluate (self);
  if (tr->step >= tr->settings.steps)
    {
      if (tr->settings.eval_interval <= 0 || tr->step % tr->settings.eval_interval != 0)
        worker_evaluate (self);
      self->worker_state = PEER_SESSION_FINISHED;
      post_snapshot (self, NULL, FALSE);
      return FALSE;
    }
  return TRUE;
}

static void
worker_save (PeerSession *self, const char *path)
{
  peer_error err;
  g_autofree char *trainer_path = checkpoint_trainer_path (path);
  g_autofree char *message = NULL;
  gboolean ok = checkpoint_save_model (self->tr.model, path, &err) &&
                checkpoint_save_trainer (&self->tr, trainer_path, &err);
  if (ok)
    message = g_strdup_printf ("Saved step %ld to %s", self->tr.step, path);
  else
    message = g_strdup_printf ("Could not save: %s", err.message);
  post_snapshot (self, message, ok);
}

static void
worker_sample (PeerSession *self, const char *prompt, int length, double temperature)
{
  peer_error err;
  if (!prompt || !*prompt)
    prompt = SAMPLE_PROMPT;
  g_autofree uint8_t *text = g_malloc (MAX (length, 1));
  sampler_settings sampling = { .temperature = (float) temperature, .top_k = 0 };
  if (!sampler_generate (self->tr.model, (const uint8_t *) prompt, strlen (prompt), text,
                         (size_t) length, &sampling, &self->sample_rng, self->pool, &err))
    {
      g_autofree char *message = g_strdup_printf ("Could not sample: %s", err.message);
      post_snapshot (self, message, FALSE);
      return;
    }
  self->pending_prompt = g_strdup (prompt);
  self->pending_continuation = g_utf8_make_valid ((const char *) text, length);
  post_snapshot (self, NULL, FALSE);
}

static void
worker_inspect (PeerSession *self, Inspection *inspection)
{
  if (g_cancellable_is_cancelled (inspection->cancellable))
    {
      inspection_free (inspection);
      return;
    }
  PeerInspectContext context = { .model = self->tr.model, .tr = &self->tr, .data = &self->data,
                                 .pool = self->pool, .step = self->tr.step,
                                 .experts = &self->experts };
  inspection->result = inspection->func (&context, inspection->data, &inspection->error);
  if (!inspection->result && !inspection->error)
    g_set_error_literal (&inspection->error, PEER_SESSION_ERROR, 1,
                         "The inspection gave no result");
  post_inspection (self, inspection);
}

static gboolean
can_train (PeerSession *self)
{
  return self->worker_state != PEER_SESSION_FINISHED &&
         self->worker_state != PEER_SESSION_FAILED && self->worker_state != PEER_SESSION_STOPPED;
}

/* Worker, under lock: whether there is anything to do, so that it can sleep otherwise. */
static gboolean
has_work (PeerSession *self)
{
  if (self->quit || !g_queue_is_empty (&self->commands) || self->want_stop)
    return TRUE;
  if (self->want_running)
    return can_train (self);
  return self->worker_state == PEER_SESSION_RUNNING; /* a pause to carry out */
}

static void
run_command (PeerSession *self, Command *command)
{
  switch (command->kind)
    {
    case COMMAND_STEP_ONCE:
      if (can_train (self))
        {
          self->worker_state = PEER_SESSION_PAUSED;
          if (worker_step (self))
            post_snapshot (self, NULL, FALSE);
        }
      break;
    case COMMAND_EVALUATE:
      worker_evaluate (self);
      post_snapshot (self, NULL, FALSE);
      break;
    case COMMAND_SAVE:
      worker_save (self, command->path);
      break;
    case COMMAND_SAMPLE:
      worker_sample (self, command->path, command->length, command->temperature);
      break;
    case COMMAND_INSPECT:
      worker_inspect (self, g_steal_pointer (&command->inspection));
      break;
    }
  command_free (command);
}

static gpointer
worker_main (gpointer data)
{
  PeerSession *self = data;
  self->started_us = g_get_monotonic_time ();
  for (;;)
    {
      pthread_mutex_lock (&self->lock);
      while (!has_work (self))
        pthread_cond_wait (&self->wake, &self->lock);
      if (self->quit)
        {
          pthread_mutex_unlock (&self->lock);
          break;
        }
      Command *command = g_queue_pop_head (&self->commands);
      gboolean want_stop = self->want_stop;
      self->want_stop = FALSE;
      if (!can_train (self))
        self->want_running = FALSE;
      gboolean want_running = self->want_running;
      pthread_mutex_unlock (&self->lock);

      if (want_stop && can_train (self))
        {
          self->worker_state = PEER_SESSION_STOPPED;
          post_snapshot (self, NULL, FALSE);
        }
      if (command)
        {
          run_command (self, command);
          continue;
        }
      if (!want_running)
        {
          if (self->worker_state == PEER_SESSION_RUNNING)
            {
              self->worker_state = PEER_SESSION_PAUSED;
              post_snapshot (self, NULL, FALSE);
            }
          continue;
        }
      if (self->worker_state != PEER_SESSION_RUNNING)
        {
          self->worker_state = PEER_SESSION_RUNNING;
          post_snapshot (self, NULL, FALSE);
        }
      if (worker_step (self) &&
          g_get_monotonic_time () - self->last_snapshot_us >= SNAPSHOT_INTERVAL_US)
        post_snapshot (self, NULL, FALSE);
    }
  return NULL;
}

/* ---- commands (main thread) ------------------------------------------------------------------ */

static void
push_command (PeerSession *self, CommandKind kind, const char *path)
{
  Command *command = g_new0 (Command, 1);
  command->kind = kind;
  command->path = g_strdup (path);
  pthread_mutex_lock (&self->lock);
  g_queue_push_tail (&self->commands, command);
  pthread_cond_signal (&self->wake);
  pthread_mutex_unlock (&self->lock);
}

static void
set_running (PeerSession *self, gboolean running)
{
  pthread_mutex_lock (&self->lock);
  self->want_running = running;
  pthread_cond_signal (&self->wake);
  pthread_mutex_unlock (&self->lock);
}

void
peer_session_start (PeerSession *self)
{
  set_running (self, TRUE);
}

void
peer_session_pause (PeerSession *self)
{
  set_running (self, FALSE);
}

void
peer_session_step_once (PeerSession *self)
{
  set_running (self, FALSE);
  push_command (self, COMMAND_STEP_ONCE, NULL);
}

void
peer_session_stop (PeerSession *self)
{
  pthread_mutex_lock (&self->lock);
  self->want_running = FALSE;
  self->want_stop = TRUE;
  pthread_cond_signal (&self->wake);
  pthread_mutex_unlock (&self->lock);
}

void
peer_session_evaluate (PeerSession *self)
{
  push_command (self, COMMAND_EVALUATE, NULL);
}

void
peer_session_save (PeerSession *self, const char *path)
{
  push_command (self, COMMAND_SAVE, path);
}

void
peer_session_sample (PeerSession *self, const char *prompt, int length, double temperature)
{
  Command *command = g_new0 (Command, 1);
  command->kind = COMMAND_SAMPLE;
  command->path = g_strdup (prompt);
  command->length = MAX (length, 1);
  command->temperature = temperature > 0 ? temperature : 1.0;
  pthread_mutex_lock (&self->lock);
  g_queue_push_tail (&self->commands, command);
  pthread_cond_signal (&self->wake);
  pthread_mutex_unlock (&self->lock);
}

void
peer_session_inspect (PeerSession *self, PeerInspectFunc func, gpointer data,
                      GDestroyNotify data_free, GDestroyNotify result_free,
                      GCancellable *cancellable, PeerInspectCallback callback,
                      gpointer user_data)
{
  Inspection *inspection = g_new0 (Inspection, 1);
  inspection->func = func;
  inspection->data = data;
  inspection->data_free = data_free;
  inspection->result_free = result_free;
  inspection->cancellable = cancellable ? g_object_ref (cancellable) : NULL;
  inspection->callback = callback;
  inspection->user_data = user_data;
  Command *command = g_new0 (Command, 1);
  command->kind = COMMAND_INSPECT;
  command->inspection = inspection;
  pthread_mutex_lock (&self->lock);
  g_queue_push_tail (&self->commands, command);
  pthread_cond_signal (&self->wake);
  pthread_mutex_unlock (&self->lock);
}

void
peer_session_shutdown (PeerSession *self)
{
  if (!self->worker)
    return;
  pthread_mutex_lock (&self->lock);
  self->quit = TRUE;
  pthread_cond_signal (&self->wake);
  pthread_mutex_unlock (&self->lock);
  g_thread_join (g_steal_pointer (&self->worker));
}

/* ---- getters --------------------------------------------------------------------------------- */

const char *
peer_session_get_name (PeerSession *self)
{
  return self->name;
}

PeerSessionState
peer_session_get_state (PeerSession *self)
{
  return self->state;
}

long
peer_session_get_step (PeerSession *self)
{
  return self->step;
}

const model_config *
peer_session_get_config (PeerSession *self)
{
  return &self->tr.model->cfg;
}

const train_settings *
peer_session_get_settings (PeerSession *self)
{
  return &self->tr.settings;
}

GArray *
peer_session_get_loss_points (PeerSession *self)
{
  return self->loss_history;
}

GArray *
peer_session_get_eval_points (PeerSession *self)
{
  return self->eval_history;
}

const char *
peer_session_get_sample (PeerSession *self)
{
  return self->sample;
}

gboolean
peer_session_has_unsaved_work (PeerSession *self)
{
  return self->step > self->saved_step;
}

/* ---- construction ---------------------------------------------------------------------------- */

static void
peer_session_dispose (GObject *object)
{
  PeerSession *self = PEER_SESSION (object);
  peer_session_shutdown (self);
  G_OBJECT_CLASS (peer_session_parent_class)->dispose (object);
}

static void
peer_session_finalize (GObject *object)
{
  PeerSession *self = PEER_SESSION (object);
  Command *command;
  g_queue_clear_full (&self->outbox, (GDestroyNotify) peer_snapshot_unref);
  g_queue_clear_full (&self->inspected, (GDestroyNotify) inspection_free);
  while ((command = g_queue_pop_head (&self->commands)))
    command_free (command);
  expert_monitor_free (&self->experts);
  trainer_free (&self->tr);
  corpus_free (&self->data);
  thread_pool_free (self->pool);
  g_clear_pointer (&self->pending_loss, g_array_unref);
  g_clear_pointer (&self->pending_eval, g_array_unref);
  g_clear_pointer (&self->loss_history, g_array_unref);
  g_clear_pointer (&self->eval_history, g_array_unref);
  g_clear_pointer (&self->context, g_main_context_unref);
  g_free (self->pending_sample);
  g_free (self->pending_prompt);
  g_free (self->pending_continuation);
  g_free (self->sample);
  g_free (self->name);
  pthread_mutex_destroy (&self->lock);
  pthread_cond_destroy (&self->wake);
  G_OBJECT_CLASS (peer_session_parent_class)->finalize (object);
}

static void
peer_session_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  PeerSession *self = PEER_SESSION (object);
  switch (prop_id)
    {
    case PROP_STATE:
      g_value_set_int (value, self->state);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
peer_session_class_init (PeerSessionClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  object_class->dispose = peer_session_dispose;
  object_class->finalize = peer_session_finalize;
  object_class->get_property = peer_session_get_property;

  properties[PROP_STATE] = g_param_spec_int ("state", NULL, NULL, PEER_SESSION_READY,
                                             PEER_SESSION_FAILED, PEER_SESSION_READY,
                                             G_PARAM_READABLE | G_PARAM_STATIC_STRINGS |
                                                 G_PARAM_EXPLICIT_NOTIFY);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  /* Emitted on the main thread for every snapshot, after the history has taken it in. */
  signals[SIGNAL_SNAPSHOT] = g_signal_new ("snapshot", G_TYPE_FROM_CLASS (klass),
                                           G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE,
                                           1, G_TYPE_POINTER);
}

static void
peer_session_init (PeerSession *self)
{
  pthread_mutex_init (&self->lock, NULL);
  pthread_cond_init (&self->wake, NULL);
  g_queue_init (&self->commands);
  g_queue_init (&self->outbox);
  g_queue_init (&self->inspected);
  self->context = g_main_context_ref_thread_default ();
  self->pending_loss = g_array_new (FALSE, FALSE, sizeof (PeerLossPoint));
  self->pending_eval = g_array_new (FALSE, FALSE, sizeof (PeerEvalPoint));
  self->loss_history = g_array_new (FALSE, FALSE, sizeof (PeerLossPoint));
  self->eval_history = g_array_new (FALSE, FALSE, sizeof (PeerEvalPoint));
  self->state = PEER_SESSION_READY;
  self->worker_state = PEER_SESSION_READY;
}

static gboolean
prepare (PeerSession *self, const char *name, GBytes *text, int seq_len, int threads,
         GError **error)
{
  peer_error err;
  self->name = g_strdup (name);
  gsize size = 0;
  const guint8 *bytes = g_bytes_get_data (text, &size);
  if (!corpus_from_bytes (&self->data, bytes, size, seq_len, "the text", &err))
    {
      g_set_error_literal (error, PEER_SESSION_ERROR, 1, err.message);
      return FALSE;
    }
  self->pool = thread_pool_new (threads > 0 ? threads : thread_pool_default_threads (), &err);
  if (!self->pool)
    {
      g_set_error_literal (error, PEER_SESSION_ERROR, 1, err.message);
      return FALSE;
    }
  return TRUE;
}

/* The expert statistics follow the trainer's model from its first step. */
static gboolean
prepare_experts (PeerSession *self, GError **error)
{
  peer_error err;
  if (!expert_monitor_init (&self->experts, &self->tr.model->cfg, EXPERT_MONITOR_HALF_LIFE,
                            EXPERT_MONITOR_HISTORY_BYTES, &err))
    {
      g_set_error_literal (error, PEER_SESSION_ERROR, 1, err.message);
      return FALSE;
    }
  return TRUE;
}

static void
launch (PeerSession *self)
{
  peer_rng_seed (&self->sample_rng, self->tr.settings.seed + 1);
  self->step = self->saved_step = self->tr.step;
  /* A checkpoint saved at the end of its run has no step left to train. */
  if (self->tr.step >= self->tr.settings.steps)
    self->state = self->worker_state = PEER_SESSION_FINISHED;
  self->worker = g_thread_new ("peer-session", worker_main, self);
}

PeerSession *
peer_session_new (const char *name, const model_config *cfg, const train_settings *settings,
                  GBytes *text, int threads, GError **error)
{
  g_autoptr (PeerSession) self = g_object_new (PEER_TYPE_SESSION, NULL);
  peer_error err;
  if (!prepare (self, name, text, settings->seq_len, threads, error))
    return NULL;
  if (!trainer_init (&self->tr, cfg, settings, &self->data, &err))
    {
      g_set_error_literal (error, PEER_SESSION_ERROR, 1, err.message);
      return NULL;
    }
  if (!prepare_experts (self, error))
    return NULL;
  launch (self);
  return g_steal_pointer (&self);
}

PeerSession *
peer_session_new_from_checkpoint (const char *path, GBytes *text, int threads, GError **error)
{
  g_autoptr (PeerSession) self = g_object_new (PEER_TYPE_SESSION, NULL);
  peer_error err;
  model_config cfg;
  if (!checkpoint_read_config (path, &cfg, &err))
    {
      g_set_error_literal (error, PEER_SESSION_ERROR, 1, err.message);
      return NULL;
    }
  g_autofree char *name = g_path_get_basename (path);
  g_autofree char *trainer_path = checkpoint_trainer_path (path);
  train_settings settings;
  train_settings_default (&settings, &cfg);
  if (!prepare (self, name, text, settings.seq_len, threads, error))
    return NULL;
  if (g_file_test (trainer_path, G_FILE_TEST_EXISTS))
    {
      if (!checkpoint_resume (&self->tr, path, trainer_path, &self->data, NULL, &err))
        {
          g_set_error_literal (error, PEER_SESSION_ERROR, 1, err.message);
          return NULL;
        }
    }
  else
    {
      /* A model without its trainer file: its weights, with fresh optimiser state. */
      peer_model *loaded = checkpoint_load_model (path, 1, 0, &err);
      if (!loaded || !trainer_init (&self->tr, &cfg, &settings, &self->data, &err))
        {
          peer_model_free (loaded);
          g_set_error_literal (error, PEER_SESSION_ERROR, 1, err.message);
          return NULL;
        }
      memcpy (self->tr.model->params_memory, loaded->params_memory,
              loaded->n_params * sizeof (float));
      peer_model_free (loaded);
    }
  if (!prepare_experts (self, error))
    return NULL;
  launch (self);
  return g_steal_pointer (&self);
}
