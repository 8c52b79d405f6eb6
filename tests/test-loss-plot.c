/* The loss-curve renderer drawn offscreen, no display needed: curves land on the pixels the
 * layout predicts, log axes give decades equal lengths, the debiased average of a constant is the
 * constant from the first point, hidden runs draw nothing, each x axis reads its own array; and
 * the ticks and number formats the plots share. */
#include <glib.h>
#include <math.h>
#include <string.h>

#include "loss-plot-render.h"
#include "plot-axes.h"

#define WIDTH 480
#define HEIGHT 320
#define N_POINTS 101
/* A channel of a pixel that the curve covers entirely differs from the palette colour only by
 * rounding to 8 bits; one 8 pixels away has none of it. */
#define SAME_COLOUR 3
#define NOT_COLOUR 60
#define AWAY 8

typedef struct {
    double steps[N_POINTS];
    double tokens[N_POINTS];
    double flops[N_POINTS];
    double loss[N_POINTS];
    LossPlotSeries series;
    LossPlotModel model;
} Fixture;

/* Steps 0..100, tokens = step², flops = 1e9 step³: three different x axes for the same loss. */
static void fixture_init(Fixture *f, double (*loss_of_step)(double))
{
    memset(f, 0, sizeof *f);
    for (int i = 0; i < N_POINTS; i++) {
        f->steps[i] = i;
        f->tokens[i] = (double)i * i;
        f->flops[i] = 1e9 * i * i * i;
        f->loss[i] = loss_of_step(i);
    }
    f->series = (LossPlotSeries){
        .name = "PEER",
        .color = 0,
        .visible = true,
        .n_train = N_POINTS,
        .train_steps = f->steps,
        .train_tokens = f->tokens,
        .train_flops = f->flops,
        .train_loss = f->loss,
    };
    f->model = (LossPlotModel){.series = &f->series, .n_series = 1};
}

static double constant_two(double step)
{
    return 2.0;
}

/* Falling, as a loss does, so it stays clear of the legend at the top right. */
static double straight_line(double step)
{
    return 3.0 - step / 50.0;
}

static cairo_surface_t *render(const LossPlotModel *model, LossPlotLayout *layout)
{
    PlotStyle style;
    plot_style_init_light(&style);
    cairo_surface_t *surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, WIDTH, HEIGHT);
    cairo_t *cr = cairo_create(surface);
    loss_plot_render(cr, WIDTH, HEIGHT, model, &style, layout);

    /* The layout on its own is the one the drawing used. */
    LossPlotLayout alone;
    loss_plot_layout(cr, WIDTH, HEIGHT, model, &style, &alone);
    g_assert_cmpmem(&alone, sizeof alone, layout, sizeof *layout);

    cairo_destroy(cr);
    cairo_surface_flush(surface);
    return surface;
}

/* The largest channel difference between the pixel at (x, y) and colour (opaque background, so
 * the premultiplied pixel is the colour itself); 255 outside the surface. */
static int colour_distance(cairo_surface_t *surface, double x, double y, PlotColor colour)
{
    int px = (int)floor(x), py = (int)floor(y);
    if (px < 0 || px >= cairo_image_surface_get_width(surface) || py < 0 ||
        py >= cairo_image_surface_get_height(surface))
        return 255;
    const unsigned char *row = cairo_image_surface_get_data(surface) +
                               (size_t)py * (size_t)cairo_image_surface_get_stride(surface);
    guint32 pixel = ((const guint32 *)(const void *)row)[px];
    int rgb[3] = {(pixel >> 16) & 0xff, (pixel >> 8) & 0xff, pixel & 0xff};
    double want[3] = {colour.red, colour.green, colour.blue};
    int worst = 0;
    for (int c = 0; c < 3; c++)
        worst = MAX(worst, abs(rgb[c] - (int)lround(want[c] * 255.0)));
    return worst;
}

/* The closest match to colour among the pixel at (x, y) and its eight neighbours: a sloping
 * two-pixel line covers the pixel its centre crosses only partly, but one beside it wholly. */
static int nearby_colour_distance(cairo_surface_t *surface, double x, double y, PlotColor colour)
{
    int best = 255;
    for (int dy = -1; dy <= 1; dy++)
        for (int dx = -1; dx <= 1; dx++)
            best = MIN(best, colour_distance(surface, x + dx, y + dy, colour));
    return best;
}

