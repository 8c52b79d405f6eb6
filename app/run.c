#include "run.h"

#include <math.h>

struct _PeerRun {
  GObject parent_instance;

  guint id;
  char *name;
  char *description;
  char *path;
  gboolean has_config;
  model_config cfg;
  train_settings settings;

  PeerSession *session;
  gulong snapshot_handler;
  gboolean preparing;
  gboolean log_only;
  gboolean start_when_ready;
  char *failure;

  GArray *loss_points; /* PeerLossPoint, replayed ones first */
  GArray *eval_points; /* PeerEvalPoint */
  PeerSessionState session_state;
  long step;
  long total_steps;
  long saved_step;
  double tokens_per_second;
  double eta_seconds;
  char *sample;
  long sample_step;
  char *prompt;
  char *continuation;
  long continuation_step;

  gboolean visible;
};

G_DEFINE_FINAL_TYPE (PeerRun, peer_run, G_TYPE_OBJECT)

enum { PROP_0, PROP_VISIBLE, N_PROPS };
static GParamSpec *properties[N_PROPS];

enum { SIGNAL_CHANGED, SIGNAL_SNAPSHOT, N_SIGNALS };
static guint signals[N_SIGNALS];

const char *
peer_run_state_to_label (PeerRunState state)
{
  switch (state)
    {
    case PEER_RUN_PREPARING: return "Preparing";
    case PEER_RUN_READY: return "Ready";
    case PEER_RUN_RUNNING: return "Training";
    case PEER_RUN_PAUSED: return "Paused";
    case PEER_RUN_FINISHED: return "Finished";
    case PEER_RUN_STOPPED: return "Stopped";
    case PEER_RUN_FAILED: return "Failed";
    case PEER_RUN_LOG_ONLY: return "Log";
    }
  return "Unknown";
}

static void
emit_changed (PeerRun *self)
{
  g_signal_emit (self, signals[SIGNAL_CHANGED], 0);
}

/* ---- description ----------------------------------------------------------------------------- */

static char *
describe_config (const model_config *cfg)
{
  int counts[4] = { 0 };
  const ffn_config *first[4] = { NULL };
  for (int l = 0; l < cfg->n_layers; l++)
    {
      unsigned kind = cfg->layers[l].kind;
      if (kind > FFN_MOE)
        continue;
      if (!first[kind])
        first[kind] = &cfg->layers[l];
      counts[kind]++;
    }
  GString *text = g_string_new (NULL);
  /* The most telling layer first: a model is "PEER" if any block is. */
  if (first[FFN_PEER])
    {
      int n = (int) lround (sqrt (first[FFN_PEER]->peer.n_experts));
      g_string_append_printf (text, "PEER %d²", n);
    }
  else if (first[FFN_PKM])
    {
      int n = (int) lround (sqrt (first[FFN_PKM]->peer.n_experts));
      g_string_append_printf (text, "PKM %d²", n);
    }
  else if (first[FFN_MOE])
    g_string_append_printf (text, "MoE %d × top %d", first[FFN_MOE]->moe_experts,
                            first[FFN_MOE]->moe_topk);
  else
    g_string_append (text, "Dense");
  g_string_append_printf (text, " · %d block%s · width %d", cfg->n_layers,
                          cfg->n_layers == 1 ? "" : "s", cfg->d_model);
  return g_string_free (text, FALSE);
}

/* ---- snapshots ------------------------------------------------------------------------------- */

static void
on_snapshot (PeerSession *session, PeerSnapshot *snapshot, PeerRun *self)
{
  g_array_append_vals (self->loss_points, snapshot->loss_points->data,
                       snapshot->loss_points->len);
  g_array_append_vals (self->eval_points, snapshot->eval_points->data,
                       snapshot->eval_points->len);
  self->session_state = snapshot->state;
  self->step = snapshot->step;
  self->total_steps = snapshot->total_steps;
  self->tokens_per_second = snapshot->tokens_per_second;
  self->eta_seconds = snapshot->eta_seconds;
  if (snapshot->saved)
    self->saved_step = snapshot->step;
  if (snapshot->sample)
    {
      g_free (self->sample);
      self->sample = g_strdup (snapshot->sample);
      self->sample_step = snapshot->step;
    }
  if (snapshot->continuation)
    {
      g_free (self->prompt);
      g_free (self->continuation);
      self->prompt = g_strdup (snapshot->prompt);
      self->continuation = g_strdup (snapshot->continuation);
      self->continuation_step = snapshot->step;
    }
  if (snapshot->state == PEER_SESSION_FAILED && snapshot->message)
    {
      g_free (self->failure);
      self->failure = g_strdup (snapshot->message);
    }
  g_signal_emit (self, signals[SIGNAL_SNAPSHOT], 0, snapshot);
  emit_changed (self);
}

