#include "expert-heatmap-render.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOVER_FILL_ALPHA 0.94
/* A ring around a marked cell smaller than this many pixels, so that it can be seen at all. */
#define SMALL_CELL 6.0

/* ---- the colour map -------------------------------------------------------------------------- */

typedef struct {
    double L, a, b;
} OkLab;

static double srgb_to_linear(double c)
{
    return c <= 0.04045 ? c / 12.92 : pow((c + 0.055) / 1.055, 2.4);
}

static double linear_to_srgb(double c)
{
    c = fmin(fmax(c, 0.0), 1.0);
    return c <= 0.0031308 ? 12.92 * c : 1.055 * pow(c, 1.0 / 2.4) - 0.055;
}

/* B. Ottosson's OKLab (2020): perceptually even steps for interpolating colours. */
static OkLab oklab_from_rgb(unsigned rgb)
{
    double r = srgb_to_linear(((rgb >> 16) & 0xff) / 255.0);
    double g = srgb_to_linear(((rgb >> 8) & 0xff) / 255.0);
    double b = srgb_to_linear((rgb & 0xff) / 255.0);
    double l = cbrt(0.4122214708 * r + 0.5363325363 * g + 0.0514459929 * b);
    double m = cbrt(0.2119034982 * r + 0.6806995451 * g + 0.1073969566 * b);
    double s = cbrt(0.0883024619 * r + 0.2817188376 * g + 0.6299787005 * b);
    return (OkLab){
        0.2104542553 * l + 0.7936177850 * m - 0.0040720468 * s,
        1.9779984951 * l - 2.4285922050 * m + 0.4505937099 * s,
        0.0259040371 * l + 0.7827717662 * m - 0.8086757660 * s,
    };
}

static uint32_t pixel_from_oklab(OkLab c)
{
    double l = c.L + 0.3963377774 * c.a + 0.2158037573 * c.b;
    double m = c.L - 0.1055613458 * c.a - 0.0638541728 * c.b;
    double s = c.L - 0.0894841775 * c.a - 1.2914855480 * c.b;
    l = l * l * l;
    m = m * m * m;
    s = s * s * s;
    double r = 4.0767416621 * l - 3.3077115913 * m + 0.2309699292 * s;
    double g = -1.2684380046 * l + 2.6097574011 * m - 0.3413193965 * s;
    double b = -0.0041960863 * l - 0.7034186147 * m + 1.7076147010 * s;
    unsigned R = (unsigned)lround(linear_to_srgb(r) * 255.0);
    unsigned G = (unsigned)lround(linear_to_srgb(g) * 255.0);
    unsigned B = (unsigned)lround(linear_to_srgb(b) * 255.0);
    return 0xff000000u | R << 16 | G << 8 | B;
}

void expert_heatmap_colormap(uint32_t lut[EXPERT_HEATMAP_COLORS])
{
    static const unsigned anchors[] = {0x440154, 0x3b528b, 0x21918c, 0x5ec962, 0xfde725};
    const int segments = (int)(sizeof anchors / sizeof anchors[0]) - 1;
    for (int i = 0; i < EXPERT_HEATMAP_COLORS; i++) {
        double t = (double)i / (EXPERT_HEATMAP_COLORS - 1) * segments;
        int k = (int)floor(t);
        if (k >= segments)
            k = segments - 1;
        double f = t - k;
        OkLab a = oklab_from_rgb(anchors[k]), b = oklab_from_rgb(anchors[k + 1]);
        lut[i] = pixel_from_oklab((OkLab){a.L + f * (b.L - a.L), a.a + f * (b.a - a.a),
                                          a.b + f * (b.b - a.b)});
    }
}

PlotColor expert_heatmap_empty_color(const PlotStyle *style)
{
    PlotColor color = plot_color_mix(style->background, style->foreground, 0.22);
    color.alpha = 1.0;
    return color;
}

static uint32_t pixel_from_color(PlotColor c)
{
    return 0xff000000u | (uint32_t)lround(c.red * 255.0) << 16 |
           (uint32_t)lround(c.green * 255.0) << 8 | (uint32_t)lround(c.blue * 255.0);
}

