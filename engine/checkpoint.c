#include "checkpoint.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

/* ---- model file ------------------------------------------------------------------------------ */

static void entry_for(safetensors_entry *entry, const model_tensor *t, const char *name,
                      const float *data)
{
    memset(entry, 0, sizeof *entry);
    entry->name = name;
    entry->n_dims = t->n_dims;
    for (int d = 0; d < t->n_dims; d++)
        entry->shape[d] = t->shape[d];
    entry->data = data;
}

bool checkpoint_save_model(const peer_model *model, const char *path, peer_error *err)
{
    safetensors_entry *entries = calloc((size_t)model->n_tensors, sizeof *entries);
    char *config = model_config_to_json(&model->cfg);
    if (!entries || !config) {
        free(entries);
        free(config);
        return peer_error_set(err, "out of memory saving %s", path);
    }
    for (int i = 0; i < model->n_tensors; i++)
        entry_for(&entries[i], &model->tensors[i], model->tensors[i].name,
                  model->tensors[i].param);
    safetensors_meta meta[] = {
        { "format", CHECKPOINT_FORMAT },
        { "format_version", CHECKPOINT_FORMAT_VERSION },
        { "config", config },
    };
    bool ok = safetensors_write(path, entries, model->n_tensors, meta, 3, err);
    free(entries);
    free(config);
    return ok;
}

/* The file's config, after checking that the file says it is one of ours. */
static bool file_config(const safetensors_file *file, const char *path, const char *format,
                        model_config *cfg, peer_error *err)
{
    const char *found = safetensors_meta_get(file, "format");
    if (!found || strcmp(found, format) != 0)
        return peer_error_set(err,
                              "%s is not a %s file: its metadata \"format\" is %s%s%s (a "
                              "safetensors file from elsewhere has no model config to load)",
                              path, format, found ? "\"" : "missing", found ? found : "",
                              found ? "\"" : "");
    const char *version = safetensors_meta_get(file, "format_version");
    if (!version || strcmp(version, CHECKPOINT_FORMAT_VERSION) != 0)
        return peer_error_set(err,
                              "%s has format_version %s%s%s; this version of the workbench reads "
                              "version " CHECKPOINT_FORMAT_VERSION,
                              path, version ? "\"" : "(missing)", version ? version : "",
                              version ? "\"" : "");
    const char *config = safetensors_meta_get(file, "config");
    if (!config)
        return peer_error_set(err, "%s has no \"config\" in its metadata", path);
    peer_error inner;
    if (!model_config_from_json(cfg, config, &inner))
        return peer_error_set(err, "%s: its config is invalid: %s", path, inner.message);
    return true;
}

/* A file is matched against the tensors its config implies, under one or more naming schemes
 * (the model file: the plain names; the trainer file: "adam.m.<name>" and "adam.v.<name>"). */
typedef const char *(*tensor_name_fn)(const model_tensor *t, char *buffer, size_t size);
typedef bool (*tensor_want_fn)(const model_tensor *t);

static const char *plain_name(const model_tensor *t, char *buffer, size_t size)
{
    snprintf(buffer, size, "%s", t->name);
    return buffer;
}

static bool want_all(const model_tensor *t)
{
    return true;
}

typedef struct {
    const model_tensor *tensors; /* (count), in checkpoint order */
    int count;
    tensor_want_fn want;
    const tensor_name_fn *names; /* (n_names) */
    int n_names;
} tensor_match;

static void format_shape(char *out, size_t size, int n_dims, const int64_t *shape)
{
    out[0] = '\0';
    for (int d = 0; d < n_dims && d < SAFETENSORS_MAX_DIMS; d++)
        snprintf(out + strlen(out), size - strlen(out), "%s%" PRId64, d ? ", " : "", shape[d]);
}

/* Every wanted tensor present under every name with the config's shape, and nothing else in
 * the file; the message names the first tensor that disagrees. */
