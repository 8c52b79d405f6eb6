/* peer-plot: the workbench's plots drawn without a window, for papers and scripts. It draws
 * with the renderers the window draws with (the -render.h headers of ui/) and writes through
 * plot-export.h, so a figure made here is the one the window exports at the same size, and it
 * needs no display.
 *
 *   peer-plot loss RUN... --out FILE       loss curves of peer-train run folders (or their
 *                                          log.jsonl), or their points as CSV
 *   peer-plot heatmap CHECKPOINT --text FILE --out FILE
 *                                          a layer's experts on a text, or the grid as CSV
 *   peer-plot path CHECKPOINT --text STRING --token N --out FILE
 *                                          one token's retrieval path, or the path as JSON
 *
 * Pictures are PNG, SVG or PDF, as the extension of --out says. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli-common.h"
#include "expert-grid-csv.h"
#include "expert-heatmap-render.h"
#include "expert-stats.h"
#include "loss-csv.h"
#include "loss-plot-render.h"
#include "model.h"
#include "plot-export.h"
#include "retrieval-path-data.h"
#include "retrieval-path-json.h"
#include "retrieval-path-render.h"
#include "retrieval-trace.h"
#include "run-history.h"
#include "session.h"

#define LOSS_WIDTH 640.0
#define LOSS_HEIGHT 400.0
#define MAX_SMOOTHING 0.999

/* ---- what every command shares ------------------------------------------------------------ */

typedef struct {
    char *out;
    char *width;
    char *height;
    char *scale;
    char *title;
    char *font;
    char *font_size;
    gboolean dark;
} image_options;

typedef struct {
    double width, height, scale;
    PlotStyle style;
} image_settings;

static void add_image_options(GArray *entries, image_options *o)
{
    const GOptionEntry list[] = {
        { "out", 'o', 0, G_OPTION_ARG_FILENAME, &o->out,
          "The file to write (required); its extension chooses the format", "FILE" },
        { "width", 0, 0, G_OPTION_ARG_STRING, &o->width,
          "Width in pixels (PNG, SVG) or points (PDF)", "W" },
        { "height", 0, 0, G_OPTION_ARG_STRING, &o->height, "Height in pixels or points", "H" },
        { "scale", 0, 0, G_OPTION_ARG_STRING, &o->scale,
          "PNG pixels per unit: 2 doubles the resolution at the same layout (default 1)", "S" },
        { "title", 0, 0, G_OPTION_ARG_STRING, &o->title, "A title above the plot", "TEXT" },
        { "font", 0, 0, G_OPTION_ARG_STRING, &o->font, "The font family (default Sans)",
          "FAMILY" },
        { "font-size", 0, 0, G_OPTION_ARG_STRING, &o->font_size,
          "The labels' size in points (default 9)", "PT" },
        { "dark", 0, 0, G_OPTION_ARG_NONE, &o->dark, "Light text on a dark background", NULL },
    };
    g_array_append_vals(entries, list, G_N_ELEMENTS(list));
}

static bool has_extension(const char *path, const char *extension)
{
    const char *dot = strrchr(path, '.');
    return dot && !strchr(dot, '/') && g_ascii_strcasecmp(dot + 1, extension) == 0;
}

/* Whether an image of the settings' size can be drawn in the format out names; a usage error
 * saying what to change otherwise. */
static bool check_image_size(const char *out, const image_settings *settings)
{
    PlotExportFormat format;
    g_autoptr(GError) error = NULL;
    if (plot_export_format_for_path(out, &format, NULL) &&
        !plot_export_check_size(format, settings->width, settings->height, settings->scale,
                                &error)) {
        cli_usage_error("%s", error->message);
        return false;
    }
    return true;
}

/* Whether out names an image or, when data_extension is not NULL, a data file; a usage error
 * listing the extensions otherwise. */
static bool check_out(const char *out, const char *data_extension)
{
    if (plot_export_path_is_image(out) || (data_extension && has_extension(out, data_extension)))
        return true;
    if (data_extension)
        cli_usage_error("--out: cannot tell the format of “%s”: end the file name in .png, "
                        ".svg, .pdf, or .%s for the data",
                        out, data_extension);
    else
        cli_usage_error("--out: cannot tell the format of “%s”: end the file name in .png, "
                        ".svg or .pdf",
                        out);
    return false;
}

static void image_options_clear(image_options *o)
{
    g_free(o->out);
    g_free(o->width);
    g_free(o->height);
    g_free(o->scale);
    g_free(o->title);
    g_free(o->font);
    g_free(o->font_size);
}

/* The numbers and the style the options ask for, width and height defaulting to the ones given
 * (a default of 0 leaves it 0 for the command to fill in); false after a usage error. */