bool expert_heatmap_value_range(const float *values, int side, bool zero_is_empty,
                                ExpertHeatmapScale scale, double *lo, double *hi)
{
    size_t n = (size_t)side * side;
    /* Selects and plain comparisons, which the compiler turns into vector minimum and maximum
     * (fmin and fmax would be library calls, a million of them on a 1024² grid). NaN and the
     * infinities fail the finite test, and empty cells take values that change nothing. */
    float smallest = INFINITY, largest = -INFINITY, smallest_positive = INFINITY;
    for (size_t i = 0; values && i < n; i++) {
        float v = values[i];
        bool valid = v > -INFINITY && v < INFINITY && !(zero_is_empty && v == 0.0f);
        float low = valid ? v : INFINITY;
        float high = valid ? v : -INFINITY;
        float positive = valid && v > 0.0f ? v : INFINITY;
        smallest = low < smallest ? low : smallest;
        largest = high > largest ? high : largest;
        smallest_positive = positive < smallest_positive ? positive : smallest_positive;
    }
    if (!(largest >= smallest))
        return false;
    if (scale == EXPERT_HEATMAP_LOG) {
        if (!(largest > 0.0))
            return false;
        *lo = smallest_positive;
        *hi = largest;
        if (*hi <= *lo) {
            *lo /= 2.0;
            *hi *= 2.0;
        }
        return true;
    }
    *lo = fmin(0.0, smallest);
    *hi = largest;
    if (*hi <= *lo) {
        double half = 0.5 * fmax(fabs(*lo), 1.0);
        *lo -= half;
        *hi += half;
    }
    return true;
}

int expert_heatmap_color_index(double value, double lo, double hi, ExpertHeatmapScale scale)
{
    double t;
    if (scale == EXPERT_HEATMAP_LOG)
        t = value > lo ? log(value / lo) / log(hi / lo) : 0.0;
    else
        t = (value - lo) / (hi - lo);
    if (!(t > 0.0))
        return 0;
    if (t >= 1.0)
        return EXPERT_HEATMAP_COLORS - 1;
    return (int)(t * (EXPERT_HEATMAP_COLORS - 1) + 0.5);
}

/* The colour map's range and scale: log falls back to linear when no value is positive. */
static void resolve_range(const ExpertHeatmapModel *model, ExpertHeatmapLayout *layout)
{
    layout->scale = model->scale;
    layout->has_range = expert_heatmap_value_range(model->values, model->side,
                                                   model->zero_is_empty, model->scale,
                                                   &layout->lo, &layout->hi);
    if (!layout->has_range && model->scale == EXPERT_HEATMAP_LOG) {
        layout->scale = EXPERT_HEATMAP_LINEAR;
        layout->has_range = expert_heatmap_value_range(model->values, model->side,
                                                       model->zero_is_empty, layout->scale,
                                                       &layout->lo, &layout->hi);
    }
}

/* What an image was coloured with, kept on it (cairo user data) so that drawing it needs no
 * second pass over the values. */
typedef struct {
    bool has_range;
    double lo, hi;
    ExpertHeatmapScale scale;
} ImageRange;

static cairo_user_data_key_t range_key;

/* Reduced copies of a grid's image, each of half the side of the one before with 2 × 2 pixels
 * averaged, made the first time a view needs one and kept on the image itself, so they go when
 * the image goes or is coloured anew. */
#define MAX_LEVELS 16
static cairo_user_data_key_t level_keys[MAX_LEVELS];

static void color_image(cairo_surface_t *image, const ExpertHeatmapModel *model,
                        const PlotStyle *style)
{
    ExpertHeatmapLayout range;
    resolve_range(model, &range);
    ImageRange *kept = malloc(sizeof *kept);
    if (kept) {
        *kept = (ImageRange){range.has_range, range.lo, range.hi, range.scale};
        if (cairo_surface_set_user_data(image, &range_key, kept, free) != CAIRO_STATUS_SUCCESS)
            free(kept);
    }
    for (int l = 1; l < MAX_LEVELS; l++)
        if (cairo_surface_get_user_data(image, &level_keys[l]))
            cairo_surface_set_user_data(image, &level_keys[l], NULL, NULL);

    int side = model->side;
    uint32_t lut[EXPERT_HEATMAP_COLORS];
    expert_heatmap_colormap(lut);
    uint32_t empty = pixel_from_color(expert_heatmap_empty_color(style));
    cairo_surface_flush(image);
    unsigned char *data = cairo_image_surface_get_data(image);
    int stride = cairo_image_surface_get_stride(image);
    double lo = range.lo, hi = range.hi;
    bool log_scale = range.scale == EXPERT_HEATMAP_LOG;
    /* The per-cell work is one index: for log, t = (ln v - ln lo) / (ln hi - ln lo). */
    double log_lo = log_scale ? log(lo) : 0.0;
    double to_index = (EXPERT_HEATMAP_COLORS - 1) / (log_scale ? log(hi) - log_lo : hi - lo);
    bool zero_is_empty = model->zero_is_empty;
    for (int a = 0; a < side; a++) {
        uint32_t *row = (uint32_t *)(void *)(data + (size_t)a * stride);
        const float *values = model->values + (size_t)a * side;
        if (!range.has_range) {
            for (int b = 0; b < side; b++)
                row[b] = empty;
            continue;
        }
        /* Selects rather than branches: whether a cell is empty is as random as the data. A NaN
         * fails every comparison, so its index comes out 0 before the select replaces it. */
        for (int b = 0; b < side; b++) {
            float v = values[b];
            double t = log_scale ? (v > lo ? ((double)logf(v) - log_lo) * to_index : 0.0)
                                 : (v - lo) * to_index;
            t = t > 0.0 ? t : 0.0;
            t = t < EXPERT_HEATMAP_COLORS - 1 ? t : EXPERT_HEATMAP_COLORS - 1;
            uint32_t color = lut[(int)(t + 0.5)];
            bool is_empty_cell = !(v == v) || (zero_is_empty && v == 0.0f);
            row[b] = is_empty_cell ? empty : color;
        }
    }
    cairo_surface_mark_dirty(image);
}

