#include "run-row.h"

#include <math.h>

#include "format.h"

struct _PeerRunRow {
  GtkListBoxRow parent_instance;

  PeerRun *run;
  gulong changed_handler;
  GBinding *visible_binding;
  GdkRGBA color;

  GtkCheckButton *visible_check;
  GtkDrawingArea *swatch;
  GtkLabel *name_label;
  GtkLabel *state_label;
  GtkLabel *kind_label;
  GtkInscription *status_label;
};

G_DEFINE_FINAL_TYPE (PeerRunRow, peer_run_row, GTK_TYPE_LIST_BOX_ROW)

/* The style class of each state's pill in style.css. */
static const char *
state_class (PeerRunState state)
{
  switch (state)
    {
    case PEER_RUN_RUNNING: return "running";
    case PEER_RUN_FAILED: return "failed";
    case PEER_RUN_FINISHED: return "finished";
    case PEER_RUN_PAUSED: return "paused";
    default: return "idle";
    }
}

static void
update (PeerRunRow *self)
{
  PeerRun *run = self->run;
  PeerRunState state = peer_run_get_state (run);
  gtk_label_set_label (self->name_label, peer_run_get_name (run));
  gtk_label_set_label (self->state_label, peer_run_state_to_label (state));
  static const char *const classes[] = { "running", "failed", "finished", "paused", "idle" };
  for (guint i = 0; i < G_N_ELEMENTS (classes); i++)
    gtk_widget_remove_css_class (GTK_WIDGET (self->state_label), classes[i]);
  gtk_widget_add_css_class (GTK_WIDGET (self->state_label), state_class (state));
  gtk_label_set_label (self->kind_label, peer_run_get_description (run));

  g_autofree char *status = NULL;
  double loss = peer_run_get_last_loss (run);
  long total = peer_run_get_total_steps (run);
  g_autofree char *step = peer_format_count (peer_run_get_step (run));
  g_autofree char *steps = peer_format_count (total);
  if (state == PEER_RUN_PREPARING)
    status = g_strdup ("Building the model…");
  else if (state == PEER_RUN_FAILED && peer_run_get_loss_points (run)->len == 0)
    status = g_strdup (peer_run_get_failure (run) ? peer_run_get_failure (run) : "");
  else if (isfinite (loss))
    status = g_strdup_printf ("Step %s of %s · loss %.3f", step, steps, loss);
  else
    status = g_strdup_printf ("Step %s of %s", step, steps);
  gtk_inscription_set_text (self->status_label, status);

  g_autofree char *accessible = g_strdup_printf ("%s, %s, %s, %s", peer_run_get_name (run),
                                                 peer_run_state_to_label (state),
                                                 peer_run_get_description (run), status);
  gtk_accessible_update_property (GTK_ACCESSIBLE (self), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                  accessible, -1);
}

static void
draw_swatch (GtkDrawingArea *area, cairo_t *cr, int width, int height, gpointer data)
{
  PeerRunRow *self = data;
  double radius = MIN (width, height) / 2.0;
  cairo_arc (cr, width / 2.0, height / 2.0, radius, 0, 2 * G_PI);
  gdk_cairo_set_source_rgba (cr, &self->color);
  cairo_fill (cr);
}

GtkWidget *
peer_run_row_new (PeerRun *run)
{
  PeerRunRow *self = g_object_new (PEER_TYPE_RUN_ROW, NULL);
  self->run = g_object_ref (run);
  self->changed_handler = g_signal_connect_swapped (run, "changed", G_CALLBACK (update), self);
  self->visible_binding = g_object_bind_property (run, "visible", self->visible_check, "active",
                                                  G_BINDING_BIDIRECTIONAL |
                                                      G_BINDING_SYNC_CREATE);
  update (self);
  return GTK_WIDGET (self);
}

PeerRun *
peer_run_row_get_run (PeerRunRow *self)
{
  return self->run;
}

void
peer_run_row_set_color (PeerRunRow *self, const GdkRGBA *color)
{
  self->color = *color;
  gtk_widget_queue_draw (GTK_WIDGET (self->swatch));
}

static void
peer_run_row_dispose (GObject *object)
{
  PeerRunRow *self = PEER_RUN_ROW (object);
  if (self->run)
    {
      g_clear_signal_handler (&self->changed_handler, self->run);
      g_clear_pointer (&self->visible_binding, g_binding_unbind);
      g_clear_object (&self->run);
    }
  gtk_widget_dispose_template (GTK_WIDGET (object), PEER_TYPE_RUN_ROW);
  G_OBJECT_CLASS (peer_run_row_parent_class)->dispose (object);
}

static void
peer_run_row_class_init (PeerRunRowClass *klass)
{
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  G_OBJECT_CLASS (klass)->dispose = peer_run_row_dispose;
  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/peerworkbench/Workbench/ui/run-row.ui");
  gtk_widget_class_bind_template_child (widget_class, PeerRunRow, visible_check);
  gtk_widget_class_bind_template_child (widget_class, PeerRunRow, swatch);
  gtk_widget_class_bind_template_child (widget_class, PeerRunRow, name_label);
  gtk_widget_class_bind_template_child (widget_class, PeerRunRow, state_label);
  gtk_widget_class_bind_template_child (widget_class, PeerRunRow, kind_label);
  gtk_widget_class_bind_template_child (widget_class, PeerRunRow, status_label);
}

static void
peer_run_row_init (PeerRunRow *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  gdk_rgba_parse (&self->color, "#808080");
  gtk_drawing_area_set_draw_func (self->swatch, draw_swatch, self, NULL);
}
