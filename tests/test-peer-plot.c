/* peer-plot run as a user runs it, with no display: loss curves of two run folders written as
 * run logs are, drawn to PNG at the size and scale asked, to SVG with their names and labels as
 * text, to PDF on a page of the size asked, and their points to CSV that reads back to the
 * numbers in the logs; a tiny PEER model's expert heat map on a text, whose CSV counts every
 * choice the model made, and one token's retrieval path, whose JSON is the path peer-trace
 * reports, consistent stage by stage; bad command lines exit 2 and failures exit 1, each with a
 * message, and leave no file. */
#include <glib/gstdio.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cairo.h>

static const char *peer_plot;
static char *work_dir;
static char *run_a;
static char *run_b;
static char *checkpoint; /* a tiny untrained model: layer 0 dense, layer 1 PEER with 8² experts */
static char *text_path;  /* 1000 bytes of English */

typedef struct {
    int status;
    char *out;
    char *err;
} Result;

static void result_clear(Result *result)
{
    g_free(result->out);
    g_free(result->err);
}

/* Runs peer-plot with args (NULL-terminated) in an environment without a display. */
static Result run_peer_plot(const char *first, ...)
{
    GPtrArray *argv = g_ptr_array_new();
    g_ptr_array_add(argv, (char *)peer_plot);
    va_list args;
    va_start(args, first);
    for (const char *arg = first; arg; arg = va_arg(args, const char *))
        g_ptr_array_add(argv, (char *)arg);
    va_end(args);
    g_ptr_array_add(argv, NULL);

    char **env = g_get_environ();
    env = g_environ_unsetenv(env, "DISPLAY");
    env = g_environ_unsetenv(env, "WAYLAND_DISPLAY");
    Result result = {0};
    int wait_status = 0;
    g_autoptr(GError) error = NULL;
    g_assert_true(g_spawn_sync(NULL, (char **)argv->pdata, env, G_SPAWN_DEFAULT, NULL, NULL,
                               &result.out, &result.err, &wait_status, &error));
    g_assert_no_error(error);
    g_assert_true(WIFEXITED(wait_status));
    result.status = WEXITSTATUS(wait_status);
    g_strfreev(env);
    g_ptr_array_unref(argv);
    return result;
}

static void write_file(const char *path, const char *text)
{
    g_autoptr(GError) error = NULL;
    g_assert_true(g_file_set_contents(path, text, -1, &error));
}

/* The log lines of a run: steps every 10 with losses that need all their digits. */
static char *make_run(const char *name, double offset)
{
    char *dir = g_build_filename(work_dir, name, NULL);
    g_assert_cmpint(g_mkdir(dir, 0700), ==, 0);
    GString *log = g_string_new(NULL);
    for (int i = 1; i <= 20; i++) {
        char loss[G_ASCII_DTOSTR_BUF_SIZE], lr[G_ASCII_DTOSTR_BUF_SIZE];
        g_ascii_formatd(loss, sizeof loss, "%.10g", offset + 3.0 * exp(-i / 6.0) + 1e-7 * i);
        g_ascii_formatd(lr, sizeof lr, "%.8g", 3e-4 * i / 20.0);
        g_string_append_printf(log,
                               "{\"type\":\"step\",\"step\":%d,\"loss\":%s,\"lr\":%s,"
                               "\"grad_norm\":1.%d25,\"tokens\":%d,\"flops\":%d.5e10,"
                               "\"tokens_per_second\":1000,\"time\":%d.125}\n",
                               10 * i, loss, lr, i, 2048 * 10 * i, i, i);
        if (i % 5 == 0)
            g_string_append_printf(log,
                                   "{\"type\":\"eval\",\"step\":%d,\"loss\":%s,"
                                   "\"bits_per_byte\":3.5,\"perplexity\":20,\"tokens\":64,"
                                   "\"layers\":[]}\n",
                                   10 * i, loss);
    }
    g_autofree char *path = g_build_filename(dir, "log.jsonl", NULL);
    write_file(path, log->str);
    g_string_free(log, TRUE);
    return dir;
}

static char *out_path(const char *name)
{
    return g_build_filename(work_dir, name, NULL);
}

