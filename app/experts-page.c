#include "experts-page.h"

#include <adwaita.h>
#include <math.h>

#include "format.h"

/* The history table keeps the latest evaluations; older ones are in the run log. */
#define HISTORY_ROWS 40

struct _PeerExpertsPage {
  GtkWidget parent_instance;

  PeerRun *run;
  gulong changed_handler;
  guint shown_evals;  /* evaluations the page shows, to rebuild only when there are new ones */
  gboolean shown_any;

  GtkStack *stack;
  AdwStatusPage *no_experts_status;
  AdwStatusPage *no_evaluation_status;
  GtkLabel *heading_label;
  GtkListBox *layer_list;
  GtkGrid *history_grid;
};

G_DEFINE_FINAL_TYPE (PeerExpertsPage, peer_experts_page, GTK_TYPE_WIDGET)

static gboolean
is_expert_layer (const ffn_config *ffn)
{
  return ffn->kind == FFN_PEER || ffn->kind == FFN_PKM;
}

static void
clear_children (GtkWidget *parent)
{
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (parent)))
    {
      if (GTK_IS_LIST_BOX (parent))
        gtk_list_box_remove (GTK_LIST_BOX (parent), child);
      else if (GTK_IS_GRID (parent))
        gtk_grid_remove (GTK_GRID (parent), child);
      else
        gtk_widget_unparent (child);
    }
}

static GtkWidget *
layer_row (const model_config *cfg, int l, const PeerEvalPoint *point)
{
  const ffn_config *ffn = &cfg->layers[l];
  const peer_layer_config *peer = &ffn->peer;
  g_autofree char *title = g_strdup_printf ("Layer %d · %s", l,
                                            ffn->kind == FFN_PEER ? "PEER" : "PKM");
  g_autofree char *experts = peer_format_count (peer->n_experts);
  int side = (int) lround (sqrt (peer->n_experts));
  g_autofree char *subtitle = g_strdup_printf (
      "%s %s (%d²) · %d head%s × top %d · d_key %d%s", experts,
      ffn->kind == FFN_PEER ? "experts" : "memories", side, peer->heads,
      peer->heads == 1 ? "" : "s", peer->topk, peer->d_key,
      peer->shared_keys ? " · shared keys" : "");

  GtkWidget *row = adw_action_row_new ();
  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), title);
  adw_action_row_set_subtitle (ADW_ACTION_ROW (row), subtitle);

  GtkWidget *bar = gtk_level_bar_new_for_interval (0.0, 1.0);
  gtk_level_bar_set_value (GTK_LEVEL_BAR (bar), CLAMP (point->usage[l], 0.0, 1.0));
  gtk_widget_set_size_request (bar, 140, -1);
  gtk_widget_set_valign (bar, GTK_ALIGN_CENTER);
  /* The default offsets colour a nearly full bar as a warning; a full one is good here. */
  gtk_level_bar_remove_offset_value (GTK_LEVEL_BAR (bar), GTK_LEVEL_BAR_OFFSET_LOW);
  gtk_level_bar_remove_offset_value (GTK_LEVEL_BAR (bar), GTK_LEVEL_BAR_OFFSET_HIGH);
  gtk_level_bar_remove_offset_value (GTK_LEVEL_BAR (bar), GTK_LEVEL_BAR_OFFSET_FULL);
  adw_action_row_add_suffix (ADW_ACTION_ROW (row), bar);

  g_autofree char *usage = g_strdup_printf ("%.1f %% used", 100.0 * point->usage[l]);
  GtkWidget *usage_label = gtk_label_new (usage);
  gtk_label_set_width_chars (GTK_LABEL (usage_label), 11);
  gtk_label_set_xalign (GTK_LABEL (usage_label), 1.0f);
  gtk_widget_add_css_class (usage_label, "numeric");
  adw_action_row_add_suffix (ADW_ACTION_ROW (row), usage_label);

  g_autofree char *unevenness = g_strdup_printf ("unevenness %.3f", point->unevenness[l]);
  GtkWidget *unevenness_label = gtk_label_new (unevenness);
  gtk_label_set_width_chars (GTK_LABEL (unevenness_label), 17);
  gtk_label_set_xalign (GTK_LABEL (unevenness_label), 1.0f);
  gtk_widget_add_css_class (unevenness_label, "numeric");
  gtk_widget_add_css_class (unevenness_label, "dim-label");
  adw_action_row_add_suffix (ADW_ACTION_ROW (row), unevenness_label);
  return row;
}

static void
attach_cell (GtkGrid *grid, const char *text, int column, int row, gboolean heading)
{
  GtkWidget *label = gtk_label_new (text);
  gtk_label_set_xalign (GTK_LABEL (label), column == 0 ? 0.0f : 1.0f);
  gtk_widget_add_css_class (label, heading ? "heading" : "numeric");
  gtk_grid_attach (grid, label, column, row, 1, 1);
}

