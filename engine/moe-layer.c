#include "moe-layer.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "activation.h"
#include "linear.h"

/* Fixed block sizes: task boundaries depend on the routing but never on the thread count, so
 * every output element is computed by the same sequence of operations however many threads run.
 * Tokens for the per-token work, slots (in expert-grouped order) for the expert products, and
 * weight rows for the expert weight gradients, which sum over all of an expert's tokens. */
#define MOE_TOKEN_BLOCK 32
#define MOE_SLOT_BLOCK 64
#define MOE_ROW_BLOCK 32

size_t moe_params_count(int D, int F, int E)
{
    return (size_t)E * D + (size_t)E * F * D + (size_t)E * F + (size_t)E * D * F + (size_t)E * D;
}

void moe_params_point(moe_params *params, int D, int F, int E, float *arena)
{
    params->router_weight = arena;
    arena += (size_t)E * D;
    params->fc_weight = arena;
    arena += (size_t)E * F * D;
    params->fc_bias = arena;
    arena += (size_t)E * F;
    params->proj_weight = arena;
    arena += (size_t)E * D * F;
    params->proj_bias = arena;
}

/* The scratch is one allocation carved into these views. A routed slot is s = t·k + j; the
 * grouped rows list the slots expert by expert, tokens in order within each expert, so that an
 * expert's rows are contiguous for its matrix products. */
typedef struct {
    float *x;           /* (S, D) grouped inputs, then (forward) the proj outputs */
    float *h;           /* (S, F) grouped fc outputs, then hidden */
    float *dy;          /* (S, D) backward: grouped gate · dout, then the input gradients */
    float *dh;          /* (S, F) backward: grouped dhidden, then dfc in place */
    float *dlogits;     /* (BT, E) backward */
    float *dgate;       /* (BT, k) backward */
    int32_t *order;     /* (S) the slot at each grouped row */
    int32_t *position;  /* (S) the grouped row of each slot */
    int32_t *start;     /* (E + 1) each expert's first grouped row; start[E] = S */
} moe_scratch;

/* In floats; the index arrays take int32s, which are the same size. */
static size_t scratch_size(int D, int F, int E, int topk, int max_tokens)
{
    size_t S = (size_t)max_tokens * topk;
    size_t floats = 2 * S * D + 2 * S * F + (size_t)max_tokens * E + S;
    size_t ints = 2 * S + (size_t)E + 1;
    return floats + ints;
}

static void scratch_point(moe_scratch *s, float *scratch, int D, int F, int E, int topk,
                          int max_tokens)
{
    size_t S = (size_t)max_tokens * topk;
    s->x = scratch;
    scratch += S * D;
    s->h = scratch;
    scratch += S * F;
    s->dy = scratch;
    scratch += S * D;
    s->dh = scratch;
    scratch += S * F;
    s->dlogits = scratch;
    scratch += (size_t)max_tokens * E;
    s->dgate = scratch;
    scratch += S;
    int32_t *ints = (int32_t *)scratch;
    s->order = ints;
    s->position = ints + S;
    s->start = ints + 2 * S;
}

bool moe_acts_init(moe_acts *acts, int D, int F, int E, int topk, int max_tokens,
                   peer_error *err)
{
    memset(acts, 0, sizeof *acts);
    if (D < 1 || F < 1 || E < 1 || max_tokens < 1)
        return peer_error_set(err, "MoE sizes must be positive (d_model %d, d_ff %d, %d experts, "
                              "%d tokens)", D, F, E, max_tokens);
    if (topk < 1 || topk > E)
        return peer_error_set(err, "MoE topk %d must be between 1 and the number of experts %d",
                              topk, E);
    size_t BT = (size_t)max_tokens, S = BT * topk;
    acts->router_logits = malloc(BT * E * sizeof(float));
    acts->router_probs = malloc(BT * E * sizeof(float));
    acts->expert = malloc(S * sizeof(int32_t));
    acts->gate = malloc(S * sizeof(float));
    acts->fc = malloc(S * F * sizeof(float));
    acts->hidden = malloc(S * F * sizeof(float));
    acts->expert_out = malloc(S * D * sizeof(float));
    acts->scratch = malloc(scratch_size(D, F, E, topk, max_tokens) * sizeof(float));
    if (!acts->router_logits || !acts->router_probs || !acts->expert || !acts->gate ||
        !acts->fc || !acts->hidden || !acts->expert_out || !acts->scratch) {
        moe_acts_free(acts);
        return peer_error_set(err, "out of memory for MoE activations (%d tokens, top-%d of %d "
                              "experts, d_ff %d)", max_tokens, topk, E, F);
    }
    acts->capacity = max_tokens;
    return true;
}

