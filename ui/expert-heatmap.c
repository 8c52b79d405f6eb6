#include "expert-heatmap.h"

#include <math.h>
#include <string.h>

#include "plot-widget-style.h"

#define MIN_WIDTH 280
#define MIN_HEIGHT 220
#define NATURAL_WIDTH 640
#define NATURAL_HEIGHT 520
/* Plot labels a little smaller than the body text, as GTK's caption style has them. */
#define FONT_SCALE 0.85
/* One notch of a mouse wheel; a touchpad's pixels zoom by the same amount per 40 pixels. */
#define WHEEL_ZOOM 1.25
#define PIXELS_PER_NOTCH 40.0
/* A press that moves further than this is a drag, not a click. */
#define CLICK_SLOP 4.0

typedef struct {
    char *name;
    float *values; /* (n, n) */
} Detail;

struct _PeerExpertHeatmap {
    GtkWidget parent_instance;

    int side;
    float *values;         /* (side, side) */
    GPtrArray *details;    /* Detail */
    gint32 *marked;
    gsize n_marked;
    char *title;
    char *value_label;
    char *message;
    ExpertHeatmapModel model;
    ExpertHeatmapView view;

    PlotStyle style;
    char *font_family;
    gboolean style_known;

    /* The grid's colours, one pixel per cell: rebuilt only when the data, the scale or the
     * style change. */
    cairo_surface_t *image;
    gboolean image_stale;
    /* The finished frame without the hover: rebuilt when the image, the view, the marks or the
     * size change. */
    GskRenderNode *frame_node;
    int node_width;
    int node_height;
    ExpertHeatmapLayout layout;
    gboolean layout_known;

    gboolean hovering;
    double pointer_x;
    double pointer_y;
    ExpertHeatmapView drag_start;
    gboolean dragged;
};

enum {
    PROP_0,
    PROP_SCALE,
    N_PROPS,
};

static GParamSpec *properties[N_PROPS];

enum {
    SIGNAL_EXPERT_ACTIVATED,
    N_SIGNALS,
};

static guint signals[N_SIGNALS];

G_DEFINE_ENUM_TYPE(PeerExpertHeatmapScale, peer_expert_heatmap_scale,
                   G_DEFINE_ENUM_VALUE(EXPERT_HEATMAP_LINEAR, "linear"),
                   G_DEFINE_ENUM_VALUE(EXPERT_HEATMAP_LOG, "log"))

G_DEFINE_FINAL_TYPE(PeerExpertHeatmap, peer_expert_heatmap, GTK_TYPE_WIDGET)

static void detail_free(gpointer data)
{
    Detail *detail = data;
    g_free(detail->name);
    g_free(detail->values);
    g_free(detail);
}

static void rebuild_model(PeerExpertHeatmap *self)
{
    self->model.side = self->values ? self->side : 0;
    self->model.values = self->values;
    self->model.title = self->title;
    self->model.value_label = self->value_label;
    self->model.message = self->message;
    self->model.marked = self->marked;
    self->model.n_marked = self->n_marked;
}

static void invalidate_frame(PeerExpertHeatmap *self)
{
    g_clear_pointer(&self->frame_node, gsk_render_node_unref);
    gtk_widget_queue_draw(GTK_WIDGET(self));
}

static void invalidate_image(PeerExpertHeatmap *self)
{
    self->image_stale = TRUE;
    invalidate_frame(self);
}

/* The grid's image for the current data: coloured anew in place when the side is the same, so a
 * live refresh of a 1024² grid allocates nothing. */
static void update_image(PeerExpertHeatmap *self)
{
    if (self->model.side < 1) {
        g_clear_pointer(&self->image, cairo_surface_destroy);
    } else if (!self->image ||
               (self->image_stale &&
                !expert_heatmap_image_update(self->image, &self->model, &self->style))) {
        g_clear_pointer(&self->image, cairo_surface_destroy);
        self->image = expert_heatmap_image_new(&self->model, &self->style);
    }
    self->image_stale = FALSE;
}

/* The theme's text colour and view background, so the map follows the dark style, and the
 * widget's font. */
static void update_style(PeerExpertHeatmap *self)
{
    plot_style_from_widget(&self->style, &self->font_family, GTK_WIDGET(self), FONT_SCALE);
    self->style_known = TRUE;
}

