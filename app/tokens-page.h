/* The Tokens page: the selected run's model continues a prompt the user types, at a length and
 * temperature they choose, between two training steps. */
#pragma once

#include <gtk/gtk.h>

#include "run.h"

G_BEGIN_DECLS

#define PEER_TYPE_TOKENS_PAGE (peer_tokens_page_get_type ())
G_DECLARE_FINAL_TYPE (PeerTokensPage, peer_tokens_page, PEER, TOKENS_PAGE, GtkWidget)

void peer_tokens_page_set_run (PeerTokensPage *self, PeerRun *run);

G_END_DECLS
