#include "application.h"

#include "peer-workbench-ui-resources.h"
#include "window.h"

#ifndef PEER_VERSION
#define PEER_VERSION "0"
#endif

struct _PeerApplication {
  AdwApplication parent_instance;

  gboolean start; /* --start */
  char *page;     /* --page: the page the window opens on */
};

G_DEFINE_FINAL_TYPE (PeerApplication, peer_application, ADW_TYPE_APPLICATION)

static PeerWindow *
get_window (PeerApplication *self)
{
  GtkWindow *window = gtk_application_get_active_window (GTK_APPLICATION (self));
  return PEER_IS_WINDOW (window) ? PEER_WINDOW (window) : NULL;
}

static void
new_run_activated (GSimpleAction *action, GVariant *parameter, gpointer data)
{
  PeerWindow *window = get_window (data);
  if (window)
    peer_window_show_new_run_dialog (window);
}

static void
open_activated (GSimpleAction *action, GVariant *parameter, gpointer data)
{
  PeerWindow *window = get_window (data);
  if (window)
    peer_window_show_open_dialog (window, FALSE);
}

static void
open_folder_activated (GSimpleAction *action, GVariant *parameter, gpointer data)
{
  PeerWindow *window = get_window (data);
  if (window)
    peer_window_show_open_dialog (window, TRUE);
}

static void
about_activated (GSimpleAction *action, GVariant *parameter, gpointer data)
{
  const char *developers[] = { "The PEER Workbench developers", NULL };
  GtkWidget *about = adw_about_window_new ();
  gtk_window_set_transient_for (GTK_WINDOW (about),
                                gtk_application_get_active_window (GTK_APPLICATION (data)));
  adw_about_window_set_application_name (ADW_ABOUT_WINDOW (about), "PEER Workbench");
  adw_about_window_set_application_icon (ADW_ABOUT_WINDOW (about), PEER_APPLICATION_ID);
  adw_about_window_set_version (ADW_ABOUT_WINDOW (about), PEER_VERSION);
  adw_about_window_set_developer_name (ADW_ABOUT_WINDOW (about), "The PEER Workbench developers");
  adw_about_window_set_developers (ADW_ABOUT_WINDOW (about), developers);
  adw_about_window_set_license_type (ADW_ABOUT_WINDOW (about), GTK_LICENSE_MIT_X11);
  adw_about_window_set_comments (
      ADW_ABOUT_WINDOW (about),
      "Trains byte-level language models on the processor and shows them learning. Their "
      "feed-forward layers can be PEER layers (“Mixture of A Million Experts”, X. O. He, "
      "2024): a pool of up to a million single-neuron experts, of which each token uses a "
      "few, found by product-key retrieval.");
  adw_about_window_add_link (ADW_ABOUT_WINDOW (about), "The PEER Paper (arXiv 2407.04153)",
                             "https://arxiv.org/abs/2407.04153");
  adw_about_window_add_acknowledgement_section (
      ADW_ABOUT_WINDOW (about), "Built-in Text",
      (const char *[]){ "Jane Austen’s six novels, from Project Gutenberg (public domain)",
                        NULL });
  gtk_window_present (GTK_WINDOW (about));
}

static void
quit_activated (GSimpleAction *action, GVariant *parameter, gpointer data)
{
  /* Closing each window asks about unsaved runs; the application ends with the last one. */
  GList *windows = gtk_application_get_windows (GTK_APPLICATION (data));
  for (GList *l = windows; l; l = l->next)
    gtk_window_close (l->data);
}

static const GActionEntry app_actions[] = {
  { "new-run", new_run_activated, NULL, NULL, NULL, { 0 } },
  { "open", open_activated, NULL, NULL, NULL, { 0 } },
  { "open-folder", open_folder_activated, NULL, NULL, NULL, { 0 } },
  { "about", about_activated, NULL, NULL, NULL, { 0 } },
  { "quit", quit_activated, NULL, NULL, NULL, { 0 } },
};

static void
set_accels (GtkApplication *app, const char *action, const char *accel, const char *accel2)
{
  const char *accels[] = { accel, accel2, NULL };
  gtk_application_set_accels_for_action (app, action, accels);
}

static void
peer_application_startup (GApplication *application)
{
  G_APPLICATION_CLASS (peer_application_parent_class)->startup (application);
  GtkApplication *app = GTK_APPLICATION (application);
  g_action_map_add_action_entries (G_ACTION_MAP (app), app_actions, G_N_ELEMENTS (app_actions),
                                   app);
  set_accels (app, "app.new-run", "<Control>n", NULL);
  set_accels (app, "app.open", "<Control>o", NULL);
  set_accels (app, "app.quit", "<Control>q", NULL);
  set_accels (app, "window.close", "<Control>w", NULL);
  set_accels (app, "win.save", "<Control>s", NULL);
  set_accels (app, "win.start", "<Control>r", NULL);
  set_accels (app, "win.pause", "<Control>p", NULL);
  set_accels (app, "win.step", "<Control>t", NULL);
  set_accels (app, "win.stop", "<Control>period", NULL);
  set_accels (app, "win.evaluate", "<Control><Shift>e", NULL);
  set_accels (app, "win.export", "<Control>e", NULL);
  set_accels (app, "win.page::training", "<Alt>1", NULL);
  set_accels (app, "win.page::experts", "<Alt>2", NULL);
  set_accels (app, "win.page::tokens", "<Alt>3", NULL);
  set_accels (app, "win.page::experiments", "<Alt>4", NULL);
}

