#include "experiment-session.h"

#include <pthread.h>
#include <string.h>

#include "experiment-runner.h"
#include "thread-pool.h"

/* Step updates at most this often; evaluations, finished variants and the end go at once. */
#define UPDATE_INTERVAL_US (150 * 1000)

struct _PeerExperimentSession {
  GObject parent_instance;

  char *dir;
  char *suite_name;
  double budget;
  int threads;
  GMainContext *context;

  /* Owned by the worker while it runs; ex is read-only once opened and lives as long as the
   * session. */
  experiment *ex;
  experiment_result *results;
  int current;
  double train_loss, tokens_per_second, flops_done, flops_total, flops_at_start;
  gboolean have_start;
  gint64 started_us, last_update_us;

  pthread_mutex_t lock;
  GQueue outbox;
  gboolean delivery_pending;
  gboolean want_stop;
  GThread *worker;

  /* Main thread only. */
  PeerExperimentUpdate *update;
};

G_DEFINE_FINAL_TYPE (PeerExperimentSession, peer_experiment_session, G_TYPE_OBJECT)

enum { SIGNAL_UPDATE, N_SIGNALS };
static guint signals[N_SIGNALS];

PeerExperimentUpdate *
peer_experiment_update_ref (PeerExperimentUpdate *update)
{
  g_atomic_ref_count_inc (&update->ref_count);
  return update;
}

void
peer_experiment_update_unref (PeerExperimentUpdate *update)
{
  if (!g_atomic_ref_count_dec (&update->ref_count))
    return;
  g_free (update->results);
  g_free (update->message);
  g_free (update);
}

/* ---- delivery -------------------------------------------------------------------------------- */

static gboolean
deliver_updates (gpointer data)
{
  PeerExperimentSession *self = data;
  GQueue arrived = G_QUEUE_INIT;
  pthread_mutex_lock (&self->lock);
  while (!g_queue_is_empty (&self->outbox))
    g_queue_push_tail (&arrived, g_queue_pop_head (&self->outbox));
  self->delivery_pending = FALSE;
  pthread_mutex_unlock (&self->lock);

  PeerExperimentUpdate *update;
  while ((update = g_queue_pop_head (&arrived)))
    {
      g_clear_pointer (&self->update, peer_experiment_update_unref);
      self->update = update;
      g_signal_emit (self, signals[SIGNAL_UPDATE], 0, update);
    }
  return G_SOURCE_REMOVE;
}

/* Worker: the state as it is now, to the main thread. */
static void
post_update (PeerExperimentSession *self, PeerExperimentState state, const char *message)
{
  PeerExperimentUpdate *update = g_new0 (PeerExperimentUpdate, 1);
  g_atomic_ref_count_init (&update->ref_count);
  update->state = state;
  update->ex = self->ex;
  if (self->ex)
    update->results = g_memdup2 (self->results,
                                 sizeof (experiment_result) * MAX (1, self->ex->n_variants));
  update->current = self->current;
  update->train_loss = self->train_loss;
  update->tokens_per_second = self->tokens_per_second;
  update->suite_flops_done = self->flops_done;
  update->suite_flops_total = self->flops_total;
  double seconds = (g_get_monotonic_time () - self->started_us) / 1e6;
  double done = self->flops_done - self->flops_at_start;
  update->eta_seconds = done > 0 && seconds > 0
                            ? seconds / done * (self->flops_total - self->flops_done)
                            : -1.0;
  update->message = g_strdup (message);
  self->last_update_us = g_get_monotonic_time ();

  pthread_mutex_lock (&self->lock);
  g_queue_push_tail (&self->outbox, update);
  gboolean need_source = !self->delivery_pending;
  self->delivery_pending = TRUE;
  pthread_mutex_unlock (&self->lock);
  if (need_source)
    {
      GSource *source = g_idle_source_new ();
      g_source_set_priority (source, G_PRIORITY_DEFAULT);
      g_source_set_callback (source, deliver_updates, g_object_ref (self), g_object_unref);
      g_source_set_static_name (source, "peer-experiment updates");
      g_source_attach (source, self->context);
      g_source_unref (source);
    }
}

/* ---- the worker ------------------------------------------------------------------------------ */

static bool
should_stop (void *data)
{
  PeerExperimentSession *self = data;
  pthread_mutex_lock (&self->lock);
  gboolean stop = self->want_stop;
  pthread_mutex_unlock (&self->lock);
  return stop;
}

static void
on_event (const experiment_event *event, void *data)
{
  PeerExperimentSession *self = data;
  experiment_result *r = &self->results[event->variant];
  if (!self->have_start)
    {
      self->flops_at_start = event->suite_flops_done;
      self->have_start = TRUE;
    }
  self->flops_done = event->suite_flops_done;
  self->flops_total = event->suite_flops_total;
  gboolean now = TRUE;
  switch (event->kind)
    {
    case EXPERIMENT_EVENT_SKIPPED:
    case EXPERIMENT_EVENT_FINISHED:
      *r = *event->result;
      self->current = -1;
      break;
    case EXPERIMENT_EVENT_STARTED:
      r->status = EXPERIMENT_PARTIAL;
      r->step = event->step;
      self->current = event->variant;
      break;
    case EXPERIMENT_EVENT_STEP:
      r->status = EXPERIMENT_PARTIAL;
      r->step = event->step;
      self->train_loss = event->train_loss;
      self->tokens_per_second = event->tokens_per_second;
      now = g_get_monotonic_time () - self->last_update_us >= UPDATE_INTERVAL_US;
      break;
    case EXPERIMENT_EVENT_EVALUATED:
      if (r->n_points < EXPERIMENT_MAX_CURVE_POINTS)
        r->points[r->n_points++] = event->point;
      break;
    case EXPERIMENT_EVENT_STOPPED:
      r->step = event->step;
      break;
    }
  if (now)
    post_update (self, PEER_EXPERIMENT_RUNNING, NULL);
}

