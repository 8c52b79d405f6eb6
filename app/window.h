/* The workbench window: the runs in a sidebar, and for the selected run the Training, Experts
 * and Tokens pages; a header bar with the run controls (actions win.start, win.pause, win.step,
 * win.stop, win.evaluate, win.save) and the primary menu. Runs come from the New Run dialog, from
 * checkpoints and peer-train run folders opened from the menu, dropped on the window or named on
 * the command line. Closing with unsaved progress asks first. */
#pragma once

#include <adwaita.h>

#include "loss-plot.h"
#include "new-run-dialog.h"
#include "run.h"

G_BEGIN_DECLS

#define PEER_TYPE_WINDOW (peer_window_get_type ())
G_DECLARE_FINAL_TYPE (PeerWindow, peer_window, PEER, WINDOW, AdwApplicationWindow)

PeerWindow *peer_window_new (GtkApplication *application);

/* A new run, built on another thread (its state is PREPARING until then); the window selects
 * it. Returns it, borrowed. threads <= 0 takes peer_window_get_default_threads (). */
PeerRun *peer_window_add_run (PeerWindow *self, const char *name, const model_config *cfg,
                              const train_settings *settings, GBytes *text, int threads);
/* The default run (the default preset on the built-in text), started once built if start. */
PeerRun *peer_window_add_default_run (PeerWindow *self, gboolean start);
/* A checkpoint (.safetensors), a peer-train run folder or its log.jsonl; problems are shown in
 * a toast. Returns the run (borrowed), or NULL when there is none. */
PeerRun *peer_window_open_path (PeerWindow *self, const char *path);

/* Every run, PeerRun items in sidebar order. */
GListModel *peer_window_get_runs (PeerWindow *self);
PeerRun *peer_window_get_selected_run (PeerWindow *self);
void peer_window_select_run (PeerWindow *self, PeerRun *run);
PeerLossPlot *peer_window_get_plot (PeerWindow *self);

/* Threads for a new run: the processors shared among the runs that can still train. */
int peer_window_get_default_threads (PeerWindow *self);

PeerNewRunDialog *peer_window_show_new_run_dialog (PeerWindow *self);
/* The file chooser of app.open (folders: app.open-folder). */
void peer_window_show_open_dialog (PeerWindow *self, gboolean folders);
void peer_window_show_toast (PeerWindow *self, const char *text);

G_END_DECLS
