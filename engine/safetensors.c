#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic-file.h"

/* Tensors are handed out as float pointers straight into the file's bytes. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "safetensors data is little-endian and is read in place as floats");
_Static_assert(sizeof(float) == 4, "F32 tensors are read in place as floats");

#define LENGTH_BYTES 8
/* The reference implementation's limit: a header beyond it is an attack, not a model. */
#define MAX_HEADER_BYTES ((uint64_t)100 * 1000 * 1000)
#define DATA_ALIGNMENT 64
#define METADATA_KEY "__metadata__"
/* Longest tensor name or key quoted whole in a message. */
#define QUOTE_MAX 120
#define WRITE_CHUNK ((size_t)1 << 30)

/* What jansson accepts as a string: valid UTF-8 without NUL characters. */
static bool is_utf8(const char *text)
{
    json_t *string = json_string(text);
    json_decref(string);
    return string != NULL;
}

static uint64_t read_u64_le(const uint8_t *bytes)
{
    uint64_t value = 0;
    for (int i = LENGTH_BYTES - 1; i >= 0; i--)
        value = value << 8 | bytes[i];
    return value;
}

static void write_u64_le(uint8_t *bytes, uint64_t value)
{
    for (int i = 0; i < LENGTH_BYTES; i++)
        bytes[i] = (uint8_t)(value >> (8 * i));
}

/* Bytes of a name to quote: at most QUOTE_MAX, cut on a UTF-8 character boundary. */
static int quote_length(const char *name)
{
    size_t length = strlen(name);
    if (length <= QUOTE_MAX)
        return (int)length;
    length = QUOTE_MAX;
    while (length > 0 && ((unsigned char)name[length] & 0xC0) == 0x80)
        length--;
    return (int)length;
}

static const char *json_type_name(const json_t *value)
{
    switch (json_typeof(value)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "an unknown JSON value";
}

/* Elements and bytes of a shape of non-negative sizes; false when they do not fit a size_t. A
 * zero size empties the tensor whatever the others are. */
static bool shape_bytes(const int64_t *shape, int n_dims, size_t *n_elements, size_t *n_bytes)
{
    size_t n = 1;
    for (int d = 0; d < n_dims; d++)
        if (shape[d] == 0) {
            *n_elements = *n_bytes = 0;
            return true;
        }
    for (int d = 0; d < n_dims; d++)
        if (__builtin_mul_overflow(n, (size_t)shape[d], &n))
            return false;
    *n_elements = n;
    return !__builtin_mul_overflow(n, sizeof(float), n_bytes);
}

/* ---- the file's bytes ------------------------------------------------------------------------ */

/* The header length may be any value, so the file's bytes are placed at an offset into their
 * allocation that puts the data section on a 64-byte boundary. Every F32 tensor is then aligned
 * too: ranges cover the section contiguously from its start and each spans a multiple of 4 bytes.
 * The offset (1 to 64) is kept in the byte before the buffer, for buffer_free. */
static uint8_t *buffer_alloc(size_t size, uint64_t header_length)
{
    size_t shift = DATA_ALIGNMENT - (size_t)((LENGTH_BYTES + header_length) % DATA_ALIGNMENT);
    if (size > SIZE_MAX - shift)
        return NULL;
    void *base;
    if (posix_memalign(&base, DATA_ALIGNMENT, shift + size) != 0)
        return NULL;
    uint8_t *buffer = (uint8_t *)base + shift;
    buffer[-1] = (uint8_t)shift;
    return buffer;
}

static void buffer_free(uint8_t *buffer)
{
    if (buffer)
        free(buffer - buffer[-1]);
}

static bool check_header_length(uint64_t header_length, size_t size, peer_error *err)
{
    if (header_length > MAX_HEADER_BYTES)
        return peer_error_set(err,
                              "the header length field says %llu bytes, beyond the %llu a "
                              "safetensors header may have: not a safetensors file, or a damaged "
                              "one",
                              (unsigned long long)header_length,
                              (unsigned long long)MAX_HEADER_BYTES);
    if (header_length > size - LENGTH_BYTES)
        return peer_error_set(err,
                              "the header length field says %llu bytes but only %zu follow it: "
                              "the file is truncated or not a safetensors file",
                              (unsigned long long)header_length, size - LENGTH_BYTES);
    return true;
}

static bool check_file_size(size_t size, peer_error *err)
{
    if (size < LENGTH_BYTES)
        return peer_error_set(err,
                              "%zu bytes is too short for a safetensors file: the header length "
                              "alone takes %d",
                              size, LENGTH_BYTES);
    return true;
}

/* ---- the header ------------------------------------------------------------------------------ */

typedef struct {
    const char *name; /* borrowed from the JSON */
    int order;        /* in the header, to keep the sort total */
    size_t begin, end;
    int n_dims;
    int64_t shape[SAFETENSORS_MAX_DIMS];
    size_t n_elements;
} tensor_entry;

static int compare_entries(const void *a, const void *b)
{
    const tensor_entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return (x->order > y->order) - (x->order < y->order);
}

static bool parse_metadata(safetensors_file *file, const json_t *metadata, peer_error *err)
{
    if (!json_is_object(metadata))
        return peer_error_set(err, "\"" METADATA_KEY "\" is %s; it must be an object of strings",
                              json_type_name(metadata));
    size_t count = json_object_size(metadata);
    file->meta = calloc(count ? count : 1, sizeof *file->meta);
    if (!file->meta)
        return peer_error_set(err, "out of memory for %zu metadata entries", count);
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)metadata, key, value) {
        if (!json_is_string(value))
            return peer_error_set(err, "metadata \"%.*s\" is %s; metadata values must be strings",
                                  quote_length(key), key, json_type_name(value));
        safetensors_meta *meta = &file->meta[file->n_meta];
        meta->key = strdup(key);
        meta->value = strdup(json_string_value(value));
        if (!meta->key || !meta->value) {
            free(meta->key);
            free(meta->value);
            meta->key = meta->value = NULL;
            return peer_error_set(err, "out of memory for the metadata");
        }
        file->n_meta++;
    }
    return true;
}

