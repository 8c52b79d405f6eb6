#include "retrieval-path.h"

#include <math.h>
#include <string.h>

#include "plot-widget-style.h"

#define MIN_WIDTH 320
#define MIN_HEIGHT 200
/* Labels a little smaller than the body text, as in the loss plot. */
#define FONT_SCALE 0.85

struct _PeerRetrievalPath {
    GtkWidget parent_instance;

    /* The copy: data's heads and arrays point into heads and arena. */
    gboolean has_data;
    RetrievalPathData data;
    RetrievalPathHead *heads;
    char *title;
    void *arena;

    PlotStyle style;
    char *font_family;
    gboolean style_known;

    GskRenderNode *node;
    int node_width;
    int node_height;
};

enum { SIGNAL_EXPERT_ACTIVATED, N_SIGNALS };
static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE(PeerRetrievalPath, peer_retrieval_path, GTK_TYPE_WIDGET)

static void invalidate(PeerRetrievalPath *self)
{
    g_clear_pointer(&self->node, gsk_render_node_unref);
    gtk_widget_queue_draw(GTK_WIDGET(self));
}

/* ---- the copy -------------------------------------------------------------------------------- */

static void clear_data(PeerRetrievalPath *self)
{
    g_clear_pointer(&self->heads, g_free);
    g_clear_pointer(&self->arena, g_free);
    g_clear_pointer(&self->title, g_free);
    self->has_data = FALSE;
    memset(&self->data, 0, sizeof self->data);
}

/* Copies count elements of size bytes to *cursor and moves it on. */
static const void *take(char **cursor, const void *from, size_t count, size_t size)
{
    void *to = *cursor;
    memcpy(to, from, count * size);
    *cursor += count * size;
    return to;
}

void peer_retrieval_path_set_data(PeerRetrievalPath *self, const RetrievalPathData *data)
{
    g_return_if_fail(PEER_IS_RETRIEVAL_PATH(self));
    int highlight_head = self->data.highlight_head, highlight_rank = self->data.highlight_rank;
    clear_data(self);
    if (data) {
        size_t n = (size_t)MAX(data->n, 0), k = (size_t)MAX(data->topk, 0);
        size_t floats = 2 * n + k * k + 3 * k, ints = 7 * k;
        size_t per_head = floats * sizeof(float) + ints * sizeof(int32_t);
        int heads = MAX(data->n_heads, 0);
        self->arena = g_malloc(MAX(per_head * (size_t)heads, 1));
        self->heads = g_new0(RetrievalPathHead, MAX(heads, 1));
        char *cursor = self->arena;
        for (int h = 0; h < heads; h++) {
            const RetrievalPathHead *from = &data->heads[h];
            RetrievalPathHead *to = &self->heads[h];
            to->head = from->head;
            for (int half = 0; half < 2; half++)
                to->sub_score[half] = take(&cursor, from->sub_score[half], n, sizeof(float));
            to->candidate = take(&cursor, from->candidate, k * k, sizeof(float));
            to->gate = take(&cursor, from->gate, k, sizeof(float));
            to->activation = take(&cursor, from->activation, k, sizeof(float));
            to->contribution = take(&cursor, from->contribution, k, sizeof(float));
            for (int half = 0; half < 2; half++)
                to->sub_top[half] = take(&cursor, from->sub_top[half], k, sizeof(int32_t));
            to->pick_i = take(&cursor, from->pick_i, k, sizeof(int32_t));
            to->pick_j = take(&cursor, from->pick_j, k, sizeof(int32_t));
            to->expert = take(&cursor, from->expert, k, sizeof(int32_t));
            to->row = take(&cursor, from->row, k, sizeof(int32_t));
            to->col = take(&cursor, from->col, k, sizeof(int32_t));
        }
        self->data = *data;
        self->data.heads = self->heads;
        self->title = g_strdup(data->title);
        self->data.title = self->title;
        /* The pointer stays over the same place: keep what it emphasises if that still
         * exists. */
        gboolean keep = highlight_head >= 0 && highlight_head < heads && highlight_rank >= 0 &&
                        highlight_rank < data->topk;
        self->data.highlight_head = keep ? highlight_head : -1;
        self->data.highlight_rank = keep ? highlight_rank : -1;
        self->has_data = TRUE;
    } else {
        self->data.highlight_head = -1;
        self->data.highlight_rank = -1;
    }
    gtk_widget_queue_resize(GTK_WIDGET(self));
    invalidate(self);
}

