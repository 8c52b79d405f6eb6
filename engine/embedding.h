/* Token and learned position embeddings: x = tok_emb[byte] + pos_emb[t]. */
#pragma once

#include <stdint.h>

#include "thread-pool.h"

/* out (B, T, C); tokens (B, T) bytes; tok_emb (V, C); pos_emb (T_max, C). */
void embedding_forward(float *out, const uint8_t *tokens, const float *tok_emb,
                       const float *pos_emb, int B, int T, int C, thread_pool *pool);
/* dtok_emb (V, C) +=, dpos_emb (T_max, C) +=, deterministically. */
void embedding_backward(float *dtok_emb, float *dpos_emb, const float *dout,
                        const uint8_t *tokens, int B, int T, int C, thread_pool *pool);
