/* The trainer: the loss falls on the default corpus (found through PEER_RESOURCES) within a few
 * hundred steps; sparse Adam leaves every expert row that a step did not touch, and its moments,
 * exactly as they were; a non-finite loss stops a step before it changes anything; 1, 2 and 3
 * threads and a NULL pool train bit-identical weights; and the learning-rate schedule. */
#include <math.h>
#include <string.h>

#include "test-util.h"
#include "trainer.h"

/* ---- helpers --------------------------------------------------------------------------------- */

static void assert_contains(const char *message, const char *word)
{
    if (!strstr(message, word))
        test_fail("the message lacks \"%s\": %s", word, message);
}

static void config_from_json(model_config *cfg, const char *json)
{
    peer_error err = { { 0 } };
    if (!model_config_from_json(cfg, json, &err))
        g_error("config rejected: %s\n%s", err.message, json);
}

/* Words from a small vocabulary, so that a model has something to learn. */
static const char *const corpus_words[] = { "the ", "of ", "and ", "to ", "a ", "in ", "was ",
                                            "her ", "she ", "not ", "be ", "that ", "Elinor ",
                                            "Marianne ", "sister, ", "mother. ", "said ", "had ",
                                            "would ", "could " };

static void word_corpus(corpus *c, int seq_len)
{
    test_word_corpus(c, corpus_words, G_N_ELEMENTS(corpus_words), 200000, seq_len);
}

static void trainer_start(trainer *tr, const model_config *cfg, const train_settings *s,
                          const corpus *data)
{
    peer_error err = { { 0 } };
    if (!trainer_init(tr, cfg, s, data, &err))
        g_error("trainer_init: %s", err.message);
}

static void trainer_steps(trainer *tr, int steps, thread_pool *pool)
{
    peer_error err = { { 0 } };
    for (int i = 0; i < steps; i++)
        if (!trainer_step(tr, pool, &err))
            test_fail("step %ld failed: %s", tr->step + 1, err.message);
}

static thread_pool *pool_new(int threads)
{
    peer_error err = { { 0 } };
    thread_pool *pool = thread_pool_new(threads, &err);
    if (!pool)
        g_error("thread_pool_new(%d): %s", threads, err.message);
    return pool;
}

/* Every tensor of b bit-identical to a's, or the test fails naming the first that differs. */
static void assert_same_params(const peer_model *a, const peer_model *b, const char *what)
{
    g_assert_cmpint(a->n_tensors, ==, b->n_tensors);
    for (int i = 0; i < a->n_tensors; i++) {
        const model_tensor *ta = &a->tensors[i], *tb = &b->tensors[i];
        g_assert_cmpstr(ta->name, ==, tb->name);
        for (size_t k = 0; k < ta->n_elements; k++)
            if (memcmp(&ta->param[k], &tb->param[k], sizeof(float)) != 0)
                test_fail("%s: %s[%zu] differs: %.9g and %.9g", what, ta->name, k,
                          (double)ta->param[k], (double)tb->param[k]);
    }
}

/* ---- the loss falls on the default corpus ---------------------------------------------------- */

/* The default PEER run file's model at a batch of 8 × 64 bytes. A sanitizer build runs about five
 * times slower: there a model of half the width and depth shows the same thing. */
#ifdef __SANITIZE_ADDRESS__
#define FALL_MODEL_OVERRIDE                                                                       \
    "{\"vocab_size\": 256, \"context\": 64, \"d_model\": 64, \"n_layers\": 2, \"n_heads\": 4, "  \
    "\"layers\": [{\"ffn\": \"dense\", \"d_ff\": 256}, {\"ffn\": \"peer\", \"n_experts\": 4096, " \
    "\"heads\": 4, \"topk\": 8, \"d_key\": 32, \"shared_keys\": false, \"query_norm\": "          \
    "\"batch\", \"activation\": \"gelu\"}]}"
#else
#define FALL_MODEL_OVERRIDE NULL
#endif
#define FALL_STEPS 200
#define FALL_WINDOW 20