static void assert_ok(Result *result)
{
    if (result->status != 0)
        g_error("peer-plot failed (%d): %s", result->status, result->err);
    g_assert_cmpstr(result->err, ==, "");
}

static void test_png(void)
{
    g_autofree char *png = out_path("curves.png");
    Result result = run_peer_plot("loss", run_a, run_b, "--out", png, "--width", "300",
                                  "--height", "200", "--scale", "2", "--title", "Two runs",
                                  "--smoothing", "0.5", NULL);
    assert_ok(&result);
    result_clear(&result);
    cairo_surface_t *image = cairo_image_surface_create_from_png(png);
    g_assert_cmpint(cairo_surface_status(image), ==, CAIRO_STATUS_SUCCESS);
    g_assert_cmpint(cairo_image_surface_get_width(image), ==, 600);
    g_assert_cmpint(cairo_image_surface_get_height(image), ==, 400);
    /* The first run's palette blue (0, 114, 178) is on it: the curves were drawn. */
    int blue = 0;
    for (int y = 0; y < 400; y++) {
        const guint8 *row = cairo_image_surface_get_data(image) +
                            y * cairo_image_surface_get_stride(image);
        for (int x = 0; x < 600; x++)
            blue += row[4 * x] == 178 && row[4 * x + 1] == 114 && row[4 * x + 2] == 0;
    }
    g_assert_cmpint(blue, >, 100);
    cairo_surface_destroy(image);
}

static void test_svg(void)
{
    g_autofree char *svg = out_path("curves.svg");
    Result result = run_peer_plot("loss", run_a, run_b, "--out", svg, "--metric", "bits",
                                  "--x", "tokens", "--log-y", NULL);
    assert_ok(&result);
    result_clear(&result);
    g_autofree char *text = NULL;
    g_assert_true(g_file_get_contents(svg, &text, NULL, NULL));
    g_assert_true(g_str_has_prefix(text, "<?xml"));
    g_assert_nonnull(strstr(text, "width=\"640px\" height=\"400px\""));
    const char *words[] = {">alpha</text>", ">beta</text>", ">tokens</text>",
                           ">loss (bits per byte)</text>", ">validation</text>"};
    for (gsize i = 0; i < G_N_ELEMENTS(words); i++)
        if (!strstr(text, words[i]))
            g_error("the SVG has no %s", words[i]);
}

static void test_pdf(void)
{
    g_autofree char *pdf = out_path("curves.pdf");
    Result result = run_peer_plot("loss", run_a, "--out", pdf, "--width", "252", "--height",
                                  "180", "--font-size", "7", NULL);
    assert_ok(&result);
    result_clear(&result);
    g_autofree char *contents = NULL;
    g_assert_true(g_file_get_contents(pdf, &contents, NULL, NULL));
    g_assert_true(g_str_has_prefix(contents, "%PDF-"));
    g_autofree char *pdfinfo = g_find_program_in_path("pdfinfo");
    if (!pdfinfo) {
        g_test_skip("pdfinfo is not installed (poppler-utils; scripts/setup installs it)");
        return;
    }
    char *out = NULL;
    g_assert_true(g_spawn_sync(NULL, (char *[]){pdfinfo, pdf, NULL}, NULL, G_SPAWN_DEFAULT, NULL,
                               NULL, &out, NULL, NULL, NULL));
    g_assert_true(g_regex_match_simple("^Pages: +1$", out, G_REGEX_MULTILINE, 0));
    g_assert_true(g_regex_match_simple("^Page size: +252 x 180 pts", out, G_REGEX_MULTILINE, 0));
    g_free(out);
}

