#include "loss-csv.h"

#include "session.h"

void loss_csv_add_header(PlotCsv *csv)
{
    static const char *const columns[] = {"run",  "split", "step", "tokens",   "flops",
                                          "seconds", "loss", "lr", "grad_norm"};
    for (gsize i = 0; i < G_N_ELEMENTS(columns); i++)
        plot_csv_add_text(csv, columns[i]);
    plot_csv_end_row(csv);
}

void loss_csv_add_run(PlotCsv *csv, const char *run, GArray *loss_points, GArray *eval_points)
{
    for (guint i = 0; loss_points && i < loss_points->len; i++) {
        const PeerLossPoint *p = &g_array_index(loss_points, PeerLossPoint, i);
        plot_csv_add_text(csv, run);
        plot_csv_add_text(csv, "train");
        plot_csv_add_int(csv, p->step);
        plot_csv_add_double(csv, p->tokens);
        plot_csv_add_double(csv, p->flops);
        plot_csv_add_double(csv, p->seconds);
        plot_csv_add_double(csv, p->loss);
        plot_csv_add_double(csv, p->lr);
        plot_csv_add_double(csv, p->grad_norm);
        plot_csv_end_row(csv);
    }
    for (guint i = 0; eval_points && i < eval_points->len; i++) {
        const PeerEvalPoint *p = &g_array_index(eval_points, PeerEvalPoint, i);
        plot_csv_add_text(csv, run);
        plot_csv_add_text(csv, "validation");
        plot_csv_add_int(csv, p->step);
        plot_csv_add_double(csv, p->tokens);
        plot_csv_add_double(csv, p->flops);
        plot_csv_add_empty(csv);
        plot_csv_add_double(csv, p->loss);
        plot_csv_add_empty(csv);
        plot_csv_add_empty(csv);
        plot_csv_end_row(csv);
    }
}
