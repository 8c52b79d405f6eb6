#include "loss-plot-render.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Line widths in user-space units. The main curve is two units wide so that it covers whole
 * pixels at any height, which the tests rely on. */
#define CURVE_WIDTH 2.0
#define RAW_WIDTH 1.0
#define RAW_ALPHA 0.3
#define VAL_WIDTH 1.5
#define AXIS_ALPHA 0.6
#define TITLE_SCALE 1.15
#define LEGEND_FILL_ALPHA 0.88
#define HOVER_FILL_ALPHA 0.94

typedef struct {
    double lo, hi;
    bool any;
} Range;

/* The layout and the ticks it was made with, so drawing uses exactly the ticks the layout
 * measured. Sizes are in user-space units. */
typedef struct {
    LossPlotLayout layout;
    PlotTicks x_ticks;
    PlotTicks y_ticks;
    double font; /* font size */
    double pad;  /* between the edge and the outermost text */
    double gap;  /* between a tick and its label */
    double tick_length;
    double line_height;
    double width, height;
} Frame;

const char *loss_plot_x_axis_label(LossPlotXAxis axis)
{
    switch (axis) {
    case LOSS_PLOT_X_TOKENS:
        return "tokens";
    case LOSS_PLOT_X_FLOPS:
        return "training FLOPs";
    case LOSS_PLOT_X_STEPS:
    default:
        return "step";
    }
}

const double *loss_plot_series_train_x(const LossPlotSeries *series, LossPlotXAxis axis)
{
    switch (axis) {
    case LOSS_PLOT_X_TOKENS:
        return series->train_tokens;
    case LOSS_PLOT_X_FLOPS:
        return series->train_flops;
    case LOSS_PLOT_X_STEPS:
    default:
        return series->train_steps;
    }
}

const double *loss_plot_series_val_x(const LossPlotSeries *series, LossPlotXAxis axis)
{
    switch (axis) {
    case LOSS_PLOT_X_TOKENS:
        return series->val_tokens;
    case LOSS_PLOT_X_FLOPS:
        return series->val_flops;
    case LOSS_PLOT_X_STEPS:
    default:
        return series->val_steps;
    }
}

static PlotNumberStyle x_number_style(LossPlotXAxis axis)
{
    return axis == LOSS_PLOT_X_FLOPS ? PLOT_NUMBER_SCIENTIFIC : PLOT_NUMBER_SI;
}

void loss_plot_smooth(const double *values, size_t n, double weight, double *smoothed)
{
    double average = 0.0;
    double weight_power = 1.0; /* w^t after t finite values */
    for (size_t i = 0; i < n; i++) {
        double value = values[i];
        if (!isfinite(value)) {
            smoothed[i] = value;
            continue;
        }
        average = weight * average + (1.0 - weight) * value;
        weight_power *= weight;
        smoothed[i] = weight > 0.0 ? average / (1.0 - weight_power) : value;
    }
}

static bool value_usable(double value, bool log)
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

static void range_add_points(Range *x_range, Range *y_range, const LossPlotModel *model,
                             const double *xs, const double *ys, size_t n)
{
    if (!xs || !ys)
        return;
    for (size_t i = 0; i < n; i++) {
        if (value_usable(xs[i], model->log_x) && value_usable(ys[i], model->log_y)) {
            range_add(x_range, xs[i]);
            range_add(y_range, ys[i]);
        }
    }
}

static void data_ranges(const LossPlotModel *model, Range *x_range, Range *y_range)
{
    *x_range = (Range){0};
    *y_range = (Range){0};
    for (size_t s = 0; s < model->n_series; s++) {
        const LossPlotSeries *series = &model->series[s];
        if (!series->visible)
            continue;
        /* The smoothed curve is a weighted mean of raw values, so the raw ones bound it. */
        range_add_points(x_range, y_range, model, loss_plot_series_train_x(series, model->x_axis),
                         series->train_loss, series->n_train);
        range_add_points(x_range, y_range, model, loss_plot_series_val_x(series, model->x_axis),
                         series->val_loss, series->n_val);
    }
}

static bool fixed_range_usable(double lo, double hi, bool log)
{
    return isfinite(lo) && isfinite(hi) && hi > lo && (!log || lo > 0.0);
}

static void fit_x_range(const LossPlotModel *model, Range data, double *lo, double *hi)
{
    bool log = model->log_x;
    if (model->fixed_x && fixed_range_usable(model->x_min, model->x_max, log)) {
        *lo = model->x_min;
        *hi = model->x_max;
        return;
    }
    if (!data.any) {
        *lo = log ? 1.0 : 0.0;
        *hi = log ? 10.0 : 1.0;
        return;
    }
    *lo = data.lo;
    *hi = data.hi;
    if (*hi <= *lo) {
        if (log) {
            *lo /= 2.0;
            *hi *= 2.0;
        } else if (*lo == 0.0) {
            *hi = 1.0;
        } else {
            double margin = 0.05 * fabs(*lo);
            *lo -= margin;
            *hi += margin;
        }
    } else if (!log && *lo > 0.0 && *lo < 0.1 * (*hi - *lo)) {
        /* A run logged from step 1 or 10 reads better on an axis that starts at 0. */
        *lo = 0.0;
    }
}

