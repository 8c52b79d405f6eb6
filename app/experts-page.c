#include "experts-page.h"

#include <adwaita.h>
#include <math.h>
#include <string.h>

#include "expert-grid-csv.h"
#include "expert-heatmap.h"
#include "export-dialog.h"
#include "format.h"

/* A training run changes its statistics every step: the map asks for them at most this often,
 * and never so often that the worker spends more than a tenth of its time making grids (a
 * million experts take it tens of milliseconds) instead of training. */
#define REFRESH_INTERVAL_US (250 * 1000)
#define REFRESH_COST_FACTOR 10
/* The history table keeps the latest evaluations; older ones are in the run log. */
#define HISTORY_ROWS 40

struct _PeerExpertsPage {
  GtkWidget parent_instance;

  PeerRun *run;
  gulong changed_handler;

  /* What the map shows. */
  int layer;               /* model layer; -1 when the run has none */
  expert_metric metric;
  int head;                /* -1: all heads */
  expert_window window;
  GArray *layers;          /* int: the model layer of each entry of the layer drop-down */
  int heads_listed;        /* entries of the head drop-down, all heads included */
  gboolean filling;        /* the page is setting its own drop-downs */

  /* The grid on the map and the request for the next one. */
  PeerExpertGrid *grid;
  GCancellable *request;   /* in flight, or NULL */
  gboolean request_again;  /* something changed while a request was in flight */
  gint64 last_request_us;
  guint refresh_source;
  guint evals_measured;    /* evaluations when the validation text was last measured */
  gboolean measure_requested;

  gint32 *marked;
  gsize n_marked;
  int marked_layer;
  guint history_evals;     /* evaluations the history table shows */
  int history_layer;

  GtkStack *stack;
  AdwStatusPage *no_experts_status;
  GtkDropDown *layer_dropdown;
  GtkDropDown *metric_dropdown;
  GtkDropDown *head_dropdown;
  GtkDropDown *window_dropdown;
  GtkToggleButton *linear_button;
  GtkToggleButton *log_button;
  GtkButton *measure_button;
  GtkButton *export_button;
  GtkLabel *status_label;
  PeerExpertHeatmap *heatmap;
  GtkGrid *usage_grid;
  GtkLabel *usage_note;
  GtkGrid *history_grid;
};

G_DEFINE_FINAL_TYPE (PeerExpertsPage, peer_experts_page, GTK_TYPE_WIDGET)

enum { SIGNAL_EXPERT_ACTIVATED, SIGNAL_GRID_UPDATED, N_SIGNALS };
static guint signals[N_SIGNALS];

static void schedule_refresh (PeerExpertsPage *self, gboolean now);

static gboolean
is_expert_layer (const ffn_config *ffn)
{
  return ffn->kind == FFN_PEER || ffn->kind == FFN_PKM;
}

static const model_config *
run_config (PeerExpertsPage *self)
{
  return self->run ? peer_run_get_config (self->run) : NULL;
}

static PeerSession *
run_session (PeerExpertsPage *self)
{
  return self->run ? peer_run_get_session (self->run) : NULL;
}

static void
clear_children (GtkWidget *parent)
{
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (parent)))
    {
      if (GTK_IS_GRID (parent))
        gtk_grid_remove (GTK_GRID (parent), child);
      else
        gtk_widget_unparent (child);
    }
}

static void
attach_cell (GtkGrid *grid, const char *text, int column, int row, gboolean heading)
{
  GtkWidget *label = gtk_label_new (text);
  gtk_label_set_xalign (GTK_LABEL (label), column == 0 ? 0.0f : 1.0f);
  gtk_widget_add_css_class (label, heading ? "heading" : "numeric");
  gtk_grid_attach (grid, label, column, row, 1, 1);
}

/* ---- the grid ------------------------------------------------------------------------------- */

static const char *
metric_label (expert_metric metric, expert_window window)
{
  switch (metric)
    {
    case EXPERT_METRIC_COUNT:
      return window == EXPERT_WINDOW_LIVE ? "selections (decayed)" : "selections";
    case EXPERT_METRIC_GATE_MASS:
      return window == EXPERT_WINDOW_LIVE ? "gate mass z′ (decayed)" : "gate mass z′";
    case EXPERT_METRIC_MEAN_ACTIVATION:
      return "mean activation";
    }
  return "value";
}

