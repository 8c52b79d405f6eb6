#include "expert-inspector.h"

#include <adwaita.h>
#include <math.h>

#include "expert-inspector-render.h"
#include "export-dialog.h"
#include "format.h"
#include "plot-widget-style.h"

/* Enough windows for a histogram of a typical expert of a 128² layer (about 16 selections per
 * thousand bytes at h·k = 64), few enough to pause training for about a second. */
#define INSPECTION_WINDOWS 64
#define TOP_CONTEXTS 12
#define TOP_BYTES 6
#define HISTOGRAM_BINS 24
/* Plot labels a little smaller than the body text, as the loss plot has them. */
#define FONT_SCALE 0.85
#define HIGHLIGHT_BACKGROUND "#f6d32d"
#define HIGHLIGHT_FOREGROUND "#241f31"

struct _PeerExpertInspector {
  GtkWidget parent_instance;

  PeerSession *session;
  int layer;
  int expert;
  int head;                   /* -1: every head */
  peer_layer_config peer;     /* the layer's configuration */
  gboolean values_only;       /* PKM */
  int vocab_size;
  gboolean layer_ok;

  PeerExpertInspection *inspection; /* DETAILS, shown */
  PeerExpertInspection *ablation;   /* ABLATION, shown */
  GCancellable *details_cancellable;
  GCancellable *ablation_cancellable;
  GArray *usage_steps;        /* double */
  GArray *usage_counts;       /* double */

  /* The logit plot's rows, rebuilt with each inspection. */
  char byte_labels[2 * TOP_BYTES][16];
  const char *byte_label_refs[2 * TOP_BYTES];
  double byte_values[2 * TOP_BYTES];
  size_t n_byte_rows;
  size_t n_bytes_up;

  GtkStack *stack;
  GtkSpinner *loading_spinner;
  GtkLabel *loading_label;
  AdwStatusPage *failed_status;
  GtkLabel *title_label;
  GtkLabel *subtitle_label;
  GtkDropDown *head_dropdown;
  GtkButton *refresh_button;
  GtkButton *export_button;
  GtkLabel *u_norm_label;
  GtkLabel *u_norm_caption;
  GtkLabel *v_norm_label;
  GtkLabel *count_label;
  GtkLabel *count_caption;
  GtkLabel *gate_mass_label;
  GtkLabel *mean_activation_label;
  GtkLabel *mean_activation_caption;
  GtkDrawingArea *usage_area;
  GtkDrawingArea *activation_area;
  GtkWidget *preact_frame;
  GtkDrawingArea *preact_area;
  GtkDrawingArea *logit_area;
  GtkLabel *ablation_label;
  GtkSpinner *ablation_spinner;
  GtkButton *ablate_button;
  GtkLabel *contexts_caption;
  GtkListBox *contexts_list;

  /* The style an export draws a plot with, and the font name it points at. */
  PlotStyle export_style;
  char *export_font_family;
};

enum {
  PROP_0,
  PROP_SESSION,
  PROP_LAYER,
  PROP_EXPERT,
  N_PROPS,
};

static GParamSpec *properties[N_PROPS];

G_DEFINE_FINAL_TYPE (PeerExpertInspector, peer_expert_inspector, GTK_TYPE_WIDGET)

/* ---- plot style ------------------------------------------------------------------------------ */

/* The plots' style from the theme, as every plot widget takes it, except the background: the
 * inspector's plots sit on cards, whose colour is translucent over the window and which the
 * plot paints opaque. family is where the font name is kept while style points at it. */
static void
plot_style_for_widget (GtkWidget *widget, PlotStyle *style, char **family)
{
  plot_style_from_widget (style, family, widget, FONT_SCALE);
  GtkStyleContext *context = gtk_widget_get_style_context (widget);
  GdkRGBA card_rgba, window_rgba;
  if (!gtk_style_context_lookup_color (context, "card_bg_color", &card_rgba))
    return;
  PlotColor card = plot_color_from_rgba (&card_rgba);
  PlotColor window = style->background;
  if (gtk_style_context_lookup_color (context, "window_bg_color", &window_rgba))
    window = plot_color_from_rgba (&window_rgba);
  style->background = plot_color_mix (window, (PlotColor){ card.red, card.green, card.blue, 1.0 },
                                      card.alpha);
  style->background.alpha = 1.0;
  gboolean dark = plot_color_luminance (style->foreground) > 0.5;
  style->grid = plot_color_mix (style->background, style->foreground, dark ? 0.16 : 0.12);
  style->grid.alpha = 1.0;
}

/* ---- text ------------------------------------------------------------------------------------ */

/* A byte as the plots label it: printable ASCII as itself, the space as an open box, \n, \t and
 * \r as their escapes, every other byte (a control byte, or one of a multi-byte character, which
 * is no character alone) as a hex escape. */
static void
describe_byte (guint8 byte, char *buffer, gsize size)
{
  if (byte == ' ')
    g_strlcpy (buffer, "␣", size);
  else if (byte > ' ' && byte < 0x7f)
    g_snprintf (buffer, size, "%c", byte);
  else if (byte == '\n')
    g_strlcpy (buffer, "\\n", size);
  else if (byte == '\t')
    g_strlcpy (buffer, "\\t", size);
  else if (byte == '\r')
    g_strlcpy (buffer, "\\r", size);
  else
    g_snprintf (buffer, size, "\\x%02x", byte);
}

/* One context as Pango markup: the byte where the expert fired highlighted (with the whole
 * character it belongs to), text the model had not read there faded, control bytes escaped and
 * invalid UTF-8 shown byte by byte as hex escapes. */
