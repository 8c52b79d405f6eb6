/* Exporting the expert map and the retrieval path from the window, on a display (Xvfb under
 * meson test), with a tiny run trained a few steps: each plot opens the Export dialog from its
 * button and with Ctrl+E, a PNG at the dialog's size and scale 1 is the plot on screen, pixel
 * for pixel, the map's grid CSV holds every expert's numbers exactly as the page's grid has
 * them, and the path's JSON is the current token's path through the layer shown; the expert
 * inspector's plots export the plot last clicked, with their numbers as CSV. */
#include <glib/gstdio.h>
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "expert-inspector.h"
#include "experts-page.h"
#include "export-dialog.h"
#include "retrieval-path.h"
#include "test-ui-util.h"
#include "tokens-page.h"

/* The toplevel types the tests wait for, as ui_test_wait data. */
#define EXPORT_DIALOG GSIZE_TO_POINTER (PEER_TYPE_EXPORT_DIALOG)

#define EXPERT_LAYER 1 /* the tiny run's PEER block */
#define STEPS 6

static PeerWindow *window;
static PeerRun *tiny_run;
static char *work_dir;

static gboolean
window_is_mapped (gpointer data)
{
  return gtk_widget_get_mapped (GTK_WIDGET (window));
}

static gboolean
run_is_ready (gpointer run)
{
  return peer_run_get_state (run) == PEER_RUN_READY;
}

static gboolean
run_reached (gpointer run)
{
  return peer_run_get_step (run) >= STEPS;
}

static PeerExportDialog *
open_with_button_in (GtkWidget *root, const char *name)
{
  g_assert_null (ui_test_find_toplevel (PEER_TYPE_EXPORT_DIALOG));
  GtkWidget *button = ui_test_find_widget (root, name);
  g_assert_nonnull (button);
  g_assert_true (gtk_widget_is_drawable (button));
  g_signal_emit_by_name (button, "clicked");
  g_assert_true (ui_test_wait (ui_test_toplevel_shown, EXPORT_DIALOG, 10));
  return ui_test_find_toplevel (PEER_TYPE_EXPORT_DIALOG);
}

