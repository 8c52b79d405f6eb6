/* The retrieval path of one token (retrieval-path-render.h) as a widget: it keeps its own copy
 * of the path, draws it once per change into a texture, emphasises the chosen expert under the
 * pointer with its whole path, and reports a click on a chosen expert (its row in the list or
 * its cell in the grid) with ::expert-activated. Its height follows its width: one panel per
 * head, as many side by side as fit. */
#pragma once

#include <gtk/gtk.h>

#include "retrieval-path-render.h"

G_BEGIN_DECLS

#define PEER_TYPE_RETRIEVAL_PATH (peer_retrieval_path_get_type())
G_DECLARE_FINAL_TYPE(PeerRetrievalPath, peer_retrieval_path, PEER, RETRIEVAL_PATH, GtkWidget)

GtkWidget *peer_retrieval_path_new(void);

/* Copies data and every array it points to; NULL shows nothing. */
void peer_retrieval_path_set_data(PeerRetrievalPath *self, const RetrievalPathData *data);
/* The widget's copy, or NULL. */
const RetrievalPathData *peer_retrieval_path_get_data(PeerRetrievalPath *self);
const PlotStyle *peer_retrieval_path_get_style(PeerRetrievalPath *self);

/* Emphasises heads[head]'s expert of that rank (-1, -1 for none), as hovering does. */
void peer_retrieval_path_set_highlight(PeerRetrievalPath *self, int head, int rank);

/* What a click at (x, y) would activate; FALSE where there is no chosen expert. */
gboolean peer_retrieval_path_hit(PeerRetrievalPath *self, double x, double y,
                                 RetrievalPathHit *hit);

G_END_DECLS
