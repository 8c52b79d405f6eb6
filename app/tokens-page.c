#include "tokens-page.h"

#include <adwaita.h>

#include "format.h"

struct _PeerTokensPage {
  GtkWidget parent_instance;

  PeerRun *run;
  gulong changed_handler;
  gulong snapshot_handler;
  gboolean waiting;       /* a prompt was sent and its continuation has not come back */

  AdwEntryRow *prompt_row;
  GtkSpinButton *length_spin;
  GtkSpinButton *temperature_spin;
  GtkButton *generate_button;
  GtkLabel *status_label;
  GtkLabel *output_label;
};

G_DEFINE_FINAL_TYPE (PeerTokensPage, peer_tokens_page, GTK_TYPE_WIDGET)

static void
update (PeerTokensPage *self)
{
  PeerRun *run = self->run;
  PeerSession *session = run ? peer_run_get_session (run) : NULL;
  gtk_widget_set_sensitive (GTK_WIDGET (self->generate_button), session && !self->waiting);

  const char *prompt = NULL;
  long step = 0;
  const char *continuation = run ? peer_run_get_continuation (run, &prompt, &step) : NULL;
  if (continuation)
    {
      g_autofree char *markup = g_markup_printf_escaped ("<b>%s</b>%s", prompt ? prompt : "",
                                                         continuation);
      gtk_label_set_markup (self->output_label, markup);
    }
  else
    gtk_label_set_label (self->output_label, "");

  g_autofree char *status = NULL;
  if (!run)
    status = g_strdup ("Choose a run in the sidebar.");
  else if (!session && peer_run_get_state (run) == PEER_RUN_PREPARING)
    status = g_strdup ("The model is being built.");
  else if (!session)
    status = g_strdup ("This run has no model to write with: open its checkpoint instead.");
  else if (self->waiting)
    status = g_strdup ("Writing…");
  else if (continuation)
    {
      g_autofree char *step_text = peer_format_count (step);
      status = g_strdup_printf ("Written by the model at step %s (the prompt in bold):",
                                step_text);
    }
  else if (peer_run_get_step (run) == 0)
    status = g_strdup ("An untrained model writes noise; train it for a few hundred steps "
                       "first.");
  else
    {
      g_autofree char *step_text = peer_format_count (peer_run_get_step (run));
      status = g_strdup_printf ("The model at step %s continues the prompt.", step_text);
    }
  gtk_label_set_label (self->status_label, status);
}

/* The answer to a prompt, or the message of a failed one, ends the wait. */
static void
on_snapshot (PeerTokensPage *self, PeerSnapshot *snapshot)
{
  if (snapshot->continuation || snapshot->message)
    self->waiting = FALSE;
}

static void
on_generate (PeerTokensPage *self)
{
  PeerSession *session = self->run ? peer_run_get_session (self->run) : NULL;
  if (!session || self->waiting)
    return;
  const char *prompt = gtk_editable_get_text (GTK_EDITABLE (self->prompt_row));
  peer_session_sample (session, prompt, gtk_spin_button_get_value_as_int (self->length_spin),
                       gtk_spin_button_get_value (self->temperature_spin));
  self->waiting = TRUE;
  update (self);
}

void
peer_tokens_page_set_run (PeerTokensPage *self, PeerRun *run)
{
  if (self->run == run)
    return;
  if (self->run)
    {
      g_clear_signal_handler (&self->changed_handler, self->run);
      g_clear_signal_handler (&self->snapshot_handler, self->run);
      g_clear_object (&self->run);
    }
  self->waiting = FALSE;
  if (run)
    {
      self->run = g_object_ref (run);
      /* ::snapshot comes first, so ::changed finds the wait over. */
      self->snapshot_handler = g_signal_connect_swapped (run, "snapshot",
                                                         G_CALLBACK (on_snapshot), self);
      self->changed_handler = g_signal_connect_swapped (run, "changed", G_CALLBACK (update), self);
    }
  update (self);
}

static void
peer_tokens_page_dispose (GObject *object)
{
  PeerTokensPage *self = PEER_TOKENS_PAGE (object);
  if (self->run)
    {
      g_clear_signal_handler (&self->changed_handler, self->run);
      g_clear_signal_handler (&self->snapshot_handler, self->run);
      g_clear_object (&self->run);
    }
  gtk_widget_dispose_template (GTK_WIDGET (object), PEER_TYPE_TOKENS_PAGE);
  /* The template's top box is not bound to a field, so it is unparented here. */
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (object))))
    gtk_widget_unparent (child);
  G_OBJECT_CLASS (peer_tokens_page_parent_class)->dispose (object);
}

static void
peer_tokens_page_class_init (PeerTokensPageClass *klass)
{
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  G_OBJECT_CLASS (klass)->dispose = peer_tokens_page_dispose;
  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/peerworkbench/Workbench/ui/tokens-page.ui");
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, prompt_row);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, length_spin);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, temperature_spin);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, generate_button);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, status_label);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, output_label);
  gtk_widget_class_bind_template_callback (widget_class, on_generate);
}

static void
peer_tokens_page_init (PeerTokensPage *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  update (self);
}
