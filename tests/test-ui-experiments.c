/* The Experiments page in the workbench window, on a real display (Xvfb under meson test): the
 * tiny suite started from the page trains on its worker while the main loop keeps running, fills
 * the variant rows and the tables, and writes its results files; started again on the same
 * folder it has nothing left to do; a stop leaves a folder that the next start completes.
 *
 * Every wait has a generous limit that only guards against a hang. */
#include <glib/gstdio.h>
#include <string.h>

#include "experiments-page.h"
#include "test-ui-util.h"

static PeerWindow *window;
static PeerExperimentsPage *page;
static char *tmp_dir;

static GtkWidget *
find_page (GtkWidget *root)
{
  if (PEER_IS_EXPERIMENTS_PAGE (root))
    return root;
  for (GtkWidget *child = gtk_widget_get_first_child (root); child;
       child = gtk_widget_get_next_sibling (child))
    {
      GtkWidget *found = find_page (child);
      if (found)
        return found;
    }
  return NULL;
}

static const char *
status_text (void)
{
  GtkWidget *label = ui_test_find_widget (GTK_WIDGET (page), "experiment-status");
  g_assert_nonnull (label);
  return gtk_label_get_label (GTK_LABEL (label));
}

static gboolean
page_idle (gpointer data)
{
  return !peer_experiments_page_is_running (page);
}

static gboolean
page_shows (gpointer text)
{
  return strstr (status_text (), text) != NULL;
}

/* Labels in a grid's row (0 is the header). */
static int
grid_row_cells (GtkWidget *grid, int row, GPtrArray *texts)
{
  int count = 0;
  for (int column = 0;; column++)
    {
      GtkWidget *cell = gtk_grid_get_child_at (GTK_GRID (grid), column, row);
      if (!cell)
        break;
      if (texts)
        g_ptr_array_add (texts, g_strdup (gtk_label_get_label (GTK_LABEL (cell))));
      count++;
    }
  return count;
}

static GtkWidget *
find_grid (const char *title)
{
  /* The tables sit in preferences groups titled as they are. */
  GtkWidget *root = GTK_WIDGET (page);
  GPtrArray *stack = g_ptr_array_new ();
  g_ptr_array_add (stack, root);
  GtkWidget *found = NULL;
  while (stack->len > 0 && !found)
    {
      GtkWidget *widget = g_ptr_array_steal_index (stack, stack->len - 1);
      if (ADW_IS_PREFERENCES_GROUP (widget) &&
          g_strcmp0 (adw_preferences_group_get_title (ADW_PREFERENCES_GROUP (widget)), title) == 0)
        {
          GPtrArray *inner = g_ptr_array_new ();
          g_ptr_array_add (inner, widget);
          while (inner->len > 0 && !found)
            {
              GtkWidget *w = g_ptr_array_steal_index (inner, inner->len - 1);
              if (GTK_IS_GRID (w))
                found = w;
              for (GtkWidget *c = gtk_widget_get_first_child (w); c; c = gtk_widget_get_next_sibling (c))
                g_ptr_array_add (inner, c);
            }
          g_ptr_array_free (inner, TRUE);
        }
      for (GtkWidget *child = gtk_widget_get_first_child (widget); child;
           child = gtk_widget_get_next_sibling (child))
        g_ptr_array_add (stack, child);
    }
  g_ptr_array_free (stack, TRUE);
  g_assert_nonnull (found);
  return found;
}

