#include "experiment-figure.h"

#include <glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PANELS 2
#define MAX_SERIES (EXPERIMENT_MAX_VARIANTS + 4)

/* Palette places that stay with a method or a norm across figures. */
enum {
    COLOR_DENSE = 0, COLOR_MOE = 1, COLOR_PKM = 2, COLOR_PEER = 3, COLOR_PEER_ALL = 4,
    COLOR_NO_NORM = 5, COLOR_LAYER_NORM = 6,
};

struct experiment_figure {
    ExperimentPlotPanel panels[MAX_PANELS];
    size_t n_panels;
    ExperimentPlotSeries series[MAX_PANELS][MAX_SERIES];
    char names[MAX_PANELS][MAX_SERIES][EXPERIMENT_LABEL_SIZE];
    double *values; /* every series' x and y, one allocation */
    size_t used, capacity;
};

bool experiment_figure_kind_from_name(const char *name, experiment_figure_kind *kind)
{
    const struct { const char *name; experiment_figure_kind kind; } kinds[] = {
        { "overview", EXPERIMENT_FIGURE_OVERVIEW }, { "flops", EXPERIMENT_FIGURE_FLOPS },
        { "experts", EXPERIMENT_FIGURE_EXPERTS }, { "active", EXPERIMENT_FIGURE_ACTIVE },
    };
    for (size_t i = 0; name && i < G_N_ELEMENTS(kinds); i++)
        if (strcmp(kinds[i].name, name) == 0) {
            *kind = kinds[i].kind;
            return true;
        }
    return false;
}

bool experiment_figure_group_from_name(const char *name, unsigned *group)
{
    const struct { const char *name; unsigned group; } groups[] = {
        { "methods", EXPERIMENT_GROUP_METHODS }, { "experts", EXPERIMENT_GROUP_EXPERTS },
        { "active", EXPERIMENT_GROUP_ACTIVE }, { "norm", EXPERIMENT_GROUP_NORM },
    };
    for (size_t i = 0; name && i < G_N_ELEMENTS(groups); i++)
        if (strcmp(groups[i].name, name) == 0) {
            *group = groups[i].group;
            return true;
        }
    return false;
}

static double *take_values(experiment_figure *f, size_t n)
{
    g_assert(f->used + n <= f->capacity);
    double *values = f->values + f->used;
    f->used += n;
    return values;
}

static ExperimentPlotSeries *add_series(experiment_figure *f, size_t panel, const char *name,
                                        unsigned color, size_t n)
{
    ExperimentPlotPanel *p = &f->panels[panel];
    if (p->n_series >= MAX_SERIES)
        return NULL;
    size_t index = p->n_series++;
    ExperimentPlotSeries *s = &f->series[panel][index];
    g_strlcpy(f->names[panel][index], name, EXPERIMENT_LABEL_SIZE);
    *s = (ExperimentPlotSeries){ .name = f->names[panel][index], .color = color, .n = 0 };
    s->x = take_values(f, MAX(n, 1));
    s->y = take_values(f, MAX(n, 1));
    p->series = f->series[panel];
    return s;
}

static unsigned method_color(const experiment_variant *v)
{
    switch (v->method) {
    case EXPERIMENT_METHOD_DENSE: return COLOR_DENSE;
    case EXPERIMENT_METHOD_MOE: return COLOR_MOE;
    case EXPERIMENT_METHOD_PKM: return COLOR_PKM;
    case EXPERIMENT_METHOD_PEER: return COLOR_PEER;
    case EXPERIMENT_METHOD_PEER_ALL: return COLOR_PEER_ALL;
    }
    return 0;
}

/* The legend's name of a variant in a group's curves: what tells it from the others there. */
static void short_name(const experiment_variant *v, unsigned group, char *buffer, size_t size)
{
    int side = (int)lround(sqrt((double)v->n_experts));
    switch (group) {
    case EXPERIMENT_GROUP_EXPERTS:
        g_snprintf(buffer, size, "N = %d²", side);
        break;
    case EXPERIMENT_GROUP_ACTIVE:
        g_snprintf(buffer, size, "h·k = %d (h = %d)", v->heads * v->topk, v->heads);
        break;
    case EXPERIMENT_GROUP_NORM:
        g_snprintf(buffer, size, "%d², %s", side,
                   v->query_norm == PEER_NORM_BATCH   ? "batch norm"
                   : v->query_norm == PEER_NORM_LAYER ? "layer norm"
                                                      : "no query norm");
        break;
    default:
        g_strlcpy(buffer, experiment_method_label(v->method), size);
        break;
    }
}

