#include "atomic-file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bytes per write(2): large writes are split so that no single call nears what the kernel
 * accepts at once. */
#define WRITE_CHUNK ((size_t)1 << 30)

bool atomic_file_write_all(int fd, const void *bytes, size_t size)
{
    const uint8_t *next = bytes;
    while (size > 0) {
        ssize_t n = write(fd, next, size < WRITE_CHUNK ? size : WRITE_CHUNK);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        if (n == 0) {
            errno = ENOSPC;
            return false;
        }
        next += n;
        size -= (size_t)n;
    }
    return true;
}

/* The mode a new file gets: the one it replaces, else 0666 less the umask. The umask is read
 * from /proc because umask(2) can only be read by setting it, which would race other threads. */
static mode_t new_file_mode(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
        return st.st_mode & 07777;
    mode_t mask = 077;
    FILE *status = fopen("/proc/self/status", "re");
    if (status) {
        char line[256];
        unsigned int value;
        while (fgets(line, sizeof line, status))
            if (sscanf(line, "Umask: %o", &value) == 1) {
                mask = (mode_t)value;
                break;
            }
        fclose(status);
    }
    return 0666 & ~mask;
}

/* The folder part of path ("." for a bare name), and in *name what follows it. */
static char *split_path(const char *path, const char **name)
{
    const char *slash = strrchr(path, '/');
    *name = slash ? slash + 1 : path;
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* A folder's fsync makes the rename durable; file systems that cannot do it say EINVAL. */
static bool sync_folder(const char *folder)
{
    int fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool ok = fsync(fd) == 0 || errno == EINVAL;
    int saved = errno;
    close(fd);
    errno = saved;
    return ok;
}

bool atomic_file_replace(const char *path, atomic_file_writer writer, void *data,
                         atomic_file_step *failed)
{
    atomic_file_step step = ATOMIC_FILE_CREATE;
    const char *name;
    char *folder = split_path(path, &name);
    /* Hidden, beside the file: a crash between the write and the rename leaves nothing a user
     * would mistake for the file. */
    char *temp = folder ? malloc(strlen(folder) + strlen(name) + sizeof "/..XXXXXX") : NULL;
    if (!temp) {
        free(folder);
        *failed = step;
        errno = ENOMEM;
        return false;
    }
    sprintf(temp, "%s/.%s.XXXXXX", folder, name);
    mode_t mode = new_file_mode(path);
    int fd = mkstemp(temp);
    bool ok = fd >= 0;
    int saved = errno;
    if (ok) {
        step = ATOMIC_FILE_WRITE;
        ok = fchmod(fd, mode) == 0 && writer(fd, data);
        if (ok) {
            step = ATOMIC_FILE_FLUSH;
            ok = fsync(fd) == 0;
        }
        saved = errno;
        if (close(fd) != 0 && ok) {
            saved = errno;
            ok = false;
        }
        if (ok) {
            step = ATOMIC_FILE_REPLACE;
            ok = rename(temp, path) == 0;
            saved = errno;
        }
        if (!ok)
            unlink(temp);
    }
    if (ok) {
        step = ATOMIC_FILE_SYNC_FOLDER;
        ok = sync_folder(folder);
        saved = errno;
    }
    free(temp);
    free(folder);
    *failed = step;
    errno = saved;
    return ok;
}
