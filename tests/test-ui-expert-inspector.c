/* The expert inspector on a tiny run, trained a few steps and paused: the numbers it shows are
 * the engine's for the same expert (asked of the same worker between the same steps), head by
 * head; the ablation shows the engine's losses; an inspector closed while its answer is on the
 * way is never called back; and a layer without experts says so. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expert-inspector.h"
#include "test-ui-util.h"

#define TRAINED_STEPS 5

static PeerSession *session;

static GBytes *
word_text (void)
{
  static const char *words[] = { "the ", "of ", "and ", "to ", "a ", "in ", "was ", "her ",
                                 "she ", "not ", "be ", "that ", "Anne ", "Wentworth ",
                                 "said, ", "Lady Russell. ", "had ", "would ", "é ", "\n" };
  GString *text = g_string_new (NULL);
  guint32 state = 2407;
  while (text->len < 40000)
    {
      state = state * 1664525u + 1013904223u;
      g_string_append (text, words[(state >> 16) % G_N_ELEMENTS (words)]);
    }
  return g_string_free_to_bytes (text);
}

static gboolean
trained (gpointer data)
{
  return peer_session_get_step (session) >= TRAINED_STEPS;
}

/* ---- the engine's answer, asked of the worker ------------------------------------------------- */

typedef struct {
  expert_inspect_settings settings;
  gboolean ablate;
} EngineRequest;

typedef struct {
  expert_inspection details;
  expert_ablation ablation;
  int busiest; /* the expert chosen most often, for busiest_expert () */
} EngineAnswer;

static void
engine_answer_free (gpointer data)
{
  EngineAnswer *answer = data;
  expert_inspection_free (&answer->details);
  g_free (answer);
}

static gpointer
run_engine (const PeerInspectContext *context, gpointer data, GError **error)
{
  EngineRequest *request = data;
  EngineAnswer *answer = g_new0 (EngineAnswer, 1);
  peer_error err = { { 0 } };
  gboolean ok = request->ablate
                    ? expert_ablate (context->model, context->data, request->settings.layer,
                                     request->settings.expert, request->settings.windows,
                                     &answer->ablation, context->pool, &err)
                    : expert_inspect (context->model, context->data, &request->settings,
                                      &answer->details, context->pool, &err);
  if (!ok)
    g_error ("the engine refused: %s", err.message);
  return answer;
}

/* The busiest expert of the layer over the inspector's windows, by inspecting each in turn. */
static gpointer
find_busiest (const PeerInspectContext *context, gpointer data, GError **error)
{
  EngineRequest *request = data;
  EngineAnswer *answer = g_new0 (EngineAnswer, 1);
  uint64_t best = 0;
  int n_experts = context->model->cfg.layers[request->settings.layer].peer.n_experts;
  for (int e = 0; e < n_experts; e++)
    {
      expert_inspect_settings s = request->settings;
      s.expert = e;
      expert_inspection in;
      peer_error err = { { 0 } };
      if (!expert_inspect (context->model, context->data, &s, &in, context->pool, &err))
        g_error ("the engine refused: %s", err.message);
      if (in.count > best)
        {
          best = in.count;
          answer->busiest = e;
        }
      expert_inspection_free (&in);
    }
  g_assert_cmpuint (best, >, 0);
  return answer;
}

static void
on_engine_answer (PeerSession *s, gpointer result, const GError *error, gpointer user_data)
{
  g_assert_no_error ((GError *) error);
  *(EngineAnswer **) user_data = result;
}

static gboolean
answered (gpointer data)
{
  return *(EngineAnswer **) data != NULL;
}

static EngineAnswer *
ask_engine (PeerInspectFunc func, const expert_inspect_settings *settings, gboolean ablate)
{
  EngineRequest *request = g_new0 (EngineRequest, 1);
  request->settings = *settings;
  request->ablate = ablate;
  EngineAnswer *answer = NULL;
  peer_session_inspect (session, func, request, g_free, engine_answer_free, NULL,
                        on_engine_answer, &answer);
  g_assert_true (ui_test_wait (answered, &answer, 60.0));
  return answer;
}

/* The inspector's request for the details, as it makes it. */
static expert_inspect_settings
inspector_settings (PeerExpertInspector *inspector, int layer, int expert, int head)
{
  const PeerExpertInspection *shown = peer_expert_inspector_get_inspection (inspector);
  expert_inspect_settings s = shown->details.settings;
  g_assert_cmpint (s.layer, ==, layer);
  g_assert_cmpint (s.expert, ==, expert);
  g_assert_cmpint (s.head, ==, head);
  return s;
}

/* ---- the widget ------------------------------------------------------------------------------- */

static GtkWidget *
find (GtkWidget *root, const char *name)
{
  GtkWidget *widget = ui_test_find_widget (root, name);
  if (!widget)
    g_error ("the inspector has no widget named %s", name);
  return widget;
}

static const char *
label_text (GtkWidget *root, const char *name)
{
  return gtk_label_get_label (GTK_LABEL (find (root, name)));
}

