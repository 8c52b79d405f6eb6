#include "experiment-runner.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <sys/file.h>
#include <unistd.h>
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "checkpoint.h"
#include "json-output.h"
#include "run-inputs.h"
#include "run-log.h"

#define RUN_CONFIG_FILE "config.json"
#define RUN_LOG_FILE "log.jsonl"
#define RUN_MODEL_FILE "model.safetensors"
#define LOG_INTERVAL 10
/* Held (flock) while a run trains in the folder, so two programs never train it at once. */
#define LOCK_FILE "lock"
#define DEFAULT_CHECKPOINT_SECONDS 120.0

typedef struct {
    const experiment *ex;
    const char *dir;
    const experiment_run_options *o;
    corpus data;
    bool have_data;
    long steps_this_call;
    double flops_done, flops_total;
} run_state;

typedef enum { VARIANT_NEXT, VARIANT_STOPPED, VARIANT_ERROR } variant_outcome;

static void emit(run_state *st, experiment_event *event)
{
    event->suite_flops_done = st->flops_done;
    event->suite_flops_total = st->flops_total;
    if (st->o->on_event)
        st->o->on_event(event, st->o->user_data);
}

static bool wanted(const experiment_run_options *o, const experiment_variant *v)
{
    if (!o->only)
        return true;
    for (const char *const *name = o->only; *name; name++)
        if (strcmp(*name, v->name) == 0)
            return true;
    return false;
}

/* ---- files of a variant ------------------------------------------------------------------------ */

static bool write_json(const char *path, json_t *value, peer_error *err)
{
    char *text = json_dumps(value, JSON_INDENT(2) | JSON_OUTPUT_FLAGS);
    if (!text)
        return peer_error_set(err, "out of memory writing %s", path);
    g_autofree char *contents = g_strconcat(text, "\n", NULL);
    free(text);
    peer_error inner = { 0 };
    if (!experiment_write_file(path, contents, strlen(contents), &inner))
        return peer_error_set(err, "cannot write %s: %s", path, inner.message);
    return true;
}

/* {"model": ..., "training": ...} as peer-train writes it, so peer-train --config repeats it. */
static bool write_run_config(const experiment_variant *v, const char *path, peer_error *err)
{
    char *model_json = model_config_to_json(&v->cfg);
    char *training_json = train_settings_to_json(&v->settings);
    json_t *model = model_json ? json_loads(model_json, 0, NULL) : NULL;
    json_t *training = training_json ? json_loads(training_json, 0, NULL) : NULL;
    free(model_json);
    free(training_json);
    json_output_shorten_floats(training);
    json_t *object = model && training ? json_pack("{s:O, s:O}", "model", model, "training",
                                                   training)
                                       : NULL;
    json_decref(model);
    json_decref(training);
    if (!object)
        return peer_error_set(err, "out of memory writing %s", path);
    bool ok = write_json(path, object, err);
    json_decref(object);
    return ok;
}

static bool save_progress(const char *path, long step, double seconds, peer_error *err)
{
    json_t *object = json_pack("{s:I, s:o}", "step", (json_int_t)step, "train_seconds",
                               json_output_number(seconds));
    bool ok = write_json(path, object, err);
    json_decref(object);
    return ok;
}

static double load_progress_seconds(const char *path)
{
    json_t *object = json_load_file(path, 0, NULL);
    json_t *seconds = json_object_get(object, "train_seconds");
    double value = json_is_number(seconds) ? json_number_value(seconds) : 0.0;
    json_decref(object);
    return value;
}

/* Drops the log lines after the checkpoint's step: a run killed between two checkpoints logged
 * steps that its resumption trains again. */
static bool truncate_log(const char *path, long step, peer_error *err)
{
    g_autofree char *contents = NULL;
    if (!g_file_get_contents(path, &contents, NULL, NULL))
        return true;
    GString *kept = g_string_new(NULL);
    char **lines = g_strsplit(contents, "\n", -1);
    for (char **line = lines; *line; line++) {
        if (!**line)
            continue;
        json_t *entry = json_loads(*line, 0, NULL);
        json_t *line_step = json_object_get(entry, "step");
        if (entry && json_is_integer(line_step) && json_integer_value(line_step) <= step)
            g_string_append_printf(kept, "%s\n", *line);
        json_decref(entry);
    }
    g_strfreev(lines);
    peer_error inner = { 0 };
    bool ok = experiment_write_file(path, kept->str, kept->len, &inner);
    g_string_free(kept, TRUE);
    if (!ok)
        return peer_error_set(err, "cannot rewrite %s: %s", path, inner.message);
    return true;
}

