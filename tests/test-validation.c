/* What the engine says when a configuration cannot work: it returns false with a message naming
 * the offending value and what would be valid, and never prints anything itself. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "test-util.h"

static peer_layer_config valid_config(void)
{
    return test_config(64, 4096, 4, 8, 32, false, PEER_NORM_BATCH, PEER_ACTIVATION_GELU);
}

/* Every engine call of this file runs with stdout and stderr sent to a file, which must stay
 * empty: an engine that prints would garble the programs and the TAP output of the tests. */
typedef struct {
    int saved_out, saved_err;
    FILE *capture;
} silence_check;

static void silence_begin(silence_check *check)
{
    fflush(stdout);
    fflush(stderr);
    check->capture = tmpfile();
    g_assert_nonnull(check->capture);
    check->saved_out = dup(STDOUT_FILENO);
    check->saved_err = dup(STDERR_FILENO);
    g_assert_cmpint(check->saved_out, >=, 0);
    g_assert_cmpint(check->saved_err, >=, 0);
    g_assert_cmpint(dup2(fileno(check->capture), STDOUT_FILENO), ==, STDOUT_FILENO);
    g_assert_cmpint(dup2(fileno(check->capture), STDERR_FILENO), ==, STDERR_FILENO);
}

static void silence_end(silence_check *check)
{
    fflush(stdout);
    fflush(stderr);
    dup2(check->saved_out, STDOUT_FILENO);
    dup2(check->saved_err, STDERR_FILENO);
    close(check->saved_out);
    close(check->saved_err);
    fseek(check->capture, 0, SEEK_END);
    long size = ftell(check->capture);
    char printed[200] = { 0 };
    rewind(check->capture);
    size_t got = fread(printed, 1, sizeof printed - 1, check->capture);
    fclose(check->capture);
    if (size != 0)
        test_fail("the engine printed %ld bytes: \"%.*s\"", size, (int)got, printed);
}

/* Validates cfg, expecting a refusal whose message contains every one of the NULL-terminated
 * words. */
static G_GNUC_NULL_TERMINATED void expect_rejected(const peer_layer_config *cfg, ...)
{
    peer_error err;
    memset(&err, 0, sizeof err);
    silence_check check;
    silence_begin(&check);
    bool ok = peer_layer_config_validate(cfg, &err);
    silence_end(&check);
    char *described = test_config_describe(cfg);
    g_test_message("%s: %s", described, err.message);
    if (ok)
        test_fail("%s was accepted", described);
    g_assert_cmpuint(strlen(err.message), >, 0);
    va_list args;
    va_start(args, cfg);
    for (const char *word = va_arg(args, const char *); word; word = va_arg(args, const char *))
        if (!strstr(err.message, word))
            test_fail("the message for %s lacks \"%s\": %s", described, word, err.message);
    va_end(args);
    g_free(described);
}

static void test_valid_config(void)
{
    peer_layer_config cfg = valid_config();
    peer_error err;
    silence_check check;
    silence_begin(&check);
    bool ok = peer_layer_config_validate(&cfg, &err);
    silence_end(&check);
    if (!ok)
        test_fail("a valid config was refused: %s", err.message);

    /* The extremes of the valid ranges. */
    peer_layer_config edge = test_config(1, 1, 1, 1, 2, true, PEER_NORM_NONE,
                                         PEER_ACTIVATION_RELU);
    g_assert_true(peer_layer_config_validate(&edge, &err));
    edge = test_config(8, 64, 2, 8, 4, false, PEER_NORM_LAYER, PEER_ACTIVATION_GELU);
    g_assert_true(peer_layer_config_validate(&edge, &err)); /* k = n */
    g_assert_cmpint(peer_layer_side(&edge), ==, 8);
    g_assert_cmpint(peer_layer_key_groups(&edge), ==, 2);
    edge.shared_keys = true;
    g_assert_cmpint(peer_layer_key_groups(&edge), ==, 1);
}

static void test_not_square(void)
{
    peer_layer_config cfg = valid_config();
    cfg.n_experts = 1000;
    /* √1000 ≈ 31.6: the message offers the squares on either side. */
    expect_rejected(&cfg, "n_experts", "1000", "perfect square", "961", "1024", NULL);
    cfg.n_experts = 1048575;
    expect_rejected(&cfg, "1048575", "perfect square", NULL);
}

static void test_topk_range(void)
{
    peer_layer_config cfg = valid_config();
    cfg.n_experts = 1024; /* n = 32 */
    cfg.topk = 33;
    expect_rejected(&cfg, "topk", "33", "32", NULL);
    cfg.topk = 0;
    expect_rejected(&cfg, "topk = 0", "at least 1", NULL);
    cfg.topk = -3;
    expect_rejected(&cfg, "topk = -3", NULL);
}

static void test_odd_key(void)
{
    peer_layer_config cfg = valid_config();
    cfg.d_key = 31;
    expect_rejected(&cfg, "d_key", "31", "even", NULL);
    cfg.d_key = 1;
    expect_rejected(&cfg, "d_key = 1", NULL);
}

static void test_zero_sizes(void)
{
    peer_layer_config cfg = valid_config();
    cfg.d_model = 0;
    expect_rejected(&cfg, "d_model = 0", NULL);
    cfg = valid_config();
    cfg.heads = 0;
    expect_rejected(&cfg, "heads = 0", NULL);
    cfg = valid_config();
    cfg.n_experts = 0;
    expect_rejected(&cfg, "n_experts = 0", NULL);
    cfg = valid_config();
    cfg.d_key = 0;
    expect_rejected(&cfg, "d_key = 0", NULL);
    cfg = valid_config();
    cfg.n_experts = -4;
    expect_rejected(&cfg, "n_experts = -4", NULL);
}

