/* The expert statistics of one layer of a run, as the Experts page draws them: fetched from the
 * session's worker between two steps (peer_session_inspect) and handed to the main thread.
 *
 * A grid holds, for one window (live, since start, validation text) and one head or all, each
 * expert's selections, gate mass and mean activation over the n × n grid of its product keys,
 * and the usage of every head as expert_stats_usage measures it. A series is one expert's
 * selections over training. */
#pragma once

#include "session.h"

G_BEGIN_DECLS

typedef struct {
  int layer;
  int side;               /* n: N = n² experts */
  int heads;
  int head;               /* -1: all heads */
  expert_window window;
  long step;              /* the run's step when the grid was taken */
  long measured_step;     /* validation: the step the text was measured at; else step */
  double tokens;          /* tokens in the window (decayed, for live) */
  float *count;           /* (n, n) selections; row a is sub-key a of C, column b of C' */
  float *gate_mass;       /* (n, n) Σ gate: the paper's z' */
  float *mean_activation; /* (n, n) NaN where never selected */
  expert_usage *usage;    /* (heads + 1): all heads in [0], head j in [1 + j] */
  double seconds;         /* the worker's time to make it (a validation pass included) */
} PeerExpertGrid;

void peer_expert_grid_free (PeerExpertGrid *grid);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (PeerExpertGrid, peer_expert_grid_free)

/* Asks the session's worker for the grid of layer in window for head (-1: all heads); callback
 * gets a PeerExpertGrid (transfer full) or the error. The validation window is measured when it
 * never was, or anew when measure is TRUE: one evaluation-mode pass over the run's evaluation
 * windows of the validation text. */
void peer_expert_grid_fetch (PeerSession *session, int layer, expert_window window, int head,
                             gboolean measure, GCancellable *cancellable,
                             PeerInspectCallback callback, gpointer user_data);

/* One expert's selections (summed over heads) over training, interval by interval. */
typedef struct {
  int layer;
  int expert;
  int n;               /* intervals */
  long *first_step;    /* (n) first step of each interval */
  long *end_step;      /* (n) one past its last step */
  guint32 *count;      /* (n) selections in it */
  gboolean saturated;  /* some interval's count of some expert stopped at 65535 */
} PeerExpertSeries;

void peer_expert_series_free (PeerExpertSeries *series);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (PeerExpertSeries, peer_expert_series_free)

/* Asks for expert's series in layer; callback gets a PeerExpertSeries (transfer full). */
void peer_expert_series_fetch (PeerSession *session, int layer, int expert,
                               GCancellable *cancellable, PeerInspectCallback callback,
                               gpointer user_data);

G_END_DECLS
