/* peer-trace: what retrieval did for each byte of a text. Runs a saved model on the text in
 * evaluation mode and, for every PEER and PKM layer (or one), every token and every head, lists
 * the chosen experts with their place on the n × n grid (row a from the first sub-key set,
 * column b from the second), their score, gate, activation and the size of their contribution. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "checkpoint.h"
#include "cli-common.h"
#include "json-output.h"
#include "model.h"
#include "retrieval-trace.h"

typedef struct {
    char *text;
    char *layer;
    char *threads;
    gboolean json;
} trace_options;

/* A byte as the table shows it: 'c' for printable ASCII, escapes for the rest. */
static const char *byte_label(uint8_t byte, char *buffer, size_t size)
{
    if (byte == '\n')
        g_strlcpy(buffer, "'\\n'", size);
    else if (byte == '\t')
        g_strlcpy(buffer, "'\\t'", size);
    else if (byte >= 0x20 && byte < 0x7f)
        g_snprintf(buffer, size, "'%c'", byte);
    else
        g_snprintf(buffer, size, "\\x%02x", byte);
    return buffer;
}

static bool is_traceable(const ffn_config *ffn)
{
    return ffn->kind == FFN_PEER || ffn->kind == FFN_PKM;
}

/* One token's trace at layer l of the last forward (batch 1, T tokens). */
static bool trace_token(const peer_model *model, int l, int t, peer_token_trace *trace,
                        peer_error *err)
{
    const ffn_config *ffn = &model->cfg.layers[l];
    int T = model->last_T, D = model->cfg.d_model;
    int HK = ffn->peer.heads * ffn->peer.d_key;
    const float *x = model->acts.ln2 + ((size_t)l * T + (size_t)t) * D;
    const float *query = model->acts.peer[l].query_normed + (size_t)t * HK;
    return peer_token_trace_compute(trace, &ffn->peer, &model->params.blocks[l].peer, x, query,
                                    err);
}

static void print_layer_heading(const peer_model *model, int l)
{
    const ffn_config *ffn = &model->cfg.layers[l];
    int side = peer_layer_side(&ffn->peer);
    printf("layer %d: %s, %d experts on a %d × %d grid, %d heads, top %d, %s keys\n", l,
           ffn_kind_name(ffn->kind), ffn->peer.n_experts, side, side, ffn->peer.heads,
           ffn->peer.topk, ffn->peer.shared_keys ? "shared" : "per-head");
    printf("%5s %6s %5s %5s %8s %5s %5s %10s %9s %11s %13s\n", "pos", "byte", "head", "rank",
           "expert", "row", "col", "score", "gate", "activation", "contribution");
}

static bool print_table(const peer_model *model, const uint8_t *text, int layer, peer_error *err)
{
    bool first = true;
    for (int l = 0; l < model->cfg.n_layers; l++) {
        if ((layer >= 0 && l != layer) || !is_traceable(&model->cfg.layers[l]))
            continue;
        if (!first)
            printf("\n");
        first = false;
        print_layer_heading(model, l);
        for (int t = 0; t < model->last_T; t++) {
            peer_token_trace trace;
            if (!trace_token(model, l, t, &trace, err))
                return false;
            char label[16];
            byte_label(text[t], label, sizeof label);
            for (int h = 0; h < trace.heads; h++) {
                const peer_head_trace *head = &trace.head[h];
                for (int r = 0; r < trace.topk; r++)
                    printf("%5d %6s %5d %5d %8d %5d %5d %10.4f %9.4f %11.4f %13.5f\n", t, label,
                           h, r, head->expert[r], head->row[r], head->col[r],
                           (double)head->score[r], (double)head->gate[r],
                           (double)head->activation[r], (double)head->contribution[r]);
            }
            peer_token_trace_free(&trace);
        }
    }
    return true;
}

