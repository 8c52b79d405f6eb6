#include "training-page.h"

#include <math.h>

#include "export-dialog.h"
#include "format.h"
#include "loss-csv.h"
#include "window.h"

struct _PeerTrainingPage {
  GtkWidget parent_instance;

  PeerRun *run;
  gulong changed_handler;

  GtkInscription *step_label;
  GtkProgressBar *progress_bar;
  GtkInscription *speed_label;
  GtkRevealer *failure_revealer;
  GtkLabel *failure_label;
  PeerLossPlot *plot;
  GtkLabel *plot_hint;
  GtkToggleButton *x_steps_button;
  GtkToggleButton *x_tokens_button;
  GtkToggleButton *x_flops_button;
  GtkToggleButton *log_x_button;
  GtkToggleButton *log_y_button;
  GtkScale *smoothing_scale;
  GtkButton *export_button;
  GtkLabel *sample_title;
  GtkLabel *sample_label;
};

G_DEFINE_FINAL_TYPE (PeerTrainingPage, peer_training_page, GTK_TYPE_WIDGET)

static void
update_progress (PeerTrainingPage *self)
{
  PeerRun *run = self->run;
  if (!run)
    {
      gtk_inscription_set_text (self->step_label, "No run");
      gtk_progress_bar_set_fraction (self->progress_bar, 0);
      gtk_inscription_set_text (self->speed_label, "");
      gtk_revealer_set_reveal_child (self->failure_revealer, FALSE);
      return;
    }
  PeerRunState state = peer_run_get_state (run);
  long step = peer_run_get_step (run);
  long total = peer_run_get_total_steps (run);
  g_autofree char *step_text = peer_format_count (step);
  g_autofree char *total_text = peer_format_count (total);
  g_autofree char *progress = g_strdup_printf ("Step %s of %s", step_text, total_text);
  gtk_inscription_set_text (self->step_label, progress);
  gtk_progress_bar_set_fraction (self->progress_bar,
                                 total > 0 ? CLAMP ((double) step / total, 0.0, 1.0) : 0.0);

  g_autofree char *speed = NULL;
  double rate = peer_run_get_tokens_per_second (run);
  g_autofree char *rate_text = peer_format_count (rate);
  g_autofree char *eta_text = peer_format_duration (peer_run_get_eta_seconds (run));
  switch (state)
    {
    case PEER_RUN_RUNNING:
      if (rate > 0)
        speed = g_strdup_printf ("%s tokens/s · %s left", rate_text, eta_text);
      else
        speed = g_strdup ("Starting…");
      break;
    case PEER_RUN_PAUSED:
      speed = rate > 0 ? g_strdup_printf ("Paused · %s tokens/s when running", rate_text)
                       : g_strdup ("Paused");
      break;
    case PEER_RUN_READY:
      speed = g_strdup ("Ready to start");
      break;
    case PEER_RUN_PREPARING:
      speed = g_strdup ("Building the model…");
      break;
    case PEER_RUN_LOG_ONLY:
      speed = g_strdup ("A replayed log: open its checkpoint to train it");
      break;
    default:
      speed = g_strdup (peer_run_state_to_label (state));
    }
  gtk_inscription_set_text (self->speed_label, speed);

  const char *failure = peer_run_get_failure (run);
  if (state == PEER_RUN_FAILED && failure)
    {
      g_autofree char *text = g_strdup_printf ("%s. The weights are those of the last good step; "
                                               "save them, or start a new run with a lower "
                                               "learning rate.",
                                               failure);
      gtk_label_set_label (self->failure_label, text);
    }
  gtk_revealer_set_reveal_child (self->failure_revealer, state == PEER_RUN_FAILED && failure);
}

