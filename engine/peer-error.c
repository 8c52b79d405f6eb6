#include "peer-error.h"

#include <stdarg.h>
#include <stdio.h>

bool peer_error_set(peer_error *err, const char *format, ...)
{
    if (err) {
        va_list args;
        va_start(args, format);
        vsnprintf(err->message, sizeof err->message, format, args);
        va_end(args);
    }
    return false;
}

void peer_error_clear(peer_error *err)
{
    if (err)
        err->message[0] = '\0';
}
