/* The command-line programs, run as a user runs them: what they write (run logs, checkpoints,
 * JSON) must parse and load, resuming must not change a run, and bad input must end in a message
 * and exit status 1 or 2, never a crash. The programs' paths come from the environment
 * (PEER_TRAIN, PEER_EVAL, PEER_TRACE, PEER_SAMPLE, PEER_WORKBENCH), the default corpus's from
 * PEER_CORPUS. Every run is tiny: sequences of 32 bytes, batches of 2, one thread. */
#include <glib.h>
#include <glib/gstdio.h>
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <sys/wait.h>

#include "checkpoint.h"
#include "trainer.h"

/* A few steps of the default model on short sequences. */
#define TINY "--seq-len", "32", "--batch-size", "2", "--eval-windows", "2", "--threads", "1"

static char *tmp_dir;
static char *init_model; /* an untrained model, made by the first test that needs it */
static char *text_file;  /* the first 64 KiB of the default corpus */

typedef struct {
    int status;   /* exit status; -1 when the program did not exit (a crash) */
    char *out;
    char *err;
} run_result;

static void run_result_clear(run_result *r)
{
    g_clear_pointer(&r->out, g_free);
    g_clear_pointer(&r->err, g_free);
}

static const char *program_path(const char *variable)
{
    const char *path = g_getenv(variable);
    if (!path)
        g_error("%s is not set: run this test through meson test", variable);
    return path;
}

/* Runs the program named by variable with the NULL-terminated arguments. */
static run_result run_program(const char *variable, ...)
{
    GPtrArray *argv = g_ptr_array_new();
    g_ptr_array_add(argv, (char *)program_path(variable));
    va_list args;
    va_start(args, variable);
    for (const char *arg = va_arg(args, const char *); arg; arg = va_arg(args, const char *))
        g_ptr_array_add(argv, (char *)arg);
    va_end(args);
    g_ptr_array_add(argv, NULL);

    run_result r = { .status = -1 };
    int wait_status = 0;
    g_autoptr(GError) error = NULL;
    if (!g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, &r.out,
                      &r.err, &wait_status, &error))
        g_error("cannot run %s: %s", (char *)argv->pdata[0], error->message);
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

static const char *get_init_model(void)
{
    if (!init_model) {
        init_model = tmp_path("init.safetensors");
        run_result r = run_program("PEER_TRAIN", "--steps", "0", "--save", init_model, TINY,
                                   NULL);
        assert_success(&r);
        run_result_clear(&r);
    }
    return init_model;
}

static json_t *parse_json(const char *text)
{
    json_error_t error;
    json_t *value = json_loads(text, 0, &error);
    if (!value)
        g_error("not JSON (%s at line %d): %s", error.text, error.line, text);
    return value;
}

static double number_at(json_t *object, const char *key)
{
    json_t *value = json_object_get(object, key);
    if (!json_is_number(value))
        g_error("\"%s\" is missing or not a number", key);
    return json_number_value(value);
}

/* ---- peer-train ------------------------------------------------------------------------------ */