/* A shown number against the engine's: equal to the digits shown. */
static void
assert_shown (GtkWidget *root, const char *name, double engine, int decimals)
{
  const char *text = label_text (root, name);
  g_autofree char *digits = g_strdup (text);
  char *out = digits;
  for (const char *in = text; *in; in++)
    if (*in != ',')
      *out++ = *in;
  *out = '\0';
  char *end = NULL;
  double shown = g_ascii_strtod (digits, &end);
  if (end == digits || *end != '\0')
    g_error ("%s shows “%s”, not a number", name, text);
  double tolerance = 0.5 * pow (10.0, -decimals) + 1e-9;
  if (fabs (shown - engine) > tolerance)
    g_error ("%s shows %s; the engine's value is %.9g", name, text, engine);
}

typedef struct {
  PeerExpertInspector *inspector;
  const PeerExpertInspection *before;
} Awaited;

static gboolean
new_inspection (gpointer data)
{
  Awaited *awaited = data;
  const PeerExpertInspection *now = peer_expert_inspector_get_inspection (awaited->inspector);
  return now && now != awaited->before && !peer_expert_inspector_is_busy (awaited->inspector);
}

static void
wait_for_inspection (PeerExpertInspector *inspector, const PeerExpertInspection *before)
{
  Awaited awaited = { inspector, before };
  g_assert_true (ui_test_wait (new_inspection, &awaited, 60.0));
  ui_test_spin (0.05);
}

static gboolean
ablated (gpointer inspector)
{
  return peer_expert_inspector_get_ablation (inspector) != NULL;
}

static void
assert_details_match (PeerExpertInspector *inspector, const expert_inspection *engine)
{
  GtkWidget *root = GTK_WIDGET (inspector);
  const expert_inspection *shown = &peer_expert_inspector_get_inspection (inspector)->details;
  /* The same numbers, bit for bit: the same function on the same weights and windows. */
  g_assert_cmpuint (shown->count, ==, engine->count);
  g_assert_cmpint (memcmp (&shown->gate_mass, &engine->gate_mass, sizeof (double)), ==, 0);
  g_assert_cmpint (memcmp (&shown->u_norm, &engine->u_norm, sizeof (double)), ==, 0);
  g_assert_cmpint (memcmp (&shown->v_norm, &engine->v_norm, sizeof (double)), ==, 0);
  g_assert_cmpint (shown->n_contexts, ==, engine->n_contexts);
  for (int i = 0; i < engine->n_contexts; i++)
    g_assert_cmpuint (shown->contexts[i].offset, ==, engine->contexts[i].offset);
  for (int b = 0; b < engine->activation.bins; b++)
    g_assert_cmpuint (shown->activation.counts[b], ==, engine->activation.counts[b]);
  g_assert_cmpint (memcmp (shown->logit_effect, engine->logit_effect,
                           (size_t) engine->vocab * sizeof (float)),
                   ==, 0);

  /* And on screen, to the digits shown. */
  assert_shown (root, "u-norm", engine->u_norm, 3);
  assert_shown (root, "v-norm", engine->v_norm, 3);
  assert_shown (root, "selections", (double) engine->count, 0);
  assert_shown (root, "gate-mass", engine->gate_mass, 3);
  assert_shown (root, "mean-activation", engine->activation_sum / (double) engine->count, 3);
  int rows = 0;
  for (GtkWidget *row = gtk_widget_get_first_child (find (root, "contexts")); row;
       row = gtk_widget_get_next_sibling (row))
    rows++;
  g_assert_cmpint (rows, ==, engine->n_contexts);
  g_assert_cmpint (engine->n_contexts, >, 0);
}

/* ---- tests ------------------------------------------------------------------------------------ */

static GtkWindow *
window_with (GtkWidget *inspector)
{
  GtkWidget *window = gtk_window_new ();
  gtk_window_set_default_size (GTK_WINDOW (window), 1000, 900);
  gtk_window_set_child (GTK_WINDOW (window), inspector);
  gtk_window_present (GTK_WINDOW (window));
  return GTK_WINDOW (window);
}

