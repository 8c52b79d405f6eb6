/* What an experiment's variants gave, read back from its folder: each finished variant's
 * result file (its final evaluation and its curve), and for a variant still under way the
 * evaluations of its run log. Written out as results.json, results.csv and results.md (the
 * tables: methods at equal compute as the paper's Table 1, expert usage and unevenness per query
 * norm and per N as its Table 2, and the two ablations). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "experiment.h"
#include "peer-error.h"

#define EXPERIMENT_RESULT_FILE "result.json"
/* Beside a stopped variant's checkpoint: its step and the training time behind it. */
#define EXPERIMENT_PROGRESS_FILE "progress.json"
#define EXPERIMENT_RESULTS_JSON "results.json"
#define EXPERIMENT_RESULTS_CSV "results.csv"
#define EXPERIMENT_RESULTS_MARKDOWN "results.md"

typedef enum {
    EXPERIMENT_PENDING,  /* not started */
    EXPERIMENT_PARTIAL,  /* started, not finished (running, or stopped to be resumed) */
    EXPERIMENT_DONE,
    EXPERIMENT_FAILED,   /* diverged; message says how */
} experiment_status;

const char *experiment_status_name(experiment_status status); /* "pending", "partial", ... */

/* One evaluation along a run. */
typedef struct {
    long step;
    double flops; /* training FLOPs spent by then */
    double loss;  /* validation loss, nats per byte */
} experiment_point;

typedef struct {
    experiment_status status;
    long step;              /* steps trained */
    double train_seconds;   /* wall time in training steps and evaluations, every session */
    /* The final evaluation (DONE): on the suite's final validation windows. */
    double loss, bits_per_byte, perplexity;
    long eval_tokens;
    /* The middle block's experts or memories (PEER and PKM variants), else NAN. */
    double usage;           /* fraction in [0, 1] */
    double unevenness;      /* nats */
    int64_t dead;
    int n_points;
    experiment_point points[EXPERIMENT_MAX_CURVE_POINTS];
    char message[256];      /* FAILED: why */
} experiment_result;

typedef struct {
    const experiment *ex;        /* borrowed */
    experiment_result *results;  /* (ex->n_variants) */
} experiment_results;

/* Reads every variant's state from dir. Unreadable result files are errors that name them. */
experiment_results *experiment_results_load(const experiment *ex, const char *dir,
                                            peer_error *err);
void experiment_results_free(experiment_results *r);

/* A variant's curve from its run log (evaluation lines, the later of two at one step), at most
 * EXPERIMENT_MAX_CURVE_POINTS; steps beyond max_step (>= 0) are left out. Returns the count, 0
 * when the log does not exist. */
int experiment_read_curve(const char *log_path, double flops_per_step, long max_step,
                          experiment_point *points, long *last_step);

/* Writes a variant's result file. */
bool experiment_result_save(const experiment_result *result, const experiment_variant *v,
                            const char *path, peer_error *err);
bool experiment_result_load(experiment_result *result, const char *path, peer_error *err);

/* The tables as Markdown: a heading per table (level 2), a line saying what was run. g_free. */
char *experiment_results_markdown(const experiment_results *r);
/* One row per variant, every number. g_free. */
char *experiment_results_csv(const experiment_results *r);
/* The definition, each variant's shape and result, and the curves. g_free. */
char *experiment_results_json(const experiment_results *r);

/* results.json, results.csv and results.md in dir, each written atomically. */
bool experiment_results_write(const experiment_results *r, const char *dir, peer_error *err);