static char *
context_markup (const PeerContextText *text)
{
  GString *markup = g_string_new (NULL);
  const guint8 *bytes = text->bytes;
  gsize start = 0;
  /* A context cut inside a character starts at the next one. */
  while (start < text->token && (bytes[start] & 0xc0) == 0x80)
    start++;
  gsize i = start;
  while (i < text->size)
    {
      gsize length = 1;
      gunichar c = bytes[i];
      char shown[16];
      gboolean escape = FALSE;
      if (bytes[i] >= 0x80)
        {
          c = g_utf8_get_char_validated ((const char *) bytes + i, (gssize) (text->size - i));
          if (c == (gunichar) -2 && i > text->token)
            break; /* a character cut off by the end of the context */
          if (c == (gunichar) -1 || c == (gunichar) -2 || !g_unichar_isprint (c))
            {
              g_snprintf (shown, sizeof shown, "\\x%02x", bytes[i]);
              escape = TRUE;
            }
          else
            {
              length = (gsize) g_unichar_to_utf8 (c, shown);
              shown[length] = '\0';
            }
        }
      else if (c == '\n')
        {
          g_strlcpy (shown, "⏎", sizeof shown);
          escape = TRUE;
        }
      else if (c == '\t')
        {
          g_strlcpy (shown, "⇥", sizeof shown);
          escape = TRUE;
        }
      else if (c < 0x20 || c == 0x7f)
        {
          g_snprintf (shown, sizeof shown, "\\x%02x", (guint) c);
          escape = TRUE;
        }
      else
        {
          shown[0] = (char) c;
          shown[1] = '\0';
        }
      gboolean highlighted = i <= text->token && text->token < i + length;
      gboolean faded = !highlighted && (i + length <= text->seen_from || i > text->token);
      if (highlighted && c == ' ')
        g_strlcpy (shown, "␣", sizeof shown);
      g_autofree char *escaped = g_markup_escape_text (shown, -1);
      if (highlighted)
        g_string_append_printf (markup,
                                "<span background=\"" HIGHLIGHT_BACKGROUND "\" foreground=\""
                                HIGHLIGHT_FOREGROUND "\" weight=\"bold\">%s</span>",
                                escaped);
      else if (faded || escape)
        g_string_append_printf (markup, "<span alpha=\"%s\">%s</span>",
                                faded ? "40%" : "60%", escaped);
      else
        g_string_append (markup, escaped);
      i += length;
    }
  return g_string_free (markup, FALSE);
}

/* ---- showing an inspection ------------------------------------------------------------------- */

static void
clear_list (GtkListBox *list)
{
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (list))))
    gtk_list_box_remove (list, child);
}

static GtkWidget *
context_row (PeerExpertInspector *self, const expert_context *context,
             const PeerContextText *text)
{
  GtkWidget *box = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 12);
  gtk_widget_add_css_class (box, "inspector-context");
  g_autofree char *markup = context_markup (text);
  GtkWidget *label = gtk_label_new (NULL);
  gtk_label_set_markup (GTK_LABEL (label), markup);
  gtk_label_set_xalign (GTK_LABEL (label), 0.0f);
  gtk_label_set_ellipsize (GTK_LABEL (label), PANGO_ELLIPSIZE_START);
  gtk_widget_set_hexpand (label, TRUE);
  gtk_widget_add_css_class (label, "monospace");
  gtk_box_append (GTK_BOX (box), label);

  g_autofree char *head = context->heads > 1
                              ? g_strdup_printf ("%d heads, mostly head %d", context->heads,
                                                 context->head)
                              : g_strdup_printf ("head %d", context->head);
  g_autofree char *numbers =
      self->values_only
          ? g_strdup_printf ("gate %.3f · %s", context->gate, head)
          : g_strdup_printf ("σ(uᵀx) %.3f · gate %.3f · %s", context->activation, context->gate,
                             head);
  GtkWidget *values = gtk_label_new (numbers);
  gtk_widget_add_css_class (values, "numeric");
  gtk_widget_add_css_class (values, "dim-label");
  gtk_box_append (GTK_BOX (box), values);

  g_autofree char *offset = peer_format_count ((double) context->offset);
  g_autofree char *tooltip = g_strdup_printf (
      "Byte %s of the text, read in the window that starts at byte %zu; uᵀx = %.4f", offset,
      context->window_start, context->preact);
  gtk_widget_set_tooltip_text (box, tooltip);
  return box;
}

static void
update_byte_rows (PeerExpertInspector *self)
{
  self->n_byte_rows = 0;
  self->n_bytes_up = 0;
  if (!self->inspection)
    return;
  const expert_inspection *in = &self->inspection->details;
  int n = MIN (in->settings.top_bytes, TOP_BYTES);
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < n; i++)
      {
        /* Pushed up, largest first; then pushed down, so the most negative comes last. */
        int byte = pass == 0 ? in->pushed_up[i] : in->pushed_down[n - 1 - i];
        size_t row = self->n_byte_rows++;
        describe_byte ((guint8) byte, self->byte_labels[row], sizeof self->byte_labels[row]);
        self->byte_label_refs[row] = self->byte_labels[row];
        self->byte_values[row] = in->logit_effect[byte];
      }
  self->n_bytes_up = (size_t) n;
}

static const char *
layer_kind_name (PeerExpertInspector *self)
{
  return self->values_only ? "PKM" : "PEER";
}

/* The inspector's numbers, to three decimals. */
static void
set_number (GtkLabel *label, double value)
{
  g_autofree char *text = g_strdup_printf ("%.3f", value);
  gtk_label_set_label (label, text);
}