static bool same_config(const model_config *a, const model_config *b)
{
    char *x = model_config_to_json(a);
    char *y = model_config_to_json(b);
    bool same = x && y && strcmp(x, y) == 0;
    free(x);
    free(y);
    return same;
}

static bool save_checkpoint(const trainer *tr, const char *model_path, const char *trainer_path,
                            const char *progress_path, double seconds, peer_error *err)
{
    return checkpoint_save_model(tr->model, model_path, err) &&
           checkpoint_save_trainer(tr, trainer_path, err) &&
           save_progress(progress_path, tr->step, seconds, err);
}

/* ---- one variant ----------------------------------------------------------------------------- */

typedef struct {
    char *dir, *model, *trainer, *log, *progress, *config, *result;
} variant_paths;

static void variant_paths_init(variant_paths *p, const char *dir, const experiment_variant *v)
{
    p->dir = experiment_variant_dir(dir, v);
    p->model = g_build_filename(p->dir, RUN_MODEL_FILE, NULL);
    p->trainer = checkpoint_trainer_path(p->model);
    p->log = g_build_filename(p->dir, RUN_LOG_FILE, NULL);
    p->progress = g_build_filename(p->dir, EXPERIMENT_PROGRESS_FILE, NULL);
    p->config = g_build_filename(p->dir, RUN_CONFIG_FILE, NULL);
    p->result = g_build_filename(p->dir, EXPERIMENT_RESULT_FILE, NULL);
}

static void variant_paths_clear(variant_paths *p)
{
    g_free(p->dir);
    g_free(p->model);
    g_free(p->trainer);
    g_free(p->log);
    g_free(p->progress);
    g_free(p->config);
    g_free(p->result);
}

static int windows_of(const run_state *st, int wanted_windows, int seq_len)
{
    size_t available = corpus_validation_windows(&st->data, seq_len);
    return (size_t)wanted_windows < available ? wanted_windows : (int)available;
}

/* A trainer for the variant: resumed from its checkpoint when it has one, else new. */
static bool open_trainer(run_state *st, const experiment_variant *v, const variant_paths *p,
                         trainer *tr, bool *resumed, double *seconds_before, peer_error *err)
{
    *resumed = false;
    *seconds_before = 0.0;
    if (g_file_test(p->model, G_FILE_TEST_EXISTS) && g_file_test(p->trainer, G_FILE_TEST_EXISTS)) {
        model_config saved;
        peer_error inner = { 0 };
        if (!checkpoint_read_config(p->model, &saved, &inner))
            return peer_error_set(err, "%s: %s; delete the folder %s to train the variant "
                                  "afresh",
                                  p->model, inner.message, p->dir);
        if (!same_config(&saved, &v->cfg))
            return peer_error_set(err, "%s holds a checkpoint of another model than the variant "
                                  "%s: delete the folder %s to train it afresh",
                                  p->model, v->name, p->dir);
        long steps = v->settings.steps;
        if (!checkpoint_resume(tr, p->model, p->trainer, &st->data, &steps, &inner))
            return peer_error_set(err, "cannot resume %s: %s", p->model, inner.message);
        *resumed = true;
        *seconds_before = load_progress_seconds(p->progress);
        return truncate_log(p->log, tr->step, err);
    }
    /* Whatever a run that never reached a checkpoint left is started again. */
    g_remove(p->log);
    g_remove(p->progress);
    if (!trainer_init(tr, &v->cfg, &v->settings, &st->data, err))
        return false;
    if (!write_run_config(v, p->config, err)) {
        trainer_free(tr);
        return false;
    }
    return true;
}

