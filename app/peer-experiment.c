/* peer-experiment: tests the paper's claims on this machine. It trains a suite of model variants
 * (dense, MoE, PKM and PEER feed-forward layers, PEER in every block, and ablations of the number
 * of experts, the active experts and the query norm) to one budget of training FLOPs each,
 * evaluates them on the validation text, and writes the tables and plots.
 *
 *   peer-experiment run   --dir DIR [--suite tiny|quick|full] [--budget FLOPS] [--base RUN] ...
 *   peer-experiment list  [--suite NAME] [--budget FLOPS] [--base RUN]
 *   peer-experiment table --dir DIR [--format markdown|csv|json]
 *   peer-experiment plot  --dir DIR --out FILE.png|svg|pdf [--kind ...] [--group ...]
 */
#include <glib/gstdio.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli-common.h"
#include "experiment-figure.h"
#include "experiment-results.h"
#include "experiment-runner.h"
#include "experiment.h"
#include "plot-export.h"
#include "progress-bar.h"
#include "run-inputs.h"

#define EXIT_INTERRUPTED 130
#define DEFAULT_PLOT_WIDTH 1200.0
#define DEFAULT_PLOT_HEIGHT 460.0
#define MAX_BUDGET 1e24

static const char commands_help[] =
    "Commands:\n"
    "  run     train every variant of a suite to the budget, in --dir (resumes a stopped one)\n"
    "  list    show a suite's variants, their sizes and the steps the budget buys\n"
    "  table   print the tables of the results in --dir and write its results files\n"
    "  plot    draw the results in --dir to a PNG, SVG or PDF file\n"
    "\n"
    "Run “peer-experiment COMMAND --help” for a command's options.\n"
    "\n"
    "Exit status: 0 done, 1 failed (unreadable files, a variant diverged), 2 bad command line,\n"
    "130 stopped by Ctrl-C (run the same command again to continue).";

/* ---- options ----------------------------------------------------------------------------- */

typedef struct {
    char *dir;
    char *suite;
    char *budget;
    char *base;
    char *text;
    char *threads;
    char *only;
    char *step_limit;
    char *format;
    char *out;
    char *kind;
    char *group;
    char *width;
    char *height;
    char *scale;
    gboolean dark;
} options;

static void options_clear(options *o)
{
    char **fields[] = { &o->dir, &o->suite, &o->budget, &o->base, &o->text, &o->threads,
                        &o->only, &o->step_limit, &o->format, &o->out, &o->kind, &o->group,
                        &o->width, &o->height, &o->scale };
    for (size_t i = 0; i < G_N_ELEMENTS(fields); i++)
        g_clear_pointer(fields[i], g_free);
}

static GOptionEntry dir_entry(options *o)
{
    return (GOptionEntry){ "dir", 'd', 0, G_OPTION_ARG_FILENAME, &o->dir,
                           "The experiment's folder: its definition, a folder per variant and "
                           "the results", "DIR" };
}