static void peer_expert_heatmap_css_changed(GtkWidget *widget, GtkCssStyleChange *change)
{
    PeerExpertHeatmap *self = PEER_EXPERT_HEATMAP(widget);
    GTK_WIDGET_CLASS(peer_expert_heatmap_parent_class)->css_changed(widget, change);
    PlotStyle before = self->style;
    g_autofree char *family_before = g_strdup(self->font_family);
    gboolean known_before = self->style_known;
    update_style(self);
    if (!known_before || !plot_color_equal(before.background, self->style.background) ||
        !plot_color_equal(before.foreground, self->style.foreground))
        invalidate_image(self);
    else if (!plot_color_equal(before.grid, self->style.grid) ||
             before.font_size != self->style.font_size ||
             g_strcmp0(family_before, self->font_family) != 0)
        invalidate_frame(self);
}

static void peer_expert_heatmap_measure(GtkWidget *widget, GtkOrientation orientation,
                                        int for_size, int *minimum, int *natural,
                                        int *minimum_baseline, int *natural_baseline)
{
    gboolean horizontal = orientation == GTK_ORIENTATION_HORIZONTAL;
    *minimum = horizontal ? MIN_WIDTH : MIN_HEIGHT;
    *natural = horizontal ? NATURAL_WIDTH : NATURAL_HEIGHT;
}

static GskRenderNode *render_frame(PeerExpertHeatmap *self, int width, int height,
                                   const graphene_rect_t *bounds)
{
    int scale = gtk_widget_get_scale_factor(GTK_WIDGET(self));
    update_image(self);
    cairo_surface_t *surface =
        cairo_image_surface_create(CAIRO_FORMAT_ARGB32, width * scale, height * scale);
    if (cairo_surface_status(surface) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(surface);
        return NULL;
    }
    cairo_surface_set_device_scale(surface, scale, scale);
    cairo_t *cr = cairo_create(surface);
    expert_heatmap_render(cr, width, height, &self->model, &self->view, &self->style,
                          self->image, &self->layout);
    self->layout_known = TRUE;
    cairo_destroy(cr);
    cairo_surface_flush(surface);

    /* Cairo's ARGB32 is premultiplied B, G, R, A in memory on little-endian machines, which is
     * GDK_MEMORY_DEFAULT. */
    GBytes *bytes = g_bytes_new_with_free_func(
        cairo_image_surface_get_data(surface),
        (gsize)cairo_image_surface_get_stride(surface) * (gsize)(height * scale),
        (GDestroyNotify)cairo_surface_destroy, surface);
    GdkTexture *texture = gdk_memory_texture_new(width * scale, height * scale,
                                                 GDK_MEMORY_DEFAULT, bytes,
                                                 (gsize)cairo_image_surface_get_stride(surface));
    g_bytes_unref(bytes);
    GskRenderNode *node = gsk_texture_node_new(texture, bounds);
    g_object_unref(texture);
    return node;
}

static void format_detail(float value, char *buffer, gsize size)
{
    if (isnan(value))
        g_strlcpy(buffer, "—", size);
    else if (value == floorf(value) && fabsf(value) < 1e9f)
        g_snprintf(buffer, size, "%.0f", value);
    else if (fabsf(value) >= 100.0f)
        g_snprintf(buffer, size, "%.1f", value);
    else
        g_snprintf(buffer, size, "%.4g", value);
}

static void draw_hover(PeerExpertHeatmap *self, GtkSnapshot *snapshot, int width, int height,
                       const graphene_rect_t *bounds)
{
    int a, b;
    if (!self->layout_known ||
        !expert_heatmap_layout_cell_at(&self->layout, self->pointer_x, self->pointer_y, &a, &b))
        return;
    gsize cell = (gsize)a * self->side + b;
    GPtrArray *lines = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(lines, g_strdup_printf("Expert %zu · (a %d, b %d)", cell, a, b));
    char number[64];
    if (self->details->len == 0) {
        format_detail(self->values[cell], number, sizeof number);
        g_ptr_array_add(lines, g_strdup_printf("%s %s",
                                               self->value_label ? self->value_label : "value",
                                               number));
    }
    for (guint i = 0; i < self->details->len; i++) {
        const Detail *detail = g_ptr_array_index(self->details, i);
        format_detail(detail->values[cell], number, sizeof number);
        g_ptr_array_add(lines, g_strdup_printf("%s %s", detail->name, number));
    }
    cairo_t *cr = gtk_snapshot_append_cairo(snapshot, bounds);
    expert_heatmap_render_hover(cr, width, height, &self->layout, &self->style, a, b,
                                (const char *const *)lines->pdata, lines->len, self->pointer_x,
                                self->pointer_y);
    cairo_destroy(cr);
    g_ptr_array_unref(lines);
}

