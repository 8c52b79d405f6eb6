/* What the workbench's UI tests share: a display or a skip, the application registered without
 * a session bus name, waiting on the main loop for a condition (with a limit that only guards
 * against a hang), widgets found by name, and a tiny run that trains in milliseconds a step. */
#pragma once

#include <adwaita.h>

#include "application.h"
#include "model-config.h"
#include "trainer.h"
#include "window.h"

/* g_test_init, GTK and libadwaita. Returns FALSE, after printing a TAP plan that skips
 * everything, when there is no display. */
gboolean ui_test_init (int *argc, char ***argv);

/* The application, registered (its startup has run). */
PeerApplication *ui_test_application (void);

typedef gboolean (*UiTestCondition) (gpointer data);
/* Runs the main loop until condition (data) holds; FALSE if it did not within limit_seconds. */
gboolean ui_test_wait (UiTestCondition condition, gpointer data, double limit_seconds);
/* Runs the main loop for seconds. */
void ui_test_spin (double seconds);

/* The first widget named name under root (root included), depth first, or NULL. */
GtkWidget *ui_test_find_widget (GtkWidget *root, const char *name);
/* The first widget of type under root (root included), depth first, or NULL. */
GtkWidget *ui_test_find_widget_of_type (GtkWidget *root, GType type);

/* The visible toplevel window of type, or NULL. */
gpointer ui_test_find_toplevel (GType type);
/* Conditions for ui_test_wait, type passed as GSIZE_TO_POINTER (type): a visible toplevel of
 * that type is there, or none is. */
gboolean ui_test_toplevel_shown (gpointer type);
gboolean ui_test_toplevel_gone (gpointer type);
/* Closes window and waits until no visible toplevel of its type is left. */
void ui_test_close_toplevel (GtkWindow *window);

/* The default preset cut down to a model that trains a step in milliseconds: width 32, two
 * blocks (dense, then PEER with 8² experts), context 32, batches of 2, many steps. */
void ui_test_tiny_run (model_config *cfg, train_settings *settings);

/* The number of training points the plot holds for run, or -1 if it has none. */
int ui_test_plot_points (PeerWindow *window, PeerRun *run);
