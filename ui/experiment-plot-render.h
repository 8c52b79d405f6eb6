/* The plots of an experiment drawn with cairo from plain arrays: panels side by side, each with
 * lines and markers per series and a legend, such as validation loss against training FLOPs for
 * every variant (the isoFLOP view) and final perplexity against the number of experts. The
 * workbench's Experiments page and `peer-experiment plot` (PNG, SVG, PDF through plot-export.h)
 * draw with the same function, so they agree at the same size and style. No display is needed. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <cairo.h>

#include "plot-axes.h"

/* One line. Arrays are borrowed. Points whose x or y is not finite, or not positive on a log
 * axis, are left out and break the line. */
typedef struct {
    const char *name;  /* in the legend; NULL leaves it out */
    unsigned color;    /* index into the palette (plot_palette_get) */
    bool dashed;
    bool horizontal;   /* a reference level: a line across the panel at y[0], no marker */
    size_t n;
    const double *x;   /* (n) */
    const double *y;   /* (n) */
} ExperimentPlotSeries;

typedef struct {
    const char *title;   /* NULL: none */
    const char *x_label;
    const char *y_label;
    bool log_x;
    bool log_y;
    /* x counts experts N = n²: ticks at the powers of four, labelled "32²", "64²", ... */
    bool x_squares;
    PlotNumberStyle x_numbers; /* otherwise */
    /* Ticks at the data's own x values (a few settings tried, such as 16, 32, 64, 128 active
     * experts), not at round numbers. */
    bool x_data_ticks;
    const ExperimentPlotSeries *series; /* (n_series) */
    size_t n_series;
    const char *empty_text; /* centred in the panel when no series has a point */
    /* The legend in columns under the panel instead of a box over the data: for many curves
     * that cross the whole panel. */
    bool legend_below;
} ExperimentPlotPanel;

/* Where one panel put its data: the data rectangle in user space and the values at its edges. */
typedef struct {
    double x, y, width, height;
    double x_min, x_max, y_min, y_max;
    bool log_x, log_y;
} ExperimentPlotLayout;

double experiment_plot_layout_x_to_pixel(const ExperimentPlotLayout *layout, double x);
double experiment_plot_layout_y_to_pixel(const ExperimentPlotLayout *layout, double y);

/* Draws the panels side by side, equally wide, in a width x height box at the origin of cr's
 * user space; fills layouts (n_panels of them), if not NULL, with where each put its data. */
void experiment_plot_render(cairo_t *cr, double width, double height,
                            const ExperimentPlotPanel *panels, size_t n_panels,
                            const PlotStyle *style, ExperimentPlotLayout *layouts);
