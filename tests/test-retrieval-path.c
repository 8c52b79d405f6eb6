/* The retrieval-path renderer, offscreen: every chosen expert drawn is found again by the hit
 * test at its row and at its grid cell, points elsewhere find nothing, every top-k sub-key is
 * drawn in the path's colour even where there are more sub-keys than pixels (n = 1024), the
 * emphasised expert changes the picture, and all heads side by side fit in the height the
 * renderer asks for. */
#include <glib.h>
#include <math.h>
#include <stdlib.h>

#include "retrieval-path-render.h"
#include "rng.h"

typedef struct {
    int n, k, heads;
    float *floats;
    int32_t *ints;
    RetrievalPathHead *head;
    RetrievalPathData data;
} Path;

static int compare_desc_index(const void *a, const void *b, void *scores)
{
    const float *values = scores;
    float x = values[*(const int *)a], y = values[*(const int *)b];
    return (x < y) - (x > y);
}

/* A consistent path from random sub-key scores: the top k of each half, the k × k sums, the
 * best k of them with their (a, b), gates that sum to 1, activations and contributions. */
static void path_init(Path *p, int n, int k, int heads, uint64_t seed)
{
    p->n = n;
    p->k = k;
    p->heads = heads;
    size_t floats = 2 * (size_t)n + (size_t)k * k + 3 * (size_t)k, ints = 7 * (size_t)k;
    p->floats = g_new(float, floats * heads);
    p->ints = g_new(int32_t, ints * heads);
    p->head = g_new0(RetrievalPathHead, heads);
    peer_rng rng;
    peer_rng_seed(&rng, seed);
    int *order = g_new(int, MAX(n, k * k));
    for (int h = 0; h < heads; h++) {
        float *f = p->floats + floats * h;
        int32_t *i = p->ints + ints * h;
        RetrievalPathHead *head = &p->head[h];
        head->head = h;
        float *sub[2] = {f, f + n};
        for (int half = 0; half < 2; half++) {
            for (int a = 0; a < n; a++)
                sub[half][a] = peer_rng_normal(&rng);
            for (int a = 0; a < n; a++)
                order[a] = a;
            g_qsort_with_data(order, n, sizeof(int), compare_desc_index, sub[half]);
            for (int r = 0; r < k; r++)
                i[half * k + r] = order[r];
            head->sub_score[half] = sub[half];
            head->sub_top[half] = i + half * k;
        }
        float *candidate = f + 2 * n;
        for (int a = 0; a < k; a++)
            for (int b = 0; b < k; b++)
                candidate[a * k + b] = sub[0][i[a]] + sub[1][i[k + b]];
        for (int c = 0; c < k * k; c++)
            order[c] = c;
        g_qsort_with_data(order, k * k, sizeof(int), compare_desc_index, candidate);
        int32_t *pick_i = i + 2 * k, *pick_j = i + 3 * k, *expert = i + 4 * k, *row = i + 5 * k,
                *col = i + 6 * k;
        float *gate = candidate + k * k, *activation = gate + k, *contribution = activation + k;
        double sum = 0.0;
        for (int s = 0; s < k; s++) {
            pick_i[s] = order[s] / k;
            pick_j[s] = order[s] % k;
            row[s] = i[pick_i[s]];
            col[s] = i[k + pick_j[s]];
            expert[s] = row[s] * n + col[s];
            gate[s] = expf(candidate[order[s]]);
            sum += gate[s];
            activation[s] = peer_rng_normal(&rng);
            contribution[s] = fabsf(peer_rng_normal(&rng));
        }
        for (int s = 0; s < k; s++)
            gate[s] = (float)(gate[s] / sum);
        head->candidate = candidate;
        head->pick_i = pick_i;
        head->pick_j = pick_j;
        head->expert = expert;
        head->row = row;
        head->col = col;
        head->gate = gate;
        head->activation = activation;
        head->contribution = contribution;
    }
    g_free(order);
    p->data = (RetrievalPathData){.n = n, .topk = k, .n_heads = heads, .heads = p->head,
                                  .highlight_head = -1, .highlight_rank = -1};
}

static void path_clear(Path *p)
{
    g_free(p->floats);
    g_free(p->ints);
    g_free(p->head);
}

static cairo_surface_t *render(const RetrievalPathData *data, const PlotStyle *style, int width,
                               int height)
{
    cairo_surface_t *surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, width, height);
    cairo_t *cr = cairo_create(surface);
    retrieval_path_render(cr, width, height, data, style);
    cairo_destroy(cr);
    cairo_surface_flush(surface);
    return surface;
}

