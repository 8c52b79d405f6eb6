/* An experiment's results as plots (experiment-plot-render.h): validation loss against training
 * FLOPs for a group of variants, from each variant's evaluations along its run (a variant still
 * training shows the points it has), and final perplexity against the number of experts and
 * against the active experts h·k, with the dense baseline as a reference level. The Experiments
 * page and peer-experiment plot draw the same figures. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "experiment-plot-render.h"
#include "experiment-results.h"
#include "experiment.h"

typedef enum {
    EXPERIMENT_FIGURE_OVERVIEW, /* the methods' curves beside perplexity against N */
    EXPERIMENT_FIGURE_FLOPS,    /* one group's curves */
    EXPERIMENT_FIGURE_EXPERTS,  /* perplexity against N, a line per query norm */
    EXPERIMENT_FIGURE_ACTIVE,   /* perplexity against h·k */
} experiment_figure_kind;

/* "overview", "flops", "experts", "active"; false for another name. */
bool experiment_figure_kind_from_name(const char *name, experiment_figure_kind *kind);
/* "methods", "experts", "active", "norm" to the group's bit; false for another name. */
bool experiment_figure_group_from_name(const char *name, unsigned *group);

typedef struct experiment_figure experiment_figure;

/* The figure of kind for ex's variants and their results (ex->n_variants of them; copied).
 * group chooses the variants of a FLOPS figure (EXPERIMENT_GROUP_METHODS when 0). */
experiment_figure *experiment_figure_new(const experiment *ex, const experiment_result *results,
                                         experiment_figure_kind kind, unsigned group);
void experiment_figure_free(experiment_figure *figure);
const ExperimentPlotPanel *experiment_figure_get_panels(const experiment_figure *figure,
                                                        size_t *n_panels);