static void
test_numbers_are_the_engines (void)
{
  const int layer = 1;
  expert_inspect_settings search;
  expert_inspect_settings_default (&search, layer, 0);
  search.windows = 64;
  EngineAnswer *busiest = ask_engine (find_busiest, &search, FALSE);
  int expert = busiest->busiest;
  engine_answer_free (busiest);

  GtkWidget *widget = peer_expert_inspector_new (session, layer, expert);
  PeerExpertInspector *inspector = PEER_EXPERT_INSPECTOR (widget);
  GtkWindow *window = window_with (widget);
  wait_for_inspection (inspector, NULL);
  const PeerExpertInspection *shown = peer_expert_inspector_get_inspection (inspector);
  g_assert_cmpint (shown->step, ==, TRAINED_STEPS);

  expert_inspect_settings s = inspector_settings (inspector, layer, expert, -1);
  EngineAnswer *engine = ask_engine (run_engine, &s, FALSE);
  assert_details_match (inspector, &engine->details);
  engine_answer_free (engine);

  /* One head: the counts of that head alone. */
  peer_expert_inspector_set_head (inspector, 1);
  wait_for_inspection (inspector, shown);
  s = inspector_settings (inspector, layer, expert, 1);
  engine = ask_engine (run_engine, &s, FALSE);
  g_assert_cmpuint (engine->details.count, ==, engine->details.head_count[1]);
  g_assert_cmpuint (peer_expert_inspector_get_inspection (inspector)->details.count, ==,
                    engine->details.count);
  assert_shown (widget, "selections", (double) engine->details.count, 0);
  if (engine->details.count > 0)
    assert_details_match (inspector, &engine->details);
  engine_answer_free (engine);

  /* The ablation: the engine's losses, shown to five decimals. */
  peer_expert_inspector_ablate (inspector);
  g_assert_true (ui_test_wait (ablated, inspector, 60.0));
  ui_test_spin (0.05);
  engine = ask_engine (run_engine, &s, TRUE);
  const expert_ablation *ablation = &peer_expert_inspector_get_ablation (inspector)->ablation;
  g_assert_cmpint (memcmp (&ablation->loss, &engine->ablation.loss, sizeof (double)), ==, 0);
  g_assert_cmpint (memcmp (&ablation->ablated_loss, &engine->ablation.ablated_loss,
                           sizeof (double)),
                   ==, 0);
  g_assert_true (engine->ablation.loss != engine->ablation.ablated_loss);
  const char *text = label_text (widget, "ablation");
  double on = 0.0, off = 0.0;
  if (sscanf (text, "With the expert %lf nats, without it %lf nats", &on, &off) != 2)
    g_error ("the ablation reads “%s”", text);
  g_assert_cmpfloat (fabs (on - engine->ablation.loss), <=, 0.5e-5 + 1e-12);
  g_assert_cmpfloat (fabs (off - engine->ablation.ablated_loss), <=, 0.5e-5 + 1e-12);
  engine_answer_free (engine);

  /* A usage history draws; the plot keeps its own copy. */
  double steps[] = { 1, 2, 3 }, counts[] = { 4, 0, 2 };
  peer_expert_inspector_set_usage_history (inspector, steps, counts, 3);
  steps[0] = counts[0] = NAN;
  ui_test_spin (0.1);
  gtk_window_destroy (window);
}

static gboolean
session_idle (gpointer data)
{
  gboolean *done = data;
  return *done;
}

static void
on_marker (PeerSession *s, gpointer result, const GError *error, gpointer user_data)
{
  *(gboolean *) user_data = TRUE;
  engine_answer_free (result);
}

/* Closed before its answer arrives: the answer is dropped, the widget never touched again. */
static void
test_closed_while_busy (void)
{
  PeerExpertInspector *inspector = peer_expert_inspector_present (session, 1, 3, NULL);
  g_assert_true (peer_expert_inspector_is_busy (inspector));
  gtk_window_destroy (GTK_WINDOW (gtk_widget_get_root (GTK_WIDGET (inspector))));
  /* Commands run in order: once a later one is answered, the inspector's has been dealt with. */
  EngineRequest *request = g_new0 (EngineRequest, 1);
  expert_inspect_settings_default (&request->settings, 1, 0);
  gboolean done = FALSE;
  peer_session_inspect (session, run_engine, request, g_free, engine_answer_free, NULL, on_marker,
                        &done);
  g_assert_true (ui_test_wait (session_idle, &done, 60.0));
  ui_test_spin (0.1);
}

static void
test_layer_without_experts (void)
{
  GtkWidget *widget = peer_expert_inspector_new (session, 0, 0);
  GtkWindow *window = window_with (widget);
  ui_test_spin (0.1);
  g_assert_null (peer_expert_inspector_get_inspection (PEER_EXPERT_INSPECTOR (widget)));
  g_assert_false (peer_expert_inspector_is_busy (PEER_EXPERT_INSPECTOR (widget)));
  GtkWidget *stack = gtk_widget_get_first_child (widget);
  g_assert_cmpstr (gtk_stack_get_visible_child_name (GTK_STACK (stack)), ==, "failed");
  gtk_window_destroy (window);
}

int
main (int argc, char **argv)
{
  if (!ui_test_init (&argc, &argv))
    return 0;
  ui_test_application ();

  model_config cfg;
  train_settings settings;
  ui_test_tiny_run (&cfg, &settings);
  g_autoptr (GBytes) text = word_text ();
  g_autoptr (GError) error = NULL;
  session = peer_session_new ("tiny", &cfg, &settings, text, 1, &error);
  g_assert_no_error (error);
  for (int i = 0; i < TRAINED_STEPS; i++)
    peer_session_step_once (session);
  if (!ui_test_wait (trained, NULL, 60.0))
    g_error ("the tiny run did not train %d steps", TRAINED_STEPS);

  g_test_add_func ("/expert-inspector/numbers-are-the-engines", test_numbers_are_the_engines);
  g_test_add_func ("/expert-inspector/closed-while-busy", test_closed_while_busy);
  g_test_add_func ("/expert-inspector/layer-without-experts", test_layer_without_experts);
  int status = g_test_run ();
  peer_session_shutdown (session);
  g_object_unref (session);
  return status;
}