static void test_loss_falls(void)
{
    const char *resources = g_getenv("PEER_RESOURCES");
    if (!resources) {
        g_test_skip("PEER_RESOURCES is not set (meson test sets it to resources/)");
        return;
    }
    char *run_path = g_build_filename(resources, "runs", "peer-small.json", NULL);
    char *corpus_path = g_build_filename(resources, "corpus", "austen.txt", NULL);
    char *run_json = NULL;
    GError *error = NULL;
    g_assert_true(g_file_get_contents(run_path, &run_json, NULL, &error));
    g_assert_no_error(error);
    model_config cfg;
    train_settings s;
    peer_error err = { { 0 } };
    if (!run_config_from_json(&cfg, &s, run_json, &err))
        test_fail("%s is refused: %s", run_path, err.message);
    if (FALL_MODEL_OVERRIDE)
        config_from_json(&cfg, FALL_MODEL_OVERRIDE);
    s.batch_size = 8;
    s.seq_len = 64;
    s.steps = FALL_STEPS;
    s.warmup = 20;
    s.eval_windows = 16;

    corpus data;
    if (!corpus_load_file(&data, corpus_path, s.seq_len, &err))
        test_fail("the default corpus is refused: %s", err.message);
    thread_pool *pool = pool_new(2);
    trainer tr;
    trainer_start(&tr, &cfg, &s, &data);
    eval_result before, after;
    g_assert_true(trainer_evaluate(&tr, 16, &before, pool, &err));

    double first = 0.0, last = 0.0;
    for (int i = 0; i < FALL_STEPS; i++) {
        trainer_steps(&tr, 1, pool);
        g_assert_true(isfinite(tr.last_loss));
        if (i < FALL_WINDOW)
            first += tr.last_loss / FALL_WINDOW;
        if (i >= FALL_STEPS - FALL_WINDOW)
            last += tr.last_loss / FALL_WINDOW;
    }
    g_assert_true(trainer_evaluate(&tr, 16, &after, pool, &err));
    g_test_message("mean loss of the first %d steps %.3f, of the last %d %.3f; validation %.3f "
                   "before, %.3f after (%.3f bits per byte)",
                   FALL_WINDOW, first, FALL_WINDOW, last, before.loss, after.loss,
                   after.bits_per_byte);
    /* Bytes are ln 256 = 5.55 nats uniformly; the letter frequencies of English alone give ~3.1,
     * so below 3 the model has learnt more than unigram statistics. */
    g_assert_cmpfloat(first, >, 3.5);
    g_assert_cmpfloat(last, <, 3.0);
    g_assert_cmpfloat(last, <, first - 1.0);
    /* validation text is another novel's pages, a little harder than the training batches */
    g_assert_cmpfloat(after.loss, <, 3.3);
    g_assert_cmpfloat(after.loss, <, before.loss - 1.5);
    test_assert_close(after.bits_per_byte, after.loss / M_LN2, 1e-12, 1e-12, "bits per byte");
    test_assert_close(after.perplexity, exp(after.loss), 1e-12, 1e-9, "perplexity");
    g_assert_cmpint(after.tokens, ==, 16 * 64);

    /* The accounting: tokens and training FLOPs (three forwards' worth a token). */
    g_assert_cmpint(tr.step, ==, FALL_STEPS);
    test_assert_close(tr.tokens, (double)FALL_STEPS * 8 * 64, 0.0, 0.0, "tokens");
    test_assert_close(tr.flops, 3.0 * peer_model_forward_flops_per_token(&cfg, 64) * FALL_STEPS *
                                    8 * 64,
                      0.0, 1e-12, "training FLOPs");

    trainer_free(&tr);
    thread_pool_free(pool);
    corpus_free(&data);
    g_free(run_json);
    g_free(run_path);
    g_free(corpus_path);
}

/* ---- sparse Adam ----------------------------------------------------------------------------- */