static void fit_y_range(const LossPlotModel *model, Range data, double *lo, double *hi)
{
    bool log = model->log_y;
    if (model->fixed_y && fixed_range_usable(model->y_min, model->y_max, log)) {
        *lo = model->y_min;
        *hi = model->y_max;
        return;
    }
    if (!data.any) {
        *lo = log ? 1.0 : 0.0;
        *hi = log ? 10.0 : 1.0;
        return;
    }
    *lo = data.lo;
    *hi = data.hi;
    if (*hi <= *lo) {
        if (log) {
            *lo /= 1.25;
            *hi *= 1.25;
        } else {
            double margin = *lo != 0.0 ? 0.1 * fabs(*lo) : 1.0;
            *lo -= margin;
            *hi += margin;
        }
        return;
    }
    /* A margin so the extremes do not run along the frame. */
    if (log) {
        double factor = pow(*hi / *lo, 0.05);
        *lo /= factor;
        *hi *= factor;
    } else {
        double margin = 0.05 * (*hi - *lo);
        bool non_negative = *lo >= 0.0;
        *lo -= margin;
        *hi += margin;
        if (non_negative && *lo < 0.0)
            *lo = 0.0;
    }
}

static double axis_transform(double value, bool log)
{
    return log ? log10(value) : value;
}

static double axis_inverse(double value, bool log)
{
    return log ? pow(10.0, value) : value;
}

double loss_plot_layout_x_to_pixel(const LossPlotLayout *layout, double x)
{
    double t0 = axis_transform(layout->x_min, layout->log_x);
    double t1 = axis_transform(layout->x_max, layout->log_x);
    return layout->x + (axis_transform(x, layout->log_x) - t0) / (t1 - t0) * layout->width;
}

double loss_plot_layout_y_to_pixel(const LossPlotLayout *layout, double y)
{
    double t0 = axis_transform(layout->y_min, layout->log_y);
    double t1 = axis_transform(layout->y_max, layout->log_y);
    return layout->y + layout->height -
           (axis_transform(y, layout->log_y) - t0) / (t1 - t0) * layout->height;
}

double loss_plot_layout_pixel_to_x(const LossPlotLayout *layout, double pixel)
{
    double t0 = axis_transform(layout->x_min, layout->log_x);
    double t1 = axis_transform(layout->x_max, layout->log_x);
    return axis_inverse(t0 + (pixel - layout->x) / layout->width * (t1 - t0), layout->log_x);
}

double loss_plot_layout_pixel_to_y(const LossPlotLayout *layout, double pixel)
{
    double t0 = axis_transform(layout->y_min, layout->log_y);
    double t1 = axis_transform(layout->y_max, layout->log_y);
    return axis_inverse(t0 + (layout->y + layout->height - pixel) / layout->height * (t1 - t0),
                        layout->log_y);
}

static void compute_ticks(PlotTicks *ticks, double lo, double hi, bool log, double target)
{
    if (log)
        plot_ticks_log(ticks, lo, hi, target);
    else
        plot_ticks_linear(ticks, lo, hi, target);
}

static const char *x_label_of(const LossPlotModel *model)
{
    return model->x_label ? model->x_label : loss_plot_x_axis_label(model->x_axis);
}

static const char *y_label_of(const LossPlotModel *model)
{
    return model->y_label ? model->y_label : "loss (nats)";
}

static void tick_label(const PlotTicks *ticks, size_t i, PlotNumberStyle style, char *buffer,
                       size_t size)
{
    plot_format_number(ticks->ticks[i].value, ticks->label_step, style, buffer, size);
}

/* Places the x tick labels: fewer ticks while neighbouring labels would touch, and a wider right
 * margin while the last label would run off the edge. */