static void peer_expert_heatmap_snapshot(GtkWidget *widget, GtkSnapshot *snapshot)
{
    PeerExpertHeatmap *self = PEER_EXPERT_HEATMAP(widget);
    int width = gtk_widget_get_width(widget);
    int height = gtk_widget_get_height(widget);
    if (width <= 0 || height <= 0)
        return;
    if (!self->style_known)
        update_style(self);
    graphene_rect_t bounds = GRAPHENE_RECT_INIT(0.0f, 0.0f, (float)width, (float)height);
    if (!self->frame_node || self->node_width != width || self->node_height != height) {
        g_clear_pointer(&self->frame_node, gsk_render_node_unref);
        self->frame_node = render_frame(self, width, height, &bounds);
        self->node_width = width;
        self->node_height = height;
    }
    if (self->frame_node)
        gtk_snapshot_append_node(snapshot, self->frame_node);
    if (self->hovering && self->model.side > 0)
        draw_hover(self, snapshot, width, height, &bounds);
}

/* ---- input ----------------------------------------------------------------------------------- */

static void on_pointer_motion(GtkEventControllerMotion *controller, double x, double y,
                              PeerExpertHeatmap *self)
{
    self->hovering = TRUE;
    self->pointer_x = x;
    self->pointer_y = y;
    gtk_widget_queue_draw(GTK_WIDGET(self));
}

static void on_pointer_leave(GtkEventControllerMotion *controller, PeerExpertHeatmap *self)
{
    self->hovering = FALSE;
    gtk_widget_queue_draw(GTK_WIDGET(self));
}

static gboolean on_scroll(GtkEventControllerScroll *controller, double dx, double dy,
                          PeerExpertHeatmap *self)
{
    if (self->model.side < 1 || !self->layout_known || dy == 0.0)
        return FALSE;
    double notches = gtk_event_controller_scroll_get_unit(controller) == GDK_SCROLL_UNIT_WHEEL
                         ? dy
                         : dy / PIXELS_PER_NOTCH;
    double column, row;
    const ExpertHeatmapLayout *layout = &self->layout;
    gboolean inside = self->pointer_x >= layout->x && self->pointer_x < layout->x + layout->size &&
                      self->pointer_y >= layout->y && self->pointer_y < layout->y + layout->size;
    if (self->hovering && inside) {
        expert_heatmap_layout_to_cells(layout, self->pointer_x, self->pointer_y, &column, &row);
    } else {
        column = self->view.x0 + self->view.span / 2.0;
        row = self->view.y0 + self->view.span / 2.0;
    }
    ExpertHeatmapView view = self->view;
    expert_heatmap_view_zoom(&view, self->side, pow(WHEEL_ZOOM, -notches), column, row);
    peer_expert_heatmap_set_view(self, &view);
    return TRUE;
}

static void on_drag_begin(GtkGestureDrag *gesture, double x, double y, PeerExpertHeatmap *self)
{
    self->drag_start = self->view;
    self->dragged = FALSE;
}

static void on_drag_update(GtkGestureDrag *gesture, double offset_x, double offset_y,
                           PeerExpertHeatmap *self)
{
    if (!self->layout_known || self->model.side < 1 || self->layout.size <= 0.0)
        return;
    if (hypot(offset_x, offset_y) > CLICK_SLOP)
        self->dragged = TRUE;
    if (!self->dragged)
        return;
    double cells_per_pixel = self->drag_start.span / self->layout.size;
    ExpertHeatmapView view = self->drag_start;
    expert_heatmap_view_pan(&view, self->side, -offset_x * cells_per_pixel,
                            -offset_y * cells_per_pixel);
    peer_expert_heatmap_set_view(self, &view);
}

