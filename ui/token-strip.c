#include "token-strip.h"

#include <math.h>

#define MARGIN 6.0
#define PAD_X 3.0
#define PAD_Y 2.0
#define CELL_GAP 2.0
#define ROW_GAP 3.0
#define LEGEND_GAP 6.0
#define LEGEND_BAR_WIDTH 140.0
#define ESCAPE_SCALE 0.8
#define HIGHLIGHT_WIDTH 2.0

struct _PeerTokenStrip {
    GtkWidget parent_instance;

    GtkAdjustment *hadjustment;
    GtkAdjustment *vadjustment;
    guint hscroll_policy;
    guint vscroll_policy;

    GPtrArray *labels;  /* char *, (n) */
    GArray *styles;     /* PeerTokenCellStyle, (n) */
    GArray *loss;       /* float, (n) */
    int position;

    /* Measured once per change of tokens or font. */
    PangoFontDescription *font;
    PangoFontDescription *escape_font;
    double *label_width; /* (n) */
    double cell_h;
    double min_cell_w;
    gboolean measured;

    /* Laid out once per change of width. */
    int layout_width;
    double *cell_x;      /* (n) from the strip's left edge */
    int *cell_row;       /* (n) */
    double *cell_w;      /* (n) */
    int n_rows;
    gboolean scroll_pending; /* bring the current token into view once laid out */

    /* The cells in view, drawn once per change of tokens, width, height, scroll or style; the
     * outline of the current token is drawn over them on every frame. */
    GskRenderNode *cells_node;
    double node_value;
    int node_width;
    int node_height;
};

enum {
    PROP_0,
    PROP_POSITION,
    PROP_HADJUSTMENT,
    PROP_VADJUSTMENT,
    PROP_HSCROLL_POLICY,
    PROP_VSCROLL_POLICY,
    N_PROPS,
};

static GParamSpec *properties[PROP_HADJUSTMENT];

enum { SIGNAL_POSITION_CHANGED, N_SIGNALS };
static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE_WITH_CODE(PeerTokenStrip, peer_token_strip, GTK_TYPE_WIDGET,
                              G_IMPLEMENT_INTERFACE(GTK_TYPE_SCROLLABLE, NULL))

/* ---- the colour scale ------------------------------------------------------------------------ */

/* ColorBrewer's YlOrRd: pale where the model was sure of the next byte, dark red where it was
 * surprised. */
static const guint8 scale_stops[][3] = {
    {0xff, 0xff, 0xcc}, {0xff, 0xed, 0xa0}, {0xfe, 0xd9, 0x76}, {0xfe, 0xb2, 0x4c},
    {0xfd, 0x8d, 0x3c}, {0xfc, 0x4e, 0x2a}, {0xe3, 0x1a, 0x1c}, {0xb1, 0x00, 0x26},
};

void peer_token_strip_loss_color(double loss, GdkRGBA *color)
{
    if (!isfinite(loss)) {
        *color = (GdkRGBA){0, 0, 0, 0};
        return;
    }
    int last = G_N_ELEMENTS(scale_stops) - 1;
    double t = CLAMP(loss / PEER_TOKEN_STRIP_LOSS_MAX, 0.0, 1.0) * last;
    int i = MIN((int)floor(t), last - 1);
    double u = t - i;
    color->red = (float)(((1 - u) * scale_stops[i][0] + u * scale_stops[i + 1][0]) / 255.0);
    color->green = (float)(((1 - u) * scale_stops[i][1] + u * scale_stops[i + 1][1]) / 255.0);
    color->blue = (float)(((1 - u) * scale_stops[i][2] + u * scale_stops[i + 1][2]) / 255.0);
    color->alpha = 1.0f;
}

static gboolean is_light(const GdkRGBA *color)
{
    return 0.2126 * color->red + 0.7152 * color->green + 0.0722 * color->blue > 0.45;
}

/* ---- measuring and laying out ---------------------------------------------------------------- */

static guint n_tokens(PeerTokenStrip *self)
{
    return self->labels->len;
}

static PeerTokenCellStyle style_at(PeerTokenStrip *self, guint i)
{
    return g_array_index(self->styles, PeerTokenCellStyle, i);
}

static void invalidate_cells(PeerTokenStrip *self)
{
    g_clear_pointer(&self->cells_node, gsk_render_node_unref);
    gtk_widget_queue_draw(GTK_WIDGET(self));
}

