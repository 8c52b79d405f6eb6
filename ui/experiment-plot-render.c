#include "experiment-plot-render.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Line widths in user-space units; the curves are two units wide so they cover whole pixels. */
#define CURVE_WIDTH 2.0
#define AXIS_ALPHA 0.6
#define TITLE_SCALE 1.15
#define LEGEND_FILL_ALPHA 0.88
/* Room between the data and the frame, as a fraction of the axis (log axes: of its decades). */
#define DATA_MARGIN 0.05

typedef struct {
    double lo, hi;
    bool any;
} Range;

typedef struct {
    ExperimentPlotLayout layout;
    PlotTicks x_ticks, y_ticks;
    double font, pad, gap, tick_length, line_height;
    double left, top, width, height; /* the panel's box */
    /* legend_below: its rows under the x axis label */
    double legend_height, legend_column_width, legend_row_height, legend_swatch;
    int legend_columns;
} Frame;

static double axis_transform(double value, bool log)
{
    return log ? log10(value) : value;
}

static double axis_inverse(double value, bool log)
{
    return log ? pow(10.0, value) : value;
}

double experiment_plot_layout_x_to_pixel(const ExperimentPlotLayout *layout, double x)
{
    double t0 = axis_transform(layout->x_min, layout->log_x);
    double t1 = axis_transform(layout->x_max, layout->log_x);
    return layout->x + (axis_transform(x, layout->log_x) - t0) / (t1 - t0) * layout->width;
}

double experiment_plot_layout_y_to_pixel(const ExperimentPlotLayout *layout, double y)
{
    double t0 = axis_transform(layout->y_min, layout->log_y);
    double t1 = axis_transform(layout->y_max, layout->log_y);
    return layout->y + layout->height -
           (axis_transform(y, layout->log_y) - t0) / (t1 - t0) * layout->height;
}

static bool usable(double value, bool log)
{
    return isfinite(value) && (!log || value > 0.0);
}

static void range_add(Range *range, double value)
{
    if (!range->any) {
        range->lo = range->hi = value;
        range->any = true;
    } else {
        range->lo = fmin(range->lo, value);
        range->hi = fmax(range->hi, value);
    }
}

static void data_ranges(const ExperimentPlotPanel *panel, Range *x, Range *y)
{
    *x = (Range){ 0 };
    *y = (Range){ 0 };
    for (size_t s = 0; s < panel->n_series; s++) {
        const ExperimentPlotSeries *series = &panel->series[s];
        if (series->horizontal) {
            if (series->n > 0 && usable(series->y[0], panel->log_y))
                range_add(y, series->y[0]);
            continue;
        }
        for (size_t i = 0; i < series->n; i++)
            if (usable(series->x[i], panel->log_x) && usable(series->y[i], panel->log_y)) {
                range_add(x, series->x[i]);
                range_add(y, series->y[i]);
            }
    }
}

static bool panel_has_points(const ExperimentPlotPanel *panel)
{
    Range x, y;
    data_ranges(panel, &x, &y);
    return x.any;
}

/* The data range widened by DATA_MARGIN on each side (markers at the ends stay whole), or a
 * default span when there is no data or a single value. */
static void fit_range(Range data, bool log, double *lo, double *hi)
{
    if (!data.any) {
        *lo = log ? 1.0 : 0.0;
        *hi = log ? 10.0 : 1.0;
        return;
    }
    double t0 = axis_transform(data.lo, log), t1 = axis_transform(data.hi, log);
    double span = t1 - t0;
    if (!(span > 0.0))
        span = log ? 0.2 : (t0 != 0.0 ? 0.2 * fabs(t0) : 1.0);
    *lo = axis_inverse(t0 - DATA_MARGIN * span, log);
    *hi = axis_inverse(t1 + DATA_MARGIN * span, log);
}