static char *
layer_title (const model_config *cfg, int layer)
{
  const ffn_config *ffn = &cfg->layers[layer];
  int side = (int) lround (sqrt (ffn->peer.n_experts));
  return g_strdup_printf ("Layer %d · %s %d²", layer, ffn->kind == FFN_PEER ? "PEER" : "PKM",
                          side);
}

static void
set_status (PeerExpertsPage *self, const char *text)
{
  gtk_label_set_label (self->status_label, text ? text : "");
}

static void
fill_usage (PeerExpertsPage *self, const PeerExpertGrid *grid)
{
  GtkGrid *table = self->usage_grid;
  clear_children (GTK_WIDGET (table));
  attach_cell (table, "Head", 0, 0, TRUE);
  attach_cell (table, "Used", 1, 0, TRUE);
  attach_cell (table, "Unevenness", 2, 0, TRUE);
  attach_cell (table, "Dead", 3, 0, TRUE);
  if (!grid)
    return;
  for (int j = -1; j < grid->heads; j++)
    {
      const expert_usage *usage = &grid->usage[j + 1];
      g_autofree char *head = j < 0 ? g_strdup ("All") : g_strdup_printf ("%d", j);
      /* A few dead experts among a million must not read as 100 %. */
      g_autofree char *used = g_strdup_printf (
          usage->dead > 0 && usage->usage >= 0.9995 ? "%.3f %%" : "%.1f %%",
          100.0 * usage->usage);
      g_autofree char *unevenness = g_strdup_printf ("%.3f", usage->unevenness);
      g_autofree char *dead = peer_format_count ((double) usage->dead);
      int row = j + 2;
      attach_cell (table, head, 0, row, j < 0);
      attach_cell (table, used, 1, row, FALSE);
      attach_cell (table, unevenness, 2, row, FALSE);
      attach_cell (table, dead, 3, row, FALSE);
      /* The head the map shows stands out. */
      if (j == grid->head)
        for (int column = 0; column < 4; column++)
          gtk_widget_add_css_class (gtk_grid_get_child_at (table, column, row), "accent");
    }
}

static void
show_message (PeerExpertsPage *self, const char *message)
{
  peer_expert_heatmap_set_grid (self->heatmap, 0, NULL, FALSE);
  peer_expert_heatmap_set_message (self->heatmap, message);
}

static const char *
empty_window_message (PeerExpertsPage *self)
{
  if (self->window == EXPERT_WINDOW_VALIDATION)
    return "The validation text has not been measured: Measure on Validation Text";
  if (self->run && !peer_run_can_train (self->run))
    return "No training steps since this run was opened: choose Validation text to measure "
           "its experts";
  return "No training steps yet: start the run to see its experts at work";
}