/* Two PEER blocks and a PKM block with many more rows than a step of 2 × 16 tokens touches. */
static const char sparse_model[] =
    "{\"vocab_size\": 256, \"context\": 16, \"d_model\": 16, \"n_layers\": 3, \"n_heads\": 2, "
    "\"layers\": [{\"ffn\": \"peer\", \"n_experts\": 1024, \"heads\": 2, \"topk\": 4, "
    "\"d_key\": 8, \"shared_keys\": false, \"query_norm\": \"batch\", \"activation\": \"gelu\"}, "
    "{\"ffn\": \"pkm\", \"n_memories\": 256, \"heads\": 2, \"topk\": 4, \"d_key\": 8, "
    "\"shared_keys\": true, \"query_norm\": \"layer\"}, "
    "{\"ffn\": \"peer\", \"n_experts\": 256, \"heads\": 1, \"topk\": 2, \"d_key\": 8, "
    "\"shared_keys\": false, \"query_norm\": \"none\", \"activation\": \"relu\"}]}";

typedef struct {
    float *param; /* (N, D) */
    float *m, *v; /* (N, D) */
} table_snapshot;

static void test_sparse_adam(void)
{
    model_config cfg;
    config_from_json(&cfg, sparse_model);
    train_settings s;
    train_settings_default(&s, &cfg);
    s.batch_size = 2;
    s.seq_len = 16;
    s.steps = 10;
    s.warmup = 2;
    corpus data;
    word_corpus(&data, s.seq_len);
    trainer tr;
    trainer_start(&tr, &cfg, &s, &data);
    const optimizer_state *opt = &tr.opt;
    g_assert_cmpint(opt->n_tables, ==, 5); /* down and up of each PEER block, values of the PKM */

    for (int step = 0; step < 4; step++) {
        table_snapshot snap[5];
        for (int k = 0; k < opt->n_tables; k++) {
            const model_tensor *t = &tr.model->tensors[opt->table_tensor[k]];
            g_assert_true(t->expert_table);
            snap[k].param = test_copy_floats(t->param, t->n_elements);
            snap[k].m = test_copy_floats(opt->table_m[k], t->n_elements);
            snap[k].v = test_copy_floats(opt->table_v[k], t->n_elements);
        }
        trainer_steps(&tr, 1, NULL);
        for (int k = 0; k < opt->n_tables; k++) {
            const model_tensor *t = &tr.model->tensors[opt->table_tensor[k]];
            const peer_sparse_grad *sparse = &tr.model->sparse[t->layer];
            size_t N = (size_t)t->shape[0], D = (size_t)t->shape[1];
            bool *touched = g_new0(bool, N);
            for (int r = 0; r < sparse->n_rows; r++)
                touched[sparse->rows[r]] = true;
            const float *grad = strstr(t->name, ".down") ? sparse->down : sparse->up;
            int n_touched = sparse->n_rows, n_moving = 0, n_resting = 0;
            g_assert_cmpint(n_touched, >, 0);
            g_assert_cmpint(n_touched, <, (int)N);
            for (size_t row = 0; row < N; row++) {
                size_t at = row * D, bytes = D * sizeof(float);
                bool same_param = memcmp(t->param + at, snap[k].param + at, bytes) == 0;
                bool same_m = memcmp(opt->table_m[k] + at, snap[k].m + at, bytes) == 0;
                bool same_v = memcmp(opt->table_v[k] + at, snap[k].v + at, bytes) == 0;
                if (!touched[row]) {
                    if (!same_param || !same_m || !same_v)
                        test_fail("step %d: %s row %zu was not touched, yet its %s changed", step,
                                  t->name, row, !same_param ? "weights" : "moments");
                    for (size_t d = 0; d < D; d++)
                        if (opt->table_v[k][at + d] != 0.0f) {
                            n_resting++;
                            break;
                        }
                    continue;
                }
                /* A touched row with a gradient moves, and so does its first moment. A ReLU
                 * expert whose u·x was negative for every token that chose it has a zero
                 * gradient: sparse Adam may still decay its moments. */
                const float *g = grad + (size_t)sparse->position[row] * D;
                bool has_gradient = false;
                for (size_t d = 0; d < D; d++)
                    has_gradient = has_gradient || g[d] != 0.0f;
                if (!has_gradient)
                    continue;
                n_moving++;
                if (same_param || same_m)
                    test_fail("step %d: %s row %zu has a gradient, yet its %s did not change",
                              step, t->name, row, same_param ? "weights" : "first moment");
            }
            g_assert_cmpint(n_moving, >, 0);
            /* From the second step on, rows touched before and not now hold moments that must
             * stay as they are: the check above then covers more than zeros. */
            if (step > 0)
                g_assert_cmpint(n_resting, >, 0);
            if (step == 0)
                g_test_message("%s: %d of %zu rows touched in one step", t->name, n_touched, N);
            g_free(touched);
            g_free(snap[k].param);
            g_free(snap[k].m);
            g_free(snap[k].v);
        }
    }
    trainer_free(&tr);
    corpus_free(&data);
}