cairo_surface_t *expert_heatmap_image_new(const ExpertHeatmapModel *model,
                                          const PlotStyle *style)
{
    int side = model->side;
    if (side < 1 || !model->values)
        return NULL;
    cairo_surface_t *image = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, side, side);
    if (cairo_surface_status(image) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(image);
        return NULL;
    }
    color_image(image, model, style);
    return image;
}

bool expert_heatmap_image_update(cairo_surface_t *image, const ExpertHeatmapModel *model,
                                 const PlotStyle *style)
{
    if (!image || model->side < 1 || !model->values ||
        cairo_image_surface_get_width(image) != model->side ||
        cairo_image_surface_get_height(image) != model->side)
        return false;
    color_image(image, model, style);
    return true;
}

/* ---- the view -------------------------------------------------------------------------------- */

void expert_heatmap_view_reset(ExpertHeatmapView *view, int side)
{
    *view = (ExpertHeatmapView){0.0, 0.0, side > 0 ? side : 1};
}

void expert_heatmap_view_clamp(ExpertHeatmapView *view, int side)
{
    double n = side > 0 ? side : 1;
    double min_span = fmin(EXPERT_HEATMAP_MIN_SPAN, n);
    if (!isfinite(view->span) || view->span > n)
        view->span = n;
    if (view->span < min_span)
        view->span = min_span;
    if (!isfinite(view->x0))
        view->x0 = 0.0;
    if (!isfinite(view->y0))
        view->y0 = 0.0;
    view->x0 = fmin(fmax(view->x0, 0.0), n - view->span);
    view->y0 = fmin(fmax(view->y0, 0.0), n - view->span);
}

void expert_heatmap_view_zoom(ExpertHeatmapView *view, int side, double factor, double column,
                              double row)
{
    if (!(factor > 0.0))
        return;
    double span = view->span / factor;
    double min_span = fmin(EXPERT_HEATMAP_MIN_SPAN, side > 0 ? side : 1);
    double max_span = side > 0 ? side : 1;
    span = fmin(fmax(span, min_span), max_span);
    /* The point keeps its fraction of the view: x0' + f·span' = column. */
    double fx = (column - view->x0) / view->span;
    double fy = (row - view->y0) / view->span;
    view->x0 = column - fx * span;
    view->y0 = row - fy * span;
    view->span = span;
    expert_heatmap_view_clamp(view, side);
}

void expert_heatmap_view_pan(ExpertHeatmapView *view, int side, double columns, double rows)
{
    view->x0 += columns;
    view->y0 += rows;
    expert_heatmap_view_clamp(view, side);
}

/* ---- layout ---------------------------------------------------------------------------------- */

/* The layout with the measures drawing needs. */
typedef struct {
    ExpertHeatmapLayout layout;
    PlotTicks bar_ticks;
    double font;
    double line_height;
    double pad;
    double tick_gap;
    double bar_label_x;     /* where the colour bar's rotated label is centred */
    double swatch_y;        /* the empty swatch's top */
    double title_y;         /* the title's top */
    bool show_grid;
} Frame;

static const char *value_label_of(const ExpertHeatmapModel *model)
{
    return model->value_label ? model->value_label : "value";
}

static const char *empty_label_of(const ExpertHeatmapModel *model)
{
    return model->empty_label ? model->empty_label : "never chosen";
}

static void format_bar_value(double value, const PlotTicks *ticks, char *buffer, size_t size)
{
    plot_format_number(value, ticks->label_step, PLOT_NUMBER_SI, buffer, size);
}

static void make_bar_ticks(Frame *frame, double target)
{
    const ExpertHeatmapLayout *layout = &frame->layout;
    frame->bar_ticks.n = 0;
    if (!layout->has_range)
        return;
    if (layout->scale == EXPERT_HEATMAP_LOG)
        plot_ticks_log(&frame->bar_ticks, layout->lo, layout->hi, target);
    else
        plot_ticks_linear(&frame->bar_ticks, layout->lo, layout->hi, target);
}