void moe_acts_free(moe_acts *acts)
{
    free(acts->router_logits);
    free(acts->router_probs);
    free(acts->expert);
    free(acts->gate);
    free(acts->fc);
    free(acts->hidden);
    free(acts->expert_out);
    free(acts->scratch);
    memset(acts, 0, sizeof *acts);
}

typedef struct {
    float *out;
    float *dinp;
    moe_params *grads;
    moe_acts *acts;
    moe_scratch s;
    const float *inp;
    const float *dout;
    const moe_params *params;
    float aux_scale;
    int BT, D, F, E, topk;
} moe_job;

static int min_int(int a, int b)
{
    return a < b ? a : b;
}

static int blocks(int n, int block)
{
    return (n + block - 1) / block;
}

/* Counting sort of the slots by expert; stable, so each expert's tokens stay in order and its
 * weight gradients sum them in token order. */
static void group_slots(moe_scratch *s, const int32_t *expert, int S, int E)
{
    int32_t *start = s->start;
    memset(start, 0, (size_t)(E + 1) * sizeof(int32_t));
    for (int slot = 0; slot < S; slot++)
        start[expert[slot] + 1]++;
    for (int e = 0; e < E; e++)
        start[e + 1] += start[e];
    /* start[e] serves as expert e's cursor, ending at start[e + 1]; shifted back after */
    for (int slot = 0; slot < S; slot++) {
        int row = start[expert[slot]]++;
        s->order[row] = slot;
        s->position[slot] = row;
    }
    for (int e = E; e > 0; e--)
        start[e] = start[e - 1];
    start[0] = 0;
}

/* Router softmax over all experts, the top-k (best first, the lower index on a tie) and the
 * gates, a softmax over the chosen logits. */
static void route_block(void *data, int task, int thread)
{
    const moe_job *job = data;
    moe_acts *acts = job->acts;
    int E = job->E, k = job->topk;
    int t0 = task * MOE_TOKEN_BLOCK, t1 = min_int(job->BT, t0 + MOE_TOKEN_BLOCK);
    for (int t = t0; t < t1; t++) {
        const float *z = acts->router_logits + (size_t)t * E; /* (E) */
        float *p = acts->router_probs + (size_t)t * E;        /* (E) */
        int32_t *chosen = acts->expert + (size_t)t * k;       /* (k) */
        float *gate = acts->gate + (size_t)t * k;             /* (k) */

        float maxval = z[0];
        for (int e = 1; e < E; e++)
            maxval = z[e] > maxval ? z[e] : maxval;
        float sum = 0.0f;
        for (int e = 0; e < E; e++) {
            p[e] = expf(z[e] - maxval);
            sum += p[e];
        }
        for (int e = 0; e < E; e++)
            p[e] /= sum;

        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int e = 0; e < E; e++) {
                bool taken = false;
                for (int i = 0; i < j; i++)
                    taken = taken || chosen[i] == e;
                if (!taken && (best < 0 || z[e] > z[best]))
                    best = e;
            }
            chosen[j] = best;
        }

        float gate_sum = 0.0f;
        for (int j = 0; j < k; j++) {
            gate[j] = expf(z[chosen[j]] - z[chosen[0]]);
            gate_sum += gate[j];
        }
        for (int j = 0; j < k; j++)
            gate[j] /= gate_sum;
    }
}

