#include "expert-grid-csv.h"

#include <math.h>

static void add_value(PlotCsv *csv, const float *values, int expert)
{
    if (values && !isnan(values[expert]))
        plot_csv_add_float(csv, values[expert]);
    else
        plot_csv_add_empty(csv);
}

void expert_grid_csv_add(PlotCsv *csv, int side, const float *selections,
                         const float *gate_mass, const float *mean_activation)
{
    static const char *const columns[] = {"expert",    "row",       "column",
                                          "selections", "gate_mass", "mean_activation"};
    for (size_t i = 0; i < sizeof columns / sizeof columns[0]; i++)
        plot_csv_add_text(csv, columns[i]);
    plot_csv_end_row(csv);
    for (int a = 0; a < side; a++) {
        for (int b = 0; b < side; b++) {
            int expert = a * side + b;
            plot_csv_add_int(csv, expert);
            plot_csv_add_int(csv, a);
            plot_csv_add_int(csv, b);
            add_value(csv, selections, expert);
            add_value(csv, gate_mass, expert);
            add_value(csv, mean_activation, expert);
            plot_csv_end_row(csv);
        }
    }
}
