/* The loss-plot widget in a window: its properties notify, it keeps its own copy of the runs,
 * colours stay with their runs, and what it draws is what the renderer draws for its model and
 * style, light or dark, with the hover drawn over it and gone when the pointer leaves. Needs a
 * display (meson runs it under xvfb-run when there is none); exits 77, a skip, when none can be
 * opened. */
#include <gtk/gtk.h>
#include <math.h>
#include <string.h>

#include "loss-plot.h"
#include "test-widget-util.h"

#define WINDOW_WIDTH 480
#define WINDOW_HEIGHT 320
#define N_POINTS 50
/* Long enough for any display to map a window; never a measure of speed. */
#define MAP_TIMEOUT_US (20 * G_USEC_PER_SEC)

static void count_notify(GObject *object, GParamSpec *pspec, gpointer user_data)
{
    (*(int *)user_data)++;
}

static void test_properties(void)
{
    PeerLossPlot *plot = PEER_LOSS_PLOT(g_object_ref_sink(peer_loss_plot_new()));
    int log_y_notified = 0, smoothing_notified = 0, x_axis_notified = 0;
    g_signal_connect(plot, "notify::log-y", G_CALLBACK(count_notify), &log_y_notified);
    g_signal_connect(plot, "notify::smoothing", G_CALLBACK(count_notify), &smoothing_notified);
    g_signal_connect(plot, "notify::x-axis", G_CALLBACK(count_notify), &x_axis_notified);

    g_object_set(plot, "log-y", TRUE, NULL);
    g_object_set(plot, "log-y", TRUE, NULL);
    g_assert_cmpint(log_y_notified, ==, 1);
    g_assert_true(peer_loss_plot_get_log_y(plot));
    g_assert_true(peer_loss_plot_get_model(plot)->log_y);

    peer_loss_plot_set_smoothing(plot, 0.6);
    g_assert_cmpint(smoothing_notified, ==, 1);
    g_assert_cmpfloat(peer_loss_plot_get_model(plot)->smoothing, ==, 0.6);
    /* Smoothing of 1 would be a flat line at the first value: the widget stops short of it. */
    peer_loss_plot_set_smoothing(plot, 1.0);
    g_assert_cmpfloat(peer_loss_plot_get_smoothing(plot), <, 1.0);

    g_object_set(plot, "x-axis", LOSS_PLOT_X_FLOPS, NULL);
    g_assert_cmpint(x_axis_notified, ==, 1);
    g_assert_cmpint(peer_loss_plot_get_model(plot)->x_axis, ==, LOSS_PLOT_X_FLOPS);
    LossPlotXAxis axis;
    g_object_get(plot, "x-axis", &axis, NULL);
    g_assert_cmpint(axis, ==, LOSS_PLOT_X_FLOPS);

    int minimum, natural;
    gtk_widget_measure(GTK_WIDGET(plot), GTK_ORIENTATION_HORIZONTAL, -1, &minimum, &natural, NULL,
                       NULL);
    g_assert_cmpint(minimum, >=, 320);
    gtk_widget_measure(GTK_WIDGET(plot), GTK_ORIENTATION_VERTICAL, -1, &minimum, &natural, NULL,
                       NULL);
    g_assert_cmpint(minimum, >=, 200);
    g_object_unref(plot);
}

static void fill_points(double *steps, double *tokens, double *loss, int n, double offset)
{
    for (int i = 0; i < n; i++) {
        steps[i] = i;
        tokens[i] = 2048.0 * i;
        loss[i] = offset + 3.0 * exp(-i / 10.0);
    }
}

