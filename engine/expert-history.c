#include "expert-history.h"

#include <stdlib.h>
#include <string.h>

int expert_history_capacity_for(int n_experts, size_t max_bytes)
{
    size_t per_interval = (size_t)(n_experts > 0 ? n_experts : 1) * sizeof(uint16_t);
    size_t capacity = max_bytes / per_interval;
    if (capacity > EXPERT_HISTORY_MAX_INTERVALS)
        capacity = EXPERT_HISTORY_MAX_INTERVALS;
    if (capacity < 2)
        capacity = 2;
    return (int)(capacity & ~(size_t)1);
}

bool expert_history_init(expert_history *history, int n_experts, size_t max_bytes,
                         peer_error *err)
{
    memset(history, 0, sizeof *history);
    if (n_experts < 1)
        return peer_error_set(err, "an expert history needs n_experts >= 1 (got %d)", n_experts);
    int capacity = expert_history_capacity_for(n_experts, max_bytes);
    history->first_step = calloc((size_t)capacity, sizeof *history->first_step);
    history->end_step = calloc((size_t)capacity, sizeof *history->end_step);
    /* calloc: an interval's pages become resident only once it is used. */
    history->counts = calloc((size_t)capacity * n_experts, sizeof *history->counts);
    if (!history->first_step || !history->end_step || !history->counts) {
        expert_history_free(history);
        return peer_error_set(err, "out of memory for the usage history of %d experts (%d × %zu bytes)",
                              n_experts, capacity, (size_t)n_experts * sizeof(uint16_t));
    }
    history->n_experts = n_experts;
    history->capacity = capacity;
    history->span = 1;
    return true;
}

void expert_history_free(expert_history *history)
{
    free(history->first_step);
    free(history->end_step);
    free(history->counts);
    memset(history, 0, sizeof *history);
}

void expert_history_reset(expert_history *history)
{
    history->used = 0;
    history->span = 1;
    history->saturated = false;
    history->total = 0;
}

static void open_interval(expert_history *history, long step)
{
    int i = history->used++;
    history->first_step[i] = step;
    history->end_step[i] = step;
    memset(history->counts + (size_t)i * history->n_experts, 0,
           (size_t)history->n_experts * sizeof *history->counts);
}

void expert_history_coarsen(expert_history *history)
{
    size_t N = (size_t)history->n_experts;
    int pairs = history->used / 2;
    /* Pair i lands in interval i, which both of its sources are at or after: in place. */
    for (int i = 0; i < pairs; i++) {
        uint16_t *out = history->counts + (size_t)i * N;
        const uint16_t *a = history->counts + (size_t)(2 * i) * N;
        const uint16_t *b = history->counts + (size_t)(2 * i + 1) * N;
        for (size_t e = 0; e < N; e++) {
            unsigned sum = (unsigned)a[e] + b[e];
            if (sum > EXPERT_HISTORY_MAX_COUNT) {
                sum = EXPERT_HISTORY_MAX_COUNT;
                history->saturated = true;
            }
            out[e] = (uint16_t)sum;
        }
        history->first_step[i] = history->first_step[2 * i];
        history->end_step[i] = history->end_step[2 * i + 1];
    }
    if (history->used % 2) {
        int last = history->used - 1;
        memmove(history->counts + (size_t)pairs * N, history->counts + (size_t)last * N,
                N * sizeof *history->counts);
        history->first_step[pairs] = history->first_step[last];
        history->end_step[pairs] = history->end_step[last];
    }
    history->used = pairs + history->used % 2;
    history->span *= 2;
}

void expert_history_begin_step(expert_history *history, long step)
{
    if (history->used == 0) {
        open_interval(history, step);
    } else if (step >= history->first_step[history->used - 1] + history->span) {
        if (history->used == history->capacity)
            expert_history_coarsen(history);
        /* The merged interval may reach the step already. */
        if (step >= history->first_step[history->used - 1] + history->span)
            open_interval(history, step);
    }
    int i = history->used - 1;
    if (step + 1 > history->end_step[i])
        history->end_step[i] = step + 1;
}

bool expert_history_count(expert_history *history, const int32_t *expert, size_t n,
                          int32_t first, int32_t end)
{
    uint16_t *counts = history->counts + (size_t)(history->used - 1) * history->n_experts;
    bool saturated = false;
    for (size_t s = 0; s < n; s++) {
        int32_t e = expert[s];
        if (e < first || e >= end)
            continue;
        if (counts[e] < EXPERT_HISTORY_MAX_COUNT)
            counts[e]++;
        else
            saturated = true;
    }
    return saturated;
}

void expert_history_add(expert_history *history, long step, const int32_t *expert, size_t n)
{
    expert_history_begin_step(history, step);
    if (expert_history_count(history, expert, n, 0, history->n_experts))
        history->saturated = true;
    history->total += n;
}

int expert_history_series(const expert_history *history, int32_t expert, long *first_step,
                          long *end_step, uint32_t *count)
{
    for (int i = 0; i < history->used; i++) {
        if (first_step)
            first_step[i] = history->first_step[i];
        if (end_step)
            end_step[i] = history->end_step[i];
        if (count)
            count[i] = history->counts[(size_t)i * history->n_experts + (size_t)expert];
    }
    return history->used;
}

bool expert_history_regrid(expert_history *history, int side, int new_side, size_t max_bytes,
                           peer_error *err)
{
    if (new_side < side || (long long)side * side != history->n_experts)
        return peer_error_set(err,
                              "an expert history of %d experts cannot go from a side of %d to "
                              "%d: the grid only grows",
                              history->n_experts, side, new_side);
    if (new_side == side)
        return true;
    int new_n = new_side * new_side;
    int capacity = expert_history_capacity_for(new_n, max_bytes);
    long *first_step = calloc((size_t)capacity, sizeof *first_step);
    long *end_step = calloc((size_t)capacity, sizeof *end_step);
    uint16_t *counts = calloc((size_t)capacity * new_n, sizeof *counts);
    if (!first_step || !end_step || !counts) {
        free(first_step);
        free(end_step);
        free(counts);
        return peer_error_set(err, "out of memory for the usage history of %d experts", new_n);
    }
    /* Coarsening first, in the smaller grid, leaves room for the next interval too. */
    while (history->used >= capacity)
        expert_history_coarsen(history);
    for (int i = 0; i < history->used; i++) {
        first_step[i] = history->first_step[i];
        end_step[i] = history->end_step[i];
        const uint16_t *from = history->counts + (size_t)i * history->n_experts;
        uint16_t *to = counts + (size_t)i * new_n;
        for (int a = 0; a < side; a++)
            memcpy(to + (size_t)a * new_side, from + (size_t)a * side, side * sizeof *to);
    }
    free(history->first_step);
    free(history->end_step);
    free(history->counts);
    history->first_step = first_step;
    history->end_step = end_step;
    history->counts = counts;
    history->capacity = capacity;
    history->n_experts = new_n;
    return true;
}

size_t expert_history_bytes(const expert_history *history)
{
    return (size_t)history->capacity * history->n_experts * sizeof *history->counts;
}
