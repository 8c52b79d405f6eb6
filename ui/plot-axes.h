/* What every plot in the workbench shares: colours and the style that carries them, the
 * colour-blind safe palette, 1-2-5 and decade ticks, tick and read-out number formats, and text
 * drawn with Pango at metrics that do not depend on the target surface, so a plot laid out on
 * screen and the same plot exported to PNG, SVG or PDF put every label in the same place.
 * Plain cairo and Pango: nothing here needs a display. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <cairo.h>

typedef struct {
    double red, green, blue, alpha; /* each in [0, 1], not premultiplied */
} PlotColor;

/* Called for every string a renderer draws, with the start of its baseline in the user space the
 * renderer was given, the rotation in radians (0, or -pi/2 for a vertical axis label) and the
 * font size in user-space units. An SVG export uses it to keep the words searchable: cairo's
 * SVG surface writes glyphs as outlines. */
typedef void (*PlotTextFunc)(const char *text, double x, double y, double angle, double size,
                             void *user_data);

typedef struct {
    PlotColor foreground;    /* text, axes, ticks */
    PlotColor background;    /* painted over the whole plot first, unless fully transparent */
    PlotColor grid;          /* major grid lines; minor ones are drawn fainter */
    const char *font_family; /* NULL: "Sans" */
    double font_size;        /* points at 96 dpi; 0: 9 */
    PlotTextFunc text_func;  /* may be NULL */
    void *text_data;
} PlotStyle;

void plot_style_init_light(PlotStyle *style);
void plot_style_init_dark(PlotStyle *style);
/* The style's font size in user-space units (CSS pixels), the unit plots scale their margins,
 * gaps and markers by. */
double plot_style_font_pixels(const PlotStyle *style);

/* The mix (1 - t) a + t b, alpha included. */
PlotColor plot_color_mix(PlotColor a, PlotColor b, double t);
/* Relative luminance in [0, 1] (sRGB, WCAG's definition); a style is dark below 0.5. */
double plot_color_luminance(PlotColor color);
void plot_set_source_color(cairo_t *cr, PlotColor color);
void plot_set_source_color_alpha(cairo_t *cr, PlotColor color, double alpha);

/* Okabe and Ito's eight colours, distinguishable under the common colour-vision deficiencies,
 * ordered so the first two (a run and its baseline) differ most; yellow comes late because it
 * is faint on white. Index wraps around. */
#define PLOT_PALETTE_SIZE 8
PlotColor plot_palette_get(unsigned index);

#define PLOT_MAX_TICKS 64

typedef struct {
    double value;
    bool major; /* labelled, with a stronger grid line */
} PlotTick;

typedef struct {
    PlotTick ticks[PLOT_MAX_TICKS]; /* (n), ascending */
    size_t n;
    /* The spacing of the labelled ticks, for plot_format_number; 0 when they are decades or
     * single digits of a decade, which format with their own significant digits. */
    double label_step;
} PlotTicks;

/* Pixel-aligned coordinate for a one-unit line, so grid lines and axes stay crisp. */
double plot_crisp(double coordinate);

/* A tick value's pixel on one axis of a plot's layout. */
typedef double (*PlotValueToPixel)(const void *layout, double value);

/* The grid of a plot area (x, y, width, height): a faint line at every minor tick, then a full
 * one at every major tick, on both axes. */
void plot_draw_grid(cairo_t *cr, const PlotStyle *style, double x, double y, double width,
                    double height, const PlotTicks *x_ticks, const PlotTicks *y_ticks,
                    PlotValueToPixel x_to_pixel, PlotValueToPixel y_to_pixel, const void *layout);

/* The 1, 2 or 5 times a power of ten closest to span / target (target >= 1). */
double plot_nice_step(double span, double target);
/* Ticks at multiples of a nice step inside [lo, hi]; about target of them. */
void plot_ticks_linear(PlotTicks *ticks, double lo, double hi, double target);
/* Ticks for a logarithmic axis over [lo, hi], 0 < lo < hi: decades when two or more fall inside
 * (every k-th decade when there are many more than target), with 2..9 times each decade as
 * unlabelled minor ticks; when the range is shorter, the densest within target of these times
 * each decade: every digit and 1.5; every digit; 1, 1.5, 2, 3, 5, 7 (nearly even on the log
 * scale); 1, 2, 5; the other digits minor. A linear nice step when the range is shorter still. */
void plot_ticks_log(PlotTicks *ticks, double lo, double hi, double target);

typedef enum {
    PLOT_NUMBER_PLAIN,      /* 0.5, 2, 1500 */
    PLOT_NUMBER_SI,         /* 950, 1.2k, 3.4M, 5.6G, 7.8T */
    PLOT_NUMBER_SCIENTIFIC, /* 2.5e17, 1e18 (plain below 10 000) */
} PlotNumberStyle;

/* Formats value with as many decimals as step needs (step is the spacing of neighbouring
 * values, so 0.5 gives one decimal); step <= 0 gives three significant digits. Trailing zeros
 * of a fraction are dropped. Returns buffer. */
const char *plot_format_number(double value, double step, PlotNumberStyle style, char *buffer,
                               size_t size);

/* Text at surface-independent metrics (no hinting of metrics, no hinting of outlines), so the
 * same string measures the same on an image, a recording, an SVG or a PDF surface. Bound to the
 * cairo context it was made for; style is borrowed and must outlive it. */
typedef struct _PlotText PlotText;

PlotText *plot_text_new(cairo_t *cr, const PlotStyle *style);
void plot_text_free(PlotText *text);
/* Following measures and draws use the style's font scaled by scale, bold or not. */
void plot_text_set_font(PlotText *text, double scale, bool bold);
/* The logical size of the string in user-space units. */
void plot_text_measure(PlotText *text, const char *string, double *width, double *height);
/* Draws the string so that the point (xalign, yalign) of its logical box, each in [0, 1], lands
 * on (x, y), turned by angle radians about that point, in the context's current source;
 * reports it to the style's text_func. */
void plot_text_draw(PlotText *text, const char *string, double x, double y, double xalign,
                    double yalign, double angle);
