#include "peer-layer.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "expert-kernel.h"
#include "linear.h"
#include "product-keys.h"
#include "query-norm.h"

/* Task sizes are fixed so that results never depend on the number of threads. */
#define RETRIEVE_TOKEN_BLOCK 32
#define EXPERT_TOKEN_BLOCK 8
#define SPARSE_ROW_BLOCK 64
#define PEER_MAX_TOPK 1024
#define PEER_MAX_EXPERTS (1 << 30)

static int min_int(int a, int b)
{
    return a < b ? a : b;
}

/* ---- configuration --------------------------------------------------------------------------- */

int peer_layer_side(const peer_layer_config *cfg)
{
    int n = (int)lround(sqrt((double)cfg->n_experts));
    while ((long long)n * n > cfg->n_experts)
        n--;
    while ((long long)(n + 1) * (n + 1) <= cfg->n_experts)
        n++;
    return n;
}

int peer_layer_key_groups(const peer_layer_config *cfg)
{
    return cfg->shared_keys ? 1 : cfg->heads;
}

const char *peer_query_norm_name(peer_query_norm norm)
{
    switch (norm) {
    case PEER_NORM_NONE: return "none";
    case PEER_NORM_LAYER: return "layer";
    case PEER_NORM_BATCH: return "batch";
    }
    return "unknown";
}

const char *peer_activation_name(peer_activation act)
{
    switch (act) {
    case PEER_ACTIVATION_GELU: return "gelu";
    case PEER_ACTIVATION_RELU: return "relu";
    }
    return "unknown";
}

bool peer_layer_config_validate(const peer_layer_config *cfg, peer_error *err)
{
    if (cfg->d_model < 1)
        return peer_error_set(err, "d_model = %d: the model width must be at least 1",
                              cfg->d_model);
    if (cfg->n_experts < 1 || cfg->n_experts > PEER_MAX_EXPERTS)
        return peer_error_set(err,
                              "n_experts = %d is out of range: use a perfect square n² from 1 "
                              "to %d (32768²), e.g. 16384 (128²) or 1048576 (1024²)",
                              cfg->n_experts, PEER_MAX_EXPERTS);
    int n = peer_layer_side(cfg);
    if ((long long)n * n != cfg->n_experts)
        return peer_error_set(err,
                              "n_experts = %d is not a perfect square: product keys index the "
                              "experts as an n × n grid; use %d (%d²) or %lld (%d²)",
                              cfg->n_experts, n * n, n, (long long)(n + 1) * (n + 1), n + 1);
    if (cfg->heads < 1 || cfg->heads > 1024)
        return peer_error_set(err, "heads = %d is out of range: use 1 to 1024 retrieval heads",
                              cfg->heads);
    if (cfg->topk < 1)
        return peer_error_set(err, "topk = %d: each head must choose at least 1 expert (1 to %d)",
                              cfg->topk, min_int(n, PEER_MAX_TOPK));
    if (cfg->topk > n)
        return peer_error_set(err,
                              "topk = %d exceeds the %d sub-keys per side (n = √n_experts = √%d): "
                              "use 1 <= topk <= %d, or more experts",
                              cfg->topk, n, cfg->n_experts, min_int(n, PEER_MAX_TOPK));
    if (cfg->topk > PEER_MAX_TOPK)
        return peer_error_set(err, "topk = %d is too large: use 1 to %d", cfg->topk,
                              PEER_MAX_TOPK);
    if (cfg->d_key < 2)
        return peer_error_set(err,
                              "d_key = %d: the query needs at least 2 dimensions, one per half "
                              "(use an even d_key >= 2, e.g. 128)",
                              cfg->d_key);
    if (cfg->d_key % 2 != 0)
        return peer_error_set(err,
                              "d_key = %d is odd: the query splits into two halves of d_key/2, "
                              "use an even d_key such as %d or %d",
                              cfg->d_key, cfg->d_key - 1, cfg->d_key + 1);
    if ((long long)cfg->heads * cfg->d_key > (1 << 20))
        return peer_error_set(err, "heads × d_key = %d × %d is too large: keep it at most %d",
                              cfg->heads, cfg->d_key, 1 << 20);
    if (cfg->query_norm != PEER_NORM_NONE && cfg->query_norm != PEER_NORM_LAYER &&
        cfg->query_norm != PEER_NORM_BATCH)
        return peer_error_set(err, "query_norm = %d is unknown: use none, layer or batch",
                              (int)cfg->query_norm);
    if (cfg->activation != PEER_ACTIVATION_GELU && cfg->activation != PEER_ACTIVATION_RELU)
        return peer_error_set(err, "activation = %d is unknown: use gelu or relu",
                              (int)cfg->activation);
    return true;
}

