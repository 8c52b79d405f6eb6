/* The expert heat map drawn with cairo from a plain array: the n × n grid of a PEER or PKM
 * layer's experts (row a is sub-key a of C, column b sub-key b of C'; expert a·n + b), each cell
 * coloured by a value through a perceptual colour map on a linear or logarithmic scale, with a
 * colour bar and its numbers, cell-index axes, and a view that zooms and pans down to single
 * cells. The widget (expert-heatmap.h) and any export draw with these functions; no display is
 * needed.
 *
 * Large grids draw fast: the grid becomes an image of one pixel per cell once
 * (expert_heatmap_image_new), and every view draws that image scaled, nearest-neighbour when a
 * cell covers more than a pixel so single cells stay crisp. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cairo.h>

#include "plot-axes.h"

#define EXPERT_HEATMAP_COLORS 256
/* The closest a view zooms: this many cells across. */
#define EXPERT_HEATMAP_MIN_SPAN 4.0

typedef enum {
    EXPERT_HEATMAP_LINEAR,
    EXPERT_HEATMAP_LOG,
} ExpertHeatmapScale;

/* What the heat map shows. Arrays are borrowed. */
typedef struct {
    int side;                 /* n; 0 draws the message instead of a grid */
    const float *values;      /* (n, n) row-major; NaN: no value (drawn as empty) */
    bool zero_is_empty;       /* a value of 0 is empty too: an expert never chosen */
    ExpertHeatmapScale scale; /* log: values <= 0 take the bottom colour */
    const char *title;        /* NULL: none */
    const char *value_label;  /* along the colour bar; NULL: "value" */
    const char *empty_label;  /* beside the empty swatch; NULL: "never chosen" */
    const char *message;      /* centred when there is no grid; NULL: none */
    const int32_t *marked;    /* (n_marked) experts ringed, e.g. those a token chose */
    size_t n_marked;
    int32_t selected;         /* outlined expert; -1 for none */
} ExpertHeatmapModel;

/* The cells in view: columns [x0, x0 + span) and rows [y0, y0 + span), in cells. */
typedef struct {
    double x0, y0, span;
} ExpertHeatmapView;

/* Where the heat map went, in the user space it was drawn in. */
typedef struct {
    double x, y, size;        /* the grid's square */
    double bar_x, bar_y, bar_width, bar_height; /* the colour bar */
    bool has_range;           /* some cell has a value */
    double lo, hi;            /* values at the bottom and top of the colour map */
    ExpertHeatmapScale scale; /* as drawn: linear when log has no positive value */
    int side;
    ExpertHeatmapView view;   /* clamped */
} ExpertHeatmapLayout;

/* The colour map: 256 opaque colours as cairo ARGB32 pixels, from dark blue-violet through
 * teal and green to yellow (viridis's five anchor colours #440154, #3b528b, #21918c, #5ec962,
 * #fde725, interpolated in OKLab), so lightness rises evenly and colour-blind readers see the
 * same order. */
void expert_heatmap_colormap(uint32_t lut[EXPERT_HEATMAP_COLORS]);

/* The colour an empty cell has in style: between its background and foreground. */
PlotColor expert_heatmap_empty_color(const PlotStyle *style);

/* The values at the ends of the colour map: linear from min(0, smallest) to the largest value;
 * log from the smallest positive value to the largest. Empty cells are left out. False when no
 * cell has a value (or, for log, none is positive). */
bool expert_heatmap_value_range(const float *values, int side, bool zero_is_empty,
                                ExpertHeatmapScale scale, double *lo, double *hi);

/* The colour-map index of value in [lo, hi] on scale: 0 at lo (and below), 255 at hi. */
int expert_heatmap_color_index(double value, double lo, double hi, ExpertHeatmapScale scale);

/* The grid as an image of side × side ARGB32 pixels, one per cell, coloured with the range and
 * scale the layout finds (expert_heatmap_value_range; log falls back to linear when no value is
 * positive). NULL when there is no grid or no memory. It depends on the model's side, values,
 * zero_is_empty and scale and on the style only: the widget keeps it until one changes. */
cairo_surface_t *expert_heatmap_image_new(const ExpertHeatmapModel *model,
                                          const PlotStyle *style);
/* Colours image anew for model, in place (a new grid of the same side): no new memory to fault
 * in. False, and nothing done, when the sides differ. */
bool expert_heatmap_image_update(cairo_surface_t *image, const ExpertHeatmapModel *model,
                                 const PlotStyle *style);

/* The whole grid in view. */
void expert_heatmap_view_reset(ExpertHeatmapView *view, int side);
/* Keeps span within [min(EXPERT_HEATMAP_MIN_SPAN, side), side] and the view inside the grid. */
void expert_heatmap_view_clamp(ExpertHeatmapView *view, int side);
/* Zooms in by factor (> 1 in, < 1 out) keeping the point (column, row), in cells, where it is
 * on screen. */
void expert_heatmap_view_zoom(ExpertHeatmapView *view, int side, double factor, double column,
                              double row);
/* Moves the view by (columns, rows) cells. */
void expert_heatmap_view_pan(ExpertHeatmapView *view, int side, double columns, double rows);

/* Lays the heat map out in a width × height box at the origin; cr is used only to measure
 * text. */
void expert_heatmap_layout(cairo_t *cr, double width, double height,
                           const ExpertHeatmapModel *model, const ExpertHeatmapView *view,
                           const PlotStyle *style, ExpertHeatmapLayout *layout);

/* The cell under a point: false outside the grid's square. Column b and row a may be fractional
 * (expert_heatmap_layout_to_cells) or whole cells (_cell_at). */
void expert_heatmap_layout_to_cells(const ExpertHeatmapLayout *layout, double x, double y,
                                    double *column, double *row);
bool expert_heatmap_layout_cell_at(const ExpertHeatmapLayout *layout, double x, double y, int *a,
                                   int *b);
/* The rectangle cell (a, b) covers on screen (it may lie outside the grid's square). */
void expert_heatmap_layout_cell_rect(const ExpertHeatmapLayout *layout, int a, int b, double *x,
                                     double *y, double *width, double *height);

/* Draws the heat map in a width × height box at the origin. image is the grid's image made from
 * this model (expert_heatmap_image_new), whose colour range it reuses, or NULL to make one for
 * this drawing alone. Fills layout, if not NULL. */
void expert_heatmap_render(cairo_t *cr, double width, double height,
                           const ExpertHeatmapModel *model, const ExpertHeatmapView *view,
                           const PlotStyle *style, cairo_surface_t *image,
                           ExpertHeatmapLayout *layout);

/* The hover read-out drawn over a heat map: cell (a, b) outlined, and beside the pointer a box
 * with a bold first line and the rest below it. */
void expert_heatmap_render_hover(cairo_t *cr, double width, double height,
                                 const ExpertHeatmapLayout *layout, const PlotStyle *style, int a,
                                 int b, const char *const *lines, size_t n_lines,
                                 double pointer_x, double pointer_y);
