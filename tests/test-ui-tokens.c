/* The Tokens page in the workbench window, on a real display (Xvfb under meson test), with a tiny
 * run: shown, it reads its sample sentence; a typed text's tokens read as the display rules say;
 * the retrieval path it draws for a token is the engine's trace of that token, computed directly
 * on the run's worker; the arrow keys step through the tokens and each step announces the
 * token's chosen experts; a click on an expert in the path asks for its inspector; it plays; it
 * shows every head at once; and it reads while the run trains, with the weights of the step it
 * read at. Every wait has a limit that only guards against a hang. */
#include <math.h>
#include <string.h>

#include "retrieval-path.h"
#include "retrieval-trace.h"
#include "test-ui-util.h"
#include "token-strip.h"
#include "tokens-page.h"

static PeerWindow *window;
static PeerTokensPage *page;

typedef struct {
  int chosen;
  int chosen_layer;
  GArray *experts;
  int activated;
  int activated_layer;
  int activated_expert;
} Signals;

static Signals signals;

static void
on_experts_chosen (PeerTokensPage *self, int layer, GArray *experts, gpointer data)
{
  signals.chosen++;
  signals.chosen_layer = layer;
  g_array_set_size (signals.experts, 0);
  g_array_append_vals (signals.experts, experts->data, experts->len);
}

static void
on_expert_activated (PeerTokensPage *self, int layer, int expert, gpointer data)
{
  signals.activated++;
  signals.activated_layer = layer;
  signals.activated_expert = expert;
}

static PeerTokensPage *
find_page (GtkWidget *widget)
{
  if (PEER_IS_TOKENS_PAGE (widget))
    return PEER_TOKENS_PAGE (widget);
  for (GtkWidget *child = gtk_widget_get_first_child (widget); child;
       child = gtk_widget_get_next_sibling (child))
    {
      PeerTokensPage *found = find_page (child);
      if (found)
        return found;
    }
  return NULL;
}

static GtkWidget *
page_widget (const char *name)
{
  GtkWidget *widget = ui_test_find_widget (GTK_WIDGET (page), name);
  g_assert_nonnull (widget);
  return widget;
}

static gboolean
run_is_ready (gpointer run)
{
  return peer_run_get_state (run) == PEER_RUN_READY;
}

static gboolean
run_is_stopped (gpointer run)
{
  return peer_run_get_state (run) == PEER_RUN_STOPPED;
}

static gboolean
run_has_stepped (gpointer run)
{
  return peer_run_get_step (run) >= 3;
}

static gboolean
read_done (gpointer data)
{
  const PeerTokenAnalysis *before = data;
  const PeerTokenAnalysis *now = peer_tokens_page_get_analysis (page);
  return now && now != before && !peer_tokens_page_is_reading (page);
}

static const PeerTokenAnalysis *
read_and_wait (const char *text)
{
  const PeerTokenAnalysis *before = peer_tokens_page_get_analysis (page);
  peer_tokens_page_read_text (page, text);
  g_assert_true (peer_tokens_page_is_reading (page));
  g_assert_true (ui_test_wait (read_done, (gpointer) before, 60));
  return peer_tokens_page_get_analysis (page);
}

static gboolean
press_key (GtkWidget *widget, guint keyval)
{
  GListModel *controllers = gtk_widget_observe_controllers (widget);
  gboolean handled = FALSE;
  for (guint i = 0; i < g_list_model_get_n_items (controllers); i++)
    {
      g_autoptr (GtkEventController) controller = g_list_model_get_item (controllers, i);
      if (GTK_IS_EVENT_CONTROLLER_KEY (controller))
        g_signal_emit_by_name (controller, "key-pressed", keyval, 0, (GdkModifierType) 0,
                               &handled);
    }
  g_object_unref (controllers);
  return handled;
}

/* ---- the engine's trace, directly ------------------------------------------------------------ */

typedef struct {
  char *text;
  int token;
} TraceRequest;

static void
trace_request_free (gpointer data)
{
  TraceRequest *request = data;
  g_free (request->text);
  g_free (request);
}

static void
trace_free (gpointer data)
{
  peer_token_trace_free (data);
  g_free (data);
}

