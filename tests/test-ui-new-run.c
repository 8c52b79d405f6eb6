/* The New Run dialog refuses what the engine refuses: an invalid value shows the engine's own
 * message above the settings, marks its row, and leaves Create insensitive, so no run is made;
 * fixing the value makes the run. Presets fill every field, and the layer list follows the
 * number of blocks. */
#include <string.h>

#include "test-ui-util.h"

static PeerWindow *window;

static GtkWidget *
find (PeerNewRunDialog *dialog, const char *name)
{
  GtkWidget *widget = ui_test_find_widget (GTK_WIDGET (dialog), name);
  if (!widget)
    g_error ("the dialog has no widget named %s", name);
  return widget;
}

static void
set_text (PeerNewRunDialog *dialog, const char *name, const char *text)
{
  gtk_editable_set_text (GTK_EDITABLE (find (dialog, name)), text);
  ui_test_spin (0.05);
}

static const char *
shown_message (PeerNewRunDialog *dialog)
{
  GtkWidget *label = find (dialog, "error-label");
  GtkWidget *revealer = gtk_widget_get_parent (gtk_widget_get_parent (label));
  if (!GTK_IS_REVEALER (revealer) || !gtk_revealer_get_reveal_child (GTK_REVEALER (revealer)))
    return NULL;
  return gtk_label_get_label (GTK_LABEL (label));
}

static guint
run_count (void)
{
  return g_list_model_get_n_items (peer_window_get_runs (window));
}

/* The message is shown, Create is insensitive, and pressing it anyway makes no run. */
static void
assert_refused (PeerNewRunDialog *dialog, const char *row, const char *message)
{
  const char *shown = shown_message (dialog);
  if (!shown || !strstr (shown, message))
    g_error ("the dialog shows “%s”, not “%s”", shown ? shown : "(nothing)", message);
  const char *held = NULL;
  g_assert_false (peer_new_run_dialog_is_valid (dialog, &held));
  g_assert_cmpstr (held, ==, shown);
  GtkWidget *create = find (dialog, "create-button");
  g_assert_false (gtk_widget_get_sensitive (create));
  if (row)
    g_assert_true (gtk_widget_has_css_class (find (dialog, row), "error"));
  guint before = run_count ();
  g_signal_emit_by_name (create, "clicked");
  ui_test_spin (0.05);
  g_assert_cmpuint (run_count (), ==, before);
  g_assert_true (gtk_widget_get_visible (GTK_WIDGET (dialog)));
}

static void
assert_accepted (PeerNewRunDialog *dialog)
{
  const char *message = NULL;
  if (!peer_new_run_dialog_is_valid (dialog, &message))
    g_error ("the dialog refuses valid settings: %s", message);
  g_assert_null (shown_message (dialog));
  g_assert_true (gtk_widget_get_sensitive (find (dialog, "create-button")));
}

static PeerNewRunDialog *
open_dialog (void)
{
  g_action_group_activate_action (G_ACTION_GROUP (ui_test_application ()), "new-run", NULL);
  ui_test_spin (0.1);
  PeerNewRunDialog *dialog = ui_test_find_toplevel (PEER_TYPE_NEW_RUN_DIALOG);
  if (!dialog)
    g_error ("app.new-run showed no New Run dialog");
  return dialog;
}

static void
test_defaults_valid (void)
{
  PeerNewRunDialog *dialog = open_dialog ();
  /* The default preset: peer-small, whose third block is a PEER layer of 128² experts. */
  g_assert_cmpstr (gtk_editable_get_text (GTK_EDITABLE (find (dialog, "name-row"))), ==,
                   "peer-small");
  g_assert_cmpstr (gtk_editable_get_text (GTK_EDITABLE (find (dialog, "layer-2-n_experts"))), ==,
                   "16384");
  g_assert_cmpstr (gtk_editable_get_text (GTK_EDITABLE (find (dialog, "d_model"))), ==, "128");
  g_assert_cmpstr (gtk_editable_get_text (GTK_EDITABLE (find (dialog, "lr"))), ==, "0.003");
  assert_accepted (dialog);
  gtk_window_destroy (GTK_WINDOW (dialog));
}

