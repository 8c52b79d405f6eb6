/* Checkpoints: a model file reads back bit for bit for every kind of block, with the same logits;
 * a trainer file restores the optimiser and the run's position, and a resumed run continues
 * exactly as the uninterrupted one; and every crafted bad file (truncated, oversized, foreign,
 * another version, a bad or disagreeing config, a missing, extra, reshaped or F16 tensor,
 * offsets out of range or overlapping, a trainer file of another model) is refused with a
 * message that names the tensor and the problem. The fuzzing corpus (PEER_FUZZ_CORPUS) is
 * replayed through the model loader too. */
#include <glib/gstdio.h>
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "checkpoint.h"
#include "safetensors.h"
#include "test-util.h"

/* ---- helpers --------------------------------------------------------------------------------- */

static void assert_contains(const char *message, const char *word)
{
    if (!strstr(message, word))
        test_fail("the message lacks \"%s\": %s", word, message);
}

static char *make_temp_dir(void)
{
    GError *error = NULL;
    char *dir = g_dir_make_tmp("test-checkpoint-XXXXXX", &error);
    g_assert_no_error(error);
    return dir;
}

static void remove_temp_dir(const char *dir)
{
    GDir *listing = g_dir_open(dir, 0, NULL);
    g_assert_nonnull(listing);
    for (const char *name; (name = g_dir_read_name(listing));) {
        char *path = g_build_filename(dir, name, NULL);
        g_assert_cmpint(g_unlink(path), ==, 0);
        g_free(path);
    }
    g_dir_close(listing);
    g_assert_cmpint(g_rmdir(dir), ==, 0);
}

static void config_from_json(model_config *cfg, const char *json)
{
    peer_error err = { { 0 } };
    if (!model_config_from_json(cfg, json, &err))
        g_error("config rejected: %s\n%s", err.message, json);
}

#define DENSE_LAYER "{\"ffn\": \"dense\", \"d_ff\": 32}"
#define PEER_LAYER(norm, shared)                                                                  \
    "{\"ffn\": \"peer\", \"n_experts\": 64, \"heads\": 2, \"topk\": 2, \"d_key\": 8, "          \
    "\"shared_keys\": " shared ", \"query_norm\": \"" norm "\", \"activation\": \"gelu\"}"
#define PKM_LAYER(norm)                                                                           \
    "{\"ffn\": \"pkm\", \"n_memories\": 64, \"heads\": 2, \"topk\": 2, \"d_key\": 8, "          \
    "\"shared_keys\": false, \"query_norm\": \"" norm "\"}"
#define MOE_LAYER "{\"ffn\": \"moe\", \"n_experts\": 4, \"topk\": 2, \"d_ff\": 16}"
#define MODEL_JSON(n_layers, layers)                                                              \
    "{\"vocab_size\": 256, \"context\": 16, \"d_model\": 16, \"n_layers\": " n_layers ", "       \
    "\"n_heads\": 2, \"layers\": [" layers "]}"

static const char *const kind_models[] = {
    MODEL_JSON("2", DENSE_LAYER ", " DENSE_LAYER),
    MODEL_JSON("2", PEER_LAYER("batch", "false") ", " PEER_LAYER("layer", "true")),
    MODEL_JSON("2", PEER_LAYER("none", "false") ", " DENSE_LAYER),
    MODEL_JSON("2", PKM_LAYER("batch") ", " PKM_LAYER("none")),
    MODEL_JSON("2", MOE_LAYER ", " MOE_LAYER),
};

/* Every kind in one model: the subject of the resume tests. */
static const char mixed_model[] =
    MODEL_JSON("4", DENSE_LAYER ", " PEER_LAYER("batch", "false") ", " PKM_LAYER("layer") ", "
                    MOE_LAYER);

/* Every tensor, buffers included, random and never zero, so that a tensor read into the wrong
 * place or not at all is seen. */
static void randomise_model(peer_model *model, uint64_t seed)
{
    peer_rng rng;
    peer_rng_seed(&rng, seed);
    for (int i = 0; i < model->n_tensors; i++) {
        model_tensor *t = &model->tensors[i];
        if (strstr(t->name, "running_var"))
            for (size_t k = 0; k < t->n_elements; k++)
                t->param[k] = 0.5f + peer_rng_uniform(&rng);
        else
            peer_rng_fill_normal(&rng, t->param, t->n_elements, 0.3f);
    }
}

static peer_model *model_new(const char *json, int B, int T, uint64_t seed)
{
    model_config cfg;
    config_from_json(&cfg, json);
    peer_error err = { { 0 } };
    peer_model *model = peer_model_new(&cfg, B, T, seed, &err);
    if (!model)
        g_error("peer_model_new: %s", err.message);
    return model;
}

static void save_model(const peer_model *model, const char *path)
{
    peer_error err = { { 0 } };
    if (!checkpoint_save_model(model, path, &err))
        test_fail("checkpoint_save_model: %s", err.message);
}

/* Every tensor bit-identical, in the same order with the same shapes. */
static void assert_same_model(const peer_model *a, const peer_model *b, const char *what)
{
    g_assert_cmpint(a->n_tensors, ==, b->n_tensors);
    g_assert_cmpuint(a->n_params, ==, b->n_params);
    for (int i = 0; i < a->n_tensors; i++) {
        const model_tensor *ta = &a->tensors[i], *tb = &b->tensors[i];
        g_assert_cmpstr(ta->name, ==, tb->name);
        g_assert_cmpint(ta->n_dims, ==, tb->n_dims);
        for (int d = 0; d < ta->n_dims; d++)
            g_assert_cmpint(ta->shape[d], ==, tb->shape[d]);
        for (size_t k = 0; k < ta->n_elements; k++)
            if (memcmp(&ta->param[k], &tb->param[k], sizeof(float)) != 0)
                test_fail("%s: %s[%zu] differs: %.9g and %.9g", what, ta->name, k,
                          (double)ta->param[k], (double)tb->param[k]);
    }
}

/* Words for the trainer to learn from; the corpus keeps a copy of the text. */
static const char *const corpus_words[] = { "the ", "of ", "and ", "to ", "a ", "in ", "was ",
                                            "her ", "she ", "not ", "be ", "that ", "Anne ",
                                            "Wentworth ", "said, ", "Lady Russell. ", "had ",
                                            "would " };