/* ---- parameters ------------------------------------------------------------------------------ */

size_t peer_layer_tensor_size(const peer_layer_config *cfg, peer_layer_tensor tensor)
{
    size_t HK = (size_t)cfg->heads * cfg->d_key;
    size_t D = (size_t)cfg->d_model;
    switch (tensor) {
    case PEER_TENSOR_QUERY_WEIGHT: return HK * D;
    case PEER_TENSOR_QUERY_BIAS: return HK;
    case PEER_TENSOR_NORM_WEIGHT:
    case PEER_TENSOR_NORM_BIAS: return cfg->query_norm == PEER_NORM_NONE ? 0 : HK;
    case PEER_TENSOR_RUNNING_MEAN:
    case PEER_TENSOR_RUNNING_VAR: return cfg->query_norm == PEER_NORM_BATCH ? HK : 0;
    case PEER_TENSOR_KEYS:
        return (size_t)peer_layer_key_groups(cfg) * 2 * peer_layer_side(cfg) * (cfg->d_key / 2);
    case PEER_TENSOR_DOWN: return cfg->values_only ? 0 : (size_t)cfg->n_experts * D;
    case PEER_TENSOR_UP: return (size_t)cfg->n_experts * D;
    case PEER_LAYER_N_TENSORS: break;
    }
    return 0;
}

const char *peer_layer_tensor_name(peer_layer_tensor tensor)
{
    static const char *const names[PEER_LAYER_N_TENSORS] = {
        "query.weight", "query.bias", "query_norm.weight", "query_norm.bias",
        "query_norm.running_mean", "query_norm.running_var", "keys", "down", "up",
    };
    return tensor < PEER_LAYER_N_TENSORS ? names[tensor] : "unknown";
}

bool peer_layer_tensor_is_buffer(peer_layer_tensor tensor)
{
    return tensor == PEER_TENSOR_RUNNING_MEAN || tensor == PEER_TENSOR_RUNNING_VAR;
}

bool peer_layer_tensor_is_expert_table(peer_layer_tensor tensor)
{
    return tensor == PEER_TENSOR_DOWN || tensor == PEER_TENSOR_UP;
}

float **peer_layer_params_field(peer_layer_params *params, peer_layer_tensor tensor)
{
    switch (tensor) {
    case PEER_TENSOR_QUERY_WEIGHT: return &params->query_weight;
    case PEER_TENSOR_QUERY_BIAS: return &params->query_bias;
    case PEER_TENSOR_NORM_WEIGHT: return &params->norm_weight;
    case PEER_TENSOR_NORM_BIAS: return &params->norm_bias;
    case PEER_TENSOR_RUNNING_MEAN: return &params->running_mean;
    case PEER_TENSOR_RUNNING_VAR: return &params->running_var;
    case PEER_TENSOR_KEYS: return &params->keys;
    case PEER_TENSOR_DOWN: return &params->down;
    case PEER_TENSOR_UP: return &params->up;
    case PEER_LAYER_N_TENSORS: break;
    }
    return NULL;
}

size_t peer_layer_params_count(const peer_layer_config *cfg)
{
    size_t total = 0;
    for (int t = 0; t < PEER_LAYER_N_TENSORS; t++)
        total += peer_layer_tensor_size(cfg, (peer_layer_tensor)t);
    return total;
}

void peer_layer_params_point(peer_layer_params *params, const peer_layer_config *cfg, float *arena)
{
    for (int t = 0; t < PEER_LAYER_N_TENSORS; t++) {
        size_t size = peer_layer_tensor_size(cfg, (peer_layer_tensor)t);
        *peer_layer_params_field(params, (peer_layer_tensor)t) = size ? arena : NULL;
        arena += size;
    }
}

static bool has_dense_grad(peer_layer_tensor tensor)
{
    return !peer_layer_tensor_is_buffer(tensor) && !peer_layer_tensor_is_expert_table(tensor);
}

size_t peer_layer_grads_count(const peer_layer_config *cfg)
{
    size_t total = 0;
    for (int t = 0; t < PEER_LAYER_N_TENSORS; t++)
        if (has_dense_grad((peer_layer_tensor)t))
            total += peer_layer_tensor_size(cfg, (peer_layer_tensor)t);
    return total;
}

