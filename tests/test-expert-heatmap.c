/* The expert heat-map renderer drawn offscreen, no display needed: the colour map's ends and its
 * even rise in lightness; a known grid drawn with the expected colour at the centre of every
 * cell, linear and log, empty cells in the empty colour; a pixel maps to the cell drawn there and
 * back at several zoom and pan positions; zooming keeps the point under the pointer; marked
 * cells are ringed; the colour bar's numbers are the range's. */
#include <glib.h>
#include <math.h>
#include <string.h>

#include "expert-heatmap-render.h"

#define WIDTH 520
#define HEIGHT 400

static uint32_t pixel_at(cairo_surface_t *surface, double x, double y)
{
    int stride = cairo_image_surface_get_stride(surface);
    const unsigned char *data = cairo_image_surface_get_data(surface);
    return *(const uint32_t *)(const void *)(data + (size_t)floor(y) * stride +
                                             (size_t)floor(x) * 4);
}

static int channel_distance(uint32_t a, uint32_t b)
{
    int worst = 0;
    for (int shift = 0; shift < 32; shift += 8)
        worst = MAX(worst, abs((int)((a >> shift) & 0xff) - (int)((b >> shift) & 0xff)));
    return worst;
}

static uint32_t pixel_of_color(PlotColor c)
{
    return 0xff000000u | (uint32_t)lround(c.red * 255.0) << 16 |
           (uint32_t)lround(c.green * 255.0) << 8 | (uint32_t)lround(c.blue * 255.0);
}

static cairo_surface_t *render(const ExpertHeatmapModel *model, const ExpertHeatmapView *view,
                               const PlotStyle *style, ExpertHeatmapLayout *layout)
{
    cairo_surface_t *surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, WIDTH, HEIGHT);
    cairo_t *cr = cairo_create(surface);
    expert_heatmap_render(cr, WIDTH, HEIGHT, model, view, style, NULL, layout);
    /* The layout on its own is the one the drawing used. */
    ExpertHeatmapLayout alone;
    ExpertHeatmapView whole;
    expert_heatmap_view_reset(&whole, model->side);
    expert_heatmap_layout(cr, WIDTH, HEIGHT, model, view ? view : &whole, style, &alone);
    g_assert_cmpmem(&alone, sizeof alone, layout, sizeof *layout);
    cairo_destroy(cr);
    cairo_surface_flush(surface);
    return surface;
}

static void test_colormap(void)
{
    uint32_t lut[EXPERT_HEATMAP_COLORS];
    expert_heatmap_colormap(lut);
    /* The ends are viridis's: interpolating in OKLab and back changes them by rounding only. */
    g_assert_cmpint(channel_distance(lut[0], 0xff440154u), <=, 1);
    g_assert_cmpint(channel_distance(lut[EXPERT_HEATMAP_COLORS - 1], 0xfffde725u), <=, 1);
    double luminance[EXPERT_HEATMAP_COLORS];
    for (int i = 0; i < EXPERT_HEATMAP_COLORS; i++) {
        g_assert_cmpuint(lut[i] >> 24, ==, 0xff);
        PlotColor c = {((lut[i] >> 16) & 0xff) / 255.0, ((lut[i] >> 8) & 0xff) / 255.0,
                       (lut[i] & 0xff) / 255.0, 1.0};
        luminance[i] = plot_color_luminance(c);
    }
    /* Lighter all the way, so the order reads without hue: every four steps, and at every step
     * but for rounding to 8 bits (a channel's half level moves the luminance by < 1e-3). */
    for (int i = 1; i < EXPERT_HEATMAP_COLORS; i++) {
        g_assert_cmpfloat(luminance[i], >, luminance[i - 1] - 1e-3);
        if (i >= 4)
            g_assert_cmpfloat(luminance[i], >, luminance[i - 4]);
    }
    g_assert_cmpfloat(luminance[EXPERT_HEATMAP_COLORS - 1] - luminance[0], >, 0.7);
}