static void invalidate_layout(PeerTokenStrip *self)
{
    self->layout_width = -1;
    invalidate_cells(self);
    gtk_widget_queue_resize(GTK_WIDGET(self));
}

static void invalidate_measures(PeerTokenStrip *self)
{
    self->measured = FALSE;
    invalidate_layout(self);
}

/* The widget's font, in its monospace variant, so that a text's columns line up. */
static void update_fonts(PeerTokenStrip *self)
{
    PangoContext *context = gtk_widget_get_pango_context(GTK_WIDGET(self));
    const PangoFontDescription *base = pango_context_get_font_description(context);
    g_clear_pointer(&self->font, pango_font_description_free);
    g_clear_pointer(&self->escape_font, pango_font_description_free);
    self->font = base ? pango_font_description_copy(base) : pango_font_description_new();
    pango_font_description_set_family(self->font, "Monospace");
    if (pango_font_description_get_size(self->font) <= 0)
        pango_font_description_set_size(self->font, 10 * PANGO_SCALE);
    self->escape_font = pango_font_description_copy(self->font);
    pango_font_description_set_size(
        self->escape_font, (int)(pango_font_description_get_size(self->font) * ESCAPE_SCALE));
}

static PangoLayout *new_layout(PeerTokenStrip *self)
{
    return gtk_widget_create_pango_layout(GTK_WIDGET(self), NULL);
}

static void set_layout_text(PeerTokenStrip *self, PangoLayout *layout, guint i)
{
    pango_layout_set_font_description(layout, style_at(self, i) == PEER_TOKEN_CELL_ESCAPE
                                                  ? self->escape_font
                                                  : self->font);
    pango_layout_set_text(layout, g_ptr_array_index(self->labels, i), -1);
}

static void measure_labels(PeerTokenStrip *self)
{
    if (self->measured)
        return;
    if (!self->font)
        update_fonts(self);
    guint n = n_tokens(self);
    g_free(self->label_width);
    self->label_width = g_new(double, MAX(n, 1));
    PangoLayout *layout = new_layout(self);
    pango_layout_set_font_description(layout, self->font);
    pango_layout_set_text(layout, "M", -1);
    PangoRectangle logical;
    pango_layout_get_pixel_extents(layout, NULL, &logical);
    self->cell_h = logical.height + 2 * PAD_Y;
    self->min_cell_w = logical.width + 2 * PAD_X;
    for (guint i = 0; i < n; i++) {
        set_layout_text(self, layout, i);
        pango_layout_get_pixel_extents(layout, NULL, &logical);
        self->label_width[i] = logical.width;
    }
    g_object_unref(layout);
    self->measured = TRUE;
}

static double legend_height(PeerTokenStrip *self)
{
    measure_labels(self);
    return self->cell_h + LEGEND_GAP;
}

static double row_pitch(PeerTokenStrip *self)
{
    return self->cell_h + ROW_GAP;
}

static void lay_out(PeerTokenStrip *self, int width)
{
    measure_labels(self);
    if (self->layout_width == width)
        return;
    guint n = n_tokens(self);
    g_free(self->cell_x);
    g_free(self->cell_w);
    g_free(self->cell_row);
    self->cell_x = g_new(double, MAX(n, 1));
    self->cell_w = g_new(double, MAX(n, 1));
    self->cell_row = g_new(int, MAX(n, 1));
    double x = MARGIN;
    int row = 0;
    for (guint i = 0; i < n; i++) {
        double w = MAX(self->label_width[i] + 2 * PAD_X, self->min_cell_w);
        if (x > MARGIN && x + w > width - MARGIN) {
            row++;
            x = MARGIN;
        }
        self->cell_x[i] = x;
        self->cell_w[i] = w;
        self->cell_row[i] = row;
        x += w + CELL_GAP;
    }
    self->n_rows = n > 0 ? row + 1 : 0;
    self->layout_width = width;
}

static double content_height(PeerTokenStrip *self)
{
    return 2 * MARGIN + self->n_rows * row_pitch(self) - (self->n_rows > 0 ? ROW_GAP : 0);
}

/* The top of a row in content coordinates (0 at the first row's margin, before scrolling). */
static double row_top(PeerTokenStrip *self, int row)
{
    return MARGIN + row * row_pitch(self);
}