static void fit_x_ticks(PlotText *text, const LossPlotModel *model, Frame *frame, double left)
{
    LossPlotLayout *layout = &frame->layout;
    double right = frame->pad;
    double target = fmax(2.0, (frame->width - left - right) / (frame->font * 6.0));
    /* Steps and tokens are counts: no tick between two of them. */
    if (model->x_axis != LOSS_PLOT_X_FLOPS)
        target = fmax(1.0, fmin(target, layout->x_max - layout->x_min));
    for (int attempt = 0; attempt < 12; attempt++) {
        layout->width = fmax(1.0, frame->width - left - right);
        compute_ticks(&frame->x_ticks, layout->x_min, layout->x_max, layout->log_x, target);
        double previous_end = -INFINITY;
        double last_end = -INFINITY;
        bool crowded = false;
        for (size_t i = 0; i < frame->x_ticks.n; i++) {
            if (!frame->x_ticks.ticks[i].major)
                continue;
            char label[64];
            double label_width;
            tick_label(&frame->x_ticks, i, x_number_style(model->x_axis), label, sizeof label);
            plot_text_measure(text, label, &label_width, NULL);
            double centre = loss_plot_layout_x_to_pixel(layout, frame->x_ticks.ticks[i].value);
            if (centre - label_width / 2.0 < previous_end + frame->font)
                crowded = true;
            previous_end = last_end = centre + label_width / 2.0;
        }
        if (crowded && target > 1.0) {
            target = fmax(1.0, target * 0.7);
            continue;
        }
        double overflow = last_end - (frame->width - frame->pad);
        if (overflow > 0.5) {
            right += overflow;
            continue;
        }
        break;
    }
}

static void frame_compute(PlotText *text, const PlotStyle *style, double width, double height,
                          const LossPlotModel *model, Frame *frame)
{
    *frame = (Frame){0};
    frame->width = width;
    frame->height = height;
    frame->font = plot_style_font_pixels(style);
    frame->pad = round(frame->font * 0.75);
    frame->gap = round(frame->font * 0.4);
    frame->tick_length = round(frame->font * 0.35);

    LossPlotLayout *layout = &frame->layout;
    layout->log_x = model->log_x;
    layout->log_y = model->log_y;
    Range x_data, y_data;
    data_ranges(model, &x_data, &y_data);
    fit_x_range(model, x_data, &layout->x_min, &layout->x_max);
    fit_y_range(model, y_data, &layout->y_min, &layout->y_max);

    plot_text_set_font(text, 1.0, false);
    plot_text_measure(text, "0123456789", NULL, &frame->line_height);

    double top = frame->pad;
    if (model->title && *model->title) {
        double title_height;
        plot_text_set_font(text, TITLE_SCALE, true);
        plot_text_measure(text, model->title, NULL, &title_height);
        plot_text_set_font(text, 1.0, false);
        top += title_height + frame->gap;
    } else {
        /* Room for half of the top tick label, which is centred on its tick. */
        top += frame->line_height / 2.0;
    }
    double bottom = frame->pad + frame->line_height + frame->gap + frame->line_height + frame->gap +
                    frame->tick_length;
    layout->y = top;
    layout->height = fmax(1.0, height - top - bottom);

    /* Fewer ticks while neighbouring labels would touch (a log axis spaces them unevenly). */
    double y_target = fmax(2.0, layout->height / (frame->font * 3.0));
    for (int attempt = 0; attempt < 12; attempt++) {
        compute_ticks(&frame->y_ticks, layout->y_min, layout->y_max, layout->log_y, y_target);
        double closest = INFINITY, previous = NAN;
        for (size_t i = 0; i < frame->y_ticks.n; i++) {
            if (!frame->y_ticks.ticks[i].major)
                continue;
            double y = loss_plot_layout_y_to_pixel(layout, frame->y_ticks.ticks[i].value);
            closest = fmin(closest, fabs(previous - y));
            previous = y;
        }
        if (!(closest < frame->line_height * 1.2) || y_target <= 1.0)
            break;
        y_target = fmax(1.0, y_target * 0.7);
    }
    double widest = 0.0;
    for (size_t i = 0; i < frame->y_ticks.n; i++) {
        if (!frame->y_ticks.ticks[i].major)
            continue;
        char label[64];
        double label_width;
        tick_label(&frame->y_ticks, i, PLOT_NUMBER_PLAIN, label, sizeof label);
        plot_text_measure(text, label, &label_width, NULL);
        widest = fmax(widest, label_width);
    }
    double left =
        frame->pad + frame->line_height + frame->gap + widest + frame->gap + frame->tick_length;
    layout->x = left;
    fit_x_ticks(text, model, frame, left);
}

void loss_plot_layout(cairo_t *cr, double width, double height, const LossPlotModel *model,
                      const PlotStyle *style, LossPlotLayout *layout)
{
    PlotText *text = plot_text_new(cr, style);
    Frame frame;
    frame_compute(text, style, width, height, model, &frame);
    plot_text_free(text);
    *layout = frame.layout;
}

static double layout_x_to_pixel(const void *layout, double x)
{
    return loss_plot_layout_x_to_pixel(layout, x);
}

static double layout_y_to_pixel(const void *layout, double y)
{
    return loss_plot_layout_y_to_pixel(layout, y);
}