static void test_range_and_index(void)
{
    const float values[] = {0.0f, 2.0f, NAN, 8.0f};
    double lo, hi;
    g_assert_true(expert_heatmap_value_range(values, 2, false, EXPERT_HEATMAP_LINEAR, &lo, &hi));
    g_assert_cmpfloat(lo, ==, 0.0);
    g_assert_cmpfloat(hi, ==, 8.0);
    g_assert_true(expert_heatmap_value_range(values, 2, true, EXPERT_HEATMAP_LOG, &lo, &hi));
    g_assert_cmpfloat(lo, ==, 2.0);
    g_assert_cmpfloat(hi, ==, 8.0);
    g_assert_cmpint(expert_heatmap_color_index(2.0, 2.0, 8.0, EXPERT_HEATMAP_LOG), ==, 0);
    g_assert_cmpint(expert_heatmap_color_index(4.0, 2.0, 8.0, EXPERT_HEATMAP_LOG), ==, 128);
    g_assert_cmpint(expert_heatmap_color_index(8.0, 2.0, 8.0, EXPERT_HEATMAP_LOG), ==, 255);
    g_assert_cmpint(expert_heatmap_color_index(1.0, 2.0, 8.0, EXPERT_HEATMAP_LOG), ==, 0);
    g_assert_cmpint(expert_heatmap_color_index(2.0, 0.0, 8.0, EXPERT_HEATMAP_LINEAR), ==, 64);
    g_assert_cmpint(expert_heatmap_color_index(9.0, 0.0, 8.0, EXPERT_HEATMAP_LINEAR), ==, 255);
    /* Negative values (a mean activation) start the linear range. */
    const float signed_values[] = {-0.5f, 1.5f, NAN, NAN};
    g_assert_true(
        expert_heatmap_value_range(signed_values, 2, false, EXPERT_HEATMAP_LINEAR, &lo, &hi));
    g_assert_cmpfloat(lo, ==, -0.5);
    g_assert_cmpfloat(hi, ==, 1.5);
    /* Nothing to colour. */
    const float empty[] = {NAN, 0.0f, 0.0f, NAN};
    g_assert_false(expert_heatmap_value_range(empty, 2, true, EXPERT_HEATMAP_LINEAR, &lo, &hi));
    g_assert_false(expert_heatmap_value_range(empty, 2, false, EXPERT_HEATMAP_LOG, &lo, &hi));
}

/* Every cell's centre on screen has the colour of its value. */
static void check_cells(cairo_surface_t *surface, const ExpertHeatmapLayout *layout,
                        const ExpertHeatmapModel *model, const PlotStyle *style)
{
    uint32_t lut[EXPERT_HEATMAP_COLORS];
    expert_heatmap_colormap(lut);
    uint32_t empty = pixel_of_color(expert_heatmap_empty_color(style));
    int checked = 0;
    for (int a = 0; a < model->side; a++)
        for (int b = 0; b < model->side; b++) {
            double x, y, w, h;
            expert_heatmap_layout_cell_rect(layout, a, b, &x, &y, &w, &h);
            double cx = x + w / 2.0, cy = y + h / 2.0;
            /* Cells only partly in view, or too small to hold a pixel of their own, are left
             * to the mapping test. */
            if (w < 3.0 || x < layout->x || y < layout->y || x + w > layout->x + layout->size ||
                y + h > layout->y + layout->size)
                continue;
            float v = model->values[a * model->side + b];
            uint32_t expected =
                isnan(v) || (model->zero_is_empty && v == 0.0f)
                    ? empty
                    : lut[expert_heatmap_color_index(v, layout->lo, layout->hi, layout->scale)];
            uint32_t drawn = pixel_at(surface, cx, cy);
            if (drawn != expected)
                g_error("cell (%d, %d) = %g drawn %08x at (%.1f, %.1f), expected %08x", a, b, v,
                        drawn, cx, cy, expected);
            checked++;
        }
    g_assert_cmpint(checked, >, 0);
}