static void
fill_history (PeerExpertsPage *self, const model_config *cfg, GArray *evals)
{
  GtkGrid *grid = self->history_grid;
  clear_children (GTK_WIDGET (grid));
  int column = 0;
  attach_cell (grid, "Step", column++, 0, TRUE);
  attach_cell (grid, "Val loss", column++, 0, TRUE);
  for (int l = 0; l < cfg->n_layers; l++)
    if (is_expert_layer (&cfg->layers[l]))
      {
        g_autofree char *usage = g_strdup_printf ("Layer %d usage", l);
        g_autofree char *unevenness = g_strdup_printf ("Layer %d unevenness", l);
        attach_cell (grid, usage, column++, 0, TRUE);
        attach_cell (grid, unevenness, column++, 0, TRUE);
      }
  guint first = evals->len > HISTORY_ROWS ? evals->len - HISTORY_ROWS : 0;
  for (guint i = first; i < evals->len; i++)
    {
      /* Newest first. */
      guint index = evals->len - 1 - (i - first);
      const PeerEvalPoint *point = &g_array_index (evals, PeerEvalPoint, index);
      int row = (int) (i - first) + 1;
      column = 0;
      g_autofree char *step = peer_format_count (point->step);
      g_autofree char *loss = g_strdup_printf ("%.4f", point->loss);
      attach_cell (grid, step, column++, row, FALSE);
      attach_cell (grid, loss, column++, row, FALSE);
      for (int l = 0; l < cfg->n_layers; l++)
        if (is_expert_layer (&cfg->layers[l]))
          {
            g_autofree char *usage = g_strdup_printf ("%.1f %%", 100.0 * point->usage[l]);
            g_autofree char *unevenness = g_strdup_printf ("%.3f", point->unevenness[l]);
            attach_cell (grid, usage, column++, row, FALSE);
            attach_cell (grid, unevenness, column++, row, FALSE);
          }
    }
}

static void
update (PeerExpertsPage *self)
{
  PeerRun *run = self->run;
  const model_config *cfg = run ? peer_run_get_config (run) : NULL;
  if (!cfg)
    {
      gtk_stack_set_visible_child_name (self->stack, "no-run");
      self->shown_any = FALSE;
      return;
    }
  int expert_layers = 0;
  for (int l = 0; l < cfg->n_layers; l++)
    expert_layers += is_expert_layer (&cfg->layers[l]);
  if (expert_layers == 0)
    {
      g_autofree char *description = g_strdup_printf (
          "The blocks of “%s” are all dense or mixtures of experts. Usage and unevenness are "
          "measured for PEER layers and product-key memories: start a run from the peer-small "
          "or pkm-small preset to see them.",
          peer_run_get_name (run));
      adw_status_page_set_description (self->no_experts_status, description);
      gtk_stack_set_visible_child_name (self->stack, "no-experts");
      self->shown_any = FALSE;
      return;
    }
  GArray *evals = peer_run_get_eval_points (run);
  if (evals->len == 0)
    {
      const train_settings *settings = peer_run_get_settings (run);
      g_autofree char *description = NULL;
      if (settings && settings->eval_interval > 0)
        {
          g_autofree char *interval = peer_format_count (settings->eval_interval);
          description = g_strdup_printf (
              "Expert usage is measured on the validation text at each evaluation, every %s "
              "steps, or now.",
              interval);
        }
      else
        description = g_strdup ("Expert usage is measured on the validation text at each "
                                "evaluation, or now.");
      adw_status_page_set_description (self->no_evaluation_status, description);
      gtk_stack_set_visible_child_name (self->stack, "no-evaluation");
      self->shown_any = FALSE;
      return;
    }
  gtk_stack_set_visible_child_name (self->stack, "layers");
  if (self->shown_any && self->shown_evals == evals->len)
    return;
  self->shown_any = TRUE;
  self->shown_evals = evals->len;

  const PeerEvalPoint *last = &g_array_index (evals, PeerEvalPoint, evals->len - 1);
  g_autofree char *step = peer_format_count (last->step);
  g_autofree char *heading = g_strdup_printf ("At step %s · validation loss %.3f", step,
                                              last->loss);
  gtk_label_set_label (self->heading_label, heading);
  clear_children (GTK_WIDGET (self->layer_list));
  for (int l = 0; l < cfg->n_layers; l++)
    if (is_expert_layer (&cfg->layers[l]))
      gtk_list_box_append (self->layer_list, layer_row (cfg, l, last));
  fill_history (self, cfg, evals);
}

void
peer_experts_page_set_run (PeerExpertsPage *self, PeerRun *run)
{
  if (self->run == run)
    return;
  if (self->run)
    {
      g_clear_signal_handler (&self->changed_handler, self->run);
      g_clear_object (&self->run);
    }
  self->shown_any = FALSE;
  if (run)
    {
      self->run = g_object_ref (run);
      self->changed_handler = g_signal_connect_swapped (run, "changed", G_CALLBACK (update), self);
    }
  update (self);
}

static void
peer_experts_page_dispose (GObject *object)
{
  PeerExpertsPage *self = PEER_EXPERTS_PAGE (object);
  if (self->run)
    {
      g_clear_signal_handler (&self->changed_handler, self->run);
      g_clear_object (&self->run);
    }
  gtk_widget_dispose_template (GTK_WIDGET (object), PEER_TYPE_EXPERTS_PAGE);
  /* The template's top box is not bound to a field, so it is unparented here. */
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (object))))
    gtk_widget_unparent (child);
  G_OBJECT_CLASS (peer_experts_page_parent_class)->dispose (object);
}

static void
peer_experts_page_class_init (PeerExpertsPageClass *klass)
{
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  G_OBJECT_CLASS (klass)->dispose = peer_experts_page_dispose;
  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/peerworkbench/Workbench/ui/experts-page.ui");
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertsPage, stack);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertsPage, no_experts_status);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertsPage, no_evaluation_status);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertsPage, heading_label);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertsPage, layer_list);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertsPage, history_grid);
}

static void
peer_experts_page_init (PeerExpertsPage *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  update (self);
}
