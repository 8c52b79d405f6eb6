/* The live loss-curve plot: several runs overlaid, training loss raw and smoothed, validation
 * points, x in steps, tokens or training FLOPs, log axes, a hover crosshair. It keeps its own
 * copy of the data, given as plain arrays, and draws with loss-plot-render.h, which an export
 * calls with peer_loss_plot_get_model() and peer_loss_plot_get_style() to draw the same
 * picture. */
#pragma once

#include <gtk/gtk.h>

#include "loss-plot-render.h"

G_BEGIN_DECLS

#define PEER_TYPE_LOSS_PLOT_X_AXIS (peer_loss_plot_x_axis_get_type())
GType peer_loss_plot_x_axis_get_type(void);

#define PEER_TYPE_LOSS_PLOT (peer_loss_plot_get_type())
G_DECLARE_FINAL_TYPE(PeerLossPlot, peer_loss_plot, PEER, LOSS_PLOT, GtkWidget)

GtkWidget *peer_loss_plot_new(void);

/* Adds the run id, or replaces its training points. Any of steps, tokens and flops (each n) may
 * be NULL: that run then has no points on that x axis. loss (n) is in nats per token. A new run
 * is visible and takes the first palette colour no other run has. */
void peer_loss_plot_set_series(PeerLossPlot *self, guint id, const char *name, gsize n,
                               const double *steps, const double *tokens, const double *flops,
                               const double *loss);
/* Appends training points to the run id (which must exist): the live path, one snapshot at a
 * time. */
void peer_loss_plot_append_points(PeerLossPlot *self, guint id, gsize n, const double *steps,
                                  const double *tokens, const double *flops, const double *loss);
/* Replaces the validation points of the run id (which must exist). */
void peer_loss_plot_set_validation(PeerLossPlot *self, guint id, gsize n, const double *steps,
                                   const double *tokens, const double *flops, const double *loss);
void peer_loss_plot_set_series_visible(PeerLossPlot *self, guint id, gboolean visible);
gboolean peer_loss_plot_get_series_visible(PeerLossPlot *self, guint id);
/* The run's colour, for a swatch beside its name elsewhere in the window. */
gboolean peer_loss_plot_get_series_color(PeerLossPlot *self, guint id, GdkRGBA *color);
void peer_loss_plot_remove_series(PeerLossPlot *self, guint id);
gboolean peer_loss_plot_has_series(PeerLossPlot *self, guint id);

LossPlotXAxis peer_loss_plot_get_x_axis(PeerLossPlot *self);
void peer_loss_plot_set_x_axis(PeerLossPlot *self, LossPlotXAxis x_axis);
gboolean peer_loss_plot_get_log_x(PeerLossPlot *self);
void peer_loss_plot_set_log_x(PeerLossPlot *self, gboolean log_x);
gboolean peer_loss_plot_get_log_y(PeerLossPlot *self);
void peer_loss_plot_set_log_y(PeerLossPlot *self, gboolean log_y);
double peer_loss_plot_get_smoothing(PeerLossPlot *self);
void peer_loss_plot_set_smoothing(PeerLossPlot *self, double smoothing);

/* What the widget draws, borrowed: valid until the next change to the plot. */
const LossPlotModel *peer_loss_plot_get_model(PeerLossPlot *self);
/* The colours and font the widget draws with, following the theme; borrowed likewise. */
const PlotStyle *peer_loss_plot_get_style(PeerLossPlot *self);

G_END_DECLS
