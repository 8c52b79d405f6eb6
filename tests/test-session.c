/* The session: a run trained on its own worker thread, driven from the main loop as the window
 * drives it. Runs without a display; the thread sanitizer build runs it too (suite 'bridge'). */
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>

#include "checkpoint.h"
#include "session.h"

static const char *tiny_run =
    "{\"model\": {\"vocab_size\": 256, \"context\": 16, \"d_model\": 16, \"n_layers\": 2, "
    "\"n_heads\": 2, \"layers\": [{\"ffn\": \"dense\", \"d_ff\": 32}, {\"ffn\": \"peer\", "
    "\"n_experts\": 64, \"heads\": 2, \"topk\": 2, \"d_key\": 8, \"shared_keys\": false, "
    "\"query_norm\": \"batch\", \"activation\": \"gelu\"}]}, "
    "\"training\": {\"batch_size\": 2, \"seq_len\": 16, \"steps\": 1000000, "
    "\"eval_interval\": 0, \"eval_windows\": 2}}";

typedef struct {
    PeerSession *session;
    GBytes *text;
    int snapshots;
    char *last_message;
} Fixture;

static GBytes *make_text(void)
{
    GString *text = g_string_new(NULL);
    for (int i = 0; i < 400; i++)
        g_string_append(text, "It is a truth universally acknowledged. ");
    return g_string_free_to_bytes(text);
}

static void on_snapshot(PeerSession *session, PeerSnapshot *snapshot, gpointer data)
{
    Fixture *fixture = data;
    fixture->snapshots++;
    if (snapshot->message) {
        g_free(fixture->last_message);
        fixture->last_message = g_strdup(snapshot->message);
    }
}

static void fixture_set_up(Fixture *fixture, gconstpointer data)
{
    model_config cfg;
    train_settings settings;
    peer_error err;
    g_assert_true(run_config_from_json(&cfg, &settings, tiny_run, &err));
    fixture->text = make_text();
    g_autoptr(GError) error = NULL;
    fixture->session = peer_session_new("tiny", &cfg, &settings, fixture->text, 2, &error);
    g_assert_no_error(error);
    g_signal_connect(fixture->session, "snapshot", G_CALLBACK(on_snapshot), fixture);
}

static void fixture_tear_down(Fixture *fixture, gconstpointer data)
{
    peer_session_shutdown(fixture->session);
    g_object_unref(fixture->session);
    g_bytes_unref(fixture->text);
    g_free(fixture->last_message);
}

typedef gboolean (*Condition)(Fixture *fixture);

/* Iterates the main loop until the condition holds; fails after 60 s. */
static void wait_for(Fixture *fixture, Condition condition)
{
    gint64 deadline = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;
    while (!condition(fixture)) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_main_context_iteration(NULL, FALSE);
        g_usleep(1000);
    }
}

static gboolean five_points(Fixture *f)
{
    return peer_session_get_loss_points(f->session)->len >= 5;
}

static gboolean is_paused(Fixture *f)
{
    return peer_session_get_state(f->session) == PEER_SESSION_PAUSED;
}

static gboolean is_running(Fixture *f)
{
    return peer_session_get_state(f->session) == PEER_SESSION_RUNNING;
}

static gboolean is_stopped(Fixture *f)
{
    return peer_session_get_state(f->session) == PEER_SESSION_STOPPED;
}

static guint stepped_to;
static gboolean one_more_point(Fixture *f)
{
    return peer_session_get_loss_points(f->session)->len == stepped_to;
}

static gboolean saved(Fixture *f)
{
    return !peer_session_has_unsaved_work(f->session);
}

/* Drain what is in flight, then check nothing more arrives. */
static guint settle(Fixture *fixture)
{
    for (int i = 0; i < 200; i++) {
        while (g_main_context_iteration(NULL, FALSE))
            ;
        g_usleep(1000);
    }
    return peer_session_get_loss_points(fixture->session)->len;
}

static void test_lifecycle(Fixture *fixture, gconstpointer data)
{
    g_assert_cmpint(peer_session_get_state(fixture->session), ==, PEER_SESSION_READY);
    peer_session_start(fixture->session);
    wait_for(fixture, is_running);
    wait_for(fixture, five_points);

    /* A pause takes effect within one step, and then no step follows. */
    peer_session_pause(fixture->session);
    wait_for(fixture, is_paused);
    guint paused_at = settle(fixture);
    g_assert_cmpuint(settle(fixture), ==, paused_at);

    /* One step, exactly. */
    stepped_to = paused_at + 1;
    peer_session_step_once(fixture->session);
    wait_for(fixture, one_more_point);
    g_assert_cmpuint(settle(fixture), ==, paused_at + 1);

    /* Points are consecutive steps with finite losses. */
    GArray *points = peer_session_get_loss_points(fixture->session);
    for (guint i = 0; i < points->len; i++) {
        PeerLossPoint *p = &g_array_index(points, PeerLossPoint, i);
        g_assert_cmpint(p->step, ==, (long)i + 1);
        g_assert_true(p->loss > 0.0 && p->loss < 10.0);
    }

    peer_session_start(fixture->session);
    wait_for(fixture, is_running);
    peer_session_stop(fixture->session);
    wait_for(fixture, is_stopped);
    guint stopped_at = settle(fixture);
    g_assert_cmpuint(settle(fixture), ==, stopped_at);
    g_assert_cmpuint(stopped_at, >, paused_at + 1);

    /* A stopped run does not start again. */
    peer_session_start(fixture->session);
    g_assert_cmpuint(settle(fixture), ==, stopped_at);
    g_assert_cmpint(peer_session_get_state(fixture->session), ==, PEER_SESSION_STOPPED);
}