static void test_train_run_dir(void)
{
    g_autofree char *dir = tmp_path("run");
    run_result r = run_program("PEER_TRAIN", "--steps", "3", "--log-interval", "1", "--run-dir",
                               dir, TINY, NULL);
    assert_success(&r);
    g_assert_nonnull(strstr(r.out, "val loss"));
    run_result_clear(&r);

    g_autofree char *log_path = g_build_filename(dir, "log.jsonl", NULL);
    g_autofree char *log = NULL;
    g_assert_true(g_file_get_contents(log_path, &log, NULL, NULL));
    g_auto(GStrv) lines = g_strsplit(g_strstrip(log), "\n", -1);
    int steps = 0, evals = 0;
    for (int i = 0; lines[i]; i++) {
        json_t *line = parse_json(lines[i]);
        const char *type = json_string_value(json_object_get(line, "type"));
        g_assert_nonnull(type);
        if (strcmp(type, "step") == 0) {
            steps++;
            g_assert_cmpfloat(number_at(line, "step"), ==, steps);
            g_assert_cmpfloat(number_at(line, "tokens"), ==, steps * 2 * 32);
            const char *keys[] = { "loss", "lr", "grad_norm", "flops", "tokens_per_second",
                                   "time" };
            for (size_t k = 0; k < G_N_ELEMENTS(keys); k++)
                g_assert_true(isfinite(number_at(line, keys[k])));
            g_assert_cmpfloat(number_at(line, "loss"), >, 0.0);
        } else {
            g_assert_cmpstr(type, ==, "eval");
            evals++;
            g_assert_cmpfloat(number_at(line, "step"), ==, 3);
            double loss = number_at(line, "loss");
            g_assert_cmpfloat_with_epsilon(number_at(line, "bits_per_byte"), loss / M_LN2, 1e-6);
            g_assert_cmpfloat_with_epsilon(number_at(line, "perplexity"), exp(loss),
                                           1e-6 * exp(loss));
            json_t *layers = json_object_get(line, "layers");
            g_assert_cmpuint(json_array_size(layers), ==, 1); /* peer-small: one PEER layer */
            json_t *layer = json_array_get(layers, 0);
            g_assert_cmpstr(json_string_value(json_object_get(layer, "kind")), ==, "peer");
            double usage = number_at(layer, "usage");
            g_assert_cmpfloat(usage, >, 0.0);
            g_assert_cmpfloat(usage, <=, 1.0);
            g_assert_cmpfloat(number_at(layer, "unevenness"), >=, 0.0);
        }
        json_decref(line);
    }
    g_assert_cmpint(steps, ==, 3);
    g_assert_cmpint(evals, ==, 1);

    /* config.json repeats the run as it was trained, overrides included. */
    g_autofree char *config_path = g_build_filename(dir, "config.json", NULL);
    g_autofree char *config_text = NULL;
    g_assert_true(g_file_get_contents(config_path, &config_text, NULL, NULL));
    model_config cfg;
    train_settings settings;
    peer_error err = { 0 };
    if (!run_config_from_json(&cfg, &settings, config_text, &err))
        g_error("config.json: %s", err.message);
    g_assert_cmpint(settings.batch_size, ==, 2);
    g_assert_cmpint(settings.seq_len, ==, 32);
    g_assert_cmpint(settings.steps, ==, 3);

    g_autofree char *model_path = g_build_filename(dir, "model.safetensors", NULL);
    peer_model *model = checkpoint_load_model(model_path, 1, 0, &err);
    if (!model)
        g_error("%s", err.message);
    peer_model_free(model);
}

static void test_train_init_save(void)
{
    const char *path = get_init_model();
    peer_error err = { 0 };
    peer_model *model = checkpoint_load_model(path, 1, 0, &err);
    if (!model)
        g_error("%s", err.message);
    g_assert_cmpint(model->cfg.n_layers, ==, 4);
    g_assert_cmpint(model->cfg.layers[2].kind, ==, FFN_PEER);
    peer_model_free(model);
    g_autofree char *trainer_path = checkpoint_trainer_path(path);
    g_assert_true(g_file_test(trainer_path, G_FILE_TEST_IS_REGULAR));
}

/* Four steps at once, or two and then two more after a resume: the same weights. */
static void test_train_resume(void)
{
    g_autofree char *whole = tmp_path("whole.safetensors");
    g_autofree char *half = tmp_path("half.safetensors");
    g_autofree char *resumed = tmp_path("resumed.safetensors");
    run_result r = run_program("PEER_TRAIN", "--steps", "4", "--save", whole, TINY, NULL);
    assert_success(&r);
    run_result_clear(&r);
    r = run_program("PEER_TRAIN", "--steps", "2", "--save", half, TINY, NULL);
    assert_success(&r);
    run_result_clear(&r);
    r = run_program("PEER_TRAIN", "--resume", half, "--steps", "4", "--save", resumed,
                    "--threads", "1", NULL);
    assert_success(&r);
    run_result_clear(&r);

    g_autofree char *a = NULL, *b = NULL;
    gsize a_size = 0, b_size = 0;
    g_assert_true(g_file_get_contents(whole, &a, &a_size, NULL));
    g_assert_true(g_file_get_contents(resumed, &b, &b_size, NULL));
    g_assert_cmpmem(a, a_size, b, b_size);
}