static PeerWindow *
new_window (PeerApplication *self)
{
  PeerWindow *window = peer_window_new (GTK_APPLICATION (self));
  if (self->page)
    gtk_widget_activate_action (GTK_WIDGET (window), "win.page", "s", self->page);
  return window;
}

static void
peer_application_activate (GApplication *application)
{
  PeerApplication *self = PEER_APPLICATION (application);
  PeerWindow *window = get_window (self);
  if (!window)
    {
      window = new_window (self);
      peer_window_add_default_run (window, self->start);
    }
  gtk_window_present (GTK_WINDOW (window));
}

static void
peer_application_open (GApplication *application, GFile **files, int n_files, const char *hint)
{
  PeerApplication *self = PEER_APPLICATION (application);
  PeerWindow *window = get_window (self);
  if (!window)
    window = new_window (self);
  PeerRun *first = NULL;
  for (int i = 0; i < n_files; i++)
    {
      g_autofree char *path = g_file_get_path (files[i]);
      PeerRun *run = path ? peer_window_open_path (window, path) : NULL;
      if (!first)
        first = run;
    }
  if (self->start && first)
    {
      peer_window_select_run (window, first);
      peer_run_start_when_ready (first);
    }
  gtk_window_present (GTK_WINDOW (window));
}

static int
peer_application_handle_local_options (GApplication *application, GVariantDict *options)
{
  PeerApplication *self = PEER_APPLICATION (application);
  if (g_variant_dict_contains (options, "version"))
    {
      g_print ("peer-workbench %s\n", PEER_VERSION);
      return 0;
    }
  self->start = g_variant_dict_contains (options, "start");
  const char *page = NULL;
  if (g_variant_dict_lookup (options, "page", "&s", &page))
    {
      if (g_strcmp0 (page, "training") != 0 && g_strcmp0 (page, "experts") != 0 &&
          g_strcmp0 (page, "tokens") != 0 && g_strcmp0 (page, "experiments") != 0)
        {
          g_printerr ("peer-workbench: --page %s: use training, experts, tokens or experiments\n",
                      page);
          return 1;
        }
      g_free (self->page);
      self->page = g_strdup (page);
    }
  return -1;
}

PeerApplication *
peer_application_new (GApplicationFlags extra_flags)
{
  return g_object_new (PEER_TYPE_APPLICATION, "application-id", PEER_APPLICATION_ID, "flags",
                       G_APPLICATION_HANDLES_OPEN | extra_flags, NULL);
}

static void
peer_application_finalize (GObject *object)
{
  g_free (PEER_APPLICATION (object)->page);
  G_OBJECT_CLASS (peer_application_parent_class)->finalize (object);
}

static void
peer_application_class_init (PeerApplicationClass *klass)
{
  GApplicationClass *app_class = G_APPLICATION_CLASS (klass);
  G_OBJECT_CLASS (klass)->finalize = peer_application_finalize;
  app_class->startup = peer_application_startup;
  app_class->activate = peer_application_activate;
  app_class->open = peer_application_open;
  app_class->handle_local_options = peer_application_handle_local_options;
  /* The window's .ui files, CSS and icons; registered here so that a test that only makes the
   * application finds them too. */
  peer_workbench_ui_register_resource ();
}

static void
peer_application_init (PeerApplication *self)
{
  static const GOptionEntry options[] = {
    { "start", 0, 0, G_OPTION_ARG_NONE, NULL,
      "Start training the default run (or the first run given) as soon as it is ready", NULL },
    { "page", 0, 0, G_OPTION_ARG_STRING, NULL,
      "Open the window on a page: training (the default), experts, tokens or experiments", "PAGE" },
    { "version", 0, 0, G_OPTION_ARG_NONE, NULL, "Print the version and exit", NULL },
    { NULL, 0, 0, 0, NULL, NULL, NULL },
  };
  g_application_add_main_option_entries (G_APPLICATION (self), options);
  g_application_set_option_context_parameter_string (G_APPLICATION (self), "[FILE…]");
  g_application_set_option_context_summary (
      G_APPLICATION (self),
      "Opens the PEER Workbench window with the default run (a small PEER model on the built-in\n"
      "Jane Austen corpus) ready to start, or the checkpoints (.safetensors) and peer-train run\n"
      "folders given as FILE. Training without a window: peer-train.");
  g_application_set_option_context_description (
      G_APPLICATION (self),
      "Exit status: 0 when the window was closed, 1 when it could not open (no display).");
}
