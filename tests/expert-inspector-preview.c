/* expert-inspector-preview: opens the expert inspector on a checkpoint, in a window of its own,
 * the way the workbench opens it from the expert heatmap. For looking at the inspector (and for
 * docs/screenshots/expert-inspector.png) without training a run in the window first.
 *
 *   expert-inspector-preview [--ablate] CHECKPOINT LAYER EXPERT [STEP=CHECKPOINT …]
 *
 * The checkpoint's run resumes from its trainer file when one is beside it, on the built-in
 * corpus. Each STEP=CHECKPOINT is an earlier checkpoint of the same run: the usage plot shows,
 * at each, the expert's selections per training step expected from its rate on the inspector's
 * validation windows (selections per token × tokens per step). --ablate also measures the
 * validation loss with the expert switched off. */
#include <adwaita.h>
#include <stdlib.h>

#include "checkpoint.h"
#include "expert-inspector.h"
#include "peer-workbench-ui-resources.h"
#include "run-inputs.h"

#define HISTORY_WINDOWS 32

typedef struct {
  char *path;
  int layer;
  int expert;
  gboolean ablate;
  GArray *history_paths;  /* char *, earlier checkpoints */
  GArray *history_steps;  /* double */
  PeerSession *session;
} Preview;

/* The expert's selections per training step at a checkpoint, from its validation rate. */
static gboolean
history_point (const char *path, const corpus *data, int layer, int expert, int batch, int seq,
               thread_pool *pool, double *per_step, GError **error)
{
  peer_error err = { { 0 } };
  peer_model *model = checkpoint_load_model (path, batch, seq, &err);
  if (!model)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s", err.message);
      return FALSE;
    }
  expert_inspect_settings settings;
  expert_inspect_settings_default (&settings, layer, expert);
  settings.windows = HISTORY_WINDOWS;
  settings.top_contexts = 0;
  settings.top_bytes = 0;
  expert_inspection inspection;
  gboolean ok = expert_inspect (model, data, &settings, &inspection, pool, &err);
  if (ok)
    *per_step = (double) inspection.count / (double) inspection.tokens * batch * seq;
  else
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s", err.message);
  expert_inspection_free (&inspection);
  peer_model_free (model);
  return ok;
}

static gboolean
click_ablate (gpointer inspector)
{
  if (peer_expert_inspector_get_inspection (inspector))
    {
      peer_expert_inspector_ablate (inspector);
      return G_SOURCE_REMOVE;
    }
  return G_SOURCE_CONTINUE;
}

static void
on_activate (GApplication *app, Preview *preview)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) text = NULL;
  g_autofree char *text_name = NULL;
  peer_error err = { { 0 } };
  if (!run_inputs_load_text (NULL, &text, &text_name, &err))
    g_error ("%s", err.message);
  preview->session = peer_session_new_from_checkpoint (preview->path, text, 2, &error);
  if (!preview->session)
    g_error ("%s", error->message);
  const train_settings *settings = peer_session_get_settings (preview->session);

  corpus data;
  gsize size;
  const guint8 *bytes = g_bytes_get_data (text, &size);
  if (!corpus_from_bytes (&data, bytes, size, settings->seq_len, text_name, &err))
    g_error ("%s", err.message);
  GArray *steps = g_array_new (FALSE, FALSE, sizeof (double));
  GArray *counts = g_array_new (FALSE, FALSE, sizeof (double));
  thread_pool *pool = thread_pool_new (thread_pool_default_threads (), &err);
  if (!pool)
    g_error ("%s", err.message);
  for (guint i = 0; i < preview->history_paths->len; i++)
    {
      double per_step;
      if (!history_point (g_array_index (preview->history_paths, char *, i), &data,
                          preview->layer, preview->expert, settings->batch_size,
                          settings->seq_len, pool, &per_step, &error))
        g_error ("%s", error->message);
      g_array_append_val (steps, g_array_index (preview->history_steps, double, i));
      g_array_append_val (counts, per_step);
    }
  thread_pool_free (pool);
  corpus_free (&data);

  PeerExpertInspector *inspector =
      peer_expert_inspector_present (preview->session, preview->layer, preview->expert, NULL);
  GtkWindow *window = GTK_WINDOW (gtk_widget_get_root (GTK_WIDGET (inspector)));
  gtk_window_set_application (window, GTK_APPLICATION (app));
  /* Tall enough for every part, the contexts included. */
  gtk_window_set_default_size (window, 1120, 1400);
  peer_expert_inspector_set_usage_history (inspector, (const double *) (void *) steps->data,
                                           (const double *) (void *) counts->data, steps->len);
  g_array_unref (steps);
  g_array_unref (counts);
  if (preview->ablate)
    g_timeout_add (50, click_ablate, inspector);
}

static int
parse_int (const char *text, const char *what)
{
  char *end = NULL;
  long value = strtol (text, &end, 10);
  if (!*text || *end || value < 0 || value > G_MAXINT)
    {
      g_printerr ("%s must be a whole number, not “%s”\n", what, text);
      exit (2);
    }
  return (int) value;
}

int
main (int argc, char **argv)
{
  Preview preview = { .history_paths = g_array_new (FALSE, FALSE, sizeof (char *)),
                      .history_steps = g_array_new (FALSE, FALSE, sizeof (double)) };
  int first = 1;
  if (argc > 1 && g_str_equal (argv[1], "--ablate"))
    {
      preview.ablate = TRUE;
      first++;
    }
  if (argc - first < 3)
    {
      g_printerr ("usage: expert-inspector-preview [--ablate] CHECKPOINT LAYER EXPERT "
                  "[STEP=CHECKPOINT …]\n");
      return 2;
    }
  preview.path = argv[first];
  preview.layer = parse_int (argv[first + 1], "LAYER");
  preview.expert = parse_int (argv[first + 2], "EXPERT");
  for (int i = first + 3; i < argc; i++)
    {
      char *equals = strchr (argv[i], '=');
      if (!equals)
        {
          g_printerr ("an earlier checkpoint is given as STEP=PATH, not “%s”\n", argv[i]);
          return 2;
        }
      *equals = '\0';
      double step = parse_int (argv[i], "STEP");
      char *path = equals + 1;
      g_array_append_val (preview.history_steps, step);
      g_array_append_val (preview.history_paths, path);
    }

  peer_workbench_ui_register_resource ();
  g_autoptr (AdwApplication) app =
      adw_application_new ("org.peerworkbench.Workbench.ExpertInspectorPreview",
                           G_APPLICATION_NON_UNIQUE);
  g_application_set_resource_base_path (G_APPLICATION (app), "/org/peerworkbench/Workbench");
  g_signal_connect (app, "activate", G_CALLBACK (on_activate), &preview);
  int status = g_application_run (G_APPLICATION (app), 1, argv);
  if (preview.session)
    {
      peer_session_shutdown (preview.session);
      g_object_unref (preview.session);
    }
  g_array_unref (preview.history_paths);
  g_array_unref (preview.history_steps);
  return status;
}