/* A weight that is NaN makes the first loss NaN: the run stops with exit 1 and says so. */
static void test_train_nan(void)
{
    g_autofree char *path = tmp_path("nan.safetensors");
    g_autofree char *trainer_path = checkpoint_trainer_path(path);
    run_result r = run_program("PEER_TRAIN", "--steps", "1", "--save", path, TINY, NULL);
    assert_success(&r);
    run_result_clear(&r);

    /* safetensors: 8-byte little-endian header length, the JSON header, then the data. */
    g_autofree char *bytes = NULL;
    gsize size = 0;
    g_assert_true(g_file_get_contents(path, &bytes, &size, NULL));
    uint64_t header = 0;
    for (int i = 7; i >= 0; i--)
        header = header << 8 | (uint8_t)bytes[i];
    g_autofree char *header_text = g_strndup(bytes + 8, header);
    json_t *root = parse_json(header_text);
    json_t *offsets = json_object_get(json_object_get(root, "ln_f.weight"), "data_offsets");
    size_t begin = (size_t)json_integer_value(json_array_get(offsets, 0));
    size_t end = (size_t)json_integer_value(json_array_get(offsets, 1));
    json_decref(root);
    g_assert_cmpuint(8 + header + end, <=, size);
    float nan = NAN;
    for (size_t offset = begin; offset < end; offset += sizeof nan)
        memcpy(bytes + 8 + header + offset, &nan, sizeof nan);
    g_assert_true(g_file_set_contents(path, bytes, (gssize)size, NULL));

    r = run_program("PEER_TRAIN", "--resume", path, "--steps", "3", NULL);
    g_assert_cmpint(r.status, ==, 1);
    g_assert_nonnull(strstr(r.err, "NaN"));
    run_result_clear(&r);
}

/* --sample writes the model's text after each evaluation, continuing the opening sentence. */
static void test_train_sample(void)
{
    run_result r = run_program("PEER_TRAIN", "--steps", "2", "--sample", "16", TINY, NULL);
    assert_success(&r);
    g_assert_nonnull(strstr(r.out, "val loss"));
    g_assert_nonnull(strstr(r.out, "It is a truth universally acknowledged"));
    run_result_clear(&r);
}

/* ---- peer-eval, peer-trace, peer-sample -------------------------------------------------- */

/* An untrained model spreads its probability evenly: about ln 256 nats a byte. */
static void test_eval_untrained(void)
{
    run_result r = run_program("PEER_EVAL", get_init_model(), "--text", text_file, "--seq", "32",
                               "--windows", "8", "--threads", "1", NULL);
    assert_success(&r);
    json_t *result = parse_json(r.out);
    double loss = number_at(result, "loss");
    g_assert_cmpfloat_with_epsilon(loss, log(256.0), 0.3);
    g_assert_cmpfloat(number_at(result, "tokens"), ==, 8 * 32);
    g_assert_cmpfloat(number_at(result, "windows"), ==, 8);
    g_assert_cmpfloat(number_at(result, "seq"), ==, 32);
    g_assert_cmpfloat_with_epsilon(number_at(result, "bits_per_byte"), loss / M_LN2, 1e-6);
    g_assert_cmpfloat_with_epsilon(number_at(result, "perplexity"), exp(loss), 1e-6 * exp(loss));
    json_t *layers = json_object_get(result, "layers");
    g_assert_cmpuint(json_array_size(layers), ==, 1);
    g_assert_cmpfloat(number_at(json_array_get(layers, 0), "usage"), >, 0.0);
    json_decref(result);
    run_result_clear(&r);

    /* The same windows in batches of another size give the same loss: W = 3 fits one batch. */
    r = run_program("PEER_EVAL", get_init_model(), "--text", text_file, "--seq", "32",
                    "--windows", "3", "--threads", "1", NULL);
    assert_success(&r);
    result = parse_json(r.out);
    g_assert_cmpfloat(number_at(result, "tokens"), ==, 3 * 32);
    json_decref(result);
    run_result_clear(&r);
}

