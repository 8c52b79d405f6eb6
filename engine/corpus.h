/* A training text: bytes, split once and deterministically into a training part (the first
 * 90 %) and a validation part (the rest). Any UTF-8 text is accepted; an empty, too short or
 * binary file is refused with a message saying why and what to give instead. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peer-error.h"
#include "rng.h"

#define CORPUS_VALIDATION_FRACTION 0.1

typedef struct {
    uint8_t *bytes;
    size_t size;
    size_t train_size; /* bytes [0, train_size) train; [train_size, size) validate */
} corpus;

/* Takes a copy of data. name (a path, or "the default corpus") appears in messages. seq_len is
 * the training sequence length T: each part must hold at least T + 1 bytes. */
bool corpus_from_bytes(corpus *c, const uint8_t *data, size_t size, int seq_len, const char *name,
                       peer_error *err);
bool corpus_load_file(corpus *c, const char *path, int seq_len, peer_error *err);
void corpus_free(corpus *c);

/* B sequences of T inputs and their next bytes, at uniform random offsets of the training
 * part. tokens, targets (B, T). */
void corpus_train_batch(const corpus *c, peer_rng *rng, int B, int T, uint8_t *tokens,
                        uint8_t *targets);
/* Consecutive, non-overlapping windows of T + 1 bytes (T inputs, T targets) from the start of
 * the validation part, as peer-eval reads a text. */
size_t corpus_validation_windows(const corpus *c, int T);
void corpus_validation_window(const corpus *c, size_t index, int T, uint8_t *tokens,
                              uint8_t *targets);