static json_t *head_json(const peer_head_trace *head, int h, int topk)
{
    json_t *experts = json_array();
    for (int r = 0; experts && r < topk; r++)
        json_array_append_new(
            experts, json_pack("{s:i, s:i, s:i, s:o, s:o, s:o, s:o}", "expert", head->expert[r],
                               "row", head->row[r], "col", head->col[r], "score",
                               json_output_float(head->score[r]), "gate",
                               json_output_float(head->gate[r]), "activation",
                               json_output_float(head->activation[r]), "contribution",
                               json_output_float(head->contribution[r])));
    return experts ? json_pack("{s:i, s:i, s:o}", "head", h, "key_group", head->key_group,
                               "experts", experts)
                   : NULL;
}

static json_t *layer_json(const peer_model *model, const uint8_t *text, int l, peer_error *err)
{
    const ffn_config *ffn = &model->cfg.layers[l];
    json_t *tokens = json_array();
    for (int t = 0; tokens && t < model->last_T; t++) {
        peer_token_trace trace;
        if (!trace_token(model, l, t, &trace, err)) {
            json_decref(tokens);
            return NULL;
        }
        json_t *heads = json_array();
        for (int h = 0; heads && h < trace.heads; h++)
            json_array_append_new(heads, head_json(&trace.head[h], h, trace.topk));
        peer_token_trace_free(&trace);
        json_array_append_new(tokens, heads ? json_pack("{s:i, s:i, s:o}", "position", t, "byte",
                                                        text[t], "heads", heads)
                                            : NULL);
    }
    json_t *object = tokens ? json_pack("{s:i, s:s, s:i, s:i, s:i, s:i, s:b, s:o}", "layer", l,
                                        "kind", ffn_kind_name(ffn->kind), "experts",
                                        ffn->peer.n_experts, "side",
                                        peer_layer_side(&ffn->peer), "heads", ffn->peer.heads,
                                        "topk", ffn->peer.topk, "shared_keys",
                                        ffn->peer.shared_keys, "tokens", tokens)
                            : NULL;
    if (!object)
        peer_error_set(err, "out of memory writing the trace");
    return object;
}

static bool print_json(const peer_model *model, const char *checkpoint, const uint8_t *text,
                       int layer, peer_error *err)
{
    g_autofree char *checkpoint_name = g_filename_display_name(checkpoint);
    g_autofree char *shown = cli_printable_text(text, (size_t)model->last_T);
    json_t *layers = json_array();
    for (int l = 0; layers && l < model->cfg.n_layers; l++) {
        if ((layer >= 0 && l != layer) || !is_traceable(&model->cfg.layers[l]))
            continue;
        json_t *object = layer_json(model, text, l, err);
        if (!object) {
            json_decref(layers);
            return false;
        }
        json_array_append_new(layers, object);
    }
    json_t *root = layers ? json_pack("{s:s, s:s, s:i, s:o}", "checkpoint", checkpoint_name,
                                      "text", shown, "length", model->last_T, "layers", layers)
                          : NULL;
    char *dump = root ? json_dumps(root, JSON_COMPACT | JSON_OUTPUT_FLAGS) : NULL;
    json_decref(root);
    if (!dump)
        return peer_error_set(err, "out of memory writing the trace");
    printf("%s\n", dump);
    free(dump);
    return true;
}

