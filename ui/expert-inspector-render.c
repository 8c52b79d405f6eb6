#include "expert-inspector-render.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define TITLE_SCALE 1.1
#define AXIS_ALPHA 0.6
#define LINE_WIDTH 2.0
#define HEADROOM 1.1 /* the highest value reaches this far below the top */
#define LEGEND_FILL_ALPHA 0.88

double expert_plot_x_to_pixel(const ExpertPlotLayout *layout, double x)
{
    return layout->x + (x - layout->x_min) / (layout->x_max - layout->x_min) * layout->width;
}

double expert_plot_y_to_pixel(const ExpertPlotLayout *layout, double y)
{
    return layout->y + layout->height -
           (y - layout->y_min) / (layout->y_max - layout->y_min) * layout->height;
}

/* ---- the frame every plot shares: title, axes, ticks, labels ---------------------------------- */

typedef struct {
    ExpertPlotLayout layout;
    PlotTicks x_ticks;
    PlotTicks y_ticks;
    bool y_axis;      /* a y axis with ticks and labels (the logit plot has rows instead) */
    bool y_percent;
    bool x_integer;   /* no tick between two whole numbers (steps) */
    PlotNumberStyle x_style;
    const char *title;
    const char *x_label;
    const char *y_label;
    double font, pad, gap, tick_length, line_height;
    double width, height;
    double top, bottom; /* of the data rectangle's box before the y axis takes its width */
} Frame;

static void frame_begin(PlotText *text, const PlotStyle *style, double width, double height,
                        const char *title, const char *x_label, const char *y_label, Frame *frame)
{
    frame->width = width;
    frame->height = height;
    frame->title = title && *title ? title : NULL;
    frame->x_label = x_label && *x_label ? x_label : NULL;
    frame->y_label = y_label && *y_label ? y_label : NULL;
    frame->font = plot_style_font_pixels(style);
    frame->pad = round(frame->font * 0.75);
    frame->gap = round(frame->font * 0.4);
    frame->tick_length = round(frame->font * 0.35);
    plot_text_set_font(text, 1.0, false);
    plot_text_measure(text, "0123456789", NULL, &frame->line_height);

    double top = frame->pad;
    if (frame->title) {
        double title_height;
        plot_text_set_font(text, TITLE_SCALE, true);
        plot_text_measure(text, frame->title, NULL, &title_height);
        plot_text_set_font(text, 1.0, false);
        top += title_height + frame->gap;
    } else {
        top += frame->line_height / 2.0;
    }
    double bottom = frame->pad + frame->line_height + frame->gap + frame->tick_length;
    if (frame->x_label)
        bottom += frame->line_height + frame->gap;
    frame->layout.y = top;
    frame->layout.height = fmax(1.0, height - top - bottom);
}

static void tick_label(const Frame *frame, const PlotTicks *ticks, size_t i, bool y, char *buffer,
                       size_t size)
{
    double value = ticks->ticks[i].value;
    if (y && frame->y_percent) {
        char number[48];
        plot_format_number(100.0 * value, 100.0 * ticks->label_step, PLOT_NUMBER_PLAIN, number,
                           sizeof number);
        snprintf(buffer, size, "%s %%", number);
        return;
    }
    plot_format_number(value, ticks->label_step, y ? PLOT_NUMBER_SI : frame->x_style, buffer,
                       size);
}

/* The y ticks and the left margin they need, then the x ticks, fewer while their labels would
 * touch. left_extra is room the plot needs left of the data beyond the axis. */
