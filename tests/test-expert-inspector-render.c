/* The expert inspector's plots drawn offscreen, no display needed: histogram bars reach the
 * heights the layout predicts and no further, overlaid series blend as documented, the usage
 * line passes through its points, the bytes' bars grow right for a push up and left for a push
 * down, and an empty plot draws its message and no data. */
#include <glib.h>
#include <math.h>
#include <string.h>

#include "expert-inspector-render.h"

#define WIDTH 480
#define HEIGHT 320
/* A channel of a pixel wholly covered by a colour differs from it only by rounding to 8 bits. */
#define SAME_COLOUR 3
#define NOT_COLOUR 60

typedef enum { HISTOGRAM, USAGE, LOGIT } PlotKind;

typedef struct {
    PlotKind kind;
    const void *plot;
} Drawing;

static void draw(cairo_t *cr, const Drawing *d, const PlotStyle *style, ExpertPlotLayout *layout)
{
    switch (d->kind) {
    case HISTOGRAM:
        expert_histogram_plot_render(cr, WIDTH, HEIGHT, d->plot, style, layout);
        break;
    case USAGE:
        expert_usage_plot_render(cr, WIDTH, HEIGHT, d->plot, style, layout);
        break;
    case LOGIT:
        expert_logit_plot_render(cr, WIDTH, HEIGHT, d->plot, style, layout);
        break;
    }
}

/* Draws the plot; checks that the layout function alone gives the layout the drawing used. */
static cairo_surface_t *render(const Drawing *d, const PlotStyle *style, ExpertPlotLayout *layout)
{
    cairo_surface_t *surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, WIDTH, HEIGHT);
    cairo_t *cr = cairo_create(surface);
    draw(cr, d, style, layout);
    ExpertPlotLayout alone;
    switch (d->kind) {
    case HISTOGRAM:
        expert_histogram_plot_layout(cr, WIDTH, HEIGHT, d->plot, style, &alone);
        break;
    case USAGE:
        expert_usage_plot_layout(cr, WIDTH, HEIGHT, d->plot, style, &alone);
        break;
    case LOGIT:
        expert_logit_plot_layout(cr, WIDTH, HEIGHT, d->plot, style, &alone, NULL);
        break;
    }
    g_assert_cmpmem(&alone, sizeof alone, layout, sizeof *layout);
    cairo_destroy(cr);
    cairo_surface_flush(surface);
    g_assert_cmpfloat(layout->x, >, 0.0);
    g_assert_cmpfloat(layout->x + layout->width, <, WIDTH);
    g_assert_cmpfloat(layout->y, >, 0.0);
    g_assert_cmpfloat(layout->y + layout->height, <, HEIGHT);
    return surface;
}

static PlotColor pixel_at(cairo_surface_t *surface, double x, double y)
{
    int px = (int)floor(x), py = (int)floor(y);
    g_assert_cmpint(px, >=, 0);
    g_assert_cmpint(px, <, cairo_image_surface_get_width(surface));
    g_assert_cmpint(py, >=, 0);
    g_assert_cmpint(py, <, cairo_image_surface_get_height(surface));
    const unsigned char *row = cairo_image_surface_get_data(surface) +
                               (size_t)py * (size_t)cairo_image_surface_get_stride(surface);
    guint32 pixel = ((const guint32 *)(const void *)row)[px];
    return (PlotColor){ ((pixel >> 16) & 0xff) / 255.0, ((pixel >> 8) & 0xff) / 255.0,
                        (pixel & 0xff) / 255.0, 1.0 };
}

/* The largest channel difference, in 8-bit steps, between the pixel at (x, y) and colour. */
static int colour_distance(cairo_surface_t *surface, double x, double y, PlotColor colour)
{
    PlotColor p = pixel_at(surface, x, y);
    double got[3] = { p.red, p.green, p.blue }, want[3] = { colour.red, colour.green, colour.blue };
    int worst = 0;
    for (int c = 0; c < 3; c++)
        worst = MAX(worst, abs((int)lround(got[c] * 255.0) - (int)lround(want[c] * 255.0)));
    return worst;
}

