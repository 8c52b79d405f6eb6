#include "experiments-page.h"

#include <adwaita.h>
#include <math.h>
#include <string.h>

#include "experiment-figure.h"
#include "experiment-session.h"
#include "export-dialog.h"
#include "format.h"
#include "thread-pool.h"

#define PLOT_FONT_SCALE 0.95

/* What the page shows: a running (or finished) session's last update, or the results read from
 * a chosen folder. */
typedef struct {
  experiment *ex;
  experiment_result *results;
} Preview;

static void
preview_free (Preview *preview)
{
  if (!preview)
    return;
  experiment_free (preview->ex);
  g_free (preview->results);
  g_free (preview);
}

struct _PeerExperimentsPage {
  GtkWidget parent_instance;

  char *folder;
  gboolean folder_chosen; /* else it follows the suite */
  gboolean showing_suite; /* the suite row is being set to the folder's suite */
  PeerExperimentSession *session;
  gulong update_handler;
  Preview *preview;
  GCancellable *preview_cancellable;
  GtkNativeDialog *chooser;

  /* The rows of the variant list, for the experiment they were made for. */
  const experiment *rows_for;
  GPtrArray *rows;      /* AdwActionRow */
  GPtrArray *row_bars;  /* GtkProgressBar */
  int tables_signature; /* finished variants when the tables were last filled */

  cairo_surface_t *plot_cache;
  int cache_width, cache_height, cache_scale;
  guint64 plot_version, cache_version;
  guint64 plot_signature; /* of the data the plot was last asked to show */

  AdwComboRow *suite_row;
  AdwActionRow *folder_row;
  GtkButton *folder_button;
  GtkButton *start_button;
  GtkButton *stop_button;
  GtkLabel *status_label;
  GtkProgressBar *suite_progress;
  GtkDrawingArea *plot_area;
  GtkButton *export_button;
  PlotStyle style; /* the plot's, as last drawn */
  GtkGrid *methods_grid;
  GtkGrid *norm_grid;
  GtkListBox *variant_list;
};

G_DEFINE_FINAL_TYPE (PeerExperimentsPage, peer_experiments_page, GTK_TYPE_WIDGET)

static void show_view (PeerExperimentsPage *self);
static void load_preview (PeerExperimentsPage *self);

static const char *
selected_suite (PeerExperimentsPage *self)
{
  static const char *names[] = { "tiny", "quick", "full" };
  guint index = adw_combo_row_get_selected (self->suite_row);
  return names[index < G_N_ELEMENTS (names) ? index : 1];
}

static char *
default_folder (const char *suite)
{
  return g_build_filename (g_get_user_data_dir (), "peer-workbench", "experiments", suite, NULL);
}

/* The experiment and results on show, or NULL. */
static const experiment *
view_of (PeerExperimentsPage *self, const experiment_result **results,
         PeerExperimentUpdate **update)
{
  *update = self->session ? peer_experiment_session_get_update (self->session) : NULL;
  if (*update && (*update)->ex)
    {
      *results = (*update)->results;
      return (*update)->ex;
    }
  if (self->preview)
    {
      *results = self->preview->results;
      return self->preview->ex;
    }
  *results = NULL;
  return NULL;
}

gboolean
peer_experiments_page_is_running (PeerExperimentsPage *self)
{
  PeerExperimentUpdate *update =
      self->session ? peer_experiment_session_get_update (self->session) : NULL;
  return self->session &&
         (!update || update->state == PEER_EXPERIMENT_OPENING ||
          update->state == PEER_EXPERIMENT_RUNNING);
}

/* ---- the plot -------------------------------------------------------------------------------- */