static bool parse_command(const char *command, int *argc, char ***argv, options *o)
{
    g_autofree char *suite_help = g_strdup_printf(
        "The suite: %s (default quick when DIR is new, else DIR's)", experiment_suite_names());
    g_autofree char *base_help = NULL;
    {
        g_autofree char *presets = run_inputs_list_presets();
        base_help = g_strdup_printf("The base run whose shape and training settings the variants "
                                    "share: a built-in run (%s) or a run file (default: the "
                                    "suite's)",
                                    presets);
    }
    GOptionEntry run_entries[] = {
        dir_entry(o),
        { "suite", 0, 0, G_OPTION_ARG_STRING, &o->suite, suite_help, "NAME" },
        { "budget", 'b', 0, G_OPTION_ARG_STRING, &o->budget,
          "Training FLOPs per variant (default: the suite's, 2.5e12 for quick)", "FLOPS" },
        { "base", 0, 0, G_OPTION_ARG_FILENAME, &o->base, base_help, "RUN" },
        { "text", 0, 0, G_OPTION_ARG_FILENAME, &o->text,
          "UTF-8 text to train and validate on (default: Jane Austen's novels, built in)",
          "FILE" },
        { "threads", 't', 0, G_OPTION_ARG_STRING, &o->threads,
          "Worker threads (default: the processors this process may use)", "N" },
        { "only", 0, 0, G_OPTION_ARG_STRING, &o->only,
          "Run only these variants (names as “list” shows them, comma-separated)", "NAMES" },
        { "step-limit", 0, 0, G_OPTION_ARG_STRING, &o->step_limit,
          "Stop after N training steps in this run, saved to continue later", "N" },
        G_OPTION_ENTRY_NULL,
    };
    GOptionEntry list_entries[] = {
        { "suite", 0, 0, G_OPTION_ARG_STRING, &o->suite, "The suite (default quick)", "NAME" },
        { "budget", 'b', 0, G_OPTION_ARG_STRING, &o->budget,
          "Training FLOPs per variant (default: the suite's)", "FLOPS" },
        { "base", 0, 0, G_OPTION_ARG_FILENAME, &o->base, base_help, "RUN" },
        G_OPTION_ENTRY_NULL,
    };
    GOptionEntry table_entries[] = {
        dir_entry(o),
        { "format", 'f', 0, G_OPTION_ARG_STRING, &o->format,
          "What to print: markdown (the tables, default), csv or json", "FORMAT" },
        G_OPTION_ENTRY_NULL,
    };
    GOptionEntry plot_entries[] = {
        dir_entry(o),
        { "out", 'o', 0, G_OPTION_ARG_FILENAME, &o->out,
          "The file to draw: its extension (.png, .svg, .pdf) chooses the format", "FILE" },
        { "kind", 'k', 0, G_OPTION_ARG_STRING, &o->kind,
          "overview (default: the methods' curves beside perplexity against N), flops (one "
          "group's curves), experts (perplexity against N) or active (against h·k)", "KIND" },
        { "group", 'g', 0, G_OPTION_ARG_STRING, &o->group,
          "For --kind flops: methods (default), experts, active or norm", "GROUP" },
        { "width", 0, 0, G_OPTION_ARG_STRING, &o->width, "Width in pixels (default 1200)", "W" },
        { "height", 0, 0, G_OPTION_ARG_STRING, &o->height, "Height in pixels (default 460)",
          "H" },
        { "scale", 0, 0, G_OPTION_ARG_STRING, &o->scale,
          "PNG pixels per unit, for sharper images (default 1)", "S" },
        { "dark", 0, 0, G_OPTION_ARG_NONE, &o->dark, "Light text on a dark background", NULL },
        G_OPTION_ENTRY_NULL,
    };
    const struct {
        const char *name;
        const GOptionEntry *entries;
        const char *summary;
    } commands[] = {
        { "run", run_entries,
          "Trains each variant of a suite to the same budget of training FLOPs and evaluates it\n"
          "on the validation text; writes DIR/results.md, .csv and .json as variants finish.\n"
          "A stopped suite continues where it stopped when run again with the same DIR." },
        { "list", list_entries, "Shows a suite's variants and what the budget buys each." },
        { "table", table_entries, "Prints the results in DIR and writes its results files." },
        { "plot", plot_entries,
          "Draws validation loss against training FLOPs and final perplexity against the\n"
          "number of experts (or one of them) to an image file." },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(commands); i++) {
        if (strcmp(commands[i].name, command) != 0)
            continue;
        g_autofree char *parameter = g_strdup_printf("%s", command);
        GOptionContext *context = g_option_context_new(parameter);
        g_option_context_set_summary(context, commands[i].summary);
        g_option_context_add_main_entries(context, commands[i].entries, NULL);
        bool ok = cli_parse_options(context, argc, argv, 0, 0, "");
        g_option_context_free(context);
        return ok;
    }
    cli_usage_error("unknown command “%s”: use run, list, table or plot", command);
    return false;
}

static bool need_dir(const options *o)
{
    if (!o->dir || !*o->dir) {
        cli_usage_error("--dir is missing: name the experiment's folder");
        return false;
    }
    return true;
}

static bool parse_budget(const options *o, double *budget)
{
    *budget = 0.0;
    return cli_parse_double("--budget", o->budget, 1.0, MAX_BUDGET, budget);
}

/* ---- printing ---------------------------------------------------------------------------- */

static void print_count(FILE *out, double count)
{
    if (count >= 1e9)
        fprintf(out, "%.2f G", count / 1e9);
    else if (count >= 1e6)
        fprintf(out, "%.2f M", count / 1e6);
    else if (count >= 1e3)
        fprintf(out, "%.1f k", count / 1e3);
    else
        fprintf(out, "%.0f", count);
}