static void frame_fit(PlotText *text, Frame *frame, double left_extra, double right_extra)
{
    ExpertPlotLayout *layout = &frame->layout;
    double left = frame->pad + left_extra;
    if (frame->y_axis) {
        plot_ticks_linear(&frame->y_ticks, layout->y_min, layout->y_max,
                          fmax(2.0, layout->height / (frame->font * 3.0)));
        double widest = 0.0;
        for (size_t i = 0; i < frame->y_ticks.n; i++) {
            char label[64];
            double label_width;
            tick_label(frame, &frame->y_ticks, i, true, label, sizeof label);
            plot_text_measure(text, label, &label_width, NULL);
            widest = fmax(widest, label_width);
        }
        left += widest + frame->gap + frame->tick_length;
        if (frame->y_label)
            left += frame->line_height + frame->gap;
    }
    layout->x = left;
    double right = frame->pad + right_extra;
    double target = fmax(2.0, (frame->width - left - right) / (frame->font * 6.0));
    for (int attempt = 0; attempt < 24; attempt++) {
        layout->width = fmax(1.0, frame->width - left - right);
        plot_ticks_linear(&frame->x_ticks, layout->x_min, layout->x_max, target);
        if (frame->x_integer && frame->x_ticks.label_step < 1.0)
            plot_ticks_linear(&frame->x_ticks, layout->x_min, layout->x_max,
                              fmax(1.0, layout->x_max - layout->x_min));
        double previous_end = -INFINITY;
        bool crowded = false;
        for (size_t i = 0; i < frame->x_ticks.n; i++) {
            char label[64];
            double label_width;
            tick_label(frame, &frame->x_ticks, i, false, label, sizeof label);
            plot_text_measure(text, label, &label_width, NULL);
            double centre = expert_plot_x_to_pixel(layout, frame->x_ticks.ticks[i].value);
            if (centre - label_width / 2.0 < previous_end + frame->font)
                crowded = true;
            previous_end = centre + label_width / 2.0;
        }
        if (crowded && target > 1.0) {
            target = fmax(1.0, target * 0.7);
            continue;
        }
        /* A last label centred on the right edge would run off it: a wider right margin. */
        double overflow = previous_end - (frame->width - frame->pad);
        if (overflow > 0.5) {
            right += overflow;
            continue;
        }
        break;
    }
}

static void draw_background(cairo_t *cr, const Frame *frame, const PlotStyle *style)
{
    if (style->background.alpha <= 0.0)
        return;
    plot_set_source_color(cr, style->background);
    cairo_rectangle(cr, 0.0, 0.0, frame->width, frame->height);
    cairo_fill(cr);
}

static void draw_grid(cairo_t *cr, const Frame *frame, const PlotStyle *style)
{
    const ExpertPlotLayout *layout = &frame->layout;
    cairo_set_line_width(cr, 1.0);
    plot_set_source_color(cr, style->grid);
    for (size_t i = 0; i < frame->x_ticks.n; i++) {
        double x = plot_crisp(expert_plot_x_to_pixel(layout, frame->x_ticks.ticks[i].value));
        cairo_move_to(cr, x, layout->y);
        cairo_line_to(cr, x, layout->y + layout->height);
    }
    for (size_t i = 0; frame->y_axis && i < frame->y_ticks.n; i++) {
        double y = plot_crisp(expert_plot_y_to_pixel(layout, frame->y_ticks.ticks[i].value));
        cairo_move_to(cr, layout->x, y);
        cairo_line_to(cr, layout->x + layout->width, y);
    }
    cairo_stroke(cr);
}