static void test_series(void)
{
    PeerLossPlot *plot = PEER_LOSS_PLOT(g_object_ref_sink(peer_loss_plot_new()));
    double steps[N_POINTS], tokens[N_POINTS], loss[N_POINTS];
    fill_points(steps, tokens, loss, N_POINTS, 1.5);

    peer_loss_plot_set_series(plot, 7, "PEER", 20, steps, tokens, NULL, loss);
    peer_loss_plot_set_series(plot, 9, "dense", N_POINTS, steps, tokens, NULL, loss);
    /* The widget copied the data: changing ours changes nothing there. */
    loss[0] = 99.0;
    const LossPlotModel *model = peer_loss_plot_get_model(plot);
    g_assert_cmpuint(model->n_series, ==, 2);
    g_assert_cmpstr(model->series[0].name, ==, "PEER");
    g_assert_cmpuint(model->series[0].n_train, ==, 20);
    g_assert_cmpfloat(model->series[0].train_loss[0], ==, 4.5);
    g_assert_cmpfloat(model->series[0].train_tokens[19], ==, 2048.0 * 19);
    g_assert_true(isnan(model->series[0].train_flops[0]));

    /* Live: appended points, then replaced validation. */
    peer_loss_plot_append_points(plot, 7, 5, steps + 20, tokens + 20, NULL, loss + 20);
    double val_steps[] = {10.0, 20.0}, val_loss[] = {2.0, 1.8};
    peer_loss_plot_set_validation(plot, 7, 2, val_steps, NULL, NULL, val_loss);
    model = peer_loss_plot_get_model(plot);
    g_assert_cmpuint(model->series[0].n_train, ==, 25);
    g_assert_cmpfloat(model->series[0].train_steps[24], ==, 24.0);
    g_assert_cmpuint(model->series[0].n_val, ==, 2);
    g_assert_cmpfloat(model->series[0].val_loss[1], ==, 1.8);

    /* Replacing keeps the run's place and colour. */
    unsigned colour = model->series[0].color;
    peer_loss_plot_set_series(plot, 7, "PEER, renamed", 3, steps, NULL, NULL, loss);
    model = peer_loss_plot_get_model(plot);
    g_assert_cmpstr(model->series[0].name, ==, "PEER, renamed");
    g_assert_cmpuint(model->series[0].n_train, ==, 3);
    g_assert_cmpuint(model->series[0].color, ==, colour);
    g_assert_cmpuint(model->series[0].color, !=, model->series[1].color);

    GdkRGBA rgba;
    g_assert_true(peer_loss_plot_get_series_color(plot, 9, &rgba));
    PlotColor palette = plot_palette_get(model->series[1].color);
    g_assert_cmpfloat_with_epsilon(rgba.red, palette.red, 1e-6);
    g_assert_cmpfloat_with_epsilon(rgba.blue, palette.blue, 1e-6);
    g_assert_false(peer_loss_plot_get_series_color(plot, 8, &rgba));

    peer_loss_plot_set_series_visible(plot, 9, FALSE);
    g_assert_false(peer_loss_plot_get_series_visible(plot, 9));
    g_assert_false(peer_loss_plot_get_model(plot)->series[1].visible);

    /* A run added after one is removed takes the freed colour; the others keep theirs. */
    unsigned dense_colour = peer_loss_plot_get_model(plot)->series[1].color;
    peer_loss_plot_remove_series(plot, 7);
    g_assert_false(peer_loss_plot_has_series(plot, 7));
    peer_loss_plot_set_series(plot, 11, "MoE", 0, NULL, NULL, NULL, NULL);
    model = peer_loss_plot_get_model(plot);
    g_assert_cmpuint(model->n_series, ==, 2);
    g_assert_cmpuint(model->series[0].color, ==, dense_colour);
    g_assert_cmpuint(model->series[1].color, ==, colour);
    g_object_unref(plot);
}

static cairo_surface_t *draw_renderer(PeerLossPlot *plot, int width, int height)
{
    cairo_surface_t *surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, width, height);
    cairo_t *cr = cairo_create(surface);
    loss_plot_render(cr, width, height, peer_loss_plot_get_model(plot),
                     peer_loss_plot_get_style(plot), NULL);
    cairo_destroy(cr);
    cairo_surface_flush(surface);
    return surface;
}