static bool parse_image_options(const image_options *o, double default_width,
                                double default_height, image_settings *settings)
{
    settings->width = default_width;
    settings->height = default_height;
    settings->scale = 1.0;
    double font_size = 0.0;
    if (!cli_parse_double("--width", o->width, 1.0, PLOT_EXPORT_MAX_UNITS, &settings->width) ||
        !cli_parse_double("--height", o->height, 1.0, PLOT_EXPORT_MAX_UNITS,
                          &settings->height) ||
        !cli_parse_double("--scale", o->scale, 0.1, PLOT_EXPORT_MAX_SCALE, &settings->scale) ||
        !cli_parse_double("--font-size", o->font_size, 1.0, 200.0, &font_size))
        return false;
    if (o->dark)
        plot_style_init_dark(&settings->style);
    else
        plot_style_init_light(&settings->style);
    if (o->font && *o->font)
        settings->style.font_family = o->font;
    if (font_size > 0.0)
        settings->style.font_size = font_size;
    return settings->width == 0.0 || settings->height == 0.0 ||
           check_image_size(o->out, settings);
}

/* ---- loss ---------------------------------------------------------------------------------- */

typedef struct {
    image_options image;
    char *x_axis;
    char *smoothing;
    char *metric;
    gboolean log_x;
    gboolean log_y;
    gboolean no_legend;
} loss_options;

/* One run read back, with its points in the columns the renderer takes. */
typedef struct {
    PeerRunHistory *history;
    char *name;
    GArray *columns[8]; /* double: train steps, tokens, flops, loss; the same for validation */
} loss_run;

enum { TRAIN_STEPS, TRAIN_TOKENS, TRAIN_FLOPS, TRAIN_LOSS, VAL_STEPS, VAL_TOKENS, VAL_FLOPS,
       VAL_LOSS };

static void loss_run_clear(loss_run *run)
{
    peer_run_history_free(run->history);
    g_free(run->name);
    for (gsize i = 0; i < G_N_ELEMENTS(run->columns); i++)
        if (run->columns[i])
            g_array_unref(run->columns[i]);
}

static void append(GArray *column, double value)
{
    g_array_append_val(column, value);
}

static void fill_columns(loss_run *run, double loss_scale)
{
    for (gsize i = 0; i < G_N_ELEMENTS(run->columns); i++)
        run->columns[i] = g_array_new(FALSE, FALSE, sizeof(double));
    GArray *points = run->history->loss_points;
    for (guint i = 0; i < points->len; i++) {
        const PeerLossPoint *p = &g_array_index(points, PeerLossPoint, i);
        append(run->columns[TRAIN_STEPS], (double)p->step);
        append(run->columns[TRAIN_TOKENS], p->tokens);
        append(run->columns[TRAIN_FLOPS], p->flops);
        append(run->columns[TRAIN_LOSS], p->loss * loss_scale);
    }
    GArray *evals = run->history->eval_points;
    for (guint i = 0; i < evals->len; i++) {
        const PeerEvalPoint *p = &g_array_index(evals, PeerEvalPoint, i);
        append(run->columns[VAL_STEPS], (double)p->step);
        append(run->columns[VAL_TOKENS], p->tokens);
        append(run->columns[VAL_FLOPS], p->flops);
        append(run->columns[VAL_LOSS], p->loss * loss_scale);
    }
}

static const double *column(const loss_run *run, int which)
{
    return (const double *)(void *)run->columns[which]->data;
}

/* The folder's name, made unique among the runs before it ("run", "run 2"). */
static char *run_name(const loss_run *runs, int n, const char *dir)
{
    g_autofree char *absolute = g_canonicalize_filename(dir, NULL);
    g_autofree char *base = g_path_get_basename(absolute);
    for (int suffix = 1;; suffix++) {
        char *name = suffix == 1 ? g_strdup(base) : g_strdup_printf("%s %d", base, suffix);
        bool taken = false;
        for (int i = 0; i < n && !taken; i++)
            taken = strcmp(runs[i].name, name) == 0;
        if (!taken)
            return name;
        g_free(name);
    }
}

static void render_loss(cairo_t *cr, double width, double height, const PlotStyle *style,
                        void *data)
{
    loss_plot_render(cr, width, height, data, style, NULL);
}

static bool parse_x_axis(const char *text, LossPlotXAxis *axis)
{
    static const char *const names[] = {
        [LOSS_PLOT_X_STEPS] = "steps",
        [LOSS_PLOT_X_TOKENS] = "tokens",
        [LOSS_PLOT_X_FLOPS] = "flops",
    };
    *axis = LOSS_PLOT_X_STEPS;
    for (unsigned i = 0; text && i < G_N_ELEMENTS(names); i++)
        if (strcmp(text, names[i]) == 0) {
            *axis = (LossPlotXAxis)i;
            return true;
        }
    if (!text)
        return true;
    cli_usage_error("--x: “%s” is not an axis (use steps, tokens or flops)", text);
    return false;
}

