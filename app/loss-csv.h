/* The loss series of runs as one CSV file: what the Training page's export and peer-plot loss
 * write. One header row, then for each run its training steps and then its evaluations:
 *
 *   run,split,step,tokens,flops,seconds,loss,lr,grad_norm
 *   peer-small,train,10,20480,4718592000,1.25,4.12,0.0006,0.83
 *   ...
 *   peer-small,validation,100,204800,47185920000,,2.54,,
 *
 * split is "train" for a logged training step and "validation" for an evaluation on the held-out
 * text, whose loss is the validation loss and which has no time, learning rate or gradient norm
 * (empty fields). Losses are in nats per token; tokens and FLOPs are those trained on up to the
 * step; seconds since the run started training. One file with a split column rather than two,
 * so that a run's curves stay together and one read (pandas, R) gets them all. Numbers are
 * exact (plot-export.h). */
#pragma once

#include <glib.h>

#include "plot-export.h"

/* The header row. */
void loss_csv_add_header(PlotCsv *csv);
/* A run's rows: loss_points (PeerLossPoint) and eval_points (PeerEvalPoint, may be NULL). */
void loss_csv_add_run(PlotCsv *csv, const char *run, GArray *loss_points, GArray *eval_points);
