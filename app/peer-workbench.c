/* peer-workbench: until the workbench window exists, a command-line demo that trains a small
 * byte-level model with one PEER layer on the built-in Jane Austen corpus and reports its loss,
 * throughput and expert usage as it learns. */
#include <gio/gio.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "byte-model.h"
#include "expert-stats.h"
#include "peer-layer.h"
#include "rng.h"
#include "thread-pool.h"

#define CORPUS_RESOURCE "/org/peerworkbench/Workbench/corpus/austen.txt"

#define DEFAULT_STEPS 1000
#define MAX_STEPS 1000000
#define MAX_THREADS 256
#define BATCH_TOKENS 256
#define EVAL_TOKENS 4096 /* spread evenly over the validation text */
#define REPORTS 10       /* evaluations after step 0 */
#define SAMPLE_PROMPT "It is a truth universally acknowledged"
#define SAMPLE_BYTES 240
#define SAMPLE_TEMPERATURE 0.8
#define LN2 0.69314718055994531

typedef struct {
    const uint8_t *text; /* (size) */
    size_t size;
    size_t val_start;    /* the last 10% validates */
} demo_corpus;

typedef struct {
    gint steps;
    gint threads;
    gint64 seed;
} demo_options;

/* Parses argv into opts; on a bad flag prints why to stderr and returns false. */
static bool parse_options(int *argc, char ***argv, demo_options *opts)
{
    opts->steps = DEFAULT_STEPS;
    opts->threads = thread_pool_default_threads();
    opts->seed = 1;

    g_autofree char *steps_help = g_strdup_printf("Training steps (default %d)", DEFAULT_STEPS);
    g_autofree char *threads_help =
        g_strdup_printf("Worker threads (default %d, this machine's processors)", opts->threads);
    GOptionEntry entries[] = {
        { "steps", 's', 0, G_OPTION_ARG_INT, &opts->steps, steps_help, "N" },
        { "threads", 't', 0, G_OPTION_ARG_INT, &opts->threads, threads_help, "N" },
        { "seed", 0, 0, G_OPTION_ARG_INT64, &opts->seed,
          "Seed of the weights, the batches and the sample (default 1)", "N" },
        G_OPTION_ENTRY_NULL,
    };
    g_autoptr(GOptionContext) context = g_option_context_new(NULL);
    g_option_context_set_summary(context,
        "Trains a small byte-level model whose feed-forward part is a PEER layer (a pool of\n"
        "64² single-neuron experts chosen by product-key retrieval) on the six novels of Jane\n"
        "Austen built into the program, then samples a few lines from it.");
    g_option_context_add_main_entries(context, entries, NULL);

    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(context, argc, argv, &error)) {
        g_printerr("peer-workbench: %s\nTry “peer-workbench --help”.\n", error->message);
        return false;
    }
    if (*argc > 1) {
        g_printerr("peer-workbench: unexpected argument “%s”\nTry “peer-workbench --help”.\n",
                   (*argv)[1]);
        return false;
    }
    if (opts->steps < 1 || opts->steps > MAX_STEPS) {
        g_printerr("peer-workbench: --steps must be between 1 and %d, not %d\n", MAX_STEPS,
                   opts->steps);
        return false;
    }
    if (opts->threads < 1 || opts->threads > MAX_THREADS) {
        g_printerr("peer-workbench: --threads must be between 1 and %d, not %d\n", MAX_THREADS,
                   opts->threads);
        return false;
    }
    if (opts->seed < 0) {
        g_printerr("peer-workbench: --seed must be 0 or more, not %" G_GINT64_FORMAT "\n",
                   opts->seed);
        return false;
    }
    return true;
}

/* The context bytes and target of the token at position pos (pos >= BYTE_MODEL_CONTEXT). */
static void demo_corpus_token(const demo_corpus *text, size_t pos, uint8_t *context,
                              uint8_t *target)
{
    for (int c = 0; c < BYTE_MODEL_CONTEXT; c++)
        context[c] = text->text[pos - BYTE_MODEL_CONTEXT + c];
    *target = text->text[pos];
}

