#include "eval-report.h"

#include "json-output.h"

json_t *eval_report_to_json(const model_config *cfg, const eval_result *result)
{
    json_t *layers = json_array();
    for (int l = 0; layers && l < cfg->n_layers; l++) {
        const ffn_config *ffn = &cfg->layers[l];
        if (ffn->kind != FFN_PEER && ffn->kind != FFN_PKM)
            continue;
        const expert_usage *u = &result->usage[l];
        json_array_append_new(
            layers, json_pack("{s:i, s:s, s:i, s:o, s:o, s:I}", "layer", l, "kind",
                              ffn_kind_name(ffn->kind), "experts", ffn->peer.n_experts, "usage",
                              json_output_number(u->usage), "unevenness",
                              json_output_number(u->unevenness), "dead", (json_int_t)u->dead));
    }
    if (!layers)
        return NULL;
    return json_pack("{s:o, s:o, s:o, s:I, s:o}", "loss", json_output_number(result->loss),
                     "bits_per_byte", json_output_number(result->bits_per_byte),
                     "perplexity", json_output_number(result->perplexity), "tokens",
                     (json_int_t)result->tokens, "layers", layers);
}

void eval_report_print(FILE *out, const char *indent, const model_config *cfg,
                       const eval_result *result)
{
    fprintf(out, "%sval loss %.4f nats, %.4f bits/byte, perplexity %.3f (%ld tokens)\n", indent,
            result->loss, result->bits_per_byte, result->perplexity, result->tokens);
    for (int l = 0; l < cfg->n_layers; l++) {
        const ffn_config *ffn = &cfg->layers[l];
        if (ffn->kind != FFN_PEER && ffn->kind != FFN_PKM)
            continue;
        const expert_usage *u = &result->usage[l];
        fprintf(out,
                "%slayer %d %s: usage %.1f%% of %d experts, unevenness %.3f nats, %lld dead\n",
                indent, l, ffn_kind_name(ffn->kind), 100.0 * u->usage, ffn->peer.n_experts,
                u->unevenness, (long long)u->dead);
    }
}
