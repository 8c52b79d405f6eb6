#include "json-output.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

json_t *json_output_number(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

json_t *json_output_float(float x)
{
    if (!isfinite(x))
        return json_null();
    /* Nine significant digits always read back as the same float; fewer usually do. */
    char text[32];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(text, sizeof text, "%.*g", digits, (double)x);
        if (strtof(text, NULL) == x)
            break;
    }
    return json_real(strtod(text, NULL));
}

void json_output_shorten_floats(json_t *value)
{
    if (json_is_object(value)) {
        for (void *iter = json_object_iter(value); iter;
             iter = json_object_iter_next(value, iter)) {
            json_t *member = json_object_iter_value(iter);
            if (json_is_real(member))
                json_object_iter_set_new(value, iter,
                                         json_output_float((float)json_real_value(member)));
            else
                json_output_shorten_floats(member);
        }
    } else if (json_is_array(value)) {
        size_t index;
        json_t *member;
        json_array_foreach(value, index, member) {
            if (json_is_real(member))
                json_array_set_new(value, index,
                                   json_output_float((float)json_real_value(member)));
            else
                json_output_shorten_floats(member);
        }
    }
}
