/* libFuzzer target for the safetensors reader. Beyond "no crash, no sanitizer report", every
 * accepted file must keep the promises of safetensors.h (tensors inside the buffer, aligned, in
 * data order, covering the data section exactly) and must survive a write and a read back with
 * the same names, shapes, bits and metadata. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(condition)                                                                     \
    do {                                                                                       \
        if (!(condition)) {                                                                    \
            fprintf(stderr, "%s:%d: broken promise: %s\n", __FILE__, __LINE__, #condition);    \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

/* Where the round trip writes: a RAM disk when there is one, as fsync there costs nothing. */
static const char *scratch_path(void)
{
    static char path[4096];
    if (!path[0]) {
        const char *dir = getenv("FUZZ_SCRATCH");
        if (!dir)
            dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(path, sizeof path, "%s/fuzz-safetensors-%d.safetensors", dir, (int)getpid());
    }
    return path;
}

static void check_promises(const safetensors_file *file)
{
    uint64_t header_length = 0;
    for (int i = 7; i >= 0; i--)
        header_length = header_length << 8 | file->buffer[i];
    const uint8_t *section = file->buffer + 8 + header_length;
    const uint8_t *covered = section;
    for (int i = 0; i < file->n_tensors; i++) {
        const safetensors_tensor *t = &file->tensors[i];
        size_t n = 1;
        for (int d = 0; d < t->n_dims; d++) {
            REQUIRE(t->shape[d] >= 0);
            n *= (size_t)t->shape[d];
        }
        REQUIRE(n == t->n_elements);
        REQUIRE((uintptr_t)t->data % sizeof(float) == 0);
        REQUIRE((const uint8_t *)t->data == covered);
        covered += t->n_elements * sizeof(float);
        /* Reading every float lets AddressSanitizer check the range. */
        volatile float sink = 0.0f;
        for (size_t e = 0; e < t->n_elements; e++)
            sink += t->data[e];
        (void)sink;
        REQUIRE(safetensors_find(file, t->name) != NULL);
    }
    REQUIRE(covered == file->buffer + file->size);
    for (int i = 0; i < file->n_meta; i++)
        REQUIRE(safetensors_meta_get(file, file->meta[i].key) != NULL);
}

static void check_round_trip(const safetensors_file *file)
{
    safetensors_entry *entries = calloc((size_t)file->n_tensors + 1, sizeof *entries);
    REQUIRE(entries);
    for (int i = 0; i < file->n_tensors; i++) {
        entries[i].name = file->tensors[i].name;
        entries[i].n_dims = file->tensors[i].n_dims;
        memcpy(entries[i].shape, file->tensors[i].shape, sizeof entries[i].shape);
        entries[i].data = file->tensors[i].data;
    }
    peer_error err;
    const char *path = scratch_path();
    if (!safetensors_write(path, entries, file->n_tensors, file->meta, file->n_meta, &err)) {
        fprintf(stderr, "the round trip's write failed: %s\n", err.message);
        abort();
    }
    safetensors_file again;
    if (!safetensors_read(&again, path, &err)) {
        fprintf(stderr, "the round trip's read failed: %s\n", err.message);
        abort();
    }
    unlink(path);
    /* Written in data order, read back in data order. */
    REQUIRE(again.n_tensors == file->n_tensors);
    for (int i = 0; i < file->n_tensors; i++) {
        const safetensors_tensor *a = &file->tensors[i], *b = &again.tensors[i];
        REQUIRE(strcmp(a->name, b->name) == 0);
        REQUIRE(a->n_dims == b->n_dims);
        REQUIRE(memcmp(a->shape, b->shape, sizeof a->shape) == 0);
        REQUIRE(a->n_elements == b->n_elements);
        REQUIRE(a->n_elements == 0 || memcmp(a->data, b->data, a->n_elements * 4) == 0);
    }
    REQUIRE(again.n_meta == file->n_meta);
    for (int i = 0; i < file->n_meta; i++) {
        REQUIRE(strcmp(again.meta[i].key, file->meta[i].key) == 0);
        REQUIRE(strcmp(again.meta[i].value, file->meta[i].value) == 0);
    }
    safetensors_free(&again);
    free(entries);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    safetensors_file file;
    peer_error err;
    err.message[0] = '\0';
    if (!safetensors_parse(&file, data, size, &err)) {
        REQUIRE(err.message[0] != '\0');
        REQUIRE(file.buffer == NULL && file.tensors == NULL && file.meta == NULL);
        return 0;
    }
    check_promises(&file);
    check_round_trip(&file);
    safetensors_free(&file);
    return 0;
}
