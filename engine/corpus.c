#include "corpus.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Offset of the first byte that is not part of valid UTF-8 text (or a NUL), or size. */
static size_t first_non_text_byte(const uint8_t *s, size_t size)
{
    size_t i = 0;
    while (i < size) {
        uint8_t c = s[i];
        if (c == 0)
            return i;
        if (c < 0x80) {
            i++;
            continue;
        }
        int extra = (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : -1;
        if (extra < 0 || c == 0xc0 || c == 0xc1 || c > 0xf4 || (size_t)extra >= size - i)
            return i;
        for (int k = 1; k <= extra; k++)
            if ((s[i + k] & 0xc0) != 0x80)
                return i;
        /* Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not text. */
        uint8_t next = s[i + 1];
        if ((c == 0xe0 && next < 0xa0) || (c == 0xed && next >= 0xa0) ||
            (c == 0xf0 && next < 0x90) || (c == 0xf4 && next >= 0x90))
            return i;
        i += (size_t)extra + 1;
    }
    return size;
}

/* The smallest text whose both parts hold one sequence of T + 1 bytes. */
static size_t minimum_size(int seq_len)
{
    size_t need = (size_t)seq_len + 1;
    size_t size = (size_t)((double)need / CORPUS_VALIDATION_FRACTION);
    while ((size_t)((double)size * CORPUS_VALIDATION_FRACTION) < need)
        size++;
    return size;
}

bool corpus_from_bytes(corpus *c, const uint8_t *data, size_t size, int seq_len, const char *name,
                       peer_error *err)
{
    memset(c, 0, sizeof *c);
    if (size == 0)
        return peer_error_set(err, "%s is empty: give a UTF-8 text file of at least %zu bytes",
                              name, minimum_size(seq_len));
    size_t bad = first_non_text_byte(data, size);
    if (bad < size)
        return peer_error_set(err,
                              "%s does not look like UTF-8 text (byte 0x%02x at offset %zu): "
                              "give a plain text file",
                              name, data[bad], bad);
    size_t validation = (size_t)((double)size * CORPUS_VALIDATION_FRACTION);
    size_t need = (size_t)seq_len + 1;
    if (validation < need || size - validation < need) {
        size_t minimum = minimum_size(seq_len);
        return peer_error_set(err,
                              "%s holds %zu bytes, too short for sequences of %d bytes: the last "
                              "10 %% is kept for validation and each part needs at least %zu "
                              "bytes, so give at least %zu bytes of text (or a shorter sequence)",
                              name, size, seq_len, need, minimum);
    }
    c->bytes = malloc(size);
    if (!c->bytes)
        return peer_error_set(err, "out of memory reading %s (%zu bytes)", name, size);
    memcpy(c->bytes, data, size);
    c->size = size;
    c->train_size = size - validation;
    return true;
}

bool corpus_load_file(corpus *c, const char *path, int seq_len, peer_error *err)
{
    memset(c, 0, sizeof *c);
    FILE *file = fopen(path, "rb");
    if (!file)
        return peer_error_set(err, "cannot open the text %s: %s", path, strerror(errno));
    uint8_t *data = NULL;
    size_t size = 0, capacity = 0;
    for (;;) {
        if (size == capacity) {
            capacity = capacity ? capacity * 2 : 1 << 20;
            uint8_t *grown = realloc(data, capacity);
            if (!grown) {
                free(data);
                fclose(file);
                return peer_error_set(err, "out of memory reading %s", path);
            }
            data = grown;
        }
        size_t got = fread(data + size, 1, capacity - size, file);
        size += got;
        if (got == 0)
            break;
    }
    bool failed = ferror(file);
    int saved = errno;
    fclose(file);
    if (failed) {
        free(data);
        return peer_error_set(err, "cannot read the text %s: %s", path, strerror(saved));
    }
    bool ok = corpus_from_bytes(c, data, size, seq_len, path, err);
    free(data);
    return ok;
}

void corpus_free(corpus *c)
{
    free(c->bytes);
    memset(c, 0, sizeof *c);
}

void corpus_train_batch(const corpus *c, peer_rng *rng, int B, int T, uint8_t *tokens,
                        uint8_t *targets)
{
    size_t starts = c->train_size - (size_t)T; /* offsets with T + 1 bytes inside the part */
    for (int b = 0; b < B; b++) {
        size_t offset = (size_t)(peer_rng_next(rng) % starts);
        memcpy(tokens + (size_t)b * T, c->bytes + offset, (size_t)T);
        memcpy(targets + (size_t)b * T, c->bytes + offset + 1, (size_t)T);
    }
}

size_t corpus_validation_windows(const corpus *c, int T)
{
    size_t part = c->size - c->train_size;
    return part / ((size_t)T + 1);
}

void corpus_validation_window(const corpus *c, size_t index, int T, uint8_t *tokens,
                              uint8_t *targets)
{
    const uint8_t *start = c->bytes + c->train_size + index * ((size_t)T + 1);
    memcpy(tokens, start, (size_t)T);
    memcpy(targets, start + 1, (size_t)T);
}
