#include "plot-axes.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pango/pangocairo.h>

#define DEFAULT_FONT_FAMILY "Sans"
#define DEFAULT_FONT_SIZE 9.0
/* Pango sizes are in points; the plots are laid out in CSS pixels, as GTK lays out widgets. */
#define PIXELS_PER_POINT (96.0 / 72.0)
/* Tolerance, relative to the step, for a tick that lands on a range end by rounding. */
#define TICK_EPSILON 1e-9

static PlotColor color_from_bytes(unsigned r, unsigned g, unsigned b)
{
    return (PlotColor){r / 255.0, g / 255.0, b / 255.0, 1.0};
}

void plot_style_init_light(PlotStyle *style)
{
    *style = (PlotStyle){0};
    style->foreground = color_from_bytes(0x24, 0x24, 0x24);
    style->background = color_from_bytes(0xff, 0xff, 0xff);
    style->grid = plot_color_mix(style->background, style->foreground, 0.12);
    style->font_family = DEFAULT_FONT_FAMILY;
    style->font_size = DEFAULT_FONT_SIZE;
}

void plot_style_init_dark(PlotStyle *style)
{
    *style = (PlotStyle){0};
    style->foreground = color_from_bytes(0xee, 0xee, 0xee);
    style->background = color_from_bytes(0x1e, 0x1e, 0x1e);
    style->grid = plot_color_mix(style->background, style->foreground, 0.16);
    style->font_family = DEFAULT_FONT_FAMILY;
    style->font_size = DEFAULT_FONT_SIZE;
}

double plot_style_font_pixels(const PlotStyle *style)
{
    return (style->font_size > 0.0 ? style->font_size : DEFAULT_FONT_SIZE) * PIXELS_PER_POINT;
}

PlotColor plot_color_mix(PlotColor a, PlotColor b, double t)
{
    return (PlotColor){
        (1.0 - t) * a.red + t * b.red,
        (1.0 - t) * a.green + t * b.green,
        (1.0 - t) * a.blue + t * b.blue,
        (1.0 - t) * a.alpha + t * b.alpha,
    };
}

static double linear_channel(double c)
{
    return c <= 0.04045 ? c / 12.92 : pow((c + 0.055) / 1.055, 2.4);
}

double plot_color_luminance(PlotColor color)
{
    return 0.2126 * linear_channel(color.red) + 0.7152 * linear_channel(color.green) +
           0.0722 * linear_channel(color.blue);
}

void plot_set_source_color(cairo_t *cr, PlotColor color)
{
    cairo_set_source_rgba(cr, color.red, color.green, color.blue, color.alpha);
}

void plot_set_source_color_alpha(cairo_t *cr, PlotColor color, double alpha)
{
    cairo_set_source_rgba(cr, color.red, color.green, color.blue, color.alpha * alpha);
}

PlotColor plot_palette_get(unsigned index)
{
    static const unsigned char okabe_ito[PLOT_PALETTE_SIZE][3] = {
        {0x00, 0x72, 0xb2}, /* blue */
        {0xd5, 0x5e, 0x00}, /* vermillion */
        {0x00, 0x9e, 0x73}, /* bluish green */
        {0xcc, 0x79, 0xa7}, /* reddish purple */
        {0x56, 0xb4, 0xe9}, /* sky blue */
        {0xe6, 0x9f, 0x00}, /* orange */
        {0x99, 0x99, 0x99}, /* grey: the palette's black would vanish on a dark background */
        {0xf0, 0xe4, 0x42}, /* yellow */
    };
    const unsigned char *c = okabe_ito[index % PLOT_PALETTE_SIZE];
    return color_from_bytes(c[0], c[1], c[2]);
}

double plot_nice_step(double span, double target)
{
    if (!(span > 0.0) || !isfinite(span))
        return 1.0;
    if (!(target >= 1.0))
        target = 1.0;
    double raw = span / target;
    double magnitude = pow(10.0, floor(log10(raw)));
    double fraction = raw / magnitude;
    /* The thresholds are the geometric means of neighbouring steps, so the choice is the closest
     * on a log scale. */
    double nice = fraction < M_SQRT2      ? 1.0
                  : fraction < sqrt(10.0) ? 2.0
                  : fraction < sqrt(50.0) ? 5.0
                                          : 10.0;
    return nice * magnitude;
}