static void print_plan(const experiment *ex)
{
    printf("suite %s, base %s, %.3g training FLOPs per variant, %d variants:\n\n", ex->suite,
           ex->base_name, ex->budget, ex->n_variants);
    printf("%-26s %-40s %10s %10s %11s %7s\n", "name", "variant", "params", "active",
           "FLOPs/step", "steps");
    for (int i = 0; i < ex->n_variants; i++) {
        const experiment_variant *v = &ex->variants[i];
        /* Padded by characters, not bytes: labels hold "²". */
        long pad = 40 - g_utf8_strlen(v->label, -1);
        printf("%-26s %s%*s ", v->name, v->label, (int)MAX(pad, 0), "");
        char params[32], active[32];
        g_snprintf(params, sizeof params, "%.2f M", (double)v->params / 1e6);
        g_snprintf(active, sizeof active, "%.2f M", (double)v->active_params / 1e6);
        printf("%10s %10s %11.3g %7ld\n", params, active, v->flops_per_step, v->settings.steps);
    }
}

/* ---- run --------------------------------------------------------------------------------- */

typedef struct {
    const experiment *ex;
    progress_bar bar;
    bool terminal;            /* the bar is on screen */
    gint64 started;
    double flops_at_start;    /* the suite's FLOPs already done when this process began */
    bool have_start;
    int failed;
} run_view;

static volatile sig_atomic_t stop_requested;

static void request_stop(int signal_number)
{
    stop_requested = signal_number;
}

static bool should_stop(void *user_data)
{
    return stop_requested != 0;
}

static double suite_eta(run_view *view, const experiment_event *event)
{
    double done = event->suite_flops_done - view->flops_at_start;
    double seconds = (g_get_monotonic_time() - view->started) / 1e6;
    if (done <= 0.0 || seconds <= 0.0)
        return -1.0;
    return seconds / done * (event->suite_flops_total - event->suite_flops_done);
}

static void on_event(const experiment_event *event, void *user_data)
{
    run_view *view = user_data;
    const experiment *ex = view->ex;
    const experiment_variant *v = &ex->variants[event->variant];
    if (!view->have_start) {
        view->flops_at_start = event->suite_flops_done;
        view->have_start = true;
    }
    char eta[32];
    switch (event->kind) {
    case EXPERIMENT_EVENT_SKIPPED:
        printf("[%d/%d] %s: already %s", event->variant + 1, ex->n_variants, v->name,
               experiment_status_name(event->result->status));
        if (event->result->status == EXPERIMENT_DONE)
            printf(", perplexity %.3f", event->result->perplexity);
        printf("\n");
        break;
    case EXPERIMENT_EVENT_STARTED:
        printf("[%d/%d] %s — %s\n", event->variant + 1, ex->n_variants, v->name, v->label);
        if (event->step > 0)
            printf("  resuming at step %ld of %ld (%d × %d bytes per step, %.3g FLOPs each)",
                   event->step, event->steps, v->settings.batch_size, v->settings.seq_len,
                   v->flops_per_step);
        else
            printf("  %ld steps of %d × %d bytes, %.3g FLOPs each", event->steps,
                   v->settings.batch_size, v->settings.seq_len, v->flops_per_step);
        printf("; params ");
        print_count(stdout, (double)v->params);
        printf(", active ");
        print_count(stdout, (double)v->active_params);
        printf("\n");
        break;
    case EXPERIMENT_EVENT_STEP:
        progress_bar_draw(&view->bar, event->step, event->steps, event->train_loss,
                          event->tokens_per_second, suite_eta(view, event),
                          event->step == event->steps);
        break;
    case EXPERIMENT_EVENT_EVALUATED:
        progress_bar_clear(&view->bar);
        printf("  step %ld/%ld: val loss %.4f nats (%.3g FLOPs)", event->step, event->steps,
               event->point.loss, event->point.flops);
        printf("; suite ETA %s\n",
               progress_bar_format_duration(suite_eta(view, event), eta, sizeof eta));
        break;
    case EXPERIMENT_EVENT_FINISHED: {
        progress_bar_clear(&view->bar);
        const experiment_result *r = event->result;
        if (r->status == EXPERIMENT_FAILED) {
            view->failed++;
            printf("  failed at step %ld: %s\n", r->step, r->message);
        } else {
            printf("  done: val loss %.4f nats, %.3f bits/byte, perplexity %.3f", r->loss,
                   r->bits_per_byte, r->perplexity);
            if (isfinite(r->usage))
                printf("; usage %.1f%%, unevenness %.3f", r->usage * 100.0, r->unevenness);
            printf(" (%.0f s)\n", r->train_seconds);
        }
        break;
    }
    case EXPERIMENT_EVENT_STOPPED:
        progress_bar_clear(&view->bar);
        printf("  stopped at step %ld of %ld, saved\n", event->step, event->steps);
        break;
    }
    if (event->kind != EXPERIMENT_EVENT_STEP)
        fflush(stdout);
}