static void layout_frame(cairo_t *cr, double width, double height,
                         const ExpertHeatmapModel *model, const ExpertHeatmapView *view,
                         const PlotStyle *style, cairo_surface_t *image, Frame *frame)
{
    memset(frame, 0, sizeof *frame);
    ExpertHeatmapLayout *layout = &frame->layout;
    PlotText *text = plot_text_new(cr, style);
    plot_text_set_font(text, 1.0, false);
    double font = plot_style_font_pixels(style);
    double line_height;
    plot_text_measure(text, "0123456789", NULL, &line_height);
    frame->font = font;
    frame->line_height = line_height;
    frame->pad = round(font * 0.6);
    frame->tick_gap = round(font * 0.35);

    layout->side = model->side;
    layout->scale = model->scale;
    frame->show_grid = model->side > 0 && model->values;
    if (!frame->show_grid) {
        plot_text_free(text);
        return;
    }
    layout->view = *view;
    expert_heatmap_view_clamp(&layout->view, model->side);
    const ImageRange *kept = image ? cairo_surface_get_user_data(image, &range_key) : NULL;
    if (kept) {
        layout->has_range = kept->has_range;
        layout->lo = kept->lo;
        layout->hi = kept->hi;
        layout->scale = kept->scale;
    } else {
        resolve_range(model, layout);
    }

    double top = frame->pad, bottom = frame->pad, left = frame->pad, right = frame->pad;
    if (model->title) {
        plot_text_set_font(text, 1.1, true);
        double title_height;
        plot_text_measure(text, model->title, NULL, &title_height);
        top += title_height + frame->pad;
        plot_text_set_font(text, 1.0, false);
    }
    /* Cell indices up to n - 1 on both axes; the axis names beyond them. */
    char widest[32];
    snprintf(widest, sizeof widest, "%d", model->side > 1 ? model->side - 1 : 0);
    double index_width;
    plot_text_measure(text, widest, &index_width, NULL);
    left += line_height + frame->tick_gap + index_width + frame->tick_gap;
    bottom += line_height + frame->tick_gap + line_height + frame->tick_gap;

    /* The colour bar's tick labels widen the right margin, which shrinks the grid and the bar
     * beside it, which changes the ticks: twice round settles it (the second pass's ticks are
     * made for the bar the first pass found, and fit it). */
    double bar_gap = round(font * 1.2);
    double bar_width = round(font * 1.1);
    double swatch = bar_width;
    double swatch_space = swatch + frame->tick_gap * 2.0;
    double empty_width;
    plot_text_measure(text, empty_label_of(model), &empty_width, NULL);
    double available_height = fmax(height - top - bottom, 1.0);
    double bar_height = available_height - swatch_space;
    double size = 1.0, available_width = 1.0, beside_bar = 0.0, right_total = right;
    for (int pass = 0; pass < 2; pass++) {
        make_bar_ticks(frame, fmax(2.0, bar_height / (line_height * 3.0)));
        double labels_width = 0.0;
        for (size_t i = 0; i < frame->bar_ticks.n; i++) {
            if (!frame->bar_ticks.ticks[i].major)
                continue;
            char label[32];
            format_bar_value(frame->bar_ticks.ticks[i].value, &frame->bar_ticks, label,
                             sizeof label);
            double w;
            plot_text_measure(text, label, &w, NULL);
            labels_width = fmax(labels_width, w);
        }
        beside_bar = frame->tick_gap + labels_width;
        /* The swatch's label may reach past the tick labels; the rotated bar label sits beyond
         * those. */
        double right_of_bar = fmax(beside_bar + frame->tick_gap + line_height,
                                   frame->tick_gap + empty_width);
        right_total = right + bar_gap + bar_width + right_of_bar;
        available_width = fmax(width - left - right_total, 1.0);
        size = floor(fmax(fmin(available_width, available_height), 1.0));
        bar_height = fmax(size - swatch_space, 1.0);
    }
    layout->size = size;
    /* Centred in the space left, the title above it. */
    layout->x = round(left + (available_width - size) / 2.0);
    layout->y = round(top + (available_height - size) / 2.0);
    frame->title_y = layout->y - (top - frame->pad);
    layout->bar_x = layout->x + size + bar_gap;
    layout->bar_width = bar_width;
    layout->bar_y = layout->y;
    layout->bar_height = bar_height;
    frame->swatch_y = layout->y + size - swatch;
    frame->bar_label_x = layout->bar_x + bar_width + beside_bar + frame->tick_gap +
                         line_height / 2.0;
    plot_text_free(text);
}

void expert_heatmap_layout(cairo_t *cr, double width, double height,
                           const ExpertHeatmapModel *model, const ExpertHeatmapView *view,
                           const PlotStyle *style, ExpertHeatmapLayout *layout)
{
    Frame frame;
    layout_frame(cr, width, height, model, view, style, NULL, &frame);
    *layout = frame.layout;
}

void expert_heatmap_layout_to_cells(const ExpertHeatmapLayout *layout, double x, double y,
                                    double *column, double *row)
{
    double cells_per_pixel = layout->view.span / layout->size;
    *column = layout->view.x0 + (x - layout->x) * cells_per_pixel;
    *row = layout->view.y0 + (y - layout->y) * cells_per_pixel;
}