static void ticks_add(PlotTicks *ticks, double value, bool major)
{
    if (ticks->n < PLOT_MAX_TICKS)
        ticks->ticks[ticks->n++] = (PlotTick){value, major};
}

void plot_ticks_linear(PlotTicks *ticks, double lo, double hi, double target)
{
    ticks->n = 0;
    ticks->label_step = 0.0;
    if (!isfinite(lo) || !isfinite(hi) || !(hi > lo))
        return;
    double step = plot_nice_step(hi - lo, target);
    while ((hi - lo) / step >= PLOT_MAX_TICKS)
        step = plot_nice_step(hi - lo, (hi - lo) / step / 2.0);
    ticks->label_step = step;
    double first = ceil(lo / step - TICK_EPSILON);
    double last = floor(hi / step + TICK_EPSILON);
    for (double k = first; k <= last; k += 1.0) {
        double value = k * step;
        if (fabs(value) < step * TICK_EPSILON)
            value = 0.0;
        ticks_add(ticks, value, true);
    }
}

static bool in_range(double value, double lo, double hi)
{
    return value >= lo * (1.0 - TICK_EPSILON) && value <= hi * (1.0 + TICK_EPSILON);
}

static int count_in_range(const double *mantissas, int n, double lo, double hi)
{
    int count = 0;
    for (int k = (int)floor(log10(lo)); k <= (int)ceil(log10(hi)); k++)
        for (int i = 0; i < n; i++)
            count += in_range(mantissas[i] * pow(10.0, k), lo, hi);
    return count;
}

void plot_ticks_log(PlotTicks *ticks, double lo, double hi, double target)
{
    ticks->n = 0;
    ticks->label_step = 0.0;
    if (!(lo > 0.0) || !(hi > lo) || !isfinite(hi))
        return;
    if (!(target >= 1.0))
        target = 1.0;
    int k_lo = (int)floor(log10(lo));
    int k_hi = (int)ceil(log10(hi));
    int first_decade = (int)ceil(log10(lo) - TICK_EPSILON);
    int last_decade = (int)floor(log10(hi) + TICK_EPSILON);
    int decades = last_decade - first_decade + 1;

    if (decades >= 2) {
        int stride = (int)ceil(decades / target);
        if (stride < 1)
            stride = 1;
        /* Minor ticks on a long axis would be a grey wash. */
        bool minors = stride == 1 && k_hi - k_lo <= 8;
        for (int k = k_lo; k <= k_hi; k++) {
            for (int m = 1; m <= 9; m++) {
                double value = m * pow(10.0, k);
                if (!in_range(value, lo, hi))
                    continue;
                if (m == 1 && ((k % stride) + stride) % stride == 0)
                    ticks_add(ticks, value, true);
                else if (minors)
                    ticks_add(ticks, value, false);
            }
        }
        return;
    }

    /* The densest set of labelled mantissas that stays within target; 1.5 splits the widest
     * gap between a decade's digits, where a loss curve in nats often ends. The digits left
     * out of the set are minor ticks. */
    static const double one_two_five[] = {1.0, 2.0, 5.0};
    static const double roughly_even[] = {1.0, 1.5, 2.0, 3.0, 5.0, 7.0};
    static const double digits[] = {1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0};
    static const double digits_and_half[] = {1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0};
    static const struct {
        const double *mantissas;
        int n;
    } sets[] = {{one_two_five, 3}, {roughly_even, 6}, {digits, 9}, {digits_and_half, 10}};
    int chosen = -1;
    for (int set = 3; set >= 0 && chosen < 0; set--) {
        int count = count_in_range(sets[set].mantissas, sets[set].n, lo, hi);
        if (count >= 2 && (count <= target || set == 0))
            chosen = set;
    }
    if (chosen >= 0) {
        for (int k = k_lo; k <= k_hi; k++) {
            for (int i = 0; i < 10; i++) {
                double m = digits_and_half[i];
                double value = m * pow(10.0, k);
                bool major = false;
                for (int j = 0; j < sets[chosen].n; j++)
                    major |= sets[chosen].mantissas[j] == m;
                if (in_range(value, lo, hi) && (major || m != 1.5))
                    ticks_add(ticks, value, major);
            }
        }
        return;
    }
    /* Less than a factor of about three: the axis is nearly linear over so short a range. */
    plot_ticks_linear(ticks, lo, hi, target);
}

