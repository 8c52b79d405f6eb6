#include "retrieval-path-render.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Sizes in units of the style's font size in pixels (f), so the picture scales with its text. */
#define PAD 0.6
#define TITLE_BAND 1.9      /* a panel's title line */
#define PICTURE_TITLE 2.2   /* the picture's title line */
#define STRIP 3.2           /* thickness of a sub-key bar strip */
#define FAN 3.0             /* room for the lines from a strip to the grid */
#define FAN_EXPERTS 3.4     /* room for the lines from the grid to the experts */
#define GAP 0.4
#define CELL_IDEAL 2.0
#define CELL_MAX 3.0
#define CELL_LABELS 1.05    /* below this, cells carry no index labels */
#define CELL_RANKS 1.25     /* below this, chosen cells carry no rank number */
#define ROW_MIN 1.45        /* an expert's row in the list */
#define ROW_MAX 2.4
#define BAR 3.4             /* length of a bar in the list of experts */
#define LEGEND_BAR 5.0
#define FONT_SCALE_SMALL 0.9

typedef struct {
    double f;
    double x, y, w, h;            /* the panel */
    double s1x, s1y, s1w, s1h;    /* C: a vertical strip, sub-key 0 at the top */
    double s2x, s2y, s2w, s2h;    /* C′: a horizontal strip, sub-key 0 at the left */
    double gx, gy, cell;          /* the grid's top left corner and cell size */
    double label_w;               /* row labels, right-aligned against the grid */
    double col_label_h;
    bool labels, rotated_labels, ranks;
    double ex, ey, row_h;         /* the list of experts: left, first row's top, row height */
    double id_w, ab_w, metric_w;
    int n_metrics;
    int shown;                    /* expert rows drawn */
    bool more;                    /* a last row says how many did not fit */
} Panel;

typedef struct {
    double sub_lo, sub_hi;    /* sub-key scores over the drawn heads */
    double cand_lo, cand_hi;  /* candidate sums */
    double act_lo, act_hi;    /* σ(uᵀx), with 0 inside */
    double contrib_hi;
} Ranges;

static double font_px(const PlotStyle *style)
{
    return plot_style_font_pixels(style);
}