static double scroll_value(PeerTokenStrip *self)
{
    return self->vadjustment ? gtk_adjustment_get_value(self->vadjustment) : 0.0;
}

static double view_height(PeerTokenStrip *self)
{
    return MAX(gtk_widget_get_height(GTK_WIDGET(self)) - legend_height(self), 0.0);
}

/* ---- scrolling ------------------------------------------------------------------------------- */

static void configure_adjustments(PeerTokenStrip *self)
{
    double page = view_height(self), upper = MAX(content_height(self), page);
    if (self->vadjustment) {
        double value = CLAMP(gtk_adjustment_get_value(self->vadjustment), 0.0, upper - page);
        gtk_adjustment_configure(self->vadjustment, value, 0.0, upper, row_pitch(self),
                                 MAX(page * 0.9, row_pitch(self)), page);
    }
    if (self->hadjustment) {
        double width = gtk_widget_get_width(GTK_WIDGET(self));
        gtk_adjustment_configure(self->hadjustment, 0.0, 0.0, width, 1.0, width, width);
    }
}

static void scroll_to_position(PeerTokenStrip *self)
{
    int width = gtk_widget_get_width(GTK_WIDGET(self));
    if (self->position < 0 || width <= 0 || !self->vadjustment) {
        self->scroll_pending = TRUE;
        return;
    }
    self->scroll_pending = FALSE;
    lay_out(self, width);
    double top = row_top(self, self->cell_row[self->position]) - MARGIN;
    double bottom = top + self->cell_h + 2 * MARGIN;
    double value = scroll_value(self), page = view_height(self);
    if (top < value)
        gtk_adjustment_set_value(self->vadjustment, top);
    else if (bottom > value + page)
        gtk_adjustment_set_value(self->vadjustment, bottom - page);
}

static void on_value_changed(GtkAdjustment *adjustment, PeerTokenStrip *self)
{
    invalidate_cells(self);
}

static void set_adjustment(PeerTokenStrip *self, GtkAdjustment **slot, GtkAdjustment *adjustment)
{
    if (*slot == adjustment)
        return;
    if (*slot) {
        g_signal_handlers_disconnect_by_func(*slot, on_value_changed, self);
        g_object_unref(*slot);
    }
    if (!adjustment)
        adjustment = gtk_adjustment_new(0, 0, 0, 0, 0, 0);
    *slot = g_object_ref_sink(adjustment);
    g_signal_connect(adjustment, "value-changed", G_CALLBACK(on_value_changed), self);
    gtk_widget_queue_allocate(GTK_WIDGET(self));
}

/* ---- position -------------------------------------------------------------------------------- */

int peer_token_strip_get_position(PeerTokenStrip *self)
{
    g_return_val_if_fail(PEER_IS_TOKEN_STRIP(self), -1);
    return self->position;
}

void peer_token_strip_set_position(PeerTokenStrip *self, int position)
{
    g_return_if_fail(PEER_IS_TOKEN_STRIP(self));
    int n = (int)n_tokens(self);
    position = n > 0 ? CLAMP(position, 0, n - 1) : -1;
    if (position == self->position)
        return;
    self->position = position;
    scroll_to_position(self);
    gtk_widget_queue_draw(GTK_WIDGET(self));
    g_object_notify_by_pspec(G_OBJECT(self), properties[PROP_POSITION]);
    g_signal_emit(self, signals[SIGNAL_POSITION_CHANGED], 0, position);
}

guint peer_token_strip_get_n_tokens(PeerTokenStrip *self)
{
    g_return_val_if_fail(PEER_IS_TOKEN_STRIP(self), 0);
    return n_tokens(self);
}

const char *peer_token_strip_get_label(PeerTokenStrip *self, guint index)
{
    g_return_val_if_fail(PEER_IS_TOKEN_STRIP(self), NULL);
    return index < n_tokens(self) ? g_ptr_array_index(self->labels, index) : NULL;
}