static void draw_grid(cairo_t *cr, const Frame *frame, const PlotStyle *style)
{
    const LossPlotLayout *l = &frame->layout;
    plot_draw_grid(cr, style, l->x, l->y, l->width, l->height, &frame->x_ticks, &frame->y_ticks,
                   layout_x_to_pixel, layout_y_to_pixel, l);
}

static void draw_axes(cairo_t *cr, PlotText *text, const Frame *frame, const LossPlotModel *model,
                      const PlotStyle *style)
{
    const LossPlotLayout *layout = &frame->layout;
    double left = plot_crisp(layout->x);
    double bottom = plot_crisp(layout->y + layout->height);

    cairo_set_line_width(cr, 1.0);
    plot_set_source_color_alpha(cr, style->foreground, AXIS_ALPHA);
    cairo_move_to(cr, left, layout->y);
    cairo_line_to(cr, left, bottom);
    cairo_line_to(cr, layout->x + layout->width, bottom);
    for (size_t i = 0; i < frame->x_ticks.n; i++) {
        double length =
            frame->x_ticks.ticks[i].major ? frame->tick_length : frame->tick_length / 2.0;
        double x = plot_crisp(loss_plot_layout_x_to_pixel(layout, frame->x_ticks.ticks[i].value));
        cairo_move_to(cr, x, bottom);
        cairo_line_to(cr, x, bottom + length);
    }
    for (size_t i = 0; i < frame->y_ticks.n; i++) {
        double length =
            frame->y_ticks.ticks[i].major ? frame->tick_length : frame->tick_length / 2.0;
        double y = plot_crisp(loss_plot_layout_y_to_pixel(layout, frame->y_ticks.ticks[i].value));
        cairo_move_to(cr, left, y);
        cairo_line_to(cr, left - length, y);
    }
    cairo_stroke(cr);

    plot_text_set_font(text, 1.0, false);
    plot_set_source_color(cr, style->foreground);
    char label[64];
    double label_top = layout->y + layout->height + frame->tick_length + frame->gap;
    for (size_t i = 0; i < frame->x_ticks.n; i++) {
        if (!frame->x_ticks.ticks[i].major)
            continue;
        tick_label(&frame->x_ticks, i, x_number_style(model->x_axis), label, sizeof label);
        plot_text_draw(text, label,
                       loss_plot_layout_x_to_pixel(layout, frame->x_ticks.ticks[i].value),
                       label_top, 0.5, 0.0, 0.0);
    }
    double label_right = layout->x - frame->tick_length - frame->gap;
    for (size_t i = 0; i < frame->y_ticks.n; i++) {
        if (!frame->y_ticks.ticks[i].major)
            continue;
        tick_label(&frame->y_ticks, i, PLOT_NUMBER_PLAIN, label, sizeof label);
        plot_text_draw(text, label, label_right,
                       loss_plot_layout_y_to_pixel(layout, frame->y_ticks.ticks[i].value), 1.0, 0.5,
                       0.0);
    }

    plot_text_draw(text, x_label_of(model), layout->x + layout->width / 2.0,
                   frame->height - frame->pad, 0.5, 1.0, 0.0);
    plot_text_draw(text, y_label_of(model), frame->pad, layout->y + layout->height / 2.0, 0.5, 0.0,
                   -M_PI / 2.0);

    if (model->title && *model->title) {
        plot_text_set_font(text, TITLE_SCALE, true);
        plot_text_draw(text, model->title, layout->x + layout->width / 2.0, frame->pad, 0.5, 0.0,
                       0.0);
        plot_text_set_font(text, 1.0, false);
    }
}

/* A path through the points that keeps, of all the points falling in one pixel column, the
 * first, the lowest, the highest and the last (in their order): the same picture as every
 * point, at no more than four points a column, however long the run. */
typedef struct {
    double x, y;
    size_t index;
} PathPoint;

typedef struct {
    cairo_t *cr;
    size_t emitted; /* points in the current unbroken piece */
    bool active;
    double column;
    PathPoint first, last, low, high;
} PathBuilder;

static void path_emit(PathBuilder *path, PathPoint point)
{
    if (path->emitted == 0)
        cairo_move_to(path->cr, point.x, point.y);
    else
        cairo_line_to(path->cr, point.x, point.y);
    path->emitted++;
}

static void path_flush(PathBuilder *path)
{
    if (!path->active)
        return;
    PathPoint a = path->low, b = path->high;
    if (a.index > b.index) {
        PathPoint swap = a;
        a = b;
        b = swap;
    }
    path_emit(path, path->first);
    if (a.index != path->first.index && a.index != path->last.index)
        path_emit(path, a);
    if (b.index != path->first.index && b.index != path->last.index && b.index != a.index)
        path_emit(path, b);
    if (path->last.index != path->first.index)
        path_emit(path, path->last);
    path->active = false;
}

