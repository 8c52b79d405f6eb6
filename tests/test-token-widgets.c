/* The Tokens page's two widgets in a window. The token strip: ←, →, ↑, ↓, Home and End move the
 * current token and keep it in view, a click picks a token, each move is announced once, cells
 * carry their loss's colour and the current one its outline. The retrieval path: it keeps its
 * own copy of an engine trace, draws what the renderer draws, emphasises the expert under the
 * pointer and reports a click on one. Needs a display (meson runs it under xvfb-run when there
 * is none); exits 77, a skip, when none can be opened. */
#include <gtk/gtk.h>
#include <math.h>
#include <string.h>

#include "retrieval-path-data.h"
#include "retrieval-path.h"
#include "retrieval-trace.h"
#include "test-util.h"
#include "test-widget-util.h"
#include "token-strip.h"

/* Long enough for any display to map a window; never a measure of speed. */
#define MAP_TIMEOUT_US (20 * G_USEC_PER_SEC)
#define N_TOKENS 120

static void wait_mapped(GtkWidget *widget)
{
    gint64 deadline = g_get_monotonic_time() + MAP_TIMEOUT_US;
    while ((!gtk_widget_get_mapped(widget) || gtk_widget_get_width(widget) == 0) &&
           g_get_monotonic_time() < deadline)
        g_main_context_iteration(NULL, FALSE);
    g_assert_true(gtk_widget_get_mapped(widget));
}

/* Lets pending layout and drawing happen. */
static void settle(void)
{
    for (int i = 0; i < 20; i++)
        while (g_main_context_iteration(NULL, FALSE))
            ;
}

static gboolean press_key(GtkWidget *widget, guint keyval)
{
    GtkEventController *keys = widget_test_find_controller(widget, GTK_TYPE_EVENT_CONTROLLER_KEY);
    g_assert_nonnull(keys);
    gboolean handled = FALSE;
    g_signal_emit_by_name(keys, "key-pressed", keyval, 0, (GdkModifierType)0, &handled);
    return handled;
}

/* ---- the token strip ------------------------------------------------------------------------- */

typedef struct {
    int changes;
    int last;
} Moves;

static void on_position_changed(PeerTokenStrip *strip, int position, Moves *moves)
{
    moves->changes++;
    moves->last = position;
}

static void assert_in_view(PeerTokenStrip *strip, int index)
{
    graphene_rect_t cell;
    g_assert_true(peer_token_strip_get_cell_bounds(strip, index, &cell));
    int height = gtk_widget_get_height(GTK_WIDGET(strip));
    g_assert_cmpfloat(cell.origin.y, >=, 0);
    g_assert_cmpfloat(cell.origin.y + cell.size.height, <=, height);
}