/* The map, the usage table and the status line from the grid the page holds. */
static void
show_grid (PeerExpertsPage *self)
{
  const PeerExpertGrid *grid = self->grid;
  const model_config *cfg = run_config (self);
  /* An empty window has no usage to show, not a usage of 0. */
  fill_usage (self, grid && grid->tokens > 0.0 ? grid : NULL);
  if (!grid || !cfg)
    return;
  if (grid->tokens <= 0.0)
    {
      show_message (self, empty_window_message (self));
      set_status (self, NULL);
      gtk_label_set_label (self->usage_note, "");
      return;
    }
  const float *values = self->metric == EXPERT_METRIC_COUNT       ? grid->count
                        : self->metric == EXPERT_METRIC_GATE_MASS ? grid->gate_mass
                                                                  : grid->mean_activation;
  /* Counts and gate masses of experts never chosen are 0: drawn as empty, as a mean activation
   * with no selection (NaN) is. */
  peer_expert_heatmap_set_grid (self->heatmap, grid->side, values,
                                self->metric != EXPERT_METRIC_MEAN_ACTIVATION);
  const char *names[] = { metric_label (EXPERT_METRIC_COUNT, grid->window),
                          metric_label (EXPERT_METRIC_GATE_MASS, grid->window),
                          "mean activation" };
  const float *details[] = { grid->count, grid->gate_mass, grid->mean_activation };
  peer_expert_heatmap_set_details (self->heatmap, 3, names, details);
  if (self->marked_layer == grid->layer)
    peer_expert_heatmap_set_marked (self->heatmap, self->marked, self->n_marked);
  else
    peer_expert_heatmap_set_marked (self->heatmap, NULL, 0);

  g_autofree char *layer = layer_title (cfg, grid->layer);
  g_autofree char *heads = grid->head < 0 ? g_strdup ("all heads")
                                          : g_strdup_printf ("head %d", grid->head);
  const char *window = grid->window == EXPERT_WINDOW_LIVE          ? "live"
                       : grid->window == EXPERT_WINDOW_SINCE_START ? "since start"
                                                                   : "validation text";
  g_autofree char *title = g_strdup_printf ("%s · %s · %s · %s", layer,
                                            metric_label (self->metric, grid->window), heads,
                                            window);
  peer_expert_heatmap_set_title (self->heatmap, title);
  peer_expert_heatmap_set_value_label (self->heatmap, metric_label (self->metric, grid->window));

  g_autofree char *step = peer_format_count ((double) grid->measured_step);
  g_autofree char *tokens = peer_format_si (grid->tokens);
  g_autofree char *status = NULL;
  g_autofree char *note = NULL;
  switch (grid->window)
    {
    case EXPERT_WINDOW_LIVE:
      status = g_strdup_printf ("Step %s · %s tokens, decayed", step, tokens);
      note = g_strdup_printf (
          "Live: each step's choices weigh half as much every %.0f steps back. An expert counts "
          "as used while its decayed selections reach 1/16 (one selection four half-lives "
          "ago). Unevenness is the KL divergence of the gate mass from uniform (nats; 0 is "
          "even).",
          EXPERT_MONITOR_HALF_LIFE);
      break;
    case EXPERT_WINDOW_SINCE_START:
      status = g_strdup_printf ("Step %s · %s tokens since the run was opened", step, tokens);
      note = g_strdup ("Since start: every training step since the run was opened. Usage is the "
                       "share of experts that received any gate weight; unevenness is the KL "
                       "divergence of the gate mass from uniform (nats; 0 is even).");
      break;
    case EXPERT_WINDOW_VALIDATION:
      status = g_strdup_printf ("Validation text measured at step %s · %s tokens", step, tokens);
      note = g_strdup ("Validation text: the model in evaluation mode over the run's evaluation "
                       "windows, as in the paper's Table 2. Usage is the share of experts that "
                       "received any gate weight; unevenness is the KL divergence of the gate "
                       "mass from uniform (nats; 0 is even).");
      break;
    }
  set_status (self, status);
  gtk_label_set_label (self->usage_note, note);
}

static void
on_grid (PeerSession *session, gpointer result, const GError *error, gpointer user_data)
{
  PeerExpertsPage *self = user_data;
  g_clear_object (&self->request);
  if (error)
    {
      g_clear_pointer (&self->grid, peer_expert_grid_free);
      fill_usage (self, NULL);
      show_message (self, error->message);
      set_status (self, NULL);
    }
  else
    {
      g_clear_pointer (&self->grid, peer_expert_grid_free);
      self->grid = result;
      show_grid (self);
      g_signal_emit (self, signals[SIGNAL_GRID_UPDATED], 0);
    }
  if (self->request_again)
    {
      self->request_again = FALSE;
      schedule_refresh (self, FALSE);
    }
}

static void
cancel_request (PeerExpertsPage *self)
{
  if (self->request)
    {
      g_cancellable_cancel (self->request);
      g_clear_object (&self->request);
    }
  self->request_again = FALSE;
}

/* Whether the grid on the map is the one the controls ask for, as of now. */
static gboolean
grid_is_current (PeerExpertsPage *self)
{
  const PeerExpertGrid *grid = self->grid;
  if (!grid || grid->layer != self->layer || grid->head != self->head ||
      grid->window != self->window)
    return FALSE;
  if (self->window == EXPERT_WINDOW_VALIDATION)
    return !self->measure_requested &&
           peer_run_get_eval_points (self->run)->len <= self->evals_measured;
  /* The worker may be a step or two ahead of the snapshots the run has. */
  return grid->step >= peer_run_get_step (self->run);
}