static double clampd(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static void number_text(double value, char *buffer, size_t size)
{
    plot_format_number(value, 0.0, PLOT_NUMBER_PLAIN, buffer, size);
}

/* The widths of the list's columns, which depend on the largest numbers it can hold. */
static void measure_list(PlotText *text, const RetrievalPathData *data, Panel *p)
{
    char buffer[64];
    double w, h;
    plot_text_set_font(text, FONT_SCALE_SMALL, false);
    snprintf(buffer, sizeof buffer, "%lld", (long long)data->n * data->n - 1);
    plot_text_measure(text, buffer, &p->id_w, &h);
    plot_text_measure(text, "expert", &w, &h);
    p->id_w = fmax(p->id_w, w);
    snprintf(buffer, sizeof buffer, "(%d, %d)", data->n - 1, data->n - 1);
    plot_text_measure(text, buffer, &p->ab_w, &h);
    plot_text_measure(text, "(a, b)", &w, &h);
    p->ab_w = fmax(p->ab_w, w);
    double value_w;
    plot_text_measure(text, "\u22120.000", &value_w, &h);
    p->metric_w = BAR * p->f + GAP * p->f + value_w;
    plot_text_measure(text, "\u2016g\u00b7\u03c3\u00b7v\u2016", &w, &h);
    p->metric_w = fmax(p->metric_w, w);
    p->n_metrics = data->values_only ? 2 : 3;
}

static double list_width(const Panel *p)
{
    return p->id_w + p->ab_w + p->n_metrics * p->metric_w + (2 + p->n_metrics) * GAP * p->f * 2;
}

static double label_width(PlotText *text, const RetrievalPathData *data)
{
    char buffer[32];
    double w, h;
    plot_text_set_font(text, FONT_SCALE_SMALL, false);
    snprintf(buffer, sizeof buffer, "%d", data->n > 1 ? data->n - 1 : 0);
    plot_text_measure(text, buffer, &w, &h);
    return w;
}

/* The panel's size with grid cells of cell_size font heights. */
static void panel_size(PlotText *text, const RetrievalPathData *data, const PlotStyle *style,
                       double cell_size, double *width, double *height)
{
    Panel p = {.f = font_px(style)};
    double f = p.f;
    measure_list(text, data, &p);
    double label_w = label_width(text, data);
    double k = data->topk;
    double grid = k * cell_size * f;
    double rows = fmax(grid, (k + 1) * ROW_MIN * f);
    *width = 2 * PAD * f + STRIP * f + FAN * f + label_w + GAP * f + grid + FAN_EXPERTS * f +
             list_width(&p);
    *height = TITLE_BAND * f + STRIP * f + FAN * f + 1.4 * f + rows + 2 * PAD * f;
}

static void ideal_panel(PlotText *text, const RetrievalPathData *data, const PlotStyle *style,
                        double *width, double *height)
{
    panel_size(text, data, style, CELL_IDEAL, width, height);
}

/* ---- layout -------------------------------------------------------------------------------- */

static void panel_layout(PlotText *text, const RetrievalPathData *data, const PlotStyle *style,
                         double x, double y, double w, double h, Panel *p)
{
    memset(p, 0, sizeof *p);
    double f = font_px(style);
    p->f = f;
    p->x = x;
    p->y = y;
    p->w = w;
    p->h = h;
    measure_list(text, data, p);
    double label_w = label_width(text, data);
    int k = data->topk;

    double top = y + TITLE_BAND * f + STRIP * f + FAN * f;
    double bottom = y + h - PAD * f;
    double left = x + PAD * f + STRIP * f + FAN * f;
    double right = x + w - PAD * f - FAN_EXPERTS * f - list_width(p);

    /* The cell size decides whether the indices fit beside the rows and over the columns. */
    double label_h = 1.4 * f;
    double cell = fmin((right - left - label_w - GAP * f) / k, (bottom - top - label_h) / k);
    cell = fmin(cell, CELL_MAX * f);
    p->labels = cell >= CELL_LABELS * f;
    p->ranks = cell >= CELL_RANKS * f;
    p->rotated_labels = p->labels && label_w > cell - 2.0;
    if (p->rotated_labels) {
        label_h = label_w + GAP * f;
        cell = fmin(cell, (bottom - top - label_h) / k);
        p->labels = cell >= CELL_LABELS * f;
        p->ranks = cell >= CELL_RANKS * f;
    }
    if (!p->labels) {
        label_w = 0.0;
        label_h = 0.4 * f;
        cell = fmin(fmin((right - left - GAP * f) / k, (bottom - top - label_h) / k),
                    CELL_MAX * f);
    }
    p->cell = fmax(cell, 0.5);
    p->label_w = label_w;
    p->col_label_h = label_h;

    p->s1x = x + PAD * f;
    p->s1y = top;
    p->s1w = STRIP * f;
    p->s1h = fmax(bottom - top, 1.0);
    p->gx = left + label_w + (label_w > 0 ? GAP * f : 0.0);
    p->gy = top + label_h;
    p->s2x = p->s1x + p->s1w + FAN * f * 0.5;
    p->s2y = y + TITLE_BAND * f;
    p->s2w = fmax(p->gx + k * p->cell - p->s2x, 1.0);
    p->s2h = STRIP * f;

    p->ex = p->gx + k * p->cell + FAN_EXPERTS * f;
    p->ey = p->gy;
    p->row_h = fmax(ROW_MIN * f, fmin(p->cell, ROW_MAX * f));
    int fit = (int)floor((bottom - p->ey) / p->row_h);
    if (fit >= k) {
        p->shown = k;
    } else {
        p->shown = fit > 1 ? fit - 1 : 0;
        p->more = true;
    }
}

static void arrange(const RetrievalPathData *data, const PlotStyle *style, PlotText *text,
                    double width, int *columns, int *rows)
{
    double ideal_w, ideal_h;
    ideal_panel(text, data, style, &ideal_w, &ideal_h);
    int n = data->n_heads > 0 ? data->n_heads : 1;
    int c = (int)floor(width / ideal_w);
    c = c < 1 ? 1 : c > n ? n : c;
    *columns = c;
    *rows = (n + c - 1) / c;
}

static double picture_top(const RetrievalPathData *data, const PlotStyle *style)
{
    return data->title ? PICTURE_TITLE * font_px(style) : 0.0;
}

/* The panel of heads[index] in a width × height picture. */
static void locate_panel(PlotText *text, const RetrievalPathData *data, const PlotStyle *style,
                         double width, double height, int index, Panel *p)
{
    int columns, rows;
    arrange(data, style, text, width, &columns, &rows);
    double top = picture_top(data, style);
    double pw = width / columns, ph = (height - top) / rows;
    int c = index % columns, r = index / columns;
    /* A panel wider than its largest cells need keeps its parts together at the left. */
    double widest, tallest;
    panel_size(text, data, style, CELL_MAX, &widest, &tallest);
    panel_layout(text, data, style, c * pw, top + r * ph, fmin(pw, widest), ph, p);
}

/* A scratch context for measuring text where nothing is drawn (hit tests). */
static cairo_t *measuring_context(void)
{
    cairo_surface_t *surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, 1, 1);
    cairo_t *cr = cairo_create(surface);
    cairo_surface_destroy(surface);
    return cr;
}

