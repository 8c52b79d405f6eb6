#include "attention.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* Query rows per matrix product. A block of queries only needs the keys up to its own last row,
 * so the products skip most of the masked upper triangle. Fixed, so that every product (and its
 * rounding) is the same however many threads run. */
#define ATTENTION_ROW_BLOCK 64

typedef struct {
    float *out;
    float *preatt;
    float *att;
    float *dinp;
    float *dpreatt;
    float *datt;
    const float *inp;
    const float *dout;
    const float *saved_att;
    int B, T, C, NH;
} attention_job;

static int block_rows(int T, int r0)
{
    return T - r0 < ATTENTION_ROW_BLOCK ? T - r0 : ATTENTION_ROW_BLOCK;
}

/* One task per (b, head): the task index b·NH + h is also the (B, NH) index of its (T, T)
 * matrices, and the head's slices of out and dinp belong to no other task. */
static void forward_head(void *data, int task, int thread)
{
    const attention_job *job = data;
    int T = job->T, C = job->C, C3 = 3 * C, NH = job->NH, hs = C / NH;
    int b = task / NH, h = task % NH;
    float scale = 1.0f / sqrtf((float)hs);
    const float *q = job->inp + (size_t)b * T * C3 + (size_t)h * hs; /* (T, hs), row stride 3C */
    const float *k = q + C;                                           /* (T, hs), row stride 3C */
    const float *v = q + 2 * C;                                       /* (T, hs), row stride 3C */
    float *preatt = job->preatt + (size_t)task * T * T;               /* (T, T) */
    float *att = job->att + (size_t)task * T * T;                     /* (T, T) */
    float *out = job->out + (size_t)b * T * C + (size_t)h * hs;       /* (T, hs), row stride C */

    for (int r0 = 0; r0 < T; r0 += ATTENTION_ROW_BLOCK) {
        int rows = block_rows(T, r0);
        int cols = r0 + rows;
        /* preatt[r0:r0+rows, 0:cols] = scale · q · kᵀ */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, hs, scale,
                    q + (size_t)r0 * C3, C3, k, C3, 0.0f, preatt + (size_t)r0 * T, T);
        for (int t = r0; t < r0 + rows; t++) {
            float *pre = preatt + (size_t)t * T; /* (T) */
            float *a = att + (size_t)t * T;      /* (T) */
            float maxval = pre[0];
            for (int t2 = 1; t2 <= t; t2++)
                maxval = pre[t2] > maxval ? pre[t2] : maxval;
            float sum = 0.0f;
            for (int t2 = 0; t2 <= t; t2++) {
                a[t2] = expf(pre[t2] - maxval);
                sum += a[t2];
            }
            float inv = 1.0f / sum;
            for (int t2 = 0; t2 <= t; t2++)
                a[t2] *= inv;
            /* zeros above the diagonal: the products below then run over whole blocks, and the
             * masked keys contribute exactly nothing */
            memset(pre + t + 1, 0, (size_t)(T - t - 1) * sizeof(float));
            memset(a + t + 1, 0, (size_t)(T - t - 1) * sizeof(float));
        }
        /* out[r0:r0+rows] = att[r0:r0+rows, 0:cols] · v[0:cols] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hs, cols, 1.0f,
                    att + (size_t)r0 * T, T, v, C3, 0.0f, out + (size_t)r0 * C, C);
    }
}

void attention_forward(float *out, float *preatt, float *att, const float *inp, int B, int T,
                       int C, int NH, thread_pool *pool)
{
    attention_job job = { .out = out, .preatt = preatt, .att = att, .inp = inp,
                          .B = B, .T = T, .C = C, .NH = NH };
    thread_pool_run(pool, B * NH, forward_head, &job);
}

static void backward_head(void *data, int task, int thread)
{
    const attention_job *job = data;
    int T = job->T, C = job->C, C3 = 3 * C, NH = job->NH, hs = C / NH;
    int b = task / NH, h = task % NH;
    float scale = 1.0f / sqrtf((float)hs);
    const float *q = job->inp + (size_t)b * T * C3 + (size_t)h * hs;  /* (T, hs), row stride 3C */
    const float *k = q + C;                                            /* (T, hs), row stride 3C */
    const float *v = q + 2 * C;                                        /* (T, hs), row stride 3C */
    const float *att = job->saved_att + (size_t)task * T * T;          /* (T, T) */
    const float *dout = job->dout + (size_t)b * T * C + (size_t)h * hs; /* (T, hs), row stride C */
    float *datt = job->datt + (size_t)task * T * T;                    /* (T, T) */
    float *dpreatt = job->dpreatt + (size_t)task * T * T;              /* (T, T) */
    float *dq = job->dinp + (size_t)b * T * C3 + (size_t)h * hs;       /* (T, hs), row stride 3C */
    float *dk = dq + C;
    float *dv = dq + 2 * C;

    for (int r0 = 0; r0 < T; r0 += ATTENTION_ROW_BLOCK) {
        int rows = block_rows(T, r0);
        int cols = r0 + rows;
        /* datt[r0:r0+rows, 0:cols] = dout · vᵀ */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, hs, 1.0f,
                    dout + (size_t)r0 * C, C, v, C3, 0.0f, datt + (size_t)r0 * T, T);
        for (int t = r0; t < r0 + rows; t++) {
            const float *a = att + (size_t)t * T; /* (T) */
            const float *da = datt + (size_t)t * T;
            float *dp = dpreatt + (size_t)t * T;
            /* softmax backward in its O(T) form: dpre = a ⊙ (da - Σ a·da) */
            float dot = 0.0f;
            for (int t2 = 0; t2 <= t; t2++)
                dot += a[t2] * da[t2];
            for (int t2 = 0; t2 <= t; t2++)
                dp[t2] = a[t2] * (da[t2] - dot);
            memset(dp + t + 1, 0, (size_t)(T - t - 1) * sizeof(float));
        }
        /* dq[r0:r0+rows] += scale · dpreatt[r0:r0+rows, 0:cols] · k[0:cols] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hs, cols, scale,
                    dpreatt + (size_t)r0 * T, T, k, C3, 1.0f, dq + (size_t)r0 * C3, C3);
    }

    /* The keys and values at positions s0..s0+rows are seen by the queries s0..T only; the
     * products below rely on the zeros the forward left above att's diagonal. */
    for (int s0 = 0; s0 < T; s0 += ATTENTION_ROW_BLOCK) {
        int rows = block_rows(T, s0);
        int span = T - s0;
        /* dv[s0:s0+rows] += att[s0:T, s0:s0+rows]ᵀ · dout[s0:T] */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rows, hs, span, 1.0f,
                    att + (size_t)s0 * T + s0, T, dout + (size_t)s0 * C, C, 1.0f,
                    dv + (size_t)s0 * C3, C3);
        /* dk[s0:s0+rows] += scale · dpreatt[s0:T, s0:s0+rows]ᵀ · q[s0:T] */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rows, hs, span, scale,
                    dpreatt + (size_t)s0 * T + s0, T, q + (size_t)s0 * C3, C3, 1.0f,
                    dk + (size_t)s0 * C3, C3);
    }
}

void attention_backward(float *dinp, float *dpreatt, float *datt, const float *dout,
                        const float *inp, const float *att, int B, int T, int C, int NH,
                        thread_pool *pool)
{
    attention_job job = { .dinp = dinp, .dpreatt = dpreatt, .datt = datt, .dout = dout,
                          .inp = inp, .saved_att = att, .B = B, .T = T, .C = C, .NH = NH };
    thread_pool_run(pool, B * NH, backward_head, &job);
}