static void
request_grid (PeerExpertsPage *self)
{
  PeerSession *session = run_session (self);
  cancel_request (self);
  gboolean measure = FALSE;
  if (self->window == EXPERT_WINDOW_VALIDATION)
    {
      /* Measured again when asked and after every evaluation; the first time only if it never
       * was. */
      guint evals = peer_run_get_eval_points (self->run)->len;
      measure = self->measure_requested || evals > self->evals_measured;
      self->evals_measured = evals;
      self->measure_requested = FALSE;
    }
  self->request = g_cancellable_new ();
  self->last_request_us = g_get_monotonic_time ();
  peer_expert_grid_fetch (session, self->layer, self->window, self->head, measure,
                          self->request, on_grid, self);
}

static gboolean
refresh_timeout (gpointer data)
{
  PeerExpertsPage *self = data;
  self->refresh_source = 0;
  schedule_refresh (self, FALSE);
  return G_SOURCE_REMOVE;
}

/* Asks for the grid when the map is out of date: at once when what it shows changed (now), else
 * no sooner than REFRESH_INTERVAL_US after the last request, and never while one is in flight
 * or the page is not on screen. */
static void
schedule_refresh (PeerExpertsPage *self, gboolean now)
{
  PeerSession *session = run_session (self);
  if (!session || self->layer < 0)
    return;
  if (!now && grid_is_current (self))
    return;
  if (!gtk_widget_get_mapped (GTK_WIDGET (self)))
    return; /* mapping the page asks again */
  if (self->request && !now)
    {
      self->request_again = TRUE;
      return;
    }
  gint64 interval = REFRESH_INTERVAL_US;
  if (self->grid)
    interval = MAX (interval, (gint64) (self->grid->seconds * REFRESH_COST_FACTOR * 1e6));
  gint64 wait = self->last_request_us + interval - g_get_monotonic_time ();
  if (!now && wait > 0)
    {
      if (!self->refresh_source)
        self->refresh_source = g_timeout_add ((guint) (wait / 1000) + 1, refresh_timeout, self);
      return;
    }
  g_clear_handle_id (&self->refresh_source, g_source_remove);
  request_grid (self);
}

/* ---- the controls --------------------------------------------------------------------------- */

static void
fill_heads (PeerExpertsPage *self)
{
  const model_config *cfg = run_config (self);
  int heads = cfg && self->layer >= 0 ? cfg->layers[self->layer].peer.heads : 0;
  if (heads + 1 == self->heads_listed)
    return;
  g_autoptr (GtkStringList) list = gtk_string_list_new (NULL);
  gtk_string_list_append (list, "All heads");
  for (int j = 0; j < heads; j++)
    {
      g_autofree char *name = g_strdup_printf ("Head %d", j);
      gtk_string_list_append (list, name);
    }
  self->filling = TRUE;
  gtk_drop_down_set_model (self->head_dropdown, G_LIST_MODEL (list));
  if (self->head >= heads)
    self->head = -1;
  gtk_drop_down_set_selected (self->head_dropdown, (guint) (self->head + 1));
  self->filling = FALSE;
  self->heads_listed = heads + 1;
}

/* The layer drop-down from the run's config; false when the run has no expert layer. */
static gboolean
fill_layers (PeerExpertsPage *self)
{
  const model_config *cfg = run_config (self);
  g_autoptr (GArray) layers = g_array_new (FALSE, FALSE, sizeof (int));
  for (int l = 0; cfg && l < cfg->n_layers; l++)
    if (is_expert_layer (&cfg->layers[l]))
      g_array_append_val (layers, l);
  gboolean same = layers->len == self->layers->len &&
                  (layers->len == 0 || memcmp (layers->data, self->layers->data,
                                               layers->len * sizeof (int)) == 0);
  if (!same)
    {
      g_autoptr (GtkStringList) list = gtk_string_list_new (NULL);
      for (guint i = 0; i < layers->len; i++)
        {
          g_autofree char *title = layer_title (cfg, g_array_index (layers, int, i));
          gtk_string_list_append (list, title);
        }
      g_array_set_size (self->layers, 0);
      g_array_append_vals (self->layers, layers->data, layers->len);
      guint selected = 0;
      for (guint i = 0; i < layers->len; i++)
        if (g_array_index (layers, int, i) == self->layer)
          selected = i;
      self->filling = TRUE;
      gtk_drop_down_set_model (self->layer_dropdown, G_LIST_MODEL (list));
      gtk_drop_down_set_selected (self->layer_dropdown, selected);
      self->filling = FALSE;
      self->layer = layers->len ? g_array_index (layers, int, selected) : -1;
      self->heads_listed = 0;
    }
  fill_heads (self);
  return layers->len > 0;
}

