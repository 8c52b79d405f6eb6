/* The Experts page on a real display (Xvfb under meson test), with a tiny run trained a few
 * steps from the window: the usage, unevenness and dead experts it shows for every head are the
 * engine's (expert_stats_usage, and the decayed window's own) on the same statistics, read on the
 * worker; the map holds the engine's metric grid for the chosen window and head; a metric changes
 * the map without asking the worker; the validation text is measured on demand; a click on the
 * map emits the layer and the expert.
 *
 * Every wait has a generous limit that only guards against a hang. */
#include <math.h>
#include <string.h>

#include "experts-page.h"
#include "expert-heatmap.h"
#include "format.h"
#include "test-ui-util.h"

#define EXPERT_LAYER 1 /* the tiny run's PEER block */
#define STEPS 6

static PeerWindow *window;
static PeerExpertsPage *page;

static gboolean
window_is_mapped (gpointer data)
{
  return gtk_widget_get_mapped (GTK_WIDGET (window));
}

static gboolean
run_is_ready (gpointer run)
{
  return peer_run_get_state (run) == PEER_RUN_READY;
}

static gboolean
run_reached (gpointer run)
{
  return peer_run_get_step (run) >= STEPS;
}

static PeerExpertsPage *
find_page (GtkWidget *root)
{
  if (PEER_IS_EXPERTS_PAGE (root))
    return PEER_EXPERTS_PAGE (root);
  for (GtkWidget *child = gtk_widget_get_first_child (root); child;
       child = gtk_widget_get_next_sibling (child))
    {
      PeerExpertsPage *found = find_page (child);
      if (found)
        return found;
    }
  return NULL;
}

/* The grid the page shows is the one asked for, with the run's steps in it. */
typedef struct {
  expert_window window;
  int head;
} Wanted;

static gboolean
grid_shown (gpointer data)
{
  const Wanted *wanted = data;
  const PeerExpertGrid *grid = peer_experts_page_get_grid (page);
  return grid && grid->window == wanted->window && grid->head == wanted->head &&
         grid->layer == EXPERT_LAYER && grid->tokens > 0.0 &&
         (wanted->window == EXPERT_WINDOW_VALIDATION || grid->step >= STEPS);
}

/* ---- the engine's numbers, read on the worker ------------------------------------------------ */

typedef struct {
  expert_window window;
  int head;
  int heads;
  int side;
  expert_usage usage[8]; /* all heads, then each */
  float *count;          /* (N) */
  float *gate_mass;
} Reference;

static void
reference_free (gpointer data)
{
  Reference *reference = data;
  g_free (reference->count);
  g_free (reference->gate_mass);
  g_free (reference);
}

static gpointer
read_reference (const PeerInspectContext *context, gpointer data, GError **error)
{
  const Reference *asked = data;
  const expert_monitor_layer *layer = &context->experts->layers[EXPERT_LAYER];
  Reference *reference = g_new0 (Reference, 1);
  *reference = (Reference){ .window = asked->window, .head = asked->head, .heads = layer->heads,
                            .side = layer->side };
  g_assert_cmpint (layer->heads + 1, <=, (int) G_N_ELEMENTS (reference->usage));
  size_t N = (size_t) layer->side * layer->side;
  reference->count = g_new (float, N);
  reference->gate_mass = g_new (float, N);
  for (int j = -1; j < layer->heads; j++)
    {
      if (asked->window == EXPERT_WINDOW_LIVE)
        expert_decayed_stats_usage (&layer->live, j, false, &reference->usage[j + 1]);
      else
        expert_stats_usage (asked->window == EXPERT_WINDOW_VALIDATION ? &layer->validation
                                                                      : &layer->since_start,
                            j, false, &reference->usage[j + 1]);
    }
  if (asked->window == EXPERT_WINDOW_LIVE)
    {
      expert_decayed_stats_metric (&layer->live, EXPERT_METRIC_COUNT, asked->head,
                                   reference->count);
      expert_decayed_stats_metric (&layer->live, EXPERT_METRIC_GATE_MASS, asked->head,
                                   reference->gate_mass);
    }
  else
    {
      const expert_stats *stats = asked->window == EXPERT_WINDOW_VALIDATION ? &layer->validation
                                                                            : &layer->since_start;
      expert_stats_metric (stats, EXPERT_METRIC_COUNT, asked->head, reference->count);
      expert_stats_metric (stats, EXPERT_METRIC_GATE_MASS, asked->head, reference->gate_mass);
    }
  return reference;
}

