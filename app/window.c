#define _GNU_SOURCE /* gettid */
#include "window.h"

#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "experiments-page.h"
#include "experts-page.h"
#include "export-dialog.h"
#include "expert-inspector.h"
#include "run-history.h"
#include "run-inputs.h"
#include "run-row.h"
#include "thread-pool.h"
#include "tokens-page.h"
#include "training-page.h"

#define APP_ID "org.peerworkbench.Workbench"

struct _PeerWindow {
  AdwApplicationWindow parent_instance;

  GSettings *settings; /* NULL when the schema is not installed (running from the build) */
  GListStore *runs;    /* PeerRun */
  PeerRun *selected;
  gulong selected_changed_handler;
  gboolean close_confirmed;
  GtkNativeDialog *chooser;

  AdwToastOverlay *toast_overlay;
  AdwLeaflet *leaflet;
  GtkWidget *content;
  GtkListBox *run_list;
  GtkButton *start_button;
  AdwViewSwitcherTitle *switcher_title;
  AdwViewStack *view_stack;
  PeerTrainingPage *training_page;
  PeerExpertsPage *experts_page;
  PeerTokensPage *tokens_page;
};

G_DEFINE_FINAL_TYPE (PeerWindow, peer_window, ADW_TYPE_APPLICATION_WINDOW)

/* ---- helpers --------------------------------------------------------------------------------- */

void
peer_window_show_toast (PeerWindow *self, const char *text)
{
  AdwToast *toast = adw_toast_new (text);
  adw_toast_set_timeout (toast, 6);
  adw_toast_overlay_add_toast (self->toast_overlay, toast);
}

PeerLossPlot *
peer_window_get_plot (PeerWindow *self)
{
  return peer_training_page_get_plot (self->training_page);
}

GListModel *
peer_window_get_runs (PeerWindow *self)
{
  return G_LIST_MODEL (self->runs);
}

PeerRun *
peer_window_get_selected_run (PeerWindow *self)
{
  return self->selected;
}

int
peer_window_get_default_threads (PeerWindow *self)
{
  guint trainable = 0;
  for (guint i = 0; i < g_list_model_get_n_items (G_LIST_MODEL (self->runs)); i++)
    {
      g_autoptr (PeerRun) run = g_list_model_get_item (G_LIST_MODEL (self->runs), i);
      PeerRunState state = peer_run_get_state (run);
      trainable += state == PEER_RUN_PREPARING || peer_run_can_train (run);
    }
  return MAX (1, thread_pool_default_threads () / (int) (trainable + 1));
}

static gboolean
has_run_named (PeerWindow *self, const char *name)
{
  for (guint i = 0; i < g_list_model_get_n_items (G_LIST_MODEL (self->runs)); i++)
    {
      g_autoptr (PeerRun) run = g_list_model_get_item (G_LIST_MODEL (self->runs), i);
      if (g_strcmp0 (peer_run_get_name (run), name) == 0)
        return TRUE;
    }
  return FALSE;
}

/* "peer-small", then "peer-small 2", "peer-small 3": the legend tells runs apart by name. */
static char *
unique_name (PeerWindow *self, const char *base)
{
  if (!has_run_named (self, base))
    return g_strdup (base);
  for (int i = 2;; i++)
    {
      g_autofree char *name = g_strdup_printf ("%s %d", base, i);
      if (!has_run_named (self, name))
        return g_steal_pointer (&name);
    }
}

/* ---- the plot -------------------------------------------------------------------------------- */

typedef struct {
  double *steps, *tokens, *flops, *loss;
} PlotColumns;

static void
plot_columns_from_loss (PlotColumns *c, GArray *points, guint from)
{
  guint n = points->len - from;
  c->steps = g_new (double, MAX (n, 1));
  c->tokens = g_new (double, MAX (n, 1));
  c->flops = g_new (double, MAX (n, 1));
  c->loss = g_new (double, MAX (n, 1));
  for (guint i = 0; i < n; i++)
    {
      const PeerLossPoint *p = &g_array_index (points, PeerLossPoint, from + i);
      c->steps[i] = (double) p->step;
      c->tokens[i] = p->tokens;
      c->flops[i] = p->flops;
      c->loss[i] = p->loss;
    }
}

static void
plot_columns_from_eval (PlotColumns *c, GArray *points)
{
  guint n = points->len;
  c->steps = g_new (double, MAX (n, 1));
  c->tokens = g_new (double, MAX (n, 1));
  c->flops = g_new (double, MAX (n, 1));
  c->loss = g_new (double, MAX (n, 1));
  for (guint i = 0; i < n; i++)
    {
      const PeerEvalPoint *p = &g_array_index (points, PeerEvalPoint, i);
      c->steps[i] = (double) p->step;
      c->tokens[i] = p->tokens;
      c->flops[i] = p->flops;
      c->loss[i] = p->loss;
    }
}

