#include "export-dialog.h"

#include <math.h>
#include <string.h>

#include "window.h"

#define N_IMAGE_FORMATS 3
/* The preview is drawn at most this big, in pixels, whatever size the export has. */
#define PREVIEW_WIDTH 432
#define PREVIEW_HEIGHT 200

typedef struct {
  const PeerExportKind *kind;
  gpointer user_data;
} Attachment;

static GQuark
attachment_quark (void)
{
  return g_quark_from_static_string ("peer-export-attachment");
}

static Attachment *
get_attachment (GtkWidget *plot)
{
  return plot ? g_object_get_qdata (G_OBJECT (plot), attachment_quark ()) : NULL;
}

/* Where the last export went this session: the next one starts there. */
static char *last_folder;
/* The last scale and picture format chosen: a paper's figures are usually made alike. */
static double last_scale = 2.0;
static guint last_format;

struct _PeerExportDialog {
  AdwWindow parent_instance;

  GtkWidget *plot;
  Attachment *attachment; /* the plot's */
  GtkNativeDialog *chooser;
  char *error;

  AdwWindowTitle *window_title;
  GtkRevealer *error_revealer;
  GtkLabel *error_label;
  AdwComboRow *format_row;
  GtkLabel *format_description;
  AdwPreferencesGroup *size_group;
  AdwActionRow *width_row;
  AdwActionRow *height_row;
  AdwActionRow *scale_row;
  GtkSpinButton *width_spin;
  GtkSpinButton *height_spin;
  GtkSpinButton *scale_spin;
  AdwPreferencesGroup *preview_group;
  GtkPicture *preview;
};

G_DEFINE_FINAL_TYPE (PeerExportDialog, peer_export_dialog, ADW_TYPE_WINDOW)

/* ---- attaching ------------------------------------------------------------------------------ */

static void
on_plot_pressed (GtkGestureClick *gesture, int n_press, double x, double y, GtkWidget *plot)
{
  gtk_widget_grab_focus (plot);
}

static void
on_export_button_clicked (GtkWidget *plot)
{
  peer_export_dialog_present (plot);
}

void
peer_export_attach (GtkWidget *plot, GtkWidget *button, const PeerExportKind *kind,
                    gpointer user_data)
{
  g_return_if_fail (GTK_IS_WIDGET (plot) && kind != NULL && kind->render && kind->get_style);
  Attachment *attachment = g_new0 (Attachment, 1);
  attachment->kind = kind;
  attachment->user_data = user_data;
  g_object_set_qdata_full (G_OBJECT (plot), attachment_quark (), attachment, g_free);

  /* A plot handles no click of its own, so nothing would give it the focus Ctrl+E looks for. */
  gtk_widget_set_focusable (plot, TRUE);
  gtk_widget_add_css_class (plot, "exportable-plot");
  GtkGesture *click = gtk_gesture_click_new ();
  gtk_event_controller_set_propagation_phase (GTK_EVENT_CONTROLLER (click), GTK_PHASE_CAPTURE);
  g_signal_connect (click, "pressed", G_CALLBACK (on_plot_pressed), plot);
  gtk_widget_add_controller (plot, GTK_EVENT_CONTROLLER (click));

  if (button)
    g_signal_connect_object (button, "clicked", G_CALLBACK (on_export_button_clicked), plot,
                             G_CONNECT_SWAPPED);
}

gboolean
peer_export_is_attached (GtkWidget *plot)
{
  return get_attachment (plot) != NULL;
}

static GtkWidget *
first_shown_plot (GtkWidget *widget)
{
  if (!gtk_widget_get_mapped (widget))
    return NULL;
  if (get_attachment (widget))
    return widget;
  for (GtkWidget *child = gtk_widget_get_first_child (widget); child;
       child = gtk_widget_get_next_sibling (child))
    {
      GtkWidget *found = first_shown_plot (child);
      if (found)
        return found;
    }
  return NULL;
}

GtkWidget *
peer_export_find_plot (GtkWindow *window, GtkWidget *root)
{
  GtkWidget *focus = window ? gtk_root_get_focus (GTK_ROOT (window)) : NULL;
  for (GtkWidget *w = focus; w; w = gtk_widget_get_parent (w))
    if (get_attachment (w))
      return w;
  return root ? first_shown_plot (root) : NULL;
}

