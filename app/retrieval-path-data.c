#include "retrieval-path-data.h"

void retrieval_path_head_from_trace(RetrievalPathHead *out, const peer_head_trace *head,
                                    int number)
{
    *out = (RetrievalPathHead){
        .head = number,
        .sub_score = {head->sub_score[0], head->sub_score[1]},
        .sub_top = {head->sub_top[0], head->sub_top[1]},
        .candidate = head->candidate,
        .pick_i = head->pick_i,
        .pick_j = head->pick_j,
        .expert = head->expert,
        .row = head->row,
        .col = head->col,
        .gate = head->gate,
        .activation = head->activation,
        .contribution = head->contribution,
    };
}

void retrieval_path_data_from_trace(RetrievalPathData *data, RetrievalPathHead *heads,
                                    const peer_token_trace *trace, int first, int count,
                                    bool values_only)
{
    for (int j = 0; j < count; j++)
        retrieval_path_head_from_trace(&heads[j], &trace->head[first + j], first + j);
    *data = (RetrievalPathData){
        .n = trace->n,
        .topk = trace->topk,
        .n_heads = count,
        .heads = heads,
        .values_only = values_only,
        .highlight_head = -1,
        .highlight_rank = -1,
    };
}
