/* peer-workbench: the workbench window (application.h). */
#include "application.h"

int
main (int argc, char **argv)
{
  g_autoptr (PeerApplication) app = peer_application_new (G_APPLICATION_DEFAULT_FLAGS);
  return g_application_run (G_APPLICATION (app), argc, argv);
}
