#include "train-cli.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "cli-common.h"
#include "eval-report.h"
#include "json-output.h"
#include "model-grow.h"
#include "progress-bar.h"
#include "run-inputs.h"
#include "run-log.h"
#include "sampler.h"
#include "trainer.h"

#define DEFAULT_LOG_INTERVAL 10
#define MAX_STEPS 1000000000L
#define MAX_SAMPLE_BYTES 100000
#define SAMPLE_PROMPT "It is a truth universally acknowledged"
#define SAMPLE_TEMPERATURE 0.8f
/* Its own stream, so sampling never shifts the batches of a run. */
#define SAMPLE_SEED_MIX 0x5a3b1e5ca9d1f00dull

/* The shell's status for a program stopped by SIGINT. */
#define EXIT_INTERRUPTED 130

#define RUN_CONFIG_FILE "config.json"
#define RUN_LOG_FILE "log.jsonl"
#define RUN_MODEL_FILE "model.safetensors"

/* The options as typed: numbers stay text until they are checked, so a bad one gets a message
 * naming it, and an option left out is NULL. */
typedef struct {
    char *config;
    char *preset;
    char *text;
    char *save;
    char *resume;
    char *run_dir;
    char *steps;
    char *batch_size;
    char *seq_len;
    char *lr;
    char *min_lr;
    char *warmup;
    char *expert_lr;
    char *seed;
    char *threads;
    char *eval_interval;
    char *eval_windows;
    char *save_interval;
    char *log_interval;
    char *sample;
    char **grow;                 /* "[LAYER:]EXPERTS", one per --grow */
    gboolean freeze_old_experts;
} train_options;

static void train_options_clear(train_options *o)
{
    char **fields[] = { &o->config, &o->preset, &o->text, &o->save, &o->resume, &o->run_dir,
                        &o->steps, &o->batch_size, &o->seq_len, &o->lr, &o->min_lr, &o->warmup,
                        &o->expert_lr, &o->seed, &o->threads, &o->eval_interval,
                        &o->eval_windows, &o->save_interval, &o->log_interval, &o->sample };
    for (size_t i = 0; i < G_N_ELEMENTS(fields); i++)
        g_clear_pointer(fields[i], g_free);
    g_clear_pointer(&o->grow, g_strfreev);
}

/* The settings the options change, checked; the rest of the run file stays. */
typedef struct {
    long steps;
    int batch_size;
    int seq_len;
    double lr;
    double min_lr;
    long warmup;
    double expert_lr;
    uint64_t seed;
    long eval_interval;
    int eval_windows;
    long save_interval;
    long log_interval;
    int sample_bytes;
} option_values;

typedef struct {
    const train_cli_defaults *defaults;
    thread_pool *pool;
    GBytes *text;
    char *text_name;
    corpus data;
    trainer tr;
    bool have_trainer;
    const char *source; /* where the config came from, for the header */
    model_config grown_from; /* the resumed model's config before --grow */
    bool grown;
    bool frozen;

    char *save_path;    /* --save, or NULL */
    char *run_dir;      /* --run-dir, or NULL */
    run_log log;
    progress_bar bar;
    bool plain_lines;   /* step lines on stdout (no bar shares the terminal with them) */
    long save_interval;
    long log_interval;
    int eval_windows;   /* what the validation text holds, at most the setting */
    int sample_bytes;
    peer_rng sample_rng;

    gint64 started;          /* µs, monotonic */
    long first_step;         /* tr.step when this process began */
    double first_tokens, first_flops;
    gint64 train_us;         /* in trainer_step, this process */
    gint64 log_train_us;     /* since the last logged step */
    double log_tokens;
} train_run;

/* Help texts with numbers in them; the option context points at them until it is freed. */
typedef struct {
    char *preset;
    char *threads;
    char *sample;
    char *log;
} help_texts;

static void help_texts_clear(help_texts *h)
{
    g_clear_pointer(&h->preset, g_free);
    g_clear_pointer(&h->threads, g_free);
    g_clear_pointer(&h->sample, g_free);
    g_clear_pointer(&h->log, g_free);
}

