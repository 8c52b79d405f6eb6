#include "experiment.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "json-output.h"
#include "model.h"

/* Evaluations along a run are spaced evenly on a log scale from this fraction of it to its end,
 * so curves on a log FLOP axis have points all along. */
#define CURVE_FIRST_FRACTION (1.0 / 32.0)
/* The mixture of experts: this many experts, each half the dense FFN's width, two per token, so
 * a token uses as many hidden units as in the dense block. */
#define MOE_EXPERTS 8
#define MOE_TOPK 2
/* PKM reads 4k memories per head with half PEER's heads, as the built-in pkm-small: twice the
 * memories PEER's h·k reads, the ratio of the paper's baselines (PKM h = 8, k = 32; PEER h = 8,
 * k = 16). */
#define PKM_TOPK_FACTOR 4

static const experiment_suite suites[] = {
    {
        .name = "tiny",
        .summary = "a 3-block model of width 32, about 20 steps per variant: seconds in all",
        .base_preset = NULL,
        .budget = 6e8,
        .curve_points = 4,
        .curve_windows = 8,
        .final_windows = 16,
        .expert_sides = { 4, 8, 0 },
        .heads = { 1, 2, 0 },
        .norm_at_every_size = true,
    },
    {
        .name = "quick",
        .summary = "peer-small's shape, 13 variants at 2.5e12 FLOPs each: about 15 minutes on "
                   "two cores",
        .base_preset = "peer-small",
        .budget = 2.5e12,
        .curve_points = 8,
        .curve_windows = 64,
        .final_windows = 256,
        .expert_sides = { 32, 64, 128, 256, 0 },
        .heads = { 2, 4, 8, 16, 0 },
        .norm_at_every_size = false,
    },
    {
        .name = "full",
        .summary = "peer-small's shape, 19 variants at 2e13 FLOPs each (N up to 512², query "
                   "norm at every N): hours",
        .base_preset = "peer-small",
        .budget = 2e13,
        .curve_points = 10,
        .curve_windows = 128,
        .final_windows = 1024,
        .expert_sides = { 32, 64, 128, 256, 512, 0 },
        .heads = { 2, 4, 8, 16, 32, 0 },
        .norm_at_every_size = true,
    },
};

const experiment_suite *experiment_suite_find(const char *name)
{
    for (size_t i = 0; name && i < G_N_ELEMENTS(suites); i++)
        if (strcmp(suites[i].name, name) == 0)
            return &suites[i];
    return NULL;
}

const char *experiment_suite_names(void)
{
    return "tiny, quick, full";
}

static const char tiny_base_json[] =
    "{\"model\": {\"vocab_size\": 256, \"context\": 32, \"d_model\": 32, \"n_layers\": 3,"
    " \"n_heads\": 2, \"layers\": ["
    "{\"ffn\": \"dense\", \"d_ff\": 128},"
    "{\"ffn\": \"peer\", \"n_experts\": 64, \"heads\": 2, \"topk\": 4, \"d_key\": 16,"
    " \"shared_keys\": false, \"query_norm\": \"batch\", \"activation\": \"gelu\"},"
    "{\"ffn\": \"dense\", \"d_ff\": 128}]},"
    " \"training\": {\"batch_size\": 4, \"seq_len\": 32, \"lr\": 0.003, \"min_lr\": 0.0003,"
    " \"warmup\": 4, \"expert_lr\": 0.001, \"seed\": 1337, \"eval_windows\": 8}}";

bool experiment_tiny_base(model_config *cfg, train_settings *settings, peer_error *err)
{
    return run_config_from_json(cfg, settings, tiny_base_json, err);
}

const char *experiment_method_label(experiment_method method)
{
    switch (method) {
    case EXPERIMENT_METHOD_DENSE: return "Dense";
    case EXPERIMENT_METHOD_MOE: return "MoE";
    case EXPERIMENT_METHOD_PKM: return "PKM";
    case EXPERIMENT_METHOD_PEER: return "PEER";
    case EXPERIMENT_METHOD_PEER_ALL: return "PEER (every block)";
    }
    return "?";
}

