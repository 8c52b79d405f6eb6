/* Plots exported to files, without a display: a PNG decodes at the size asked (times the scale);
 * an SVG is XML whose <text> elements hold the title, the axis labels and the legend, over the
 * outlines cairo draws, and cells a renderer magnifies stay crisp in it; a PDF has one page of
 * the size asked, in points, and poppler renders it
 * to the same picture as the PNG; CSV reads back to the very values written, text quoted as
 * RFC 4180 says. Every failure to write (a missing folder, a path through a file, a folder in
 * the way, a device, a disk that fills up partway) is an error naming the path, the reason and
 * what to do, and leaves the old file as it was and nothing else behind. */
#include <errno.h>
#include <glib/gstdio.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "loss-plot-render.h"
#include "plot-export.h"

#define N_POINTS 40

typedef struct {
    double steps[N_POINTS], tokens[N_POINTS], loss_a[N_POINTS], loss_b[N_POINTS];
    double val_steps[3], val_tokens[3], val_loss[3];
    LossPlotSeries series[2];
    LossPlotModel model;
    PlotStyle style;
} Fixture;

static void fixture_init(Fixture *f)
{
    for (int i = 0; i < N_POINTS; i++) {
        f->steps[i] = 10.0 * (i + 1);
        f->tokens[i] = 2048.0 * (i + 1);
        f->loss_a[i] = 2.0 + 3.0 * exp(-i / 8.0);
        f->loss_b[i] = 2.3 + 2.5 * exp(-i / 10.0);
    }
    for (int i = 0; i < 3; i++) {
        f->val_steps[i] = 100.0 * (i + 1);
        f->val_tokens[i] = 20480.0 * (i + 1);
        f->val_loss[i] = 2.6 - 0.1 * i;
    }
    f->series[0] = (LossPlotSeries){.name = "alpha-run", .color = 0, .visible = true,
                                    .n_train = N_POINTS, .train_steps = f->steps,
                                    .train_tokens = f->tokens, .train_loss = f->loss_a,
                                    .n_val = 3, .val_steps = f->val_steps,
                                    .val_tokens = f->val_tokens, .val_loss = f->val_loss};
    f->series[1] = (LossPlotSeries){.name = "beta & <gamma>", .color = 1, .visible = true,
                                    .n_train = N_POINTS, .train_steps = f->steps,
                                    .train_tokens = f->tokens, .train_loss = f->loss_b};
    f->model = (LossPlotModel){.series = f->series, .n_series = 2, .title = "Export test"};
    plot_style_init_light(&f->style);
}

static void render_loss(cairo_t *cr, double width, double height, const PlotStyle *style,
                        void *data)
{
    loss_plot_render(cr, width, height, data, style, NULL);
}

static char *temp_dir(void)
{
    g_autoptr(GError) error = NULL;
    char *dir = g_dir_make_tmp("peer-export-XXXXXX", &error);
    g_assert_no_error(error);
    return dir;
}

/* Every entry of dir, hidden ones included, sorted, joined by spaces. */
static char *list_dir(const char *dir)
{
    GDir *handle = g_dir_open(dir, 0, NULL);
    g_assert_nonnull(handle);
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    const char *name;
    while ((name = g_dir_read_name(handle)))
        g_ptr_array_add(names, g_strdup(name));
    g_dir_close(handle);
    g_ptr_array_sort(names, (GCompareFunc)(void *)g_strcmp0);
    g_ptr_array_add(names, NULL);
    char *joined = g_strjoinv(" ", (char **)names->pdata);
    g_ptr_array_unref(names);
    return joined;
}

static void remove_tree(const char *dir)
{
    GDir *handle = g_dir_open(dir, 0, NULL);
    const char *name;
    while (handle && (name = g_dir_read_name(handle))) {
        g_autofree char *path = g_build_filename(dir, name, NULL);
        if (g_file_test(path, G_FILE_TEST_IS_DIR) && !g_file_test(path, G_FILE_TEST_IS_SYMLINK))
            remove_tree(path);
        else
            g_remove(path);
    }
    if (handle)
        g_dir_close(handle);
    g_rmdir(dir);
}