const RetrievalPathData *peer_retrieval_path_get_data(PeerRetrievalPath *self)
{
    g_return_val_if_fail(PEER_IS_RETRIEVAL_PATH(self), NULL);
    return self->has_data ? &self->data : NULL;
}

/* ---- style ----------------------------------------------------------------------------------- */

static void update_style(PeerRetrievalPath *self)
{
    plot_style_from_widget(&self->style, &self->font_family, GTK_WIDGET(self), FONT_SCALE);
    self->style_known = TRUE;
}

const PlotStyle *peer_retrieval_path_get_style(PeerRetrievalPath *self)
{
    g_return_val_if_fail(PEER_IS_RETRIEVAL_PATH(self), NULL);
    if (!self->style_known)
        update_style(self);
    return &self->style;
}

static void peer_retrieval_path_css_changed(GtkWidget *widget, GtkCssStyleChange *change)
{
    PeerRetrievalPath *self = PEER_RETRIEVAL_PATH(widget);
    GTK_WIDGET_CLASS(peer_retrieval_path_parent_class)->css_changed(widget, change);
    update_style(self);
    gtk_widget_queue_resize(widget);
    invalidate(self);
}

/* ---- size and drawing ------------------------------------------------------------------------ */

static GtkSizeRequestMode peer_retrieval_path_get_request_mode(GtkWidget *widget)
{
    return GTK_SIZE_REQUEST_HEIGHT_FOR_WIDTH;
}

static void peer_retrieval_path_measure(GtkWidget *widget, GtkOrientation orientation,
                                        int for_size, int *minimum, int *natural,
                                        int *minimum_baseline, int *natural_baseline)
{
    PeerRetrievalPath *self = PEER_RETRIEVAL_PATH(widget);
    const PlotStyle *style = peer_retrieval_path_get_style(self);
    if (orientation == GTK_ORIENTATION_HORIZONTAL) {
        double width = 640, height;
        if (self->has_data)
            retrieval_path_panel_size(&self->data, style, &width, &height);
        *minimum = MIN_WIDTH;
        *natural = MAX((int)ceil(width), MIN_WIDTH);
        return;
    }
    double height = MIN_HEIGHT;
    if (self->has_data)
        height = retrieval_path_height_for_width(&self->data, style, for_size > 0 ? for_size : 640);
    *minimum = MIN_HEIGHT;
    *natural = MAX((int)ceil(height), MIN_HEIGHT);
}

static GskRenderNode *render_texture(PeerRetrievalPath *self, int width, int height)
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
    RetrievalPathData empty = {.highlight_head = -1, .highlight_rank = -1};
    retrieval_path_render(cr, width, height, self->has_data ? &self->data : &empty, &self->style);
    cairo_destroy(cr);
    cairo_surface_flush(surface);
    /* Cairo's ARGB32 is GDK_MEMORY_DEFAULT on little-endian machines, as in the loss plot. */
    GBytes *bytes = g_bytes_new_with_free_func(
        cairo_image_surface_get_data(surface),
        (gsize)cairo_image_surface_get_stride(surface) * (gsize)(height * scale),
        (GDestroyNotify)cairo_surface_destroy, surface);
    GdkTexture *texture = gdk_memory_texture_new(width * scale, height * scale, GDK_MEMORY_DEFAULT,
                                                 bytes,
                                                 (gsize)cairo_image_surface_get_stride(surface));
    g_bytes_unref(bytes);
    GskRenderNode *node =
        gsk_texture_node_new(texture, &GRAPHENE_RECT_INIT(0, 0, (float)width, (float)height));
    g_object_unref(texture);
    return node;
}

