#include "expert-grid.h"

typedef struct {
  int layer;
  expert_window window;
  int head;
  gboolean measure;
  int expert;
} Request;

void
peer_expert_grid_free (PeerExpertGrid *grid)
{
  if (!grid)
    return;
  g_free (grid->count);
  g_free (grid->gate_mass);
  g_free (grid->mean_activation);
  g_free (grid->usage);
  g_free (grid);
}

void
peer_expert_series_free (PeerExpertSeries *series)
{
  if (!series)
    return;
  g_free (series->first_step);
  g_free (series->end_step);
  g_free (series->count);
  g_free (series);
}

static gboolean
check_layer (const expert_monitor *monitor, int layer, GError **error)
{
  if (layer >= 0 && layer < monitor->n_layers && monitor->layers[layer].active)
    return TRUE;
  g_set_error (error, PEER_SESSION_ERROR, 1,
               "Layer %d has no experts: choose a PEER or PKM layer", layer);
  return FALSE;
}

/* Worker. */
static gpointer
compute_grid (const PeerInspectContext *context, gpointer data, GError **error)
{
  const Request *request = data;
  expert_monitor *monitor = context->experts;
  peer_error err;
  gint64 start = g_get_monotonic_time ();
  if (!check_layer (monitor, request->layer, error))
    return NULL;
  if (request->window == EXPERT_WINDOW_VALIDATION &&
      (request->measure || monitor->layers[request->layer].validation_step < 0) &&
      !expert_monitor_measure_validation (monitor, context->model, context->data,
                                          context->tr->settings.eval_windows, context->step,
                                          context->pool, &err))
    {
      g_set_error (error, PEER_SESSION_ERROR, 1, "Could not measure the validation text: %s",
                   err.message);
      return NULL;
    }
  const expert_monitor_layer *layer = &monitor->layers[request->layer];
  gsize cells = (gsize) layer->side * layer->side;
  g_autoptr (PeerExpertGrid) grid = g_new0 (PeerExpertGrid, 1);
  grid->layer = request->layer;
  grid->side = layer->side;
  grid->heads = layer->heads;
  grid->head = request->head;
  grid->window = request->window;
  grid->step = context->step;
  grid->measured_step =
      request->window == EXPERT_WINDOW_VALIDATION ? layer->validation_step : context->step;
  grid->count = g_try_new (float, cells);
  grid->gate_mass = g_try_new (float, cells);
  grid->mean_activation = g_try_new (float, cells);
  grid->usage = g_new (expert_usage, layer->heads + 1);
  if (!grid->count || !grid->gate_mass || !grid->mean_activation)
    {
      g_set_error (error, PEER_SESSION_ERROR, 1, "Out of memory for a grid of %zu experts",
                   (size_t) cells);
      return NULL;
    }
  if (!expert_monitor_grid (monitor, request->layer, request->window, request->head,
                            grid->count, grid->gate_mass, grid->mean_activation, grid->usage,
                            &grid->tokens, &err))
    {
      g_set_error_literal (error, PEER_SESSION_ERROR, 1, err.message);
      return NULL;
    }
  grid->seconds = (g_get_monotonic_time () - start) / 1e6;
  return g_steal_pointer (&grid);
}

void
peer_expert_grid_fetch (PeerSession *session, int layer, expert_window window, int head,
                        gboolean measure, GCancellable *cancellable,
                        PeerInspectCallback callback, gpointer user_data)
{
  Request *request = g_new0 (Request, 1);
  *request = (Request){ .layer = layer, .window = window, .head = head, .measure = measure };
  peer_session_inspect (session, compute_grid, request, g_free,
                        (GDestroyNotify) peer_expert_grid_free, cancellable, callback,
                        user_data);
}

/* Worker. */
static gpointer
compute_series (const PeerInspectContext *context, gpointer data, GError **error)
{
  const Request *request = data;
  const expert_monitor *monitor = context->experts;
  if (!check_layer (monitor, request->layer, error))
    return NULL;
  const expert_history *history = &monitor->layers[request->layer].history;
  if (request->expert < 0 || request->expert >= history->n_experts)
    {
      g_set_error (error, PEER_SESSION_ERROR, 1,
                   "Expert %d is not in layer %d, whose experts are 0 to %d", request->expert,
                   request->layer, history->n_experts - 1);
      return NULL;
    }
  g_autoptr (PeerExpertSeries) series = g_new0 (PeerExpertSeries, 1);
  series->layer = request->layer;
  series->expert = request->expert;
  series->first_step = g_new (long, MAX (history->used, 1));
  series->end_step = g_new (long, MAX (history->used, 1));
  series->count = g_new (guint32, MAX (history->used, 1));
  series->n = expert_monitor_history (monitor, request->layer, request->expert,
                                      series->first_step, series->end_step, series->count);
  series->saturated = history->saturated;
  return g_steal_pointer (&series);
}

void
peer_expert_series_fetch (PeerSession *session, int layer, int expert, GCancellable *cancellable,
                          PeerInspectCallback callback, gpointer user_data)
{
  Request *request = g_new0 (Request, 1);
  *request = (Request){ .layer = layer, .expert = expert };
  peer_session_inspect (session, compute_series, request, g_free,
                        (GDestroyNotify) peer_expert_series_free, cancellable, callback,
                        user_data);
}
