/* The machine-readable log of a training run: JSON lines, one object per logged step
 *   {"type":"step","step","loss","lr","grad_norm","tokens","flops","tokens_per_second","time"}
 * and per evaluation
 *   {"type":"eval","step","loss","bits_per_byte","perplexity","tokens","layers":[...]}
 * (the layers as eval-report.h has them). Each line is flushed as it is written, so another
 * program can follow the run. time is seconds since this process started training. */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "peer-error.h"
#include "trainer.h"

typedef struct {
    FILE *file;
    char *path;
} run_log;

/* append keeps the lines of an earlier run (a resumed run continues its log). */
bool run_log_open(run_log *log, const char *path, bool append, peer_error *err);
void run_log_close(run_log *log);

bool run_log_write_step(run_log *log, const trainer *tr, double tokens_per_second, double time,
                        peer_error *err);
bool run_log_write_eval(run_log *log, long step, const model_config *cfg,
                        const eval_result *result, peer_error *err);