static int write_loss(loss_run *runs, int n, const loss_options *o, const image_settings *image,
                      LossPlotXAxis x_axis, double smoothing, bool bits)
{
    g_autoptr(GError) error = NULL;
    const char *out = o->image.out;
    if (!plot_export_path_is_image(out)) {
        PlotCsv *csv = plot_csv_new();
        loss_csv_add_header(csv);
        for (int i = 0; i < n; i++)
            loss_csv_add_run(csv, runs[i].name, runs[i].history->loss_points,
                             runs[i].history->eval_points);
        bool ok = plot_csv_save(csv, out, &error);
        plot_csv_free(csv);
        if (!ok)
            cli_error("%s", error->message);
        return ok ? 0 : CLI_EXIT_FAILURE;
    }

    LossPlotSeries *series = g_new0(LossPlotSeries, n);
    for (int i = 0; i < n; i++) {
        fill_columns(&runs[i], bits ? 1.0 / M_LN2 : 1.0);
        series[i] = (LossPlotSeries){
            .name = runs[i].name,
            .color = (unsigned)i,
            .visible = true,
            .n_train = runs[i].columns[TRAIN_LOSS]->len,
            .train_steps = column(&runs[i], TRAIN_STEPS),
            .train_tokens = column(&runs[i], TRAIN_TOKENS),
            .train_flops = column(&runs[i], TRAIN_FLOPS),
            .train_loss = column(&runs[i], TRAIN_LOSS),
            .n_val = runs[i].columns[VAL_LOSS]->len,
            .val_steps = column(&runs[i], VAL_STEPS),
            .val_tokens = column(&runs[i], VAL_TOKENS),
            .val_flops = column(&runs[i], VAL_FLOPS),
            .val_loss = column(&runs[i], VAL_LOSS),
        };
    }
    LossPlotModel model = {
        .series = series,
        .n_series = (size_t)n,
        .x_axis = x_axis,
        .log_x = o->log_x,
        .log_y = o->log_y,
        .smoothing = smoothing,
        .title = o->image.title,
        .y_label = bits ? "loss (bits per byte)" : NULL,
        .hide_legend = o->no_legend,
    };
    bool ok = plot_export_image(out, image->width, image->height, image->scale, &image->style,
                                render_loss, &model, &error);
    g_free(series);
    if (!ok)
        cli_error("%s", error->message);
    return ok ? 0 : CLI_EXIT_FAILURE;
}

static int run_loss(int n, char **paths, const loss_options *o)
{
    image_settings image;
    LossPlotXAxis x_axis;
    double smoothing = 0.0;
    if (!check_out(o->image.out, "csv") ||
        !parse_image_options(&o->image, LOSS_WIDTH, LOSS_HEIGHT, &image) ||
        !parse_x_axis(o->x_axis, &x_axis) ||
        !cli_parse_double("--smoothing", o->smoothing, 0.0, MAX_SMOOTHING, &smoothing))
        return CLI_EXIT_USAGE;
    bool bits = false;
    if (o->metric && strcmp(o->metric, "bits") == 0)
        bits = true;
    else if (o->metric && strcmp(o->metric, "loss") != 0) {
        cli_usage_error("--metric: “%s” is not a metric (use loss, in nats per token, or bits, "
                        "in bits per byte)",
                        o->metric);
        return CLI_EXIT_USAGE;
    }
    loss_run *runs = g_new0(loss_run, n);
    int status = 0, loaded = 0;
    for (int i = 0; i < n && status == 0; i++) {
        if (!peer_run_history_is_run(paths[i])) {
            cli_error("%s is not a peer-train run folder (one with a log.jsonl) nor a run log",
                      paths[i]);
            status = CLI_EXIT_FAILURE;
            break;
        }
        g_autoptr(GError) error = NULL;
        runs[i].history = peer_run_history_load(paths[i], &error);
        if (!runs[i].history) {
            cli_error("%s", error->message);
            status = CLI_EXIT_FAILURE;
            break;
        }
        runs[i].name = run_name(runs, i, runs[i].history->dir);
        loaded = i + 1;
    }
    if (status == 0)
        status = write_loss(runs, n, o, &image, x_axis, smoothing, bits);
    for (int i = 0; i < loaded; i++)
        loss_run_clear(&runs[i]);
    g_free(runs);
    return status;
}