bool expert_heatmap_layout_cell_at(const ExpertHeatmapLayout *layout, double x, double y, int *a,
                                   int *b)
{
    if (layout->side < 1 || layout->size <= 0.0 || x < layout->x || y < layout->y ||
        x >= layout->x + layout->size || y >= layout->y + layout->size)
        return false;
    double column, row;
    expert_heatmap_layout_to_cells(layout, x, y, &column, &row);
    int cb = (int)floor(column), ca = (int)floor(row);
    if (ca < 0 || cb < 0 || ca >= layout->side || cb >= layout->side)
        return false;
    *a = ca;
    *b = cb;
    return true;
}

void expert_heatmap_layout_cell_rect(const ExpertHeatmapLayout *layout, int a, int b, double *x,
                                     double *y, double *width, double *height)
{
    double scale = layout->size / layout->view.span;
    *x = layout->x + (b - layout->view.x0) * scale;
    *y = layout->y + (a - layout->view.y0) * scale;
    *width = scale;
    *height = scale;
}

/* ---- drawing --------------------------------------------------------------------------------- */

static PlotColor ring_color(const PlotStyle *style)
{
    return plot_color_luminance(style->background) < 0.5
               ? (PlotColor){0.0, 0.0, 0.0, 1.0}
               : (PlotColor){1.0, 1.0, 1.0, 1.0};
}

static cairo_surface_t *halve_image(cairo_surface_t *image)
{
    int width = cairo_image_surface_get_width(image), height = cairo_image_surface_get_height(image);
    int half_width = (width + 1) / 2, half_height = (height + 1) / 2;
    cairo_surface_t *half = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, half_width, half_height);
    if (cairo_surface_status(half) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(half);
        return NULL;
    }
    cairo_surface_flush(image);
    cairo_surface_flush(half);
    const unsigned char *from = cairo_image_surface_get_data(image);
    unsigned char *to = cairo_image_surface_get_data(half);
    int from_stride = cairo_image_surface_get_stride(image);
    int to_stride = cairo_image_surface_get_stride(half);
    for (int y = 0; y < half_height; y++) {
        const uint32_t *row0 = (const uint32_t *)(const void *)(from + (size_t)(2 * y) * from_stride);
        const uint32_t *row1 =
            2 * y + 1 < height ? (const uint32_t *)(const void *)(from + (size_t)(2 * y + 1) * from_stride)
                               : row0;
        uint32_t *out = (uint32_t *)(void *)(to + (size_t)y * to_stride);
        for (int x = 0; x < half_width; x++) {
            int x1 = 2 * x + 1 < width ? 2 * x + 1 : 2 * x;
            uint32_t p[4] = {row0[2 * x], row0[x1], row1[2 * x], row1[x1]};
            uint32_t result = 0;
            for (int shift = 0; shift < 32; shift += 8) {
                unsigned sum = 2; /* rounds to nearest */
                for (int k = 0; k < 4; k++)
                    sum += (p[k] >> shift) & 0xff;
                result |= (uint32_t)(sum / 4) << shift;
            }
            out[x] = result;
        }
    }
    cairo_surface_mark_dirty(half);
    return half;
}

/* The image reduced level times (level 0 is the image). */
static cairo_surface_t *image_level(cairo_surface_t *image, int level)
{
    cairo_surface_t *current = image;
    for (int l = 1; l <= level && l < MAX_LEVELS; l++) {
        cairo_surface_t *next = cairo_surface_get_user_data(image, &level_keys[l]);
        if (!next) {
            next = halve_image(current);
            if (!next)
                return current;
            cairo_surface_set_user_data(image, &level_keys[l], next,
                                        (cairo_destroy_func_t)cairo_surface_destroy);
        }
        current = next;
    }
    return current;
}

static void draw_grid_image(cairo_t *cr, const Frame *frame, cairo_surface_t *image)
{
    const ExpertHeatmapLayout *layout = &frame->layout;
    double scale = layout->size / layout->view.span;
    /* Reduced, the grid is drawn from the smallest halving that still gives a pixel or more to
     * each of its pixels: every screen pixel then shows the average of the cells under it, and
     * no cell, however hot or dead, falls between pixels. A filtered reduction of the whole
     * image on every frame would cost several times more. */
    int level = 0;
    while (scale * (1 << level) < 1.0 && level + 1 < MAX_LEVELS)
        level++;
    cairo_surface_t *source = image_level(image, level);
    double cells_per_texel = (double)cairo_image_surface_get_width(image) /
                             cairo_image_surface_get_width(source);
    double texel = scale * cells_per_texel;
    cairo_save(cr);
    cairo_rectangle(cr, layout->x, layout->y, layout->size, layout->size);
    cairo_clip(cr);
    cairo_translate(cr, layout->x - layout->view.x0 * scale, layout->y - layout->view.y0 * scale);
    cairo_scale(cr, texel, texel);
    cairo_set_source_surface(cr, source, 0.0, 0.0);
    /* Magnified, each cell (or block of cells) a crisp square. */
    cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST);
    cairo_pattern_set_extend(cairo_get_source(cr), CAIRO_EXTEND_PAD);
    cairo_paint(cr);
    cairo_restore(cr);
}

