/* The workbench window as a user drives it, on a real display (Xvfb under meson test): it opens
 * with the default run ready; a tiny run started from the window's actions puts its loss on the
 * plot, pauses within a step, trains exactly one step at a time, resumes and stops; the main
 * loop keeps running while a run trains; a peer-train run folder replays into the plot and a
 * saved checkpoint opens as a run that can train; closing with unsaved steps asks first.
 *
 * Every wait has a generous limit that only guards against a hang; nothing here times the
 * engine, except the main loop's longest pause, which is what a user feels. */
#include <glib/gstdio.h>
#include <time.h>
#include <math.h>
#include <string.h>

#include "test-ui-util.h"

static PeerWindow *window;

static gboolean
run_is (PeerRun *run, PeerRunState state)
{
  return peer_run_get_state (run) == state;
}

static gboolean
run_is_ready (gpointer run)
{
  return run_is (run, PEER_RUN_READY);
}

static gboolean
run_is_running (gpointer run)
{
  return run_is (run, PEER_RUN_RUNNING);
}

static gboolean
run_is_paused (gpointer run)
{
  return run_is (run, PEER_RUN_PAUSED);
}

static gboolean
run_is_stopped (gpointer run)
{
  return run_is (run, PEER_RUN_STOPPED);
}

static gboolean
window_is_mapped (gpointer data)
{
  return window && gtk_widget_get_mapped (GTK_WIDGET (window));
}

static gboolean
action_enabled (const char *name)
{
  return g_action_group_get_action_enabled (G_ACTION_GROUP (window), name);
}

static void
activate (const char *name)
{
  g_assert_true (action_enabled (name));
  g_action_group_activate_action (G_ACTION_GROUP (window), name, NULL);
}

static PeerRun *
add_tiny_run (const char *name, int threads)
{
  model_config cfg;
  train_settings settings;
  ui_test_tiny_run (&cfg, &settings);
  PeerRun *run = peer_window_add_run (window, name, &cfg, &settings, NULL, threads);
  g_assert_true (ui_test_wait (run_is_ready, run, 60));
  g_assert_true (peer_window_get_selected_run (window) == run);
  return run;
}

/* ---- the window opens ------------------------------------------------------------------------ */

static void
test_opens (void)
{
  PeerApplication *app = ui_test_application ();
  g_application_activate (G_APPLICATION (app));
  window = PEER_WINDOW (gtk_application_get_active_window (GTK_APPLICATION (app)));
  g_assert_nonnull (window);
  g_assert_true (ui_test_wait (window_is_mapped, NULL, 30));

  GListModel *runs = peer_window_get_runs (window);
  g_assert_cmpuint (g_list_model_get_n_items (runs), ==, 1);
  g_autoptr (PeerRun) run = g_list_model_get_item (runs, 0);
  g_assert_cmpstr (peer_run_get_name (run), ==, "peer-small");
  g_assert_true (peer_window_get_selected_run (window) == run);
  g_assert_true (ui_test_wait (run_is_ready, run, 60));

  /* One click trains: the suggested Start button's action is enabled. */
  GtkWidget *start = ui_test_find_widget (GTK_WIDGET (window), "start-button");
  g_assert_nonnull (start);
  g_assert_cmpstr (gtk_actionable_get_action_name (GTK_ACTIONABLE (start)), ==, "win.start");
  g_assert_true (gtk_widget_has_css_class (start, "suggested-action"));
  g_assert_true (action_enabled ("start"));
  g_assert_false (action_enabled ("pause"));
  g_assert_cmpint (ui_test_plot_points (window, run), ==, 0);
}

/* ---- start, pause, step, resume, stop -------------------------------------------------------- */

typedef struct {
  PeerWindow *window;
  PeerRun *run;
  int points;
} PlotWait;

static gboolean
plot_has_points (gpointer data)
{
  PlotWait *wait = data;
  return ui_test_plot_points (wait->window, wait->run) >= wait->points;
}

