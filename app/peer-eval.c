/* peer-eval: the loss of a saved model on a text, as one JSON object. The text is read from its
 * start as consecutive, non-overlapping windows of T + 1 bytes (T inputs and their T next bytes),
 * with the model in evaluation mode (batch-norm on its running statistics), so two programs
 * given the same file and T score exactly the same bytes. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "checkpoint.h"
#include "cli-common.h"
#include "eval-report.h"
#include "expert-stats.h"
#include "json-output.h"
#include "model.h"

/* Windows per forward: enough to keep the threads busy, few enough that the attention buffers
 * (B · heads · T² floats per layer) stay small at long contexts. */
#define EVAL_BATCH 8

typedef struct {
    char *text;
    char *seq;
    char *windows;
    char *threads;
} eval_options;

/* Mean cross-entropy over windows [0, W) of text, with each PEER and PKM layer's usage. */
static bool evaluate_text(peer_model *model, const uint8_t *text, int T, int W, thread_pool *pool,
                          eval_result *out, peer_error *err)
{
    memset(out, 0, sizeof *out);
    const model_config *cfg = &model->cfg;
    expert_stats stats[MODEL_MAX_LAYERS];
    expert_stats *stats_of[MODEL_MAX_LAYERS] = { 0 };
    bool ok = true;
    for (int l = 0; ok && l < cfg->n_layers; l++) {
        const ffn_config *ffn = &cfg->layers[l];
        if (ffn->kind != FFN_PEER && ffn->kind != FFN_PKM)
            continue;
        ok = expert_stats_init(&stats[l], ffn->peer.n_experts, ffn->peer.heads, err);
        if (ok)
            stats_of[l] = &stats[l];
    }
    int B = model->batch;
    uint8_t *tokens = g_malloc((size_t)B * T);
    uint8_t *targets = g_malloc((size_t)B * T);
    double loss_sum = 0.0;
    for (int w = 0; ok && w < W; w += B) {
        int count = W - w < B ? W - w : B;
        for (int b = 0; b < count; b++) {
            const uint8_t *window = text + (size_t)(w + b) * ((size_t)T + 1);
            memcpy(tokens + (size_t)b * T, window, (size_t)T);
            memcpy(targets + (size_t)b * T, window + 1, (size_t)T);
        }
        peer_model_forward(model, tokens, targets, count, T, PEER_MODE_EVAL, pool);
        loss_sum += model->last_ce * count * T;
        peer_model_accumulate_stats(model, stats_of);
    }
    if (ok) {
        out->tokens = (long)W * T;
        out->loss = loss_sum / (double)out->tokens;
        out->bits_per_byte = out->loss / M_LN2;
        out->perplexity = exp(out->loss);
        for (int l = 0; l < cfg->n_layers; l++)
            if (stats_of[l])
                expert_stats_usage(stats_of[l], -1, false, &out->usage[l]);
    }
    for (int l = 0; l < cfg->n_layers; l++)
        if (stats_of[l])
            expert_stats_free(stats_of[l]);
    g_free(tokens);
    g_free(targets);
    return ok;
}

/* The result as one line of JSON on stdout. */
static bool print_result(const char *checkpoint, const char *text_path, size_t size, int T, int W,
                         const model_config *cfg, const eval_result *result)
{
    g_autofree char *checkpoint_name = g_filename_display_name(checkpoint);
    g_autofree char *text_name = g_filename_display_name(text_path);
    json_t *report = eval_report_to_json(cfg, result);
    json_t *object = json_pack("{s:s, s:s, s:I, s:i, s:i}", "checkpoint", checkpoint_name,
                               "text", text_name, "bytes", (json_int_t)size, "seq", T,
                               "windows", W);
    char *json = NULL;
    if (report && object && json_object_update(object, report) == 0)
        json = json_dumps(object, JSON_COMPACT | JSON_OUTPUT_FLAGS);
    json_decref(report);
    json_decref(object);
    if (!json) {
        cli_error("out of memory writing the result");
        return false;
    }
    printf("%s\n", json);
    free(json);
    if (fflush(stdout) != 0) {
        cli_error("cannot write the result: %s", g_strerror(errno));
        return false;
    }
    return true;
}