static int loss_main(int argc, char **argv)
{
    loss_options o = { 0 };
    GArray *entries = g_array_new(FALSE, FALSE, sizeof(GOptionEntry));
    add_image_options(entries, &o.image);
    const GOptionEntry own[] = {
        { "x", 'x', 0, G_OPTION_ARG_STRING, &o.x_axis,
          "The x axis: steps, tokens or flops (training FLOPs) (default steps)", "AXIS" },
        { "log-x", 0, 0, G_OPTION_ARG_NONE, &o.log_x, "A logarithmic x axis", NULL },
        { "log-y", 0, 0, G_OPTION_ARG_NONE, &o.log_y, "A logarithmic y axis", NULL },
        { "smoothing", 0, 0, G_OPTION_ARG_STRING, &o.smoothing,
          "Weight of the moving average over the training loss, 0 to 0.999 (default 0)", "W" },
        { "metric", 0, 0, G_OPTION_ARG_STRING, &o.metric,
          "loss (nats per token) or bits (bits per byte) (default loss)", "METRIC" },
        { "no-legend", 0, 0, G_OPTION_ARG_NONE, &o.no_legend, "Leave the legend out", NULL },
        G_OPTION_ENTRY_NULL,
    };
    g_array_append_vals(entries, own, G_N_ELEMENTS(own));

    GOptionContext *context = g_option_context_new("RUN…");
    g_option_context_set_summary(
        context,
        "Draws the loss curves of peer-train runs, each a run folder (or its log.jsonl), as the\n"
        "workbench's Training page draws them: training loss as lines, validation loss as\n"
        "points. Or writes their points as one CSV: run, split (train or validation), step,\n"
        "tokens, flops, seconds, loss (nats per token), lr, grad_norm.");
    g_option_context_set_description(
        context,
        "The extension of --out chooses what is written: .png, .svg or .pdf the plot, .csv\n"
        "the data. The plot is W × H = 640 × 400 unless --width and --height say otherwise:\n"
        "a PNG of W·S × H·S pixels, an SVG of W × H pixels, a PDF of one page of W × H\n"
        "points. The file is replaced whole or not at all.\n"
        "\n"
        "Exit status: 0 written, 1 failed (an unreadable run, a file that cannot be\n"
        "written), 2 bad command line.");
    g_option_context_add_main_entries(context, (const GOptionEntry *)(void *)entries->data,
                                      NULL);
    bool parsed = cli_parse_options(context, &argc, &argv, 1, G_MAXINT / 2,
                                    "a RUN: a peer-train run folder or its log.jsonl");
    g_option_context_free(context);
    g_array_unref(entries);
    int status = CLI_EXIT_USAGE;
    if (parsed && !o.image.out)
        cli_usage_error("missing --out FILE: the file to write");
    else if (parsed)
        status = run_loss(argc - 1, argv + 1, &o);
    image_options_clear(&o.image);
    g_free(o.x_axis);
    g_free(o.smoothing);
    g_free(o.metric);
    return status;
}

/* ---- a model on a text: what heatmap and path share ---------------------------------------- */

static bool has_experts(const ffn_config *ffn)
{
    return ffn->kind == FFN_PEER || ffn->kind == FFN_PKM;
}

/* The layer --layer names, or the first PEER or PKM layer; false after the error (usage when
 * the option names a layer without experts, failure when the model has none). */
static bool choose_layer(const char *checkpoint, const model_config *cfg, const char *text,
                         int *layer, bool *usage)
{
    *layer = -1;
    *usage = false;
    if (!cli_parse_int("--layer", text, 0, MODEL_MAX_LAYERS - 1, layer)) {
        *usage = true;
        return false;
    }
    GString *list = g_string_new(NULL);
    for (int l = 0; l < cfg->n_layers; l++)
        if (has_experts(&cfg->layers[l]))
            g_string_append_printf(list, "%s%d", list->len ? ", " : "", l);
    bool ok = true;
    if (list->len == 0) {
        cli_error("%s has no PEER or PKM layer: there are no experts to draw", checkpoint);
        ok = false;
    } else if (*layer < 0) {
        *layer = atoi(list->str);
    } else if (*layer >= cfg->n_layers || !has_experts(&cfg->layers[*layer])) {
        cli_usage_error("--layer %d is not a PEER or PKM layer of this model (those are: %s)",
                        *layer, list->str);
        *usage = true;
        ok = false;
    }
    g_string_free(list, TRUE);
    return ok;
}

static const char *kind_name(const ffn_config *ffn)
{
    return ffn->kind == FFN_PEER ? "PEER" : "PKM";
}

/* "Layer 1 · PEER 32²", as the Experts page names a layer. */
static char *layer_title(const model_config *cfg, int layer)
{
    const ffn_config *ffn = &cfg->layers[layer];
    return g_strdup_printf("Layer %d · %s %d²", layer, kind_name(ffn),
                           peer_layer_side(&ffn->peer));
}

/* --head: one of the layer's heads, or -1 (all of them) when not given. */
static bool parse_head(const char *text, const ffn_config *ffn, int *head)
{
    *head = -1;
    return cli_parse_int("--head", text, 0, ffn->peer.heads - 1, head);
}

/* ---- heatmap ------------------------------------------------------------------------------- */

#define HEATMAP_WIDTH 640.0
#define HEATMAP_HEIGHT 520.0
/* Windows run through the model at once. */
#define HEATMAP_BATCH 8

typedef struct {
    image_options image;
    char *text;
    char *bytes;
    char *layer;
    char *head;
    char *metric;
    char *threads;
    gboolean log;
} heatmap_options;