static GOptionContext *new_option_context(const train_cli_defaults *defaults, train_options *o,
                                          help_texts *help)
{
    g_autofree char *presets = run_inputs_list_presets();
    help->preset =
        g_strdup_printf("A built-in run: %s (default %s)", presets, RUN_INPUTS_DEFAULT_PRESET);
    help->threads = g_strdup_printf(
        "Worker threads (default %d, the processors this process may use)",
        thread_pool_default_threads());
    help->sample = g_strdup_printf(
        "Bytes of text to generate at each evaluation, after the prompt “%s” (default %d)",
        SAMPLE_PROMPT, defaults->sample_bytes);
    help->log = g_strdup_printf("Steps between log lines and run-log entries (default %d)",
                                DEFAULT_LOG_INTERVAL);
    GOptionEntry entries[] = {
        { "config", 'c', 0, G_OPTION_ARG_FILENAME, &o->config,
          "A run file: {\"model\": <config>, \"training\": <settings>}", "FILE" },
        { "preset", 'p', 0, G_OPTION_ARG_STRING, &o->preset, help->preset, "NAME" },
        { "text", 0, 0, G_OPTION_ARG_FILENAME, &o->text,
          "UTF-8 text to train on (default: Jane Austen's six novels, built in)", "FILE" },
        { "steps", 's', 0, G_OPTION_ARG_STRING, &o->steps,
          "Length of the run in steps; with --resume, the new total", "N" },
        { "batch-size", 'b', 0, G_OPTION_ARG_STRING, &o->batch_size,
          "Sequences per step", "B" },
        { "seq-len", 0, 0, G_OPTION_ARG_STRING, &o->seq_len,
          "Bytes per sequence, at most the model's context", "T" },
        { "lr", 0, 0, G_OPTION_ARG_STRING, &o->lr,
          "Peak learning rate of the dense parameters; the floor keeps its ratio to it unless "
          "--min-lr is given", "X" },
        { "min-lr", 0, 0, G_OPTION_ARG_STRING, &o->min_lr,
          "Floor of the cosine decay", "X" },
        { "warmup", 0, 0, G_OPTION_ARG_STRING, &o->warmup, "Steps of linear warm-up", "N" },
        { "expert-lr", 0, 0, G_OPTION_ARG_STRING, &o->expert_lr,
          "Learning rate of the expert and memory tables (sparse Adam, constant)", "X" },
        { "seed", 0, 0, G_OPTION_ARG_STRING, &o->seed,
          "Seed of the initial weights and the batch order", "S" },
        { "threads", 't', 0, G_OPTION_ARG_STRING, &o->threads, help->threads, "N" },
        { "eval-interval", 0, 0, G_OPTION_ARG_STRING, &o->eval_interval,
          "Steps between evaluations, 0 for only at the end", "N" },
        { "eval-windows", 0, 0, G_OPTION_ARG_STRING, &o->eval_windows,
          "Validation windows per evaluation", "W" },
        { "log-interval", 0, 0, G_OPTION_ARG_STRING, &o->log_interval, help->log, "N" },
        { "save", 0, 0, G_OPTION_ARG_FILENAME, &o->save,
          "Save the model to FILE and the optimiser state beside it (FILE without "
          ".safetensors + .trainer.safetensors) at the end", "FILE" },
        { "save-interval", 0, 0, G_OPTION_ARG_STRING, &o->save_interval,
          "Also save every N steps (to --save and --run-dir)", "N" },
        { "resume", 'r', 0, G_OPTION_ARG_FILENAME, &o->resume,
          "Continue the run saved in FILE and its trainer file", "FILE" },
        { "run-dir", 'o', 0, G_OPTION_ARG_FILENAME, &o->run_dir,
          "Write DIR/config.json, the JSON-lines log DIR/log.jsonl and, at the end, "
          "DIR/model.safetensors", "DIR" },
        { "sample", 0, 0, G_OPTION_ARG_STRING, &o->sample, help->sample, "N" },
        { "grow", 0, 0, G_OPTION_ARG_STRING_ARRAY, &o->grow,
          "With --resume: grow layer LAYER's expert grid to EXPERTS = n'² experts (n' sub-keys "
          "per side, at least its n), keeping every expert; without LAYER, every PEER and PKM "
          "layer. Repeat for several layers", "[LAYER:]EXPERTS" },
        { "freeze-old-experts", 0, 0, G_OPTION_ARG_NONE, &o->freeze_old_experts,
          "With --grow: train only the new experts and sub-keys of a grown layer, holding the "
          "ones it had, for this run (a later --resume trains them all)", NULL },
        G_OPTION_ENTRY_NULL,
    };
    GOptionContext *context = g_option_context_new(NULL);
    g_option_context_set_summary(context, defaults->summary);
    g_option_context_set_description(
        context,
        "The run file gives the model (the checkpoint contract's config) and its training\n"
        "settings; the options above override the settings. Progress goes to the terminal as a\n"
        "bar, or as plain lines when the output is not a terminal; evaluations report the\n"
        "validation loss and, for every PEER and PKM layer, expert usage and unevenness.\n"
        "\n"
        "Exit status: 0 done, 1 failed (unreadable input, diverged run), 2 bad command line.");
    g_option_context_add_main_entries(context, entries, NULL);
    return context;
}

/* One --grow: "LAYER:EXPERTS", or "EXPERTS" for every PEER and PKM layer (layer -1). EXPERTS
 * must be a square; whether the layer can grow to it is checked against the model. */