/* ---- non-finite losses ----------------------------------------------------------------------- */

static const char dense_model[] =
    "{\"vocab_size\": 256, \"context\": 16, \"d_model\": 16, \"n_layers\": 2, \"n_heads\": 2, "
    "\"layers\": [{\"ffn\": \"dense\", \"d_ff\": 32}, {\"ffn\": \"dense\", \"d_ff\": 32}]}";

static const char batch_norm_model[] =
    "{\"vocab_size\": 256, \"context\": 16, \"d_model\": 16, \"n_layers\": 2, \"n_heads\": 2, "
    "\"layers\": [{\"ffn\": \"dense\", \"d_ff\": 32}, {\"ffn\": \"peer\", \"n_experts\": 256, "
    "\"heads\": 2, \"topk\": 4, \"d_key\": 8, \"shared_keys\": false, \"query_norm\": \"batch\", "
    "\"activation\": \"gelu\"}]}";

/* After two good steps, one weight is set to `poison`: the next step fails with a message that
 * says the loss is not finite, and no weight, running statistic, moment or counter changes, so
 * the caller holds the state of step 2. */
static void check_poisoned_step(const char *json, const char *tensor, size_t index, float poison)
{
    model_config cfg;
    config_from_json(&cfg, json);
    train_settings s;
    train_settings_default(&s, &cfg);
    s.batch_size = 2;
    s.seq_len = 16;
    s.steps = 10;
    corpus data;
    word_corpus(&data, s.seq_len);
    trainer tr;
    trainer_start(&tr, &cfg, &s, &data);
    trainer_steps(&tr, 2, NULL);

    const model_tensor *t = peer_model_find_tensor(tr.model, tensor);
    g_assert_nonnull(t);
    t->param[index] = poison;
    float *params = test_copy_floats(tr.model->params_memory, tr.model->n_params);
    float *m = test_copy_floats(tr.opt.m, tr.opt.n_dense);
    float *v = test_copy_floats(tr.opt.v, tr.opt.n_dense);
    long step = tr.step, opt_step = tr.opt.step;
    double tokens = tr.tokens, flops = tr.flops;

    peer_error err = { { 0 } };
    g_assert_false(trainer_step(&tr, NULL, &err));
    g_test_message("%s[%zu] = %g: %s", tensor, index, (double)poison, err.message);
    if (!strstr(err.message, "NaN") && !strstr(err.message, "infinite"))
        test_fail("the message says neither NaN nor infinite: %s", err.message);
    assert_contains(err.message, "step 3");
    g_assert_cmpint(tr.step, ==, step);
    g_assert_cmpint(tr.opt.step, ==, opt_step);
    g_assert_cmpfloat(tr.tokens, ==, tokens);
    g_assert_cmpfloat(tr.flops, ==, flops);
    for (int i = 0; i < tr.model->n_tensors; i++) {
        const model_tensor *ti = &tr.model->tensors[i];
        size_t offset = (size_t)(ti->param - tr.model->params_memory);
        for (size_t k = 0; k < ti->n_elements; k++)
            if (memcmp(&ti->param[k], &params[offset + k], sizeof(float)) != 0)
                test_fail("the failed step changed %s[%zu] from %g to %g", ti->name, k,
                          (double)params[offset + k], (double)ti->param[k]);
    }
    g_assert_cmpmem(tr.opt.m, tr.opt.n_dense * sizeof(float), m, tr.opt.n_dense * sizeof(float));
    g_assert_cmpmem(tr.opt.v, tr.opt.n_dense * sizeof(float), v, tr.opt.n_dense * sizeof(float));
    g_free(params);
    g_free(m);
    g_free(v);
    trainer_free(&tr);
    corpus_free(&data);
}