static void
fill_history (PeerExpertsPage *self)
{
  GArray *evals = self->run ? peer_run_get_eval_points (self->run) : NULL;
  guint count = evals ? evals->len : 0;
  if (count == self->history_evals && self->layer == self->history_layer)
    return;
  self->history_evals = count;
  self->history_layer = self->layer;
  GtkGrid *grid = self->history_grid;
  clear_children (GTK_WIDGET (grid));
  attach_cell (grid, "Step", 0, 0, TRUE);
  attach_cell (grid, "Val loss", 1, 0, TRUE);
  attach_cell (grid, "Used", 2, 0, TRUE);
  attach_cell (grid, "Unevenness", 3, 0, TRUE);
  if (count == 0 || self->layer < 0)
    {
      GtkWidget *none = gtk_label_new ("No evaluation yet");
      gtk_label_set_xalign (GTK_LABEL (none), 0.0f);
      gtk_widget_add_css_class (none, "dim-label");
      gtk_grid_attach (grid, none, 0, 1, 4, 1);
      return;
    }
  guint first = count > HISTORY_ROWS ? count - HISTORY_ROWS : 0;
  for (guint i = first; i < count; i++)
    {
      /* Newest first. */
      const PeerEvalPoint *point =
          &g_array_index (evals, PeerEvalPoint, count - 1 - (i - first));
      int row = (int) (i - first) + 1;
      g_autofree char *step = peer_format_count (point->step);
      g_autofree char *loss = g_strdup_printf ("%.4f", point->loss);
      g_autofree char *usage = g_strdup_printf ("%.1f %%", 100.0 * point->usage[self->layer]);
      g_autofree char *unevenness = g_strdup_printf ("%.3f", point->unevenness[self->layer]);
      attach_cell (grid, step, 0, row, FALSE);
      attach_cell (grid, loss, 1, row, FALSE);
      attach_cell (grid, usage, 2, row, FALSE);
      attach_cell (grid, unevenness, 3, row, FALSE);
    }
}

static void
update_measure_button (PeerExpertsPage *self)
{
  gtk_widget_set_visible (GTK_WIDGET (self->measure_button),
                          self->window == EXPERT_WINDOW_VALIDATION);
  gtk_widget_set_sensitive (GTK_WIDGET (self->measure_button), run_session (self) != NULL);
}

/* Everything that follows the run rather than the grid. */
static void
update (PeerExpertsPage *self)
{
  const model_config *cfg = run_config (self);
  if (!cfg)
    {
      gtk_stack_set_visible_child_name (self->stack, self->run ? "preparing" : "no-run");
      return;
    }
  if (!fill_layers (self))
    {
      g_autofree char *description = g_strdup_printf (
          "The blocks of “%s” are all dense or mixtures of experts. The experts of PEER layers "
          "and product-key memories are shown here: start a run from the peer-small or "
          "pkm-small preset to see them.",
          peer_run_get_name (self->run));
      adw_status_page_set_description (self->no_experts_status, description);
      gtk_stack_set_visible_child_name (self->stack, "no-experts");
      return;
    }
  gtk_stack_set_visible_child_name (self->stack, "experts");
  fill_history (self);
  update_measure_button (self);
  if (!run_session (self))
    {
      show_message (self, peer_run_get_state (self->run) == PEER_RUN_PREPARING
                              ? "The model is being built…"
                              : "This run was replayed from its log: it has no model to look "
                                "into");
      set_status (self, NULL);
      fill_usage (self, NULL);
      return;
    }
  schedule_refresh (self, FALSE);
}