const char *experiment_method_name(experiment_method method)
{
    switch (method) {
    case EXPERIMENT_METHOD_DENSE: return "dense";
    case EXPERIMENT_METHOD_MOE: return "moe";
    case EXPERIMENT_METHOD_PKM: return "pkm";
    case EXPERIMENT_METHOD_PEER: return "peer";
    case EXPERIMENT_METHOD_PEER_ALL: return "peer-all";
    }
    return "?";
}

void experiment_free(experiment *ex)
{
    if (!ex)
        return;
    g_free(ex->base_name);
    g_free(ex->base_json);
    g_free(ex->text_path);
    g_free(ex->text_sha256);
    g_free(ex->variants);
    g_free(ex);
}

int experiment_find_variant(const experiment *ex, const char *name)
{
    for (int i = 0; i < ex->n_variants; i++)
        if (strcmp(ex->variants[i].name, name) == 0)
            return i;
    return -1;
}

/* ---- deriving the variants --------------------------------------------------------------------- */

/* What the variants share, taken from the base. */
typedef struct {
    const model_config *base;
    const train_settings *settings;
    int middle;
    int d_ff;                  /* the dense FFN's hidden size */
    peer_layer_config peer;    /* the PEER layer's shape */
} derivation;

static void find_shapes(derivation *d)
{
    const model_config *base = d->base;
    d->middle = base->n_layers / 2;
    d->d_ff = 0;
    for (int l = 0; l < base->n_layers && !d->d_ff; l++)
        if (base->layers[l].kind == FFN_DENSE)
            d->d_ff = base->layers[l].d_ff;
    if (!d->d_ff)
        d->d_ff = 4 * base->d_model;
    /* The base's PEER layer (the middle one first), else the paper's defaults at this width. */
    const ffn_config *peer = NULL;
    if (base->layers[d->middle].kind == FFN_PEER)
        peer = &base->layers[d->middle];
    for (int l = 0; l < base->n_layers && !peer; l++)
        if (base->layers[l].kind == FFN_PEER)
            peer = &base->layers[l];
    if (peer) {
        d->peer = peer->peer;
    } else {
        d->peer = (peer_layer_config){ .n_experts = 128 * 128, .heads = 8, .topk = 8,
                                       .d_key = base->d_model >= 64 ? 64 : 16,
                                       .shared_keys = false, .query_norm = PEER_NORM_BATCH,
                                       .activation = PEER_ACTIVATION_GELU };
    }
    d->peer.d_model = base->d_model;
    d->peer.values_only = false;
}

static ffn_config peer_ffn(const peer_layer_config *shape)
{
    ffn_config ffn = { .kind = FFN_PEER, .peer = *shape };
    ffn.peer.values_only = false;
    return ffn;
}

static const char *norm_short(peer_query_norm norm)
{
    switch (norm) {
    case PEER_NORM_BATCH: return "BN";
    case PEER_NORM_LAYER: return "LN";
    case PEER_NORM_NONE: return "no norm";
    }
    return "?";
}

/* "128²" for a perfect square, else the number. */
static void format_experts(int n_experts, char *buffer, size_t size)
{
    int side = (int)lround(sqrt((double)n_experts));
    if (side * side == n_experts)
        g_snprintf(buffer, size, "%d²", side);
    else
        g_snprintf(buffer, size, "%d", n_experts);
}

static size_t active_params_of(const model_config *cfg)
{
    int count = 0;
    model_tensor *tensors = peer_model_list_tensors(cfg, &count);
    size_t active = 0;
    for (int i = 0; tensors && i < count; i++) {
        const model_tensor *t = &tensors[i];
        if (t->buffer)
            continue;
        const ffn_config *ffn = t->layer >= 0 ? &cfg->layers[t->layer] : NULL;
        bool ffn_tensor = strstr(t->name, ".ffn.") != NULL;
        if (ffn && ffn_tensor && t->expert_table) {
            /* h·k rows of each expert or memory table: a row per selection. */
            active += (size_t)ffn->peer.heads * ffn->peer.topk * (size_t)t->shape[1];
        } else if (ffn && ffn_tensor && ffn->kind == FFN_MOE &&
                   strstr(t->name, "router") == NULL) {
            active += t->n_elements / (size_t)ffn->moe_experts * (size_t)ffn->moe_topk;
        } else {
            active += t->n_elements;
        }
    }
    free(tensors);
    return active;
}