/* The curve through (x, loss) is on the predicted pixel and not 8 pixels above or below it. */
static void assert_curve_at(cairo_surface_t *surface, const LossPlotLayout *layout, double x,
                            double loss, PlotColor colour)
{
    double px = loss_plot_layout_x_to_pixel(layout, x);
    double py = loss_plot_layout_y_to_pixel(layout, loss);
    g_test_message("x %g loss %g at pixel (%.1f, %.1f)", x, loss, px, py);
    g_assert_cmpfloat(px, >=, layout->x);
    g_assert_cmpfloat(px, <=, layout->x + layout->width);
    g_assert_cmpfloat(py, >=, layout->y);
    g_assert_cmpfloat(py, <=, layout->y + layout->height);
    g_assert_cmpint(nearby_colour_distance(surface, px, py, colour), <=, SAME_COLOUR);
    g_assert_cmpint(nearby_colour_distance(surface, px, py - AWAY, colour), >=, NOT_COLOUR);
    g_assert_cmpint(nearby_colour_distance(surface, px, py + AWAY, colour), >=, NOT_COLOUR);
}

static int count_colour(cairo_surface_t *surface, PlotColor colour)
{
    int count = 0;
    for (int y = 0; y < HEIGHT; y++)
        for (int x = 0; x < WIDTH; x++)
            count += colour_distance(surface, x + 0.5, y + 0.5, colour) <= SAME_COLOUR;
    return count;
}

static void test_constant_curve_pixels(void)
{
    Fixture f;
    fixture_init(&f, constant_two);
    f.model.fixed_x = f.model.fixed_y = true;
    f.model.x_min = 0.0;
    f.model.x_max = 100.0;
    f.model.y_min = 0.0;
    f.model.y_max = 4.0;
    LossPlotLayout layout;
    cairo_surface_t *surface = render(&f.model, &layout);

    g_assert_cmpfloat(layout.x_min, ==, 0.0);
    g_assert_cmpfloat(layout.x_max, ==, 100.0);
    g_assert_cmpfloat(layout.y_min, ==, 0.0);
    g_assert_cmpfloat(layout.y_max, ==, 4.0);
    g_assert_cmpfloat(layout.x, >, 0.0);
    g_assert_cmpfloat(layout.x + layout.width, <=, WIDTH);
    g_assert_cmpfloat(layout.y + layout.height, <=, HEIGHT);
    /* Loss 2 is half way up the data rectangle. */
    g_assert_cmpfloat_with_epsilon(loss_plot_layout_y_to_pixel(&layout, 2.0),
                                   layout.y + layout.height / 2.0, 1e-9);

    PlotColor colour = plot_palette_get(0);
    for (double x = 5.0; x <= 95.0; x += 15.0)
        assert_curve_at(surface, &layout, x, 2.0, colour);
    cairo_surface_destroy(surface);
}

static void test_straight_line_pixels(void)
{
    Fixture f;
    fixture_init(&f, straight_line);
    f.series.color = 1;
    LossPlotLayout layout;
    cairo_surface_t *surface = render(&f.model, &layout);

    /* Fitted: x from the first to the last step, y with a margin around 1..3. */
    g_assert_cmpfloat(layout.x_min, ==, 0.0);
    g_assert_cmpfloat(layout.x_max, ==, 100.0);
    g_assert_cmpfloat(layout.y_min, <, 1.0);
    g_assert_cmpfloat(layout.y_max, >, 3.0);
    for (double x = 10.0; x <= 90.0; x += 20.0)
        assert_curve_at(surface, &layout, x, straight_line(x), plot_palette_get(1));
    cairo_surface_destroy(surface);
}