void peer_token_strip_set_tokens(PeerTokenStrip *self, guint n, const char *const *labels,
                                 const PeerTokenCellStyle *styles, const float *loss)
{
    g_return_if_fail(PEER_IS_TOKEN_STRIP(self));
    g_return_if_fail(n == 0 || (labels && styles && loss));
    g_ptr_array_set_size(self->labels, 0);
    g_array_set_size(self->styles, 0);
    g_array_set_size(self->loss, 0);
    for (guint i = 0; i < n; i++)
        g_ptr_array_add(self->labels, g_strdup(labels[i]));
    if (n > 0) {
        g_array_append_vals(self->styles, styles, n);
        g_array_append_vals(self->loss, loss, n);
    }
    invalidate_measures(self);
    if (self->vadjustment)
        gtk_adjustment_set_value(self->vadjustment, 0.0);
    /* Always announced: the tokens under the position changed even when the number did not. */
    self->position = n > 0 ? 0 : -1;
    g_object_notify_by_pspec(G_OBJECT(self), properties[PROP_POSITION]);
    g_signal_emit(self, signals[SIGNAL_POSITION_CHANGED], 0, self->position);
}

gboolean peer_token_strip_get_cell_bounds(PeerTokenStrip *self, int index,
                                          graphene_rect_t *bounds)
{
    g_return_val_if_fail(PEER_IS_TOKEN_STRIP(self), FALSE);
    int width = gtk_widget_get_width(GTK_WIDGET(self));
    if (index < 0 || index >= (int)n_tokens(self) || width <= 0)
        return FALSE;
    lay_out(self, width);
    double y = legend_height(self) + row_top(self, self->cell_row[index]) - scroll_value(self);
    graphene_rect_init(bounds, (float)self->cell_x[index], (float)y, (float)self->cell_w[index],
                       (float)self->cell_h);
    return TRUE;
}

/* The token under a point of the widget, or -1. */
static int token_at(PeerTokenStrip *self, double x, double y)
{
    int width = gtk_widget_get_width(GTK_WIDGET(self));
    double top = legend_height(self);
    if (width <= 0 || y < top)
        return -1;
    lay_out(self, width);
    double content_y = y - top + scroll_value(self);
    int row = (int)floor((content_y - MARGIN + ROW_GAP / 2) / row_pitch(self));
    int best = -1;
    for (guint i = 0; i < n_tokens(self); i++) {
        if (self->cell_row[i] != row)
            continue;
        if (x >= self->cell_x[i] - CELL_GAP / 2 && x < self->cell_x[i] + self->cell_w[i] + CELL_GAP)
            return (int)i;
        best = (int)i;
        if (x < self->cell_x[i])
            return best;
    }
    return best;
}

/* The token one row up (-1) or down (+1) nearest under the current one. */
static int token_in_row(PeerTokenStrip *self, int direction)
{
    int width = gtk_widget_get_width(GTK_WIDGET(self));
    if (self->position < 0 || width <= 0)
        return self->position;
    lay_out(self, width);
    int row = self->cell_row[self->position] + direction;
    double center = self->cell_x[self->position] + self->cell_w[self->position] / 2;
    int best = self->position;
    double best_distance = INFINITY;
    for (guint i = 0; i < n_tokens(self); i++) {
        if (self->cell_row[i] != row)
            continue;
        double distance = fabs(self->cell_x[i] + self->cell_w[i] / 2 - center);
        if (distance < best_distance) {
            best_distance = distance;
            best = (int)i;
        }
    }
    return best;
}

/* ---- input ----------------------------------------------------------------------------------- */

static gboolean on_key_pressed(GtkEventControllerKey *controller, guint keyval, guint keycode,
                               GdkModifierType state, PeerTokenStrip *self)
{
    int n = (int)n_tokens(self);
    if (n == 0)
        return FALSE;
    int target;
    switch (keyval) {
    case GDK_KEY_Left:
    case GDK_KEY_KP_Left:
        target = self->position - 1;
        break;
    case GDK_KEY_Right:
    case GDK_KEY_KP_Right:
        target = self->position + 1;
        break;
    case GDK_KEY_Up:
    case GDK_KEY_KP_Up:
        target = token_in_row(self, -1);
        break;
    case GDK_KEY_Down:
    case GDK_KEY_KP_Down:
        target = token_in_row(self, 1);
        break;
    case GDK_KEY_Home:
    case GDK_KEY_KP_Home:
        target = 0;
        break;
    case GDK_KEY_End:
    case GDK_KEY_KP_End:
        target = n - 1;
        break;
    default:
        return FALSE;
    }
    peer_token_strip_set_position(self, target);
    return TRUE;
}

static void on_pressed(GtkGestureClick *gesture, int n_press, double x, double y,
                       PeerTokenStrip *self)
{
    gtk_widget_grab_focus(GTK_WIDGET(self));
    int index = token_at(self, x, y);
    if (index >= 0)
        peer_token_strip_set_position(self, index);
}