static int run(const char *checkpoint, const eval_options *o)
{
    int T = 0, W = 0;
    if (!cli_parse_int("--seq", o->seq, 1, G_MAXINT, &T) ||
        !cli_parse_int("--windows", o->windows, 1, G_MAXINT, &W))
        return CLI_EXIT_USAGE;
    bool usage = false;
    thread_pool *pool = cli_thread_pool_new(o->threads, &usage);
    if (!pool)
        return usage ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;

    int status = CLI_EXIT_FAILURE;
    peer_error err = { 0 };
    peer_model *model = NULL;
    model_config cfg;
    g_autoptr(GBytes) bytes = NULL;
    if (!checkpoint_read_config(checkpoint, &cfg, &err)) {
        cli_error("%s", err.message);
        goto done;
    }
    if (!o->seq)
        T = cfg.context;
    if (T > cfg.context) {
        cli_usage_error("--seq: %d is longer than the model's context (use 1 to %d)", T,
                        cfg.context);
        status = CLI_EXIT_USAGE;
        goto done;
    }
    if (!cli_read_file(o->text, &bytes, &err)) {
        cli_error("%s", err.message);
        goto done;
    }
    gsize size = 0;
    const uint8_t *text = g_bytes_get_data(bytes, &size);
    size_t available = size / ((size_t)T + 1);
    if (available == 0) {
        cli_error("%s holds %zu bytes, shorter than one window of %d bytes (%d inputs and the "
                  "byte after each): give a longer text or a smaller --seq",
                  o->text, (size_t)size, T + 1, T);
        goto done;
    }
    if (!o->windows)
        W = available > G_MAXINT ? G_MAXINT : (int)available;
    if ((size_t)W > available) {
        cli_error("%s holds %zu bytes, which make %zu windows of %d bytes, not the %d --windows "
                  "asks for",
                  o->text, (size_t)size, available, T + 1, W);
        goto done;
    }
    model = checkpoint_load_model(checkpoint, W < EVAL_BATCH ? W : EVAL_BATCH, T, &err);
    if (!model) {
        cli_error("%s", err.message);
        goto done;
    }
    eval_result result;
    if (!evaluate_text(model, text, T, W, pool, &result, &err)) {
        cli_error("%s", err.message);
        goto done;
    }

    if (!print_result(checkpoint, o->text, size, T, W, &model->cfg, &result))
        goto done;
    status = 0;

done:
    peer_model_free(model);
    thread_pool_free(pool);
    return status;
}

int main(int argc, char **argv)
{
    cli_init("peer-eval");
    eval_options o = { 0 };
    GOptionEntry entries[] = {
        { "text", 0, 0, G_OPTION_ARG_FILENAME, &o.text, "The text to score (required)",
          "FILE" },
        { "seq", 0, 0, G_OPTION_ARG_STRING, &o.seq,
          "Inputs per window, T (default: the model's context)", "T" },
        { "windows", 0, 0, G_OPTION_ARG_STRING, &o.windows,
          "Windows to score, from the start (default: as many as the text holds)", "W" },
        { "threads", 't', 0, G_OPTION_ARG_STRING, &o.threads,
          "Worker threads (default: every processor)", "N" },
        G_OPTION_ENTRY_NULL,
    };
    GOptionContext *context = g_option_context_new("CHECKPOINT");
    g_option_context_set_summary(
        context,
        "Scores a saved model on a text: the mean next-byte cross-entropy over the first W\n"
        "consecutive, non-overlapping windows of T + 1 bytes of FILE, in evaluation mode.");
    g_option_context_set_description(
        context,
        "Prints one JSON object: checkpoint, text, bytes, seq, windows, loss (nats),\n"
        "bits_per_byte, perplexity, tokens (W × T) and, for each PEER and PKM layer, usage\n"
        "(the fraction of experts that received gate mass), unevenness (nats) and dead.\n"
        "\n"
        "Exit status: 0 done, 1 failed (unreadable input), 2 bad command line.");
    g_option_context_add_main_entries(context, entries, NULL);
    bool parsed = cli_parse_options(context, &argc, &argv, 1, 1, "the CHECKPOINT to evaluate");
    g_option_context_free(context);
    int status = CLI_EXIT_USAGE;
    if (parsed && !o.text)
        cli_usage_error("missing --text FILE: the text to evaluate on");
    else if (parsed)
        status = run(argv[1], &o);
    g_free(o.text);
    g_free(o.seq);
    g_free(o.windows);
    g_free(o.threads);
    return status;
}
