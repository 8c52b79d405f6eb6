#include "test-util.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

peer_layer_config test_config(int d_model, int n_experts, int heads, int topk, int d_key,
                              bool shared_keys, peer_query_norm norm, peer_activation activation)
{
    peer_layer_config cfg = {
        .d_model = d_model,
        .n_experts = n_experts,
        .heads = heads,
        .topk = topk,
        .d_key = d_key,
        .shared_keys = shared_keys,
        .query_norm = norm,
        .activation = activation,
    };
    return cfg;
}

char *test_config_describe(const peer_layer_config *cfg)
{
    return g_strdup_printf("D=%d N=%d h=%d k=%d dk=%d %s %s %s", cfg->d_model, cfg->n_experts,
                           cfg->heads, cfg->topk, cfg->d_key,
                           cfg->shared_keys ? "shared" : "per-head",
                           peer_query_norm_name(cfg->query_norm),
                           peer_activation_name(cfg->activation));
}

void test_layer_init(test_layer *layer, const peer_layer_config *cfg, int max_tokens,
                     uint64_t seed)
{
    memset(layer, 0, sizeof *layer);
    layer->cfg = *cfg;
    layer->max_tokens = max_tokens;

    peer_error err = { { 0 } };
    if (!peer_layer_config_validate(cfg, &err))
        g_error("test config rejected: %s", err.message);

    layer->arena = g_new0(float, peer_layer_params_count(cfg));
    layer->grad_arena = g_new0(float, MAX(peer_layer_grads_count(cfg), 1));
    peer_layer_params_point(&layer->params, cfg, layer->arena);
    peer_layer_grads_point(&layer->grads, cfg, layer->grad_arena);

    peer_rng rng;
    peer_rng_seed(&rng, seed);
    peer_layer_params_init(&layer->params, cfg, &rng);

    int HK = cfg->heads * cfg->d_key;
    peer_layer_params *p = &layer->params;
    for (int i = 0; i < HK; i++) {
        p->query_bias[i] = 0.2f * peer_rng_normal(&rng);
        if (p->norm_weight) {
            p->norm_weight[i] = 1.0f + 0.3f * peer_rng_normal(&rng);
            p->norm_bias[i] = 0.2f * peer_rng_normal(&rng);
        }
        if (p->running_mean) {
            p->running_mean[i] = 0.3f * peer_rng_normal(&rng);
            p->running_var[i] = 0.5f + peer_rng_uniform(&rng);
        }
    }

    if (!peer_layer_acts_init(&layer->acts, cfg, max_tokens, &err))
        g_error("peer_layer_acts_init: %s", err.message);
    if (!peer_sparse_grad_init(&layer->sparse, cfg->n_experts, cfg->d_model, &err))
        g_error("peer_sparse_grad_init: %s", err.message);
}

void test_layer_free(test_layer *layer)
{
    peer_sparse_grad_free(&layer->sparse);
    peer_layer_acts_free(&layer->acts);
    g_free(layer->grad_arena);
    g_free(layer->arena);
    memset(layer, 0, sizeof *layer);
}

void test_layer_zero_grads(test_layer *layer)
{
    memset(layer->grad_arena, 0, peer_layer_grads_count(&layer->cfg) * sizeof(float));
    peer_sparse_grad_zero(&layer->sparse);
}

uint8_t *test_word_text(const char *const *words, size_t n_words, uint64_t seed, size_t n)
{
    peer_rng rng;
    peer_rng_seed(&rng, seed);
    uint8_t *text = g_malloc(n);
    size_t filled = 0;
    while (filled < n) {
        const char *w = words[peer_rng_next(&rng) % n_words];
        size_t len = MIN(strlen(w), n - filled);
        memcpy(text + filled, w, len);
        filled += len;
    }
    return text;
}

void test_word_corpus(corpus *c, const char *const *words, size_t n_words, size_t bytes,
                      int seq_len)
{
    uint8_t *text = test_word_text(words, n_words, TEST_SEED, bytes);
    peer_error err = { { 0 } };
    if (!corpus_from_bytes(c, text, bytes, seq_len, "words", &err))
        g_error("corpus_from_bytes: %s", err.message);
    g_free(text);
}

float *test_random_floats(peer_rng *rng, size_t n, float std)
{
    float *out = g_new(float, MAX(n, 1));
    peer_rng_fill_normal(rng, out, n, std);
    return out;
}

float *test_copy_floats(const float *src, size_t n)
{
    return g_memdup2(src, MAX(n, 1) * sizeof(float));
}

const float *test_subkey(const peer_layer_params *params, const peer_layer_config *cfg, int group,
                         int side, int index)
{
    int n = peer_layer_side(cfg);
    size_t half = (size_t)cfg->d_key / 2;
    return params->keys + (((size_t)group * 2 + (size_t)side) * (size_t)n + (size_t)index) * half;
}

static int head_group(const peer_layer_config *cfg, int head)
{
    return cfg->shared_keys ? 0 : head;
}

double test_expert_score(const peer_layer_params *params, const peer_layer_config *cfg, int head,
                         const float *q, int expert)
{
    int n = peer_layer_side(cfg);
    int half = cfg->d_key / 2;
    const float *c = test_subkey(params, cfg, head_group(cfg, head), 0, expert / n);
    const float *c2 = test_subkey(params, cfg, head_group(cfg, head), 1, expert % n);
    double sum = 0.0;
    for (int i = 0; i < cfg->d_key; i++)
        sum += (double)q[i] * (double)(i < half ? c[i] : c2[i - half]);
    return sum;
}