/* Reads one integer >= 0 of a tensor's shape or data_offsets. */
static bool parse_count(const json_t *value, const char *name, const char *field, int index,
                        int64_t *out, peer_error *err)
{
    if (!json_is_integer(value))
        return peer_error_set(err, "tensor '%.*s': %s[%d] is %s; it must be an integer >= 0",
                              quote_length(name), name, field, index, json_type_name(value));
    json_int_t number = json_integer_value(value);
    if (number < 0)
        return peer_error_set(err, "tensor '%.*s': %s[%d] = %lld is negative; it must be >= 0",
                              quote_length(name), name, field, index, (long long)number);
    *out = (int64_t)number;
    return true;
}

static bool parse_tensor(tensor_entry *entry, const char *name, const json_t *info,
                         size_t data_size, peer_error *err)
{
    int q = quote_length(name);
    entry->name = name;
    if (!json_is_object(info))
        return peer_error_set(err,
                              "tensor '%.*s': its entry is %s; it must be an object with dtype, "
                              "shape and data_offsets",
                              q, name, json_type_name(info));
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)info, key, value) {
        if (strcmp(key, "dtype") != 0 && strcmp(key, "shape") != 0 &&
            strcmp(key, "data_offsets") != 0)
            return peer_error_set(err,
                                  "tensor '%.*s': unknown field \"%.*s\" (a tensor has dtype, "
                                  "shape and data_offsets)",
                                  q, name, quote_length(key), key);
    }

    const json_t *dtype = json_object_get(info, "dtype");
    if (!dtype)
        return peer_error_set(err, "tensor '%.*s': no dtype", q, name);
    if (!json_is_string(dtype))
        return peer_error_set(err, "tensor '%.*s': dtype is %s; it must be the string \"F32\"", q,
                              name, json_type_name(dtype));
    const char *dtype_name = json_string_value(dtype);
    if (strcmp(dtype_name, "F32") != 0)
        return peer_error_set(err,
                              "tensor '%.*s': dtype \"%.*s\" is not supported: the workbench "
                              "reads and writes F32 only",
                              q, name, quote_length(dtype_name), dtype_name);

    const json_t *shape = json_object_get(info, "shape");
    if (!shape)
        return peer_error_set(err, "tensor '%.*s': no shape", q, name);
    if (!json_is_array(shape))
        return peer_error_set(err, "tensor '%.*s': shape is %s; it must be an array of integers",
                              q, name, json_type_name(shape));
    size_t n_dims = json_array_size(shape);
    if (n_dims > SAFETENSORS_MAX_DIMS)
        return peer_error_set(err, "tensor '%.*s': shape has %zu dimensions; at most %d are read",
                              q, name, n_dims, SAFETENSORS_MAX_DIMS);
    entry->n_dims = (int)n_dims;
    for (size_t d = 0; d < n_dims; d++)
        if (!parse_count(json_array_get(shape, d), name, "shape", (int)d, &entry->shape[d], err))
            return false;
    size_t n_elements, n_bytes;
    if (!shape_bytes(entry->shape, entry->n_dims, &n_elements, &n_bytes))
        return peer_error_set(err, "tensor '%.*s': shape has too many elements to address", q,
                              name);
    entry->n_elements = n_elements;

    const json_t *offsets = json_object_get(info, "data_offsets");
    if (!offsets)
        return peer_error_set(err, "tensor '%.*s': no data_offsets", q, name);
    if (!json_is_array(offsets) || json_array_size(offsets) != 2)
        return peer_error_set(err,
                              "tensor '%.*s': data_offsets must be an array [begin, end] of two "
                              "integers",
                              q, name);
    int64_t begin, end;
    if (!parse_count(json_array_get(offsets, 0), name, "data_offsets", 0, &begin, err) ||
        !parse_count(json_array_get(offsets, 1), name, "data_offsets", 1, &end, err))
        return false;
    if (begin > end)
        return peer_error_set(err, "tensor '%.*s': data_offsets [%lld, %lld] end before they begin",
                              q, name, (long long)begin, (long long)end);
    if ((uint64_t)end > data_size)
        return peer_error_set(err,
                              "tensor '%.*s': data_offsets [%lld, %lld] run past the data "
                              "section's %zu bytes",
                              q, name, (long long)begin, (long long)end, data_size);
    entry->begin = (size_t)begin;
    entry->end = (size_t)end;
    if (entry->end - entry->begin != n_bytes)
        return peer_error_set(err,
                              "tensor '%.*s': shape has %zu F32 elements (%zu bytes) but "
                              "data_offsets [%lld, %lld] span %lld bytes",
                              q, name, n_elements, n_bytes, (long long)begin, (long long)end,
                              (long long)(end - begin));
    return true;
}

