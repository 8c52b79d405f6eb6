#include "experiment-results.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "json-output.h"

#define RUN_LOG_FILE "log.jsonl"
#define MISSING "–"

const char *experiment_status_name(experiment_status status)
{
    switch (status) {
    case EXPERIMENT_PENDING: return "pending";
    case EXPERIMENT_PARTIAL: return "partial";
    case EXPERIMENT_DONE: return "done";
    case EXPERIMENT_FAILED: return "failed";
    }
    return "?";
}

static void result_init(experiment_result *result)
{
    memset(result, 0, sizeof *result);
    result->loss = result->bits_per_byte = result->perplexity = NAN;
    result->usage = result->unevenness = NAN;
}

static double number_or_nan(json_t *value)
{
    return json_is_number(value) ? json_number_value(value) : NAN;
}

/* ---- curves from run logs ------------------------------------------------------------------- */

int experiment_read_curve(const char *log_path, double flops_per_step, long max_step,
                          experiment_point *points, long *last_step)
{
    if (last_step)
        *last_step = 0;
    g_autofree char *contents = NULL;
    if (!g_file_get_contents(log_path, &contents, NULL, NULL))
        return 0;
    int n = 0;
    char **lines = g_strsplit(contents, "\n", -1);
    for (char **line = lines; *line; line++) {
        if (!**line)
            continue;
        json_t *entry = json_loads(*line, 0, NULL);
        if (!entry)
            continue; /* a line cut short by a crash */
        const char *type = json_string_value(json_object_get(entry, "type"));
        json_t *step_value = json_object_get(entry, "step");
        long step = json_is_integer(step_value) ? (long)json_integer_value(step_value) : -1;
        if (step >= 0 && (max_step < 0 || step <= max_step)) {
            if (last_step && step > *last_step)
                *last_step = step;
            if (type && strcmp(type, "eval") == 0) {
                experiment_point point = { .step = step,
                                           .flops = (double)step * flops_per_step,
                                           .loss = number_or_nan(json_object_get(entry, "loss")) };
                /* A resumed run may evaluate a step again: the later line counts. */
                int at = n;
                for (int i = 0; i < n; i++)
                    if (points[i].step >= step) {
                        at = i;
                        break;
                    }
                if (at < n && points[at].step == step)
                    points[at] = point;
                else if (n < EXPERIMENT_MAX_CURVE_POINTS) {
                    memmove(&points[at + 1], &points[at], (size_t)(n - at) * sizeof *points);
                    points[at] = point;
                    n++;
                }
            }
        }
        json_decref(entry);
    }
    g_strfreev(lines);
    return n;
}

/* ---- result files ------------------------------------------------------------------------- */

bool experiment_result_save(const experiment_result *result, const experiment_variant *v,
                            const char *path, peer_error *err)
{
    json_t *root = json_object();
    json_object_set_new(root, "name", json_string(v->name));
    json_object_set_new(root, "status", json_string(experiment_status_name(result->status)));
    json_object_set_new(root, "step", json_integer(result->step));
    json_object_set_new(root, "steps", json_integer(v->settings.steps));
    json_object_set_new(root, "flops", json_output_number((double)result->step *
                                                           v->flops_per_step));
    json_object_set_new(root, "train_seconds", json_output_number(result->train_seconds));
    json_object_set_new(root, "loss", json_output_number(result->loss));
    json_object_set_new(root, "bits_per_byte", json_output_number(result->bits_per_byte));
    json_object_set_new(root, "perplexity", json_output_number(result->perplexity));
    json_object_set_new(root, "eval_tokens", json_integer(result->eval_tokens));
    json_object_set_new(root, "usage", json_output_number(result->usage));
    json_object_set_new(root, "unevenness", json_output_number(result->unevenness));
    json_object_set_new(root, "dead", json_integer(result->dead));
    if (result->message[0])
        json_object_set_new(root, "message", json_string(result->message));
    json_t *curve = json_array();
    for (int i = 0; i < result->n_points; i++)
        json_array_append_new(curve, json_pack("{s:I, s:o, s:o}", "step",
                                               (json_int_t)result->points[i].step, "flops",
                                               json_output_number(result->points[i].flops),
                                               "loss", json_output_number(result->points[i].loss)));
    json_object_set_new(root, "curve", curve);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_OUTPUT_FLAGS);
    json_decref(root);
    if (!text)
        return peer_error_set(err, "out of memory");
    g_autofree char *contents = g_strconcat(text, "\n", NULL);
    free(text);
    peer_error inner = { 0 };
    if (!experiment_write_file(path, contents, strlen(contents), &inner))
        return peer_error_set(err, "cannot write %s: %s", path, inner.message);
    return true;
}