static void
export_activated (GSimpleAction *action, GVariant *parameter, gpointer data)
{
  GtkWindow *window = GTK_WINDOW (data);
  GtkWidget *root = g_object_get_data (G_OBJECT (action), "peer-export-root");
  GtkWidget *plot = peer_export_find_plot (window, root);
  if (plot)
    peer_export_dialog_present (plot);
  else if (PEER_IS_WINDOW (window))
    peer_window_show_toast (PEER_WINDOW (window), "This page has no plot to export");
}

void
peer_export_add_action (GtkApplicationWindow *window, GtkWidget *root)
{
  GSimpleAction *action = g_simple_action_new ("export", NULL);
  g_object_set_data (G_OBJECT (action), "peer-export-root", root);
  g_signal_connect (action, "activate", G_CALLBACK (export_activated), window);
  g_action_map_add_action (G_ACTION_MAP (window), G_ACTION (action));
  g_object_unref (action);
}

/* ---- the dialog's state --------------------------------------------------------------------- */

static guint
n_data (const PeerExportKind *kind)
{
  guint n = 0;
  while (n < PEER_EXPORT_MAX_DATA && kind->data[n].label)
    n++;
  return n;
}

static const PeerExportData *
selected_data (PeerExportDialog *self)
{
  guint format = peer_export_dialog_get_format (self);
  return format >= N_IMAGE_FORMATS ? &self->attachment->kind->data[format - N_IMAGE_FORMATS]
                                   : NULL;
}

static const char *
selected_extension (PeerExportDialog *self)
{
  const PeerExportData *data = selected_data (self);
  if (data)
    return data->extension;
  return plot_export_format_extension ((PlotExportFormat) peer_export_dialog_get_format (self));
}

static void
show_error (PeerExportDialog *self, const char *message)
{
  g_free (self->error);
  self->error = g_strdup (message);
  if (message)
    gtk_label_set_label (self->error_label, message);
  gtk_revealer_set_reveal_child (self->error_revealer, message != NULL);
}

static void
render_preview (PeerExportDialog *self)
{
  if (!gtk_widget_get_visible (GTK_WIDGET (self->preview_group)))
    return;
  double width, height, scale;
  peer_export_dialog_get_size (self, &width, &height, &scale);
  double fit = fmin (PREVIEW_WIDTH / width, PREVIEW_HEIGHT / height);
  int factor = gtk_widget_get_scale_factor (GTK_WIDGET (self));
  int pixels_wide = MAX (1, (int) lround (width * fit)) * factor;
  int pixels_high = MAX (1, (int) lround (height * fit)) * factor;
  cairo_surface_t *surface = cairo_image_surface_create (CAIRO_FORMAT_ARGB32, pixels_wide,
                                                         pixels_high);
  cairo_t *cr = cairo_create (surface);
  cairo_scale (cr, fit * factor, fit * factor);
  const PeerExportKind *kind = self->attachment->kind;
  kind->render (cr, width, height, kind->get_style (self->attachment->user_data),
                self->attachment->user_data);
  cairo_destroy (cr);
  cairo_surface_flush (surface);
  GBytes *bytes = g_bytes_new_with_free_func (
      cairo_image_surface_get_data (surface),
      (gsize) cairo_image_surface_get_stride (surface) * (gsize) pixels_high,
      (GDestroyNotify) cairo_surface_destroy, surface);
  GdkTexture *texture = gdk_memory_texture_new (pixels_wide, pixels_high, GDK_MEMORY_DEFAULT,
                                                bytes,
                                                (gsize) cairo_image_surface_get_stride (surface));
  g_bytes_unref (bytes);
  gtk_picture_set_paintable (self->preview, GDK_PAINTABLE (texture));
  gtk_widget_set_size_request (GTK_WIDGET (self->preview), -1, pixels_high / factor);
  g_object_unref (texture);
}

