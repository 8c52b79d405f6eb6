/* Frame times of the expert heat map of a 1024² grid while a run trains on another thread: how
 * long one frame of the widget takes when the view changes (zoom and pan: the grid's image is
 * reused) and when the data changes (a live refresh: the image is coloured anew), and what the
 * worker spends building one grid for the page (metric grids and per-head usage of a million
 * experts and 8 heads).
 *
 * Without --window a frame is what the widget's snapshot does: a surface of the widget's size,
 * the renderer drawing into it, a texture made of it. With --window (needs a display: run under
 * xvfb-run) the real widget runs in a window, one change per tick of the frame clock, and a
 * frame is the time from the tick to the end of its paint; the interval between ticks is
 * reported too.
 *
 * The training thread runs the run file on the corpus with one thread, adding every step to the
 * expert statistics as the workbench's session does. */
#include <gtk/gtk.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-common.h"
#include "corpus.h"
#include "expert-heatmap.h"
#include "expert-monitor.h"
#include "thread-pool.h"
#include "trainer.h"

#define HEADS 8

typedef struct {
    int side;
    int width, height;
    int frames;
    gboolean window;
    char *run_path;
    char *corpus_path;
} Options;

/* ---- timings --------------------------------------------------------------------------------- */

typedef struct {
    double *ms;
    int count;
} Timings;

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(Timings *t, double p)
{
    if (t->count == 0)
        return NAN;
    qsort(t->ms, (size_t)t->count, sizeof(double), compare_double);
    int index = (int)ceil(p * t->count) - 1;
    return t->ms[index < 0 ? 0 : index];
}

static void report(const char *what, Timings *t)
{
    double median = percentile(t, 0.5), p95 = percentile(t, 0.95);
    printf("%-34s %5d frames  median %7.2f ms  p95 %7.2f ms  max %7.2f ms  (%.0f fps at p95)\n",
           what, t->count, median, p95, t->ms[t->count - 1], 1000.0 / p95);
    printf("RESULT {\"what\": \"%s\", \"frames\": %d, \"median_ms\": %.3f, \"p95_ms\": %.3f, "
           "\"max_ms\": %.3f}\n",
           what, t->count, median, p95, t->ms[t->count - 1]);
}

/* ---- the training thread --------------------------------------------------------------------- */

typedef struct {
    trainer tr;
    corpus data;
    thread_pool *pool;
    expert_monitor monitor;
    gint stop;
    gint steps;
    double seconds;
} Training;

static gpointer train_main(gpointer data)
{
    Training *training = data;
    peer_error err;
    double start = bench_now();
    while (!g_atomic_int_get(&training->stop)) {
        if (!trainer_step(&training->tr, training->pool, &err) ||
            !expert_monitor_add_step(&training->monitor, training->tr.model, training->tr.step,
                                     training->pool, &err)) {
            fprintf(stderr, "bench-heatmap: training stopped: %s\n", err.message);
            break;
        }
        g_atomic_int_inc(&training->steps);
        if (training->tr.step >= training->tr.settings.steps)
            training->tr.step = 0; /* the schedule starts over; the benchmark only needs load */
    }
    training->seconds = bench_now() - start;
    return NULL;
}

static gboolean training_start(Training *training, const Options *opt)
{
    peer_error err;
    char *json = NULL;
    model_config cfg;
    train_settings settings;
    if (!g_file_get_contents(opt->run_path, &json, NULL, NULL) ||
        !run_config_from_json(&cfg, &settings, json, &err)) {
        fprintf(stderr, "bench-heatmap: %s: not a run file\n", opt->run_path);
        g_free(json);
        return FALSE;
    }
    g_free(json);
    if (!corpus_load_file(&training->data, opt->corpus_path, settings.seq_len, &err) ||
        !(training->pool = thread_pool_new(1, &err)) ||
        !trainer_init(&training->tr, &cfg, &settings, &training->data, &err) ||
        !expert_monitor_init(&training->monitor, &cfg, EXPERT_MONITOR_HALF_LIFE,
                             EXPERT_MONITOR_HISTORY_BYTES, &err)) {
        fprintf(stderr, "bench-heatmap: %s\n", err.message);
        return FALSE;
    }
    return TRUE;
}

