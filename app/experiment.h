/* Experiments that test the paper's claims at equal training compute. A suite derives model
 * variants from one base run:
 *   - methods: the middle block's feed-forward layer as a dense FFN, a mixture of experts, a
 *     product-key memory (PKM) or a PEER layer, and PEER in every block;
 *   - the number of experts N at a fixed number of active experts h·k;
 *   - h·k at a fixed N (k fixed, the heads h varied);
 *   - the query norm: batch, layer or none (at every N in the full suite, as the paper's Table 2).
 * Each variant trains for as many steps as the budget of training FLOPs buys it (the trainer's
 * count: three forwards per step), with the base run's learning-rate schedule stretched over
 * those steps, and is evaluated on the validation text along the way and at the end.
 *
 * This file defines suites and variants and the experiment folder's definition file;
 * experiment-runner.h trains the variants and experiment-results.h tabulates what they gave. */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>

#include "model-config.h"
#include "peer-error.h"
#include "trainer.h"

typedef enum {
    EXPERIMENT_METHOD_DENSE,
    EXPERIMENT_METHOD_MOE,
    EXPERIMENT_METHOD_PKM,
    EXPERIMENT_METHOD_PEER,     /* the middle block only */
    EXPERIMENT_METHOD_PEER_ALL, /* every block */
} experiment_method;

/* The comparisons a variant takes part in (bits; one variant may serve several). */
enum {
    EXPERIMENT_GROUP_METHODS = 1 << 0,
    EXPERIMENT_GROUP_EXPERTS = 1 << 1, /* N at fixed h·k */
    EXPERIMENT_GROUP_ACTIVE = 1 << 2,  /* h·k at fixed N */
    EXPERIMENT_GROUP_NORM = 1 << 3,    /* query norm (at one or every N) */
};

#define EXPERIMENT_MAX_VARIANTS 40
#define EXPERIMENT_NAME_SIZE 48
#define EXPERIMENT_LABEL_SIZE 64

/* The folder's files. */
#define EXPERIMENT_DEFINITION_FILE "experiment.json"
#define EXPERIMENT_VARIANTS_FOLDER "variants"

typedef struct {
    char name[EXPERIMENT_NAME_SIZE];   /* its folder and key: "dense", "peer-n16384-h8-k8-batch" */
    char label[EXPERIMENT_LABEL_SIZE]; /* for tables and legends: "PEER 128² h=8 k=8" */
    experiment_method method;
    unsigned groups;
    model_config cfg;
    train_settings settings;  /* the base run's, with steps, warm-up and evaluations set */
    double flops_per_step;    /* the trainer's count */
    double flops;             /* steps × flops_per_step */
    size_t params;            /* every parameter, embeddings included */
    size_t active_params;     /* those one token uses */
    /* The retrieval layer's shape (PEER and PKM variants; 0 otherwise). */
    int n_experts, heads, topk;
    peer_query_norm query_norm;
} experiment_variant;

typedef struct {
    const char *name;
    const char *summary;
    const char *base_preset;   /* the default base: a built-in run, or NULL for the tiny model */
    double budget;             /* default training FLOPs per variant */
    int curve_points;          /* evaluations along each run, the last at its end */
    int curve_windows;         /* validation windows of those */
    int final_windows;         /* validation windows of the final evaluation (the tables) */
    int expert_sides[8];       /* √N of the expert-count ablation, 0-terminated */
    int heads[8];              /* h of the active-expert ablation, 0-terminated */
    bool norm_at_every_size;   /* the query-norm ablation at every N, not only the base's */
} experiment_suite;

/* "tiny", "quick" or "full"; NULL when there is no such suite. */
const experiment_suite *experiment_suite_find(const char *name);
/* "tiny, quick, full", for messages. */
const char *experiment_suite_names(void);

/* The tiny suite's base: a 3-block model of width 32 on sequences of 32 bytes, a few steps per
 * variant; for tests and a first look. */
bool experiment_tiny_base(model_config *cfg, train_settings *settings, peer_error *err);

typedef struct {
    char suite[16];
    double budget;
    char *base_name;           /* a preset's name or the run file's path, for people */
    char *base_json;           /* the base run file as used: {"model": ..., "training": ...} */
    char *text_path;           /* absolute; NULL for the built-in corpus */
    char *text_sha256;         /* of the training text, so a resume refuses another text */
    int curve_points, curve_windows, final_windows;
    int middle;                /* the block whose FFN the methods replace */
    int n_variants;
    experiment_variant *variants; /* (n_variants) */
} experiment;

/* A suite's variants from a base run (its config and training settings), at budget FLOPs per
 * variant. Fails, naming the problem, when the budget buys no step or the base cannot take the
 * suite's shapes (too few blocks, sequences too short for an evaluation). */
experiment *experiment_new(const experiment_suite *suite, const model_config *base_cfg,
                           const train_settings *base_settings, const char *base_name,
                           double budget, peer_error *err);
void experiment_free(experiment *ex);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(experiment, experiment_free)

/* The index of the variant called name, or -1. */
int experiment_find_variant(const experiment *ex, const char *name);

/* "Dense", "MoE", "PKM", "PEER", "PEER (every block)". */
const char *experiment_method_label(experiment_method method);
/* "dense", "moe", "pkm", "peer", "peer-all". */
const char *experiment_method_name(experiment_method method);

/* The definition file (suite, budget, base run, text): written once when a folder is first
 * used, read back to continue or tabulate; the variants are derived again from it. */
bool experiment_save_definition(const experiment *ex, const char *dir, peer_error *err);
experiment *experiment_load_definition(const char *dir, peer_error *err);

#define EXPERIMENT_MAX_CURVE_POINTS 32
/* The steps at which a variant is evaluated along its run, ascending, the last one its end: from
 * a thirty-second of the run on, evenly on a log scale, none twice. Returns how many (at most
 * EXPERIMENT_MAX_CURVE_POINTS). */
int experiment_curve_steps(const experiment *ex, const experiment_variant *v, long *steps);

/* DIR/variants/NAME. g_free it. */
char *experiment_variant_dir(const char *dir, const experiment_variant *variant);

/* Writes contents to path atomically: a temporary file beside it, flushed to disk, renamed over
 * it. */
bool experiment_write_file(const char *path, const char *contents, size_t length,
                           peer_error *err);