static gboolean on_query_tooltip(GtkWidget *widget, int x, int y, gboolean keyboard,
                                 GtkTooltip *tooltip, PeerTokenStrip *self)
{
    int index = keyboard ? self->position : token_at(self, x, y);
    if (index < 0)
        return FALSE;
    float loss = g_array_index(self->loss, float, index);
    g_autofree char *text =
        isfinite(loss)
            ? g_strdup_printf("Token %d · %s · loss %.2f nats predicting the next byte", index,
                              (const char *)g_ptr_array_index(self->labels, index), loss)
            : g_strdup_printf("Token %d · %s · no next byte to predict", index,
                              (const char *)g_ptr_array_index(self->labels, index));
    gtk_tooltip_set_text(tooltip, text);
    return TRUE;
}

/* ---- drawing --------------------------------------------------------------------------------- */

static GdkRGBA foreground_color(PeerTokenStrip *self)
{
    GdkRGBA color;
    gtk_style_context_get_color(gtk_widget_get_style_context(GTK_WIDGET(self)), &color);
    return color;
}

static GdkRGBA with_alpha(GdkRGBA color, float alpha)
{
    color.alpha *= alpha;
    return color;
}

static void draw_legend(PeerTokenStrip *self, GtkSnapshot *snapshot, int width)
{
    GdkRGBA fg = foreground_color(self);
    GdkRGBA dim = with_alpha(fg, 0.7f);
    PangoLayout *layout = new_layout(self);
    PangoRectangle logical;
    double y = (legend_height(self) - LEGEND_GAP) / 2 + 1;

    /* Right-aligned: "loss of the next byte  0 [scale] 5+ nats". */
    pango_layout_set_text(layout, "5+ nats", -1);
    pango_layout_get_pixel_extents(layout, NULL, &logical);
    double x = width - MARGIN - logical.width;
    gtk_snapshot_save(snapshot);
    gtk_snapshot_translate(snapshot,
                           &GRAPHENE_POINT_INIT((float)x, (float)(y - logical.height / 2)));
    gtk_snapshot_append_layout(snapshot, layout, &dim);
    gtk_snapshot_restore(snapshot);

    double bar_h = 8.0;
    x -= LEGEND_BAR_WIDTH + 4;
    int stops = G_N_ELEMENTS(scale_stops);
    GskColorStop color_stops[G_N_ELEMENTS(scale_stops)];
    for (int i = 0; i < stops; i++) {
        color_stops[i].offset = (float)i / (stops - 1);
        peer_token_strip_loss_color(PEER_TOKEN_STRIP_LOSS_MAX * i / (stops - 1),
                                    &color_stops[i].color);
    }
    graphene_rect_t bar = GRAPHENE_RECT_INIT((float)x, (float)(y - bar_h / 2),
                                             (float)LEGEND_BAR_WIDTH, (float)bar_h);
    gtk_snapshot_append_linear_gradient(snapshot, &bar,
                                        &GRAPHENE_POINT_INIT(bar.origin.x, 0),
                                        &GRAPHENE_POINT_INIT(bar.origin.x + bar.size.width, 0),
                                        color_stops, stops);

    pango_layout_set_text(layout, "0", -1);
    pango_layout_get_pixel_extents(layout, NULL, &logical);
    x -= logical.width + 4;
    gtk_snapshot_save(snapshot);
    gtk_snapshot_translate(snapshot,
                           &GRAPHENE_POINT_INIT((float)x, (float)(y - logical.height / 2)));
    gtk_snapshot_append_layout(snapshot, layout, &dim);
    gtk_snapshot_restore(snapshot);

    pango_layout_set_text(layout, "Colour: loss predicting the next byte", -1);
    pango_layout_get_pixel_extents(layout, NULL, &logical);
    x -= logical.width + 8;
    if (x >= MARGIN) {
        gtk_snapshot_save(snapshot);
        gtk_snapshot_translate(snapshot,
                               &GRAPHENE_POINT_INIT((float)x, (float)(y - logical.height / 2)));
        gtk_snapshot_append_layout(snapshot, layout, &dim);
        gtk_snapshot_restore(snapshot);
    }
    g_object_unref(layout);
}