static void
plot_style (PeerExperimentsPage *self, PlotStyle *style)
{
  GtkStyleContext *context = gtk_widget_get_style_context (GTK_WIDGET (self->plot_area));
  GdkRGBA foreground, background;
  gtk_style_context_get_color (context, &foreground);
  PlotColor fg = { foreground.red, foreground.green, foreground.blue, foreground.alpha };
  gboolean dark = plot_color_luminance (fg) > 0.5;
  if (dark)
    plot_style_init_dark (style);
  else
    plot_style_init_light (style);
  style->foreground = fg;
  if (gtk_style_context_lookup_color (context, "view_bg_color", &background))
    style->background = (PlotColor){ background.red, background.green, background.blue, 1.0 };
  style->grid = plot_color_mix (style->background, fg, dark ? 0.16 : 0.12);
  style->grid.alpha = 1.0;
  style->font_size *= PLOT_FONT_SCALE;
}

/* The figure of the experiment shown, or its empty frame: what the page draws and exports. */
static void
render_plot (cairo_t *cr, double width, double height, const PlotStyle *style, void *data)
{
  PeerExperimentsPage *self = data;
  PeerExperimentUpdate *update;
  const experiment_result *results;
  const experiment *ex = view_of (self, &results, &update);
  if (ex)
    {
      experiment_figure *figure = experiment_figure_new (ex, results, EXPERIMENT_FIGURE_OVERVIEW, 0);
      size_t n_panels;
      const ExperimentPlotPanel *panels = experiment_figure_get_panels (figure, &n_panels);
      experiment_plot_render (cr, width, height, panels, n_panels, style, NULL);
      experiment_figure_free (figure);
    }
  else
    {
      const ExperimentPlotPanel empty = {
        .x_label = "training FLOPs", .y_label = "validation loss (nats per byte)",
        .log_x = true, .x_numbers = PLOT_NUMBER_SCIENTIFIC,
        .empty_text = "Start a suite to see its variants' validation loss here",
      };
      experiment_plot_render (cr, width, height, &empty, 1, style, NULL);
    }
}

static const PlotStyle *
export_style (gpointer data)
{
  PeerExperimentsPage *self = data;
  plot_style (self, &self->style);
  return &self->style;
}

/* The results of the experiment shown, as text made by make (CSV or Markdown). */
static gboolean
write_results (const char *path, PeerExperimentsPage *self, char *(*make) (const experiment_results *),
               GError **error)
{
  PeerExperimentUpdate *update;
  const experiment_result *results;
  const experiment *ex = view_of (self, &results, &update);
  if (!ex || !results)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                           "There are no results yet: start or open a suite first");
      return FALSE;
    }
  experiment_results view = { .ex = ex, .results = (experiment_result *) results };
  g_autofree char *text = make (&view);
  if (!text)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED, "Out of memory");
      return FALSE;
    }
  return plot_export_save (path, text, strlen (text), error);
}

static gboolean
write_results_csv (const char *path, gpointer data, GError **error)
{
  return write_results (path, data, experiment_results_csv, error);
}

static gboolean
write_results_markdown (const char *path, gpointer data, GError **error)
{
  return write_results (path, data, experiment_results_markdown, error);
}

static const PeerExportKind experiment_plot_export = {
  .title = "Experiment Results",
  .file_stem = "experiment",
  .render = render_plot,
  .get_style = export_style,
  .data = {
      { .label = "Results (CSV)",
        .description = "One row per variant with every number: its shape, steps, training "
                       "FLOPs, validation loss, perplexity, bits per byte, usage and "
                       "unevenness.",
        .extension = "csv",
        .write = write_results_csv },
      { .label = "Tables (Markdown)",
        .description = "The tables the page shows: the methods at equal compute, and the "
                       "query-norm, number-of-experts and active-experts ablations.",
        .extension = "md",
        .write = write_results_markdown },
  },
};