static void peer_retrieval_path_snapshot(GtkWidget *widget, GtkSnapshot *snapshot)
{
    PeerRetrievalPath *self = PEER_RETRIEVAL_PATH(widget);
    int width = gtk_widget_get_width(widget), height = gtk_widget_get_height(widget);
    if (width <= 0 || height <= 0)
        return;
    if (!self->style_known)
        update_style(self);
    if (!self->node || self->node_width != width || self->node_height != height) {
        g_clear_pointer(&self->node, gsk_render_node_unref);
        self->node = render_texture(self, width, height);
        self->node_width = width;
        self->node_height = height;
    }
    if (self->node)
        gtk_snapshot_append_node(snapshot, self->node);
}

/* ---- pointer --------------------------------------------------------------------------------- */

gboolean peer_retrieval_path_hit(PeerRetrievalPath *self, double x, double y,
                                 RetrievalPathHit *hit)
{
    g_return_val_if_fail(PEER_IS_RETRIEVAL_PATH(self), FALSE);
    int width = gtk_widget_get_width(GTK_WIDGET(self));
    int height = gtk_widget_get_height(GTK_WIDGET(self));
    if (!self->has_data || width <= 0 || height <= 0)
        return FALSE;
    return retrieval_path_hit_test(width, height, &self->data,
                                   peer_retrieval_path_get_style(self), x, y, hit);
}

void peer_retrieval_path_set_highlight(PeerRetrievalPath *self, int head, int rank)
{
    g_return_if_fail(PEER_IS_RETRIEVAL_PATH(self));
    if (!self->has_data || head < 0 || rank < 0)
        head = rank = -1;
    if (self->data.highlight_head == head && self->data.highlight_rank == rank)
        return;
    self->data.highlight_head = head;
    self->data.highlight_rank = rank;
    invalidate(self);
}

static void on_motion(GtkEventControllerMotion *controller, double x, double y,
                      PeerRetrievalPath *self)
{
    RetrievalPathHit hit;
    gboolean over = peer_retrieval_path_hit(self, x, y, &hit);
    peer_retrieval_path_set_highlight(self, over ? hit.head : -1, over ? hit.rank : -1);
    gtk_widget_set_cursor_from_name(GTK_WIDGET(self), over ? "pointer" : NULL);
}

static void on_leave(GtkEventControllerMotion *controller, PeerRetrievalPath *self)
{
    peer_retrieval_path_set_highlight(self, -1, -1);
    gtk_widget_set_cursor_from_name(GTK_WIDGET(self), NULL);
}

static void on_released(GtkGestureClick *gesture, int n_press, double x, double y,
                        PeerRetrievalPath *self)
{
    RetrievalPathHit hit;
    if (peer_retrieval_path_hit(self, x, y, &hit))
        g_signal_emit(self, signals[SIGNAL_EXPERT_ACTIVATED], 0,
                      self->data.heads[hit.head].head, hit.rank, (int)hit.expert);
}

static gboolean on_query_tooltip(GtkWidget *widget, int x, int y, gboolean keyboard,
                                 GtkTooltip *tooltip, PeerRetrievalPath *self)
{
    RetrievalPathHit hit;
    if (keyboard || !peer_retrieval_path_hit(self, x, y, &hit))
        return FALSE;
    const RetrievalPathHead *head = &self->data.heads[hit.head];
    int s = hit.rank;
    g_autofree char *text =
        self->data.values_only
            ? g_strdup_printf("Memory %d at (%d, %d), head %d, rank %d\ngate %.4f · ‖g·v‖ %.4g\n"
                              "Click to inspect it",
                              head->expert[s], head->row[s], head->col[s], head->head, s + 1,
                              head->gate[s], head->contribution[s])
            : g_strdup_printf("Expert %d at (%d, %d), head %d, rank %d\ngate %.4f · σ(uᵀx) "
                              "%.4f · ‖g·σ·v‖ %.4g\nClick to inspect it",
                              head->expert[s], head->row[s], head->col[s], head->head, s + 1,
                              head->gate[s], head->activation[s], head->contribution[s]);
    gtk_tooltip_set_text(tooltip, text);
    return TRUE;
}