static void path_break(PathBuilder *path)
{
    path_flush(path);
    /* A lone point between gaps still shows, as a dot drawn by the round cap. */
    if (path->emitted == 1) {
        double x, y;
        cairo_get_current_point(path->cr, &x, &y);
        cairo_line_to(path->cr, x, y);
    }
    path->emitted = 0;
}

static void path_add(PathBuilder *path, size_t index, double x, double y)
{
    PathPoint point = {x, y, index};
    double column = floor(x);
    if (path->active && column == path->column) {
        path->last = point;
        if (y < path->low.y)
            path->low = point;
        if (y > path->high.y)
            path->high = point;
        return;
    }
    path_flush(path);
    path->active = true;
    path->column = column;
    path->first = path->last = path->low = path->high = point;
}

static void path_points(cairo_t *cr, const LossPlotLayout *layout, const double *xs,
                        const double *ys, size_t n)
{
    PathBuilder path = {.cr = cr};
    for (size_t i = 0; i < n; i++) {
        if (!value_usable(xs[i], layout->log_x) || !value_usable(ys[i], layout->log_y)) {
            path_break(&path);
            continue;
        }
        path_add(&path, i, loss_plot_layout_x_to_pixel(layout, xs[i]),
                 loss_plot_layout_y_to_pixel(layout, ys[i]));
    }
    path_break(&path);
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

static PlotColor marker_ring(const PlotStyle *style)
{
    return style->background.alpha > 0.0 ? style->background : (PlotColor){1.0, 1.0, 1.0, 1.0};
}

static void draw_training(cairo_t *cr, const Frame *frame, const LossPlotModel *model,
                          const LossPlotSeries *series)
{
    const LossPlotLayout *layout = &frame->layout;
    PlotColor color = plot_palette_get(series->color);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);

    const double *xs = loss_plot_series_train_x(series, model->x_axis);
    if (xs && series->train_loss && series->n_train > 0) {
        if (model->smoothing > 0.0) {
            /* The faint raw curve zigzags at every point: bevel joins and butt caps stroke it at
             * half the cost of round ones, and look the same at its width and alpha. */
            cairo_set_line_join(cr, CAIRO_LINE_JOIN_BEVEL);
            cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
            cairo_set_line_width(cr, RAW_WIDTH);
            plot_set_source_color_alpha(cr, color, RAW_ALPHA);
            path_points(cr, layout, xs, series->train_loss, series->n_train);
            cairo_stroke(cr);
            cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
            cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);

            double *smoothed = malloc(series->n_train * sizeof *smoothed);
            if (smoothed) {
                loss_plot_smooth(series->train_loss, series->n_train, model->smoothing, smoothed);
                cairo_set_line_width(cr, CURVE_WIDTH);
                plot_set_source_color(cr, color);
                path_points(cr, layout, xs, smoothed, series->n_train);
                cairo_stroke(cr);
                free(smoothed);
            }
        } else {
            cairo_set_line_width(cr, CURVE_WIDTH);
            plot_set_source_color(cr, color);
            path_points(cr, layout, xs, series->train_loss, series->n_train);
            cairo_stroke(cr);
        }
    }
}

static void draw_validation(cairo_t *cr, const Frame *frame, const LossPlotModel *model,
                            const PlotStyle *style, const LossPlotSeries *series)
{
    const LossPlotLayout *layout = &frame->layout;
    PlotColor color = plot_palette_get(series->color);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);

    const double *val_xs = loss_plot_series_val_x(series, model->x_axis);
    if (val_xs && series->val_loss && series->n_val > 0) {
        double dashes[] = {frame->font * 0.45, frame->font * 0.3};
        cairo_set_dash(cr, dashes, 2, 0.0);
        cairo_set_line_width(cr, VAL_WIDTH);
        plot_set_source_color(cr, color);
        path_points(cr, layout, val_xs, series->val_loss, series->n_val);
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0.0);
        double radius = frame->font * 0.33;
        for (size_t i = 0; i < series->n_val; i++) {
            if (!value_usable(val_xs[i], layout->log_x) ||
                !value_usable(series->val_loss[i], layout->log_y))
                continue;
            draw_marker(cr, loss_plot_layout_x_to_pixel(layout, val_xs[i]),
                        loss_plot_layout_y_to_pixel(layout, series->val_loss[i]), radius, color,
                        marker_ring(style));
        }
    }
}

static bool series_has_points(const double *xs, const double *ys, size_t n)
{
    return xs && ys && n > 0;
}