static bool check_tensors(const safetensors_file *file, const char *path, const tensor_match *match,
                          peer_error *err)
{
    char name[160];
    int expected = 0;
    for (int n = 0; n < match->n_names; n++) {
        for (int i = 0; i < match->count; i++) {
            const model_tensor *t = &match->tensors[i];
            if (!match->want(t))
                continue;
            expected++;
            match->names[n](t, name, sizeof name);
            const safetensors_tensor *found = safetensors_find(file, name);
            if (!found)
                return peer_error_set(err, "%s: tensor \"%s\" is missing (its config needs it)",
                                      path, name);
            bool same = found->n_dims == t->n_dims;
            for (int d = 0; same && d < t->n_dims; d++)
                same = found->shape[d] == t->shape[d];
            if (!same) {
                char want_shape[128], got_shape[128];
                format_shape(want_shape, sizeof want_shape, t->n_dims, t->shape);
                format_shape(got_shape, sizeof got_shape, found->n_dims, found->shape);
                return peer_error_set(err,
                                      "%s: tensor \"%s\" has shape (%s) but the config says (%s)",
                                      path, name, got_shape, want_shape);
            }
        }
    }
    if (file->n_tensors == expected)
        return true;
    for (int k = 0; k < file->n_tensors; k++) {
        bool known = false;
        for (int n = 0; !known && n < match->n_names; n++)
            for (int i = 0; !known && i < match->count; i++)
                known = match->want(&match->tensors[i]) &&
                        strcmp(match->names[n](&match->tensors[i], name, sizeof name),
                               file->tensors[k].name) == 0;
        if (!known)
            return peer_error_set(err,
                                  "%s: tensor \"%s\" is not part of the model its config "
                                  "describes",
                                  path, file->tensors[k].name);
    }
    return peer_error_set(err, "%s holds %d tensors where its config implies %d", path,
                          file->n_tensors, expected);
}

static const float *tensor_data(const safetensors_file *file, tensor_name_fn name_of,
                                const model_tensor *t)
{
    char name[160];
    return safetensors_find(file, name_of(t, name, sizeof name))->data;
}

/* Checks a file against a config before anything of the config's size is allocated. */
static bool check_file(const safetensors_file *file, const char *path, const model_config *cfg,
                       tensor_want_fn want, const tensor_name_fn *names, int n_names,
                       peer_error *err)
{
    tensor_match match = { .want = want, .names = names, .n_names = n_names };
    model_tensor *tensors = peer_model_list_tensors(cfg, &match.count);
    if (!tensors)
        return peer_error_set(err, "out of memory reading %s", path);
    match.tensors = tensors;
    bool ok = check_tensors(file, path, &match, err);
    free(tensors);
    return ok;
}

static const tensor_name_fn model_names[] = { plain_name };

bool checkpoint_read_config(const char *path, model_config *cfg, peer_error *err)
{
    safetensors_file file;
    if (!safetensors_read(&file, path, err))
        return false;
    bool ok = file_config(&file, path, CHECKPOINT_FORMAT, cfg, err);
    safetensors_free(&file);
    return ok;
}

peer_model *checkpoint_load_model(const char *path, int B, int T, peer_error *err)
{
    safetensors_file file;
    if (!safetensors_read(&file, path, err))
        return NULL;
    model_config cfg;
    peer_model *model = NULL;
    if (file_config(&file, path, CHECKPOINT_FORMAT, &cfg, err) &&
        check_file(&file, path, &cfg, want_all, model_names, 1, err)) {
        model = peer_model_new_uninitialised(&cfg, B, T ? T : cfg.context, err);
        for (int i = 0; model && i < model->n_tensors; i++) {
            const model_tensor *t = &model->tensors[i];
            memcpy(t->param, tensor_data(&file, plain_name, t), t->n_elements * sizeof(float));
        }
    }
    safetensors_free(&file);
    return model;
}

char *checkpoint_trainer_path(const char *model_path)
{
    const char *suffix = ".safetensors";
    size_t len = strlen(model_path), slen = strlen(suffix);
    size_t stem = len >= slen && strcmp(model_path + len - slen, suffix) == 0 ? len - slen : len;
    char *out = malloc(stem + strlen(".trainer.safetensors") + 1);
    if (out) {
        memcpy(out, model_path, stem);
        strcpy(out + stem, ".trainer.safetensors");
    }
    return out;
}

/* ---- trainer file ---------------------------------------------------------------------------- */

static bool has_moments(const model_tensor *t)
{
    return !t->buffer;
}