static void word_corpus(corpus *c, int seq_len)
{
    test_word_corpus(c, corpus_words, G_N_ELEMENTS(corpus_words), 100000, seq_len);
}

static void small_settings(train_settings *s, const model_config *cfg)
{
    train_settings_default(s, cfg);
    s->batch_size = 4;
    s->seq_len = 16;
    s->steps = 40;
    s->warmup = 3;
    s->seed = 99;
}

static void trainer_steps(trainer *tr, int steps, double *losses, thread_pool *pool)
{
    peer_error err = { { 0 } };
    for (int i = 0; i < steps; i++) {
        if (!trainer_step(tr, pool, &err))
            test_fail("step %ld failed: %s", tr->step + 1, err.message);
        if (losses)
            losses[i] = tr->last_loss;
    }
}

/* The whole optimiser state and run position of b equal a's. */
static void assert_same_trainer(const trainer *a, const trainer *b)
{
    assert_same_model(a->model, b->model, "model");
    g_assert_cmpint(a->step, ==, b->step);
    g_assert_cmpint(a->opt.step, ==, b->opt.step);
    g_assert_cmpfloat(a->tokens, ==, b->tokens);
    g_assert_cmpfloat(a->flops, ==, b->flops);
    g_assert_cmpuint(a->data_rng.state, ==, b->data_rng.state);
    char *sa = train_settings_to_json(&a->settings), *sb = train_settings_to_json(&b->settings);
    g_assert_cmpstr(sa, ==, sb);
    free(sa);
    free(sb);
    g_assert_cmpuint(a->opt.n_dense, ==, b->opt.n_dense);
    g_assert_cmpmem(a->opt.m, a->opt.n_dense * sizeof(float), b->opt.m,
                    b->opt.n_dense * sizeof(float));
    g_assert_cmpmem(a->opt.v, a->opt.n_dense * sizeof(float), b->opt.v,
                    b->opt.n_dense * sizeof(float));
    g_assert_cmpint(a->opt.n_tables, ==, b->opt.n_tables);
    for (int k = 0; k < a->opt.n_tables; k++) {
        g_assert_cmpint(a->opt.table_tensor[k], ==, b->opt.table_tensor[k]);
        size_t n = a->model->tensors[a->opt.table_tensor[k]].n_elements * sizeof(float);
        g_assert_cmpmem(a->opt.table_m[k], n, b->opt.table_m[k], n);
        g_assert_cmpmem(a->opt.table_v[k], n, b->opt.table_v[k], n);
    }
}

/* ---- round trips ----------------------------------------------------------------------------- */

static void test_model_round_trip(void)
{
    char *dir = make_temp_dir();
    char *path = g_build_filename(dir, "model.safetensors", NULL);
    char *again = g_build_filename(dir, "again.safetensors", NULL);
    for (size_t c = 0; c < G_N_ELEMENTS(kind_models); c++) {
        peer_model *model = model_new(kind_models[c], 2, 16, TEST_SEED + c);
        randomise_model(model, TEST_SEED + 100 + c);
        save_model(model, path);

        peer_error err = { { 0 } };
        model_config cfg;
        g_assert_true(checkpoint_read_config(path, &cfg, &err));
        char *want = model_config_to_json(&model->cfg), *got = model_config_to_json(&cfg);
        g_assert_cmpstr(got, ==, want);
        free(want);
        free(got);

        peer_model *loaded = checkpoint_load_model(path, 2, 0, &err);
        if (!loaded)
            test_fail("%s: checkpoint_load_model: %s", kind_models[c], err.message);
        g_assert_cmpint(loaded->seq, ==, 16);
        assert_same_model(model, loaded, kind_models[c]);

        /* The file is a function of the weights: saving the loaded model gives the same bytes. */
        save_model(loaded, again);
        char *bytes1, *bytes2;
        gsize size1, size2;
        g_assert_true(g_file_get_contents(path, &bytes1, &size1, NULL));
        g_assert_true(g_file_get_contents(again, &bytes2, &size2, NULL));
        g_assert_cmpmem(bytes1, size1, bytes2, size2);
        g_free(bytes1);
        g_free(bytes2);

        /* Same logits in evaluation mode; same loss, and the same running statistics after, in
         * training mode. */
        uint8_t tokens[32], targets[32];
        for (int i = 0; i < 32; i++) {
            tokens[i] = (uint8_t)("It is a truth universally acknowledged"[i]);
            targets[i] = (uint8_t)("t is a truth universally acknowledged"[i]);
        }
        peer_model_forward(model, tokens, NULL, 2, 16, PEER_MODE_EVAL, NULL);
        peer_model_forward(loaded, tokens, NULL, 2, 16, PEER_MODE_EVAL, NULL);
        g_assert_cmpmem(model->acts.logits, 32 * 256 * sizeof(float), loaded->acts.logits,
                        32 * 256 * sizeof(float));
        double loss = peer_model_forward(model, tokens, targets, 2, 16, PEER_MODE_TRAIN, NULL);
        double loaded_loss =
            peer_model_forward(loaded, tokens, targets, 2, 16, PEER_MODE_TRAIN, NULL);
        g_assert_true(isfinite(loss));
        g_assert_cmpmem(&loss, sizeof loss, &loaded_loss, sizeof loaded_loss);
        assert_same_model(model, loaded, "after a training forward");

        peer_model_free(loaded);
        peer_model_free(model);
    }
    remove_temp_dir(dir);
    g_free(path);
    g_free(again);
    g_free(dir);
}