static char **split_names(const char *text, const experiment *ex, bool *ok)
{
    *ok = true;
    if (!text)
        return NULL;
    char **names = g_strsplit(text, ",", -1);
    for (char **name = names; *name; name++) {
        g_strstrip(*name);
        if (experiment_find_variant(ex, *name) < 0) {
            GString *all = g_string_new(NULL);
            for (int i = 0; i < ex->n_variants; i++)
                g_string_append_printf(all, "%s%s", i ? ", " : "", ex->variants[i].name);
            cli_usage_error("--only: the suite has no variant “%s” (its variants are %s)", *name,
                            all->str);
            g_string_free(all, TRUE);
            *ok = false;
        }
    }
    if (!*ok)
        g_clear_pointer(&names, g_strfreev);
    return names;
}

static int command_run(const options *o)
{
    double budget = 0.0;
    long step_limit = 0;
    if (!need_dir(o) || !parse_budget(o, &budget) ||
        !cli_parse_long("--step-limit", o->step_limit, 1, 1000000000L, &step_limit))
        return CLI_EXIT_USAGE;
    if (o->text && !*o->text) {
        cli_usage_error("--text is empty: give a path");
        return CLI_EXIT_USAGE;
    }
    bool usage = false;
    thread_pool *pool = cli_thread_pool_new(o->threads, &usage);
    if (!pool)
        return usage ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;

    int status = CLI_EXIT_FAILURE;
    GBytes *text = NULL;
    char *text_name = NULL;
    char **only = NULL;
    char *tables = NULL;
    peer_error err = { 0 };
    experiment *ex = experiment_open(o->dir, o->suite, o->base, budget, o->text, &text,
                                     &text_name, &usage, &err);
    if (!ex) {
        if (usage)
            cli_usage_error("%s", err.message);
        else
            cli_error("%s", err.message);
        status = usage ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
        goto out;
    }
    bool names_ok;
    only = split_names(o->only, ex, &names_ok);
    if (!names_ok) {
        status = CLI_EXIT_USAGE;
        goto out;
    }

    printf("peer-experiment: suite %s, base %s, %.3g training FLOPs per variant, %d variants, "
           "%d thread%s\n",
           ex->suite, ex->base_name, ex->budget, ex->n_variants, thread_pool_get_threads(pool),
           thread_pool_get_threads(pool) == 1 ? "" : "s");
    printf("text     %s\nfolder   %s\n\n", text_name, o->dir);
    fflush(stdout);

    run_view view = { .ex = ex, .started = g_get_monotonic_time() };
    progress_bar_init(&view.bar, stderr);
    struct sigaction action = { .sa_handler = request_stop, .sa_flags = SA_RESETHAND };
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);

    experiment_run_options run_options = {
        .pool = pool,
        .text = text,
        .text_name = text_name,
        .on_event = on_event,
        .should_stop = should_stop,
        .user_data = &view,
        .step_limit = step_limit,
        .only = (const char *const *)only,
    };
    experiment_run_status result = experiment_run(ex, o->dir, &run_options, &err);
    progress_bar_clear(&view.bar);
    char elapsed[32];
    progress_bar_format_duration((g_get_monotonic_time() - view.started) / 1e6, elapsed,
                                 sizeof elapsed);
    tables = g_build_filename(o->dir, EXPERIMENT_RESULTS_MARKDOWN, NULL);
    switch (result) {
    case EXPERIMENT_RUN_ERROR:
        cli_error("%s", err.message);
        status = CLI_EXIT_FAILURE;
        break;
    case EXPERIMENT_RUN_STOPPED:
        if (stop_requested) {
            fprintf(stderr, "%s: stopped after %s; run the same command again to continue\n",
                    cli_program(), elapsed);
            status = EXIT_INTERRUPTED;
        } else {
            printf("\nstopped after %ld steps as --step-limit asked (%s); run again to "
                   "continue\n",
                   step_limit, elapsed);
            status = 0;
        }
        break;
    case EXPERIMENT_RUN_COMPLETE:
        printf("\nfinished in %s; the tables are in %s\n", elapsed, tables);
        if (view.failed > 0) {
            cli_error("%d variant%s diverged: see their messages above", view.failed,
                      view.failed == 1 ? "" : "s");
            status = CLI_EXIT_FAILURE;
        } else {
            status = 0;
        }
        break;
    }