/* ---- GObject --------------------------------------------------------------------------------- */

static void peer_retrieval_path_dispose(GObject *object)
{
    PeerRetrievalPath *self = PEER_RETRIEVAL_PATH(object);
    g_clear_pointer(&self->node, gsk_render_node_unref);
    G_OBJECT_CLASS(peer_retrieval_path_parent_class)->dispose(object);
}

static void peer_retrieval_path_finalize(GObject *object)
{
    PeerRetrievalPath *self = PEER_RETRIEVAL_PATH(object);
    clear_data(self);
    g_free(self->font_family);
    G_OBJECT_CLASS(peer_retrieval_path_parent_class)->finalize(object);
}

static void peer_retrieval_path_class_init(PeerRetrievalPathClass *klass)
{
    GObjectClass *object_class = G_OBJECT_CLASS(klass);
    GtkWidgetClass *widget_class = GTK_WIDGET_CLASS(klass);
    object_class->dispose = peer_retrieval_path_dispose;
    object_class->finalize = peer_retrieval_path_finalize;
    widget_class->get_request_mode = peer_retrieval_path_get_request_mode;
    widget_class->measure = peer_retrieval_path_measure;
    widget_class->snapshot = peer_retrieval_path_snapshot;
    widget_class->css_changed = peer_retrieval_path_css_changed;

    /* A chosen expert was clicked: the model's head number, its rank in the head (0 best) and
     * its id. */
    signals[SIGNAL_EXPERT_ACTIVATED] =
        g_signal_new("expert-activated", G_TYPE_FROM_CLASS(klass), G_SIGNAL_RUN_LAST, 0, NULL,
                     NULL, NULL, G_TYPE_NONE, 3, G_TYPE_INT, G_TYPE_INT, G_TYPE_INT);

    gtk_widget_class_set_css_name(widget_class, "retrievalpath");
    gtk_widget_class_set_accessible_role(widget_class, GTK_ACCESSIBLE_ROLE_IMG);
}

static void peer_retrieval_path_init(PeerRetrievalPath *self)
{
    self->data.highlight_head = -1;
    self->data.highlight_rank = -1;

    GtkEventController *motion = gtk_event_controller_motion_new();
    g_signal_connect(motion, "enter", G_CALLBACK(on_motion), self);
    g_signal_connect(motion, "motion", G_CALLBACK(on_motion), self);
    g_signal_connect(motion, "leave", G_CALLBACK(on_leave), self);
    gtk_widget_add_controller(GTK_WIDGET(self), motion);

    GtkGesture *click = gtk_gesture_click_new();
    gtk_gesture_single_set_button(GTK_GESTURE_SINGLE(click), GDK_BUTTON_PRIMARY);
    g_signal_connect(click, "released", G_CALLBACK(on_released), self);
    gtk_widget_add_controller(GTK_WIDGET(self), GTK_EVENT_CONTROLLER(click));

    gtk_widget_set_has_tooltip(GTK_WIDGET(self), TRUE);
    g_signal_connect(self, "query-tooltip", G_CALLBACK(on_query_tooltip), self);

    gtk_accessible_update_property(GTK_ACCESSIBLE(self), GTK_ACCESSIBLE_PROPERTY_LABEL,
                                   "Retrieval path of the current token", -1);
}

GtkWidget *peer_retrieval_path_new(void)
{
    return g_object_new(PEER_TYPE_RETRIEVAL_PATH, NULL);
}