/* The file's header as the contract says: format metadata, the config, the tensor names. */
static void test_model_file_contents(void)
{
    char *dir = make_temp_dir();
    char *path = g_build_filename(dir, "model.safetensors", NULL);
    peer_model *model = model_new(mixed_model, 1, 16, TEST_SEED);
    save_model(model, path);
    safetensors_file file;
    peer_error err = { { 0 } };
    g_assert_true(safetensors_read(&file, path, &err));
    g_assert_cmpstr(safetensors_meta_get(&file, "format"), ==, "peer-workbench");
    g_assert_cmpstr(safetensors_meta_get(&file, "format_version"), ==, "1");
    char *config = model_config_to_json(&model->cfg);
    g_assert_cmpstr(safetensors_meta_get(&file, "config"), ==, config);
    free(config);
    g_assert_cmpint(file.n_tensors, ==, model->n_tensors);
    static const char *const names[] = {
        "tok_emb", "pos_emb", "blocks.0.ln1.weight", "blocks.0.attn.qkv.weight",
        "blocks.0.attn.out.bias", "blocks.0.ffn.fc.weight", "blocks.0.ffn.proj.bias",
        "blocks.1.ffn.query.weight", "blocks.1.ffn.query_norm.running_var", "blocks.1.ffn.keys",
        "blocks.1.ffn.down", "blocks.1.ffn.up", "blocks.2.ffn.values",
        "blocks.2.ffn.query_norm.bias", "blocks.3.ffn.router.weight", "blocks.3.ffn.fc.weight", "blocks.3.ffn.proj.bias",
        "ln_f.weight", "ln_f.bias",
    };
    for (size_t i = 0; i < G_N_ELEMENTS(names); i++)
        if (!safetensors_find(&file, names[i]))
            test_fail("the file has no tensor %s", names[i]);
    g_assert_null(safetensors_find(&file, "blocks.2.ffn.query_norm.running_mean"));
    const safetensors_tensor *keys = safetensors_find(&file, "blocks.1.ffn.keys");
    g_assert_cmpint(keys->n_dims, ==, 4);
    g_assert_cmpint(keys->shape[0], ==, 2);
    g_assert_cmpint(keys->shape[1], ==, 2);
    g_assert_cmpint(keys->shape[2], ==, 8);
    g_assert_cmpint(keys->shape[3], ==, 4);
    const safetensors_tensor *fc = safetensors_find(&file, "blocks.3.ffn.fc.weight");
    g_assert_cmpint(fc->n_dims, ==, 3);
    g_assert_cmpint(fc->shape[0], ==, 4);
    g_assert_cmpint(fc->shape[1], ==, 16);
    g_assert_cmpint(fc->shape[2], ==, 16);
    safetensors_free(&file);
    peer_model_free(model);

    char *trainer_path = checkpoint_trainer_path(path);
    char *want = g_build_filename(dir, "model.trainer.safetensors", NULL);
    g_assert_cmpstr(trainer_path, ==, want);
    free(trainer_path);
    g_free(want);
    trainer_path = checkpoint_trainer_path("run");
    g_assert_cmpstr(trainer_path, ==, "run.trainer.safetensors");
    free(trainer_path);

    remove_temp_dir(dir);
    g_free(path);
    g_free(dir);
}

static void test_trainer_round_trip(void)
{
    char *dir = make_temp_dir();
    char *path = g_build_filename(dir, "run.safetensors", NULL);
    char *trainer_path = checkpoint_trainer_path(path);
    model_config cfg;
    config_from_json(&cfg, mixed_model);
    train_settings s;
    small_settings(&s, &cfg);
    corpus data;
    word_corpus(&data, s.seq_len);
    trainer tr;
    peer_error err = { { 0 } };
    g_assert_true(trainer_init(&tr, &cfg, &s, &data, &err));
    trainer_steps(&tr, 3, NULL, NULL);
    save_model(tr.model, path);
    if (!checkpoint_save_trainer(&tr, trainer_path, &err))
        test_fail("checkpoint_save_trainer: %s", err.message);

    trainer resumed;
    if (!checkpoint_resume(&resumed, path, trainer_path, &data, NULL, &err))
        test_fail("checkpoint_resume: %s", err.message);
    assert_same_trainer(&tr, &resumed);
    g_assert_true(resumed.data == &data);
    trainer_free(&resumed);

    /* A longer run from the same files: only the length changes. */
    long steps = 500;
    if (!checkpoint_resume(&resumed, path, trainer_path, &data, &steps, &err))
        test_fail("checkpoint_resume: %s", err.message);
    g_assert_cmpint(resumed.settings.steps, ==, 500);
    g_assert_cmpint(resumed.step, ==, 3);
    trainer_free(&resumed);

    trainer_free(&tr);
    corpus_free(&data);
    remove_temp_dir(dir);
    g_free(path);
    free(trainer_path);
    g_free(dir);
}

/* ---- resume ---------------------------------------------------------------------------------- */

#define RESUME_BEFORE 4
#define RESUME_AFTER 6

/* Train N steps, save, train M more; separately resume the save and train M: the losses, every
 * weight, buffer and moment, and the run's position come out identical. */
static void check_resume(int threads)
{
    peer_error err = { { 0 } };
    thread_pool *pool = NULL;
    if (threads) {
        pool = thread_pool_new(threads, &err);
        g_assert_nonnull(pool);
    }
    char *dir = make_temp_dir();
    char *path = g_build_filename(dir, "run.safetensors", NULL);
    char *trainer_path = checkpoint_trainer_path(path);
    model_config cfg;
    config_from_json(&cfg, mixed_model);
    train_settings s;
    small_settings(&s, &cfg);
    corpus data;
    word_corpus(&data, s.seq_len);

    trainer whole;
    g_assert_true(trainer_init(&whole, &cfg, &s, &data, &err));
    trainer_steps(&whole, RESUME_BEFORE, NULL, pool);
    save_model(whole.model, path);
    if (!checkpoint_save_trainer(&whole, trainer_path, &err))
        test_fail("checkpoint_save_trainer: %s", err.message);
    double whole_losses[RESUME_AFTER], resumed_losses[RESUME_AFTER];
    trainer_steps(&whole, RESUME_AFTER, whole_losses, pool);

    trainer resumed;
    if (!checkpoint_resume(&resumed, path, trainer_path, &data, NULL, &err))
        test_fail("checkpoint_resume: %s", err.message);
    g_assert_cmpint(resumed.step, ==, RESUME_BEFORE);
    trainer_steps(&resumed, RESUME_AFTER, resumed_losses, pool);
    for (int i = 0; i < RESUME_AFTER; i++)
        if (memcmp(&whole_losses[i], &resumed_losses[i], sizeof(double)) != 0)
            test_fail("step %d: the resumed run's loss is %.17g, the uninterrupted run's %.17g",
                      RESUME_BEFORE + i + 1, resumed_losses[i], whole_losses[i]);
    assert_same_trainer(&whole, &resumed);
    g_assert_cmpfloat(resumed.last_lr, ==, whole.last_lr);

    trainer_free(&resumed);
    trainer_free(&whole);
    corpus_free(&data);
    remove_temp_dir(dir);
    g_free(path);
    free(trainer_path);
    g_free(dir);
    thread_pool_free(pool);
}