static double ablation_key(const experiment_variant *v)
{
    int norm = v->query_norm == PEER_NORM_BATCH ? 0 : v->query_norm == PEER_NORM_LAYER ? 1 : 2;
    return ((double)v->n_experts * 4096.0 + v->heads * v->topk) * 4.0 + norm;
}

static void flops_panel(experiment_figure *f, size_t panel, const experiment *ex,
                        const experiment_result *results, unsigned group)
{
    ExperimentPlotPanel *p = &f->panels[panel];
    *p = (ExperimentPlotPanel){
        .title = "Validation loss against training FLOPs",
        .x_label = "training FLOPs",
        .y_label = "validation loss (nats per byte)",
        .log_x = true,
        .x_numbers = PLOT_NUMBER_SCIENTIFIC,
        .empty_text = "No evaluations yet",
        .legend_below = true,
    };
    /* The ablations' curves in the order of what they vary, so the legend reads as a scale. */
    int order[EXPERIMENT_MAX_VARIANTS];
    int n = 0;
    for (int i = 0; i < ex->n_variants; i++) {
        if (!(ex->variants[i].groups & group))
            continue;
        int at = n++;
        while (group != EXPERIMENT_GROUP_METHODS && at > 0 &&
               ablation_key(&ex->variants[order[at - 1]]) > ablation_key(&ex->variants[i])) {
            order[at] = order[at - 1];
            at--;
        }
        order[at] = i;
    }
    unsigned color = 0;
    for (int m = 0; m < n; m++) {
        int i = order[m];
        const experiment_variant *v = &ex->variants[i];
        const experiment_result *r = &results[i];
        /* The methods keep their colours; other groups count through the palette. */
        unsigned c = group == EXPERIMENT_GROUP_METHODS ? method_color(v) : color++;
        char name[EXPERIMENT_LABEL_SIZE];
        short_name(v, group, name, sizeof name);
        ExperimentPlotSeries *s = add_series(f, panel, name, c, (size_t)r->n_points);
        if (!s)
            break;
        double *x = (double *)s->x, *y = (double *)s->y;
        for (int k = 0; k < r->n_points; k++) {
            x[k] = r->points[k].flops;
            y[k] = r->points[k].loss;
        }
        s->n = (size_t)r->n_points;
    }
}

/* The dense variant's final perplexity as a reference level, when it is done. */
static void dense_reference(experiment_figure *f, size_t panel, const experiment *ex,
                            const experiment_result *results)
{
    for (int i = 0; i < ex->n_variants; i++) {
        if (ex->variants[i].method != EXPERIMENT_METHOD_DENSE ||
            results[i].status != EXPERIMENT_DONE)
            continue;
        ExperimentPlotSeries *s = add_series(f, panel, "Dense", COLOR_DENSE, 1);
        if (!s)
            return;
        ((double *)s->y)[0] = results[i].perplexity;
        ((double *)s->x)[0] = NAN;
        s->n = 1;
        s->horizontal = true;
        s->dashed = true;
        return;
    }
}

typedef struct {
    double x, y;
} point;

static int compare_points(const void *a, const void *b)
{
    double x = ((const point *)a)->x, y = ((const point *)b)->x;
    return x < y ? -1 : x > y;
}

