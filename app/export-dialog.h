/* Exporting a plot from the window: what makes a plot widget exportable, and the Export dialog.
 *
 * A page makes its plot exportable with one call, peer_export_attach (): the plot takes the
 * keyboard focus when clicked, Ctrl+E (win.export, added by peer_export_add_action ()) exports
 * the plot that has the focus, or else the one on the page shown, and the plot's Export button
 * opens the dialog as well. The dialog offers the picture (PNG at a size and scale, SVG, PDF),
 * drawn by the plot's own renderer through plot-export.h, and the plot's data files. The file
 * name's extension chooses what is written; a name without one takes the format chosen in the
 * dialog. The file chooser asks before replacing a file, and so does the dialog when it adds
 * the extension itself. */
#pragma once

#include <adwaita.h>

#include "plot-export.h"

G_BEGIN_DECLS

/* Writes a data file of the plot to path (whole or not at all: plot_csv_save (),
 * plot_export_save ()). */
typedef gboolean (*PeerExportWriteFunc) (const char *path, gpointer user_data, GError **error);
/* The colours and font the plot is drawn with on screen. */
typedef const PlotStyle *(*PeerExportStyleFunc) (gpointer user_data);

typedef struct {
  const char *label;       /* in the dialog's format list: "Loss series (CSV)" */
  const char *description; /* under it: what the file holds */
  const char *extension;   /* without the dot: "csv", "json" */
  PeerExportWriteFunc write;
} PeerExportData;

#define PEER_EXPORT_MAX_DATA 4

/* What a kind of plot exports; a page keeps one, static, for its plot. */
typedef struct {
  const char *title;              /* "Loss Curves": the dialog's subtitle */
  const char *file_stem;          /* "loss-curves": the file name offered */
  PlotRenderFunc render;          /* the plot as the widget shows it; data is the user_data */
  PeerExportStyleFunc get_style;
  PeerExportData data[PEER_EXPORT_MAX_DATA]; /* ended by one whose label is NULL */
} PeerExportKind;

/* Makes plot exportable as kind says, its functions called with user_data; button, if not NULL,
 * opens the dialog. kind must outlive the plot, and user_data the plot's dialogs (a dialog
 * closes with its window). */
void peer_export_attach (GtkWidget *plot, GtkWidget *button, const PeerExportKind *kind,
                         gpointer user_data);
gboolean peer_export_is_attached (GtkWidget *plot);

/* The exportable plot that has the focus or holds it, else the first one shown under root,
 * else NULL. */
GtkWidget *peer_export_find_plot (GtkWindow *window, GtkWidget *root);
/* Adds the action "export" (win.export) to window: the dialog for
 * peer_export_find_plot (window, root). */
void peer_export_add_action (GtkApplicationWindow *window, GtkWidget *root);

#define PEER_TYPE_EXPORT_DIALOG (peer_export_dialog_get_type ())
G_DECLARE_FINAL_TYPE (PeerExportDialog, peer_export_dialog, PEER, EXPORT_DIALOG, AdwWindow)

/* The dialog for plot (which must be attached), modal over parent. Its size starts as the
 * plot's size on screen, so a PNG at scale 1 is what the screen shows, pixel for pixel. */
PeerExportDialog *peer_export_dialog_new (GtkWindow *parent, GtkWidget *plot);
/* Opens the dialog for plot over the window holding it. */
PeerExportDialog *peer_export_dialog_present (GtkWidget *plot);

GtkWidget *peer_export_dialog_get_plot (PeerExportDialog *self);
/* The format list: 0 PNG, 1 SVG, 2 PDF, then the plot's data files in order. */
void peer_export_dialog_set_format (PeerExportDialog *self, guint format);
guint peer_export_dialog_get_format (PeerExportDialog *self);
/* The picture's size: width x height pixels (points for PDF), PNG at scale. */
void peer_export_dialog_set_size (PeerExportDialog *self, double width, double height,
                                  double scale);
void peer_export_dialog_get_size (PeerExportDialog *self, double *width, double *height,
                                  double *scale);

/* Writes what path's extension names (the picture at the dialog's size, or a data file) to
 * path, as the Export button does once a file is chosen. On failure the dialog shows the
 * error too. */
gboolean peer_export_dialog_export (PeerExportDialog *self, const char *path, GError **error);
/* What the dialog does with the file the chooser returns: a name without an extension gets the
 * chosen format's, after asking if that names a file already there; then it exports and, when
 * that worked, says so in the window (a toast) and closes. */
void peer_export_dialog_save_as (PeerExportDialog *self, const char *path);
/* The message the dialog shows, or NULL. */
const char *peer_export_dialog_get_error (PeerExportDialog *self);

G_END_DECLS