static void test_known_grid(void)
{
    PlotStyle style;
    plot_style_init_light(&style);
    /* 4 × 4: values 0..15, one empty cell. */
    float values[16];
    for (int i = 0; i < 16; i++)
        values[i] = (float)i;
    values[5] = NAN;
    ExpertHeatmapModel model = {.side = 4, .values = values, .title = "Layer 2",
                                .value_label = "selections", .selected = -1};
    ExpertHeatmapLayout layout;
    cairo_surface_t *surface = render(&model, NULL, &style, &layout);
    g_assert_true(layout.has_range);
    g_assert_cmpfloat(layout.lo, ==, 0.0);
    g_assert_cmpfloat(layout.hi, ==, 15.0);
    g_assert_cmpfloat(layout.size, >, 100.0);
    /* The grid is square and inside the box, the colour bar to its right. */
    g_assert_cmpfloat(layout.x + layout.size, <, layout.bar_x);
    g_assert_cmpfloat(layout.bar_x + layout.bar_width, <, WIDTH);
    g_assert_cmpfloat(layout.y + layout.size, <, HEIGHT);
    check_cells(surface, &layout, &model, &style);
    /* The corners by hand: expert 0 is the bottom of the map, expert 15 the top. */
    uint32_t lut[EXPERT_HEATMAP_COLORS];
    expert_heatmap_colormap(lut);
    double x, y, w, h;
    expert_heatmap_layout_cell_rect(&layout, 0, 0, &x, &y, &w, &h);
    g_assert_cmpuint(pixel_at(surface, x + w / 2, y + h / 2), ==, lut[0]);
    expert_heatmap_layout_cell_rect(&layout, 3, 3, &x, &y, &w, &h);
    g_assert_cmpuint(pixel_at(surface, x + w / 2, y + h / 2), ==, lut[255]);
    /* Column b runs left to right, row a top to bottom. */
    expert_heatmap_layout_cell_rect(&layout, 0, 3, &x, &y, &w, &h);
    g_assert_cmpfloat(x, >, layout.x + layout.size / 2);
    g_assert_cmpfloat(y, <, layout.y + layout.size / 4);
    /* The colour bar: the top colour at the top, the bottom one at the bottom. */
    g_assert_cmpint(channel_distance(pixel_at(surface, layout.bar_x + layout.bar_width / 2,
                                              layout.bar_y + 1.5),
                                     lut[255]),
                    <=, 2);
    g_assert_cmpint(channel_distance(pixel_at(surface, layout.bar_x + layout.bar_width / 2,
                                              layout.bar_y + layout.bar_height - 1.5),
                                     lut[0]),
                    <=, 2);
    cairo_surface_destroy(surface);

    /* Log scale, zeros empty, in the dark style: 0 | 1, 10, 100 ... */
    plot_style_init_dark(&style);
    float powers[16];
    for (int i = 0; i < 16; i++)
        powers[i] = i == 0 ? 0.0f : powf(10.0f, (float)(i % 4));
    model.values = powers;
    model.zero_is_empty = true;
    model.scale = EXPERT_HEATMAP_LOG;
    surface = render(&model, NULL, &style, &layout);
    g_assert_cmpint(layout.scale, ==, EXPERT_HEATMAP_LOG);
    g_assert_cmpfloat(layout.lo, ==, 1.0);
    g_assert_cmpfloat(layout.hi, ==, 1000.0);
    check_cells(surface, &layout, &model, &style);
    /* 10 and 100 split the decades evenly: a third and two thirds up the map. */
    expert_heatmap_layout_cell_rect(&layout, 0, 1, &x, &y, &w, &h);
    g_assert_cmpuint(pixel_at(surface, x + w / 2, y + h / 2), ==, lut[85]);
    expert_heatmap_layout_cell_rect(&layout, 0, 2, &x, &y, &w, &h);
    g_assert_cmpuint(pixel_at(surface, x + w / 2, y + h / 2), ==, lut[170]);
    cairo_surface_destroy(surface);
}