static void test_resume_one_thread(void)
{
    check_resume(0);
}

static void test_resume_two_threads(void)
{
    check_resume(2);
}

/* ---- crafted bad files ----------------------------------------------------------------------- */

/* A model file taken apart: its header as JSON and its data section, put back together with
 * any change. */
typedef struct {
    json_t *header;
    GByteArray *data;
} crafted;

static void crafted_read(crafted *c, const char *path)
{
    char *bytes;
    gsize size;
    g_assert_true(g_file_get_contents(path, &bytes, &size, NULL));
    uint64_t length = 0;
    for (int i = 0; i < 8; i++)
        length |= (uint64_t)(uint8_t)bytes[i] << (8 * i);
    json_error_t error;
    c->header = json_loadb(bytes + 8, (size_t)length, 0, &error);
    g_assert_nonnull(c->header);
    c->data = g_byte_array_new();
    g_byte_array_append(c->data, (const guint8 *)bytes + 8 + length, (guint)(size - 8 - length));
    g_free(bytes);
}

static void crafted_free(crafted *c)
{
    json_decref(c->header);
    g_byte_array_unref(c->data);
}

/* The whole file; g_free it. */
static uint8_t *crafted_bytes(const crafted *c, size_t *size)
{
    char *header = json_dumps(c->header, JSON_COMPACT);
    size_t length = strlen(header);
    *size = 8 + length + c->data->len;
    uint8_t *bytes = g_malloc(*size);
    for (int i = 0; i < 8; i++)
        bytes[i] = (uint8_t)((uint64_t)length >> (8 * i));
    memcpy(bytes + 8, header, length);
    memcpy(bytes + 8 + length, c->data->data, c->data->len);
    free(header);
    return bytes;
}

static json_t *crafted_tensor(const crafted *c, const char *name)
{
    json_t *t = json_object_get(c->header, name);
    if (!t)
        g_error("no tensor %s in the crafted file", name);
    return t;
}

static void crafted_offsets(const crafted *c, const char *name, size_t *begin, size_t *end)
{
    json_t *offsets = json_object_get(crafted_tensor(c, name), "data_offsets");
    *begin = (size_t)json_integer_value(json_array_get(offsets, 0));
    *end = (size_t)json_integer_value(json_array_get(offsets, 1));
}

static void crafted_set_offsets(crafted *c, const char *name, json_int_t begin, json_int_t end)
{
    json_object_set_new(crafted_tensor(c, name), "data_offsets",
                        json_pack("[I, I]", begin, end));
}

/* Cuts bytes [at, at + count) out of the data, moving every later tensor down. */
static void crafted_cut(crafted *c, size_t at, size_t count)
{
    g_byte_array_remove_range(c->data, (guint)at, (guint)count);
    const char *key;
    json_t *value;
    json_object_foreach(c->header, key, value) {
        if (strcmp(key, "__metadata__") == 0)
            continue;
        size_t begin, end;
        crafted_offsets(c, key, &begin, &end);
        if (begin >= at + count)
            crafted_set_offsets(c, key, (json_int_t)(begin - count), (json_int_t)(end - count));
        else if (end >= at + count)
            crafted_set_offsets(c, key, (json_int_t)begin, (json_int_t)(end - count));
    }
}

static void crafted_remove_tensor(crafted *c, const char *name)
{
    size_t begin, end;
    crafted_offsets(c, name, &begin, &end);
    json_object_del(c->header, name);
    crafted_cut(c, begin, end - begin);
}

static void crafted_add_tensor(crafted *c, const char *name, int count)
{
    size_t begin = c->data->len;
    for (int i = 0; i < count; i++) {
        float value = 0.25f * (float)i;
        g_byte_array_append(c->data, (const guint8 *)&value, sizeof value);
    }
    json_object_set_new(c->header, name,
                        json_pack("{s:s, s:[i], s:[I, I]}", "dtype", "F32", "shape", count,
                                  "data_offsets", (json_int_t)begin,
                                  (json_int_t)(begin + (size_t)count * sizeof(float))));
}

static void crafted_set_meta(crafted *c, const char *key, const char *value)
{
    json_t *meta = json_object_get(c->header, "__metadata__");
    g_assert_nonnull(meta);
    if (value)
        json_object_set_new(meta, key, json_string(value));
    else
        json_object_del(meta, key);
}

/* Replaces `from` in the config metadata by `to`. */
static void crafted_edit_config(crafted *c, const char *from, const char *to)
{
    json_t *meta = json_object_get(c->header, "__metadata__");
    const char *config = json_string_value(json_object_get(meta, "config"));
    g_assert_nonnull(strstr(config, from));
    GString *edited = g_string_new(config);
    g_string_replace(edited, from, to, 1);
    json_object_set_new(meta, "config", json_string(edited->str));
    g_string_free(edited, TRUE);
}

typedef struct {
    char *dir;
    char *model_path;   /* a good model file of mixed_model */
    char *trainer_path; /* and its trainer file */
    char *bad_path;     /* where each bad file goes */
} bad_files;

static void bad_files_init(bad_files *b)
{
    b->dir = make_temp_dir();
    b->model_path = g_build_filename(b->dir, "good.safetensors", NULL);
    b->trainer_path = checkpoint_trainer_path(b->model_path);
    b->bad_path = g_build_filename(b->dir, "bad.safetensors", NULL);
    model_config cfg;
    config_from_json(&cfg, mixed_model);
    train_settings s;
    small_settings(&s, &cfg);
    corpus data;
    word_corpus(&data, s.seq_len);
    trainer tr;
    peer_error err = { { 0 } };
    g_assert_true(trainer_init(&tr, &cfg, &s, &data, &err));
    trainer_steps(&tr, 1, NULL, NULL);
    save_model(tr.model, b->model_path);
    g_assert_true(checkpoint_save_trainer(&tr, b->trainer_path, &err));
    trainer_free(&tr);
    corpus_free(&data);
}

static void bad_files_free(bad_files *b)
{
    remove_temp_dir(b->dir);
    g_free(b->dir);
    g_free(b->model_path);
    free(b->trainer_path);
    g_free(b->bad_path);
}

/* Writes bytes to the bad path; the model loader, the config reader and (with the good trainer
 * file) checkpoint_resume must all refuse it, naming the file, and the model loader's message
 * must hold each of the words. */