static void test_draws_like_renderer(void)
{
    GtkWidget *window = gtk_window_new();
    gtk_window_set_default_size(GTK_WINDOW(window), WINDOW_WIDTH, WINDOW_HEIGHT);
    PeerLossPlot *plot = PEER_LOSS_PLOT(peer_loss_plot_new());
    gtk_window_set_child(GTK_WINDOW(window), GTK_WIDGET(plot));

    double steps[N_POINTS], tokens[N_POINTS], loss[N_POINTS];
    fill_points(steps, tokens, loss, N_POINTS, 1.5);
    peer_loss_plot_set_series(plot, 1, "PEER", N_POINTS, steps, tokens, NULL, loss);
    fill_points(steps, tokens, loss, N_POINTS, 1.8);
    peer_loss_plot_set_series(plot, 2, "dense", N_POINTS, steps, tokens, NULL, loss);
    double val_steps[] = {10.0, 30.0}, val_loss[] = {2.6, 2.0};
    peer_loss_plot_set_validation(plot, 2, 2, val_steps, NULL, NULL, val_loss);
    peer_loss_plot_set_smoothing(plot, 0.6);

    gtk_window_present(GTK_WINDOW(window));
    gint64 deadline = g_get_monotonic_time() + MAP_TIMEOUT_US;
    while (
        (!gtk_widget_get_mapped(GTK_WIDGET(plot)) || gtk_widget_get_width(GTK_WIDGET(plot)) == 0) &&
        g_get_monotonic_time() < deadline)
        g_main_context_iteration(NULL, FALSE);
    g_assert_true(gtk_widget_get_mapped(GTK_WIDGET(plot)));
    int width = gtk_widget_get_width(GTK_WIDGET(plot));
    int height = gtk_widget_get_height(GTK_WIDGET(plot));
    g_assert_cmpint(width, >=, 320);
    g_assert_cmpint(height, >=, 200);

    cairo_surface_t *expected = draw_renderer(plot, width, height);
    cairo_surface_t *drawn = widget_test_draw(GTK_WIDGET(plot));
    g_assert_cmpint(widget_test_count_different_pixels(drawn, expected), ==, 0);
    cairo_surface_destroy(drawn);

    /* The pointer over the data: the crosshair and read-out drawn over the same plot. */
    GtkEventController *motion =
        widget_test_find_controller(GTK_WIDGET(plot), GTK_TYPE_EVENT_CONTROLLER_MOTION);
    g_assert_nonnull(motion);
    g_signal_emit_by_name(motion, "enter", width * 0.5, height * 0.5);
    g_signal_emit_by_name(motion, "motion", width * 0.55, height * 0.5);
    drawn = widget_test_draw(GTK_WIDGET(plot));
    g_assert_cmpint(widget_test_count_different_pixels(drawn, expected), >, 50);
    cairo_surface_destroy(drawn);

    g_signal_emit_by_name(motion, "leave");
    drawn = widget_test_draw(GTK_WIDGET(plot));
    g_assert_cmpint(widget_test_count_different_pixels(drawn, expected), ==, 0);
    cairo_surface_destroy(drawn);
    cairo_surface_destroy(expected);

    /* A change of data draws anew. */
    peer_loss_plot_set_series_visible(plot, 1, FALSE);
    expected = draw_renderer(plot, width, height);
    drawn = widget_test_draw(GTK_WIDGET(plot));
    g_assert_cmpint(widget_test_count_different_pixels(drawn, expected), ==, 0);
    cairo_surface_destroy(drawn);
    cairo_surface_destroy(expected);

    /* The dark style: light text on a dark background, drawn as the renderer draws it. */
    g_assert_cmpfloat(plot_color_luminance(peer_loss_plot_get_style(plot)->background), >, 0.5);
    g_object_set(gtk_settings_get_default(), "gtk-application-prefer-dark-theme", TRUE, NULL);
    deadline = g_get_monotonic_time() + MAP_TIMEOUT_US;
    while (plot_color_luminance(peer_loss_plot_get_style(plot)->background) > 0.5 &&
           g_get_monotonic_time() < deadline)
        g_main_context_iteration(NULL, FALSE);
    const PlotStyle *style = peer_loss_plot_get_style(plot);
    g_assert_cmpfloat(plot_color_luminance(style->background), <, 0.5);
    g_assert_cmpfloat(plot_color_luminance(style->foreground), >, 0.5);
    expected = draw_renderer(plot, width, height);
    drawn = widget_test_draw(GTK_WIDGET(plot));
    g_assert_cmpint(widget_test_count_different_pixels(drawn, expected), ==, 0);
    cairo_surface_destroy(drawn);
    cairo_surface_destroy(expected);
    g_object_set(gtk_settings_get_default(), "gtk-application-prefer-dark-theme", FALSE, NULL);

    gtk_window_destroy(GTK_WINDOW(window));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    if (!gtk_init_check()) {
        g_printerr("no display: the widget tests are skipped\n");
        return 77;
    }
    g_test_add_func("/loss-plot-widget/properties", test_properties);
    g_test_add_func("/loss-plot-widget/series", test_series);
    g_test_add_func("/loss-plot-widget/draws-like-renderer", test_draws_like_renderer);
    return g_test_run();
}