/* Draws the figure into a cached image when the data or the size changed, then paints it. */
static void
draw_plot (GtkDrawingArea *area, cairo_t *cr, int width, int height, gpointer data)
{
  PeerExperimentsPage *self = data;
  int scale = gtk_widget_get_scale_factor (GTK_WIDGET (area));
  if (!self->plot_cache || self->cache_version != self->plot_version ||
      self->cache_width != width || self->cache_height != height || self->cache_scale != scale)
    {
      g_clear_pointer (&self->plot_cache, cairo_surface_destroy);
      self->plot_cache =
          cairo_image_surface_create (CAIRO_FORMAT_ARGB32, width * scale, height * scale);
      cairo_surface_set_device_scale (self->plot_cache, scale, scale);
      cairo_t *image = cairo_create (self->plot_cache);
      plot_style (self, &self->style);
      render_plot (image, width, height, &self->style, self);
      cairo_destroy (image);
      self->cache_version = self->plot_version;
      self->cache_width = width;
      self->cache_height = height;
      self->cache_scale = scale;
    }
  cairo_set_source_surface (cr, self->plot_cache, 0, 0);
  cairo_paint (cr);
}

/* ---- tables and rows ------------------------------------------------------------------------- */

static void
clear_grid (GtkGrid *grid)
{
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (grid))))
    gtk_grid_remove (grid, child);
}

static void
grid_cell (GtkGrid *grid, int column, int row, const char *text, gboolean header,
           gboolean numeric)
{
  GtkWidget *label = gtk_label_new (text);
  gtk_label_set_xalign (GTK_LABEL (label), numeric ? 1.0f : 0.0f);
  if (header)
    gtk_widget_add_css_class (label, "heading");
  if (numeric)
    gtk_widget_add_css_class (label, "numeric");
  gtk_grid_attach (grid, label, column, row, 1, 1);
}

/* The value with decimals digits after the point, or why there is none. */
static char *
format_value (const experiment_result *r, double value, int decimals)
{
  if (r->status == EXPERIMENT_DONE && isfinite (value))
    return g_strdup_printf ("%.*f", decimals, value);
  if (r->status == EXPERIMENT_FAILED)
    return g_strdup ("failed");
  return g_strdup ("–");
}

static int
norm_rank (peer_query_norm norm)
{
  return norm == PEER_NORM_BATCH ? 0 : norm == PEER_NORM_LAYER ? 1 : 2;
}

static int
compare_by_experts (gconstpointer a, gconstpointer b, gpointer data)
{
  const experiment *ex = data;
  const experiment_variant *x = &ex->variants[*(const int *) a];
  const experiment_variant *y = &ex->variants[*(const int *) b];
  if (x->n_experts != y->n_experts)
    return x->n_experts < y->n_experts ? -1 : 1;
  return norm_rank (x->query_norm) - norm_rank (y->query_norm);
}