static const char *m_name(const model_tensor *t, char *buffer, size_t size)
{
    snprintf(buffer, size, "adam.m.%s", t->name);
    return buffer;
}

static const char *v_name(const model_tensor *t, char *buffer, size_t size)
{
    snprintf(buffer, size, "adam.v.%s", t->name);
    return buffer;
}

typedef struct {
    const peer_model *model;
    const optimizer_state *opt;
    bool second; /* v rather than m */
} moment_ctx;

/* Where a tensor's moment lives: dense ones at the tensor's place in the gradient arena. */
static float *moment_of(const moment_ctx *ctx, int index)
{
    const model_tensor *t = &ctx->model->tensors[index];
    if (t->expert_table) {
        for (int k = 0; k < ctx->opt->n_tables; k++)
            if (ctx->opt->table_tensor[k] == index)
                return ctx->second ? ctx->opt->table_v[k] : ctx->opt->table_m[k];
        return NULL;
    }
    size_t offset = (size_t)(t->grad - ctx->model->grads_memory);
    return (ctx->second ? ctx->opt->v : ctx->opt->m) + offset;
}

bool checkpoint_save_trainer(const trainer *tr, const char *path, peer_error *err)
{
    const peer_model *model = tr->model;
    int count = 0;
    for (int i = 0; i < model->n_tensors; i++)
        count += has_moments(&model->tensors[i]) ? 2 : 0;
    safetensors_entry *entries = calloc((size_t)count ? (size_t)count : 1, sizeof *entries);
    char (*names)[128] = calloc((size_t)count ? (size_t)count : 1, sizeof *names);
    char *settings = train_settings_to_json(&tr->settings);
    char *config = model_config_to_json(&model->cfg);
    bool ok = false;
    if (!entries || !names || !settings || !config) {
        peer_error_set(err, "out of memory saving %s", path);
        goto done;
    }
    int n = 0;
    for (int pass = 0; pass < 2; pass++) {
        moment_ctx ctx = { .model = model, .opt = &tr->opt, .second = pass == 1 };
        for (int i = 0; i < model->n_tensors; i++) {
            const model_tensor *t = &model->tensors[i];
            if (!has_moments(t))
                continue;
            (pass ? v_name : m_name)(t, names[n], sizeof names[n]);
            entry_for(&entries[n], t, names[n], moment_of(&ctx, i));
            n++;
        }
    }
    char step[32], opt_step[32], tokens[40], flops[40], rng[32];
    snprintf(step, sizeof step, "%ld", tr->step);
    snprintf(opt_step, sizeof opt_step, "%ld", tr->opt.step);
    snprintf(tokens, sizeof tokens, "%.17g", tr->tokens);
    snprintf(flops, sizeof flops, "%.17g", tr->flops);
    snprintf(rng, sizeof rng, "%016" PRIx64, tr->data_rng.state);
    safetensors_meta meta[] = {
        { "format", CHECKPOINT_TRAINER_FORMAT },
        { "format_version", CHECKPOINT_FORMAT_VERSION },
        { "config", config },
        { "settings", settings },
        { "step", step },
        { "optimizer_step", opt_step },
        { "tokens", tokens },
        { "flops", flops },
        { "data_rng", rng },
    };
    ok = safetensors_write(path, entries, count, meta, (int)(sizeof meta / sizeof meta[0]), err);
done:
    free(entries);
    free(names);
    free(settings);
    free(config);
    return ok;
}

static bool parse_long(const safetensors_file *file, const char *path, const char *key, long *out,
                       peer_error *err)
{
    const char *text = safetensors_meta_get(file, key);
    char *end = NULL;
    long value = text ? strtol(text, &end, 10) : 0;
    if (!text || end == text || *end != '\0' || value < 0)
        return peer_error_set(err, "%s: metadata \"%s\" is %s; expected a whole number", path,
                              key, text ? "not a whole number" : "missing");
    *out = value;
    return true;
}

