/* peer-experiment run as a user runs it: the tiny suite trains every variant end to end and
 * writes its tables with the rows the suite defines; a suite stopped part-way (--step-limit)
 * skips its finished variants when run again, resumes the stopped one, and ends with exactly the
 * numbers of an uninterrupted run; the tables and plots can be made again from the folder; and
 * bad input ends in a message and exit status 1 or 2. The program's path comes from
 * PEER_EXPERIMENT. One thread, so every run is the same bit for bit. */
#include <glib.h>
#include <glib/gstdio.h>
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#define TINY_VARIANTS 10

static char *tmp_dir;
static char *full_dir; /* the uninterrupted tiny suite, made by the first test that needs it */

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

static run_result run_experiment_argv(const char *const *args)
{
    const char *program = g_getenv("PEER_EXPERIMENT");
    if (!program)
        g_error("PEER_EXPERIMENT is not set: run this test through meson test");
    GPtrArray *argv = g_ptr_array_new();
    g_ptr_array_add(argv, (char *)program);
    for (const char *const *arg = args; *arg; arg++)
        g_ptr_array_add(argv, (char *)*arg);
    g_ptr_array_add(argv, NULL);
    run_result r = { .status = -1 };
    int wait_status = 0;
    g_autoptr(GError) error = NULL;
    if (!g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, &r.out,
                      &r.err, &wait_status, &error))
        g_error("cannot run %s: %s", program, error->message);
    if (WIFEXITED(wait_status))
        r.status = WEXITSTATUS(wait_status);
    g_ptr_array_free(argv, TRUE);
    return r;
}

/* Runs the program with the NULL-terminated arguments. */
static run_result run_experiment(const char *first, ...)
{
    GPtrArray *args = g_ptr_array_new();
    va_list list;
    va_start(list, first);
    for (const char *arg = first; arg; arg = va_arg(list, const char *))
        g_ptr_array_add(args, (char *)arg);
    va_end(list);
    g_ptr_array_add(args, NULL);
    run_result r = run_experiment_argv((const char *const *)args->pdata);
    g_ptr_array_free(args, TRUE);
    return r;
}

static void assert_success(const run_result *r)
{
    if (r->status != 0)
        g_error("exit status %d, stdout:\n%s\nstderr:\n%s", r->status, r->out, r->err);
}

static char *tmp_path(const char *name)
{
    return g_build_filename(tmp_dir, name, NULL);
}

static char *read_file(const char *dir, const char *name)
{
    g_autofree char *path = g_build_filename(dir, name, NULL);
    char *contents = NULL;
    g_autoptr(GError) error = NULL;
    if (!g_file_get_contents(path, &contents, NULL, &error))
        g_error("%s", error->message);
    return contents;
}

static const char *get_full_dir(void)
{
    if (!full_dir) {
        full_dir = tmp_path("full");
        run_result r = run_experiment("run", "--suite", "tiny", "--dir", full_dir, "--threads",
                                      "1", NULL);
        assert_success(&r);
        g_assert_nonnull(strstr(r.out, "finished in"));
        run_result_clear(&r);
    }
    return full_dir;
}

static json_t *load_results(const char *dir)
{
    g_autofree char *path = g_build_filename(dir, "results.json", NULL);
    json_error_t error;
    json_t *root = json_load_file(path, 0, &error);
    if (!root)
        g_error("%s: %s", path, error.text);
    return root;
}

/* The rows of a Markdown table that follows heading, without its header and rule. */
static int table_rows(const char *markdown, const char *heading, GPtrArray *rows)
{
    const char *at = strstr(markdown, heading);
    g_assert_nonnull(at);
    char **lines = g_strsplit(at, "\n", -1);
    int count = 0, table_line = 0;
    for (char **line = lines; *line; line++) {
        if (g_str_has_prefix(*line, "|")) {
            if (table_line++ >= 2) {
                count++;
                if (rows)
                    g_ptr_array_add(rows, g_strdup(*line));
            }
        } else if (table_line > 0) {
            break;
        }
    }
    g_strfreev(lines);
    return count;
}