/* Grouped rows [row, row + n) all belong to expert e: fc → GELU → proj for them. */
static void forward_segment(const moe_job *job, int e, int row, int n)
{
    moe_acts *acts = job->acts;
    const moe_params *params = job->params;
    int D = job->D, F = job->F, k = job->topk;
    float *x = job->s.x + (size_t)row * D; /* (n, D) */
    float *h = job->s.h + (size_t)row * F; /* (n, F) */
    const int32_t *order = job->s.order + row;
    const float *fc_bias = params->fc_bias + (size_t)e * F;     /* (F) */
    const float *proj_bias = params->proj_bias + (size_t)e * D; /* (D) */

    for (int i = 0; i < n; i++)
        memcpy(x + (size_t)i * D, job->inp + (size_t)(order[i] / k) * D, (size_t)D * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, F, D, 1.0f, x, D,
                params->fc_weight + (size_t)e * F * D, D, 0.0f, h, F);
    for (int i = 0; i < n; i++) {
        float *hi = h + (size_t)i * F;
        float *fc = acts->fc + (size_t)order[i] * F;
        float *hidden = acts->hidden + (size_t)order[i] * F;
        for (int f = 0; f < F; f++) {
            fc[f] = hi[f] + fc_bias[f];
            hidden[f] = gelu(fc[f]);
            hi[f] = hidden[f];
        }
    }
    /* x's rows have served the fc product; they now take the proj product */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, D, F, 1.0f, h, F,
                params->proj_weight + (size_t)e * D * F, F, 0.0f, x, D);
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * D;
        float *y = acts->expert_out + (size_t)order[i] * D;
        for (int d = 0; d < D; d++)
            y[d] = xi[d] + proj_bias[d];
    }
}

typedef void (*segment_fn)(const moe_job *job, int e, int row, int n);

/* Grouped rows in fixed blocks, each cut where one expert's rows end and the next one's begin. */
static void for_each_segment(const moe_job *job, int task, segment_fn fn)
{
    const int32_t *start = job->s.start;
    int S = job->BT * job->topk;
    int r0 = task * MOE_SLOT_BLOCK, r1 = min_int(S, r0 + MOE_SLOT_BLOCK);
    int e = 0;
    for (int row = r0; row < r1;) {
        while (start[e + 1] <= row)
            e++;
        int end = min_int(r1, start[e + 1]);
        fn(job, e, row, end - row);
        row = end;
    }
}

static void forward_experts_block(void *data, int task, int thread)
{
    for_each_segment(data, task, forward_segment);
}

static void combine_block(void *data, int task, int thread)
{
    const moe_job *job = data;
    const moe_acts *acts = job->acts;
    int D = job->D, k = job->topk;
    int t0 = task * MOE_TOKEN_BLOCK, t1 = min_int(job->BT, t0 + MOE_TOKEN_BLOCK);
    for (int t = t0; t < t1; t++) {
        float *out = job->out + (size_t)t * D; /* (D) */
        for (int j = 0; j < k; j++) {
            float g = acts->gate[(size_t)t * k + j];
            const float *y = acts->expert_out + ((size_t)t * k + j) * D; /* (D) */
            if (j == 0) {
                for (int d = 0; d < D; d++)
                    out[d] = g * y[d];
            } else {
                for (int d = 0; d < D; d++)
                    out[d] += g * y[d];
            }
        }
    }
}

void moe_forward(float *out, moe_acts *acts, const float *inp, const moe_params *params, int BT,
                 int D, int F, int E, int topk, thread_pool *pool)
{
    moe_job job = { .out = out, .acts = acts, .inp = inp, .params = params,
                    .BT = BT, .D = D, .F = F, .E = E, .topk = topk };
    scratch_point(&job.s, acts->scratch, D, F, E, topk, acts->capacity);
    int S = BT * topk;

    linear_forward(acts->router_logits, inp, params->router_weight, NULL, BT, D, E, pool);
    thread_pool_run(pool, blocks(BT, MOE_TOKEN_BLOCK), route_block, &job);
    group_slots(&job.s, acts->expert, S, E);
    thread_pool_run(pool, blocks(S, MOE_SLOT_BLOCK), forward_experts_block, &job);
    thread_pool_run(pool, blocks(BT, MOE_TOKEN_BLOCK), combine_block, &job);

    /* E · Σ_e f_e · P_e, with f_e = count_e / S and P_e = Σ_t probs[t, e] / BT */
    double aux = 0.0;
    for (int e = 0; e < E; e++) {
        double p_sum = 0.0;
        for (int t = 0; t < BT; t++)
            p_sum += acts->router_probs[(size_t)t * E + e];
        int count = job.s.start[e + 1] - job.s.start[e];
        aux += (double)count / S * (p_sum / BT);
    }
    acts->aux_loss = (float)(E * aux);
}

/* Per token: the router logits' gradient (through the gates and, as in the Switch Transformer,
 * through P_e of the auxiliary loss, f_e held constant), and the grouped rows the expert backward
 * needs: the input, the hidden activations and gate · dout of each of the token's slots. */
