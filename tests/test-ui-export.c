/* Exporting the loss plot from the window, on a display (Xvfb under meson test): Ctrl+E and the
 * plot's Export button open the Export dialog for the plot; a PNG at the dialog's size and scale
 * 1 is the plot on screen, pixel for pixel; the CSV holds every point of the runs shown, and only
 * theirs; a name without an extension takes the format chosen and asks before replacing a file;
 * a file that cannot be written, or a format the plot has not, is refused in the dialog with
 * the reason, and nothing is written. */
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

#include "export-dialog.h"
#include "test-ui-util.h"

static PeerWindow *window;
static char *work_dir;

/* The toplevel types the tests wait for, as ui_test_wait data. */
#define EXPORT_DIALOG GSIZE_TO_POINTER (PEER_TYPE_EXPORT_DIALOG)
#define MESSAGE_DIALOG GSIZE_TO_POINTER (ADW_TYPE_MESSAGE_DIALOG)

static gboolean
window_is_mapped (gpointer data)
{
  return window && gtk_widget_get_mapped (GTK_WIDGET (window));
}

static void
write_file (const char *path, const char *text)
{
  g_autoptr (GError) error = NULL;
  g_assert_true (g_file_set_contents (path, text, -1, &error));
}

/* A peer-train run folder with its log only: 30 steps and 3 evaluations. */
static PeerRun *
open_run (const char *name, double offset)
{
  g_autofree char *dir = g_build_filename (work_dir, name, NULL);
  g_assert_cmpint (g_mkdir (dir, 0700), ==, 0);
  GString *log = g_string_new (NULL);
  for (int i = 1; i <= 30; i++)
    {
      char loss[G_ASCII_DTOSTR_BUF_SIZE];
      g_ascii_formatd (loss, sizeof loss, "%.9g", offset + 2.5 * exp (-i / 8.0));
      g_string_append_printf (log,
                              "{\"type\":\"step\",\"step\":%d,\"loss\":%s,\"lr\":0.001,"
                              "\"grad_norm\":0.5,\"tokens\":%d,\"flops\":%de9,"
                              "\"tokens_per_second\":100,\"time\":%d}\n",
                              i, loss, 64 * i, i, i);
      if (i % 10 == 0)
        g_string_append_printf (log,
                                "{\"type\":\"eval\",\"step\":%d,\"loss\":%s,\"bits_per_byte\":4,"
                                "\"perplexity\":20,\"tokens\":64,\"layers\":[]}\n",
                                i, loss);
    }
  g_autofree char *path = g_build_filename (dir, "log.jsonl", NULL);
  write_file (path, log->str);
  g_string_free (log, TRUE);
  PeerRun *run = peer_window_open_path (window, dir);
  g_assert_nonnull (run);
  return run;
}

static PeerExportDialog *
open_with_shortcut (void)
{
  g_assert_null (ui_test_find_toplevel (PEER_TYPE_EXPORT_DIALOG));
  g_action_group_activate_action (G_ACTION_GROUP (window), "export", NULL);
  g_assert_true (ui_test_wait (ui_test_toplevel_shown, EXPORT_DIALOG, 10));
  return ui_test_find_toplevel (PEER_TYPE_EXPORT_DIALOG);
}

static char *
path_in (const char *name)
{
  return g_build_filename (work_dir, name, NULL);
}

/* ---- opening -------------------------------------------------------------------------------- */