static void
on_reference (PeerSession *session, gpointer result, const GError *error, gpointer user_data)
{
  g_assert_no_error ((GError *) error);
  *(Reference **) user_data = result;
}

static gboolean
pointer_set (gpointer data)
{
  return *(gpointer *) data != NULL;
}

static Reference *
engine_reference (PeerSession *session, expert_window which, int head)
{
  Reference *asked = g_new0 (Reference, 1);
  asked->window = which;
  asked->head = head;
  Reference *reference = NULL;
  peer_session_inspect (session, read_reference, asked, g_free, reference_free, NULL,
                        on_reference, &reference);
  g_assert_true (ui_test_wait (pointer_set, &reference, 60));
  return reference;
}

/* ---- what the page shows --------------------------------------------------------------------- */

static const char *
cell_text (int column, int row)
{
  GtkWidget *table = ui_test_find_widget (GTK_WIDGET (page), "usage-grid");
  g_assert_nonnull (table);
  GtkWidget *label = gtk_grid_get_child_at (GTK_GRID (table), column, row);
  g_assert_nonnull (label);
  return gtk_label_get_label (GTK_LABEL (label));
}

static void
check_usage_table (const Reference *reference)
{
  for (int j = -1; j < reference->heads; j++)
    {
      const expert_usage *u = &reference->usage[j + 1];
      int row = j + 2;
      g_autofree char *head = j < 0 ? g_strdup ("All") : g_strdup_printf ("%d", j);
      g_autofree char *used = g_strdup_printf (
          u->dead > 0 && u->usage >= 0.9995 ? "%.3f %%" : "%.1f %%", 100.0 * u->usage);
      g_autofree char *unevenness = g_strdup_printf ("%.3f", u->unevenness);
      g_autofree char *dead = peer_format_count ((double) u->dead);
      g_assert_cmpstr (cell_text (0, row), ==, head);
      g_assert_cmpstr (cell_text (1, row), ==, used);
      g_assert_cmpstr (cell_text (2, row), ==, unevenness);
      g_assert_cmpstr (cell_text (3, row), ==, dead);
    }
  /* Something to compare: the tiny run uses some of its 64 experts, not none. */
  g_assert_cmpfloat (reference->usage[0].usage, >, 0.0);
  g_assert_cmpfloat (reference->usage[0].unevenness, >, 0.0);
}

/* The map holds the reference's grid of the metric; never-chosen experts are empty. */
static void
check_map (PeerExpertHeatmap *map, const float *expected, int side)
{
  const ExpertHeatmapModel *model = peer_expert_heatmap_get_model (map);
  g_assert_cmpint (model->side, ==, side);
  g_assert_true (model->zero_is_empty);
  g_assert_cmpmem (model->values, side * side * sizeof (float), expected,
                   side * side * sizeof (float));
}

static void
on_page_expert (PeerExpertsPage *self, int layer, int expert, gpointer user_data)
{
  int *got = user_data;
  got[0] = layer;
  got[1] = expert;
}

