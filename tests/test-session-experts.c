/* The session's expert statistics, fetched from the main loop while the run trains on its
 * worker: every grid adds up to the selections of the steps in it, grids keep coming while the
 * run trains, an expert's series adds up to its selections in the since-start window, a run that
 * has not trained has empty live and since-start windows but a validation window measured on
 * demand, and bad requests fail with a message. Runs without a display; the thread sanitizer
 * build runs it too (suite 'bridge'). */
#include <glib.h>
#include <math.h>
#include <string.h>

#include "expert-grid.h"
#include "session.h"

#define LAYER 1
#define HEADS 2
#define TOPK 2
#define TOKENS_PER_STEP (2 * 16)

static const char *tiny_run =
    "{\"model\": {\"vocab_size\": 256, \"context\": 16, \"d_model\": 16, \"n_layers\": 2, "
    "\"n_heads\": 2, \"layers\": [{\"ffn\": \"dense\", \"d_ff\": 32}, {\"ffn\": \"peer\", "
    "\"n_experts\": 64, \"heads\": 2, \"topk\": 2, \"d_key\": 8, \"shared_keys\": false, "
    "\"query_norm\": \"batch\", \"activation\": \"gelu\"}]}, "
    "\"training\": {\"batch_size\": 2, \"seq_len\": 16, \"steps\": 1000000, "
    "\"eval_interval\": 0, \"eval_windows\": 2}}";

typedef struct {
    gpointer result;
    GError *error;
    gboolean answered;
} Answer;

static void on_answer(PeerSession *session, gpointer result, const GError *error, gpointer data)
{
    Answer *answer = data;
    answer->result = result;
    answer->error = error ? g_error_copy(error) : NULL;
    answer->answered = TRUE;
}

static void wait_answer(Answer *answer)
{
    gint64 deadline = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;
    while (!answer->answered) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_main_context_iteration(NULL, FALSE);
        g_usleep(500);
    }
}

static PeerExpertGrid *fetch_grid(PeerSession *session, expert_window window, int head,
                                  gboolean measure)
{
    Answer answer = {0};
    peer_expert_grid_fetch(session, LAYER, window, head, measure, NULL, on_answer, &answer);
    wait_answer(&answer);
    g_assert_no_error(answer.error);
    return answer.result;
}

static double sum(const float *values, int n)
{
    double total = 0.0;
    for (int i = 0; i < n; i++)
        total += values[i];
    return total;
}

static PeerSession *new_session(GBytes **text)
{
    model_config cfg;
    train_settings settings;
    peer_error err;
    g_assert_true(run_config_from_json(&cfg, &settings, tiny_run, &err));
    GString *words = g_string_new(NULL);
    for (int i = 0; i < 400; i++)
        g_string_append(words, "It is a truth universally acknowledged. ");
    *text = g_string_free_to_bytes(words);
    g_autoptr(GError) error = NULL;
    PeerSession *session = peer_session_new("tiny", &cfg, &settings, *text, 2, &error);
    g_assert_no_error(error);
    return session;
}

static void test_while_training(void)
{
    GBytes *text;
    PeerSession *session = new_session(&text);

    /* Before any step: empty windows; the validation text measured when asked. */
    g_autoptr(PeerExpertGrid) empty = fetch_grid(session, EXPERT_WINDOW_SINCE_START, -1, FALSE);
    g_assert_cmpint(empty->side, ==, 8);
    g_assert_cmpint(empty->heads, ==, HEADS);
    g_assert_cmpfloat(empty->tokens, ==, 0.0);
    g_assert_cmpfloat(sum(empty->count, 64), ==, 0.0);
    g_assert_cmpfloat(empty->usage[0].usage, ==, 0.0);
    g_autoptr(PeerExpertGrid) validation =
        fetch_grid(session, EXPERT_WINDOW_VALIDATION, -1, FALSE);
    g_assert_cmpint(validation->measured_step, ==, 0);
    g_assert_cmpfloat(validation->tokens, ==, 2.0 * 16);
    g_assert_cmpfloat(sum(validation->count, 64), ==, 2.0 * 16 * HEADS * TOPK);

    /* While it trains: every since-start grid holds every selection of its steps. */
    peer_session_start(session);
    long last_step = -1;
    int distinct_steps = 0;
    for (int i = 0; i < 12; i++) {
        g_autoptr(PeerExpertGrid) grid = fetch_grid(session, EXPERT_WINDOW_SINCE_START, -1, FALSE);
        g_assert_cmpfloat(grid->tokens, ==, (double)grid->step * TOKENS_PER_STEP);
        g_assert_cmpfloat(sum(grid->count, 64), ==, grid->tokens * HEADS * TOPK);
        /* All heads' gate mass is a token's whole gate per head. */
        g_assert_cmpfloat(fabs(sum(grid->gate_mass, 64) - grid->tokens * HEADS), <=,
                          1e-3 * grid->tokens);
        g_assert_cmpint(grid->step, >=, last_step);
        distinct_steps += grid->step != last_step;
        last_step = grid->step;
        g_autoptr(PeerExpertGrid) head = fetch_grid(session, EXPERT_WINDOW_LIVE, 1, FALSE);
        g_assert_cmpint(head->head, ==, 1);
        g_assert_cmpfloat(head->tokens, >, 0.0);
        g_usleep(20000);
    }
    g_assert_cmpint(distinct_steps, >, 1);

    /* Paused: an expert's history adds up to its selections since the start. */
    peer_session_pause(session);
    gint64 deadline = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;
    while (peer_session_get_state(session) != PEER_SESSION_PAUSED) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_main_context_iteration(NULL, FALSE);
        g_usleep(1000);
    }
    g_autoptr(PeerExpertGrid) grid = fetch_grid(session, EXPERT_WINDOW_SINCE_START, -1, FALSE);
    int checked = 0;
    for (int expert = 0; expert < 64; expert += 7) {
        Answer answer = {0};
        peer_expert_series_fetch(session, LAYER, expert, NULL, on_answer, &answer);
        wait_answer(&answer);
        g_assert_no_error(answer.error);
        g_autoptr(PeerExpertSeries) series = answer.result;
        g_assert_cmpint(series->expert, ==, expert);
        g_assert_cmpint(series->n, >=, 1);
        g_assert_cmpint(series->first_step[0], ==, 1);
        g_assert_cmpint(series->end_step[series->n - 1], ==, grid->step + 1);
        guint64 total = 0;
        for (int i = 0; i < series->n; i++)
            total += series->count[i];
        g_assert_cmpfloat((double)total, ==, grid->count[expert]);
        checked += total > 0;
    }
    g_assert_cmpint(checked, >, 0);

    /* Bad requests say what is wrong. */
    Answer answer = {0};
    peer_expert_grid_fetch(session, 0, EXPERT_WINDOW_LIVE, -1, FALSE, NULL, on_answer, &answer);
    wait_answer(&answer);
    g_assert_nonnull(answer.error);
    g_assert_nonnull(strstr(answer.error->message, "has no experts"));
    g_clear_error(&answer.error);
    answer = (Answer){0};
    peer_expert_series_fetch(session, LAYER, 64, NULL, on_answer, &answer);
    wait_answer(&answer);
    g_assert_nonnull(answer.error);
    g_assert_nonnull(strstr(answer.error->message, "0 to 63"));
    g_clear_error(&answer.error);

    peer_session_shutdown(session);
    g_object_unref(session);
    g_bytes_unref(text);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/session-experts/while-training", test_while_training);
    return g_test_run();
}