/* The CSV holds the logs' numbers exactly: every step line and every evaluation of both runs. */
static void test_csv(void)
{
    g_autofree char *csv = out_path("curves.csv");
    Result result = run_peer_plot("loss", run_a, run_b, "--out", csv, NULL);
    assert_ok(&result);
    result_clear(&result);
    g_autofree char *text = NULL;
    g_assert_true(g_file_get_contents(csv, &text, NULL, NULL));
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    g_assert_cmpstr(lines[0], ==, "run,split,step,tokens,flops,seconds,loss,lr,grad_norm");
    g_assert_cmpuint(g_strv_length(lines), ==, 1 + 2 * (20 + 4) + 1);
    g_assert_cmpstr(lines[g_strv_length(lines) - 1], ==, "");

    const char *names[] = {"alpha", "beta"};
    const double offsets[] = {2.0, 2.4};
    for (int r = 0; r < 2; r++) {
        for (int i = 1; i <= 20; i++) {
            g_auto(GStrv) fields = g_strsplit(lines[1 + r * 24 + (i - 1)], ",", -1);
            g_assert_cmpuint(g_strv_length(fields), ==, 9);
            g_assert_cmpstr(fields[0], ==, names[r]);
            g_assert_cmpstr(fields[1], ==, "train");
            g_assert_cmpint(g_ascii_strtoll(fields[2], NULL, 10), ==, 10 * i);
            g_assert_cmpfloat(g_ascii_strtod(fields[3], NULL), ==, 2048.0 * 10 * i);
            g_assert_cmpfloat(g_ascii_strtod(fields[4], NULL), ==, (i + 0.5) * 1e10);
            g_assert_cmpfloat(g_ascii_strtod(fields[5], NULL), ==, i + 0.125);
            char loss[G_ASCII_DTOSTR_BUF_SIZE];
            g_ascii_formatd(loss, sizeof loss, "%.10g",
                            offsets[r] + 3.0 * exp(-i / 6.0) + 1e-7 * i);
            g_assert_cmpfloat(g_ascii_strtod(fields[6], NULL), ==, g_ascii_strtod(loss, NULL));
            char lr[G_ASCII_DTOSTR_BUF_SIZE];
            g_ascii_formatd(lr, sizeof lr, "%.8g", 3e-4 * i / 20.0);
            g_assert_cmpfloat(g_ascii_strtod(fields[7], NULL), ==, g_ascii_strtod(lr, NULL));
            g_autofree char *grad_norm = g_strdup_printf("1.%d25", i);
            g_assert_cmpfloat(g_ascii_strtod(fields[8], NULL), ==,
                              g_ascii_strtod(grad_norm, NULL));
        }
        for (int e = 0; e < 4; e++) {
            g_auto(GStrv) fields = g_strsplit(lines[1 + r * 24 + 20 + e], ",", -1);
            g_assert_cmpuint(g_strv_length(fields), ==, 9);
            g_assert_cmpstr(fields[1], ==, "validation");
            g_assert_cmpint(g_ascii_strtoll(fields[2], NULL, 10), ==, 50 * (e + 1));
            /* Tokens and FLOPs at the step, from the step lines. */
            g_assert_cmpfloat(g_ascii_strtod(fields[3], NULL), ==, 2048.0 * 50 * (e + 1));
            g_assert_cmpstr(fields[5], ==, "");
            g_assert_cmpstr(fields[7], ==, "");
            g_assert_cmpstr(fields[8], ==, "");
        }
    }
}

static void assert_refused(Result *result, int status, const char *message)
{
    if (result->status != status || !strstr(result->err, message))
        g_error("expected exit %d and “%s”, got %d: %s", status, message, result->status,
                result->err);
    g_assert_true(g_str_has_prefix(result->err, "peer-plot"));
    result_clear(result);
}