out:
    g_free(tables);
    g_strfreev(only);
    experiment_free(ex);
    if (text)
        g_bytes_unref(text);
    g_free(text_name);
    thread_pool_free(pool);
    return status;
}

/* ---- list -------------------------------------------------------------------------------- */

static int command_list(const options *o)
{
    double budget = 0.0;
    if (!parse_budget(o, &budget))
        return CLI_EXIT_USAGE;
    g_autofree char *scratch = g_dir_make_tmp("peer-experiment-XXXXXX", NULL);
    if (!scratch) {
        cli_error("cannot make a temporary folder");
        return CLI_EXIT_FAILURE;
    }
    /* A definition in a scratch folder, which experiment_open checks as run would. */
    GBytes *text = NULL;
    char *text_name = NULL;
    bool usage = false;
    peer_error err = { 0 };
    experiment *ex = experiment_open(scratch, o->suite, o->base, budget, NULL, &text, &text_name,
                                     &usage, &err);
    g_autofree char *definition = g_build_filename(scratch, EXPERIMENT_DEFINITION_FILE, NULL);
    g_remove(definition);
    g_rmdir(scratch);
    if (!ex) {
        if (usage)
            cli_usage_error("%s", err.message);
        else
            cli_error("%s", err.message);
        return usage ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
    }
    print_plan(ex);
    experiment_free(ex);
    g_bytes_unref(text);
    g_free(text_name);
    return 0;
}

/* ---- table and plot ---------------------------------------------------------------------- */

static experiment_results *load_results(const options *o, experiment **ex)
{
    peer_error err = { 0 };
    *ex = experiment_load_definition(o->dir, &err);
    if (!*ex) {
        cli_error("%s", err.message);
        return NULL;
    }
    experiment_results *results = experiment_results_load(*ex, o->dir, &err);
    if (!results) {
        cli_error("%s", err.message);
        g_clear_pointer(ex, experiment_free);
    }
    return results;
}

static int command_table(const options *o)
{
    if (!need_dir(o))
        return CLI_EXIT_USAGE;
    const char *format = o->format ? o->format : "markdown";
    if (strcmp(format, "markdown") != 0 && strcmp(format, "csv") != 0 &&
        strcmp(format, "json") != 0) {
        cli_usage_error("--format: “%s” is not a format: use markdown, csv or json", format);
        return CLI_EXIT_USAGE;
    }
    experiment *ex = NULL;
    experiment_results *results = load_results(o, &ex);
    if (!results)
        return CLI_EXIT_FAILURE;
    peer_error err = { 0 };
    int status = 0;
    if (!experiment_results_write(results, o->dir, &err)) {
        cli_error("%s", err.message);
        status = CLI_EXIT_FAILURE;
    }
    char *text = strcmp(format, "csv") == 0    ? experiment_results_csv(results)
                 : strcmp(format, "json") == 0 ? experiment_results_json(results)
                                               : experiment_results_markdown(results);
    fputs(text, stdout);
    g_free(text);
    experiment_results_free(results);
    experiment_free(ex);
    return status;
}

typedef struct {
    const ExperimentPlotPanel *panels;
    size_t n_panels;
} plot_data;

static void render_figure(cairo_t *cr, double width, double height, const PlotStyle *style,
                          void *data)
{
    const plot_data *d = data;
    experiment_plot_render(cr, width, height, d->panels, d->n_panels, style, NULL);
}