static void
test_opens (void)
{
  PeerApplication *app = ui_test_application ();
  window = peer_window_new (GTK_APPLICATION (app));
  gtk_window_set_default_size (GTK_WINDOW (window), 1000, 700);
  gtk_window_present (GTK_WINDOW (window));
  g_assert_true (ui_test_wait (window_is_mapped, NULL, 30));
  open_run ("alpha", 1.5);
  open_run ("beta", 1.8);
  ui_test_spin (0.3);

  /* Ctrl+E is the export; evaluating moved to Ctrl+Shift+E. */
  g_auto (GStrv) accels = gtk_application_get_accels_for_action (GTK_APPLICATION (app),
                                                                  "win.export");
  g_assert_cmpstr (accels[0], ==, "<Control>e");

  GtkWidget *plot = GTK_WIDGET (peer_window_get_plot (window));
  g_assert_true (peer_export_is_attached (plot));
  g_assert_true (gtk_widget_get_focusable (plot));

  /* With the focus on the plot, or anywhere else while its page is shown, Ctrl+E exports it. */
  gtk_widget_grab_focus (plot);
  g_assert_true (peer_export_find_plot (GTK_WINDOW (window), NULL) == plot);
  PeerExportDialog *dialog = open_with_shortcut ();
  g_assert_true (peer_export_dialog_get_plot (dialog) == plot);
  g_assert_true (gtk_window_get_transient_for (GTK_WINDOW (dialog)) == GTK_WINDOW (window));
  ui_test_close_toplevel (GTK_WINDOW (dialog));

  GtkWidget *button = ui_test_find_widget (GTK_WIDGET (window), "export-plot-button");
  g_assert_nonnull (button);
  gtk_widget_grab_focus (button);
  g_assert_true (peer_export_find_plot (GTK_WINDOW (window), NULL) == NULL);
  g_signal_emit_by_name (button, "clicked");
  g_assert_true (ui_test_wait (ui_test_toplevel_shown, EXPORT_DIALOG, 10));
  dialog = ui_test_find_toplevel (PEER_TYPE_EXPORT_DIALOG);
  g_assert_true (peer_export_dialog_get_plot (dialog) == plot);
  ui_test_close_toplevel (GTK_WINDOW (dialog));
}

/* ---- the picture ---------------------------------------------------------------------------- */

/* The plot's drawing as GSK's cairo renderer rasterises it, without the pointer over it. */
static cairo_surface_t *
draw_widget (GtkWidget *widget)
{
  GListModel *controllers = gtk_widget_observe_controllers (widget);
  for (guint i = 0; i < g_list_model_get_n_items (controllers); i++)
    {
      g_autoptr (GtkEventController) controller = g_list_model_get_item (controllers, i);
      if (GTK_IS_EVENT_CONTROLLER_MOTION (controller))
        g_signal_emit_by_name (controller, "leave");
    }
  g_object_unref (controllers);
  GtkSnapshot *snapshot = gtk_snapshot_new ();
  GTK_WIDGET_GET_CLASS (widget)->snapshot (widget, snapshot);
  GskRenderNode *node = gtk_snapshot_free_to_node (snapshot);
  cairo_surface_t *surface = cairo_image_surface_create (
      CAIRO_FORMAT_ARGB32, gtk_widget_get_width (widget), gtk_widget_get_height (widget));
  cairo_t *cr = cairo_create (surface);
  g_assert_nonnull (node);
  gsk_render_node_draw (node, cr);
  gsk_render_node_unref (node);
  cairo_destroy (cr);
  cairo_surface_flush (surface);
  return surface;
}

static void
test_png_is_screen (void)
{
  GtkWidget *plot = GTK_WIDGET (peer_window_get_plot (window));
  PeerExportDialog *dialog = open_with_shortcut ();
  double width, height, scale;
  peer_export_dialog_get_size (dialog, &width, &height, &scale);
  g_assert_cmpfloat (width, ==, gtk_widget_get_width (plot));
  g_assert_cmpfloat (height, ==, gtk_widget_get_height (plot));
  g_assert_cmpint (gtk_widget_get_scale_factor (plot), ==, 1);

  peer_export_dialog_set_size (dialog, width, height, 1.0);
  g_autofree char *png = path_in ("screen.png");
  g_autoptr (GError) error = NULL;
  g_assert_true (peer_export_dialog_export (dialog, png, &error));
  g_assert_no_error (error);

  cairo_surface_t *exported = cairo_image_surface_create_from_png (png);
  g_assert_cmpint (cairo_surface_status (exported), ==, CAIRO_STATUS_SUCCESS);
  cairo_surface_t *screen = draw_widget (plot);
  int w = cairo_image_surface_get_width (screen), h = cairo_image_surface_get_height (screen);
  g_assert_cmpint (cairo_image_surface_get_width (exported), ==, w);
  g_assert_cmpint (cairo_image_surface_get_height (exported), ==, h);
  int different = 0;
  for (int y = 0; y < h; y++)
    {
      const guint8 *a = cairo_image_surface_get_data (exported) +
                        y * cairo_image_surface_get_stride (exported);
      const guint8 *b = cairo_image_surface_get_data (screen) +
                        y * cairo_image_surface_get_stride (screen);
      for (int x = 0; x < w; x++)
        different += memcmp (a + 4 * x, b + 4 * x, 3) != 0;
    }
  g_assert_cmpint (different, ==, 0);
  cairo_surface_destroy (screen);
  cairo_surface_destroy (exported);

  /* At scale 2 the same layout has twice the pixels each way. */
  peer_export_dialog_set_size (dialog, 500, 300, 2.0);
  g_autofree char *sharp = path_in ("sharp.png");
  g_assert_true (peer_export_dialog_export (dialog, sharp, &error));
  exported = cairo_image_surface_create_from_png (sharp);
  g_assert_cmpint (cairo_image_surface_get_width (exported), ==, 1000);
  g_assert_cmpint (cairo_image_surface_get_height (exported), ==, 600);
  cairo_surface_destroy (exported);
  ui_test_close_toplevel (GTK_WINDOW (dialog));
}