static void test_pixel_to_expert(void)
{
    PlotStyle style;
    plot_style_init_light(&style);
    enum { SIDE = 64 };
    /* Neighbouring cells differ in colour: value v in [0, 255] is colour index v exactly. */
    static float values[SIDE * SIDE];
    for (int a = 0; a < SIDE; a++)
        for (int b = 0; b < SIDE; b++)
            values[a * SIDE + b] = (float)((a * 7 + b * 13) % 256);
    values[SIDE * SIDE - 1] = 255.0f;
    ExpertHeatmapModel model = {.side = SIDE, .values = values, .selected = -1};
    const ExpertHeatmapView views[] = {
        {0.0, 0.0, SIDE},     /* whole: about 5 pixels a cell */
        {10.0, 20.0, 16.0},   /* zoomed into the middle */
        {30.5, 7.25, 5.5},    /* fractional pan: cells cut at the edges */
        {60.0, 60.0, 4.0},    /* the closest zoom, in the far corner */
        {-5.0, 80.0, 1000.0}, /* out of range: clamped to the whole grid */
    };
    for (size_t v = 0; v < G_N_ELEMENTS(views); v++) {
        ExpertHeatmapLayout layout;
        cairo_surface_t *surface = render(&model, &views[v], &style, &layout);
        g_assert_cmpfloat(layout.view.x0, >=, 0.0);
        g_assert_cmpfloat(layout.view.x0 + layout.view.span, <=, SIDE);
        check_cells(surface, &layout, &model, &style);
        uint32_t lut[EXPERT_HEATMAP_COLORS];
        expert_heatmap_colormap(lut);
        /* Points across the square: the cell found is the cell whose rectangle holds the point,
         * and the pixel there, unless on a cell's edge, is that cell's colour. */
        int tested = 0;
        for (double py = layout.y + 0.5; py < layout.y + layout.size; py += 7.0)
            for (double px = layout.x + 0.5; px < layout.x + layout.size; px += 7.0) {
                int a, b;
                g_assert_true(expert_heatmap_layout_cell_at(&layout, px, py, &a, &b));
                double x, y, w, h;
                expert_heatmap_layout_cell_rect(&layout, a, b, &x, &y, &w, &h);
                g_assert_cmpfloat(px, >=, x - 1e-9);
                g_assert_cmpfloat(px, <, x + w + 1e-9);
                g_assert_cmpfloat(py, >=, y - 1e-9);
                g_assert_cmpfloat(py, <, y + h + 1e-9);
                if (w >= 3.0 && px - x >= 1.0 && x + w - px >= 1.0 && py - y >= 1.0 &&
                    y + h - py >= 1.0) {
                    uint32_t expected = lut[(int)values[a * SIDE + b]];
                    g_assert_cmpuint(pixel_at(surface, px, py), ==, expected);
                    tested++;
                }
            }
        g_assert_cmpint(tested, >, 20);
        /* Outside the square there is no cell. */
        int a, b;
        g_assert_false(expert_heatmap_layout_cell_at(&layout, layout.x - 1.0, layout.y + 5.0, &a,
                                                     &b));
        g_assert_false(expert_heatmap_layout_cell_at(&layout, layout.x + 5.0,
                                                     layout.y + layout.size, &a, &b));
        cairo_surface_destroy(surface);
    }
}

/* A grid with more cells than pixels: every pixel shows the average of the cells under it. With
 * constant 2 × 2 blocks the average is the block's own colour, so each pixel's colour is the one
 * of the block the mapping puts there. The image coloured anew in place draws the same. */
