/* peer-sample: a saved model continues a prompt, one byte at a time. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "checkpoint.h"
#include "cli-common.h"
#include "model.h"
#include "sampler.h"

#define DEFAULT_LENGTH 200
#define MAX_LENGTH 10000000
#define DEFAULT_TEMPERATURE 0.8
#define MAX_TEMPERATURE 100.0
#define DEFAULT_SEED 1

typedef struct {
    char *prompt;
    char *length;
    char *temperature;
    char *top_k;
    char *seed;
    char *threads;
} sample_options;

static int run(const char *checkpoint, const sample_options *o)
{
    size_t prompt_len = strlen(o->prompt);
    if (prompt_len == 0) {
        cli_usage_error("--prompt is empty: give at least one byte for the model to continue");
        return CLI_EXIT_USAGE;
    }
    long length = DEFAULT_LENGTH;
    double temperature = DEFAULT_TEMPERATURE;
    int top_k = 0;
    uint64_t seed = DEFAULT_SEED;
    /* The lower bound keeps 1/temperature finite in float. */
    if (!cli_parse_long("--length", o->length, 0, MAX_LENGTH, &length) ||
        !cli_parse_double("--temperature", o->temperature, 1e-3, MAX_TEMPERATURE,
                          &temperature) ||
        !cli_parse_int("--top-k", o->top_k, 0, 256, &top_k) ||
        !cli_parse_seed("--seed", o->seed, &seed))
        return CLI_EXIT_USAGE;
    bool usage = false;
    thread_pool *pool = cli_thread_pool_new(o->threads, &usage);
    if (!pool)
        return usage ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;

    int status = CLI_EXIT_FAILURE;
    peer_error err = { 0 };
    uint8_t *out = NULL;
    peer_model *model = checkpoint_load_model(checkpoint, 1, 0, &err);
    if (!model) {
        cli_error("%s", err.message);
        goto done;
    }
    if (top_k > model->cfg.vocab_size) {
        cli_usage_error("--top-k: %d is more than the model's %d bytes (use 0 to %d)", top_k,
                        model->cfg.vocab_size, model->cfg.vocab_size);
        status = CLI_EXIT_USAGE;
        goto done;
    }
    out = g_try_malloc((size_t)length + 1);
    if (!out) {
        cli_error("out of memory for %ld bytes of text", length);
        goto done;
    }
    sampler_settings settings = { .temperature = (float)temperature, .top_k = top_k };
    peer_rng rng;
    peer_rng_seed(&rng, seed);
    if (length > 0 && !sampler_generate(model, (const uint8_t *)o->prompt, prompt_len, out,
                                        (size_t)length, &settings, &rng, pool, &err)) {
        cli_error("%s", err.message);
        goto done;
    }
    /* The bytes as the model chose them: a pipe gets exactly what was generated. */
    fwrite(o->prompt, 1, prompt_len, stdout);
    fwrite(out, 1, (size_t)length, stdout);
    fputc('\n', stdout);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        cli_error("cannot write the text: %s", g_strerror(errno));
        goto done;
    }
    status = 0;

done:
    g_free(out);
    peer_model_free(model);
    thread_pool_free(pool);
    return status;
}

int main(int argc, char **argv)
{
    cli_init("peer-sample");
    sample_options o = { 0 };
    g_autofree char *length_help =
        g_strdup_printf("Bytes to generate (default %d)", DEFAULT_LENGTH);
    g_autofree char *temperature_help = g_strdup_printf(
        "Softmax temperature: lower is more predictable (default %.1f)", DEFAULT_TEMPERATURE);
    g_autofree char *seed_help =
        g_strdup_printf("Seed of the sampling; the same seed gives the same text (default %d)",
                        DEFAULT_SEED);
    GOptionEntry entries[] = {
        { "prompt", 'p', 0, G_OPTION_ARG_STRING, &o.prompt,
          "The text to continue (required); only its last context bytes are seen", "STRING" },
        { "length", 'n', 0, G_OPTION_ARG_STRING, &o.length, length_help, "N" },
        { "temperature", 0, 0, G_OPTION_ARG_STRING, &o.temperature, temperature_help, "X" },
        { "top-k", 'k', 0, G_OPTION_ARG_STRING, &o.top_k,
          "Sample among the K likeliest bytes only, 0 for all (default 0)", "K" },
        { "seed", 0, 0, G_OPTION_ARG_STRING, &o.seed, seed_help, "S" },
        { "threads", 't', 0, G_OPTION_ARG_STRING, &o.threads,
          "Worker threads (default: every processor)", "N" },
        G_OPTION_ENTRY_NULL,
    };
    GOptionContext *context = g_option_context_new("CHECKPOINT");
    g_option_context_set_summary(
        context,
        "Generates text with a saved model: the prompt, then the bytes the model samples after\n"
        "it, written to standard output as they are, with a newline at the end.");
    g_option_context_set_description(
        context, "Exit status: 0 done, 1 failed (unreadable checkpoint), 2 bad command line.");
    g_option_context_add_main_entries(context, entries, NULL);
    bool parsed = cli_parse_options(context, &argc, &argv, 1, 1, "the CHECKPOINT to sample from");
    g_option_context_free(context);
    int status = CLI_EXIT_USAGE;
    if (parsed && !o.prompt)
        cli_usage_error("missing --prompt STRING: the text for the model to continue");
    else if (parsed)
        status = run(argv[1], &o);
    g_free(o.prompt);
    g_free(o.length);
    g_free(o.temperature);
    g_free(o.top_k);
    g_free(o.seed);
    g_free(o.threads);
    return status;
}