static PeerExportDialog *
open_with_button (const char *name)
{
  return open_with_button_in (GTK_WIDGET (window), name);
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

/* Exports the dialog's plot as a PNG at its size on screen and scale 1 and compares it with the
 * widget's drawing, which must be more than its background. */
static void
assert_png_is_screen (PeerExportDialog *dialog, const char *name)
{
  GtkWidget *plot = peer_export_dialog_get_plot (dialog);
  double width, height, scale;
  peer_export_dialog_get_size (dialog, &width, &height, &scale);
  g_assert_cmpfloat (width, ==, gtk_widget_get_width (plot));
  g_assert_cmpfloat (height, ==, gtk_widget_get_height (plot));
  g_assert_cmpfloat (width, >, 100);
  g_assert_cmpfloat (height, >, 100);
  g_assert_cmpint (gtk_widget_get_scale_factor (plot), ==, 1);
  peer_export_dialog_set_size (dialog, width, height, 1.0);
  g_autofree char *png = path_in (name);
  g_autoptr (GError) error = NULL;
  g_assert_true (peer_export_dialog_export (dialog, png, &error));
  g_assert_no_error (error);

  cairo_surface_t *exported = cairo_image_surface_create_from_png (png);
  g_assert_cmpint (cairo_surface_status (exported), ==, CAIRO_STATUS_SUCCESS);
  cairo_surface_t *screen = draw_widget (plot);
  int w = cairo_image_surface_get_width (screen), h = cairo_image_surface_get_height (screen);
  g_assert_cmpint (cairo_image_surface_get_width (exported), ==, w);
  g_assert_cmpint (cairo_image_surface_get_height (exported), ==, h);
  int different = 0, distinct_from_corner = 0;
  const guint8 *corner = cairo_image_surface_get_data (screen);
  for (int y = 0; y < h; y++)
    {
      const guint8 *a = cairo_image_surface_get_data (exported) +
                        y * cairo_image_surface_get_stride (exported);
      const guint8 *b = cairo_image_surface_get_data (screen) +
                        y * cairo_image_surface_get_stride (screen);
      for (int x = 0; x < w; x++)
        {
          different += memcmp (a + 4 * x, b + 4 * x, 3) != 0;
          distinct_from_corner += memcmp (b + 4 * x, corner, 3) != 0;
        }
    }
  g_assert_cmpint (different, ==, 0);
  /* The plot is drawn, not a blank of its background. */
  g_assert_cmpint (distinct_from_corner, >, w * h / 20);
  cairo_surface_destroy (screen);
  cairo_surface_destroy (exported);
}

/* ---- the expert map ------------------------------------------------------------------------- */

static PeerExpertsPage *experts_page;

static gboolean
grid_shown (gpointer data)
{
  const PeerExpertGrid *grid = peer_experts_page_get_grid (experts_page);
  return grid && grid->layer == EXPERT_LAYER && grid->tokens > 0.0 && grid->step >= STEPS &&
         grid->window == EXPERT_WINDOW_SINCE_START;
}

static void
test_expert_map (void)
{
  PeerApplication *app = ui_test_application ();
  window = peer_window_new (GTK_APPLICATION (app));
  gtk_window_set_default_size (GTK_WINDOW (window), 1100, 760);
  gtk_window_present (GTK_WINDOW (window));
  g_assert_true (ui_test_wait (window_is_mapped, NULL, 30));
  model_config cfg;
  train_settings settings;
  ui_test_tiny_run (&cfg, &settings);
  PeerRun *run = peer_window_add_run (window, "tiny", &cfg, &settings, NULL, 1);
  tiny_run = run;
  g_assert_true (ui_test_wait (run_is_ready, run, 60));
  PeerSession *session = peer_run_get_session (run);
  for (int s = 0; s < STEPS; s++)
    peer_session_step_once (session);
  g_assert_true (ui_test_wait (run_reached, run, 60));

  gtk_widget_activate_action (GTK_WIDGET (window), "win.page", "s", "experts");
  experts_page = PEER_EXPERTS_PAGE (
      ui_test_find_widget_of_type (GTK_WIDGET (window), PEER_TYPE_EXPERTS_PAGE));
  g_assert_nonnull (experts_page);
  peer_experts_page_set_window (experts_page, EXPERT_WINDOW_SINCE_START);
  g_assert_true (ui_test_wait (grid_shown, NULL, 60));
  ui_test_spin (0.3);
  GtkWidget *map = ui_test_find_widget (GTK_WIDGET (experts_page), "expert-heatmap");
  g_assert_true (peer_export_is_attached (map));

  /* The button opens the dialog for the map; so does Ctrl+E with the page shown. */
  PeerExportDialog *dialog = open_with_button ("export-map-button");
  g_assert_true (peer_export_dialog_get_plot (dialog) == map);
  assert_png_is_screen (dialog, "map.png");
  ui_test_close_toplevel (GTK_WINDOW (dialog));
  gtk_widget_grab_focus (map);
  dialog = open_with_shortcut ();
  g_assert_true (peer_export_dialog_get_plot (dialog) == map);

  /* The grid CSV: every expert, with the page's numbers exactly. */
  const PeerExpertGrid *grid = peer_experts_page_get_grid (experts_page);
  g_autofree char *csv = path_in ("grid.csv");
  g_autoptr (GError) error = NULL;
  g_assert_true (peer_export_dialog_export (dialog, csv, &error));
  g_assert_no_error (error);
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (csv, &text, NULL, NULL));
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  g_assert_cmpstr (lines[0], ==, "expert,row,column,selections,gate_mass,mean_activation");
  int side = grid->side, n = side * side;
  g_assert_cmpint (side, ==, 8);
  double csv_selections = 0.0, grid_selections = 0.0;
  int chosen = 0;
  for (int i = 0; i < n; i++)
    {
      g_auto (GStrv) fields = g_strsplit (lines[i + 1], ",", -1);
      g_assert_cmpuint (g_strv_length (fields), ==, 6);
      g_assert_cmpint (atoi (fields[0]), ==, i);
      g_assert_cmpint (atoi (fields[1]), ==, i / side);
      g_assert_cmpint (atoi (fields[2]), ==, i % side);
      float selections = (float) g_ascii_strtod (fields[3], NULL);
      g_assert_cmpfloat (selections, ==, grid->count[i]);
      g_assert_cmpfloat ((float) g_ascii_strtod (fields[4], NULL), ==, grid->gate_mass[i]);
      if (isnan (grid->mean_activation[i]))
        g_assert_cmpstr (fields[5], ==, "");
      else
        g_assert_cmpfloat ((float) g_ascii_strtod (fields[5], NULL), ==,
                           grid->mean_activation[i]);
      csv_selections += selections;
      grid_selections += grid->count[i];
      chosen += grid->count[i] > 0.0f;
    }
  g_assert_cmpstr (lines[n + 1], ==, "");
  g_assert_null (lines[n + 2]);
  g_assert_cmpfloat (csv_selections, ==, grid_selections);
  /* Since start: 6 steps of 2 × 32 tokens, 2 heads choosing 4 experts each. */
  g_assert_cmpfloat (grid_selections, ==, STEPS * 2 * 32 * 2 * 4);
  g_assert_cmpint (chosen, >, 1);
  ui_test_close_toplevel (GTK_WINDOW (dialog));
}