static void fill_final(experiment_result *result, const experiment *ex, const trainer *tr,
                       const eval_result *eval)
{
    result->loss = eval->loss;
    result->bits_per_byte = eval->bits_per_byte;
    result->perplexity = eval->perplexity;
    result->eval_tokens = eval->tokens;
    ffn_kind kind = tr->model->cfg.layers[ex->middle].kind;
    if (kind == FFN_PEER || kind == FFN_PKM) {
        result->usage = eval->usage[ex->middle].usage;
        result->unevenness = eval->usage[ex->middle].unevenness;
        result->dead = eval->usage[ex->middle].dead;
    } else {
        result->usage = result->unevenness = NAN;
    }
}

static bool finish_variant(run_state *st, int index, const variant_paths *p, trainer *tr,
                           experiment_result *result, peer_error *err)
{
    const experiment_variant *v = &st->ex->variants[index];
    result->n_points = experiment_read_curve(p->log, v->flops_per_step, -1, result->points, NULL);
    if (!experiment_result_save(result, v, p->result, err))
        return false;
    /* The model stays for peer-eval and the workbench; the optimiser state is no longer needed. */
    g_remove(p->trainer);
    g_remove(p->progress);
    experiment_event event = { .kind = EXPERIMENT_EVENT_FINISHED, .variant = index,
                               .step = tr->step, .steps = v->settings.steps, .result = result };
    emit(st, &event);
    return true;
}