double test_expert_score_scale(const peer_layer_params *params, const peer_layer_config *cfg,
                               int head, const float *q, int expert)
{
    int n = peer_layer_side(cfg);
    int half = cfg->d_key / 2;
    const float *c = test_subkey(params, cfg, head_group(cfg, head), 0, expert / n);
    const float *c2 = test_subkey(params, cfg, head_group(cfg, head), 1, expert % n);
    double sum = 0.0;
    for (int i = 0; i < cfg->d_key; i++)
        sum += fabs((double)q[i] * (double)(i < half ? c[i] : c2[i - half]));
    return sum;
}

double test_activation(peer_activation act, double x)
{
    if (act == PEER_ACTIVATION_RELU)
        return x > 0.0 ? x : 0.0;
    double scale = sqrt(2.0 / M_PI);
    return 0.5 * x * (1.0 + tanh(scale * (x + 0.044715 * x * x * x)));
}

double test_activation_derivative(peer_activation act, double x)
{
    if (act == PEER_ACTIVATION_RELU)
        return x > 0.0 ? 1.0 : 0.0;
    double scale = sqrt(2.0 / M_PI);
    double t = tanh(scale * (x + 0.044715 * x * x * x));
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * scale * (1.0 + 3.0 * 0.044715 * x * x);
}

void test_reference_query(double *query, const float *inp, const peer_layer_params *params,
                          const peer_layer_config *cfg, int BT)
{
    int D = cfg->d_model, HK = cfg->heads * cfg->d_key;
    for (int t = 0; t < BT; t++) {
        const float *x = inp + (size_t)t * D;
        for (int o = 0; o < HK; o++) {
            const float *w = params->query_weight + (size_t)o * D;
            double sum = params->query_bias[o];
            for (int c = 0; c < D; c++)
                sum += (double)x[c] * (double)w[c];
            query[(size_t)t * HK + o] = sum;
        }
    }
}

void test_reference_norm(double *normed, const double *query, const peer_layer_params *params,
                         const peer_layer_config *cfg, int BT, peer_mode mode)
{
    int h = cfg->heads, dk = cfg->d_key, HK = h * dk;
    switch (cfg->query_norm) {
    case PEER_NORM_NONE:
        memcpy(normed, query, (size_t)BT * HK * sizeof(double));
        break;
    case PEER_NORM_LAYER:
        for (int t = 0; t < BT; t++) {
            for (int j = 0; j < h; j++) {
                const double *q = query + (size_t)t * HK + (size_t)j * dk;
                double mean = 0.0, var = 0.0;
                for (int i = 0; i < dk; i++)
                    mean += q[i];
                mean /= dk;
                for (int i = 0; i < dk; i++)
                    var += (q[i] - mean) * (q[i] - mean);
                var /= dk;
                double rstd = 1.0 / sqrt(var + PEER_LAYER_NORM_EPS);
                for (int i = 0; i < dk; i++) {
                    int f = j * dk + i;
                    normed[(size_t)t * HK + f] =
                        (q[i] - mean) * rstd * params->norm_weight[f] + params->norm_bias[f];
                }
            }
        }
        break;
    case PEER_NORM_BATCH:
        for (int f = 0; f < HK; f++) {
            double mean, var;
            if (mode == PEER_MODE_TRAIN) {
                mean = 0.0;
                var = 0.0;
                for (int t = 0; t < BT; t++)
                    mean += query[(size_t)t * HK + f];
                mean /= BT;
                for (int t = 0; t < BT; t++) {
                    double d = query[(size_t)t * HK + f] - mean;
                    var += d * d;
                }
                var /= BT;
            } else {
                mean = params->running_mean[f];
                var = params->running_var[f];
            }
            double rstd = 1.0 / sqrt(var + PEER_BATCH_NORM_EPS);
            for (int t = 0; t < BT; t++)
                normed[(size_t)t * HK + f] = (query[(size_t)t * HK + f] - mean) * rstd *
                                                 params->norm_weight[f] +
                                             params->norm_bias[f];
        }
        break;
    }
}

void test_check_close(double actual, double expected, double atol, double rtol, const char *file,
                      int line, const char *func, const char *format, ...)
{
    if (fabs(actual - expected) <= atol + rtol * fabs(expected))
        return;
    va_list args;
    va_start(args, format);
    char *what = g_strdup_vprintf(format, args);
    va_end(args);
    char *message = g_strdup_printf("%s: got %.9g, expected %.9g (difference %.3g, allowed "
                                    "%.3g + %.3g relative)",
                                    what, actual, expected, fabs(actual - expected), atol, rtol);
    g_assertion_message(G_LOG_DOMAIN, file, line, func, message);
    g_free(message);
    g_free(what);
}

void test_fail_at(const char *file, int line, const char *func, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    char *message = g_strdup_vprintf(format, args);
    va_end(args);
    g_assertion_message(G_LOG_DOMAIN, file, line, func, message);
    g_free(message);
}

bool test_tensor_has_dense_grad(const peer_layer_config *cfg, peer_layer_tensor tensor)
{
    return peer_layer_tensor_size(cfg, tensor) > 0 && !peer_layer_tensor_is_buffer(tensor) &&
           !peer_layer_tensor_is_expert_table(tensor);
}
