/* One expert looked at closely (engine/expert-inspect.h), as the workbench asks for it: a request
 * sent to a run's worker with peer_session_inspect (), run there between two steps by
 * peer_expert_inspection_run (), and the answer handed back to the main thread. The answer holds
 * copies of the text around each top context, so the main thread never reads the run's corpus.
 *
 *   peer_session_inspect (session, peer_expert_inspection_run, request,
 *                         peer_expert_request_free, peer_expert_inspection_free,
 *                         cancellable, callback, user_data); */
#pragma once

#include <glib.h>

#include "expert-inspect.h"
#include "session.h"

G_BEGIN_DECLS

typedef enum {
  PEER_EXPERT_INSPECTION_DETAILS,  /* norms, counts, histograms, contexts, logit effect */
  PEER_EXPERT_INSPECTION_ABLATION, /* the validation loss with the expert on and off */
} PeerExpertInspectionKind;

typedef struct {
  PeerExpertInspectionKind kind;
  /* The expert, the head filter and the windows; the ablation reads layer, expert and windows. */
  expert_inspect_settings settings;
  int context_before; /* bytes of text kept before each top context's byte */
  int context_after;  /* and after it */
} PeerExpertRequest;

/* The engine's defaults (expert_inspect_settings_default) with 48 bytes before each context and
 * 16 after. */
PeerExpertRequest *peer_expert_request_new (PeerExpertInspectionKind kind, int layer, int expert);
void peer_expert_request_free (gpointer request);

/* The text around one top context. */
typedef struct {
  guint8 *bytes;
  gsize size;
  gsize token;     /* the index in bytes of the byte where the expert fired */
  gsize seen_from; /* the first index the model had read there (its window's start); <= token */
} PeerContextText;

typedef struct {
  PeerExpertInspectionKind kind;
  long step;                  /* the training step of the weights looked at */
  expert_inspection details;  /* DETAILS */
  PeerContextText *contexts;  /* (details.n_contexts) DETAILS */
  expert_ablation ablation;   /* ABLATION */
  /* DETAILS: the expert's selections over training, as the session's monitor kept them: per
   * interval its middle step and its selections per step; n_usage 0 without a history. */
  double *usage_steps;
  double *usage_per_step;
  guint n_usage;
} PeerExpertInspection;

/* A PeerInspectFunc: runs the request on the worker; returns a PeerExpertInspection, or NULL with
 * error set (a layer without experts, an expert that does not exist, ...). */
gpointer peer_expert_inspection_run (const PeerInspectContext *context, gpointer request,
                                     GError **error);
void peer_expert_inspection_free (gpointer inspection);

G_END_DECLS
