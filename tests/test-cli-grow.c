/* peer-train --grow, run as a user runs it: a saved run continues on another text with its PEER
 * layer's grid grown, every old expert and sub-key carried over (and, with
 * --freeze-old-experts, still exactly as saved after training), the grown checkpoint resumes,
 * and bad values end in exit status 2 (or 1 when memory is short) with a message naming the
 * value and the valid range. The program's path comes from PEER_TRAIN. */
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/wait.h>

#include "checkpoint.h"
#include "model-grow.h"
#include "rng.h"

static char *tmp_dir;
static char *run_file;  /* a two-block model whose block 1 is a PEER layer of 8 × 8 experts */
static char *text_a, *text_b;
static char *saved_a;   /* four steps on text A */

typedef struct {
    int status; /* exit status; -1 when the program did not exit (a crash) */
    char *out;
    char *err;
} run_result;

static void run_result_clear(run_result *r)
{
    g_clear_pointer(&r->out, g_free);
    g_clear_pointer(&r->err, g_free);
}

/* Runs peer-train with the NULL-terminated arguments. */
static run_result run_train(const char *first, ...)
{
    const char *path = g_getenv("PEER_TRAIN");
    if (!path)
        g_error("PEER_TRAIN is not set: run this test through meson test");
    GPtrArray *argv = g_ptr_array_new();
    g_ptr_array_add(argv, (char *)path);
    va_list args;
    va_start(args, first);
    for (const char *arg = first; arg; arg = va_arg(args, const char *))
        g_ptr_array_add(argv, (char *)arg);
    va_end(args);
    g_ptr_array_add(argv, NULL);
    run_result r = { .status = -1 };
    int wait_status = 0;
    g_autoptr(GError) error = NULL;
    if (!g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, &r.out,
                      &r.err, &wait_status, &error))
        g_error("cannot run %s: %s", path, error->message);
    if (WIFEXITED(wait_status))
        r.status = WEXITSTATUS(wait_status);
    g_ptr_array_free(argv, TRUE);
    return r;
}

static void assert_success(const run_result *r)
{
    if (r->status != 0)
        g_error("exit status %d, stderr:\n%s", r->status, r->err);
}

static char *tmp_path(const char *name)
{
    return g_build_filename(tmp_dir, name, NULL);
}

/* Words from a small vocabulary; different seeds give different texts. */
static char *write_text(const char *name, uint64_t seed, const char *const *words, int n_words)
{
    peer_rng rng;
    peer_rng_seed(&rng, seed);
    GString *text = g_string_new(NULL);
    while (text->len < 40000)
        g_string_append(text, words[peer_rng_next(&rng) % (uint64_t)n_words]);
    char *path = tmp_path(name);
    g_assert_true(g_file_set_contents(path, text->str, (gssize)text->len, NULL));
    g_string_free(text, TRUE);
    return path;
}

static void setup_files(void)
{
    GError *error = NULL;
    tmp_dir = g_dir_make_tmp("test-cli-grow-XXXXXX", &error);
    g_assert_no_error(error);
    run_file = tmp_path("run.json");
    static const char run[] =
        "{\"model\": {\"vocab_size\": 256, \"context\": 32, \"d_model\": 32, \"n_layers\": 2, "
        "\"n_heads\": 2, \"layers\": [{\"ffn\": \"dense\", \"d_ff\": 64}, {\"ffn\": \"peer\", "
        "\"n_experts\": 64, \"heads\": 2, \"topk\": 4, \"d_key\": 16, \"shared_keys\": false, "
        "\"query_norm\": \"batch\", \"activation\": \"gelu\"}]}, \"training\": {\"batch_size\": "
        "4, \"seq_len\": 32, \"steps\": 4, \"warmup\": 2, \"eval_interval\": 0, "
        "\"eval_windows\": 4}}";
    g_assert_true(g_file_set_contents(run_file, run, -1, NULL));
    static const char *const words_a[] = { "Elinor ", "Marianne ", "sister, ", "the ", "of ",
                                           "and ", "Norland. " };
    static const char *const words_b[] = { "Emma ", "Harriet ", "Highbury, ", "a ", "to ",
                                           "was ", "Knightley. " };
    text_a = write_text("a.txt", 1, words_a, G_N_ELEMENTS(words_a));
    text_b = write_text("b.txt", 2, words_b, G_N_ELEMENTS(words_b));
    saved_a = tmp_path("a.safetensors");
    run_result r = run_train("--config", run_file, "--text", text_a, "--save", saved_a,
                             "--threads", "1", NULL);
    assert_success(&r);
    run_result_clear(&r);
}