/* What the map shows changed: the grid is asked for at once. */
static void
selection_changed (PeerExpertsPage *self)
{
  g_clear_pointer (&self->grid, peer_expert_grid_free);
  update_measure_button (self);
  fill_history (self);
  schedule_refresh (self, TRUE);
}

static void
on_layer_selected (PeerExpertsPage *self)
{
  if (self->filling)
    return;
  guint selected = gtk_drop_down_get_selected (self->layer_dropdown);
  if (selected >= self->layers->len)
    return;
  self->layer = g_array_index (self->layers, int, selected);
  fill_heads (self);
  selection_changed (self);
}

static void
on_head_selected (PeerExpertsPage *self)
{
  if (self->filling)
    return;
  guint selected = gtk_drop_down_get_selected (self->head_dropdown);
  if (selected == GTK_INVALID_LIST_POSITION)
    return;
  self->head = (int) selected - 1;
  selection_changed (self);
}

static void
on_window_selected (PeerExpertsPage *self)
{
  guint selected = gtk_drop_down_get_selected (self->window_dropdown);
  if (selected > EXPERT_WINDOW_VALIDATION)
    return;
  self->window = (expert_window) selected;
  selection_changed (self);
}

static void
on_metric_selected (PeerExpertsPage *self)
{
  guint selected = gtk_drop_down_get_selected (self->metric_dropdown);
  if (selected > EXPERT_METRIC_MEAN_ACTIVATION)
    return;
  self->metric = (expert_metric) selected;
  /* Every metric comes with the grid: no need to ask the worker. */
  show_grid (self);
}

static void
on_scale_toggled (PeerExpertsPage *self)
{
  peer_expert_heatmap_set_scale (self->heatmap, gtk_toggle_button_get_active (self->log_button)
                                                    ? EXPERT_HEATMAP_LOG
                                                    : EXPERT_HEATMAP_LINEAR);
}

static void
on_fit_clicked (PeerExpertsPage *self)
{
  peer_expert_heatmap_reset_view (self->heatmap);
}

static void
on_measure_clicked (PeerExpertsPage *self)
{
  self->measure_requested = TRUE;
  schedule_refresh (self, TRUE);
}

static void
on_expert_activated (PeerExpertsPage *self, int expert)
{
  if (self->layer >= 0)
    g_signal_emit (self, signals[SIGNAL_EXPERT_ACTIVATED], 0, self->layer, expert);
}

static void
on_map (PeerExpertsPage *self)
{
  schedule_refresh (self, FALSE);
}

/* ---- export --------------------------------------------------------------------------------- */

/* The map as the widget draws it: its grid, scale, marks and the cells in view. */
static void
render_heatmap (cairo_t *cr, double width, double height, const PlotStyle *style, void *data)
{
  PeerExpertsPage *self = data;
  ExpertHeatmapView view;
  peer_expert_heatmap_get_view (self->heatmap, &view);
  expert_heatmap_render (cr, width, height, peer_expert_heatmap_get_model (self->heatmap), &view,
                         style, NULL, NULL);
}

static const PlotStyle *
heatmap_style (gpointer data)
{
  PeerExpertsPage *self = data;
  return peer_expert_heatmap_get_style (self->heatmap);
}

/* Every expert of the grid on the map, whatever the view and the metric shown. */
static gboolean
write_expert_grid (const char *path, gpointer data, GError **error)
{
  PeerExpertsPage *self = data;
  const PeerExpertGrid *grid = self->grid;
  if (!grid || grid->tokens <= 0.0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                   "The map shows no grid of experts, so there are no numbers to export. Choose "
                   "a window with tokens in it (train the run, or measure the validation text) "
                   "first.");
      return FALSE;
    }
  PlotCsv *csv = plot_csv_new ();
  expert_grid_csv_add (csv, grid->side, grid->count, grid->gate_mass, grid->mean_activation);
  gboolean ok = plot_csv_save (csv, path, error);
  plot_csv_free (csv);
  return ok;
}

