#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer.h"

typedef enum { SETTING_INT, SETTING_LONG, SETTING_FLOAT, SETTING_SEED } setting_type;

typedef struct {
    const char *key;
    setting_type type;
    size_t offset;
} setting_field;

#define FIELD(key, type, member) { key, type, offsetof(train_settings, member) }

static const setting_field fields[] = {
    FIELD("batch_size", SETTING_INT, batch_size),
    FIELD("seq_len", SETTING_INT, seq_len),
    FIELD("steps", SETTING_LONG, steps),
    FIELD("lr", SETTING_FLOAT, lr),
    FIELD("min_lr", SETTING_FLOAT, min_lr),
    FIELD("warmup", SETTING_LONG, warmup),
    FIELD("expert_lr", SETTING_FLOAT, expert_lr),
    FIELD("grad_clip", SETTING_FLOAT, grad_clip),
    FIELD("beta1", SETTING_FLOAT, adam.beta1),
    FIELD("beta2", SETTING_FLOAT, adam.beta2),
    FIELD("eps", SETTING_FLOAT, adam.eps),
    FIELD("weight_decay", SETTING_FLOAT, adam.weight_decay),
    FIELD("moe_aux_weight", SETTING_FLOAT, moe_aux_weight),
    FIELD("seed", SETTING_SEED, seed),
    FIELD("eval_interval", SETTING_LONG, eval_interval),
    FIELD("eval_windows", SETTING_INT, eval_windows),
};

#define N_FIELDS ((int)(sizeof fields / sizeof fields[0]))

static bool read_settings(train_settings *s, json_t *object, peer_error *err)
{
    if (!json_is_object(object))
        return peer_error_set(err, "the training settings must be a JSON object");
    const char *key;
    json_t *value;
    json_object_foreach(object, key, value) {
        const setting_field *field = NULL;
        for (int i = 0; i < N_FIELDS; i++)
            if (strcmp(fields[i].key, key) == 0)
                field = &fields[i];
        if (!field)
            return peer_error_set(err,
                                  "unknown training setting \"%s\": the settings are batch_size, "
                                  "seq_len, steps, lr, min_lr, warmup, expert_lr, grad_clip, "
                                  "beta1, beta2, eps, weight_decay, moe_aux_weight, seed, "
                                  "eval_interval, eval_windows",
                                  key);
        char *place = (char *)s + field->offset;
        if (field->type == SETTING_FLOAT) {
            if (!json_is_number(value))
                return peer_error_set(err, "training setting \"%s\" must be a number", key);
            *(float *)place = (float)json_number_value(value);
            continue;
        }
        if (!json_is_integer(value))
            return peer_error_set(err, "training setting \"%s\" must be a whole number", key);
        json_int_t v = json_integer_value(value);
        switch (field->type) {
        case SETTING_INT:
            if (v < -2147483647LL || v > 2147483647LL)
                return peer_error_set(err, "training setting \"%s\" = %lld is out of range", key,
                                      (long long)v);
            *(int *)place = (int)v;
            break;
        case SETTING_LONG: *(long *)place = (long)v; break;
        case SETTING_SEED:
            if (v < 0)
                return peer_error_set(err, "seed = %lld: use a non-negative whole number",
                                      (long long)v);
            *(uint64_t *)place = (uint64_t)v;
            break;
        case SETTING_FLOAT: break;
        }
    }
    return true;
}

bool train_settings_from_json(train_settings *s, const model_config *cfg, const char *json,
                              peer_error *err)
{
    json_error_t error;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &error);
    if (!root)
        return peer_error_set(err, "the training settings are not valid JSON (line %d: %s)",
                              error.line, error.text);
    train_settings copy = *s;
    bool ok = read_settings(&copy, root, err) && train_settings_validate(&copy, cfg, err);
    json_decref(root);
    if (ok)
        *s = copy;
    return ok;
}

char *train_settings_to_json(const train_settings *s)
{
    json_t *object = json_object();
    if (!object)
        return NULL;
    for (int i = 0; i < N_FIELDS; i++) {
        const char *place = (const char *)s + fields[i].offset;
        json_t *value = NULL;
        switch (fields[i].type) {
        case SETTING_INT: value = json_integer(*(const int *)place); break;
        case SETTING_LONG: value = json_integer(*(const long *)place); break;
        case SETTING_FLOAT: value = json_real(*(const float *)place); break;
        case SETTING_SEED: value = json_integer((json_int_t) * (const uint64_t *)place); break;
        }
        json_object_set_new(object, fields[i].key, value);
    }
    char *text = json_dumps(object, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    json_decref(object);
    return text;
}

bool run_config_from_json(model_config *cfg, train_settings *s, const char *json, peer_error *err)
{
    json_error_t error;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &error);
    if (!root)
        return peer_error_set(err, "the run file is not valid JSON (line %d, column %d: %s)",
                              error.line, error.column, error.text);
    bool ok = false;
    json_t *model = json_object_get(root, "model");
    json_t *training = json_object_get(root, "training");
    const char *key;
    json_t *value;
    if (!json_is_object(root)) {
        peer_error_set(err, "the run file must be a JSON object with \"model\" and \"training\"");
        goto done;
    }
    json_object_foreach(root, key, value) {
        if (strcmp(key, "model") != 0 && strcmp(key, "training") != 0) {
            peer_error_set(err,
                           "unknown key \"%s\" in the run file: it holds \"model\" (the model "
                           "config) and \"training\" (the training settings)",
                           key);
            goto done;
        }
    }
    if (!model) {
        peer_error_set(err, "the run file has no \"model\": add the model config there");
        goto done;
    }
    char *model_text = json_dumps(model, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!model_text) {
        peer_error_set(err, "the run file's \"model\" must be a JSON object");
        goto done;
    }
    ok = model_config_from_json(cfg, model_text, err);
    free(model_text);
    if (!ok)
        goto done;
    train_settings_default(s, cfg);
    ok = training ? read_settings(s, training, err) && train_settings_validate(s, cfg, err)
                  : train_settings_validate(s, cfg, err);
done:
    json_decref(root);
    return ok;
}