static void
test_refuses_invalid (void)
{
  PeerNewRunDialog *dialog = open_dialog ();

  /* A pool that is not a square: the engine's message, word for word. */
  set_text (dialog, "layer-2-n_experts", "1000");
  assert_refused (dialog, "layer-2-n_experts",
                  "layer 2 (peer): n_experts = 1000 is not a perfect square: product keys index "
                  "the experts as an n × n grid; use 961 (31²) or 1024 (32²)");
  g_assert_true (gtk_widget_has_css_class (find (dialog, "layer-2"), "error"));
  set_text (dialog, "layer-2-n_experts", "1024");
  assert_accepted (dialog);

  /* More experts per head than sub-keys per side. */
  set_text (dialog, "layer-2-topk", "40");
  assert_refused (dialog, "layer-2-topk", "topk = 40 exceeds the 32 sub-keys per side");
  set_text (dialog, "layer-2-topk", "8");
  assert_accepted (dialog);

  /* Heads that do not divide the width. */
  set_text (dialog, "n_heads", "5");
  assert_refused (dialog, "n_heads", "n_heads = 5 does not divide d_model = 128");
  set_text (dialog, "n_heads", "4");

  /* A training setting checked against the model. */
  set_text (dialog, "seq_len", "1000");
  assert_refused (dialog, "seq_len", "seq_len = 1000: use 1 to the model's context (128)");
  set_text (dialog, "seq_len", "64");

  set_text (dialog, "lr", "3");
  assert_refused (dialog, "lr", "lr = 3: use a learning rate from 0 to 1");
  set_text (dialog, "lr", "3e-3");

  /* Text that is not a number never reaches the engine. */
  set_text (dialog, "d_model", "12a");
  assert_refused (dialog, "d_model", "d_model = “12a” is not a whole number");
  set_text (dialog, "d_model", "128");

  set_text (dialog, "threads", "0");
  assert_refused (dialog, "threads", "threads = 0 is out of range");
  set_text (dialog, "threads", "1");

  set_text (dialog, "name-row", "  ");
  assert_refused (dialog, NULL, "Give the run a name.");
  set_text (dialog, "name-row", "square experts");
  assert_accepted (dialog);

  /* Valid again: Create makes exactly the run that was entered. */
  guint before = run_count ();
  g_signal_emit_by_name (find (dialog, "create-button"), "clicked");
  ui_test_spin (0.1);
  g_assert_cmpuint (run_count (), ==, before + 1);
  PeerRun *run = peer_window_get_selected_run (window);
  g_assert_cmpstr (peer_run_get_name (run), ==, "square experts");
  const model_config *cfg = peer_run_get_config (run);
  g_assert_cmpint (cfg->layers[2].peer.n_experts, ==, 1024);
  g_assert_cmpint (peer_run_get_settings (run)->seq_len, ==, 64);
}

static void
test_presets_and_layers (void)
{
  PeerNewRunDialog *dialog = open_dialog ();
  g_assert_true (peer_new_run_dialog_set_preset (dialog, "peer-million"));
  g_assert_cmpstr (gtk_editable_get_text (GTK_EDITABLE (find (dialog, "layer-2-n_experts"))), ==,
                   "1048576");
  g_assert_cmpstr (gtk_editable_get_text (GTK_EDITABLE (find (dialog, "name-row"))), ==,
                   "peer-million");
  assert_accepted (dialog);

  g_assert_true (peer_new_run_dialog_set_preset (dialog, "moe-small"));
  g_assert_true (gtk_widget_get_visible (find (dialog, "layer-2-moe-n_experts")));
  g_assert_false (gtk_widget_get_visible (find (dialog, "layer-2-n_experts")));
  g_assert_cmpuint (adw_combo_row_get_selected (ADW_COMBO_ROW (find (dialog, "layer-2-kind"))), ==,
                    FFN_MOE);
  assert_accepted (dialog);

  /* More blocks: each new one repeats the last; fewer: the rows go. */
  set_text (dialog, "n_layers", "6");
  g_assert_nonnull (ui_test_find_widget (GTK_WIDGET (dialog), "layer-5"));
  assert_accepted (dialog);
  set_text (dialog, "n_layers", "2");
  g_assert_null (ui_test_find_widget (GTK_WIDGET (dialog), "layer-2"));
  assert_accepted (dialog);
  set_text (dialog, "n_layers", "100");
  assert_refused (dialog, "n_layers", "n_layers = 100 is out of range: use 1 to 64");

  /* A block turned into a PEER layer gets the preset's PEER fields, which are valid. */
  set_text (dialog, "n_layers", "2");
  adw_combo_row_set_selected (ADW_COMBO_ROW (find (dialog, "layer-1-kind")), FFN_PEER);
  ui_test_spin (0.05);
  g_assert_true (gtk_widget_get_visible (find (dialog, "layer-1-n_experts")));
  g_assert_false (gtk_widget_get_visible (find (dialog, "layer-1-d_ff")));
  assert_accepted (dialog);
  model_config cfg;
  train_settings settings;
  peer_new_run_dialog_get_config (dialog, &cfg, &settings);
  g_assert_cmpint (cfg.n_layers, ==, 2);
  g_assert_cmpint (cfg.layers[1].kind, ==, FFN_PEER);
  g_assert_cmpint (cfg.layers[1].peer.n_experts, ==, 16384);
  gtk_window_destroy (GTK_WINDOW (dialog));
}

int
main (int argc, char **argv)
{
  if (!ui_test_init (&argc, &argv))
    return 0;
  window = peer_window_new (GTK_APPLICATION (ui_test_application ()));
  gtk_window_present (GTK_WINDOW (window));
  g_test_add_func ("/ui/new-run/defaults-valid", test_defaults_valid);
  g_test_add_func ("/ui/new-run/refuses-invalid", test_refuses_invalid);
  g_test_add_func ("/ui/new-run/presets-and-layers", test_presets_and_layers);
  int status = g_test_run ();
  gtk_window_destroy (GTK_WINDOW (window));
  return status;
}
