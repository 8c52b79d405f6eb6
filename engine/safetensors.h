/* The safetensors file format: an 8-byte little-endian header length, a JSON header mapping
 * tensor names to {dtype, shape, data_offsets} (plus "__metadata__", string to string), then the
 * raw little-endian data. Only F32 is produced or accepted. The reader never trusts the file:
 * every length, offset, shape and name is checked before use. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peer-error.h"

#define SAFETENSORS_MAX_DIMS 8

typedef struct {
    char *name;
    int n_dims;
    int64_t shape[SAFETENSORS_MAX_DIMS];
    size_t n_elements;
    const float *data; /* (n_elements) little-endian F32, inside the file's buffer */
} safetensors_tensor;

typedef struct {
    char *key;
    char *value;
} safetensors_meta;

typedef struct {
    uint8_t *buffer; /* the whole file */
    size_t size;
    int n_tensors;
    safetensors_tensor *tensors; /* in file order of their data */
    int n_meta;
    safetensors_meta *meta;
} safetensors_file;

/* Reads and checks a whole file: header length within the file, header JSON valid and an object,
 * every tensor F32 with a sane shape whose element count matches its byte range, ranges inside
 * the data section, not overlapping, covering it exactly; names unique. Errors name the file,
 * the tensor and the problem. */
bool safetensors_read(safetensors_file *file, const char *path, peer_error *err);
/* The same checks on a buffer already in memory (the fuzzing harness's entry point); takes a
 * copy. */
bool safetensors_parse(safetensors_file *file, const uint8_t *data, size_t size, peer_error *err);
void safetensors_free(safetensors_file *file);

/* NULL when absent. */
const safetensors_tensor *safetensors_find(const safetensors_file *file, const char *name);
const char *safetensors_meta_get(const safetensors_file *file, const char *key);

/* A tensor to write: data holds n_elements floats. */
typedef struct {
    const char *name;
    int n_dims;
    int64_t shape[SAFETENSORS_MAX_DIMS];
    const float *data;
} safetensors_entry;

/* Writes atomically: a temporary file beside path, written in full, fsync'd, renamed over path,
 * and the directory fsync'd; on any failure (a full disk, a missing folder, no permission) the
 * temporary is removed, path is left as it was, and the message names the path and the cause. */
bool safetensors_write(const char *path, const safetensors_entry *tensors, int n_tensors,
                       const safetensors_meta *meta, int n_meta, peer_error *err);