/* On the worker: the text's first window through the model, and the engine's trace of one token
 * in the PEER layer (block 1 of the tiny run). */
static gpointer
trace_directly (const PeerInspectContext *context, gpointer data, GError **error)
{
  TraceRequest *request = data;
  peer_model *model = context->model;
  int T = MIN ((int) strlen (request->text), model->seq), l = 1, D = model->cfg.d_model;
  peer_model_forward (model, (const uint8_t *) request->text, NULL, 1, T, PEER_MODE_EVAL,
                      context->pool);
  peer_layer_config cfg = model->cfg.layers[l].peer;
  cfg.d_model = D;
  int HK = cfg.heads * cfg.d_key;
  peer_token_trace *trace = g_new0 (peer_token_trace, 1);
  peer_error err;
  if (!peer_token_trace_compute (trace, &cfg, &model->params.blocks[l].peer,
                                 model->acts.ln2 + ((size_t) l * T + request->token) * D,
                                 model->acts.peer[l].query_normed + (size_t) request->token * HK,
                                 &err))
    g_error ("%s", err.message);
  return trace;
}

static void
on_trace (PeerSession *session, gpointer result, const GError *error, gpointer data)
{
  *(peer_token_trace **) data = result;
}

static gboolean
has_trace (gpointer data)
{
  return *(peer_token_trace **) data != NULL;
}

static peer_token_trace *
engine_trace (PeerRun *run, const char *text, int token)
{
  TraceRequest *request = g_new0 (TraceRequest, 1);
  request->text = g_strdup (text);
  request->token = token;
  peer_token_trace *trace = NULL;
  peer_session_inspect (peer_run_get_session (run), trace_directly, request, trace_request_free,
                        trace_free, NULL, on_trace, &trace);
  g_assert_true (ui_test_wait (has_trace, &trace, 60));
  return trace;
}

/* The path the page draws for its current token: every array of every head drawn is the
 * engine's. */
static void
assert_path_is_engine_trace (const peer_token_trace *engine)
{
  PeerRetrievalPath *path = PEER_RETRIEVAL_PATH (page_widget ("retrieval-path"));
  const RetrievalPathData *data = peer_retrieval_path_get_data (path);
  g_assert_nonnull (data);
  g_assert_cmpint (data->n, ==, engine->n);
  g_assert_cmpint (data->topk, ==, engine->topk);
  int n = engine->n, k = engine->topk;
  for (int h = 0; h < data->n_heads; h++)
    {
      const RetrievalPathHead *drawn = &data->heads[h];
      const peer_head_trace *e = &engine->head[drawn->head];
      size_t nf = n * sizeof (float), ki = k * sizeof (int32_t);
      g_assert_cmpmem (drawn->sub_score[0], nf, e->sub_score[0], nf);
      g_assert_cmpmem (drawn->sub_score[1], nf, e->sub_score[1], nf);
      g_assert_cmpmem (drawn->sub_top[0], ki, e->sub_top[0], ki);
      g_assert_cmpmem (drawn->sub_top[1], ki, e->sub_top[1], ki);
      g_assert_cmpmem (drawn->candidate, k * k * sizeof (float), e->candidate,
                       k * k * sizeof (float));
      g_assert_cmpmem (drawn->pick_i, k * sizeof (int32_t), e->pick_i, k * sizeof (int32_t));
      g_assert_cmpmem (drawn->pick_j, k * sizeof (int32_t), e->pick_j, k * sizeof (int32_t));
      g_assert_cmpmem (drawn->expert, k * sizeof (int32_t), e->expert, k * sizeof (int32_t));
      g_assert_cmpmem (drawn->row, k * sizeof (int32_t), e->row, k * sizeof (int32_t));
      g_assert_cmpmem (drawn->col, k * sizeof (int32_t), e->col, k * sizeof (int32_t));
      g_assert_cmpmem (drawn->gate, k * sizeof (float), e->gate, k * sizeof (float));
      g_assert_cmpmem (drawn->activation, k * sizeof (float), e->activation, k * sizeof (float));
      g_assert_cmpmem (drawn->contribution, k * sizeof (float), e->contribution,
                       k * sizeof (float));
    }
}