static size_t params_of(const model_config *cfg)
{
    int count = 0;
    model_tensor *tensors = peer_model_list_tensors(cfg, &count);
    size_t total = 0;
    for (int i = 0; tensors && i < count; i++)
        if (!tensors[i].buffer)
            total += tensors[i].n_elements;
    free(tensors);
    return total;
}

/* The steps the budget buys, and the base's schedule stretched over them. */
static bool set_training(experiment_variant *v, const derivation *d, const experiment *ex,
                         peer_error *err)
{
    train_settings s = *d->settings;
    double per_step =
        3.0 * peer_model_forward_flops_per_token(&v->cfg, s.seq_len) * s.batch_size * s.seq_len;
    long steps = (long)floor(ex->budget / per_step + 0.5);
    if (steps < 1)
        return peer_error_set(err, "a budget of %.3g FLOPs buys no step of the variant %s (a "
                              "step is %.3g FLOPs): give at least that much",
                              ex->budget, v->name, per_step);
    s.steps = steps;
    /* The base's warm-up, but never more than a tenth of a short run. */
    if (s.warmup > steps / 10)
        s.warmup = steps / 10;
    s.eval_interval = 0; /* the runner evaluates at its own points */
    s.eval_windows = ex->curve_windows;
    v->settings = s;
    v->flops_per_step = per_step;
    v->flops = per_step * (double)steps;
    v->params = params_of(&v->cfg);
    v->active_params = active_params_of(&v->cfg);
    return true;
}