static void test_reduced_grid(void)
{
    PlotStyle style;
    plot_style_init_light(&style);
    enum { SIDE = 512 };
    static float values[SIDE * SIDE];
    for (int a = 0; a < SIDE; a++)
        for (int b = 0; b < SIDE; b++)
            values[a * SIDE + b] = (float)(((a / 2) * 7 + (b / 2) * 13) % 256);
    values[0] = 255.0f; /* the range is 0..255 for any of the blocks */
    values[1] = values[SIDE] = values[SIDE + 1] = 255.0f;
    ExpertHeatmapModel model = {.side = SIDE, .values = values, .selected = -1};
    cairo_surface_t *image = expert_heatmap_image_new(&model, &style);
    g_assert_nonnull(image);
    ExpertHeatmapLayout layout;
    cairo_surface_t *surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, WIDTH, HEIGHT);
    cairo_t *cr = cairo_create(surface);
    expert_heatmap_render(cr, WIDTH, HEIGHT, &model, NULL, &style, image, &layout);
    cairo_destroy(cr);
    cairo_surface_flush(surface);
    double scale = layout.size / layout.view.span;
    g_assert_cmpfloat(scale, <, 1.0);
    g_assert_cmpfloat(scale, >, 0.5);
    uint32_t lut[EXPERT_HEATMAP_COLORS];
    expert_heatmap_colormap(lut);
    int checked = 0;
    for (double py = layout.y + 0.5; py < layout.y + layout.size; py += 3.0)
        for (double px = layout.x + 0.5; px < layout.x + layout.size; px += 3.0) {
            double column, row;
            expert_heatmap_layout_to_cells(&layout, px, py, &column, &row);
            /* Pixels whose centre is this close to a block's edge could round either way. */
            double fx = column / 2.0 - floor(column / 2.0), fy = row / 2.0 - floor(row / 2.0);
            if (fx < 0.1 || fx > 0.9 || fy < 0.1 || fy > 0.9)
                continue;
            int a, b;
            g_assert_true(expert_heatmap_layout_cell_at(&layout, px, py, &a, &b));
            g_assert_cmpuint(pixel_at(surface, px, py), ==, lut[(int)values[a * SIDE + b]]);
            checked++;
        }
    g_assert_cmpint(checked, >, 1000);

    /* New data of the same side, coloured into the same image, draws as a new image would. */
    for (int i = 0; i < SIDE * SIDE; i++)
        values[i] = 255.0f - values[i];
    g_assert_true(expert_heatmap_image_update(image, &model, &style));
    cairo_surface_t *again = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, WIDTH, HEIGHT);
    cr = cairo_create(again);
    expert_heatmap_render(cr, WIDTH, HEIGHT, &model, NULL, &style, image, &layout);
    cairo_destroy(cr);
    cairo_surface_flush(again);
    cairo_surface_t *fresh = render(&model, NULL, &style, &layout);
    g_assert_cmpmem(cairo_image_surface_get_data(again),
                    cairo_image_surface_get_stride(again) * HEIGHT,
                    cairo_image_surface_get_data(fresh),
                    cairo_image_surface_get_stride(fresh) * HEIGHT);
    /* An image of another side is not reused. */
    ExpertHeatmapModel smaller = model;
    smaller.side = 256;
    g_assert_false(expert_heatmap_image_update(image, &smaller, &style));
    cairo_surface_destroy(fresh);
    cairo_surface_destroy(again);
    cairo_surface_destroy(surface);
    cairo_surface_destroy(image);
}