static void
update_rows (PeerExportDialog *self)
{
  guint format = peer_export_dialog_get_format (self);
  gboolean image = format < N_IMAGE_FORMATS;
  gtk_widget_set_visible (GTK_WIDGET (self->size_group), image);
  gtk_widget_set_visible (GTK_WIDGET (self->preview_group), image);
  gtk_widget_set_visible (GTK_WIDGET (self->scale_row), format == PLOT_EXPORT_PNG);

  double width, height, scale;
  peer_export_dialog_get_size (self, &width, &height, &scale);
  const char *unit = format == PLOT_EXPORT_PDF ? "points" : "pixels";
  adw_action_row_set_subtitle (self->width_row, unit);
  adw_action_row_set_subtitle (self->height_row, unit);
  g_autofree char *pixels = g_strdup_printf ("%ld × %ld pixels", lround (width * scale),
                                             lround (height * scale));
  adw_action_row_set_subtitle (self->scale_row, pixels);

  g_autofree char *description = NULL;
  const PeerExportData *data = selected_data (self);
  if (data)
    description = g_strdup (data->description);
  else if (format == PLOT_EXPORT_PNG)
    description = g_strdup ("A picture of the plot. The layout follows the size; the scale "
                            "multiplies its pixels, so 2 makes it sharp on paper and on "
                            "high-density screens.");
  else if (format == PLOT_EXPORT_SVG)
    description = g_strdup ("Vectors, sharp at any zoom, with the words searchable. The lettering "
                            "is kept as outlines, so it looks the same in every program.");
  else
    description = g_strdup_printf ("Vectors on one page of %g × %g points (%.1f × %.1f cm), "
                                   "with the fonts embedded.",
                                   width, height, width / 72.0 * 2.54, height / 72.0 * 2.54);
  gtk_label_set_label (self->format_description, description);
  render_preview (self);
}

static void
on_format_changed (PeerExportDialog *self)
{
  if (!self->attachment)
    return;
  if (peer_export_dialog_get_format (self) < N_IMAGE_FORMATS)
    last_format = peer_export_dialog_get_format (self);
  show_error (self, NULL);
  update_rows (self);
}

static void
on_size_changed (PeerExportDialog *self)
{
  if (!self->attachment)
    return;
  last_scale = gtk_spin_button_get_value (self->scale_spin);
  show_error (self, NULL);
  update_rows (self);
}

static void
on_screen_size_clicked (PeerExportDialog *self)
{
  gtk_spin_button_set_value (self->width_spin, MAX (1, gtk_widget_get_width (self->plot)));
  gtk_spin_button_set_value (self->height_spin, MAX (1, gtk_widget_get_height (self->plot)));
}

/* ---- exporting ------------------------------------------------------------------------------ */

static const char *
extension_of (const char *path)
{
  const char *slash = strrchr (path, '/');
  const char *name = slash ? slash + 1 : path;
  const char *dot = strrchr (name, '.');
  return dot && dot != name && dot[1] ? dot + 1 : NULL;
}

/* The data file path's extension names: the selected one if it matches, else the first. */
static const PeerExportData *
data_for_path (PeerExportDialog *self, const char *path)
{
  const char *extension = extension_of (path);
  const PeerExportData *selected = selected_data (self);
  if (!extension)
    return NULL;
  if (selected && g_ascii_strcasecmp (selected->extension, extension) == 0)
    return selected;
  const PeerExportKind *kind = self->attachment->kind;
  for (guint i = 0; i < n_data (kind); i++)
    if (g_ascii_strcasecmp (kind->data[i].extension, extension) == 0)
      return &kind->data[i];
  return NULL;
}

static void
set_unknown_format_error (PeerExportDialog *self, const char *path, GError **error)
{
  /* ".png, .svg, .pdf or .csv": each extension the plot is written in, once. */
  GPtrArray *extensions = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < N_IMAGE_FORMATS; i++)
    g_ptr_array_add (extensions, g_strdup_printf (".%s", plot_export_format_extension (i)));
  const PeerExportKind *kind = self->attachment->kind;
  for (guint i = 0; i < n_data (kind); i++)
    {
      char *entry = g_strdup_printf (".%s", kind->data[i].extension);
      gboolean known = FALSE;
      for (guint j = 0; j < extensions->len && !known; j++)
        known = g_ascii_strcasecmp (g_ptr_array_index (extensions, j), entry) == 0;
      if (known)
        g_free (entry);
      else
        g_ptr_array_add (extensions, entry);
    }
  GString *list = g_string_new (NULL);
  for (guint i = 0; i < extensions->len; i++)
    g_string_append_printf (list, "%s%s",
                            i == 0 ? "" : i + 1 == extensions->len ? " or " : ", ",
                            (const char *) g_ptr_array_index (extensions, i));
  g_ptr_array_unref (extensions);
  const char *extension = extension_of (path);
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
               "Cannot export “%s”: %s. End the file name in %s.", path,
               extension ? "the plot is not written in that format"
                         : "the file name has no extension to choose the format by",
               list->str);
  g_string_free (list, TRUE);
}