/* ---- the retrieval path --------------------------------------------------------------------- */

static PeerTokensPage *tokens_page;

static gboolean
read_done (gpointer data)
{
  const PeerTokenAnalysis *a = peer_tokens_page_get_analysis (tokens_page);
  return a && !peer_tokens_page_is_reading (tokens_page);
}

static void
test_retrieval_path (void)
{
  gtk_widget_activate_action (GTK_WIDGET (window), "win.page", "s", "tokens");
  tokens_page = PEER_TOKENS_PAGE (
      ui_test_find_widget_of_type (GTK_WIDGET (window), PEER_TYPE_TOKENS_PAGE));
  g_assert_nonnull (tokens_page);
  g_assert_true (ui_test_wait (read_done, NULL, 60));
  peer_tokens_page_set_layer (tokens_page, EXPERT_LAYER);
  peer_tokens_page_set_head (tokens_page, -1);
  peer_tokens_page_set_position (tokens_page, 5);
  ui_test_spin (0.3);
  GtkWidget *path = ui_test_find_widget (GTK_WIDGET (tokens_page), "retrieval-path");
  g_assert_true (peer_export_is_attached (path));
  g_assert_nonnull (peer_retrieval_path_get_data (PEER_RETRIEVAL_PATH (path)));

  PeerExportDialog *dialog = open_with_button ("export-path-button");
  g_assert_true (peer_export_dialog_get_plot (dialog) == path);
  /* The pointer's emphasis is the screen's alone: the picture has none. */
  peer_retrieval_path_set_highlight (PEER_RETRIEVAL_PATH (path), 0, 0);
  assert_png_is_screen (dialog, "path.png");
  ui_test_close_toplevel (GTK_WINDOW (dialog));

  /* One head shown: the picture follows it. */
  peer_tokens_page_set_head (tokens_page, 1);
  ui_test_spin (0.2);
  gtk_widget_grab_focus (path);
  dialog = open_with_shortcut ();
  g_assert_true (peer_export_dialog_get_plot (dialog) == path);
  assert_png_is_screen (dialog, "head.png");

  /* The JSON: the token's whole path through the layer, as the analysis holds it. */
  const PeerTokenAnalysis *a = peer_tokens_page_get_analysis (tokens_page);
  int slot = peer_token_analysis_find_layer (a, EXPERT_LAYER);
  g_assert_cmpint (slot, >=, 0);
  peer_head_trace heads[2];
  peer_token_trace trace;
  g_assert_cmpint (a->layers[slot].cfg.heads, ==, 2);
  peer_token_analysis_get_path (a, slot, 5, &trace, heads);
  g_autofree char *file = path_in ("path.json");
  g_autoptr (GError) error = NULL;
  g_assert_true (peer_export_dialog_export (dialog, file, &error));
  g_assert_no_error (error);
  json_error_t json_error;
  json_t *root = json_load_file (file, 0, &json_error);
  g_assert_nonnull (root);
  g_assert_cmpint (json_integer_value (json_object_get (root, "layer")), ==, EXPERT_LAYER);
  g_assert_cmpstr (json_string_value (json_object_get (root, "kind")), ==, "PEER");
  g_assert_cmpint (json_integer_value (json_object_get (root, "position")), ==, 5);
  g_assert_cmpint (json_integer_value (json_object_get (root, "byte")), ==, a->bytes[5]);
  g_assert_cmpint (json_integer_value (json_object_get (root, "n")), ==, 8);
  g_assert_cmpint (json_integer_value (json_object_get (root, "topk")), ==, 4);
  json_t *json_heads = json_object_get (root, "heads");
  g_assert_cmpuint (json_array_size (json_heads), ==, 2);
  for (int j = 0; j < 2; j++)
    {
      json_t *experts = json_object_get (json_array_get (json_heads, (size_t) j), "experts");
      g_assert_cmpuint (json_array_size (experts), ==, 4);
      for (int r = 0; r < 4; r++)
        {
          json_t *expert = json_array_get (experts, (size_t) r);
          g_assert_cmpint (json_integer_value (json_object_get (expert, "expert")), ==,
                           trace.head[j].expert[r]);
          g_assert_cmpfloat ((float) json_number_value (json_object_get (expert, "gate")), ==,
                             trace.head[j].gate[r]);
        }
    }
  json_decref (root);
  ui_test_close_toplevel (GTK_WINDOW (dialog));
}