static void
plot_columns_clear (PlotColumns *c)
{
  g_free (c->steps);
  g_free (c->tokens);
  g_free (c->flops);
  g_free (c->loss);
}

static void
plot_set_validation (PeerWindow *self, PeerRun *run)
{
  GArray *evals = peer_run_get_eval_points (run);
  PlotColumns c;
  plot_columns_from_eval (&c, evals);
  peer_loss_plot_set_validation (peer_window_get_plot (self), peer_run_get_id (run), evals->len,
                                 c.steps, c.tokens, c.flops, c.loss);
  plot_columns_clear (&c);
}

static GtkWidget *
row_of_run (PeerWindow *self, PeerRun *run)
{
  for (GtkWidget *child = gtk_widget_get_first_child (GTK_WIDGET (self->run_list)); child;
       child = gtk_widget_get_next_sibling (child))
    if (PEER_IS_RUN_ROW (child) && peer_run_row_get_run (PEER_RUN_ROW (child)) == run)
      return child;
  return NULL;
}

static void
plot_add_run (PeerWindow *self, PeerRun *run)
{
  PeerLossPlot *plot = peer_window_get_plot (self);
  GArray *points = peer_run_get_loss_points (run);
  PlotColumns c;
  plot_columns_from_loss (&c, points, 0);
  peer_loss_plot_set_series (plot, peer_run_get_id (run), peer_run_get_name (run), points->len,
                             c.steps, c.tokens, c.flops, c.loss);
  plot_columns_clear (&c);
  plot_set_validation (self, run);
  peer_loss_plot_set_series_visible (plot, peer_run_get_id (run), peer_run_get_visible (run));
  peer_training_page_update_hint (self->training_page);
}

static void
on_run_snapshot (PeerWindow *self, PeerSnapshot *snapshot, PeerRun *run)
{
  PeerLossPlot *plot = peer_window_get_plot (self);
  GArray *points = peer_run_get_loss_points (run);
  guint fresh = snapshot->loss_points->len;
  if (fresh > 0)
    {
      PlotColumns c;
      plot_columns_from_loss (&c, points, points->len - fresh);
      peer_loss_plot_append_points (plot, peer_run_get_id (run), fresh, c.steps, c.tokens,
                                    c.flops, c.loss);
      plot_columns_clear (&c);
    }
  if (snapshot->eval_points->len > 0)
    plot_set_validation (self, run);
  if (fresh > 0 || snapshot->eval_points->len > 0)
    peer_training_page_update_hint (self->training_page);

  if (snapshot->state == PEER_SESSION_FAILED && snapshot->message)
    {
      g_autofree char *text = g_strdup_printf ("“%s” stopped: %s", peer_run_get_name (run),
                                               snapshot->message);
      peer_window_show_toast (self, text);
    }
  else if (snapshot->message)
    peer_window_show_toast (self, snapshot->message);
}

static void
on_run_visible (PeerWindow *self, GParamSpec *pspec, PeerRun *run)
{
  PeerLossPlot *plot = peer_window_get_plot (self);
  if (peer_loss_plot_has_series (plot, peer_run_get_id (run)))
    peer_loss_plot_set_series_visible (plot, peer_run_get_id (run), peer_run_get_visible (run));
}

/* ---- actions --------------------------------------------------------------------------------- */

static void
set_action_enabled (PeerWindow *self, const char *name, gboolean enabled)
{
  GAction *action = g_action_map_lookup_action (G_ACTION_MAP (self), name);
  g_simple_action_set_enabled (G_SIMPLE_ACTION (action), enabled);
}

static void
update_controls (PeerWindow *self)
{
  PeerRun *run = self->selected;
  PeerRunState state = run ? peer_run_get_state (run) : PEER_RUN_LOG_ONLY;
  gboolean has_session = run && peer_run_get_session (run) != NULL;
  gboolean live = has_session && peer_run_can_train (run);
  set_action_enabled (self, "start", live && state != PEER_RUN_RUNNING);
  set_action_enabled (self, "pause", live && state == PEER_RUN_RUNNING);
  set_action_enabled (self, "step", live);
  set_action_enabled (self, "stop", live);
  set_action_enabled (self, "evaluate", has_session);
  set_action_enabled (self, "save", has_session);

  GtkWidget *button = GTK_WIDGET (self->start_button);
  if (state == PEER_RUN_RUNNING)
    {
      gtk_button_set_label (self->start_button, "_Pause");
      gtk_actionable_set_action_name (GTK_ACTIONABLE (button), "win.pause");
      gtk_widget_set_tooltip_text (button, "Pause Training (Ctrl+P)");
      gtk_widget_remove_css_class (button, "suggested-action");
    }
  else
    {
      gtk_button_set_label (self->start_button, state == PEER_RUN_PAUSED ? "_Resume" : "_Start");
      gtk_actionable_set_action_name (GTK_ACTIONABLE (button), "win.start");
      gtk_widget_set_tooltip_text (button, state == PEER_RUN_PAUSED ? "Resume Training (Ctrl+R)"
                                                                    : "Start Training (Ctrl+R)");
      gtk_widget_add_css_class (button, "suggested-action");
    }

  if (run)
    {
      adw_view_switcher_title_set_title (self->switcher_title, peer_run_get_name (run));
      g_autofree char *subtitle = g_strdup_printf ("%s · %s", peer_run_state_to_label (state),
                                                   peer_run_get_description (run));
      adw_view_switcher_title_set_subtitle (self->switcher_title, subtitle);
    }
  else
    {
      adw_view_switcher_title_set_title (self->switcher_title, "PEER Workbench");
      adw_view_switcher_title_set_subtitle (self->switcher_title, "");
    }
}