void peer_layer_grads_point(peer_layer_params *grads, const peer_layer_config *cfg, float *arena)
{
    for (int t = 0; t < PEER_LAYER_N_TENSORS; t++) {
        size_t size = has_dense_grad((peer_layer_tensor)t)
                          ? peer_layer_tensor_size(cfg, (peer_layer_tensor)t)
                          : 0;
        *peer_layer_params_field(grads, (peer_layer_tensor)t) = size ? arena : NULL;
        arena += size;
    }
}

void peer_layer_params_init(peer_layer_params *params, const peer_layer_config *cfg, peer_rng *rng)
{
    size_t HK = (size_t)cfg->heads * cfg->d_key;
    float D = (float)cfg->d_model;
    peer_rng_fill_normal(rng, params->query_weight, HK * cfg->d_model, 1.0f / sqrtf(D));
    memset(params->query_bias, 0, HK * sizeof(float));
    if (params->norm_weight) {
        for (size_t i = 0; i < HK; i++) {
            params->norm_weight[i] = 1.0f;
            params->norm_bias[i] = 0.0f;
        }
    }
    if (params->running_mean) {
        for (size_t i = 0; i < HK; i++) {
            params->running_mean[i] = 0.0f;
            params->running_var[i] = 1.0f;
        }
    }
    peer_rng_fill_normal(rng, params->keys, peer_layer_tensor_size(cfg, PEER_TENSOR_KEYS),
                         1.0f / sqrtf((float)(cfg->d_key / 2)));
    size_t table = (size_t)cfg->n_experts * cfg->d_model;
    if (params->down)
        peer_rng_fill_normal(rng, params->down, table, 1.0f / sqrtf(D));
    peer_rng_fill_normal(rng, params->up, table, 1.0f / sqrtf((float)(cfg->heads * cfg->topk)));
}

/* ---- sparse gradient ------------------------------------------------------------------------- */

/* Rows start on cache lines (when D·4 is a multiple of 64), so the backward writes each line
 * with one streaming store. */
#define SPARSE_ROW_ALIGN 64

static float *cache_line_aligned(void *memory)
{
    if (!memory)
        return NULL;
    uintptr_t address = (uintptr_t)memory;
    return (float *)((address + SPARSE_ROW_ALIGN - 1) & ~(uintptr_t)(SPARSE_ROW_ALIGN - 1));
}

bool peer_sparse_grad_init(peer_sparse_grad *grad, int n_experts, int d_model, peer_error *err)
{
    memset(grad, 0, sizeof *grad);
    grad->n_experts = n_experts;
    grad->d_model = d_model;
    grad->capacity = n_experts;
    /* Room for every row is reserved but rows are used in first-touch order, so only the pages
     * of rows actually touched ever become resident. */
    size_t table = (size_t)n_experts * d_model * sizeof(float);
    grad->rows = malloc((size_t)n_experts * sizeof(int32_t));
    grad->position = malloc((size_t)n_experts * sizeof(int32_t));
    /* calloc, not malloc: a fresh mapping is known to be zero, so its pages stay untouched even
     * where the allocator would otherwise fill new memory (MALLOC_PERTURB_). */
    grad->down_memory = calloc(1, table + SPARSE_ROW_ALIGN);
    grad->up_memory = calloc(1, table + SPARSE_ROW_ALIGN);
    grad->down = cache_line_aligned(grad->down_memory);
    grad->up = cache_line_aligned(grad->up_memory);
    grad->row_start = malloc(((size_t)n_experts + 1) * sizeof(int32_t));
    if (!grad->row_start || !grad->rows || !grad->position || !grad->down || !grad->up) {
        peer_sparse_grad_free(grad);
        return peer_error_set(err,
                              "out of memory reserving the sparse expert gradient (%d experts × "
                              "%d): use fewer experts or a smaller d_model",
                              n_experts, d_model);
    }
    for (int i = 0; i < n_experts; i++)
        grad->position[i] = -1;
    return true;
}

void peer_sparse_grad_free(peer_sparse_grad *grad)
{
    free(grad->rows);
    free(grad->position);
    free(grad->down_memory);
    free(grad->up_memory);
    free(grad->row_start);
    memset(grad, 0, sizeof *grad);
}

void peer_sparse_grad_zero(peer_sparse_grad *grad)
{
    for (int r = 0; r < grad->n_rows; r++)
        grad->position[grad->rows[r]] = -1;
    grad->n_rows = 0;
}