/* ---- the data -------------------------------------------------------------------------------- */

/* Selections of a skewed usage, as a trained layer has: a few hot experts, many rare, some never
 * chosen; phase moves the hot spots so that two grids differ everywhere. */
static float *make_counts(int side, unsigned phase)
{
    size_t n = (size_t)side * side;
    float *values = bench_alloc(n * sizeof *values);
    uint64_t state = 0x9e3779b97f4a7c15ull * (phase + 1);
    for (size_t i = 0; i < n; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        double u = (double)(state >> 11) / 9007199254740992.0;
        int a = (int)(i / side), b = (int)(i % side);
        double hot = sin(0.013 * a + phase) * cos(0.021 * b - phase);
        values[i] = u < 0.08 ? 0.0f : (float)floor(exp(6.0 * u * (1.0 + hot)));
    }
    return values;
}

/* What the worker does for one refresh of the page: the metric grids and every head's usage of
 * a 1024² layer with 8 heads, from statistics filled with random selections. */
static void time_worker_grid(int side, int repeats)
{
    size_t N = (size_t)side * side;
    expert_monitor monitor = {0};
    model_config cfg = {0};
    cfg.n_layers = 1;
    cfg.layers[0].kind = FFN_PEER;
    cfg.layers[0].peer.n_experts = (int)N;
    cfg.layers[0].peer.heads = HEADS;
    peer_error err;
    if (!expert_monitor_init(&monitor, &cfg, EXPERT_MONITOR_HALF_LIFE,
                             EXPERT_MONITOR_HISTORY_BYTES, &err)) {
        fprintf(stderr, "bench-heatmap: %s\n", err.message);
        exit(1);
    }
    /* 100 steps of 2048 tokens × 8 heads × 16 slots, as peer-million's batches are, added as the
     * session adds them: the choices of a model's last forward, on a pool of two threads. */
    enum { BT = 2048, TOPK = 16 };
    size_t slots = (size_t)BT * HEADS * TOPK;
    peer_model model = {0};
    model.cfg = cfg;
    model.cfg.layers[0].peer.topk = TOPK;
    model.cfg.layers[0].peer.activation = PEER_ACTIVATION_GELU;
    model.last_B = 1;
    model.last_T = BT;
    peer_layer_acts *acts = &model.acts.peer[0];
    acts->expert = bench_alloc(slots * sizeof *acts->expert);
    acts->gate = bench_alloc(slots * sizeof *acts->gate);
    acts->preact = bench_alloc(slots * sizeof *acts->preact);
    thread_pool *pool = thread_pool_new(2, &err);
    uint64_t state = 12345;
    double add_seconds = 0.0;
    for (int step = 1; step <= 100; step++) {
        for (size_t s = 0; s < slots; s++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            acts->expert[s] = (int32_t)((state >> 33) % N);
            acts->gate[s] = 1.0f / TOPK;
            acts->preact[s] = (float)((state >> 40) & 0xff) / 128.0f - 1.0f;
        }
        double t0 = bench_now();
        if (!expert_monitor_add_step(&monitor, &model, step, pool, &err)) {
            fprintf(stderr, "bench-heatmap: %s\n", err.message);
            exit(1);
        }
        add_seconds += bench_now() - t0;
    }
    thread_pool_free(pool);
    float *count = bench_alloc(N * sizeof *count), *mass = bench_alloc(N * sizeof *mass),
          *act = bench_alloc(N * sizeof *act);
    expert_usage usage[HEADS + 1];
    double tokens;
    for (int window = 0; window < 2; window++) {
        Timings t = {bench_alloc((size_t)repeats * sizeof(double)), 0};
        for (int r = 0; r < repeats; r++) {
            double t0 = bench_now();
            if (!expert_monitor_grid(&monitor, 0, (expert_window)window, -1, count, mass, act,
                                     usage, &tokens, &err)) {
                fprintf(stderr, "bench-heatmap: %s\n", err.message);
                exit(1);
            }
            t.ms[t.count++] = (bench_now() - t0) * 1e3;
        }
        char what[64];
        snprintf(what, sizeof what, "worker: grid, %s window", expert_window_name(window));
        report(what, &t);
        free(t.ms);
    }
    printf("worker: adding one step of %zu selections to the statistics (2 threads): %.2f ms\n",
           slots, add_seconds / 100 * 1e3);
    free(count);
    free(mass);
    free(act);
    free(acts->expert);
    free(acts->gate);
    free(acts->preact);
    expert_monitor_free(&monitor);
}