static variant_outcome run_variant(run_state *st, int index, peer_error *err)
{
    const experiment *ex = st->ex;
    const experiment_variant *v = &ex->variants[index];
    const experiment_run_options *o = st->o;
    variant_paths p;
    variant_paths_init(&p, st->dir, v);
    variant_outcome outcome = VARIANT_ERROR;
    trainer tr = { 0 };
    bool have_trainer = false;
    run_log log = { 0 };
    experiment_result result;
    memset(&result, 0, sizeof result);
    result.usage = result.unevenness = NAN;

    if (g_file_test(p.result, G_FILE_TEST_EXISTS)) {
        if (experiment_result_load(&result, p.result, err)) {
            experiment_event event = { .kind = EXPERIMENT_EVENT_SKIPPED, .variant = index,
                                       .step = result.step, .steps = v->settings.steps,
                                       .result = &result };
            emit(st, &event);
            outcome = VARIANT_NEXT;
        }
        goto out;
    }
    if (g_mkdir_with_parents(p.dir, 0777) != 0) {
        peer_error_set(err, "cannot create the folder %s: %s", p.dir, g_strerror(errno));
        goto out;
    }
    bool resumed;
    double seconds_before;
    if (!open_trainer(st, v, &p, &tr, &resumed, &seconds_before, err))
        goto out;
    have_trainer = true;
    if (!run_log_open(&log, p.log, resumed, err))
        goto out;

    long curve[EXPERIMENT_MAX_CURVE_POINTS];
    int n_curve = experiment_curve_steps(ex, v, curve);
    int curve_windows = windows_of(st, ex->curve_windows, v->settings.seq_len);
    int final_windows = windows_of(st, ex->final_windows, v->settings.seq_len);
    double checkpoint_seconds =
        o->checkpoint_seconds > 0.0 ? o->checkpoint_seconds : DEFAULT_CHECKPOINT_SECONDS;
    const long steps = v->settings.steps;
    const double tokens_per_step = (double)v->settings.batch_size * v->settings.seq_len;
    gint64 session_start = g_get_monotonic_time();
    gint64 last_save = session_start;
    double recent_step_seconds = 0.0;
    double log_seconds = 0.0, log_tokens = 0.0;

    experiment_event started = { .kind = EXPERIMENT_EVENT_STARTED, .variant = index,
                                 .step = tr.step, .steps = steps };
    emit(st, &started);

    while (tr.step < steps) {
        bool stop = (o->should_stop && o->should_stop(o->user_data)) ||
                    (o->step_limit > 0 && st->steps_this_call >= o->step_limit);
        double seconds = seconds_before + (g_get_monotonic_time() - session_start) / 1e6;
        if (stop) {
            if (!save_checkpoint(&tr, p.model, p.trainer, p.progress, seconds, err))
                goto out;
            experiment_event event = { .kind = EXPERIMENT_EVENT_STOPPED, .variant = index,
                                       .step = tr.step, .steps = steps };
            emit(st, &event);
            outcome = VARIANT_STOPPED;
            goto out;
        }
        gint64 t0 = g_get_monotonic_time();
        peer_error step_error = { 0 };
        if (!trainer_step(&tr, o->pool, &step_error)) {
            /* A diverged variant is a result too: the comparison shows it. */
            result.status = EXPERIMENT_FAILED;
            result.step = tr.step;
            result.train_seconds = seconds;
            g_strlcpy(result.message, step_error.message, sizeof result.message);
            if (finish_variant(st, index, &p, &tr, &result, err))
                outcome = VARIANT_NEXT;
            goto out;
        }
        double dt = (g_get_monotonic_time() - t0) / 1e6;
        recent_step_seconds = recent_step_seconds > 0.0 ? 0.9 * recent_step_seconds + 0.1 * dt
                                                        : dt;
        log_seconds += dt;
        log_tokens += tokens_per_step;
        st->steps_this_call++;
        st->flops_done += v->flops_per_step;

        if (tr.step % LOG_INTERVAL == 0 || tr.step == steps) {
            double elapsed = seconds_before + (g_get_monotonic_time() - session_start) / 1e6;
            if (!run_log_write_step(&log, &tr, log_seconds > 0 ? log_tokens / log_seconds : 0.0,
                                    elapsed, err))
                goto out;
            log_seconds = log_tokens = 0.0;
        }
        experiment_event event = { .kind = EXPERIMENT_EVENT_STEP, .variant = index,
                                   .step = tr.step, .steps = steps, .train_loss = tr.last_loss,
                                   .tokens_per_second = recent_step_seconds > 0
                                                            ? tokens_per_step / recent_step_seconds
                                                            : 0.0 };
        emit(st, &event);

        for (int c = 0; c < n_curve; c++) {
            if (curve[c] != tr.step)
                continue;
            eval_result eval;
            if (!trainer_evaluate(&tr, curve_windows, &eval, o->pool, err) ||
                !run_log_write_eval(&log, tr.step, &tr.model->cfg, &eval, err))
                goto out;
            experiment_event evaluated = {
                .kind = EXPERIMENT_EVENT_EVALUATED, .variant = index, .step = tr.step,
                .steps = steps,
                .point = { .step = tr.step, .flops = (double)tr.step * v->flops_per_step,
                           .loss = eval.loss },
            };
            emit(st, &evaluated);
        }
        if (tr.step < steps && (g_get_monotonic_time() - last_save) / 1e6 >= checkpoint_seconds) {
            double now = seconds_before + (g_get_monotonic_time() - session_start) / 1e6;
            if (!save_checkpoint(&tr, p.model, p.trainer, p.progress, now, err))
                goto out;
            last_save = g_get_monotonic_time();
        }
    }

    /* The final evaluation, on more windows than the curve's, for the tables. */
    eval_result eval;
    if (!trainer_evaluate(&tr, final_windows, &eval, o->pool, err))
        goto out;
    result.status = EXPERIMENT_DONE;
    result.step = tr.step;
    result.train_seconds = seconds_before + (g_get_monotonic_time() - session_start) / 1e6;
    fill_final(&result, ex, &tr, &eval);
    run_log_close(&log);
    if (!save_checkpoint(&tr, p.model, p.trainer, p.progress, result.train_seconds, err) ||
        !finish_variant(st, index, &p, &tr, &result, err))
        goto out;
    outcome = VARIANT_NEXT;

out:
    run_log_close(&log);
    if (have_trainer)
        trainer_free(&tr);
    variant_paths_clear(&p);
    return outcome;
}

/* ---- the suite ------------------------------------------------------------------------------- */

static bool write_results(run_state *st, peer_error *err)
{
    experiment_results *results = experiment_results_load(st->ex, st->dir, err);
    if (!results)
        return false;
    bool ok = experiment_results_write(results, st->dir, err);
    experiment_results_free(results);
    return ok;
}