gboolean
peer_export_dialog_export (PeerExportDialog *self, const char *path, GError **error)
{
  g_return_val_if_fail (PEER_IS_EXPORT_DIALOG (self), FALSE);
  g_autoptr (GError) local_error = NULL;
  const PeerExportKind *kind = self->attachment->kind;
  gpointer user_data = self->attachment->user_data;
  gboolean ok;
  if (plot_export_path_is_image (path))
    {
      double width, height, scale;
      peer_export_dialog_get_size (self, &width, &height, &scale);
      ok = plot_export_image (path, width, height, scale, kind->get_style (user_data),
                              kind->render, user_data, &local_error);
    }
  else
    {
      const PeerExportData *data = data_for_path (self, path);
      if (data)
        ok = data->write (path, user_data, &local_error);
      else
        {
          set_unknown_format_error (self, path, &local_error);
          ok = FALSE;
        }
    }
  if (!ok)
    {
      show_error (self, local_error->message);
      g_propagate_error (error, g_steal_pointer (&local_error));
      return FALSE;
    }
  show_error (self, NULL);
  return TRUE;
}

static void
remember_folder (const char *path)
{
  g_free (last_folder);
  last_folder = g_path_get_dirname (path);
}

/* Writes path and, when that worked, says so in the window and closes the dialog. */
static void
export_and_close (PeerExportDialog *self, const char *path)
{
  if (!peer_export_dialog_export (self, path, NULL))
    return;
  remember_folder (path);
  GtkWindow *parent = gtk_window_get_transient_for (GTK_WINDOW (self));
  if (PEER_IS_WINDOW (parent))
    {
      g_autofree char *name = g_path_get_basename (path);
      g_autofree char *text = g_strdup_printf ("Exported “%s”", name);
      peer_window_show_toast (PEER_WINDOW (parent), text);
    }
  gtk_window_close (GTK_WINDOW (self));
}

typedef struct {
  PeerExportDialog *dialog;
  char *path;
} PendingExport;

static gboolean
export_pending (gpointer data)
{
  PendingExport *pending = data;
  export_and_close (pending->dialog, pending->path);
  g_object_unref (pending->dialog);
  g_free (pending->path);
  g_free (pending);
  return G_SOURCE_REMOVE;
}

/* The question, transient for this dialog, is still closing when it answers: the export (and
 * this dialog's closing) waits until it has gone. */
static void
on_replace_response (PeerExportDialog *self, const char *response, AdwMessageDialog *dialog)
{
  if (g_strcmp0 (response, "replace") != 0)
    return;
  PendingExport *pending = g_new0 (PendingExport, 1);
  pending->dialog = g_object_ref (self);
  pending->path = g_strdup (g_object_get_data (G_OBJECT (dialog), "peer-path"));
  g_idle_add (export_pending, pending);
}

/* The file chooser asked before replacing the file it returned; a name the dialog completed
 * with an extension is another file, so it asks itself. */
void
peer_export_dialog_save_as (PeerExportDialog *self, const char *chosen)
{
  g_return_if_fail (PEER_IS_EXPORT_DIALOG (self));
  if (extension_of (chosen))
    {
      export_and_close (self, chosen);
      return;
    }
  g_autofree char *path = g_strdup_printf ("%s.%s", chosen, selected_extension (self));
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    {
      export_and_close (self, path);
      return;
    }
  g_autofree char *name = g_path_get_basename (path);
  g_autofree char *folder = g_path_get_dirname (path);
  g_autofree char *heading = g_strdup_printf ("Replace “%s”?", name);
  g_autofree char *body = g_strdup_printf ("A file with this name already exists in “%s”. "
                                           "Exporting replaces what it holds.",
                                           folder);
  GtkWidget *dialog = adw_message_dialog_new (GTK_WINDOW (self), heading, body);
  adw_message_dialog_add_responses (ADW_MESSAGE_DIALOG (dialog), "cancel", "_Cancel", "replace",
                                    "_Replace", NULL);
  adw_message_dialog_set_response_appearance (ADW_MESSAGE_DIALOG (dialog), "replace",
                                              ADW_RESPONSE_DESTRUCTIVE);
  adw_message_dialog_set_default_response (ADW_MESSAGE_DIALOG (dialog), "cancel");
  adw_message_dialog_set_close_response (ADW_MESSAGE_DIALOG (dialog), "cancel");
  g_object_set_data_full (G_OBJECT (dialog), "peer-path", g_strdup (path), g_free);
  g_signal_connect_object (dialog, "response", G_CALLBACK (on_replace_response), self,
                           G_CONNECT_SWAPPED);
  gtk_window_present (GTK_WINDOW (dialog));
}