static void fill_box(cairo_t *cr, const PlotStyle *style, double x, double y, double width,
                     double height, double fill_alpha)
{
    double radius = 3.0;
    cairo_new_sub_path(cr);
    cairo_arc(cr, x + width - radius, y + radius, radius, -M_PI / 2.0, 0.0);
    cairo_arc(cr, x + width - radius, y + height - radius, radius, 0.0, M_PI / 2.0);
    cairo_arc(cr, x + radius, y + height - radius, radius, M_PI / 2.0, M_PI);
    cairo_arc(cr, x + radius, y + radius, radius, M_PI, 1.5 * M_PI);
    cairo_close_path(cr);
    plot_set_source_color_alpha(cr, marker_ring(style), fill_alpha);
    cairo_fill_preserve(cr);
    cairo_set_line_width(cr, 1.0);
    plot_set_source_color(cr, style->grid);
    cairo_stroke(cr);
}

static void legend_swatch(cairo_t *cr, double x, double y, double length, PlotColor color,
                          double width, const double *dashes, int n_dashes)
{
    cairo_set_line_width(cr, width);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
    cairo_set_dash(cr, dashes, n_dashes, 0.0);
    plot_set_source_color(cr, color);
    cairo_move_to(cr, x, y);
    cairo_line_to(cr, x + length, y);
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0.0);
}

/* Top right inside the data rectangle, where falling loss curves leave room: a row per visible
 * named run, then a key to the line styles when there is more than one. */
static void draw_legend(cairo_t *cr, PlotText *text, const Frame *frame, const LossPlotModel *model,
                        const PlotStyle *style)
{
    const LossPlotLayout *layout = &frame->layout;
    plot_text_set_font(text, 1.0, false);

    size_t rows = 0;
    double widest = 0.0;
    bool any_val = false;
    for (size_t s = 0; s < model->n_series; s++) {
        const LossPlotSeries *series = &model->series[s];
        if (!series->visible || !series->name)
            continue;
        double name_width;
        plot_text_measure(text, series->name, &name_width, NULL);
        widest = fmax(widest, name_width);
        rows++;
        any_val |= series_has_points(loss_plot_series_val_x(series, model->x_axis),
                                     series->val_loss, series->n_val);
    }
    if (rows == 0)
        return;

    char training[64];
    if (model->smoothing > 0.0)
        snprintf(training, sizeof training, "training, smoothed %.2f", model->smoothing);
    else
        snprintf(training, sizeof training, "training");
    double key_width = 0.0;
    plot_text_measure(text, training, &key_width, NULL);
    if (any_val) {
        double validation_width;
        plot_text_measure(text, "validation", &validation_width, NULL);
        key_width = fmax(key_width, validation_width);
    }

    /* On a small plot the key goes first, then the whole legend, rather than hide the data. */
    double row_height = frame->line_height * 1.25;
    double swatch = frame->font * 2.0;
    double inner = frame->gap * 1.5;
    bool key = any_val || model->smoothing > 0.0;
    size_t key_rows = 0;
    double separator = 0.0, box_width = 0.0, box_height = 0.0;
    for (int fit = 0; fit < 2; fit++) {
        key_rows = key ? (any_val ? 2 : 1) : 0;
        separator = key ? frame->gap * 2.0 : 0.0;
        box_width = inner + swatch + frame->gap * 1.5 + fmax(widest, key ? key_width : 0.0) + inner;
        box_height = inner * 2.0 + (double)(rows + key_rows) * row_height + separator;
        if (box_width <= layout->width * 0.6 && box_height <= layout->height * 0.5)
            break;
        if (!key)
            return;
        key = false;
    }
    if (box_width > layout->width * 0.6 || box_height > layout->height * 0.5)
        return;
    double box_x = round(layout->x + layout->width - frame->gap * 1.5 - box_width);
    double box_y = round(layout->y + frame->gap * 1.5);
    fill_box(cr, style, box_x + 0.5, box_y + 0.5, round(box_width), round(box_height),
             LEGEND_FILL_ALPHA);

    double swatch_x = box_x + inner;
    double text_x = swatch_x + swatch + frame->gap * 1.5;
    double row_y = box_y + inner + row_height / 2.0;
    for (size_t s = 0; s < model->n_series; s++) {
        const LossPlotSeries *series = &model->series[s];
        if (!series->visible || !series->name)
            continue;
        PlotColor color = plot_palette_get(series->color);
        legend_swatch(cr, swatch_x, row_y, swatch, color, CURVE_WIDTH + 1.0, NULL, 0);
        plot_set_source_color(cr, style->foreground);
        plot_text_draw(text, series->name, text_x, row_y, 0.0, 0.5, 0.0);
        row_y += row_height;
    }
    if (!key)
        return;

    double separator_y = plot_crisp(row_y - row_height / 2.0 + separator / 2.0);
    cairo_set_line_width(cr, 1.0);
    plot_set_source_color(cr, style->grid);
    cairo_move_to(cr, box_x + inner, separator_y);
    cairo_line_to(cr, box_x + box_width - inner, separator_y);
    cairo_stroke(cr);
    row_y += separator;

    PlotColor muted = plot_color_mix(style->foreground, marker_ring(style), 0.25);
    legend_swatch(cr, swatch_x, row_y, swatch, muted, CURVE_WIDTH, NULL, 0);
    plot_set_source_color(cr, style->foreground);
    plot_text_draw(text, training, text_x, row_y, 0.0, 0.5, 0.0);
    row_y += row_height;
    if (any_val) {
        double dashes[] = {frame->font * 0.45, frame->font * 0.3};
        legend_swatch(cr, swatch_x, row_y, swatch, muted, VAL_WIDTH, dashes, 2);
        draw_marker(cr, swatch_x + swatch / 2.0, row_y, frame->font * 0.3, muted,
                    marker_ring(style));
        plot_set_source_color(cr, style->foreground);
        plot_text_draw(text, "validation", text_x, row_y, 0.0, 0.5, 0.0);
    }
}

