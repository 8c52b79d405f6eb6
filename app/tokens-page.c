#include "tokens-page.h"

#include <adwaita.h>
#include <math.h>
#include <string.h>

#include "export-dialog.h"
#include "format.h"
#include "retrieval-path-data.h"
#include "retrieval-path-json.h"
#include "retrieval-path.h"
#include "token-strip.h"
#include "token-text.h"

#define DEFAULT_TEXT                                                                             \
  "It is a truth universally acknowledged, that a single man in possession of a good fortune, " \
  "must be in want of a wife."
#define PREDICTION_ROWS (TOKEN_ANALYSIS_TOP + 1) /* the best guesses, and the actual byte */

struct _PeerTokensPage {
  GtkWidget parent_instance;

  PeerRun *run;
  gulong changed_handler;
  GCancellable *reading;      /* the inspection in flight, or NULL */
  PeerTokenAnalysis *analysis;
  char *error;                /* why the last reading failed, or NULL */
  int slot;                   /* index into analysis->layers, -1 for none */
  int head;                   /* -1: all heads */
  guint play_source;
  gboolean updating_controls; /* the dropdowns and spin buttons are being filled, not used */

  GtkToggleButton *text_toggle;
  GtkToggleButton *passage_toggle;
  GtkToggleButton *sample_toggle;
  GtkStack *source_stack;
  GtkSpinButton *passage_spin;
  GtkLabel *passage_count_label;
  GtkSpinButton *length_spin;
  GtkSpinButton *temperature_spin;
  GtkButton *analyse_button;
  GtkWidget *text_scroller;
  GtkTextView *text_view;
  GtkSpinner *spinner;
  GtkLabel *status_label;
  PeerTokenStrip *token_strip;
  GtkToggleButton *play_button;
  GtkSpinButton *speed_spin;
  GtkLabel *position_label;
  GtkLabel *token_label;
  GtkLabel *token_detail_label;
  GtkLabel *next_label;
  GtkGrid *predictions_grid;
  GtkDropDown *layer_dropdown;
  GtkDropDown *head_dropdown;
  GtkLabel *path_hint_label;
  GtkButton *path_export_button;
  PeerRetrievalPath *path_view;

  GtkLabel *prediction_byte[PREDICTION_ROWS];
  GtkLevelBar *prediction_bar[PREDICTION_ROWS];
  GtkLabel *prediction_percent[PREDICTION_ROWS];
};

G_DEFINE_FINAL_TYPE (PeerTokensPage, peer_tokens_page, GTK_TYPE_WIDGET)

enum { SIGNAL_EXPERTS_CHOSEN, SIGNAL_EXPERT_ACTIVATED, N_SIGNALS };
static guint signals[N_SIGNALS];

static void show_token (PeerTokensPage *self);

/* ---- the status line ------------------------------------------------------------------------- */

static PeerSession *
current_session (PeerTokensPage *self)
{
  return self->run ? peer_run_get_session (self->run) : NULL;
}

static char *
describe_analysis (PeerTokensPage *self)
{
  const PeerTokenAnalysis *a = self->analysis;
  GString *text = g_string_new (NULL);
  g_autofree char *step = peer_format_count ((double) a->step);
  g_string_append_printf (text, "Read with the weights of step %s · %d bytes", step, a->n_tokens);
  double mean = peer_token_analysis_mean_loss (a);
  if (isfinite (mean))
    g_string_append_printf (text, " · mean loss %.3f nats (%.2f bits per byte)", mean,
                            mean / G_LN2);
  if (a->cut_reason)
    {
      g_autofree char *total = peer_format_count ((double) a->source_length);
      g_string_append_printf (text, " · only the first %d of %s bytes: %s", a->n_tokens, total,
                              a->cut_reason);
    }
  if (a->n_tokens > a->window)
    g_string_append_printf (text, " · read in pieces of %d bytes, each from a fresh start",
                            a->window);
  if (self->run && peer_run_get_step (self->run) > a->step)
    g_string_append (text, " · the run has trained since: Read again for its latest weights");
  return g_string_free (text, FALSE);
}

static void
update_status (PeerTokensPage *self)
{
  PeerRun *run = self->run;
  PeerSession *session = current_session (self);
  gboolean reading = self->reading != NULL;
  gtk_widget_set_sensitive (GTK_WIDGET (self->analyse_button), session && !reading);
  gtk_spinner_set_spinning (self->spinner, reading);
  gtk_widget_set_visible (GTK_WIDGET (self->spinner), reading);

  g_autofree char *status = NULL;
  if (!run)
    status = g_strdup ("Choose a run in the sidebar.");
  else if (!session && peer_run_get_state (run) == PEER_RUN_PREPARING)
    status = g_strdup ("The model is being built.");
  else if (!session)
    status = g_strdup ("This run has no model to read with: open its checkpoint instead.");
  else if (reading)
    status = g_strdup (peer_run_get_state (run) == PEER_RUN_RUNNING
                           ? "Reading the text between two training steps…"
                           : "Reading the text…");
  else if (self->error)
    status = g_strdup (self->error);
  else if (self->analysis)
    status = describe_analysis (self);
  else
    status = g_strdup ("Read a text to step through it token by token.");
  gtk_label_set_label (self->status_label, status);
}

