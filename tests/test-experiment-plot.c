/* The experiment plots' renderer drawn offscreen, no display needed: markers and lines land on
 * the pixels the layout predicts, a reference level crosses the whole panel, a log axis of
 * expert counts gives each factor of four the same length, panels sit side by side, and an empty
 * panel says why it is empty. */
#include <glib.h>
#include <math.h>
#include <string.h>

#include "experiment-plot-render.h"
#include "plot-axes.h"

#define WIDTH 480
#define HEIGHT 320
/* A channel of a pixel that a marker or line covers entirely differs from the palette colour
 * only by rounding to 8 bits. */
#define SAME_COLOUR 3

typedef struct {
    cairo_surface_t *surface;
    ExperimentPlotLayout layouts[2];
} Drawing;

static Drawing draw(const ExperimentPlotPanel *panels, size_t n_panels, int width)
{
    Drawing d = { .surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, width, HEIGHT) };
    cairo_t *cr = cairo_create(d.surface);
    PlotStyle style;
    plot_style_init_light(&style);
    experiment_plot_render(cr, width, HEIGHT, panels, n_panels, &style, d.layouts);
    cairo_destroy(cr);
    cairo_surface_flush(d.surface);
    return d;
}

static void pixel_at(cairo_surface_t *surface, double x, double y, int rgb[3])
{
    int ix = (int)floor(x), iy = (int)floor(y);
    g_assert_cmpint(ix, >=, 0);
    g_assert_cmpint(iy, >=, 0);
    g_assert_cmpint(ix, <, cairo_image_surface_get_width(surface));
    g_assert_cmpint(iy, <, cairo_image_surface_get_height(surface));
    const unsigned char *row =
        cairo_image_surface_get_data(surface) + iy * cairo_image_surface_get_stride(surface);
    guint32 pixel = ((const guint32 *)row)[ix];
    rgb[0] = (pixel >> 16) & 0xff;
    rgb[1] = (pixel >> 8) & 0xff;
    rgb[2] = pixel & 0xff;
}

static bool is_colour_within(cairo_surface_t *surface, double x, double y, PlotColor colour,
                             int tolerance)
{
    int rgb[3];
    pixel_at(surface, x, y, rgb);
    double want[3] = { colour.red, colour.green, colour.blue };
    for (int c = 0; c < 3; c++)
        if (abs(rgb[c] - (int)lround(want[c] * 255.0)) > tolerance)
            return false;
    return true;
}

static bool is_colour(cairo_surface_t *surface, double x, double y, PlotColor colour)
{
    return is_colour_within(surface, x, y, colour, SAME_COLOUR);
}

static void assert_colour(cairo_surface_t *surface, double x, double y, PlotColor colour)
{
    if (!is_colour(surface, x, y, colour)) {
        int rgb[3];
        pixel_at(surface, x, y, rgb);
        g_error("pixel (%.1f, %.1f) is #%02x%02x%02x, not #%02x%02x%02x", x, y, rgb[0], rgb[1],
                rgb[2], (int)lround(colour.red * 255), (int)lround(colour.green * 255),
                (int)lround(colour.blue * 255));
    }
}

/* A rising curve of three points and a reference level between them. */
static void test_markers_and_reference(void)
{
    const double x[] = { 1.0, 2.0, 3.0 }, y[] = { 1.0, 2.0, 3.0 };
    const double level[] = { 2.5 };
    const ExperimentPlotSeries series[] = {
        { .name = "PEER", .color = 3, .n = 3, .x = x, .y = y },
        { .name = "Dense", .color = 0, .horizontal = true, .n = 1, .x = level, .y = level },
    };
    const ExperimentPlotPanel panel = { .title = "Loss", .x_label = "FLOPs", .y_label = "loss",
                                        .series = series, .n_series = 2 };
    Drawing d = draw(&panel, 1, WIDTH);
    const ExperimentPlotLayout *l = &d.layouts[0];
    g_assert_cmpfloat(l->x, >, 0.0);
    g_assert_cmpfloat(l->x + l->width, <=, WIDTH);
    /* The data fill the panel but for a margin: the end points are inside, near the edges. */
    g_assert_cmpfloat(l->x_min, <, 1.0);
    g_assert_cmpfloat(l->x_max, >, 3.0);
    g_assert_cmpfloat(l->x_min, >, 0.8);
    for (int i = 0; i < 3; i++)
        assert_colour(d.surface, experiment_plot_layout_x_to_pixel(l, x[i]),
                      experiment_plot_layout_y_to_pixel(l, y[i]), plot_palette_get(3));
    /* Halfway between two markers the line passes; a diagonal line two units wide covers
     * most of the pixel its centre crosses. */
    g_assert_true(is_colour_within(d.surface, experiment_plot_layout_x_to_pixel(l, 1.5),
                                   experiment_plot_layout_y_to_pixel(l, 1.5), plot_palette_get(3),
                                   24));
    /* The level at y = 2.5 runs from edge to edge, left of the curve and right of it. */
    double level_y = experiment_plot_layout_y_to_pixel(l, 2.5);
    assert_colour(d.surface, l->x + 3.0, level_y, plot_palette_get(0));
    assert_colour(d.surface, experiment_plot_layout_x_to_pixel(l, 1.2), level_y,
                  plot_palette_get(0));
    /* Between the curve and the level, clear of both and of the legend's corners. */
    double empty_x = experiment_plot_layout_x_to_pixel(l, 1.5);
    double empty_y = experiment_plot_layout_y_to_pixel(l, 2.0);
    g_assert_false(is_colour(d.surface, empty_x, empty_y, plot_palette_get(3)));
    g_assert_false(is_colour(d.surface, empty_x, empty_y, plot_palette_get(0)));
    cairo_surface_destroy(d.surface);
}