static bool parse_grow(const char *text, int *layer, int *experts)
{
    const char *colon = strchr(text, ':');
    g_autofree char *layer_text = colon ? g_strndup(text, (gsize)(colon - text)) : NULL;
    *layer = -1;
    if (colon && !cli_parse_int("--grow LAYER", layer_text, 0, MODEL_MAX_LAYERS - 1, layer))
        return false;
    if (!cli_parse_int("--grow EXPERTS", colon ? colon + 1 : text, 1, 1 << 30, experts))
        return false;
    int side = (int)sqrt((double)*experts);
    while ((long long)side * side > *experts)
        side--;
    while ((long long)(side + 1) * (side + 1) <= *experts)
        side++;
    if (side * side != *experts) {
        cli_usage_error("--grow %s: %d experts do not make a square grid (product keys index n' × "
                        "n' experts): use %d (%d²) or %lld (%d²)",
                        text, *experts, side * side, side, (long long)(side + 1) * (side + 1),
                        side + 1);
        return false;
    }
    return true;
}

/* The growth the --grow options ask of a model; names a layer that cannot grow so. */
static bool growth_from_options(const train_options *o, const model_config *cfg,
                                model_growth *growth)
{
    memset(growth, 0, sizeof *growth);
    bool named[MODEL_MAX_LAYERS] = { false };
    for (char **spec = o->grow; spec && *spec; spec++) {
        int layer = -1, experts = 0;
        if (!parse_grow(*spec, &layer, &experts))
            return false;
        int side = (int)lround(sqrt((double)experts));
        if (layer >= cfg->n_layers) {
            cli_usage_error("--grow %s: the model has layers 0 to %d", *spec, cfg->n_layers - 1);
            return false;
        }
        int grown_layers = 0;
        for (int l = 0; l < cfg->n_layers; l++) {
            ffn_kind kind = cfg->layers[l].kind;
            bool expert_grid = kind == FFN_PEER || kind == FFN_PKM;
            if (layer >= 0 ? l != layer : !expert_grid)
                continue;
            if (named[l]) {
                cli_usage_error("--grow names layer %d more than once: give one size per layer", l);
                return false;
            }
            named[l] = true;
            growth->side[l] = side;
            grown_layers++;
        }
        if (grown_layers == 0) {
            cli_usage_error("--grow %s: the model has no PEER or PKM layer to grow", *spec);
            return false;
        }
    }
    model_config grown;
    peer_error err = { 0 };
    if (!model_growth_config(cfg, growth, &grown, &err)) {
        cli_usage_error("--grow: %s", err.message);
        return false;
    }
    return true;
}

/* Checks every number, and the options that cannot go together. */
static bool check_options(const train_options *o, option_values *v)
{
    const char *paths[][2] = { { "--config", o->config }, { "--text", o->text },
                               { "--save", o->save }, { "--resume", o->resume },
                               { "--run-dir", o->run_dir } };
    for (size_t i = 0; i < G_N_ELEMENTS(paths); i++)
        if (paths[i][1] && !*paths[i][1]) {
            cli_usage_error("%s is empty: give a path", paths[i][0]);
            return false;
        }
    if (o->config && o->preset) {
        cli_usage_error("--config and --preset both name the run: give one");
        return false;
    }
    if (o->preset && !run_inputs_has_preset(o->preset)) {
        g_autofree char *presets = run_inputs_list_presets();
        cli_usage_error("--preset: no built-in run is called “%s” (the runs are %s)", o->preset,
                        presets);
        return false;
    }
    if (o->resume) {
        const char *fixed[][2] = { { "--config", o->config }, { "--preset", o->preset },
                                   { "--batch-size", o->batch_size },
                                   { "--seq-len", o->seq_len }, { "--seed", o->seed } };
        for (size_t i = 0; i < G_N_ELEMENTS(fixed); i++)
            if (fixed[i][1]) {
                cli_usage_error("%s cannot change a resumed run: its checkpoint fixes the model "
                                "and the batches",
                                fixed[i][0]);
                return false;
            }
    }
    if (o->grow && !o->resume) {
        cli_usage_error("--grow needs --resume FILE: it grows the expert grid of a saved run as "
                        "it continues (a new run takes its grid from its config)");
        return false;
    }
    if (o->freeze_old_experts && !o->grow) {
        cli_usage_error("--freeze-old-experts needs --grow: it holds the experts a layer had "
                        "before growing");
        return false;
    }
    for (char **spec = o->grow; spec && *spec; spec++) {
        int layer = -1, experts = 0;
        if (!parse_grow(*spec, &layer, &experts))
            return false;
    }
    if (o->save_interval && !o->save && !o->run_dir) {
        cli_usage_error("--save-interval needs somewhere to save: add --save FILE or "
                        "--run-dir DIR");
        return false;
    }
    return cli_parse_long("--steps", o->steps, 0, MAX_STEPS, &v->steps) &&
           cli_parse_int("--batch-size", o->batch_size, 1, 4096, &v->batch_size) &&
           cli_parse_int("--seq-len", o->seq_len, 1, 1 << 20, &v->seq_len) &&
           cli_parse_double("--lr", o->lr, 0.0, 1.0, &v->lr) &&
           cli_parse_double("--min-lr", o->min_lr, 0.0, 1.0, &v->min_lr) &&
           cli_parse_long("--warmup", o->warmup, 0, MAX_STEPS, &v->warmup) &&
           cli_parse_double("--expert-lr", o->expert_lr, 0.0, 1.0, &v->expert_lr) &&
           cli_parse_seed("--seed", o->seed, &v->seed) &&
           cli_parse_long("--eval-interval", o->eval_interval, 0, MAX_STEPS,
                          &v->eval_interval) &&
           cli_parse_int("--eval-windows", o->eval_windows, 1, 1 << 24, &v->eval_windows) &&
           cli_parse_long("--save-interval", o->save_interval, 1, MAX_STEPS,
                          &v->save_interval) &&
           cli_parse_long("--log-interval", o->log_interval, 1, MAX_STEPS, &v->log_interval) &&
           cli_parse_int("--sample", o->sample, 0, MAX_SAMPLE_BYTES, &v->sample_bytes);
}

