#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

uint8_t sampler_pick(const float *logits, int V, const sampler_settings *settings, peer_rng *rng)
{
    float probs[256];
    float threshold = -INFINITY;
    if (settings->top_k > 0 && settings->top_k < V) {
        /* The k-th largest logit: bytes below it get no probability. */
        float sorted[256];
        memcpy(sorted, logits, (size_t)V * sizeof(float));
        for (int i = 0; i < settings->top_k; i++) {
            int best = i;
            for (int j = i + 1; j < V; j++)
                if (sorted[j] > sorted[best])
                    best = j;
            float tmp = sorted[i];
            sorted[i] = sorted[best];
            sorted[best] = tmp;
        }
        threshold = sorted[settings->top_k - 1];
    }
    float max = -INFINITY;
    for (int i = 0; i < V; i++)
        if (logits[i] >= threshold && logits[i] > max)
            max = logits[i];
    double sum = 0.0;
    for (int i = 0; i < V; i++) {
        probs[i] = logits[i] >= threshold ? expf((logits[i] - max) / settings->temperature) : 0.0f;
        sum += probs[i];
    }
    double r = peer_rng_uniform(rng) * sum, acc = 0.0;
    for (int i = 0; i < V; i++) {
        acc += probs[i];
        if (r < acc)
            return (uint8_t)i;
    }
    for (int i = V - 1; i >= 0; i--)
        if (probs[i] > 0.0f)
            return (uint8_t)i;
    return 0;
}

bool sampler_generate(peer_model *model, const uint8_t *prompt, size_t prompt_len, uint8_t *out,
                      size_t count, const sampler_settings *settings, peer_rng *rng,
                      thread_pool *pool, peer_error *err)
{
    if (prompt_len < 1)
        return peer_error_set(err, "the prompt is empty: give at least one byte to continue");
    if (!(settings->temperature > 0.0f))
        return peer_error_set(err, "temperature = %g: use a positive temperature, e.g. 0.8",
                              (double)settings->temperature);
    if (settings->top_k < 0 || settings->top_k > model->cfg.vocab_size)
        return peer_error_set(err, "top_k = %d: use 0 (all bytes) to %d", settings->top_k,
                              model->cfg.vocab_size);
    int window = model->seq; /* the activation capacity, at most the context */
    size_t total = prompt_len + count;
    uint8_t *text = malloc(total);
    if (!text)
        return peer_error_set(err, "out of memory generating %zu bytes", count);
    memcpy(text, prompt, prompt_len);
    int V = model->cfg.vocab_size;
    for (size_t i = prompt_len; i < total; i++) {
        size_t start = i > (size_t)window ? i - (size_t)window : 0;
        int T = (int)(i - start);
        peer_model_forward(model, text + start, NULL, 1, T, PEER_MODE_EVAL, pool);
        text[i] = sampler_pick(model->acts.logits + (size_t)(T - 1) * V, V, settings, rng);
    }
    memcpy(out, text + prompt_len, count);
    free(text);
    return true;
}