/* Sorted by offset, the ranges must follow one another from 0 to the end of the data: the
 * format allows neither overlaps nor bytes that belong to no tensor. */
static bool check_coverage(const tensor_entry *entries, int n, size_t data_size, peer_error *err)
{
    size_t covered = 0;
    for (int i = 0; i < n; i++) {
        const tensor_entry *e = &entries[i];
        if (e->begin < covered) {
            const tensor_entry *prev = &entries[i - 1];
            return peer_error_set(err,
                                  "tensor '%.*s': data_offsets [%zu, %zu] overlap those of "
                                  "tensor '%.*s' [%zu, %zu]",
                                  quote_length(e->name), e->name, e->begin, e->end,
                                  quote_length(prev->name), prev->name, prev->begin, prev->end);
        }
        if (e->begin > covered) {
            if (i == 0)
                return peer_error_set(err,
                                      "bytes 0 to %zu of the data section belong to no tensor "
                                      "(the first, '%.*s', begins at %zu); safetensors allows no "
                                      "holes",
                                      e->begin, quote_length(e->name), e->name, e->begin);
            const tensor_entry *prev = &entries[i - 1];
            return peer_error_set(err,
                                  "bytes %zu to %zu of the data section belong to no tensor "
                                  "(between '%.*s' and '%.*s'); safetensors allows no holes",
                                  covered, e->begin, quote_length(prev->name), prev->name,
                                  quote_length(e->name), e->name);
        }
        covered = e->end;
    }
    if (covered != data_size)
        return peer_error_set(err,
                              "the data section has %zu bytes but the tensors cover only the "
                              "first %zu; safetensors allows no trailing bytes",
                              data_size, covered);
    return true;
}