static PeerSession *
selected_session (PeerWindow *self)
{
  return self->selected ? peer_run_get_session (self->selected) : NULL;
}

static void
start_activated (GSimpleAction *action, GVariant *parameter, gpointer data)
{
  PeerSession *session = selected_session (data);
  if (session)
    peer_session_start (session);
}

static void
pause_activated (GSimpleAction *action, GVariant *parameter, gpointer data)
{
  PeerSession *session = selected_session (data);
  if (session)
    peer_session_pause (session);
}

static void
step_activated (GSimpleAction *action, GVariant *parameter, gpointer data)
{
  PeerSession *session = selected_session (data);
  if (session)
    peer_session_step_once (session);
}

static void
stop_activated (GSimpleAction *action, GVariant *parameter, gpointer data)
{
  PeerSession *session = selected_session (data);
  if (session)
    peer_session_stop (session);
}

static void
evaluate_activated (GSimpleAction *action, GVariant *parameter, gpointer data)
{
  PeerSession *session = selected_session (data);
  if (session)
    peer_session_evaluate (session);
}

static void
page_activated (GSimpleAction *action, GVariant *parameter, gpointer data)
{
  PeerWindow *self = data;
  adw_view_stack_set_visible_child_name (self->view_stack, g_variant_get_string (parameter, NULL));
}

static char *
last_folder (PeerWindow *self)
{
  return self->settings ? g_settings_get_string (self->settings, "last-folder") : NULL;
}

static void
remember_folder (PeerWindow *self, GFile *file, gboolean is_folder)
{
  if (!self->settings)
    return;
  g_autoptr (GFile) folder = is_folder ? g_object_ref (file) : g_file_get_parent (file);
  g_autofree char *path = folder ? g_file_get_path (folder) : NULL;
  if (path)
    g_settings_set_string (self->settings, "last-folder", path);
}

static void
start_chooser_in (PeerWindow *self, GtkFileChooser *chooser, const char *near)
{
  g_autofree char *folder = near ? g_path_get_dirname (near) : last_folder (self);
  if (folder && *folder && g_file_test (folder, G_FILE_TEST_IS_DIR))
    {
      g_autoptr (GFile) start = g_file_new_for_path (folder);
      gtk_file_chooser_set_current_folder (chooser, start, NULL);
    }
}

static void
on_save_response (PeerWindow *self, int response, GtkNativeDialog *chooser)
{
  PeerRun *run = g_object_get_data (G_OBJECT (chooser), "peer-run");
  PeerSession *session = run ? peer_run_get_session (run) : NULL;
  if (response == GTK_RESPONSE_ACCEPT && session)
    {
      g_autoptr (GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (chooser));
      g_autofree char *path = g_file_get_path (file);
      if (path)
        {
          peer_session_save (session, path);
          peer_run_set_path (run, path);
          remember_folder (self, file, FALSE);
        }
    }
  g_clear_object (&self->chooser);
}

static void
save_activated (GSimpleAction *action, GVariant *parameter, gpointer data)
{
  PeerWindow *self = data;
  PeerRun *run = self->selected;
  if (!run || !peer_run_get_session (run))
    return;
  GtkFileChooserNative *chooser = gtk_file_chooser_native_new ("Save Checkpoint", GTK_WINDOW (self),
                                                               GTK_FILE_CHOOSER_ACTION_SAVE,
                                                               "_Save", "_Cancel");
  g_autoptr (GtkFileFilter) filter = gtk_file_filter_new ();
  gtk_file_filter_set_name (filter, "Checkpoints (.safetensors)");
  gtk_file_filter_add_pattern (filter, "*.safetensors");
  gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (chooser), filter);
  const char *path = peer_run_get_path (run);
  gboolean checkpoint = path && g_str_has_suffix (path, ".safetensors");
  start_chooser_in (self, GTK_FILE_CHOOSER (chooser), checkpoint ? path : NULL);
  g_autofree char *base = checkpoint ? g_path_get_basename (path)
                                     : g_strdup_printf ("%s.safetensors", peer_run_get_name (run));
  g_strdelimit (base, "/", '-');
  gtk_file_chooser_set_current_name (GTK_FILE_CHOOSER (chooser), base);
  g_object_set_data_full (G_OBJECT (chooser), "peer-run", g_object_ref (run), g_object_unref);
  g_signal_connect_swapped (chooser, "response", G_CALLBACK (on_save_response), self);
  g_set_object (&self->chooser, GTK_NATIVE_DIALOG (chooser));
  g_object_unref (chooser);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (chooser));
}