static void test_unknown_enums(void)
{
    peer_layer_config cfg = valid_config();
    cfg.query_norm = (peer_query_norm)7;
    expect_rejected(&cfg, "query_norm", "7", NULL);
    cfg = valid_config();
    cfg.activation = (peer_activation)9;
    expect_rejected(&cfg, "activation", "9", NULL);
}

static void test_memory(void)
{
    const size_t gib = (size_t)1 << 30;
    int tokens = 2048;
    peer_layer_config cfg = test_config(1024, 1024 * 1024, 8, 16, 128, false, PEER_NORM_BATCH,
                                        PEER_ACTIVATION_GELU);
    peer_memory need;
    peer_layer_memory_estimate(&cfg, tokens, &need);
    /* 2·N·D floats of expert tables alone are 8 GiB; with their Adam moments three times that. */
    g_assert_cmpuint(need.params, >=, 2 * (size_t)cfg.n_experts * cfg.d_model * sizeof(float));
    g_assert_cmpuint(need.params, ==, peer_layer_params_count(&cfg) * sizeof(float));
    g_assert_cmpuint(need.optimizer, >=, 2 * need.params - 2 * 1024 * 128 * sizeof(float));
    g_assert_cmpuint(peer_memory_total(&need), ==,
                     need.params + need.grads + need.optimizer + need.activations);
    g_assert_cmpuint(peer_memory_total(&need), >, 16 * gib);

    /* The largest pool that fits in 1 GiB, found here by walking every square. */
    int fit = 0;
    for (int n = 1; n <= 1024; n++) {
        peer_layer_config smaller = cfg;
        smaller.n_experts = n * n;
        peer_memory m;
        peer_layer_memory_estimate(&smaller, tokens, &m);
        if (peer_memory_total(&m) <= gib)
            fit = n;
    }
    g_assert_cmpint(fit, >, 16);

    peer_error err;
    memset(&err, 0, sizeof err);
    silence_check check;
    silence_begin(&check);
    bool ok = peer_layer_check_memory(&cfg, tokens, gib, &err);
    silence_end(&check);
    g_test_message("%s", err.message);
    g_assert_false(ok);
    char *fit_text = g_strdup_printf("%d", fit * fit);
    const char *words[] = { "n_experts = 1048576", "d_model = 1024", "GiB", "1.0 GiB",
                            fit_text };
    for (size_t i = 0; i < G_N_ELEMENTS(words); i++)
        if (!strstr(err.message, words[i]))
            test_fail("the memory message lacks \"%s\": %s", words[i], err.message);
    /* The need it names is the estimate's total. */
    char *need_text = g_strdup_printf("%.1f GiB", (double)peer_memory_total(&need) / (double)gib);
    if (!strstr(err.message, need_text))
        test_fail("the memory message does not name the %s needed: %s", need_text, err.message);
    g_free(need_text);
    g_free(fit_text);

    /* The same layer fits when the memory is there, and a small one fits in 1 GiB. */
    g_assert_true(peer_layer_check_memory(&cfg, tokens, peer_memory_total(&need), &err));
    peer_layer_config small = valid_config();
    g_assert_true(peer_layer_check_memory(&small, tokens, gib, &err));
    g_assert_cmpuint(peer_memory_available(), >, 0);
}

static void test_other_refusals(void)
{
    peer_layer_config cfg = valid_config();
    peer_error err;
    memset(&err, 0, sizeof err);
    silence_check check;
    silence_begin(&check);
    peer_layer_acts acts;
    memset(&acts, 0, sizeof acts);
    bool acts_ok = peer_layer_acts_init(&acts, &cfg, 0, &err);
    silence_end(&check);
    g_assert_false(acts_ok);
    g_assert_nonnull(strstr(err.message, "max_tokens = 0"));

    memset(&err, 0, sizeof err);
    silence_begin(&check);
    thread_pool *pool = thread_pool_new(0, &err);
    silence_end(&check);
    g_assert_null(pool);
    g_assert_nonnull(strstr(err.message, "threads = 0"));
    char *too_many = g_strdup_printf("threads = %d", THREAD_POOL_MAX_THREADS + 1);
    char *limit = g_strdup_printf("%d", THREAD_POOL_MAX_THREADS);
    silence_begin(&check);
    pool = thread_pool_new(THREAD_POOL_MAX_THREADS + 1, &err);
    silence_end(&check);
    g_assert_null(pool);
    g_assert_nonnull(strstr(err.message, too_many));
    g_assert_nonnull(strstr(err.message, limit));
    g_free(limit);
    g_free(too_many);

    /* A NULL error is allowed: the caller only wants the verdict. */
    cfg.n_experts = 1000;
    silence_begin(&check);
    bool ok = peer_layer_config_validate(&cfg, NULL);
    silence_end(&check);
    g_assert_false(ok);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/validation/valid", test_valid_config);
    g_test_add_func("/validation/not-square", test_not_square);
    g_test_add_func("/validation/topk-range", test_topk_range);
    g_test_add_func("/validation/odd-key", test_odd_key);
    g_test_add_func("/validation/zero-sizes", test_zero_sizes);
    g_test_add_func("/validation/unknown-enums", test_unknown_enums);
    g_test_add_func("/validation/memory", test_memory);
    g_test_add_func("/validation/other-refusals", test_other_refusals);
    return g_test_run();
}