static void
update_sample (PeerTrainingPage *self)
{
  long step = 0;
  const char *sample = self->run ? peer_run_get_sample (self->run, &step) : NULL;
  if (sample)
    {
      g_autofree char *step_text = peer_format_count (step);
      g_autofree char *title = g_strdup_printf ("Sample at step %s", step_text);
      gtk_label_set_label (self->sample_title, title);
      /* The sample starts after a newline prompt; leading blank lines only push it down. */
      while (*sample == '\n')
        sample++;
      gtk_label_set_label (self->sample_label, sample);
      gtk_widget_remove_css_class (GTK_WIDGET (self->sample_label), "dim-label");
      return;
    }
  gtk_label_set_label (self->sample_title, "Sample");
  const train_settings *settings = self->run ? peer_run_get_settings (self->run) : NULL;
  g_autofree char *hint = NULL;
  if (settings && settings->eval_interval > 0)
    {
      g_autofree char *interval = peer_format_count (settings->eval_interval);
      hint = g_strdup_printf ("The model writes a sample at each evaluation, every %s steps.",
                              interval);
    }
  else
    hint = g_strdup ("The model writes a sample at each evaluation.");
  gtk_label_set_label (self->sample_label, hint);
  gtk_widget_add_css_class (GTK_WIDGET (self->sample_label), "dim-label");
}

void
peer_training_page_update_hint (PeerTrainingPage *self)
{
  const LossPlotModel *model = peer_loss_plot_get_model (self->plot);
  size_t points = 0;
  for (size_t i = 0; i < model->n_series; i++)
    points += model->series[i].n_train + model->series[i].n_val;
  gtk_widget_set_visible (GTK_WIDGET (self->plot_hint), points == 0);
  if (points > 0)
    return;
  if (model->n_series == 0)
    gtk_label_set_label (self->plot_hint, "Create a run with the + button, or open one from "
                                          "the menu: its loss curves appear here.");
  else if (self->run && peer_run_get_state (self->run) == PEER_RUN_PREPARING)
    gtk_label_set_label (self->plot_hint, "Building the model…");
  else
    gtk_label_set_label (self->plot_hint, "Press Start to train: the loss appears here as it "
                                          "falls, step by step.");
}

static void
on_run_changed (PeerTrainingPage *self)
{
  update_progress (self);
  update_sample (self);
  peer_training_page_update_hint (self);
}

void
peer_training_page_set_run (PeerTrainingPage *self, PeerRun *run)
{
  if (self->run == run)
    return;
  if (self->run)
    {
      g_clear_signal_handler (&self->changed_handler, self->run);
      g_clear_object (&self->run);
    }
  if (run)
    {
      self->run = g_object_ref (run);
      self->changed_handler = g_signal_connect_swapped (run, "changed",
                                                        G_CALLBACK (on_run_changed), self);
    }
  on_run_changed (self);
}

PeerLossPlot *
peer_training_page_get_plot (PeerTrainingPage *self)
{
  return self->plot;
}

static void
on_x_axis_toggled (PeerTrainingPage *self, GtkToggleButton *button)
{
  if (!gtk_toggle_button_get_active (button))
    return;
  LossPlotXAxis axis = LOSS_PLOT_X_STEPS;
  if (button == self->x_tokens_button)
    axis = LOSS_PLOT_X_TOKENS;
  else if (button == self->x_flops_button)
    axis = LOSS_PLOT_X_FLOPS;
  peer_loss_plot_set_x_axis (self->plot, axis);
}

static void
on_log_toggled (PeerTrainingPage *self)
{
  peer_loss_plot_set_log_x (self->plot, gtk_toggle_button_get_active (self->log_x_button));
  peer_loss_plot_set_log_y (self->plot, gtk_toggle_button_get_active (self->log_y_button));
}

static void
on_smoothing_changed (PeerTrainingPage *self)
{
  double weight = gtk_range_get_value (GTK_RANGE (self->smoothing_scale));
  peer_loss_plot_set_smoothing (self->plot, weight);
}

/* ---- export --------------------------------------------------------------------------------- */

static void
render_loss_plot (cairo_t *cr, double width, double height, const PlotStyle *style, void *data)
{
  PeerTrainingPage *self = data;
  loss_plot_render (cr, width, height, peer_loss_plot_get_model (self->plot), style, NULL);
}

static const PlotStyle *
loss_plot_style (gpointer data)
{
  PeerTrainingPage *self = data;
  return peer_loss_plot_get_style (self->plot);
}

/* Every point of the runs the plot shows, from the runs themselves: the plot keeps only what it
 * draws, not the time, learning rate and gradient norm of each step. */
