/* Numbers for the JSON the programs write: JSON has no NaN or infinity, and a float setting
 * such as a learning rate of 3e-3 should read 0.003, not the digits of its nearest double. */
#pragma once

#include <jansson.h>

/* A JSON number, or null when x is not finite. */
json_t *json_output_number(double x);
/* A float as the shortest decimal that reads back as the same float; null when not finite. */
json_t *json_output_float(float x);
/* Replaces every real inside value (objects and arrays, recursively) by json_output_float of
 * it: for settings that are floats but were written as doubles. */
void json_output_shorten_floats(json_t *value);

/* json_dumps flags that print those shortest forms unchanged and other numbers to 10 digits. */
#define JSON_OUTPUT_FLAGS (JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10))