static void test_log_y_decades(void)
{
    Fixture f;
    fixture_init(&f, constant_two);
    f.model.log_y = true;
    f.model.fixed_y = true;
    f.model.y_min = 0.1;
    f.model.y_max = 10.0;
    LossPlotLayout layout;
    cairo_surface_t *surface = render(&f.model, &layout);

    double at_tenth = loss_plot_layout_y_to_pixel(&layout, 0.1);
    double at_one = loss_plot_layout_y_to_pixel(&layout, 1.0);
    double at_ten = loss_plot_layout_y_to_pixel(&layout, 10.0);
    g_assert_cmpfloat_with_epsilon(at_tenth, layout.y + layout.height, 1e-9);
    g_assert_cmpfloat_with_epsilon(at_ten, layout.y, 1e-9);
    g_assert_cmpfloat_with_epsilon(at_tenth - at_one, at_one - at_ten, 1e-9);
    /* A factor of two is the same distance anywhere on the axis. */
    g_assert_cmpfloat_with_epsilon(loss_plot_layout_y_to_pixel(&layout, 0.2) - at_tenth,
                                   loss_plot_layout_y_to_pixel(&layout, 4.0) -
                                       loss_plot_layout_y_to_pixel(&layout, 2.0),
                                   1e-9);
    for (double loss = 0.15; loss < 10.0; loss *= 1.7)
        g_assert_cmpfloat_with_epsilon(
            loss_plot_layout_pixel_to_y(&layout, loss_plot_layout_y_to_pixel(&layout, loss)), loss,
            1e-12 * loss);

    for (double x = 5.0; x <= 95.0; x += 30.0)
        assert_curve_at(surface, &layout, x, 2.0, plot_palette_get(0));
    cairo_surface_destroy(surface);

    /* Log x likewise, on the steps from 1 (step 0 has no place on it). */
    f.model.log_x = true;
    surface = render(&f.model, &layout);
    g_assert_cmpfloat(layout.x_min, ==, 1.0);
    g_assert_cmpfloat(layout.x_max, ==, 100.0);
    g_assert_cmpfloat_with_epsilon(loss_plot_layout_x_to_pixel(&layout, 10.0),
                                   layout.x + layout.width / 2.0, 1e-9);
    for (double x = 2.0; x <= 90.0; x *= 3.0)
        assert_curve_at(surface, &layout, x, 2.0, plot_palette_get(0));
    cairo_surface_destroy(surface);
}

static void test_smoothing(void)
{
    double constant[50], smoothed[50];
    for (int i = 0; i < 50; i++)
        constant[i] = 2.0;
    double weights[] = {0.0, 0.3, 0.6, 0.9, 0.99, 0.999};
    for (size_t w = 0; w < G_N_ELEMENTS(weights); w++) {
        loss_plot_smooth(constant, 50, weights[w], smoothed);
        for (int i = 0; i < 50; i++)
            g_assert_cmpfloat_with_epsilon(smoothed[i], 2.0, 1e-12);
    }

    /* By hand, w = 0.5 on 1, 3, 5: the averages 0.5, 1.75, 3.375 over 1 - 0.5^t. */
    double values[] = {1.0, 3.0, 5.0};
    double out[3];
    loss_plot_smooth(values, 3, 0.5, out);
    g_assert_cmpfloat_with_epsilon(out[0], 1.0, 1e-12);
    g_assert_cmpfloat_with_epsilon(out[1], 1.75 / 0.75, 1e-12);
    g_assert_cmpfloat_with_epsilon(out[2], 3.375 / 0.875, 1e-12);

    /* A NaN stays where it is and does not enter the average. */
    double with_nan[] = {1.0, NAN, 3.0};
    loss_plot_smooth(with_nan, 3, 0.5, out);
    g_assert_cmpfloat_with_epsilon(out[0], 1.0, 1e-12);
    g_assert_true(isnan(out[1]));
    g_assert_cmpfloat_with_epsilon(out[2], 1.75 / 0.75, 1e-12);

    /* Drawn: the smoothed constant is at 2 from the first step, and so is the read-out. */
    Fixture f;
    fixture_init(&f, constant_two);
    f.model.smoothing = 0.9;
    f.model.fixed_y = true;
    f.model.y_min = 0.0;
    f.model.y_max = 4.0;
    LossPlotLayout layout;
    cairo_surface_t *surface = render(&f.model, &layout);
    for (double x = 1.0; x <= 91.0; x += 15.0) {
        assert_curve_at(surface, &layout, x, 2.0, plot_palette_get(0));
        double loss;
        g_assert_true(loss_plot_series_value_at(&f.model, 0, x, &loss));
        g_assert_cmpfloat_with_epsilon(loss, 2.0, 1e-12);
    }
    cairo_surface_destroy(surface);
}

