/* The expert heat-map widget in a window: it keeps its own copy of the grid, draws what the
 * renderer draws for its model, view and style, with the hover read-out over it; the wheel zooms
 * around the cell under the pointer, a drag pans by the distance dragged, and a click emits
 * ::expert-activated with the id of the cell under the pointer (a drag does not). Needs a display
 * (meson runs it under xvfb-run when there is none); skips when none can be opened. */
#include <gtk/gtk.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "expert-heatmap.h"
#include "test-widget-util.h"

#define WINDOW_WIDTH 560
#define WINDOW_HEIGHT 460
#define SIDE 64
/* Long enough for any display to map a window; never a measure of speed. */
#define MAP_TIMEOUT_US (20 * G_USEC_PER_SEC)

static void fill_values(float *values)
{
    for (int a = 0; a < SIDE; a++)
        for (int b = 0; b < SIDE; b++)
            values[a * SIDE + b] = (float)((a * 7 + b * 13) % 256);
}

static void count_notify(GObject *object, GParamSpec *pspec, gpointer user_data)
{
    (*(int *)user_data)++;
}

static void test_properties(void)
{
    PeerExpertHeatmap *map = PEER_EXPERT_HEATMAP(g_object_ref_sink(peer_expert_heatmap_new()));
    int notified = 0;
    g_signal_connect(map, "notify::scale", G_CALLBACK(count_notify), &notified);
    g_object_set(map, "scale", EXPERT_HEATMAP_LOG, NULL);
    g_object_set(map, "scale", EXPERT_HEATMAP_LOG, NULL);
    g_assert_cmpint(notified, ==, 1);
    g_assert_cmpint(peer_expert_heatmap_get_model(map)->scale, ==, EXPERT_HEATMAP_LOG);

    static float values[SIDE * SIDE];
    fill_values(values);
    peer_expert_heatmap_set_grid(map, SIDE, values, TRUE);
    /* The widget copied the grid. */
    values[0] = 1234.0f;
    const ExpertHeatmapModel *model = peer_expert_heatmap_get_model(map);
    g_assert_cmpint(model->side, ==, SIDE);
    g_assert_cmpfloat(model->values[0], ==, 0.0f);
    g_assert_true(model->zero_is_empty);

    /* A view is clamped to the grid; a grid of the same side keeps it, another side resets it. */
    ExpertHeatmapView view = {50.0, -3.0, 16.0};
    peer_expert_heatmap_set_view(map, &view);
    peer_expert_heatmap_get_view(map, &view);
    g_assert_cmpfloat(view.x0, ==, 48.0);
    g_assert_cmpfloat(view.y0, ==, 0.0);
    peer_expert_heatmap_set_grid(map, SIDE, values, TRUE);
    peer_expert_heatmap_get_view(map, &view);
    g_assert_cmpfloat(view.span, ==, 16.0);
    peer_expert_heatmap_set_selected(map, 4000);
    peer_expert_heatmap_set_grid(map, 32, values, FALSE);
    peer_expert_heatmap_get_view(map, &view);
    g_assert_cmpfloat(view.span, ==, 32.0);
    /* The outlined expert is no longer in the grid. */
    g_assert_cmpint(peer_expert_heatmap_get_selected(map), ==, -1);

    peer_expert_heatmap_set_grid(map, 0, NULL, FALSE);
    g_assert_cmpint(peer_expert_heatmap_get_side(map), ==, 0);
    g_assert_cmpint(peer_expert_heatmap_get_model(map)->side, ==, 0);
    g_object_unref(map);
}

static cairo_surface_t *draw_renderer(PeerExpertHeatmap *map, int width, int height)
{
    cairo_surface_t *surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, width, height);
    cairo_t *cr = cairo_create(surface);
    ExpertHeatmapView view;
    peer_expert_heatmap_get_view(map, &view);
    expert_heatmap_render(cr, width, height, peer_expert_heatmap_get_model(map), &view,
                          peer_expert_heatmap_get_style(map), NULL, NULL);
    cairo_destroy(cr);
    cairo_surface_flush(surface);
    return surface;
}