static int
run_points (PeerRun *run)
{
  return (int) peer_run_get_loss_points (run)->len;
}

static void
test_train_pause_resume_stop (void)
{
  PeerRun *run = add_tiny_run ("tiny", 1);

  activate ("start");
  g_assert_true (ui_test_wait (run_is_running, run, 30));
  PlotWait wait = { window, run, 5 };
  g_assert_true (ui_test_wait (plot_has_points, &wait, 60));
  g_assert_false (action_enabled ("start"));
  GtkWidget *start = ui_test_find_widget (GTK_WIDGET (window), "start-button");
  g_assert_cmpstr (gtk_actionable_get_action_name (GTK_ACTIONABLE (start)), ==, "win.pause");

  /* Pause: the worker finishes the step it is in and trains no other. */
  activate ("pause");
  g_assert_true (ui_test_wait (run_is_paused, run, 30));
  int paused_points = run_points (run);
  g_assert_cmpint (paused_points, ==, peer_run_get_step (run));
  ui_test_spin (0.3);
  g_assert_cmpint (run_points (run), ==, paused_points);
  g_assert_cmpint (ui_test_plot_points (window, run), ==, paused_points);
  g_assert_true (action_enabled ("start"));
  g_assert_cmpstr (gtk_actionable_get_action_name (GTK_ACTIONABLE (start)), ==, "win.start");

  /* One step, exactly. */
  activate ("step");
  wait.points = paused_points + 1;
  g_assert_true (ui_test_wait (plot_has_points, &wait, 30));
  ui_test_spin (0.2);
  g_assert_cmpint (run_points (run), ==, paused_points + 1);
  g_assert_true (run_is_paused (run));

  /* Resume. */
  activate ("start");
  g_assert_true (ui_test_wait (run_is_running, run, 30));
  wait.points = paused_points + 6;
  g_assert_true (ui_test_wait (plot_has_points, &wait, 60));

  /* Stop: for good. */
  activate ("stop");
  g_assert_true (ui_test_wait (run_is_stopped, run, 30));
  int stopped_points = run_points (run);
  ui_test_spin (0.3);
  g_assert_cmpint (run_points (run), ==, stopped_points);
  g_assert_false (action_enabled ("start"));
  g_assert_false (action_enabled ("step"));
  g_assert_true (action_enabled ("save"));
  GArray *points = peer_run_get_loss_points (run);
  for (int i = 0; i < stopped_points; i++)
    g_assert_true (isfinite (g_array_index (points, PeerLossPoint, i).loss));
}

/* ---- responsiveness -------------------------------------------------------------------------- */

typedef struct {
  gint64 last, last_cpu;
  gint64 longest, longest_cpu;
  guint beats;
} Heartbeat;

/* Microseconds of CPU the calling thread has used. */
static gint64
thread_cpu_us (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_THREAD_CPUTIME_ID, &ts);
  return (gint64) ts.tv_sec * G_USEC_PER_SEC + ts.tv_nsec / 1000;
}

static gboolean
beat (gpointer data)
{
  Heartbeat *heart = data;
  gint64 now = g_get_monotonic_time (), cpu = thread_cpu_us ();
  if (heart->last)
    {
      heart->longest = MAX (heart->longest, now - heart->last);
      heart->longest_cpu = MAX (heart->longest_cpu, cpu - heart->last_cpu);
    }
  heart->last = now;
  heart->last_cpu = cpu;
  heart->beats++;
  return G_SOURCE_CONTINUE;
}

/* A source that asks to run every millisecond runs as soon as the main loop comes round again,
 * so the longest gap between its runs is the longest the loop was busy: with snapshots, plot
 * updates, redraws. The run uses every processor, as a user's run does by default. The gap is
 * measured in the main thread's own CPU time, which is the work the loop did: on a shared
 * machine the wall-clock gap also holds the time other processes had the core, and is only
 * reported. */