static void test_tiny_suite(void)
{
    const char *dir = get_full_dir();
    g_autofree char *markdown = read_file(dir, "results.md");
    g_autoptr(GPtrArray) methods = g_ptr_array_new_with_free_func(g_free);
    g_assert_cmpint(table_rows(markdown, "## Methods at equal training compute", methods), ==, 5);
    const char *method_starts[] = { "| Dense", "| MoE", "| PKM", "| PEER (", "| PEER in every" };
    for (int i = 0; i < 5; i++) {
        const char *row = methods->pdata[i];
        g_assert_true(g_str_has_prefix(row, method_starts[i]));
        /* 8 columns, each filled: a finished variant has a perplexity. */
        g_assert_cmpint(g_strv_length(g_strsplit(row, "|", -1)), ==, 10);
        g_assert_null(strstr(row, "–"));
        g_assert_null(strstr(row, "pending"));
    }
    /* The norm table: the tiny suite crosses batch and none with both N, and adds layer. */
    g_autoptr(GPtrArray) norms = g_ptr_array_new_with_free_func(g_free);
    g_assert_cmpint(table_rows(markdown, "## Query norm", norms), ==, 5);
    g_assert_true(g_str_has_prefix(norms->pdata[0], "| 4² | batch"));
    g_assert_true(g_str_has_prefix(norms->pdata[1], "| 4² | none"));
    g_assert_true(g_str_has_prefix(norms->pdata[4], "| 8² | none"));
    g_assert_cmpint(table_rows(markdown, "## Number of experts", NULL), ==, 2);
    g_assert_cmpint(table_rows(markdown, "## Active experts", NULL), ==, 2);

    json_t *root = load_results(dir);
    json_t *variants = json_object_get(root, "variants");
    g_assert_cmpint(json_array_size(variants), ==, TINY_VARIANTS);
    double budget = json_number_value(json_object_get(root, "budget"));
    for (size_t i = 0; i < json_array_size(variants); i++) {
        json_t *v = json_array_get(variants, i);
        g_assert_cmpstr(json_string_value(json_object_get(v, "status")), ==, "done");
        double perplexity = json_number_value(json_object_get(v, "perplexity"));
        double loss = json_number_value(json_object_get(v, "val_loss"));
        g_assert_cmpfloat_with_epsilon(perplexity, exp(loss), 1e-9 * perplexity);
        /* Trained, not random: a byte model starts at ln 256 = 5.55 nats. */
        g_assert_cmpfloat(loss, <, 5.0);
        /* Every variant spends the budget to within one step. */
        double flops = json_number_value(json_object_get(v, "flops"));
        double per_step = json_number_value(json_object_get(v, "flops_per_step"));
        g_assert_cmpfloat(fabs(flops - budget), <=, per_step / 2 + 1);
        json_t *curve = json_object_get(v, "curve");
        g_assert_cmpint(json_array_size(curve), >=, 3);
        double previous = 0.0;
        for (size_t p = 0; p < json_array_size(curve); p++) {
            double x = json_number_value(json_object_get(json_array_get(curve, p), "flops"));
            g_assert_cmpfloat(x, >, previous);
            previous = x;
        }
        g_assert_cmpfloat(previous, ==, flops);
        /* PEER and PKM variants report their experts' usage, a share. */
        if (json_object_get(v, "n_experts")) {
            double usage = json_number_value(json_object_get(v, "usage"));
            g_assert_cmpfloat(usage, >, 0.0);
            g_assert_cmpfloat(usage, <=, 1.0);
        }
    }
    json_decref(root);

    g_autofree char *csv = read_file(dir, "results.csv");
    char **lines = g_strsplit(csv, "\n", -1);
    g_assert_cmpint(g_strv_length(lines), ==, TINY_VARIANTS + 2); /* header, rows, final "" */
    g_assert_true(g_str_has_prefix(lines[1], "dense,"));
    g_strfreev(lines);

    /* The tables again from the folder alone. */
    run_result r = run_experiment("table", "--dir", dir, NULL);
    assert_success(&r);
    g_assert_cmpstr(r.out, ==, markdown);
    run_result_clear(&r);
}

/* Every column of results.csv but the training time, which the clock decides. */
static char *csv_without_time(const char *dir)
{
    g_autofree char *csv = read_file(dir, "results.csv");
    GString *out = g_string_new(NULL);
    char **lines = g_strsplit(csv, "\n", -1);
    for (char **line = lines; *line; line++) {
        char *last = strrchr(*line, ',');
        if (last)
            *last = '\0';
        g_string_append_printf(out, "%s\n", *line);
    }
    g_strfreev(lines);
    return g_string_free(out, FALSE);
}

