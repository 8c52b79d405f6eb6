/* The engine's retrieval trace as the retrieval-path renderer takes it: the same arrays, borrowed,
 * so the picture shows exactly the path the engine computed. */
#pragma once

#include "retrieval-path-render.h"
#include "retrieval-trace.h"

/* One head's trace; number is the model's number for the head. */
void retrieval_path_head_from_trace(RetrievalPathHead *out, const peer_head_trace *head,
                                    int number);

/* The picture of heads [first, first + count) of a token's trace, into heads (count). */
void retrieval_path_data_from_trace(RetrievalPathData *data, RetrievalPathHead *heads,
                                    const peer_token_trace *trace, int first, int count,
                                    bool values_only);