static int clamp_int(int value, int lo, int hi)
{
    return value < lo ? lo : value > hi ? hi : value;
}

/* Digits after the point that step needs; step <= 0 asks for three significant digits of
 * value (and the zeros that end up after the point are dropped later). */
static int decimals_for(double value, double step)
{
    if (step > 0.0) {
        /* The fewest decimals that write every multiple of step exactly: 2.5 needs one. */
        for (int decimals = 0; decimals < 9; decimals++) {
            double scaled = step * pow(10.0, decimals);
            if (fabs(scaled - round(scaled)) <= 1e-6 * scaled)
                return decimals;
        }
        return 9;
    }
    if (value == 0.0 || !isfinite(value))
        return 0;
    return clamp_int(2 - (int)floor(log10(fabs(value))), 0, 9);
}

/* Drops the zeros that end a fraction, and the point if nothing is left after it. */
static void strip_fraction_zeros(char *number)
{
    if (!strchr(number, '.'))
        return;
    size_t len = strlen(number);
    while (len > 0 && number[len - 1] == '0')
        number[--len] = '\0';
    if (len > 0 && number[len - 1] == '.')
        number[--len] = '\0';
    if (strcmp(number, "-0") == 0)
        strcpy(number, "0");
}

static void format_fixed(char *buffer, size_t size, double value, int decimals, const char *suffix)
{
    char number[64];
    snprintf(number, sizeof number, "%.*f", decimals, value);
    strip_fraction_zeros(number);
    snprintf(buffer, size, "%s%s", number, suffix);
}

static void format_scientific(char *buffer, size_t size, double value, double step)
{
    int exponent = (int)floor(log10(fabs(value)));
    int decimals = step > 0.0 ? clamp_int(decimals_for(0.0, step / pow(10.0, exponent)), 0, 6) : 2;
    double mantissa = value / pow(10.0, exponent);
    char number[64];
    snprintf(number, sizeof number, "%.*f", decimals, mantissa);
    /* Rounding may carry into the next power: 9.99e17 at two decimals is 1e18. */
    if (fabs(strtod(number, NULL)) >= 10.0) {
        exponent++;
        mantissa /= 10.0;
        snprintf(number, sizeof number, "%.*f", decimals, mantissa);
    }
    strip_fraction_zeros(number);
    snprintf(buffer, size, "%se%d", number, exponent);
}

const char *plot_format_number(double value, double step, PlotNumberStyle style, char *buffer,
                               size_t size)
{
    if (size == 0)
        return buffer;
    if (!isfinite(value)) {
        snprintf(buffer, size, "%s", isnan(value) ? "NaN" : value > 0 ? "∞" : "−∞");
        return buffer;
    }
    if (value == 0.0) {
        snprintf(buffer, size, "0");
        return buffer;
    }
    double magnitude = fabs(value);
    bool tiny = magnitude < 1e-4 && (step <= 0.0 || step < 1e-4);
    bool huge = magnitude >= (style == PLOT_NUMBER_SCIENTIFIC ? 1e4 : 1e15);
    if (tiny || huge) {
        format_scientific(buffer, size, value, step);
        return buffer;
    }
    if (style == PLOT_NUMBER_SI) {
        static const struct {
            double scale;
            const char *prefix;
        } prefixes[] = {{1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "k"}};
        for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
            if (magnitude >= prefixes[i].scale * (1.0 - TICK_EPSILON)) {
                double scaled = value / prefixes[i].scale;
                double scaled_step = step > 0.0 ? step / prefixes[i].scale : 0.0;
                format_fixed(buffer, size, scaled, decimals_for(scaled, scaled_step),
                             prefixes[i].prefix);
                return buffer;
            }
        }
    }
    format_fixed(buffer, size, value, decimals_for(value, step), "");
    return buffer;
}

struct _PlotText {
    cairo_t *cr;
    const PlotStyle *style;
    PangoContext *context;
    PangoLayout *layout;
    PangoFontDescription *font;
    double base_size; /* points */
    double size;      /* points, after the scale */
};