/* The rows in view, in the strip's coordinates below the legend. */
static GskRenderNode *draw_cells(PeerTokenStrip *self, int width, int height)
{
    GtkSnapshot *snapshot = gtk_snapshot_new();
    GdkRGBA fg = foreground_color(self);
    GdkRGBA none_border = with_alpha(fg, 0.35f);
    double top = legend_height(self), value = scroll_value(self), pitch = row_pitch(self);
    int first_row = MAX(0, (int)floor((value - MARGIN) / pitch));
    int last_row = (int)ceil((value + height - top) / pitch);
    PangoLayout *layout = new_layout(self);
    for (guint i = 0; i < n_tokens(self); i++) {
        int row = self->cell_row[i];
        if (row < first_row)
            continue;
        if (row > last_row)
            break;
        double x = self->cell_x[i], y = top + row_top(self, row) - value;
        graphene_rect_t cell = GRAPHENE_RECT_INIT((float)x, (float)y, (float)self->cell_w[i],
                                                  (float)self->cell_h);
        GskRoundedRect rounded;
        gsk_rounded_rect_init_from_rect(&rounded, &cell, 3.0f);
        float loss = g_array_index(self->loss, float, i);
        GdkRGBA fill, text_color;
        if (isfinite(loss)) {
            peer_token_strip_loss_color(loss, &fill);
            gtk_snapshot_push_rounded_clip(snapshot, &rounded);
            gtk_snapshot_append_color(snapshot, &fill, &cell);
            gtk_snapshot_pop(snapshot);
            text_color = is_light(&fill) ? (GdkRGBA){0, 0, 0, 1} : (GdkRGBA){1, 1, 1, 1};
        } else {
            const GdkRGBA colors[4] = {none_border, none_border, none_border, none_border};
            const float widths[4] = {1, 1, 1, 1};
            gtk_snapshot_append_border(snapshot, &rounded, widths, colors);
            text_color = fg;
        }
        PeerTokenCellStyle style = style_at(self, i);
        if (style != PEER_TOKEN_CELL_TEXT)
            text_color = with_alpha(text_color, 0.62f);
        set_layout_text(self, layout, i);
        PangoRectangle logical;
        pango_layout_get_pixel_extents(layout, NULL, &logical);
        gtk_snapshot_save(snapshot);
        double text_x = x + (self->cell_w[i] - logical.width) / 2;
        double text_y = y + (self->cell_h - logical.height) / 2;
        gtk_snapshot_translate(snapshot, &GRAPHENE_POINT_INIT((float)text_x, (float)text_y));
        gtk_snapshot_append_layout(snapshot, layout, &text_color);
        gtk_snapshot_restore(snapshot);
    }
    g_object_unref(layout);
    return gtk_snapshot_free_to_node(snapshot);
}

static void peer_token_strip_snapshot(GtkWidget *widget, GtkSnapshot *snapshot)
{
    PeerTokenStrip *self = PEER_TOKEN_STRIP(widget);
    int width = gtk_widget_get_width(widget), height = gtk_widget_get_height(widget);
    if (width <= 0 || height <= 0)
        return;
    lay_out(self, width);
    draw_legend(self, snapshot, width);

    double top = legend_height(self);
    gtk_snapshot_push_clip(snapshot, &GRAPHENE_RECT_INIT(0, (float)top, (float)width,
                                                         (float)MAX(height - top, 0)));
    double value = scroll_value(self);
    if (!self->cells_node || self->node_value != value || self->node_width != width ||
        self->node_height != height) {
        g_clear_pointer(&self->cells_node, gsk_render_node_unref);
        self->cells_node = draw_cells(self, width, height);
        self->node_value = value;
        self->node_width = width;
        self->node_height = height;
    }
    if (self->cells_node)
        gtk_snapshot_append_node(snapshot, self->cells_node);

    graphene_rect_t cell;
    if (peer_token_strip_get_cell_bounds(self, self->position, &cell)) {
        GdkRGBA ring = foreground_color(self);
        if (gtk_widget_has_focus(widget))
            gtk_style_context_lookup_color(gtk_widget_get_style_context(widget), "accent_color",
                                           &ring);
        graphene_rect_t outer;
        graphene_rect_inset_r(&cell, -HIGHLIGHT_WIDTH - 1, -HIGHLIGHT_WIDTH - 1, &outer);
        GskRoundedRect rounded;
        gsk_rounded_rect_init_from_rect(&rounded, &outer, 4.0f);
        const GdkRGBA colors[4] = {ring, ring, ring, ring};
        const float widths[4] = {HIGHLIGHT_WIDTH, HIGHLIGHT_WIDTH, HIGHLIGHT_WIDTH,
                                 HIGHLIGHT_WIDTH};
        gtk_snapshot_append_border(snapshot, &rounded, widths, colors);
    }
    gtk_snapshot_pop(snapshot);
}