static cairo_surface_t *decode_png(const char *path)
{
    cairo_surface_t *image = cairo_image_surface_create_from_png(path);
    g_assert_cmpint(cairo_surface_status(image), ==, CAIRO_STATUS_SUCCESS);
    return image;
}

static cairo_surface_t *draw_reference(Fixture *f, int width, int height)
{
    cairo_surface_t *surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, width, height);
    cairo_t *cr = cairo_create(surface);
    loss_plot_render(cr, width, height, &f->model, &f->style, NULL);
    cairo_destroy(cr);
    cairo_surface_flush(surface);
    return surface;
}

/* The largest difference of any channel at any pixel, and how many pixels differ by more than
 * tolerance. */
static int compare_images(cairo_surface_t *a, cairo_surface_t *b, int tolerance, int *worst)
{
    int width = cairo_image_surface_get_width(a), height = cairo_image_surface_get_height(a);
    g_assert_cmpint(cairo_image_surface_get_width(b), ==, width);
    g_assert_cmpint(cairo_image_surface_get_height(b), ==, height);
    cairo_surface_flush(a);
    cairo_surface_flush(b);
    int different = 0;
    *worst = 0;
    for (int y = 0; y < height; y++) {
        const guint8 *ra = cairo_image_surface_get_data(a) + y * cairo_image_surface_get_stride(a);
        const guint8 *rb = cairo_image_surface_get_data(b) + y * cairo_image_surface_get_stride(b);
        for (int x = 0; x < width; x++) {
            /* RGB24 leaves the alpha byte undefined: compare colour only. */
            int pixel = 0;
            for (int c = 0; c < 3; c++)
                pixel = MAX(pixel, abs(ra[4 * x + c] - rb[4 * x + c]));
            *worst = MAX(*worst, pixel);
            different += pixel > tolerance;
        }
    }
    return different;
}

/* ---- PNG ----------------------------------------------------------------------------------- */

static void test_png_size(void)
{
    Fixture f;
    fixture_init(&f);
    g_autofree char *dir = temp_dir();
    static const struct {
        double width, height, scale;
        int pixels_wide, pixels_high;
    } cases[] = {
        {320, 200, 1.0, 320, 200},
        {320, 200, 2.0, 640, 400},
        {301, 187, 1.5, 452, 281}, /* 451.5 and 280.5 round away from zero */
        {900, 120, 3.0, 2700, 360},
    };
    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *path = g_strdup_printf("%s/plot-%zu.PNG", dir, i);
        g_autoptr(GError) error = NULL;
        g_assert_true(plot_export_image(path, cases[i].width, cases[i].height, cases[i].scale,
                                        &f.style, render_loss, &f.model, &error));
        g_assert_no_error(error);
        cairo_surface_t *image = decode_png(path);
        g_assert_cmpint(cairo_image_surface_get_width(image), ==, cases[i].pixels_wide);
        g_assert_cmpint(cairo_image_surface_get_height(image), ==, cases[i].pixels_high);
        cairo_surface_destroy(image);
    }

    /* At scale 1 the file is the renderer's drawing, pixel for pixel. */
    g_autofree char *path = g_build_filename(dir, "plot-0.PNG", NULL);
    cairo_surface_t *image = decode_png(path);
    cairo_surface_t *reference = draw_reference(&f, 320, 200);
    int worst;
    g_assert_cmpint(compare_images(image, reference, 0, &worst), ==, 0);
    cairo_surface_destroy(reference);
    cairo_surface_destroy(image);
    remove_tree(dir);
}

/* ---- SVG ----------------------------------------------------------------------------------- */

typedef struct {
    GString *words;  /* every <text>'s content, one per line */
    char *width;     /* the root's width and height */
    char *height;
    int glyph_uses;  /* <use> elements: glyph outlines */
    bool in_text;
} SvgScan;

static void svg_start(GMarkupParseContext *context, const char *element, const char **names,
                      const char **values, gpointer data, GError **error)
{
    SvgScan *scan = data;
    if (strcmp(element, "svg") == 0 && !scan->width) {
        for (int i = 0; names[i]; i++) {
            if (strcmp(names[i], "width") == 0)
                scan->width = g_strdup(values[i]);
            else if (strcmp(names[i], "height") == 0)
                scan->height = g_strdup(values[i]);
        }
    }
    scan->glyph_uses += strcmp(element, "use") == 0;
    scan->in_text = strcmp(element, "text") == 0;
}