PlotText *plot_text_new(cairo_t *cr, const PlotStyle *style)
{
    PlotText *text = calloc(1, sizeof *text);
    text->cr = cr;
    text->style = style;
    text->context = pango_cairo_create_context(cr);
    pango_cairo_context_set_resolution(text->context, 96.0);

    cairo_font_options_t *options = cairo_font_options_create();
    cairo_font_options_set_hint_metrics(options, CAIRO_HINT_METRICS_OFF);
    cairo_font_options_set_hint_style(options, CAIRO_HINT_STYLE_NONE);
    cairo_font_options_set_antialias(options, CAIRO_ANTIALIAS_GRAY);
    pango_cairo_context_set_font_options(text->context, options);
    cairo_font_options_destroy(options);

    text->layout = pango_layout_new(text->context);
    text->font = pango_font_description_new();
    pango_font_description_set_family(text->font, style->font_family ? style->font_family
                                                                     : DEFAULT_FONT_FAMILY);
    text->base_size = style->font_size > 0.0 ? style->font_size : DEFAULT_FONT_SIZE;
    plot_text_set_font(text, 1.0, false);
    return text;
}

void plot_text_free(PlotText *text)
{
    if (!text)
        return;
    pango_font_description_free(text->font);
    g_object_unref(text->layout);
    g_object_unref(text->context);
    free(text);
}

void plot_text_set_font(PlotText *text, double scale, bool bold)
{
    text->size = text->base_size * scale;
    pango_font_description_set_size(text->font, (int)lround(text->size * PANGO_SCALE));
    pango_font_description_set_weight(text->font, bold ? PANGO_WEIGHT_BOLD : PANGO_WEIGHT_NORMAL);
    pango_layout_set_font_description(text->layout, text->font);
}

void plot_text_measure(PlotText *text, const char *string, double *width, double *height)
{
    PangoRectangle logical;
    pango_layout_set_text(text->layout, string, -1);
    pango_layout_get_extents(text->layout, NULL, &logical);
    if (width)
        *width = (double)logical.width / PANGO_SCALE;
    if (height)
        *height = (double)logical.height / PANGO_SCALE;
}

void plot_text_draw(PlotText *text, const char *string, double x, double y, double xalign,
                    double yalign, double angle)
{
    double width, height;
    plot_text_measure(text, string, &width, &height);
    double left = -xalign * width;
    double top = -yalign * height;

    cairo_t *cr = text->cr;
    cairo_save(cr);
    cairo_translate(cr, x, y);
    cairo_rotate(cr, angle);
    cairo_move_to(cr, left, top);
    pango_cairo_update_layout(cr, text->layout);
    pango_cairo_show_layout(cr, text->layout);
    cairo_restore(cr);

    if (text->style->text_func) {
        double baseline = top + (double)pango_layout_get_baseline(text->layout) / PANGO_SCALE;
        double c = cos(angle), s = sin(angle);
        text->style->text_func(string, x + left * c - baseline * s, y + left * s + baseline * c,
                               angle, text->size * PIXELS_PER_POINT, text->style->text_data);
    }
}

double plot_crisp(double coordinate)
{
    return floor(coordinate) + 0.5;
}

void plot_draw_grid(cairo_t *cr, const PlotStyle *style, double x, double y, double width,
                    double height, const PlotTicks *x_ticks, const PlotTicks *y_ticks,
                    PlotValueToPixel x_to_pixel, PlotValueToPixel y_to_pixel, const void *layout)
{
    cairo_set_line_width(cr, 1.0);
    for (int pass = 0; pass < 2; pass++) {
        bool major = pass == 1;
        plot_set_source_color_alpha(cr, style->grid, major ? 1.0 : 0.45);
        for (size_t i = 0; i < x_ticks->n; i++) {
            if (x_ticks->ticks[i].major != major)
                continue;
            double px = plot_crisp(x_to_pixel(layout, x_ticks->ticks[i].value));
            cairo_move_to(cr, px, y);
            cairo_line_to(cr, px, y + height);
        }
        for (size_t i = 0; i < y_ticks->n; i++) {
            if (y_ticks->ticks[i].major != major)
                continue;
            double py = plot_crisp(y_to_pixel(layout, y_ticks->ticks[i].value));
            cairo_move_to(cr, x, py);
            cairo_line_to(cr, x + width, py);
        }
        cairo_stroke(cr);
    }
}