static void test_nan_weight(void)
{
    check_poisoned_step(dense_model, "blocks.0.attn.qkv.weight", 37, NAN);
}

static void test_infinite_weight(void)
{
    check_poisoned_step(dense_model, "blocks.1.ffn.fc.bias", 3, INFINITY);
}

/* A finite weight so large that the activations overflow, as after a learning rate far too high:
 * the batch-norm's running statistics, which a training forward updates, must not keep the
 * overflowed batch either. */
static void test_overflow_keeps_running_statistics(void)
{
    check_poisoned_step(batch_norm_model, "blocks.1.ffn.query.weight", 5, 3e38f);
}

/* ---- threads --------------------------------------------------------------------------------- */

/* Every kind of block, batch-norm included; 5 steps with a NULL pool, 1, 2 and 3 threads. */
static const char threads_model[] =
    "{\"vocab_size\": 256, \"context\": 32, \"d_model\": 32, \"n_layers\": 4, \"n_heads\": 4, "
    "\"layers\": [{\"ffn\": \"dense\", \"d_ff\": 64}, "
    "{\"ffn\": \"peer\", \"n_experts\": 1024, \"heads\": 4, \"topk\": 4, \"d_key\": 16, "
    "\"shared_keys\": false, \"query_norm\": \"batch\", \"activation\": \"gelu\"}, "
    "{\"ffn\": \"pkm\", \"n_memories\": 256, \"heads\": 2, \"topk\": 8, \"d_key\": 16, "
    "\"shared_keys\": true, \"query_norm\": \"layer\"}, "
    "{\"ffn\": \"moe\", \"n_experts\": 4, \"topk\": 2, \"d_ff\": 32}]}";

/* Trains 5 steps with each pool (NULL: everything on the calling thread) in order and compares
 * every run with the first: losses, every tensor, the moments, bit for bit. */
static void check_threads_identical(const int *threads, int n_runs)
{
    model_config cfg;
    config_from_json(&cfg, threads_model);
    train_settings s;
    train_settings_default(&s, &cfg);
    /* 8 × 32 = 256 tokens: several blocks of every threaded loop */
    s.batch_size = 8;
    s.seq_len = 32;
    s.steps = 100;
    s.warmup = 2;
    corpus data;
    word_corpus(&data, s.seq_len);

    enum { STEPS = 5, MAX_RUNS = 4 };
    g_assert_cmpint(n_runs, <=, MAX_RUNS);
    trainer runs[MAX_RUNS];
    double losses[MAX_RUNS][STEPS];
    for (int r = 0; r < n_runs; r++) {
        thread_pool *pool = threads[r] ? pool_new(threads[r]) : NULL;
        trainer_start(&runs[r], &cfg, &s, &data);
        for (int i = 0; i < STEPS; i++) {
            trainer_steps(&runs[r], 1, pool);
            losses[r][i] = runs[r].last_loss;
        }
        thread_pool_free(pool);
    }
    const trainer *reference = &runs[0];
    for (int r = 1; r < n_runs; r++) {
        char *what = g_strdup_printf("%d threads against %d (0: a NULL pool)", threads[r],
                                     threads[0]);
        for (int i = 0; i < STEPS; i++)
            if (memcmp(&losses[r][i], &losses[0][i], sizeof(double)) != 0)
                test_fail("%s: the loss of step %d is %.17g, not %.17g", what, i + 1,
                          losses[r][i], losses[0][i]);
        assert_same_params(reference->model, runs[r].model, what);
        g_assert_cmpmem(runs[r].opt.m, runs[r].opt.n_dense * sizeof(float), reference->opt.m,
                        reference->opt.n_dense * sizeof(float));
        g_assert_cmpmem(runs[r].opt.v, runs[r].opt.n_dense * sizeof(float), reference->opt.v,
                        reference->opt.n_dense * sizeof(float));
        for (int k = 0; k < reference->opt.n_tables; k++) {
            size_t n = reference->model->tensors[reference->opt.table_tensor[k]].n_elements;
            g_assert_cmpmem(runs[r].opt.table_m[k], n * sizeof(float), reference->opt.table_m[k],
                            n * sizeof(float));
            g_assert_cmpmem(runs[r].opt.table_v[k], n * sizeof(float), reference->opt.table_v[k],
                            n * sizeof(float));
        }
        g_free(what);
    }
    for (int r = 0; r < n_runs; r++)
        trainer_free(&runs[r]);
    corpus_free(&data);
}