static void test_hidden_series_draws_nothing(void)
{
    Fixture f;
    fixture_init(&f, straight_line);
    f.model.fixed_x = f.model.fixed_y = true;
    f.model.x_max = 100.0;
    f.model.y_max = 4.0;
    f.series.n_val = 3;
    f.series.val_steps = f.steps;
    f.series.val_loss = f.loss;
    LossPlotLayout layout;

    cairo_surface_t *shown = render(&f.model, &layout);
    g_assert_cmpint(count_colour(shown, plot_palette_get(0)), >, 100);
    cairo_surface_destroy(shown);

    f.series.visible = false;
    cairo_surface_t *hidden = render(&f.model, &layout);
    LossPlotModel empty = f.model;
    empty.n_series = 0;
    cairo_surface_t *none = render(&empty, &layout);
    g_assert_cmpint(count_colour(hidden, plot_palette_get(0)), ==, 0);
    g_assert_cmpmem(
        cairo_image_surface_get_data(hidden), cairo_image_surface_get_stride(hidden) * HEIGHT,
        cairo_image_surface_get_data(none), cairo_image_surface_get_stride(none) * HEIGHT);
    double loss;
    g_assert_false(loss_plot_series_value_at(&f.model, 0, 50.0, &loss));
    cairo_surface_destroy(hidden);
    cairo_surface_destroy(none);
}

static double square_root_line(double x)
{
    return straight_line(sqrt(x));
}

static double cube_root_line(double x)
{
    return straight_line(cbrt(x / 1e9));
}

/* The loss is a straight line in steps; tokens are step² and FLOPs 1e9 step³, so on those axes
 * the same points trace 3 - sqrt(t)/50 and 3 - cbrt(f/1e9)/50. The points checked are where
 * the curve is no steeper than about 60 degrees, so 8 pixels above it is off it. */
static void test_x_axis_kinds(void)
{
    Fixture f;
    fixture_init(&f, straight_line);
    struct {
        LossPlotXAxis axis;
        double x_max;
        double (*loss_at)(double);
        double xs[3];
    } kinds[] = {
        {LOSS_PLOT_X_STEPS, 100.0, straight_line, {20.0, 50.0, 80.0}},
        {LOSS_PLOT_X_TOKENS, 1e4, square_root_line, {400.0, 2500.0, 6400.0}},
        {LOSS_PLOT_X_FLOPS, 1e15, cube_root_line, {4.2875e13, 1.25e14, 5.12e14}},
    };
    for (size_t k = 0; k < G_N_ELEMENTS(kinds); k++) {
        f.model.x_axis = kinds[k].axis;
        LossPlotLayout layout;
        cairo_surface_t *surface = render(&f.model, &layout);
        g_assert_cmpfloat(layout.x_min, ==, 0.0);
        g_assert_cmpfloat_with_epsilon(layout.x_max, kinds[k].x_max, 1e-9 * kinds[k].x_max);
        for (int i = 0; i < 3; i++) {
            double x = kinds[k].xs[i];
            assert_curve_at(surface, &layout, x, kinds[k].loss_at(x), plot_palette_get(0));
            double loss;
            g_assert_true(loss_plot_series_value_at(&f.model, 0, x, &loss));
            g_assert_cmpfloat_with_epsilon(loss, kinds[k].loss_at(x), 1e-9);
        }
        cairo_surface_destroy(surface);
    }

    /* A run without FLOPs has nothing on that axis (but keeps its place in the legend). */
    f.series.train_flops = NULL;
    f.model.x_axis = LOSS_PLOT_X_FLOPS;
    f.model.hide_legend = true;
    LossPlotLayout layout;
    cairo_surface_t *surface = render(&f.model, &layout);
    g_assert_cmpint(count_colour(surface, plot_palette_get(0)), ==, 0);
    cairo_surface_destroy(surface);
}

