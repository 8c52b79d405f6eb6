/* Training a whole model from a run file on a corpus, as peer-train does: throughput in tokens/s
 * and in achieved GFLOP/s (the trainer's own FLOP count over wall time), time per step, the time
 * to initialise, and peak memory.
 *
 * Each run file is trained in a child process of its own, so that the peak RSS reported
 * (getrusage ru_maxrss) is that model's alone and not the largest of the models before it.
 *
 * With --seconds the run instead trains for that much wall time, evaluating the validation loss
 * and sampling text every --report-seconds (the clock stops while it does), which answers how
 * long a user waits for recognisable English. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench-common.h"
#include "corpus.h"
#include "model.h"
#include "sampler.h"
#include "thread-pool.h"
#include "trainer.h"

#define MAX_RUN_FILES 16
#define MAX_RUN_FILE_BYTES (1 << 20)
#define SAMPLE_PROMPT "It is a truth universally acknowledged"

typedef struct {
    int steps;          /* steps trained, warm-up included */
    int warmup;         /* first steps left out of the timings */
    int threads;
    int seconds;        /* 0: train `steps` steps; else this much training wall time */
    int report_seconds; /* with --seconds: evaluate and sample this often */
    int sample_bytes;
    int eval_windows;   /* 0: the run file's */
    int run_steps;      /* 0: the run file's schedule length */
    bool per_step;      /* a line for every step */
} train_options;

typedef struct {
    double *seconds; /* (capacity) */
    int count, capacity;
} step_times;

static void step_times_add(step_times *t, double seconds)
{
    if (t->count == t->capacity) {
        t->capacity = t->capacity ? 2 * t->capacity : 256;
        double *grown = realloc(t->seconds, (size_t)t->capacity * sizeof(double));
        if (!grown) {
            fprintf(stderr, "bench-train: out of memory for step times\n");
            exit(1);
        }
        t->seconds = grown;
    }
    t->seconds[t->count++] = seconds;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts the times in place; returns the median. */
static double step_times_median(step_times *t)
{
    if (t->count == 0)
        return 0.0;
    qsort(t->seconds, (size_t)t->count, sizeof(double), compare_double);
    int mid = t->count / 2;
    return t->count % 2 ? t->seconds[mid] : 0.5 * (t->seconds[mid - 1] + t->seconds[mid]);
}

typedef struct {
    double user, system; /* seconds */
    long minor_faults;
} cpu_usage;

/* CPU time of this process: beside the wall time it shows whether the threads had the cores to
 * themselves (cpu / wall close to the thread count) or waited; system time and minor faults
 * show first touches of fresh memory. */
static cpu_usage cpu_usage_now(void)
{
    struct rusage usage;
    cpu_usage out = { 0 };
    if (getrusage(RUSAGE_SELF, &usage) != 0)
        return out;
    out.user = (double)usage.ru_utime.tv_sec + 1e-6 * (double)usage.ru_utime.tv_usec;
    out.system = (double)usage.ru_stime.tv_sec + 1e-6 * (double)usage.ru_stime.tv_usec;
    out.minor_faults = usage.ru_minflt;
    return out;
}

/* Distinct expert rows the last backward touched, over all PEER and PKM blocks. */
static long touched_rows(const peer_model *model)
{
    long rows = 0;
    for (int l = 0; l < model->cfg.n_layers; l++)
        if (model->cfg.layers[l].kind == FFN_PEER || model->cfg.layers[l].kind == FFN_PKM)
            rows += model->sparse[l].n_rows;
    return rows;
}

static char *read_file(const char *path, size_t limit)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *text = malloc(limit + 1);
    size_t size = text ? fread(text, 1, limit, f) : 0;
    bool whole = text && !ferror(f) && fgetc(f) == EOF;
    fclose(f);
    if (!whole) {
        free(text);
        return NULL;
    }
    text[size] = '\0';
    return text;
}

/* "resources/runs/peer-small.json" → "peer-small" */
static void run_name(const char *path, char *name, size_t size)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(name, size, "%s", base);
    char *dot = strrchr(name, '.');
    if (dot && strcmp(dot, ".json") == 0)
        *dot = '\0';
}

/* text as the body of a JSON string (without the quotes) on stdout */
static void print_json_string(const uint8_t *text, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        uint8_t c = text[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            printf("\\n");
        else if (c < 0x20 || c >= 0x7f)
            printf("\\u%04x", c); /* a byte, not a code point: the model may split UTF-8 */
        else
            putchar(c);
    }
}

