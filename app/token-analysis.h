/* A text read by a run's model, token by token, for the Tokens page: for every byte its loss and
 * the model's best guesses at the next byte, and for every PEER and PKM layer and every head the
 * whole retrieval path (engine/retrieval-trace.h) — all of it computed in one inspection on the
 * session's worker, between two training steps, and kept on the main thread so that stepping
 * through the text costs nothing.
 *
 * The model reads the text in windows of its activation length (its training sequence length,
 * at most its context); each window starts without memory of the one before. The retrieval
 * paths of one token take (n + k² + ...) floats per head and layer, so a text is cut where they
 * would pass TOKEN_ANALYSIS_MEMORY_BUDGET, and at TOKEN_ANALYSIS_MAX_BYTES. */
#pragma once

#include <gio/gio.h>

#include "retrieval-trace.h"
#include "session.h"

G_BEGIN_DECLS

#define TOKEN_ANALYSIS_TOP 8                      /* next-byte guesses kept per token */
#define TOKEN_ANALYSIS_MAX_BYTES 16384
#define TOKEN_ANALYSIS_MEMORY_BUDGET ((size_t) 256 << 20)

typedef enum {
  PEER_TOKEN_SOURCE_TEXT,    /* the text given */
  PEER_TOKEN_SOURCE_PASSAGE, /* a passage of the run's validation text */
  PEER_TOKEN_SOURCE_SAMPLE,  /* the text given, continued by the model */
} PeerTokenSource;

/* What to read. Freed with peer_token_request_free. */
typedef struct {
  PeerTokenSource source;
  GBytes *text;         /* TEXT: the text; SAMPLE: the prompt (empty: a newline) */
  long passage;         /* PASSAGE: which one, counted from 0; wraps around */
  int sample_length;    /* SAMPLE: bytes to write, 1 or more */
  double temperature;   /* SAMPLE: > 0 */
  guint64 seed;         /* SAMPLE */
  size_t memory_budget; /* bytes the retrieval paths may take; 0: TOKEN_ANALYSIS_MEMORY_BUDGET */
} PeerTokenRequest;

PeerTokenRequest *peer_token_request_new_text (const char *text, gssize length);
PeerTokenRequest *peer_token_request_new_passage (long passage);
PeerTokenRequest *peer_token_request_new_sample (const char *prompt, int length,
                                                 double temperature, guint64 seed);
void peer_token_request_free (PeerTokenRequest *request);

/* The retrieval paths of one PEER or PKM layer, for every token and head, packed: the floats of
 * token t, head j start at floats + (t·heads + j)·float_stride, laid out as the fields of
 * peer_head_trace (query, sub_score[0], sub_score[1], candidate, score, gate, activation,
 * contribution), the integers likewise (sub_top[0], sub_top[1], pick_i, pick_j, expert, row,
 * col). */
typedef struct {
  int layer;             /* the block, as in blocks.{layer} */
  ffn_kind kind;         /* FFN_PEER or FFN_PKM */
  peer_layer_config cfg;
  int side;              /* n */
  size_t float_stride;
  size_t int_stride;
  float *floats;
  int32_t *ints;
  int *key_group;        /* (heads) */
} PeerTokenLayerPaths;

typedef struct {
  long step;               /* the weights read the text at this training step */
  int window;              /* tokens the model reads at once */
  int n_tokens;
  uint8_t *bytes;          /* (n_tokens) */
  int final_next;          /* the byte after the last token, or -1 where the text ends */
  size_t source_length;    /* bytes the source had before it was cut */
  char *cut_reason;        /* why the text was cut, or NULL */
  float *loss;             /* (n_tokens) nats, predicting the next byte; NaN for the last
                            * token when final_next is -1 */
  float *next_prob;        /* (n_tokens) the probability of the byte that follows; NaN likewise */
  uint8_t *top_byte;       /* (n_tokens, TOKEN_ANALYSIS_TOP) best first */
  float *top_prob;         /* (n_tokens, TOKEN_ANALYSIS_TOP) */
  int n_layers;
  PeerTokenLayerPaths *layers; /* (n_layers) the PEER and PKM blocks, in order */
  long passage;            /* PASSAGE: the one read, and how many there are; else -1 and 0 */
  long n_passages;
} PeerTokenAnalysis;

void peer_token_analysis_free (PeerTokenAnalysis *analysis);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (PeerTokenAnalysis, peer_token_analysis_free)

/* The inspection (PeerInspectFunc): data is a PeerTokenRequest; the result a PeerTokenAnalysis. */
gpointer peer_token_analysis_inspect (const PeerInspectContext *context, gpointer data,
                                      GError **error);

/* Reads the request's text with model (its weights left as they are) in evaluation mode. corpus
 * may be NULL when the request is not a passage. */
PeerTokenAnalysis *peer_token_analysis_compute (peer_model *model, const corpus *data,
                                                const PeerTokenRequest *request, long step,
                                                thread_pool *pool, GError **error);

/* The byte that follows token t, or -1. */
int peer_token_analysis_next_byte (const PeerTokenAnalysis *analysis, int t);

/* The slot in analysis->layers of block layer, or -1. */
int peer_token_analysis_find_layer (const PeerTokenAnalysis *analysis, int layer);

/* A view of token t's retrieval path in layers[slot]: the pointers of view and of heads (room
 * for cfg.heads) point into the analysis, which must outlive them. */
void peer_token_analysis_get_path (const PeerTokenAnalysis *analysis, int slot, int t,
                                   peer_token_trace *view, peer_head_trace *heads);

/* The mean loss over the tokens that have one, NaN when none has. */
double peer_token_analysis_mean_loss (const PeerTokenAnalysis *analysis);

G_END_DECLS