static void test_strip(void)
{
    GtkWidget *window = gtk_window_new();
    gtk_window_set_default_size(GTK_WINDOW(window), 320, 130);
    GtkWidget *scroller = gtk_scrolled_window_new();
    gtk_scrolled_window_set_policy(GTK_SCROLLED_WINDOW(scroller), GTK_POLICY_NEVER,
                                   GTK_POLICY_AUTOMATIC);
    PeerTokenStrip *strip = PEER_TOKEN_STRIP(peer_token_strip_new());
    gtk_scrolled_window_set_child(GTK_SCROLLED_WINDOW(scroller), GTK_WIDGET(strip));
    gtk_window_set_child(GTK_WINDOW(window), scroller);

    const char *labels[N_TOKENS];
    PeerTokenCellStyle styles[N_TOKENS];
    float loss[N_TOKENS];
    const char *alphabet[] = {"a", "\u2423", "\\n", "é", "\u22ef", "\\xff", "Z"};
    for (int i = 0; i < N_TOKENS; i++) {
        labels[i] = alphabet[i % G_N_ELEMENTS(alphabet)];
        styles[i] = i % 7 == 2 || i % 7 == 5 ? PEER_TOKEN_CELL_ESCAPE
                    : i % 7 == 1 || i % 7 == 4 ? PEER_TOKEN_CELL_SYMBOL
                                               : PEER_TOKEN_CELL_TEXT;
        loss[i] = (float)(i % 6);
    }
    loss[N_TOKENS - 1] = NAN;
    Moves moves = {0};
    g_signal_connect(strip, "position-changed", G_CALLBACK(on_position_changed), &moves);
    g_assert_cmpint(peer_token_strip_get_position(strip), ==, -1);
    g_assert_false(press_key(GTK_WIDGET(strip), GDK_KEY_Right));
    peer_token_strip_set_tokens(strip, N_TOKENS, labels, styles, loss);
    g_assert_cmpint(moves.changes, ==, 1);
    g_assert_cmpint(peer_token_strip_get_position(strip), ==, 0);
    g_assert_cmpuint(peer_token_strip_get_n_tokens(strip), ==, N_TOKENS);
    g_assert_cmpstr(peer_token_strip_get_label(strip, 2), ==, "\\n");
    g_assert_null(peer_token_strip_get_label(strip, N_TOKENS));

    gtk_window_present(GTK_WINDOW(window));
    wait_mapped(GTK_WIDGET(strip));
    settle();
    GtkAdjustment *vadjustment = gtk_scrollable_get_vadjustment(GTK_SCROLLABLE(strip));
    g_assert_cmpfloat(gtk_adjustment_get_upper(vadjustment), >,
                      gtk_adjustment_get_page_size(vadjustment));

    /* → and ← step by one; ← at the first token stays. */
    g_assert_true(press_key(GTK_WIDGET(strip), GDK_KEY_Right));
    g_assert_cmpint(peer_token_strip_get_position(strip), ==, 1);
    g_assert_cmpint(moves.last, ==, 1);
    g_assert_true(press_key(GTK_WIDGET(strip), GDK_KEY_Right));
    g_assert_true(press_key(GTK_WIDGET(strip), GDK_KEY_Left));
    g_assert_cmpint(peer_token_strip_get_position(strip), ==, 1);
    press_key(GTK_WIDGET(strip), GDK_KEY_Left);
    int changes = moves.changes;
    press_key(GTK_WIDGET(strip), GDK_KEY_Left);
    g_assert_cmpint(peer_token_strip_get_position(strip), ==, 0);
    g_assert_cmpint(moves.changes, ==, changes);

    /* ↓ goes to the row below, under the current token, and ↑ back. */
    graphene_rect_t first, below;
    peer_token_strip_get_cell_bounds(strip, 0, &first);
    g_assert_true(press_key(GTK_WIDGET(strip), GDK_KEY_Down));
    int down = peer_token_strip_get_position(strip);
    g_assert_cmpint(down, >, 1);
    peer_token_strip_get_cell_bounds(strip, down, &below);
    g_assert_cmpfloat(below.origin.y, >, first.origin.y);
    g_assert_cmpfloat(fabs(below.origin.x - first.origin.x), <, below.size.width + 4);
    g_assert_true(press_key(GTK_WIDGET(strip), GDK_KEY_Up));
    g_assert_cmpint(peer_token_strip_get_position(strip), ==, 0);

    /* End scrolls the last token into view, Home the first. */
    g_assert_true(press_key(GTK_WIDGET(strip), GDK_KEY_End));
    g_assert_cmpint(peer_token_strip_get_position(strip), ==, N_TOKENS - 1);
    settle();
    g_assert_cmpfloat(gtk_adjustment_get_value(vadjustment), >, 0);
    assert_in_view(strip, N_TOKENS - 1);
    g_assert_true(press_key(GTK_WIDGET(strip), GDK_KEY_Home));
    settle();
    g_assert_cmpfloat(gtk_adjustment_get_value(vadjustment), ==, 0);
    assert_in_view(strip, 0);
    g_assert_false(press_key(GTK_WIDGET(strip), GDK_KEY_a));

    /* A click picks the token under it. */
    graphene_rect_t cell;
    g_assert_true(peer_token_strip_get_cell_bounds(strip, 9, &cell));
    GtkEventController *click =
        widget_test_find_controller(GTK_WIDGET(strip), GTK_TYPE_GESTURE_CLICK);
    g_signal_emit_by_name(click, "pressed", 1, (double)(cell.origin.x + cell.size.width / 2),
                          (double)(cell.origin.y + cell.size.height / 2));
    g_assert_cmpint(peer_token_strip_get_position(strip), ==, 9);

    /* Cells carry their loss's colour; the outline moves with the current token. */
    cairo_surface_t *at_nine = widget_test_draw(GTK_WIDGET(strip));
    for (int i = 6; i < 12; i += 5) {
        g_assert_true(peer_token_strip_get_cell_bounds(strip, i, &cell));
        GdkRGBA expected;
        peer_token_strip_loss_color(loss[i], &expected);
        int rgb[3];
        widget_test_pixel(at_nine, cell.origin.x + 1.5, cell.origin.y + cell.size.height / 2, rgb);
        g_assert_cmpint(abs(rgb[0] - (int)lround(expected.red * 255)), <=, 2);
        g_assert_cmpint(abs(rgb[1] - (int)lround(expected.green * 255)), <=, 2);
        g_assert_cmpint(abs(rgb[2] - (int)lround(expected.blue * 255)), <=, 2);
    }
    peer_token_strip_set_position(strip, 10);
    cairo_surface_t *at_ten = widget_test_draw(GTK_WIDGET(strip));
    g_assert_cmpint(widget_test_count_different_pixels(at_nine, at_ten), >, 20);
    peer_token_strip_set_position(strip, 9);
    cairo_surface_t *again = widget_test_draw(GTK_WIDGET(strip));
    g_assert_cmpint(widget_test_count_different_pixels(at_nine, again), ==, 0);
    cairo_surface_destroy(at_nine);
    cairo_surface_destroy(at_ten);
    cairo_surface_destroy(again);

    /* New tokens start from the first, and no tokens leave no current one. */
    peer_token_strip_set_tokens(strip, 3, labels, styles, loss);
    g_assert_cmpint(peer_token_strip_get_position(strip), ==, 0);
    peer_token_strip_set_position(strip, 50);
    g_assert_cmpint(peer_token_strip_get_position(strip), ==, 2);
    peer_token_strip_set_tokens(strip, 0, NULL, NULL, NULL);
    g_assert_cmpint(peer_token_strip_get_position(strip), ==, -1);
    gtk_window_destroy(GTK_WINDOW(window));
}