bool experiment_result_load(experiment_result *result, const char *path, peer_error *err)
{
    result_init(result);
    json_error_t error;
    json_t *root = json_load_file(path, 0, &error);
    if (!root)
        return peer_error_set(err, "%s is not valid JSON (%s): delete it to run its variant "
                              "again",
                              path, error.text);
    const char *status = json_string_value(json_object_get(root, "status"));
    bool ok = true;
    if (status && strcmp(status, "done") == 0)
        result->status = EXPERIMENT_DONE;
    else if (status && strcmp(status, "failed") == 0)
        result->status = EXPERIMENT_FAILED;
    else
        ok = peer_error_set(err, "%s has no \"status\" of done or failed: delete it to run its "
                            "variant again",
                            path);
    json_t *step = json_object_get(root, "step");
    result->step = json_is_integer(step) ? (long)json_integer_value(step) : 0;
    result->train_seconds = number_or_nan(json_object_get(root, "train_seconds"));
    result->loss = number_or_nan(json_object_get(root, "loss"));
    result->bits_per_byte = number_or_nan(json_object_get(root, "bits_per_byte"));
    result->perplexity = number_or_nan(json_object_get(root, "perplexity"));
    json_t *tokens = json_object_get(root, "eval_tokens");
    result->eval_tokens = json_is_integer(tokens) ? (long)json_integer_value(tokens) : 0;
    result->usage = number_or_nan(json_object_get(root, "usage"));
    result->unevenness = number_or_nan(json_object_get(root, "unevenness"));
    json_t *dead = json_object_get(root, "dead");
    result->dead = json_is_integer(dead) ? (int64_t)json_integer_value(dead) : 0;
    const char *message = json_string_value(json_object_get(root, "message"));
    if (message)
        g_strlcpy(result->message, message, sizeof result->message);
    json_t *curve = json_object_get(root, "curve");
    for (size_t i = 0; i < json_array_size(curve) && result->n_points < EXPERIMENT_MAX_CURVE_POINTS;
         i++) {
        json_t *point = json_array_get(curve, i);
        json_t *point_step = json_object_get(point, "step");
        result->points[result->n_points++] = (experiment_point){
            .step = json_is_integer(point_step) ? (long)json_integer_value(point_step) : 0,
            .flops = number_or_nan(json_object_get(point, "flops")),
            .loss = number_or_nan(json_object_get(point, "loss")),
        };
    }
    json_decref(root);
    return ok;
}

experiment_results *experiment_results_load(const experiment *ex, const char *dir,
                                            peer_error *err)
{
    experiment_results *r = g_new0(experiment_results, 1);
    r->ex = ex;
    r->results = g_new0(experiment_result, MAX(1, ex->n_variants));
    for (int i = 0; i < ex->n_variants; i++) {
        const experiment_variant *v = &ex->variants[i];
        experiment_result *result = &r->results[i];
        result_init(result);
        g_autofree char *vdir = experiment_variant_dir(dir, v);
        g_autofree char *result_path = g_build_filename(vdir, EXPERIMENT_RESULT_FILE, NULL);
        if (g_file_test(result_path, G_FILE_TEST_EXISTS)) {
            if (!experiment_result_load(result, result_path, err)) {
                experiment_results_free(r);
                return NULL;
            }
            continue;
        }
        g_autofree char *log_path = g_build_filename(vdir, RUN_LOG_FILE, NULL);
        if (!g_file_test(log_path, G_FILE_TEST_EXISTS))
            continue;
        result->status = EXPERIMENT_PARTIAL;
        result->n_points = experiment_read_curve(log_path, v->flops_per_step, -1, result->points,
                                                 &result->step);
        /* The log has every tenth step; a stopped variant's checkpoint says where it is. */
        g_autofree char *progress_path = g_build_filename(vdir, EXPERIMENT_PROGRESS_FILE, NULL);
        json_t *progress = json_load_file(progress_path, 0, NULL);
        json_t *step = json_object_get(progress, "step");
        if (json_is_integer(step) && json_integer_value(step) > result->step)
            result->step = (long)json_integer_value(step);
        result->train_seconds = number_or_nan(json_object_get(progress, "train_seconds"));
        json_decref(progress);
    }
    return r;
}