/* The settings a resumed run may change too: schedule and evaluation, not the model or the
 * batches. */
static void apply_schedule_options(const train_options *o, const option_values *v,
                                   train_settings *s)
{
    if (o->steps)
        s->steps = v->steps;
    if (o->lr) {
        /* The floor keeps its place relative to the peak, so --lr alone rescales the schedule. */
        float ratio = s->lr > 0.0f ? s->min_lr / s->lr : 0.0f;
        s->lr = (float)v->lr;
        s->min_lr = s->lr * ratio;
    }
    if (o->min_lr)
        s->min_lr = (float)v->min_lr;
    if (o->warmup)
        s->warmup = v->warmup;
    if (o->expert_lr)
        s->expert_lr = (float)v->expert_lr;
    if (o->eval_interval)
        s->eval_interval = v->eval_interval;
    if (o->eval_windows)
        s->eval_windows = v->eval_windows;
}

static void apply_model_options(const train_options *o, const option_values *v,
                                train_settings *s)
{
    if (o->batch_size)
        s->batch_size = v->batch_size;
    if (o->seq_len)
        s->seq_len = v->seq_len;
    if (o->seed)
        s->seed = v->seed;
}

/* Fails early, before any training, when a checkpoint could not be written at the end. */
static bool check_save_folder(const char *path)
{
    g_autofree char *folder = g_path_get_dirname(path);
    if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
        cli_error("cannot save to %s: it is a folder; name a file such as %s/model.safetensors",
                  path, path);
        return false;
    }
    if (!g_file_test(folder, G_FILE_TEST_IS_DIR)) {
        cli_error("cannot save to %s: the folder %s does not exist", path, folder);
        return false;
    }
    if (g_access(folder, W_OK) != 0) {
        cli_error("cannot save to %s: the folder %s is not writable", path, folder);
        return false;
    }
    return true;
}

/* Refuses a PEER or PKM layer that would not fit in memory, before allocating it. */
static bool check_memory(const model_config *cfg, const train_settings *s, peer_error *err)
{
    for (int l = 0; l < cfg->n_layers; l++) {
        const ffn_config *ffn = &cfg->layers[l];
        if (ffn->kind != FFN_PEER && ffn->kind != FFN_PKM)
            continue;
        peer_layer_config peer = ffn->peer;
        peer.d_model = cfg->d_model;
        peer.values_only = ffn->kind == FFN_PKM;
        peer_error inner = { 0 };
        if (!peer_layer_check_memory(&peer, s->batch_size * s->seq_len, peer_memory_available(),
                                     &inner))
            return peer_error_set(err, "layer %d: %s", l, inner.message);
    }
    return true;
}

/* --grow on a resumed trainer: the model's expert grids grow before training goes on. Returns an
 * exit status. */
static int grow_trainer(train_run *run, const train_options *o)
{
    model_growth growth;
    if (!growth_from_options(o, &run->tr.model->cfg, &growth))
        return CLI_EXIT_USAGE;
    model_config grown;
    peer_error err = { 0 };
    run->grown_from = run->tr.model->cfg;
    if (!model_growth_config(&run->tr.model->cfg, &growth, &grown, &err) ||
        !check_memory(&grown, &run->tr.settings, &err) ||
        !trainer_grow(&run->tr, &growth, o->freeze_old_experts, &err)) {
        cli_error("cannot grow the model: %s", err.message);
        return CLI_EXIT_FAILURE;
    }
    run->grown = true;
    run->frozen = o->freeze_old_experts;
    return 0;
}