static const GActionEntry win_actions[] = {
  { "start", start_activated, NULL, NULL, NULL, { 0 } },
  { "pause", pause_activated, NULL, NULL, NULL, { 0 } },
  { "step", step_activated, NULL, NULL, NULL, { 0 } },
  { "stop", stop_activated, NULL, NULL, NULL, { 0 } },
  { "evaluate", evaluate_activated, NULL, NULL, NULL, { 0 } },
  { "save", save_activated, NULL, NULL, NULL, { 0 } },
  { "page", page_activated, "s", NULL, NULL, { 0 } },
};

/* ---- selection ------------------------------------------------------------------------------- */

void
peer_window_select_run (PeerWindow *self, PeerRun *run)
{
  GtkWidget *row = run ? row_of_run (self, run) : NULL;
  if (row)
    gtk_list_box_select_row (self->run_list, GTK_LIST_BOX_ROW (row));
}

static void
on_row_selected (PeerWindow *self, GtkListBoxRow *row)
{
  PeerRun *run = row ? peer_run_row_get_run (PEER_RUN_ROW (row)) : NULL;
  if (self->selected)
    {
      g_clear_signal_handler (&self->selected_changed_handler, self->selected);
      g_clear_object (&self->selected);
    }
  if (run)
    {
      self->selected = g_object_ref (run);
      self->selected_changed_handler = g_signal_connect_swapped (run, "changed",
                                                                 G_CALLBACK (update_controls),
                                                                 self);
    }
  peer_training_page_set_run (self->training_page, run);
  peer_experts_page_set_run (self->experts_page, run);
  peer_tokens_page_set_run (self->tokens_page, run);
  update_controls (self);
}

static void
on_row_activated (PeerWindow *self, GtkListBoxRow *row)
{
  adw_leaflet_navigate (self->leaflet, ADW_NAVIGATION_DIRECTION_FORWARD);
}

static void
on_back_clicked (PeerWindow *self)
{
  adw_leaflet_navigate (self->leaflet, ADW_NAVIGATION_DIRECTION_BACK);
}

static GtkWidget *
create_row (gpointer item, gpointer data)
{
  PeerWindow *self = data;
  GtkWidget *row = peer_run_row_new (PEER_RUN (item));
  GdkRGBA color;
  if (peer_loss_plot_get_series_color (peer_window_get_plot (self), peer_run_get_id (item),
                                       &color))
    peer_run_row_set_color (PEER_RUN_ROW (row), &color);
  return row;
}

/* ---- adding runs ----------------------------------------------------------------------------- */

static void
add_to_window (PeerWindow *self, PeerRun *run)
{
  /* The plot first: the row takes its colour from it. */
  plot_add_run (self, run);
  g_signal_connect_object (run, "snapshot", G_CALLBACK (on_run_snapshot), self,
                           G_CONNECT_SWAPPED);
  g_signal_connect_object (run, "notify::visible", G_CALLBACK (on_run_visible), self,
                           G_CONNECT_SWAPPED);
  g_list_store_append (self->runs, run);
  peer_window_select_run (self, run);
}

static void
remove_from_window (PeerWindow *self, PeerRun *run)
{
  guint position;
  if (g_list_store_find (self->runs, run, &position))
    g_list_store_remove (self->runs, position);
  PeerLossPlot *plot = peer_window_get_plot (self);
  if (peer_loss_plot_has_series (plot, peer_run_get_id (run)))
    peer_loss_plot_remove_series (plot, peer_run_get_id (run));
  peer_training_page_update_hint (self->training_page);
  if (self->selected == run)
    {
      GtkListBoxRow *first = gtk_list_box_get_row_at_index (self->run_list, 0);
      if (first)
        gtk_list_box_select_row (self->run_list, first);
      else
        on_row_selected (self, NULL);
    }
}

typedef struct {
  char *name;
  model_config cfg;
  train_settings settings;
  GBytes *text;
  int threads;
  char *checkpoint; /* continue this checkpoint instead of building cfg */
  PeerWindow *window; /* weak: the window may close while the model is built */
} BuildJob;

static void
build_job_free (gpointer data)
{
  BuildJob *job = data;
  g_free (job->name);
  g_bytes_unref (job->text);
  g_free (job->checkpoint);
  g_clear_weak_pointer (&job->window);
  g_free (job);
}

typedef struct {
  BuildJob *job;
  PeerSession *session;
  GError *error;
} Build;