void experiment_results_free(experiment_results *r)
{
    if (!r)
        return;
    g_free(r->results);
    g_free(r);
}

/* ---- tables ------------------------------------------------------------------------------- */

static void append_count(GString *out, double count)
{
    if (count >= 1e9)
        g_string_append_printf(out, "%.2f G", count / 1e9);
    else if (count >= 1e6)
        g_string_append_printf(out, "%.2f M", count / 1e6);
    else if (count >= 1e3)
        g_string_append_printf(out, "%.1f k", count / 1e3);
    else
        g_string_append_printf(out, "%.0f", count);
}

/* " 1.234 |", or the missing mark. */
static void append_number(GString *out, int decimals, double value)
{
    if (isfinite(value))
        g_string_append_printf(out, " %.*f |", decimals, value);
    else
        g_string_append(out, " " MISSING " |");
}

static void append_experts(GString *out, int n_experts)
{
    int side = (int)lround(sqrt((double)n_experts));
    if (side * side == n_experts)
        g_string_append_printf(out, "%d²", side);
    else
        g_string_append_printf(out, "%d", n_experts);
}

static const char *norm_label(peer_query_norm norm)
{
    switch (norm) {
    case PEER_NORM_BATCH: return "batch";
    case PEER_NORM_LAYER: return "layer";
    case PEER_NORM_NONE: return "none";
    }
    return "?";
}

/* The quality columns: perplexity and bits per byte when done, else the state. */
static void append_quality(GString *out, const experiment_variant *v,
                           const experiment_result *result, bool with_loss)
{
    switch (result->status) {
    case EXPERIMENT_DONE:
        if (with_loss) {
            append_number(out, 4, result->loss);
        }
        append_number(out, 2, result->perplexity);
        append_number(out, 3, result->bits_per_byte);
        break;
    case EXPERIMENT_FAILED:
        g_string_append_printf(out, "%s failed |%s", with_loss ? " " MISSING " |" : "",
                               " " MISSING " |");
        break;
    case EXPERIMENT_PARTIAL:
        g_string_append_printf(out, "%s step %ld/%ld |%s", with_loss ? " " MISSING " |" : "",
                               result->step, v->settings.steps, " " MISSING " |");
        break;
    case EXPERIMENT_PENDING:
        g_string_append_printf(out, "%s pending |%s", with_loss ? " " MISSING " |" : "",
                               " " MISSING " |");
        break;
    }
}

static void append_usage(GString *out, const experiment_result *result)
{
    if (result->status == EXPERIMENT_DONE) {
        append_number(out, 1, result->usage * 100.0);
        append_number(out, 2, result->unevenness);
    } else {
        g_string_append(out, " " MISSING " | " MISSING " |");
    }
}

static int norm_order(peer_query_norm norm)
{
    return norm == PEER_NORM_BATCH ? 0 : norm == PEER_NORM_LAYER ? 1 : 2;
}

typedef struct {
    const experiment *ex;
    int key; /* 0: by N then norm; 1: by h then k */
} sort_context;

static int compare_variants(const void *a, const void *b, void *data)
{
    const sort_context *c = data;
    const experiment_variant *x = &c->ex->variants[*(const int *)a];
    const experiment_variant *y = &c->ex->variants[*(const int *)b];
    if (c->key == 0) {
        if (x->n_experts != y->n_experts)
            return x->n_experts < y->n_experts ? -1 : 1;
        return norm_order(x->query_norm) - norm_order(y->query_norm);
    }
    if (x->heads * x->topk != y->heads * y->topk)
        return x->heads * x->topk < y->heads * y->topk ? -1 : 1;
    return x->heads - y->heads;
}

/* The variants of a group, sorted. */
static int group_members(const experiment *ex, unsigned group, int key, int *members)
{
    int n = 0;
    for (int i = 0; i < ex->n_variants; i++)
        if (ex->variants[i].groups & group)
            members[n++] = i;
    sort_context context = { ex, key };
    g_qsort_with_data(members, n, sizeof *members, compare_variants, &context);
    return n;
}