/* ---- the token's details --------------------------------------------------------------------- */

static char *
byte_name (uint8_t byte)
{
  switch (byte)
    {
    case ' ': return g_strdup ("a space");
    case '\n': return g_strdup ("a line feed");
    case '\t': return g_strdup ("a tab");
    case '\r': return g_strdup ("a carriage return");
    default: return NULL;
    }
}

static char *
describe_token (const PeerTokenAnalysis *a, int t, const TokenText *shown)
{
  uint8_t byte = a->bytes[t];
  g_autofree char *name = byte_name (byte);
  GString *text = g_string_new (NULL);
  g_string_append_printf (text, "Token %d of %d · byte 0x%02X", t + 1, a->n_tokens, byte);
  if (name)
    g_string_append_printf (text, ", %s", name);
  else if (shown->length > 1)
    {
      char character[8] = { 0 };
      memcpy (character, a->bytes + shown->lead, (size_t) shown->length);
      int place = t - (int) shown->lead + 1;
      g_string_append_printf (text, ", byte %d of %d of %s (U+%04X)", place, shown->length,
                              shown->kind == TOKEN_TEXT_CONTINUATION ||
                                      g_unichar_isprint (shown->code_point)
                                  ? character
                                  : "a character",
                              (unsigned) shown->code_point);
    }
  else if (shown->kind == TOKEN_TEXT_INVALID)
    g_string_append (text, ", part of no valid UTF-8 character");
  else if (shown->kind == TOKEN_TEXT_ESCAPE)
    g_string_append (text, ", a control byte");
  return g_string_free (text, FALSE);
}

static void
show_predictions (PeerTokensPage *self, int t)
{
  const PeerTokenAnalysis *a = self->analysis;
  int next = t >= 0 ? peer_token_analysis_next_byte (a, t) : -1;
  gboolean next_shown = FALSE;
  for (int r = 0; r < PREDICTION_ROWS; r++)
    {
      gboolean visible = t >= 0 && r < TOKEN_ANALYSIS_TOP;
      int byte = -1;
      double prob = 0.0;
      if (visible)
        {
          byte = a->top_byte[(size_t) t * TOKEN_ANALYSIS_TOP + r];
          prob = a->top_prob[(size_t) t * TOKEN_ANALYSIS_TOP + r];
          visible = isfinite (prob);
        }
      else if (t >= 0 && r == TOKEN_ANALYSIS_TOP && next >= 0 && !next_shown)
        {
          /* The byte that follows, among the guesses or below them. */
          byte = next;
          prob = a->next_prob[t];
          visible = TRUE;
        }
      gtk_widget_set_visible (GTK_WIDGET (self->prediction_byte[r]), visible);
      gtk_widget_set_visible (GTK_WIDGET (self->prediction_bar[r]), visible);
      gtk_widget_set_visible (GTK_WIDGET (self->prediction_percent[r]), visible);
      if (!visible)
        continue;
      gboolean actual = byte == next;
      next_shown = next_shown || actual;
      TokenText shown;
      token_text_describe_byte ((uint8_t) byte, &shown);
      g_autofree char *label = actual ? g_strdup_printf ("%s ✓", shown.text)
                                      : g_strdup (shown.text);
      gtk_label_set_label (self->prediction_byte[r], label);
      gtk_level_bar_set_value (self->prediction_bar[r], CLAMP (prob, 0.0, 1.0));
      g_autofree char *percent = g_strdup_printf ("%.1f %%", 100.0 * prob);
      gtk_label_set_label (self->prediction_percent[r], percent);
      GtkWidget *widgets[] = { GTK_WIDGET (self->prediction_byte[r]),
                               GTK_WIDGET (self->prediction_percent[r]) };
      for (guint i = 0; i < G_N_ELEMENTS (widgets); i++)
        {
          if (actual)
            gtk_widget_add_css_class (widgets[i], "actual-next");
          else
            gtk_widget_remove_css_class (widgets[i], "actual-next");
        }
    }
}