static void on_click_released(GtkGestureClick *gesture, int n_press, double x, double y,
                              PeerExpertHeatmap *self)
{
    if (self->dragged || n_press != 1)
        return;
    gint32 expert = peer_expert_heatmap_expert_at(self, x, y);
    if (expert < 0)
        return;
    peer_expert_heatmap_set_selected(self, expert);
    g_signal_emit(self, signals[SIGNAL_EXPERT_ACTIVATED], 0, (int)expert);
}

/* ---- GObject --------------------------------------------------------------------------------- */

static void peer_expert_heatmap_get_property(GObject *object, guint prop_id, GValue *value,
                                             GParamSpec *pspec)
{
    PeerExpertHeatmap *self = PEER_EXPERT_HEATMAP(object);
    switch (prop_id) {
    case PROP_SCALE:
        g_value_set_enum(value, self->model.scale);
        break;
    default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
    }
}

static void peer_expert_heatmap_set_property(GObject *object, guint prop_id, const GValue *value,
                                             GParamSpec *pspec)
{
    PeerExpertHeatmap *self = PEER_EXPERT_HEATMAP(object);
    switch (prop_id) {
    case PROP_SCALE:
        peer_expert_heatmap_set_scale(self, g_value_get_enum(value));
        break;
    default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
    }
}

static void peer_expert_heatmap_dispose(GObject *object)
{
    PeerExpertHeatmap *self = PEER_EXPERT_HEATMAP(object);
    g_clear_pointer(&self->frame_node, gsk_render_node_unref);
    g_clear_pointer(&self->image, cairo_surface_destroy);
    G_OBJECT_CLASS(peer_expert_heatmap_parent_class)->dispose(object);
}

static void peer_expert_heatmap_finalize(GObject *object)
{
    PeerExpertHeatmap *self = PEER_EXPERT_HEATMAP(object);
    g_free(self->values);
    g_ptr_array_unref(self->details);
    g_free(self->marked);
    g_free(self->title);
    g_free(self->value_label);
    g_free(self->message);
    g_free(self->font_family);
    G_OBJECT_CLASS(peer_expert_heatmap_parent_class)->finalize(object);
}