static int run(const char *checkpoint, const trace_options *o)
{
    size_t length = strlen(o->text);
    if (length == 0) {
        cli_usage_error("--text is empty: give at least one byte to trace");
        return CLI_EXIT_USAGE;
    }
    int layer = -1;
    if (!cli_parse_int("--layer", o->layer, 0, MODEL_MAX_LAYERS - 1, &layer))
        return CLI_EXIT_USAGE;
    bool usage = false;
    thread_pool *pool = cli_thread_pool_new(o->threads, &usage);
    if (!pool)
        return usage ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;

    int status = CLI_EXIT_FAILURE;
    peer_error err = { 0 };
    peer_model *model = NULL;
    model_config cfg;
    if (!checkpoint_read_config(checkpoint, &cfg, &err)) {
        cli_error("%s", err.message);
        goto done;
    }
    int traceable = 0;
    for (int l = 0; l < cfg.n_layers; l++)
        traceable += is_traceable(&cfg.layers[l]);
    if (traceable == 0) {
        cli_error("%s has no PEER or PKM layer: there is no retrieval to trace", checkpoint);
        goto done;
    }
    if (layer >= cfg.n_layers || (layer >= 0 && !is_traceable(&cfg.layers[layer]))) {
        GString *list = g_string_new(NULL);
        for (int l = 0; l < cfg.n_layers; l++)
            if (is_traceable(&cfg.layers[l]))
                g_string_append_printf(list, "%s%d", list->len ? ", " : "", l);
        cli_usage_error("--layer %d is not a PEER or PKM layer of this model (those are: %s)",
                        layer, list->str);
        g_string_free(list, TRUE);
        status = CLI_EXIT_USAGE;
        goto done;
    }
    int T = length < (size_t)cfg.context ? (int)length : cfg.context;
    if ((size_t)T < length)
        fprintf(stderr, "%s: the text is %zu bytes long; tracing its first %d, the model's "
                        "context\n", cli_program(), length, T);
    model = checkpoint_load_model(checkpoint, 1, T, &err);
    if (!model) {
        cli_error("%s", err.message);
        goto done;
    }
    const uint8_t *text = (const uint8_t *)o->text;
    peer_model_forward(model, text, NULL, 1, T, PEER_MODE_EVAL, pool);
    bool ok = o->json ? print_json(model, checkpoint, text, layer, &err)
                      : print_table(model, text, layer, &err);
    if (!ok) {
        cli_error("%s", err.message);
        goto done;
    }
    if (fflush(stdout) != 0) {
        cli_error("cannot write the trace: %s", g_strerror(errno));
        goto done;
    }
    status = 0;

done:
    peer_model_free(model);
    thread_pool_free(pool);
    return status;
}

int main(int argc, char **argv)
{
    cli_init("peer-trace");
    trace_options o = { 0 };
    GOptionEntry entries[] = {
        { "text", 0, 0, G_OPTION_ARG_STRING, &o.text, "The text to trace (required)", "STRING" },
        { "layer", 'l', 0, G_OPTION_ARG_STRING, &o.layer,
          "Only this layer (counted from 0, as in the tensor names blocks.L)", "L" },
        { "json", 0, 0, G_OPTION_ARG_NONE, &o.json, "Print one JSON object instead of a table",
          NULL },
        { "threads", 't', 0, G_OPTION_ARG_STRING, &o.threads,
          "Worker threads (default: every processor)", "N" },
        G_OPTION_ENTRY_NULL,
    };
    GOptionContext *context = g_option_context_new("CHECKPOINT");
    g_option_context_set_summary(
        context,
        "Shows the retrieval path of each byte of a text through a saved model: per token,\n"
        "PEER or PKM layer and head, the chosen experts, their grid position (row a, column b),\n"
        "score, gate, activation σ(uᵀx) (1 for PKM) and contribution ‖gate·σ·v‖.");
    g_option_context_set_description(
        context,
        "Each byte is one token; a text longer than the model's context is cut to it. The\n"
        "model runs in evaluation mode, as peer-eval and peer-sample run it.\n"
        "\n"
        "Exit status: 0 done, 1 failed (unreadable checkpoint), 2 bad command line.");
    g_option_context_add_main_entries(context, entries, NULL);
    bool parsed = cli_parse_options(context, &argc, &argv, 1, 1, "the CHECKPOINT to trace");
    g_option_context_free(context);
    int status = CLI_EXIT_USAGE;
    if (parsed && !o.text)
        cli_usage_error("missing --text STRING: the text to trace");
    else if (parsed)
        status = run(argv[1], &o);
    g_free(o.text);
    g_free(o.layer);
    g_free(o.threads);
    return status;
}
