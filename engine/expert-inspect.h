/* One expert of a PEER layer (or one memory of a PKM layer) looked at closely, over the first
 * windows of the validation text, in evaluation mode:
 *
 *   - ‖u_i‖ and ‖v_i‖ (PKM has no u: only ‖v_i‖);
 *   - how often it was chosen and the gate mass it received, per head and in all, counted as
 *     expert_stats counts them: each (token, head) that chose it is one selection;
 *   - histograms over the selections of its gate and (PEER only) of its activation σ(u_iᵀx) and
 *     pre-activation u_iᵀx, and of u_iᵀx over every token, chosen or not (D multiply-adds a
 *     token);
 *   - the contexts that activate it most: one entry per position of the validation text, ranked
 *     by σ(u_iᵀx) (by the gate for PKM, whose activation is always 1), earlier positions first
 *     among equals;
 *   - the bytes its v_i pushes up and down, by its direct logit effect
 *         effect = W_E · (γ ⊙ (v_i − mean(v_i))) · s,
 *     the first-order change of the logits when v_i is added to the last residual stream,
 *     treating the final LayerNorm's scale 1/σ as a constant of the token: its mean-centring is
 *     linear and kept, γ is ln_f's weight, W_E the tied embedding (V, D), and s the mean of 1/σ
 *     over the inspected tokens (so the values are logits for a typical token when the expert's
 *     coefficient gate·σ(u_iᵀx) is 1). The blocks after the expert's layer are left out (the
 *     direct path), and ln_f's bias cancels. Adding one constant to every logit changes no
 *     probability, so only differences between bytes mean anything;
 *   - ablation: the validation loss with the expert switched off, by zeroing its v_i row for the
 *     forward (its output is removed; retrieval and every gate stay as they were), against the
 *     loss with it on, over the same windows. The row is restored bit for bit afterwards.
 *
 * Both functions run forwards in evaluation mode on the model: they overwrite its activations but
 * leave its weights, gradients and running statistics exactly as they were. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "corpus.h"
#include "model.h"
#include "peer-error.h"
#include "thread-pool.h"

typedef struct {
    int layer;        /* a PEER or PKM block */
    int expert;       /* 0 <= expert < N */
    int head;         /* -1: selections by every head; else only those by this head */
    int windows;      /* validation windows read from the start (fewer if the text is shorter) */
    int top_contexts; /* contexts kept, M >= 0 */
    int bins;         /* histogram bins, >= 1 */
    int top_bytes;    /* bytes listed as pushed up and as pushed down, 0 to V */
} expert_inspect_settings;

/* Every selection, all heads, 32 windows, 12 contexts, 24 bins, 8 bytes each way. */
void expert_inspect_settings_default(expert_inspect_settings *settings, int layer, int expert);

/* Values binned evenly over [lo, hi]: bin b holds lo + b·w <= x < lo + (b + 1)·w, w = (hi −
 * lo) / bins, and the last bin includes hi. lo and hi are the smallest and largest value (half a
 * unit either side of it when they are equal; 0 and 1 when there are no values). */
typedef struct {
    int bins;
    double lo, hi;
    uint64_t *counts; /* (bins) */
    uint64_t total;
} expert_histogram;

/* Where an expert fired: the input byte at offset of the corpus (corpus.bytes), which the model
 * read in the window starting at window_start, so it saw bytes window_start..offset. */
typedef struct {
    size_t offset;
    size_t window_start;
    float preact;     /* u_iᵀx; 0 for PKM */
    float activation; /* σ(u_iᵀx); 1 for PKM */
    float gate;       /* Σ of the gates of the heads that chose it here */
    int head;         /* the head among them with the largest gate */
    int heads;        /* how many heads chose it here */
} expert_context;

typedef struct {
    expert_inspect_settings settings; /* as asked, windows as read */
    bool has_u;          /* false for PKM */
    int row, col;        /* (a, b): expert = a·n + b */
    int heads;           /* h of the layer */
    long tokens;         /* positions read: windows × T */
    double u_norm;       /* ‖u_i‖₂, 0 without u */
    double v_norm;       /* ‖v_i‖₂ */
    uint64_t count;      /* selections under the head filter */
    double gate_mass;    /* Σ gate over them */
    double activation_sum; /* Σ σ(u_iᵀx) over them (1 each for PKM) */
    uint64_t *head_count;  /* (h) selections by each head, whatever the filter */
    double *head_gate_mass; /* (h) */
    expert_histogram activation;      /* σ(u_iᵀx) over the selections (PEER only) */
    expert_histogram preact_selected; /* u_iᵀx over the selections (PEER only) */
    expert_histogram preact_all;      /* u_iᵀx over every token, same range (PEER only) */
    expert_histogram gate;            /* gate over the selections */
    int n_contexts;                   /* <= top_contexts */
    expert_context *contexts;         /* (n_contexts) most activating first */
    int vocab;                        /* V */
    float *logit_effect;              /* (V) the direct logit effect defined above */
    double norm_scale;                /* s: mean 1/σ of ln_f over the tokens read */
    int *pushed_up;                   /* (top_bytes) bytes of largest effect, largest first */
    int *pushed_down;                 /* (top_bytes) bytes of smallest effect, smallest first */
} expert_inspection;

/* Fills out (freed with expert_inspection_free, also after a failure). */
bool expert_inspect(peer_model *model, const corpus *data, const expert_inspect_settings *settings,
                    expert_inspection *out, thread_pool *pool, peer_error *err);
void expert_inspection_free(expert_inspection *inspection);

typedef struct {
    int windows;
    long tokens;
    double loss;         /* mean cross-entropy with the expert on, nats */
    double ablated_loss; /* with its v_i zeroed */
} expert_ablation;

/* The loss over the first `windows` validation windows (fewer if the text is shorter) with the
 * expert on and off, each computed as trainer_evaluate computes it. */
bool expert_ablate(peer_model *model, const corpus *data, int layer, int expert, int windows,
                   expert_ablation *out, thread_pool *pool, peer_error *err);