void retrieval_path_panel_size(const RetrievalPathData *data, const PlotStyle *style,
                               double *width, double *height)
{
    cairo_t *cr = measuring_context();
    PlotText *text = plot_text_new(cr, style);
    ideal_panel(text, data, style, width, height);
    plot_text_free(text);
    cairo_destroy(cr);
}

void retrieval_path_arrange(const RetrievalPathData *data, const PlotStyle *style, double width,
                            int *columns, int *rows)
{
    cairo_t *cr = measuring_context();
    PlotText *text = plot_text_new(cr, style);
    arrange(data, style, text, width, columns, rows);
    plot_text_free(text);
    cairo_destroy(cr);
}

double retrieval_path_height_for_width(const RetrievalPathData *data, const PlotStyle *style,
                                       double width)
{
    cairo_t *cr = measuring_context();
    PlotText *text = plot_text_new(cr, style);
    double ideal_w, ideal_h;
    int columns, rows;
    ideal_panel(text, data, style, &ideal_w, &ideal_h);
    arrange(data, style, text, width, &columns, &rows);
    plot_text_free(text);
    cairo_destroy(cr);
    return picture_top(data, style) + rows * ideal_h;
}

/* ---- geometry shared by drawing and hit testing ---------------------------------------------- */

static double row_center(const Panel *p, int i)
{
    return p->gy + (i + 0.5) * p->cell;
}

static double col_center(const Panel *p, int j)
{
    return p->gx + (j + 0.5) * p->cell;
}

static double expert_row_center(const Panel *p, int rank)
{
    return p->ey + (rank + 0.5) * p->row_h;
}

static double sub_key_y(const Panel *p, int n, int a)
{
    return p->s1y + (a + 0.5) * p->s1h / n;
}

static double sub_key_x(const Panel *p, int n, int b)
{
    return p->s2x + (b + 0.5) * p->s2w / n;
}

/* ---- colours -------------------------------------------------------------------------------- */

typedef struct {
    PlotColor fg, bg, faint, muted, accent, cool, bar;
} Colors;

static Colors colors_of(const PlotStyle *style)
{
    Colors c;
    c.fg = style->foreground;
    c.bg = style->background.alpha > 0.0 ? style->background : (PlotColor){1, 1, 1, 1};
    c.faint = plot_color_mix(c.bg, c.fg, 0.12);
    c.muted = plot_color_mix(c.bg, c.fg, 0.38);
    c.accent = plot_palette_get(1); /* vermillion: the path */
    c.cool = plot_palette_get(0);   /* blue: the candidate scores */
    c.bar = plot_palette_get(0);
    return c;
}

static PlotColor candidate_color(const Colors *c, const Ranges *r, double value)
{
    double t = r->cand_hi > r->cand_lo ? (value - r->cand_lo) / (r->cand_hi - r->cand_lo) : 1.0;
    return plot_color_mix(c->bg, c->cool, 0.06 + 0.94 * clampd(t, 0.0, 1.0));
}

static PlotColor readable_on(const PlotColor *background)
{
    return plot_color_luminance(*background) > 0.4 ? (PlotColor){0, 0, 0, 1}
                                                   : (PlotColor){1, 1, 1, 1};
}

static void compute_ranges(const RetrievalPathData *data, Ranges *r)
{
    r->sub_lo = INFINITY;
    r->sub_hi = -INFINITY;
    r->cand_lo = INFINITY;
    r->cand_hi = -INFINITY;
    r->act_lo = 0.0;
    r->act_hi = 0.0;
    r->contrib_hi = 0.0;
    int n = data->n, k = data->topk;
    for (int h = 0; h < data->n_heads; h++) {
        const RetrievalPathHead *head = &data->heads[h];
        for (int half = 0; half < 2; half++)
            for (int i = 0; i < n; i++) {
                double v = head->sub_score[half][i];
                if (isfinite(v)) {
                    r->sub_lo = fmin(r->sub_lo, v);
                    r->sub_hi = fmax(r->sub_hi, v);
                }
            }
        for (int i = 0; i < k * k; i++)
            if (isfinite(head->candidate[i])) {
                r->cand_lo = fmin(r->cand_lo, head->candidate[i]);
                r->cand_hi = fmax(r->cand_hi, head->candidate[i]);
            }
        for (int s = 0; s < k; s++) {
            if (isfinite(head->activation[s])) {
                r->act_lo = fmin(r->act_lo, head->activation[s]);
                r->act_hi = fmax(r->act_hi, head->activation[s]);
            }
            if (isfinite(head->contribution[s]))
                r->contrib_hi = fmax(r->contrib_hi, head->contribution[s]);
        }
    }
    if (!(r->sub_hi > r->sub_lo)) {
        r->sub_lo = isfinite(r->sub_lo) ? r->sub_lo - 1.0 : 0.0;
        r->sub_hi = r->sub_lo + 2.0;
    }
    if (!(r->cand_hi > r->cand_lo)) {
        r->cand_lo = isfinite(r->cand_lo) ? r->cand_lo - 1.0 : 0.0;
        r->cand_hi = r->cand_lo + 2.0;
    }
}