static bool make_corpus(train_run *run, int seq_len, peer_error *err)
{
    corpus_free(&run->data);
    gsize size = 0;
    const uint8_t *bytes = g_bytes_get_data(run->text, &size);
    return corpus_from_bytes(&run->data, bytes ? bytes : (const uint8_t *)"", size, seq_len,
                             run->text_name, err);
}

/* A trainer, new or resumed. Returns an exit status. */
static int start_trainer(train_run *run, const train_options *o, const option_values *v)
{
    peer_error err = { 0 };
    if (!run_inputs_load_text(o->text, &run->text, &run->text_name, &err)) {
        cli_error("%s", err.message);
        return CLI_EXIT_FAILURE;
    }
    if (o->resume) {
        g_autofree char *trainer_path = checkpoint_trainer_path(o->resume);
        /* The run's sequence length is in the checkpoint; until it is read, the text need only
         * be long enough for the shortest sequence, and is checked properly after. */
        if (!trainer_path || !make_corpus(run, 1, &err) ||
            !checkpoint_resume(&run->tr, o->resume, trainer_path, &run->data,
                               o->steps ? &v->steps : NULL, &err)) {
            cli_error("%s", trainer_path ? err.message : "out of memory");
            return CLI_EXIT_FAILURE;
        }
        run->have_trainer = true;
        run->source = o->resume;
        train_settings *s = &run->tr.settings;
        apply_schedule_options(o, v, s);
        if (!train_settings_validate(s, &run->tr.model->cfg, &err)) {
            cli_usage_error("%s", err.message);
            return CLI_EXIT_USAGE;
        }
        if (o->grow) {
            int status = grow_trainer(run, o);
            if (status != 0)
                return status;
        }
        if (!make_corpus(run, s->seq_len, &err)) {
            cli_error("%s", err.message);
            return CLI_EXIT_FAILURE;
        }
        run->tr.data = &run->data;
        return 0;
    }

    model_config cfg;
    train_settings settings;
    if (!run_inputs_load_config(o->config, o->preset, &cfg, &settings, &err)) {
        cli_error("%s", err.message);
        return CLI_EXIT_FAILURE;
    }
    run->source = o->config ? o->config : o->preset ? o->preset : RUN_INPUTS_DEFAULT_PRESET;
    apply_model_options(o, v, &settings);
    apply_schedule_options(o, v, &settings);
    if (!train_settings_validate(&settings, &cfg, &err)) {
        cli_usage_error("%s", err.message);
        return CLI_EXIT_USAGE;
    }
    if (!check_memory(&cfg, &settings, &err) || !make_corpus(run, settings.seq_len, &err) ||
        !trainer_init(&run->tr, &cfg, &settings, &run->data, &err)) {
        cli_error("%s", err.message);
        return CLI_EXIT_FAILURE;
    }
    run->have_trainer = true;
    return 0;
}

/* {"model": ..., "training": ...} as this run uses them, so --config can repeat it. */
static bool write_run_config(const train_run *run, const char *path, peer_error *err)
{
    char *model_json = model_config_to_json(&run->tr.model->cfg);
    char *training_json = train_settings_to_json(&run->tr.settings);
    json_t *model = model_json ? json_loads(model_json, 0, NULL) : NULL;
    json_t *training = training_json ? json_loads(training_json, 0, NULL) : NULL;
    /* The settings are floats; written as doubles they would read 0.0030000000299999999. */
    json_output_shorten_floats(training);
    free(model_json);
    free(training_json);
    json_t *object = model && training ? json_pack("{s:O, s:O}", "model", model, "training",
                                                   training)
                                       : NULL;
    json_decref(model);
    json_decref(training);
    char *text = object ? json_dumps(object, JSON_INDENT(2) | JSON_OUTPUT_FLAGS) : NULL;
    json_decref(object);
    if (!text)
        return peer_error_set(err, "out of memory writing %s", path);
    g_autoptr(GError) error = NULL;
    g_autofree char *contents = g_strconcat(text, "\n", NULL);
    free(text);
    if (!g_file_set_contents(path, contents, -1, &error))
        return peer_error_set(err, "%s", error->message);
    return true;
}