static void
show_inspection (PeerExpertInspector *self)
{
  const PeerExpertInspection *inspection = self->inspection;
  const expert_inspection *in = &inspection->details;
  int side = peer_layer_side (&self->peer);
  g_autofree char *step = peer_format_count ((double) inspection->step);
  g_autofree char *bytes = peer_format_count ((double) in->tokens);
  g_autofree char *heads = self->head < 0 ? g_strdup ("every head")
                                          : g_strdup_printf ("head %d only", self->head);
  g_autofree char *subtitle = g_strdup_printf (
      "Row a = %d, column b = %d of the %d × %d grid · %s, %d head%s × top %d · at step %s, "
      "on %d validation windows (%s bytes), %s",
      in->row, in->col, side, side, layer_kind_name (self), self->peer.heads,
      self->peer.heads == 1 ? "" : "s", self->peer.topk, step, in->settings.windows, bytes,
      heads);
  gtk_label_set_label (self->subtitle_label, subtitle);

  if (in->has_u)
    {
      set_number (self->u_norm_label, in->u_norm);
      gtk_label_set_label (self->u_norm_caption, "‖u‖");
    }
  else
    {
      gtk_label_set_label (self->u_norm_label, "—");
      gtk_label_set_label (self->u_norm_caption, "‖u‖: a memory has no u");
    }
  set_number (self->v_norm_label, in->v_norm);
  g_autofree char *count = peer_format_count ((double) in->count);
  gtk_label_set_label (self->count_label, count);
  /* An even share: every selection slot of the heads counted, spread over all N experts. */
  int heads_counted = self->head < 0 ? self->peer.heads : 1;
  double even = (double) in->tokens * heads_counted * self->peer.topk / self->peer.n_experts;
  g_autofree char *count_caption =
      even > 0.0 ? g_strdup_printf ("selections, %.1f × an even share", in->count / even)
                 : g_strdup ("selections");
  gtk_label_set_label (self->count_caption, count_caption);
  set_number (self->gate_mass_label, in->gate_mass);
  if (in->count == 0)
    gtk_label_set_label (self->mean_activation_label, "—");
  else if (in->has_u)
    set_number (self->mean_activation_label, in->activation_sum / (double) in->count);
  else
    set_number (self->mean_activation_label, in->gate_mass / (double) in->count);
  gtk_label_set_label (self->mean_activation_caption,
                       in->has_u ? "mean σ(uᵀx) when chosen" : "mean gate when chosen");

  gtk_widget_set_visible (self->preact_frame, in->has_u);
  gtk_label_set_label (
      self->contexts_caption,
      in->has_u ? "Each byte where the expert fired, highlighted, with the text around it, ranked "
                  "by σ(uᵀx). Faded text is what the model had not read there: before its "
                  "window, or after the byte."
                : "Each byte where the memory was read, highlighted, with the text around it, "
                  "ranked by its gate. Faded text is what the model had not read there: before "
                  "its window, or after the byte.");
  clear_list (self->contexts_list);
  for (int i = 0; i < in->n_contexts; i++)
    gtk_list_box_append (self->contexts_list,
                         context_row (self, &in->contexts[i], &inspection->contexts[i]));
  if (in->n_contexts == 0)
    {
      GtkWidget *none = gtk_label_new ("Never chosen on these windows.");
      gtk_widget_add_css_class (none, "dim-label");
      gtk_widget_add_css_class (none, "inspector-context");
      gtk_list_box_append (self->contexts_list, none);
    }

  update_byte_rows (self);
  gtk_widget_queue_draw (GTK_WIDGET (self->activation_area));
  gtk_widget_queue_draw (GTK_WIDGET (self->preact_area));
  gtk_widget_queue_draw (GTK_WIDGET (self->logit_area));
  gtk_stack_set_visible_child_name (self->stack, "details");
}

static void
show_ablation (PeerExpertInspector *self)
{
  const expert_ablation *a = &self->ablation->ablation;
  double change = a->ablated_loss - a->loss;
  g_autofree char *step = peer_format_count ((double) self->ablation->step);
  g_autofree char *bytes = peer_format_count ((double) a->tokens);
  g_autofree char *change_text = fabs (change) >= 1e-3 ? g_strdup_printf ("%+.4f", change)
                                                       : g_strdup_printf ("%+.2e", change);
  g_autofree char *text = g_strdup_printf (
      "With the expert %.5f nats, without it %.5f nats: a change of %s nats (%+.3g %%) on %d "
      "validation windows (%s bytes) at step %s.",
      a->loss, a->ablated_loss, change_text, a->loss > 0.0 ? 100.0 * change / a->loss : 0.0,
      a->windows, bytes, step);
  gtk_label_set_label (self->ablation_label, text);
}

/* ---- requests -------------------------------------------------------------------------------- */

static void
set_details_busy (PeerExpertInspector *self, gboolean busy)
{
  gtk_widget_set_sensitive (GTK_WIDGET (self->refresh_button), !busy);
  gtk_widget_set_sensitive (GTK_WIDGET (self->head_dropdown), !busy);
  gtk_spinner_set_spinning (self->loading_spinner, busy);
}

static void
show_failure (PeerExpertInspector *self, const char *message)
{
  adw_status_page_set_description (self->failed_status, message);
  gtk_stack_set_visible_child_name (self->stack, "failed");
}

static void
on_details (PeerSession *session, gpointer result, const GError *error, gpointer user_data)
{
  PeerExpertInspector *self = user_data;
  g_clear_object (&self->details_cancellable);
  set_details_busy (self, FALSE);
  if (!result)
    {
      show_failure (self, error ? error->message : "The inspection gave no result.");
      return;
    }
  g_clear_pointer (&self->inspection, peer_expert_inspection_free);
  self->inspection = result;
  if (self->inspection->n_usage > 0)
    peer_expert_inspector_set_usage_history (self, self->inspection->usage_steps,
                                             self->inspection->usage_per_step,
                                             self->inspection->n_usage);
  show_inspection (self);
}

static void
request_details (PeerExpertInspector *self)
{
  if (!self->session || !self->layer_ok)
    return;
  if (self->details_cancellable)
    g_cancellable_cancel (self->details_cancellable);
  g_clear_object (&self->details_cancellable);
  self->details_cancellable = g_cancellable_new ();
  PeerExpertRequest *request =
      peer_expert_request_new (PEER_EXPERT_INSPECTION_DETAILS, self->layer, self->expert);
  request->settings.head = self->head;
  request->settings.windows = INSPECTION_WINDOWS;
  request->settings.top_contexts = TOP_CONTEXTS;
  request->settings.top_bytes = MIN (TOP_BYTES, self->vocab_size);
  request->settings.bins = HISTOGRAM_BINS;
  set_details_busy (self, TRUE);
  if (!self->inspection)
    gtk_stack_set_visible_child_name (self->stack, "loading");
  peer_session_inspect (self->session, peer_expert_inspection_run, request,
                        peer_expert_request_free, peer_expert_inspection_free,
                        self->details_cancellable, on_details, self);
}