static bool add_variant(experiment *ex, const derivation *d, experiment_method method,
                        const peer_layer_config *shape, unsigned group, peer_error *err)
{
    char name[EXPERIMENT_NAME_SIZE], label[EXPERIMENT_LABEL_SIZE], experts[32];
    model_config cfg = *d->base;
    switch (method) {
    case EXPERIMENT_METHOD_DENSE:
        cfg.layers[d->middle] = (ffn_config){ .kind = FFN_DENSE, .d_ff = d->d_ff };
        g_strlcpy(name, "dense", sizeof name);
        g_snprintf(label, sizeof label, "Dense (FFN %d)", d->d_ff);
        break;
    case EXPERIMENT_METHOD_MOE:
        cfg.layers[d->middle] = (ffn_config){ .kind = FFN_MOE, .d_ff = MAX(1, d->d_ff / 2),
                                              .moe_experts = MOE_EXPERTS, .moe_topk = MOE_TOPK };
        g_strlcpy(name, "moe", sizeof name);
        g_snprintf(label, sizeof label, "MoE (%d × FFN %d, top-%d)", MOE_EXPERTS,
                   MAX(1, d->d_ff / 2), MOE_TOPK);
        break;
    case EXPERIMENT_METHOD_PKM: {
        ffn_config pkm = { .kind = FFN_PKM, .peer = *shape };
        int side = peer_layer_side(shape);
        pkm.peer.values_only = true;
        pkm.peer.heads = MAX(1, shape->heads / 2);
        pkm.peer.topk = MIN(side, shape->topk * PKM_TOPK_FACTOR);
        cfg.layers[d->middle] = pkm;
        format_experts(shape->n_experts, experts, sizeof experts);
        g_strlcpy(name, "pkm", sizeof name);
        g_snprintf(label, sizeof label, "PKM (%s, h=%d, k=%d)", experts, pkm.peer.heads,
                   pkm.peer.topk);
        break;
    }
    case EXPERIMENT_METHOD_PEER:
        cfg.layers[d->middle] = peer_ffn(shape);
        format_experts(shape->n_experts, experts, sizeof experts);
        g_snprintf(name, sizeof name, "peer-n%d-h%d-k%d-%s", shape->n_experts, shape->heads,
                   shape->topk, peer_query_norm_name(shape->query_norm));
        g_snprintf(label, sizeof label, "PEER (%s, h=%d, k=%d, %s)", experts, shape->heads,
                   shape->topk, norm_short(shape->query_norm));
        break;
    case EXPERIMENT_METHOD_PEER_ALL:
        for (int l = 0; l < cfg.n_layers; l++)
            cfg.layers[l] = peer_ffn(shape);
        format_experts(shape->n_experts, experts, sizeof experts);
        g_strlcpy(name, "peer-all", sizeof name);
        g_snprintf(label, sizeof label, "PEER in every block (%s, h=%d, k=%d)", experts,
                   shape->heads, shape->topk);
        break;
    }

    int existing = experiment_find_variant(ex, name);
    if (existing >= 0) {
        ex->variants[existing].groups |= group;
        return true;
    }
    if (ex->n_variants >= EXPERIMENT_MAX_VARIANTS)
        return peer_error_set(err, "the suite has more than %d variants",
                              EXPERIMENT_MAX_VARIANTS);
    peer_error inner = { 0 };
    if (!model_config_validate(&cfg, &inner))
        return peer_error_set(err, "the base run cannot take the variant %s: %s", name,
                              inner.message);
    experiment_variant *v = &ex->variants[ex->n_variants++];
    memset(v, 0, sizeof *v);
    g_strlcpy(v->name, name, sizeof v->name);
    g_strlcpy(v->label, label, sizeof v->label);
    v->method = method;
    v->groups = group;
    v->cfg = cfg;
    const ffn_config *middle = &cfg.layers[d->middle];
    if (middle->kind == FFN_PEER || middle->kind == FFN_PKM) {
        v->n_experts = middle->peer.n_experts;
        v->heads = middle->peer.heads;
        v->topk = middle->peer.topk;
        v->query_norm = middle->peer.query_norm;
    }
    if (!set_training(v, d, ex, err))
        return false;
    if (!train_settings_validate(&v->settings, &v->cfg, &inner))
        return peer_error_set(err, "variant %s: %s", name, inner.message);
    return true;
}