static void table_methods(GString *out, const experiment_results *r)
{
    const experiment *ex = r->ex;
    g_string_append(out, "## Methods at equal training compute\n\n");
    g_string_append_printf(out,
                           "The middle block's FFN (block %d) replaced; every variant trained for "
                           "%.3g FLOPs. Validation on the held-out tenth of the text.\n\n",
                           ex->middle, ex->budget);
    g_string_append(out, "| Method | Params | Active params | Training FLOPs | Steps | "
                         "Val loss (nats) | Perplexity | Bits/byte |\n");
    g_string_append(out, "|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < ex->n_variants; i++) {
        const experiment_variant *v = &ex->variants[i];
        if (!(v->groups & EXPERIMENT_GROUP_METHODS))
            continue;
        g_string_append_printf(out, "| %s | ", v->label);
        append_count(out, (double)v->params);
        g_string_append(out, " | ");
        append_count(out, (double)v->active_params);
        g_string_append_printf(out, " | %.3g | %ld |", v->flops, v->settings.steps);
        append_quality(out, v, &r->results[i], true);
        g_string_append(out, "\n");
    }
    g_string_append(out, "\n");
}

static void table_norm(GString *out, const experiment_results *r)
{
    const experiment *ex = r->ex;
    int members[EXPERIMENT_MAX_VARIANTS];
    int n = group_members(ex, EXPERIMENT_GROUP_NORM, 0, members);
    if (n == 0)
        return;
    g_string_append(out, "## Query norm: expert usage and unevenness\n\n");
    g_string_append(out, "Usage: the share of experts with any gate mass over the final "
                         "evaluation; unevenness: KL divergence of the gate mass from uniform, "
                         "in nats (0 is perfectly even).\n\n");
    g_string_append(out, "| N | Query norm | h | k | Perplexity | Bits/byte | Usage % | "
                         "Unevenness |\n");
    g_string_append(out, "|---|---|---|---|---|---|---|---|\n");
    for (int m = 0; m < n; m++) {
        const experiment_variant *v = &ex->variants[members[m]];
        g_string_append(out, "| ");
        append_experts(out, v->n_experts);
        g_string_append_printf(out, " | %s | %d | %d |", norm_label(v->query_norm), v->heads,
                               v->topk);
        append_quality(out, v, &r->results[members[m]], false);
        append_usage(out, &r->results[members[m]]);
        g_string_append(out, "\n");
    }
    g_string_append(out, "\n");
}

static void table_experts(GString *out, const experiment_results *r)
{
    const experiment *ex = r->ex;
    int members[EXPERIMENT_MAX_VARIANTS];
    int n = group_members(ex, EXPERIMENT_GROUP_EXPERTS, 0, members);
    if (n == 0)
        return;
    const experiment_variant *first = &ex->variants[members[0]];
    g_string_append(out, "## Number of experts at fixed h·k\n\n");
    g_string_append_printf(out, "h = %d, k = %d (h·k = %d active experts per token), %s "
                                "query norm.\n\n",
                           first->heads, first->topk, first->heads * first->topk,
                           norm_label(first->query_norm));
    g_string_append(out, "| N | Params | Training FLOPs/token | Steps | Perplexity | Bits/byte | "
                         "Usage % | Unevenness |\n");
    g_string_append(out, "|---|---|---|---|---|---|---|---|\n");
    for (int m = 0; m < n; m++) {
        const experiment_variant *v = &ex->variants[members[m]];
        g_string_append(out, "| ");
        append_experts(out, v->n_experts);
        g_string_append(out, " | ");
        append_count(out, (double)v->params);
        g_string_append(out, " | ");
        append_count(out, v->flops_per_step / v->settings.batch_size / v->settings.seq_len);
        g_string_append_printf(out, " | %ld |", v->settings.steps);
        append_quality(out, v, &r->results[members[m]], false);
        append_usage(out, &r->results[members[m]]);
        g_string_append(out, "\n");
    }
    g_string_append(out, "\n");
}

