#include "loss-plot.h"

#include <math.h>

#include "plot-widget-style.h"

#define MIN_WIDTH 320
#define MIN_HEIGHT 200
#define NATURAL_WIDTH 640
#define NATURAL_HEIGHT 400
#define MAX_SMOOTHING 0.999
/* Plot labels a little smaller than the body text, as GTK's caption style has them. */
#define FONT_SCALE 0.85

typedef struct {
    guint id;
    char *name;
    unsigned color;
    gboolean visible;
    GArray *steps; /* double, training points */
    GArray *tokens;
    GArray *flops;
    GArray *loss;
    GArray *val_steps; /* double, validation points */
    GArray *val_tokens;
    GArray *val_flops;
    GArray *val_loss;
} PlotRun;

struct _PeerLossPlot {
    GtkWidget parent_instance;

    GPtrArray *runs;        /* PlotRun, in the order they were added */
    LossPlotSeries *series; /* (runs->len) views into runs, rebuilt whenever they change */
    LossPlotModel model;
    PlotStyle style;
    char *font_family;
    gboolean style_known;

    /* The plot without the hover. Hovering only redraws the crosshair over it; the data, the
     * properties, the size or the theme changing draws it again. */
    GskRenderNode *plot_node;
    int node_width;
    int node_height;
    LossPlotLayout layout;

    gboolean hovering;
    double pointer_x;
    double pointer_y;
};

enum {
    PROP_0,
    PROP_X_AXIS,
    PROP_LOG_X,
    PROP_LOG_Y,
    PROP_SMOOTHING,
    N_PROPS,
};

static GParamSpec *properties[N_PROPS];

G_DEFINE_ENUM_TYPE(PeerLossPlotXAxis, peer_loss_plot_x_axis,
                   G_DEFINE_ENUM_VALUE(LOSS_PLOT_X_STEPS, "steps"),
                   G_DEFINE_ENUM_VALUE(LOSS_PLOT_X_TOKENS, "tokens"),
                   G_DEFINE_ENUM_VALUE(LOSS_PLOT_X_FLOPS, "flops"))

G_DEFINE_FINAL_TYPE(PeerLossPlot, peer_loss_plot, GTK_TYPE_WIDGET)

static GArray *double_array_new(void)
{
    return g_array_new(FALSE, FALSE, sizeof(double));
}

static void plot_run_free(gpointer data)
{
    PlotRun *run = data;
    g_free(run->name);
    GArray **arrays[] = {&run->steps,     &run->tokens,     &run->flops,     &run->loss,
                         &run->val_steps, &run->val_tokens, &run->val_flops, &run->val_loss};
    for (gsize i = 0; i < G_N_ELEMENTS(arrays); i++)
        g_array_unref(*arrays[i]);
    g_free(run);
}

/* A missing x array becomes NaN, which the renderer leaves out, so the arrays of a run stay the
 * same length whatever the caller has. */
static void append_values(GArray *array, const double *values, gsize n)
{
    if (values) {
        g_array_append_vals(array, values, (guint)n);
        return;
    }
    double missing = NAN;
    for (gsize i = 0; i < n; i++)
        g_array_append_val(array, missing);
}

static PlotRun *find_run(PeerLossPlot *self, guint id)
{
    for (guint i = 0; i < self->runs->len; i++) {
        PlotRun *run = g_ptr_array_index(self->runs, i);
        if (run->id == id)
            return run;
    }
    return NULL;
}

static unsigned first_free_color(PeerLossPlot *self)
{
    for (unsigned color = 0; color < PLOT_PALETTE_SIZE; color++) {
        gboolean used = FALSE;
        for (guint i = 0; i < self->runs->len && !used; i++)
            used = ((PlotRun *)g_ptr_array_index(self->runs, i))->color == color;
        if (!used)
            return color;
    }
    return self->runs->len % PLOT_PALETTE_SIZE;
}

static const double *array_data(GArray *array)
{
    return (const double *)(void *)array->data;
}