/* ---- activations ----------------------------------------------------------------------------- */

bool peer_layer_acts_init(peer_layer_acts *acts, const peer_layer_config *cfg, int max_tokens,
                          peer_error *err)
{
    memset(acts, 0, sizeof *acts);
    if (max_tokens < 1)
        return peer_error_set(err, "max_tokens = %d: a batch needs at least 1 token", max_tokens);
    size_t BT = (size_t)max_tokens;
    size_t HK = (size_t)cfg->heads * cfg->d_key;
    size_t slots = BT * cfg->heads * cfg->topk;
    size_t stats = cfg->query_norm == PEER_NORM_BATCH ? HK : BT * cfg->heads;
    acts->query = malloc(BT * HK * sizeof(float));
    acts->query_normed = malloc(BT * HK * sizeof(float));
    acts->dquery = malloc(BT * HK * sizeof(float));
    acts->norm_mean = malloc(stats * sizeof(float));
    acts->norm_rstd = malloc(stats * sizeof(float));
    acts->expert = malloc(slots * sizeof(int32_t));
    acts->score = malloc(slots * sizeof(float));
    acts->gate = malloc(slots * sizeof(float));
    acts->preact = malloc(slots * sizeof(float));
    acts->dscore = malloc(slots * sizeof(float));
    acts->dpreact = malloc(slots * sizeof(float));
    acts->row_slots = malloc(slots * sizeof(int32_t));
    acts->slot_row = malloc(slots * sizeof(int32_t));
    acts->pooled_rows = malloc(slots * sizeof(int32_t));
    /* One block's sub-key scores per possible thread: only the pages of threads that run ever
     * become resident, and the (BT, n) score matrix never exists. */
    acts->retrieve_scratch = calloc((size_t)THREAD_POOL_MAX_THREADS * 2 * RETRIEVE_TOKEN_BLOCK *
                                        peer_layer_side(cfg),
                                    sizeof(float));
    if (!acts->retrieve_scratch ||!acts->query || !acts->query_normed || !acts->dquery || !acts->norm_mean ||
        !acts->norm_rstd || !acts->expert || !acts->score || !acts->gate || !acts->preact ||
        !acts->dscore || !acts->dpreact || !acts->row_slots || !acts->slot_row ||
        !acts->pooled_rows) {
        peer_layer_acts_free(acts);
        return peer_error_set(err,
                              "out of memory for PEER activations of %d tokens: use a smaller "
                              "batch",
                              max_tokens);
    }
    acts->capacity = max_tokens;
    return true;
}

void peer_layer_acts_free(peer_layer_acts *acts)
{
    free(acts->query);
    free(acts->query_normed);
    free(acts->dquery);
    free(acts->norm_mean);
    free(acts->norm_rstd);
    free(acts->expert);
    free(acts->score);
    free(acts->gate);
    free(acts->preact);
    free(acts->dscore);
    free(acts->dpreact);
    free(acts->row_slots);
    free(acts->slot_row);
    free(acts->pooled_rows);
    free(acts->retrieve_scratch);
    memset(acts, 0, sizeof *acts);
}

/* ---- forward --------------------------------------------------------------------------------- */

typedef struct {
    const peer_layer_config *cfg;
    const peer_layer_params *params;
    peer_layer_acts *acts;
    const float *inp;
    float *out;
    const float *dout;
    float *dinp;
    peer_layer_params *grads;
    peer_sparse_grad *sparse;
    int BT;
    int n;
    float *scratch;      /* (threads, 2, RETRIEVE_TOKEN_BLOCK, n) */
    int first_new_row;   /* sparse rows from here on were added by this backward */
    int n_pooled;        /* acts->pooled_rows in use */
} peer_job;

static void retrieve_block(void *data, int task, int thread)
{
    const peer_job *job = data;
    const peer_layer_config *cfg = job->cfg;
    int t0 = task * RETRIEVE_TOKEN_BLOCK, rows = min_int(RETRIEVE_TOKEN_BLOCK, job->BT - t0);
    size_t HK = (size_t)cfg->heads * cfg->d_key;
    size_t slot = (size_t)t0 * cfg->heads * cfg->topk;
    float *scratch = job->scratch + (size_t)thread * 2 * RETRIEVE_TOKEN_BLOCK * job->n;
    product_keys_retrieve(job->acts->expert + slot, job->acts->score + slot,
                          job->acts->query_normed + t0 * HK, job->params->keys, rows,
                          cfg->heads, job->n, cfg->d_key, cfg->topk, cfg->shared_keys, scratch);
}