static void
on_chooser_response (PeerExportDialog *self, int response, GtkNativeDialog *chooser)
{
  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr (GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (chooser));
      g_autofree char *path = file ? g_file_get_path (file) : NULL;
      if (path)
        peer_export_dialog_save_as (self, path);
      else
        show_error (self, "The place chosen is not a local file: choose a folder on this "
                          "computer.");
    }
  g_clear_object (&self->chooser);
}

static void
on_export_clicked (PeerExportDialog *self)
{
  guint format = peer_export_dialog_get_format (self);
  if (format < N_IMAGE_FORMATS)
    {
      double width, height, scale;
      g_autoptr (GError) error = NULL;
      peer_export_dialog_get_size (self, &width, &height, &scale);
      if (!plot_export_check_size ((PlotExportFormat) format, width, height, scale, &error))
        {
          show_error (self, error->message);
          return;
        }
    }
  const PeerExportKind *kind = self->attachment->kind;
  g_autofree char *title = g_strdup_printf ("Export %s", kind->title);
  GtkFileChooserNative *chooser = gtk_file_chooser_native_new (
      title, GTK_WINDOW (self), GTK_FILE_CHOOSER_ACTION_SAVE, "_Export", "_Cancel");
  if (last_folder && g_file_test (last_folder, G_FILE_TEST_IS_DIR))
    {
      g_autoptr (GFile) folder = g_file_new_for_path (last_folder);
      gtk_file_chooser_set_current_folder (GTK_FILE_CHOOSER (chooser), folder, NULL);
    }
  g_autofree char *name = g_strdup_printf ("%s.%s", kind->file_stem, selected_extension (self));
  gtk_file_chooser_set_current_name (GTK_FILE_CHOOSER (chooser), name);
  g_signal_connect_swapped (chooser, "response", G_CALLBACK (on_chooser_response), self);
  g_set_object (&self->chooser, GTK_NATIVE_DIALOG (chooser));
  g_object_unref (chooser);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (chooser));
}

/* ---- GObject -------------------------------------------------------------------------------- */

GtkWidget *
peer_export_dialog_get_plot (PeerExportDialog *self)
{
  g_return_val_if_fail (PEER_IS_EXPORT_DIALOG (self), NULL);
  return self->plot;
}

void
peer_export_dialog_set_format (PeerExportDialog *self, guint format)
{
  g_return_if_fail (PEER_IS_EXPORT_DIALOG (self));
  g_return_if_fail (format < N_IMAGE_FORMATS + n_data (self->attachment->kind));
  adw_combo_row_set_selected (self->format_row, format);
}

guint
peer_export_dialog_get_format (PeerExportDialog *self)
{
  g_return_val_if_fail (PEER_IS_EXPORT_DIALOG (self), 0);
  guint selected = adw_combo_row_get_selected (self->format_row);
  return selected == GTK_INVALID_LIST_POSITION ? 0 : selected;
}

void
peer_export_dialog_set_size (PeerExportDialog *self, double width, double height, double scale)
{
  g_return_if_fail (PEER_IS_EXPORT_DIALOG (self));
  gtk_spin_button_set_value (self->width_spin, width);
  gtk_spin_button_set_value (self->height_spin, height);
  gtk_spin_button_set_value (self->scale_spin, scale);
}

void
peer_export_dialog_get_size (PeerExportDialog *self, double *width, double *height,
                             double *scale)
{
  g_return_if_fail (PEER_IS_EXPORT_DIALOG (self));
  *width = gtk_spin_button_get_value (self->width_spin);
  *height = gtk_spin_button_get_value (self->height_spin);
  *scale = gtk_spin_button_get_value (self->scale_spin);
}

const char *
peer_export_dialog_get_error (PeerExportDialog *self)
{
  g_return_val_if_fail (PEER_IS_EXPORT_DIALOG (self), NULL);
  return self->error;
}

static void
peer_export_dialog_dispose (GObject *object)
{
  PeerExportDialog *self = PEER_EXPORT_DIALOG (object);
  if (self->chooser)
    {
      gtk_native_dialog_destroy (self->chooser);
      g_clear_object (&self->chooser);
    }
  gtk_widget_dispose_template (GTK_WIDGET (object), PEER_TYPE_EXPORT_DIALOG);
  g_clear_object (&self->plot);
  G_OBJECT_CLASS (peer_export_dialog_parent_class)->dispose (object);
}