/* ---- drawing ------------------------------------------------------------------------------- */

/* A bar's length in [0, 1] for a sub-key score: a sliver at the lowest score, so every sub-key
 * shows. */
static double sub_fraction(const Ranges *r, double value)
{
    return 0.04 + 0.96 * clampd((value - r->sub_lo) / (r->sub_hi - r->sub_lo), 0.0, 1.0);
}

/* The n scores of one half as bars along a strip: vertical (C) grows rightwards from the strip's
 * left edge, horizontal (C′) grows upwards from its bottom. Where sub-keys outnumber pixels, a
 * pixel shows the best of its sub-keys. */
static void draw_strip(cairo_t *cr, const Panel *p, const Ranges *r, const Colors *c,
                       const float *scores, int n, bool vertical)
{
    double length = vertical ? p->s1h : p->s2w;
    double thick = vertical ? p->s1w : p->s2h;
    int bins = n <= length ? n : (int)ceil(length);
    double step = length / bins;
    double gap = step >= 4.0 ? 1.0 : 0.0;
    plot_set_source_color(cr, c->muted);
    for (int b = 0; b < bins; b++) {
        int i0 = (int)((long long)b * n / bins), i1 = (int)((long long)(b + 1) * n / bins);
        if (i1 <= i0)
            i1 = i0 + 1;
        double best = -INFINITY;
        for (int i = i0; i < i1 && i < n; i++)
            best = fmax(best, scores[i]);
        if (!isfinite(best))
            continue;
        double extent = sub_fraction(r, best) * thick;
        if (vertical)
            cairo_rectangle(cr, p->s1x, p->s1y + b * step, extent, step - gap);
        else
            cairo_rectangle(cr, p->s2x + b * step, p->s2y + p->s2h - extent, step - gap, extent);
    }
    cairo_fill(cr);
    /* The strip's baseline. */
    plot_set_source_color(cr, c->faint);
    if (vertical)
        cairo_rectangle(cr, p->s1x - 1.0, p->s1y, 1.0, p->s1h);
    else
        cairo_rectangle(cr, p->s2x, p->s2y + p->s2h, p->s2w, 1.0);
    cairo_fill(cr);
}

static void draw_top_marks(cairo_t *cr, const Panel *p, const Ranges *r, const Colors *c,
                           const RetrievalPathHead *head, int n, int k, bool vertical)
{
    int half = vertical ? 0 : 1;
    double length = vertical ? p->s1h : p->s2w;
    double thick = fmax(fmin(length / n, 4.0), 2.0);
    for (int i = 0; i < k; i++) {
        int key = head->sub_top[half][i];
        if (key < 0 || key >= n)
            continue;
        double extent = sub_fraction(r, head->sub_score[half][key]);
        plot_set_source_color(cr, c->accent);
        if (vertical) {
            double y = sub_key_y(p, n, key);
            cairo_rectangle(cr, p->s1x, y - thick / 2, extent * p->s1w, thick);
        } else {
            double x = sub_key_x(p, n, key);
            cairo_rectangle(cr, x - thick / 2, p->s2y + p->s2h * (1.0 - extent), thick,
                            extent * p->s2h);
        }
        cairo_fill(cr);
    }
}

/* Lines from the top k of each half to the grid's rows and columns. */
static void draw_fans(cairo_t *cr, const Panel *p, const Colors *c, const RetrievalPathHead *head,
                      int n, int k, int emphasised_i, int emphasised_j)
{
    double f = p->f;
    for (int i = 0; i < k; i++) {
        int a = head->sub_top[0][i];
        double y0 = sub_key_y(p, n, a), x0 = p->s1x + p->s1w;
        double x1 = p->gx - p->label_w - (p->label_w > 0 ? GAP * f : 0.0) - GAP * f * 0.5;
        double y1 = row_center(p, i);
        double mid = (x0 + x1) / 2;
        cairo_move_to(cr, x0, y0);
        cairo_curve_to(cr, mid, y0, mid, y1, x1, y1);
        bool strong = i == emphasised_i;
        plot_set_source_color_alpha(cr, c->accent, strong ? 1.0 : 0.55);
        cairo_set_line_width(cr, strong ? 2.0 : 1.0);
        cairo_stroke(cr);
    }
    for (int j = 0; j < k; j++) {
        int b = head->sub_top[1][j];
        double x0 = sub_key_x(p, n, b), y0 = p->s2y + p->s2h + 1.0;
        double x1 = col_center(p, j), y1 = p->gy - p->col_label_h;
        double mid = (y0 + y1) / 2;
        cairo_move_to(cr, x0, y0);
        cairo_curve_to(cr, x0, mid, x1, mid, x1, y1);
        bool strong = j == emphasised_j;
        plot_set_source_color_alpha(cr, c->accent, strong ? 1.0 : 0.55);
        cairo_set_line_width(cr, strong ? 2.0 : 1.0);
        cairo_stroke(cr);
    }
}