static void test_validation_markers(void)
{
    Fixture f;
    fixture_init(&f, constant_two);
    double val_steps[] = {25.0, 50.0, 75.0};
    double val_tokens[] = {625.0, 2500.0, 5625.0};
    double val_loss[] = {3.0, 2.8, 2.6};
    f.series.n_val = 3;
    f.series.val_steps = val_steps;
    f.series.val_tokens = val_tokens;
    f.series.val_loss = val_loss;
    f.series.color = 2;
    f.model.hide_legend = true;
    f.model.fixed_y = true;
    f.model.y_min = 1.0;
    f.model.y_max = 4.0;
    for (int axis = LOSS_PLOT_X_STEPS; axis <= LOSS_PLOT_X_TOKENS; axis++) {
        f.model.x_axis = axis;
        const double *xs = axis == LOSS_PLOT_X_STEPS ? val_steps : val_tokens;
        LossPlotLayout layout;
        cairo_surface_t *surface = render(&f.model, &layout);
        for (int i = 0; i < 3; i++)
            assert_curve_at(surface, &layout, xs[i], val_loss[i], plot_palette_get(2));
        /* The dashed line between markers: some of the way from one to the next is coloured. */
        int coloured = 0;
        double x0 = loss_plot_layout_x_to_pixel(&layout, xs[0]);
        double x1 = loss_plot_layout_x_to_pixel(&layout, xs[1]);
        for (double px = x0 + 6.0; px < x1 - 6.0; px += 1.0) {
            double t = (px - x0) / (x1 - x0);
            double py =
                loss_plot_layout_y_to_pixel(&layout, val_loss[0] + t * (val_loss[1] - val_loss[0]));
            coloured += colour_distance(surface, px, py, plot_palette_get(2)) <= 40;
        }
        g_assert_cmpint(coloured, >, (int)((x1 - x0 - 12.0) / 4.0));
        g_assert_cmpint(coloured, <, (int)(x1 - x0 - 12.0));
        cairo_surface_destroy(surface);
    }
}

static void collect_text(const char *text, double x, double y, double angle, double size,
                         void *user_data)
{
    g_assert_true(isfinite(x) && isfinite(y) && size > 0.0);
    g_ptr_array_add(user_data, g_strdup(text));
}

static gboolean contains_string(GPtrArray *strings, const char *wanted)
{
    for (guint i = 0; i < strings->len; i++)
        if (strcmp(g_ptr_array_index(strings, i), wanted) == 0)
            return TRUE;
    return FALSE;
}

/* Every word drawn reaches the text callback (an SVG export writes them as text). */
static void test_text_reported(void)
{
    Fixture f;
    fixture_init(&f, straight_line);
    double val_steps[] = {50.0};
    double val_tokens[] = {2500.0};
    double val_loss[] = {2.0};
    f.series.n_val = 1;
    f.series.val_steps = val_steps;
    f.series.val_tokens = val_tokens;
    f.series.val_loss = val_loss;
    f.model.title = "Loss of PEER";
    f.model.x_axis = LOSS_PLOT_X_TOKENS;
    GPtrArray *strings = g_ptr_array_new_with_free_func(g_free);
    PlotStyle style;
    plot_style_init_light(&style);
    style.text_func = collect_text;
    style.text_data = strings;
    cairo_surface_t *surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, WIDTH, HEIGHT);
    cairo_t *cr = cairo_create(surface);
    loss_plot_render(cr, WIDTH, HEIGHT, &f.model, &style, NULL);
    cairo_destroy(cr);
    cairo_surface_destroy(surface);

    g_assert_true(contains_string(strings, "Loss of PEER"));
    g_assert_true(contains_string(strings, "tokens"));
    g_assert_true(contains_string(strings, "loss (nats)"));
    g_assert_true(contains_string(strings, "PEER"));
    g_assert_true(contains_string(strings, "validation"));
    g_assert_true(contains_string(strings, "4k"));
    g_ptr_array_unref(strings);
}

static cairo_surface_t *surface_copy(cairo_surface_t *surface)
{
    cairo_surface_t *copy = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, WIDTH, HEIGHT);
    cairo_t *cr = cairo_create(copy);
    cairo_set_source_surface(cr, surface, 0.0, 0.0);
    cairo_set_operator(cr, CAIRO_OPERATOR_SOURCE);
    cairo_paint(cr);
    cairo_destroy(cr);
    cairo_surface_flush(copy);
    return copy;
}

