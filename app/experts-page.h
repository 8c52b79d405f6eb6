/* The Experts page: for the selected run, each PEER and PKM layer with the share of its experts
 * in use and the unevenness of their gate weight at the latest evaluation, and both at every
 * evaluation so far; an Evaluate Now button measures them between two steps. */
#pragma once

#include <gtk/gtk.h>

#include "run.h"

G_BEGIN_DECLS

#define PEER_TYPE_EXPERTS_PAGE (peer_experts_page_get_type ())
G_DECLARE_FINAL_TYPE (PeerExpertsPage, peer_experts_page, PEER, EXPERTS_PAGE, GtkWidget)

void peer_experts_page_set_run (PeerExpertsPage *self, PeerRun *run);

G_END_DECLS