static void test_refused(void)
{
    g_autofree char *txt = out_path("curves.txt");
    Result result = run_peer_plot("loss", run_a, "--out", txt, NULL);
    assert_refused(&result, 2, ".png, .svg, .pdf, or .csv");
    g_assert_false(g_file_test(txt, G_FILE_TEST_EXISTS));

    g_autofree char *png = out_path("refused.png");
    result = run_peer_plot("loss", run_a, "--out", png, "--width", "0", NULL);
    assert_refused(&result, 2, "--width");
    result = run_peer_plot("loss", run_a, "--out", png, "--width", "9000", "--scale", "4", NULL);
    assert_refused(&result, 2, "36000 × 1600 pixels");
    result = run_peer_plot("loss", run_a, "--out", png, "--x", "epochs", NULL);
    assert_refused(&result, 2, "steps, tokens or flops");
    result = run_peer_plot("loss", run_a, "--out", png, "--metric", "perplexity", NULL);
    assert_refused(&result, 2, "loss");
    result = run_peer_plot("loss", run_a, NULL);
    assert_refused(&result, 2, "--out");
    result = run_peer_plot("loss", "--out", png, NULL);
    assert_refused(&result, 2, "RUN");
    result = run_peer_plot("scatter", NULL);
    assert_refused(&result, 2, "loss");
    result = run_peer_plot(NULL);
    g_assert_cmpint(result.status, ==, 2);
    result_clear(&result);

    g_autofree char *missing = out_path("no-such-run");
    result = run_peer_plot("loss", run_a, missing, "--out", png, NULL);
    assert_refused(&result, 1, missing);
    g_autofree char *broken = out_path("broken");
    g_assert_cmpint(g_mkdir(broken, 0700), ==, 0);
    g_autofree char *broken_log = g_build_filename(broken, "log.jsonl", NULL);
    write_file(broken_log, "{\"type\":\"step\",\"step\":1}\nnot json\n");
    result = run_peer_plot("loss", broken, "--out", png, NULL);
    assert_refused(&result, 1, "line 2");
    g_remove(broken_log);
    g_rmdir(broken);

    /* A file cannot be written: exit 1, the reason, no file and no temporary left. */
    g_autofree char *nowhere = g_build_filename(work_dir, "missing-folder", "curves.png", NULL);
    result = run_peer_plot("loss", run_a, "--out", nowhere, NULL);
    assert_refused(&result, 1, "does not exist");
    g_autofree char *through_file = g_build_filename(run_a, "log.jsonl", "curves.csv", NULL);
    result = run_peer_plot("loss", run_a, "--out", through_file, NULL);
    assert_refused(&result, 1, "is not a folder");
    g_assert_false(g_file_test(png, G_FILE_TEST_EXISTS));

    result = run_peer_plot("--help", NULL);
    g_assert_cmpint(result.status, ==, 0);
    g_assert_nonnull(strstr(result.out, "loss"));
    result_clear(&result);
    result = run_peer_plot("loss", "--help", NULL);
    g_assert_cmpint(result.status, ==, 0);
    g_assert_nonnull(strstr(result.out, "--scale"));
    result_clear(&result);
}

/* ---- heatmap and path ---------------------------------------------------------------------- */

#define TEXT_BYTES 1000
#define HEADS 2
#define TOPK 4
#define SIDE 8

static void make_model(void)
{
    g_autofree char *run_file = out_path("tiny.json");
    write_file(run_file,
               "{\"model\": {\"vocab_size\": 256, \"context\": 32, \"d_model\": 32, "
               "\"n_layers\": 2, \"n_heads\": 2, \"layers\": ["
               "{\"ffn\": \"dense\", \"d_ff\": 64},"
               "{\"ffn\": \"peer\", \"n_experts\": 64, \"heads\": 2, \"topk\": 4, \"d_key\": 16,"
               " \"shared_keys\": false, \"query_norm\": \"batch\", \"activation\": \"gelu\"}]},"
               "\"training\": {\"batch_size\": 2, \"seq_len\": 32, \"steps\": 0, \"lr\": 0.003,"
               " \"min_lr\": 0.0003, \"warmup\": 0, \"expert_lr\": 0.001, \"grad_clip\": 1.0,"
               " \"beta1\": 0.9, \"beta2\": 0.95, \"eps\": 1e-8, \"weight_decay\": 0.1,"
               " \"moe_aux_weight\": 0.01, \"seed\": 7, \"eval_interval\": 0,"
               " \"eval_windows\": 1}}");
    checkpoint = out_path("tiny.safetensors");
    const char *peer_train = g_getenv("PEER_TRAIN");
    char *err = NULL;
    int wait_status = 0;
    g_autoptr(GError) error = NULL;
    g_assert_true(g_spawn_sync(NULL,
                               (char *[]){(char *)peer_train, "--config", run_file, "--steps",
                                          "0", "--threads", "1", "--save", checkpoint, NULL},
                               NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, NULL, &err,
                               &wait_status, &error));
    g_assert_no_error(error);
    if (!g_spawn_check_wait_status(wait_status, NULL))
        g_error("peer-train could not make the model: %s", err);
    g_free(err);

    GString *text = g_string_new(NULL);
    while (text->len < TEXT_BYTES)
        g_string_append(text, "It is a truth universally acknowledged, that a single man in "
                              "possession of a good fortune, must be in want of a wife. ");
    g_string_truncate(text, TEXT_BYTES);
    text_path = out_path("text.txt");
    write_file(text_path, text->str);
    g_string_free(text, TRUE);
}