experiment_run_status experiment_run(const experiment *ex, const char *dir,
                                     const experiment_run_options *options, peer_error *err)
{
    run_state st = { .ex = ex, .dir = dir, .o = options };
    if (ex->n_variants == 0) {
        peer_error_set(err, "the experiment has no variants");
        return EXPERIMENT_RUN_ERROR;
    }
    g_autofree char *lock_path = g_build_filename(dir, LOCK_FILE, NULL);
    int lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (lock < 0) {
        peer_error_set(err, "cannot open %s: %s", lock_path, g_strerror(errno));
        return EXPERIMENT_RUN_ERROR;
    }
    if (flock(lock, LOCK_EX | LOCK_NB) != 0) {
        close(lock);
        peer_error_set(err, "another program is training the experiment in %s: let it finish or "
                       "stop it first",
                       dir);
        return EXPERIMENT_RUN_ERROR;
    }
    int seq_len = ex->variants[0].settings.seq_len;
    gsize size = 0;
    const uint8_t *bytes = options->text ? g_bytes_get_data(options->text, &size) : NULL;
    if (!corpus_from_bytes(&st.data, bytes ? bytes : (const uint8_t *)"", size, seq_len,
                           options->text_name ? options->text_name : "the text", err))
        return EXPERIMENT_RUN_ERROR;
    st.have_data = true;
    experiment_run_status status = EXPERIMENT_RUN_ERROR;
    if (corpus_validation_windows(&st.data, seq_len) < 1) {
        peer_error_set(err, "%s is too short: its validation part (the last tenth) holds no "
                       "window of %d bytes",
                       options->text_name ? options->text_name : "the text", seq_len + 1);
        goto out;
    }

    /* What is done already counts towards the progress of the whole suite. */
    experiment_results *before = experiment_results_load(ex, dir, err);
    if (!before)
        goto out;
    for (int i = 0; i < ex->n_variants; i++) {
        const experiment_variant *v = &ex->variants[i];
        if (!wanted(options, v))
            continue;
        st.flops_total += v->flops;
        const experiment_result *r = &before->results[i];
        if (r->status == EXPERIMENT_DONE || r->status == EXPERIMENT_FAILED)
            st.flops_done += v->flops;
    }
    experiment_results_free(before);

    status = EXPERIMENT_RUN_COMPLETE;
    for (int i = 0; i < ex->n_variants && status == EXPERIMENT_RUN_COMPLETE; i++) {
        if (!wanted(options, &ex->variants[i]))
            continue;
        variant_outcome outcome = run_variant(&st, i, err);
        if (outcome == VARIANT_ERROR)
            status = EXPERIMENT_RUN_ERROR;
        else if (outcome == VARIANT_STOPPED)
            status = EXPERIMENT_RUN_STOPPED;
        if (outcome != VARIANT_ERROR && !write_results(&st, err))
            status = EXPERIMENT_RUN_ERROR;
    }
out:
    if (st.have_data)
        corpus_free(&st.data);
    close(lock); /* and with it the lock */
    return status;
}

/* ---- opening a folder ------------------------------------------------------------------------ */

static bool load_base(const char *base, const experiment_suite *suite, model_config *cfg,
                      train_settings *settings, char **name, bool *usage, peer_error *err)
{
    if (!base && !suite->base_preset) {
        *name = g_strdup("the tiny model");
        return experiment_tiny_base(cfg, settings, err);
    }
    const char *preset = base ? NULL : suite->base_preset;
    if (base && run_inputs_has_preset(base))
        preset = base;
    if (preset) {
        *name = g_strdup(preset);
        return run_inputs_load_config(NULL, preset, cfg, settings, err);
    }
    if (!g_file_test(base, G_FILE_TEST_EXISTS)) {
        g_autofree char *presets = run_inputs_list_presets();
        *usage = true;
        return peer_error_set(err, "--base: no built-in run is called “%s” and there is no such "
                              "file (the built-in runs are %s)",
                              base, presets);
    }
    *name = g_strdup(base);
    return run_inputs_load_config(base, NULL, cfg, settings, err);
}