/* Integer cell indices about every few labels' width apart, at the cells' centres. */
static double index_step(double span, double size, double font)
{
    double target = fmax(2.0, size / (font * 5.0));
    return fmax(1.0, plot_nice_step(span, target));
}

static void draw_axes(cairo_t *cr, PlotText *text, const Frame *frame, const PlotStyle *style)
{
    const ExpertHeatmapLayout *layout = &frame->layout;
    double scale = layout->size / layout->view.span;
    double step = index_step(layout->view.span, layout->size, frame->font);
    double tick = round(frame->font * 0.3);
    cairo_set_line_width(cr, 1.0);
    plot_set_source_color(cr, style->grid);
    cairo_rectangle(cr, plot_crisp(layout->x - 1.0), plot_crisp(layout->y - 1.0), layout->size + 1.0,
                    layout->size + 1.0);
    cairo_stroke(cr);

    plot_set_source_color(cr, style->foreground);
    for (int axis = 0; axis < 2; axis++) {
        double first = axis == 0 ? layout->view.x0 : layout->view.y0;
        for (double k = ceil((first - 0.5) / step) * step; k + 0.5 <= first + layout->view.span;
             k += step) {
            if (k < 0.0 || k >= layout->side)
                continue;
            double at = (k + 0.5 - first) * scale;
            char label[32];
            snprintf(label, sizeof label, "%.0f", fabs(k)); /* never "-0" */
            plot_set_source_color(cr, style->foreground);
            if (axis == 0) {
                double x = plot_crisp(layout->x + at);
                double y = layout->y + layout->size;
                cairo_move_to(cr, x, y);
                cairo_line_to(cr, x, y + tick);
                cairo_stroke(cr);
                plot_text_draw(text, label, layout->x + at, y + frame->tick_gap, 0.5, 0.0, 0.0);
            } else {
                double y = plot_crisp(layout->y + at);
                cairo_move_to(cr, layout->x - tick, y);
                cairo_line_to(cr, layout->x, y);
                cairo_stroke(cr);
                plot_text_draw(text, label, layout->x - frame->tick_gap, layout->y + at, 1.0, 0.5,
                               0.0);
            }
        }
    }
    double below = layout->y + layout->size + frame->tick_gap * 2.0 + frame->line_height;
    plot_text_draw(text, "b · sub-key of C′ (column)", layout->x + layout->size / 2.0, below, 0.5,
                   0.0, 0.0);
    char widest[32];
    snprintf(widest, sizeof widest, "%d", layout->side > 1 ? layout->side - 1 : 0);
    double index_width;
    plot_text_measure(text, widest, &index_width, NULL);
    double beside = layout->x - frame->tick_gap * 2.0 - index_width - frame->line_height / 2.0;
    plot_text_draw(text, "a · sub-key of C (row)", beside, layout->y + layout->size / 2.0, 0.5,
                   0.5, -M_PI / 2.0);
}

static double bar_position(const ExpertHeatmapLayout *layout, double value)
{
    double t = layout->scale == EXPERT_HEATMAP_LOG ? log(value / layout->lo) /
                                                         log(layout->hi / layout->lo)
                                                   : (value - layout->lo) /
                                                         (layout->hi - layout->lo);
    return layout->bar_y + layout->bar_height * (1.0 - t);
}

