/* The sparse gradient of the expert tables when many tokens and heads pick the same experts: each
 * touched row appears once, holds the sum over every slot that chose it (against a naive dense
 * accumulation in double), backward adds on top of what is there, and zeroing forgets only the
 * touched rows. Rows chosen by one slot are written by the expert kernel itself and the others
 * summed afterwards, so a case mixes the two. */
#include <math.h>
#include <string.h>

#include "test-util.h"

typedef struct {
    const char *name;
    int D, N, h, k, dk, BT;
    bool shared_keys;
    peer_query_norm norm;
    peer_activation act;
    bool identical_tokens; /* every token the same vector: every token picks the same experts */
    int threads;           /* 0 for a NULL pool */
    bool mixed;            /* many experts chosen once beside some chosen several times */
} dup_case;

typedef struct {
    int n_rows;
    int32_t *rows;  /* (n_rows) */
    float *down;    /* (n_rows, D) */
    float *up;      /* (n_rows, D) */
    float *dense;   /* (grads count) */
    float *dinp;    /* (BT, D) */
} grad_snapshot;

static void snapshot_take(grad_snapshot *snap, const test_layer *layer, const float *dinp,
                          size_t BTD)
{
    int D = layer->cfg.d_model;
    snap->n_rows = layer->sparse.n_rows;
    snap->rows = g_memdup2(layer->sparse.rows, MAX(snap->n_rows, 1) * sizeof(int32_t));
    snap->down = test_copy_floats(layer->sparse.down, (size_t)snap->n_rows * D);
    snap->up = test_copy_floats(layer->sparse.up, (size_t)snap->n_rows * D);
    snap->dense = test_copy_floats(layer->grad_arena, peer_layer_grads_count(&layer->cfg));
    snap->dinp = test_copy_floats(dinp, BTD);
}

static void snapshot_clear(grad_snapshot *snap)
{
    g_free(snap->rows);
    g_free(snap->down);
    g_free(snap->up);
    g_free(snap->dense);
    g_free(snap->dinp);
    memset(snap, 0, sizeof *snap);
}

/* twice (n) against 2·once (n). The second backward adds each slot's term onto the first's sum
 * rather than onto zero, so it rounds differently: allow the float rounding of a sum of the
 * terms' magnitudes, mag (n), or when mag is NULL of values whose sum is itself. */
static void assert_doubled(const float *twice, const float *once, const double *mag, size_t n,
                           const char *name)
{
    for (size_t i = 0; i < n; i++) {
        double scale = mag ? mag[i] : fabs((double)once[i]);
        test_assert_close(twice[i], 2.0 * once[i], 1e-5 * scale + 1e-7, 0.0,
                          "%s[%zu] after two backwards", name, i);
    }
}