experiment *experiment_new(const experiment_suite *suite, const model_config *base_cfg,
                           const train_settings *base_settings, const char *base_name,
                           double budget, peer_error *err)
{
    if (!(budget > 0.0) || !isfinite(budget)) {
        peer_error_set(err, "budget = %g: give a positive number of training FLOPs, e.g. 2.5e12",
                       budget);
        return NULL;
    }
    if (base_cfg->n_layers < 2) {
        peer_error_set(err, "the base model has %d block: the methods replace the middle block "
                       "of two or more",
                       base_cfg->n_layers);
        return NULL;
    }
    peer_error inner = { 0 };
    if (!model_config_validate(base_cfg, &inner) ||
        !train_settings_validate(base_settings, base_cfg, &inner)) {
        peer_error_set(err, "the base run: %s", inner.message);
        return NULL;
    }

    g_autoptr(experiment) ex = g_new0(experiment, 1);
    g_strlcpy(ex->suite, suite->name, sizeof ex->suite);
    ex->budget = budget;
    ex->base_name = g_strdup(base_name);
    ex->curve_points = suite->curve_points;
    ex->curve_windows = suite->curve_windows;
    ex->final_windows = suite->final_windows;
    ex->variants = g_new0(experiment_variant, EXPERIMENT_MAX_VARIANTS);

    derivation d = { .base = base_cfg, .settings = base_settings };
    find_shapes(&d);
    ex->middle = d.middle;

    char *model_json = model_config_to_json(base_cfg);
    char *training_json = train_settings_to_json(base_settings);
    if (model_json && training_json)
        ex->base_json = g_strdup_printf("{\"model\": %s, \"training\": %s}", model_json,
                                        training_json);
    free(model_json);
    free(training_json);
    if (!ex->base_json) {
        peer_error_set(err, "out of memory");
        return NULL;
    }

    const peer_layer_config *shape = &d.peer;
    bool ok = add_variant(ex, &d, EXPERIMENT_METHOD_DENSE, shape, EXPERIMENT_GROUP_METHODS, err) &&
              add_variant(ex, &d, EXPERIMENT_METHOD_MOE, shape, EXPERIMENT_GROUP_METHODS, err) &&
              add_variant(ex, &d, EXPERIMENT_METHOD_PKM, shape, EXPERIMENT_GROUP_METHODS, err) &&
              add_variant(ex, &d, EXPERIMENT_METHOD_PEER, shape, EXPERIMENT_GROUP_METHODS, err) &&
              add_variant(ex, &d, EXPERIMENT_METHOD_PEER_ALL, shape, EXPERIMENT_GROUP_METHODS,
                          err);
    /* N at the base's h and k; sides below k cannot give each head k experts. */
    for (int i = 0; ok && suite->expert_sides[i]; i++) {
        peer_layer_config s = *shape;
        s.n_experts = suite->expert_sides[i] * suite->expert_sides[i];
        if (suite->expert_sides[i] < s.topk)
            continue;
        ok = add_variant(ex, &d, EXPERIMENT_METHOD_PEER, &s, EXPERIMENT_GROUP_EXPERTS, err);
    }
    /* h·k at the base's N and k. */
    for (int i = 0; ok && suite->heads[i]; i++) {
        peer_layer_config s = *shape;
        s.heads = suite->heads[i];
        ok = add_variant(ex, &d, EXPERIMENT_METHOD_PEER, &s, EXPERIMENT_GROUP_ACTIVE, err);
    }
    /* The query norm at the base's N, and batch against none at every N when asked. */
    const peer_query_norm norms[] = { PEER_NORM_BATCH, PEER_NORM_LAYER, PEER_NORM_NONE };
    for (size_t i = 0; ok && i < G_N_ELEMENTS(norms); i++) {
        peer_layer_config s = *shape;
        s.query_norm = norms[i];
        ok = add_variant(ex, &d, EXPERIMENT_METHOD_PEER, &s, EXPERIMENT_GROUP_NORM, err);
    }
    for (int i = 0; ok && suite->norm_at_every_size && suite->expert_sides[i]; i++) {
        if (suite->expert_sides[i] < shape->topk)
            continue;
        const peer_query_norm pair[] = { PEER_NORM_BATCH, PEER_NORM_NONE };
        for (size_t j = 0; ok && j < G_N_ELEMENTS(pair); j++) {
            peer_layer_config s = *shape;
            s.n_experts = suite->expert_sides[i] * suite->expert_sides[i];
            s.query_norm = pair[j];
            ok = add_variant(ex, &d, EXPERIMENT_METHOD_PEER, &s, EXPERIMENT_GROUP_NORM, err);
        }
    }
    if (!ok)
        return NULL;
    return g_steal_pointer(&ex);
}

int experiment_curve_steps(const experiment *ex, const experiment_variant *v, long *steps)
{
    long total = v->settings.steps;
    int n = 0;
    int points = MAX(1, MIN(ex->curve_points, EXPERIMENT_MAX_CURVE_POINTS));
    for (int i = 0; i < points; i++) {
        double exponent = points > 1 ? (double)(points - 1 - i) / (points - 1) : 0.0;
        long step = (long)ceil((double)total * pow(CURVE_FIRST_FRACTION, exponent) - 1e-9);
        step = MAX(1, MIN(step, total));
        if (n == 0 || step > steps[n - 1])
            steps[n++] = step;
    }
    return n;
}

char *experiment_variant_dir(const char *dir, const experiment_variant *variant)
{
    return g_build_filename(dir, EXPERIMENT_VARIANTS_FOLDER, variant->name, NULL);
}

/* ---- the definition file ----------------------------------------------------------------------- */