static char *text_checksum(GBytes *text)
{
    return g_compute_checksum_for_bytes(G_CHECKSUM_SHA256, text);
}

experiment *experiment_open(const char *dir, const char *suite_name, const char *base,
                            double budget, const char *text_path, GBytes **text,
                            char **text_name, bool *usage, peer_error *err)
{
    *usage = false;
    *text = NULL;
    *text_name = NULL;
    g_autofree char *definition = g_build_filename(dir, EXPERIMENT_DEFINITION_FILE, NULL);
    const experiment_suite *suite = suite_name ? experiment_suite_find(suite_name) : NULL;
    if (suite_name && !suite) {
        *usage = true;
        peer_error_set(err, "--suite: there is no suite “%s” (the suites are %s)", suite_name,
                       experiment_suite_names());
        return NULL;
    }
    if (g_file_test(dir, G_FILE_TEST_EXISTS) && !g_file_test(dir, G_FILE_TEST_IS_DIR)) {
        *usage = true;
        peer_error_set(err, "--dir %s is a file: name a folder for the experiment", dir);
        return NULL;
    }

    g_autoptr(experiment) ex = NULL;
    if (g_file_test(definition, G_FILE_TEST_EXISTS)) {
        ex = experiment_load_definition(dir, err);
        if (!ex)
            return NULL;
        if (suite && strcmp(suite->name, ex->suite) != 0) {
            *usage = true;
            peer_error_set(err, "%s holds the %s suite, not %s: leave --suite out to continue "
                           "it, or use another --dir",
                           dir, ex->suite, suite->name);
            return NULL;
        }
        if (budget > 0.0 && fabs(budget - ex->budget) > 1e-9 * ex->budget) {
            *usage = true;
            peer_error_set(err, "%s was started with a budget of %.6g FLOPs, not %.6g: leave "
                           "--budget out to continue it, or use another --dir",
                           dir, ex->budget, budget);
            return NULL;
        }
        if (base) {
            model_config cfg;
            train_settings settings;
            g_autofree char *name = NULL;
            if (!load_base(base, experiment_suite_find(ex->suite), &cfg, &settings, &name, usage,
                           err))
                return NULL;
            g_autoptr(experiment) other = experiment_new(experiment_suite_find(ex->suite), &cfg,
                                                         &settings, name, ex->budget, err);
            if (!other)
                return NULL;
            if (strcmp(other->base_json, ex->base_json) != 0) {
                *usage = true;
                peer_error_set(err, "%s was started from another base run (%s): leave --base out "
                               "to continue it, or use another --dir",
                               dir, ex->base_name);
                return NULL;
            }
        }
    } else {
        if (!suite)
            suite = experiment_suite_find("quick");
        model_config cfg;
        train_settings settings;
        g_autofree char *name = NULL;
        if (!load_base(base, suite, &cfg, &settings, &name, usage, err))
            return NULL;
        ex = experiment_new(suite, &cfg, &settings, name, budget > 0.0 ? budget : suite->budget,
                            err);
        if (!ex) {
            *usage = true;
            return NULL;
        }
    }

    const char *path = text_path ? text_path : ex->text_path;
    if (!run_inputs_load_text(path, text, text_name, err))
        return NULL;
    g_autofree char *checksum = text_checksum(*text);
    if (ex->text_sha256 && strcmp(ex->text_sha256, checksum) != 0) {
        *usage = true;
        peer_error_set(err, "%s was trained on another text (%s): give that text with --text, "
                       "or use another --dir",
                       dir, ex->text_path ? ex->text_path : RUN_INPUTS_DEFAULT_TEXT_NAME);
        g_clear_pointer(text, g_bytes_unref);
        g_clear_pointer(text_name, g_free);
        return NULL;
    }
    if (!ex->text_sha256) {
        ex->text_sha256 = g_steal_pointer(&checksum);
        ex->text_path = text_path ? g_canonicalize_filename(text_path, NULL) : NULL;
        if (!experiment_save_definition(ex, dir, err)) {
            g_clear_pointer(text, g_bytes_unref);
            g_clear_pointer(text_name, g_free);
            return NULL;
        }
    }
    return g_steal_pointer(&ex);
}