static void die_on(bool ok, const char *what, const peer_error *err)
{
    if (!ok) {
        fprintf(stderr, "bench-train: %s: %s\n", what, err->message);
        fflush(stdout);
        _exit(1);
    }
}

static void count_params(const peer_model *model, double *total, double *experts)
{
    *total = 0.0;
    *experts = 0.0;
    for (int i = 0; i < model->n_tensors; i++) {
        const model_tensor *t = &model->tensors[i];
        if (t->buffer)
            continue;
        *total += (double)t->n_elements;
        if (t->expert_table)
            *experts += (double)t->n_elements;
    }
}

/* Validation loss and a sample at the current weights; prints both, human and JSON. */
static void report_progress(const char *name, trainer *tr, double train_seconds,
                            const train_options *opt, thread_pool *pool)
{
    peer_error err;
    double t0 = bench_now();
    eval_result eval;
    int windows = opt->eval_windows ? opt->eval_windows : tr->settings.eval_windows;
    die_on(trainer_evaluate(tr, windows, &eval, pool, &err), "evaluation", &err);
    double eval_seconds = bench_now() - t0;

    uint8_t *sample = bench_alloc((size_t)opt->sample_bytes);
    sampler_settings ss = { .temperature = 0.8f, .top_k = 0 };
    peer_rng rng;
    peer_rng_seed(&rng, 7);
    t0 = bench_now();
    die_on(sampler_generate(tr->model, (const uint8_t *)SAMPLE_PROMPT, strlen(SAMPLE_PROMPT),
                            sample, (size_t)opt->sample_bytes, &ss, &rng, pool, &err),
           "sampling", &err);
    double sample_seconds = bench_now() - t0;

    printf("%s at %.0f s of training, step %ld: train loss %.4f, validation loss %.4f nats "
           "(%.3f bits/byte) over %ld bytes; evaluated in %.1f s, sampled in %.1f s\n",
           name, train_seconds, tr->step, tr->last_loss, eval.loss, eval.bits_per_byte,
           eval.tokens, eval_seconds, sample_seconds);
    for (int l = 0; l < tr->model->cfg.n_layers; l++) {
        ffn_kind kind = tr->model->cfg.layers[l].kind;
        if (kind == FFN_PEER || kind == FFN_PKM)
            printf("  block %d (%s): expert usage %.1f%%, unevenness %.3f, %lld dead\n", l,
                   ffn_kind_name(kind), 100.0 * eval.usage[l].usage, eval.usage[l].unevenness,
                   (long long)eval.usage[l].dead);
    }
    printf("  sample (temperature %.1f): " SAMPLE_PROMPT "%.*s\n", (double)ss.temperature,
           opt->sample_bytes, (const char *)sample);
    printf("PROGRESS {\"config\": \"%s\", \"train_seconds\": %.1f, \"step\": %ld, "
           "\"train_loss\": %.4f, \"val_loss\": %.4f, \"val_bpb\": %.4f, \"sample\": \"",
           name, train_seconds, tr->step, tr->last_loss, eval.loss, eval.bits_per_byte);
    print_json_string((const uint8_t *)SAMPLE_PROMPT, strlen(SAMPLE_PROMPT));
    print_json_string(sample, (size_t)opt->sample_bytes);
    printf("\"}\n");
    fflush(stdout);
    free(sample);
}