static void
show_details (PeerTokensPage *self, int t)
{
  const PeerTokenAnalysis *a = self->analysis;
  if (!a || t < 0)
    {
      gtk_label_set_label (self->token_label, "");
      gtk_label_set_label (self->token_detail_label, "");
      gtk_label_set_label (self->next_label, "");
      gtk_label_set_label (self->position_label, "");
      show_predictions (self, -1);
      return;
    }
  TokenText shown;
  token_text_describe (a->bytes, (size_t) a->n_tokens, (size_t) t, &shown);
  gtk_label_set_label (self->token_label, shown.text);
  g_autofree char *detail = describe_token (a, t, &shown);
  gtk_label_set_label (self->token_detail_label, detail);
  g_autofree char *position = g_strdup_printf ("%d / %d", t + 1, a->n_tokens);
  gtk_label_set_label (self->position_label, position);

  int next = peer_token_analysis_next_byte (a, t);
  g_autofree char *markup = NULL;
  if (next >= 0)
    {
      TokenText next_shown;
      token_text_describe_byte ((uint8_t) next, &next_shown);
      markup = g_markup_printf_escaped ("Next byte <b>%s</b>: p %.1f %%, loss %.2f nats",
                                        next_shown.text, 100.0 * a->next_prob[t], a->loss[t]);
    }
  else
    markup = g_strdup ("The text ends here: the guesses have nothing to meet.");
  gtk_label_set_markup (self->next_label, markup);
  show_predictions (self, t);
}

/* ---- the retrieval path ---------------------------------------------------------------------- */

static void
emit_experts_chosen (PeerTokensPage *self, int t)
{
  const PeerTokenAnalysis *a = self->analysis;
  g_autoptr (GArray) experts = g_array_new (FALSE, FALSE, sizeof (gint32));
  int layer = -1;
  if (a && self->slot >= 0 && t >= 0)
    {
      const PeerTokenLayerPaths *paths = &a->layers[self->slot];
      g_autofree peer_head_trace *heads = g_new (peer_head_trace, paths->cfg.heads);
      peer_token_trace view;
      peer_token_analysis_get_path (a, self->slot, t, &view, heads);
      for (int j = 0; j < view.heads; j++)
        g_array_append_vals (experts, view.head[j].expert, (guint) view.topk);
      layer = paths->layer;
    }
  g_signal_emit (self, signals[SIGNAL_EXPERTS_CHOSEN], 0, layer, experts);
}

static void
show_path (PeerTokensPage *self, int t)
{
  const PeerTokenAnalysis *a = self->analysis;
  if (!a || self->slot < 0 || t < 0)
    {
      peer_retrieval_path_set_data (self->path_view, NULL);
      return;
    }
  const PeerTokenLayerPaths *paths = &a->layers[self->slot];
  int h = paths->cfg.heads;
  g_autofree peer_head_trace *heads = g_new (peer_head_trace, h);
  g_autofree RetrievalPathHead *drawn = g_new (RetrievalPathHead, h);
  peer_token_trace view;
  peer_token_analysis_get_path (a, self->slot, t, &view, heads);
  int first = self->head >= 0 ? MIN (self->head, h - 1) : 0;
  int count = self->head >= 0 ? 1 : h;
  RetrievalPathData data;
  retrieval_path_data_from_trace (&data, drawn, &view, first, count, paths->kind == FFN_PKM);
  peer_retrieval_path_set_data (self->path_view, &data);
}

/* ---- export --------------------------------------------------------------------------------- */

/* The path as the widget draws it, without the emphasis the pointer gives an expert. */
static void
render_path (cairo_t *cr, double width, double height, const PlotStyle *style, void *data)
{
  PeerTokensPage *self = data;
  const RetrievalPathData *shown = peer_retrieval_path_get_data (self->path_view);
  RetrievalPathData picture = { .highlight_head = -1, .highlight_rank = -1 };
  if (shown)
    {
      picture = *shown;
      picture.highlight_head = -1;
      picture.highlight_rank = -1;
    }
  retrieval_path_render (cr, width, height, &picture, style);
}

static const PlotStyle *
path_style (gpointer data)
{
  PeerTokensPage *self = data;
  return peer_retrieval_path_get_style (self->path_view);
}

/* The current token's whole path through the layer shown, every head. */
static gboolean
write_path_json (const char *path, gpointer data, GError **error)
{
  PeerTokensPage *self = data;
  const PeerTokenAnalysis *a = self->analysis;
  int t = peer_token_strip_get_position (self->token_strip);
  if (!a || self->slot < 0 || t < 0 || t >= a->n_tokens)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                   "No retrieval path is shown, so there is none to export. Read a text with a "
                   "model that has a PEER or PKM layer, then choose a token.");
      return FALSE;
    }
  const PeerTokenLayerPaths *paths = &a->layers[self->slot];
  g_autofree peer_head_trace *heads = g_new (peer_head_trace, paths->cfg.heads);
  peer_token_trace view;
  peer_token_analysis_get_path (a, self->slot, t, &view, heads);
  return retrieval_path_save_json (path, &view, paths->layer,
                                   paths->kind == FFN_PKM ? "PKM" : "PEER", t, a->bytes[t],
                                   error);
}

