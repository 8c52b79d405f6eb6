/* The expert heat map widget: the n × n grid of a PEER or PKM layer's experts drawn with
 * expert-heatmap-render.h. Scrolling zooms around the pointer, dragging pans, hovering shows a
 * cell's expert id, (a, b) and its numbers, and a click emits ::expert-activated with the
 * expert's id. It keeps its own copy of the grid, given as plain arrays.
 *
 * Drawing a 1024² grid stays cheap: the grid's colours become an image of one pixel per cell only
 * when the data, the scale or the theme change; zooming and panning draw that image anew, and
 * the hover is drawn over the finished frame. */
#pragma once

#include <gtk/gtk.h>

#include "expert-heatmap-render.h"

G_BEGIN_DECLS

#define PEER_TYPE_EXPERT_HEATMAP_SCALE (peer_expert_heatmap_scale_get_type())
GType peer_expert_heatmap_scale_get_type(void);

#define PEER_TYPE_EXPERT_HEATMAP (peer_expert_heatmap_get_type())
G_DECLARE_FINAL_TYPE(PeerExpertHeatmap, peer_expert_heatmap, PEER, EXPERT_HEATMAP, GtkWidget)

GtkWidget *peer_expert_heatmap_new(void);

/* The grid to show: side n and values (n × n, row a then column b; NaN for no value), copied;
 * with zero_is_empty a 0 is drawn as empty too. A grid of another side than before shows
 * whole; one of the same side keeps the view. side 0 clears the grid (the message shows). */
void peer_expert_heatmap_set_grid(PeerExpertHeatmap *self, int side, const float *values,
                                  gboolean zero_is_empty);
int peer_expert_heatmap_get_side(PeerExpertHeatmap *self);
/* The numbers the hover read-out lists for a cell, each a name and an n × n array for the
 * current grid (copied). n_details 0 lists the shown value only. */
void peer_expert_heatmap_set_details(PeerExpertHeatmap *self, guint n_details,
                                     const char *const *names, const float *const *values);
/* Shown in place of a grid when there is none. */
void peer_expert_heatmap_set_message(PeerExpertHeatmap *self, const char *message);
void peer_expert_heatmap_set_title(PeerExpertHeatmap *self, const char *title);
/* What the colour bar's numbers are: "selections", "gate mass". */
void peer_expert_heatmap_set_value_label(PeerExpertHeatmap *self, const char *label);

ExpertHeatmapScale peer_expert_heatmap_get_scale(PeerExpertHeatmap *self);
void peer_expert_heatmap_set_scale(PeerExpertHeatmap *self, ExpertHeatmapScale scale);

/* Experts ringed on the map, e.g. those the current token chose (copied); n 0 clears them. */
void peer_expert_heatmap_set_marked(PeerExpertHeatmap *self, const gint32 *experts, gsize n);
/* The outlined expert, -1 for none. */
void peer_expert_heatmap_set_selected(PeerExpertHeatmap *self, gint32 expert);
gint32 peer_expert_heatmap_get_selected(PeerExpertHeatmap *self);

/* The cells in view. set_view clamps to the grid; reset_view shows the whole grid. */
void peer_expert_heatmap_get_view(PeerExpertHeatmap *self, ExpertHeatmapView *view);
void peer_expert_heatmap_set_view(PeerExpertHeatmap *self, const ExpertHeatmapView *view);
void peer_expert_heatmap_reset_view(PeerExpertHeatmap *self);

/* The expert under a point in widget coordinates, as last drawn; -1 outside the grid. */
gint32 peer_expert_heatmap_expert_at(PeerExpertHeatmap *self, double x, double y);

/* What the widget draws, borrowed until the next change, and its style (following the theme):
 * an export draws the same picture with expert_heatmap_render. */
const ExpertHeatmapModel *peer_expert_heatmap_get_model(PeerExpertHeatmap *self);
const PlotStyle *peer_expert_heatmap_get_style(PeerExpertHeatmap *self);
/* Where the last drawing put the grid. */
const ExpertHeatmapLayout *peer_expert_heatmap_get_layout(PeerExpertHeatmap *self);

G_END_DECLS