static void assert_colour(cairo_surface_t *surface, double x, double y, PlotColor colour,
                          const char *what)
{
    int distance = colour_distance(surface, x, y, colour);
    if (distance > SAME_COLOUR)
        g_error("%s: the pixel at (%.1f, %.1f) is %d steps from the colour", what, x, y,
                distance);
}

static void assert_not_colour(cairo_surface_t *surface, double x, double y, PlotColor colour,
                              const char *what)
{
    int distance = colour_distance(surface, x, y, colour);
    if (distance < NOT_COLOUR)
        g_error("%s: the pixel at (%.1f, %.1f) is only %d steps from the colour", what, x, y,
                distance);
}

/* How many pixels of the data rectangle are the colour. */
static int count_colour(cairo_surface_t *surface, const ExpertPlotLayout *layout, PlotColor colour)
{
    int count = 0;
    for (int y = (int)ceil(layout->y); y < (int)floor(layout->y + layout->height); y++)
        for (int x = (int)ceil(layout->x); x < (int)floor(layout->x + layout->width); x++)
            count += colour_distance(surface, x + 0.5, y + 0.5, colour) <= SAME_COLOUR;
    return count;
}

/* Pixels of the box around (x, y) that are not the background: the message's glyphs. */
static int count_ink(cairo_surface_t *surface, double x, double y, double half_width,
                     PlotColor background)
{
    int count = 0;
    for (double py = y - 8.0; py <= y + 8.0; py += 1.0)
        for (double px = x - half_width; px <= x + half_width; px += 1.0)
            count += colour_distance(surface, px, py, background) > NOT_COLOUR;
    return count;
}

/* A point inside bin b, off its centre, where the grid's vertical lines fall in these tests. */
static double bin_centre(const ExpertPlotLayout *layout, const ExpertHistogramPlot *plot, int b)
{
    double width = (plot->hi - plot->lo) / plot->bins;
    return expert_plot_x_to_pixel(layout, plot->lo + (b + 0.35) * width);
}

/* Four bins of 0, 5, 10 and 2.5: each bar fills its bin up to its value and nothing above. */
static void test_histogram_bars(void)
{
    double values[] = { 0.0, 5.0, 10.0, 2.5 };
    ExpertHistogramPlot plot = {
        .bins = 4, .lo = -1.0, .hi = 3.0, .n_series = 1,
        .series = { { .name = "chosen", .color = 0, .values = values } },
        .title = "Activation", .x_label = "σ(uᵀx)", .y_label = "selections",
    };
    PlotStyle style;
    plot_style_init_light(&style);
    ExpertPlotLayout layout;
    cairo_surface_t *surface = render(&(Drawing){ HISTOGRAM, &plot }, &style, &layout);
    PlotColor bar = plot_palette_get(0);
    g_assert_cmpfloat(layout.x_min, ==, -1.0);
    g_assert_cmpfloat(layout.x_max, ==, 3.0);
    g_assert_cmpfloat(layout.y_min, ==, 0.0);
    g_assert_cmpfloat(layout.y_max, >=, 10.0);
    for (int b = 0; b < 4; b++) {
        double x = bin_centre(&layout, &plot, b);
        /* Below the top by two pixels, and above it by two. */
        double top = expert_plot_y_to_pixel(&layout, values[b]);
        if (values[b] > 0.0) {
            assert_colour(surface, x, top + 2.0, bar, "inside a bar");
            assert_colour(surface, x, expert_plot_y_to_pixel(&layout, values[b] / 2.0), bar,
                          "half way up a bar");
        }
        assert_not_colour(surface, x, top - 2.0, bar, "above a bar");
        assert_colour(surface, x, top - 2.0, style.background, "above a bar");
    }
    /* The highest bar fills its bin across, and the empty bin holds nothing. */
    double y = expert_plot_y_to_pixel(&layout, 5.0);
    assert_colour(surface, expert_plot_x_to_pixel(&layout, 1.05), y, bar, "left of bin 2");
    assert_colour(surface, expert_plot_x_to_pixel(&layout, 1.95), y, bar, "right of bin 2");
    assert_not_colour(surface, bin_centre(&layout, &plot, 0), expert_plot_y_to_pixel(&layout, 0.5),
                      bar, "the empty bin");
    cairo_surface_destroy(surface);
}