static void router_backward_block(void *data, int task, int thread)
{
    const moe_job *job = data;
    const moe_acts *acts = job->acts;
    const moe_scratch *s = &job->s;
    int D = job->D, F = job->F, E = job->E, k = job->topk, S = job->BT * k;
    int t0 = task * MOE_TOKEN_BLOCK, t1 = min_int(job->BT, t0 + MOE_TOKEN_BLOCK);
    /* daux/dP_e · dP_e/dprobs[t, e] = E · f_e / BT */
    float aux_coeff = job->aux_scale * (float)E / ((float)S * (float)job->BT);
    for (int t = t0; t < t1; t++) {
        const float *dout = job->dout + (size_t)t * D;          /* (D) */
        const float *p = acts->router_probs + (size_t)t * E;    /* (E) */
        const int32_t *chosen = acts->expert + (size_t)t * k;   /* (k) */
        const float *gate = acts->gate + (size_t)t * k;         /* (k) */
        float *dz = s->dlogits + (size_t)t * E;                 /* (E) */

        float dp_dot = 0.0f;
        for (int e = 0; e < E; e++) {
            float dp = aux_coeff * (float)(s->start[e + 1] - s->start[e]);
            dp_dot += p[e] * dp;
        }
        for (int e = 0; e < E; e++) {
            float dp = aux_coeff * (float)(s->start[e + 1] - s->start[e]);
            dz[e] = p[e] * (dp - dp_dot);
        }

        float *dgate = s->dgate + (size_t)t * k; /* (k) */
        float dgate_dot = 0.0f;
        for (int j = 0; j < k; j++) {
            const float *y = acts->expert_out + ((size_t)t * k + j) * D; /* (D) */
            float sum = 0.0f;
            for (int d = 0; d < D; d++)
                sum += dout[d] * y[d];
            dgate[j] = sum;
            dgate_dot += gate[j] * sum;
        }
        for (int j = 0; j < k; j++)
            dz[chosen[j]] += gate[j] * (dgate[j] - dgate_dot);

        for (int j = 0; j < k; j++) {
            size_t slot = (size_t)t * k + j;
            size_t row = (size_t)s->position[slot];
            float *dy = s->dy + row * D;
            for (int d = 0; d < D; d++)
                dy[d] = gate[j] * dout[d];
            memcpy(s->x + row * D, job->inp + (size_t)t * D, (size_t)D * sizeof(float));
            memcpy(s->h + row * F, acts->hidden + slot * F, (size_t)F * sizeof(float));
        }
    }
}

/* The gradients of proj (weight rows d0..d0+rows of expert e) sum over all of the expert's
 * slots in grouped (token) order. */
static void proj_grad_block(void *data, int task, int thread)
{
    const moe_job *job = data;
    int D = job->D, F = job->F;
    int per_expert = blocks(D, MOE_ROW_BLOCK);
    int e = task / per_expert, d0 = (task % per_expert) * MOE_ROW_BLOCK;
    int rows = min_int(D - d0, MOE_ROW_BLOCK);
    int r0 = job->s.start[e], n = job->s.start[e + 1] - r0;
    if (n == 0)
        return;
    const float *dy = job->s.dy + (size_t)r0 * D; /* (n, D) */
    /* dproj_w[e][d0:d0+rows] (rows, F) += dy[:, d0:d0+rows]ᵀ · h (n, F) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rows, F, n, 1.0f, dy + d0, D,
                job->s.h + (size_t)r0 * F, F, 1.0f,
                job->grads->proj_weight + ((size_t)e * D + d0) * F, F);
    float *dbias = job->grads->proj_bias + (size_t)e * D + d0;
    for (int d = 0; d < rows; d++) {
        float sum = 0.0f;
        for (int i = 0; i < n; i++)
            sum += dy[(size_t)i * D + d0 + d];
        dbias[d] += sum;
    }
}

static void dhidden_segment(const moe_job *job, int e, int row, int n)
{
    int D = job->D, F = job->F;
    float *dh = job->s.dh + (size_t)row * F; /* (n, F) */
    /* dh (n, F) = dy (n, D) · proj_w[e] (D, F) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, F, D, 1.0f,
                job->s.dy + (size_t)row * D, D, job->params->proj_weight + (size_t)e * D * F, F,
                0.0f, dh, F);
    for (int i = 0; i < n; i++) {
        const float *fc = job->acts->fc + (size_t)job->s.order[row + i] * F; /* (F) */
        float *dhi = dh + (size_t)i * F;
        for (int f = 0; f < F; f++)
            dhi[f] *= gelu_derivative(fc[f]);
    }
}