/* Scores of the experts the previous forward chose, recomputed from the current query and
 * keys: with the selection held fixed, the layer is a smooth function of every parameter. */
static void rescore_block(void *data, int task, int thread)
{
    const peer_job *job = data;
    const peer_layer_config *cfg = job->cfg;
    int t0 = task * RETRIEVE_TOKEN_BLOCK, t1 = min_int(job->BT, t0 + RETRIEVE_TOKEN_BLOCK);
    int half = cfg->d_key / 2, n = job->n;
    size_t HK = (size_t)cfg->heads * cfg->d_key;
    for (int t = t0; t < t1; t++) {
        for (int j = 0; j < cfg->heads; j++) {
            const float *q = job->acts->query_normed + t * HK + (size_t)j * cfg->d_key;
            const float *group =
                job->params->keys + (size_t)(cfg->shared_keys ? 0 : j) * 2 * n * half;
            size_t base = ((size_t)t * cfg->heads + j) * cfg->topk;
            for (int s = 0; s < cfg->topk; s++) {
                int e = job->acts->expert[base + s];
                const float *c1 = group + (size_t)(e / n) * half;
                const float *c2 = group + (size_t)n * half + (size_t)(e % n) * half;
                job->acts->score[base + s] =
                    expert_dot(q, c1, half) + expert_dot(q + half, c2, half);
            }
        }
    }
}

static void gate_block(void *data, int task, int thread)
{
    const peer_job *job = data;
    const peer_layer_config *cfg = job->cfg;
    int t0 = task * RETRIEVE_TOKEN_BLOCK, t1 = min_int(job->BT, t0 + RETRIEVE_TOKEN_BLOCK);
    int k = cfg->topk;
    for (size_t head = (size_t)t0 * cfg->heads; head < (size_t)t1 * cfg->heads; head++) {
        const float *score = job->acts->score + head * k;
        float *gate = job->acts->gate + head * k;
        float max = score[0];
        for (int s = 1; s < k; s++)
            max = score[s] > max ? score[s] : max;
        float sum = 0.0f;
        for (int s = 0; s < k; s++) {
            gate[s] = expf(score[s] - max);
            sum += gate[s];
        }
        for (int s = 0; s < k; s++)
            gate[s] /= sum;
    }
}

static void expert_forward_block(void *data, int task, int thread)
{
    const peer_job *job = data;
    const peer_layer_config *cfg = job->cfg;
    int t0 = task * EXPERT_TOKEN_BLOCK, rows = min_int(EXPERT_TOKEN_BLOCK, job->BT - t0);
    int per_token = cfg->heads * cfg->topk;
    size_t slot = (size_t)t0 * per_token;
    size_t D = (size_t)cfg->d_model;
    expert_forward_tokens(job->out + t0 * D, job->acts->preact + slot, job->inp + t0 * D,
                          job->acts->expert + slot, job->acts->gate + slot, job->params->down,
                          job->params->up, rows, per_token, cfg->d_model, cfg->activation);
}

static int tasks_for(int count, int block)
{
    return (count + block - 1) / block;
}

void peer_layer_forward(float *out, peer_layer_acts *acts, const float *inp,
                        peer_layer_params *params, const peer_layer_config *cfg, int BT,
                        peer_mode mode, peer_select select, thread_pool *pool)
{
    int HK = cfg->heads * cfg->d_key;
    acts->mode = mode;

    linear_forward(acts->query, inp, params->query_weight, params->query_bias, BT, cfg->d_model,
                   HK, pool);
    switch (cfg->query_norm) {
    case PEER_NORM_BATCH:
        batch_norm_forward(acts->query_normed, acts->norm_mean, acts->norm_rstd, acts->query,
                           params->norm_weight, params->norm_bias, params->running_mean,
                           params->running_var, BT, HK, mode, pool);
        break;
    case PEER_NORM_LAYER:
        head_norm_forward(acts->query_normed, acts->norm_mean, acts->norm_rstd, acts->query,
                          params->norm_weight, params->norm_bias, BT, cfg->heads, cfg->d_key,
                          pool);
        break;
    case PEER_NORM_NONE:
        memcpy(acts->query_normed, acts->query, (size_t)BT * HK * sizeof(float));
        break;
    }

    peer_job job = { .cfg = cfg, .params = params, .acts = acts, .inp = inp, .out = out,
                     .BT = BT, .n = peer_layer_side(cfg) };
    int retrieve_tasks = tasks_for(BT, RETRIEVE_TOKEN_BLOCK);
    if (select == PEER_SELECT_RETRIEVE) {
        job.scratch = acts->retrieve_scratch;
        thread_pool_run(pool, retrieve_tasks, retrieve_block, &job);
    } else {
        thread_pool_run(pool, retrieve_tasks, rescore_block, &job);
    }
    thread_pool_run(pool, retrieve_tasks, gate_block, &job);
    peer_layer_experts_forward(out, acts, inp, params, cfg, BT, pool);
}

