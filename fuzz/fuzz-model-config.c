/* libFuzzer target for the model config parser. Beyond "no crash, no sanitizer report": a refusal
 * always says why, and an accepted config writes JSON that parses back to the same config and
 * the same JSON. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model-config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(condition)                                                                     \
    do {                                                                                       \
        if (!(condition)) {                                                                    \
            fprintf(stderr, "%s:%d: broken promise: %s\n", __FILE__, __LINE__, #condition);    \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *json = malloc(size + 1);
    REQUIRE(json);
    memcpy(json, data, size);
    json[size] = '\0';
    model_config cfg;
    peer_error err;
    err.message[0] = '\0';
    if (!model_config_from_json(&cfg, json, &err)) {
        REQUIRE(err.message[0] != '\0');
        free(json);
        return 0;
    }
    REQUIRE(model_config_validate(&cfg, NULL));
    char *written = model_config_to_json(&cfg);
    REQUIRE(written);
    model_config again;
    if (!model_config_from_json(&again, written, &err)) {
        fprintf(stderr, "its own JSON was refused: %s\n%s\n", err.message, written);
        abort();
    }
    REQUIRE(memcmp(&again, &cfg, sizeof cfg) == 0);
    char *rewritten = model_config_to_json(&again);
    REQUIRE(rewritten && strcmp(written, rewritten) == 0);
    free(rewritten);
    free(written);
    free(json);
    return 0;
}