static void test_hover(void)
{
    Fixture f;
    fixture_init(&f, straight_line);
    LossPlotLayout layout;
    cairo_surface_t *plot = render(&f.model, &layout);
    PlotStyle style;
    plot_style_init_light(&style);

    double loss;
    g_assert_true(loss_plot_series_value_at(&f.model, 0, 37.5, &loss));
    g_assert_cmpfloat_with_epsilon(loss, straight_line(37.5), 1e-12);
    g_assert_false(loss_plot_series_value_at(&f.model, 0, 100.5, &loss));
    g_assert_false(loss_plot_series_value_at(&f.model, 0, -0.5, &loss));
    g_assert_false(loss_plot_series_value_at(&f.model, 1, 50.0, &loss));

    /* Outside the data rectangle nothing is drawn; inside, the crosshair and the box. */
    cairo_surface_t *hovered = surface_copy(plot);
    cairo_t *cr = cairo_create(hovered);
    loss_plot_render_hover(cr, WIDTH, HEIGHT, &f.model, &style, &layout, layout.x - 5.0, 10.0);
    cairo_surface_flush(hovered);
    g_assert_cmpmem(
        cairo_image_surface_get_data(hovered), cairo_image_surface_get_stride(hovered) * HEIGHT,
        cairo_image_surface_get_data(plot), cairo_image_surface_get_stride(plot) * HEIGHT);
    double px = loss_plot_layout_x_to_pixel(&layout, 50.0);
    loss_plot_render_hover(cr, WIDTH, HEIGHT, &f.model, &style, &layout, px,
                           layout.y + layout.height / 2.0);
    cairo_destroy(cr);
    cairo_surface_flush(hovered);
    g_assert_cmpint(memcmp(cairo_image_surface_get_data(hovered),
                           cairo_image_surface_get_data(plot),
                           (size_t)cairo_image_surface_get_stride(plot) * HEIGHT),
                    !=, 0);
    /* The dot on the curve at the pointer's x. */
    g_assert_cmpint(nearby_colour_distance(
                        hovered, px, loss_plot_layout_y_to_pixel(&layout, straight_line(50.0)),
                        plot_palette_get(0)),
                    <=, SAME_COLOUR);
    cairo_surface_destroy(hovered);
    cairo_surface_destroy(plot);
}

/* Gaps, values a log axis cannot show, a run of a million points, no data and no room: drawn
 * without complaint, the gaps left open. */
static void test_awkward_data(void)
{
    Fixture f;
    fixture_init(&f, constant_two);
    for (int i = 40; i < 60; i++)
        f.loss[i] = NAN;
    f.loss[10] = INFINITY;
    f.loss[20] = 0.0;
    f.model.log_y = true;
    LossPlotLayout layout;
    cairo_surface_t *surface = render(&f.model, &layout);
    g_assert_cmpint(nearby_colour_distance(surface, loss_plot_layout_x_to_pixel(&layout, 50.0),
                                           loss_plot_layout_y_to_pixel(&layout, 2.0),
                                           plot_palette_get(0)),
                    >=, NOT_COLOUR);
    assert_curve_at(surface, &layout, 30.0, 2.0, plot_palette_get(0));
    assert_curve_at(surface, &layout, 70.0, 2.0, plot_palette_get(0));
    cairo_surface_destroy(surface);

    size_t n = 1000000;
    double *steps = g_new(double, n), *loss = g_new(double, n);
    for (size_t i = 0; i < n; i++) {
        steps[i] = (double)i;
        loss[i] = 2.0 + 0.5 * sin((double)i * 0.001) + ((i * 2654435761u) % 1000) * 1e-4;
    }
    LossPlotSeries big = {
        .name = "long", .visible = true, .n_train = n, .train_steps = steps, .train_loss = loss};
    LossPlotModel model = {.series = &big, .n_series = 1, .smoothing = 0.99};
    surface = render(&model, &layout);
    g_assert_cmpint(count_colour(surface, plot_palette_get(0)), >, 1000);
    cairo_surface_destroy(surface);
    g_free(steps);
    g_free(loss);

    LossPlotModel empty = {0};
    surface = render(&empty, &layout);
    g_assert_cmpfloat(layout.x_max, >, layout.x_min);
    g_assert_cmpfloat(layout.y_max, >, layout.y_min);
    cairo_surface_destroy(surface);

    PlotStyle style;
    plot_style_init_dark(&style);
    cairo_surface_t *tiny = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, 12, 9);
    cairo_t *cr = cairo_create(tiny);
    loss_plot_render(cr, 12, 9, &f.model, &style, &layout);
    g_assert_cmpfloat(layout.width, >, 0.0);
    g_assert_cmpfloat(layout.height, >, 0.0);
    cairo_destroy(cr);
    cairo_surface_destroy(tiny);
}