static void draw_axes(cairo_t *cr, PlotText *text, const Frame *frame, const PlotStyle *style)
{
    const ExpertPlotLayout *layout = &frame->layout;
    double left = plot_crisp(layout->x);
    double bottom = plot_crisp(layout->y + layout->height);
    cairo_set_line_width(cr, 1.0);
    plot_set_source_color_alpha(cr, style->foreground, AXIS_ALPHA);
    if (frame->y_axis) {
        cairo_move_to(cr, left, layout->y);
        cairo_line_to(cr, left, bottom);
    }
    cairo_move_to(cr, layout->x, bottom);
    cairo_line_to(cr, layout->x + layout->width, bottom);
    for (size_t i = 0; i < frame->x_ticks.n; i++) {
        double x = plot_crisp(expert_plot_x_to_pixel(layout, frame->x_ticks.ticks[i].value));
        cairo_move_to(cr, x, bottom);
        cairo_line_to(cr, x, bottom + frame->tick_length);
    }
    for (size_t i = 0; frame->y_axis && i < frame->y_ticks.n; i++) {
        double y = plot_crisp(expert_plot_y_to_pixel(layout, frame->y_ticks.ticks[i].value));
        cairo_move_to(cr, left, y);
        cairo_line_to(cr, left - frame->tick_length, y);
    }
    cairo_stroke(cr);

    plot_text_set_font(text, 1.0, false);
    plot_set_source_color(cr, style->foreground);
    char label[64];
    double label_top = layout->y + layout->height + frame->tick_length + frame->gap;
    for (size_t i = 0; i < frame->x_ticks.n; i++) {
        tick_label(frame, &frame->x_ticks, i, false, label, sizeof label);
        plot_text_draw(text, label, expert_plot_x_to_pixel(layout, frame->x_ticks.ticks[i].value),
                       label_top, 0.5, 0.0, 0.0);
    }
    double label_right = layout->x - frame->tick_length - frame->gap;
    for (size_t i = 0; frame->y_axis && i < frame->y_ticks.n; i++) {
        tick_label(frame, &frame->y_ticks, i, true, label, sizeof label);
        plot_text_draw(text, label, label_right,
                       expert_plot_y_to_pixel(layout, frame->y_ticks.ticks[i].value), 1.0, 0.5,
                       0.0);
    }
    if (frame->x_label)
        plot_text_draw(text, frame->x_label, layout->x + layout->width / 2.0,
                       frame->height - frame->pad, 0.5, 1.0, 0.0);
    if (frame->y_axis && frame->y_label)
        plot_text_draw(text, frame->y_label, frame->pad, layout->y + layout->height / 2.0, 0.5,
                       0.0, -M_PI / 2.0);
    if (frame->title) {
        plot_text_set_font(text, TITLE_SCALE, true);
        plot_text_draw(text, frame->title, layout->x + layout->width / 2.0, frame->pad, 0.5, 0.0,
                       0.0);
        plot_text_set_font(text, 1.0, false);
    }
}

static void draw_message(cairo_t *cr, PlotText *text, const Frame *frame, const PlotStyle *style,
                         const char *message)
{
    const ExpertPlotLayout *layout = &frame->layout;
    plot_text_set_font(text, 1.0, false);
    plot_set_source_color_alpha(cr, style->foreground, 0.7);
    plot_text_draw(text, message ? message : "No data", layout->x + layout->width / 2.0,
                   layout->y + layout->height / 2.0, 0.5, 0.5, 0.0);
}

/* The upper end of a y axis from 0 that holds highest with some room above it. */
static double y_top(double highest)
{
    return highest > 0.0 && isfinite(highest) ? highest * HEADROOM : 1.0;
}

/* ---- usage over training ---------------------------------------------------------------------- */

static bool point_usable(const ExpertUsagePlot *plot, size_t i)
{
    return isfinite(plot->steps[i]) && isfinite(plot->values[i]);
}

static bool usage_frame(PlotText *text, const PlotStyle *style, double width, double height,
                        const ExpertUsagePlot *plot, Frame *frame)
{
    *frame = (Frame){ .y_axis = true, .x_integer = true, .x_style = PLOT_NUMBER_SI };
    frame_begin(text, style, width, height, plot->title, plot->x_label ? plot->x_label : "step",
                plot->y_label, frame);
    double x_lo = INFINITY, x_hi = -INFINITY, highest = 0.0;
    bool any = false;
    for (size_t i = 0; plot->steps && plot->values && i < plot->n; i++) {
        if (!point_usable(plot, i))
            continue;
        any = true;
        x_lo = fmin(x_lo, plot->steps[i]);
        x_hi = fmax(x_hi, plot->steps[i]);
        highest = fmax(highest, plot->values[i]);
    }
    if (!any) {
        x_lo = 0.0;
        x_hi = 1.0;
    } else if (x_hi <= x_lo) {
        x_lo -= 1.0;
        x_hi += 1.0;
    }
    ExpertPlotLayout *layout = &frame->layout;
    layout->x_min = x_lo;
    layout->x_max = x_hi;
    layout->y_min = 0.0;
    layout->y_max = y_top(highest);
    frame_fit(text, frame, 0.0, 0.0);
    return any;
}