static void test_resume(void)
{
    const char *full = get_full_dir();
    g_autofree char *dir = tmp_path("resumed");
    /* 16 steps finish the dense variant; the mixture of experts stops at step 14 of 16. */
    run_result r = run_experiment("run", "--suite", "tiny", "--dir", dir, "--threads", "1",
                                  "--step-limit", "30", NULL);
    assert_success(&r);
    g_assert_nonnull(strstr(r.out, "stopped at step 14 of 16"));
    run_result_clear(&r);
    g_autofree char *partial = read_file(dir, "results.md");
    g_assert_nonnull(strstr(partial, "step 14/16"));
    g_assert_nonnull(strstr(partial, "pending"));

    r = run_experiment("run", "--dir", dir, "--threads", "1", "--step-limit", "25", NULL);
    assert_success(&r);
    g_assert_nonnull(strstr(r.out, "[1/10] dense: already done"));
    g_assert_nonnull(strstr(r.out, "resuming at step 14 of 16"));
    run_result_clear(&r);

    /* The rest with two threads: the engine's results do not depend on the count. */
    r = run_experiment("run", "--dir", dir, "--threads", "2", NULL);
    assert_success(&r);
    g_assert_nonnull(strstr(r.out, "finished in"));
    run_result_clear(&r);

    g_autofree char *expected = csv_without_time(full);
    g_autofree char *got = csv_without_time(dir);
    g_assert_cmpstr(got, ==, expected);
    json_t *a = load_results(full), *b = load_results(dir);
    json_t *va = json_object_get(a, "variants"), *vb = json_object_get(b, "variants");
    for (size_t i = 0; i < json_array_size(va); i++) {
        char *ca = json_dumps(json_object_get(json_array_get(va, i), "curve"), JSON_COMPACT);
        char *cb = json_dumps(json_object_get(json_array_get(vb, i), "curve"), JSON_COMPACT);
        g_assert_cmpstr(ca, ==, cb);
        free(ca);
        free(cb);
    }
    json_decref(a);
    json_decref(b);

    /* Once finished, a run has nothing left to do and changes nothing. */
    r = run_experiment("run", "--dir", dir, "--threads", "1", NULL);
    assert_success(&r);
    g_assert_nonnull(strstr(r.out, "[10/10] peer-n16-h2-k4-none: already done"));
    run_result_clear(&r);
    g_autofree char *again = csv_without_time(dir);
    g_assert_cmpstr(again, ==, expected);
}

/* PNG's IHDR: width and height, big-endian, at bytes 16 and 20. */
static void png_size(const char *contents, gsize length, guint32 *width, guint32 *height)
{
    g_assert_cmpuint(length, >, 24);
    g_assert_cmpint(memcmp(contents, "\x89PNG\r\n\x1a\n", 8), ==, 0);
    const guchar *p = (const guchar *)contents;
    *width = (guint32)p[16] << 24 | (guint32)p[17] << 16 | (guint32)p[18] << 8 | p[19];
    *height = (guint32)p[20] << 24 | (guint32)p[21] << 16 | (guint32)p[22] << 8 | p[23];
}

static void test_plot(void)
{
    const char *dir = get_full_dir();
    g_autofree char *png = tmp_path("plot.png");
    run_result r = run_experiment("plot", "--dir", dir, "--out", png, NULL);
    assert_success(&r);
    run_result_clear(&r);
    g_autofree char *contents = NULL;
    gsize length = 0;
    g_assert_true(g_file_get_contents(png, &contents, &length, NULL));
    guint32 width, height;
    png_size(contents, length, &width, &height);
    g_assert_cmpuint(width, ==, 1200);
    g_assert_cmpuint(height, ==, 460);

    g_autofree char *svg = tmp_path("experts.svg");
    r = run_experiment("plot", "--dir", dir, "--out", svg, "--kind", "experts", NULL);
    assert_success(&r);
    run_result_clear(&r);
    g_autofree char *svg_text = NULL;
    g_assert_true(g_file_get_contents(svg, &svg_text, NULL, NULL));
    g_assert_nonnull(strstr(svg_text, "<svg"));
    /* The words stay searchable in an SVG. */
    g_assert_nonnull(strstr(svg_text, "validation perplexity"));

    g_autofree char *pdf = tmp_path("active.pdf");
    r = run_experiment("plot", "--dir", dir, "--out", pdf, "--kind", "flops", "--group",
                       "active", NULL);
    assert_success(&r);
    run_result_clear(&r);
    g_autofree char *pdf_text = NULL;
    g_assert_true(g_file_get_contents(pdf, &pdf_text, NULL, NULL));
    g_assert_true(g_str_has_prefix(pdf_text, "%PDF"));
}

typedef struct {
    const char *args[12];
    int status;
    const char *message; /* in stderr */
} bad_case;

