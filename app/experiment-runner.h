/* Trains an experiment's variants, one after another, each in a folder of its own under
 * DIR/variants/ laid out as peer-train's run folders (config.json, log.jsonl, model.safetensors
 * and the trainer file beside it), so peer-eval and the workbench open them too.
 *
 * Stopping is safe at any step: the variant under way saves a checkpoint, and the next run of the
 * same folder skips the finished variants and continues that one where it stopped, with the same
 * result as if it had never stopped. A variant whose loss diverges gets a failed result and the
 * others go on. After each variant the results files (experiment-results.h) are written again. */
#pragma once

#include <gio/gio.h>
#include <stdbool.h>

#include "experiment-results.h"
#include "experiment.h"
#include "thread-pool.h"

typedef enum {
    EXPERIMENT_EVENT_SKIPPED,   /* a variant already finished: result */
    EXPERIMENT_EVENT_STARTED,   /* a variant starts, or resumes at step */
    EXPERIMENT_EVENT_STEP,      /* a training step */
    EXPERIMENT_EVENT_EVALUATED, /* an evaluation along the run: point */
    EXPERIMENT_EVENT_FINISHED,  /* a variant's final evaluation, or its failure: result */
    EXPERIMENT_EVENT_STOPPED,   /* the run stopped at step, its checkpoint saved */
} experiment_event_kind;

typedef struct {
    experiment_event_kind kind;
    int variant;              /* index into the experiment's variants */
    long step, steps;         /* of that variant */
    double train_loss;        /* STEP: the step's loss */
    double tokens_per_second; /* STEP: over recent steps */
    double suite_flops_done;  /* every variant's training FLOPs so far, finished ones included */
    double suite_flops_total;
    experiment_point point;          /* EVALUATED */
    const experiment_result *result; /* SKIPPED, FINISHED; valid during the call */
} experiment_event;

typedef struct {
    thread_pool *pool;
    GBytes *text;               /* the training text (its first 90 % trains, the rest validates) */
    const char *text_name;
    /* Called on the thread that runs the experiment. */
    void (*on_event)(const experiment_event *event, void *user_data);
    /* Asked before every step; true stops the run there, resumably. */
    bool (*should_stop)(void *user_data);
    void *user_data;
    long step_limit;            /* > 0: stop, resumably, after this many steps in this call */
    const char *const *only;    /* NULL-terminated names of the variants to run; NULL: all */
    double checkpoint_seconds;  /* training time between checkpoints; 0: 120 s */
} experiment_run_options;

typedef enum {
    EXPERIMENT_RUN_COMPLETE, /* every variant asked for has a result (some may have failed) */
    EXPERIMENT_RUN_STOPPED,  /* stopped by should_stop or step_limit; run it again to go on */
    EXPERIMENT_RUN_ERROR,    /* err says why: an unwritable folder, a foreign checkpoint */
} experiment_run_status;

experiment_run_status experiment_run(const experiment *ex, const char *dir,
                                     const experiment_run_options *options, peer_error *err);

/* The experiment in dir, or a new one there. With a definition file present, suite_name, base
 * and budget (each optional: NULL, NULL, 0) must agree with it, else *usage is set and err says
 * what differs. Without one, they define it (defaults: the quick suite, the suite's base and
 * budget) and the definition is saved. base is a built-in run's name or a run file's path.
 * text_path (NULL: the one the experiment was started with, else the built-in corpus) names the
 * training text; *text and *text_name receive it, checked against the experiment's checksum. */
experiment *experiment_open(const char *dir, const char *suite_name, const char *base,
                            double budget, const char *text_path, GBytes **text,
                            char **text_name, bool *usage, peer_error *err);
