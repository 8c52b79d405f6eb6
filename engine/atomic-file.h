/* A file replaced whole or not at all: written to a hidden temporary beside it (so the rename
 * stays on one file system), flushed, given the mode of the file it replaces (or 0666 less the
 * umask), renamed over it, and its folder flushed so that the rename survives a crash.
 * Safetensors files (checkpoints) and exported plots are saved through it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    ATOMIC_FILE_CREATE,      /* the temporary could not be made */
    ATOMIC_FILE_WRITE,       /* writing it failed (a full disk: ENOSPC) */
    ATOMIC_FILE_FLUSH,       /* it could not be flushed to disk */
    ATOMIC_FILE_REPLACE,     /* it could not be renamed over the file */
    ATOMIC_FILE_SYNC_FOLDER, /* the file is in place, but a crash now could still lose it */
} atomic_file_step;

/* Writes the whole contents to fd; false with errno set when it cannot. */
typedef bool (*atomic_file_writer)(int fd, void *data);

/* Replaces path with what writer writes. False, with errno and *failed saying why and where,
 * when the file is not in place whole (except ATOMIC_FILE_SYNC_FOLDER, when it is); no temporary
 * is left behind. */
bool atomic_file_replace(const char *path, atomic_file_writer writer, void *data,
                         atomic_file_step *failed);

/* write(2) until all size bytes are written, through EINTR and short writes. */
bool atomic_file_write_all(int fd, const void *bytes, size_t size);