static void
fill_tables (PeerExperimentsPage *self, const experiment *ex, const experiment_result *results)
{
  clear_grid (self->methods_grid);
  const char *method_headers[] = { "Method", "Params", "Active", "Steps", "Val loss",
                                   "Perplexity", "Bits/byte" };
  for (int c = 0; c < (int) G_N_ELEMENTS (method_headers); c++)
    grid_cell (self->methods_grid, c, 0, method_headers[c], TRUE, c > 0);
  int row = 1;
  for (int i = 0; ex && i < ex->n_variants; i++)
    {
      const experiment_variant *v = &ex->variants[i];
      if (!(v->groups & EXPERIMENT_GROUP_METHODS))
        continue;
      const experiment_result *r = &results[i];
      g_autofree char *params = peer_format_si ((double) v->params);
      g_autofree char *active = peer_format_si ((double) v->active_params);
      g_autofree char *steps = g_strdup_printf ("%ld", v->settings.steps);
      g_autofree char *loss = format_value (r, r->loss, 4);
      g_autofree char *perplexity = format_value (r, r->perplexity, 2);
      g_autofree char *bits = format_value (r, r->bits_per_byte, 3);
      const char *cells[] = { v->label, params, active, steps, loss, perplexity, bits };
      for (int c = 0; c < (int) G_N_ELEMENTS (cells); c++)
        grid_cell (self->methods_grid, c, row, cells[c], FALSE, c > 0);
      row++;
    }

  clear_grid (self->norm_grid);
  const char *norm_headers[] = { "N", "Query norm", "h·k", "Perplexity", "Usage %",
                                 "Unevenness" };
  for (int c = 0; c < (int) G_N_ELEMENTS (norm_headers); c++)
    grid_cell (self->norm_grid, c, 0, norm_headers[c], TRUE, c != 1);
  /* By N, then batch, layer, none, as results.md has them. */
  int order[EXPERIMENT_MAX_VARIANTS];
  int n_order = 0;
  for (int i = 0; ex && i < ex->n_variants; i++)
    if ((ex->variants[i].groups & (EXPERIMENT_GROUP_NORM | EXPERIMENT_GROUP_EXPERTS)) &&
        ex->variants[i].method == EXPERIMENT_METHOD_PEER)
      order[n_order++] = i;
  g_qsort_with_data (order, n_order, sizeof *order, compare_by_experts, (gpointer) ex);
  row = 1;
  for (int o = 0; o < n_order; o++)
    {
      int i = order[o];
      const experiment_variant *v = &ex->variants[i];
      const experiment_result *r = &results[i];
      int side = (int) lround (sqrt ((double) v->n_experts));
      g_autofree char *n = g_strdup_printf ("%d²", side);
      g_autofree char *hk = g_strdup_printf ("%d", v->heads * v->topk);
      g_autofree char *perplexity = format_value (r, r->perplexity, 2);
      g_autofree char *usage = format_value (r, r->usage * 100.0, 1);
      g_autofree char *unevenness = format_value (r, r->unevenness, 2);
      const char *cells[] = { n, peer_query_norm_name (v->query_norm), hk, perplexity, usage,
                              unevenness };
      for (int c = 0; c < (int) G_N_ELEMENTS (cells); c++)
        grid_cell (self->norm_grid, c, row, cells[c], FALSE, c != 1);
      row++;
    }
}

static void
make_rows (PeerExperimentsPage *self, const experiment *ex)
{
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self->variant_list))))
    gtk_list_box_remove (self->variant_list, child);
  g_ptr_array_set_size (self->rows, 0);
  g_ptr_array_set_size (self->row_bars, 0);
  self->rows_for = ex;
  self->tables_signature = -1;
  self->plot_signature = 0; /* another experiment: drawn again whatever it holds */
  for (int i = 0; ex && i < ex->n_variants; i++)
    {
      GtkWidget *row = adw_action_row_new ();
      adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), ex->variants[i].label);
      GtkWidget *bar = gtk_progress_bar_new ();
      gtk_widget_set_valign (bar, GTK_ALIGN_CENTER);
      gtk_widget_set_size_request (bar, 160, -1);
      adw_action_row_add_suffix (ADW_ACTION_ROW (row), bar);
      gtk_list_box_append (self->variant_list, row);
      g_ptr_array_add (self->rows, row);
      g_ptr_array_add (self->row_bars, bar);
    }
}

static char *
row_subtitle (const experiment_variant *v, const experiment_result *r, gboolean current)
{
  switch (r->status)
    {
    case EXPERIMENT_DONE:
      if (isfinite (r->usage))
        return g_strdup_printf ("Perplexity %.2f · %.3f bits/byte · %.1f%% of experts used",
                                r->perplexity, r->bits_per_byte, r->usage * 100.0);
      return g_strdup_printf ("Perplexity %.2f · %.3f bits/byte", r->perplexity,
                              r->bits_per_byte);
    case EXPERIMENT_FAILED:
      return g_strdup_printf ("Failed at step %ld: %s", r->step, r->message);
    case EXPERIMENT_PARTIAL:
      if (r->n_points > 0)
        return g_strdup_printf ("%s %ld of %ld · validation loss %.3f",
                                current ? "Training, step" : "At step", r->step, v->settings.steps,
                                r->points[r->n_points - 1].loss);
      return g_strdup_printf ("%s %ld of %ld", current ? "Training, step" : "At step", r->step,
                              v->settings.steps);
    case EXPERIMENT_PENDING:
      break;
    }
  return g_strdup_printf ("%ld steps to train", v->settings.steps);
}

