/* The expert inspector: one expert of a run's PEER or PKM layer, looked at on the validation
 * text. It shows the expert's place in the grid, its usage over training, ‖u‖ and ‖v‖, how
 * often it was chosen and the gate mass it received, the histogram of its activation when
 * chosen and of its pre-activation over every token, the contexts that activate it most, the
 * bytes its v pushes up and down, and, on request, the validation loss with the expert switched
 * off. It asks the run's worker for these itself (expert-inspection.h), between two steps, and
 * fills in when the answer arrives; Refresh asks again at the run's latest step. */
#pragma once

#include <gtk/gtk.h>

#include "expert-inspection.h"
#include "session.h"

G_BEGIN_DECLS

#define PEER_TYPE_EXPERT_INSPECTOR (peer_expert_inspector_get_type ())
G_DECLARE_FINAL_TYPE (PeerExpertInspector, peer_expert_inspector, PEER, EXPERT_INSPECTOR,
                      GtkWidget)

/* Inspects expert (a flat index a·n + b) of block layer of session's model, every head. */
GtkWidget *peer_expert_inspector_new (PeerSession *session, int layer, int expert);

/* A new inspector in a window of its own, transient for parent (which may be NULL), shown; the
 * window is its root. Several can be open at once, to compare experts. */
PeerExpertInspector *peer_expert_inspector_present (PeerSession *session, int layer, int expert,
                                                    GtkWindow *parent);

PeerSession *peer_expert_inspector_get_session (PeerExpertInspector *self);
int peer_expert_inspector_get_layer (PeerExpertInspector *self);
int peer_expert_inspector_get_expert (PeerExpertInspector *self);

/* Restricts the counts, histograms and contexts to the selections of one head (-1: every head)
 * and inspects again. */
void peer_expert_inspector_set_head (PeerExpertInspector *self, int head);
int peer_expert_inspector_get_head (PeerExpertInspector *self);

/* Inspects again, at the run's latest weights. */
void peer_expert_inspector_refresh (PeerExpertInspector *self);
/* Measures the validation loss with the expert switched off (its v zeroed for the forward, then
 * restored exactly) against the loss with it on, over the same windows. */
void peer_expert_inspector_ablate (PeerExpertInspector *self);

/* The expert's usage over training: counts[i] is its selections per training step around
 * steps[i] (an interval's selections divided by the interval's steps), n points in ascending
 * step order. Copied. */
void peer_expert_inspector_set_usage_history (PeerExpertInspector *self, const double *steps,
                                              const double *counts, guint n);

/* What the inspector shows, borrowed; NULL until the first answer (or the first ablation). */
const PeerExpertInspection *peer_expert_inspector_get_inspection (PeerExpertInspector *self);
const PeerExpertInspection *peer_expert_inspector_get_ablation (PeerExpertInspector *self);
/* Whether an answer is awaited. */
gboolean peer_expert_inspector_is_busy (PeerExpertInspector *self);

G_END_DECLS