/* A thread of its own, at a lower priority (nice 10) that the session's worker and its thread
 * pool inherit: training is background work, and on a busy processor the window's main thread,
 * at the normal priority, runs first. Where nothing else wants the processor, training runs at
 * full speed all the same. */
static gpointer
build_at_low_priority (gpointer data)
{
  Build *build = data;
  BuildJob *job = build->job;
  setpriority (PRIO_PROCESS, (id_t) gettid (), 10);
  build->session =
      job->checkpoint
          ? peer_session_new_from_checkpoint (job->checkpoint, job->text, job->threads,
                                              &build->error)
          : peer_session_new (job->name, &job->cfg, &job->settings, job->text, job->threads,
                              &build->error);
  return NULL;
}

/* Another thread: building the model (initialising a million experts takes seconds) and
 * starting its worker. The session delivers its snapshots to the main context all the same. */
static void
build_session (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  Build build = { .job = data };
  g_thread_join (g_thread_new ("peer-build", build_at_low_priority, &build));
  if (build.session)
    g_task_return_pointer (task, build.session, g_object_unref);
  else
    g_task_return_error (task, build.error);
}

static void
on_session_built (GObject *source, GAsyncResult *result, gpointer data)
{
  PeerRun *run = PEER_RUN (source);
  BuildJob *job = g_task_get_task_data (G_TASK (result));
  g_autoptr (GError) error = NULL;
  g_autoptr (PeerSession) session = g_task_propagate_pointer (G_TASK (result), &error);
  if (session)
    {
      peer_run_attach_session (run, session);
      return;
    }
  if (!job->window)
    return;
  if (job->checkpoint && peer_run_get_loss_points (run)->len == 0)
    {
      /* A checkpoint that does not open leaves nothing to show. */
      g_autofree char *text = g_strdup_printf ("Could not open %s: %s", job->checkpoint,
                                               error->message);
      peer_window_show_toast (job->window, text);
      remove_from_window (job->window, run);
      return;
    }
  g_autofree char *text = g_strdup_printf ("Could not build “%s”: %s", peer_run_get_name (run),
                                           error->message);
  peer_window_show_toast (job->window, text);
  peer_run_fail (run, error->message);
}

static void
build_in_background (PeerWindow *self, PeerRun *run, BuildJob *job)
{
  g_set_weak_pointer (&job->window, self);
  GTask *task = g_task_new (run, NULL, on_session_built, NULL);
  g_task_set_task_data (task, job, build_job_free);
  g_task_run_in_thread (task, build_session);
  g_object_unref (task);
}

static GBytes *
built_in_text (void)
{
  GBytes *text = NULL;
  g_autofree char *name = NULL;
  peer_error err;
  if (!run_inputs_load_text (NULL, &text, &name, &err))
    g_error ("%s", err.message); /* the text is compiled into the program */
  return text;
}

PeerRun *
peer_window_add_run (PeerWindow *self, const char *name, const model_config *cfg,
                     const train_settings *settings, GBytes *text, int threads)
{
  g_autofree char *unique = unique_name (self, name);
  BuildJob *job = g_new0 (BuildJob, 1);
  job->name = g_strdup (unique);
  job->cfg = *cfg;
  job->settings = *settings;
  job->text = text ? g_bytes_ref (text) : built_in_text ();
  job->threads = threads > 0 ? threads : peer_window_get_default_threads (self);

  g_autoptr (PeerRun) run = peer_run_new (unique);
  peer_run_set_config (run, cfg, settings);
  add_to_window (self, run);
  build_in_background (self, run, job);
  return run;
}

PeerRun *
peer_window_add_default_run (PeerWindow *self, gboolean start)
{
  model_config cfg;
  train_settings settings;
  peer_error err;
  if (!run_inputs_load_config (NULL, RUN_INPUTS_DEFAULT_PRESET, &cfg, &settings, &err))
    g_error ("%s", err.message); /* the presets are compiled into the program */
  PeerRun *run = peer_window_add_run (self, RUN_INPUTS_DEFAULT_PRESET, &cfg, &settings, NULL, 0);
  if (start)
    peer_run_start_when_ready (run);
  return run;
}

static char *
name_of_path (const char *path)
{
  g_autofree char *base = g_path_get_basename (path);
  if (g_str_has_suffix (base, ".safetensors"))
    base[strlen (base) - strlen (".safetensors")] = '\0';
  return g_steal_pointer (&base);
}

