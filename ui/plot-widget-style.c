#include "plot-widget-style.h"

PlotColor plot_color_from_rgba(const GdkRGBA *rgba)
{
    return (PlotColor){rgba->red, rgba->green, rgba->blue, rgba->alpha};
}

void plot_style_from_widget(PlotStyle *style, char **font_family, GtkWidget *widget,
                            double font_scale)
{
    GtkStyleContext *context = gtk_widget_get_style_context(widget);
    GdkRGBA foreground_rgba, background_rgba;
    gtk_style_context_get_color(context, &foreground_rgba);
    PlotColor foreground = plot_color_from_rgba(&foreground_rgba);
    gboolean dark = plot_color_luminance(foreground) > 0.5;
    if (dark)
        plot_style_init_dark(style);
    else
        plot_style_init_light(style);
    style->foreground = foreground;
    if (gtk_style_context_lookup_color(context, "view_bg_color", &background_rgba) ||
        gtk_style_context_lookup_color(context, "theme_base_color", &background_rgba))
        style->background = plot_color_from_rgba(&background_rgba);
    style->grid = plot_color_mix(style->background, foreground, dark ? 0.16 : 0.12);
    style->grid.alpha = 1.0;

    const PangoFontDescription *font =
        pango_context_get_font_description(gtk_widget_get_pango_context(widget));
    g_free(*font_family);
    *font_family = g_strdup(font ? pango_font_description_get_family(font) : NULL);
    if (*font_family)
        style->font_family = *font_family;
    if (font && pango_font_description_get_size(font) > 0) {
        double size = (double)pango_font_description_get_size(font) / PANGO_SCALE;
        if (pango_font_description_get_size_is_absolute(font))
            size *= 72.0 / 96.0;
        style->font_size = size * font_scale;
    }
}

gboolean plot_color_equal(PlotColor a, PlotColor b)
{
    return a.red == b.red && a.green == b.green && a.blue == b.blue && a.alpha == b.alpha;
}