static void
test_responsive (void)
{
  model_config cfg;
  train_settings settings;
  ui_test_tiny_run (&cfg, &settings);
  /* Steps of a few milliseconds, so that a snapshot carries dozens of points to plot. */
  cfg.d_model = 64;
  settings.batch_size = 4;
  PeerRun *run = peer_window_add_run (window, "responsive", &cfg, &settings, NULL, 0);
  g_assert_true (ui_test_wait (run_is_ready, run, 60));
  activate ("start");
  g_assert_true (ui_test_wait (run_is_running, run, 30));
  ui_test_spin (0.5);

  int points_before = run_points (run);
  Heartbeat heart = { 0 };
  guint source = g_timeout_add (1, beat, &heart);
  ui_test_spin (3.0);
  g_source_remove (source);
  int points_during = run_points (run) - points_before;

  activate ("stop");
  g_assert_true (ui_test_wait (run_is_stopped, run, 30));
  g_test_message ("%u main-loop iterations in 3 s of training (%d steps plotted); longest gap "
                  "%.1f ms of the main thread's CPU time, %.1f ms of wall time",
                  heart.beats, points_during, heart.longest_cpu / 1000.0,
                  heart.longest / 1000.0);
  g_assert_cmpint (points_during, >, 0);
  g_assert_cmpint (heart.longest_cpu, <, 50 * 1000);
}

/* ---- opening runs ---------------------------------------------------------------------------- */

static void
write_file (const char *path, const char *text)
{
  g_autoptr (GError) error = NULL;
  g_assert_true (g_file_set_contents (path, text, -1, &error));
}

static gboolean
run_has_session (gpointer run)
{
  return peer_run_get_session (run) != NULL && peer_run_get_state (run) != PEER_RUN_PREPARING;
}

static gboolean
run_saved (gpointer run)
{
  return !peer_run_has_unsaved_work (run);
}

