#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "peer-layer.h"

static double gib(size_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0 * 1024.0);
}

void peer_layer_memory_estimate(const peer_layer_config *cfg, int tokens, peer_memory *out)
{
    size_t f = sizeof(float);
    size_t D = (size_t)cfg->d_model, N = (size_t)cfg->n_experts;
    size_t HK = (size_t)cfg->heads * cfg->d_key;
    size_t T = tokens > 0 ? (size_t)tokens : 0;
    size_t slots = T * cfg->heads * cfg->topk;
    size_t params = peer_layer_params_count(cfg);
    size_t dense_grads = peer_layer_grads_count(cfg);
    size_t trained = params - peer_layer_tensor_size(cfg, PEER_TENSOR_RUNNING_MEAN) -
                     peer_layer_tensor_size(cfg, PEER_TENSOR_RUNNING_VAR);
    size_t sparse_rows = slots < N ? slots : N;

    out->params = params * f;
    /* The sparse gradient's rows are used in first-touch order: at most one row per slot. */
    out->grads = dense_grads * f + sparse_rows * 2 * D * f + (3 * N + 1) * sizeof(int32_t);
    out->optimizer = 2 * trained * f;
    out->activations = T * (3 * HK + 4 * D) * f + slots * 9 * 4 +
                       (size_t)THREAD_POOL_MAX_THREADS * 2 * 32 * peer_layer_side(cfg) * f / 16;
}

size_t peer_memory_total(const peer_memory *mem)
{
    return mem->params + mem->grads + mem->optimizer + mem->activations;
}

size_t peer_memory_available(void)
{
    FILE *file = fopen("/proc/meminfo", "r");
    if (file) {
        char line[256];
        unsigned long long kib;
        while (fgets(line, sizeof line, file)) {
            if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) {
                fclose(file);
                return (size_t)kib * 1024;
            }
        }
        fclose(file);
    }
    long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (size_t)pages * (size_t)page : 0;
}

bool peer_layer_check_memory(const peer_layer_config *cfg, int tokens, size_t available,
                             peer_error *err)
{
    peer_memory need;
    peer_layer_memory_estimate(cfg, tokens, &need);
    size_t total = peer_memory_total(&need);
    if (total <= available)
        return true;

    /* The largest square pool that would fit, all else equal. */
    peer_layer_config smaller = *cfg;
    int fit = 0;
    for (int lo = 1, hi = peer_layer_side(cfg); lo <= hi;) {
        int mid = lo + (hi - lo) / 2;
        smaller.n_experts = mid * mid;
        peer_memory m;
        peer_layer_memory_estimate(&smaller, tokens, &m);
        if (peer_memory_total(&m) <= available) {
            fit = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    char advice[160];
    if (fit >= cfg->topk)
        snprintf(advice, sizeof advice, "use at most n_experts = %d (%d²) at d_model = %d",
                 fit * fit, fit, cfg->d_model);
    else
        snprintf(advice, sizeof advice, "use a smaller d_model or fewer tokens per batch");
    return peer_error_set(err,
                          "n_experts = %d at d_model = %d needs %.1f GiB to train (parameters "
                          "%.1f, gradients %.1f, optimiser %.1f, activations %.1f GiB for %d "
                          "tokens) but only %.1f GiB of memory is available: %s",
                          cfg->n_experts, cfg->d_model, gib(total), gib(need.params),
                          gib(need.grads), gib(need.optimizer), gib(need.activations), tokens,
                          gib(available), advice);
}