PeerRun *
peer_window_open_path (PeerWindow *self, const char *path)
{
  if (peer_run_history_is_run (path))
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (PeerRunHistory) history = peer_run_history_load (path, &error);
      if (!history)
        {
          g_autofree char *text = g_strdup_printf ("Could not open the run: %s", error->message);
          peer_window_show_toast (self, text);
          return NULL;
        }
      g_autofree char *base = g_path_get_basename (history->dir);
      g_autofree char *name = unique_name (self, base);
      g_autoptr (PeerRun) run = peer_run_new (name);
      if (history->has_config)
        peer_run_set_config (run, &history->cfg, &history->settings);
      peer_run_set_history (run, history->loss_points, history->eval_points);
      peer_run_set_path (run, history->checkpoint_path ? history->checkpoint_path : history->dir);
      add_to_window (self, run);
      if (history->checkpoint_path)
        {
          BuildJob *job = g_new0 (BuildJob, 1);
          job->name = g_strdup (name);
          job->checkpoint = g_strdup (history->checkpoint_path);
          job->text = built_in_text ();
          job->threads = peer_window_get_default_threads (self);
          build_in_background (self, run, job);
        }
      else
        peer_run_fail (run, NULL);
      return run;
    }
  if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
    {
      g_autofree char *text = g_strdup_printf (
          "%s is neither a checkpoint (.safetensors) nor a run folder with a log.jsonl", path);
      peer_window_show_toast (self, text);
      return NULL;
    }
  g_autofree char *base = name_of_path (path);
  g_autofree char *name = unique_name (self, base);
  g_autoptr (PeerRun) run = peer_run_new (name);
  peer_run_set_path (run, path);
  add_to_window (self, run);
  BuildJob *job = g_new0 (BuildJob, 1);
  job->name = g_strdup (name);
  job->checkpoint = g_strdup (path);
  job->text = built_in_text ();
  job->threads = peer_window_get_default_threads (self);
  build_in_background (self, run, job);
  return run;
}

/* ---- dialogs --------------------------------------------------------------------------------- */

static void
on_new_run_create (PeerWindow *self, PeerNewRunDialog *dialog)
{
  model_config cfg;
  train_settings settings;
  peer_new_run_dialog_get_config (dialog, &cfg, &settings);
  peer_window_add_run (self, peer_new_run_dialog_get_name (dialog), &cfg, &settings,
                       peer_new_run_dialog_get_text (dialog, NULL),
                       peer_new_run_dialog_get_threads (dialog));
}

PeerNewRunDialog *
peer_window_show_new_run_dialog (PeerWindow *self)
{
  PeerNewRunDialog *dialog = peer_new_run_dialog_new (GTK_WINDOW (self), self->settings,
                                                      peer_window_get_default_threads (self));
  g_signal_connect_object (dialog, "create", G_CALLBACK (on_new_run_create), self,
                           G_CONNECT_SWAPPED);
  gtk_window_present (GTK_WINDOW (dialog));
  return dialog;
}

static void
on_open_response (PeerWindow *self, int response, GtkNativeDialog *chooser)
{
  if (response == GTK_RESPONSE_ACCEPT)
    {
      gboolean folders = gtk_file_chooser_get_action (GTK_FILE_CHOOSER (chooser)) ==
                         GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER;
      g_autoptr (GListModel) files = gtk_file_chooser_get_files (GTK_FILE_CHOOSER (chooser));
      for (guint i = 0; i < g_list_model_get_n_items (files); i++)
        {
          g_autoptr (GFile) file = g_list_model_get_item (files, i);
          g_autofree char *path = g_file_get_path (file);
          if (!path)
            continue;
          peer_window_open_path (self, path);
          remember_folder (self, file, folders);
        }
    }
  g_clear_object (&self->chooser);
}

void
peer_window_show_open_dialog (PeerWindow *self, gboolean folders)
{
  GtkFileChooserNative *chooser = gtk_file_chooser_native_new (
      folders ? "Open Run Folder" : "Open Checkpoint or Run Log", GTK_WINDOW (self),
      folders ? GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER : GTK_FILE_CHOOSER_ACTION_OPEN, "_Open",
      "_Cancel");
  gtk_file_chooser_set_select_multiple (GTK_FILE_CHOOSER (chooser), TRUE);
  if (!folders)
    {
      g_autoptr (GtkFileFilter) filter = gtk_file_filter_new ();
      gtk_file_filter_set_name (filter, "Checkpoints and run logs");
      gtk_file_filter_add_pattern (filter, "*.safetensors");
      gtk_file_filter_add_pattern (filter, "*.jsonl");
      gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (chooser), filter);
      g_autoptr (GtkFileFilter) all = gtk_file_filter_new ();
      gtk_file_filter_set_name (all, "All files");
      gtk_file_filter_add_pattern (all, "*");
      gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (chooser), all);
    }
  start_chooser_in (self, GTK_FILE_CHOOSER (chooser), NULL);
  g_signal_connect_swapped (chooser, "response", G_CALLBACK (on_open_response), self);
  g_set_object (&self->chooser, GTK_NATIVE_DIALOG (chooser));
  g_object_unref (chooser);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (chooser));
}

/* ---- drag and drop --------------------------------------------------------------------------- */