static void on_activated(PeerExpertHeatmap *map, int expert, gpointer user_data)
{
    *(int *)user_data = expert;
}

static void cell_centre(PeerExpertHeatmap *map, int a, int b, double *x, double *y)
{
    double cx, cy, w, h;
    expert_heatmap_layout_cell_rect(peer_expert_heatmap_get_layout(map), a, b, &cx, &cy, &w, &h);
    *x = cx + w / 2.0;
    *y = cy + h / 2.0;
}

static void test_in_window(void)
{
    GtkWidget *window = gtk_window_new();
    gtk_window_set_default_size(GTK_WINDOW(window), WINDOW_WIDTH, WINDOW_HEIGHT);
    PeerExpertHeatmap *map = PEER_EXPERT_HEATMAP(peer_expert_heatmap_new());
    gtk_window_set_child(GTK_WINDOW(window), GTK_WIDGET(map));
    static float values[SIDE * SIDE];
    fill_values(values);
    peer_expert_heatmap_set_grid(map, SIDE, values, FALSE);
    peer_expert_heatmap_set_title(map, "Layer 2 · selections");
    peer_expert_heatmap_set_value_label(map, "selections");
    static float gate[SIDE * SIDE];
    for (int i = 0; i < SIDE * SIDE; i++)
        gate[i] = values[i] / 8.0f;
    const char *names[] = {"selections", "gate mass"};
    const float *details[] = {values, gate};
    peer_expert_heatmap_set_details(map, 2, names, details);

    gtk_window_present(GTK_WINDOW(window));
    gint64 deadline = g_get_monotonic_time() + MAP_TIMEOUT_US;
    while ((!gtk_widget_get_mapped(GTK_WIDGET(map)) || gtk_widget_get_width(GTK_WIDGET(map)) == 0) &&
           g_get_monotonic_time() < deadline)
        g_main_context_iteration(NULL, FALSE);
    g_assert_true(gtk_widget_get_mapped(GTK_WIDGET(map)));
    int width = gtk_widget_get_width(GTK_WIDGET(map));
    int height = gtk_widget_get_height(GTK_WIDGET(map));

    cairo_surface_t *expected = draw_renderer(map, width, height);
    cairo_surface_t *drawn = widget_test_draw(GTK_WIDGET(map));
    g_assert_cmpint(widget_test_count_different_pixels(drawn, expected), ==, 0);
    cairo_surface_destroy(drawn);

    /* Hovering a cell draws the read-out over the same map; leaving takes it away. */
    GtkEventController *motion =
        widget_test_find_controller(GTK_WIDGET(map), GTK_TYPE_EVENT_CONTROLLER_MOTION);
    double x, y;
    cell_centre(map, 20, 30, &x, &y);
    g_assert_cmpint(peer_expert_heatmap_expert_at(map, x, y), ==, 20 * SIDE + 30);
    g_signal_emit_by_name(motion, "enter", x, y);
    g_signal_emit_by_name(motion, "motion", x, y);
    drawn = widget_test_draw(GTK_WIDGET(map));
    g_assert_cmpint(widget_test_count_different_pixels(drawn, expected), >, 100);
    cairo_surface_destroy(drawn);
    g_signal_emit_by_name(motion, "leave");
    drawn = widget_test_draw(GTK_WIDGET(map));
    g_assert_cmpint(widget_test_count_different_pixels(drawn, expected), ==, 0);
    cairo_surface_destroy(drawn);
    cairo_surface_destroy(expected);

    /* The wheel zooms in around the cell under the pointer: it stays under the pointer. */
    g_signal_emit_by_name(motion, "enter", x, y);
    g_signal_emit_by_name(motion, "motion", x, y);
    GtkEventController *scroll =
        widget_test_find_controller(GTK_WIDGET(map), GTK_TYPE_EVENT_CONTROLLER_SCROLL);
    gboolean handled = FALSE;
    for (int notch = 0; notch < 6; notch++) {
        g_signal_emit_by_name(scroll, "scroll", 0.0, -1.0, &handled);
        g_assert_true(handled);
        g_assert_cmpint(peer_expert_heatmap_expert_at(map, x, y), ==, 20 * SIDE + 30);
    }
    ExpertHeatmapView view;
    peer_expert_heatmap_get_view(map, &view);
    g_assert_cmpfloat_with_epsilon(view.span, SIDE / pow(1.25, 6.0), 1e-9);
    /* What is drawn is the renderer's picture of the zoomed view. */
    g_signal_emit_by_name(motion, "leave");
    expected = draw_renderer(map, width, height);
    drawn = widget_test_draw(GTK_WIDGET(map));
    g_assert_cmpint(widget_test_count_different_pixels(drawn, expected), ==, 0);
    cairo_surface_destroy(drawn);
    cairo_surface_destroy(expected);

    /* A drag pans by the distance dragged, in cells. */
    GtkGesture *drag = widget_test_find_controller(GTK_WIDGET(map), GTK_TYPE_GESTURE_DRAG);
    double cells_per_pixel = view.span / peer_expert_heatmap_get_layout(map)->size;
    ExpertHeatmapView before = view;
    g_signal_emit_by_name(drag, "drag-begin", x, y);
    g_signal_emit_by_name(drag, "drag-update", -40.0, 25.0);
    peer_expert_heatmap_get_view(map, &view);
    g_assert_cmpfloat_with_epsilon(view.x0, before.x0 + 40.0 * cells_per_pixel, 1e-9);
    g_assert_cmpfloat_with_epsilon(view.y0, before.y0 - 25.0 * cells_per_pixel, 1e-9);
    /* After the drag the cell under the pointer is the one 40 pixels to its right. */
    int dragged_to = peer_expert_heatmap_expert_at(map, x, y);
    g_assert_cmpint(dragged_to, !=, 20 * SIDE + 30);

    /* The release that ends a drag is no click. */
    GtkGesture *click = widget_test_find_controller(GTK_WIDGET(map), GTK_TYPE_GESTURE_CLICK);
    int activated = -1;
    g_signal_connect(map, "expert-activated", G_CALLBACK(on_activated), &activated);
    g_signal_emit_by_name(click, "released", 1, x, y);
    g_assert_cmpint(activated, ==, -1);

    /* A click (a press that did not move) activates the expert under it and outlines it. */
    cairo_surface_destroy(widget_test_draw(GTK_WIDGET(map)));
    cell_centre(map, 22, 33, &x, &y);
    g_signal_emit_by_name(drag, "drag-begin", x, y);
    g_signal_emit_by_name(drag, "drag-update", 1.0, 1.0);
    g_signal_emit_by_name(click, "released", 1, x + 1.0, y + 1.0);
    g_assert_cmpint(activated, ==, 22 * SIDE + 33);
    g_assert_cmpint(peer_expert_heatmap_get_selected(map), ==, 22 * SIDE + 33);
    /* Outside the grid, nothing. */
    activated = -1;
    g_signal_emit_by_name(drag, "drag-begin", 2.0, 2.0);
    g_signal_emit_by_name(click, "released", 1, 2.0, 2.0);
    g_assert_cmpint(activated, ==, -1);

    /* Marks and new data draw anew, as the renderer would. */
    g_signal_emit_by_name(motion, "leave");
    const gint32 marked[] = {22 * SIDE + 34, 23 * SIDE + 33};
    peer_expert_heatmap_set_marked(map, marked, 2);
    values[22 * SIDE + 35] = 255.0f;
    peer_expert_heatmap_set_grid(map, SIDE, values, FALSE);
    peer_expert_heatmap_set_scale(map, EXPERT_HEATMAP_LOG);
    expected = draw_renderer(map, width, height);
    drawn = widget_test_draw(GTK_WIDGET(map));
    g_assert_cmpint(widget_test_count_different_pixels(drawn, expected), ==, 0);
    cairo_surface_destroy(drawn);
    cairo_surface_destroy(expected);

    gtk_window_destroy(GTK_WINDOW(window));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    if (!gtk_init_check()) {
        printf("1..0 # SKIP no display: run through xvfb-run or with DISPLAY set\n");
        return 0;
    }
    g_test_add_func("/expert-heatmap-widget/properties", test_properties);
    g_test_add_func("/expert-heatmap-widget/in-window", test_in_window);
    return g_test_run();
}