static gboolean
position_at_least_four (gpointer data)
{
  return peer_tokens_page_get_position (page) >= 4;
}

static void
test_tokens_page (void)
{
  PeerApplication *app = ui_test_application ();
  g_application_activate (G_APPLICATION (app));
  window = PEER_WINDOW (gtk_application_get_active_window (GTK_APPLICATION (app)));
  g_assert_nonnull (window);
  page = find_page (GTK_WIDGET (window));
  g_assert_nonnull (page);
  signals.experts = g_array_new (FALSE, FALSE, sizeof (gint32));
  g_signal_connect (page, "experts-chosen", G_CALLBACK (on_experts_chosen), NULL);
  g_signal_connect (page, "expert-activated", G_CALLBACK (on_expert_activated), NULL);

  model_config cfg;
  train_settings settings;
  ui_test_tiny_run (&cfg, &settings);
  PeerRun *run = peer_window_add_run (window, "tiny", &cfg, &settings, NULL, 1);
  g_assert_true (ui_test_wait (run_is_ready, run, 60));
  g_assert_true (peer_window_get_selected_run (window) == run);

  /* Shown, the page reads its sample sentence: longer than the tiny model's window. */
  g_action_group_activate_action (G_ACTION_GROUP (window), "page",
                                  g_variant_new_string ("tokens"));
  g_assert_true (ui_test_wait (read_done, NULL, 60));
  const PeerTokenAnalysis *a = peer_tokens_page_get_analysis (page);
  g_assert_cmpint (a->step, ==, 0);
  g_assert_cmpint (a->window, ==, 32);
  g_assert_cmpint (a->n_tokens, >, a->window);
  const char *status = gtk_label_get_label (GTK_LABEL (page_widget ("status-label")));
  g_assert_nonnull (strstr (status, "weights of step 0"));
  g_assert_nonnull (strstr (status, "pieces of 32 bytes"));
  g_assert_cmpint (peer_tokens_page_get_layer (page), ==, 1);
  g_assert_cmpint (peer_tokens_page_get_head (page), ==, 0);

  /* A typed text: an escape, a visible space, a three-byte character. */
  const char *text = "a \n\u20ac!";
  a = read_and_wait (text);
  g_assert_cmpint (a->n_tokens, ==, 7);
  PeerTokenStrip *strip = PEER_TOKEN_STRIP (page_widget ("token-strip"));
  const char *expected[] = { "a", "\u2423", "\\n", "\u20ac", "\u22ef", "\u22ef", "!" };
  g_assert_cmpuint (peer_token_strip_get_n_tokens (strip), ==, 7);
  for (guint i = 0; i < 7; i++)
    g_assert_cmpstr (peer_token_strip_get_label (strip, i), ==, expected[i]);
  g_assert_cmpint (peer_tokens_page_get_position (page), ==, 0);
  g_assert_cmpint (signals.chosen_layer, ==, 1);

  /* → steps; the token's chosen experts (2 heads × top 4) go out with it; the path drawn is the
   * engine's trace of that token. */
  int chosen = signals.chosen;
  g_assert_true (press_key (GTK_WIDGET (strip), GDK_KEY_Right));
  g_assert_true (press_key (GTK_WIDGET (strip), GDK_KEY_Right));
  g_assert_cmpint (peer_tokens_page_get_position (page), ==, 2);
  g_assert_cmpint (signals.chosen, ==, chosen + 2);
  g_assert_cmpstr (gtk_label_get_label (GTK_LABEL (page_widget ("position-label"))), ==, "3 / 7");
  g_assert_cmpstr (gtk_label_get_label (GTK_LABEL (page_widget ("token-label"))), ==, "\\n");
  peer_token_trace *engine = engine_trace (run, text, 2);
  g_assert_cmpuint (signals.experts->len, ==, 2 * 4);
  for (int j = 0; j < 2; j++)
    for (int r = 0; r < 4; r++)
      g_assert_cmpint (g_array_index (signals.experts, gint32, j * 4 + r), ==,
                       engine->head[j].expert[r]);
  assert_path_is_engine_trace (engine);
  PeerRetrievalPath *path = PEER_RETRIEVAL_PATH (page_widget ("retrieval-path"));
  g_assert_cmpint (peer_retrieval_path_get_data (path)->n_heads, ==, 1);

  /* End and Home. */
  g_assert_true (press_key (GTK_WIDGET (strip), GDK_KEY_End));
  g_assert_cmpint (peer_tokens_page_get_position (page), ==, 6);
  g_assert_true (press_key (GTK_WIDGET (strip), GDK_KEY_Home));
  g_assert_cmpint (peer_tokens_page_get_position (page), ==, 0);

  /* All heads at once, for the token at 4. */
  peer_tokens_page_set_head (page, -1);
  g_assert_cmpint (peer_tokens_page_get_head (page), ==, -1);
  peer_tokens_page_set_position (page, 4);
  trace_free (engine);
  engine = engine_trace (run, text, 4);
  g_assert_cmpint (peer_retrieval_path_get_data (path)->n_heads, ==, 2);
  assert_path_is_engine_trace (engine);

  /* A click on the second head's best expert asks for its inspector. */
  ui_test_spin (0.2);
  const RetrievalPathData *data = peer_retrieval_path_get_data (path);
  double row_x, row_y, cell_x, cell_y;
  int width = gtk_widget_get_width (GTK_WIDGET (path));
  int height = gtk_widget_get_height (GTK_WIDGET (path));
  g_assert_cmpint (width, >, 0);
  /* Every head at once is taller than the page: the path gets the height it asks for, and the
   * page scrolls it. */
  g_assert_cmpint (height, >=, (int) retrieval_path_height_for_width (
                                   data, peer_retrieval_path_get_style (path), width));
  g_assert_true (retrieval_path_expert_position (width, height, data,
                                                 peer_retrieval_path_get_style (path), 1, 0,
                                                 &row_x, &row_y, &cell_x, &cell_y));
  GListModel *controllers = gtk_widget_observe_controllers (GTK_WIDGET (path));
  for (guint i = 0; i < g_list_model_get_n_items (controllers); i++)
    {
      g_autoptr (GtkEventController) controller = g_list_model_get_item (controllers, i);
      if (GTK_IS_GESTURE_CLICK (controller))
        g_signal_emit_by_name (controller, "released", 1, row_x, row_y);
    }
  g_object_unref (controllers);
  g_assert_cmpint (signals.activated, ==, 1);
  g_assert_cmpint (signals.activated_layer, ==, 1);
  g_assert_cmpint (signals.activated_expert, ==, engine->head[1].expert[0]);
  trace_free (engine);

  /* Play at 60 tokens a second from the first token. */
  peer_tokens_page_set_position (page, 0);
  gtk_spin_button_set_value (GTK_SPIN_BUTTON (page_widget ("speed-spin")), 60);
  GtkToggleButton *play = GTK_TOGGLE_BUTTON (page_widget ("play-button"));
  gtk_toggle_button_set_active (play, TRUE);
  g_assert_true (ui_test_wait (position_at_least_four, NULL, 30));
  gtk_toggle_button_set_active (play, FALSE);
  int stopped_at = peer_tokens_page_get_position (page);
  ui_test_spin (0.2);
  g_assert_cmpint (peer_tokens_page_get_position (page), ==, stopped_at);

  /* While the run trains: read between two steps, with the weights of a later step. */
  g_action_group_activate_action (G_ACTION_GROUP (window), "start", NULL);
  g_assert_true (ui_test_wait (run_has_stepped, run, 60));
  a = read_and_wait ("It is a truth");
  g_assert_cmpint (a->step, >=, 3);
  g_autofree char *step = g_strdup_printf ("weights of step %ld", a->step);
  status = gtk_label_get_label (GTK_LABEL (page_widget ("status-label")));
  g_assert_nonnull (strstr (status, step));
  g_action_group_activate_action (G_ACTION_GROUP (window), "stop", NULL);
  g_assert_true (ui_test_wait (run_is_stopped, run, 30));

  g_array_unref (signals.experts);
}

int
main (int argc, char **argv)
{
  if (!ui_test_init (&argc, &argv))
    return 0;
  g_test_add_func ("/ui/tokens/page", test_tokens_page);
  return g_test_run ();
}
