/* What every command-line program shares: its name in messages, the exit codes, errors on
 * stderr, option parsing with each number checked against its range, and the worker threads.
 *
 * Exit codes: 0 success, 1 a failure (a missing or corrupt file, a diverged run), 2 a usage error
 * (an unknown option, a bad number, options that contradict each other). */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "peer-error.h"
#include "thread-pool.h"

#define CLI_EXIT_FAILURE 1
#define CLI_EXIT_USAGE 2

/* Sets the locale (numbers always print with a '.', so outputs parse the same everywhere) and
 * the program name used in messages. */
void cli_init(const char *program);
const char *cli_program(void);

/* "program: message" on stderr. */
void cli_error(const char *format, ...) G_GNUC_PRINTF(1, 2);
/* The same followed by a pointer to --help, for usage errors. */
void cli_usage_error(const char *format, ...) G_GNUC_PRINTF(1, 2);

/* Parses the options; then argv holds the program name and the positional arguments, of which
 * there must be min_args to max_args (their names, for messages, in arg_names). Reports any
 * problem as a usage error. */
bool cli_parse_options(GOptionContext *context, int *argc, char ***argv, int min_args,
                       int max_args, const char *arg_names);

/* Numbers given as option text: the whole text must be a number in [min, max]; otherwise a usage
 * error naming the option, the text and the valid range, and false. text NULL (the option was
 * not given) leaves *out as it is and succeeds. */
bool cli_parse_long(const char *option, const char *text, long min, long max, long *out);
bool cli_parse_int(const char *option, const char *text, int min, int max, int *out);
bool cli_parse_double(const char *option, const char *text, double min, double max,
                      double *out);
bool cli_parse_seed(const char *option, const char *text, uint64_t *out);

/* The pool of worker threads --threads asks for (text NULL: every processor this process may
 * use). Reports a bad count as a usage error (*usage set) or a failure to start the threads. */
thread_pool *cli_thread_pool_new(const char *threads_text, bool *usage);

/* The text of a file, for --text options that take a whole file. */
bool cli_read_file(const char *path, GBytes **out, peer_error *err);

/* Bytes as text a terminal can show: invalid UTF-8 (a byte model can emit half a character)
 * becomes the replacement mark. g_free it. */
char *cli_printable_text(const uint8_t *bytes, size_t size);