static void bench_run(const char *run_path, const char *corpus_path, const train_options *opt)
{
    char name[128];
    run_name(run_path, name, sizeof name);
    peer_error err;
    char *json = read_file(run_path, MAX_RUN_FILE_BYTES);
    if (!json) {
        fprintf(stderr, "bench-train: cannot read the run file %s\n", run_path);
        _exit(1);
    }
    model_config cfg;
    train_settings settings;
    die_on(run_config_from_json(&cfg, &settings, json, &err), run_path, &err);
    free(json);
    if (opt->run_steps)
        settings.steps = opt->run_steps;
    corpus data;
    die_on(corpus_load_file(&data, corpus_path, settings.seq_len, &err), corpus_path, &err);

    thread_pool *pool = thread_pool_new(opt->threads, &err);
    die_on(pool != NULL, "thread pool", &err);

    double rss_before = bench_peak_rss_mib();
    double t0 = bench_now();
    trainer tr;
    die_on(trainer_init(&tr, &cfg, &settings, &data, &err), name, &err);
    double init_seconds = bench_now() - t0;
    double rss_init = bench_peak_rss_mib();

    double params, experts;
    count_params(tr.model, &params, &experts);
    int B = settings.batch_size, T = settings.seq_len;
    double flops_per_token = 3.0 * peer_model_forward_flops_per_token(&cfg, T);
    printf("%s: %.3f M parameters (%.3f M in expert tables), B %d × T %d = %d tokens a step, "
           "%.2f M training FLOPs a token, %d threads\n",
           name, params * 1e-6, experts * 1e-6, B, T, B * T, flops_per_token * 1e-6,
           opt->threads);
    printf("  initialisation %.2f s, peak RSS after it %.0f MiB\n", init_seconds, rss_init);
    fflush(stdout);

    step_times times = { 0 };
    double timed_seconds = 0.0, timed_flops = 0.0, timed_tokens = 0.0, timed_cpu = 0.0;
    double first_loss = 0.0;
    double train_seconds = 0.0;
    double next_report = opt->report_seconds;
    for (long step = 0;; step++) {
        if (opt->seconds ? train_seconds >= opt->seconds : step >= opt->steps)
            break;
        double flops0 = tr.flops, tokens0 = tr.tokens;
        cpu_usage c0 = cpu_usage_now();
        double s0 = bench_now();
        die_on(trainer_step(&tr, pool, &err), name, &err);
        double dt = bench_now() - s0;
        cpu_usage c1 = cpu_usage_now();
        double dcpu = (c1.user - c0.user) + (c1.system - c0.system);
        if (opt->per_step)
            printf("  step %ld: %.1f ms, user %.1f ms, system %.1f ms, %ld minor faults, "
                   "%ld expert rows touched, loss %.4f\n",
                   step + 1, 1e3 * dt, 1e3 * (c1.user - c0.user), 1e3 * (c1.system - c0.system),
                   c1.minor_faults - c0.minor_faults, touched_rows(tr.model), tr.last_loss);
        train_seconds += dt;
        if (step == 0)
            first_loss = tr.last_loss;
        if (step >= opt->warmup) {
            step_times_add(&times, dt);
            timed_seconds += dt;
            timed_cpu += dcpu;
            timed_flops += tr.flops - flops0;
            timed_tokens += tr.tokens - tokens0;
        }
        if (opt->seconds && train_seconds >= next_report && train_seconds < opt->seconds) {
            report_progress(name, &tr, train_seconds, opt, pool);
            next_report += opt->report_seconds;
        }
    }
    if (opt->seconds)
        report_progress(name, &tr, train_seconds, opt, pool);
    double rss_peak = bench_peak_rss_mib();

    int timed_steps = times.count;
    double median = step_times_median(&times);
    double fastest = timed_steps ? times.seconds[0] : 0.0;
    double slowest = timed_steps ? times.seconds[timed_steps - 1] : 0.0;
    double tokens_per_s = timed_seconds > 0 ? timed_tokens / timed_seconds : 0.0;
    double gflops = timed_seconds > 0 ? timed_flops / timed_seconds * 1e-9 : 0.0;
    double cpu_per_wall = timed_seconds > 0 ? timed_cpu / timed_seconds : 0.0;
    printf("  %d steps timed after %d warm-up: %.1f ms a step (median; min %.1f, max %.1f), "
           "%.2f CPU s per wall s\n",
           timed_steps, opt->warmup, 1e3 * median, 1e3 * fastest, 1e3 * slowest, cpu_per_wall);
    printf("  %.0f tokens/s, %.2f GFLOP/s; loss %.3f → %.3f; peak RSS %.0f MiB\n", tokens_per_s,
           gflops, first_loss, tr.last_loss, rss_peak);
    printf("RESULT {\"config\": \"%s\", \"threads\": %d, \"batch\": %d, \"seq\": %d, "
           "\"params\": %.0f, \"expert_params\": %.0f, \"init_s\": %.3f, \"steps\": %ld, "
           "\"timed_steps\": %d, \"step_ms_median\": %.2f, \"step_ms_min\": %.2f, "
           "\"step_ms_max\": %.2f, \"cpu_per_wall\": %.3f, \"tokens_per_s\": %.0f, "
           "\"gflops\": %.3f, "
           "\"train_flops_per_token\": %.0f, \"loss_first\": %.4f, \"loss_last\": %.4f, "
           "\"rss_before_mib\": %.0f, \"rss_init_mib\": %.0f, \"rss_peak_mib\": %.0f}\n",
           name, opt->threads, B, T, params, experts, init_seconds, tr.step, timed_steps,
           1e3 * median, 1e3 * fastest, 1e3 * slowest, cpu_per_wall, tokens_per_s, gflops,
           flops_per_token, first_loss, tr.last_loss, rss_before, rss_init, rss_peak);
    fflush(stdout);

    free(times.seconds);
    trainer_free(&tr);
    thread_pool_free(pool);
    corpus_free(&data);
}