static void draw_color_bar(cairo_t *cr, PlotText *text, const Frame *frame,
                           const ExpertHeatmapModel *model, const PlotStyle *style)
{
    const ExpertHeatmapLayout *layout = &frame->layout;
    uint32_t lut[EXPERT_HEATMAP_COLORS];
    expert_heatmap_colormap(lut);
    cairo_surface_t *ramp = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, 1,
                                                       EXPERT_HEATMAP_COLORS);
    if (cairo_surface_status(ramp) == CAIRO_STATUS_SUCCESS) {
        cairo_surface_flush(ramp);
        unsigned char *data = cairo_image_surface_get_data(ramp);
        int stride = cairo_image_surface_get_stride(ramp);
        for (int i = 0; i < EXPERT_HEATMAP_COLORS; i++)
            *(uint32_t *)(void *)(data + (size_t)i * stride) = lut[EXPERT_HEATMAP_COLORS - 1 - i];
        cairo_surface_mark_dirty(ramp);
        cairo_save(cr);
        cairo_rectangle(cr, layout->bar_x, layout->bar_y, layout->bar_width, layout->bar_height);
        cairo_clip(cr);
        cairo_translate(cr, layout->bar_x, layout->bar_y);
        cairo_scale(cr, layout->bar_width, layout->bar_height / EXPERT_HEATMAP_COLORS);
        cairo_set_source_surface(cr, ramp, 0.0, 0.0);
        cairo_pattern_set_extend(cairo_get_source(cr), CAIRO_EXTEND_PAD);
        cairo_paint(cr);
        cairo_restore(cr);
    }
    cairo_surface_destroy(ramp);

    cairo_set_line_width(cr, 1.0);
    plot_set_source_color(cr, style->grid);
    cairo_rectangle(cr, plot_crisp(layout->bar_x - 1.0), plot_crisp(layout->bar_y - 1.0),
                    layout->bar_width + 1.0, layout->bar_height + 1.0);
    cairo_stroke(cr);

    double tick = round(frame->font * 0.3);
    double right = layout->bar_x + layout->bar_width;
    for (size_t i = 0; i < frame->bar_ticks.n; i++) {
        const PlotTick *t = &frame->bar_ticks.ticks[i];
        double y = bar_position(layout, t->value);
        if (y < layout->bar_y - 0.5 || y > layout->bar_y + layout->bar_height + 0.5)
            continue;
        plot_set_source_color(cr, style->foreground);
        cairo_move_to(cr, right, plot_crisp(y));
        cairo_line_to(cr, right + (t->major ? tick : tick / 2.0), plot_crisp(y));
        cairo_stroke(cr);
        if (!t->major)
            continue;
        char label[32];
        format_bar_value(t->value, &frame->bar_ticks, label, sizeof label);
        plot_text_draw(text, label, right + frame->tick_gap, y, 0.0, 0.5, 0.0);
    }
    plot_set_source_color(cr, style->foreground);
    plot_text_draw(text, value_label_of(model), frame->bar_label_x,
                   layout->bar_y + layout->bar_height / 2.0, 0.5, 0.5, -M_PI / 2.0);

    /* The empty cells' colour, and what it means. */
    plot_set_source_color(cr, expert_heatmap_empty_color(style));
    cairo_rectangle(cr, layout->bar_x, frame->swatch_y, layout->bar_width, layout->bar_width);
    cairo_fill(cr);
    plot_set_source_color(cr, style->grid);
    cairo_rectangle(cr, plot_crisp(layout->bar_x - 1.0), plot_crisp(frame->swatch_y - 1.0),
                    layout->bar_width + 1.0, layout->bar_width + 1.0);
    cairo_stroke(cr);
    plot_set_source_color(cr, style->foreground);
    plot_text_draw(text, empty_label_of(model), right + frame->tick_gap,
                   frame->swatch_y + layout->bar_width / 2.0, 0.0, 0.5, 0.0);
}

/* A cell outlined so that it shows on any colour: a dark and a light line side by side; a cell
 * too small to outline gets a ring around its centre instead. */
static void outline_cell(cairo_t *cr, const ExpertHeatmapLayout *layout, int a, int b,
                         PlotColor inner, PlotColor outer, double line)
{
    double x, y, w, h;
    expert_heatmap_layout_cell_rect(layout, a, b, &x, &y, &w, &h);
    cairo_set_line_width(cr, line);
    if (w >= SMALL_CELL) {
        /* On whole pixels, so the lines are crisp. */
        double right = round(x + w), bottom = round(y + h);
        x = round(x);
        y = round(y);
        w = right - x;
        h = bottom - y;
        for (int pass = 0; pass < 2; pass++) {
            double inset = pass == 0 ? line / 2.0 : line * 1.5;
            cairo_rectangle(cr, x + inset, y + inset, w - 2.0 * inset, h - 2.0 * inset);
            plot_set_source_color(cr, pass == 0 ? outer : inner);
            cairo_stroke(cr);
        }
        return;
    }
    double cx = x + w / 2.0, cy = y + h / 2.0, radius = SMALL_CELL / 2.0 + line;
    for (int pass = 0; pass < 2; pass++) {
        cairo_new_sub_path(cr);
        cairo_arc(cr, cx, cy, radius + (pass == 0 ? line : 0.0), 0.0, 2.0 * M_PI);
        plot_set_source_color(cr, pass == 0 ? outer : inner);
        cairo_stroke(cr);
    }
}

static void draw_marks(cairo_t *cr, const Frame *frame, const ExpertHeatmapModel *model,
                       const PlotStyle *style)
{
    const ExpertHeatmapLayout *layout = &frame->layout;
    int side = layout->side;
    int64_t n = (int64_t)side * side;
    cairo_save(cr);
    cairo_rectangle(cr, layout->x, layout->y, layout->size, layout->size);
    cairo_clip(cr);
    PlotColor white = {1.0, 1.0, 1.0, 1.0}, black = {0.0, 0.0, 0.0, 1.0};
    for (size_t i = 0; model->marked && i < model->n_marked; i++) {
        int32_t e = model->marked[i];
        if (e >= 0 && e < n)
            outline_cell(cr, layout, e / side, e % side, black, white, 1.0);
    }
    if (model->selected >= 0 && model->selected < n)
        outline_cell(cr, layout, model->selected / side, model->selected % side,
                     style->foreground, ring_color(style), 2.0);
    cairo_restore(cr);
}

