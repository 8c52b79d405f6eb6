/* An evaluation's numbers for people and for programs: loss, bits per byte, perplexity, and for
 * every PEER and PKM layer its expert usage, unevenness and dead experts. The same fields in the
 * run log, in peer-eval's output and on the terminal. */
#pragma once

#include <jansson.h>
#include <stdio.h>

#include "model-config.h"
#include "trainer.h"

/* {"loss", "bits_per_byte", "perplexity", "tokens", "layers": [{"layer", "kind", "experts",
 * "usage", "unevenness", "dead"}]}; usage is a fraction in [0, 1]. A number that is not finite
 * is null. NULL when out of memory. */
json_t *eval_report_to_json(const model_config *cfg, const eval_result *result);

/* "val loss 1.2345 nats, 1.781 bits/byte, perplexity 3.44" and one line per PEER or PKM layer,
 * each line starting with indent. */
void eval_report_print(FILE *out, const char *indent, const model_config *cfg,
                       const eval_result *result);