static void table_active(GString *out, const experiment_results *r)
{
    const experiment *ex = r->ex;
    int members[EXPERIMENT_MAX_VARIANTS];
    int n = group_members(ex, EXPERIMENT_GROUP_ACTIVE, 1, members);
    if (n == 0)
        return;
    const experiment_variant *first = &ex->variants[members[0]];
    g_string_append(out, "## Active experts h·k at fixed N\n\n");
    g_string_append(out, "N = ");
    append_experts(out, first->n_experts);
    g_string_append_printf(out, ", k = %d, the heads h varied, %s query norm.\n\n",
                           first->topk, norm_label(first->query_norm));
    g_string_append(out, "| h | k | h·k | Training FLOPs/token | Steps | Perplexity | Bits/byte | "
                         "Usage % | Unevenness |\n");
    g_string_append(out, "|---|---|---|---|---|---|---|---|---|\n");
    for (int m = 0; m < n; m++) {
        const experiment_variant *v = &ex->variants[members[m]];
        g_string_append_printf(out, "| %d | %d | %d | ", v->heads, v->topk, v->heads * v->topk);
        append_count(out, v->flops_per_step / v->settings.batch_size / v->settings.seq_len);
        g_string_append_printf(out, " | %ld |", v->settings.steps);
        append_quality(out, v, &r->results[members[m]], false);
        append_usage(out, &r->results[members[m]]);
        g_string_append(out, "\n");
    }
    g_string_append(out, "\n");
}

char *experiment_results_markdown(const experiment_results *r)
{
    const experiment *ex = r->ex;
    GString *out = g_string_new(NULL);
    int done = 0;
    for (int i = 0; i < ex->n_variants; i++)
        done += r->results[i].status == EXPERIMENT_DONE || r->results[i].status == EXPERIMENT_FAILED;
    g_string_append_printf(out, "Suite %s, base %s, %.3g training FLOPs per variant; %d of %d "
                                "variants finished.\n\n",
                           ex->suite, ex->base_name && *ex->base_name ? ex->base_name : "run",
                           ex->budget, done, ex->n_variants);
    table_methods(out, r);
    table_norm(out, r);
    table_experts(out, r);
    table_active(out, r);
    return g_string_free(out, FALSE);
}

static void csv_number(GString *out, double value)
{
    if (isfinite(value))
        g_string_append_printf(out, ",%.10g", value);
    else
        g_string_append(out, ",");
}