/* Two series over each other: where both have bars, the second over the first, each at the
 * overlay alpha, over the background. */
static void test_histogram_overlay(void)
{
    double all[] = { 0.2, 0.5, 0.3 }, chosen[] = { 0.0, 0.25, 0.75 };
    ExpertHistogramPlot plot = {
        .bins = 3, .lo = 0.0, .hi = 3.0, .n_series = 2,
        .series = { { .name = "every token", .color = 7, .values = all },
                    { .name = "chosen", .color = 0, .values = chosen } },
        .y_percent = true,
    };
    PlotStyle style;
    plot_style_init_light(&style);
    ExpertPlotLayout layout;
    cairo_surface_t *surface = render(&(Drawing){ HISTOGRAM, &plot }, &style, &layout);
    double a = EXPERT_HISTOGRAM_OVERLAY_ALPHA;
    PlotColor first = plot_color_mix(style.background, plot_palette_get(7), a);
    PlotColor both = plot_color_mix(first, plot_palette_get(0), a);
    PlotColor second = plot_color_mix(style.background, plot_palette_get(0), a);
    /* Bin 1: both up to 0.25, the first alone from 0.25 to 0.5. */
    double x = bin_centre(&layout, &plot, 1);
    assert_colour(surface, x, expert_plot_y_to_pixel(&layout, 0.13), both, "both series");
    assert_colour(surface, x, expert_plot_y_to_pixel(&layout, 0.43), first, "the first alone");
    /* Bin 2: the second is taller; above 0.3 it is alone. */
    x = bin_centre(&layout, &plot, 2);
    assert_colour(surface, x, expert_plot_y_to_pixel(&layout, 0.63), second, "the second alone");
    assert_colour(surface, x, expert_plot_y_to_pixel(&layout, 0.17), both, "both in bin 2");
    cairo_surface_destroy(surface);
}

/* All zero: the message in the middle and not one bar pixel. */
static void test_histogram_empty(void)
{
    double zeros[] = { 0.0, 0.0, 0.0 };
    ExpertHistogramPlot plot = {
        .bins = 3, .lo = 0.0, .hi = 1.0, .n_series = 1,
        .series = { { .color = 0, .values = zeros } },
        .message = "Never chosen",
    };
    PlotStyle style;
    plot_style_init_light(&style);
    ExpertPlotLayout layout;
    cairo_surface_t *surface = render(&(Drawing){ HISTOGRAM, &plot }, &style, &layout);
    g_assert_cmpint(count_colour(surface, &layout, plot_palette_get(0)), ==, 0);
    g_assert_cmpint(count_ink(surface, layout.x + layout.width / 2.0,
                              layout.y + layout.height / 2.0, 30.0, style.background),
                    >, 20);
    cairo_surface_destroy(surface);
}

/* The line passes through every point and the segments between them, not beside them. */
static void test_usage_line(void)
{
    double steps[] = { 0.0, 100.0, 200.0, 300.0 }, values[] = { 0.0, 10.0, 5.0, 5.0 };
    ExpertUsagePlot plot = { .n = 4, .steps = steps, .values = values, .color = 1,
                             .title = "Usage", .y_label = "selections per step" };
    PlotStyle style;
    plot_style_init_dark(&style);
    ExpertPlotLayout layout;
    cairo_surface_t *surface = render(&(Drawing){ USAGE, &plot }, &style, &layout);
    PlotColor line = plot_palette_get(1);
    g_assert_cmpfloat(layout.x_min, ==, 0.0);
    g_assert_cmpfloat(layout.x_max, ==, 300.0);
    g_assert_cmpfloat(layout.y_min, ==, 0.0);
    g_assert_cmpfloat(layout.y_max, >=, 10.0);
    for (int i = 1; i < 4; i++)
        assert_colour(surface, expert_plot_x_to_pixel(&layout, steps[i]),
                      expert_plot_y_to_pixel(&layout, values[i]), line, "a point");
    /* Along the flat last segment (off the grid), on it and 8 pixels above it. */
    double x = expert_plot_x_to_pixel(&layout, 265.0), y = expert_plot_y_to_pixel(&layout, 5.0);
    assert_colour(surface, x, y, line, "the last segment");
    assert_not_colour(surface, x, y - 8.0, line, "above the last segment");
    assert_colour(surface, x, y - 8.0, style.background, "above the last segment");
    cairo_surface_destroy(surface);
}