/* A save between steps writes a checkpoint pair that loads, and clears the unsaved mark. */
static void test_save(Fixture *fixture, gconstpointer data)
{
    g_autofree char *dir = g_dir_make_tmp("test-session-XXXXXX", NULL);
    g_autofree char *path = g_build_filename(dir, "run.safetensors", NULL);
    g_autofree char *trainer_path = checkpoint_trainer_path(path);
    peer_session_start(fixture->session);
    wait_for(fixture, five_points);
    g_assert_true(peer_session_has_unsaved_work(fixture->session));
    peer_session_save(fixture->session, path);
    wait_for(fixture, saved);
    g_assert_nonnull(strstr(fixture->last_message, path));
    peer_session_stop(fixture->session);
    wait_for(fixture, is_stopped);

    peer_error err;
    peer_model *model = checkpoint_load_model(path, 1, 0, &err);
    g_assert_nonnull(model);
    peer_model_free(model);

    /* The saved pair opens as a session at the saved step. */
    g_autoptr(GError) error = NULL;
    PeerSession *reopened =
        peer_session_new_from_checkpoint(path, fixture->text, 1, &error);
    g_assert_no_error(error);
    g_assert_cmpint(peer_session_get_step(reopened), >=, 5);
    peer_session_shutdown(reopened);
    g_object_unref(reopened);

    g_unlink(trainer_path);
    g_unlink(path);
    g_rmdir(dir);
}

/* What the inspection test's function saw on the worker. */
typedef struct {
    long step;
    float first_weight;
} Seen;

static gpointer inspect_first_weight(const PeerInspectContext *context, gpointer data,
                                     GError **error)
{
    if (GPOINTER_TO_INT(data) < 0) {
        g_set_error_literal(error, PEER_SESSION_ERROR, 2, "asked to fail");
        return NULL;
    }
    Seen *seen = g_new(Seen, 1);
    seen->step = context->step;
    seen->first_weight = context->model->params_memory[0];
    return seen;
}

typedef struct {
    int answers;
    Seen seen;
    GError *error;
} Answers;

static void on_inspected(PeerSession *session, gpointer result, const GError *error,
                         gpointer user_data)
{
    Answers *answers = user_data;
    answers->answers++;
    g_clear_error(&answers->error);
    if (error)
        answers->error = g_error_copy(error);
    if (result) {
        answers->seen = *(Seen *) result;
        g_free(result);
    }
}

static Answers *waiting_answers;
static int waiting_count;
static gboolean answered(Fixture *f)
{
    return waiting_answers->answers >= waiting_count;
}

/* An inspection runs on the worker between steps while the run trains, sees the latest weights
 * and step, reports an error as an error, and a cancelled one never answers. */
static void test_inspect(Fixture *fixture, gconstpointer data)
{
    Answers answers = { 0 };
    waiting_answers = &answers;
    peer_session_start(fixture->session);
    wait_for(fixture, five_points);

    waiting_count = 1;
    peer_session_inspect(fixture->session, inspect_first_weight, GINT_TO_POINTER(1), NULL, g_free,
                         NULL, on_inspected, &answers);
    wait_for(fixture, answered);
    g_assert_no_error(answers.error);
    g_assert_cmpint(answers.seen.step, >=, 5);

    waiting_count = 2;
    peer_session_inspect(fixture->session, inspect_first_weight, GINT_TO_POINTER(-1), NULL,
                         g_free, NULL, on_inspected, &answers);
    wait_for(fixture, answered);
    g_assert_error(answers.error, PEER_SESSION_ERROR, 2);

    /* Paused, the inspection sees the model at the step it paused at. */
    peer_session_pause(fixture->session);
    wait_for(fixture, is_paused);
    settle(fixture);
    long paused_step = peer_session_get_step(fixture->session);
    waiting_count = 3;
    peer_session_inspect(fixture->session, inspect_first_weight, GINT_TO_POINTER(1), NULL, g_free,
                         NULL, on_inspected, &answers);
    wait_for(fixture, answered);
    g_assert_no_error(answers.error);
    g_assert_cmpint(answers.seen.step, ==, paused_step);

    GCancellable *cancellable = g_cancellable_new();
    peer_session_inspect(fixture->session, inspect_first_weight, GINT_TO_POINTER(1), NULL, g_free,
                         cancellable, on_inspected, &answers);
    g_cancellable_cancel(cancellable);
    g_object_unref(cancellable);
    settle(fixture);
    g_assert_cmpint(answers.answers, ==, 3);
    g_clear_error(&answers.error);
}

/* A corrupt checkpoint is refused with the loader's message, and nothing starts. */
static void test_bad_checkpoint(void)
{
    g_autofree char *dir = g_dir_make_tmp("test-session-XXXXXX", NULL);
    g_autofree char *path = g_build_filename(dir, "bad.safetensors", NULL);
    g_assert_true(g_file_set_contents(path, "not a checkpoint", -1, NULL));
    GBytes *text = make_text();
    g_autoptr(GError) error = NULL;
    PeerSession *session = peer_session_new_from_checkpoint(path, text, 1, &error);
    g_assert_null(session);
    g_assert_error(error, PEER_SESSION_ERROR, 1);
    g_assert_nonnull(strstr(error->message, path));
    g_bytes_unref(text);
    g_unlink(path);
    g_rmdir(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add("/session/lifecycle", Fixture, NULL, fixture_set_up, test_lifecycle,
               fixture_tear_down);
    g_test_add("/session/save", Fixture, NULL, fixture_set_up, test_save, fixture_tear_down);
    g_test_add("/session/inspect", Fixture, NULL, fixture_set_up, test_inspect,
               fixture_tear_down);
    g_test_add_func("/session/bad-checkpoint", test_bad_checkpoint);
    return g_test_run();
}