static void
update_status (PeerExperimentsPage *self, const experiment *ex, const experiment_result *results,
               PeerExperimentUpdate *update)
{
  int done = 0;
  double flops_done = 0.0, flops_total = 0.0;
  for (int i = 0; ex && i < ex->n_variants; i++)
    {
      const experiment_result *r = &results[i];
      done += r->status == EXPERIMENT_DONE || r->status == EXPERIMENT_FAILED;
      flops_total += ex->variants[i].flops;
      flops_done += r->status == EXPERIMENT_DONE || r->status == EXPERIMENT_FAILED
                        ? ex->variants[i].flops
                        : (double) r->step * ex->variants[i].flops_per_step;
    }
  gtk_progress_bar_set_fraction (self->suite_progress,
                                 flops_total > 0 ? flops_done / flops_total : 0.0);

  g_autofree char *text = NULL;
  PeerExperimentState state = update ? update->state : PEER_EXPERIMENT_STOPPED;
  if (self->session && !update)
    state = PEER_EXPERIMENT_OPENING;
  if (self->session && state == PEER_EXPERIMENT_OPENING)
    text = g_strdup ("Opening the folder and the text…");
  else if (update && state == PEER_EXPERIMENT_FAILED)
    text = g_strdup_printf ("The suite stopped: %s", update->message ? update->message : "");
  else if (!ex)
    text = g_strdup ("No experiment in this folder yet: Start trains the suite here.");
  else if (update && state == PEER_EXPERIMENT_RUNNING && update->current >= 0)
    {
      const experiment_variant *v = &ex->variants[update->current];
      g_autofree char *eta = update->eta_seconds >= 0 ? peer_format_duration (update->eta_seconds)
                                                      : g_strdup ("unknown");
      g_autofree char *rate = peer_format_count (update->tokens_per_second);
      text = g_strdup_printf ("Suite %s: training %s (%d of %d), step %ld of %ld, loss %.3f, "
                              "%s tokens/s; %d finished; about %s left",
                              ex->suite, v->name, update->current + 1, ex->n_variants,
                              results[update->current].step, v->settings.steps,
                              update->train_loss, rate, done, eta);
    }
  else if (done == ex->n_variants)
    text = g_strdup_printf ("Suite %s: all %d variants finished, %.3g training FLOPs each. "
                            "The tables are also in the folder's results.md.",
                            ex->suite, ex->n_variants, ex->budget);
  else if (update && state == PEER_EXPERIMENT_RUNNING)
    text = g_strdup_printf ("Suite %s: %d of %d variants finished.", ex->suite, done,
                            ex->n_variants);
  else
    text = g_strdup_printf ("Suite %s: %d of %d variants finished; Start continues where it "
                            "stopped.",
                            ex->suite, done, ex->n_variants);
  gtk_label_set_label (self->status_label, text);
}

static void
update_controls (PeerExperimentsPage *self)
{
  gboolean running = peer_experiments_page_is_running (self);
  gtk_widget_set_sensitive (GTK_WIDGET (self->start_button), !running);
  gtk_widget_set_sensitive (GTK_WIDGET (self->stop_button), running);
  /* A folder that holds an experiment has its suite already. */
  gboolean existing = self->preview && self->preview->ex;
  gtk_widget_set_sensitive (GTK_WIDGET (self->suite_row), !running && !existing);
  adw_action_row_set_subtitle (ADW_ACTION_ROW (self->suite_row),
                               existing ? "The folder's experiment" : NULL);
  gtk_widget_set_sensitive (GTK_WIDGET (self->folder_button), !running);
  adw_action_row_set_subtitle (self->folder_row, self->folder);
}

