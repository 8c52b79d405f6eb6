/* Numbers and durations as the window shows them: "12,345", "4.2 M", "3 min 20 s". */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* A whole number with its thousands grouped: "1,048,576". g_free it. */
char *peer_format_count (double value);
/* Three significant digits with an SI prefix: "950", "1.2 k", "3.4 M", "5.6 G", "7.8 T". */
char *peer_format_si (double value);
/* A duration rounded to what matters: "45 s", "3 min 20 s", "2 h 05 min". */
char *peer_format_duration (double seconds);

G_END_DECLS
