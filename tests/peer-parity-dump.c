/* The engine's side of the PyTorch parity tests (python/tests): runs the engine on a checkpoint
 * and writes what it computed, for the PyTorch model to be compared against.
 *
 *   peer-parity-dump init CONFIG.json SEED OUT       a fresh model from the engine's initialisation
 *   peer-parity-dump grads MODEL BATCH B T OUT       one batch: logits and losses in evaluation and
 *                                                    training mode, the experts chosen, every
 *                                                    gradient (the sparse ones as whole tables),
 *                                                    the gradient norm, the running statistics
 *   peer-parity-dump train MODEL TEXT SETTINGS.json STEPS OUT
 *                                                    STEPS trainer steps from MODEL's weights with
 *                                                    fresh optimiser state; OUT and its trainer file
 *   peer-parity-dump resume MODEL TEXT STEPS OUT     STEPS more steps of the run saved in MODEL and
 *                                                    its trainer file, as the workbench resumes it
 *   peer-parity-dump open RUN_DIR TEXT               the run folder as the workbench opens it: its
 *                                                    history, then a session on its checkpoint
 *
 * BATCH holds B sequences of T + 1 bytes (T inputs, then the last T as targets). train and resume
 * print one JSON line per step; open prints one JSON object. Exit status 1 with a message on
 * stderr when the engine refuses something. */
#include <glib.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "corpus.h"
#include "optimizer.h"
#include "run-history.h"
#include "safetensors.h"
#include "session.h"
#include "trainer.h"

static int fail(const char *message)
{
    fprintf(stderr, "peer-parity-dump: %s\n", message);
    return 1;
}

static int usage(void)
{
    fprintf(stderr, "usage: peer-parity-dump init CONFIG.json SEED OUT\n"
                    "       peer-parity-dump grads MODEL BATCH B T OUT\n"
                    "       peer-parity-dump train MODEL TEXT SETTINGS.json STEPS OUT\n"
                    "       peer-parity-dump resume MODEL TEXT STEPS OUT\n"
                    "       peer-parity-dump open RUN_DIR TEXT\n");
    return 2;
}

static char *read_text(const char *path)
{
    char *text = NULL;
    g_autoptr(GError) error = NULL;
    if (!g_file_get_contents(path, &text, NULL, &error))
        fprintf(stderr, "peer-parity-dump: %s\n", error->message);
    return text;
}

static int dump_init(const char *config_path, const char *seed_text, const char *out)
{
    g_autofree char *json = read_text(config_path);
    if (!json)
        return 1;
    model_config cfg;
    peer_error err;
    if (!model_config_from_json(&cfg, json, &err))
        return fail(err.message);
    peer_model *model = peer_model_new(&cfg, 1, 1, g_ascii_strtoull(seed_text, NULL, 10), &err);
    bool ok = model && checkpoint_save_model(model, out, &err);
    peer_model_free(model);
    return ok ? 0 : fail(err.message);
}

/* ---- grads ----------------------------------------------------------------------------------- */

/* Entries and the buffers they point at, freed together. */
typedef struct {
    GArray *entries; /* safetensors_entry */
    GPtrArray *owned;
} dump_file;

static void dump_add(dump_file *dump, const char *name, const float *data, int n_dims,
                     const int64_t *shape)
{
    size_t n = 1;
    for (int d = 0; d < n_dims; d++)
        n *= (size_t)shape[d];
    float *copy = g_memdup2(data, n * sizeof(float));
    char *owned_name = g_strdup(name);
    g_ptr_array_add(dump->owned, copy);
    g_ptr_array_add(dump->owned, owned_name);
    safetensors_entry entry = { .name = owned_name, .n_dims = n_dims, .data = copy };
    memcpy(entry.shape, shape, (size_t)n_dims * sizeof(int64_t));
    g_array_append_val(dump->entries, entry);
}

static void dump_scalar(dump_file *dump, const char *name, double value)
{
    float f = (float)value;
    int64_t shape[1] = { 1 };
    dump_add(dump, name, &f, 1, shape);
}

/* The expert tables' gradients as whole (N, D) tables: zero but for the rows the batch chose. */
static float *dense_table_grad(const peer_model *model, const model_tensor *t)
{
    const peer_sparse_grad *sparse = &model->sparse[t->layer];
    const float *rows = strstr(t->name, ".down") ? sparse->down : sparse->up;
    size_t D = (size_t)sparse->d_model;
    float *table = g_new0(float, t->n_elements);
    for (int r = 0; r < sparse->n_rows; r++)
        memcpy(table + (size_t)sparse->rows[r] * D, rows + (size_t)r * D, D * sizeof(float));
    return table;
}