void expert_usage_plot_layout(cairo_t *cr, double width, double height,
                              const ExpertUsagePlot *plot, const PlotStyle *style,
                              ExpertPlotLayout *layout)
{
    PlotText *text = plot_text_new(cr, style);
    Frame frame;
    usage_frame(text, style, width, height, plot, &frame);
    plot_text_free(text);
    *layout = frame.layout;
}

void expert_usage_plot_render(cairo_t *cr, double width, double height,
                              const ExpertUsagePlot *plot, const PlotStyle *style,
                              ExpertPlotLayout *layout)
{
    cairo_save(cr);
    PlotText *text = plot_text_new(cr, style);
    Frame frame;
    bool any = usage_frame(text, style, width, height, plot, &frame);
    draw_background(cr, &frame, style);
    draw_grid(cr, &frame, style);
    if (any) {
        const ExpertPlotLayout *l = &frame.layout;
        PlotColor color = plot_palette_get(plot->color);
        cairo_save(cr);
        cairo_rectangle(cr, l->x - frame.font, l->y - frame.font, l->width + 2.0 * frame.font,
                        l->height + 2.0 * frame.font);
        cairo_clip(cr);
        cairo_set_line_width(cr, LINE_WIDTH);
        cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
        cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
        plot_set_source_color(cr, color);
        bool drawing = false;
        for (size_t i = 0; i < plot->n; i++) {
            if (!point_usable(plot, i)) {
                drawing = false;
                continue;
            }
            double x = expert_plot_x_to_pixel(l, plot->steps[i]);
            double y = expert_plot_y_to_pixel(l, plot->values[i]);
            if (drawing)
                cairo_line_to(cr, x, y);
            else
                cairo_move_to(cr, x, y);
            drawing = true;
        }
        cairo_stroke(cr);
        /* Dots only while they stay apart; on a long history they would merge into a band. */
        size_t usable = 0;
        for (size_t i = 0; i < plot->n; i++)
            usable += point_usable(plot, i);
        double radius = frame.font * 0.28;
        if (usable > 0 && l->width / (double)usable > 4.0 * radius) {
            for (size_t i = 0; i < plot->n; i++) {
                if (!point_usable(plot, i))
                    continue;
                cairo_new_sub_path(cr);
                cairo_arc(cr, expert_plot_x_to_pixel(l, plot->steps[i]),
                          expert_plot_y_to_pixel(l, plot->values[i]), radius, 0.0, 2.0 * M_PI);
            }
            cairo_fill(cr);
        }
        cairo_restore(cr);
    }
    draw_axes(cr, text, &frame, style);
    if (!any)
        draw_message(cr, text, &frame, style, plot->message);
    plot_text_free(text);
    cairo_restore(cr);
    if (layout)
        *layout = frame.layout;
}

/* ---- histograms ------------------------------------------------------------------------------ */

static size_t histogram_series(const ExpertHistogramPlot *plot)
{
    return plot->n_series < EXPERT_HISTOGRAM_MAX_SERIES ? plot->n_series
                                                        : EXPERT_HISTOGRAM_MAX_SERIES;
}