static void expect_bytes_refused(const bad_files *b, const uint8_t *bytes, size_t size,
                                 const char *what, const char *const *words)
{
    GError *error = NULL;
    g_assert_true(g_file_set_contents(b->bad_path, (const char *)bytes, (gssize)size, &error));
    g_assert_no_error(error);
    peer_error err = { { 0 } };
    peer_model *model = checkpoint_load_model(b->bad_path, 1, 0, &err);
    if (model)
        test_fail("%s: the model file was accepted", what);
    g_test_message("%s: %s", what, err.message);
    assert_contains(err.message, b->bad_path);
    for (const char *const *w = words; w && *w; w++)
        assert_contains(err.message, *w);

    corpus data;
    word_corpus(&data, 16);
    trainer tr;
    peer_error resume_err = { { 0 } };
    if (checkpoint_resume(&tr, b->bad_path, b->trainer_path, &data, NULL, &resume_err))
        test_fail("%s: checkpoint_resume accepted the model file", what);
    assert_contains(resume_err.message, b->bad_path);
    corpus_free(&data);
}

static void expect_refused(const bad_files *b, const crafted *c, const char *what,
                           const char *const *words)
{
    size_t size;
    uint8_t *bytes = crafted_bytes(c, &size);
    expect_bytes_refused(b, bytes, size, what, words);
    g_free(bytes);
}

#define WORDS(...) ((const char *const[]){ __VA_ARGS__, NULL })

/* The crafted file itself, put together unchanged, loads: the tools above are sound. */
static void test_crafted_unchanged_loads(void)
{
    bad_files b;
    bad_files_init(&b);
    crafted c;
    crafted_read(&c, b.model_path);
    size_t size;
    uint8_t *bytes = crafted_bytes(&c, &size);
    GError *error = NULL;
    g_assert_true(g_file_set_contents(b.bad_path, (const char *)bytes, (gssize)size, &error));
    peer_error err = { { 0 } };
    peer_model *model = checkpoint_load_model(b.bad_path, 1, 0, &err);
    if (!model)
        test_fail("the rebuilt file is refused: %s", err.message);
    peer_model *original = checkpoint_load_model(b.model_path, 1, 0, &err);
    g_assert_nonnull(original);
    assert_same_model(original, model, "rebuilt");
    peer_model_free(model);
    peer_model_free(original);
    g_free(bytes);
    crafted_free(&c);
    bad_files_free(&b);
}

/* Every prefix of a good file is refused: one that ends inside the data names a tensor that runs
 * past its end, the last one when only the last bytes are gone. */
static void test_truncated(void)
{
    bad_files b;
    bad_files_init(&b);
    char *bytes;
    gsize size;
    g_assert_true(g_file_get_contents(b.model_path, &bytes, &size, NULL));
    uint64_t header = 0;
    for (int i = 0; i < 8; i++)
        header |= (uint64_t)(uint8_t)bytes[i] << (8 * i);
    size_t data_start = 8 + (size_t)header;
    size_t cuts[] = { 0, 1, 7, 8, 9, data_start / 2, data_start - 1, data_start, data_start + 1,
                      data_start + 4, (data_start + size) / 2, size - 4, size - 1 };
    for (size_t k = 0; k < G_N_ELEMENTS(cuts); k++) {
        char *what = g_strdup_printf("cut to %zu of %zu bytes", cuts[k], (size_t)size);
        const char *const *words = cuts[k] >= size - 4   ? WORDS("ln_f.bias", "past")
                                   : cuts[k] >= data_start ? WORDS("past")
                                   : cuts[k] >= 8          ? WORDS("header length")
                                                           : WORDS("too short");
        expect_bytes_refused(&b, (const uint8_t *)bytes, cuts[k], what, words);
        g_free(what);
    }
    /* and a sweep, for the sanitizers: no prefix is read beyond its end */
    GError *error = NULL;
    for (size_t cut = 0; cut < size; cut += 1 + size / 97) {
        g_assert_true(g_file_set_contents(b.bad_path, bytes, (gssize)cut, &error));
        peer_error err = { { 0 } };
        g_assert_null(checkpoint_load_model(b.bad_path, 1, 0, &err));
        g_assert_cmpuint(strlen(err.message), >, 0);
    }
    g_free(bytes);
    bad_files_free(&b);
}

static void test_oversized_header_length(void)
{
    bad_files b;
    bad_files_init(&b);
    char *bytes;
    gsize size;
    g_assert_true(g_file_get_contents(b.model_path, &bytes, &size, NULL));
    uint64_t lengths[] = { size - 7, size, (uint64_t)1 << 40, UINT64_MAX };
    for (size_t k = 0; k < G_N_ELEMENTS(lengths); k++) {
        for (int i = 0; i < 8; i++)
            bytes[i] = (char)(lengths[k] >> (8 * i));
        char *what = g_strdup_printf("header length %" G_GUINT64_FORMAT, lengths[k]);
        expect_bytes_refused(&b, (const uint8_t *)bytes, size, what, WORDS("header length"));
        g_free(what);
    }
    g_free(bytes);
    bad_files_free(&b);
}

static void test_foreign(void)
{
    bad_files b;
    bad_files_init(&b);
    crafted c;

    crafted_read(&c, b.model_path);
    crafted_set_meta(&c, "format", NULL);
    expect_refused(&b, &c, "no format", WORDS("\"format\"", "missing"));
    crafted_free(&c);

    crafted_read(&c, b.model_path);
    crafted_set_meta(&c, "format", "pt");
    expect_refused(&b, &c, "format pt", WORDS("\"format\"", "\"pt\""));
    crafted_free(&c);

    /* a PyTorch-style file: tensors and no metadata at all */
    crafted_read(&c, b.model_path);
    json_object_del(c.header, "__metadata__");
    expect_refused(&b, &c, "no metadata", WORDS("peer-workbench", "format"));
    crafted_free(&c);

    crafted_read(&c, b.model_path);
    crafted_set_meta(&c, "format_version", "2");
    expect_refused(&b, &c, "format_version 2", WORDS("format_version", "\"2\""));
    crafted_free(&c);

    crafted_read(&c, b.model_path);
    crafted_set_meta(&c, "format_version", NULL);
    expect_refused(&b, &c, "no format_version", WORDS("format_version", "missing"));
    crafted_free(&c);

    /* a trainer file is not a model file */
    char *bytes;
    gsize size;
    g_assert_true(g_file_get_contents(b.trainer_path, &bytes, &size, NULL));
    expect_bytes_refused(&b, (const uint8_t *)bytes, size, "a trainer file",
                         WORDS("peer-workbench-trainer"));
    g_free(bytes);
    bad_files_free(&b);
}