void
peer_expert_inspector_refresh (PeerExpertInspector *self)
{
  g_return_if_fail (PEER_IS_EXPERT_INSPECTOR (self));
  request_details (self);
}

static void
on_ablation (PeerSession *session, gpointer result, const GError *error, gpointer user_data)
{
  PeerExpertInspector *self = user_data;
  g_clear_object (&self->ablation_cancellable);
  gtk_spinner_set_spinning (self->ablation_spinner, FALSE);
  gtk_widget_set_sensitive (GTK_WIDGET (self->ablate_button), TRUE);
  if (!result)
    {
      g_autofree char *text = g_strdup_printf ("Could not measure: %s",
                                               error ? error->message : "no result");
      gtk_label_set_label (self->ablation_label, text);
      return;
    }
  g_clear_pointer (&self->ablation, peer_expert_inspection_free);
  self->ablation = result;
  show_ablation (self);
}

void
peer_expert_inspector_ablate (PeerExpertInspector *self)
{
  g_return_if_fail (PEER_IS_EXPERT_INSPECTOR (self));
  if (!self->session || !self->layer_ok || self->ablation_cancellable)
    return;
  self->ablation_cancellable = g_cancellable_new ();
  PeerExpertRequest *request =
      peer_expert_request_new (PEER_EXPERT_INSPECTION_ABLATION, self->layer, self->expert);
  request->settings.windows = INSPECTION_WINDOWS;
  gtk_spinner_set_spinning (self->ablation_spinner, TRUE);
  gtk_widget_set_sensitive (GTK_WIDGET (self->ablate_button), FALSE);
  gtk_label_set_label (self->ablation_label,
                       "Measuring the validation loss with the expert on and off…");
  peer_session_inspect (self->session, peer_expert_inspection_run, request,
                        peer_expert_request_free, peer_expert_inspection_free,
                        self->ablation_cancellable, on_ablation, self);
}

/* ---- plots ----------------------------------------------------------------------------------- */

/* Each plot draws through one function, used by its drawing area with the widget's style and by
 * its export with the style the export gives. */
static void
render_usage (cairo_t *cr, double width, double height, const PlotStyle *style, void *data)
{
  PeerExpertInspector *self = data;
  ExpertUsagePlot plot = {
    .n = self->usage_steps->len,
    .steps = (const double *) (const void *) self->usage_steps->data,
    .values = (const double *) (const void *) self->usage_counts->data,
    .color = 0,
    .title = "Usage over training",
    .y_label = "selections per step",
    .message = "No usage history yet",
  };
  expert_usage_plot_render (cr, width, height, &plot, style, NULL);
}

/* A histogram's counts as doubles, as shares of its total when share is set. */
static double *
histogram_values (const expert_histogram *histogram, gboolean share)
{
  double *values = g_new0 (double, MAX (histogram->bins, 1));
  for (int b = 0; b < histogram->bins; b++)
    values[b] = share ? (histogram->total ? (double) histogram->counts[b] / histogram->total : 0.0)
                      : (double) histogram->counts[b];
  return values;
}

static void
render_activation (cairo_t *cr, double width, double height, const PlotStyle *style, void *data)
{
  PeerExpertInspector *self = data;
  if (!self->inspection)
    return;
  const expert_inspection *in = &self->inspection->details;
  const expert_histogram *histogram = in->has_u ? &in->activation : &in->gate;
  g_autofree double *values = histogram_values (histogram, FALSE);
  ExpertHistogramPlot plot = {
    .bins = histogram->bins,
    .lo = histogram->lo,
    .hi = histogram->hi,
    .n_series = 1,
    .series = { { .color = 0, .values = values } },
    .title = in->has_u ? "Activation when chosen" : "Gate when chosen",
    .x_label = in->has_u ? "σ(uᵀx)" : "gate",
    .y_label = "selections",
    .message = "Never chosen on these windows",
  };
  expert_histogram_plot_render (cr, width, height, &plot, style, NULL);
}

static void
render_preact (cairo_t *cr, double width, double height, const PlotStyle *style, void *data)
{
  PeerExpertInspector *self = data;
  if (!self->inspection || !self->inspection->details.has_u)
    return;
  const expert_inspection *in = &self->inspection->details;
  g_autofree double *all = histogram_values (&in->preact_all, TRUE);
  g_autofree double *chosen = histogram_values (&in->preact_selected, TRUE);
  ExpertHistogramPlot plot = {
    .bins = in->preact_all.bins,
    .lo = in->preact_all.lo,
    .hi = in->preact_all.hi,
    .n_series = in->preact_selected.total > 0 ? 2 : 1,
    .series = { { .name = "every token", .color = 7, .values = all },
                { .name = "chosen", .color = 0, .values = chosen } },
    .title = "Pre-activation",
    .x_label = "uᵀx",
    .y_label = "share",
    .y_percent = true,
  };
  expert_histogram_plot_render (cr, width, height, &plot, style, NULL);
}

static void
render_logit (cairo_t *cr, double width, double height, const PlotStyle *style, void *data)
{
  PeerExpertInspector *self = data;
  if (!self->inspection)
    return;
  ExpertLogitPlot plot = {
    .n = self->n_byte_rows,
    .n_up = self->n_bytes_up,
    .labels = self->byte_label_refs,
    .values = self->byte_values,
    .up_color = 2,
    .down_color = 5,
    .title = "Bytes v pushes up and down",
    .x_label = "direct logit effect",
  };
  expert_logit_plot_render (cr, width, height, &plot, style, NULL);
}