/* ---- the data -------------------------------------------------------------------------------- */

static guint
count_lines_starting (const char *text, const char *prefix)
{
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  guint n = 0;
  for (guint i = 0; lines[i]; i++)
    n += g_str_has_prefix (lines[i], prefix);
  return n;
}

static void
test_csv_of_shown_runs (void)
{
  PeerExportDialog *dialog = open_with_shortcut ();
  g_autofree char *csv = path_in ("series.csv");
  g_autoptr (GError) error = NULL;
  g_assert_true (peer_export_dialog_export (dialog, csv, &error));
  g_assert_no_error (error);
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (csv, &text, NULL, NULL));
  g_assert_true (
      g_str_has_prefix (text, "run,split,step,tokens,flops,seconds,loss,lr,grad_norm\n"));
  g_assert_cmpuint (count_lines_starting (text, "alpha,train,"), ==, 30);
  g_assert_cmpuint (count_lines_starting (text, "alpha,validation,"), ==, 3);
  g_assert_cmpuint (count_lines_starting (text, "beta,train,"), ==, 30);
  g_assert_nonnull (strstr (text, "alpha,train,8,512,8000000000,8,"));
  ui_test_close_toplevel (GTK_WINDOW (dialog));

  /* A run taken off the plot is left out of the file. */
  GListModel *runs = peer_window_get_runs (window);
  g_autoptr (PeerRun) beta = g_list_model_get_item (runs, 1);
  g_assert_cmpstr (peer_run_get_name (beta), ==, "beta");
  peer_run_set_visible (beta, FALSE);
  dialog = open_with_shortcut ();
  g_assert_true (peer_export_dialog_export (dialog, csv, &error));
  g_clear_pointer (&text, g_free);
  g_assert_true (g_file_get_contents (csv, &text, NULL, NULL));
  g_assert_cmpuint (count_lines_starting (text, "alpha,"), ==, 33);
  g_assert_cmpuint (count_lines_starting (text, "beta,"), ==, 0);
  peer_run_set_visible (beta, TRUE);
  ui_test_close_toplevel (GTK_WINDOW (dialog));
}

/* ---- naming the file ------------------------------------------------------------------------ */

