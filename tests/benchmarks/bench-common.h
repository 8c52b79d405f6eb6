/* What every engine benchmark shares: a monotonic clock, peak memory, a summary of repeated
 * timings, and a small command-line parser for integer sizes. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define BENCH_MAX_SAMPLES 64
#define BENCH_MAX_LIST 16

/* Seconds on CLOCK_MONOTONIC. */
double bench_now(void);
/* CPU seconds of every thread of the process: on a shared machine, time spent waiting for a
 * core does not count, so memory-bound kernels can be compared while others run. */
double bench_cpu_now(void);

/* Peak resident set size of this process so far (getrusage ru_maxrss), in MiB. */
double bench_peak_rss_mib(void);

/* Repeated timings of one thing: the median is the figure reported, min and max show the noise
 * of a shared machine. */
typedef struct {
    int count;
    double sample[BENCH_MAX_SAMPLES]; /* seconds */
} bench_samples;

void bench_samples_add(bench_samples *samples, double seconds);
double bench_samples_median(const bench_samples *samples);
double bench_samples_min(const bench_samples *samples);
double bench_samples_max(const bench_samples *samples);
/* Relative spread (max - min) / median, so a table can say how much to trust a figure. */
double bench_samples_spread(const bench_samples *samples);

typedef enum {
    BENCH_OPTION_INT,  /* --name N */
    BENCH_OPTION_LIST, /* --name A,B,C */
    BENCH_OPTION_FLAG, /* --name */
} bench_option_kind;

typedef struct {
    const char *name; /* without the leading dashes */
    bench_option_kind kind;
    void *value;      /* int *, bench_int_list *, or bool * */
    const char *help;
} bench_option;

typedef struct {
    int count;
    int value[BENCH_MAX_LIST];
} bench_int_list;

/* Parses --name VALUE and --name=VALUE; prints usage and returns false on --help or on an
 * unknown option or a malformed number. Integer options must be positive. */
bool bench_parse_options(int argc, char **argv, const bench_option *options, int n_options,
                         const char *summary);

/* A buffer the benchmark cannot run without: exits with a message when memory runs out, since a
 * benchmark has no caller to hand the failure to. */
void *bench_alloc(size_t bytes);