/* Everything on the page from the view: rows, tables, plot and status. */
static void
show_view (PeerExperimentsPage *self)
{
  PeerExperimentUpdate *update;
  const experiment_result *results;
  const experiment *ex = view_of (self, &results, &update);
  if (ex != self->rows_for || (ex && (int) self->rows->len != ex->n_variants))
    make_rows (self, ex);
  int finished = 0;
  for (int i = 0; ex && i < ex->n_variants; i++)
    {
      const experiment_variant *v = &ex->variants[i];
      const experiment_result *r = &results[i];
      finished += (r->status == EXPERIMENT_DONE || r->status == EXPERIMENT_FAILED) * (i + 1);
      gboolean current = update && update->current == i &&
                         update->state == PEER_EXPERIMENT_RUNNING;
      g_autofree char *subtitle = row_subtitle (v, r, current);
      adw_action_row_set_subtitle (ADW_ACTION_ROW (self->rows->pdata[i]), subtitle);
      double fraction = r->status == EXPERIMENT_DONE || r->status == EXPERIMENT_FAILED
                            ? 1.0
                            : (double) r->step / (double) MAX (1, v->settings.steps);
      gtk_progress_bar_set_fraction (GTK_PROGRESS_BAR (self->row_bars->pdata[i]), fraction);
    }
  if (finished != self->tables_signature)
    {
      fill_tables (self, ex, results);
      self->tables_signature = finished;
    }
  update_status (self, ex, results, update);
  update_controls (self);
  /* The plot shows evaluations and final results, not steps: redrawn only when those change. */
  guint64 signature = (guint64) (guintptr) ex;
  for (int i = 0; ex && i < ex->n_variants; i++)
    signature = signature * 1000003u + (guint64) results[i].n_points * 8u + results[i].status;
  if (signature != self->plot_signature)
    {
      self->plot_signature = signature;
      self->plot_version++;
      gtk_widget_queue_draw (GTK_WIDGET (self->plot_area));
    }
}

/* ---- the session ----------------------------------------------------------------------------- */

static void
on_update (PeerExperimentsPage *self, PeerExperimentUpdate *update)
{
  show_view (self);
}

static void
drop_session (PeerExperimentsPage *self)
{
  if (!self->session)
    return;
  g_clear_signal_handler (&self->update_handler, self->session);
  peer_experiment_session_shutdown (self->session);
  g_clear_object (&self->session);
  /* Its experiment is gone: the next one may be allocated where it was. */
  self->rows_for = NULL;
}

void
peer_experiments_page_start (PeerExperimentsPage *self)
{
  if (peer_experiments_page_is_running (self))
    return;
  /* The finished session's results stay on show as a preview until the new one has its own. */
  drop_session (self);
  g_cancellable_cancel (self->preview_cancellable);
  int threads = MAX (1, thread_pool_default_threads ());
  /* A folder that holds an experiment continues it, whatever suite the row says. */
  gboolean existing = self->preview && self->preview->ex;
  self->session = peer_experiment_session_new (self->folder, existing ? NULL : selected_suite (self),
                                               0.0, threads);
  self->update_handler = g_signal_connect_swapped (self->session, "update",
                                                   G_CALLBACK (on_update), self);
  show_view (self);
}

static void
on_start (PeerExperimentsPage *self)
{
  peer_experiments_page_start (self);
}

static void
on_stop (PeerExperimentsPage *self)
{
  if (self->session)
    peer_experiment_session_stop (self->session);
  gtk_widget_set_sensitive (GTK_WIDGET (self->stop_button), FALSE);
}

/* ---- the folder's results, read off the main thread ------------------------------------------ */

