/* The model config that checkpoints carry: the contract's example parses to the expected fields,
 * writing and parsing again gives the same config, and every refusal names the layer, the field,
 * the value and what would be valid. The fuzzing corpus (fuzz/corpus/model-config) is replayed. */
#include <stdarg.h>
#include <string.h>

#include "model-config.h"
#include "test-util.h"

#define CONTRACT_EXAMPLE                                                                        \
    "{\"vocab_size\": 256, \"context\": 256, \"d_model\": 128, \"n_layers\": 4, \"n_heads\": 4,\n" \
    " \"layers\": [{\"ffn\": \"dense\", \"d_ff\": 512},\n"                                      \
    "            {\"ffn\": \"peer\", \"n_experts\": 16384, \"heads\": 8, \"topk\": 8, "          \
    "\"d_key\": 64,\n"                                                                          \
    "             \"shared_keys\": false, \"query_norm\": \"batch\", \"activation\": \"gelu\"},\n" \
    "            {\"ffn\": \"pkm\", \"n_memories\": 16384, \"heads\": 4, \"topk\": 32, "         \
    "\"d_key\": 64,\n"                                                                          \
    "             \"shared_keys\": false, \"query_norm\": \"batch\"},\n"                         \
    "            {\"ffn\": \"moe\", \"n_experts\": 8, \"topk\": 2, \"d_ff\": 512}]}"

#define CONTRACT_COMPACT                                                                        \
    "{\"vocab_size\":256,\"context\":256,\"d_model\":128,\"n_layers\":4,\"n_heads\":4,"         \
    "\"layers\":[{\"ffn\":\"dense\",\"d_ff\":512},"                                            \
    "{\"ffn\":\"peer\",\"n_experts\":16384,\"heads\":8,\"topk\":8,\"d_key\":64,"               \
    "\"shared_keys\":false,\"query_norm\":\"batch\",\"activation\":\"gelu\"},"                 \
    "{\"ffn\":\"pkm\",\"n_memories\":16384,\"heads\":4,\"topk\":32,\"d_key\":64,"              \
    "\"shared_keys\":false,\"query_norm\":\"batch\"},"                                         \
    "{\"ffn\":\"moe\",\"n_experts\":8,\"topk\":2,\"d_ff\":512}]}"

static model_config parse_example(void)
{
    model_config cfg;
    peer_error err = { "" };
    if (!model_config_from_json(&cfg, CONTRACT_EXAMPLE, &err))
        test_fail("the contract's example was refused: %s", err.message);
    return cfg;
}

static void assert_contains_all(const char *message, const char *what, va_list words)
{
    g_assert_cmpuint(strlen(message), >, 0);
    for (const char *word = va_arg(words, const char *); word; word = va_arg(words, const char *))
        if (!strstr(message, word))
            test_fail("the message for %s lacks \"%s\": %s", what, word, message);
}

/* Validation refuses cfg with a message holding every one of the NULL-terminated words. */
static G_GNUC_NULL_TERMINATED void expect_invalid(const model_config *cfg, const char *what, ...)
{
    peer_error err = { "" };
    bool ok = model_config_validate(cfg, &err);
    g_test_message("%s: %s", what, err.message);
    if (ok)
        test_fail("%s was accepted", what);
    va_list words;
    va_start(words, what);
    assert_contains_all(err.message, what, words);
    va_end(words);
}

/* Parsing the example with `from` replaced by `to` is refused with every one of the words. */
static G_GNUC_NULL_TERMINATED void expect_unparsed(const char *from, const char *to, ...)
{
    char *json = g_strdup(CONTRACT_EXAMPLE);
    char *at = strstr(json, from);
    if (!at)
        test_fail("\"%s\" is not in the example", from);
    char *changed = g_strdup_printf("%.*s%s%s", (int)(at - json), json, to, at + strlen(from));
    model_config cfg;
    peer_error err = { "" };
    bool ok = model_config_from_json(&cfg, changed, &err);
    char *what = g_strdup_printf("'%s' -> '%s'", from, to);
    g_test_message("%s: %s", what, err.message);
    if (ok)
        test_fail("%s was accepted", what);
    va_list words;
    va_start(words, to);
    assert_contains_all(err.message, what, words);
    va_end(words);
    g_free(what);
    g_free(changed);
    g_free(json);
}

