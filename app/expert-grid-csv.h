/* The expert heat map's grid as CSV: what the Experts page's export and peer-plot heatmap
 * write. One row per expert, in expert order:
 *
 *   expert,row,column,selections,gate_mass,mean_activation
 *   0,0,0,412,37.5,0.81
 *   1,0,1,0,0,
 *
 * expert a·n + b sits at row a (its sub-key from C) and column b (from C′), as on the map.
 * selections and gate_mass (the paper's z′) sum over the tokens measured; mean_activation is
 * empty for an expert never selected. One row per expert rather than an n × n matrix so that all
 * three measures travel together and a reader needs no knowledge of the layout; numbers are
 * exact (plot-export.h). */
#pragma once

#include "plot-export.h"

/* The header row and a row per expert of the side × side grid; any array may be NULL, which
 * leaves its column empty. */
void expert_grid_csv_add(PlotCsv *csv, int side, const float *selections,
                         const float *gate_mass, const float *mean_activation);
