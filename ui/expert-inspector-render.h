/* The expert inspector's plots, drawn with cairo from plain arrays: one expert's usage over
 * training, histograms (its activation when chosen; its pre-activation over every token against
 * the chosen ones), and the bytes its value vector pushes up and down. The inspector window draws
 * the screen with these functions and an export or a command-line program draws files with the
 * same ones. No display is needed. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <cairo.h>

#include "plot-axes.h"

/* Where a plot put its data: the data rectangle in the user space it was drawn in, and the values
 * at its edges (x_min at the left edge, y_min at the bottom edge). */
typedef struct {
    double x, y, width, height;
    double x_min, x_max;
    double y_min, y_max;
} ExpertPlotLayout;

double expert_plot_x_to_pixel(const ExpertPlotLayout *layout, double x);
double expert_plot_y_to_pixel(const ExpertPlotLayout *layout, double y);

/* ---- usage over training ---------------------------------------------------------------------- */

/* A line through (steps[i], values[i]) with a dot on each point; points that are not finite are
 * left out and break the line. Arrays are borrowed. With no point, the message is drawn in the
 * middle instead. */
typedef struct {
    size_t n;
    const double *steps;  /* (n) ascending */
    const double *values; /* (n) */
    unsigned color;       /* palette index */
    const char *title;    /* NULL: none */
    const char *x_label;  /* NULL: "step" */
    const char *y_label;  /* NULL: none */
    const char *message;  /* shown when there is no point; NULL: "No data" */
} ExpertUsagePlot;

void expert_usage_plot_layout(cairo_t *cr, double width, double height,
                              const ExpertUsagePlot *plot, const PlotStyle *style,
                              ExpertPlotLayout *layout);
void expert_usage_plot_render(cairo_t *cr, double width, double height,
                              const ExpertUsagePlot *plot, const PlotStyle *style,
                              ExpertPlotLayout *layout);

/* ---- histograms ------------------------------------------------------------------------------ */

#define EXPERT_HISTOGRAM_MAX_SERIES 4

typedef struct {
    const char *name;     /* in the legend; NULL: left out of it */
    unsigned color;       /* palette index */
    const double *values; /* (bins) the height of each bin */
} ExpertHistogramSeries;

/* bins equal bins over [lo, hi]. One series is drawn as solid bars; several are drawn over each
 * other in order, each as translucent bars with a solid outline, so that all stay visible. */
typedef struct {
    int bins;
    double lo, hi;
    size_t n_series; /* 1 .. EXPERT_HISTOGRAM_MAX_SERIES */
    ExpertHistogramSeries series[EXPERT_HISTOGRAM_MAX_SERIES];
    const char *title;
    const char *x_label;
    const char *y_label;
    bool y_percent; /* values are fractions, labelled as percentages */
    const char *message; /* shown when every value is 0; NULL: "No data" */
} ExpertHistogramPlot;

/* The alpha of the bars when several series overlap. */
#define EXPERT_HISTOGRAM_OVERLAY_ALPHA 0.4

void expert_histogram_plot_layout(cairo_t *cr, double width, double height,
                                  const ExpertHistogramPlot *plot, const PlotStyle *style,
                                  ExpertPlotLayout *layout);
void expert_histogram_plot_render(cairo_t *cr, double width, double height,
                                  const ExpertHistogramPlot *plot, const PlotStyle *style,
                                  ExpertPlotLayout *layout);

/* ---- bytes pushed up and down ---------------------------------------------------------------- */

#define EXPERT_LOGIT_MAX_ROWS 128

/* One bar per row, from zero: right in up_color for a positive value, left in down_color for a
 * negative one, the label (a byte as text) beside the axis and the value at the bar's end. Rows
 * are drawn top to bottom in the order given, with a gap after the first `n_up`. The x range is
 * symmetric about zero, so equal effects have equal lengths either way. */
typedef struct {
    size_t n;               /* rows, <= EXPERT_LOGIT_MAX_ROWS */
    size_t n_up;            /* rows before the gap */
    const char *const *labels; /* (n) UTF-8 */
    const double *values;   /* (n) */
    unsigned up_color;
    unsigned down_color;
    const char *title;
    const char *x_label;
} ExpertLogitPlot;

/* The layout; also the centre line of each row (row_centres, n values; may be NULL). */
void expert_logit_plot_layout(cairo_t *cr, double width, double height, const ExpertLogitPlot *plot,
                              const PlotStyle *style, ExpertPlotLayout *layout,
                              double *row_centres);
void expert_logit_plot_render(cairo_t *cr, double width, double height, const ExpertLogitPlot *plot,
                              const PlotStyle *style, ExpertPlotLayout *layout);