static void
draw_plot (GtkDrawingArea *area, cairo_t *cr, int width, int height, PlotRenderFunc render,
           gpointer data)
{
  PlotStyle style;
  g_autofree char *family = NULL;
  plot_style_for_widget (GTK_WIDGET (area), &style, &family);
  render (cr, width, height, &style, data);
}

static void
draw_usage (GtkDrawingArea *area, cairo_t *cr, int width, int height, gpointer data)
{
  draw_plot (area, cr, width, height, render_usage, data);
}

static void
draw_activation (GtkDrawingArea *area, cairo_t *cr, int width, int height, gpointer data)
{
  draw_plot (area, cr, width, height, render_activation, data);
}

static void
draw_preact (GtkDrawingArea *area, cairo_t *cr, int width, int height, gpointer data)
{
  draw_plot (area, cr, width, height, render_preact, data);
}

static void
draw_logit (GtkDrawingArea *area, cairo_t *cr, int width, int height, gpointer data)
{
  draw_plot (area, cr, width, height, render_logit, data);
}

/* ---- export --------------------------------------------------------------------------------- */

/* The style the drawing area draws with on screen. */
static const PlotStyle *
area_style (PeerExpertInspector *self, GtkDrawingArea *area)
{
  plot_style_for_widget (GTK_WIDGET (area), &self->export_style, &self->export_font_family);
  return &self->export_style;
}

static const PlotStyle *
usage_style (gpointer data)
{
  PeerExpertInspector *self = data;
  return area_style (self, self->usage_area);
}

static const PlotStyle *
activation_style (gpointer data)
{
  PeerExpertInspector *self = data;
  return area_style (self, self->activation_area);
}

static const PlotStyle *
preact_style (gpointer data)
{
  PeerExpertInspector *self = data;
  return area_style (self, self->preact_area);
}

static const PlotStyle *
logit_style (gpointer data)
{
  PeerExpertInspector *self = data;
  return area_style (self, self->logit_area);
}

static const expert_inspection *
shown_inspection (PeerExpertInspector *self, GError **error)
{
  if (self->inspection)
    return &self->inspection->details;
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
               "The expert has not been inspected yet, so there are no numbers to export. Wait "
               "for the inspection to finish, or press Refresh.");
  return NULL;
}

static gboolean
write_usage_csv (const char *path, gpointer data, GError **error)
{
  PeerExpertInspector *self = data;
  if (self->usage_steps->len == 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                   "The expert has no usage history yet, so there are no numbers to export. "
                   "Train the run a few steps and inspect it again.");
      return FALSE;
    }
  PlotCsv *csv = plot_csv_new ();
  plot_csv_add_text (csv, "step");
  plot_csv_add_text (csv, "selections_per_step");
  plot_csv_end_row (csv);
  for (guint i = 0; i < self->usage_steps->len; i++)
    {
      plot_csv_add_double (csv, g_array_index (self->usage_steps, double, i));
      plot_csv_add_double (csv, g_array_index (self->usage_counts, double, i));
      plot_csv_end_row (csv);
    }
  gboolean ok = plot_csv_save (csv, path, error);
  plot_csv_free (csv);
  return ok;
}

/* The bins' edges: bin b is [lo + b·w, lo + (b + 1)·w), the last one closed. */
static void
add_bin_edges (PlotCsv *csv, const expert_histogram *histogram, int b)
{
  double w = (histogram->hi - histogram->lo) / histogram->bins;
  plot_csv_add_double (csv, histogram->lo + b * w);
  plot_csv_add_double (csv, b + 1 == histogram->bins ? histogram->hi
                                                     : histogram->lo + (b + 1) * w);
}

static gboolean
write_activation_csv (const char *path, gpointer data, GError **error)
{
  PeerExpertInspector *self = data;
  const expert_inspection *in = shown_inspection (self, error);
  if (!in)
    return FALSE;
  const expert_histogram *histogram = in->has_u ? &in->activation : &in->gate;
  PlotCsv *csv = plot_csv_new ();
  plot_csv_add_text (csv, "bin_start");
  plot_csv_add_text (csv, "bin_end");
  plot_csv_add_text (csv, "selections");
  plot_csv_end_row (csv);
  for (int b = 0; b < histogram->bins; b++)
    {
      add_bin_edges (csv, histogram, b);
      plot_csv_add_int (csv, (int64_t) histogram->counts[b]);
      plot_csv_end_row (csv);
    }
  gboolean ok = plot_csv_save (csv, path, error);
  plot_csv_free (csv);
  return ok;
}

static gboolean
write_preact_csv (const char *path, gpointer data, GError **error)
{
  PeerExpertInspector *self = data;
  const expert_inspection *in = shown_inspection (self, error);
  if (!in)
    return FALSE;
  if (!in->has_u)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                   "A product-key memory has no u, so it has no pre-activation to export.");
      return FALSE;
    }
  const expert_histogram *all = &in->preact_all, *chosen = &in->preact_selected;
  PlotCsv *csv = plot_csv_new ();
  const char *header[] = { "bin_start", "bin_end", "every_token", "every_token_share", "chosen",
                           "chosen_share" };
  for (guint i = 0; i < G_N_ELEMENTS (header); i++)
    plot_csv_add_text (csv, header[i]);
  plot_csv_end_row (csv);
  for (int b = 0; b < all->bins; b++)
    {
      add_bin_edges (csv, all, b);
      plot_csv_add_int (csv, (int64_t) all->counts[b]);
      plot_csv_add_double (csv, all->total ? (double) all->counts[b] / all->total : 0.0);
      plot_csv_add_int (csv, (int64_t) chosen->counts[b]);
      plot_csv_add_double (csv, chosen->total ? (double) chosen->counts[b] / chosen->total : 0.0);
      plot_csv_end_row (csv);
    }
  gboolean ok = plot_csv_save (csv, path, error);
  plot_csv_free (csv);
  return ok;
}