static void test_heatmap(void)
{
    g_autofree char *png = out_path("experts.png");
    Result result = run_peer_plot("heatmap", checkpoint, "--text", text_path, "--out", png,
                                  "--threads", "1", "--scale", "2", NULL);
    assert_ok(&result);
    result_clear(&result);
    cairo_surface_t *image = cairo_image_surface_create_from_png(png);
    g_assert_cmpint(cairo_surface_status(image), ==, CAIRO_STATUS_SUCCESS);
    g_assert_cmpint(cairo_image_surface_get_width(image), ==, 1280);
    g_assert_cmpint(cairo_image_surface_get_height(image), ==, 1040);
    cairo_surface_destroy(image);

    g_autofree char *svg = out_path("experts.svg");
    result = run_peer_plot("heatmap", checkpoint, "--text", text_path, "--out", svg, "--metric",
                           "gate-mass", "--log", "--threads", "1", NULL);
    assert_ok(&result);
    result_clear(&result);
    g_autofree char *document = NULL;
    g_assert_true(g_file_get_contents(svg, &document, NULL, NULL));
    g_assert_nonnull(strstr(document, ">Layer 1 · PEER 8² · gate mass z′ · all heads</text>"));
    /* The cells stay crisp in any viewer: the grid's image is marked so. */
    g_assert_nonnull(strstr(document, "image-rendering=\"optimizeSpeed\""));

    /* Every token chose TOPK experts in each head, with gates that sum to 1 per head: the
     * grid's selections and gate masses add up to exactly that. */
    g_autofree char *csv = out_path("experts.csv");
    result = run_peer_plot("heatmap", checkpoint, "--text", text_path, "--out", csv, "--threads",
                           "1", NULL);
    assert_ok(&result);
    result_clear(&result);
    g_autofree char *text = NULL;
    g_assert_true(g_file_get_contents(csv, &text, NULL, NULL));
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    g_assert_cmpstr(lines[0], ==, "expert,row,column,selections,gate_mass,mean_activation");
    g_assert_cmpuint(g_strv_length(lines), ==, 1 + SIDE * SIDE + 1);
    double selections = 0.0, gate_mass = 0.0;
    for (int e = 0; e < SIDE * SIDE; e++) {
        g_auto(GStrv) fields = g_strsplit(lines[1 + e], ",", -1);
        g_assert_cmpuint(g_strv_length(fields), ==, 6);
        g_assert_cmpint(atoi(fields[0]), ==, e);
        g_assert_cmpint(atoi(fields[1]), ==, e / SIDE);
        g_assert_cmpint(atoi(fields[2]), ==, e % SIDE);
        double count = g_ascii_strtod(fields[3], NULL);
        selections += count;
        gate_mass += g_ascii_strtod(fields[4], NULL);
        /* A mean activation exactly where the expert was chosen. */
        g_assert_cmpint(count > 0, ==, fields[5][0] != '\0');
    }
    g_assert_cmpfloat(selections, ==, (double)TEXT_BYTES * HEADS * TOPK);
    g_assert_cmpfloat_with_epsilon(gate_mass, (double)TEXT_BYTES * HEADS, 1e-3 * TEXT_BYTES);

    result = run_peer_plot("heatmap", checkpoint, "--text", text_path, "--out", png, "--layer",
                           "0", NULL);
    assert_refused(&result, 2, "(those are: 1)");
    result = run_peer_plot("heatmap", checkpoint, "--text", text_path, "--out", png, "--head",
                           "2", NULL);
    assert_refused(&result, 2, "--head");
    result = run_peer_plot("heatmap", checkpoint, "--text", text_path, "--out", png, "--metric",
                           "usage", NULL);
    assert_refused(&result, 2, "gate-mass");
    result = run_peer_plot("heatmap", checkpoint, "--out", png, NULL);
    assert_refused(&result, 2, "--text");
    result = run_peer_plot("heatmap", text_path, "--text", text_path, "--out", png, NULL);
    assert_refused(&result, 1, text_path);
}

