/* The Training page: every run's loss curves overlaid on one plot, with its x axis, log axes
 * and smoothing, and, for the selected run, its progress, speed, time left, a failure if there
 * was one, and the text sample from its latest evaluation. */
#pragma once

#include <gtk/gtk.h>

#include "loss-plot.h"
#include "run.h"

G_BEGIN_DECLS

#define PEER_TYPE_TRAINING_PAGE (peer_training_page_get_type ())
G_DECLARE_FINAL_TYPE (PeerTrainingPage, peer_training_page, PEER, TRAINING_PAGE, GtkWidget)

/* The plot the window fills with every run. */
PeerLossPlot *peer_training_page_get_plot (PeerTrainingPage *self);
/* Shows a hint over the plot while it has no points; call after changing the plot's data. */
void peer_training_page_update_hint (PeerTrainingPage *self);
/* The run whose progress and sample the page shows; NULL for none. */
void peer_training_page_set_run (PeerTrainingPage *self, PeerRun *run);

G_END_DECLS