/* Options whose value may follow as the next argument; everything else not starting with "--" is
 * a file. */
static bool takes_value(const bench_option *options, int n_options, const char *arg)
{
    if (strchr(arg, '='))
        return false;
    for (int i = 0; i < n_options; i++)
        if (strcmp(arg + 2, options[i].name) == 0)
            return options[i].kind != BENCH_OPTION_FLAG;
    return false;
}

int main(int argc, char **argv)
{
    train_options opt = {
        .steps = 30, .warmup = 3, .threads = 2, .seconds = 0, .report_seconds = 60,
        .sample_bytes = 200, .eval_windows = 0, .run_steps = 0, .per_step = false,
    };
    const bench_option options[] = {
        { "steps", BENCH_OPTION_INT, &opt.steps, "training steps, warm-up included" },
        { "warmup", BENCH_OPTION_INT, &opt.warmup, "first steps left out of the timings" },
        { "threads", BENCH_OPTION_INT, &opt.threads, "worker threads" },
        { "seconds", BENCH_OPTION_INT, &opt.seconds,
          "if set, train for this much wall time instead of --steps, evaluating and sampling" },
        { "report-seconds", BENCH_OPTION_INT, &opt.report_seconds,
          "with --seconds: evaluate and sample this often (not counted as training time)" },
        { "sample-bytes", BENCH_OPTION_INT, &opt.sample_bytes, "bytes of text sampled" },
        { "eval-windows", BENCH_OPTION_INT, &opt.eval_windows,
          "validation windows per evaluation, if set; else the run file's" },
        { "run-steps", BENCH_OPTION_INT, &opt.run_steps,
          "length of the learning-rate schedule, if set; else the run file's" },
        { "per-step", BENCH_OPTION_FLAG, &opt.per_step,
          "a line for every step: times, faults, expert rows touched" },
    };
    int n_options = sizeof options / sizeof options[0];
    const char *summary =
        "Trains each run file's model on CORPUS, each in its own process:\n"
        "  bench-train [options] CORPUS RUN.json [RUN.json ...]\n"
        "and prints tokens/s, GFLOP/s, time a step, initialisation time and peak RSS, as text\n"
        "and as one RESULT line of JSON per run file.";

    char *option_argv[2 * 16 + 1];
    int option_argc = 0;
    const char *files[MAX_RUN_FILES + 1];
    int n_files = 0;
    option_argv[option_argc++] = argv[0];
    for (int i = 1; i < argc; i++) {
        bool is_option = strncmp(argv[i], "--", 2) == 0;
        if (!is_option) {
            if (n_files == MAX_RUN_FILES + 1) {
                fprintf(stderr, "bench-train: at most %d run files\n", MAX_RUN_FILES);
                return 2;
            }
            files[n_files++] = argv[i];
            continue;
        }
        if (option_argc + 2 >= (int)(sizeof option_argv / sizeof option_argv[0])) {
            fprintf(stderr, "bench-train: too many options\n");
            return 2;
        }
        option_argv[option_argc++] = argv[i];
        if (takes_value(options, n_options, argv[i]) && i + 1 < argc)
            option_argv[option_argc++] = argv[++i];
    }
    if (!bench_parse_options(option_argc, option_argv, options, n_options, summary))
        return 2;
    if (n_files < 2) {
        char *usage_argv[] = { argv[0], "--help" };
        bench_parse_options(2, usage_argv, options, n_options, summary);
        return 2;
    }
    if (opt.warmup >= opt.steps && !opt.seconds) {
        fprintf(stderr, "bench-train: --warmup %d leaves none of the %d steps to time\n",
                opt.warmup, opt.steps);
        return 2;
    }

    const char *corpus_path = files[0];
    int status = 0;
    for (int r = 1; r < n_files; r++) {
        fflush(stdout);
        pid_t child = fork();
        if (child < 0) {
            perror("bench-train: fork");
            return 1;
        }
        if (child == 0) {
            bench_run(files[r], corpus_path, &opt);
            fflush(stdout);
            _exit(0);
        }
        int wstatus = 0;
        if (waitpid(child, &wstatus, 0) < 0 || !WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
            fprintf(stderr, "bench-train: %s failed\n", files[r]);
            status = 1;
        }
    }
    return status;
}