static void draw_labels(cairo_t *cr, PlotText *text, const Panel *p, const Colors *c,
                        const RetrievalPathHead *head, int k)
{
    if (!p->labels)
        return;
    char buffer[32];
    plot_text_set_font(text, FONT_SCALE_SMALL, false);
    plot_set_source_color(cr, c->fg);
    for (int i = 0; i < k; i++) {
        snprintf(buffer, sizeof buffer, "%d", head->sub_top[0][i]);
        plot_text_draw(text, buffer, p->gx - GAP * p->f, row_center(p, i), 1.0, 0.5, 0.0);
    }
    for (int j = 0; j < k; j++) {
        snprintf(buffer, sizeof buffer, "%d", head->sub_top[1][j]);
        if (p->rotated_labels)
            plot_text_draw(text, buffer, col_center(p, j), p->gy - GAP * p->f, 0.0, 0.5,
                           -M_PI / 2);
        else
            plot_text_draw(text, buffer, col_center(p, j), p->gy - GAP * p->f * 0.5, 0.5, 1.0,
                           0.0);
    }
}

static void draw_grid(cairo_t *cr, PlotText *text, const Panel *p, const Ranges *r,
                      const Colors *c, const RetrievalPathHead *head, int k, int emphasised)
{
    double gap = p->cell >= 8.0 ? 1.0 : 0.0;
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) {
            plot_set_source_color(cr, candidate_color(c, r, head->candidate[i * k + j]));
            cairo_rectangle(cr, p->gx + j * p->cell, p->gy + i * p->cell, p->cell - gap,
                            p->cell - gap);
            cairo_fill(cr);
        }
    /* The lines from the chosen cells to the list, under the cells' outlines. */
    double list_left = p->ex - GAP * p->f;
    for (int s = 0; s < k; s++) {
        if (s >= p->shown)
            continue;
        int i = head->pick_i[s], j = head->pick_j[s];
        double x0 = col_center(p, j), y0 = row_center(p, i);
        double y1 = expert_row_center(p, s);
        /* Along the chosen cell's row to the grid's edge, then across to the list: the lines
         * of a row's choices run together over the grid instead of crossing it. */
        double grid_right = p->gx + k * p->cell, mid = (grid_right + list_left) / 2;
        cairo_move_to(cr, x0, y0);
        cairo_line_to(cr, grid_right, y0);
        cairo_curve_to(cr, mid, y0, mid, y1, list_left, y1);
        bool strong = s == emphasised;
        plot_set_source_color_alpha(cr, c->accent, strong ? 1.0 : 0.6);
        cairo_set_line_width(cr, strong ? 2.2 : 1.0);
        cairo_stroke(cr);
    }
    char buffer[16];
    plot_text_set_font(text, FONT_SCALE_SMALL * (p->cell < 1.6 * p->f ? 0.85 : 1.0), true);
    for (int s = 0; s < k; s++) {
        int i = head->pick_i[s], j = head->pick_j[s];
        double x = p->gx + j * p->cell, y = p->gy + i * p->cell;
        bool strong = s == emphasised;
        double line = strong ? 3.0 : fmin(2.0, fmax(1.0, p->cell / 8.0));
        plot_set_source_color(cr, c->accent);
        cairo_set_line_width(cr, line);
        cairo_rectangle(cr, x + line / 2, y + line / 2, p->cell - gap - line,
                        p->cell - gap - line);
        cairo_stroke(cr);
        if (p->ranks) {
            PlotColor fill = candidate_color(c, r, head->candidate[i * k + j]);
            plot_set_source_color(cr, readable_on(&fill));
            snprintf(buffer, sizeof buffer, "%d", s + 1);
            plot_text_draw(text, buffer, x + (p->cell - gap) / 2, y + (p->cell - gap) / 2, 0.5,
                           0.5, 0.0);
        }
    }
}

/* A bar from the baseline at `zero` (a fraction of the bar's length) to `value` on [lo, hi]. */
static void draw_value_bar(cairo_t *cr, const Colors *c, double x, double y, double length,
                           double thick, double value, double lo, double hi)
{
    if (!(hi > lo) || !isfinite(value))
        return;
    double zero = (0.0 - lo) / (hi - lo);
    double at = clampd((value - lo) / (hi - lo), 0.0, 1.0);
    double x0 = x + length * fmin(zero, at), x1 = x + length * fmax(zero, at);
    plot_set_source_color_alpha(cr, c->faint, 1.0);
    cairo_rectangle(cr, x, y, length, thick);
    cairo_fill(cr);
    plot_set_source_color_alpha(cr, c->bar, 0.85);
    cairo_rectangle(cr, x0, y, fmax(x1 - x0, 1.0), thick);
    cairo_fill(cr);
}