static peer_model *load(const char *path)
{
    peer_error err = { { 0 } };
    peer_model *model = checkpoint_load_model(path, 1, 0, &err);
    if (!model)
        g_error("%s: %s", path, err.message);
    return model;
}

static const float *param(const peer_model *model, const char *name)
{
    const model_tensor *t = peer_model_find_tensor(model, name);
    g_assert_nonnull(t);
    return t->param;
}

/* Old expert rows (of 8 × 8) at their places in the 12 × 12 grid, and old sub-keys (8 of 12 per
 * block), that are bit for bit the saved ones. */
static void count_kept(const peer_model *old, const peer_model *grown, int *kept_rows,
                       int *kept_keys)
{
    int D = old->cfg.d_model, n = 8, grown_n = 12, half = 8;
    *kept_rows = *kept_keys = 0;
    const char *tables[] = { "blocks.1.ffn.down", "blocks.1.ffn.up" };
    for (size_t i = 0; i < G_N_ELEMENTS(tables); i++)
        for (int e = 0; e < n * n; e++)
            *kept_rows += memcmp(param(old, tables[i]) + (size_t)e * D,
                                 param(grown, tables[i]) +
                                     (size_t)model_growth_expert_id(e, n, grown_n) * D,
                                 (size_t)D * sizeof(float)) == 0;
    for (int block = 0; block < 2 * 2; block++)
        for (int k = 0; k < n; k++)
            *kept_keys += memcmp(param(old, "blocks.1.ffn.keys") + ((size_t)block * n + k) * half,
                                 param(grown, "blocks.1.ffn.keys") +
                                     ((size_t)block * grown_n + k) * half,
                                 (size_t)half * sizeof(float)) == 0;
}

static void test_grow_and_hold(void)
{
    g_autofree char *held = tmp_path("b-held.safetensors");
    run_result r = run_train("--resume", saved_a, "--text", text_b, "--steps", "10", "--grow",
                             "1:144", "--freeze-old-experts", "--save", held, "--threads", "1",
                             NULL);
    assert_success(&r);
    g_assert_nonnull(strstr(r.out, "grown    layer 1: 64 → 144 experts (8² → 12²), the old "
                                   "ones held"));
    run_result_clear(&r);

    g_autofree char *free_run = tmp_path("b-free.safetensors");
    r = run_train("--resume", saved_a, "--text", text_b, "--steps", "10", "--grow", "144",
                  "--save", free_run, "--threads", "1", NULL);
    assert_success(&r);
    g_assert_nonnull(strstr(r.out, "grown    layer 1: 64 → 144 experts (8² → 12²)\n"));
    run_result_clear(&r);

    peer_model *old = load(saved_a), *grown_held = load(held), *grown_free = load(free_run);
    g_assert_cmpint(grown_held->cfg.layers[1].peer.n_experts, ==, 144);
    int kept_rows, kept_keys;
    /* Held: all 2 × 64 rows and 4 × 8 sub-keys as saved after six steps on text B. */
    count_kept(old, grown_held, &kept_rows, &kept_keys);
    g_assert_cmpint(kept_rows, ==, 128);
    g_assert_cmpint(kept_keys, ==, 32);
    /* Trained: the sub-keys and the rows of experts chosen in those steps moved. */
    count_kept(old, grown_free, &kept_rows, &kept_keys);
    g_assert_cmpint(kept_rows, <, 128);
    g_assert_cmpint(kept_keys, <, 32);
    /* The rest of the model trained either way. */
    g_assert_false(memcmp(param(old, "blocks.1.ffn.query.weight"),
                          param(grown_held, "blocks.1.ffn.query.weight"),
                          32 * 32 * sizeof(float)) == 0);
    peer_model_free(old);
    peer_model_free(grown_held);
    peer_model_free(grown_free);

    /* A grown checkpoint resumes as any other. */
    r = run_train("--resume", held, "--text", text_b, "--steps", "12", "--threads", "1", NULL);
    assert_success(&r);
    g_assert_nonnull(strstr(r.out, "peer N=144"));
    run_result_clear(&r);
}