static bool histogram_frame(PlotText *text, const PlotStyle *style, double width, double height,
                            const ExpertHistogramPlot *plot, Frame *frame)
{
    *frame = (Frame){ .y_axis = true, .y_percent = plot->y_percent, .x_style = PLOT_NUMBER_PLAIN };
    frame_begin(text, style, width, height, plot->title, plot->x_label, plot->y_label, frame);
    double highest = 0.0;
    for (size_t s = 0; s < histogram_series(plot); s++)
        for (int b = 0; plot->series[s].values && b < plot->bins; b++)
            if (isfinite(plot->series[s].values[b]))
                highest = fmax(highest, plot->series[s].values[b]);
    ExpertPlotLayout *layout = &frame->layout;
    bool range_usable = isfinite(plot->lo) && isfinite(plot->hi) && plot->hi > plot->lo;
    layout->x_min = range_usable ? plot->lo : 0.0;
    layout->x_max = range_usable ? plot->hi : 1.0;
    layout->y_min = 0.0;
    layout->y_max = y_top(highest);
    frame_fit(text, frame, 0.0, 0.0);
    return highest > 0.0 && plot->bins > 0 && range_usable;
}

void expert_histogram_plot_layout(cairo_t *cr, double width, double height,
                                  const ExpertHistogramPlot *plot, const PlotStyle *style,
                                  ExpertPlotLayout *layout)
{
    PlotText *text = plot_text_new(cr, style);
    Frame frame;
    histogram_frame(text, style, width, height, plot, &frame);
    plot_text_free(text);
    *layout = frame.layout;
}

static void draw_legend(cairo_t *cr, PlotText *text, const Frame *frame, const PlotStyle *style,
                        const ExpertHistogramPlot *plot)
{
    size_t rows = 0;
    double widest = 0.0;
    for (size_t s = 0; s < histogram_series(plot); s++) {
        if (!plot->series[s].name)
            continue;
        double name_width;
        plot_text_measure(text, plot->series[s].name, &name_width, NULL);
        widest = fmax(widest, name_width);
        rows++;
    }
    if (rows == 0)
        return;
    const ExpertPlotLayout *layout = &frame->layout;
    double row_height = frame->line_height * 1.2, swatch = frame->font * 0.8;
    double inner = frame->gap * 1.5;
    double box_width = round(inner * 2.0 + swatch + frame->gap * 1.5 + widest);
    double box_height = round(inner * 2.0 + (double)rows * row_height);
    if (box_width > layout->width * 0.6 || box_height > layout->height * 0.6)
        return;
    double box_x = round(layout->x + layout->width - frame->gap - box_width) + 0.5;
    double box_y = round(layout->y + frame->gap) + 0.5;
    PlotColor fill = style->background.alpha > 0.0 ? style->background
                                                   : (PlotColor){ 1.0, 1.0, 1.0, 1.0 };
    cairo_rectangle(cr, box_x, box_y, box_width, box_height);
    plot_set_source_color_alpha(cr, fill, LEGEND_FILL_ALPHA);
    cairo_fill_preserve(cr);
    cairo_set_line_width(cr, 1.0);
    plot_set_source_color(cr, style->grid);
    cairo_stroke(cr);
    double y = box_y + inner + row_height / 2.0;
    bool overlay = histogram_series(plot) > 1;
    for (size_t s = 0; s < histogram_series(plot); s++) {
        if (!plot->series[s].name)
            continue;
        PlotColor color = plot_palette_get(plot->series[s].color);
        cairo_rectangle(cr, box_x + inner, y - swatch / 2.0, swatch, swatch);
        plot_set_source_color_alpha(cr, color, overlay ? EXPERT_HISTOGRAM_OVERLAY_ALPHA : 1.0);
        cairo_fill_preserve(cr);
        plot_set_source_color(cr, color);
        cairo_stroke(cr);
        plot_set_source_color(cr, style->foreground);
        plot_text_draw(text, plot->series[s].name, box_x + inner + swatch + frame->gap * 1.5, y,
                       0.0, 0.5, 0.0);
        y += row_height;
    }
}