static gboolean
write_logit_csv (const char *path, gpointer data, GError **error)
{
  PeerExpertInspector *self = data;
  const expert_inspection *in = shown_inspection (self, error);
  if (!in)
    return FALSE;
  PlotCsv *csv = plot_csv_new ();
  const char *header[] = { "direction", "rank", "byte", "label", "logit_effect" };
  for (guint i = 0; i < G_N_ELEMENTS (header); i++)
    plot_csv_add_text (csv, header[i]);
  plot_csv_end_row (csv);
  int n = MIN (in->settings.top_bytes, TOP_BYTES);
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < n; i++)
      {
        int byte = pass == 0 ? in->pushed_up[i] : in->pushed_down[i];
        char label[16];
        describe_byte ((guint8) byte, label, sizeof label);
        plot_csv_add_text (csv, pass == 0 ? "up" : "down");
        plot_csv_add_int (csv, i);
        plot_csv_add_int (csv, byte);
        plot_csv_add_text (csv, label);
        plot_csv_add_float (csv, in->logit_effect[byte]);
        plot_csv_end_row (csv);
      }
  gboolean ok = plot_csv_save (csv, path, error);
  plot_csv_free (csv);
  return ok;
}

static const PeerExportKind usage_export = {
  .title = "Usage over Training",
  .file_stem = "expert-usage",
  .render = render_usage,
  .get_style = usage_style,
  .data = {
      { .label = "Usage (CSV)",
        .description = "The expert's selections per step over training, one row per interval: "
                       "step, selections_per_step.",
        .extension = "csv",
        .write = write_usage_csv },
  },
};

static const PeerExportKind activation_export = {
  .title = "Activation When Chosen",
  .file_stem = "expert-activation",
  .render = render_activation,
  .get_style = activation_style,
  .data = {
      { .label = "Histogram (CSV)",
        .description = "The histogram of σ(uᵀx) (the gate, for a product-key memory) over the "
                       "tokens that chose the expert, one row per bin: bin_start, bin_end, "
                       "selections.",
        .extension = "csv",
        .write = write_activation_csv },
  },
};

static const PeerExportKind preact_export = {
  .title = "Pre-activation",
  .file_stem = "expert-preactivation",
  .render = render_preact,
  .get_style = preact_style,
  .data = {
      { .label = "Histogram (CSV)",
        .description = "The histograms of uᵀx over every token and over the tokens that chose "
                       "the expert, one row per bin: bin_start, bin_end, each count and its "
                       "share of its total.",
        .extension = "csv",
        .write = write_preact_csv },
  },
};

static const PeerExportKind logit_export = {
  .title = "Bytes Pushed Up and Down",
  .file_stem = "expert-logit-effect",
  .render = render_logit,
  .get_style = logit_style,
  .data = {
      { .label = "Logit effects (CSV)",
        .description = "The bytes v pushes up most and down most, one row each: direction, "
                       "rank, byte, label and the direct logit effect.",
        .extension = "csv",
        .write = write_logit_csv },
  },
};

/* The plot last clicked, else the first one shown. */
static void
export_plot (PeerExpertInspector *self)
{
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));
  GtkWidget *plot = peer_export_find_plot (GTK_IS_WINDOW (root) ? GTK_WINDOW (root) : NULL,
                                           GTK_WIDGET (self));
  if (plot)
    peer_export_dialog_present (plot);
}

static gboolean
on_export_shortcut (GtkWidget *widget, GVariant *args, gpointer data)
{
  PeerExpertInspector *self = data;
  if (!gtk_widget_get_visible (GTK_WIDGET (self->export_button)) ||
      !gtk_widget_is_drawable (GTK_WIDGET (self->export_button)))
    return FALSE;
  export_plot (self);
  return TRUE;
}

/* ---- head filter ----------------------------------------------------------------------------- */

static void
on_head_selected (PeerExpertInspector *self)
{
  guint selected = gtk_drop_down_get_selected (self->head_dropdown);
  int head = selected == GTK_INVALID_LIST_POSITION || selected == 0 ? -1 : (int) selected - 1;
  peer_expert_inspector_set_head (self, head);
}

void
peer_expert_inspector_set_head (PeerExpertInspector *self, int head)
{
  g_return_if_fail (PEER_IS_EXPERT_INSPECTOR (self));
  g_return_if_fail (head >= -1 && (!self->layer_ok || head < self->peer.heads));
  if (self->head == head)
    return;
  self->head = head;
  if (gtk_drop_down_get_selected (self->head_dropdown) != (guint) (head + 1))
    gtk_drop_down_set_selected (self->head_dropdown, (guint) (head + 1));
  request_details (self);
}

int
peer_expert_inspector_get_head (PeerExpertInspector *self)
{
  g_return_val_if_fail (PEER_IS_EXPERT_INSPECTOR (self), -1);
  return self->head;
}

/* ---- object ---------------------------------------------------------------------------------- */