bool experiment_write_file(const char *path, const char *contents, size_t length,
                           peer_error *err)
{
    g_autoptr(GError) error = NULL;
    if (!g_file_set_contents_full(path, contents, (gssize)length,
                                  G_FILE_SET_CONTENTS_CONSISTENT | G_FILE_SET_CONTENTS_DURABLE,
                                  0666, &error))
        return peer_error_set(err, "%s", error->message);
    return true;
}

bool experiment_save_definition(const experiment *ex, const char *dir, peer_error *err)
{
    json_error_t parse_error;
    json_t *base = json_loads(ex->base_json, 0, &parse_error);
    if (!base)
        return peer_error_set(err, "out of memory");
    json_output_shorten_floats(json_object_get(base, "training"));
    json_t *root = json_object();
    json_object_set_new(root, "suite", json_string(ex->suite));
    json_object_set_new(root, "budget", json_real(ex->budget));
    json_object_set_new(root, "base_name", json_string(ex->base_name ? ex->base_name : ""));
    json_object_set_new(root, "base", base);
    json_object_set_new(root, "text", ex->text_path ? json_string(ex->text_path) : json_null());
    json_object_set_new(root, "text_sha256",
                        ex->text_sha256 ? json_string(ex->text_sha256) : json_null());
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_OUTPUT_FLAGS);
    json_decref(root);
    if (!text)
        return peer_error_set(err, "out of memory");
    g_autofree char *path = g_build_filename(dir, EXPERIMENT_DEFINITION_FILE, NULL);
    g_autofree char *contents = g_strconcat(text, "\n", NULL);
    free(text);
    if (g_mkdir_with_parents(dir, 0777) != 0)
        return peer_error_set(err, "cannot create the folder %s: %s", dir, g_strerror(errno));
    peer_error inner = { 0 };
    if (!experiment_write_file(path, contents, strlen(contents), &inner))
        return peer_error_set(err, "cannot write %s: %s", path, inner.message);
    return true;
}

experiment *experiment_load_definition(const char *dir, peer_error *err)
{
    g_autofree char *path = g_build_filename(dir, EXPERIMENT_DEFINITION_FILE, NULL);
    json_error_t parse_error;
    json_t *root = json_load_file(path, 0, &parse_error);
    if (!root) {
        if (!g_file_test(path, G_FILE_TEST_EXISTS))
            peer_error_set(err, "%s holds no experiment (no %s): start one with "
                           "peer-experiment run --dir %s",
                           dir, EXPERIMENT_DEFINITION_FILE, dir);
        else
            peer_error_set(err, "%s is not valid JSON: %s (line %d)", path, parse_error.text,
                           parse_error.line);
        return NULL;
    }
    experiment *ex = NULL;
    const char *suite_name = json_string_value(json_object_get(root, "suite"));
    json_t *budget = json_object_get(root, "budget");
    json_t *base = json_object_get(root, "base");
    const experiment_suite *suite = experiment_suite_find(suite_name);
    char *base_text = json_is_object(base) ? json_dumps(base, JSON_COMPACT) : NULL;
    model_config cfg;
    train_settings settings;
    peer_error inner = { 0 };
    if (!suite || !json_is_number(budget) || !base_text) {
        peer_error_set(err, "%s is not an experiment definition: it needs \"suite\" (%s), "
                       "\"budget\" and \"base\"",
                       path, experiment_suite_names());
    } else if (!run_config_from_json(&cfg, &settings, base_text, &inner)) {
        peer_error_set(err, "%s: the base run: %s", path, inner.message);
    } else {
        const char *base_name = json_string_value(json_object_get(root, "base_name"));
        ex = experiment_new(suite, &cfg, &settings, base_name ? base_name : "",
                            json_number_value(budget), err);
        if (ex) {
            const char *text = json_string_value(json_object_get(root, "text"));
            const char *sha = json_string_value(json_object_get(root, "text_sha256"));
            ex->text_path = g_strdup(text);
            ex->text_sha256 = g_strdup(sha);
        }
    }
    free(base_text);
    json_decref(root);
    return ex;
}