static void test_threads_identical(void)
{
    const int threads[] = { 1, 2, 3 };
    check_threads_identical(threads, G_N_ELEMENTS(threads));
}

/* A NULL pool in a fresh process, before any pool exists (a one-thread command-line run), trains
 * as a pool of one thread does. */
static void test_null_pool_identical(void)
{
    if (g_test_subprocess()) {
        const int threads[] = { 0, 1 };
        check_threads_identical(threads, G_N_ELEMENTS(threads));
        return;
    }
    g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
    g_test_trap_assert_passed();
}

/* ---- schedule and settings ------------------------------------------------------------------- */

static void test_schedule(void)
{
    model_config cfg;
    config_from_json(&cfg, dense_model);
    train_settings s;
    train_settings_default(&s, &cfg);
    s.steps = 1000;
    s.warmup = 100;
    s.lr = 3e-3f;
    s.min_lr = 3e-4f;
    /* linear warm-up from lr/warmup to lr */
    test_assert_close(trainer_lr_at(&s, 0), 3e-5, 1e-12, 1e-6, "lr at 0");
    test_assert_close(trainer_lr_at(&s, 49), 1.5e-3, 1e-12, 1e-6, "lr at 49");
    test_assert_close(trainer_lr_at(&s, 99), 3e-3, 1e-12, 1e-6, "lr at 99");
    /* cosine from lr at the end of warm-up to min_lr at the last step, halfway in the middle */
    test_assert_close(trainer_lr_at(&s, 100), 3e-3, 1e-12, 1e-6, "lr at 100");
    test_assert_close(trainer_lr_at(&s, 550), 1.65e-3, 1e-12, 1e-6, "lr at 550");
    test_assert_close(trainer_lr_at(&s, 1000), 3e-4, 1e-12, 1e-6, "lr at 1000");
    test_assert_close(trainer_lr_at(&s, 5000), 3e-4, 1e-12, 1e-6, "lr past the end");
    float previous = trainer_lr_at(&s, 100);
    for (long step = 101; step <= 1000; step++) {
        float lr = trainer_lr_at(&s, step);
        g_assert_cmpfloat(lr, <=, previous);
        previous = lr;
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/trainer/loss-falls", test_loss_falls);
    g_test_add_func("/trainer/threads-identical", test_threads_identical);
    g_test_add_func("/trainer/sparse-adam", test_sparse_adam);
    g_test_add_func("/trainer/schedule", test_schedule);
    g_test_add_func("/trainer/nan-weight", test_nan_weight);
    g_test_add_func("/trainer/infinite-weight", test_infinite_weight);
    g_test_add_func("/trainer/overflow-keeps-running-statistics",
                    test_overflow_keeps_running_statistics);
    g_test_add_func("/trainer/null-pool-identical", test_null_pool_identical);
    return g_test_run();
}