void expert_histogram_plot_render(cairo_t *cr, double width, double height,
                                  const ExpertHistogramPlot *plot, const PlotStyle *style,
                                  ExpertPlotLayout *layout)
{
    cairo_save(cr);
    PlotText *text = plot_text_new(cr, style);
    Frame frame;
    bool any = histogram_frame(text, style, width, height, plot, &frame);
    draw_background(cr, &frame, style);
    draw_grid(cr, &frame, style);
    if (any) {
        const ExpertPlotLayout *l = &frame.layout;
        double bin_width = (plot->hi - plot->lo) / plot->bins;
        double base = expert_plot_y_to_pixel(l, 0.0);
        /* A one-unit gap between bars wide enough to keep it. */
        double gap = l->width / plot->bins >= 6.0 ? 1.0 : 0.0;
        bool overlay = histogram_series(plot) > 1;
        for (size_t s = 0; s < histogram_series(plot); s++) {
            const ExpertHistogramSeries *series = &plot->series[s];
            if (!series->values)
                continue;
            PlotColor color = plot_palette_get(series->color);
            for (int b = 0; b < plot->bins; b++) {
                double value = series->values[b];
                if (!(value > 0.0) || !isfinite(value))
                    continue;
                double x0 = round(expert_plot_x_to_pixel(l, plot->lo + b * bin_width));
                double x1 = round(expert_plot_x_to_pixel(l, plot->lo + (b + 1) * bin_width));
                double top = expert_plot_y_to_pixel(l, value);
                cairo_rectangle(cr, x0 + gap / 2.0, top, fmax(1.0, x1 - x0 - gap), base - top);
            }
            plot_set_source_color_alpha(cr, color, overlay ? EXPERT_HISTOGRAM_OVERLAY_ALPHA : 1.0);
            if (!overlay) {
                cairo_fill(cr);
                continue;
            }
            cairo_fill_preserve(cr);
            cairo_set_line_width(cr, 1.0);
            plot_set_source_color(cr, color);
            cairo_stroke(cr);
        }
    }
    draw_axes(cr, text, &frame, style);
    if (any)
        draw_legend(cr, text, &frame, style, plot);
    else
        draw_message(cr, text, &frame, style, plot->message);
    plot_text_free(text);
    cairo_restore(cr);
    if (layout)
        *layout = frame.layout;
}

/* ---- bytes pushed up and down ---------------------------------------------------------------- */

typedef struct {
    Frame frame;
    size_t n;
    double row_height;
    double group_gap;
    double label_width; /* the widest byte label */
    double value_width; /* the widest value label */
} LogitFrame;

static size_t logit_rows(const ExpertLogitPlot *plot)
{
    return plot->n < EXPERT_LOGIT_MAX_ROWS ? plot->n : EXPERT_LOGIT_MAX_ROWS;
}

static void format_effect(double value, char *buffer, size_t size)
{
    snprintf(buffer, size, "%+.2f", value);
}

static void logit_frame(PlotText *text, const PlotStyle *style, double width, double height,
                        const ExpertLogitPlot *plot, LogitFrame *lf)
{
    *lf = (LogitFrame){ 0 };
    Frame *frame = &lf->frame;
    *frame = (Frame){ .y_axis = false, .x_style = PLOT_NUMBER_PLAIN };
    frame_begin(text, style, width, height, plot->title, plot->x_label, NULL, frame);
    lf->n = logit_rows(plot);
    double largest = 0.0;
    for (size_t i = 0; i < lf->n; i++) {
        double value = plot->values[i];
        if (!isfinite(value))
            continue;
        largest = fmax(largest, fabs(value));
        char label[32];
        double w;
        format_effect(value, label, sizeof label);
        plot_text_measure(text, label, &w, NULL);
        lf->value_width = fmax(lf->value_width, w);
        plot_text_measure(text, plot->labels[i] ? plot->labels[i] : "", &w, NULL);
        lf->label_width = fmax(lf->label_width, w);
    }
    ExpertPlotLayout *layout = &frame->layout;
    double range = largest > 0.0 ? largest : 1.0;
    layout->x_min = -range;
    layout->x_max = range;
    layout->y_min = 0.0;
    layout->y_max = 1.0;
    /* Each bar's value sits past its end: room for it on both sides. */
    double margin = lf->value_width + frame->gap;
    frame_fit(text, frame, margin, margin);
    bool gap_row = plot->n_up > 0 && plot->n_up < lf->n;
    double natural = frame->line_height * 1.4;
    lf->group_gap = gap_row ? frame->line_height * 0.8 : 0.0;
    double rows = (double)(lf->n ? lf->n : 1);
    lf->row_height = fmin(natural, (layout->height - lf->group_gap) / rows);
    layout->height = lf->row_height * rows + lf->group_gap;
}