static void test_nice_ticks(void)
{
    g_assert_cmpfloat(plot_nice_step(100.0, 5.0), ==, 20.0);
    g_assert_cmpfloat(plot_nice_step(1.0, 10.0), ==, 0.1);
    g_assert_cmpfloat(plot_nice_step(3000.0, 6.0), ==, 500.0);
    g_assert_cmpfloat_with_epsilon(plot_nice_step(7e17, 7.0), 1e17, 1.0);

    PlotTicks ticks;
    plot_ticks_linear(&ticks, 0.0, 100.0, 5.0);
    g_assert_cmpuint(ticks.n, ==, 6);
    for (size_t i = 0; i < ticks.n; i++) {
        g_assert_cmpfloat(ticks.ticks[i].value, ==, 20.0 * (double)i);
        g_assert_true(ticks.ticks[i].major);
    }
    plot_ticks_linear(&ticks, 1.23, 1.67, 4.0);
    g_assert_cmpfloat_with_epsilon(ticks.label_step, 0.1, 1e-15);
    g_assert_cmpfloat_with_epsilon(ticks.ticks[0].value, 1.3, 1e-12);
    g_assert_cmpfloat_with_epsilon(ticks.ticks[ticks.n - 1].value, 1.6, 1e-12);

    /* Decades, with unlabelled 2..9 between them. */
    plot_ticks_log(&ticks, 1.0, 1e4, 8.0);
    size_t majors = 0;
    for (size_t i = 0; i < ticks.n; i++) {
        if (ticks.ticks[i].major) {
            g_assert_cmpfloat_with_epsilon(ticks.ticks[i].value, pow(10.0, (double)majors), 1e-9);
            majors++;
        }
    }
    g_assert_cmpuint(majors, ==, 5);
    g_assert_cmpuint(ticks.n, ==, 4 * 9 + 1);
    /* Seventeen decades for about eight ticks: every third, on the thousands, and no minor
     * ticks. */
    plot_ticks_log(&ticks, 1e2, 1e18, 8.0);
    g_assert_cmpuint(ticks.n, ==, 6);
    for (size_t i = 0; i < ticks.n; i++) {
        g_assert_true(ticks.ticks[i].major);
        g_assert_cmpfloat_with_epsilon(ticks.ticks[i].value, pow(10.0, 3.0 * (double)(i + 1)),
                                       1e-9 * ticks.ticks[i].value);
    }
    /* Less than a decade, as a loss in nats is: the digits, and 1.5. */
    plot_ticks_log(&ticks, 1.2, 7.4, 10.0);
    double want[] = {1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0};
    g_assert_cmpuint(ticks.n, ==, G_N_ELEMENTS(want));
    for (size_t i = 0; i < ticks.n; i++)
        g_assert_cmpfloat_with_epsilon(ticks.ticks[i].value, want[i], 1e-12);
    /* Shorter still: a linear step. */
    plot_ticks_log(&ticks, 2.1, 2.9, 5.0);
    g_assert_cmpuint(ticks.n, >=, 3);
    g_assert_cmpfloat(ticks.label_step, >, 0.0);
}

static void assert_format(double value, double step, PlotNumberStyle style, const char *want)
{
    char buffer[64];
    g_assert_cmpstr(plot_format_number(value, step, style, buffer, sizeof buffer), ==, want);
}