static void svg_end(GMarkupParseContext *context, const char *element, gpointer data,
                    GError **error)
{
    SvgScan *scan = data;
    if (strcmp(element, "text") == 0) {
        g_string_append_c(scan->words, '\n');
        scan->in_text = false;
    }
}

static void svg_text(GMarkupParseContext *context, const char *text, gsize length,
                     gpointer data, GError **error)
{
    SvgScan *scan = data;
    if (scan->in_text)
        g_string_append_len(scan->words, text, (gssize)length);
}

static bool has_line(const char *lines, const char *line)
{
    g_autofree char *needle = g_strdup_printf("\n%s\n", line);
    g_autofree char *haystack = g_strdup_printf("\n%s", lines);
    return strstr(haystack, needle) != NULL;
}

static void test_svg_text(void)
{
    Fixture f;
    fixture_init(&f);
    f.model.x_axis = LOSS_PLOT_X_TOKENS;
    f.model.smoothing = 0.5;
    g_autoptr(GError) error = NULL;
    GBytes *bytes = plot_export_render(PLOT_EXPORT_SVG, 640, 400, 1.0, &f.style, render_loss,
                                       &f.model, &error);
    g_assert_no_error(error);
    gsize size;
    const char *text = g_bytes_get_data(bytes, &size);

    SvgScan scan = {.words = g_string_new(NULL)};
    GMarkupParser parser = {.start_element = svg_start, .end_element = svg_end,
                            .text = svg_text};
    GMarkupParseContext *context = g_markup_parse_context_new(&parser, 0, &scan, NULL);
    g_assert_true(g_markup_parse_context_parse(context, text, (gssize)size, &error));
    g_assert_true(g_markup_parse_context_end_parse(context, &error));
    g_assert_no_error(error);
    g_markup_parse_context_free(context);

    g_assert_cmpstr(scan.width, ==, "640px");
    g_assert_cmpstr(scan.height, ==, "400px");
    /* The picture is outlines; the words are text as well, entities decoded by the parser. */
    g_assert_cmpint(scan.glyph_uses, >, 50);
    const char *expected[] = {"Export test", "tokens", "loss (nats)", "alpha-run",
                              "beta & <gamma>", "training, smoothed 0.50", "validation"};
    for (gsize i = 0; i < G_N_ELEMENTS(expected); i++) {
        if (!has_line(scan.words->str, expected[i]))
            g_error("the SVG has no <text> “%s”; it has:\n%s", expected[i], scan.words->str);
    }
    /* The y label is turned like the axis. */
    g_assert_nonnull(strstr(text, "transform=\"rotate(-90 "));
    g_string_free(scan.words, TRUE);
    g_free(scan.width);
    g_free(scan.height);
    g_bytes_unref(bytes);
}

/* A 4 × 4 checkerboard magnified 25 times, as a heat map draws its cells, and a 64 × 64 one
 * drawn at half its size. */
static void render_images(cairo_t *cr, double width, double height, const PlotStyle *style,
                          void *data)
{
    static const int sides[] = {4, 64};
    static const double scales[] = {25.0, 0.5};
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    for (int i = 0; i < 2; i++) {
        cairo_surface_t *image = cairo_image_surface_create(CAIRO_FORMAT_RGB24, sides[i],
                                                            sides[i]);
        cairo_t *image_cr = cairo_create(image);
        for (int y = 0; y < sides[i]; y++)
            for (int x = 0; x < sides[i]; x++) {
                cairo_set_source_rgb(image_cr, (x + y) % 2, 0.2, 0.5);
                cairo_rectangle(image_cr, x, y, 1, 1);
                cairo_fill(image_cr);
            }
        cairo_destroy(image_cr);
        cairo_save(cr);
        cairo_translate(cr, i * 110.0, 0.0);
        cairo_scale(cr, scales[i], scales[i]);
        cairo_set_source_surface(cr, image, 0, 0);
        cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST);
        cairo_rectangle(cr, 0, 0, sides[i], sides[i]);
        cairo_fill(cr);
        cairo_restore(cr);
        cairo_surface_destroy(image);
    }
}

