#include "bench-common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

double bench_cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double bench_peak_rss_mib(void)
{
    struct rusage usage;
    if (getrusage(RUSAGE_SELF, &usage) != 0)
        return 0.0;
    return (double)usage.ru_maxrss / 1024.0; /* Linux reports KiB */
}

void bench_samples_add(bench_samples *samples, double seconds)
{
    if (samples->count < BENCH_MAX_SAMPLES)
        samples->sample[samples->count++] = seconds;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_samples_median(const bench_samples *samples)
{
    if (samples->count == 0)
        return 0.0;
    double sorted[BENCH_MAX_SAMPLES];
    memcpy(sorted, samples->sample, (size_t)samples->count * sizeof(double));
    qsort(sorted, (size_t)samples->count, sizeof(double), compare_double);
    int mid = samples->count / 2;
    return samples->count % 2 ? sorted[mid] : 0.5 * (sorted[mid - 1] + sorted[mid]);
}

double bench_samples_min(const bench_samples *samples)
{
    double best = samples->count ? samples->sample[0] : 0.0;
    for (int i = 1; i < samples->count; i++)
        best = samples->sample[i] < best ? samples->sample[i] : best;
    return best;
}

double bench_samples_max(const bench_samples *samples)
{
    double worst = samples->count ? samples->sample[0] : 0.0;
    for (int i = 1; i < samples->count; i++)
        worst = samples->sample[i] > worst ? samples->sample[i] : worst;
    return worst;
}

double bench_samples_spread(const bench_samples *samples)
{
    double median = bench_samples_median(samples);
    if (median <= 0.0)
        return 0.0;
    return (bench_samples_max(samples) - bench_samples_min(samples)) / median;
}

static void print_usage(const char *program, const bench_option *options, int n_options,
                        const char *summary)
{
    fprintf(stderr, "usage: %s [options]\n%s\n\noptions:\n", program, summary);
    for (int i = 0; i < n_options; i++) {
        const bench_option *o = &options[i];
        char current[128] = "";
        if (o->kind == BENCH_OPTION_INT) {
            snprintf(current, sizeof current, " (default %d)", *(const int *)o->value);
        } else if (o->kind == BENCH_OPTION_LIST) {
            const bench_int_list *list = o->value;
            size_t used = (size_t)snprintf(current, sizeof current, " (default ");
            for (int j = 0; j < list->count && used < sizeof current; j++)
                used += (size_t)snprintf(current + used, sizeof current - used, "%s%d",
                                         j ? "," : "", list->value[j]);
            if (used < sizeof current)
                snprintf(current + used, sizeof current - used, ")");
        }
        fprintf(stderr, "  --%-16s %s%s\n", o->name, o->help, current);
    }
}

static bool parse_positive(const char *text, int *out)
{
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || value < 1 || value > (1L << 30))
        return false;
    *out = (int)value;
    return *end == '\0' || *end == ',';
}

static bool parse_list(const char *text, bench_int_list *list)
{
    bench_int_list parsed = { 0 };
    const char *p = text;
    while (*p) {
        if (parsed.count == BENCH_MAX_LIST || !parse_positive(p, &parsed.value[parsed.count]))
            return false;
        parsed.count++;
        const char *comma = strchr(p, ',');
        if (!comma)
            break;
        p = comma + 1;
    }
    if (parsed.count == 0)
        return false;
    *list = parsed;
    return true;
}

bool bench_parse_options(int argc, char **argv, const bench_option *options, int n_options,
                         const char *summary)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0 || strncmp(arg, "--", 2) != 0) {
            print_usage(argv[0], options, n_options, summary);
            return false;
        }
        const char *name = arg + 2;
        const char *equals = strchr(name, '=');
        size_t name_len = equals ? (size_t)(equals - name) : strlen(name);
        const bench_option *option = NULL;
        for (int j = 0; j < n_options; j++)
            if (strlen(options[j].name) == name_len && strncmp(options[j].name, name, name_len) == 0)
                option = &options[j];
        if (!option) {
            fprintf(stderr, "%s: unknown option %s\n", argv[0], arg);
            print_usage(argv[0], options, n_options, summary);
            return false;
        }
        if (option->kind == BENCH_OPTION_FLAG) {
            if (equals) {
                fprintf(stderr, "%s: --%s takes no value\n", argv[0], option->name);
                return false;
            }
            *(bool *)option->value = true;
            continue;
        }
        const char *value = equals ? equals + 1 : (i + 1 < argc ? argv[++i] : NULL);
        bool ok = value && (option->kind == BENCH_OPTION_INT
                                ? parse_positive(value, option->value) && !strchr(value, ',')
                                : parse_list(value, option->value));
        if (!ok) {
            fprintf(stderr, "%s: --%s needs %s, got '%s'\n", argv[0], option->name,
                    option->kind == BENCH_OPTION_INT ? "a positive integer"
                                                     : "a comma-separated list of positive integers",
                    value ? value : "");
            return false;
        }
    }
    return true;
}

void *bench_alloc(size_t bytes)
{
    size_t rounded = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (!p) {
        fprintf(stderr, "out of memory allocating %.1f MiB\n", (double)bytes / (1 << 20));
        exit(1);
    }
    return p;
}