static bool open_run_dir(train_run *run, bool resumed, peer_error *err)
{
    if (g_mkdir_with_parents(run->run_dir, 0777) != 0)
        return peer_error_set(err, "cannot create the run folder %s: %s", run->run_dir,
                              g_strerror(errno));
    g_autofree char *config = g_build_filename(run->run_dir, RUN_CONFIG_FILE, NULL);
    g_autofree char *log = g_build_filename(run->run_dir, RUN_LOG_FILE, NULL);
    return write_run_config(run, config, err) && run_log_open(&run->log, log, resumed, err);
}

/* The model, and the optimiser state beside it, to --save and into the run folder. */
static bool save_checkpoints(train_run *run)
{
    g_autofree char *run_model =
        run->run_dir ? g_build_filename(run->run_dir, RUN_MODEL_FILE, NULL) : NULL;
    const char *paths[] = { run->save_path, run_model };
    for (size_t i = 0; i < G_N_ELEMENTS(paths); i++) {
        if (!paths[i])
            continue;
        peer_error err = { 0 };
        g_autofree char *trainer_path = checkpoint_trainer_path(paths[i]);
        if (!trainer_path || !checkpoint_save_model(run->tr.model, paths[i], &err) ||
            !checkpoint_save_trainer(&run->tr, trainer_path, &err)) {
            progress_bar_clear(&run->bar);
            cli_error("%s", trainer_path ? err.message : "out of memory");
            return false;
        }
    }
    return true;
}

static double seconds_since(gint64 start)
{
    return (double)(g_get_monotonic_time() - start) / 1e6;
}

/* Seconds left at the pace of this process so far, evaluations included. */
static double eta_seconds(const train_run *run)
{
    long done = run->tr.step - run->first_step;
    long left = run->tr.settings.steps - run->tr.step;
    if (done <= 0)
        return -1.0;
    return seconds_since(run->started) / (double)done * (double)left;
}

static void describe_model(const model_config *cfg, GString *out)
{
    g_string_append_printf(out, "%d layers, d_model %d, %d attention heads, context %d:",
                           cfg->n_layers, cfg->d_model, cfg->n_heads, cfg->context);
    for (int l = 0; l < cfg->n_layers; l++) {
        const ffn_config *ffn = &cfg->layers[l];
        g_string_append(out, l ? ", " : " ");
        switch (ffn->kind) {
        case FFN_DENSE:
            g_string_append_printf(out, "dense %d", ffn->d_ff);
            break;
        case FFN_PEER:
        case FFN_PKM:
            g_string_append_printf(out, "%s N=%d h=%d k=%d", ffn_kind_name(ffn->kind),
                                   ffn->peer.n_experts, ffn->peer.heads, ffn->peer.topk);
            break;
        case FFN_MOE:
            g_string_append_printf(out, "moe E=%d top-%d", ffn->moe_experts, ffn->moe_topk);
            break;
        }
    }
}

static void print_header(const train_run *run, bool resumed)
{
    const trainer *tr = &run->tr;
    const train_settings *s = &tr->settings;
    const peer_model *model = tr->model;
    size_t expert_params = 0;
    for (int i = 0; i < model->n_tensors; i++)
        if (model->tensors[i].expert_table)
            expert_params += model->tensors[i].n_elements;
    GString *line = g_string_new(NULL);
    describe_model(&model->cfg, line);
    printf("%s: %s %s\n", run->defaults->program, resumed ? "resuming" : "run", run->source);
    if (resumed)
        printf("resumed  at step %ld of %ld\n", tr->step, s->steps);
    printf("model    %s\n", line->str);
    printf("params   %zu, of which %zu in expert and memory tables\n", model->n_params,
           expert_params);
    printf("text     %s: %zu bytes, %zu to train on, %zu to validate\n", run->text_name,
           run->data.size, run->data.train_size, run->data.size - run->data.train_size);
    printf("training %ld steps of %d × %d bytes, lr %g → %g (warm-up %ld), expert lr %g, "
           "seed %" G_GUINT64_FORMAT ", %d thread%s\n",
           s->steps, s->batch_size, s->seq_len, (double)s->lr, (double)s->min_lr, s->warmup,
           (double)s->expert_lr, s->seed, thread_pool_get_threads(run->pool),
           thread_pool_get_threads(run->pool) == 1 ? "" : "s");
    for (int l = 0; run->grown && l < model->cfg.n_layers; l++) {
        const peer_layer_config *was = &run->grown_from.layers[l].peer;
        const peer_layer_config *now = &model->cfg.layers[l].peer;
        if (was->n_experts != now->n_experts)
            printf("grown    layer %d: %d → %d experts (%d² → %d²)%s\n", l, was->n_experts,
                   now->n_experts, peer_layer_side(was), peer_layer_side(now),
                   run->frozen ? ", the old ones held" : "");
    }
    if (run->eval_windows < s->eval_windows)
        printf("note     the validation text holds %d windows of %d bytes: evaluations use "
               "those, not %d\n",
               run->eval_windows, s->seq_len + 1, s->eval_windows);
    printf("\n");
    fflush(stdout);
    g_string_free(line, TRUE);
}