static const PeerExportKind path_export = {
  .title = "Retrieval Path",
  .file_stem = "retrieval-path",
  .render = render_path,
  .get_style = path_style,
  .data = {
      { .label = "Retrieval path (JSON)",
        .description = "The current token's path through the layer shown, every head: its "
                       "query, the scores of both halves' sub-keys and their top k, the k × k "
                       "candidates and each chosen expert with its score, gate, activation and "
                       "contribution.",
        .extension = "json",
        .write = write_path_json },
  },
};

static void
show_token (PeerTokensPage *self)
{
  int t = peer_token_strip_get_position (self->token_strip);
  show_details (self, t);
  show_path (self, t);
  emit_experts_chosen (self, t);
  int n = self->analysis ? self->analysis->n_tokens : 0;
  gtk_widget_set_sensitive (GTK_WIDGET (self->play_button), n > 1);
}

static void
on_position_changed (PeerTokensPage *self, int position)
{
  show_token (self);
}

static void
on_expert_activated (PeerTokensPage *self, int head, int rank, int expert)
{
  if (self->analysis && self->slot >= 0)
    g_signal_emit (self, signals[SIGNAL_EXPERT_ACTIVATED], 0,
                   self->analysis->layers[self->slot].layer, expert);
}

/* ---- layers and heads ------------------------------------------------------------------------ */

static void
fill_heads (PeerTokensPage *self)
{
  g_autoptr (GtkStringList) heads = gtk_string_list_new (NULL);
  int count = 0;
  if (self->analysis && self->slot >= 0)
    {
      count = self->analysis->layers[self->slot].cfg.heads;
      gtk_string_list_append (heads, "All heads");
      for (int j = 0; j < count; j++)
        {
          g_autofree char *name = g_strdup_printf ("Head %d", j);
          gtk_string_list_append (heads, name);
        }
    }
  /* The head chosen stays chosen across readings; a layer with fewer heads shows its first. */
  if (count > 0 && self->head >= count)
    self->head = 0;
  self->updating_controls = TRUE;
  gtk_drop_down_set_model (self->head_dropdown, G_LIST_MODEL (heads));
  gtk_drop_down_set_selected (self->head_dropdown, count > 0 ? (guint) (self->head + 1)
                                                            : GTK_INVALID_LIST_POSITION);
  self->updating_controls = FALSE;
  gtk_widget_set_sensitive (GTK_WIDGET (self->head_dropdown), count > 0);
}

static void
fill_layers (PeerTokensPage *self, int keep_layer)
{
  g_autoptr (GtkStringList) layers = gtk_string_list_new (NULL);
  const PeerTokenAnalysis *a = self->analysis;
  int n = a ? a->n_layers : 0;
  self->slot = -1;
  for (int s = 0; s < n; s++)
    {
      const PeerTokenLayerPaths *paths = &a->layers[s];
      g_autofree char *name =
          g_strdup_printf ("%d · %s, %d² %s, %d head%s × top %d", paths->layer,
                           paths->kind == FFN_PKM ? "PKM" : "PEER", paths->side,
                           paths->kind == FFN_PKM ? "memories" : "experts", paths->cfg.heads,
                           paths->cfg.heads == 1 ? "" : "s", paths->cfg.topk);
      gtk_string_list_append (layers, name);
      if (paths->layer == keep_layer || self->slot < 0)
        self->slot = s;
    }
  self->updating_controls = TRUE;
  gtk_drop_down_set_model (self->layer_dropdown, G_LIST_MODEL (layers));
  gtk_drop_down_set_selected (self->layer_dropdown,
                              self->slot >= 0 ? (guint) self->slot : GTK_INVALID_LIST_POSITION);
  self->updating_controls = FALSE;
  gtk_widget_set_sensitive (GTK_WIDGET (self->layer_dropdown), n > 0);
  gtk_label_set_label (self->path_hint_label,
                       a && n == 0 ? "This model has no PEER or PKM layer: no retrieval to show"
                                   : "Click a chosen expert to inspect it");
  fill_heads (self);
}

static void
on_layer_selected (PeerTokensPage *self)
{
  if (self->updating_controls || !self->analysis)
    return;
  guint selected = gtk_drop_down_get_selected (self->layer_dropdown);
  if (selected == GTK_INVALID_LIST_POSITION || (int) selected >= self->analysis->n_layers)
    return;
  self->slot = (int) selected;
  fill_heads (self);
  show_token (self);
}