static bool parse_double(const safetensors_file *file, const char *path, const char *key,
                         double *out, peer_error *err)
{
    const char *text = safetensors_meta_get(file, key);
    char *end = NULL;
    double value = text ? strtod(text, &end) : 0.0;
    if (!text || end == text || *end != '\0' || !(value >= 0.0))
        return peer_error_set(err, "%s: metadata \"%s\" is %s; expected a number", path, key,
                              text ? "not a number" : "missing");
    *out = value;
    return true;
}

bool checkpoint_resume(trainer *tr, const char *model_path, const char *trainer_path,
                       const corpus *data, const long *steps_override, peer_error *err)
{
    memset(tr, 0, sizeof *tr);
    safetensors_file model_file, trainer_file;
    if (!safetensors_read(&model_file, model_path, err))
        return false;
    if (!safetensors_read(&trainer_file, trainer_path, err)) {
        safetensors_free(&model_file);
        return false;
    }
    bool ok = false;
    model_config cfg, trainer_cfg;
    train_settings settings;
    long step = 0, opt_step = 0;
    double tokens = 0.0, flops = 0.0;
    const char *settings_json = safetensors_meta_get(&trainer_file, "settings");
    const char *rng_text = safetensors_meta_get(&trainer_file, "data_rng");
    char *end = NULL;
    uint64_t rng_state = rng_text ? strtoull(rng_text, &end, 16) : 0;
    if (!file_config(&model_file, model_path, CHECKPOINT_FORMAT, &cfg, err) ||
        !file_config(&trainer_file, trainer_path, CHECKPOINT_TRAINER_FORMAT, &trainer_cfg, err))
        goto done;
    char *a = model_config_to_json(&cfg), *b = model_config_to_json(&trainer_cfg);
    bool same = a && b && strcmp(a, b) == 0;
    free(a);
    free(b);
    if (!same) {
        peer_error_set(err,
                       "%s belongs to a different model than %s (their configs differ): resume "
                       "from the pair saved together",
                       trainer_path, model_path);
        goto done;
    }
    train_settings_default(&settings, &cfg);
    if (!settings_json) {
        peer_error_set(err, "%s has no \"settings\" in its metadata", trainer_path);
        goto done;
    }
    peer_error inner;
    if (!train_settings_from_json(&settings, &cfg, settings_json, &inner)) {
        peer_error_set(err, "%s: its training settings are invalid: %s", trainer_path,
                       inner.message);
        goto done;
    }
    if (!parse_long(&trainer_file, trainer_path, "step", &step, err) ||
        !parse_long(&trainer_file, trainer_path, "optimizer_step", &opt_step, err) ||
        !parse_double(&trainer_file, trainer_path, "tokens", &tokens, err) ||
        !parse_double(&trainer_file, trainer_path, "flops", &flops, err))
        goto done;
    if (!rng_text || end == rng_text || *end != '\0') {
        peer_error_set(err, "%s: metadata \"data_rng\" is missing or not hexadecimal",
                       trainer_path);
        goto done;
    }
    static const tensor_name_fn moment_names[] = { m_name, v_name };
    if (!check_file(&model_file, model_path, &cfg, want_all, model_names, 1, err) ||
        !check_file(&trainer_file, trainer_path, &cfg, has_moments, moment_names, 2, err))
        goto done;
    if (steps_override)
        settings.steps = *steps_override;
    if (!trainer_init(tr, &cfg, &settings, data, err))
        goto done;
    moment_ctx m = { .model = tr->model, .opt = &tr->opt, .second = false };
    moment_ctx v = { .model = tr->model, .opt = &tr->opt, .second = true };
    for (int i = 0; i < tr->model->n_tensors; i++) {
        const model_tensor *t = &tr->model->tensors[i];
        size_t bytes = t->n_elements * sizeof(float);
        memcpy(t->param, tensor_data(&model_file, plain_name, t), bytes);
        if (has_moments(t)) {
            memcpy(moment_of(&m, i), tensor_data(&trainer_file, m_name, t), bytes);
            memcpy(moment_of(&v, i), tensor_data(&trainer_file, v_name, t), bytes);
        }
    }
    tr->step = step;
    tr->opt.step = opt_step;
    tr->tokens = tokens;
    tr->flops = flops;
    tr->data_rng.state = rng_state;
    ok = true;
done:
    safetensors_free(&model_file);
    safetensors_free(&trainer_file);
    return ok;
}