static const struct {
    const char *name;
    expert_metric metric;
    const char *label;
} heatmap_metrics[] = {
    { "selections", EXPERT_METRIC_COUNT, "selections" },
    { "gate-mass", EXPERT_METRIC_GATE_MASS, "gate mass z′" },
    { "mean-activation", EXPERT_METRIC_MEAN_ACTIVATION, "mean activation" },
};

/* Runs the model over text in context-long windows (the last one shorter), in evaluation mode,
 * adding every token's choices at layer to stats. */
static void measure_experts(peer_model *model, const uint8_t *text, size_t size, int layer,
                            expert_stats *stats, thread_pool *pool)
{
    expert_stats *stats_of[MODEL_MAX_LAYERS] = { 0 };
    stats_of[layer] = stats;
    size_t T = (size_t)model->seq;
    size_t windows = size / T;
    for (size_t w = 0; w < windows; w += HEATMAP_BATCH) {
        int count = (int)MIN((size_t)HEATMAP_BATCH, windows - w);
        peer_model_forward(model, text + w * T, NULL, count, (int)T, PEER_MODE_EVAL, pool);
        peer_model_accumulate_stats(model, stats_of);
    }
    size_t rest = size - windows * T;
    if (rest > 0) {
        peer_model_forward(model, text + windows * T, NULL, 1, (int)rest, PEER_MODE_EVAL, pool);
        peer_model_accumulate_stats(model, stats_of);
    }
}

typedef struct {
    ExpertHeatmapModel model;
    ExpertHeatmapView view;
} heatmap_picture;

static void render_heatmap(cairo_t *cr, double width, double height, const PlotStyle *style,
                           void *data)
{
    heatmap_picture *picture = data;
    expert_heatmap_render(cr, width, height, &picture->model, &picture->view, style, NULL, NULL);
}

static int write_heatmap(const heatmap_options *o, const image_settings *image,
                         const model_config *cfg, int layer, int head, int metric,
                         const expert_stats *stats)
{
    const ffn_config *ffn = &cfg->layers[layer];
    int side = peer_layer_side(&ffn->peer);
    size_t n = (size_t)side * side;
    float *values[3];
    for (int m = 0; m < 3; m++) {
        values[m] = g_new(float, n);
        expert_stats_metric(stats, heatmap_metrics[m].metric, head, values[m]);
    }
    g_autoptr(GError) error = NULL;
    bool ok;
    if (!plot_export_path_is_image(o->image.out)) {
        PlotCsv *csv = plot_csv_new();
        expert_grid_csv_add(csv, side, values[0], values[1], values[2]);
        ok = plot_csv_save(csv, o->image.out, &error);
        plot_csv_free(csv);
    } else {
        g_autofree char *layer_name = layer_title(cfg, layer);
        g_autofree char *heads =
            head < 0 ? g_strdup("all heads") : g_strdup_printf("head %d", head);
        g_autofree char *title = g_strdup_printf("%s · %s · %s", layer_name,
                                                 heatmap_metrics[metric].label, heads);
        heatmap_picture picture = {
            .model = {
                .side = side,
                .values = values[metric],
                /* An expert never chosen has no count, gate mass or mean: drawn as empty. */
                .zero_is_empty = heatmap_metrics[metric].metric != EXPERT_METRIC_MEAN_ACTIVATION,
                .scale = o->log ? EXPERT_HEATMAP_LOG : EXPERT_HEATMAP_LINEAR,
                .title = o->image.title ? o->image.title : title,
                .value_label = heatmap_metrics[metric].label,
                .selected = -1,
            },
        };
        expert_heatmap_view_reset(&picture.view, side);
        ok = plot_export_image(o->image.out, image->width, image->height, image->scale,
                               &image->style, render_heatmap, &picture, &error);
    }
    for (int m = 0; m < 3; m++)
        g_free(values[m]);
    if (!ok)
        cli_error("%s", error->message);
    return ok ? 0 : CLI_EXIT_FAILURE;
}