static void pixel(cairo_surface_t *surface, double x, double y, int *r, int *g, int *b)
{
    int px = (int)floor(x), py = (int)floor(y);
    g_assert_cmpint(px, >=, 0);
    g_assert_cmpint(py, >=, 0);
    g_assert_cmpint(px, <, cairo_image_surface_get_width(surface));
    g_assert_cmpint(py, <, cairo_image_surface_get_height(surface));
    const guint8 *p = cairo_image_surface_get_data(surface) +
                      py * cairo_image_surface_get_stride(surface) + px * 4;
    /* Premultiplied B, G, R, A on little-endian machines; the background is opaque. */
    *b = p[0];
    *g = p[1];
    *r = p[2];
}

static void check_hits(const RetrievalPathData *data, const PlotStyle *style, double width,
                       double height)
{
    int shown = 0;
    for (int h = 0; h < data->n_heads; h++)
        for (int s = 0; s < data->topk; s++) {
            double row_x, row_y, cell_x, cell_y;
            gboolean in_list = retrieval_path_expert_position(width, height, data, style, h, s,
                                                              &row_x, &row_y, &cell_x, &cell_y);
            RetrievalPathHit hit;
            g_assert_true(retrieval_path_hit_test(width, height, data, style, cell_x, cell_y,
                                                  &hit));
            g_assert_cmpint(hit.head, ==, h);
            g_assert_cmpint(hit.rank, ==, s);
            g_assert_cmpint(hit.expert, ==, data->heads[h].expert[s]);
            if (!in_list)
                continue;
            shown++;
            g_assert_true(retrieval_path_hit_test(width, height, data, style, row_x, row_y,
                                                  &hit));
            g_assert_cmpint(hit.head, ==, h);
            g_assert_cmpint(hit.rank, ==, s);
            g_assert_cmpint(hit.expert, ==, data->heads[h].expert[s]);
        }
    g_assert_cmpint(shown, >, 0);
    RetrievalPathHit hit;
    g_assert_false(retrieval_path_hit_test(width, height, data, style, 1, 1, &hit));
    g_assert_false(retrieval_path_hit_test(width, height, data, style, width - 1, height - 1,
                                           &hit));
    /* A candidate that was not chosen: the grid's last cell, which has k cells at least as good
     * above and left of it. The second best is the first's neighbour, which gives the cell size. */
    const RetrievalPathHead *head = &data->heads[0];
    int k = data->topk;
    double r0x, r0y, c0x, c0y, r1x, r1y, c1x, c1y;
    retrieval_path_expert_position(width, height, data, style, 0, 0, &r0x, &r0y, &c0x, &c0y);
    retrieval_path_expert_position(width, height, data, style, 0, 1, &r1x, &r1y, &c1x, &c1y);
    g_assert_cmpint(head->pick_i[0], ==, 0);
    g_assert_cmpint(head->pick_j[0], ==, 0);
    double cell = head->pick_j[1] == 1 ? c1x - c0x : c1y - c0y;
    g_assert_cmpfloat(cell, >, 0.0);
    g_assert_false(retrieval_path_hit_test(width, height, data, style, c0x + (k - 1) * cell,
                                           c0y + (k - 1) * cell, &hit));
}

static void test_hit_test(void)
{
    PlotStyle style;
    plot_style_init_light(&style);
    const int cases[][3] = {{8, 4, 1}, {128, 8, 3}, {1024, 16, 2}, {32, 32, 1}};
    for (size_t c = 0; c < G_N_ELEMENTS(cases); c++) {
        Path p;
        path_init(&p, cases[c][0], cases[c][1], cases[c][2], 11 + c);
        /* One panel in a fixed box; several in the height the renderer asks for. */
        if (p.heads == 1)
            check_hits(&p.data, &style, 900, 420);
        else
            check_hits(&p.data, &style, 900,
                       retrieval_path_height_for_width(&p.data, &style, 900));
        double height = retrieval_path_height_for_width(&p.data, &style, 1400);
        check_hits(&p.data, &style, 1400, height);
        p.data.title = "Layer 2 · token 17";
        check_hits(&p.data, &style, 1400, height + 30);
        path_clear(&p);
    }
}

/* At n = 1024 on a few hundred pixels every top-k sub-key still shows in the path's colour. */
static void test_top_keys_drawn(void)
{
    PlotStyle style;
    plot_style_init_light(&style);
    Path p;
    path_init(&p, 1024, 16, 1, 5);
    int width = 900, height = 420;
    cairo_surface_t *surface = render(&p.data, &style, width, height);
    for (int half = 0; half < 2; half++)
        for (int r = 0; r < p.k; r++) {
            double x, y;
            int index = p.head[0].sub_top[half][r];
            retrieval_path_sub_key_position(width, height, &p.data, &style, 0, half, index, &x,
                                            &y);
            int red, green, blue;
            pixel(surface, x, y, &red, &green, &blue);
            if (!(red - blue > 60 && red > green))
                g_error("sub-key %d of half %d drawn as (%d, %d, %d), not in the path's colour",
                        index, half, red, green, blue);
        }
    /* A sub-key outside the top k is drawn in grey. */
    int grey = -1;
    for (int a = 0; a < p.n && grey < 0; a++) {
        gboolean top = FALSE;
        for (int r = 0; r < p.k; r++)
            top = top || p.head[0].sub_top[0][r] == a;
        gboolean near = FALSE;
        for (int r = 0; r < p.k; r++)
            near = near || abs(p.head[0].sub_top[0][r] - a) < 8;
        if (!top && !near)
            grey = a;
    }
    double x, y;
    retrieval_path_sub_key_position(width, height, &p.data, &style, 0, 0, grey, &x, &y);
    int red, green, blue;
    pixel(surface, x, y, &red, &green, &blue);
    g_assert_cmpint(abs(red - blue), <, 20);
    cairo_surface_destroy(surface);
    path_clear(&p);
}

