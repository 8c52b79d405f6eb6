/* A plot's style from the widget that shows it: the theme's text colour and view background, so
 * the plot follows the dark style, and the widget's font. Shared by the plot widgets so that a
 * plot on screen and its export are drawn in the same style. */
#pragma once

#include <gtk/gtk.h>

#include "plot-axes.h"

/* Fills style from widget's theme, with fonts at font_scale of the widget's font size. The
 * font family is kept in *font_family (the previous string is freed), which style points to. */
void plot_style_from_widget(PlotStyle *style, char **font_family, GtkWidget *widget,
                            double font_scale);

PlotColor plot_color_from_rgba(const GdkRGBA *rgba);
gboolean plot_color_equal(PlotColor a, PlotColor b);