void peer_layer_experts_forward(float *out, peer_layer_acts *acts, const float *inp,
                                const peer_layer_params *params, const peer_layer_config *cfg,
                                int BT, thread_pool *pool)
{
    peer_job job = { .cfg = cfg, .params = params, .acts = acts, .inp = inp, .out = out,
                     .BT = BT, .n = peer_layer_side(cfg) };
    thread_pool_run(pool, tasks_for(BT, EXPERT_TOKEN_BLOCK), expert_forward_block, &job);
}

/* ---- backward -------------------------------------------------------------------------------- */

static void expert_backward_block(void *data, int task, int thread)
{
    const peer_job *job = data;
    const peer_layer_config *cfg = job->cfg;
    int t0 = task * EXPERT_TOKEN_BLOCK, rows = min_int(EXPERT_TOKEN_BLOCK, job->BT - t0);
    size_t slot = (size_t)t0 * cfg->heads * cfg->topk;
    size_t D = (size_t)cfg->d_model;
    peer_layer_acts *acts = job->acts;
    expert_owned_rows owned = { .inp = job->inp + t0 * D, .slot_row = acts->slot_row + slot,
                                .down = cfg->values_only ? NULL : job->sparse->down,
                                .up = job->sparse->up };
    expert_backward_tokens(job->dinp ? job->dinp + t0 * D : NULL, acts->dpreact + slot,
                           acts->dscore + slot, job->dout + t0 * D, acts->preact + slot,
                           acts->expert + slot, acts->gate + slot, job->params->down,
                           job->params->up, &owned, rows, cfg->heads, cfg->topk, cfg->d_model,
                           cfg->activation);
}

/* Gives every expert chosen in this batch a row of the sparse gradient and decides who writes
 * it. A new row chosen by a single slot is owned by that slot: the backward kernel writes it
 * while the slot's input and output-gradient rows are in L1, instead of a second pass reading
 * them again. Every other row (several slots, or touched by an earlier backward) is pooled: its
 * slots are listed in slot order and summed by the pass after the kernel. Serial and O(slots):
 * slot order is what makes the sums deterministic when tokens and heads share an expert. */
static void sparse_collect_rows(peer_sparse_grad *sparse, peer_layer_acts *acts, size_t slots,
                                int first_new, int *n_pooled)
{
    /* slot_row holds every slot's row until the last pass decides who owns it: the later passes
     * then read it in order instead of looking each expert up again. */
    int32_t *row_of = acts->slot_row;
    for (size_t i = 0; i < slots; i++) {
        int32_t e = acts->expert[i];
        if (sparse->position[e] < 0) {
            int32_t r = sparse->n_rows++;
            sparse->rows[r] = e;
            sparse->position[e] = r;
        }
        row_of[i] = sparse->position[e];
    }
    int32_t *start = sparse->row_start;
    memset(start, 0, ((size_t)sparse->n_rows + 1) * sizeof(int32_t));
    for (size_t i = 0; i < slots; i++)
        start[row_of[i]]++;
    for (int r = 1; r < sparse->n_rows; r++)
        start[r] += start[r - 1];
    start[sparse->n_rows] = (int32_t)slots;
    /* Filling from the last slot down leaves each row's slots ascending and start[r] at the
     * row's first slot. */
    for (size_t i = slots; i-- > 0;)
        acts->row_slots[--start[row_of[i]]] = (int32_t)i;
    for (size_t i = 0; i < slots; i++) {
        int32_t r = row_of[i];
        row_of[i] = r >= first_new && start[r + 1] - start[r] == 1 ? r : -1;
    }
    int pooled = 0;
    for (int r = 0; r < sparse->n_rows; r++)
        if (r < first_new || start[r + 1] - start[r] > 1)
            acts->pooled_rows[pooled++] = r;
    *n_pooled = pooled;
}

/* Columns of a gradient row summed at a time in registers and L1, so each row is written to
 * memory once: a new row is stored, never zero-filled and read back. */