/* The side of the PNG an <image> element of the SVG embeds. */
static int embedded_side(const char *svg, const char *attributes)
{
    g_autofree char *pattern = g_strdup_printf("<image id=\"image[0-9]+\" %s"
                                               "width=\"[0-9]+\" height=\"[0-9]+\" "
                                               "xlink:href=\"data:image/png;base64,([^\"]*)\"",
                                               attributes);
    GRegex *regex = g_regex_new(pattern, 0, 0, NULL);
    GMatchInfo *match = NULL;
    int side = -1;
    if (g_regex_match(regex, svg, 0, &match)) {
        g_autofree char *data = g_match_info_fetch(match, 1);
        gsize size;
        g_autofree guchar *png = g_base64_decode(data, &size);
        g_autofree char *dir = temp_dir();
        g_autofree char *path = g_build_filename(dir, "embedded.png", NULL);
        g_assert_true(g_file_set_contents(path, (const char *)png, (gssize)size, NULL));
        cairo_surface_t *image = decode_png(path);
        side = cairo_image_surface_get_width(image);
        g_assert_cmpint(cairo_image_surface_get_height(image), ==, side);
        cairo_surface_destroy(image);
        remove_tree(dir);
    }
    g_match_info_free(match);
    g_regex_unref(regex);
    return side;
}

/* Cells a renderer magnifies stay cells: marked for crisp rendering and their pixels repeated,
 * while an image drawn smaller is left to the viewer's smoothing. */
static void test_svg_crisp_images(void)
{
    PlotStyle style;
    plot_style_init_light(&style);
    g_autoptr(GError) error = NULL;
    GBytes *bytes = plot_export_render(PLOT_EXPORT_SVG, 200, 100, 1.0, &style, render_images,
                                       NULL, &error);
    g_assert_no_error(error);
    g_autofree char *svg = g_strndup(g_bytes_get_data(bytes, NULL), g_bytes_get_size(bytes));
    g_bytes_unref(bytes);
    g_assert_cmpint(embedded_side(svg, "image-rendering=\"optimizeSpeed\" "
                                       "style=\"image-rendering:pixelated\" "),
                    ==, 4 * 16);
    g_assert_cmpint(embedded_side(svg, ""), ==, 64);
    /* Still XML. */
    GMarkupParser parser = {0};
    GMarkupParseContext *context = g_markup_parse_context_new(&parser, 0, NULL, NULL);
    g_assert_true(g_markup_parse_context_parse(context, svg, -1, &error) &&
                  g_markup_parse_context_end_parse(context, &error));
    g_assert_no_error(error);
    g_markup_parse_context_free(context);
}

/* ---- PDF ----------------------------------------------------------------------------------- */

/* The output of a program, which must succeed; NULL (and the test skipped) when it is not
 * installed. */
static char *run_tool(const char *const *argv)
{
    g_autofree char *program = g_find_program_in_path(argv[0]);
    if (!program) {
        g_autofree char *why =
            g_strdup_printf("%s is not installed (poppler-utils; scripts/setup installs it)",
                            argv[0]);
        g_test_skip(why);
        return NULL;
    }
    char *out = NULL, *err = NULL;
    int status = 0;
    g_autoptr(GError) error = NULL;
    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out,
                               &err, &status, &error));
    g_assert_no_error(error);
    if (!g_spawn_check_wait_status(status, NULL))
        g_error("%s failed: %s", argv[0], err);
    g_free(err);
    return out;
}

/* The value of pdfinfo's line "key: value". */
static char *info_value(const char *info, const char *key)
{
    g_auto(GStrv) lines = g_strsplit(info, "\n", -1);
    for (int i = 0; lines[i]; i++) {
        if (g_str_has_prefix(lines[i], key) && lines[i][strlen(key)] == ':')
            return g_strstrip(g_strdup(lines[i] + strlen(key) + 1));
    }
    return NULL;
}