static void
on_head_selected (PeerTokensPage *self)
{
  if (self->updating_controls)
    return;
  guint selected = gtk_drop_down_get_selected (self->head_dropdown);
  if (selected == GTK_INVALID_LIST_POSITION)
    return;
  self->head = (int) selected - 1;
  show_path (self, peer_token_strip_get_position (self->token_strip));
}

/* ---- reading a text -------------------------------------------------------------------------- */

static void
set_analysis (PeerTokensPage *self, PeerTokenAnalysis *analysis)
{
  int layer = peer_tokens_page_get_layer (self);
  g_clear_pointer (&self->analysis, peer_token_analysis_free);
  self->analysis = analysis;
  fill_layers (self, layer);

  int n = analysis ? analysis->n_tokens : 0;
  g_autofree char **labels = g_new0 (char *, MAX (n, 1));
  g_autofree PeerTokenCellStyle *styles = g_new (PeerTokenCellStyle, MAX (n, 1));
  g_autofree TokenText *shown = g_new (TokenText, MAX (n, 1));
  for (int t = 0; t < n; t++)
    {
      token_text_describe (analysis->bytes, (size_t) n, (size_t) t, &shown[t]);
      labels[t] = shown[t].text;
      switch (shown[t].kind)
        {
        case TOKEN_TEXT_PLAIN: styles[t] = PEER_TOKEN_CELL_TEXT; break;
        case TOKEN_TEXT_SPACE:
        case TOKEN_TEXT_CONTINUATION: styles[t] = PEER_TOKEN_CELL_SYMBOL; break;
        case TOKEN_TEXT_ESCAPE:
        case TOKEN_TEXT_INVALID: styles[t] = PEER_TOKEN_CELL_ESCAPE; break;
        }
    }
  /* ::position-changed follows, which shows the first token. */
  peer_token_strip_set_tokens (self->token_strip, (guint) n, (const char *const *) labels,
                               styles, analysis ? analysis->loss : NULL);
  if (analysis && analysis->n_passages > 0)
    {
      self->updating_controls = TRUE;
      gtk_spin_button_set_range (self->passage_spin, 1, (double) analysis->n_passages);
      gtk_spin_button_set_value (self->passage_spin, (double) analysis->passage + 1);
      self->updating_controls = FALSE;
      g_autofree char *count = peer_format_count ((double) analysis->n_passages);
      g_autofree char *of = g_strdup_printf ("of %s", count);
      gtk_label_set_label (self->passage_count_label, of);
    }
}

static void
on_read (PeerSession *session, gpointer result, const GError *error, gpointer user_data)
{
  PeerTokensPage *self = user_data;
  g_clear_object (&self->reading);
  g_clear_pointer (&self->error, g_free);
  if (error)
    self->error = g_strdup (error->message);
  else
    {
      set_analysis (self, result);
      if (gtk_widget_get_mapped (GTK_WIDGET (self)))
        gtk_widget_grab_focus (GTK_WIDGET (self->token_strip));
    }
  update_status (self);
}

static void
stop_reading (PeerTokensPage *self)
{
  if (self->reading)
    {
      g_cancellable_cancel (self->reading);
      g_clear_object (&self->reading);
    }
}

static char *
text_view_text (PeerTokensPage *self)
{
  GtkTextBuffer *buffer = gtk_text_view_get_buffer (self->text_view);
  GtkTextIter start, end;
  gtk_text_buffer_get_bounds (buffer, &start, &end);
  return gtk_text_buffer_get_text (buffer, &start, &end, FALSE);
}

static void
read_request (PeerTokensPage *self, PeerTokenRequest *request)
{
  PeerSession *session = current_session (self);
  if (!session)
    {
      peer_token_request_free (request);
      return;
    }
  stop_reading (self);
  g_clear_pointer (&self->error, g_free);
  self->reading = g_cancellable_new ();
  peer_session_inspect (session, peer_token_analysis_inspect, request,
                        (GDestroyNotify) peer_token_request_free,
                        (GDestroyNotify) peer_token_analysis_free, self->reading, on_read, self);
  update_status (self);
}