static bool log_step(train_run *run, peer_error *err)
{
    const trainer *tr = &run->tr;
    double tokens_per_second =
        run->log_train_us > 0 ? run->log_tokens / ((double)run->log_train_us / 1e6) : 0.0;
    run->log_train_us = 0;
    run->log_tokens = 0.0;
    if (run->plain_lines) {
        char eta[32];
        progress_bar_clear(&run->bar);
        printf("step %ld/%ld  loss %.4f  lr %.3g  grad %.3g  %.0f tok/s  ETA %s\n", tr->step,
               tr->settings.steps, tr->last_loss, (double)tr->last_lr, tr->last_grad_norm,
               tokens_per_second,
               progress_bar_format_duration(eta_seconds(run), eta, sizeof eta));
        fflush(stdout);
    }
    return !run->log.file ||
           run_log_write_step(&run->log, tr, tokens_per_second, seconds_since(run->started), err);
}

static void print_sample(train_run *run)
{
    size_t count = (size_t)run->sample_bytes;
    g_autofree uint8_t *out = g_malloc(count);
    sampler_settings settings = { .temperature = SAMPLE_TEMPERATURE, .top_k = 0 };
    peer_error err = { 0 };
    if (!sampler_generate(run->tr.model, (const uint8_t *)SAMPLE_PROMPT, strlen(SAMPLE_PROMPT),
                          out, count, &settings, &run->sample_rng, run->pool, &err)) {
        cli_error("no sample: %s", err.message);
        return;
    }
    g_autofree char *text = cli_printable_text(out, count);
    printf("  sample (temperature %.1f):\n\n%s%s\n\n", (double)SAMPLE_TEMPERATURE, SAMPLE_PROMPT,
           text);
}

static bool evaluate(train_run *run, peer_error *err)
{
    eval_result result;
    if (!trainer_evaluate(&run->tr, run->eval_windows, &result, run->pool, err))
        return false;
    progress_bar_clear(&run->bar);
    printf("eval at step %ld:\n", run->tr.step);
    eval_report_print(stdout, "  ", &run->tr.model->cfg, &result);
    if (run->sample_bytes > 0)
        print_sample(run);
    fflush(stdout);
    return !run->log.file ||
           run_log_write_eval(&run->log, run->tr.step, &run->tr.model->cfg, &result, err);
}

static void draw_progress(train_run *run, bool force)
{
    double seconds = (double)run->train_us / 1e6;
    double tokens = run->tr.tokens - run->first_tokens;
    progress_bar_draw(&run->bar, run->tr.step, run->tr.settings.steps, run->tr.last_loss,
                      seconds > 0.0 ? tokens / seconds : 0.0, eta_seconds(run), force);
}

static volatile sig_atomic_t stop_requested;

static void request_stop(int signal_number)
{
    stop_requested = signal_number;
}

/* Ctrl-C (or SIGTERM) stops the run between two steps, with its checkpoints saved so it can be
 * resumed; a second one ends the program at once, as usual. */
static void catch_stop_signals(void)
{
    struct sigaction action = { .sa_handler = request_stop, .sa_flags = SA_RESETHAND };
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
}

