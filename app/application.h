/* The application: org.peerworkbench.Workbench. Its actions (app.new-run, app.open,
 * app.open-folder, app.about, app.quit) and keyboard shortcuts, the window it opens with the
 * default run ready, the files it opens (checkpoints and run folders, from the command line
 * too), and --start, which starts training as soon as the window is up. */
#pragma once

#include <adwaita.h>

G_BEGIN_DECLS

#define PEER_APPLICATION_ID "org.peerworkbench.Workbench"

#define PEER_TYPE_APPLICATION (peer_application_get_type ())
G_DECLARE_FINAL_TYPE (PeerApplication, peer_application, PEER, APPLICATION, AdwApplication)

/* extra_flags: G_APPLICATION_NON_UNIQUE for tests. */
PeerApplication *peer_application_new (GApplicationFlags extra_flags);

G_END_DECLS