static void
test_experts_page (void)
{
  PeerApplication *app = ui_test_application ();
  window = peer_window_new (GTK_APPLICATION (app));
  gtk_window_present (GTK_WINDOW (window));
  g_assert_true (ui_test_wait (window_is_mapped, NULL, 30));
  model_config cfg;
  train_settings settings;
  ui_test_tiny_run (&cfg, &settings);
  PeerRun *run = peer_window_add_run (window, "tiny", &cfg, &settings, NULL, 1);
  g_assert_true (ui_test_wait (run_is_ready, run, 60));
  PeerSession *session = peer_run_get_session (run);
  g_assert_nonnull (session);

  gtk_widget_activate_action (GTK_WIDGET (window), "win.page", "s", "experts");
  page = find_page (GTK_WIDGET (window));
  g_assert_nonnull (page);
  g_assert_cmpint (peer_experts_page_get_layer (page), ==, EXPERT_LAYER);
  PeerExpertHeatmap *map =
      PEER_EXPERT_HEATMAP (ui_test_find_widget (GTK_WIDGET (page), "expert-heatmap"));
  g_assert_nonnull (map);
  /* Counts span decades: the log scale is the default. */
  g_assert_cmpint (peer_expert_heatmap_get_scale (map), ==, EXPERT_HEATMAP_LOG);

  for (int s = 0; s < STEPS; s++)
    peer_session_step_once (session);
  g_assert_true (ui_test_wait (run_reached, run, 60));

  /* Live, all heads: the page's numbers are the decayed window's own. */
  Wanted wanted = { EXPERT_WINDOW_LIVE, -1 };
  g_assert_true (ui_test_wait (grid_shown, &wanted, 60));
  Reference *reference = engine_reference (session, EXPERT_WINDOW_LIVE, -1);
  check_usage_table (reference);
  check_map (map, reference->count, reference->side);
  reference_free (reference);

  /* Since start, then one head. */
  peer_experts_page_set_window (page, EXPERT_WINDOW_SINCE_START);
  wanted = (Wanted){ EXPERT_WINDOW_SINCE_START, -1 };
  g_assert_true (ui_test_wait (grid_shown, &wanted, 60));
  reference = engine_reference (session, EXPERT_WINDOW_SINCE_START, -1);
  check_usage_table (reference);
  check_map (map, reference->count, reference->side);
  /* Another metric is drawn from the grid the page has: no new request. */
  const PeerExpertGrid *grid = peer_experts_page_get_grid (page);
  peer_experts_page_set_metric (page, EXPERT_METRIC_GATE_MASS);
  g_assert_true (peer_experts_page_get_grid (page) == grid);
  check_map (map, reference->gate_mass, reference->side);
  reference_free (reference);

  peer_experts_page_set_head (page, 1);
  wanted = (Wanted){ EXPERT_WINDOW_SINCE_START, 1 };
  g_assert_true (ui_test_wait (grid_shown, &wanted, 60));
  reference = engine_reference (session, EXPERT_WINDOW_SINCE_START, 1);
  check_usage_table (reference);
  check_map (map, reference->gate_mass, reference->side);
  reference_free (reference);

  /* The validation text, measured when chosen. */
  peer_experts_page_set_head (page, -1);
  peer_experts_page_set_metric (page, EXPERT_METRIC_COUNT);
  peer_experts_page_set_window (page, EXPERT_WINDOW_VALIDATION);
  GtkWidget *measure = ui_test_find_widget (GTK_WIDGET (page), "measure-button");
  g_assert_true (gtk_widget_get_visible (measure));
  wanted = (Wanted){ EXPERT_WINDOW_VALIDATION, -1 };
  g_assert_true (ui_test_wait (grid_shown, &wanted, 60));
  g_assert_cmpint (peer_experts_page_get_grid (page)->measured_step, ==, STEPS);
  reference = engine_reference (session, EXPERT_WINDOW_VALIDATION, -1);
  check_usage_table (reference);
  check_map (map, reference->count, reference->side);
  reference_free (reference);

  /* A click on the map names the layer and the expert. */
  int got[2] = { -1, -1 };
  g_signal_connect (page, "expert-activated", G_CALLBACK (on_page_expert), got);
  g_signal_emit_by_name (map, "expert-activated", 37);
  g_assert_cmpint (got[0], ==, EXPERT_LAYER);
  g_assert_cmpint (got[1], ==, 37);

  gtk_window_destroy (GTK_WINDOW (window));
  ui_test_spin (0.2);
}

int
main (int argc, char **argv)
{
  if (!ui_test_init (&argc, &argv))
    return 0;
  g_test_add_func ("/ui/experts/page", test_experts_page);
  return g_test_run ();
}