static void
read_preview (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  const char *folder = data;
  g_autofree char *definition = g_build_filename (folder, EXPERIMENT_DEFINITION_FILE, NULL);
  if (!g_file_test (definition, G_FILE_TEST_EXISTS))
    {
      g_task_return_pointer (task, NULL, NULL);
      return;
    }
  peer_error err = { 0 };
  experiment *ex = experiment_load_definition (folder, &err);
  experiment_results *loaded = ex ? experiment_results_load (ex, folder, &err) : NULL;
  if (!loaded)
    {
      experiment_free (ex);
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED, "%s", err.message);
      return;
    }
  Preview *preview = g_new0 (Preview, 1);
  preview->ex = ex;
  preview->results = g_memdup2 (loaded->results,
                                sizeof (experiment_result) * MAX (1, ex->n_variants));
  experiment_results_free (loaded);
  g_task_return_pointer (task, preview, (GDestroyNotify) preview_free);
}

static void
on_preview_read (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (GError) error = NULL;
  Preview *preview = g_task_propagate_pointer (G_TASK (result), &error);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  PeerExperimentsPage *self = PEER_EXPERIMENTS_PAGE (source);
  g_clear_pointer (&self->preview, preview_free);
  self->preview = preview;
  self->rows_for = NULL;
  if (preview && preview->ex)
    {
      self->showing_suite = TRUE;
      peer_experiments_page_set_suite (self, preview->ex->suite);
      self->showing_suite = FALSE;
    }
  show_view (self);
  if (error)
    gtk_label_set_label (self->status_label, error->message);
}

static void
load_preview (PeerExperimentsPage *self)
{
  g_cancellable_cancel (self->preview_cancellable);
  g_clear_object (&self->preview_cancellable);
  self->preview_cancellable = g_cancellable_new ();
  GTask *task = g_task_new (self, self->preview_cancellable, on_preview_read, NULL);
  g_task_set_task_data (task, g_strdup (self->folder), g_free);
  g_task_set_return_on_cancel (task, TRUE);
  g_task_run_in_thread (task, read_preview);
  g_object_unref (task);
}

void
peer_experiments_page_set_folder (PeerExperimentsPage *self, const char *folder)
{
  if (peer_experiments_page_is_running (self))
    return;
  g_free (self->folder);
  self->folder = g_strdup (folder);
  self->folder_chosen = TRUE;
  drop_session (self);
  g_clear_pointer (&self->preview, preview_free);
  self->rows_for = NULL;
  show_view (self);
  load_preview (self);
}

const char *
peer_experiments_page_get_folder (PeerExperimentsPage *self)
{
  return self->folder;
}

void
peer_experiments_page_set_suite (PeerExperimentsPage *self, const char *suite)
{
  const char *names[] = { "tiny", "quick", "full" };
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    if (g_strcmp0 (names[i], suite) == 0)
      adw_combo_row_set_selected (self->suite_row, i);
}

static void
on_suite_changed (PeerExperimentsPage *self)
{
  if (self->showing_suite || self->folder_chosen || peer_experiments_page_is_running (self))
    return;
  g_free (self->folder);
  self->folder = default_folder (selected_suite (self));
  drop_session (self);
  g_clear_pointer (&self->preview, preview_free);
  self->rows_for = NULL;
  show_view (self);
  load_preview (self);
}

static void
on_folder_response (PeerExperimentsPage *self, int response, GtkNativeDialog *chooser)
{
  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr (GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (chooser));
      g_autofree char *path = file ? g_file_get_path (file) : NULL;
      if (path)
        peer_experiments_page_set_folder (self, path);
    }
  gtk_native_dialog_destroy (chooser);
  g_clear_object (&self->chooser);
}

static void
on_choose_folder (PeerExperimentsPage *self)
{
  if (self->chooser)
    return;
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));
  GtkFileChooserNative *chooser = gtk_file_chooser_native_new (
      "Experiment Folder", GTK_IS_WINDOW (root) ? GTK_WINDOW (root) : NULL,
      GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER, "_Choose", "_Cancel");
  self->chooser = GTK_NATIVE_DIALOG (chooser);
  g_signal_connect_swapped (chooser, "response", G_CALLBACK (on_folder_response), self);
  gtk_native_dialog_show (self->chooser);
}