static void
on_analyse (PeerTokensPage *self)
{
  g_autofree char *text = text_view_text (self);
  PeerTokenRequest *request;
  if (gtk_toggle_button_get_active (self->passage_toggle))
    request = peer_token_request_new_passage (
        gtk_spin_button_get_value_as_int (self->passage_spin) - 1);
  else if (gtk_toggle_button_get_active (self->sample_toggle))
    request = peer_token_request_new_sample (text,
                                             gtk_spin_button_get_value_as_int (self->length_spin),
                                             gtk_spin_button_get_value (self->temperature_spin),
                                             g_random_int () | (guint64) g_random_int () << 32);
  else
    {
      if (!*text)
        {
          g_clear_pointer (&self->error, g_free);
          self->error = g_strdup ("Type or paste a text to read.");
          update_status (self);
          return;
        }
      request = peer_token_request_new_text (text, -1);
    }
  read_request (self, request);
}

void
peer_tokens_page_read_text (PeerTokensPage *self, const char *text)
{
  g_return_if_fail (PEER_IS_TOKENS_PAGE (self));
  gtk_text_buffer_set_text (gtk_text_view_get_buffer (self->text_view), text, -1);
  gtk_toggle_button_set_active (self->text_toggle, TRUE);
  on_analyse (self);
}

/* A page shown for the first time with a model to read with reads the sample sentence, so that
 * there is something to step through at once. */
static void
read_if_nothing_shown (PeerTokensPage *self)
{
  if (gtk_widget_get_mapped (GTK_WIDGET (self)) && current_session (self) && !self->analysis &&
      !self->reading && !self->error)
    on_analyse (self);
}

static void
on_source_toggled (PeerTokensPage *self, GtkToggleButton *button)
{
  if (!gtk_toggle_button_get_active (button))
    return;
  const char *name = button == self->passage_toggle  ? "passage"
                     : button == self->sample_toggle ? "sample"
                                                     : "text";
  gtk_stack_set_visible_child_name (self->source_stack, name);
  gtk_widget_set_visible (self->text_scroller, button != self->passage_toggle);
  gtk_button_set_label (self->analyse_button, button == self->sample_toggle ? "_Write and Read"
                                                                             : "_Read");
}

static void
on_passage_changed (PeerTokensPage *self)
{
  if (!self->updating_controls && gtk_toggle_button_get_active (self->passage_toggle))
    on_analyse (self);
}

static void
on_random_passage (PeerTokensPage *self)
{
  double lower, upper;
  gtk_spin_button_get_range (self->passage_spin, &lower, &upper);
  self->updating_controls = TRUE;
  gint32 last = (gint32) MIN (upper, G_MAXINT32 - 1);
  gtk_spin_button_set_value (self->passage_spin, g_random_int_range ((gint32) lower, last + 1));
  self->updating_controls = FALSE;
  on_analyse (self);
}

/* ---- stepping and playing -------------------------------------------------------------------- */

static void
step_by (PeerTokensPage *self, int delta)
{
  int position = peer_token_strip_get_position (self->token_strip);
  peer_token_strip_set_position (self->token_strip, position + delta);
}

static void
on_first (PeerTokensPage *self)
{
  peer_token_strip_set_position (self->token_strip, 0);
}

static void
on_previous (PeerTokensPage *self)
{
  step_by (self, -1);
}

static void
on_next (PeerTokensPage *self)
{
  step_by (self, 1);
}

static void
on_last (PeerTokensPage *self)
{
  peer_token_strip_set_position (self->token_strip, G_MAXINT);
}

static void
stop_playing (PeerTokensPage *self)
{
  g_clear_handle_id (&self->play_source, g_source_remove);
  if (gtk_toggle_button_get_active (self->play_button))
    gtk_toggle_button_set_active (self->play_button, FALSE);
}

static gboolean
play_tick (gpointer data)
{
  PeerTokensPage *self = data;
  int position = peer_token_strip_get_position (self->token_strip);
  int n = (int) peer_token_strip_get_n_tokens (self->token_strip);
  if (position + 1 >= n)
    {
      self->play_source = 0;
      stop_playing (self);
      return G_SOURCE_REMOVE;
    }
  peer_token_strip_set_position (self->token_strip, position + 1);
  return G_SOURCE_CONTINUE;
}

static void
start_timer (PeerTokensPage *self)
{
  g_clear_handle_id (&self->play_source, g_source_remove);
  double speed = gtk_spin_button_get_value (self->speed_spin);
  self->play_source = g_timeout_add ((guint) (1000.0 / MAX (speed, 1.0)), play_tick, self);
}

static void
on_play_toggled (PeerTokensPage *self)
{
  gboolean playing = gtk_toggle_button_get_active (self->play_button);
  gtk_button_set_icon_name (GTK_BUTTON (self->play_button),
                            playing ? "media-playback-pause-symbolic"
                                    : "media-playback-start-symbolic");
  if (!playing)
    {
      g_clear_handle_id (&self->play_source, g_source_remove);
      return;
    }
  /* Playing from the last token starts again from the first. */
  int n = (int) peer_token_strip_get_n_tokens (self->token_strip);
  if (peer_token_strip_get_position (self->token_strip) >= n - 1)
    peer_token_strip_set_position (self->token_strip, 0);
  start_timer (self);
}

