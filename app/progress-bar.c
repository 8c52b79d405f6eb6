#include "progress-bar.h"

#include <math.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define REDRAW_INTERVAL_US 50000
#define DEFAULT_COLUMNS 80
#define MIN_BAR 10
#define MAX_BAR 40

void progress_bar_init(progress_bar *bar, FILE *stream)
{
    bar->stream = stream;
    bar->active = isatty(fileno(stream));
    bar->shown = false;
    bar->last_draw = 0;
}

static int terminal_columns(FILE *stream)
{
    struct winsize size;
    if (ioctl(fileno(stream), TIOCGWINSZ, &size) == 0 && size.ws_col > 0)
        return size.ws_col;
    return DEFAULT_COLUMNS;
}

const char *progress_bar_format_duration(double seconds, char *buffer, size_t size)
{
    if (!(seconds >= 0.0) || seconds > 1e8) {
        g_strlcpy(buffer, "?", size);
        return buffer;
    }
    long s = lround(seconds);
    if (s >= 3600)
        g_snprintf(buffer, size, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else if (s >= 60)
        g_snprintf(buffer, size, "%ldm%02lds", s / 60, s % 60);
    else
        g_snprintf(buffer, size, "%lds", s);
    return buffer;
}

void progress_bar_draw(progress_bar *bar, long step, long total, double loss,
                       double tokens_per_second, double eta_seconds, bool force)
{
    if (!bar->active)
        return;
    gint64 now = g_get_monotonic_time();
    if (!force && bar->shown && now - bar->last_draw < REDRAW_INTERVAL_US)
        return;
    bar->last_draw = now;

    char eta[32];
    g_autofree char *left = g_strdup_printf("step %ld/%ld", step, total);
    g_autofree char *right = g_strdup_printf(" %3.0f%%  loss %.4f  %.0f tok/s  ETA %s",
                                             total > 0 ? 100.0 * step / total : 100.0, loss,
                                             tokens_per_second,
                                             progress_bar_format_duration(eta_seconds, eta,
                                                                          sizeof eta));
    /* The bar takes what the numbers leave of the line, within limits; on a narrow terminal
     * the numbers alone, cut to fit, so the line never wraps (a wrapped line cannot be redrawn
     * in place). */
    int columns = terminal_columns(bar->stream) - 1;
    int text = (int)(strlen(left) + strlen(right));
    int width = columns - text - 3;
    if (width > MAX_BAR)
        width = MAX_BAR;
    GString *line = g_string_new(left);
    if (width >= MIN_BAR) {
        int filled = total > 0 ? (int)((double)width * step / total) : width;
        g_string_append(line, " [");
        for (int i = 0; i < width; i++)
            g_string_append_c(line, i < filled ? '#' : '.');
        g_string_append_c(line, ']');
    }
    g_string_append(line, right);
    if (columns > 0 && line->len > (gsize)columns)
        g_string_truncate(line, (gsize)columns);
    fprintf(bar->stream, "\r%s\033[K", line->str);
    fflush(bar->stream);
    g_string_free(line, TRUE);
    bar->shown = true;
}

void progress_bar_clear(progress_bar *bar)
{
    if (!bar->active || !bar->shown)
        return;
    fprintf(bar->stream, "\r\033[K");
    fflush(bar->stream);
    bar->shown = false;
}