static void
test_extension_and_replace (void)
{
  PeerExportDialog *dialog = open_with_shortcut ();
  peer_export_dialog_set_format (dialog, PLOT_EXPORT_SVG);
  g_autofree char *stem = path_in ("figure");
  g_autofree char *svg = path_in ("figure.svg");
  peer_export_dialog_save_as (dialog, stem);
  /* Written, then the dialog closed. */
  g_assert_true (ui_test_wait (ui_test_toplevel_gone, EXPORT_DIALOG, 10));
  g_assert_true (g_file_test (svg, G_FILE_TEST_IS_REGULAR));
  g_assert_false (g_file_test (stem, G_FILE_TEST_EXISTS));

  /* Again: that file is there now, so the dialog asks; Cancel keeps it as it is. */
  write_file (svg, "older");
  dialog = open_with_shortcut ();
  g_assert_cmpuint (peer_export_dialog_get_format (dialog), ==, PLOT_EXPORT_SVG);
  peer_export_dialog_save_as (dialog, stem);
  g_assert_true (ui_test_wait (ui_test_toplevel_shown, MESSAGE_DIALOG, 10));
  AdwMessageDialog *ask = ui_test_find_toplevel (ADW_TYPE_MESSAGE_DIALOG);
  g_assert_cmpstr (adw_message_dialog_get_heading (ask), ==, "Replace “figure.svg”?");
  adw_message_dialog_response (ask, "cancel");
  ui_test_spin (0.2);
  g_autofree char *kept = NULL;
  g_assert_true (g_file_get_contents (svg, &kept, NULL, NULL));
  g_assert_cmpstr (kept, ==, "older");
  g_assert_true (ui_test_find_toplevel (PEER_TYPE_EXPORT_DIALOG) == dialog);

  peer_export_dialog_save_as (dialog, stem);
  g_assert_true (ui_test_wait (ui_test_toplevel_shown, MESSAGE_DIALOG, 10));
  adw_message_dialog_response (ui_test_find_toplevel (ADW_TYPE_MESSAGE_DIALOG), "replace");
  g_assert_true (ui_test_wait (ui_test_toplevel_gone, EXPORT_DIALOG, 10));
  g_autofree char *replaced = NULL;
  g_assert_true (g_file_get_contents (svg, &replaced, NULL, NULL));
  g_assert_true (g_str_has_prefix (replaced, "<?xml"));
  g_assert_nonnull (strstr (replaced, ">alpha</text>"));
}

/* ---- refusals ------------------------------------------------------------------------------- */

static void
test_refused_in_dialog (void)
{
  PeerExportDialog *dialog = open_with_shortcut ();
  peer_export_dialog_set_format (dialog, PLOT_EXPORT_PNG);
  g_autoptr (GError) error = NULL;

  g_autofree char *text = path_in ("figure.txt");
  g_assert_false (peer_export_dialog_export (dialog, text, &error));
  g_assert_nonnull (strstr (error->message, ".png, .svg, .pdf or .csv"));
  g_assert_cmpstr (peer_export_dialog_get_error (dialog), ==, error->message);
  GtkWidget *label = ui_test_find_widget (GTK_WIDGET (dialog), "error-label");
  g_assert_cmpstr (gtk_label_get_label (GTK_LABEL (label)), ==, error->message);
  g_clear_error (&error);

  g_autofree char *nowhere = g_build_filename (work_dir, "missing", "figure.png", NULL);
  g_assert_false (peer_export_dialog_export (dialog, nowhere, &error));
  g_assert_nonnull (strstr (peer_export_dialog_get_error (dialog), "does not exist"));
  g_clear_error (&error);

  /* The dialog stays open for another try, which clears the message. */
  g_assert_true (ui_test_find_toplevel (PEER_TYPE_EXPORT_DIALOG) == dialog);
  g_autofree char *png = path_in ("retry.png");
  g_assert_true (peer_export_dialog_export (dialog, png, &error));
  g_assert_null (peer_export_dialog_get_error (dialog));
  g_assert_false (g_file_test (text, G_FILE_TEST_EXISTS));
  ui_test_close_toplevel (GTK_WINDOW (dialog));
}

static void
remove_tree (const char *dir)
{
  GDir *handle = g_dir_open (dir, 0, NULL);
  const char *name;
  while (handle && (name = g_dir_read_name (handle)))
    {
      g_autofree char *path = g_build_filename (dir, name, NULL);
      if (g_file_test (path, G_FILE_TEST_IS_DIR))
        remove_tree (path);
      else
        g_remove (path);
    }
  if (handle)
    g_dir_close (handle);
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  if (!ui_test_init (&argc, &argv))
    return 0;
  g_autoptr (GError) error = NULL;
  work_dir = g_dir_make_tmp ("peer-ui-export-XXXXXX", &error);
  g_assert_no_error (error);
  g_test_add_func ("/ui/export/opens", test_opens);
  g_test_add_func ("/ui/export/png-is-screen", test_png_is_screen);
  g_test_add_func ("/ui/export/csv-of-shown-runs", test_csv_of_shown_runs);
  g_test_add_func ("/ui/export/extension-and-replace", test_extension_and_replace);
  g_test_add_func ("/ui/export/refused-in-dialog", test_refused_in_dialog);
  int status = g_test_run ();
  if (window)
    gtk_window_destroy (GTK_WINDOW (window));
  remove_tree (work_dir);
  g_free (work_dir);
  return status;
}