static void
on_speed_changed (PeerTokensPage *self)
{
  if (self->play_source)
    start_timer (self);
}

/* ---- the page -------------------------------------------------------------------------------- */

static void
on_run_changed (PeerTokensPage *self)
{
  update_status (self);
  read_if_nothing_shown (self);
}

void
peer_tokens_page_set_run (PeerTokensPage *self, PeerRun *run)
{
  g_return_if_fail (PEER_IS_TOKENS_PAGE (self));
  if (self->run == run)
    return;
  stop_reading (self);
  stop_playing (self);
  if (self->run)
    {
      g_clear_signal_handler (&self->changed_handler, self->run);
      g_clear_object (&self->run);
    }
  g_clear_pointer (&self->error, g_free);
  set_analysis (self, NULL);
  if (run)
    {
      self->run = g_object_ref (run);
      self->changed_handler = g_signal_connect_swapped (run, "changed",
                                                        G_CALLBACK (on_run_changed), self);
    }
  update_status (self);
  read_if_nothing_shown (self);
}

const PeerTokenAnalysis *
peer_tokens_page_get_analysis (PeerTokensPage *self)
{
  g_return_val_if_fail (PEER_IS_TOKENS_PAGE (self), NULL);
  return self->analysis;
}

gboolean
peer_tokens_page_is_reading (PeerTokensPage *self)
{
  g_return_val_if_fail (PEER_IS_TOKENS_PAGE (self), FALSE);
  return self->reading != NULL;
}

int
peer_tokens_page_get_position (PeerTokensPage *self)
{
  g_return_val_if_fail (PEER_IS_TOKENS_PAGE (self), -1);
  return peer_token_strip_get_position (self->token_strip);
}

void
peer_tokens_page_set_position (PeerTokensPage *self, int position)
{
  g_return_if_fail (PEER_IS_TOKENS_PAGE (self));
  peer_token_strip_set_position (self->token_strip, position);
}

int
peer_tokens_page_get_layer (PeerTokensPage *self)
{
  g_return_val_if_fail (PEER_IS_TOKENS_PAGE (self), -1);
  return self->analysis && self->slot >= 0 ? self->analysis->layers[self->slot].layer : -1;
}

void
peer_tokens_page_set_layer (PeerTokensPage *self, int layer)
{
  g_return_if_fail (PEER_IS_TOKENS_PAGE (self));
  int slot = self->analysis ? peer_token_analysis_find_layer (self->analysis, layer) : -1;
  if (slot >= 0)
    gtk_drop_down_set_selected (self->layer_dropdown, (guint) slot);
}

int
peer_tokens_page_get_head (PeerTokensPage *self)
{
  g_return_val_if_fail (PEER_IS_TOKENS_PAGE (self), -1);
  return self->head;
}

void
peer_tokens_page_set_head (PeerTokensPage *self, int head)
{
  g_return_if_fail (PEER_IS_TOKENS_PAGE (self));
  GListModel *heads = gtk_drop_down_get_model (self->head_dropdown);
  guint count = heads ? g_list_model_get_n_items (heads) : 0;
  if (head + 1 >= 0 && (guint) (head + 1) < count)
    gtk_drop_down_set_selected (self->head_dropdown, (guint) (head + 1));
}

static void
build_prediction_rows (PeerTokensPage *self)
{
  for (int r = 0; r < PREDICTION_ROWS; r++)
    {
      GtkWidget *byte = gtk_label_new (NULL);
      gtk_label_set_xalign (GTK_LABEL (byte), 0.0f);
      gtk_widget_add_css_class (byte, "prediction-byte");
      GtkWidget *bar = gtk_level_bar_new_for_interval (0.0, 1.0);
      gtk_widget_set_hexpand (bar, TRUE);
      gtk_widget_set_valign (bar, GTK_ALIGN_CENTER);
      /* One colour whatever the value: the bar is a probability, not a level to warn about. */
      gtk_level_bar_remove_offset_value (GTK_LEVEL_BAR (bar), GTK_LEVEL_BAR_OFFSET_LOW);
      gtk_level_bar_remove_offset_value (GTK_LEVEL_BAR (bar), GTK_LEVEL_BAR_OFFSET_HIGH);
      gtk_level_bar_remove_offset_value (GTK_LEVEL_BAR (bar), GTK_LEVEL_BAR_OFFSET_FULL);
      GtkWidget *percent = gtk_label_new (NULL);
      gtk_label_set_xalign (GTK_LABEL (percent), 1.0f);
      gtk_label_set_width_chars (GTK_LABEL (percent), 7);
      gtk_widget_add_css_class (percent, "numeric");
      gtk_widget_add_css_class (percent, "caption");
      gtk_grid_attach (self->predictions_grid, byte, 0, r, 1, 1);
      gtk_grid_attach (self->predictions_grid, bar, 1, r, 1, 1);
      gtk_grid_attach (self->predictions_grid, percent, 2, r, 1, 1);
      self->prediction_byte[r] = GTK_LABEL (byte);
      self->prediction_bar[r] = GTK_LEVEL_BAR (bar);
      self->prediction_percent[r] = GTK_LABEL (percent);
      gtk_widget_set_visible (byte, FALSE);
      gtk_widget_set_visible (bar, FALSE);
      gtk_widget_set_visible (percent, FALSE);
    }
}