/* ---- the retrieval path ---------------------------------------------------------------------- */

typedef struct {
    int activations;
    int head, rank, expert;
} Clicks;

static void on_expert_activated(PeerRetrievalPath *path, int head, int rank, int expert,
                                Clicks *clicks)
{
    clicks->activations++;
    clicks->head = head;
    clicks->rank = rank;
    clicks->expert = expert;
}

static cairo_surface_t *draw_renderer(PeerRetrievalPath *path)
{
    int width = gtk_widget_get_width(GTK_WIDGET(path));
    int height = gtk_widget_get_height(GTK_WIDGET(path));
    cairo_surface_t *surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, width, height);
    cairo_t *cr = cairo_create(surface);
    retrieval_path_render(cr, width, height, peer_retrieval_path_get_data(path),
                          peer_retrieval_path_get_style(path));
    cairo_destroy(cr);
    cairo_surface_flush(surface);
    return surface;
}

static void test_path(void)
{
    /* A real trace: a PEER layer's forward and the engine's trace of one token. */
    peer_layer_config cfg = test_config(16, 256, 3, 4, 8, false, PEER_NORM_LAYER,
                                        PEER_ACTIVATION_GELU);
    test_layer layer;
    test_layer_init(&layer, &cfg, 4, TEST_SEED);
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED);
    float *inp = test_random_floats(&rng, 4 * 16, 1.0f);
    float *out = g_new(float, 4 * 16);
    peer_layer_forward(out, &layer.acts, inp, &layer.params, &cfg, 4, PEER_MODE_EVAL,
                       PEER_SELECT_RETRIEVE, NULL);
    peer_token_trace trace;
    peer_error err;
    g_assert_true(peer_token_trace_compute(&trace, &cfg, &layer.params, inp + 2 * 16,
                                           layer.acts.query_normed + 2 * 3 * 8, &err));

    GtkWidget *window = gtk_window_new();
    gtk_window_set_default_size(GTK_WINDOW(window), 900, 700);
    PeerRetrievalPath *path = PEER_RETRIEVAL_PATH(peer_retrieval_path_new());
    gtk_window_set_child(GTK_WINDOW(window), GTK_WIDGET(path));
    Clicks clicks = {0};
    g_signal_connect(path, "expert-activated", G_CALLBACK(on_expert_activated), &clicks);

    RetrievalPathHead heads[3];
    RetrievalPathData data;
    retrieval_path_data_from_trace(&data, heads, &trace, 1, 2, false);
    g_assert_cmpint(data.n, ==, 16);
    g_assert_cmpint(data.topk, ==, 4);
    g_assert_cmpint(heads[0].head, ==, 1);
    g_assert_true(heads[1].expert == trace.head[2].expert);
    peer_retrieval_path_set_data(path, &data);
    /* The widget's copy holds the trace's values, not its pointers. */
    const RetrievalPathData *copy = peer_retrieval_path_get_data(path);
    g_assert_cmpint(copy->n_heads, ==, 2);
    for (int h = 0; h < 2; h++) {
        const peer_head_trace *engine = &trace.head[h + 1];
        g_assert_true(copy->heads[h].expert != engine->expert);
        g_assert_cmpint(copy->heads[h].head, ==, h + 1);
        g_assert_cmpmem(copy->heads[h].sub_score[0], 16 * sizeof(float), engine->sub_score[0],
                        16 * sizeof(float));
        g_assert_cmpmem(copy->heads[h].sub_score[1], 16 * sizeof(float), engine->sub_score[1],
                        16 * sizeof(float));
        g_assert_cmpmem(copy->heads[h].candidate, 16 * sizeof(float), engine->candidate,
                        16 * sizeof(float));
        g_assert_cmpmem(copy->heads[h].expert, 4 * sizeof(int32_t), engine->expert,
                        4 * sizeof(int32_t));
        g_assert_cmpmem(copy->heads[h].pick_i, 4 * sizeof(int32_t), engine->pick_i,
                        4 * sizeof(int32_t));
        g_assert_cmpmem(copy->heads[h].gate, 4 * sizeof(float), engine->gate, 4 * sizeof(float));
        g_assert_cmpmem(copy->heads[h].contribution, 4 * sizeof(float), engine->contribution,
                        4 * sizeof(float));
    }
    peer_token_trace_free(&trace);

    gtk_window_present(GTK_WINDOW(window));
    wait_mapped(GTK_WIDGET(path));
    settle();
    int width = gtk_widget_get_width(GTK_WIDGET(path));
    int height = gtk_widget_get_height(GTK_WIDGET(path));
    cairo_surface_t *expected = draw_renderer(path);
    cairo_surface_t *drawn = widget_test_draw(GTK_WIDGET(path));
    g_assert_cmpint(widget_test_count_different_pixels(drawn, expected), ==, 0);
    cairo_surface_destroy(drawn);

    /* The pointer over the second head's third expert emphasises it; leaving ends that. */
    double row_x, row_y, cell_x, cell_y;
    g_assert_true(retrieval_path_expert_position(width, height, copy,
                                                 peer_retrieval_path_get_style(path), 1, 2,
                                                 &row_x, &row_y, &cell_x, &cell_y));
    GtkEventController *motion = widget_test_find_controller(GTK_WIDGET(path),
                                                 GTK_TYPE_EVENT_CONTROLLER_MOTION);
    g_signal_emit_by_name(motion, "motion", row_x, row_y);
    g_assert_cmpint(copy->highlight_head, ==, 1);
    g_assert_cmpint(copy->highlight_rank, ==, 2);
    drawn = widget_test_draw(GTK_WIDGET(path));
    g_assert_cmpint(widget_test_count_different_pixels(drawn, expected), >, 100);
    cairo_surface_destroy(drawn);
    g_signal_emit_by_name(motion, "leave");
    drawn = widget_test_draw(GTK_WIDGET(path));
    g_assert_cmpint(widget_test_count_different_pixels(drawn, expected), ==, 0);
    cairo_surface_destroy(drawn);
    cairo_surface_destroy(expected);

    /* A click on its row, then on its cell, activates it; a click elsewhere does nothing. */
    GtkEventController *click =
        widget_test_find_controller(GTK_WIDGET(path), GTK_TYPE_GESTURE_CLICK);
    g_signal_emit_by_name(click, "released", 1, row_x, row_y);
    g_assert_cmpint(clicks.activations, ==, 1);
    g_assert_cmpint(clicks.head, ==, 2);
    g_assert_cmpint(clicks.rank, ==, 2);
    g_assert_cmpint(clicks.expert, ==, copy->heads[1].expert[2]);
    g_signal_emit_by_name(click, "released", 1, cell_x, cell_y);
    g_assert_cmpint(clicks.activations, ==, 2);
    g_assert_cmpint(clicks.expert, ==, copy->heads[1].expert[2]);
    g_signal_emit_by_name(click, "released", 1, 2.0, 2.0);
    g_assert_cmpint(clicks.activations, ==, 2);

    /* Its height follows its width: more heads than fit side by side stack up. */
    int minimum, natural;
    gtk_widget_measure(GTK_WIDGET(path), GTK_ORIENTATION_VERTICAL, 400, &minimum, &natural, NULL,
                       NULL);
    g_assert_cmpint(natural, ==,
                    (int)ceil(retrieval_path_height_for_width(copy,
                                                              peer_retrieval_path_get_style(path),
                                                              400)));
    peer_retrieval_path_set_data(path, NULL);
    g_assert_null(peer_retrieval_path_get_data(path));
    g_assert_false(peer_retrieval_path_hit(path, row_x, row_y, &(RetrievalPathHit){0}));

    gtk_window_destroy(GTK_WINDOW(window));
    g_free(inp);
    g_free(out);
    test_layer_free(&layer);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    if (!gtk_init_check()) {
        g_printerr("no display: the widget tests are skipped\n");
        return 77;
    }
    g_test_add_func("/token-widgets/strip", test_strip);
    g_test_add_func("/token-widgets/path", test_path);
    return g_test_run();
}
