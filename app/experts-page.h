/* The Experts page: for the selected run, the n × n grid of a PEER or PKM layer's experts as a
 * heat map, live while the run trains. It shows one metric (selections, gate mass, mean
 * activation) of all heads or one, over one window (live: recent steps, decayed; since start;
 * the validation text), on a linear or log colour scale; beside it the usage, unevenness and
 * dead experts of every head, as the engine measures them (expert_stats_usage), and the usage at
 * every evaluation. Clicking a cell emits ::expert-activated with the layer and the expert. */
#pragma once

#include <gtk/gtk.h>

#include "expert-grid.h"
#include "expert-monitor.h"
#include "run.h"

G_BEGIN_DECLS

#define PEER_TYPE_EXPERTS_PAGE (peer_experts_page_get_type ())
G_DECLARE_FINAL_TYPE (PeerExpertsPage, peer_experts_page, PEER, EXPERTS_PAGE, GtkWidget)

void peer_experts_page_set_run (PeerExpertsPage *self, PeerRun *run);

/* What the page shows: the layer (a model layer index; -1 before there is one), the metric,
 * the head (-1: all) and the window. Setting selects them as the controls would. */
int peer_experts_page_get_layer (PeerExpertsPage *self);
void peer_experts_page_set_layer (PeerExpertsPage *self, int layer);
expert_metric peer_experts_page_get_metric (PeerExpertsPage *self);
void peer_experts_page_set_metric (PeerExpertsPage *self, expert_metric metric);
int peer_experts_page_get_head (PeerExpertsPage *self);
void peer_experts_page_set_head (PeerExpertsPage *self, int head);
expert_window peer_experts_page_get_window (PeerExpertsPage *self);
void peer_experts_page_set_window (PeerExpertsPage *self, expert_window window);

/* Experts of layer ringed on the map (e.g. those a token chose), copied; n 0 clears them. */
void peer_experts_page_set_marked (PeerExpertsPage *self, int layer, const gint32 *experts,
                                   gsize n);

/* The grid the map shows now, or NULL (borrowed: valid until the next refresh). Each refresh
 * emits ::grid-updated. */
const PeerExpertGrid *peer_experts_page_get_grid (PeerExpertsPage *self);

G_END_DECLS