static void
peer_tokens_page_dispose (GObject *object)
{
  PeerTokensPage *self = PEER_TOKENS_PAGE (object);
  stop_reading (self);
  g_clear_handle_id (&self->play_source, g_source_remove);
  if (self->run)
    {
      g_clear_signal_handler (&self->changed_handler, self->run);
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
peer_tokens_page_finalize (GObject *object)
{
  PeerTokensPage *self = PEER_TOKENS_PAGE (object);
  g_clear_pointer (&self->analysis, peer_token_analysis_free);
  g_free (self->error);
  G_OBJECT_CLASS (peer_tokens_page_parent_class)->finalize (object);
}

static void
peer_tokens_page_class_init (PeerTokensPageClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  object_class->dispose = peer_tokens_page_dispose;
  object_class->finalize = peer_tokens_page_finalize;

  signals[SIGNAL_EXPERTS_CHOSEN] =
      g_signal_new ("experts-chosen", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL,
                    NULL, NULL, G_TYPE_NONE, 2, G_TYPE_INT, G_TYPE_ARRAY);
  signals[SIGNAL_EXPERT_ACTIVATED] =
      g_signal_new ("expert-activated", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL,
                    NULL, NULL, G_TYPE_NONE, 2, G_TYPE_INT, G_TYPE_INT);

  g_type_ensure (PEER_TYPE_TOKEN_STRIP);
  g_type_ensure (PEER_TYPE_RETRIEVAL_PATH);
  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/peerworkbench/Workbench/ui/tokens-page.ui");
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, text_toggle);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, passage_toggle);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, sample_toggle);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, source_stack);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, passage_spin);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, passage_count_label);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, length_spin);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, temperature_spin);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, analyse_button);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, text_scroller);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, text_view);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, spinner);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, status_label);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, token_strip);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, play_button);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, speed_spin);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, position_label);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, token_label);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, token_detail_label);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, next_label);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, predictions_grid);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, layer_dropdown);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, head_dropdown);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, path_hint_label);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, path_view);
  gtk_widget_class_bind_template_child (widget_class, PeerTokensPage, path_export_button);
  gtk_widget_class_bind_template_callback (widget_class, on_source_toggled);
  gtk_widget_class_bind_template_callback (widget_class, on_passage_changed);
  gtk_widget_class_bind_template_callback (widget_class, on_random_passage);
  gtk_widget_class_bind_template_callback (widget_class, on_analyse);
  gtk_widget_class_bind_template_callback (widget_class, on_position_changed);
  gtk_widget_class_bind_template_callback (widget_class, on_first);
  gtk_widget_class_bind_template_callback (widget_class, on_previous);
  gtk_widget_class_bind_template_callback (widget_class, on_play_toggled);
  gtk_widget_class_bind_template_callback (widget_class, on_next);
  gtk_widget_class_bind_template_callback (widget_class, on_last);
  gtk_widget_class_bind_template_callback (widget_class, on_speed_changed);
  gtk_widget_class_bind_template_callback (widget_class, on_layer_selected);
  gtk_widget_class_bind_template_callback (widget_class, on_head_selected);
  gtk_widget_class_bind_template_callback (widget_class, on_expert_activated);
}

static void
peer_tokens_page_init (PeerTokensPage *self)
{
  self->slot = -1;
  self->head = 0;
  gtk_widget_init_template (GTK_WIDGET (self));
  build_prediction_rows (self);
  peer_export_attach (GTK_WIDGET (self->path_view), GTK_WIDGET (self->path_export_button),
                      &path_export, self);
  gtk_text_buffer_set_text (gtk_text_view_get_buffer (self->text_view), DEFAULT_TEXT, -1);
  g_signal_connect_swapped (self, "map", G_CALLBACK (read_if_nothing_shown), self);
  fill_layers (self, -1);
  update_status (self);
}