#define SPARSE_CHUNK 256

static void sparse_grad_block(void *data, int task, int thread)
{
    const peer_job *job = data;
    const peer_layer_config *cfg = job->cfg;
    peer_sparse_grad *sparse = job->sparse;
    const peer_layer_acts *acts = job->acts;
    int D = cfg->d_model, per_token = cfg->heads * cfg->topk;
    int p0 = task * SPARSE_ROW_BLOCK, p1 = min_int(job->n_pooled, p0 + SPARSE_ROW_BLOCK);
    float sum_up[SPARSE_CHUNK], sum_down[SPARSE_CHUNK];
    for (int p = p0; p < p1; p++) {
        int r = acts->pooled_rows[p];
        float *grad_down = sparse->down + (size_t)r * D;
        float *grad_up = sparse->up + (size_t)r * D;
        bool is_new = r >= job->first_new_row;
        int first = sparse->row_start[r], last = sparse->row_start[r + 1];
        for (int d0 = 0; d0 < D; d0 += SPARSE_CHUNK) {
            int width = min_int(SPARSE_CHUNK, D - d0);
            memset(sum_up, 0, sizeof sum_up);
            memset(sum_down, 0, sizeof sum_down);
            for (int i = first; i < last; i++) {
                int slot = acts->row_slots[i];
                size_t t = (size_t)(slot / per_token);
                const float *dy = job->dout + t * D + d0;
                if (cfg->values_only) {
                    float gate = acts->gate[slot];
                    for (int d = 0; d < width; d++)
                        sum_up[d] += gate * dy[d];
                    continue;
                }
                float gate_act =
                    acts->gate[slot] * expert_activation(acts->preact[slot], cfg->activation);
                float dz = acts->dpreact[slot];
                const float *x = job->inp + t * D + d0;
                for (int d = 0; d < width; d++) {
                    sum_up[d] += gate_act * dy[d];
                    sum_down[d] += dz * x[d];
                }
            }
            if (is_new) {
                expert_store_scaled(grad_up + d0, 1.0f, sum_up, width);
                if (!cfg->values_only)
                    expert_store_scaled(grad_down + d0, 1.0f, sum_down, width);
            } else {
                for (int d = 0; d < width; d++)
                    grad_up[d0 + d] += sum_up[d];
                if (!cfg->values_only)
                    for (int d = 0; d < width; d++)
                        grad_down[d0 + d] += sum_down[d];
            }
        }
    }
    expert_stores_fence(); /* the streamed rows are complete before the pool says the task is done */
}

static void query_grad_block(void *data, int task, int thread)
{
    const peer_job *job = data;
    const peer_layer_config *cfg = job->cfg;
    const peer_layer_acts *acts = job->acts;
    int t0 = task * RETRIEVE_TOKEN_BLOCK, t1 = min_int(job->BT, t0 + RETRIEVE_TOKEN_BLOCK);
    int n = job->n, half = cfg->d_key / 2, k = cfg->topk;
    size_t HK = (size_t)cfg->heads * cfg->d_key;
    for (int t = t0; t < t1; t++) {
        for (int j = 0; j < cfg->heads; j++) {
            float *dq = acts->dquery + t * HK + (size_t)j * cfg->d_key;
            const float *group =
                job->params->keys + (size_t)(cfg->shared_keys ? 0 : j) * 2 * n * half;
            memset(dq, 0, (size_t)cfg->d_key * sizeof(float));
            size_t base = ((size_t)t * cfg->heads + j) * k;
            for (int s = 0; s < k; s++) {
                float ds = acts->dscore[base + s];
                int e = acts->expert[base + s];
                const float *c1 = group + (size_t)(e / n) * half;
                const float *c2 = group + (size_t)n * half + (size_t)(e % n) * half;
                for (int i = 0; i < half; i++) {
                    dq[i] += ds * c1[i];
                    dq[half + i] += ds * c2[i];
                }
            }
        }
    }
}

/* One task per key group and half, each walking the slots in order: the sub-key rows it owns
 * get their sums in the same order whatever the thread count. */