static int run_heatmap(const char *checkpoint, const heatmap_options *o)
{
    image_settings image;
    long max_bytes = G_MAXLONG;
    if (!check_out(o->image.out, "csv") ||
        !parse_image_options(&o->image, HEATMAP_WIDTH, HEATMAP_HEIGHT, &image) ||
        !cli_parse_long("--bytes", o->bytes, 1, G_MAXLONG, &max_bytes))
        return CLI_EXIT_USAGE;
    int metric = -1;
    for (int m = 0; m < (int)G_N_ELEMENTS(heatmap_metrics); m++)
        if (!o->metric || strcmp(o->metric, heatmap_metrics[m].name) == 0) {
            metric = m;
            break;
        }
    if (metric < 0) {
        cli_usage_error("--metric: “%s” is not a measure of the experts (use selections, "
                        "gate-mass or mean-activation)",
                        o->metric);
        return CLI_EXIT_USAGE;
    }
    bool usage = false;
    thread_pool *pool = cli_thread_pool_new(o->threads, &usage);
    if (!pool)
        return usage ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;

    int status = CLI_EXIT_FAILURE;
    peer_error err = { 0 };
    peer_model *model = NULL;
    g_autoptr(GBytes) bytes = NULL;
    expert_stats stats = { 0 };
    model_config cfg;
    int layer, head;
    if (!checkpoint_read_config(checkpoint, &cfg, &err)) {
        cli_error("%s", err.message);
        goto done;
    }
    if (!choose_layer(checkpoint, &cfg, o->layer, &layer, &usage)) {
        status = usage ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
        goto done;
    }
    if (!parse_head(o->head, &cfg.layers[layer], &head)) {
        status = CLI_EXIT_USAGE;
        goto done;
    }
    if (!cli_read_file(o->text, &bytes, &err)) {
        cli_error("%s", err.message);
        goto done;
    }
    gsize size = 0;
    const uint8_t *text = g_bytes_get_data(bytes, &size);
    size = MIN(size, (gsize)max_bytes);
    if (size == 0) {
        cli_error("%s is empty: give a text for the model to read", o->text);
        goto done;
    }
    int T = (int)MIN((gsize)cfg.context, size);
    int windows = (int)MIN((gsize)HEATMAP_BATCH, size / (gsize)T);
    model = checkpoint_load_model(checkpoint, MAX(windows, 1), T, &err);
    const ffn_config *ffn = &cfg.layers[layer];
    if (!model || !expert_stats_init(&stats, ffn->peer.n_experts, ffn->peer.heads, &err)) {
        cli_error("%s", err.message);
        goto done;
    }
    measure_experts(model, text, size, layer, &stats, pool);
    status = write_heatmap(o, &image, &cfg, layer, head, metric, &stats);

done:
    expert_stats_free(&stats);
    peer_model_free(model);
    thread_pool_free(pool);
    return status;
}

static int heatmap_main(int argc, char **argv)
{
    heatmap_options o = { 0 };
    GArray *entries = g_array_new(FALSE, FALSE, sizeof(GOptionEntry));
    add_image_options(entries, &o.image);
    const GOptionEntry own[] = {
        { "text", 0, 0, G_OPTION_ARG_FILENAME, &o.text,
          "The text the model reads (required)", "FILE" },
        { "bytes", 0, 0, G_OPTION_ARG_STRING, &o.bytes, "Read only the text's first N bytes",
          "N" },
        { "layer", 'l', 0, G_OPTION_ARG_STRING, &o.layer,
          "The PEER or PKM layer, counted from 0 (default the first)", "L" },
        { "head", 0, 0, G_OPTION_ARG_STRING, &o.head, "Only this head (default all heads)",
          "H" },
        { "metric", 0, 0, G_OPTION_ARG_STRING, &o.metric,
          "selections, gate-mass (the paper's z′) or mean-activation (default selections)",
          "METRIC" },
        { "log", 0, 0, G_OPTION_ARG_NONE, &o.log, "A logarithmic colour scale", NULL },
        { "threads", 't', 0, G_OPTION_ARG_STRING, &o.threads,
          "Worker threads (default: every processor)", "N" },
        G_OPTION_ENTRY_NULL,
    };
    g_array_append_vals(entries, own, G_N_ELEMENTS(own));

    GOptionContext *context = g_option_context_new("CHECKPOINT");
    g_option_context_set_summary(
        context,
        "Draws the expert heat map of a saved model on a text, as the workbench's Experts page\n"
        "draws it: the n × n grid of a PEER or PKM layer's experts (row a from the sub-keys C,\n"
        "column b from C′), each coloured by how much the text used it. Or writes the grid as\n"
        "CSV: expert, row, column, selections, gate_mass, mean_activation.");
    g_option_context_set_description(
        context,
        "The model reads the text in evaluation mode, in windows as long as its context.\n"
        "The extension of --out chooses what is written: .png, .svg or .pdf the map (640 × 520\n"
        "unless --width and --height say otherwise), .csv the grid.\n"
        "\n"
        "Exit status: 0 written, 1 failed (an unreadable checkpoint or text, a file that\n"
        "cannot be written), 2 bad command line.");
    g_option_context_add_main_entries(context, (const GOptionEntry *)(void *)entries->data,
                                      NULL);
    bool parsed = cli_parse_options(context, &argc, &argv, 1, 1, "the CHECKPOINT to measure");
    g_option_context_free(context);
    g_array_unref(entries);
    int status = CLI_EXIT_USAGE;
    if (parsed && !o.image.out)
        cli_usage_error("missing --out FILE: the file to write");
    else if (parsed && !o.text)
        cli_usage_error("missing --text FILE: the text the model reads");
    else if (parsed)
        status = run_heatmap(argv[1], &o);
    image_options_clear(&o.image);
    g_free(o.text);
    g_free(o.bytes);
    g_free(o.layer);
    g_free(o.head);
    g_free(o.metric);
    g_free(o.threads);
    return status;
}