static double logit_row_centre(const LogitFrame *lf, const ExpertLogitPlot *plot, size_t i)
{
    double gap = i >= plot->n_up ? lf->group_gap : 0.0;
    return lf->frame.layout.y + ((double)i + 0.5) * lf->row_height + gap;
}

void expert_logit_plot_layout(cairo_t *cr, double width, double height, const ExpertLogitPlot *plot,
                              const PlotStyle *style, ExpertPlotLayout *layout,
                              double *row_centres)
{
    PlotText *text = plot_text_new(cr, style);
    LogitFrame lf;
    logit_frame(text, style, width, height, plot, &lf);
    plot_text_free(text);
    *layout = lf.frame.layout;
    for (size_t i = 0; row_centres && i < lf.n; i++)
        row_centres[i] = logit_row_centre(&lf, plot, i);
}

void expert_logit_plot_render(cairo_t *cr, double width, double height, const ExpertLogitPlot *plot,
                              const PlotStyle *style, ExpertPlotLayout *layout)
{
    cairo_save(cr);
    PlotText *text = plot_text_new(cr, style);
    LogitFrame lf;
    logit_frame(text, style, width, height, plot, &lf);
    Frame *frame = &lf.frame;
    const ExpertPlotLayout *l = &frame->layout;
    draw_background(cr, frame, style);
    draw_grid(cr, frame, style);

    double zero = plot_crisp(expert_plot_x_to_pixel(l, 0.0));
    double bar_height = fmax(1.0, round(lf.row_height * 0.7));
    for (size_t i = 0; i < lf.n; i++) {
        double value = plot->values[i];
        if (!isfinite(value))
            continue;
        double centre = logit_row_centre(&lf, plot, i);
        double end = expert_plot_x_to_pixel(l, value);
        double top = round(centre - bar_height / 2.0);
        plot_set_source_color(cr, plot_palette_get(value >= 0.0 ? plot->up_color
                                                                : plot->down_color));
        cairo_rectangle(cr, fmin(zero, end), top, fabs(end - zero), bar_height);
        cairo_fill(cr);

        char label[32];
        format_effect(value, label, sizeof label);
        plot_set_source_color(cr, style->foreground);
        if (value >= 0.0)
            plot_text_draw(text, label, end + frame->gap, centre, 0.0, 0.5, 0.0);
        else
            plot_text_draw(text, label, end - frame->gap, centre, 1.0, 0.5, 0.0);
        /* The byte on the other side of the axis from its bar, so no bar hides it. */
        const char *name = plot->labels[i] ? plot->labels[i] : "";
        if (value >= 0.0)
            plot_text_draw(text, name, zero - frame->gap, centre, 1.0, 0.5, 0.0);
        else
            plot_text_draw(text, name, zero + frame->gap, centre, 0.0, 0.5, 0.0);
    }
    cairo_set_line_width(cr, 1.0);
    plot_set_source_color_alpha(cr, style->foreground, AXIS_ALPHA);
    cairo_move_to(cr, zero, l->y);
    cairo_line_to(cr, zero, l->y + l->height);
    cairo_stroke(cr);
    draw_axes(cr, text, frame, style);
    if (lf.n == 0)
        draw_message(cr, text, frame, style, NULL);
    plot_text_free(text);
    cairo_restore(cr);
    if (layout)
        *layout = frame->layout;
}