static const PeerExportKind heatmap_export = {
  .title = "Expert Map",
  .file_stem = "expert-map",
  .render = render_heatmap,
  .get_style = heatmap_style,
  .data = {
      { .label = "Expert grid (CSV)",
        .description = "Every expert of the layer and window shown, one row each: expert id, "
                       "row a, column b, selections, gate mass z′ and mean activation (empty "
                       "for an expert never selected).",
        .extension = "csv",
        .write = write_expert_grid },
  },
};

/* ---- public --------------------------------------------------------------------------------- */

void
peer_experts_page_set_run (PeerExpertsPage *self, PeerRun *run)
{
  g_return_if_fail (PEER_IS_EXPERTS_PAGE (self));
  if (self->run == run)
    return;
  if (self->run)
    {
      g_clear_signal_handler (&self->changed_handler, self->run);
      g_clear_object (&self->run);
    }
  cancel_request (self);
  g_clear_handle_id (&self->refresh_source, g_source_remove);
  g_clear_pointer (&self->grid, peer_expert_grid_free);
  g_array_set_size (self->layers, 0);
  self->layer = -1;
  self->head = -1;
  self->heads_listed = 0;
  self->evals_measured = 0;
  self->history_evals = G_MAXUINT;
  self->last_request_us = 0;
  if (run)
    {
      self->run = g_object_ref (run);
      self->changed_handler = g_signal_connect_swapped (run, "changed", G_CALLBACK (update), self);
    }
  peer_expert_heatmap_set_grid (self->heatmap, 0, NULL, FALSE);
  update (self);
}

int
peer_experts_page_get_layer (PeerExpertsPage *self)
{
  g_return_val_if_fail (PEER_IS_EXPERTS_PAGE (self), -1);
  return self->layer;
}

void
peer_experts_page_set_layer (PeerExpertsPage *self, int layer)
{
  g_return_if_fail (PEER_IS_EXPERTS_PAGE (self));
  for (guint i = 0; i < self->layers->len; i++)
    if (g_array_index (self->layers, int, i) == layer)
      gtk_drop_down_set_selected (self->layer_dropdown, i);
}

expert_metric
peer_experts_page_get_metric (PeerExpertsPage *self)
{
  g_return_val_if_fail (PEER_IS_EXPERTS_PAGE (self), EXPERT_METRIC_COUNT);
  return self->metric;
}

void
peer_experts_page_set_metric (PeerExpertsPage *self, expert_metric metric)
{
  g_return_if_fail (PEER_IS_EXPERTS_PAGE (self));
  gtk_drop_down_set_selected (self->metric_dropdown, (guint) metric);
}

int
peer_experts_page_get_head (PeerExpertsPage *self)
{
  g_return_val_if_fail (PEER_IS_EXPERTS_PAGE (self), -1);
  return self->head;
}

void
peer_experts_page_set_head (PeerExpertsPage *self, int head)
{
  g_return_if_fail (PEER_IS_EXPERTS_PAGE (self));
  if (head >= -1 && head + 1 < self->heads_listed)
    gtk_drop_down_set_selected (self->head_dropdown, (guint) (head + 1));
}

expert_window
peer_experts_page_get_window (PeerExpertsPage *self)
{
  g_return_val_if_fail (PEER_IS_EXPERTS_PAGE (self), EXPERT_WINDOW_LIVE);
  return self->window;
}

void
peer_experts_page_set_window (PeerExpertsPage *self, expert_window window)
{
  g_return_if_fail (PEER_IS_EXPERTS_PAGE (self));
  gtk_drop_down_set_selected (self->window_dropdown, (guint) window);
}

void
peer_experts_page_set_marked (PeerExpertsPage *self, int layer, const gint32 *experts, gsize n)
{
  g_return_if_fail (PEER_IS_EXPERTS_PAGE (self));
  g_free (self->marked);
  self->marked = n > 0 ? g_memdup2 (experts, n * sizeof *experts) : NULL;
  self->n_marked = n;
  self->marked_layer = layer;
  if (self->grid && self->grid->layer == layer)
    peer_expert_heatmap_set_marked (self->heatmap, self->marked, self->n_marked);
  else
    peer_expert_heatmap_set_marked (self->heatmap, NULL, 0);
}