static int count_different_pixels(cairo_surface_t *a, cairo_surface_t *b)
{
    int width = cairo_image_surface_get_width(a), height = cairo_image_surface_get_height(a);
    int different = 0;
    for (int y = 0; y < height; y++) {
        const guint8 *ra = cairo_image_surface_get_data(a) + y * cairo_image_surface_get_stride(a);
        const guint8 *rb = cairo_image_surface_get_data(b) + y * cairo_image_surface_get_stride(b);
        for (int x = 0; x < width * 4; x += 4)
            different += abs(ra[x] - rb[x]) > 2 || abs(ra[x + 1] - rb[x + 1]) > 2 ||
                         abs(ra[x + 2] - rb[x + 2]) > 2;
    }
    return different;
}

/* Emphasising an expert redraws its row and path, in the light and the dark style. */
static void test_highlight(void)
{
    Path p;
    path_init(&p, 128, 8, 2, 9);
    for (int dark = 0; dark < 2; dark++) {
        PlotStyle style;
        if (dark)
            plot_style_init_dark(&style);
        else
            plot_style_init_light(&style);
        int width = 900, height = (int)retrieval_path_height_for_width(&p.data, &style, width);
        cairo_surface_t *plain = render(&p.data, &style, width, height);
        p.data.highlight_head = 1;
        p.data.highlight_rank = 2;
        cairo_surface_t *emphasised = render(&p.data, &style, width, height);
        p.data.highlight_head = -1;
        p.data.highlight_rank = -1;
        g_assert_cmpint(count_different_pixels(plain, emphasised), >, 200);
        /* The row's background now carries the path's colour. */
        double row_x, row_y, cell_x, cell_y;
        g_assert_true(retrieval_path_expert_position(width, height, &p.data, &style, 1, 2, &row_x,
                                                     &row_y, &cell_x, &cell_y));
        int r0, g0, b0, r1, g1, b1;
        double x = row_x - 2; /* between the list's columns */
        pixel(plain, x, row_y - 6, &r0, &g0, &b0);
        pixel(emphasised, x, row_y - 6, &r1, &g1, &b1);
        g_assert_true(r1 != r0 || g1 != g0 || b1 != b0);
        cairo_surface_destroy(plain);
        cairo_surface_destroy(emphasised);
    }
    path_clear(&p);
}

/* All heads: side by side where the width allows, and each panel as tall as it wants. */
static void test_arrangement(void)
{
    PlotStyle style;
    plot_style_init_light(&style);
    Path p;
    path_init(&p, 128, 8, 8, 3);
    double panel_w, panel_h;
    retrieval_path_panel_size(&p.data, &style, &panel_w, &panel_h);
    g_assert_cmpfloat(panel_w, >, 200);
    g_assert_cmpfloat(panel_h, >, 100);
    int columns, rows;
    retrieval_path_arrange(&p.data, &style, panel_w * 2.5, &columns, &rows);
    g_assert_cmpint(columns, ==, 2);
    g_assert_cmpint(rows, ==, 4);
    retrieval_path_arrange(&p.data, &style, panel_w * 0.5, &columns, &rows);
    g_assert_cmpint(columns, ==, 1);
    g_assert_cmpint(rows, ==, 8);
    g_assert_cmpfloat(retrieval_path_height_for_width(&p.data, &style, panel_w * 4.2), ==,
                      2 * panel_h);
    path_clear(&p);

    /* Nothing to draw: a message, and no hit. */
    RetrievalPathData empty = {.highlight_head = -1, .highlight_rank = -1};
    cairo_surface_t *surface = render(&empty, &style, 300, 200);
    cairo_surface_destroy(surface);
    RetrievalPathHit hit;
    g_assert_false(retrieval_path_hit_test(300, 200, &empty, &style, 150, 100, &hit));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/retrieval-path/hit-test", test_hit_test);
    g_test_add_func("/retrieval-path/top-keys-drawn", test_top_keys_drawn);
    g_test_add_func("/retrieval-path/highlight", test_highlight);
    g_test_add_func("/retrieval-path/arrangement", test_arrangement);
    return g_test_run();
}