static void test_contract_example(void)
{
    model_config cfg = parse_example();
    g_assert_cmpint(cfg.vocab_size, ==, 256);
    g_assert_cmpint(cfg.context, ==, 256);
    g_assert_cmpint(cfg.d_model, ==, 128);
    g_assert_cmpint(cfg.n_layers, ==, 4);
    g_assert_cmpint(cfg.n_heads, ==, 4);

    g_assert_cmpint(cfg.layers[0].kind, ==, FFN_DENSE);
    g_assert_cmpint(cfg.layers[0].d_ff, ==, 512);

    const peer_layer_config *peer = &cfg.layers[1].peer;
    g_assert_cmpint(cfg.layers[1].kind, ==, FFN_PEER);
    g_assert_cmpint(peer->d_model, ==, 128);
    g_assert_cmpint(peer->n_experts, ==, 16384);
    g_assert_cmpint(peer->heads, ==, 8);
    g_assert_cmpint(peer->topk, ==, 8);
    g_assert_cmpint(peer->d_key, ==, 64);
    g_assert_false(peer->shared_keys);
    g_assert_cmpint(peer->query_norm, ==, PEER_NORM_BATCH);
    g_assert_cmpint(peer->activation, ==, PEER_ACTIVATION_GELU);

    const peer_layer_config *pkm = &cfg.layers[2].peer;
    g_assert_cmpint(cfg.layers[2].kind, ==, FFN_PKM);
    g_assert_cmpint(pkm->d_model, ==, 128);
    g_assert_cmpint(pkm->n_experts, ==, 16384);
    g_assert_cmpint(pkm->heads, ==, 4);
    g_assert_cmpint(pkm->topk, ==, 32);
    g_assert_cmpint(pkm->d_key, ==, 64);
    g_assert_false(pkm->shared_keys);
    g_assert_cmpint(pkm->query_norm, ==, PEER_NORM_BATCH);
    g_assert_cmpint(pkm->activation, ==, PEER_ACTIVATION_GELU);

    g_assert_cmpint(cfg.layers[3].kind, ==, FFN_MOE);
    g_assert_cmpint(cfg.layers[3].moe_experts, ==, 8);
    g_assert_cmpint(cfg.layers[3].moe_topk, ==, 2);
    g_assert_cmpint(cfg.layers[3].d_ff, ==, 512);

    g_assert_cmpstr(ffn_kind_name(FFN_DENSE), ==, "dense");
    g_assert_cmpstr(ffn_kind_name(FFN_PEER), ==, "peer");
    g_assert_cmpstr(ffn_kind_name(FFN_PKM), ==, "pkm");
    g_assert_cmpstr(ffn_kind_name(FFN_MOE), ==, "moe");
}

static void test_round_trip(void)
{
    model_config cfg = parse_example();
    char *json = model_config_to_json(&cfg);
    g_assert_nonnull(json);
    /* Compact, and in the contract's key order. */
    g_assert_cmpstr(json, ==, CONTRACT_COMPACT);

    model_config again;
    peer_error err = { "" };
    if (!model_config_from_json(&again, json, &err))
        test_fail("its own JSON was refused: %s", err.message);
    g_assert_cmpmem(&again, sizeof again, &cfg, sizeof cfg);
    free(json);

    /* The other choices of every enum and flag. */
    cfg.layers[1].peer.shared_keys = true;
    cfg.layers[1].peer.query_norm = PEER_NORM_LAYER;
    cfg.layers[1].peer.activation = PEER_ACTIVATION_RELU;
    cfg.layers[2].peer.query_norm = PEER_NORM_NONE;
    cfg.layers[2].peer.shared_keys = true;
    json = model_config_to_json(&cfg);
    g_assert_nonnull(json);
    g_assert_nonnull(strstr(json, "\"shared_keys\":true,\"query_norm\":\"layer\","
                                  "\"activation\":\"relu\""));
    g_assert_nonnull(strstr(json, "\"shared_keys\":true,\"query_norm\":\"none\"}"));
    if (!model_config_from_json(&again, json, &err))
        test_fail("its own JSON was refused: %s", err.message);
    g_assert_cmpmem(&again, sizeof again, &cfg, sizeof cfg);
    free(json);
}