static void
test_open_folder_and_checkpoint (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("peer-ui-XXXXXX", &error);
  g_assert_no_error (error);

  /* A log as peer-train writes it: steps and evaluations; no checkpoint beside it. */
  g_autofree char *run_dir = g_build_filename (dir, "replayed", NULL);
  g_assert_cmpint (g_mkdir (run_dir, 0700), ==, 0);
  g_autofree char *log = g_build_filename (run_dir, "log.jsonl", NULL);
  write_file (log,
              "{\"type\":\"step\",\"step\":10,\"loss\":3.5,\"lr\":0.001,\"grad_norm\":1,"
              "\"tokens\":640,\"flops\":1e9,\"tokens_per_second\":100,\"time\":1}\n"
              "{\"type\":\"step\",\"step\":20,\"loss\":3.0,\"lr\":0.001,\"grad_norm\":1,"
              "\"tokens\":1280,\"flops\":2e9,\"tokens_per_second\":100,\"time\":2}\n"
              "{\"type\":\"eval\",\"step\":20,\"loss\":3.1,\"bits_per_byte\":4.47,"
              "\"perplexity\":22.2,\"tokens\":64,\"layers\":[]}\n"
              "{\"type\":\"step\",\"step\":30,\"loss\":2.75,\"lr\":0.001,\"grad_norm\":1,"
              "\"tokens\":1920,\"flops\":3e9,\"tokens_per_second\":100,\"time\":3}\n");
  PeerRun *replayed = peer_window_open_path (window, run_dir);
  g_assert_nonnull (replayed);
  g_assert_cmpint (peer_run_get_state (replayed), ==, PEER_RUN_LOG_ONLY);
  g_assert_cmpint (ui_test_plot_points (window, replayed), ==, 3);
  GArray *evals = peer_run_get_eval_points (replayed);
  g_assert_cmpuint (evals->len, ==, 1);
  /* The evaluation sits at its step's training tokens, not at the tokens it evaluated. */
  g_assert_cmpfloat (g_array_index (evals, PeerEvalPoint, 0).tokens, ==, 1280);
  g_assert_false (action_enabled ("start"));
  g_assert_false (action_enabled ("save"));

  /* A checkpoint saved from a run opens as a run that trains on. */
  PeerRun *tiny = add_tiny_run ("to-save", 1);
  activate ("step");
  PlotWait wait = { window, tiny, 1 };
  g_assert_true (ui_test_wait (plot_has_points, &wait, 30));
  g_assert_true (peer_run_has_unsaved_work (tiny));
  g_autofree char *checkpoint = g_build_filename (dir, "saved-tiny.safetensors", NULL);
  peer_session_save (peer_run_get_session (tiny), checkpoint);
  g_assert_true (ui_test_wait (run_saved, tiny, 30));
  g_assert_true (g_file_test (checkpoint, G_FILE_TEST_IS_REGULAR));

  PeerRun *opened = peer_window_open_path (window, checkpoint);
  g_assert_nonnull (opened);
  g_assert_cmpstr (peer_run_get_name (opened), ==, "saved-tiny");
  g_assert_true (ui_test_wait (run_has_session, opened, 60));
  g_assert_cmpint (peer_run_get_state (opened), ==, PEER_RUN_READY);
  g_assert_cmpint (peer_run_get_config (opened)->d_model, ==, 32);
  g_assert_true (peer_window_get_selected_run (window) == opened);
  activate ("step");
  g_assert_true (ui_test_wait (run_is_paused, opened, 30));
  /* It continues the saved run: its first new step is the step after the saved one. */
  g_assert_cmpint (peer_run_get_step (opened), ==, 2);

  /* Something else is refused with a message, and adds no run. */
  guint runs = g_list_model_get_n_items (peer_window_get_runs (window));
  g_autofree char *missing = g_build_filename (dir, "missing", NULL);
  g_assert_null (peer_window_open_path (window, missing));
  g_assert_cmpuint (g_list_model_get_n_items (peer_window_get_runs (window)), ==, runs);

  g_autofree char *trainer_file = g_build_filename (dir, "saved-tiny.trainer.safetensors", NULL);
  g_remove (trainer_file);
  g_remove (checkpoint);
  g_remove (log);
  g_rmdir (run_dir);
  g_rmdir (dir);
}

/* ---- closing --------------------------------------------------------------------------------- */

static void
test_close_asks (void)
{
  g_assert_true (peer_run_has_unsaved_work (peer_window_get_selected_run (window)));
  gtk_window_close (GTK_WINDOW (window));
  g_assert_true (
      ui_test_wait (ui_test_toplevel_shown, GSIZE_TO_POINTER (ADW_TYPE_MESSAGE_DIALOG), 10));
  AdwMessageDialog *dialog = ui_test_find_toplevel (ADW_TYPE_MESSAGE_DIALOG);
  g_assert_true (strstr (adw_message_dialog_get_body (dialog), "not saved") != NULL);
  /* Cancel keeps the window and its runs. */
  adw_message_dialog_response (dialog, "cancel");
  ui_test_spin (0.2);
  g_assert_true (gtk_widget_get_visible (GTK_WIDGET (window)));
  g_assert_cmpuint (g_list_model_get_n_items (peer_window_get_runs (window)), >, 0);
  gtk_window_destroy (GTK_WINDOW (window));
  window = NULL;
}

int
main (int argc, char **argv)
{
  if (!ui_test_init (&argc, &argv))
    return 0;
  g_test_add_func ("/ui/window/opens", test_opens);
  g_test_add_func ("/ui/window/train-pause-resume-stop", test_train_pause_resume_stop);
  g_test_add_func ("/ui/window/responsive", test_responsive);
  g_test_add_func ("/ui/window/open-folder-and-checkpoint", test_open_folder_and_checkpoint);
  g_test_add_func ("/ui/window/close-asks", test_close_asks);
  return g_test_run ();
}