void loss_plot_render(cairo_t *cr, double width, double height, const LossPlotModel *model,
                      const PlotStyle *style, LossPlotLayout *layout)
{
    cairo_save(cr);
    PlotText *text = plot_text_new(cr, style);
    Frame frame;
    frame_compute(text, style, width, height, model, &frame);

    if (style->background.alpha > 0.0) {
        plot_set_source_color(cr, style->background);
        cairo_rectangle(cr, 0.0, 0.0, width, height);
        cairo_fill(cr);
    }
    draw_grid(cr, &frame, style);

    cairo_save(cr);
    cairo_rectangle(cr, frame.layout.x, frame.layout.y, frame.layout.width, frame.layout.height);
    cairo_clip(cr);
    /* Validation after every training curve, so no run's markers hide under another's band. */
    for (size_t s = 0; s < model->n_series; s++)
        if (model->series[s].visible)
            draw_training(cr, &frame, model, &model->series[s]);
    for (size_t s = 0; s < model->n_series; s++)
        if (model->series[s].visible)
            draw_validation(cr, &frame, model, style, &model->series[s]);
    cairo_restore(cr);

    draw_axes(cr, text, &frame, model, style);
    if (!model->hide_legend)
        draw_legend(cr, text, &frame, model, style);

    plot_text_free(text);
    cairo_restore(cr);
    if (layout)
        *layout = frame.layout;
}

bool loss_plot_series_value_at(const LossPlotModel *model, size_t index, double x, double *loss)
{
    if (index >= model->n_series)
        return false;
    const LossPlotSeries *series = &model->series[index];
    const double *xs = loss_plot_series_train_x(series, model->x_axis);
    if (!series->visible || !xs || !series->train_loss || series->n_train == 0 ||
        !value_usable(x, model->log_x))
        return false;

    const double *ys = series->train_loss;
    double *smoothed = NULL;
    if (model->smoothing > 0.0) {
        smoothed = malloc(series->n_train * sizeof *smoothed);
        if (!smoothed)
            return false;
        loss_plot_smooth(series->train_loss, series->n_train, model->smoothing, smoothed);
        ys = smoothed;
    }

    /* Interpolated in the axes' own scales, so the value lies on the segment as drawn. */
    bool found = false;
    bool have_previous = false;
    double previous_t = 0.0, previous_u = 0.0;
    double t = axis_transform(x, model->log_x);
    for (size_t i = 0; i < series->n_train && !found; i++) {
        if (!value_usable(xs[i], model->log_x) || !value_usable(ys[i], model->log_y)) {
            have_previous = false;
            continue;
        }
        double ti = axis_transform(xs[i], model->log_x);
        double ui = axis_transform(ys[i], model->log_y);
        if (ti == t) {
            *loss = ys[i];
            found = true;
        } else if (have_previous && previous_t < t && t < ti) {
            double f = (t - previous_t) / (ti - previous_t);
            *loss = axis_inverse(previous_u + f * (ui - previous_u), model->log_y);
            found = true;
        }
        have_previous = true;
        previous_t = ti;
        previous_u = ui;
    }
    free(smoothed);
    return found;
}

static void format_x_value(LossPlotXAxis axis, double x, char *buffer, size_t size)
{
    if (axis == LOSS_PLOT_X_STEPS)
        plot_format_number(round(x), 1.0, PLOT_NUMBER_PLAIN, buffer, size);
    else
        plot_format_number(x, 0.0, x_number_style(axis), buffer, size);
}

