/* A token's retrieval path as JSON: what the Tokens page's export and peer-plot path write, the
 * whole of what the retrieval-path picture draws (retrieval-trace.h has the meanings):
 *
 *   {"layer": 1, "kind": "PEER", "position": 12, "byte": 101, "n": 16, "topk": 4,
 *    "heads": [{"head": 0, "key_group": 0,
 *               "query": [...],                            normalised, q¹ then q² (d_key)
 *               "sub_keys": [{"scores": [...], "top": [...]},   C: q¹·c_a over a (n), top k
 *                            {"scores": [...], "top": [...]}],  C′: q²·c′_b over b
 *               "candidates": [[...], ...],                k × k sums of the top sub-keys
 *               "experts": [{"rank": 0, "expert": 37, "row": 2, "col": 5,
 *                            "candidate_row": 0, "candidate_col": 1, "score": ...,
 *                            "gate": ..., "activation": ..., "contribution": ...}, ...]}]}
 *
 * Floats in the fewest digits that read back as the same float. */
#pragma once

#include <gio/gio.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "retrieval-trace.h"

/* kind is "PEER" or "PKM"; position and byte are the token's. NULL when out of memory. */
json_t *retrieval_path_to_json(const peer_token_trace *trace, int layer, const char *kind,
                               int position, uint8_t byte);
/* The same, written whole or not at all (plot_export_save). */
bool retrieval_path_save_json(const char *path, const peer_token_trace *trace, int layer,
                              const char *kind, int position, uint8_t byte, GError **error);