static void peer_token_strip_measure(GtkWidget *widget, GtkOrientation orientation, int for_size,
                                     int *minimum, int *natural, int *minimum_baseline,
                                     int *natural_baseline)
{
    PeerTokenStrip *self = PEER_TOKEN_STRIP(widget);
    measure_labels(self);
    if (orientation == GTK_ORIENTATION_HORIZONTAL) {
        *minimum = 200;
        *natural = 600;
        return;
    }
    double legend = legend_height(self);
    *minimum = (int)ceil(legend + 2 * MARGIN + self->cell_h);
    int width = for_size > 0 ? for_size : 600;
    lay_out(self, width);
    *natural = (int)ceil(legend + content_height(self));
    *natural = MAX(*natural, *minimum);
}

static void peer_token_strip_size_allocate(GtkWidget *widget, int width, int height,
                                           int baseline)
{
    PeerTokenStrip *self = PEER_TOKEN_STRIP(widget);
    lay_out(self, width);
    configure_adjustments(self);
    if (self->scroll_pending)
        scroll_to_position(self);
    invalidate_cells(self);
}

static void peer_token_strip_css_changed(GtkWidget *widget, GtkCssStyleChange *change)
{
    PeerTokenStrip *self = PEER_TOKEN_STRIP(widget);
    GTK_WIDGET_CLASS(peer_token_strip_parent_class)->css_changed(widget, change);
    g_clear_pointer(&self->font, pango_font_description_free);
    update_fonts(self);
    invalidate_measures(self);
}

static void on_focus_changed(PeerTokenStrip *self)
{
    gtk_widget_queue_draw(GTK_WIDGET(self));
}

/* ---- GObject --------------------------------------------------------------------------------- */

static void peer_token_strip_get_property(GObject *object, guint prop_id, GValue *value,
                                          GParamSpec *pspec)
{
    PeerTokenStrip *self = PEER_TOKEN_STRIP(object);
    switch (prop_id) {
    case PROP_POSITION:
        g_value_set_int(value, self->position);
        break;
    case PROP_HADJUSTMENT:
        g_value_set_object(value, self->hadjustment);
        break;
    case PROP_VADJUSTMENT:
        g_value_set_object(value, self->vadjustment);
        break;
    case PROP_HSCROLL_POLICY:
        g_value_set_enum(value, self->hscroll_policy);
        break;
    case PROP_VSCROLL_POLICY:
        g_value_set_enum(value, self->vscroll_policy);
        break;
    default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
    }
}

static void peer_token_strip_set_property(GObject *object, guint prop_id, const GValue *value,
                                          GParamSpec *pspec)
{
    PeerTokenStrip *self = PEER_TOKEN_STRIP(object);
    switch (prop_id) {
    case PROP_POSITION:
        peer_token_strip_set_position(self, g_value_get_int(value));
        break;
    case PROP_HADJUSTMENT:
        set_adjustment(self, &self->hadjustment, g_value_get_object(value));
        break;
    case PROP_VADJUSTMENT:
        set_adjustment(self, &self->vadjustment, g_value_get_object(value));
        break;
    case PROP_HSCROLL_POLICY:
        self->hscroll_policy = g_value_get_enum(value);
        gtk_widget_queue_resize(GTK_WIDGET(self));
        break;
    case PROP_VSCROLL_POLICY:
        self->vscroll_policy = g_value_get_enum(value);
        gtk_widget_queue_resize(GTK_WIDGET(self));
        break;
    default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
    }
}

static void peer_token_strip_dispose(GObject *object)
{
    PeerTokenStrip *self = PEER_TOKEN_STRIP(object);
    g_clear_pointer(&self->cells_node, gsk_render_node_unref);
    if (self->hadjustment) {
        g_signal_handlers_disconnect_by_func(self->hadjustment, on_value_changed, self);
        g_clear_object(&self->hadjustment);
    }
    if (self->vadjustment) {
        g_signal_handlers_disconnect_by_func(self->vadjustment, on_value_changed, self);
        g_clear_object(&self->vadjustment);
    }
    G_OBJECT_CLASS(peer_token_strip_parent_class)->dispose(object);
}