/* ---- path ---------------------------------------------------------------------------------- */

/* Heads side by side, at most, when --width does not say. */
#define PATH_COLUMNS 2

typedef struct {
    image_options image;
    char *text;
    char *token;
    char *layer;
    char *head;
    char *threads;
} path_options;

static void render_path(cairo_t *cr, double width, double height, const PlotStyle *style,
                        void *data)
{
    retrieval_path_render(cr, width, height, data, style);
}

/* A byte as a title shows it: the character, or an escape. */
static char *byte_name(uint8_t byte)
{
    if (byte == '\n')
        return g_strdup("“\\n”");
    if (byte == ' ')
        return g_strdup("“ ”");
    if (byte > 0x20 && byte < 0x7f)
        return g_strdup_printf("“%c”", byte);
    return g_strdup_printf("0x%02x", byte);
}

static int write_path(const path_options *o, image_settings *image, const model_config *cfg,
                      int layer, int head, int token, uint8_t byte,
                      const peer_token_trace *trace)
{
    const ffn_config *ffn = &cfg->layers[layer];
    g_autoptr(GError) error = NULL;
    bool ok;
    if (!plot_export_path_is_image(o->image.out)) {
        ok = retrieval_path_save_json(o->image.out, trace, layer, kind_name(ffn), token, byte,
                                      &error);
    } else {
        int first = head < 0 ? 0 : head, count = head < 0 ? trace->heads : 1;
        RetrievalPathHead *heads = g_new(RetrievalPathHead, count);
        RetrievalPathData data;
        retrieval_path_data_from_trace(&data, heads, trace, first, count, ffn->kind == FFN_PKM);
        g_autofree char *layer_name = layer_title(cfg, layer);
        g_autofree char *shown = byte_name(byte);
        g_autofree char *title = g_strdup_printf("%s · token %d, %s", layer_name, token, shown);
        data.title = o->image.title ? o->image.title : title;
        if (image->width == 0.0) {
            double panel_width, panel_height;
            retrieval_path_panel_size(&data, &image->style, &panel_width, &panel_height);
            image->width = ceil(panel_width * MIN(count, PATH_COLUMNS));
        }
        if (image->height == 0.0)
            image->height = ceil(retrieval_path_height_for_width(&data, &image->style,
                                                                 image->width));
        ok = check_image_size(o->image.out, image);
        if (ok)
            ok = plot_export_image(o->image.out, image->width, image->height, image->scale,
                                   &image->style, render_path, &data, &error);
        g_free(heads);
        if (!ok && !error)
            return CLI_EXIT_USAGE;
    }
    if (!ok)
        cli_error("%s", error->message);
    return ok ? 0 : CLI_EXIT_FAILURE;
}

static int run_path(const char *checkpoint, const path_options *o)
{
    image_settings image;
    if (!check_out(o->image.out, "json") ||
        !parse_image_options(&o->image, 0.0, 0.0, &image))
        return CLI_EXIT_USAGE;
    size_t length = strlen(o->text);
    if (length == 0) {
        cli_usage_error("--text is empty: give at least one byte");
        return CLI_EXIT_USAGE;
    }
    bool usage = false;
    thread_pool *pool = cli_thread_pool_new(o->threads, &usage);
    if (!pool)
        return usage ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;

    int status = CLI_EXIT_FAILURE;
    peer_error err = { 0 };
    peer_model *model = NULL;
    model_config cfg;
    int layer, head, token;
    if (!checkpoint_read_config(checkpoint, &cfg, &err)) {
        cli_error("%s", err.message);
        goto done;
    }
    if (!choose_layer(checkpoint, &cfg, o->layer, &layer, &usage)) {
        status = usage ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
        goto done;
    }
    int T = length < (size_t)cfg.context ? (int)length : cfg.context;
    token = T - 1;
    if (!parse_head(o->head, &cfg.layers[layer], &head) ||
        !cli_parse_int("--token", o->token, 0, T - 1, &token)) {
        status = CLI_EXIT_USAGE;
        goto done;
    }
    model = checkpoint_load_model(checkpoint, 1, T, &err);
    if (!model) {
        cli_error("%s", err.message);
        goto done;
    }
    const uint8_t *text = (const uint8_t *)o->text;
    peer_model_forward(model, text, NULL, 1, T, PEER_MODE_EVAL, pool);

    /* The token's layer input and normalised query, as the forward left them. */
    const ffn_config *ffn = &cfg.layers[layer];
    int D = cfg.d_model, HK = ffn->peer.heads * ffn->peer.d_key;
    const float *x = model->acts.ln2 + ((size_t)layer * T + (size_t)token) * D;
    const float *query = model->acts.peer[layer].query_normed + (size_t)token * HK;
    peer_token_trace trace;
    if (!peer_token_trace_compute(&trace, &ffn->peer, &model->params.blocks[layer].peer, x, query,
                                  &err)) {
        cli_error("%s", err.message);
        goto done;
    }
    status = write_path(o, &image, &cfg, layer, head, token, text[token], &trace);
    peer_token_trace_free(&trace);

done:
    peer_model_free(model);
    thread_pool_free(pool);
    return status;
}

