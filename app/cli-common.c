#include "cli-common.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *program_name = "peer";

void cli_init(const char *program)
{
    setlocale(LC_ALL, "");
    setlocale(LC_NUMERIC, "C");
    program_name = program;
    g_set_prgname(program);
}

const char *cli_program(void)
{
    return program_name;
}

static void print_error(const char *format, va_list args)
{
    g_autofree char *message = g_strdup_vprintf(format, args);
    fflush(stdout);
    fprintf(stderr, "%s: %s\n", program_name, message);
}

void cli_error(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    print_error(format, args);
    va_end(args);
}

void cli_usage_error(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    print_error(format, args);
    va_end(args);
    fprintf(stderr, "Try “%s --help”.\n", program_name);
}

bool cli_parse_options(GOptionContext *context, int *argc, char ***argv, int min_args,
                       int max_args, const char *arg_names)
{
    g_autoptr(GError) error = NULL;
    if (!g_option_context_parse(context, argc, argv, &error)) {
        cli_usage_error("%s", error->message);
        return false;
    }
    int given = *argc - 1;
    if (given > max_args) {
        cli_usage_error("unexpected argument “%s”", (*argv)[1 + max_args]);
        return false;
    }
    if (given < min_args) {
        cli_usage_error("missing %s", arg_names);
        return false;
    }
    return true;
}

/* The text with surrounding blanks dropped; empty text is reported by the callers. */
static const char *number_text(const char *text, char *buffer, size_t size)
{
    g_strlcpy(buffer, text, size);
    return g_strstrip(buffer);
}

bool cli_parse_long(const char *option, const char *text, long min, long max, long *out)
{
    if (!text)
        return true;
    char buffer[64];
    const char *s = number_text(text, buffer, sizeof buffer);
    char *end = NULL;
    errno = 0;
    gint64 value = g_ascii_strtoll(s, &end, 10);
    if (*s == '\0' || end == s || *end != '\0' || strlen(text) >= sizeof buffer) {
        cli_usage_error("%s: “%s” is not a whole number (use %ld to %ld)", option, text, min,
                        max);
        return false;
    }
    if (errno == ERANGE || value < min || value > max) {
        cli_usage_error("%s: %s is out of range (use %ld to %ld)", option, s, min, max);
        return false;
    }
    *out = (long)value;
    return true;
}

bool cli_parse_int(const char *option, const char *text, int min, int max, int *out)
{
    long value = *out;
    if (!cli_parse_long(option, text, min, max, &value))
        return false;
    *out = (int)value;
    return true;
}

bool cli_parse_double(const char *option, const char *text, double min, double max, double *out)
{
    if (!text)
        return true;
    char buffer[64];
    const char *s = number_text(text, buffer, sizeof buffer);
    char *end = NULL;
    double value = g_ascii_strtod(s, &end);
    if (*s == '\0' || end == s || *end != '\0' || strlen(text) >= sizeof buffer ||
        !isfinite(value)) {
        cli_usage_error("%s: “%s” is not a finite number (use %g to %g)", option, text, min, max);
        return false;
    }
    if (value < min || value > max) {
        cli_usage_error("%s: %s is out of range (use %g to %g)", option, s, min, max);
        return false;
    }
    *out = value;
    return true;
}

bool cli_parse_seed(const char *option, const char *text, uint64_t *out)
{
    if (!text)
        return true;
    char buffer[64];
    const char *s = number_text(text, buffer, sizeof buffer);
    char *end = NULL;
    errno = 0;
    guint64 value = g_ascii_strtoull(s, &end, 10);
    /* strtoull accepts "-1" as 2^64 - 1; a seed is written without a sign. */
    if (*s == '\0' || !g_ascii_isdigit(*s) || end == s || *end != '\0' ||
        strlen(text) >= sizeof buffer || errno == ERANGE) {
        cli_usage_error("%s: “%s” is not a seed (use a whole number from 0 to %" G_GUINT64_FORMAT
                        ")", option, text, G_MAXUINT64);
        return false;
    }
    *out = value;
    return true;
}

thread_pool *cli_thread_pool_new(const char *threads_text, bool *usage)
{
    *usage = false;
    int threads = thread_pool_default_threads();
    if (threads < 1)
        threads = 1;
    if (threads > THREAD_POOL_MAX_THREADS)
        threads = THREAD_POOL_MAX_THREADS;
    if (!cli_parse_int("--threads", threads_text, 1, THREAD_POOL_MAX_THREADS, &threads)) {
        *usage = true;
        return NULL;
    }
    peer_error err = { 0 };
    thread_pool *pool = thread_pool_new(threads, &err);
    if (!pool)
        cli_error("%s", err.message);
    return pool;
}

bool cli_read_file(const char *path, GBytes **out, peer_error *err)
{
    g_autoptr(GError) error = NULL;
    char *contents = NULL;
    gsize size = 0;
    if (!g_file_get_contents(path, &contents, &size, &error))
        return peer_error_set(err, "%s", error->message);
    *out = g_bytes_new_take(contents, size);
    return true;
}

char *cli_printable_text(const uint8_t *bytes, size_t size)
{
    return g_utf8_make_valid((const char *)bytes, (gssize)size);
}