static void draw_list(cairo_t *cr, PlotText *text, const Panel *p, const Ranges *r,
                      const Colors *c, const RetrievalPathData *data,
                      const RetrievalPathHead *head, int emphasised)
{
    double f = p->f, gap = GAP * f * 2;
    double x_id = p->ex + p->id_w, x_ab = x_id + gap;
    double x_metric = x_ab + p->ab_w + gap;
    const char *headers[3] = {"gate", "\u03c3(u\u1d40x)", "\u2016g\u00b7\u03c3\u00b7v\u2016"};
    if (data->values_only)
        headers[1] = "\u2016g\u00b7v\u2016";
    char buffer[64];

    plot_text_set_font(text, FONT_SCALE_SMALL, true);
    plot_set_source_color(cr, c->fg);
    double header_y = p->ey - GAP * f * 0.5;
    plot_text_draw(text, "expert", x_id, header_y, 1.0, 1.0, 0.0);
    plot_text_draw(text, "(a, b)", x_ab, header_y, 0.0, 1.0, 0.0);
    for (int m = 0; m < p->n_metrics; m++)
        plot_text_draw(text, headers[m], x_metric + m * (p->metric_w + gap), header_y, 0.0, 1.0,
                       0.0);

    plot_text_set_font(text, FONT_SCALE_SMALL, false);
    double thick = fmin(p->row_h * 0.5, 0.8 * f);
    for (int s = 0; s < p->shown; s++) {
        double y = expert_row_center(p, s);
        if (s == emphasised) {
            plot_set_source_color_alpha(cr, c->accent, 0.16);
            cairo_rectangle(cr, p->ex - GAP * f, y - p->row_h / 2, list_width(p), p->row_h);
            cairo_fill(cr);
        }
        plot_set_source_color(cr, c->fg);
        snprintf(buffer, sizeof buffer, "%d", head->expert[s]);
        plot_text_draw(text, buffer, x_id, y, 1.0, 0.5, 0.0);
        snprintf(buffer, sizeof buffer, "(%d, %d)", head->row[s], head->col[s]);
        plot_text_draw(text, buffer, x_ab, y, 0.0, 0.5, 0.0);

        double values[3] = {head->gate[s], head->activation[s], head->contribution[s]};
        double lo[3] = {0.0, r->act_lo, 0.0};
        double hi[3] = {1.0, r->act_hi > r->act_lo ? r->act_hi : 1.0,
                        r->contrib_hi > 0 ? r->contrib_hi : 1.0};
        if (data->values_only) {
            values[1] = values[2];
            lo[1] = lo[2];
            hi[1] = hi[2];
        }
        for (int m = 0; m < p->n_metrics; m++) {
            double x = x_metric + m * (p->metric_w + gap);
            draw_value_bar(cr, c, x, y - thick / 2, BAR * f, thick, values[m], lo[m], hi[m]);
            number_text(values[m], buffer, sizeof buffer);
            plot_set_source_color(cr, c->fg);
            plot_text_draw(text, buffer, x + BAR * f + GAP * f, y, 0.0, 0.5, 0.0);
        }
    }
    if (p->more) {
        snprintf(buffer, sizeof buffer, "+ %d more", data->topk - p->shown);
        plot_set_source_color(cr, c->muted);
        plot_text_draw(text, buffer, p->ex, expert_row_center(p, p->shown), 0.0, 0.5, 0.0);
    }
}