static gpointer
worker_main (gpointer data)
{
  PeerExperimentSession *self = data;
  self->started_us = g_get_monotonic_time ();
  self->current = -1;
  GBytes *text = NULL;
  char *text_name = NULL;
  bool usage = false;
  peer_error err = { 0 };
  thread_pool *pool = NULL;
  experiment_results *loaded = NULL;
  self->ex = experiment_open (self->dir, self->suite_name, NULL, self->budget, NULL, &text,
                              &text_name, &usage, &err);
  if (self->ex)
    loaded = experiment_results_load (self->ex, self->dir, &err);
  if (loaded)
    pool = thread_pool_new (self->threads, &err);
  if (!self->ex || !loaded || !pool)
    {
      /* A definition that opened but whose results did not: show neither half of it. */
      g_clear_pointer (&loaded, experiment_results_free);
      post_update (self, PEER_EXPERIMENT_FAILED, err.message);
      goto out;
    }
  self->results = g_memdup2 (loaded->results,
                             sizeof (experiment_result) * MAX (1, self->ex->n_variants));
  experiment_results_free (loaded);
  post_update (self, PEER_EXPERIMENT_RUNNING, NULL);

  experiment_run_options options = {
    .pool = pool,
    .text = text,
    .text_name = text_name,
    .on_event = on_event,
    .should_stop = should_stop,
    .user_data = self,
  };
  switch (experiment_run (self->ex, self->dir, &options, &err))
    {
    case EXPERIMENT_RUN_COMPLETE:
      self->current = -1;
      post_update (self, PEER_EXPERIMENT_FINISHED, NULL);
      break;
    case EXPERIMENT_RUN_STOPPED:
      self->current = -1;
      post_update (self, PEER_EXPERIMENT_STOPPED, NULL);
      break;
    case EXPERIMENT_RUN_ERROR:
      self->current = -1;
      post_update (self, PEER_EXPERIMENT_FAILED, err.message);
      break;
    }
out:
  if (pool)
    thread_pool_free (pool);
  if (text)
    g_bytes_unref (text);
  g_free (text_name);
  return NULL;
}

/* ---- public ---------------------------------------------------------------------------------- */

PeerExperimentSession *
peer_experiment_session_new (const char *dir, const char *suite_name, double budget, int threads)
{
  PeerExperimentSession *self = g_object_new (PEER_TYPE_EXPERIMENT_SESSION, NULL);
  self->dir = g_strdup (dir);
  self->suite_name = g_strdup (suite_name);
  self->budget = budget;
  self->threads = MAX (1, threads);
  self->context = g_main_context_ref_thread_default ();
  self->worker = g_thread_new ("peer-experiment", worker_main, self);
  return self;
}

const char *
peer_experiment_session_get_dir (PeerExperimentSession *self)
{
  return self->dir;
}

PeerExperimentUpdate *
peer_experiment_session_get_update (PeerExperimentSession *self)
{
  return self->update;
}

void
peer_experiment_session_stop (PeerExperimentSession *self)
{
  pthread_mutex_lock (&self->lock);
  self->want_stop = TRUE;
  pthread_mutex_unlock (&self->lock);
}

void
peer_experiment_session_shutdown (PeerExperimentSession *self)
{
  peer_experiment_session_stop (self);
  if (self->worker)
    g_thread_join (g_steal_pointer (&self->worker));
}

static void
peer_experiment_session_finalize (GObject *object)
{
  PeerExperimentSession *self = PEER_EXPERIMENT_SESSION (object);
  peer_experiment_session_shutdown (self);
  PeerExperimentUpdate *update;
  while ((update = g_queue_pop_head (&self->outbox)))
    peer_experiment_update_unref (update);
  g_clear_pointer (&self->update, peer_experiment_update_unref);
  experiment_free (self->ex);
  g_free (self->results);
  g_free (self->dir);
  g_free (self->suite_name);
  g_main_context_unref (self->context);
  pthread_mutex_destroy (&self->lock);
  G_OBJECT_CLASS (peer_experiment_session_parent_class)->finalize (object);
}

static void
peer_experiment_session_class_init (PeerExperimentSessionClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = peer_experiment_session_finalize;
  /* ::update (PeerExperimentUpdate *update): on the main thread, for every update. */
  signals[SIGNAL_UPDATE] = g_signal_new ("update", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                                         0, NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_POINTER);
}

static void
peer_experiment_session_init (PeerExperimentSession *self)
{
  pthread_mutex_init (&self->lock, NULL);
  g_queue_init (&self->outbox);
}