static int dump_grads(const char *model_path, const char *batch_path, const char *b_text,
                      const char *t_text, const char *out)
{
    int B = atoi(b_text), T = atoi(t_text);
    peer_error err;
    peer_model *model = checkpoint_load_model(model_path, B, T, &err);
    if (!model)
        return fail(err.message);
    g_autofree char *batch = NULL;
    gsize size = 0;
    g_autoptr(GError) error = NULL;
    if (!g_file_get_contents(batch_path, &batch, &size, &error) || size != (gsize)B * (T + 1)) {
        peer_model_free(model);
        return fail(error ? error->message : "the batch file does not hold B × (T + 1) bytes");
    }
    int BT = B * T, V = model->cfg.vocab_size;
    g_autofree uint8_t *tokens = g_new(uint8_t, BT);
    g_autofree uint8_t *targets = g_new(uint8_t, BT);
    for (int b = 0; b < B; b++) {
        memcpy(tokens + b * T, batch + (size_t)b * (T + 1), (size_t)T);
        memcpy(targets + b * T, batch + (size_t)b * (T + 1) + 1, (size_t)T);
    }

    dump_file dump = { g_array_new(FALSE, TRUE, sizeof(safetensors_entry)),
                       g_ptr_array_new_with_free_func(g_free) };
    int64_t logits_shape[3] = { B, T, V };
    for (int pass = 0; pass < 2; pass++) {
        peer_mode mode = pass == 0 ? PEER_MODE_EVAL : PEER_MODE_TRAIN;
        const char *prefix = pass == 0 ? "eval" : "train";
        char name[128];
        double loss = peer_model_forward(model, tokens, targets, B, T, mode, NULL);
        snprintf(name, sizeof name, "%s.logits", prefix);
        dump_add(&dump, name, model->acts.logits, 3, logits_shape);
        snprintf(name, sizeof name, "%s.loss", prefix);
        dump_scalar(&dump, name, loss);
        snprintf(name, sizeof name, "%s.cross_entropy", prefix);
        dump_scalar(&dump, name, model->last_ce);
        snprintf(name, sizeof name, "%s.aux_loss", prefix);
        dump_scalar(&dump, name, model->last_aux);
        for (int l = 0; l < model->cfg.n_layers; l++) {
            const ffn_config *ffn = &model->cfg.layers[l];
            if (ffn->kind != FFN_PEER && ffn->kind != FFN_PKM)
                continue;
            const peer_layer_acts *acts = &model->acts.peer[l];
            int64_t shape[3] = { BT, ffn->peer.heads, ffn->peer.topk };
            size_t slots = (size_t)BT * ffn->peer.heads * ffn->peer.topk;
            g_autofree float *experts = g_new(float, slots);
            for (size_t i = 0; i < slots; i++)
                experts[i] = (float)acts->expert[i];
            snprintf(name, sizeof name, "%s.experts.%d", prefix, l);
            dump_add(&dump, name, experts, 3, shape);
            snprintf(name, sizeof name, "%s.gates.%d", prefix, l);
            dump_add(&dump, name, acts->gate, 3, shape);
        }
    }
    peer_model_zero_grad(model);
    peer_model_backward(model, tokens, targets, NULL);
    dump_scalar(&dump, "grad_norm", optimizer_grad_norm(model));
    for (int i = 0; i < model->n_tensors; i++) {
        const model_tensor *t = &model->tensors[i];
        char name[128];
        if (t->buffer) {
            snprintf(name, sizeof name, "after.%s", t->name);
            dump_add(&dump, name, t->param, t->n_dims, t->shape);
            continue;
        }
        snprintf(name, sizeof name, "grad.%s", t->name);
        if (t->expert_table) {
            g_autofree float *table = dense_table_grad(model, t);
            dump_add(&dump, name, table, t->n_dims, t->shape);
        } else {
            dump_add(&dump, name, t->grad, t->n_dims, t->shape);
        }
    }
    safetensors_meta meta[] = { { "format", "peer-parity-dump" } };
    bool ok = safetensors_write(out, (safetensors_entry *)(void *)dump.entries->data,
                                (int)dump.entries->len, meta, 1, &err);
    g_array_unref(dump.entries);
    g_ptr_array_unref(dump.owned);
    peer_model_free(model);
    return ok ? 0 : fail(err.message);
}

/* ---- train and resume ------------------------------------------------------------------------ */

static int run_steps(trainer *tr, long steps, const char *out)
{
    peer_error err;
    for (long i = 0; i < steps; i++) {
        if (!trainer_step(tr, NULL, &err))
            return fail(err.message);
        printf("{\"step\": %ld, \"loss\": %.9g, \"grad_norm\": %.9g, \"lr\": %.9g}\n", tr->step,
               tr->last_loss, tr->last_grad_norm, (double)tr->last_lr);
    }
    g_autofree char *trainer_path = checkpoint_trainer_path(out);
    if (!checkpoint_save_model(tr->model, out, &err) ||
        !checkpoint_save_trainer(tr, trainer_path, &err))
        return fail(err.message);
    return 0;
}