static void test_validation_messages(void)
{
    const model_config good = parse_example();
    g_assert_true(model_config_validate(&good, NULL));
    model_config cfg;

#define BROKEN(statement, ...)                                                                  \
    do {                                                                                        \
        cfg = good;                                                                             \
        statement;                                                                              \
        expect_invalid(&cfg, #statement, __VA_ARGS__, NULL);                                    \
    } while (0)

    BROKEN(cfg.vocab_size = 50257, "vocab_size", "50257", "bytes", "256");
    BROKEN(cfg.context = 0, "context", "0", "1 to 65536");
    BROKEN(cfg.context = 65537, "context", "65537", "1 to 65536");
    BROKEN(cfg.d_model = 0, "d_model", "= 0", "1 to 65536");
    BROKEN(cfg.n_heads = 0, "n_heads", "= 0", "at least 1");
    BROKEN(cfg.n_heads = 5, "n_heads = 5", "d_model = 128", "4 or 8");
    BROKEN(cfg.n_heads = 200, "n_heads = 200", "d_model = 128", "such as 128");
    BROKEN(cfg.n_layers = 0, "n_layers", "= 0", "1 to 64");
    BROKEN(cfg.n_layers = MODEL_MAX_LAYERS + 1, "n_layers", "65", "1 to 64");
    BROKEN(cfg.layers[0].d_ff = 0, "layer 0 (dense)", "d_ff = 0", "1 to");
    BROKEN(cfg.layers[0].kind = (ffn_kind)7, "layer 0", "7", "dense, peer, pkm or moe");
    BROKEN(cfg.layers[1].peer.n_experts = 1000, "layer 1 (peer)", "n_experts = 1000",
           "perfect square", "961", "1024");
    BROKEN(cfg.layers[1].peer.n_experts = 0, "layer 1 (peer)", "n_experts = 0");
    BROKEN(cfg.layers[1].peer.heads = 0, "layer 1 (peer)", "heads = 0", "1 to 1024");
    BROKEN(cfg.layers[1].peer.topk = 0, "layer 1 (peer)", "topk = 0");
    BROKEN(cfg.layers[1].peer.topk = 129, "layer 1 (peer)", "topk = 129", "128");
    BROKEN(cfg.layers[1].peer.d_key = 63, "layer 1 (peer)", "d_key = 63", "even");
    BROKEN(cfg.layers[1].peer.d_key = 0, "layer 1 (peer)", "d_key = 0");
    BROKEN(cfg.layers[1].peer.query_norm = (peer_query_norm)9, "layer 1 (peer)", "query_norm");
    BROKEN(cfg.layers[1].peer.activation = (peer_activation)9, "layer 1 (peer)", "activation");
    BROKEN(cfg.layers[2].peer.n_experts = 1000, "layer 2 (pkm)", "n_memories = 1000",
           "perfect square");
    BROKEN(cfg.layers[2].peer.d_key = 7, "layer 2 (pkm)", "d_key = 7", "even");
    BROKEN(cfg.layers[3].moe_experts = 0, "layer 3 (moe)", "n_experts = 0", "1 to 1024");
    BROKEN(cfg.layers[3].moe_experts = 1025, "layer 3 (moe)", "n_experts = 1025", "1 to 1024");
    BROKEN(cfg.layers[3].moe_topk = 0, "layer 3 (moe)", "topk = 0", "n_experts = 8");
    BROKEN(cfg.layers[3].moe_topk = 9, "layer 3 (moe)", "topk = 9", "n_experts = 8");
    BROKEN(cfg.layers[3].d_ff = -1, "layer 3 (moe)", "d_ff = -1");
#undef BROKEN

    /* A pkm layer has no activation: whatever the unused field holds is not an error. */
    cfg = good;
    cfg.layers[2].peer.activation = (peer_activation)9;
    g_assert_true(model_config_validate(&cfg, NULL));
    /* The layers' d_model is the model's, whatever the copy says. */
    cfg = good;
    cfg.layers[1].peer.d_model = 0;
    g_assert_true(model_config_validate(&cfg, NULL));
}

static void test_parse_messages(void)
{
    expect_unparsed("\"d_model\": 128, ", "", "missing key", "d_model", NULL);
    expect_unparsed("\"d_model\": 128", "\"d_model\": \"128\"", "d_model", "integer", "string",
                    NULL);
    expect_unparsed("\"d_model\": 128", "\"d_model\": 128.0", "d_model", "integer", "128.0",
                    NULL);
    expect_unparsed("\"d_model\": 128", "\"d_model\": 3000000000", "d_model", "3000000000",
                    NULL);
    expect_unparsed("\"d_model\": 128", "\"d_model\": 1e400", "not valid JSON", NULL);
    expect_unparsed("\"n_heads\": 4", "\"n_heads\": 4, \"dropout\": 0.1", "unknown key",
                    "dropout", "n_heads", NULL);
    expect_unparsed("\"n_heads\": 4", "\"n_heads\": 4, \"n_heads\": 4", "duplicate", NULL);
    expect_unparsed("\"n_layers\": 4", "\"n_layers\": 3", "\"layers\" has 4 entries",
                    "n_layers = 3", NULL);
    expect_unparsed("\"n_layers\": 4", "\"n_layers\": 99", "n_layers = 99", "1 to 64", NULL);
    expect_unparsed("\"ffn\": \"dense\"", "\"ffn\": \"conv\"", "layer 0", "conv",
                    "dense, peer, pkm, moe", NULL);
    expect_unparsed("\"d_ff\": 512}", "\"d_ff\": 512, \"bias\": true}", "layer 0 (dense)",
                    "unknown key", "bias", NULL);
    expect_unparsed("\"d_key\": 64,\n             \"shared_keys\": false, \"query_norm\": "
                    "\"batch\", \"activation\"",
                    "\"d_key\": 63,\n             \"shared_keys\": false, \"query_norm\": "
                    "\"batch\", \"activation\"",
                    "layer 1 (peer)", "d_key = 63", NULL);
    expect_unparsed("\"n_experts\": 16384", "\"n_experts\": 16000", "layer 1 (peer)",
                    "n_experts = 16000", "perfect square", NULL);
    expect_unparsed("\"n_memories\": 16384", "\"n_experts\": 16384", "layer 2 (pkm)",
                    "unknown key", "n_experts", NULL);
    expect_unparsed("\"query_norm\": \"batch\"}", "\"query_norm\": \"batch\", \"activation\": "
                    "\"gelu\"}",
                    "layer 2 (pkm)", "activation", NULL);
    expect_unparsed("\"activation\": \"gelu\"", "\"activation\": \"swish\"", "layer 1 (peer)",
                    "swish", "gelu, relu", NULL);
    expect_unparsed("\"query_norm\": \"batch\", \"activation\"",
                    "\"query_norm\": \"rms\", \"activation\"", "layer 1 (peer)", "rms",
                    "none, layer, batch", NULL);
    expect_unparsed("\"shared_keys\": false, \"query_norm\": \"batch\", \"activation\"",
                    "\"shared_keys\": 0, \"query_norm\": \"batch\", \"activation\"",
                    "layer 1 (peer)", "shared_keys", "true or false", NULL);
    expect_unparsed(", \"activation\": \"gelu\"", "", "layer 1 (peer)", "missing key",
                    "activation", NULL);
    expect_unparsed("\"topk\": 2", "\"topk\": 9", "layer 3 (moe)", "topk = 9", NULL);
    expect_unparsed("{\"ffn\": \"dense\", \"d_ff\": 512}", "\"dense\"", "layer 0", "object",
                    NULL);
    expect_unparsed("\"vocab_size\": 256", "\"vocab_size\": 300", "vocab_size = 300", "256",
                    NULL);

    model_config cfg;
    peer_error err = { "" };
    g_assert_false(model_config_from_json(&cfg, "[]", &err));
    g_assert_nonnull(strstr(err.message, "object"));
    g_assert_false(model_config_from_json(&cfg, "", &err));
    g_assert_nonnull(strstr(err.message, "not valid JSON"));
    g_assert_false(model_config_from_json(&cfg, NULL, &err));
    g_assert_cmpuint(strlen(err.message), >, 0);
}

static void test_corpus(void)
{
    const char *root = g_getenv("PEER_FUZZ_CORPUS");
    if (!root) {
        g_test_skip("PEER_FUZZ_CORPUS is not set (meson test sets it to fuzz/corpus)");
        return;
    }
    char *dir = g_build_filename(root, "model-config", NULL);
    GDir *listing = g_dir_open(dir, 0, NULL);
    g_assert_nonnull(listing);
    int valid = 0, refused = 0;
    for (const char *name; (name = g_dir_read_name(listing));) {
        char *path = g_build_filename(dir, name, NULL);
        char *json;
        g_assert_true(g_file_get_contents(path, &json, NULL, NULL));
        model_config cfg;
        peer_error err = { "" };
        bool ok = model_config_from_json(&cfg, json, &err);
        g_test_message("%s: %s", name, ok ? "accepted" : err.message);
        if (ok != g_str_has_prefix(name, "valid-"))
            test_fail("%s was %s: %s", name, ok ? "accepted" : "refused", err.message);
        if (ok) {
            char *written = model_config_to_json(&cfg);
            model_config again;
            if (!model_config_from_json(&again, written, &err))
                test_fail("%s: its own JSON was refused: %s", name, err.message);
            g_assert_cmpmem(&again, sizeof again, &cfg, sizeof cfg);
            free(written);
            valid++;
        } else {
            g_assert_cmpuint(strlen(err.message), >, 0);
            refused++;
        }
        g_free(json);
        g_free(path);
    }
    g_dir_close(listing);
    g_test_message("%d valid configs read, %d bad configs refused", valid, refused);
    g_assert_cmpint(valid, >=, 3);
    g_assert_cmpint(refused, >=, 40);
    g_free(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/model-config/contract-example", test_contract_example);
    g_test_add_func("/model-config/round-trip", test_round_trip);
    g_test_add_func("/model-config/validation-messages", test_validation_messages);
    g_test_add_func("/model-config/parse-messages", test_parse_messages);
    g_test_add_func("/model-config/corpus", test_corpus);
    return g_test_run();
}