/* Perplexity against x (N or h·k) for the PEER variants of group with one query norm. */
static void perplexity_series(experiment_figure *f, size_t panel, const experiment *ex,
                              const experiment_result *results, unsigned group,
                              peer_query_norm norm, bool by_experts, const char *name,
                              unsigned color)
{
    point points[EXPERIMENT_MAX_VARIANTS];
    size_t n = 0;
    for (int i = 0; i < ex->n_variants; i++) {
        const experiment_variant *v = &ex->variants[i];
        if (!(v->groups & group) || v->method != EXPERIMENT_METHOD_PEER || v->query_norm != norm ||
            results[i].status != EXPERIMENT_DONE)
            continue;
        points[n++] = (point){ by_experts ? v->n_experts : v->heads * v->topk,
                               results[i].perplexity };
    }
    if (n == 0)
        return;
    qsort(points, n, sizeof *points, compare_points);
    ExperimentPlotSeries *s = add_series(f, panel, name, color, n);
    if (!s)
        return;
    for (size_t k = 0; k < n; k++) {
        ((double *)s->x)[k] = points[k].x;
        ((double *)s->y)[k] = points[k].y;
    }
    s->n = n;
}

static void experts_panel(experiment_figure *f, size_t panel, const experiment *ex,
                          const experiment_result *results)
{
    ExperimentPlotPanel *p = &f->panels[panel];
    *p = (ExperimentPlotPanel){
        .title = "Final perplexity against the number of experts",
        .x_label = "experts N (h·k fixed)",
        .y_label = "validation perplexity",
        .log_x = true,
        .x_squares = true,
        .x_data_ticks = true,
        .empty_text = "No finished PEER variant yet",
    };
    unsigned groups = EXPERIMENT_GROUP_EXPERTS | EXPERIMENT_GROUP_NORM;
    perplexity_series(f, panel, ex, results, groups, PEER_NORM_BATCH, true, "PEER, batch norm",
                      COLOR_PEER);
    perplexity_series(f, panel, ex, results, groups, PEER_NORM_LAYER, true, "PEER, layer norm",
                      COLOR_LAYER_NORM);
    perplexity_series(f, panel, ex, results, groups, PEER_NORM_NONE, true, "PEER, no query norm",
                      COLOR_NO_NORM);
    dense_reference(f, panel, ex, results);
}

static void active_panel(experiment_figure *f, size_t panel, const experiment *ex,
                         const experiment_result *results)
{
    ExperimentPlotPanel *p = &f->panels[panel];
    *p = (ExperimentPlotPanel){
        .title = "Final perplexity against the active experts",
        .x_label = "active experts h·k (N fixed)",
        .y_label = "validation perplexity",
        .log_x = true,
        .x_numbers = PLOT_NUMBER_PLAIN,
        .x_data_ticks = true,
        .empty_text = "No finished PEER variant yet",
    };
    perplexity_series(f, panel, ex, results, EXPERIMENT_GROUP_ACTIVE, PEER_NORM_BATCH, false,
                      "PEER", COLOR_PEER);
    dense_reference(f, panel, ex, results);
}

experiment_figure *experiment_figure_new(const experiment *ex, const experiment_result *results,
                                         experiment_figure_kind kind, unsigned group)
{
    experiment_figure *f = g_new0(experiment_figure, 1);
    /* Every series of every panel fits: a curve per variant, or one point per variant. */
    f->capacity = (size_t)MAX_PANELS * MAX_SERIES * 2 * (EXPERIMENT_MAX_CURVE_POINTS +
                                                        EXPERIMENT_MAX_VARIANTS);
    f->values = g_new0(double, f->capacity);
    switch (kind) {
    case EXPERIMENT_FIGURE_OVERVIEW:
        flops_panel(f, 0, ex, results, EXPERIMENT_GROUP_METHODS);
        experts_panel(f, 1, ex, results);
        f->n_panels = 2;
        break;
    case EXPERIMENT_FIGURE_FLOPS:
        flops_panel(f, 0, ex, results, group ? group : EXPERIMENT_GROUP_METHODS);
        f->n_panels = 1;
        break;
    case EXPERIMENT_FIGURE_EXPERTS:
        experts_panel(f, 0, ex, results);
        f->n_panels = 1;
        break;
    case EXPERIMENT_FIGURE_ACTIVE:
        active_panel(f, 0, ex, results);
        f->n_panels = 1;
        break;
    }
    return f;
}

void experiment_figure_free(experiment_figure *figure)
{
    if (!figure)
        return;
    g_free(figure->values);
    g_free(figure);
}

const ExperimentPlotPanel *experiment_figure_get_panels(const experiment_figure *figure,
                                                        size_t *n_panels)
{
    *n_panels = figure->n_panels;
    return figure->panels;
}