void expert_heatmap_render(cairo_t *cr, double width, double height,
                           const ExpertHeatmapModel *model, const ExpertHeatmapView *view,
                           const PlotStyle *style, cairo_surface_t *image,
                           ExpertHeatmapLayout *layout)
{
    Frame frame;
    ExpertHeatmapView whole;
    if (!view) {
        expert_heatmap_view_reset(&whole, model->side);
        view = &whole;
    }
    layout_frame(cr, width, height, model, view, style, image, &frame);
    if (layout)
        *layout = frame.layout;

    cairo_save(cr);
    if (style->background.alpha > 0.0) {
        plot_set_source_color(cr, style->background);
        cairo_paint(cr);
    }
    PlotText *text = plot_text_new(cr, style);
    if (!frame.show_grid) {
        if (model->message) {
            plot_text_set_font(text, 1.0, false);
            plot_set_source_color_alpha(cr, style->foreground, 0.7);
            plot_text_draw(text, model->message, width / 2.0, height / 2.0, 0.5, 0.5, 0.0);
        }
        plot_text_free(text);
        cairo_restore(cr);
        return;
    }
    if (model->title) {
        plot_text_set_font(text, 1.1, true);
        plot_set_source_color(cr, style->foreground);
        plot_text_draw(text, model->title, frame.layout.x, frame.title_y, 0.0, 0.0, 0.0);
    }
    plot_text_set_font(text, 1.0, false);

    cairo_surface_t *own = NULL;
    if (!image)
        image = own = expert_heatmap_image_new(model, style);
    if (image)
        draw_grid_image(cr, &frame, image);
    if (own)
        cairo_surface_destroy(own);
    draw_axes(cr, text, &frame, style);
    draw_color_bar(cr, text, &frame, model, style);
    draw_marks(cr, &frame, model, style);
    plot_text_free(text);
    cairo_restore(cr);
}

static void fill_box(cairo_t *cr, const PlotStyle *style, double x, double y, double width,
                     double height)
{
    double radius = 3.0;
    cairo_new_sub_path(cr);
    cairo_arc(cr, x + width - radius, y + radius, radius, -M_PI / 2.0, 0.0);
    cairo_arc(cr, x + width - radius, y + height - radius, radius, 0.0, M_PI / 2.0);
    cairo_arc(cr, x + radius, y + height - radius, radius, M_PI / 2.0, M_PI);
    cairo_arc(cr, x + radius, y + radius, radius, M_PI, 1.5 * M_PI);
    cairo_close_path(cr);
    plot_set_source_color_alpha(cr, style->background, HOVER_FILL_ALPHA);
    cairo_fill_preserve(cr);
    cairo_set_line_width(cr, 1.0);
    plot_set_source_color(cr, style->grid);
    cairo_stroke(cr);
}

void expert_heatmap_render_hover(cairo_t *cr, double width, double height,
                                 const ExpertHeatmapLayout *layout, const PlotStyle *style, int a,
                                 int b, const char *const *lines, size_t n_lines,
                                 double pointer_x, double pointer_y)
{
    if (layout->side < 1 || a < 0 || b < 0 || a >= layout->side || b >= layout->side)
        return;
    cairo_save(cr);
    cairo_rectangle(cr, layout->x, layout->y, layout->size, layout->size);
    cairo_clip(cr);
    outline_cell(cr, layout, a, b, style->foreground, ring_color(style), 1.0);
    cairo_restore(cr);
    if (n_lines == 0)
        return;

    cairo_save(cr);
    PlotText *text = plot_text_new(cr, style);
    double font = plot_style_font_pixels(style);
    double box_inner = round(font * 0.5);
    double line_height, box_width = 0.0;
    plot_text_measure(text, "0123456789", NULL, &line_height);
    double row_height = line_height * 1.2;
    for (size_t i = 0; i < n_lines; i++) {
        plot_text_set_font(text, 1.0, i == 0);
        double w;
        plot_text_measure(text, lines[i], &w, NULL);
        box_width = fmax(box_width, w);
    }
    box_width = round(box_width + 2.0 * box_inner);
    double box_height = round(2.0 * box_inner + row_height * (double)n_lines);
    double box_x = pointer_x + font;
    if (box_x + box_width > width - 1.0)
        box_x = pointer_x - font - box_width;
    box_x = round(fmax(0.0, box_x));
    double box_y = round(fmin(fmax(0.0, pointer_y + font), height - box_height - 1.0));
    fill_box(cr, style, box_x + 0.5, box_y + 0.5, box_width, box_height);
    plot_set_source_color(cr, style->foreground);
    double row_y = box_y + box_inner + row_height / 2.0;
    for (size_t i = 0; i < n_lines; i++, row_y += row_height) {
        plot_text_set_font(text, 1.0, i == 0);
        plot_text_draw(text, lines[i], box_x + box_inner, row_y, 0.0, 0.5, 0.0);
    }
    plot_text_free(text);
    cairo_restore(cr);
}