static void rebuild_model(PeerLossPlot *self)
{
    self->series = g_renew(LossPlotSeries, self->series, MAX(self->runs->len, 1));
    for (guint i = 0; i < self->runs->len; i++) {
        PlotRun *run = g_ptr_array_index(self->runs, i);
        self->series[i] = (LossPlotSeries){
            .name = run->name,
            .color = run->color,
            .visible = run->visible,
            .n_train = run->loss->len,
            .train_steps = array_data(run->steps),
            .train_tokens = array_data(run->tokens),
            .train_flops = array_data(run->flops),
            .train_loss = array_data(run->loss),
            .n_val = run->val_loss->len,
            .val_steps = array_data(run->val_steps),
            .val_tokens = array_data(run->val_tokens),
            .val_flops = array_data(run->val_flops),
            .val_loss = array_data(run->val_loss),
        };
    }
    self->model.series = self->series;
    self->model.n_series = self->runs->len;
}

static void invalidate_plot(PeerLossPlot *self)
{
    g_clear_pointer(&self->plot_node, gsk_render_node_unref);
    gtk_widget_queue_draw(GTK_WIDGET(self));
}

static void data_changed(PeerLossPlot *self)
{
    rebuild_model(self);
    invalidate_plot(self);
}

/* The theme's text colour and view background, so the plot follows the dark style, and the
 * widget's font. */
static void update_style(PeerLossPlot *self)
{
    plot_style_from_widget(&self->style, &self->font_family, GTK_WIDGET(self), FONT_SCALE);
    self->style_known = TRUE;
}

/* The pointer entering or leaving changes the widget's CSS state too; only a change of colour or
 * font draws the plot again. */
static void peer_loss_plot_css_changed(GtkWidget *widget, GtkCssStyleChange *change)
{
    PeerLossPlot *self = PEER_LOSS_PLOT(widget);
    GTK_WIDGET_CLASS(peer_loss_plot_parent_class)->css_changed(widget, change);
    PlotStyle before = self->style;
    g_autofree char *family_before = g_strdup(self->font_family);
    gboolean known_before = self->style_known;
    update_style(self);
    if (!known_before || !plot_color_equal(before.foreground, self->style.foreground) ||
        !plot_color_equal(before.background, self->style.background) ||
        !plot_color_equal(before.grid, self->style.grid) ||
        before.font_size != self->style.font_size ||
        g_strcmp0(family_before, self->font_family) != 0)
        invalidate_plot(self);
}

static void peer_loss_plot_measure(GtkWidget *widget, GtkOrientation orientation, int for_size,
                                   int *minimum, int *natural, int *minimum_baseline,
                                   int *natural_baseline)
{
    gboolean horizontal = orientation == GTK_ORIENTATION_HORIZONTAL;
    *minimum = horizontal ? MIN_WIDTH : MIN_HEIGHT;
    *natural = horizontal ? NATURAL_WIDTH : NATURAL_HEIGHT;
}

/* The plot rasterised once per change of data, size or style, as a texture: a cairo node would
 * be replayed on every frame that redraws the widget, thousands of segments each time. */
