/* The retrieval path of one token through a PEER or PKM layer, drawn with cairo from plain
 * arrays, one panel per head. A panel reads from left to right:
 *
 *            q²·c′_b over all n sub-keys of C′ (bars), its top k marked
 *                 \  |  /   lines to the grid's columns
 *   q¹·c_a   ——  k × k candidate grid  ——  chosen experts: id, (a, b), gate, σ(uᵀx),
 *   over all n     (q¹·c_a + q²·c′_b,        and the size of the contribution ‖g·σ(uᵀx)·v‖
 *   sub-keys of C   coloured; the final
 *   (bars), top k   k outlined and ranked)
 *   marked
 *
 * so the query's first half, scored against C, feeds the rows of the grid, the second half,
 * scored against C′, its columns, and lines follow every selection from stage to stage. The
 * n bars of a half are drawn at any n: where there are more sub-keys than pixels, each pixel
 * shows the best score among its sub-keys, so no top-k sub-key is ever hidden.
 *
 * The widget (retrieval-path.h) and exports draw with these functions, so they agree at the same
 * size and style; no display is needed. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <cairo.h>

#include "plot-axes.h"

/* One head's path; arrays borrowed, with the meanings of the engine's retrieval trace. */
typedef struct {
    int head;                   /* the model's number for the head, for its title */
    const float *sub_score[2];  /* (n) each: q¹·c_a over a, q²·c′_b over b */
    const int32_t *sub_top[2];  /* (k) each: the best sub-keys, best first */
    const float *candidate;     /* (k, k) row i, column j: sub_top[0][i] with sub_top[1][j] */
    const int32_t *pick_i;      /* (k) the candidate row of each chosen expert, best first */
    const int32_t *pick_j;      /* (k) its column */
    const int32_t *expert;      /* (k) a·n + b */
    const int32_t *row;         /* (k) a */
    const int32_t *col;         /* (k) b */
    const float *gate;          /* (k) */
    const float *activation;    /* (k) σ(u_iᵀx) */
    const float *contribution;  /* (k) ‖gate·σ(u_iᵀx)·v_i‖ */
} RetrievalPathHead;

typedef struct {
    int n;                          /* sub-keys per half */
    int topk;                       /* k */
    int n_heads;                    /* panels to draw */
    const RetrievalPathHead *heads; /* (n_heads) */
    bool values_only;               /* PKM: no σ(uᵀx) column */
    const char *title;              /* over the panels; NULL for none */
    /* An expert drawn emphasised, with its whole path (the pointer over it): heads[] index and
     * rank, or -1. */
    int highlight_head;
    int highlight_rank;
} RetrievalPathData;

/* The size one head's panel wants for its text to be legible and its grid cells comfortable. */
void retrieval_path_panel_size(const RetrievalPathData *data, const PlotStyle *style,
                               double *width, double *height);

/* How the panels of a width × height picture are arranged: columns × rows, as many columns as
 * fit at the panel's wanted width, at least one. */
void retrieval_path_arrange(const RetrievalPathData *data, const PlotStyle *style, double width,
                            int *columns, int *rows);

/* The height a picture of this width wants: its rows of panels at the wanted panel height. */
double retrieval_path_height_for_width(const RetrievalPathData *data, const PlotStyle *style,
                                       double width);

/* Draws the picture in a width × height box at the origin of cr's user space. */
void retrieval_path_render(cairo_t *cr, double width, double height,
                           const RetrievalPathData *data, const PlotStyle *style);

typedef struct {
    int head;        /* index into data->heads */
    int rank;        /* 0 for the best expert of the head */
    int32_t expert;  /* its id */
} RetrievalPathHit;

/* The chosen expert drawn under the point (x, y) of a picture drawn at width × height — its row
 * in the list of experts, or its cell in the grid — or false. */
bool retrieval_path_hit_test(double width, double height, const RetrievalPathData *data,
                             const PlotStyle *style, double x, double y, RetrievalPathHit *hit);

/* Where sub-key index of half (0: C, 1: C′) is drawn in heads[head]'s panel: a point on its bar
 * just off the strip's baseline. */
void retrieval_path_sub_key_position(double width, double height, const RetrievalPathData *data,
                                     const PlotStyle *style, int head, int half, int index,
                                     double *x, double *y);

/* Where an expert is drawn: the centre of its row in the list and of its cell in the grid.
 * False when the list has no room for it (a long list is cut where the panel ends). */
bool retrieval_path_expert_position(double width, double height, const RetrievalPathData *data,
                                    const PlotStyle *style, int head, int rank, double *row_x,
                                    double *row_y, double *cell_x, double *cell_y);