static void expect_refusal(int status, const char *word1, const char *word2, const char *first,
                           ...)
{
    const char *argv[16] = { first };
    int argc = 1;
    va_list args;
    va_start(args, first);
    for (const char *arg; (arg = va_arg(args, const char *));)
        argv[argc++] = arg;
    va_end(args);
    run_result r = run_train(argv[0], argv[1], argv[2], argv[3], argv[4], argv[5], argv[6],
                             argv[7], argv[8], argv[9], NULL);
    if (r.status != status || !strstr(r.err, word1) || !strstr(r.err, word2))
        g_error("expected status %d and a message with “%s” and “%s”; got %d:\n%s", status,
                word1, word2, r.status, r.err);
    run_result_clear(&r);
}

static void test_refusals(void)
{
    expect_refusal(2, "not make a square grid", "use 121 (11²) or 144 (12²)", "--resume", saved_a,
                   "--grow", "1:143", NULL);
    expect_refusal(2, "layer 1: a grid of 7 × 7 = 49 experts", "use 8 to 32768", "--resume",
                   saved_a, "--grow", "1:49", NULL);
    expect_refusal(2, "layer 0 is a dense block", "only PEER and PKM", "--resume", saved_a,
                   "--grow", "0:144", NULL);
    expect_refusal(2, "--grow 4:144", "layers 0 to 1", "--resume", saved_a, "--grow", "4:144",
                   NULL);
    expect_refusal(2, "--grow LAYER", "“one” is not a whole number", "--resume", saved_a,
                   "--grow", "one:144", NULL);
    expect_refusal(2, "--grow needs --resume", "grows the expert grid of a saved run", "--config",
                   run_file, "--grow", "1:144", NULL);
    expect_refusal(2, "--freeze-old-experts needs --grow", "holds the experts", "--resume",
                   saved_a, "--freeze-old-experts", NULL);
    expect_refusal(2, "names layer 1 more than once", "one size per layer", "--resume", saved_a,
                   "--grow", "1:144", "--grow", "1:196", NULL);
    /* 2³⁰ experts of width 32: terabytes. */
    expect_refusal(1, "cannot grow the model", "memory is available", "--resume", saved_a,
                   "--grow", "1:1073741824", NULL);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    setup_files();
    g_test_add_func("/cli-grow/grow-and-hold", test_grow_and_hold);
    g_test_add_func("/cli-grow/refusals", test_refusals);
    int status = g_test_run();
    const char *names[] = { "run.json", "a.txt", "b.txt", "a.safetensors",
                            "a.trainer.safetensors", "b-held.safetensors",
                            "b-held.trainer.safetensors", "b-free.safetensors",
                            "b-free.trainer.safetensors" };
    for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
        g_autofree char *path = tmp_path(names[i]);
        g_unlink(path);
    }
    g_rmdir(tmp_dir);
    g_free(tmp_dir);
    g_free(run_file);
    g_free(text_a);
    g_free(text_b);
    g_free(saved_a);
    return status;
}
