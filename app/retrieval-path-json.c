#include "retrieval-path-json.h"

#include <stdlib.h>
#include <string.h>

#include "json-output.h"
#include "plot-export.h"

static json_t *float_array(const float *values, int n)
{
    json_t *array = json_array();
    for (int i = 0; array && i < n; i++)
        json_array_append_new(array, json_output_float(values[i]));
    return array;
}

static json_t *int_array(const int32_t *values, int n)
{
    json_t *array = json_array();
    for (int i = 0; array && i < n; i++)
        json_array_append_new(array, json_integer(values[i]));
    return array;
}

static json_t *head_json(const peer_token_trace *trace, int h)
{
    const peer_head_trace *head = &trace->head[h];
    int k = trace->topk;
    json_t *candidates = json_array();
    for (int i = 0; candidates && i < k; i++)
        json_array_append_new(candidates, float_array(head->candidate + (size_t)i * k, k));
    json_t *experts = json_array();
    for (int r = 0; experts && r < k; r++)
        json_array_append_new(
            experts,
            json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:o, s:o, s:o, s:o}", "rank", r, "expert",
                      head->expert[r], "row", head->row[r], "col", head->col[r],
                      "candidate_row", head->pick_i[r], "candidate_col", head->pick_j[r],
                      "score", json_output_float(head->score[r]), "gate",
                      json_output_float(head->gate[r]), "activation",
                      json_output_float(head->activation[r]), "contribution",
                      json_output_float(head->contribution[r])));
    json_t *sub_keys = json_array();
    for (int half = 0; sub_keys && half < 2; half++)
        json_array_append_new(sub_keys,
                              json_pack("{s:o, s:o}", "scores",
                                        float_array(head->sub_score[half], trace->n), "top",
                                        int_array(head->sub_top[half], k)));
    return json_pack("{s:i, s:i, s:o, s:o, s:o, s:o}", "head", h, "key_group", head->key_group,
                     "query", float_array(head->query, trace->d_key), "sub_keys", sub_keys,
                     "candidates", candidates, "experts", experts);
}

json_t *retrieval_path_to_json(const peer_token_trace *trace, int layer, const char *kind,
                               int position, uint8_t byte)
{
    json_t *heads = json_array();
    for (int h = 0; heads && h < trace->heads; h++) {
        json_t *head = head_json(trace, h);
        if (!head || json_array_append_new(heads, head) != 0) {
            json_decref(heads);
            return NULL;
        }
    }
    return heads ? json_pack("{s:i, s:s, s:i, s:i, s:i, s:i, s:o}", "layer", layer, "kind", kind,
                             "position", position, "byte", (int)byte, "n", trace->n, "topk",
                             trace->topk, "heads", heads)
                 : NULL;
}

bool retrieval_path_save_json(const char *path, const peer_token_trace *trace, int layer,
                              const char *kind, int position, uint8_t byte, GError **error)
{
    json_t *root = retrieval_path_to_json(trace, layer, kind, position, byte);
    char *text = root ? json_dumps(root, JSON_COMPACT | JSON_OUTPUT_FLAGS) : NULL;
    json_decref(root);
    if (!text) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                    "Could not write “%s”: out of memory.", path);
        return false;
    }
    size_t length = strlen(text);
    text[length] = '\n'; /* a last line end, in the place of the string's terminator */
    bool ok = plot_export_save(path, text, length + 1, error);
    free(text);
    return ok;
}