static bool parse_tensors(safetensors_file *file, const json_t *root, size_t data_size,
                          const uint8_t *data, peer_error *err)
{
    size_t count = json_object_size(root) - (json_object_get(root, METADATA_KEY) ? 1 : 0);
    tensor_entry *entries = calloc(count ? count : 1, sizeof *entries);
    file->tensors = calloc(count ? count : 1, sizeof *file->tensors);
    if (!entries || !file->tensors) {
        free(entries);
        return peer_error_set(err, "out of memory for %zu tensors", count);
    }
    int n = 0;
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)root, key, value) {
        if (strcmp(key, METADATA_KEY) == 0)
            continue;
        if (!parse_tensor(&entries[n], key, value, data_size, err)) {
            free(entries);
            return false;
        }
        entries[n].order = n;
        n++;
    }
    qsort(entries, (size_t)n, sizeof *entries, compare_entries);
    if (!check_coverage(entries, n, data_size, err)) {
        free(entries);
        return false;
    }
    for (int i = 0; i < n; i++) {
        safetensors_tensor *t = &file->tensors[i];
        t->name = strdup(entries[i].name);
        if (!t->name) {
            free(entries);
            return peer_error_set(err, "out of memory for the tensor names");
        }
        file->n_tensors++;
        t->n_dims = entries[i].n_dims;
        memcpy(t->shape, entries[i].shape, sizeof t->shape);
        t->n_elements = entries[i].n_elements;
        t->data = (const float *)(data + entries[i].begin);
    }
    free(entries);
    return true;
}

/* Checks file->buffer (file->size bytes, header length already checked) and fills the rest. */
static bool parse_buffer(safetensors_file *file, peer_error *err)
{
    uint64_t header_length = read_u64_le(file->buffer);
    const char *header = (const char *)file->buffer + LENGTH_BYTES;
    /* jansson checks the UTF-8, rejects NUL characters and, with this flag, repeated names. */
    json_error_t json_err;
    json_t *root = json_loadb(header, (size_t)header_length, JSON_REJECT_DUPLICATES, &json_err);
    if (!root)
        return peer_error_set(err, "the header is not valid JSON: %s (header byte %d)",
                              json_err.text, json_err.position);
    bool ok = true;
    if (!json_is_object(root)) {
        ok = peer_error_set(err, "the header is %s; it must be a JSON object",
                            json_type_name(root));
    } else {
        const json_t *metadata = json_object_get(root, METADATA_KEY);
        size_t data_offset = LENGTH_BYTES + (size_t)header_length;
        if (metadata)
            ok = parse_metadata(file, metadata, err);
        if (ok)
            ok = parse_tensors(file, root, file->size - data_offset, file->buffer + data_offset,
                               err);
    }
    json_decref(root);
    return ok;
}

/* ---- reading --------------------------------------------------------------------------------- */

void safetensors_free(safetensors_file *file)
{
    for (int i = 0; i < file->n_tensors; i++)
        free(file->tensors[i].name);
    free(file->tensors);
    for (int i = 0; i < file->n_meta; i++) {
        free(file->meta[i].key);
        free(file->meta[i].value);
    }
    free(file->meta);
    buffer_free(file->buffer);
    memset(file, 0, sizeof *file);
}

bool safetensors_parse(safetensors_file *file, const uint8_t *data, size_t size, peer_error *err)
{
    memset(file, 0, sizeof *file);
    if (!check_file_size(size, err))
        return false;
    uint64_t header_length = read_u64_le(data);
    if (!check_header_length(header_length, size, err))
        return false;
    file->buffer = buffer_alloc(size, header_length);
    if (!file->buffer)
        return peer_error_set(err, "out of memory for a copy of %zu bytes", size);
    memcpy(file->buffer, data, size);
    file->size = size;
    if (!parse_buffer(file, err)) {
        safetensors_free(file);
        return false;
    }
    return true;
}

