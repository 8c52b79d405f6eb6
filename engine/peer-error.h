/* A failure the caller can show: every engine function that can fail on user input returns
 * false and fills one of these with a message naming the value and what would be valid. */
#pragma once

#include <stdbool.h>

#define PEER_ERROR_SIZE 512

typedef struct {
    char message[PEER_ERROR_SIZE];
} peer_error;

/* Writes the message; err may be NULL. Always returns false, so `return peer_error_set (...)`. */
bool peer_error_set(peer_error *err, const char *format, ...) __attribute__((format(printf, 2, 3)));
void peer_error_clear(peer_error *err);