static void test_pdf_page(void)
{
    Fixture f;
    fixture_init(&f);
    g_autofree char *dir = temp_dir();
    g_autofree char *path = g_build_filename(dir, "plot.pdf", NULL);
    g_autoptr(GError) error = NULL;
    g_assert_true(plot_export_image(path, 420, 260, 1.0, &f.style, render_loss, &f.model,
                                    &error));
    g_assert_no_error(error);

    g_autofree char *info = run_tool((const char *[]){"pdfinfo", path, NULL});
    if (!info) {
        remove_tree(dir);
        return;
    }
    g_autofree char *pages = info_value(info, "Pages");
    g_autofree char *page_size = info_value(info, "Page size");
    g_autofree char *creator = info_value(info, "Creator");
    g_assert_cmpstr(pages, ==, "1");
    g_assert_cmpstr(page_size, ==, "420 x 260 pts");
    g_assert_cmpstr(creator, ==, "PEER Workbench");

    /* The text is text: poppler finds the labels and the legend. */
    g_autofree char *words = run_tool((const char *[]){"pdftotext", path, "-", NULL});
    g_assert_nonnull(strstr(words, "alpha-run"));
    g_assert_nonnull(strstr(words, "loss (nats)"));

    /* At 72 dpi a point is a pixel: poppler's rendering is the PNG's picture, but for the
     * edges of lines and letters, which two rasterisers smooth differently. */
    g_autofree char *prefix = g_build_filename(dir, "rendered", NULL);
    g_free(run_tool((const char *[]){"pdftoppm", "-r", "72", "-png", "-singlefile", path, prefix,
                                     NULL}));
    g_autofree char *rendered_path = g_strdup_printf("%s.png", prefix);
    cairo_surface_t *rendered = decode_png(rendered_path);
    g_assert_cmpint(cairo_image_surface_get_width(rendered), ==, 420);
    g_assert_cmpint(cairo_image_surface_get_height(rendered), ==, 260);
    cairo_surface_t *reference = draw_reference(&f, 420, 260);
    int worst;
    int different = compare_images(rendered, reference, 64, &worst);
    g_test_message("poppler against cairo: %d of %d pixels differ by more than 64 levels "
                   "(largest difference %d)",
                   different, 420 * 260, worst);
    g_assert_cmpint(different, <, 420 * 260 / 50);
    cairo_surface_destroy(reference);
    cairo_surface_destroy(rendered);
    remove_tree(dir);
}

/* ---- formats and sizes --------------------------------------------------------------------- */

static void test_bad_requests(void)
{
    Fixture f;
    fixture_init(&f);
    g_autofree char *dir = temp_dir();
    g_autoptr(GError) error = NULL;
    PlotExportFormat format;

    g_assert_true(plot_export_format_for_path("/x/figure.Svg", &format, NULL));
    g_assert_cmpint(format, ==, PLOT_EXPORT_SVG);
    g_autofree char *text_path = g_build_filename(dir, "figure.txt", NULL);
    g_assert_false(plot_export_image(text_path, 100, 100, 1, &f.style, render_loss, &f.model,
                                     &error));
    g_assert_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
    g_assert_nonnull(strstr(error->message, text_path));
    g_assert_nonnull(strstr(error->message, ".png, .svg or .pdf"));
    g_clear_error(&error);
    g_assert_false(plot_export_format_for_path("/x.y/figure", &format, &error));
    g_assert_nonnull(strstr(error->message, "no extension"));
    g_clear_error(&error);

    g_autofree char *png = g_build_filename(dir, "figure.png", NULL);
    g_assert_false(plot_export_image(png, 0, 100, 1, &f.style, render_loss, &f.model, &error));
    g_assert_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
    g_clear_error(&error);
    g_assert_false(plot_export_image(png, NAN, 100, 1, &f.style, render_loss, &f.model, &error));
    g_clear_error(&error);
    g_assert_false(plot_export_image(png, 10000, 10000, 2, &f.style, render_loss, &f.model,
                                     &error));
    g_assert_nonnull(strstr(error->message, "20000 × 20000 pixels"));
    g_clear_error(&error);
    g_assert_false(plot_export_image(png, 100, 100, 0, &f.style, render_loss, &f.model, &error));
    g_clear_error(&error);
    g_autofree char *pdf = g_build_filename(dir, "figure.pdf", NULL);
    g_assert_false(plot_export_image(pdf, 20000, 100, 1, &f.style, render_loss, &f.model,
                                     &error));
    g_assert_nonnull(strstr(error->message, "points"));
    g_clear_error(&error);
    /* A vector format ignores the scale. */
    g_assert_true(plot_export_image(pdf, 200, 100, 0, &f.style, render_loss, &f.model, &error));
    g_assert_no_error(error);

    g_autofree char *listing = list_dir(dir);
    g_assert_cmpstr(listing, ==, "figure.pdf");
    remove_tree(dir);
}