/* ---- the expert inspector ------------------------------------------------------------------ */

static gboolean
inspected (gpointer inspector)
{
  return peer_expert_inspector_get_inspection (inspector) &&
         !peer_expert_inspector_is_busy (inspector);
}

/* Ctrl+E in the inspector's window: its shortcut, activated as the key would. */
static PeerExportDialog *
open_with_inspector_shortcut (GtkWidget *inspector)
{
  g_assert_null (ui_test_find_toplevel (PEER_TYPE_EXPORT_DIALOG));
  gboolean activated = FALSE;
  GListModel *controllers = gtk_widget_observe_controllers (inspector);
  for (guint i = 0; i < g_list_model_get_n_items (controllers); i++)
    {
      g_autoptr (GObject) controller = g_list_model_get_item (controllers, i);
      if (!GTK_IS_SHORTCUT_CONTROLLER (controller))
        continue;
      for (guint j = 0; j < g_list_model_get_n_items (G_LIST_MODEL (controller)); j++)
        {
          g_autoptr (GtkShortcut) shortcut = g_list_model_get_item (G_LIST_MODEL (controller), j);
          GtkShortcutTrigger *key = gtk_keyval_trigger_new (GDK_KEY_e, GDK_CONTROL_MASK);
          if (gtk_shortcut_trigger_equal (gtk_shortcut_get_trigger (shortcut), key))
            activated = gtk_shortcut_action_activate (gtk_shortcut_get_action (shortcut), 0,
                                                      inspector, NULL);
          g_object_unref (key);
        }
    }
  g_object_unref (controllers);
  g_assert_true (activated);
  g_assert_true (ui_test_wait (ui_test_toplevel_shown, EXPORT_DIALOG, 10));
  return ui_test_find_toplevel (PEER_TYPE_EXPORT_DIALOG);
}

static char **
read_csv_lines (PeerExportDialog *dialog, const char *name)
{
  g_autofree char *file = path_in (name);
  g_autoptr (GError) error = NULL;
  g_assert_true (peer_export_dialog_export (dialog, file, &error));
  g_assert_no_error (error);
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (file, &text, NULL, NULL));
  return g_strsplit (text, "\n", -1);
}

