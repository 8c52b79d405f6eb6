/* Loss curves drawn with cairo from plain arrays: the model a plot shows, where it puts the data
 * (the layout), and the drawing itself. The widget (loss-plot.h) draws the screen with these
 * functions and an export draws PNG, SVG and PDF with the same ones, so they agree pixel for
 * pixel at the same size and style. No display is needed. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <cairo.h>

#include "plot-axes.h"

typedef enum {
    LOSS_PLOT_X_STEPS,
    LOSS_PLOT_X_TOKENS,
    LOSS_PLOT_X_FLOPS,
} LossPlotXAxis;

/* One run. Arrays are borrowed. x arrays run in training order (ascending); an x array may be
 * NULL, and then the series has no points on that axis. Points whose x or loss is not finite,
 * or not positive on a log axis, are left out and break the line. */
typedef struct {
    const char *name; /* in the legend and the hover box; NULL: left out of the legend */
    unsigned color;   /* index into the palette (plot_palette_get) */
    bool visible;
    size_t n_train;
    const double *train_steps;  /* (n_train) */
    const double *train_tokens; /* (n_train) */
    const double *train_flops;  /* (n_train) training FLOPs spent up to the point */
    const double *train_loss;   /* (n_train) nats per token */
    size_t n_val;
    const double *val_steps;  /* (n_val) */
    const double *val_tokens; /* (n_val) */
    const double *val_flops;  /* (n_val) */
    const double *val_loss;   /* (n_val) nats per token */
} LossPlotSeries;

/* Zero-initialised, a model plots steps on linear axes, unsmoothed, with a legend and ranges
 * fitted to the visible data. */
typedef struct {
    const LossPlotSeries *series; /* (n_series), borrowed */
    size_t n_series;
    LossPlotXAxis x_axis;
    bool log_x;
    bool log_y;
    /* w in [0, 1): the training loss is drawn as the debiased exponential moving average
     * s_t = w s_{t-1} + (1 - w) x_t shown as s_t / (1 - w^t), as TensorBoard does, with the raw
     * curve faint behind it when w > 0. */
    double smoothing;
    const char *title;   /* NULL: none */
    const char *x_label; /* NULL: loss_plot_x_axis_label (x_axis) */
    const char *y_label; /* NULL: "loss (nats)" */
    bool hide_legend;
    bool fixed_x; /* use [x_min, x_max] instead of fitting the data */
    bool fixed_y; /* use [y_min, y_max] instead of fitting the data */
    double x_min, x_max, y_min, y_max;
} LossPlotModel;

/* Where the data goes: the data rectangle in the user space the plot was drawn in, and the
 * values at its edges (x_min at the left edge, y_min at the bottom edge). */
typedef struct {
    double x, y, width, height;
    double x_min, x_max;
    double y_min, y_max;
    bool log_x;
    bool log_y;
} LossPlotLayout;

const char *loss_plot_x_axis_label(LossPlotXAxis axis);
const double *loss_plot_series_train_x(const LossPlotSeries *series, LossPlotXAxis axis);
const double *loss_plot_series_val_x(const LossPlotSeries *series, LossPlotXAxis axis);

/* The debiased exponential moving average of values (n) into smoothed (n); weight 0 copies.
 * Values that are not finite are skipped: they stay as they are in smoothed and do not enter
 * the average. */
void loss_plot_smooth(const double *values, size_t n, double weight, double *smoothed);

/* Lays the plot out in a width x height box at the origin of cr's user space. cr is used only
 * to measure text. */
void loss_plot_layout(cairo_t *cr, double width, double height, const LossPlotModel *model,
                      const PlotStyle *style, LossPlotLayout *layout);

double loss_plot_layout_x_to_pixel(const LossPlotLayout *layout, double x);
double loss_plot_layout_y_to_pixel(const LossPlotLayout *layout, double y);
double loss_plot_layout_pixel_to_x(const LossPlotLayout *layout, double pixel);
double loss_plot_layout_pixel_to_y(const LossPlotLayout *layout, double pixel);

/* Draws the plot in a width x height box at the origin of cr's user space; fills layout, if not
 * NULL, with where it put the data. */
void loss_plot_render(cairo_t *cr, double width, double height, const LossPlotModel *model,
                      const PlotStyle *style, LossPlotLayout *layout);

/* The curve of series index as drawn (smoothed when the model smooths) at x on the model's x
 * axis, interpolated along the drawn segment; false when x is outside the series or the series
 * is hidden. */
bool loss_plot_series_value_at(const LossPlotModel *model, size_t index, double x, double *loss);

/* The hover read-out over a plot drawn with layout: a crosshair at the pointer, a dot on each
 * visible curve and a box with the x value and each curve's value there. Draws nothing when the
 * pointer is outside the data rectangle. */
void loss_plot_render_hover(cairo_t *cr, double width, double height, const LossPlotModel *model,
                            const PlotStyle *style, const LossPlotLayout *layout, double pointer_x,
                            double pointer_y);
