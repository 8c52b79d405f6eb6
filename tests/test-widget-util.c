#include "test-widget-util.h"

#include <math.h>
#include <stdlib.h>

cairo_surface_t *widget_test_draw(GtkWidget *widget)
{
    GtkSnapshot *snapshot = gtk_snapshot_new();
    GTK_WIDGET_GET_CLASS(widget)->snapshot(widget, snapshot);
    GskRenderNode *node = gtk_snapshot_free_to_node(snapshot);
    cairo_surface_t *surface = cairo_image_surface_create(
        CAIRO_FORMAT_ARGB32, gtk_widget_get_width(widget), gtk_widget_get_height(widget));
    cairo_t *cr = cairo_create(surface);
    if (node) {
        gsk_render_node_draw(node, cr);
        gsk_render_node_unref(node);
    }
    cairo_destroy(cr);
    cairo_surface_flush(surface);
    return surface;
}

int widget_test_count_different_pixels(cairo_surface_t *a, cairo_surface_t *b)
{
    int width = cairo_image_surface_get_width(a), height = cairo_image_surface_get_height(a);
    g_assert_cmpint(width, ==, cairo_image_surface_get_width(b));
    g_assert_cmpint(height, ==, cairo_image_surface_get_height(b));
    int different = 0;
    for (int y = 0; y < height; y++) {
        const guint8 *ra = cairo_image_surface_get_data(a) + y * cairo_image_surface_get_stride(a);
        const guint8 *rb = cairo_image_surface_get_data(b) + y * cairo_image_surface_get_stride(b);
        for (int x = 0; x < width * 4; x += 4) {
            int worst = 0;
            for (int c = 0; c < 4; c++)
                worst = MAX(worst, abs(ra[x + c] - rb[x + c]));
            different += worst > 2;
        }
    }
    return different;
}

void widget_test_pixel(cairo_surface_t *surface, double x, double y, int rgb[3])
{
    int px = (int)floor(x), py = (int)floor(y);
    g_assert_cmpint(px, >=, 0);
    g_assert_cmpint(py, >=, 0);
    g_assert_cmpint(px, <, cairo_image_surface_get_width(surface));
    g_assert_cmpint(py, <, cairo_image_surface_get_height(surface));
    /* B, G, R, A in memory on little-endian machines. */
    const guint8 *p = cairo_image_surface_get_data(surface) +
                      py * cairo_image_surface_get_stride(surface) + px * 4;
    rgb[0] = p[2];
    rgb[1] = p[1];
    rgb[2] = p[0];
}

gpointer widget_test_find_controller(GtkWidget *widget, GType type)
{
    GListModel *controllers = gtk_widget_observe_controllers(widget);
    gpointer found = NULL;
    for (guint i = 0; i < g_list_model_get_n_items(controllers) && !found; i++) {
        GtkEventController *controller = g_list_model_get_item(controllers, i);
        if (G_TYPE_CHECK_INSTANCE_TYPE(controller, type))
            found = controller;
        g_object_unref(controller);
    }
    g_object_unref(controllers);
    g_assert_nonnull(found);
    return found;
}