/* ---- frames without a display ---------------------------------------------------------------- */

/* The view of frame i of a zoom-and-pan tour: in from the whole grid to single cells near a
 * corner, across, and back out. */
static void tour_view(int side, int i, int frames, ExpertHeatmapView *view)
{
    double t = (double)i / frames;
    double zoom = t < 0.5 ? t * 2.0 : (1.0 - t) * 2.0;
    double span = side * pow(EXPERT_HEATMAP_MIN_SPAN / side, zoom);
    *view = (ExpertHeatmapView){side * 0.7 * t, side * 0.2 + side * 0.3 * t, span};
    expert_heatmap_view_clamp(view, side);
}

/* One frame as the widget makes it: a surface of its size, the renderer, a texture. */
static double frame(int width, int height, const ExpertHeatmapModel *model,
                    const ExpertHeatmapView *view, const PlotStyle *style, cairo_surface_t *image)
{
    double t0 = bench_now();
    cairo_surface_t *surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, width, height);
    cairo_t *cr = cairo_create(surface);
    expert_heatmap_render(cr, width, height, model, view, style, image, NULL);
    cairo_destroy(cr);
    cairo_surface_flush(surface);
    GBytes *bytes = g_bytes_new_with_free_func(
        cairo_image_surface_get_data(surface),
        (gsize)cairo_image_surface_get_stride(surface) * (gsize)height,
        (GDestroyNotify)cairo_surface_destroy, surface);
    GdkTexture *texture = gdk_memory_texture_new(width, height, GDK_MEMORY_DEFAULT, bytes,
                                                 (gsize)cairo_image_surface_get_stride(surface));
    g_bytes_unref(bytes);
    g_object_unref(texture);
    return (bench_now() - t0) * 1e3;
}

static void run_headless(const Options *opt, float *const values[2])
{
    PlotStyle style;
    plot_style_init_light(&style);
    ExpertHeatmapModel model = {.side = opt->side, .values = values[0], .zero_is_empty = true,
                                .scale = EXPERT_HEATMAP_LOG, .title = "Layer 2 · selections",
                                .value_label = "selections", .selected = -1};
    double t0 = bench_now();
    cairo_surface_t *image = expert_heatmap_image_new(&model, &style);
    printf("first image of the grid (allocated): %.2f ms\n", (bench_now() - t0) * 1e3);

    Timings view_times = {bench_alloc((size_t)opt->frames * sizeof(double)), 0};
    for (int i = 0; i < opt->frames; i++) {
        ExpertHeatmapView view;
        tour_view(opt->side, i, opt->frames, &view);
        view_times.ms[view_times.count++] =
            frame(opt->width, opt->height, &model, &view, &style, image);
    }
    Timings refresh_times = {bench_alloc((size_t)opt->frames * sizeof(double)), 0};
    for (int i = 0; i < opt->frames; i++) {
        ExpertHeatmapView view;
        expert_heatmap_view_reset(&view, opt->side);
        model.values = values[(i + 1) % 2];
        double start = bench_now();
        expert_heatmap_image_update(image, &model, &style);
        double colour = (bench_now() - start) * 1e3;
        refresh_times.ms[refresh_times.count++] =
            colour + frame(opt->width, opt->height, &model, &view, &style, image);
    }
    char what[64];
    snprintf(what, sizeof what, "view change, %dx%d", opt->width, opt->height);
    report(what, &view_times);
    snprintf(what, sizeof what, "data refresh, %dx%d", opt->width, opt->height);
    report(what, &refresh_times);
    cairo_surface_destroy(image);
    free(view_times.ms);
    free(refresh_times.ms);
}