static void test_bad_input(void)
{
    const char *full = get_full_dir();
    g_autofree char *fresh = tmp_path("fresh");
    g_autofree char *empty = tmp_path("empty");
    g_assert_cmpint(g_mkdir_with_parents(empty, 0777), ==, 0);
    g_autofree char *file = tmp_path("a-file");
    g_assert_true(g_file_set_contents(file, "x", -1, NULL));
    const bad_case cases[] = {
        { { NULL }, 2, "no command" },
        { { "train", NULL }, 2, "unknown command “train”" },
        { { "run", NULL }, 2, "--dir is missing" },
        { { "run", "--dir", fresh, "--suite", "huge", NULL }, 2, "no suite “huge”" },
        { { "run", "--dir", fresh, "--budget", "-1", NULL }, 2, "--budget" },
        { { "run", "--dir", fresh, "--budget", "lots", NULL }, 2, "not a finite number" },
        { { "run", "--dir", fresh, "--base", "no-such-run", NULL }, 2, "no built-in run" },
        { { "run", "--dir", fresh, "--budget", "1000", NULL }, 2, "buys no step" },
        { { "run", "--dir", file, NULL }, 2, "is a file" },
        { { "run", "--dir", full, "--suite", "quick", NULL }, 2, "holds the tiny suite" },
        { { "run", "--dir", full, "--budget", "1e9", NULL }, 2, "budget" },
        { { "run", "--dir", full, "--only", "dense,sparse", NULL }, 2, "no variant “sparse”" },
        { { "run", "--dir", full, "--threads", "0", NULL }, 2, "--threads" },
        { { "run", "--dir", full, "--frobnicate", NULL }, 2, "frobnicate" },
        { { "table", "--dir", empty, NULL }, 1, "holds no experiment" },
        { { "table", "--dir", full, "--format", "xml", NULL }, 2, "not a format" },
        { { "plot", "--dir", full, NULL }, 2, "--out is missing" },
        { { "plot", "--dir", full, "--out", "plot.txt", NULL }, 2, "plot.txt" },
        { { "plot", "--dir", full, "--out", "p.png", "--kind", "pie", NULL }, 2, "not a plot" },
        { { "plot", "--dir", full, "--out", "p.png", "--group", "norm", NULL }, 2, "--kind flops" },
        { { "plot", "--dir", full, "--out", "p.png", "--width", "0", NULL }, 2, "--width" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        const char *const *a = cases[i].args;
        run_result r = run_experiment_argv(a);
        if (r.status != cases[i].status || !g_str_has_prefix(r.err, "peer-experiment: ") ||
            (cases[i].message && !strstr(r.err, cases[i].message)))
            g_error("case %zu (%s %s): status %d, stderr: %s", i, a[0] ? a[0] : "",
                    a[0] && a[1] ? a[1] : "", r.status, r.err);
        run_result_clear(&r);
    }
    /* Nothing was started in the folder of a refused command. */
    g_autofree char *definition = g_build_filename(fresh, "experiment.json", NULL);
    g_assert_false(g_file_test(definition, G_FILE_TEST_EXISTS));
}

/* A folder another program trains is refused, not trained twice at once. */
static void test_busy_folder(void)
{
    const char *dir = get_full_dir();
    g_autofree char *lock_path = g_build_filename(dir, "lock", NULL);
    int lock = open(lock_path, O_RDWR | O_CREAT, 0666);
    g_assert_cmpint(lock, >=, 0);
    g_assert_cmpint(flock(lock, LOCK_EX | LOCK_NB), ==, 0);
    run_result r = run_experiment("run", "--dir", dir, "--threads", "1", NULL);
    g_assert_cmpint(r.status, ==, 1);
    g_assert_nonnull(strstr(r.err, "another program is training"));
    run_result_clear(&r);
    close(lock);
    r = run_experiment("run", "--dir", dir, "--threads", "1", NULL);
    assert_success(&r);
    run_result_clear(&r);
}

static void remove_tree(const char *path)
{
    if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
        GDir *dir = g_dir_open(path, 0, NULL);
        const char *name;
        while (dir && (name = g_dir_read_name(dir))) {
            g_autofree char *child = g_build_filename(path, name, NULL);
            remove_tree(child);
        }
        if (dir)
            g_dir_close(dir);
        g_rmdir(path);
    } else {
        g_remove(path);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    tmp_dir = g_dir_make_tmp("peer-experiment-test-XXXXXX", NULL);
    g_assert_nonnull(tmp_dir);
    g_test_add_func("/experiment/tiny-suite", test_tiny_suite);
    g_test_add_func("/experiment/resume", test_resume);
    g_test_add_func("/experiment/plot", test_plot);
    g_test_add_func("/experiment/bad-input", test_bad_input);
    g_test_add_func("/experiment/busy-folder", test_busy_folder);
    int status = g_test_run();
    remove_tree(tmp_dir);
    g_free(tmp_dir);
    g_free(full_dir);
    return status;
}