/* Ticks at N = 4^j, every one labelled when few, else every other one. */
static void square_ticks(PlotTicks *ticks, double lo, double hi, double target)
{
    ticks->n = 0;
    ticks->label_step = 0.0;
    int first = (int)ceil(log(lo) / log(4.0) - 1e-9);
    int last = (int)floor(log(hi) / log(4.0) + 1e-9);
    int count = last - first + 1;
    int every = count > target * 1.5 ? 2 : 1;
    for (int j = first; j <= last && ticks->n < PLOT_MAX_TICKS; j++)
        ticks->ticks[ticks->n++] = (PlotTick){ pow(4.0, j), (j - first) % every == 0 };
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The distinct x values of the panel's points, each a labelled tick. */
static void data_ticks(const ExperimentPlotPanel *panel, PlotTicks *ticks)
{
    ticks->n = 0;
    ticks->label_step = 0.0;
    double values[PLOT_MAX_TICKS];
    size_t n = 0;
    for (size_t s = 0; s < panel->n_series; s++) {
        const ExperimentPlotSeries *series = &panel->series[s];
        for (size_t i = 0; !series->horizontal && i < series->n; i++) {
            if (!usable(series->x[i], panel->log_x) || !usable(series->y[i], panel->log_y))
                continue;
            bool seen = false;
            for (size_t k = 0; k < n && !seen; k++)
                seen = values[k] == series->x[i];
            if (!seen && n < PLOT_MAX_TICKS)
                values[n++] = series->x[i];
        }
    }
    qsort(values, n, sizeof *values, compare_doubles);
    for (size_t i = 0; i < n; i++)
        ticks->ticks[ticks->n++] = (PlotTick){ values[i], true };
}

static void compute_x_ticks(const ExperimentPlotPanel *panel, Frame *frame, double target)
{
    const ExperimentPlotLayout *l = &frame->layout;
    if (panel->x_data_ticks)
        data_ticks(panel, &frame->x_ticks);
    else if (panel->x_squares && l->log_x)
        square_ticks(&frame->x_ticks, l->x_min, l->x_max, target);
    else if (l->log_x)
        plot_ticks_log(&frame->x_ticks, l->x_min, l->x_max, target);
    else
        plot_ticks_linear(&frame->x_ticks, l->x_min, l->x_max, target);
}

static void x_tick_label(const ExperimentPlotPanel *panel, const PlotTicks *ticks, size_t i,
                         char *buffer, size_t size)
{
    double value = ticks->ticks[i].value;
    if (panel->x_squares && panel->log_x)
        snprintf(buffer, size, "%.0f²", sqrt(value));
    else
        plot_format_number(value, ticks->label_step, panel->x_numbers, buffer, size);
}

static void y_tick_label(const PlotTicks *ticks, size_t i, char *buffer, size_t size)
{
    plot_format_number(ticks->ticks[i].value, ticks->label_step, PLOT_NUMBER_PLAIN, buffer, size);
}

/* Columns as wide as the widest entry, as many as fit the panel; rows as many as needed. */
static void measure_legend_below(PlotText *text, const ExperimentPlotPanel *panel, Frame *frame)
{
    size_t entries = 0;
    double widest = 0.0;
    plot_text_set_font(text, 1.0, false);
    for (size_t s = 0; s < panel->n_series; s++) {
        if (!panel->series[s].name)
            continue;
        double w;
        plot_text_measure(text, panel->series[s].name, &w, NULL);
        widest = fmax(widest, w);
        entries++;
    }
    if (entries == 0)
        return;
    frame->legend_swatch = frame->font * 2.0;
    frame->legend_row_height = frame->line_height * 1.25;
    frame->legend_column_width = frame->legend_swatch + frame->gap * 1.5 + widest + frame->font * 1.5;
    double available = frame->width - 2.0 * frame->pad;
    frame->legend_columns = (int)fmax(1.0, floor(available / frame->legend_column_width));
    if ((size_t)frame->legend_columns > entries)
        frame->legend_columns = (int)entries;
    int rows = (int)((entries + (size_t)frame->legend_columns - 1) / (size_t)frame->legend_columns);
    frame->legend_height = rows * frame->legend_row_height + frame->gap;
}

static void frame_compute(PlotText *text, const PlotStyle *style, const ExperimentPlotPanel *panel,
                          double left, double top, double width, double height, Frame *frame)
{
    *frame = (Frame){ 0 };
    frame->left = left;
    frame->top = top;
    frame->width = width;
    frame->height = height;
    frame->font = plot_style_font_pixels(style);
    frame->pad = round(frame->font * 0.75);
    frame->gap = round(frame->font * 0.4);
    frame->tick_length = round(frame->font * 0.35);

    ExperimentPlotLayout *layout = &frame->layout;
    layout->log_x = panel->log_x;
    layout->log_y = panel->log_y;
    Range x_data, y_data;
    data_ranges(panel, &x_data, &y_data);
    fit_range(x_data, panel->log_x, &layout->x_min, &layout->x_max);
    fit_range(y_data, panel->log_y, &layout->y_min, &layout->y_max);

    plot_text_set_font(text, 1.0, false);
    plot_text_measure(text, "0123456789", NULL, &frame->line_height);
    double inner_top = top + frame->pad;
    if (panel->title && *panel->title) {
        double title_height;
        plot_text_set_font(text, TITLE_SCALE, true);
        plot_text_measure(text, panel->title, NULL, &title_height);
        plot_text_set_font(text, 1.0, false);
        inner_top += title_height + frame->gap;
    } else {
        inner_top += frame->line_height / 2.0;
    }
    double bottom = frame->pad + 2.0 * frame->line_height + 2.0 * frame->gap + frame->tick_length;
    if (panel->legend_below)
        measure_legend_below(text, panel, frame);
    bottom += frame->legend_height;
    layout->y = inner_top;
    layout->height = fmax(1.0, top + height - inner_top - bottom);

    double y_target = fmax(2.0, layout->height / (frame->font * 3.0));
    if (layout->log_y)
        plot_ticks_log(&frame->y_ticks, layout->y_min, layout->y_max, y_target);
    else
        plot_ticks_linear(&frame->y_ticks, layout->y_min, layout->y_max, y_target);
    double widest = 0.0;
    for (size_t i = 0; i < frame->y_ticks.n; i++) {
        if (!frame->y_ticks.ticks[i].major)
            continue;
        char label[64];
        double w;
        y_tick_label(&frame->y_ticks, i, label, sizeof label);
        plot_text_measure(text, label, &w, NULL);
        widest = fmax(widest, w);
    }
    layout->x = left + frame->pad + frame->line_height + frame->gap + widest + frame->gap +
                frame->tick_length;
    double right = frame->pad;
    double target = fmax(2.0, (width - (layout->x - left) - right) / (frame->font * 7.0));
    /* Fewer ticks while neighbouring labels would touch; more room while the last runs off. */
    for (int attempt = 0; attempt < 12; attempt++) {
        layout->width = fmax(1.0, left + width - right - layout->x);
        compute_x_ticks(panel, frame, target);
        double previous_end = -INFINITY, last_end = -INFINITY;
        bool crowded = false;
        for (size_t i = 0; i < frame->x_ticks.n; i++) {
            if (!frame->x_ticks.ticks[i].major)
                continue;
            char label[64];
            double w;
            x_tick_label(panel, &frame->x_ticks, i, label, sizeof label);
            plot_text_measure(text, label, &w, NULL);
            double centre = experiment_plot_layout_x_to_pixel(layout, frame->x_ticks.ticks[i].value);
            if (centre - w / 2.0 < previous_end + frame->font * 0.8)
                crowded = true;
            previous_end = last_end = centre + w / 2.0;
        }
        if (crowded && target > 1.0 && !panel->x_data_ticks) {
            target = fmax(1.0, target * 0.7);
            continue;
        }
        double overflow = last_end - (left + width - frame->pad);
        if (overflow > 0.5) {
            right += overflow;
            continue;
        }
        break;
    }
}

static double layout_x_to_pixel(const void *layout, double x)
{
    return experiment_plot_layout_x_to_pixel(layout, x);
}

static double layout_y_to_pixel(const void *layout, double y)
{
    return experiment_plot_layout_y_to_pixel(layout, y);
}

static void draw_grid(cairo_t *cr, const Frame *frame, const PlotStyle *style)
{
    const ExperimentPlotLayout *l = &frame->layout;
    plot_draw_grid(cr, style, l->x, l->y, l->width, l->height, &frame->x_ticks, &frame->y_ticks,
                   layout_x_to_pixel, layout_y_to_pixel, l);
}

static void draw_axes(cairo_t *cr, PlotText *text, const Frame *frame,
                      const ExperimentPlotPanel *panel, const PlotStyle *style)
{
    const ExperimentPlotLayout *l = &frame->layout;
    double left = plot_crisp(l->x), bottom = plot_crisp(l->y + l->height);
    cairo_set_line_width(cr, 1.0);
    plot_set_source_color_alpha(cr, style->foreground, AXIS_ALPHA);
    cairo_move_to(cr, left, l->y);
    cairo_line_to(cr, left, bottom);
    cairo_line_to(cr, l->x + l->width, bottom);
    for (size_t i = 0; i < frame->x_ticks.n; i++) {
        double length = frame->x_ticks.ticks[i].major ? frame->tick_length : frame->tick_length / 2;
        double x = plot_crisp(experiment_plot_layout_x_to_pixel(l, frame->x_ticks.ticks[i].value));
        cairo_move_to(cr, x, bottom);
        cairo_line_to(cr, x, bottom + length);
    }
    for (size_t i = 0; i < frame->y_ticks.n; i++) {
        double length = frame->y_ticks.ticks[i].major ? frame->tick_length : frame->tick_length / 2;
        double y = plot_crisp(experiment_plot_layout_y_to_pixel(l, frame->y_ticks.ticks[i].value));
        cairo_move_to(cr, left, y);
        cairo_line_to(cr, left - length, y);
    }
    cairo_stroke(cr);

    plot_text_set_font(text, 1.0, false);
    plot_set_source_color(cr, style->foreground);
    char label[64];
    double label_top = l->y + l->height + frame->tick_length + frame->gap;
    for (size_t i = 0; i < frame->x_ticks.n; i++) {
        if (!frame->x_ticks.ticks[i].major)
            continue;
        x_tick_label(panel, &frame->x_ticks, i, label, sizeof label);
        plot_text_draw(text, label,
                       experiment_plot_layout_x_to_pixel(l, frame->x_ticks.ticks[i].value),
                       label_top, 0.5, 0.0, 0.0);
    }
    for (size_t i = 0; i < frame->y_ticks.n; i++) {
        if (!frame->y_ticks.ticks[i].major)
            continue;
        y_tick_label(&frame->y_ticks, i, label, sizeof label);
        plot_text_draw(text, label, l->x - frame->tick_length - frame->gap,
                       experiment_plot_layout_y_to_pixel(l, frame->y_ticks.ticks[i].value), 1.0,
                       0.5, 0.0);
    }
    if (panel->x_label)
        plot_text_draw(text, panel->x_label, l->x + l->width / 2.0,
                       frame->top + frame->height - frame->pad - frame->legend_height, 0.5, 1.0,
                       0.0);
    if (panel->y_label)
        plot_text_draw(text, panel->y_label, frame->left + frame->pad, l->y + l->height / 2.0, 0.5,
                       0.0, -M_PI / 2.0);
    if (panel->title && *panel->title) {
        plot_text_set_font(text, TITLE_SCALE, true);
        plot_text_draw(text, panel->title, l->x + l->width / 2.0, frame->top + frame->pad, 0.5,
                       0.0, 0.0);
        plot_text_set_font(text, 1.0, false);
    }
}

static PlotColor marker_ring(const PlotStyle *style)
{
    return style->background.alpha > 0.0 ? style->background : (PlotColor){ 1.0, 1.0, 1.0, 1.0 };
}

static void draw_marker(cairo_t *cr, double x, double y, double radius, PlotColor fill,
                        PlotColor ring)
{
    cairo_new_sub_path(cr);
    cairo_arc(cr, x, y, radius, 0.0, 2.0 * M_PI);
    plot_set_source_color(cr, fill);
    cairo_fill_preserve(cr);
    cairo_set_line_width(cr, 1.0);
    plot_set_source_color(cr, ring);
    cairo_stroke(cr);
}

static void set_dash(cairo_t *cr, const Frame *frame, bool dashed)
{
    double dashes[] = { frame->font * 0.5, frame->font * 0.35 };
    cairo_set_dash(cr, dashes, dashed ? 2 : 0, 0.0);
}

static void draw_series(cairo_t *cr, const Frame *frame, const ExperimentPlotPanel *panel,
                        const ExperimentPlotSeries *series, const PlotStyle *style)
{
    const ExperimentPlotLayout *l = &frame->layout;
    PlotColor color = plot_palette_get(series->color);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
    cairo_set_line_width(cr, series->horizontal ? 1.5 : CURVE_WIDTH);
    plot_set_source_color(cr, color);
    set_dash(cr, frame, series->dashed);
    if (series->horizontal) {
        if (series->n > 0 && usable(series->y[0], panel->log_y)) {
            double y = experiment_plot_layout_y_to_pixel(l, series->y[0]);
            cairo_move_to(cr, l->x, y);
            cairo_line_to(cr, l->x + l->width, y);
            cairo_stroke(cr);
        }
        set_dash(cr, frame, false);
        return;
    }
    bool pen_down = false;
    for (size_t i = 0; i < series->n; i++) {
        if (!usable(series->x[i], panel->log_x) || !usable(series->y[i], panel->log_y)) {
            pen_down = false;
            continue;
        }
        double x = experiment_plot_layout_x_to_pixel(l, series->x[i]);
        double y = experiment_plot_layout_y_to_pixel(l, series->y[i]);
        if (pen_down)
            cairo_line_to(cr, x, y);
        else
            cairo_move_to(cr, x, y);
        pen_down = true;
    }
    cairo_stroke(cr);
    set_dash(cr, frame, false);
    double radius = frame->font * 0.33;
    for (size_t i = 0; i < series->n; i++)
        if (usable(series->x[i], panel->log_x) && usable(series->y[i], panel->log_y))
            draw_marker(cr, experiment_plot_layout_x_to_pixel(l, series->x[i]),
                        experiment_plot_layout_y_to_pixel(l, series->y[i]), radius, color,
                        marker_ring(style));
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
    plot_set_source_color_alpha(cr, marker_ring(style), LEGEND_FILL_ALPHA);
    cairo_fill_preserve(cr);
    cairo_set_line_width(cr, 1.0);
    plot_set_source_color(cr, style->grid);
    cairo_stroke(cr);
}

/* Data points (and segment midpoints) of the panel inside a box: the legend goes to the corner
 * where it hides the fewest. */
static int points_under(const Frame *frame, const ExperimentPlotPanel *panel, double x, double y,
                        double width, double height)
{
    const ExperimentPlotLayout *l = &frame->layout;
    int count = 0;
    for (size_t s = 0; s < panel->n_series; s++) {
        const ExperimentPlotSeries *series = &panel->series[s];
        if (series->horizontal) {
            if (series->n > 0 && usable(series->y[0], panel->log_y)) {
                double py = experiment_plot_layout_y_to_pixel(l, series->y[0]);
                count += py >= y && py <= y + height;
            }
            continue;
        }
        double previous_x = NAN, previous_y = NAN;
        for (size_t i = 0; i < series->n; i++) {
            if (!usable(series->x[i], panel->log_x) || !usable(series->y[i], panel->log_y)) {
                previous_x = NAN;
                continue;
            }
            double px = experiment_plot_layout_x_to_pixel(l, series->x[i]);
            double py = experiment_plot_layout_y_to_pixel(l, series->y[i]);
            /* A marker hidden costs more than a stretch of line; three samples along each
             * segment, so a line crossing the box counts too. */
            count += 4 * (px >= x && px <= x + width && py >= y && py <= y + height);
            for (int k = isfinite(previous_x) ? 1 : 3; k < 3; k++) {
                double t = k / 3.0;
                double sx = previous_x + t * (px - previous_x);
                double sy = previous_y + t * (py - previous_y);
                count += sx >= x && sx <= x + width && sy >= y && sy <= y + height;
            }
            previous_x = px;
            previous_y = py;
        }
    }
    return count;
}

static void draw_legend(cairo_t *cr, PlotText *text, const Frame *frame,
                        const ExperimentPlotPanel *panel, const PlotStyle *style)
{
    const ExperimentPlotLayout *l = &frame->layout;
    plot_text_set_font(text, 1.0, false);
    size_t rows = 0;
    double widest = 0.0;
    for (size_t s = 0; s < panel->n_series; s++) {
        if (!panel->series[s].name)
            continue;
        double w;
        plot_text_measure(text, panel->series[s].name, &w, NULL);
        widest = fmax(widest, w);
        rows++;
    }
    if (rows == 0)
        return;
    double row_height = frame->line_height * 1.25;
    double swatch = frame->font * 2.0;
    double inner = frame->gap * 1.5;
    double box_width = round(inner + swatch + frame->gap * 1.5 + widest + inner);
    double box_height = round(inner * 2.0 + (double)rows * row_height);
    if (box_width > l->width * 0.75 || box_height > l->height * 0.9)
        return;
    double margin = frame->gap * 1.5;
    double xs[2] = { round(l->x + l->width - margin - box_width), round(l->x + margin) };
    double ys[2] = { round(l->y + margin), round(l->y + l->height - margin - box_height) };
    /* Top right, bottom right, top left, bottom left: the first that hides the fewest points. */
    const int corners[4][2] = { { 0, 0 }, { 0, 1 }, { 1, 0 }, { 1, 1 } };
    int best = 0, best_count = -1;
    for (int c = 0; c < 4; c++) {
        int count = points_under(frame, panel, xs[corners[c][0]], ys[corners[c][1]], box_width,
                                 box_height);
        if (best_count < 0 || count < best_count) {
            best = c;
            best_count = count;
        }
    }
    double box_x = xs[corners[best][0]], box_y = ys[corners[best][1]];
    fill_box(cr, style, box_x + 0.5, box_y + 0.5, box_width, box_height);
    double swatch_x = box_x + inner;
    double text_x = swatch_x + swatch + frame->gap * 1.5;
    double row_y = box_y + inner + row_height / 2.0;
    for (size_t s = 0; s < panel->n_series; s++) {
        const ExperimentPlotSeries *series = &panel->series[s];
        if (!series->name)
            continue;
        PlotColor color = plot_palette_get(series->color);
        cairo_set_line_width(cr, CURVE_WIDTH);
        cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
        set_dash(cr, frame, series->dashed);
        plot_set_source_color(cr, color);
        cairo_move_to(cr, swatch_x, row_y);
        cairo_line_to(cr, swatch_x + swatch, row_y);
        cairo_stroke(cr);
        set_dash(cr, frame, false);
        if (!series->horizontal)
            draw_marker(cr, swatch_x + swatch / 2.0, row_y, frame->font * 0.3, color,
                        marker_ring(style));
        plot_set_source_color(cr, style->foreground);
        plot_text_draw(text, series->name, text_x, row_y, 0.0, 0.5, 0.0);
        row_y += row_height;
    }
}

static void draw_legend_below(cairo_t *cr, PlotText *text, const Frame *frame,
                              const ExperimentPlotPanel *panel, const PlotStyle *style)
{
    if (frame->legend_columns < 1)
        return;
    plot_text_set_font(text, 1.0, false);
    double total = frame->legend_columns * frame->legend_column_width;
    double x0 = round(frame->left + fmax(frame->pad, (frame->width - total) / 2.0));
    double y0 = frame->top + frame->height - frame->pad - frame->legend_height + frame->gap;
    int index = 0;
    for (size_t s = 0; s < panel->n_series; s++) {
        const ExperimentPlotSeries *series = &panel->series[s];
        if (!series->name)
            continue;
        double x = x0 + (index % frame->legend_columns) * frame->legend_column_width;
        double y = y0 + (index / frame->legend_columns + 0.5) * frame->legend_row_height;
        PlotColor color = plot_palette_get(series->color);
        cairo_set_line_width(cr, CURVE_WIDTH);
        cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
        set_dash(cr, frame, series->dashed);
        plot_set_source_color(cr, color);
        cairo_move_to(cr, x, y);
        cairo_line_to(cr, x + frame->legend_swatch, y);
        cairo_stroke(cr);
        set_dash(cr, frame, false);
        if (!series->horizontal)
            draw_marker(cr, x + frame->legend_swatch / 2.0, y, frame->font * 0.3, color,
                        marker_ring(style));
        plot_set_source_color(cr, style->foreground);
        plot_text_draw(text, series->name, x + frame->legend_swatch + frame->gap * 1.5, y, 0.0,
                       0.5, 0.0);
        index++;
    }
}

static void render_panel(cairo_t *cr, PlotText *text, const ExperimentPlotPanel *panel,
                         const PlotStyle *style, double left, double width, double height,
                         ExperimentPlotLayout *layout)
{
    Frame frame;
    frame_compute(text, style, panel, left, 0.0, width, height, &frame);
    bool has_points = panel_has_points(panel);
    if (!has_points) {
        /* A range with no data behind it: no numbers to read on it. */
        frame.x_ticks.n = 0;
        frame.y_ticks.n = 0;
    }
    draw_grid(cr, &frame, style);
    cairo_save(cr);
    cairo_rectangle(cr, frame.layout.x, frame.layout.y, frame.layout.width, frame.layout.height);
    cairo_clip(cr);
    for (size_t s = 0; s < panel->n_series; s++)
        if (panel->series[s].horizontal)
            draw_series(cr, &frame, panel, &panel->series[s], style);
    for (size_t s = 0; s < panel->n_series; s++)
        if (!panel->series[s].horizontal)
            draw_series(cr, &frame, panel, &panel->series[s], style);
    cairo_restore(cr);
    draw_axes(cr, text, &frame, panel, style);
    if (!has_points && panel->empty_text) {
        plot_text_set_font(text, 1.0, false);
        plot_set_source_color_alpha(cr, style->foreground, 0.7);
        plot_text_draw(text, panel->empty_text, frame.layout.x + frame.layout.width / 2.0,
                       frame.layout.y + frame.layout.height / 2.0, 0.5, 0.5, 0.0);
    } else if (panel->legend_below) {
        draw_legend_below(cr, text, &frame, panel, style);
    } else {
        draw_legend(cr, text, &frame, panel, style);
    }
    if (layout)
        *layout = frame.layout;
}

void experiment_plot_render(cairo_t *cr, double width, double height,
                            const ExperimentPlotPanel *panels, size_t n_panels,
                            const PlotStyle *style, ExperimentPlotLayout *layouts)
{
    cairo_save(cr);
    if (style->background.alpha > 0.0) {
        plot_set_source_color(cr, style->background);
        cairo_rectangle(cr, 0.0, 0.0, width, height);
        cairo_fill(cr);
    }
    PlotText *text = plot_text_new(cr, style);
    double panel_width = n_panels > 0 ? width / (double)n_panels : width;
    for (size_t p = 0; p < n_panels; p++)
        render_panel(cr, text, &panels[p], style, round(panel_width * (double)p),
                     round(panel_width * (double)(p + 1)) - round(panel_width * (double)p),
                     height, layouts ? &layouts[p] : NULL);
    plot_text_free(text);
    cairo_restore(cr);
}
