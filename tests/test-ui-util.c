#include "test-ui-util.h"

#include <stdio.h>

#include "run-inputs.h"

gboolean
ui_test_init (int *argc, char ***argv)
{
  g_test_init (argc, argv, NULL);
  if (!gtk_init_check ())
    {
      printf ("1..0 # SKIP no display: run through xvfb-run or with DISPLAY set\n");
      return FALSE;
    }
  adw_init ();
  return TRUE;
}

PeerApplication *
ui_test_application (void)
{
  static PeerApplication *app;
  if (!app)
    {
      g_autoptr (GError) error = NULL;
      app = peer_application_new (G_APPLICATION_NON_UNIQUE);
      if (!g_application_register (G_APPLICATION (app), NULL, &error))
        g_error ("cannot register the application: %s", error->message);
    }
  return app;
}

static gboolean
wake (gpointer data)
{
  return G_SOURCE_CONTINUE;
}

gboolean
ui_test_wait (UiTestCondition condition, gpointer data, double limit_seconds)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) (limit_seconds * G_USEC_PER_SEC);
  /* A blocking iteration sleeps until something happens; the tick bounds the sleep so the
   * deadline is noticed. */
  guint tick = g_timeout_add (10, wake, NULL);
  gboolean met;
  while (!(met = condition (data)) && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  g_source_remove (tick);
  return met;
}

static gboolean
never (gpointer data)
{
  return FALSE;
}

void
ui_test_spin (double seconds)
{
  ui_test_wait (never, NULL, seconds);
}

GtkWidget *
ui_test_find_widget (GtkWidget *root, const char *name)
{
  if (g_strcmp0 (gtk_widget_get_name (root), name) == 0)
    return root;
  for (GtkWidget *child = gtk_widget_get_first_child (root); child;
       child = gtk_widget_get_next_sibling (child))
    {
      GtkWidget *found = ui_test_find_widget (child, name);
      if (found)
        return found;
    }
  return NULL;
}

GtkWidget *
ui_test_find_widget_of_type (GtkWidget *root, GType type)
{
  if (G_TYPE_CHECK_INSTANCE_TYPE (root, type))
    return root;
  for (GtkWidget *child = gtk_widget_get_first_child (root); child;
       child = gtk_widget_get_next_sibling (child))
    {
      GtkWidget *found = ui_test_find_widget_of_type (child, type);
      if (found)
        return found;
    }
  return NULL;
}

gpointer
ui_test_find_toplevel (GType type)
{
  GListModel *toplevels = gtk_window_get_toplevels ();
  for (guint i = 0; i < g_list_model_get_n_items (toplevels); i++)
    {
      g_autoptr (GObject) toplevel = g_list_model_get_item (toplevels, i);
      if (G_TYPE_CHECK_INSTANCE_TYPE (toplevel, type) &&
          gtk_widget_get_visible (GTK_WIDGET (toplevel)))
        return toplevel;
    }
  return NULL;
}

gboolean
ui_test_toplevel_shown (gpointer type)
{
  return ui_test_find_toplevel (GPOINTER_TO_SIZE (type)) != NULL;
}

gboolean
ui_test_toplevel_gone (gpointer type)
{
  return ui_test_find_toplevel (GPOINTER_TO_SIZE (type)) == NULL;
}

void
ui_test_close_toplevel (GtkWindow *window)
{
  gpointer type = GSIZE_TO_POINTER (G_OBJECT_TYPE (window));
  gtk_window_close (window);
  g_assert_true (ui_test_wait (ui_test_toplevel_gone, type, 10));
}

void
ui_test_tiny_run (model_config *cfg, train_settings *settings)
{
  peer_error err;
  if (!run_inputs_load_config (NULL, RUN_INPUTS_DEFAULT_PRESET, cfg, settings, &err))
    g_error ("%s", err.message);
  cfg->d_model = 32;
  cfg->n_heads = 2;
  cfg->context = 32;
  cfg->n_layers = 2;
  cfg->layers[0] = (ffn_config){ .kind = FFN_DENSE, .d_ff = 64 };
  cfg->layers[1] = (ffn_config){
    .kind = FFN_PEER,
    .peer = { .d_model = 32, .n_experts = 64, .heads = 2, .topk = 4, .d_key = 16,
              .query_norm = PEER_NORM_BATCH, .activation = PEER_ACTIVATION_GELU },
  };
  settings->batch_size = 2;
  settings->seq_len = 32;
  settings->steps = 1000000;
  settings->warmup = 10;
  settings->eval_interval = 0;
  settings->eval_windows = 2;
  if (!model_config_validate (cfg, &err) || !train_settings_validate (settings, cfg, &err))
    g_error ("the tiny run is not valid: %s", err.message);
}

int
ui_test_plot_points (PeerWindow *window, PeerRun *run)
{
  const LossPlotModel *model = peer_loss_plot_get_model (peer_window_get_plot (window));
  for (size_t i = 0; i < model->n_series; i++)
    if (g_strcmp0 (model->series[i].name, peer_run_get_name (run)) == 0)
      return (int) model->series[i].n_train;
  return -1;
}