/* The loop; returns an exit status. */
static int train(train_run *run)
{
    trainer *tr = &run->tr;
    const train_settings *s = &tr->settings;
    peer_error err = { 0 };
    bool trained = false;

    while (tr->step < s->steps) {
        if (stop_requested) {
            progress_bar_clear(&run->bar);
            fprintf(stderr, "%s: stopped at step %ld of %ld\n", cli_program(), tr->step,
                    s->steps);
            if ((run->save_path || run->run_dir) && save_checkpoints(run)) {
                g_autofree char *saved =
                    run->save_path ? g_strdup(run->save_path)
                                   : g_build_filename(run->run_dir, RUN_MODEL_FILE, NULL);
                fprintf(stderr, "%s: saved; --resume %s continues the run\n", cli_program(),
                        saved);
            }
            return EXIT_INTERRUPTED;
        }
        gint64 t0 = g_get_monotonic_time();
        double tokens_before = tr->tokens;
        if (!trainer_step(tr, run->pool, &err)) {
            progress_bar_clear(&run->bar);
            cli_error("%s", err.message);
            if (run->save_path || run->run_dir) {
                if (save_checkpoints(run))
                    fprintf(stderr, "%s: saved the weights of step %ld\n", cli_program(),
                            tr->step);
            }
            return CLI_EXIT_FAILURE;
        }
        gint64 dt = g_get_monotonic_time() - t0;
        run->train_us += dt;
        run->log_train_us += dt;
        run->log_tokens += tr->tokens - tokens_before;
        trained = true;
        bool last = tr->step == s->steps;

        draw_progress(run, last);
        if (tr->step % run->log_interval == 0 || last) {
            if (!log_step(run, &err)) {
                progress_bar_clear(&run->bar);
                cli_error("%s", err.message);
                return CLI_EXIT_FAILURE;
            }
        }
        if (!last && s->eval_interval > 0 && tr->step % s->eval_interval == 0) {
            if (!evaluate(run, &err)) {
                progress_bar_clear(&run->bar);
                cli_error("%s", err.message);
                return CLI_EXIT_FAILURE;
            }
            draw_progress(run, true);
        }
        if (!last && run->save_interval > 0 && tr->step % run->save_interval == 0 &&
            !save_checkpoints(run))
            return CLI_EXIT_FAILURE;
    }
    progress_bar_clear(&run->bar);

    if (!evaluate(run, &err)) {
        cli_error("%s", err.message);
        return CLI_EXIT_FAILURE;
    }
    if (!save_checkpoints(run))
        return CLI_EXIT_FAILURE;
    if (trained) {
        double seconds = (double)run->train_us / 1e6;
        printf("trained %ld steps in %.1f s: %.0f tokens/s, %.2f GFLOP/s; %.1f s in all\n",
               tr->step - run->first_step, seconds,
               (tr->tokens - run->first_tokens) / seconds,
               (tr->flops - run->first_flops) / seconds / 1e9, seconds_since(run->started));
    }
    if (run->save_path)
        printf("saved %s\n", run->save_path);
    if (run->run_dir)
        printf("run folder %s\n", run->run_dir);
    fflush(stdout);
    return 0;
}

/* Everything after the options: the threads, the trainer, the run folder, the loop. */
static int run_training(train_run *run, const train_options *o, const option_values *v)
{
    bool usage = false;
    run->pool = cli_thread_pool_new(o->threads, &usage);
    if (!run->pool)
        return usage ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
    if (o->save && !check_save_folder(o->save))
        return CLI_EXIT_FAILURE;
    int status = start_trainer(run, o, v);
    if (status != 0)
        return status;

    trainer *tr = &run->tr;
    peer_error err = { 0 };
    run->save_path = g_strdup(o->save);
    run->run_dir = g_strdup(o->run_dir);
    run->save_interval = o->save_interval ? v->save_interval : 0;
    run->log_interval = v->log_interval;
    run->sample_bytes = v->sample_bytes;
    peer_rng_seed(&run->sample_rng, tr->settings.seed ^ SAMPLE_SEED_MIX);
    size_t windows = corpus_validation_windows(&run->data, tr->settings.seq_len);
    run->eval_windows = (size_t)tr->settings.eval_windows < windows ? tr->settings.eval_windows
                                                                    : (int)windows;
    progress_bar_init(&run->bar, stderr);
    /* Step lines go to stdout unless the bar already shows them on the same terminal. */
    run->plain_lines = !(run->bar.active && isatty(fileno(stdout)));
    if (run->run_dir && !open_run_dir(run, o->resume != NULL, &err)) {
        cli_error("%s", err.message);
        return CLI_EXIT_FAILURE;
    }
    run->started = g_get_monotonic_time();
    run->first_step = tr->step;
    run->first_tokens = tr->tokens;
    run->first_flops = tr->flops;
    print_header(run, o->resume != NULL);
    catch_stop_signals();
    return train(run);
}

static void train_run_free(train_run *run)
{
    run_log_close(&run->log);
    if (run->have_trainer)
        trainer_free(&run->tr);
    corpus_free(&run->data);
    g_clear_pointer(&run->text, g_bytes_unref);
    g_clear_pointer(&run->text_name, g_free);
    g_clear_pointer(&run->save_path, g_free);
    g_clear_pointer(&run->run_dir, g_free);
    if (run->pool)
        thread_pool_free(run->pool);
}

int train_cli_main(int argc, char **argv, const train_cli_defaults *defaults)
{
    cli_init(defaults->program);
    train_options o = { 0 };
    option_values v = { .log_interval = DEFAULT_LOG_INTERVAL,
                        .sample_bytes = defaults->sample_bytes };
    help_texts help = { 0 };
    GOptionContext *context = new_option_context(defaults, &o, &help);
    bool parsed = cli_parse_options(context, &argc, &argv, 0, 0, "") && check_options(&o, &v);
    g_option_context_free(context);
    help_texts_clear(&help);
    if (!parsed) {
        train_options_clear(&o);
        return CLI_EXIT_USAGE;
    }

    train_run run = { .defaults = defaults };
    int status = run_training(&run, &o, &v);
    train_run_free(&run);
    train_options_clear(&o);
    return status;
}