static void test_trace_json(void)
{
    const char *text = "Emma Wood";
    run_result r = run_program("PEER_TRACE", get_init_model(), "--text", text, "--json",
                               "--threads", "1", NULL);
    assert_success(&r);
    json_t *root = parse_json(r.out);
    g_assert_cmpfloat(number_at(root, "length"), ==, strlen(text));
    json_t *layers = json_object_get(root, "layers");
    g_assert_cmpuint(json_array_size(layers), ==, 1);
    json_t *layer = json_array_get(layers, 0);
    g_assert_cmpfloat(number_at(layer, "layer"), ==, 2);
    int side = (int)number_at(layer, "side");
    int heads = (int)number_at(layer, "heads"), topk = (int)number_at(layer, "topk");
    g_assert_cmpint(side * side, ==, (int)number_at(layer, "experts"));
    json_t *tokens = json_object_get(layer, "tokens");
    g_assert_cmpuint(json_array_size(tokens), ==, strlen(text));
    size_t t;
    json_t *token;
    json_array_foreach(tokens, t, token) {
        g_assert_cmpfloat(number_at(token, "byte"), ==, (uint8_t)text[t]);
        json_t *head_list = json_object_get(token, "heads");
        g_assert_cmpuint(json_array_size(head_list), ==, (size_t)heads);
        size_t h;
        json_t *head;
        json_array_foreach(head_list, h, head) {
            json_t *experts = json_object_get(head, "experts");
            g_assert_cmpuint(json_array_size(experts), ==, (size_t)topk);
            double gate_sum = 0.0, last_score = INFINITY;
            size_t k;
            json_t *expert;
            json_array_foreach(experts, k, expert) {
                int id = (int)number_at(expert, "expert");
                g_assert_cmpint(id, ==,
                                (int)number_at(expert, "row") * side +
                                    (int)number_at(expert, "col"));
                double score = number_at(expert, "score");
                g_assert_cmpfloat(score, <=, last_score); /* best first */
                last_score = score;
                gate_sum += number_at(expert, "gate");
            }
            g_assert_cmpfloat_with_epsilon(gate_sum, 1.0, 1e-5);
        }
    }
    json_decref(root);
    run_result_clear(&r);

    r = run_program("PEER_TRACE", get_init_model(), "--text", text, "--threads", "1", NULL);
    assert_success(&r);
    g_assert_nonnull(strstr(r.out, "layer 2: peer"));
    run_result_clear(&r);
}

static void test_sample(void)
{
    run_result a = run_program("PEER_SAMPLE", get_init_model(), "--prompt", "It is",
                               "--length", "20", "--seed", "7", "--threads", "1", NULL);
    run_result b = run_program("PEER_SAMPLE", get_init_model(), "--prompt", "It is",
                               "--length", "20", "--seed", "7", "--threads", "1", NULL);
    assert_success(&a);
    assert_success(&b);
    g_assert_true(g_str_has_prefix(a.out, "It is"));
    g_assert_cmpstr(a.out, ==, b.out); /* the seed decides the text */
    run_result_clear(&a);
    run_result_clear(&b);
}

/* ---- bad input ------------------------------------------------------------------------------- */

typedef struct {
    const char *program;
    const char *args[8];
    int status;
    const char *message; /* a part of stderr */
} bad_case;

static void test_bad_input(void)
{
    g_autofree char *empty = tmp_path("empty.txt");
    g_autofree char *garbage = tmp_path("garbage.safetensors");
    g_autofree char *missing = tmp_path("missing");
    g_autofree char *bad_config = tmp_path("bad-config.json");
    /* A header length of 14 and 14 bytes of header that are not JSON. */
    static const char garbage_bytes[] = "\x0e\0\0\0\0\0\0\0{\"a\": not json";
    g_assert_true(g_file_set_contents(empty, "", 0, NULL));
    g_assert_true(g_file_set_contents(garbage, garbage_bytes, sizeof garbage_bytes - 1, NULL));
    g_assert_true(g_file_set_contents(bad_config, "{\"model\": {\"vocab_size\": 256}}", -1,
                                      NULL));
    const char *model = get_init_model();
    const bad_case cases[] = {
        { "PEER_TRAIN", { "--steps", "-5" }, 2, "--steps" },
        { "PEER_TRAIN", { "--lr", "abc" }, 2, "--lr" },
        { "PEER_TRAIN", { "--batch-size", "0" }, 2, "--batch-size" },
        { "PEER_TRAIN", { "--seq-len", "100000" }, 2, "seq_len" },
        { "PEER_TRAIN", { "--preset", "no-such-run" }, 2, "no-such-run" },
        { "PEER_TRAIN", { "--config", bad_config, "--preset", "peer-small" }, 2, "--config" },
        { "PEER_TRAIN", { "--no-such-option" }, 2, "no-such-option" },
        { "PEER_TRAIN", { "--config", missing }, 1, "missing" },
        { "PEER_TRAIN", { "--config", bad_config }, 1, "bad-config.json" },
        { "PEER_TRAIN", { "--text", missing }, 1, "missing" },
        { "PEER_TRAIN", { "--text", empty }, 1, "empty" },
        { "PEER_TRAIN", { "--resume", garbage }, 1, "garbage.safetensors" },
        { "PEER_EVAL", { model }, 2, "--text" },
        { "PEER_EVAL", { model, "--text", text_file, "--seq", "0" }, 2, "--seq" },
        { "PEER_EVAL", { model, "--text", text_file, "--windows", "x" }, 2, "--windows" },
        { "PEER_EVAL", { missing, "--text", text_file }, 1, "missing" },
        { "PEER_EVAL", { garbage, "--text", text_file }, 1, "garbage.safetensors" },
        { "PEER_EVAL", { model, "--text", empty }, 1, "shorter than one window" },
        { "PEER_TRACE", { model, "--text", "" }, 2, "--text" },
        { "PEER_TRACE", { model, "--text", "a", "--layer", "0" }, 2, "--layer" },
        { "PEER_TRACE", { garbage, "--text", "a" }, 1, "garbage.safetensors" },
        { "PEER_SAMPLE", { NULL }, 2, "CHECKPOINT" },
        { "PEER_SAMPLE", { model, "--prompt", "a", "--temperature", "abc" }, 2, "--temperature" },
        { "PEER_SAMPLE", { model, "--prompt", "a", "--length", "-1" }, 2, "--length" },
        { "PEER_SAMPLE", { garbage, "--prompt", "a" }, 1, "garbage.safetensors" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        const bad_case *c = &cases[i];
        const char *const *a = c->args;
        run_result r = run_program(c->program, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7],
                                   NULL);
        g_autofree char *command = g_strjoinv(" ", (char **)a);
        if (r.status != c->status || !strstr(r.err, c->message))
            g_error("%s %s: exit %d (want %d), stderr (want “%s” in it):\n%s", c->program,
                    command, r.status, c->status, c->message, r.err);
        g_assert_true(g_str_has_prefix(r.err, "peer-"));
        run_result_clear(&r);
    }
}