const PeerExpertGrid *
peer_experts_page_get_grid (PeerExpertsPage *self)
{
  g_return_val_if_fail (PEER_IS_EXPERTS_PAGE (self), NULL);
  return self->grid;
}

/* ---- GObject -------------------------------------------------------------------------------- */

static void
peer_experts_page_dispose (GObject *object)
{
  PeerExpertsPage *self = PEER_EXPERTS_PAGE (object);
  if (self->run)
    {
      g_clear_signal_handler (&self->changed_handler, self->run);
      g_clear_object (&self->run);
    }
  cancel_request (self);
  g_clear_handle_id (&self->refresh_source, g_source_remove);
  gtk_widget_dispose_template (GTK_WIDGET (object), PEER_TYPE_EXPERTS_PAGE);
  /* The template's top box is not bound to a field, so it is unparented here. */
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (object))))
    gtk_widget_unparent (child);
  G_OBJECT_CLASS (peer_experts_page_parent_class)->dispose (object);
}

static void
peer_experts_page_finalize (GObject *object)
{
  PeerExpertsPage *self = PEER_EXPERTS_PAGE (object);
  g_clear_pointer (&self->grid, peer_expert_grid_free);
  g_array_unref (self->layers);
  g_free (self->marked);
  G_OBJECT_CLASS (peer_experts_page_parent_class)->finalize (object);
}

static void
peer_experts_page_class_init (PeerExpertsPageClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  object_class->dispose = peer_experts_page_dispose;
  object_class->finalize = peer_experts_page_finalize;

  /* A cell of the map was clicked: the model layer and the expert's id in it (a·n + b). */
  signals[SIGNAL_EXPERT_ACTIVATED] =
      g_signal_new ("expert-activated", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL,
                    NULL, NULL, G_TYPE_NONE, 2, G_TYPE_INT, G_TYPE_INT);
  /* A new grid is on the map (peer_experts_page_get_grid). */
  signals[SIGNAL_GRID_UPDATED] =
      g_signal_new ("grid-updated", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                    NULL, G_TYPE_NONE, 0);

  g_type_ensure (PEER_TYPE_EXPERT_HEATMAP);
  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/peerworkbench/Workbench/ui/experts-page.ui");
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertsPage, stack);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertsPage, no_experts_status);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertsPage, layer_dropdown);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertsPage, metric_dropdown);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertsPage, head_dropdown);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertsPage, window_dropdown);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertsPage, linear_button);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertsPage, log_button);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertsPage, measure_button);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertsPage, export_button);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertsPage, status_label);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertsPage, heatmap);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertsPage, usage_grid);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertsPage, usage_note);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertsPage, history_grid);
  gtk_widget_class_bind_template_callback (widget_class, on_layer_selected);
  gtk_widget_class_bind_template_callback (widget_class, on_metric_selected);
  gtk_widget_class_bind_template_callback (widget_class, on_head_selected);
  gtk_widget_class_bind_template_callback (widget_class, on_window_selected);
  gtk_widget_class_bind_template_callback (widget_class, on_scale_toggled);
  gtk_widget_class_bind_template_callback (widget_class, on_fit_clicked);
  gtk_widget_class_bind_template_callback (widget_class, on_measure_clicked);
  gtk_widget_class_bind_template_callback (widget_class, on_expert_activated);
}

static void
peer_experts_page_init (PeerExpertsPage *self)
{
  self->layers = g_array_new (FALSE, FALSE, sizeof (int));
  self->layer = -1;
  self->head = -1;
  self->marked_layer = -1;
  self->history_evals = G_MAXUINT;
  self->history_layer = -1;
  gtk_widget_init_template (GTK_WIDGET (self));
  /* The scale the template's toggles start on; log by default, where a grid of counts spanning
   * decades shows its structure. */
  on_scale_toggled (self);
  peer_export_attach (GTK_WIDGET (self->heatmap), GTK_WIDGET (self->export_button),
                      &heatmap_export, self);
  g_signal_connect (self, "map", G_CALLBACK (on_map), NULL);
  update (self);
}