/* ---- frames in a window ---------------------------------------------------------------------- */

typedef struct {
    const Options *opt;
    PeerExpertHeatmap *map;
    float *const *values;
    int frame;          /* ticks so far */
    double tick_at;     /* when the current frame's tick ran */
    double last_tick;
    Timings views, refreshes, intervals;
    GMainLoop *loop;
} WindowRun;

static gboolean on_tick(GtkWidget *widget, GdkFrameClock *clock, gpointer data)
{
    WindowRun *run = data;
    const Options *opt = run->opt;
    double now = bench_now();
    if (run->last_tick > 0.0 && run->frame > 1)
        run->intervals.ms[run->intervals.count++] = (now - run->last_tick) * 1e3;
    run->last_tick = now;
    run->tick_at = now;
    int i = run->frame++;
    if (i < opt->frames) {
        ExpertHeatmapView view;
        tour_view(opt->side, i, opt->frames, &view);
        peer_expert_heatmap_set_view(run->map, &view);
    } else if (i < 2 * opt->frames) {
        if (i == opt->frames)
            peer_expert_heatmap_reset_view(run->map);
        peer_expert_heatmap_set_grid(run->map, opt->side, run->values[i % 2], TRUE);
    } else {
        g_main_loop_quit(run->loop);
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

static void on_after_paint(GdkFrameClock *clock, gpointer data)
{
    WindowRun *run = data;
    int i = run->frame - 1;
    if (i < 1 || run->tick_at <= 0.0)
        return;
    double ms = (bench_now() - run->tick_at) * 1e3;
    run->tick_at = 0.0;
    if (i < run->opt->frames)
        run->views.ms[run->views.count++] = ms;
    else if (i < 2 * run->opt->frames)
        run->refreshes.ms[run->refreshes.count++] = ms;
}

static void on_realize(GtkWidget *widget, gpointer data)
{
    g_signal_connect(gtk_widget_get_frame_clock(widget), "after-paint",
                     G_CALLBACK(on_after_paint), data);
}

static void run_window(const Options *opt, float *const values[2])
{
    WindowRun run = {.opt = opt, .values = values, .loop = g_main_loop_new(NULL, FALSE)};
    run.views.ms = bench_alloc((size_t)opt->frames * sizeof(double));
    run.refreshes.ms = bench_alloc((size_t)opt->frames * sizeof(double));
    run.intervals.ms = bench_alloc((size_t)opt->frames * 2 * sizeof(double));
    GtkWidget *window = gtk_window_new();
    gtk_window_set_default_size(GTK_WINDOW(window), opt->width, opt->height);
    run.map = PEER_EXPERT_HEATMAP(peer_expert_heatmap_new());
    peer_expert_heatmap_set_scale(run.map, EXPERT_HEATMAP_LOG);
    peer_expert_heatmap_set_title(run.map, "Layer 2 · selections");
    peer_expert_heatmap_set_value_label(run.map, "selections");
    peer_expert_heatmap_set_grid(run.map, opt->side, values[0], TRUE);
    gtk_window_set_child(GTK_WINDOW(window), GTK_WIDGET(run.map));
    g_signal_connect(run.map, "realize", G_CALLBACK(on_realize), &run);
    gtk_widget_add_tick_callback(GTK_WIDGET(run.map), on_tick, &run, NULL);
    gtk_window_present(GTK_WINDOW(window));
    g_main_loop_run(run.loop);
    char what[64];
    snprintf(what, sizeof what, "window: view change, %dx%d", gtk_widget_get_width(window),
             gtk_widget_get_height(window));
    report(what, &run.views);
    snprintf(what, sizeof what, "window: data refresh, %dx%d", gtk_widget_get_width(window),
             gtk_widget_get_height(window));
    report(what, &run.refreshes);
    report("window: interval between ticks", &run.intervals);
    gtk_window_destroy(GTK_WINDOW(window));
    g_main_loop_unref(run.loop);
    free(run.views.ms);
    free(run.refreshes.ms);
    free(run.intervals.ms);
}

int main(int argc, char **argv)
{
    Options opt = {.side = 1024, .width = 900, .height = 700, .frames = 240};
    GOptionEntry entries[] = {
        {"side", 0, 0, G_OPTION_ARG_INT, &opt.side, "Sub-keys per side of the grid (default 1024)",
         "N"},
        {"width", 0, 0, G_OPTION_ARG_INT, &opt.width, "Width of the map (default 900)", "W"},
        {"height", 0, 0, G_OPTION_ARG_INT, &opt.height, "Height of the map (default 700)", "H"},
        {"frames", 0, 0, G_OPTION_ARG_INT, &opt.frames, "Frames of each kind (default 240)", "N"},
        {"window", 0, 0, G_OPTION_ARG_NONE, &opt.window,
         "Also time the widget in a window (needs a display)", NULL},
        {"train", 0, 0, G_OPTION_ARG_FILENAME, &opt.run_path,
         "Train this run file on one thread meanwhile (with --corpus)", "RUN.json"},
        {"corpus", 0, 0, G_OPTION_ARG_FILENAME, &opt.corpus_path, "The text to train on", "FILE"},
        {NULL, 0, 0, 0, NULL, NULL, NULL},
    };
    GOptionContext *context = g_option_context_new("- frame times of the expert heat map");
    g_option_context_add_main_entries(context, entries, NULL);
    GError *error = NULL;
    if (!g_option_context_parse(context, &argc, &argv, &error) || opt.side < 2 ||
        opt.side > 4096 || opt.width < 200 || opt.height < 200 || opt.frames < 10 ||
        (opt.run_path != NULL) != (opt.corpus_path != NULL)) {
        fprintf(stderr, "bench-heatmap: %s\n",
                error ? error->message
                      : "--side 2..4096, --width and --height >= 200, --frames >= 10, and "
                        "--train with --corpus");
        return 2;
    }
    g_option_context_free(context);
    if (opt.window && !gtk_init_check()) {
        fprintf(stderr, "bench-heatmap: --window needs a display (run under xvfb-run)\n");
        return 2;
    }

    Training training = {0};
    GThread *thread = NULL;
    if (opt.run_path) {
        if (!training_start(&training, &opt))
            return 1;
        thread = g_thread_new("training", train_main, &training);
    }
    printf("grid %d² (%d experts), map %dx%d, %d frames each%s\n", opt.side, opt.side * opt.side,
           opt.width, opt.height, opt.frames,
           opt.run_path ? ", a run training on another thread" : "");
    float *values[2] = {make_counts(opt.side, 0), make_counts(opt.side, 1)};
    run_headless(&opt, values);
    if (opt.window)
        run_window(&opt, values);
    if (opt.side == 1024)
        time_worker_grid(opt.side, 10);

    if (thread) {
        g_atomic_int_set(&training.stop, 1);
        g_thread_join(thread);
        printf("training meanwhile: %d steps in %.1f s\n", g_atomic_int_get(&training.steps),
               training.seconds);
        expert_monitor_free(&training.monitor);
        trainer_free(&training.tr);
        corpus_free(&training.data);
        thread_pool_free(training.pool);
    }
    free(values[0]);
    free(values[1]);
    g_free(opt.run_path);
    g_free(opt.corpus_path);
    return 0;
}