static void peer_expert_heatmap_class_init(PeerExpertHeatmapClass *klass)
{
    GObjectClass *object_class = G_OBJECT_CLASS(klass);
    GtkWidgetClass *widget_class = GTK_WIDGET_CLASS(klass);

    object_class->get_property = peer_expert_heatmap_get_property;
    object_class->set_property = peer_expert_heatmap_set_property;
    object_class->dispose = peer_expert_heatmap_dispose;
    object_class->finalize = peer_expert_heatmap_finalize;

    widget_class->measure = peer_expert_heatmap_measure;
    widget_class->snapshot = peer_expert_heatmap_snapshot;
    widget_class->css_changed = peer_expert_heatmap_css_changed;

    properties[PROP_SCALE] =
        g_param_spec_enum("scale", NULL, NULL, PEER_TYPE_EXPERT_HEATMAP_SCALE,
                          EXPERT_HEATMAP_LINEAR,
                          G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
    g_object_class_install_properties(object_class, N_PROPS, properties);

    /* A cell was clicked: the expert's id, a·n + b. */
    signals[SIGNAL_EXPERT_ACTIVATED] =
        g_signal_new("expert-activated", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0, NULL,
                     NULL, NULL, G_TYPE_NONE, 1, G_TYPE_INT);

    gtk_widget_class_set_css_name(widget_class, "expertheatmap");
    gtk_widget_class_set_accessible_role(widget_class, GTK_ACCESSIBLE_ROLE_IMG);
}

static void peer_expert_heatmap_init(PeerExpertHeatmap *self)
{
    self->details = g_ptr_array_new_with_free_func(detail_free);
    self->model.selected = -1;
    expert_heatmap_view_reset(&self->view, 1);
    rebuild_model(self);

    GtkEventController *motion = gtk_event_controller_motion_new();
    g_signal_connect(motion, "enter", G_CALLBACK(on_pointer_motion), self);
    g_signal_connect(motion, "motion", G_CALLBACK(on_pointer_motion), self);
    g_signal_connect(motion, "leave", G_CALLBACK(on_pointer_leave), self);
    gtk_widget_add_controller(GTK_WIDGET(self), motion);

    GtkEventController *scroll =
        gtk_event_controller_scroll_new(GTK_EVENT_CONTROLLER_SCROLL_VERTICAL);
    g_signal_connect(scroll, "scroll", G_CALLBACK(on_scroll), self);
    gtk_widget_add_controller(GTK_WIDGET(self), scroll);

    GtkGesture *drag = gtk_gesture_drag_new();
    g_signal_connect(drag, "drag-begin", G_CALLBACK(on_drag_begin), self);
    g_signal_connect(drag, "drag-update", G_CALLBACK(on_drag_update), self);
    gtk_widget_add_controller(GTK_WIDGET(self), GTK_EVENT_CONTROLLER(drag));

    GtkGesture *click = gtk_gesture_click_new();
    g_signal_connect(click, "released", G_CALLBACK(on_click_released), self);
    gtk_widget_add_controller(GTK_WIDGET(self), GTK_EVENT_CONTROLLER(click));
    /* The drag and the click both see every press: a press that moved is only a drag. */
    gtk_gesture_group(drag, click);

    gtk_widget_set_cursor_from_name(GTK_WIDGET(self), "crosshair");
    gtk_accessible_update_property(GTK_ACCESSIBLE(self), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                   "Expert heat map", -1);
}

GtkWidget *peer_expert_heatmap_new(void)
{
    return g_object_new(PEER_TYPE_EXPERT_HEATMAP, NULL);
}

/* ---- data ------------------------------------------------------------------------------------ */

void peer_expert_heatmap_set_grid(PeerExpertHeatmap *self, int side, const float *values,
                                  gboolean zero_is_empty)
{
    g_return_if_fail(PEER_IS_EXPERT_HEATMAP(self));
    g_return_if_fail(side >= 0);
    g_return_if_fail(side == 0 || values != NULL);
    gsize cells = (gsize)side * side;
    if (side != self->side) {
        self->layout_known = FALSE;
        g_ptr_array_set_size(self->details, 0);
        expert_heatmap_view_reset(&self->view, side);
        if (self->model.selected >= 0 && (gsize)self->model.selected >= cells)
            self->model.selected = -1;
    }
    g_free(self->values);
    self->values = side > 0 ? g_memdup2(values, cells * sizeof *values) : NULL;
    self->side = side;
    self->model.zero_is_empty = zero_is_empty;
    rebuild_model(self);
    invalidate_image(self);
}

int peer_expert_heatmap_get_side(PeerExpertHeatmap *self)
{
    g_return_val_if_fail(PEER_IS_EXPERT_HEATMAP(self), 0);
    return self->values ? self->side : 0;
}

void peer_expert_heatmap_set_details(PeerExpertHeatmap *self, guint n_details,
                                     const char *const *names, const float *const *values)
{
    g_return_if_fail(PEER_IS_EXPERT_HEATMAP(self));
    g_ptr_array_set_size(self->details, 0);
    gsize cells = (gsize)self->side * self->side;
    for (guint i = 0; i < n_details && cells > 0; i++) {
        if (!values[i])
            continue;
        Detail *detail = g_new(Detail, 1);
        detail->name = g_strdup(names[i]);
        detail->values = g_memdup2(values[i], cells * sizeof(float));
        g_ptr_array_add(self->details, detail);
    }
    if (self->hovering)
        gtk_widget_queue_draw(GTK_WIDGET(self));
}

static void replace_string(PeerExpertHeatmap *self, char **field, const char *value)
{
    if (g_strcmp0(*field, value) == 0)
        return;
    g_free(*field);
    *field = g_strdup(value);
    rebuild_model(self);
    invalidate_frame(self);
}

void peer_expert_heatmap_set_message(PeerExpertHeatmap *self, const char *message)
{
    g_return_if_fail(PEER_IS_EXPERT_HEATMAP(self));
    replace_string(self, &self->message, message);
}

void peer_expert_heatmap_set_title(PeerExpertHeatmap *self, const char *title)
{
    g_return_if_fail(PEER_IS_EXPERT_HEATMAP(self));
    replace_string(self, &self->title, title);
}

void peer_expert_heatmap_set_value_label(PeerExpertHeatmap *self, const char *label)
{
    g_return_if_fail(PEER_IS_EXPERT_HEATMAP(self));
    replace_string(self, &self->value_label, label);
}

ExpertHeatmapScale peer_expert_heatmap_get_scale(PeerExpertHeatmap *self)
{
    g_return_val_if_fail(PEER_IS_EXPERT_HEATMAP(self), EXPERT_HEATMAP_LINEAR);
    return self->model.scale;
}

void peer_expert_heatmap_set_scale(PeerExpertHeatmap *self, ExpertHeatmapScale scale)
{
    g_return_if_fail(PEER_IS_EXPERT_HEATMAP(self));
    g_return_if_fail((unsigned)scale <= EXPERT_HEATMAP_LOG);
    if (self->model.scale == scale)
        return;
    self->model.scale = scale;
    invalidate_image(self);
    g_object_notify_by_pspec(G_OBJECT(self), properties[PROP_SCALE]);
}

void peer_expert_heatmap_set_marked(PeerExpertHeatmap *self, const gint32 *experts, gsize n)
{
    g_return_if_fail(PEER_IS_EXPERT_HEATMAP(self));
    g_return_if_fail(n == 0 || experts != NULL);
    if (n == self->n_marked && (n == 0 || memcmp(experts, self->marked, n * sizeof *experts) == 0))
        return;
    g_free(self->marked);
    self->marked = n > 0 ? g_memdup2(experts, n * sizeof *experts) : NULL;
    self->n_marked = n;
    rebuild_model(self);
    invalidate_frame(self);
}

void peer_expert_heatmap_set_selected(PeerExpertHeatmap *self, gint32 expert)
{
    g_return_if_fail(PEER_IS_EXPERT_HEATMAP(self));
    if (expert < 0)
        expert = -1;
    if (self->model.selected == expert)
        return;
    self->model.selected = expert;
    invalidate_frame(self);
}

gint32 peer_expert_heatmap_get_selected(PeerExpertHeatmap *self)
{
    g_return_val_if_fail(PEER_IS_EXPERT_HEATMAP(self), -1);
    return self->model.selected;
}

void peer_expert_heatmap_get_view(PeerExpertHeatmap *self, ExpertHeatmapView *view)
{
    g_return_if_fail(PEER_IS_EXPERT_HEATMAP(self));
    *view = self->view;
}

void peer_expert_heatmap_set_view(PeerExpertHeatmap *self, const ExpertHeatmapView *view)
{
    g_return_if_fail(PEER_IS_EXPERT_HEATMAP(self));
    ExpertHeatmapView clamped = *view;
    expert_heatmap_view_clamp(&clamped, self->side);
    if (memcmp(&clamped, &self->view, sizeof clamped) == 0)
        return;
    self->view = clamped;
    /* The grid's square stays where it is: only the cells in it change. */
    self->layout.view = clamped;
    invalidate_frame(self);
}

void peer_expert_heatmap_reset_view(PeerExpertHeatmap *self)
{
    g_return_if_fail(PEER_IS_EXPERT_HEATMAP(self));
    ExpertHeatmapView whole;
    expert_heatmap_view_reset(&whole, self->side);
    peer_expert_heatmap_set_view(self, &whole);
}

gint32 peer_expert_heatmap_expert_at(PeerExpertHeatmap *self, double x, double y)
{
    g_return_val_if_fail(PEER_IS_EXPERT_HEATMAP(self), -1);
    int a, b;
    if (!self->layout_known || self->model.side < 1 ||
        !expert_heatmap_layout_cell_at(&self->layout, x, y, &a, &b))
        return -1;
    return (gint32)(a * self->side + b);
}

const ExpertHeatmapModel *peer_expert_heatmap_get_model(PeerExpertHeatmap *self)
{
    g_return_val_if_fail(PEER_IS_EXPERT_HEATMAP(self), NULL);
    return &self->model;
}

const PlotStyle *peer_expert_heatmap_get_style(PeerExpertHeatmap *self)
{
    g_return_val_if_fail(PEER_IS_EXPERT_HEATMAP(self), NULL);
    if (!self->style_known)
        update_style(self);
    return &self->style;
}

const ExpertHeatmapLayout *peer_expert_heatmap_get_layout(PeerExpertHeatmap *self)
{
    g_return_val_if_fail(PEER_IS_EXPERT_HEATMAP(self), NULL);
    return &self->layout;
}