static void draw_title_and_legend(cairo_t *cr, PlotText *text, const Panel *p, const Ranges *r,
                                  const Colors *c, const RetrievalPathData *data,
                                  const RetrievalPathHead *head)
{
    double f = p->f;
    char buffer[96];
    double y = p->y + TITLE_BAND * f * 0.5;
    plot_text_set_font(text, 1.0, true);
    plot_set_source_color(cr, c->fg);
    snprintf(buffer, sizeof buffer, "Head %d", head->head);
    double title_w, title_h;
    plot_text_measure(text, buffer, &title_w, &title_h);
    plot_text_draw(text, buffer, p->x + PAD * f, y, 0.0, 0.5, 0.0);
    double x = p->x + PAD * f + title_w + GAP * f * 2;
    plot_text_set_font(text, FONT_SCALE_SMALL, false);
    plot_set_source_color(cr, c->muted);
    snprintf(buffer, sizeof buffer, "%d sub-keys per half \u00b7 top %d of each \u00b7 top %d "
             "of the %d sums", data->n, data->topk, data->topk, data->topk * data->topk);
    double caption_w, h;
    plot_text_measure(text, buffer, &caption_w, &h);
    plot_text_draw(text, buffer, x, y, 0.0, 0.5, 0.0);
    title_w += GAP * f * 2 + caption_w;

    /* The candidate scale, at the right of the title line when it fits. */
    char lo_text[32], hi_text[32];
    number_text(r->cand_lo, lo_text, sizeof lo_text);
    number_text(r->cand_hi, hi_text, sizeof hi_text);
    double label_w, lo_w, hi_w;
    const char *label = "q\u00b9\u00b7c + q\u00b2\u00b7c\u2032";
    plot_text_measure(text, label, &label_w, &h);
    plot_text_measure(text, lo_text, &lo_w, &h);
    plot_text_measure(text, hi_text, &hi_w, &h);
    double bar = LEGEND_BAR * f;
    double total = label_w + lo_w + hi_w + bar + 4 * GAP * f;
    double right = p->x + p->w - PAD * f;
    if (right - total < p->x + PAD * f + title_w + 2 * f)
        return;
    x = right - total;
    plot_set_source_color(cr, c->muted);
    plot_text_draw(text, label, x, y, 0.0, 0.5, 0.0);
    x += label_w + GAP * f;
    plot_set_source_color(cr, c->fg);
    plot_text_draw(text, lo_text, x, y, 0.0, 0.5, 0.0);
    x += lo_w + GAP * f;
    cairo_pattern_t *gradient = cairo_pattern_create_linear(x, 0, x + bar, 0);
    PlotColor from = candidate_color(c, r, r->cand_lo), to = candidate_color(c, r, r->cand_hi);
    cairo_pattern_add_color_stop_rgba(gradient, 0, from.red, from.green, from.blue, 1);
    cairo_pattern_add_color_stop_rgba(gradient, 1, to.red, to.green, to.blue, 1);
    cairo_set_source(cr, gradient);
    cairo_rectangle(cr, x, y - 0.45 * f, bar, 0.9 * f);
    cairo_fill(cr);
    cairo_pattern_destroy(gradient);
    x += bar + GAP * f;
    plot_set_source_color(cr, c->fg);
    plot_text_draw(text, hi_text, x, y, 0.0, 0.5, 0.0);
}

static void draw_captions(cairo_t *cr, PlotText *text, const Panel *p, const Colors *c)
{
    double f = p->f;
    plot_text_set_font(text, FONT_SCALE_SMALL, false);
    plot_set_source_color(cr, c->muted);
    /* Beside the C′ strip, in the corner the two strips leave free. */
    plot_text_draw(text, "q\u00b2\u00b7C\u2032 \u2192", p->s2x - GAP * f, p->s2y + p->s2h * 0.5,
                   1.0, 0.5, 0.0);
    plot_text_draw(text, "q\u00b9\u00b7C \u2193", p->x + PAD * f, p->s1y - GAP * f, 0.0, 1.0,
                   0.0);
}

static void draw_panel(cairo_t *cr, PlotText *text, const Panel *p, const Ranges *r,
                       const Colors *c, const RetrievalPathData *data, int index)
{
    const RetrievalPathHead *head = &data->heads[index];
    int n = data->n, k = data->topk;
    int emphasised = data->highlight_head == index ? data->highlight_rank : -1;
    if (emphasised >= k)
        emphasised = -1;
    int emphasised_i = emphasised >= 0 ? head->pick_i[emphasised] : -1;
    int emphasised_j = emphasised >= 0 ? head->pick_j[emphasised] : -1;

    cairo_save(cr);
    cairo_rectangle(cr, p->x, p->y, p->w, p->h);
    cairo_clip(cr);
    draw_title_and_legend(cr, text, p, r, c, data, head);
    draw_captions(cr, text, p, c);
    draw_strip(cr, p, r, c, head->sub_score[0], n, true);
    draw_strip(cr, p, r, c, head->sub_score[1], n, false);
    draw_fans(cr, p, c, head, n, k, emphasised_i, emphasised_j);
    draw_top_marks(cr, p, r, c, head, n, k, true);
    draw_top_marks(cr, p, r, c, head, n, k, false);
    draw_labels(cr, text, p, c, head, k);
    draw_grid(cr, text, p, r, c, head, k, emphasised);
    draw_list(cr, text, p, r, c, data, head, emphasised);
    cairo_restore(cr);
}