void loss_plot_render_hover(cairo_t *cr, double width, double height, const LossPlotModel *model,
                            const PlotStyle *style, const LossPlotLayout *layout, double pointer_x,
                            double pointer_y)
{
    if (pointer_x < layout->x || pointer_x > layout->x + layout->width || pointer_y < layout->y ||
        pointer_y > layout->y + layout->height)
        return;

    cairo_save(cr);
    PlotText *text = plot_text_new(cr, style);
    plot_text_set_font(text, 1.0, false);
    double font = plot_style_font_pixels(style);
    double line_height;
    plot_text_measure(text, "0123456789", NULL, &line_height);

    cairo_set_line_width(cr, 1.0);
    plot_set_source_color_alpha(cr, style->foreground, 0.5);
    cairo_move_to(cr, plot_crisp(pointer_x), layout->y);
    cairo_line_to(cr, plot_crisp(pointer_x), layout->y + layout->height);
    cairo_stroke(cr);
    double dashes[] = {2.0, 2.0};
    cairo_set_dash(cr, dashes, 2, 0.0);
    plot_set_source_color_alpha(cr, style->foreground, 0.3);
    cairo_move_to(cr, layout->x, plot_crisp(pointer_y));
    cairo_line_to(cr, layout->x + layout->width, plot_crisp(pointer_y));
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0.0);

    double x = loss_plot_layout_pixel_to_x(layout, pointer_x);
    char x_text[64], header[128];
    format_x_value(model->x_axis, x, x_text, sizeof x_text);
    snprintf(header, sizeof header, "%s %s", x_label_of(model), x_text);

    double box_inner = round(font * 0.5);
    double swatch = font * 0.7;
    double column_gap = font;
    double header_width, names_width = 0.0, values_width = 0.0;
    plot_text_set_font(text, 1.0, true);
    plot_text_measure(text, header, &header_width, NULL);
    plot_text_set_font(text, 1.0, false);

    double *values = malloc((model->n_series ? model->n_series : 1) * sizeof *values);
    bool *shown = calloc(model->n_series ? model->n_series : 1, sizeof *shown);
    size_t rows = 0;
    for (size_t s = 0; values && shown && s < model->n_series; s++) {
        shown[s] = loss_plot_series_value_at(model, s, x, &values[s]);
        if (!shown[s])
            continue;
        double value = values[s];
        const LossPlotSeries *series = &model->series[s];
        char value_text[32];
        double w;
        snprintf(value_text, sizeof value_text, "%.3f", value);
        plot_text_measure(text, series->name ? series->name : "run", &w, NULL);
        names_width = fmax(names_width, w);
        plot_text_measure(text, value_text, &w, NULL);
        values_width = fmax(values_width, w);
        rows++;

        double y = loss_plot_layout_y_to_pixel(layout, value);
        if (y >= layout->y && y <= layout->y + layout->height)
            draw_marker(cr, pointer_x, y, font * 0.3, plot_palette_get(series->color),
                        marker_ring(style));
    }

    double row_height = line_height * 1.2;
    double rows_width = swatch + font * 0.4 + names_width + column_gap + values_width;
    double box_width = round(2.0 * box_inner + fmax(header_width, rows ? rows_width : 0.0));
    double box_height = round(2.0 * box_inner + row_height * (double)(1 + rows));
    double box_x = pointer_x + font;
    if (box_x + box_width > width - 1.0)
        box_x = pointer_x - font - box_width;
    box_x = round(fmax(0.0, box_x));
    double box_y = round(fmin(fmax(0.0, pointer_y + font), height - box_height - 1.0));
    fill_box(cr, style, box_x + 0.5, box_y + 0.5, box_width, box_height, HOVER_FILL_ALPHA);

    double row_y = box_y + box_inner + row_height / 2.0;
    plot_set_source_color(cr, style->foreground);
    plot_text_set_font(text, 1.0, true);
    plot_text_draw(text, header, box_x + box_inner, row_y, 0.0, 0.5, 0.0);
    plot_text_set_font(text, 1.0, false);
    for (size_t s = 0; values && shown && s < model->n_series; s++) {
        if (!shown[s])
            continue;
        double value = values[s];
        const LossPlotSeries *series = &model->series[s];
        row_y += row_height;
        plot_set_source_color(cr, plot_palette_get(series->color));
        cairo_rectangle(cr, box_x + box_inner, row_y - swatch / 2.0, swatch, swatch);
        cairo_fill(cr);
        char value_text[32];
        snprintf(value_text, sizeof value_text, "%.3f", value);
        plot_set_source_color(cr, style->foreground);
        plot_text_draw(text, series->name ? series->name : "run",
                       box_x + box_inner + swatch + font * 0.4, row_y, 0.0, 0.5, 0.0);
        plot_text_draw(text, value_text, box_x + box_width - box_inner, row_y, 1.0, 0.5, 0.0);
    }

    free(values);
    free(shown);
    plot_text_free(text);
    cairo_restore(cr);
}