static void test_duplicates(gconstpointer data)
{
    const dup_case *dc = data;
    peer_layer_config cfg = test_config(dc->D, dc->N, dc->h, dc->k, dc->dk, dc->shared_keys,
                                        dc->norm, dc->act);
    int BT = dc->BT, D = dc->D, h = dc->h, k = dc->k, N = dc->N;
    size_t BTD = (size_t)BT * D, slots = (size_t)BT * h * k;
    test_layer layer;
    test_layer_init(&layer, &cfg, BT, TEST_SEED + (uint64_t)N + (uint64_t)BT);
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED + 5u);
    float *inp = test_random_floats(&rng, BTD, 1.0f);
    if (dc->identical_tokens)
        for (int t = 1; t < BT; t++)
            memcpy(inp + (size_t)t * D, inp, D * sizeof(float));
    float *R = test_random_floats(&rng, BTD, 1.0f);
    float *out = g_new(float, BTD);
    float *dinp = g_new0(float, BTD);
    thread_pool *pool = NULL;
    if (dc->threads > 0) {
        peer_error err = { { 0 } };
        pool = thread_pool_new(dc->threads, &err);
        g_assert_nonnull(pool);
    }

    /* Batch-norm in training over identical tokens has zero variance; evaluation keeps it
     * meaningful. */
    peer_mode mode = dc->identical_tokens && dc->norm == PEER_NORM_BATCH ? PEER_MODE_EVAL
                                                                         : PEER_MODE_TRAIN;
    peer_layer_forward(out, &layer.acts, inp, &layer.params, &cfg, BT, mode,
                       PEER_SELECT_RETRIEVE, pool);
    const peer_layer_acts *acts = &layer.acts;

    /* The naive dense reference, with the sum of magnitudes of each element's terms to scale
     * the float accumulation's rounding. */
    size_t ND = (size_t)N * D;
    double *ref_down = g_new0(double, ND), *ref_up = g_new0(double, ND);
    double *mag_down = g_new0(double, ND), *mag_up = g_new0(double, ND);
    int *uses = g_new0(int, N);
    for (size_t i = 0; i < slots; i++) {
        int t = (int)(i / ((size_t)h * k));
        int e = acts->expert[i];
        g_assert_cmpint(e, >=, 0);
        g_assert_cmpint(e, <, N);
        uses[e]++;
        double gate = acts->gate[i], pre = acts->preact[i];
        double a = test_activation(dc->act, pre), da = test_activation_derivative(dc->act, pre);
        const float *x = inp + (size_t)t * D, *r = R + (size_t)t * D;
        const float *v = layer.params.up + (size_t)e * D;
        double dot = 0.0;
        for (int c = 0; c < D; c++)
            dot += (double)r[c] * (double)v[c];
        double dpre = gate * dot * da;
        for (int c = 0; c < D; c++) {
            ref_up[(size_t)e * D + c] += gate * a * r[c];
            mag_up[(size_t)e * D + c] += fabs(gate * a * r[c]);
            ref_down[(size_t)e * D + c] += dpre * x[c];
            mag_down[(size_t)e * D + c] += fabs(dpre * x[c]);
        }
    }
    int distinct = 0, max_uses = 0, once_only = 0;
    for (int e = 0; e < N; e++) {
        distinct += uses[e] > 0;
        once_only += uses[e] == 1;
        max_uses = MAX(max_uses, uses[e]);
    }
    g_test_message("%d distinct experts over %zu slots (%d chosen once), the busiest chosen %d "
                   "times",
                   distinct, slots, once_only, max_uses);
    /* The case is only worth its name if rows really are shared, and, when mixed, if both
     * kinds of row are many. */
    if (dc->mixed) {
        g_assert_cmpint(once_only, >=, distinct / 4);
        g_assert_cmpint(distinct - once_only, >=, distinct / 10);
        g_assert_cmpint(max_uses, >=, 3);
    } else {
        g_assert_cmpint(max_uses, >=, 4);
    }

    test_layer_zero_grads(&layer);
    peer_layer_backward(dinp, &layer.grads, &layer.sparse, &layer.acts, R, inp, &layer.params,
                        &cfg, BT, pool);

    const peer_sparse_grad *sp = &layer.sparse;
    g_assert_cmpint(sp->n_experts, ==, N);
    g_assert_cmpint(sp->d_model, ==, D);
    g_assert_cmpint(sp->n_rows, ==, distinct);
    g_assert_cmpint(sp->capacity, >=, sp->n_rows);
    for (int r = 0; r < sp->n_rows; r++) {
        int e = sp->rows[r];
        g_assert_cmpint(e, >=, 0);
        g_assert_cmpint(e, <, N);
        g_assert_cmpint(uses[e], >, 0);
        g_assert_cmpint(sp->position[e], ==, r); /* also: no expert listed twice */
    }
    for (int e = 0; e < N; e++) {
        if (uses[e] == 0)
            g_assert_cmpint(sp->position[e], ==, -1);
        else
            g_assert_cmpint(sp->position[e], >=, 0);
    }
    for (int r = 0; r < sp->n_rows; r++) {
        int e = sp->rows[r];
        for (int c = 0; c < D; c++) {
            size_t i = (size_t)e * D + c;
            test_assert_close(sp->down[(size_t)r * D + c], ref_down[i],
                              1e-5 * mag_down[i] + 1e-7, 0.0, "sparse down of expert %d [%d]",
                              e, c);
            test_assert_close(sp->up[(size_t)r * D + c], ref_up[i], 1e-5 * mag_up[i] + 1e-7, 0.0,
                              "sparse up of expert %d [%d]", e, c);
        }
    }

    grad_snapshot once;
    snapshot_take(&once, &layer, dinp, BTD);

    /* Backward adds: a second call over the same forward doubles every gradient. */
    peer_layer_backward(dinp, &layer.grads, &layer.sparse, &layer.acts, R, inp, &layer.params,
                        &cfg, BT, pool);
    g_assert_cmpint(sp->n_rows, ==, once.n_rows);
    g_assert_cmpmem(sp->rows, sp->n_rows * sizeof(int32_t), once.rows,
                    once.n_rows * sizeof(int32_t));
    double *row_mag_down = g_new(double, (size_t)once.n_rows * D);
    double *row_mag_up = g_new(double, (size_t)once.n_rows * D);
    for (int r = 0; r < once.n_rows; r++) {
        memcpy(row_mag_down + (size_t)r * D, mag_down + (size_t)once.rows[r] * D,
               D * sizeof(double));
        memcpy(row_mag_up + (size_t)r * D, mag_up + (size_t)once.rows[r] * D, D * sizeof(double));
    }
    assert_doubled(sp->down, once.down, row_mag_down, (size_t)once.n_rows * D, "sparse down");
    assert_doubled(sp->up, once.up, row_mag_up, (size_t)once.n_rows * D, "sparse up");
    assert_doubled(layer.grad_arena, once.dense, NULL, peer_layer_grads_count(&cfg),
                   "dense grads");
    assert_doubled(dinp, once.dinp, NULL, BTD, "dinp");
    g_free(row_mag_up);
    g_free(row_mag_down);

    /* Zeroing walks the touched rows only: an untouched expert's slot is not even read.
     * A marker no valid state holds shows whether it was swept. */
    int untouched = -1;
    for (int e = 0; e < N && untouched < 0; e++)
        if (uses[e] == 0)
            untouched = e;
    if (untouched >= 0)
        sp->position[untouched] = -2;
    peer_sparse_grad_zero(&layer.sparse);
    g_assert_cmpint(sp->n_rows, ==, 0);
    if (untouched >= 0) {
        g_assert_cmpint(sp->position[untouched], ==, -2);
        sp->position[untouched] = -1;
    }
    for (int e = 0; e < N; e++)
        g_assert_cmpint(sp->position[e], ==, -1);

    /* After zeroing, a backward starts from nothing again: bit for bit the first result. */
    memset(layer.grad_arena, 0, peer_layer_grads_count(&cfg) * sizeof(float));
    memset(dinp, 0, BTD * sizeof(float));
    peer_layer_backward(dinp, &layer.grads, &layer.sparse, &layer.acts, R, inp, &layer.params,
                        &cfg, BT, pool);
    g_assert_cmpint(sp->n_rows, ==, once.n_rows);
    g_assert_cmpmem(sp->rows, sp->n_rows * sizeof(int32_t), once.rows,
                    once.n_rows * sizeof(int32_t));
    g_assert_cmpmem(sp->down, (size_t)sp->n_rows * D * sizeof(float), once.down,
                    (size_t)once.n_rows * D * sizeof(float));
    g_assert_cmpmem(sp->up, (size_t)sp->n_rows * D * sizeof(float), once.up,
                    (size_t)once.n_rows * D * sizeof(float));

    snapshot_clear(&once);
    g_free(uses);
    g_free(mag_up);
    g_free(mag_down);
    g_free(ref_up);
    g_free(ref_down);
    thread_pool_free(pool);
    g_free(dinp);
    g_free(out);
    g_free(R);
    g_free(inp);
    test_layer_free(&layer);
}

