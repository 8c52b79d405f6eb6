/* Text generation: the model continues a prompt one byte at a time, sampling each next byte
 * from its softmax at a temperature, optionally restricted to the top-k bytes. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "rng.h"

typedef struct {
    float temperature; /* > 0; 1 samples the model's own distribution */
    int top_k;         /* 0 for all bytes */
} sampler_settings;

/* Appends `count` bytes to out (count bytes long) after the prompt (prompt_len >= 1; only its
 * last context bytes are seen). The model runs in evaluation mode with batch 1. */
bool sampler_generate(peer_model *model, const uint8_t *prompt, size_t prompt_len, uint8_t *out,
                      size_t count, const sampler_settings *settings, peer_rng *rng,
                      thread_pool *pool, peer_error *err);

/* Samples one byte from logits (V) at the settings. */
uint8_t sampler_pick(const float *logits, int V, const sampler_settings *settings, peer_rng *rng);
