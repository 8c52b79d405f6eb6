/* How often each expert was chosen over training, for plotting one expert's usage against
 * steps: per expert, its selections (summed over heads) in each of a bounded number of
 * intervals of equal length. When every interval is full, neighbours merge in pairs and the
 * intervals become twice as long, so the memory stays the same however long a run trains: the
 * history gets coarser, never bigger. A count saturates at 65535 selections per interval (and
 * saturated says so). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peer-error.h"

#define EXPERT_HISTORY_MAX_COUNT UINT16_MAX
/* More intervals than a plot of one expert has pixels for would only cost memory. */
#define EXPERT_HISTORY_MAX_INTERVALS 1024

typedef struct {
    int n_experts;     /* N */
    int capacity;      /* intervals kept: even, 2 .. EXPERT_HISTORY_MAX_INTERVALS */
    int used;          /* intervals holding counts; the last one is filling */
    long span;         /* steps per interval */
    long *first_step;  /* (capacity) the first step of each interval */
    long *end_step;    /* (capacity) one past the last step added to each interval */
    uint16_t *counts;  /* (capacity, N) selections per interval and expert */
    bool saturated;    /* some count reached EXPERT_HISTORY_MAX_COUNT */
    uint64_t total;    /* selections added */
} expert_history;

/* A history of n_experts experts in at most max_bytes of counts: as many intervals (even, at least
 * 2) as fit, up to EXPERT_HISTORY_MAX_INTERVALS. */
bool expert_history_init(expert_history *history, int n_experts, size_t max_bytes,
                         peer_error *err);
void expert_history_free(expert_history *history);
void expert_history_reset(expert_history *history);

/* The capacity expert_history_init gives n_experts experts in max_bytes. */
int expert_history_capacity_for(int n_experts, size_t max_bytes);

/* Adds the selections of one step (steps ascending; several calls for the same step add to the
 * same interval): expert (n) holds one expert id per selection. */
void expert_history_add(expert_history *history, long step, const int32_t *expert, size_t n);

/* expert_history_add in parts, for threads that split the experts between them: begin_step
 * makes the step's interval the current one, then each part counts the selections of experts in
 * [first, end) (disjoint ranges may count at the same time), returning whether a count
 * saturated; the caller adds n to total and sets saturated. */
void expert_history_begin_step(expert_history *history, long step);
bool expert_history_count(expert_history *history, const int32_t *expert, size_t n,
                          int32_t first, int32_t end);

/* Merges neighbouring intervals in pairs and doubles the span; an odd last interval, the one
 * filling, stays as it is and fills up to the new span. */
void expert_history_coarsen(expert_history *history);

/* The history of one expert: history->used intervals, each its first step, one past its last
 * step and its selections (any argument may be NULL). Returns the number of intervals. */
int expert_history_series(const expert_history *history, int32_t expert, long *first_step,
                          long *end_step, uint32_t *count);

/* The same history for the grid of a grown layer (side n becomes new_side n' >= n): expert
 * a·n + b becomes a·n' + b, the new experts have no selections, and intervals merge in pairs
 * until the counts fit max_bytes again. On failure the history is left as it was. */
bool expert_history_regrid(expert_history *history, int side, int new_side, size_t max_bytes,
                           peer_error *err);

/* Bytes held by the counts. */
size_t expert_history_bytes(const expert_history *history);