static int command_plot(const options *o)
{
    if (!need_dir(o))
        return CLI_EXIT_USAGE;
    if (!o->out || !*o->out) {
        cli_usage_error("--out is missing: name the image to draw, e.g. --out results.png");
        return CLI_EXIT_USAGE;
    }
    g_autoptr(GError) error = NULL;
    PlotExportFormat format;
    if (!plot_export_format_for_path(o->out, &format, &error)) {
        cli_usage_error("--out %s: %s", o->out, error->message);
        return CLI_EXIT_USAGE;
    }
    experiment_figure_kind kind = EXPERIMENT_FIGURE_OVERVIEW;
    if (o->kind && !experiment_figure_kind_from_name(o->kind, &kind)) {
        cli_usage_error("--kind: “%s” is not a plot: use overview, flops, experts or active",
                        o->kind);
        return CLI_EXIT_USAGE;
    }
    unsigned group = EXPERIMENT_GROUP_METHODS;
    if (o->group && !experiment_figure_group_from_name(o->group, &group)) {
        cli_usage_error("--group: “%s” is not a group: use methods, experts, active or norm",
                        o->group);
        return CLI_EXIT_USAGE;
    }
    if (o->group && kind != EXPERIMENT_FIGURE_FLOPS) {
        cli_usage_error("--group chooses the curves of --kind flops: add --kind flops");
        return CLI_EXIT_USAGE;
    }
    double width = kind == EXPERIMENT_FIGURE_OVERVIEW ? DEFAULT_PLOT_WIDTH : DEFAULT_PLOT_WIDTH / 2;
    double height = DEFAULT_PLOT_HEIGHT, scale = 1.0;
    if (!cli_parse_double("--width", o->width, 1.0, PLOT_EXPORT_MAX_UNITS, &width) ||
        !cli_parse_double("--height", o->height, 1.0, PLOT_EXPORT_MAX_UNITS, &height) ||
        !cli_parse_double("--scale", o->scale, 0.1, PLOT_EXPORT_MAX_SCALE, &scale))
        return CLI_EXIT_USAGE;
    if (!plot_export_check_size(format, width, height, scale, &error)) {
        cli_usage_error("%s", error->message);
        return CLI_EXIT_USAGE;
    }

    experiment *ex = NULL;
    experiment_results *results = load_results(o, &ex);
    if (!results)
        return CLI_EXIT_FAILURE;
    experiment_figure *figure = experiment_figure_new(ex, results->results, kind, group);
    plot_data data;
    data.panels = experiment_figure_get_panels(figure, &data.n_panels);
    PlotStyle style;
    if (o->dark)
        plot_style_init_dark(&style);
    else
        plot_style_init_light(&style);
    int status = 0;
    if (!plot_export_image(o->out, width, height, scale, &style, render_figure, &data, &error)) {
        cli_error("%s", error->message);
        status = CLI_EXIT_FAILURE;
    } else {
        printf("drew %s\n", o->out);
    }
    experiment_figure_free(figure);
    experiment_results_free(results);
    experiment_free(ex);
    return status;
}

/* ---- main -------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    cli_init("peer-experiment");
    if (argc < 2) {
        cli_usage_error("no command given: use run, list, table or plot");
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        printf("Usage:\n  peer-experiment COMMAND [OPTION…]\n\n"
               "Tests the claims of “Mixture of A Million Experts” on this machine: trains\n"
               "dense, MoE, PKM and PEER variants of one base model to the same budget of\n"
               "training FLOPs and compares them on the validation text.\n\n%s\n",
               commands_help);
        return 0;
    }
    const char *command = argv[1];
    /* The command's options follow it: parse them as if it were the program. */
    int sub_argc = argc - 1;
    char **sub_argv = argv + 1;
    options o = { 0 };
    int status;
    if (!parse_command(command, &sub_argc, &sub_argv, &o))
        status = CLI_EXIT_USAGE;
    else if (strcmp(command, "run") == 0)
        status = command_run(&o);
    else if (strcmp(command, "list") == 0)
        status = command_list(&o);
    else if (strcmp(command, "table") == 0)
        status = command_table(&o);
    else
        status = command_plot(&o);
    options_clear(&o);
    return status;
}