static void
peer_export_dialog_finalize (GObject *object)
{
  PeerExportDialog *self = PEER_EXPORT_DIALOG (object);
  g_free (self->error);
  G_OBJECT_CLASS (peer_export_dialog_parent_class)->finalize (object);
}

static void
peer_export_dialog_class_init (PeerExportDialogClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  object_class->dispose = peer_export_dialog_dispose;
  object_class->finalize = peer_export_dialog_finalize;

  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/org/peerworkbench/Workbench/ui/export-dialog.ui");
  gtk_widget_class_bind_template_child (widget_class, PeerExportDialog, window_title);
  gtk_widget_class_bind_template_child (widget_class, PeerExportDialog, error_revealer);
  gtk_widget_class_bind_template_child (widget_class, PeerExportDialog, error_label);
  gtk_widget_class_bind_template_child (widget_class, PeerExportDialog, format_row);
  gtk_widget_class_bind_template_child (widget_class, PeerExportDialog, format_description);
  gtk_widget_class_bind_template_child (widget_class, PeerExportDialog, size_group);
  gtk_widget_class_bind_template_child (widget_class, PeerExportDialog, width_row);
  gtk_widget_class_bind_template_child (widget_class, PeerExportDialog, height_row);
  gtk_widget_class_bind_template_child (widget_class, PeerExportDialog, scale_row);
  gtk_widget_class_bind_template_child (widget_class, PeerExportDialog, width_spin);
  gtk_widget_class_bind_template_child (widget_class, PeerExportDialog, height_spin);
  gtk_widget_class_bind_template_child (widget_class, PeerExportDialog, scale_spin);
  gtk_widget_class_bind_template_child (widget_class, PeerExportDialog, preview_group);
  gtk_widget_class_bind_template_child (widget_class, PeerExportDialog, preview);
  gtk_widget_class_bind_template_callback (widget_class, on_export_clicked);
  gtk_widget_class_bind_template_callback (widget_class, on_format_changed);
  gtk_widget_class_bind_template_callback (widget_class, on_size_changed);
  gtk_widget_class_bind_template_callback (widget_class, on_screen_size_clicked);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_Escape, 0, "window.close", NULL);
}

static void
peer_export_dialog_init (PeerExportDialog *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
}

PeerExportDialog *
peer_export_dialog_new (GtkWindow *parent, GtkWidget *plot)
{
  Attachment *attachment = get_attachment (plot);
  g_return_val_if_fail (attachment != NULL, NULL);
  PeerExportDialog *self = g_object_new (PEER_TYPE_EXPORT_DIALOG, "transient-for", parent, NULL);
  self->plot = g_object_ref (plot);
  self->attachment = attachment;
  const PeerExportKind *kind = attachment->kind;

  g_autofree char *title = g_strdup_printf ("Export %s", kind->title);
  gtk_window_set_title (GTK_WINDOW (self), title);
  adw_window_title_set_title (self->window_title, "Export");
  adw_window_title_set_subtitle (self->window_title, kind->title);

  /* Setting the list selects its first item, which would be remembered instead. */
  guint remembered_format = last_format;
  double remembered_scale = last_scale;
  GtkStringList *formats = gtk_string_list_new (
      (const char *[]){ "PNG image", "SVG image", "PDF document", NULL });
  for (guint i = 0; i < n_data (kind); i++)
    gtk_string_list_append (formats, kind->data[i].label);
  adw_combo_row_set_model (self->format_row, G_LIST_MODEL (formats));
  g_object_unref (formats);

  /* The size on screen, so a PNG at scale 1 is the screen pixel for pixel. */
  gtk_spin_button_set_value (self->width_spin, MAX (1, gtk_widget_get_width (plot)));
  gtk_spin_button_set_value (self->height_spin, MAX (1, gtk_widget_get_height (plot)));
  gtk_spin_button_set_value (self->scale_spin, remembered_scale);
  adw_combo_row_set_selected (self->format_row, remembered_format);
  update_rows (self);
  return self;
}

PeerExportDialog *
peer_export_dialog_present (GtkWidget *plot)
{
  GtkRoot *root = gtk_widget_get_root (plot);
  PeerExportDialog *dialog = peer_export_dialog_new (GTK_IS_WINDOW (root) ? GTK_WINDOW (root)
                                                                          : NULL,
                                                     plot);
  if (dialog)
    gtk_window_present (GTK_WINDOW (dialog));
  return dialog;
}