/* ---- GObject --------------------------------------------------------------------------------- */

static void
peer_experiments_page_dispose (GObject *object)
{
  PeerExperimentsPage *self = PEER_EXPERIMENTS_PAGE (object);
  /* A running suite stops at its next step and saves: the folder continues next time. */
  drop_session (self);
  g_cancellable_cancel (self->preview_cancellable);
  g_clear_object (&self->preview_cancellable);
  if (self->chooser)
    {
      gtk_native_dialog_destroy (self->chooser);
      g_clear_object (&self->chooser);
    }
  gtk_widget_dispose_template (GTK_WIDGET (object), PEER_TYPE_EXPERIMENTS_PAGE);
  /* The template's scrolled window is not bound to a field, so it is unparented here. */
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (object))))
    gtk_widget_unparent (child);
  G_OBJECT_CLASS (peer_experiments_page_parent_class)->dispose (object);
}

static void
peer_experiments_page_finalize (GObject *object)
{
  PeerExperimentsPage *self = PEER_EXPERIMENTS_PAGE (object);
  preview_free (self->preview);
  g_clear_pointer (&self->plot_cache, cairo_surface_destroy);
  g_ptr_array_unref (self->rows);
  g_ptr_array_unref (self->row_bars);
  g_free (self->folder);
  G_OBJECT_CLASS (peer_experiments_page_parent_class)->finalize (object);
}

static void
peer_experiments_page_class_init (PeerExperimentsPageClass *klass)
{
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  G_OBJECT_CLASS (klass)->dispose = peer_experiments_page_dispose;
  G_OBJECT_CLASS (klass)->finalize = peer_experiments_page_finalize;
  gtk_widget_class_set_template_from_resource (
      widget_class, "/org/peerworkbench/Workbench/ui/experiments-page.ui");
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_bind_template_child (widget_class, PeerExperimentsPage, suite_row);
  gtk_widget_class_bind_template_child (widget_class, PeerExperimentsPage, folder_row);
  gtk_widget_class_bind_template_child (widget_class, PeerExperimentsPage, folder_button);
  gtk_widget_class_bind_template_child (widget_class, PeerExperimentsPage, start_button);
  gtk_widget_class_bind_template_child (widget_class, PeerExperimentsPage, stop_button);
  gtk_widget_class_bind_template_child (widget_class, PeerExperimentsPage, status_label);
  gtk_widget_class_bind_template_child (widget_class, PeerExperimentsPage, suite_progress);
  gtk_widget_class_bind_template_child (widget_class, PeerExperimentsPage, plot_area);
  gtk_widget_class_bind_template_child (widget_class, PeerExperimentsPage, export_button);
  gtk_widget_class_bind_template_child (widget_class, PeerExperimentsPage, methods_grid);
  gtk_widget_class_bind_template_child (widget_class, PeerExperimentsPage, norm_grid);
  gtk_widget_class_bind_template_child (widget_class, PeerExperimentsPage, variant_list);
  gtk_widget_class_bind_template_callback (widget_class, on_start);
  gtk_widget_class_bind_template_callback (widget_class, on_stop);
  gtk_widget_class_bind_template_callback (widget_class, on_suite_changed);
  gtk_widget_class_bind_template_callback (widget_class, on_choose_folder);
}

static void
peer_experiments_page_init (PeerExperimentsPage *self)
{
  self->rows = g_ptr_array_new ();
  self->row_bars = g_ptr_array_new ();
  self->tables_signature = -1;
  gtk_widget_init_template (GTK_WIDGET (self));
  gtk_drawing_area_set_draw_func (self->plot_area, draw_plot, self, NULL);
  peer_export_attach (GTK_WIDGET (self->plot_area), GTK_WIDGET (self->export_button),
                      &experiment_plot_export, self);
  self->folder = default_folder (selected_suite (self));
  show_view (self);
  load_preview (self);
}