static const dup_case cases[] = {
    /* n = 2: every token and head picks 2 of 4 experts. */
    { "tiny-pool", 8, 4, 3, 2, 4, 10, false, PEER_NORM_NONE, PEER_ACTIVATION_GELU, false, 0 },
    { "tiny-pool-shared-relu", 8, 4, 3, 2, 4, 12, true, PEER_NORM_LAYER, PEER_ACTIVATION_RELU,
      false, 0 },
    /* Identical tokens with shared keys: every token repeats the same h·k choices. */
    { "identical-tokens", 16, 64, 4, 4, 8, 16, true, PEER_NORM_LAYER, PEER_ACTIVATION_GELU, true,
      0 },
    { "identical-tokens-batch-eval", 16, 64, 2, 4, 8, 16, false, PEER_NORM_BATCH,
      PEER_ACTIVATION_GELU, true, 0 },
    /* Enough tokens to span several of the engine's blocks, on a pool of threads. */
    { "many-tokens-threads", 12, 16, 2, 3, 6, 300, false, PEER_NORM_BATCH, PEER_ACTIVATION_GELU,
      false, 2 },
    { "identical-tokens-threads", 12, 36, 3, 4, 6, 257, true, PEER_NORM_NONE,
      PEER_ACTIVATION_RELU, true, 3 },
    /* Far more experts than slots: most rows have a single slot, some several. */
    { "mixed-rows-threads", 16, 4096, 4, 4, 8, 200, false, PEER_NORM_BATCH,
      PEER_ACTIVATION_GELU, false, 2, true },
    { "mixed-rows-serial-relu", 12, 1024, 2, 3, 6, 90, true, PEER_NORM_LAYER,
      PEER_ACTIVATION_RELU, false, 0, true },
};

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        char *path = g_strdup_printf("/sparse-grad/%s", cases[i].name);
        g_test_add_data_func(path, &cases[i], test_duplicates);
        g_free(path);
    }
    return g_test_run();
}