static gboolean
write_loss_series (const char *path, gpointer data, GError **error)
{
  PeerTrainingPage *self = data;
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));
  GListModel *runs = PEER_IS_WINDOW (root) ? peer_window_get_runs (PEER_WINDOW (root)) : NULL;
  PlotCsv *csv = plot_csv_new ();
  loss_csv_add_header (csv);
  guint shown = 0;
  for (guint i = 0; runs && i < g_list_model_get_n_items (runs); i++)
    {
      g_autoptr (PeerRun) run = g_list_model_get_item (runs, i);
      if (!peer_run_get_visible (run))
        continue;
      loss_csv_add_run (csv, peer_run_get_name (run), peer_run_get_loss_points (run),
                        peer_run_get_eval_points (run));
      shown++;
    }
  gboolean ok = FALSE;
  if (shown == 0)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                 "No run is shown on the plot, so there are no points to export. Tick the runs "
                 "to export in the sidebar.");
  else
    ok = plot_csv_save (csv, path, error);
  plot_csv_free (csv);
  return ok;
}

static const PeerExportKind loss_plot_export = {
  .title = "Loss Curves",
  .file_stem = "loss-curves",
  .render = render_loss_plot,
  .get_style = loss_plot_style,
  .data = {
      { .label = "Loss series (CSV)",
        .description = "Every training step and evaluation of the runs shown on the plot, one "
                       "row each: run, split (train or validation), step, tokens, flops, "
                       "seconds, loss in nats per token, lr, grad_norm.",
        .extension = "csv",
        .write = write_loss_series },
  },
};

static void
peer_training_page_dispose (GObject *object)
{
  PeerTrainingPage *self = PEER_TRAINING_PAGE (object);
  if (self->run)
    {
      g_clear_signal_handler (&self->changed_handler, self->run);
      g_clear_object (&self->run);
    }
  gtk_widget_dispose_template (GTK_WIDGET (object), PEER_TYPE_TRAINING_PAGE);
  /* The template's top box is not bound to a field, so it is unparented here. */
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (object))))
    gtk_widget_unparent (child);
  G_OBJECT_CLASS (peer_training_page_parent_class)->dispose (object);
}

static void
peer_training_page_class_init (PeerTrainingPageClass *klass)
{
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  G_OBJECT_CLASS (klass)->dispose = peer_training_page_dispose;

  g_type_ensure (PEER_TYPE_LOSS_PLOT);
  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/peerworkbench/Workbench/ui/training-page.ui");
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_bind_template_child (widget_class, PeerTrainingPage, step_label);
  gtk_widget_class_bind_template_child (widget_class, PeerTrainingPage, progress_bar);
  gtk_widget_class_bind_template_child (widget_class, PeerTrainingPage, speed_label);
  gtk_widget_class_bind_template_child (widget_class, PeerTrainingPage, failure_revealer);
  gtk_widget_class_bind_template_child (widget_class, PeerTrainingPage, failure_label);
  gtk_widget_class_bind_template_child (widget_class, PeerTrainingPage, plot);
  gtk_widget_class_bind_template_child (widget_class, PeerTrainingPage, plot_hint);
  gtk_widget_class_bind_template_child (widget_class, PeerTrainingPage, x_steps_button);
  gtk_widget_class_bind_template_child (widget_class, PeerTrainingPage, x_tokens_button);
  gtk_widget_class_bind_template_child (widget_class, PeerTrainingPage, x_flops_button);
  gtk_widget_class_bind_template_child (widget_class, PeerTrainingPage, log_x_button);
  gtk_widget_class_bind_template_child (widget_class, PeerTrainingPage, log_y_button);
  gtk_widget_class_bind_template_child (widget_class, PeerTrainingPage, smoothing_scale);
  gtk_widget_class_bind_template_child (widget_class, PeerTrainingPage, export_button);
  gtk_widget_class_bind_template_child (widget_class, PeerTrainingPage, sample_title);
  gtk_widget_class_bind_template_child (widget_class, PeerTrainingPage, sample_label);
  gtk_widget_class_bind_template_callback (widget_class, on_x_axis_toggled);
  gtk_widget_class_bind_template_callback (widget_class, on_log_toggled);
  gtk_widget_class_bind_template_callback (widget_class, on_smoothing_changed);
}

static void
peer_training_page_init (PeerTrainingPage *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  peer_export_attach (GTK_WIDGET (self->plot), GTK_WIDGET (self->export_button),
                      &loss_plot_export, self);
  on_smoothing_changed (self);
  on_run_changed (self);
}
