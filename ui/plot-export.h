/* Plots written to files, for papers: the picture drawn by the plot's own cairo renderer, the
 * one that draws the screen, as PNG at a size and scale, or as SVG or PDF vectors; and the plot's
 * data as CSV (or any bytes, such as JSON). Every file is written whole or not at all: into a
 * temporary file beside it, flushed to disk, then renamed over the old one, so a full disk or a
 * crash leaves the old file or none, never half of one. Plain cairo and GLib: the command line
 * exports without a display.
 *
 * Units: a plot is drawn in width x height user-space units, the CSS pixels a widget is laid out
 * in. A PNG has scale device pixels per unit (round (width * scale) x round (height * scale)
 * pixels); an SVG is width x height px; a PDF is one page of width x height points. The same
 * numbers therefore give the same picture in every format.
 *
 * Text in an SVG: cairo writes each glyph as an outline, which looks the same in every viewer
 * whatever fonts it has, as the screen shows it. So that the words stay searchable and
 * selectable, each string the renderer draws through PlotText is written again as an invisible
 * <text> element over its outlines. A PDF holds its text as text itself. An image a renderer
 * magnifies (a heat map's cells) is kept crisp in an SVG too, as cairo's nearest filter keeps
 * it on screen and in a PDF. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cairo.h>
#include <gio/gio.h> /* G_IO_ERROR */

#include "plot-axes.h"

typedef enum {
    PLOT_EXPORT_PNG,
    PLOT_EXPORT_SVG,
    PLOT_EXPORT_PDF,
} PlotExportFormat;

/* The largest PNG side in pixels (a 16384 x 16384 image is already a gigabyte of memory), and
 * the largest SVG or PDF side in units (14 400 points, 200 inches, is the largest page PDF
 * viewers open). */
#define PLOT_EXPORT_MAX_PIXELS 16384
#define PLOT_EXPORT_MAX_UNITS 14400.0
#define PLOT_EXPORT_MAX_SCALE 8.0

/* Draws the plot in a width x height box at the origin of cr's user space with style, which
 * is the style given to the export, with its text_func set for an SVG. data is the export's. */
typedef void (*PlotRenderFunc)(cairo_t *cr, double width, double height, const PlotStyle *style,
                               void *data);

/* "png", "svg", "pdf". */
const char *plot_export_format_extension(PlotExportFormat format);
/* The format path's extension names, in any case; false and an error (G_IO_ERROR_NOT_SUPPORTED)
 * naming the extensions there are when it names none. */
bool plot_export_format_for_path(const char *path, PlotExportFormat *format, GError **error);
/* Whether path ends in an extension of an image format. */
bool plot_export_path_is_image(const char *path);

/* Whether an image of width x height units at scale (PNG only) can be drawn: finite, at least
 * one unit (one pixel), within the limits above; otherwise an error
 * (G_IO_ERROR_INVALID_ARGUMENT) saying what to change. */
bool plot_export_check_size(PlotExportFormat format, double width, double height, double scale,
                            GError **error);

/* The file's bytes: the plot drawn at width x height (and scale, for PNG) in format. */
GBytes *plot_export_render(PlotExportFormat format, double width, double height, double scale,
                           const PlotStyle *style, PlotRenderFunc render, void *data,
                           GError **error);
/* Draws the plot into path, in the format its extension names. */
bool plot_export_image(const char *path, double width, double height, double scale,
                       const PlotStyle *style, PlotRenderFunc render, void *data, GError **error);

/* Writes size bytes to path whole or not at all (temporary file, fsync, rename, then the
 * folder's fsync); an existing file keeps its permissions. On failure nothing is left behind
 * and the error names the path, the reason and what to do about it (G_IO_ERROR codes from
 * errno: G_IO_ERROR_NO_SPACE for a full disk, G_IO_ERROR_PERMISSION_DENIED, ...). */
bool plot_export_save(const char *path, const void *contents, size_t size, GError **error);

/* CSV as RFC 4180 has it, with "\n" line ends: a field holding a comma, a quote, a line break
 * or space at either end is quoted, its quotes doubled. Numbers are written in the fewest
 * digits that read back to the same value (at most %.9g for a float, %.17g for a double),
 * always with a '.' whatever the locale; NaN and infinities as nan, inf and -inf, which
 * Python, pandas, R and strtod read back; a missing value as an empty field. */
typedef struct _PlotCsv PlotCsv;

PlotCsv *plot_csv_new(void);
void plot_csv_free(PlotCsv *csv);
void plot_csv_add_text(PlotCsv *csv, const char *text);
void plot_csv_add_double(PlotCsv *csv, double value);
void plot_csv_add_float(PlotCsv *csv, float value);
void plot_csv_add_int(PlotCsv *csv, int64_t value);
void plot_csv_add_empty(PlotCsv *csv);
/* Ends the row; the next field starts a new one. */
void plot_csv_end_row(PlotCsv *csv);
/* The text so far, borrowed. */
const char *plot_csv_get_text(const PlotCsv *csv, size_t *length);
/* Writes the text with plot_export_save (). */
bool plot_csv_save(const PlotCsv *csv, const char *path, GError **error);

/* The shortest text that strtod, g_ascii_strtod or strtof read back as value: what the CSV
 * writes. buffer holds G_ASCII_DTOSTR_BUF_SIZE bytes. */
const char *plot_format_double_exact(double value, char *buffer);
const char *plot_format_float_exact(float value, char *buffer);
