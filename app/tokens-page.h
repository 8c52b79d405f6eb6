/* The Tokens page: a text read by the selected run's model, one byte-token at a time. The text
 * is typed or pasted, a passage of the run's validation text, or written by the model; one
 * inspection between training steps (token-analysis.h) reads it with the latest weights. The
 * page shows the tokens coloured by their loss, and for the current token the model's best
 * guesses at the next byte and the retrieval path through any PEER or PKM layer, head by head
 * or all heads at once.
 *
 * Signals, for the window to connect to the Experts page:
 *   ::experts-chosen (int layer, GArray *experts): the current token's chosen experts (gint32,
 *     every head's, head by head, best first) in block layer; sent whenever the token or the
 *     layer changes, and with an empty array when there is no token.
 *   ::expert-activated (int layer, int expert): a chosen expert was clicked. */
#pragma once

#include <gtk/gtk.h>

#include "run.h"
#include "token-analysis.h"

G_BEGIN_DECLS

#define PEER_TYPE_TOKENS_PAGE (peer_tokens_page_get_type ())
G_DECLARE_FINAL_TYPE (PeerTokensPage, peer_tokens_page, PEER, TOKENS_PAGE, GtkWidget)

void peer_tokens_page_set_run (PeerTokensPage *self, PeerRun *run);

/* Reads text (as if typed and Read pressed) with the run's model. */
void peer_tokens_page_read_text (PeerTokensPage *self, const char *text);

/* The last reading, or NULL (while none has come back). */
const PeerTokenAnalysis *peer_tokens_page_get_analysis (PeerTokensPage *self);
/* Whether a reading was asked for and has not come back. */
gboolean peer_tokens_page_is_reading (PeerTokensPage *self);

/* The current token (-1 when there is none) and the layer (block number, -1 when the model has
 * no PEER or PKM layer) and head (-1: all heads) whose path is shown. */
int peer_tokens_page_get_position (PeerTokensPage *self);
void peer_tokens_page_set_position (PeerTokensPage *self, int position);
int peer_tokens_page_get_layer (PeerTokensPage *self);
void peer_tokens_page_set_layer (PeerTokensPage *self, int layer);
int peer_tokens_page_get_head (PeerTokensPage *self);
void peer_tokens_page_set_head (PeerTokensPage *self, int head);

G_END_DECLS