void retrieval_path_render(cairo_t *cr, double width, double height,
                           const RetrievalPathData *data, const PlotStyle *style)
{
    Colors c = colors_of(style);
    cairo_save(cr);
    if (style->background.alpha > 0.0) {
        plot_set_source_color(cr, style->background);
        cairo_paint(cr);
    }
    PlotText *text = plot_text_new(cr, style);
    double f = font_px(style);
    if (data->title) {
        plot_text_set_font(text, 1.05, true);
        plot_set_source_color(cr, c.fg);
        plot_text_draw(text, data->title, PAD * f, PICTURE_TITLE * f * 0.5, 0.0, 0.5, 0.0);
    }
    if (data->n_heads <= 0 || data->n <= 0 || data->topk <= 0) {
        plot_text_set_font(text, 1.0, false);
        plot_set_source_color(cr, c.muted);
        plot_text_draw(text, "No retrieval to show", width / 2, height / 2, 0.5, 0.5, 0.0);
        plot_text_free(text);
        cairo_restore(cr);
        return;
    }
    Ranges r;
    compute_ranges(data, &r);
    int columns, rows;
    arrange(data, style, text, width, &columns, &rows);
    for (int h = 0; h < data->n_heads; h++) {
        Panel p;
        locate_panel(text, data, style, width, height, h, &p);
        draw_panel(cr, text, &p, &r, &c, data, h);
        /* Hairlines between panels. */
        plot_set_source_color(cr, c.faint);
        if (h % columns != 0)
            cairo_rectangle(cr, p.x, p.y + PAD * f, 1.0, p.h - 2 * PAD * f);
        if (h >= columns)
            cairo_rectangle(cr, p.x + PAD * f, p.y, p.w - 2 * PAD * f, 1.0);
        cairo_fill(cr);
    }
    plot_text_free(text);
    cairo_restore(cr);
}

/* ---- hit testing --------------------------------------------------------------------------- */

void retrieval_path_sub_key_position(double width, double height, const RetrievalPathData *data,
                                     const PlotStyle *style, int head, int half, int index,
                                     double *x, double *y)
{
    cairo_t *cr = measuring_context();
    PlotText *text = plot_text_new(cr, style);
    Panel p;
    locate_panel(text, data, style, width, height, head, &p);
    plot_text_free(text);
    cairo_destroy(cr);
    if (half == 0) {
        *x = p.s1x + 1.0;
        *y = sub_key_y(&p, data->n, index);
    } else {
        *x = sub_key_x(&p, data->n, index);
        *y = p.s2y + p.s2h - 1.0;
    }
}

bool retrieval_path_expert_position(double width, double height, const RetrievalPathData *data,
                                    const PlotStyle *style, int head, int rank, double *row_x,
                                    double *row_y, double *cell_x, double *cell_y)
{
    if (head < 0 || head >= data->n_heads || rank < 0 || rank >= data->topk)
        return false;
    cairo_t *cr = measuring_context();
    PlotText *text = plot_text_new(cr, style);
    Panel p;
    locate_panel(text, data, style, width, height, head, &p);
    plot_text_free(text);
    cairo_destroy(cr);
    const RetrievalPathHead *h = &data->heads[head];
    *cell_x = col_center(&p, h->pick_j[rank]);
    *cell_y = row_center(&p, h->pick_i[rank]);
    *row_x = p.ex + list_width(&p) / 2;
    *row_y = expert_row_center(&p, rank);
    return rank < p.shown;
}

bool retrieval_path_hit_test(double width, double height, const RetrievalPathData *data,
                             const PlotStyle *style, double x, double y, RetrievalPathHit *hit)
{
    if (data->n_heads <= 0 || data->n <= 0 || data->topk <= 0)
        return false;
    cairo_t *cr = measuring_context();
    PlotText *text = plot_text_new(cr, style);
    int columns, rows;
    arrange(data, style, text, width, &columns, &rows);
    double top = picture_top(data, style);
    double pw = width / columns, ph = (height - top) / rows;
    int c = (int)floor(x / pw), r = (int)floor((y - top) / ph);
    int index = r * columns + c;
    bool found = false;
    if (y >= top && c >= 0 && c < columns && r >= 0 && index < data->n_heads) {
        Panel p;
        locate_panel(text, data, style, width, height, index, &p);
        const RetrievalPathHead *head = &data->heads[index];
        int k = data->topk;
        /* A row of the list. */
        if (x >= p.ex - GAP * p.f && x < p.ex - GAP * p.f + list_width(&p) && y >= p.ey) {
            int rank = (int)floor((y - p.ey) / p.row_h);
            if (rank >= 0 && rank < p.shown) {
                *hit = (RetrievalPathHit){index, rank, head->expert[rank]};
                found = true;
            }
        }
        /* A chosen cell of the grid. */
        if (!found && x >= p.gx && y >= p.gy && x < p.gx + k * p.cell && y < p.gy + k * p.cell) {
            int i = (int)floor((y - p.gy) / p.cell), j = (int)floor((x - p.gx) / p.cell);
            for (int s = 0; s < k && !found; s++)
                if (head->pick_i[s] == i && head->pick_j[s] == j) {
                    *hit = (RetrievalPathHit){index, s, head->expert[s]};
                    found = true;
                }
        }
    }
    plot_text_free(text);
    cairo_destroy(cr);
    return found;
}