static bool read_full(int fd, uint8_t *buffer, size_t size, size_t *got)
{
    *got = 0;
    while (*got < size) {
        size_t chunk = size - *got < WRITE_CHUNK ? size - *got : WRITE_CHUNK;
        ssize_t n = pread(fd, buffer + *got, chunk, (off_t)*got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        if (n == 0)
            return true;
        *got += (size_t)n;
    }
    return true;
}

/* The reading half of safetensors_read, with messages that do not yet name the path. */
static bool read_file(safetensors_file *file, int fd, peer_error *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return peer_error_set(err, "%s", strerror(errno));
    if (!S_ISREG(st.st_mode))
        return peer_error_set(err, "not a regular file");
    if ((uint64_t)st.st_size > SIZE_MAX - DATA_ALIGNMENT)
        return peer_error_set(err, "%lld bytes is too large to load", (long long)st.st_size);
    size_t size = (size_t)st.st_size;
    if (!check_file_size(size, err))
        return false;
    uint8_t length_bytes[LENGTH_BYTES];
    size_t got;
    if (!read_full(fd, length_bytes, LENGTH_BYTES, &got))
        return peer_error_set(err, "%s", strerror(errno));
    if (got != LENGTH_BYTES)
        return peer_error_set(err, "the file shrank while it was read");
    uint64_t header_length = read_u64_le(length_bytes);
    if (!check_header_length(header_length, size, err))
        return false;
    file->buffer = buffer_alloc(size, header_length);
    if (!file->buffer)
        return peer_error_set(err, "out of memory for its %zu bytes", size);
    if (!read_full(fd, file->buffer, size, &got))
        return peer_error_set(err, "%s", strerror(errno));
    if (got != size || read_u64_le(file->buffer) != header_length)
        return peer_error_set(err, "the file changed while it was read");
    file->size = size;
    return parse_buffer(file, err);
}

bool safetensors_read(safetensors_file *file, const char *path, peer_error *err)
{
    memset(file, 0, sizeof *file);
    peer_error cause;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return peer_error_set(err, "could not open %s: %s", path, strerror(errno));
    bool ok = read_file(file, fd, &cause);
    close(fd);
    if (!ok) {
        safetensors_free(file);
        return peer_error_set(err, "%s: %s", path, cause.message);
    }
    return true;
}

const safetensors_tensor *safetensors_find(const safetensors_file *file, const char *name)
{
    for (int i = 0; i < file->n_tensors; i++)
        if (strcmp(file->tensors[i].name, name) == 0)
            return &file->tensors[i];
    return NULL;
}

const char *safetensors_meta_get(const safetensors_file *file, const char *key)
{
    for (int i = 0; i < file->n_meta; i++)
        if (strcmp(file->meta[i].key, key) == 0)
            return file->meta[i].value;
    return NULL;
}

/* ---- writing --------------------------------------------------------------------------------- */

/* Bytes of the data of an entry that check_entry accepted. */
static size_t entry_bytes(const safetensors_entry *t)
{
    size_t n_elements, n_bytes = 0;
    shape_bytes(t->shape, t->n_dims, &n_elements, &n_bytes);
    return n_bytes;
}

static bool check_entry(const safetensors_entry *t, int index, peer_error *err)
{
    if (!t->name)
        return peer_error_set(err, "tensor %d has no name", index);
    if (!is_utf8(t->name))
        return peer_error_set(err, "tensor %d: its name is not valid UTF-8", index);
    int q = quote_length(t->name);
    if (strcmp(t->name, METADATA_KEY) == 0)
        return peer_error_set(err, "a tensor may not be named \"" METADATA_KEY "\"");
    if (t->n_dims < 0 || t->n_dims > SAFETENSORS_MAX_DIMS)
        return peer_error_set(err, "tensor '%.*s': %d dimensions; use 0 to %d", q, t->name,
                              t->n_dims, SAFETENSORS_MAX_DIMS);
    for (int d = 0; d < t->n_dims; d++)
        if (t->shape[d] < 0)
            return peer_error_set(err, "tensor '%.*s': shape[%d] = %lld is negative", q, t->name,
                                  d, (long long)t->shape[d]);
    size_t n_elements, bytes;
    if (!shape_bytes(t->shape, t->n_dims, &n_elements, &bytes))
        return peer_error_set(err, "tensor '%.*s': shape has too many elements to address", q,
                              t->name);
    if (bytes > 0 && !t->data)
        return peer_error_set(err, "tensor '%.*s': no data", q, t->name);
    return true;
}

/* The header JSON, unpadded; NULL with a message when an entry is unusable. */
static char *build_header(const safetensors_entry *tensors, int n_tensors,
                          const safetensors_meta *meta, int n_meta, peer_error *err)
{
    json_t *root = json_object();
    if (!root) {
        peer_error_set(err, "out of memory for the header");
        return NULL;
    }
    bool ok = true;
    if (n_meta > 0) {
        json_t *metadata = json_object();
        ok = metadata && json_object_set_new(root, METADATA_KEY, metadata) == 0;
        if (!ok)
            peer_error_set(err, "out of memory for the header");
        for (int i = 0; ok && i < n_meta; i++) {
            const char *key = meta[i].key, *value = meta[i].value;
            if (!key || !value) {
                ok = peer_error_set(err, "metadata entry %d has no %s", i, key ? "value" : "key");
            } else if (!is_utf8(key) || !is_utf8(value)) {
                ok = peer_error_set(err, "metadata entry %d: its %s is not valid UTF-8", i,
                                    is_utf8(key) ? "value" : "key");
            } else if (json_object_get(metadata, key)) {
                ok = peer_error_set(err, "metadata \"%.*s\" is given twice", quote_length(key),
                                    key);
            } else {
                if (json_object_set_new(metadata, key, json_string(value)) != 0)
                    ok = peer_error_set(err, "out of memory for the header");
            }
        }
    }
    size_t offset = 0;
    for (int i = 0; ok && i < n_tensors; i++) {
        const safetensors_entry *t = &tensors[i];
        if (!check_entry(t, i, err)) {
            ok = false;
            break;
        }
        int q = quote_length(t->name);
        if (json_object_get(root, t->name)) {
            ok = peer_error_set(err, "tensor '%.*s' is given twice", q, t->name);
            break;
        }
        size_t bytes = entry_bytes(t);
        json_t *shape = json_array();
        for (int d = 0; shape && d < t->n_dims; d++)
            if (json_array_append_new(shape, json_integer((json_int_t)t->shape[d])) != 0) {
                json_decref(shape);
                shape = NULL;
            }
        json_t *info = json_pack("{s:s, s:o, s:[I,I]}", "dtype", "F32", "shape", shape,
                                 "data_offsets", (json_int_t)offset,
                                 (json_int_t)(offset + bytes));
        if (!info || json_object_set_new(root, t->name, info) != 0) {
            ok = peer_error_set(err, "out of memory for the header");
            break;
        }
        offset += bytes;
    }
    char *header = NULL;
    if (ok) {
        header = json_dumps(root, JSON_COMPACT);
        if (!header)
            peer_error_set(err, "out of memory for the header");
    }
    json_decref(root);
    return header;
}

typedef struct {
    const char *header;
    const safetensors_entry *tensors;
    int n_tensors;
} file_contents;

static bool write_contents(int fd, void *data)
{
    const file_contents *c = data;
    size_t header_length = strlen(c->header);
    size_t padding = (LENGTH_BYTES - header_length % LENGTH_BYTES) % LENGTH_BYTES;
    uint8_t length_bytes[LENGTH_BYTES];
    write_u64_le(length_bytes, header_length + padding);
    static const char spaces[] = "       ";
    if (!atomic_file_write_all(fd, length_bytes, sizeof length_bytes) ||
        !atomic_file_write_all(fd, c->header, header_length) ||
        !atomic_file_write_all(fd, spaces, padding))
        return false;
    for (int i = 0; i < c->n_tensors; i++) {
        if (!atomic_file_write_all(fd, c->tensors[i].data, entry_bytes(&c->tensors[i])))
            return false;
    }
    return true;
}

bool safetensors_write(const char *path, const safetensors_entry *tensors, int n_tensors,
                       const safetensors_meta *meta, int n_meta, peer_error *err)
{
    if (n_tensors < 0 || n_meta < 0 || (n_tensors > 0 && !tensors) || (n_meta > 0 && !meta))
        return peer_error_set(err, "could not write %s: %d tensors and %d metadata entries given",
                              path, n_tensors, n_meta);
    peer_error cause;
    char *header = build_header(tensors, n_tensors, meta, n_meta, &cause);
    if (!header)
        return peer_error_set(err, "could not write %s: %s", path, cause.message);

    file_contents contents = { header, tensors, n_tensors };
    atomic_file_step failed;
    bool ok = atomic_file_replace(path, write_contents, &contents, &failed);
    if (!ok) {
        static const char *const what[] = {
            [ATOMIC_FILE_CREATE] = "could not write",
            [ATOMIC_FILE_WRITE] = "could not write",
            [ATOMIC_FILE_FLUSH] = "could not flush",
            [ATOMIC_FILE_REPLACE] = "could not replace",
        };
        if (failed == ATOMIC_FILE_SYNC_FOLDER)
            peer_error_set(err, "wrote %s but could not flush its directory: %s", path,
                           strerror(errno));
        else
            peer_error_set(err, "%s %s: %s", what[failed], path, strerror(errno));
    }
    free(header);
    return ok;
}