static json_t *load_json(const char *path)
{
    json_error_t error;
    json_t *value = json_load_file(path, 0, &error);
    if (!value)
        g_error("%s is not JSON: %s (line %d)", path, error.text, error.line);
    return value;
}

static float float_at(json_t *array, size_t index)
{
    return (float)json_number_value(json_array_get(array, index));
}

static void test_path(void)
{
    const char *sentence = "It is a truth universally";
    g_autofree char *json_path = out_path("path.json");
    Result result = run_peer_plot("path", checkpoint, "--text", sentence, "--token", "9",
                                  "--out", json_path, "--threads", "1", NULL);
    assert_ok(&result);
    result_clear(&result);
    json_t *path = load_json(json_path);
    g_assert_cmpint(json_integer_value(json_object_get(path, "layer")), ==, 1);
    g_assert_cmpstr(json_string_value(json_object_get(path, "kind")), ==, "PEER");
    g_assert_cmpint(json_integer_value(json_object_get(path, "position")), ==, 9);
    g_assert_cmpint(json_integer_value(json_object_get(path, "byte")), ==, sentence[9]);
    g_assert_cmpint(json_integer_value(json_object_get(path, "n")), ==, SIDE);
    json_t *heads = json_object_get(path, "heads");
    g_assert_cmpuint(json_array_size(heads), ==, HEADS);

    /* The experts peer-trace reports for the same token. */
    char *trace_out = NULL;
    int wait_status = 0;
    g_assert_true(g_spawn_sync(NULL,
                               (char *[]){(char *)g_getenv("PEER_TRACE"), (char *)checkpoint,
                                          "--text", (char *)sentence, "--json", "--threads", "1",
                                          NULL},
                               NULL, G_SPAWN_DEFAULT, NULL, NULL, &trace_out, NULL,
                               &wait_status, NULL));
    g_assert_true(g_spawn_check_wait_status(wait_status, NULL));
    json_t *trace = json_loads(trace_out, 0, NULL);
    g_assert_nonnull(trace);
    g_free(trace_out);
    json_t *traced = json_object_get(
        json_array_get(json_object_get(json_array_get(json_object_get(trace, "layers"), 0),
                                       "tokens"),
                       9),
        "heads");

    for (size_t h = 0; h < HEADS; h++) {
        json_t *head = json_array_get(heads, h);
        json_t *sub_keys = json_object_get(head, "sub_keys");
        json_t *scores[2], *top[2];
        for (int half = 0; half < 2; half++) {
            scores[half] = json_object_get(json_array_get(sub_keys, half), "scores");
            top[half] = json_object_get(json_array_get(sub_keys, half), "top");
            g_assert_cmpuint(json_array_size(scores[half]), ==, SIDE);
            g_assert_cmpuint(json_array_size(top[half]), ==, TOPK);
        }
        /* Each candidate is the sum of its sub-keys' scores, as the engine adds them. */
        json_t *candidates = json_object_get(head, "candidates");
        for (int i = 0; i < TOPK; i++)
            for (int j = 0; j < TOPK; j++) {
                float sum = float_at(scores[0], json_integer_value(json_array_get(top[0], i))) +
                            float_at(scores[1], json_integer_value(json_array_get(top[1], j)));
                g_assert_cmpfloat(float_at(json_array_get(candidates, i), j), ==, sum);
            }
        json_t *experts = json_object_get(head, "experts");
        json_t *traced_experts = json_object_get(json_array_get(traced, h), "experts");
        double gates = 0.0;
        for (size_t r = 0; r < TOPK; r++) {
            json_t *expert = json_array_get(experts, r);
            int row = (int)json_integer_value(json_object_get(expert, "row"));
            int col = (int)json_integer_value(json_object_get(expert, "col"));
            int id = (int)json_integer_value(json_object_get(expert, "expert"));
            g_assert_cmpint(id, ==, row * SIDE + col);
            g_assert_cmpint(id, ==,
                            json_integer_value(json_object_get(json_array_get(traced_experts, r),
                                                               "expert")));
            /* The chosen expert is its candidate cell, whose sub-keys are its row and column. */
            int ci = (int)json_integer_value(json_object_get(expert, "candidate_row"));
            int cj = (int)json_integer_value(json_object_get(expert, "candidate_col"));
            g_assert_cmpint(json_integer_value(json_array_get(top[0], ci)), ==, row);
            g_assert_cmpint(json_integer_value(json_array_get(top[1], cj)), ==, col);
            g_assert_cmpfloat((float)json_number_value(json_object_get(expert, "score")), ==,
                              float_at(json_array_get(candidates, ci), cj));
            gates += json_number_value(json_object_get(expert, "gate"));
        }
        g_assert_cmpfloat_with_epsilon(gates, 1.0, 1e-5);
    }
    json_decref(trace);
    json_decref(path);

    g_autofree char *png = out_path("path.png");
    result = run_peer_plot("path", checkpoint, "--text", sentence, "--out", png, "--threads",
                           "1", NULL);
    assert_ok(&result);
    result_clear(&result);
    cairo_surface_t *image = cairo_image_surface_create_from_png(png);
    g_assert_cmpint(cairo_surface_status(image), ==, CAIRO_STATUS_SUCCESS);
    int width = cairo_image_surface_get_width(image);
    g_assert_cmpint(cairo_image_surface_get_height(image), >, 100);
    cairo_surface_destroy(image);
    /* One head alone is one panel: narrower than the two side by side. */
    g_autofree char *svg = out_path("path.svg");
    result = run_peer_plot("path", checkpoint, "--text", sentence, "--out", svg, "--head", "1",
                           "--threads", "1", NULL);
    assert_ok(&result);
    result_clear(&result);
    g_autofree char *document = NULL;
    g_assert_true(g_file_get_contents(svg, &document, NULL, NULL));
    g_assert_nonnull(strstr(document, ">Head 1</text>"));
    g_assert_null(strstr(document, ">Head 0</text>"));
    g_autofree char *svg_width = g_strdup_printf("width=\"%dpx\"", (width + 1) / 2);
    g_assert_nonnull(strstr(document, svg_width));

    result = run_peer_plot("path", checkpoint, "--text", sentence, "--token", "25", "--out", png,
                           NULL);
    assert_refused(&result, 2, "--token");
    g_autofree char *csv = out_path("path.csv");
    result = run_peer_plot("path", checkpoint, "--text", sentence, "--out", csv, NULL);
    assert_refused(&result, 2, ".json");
    g_assert_false(g_file_test(csv, G_FILE_TEST_EXISTS));
}

