/* A one-line progress bar on a terminal, redrawn in place: step of total, a bar, loss, tokens per
 * second and the time left. Off when its stream is not a terminal, so logs stay plain text. */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stdio.h>

typedef struct {
    FILE *stream;
    bool active;      /* the stream is a terminal */
    bool shown;       /* a line is on screen */
    gint64 last_draw; /* monotonic µs */
} progress_bar;

void progress_bar_init(progress_bar *bar, FILE *stream);
/* Redraws, at most 20 times a second unless force. eta_seconds < 0 when not yet known. */
void progress_bar_draw(progress_bar *bar, long step, long total, double loss,
                       double tokens_per_second, double eta_seconds, bool force);
/* Erases the line, so other output can be printed; the next draw brings it back. */
void progress_bar_clear(progress_bar *bar);

/* "1h02m", "3m07s", "12s": a duration as the bar shows it, into buffer. */
const char *progress_bar_format_duration(double seconds, char *buffer, size_t size);