static void peer_token_strip_finalize(GObject *object)
{
    PeerTokenStrip *self = PEER_TOKEN_STRIP(object);
    g_ptr_array_unref(self->labels);
    g_array_unref(self->styles);
    g_array_unref(self->loss);
    g_free(self->label_width);
    g_free(self->cell_x);
    g_free(self->cell_w);
    g_free(self->cell_row);
    g_clear_pointer(&self->font, pango_font_description_free);
    g_clear_pointer(&self->escape_font, pango_font_description_free);
    G_OBJECT_CLASS(peer_token_strip_parent_class)->finalize(object);
}

static void peer_token_strip_class_init(PeerTokenStripClass *klass)
{
    GObjectClass *object_class = G_OBJECT_CLASS(klass);
    GtkWidgetClass *widget_class = GTK_WIDGET_CLASS(klass);
    object_class->get_property = peer_token_strip_get_property;
    object_class->set_property = peer_token_strip_set_property;
    object_class->dispose = peer_token_strip_dispose;
    object_class->finalize = peer_token_strip_finalize;
    widget_class->snapshot = peer_token_strip_snapshot;
    widget_class->measure = peer_token_strip_measure;
    widget_class->size_allocate = peer_token_strip_size_allocate;
    widget_class->css_changed = peer_token_strip_css_changed;

    properties[PROP_POSITION] =
        g_param_spec_int("position", NULL, NULL, -1, G_MAXINT, -1,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
    g_object_class_install_properties(object_class, PROP_HADJUSTMENT, properties);
    g_object_class_override_property(object_class, PROP_HADJUSTMENT, "hadjustment");
    g_object_class_override_property(object_class, PROP_VADJUSTMENT, "vadjustment");
    g_object_class_override_property(object_class, PROP_HSCROLL_POLICY, "hscroll-policy");
    g_object_class_override_property(object_class, PROP_VSCROLL_POLICY, "vscroll-policy");

    /* The current token changed: by a key, a click, the caller or new tokens. */
    signals[SIGNAL_POSITION_CHANGED] =
        g_signal_new("position-changed", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0, NULL,
                     NULL, NULL, G_TYPE_NONE, 1, G_TYPE_INT);

    gtk_widget_class_set_css_name(widget_class, "tokenstrip");
    gtk_widget_class_set_accessible_role(widget_class, GTK_ACCESSIBLE_ROLE_LIST);
}

static void peer_token_strip_init(PeerTokenStrip *self)
{
    self->labels = g_ptr_array_new_with_free_func(g_free);
    self->styles = g_array_new(FALSE, FALSE, sizeof(PeerTokenCellStyle));
    self->loss = g_array_new(FALSE, FALSE, sizeof(float));
    self->position = -1;
    self->layout_width = -1;
    gtk_widget_set_focusable(GTK_WIDGET(self), TRUE);
    gtk_widget_set_overflow(GTK_WIDGET(self), GTK_OVERFLOW_HIDDEN);
    gtk_widget_set_has_tooltip(GTK_WIDGET(self), TRUE);

    GtkEventController *keys = gtk_event_controller_key_new();
    g_signal_connect(keys, "key-pressed", G_CALLBACK(on_key_pressed), self);
    gtk_widget_add_controller(GTK_WIDGET(self), keys);

    GtkGesture *click = gtk_gesture_click_new();
    g_signal_connect(click, "pressed", G_CALLBACK(on_pressed), self);
    gtk_widget_add_controller(GTK_WIDGET(self), GTK_EVENT_CONTROLLER(click));

    GtkEventController *focus = gtk_event_controller_focus_new();
    g_signal_connect_swapped(focus, "enter", G_CALLBACK(on_focus_changed), self);
    g_signal_connect_swapped(focus, "leave", G_CALLBACK(on_focus_changed), self);
    gtk_widget_add_controller(GTK_WIDGET(self), focus);

    g_signal_connect(self, "query-tooltip", G_CALLBACK(on_query_tooltip), self);

    gtk_accessible_update_property(GTK_ACCESSIBLE(self), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                   "Tokens of the text", -1);
}

GtkWidget *peer_token_strip_new(void)
{
    return g_object_new(PEER_TYPE_TOKEN_STRIP, NULL);
}