static gboolean
on_drop (PeerWindow *self, const GValue *value, double x, double y)
{
  if (!G_VALUE_HOLDS (value, GDK_TYPE_FILE_LIST))
    return FALSE;
  gboolean any = FALSE;
  for (GSList *l = gdk_file_list_get_files (g_value_get_boxed (value)); l; l = l->next)
    {
      g_autofree char *path = g_file_get_path (l->data);
      if (path && peer_window_open_path (self, path))
        any = TRUE;
    }
  return any;
}

/* ---- closing --------------------------------------------------------------------------------- */

static void
save_window_state (PeerWindow *self)
{
  if (!self->settings)
    return;
  int width = 0, height = 0;
  gtk_window_get_default_size (GTK_WINDOW (self), &width, &height);
  gboolean maximized = gtk_window_is_maximized (GTK_WINDOW (self));
  if (!maximized && width > 0 && height > 0)
    {
      g_settings_set_int (self->settings, "window-width", width);
      g_settings_set_int (self->settings, "window-height", height);
    }
  g_settings_set_boolean (self->settings, "window-maximized", maximized);
}

static void
on_close_response (PeerWindow *self, const char *response)
{
  if (g_strcmp0 (response, "close") != 0)
    return;
  self->close_confirmed = TRUE;
  gtk_window_close (GTK_WINDOW (self));
}

static gboolean
on_close_request (GtkWindow *window)
{
  PeerWindow *self = PEER_WINDOW (window);
  GString *unsaved = g_string_new (NULL);
  guint count = 0;
  for (guint i = 0; i < g_list_model_get_n_items (G_LIST_MODEL (self->runs)); i++)
    {
      g_autoptr (PeerRun) run = g_list_model_get_item (G_LIST_MODEL (self->runs), i);
      if (!peer_run_has_unsaved_work (run))
        continue;
      g_string_append_printf (unsaved, "%s“%s” (step %ld)", count ? ", " : "",
                              peer_run_get_name (run), peer_run_get_step (run));
      count++;
    }
  if (count == 0 || self->close_confirmed)
    {
      g_string_free (unsaved, TRUE);
      save_window_state (self);
      return FALSE;
    }
  g_autofree char *body = NULL;
  if (count == 1)
    body = g_strdup_printf ("The run %s has trained steps that are not saved. Closing the window "
                            "ends the run and loses them; save a checkpoint first to keep them.",
                            unsaved->str);
  else
    body = g_strdup_printf ("These runs have trained steps that are not saved: %s. Closing the "
                            "window ends the runs and loses those steps; save a checkpoint of "
                            "each first to keep them.",
                            unsaved->str);
  g_string_free (unsaved, TRUE);
  GtkWidget *dialog = adw_message_dialog_new (window, "Close Without Saving?", body);
  adw_message_dialog_add_responses (ADW_MESSAGE_DIALOG (dialog), "cancel", "_Cancel", "close",
                                    "_Close Without Saving", NULL);
  adw_message_dialog_set_response_appearance (ADW_MESSAGE_DIALOG (dialog), "close",
                                              ADW_RESPONSE_DESTRUCTIVE);
  adw_message_dialog_set_default_response (ADW_MESSAGE_DIALOG (dialog), "cancel");
  adw_message_dialog_set_close_response (ADW_MESSAGE_DIALOG (dialog), "cancel");
  g_signal_connect_swapped (dialog, "response", G_CALLBACK (on_close_response), self);
  gtk_window_present (GTK_WINDOW (dialog));
  return TRUE;
}

/* ---- GObject --------------------------------------------------------------------------------- */

PeerWindow *
peer_window_new (GtkApplication *application)
{
  return g_object_new (PEER_TYPE_WINDOW, "application", application, NULL);
}

static void
peer_window_dispose (GObject *object)
{
  PeerWindow *self = PEER_WINDOW (object);
  if (self->selected)
    {
      g_clear_signal_handler (&self->selected_changed_handler, self->selected);
      g_clear_object (&self->selected);
    }
  if (self->chooser)
    {
      gtk_native_dialog_destroy (self->chooser);
      g_clear_object (&self->chooser);
    }
  /* Taking the rows down selects none; the pages are gone by then. */
  if (self->run_list)
    g_signal_handlers_disconnect_by_data (self->run_list, self);
  gtk_widget_dispose_template (GTK_WIDGET (object), PEER_TYPE_WINDOW);
  /* Runs end their workers when the last reference goes, which the store holds. */
  g_clear_object (&self->runs);
  g_clear_object (&self->settings);
  G_OBJECT_CLASS (peer_window_parent_class)->dispose (object);
}