static void
peer_expert_inspector_constructed (GObject *object)
{
  PeerExpertInspector *self = PEER_EXPERT_INSPECTOR (object);
  G_OBJECT_CLASS (peer_expert_inspector_parent_class)->constructed (object);

  const model_config *cfg = self->session ? peer_session_get_config (self->session) : NULL;
  g_autofree char *expert = peer_format_count (self->expert);
  g_autofree char *title = g_strdup_printf ("Expert %s · Layer %d", expert, self->layer);
  gtk_label_set_label (self->title_label, title);
  g_autofree char *loading = g_strdup_printf (
      "Inspecting expert %s of layer %d on the validation text, between two training steps…",
      expert, self->layer);
  gtk_label_set_label (self->loading_label, loading);
  if (!cfg)
    {
      show_failure (self, "The run has no model to inspect.");
      return;
    }
  if (self->layer < 0 || self->layer >= cfg->n_layers ||
      (cfg->layers[self->layer].kind != FFN_PEER && cfg->layers[self->layer].kind != FFN_PKM))
    {
      g_autofree char *message = g_strdup_printf (
          "Layer %d of this model is not a PEER or PKM layer, so it has no experts to inspect.",
          self->layer);
      show_failure (self, message);
      return;
    }
  self->peer = cfg->layers[self->layer].peer;
  self->values_only = cfg->layers[self->layer].kind == FFN_PKM;
  if (self->expert < 0 || self->expert >= self->peer.n_experts)
    {
      g_autofree char *message = g_strdup_printf (
          "Expert %d does not exist: layer %d has experts 0 to %d.", self->expert, self->layer,
          self->peer.n_experts - 1);
      show_failure (self, message);
      return;
    }
  self->layer_ok = TRUE;
  self->vocab_size = cfg->vocab_size;
  if (self->values_only)
    {
      g_autofree char *memory = g_strdup_printf ("Memory %s · Layer %d", expert, self->layer);
      gtk_label_set_label (self->title_label, memory);
    }

  GtkStringList *heads = gtk_string_list_new (NULL);
  gtk_string_list_append (heads, "Every head");
  for (int j = 0; j < self->peer.heads; j++)
    {
      g_autofree char *name = g_strdup_printf ("Head %d", j);
      gtk_string_list_append (heads, name);
    }
  gtk_drop_down_set_model (self->head_dropdown, G_LIST_MODEL (heads));
  g_object_unref (heads);
  gtk_drop_down_set_selected (self->head_dropdown, 0);
  gtk_widget_set_visible (GTK_WIDGET (self->head_dropdown), self->peer.heads > 1);
  gtk_label_set_label (self->ablation_label,
                       "Measure the validation loss with this expert switched off.");
  request_details (self);
}

static void
peer_expert_inspector_get_property (GObject *object, guint prop_id, GValue *value,
                                    GParamSpec *pspec)
{
  PeerExpertInspector *self = PEER_EXPERT_INSPECTOR (object);
  switch (prop_id)
    {
    case PROP_SESSION:
      g_value_set_object (value, self->session);
      break;
    case PROP_LAYER:
      g_value_set_int (value, self->layer);
      break;
    case PROP_EXPERT:
      g_value_set_int (value, self->expert);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
peer_expert_inspector_set_property (GObject *object, guint prop_id, const GValue *value,
                                    GParamSpec *pspec)
{
  PeerExpertInspector *self = PEER_EXPERT_INSPECTOR (object);
  switch (prop_id)
    {
    case PROP_SESSION:
      self->session = g_value_dup_object (value);
      break;
    case PROP_LAYER:
      self->layer = g_value_get_int (value);
      break;
    case PROP_EXPERT:
      self->expert = g_value_get_int (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
peer_expert_inspector_dispose (GObject *object)
{
  PeerExpertInspector *self = PEER_EXPERT_INSPECTOR (object);
  /* A cancelled inspection never calls back, so no answer reaches a disposed inspector. */
  if (self->details_cancellable)
    g_cancellable_cancel (self->details_cancellable);
  if (self->ablation_cancellable)
    g_cancellable_cancel (self->ablation_cancellable);
  g_clear_object (&self->details_cancellable);
  g_clear_object (&self->ablation_cancellable);
  g_clear_object (&self->session);
  gtk_widget_dispose_template (GTK_WIDGET (object), PEER_TYPE_EXPERT_INSPECTOR);
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (object))))
    gtk_widget_unparent (child);
  G_OBJECT_CLASS (peer_expert_inspector_parent_class)->dispose (object);
}

static void
peer_expert_inspector_finalize (GObject *object)
{
  PeerExpertInspector *self = PEER_EXPERT_INSPECTOR (object);
  g_clear_pointer (&self->inspection, peer_expert_inspection_free);
  g_clear_pointer (&self->ablation, peer_expert_inspection_free);
  g_array_unref (self->usage_steps);
  g_array_unref (self->usage_counts);
  g_free (self->export_font_family);
  G_OBJECT_CLASS (peer_expert_inspector_parent_class)->finalize (object);
}

static void
peer_expert_inspector_class_init (PeerExpertInspectorClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  object_class->constructed = peer_expert_inspector_constructed;
  object_class->get_property = peer_expert_inspector_get_property;
  object_class->set_property = peer_expert_inspector_set_property;
  object_class->dispose = peer_expert_inspector_dispose;
  object_class->finalize = peer_expert_inspector_finalize;

  GParamFlags flags = G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS;
  properties[PROP_SESSION] =
      g_param_spec_object ("session", NULL, NULL, PEER_TYPE_SESSION, flags);
  properties[PROP_LAYER] = g_param_spec_int ("layer", NULL, NULL, 0, G_MAXINT, 0, flags);
  properties[PROP_EXPERT] = g_param_spec_int ("expert", NULL, NULL, 0, G_MAXINT, 0, flags);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  gtk_widget_class_set_template_from_resource (
      widget_class, "/org/peerworkbench/Workbench/ui/expert-inspector.ui");
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_set_css_name (widget_class, "expertinspector");
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector, stack);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector, loading_spinner);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector, loading_label);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector, failed_status);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector, title_label);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector, subtitle_label);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector, head_dropdown);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector, refresh_button);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector, export_button);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector, u_norm_label);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector, u_norm_caption);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector, v_norm_label);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector, count_label);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector, count_caption);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector, gate_mass_label);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector,
                                        mean_activation_label);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector,
                                        mean_activation_caption);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector, usage_area);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector, activation_area);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector, preact_frame);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector, preact_area);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector, logit_area);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector, ablation_label);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector, ablation_spinner);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector, ablate_button);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector, contexts_caption);
  gtk_widget_class_bind_template_child (widget_class, PeerExpertInspector, contexts_list);
  gtk_widget_class_bind_template_callback (widget_class, on_head_selected);
  gtk_widget_class_bind_template_callback (widget_class, peer_expert_inspector_refresh);
  gtk_widget_class_bind_template_callback (widget_class, peer_expert_inspector_ablate);
}