static void test_bad_config(void)
{
    bad_files b;
    bad_files_init(&b);
    crafted c;

    crafted_read(&c, b.model_path);
    crafted_set_meta(&c, "config", NULL);
    expect_refused(&b, &c, "no config", WORDS("\"config\""));
    crafted_free(&c);

    crafted_read(&c, b.model_path);
    crafted_set_meta(&c, "config", "{\"vocab_size\": 256, \"context\": ");
    expect_refused(&b, &c, "config not JSON", WORDS("config", "JSON"));
    crafted_free(&c);

    crafted_read(&c, b.model_path);
    crafted_edit_config(&c, "\"d_model\":16", "\"d_model\":0");
    expect_refused(&b, &c, "config d_model 0", WORDS("config", "d_model"));
    crafted_free(&c);

    crafted_read(&c, b.model_path);
    crafted_edit_config(&c, "\"n_layers\":4", "\"n_layers\":4,\"dropout\":0.1");
    expect_refused(&b, &c, "config with an unknown key", WORDS("config", "dropout"));
    crafted_free(&c);
    bad_files_free(&b);
}

/* A valid config that describes another model than the tensors hold. */
static void test_config_disagrees(void)
{
    bad_files b;
    bad_files_init(&b);
    crafted c;

    crafted_read(&c, b.model_path);
    crafted_edit_config(&c, "\"d_model\":16", "\"d_model\":32");
    expect_refused(&b, &c, "config wider", WORDS("\"tok_emb\"", "shape", "(256, 16)", "(256, 32)"));
    crafted_free(&c);

    crafted_read(&c, b.model_path);
    crafted_edit_config(&c, "\"context\":16", "\"context\":32");
    expect_refused(&b, &c, "config longer context", WORDS("\"pos_emb\"", "shape", "(32, 16)"));
    crafted_free(&c);

    crafted_read(&c, b.model_path);
    crafted_edit_config(&c, "{\"ffn\":\"dense\",\"d_ff\":32}", "{\"ffn\":\"dense\",\"d_ff\":64}");
    expect_refused(&b, &c, "config d_ff", WORDS("\"blocks.0.ffn.fc.weight\"", "shape"));
    crafted_free(&c);

    crafted_read(&c, b.model_path);
    crafted_edit_config(&c, "\"n_experts\":64", "\"n_experts\":256");
    expect_refused(&b, &c, "config n_experts", WORDS("\"blocks.1.ffn.keys\"", "shape"));
    crafted_free(&c);

    /* a block of another kind: its tensors are missing */
    crafted_read(&c, b.model_path);
    crafted_edit_config(&c, "{\"ffn\":\"dense\",\"d_ff\":32}",
                        "{\"ffn\":\"moe\",\"n_experts\":2,\"topk\":1,\"d_ff\":32}");
    expect_refused(&b, &c, "config kind", WORDS("\"blocks.0.ffn.router.weight\"", "missing"));
    crafted_free(&c);

    /* batch-norm in the config, layer norm in the file: the running statistics are missing */
    crafted_read(&c, b.model_path);
    crafted_edit_config(&c, "\"query_norm\":\"layer\"", "\"query_norm\":\"batch\"");
    expect_refused(&b, &c, "config norm",
                   WORDS("\"blocks.2.ffn.query_norm.running_mean\"", "missing"));
    crafted_free(&c);

    /* fewer layers than the file holds: the rest are extra */
    crafted_read(&c, b.model_path);
    crafted_edit_config(&c, "\"n_layers\":4", "\"n_layers\":3");
    crafted_edit_config(&c, ",{\"ffn\":\"moe\",\"n_experts\":4,\"topk\":2,\"d_ff\":16}", "");
    expect_refused(&b, &c, "config fewer layers", WORDS("blocks.3.", "not part"));
    crafted_free(&c);
    bad_files_free(&b);
}