/* ---- writing ------------------------------------------------------------------------------- */

static void expect_write_error(const char *path, const char *reason, const char *advice)
{
    static const char contents[] = "plot";
    g_autoptr(GError) error = NULL;
    g_assert_false(plot_export_save(path, contents, sizeof contents - 1, &error));
    g_assert_nonnull(error);
    g_test_message("%s", error->message);
    g_assert_nonnull(strstr(error->message, path));
    if (!strstr(error->message, reason) || !strstr(error->message, advice))
        g_error("“%s” does not say “%s” and “%s”", error->message, reason, advice);
}

static void test_unwritable(void)
{
    g_autofree char *dir = temp_dir();
    g_autofree char *file = g_build_filename(dir, "a-file", NULL);
    g_assert_true(g_file_set_contents(file, "x", 1, NULL));

    /* A path through a file, a missing folder, a folder, a device: permissions do not matter,
     * so this holds for root too. */
    g_autofree char *through_file = g_build_filename(file, "plot.png", NULL);
    expect_write_error(through_file, "is not a folder", "Choose an existing folder");
    g_autofree char *missing = g_build_filename(dir, "missing", "plot.png", NULL);
    expect_write_error(missing, "does not exist", "Choose an existing folder");
    expect_write_error(dir, "that is a folder", "Give a file name");
    expect_write_error("/dev/null", "not a regular file", "Choose another name");

    g_autofree char *listing = list_dir(dir);
    g_assert_cmpstr(listing, ==, "a-file");
    g_autofree char *contents = NULL;
    g_assert_true(g_file_get_contents(file, &contents, NULL, NULL));
    g_assert_cmpstr(contents, ==, "x");
    remove_tree(dir);
}

/* A disk that fills up partway: the file-size limit makes write fail with EFBIG at 64 KiB, as
 * a full disk makes it fail with ENOSPC. The old file stays whole; no temporary file is left. */
static void test_disk_full(void)
{
    g_autofree char *dir = temp_dir();
    g_autofree char *path = g_build_filename(dir, "series.csv", NULL);
    g_assert_true(g_file_set_contents(path, "old,contents\n", -1, NULL));
    g_assert_cmpint(g_chmod(path, 0640), ==, 0);

    gsize size = 1 << 20;
    char *big = g_malloc(size);
    memset(big, 'x', size);
    struct rlimit before;
    g_assert_cmpint(getrlimit(RLIMIT_FSIZE, &before), ==, 0);
    struct rlimit limit = before;
    limit.rlim_cur = 64 * 1024;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &limit), ==, 0);
    g_autoptr(GError) error = NULL;
    gboolean ok = plot_export_save(path, big, size, &error);
    g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &before), ==, 0);
    signal(SIGXFSZ, old_handler);
    g_assert_false(ok);
    g_test_message("%s", error->message);
    g_assert_nonnull(strstr(error->message, path));
    g_assert_nonnull(strstr(error->message, "larger than this system allows"));

    g_autofree char *listing = list_dir(dir);
    g_assert_cmpstr(listing, ==, "series.csv");
    g_autofree char *contents = NULL;
    g_assert_true(g_file_get_contents(path, &contents, NULL, NULL));
    g_assert_cmpstr(contents, ==, "old,contents\n");

    /* With room, the file is replaced and keeps its permissions. */
    g_clear_error(&error);
    g_assert_true(plot_export_save(path, big, size, &error));
    g_assert_no_error(error);
    GStatBuf st;
    g_assert_cmpint(g_stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, (goffset)size);
    g_assert_cmpint(st.st_mode & 0777, ==, 0640);
    g_free(big);
    g_autofree char *after = list_dir(dir);
    g_assert_cmpstr(after, ==, "series.csv");
    remove_tree(dir);
}

