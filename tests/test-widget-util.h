/* What the widget tests share: a widget's drawing as the GSK cairo renderer rasterises it, pixels
 * read and compared, and a widget's event controllers found by type. */
#pragma once

#include <gtk/gtk.h>

/* The widget's snapshot drawn into a new ARGB32 surface of its allocated size. */
cairo_surface_t *widget_test_draw(GtkWidget *widget);

/* Pixels where any channel, alpha included, differs by more than 2; a and b of the same size. */
int widget_test_count_different_pixels(cairo_surface_t *a, cairo_surface_t *b);

/* The pixel holding (x, y), which must lie on the surface, as rgb (premultiplied). */
void widget_test_pixel(cairo_surface_t *surface, double x, double y, int rgb[3]);

/* The widget's first event controller of type; fails the test if it has none. */
gpointer widget_test_find_controller(GtkWidget *widget, GType type);