static void key_grad_task(void *data, int task, int thread)
{
    const peer_job *job = data;
    const peer_layer_config *cfg = job->cfg;
    const peer_layer_acts *acts = job->acts;
    int g = task / 2, side = task % 2;
    int n = job->n, half = cfg->d_key / 2, k = cfg->topk;
    size_t HK = (size_t)cfg->heads * cfg->d_key;
    float *dkeys = job->grads->keys + ((size_t)g * 2 + side) * n * half;
    int j0 = cfg->shared_keys ? 0 : g, j1 = cfg->shared_keys ? cfg->heads : g + 1;
    for (int t = 0; t < job->BT; t++) {
        for (int j = j0; j < j1; j++) {
            const float *q = acts->query_normed + t * HK + (size_t)j * cfg->d_key + side * half;
            size_t base = ((size_t)t * cfg->heads + j) * k;
            for (int s = 0; s < k; s++) {
                int e = acts->expert[base + s];
                float ds = acts->dscore[base + s];
                float *row = dkeys + (size_t)(side ? e % n : e / n) * half;
                for (int i = 0; i < half; i++)
                    row[i] += ds * q[i];
            }
        }
    }
}

void peer_layer_experts_backward(float *dinp, peer_sparse_grad *sparse, peer_layer_acts *acts,
                                 const float *dout, const float *inp,
                                 const peer_layer_params *params, const peer_layer_config *cfg,
                                 int BT, thread_pool *pool)
{
    size_t slots = (size_t)BT * cfg->heads * cfg->topk;
    peer_job job = { .cfg = cfg, .params = params, .acts = acts, .inp = inp, .dout = dout,
                     .dinp = dinp, .sparse = sparse, .BT = BT, .n = peer_layer_side(cfg) };
    /* Expert tables: only the rows chosen in this batch, each written by its one slot during the
     * kernel or summed over its slots afterwards. */
    job.first_new_row = sparse->n_rows;
    sparse_collect_rows(sparse, acts, slots, job.first_new_row, &job.n_pooled);
    /* Experts: input gradient through u, the gradients of the pre-activations and scores, and the
     * gradient rows owned by one slot. */
    thread_pool_run(pool, tasks_for(BT, EXPERT_TOKEN_BLOCK), expert_backward_block, &job);
    thread_pool_run(pool, tasks_for(job.n_pooled, SPARSE_ROW_BLOCK), sparse_grad_block, &job);
}

void peer_layer_backward(float *dinp, peer_layer_params *grads, peer_sparse_grad *sparse,
                         peer_layer_acts *acts, const float *dout, const float *inp,
                         const peer_layer_params *params, const peer_layer_config *cfg, int BT,
                         thread_pool *pool)
{
    int HK = cfg->heads * cfg->d_key;
    peer_job job = { .cfg = cfg, .params = params, .acts = acts, .inp = inp, .dout = dout,
                     .dinp = dinp, .grads = grads, .sparse = sparse, .BT = BT,
                     .n = peer_layer_side(cfg) };

    peer_layer_experts_backward(dinp, sparse, acts, dout, inp, params, cfg, BT, pool);

    /* Scores reach the normalised query and the chosen sub-keys. */
    thread_pool_run(pool, tasks_for(BT, RETRIEVE_TOKEN_BLOCK), query_grad_block, &job);
    thread_pool_run(pool, 2 * peer_layer_key_groups(cfg), key_grad_task, &job);

    /* Query norm, in place: dquery becomes the gradient of the projected query. */
    switch (cfg->query_norm) {
    case PEER_NORM_BATCH:
        batch_norm_backward(acts->dquery, grads->norm_weight, grads->norm_bias, acts->dquery,
                            acts->query, acts->norm_mean, acts->norm_rstd, params->norm_weight,
                            BT, HK, acts->mode, pool);
        break;
    case PEER_NORM_LAYER:
        head_norm_backward(acts->dquery, grads->norm_weight, grads->norm_bias, acts->dquery,
                           acts->query, acts->norm_mean, acts->norm_rstd, params->norm_weight, BT,
                           cfg->heads, cfg->d_key, pool);
        break;
    case PEER_NORM_NONE:
        break;
    }

    linear_backward(dinp, grads->query_weight, grads->query_bias, acts->dquery, inp,
                    params->query_weight, BT, cfg->d_model, HK, pool);
}

double peer_layer_forward_flops_per_token(const peer_layer_config *cfg)
{
    double h = cfg->heads, D = cfg->d_model, dk = cfg->d_key, k = cfg->topk;
    double n = peer_layer_side(cfg);
    double query = h * D * dk;
    double sub_keys = h * n * dk;
    double experts = 2.0 * h * k * D;
    double candidates = h * k * k; /* additions, one flop each */
    return 2.0 * (query + sub_keys + experts) + candidates;
}