static void test_bad_tensors(void)
{
    bad_files b;
    bad_files_init(&b);
    crafted c;

    crafted_read(&c, b.model_path);
    json_object_set_new(crafted_tensor(&c, "blocks.0.attn.qkv.weight"), "shape",
                        json_pack("[i, i]", 16, 48));
    expect_refused(&b, &c, "shape transposed",
                   WORDS("\"blocks.0.attn.qkv.weight\"", "shape (16, 48)", "(48, 16)"));
    crafted_free(&c);

    crafted_read(&c, b.model_path);
    json_object_set_new(crafted_tensor(&c, "blocks.1.ffn.keys"), "shape",
                        json_pack("[i, i, i]", 2, 16, 4));
    expect_refused(&b, &c, "keys with 3 dimensions", WORDS("\"blocks.1.ffn.keys\"", "shape"));
    crafted_free(&c);

    crafted_read(&c, b.model_path);
    crafted_remove_tensor(&c, "blocks.1.ln2.bias");
    expect_refused(&b, &c, "missing tensor", WORDS("\"blocks.1.ln2.bias\"", "missing"));
    crafted_free(&c);

    crafted_read(&c, b.model_path);
    crafted_remove_tensor(&c, "blocks.1.ffn.query_norm.running_var");
    expect_refused(&b, &c, "missing buffer",
                   WORDS("\"blocks.1.ffn.query_norm.running_var\"", "missing"));
    crafted_free(&c);

    crafted_read(&c, b.model_path);
    crafted_add_tensor(&c, "blocks.0.ffn.extra", 5);
    expect_refused(&b, &c, "extra tensor", WORDS("\"blocks.0.ffn.extra\"", "not part"));
    crafted_free(&c);

    crafted_read(&c, b.model_path);
    crafted_add_tensor(&c, "lm_head.weight", 3);
    expect_refused(&b, &c, "extra head", WORDS("\"lm_head.weight\"", "not part"));
    crafted_free(&c);

    /* F16: the same shape in half the bytes */
    crafted_read(&c, b.model_path);
    size_t begin, end;
    crafted_offsets(&c, "ln_f.weight", &begin, &end);
    crafted_cut(&c, begin + (end - begin) / 2, (end - begin) / 2);
    json_object_set_new(crafted_tensor(&c, "ln_f.weight"), "dtype", json_string("F16"));
    expect_refused(&b, &c, "F16 tensor", WORDS("ln_f.weight", "F16"));
    crafted_free(&c);

    crafted_read(&c, b.model_path);
    json_object_set_new(crafted_tensor(&c, "tok_emb"), "dtype", json_string("F64"));
    expect_refused(&b, &c, "F64 tensor", WORDS("tok_emb", "F64"));
    crafted_free(&c);

    /* offsets beyond the data */
    crafted_read(&c, b.model_path);
    crafted_offsets(&c, "ln_f.bias", &begin, &end);
    crafted_set_offsets(&c, "ln_f.bias", (json_int_t)begin + 8, (json_int_t)end + 8);
    expect_refused(&b, &c, "offsets past the end", WORDS("ln_f.bias", "past"));
    crafted_free(&c);

    crafted_read(&c, b.model_path);
    crafted_set_offsets(&c, "blocks.0.ln1.bias", (json_int_t)1 << 40, ((json_int_t)1 << 40) + 64);
    expect_refused(&b, &c, "offsets far away", WORDS("blocks.0.ln1.bias", "past"));
    crafted_free(&c);

    /* two tensors of the same size on the same bytes */
    crafted_read(&c, b.model_path);
    crafted_offsets(&c, "blocks.0.ln1.weight", &begin, &end);
    crafted_set_offsets(&c, "blocks.0.ln1.bias", (json_int_t)begin, (json_int_t)end);
    expect_refused(&b, &c, "overlapping tensors", WORDS("blocks.0.ln1.", "overlap"));
    crafted_free(&c);

    /* overlapping by half */
    crafted_read(&c, b.model_path);
    crafted_offsets(&c, "blocks.0.ln2.weight", &begin, &end);
    crafted_set_offsets(&c, "blocks.0.ln2.bias", (json_int_t)(begin + 32),
                        (json_int_t)(end + 32));
    expect_refused(&b, &c, "half-overlapping tensors", WORDS("blocks.0.ln2.", "overlap"));
    crafted_free(&c);

    /* a header that is not JSON */
    crafted_read(&c, b.model_path);
    size_t size;
    uint8_t *bytes = crafted_bytes(&c, &size);
    size_t header_length = (size_t)bytes[0] | (size_t)bytes[1] << 8 | (size_t)bytes[2] << 16;
    g_assert_cmpint(bytes[8 + header_length - 1], ==, '}');
    bytes[8 + header_length - 1] = ',';
    expect_bytes_refused(&b, bytes, size, "header not JSON", WORDS("JSON"));
    g_free(bytes);
    crafted_free(&c);
    bad_files_free(&b);
}

/* Trainer files: one of another model, a model file given as the trainer file, and damaged
 * optimiser state or run position. */
static void test_bad_trainer_files(void)
{
    bad_files b;
    bad_files_init(&b);
    corpus data;
    word_corpus(&data, 16);
    trainer tr;
    peer_error err = { { 0 } };

    /* the trainer file of a dense model beside the mixed model */
    char *other = g_build_filename(b.dir, "other.safetensors", NULL);
    char *other_trainer = checkpoint_trainer_path(other);
    model_config cfg;
    config_from_json(&cfg, kind_models[0]);
    train_settings s;
    small_settings(&s, &cfg);
    trainer dense;
    g_assert_true(trainer_init(&dense, &cfg, &s, &data, &err));
    trainer_steps(&dense, 1, NULL, NULL);
    save_model(dense.model, other);
    g_assert_true(checkpoint_save_trainer(&dense, other_trainer, &err));
    trainer_free(&dense);
    g_assert_false(checkpoint_resume(&tr, b.model_path, other_trainer, &data, NULL, &err));
    g_test_message("another model's trainer file: %s", err.message);
    assert_contains(err.message, other_trainer);
    assert_contains(err.message, "different model");
    g_assert_null(tr.model);
    g_assert_false(checkpoint_resume(&tr, other, b.trainer_path, &data, NULL, &err));
    assert_contains(err.message, "different model");

    /* files swapped */
    g_assert_false(checkpoint_resume(&tr, b.model_path, b.model_path, &data, NULL, &err));
    g_test_message("model file as trainer file: %s", err.message);
    assert_contains(err.message, "peer-workbench-trainer");

    /* a moment with the wrong shape, a missing moment, a missing position; the extra moment last,
     * as the one whose message names no tensor yet */
    enum { RESHAPED, MISSING, NO_STEP, STEP_WORD, RNG_WORD, SETTINGS_BAD, EXTRA };
    static const struct {
        int damage;
        const char *what;
        const char *word;
    } cases[] = {
        { RESHAPED, "moment reshaped", "adam.m.blocks.0.attn.qkv.weight" },
        { MISSING, "moment missing", "adam.v.blocks.1.ffn.down" },
        { NO_STEP, "no step", "\"step\"" },
        { STEP_WORD, "step not a number", "\"step\"" },
        { RNG_WORD, "rng not hexadecimal", "data_rng" },
        { SETTINGS_BAD, "settings invalid", "lr = -1" },
        { EXTRA, "moment extra", "adam.m.blocks.9.ffn.up" },
    };
    for (size_t k = 0; k < G_N_ELEMENTS(cases); k++) {
        crafted c;
        crafted_read(&c, b.trainer_path);
        switch (cases[k].damage) {
        case RESHAPED:
            json_object_set_new(crafted_tensor(&c, "adam.m.blocks.0.attn.qkv.weight"), "shape",
                                json_pack("[i, i]", 16, 48));
            break;
        case MISSING: crafted_remove_tensor(&c, "adam.v.blocks.1.ffn.down"); break;
        case NO_STEP: crafted_set_meta(&c, "step", NULL); break;
        case STEP_WORD: crafted_set_meta(&c, "step", "three"); break;
        case RNG_WORD: crafted_set_meta(&c, "data_rng", "xyz"); break;
        case SETTINGS_BAD: {
            json_t *meta = json_object_get(c.header, "__metadata__");
            const char *text = json_string_value(json_object_get(meta, "settings"));
            json_t *settings = json_loads(text, 0, NULL);
            g_assert_nonnull(settings);
            json_object_set_new(settings, "lr", json_real(-1.0));
            char *edited = json_dumps(settings, JSON_COMPACT);
            json_object_set_new(meta, "settings", json_string(edited));
            free(edited);
            json_decref(settings);
            break;
        }
        case EXTRA: crafted_add_tensor(&c, "adam.m.blocks.9.ffn.up", 4); break;
        }
        size_t size;
        uint8_t *bytes = crafted_bytes(&c, &size);
        GError *error = NULL;
        g_assert_true(g_file_set_contents(b.bad_path, (const char *)bytes, (gssize)size, &error));
        peer_error resume_err = { { 0 } };
        if (checkpoint_resume(&tr, b.model_path, b.bad_path, &data, NULL, &resume_err))
            test_fail("%s: the trainer file was accepted", cases[k].what);
        g_test_message("%s: %s", cases[k].what, resume_err.message);
        if (cases[k].damage != SETTINGS_BAD) /* its message names the setting, not the file */
            assert_contains(resume_err.message, b.bad_path);
        assert_contains(resume_err.message, cases[k].word);
        g_assert_null(tr.model);
        g_free(bytes);
        crafted_free(&c);
    }

    /* the good pair still resumes */
    g_assert_true(checkpoint_resume(&tr, b.model_path, b.trainer_path, &data, NULL, &err));
    trainer_free(&tr);
    corpus_free(&data);
    g_free(other);
    free(other_trainer);
    bad_files_free(&b);
}