/* BT random positions in the training text, context included. */
static void demo_corpus_batch(const demo_corpus *text, peer_rng *rng, uint8_t *context,
                              uint8_t *targets, int BT)
{
    size_t span = text->val_start - BYTE_MODEL_CONTEXT;
    for (int t = 0; t < BT; t++) {
        size_t pos = BYTE_MODEL_CONTEXT + (size_t)(peer_rng_next(rng) % span);
        demo_corpus_token(text, pos, context + (size_t)t * BYTE_MODEL_CONTEXT, targets + t);
    }
}

/* Mean loss in bits per byte over EVAL_TOKENS fixed positions of the validation text, whose
 * context also lies inside it; stats collects the chosen experts. */
static double evaluate(byte_model *model, const demo_corpus *text, expert_stats *stats,
                       thread_pool *pool)
{
    uint8_t context[BATCH_TOKENS * BYTE_MODEL_CONTEXT];
    uint8_t targets[BATCH_TOKENS];
    size_t first = text->val_start + BYTE_MODEL_CONTEXT;
    size_t span = text->size - first;
    double total = 0.0;

    expert_stats_reset(stats);
    for (int done = 0; done < EVAL_TOKENS; done += BATCH_TOKENS) {
        int BT = EVAL_TOKENS - done < BATCH_TOKENS ? EVAL_TOKENS - done : BATCH_TOKENS;
        for (int t = 0; t < BT; t++) {
            size_t pos = first + (size_t)(done + t) * span / EVAL_TOKENS;
            demo_corpus_token(text, pos, context + (size_t)t * BYTE_MODEL_CONTEXT, targets + t);
        }
        float loss = byte_model_forward(model, context, targets, BT, PEER_MODE_EVAL, pool);
        total += (double)loss * BT;
        const peer_layer_acts *acts = &model->peer_acts;
        expert_stats_accumulate(stats, acts->expert, acts->gate, acts->preact, BT,
                                model->cfg.topk, model->cfg.activation);
    }
    return total / EVAL_TOKENS / LN2;
}

/* A byte drawn from softmax(logits / temperature). */
static uint8_t sample_byte(const float *logits, double temperature, peer_rng *rng)
{
    double weights[BYTE_MODEL_VOCAB];
    double max = logits[0];
    for (int i = 1; i < BYTE_MODEL_VOCAB; i++)
        if (logits[i] > max)
            max = logits[i];
    double sum = 0.0;
    for (int i = 0; i < BYTE_MODEL_VOCAB; i++) {
        weights[i] = exp((logits[i] - max) / temperature);
        sum += weights[i];
    }
    double u = peer_rng_uniform(rng) * sum;
    for (int i = 0; i < BYTE_MODEL_VOCAB; i++) {
        u -= weights[i];
        if (u < 0.0)
            return (uint8_t)i;
    }
    return BYTE_MODEL_VOCAB - 1;
}

/* The prompt followed by SAMPLE_BYTES bytes the model chose, one at a time. */
static char *sample_text(byte_model *model, peer_rng *rng, thread_pool *pool)
{
    GByteArray *bytes = g_byte_array_new();
    g_byte_array_append(bytes, (const guint8 *)SAMPLE_PROMPT, sizeof(SAMPLE_PROMPT) - 1);
    for (int i = 0; i < SAMPLE_BYTES; i++) {
        const uint8_t *context = bytes->data + bytes->len - BYTE_MODEL_CONTEXT;
        byte_model_forward(model, context, NULL, 1, PEER_MODE_EVAL, pool);
        uint8_t next = sample_byte(model->logits, SAMPLE_TEMPERATURE, rng);
        g_byte_array_append(bytes, &next, 1);
    }
    /* A byte model can emit half of a multi-byte character; show a replacement mark there. */
    char *text = g_utf8_make_valid((const char *)bytes->data, bytes->len);
    g_byte_array_unref(bytes);
    return text;
}

