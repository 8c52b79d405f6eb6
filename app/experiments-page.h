/* The Experiments page: choose a suite and a folder, start and stop it (it trains on a worker
 * thread, experiment-session.h), and watch each variant's progress, the methods and query-norm
 * tables and the isoFLOP plot fill in as the variants train. A folder that already holds an
 * experiment shows its results as soon as it is chosen. */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

#define PEER_TYPE_EXPERIMENTS_PAGE (peer_experiments_page_get_type ())
G_DECLARE_FINAL_TYPE (PeerExperimentsPage, peer_experiments_page, PEER, EXPERIMENTS_PAGE,
                      GtkWidget)

/* The folder the next Start uses (and whose results the page shows now). */
void peer_experiments_page_set_folder (PeerExperimentsPage *self, const char *folder);
const char *peer_experiments_page_get_folder (PeerExperimentsPage *self);
/* "tiny", "quick" or "full". */
void peer_experiments_page_set_suite (PeerExperimentsPage *self, const char *suite);
/* Starts the suite in the folder, as the Start button does. */
void peer_experiments_page_start (PeerExperimentsPage *self);
gboolean peer_experiments_page_is_running (PeerExperimentsPage *self);

G_END_DECLS