static void remove_tree(const char *dir)
{
    GDir *handle = g_dir_open(dir, 0, NULL);
    const char *name;
    while (handle && (name = g_dir_read_name(handle))) {
        g_autofree char *path = g_build_filename(dir, name, NULL);
        if (g_file_test(path, G_FILE_TEST_IS_DIR))
            remove_tree(path);
        else
            g_remove(path);
    }
    if (handle)
        g_dir_close(handle);
    g_rmdir(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    peer_plot = g_getenv("PEER_PLOT");
    if (!peer_plot) {
        printf("1..0 # SKIP PEER_PLOT is not set: run through meson test\n");
        return 0;
    }
    g_autoptr(GError) error = NULL;
    work_dir = g_dir_make_tmp("peer-plot-XXXXXX", &error);
    g_assert_no_error(error);
    run_a = make_run("alpha", 2.0);
    run_b = make_run("beta", 2.4);
    make_model();
    g_test_add_func("/peer-plot/png", test_png);
    g_test_add_func("/peer-plot/svg", test_svg);
    g_test_add_func("/peer-plot/pdf", test_pdf);
    g_test_add_func("/peer-plot/csv", test_csv);
    g_test_add_func("/peer-plot/refused", test_refused);
    g_test_add_func("/peer-plot/heatmap", test_heatmap);
    g_test_add_func("/peer-plot/path", test_path);
    int status = g_test_run();
    remove_tree(work_dir);
    g_free(run_a);
    g_free(run_b);
    g_free(checkpoint);
    g_free(text_path);
    g_free(work_dir);
    return status;
}