static GskRenderNode *render_plot_texture(PeerLossPlot *self, int width, int height,
                                          const graphene_rect_t *bounds)
{
    int scale = gtk_widget_get_scale_factor(GTK_WIDGET(self));
    cairo_surface_t *surface =
        cairo_image_surface_create(CAIRO_FORMAT_ARGB32, width * scale, height * scale);
    if (cairo_surface_status(surface) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(surface);
        return NULL;
    }
    cairo_surface_set_device_scale(surface, scale, scale);
    cairo_t *cr = cairo_create(surface);
    loss_plot_render(cr, width, height, &self->model, &self->style, &self->layout);
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

static void peer_loss_plot_snapshot(GtkWidget *widget, GtkSnapshot *snapshot)
{
    PeerLossPlot *self = PEER_LOSS_PLOT(widget);
    int width = gtk_widget_get_width(widget);
    int height = gtk_widget_get_height(widget);
    if (width <= 0 || height <= 0)
        return;
    if (!self->style_known)
        update_style(self);

    graphene_rect_t bounds = GRAPHENE_RECT_INIT(0.0f, 0.0f, (float)width, (float)height);
    if (!self->plot_node || self->node_width != width || self->node_height != height) {
        g_clear_pointer(&self->plot_node, gsk_render_node_unref);
        self->plot_node = render_plot_texture(self, width, height, &bounds);
        self->node_width = width;
        self->node_height = height;
    }
    if (self->plot_node)
        gtk_snapshot_append_node(snapshot, self->plot_node);

    if (self->hovering) {
        cairo_t *cr = gtk_snapshot_append_cairo(snapshot, &bounds);
        loss_plot_render_hover(cr, width, height, &self->model, &self->style, &self->layout,
                               self->pointer_x, self->pointer_y);
        cairo_destroy(cr);
    }
}

static void on_pointer_motion(GtkEventControllerMotion *controller, double x, double y,
                              PeerLossPlot *self)
{
    self->hovering = TRUE;
    self->pointer_x = x;
    self->pointer_y = y;
    gtk_widget_queue_draw(GTK_WIDGET(self));
}

static void on_pointer_leave(GtkEventControllerMotion *controller, PeerLossPlot *self)
{
    self->hovering = FALSE;
    gtk_widget_queue_draw(GTK_WIDGET(self));
}

static void peer_loss_plot_get_property(GObject *object, guint prop_id, GValue *value,
                                        GParamSpec *pspec)
{
    PeerLossPlot *self = PEER_LOSS_PLOT(object);
    switch (prop_id) {
    case PROP_X_AXIS:
        g_value_set_enum(value, self->model.x_axis);
        break;
    case PROP_LOG_X:
        g_value_set_boolean(value, self->model.log_x);
        break;
    case PROP_LOG_Y:
        g_value_set_boolean(value, self->model.log_y);
        break;
    case PROP_SMOOTHING:
        g_value_set_double(value, self->model.smoothing);
        break;
    default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
    }
}

static void peer_loss_plot_set_property(GObject *object, guint prop_id, const GValue *value,
                                        GParamSpec *pspec)
{
    PeerLossPlot *self = PEER_LOSS_PLOT(object);
    switch (prop_id) {
    case PROP_X_AXIS:
        peer_loss_plot_set_x_axis(self, g_value_get_enum(value));
        break;
    case PROP_LOG_X:
        peer_loss_plot_set_log_x(self, g_value_get_boolean(value));
        break;
    case PROP_LOG_Y:
        peer_loss_plot_set_log_y(self, g_value_get_boolean(value));
        break;
    case PROP_SMOOTHING:
        peer_loss_plot_set_smoothing(self, g_value_get_double(value));
        break;
    default:
        G_OBJECT_WARN_INVALID_PROPERTY_ID(object, prop_id, pspec);
    }
}

static void peer_loss_plot_dispose(GObject *object)
{
    PeerLossPlot *self = PEER_LOSS_PLOT(object);
    g_clear_pointer(&self->plot_node, gsk_render_node_unref);
    G_OBJECT_CLASS(peer_loss_plot_parent_class)->dispose(object);
}

static void peer_loss_plot_finalize(GObject *object)
{
    PeerLossPlot *self = PEER_LOSS_PLOT(object);
    g_ptr_array_unref(self->runs);
    g_free(self->series);
    g_free(self->font_family);
    G_OBJECT_CLASS(peer_loss_plot_parent_class)->finalize(object);
}

static void peer_loss_plot_class_init(PeerLossPlotClass *klass)
{
    GObjectClass *object_class = G_OBJECT_CLASS(klass);
    GtkWidgetClass *widget_class = GTK_WIDGET_CLASS(klass);

    object_class->get_property = peer_loss_plot_get_property;
    object_class->set_property = peer_loss_plot_set_property;
    object_class->dispose = peer_loss_plot_dispose;
    object_class->finalize = peer_loss_plot_finalize;

    widget_class->measure = peer_loss_plot_measure;
    widget_class->snapshot = peer_loss_plot_snapshot;
    widget_class->css_changed = peer_loss_plot_css_changed;

    GParamFlags flags = G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS;
    properties[PROP_X_AXIS] = g_param_spec_enum("x-axis", NULL, NULL, PEER_TYPE_LOSS_PLOT_X_AXIS,
                                                LOSS_PLOT_X_STEPS, flags);
    properties[PROP_LOG_X] = g_param_spec_boolean("log-x", NULL, NULL, FALSE, flags);
    properties[PROP_LOG_Y] = g_param_spec_boolean("log-y", NULL, NULL, FALSE, flags);
    properties[PROP_SMOOTHING] =
        g_param_spec_double("smoothing", NULL, NULL, 0.0, MAX_SMOOTHING, 0.0, flags);
    g_object_class_install_properties(object_class, N_PROPS, properties);

    gtk_widget_class_set_css_name(widget_class, "lossplot");
    gtk_widget_class_set_accessible_role(widget_class, GTK_ACCESSIBLE_ROLE_IMG);
}

static void peer_loss_plot_init(PeerLossPlot *self)
{
    self->runs = g_ptr_array_new_with_free_func(plot_run_free);
    rebuild_model(self);

    GtkEventController *motion = gtk_event_controller_motion_new();
    g_signal_connect(motion, "enter", G_CALLBACK(on_pointer_motion), self);
    g_signal_connect(motion, "motion", G_CALLBACK(on_pointer_motion), self);
    g_signal_connect(motion, "leave", G_CALLBACK(on_pointer_leave), self);
    gtk_widget_add_controller(GTK_WIDGET(self), motion);

    gtk_accessible_update_property(GTK_ACCESSIBLE(self), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                   "Loss curves", -1);
}

GtkWidget *peer_loss_plot_new(void)
{
    return g_object_new(PEER_TYPE_LOSS_PLOT, NULL);
}

void peer_loss_plot_set_series(PeerLossPlot *self, guint id, const char *name, gsize n,
                               const double *steps, const double *tokens, const double *flops,
                               const double *loss)
{
    g_return_if_fail(PEER_IS_LOSS_PLOT(self));
    g_return_if_fail(n == 0 || loss != NULL);

    PlotRun *run = find_run(self, id);
    if (!run) {
        run = g_new0(PlotRun, 1);
        run->id = id;
        run->color = first_free_color(self);
        run->visible = TRUE;
        GArray **arrays[] = {&run->steps,     &run->tokens,     &run->flops,     &run->loss,
                             &run->val_steps, &run->val_tokens, &run->val_flops, &run->val_loss};
        for (gsize i = 0; i < G_N_ELEMENTS(arrays); i++)
            *arrays[i] = double_array_new();
        g_ptr_array_add(self->runs, run);
    }
    g_free(run->name);
    run->name = g_strdup(name);
    g_array_set_size(run->steps, 0);
    g_array_set_size(run->tokens, 0);
    g_array_set_size(run->flops, 0);
    g_array_set_size(run->loss, 0);
    append_values(run->steps, steps, n);
    append_values(run->tokens, tokens, n);
    append_values(run->flops, flops, n);
    append_values(run->loss, loss, n);
    data_changed(self);
}

void peer_loss_plot_append_points(PeerLossPlot *self, guint id, gsize n, const double *steps,
                                  const double *tokens, const double *flops, const double *loss)
{
    g_return_if_fail(PEER_IS_LOSS_PLOT(self));
    g_return_if_fail(n == 0 || loss != NULL);
    PlotRun *run = find_run(self, id);
    g_return_if_fail(run != NULL);
    if (n == 0)
        return;
    append_values(run->steps, steps, n);
    append_values(run->tokens, tokens, n);
    append_values(run->flops, flops, n);
    append_values(run->loss, loss, n);
    data_changed(self);
}

void peer_loss_plot_set_validation(PeerLossPlot *self, guint id, gsize n, const double *steps,
                                   const double *tokens, const double *flops, const double *loss)
{
    g_return_if_fail(PEER_IS_LOSS_PLOT(self));
    g_return_if_fail(n == 0 || loss != NULL);
    PlotRun *run = find_run(self, id);
    g_return_if_fail(run != NULL);
    g_array_set_size(run->val_steps, 0);
    g_array_set_size(run->val_tokens, 0);
    g_array_set_size(run->val_flops, 0);
    g_array_set_size(run->val_loss, 0);
    append_values(run->val_steps, steps, n);
    append_values(run->val_tokens, tokens, n);
    append_values(run->val_flops, flops, n);
    append_values(run->val_loss, loss, n);
    data_changed(self);
}

void peer_loss_plot_set_series_visible(PeerLossPlot *self, guint id, gboolean visible)
{
    g_return_if_fail(PEER_IS_LOSS_PLOT(self));
    PlotRun *run = find_run(self, id);
    g_return_if_fail(run != NULL);
    visible = !!visible;
    if (run->visible == visible)
        return;
    run->visible = visible;
    data_changed(self);
}

gboolean peer_loss_plot_get_series_visible(PeerLossPlot *self, guint id)
{
    g_return_val_if_fail(PEER_IS_LOSS_PLOT(self), FALSE);
    PlotRun *run = find_run(self, id);
    return run && run->visible;
}

gboolean peer_loss_plot_get_series_color(PeerLossPlot *self, guint id, GdkRGBA *color)
{
    g_return_val_if_fail(PEER_IS_LOSS_PLOT(self), FALSE);
    PlotRun *run = find_run(self, id);
    if (!run)
        return FALSE;
    PlotColor c = plot_palette_get(run->color);
    *color = (GdkRGBA){(float)c.red, (float)c.green, (float)c.blue, (float)c.alpha};
    return TRUE;
}

void peer_loss_plot_remove_series(PeerLossPlot *self, guint id)
{
    g_return_if_fail(PEER_IS_LOSS_PLOT(self));
    PlotRun *run = find_run(self, id);
    if (!run)
        return;
    g_ptr_array_remove(self->runs, run);
    data_changed(self);
}

gboolean peer_loss_plot_has_series(PeerLossPlot *self, guint id)
{
    g_return_val_if_fail(PEER_IS_LOSS_PLOT(self), FALSE);
    return find_run(self, id) != NULL;
}

LossPlotXAxis peer_loss_plot_get_x_axis(PeerLossPlot *self)
{
    g_return_val_if_fail(PEER_IS_LOSS_PLOT(self), LOSS_PLOT_X_STEPS);
    return self->model.x_axis;
}

void peer_loss_plot_set_x_axis(PeerLossPlot *self, LossPlotXAxis x_axis)
{
    g_return_if_fail(PEER_IS_LOSS_PLOT(self));
    g_return_if_fail((unsigned)x_axis <= LOSS_PLOT_X_FLOPS);
    if (self->model.x_axis == x_axis)
        return;
    self->model.x_axis = x_axis;
    invalidate_plot(self);
    g_object_notify_by_pspec(G_OBJECT(self), properties[PROP_X_AXIS]);
}

gboolean peer_loss_plot_get_log_x(PeerLossPlot *self)
{
    g_return_val_if_fail(PEER_IS_LOSS_PLOT(self), FALSE);
    return self->model.log_x;
}

void peer_loss_plot_set_log_x(PeerLossPlot *self, gboolean log_x)
{
    g_return_if_fail(PEER_IS_LOSS_PLOT(self));
    if (self->model.log_x == !!log_x)
        return;
    self->model.log_x = !!log_x;
    invalidate_plot(self);
    g_object_notify_by_pspec(G_OBJECT(self), properties[PROP_LOG_X]);
}

gboolean peer_loss_plot_get_log_y(PeerLossPlot *self)
{
    g_return_val_if_fail(PEER_IS_LOSS_PLOT(self), FALSE);
    return self->model.log_y;
}

void peer_loss_plot_set_log_y(PeerLossPlot *self, gboolean log_y)
{
    g_return_if_fail(PEER_IS_LOSS_PLOT(self));
    if (self->model.log_y == !!log_y)
        return;
    self->model.log_y = !!log_y;
    invalidate_plot(self);
    g_object_notify_by_pspec(G_OBJECT(self), properties[PROP_LOG_Y]);
}

double peer_loss_plot_get_smoothing(PeerLossPlot *self)
{
    g_return_val_if_fail(PEER_IS_LOSS_PLOT(self), 0.0);
    return self->model.smoothing;
}

void peer_loss_plot_set_smoothing(PeerLossPlot *self, double smoothing)
{
    g_return_if_fail(PEER_IS_LOSS_PLOT(self));
    smoothing = isfinite(smoothing) ? CLAMP(smoothing, 0.0, MAX_SMOOTHING) : 0.0;
    if (self->model.smoothing == smoothing)
        return;
    self->model.smoothing = smoothing;
    invalidate_plot(self);
    g_object_notify_by_pspec(G_OBJECT(self), properties[PROP_SMOOTHING]);
}

const LossPlotModel *peer_loss_plot_get_model(PeerLossPlot *self)
{
    g_return_val_if_fail(PEER_IS_LOSS_PLOT(self), NULL);
    return &self->model;
}

const PlotStyle *peer_loss_plot_get_style(PeerLossPlot *self)
{
    g_return_val_if_fail(PEER_IS_LOSS_PLOT(self), NULL);
    if (!self->style_known)
        update_style(self);
    return &self->style;
}