static void
test_expert_inspector (void)
{
  /* The expert chosen most often since the start. */
  const PeerExpertGrid *grid = peer_experts_page_get_grid (experts_page);
  int expert = 0;
  for (int i = 1; i < grid->side * grid->side; i++)
    if (grid->count[i] > grid->count[expert])
      expert = i;
  PeerExpertInspector *inspector = peer_expert_inspector_present (
      peer_run_get_session (tiny_run), EXPERT_LAYER, expert, GTK_WINDOW (window));
  g_assert_true (ui_test_wait (inspected, inspector, 60));
  ui_test_spin (0.3);
  const char *names[] = { "usage-plot", "activation-plot", "preact-plot", "logit-plot" };
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    g_assert_true (peer_export_is_attached (
        ui_test_find_widget (GTK_WIDGET (inspector), names[i])));

  /* The button exports the plot last clicked, else the first. */
  PeerExportDialog *dialog =
      open_with_button_in (GTK_WIDGET (inspector), "export-inspector-button");
  g_assert_true (peer_export_dialog_get_plot (dialog) ==
                 ui_test_find_widget (GTK_WIDGET (inspector), "usage-plot"));
  ui_test_close_toplevel (GTK_WINDOW (dialog));
  GtkWidget *activation = ui_test_find_widget (GTK_WIDGET (inspector), "activation-plot");
  gtk_widget_grab_focus (activation);
  dialog = open_with_button_in (GTK_WIDGET (inspector), "export-inspector-button");
  g_assert_true (peer_export_dialog_get_plot (dialog) == activation);
  assert_png_is_screen (dialog, "activation.png");

  /* Its CSV: the histogram's bins and counts, the ones it draws. */
  const expert_inspection *in = &peer_expert_inspector_get_inspection (inspector)->details;
  g_assert_true (in->has_u);
  g_auto (GStrv) lines = read_csv_lines (dialog, "activation.csv");
  g_assert_cmpstr (lines[0], ==, "bin_start,bin_end,selections");
  guint64 total = 0;
  for (int b = 0; b < in->activation.bins; b++)
    {
      g_auto (GStrv) fields = g_strsplit (lines[b + 1], ",", -1);
      g_assert_cmpuint (g_strv_length (fields), ==, 3);
      g_assert_cmpuint (g_ascii_strtoull (fields[2], NULL, 10), ==, in->activation.counts[b]);
      total += in->activation.counts[b];
    }
  g_assert_cmpuint (total, ==, in->activation.total);
  g_assert_cmpuint (total, >, 0);
  g_assert_cmpfloat (g_ascii_strtod (lines[1], NULL), ==, in->activation.lo);
  ui_test_close_toplevel (GTK_WINDOW (dialog));

  /* The logit plot's CSV: the bytes pushed up most and down most, with their effects. */
  GtkWidget *logit_plot = ui_test_find_widget (GTK_WIDGET (inspector), "logit-plot");
  gtk_widget_grab_focus (logit_plot);
  dialog = open_with_inspector_shortcut (GTK_WIDGET (inspector));
  g_assert_true (peer_export_dialog_get_plot (dialog) == logit_plot);
  g_auto (GStrv) logit = read_csv_lines (dialog, "logit.csv");
  g_assert_cmpstr (logit[0], ==, "direction,rank,byte,label,logit_effect");
  g_auto (GStrv) top = g_strsplit (logit[1], ",", -1);
  g_assert_cmpstr (top[0], ==, "up");
  g_assert_cmpint (atoi (top[2]), ==, in->pushed_up[0]);
  g_assert_cmpfloat ((float) g_ascii_strtod (top[4], NULL), ==,
                     in->logit_effect[in->pushed_up[0]]);
  ui_test_close_toplevel (GTK_WINDOW (dialog));
  gtk_window_destroy (GTK_WINDOW (gtk_widget_get_root (GTK_WIDGET (inspector))));
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
  work_dir = g_dir_make_tmp ("peer-ui-export-plots-XXXXXX", &error);
  g_assert_no_error (error);
  g_test_add_func ("/ui/export-plots/expert-map", test_expert_map);
  g_test_add_func ("/ui/export-plots/retrieval-path", test_retrieval_path);
  g_test_add_func ("/ui/export-plots/expert-inspector", test_expert_inspector);
  int status = g_test_run ();
  if (window)
    gtk_window_destroy (GTK_WINDOW (window));
  remove_tree (work_dir);
  g_free (work_dir);
  return status;
}