static void
test_tiny_suite (void)
{
  g_autofree char *dir = g_build_filename (tmp_dir, "tiny", NULL);
  peer_experiments_page_set_suite (page, "tiny");
  peer_experiments_page_set_folder (page, dir);
  g_assert_true (ui_test_wait (page_shows, "No experiment in this folder", 30));

  gint64 started = g_get_monotonic_time ();
  peer_experiments_page_start (page);
  g_assert_true (peer_experiments_page_is_running (page));
  /* The main loop turns while the worker trains: count its iterations on the way. */
  guint64 turns = 0;
  while (peer_experiments_page_is_running (page) &&
         g_get_monotonic_time () - started < 120 * G_USEC_PER_SEC)
    {
      g_main_context_iteration (NULL, FALSE);
      turns++;
      g_usleep (1000);
    }
  g_assert_false (peer_experiments_page_is_running (page));
  g_assert_cmpuint (turns, >, 50);
  g_assert_nonnull (strstr (status_text (), "all 10 variants finished"));

  GtkWidget *methods = find_grid ("Methods at Equal Compute");
  g_assert_cmpint (grid_row_cells (methods, 0, NULL), ==, 7);
  for (int row = 1; row <= 5; row++)
    {
      g_autoptr (GPtrArray) cells = g_ptr_array_new_with_free_func (g_free);
      g_assert_cmpint (grid_row_cells (methods, row, cells), ==, 7);
      /* A perplexity, not the mark of a missing value. */
      double perplexity = g_ascii_strtod (cells->pdata[5], NULL);
      g_assert_cmpfloat (perplexity, >, 1.0);
      g_assert_cmpfloat (perplexity, <, 256.0);
    }
  g_assert_null (gtk_grid_get_child_at (GTK_GRID (methods), 0, 6));
  GtkWidget *norms = find_grid ("Query Norm: Expert Usage and Unevenness");
  /* Five PEER variants differ in N or norm: 4² and 8² with batch and none, 8² with layer. */
  g_assert_cmpint (grid_row_cells (norms, 5, NULL), ==, 6);
  g_assert_cmpint (grid_row_cells (norms, 6, NULL), ==, 0);

  g_autofree char *tables = g_build_filename (dir, "results.md", NULL);
  g_assert_true (g_file_test (tables, G_FILE_TEST_EXISTS));

  /* Again on the same folder: everything is done already. */
  peer_experiments_page_start (page);
  g_assert_true (ui_test_wait (page_idle, NULL, 60));
  g_assert_nonnull (strstr (status_text (), "all 10 variants finished"));
}

static void
test_stop_and_continue (void)
{
  g_autofree char *dir = g_build_filename (tmp_dir, "stopped", NULL);
  peer_experiments_page_set_suite (page, "tiny");
  peer_experiments_page_set_folder (page, dir);
  peer_experiments_page_start (page);
  GtkWidget *stop = ui_test_find_widget (GTK_WIDGET (page), "experiment-stop");
  g_assert_true (gtk_widget_get_sensitive (stop));
  g_signal_emit_by_name (stop, "clicked");
  g_assert_true (ui_test_wait (page_idle, NULL, 60));
  GtkWidget *start = ui_test_find_widget (GTK_WIDGET (page), "experiment-start");
  g_assert_true (gtk_widget_get_sensitive (start));
  g_autofree char *definition = g_build_filename (dir, "experiment.json", NULL);
  g_assert_true (g_file_test (definition, G_FILE_TEST_EXISTS));

  g_signal_emit_by_name (start, "clicked");
  g_assert_true (ui_test_wait (page_idle, NULL, 120));
  g_assert_nonnull (strstr (status_text (), "all 10 variants finished"));
}

static void
remove_tree (const char *path)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      GDir *dir = g_dir_open (path, 0, NULL);
      const char *name;
      while (dir && (name = g_dir_read_name (dir)))
        {
          g_autofree char *child = g_build_filename (path, name, NULL);
          remove_tree (child);
        }
      if (dir)
        g_dir_close (dir);
      g_rmdir (path);
    }
  else
    g_remove (path);
}

int
main (int argc, char **argv)
{
  if (!ui_test_init (&argc, &argv))
    return 0;
  tmp_dir = g_dir_make_tmp ("peer-ui-experiments-XXXXXX", NULL);
  window = peer_window_new (GTK_APPLICATION (ui_test_application ()));
  gtk_window_present (GTK_WINDOW (window));
  g_action_group_activate_action (G_ACTION_GROUP (window), "page",
                                  g_variant_new_string ("experiments"));
  page = PEER_EXPERIMENTS_PAGE (find_page (GTK_WIDGET (window)));
  g_test_add_func ("/ui/experiments/tiny-suite", test_tiny_suite);
  g_test_add_func ("/ui/experiments/stop-and-continue", test_stop_and_continue);
  int status = g_test_run ();
  gtk_window_destroy (GTK_WINDOW (window));
  remove_tree (tmp_dir);
  g_free (tmp_dir);
  return status;
}