/* ---- public ---------------------------------------------------------------------------------- */

PeerRun *
peer_run_new (const char *name)
{
  PeerRun *self = g_object_new (PEER_TYPE_RUN, NULL);
  self->name = g_strdup (name);
  return self;
}

void
peer_run_set_config (PeerRun *self, const model_config *cfg, const train_settings *settings)
{
  self->cfg = *cfg;
  self->has_config = TRUE;
  if (settings)
    {
      self->settings = *settings;
      if (self->total_steps == 0)
        self->total_steps = settings->steps;
    }
  g_free (self->description);
  self->description = describe_config (cfg);
  emit_changed (self);
}

void
peer_run_set_history (PeerRun *self, GArray *loss_points, GArray *eval_points)
{
  g_array_set_size (self->loss_points, 0);
  g_array_set_size (self->eval_points, 0);
  if (loss_points)
    g_array_append_vals (self->loss_points, loss_points->data, loss_points->len);
  if (eval_points)
    g_array_append_vals (self->eval_points, eval_points->data, eval_points->len);
  if (self->loss_points->len > 0)
    {
      const PeerLossPoint *last = &g_array_index (self->loss_points, PeerLossPoint,
                                                  self->loss_points->len - 1);
      self->step = self->saved_step = last->step;
    }
  emit_changed (self);
}

void
peer_run_attach_session (PeerRun *self, PeerSession *session)
{
  g_return_if_fail (self->session == NULL);
  self->session = g_object_ref (session);
  self->preparing = FALSE;
  self->log_only = FALSE;
  self->session_state = peer_session_get_state (session);
  peer_run_set_config (self, peer_session_get_config (session),
                       peer_session_get_settings (session));
  self->total_steps = peer_session_get_settings (session)->steps;
  self->step = self->saved_step = peer_session_get_step (session);
  self->snapshot_handler = g_signal_connect (session, "snapshot", G_CALLBACK (on_snapshot), self);
  if (self->start_when_ready)
    peer_session_start (session);
  emit_changed (self);
}

void
peer_run_fail (PeerRun *self, const char *message)
{
  self->preparing = FALSE;
  if (message)
    {
      g_free (self->failure);
      self->failure = g_strdup (message);
    }
  else
    self->log_only = TRUE;
  emit_changed (self);
}

guint
peer_run_get_id (PeerRun *self)
{
  return self->id;
}

const char *
peer_run_get_name (PeerRun *self)
{
  return self->name;
}

PeerRunState
peer_run_get_state (PeerRun *self)
{
  if (self->session)
    switch (self->session_state)
      {
      case PEER_SESSION_READY: return PEER_RUN_READY;
      case PEER_SESSION_RUNNING: return PEER_RUN_RUNNING;
      case PEER_SESSION_PAUSED: return PEER_RUN_PAUSED;
      case PEER_SESSION_FINISHED: return PEER_RUN_FINISHED;
      case PEER_SESSION_STOPPED: return PEER_RUN_STOPPED;
      case PEER_SESSION_FAILED: return PEER_RUN_FAILED;
      }
  if (self->preparing)
    return PEER_RUN_PREPARING;
  if (self->log_only)
    return PEER_RUN_LOG_ONLY;
  return PEER_RUN_FAILED;
}

gboolean
peer_run_can_train (PeerRun *self)
{
  PeerRunState state = peer_run_get_state (self);
  return state == PEER_RUN_READY || state == PEER_RUN_RUNNING || state == PEER_RUN_PAUSED;
}

PeerSession *
peer_run_get_session (PeerRun *self)
{
  return self->session;
}

const model_config *
peer_run_get_config (PeerRun *self)
{
  return self->has_config ? &self->cfg : NULL;
}

const train_settings *
peer_run_get_settings (PeerRun *self)
{
  return self->has_config ? &self->settings : NULL;
}

const char *
peer_run_get_description (PeerRun *self)
{
  return self->description ? self->description : "";
}

GArray *
peer_run_get_loss_points (PeerRun *self)
{
  return self->loss_points;
}

GArray *
peer_run_get_eval_points (PeerRun *self)
{
  return self->eval_points;
}

long
peer_run_get_step (PeerRun *self)
{
  return self->step;
}

long
peer_run_get_total_steps (PeerRun *self)
{
  return self->total_steps;
}