static int dump_train(const char *model_path, const char *text_path, const char *settings_path,
                      const char *steps_text, const char *out)
{
    g_autofree char *settings_json = read_text(settings_path);
    if (!settings_json)
        return 1;
    model_config cfg;
    train_settings settings;
    peer_error err;
    if (!checkpoint_read_config(model_path, &cfg, &err))
        return fail(err.message);
    train_settings_default(&settings, &cfg);
    if (!train_settings_from_json(&settings, &cfg, settings_json, &err))
        return fail(err.message);
    corpus data;
    if (!corpus_load_file(&data, text_path, settings.seq_len, &err))
        return fail(err.message);
    trainer tr;
    peer_model *loaded = checkpoint_load_model(model_path, 1, 0, &err);
    int status = 1;
    if (!loaded || !trainer_init(&tr, &cfg, &settings, &data, &err)) {
        fail(err.message);
    } else {
        memcpy(tr.model->params_memory, loaded->params_memory, loaded->n_params * sizeof(float));
        status = run_steps(&tr, atol(steps_text), out);
        trainer_free(&tr);
    }
    peer_model_free(loaded);
    corpus_free(&data);
    return status;
}

static int dump_resume(const char *model_path, const char *text_path, const char *steps_text,
                       const char *out)
{
    model_config cfg;
    peer_error err;
    if (!checkpoint_read_config(model_path, &cfg, &err))
        return fail(err.message);
    corpus data;
    if (!corpus_load_file(&data, text_path, cfg.context, &err))
        return fail(err.message);
    g_autofree char *trainer_path = checkpoint_trainer_path(model_path);
    trainer tr;
    int status = 1;
    if (!checkpoint_resume(&tr, model_path, trainer_path, &data, NULL, &err)) {
        fail(err.message);
    } else {
        status = run_steps(&tr, atol(steps_text), out);
        trainer_free(&tr);
    }
    corpus_free(&data);
    return status;
}

/* ---- open ------------------------------------------------------------------------------------ */

static int dump_open(const char *run_dir, const char *text_path)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(PeerRunHistory) history = peer_run_history_load(run_dir, &error);
    if (!history)
        return fail(error->message);
    json_t *report = json_object();
    json_object_set_new(report, "has_config", json_boolean(history->has_config));
    json_object_set_new(report, "loss_points", json_integer(history->loss_points->len));
    json_object_set_new(report, "eval_points", json_integer(history->eval_points->len));
    if (history->loss_points->len > 0) {
        const PeerLossPoint *last = &g_array_index(history->loss_points, PeerLossPoint,
                                                   history->loss_points->len - 1);
        json_object_set_new(report, "last_step", json_integer(last->step));
        json_object_set_new(report, "last_loss", json_real(last->loss));
        json_object_set_new(report, "last_tokens", json_real(last->tokens));
    }
    if (history->eval_points->len > 0) {
        const PeerEvalPoint *last = &g_array_index(history->eval_points, PeerEvalPoint,
                                                   history->eval_points->len - 1);
        json_object_set_new(report, "last_eval_loss", json_real(last->loss));
    }
    json_object_set_new(report, "checkpoint", json_boolean(history->checkpoint_path != NULL));
    if (history->checkpoint_path) {
        g_autofree char *text = NULL;
        gsize size = 0;
        if (!g_file_get_contents(text_path, &text, &size, &error)) {
            json_decref(report);
            return fail(error->message);
        }
        g_autoptr(GBytes) bytes = g_bytes_new(text, size);
        PeerSession *session =
            peer_session_new_from_checkpoint(history->checkpoint_path, bytes, 1, &error);
        if (!session) {
            json_decref(report);
            return fail(error->message);
        }
        json_object_set_new(report, "session_step", json_integer(peer_session_get_step(session)));
        peer_session_shutdown(session);
        g_object_unref(session);
    }
    char *text = json_dumps(report, JSON_COMPACT | JSON_PRESERVE_ORDER);
    printf("%s\n", text);
    free(text);
    json_decref(report);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *mode = argv[1];
    if (strcmp(mode, "init") == 0 && argc == 5)
        return dump_init(argv[2], argv[3], argv[4]);
    if (strcmp(mode, "grads") == 0 && argc == 7)
        return dump_grads(argv[2], argv[3], argv[4], argv[5], argv[6]);
    if (strcmp(mode, "train") == 0 && argc == 7)
        return dump_train(argv[2], argv[3], argv[4], argv[5], argv[6]);
    if (strcmp(mode, "resume") == 0 && argc == 6)
        return dump_resume(argv[2], argv[3], argv[4], argv[5]);
    if (strcmp(mode, "open") == 0 && argc == 4)
        return dump_open(argv[2], argv[3]);
    return usage();
}