/* ---- CSV ----------------------------------------------------------------------------------- */

/* Reads CSV text as RFC 4180 has it: rows of fields, quoted or not; a missing field is NULL. */
static GPtrArray *parse_csv(const char *text)
{
    GPtrArray *rows = g_ptr_array_new_with_free_func((GDestroyNotify)g_ptr_array_unref);
    const char *p = text;
    while (*p) {
        GPtrArray *row = g_ptr_array_new_with_free_func(g_free);
        for (;;) {
            GString *field = g_string_new(NULL);
            bool quoted = *p == '"', present = quoted;
            if (quoted) {
                for (p++;; p++) {
                    g_assert_true(*p != '\0');
                    if (*p == '"' && p[1] == '"')
                        g_string_append_c(field, *p++);
                    else if (*p == '"')
                        break;
                    else
                        g_string_append_c(field, *p);
                }
                p++;
            } else {
                for (; *p && *p != ',' && *p != '\n'; p++) {
                    g_assert_true(*p != '"' && *p != '\r');
                    g_string_append_c(field, *p);
                    present = true;
                }
            }
            g_ptr_array_add(row, present ? g_string_free(field, FALSE)
                                         : (g_string_free(field, TRUE), NULL));
            if (*p == ',') {
                p++;
                continue;
            }
            g_assert_true(*p == '\n');
            p++;
            break;
        }
        g_ptr_array_add(rows, row);
    }
    return rows;
}

static const char *field(GPtrArray *rows, guint row, guint column)
{
    GPtrArray *fields = g_ptr_array_index(rows, row);
    g_assert_cmpuint(column, <, fields->len);
    return g_ptr_array_index(fields, column);
}

static bool same_double(double a, double b)
{
    return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0;
}