static char *groups_text(unsigned groups)
{
    GString *text = g_string_new(NULL);
    const struct { unsigned bit; const char *name; } names[] = {
        { EXPERIMENT_GROUP_METHODS, "methods" }, { EXPERIMENT_GROUP_EXPERTS, "experts" },
        { EXPERIMENT_GROUP_ACTIVE, "active" }, { EXPERIMENT_GROUP_NORM, "norm" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(names); i++)
        if (groups & names[i].bit)
            g_string_append_printf(text, "%s%s", text->len ? " " : "", names[i].name);
    return g_string_free(text, FALSE);
}

char *experiment_results_csv(const experiment_results *r)
{
    const experiment *ex = r->ex;
    GString *out = g_string_new(
        "name,label,method,groups,n_experts,heads,topk,query_norm,params,active_params,"
        "flops_per_step,steps,flops,status,step,val_loss,bits_per_byte,perplexity,usage,"
        "unevenness,dead,train_seconds\n");
    for (int i = 0; i < ex->n_variants; i++) {
        const experiment_variant *v = &ex->variants[i];
        const experiment_result *result = &r->results[i];
        g_autofree char *groups = groups_text(v->groups);
        bool retrieval = v->n_experts > 0;
        /* Labels hold commas: quoted, as RFC 4180 has it. */
        g_string_append_printf(out, "%s,\"%s\",%s,%s,", v->name, v->label,
                               experiment_method_name(v->method), groups);
        if (retrieval)
            g_string_append_printf(out, "%d,%d,%d,%s", v->n_experts, v->heads, v->topk,
                                   norm_label(v->query_norm));
        else
            g_string_append(out, ",,,");
        g_string_append_printf(out, ",%zu,%zu", v->params, v->active_params);
        csv_number(out, v->flops_per_step);
        g_string_append_printf(out, ",%ld", v->settings.steps);
        csv_number(out, v->flops);
        g_string_append_printf(out, ",%s,%ld", experiment_status_name(result->status),
                               result->step);
        csv_number(out, result->loss);
        csv_number(out, result->bits_per_byte);
        csv_number(out, result->perplexity);
        csv_number(out, result->usage);
        csv_number(out, result->unevenness);
        if (retrieval && result->status == EXPERIMENT_DONE)
            g_string_append_printf(out, ",%" G_GINT64_FORMAT, result->dead);
        else
            g_string_append(out, ",");
        csv_number(out, result->train_seconds);
        g_string_append(out, "\n");
    }
    return g_string_free(out, FALSE);
}

char *experiment_results_json(const experiment_results *r)
{
    const experiment *ex = r->ex;
    json_t *root = json_object();
    json_object_set_new(root, "suite", json_string(ex->suite));
    json_object_set_new(root, "budget", json_output_number(ex->budget));
    json_object_set_new(root, "base_name", json_string(ex->base_name ? ex->base_name : ""));
    json_object_set_new(root, "middle_block", json_integer(ex->middle));
    json_object_set_new(root, "text", ex->text_path ? json_string(ex->text_path) : json_null());
    json_t *variants = json_array();
    for (int i = 0; i < ex->n_variants; i++) {
        const experiment_variant *v = &ex->variants[i];
        const experiment_result *result = &r->results[i];
        g_autofree char *groups = groups_text(v->groups);
        json_t *item = json_object();
        json_object_set_new(item, "name", json_string(v->name));
        json_object_set_new(item, "label", json_string(v->label));
        json_object_set_new(item, "method", json_string(experiment_method_name(v->method)));
        json_t *group_list = json_array();
        char **parts = g_strsplit(groups, " ", -1);
        for (char **part = parts; *part; part++)
            if (**part)
                json_array_append_new(group_list, json_string(*part));
        g_strfreev(parts);
        json_object_set_new(item, "groups", group_list);
        if (v->n_experts > 0) {
            json_object_set_new(item, "n_experts", json_integer(v->n_experts));
            json_object_set_new(item, "heads", json_integer(v->heads));
            json_object_set_new(item, "topk", json_integer(v->topk));
            json_object_set_new(item, "query_norm", json_string(norm_label(v->query_norm)));
        }
        json_object_set_new(item, "params", json_integer((json_int_t)v->params));
        json_object_set_new(item, "active_params", json_integer((json_int_t)v->active_params));
        json_object_set_new(item, "flops_per_step", json_output_number(v->flops_per_step));
        json_object_set_new(item, "steps", json_integer(v->settings.steps));
        json_object_set_new(item, "flops", json_output_number(v->flops));
        json_object_set_new(item, "status", json_string(experiment_status_name(result->status)));
        json_object_set_new(item, "step", json_integer(result->step));
        json_object_set_new(item, "val_loss", json_output_number(result->loss));
        json_object_set_new(item, "bits_per_byte", json_output_number(result->bits_per_byte));
        json_object_set_new(item, "perplexity", json_output_number(result->perplexity));
        json_object_set_new(item, "usage", json_output_number(result->usage));
        json_object_set_new(item, "unevenness", json_output_number(result->unevenness));
        json_object_set_new(item, "train_seconds", json_output_number(result->train_seconds));
        if (result->message[0])
            json_object_set_new(item, "message", json_string(result->message));
        json_t *curve = json_array();
        for (int p = 0; p < result->n_points; p++)
            json_array_append_new(curve,
                                  json_pack("{s:I, s:o, s:o}", "step",
                                            (json_int_t)result->points[p].step, "flops",
                                            json_output_number(result->points[p].flops), "loss",
                                            json_output_number(result->points[p].loss)));
        json_object_set_new(item, "curve", curve);
        json_array_append_new(variants, item);
    }
    json_object_set_new(root, "variants", variants);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_OUTPUT_FLAGS);
    json_decref(root);
    char *result = text ? g_strconcat(text, "\n", NULL) : NULL;
    free(text);
    return result;
}

bool experiment_results_write(const experiment_results *r, const char *dir, peer_error *err)
{
    struct {
        const char *name;
        char *contents;
    } files[] = {
        { EXPERIMENT_RESULTS_JSON, experiment_results_json(r) },
        { EXPERIMENT_RESULTS_CSV, experiment_results_csv(r) },
        { EXPERIMENT_RESULTS_MARKDOWN, experiment_results_markdown(r) },
    };
    bool ok = true;
    for (size_t i = 0; i < G_N_ELEMENTS(files); i++) {
        g_autofree char *path = g_build_filename(dir, files[i].name, NULL);
        peer_error inner = { 0 };
        if (ok && !files[i].contents)
            ok = peer_error_set(err, "out of memory writing %s", path);
        else if (ok && !experiment_write_file(path, files[i].contents, strlen(files[i].contents),
                                              &inner))
            ok = peer_error_set(err, "cannot write %s: %s", path, inner.message);
        g_free(files[i].contents);
    }
    return ok;
}