static void test_usage_empty(void)
{
    ExpertUsagePlot plot = { .n = 0, .color = 1, .message = "No history yet" };
    PlotStyle style;
    plot_style_init_light(&style);
    ExpertPlotLayout layout;
    cairo_surface_t *surface = render(&(Drawing){ USAGE, &plot }, &style, &layout);
    g_assert_cmpint(count_colour(surface, &layout, plot_palette_get(1)), ==, 0);
    g_assert_cmpint(count_ink(surface, layout.x + layout.width / 2.0,
                              layout.y + layout.height / 2.0, 30.0, style.background),
                    >, 20);
    cairo_surface_destroy(surface);
}

/* Up bars right of zero in the up colour, down bars left of it in the down colour, lengths in
 * proportion, the axis symmetric. */
static void test_logit_bars(void)
{
    const char *labels[] = { "e", "␣", "\\n", "Q" };
    double values[] = { 2.0, 1.0, -0.5, -1.5 };
    ExpertLogitPlot plot = { .n = 4, .n_up = 2, .labels = labels, .values = values,
                             .up_color = 2, .down_color = 5, .title = "Bytes",
                             .x_label = "logit effect" };
    PlotStyle style;
    plot_style_init_light(&style);
    ExpertPlotLayout layout;
    cairo_surface_t *surface = render(&(Drawing){ LOGIT, &plot }, &style, &layout);
    g_assert_cmpfloat(layout.x_min, ==, -2.0);
    g_assert_cmpfloat(layout.x_max, ==, 2.0);
    double centres[4];
    cairo_surface_t *scratch = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, 1, 1);
    cairo_t *cr = cairo_create(scratch);
    ExpertPlotLayout again;
    expert_logit_plot_layout(cr, WIDTH, HEIGHT, &plot, &style, &again, centres);
    cairo_destroy(cr);
    cairo_surface_destroy(scratch);
    PlotColor up = plot_palette_get(2), down = plot_palette_get(5);
    for (int i = 0; i < 4; i++) {
        PlotColor colour = values[i] > 0.0 ? up : down;
        g_assert_cmpfloat(centres[i], >, layout.y);
        g_assert_cmpfloat(centres[i], <, layout.y + layout.height);
        if (i > 0)
            g_assert_cmpfloat(centres[i], >, centres[i - 1]);
        /* Inside the bar near its end, and past its end. */
        double inside = expert_plot_x_to_pixel(&layout, values[i] * 0.9);
        double past = expert_plot_x_to_pixel(&layout, values[i] + (values[i] > 0 ? 0.1 : -0.1));
        assert_colour(surface, inside, centres[i], colour, "a bar");
        assert_not_colour(surface, past, centres[i], colour, "past a bar's end");
    }
    /* The gap between the groups is wider than the gap between neighbours in a group. */
    g_assert_cmpfloat(centres[2] - centres[1], >, centres[1] - centres[0] + 1.0);
    cairo_surface_destroy(surface);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/expert-inspector-render/histogram-bars", test_histogram_bars);
    g_test_add_func("/expert-inspector-render/histogram-overlay", test_histogram_overlay);
    g_test_add_func("/expert-inspector-render/histogram-empty", test_histogram_empty);
    g_test_add_func("/expert-inspector-render/usage-line", test_usage_line);
    g_test_add_func("/expert-inspector-render/usage-empty", test_usage_empty);
    g_test_add_func("/expert-inspector-render/logit-bars", test_logit_bars);
    return g_test_run();
}