static void
peer_expert_inspector_init (PeerExpertInspector *self)
{
  self->head = -1;
  self->usage_steps = g_array_new (FALSE, FALSE, sizeof (double));
  self->usage_counts = g_array_new (FALSE, FALSE, sizeof (double));
  gtk_widget_init_template (GTK_WIDGET (self));
  gtk_drawing_area_set_draw_func (self->usage_area, draw_usage, self, NULL);
  gtk_drawing_area_set_draw_func (self->activation_area, draw_activation, self, NULL);
  gtk_drawing_area_set_draw_func (self->preact_area, draw_preact, self, NULL);
  gtk_drawing_area_set_draw_func (self->logit_area, draw_logit, self, NULL);
  peer_export_attach (GTK_WIDGET (self->usage_area), NULL, &usage_export, self);
  peer_export_attach (GTK_WIDGET (self->activation_area), NULL, &activation_export, self);
  peer_export_attach (GTK_WIDGET (self->preact_area), NULL, &preact_export, self);
  peer_export_attach (GTK_WIDGET (self->logit_area), NULL, &logit_export, self);
  g_signal_connect_swapped (self->export_button, "clicked", G_CALLBACK (export_plot), self);
  /* Ctrl+E anywhere in the inspector's window, as in the main window. */
  GtkEventController *shortcuts = gtk_shortcut_controller_new ();
  gtk_shortcut_controller_set_scope (GTK_SHORTCUT_CONTROLLER (shortcuts),
                                     GTK_SHORTCUT_SCOPE_GLOBAL);
  gtk_shortcut_controller_add_shortcut (
      GTK_SHORTCUT_CONTROLLER (shortcuts),
      gtk_shortcut_new (gtk_keyval_trigger_new (GDK_KEY_e, GDK_CONTROL_MASK),
                        gtk_callback_action_new (on_export_shortcut, self, NULL)));
  gtk_widget_add_controller (GTK_WIDGET (self), shortcuts);
}

GtkWidget *
peer_expert_inspector_new (PeerSession *session, int layer, int expert)
{
  g_return_val_if_fail (PEER_IS_SESSION (session), NULL);
  return g_object_new (PEER_TYPE_EXPERT_INSPECTOR, "session", session, "layer", layer, "expert",
                       expert, NULL);
}

PeerExpertInspector *
peer_expert_inspector_present (PeerSession *session, int layer, int expert, GtkWindow *parent)
{
  g_return_val_if_fail (PEER_IS_SESSION (session), NULL);
  GtkWidget *inspector = peer_expert_inspector_new (session, layer, expert);
  gtk_widget_set_vexpand (inspector, TRUE);
  g_autofree char *expert_text = peer_format_count (expert);
  g_autofree char *title = g_strdup_printf ("Expert %s · Layer %d", expert_text, layer);
  GtkWidget *window_title = adw_window_title_new (title, peer_session_get_name (session));
  GtkWidget *header = adw_header_bar_new ();
  adw_header_bar_set_title_widget (ADW_HEADER_BAR (header), window_title);
  GtkWidget *box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 0);
  gtk_box_append (GTK_BOX (box), header);
  gtk_box_append (GTK_BOX (box), inspector);

  GtkWidget *window = adw_window_new ();
  gtk_window_set_title (GTK_WINDOW (window), title);
  gtk_window_set_default_size (GTK_WINDOW (window), 1060, 900);
  adw_window_set_content (ADW_WINDOW (window), box);
  if (parent)
    {
      gtk_window_set_transient_for (GTK_WINDOW (window), parent);
      gtk_window_set_application (GTK_WINDOW (window), gtk_window_get_application (parent));
    }
  gtk_window_present (GTK_WINDOW (window));
  return PEER_EXPERT_INSPECTOR (inspector);
}

PeerSession *
peer_expert_inspector_get_session (PeerExpertInspector *self)
{
  g_return_val_if_fail (PEER_IS_EXPERT_INSPECTOR (self), NULL);
  return self->session;
}

int
peer_expert_inspector_get_layer (PeerExpertInspector *self)
{
  g_return_val_if_fail (PEER_IS_EXPERT_INSPECTOR (self), -1);
  return self->layer;
}

int
peer_expert_inspector_get_expert (PeerExpertInspector *self)
{
  g_return_val_if_fail (PEER_IS_EXPERT_INSPECTOR (self), -1);
  return self->expert;
}

void
peer_expert_inspector_set_usage_history (PeerExpertInspector *self, const double *steps,
                                         const double *counts, guint n)
{
  g_return_if_fail (PEER_IS_EXPERT_INSPECTOR (self));
  g_return_if_fail (n == 0 || (steps && counts));
  g_array_set_size (self->usage_steps, 0);
  g_array_set_size (self->usage_counts, 0);
  if (n > 0)
    {
      g_array_append_vals (self->usage_steps, steps, n);
      g_array_append_vals (self->usage_counts, counts, n);
    }
  gtk_widget_queue_draw (GTK_WIDGET (self->usage_area));
}

const PeerExpertInspection *
peer_expert_inspector_get_inspection (PeerExpertInspector *self)
{
  g_return_val_if_fail (PEER_IS_EXPERT_INSPECTOR (self), NULL);
  return self->inspection;
}

const PeerExpertInspection *
peer_expert_inspector_get_ablation (PeerExpertInspector *self)
{
  g_return_val_if_fail (PEER_IS_EXPERT_INSPECTOR (self), NULL);
  return self->ablation;
}

gboolean
peer_expert_inspector_is_busy (PeerExpertInspector *self)
{
  g_return_val_if_fail (PEER_IS_EXPERT_INSPECTOR (self), FALSE);
  return self->details_cancellable != NULL || self->ablation_cancellable != NULL;
}
