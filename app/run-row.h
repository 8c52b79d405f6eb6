/* A run in the sidebar: a check that shows or hides it on the plot, its plot colour, its name,
 * state, kind, and its step and loss, kept up to date from the run. */
#pragma once

#include <gtk/gtk.h>

#include "run.h"

G_BEGIN_DECLS

#define PEER_TYPE_RUN_ROW (peer_run_row_get_type ())
G_DECLARE_FINAL_TYPE (PeerRunRow, peer_run_row, PEER, RUN_ROW, GtkListBoxRow)

GtkWidget *peer_run_row_new (PeerRun *run);
PeerRun *peer_run_row_get_run (PeerRunRow *self);
/* The run's colour on the plot. */
void peer_run_row_set_color (PeerRunRow *self, const GdkRGBA *color);

G_END_DECLS