/* Expert counts 32², 64², 128², 256²: on a log axis each step of four is the same length. */
static void test_log_axis_of_squares(void)
{
    const double n[] = { 1024, 4096, 16384, 65536 }, ppl[] = { 9.0, 8.5, 8.2, 8.0 };
    const ExperimentPlotSeries series = { .name = "PEER", .color = 3, .n = 4, .x = n, .y = ppl };
    const ExperimentPlotPanel panel = { .x_label = "experts", .y_label = "perplexity",
                                        .log_x = true, .x_squares = true, .series = &series,
                                        .n_series = 1 };
    Drawing d = draw(&panel, 1, WIDTH);
    const ExperimentPlotLayout *l = &d.layouts[0];
    double step = experiment_plot_layout_x_to_pixel(l, n[1]) -
                  experiment_plot_layout_x_to_pixel(l, n[0]);
    g_assert_cmpfloat(step, >, 20.0);
    for (int i = 1; i < 3; i++) {
        double next = experiment_plot_layout_x_to_pixel(l, n[i + 1]) -
                      experiment_plot_layout_x_to_pixel(l, n[i]);
        g_assert_cmpfloat(fabs(next - step), <, 1e-6);
    }
    for (int i = 0; i < 4; i++)
        assert_colour(d.surface, experiment_plot_layout_x_to_pixel(l, n[i]),
                      experiment_plot_layout_y_to_pixel(l, ppl[i]), plot_palette_get(3));
    cairo_surface_destroy(d.surface);
}

/* Two panels share the width; each draws its own series in its own half. */
static void test_side_by_side(void)
{
    const double x[] = { 1.0, 2.0 }, a[] = { 3.0, 2.0 }, b[] = { 5.0, 6.0 };
    const ExperimentPlotSeries left = { .name = "left", .color = 1, .n = 2, .x = x, .y = a };
    const ExperimentPlotSeries right = { .name = "right", .color = 2, .n = 2, .x = x, .y = b };
    const ExperimentPlotPanel panels[] = {
        { .x_label = "x", .y_label = "y", .series = &left, .n_series = 1 },
        { .x_label = "x", .y_label = "y", .series = &right, .n_series = 1 },
    };
    Drawing d = draw(panels, 2, 2 * WIDTH);
    g_assert_cmpfloat(d.layouts[0].x + d.layouts[0].width, <=, WIDTH);
    g_assert_cmpfloat(d.layouts[1].x, >=, WIDTH);
    assert_colour(d.surface, experiment_plot_layout_x_to_pixel(&d.layouts[0], 1.0),
                  experiment_plot_layout_y_to_pixel(&d.layouts[0], 3.0), plot_palette_get(1));
    assert_colour(d.surface, experiment_plot_layout_x_to_pixel(&d.layouts[1], 2.0),
                  experiment_plot_layout_y_to_pixel(&d.layouts[1], 6.0), plot_palette_get(2));
    cairo_surface_destroy(d.surface);
}

static int differing_pixels(cairo_surface_t *a, cairo_surface_t *b, int x0, int y0, int x1,
                            int y1)
{
    int count = 0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            int p[3], q[3];
            pixel_at(a, x, y, p);
            pixel_at(b, x, y, q);
            count += p[0] != q[0] || p[1] != q[1] || p[2] != q[2];
        }
    return count;
}

/* A panel without points writes its empty text in the middle, and nothing else there. */
static void test_empty_panel(void)
{
    const ExperimentPlotSeries nothing = { .name = "PEER", .color = 3, .n = 0 };
    ExperimentPlotPanel panel = { .x_label = "x", .y_label = "y", .series = &nothing,
                                  .n_series = 1 };
    Drawing plain = draw(&panel, 1, WIDTH);
    panel.empty_text = "No finished variant yet";
    Drawing told = draw(&panel, 1, WIDTH);
    const ExperimentPlotLayout *l = &told.layouts[0];
    int cx = (int)(l->x + l->width / 2), cy = (int)(l->y + l->height / 2);
    g_assert_cmpint(differing_pixels(plain.surface, told.surface, cx - 60, cy - 6, cx + 60,
                                     cy + 6),
                    >, 50);
    g_assert_cmpint(differing_pixels(plain.surface, told.surface, 0, 0, WIDTH, (int)l->y), ==, 0);
    cairo_surface_destroy(plain.surface);
    cairo_surface_destroy(told.surface);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/experiment-plot/markers-and-reference", test_markers_and_reference);
    g_test_add_func("/experiment-plot/log-axis-of-squares", test_log_axis_of_squares);
    g_test_add_func("/experiment-plot/side-by-side", test_side_by_side);
    g_test_add_func("/experiment-plot/empty-panel", test_empty_panel);
    return g_test_run();
}