static void test_help(void)
{
    const char *programs[] = { "PEER_TRAIN", "PEER_EVAL", "PEER_TRACE", "PEER_SAMPLE",
                               "PEER_WORKBENCH" };
    for (size_t i = 0; i < G_N_ELEMENTS(programs); i++) {
        run_result r = run_program(programs[i], "--help", NULL);
        assert_success(&r);
        g_assert_nonnull(strstr(r.out, "Usage:"));
        g_assert_nonnull(strstr(r.out, "Exit status"));
        run_result_clear(&r);
    }
}

/* ---- setup ----------------------------------------------------------------------------------- */

static void remove_tree(const char *path)
{
    if (g_file_test(path, G_FILE_TEST_IS_DIR) && !g_file_test(path, G_FILE_TEST_IS_SYMLINK)) {
        GDir *dir = g_dir_open(path, 0, NULL);
        for (const char *name; dir && (name = g_dir_read_name(dir));) {
            g_autofree char *child = g_build_filename(path, name, NULL);
            remove_tree(child);
        }
        if (dir)
            g_dir_close(dir);
    }
    g_remove(path);
}

static void write_text_file(void)
{
    const char *corpus_path = g_getenv("PEER_CORPUS");
    if (!corpus_path)
        g_error("PEER_CORPUS is not set: run this test through meson test");
    g_autofree char *text = NULL;
    gsize size = 0;
    g_autoptr(GError) error = NULL;
    if (!g_file_get_contents(corpus_path, &text, &size, &error))
        g_error("%s", error->message);
    text_file = tmp_path("text.txt");
    g_assert_true(g_file_set_contents(text_file, text, MIN(size, (gsize)65536), NULL));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_autoptr(GError) error = NULL;
    tmp_dir = g_dir_make_tmp("peer-cli-XXXXXX", &error);
    if (!tmp_dir)
        g_error("%s", error->message);
    write_text_file();

    g_test_add_func("/cli/train/run-dir", test_train_run_dir);
    g_test_add_func("/cli/train/init-save", test_train_init_save);
    g_test_add_func("/cli/train/resume", test_train_resume);
    g_test_add_func("/cli/train/nan", test_train_nan);
    g_test_add_func("/cli/train-sample", test_train_sample);
    g_test_add_func("/cli/eval/untrained", test_eval_untrained);
    g_test_add_func("/cli/trace/json", test_trace_json);
    g_test_add_func("/cli/sample", test_sample);
    g_test_add_func("/cli/bad-input", test_bad_input);
    g_test_add_func("/cli/help", test_help);
    int status = g_test_run();

    remove_tree(tmp_dir);
    g_free(tmp_dir);
    g_free(init_model);
    g_free(text_file);
    return status;
}