double
peer_run_get_tokens_per_second (PeerRun *self)
{
  return self->tokens_per_second;
}

double
peer_run_get_eta_seconds (PeerRun *self)
{
  return self->eta_seconds;
}

double
peer_run_get_last_loss (PeerRun *self)
{
  if (self->loss_points->len == 0)
    return NAN;
  return g_array_index (self->loss_points, PeerLossPoint, self->loss_points->len - 1).loss;
}

const char *
peer_run_get_sample (PeerRun *self, long *step)
{
  if (step)
    *step = self->sample_step;
  return self->sample;
}

const char *
peer_run_get_continuation (PeerRun *self, const char **prompt, long *step)
{
  if (prompt)
    *prompt = self->prompt;
  if (step)
    *step = self->continuation_step;
  return self->continuation;
}

const char *
peer_run_get_failure (PeerRun *self)
{
  return self->failure;
}

gboolean
peer_run_has_unsaved_work (PeerRun *self)
{
  return self->session != NULL && self->step > self->saved_step;
}

gboolean
peer_run_get_visible (PeerRun *self)
{
  return self->visible;
}

void
peer_run_set_visible (PeerRun *self, gboolean visible)
{
  visible = !!visible;
  if (self->visible == visible)
    return;
  self->visible = visible;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_VISIBLE]);
}

const char *
peer_run_get_path (PeerRun *self)
{
  return self->path;
}

void
peer_run_set_path (PeerRun *self, const char *path)
{
  if (self->path == path)
    return;
  g_free (self->path);
  self->path = g_strdup (path);
}

void
peer_run_start_when_ready (PeerRun *self)
{
  if (self->session)
    peer_session_start (self->session);
  else
    self->start_when_ready = TRUE;
}

/* ---- GObject --------------------------------------------------------------------------------- */

static void
peer_run_dispose (GObject *object)
{
  PeerRun *self = PEER_RUN (object);
  if (self->session)
    {
      g_clear_signal_handler (&self->snapshot_handler, self->session);
      /* The worker may be in the middle of a step; joining it here keeps it from outliving the
       * window that shows it. */
      peer_session_shutdown (self->session);
      g_clear_object (&self->session);
    }
  G_OBJECT_CLASS (peer_run_parent_class)->dispose (object);
}

static void
peer_run_finalize (GObject *object)
{
  PeerRun *self = PEER_RUN (object);
  g_array_unref (self->loss_points);
  g_array_unref (self->eval_points);
  g_free (self->name);
  g_free (self->description);
  g_free (self->path);
  g_free (self->failure);
  g_free (self->sample);
  g_free (self->prompt);
  g_free (self->continuation);
  G_OBJECT_CLASS (peer_run_parent_class)->finalize (object);
}

static void
peer_run_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  PeerRun *self = PEER_RUN (object);
  switch (prop_id)
    {
    case PROP_VISIBLE:
      g_value_set_boolean (value, self->visible);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
peer_run_set_property (GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  PeerRun *self = PEER_RUN (object);
  switch (prop_id)
    {
    case PROP_VISIBLE:
      peer_run_set_visible (self, g_value_get_boolean (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
peer_run_class_init (PeerRunClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  object_class->dispose = peer_run_dispose;
  object_class->finalize = peer_run_finalize;
  object_class->get_property = peer_run_get_property;
  object_class->set_property = peer_run_set_property;

  properties[PROP_VISIBLE] = g_param_spec_boolean ("visible", NULL, NULL, TRUE,
                                                   G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |
                                                       G_PARAM_EXPLICIT_NOTIFY);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  /* Anything the sidebar or a page shows may have changed. */
  signals[SIGNAL_CHANGED] = g_signal_new ("changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                                          0, NULL, NULL, NULL, G_TYPE_NONE, 0);
  /* A session snapshot the run has taken in: its new points are the last ones of the arrays. */
  signals[SIGNAL_SNAPSHOT] = g_signal_new ("snapshot", G_TYPE_FROM_CLASS (klass),
                                           G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL, G_TYPE_NONE,
                                           1, G_TYPE_POINTER);
}

static void
peer_run_init (PeerRun *self)
{
  static guint next_id = 1;
  self->id = next_id++;
  self->loss_points = g_array_new (FALSE, FALSE, sizeof (PeerLossPoint));
  self->eval_points = g_array_new (FALSE, FALSE, sizeof (PeerEvalPoint));
  self->preparing = TRUE;
  self->visible = TRUE;
  self->eta_seconds = -1.0;
}
