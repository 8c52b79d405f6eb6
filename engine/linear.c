#include "linear.h"

#include <cblas.h>
#include <string.h>

/* Fixed block sizes: task boundaries must not depend on the thread count, so that every output
 * element is computed by the same sequence of operations however many threads run. 128 tokens
 * per sgemm call amortise OpenBLAS's packing of the weight: the query projection of the PEER
 * benchmark (4096 × 1024 × 256) runs at one whole-batch sgemm's speed, against 88% at 64. */
#define LINEAR_TOKEN_BLOCK 128
#define LINEAR_ROW_BLOCK 32

typedef struct {
    float *out;
    float *dinp;
    float *dweight;
    float *dbias;
    const float *inp;
    const float *dout;
    const float *weight;
    const float *bias;
    int BT, C, OC;
} linear_job;

static void forward_block(void *data, int task, int thread)
{
    const linear_job *job = data;
    int t0 = task * LINEAR_TOKEN_BLOCK;
    int rows = job->BT - t0 < LINEAR_TOKEN_BLOCK ? job->BT - t0 : LINEAR_TOKEN_BLOCK;
    float *out = job->out + (size_t)t0 * job->OC;
    /* The bias goes in first and sgemm adds onto it (beta = 1): one pass over the output. */
    if (job->bias)
        for (int t = 0; t < rows; t++)
            memcpy(out + (size_t)t * job->OC, job->bias, (size_t)job->OC * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, job->OC, job->C, 1.0f,
                job->inp + (size_t)t0 * job->C, job->C, job->weight, job->C,
                job->bias ? 1.0f : 0.0f, out, job->OC);
}

void linear_forward(float *out, const float *inp, const float *weight, const float *bias, int BT,
                    int C, int OC, thread_pool *pool)
{
    linear_job job = { .out = out, .inp = inp, .weight = weight, .bias = bias,
                       .BT = BT, .C = C, .OC = OC };
    thread_pool_run(pool, (BT + LINEAR_TOKEN_BLOCK - 1) / LINEAR_TOKEN_BLOCK, forward_block, &job);
}

static void backward_input_block(void *data, int task, int thread)
{
    const linear_job *job = data;
    int t0 = task * LINEAR_TOKEN_BLOCK;
    int rows = job->BT - t0 < LINEAR_TOKEN_BLOCK ? job->BT - t0 : LINEAR_TOKEN_BLOCK;
    /* dinp (rows, C) += dout (rows, OC) · weight (OC, C) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, job->C, job->OC, 1.0f,
                job->dout + (size_t)t0 * job->OC, job->OC, job->weight, job->C, 1.0f,
                job->dinp + (size_t)t0 * job->C, job->C);
}

static void backward_weight_block(void *data, int task, int thread)
{
    const linear_job *job = data;
    int o0 = task * LINEAR_ROW_BLOCK;
    int rows = job->OC - o0 < LINEAR_ROW_BLOCK ? job->OC - o0 : LINEAR_ROW_BLOCK;
    /* dweight (rows, C) += dout[:, o0:o0+rows]ᵀ · inp (BT, C): the sum over tokens stays whole */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rows, job->C, job->BT, 1.0f,
                job->dout + o0, job->OC, job->inp, job->C, 1.0f,
                job->dweight + (size_t)o0 * job->C, job->C);
    if (job->dbias) {
        /* Token by token across the block's outputs: rows of dout are read contiguously. */
        float sum[LINEAR_ROW_BLOCK] = { 0 };
        for (int t = 0; t < job->BT; t++) {
            const float *row = job->dout + (size_t)t * job->OC + o0;
            for (int o = 0; o < rows; o++)
                sum[o] += row[o];
        }
        for (int o = 0; o < rows; o++)
            job->dbias[o0 + o] += sum[o];
    }
}

void linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                     const float *inp, const float *weight, int BT, int C, int OC,
                     thread_pool *pool)
{
    linear_job job = { .dinp = dinp, .dweight = dweight, .dbias = dbias, .dout = dout,
                       .inp = inp, .weight = weight, .BT = BT, .C = C, .OC = OC };
    if (dinp)
        thread_pool_run(pool, (BT + LINEAR_TOKEN_BLOCK - 1) / LINEAR_TOKEN_BLOCK,
                        backward_input_block, &job);
    thread_pool_run(pool, (OC + LINEAR_ROW_BLOCK - 1) / LINEAR_ROW_BLOCK, backward_weight_block,
                    &job);
}