static void print_report(int step, double train_bpb, double val_bpb, double tokens_per_second,
                         const expert_stats *stats)
{
    expert_usage usage;
    expert_stats_usage(stats, -1, false, &usage);
    if (step == 0)
        printf("%6d %10s %9.3f %9s %9.1f%% %11.3f\n", step, "-", val_bpb, "-",
               100.0 * usage.usage, usage.unevenness);
    else
        printf("%6d %10.3f %9.3f %9.0f %9.1f%% %11.3f\n", step, train_bpb, val_bpb,
               tokens_per_second, 100.0 * usage.usage, usage.unevenness);
    fflush(stdout);
}

static int train(const demo_options *opts, const demo_corpus *text)
{
    const peer_layer_config cfg = {
        .d_model = 128,
        .n_experts = 64 * 64,
        .heads = 4,
        .topk = 8,
        .d_key = 64,
        .shared_keys = false,
        .query_norm = PEER_NORM_BATCH,
        .activation = PEER_ACTIVATION_GELU,
    };
    /* In a sweep of 1000-step runs, a dense rate of 1e-3 with expert rates from 5e-4 to 3e-3
     * ended between 2.55 and 2.6 bits per byte; 3e-3 and 1e-2 ended at 2.85, with retrieval
     * settled on 58% of the experts. 1e-3 for the expert tables is also the constant of the
     * product-key memory authors' code. */
    const adam_config dense_adam = { .learning_rate = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f,
                                     .eps = 1e-8f };
    const adam_config expert_adam = { .learning_rate = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f,
                                      .eps = 1e-8f };

    peer_error err = { 0 };
    if (!peer_layer_check_memory(&cfg, BATCH_TOKENS, peer_memory_available(), &err)) {
        g_printerr("peer-workbench: %s\n", err.message);
        return EXIT_FAILURE;
    }
    thread_pool *pool = thread_pool_new(opts->threads, &err);
    if (!pool) {
        g_printerr("peer-workbench: %s\n", err.message);
        return EXIT_FAILURE;
    }
    byte_model model;
    expert_stats stats;
    if (!byte_model_init(&model, &cfg, BATCH_TOKENS, (uint64_t)opts->seed, &err)) {
        g_printerr("peer-workbench: %s\n", err.message);
        thread_pool_free(pool);
        return EXIT_FAILURE;
    }
    if (!expert_stats_init(&stats, cfg.n_experts, cfg.heads, &err)) {
        g_printerr("peer-workbench: %s\n", err.message);
        byte_model_free(&model);
        thread_pool_free(pool);
        return EXIT_FAILURE;
    }

    int side = peer_layer_side(&cfg);
    printf("PEER Workbench %s: command-line training demo\n", PEER_WORKBENCH_VERSION);
    printf("corpus  Jane Austen's six novels, %zu bytes: train %zu, validation %zu (the last "
           "10%%)\n", text->size, text->val_start, text->size - text->val_start);
    printf("model   previous %d bytes -> D=%d -> x + PEER(x) -> next-byte logits\n",
           BYTE_MODEL_CONTEXT, cfg.d_model);
    printf("PEER    N=%d (%d²) experts, h=%d, k=%d, dk=%d, %s keys, %s query norm, %s\n",
           cfg.n_experts, side, cfg.heads, cfg.topk, cfg.d_key,
           cfg.shared_keys ? "shared" : "per-head", peer_query_norm_name(cfg.query_norm),
           peer_activation_name(cfg.activation));
    printf("params  %zu dense (Adam, lr %g), %zu in the expert tables (sparse Adam, lr %g)\n",
           byte_model_dense_count(&model), dense_adam.learning_rate,
           byte_model_expert_count(&model), expert_adam.learning_rate);
    printf("run     %d steps of %d tokens, %d thread%s, seed %" G_GINT64_FORMAT "\n",
           opts->steps, BATCH_TOKENS, opts->threads, opts->threads == 1 ? "" : "s", opts->seed);
    printf("\nLosses in bits per byte: train over the steps since the line before, val over %d\n"
           "validation tokens, whose expert choices also give the share of experts used and the\n"
           "unevenness (KL from uniform, nats).\n\n", EVAL_TOKENS);
    printf("%6s %10s %9s %9s %10s %11s\n", "step", "train", "val", "tok/s", "experts",
           "unevenness");

    print_report(0, 0.0, evaluate(&model, text, &stats, pool), 0.0, &stats);

    peer_rng rng;
    peer_rng_seed(&rng, (uint64_t)opts->seed ^ 0x9e3779b97f4a7c15ULL);
    uint8_t context[BATCH_TOKENS * BYTE_MODEL_CONTEXT];
    uint8_t targets[BATCH_TOKENS];
    int report_every = opts->steps < REPORTS ? 1 : opts->steps / REPORTS;
    double loss_sum = 0.0;
    int loss_steps = 0;
    gint64 train_us = 0;
    gint64 started = g_get_monotonic_time();
    int status = EXIT_SUCCESS;

    for (int step = 1; step <= opts->steps; step++) {
        gint64 t0 = g_get_monotonic_time();
        demo_corpus_batch(text, &rng, context, targets, BATCH_TOKENS);
        float loss = byte_model_forward(&model, context, targets, BATCH_TOKENS, PEER_MODE_TRAIN,
                                        pool);
        byte_model_zero_grad(&model);
        byte_model_backward(&model, context, targets, BATCH_TOKENS, pool);
        if (!byte_model_update(&model, &dense_adam, &expert_adam, step, pool, &err)) {
            g_printerr("peer-workbench: %s\n", err.message);
            status = EXIT_FAILURE;
            break;
        }
        train_us += g_get_monotonic_time() - t0;
        if (!isfinite(loss)) {
            g_printerr("peer-workbench: the training loss diverged at step %d\n", step);
            status = EXIT_FAILURE;
            break;
        }
        loss_sum += loss;
        loss_steps++;

        if (step % report_every == 0 || step == opts->steps) {
            double tokens_per_second = (double)loss_steps * BATCH_TOKENS / (train_us / 1e6);
            double val_bpb = evaluate(&model, text, &stats, pool);
            print_report(step, loss_sum / loss_steps / LN2, val_bpb, tokens_per_second, &stats);
            loss_sum = 0.0;
            loss_steps = 0;
            train_us = 0;
        }
    }

    if (status == EXIT_SUCCESS) {
        printf("\ntrained in %.1f s\n\n", (g_get_monotonic_time() - started) / 1e6);
        g_autofree char *sample = sample_text(&model, &rng, pool);
        printf("Sample (temperature %.1f), after the prompt \"%s\":\n\n%s\n", SAMPLE_TEMPERATURE,
               SAMPLE_PROMPT, sample);
    }

    expert_stats_free(&stats);
    byte_model_free(&model);
    thread_pool_free(pool);
    return status;
}

int main(int argc, char **argv)
{
    setlocale(LC_ALL, "");
    /* Numbers print the same everywhere, so runs can be compared and parsed. */
    setlocale(LC_NUMERIC, "C");
    demo_options opts;
    if (!parse_options(&argc, &argv, &opts))
        return 2;

    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) bytes =
        g_resources_lookup_data(CORPUS_RESOURCE, G_RESOURCE_LOOKUP_FLAGS_NONE, &error);
    if (!bytes) {
        g_printerr("peer-workbench: the built-in corpus is missing: %s\n", error->message);
        return EXIT_FAILURE;
    }
    demo_corpus text;
    text.text = g_bytes_get_data(bytes, &text.size);
    text.val_start = text.size - text.size / 10;
    return train(&opts, &text);
}