static void dhidden_block(void *data, int task, int thread)
{
    for_each_segment(data, task, dhidden_segment);
}

static void fc_grad_block(void *data, int task, int thread)
{
    const moe_job *job = data;
    int D = job->D, F = job->F;
    int per_expert = blocks(F, MOE_ROW_BLOCK);
    int e = task / per_expert, f0 = (task % per_expert) * MOE_ROW_BLOCK;
    int rows = min_int(F - f0, MOE_ROW_BLOCK);
    int r0 = job->s.start[e], n = job->s.start[e + 1] - r0;
    if (n == 0)
        return;
    const float *dfc = job->s.dh + (size_t)r0 * F; /* (n, F) */
    /* dfc_w[e][f0:f0+rows] (rows, D) += dfc[:, f0:f0+rows]ᵀ · x (n, D) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rows, D, n, 1.0f, dfc + f0, F,
                job->s.x + (size_t)r0 * D, D, 1.0f,
                job->grads->fc_weight + ((size_t)e * F + f0) * D, D);
    float *dbias = job->grads->fc_bias + (size_t)e * F + f0;
    for (int f = 0; f < rows; f++) {
        float sum = 0.0f;
        for (int i = 0; i < n; i++)
            sum += dfc[(size_t)i * F + f0 + f];
        dbias[f] += sum;
    }
}

/* Each slot's input gradient, into dy's rows, which have served the proj gradients. */
static void dinput_segment(const moe_job *job, int e, int row, int n)
{
    int D = job->D, F = job->F;
    /* dx (n, D) = dfc (n, F) · fc_w[e] (F, D) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, D, F, 1.0f,
                job->s.dh + (size_t)row * F, F, job->params->fc_weight + (size_t)e * F * D, D,
                0.0f, job->s.dy + (size_t)row * D, D);
}

static void dinput_block(void *data, int task, int thread)
{
    for_each_segment(data, task, dinput_segment);
}

/* A token's input gradient sums its k slots in slot order. */
static void dinput_gather_block(void *data, int task, int thread)
{
    const moe_job *job = data;
    int D = job->D, k = job->topk;
    int t0 = task * MOE_TOKEN_BLOCK, t1 = min_int(job->BT, t0 + MOE_TOKEN_BLOCK);
    for (int t = t0; t < t1; t++) {
        float *dinp = job->dinp + (size_t)t * D; /* (D) */
        for (int j = 0; j < k; j++) {
            const float *dx = job->s.dy + (size_t)job->s.position[(size_t)t * k + j] * D;
            for (int d = 0; d < D; d++)
                dinp[d] += dx[d];
        }
    }
}

void moe_backward(float *dinp, moe_params *grads, moe_acts *acts, const float *dout,
                  float aux_scale, const float *inp, const moe_params *params, int BT, int D,
                  int F, int E, int topk, thread_pool *pool)
{
    moe_job job = { .dinp = dinp, .grads = grads, .acts = acts, .inp = inp, .dout = dout,
                    .params = params, .aux_scale = aux_scale,
                    .BT = BT, .D = D, .F = F, .E = E, .topk = topk };
    scratch_point(&job.s, acts->scratch, D, F, E, topk, acts->capacity);
    int S = BT * topk;

    /* the forward's grouping, rebuilt from the routing it recorded */
    group_slots(&job.s, acts->expert, S, E);
    thread_pool_run(pool, blocks(BT, MOE_TOKEN_BLOCK), router_backward_block, &job);
    thread_pool_run(pool, E * blocks(D, MOE_ROW_BLOCK), proj_grad_block, &job);
    thread_pool_run(pool, blocks(S, MOE_SLOT_BLOCK), dhidden_block, &job);
    thread_pool_run(pool, E * blocks(F, MOE_ROW_BLOCK), fc_grad_block, &job);
    if (dinp) {
        thread_pool_run(pool, blocks(S, MOE_SLOT_BLOCK), dinput_block, &job);
        thread_pool_run(pool, blocks(BT, MOE_TOKEN_BLOCK), dinput_gather_block, &job);
    }
    linear_backward(dinp, grads->router_weight, NULL, job.s.dlogits, inp, params->router_weight,
                    BT, D, E, pool);
}