static void test_view_zoom_and_pan(void)
{
    ExpertHeatmapView view;
    expert_heatmap_view_reset(&view, 1024);
    g_assert_cmpfloat(view.span, ==, 1024.0);
    /* Zooming keeps the cell under the pointer at the same place on screen. */
    double column = 700.0, row = 100.0;
    double fx = (column - view.x0) / view.span, fy = (row - view.y0) / view.span;
    expert_heatmap_view_zoom(&view, 1024, 8.0, column, row);
    g_assert_cmpfloat(view.span, ==, 128.0);
    g_assert_cmpfloat_with_epsilon((column - view.x0) / view.span, fx, 1e-12);
    g_assert_cmpfloat_with_epsilon((row - view.y0) / view.span, fy, 1e-12);
    /* Down to single cells, and no closer. */
    for (int i = 0; i < 20; i++)
        expert_heatmap_view_zoom(&view, 1024, 2.0, column, row);
    g_assert_cmpfloat(view.span, ==, EXPERT_HEATMAP_MIN_SPAN);
    g_assert_cmpfloat(view.x0, <=, column);
    g_assert_cmpfloat(view.x0 + view.span, >=, column);
    /* Panning stops at the grid's edges. */
    expert_heatmap_view_pan(&view, 1024, 5000.0, -5000.0);
    g_assert_cmpfloat(view.x0, ==, 1024.0 - EXPERT_HEATMAP_MIN_SPAN);
    g_assert_cmpfloat(view.y0, ==, 0.0);
    /* Zooming out past the whole grid shows the whole grid. */
    expert_heatmap_view_zoom(&view, 1024, 1e-6, 0.0, 0.0);
    g_assert_cmpfloat(view.span, ==, 1024.0);
    g_assert_cmpfloat(view.x0, ==, 0.0);
    /* A grid smaller than the closest zoom is never magnified past itself. */
    expert_heatmap_view_reset(&view, 2);
    expert_heatmap_view_zoom(&view, 2, 10.0, 1.0, 1.0);
    g_assert_cmpfloat(view.span, ==, 2.0);
}

static void test_marked_and_selected(void)
{
    PlotStyle style;
    plot_style_init_light(&style);
    float values[64];
    for (int i = 0; i < 64; i++)
        values[i] = 1.0f;
    const int32_t marked[] = {9, 63};
    ExpertHeatmapModel model = {.side = 8, .values = values, .selected = -1};
    ExpertHeatmapLayout layout;
    cairo_surface_t *plain = render(&model, NULL, &style, &layout);
    model.marked = marked;
    model.n_marked = 2;
    model.selected = 36;
    cairo_surface_t *ringed = render(&model, NULL, &style, &layout);
    /* A marked cell's edge is white outside, black inside; its centre keeps its colour; an
     * unmarked cell is untouched. */
    double x, y, w, h;
    expert_heatmap_layout_cell_rect(&layout, 1, 1, &x, &y, &w, &h);
    g_assert_cmpfloat(w, >=, 6.0);
    g_assert_cmpuint(pixel_at(ringed, x + w / 2, y + 0.5), ==, 0xffffffffu);
    g_assert_cmpuint(pixel_at(ringed, x + w / 2, y + 1.5), ==, 0xff000000u);
    g_assert_cmpuint(pixel_at(ringed, x + w / 2, y + h / 2), ==, pixel_at(plain, x + w / 2, y + h / 2));
    expert_heatmap_layout_cell_rect(&layout, 4, 4, &x, &y, &w, &h);
    g_assert_cmpuint(pixel_at(ringed, x + w / 2, y + 1.0), !=, pixel_at(plain, x + w / 2, y + 1.0));
    expert_heatmap_layout_cell_rect(&layout, 2, 5, &x, &y, &w, &h);
    g_assert_cmpuint(pixel_at(ringed, x + w / 2, y + 0.5), ==, pixel_at(plain, x + w / 2, y + 0.5));
    cairo_surface_destroy(plain);
    cairo_surface_destroy(ringed);
}

typedef struct {
    GPtrArray *strings;
} Texts;

static void collect_text(const char *text, double x, double y, double angle, double size,
                         void *user_data)
{
    g_ptr_array_add(((Texts *)user_data)->strings, g_strdup(text));
}

static gboolean has_text(const Texts *texts, const char *text)
{
    for (guint i = 0; i < texts->strings->len; i++)
        if (g_strcmp0(g_ptr_array_index(texts->strings, i), text) == 0)
            return TRUE;
    return FALSE;
}

