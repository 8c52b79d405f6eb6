/* The New Run dialog: a preset, then every model setting (width, depth, heads, context, and each
 * layer's feed-forward kind with its own fields), every training setting, the training text and
 * the worker threads. Each edit is checked at once with the engine's own validation; its
 * message shows above the settings, the field it names is marked, and Create stays insensitive
 * until everything is valid. ::create is emitted when the user creates the run; the getters
 * then give what was entered. */
#pragma once

#include <adwaita.h>

#include "model-config.h"
#include "trainer.h"

G_BEGIN_DECLS

#define PEER_TYPE_NEW_RUN_DIALOG (peer_new_run_dialog_get_type ())
G_DECLARE_FINAL_TYPE (PeerNewRunDialog, peer_new_run_dialog, PEER, NEW_RUN_DIALOG, AdwWindow)

/* settings may be NULL (no persistence of the last text folder); threads is the default of the
 * threads field. */
PeerNewRunDialog *peer_new_run_dialog_new (GtkWindow *parent, GSettings *settings, int threads);

/* Replaces every field with the preset's values; false if there is no such preset. */
gboolean peer_new_run_dialog_set_preset (PeerNewRunDialog *self, const char *preset);
/* Whether everything entered is valid, and if not, the message shown (borrowed). */
gboolean peer_new_run_dialog_is_valid (PeerNewRunDialog *self, const char **message);

/* Valid only when peer_new_run_dialog_is_valid () is. */
const char *peer_new_run_dialog_get_name (PeerNewRunDialog *self);
void peer_new_run_dialog_get_config (PeerNewRunDialog *self, model_config *cfg,
                                     train_settings *settings);
/* The training text and what to call it. */
GBytes *peer_new_run_dialog_get_text (PeerNewRunDialog *self, const char **name);
int peer_new_run_dialog_get_threads (PeerNewRunDialog *self);

G_END_DECLS