/* A file of one small tensor whose config declares 64 blocks of width 65536 (terabytes of
 * weights): the loader compares the tensors with the config before it allocates the model, so it
 * answers with the tensor that disagrees, not with an allocation the size the file claims.
 * Registered last: a loader that does allocate first aborts a sanitizer build here. */
static void test_config_declares_huge_model(void)
{
    GString *config = g_string_new("{\"vocab_size\":256,\"context\":65536,\"d_model\":65536,"
                                   "\"n_layers\":64,\"n_heads\":1,\"layers\":[");
    for (int l = 0; l < 64; l++)
        g_string_append(config, l ? ",{\"ffn\":\"dense\",\"d_ff\":1048576}"
                                  : "{\"ffn\":\"dense\",\"d_ff\":1048576}");
    g_string_append(config, "]}");
    model_config cfg;
    config_from_json(&cfg, config->str);
    char *dir = make_temp_dir();
    char *path = g_build_filename(dir, "huge.safetensors", NULL);
    float values[4] = { 1.0f, 2.0f, 3.0f, 4.0f };
    safetensors_entry entry = { "tok_emb", 2, { 2, 2 }, values };
    safetensors_meta meta[] = {
        { "format", CHECKPOINT_FORMAT },
        { "format_version", CHECKPOINT_FORMAT_VERSION },
        { "config", config->str },
    };
    peer_error err = { { 0 } };
    g_assert_true(safetensors_write(path, &entry, 1, meta, 3, &err));
    peer_model *model = checkpoint_load_model(path, 1, 0, &err);
    g_assert_null(model);
    g_test_message("%s", err.message);
    assert_contains(err.message, "\"tok_emb\"");
    assert_contains(err.message, "shape");
    remove_temp_dir(dir);
    g_free(path);
    g_free(dir);
    g_string_free(config, TRUE);
}

/* The fuzzers' safetensors corpus: none of these is a workbench model, so the loader refuses
 * every one with a message, and reads none beyond its end. */
static void test_fuzz_corpus(void)
{
    const char *root = g_getenv("PEER_FUZZ_CORPUS");
    if (!root) {
        g_test_skip("PEER_FUZZ_CORPUS is not set (meson test sets it to fuzz/corpus)");
        return;
    }
    char *dir = g_build_filename(root, "safetensors", NULL);
    GDir *listing = g_dir_open(dir, 0, NULL);
    g_assert_nonnull(listing);
    int count = 0;
    for (const char *name; (name = g_dir_read_name(listing));) {
        char *path = g_build_filename(dir, name, NULL);
        peer_error err = { { 0 } };
        peer_model *model = checkpoint_load_model(path, 1, 0, &err);
        if (model)
            test_fail("%s was loaded as a model", name);
        assert_contains(err.message, path);
        model_config cfg;
        g_assert_false(checkpoint_read_config(path, &cfg, &err));
        count++;
        g_free(path);
    }
    g_dir_close(listing);
    g_assert_cmpint(count, >=, 40);
    g_free(dir);
}

/* A save into a folder that does not exist fails with the path in the message. */
static void test_save_fails_cleanly(void)
{
    peer_model *model = model_new(kind_models[0], 1, 16, TEST_SEED);
    peer_error err = { { 0 } };
    g_assert_false(checkpoint_save_model(model, "/nonexistent/folder/model.safetensors", &err));
    assert_contains(err.message, "/nonexistent/folder/model.safetensors");
    peer_model_free(model);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/checkpoint/model-round-trip", test_model_round_trip);
    g_test_add_func("/checkpoint/model-file-contents", test_model_file_contents);
    g_test_add_func("/checkpoint/trainer-round-trip", test_trainer_round_trip);
    g_test_add_func("/checkpoint/resume/one-thread", test_resume_one_thread);
    g_test_add_func("/checkpoint/resume/two-threads", test_resume_two_threads);
    g_test_add_func("/checkpoint/bad/crafted-unchanged-loads", test_crafted_unchanged_loads);
    g_test_add_func("/checkpoint/bad/truncated", test_truncated);
    g_test_add_func("/checkpoint/bad/oversized-header-length", test_oversized_header_length);
    g_test_add_func("/checkpoint/bad/foreign", test_foreign);
    g_test_add_func("/checkpoint/bad/config", test_bad_config);
    g_test_add_func("/checkpoint/bad/config-disagrees", test_config_disagrees);
    g_test_add_func("/checkpoint/bad/tensors", test_bad_tensors);
    g_test_add_func("/checkpoint/bad/fuzz-corpus", test_fuzz_corpus);
    g_test_add_func("/checkpoint/bad/trainer-files", test_bad_trainer_files);
    g_test_add_func("/checkpoint/save-fails-cleanly", test_save_fails_cleanly);
    g_test_add_func("/checkpoint/bad/config-declares-huge-model", test_config_declares_huge_model);
    return g_test_run();
}