static void test_csv_round_trip(void)
{
    /* Random bit patterns cover every exponent, subnormals, NaN and infinities; the rest are
     * the values where a short format would go wrong. */
    enum { N_RANDOM = 4000 };
    static const double special[] = {0.1,    1.0 / 3.0, 2.0 / 3.0, 1e-300, 5e-324,
                                     1.7976931348623157e308, -0.0, 123456789012345678.0,
                                     0.30000000000000004, 1e15, 1e16, INFINITY, -INFINITY, NAN};
    static const float special_floats[] = {0.1f, 1.0f / 3.0f, 1e-45f, 3.4028235e38f, 16777217.0f,
                                           -0.0f, 0.3f};
    GRand *rand = g_rand_new_with_seed(2407);
    gsize n_doubles = N_RANDOM + G_N_ELEMENTS(special);
    double *doubles = g_new(double, n_doubles);
    float *floats = g_new(float, n_doubles);
    for (gsize i = 0; i < n_doubles; i++) {
        if (i < N_RANDOM) {
            uint64_t bits = ((uint64_t)g_rand_int(rand) << 32) | g_rand_int(rand);
            uint32_t float_bits = g_rand_int(rand);
            memcpy(&doubles[i], &bits, sizeof bits);
            memcpy(&floats[i], &float_bits, sizeof float_bits);
            /* Half the values in the range data lives in, rather than in the extremes. */
            if (i % 2) {
                doubles[i] = g_rand_double_range(rand, -10.0, 10.0) *
                             pow(10.0, g_rand_int_range(rand, -12, 19));
                floats[i] = (float)doubles[i];
            }
        } else {
            doubles[i] = special[i - N_RANDOM];
            floats[i] = special_floats[(i - N_RANDOM) % G_N_ELEMENTS(special_floats)];
        }
    }
    const char *texts[] = {"plain", "with, comma", "with \"quotes\"", "two\nlines", " padded ",
                           "", "ünïcödé · ×", "cr\rlf"};

    PlotCsv *csv = plot_csv_new();
    plot_csv_add_text(csv, "text");
    plot_csv_add_text(csv, "double");
    plot_csv_add_text(csv, "float");
    plot_csv_add_text(csv, "int");
    plot_csv_add_text(csv, "missing");
    plot_csv_end_row(csv);
    for (gsize i = 0; i < n_doubles; i++) {
        plot_csv_add_text(csv, texts[i % G_N_ELEMENTS(texts)]);
        plot_csv_add_double(csv, doubles[i]);
        plot_csv_add_float(csv, floats[i]);
        plot_csv_add_int(csv, (int64_t)i * (i % 2 ? -1 : 1) * INT64_C(1000000007));
        plot_csv_add_empty(csv);
        plot_csv_end_row(csv);
    }

    g_autofree char *dir = temp_dir();
    g_autofree char *path = g_build_filename(dir, "values.csv", NULL);
    g_autoptr(GError) error = NULL;
    g_assert_true(plot_csv_save(csv, path, &error));
    g_assert_no_error(error);
    g_autofree char *text = NULL;
    gsize length;
    g_assert_true(g_file_get_contents(path, &text, &length, NULL));
    size_t expected_length;
    g_assert_cmpstr(text, ==, plot_csv_get_text(csv, &expected_length));
    g_assert_cmpuint(length, ==, expected_length);
    plot_csv_free(csv);

    GPtrArray *rows = parse_csv(text);
    g_assert_cmpuint(rows->len, ==, n_doubles + 1);
    g_assert_cmpstr(field(rows, 0, 1), ==, "double");
    for (gsize i = 0; i < n_doubles; i++) {
        guint row = (guint)i + 1;
        g_assert_cmpstr(field(rows, row, 0), ==, texts[i % G_N_ELEMENTS(texts)]);
        double read = g_ascii_strtod(field(rows, row, 1), NULL);
        if (!same_double(read, doubles[i]))
            g_error("%.17g was written as “%s”, which reads back as %.17g", doubles[i],
                    field(rows, row, 1), read);
        float read_float = strtof(field(rows, row, 2), NULL);
        if (!(isnan(read_float) && isnan(floats[i])) &&
            memcmp(&read_float, &floats[i], sizeof read_float) != 0)
            g_error("%.9g was written as “%s”, which reads back as %.9g", floats[i],
                    field(rows, row, 2), read_float);
        g_assert_cmpint(g_ascii_strtoll(field(rows, row, 3), NULL, 10), ==,
                        (int64_t)i * (i % 2 ? -1 : 1) * INT64_C(1000000007));
        g_assert_null(field(rows, row, 4));
    }
    /* The shortest text that reads back: what a person reading the file expects. */
    char buffer[G_ASCII_DTOSTR_BUF_SIZE];
    g_assert_cmpstr(plot_format_double_exact(0.1, buffer), ==, "0.1");
    g_assert_cmpstr(plot_format_double_exact(2048.0, buffer), ==, "2048");
    g_assert_cmpstr(plot_format_double_exact(0.30000000000000004, buffer), ==,
                    "0.30000000000000004");
    g_assert_cmpstr(plot_format_float_exact(0.1f, buffer), ==, "0.1");
    g_assert_cmpstr(plot_format_float_exact(16777216.0f, buffer), ==, "16777216");
    g_assert_cmpstr(plot_format_double_exact(NAN, buffer), ==, "nan");
    g_assert_cmpstr(plot_format_double_exact(-INFINITY, buffer), ==, "-inf");

    g_ptr_array_unref(rows);
    g_free(doubles);
    g_free(floats);
    g_rand_free(rand);
    remove_tree(dir);
}

int main(int argc, char **argv)
{
    /* Everything here must work without a display, as peer-plot does. */
    g_unsetenv("DISPLAY");
    g_unsetenv("WAYLAND_DISPLAY");
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/plot-export/png-size", test_png_size);
    g_test_add_func("/plot-export/svg-text", test_svg_text);
    g_test_add_func("/plot-export/svg-crisp-images", test_svg_crisp_images);
    g_test_add_func("/plot-export/pdf-page", test_pdf_page);
    g_test_add_func("/plot-export/bad-requests", test_bad_requests);
    g_test_add_func("/plot-export/unwritable", test_unwritable);
    g_test_add_func("/plot-export/disk-full", test_disk_full);
    g_test_add_func("/plot-export/csv-round-trip", test_csv_round_trip);
    return g_test_run();
}