static void test_number_format(void)
{
    assert_format(0.0, 0.5, PLOT_NUMBER_PLAIN, "0");
    assert_format(2.5, 0.5, PLOT_NUMBER_PLAIN, "2.5");
    assert_format(2.0, 0.5, PLOT_NUMBER_PLAIN, "2");
    assert_format(0.05, 0.05, PLOT_NUMBER_PLAIN, "0.05");
    assert_format(1500.0, 500.0, PLOT_NUMBER_PLAIN, "1500");
    assert_format(2.3456, 0.0, PLOT_NUMBER_PLAIN, "2.35");
    assert_format(950.0, 50.0, PLOT_NUMBER_SI, "950");
    assert_format(1000.0, 500.0, PLOT_NUMBER_SI, "1k");
    assert_format(1200.0, 200.0, PLOT_NUMBER_SI, "1.2k");
    assert_format(12500.0, 2500.0, PLOT_NUMBER_SI, "12.5k");
    assert_format(3.4e6, 2e5, PLOT_NUMBER_SI, "3.4M");
    assert_format(5.6e9, 2e8, PLOT_NUMBER_SI, "5.6G");
    assert_format(7.8e12, 1e11, PLOT_NUMBER_SI, "7.8T");
    assert_format(1234567.0, 0.0, PLOT_NUMBER_SI, "1.23M");
    assert_format(1e18, 2e17, PLOT_NUMBER_SCIENTIFIC, "1e18");
    assert_format(1.2e18, 2e17, PLOT_NUMBER_SCIENTIFIC, "1.2e18");
    assert_format(2.5e17, 5e16, PLOT_NUMBER_SCIENTIFIC, "2.5e17");
    assert_format(1.25e18, 2.5e17, PLOT_NUMBER_SCIENTIFIC, "1.25e18");
    assert_format(4.5678e15, 0.0, PLOT_NUMBER_SCIENTIFIC, "4.57e15");
    assert_format(9.999e17, 0.0, PLOT_NUMBER_SCIENTIFIC, "1e18");
    assert_format(500.0, 100.0, PLOT_NUMBER_SCIENTIFIC, "500");
    assert_format(-3e-6, 0.0, PLOT_NUMBER_PLAIN, "-3e-6");
}

static void test_palette(void)
{
    /* Distinct colours, none too close to white to see. */
    for (unsigned i = 0; i < PLOT_PALETTE_SIZE; i++) {
        PlotColor a = plot_palette_get(i);
        g_assert_cmpfloat(plot_color_luminance(a), <, 0.8);
        for (unsigned j = i + 1; j < PLOT_PALETTE_SIZE; j++) {
            PlotColor b = plot_palette_get(j);
            double distance = fabs(a.red - b.red) + fabs(a.green - b.green) + fabs(a.blue - b.blue);
            g_assert_cmpfloat(distance, >, 0.3);
        }
    }
    PlotColor wrapped = plot_palette_get(PLOT_PALETTE_SIZE + 1), second = plot_palette_get(1);
    g_assert_cmpmem(&wrapped, sizeof wrapped, &second, sizeof second);

    PlotStyle light, dark;
    plot_style_init_light(&light);
    plot_style_init_dark(&dark);
    g_assert_cmpfloat(plot_color_luminance(light.background), >, 0.5);
    g_assert_cmpfloat(plot_color_luminance(dark.background), <, 0.5);
    g_assert_cmpfloat(plot_color_luminance(dark.foreground), >, 0.5);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/loss-plot/constant-curve-pixels", test_constant_curve_pixels);
    g_test_add_func("/loss-plot/straight-line-pixels", test_straight_line_pixels);
    g_test_add_func("/loss-plot/log-axes", test_log_y_decades);
    g_test_add_func("/loss-plot/smoothing", test_smoothing);
    g_test_add_func("/loss-plot/hidden-series", test_hidden_series_draws_nothing);
    g_test_add_func("/loss-plot/x-axis-kinds", test_x_axis_kinds);
    g_test_add_func("/loss-plot/validation", test_validation_markers);
    g_test_add_func("/loss-plot/text", test_text_reported);
    g_test_add_func("/loss-plot/hover", test_hover);
    g_test_add_func("/loss-plot/awkward-data", test_awkward_data);
    g_test_add_func("/plot-axes/nice-ticks", test_nice_ticks);
    g_test_add_func("/plot-axes/number-format", test_number_format);
    g_test_add_func("/plot-axes/palette", test_palette);
    return g_test_run();
}