static int path_main(int argc, char **argv)
{
    path_options o = { 0 };
    GArray *entries = g_array_new(FALSE, FALSE, sizeof(GOptionEntry));
    add_image_options(entries, &o.image);
    const GOptionEntry own[] = {
        { "text", 0, 0, G_OPTION_ARG_STRING, &o.text, "The text the token is in (required)",
          "STRING" },
        { "token", 0, 0, G_OPTION_ARG_STRING, &o.token,
          "The token's position, counted from 0 (default the last)", "N" },
        { "layer", 'l', 0, G_OPTION_ARG_STRING, &o.layer,
          "The PEER or PKM layer, counted from 0 (default the first)", "L" },
        { "head", 0, 0, G_OPTION_ARG_STRING, &o.head, "Only this head (default all heads)",
          "H" },
        { "threads", 't', 0, G_OPTION_ARG_STRING, &o.threads,
          "Worker threads (default: every processor)", "N" },
        G_OPTION_ENTRY_NULL,
    };
    g_array_append_vals(entries, own, G_N_ELEMENTS(own));

    GOptionContext *context = g_option_context_new("CHECKPOINT");
    g_option_context_set_summary(
        context,
        "Draws the retrieval path of one token of a text through a saved model's PEER or PKM\n"
        "layer, as the workbench's Tokens page draws it: per head, the query's scores against\n"
        "both sub-key sets, their top k, the k × k candidates and the experts chosen, with\n"
        "gates, activations and contributions. Or writes all of it as JSON.");
    g_option_context_set_description(
        context,
        "Each byte is one token; a text longer than the model's context is cut to it. The\n"
        "model runs in evaluation mode, as peer-trace runs it. The extension of --out chooses\n"
        "what is written: .png, .svg or .pdf the picture (two heads side by side and as tall\n"
        "as their panels need, unless --width and --height say otherwise), .json the path.\n"
        "\n"
        "Exit status: 0 written, 1 failed (an unreadable checkpoint, a file that cannot be\n"
        "written), 2 bad command line.");
    g_option_context_add_main_entries(context, (const GOptionEntry *)(void *)entries->data,
                                      NULL);
    bool parsed = cli_parse_options(context, &argc, &argv, 1, 1, "the CHECKPOINT to trace");
    g_option_context_free(context);
    g_array_unref(entries);
    int status = CLI_EXIT_USAGE;
    if (parsed && !o.image.out)
        cli_usage_error("missing --out FILE: the file to write");
    else if (parsed && !o.text)
        cli_usage_error("missing --text STRING: the text the token is in");
    else if (parsed)
        status = run_path(argv[1], &o);
    image_options_clear(&o.image);
    g_free(o.text);
    g_free(o.token);
    g_free(o.layer);
    g_free(o.head);
    g_free(o.threads);
    return status;
}

/* ---- the commands -------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    const char *summary;
    int (*main)(int argc, char **argv);
} plot_command;

static const plot_command commands[] = {
    { "loss", "loss curves of peer-train runs, or their points as CSV", loss_main },
    { "heatmap", "a layer's experts on a text as a heat map, or the grid as CSV", heatmap_main },
    { "path", "one token's retrieval path through a layer, or the path as JSON", path_main },
};

static void print_usage(FILE *stream)
{
    fprintf(stream,
            "Usage:\n  peer-plot COMMAND [OPTION…] ARGUMENTS…\n\n"
            "Draws the workbench's plots without a window, as PNG, SVG or PDF, or writes their\n"
            "data. “peer-plot COMMAND --help” tells more.\n\nCommands:\n");
    for (gsize i = 0; i < G_N_ELEMENTS(commands); i++)
        fprintf(stream, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv)
{
    cli_init("peer-plot");
    if (argc < 2) {
        print_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        print_usage(stdout);
        return 0;
    }
    for (gsize i = 0; i < G_N_ELEMENTS(commands); i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            /* Messages and --help then name the command: "peer-plot loss: ...". */
            static char program[64];
            g_snprintf(program, sizeof program, "peer-plot %s", commands[i].name);
            cli_init(program);
            return commands[i].main(argc - 1, argv + 1);
        }
    }
    GString *names = g_string_new(NULL);
    for (gsize i = 0; i < G_N_ELEMENTS(commands); i++)
        g_string_append_printf(names, "%s%s", i ? ", " : "", commands[i].name);
    cli_usage_error("unknown command “%s” (the commands are: %s)", argv[1], names->str);
    g_string_free(names, TRUE);
    return CLI_EXIT_USAGE;
}
