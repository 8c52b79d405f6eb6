#include "retrieval-trace.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "expert-kernel.h"
#include "product-keys.h"

static bool head_trace_alloc(peer_head_trace *head, int n, int k, int d_key)
{
    head->query = malloc((size_t)d_key * sizeof(float));
    head->sub_score[0] = malloc((size_t)n * sizeof(float));
    head->sub_score[1] = malloc((size_t)n * sizeof(float));
    head->sub_top[0] = malloc((size_t)k * sizeof(int32_t));
    head->sub_top[1] = malloc((size_t)k * sizeof(int32_t));
    head->candidate = malloc((size_t)k * k * sizeof(float));
    head->pick_i = malloc((size_t)k * sizeof(int32_t));
    head->pick_j = malloc((size_t)k * sizeof(int32_t));
    head->expert = malloc((size_t)k * sizeof(int32_t));
    head->row = malloc((size_t)k * sizeof(int32_t));
    head->col = malloc((size_t)k * sizeof(int32_t));
    head->score = malloc((size_t)k * sizeof(float));
    head->gate = malloc((size_t)k * sizeof(float));
    head->activation = malloc((size_t)k * sizeof(float));
    head->contribution = malloc((size_t)k * sizeof(float));
    return head->query && head->sub_score[0] && head->sub_score[1] && head->sub_top[0] &&
           head->sub_top[1] && head->candidate && head->pick_i && head->pick_j && head->expert &&
           head->row && head->col && head->score && head->gate && head->activation &&
           head->contribution;
}

static void head_trace_free(peer_head_trace *head)
{
    free(head->query);
    free(head->sub_score[0]);
    free(head->sub_score[1]);
    free(head->sub_top[0]);
    free(head->sub_top[1]);
    free(head->candidate);
    free(head->pick_i);
    free(head->pick_j);
    free(head->expert);
    free(head->row);
    free(head->col);
    free(head->score);
    free(head->gate);
    free(head->activation);
    free(head->contribution);
}

void peer_token_trace_free(peer_token_trace *trace)
{
    if (trace->head) {
        for (int j = 0; j < trace->heads; j++)
            head_trace_free(&trace->head[j]);
        free(trace->head);
    }
    memset(trace, 0, sizeof *trace);
}

bool peer_token_trace_compute(peer_token_trace *trace, const peer_layer_config *cfg,
                              const peer_layer_params *params, const float *x,
                              const float *query_normed, peer_error *err)
{
    memset(trace, 0, sizeof *trace);
    if (!peer_layer_config_validate(cfg, err))
        return false;
    int n = peer_layer_side(cfg), k = cfg->topk, dk = cfg->d_key, half = dk / 2;
    int D = cfg->d_model;
    trace->heads = cfg->heads;
    trace->n = n;
    trace->topk = k;
    trace->d_key = dk;
    trace->head = calloc((size_t)cfg->heads, sizeof *trace->head);
    if (!trace->head)
        goto out_of_memory;
    float val1[1024], val2[1024];
    for (int j = 0; j < cfg->heads; j++) {
        peer_head_trace *head = &trace->head[j];
        if (!head_trace_alloc(head, n, k, dk))
            goto out_of_memory;
        head->key_group = cfg->shared_keys ? 0 : j;
        memcpy(head->query, query_normed + (size_t)j * dk, (size_t)dk * sizeof(float));
        const float *group = params->keys + (size_t)head->key_group * 2 * n * half;
        /* The same scoring and selection code as the forward, so the path shown is the path
         * taken. */
        product_keys_score(head->sub_score[0], head->query, dk, group, 1, n, half);
        product_keys_score(head->sub_score[1], head->query + half, dk, group + (size_t)n * half,
                           1, n, half);
        topk_select(head->sub_score[0], n, k, head->sub_top[0], val1);
        topk_select(head->sub_score[1], n, k, head->sub_top[1], val2);
        for (int a = 0; a < k; a++)
            for (int b = 0; b < k; b++)
                head->candidate[a * k + b] = val1[a] + val2[b];
        product_keys_merge(val1, val2, k, head->pick_i, head->pick_j, head->score);

        float max = head->score[0], sum = 0.0f;
        for (int s = 0; s < k; s++) {
            head->gate[s] = expf(head->score[s] - max);
            sum += head->gate[s];
        }
        for (int s = 0; s < k; s++) {
            head->gate[s] /= sum;
            head->row[s] = head->sub_top[0][head->pick_i[s]];
            head->col[s] = head->sub_top[1][head->pick_j[s]];
            head->expert[s] = head->row[s] * n + head->col[s];
            size_t e = (size_t)head->expert[s];
            head->activation[s] =
                params->down ? expert_activation(expert_dot(params->down + e * D, x, D),
                                                 cfg->activation)
                             : 1.0f;
            float v_norm = sqrtf(expert_dot(params->up + e * D, params->up + e * D, D));
            head->contribution[s] = fabsf(head->gate[s] * head->activation[s]) * v_norm;
        }
    }
    return true;

out_of_memory:
    peer_token_trace_free(trace);
    return peer_error_set(err, "out of memory tracing a token (%d heads, %d sub-keys)",
                          cfg->heads, n);
}
