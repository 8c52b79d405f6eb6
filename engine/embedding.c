#include "embedding.h"

#include <stddef.h>

/* Fixed block sizes: task boundaries must not depend on the thread count, so that every output
 * element is computed by the same sequence of operations however many threads run. */
#define EMBEDDING_TOKEN_BLOCK 64
#define EMBEDDING_CHANNEL_BLOCK 32

typedef struct {
    float *out;
    float *dtok_emb;
    float *dpos_emb;
    const float *dout;
    const uint8_t *tokens;
    const float *tok_emb;
    const float *pos_emb;
    int B, T, C;
} embedding_job;

static void forward_block(void *data, int task, int thread)
{
    const embedding_job *job = data;
    int BT = job->B * job->T, C = job->C;
    int i0 = task * EMBEDDING_TOKEN_BLOCK;
    int i1 = BT - i0 < EMBEDDING_TOKEN_BLOCK ? BT : i0 + EMBEDDING_TOKEN_BLOCK;
    for (int i = i0; i < i1; i++) {
        const float *tok = job->tok_emb + (size_t)job->tokens[i] * C; /* (C) */
        const float *pos = job->pos_emb + (size_t)(i % job->T) * C;   /* (C) */
        float *out = job->out + (size_t)i * C;                         /* (C) */
        for (int c = 0; c < C; c++)
            out[c] = tok[c] + pos[c];
    }
}

void embedding_forward(float *out, const uint8_t *tokens, const float *tok_emb,
                       const float *pos_emb, int B, int T, int C, thread_pool *pool)
{
    embedding_job job = { .out = out, .tokens = tokens, .tok_emb = tok_emb, .pos_emb = pos_emb,
                          .B = B, .T = T, .C = C };
    int BT = B * T;
    thread_pool_run(pool, (BT + EMBEDDING_TOKEN_BLOCK - 1) / EMBEDDING_TOKEN_BLOCK, forward_block,
                    &job);
}

/* Many tokens share a byte's row and every sequence shares the position rows, so the tasks split
 * the channels instead of the tokens: each owns a block of columns of both tables and adds the
 * tokens into it in order. */
static void backward_block(void *data, int task, int thread)
{
    const embedding_job *job = data;
    int C = job->C;
    int c0 = task * EMBEDDING_CHANNEL_BLOCK;
    int n = C - c0 < EMBEDDING_CHANNEL_BLOCK ? C - c0 : EMBEDDING_CHANNEL_BLOCK;
    for (int b = 0; b < job->B; b++) {
        for (int t = 0; t < job->T; t++) {
            size_t i = (size_t)b * job->T + t;
            const float *dout = job->dout + i * C + c0;                         /* (n) */
            float *dtok = job->dtok_emb + (size_t)job->tokens[i] * C + c0;     /* (n) */
            float *dpos = job->dpos_emb + (size_t)t * C + c0;                  /* (n) */
            for (int c = 0; c < n; c++) {
                dtok[c] += dout[c];
                dpos[c] += dout[c];
            }
        }
    }
}

void embedding_backward(float *dtok_emb, float *dpos_emb, const float *dout,
                        const uint8_t *tokens, int B, int T, int C, thread_pool *pool)
{
    embedding_job job = { .dtok_emb = dtok_emb, .dpos_emb = dpos_emb, .dout = dout,
                          .tokens = tokens, .B = B, .T = T, .C = C };
    thread_pool_run(pool, (C + EMBEDDING_CHANNEL_BLOCK - 1) / EMBEDDING_CHANNEL_BLOCK,
                    backward_block, &job);
}