static void
peer_window_class_init (PeerWindowClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  GtkWindowClass *window_class = GTK_WINDOW_CLASS (klass);
  object_class->dispose = peer_window_dispose;
  window_class->close_request = on_close_request;

  g_type_ensure (PEER_TYPE_TRAINING_PAGE);
  g_type_ensure (PEER_TYPE_EXPERTS_PAGE);
  g_type_ensure (PEER_TYPE_TOKENS_PAGE);
  g_type_ensure (PEER_TYPE_EXPERIMENTS_PAGE);
  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/peerworkbench/Workbench/ui/window.ui");
  gtk_widget_class_bind_template_child (widget_class, PeerWindow, toast_overlay);
  gtk_widget_class_bind_template_child (widget_class, PeerWindow, leaflet);
  gtk_widget_class_bind_template_child (widget_class, PeerWindow, content);
  gtk_widget_class_bind_template_child (widget_class, PeerWindow, run_list);
  gtk_widget_class_bind_template_child (widget_class, PeerWindow, start_button);
  gtk_widget_class_bind_template_child (widget_class, PeerWindow, switcher_title);
  gtk_widget_class_bind_template_child (widget_class, PeerWindow, view_stack);
  gtk_widget_class_bind_template_child (widget_class, PeerWindow, training_page);
  gtk_widget_class_bind_template_child (widget_class, PeerWindow, experts_page);
  gtk_widget_class_bind_template_child (widget_class, PeerWindow, tokens_page);
  gtk_widget_class_bind_template_callback (widget_class, on_back_clicked);
}

static void
restore_window_state (PeerWindow *self)
{
  GSettingsSchemaSource *source = g_settings_schema_source_get_default ();
  g_autoptr (GSettingsSchema) schema = source ? g_settings_schema_source_lookup (source, APP_ID,
                                                                                 TRUE)
                                              : NULL;
  if (!schema)
    return;
  self->settings = g_settings_new_full (schema, NULL, NULL);
  int width = g_settings_get_int (self->settings, "window-width");
  int height = g_settings_get_int (self->settings, "window-height");
  if (width > 0 && height > 0)
    gtk_window_set_default_size (GTK_WINDOW (self), width, height);
  if (g_settings_get_boolean (self->settings, "window-maximized"))
    gtk_window_maximize (GTK_WINDOW (self));
}

/* An expert clicked on the Experts map or on a token's retrieval path: its inspector, on the
 * selected run's model. */
static void
open_inspector (PeerWindow *self, int layer, int expert, int head)
{
  PeerSession *session = self->selected ? peer_run_get_session (self->selected) : NULL;
  if (!session)
    {
      adw_toast_overlay_add_toast (self->toast_overlay,
                                   adw_toast_new ("This run has no model to inspect"));
      return;
    }
  PeerExpertInspector *inspector =
      peer_expert_inspector_present (session, layer, expert, GTK_WINDOW (self));
  if (head >= 0)
    peer_expert_inspector_set_head (inspector, head);
}

static void
on_map_expert_activated (PeerWindow *self, int layer, int expert)
{
  open_inspector (self, layer, expert, peer_experts_page_get_head (self->experts_page));
}

static void
on_path_expert_activated (PeerWindow *self, int layer, int expert)
{
  open_inspector (self, layer, expert, -1);
}

/* The experts the current token chose are ringed on the Experts map of their layer. */
static void
on_experts_chosen (PeerWindow *self, int layer, GArray *experts)
{
  if (layer < 0 || !experts || experts->len == 0)
    {
      peer_experts_page_set_marked (self->experts_page, -1, NULL, 0);
      return;
    }
  peer_experts_page_set_marked (self->experts_page, layer, (const gint32 *) experts->data,
                                experts->len);
}

static void
peer_window_init (PeerWindow *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  self->runs = g_list_store_new (PEER_TYPE_RUN);
  g_action_map_add_action_entries (G_ACTION_MAP (self), win_actions, G_N_ELEMENTS (win_actions),
                                   self);
  gtk_list_box_bind_model (self->run_list, G_LIST_MODEL (self->runs), create_row, self, NULL);
  g_signal_connect_swapped (self->run_list, "row-selected", G_CALLBACK (on_row_selected), self);
  g_signal_connect_swapped (self->run_list, "row-activated", G_CALLBACK (on_row_activated),
                            self);

  GtkDropTarget *target = gtk_drop_target_new (GDK_TYPE_FILE_LIST, GDK_ACTION_COPY);
  g_signal_connect_swapped (target, "drop", G_CALLBACK (on_drop), self);
  gtk_widget_add_controller (GTK_WIDGET (self->toast_overlay), GTK_EVENT_CONTROLLER (target));

  g_signal_connect_swapped (self->experts_page, "expert-activated",
                            G_CALLBACK (on_map_expert_activated), self);
  g_signal_connect_swapped (self->tokens_page, "expert-activated",
                            G_CALLBACK (on_path_expert_activated), self);
  g_signal_connect_swapped (self->tokens_page, "experts-chosen", G_CALLBACK (on_experts_chosen),
                            self);

  peer_export_add_action (GTK_APPLICATION_WINDOW (self), GTK_WIDGET (self->view_stack));
  restore_window_state (self);
  update_controls (self);
}