static void test_text(void)
{
    PlotStyle style;
    plot_style_init_light(&style);
    Texts texts = {g_ptr_array_new_with_free_func(g_free)};
    style.text_func = collect_text;
    style.text_data = &texts;
    float values[256];
    for (int i = 0; i < 256; i++)
        values[i] = (float)(i * 10);
    ExpertHeatmapModel model = {.side = 16, .values = values, .title = "Layer 2 · selections",
                                .value_label = "selections", .selected = -1};
    ExpertHeatmapLayout layout;
    cairo_surface_t *surface = render(&model, NULL, &style, &layout);
    cairo_surface_destroy(surface);
    g_assert_true(has_text(&texts, "Layer 2 · selections"));
    g_assert_true(has_text(&texts, "selections"));
    g_assert_true(has_text(&texts, "never chosen"));
    g_assert_true(has_text(&texts, "b · sub-key of C′ (column)"));
    g_assert_true(has_text(&texts, "a · sub-key of C (row)"));
    /* The colour bar's numbers from 0 to 2550, with SI suffixes; cell indices on the axes. */
    g_assert_true(has_text(&texts, "0"));
    g_assert_true(has_text(&texts, "2k") || has_text(&texts, "2.5k"));
    g_assert_true(has_text(&texts, "10"));

    /* Log: decades. */
    g_ptr_array_set_size(texts.strings, 0);
    for (int i = 0; i < 256; i++)
        values[i] = powf(10.0f, (float)(i % 5));
    model.scale = EXPERT_HEATMAP_LOG;
    surface = render(&model, NULL, &style, &layout);
    cairo_surface_destroy(surface);
    g_assert_true(has_text(&texts, "1"));
    g_assert_true(has_text(&texts, "100"));
    g_assert_true(has_text(&texts, "10k"));

    /* No grid: the message alone. */
    g_ptr_array_set_size(texts.strings, 0);
    ExpertHeatmapModel none = {.side = 0, .message = "No steps yet", .selected = -1};
    surface = render(&none, NULL, &style, &layout);
    cairo_surface_destroy(surface);
    g_assert_cmpuint(texts.strings->len, ==, 1);
    g_assert_true(has_text(&texts, "No steps yet"));
    g_ptr_array_unref(texts.strings);
}

static void test_hover(void)
{
    PlotStyle style;
    plot_style_init_light(&style);
    float values[16] = {0};
    ExpertHeatmapModel model = {.side = 4, .values = values, .selected = -1};
    ExpertHeatmapLayout layout;
    cairo_surface_t *plain = render(&model, NULL, &style, &layout);
    cairo_surface_t *hovered = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, WIDTH, HEIGHT);
    cairo_t *cr = cairo_create(hovered);
    cairo_set_source_surface(cr, plain, 0, 0);
    cairo_paint(cr);
    const char *lines[] = {"Expert 6 · (a 1, b 2)", "selections 0"};
    double x, y, w, h;
    expert_heatmap_layout_cell_rect(&layout, 1, 2, &x, &y, &w, &h);
    expert_heatmap_render_hover(cr, WIDTH, HEIGHT, &layout, &style, 1, 2, lines, 2, x + w / 2,
                                y + h / 2);
    cairo_destroy(cr);
    cairo_surface_flush(hovered);
    /* The cell outlined, the read-out beside the pointer. */
    g_assert_cmpuint(pixel_at(hovered, x + w / 2, y + 0.5), !=, pixel_at(plain, x + w / 2, y + 0.5));
    g_assert_cmpuint(pixel_at(hovered, x + w / 2, y + h / 2), ==,
                     pixel_at(plain, x + w / 2, y + h / 2));
    cairo_surface_destroy(hovered);
    cairo_surface_destroy(plain);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/expert-heatmap/colormap", test_colormap);
    g_test_add_func("/expert-heatmap/range-and-index", test_range_and_index);
    g_test_add_func("/expert-heatmap/known-grid", test_known_grid);
    g_test_add_func("/expert-heatmap/pixel-to-expert", test_pixel_to_expert);
    g_test_add_func("/expert-heatmap/reduced-grid", test_reduced_grid);
    g_test_add_func("/expert-heatmap/view", test_view_zoom_and_pan);
    g_test_add_func("/expert-heatmap/marked-and-selected", test_marked_and_selected);
    g_test_add_func("/expert-heatmap/text", test_text);
    g_test_add_func("/expert-heatmap/hover", test_hover);
    return g_test_run();
}
