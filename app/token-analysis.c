#include "token-analysis.h"

#include <math.h>
#include <string.h>

#include "sampler.h"

#define SAMPLE_EMPTY_PROMPT "\n"

/* ---- requests -------------------------------------------------------------------------------- */

PeerTokenRequest *
peer_token_request_new_text (const char *text, gssize length)
{
  PeerTokenRequest *request = g_new0 (PeerTokenRequest, 1);
  request->source = PEER_TOKEN_SOURCE_TEXT;
  request->text = g_bytes_new (text, length < 0 ? strlen (text) : (gsize) length);
  request->passage = -1;
  return request;
}

PeerTokenRequest *
peer_token_request_new_passage (long passage)
{
  PeerTokenRequest *request = g_new0 (PeerTokenRequest, 1);
  request->source = PEER_TOKEN_SOURCE_PASSAGE;
  request->passage = passage;
  return request;
}

PeerTokenRequest *
peer_token_request_new_sample (const char *prompt, int length, double temperature, guint64 seed)
{
  PeerTokenRequest *request = g_new0 (PeerTokenRequest, 1);
  request->source = PEER_TOKEN_SOURCE_SAMPLE;
  request->text = g_bytes_new (prompt, strlen (prompt));
  request->passage = -1;
  request->sample_length = length;
  request->temperature = temperature;
  request->seed = seed;
  return request;
}

void
peer_token_request_free (PeerTokenRequest *request)
{
  if (!request)
    return;
  g_clear_pointer (&request->text, g_bytes_unref);
  g_free (request);
}

/* ---- the result ------------------------------------------------------------------------------ */

void
peer_token_analysis_free (PeerTokenAnalysis *analysis)
{
  if (!analysis)
    return;
  for (int i = 0; i < analysis->n_layers; i++)
    {
      g_free (analysis->layers[i].floats);
      g_free (analysis->layers[i].ints);
      g_free (analysis->layers[i].key_group);
    }
  g_free (analysis->layers);
  g_free (analysis->bytes);
  g_free (analysis->cut_reason);
  g_free (analysis->loss);
  g_free (analysis->next_prob);
  g_free (analysis->top_byte);
  g_free (analysis->top_prob);
  g_free (analysis);
}

int
peer_token_analysis_next_byte (const PeerTokenAnalysis *analysis, int t)
{
  g_return_val_if_fail (t >= 0 && t < analysis->n_tokens, -1);
  return t + 1 < analysis->n_tokens ? analysis->bytes[t + 1] : analysis->final_next;
}

int
peer_token_analysis_find_layer (const PeerTokenAnalysis *analysis, int layer)
{
  for (int i = 0; i < analysis->n_layers; i++)
    if (analysis->layers[i].layer == layer)
      return i;
  return -1;
}

double
peer_token_analysis_mean_loss (const PeerTokenAnalysis *analysis)
{
  double sum = 0.0;
  int count = 0;
  for (int t = 0; t < analysis->n_tokens; t++)
    if (isfinite (analysis->loss[t]))
      {
        sum += analysis->loss[t];
        count++;
      }
  return count > 0 ? sum / count : NAN;
}

/* ---- packing a head's trace ------------------------------------------------------------------ */

static size_t
head_float_stride (const peer_layer_config *cfg)
{
  size_t n = (size_t) peer_layer_side (cfg), k = (size_t) cfg->topk;
  return (size_t) cfg->d_key + 2 * n + k * k + 4 * k;
}

static size_t
head_int_stride (const peer_layer_config *cfg)
{
  return 7 * (size_t) cfg->topk;
}

/* Points a head's fields at its packed storage, in the order the header gives. */
static void
head_point (peer_head_trace *head, float *f, int32_t *i, int n, int k, int d_key)
{
  head->query = f;
  f += d_key;
  head->sub_score[0] = f;
  f += n;
  head->sub_score[1] = f;
  f += n;
  head->candidate = f;
  f += (size_t) k * k;
  head->score = f;
  f += k;
  head->gate = f;
  f += k;
  head->activation = f;
  f += k;
  head->contribution = f;
  head->sub_top[0] = i;
  i += k;
  head->sub_top[1] = i;
  i += k;
  head->pick_i = i;
  i += k;
  head->pick_j = i;
  i += k;
  head->expert = i;
  i += k;
  head->row = i;
  i += k;
  head->col = i;
}

static void
head_copy (peer_head_trace *to, const peer_head_trace *from, int n, int k, int d_key)
{
  size_t fk = (size_t) k * sizeof (float), ik = (size_t) k * sizeof (int32_t);
  memcpy (to->query, from->query, (size_t) d_key * sizeof (float));
  memcpy (to->sub_score[0], from->sub_score[0], (size_t) n * sizeof (float));
  memcpy (to->sub_score[1], from->sub_score[1], (size_t) n * sizeof (float));
  memcpy (to->candidate, from->candidate, (size_t) k * fk);
  memcpy (to->score, from->score, fk);
  memcpy (to->gate, from->gate, fk);
  memcpy (to->activation, from->activation, fk);
  memcpy (to->contribution, from->contribution, fk);
  memcpy (to->sub_top[0], from->sub_top[0], ik);
  memcpy (to->sub_top[1], from->sub_top[1], ik);
  memcpy (to->pick_i, from->pick_i, ik);
  memcpy (to->pick_j, from->pick_j, ik);
  memcpy (to->expert, from->expert, ik);
  memcpy (to->row, from->row, ik);
  memcpy (to->col, from->col, ik);
}

void
peer_token_analysis_get_path (const PeerTokenAnalysis *analysis, int slot, int t,
                              peer_token_trace *view, peer_head_trace *heads)
{
  g_return_if_fail (slot >= 0 && slot < analysis->n_layers);
  g_return_if_fail (t >= 0 && t < analysis->n_tokens);
  const PeerTokenLayerPaths *paths = &analysis->layers[slot];
  int h = paths->cfg.heads, k = paths->cfg.topk;
  view->heads = h;
  view->n = paths->side;
  view->topk = k;
  view->d_key = paths->cfg.d_key;
  view->head = heads;
  for (int j = 0; j < h; j++)
    {
      size_t index = (size_t) t * h + j;
      head_point (&heads[j], paths->floats + index * paths->float_stride,
                  paths->ints + index * paths->int_stride, paths->side, k, paths->cfg.d_key);
      heads[j].key_group = paths->key_group[j];
    }
}

/* ---- the text -------------------------------------------------------------------------------- */

static gboolean
is_traceable (const ffn_config *ffn)
{
  return ffn->kind == FFN_PEER || ffn->kind == FFN_PKM;
}

/* A passage starts at the beginning of a sentence or a line where one begins early in its
 * window, so it reads as text rather than from the middle of a word. */
static size_t
passage_start (const corpus *data, size_t window_start, int window)
{
  const uint8_t *bytes = data->bytes;
  size_t limit = MIN (data->size - 1, window_start + (size_t) window / 2);
  size_t after_space = 0;
  for (size_t i = window_start; i < limit; i++)
    {
      gboolean sentence_end = (bytes[i] == '.' || bytes[i] == '!' || bytes[i] == '?') &&
                              (bytes[i + 1] == ' ' || bytes[i + 1] == '\n');
      if (bytes[i] == '\n' || sentence_end)
        {
          size_t start = i + 1;
          while (start < limit && (bytes[start] == ' ' || bytes[start] == '\n'))
            start++;
          if (start < limit)
            return start;
        }
      if (!after_space && bytes[i] == ' ')
        after_space = i + 1;
    }
  return after_space ? after_space : window_start;
}

typedef struct {
  uint8_t *bytes;
  size_t length;   /* bytes to read */
  int final_next;  /* the byte after them, or -1 */
  size_t source_length;
  long passage;
  long n_passages;
} SourceText;

static gboolean
source_text (peer_model *model, const corpus *data, const PeerTokenRequest *request,
             thread_pool *pool, SourceText *out, GError **error)
{
  memset (out, 0, sizeof *out);
  out->final_next = -1;
  out->passage = -1;
  switch (request->source)
    {
    case PEER_TOKEN_SOURCE_TEXT:
      {
        gsize size;
        const uint8_t *text = g_bytes_get_data (request->text, &size);
        if (size == 0)
          {
            g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                 "The text is empty: type or paste at least one character");
            return FALSE;
          }
        out->bytes = g_memdup2 (text, size);
        out->length = size;
        return TRUE;
      }
    case PEER_TOKEN_SOURCE_PASSAGE:
      {
        if (!data)
          {
            g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                 "This run has no validation text to take a passage from");
            return FALSE;
          }
        int window = model->seq;
        size_t validation = data->size - data->train_size;
        long count = MAX (1, (long) ((validation - 1) / (size_t) window));
        long passage = ((request->passage % count) + count) % count;
        size_t start = passage_start (data, data->train_size + (size_t) passage * window, window);
        size_t length = MIN ((size_t) window, data->size - 1 - start);
        out->bytes = g_memdup2 (data->bytes + start, length);
        out->length = length;
        out->final_next = data->bytes[start + length];
        out->passage = passage;
        out->n_passages = count;
        return TRUE;
      }
    case PEER_TOKEN_SOURCE_SAMPLE:
      {
        gsize prompt_size;
        const uint8_t *prompt = g_bytes_get_data (request->text, &prompt_size);
        if (prompt_size == 0)
          {
            prompt = (const uint8_t *) SAMPLE_EMPTY_PROMPT;
            prompt_size = strlen (SAMPLE_EMPTY_PROMPT);
          }
        size_t length = prompt_size + (size_t) MAX (request->sample_length, 0);
        out->bytes = g_malloc (length);
        memcpy (out->bytes, prompt, prompt_size);
        out->length = length;
        if (request->sample_length < 1)
          return TRUE;
        peer_rng rng;
        peer_rng_seed (&rng, request->seed);
        sampler_settings settings = { .temperature = (float) request->temperature, .top_k = 0 };
        peer_error err;
        if (!sampler_generate (model, prompt, prompt_size, out->bytes + prompt_size,
                               (size_t) request->sample_length, &settings, &rng, pool, &err))
          {
            g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "Could not sample: %s",
                         err.message);
            g_clear_pointer (&out->bytes, g_free);
            return FALSE;
          }
        return TRUE;
      }
    }
  g_assert_not_reached ();
}

/* ---- reading it ------------------------------------------------------------------------------ */

/* The log-softmax of one token's logits: the loss of next (when >= 0) and the best guesses. */
static void
read_predictions (const float *logits, int V, int next, float *loss, float *next_prob,
                  uint8_t *top_byte, float *top_prob)
{
  float max = logits[0];
  for (int v = 1; v < V; v++)
    max = MAX (max, logits[v]);
  double sum = 0.0;
  for (int v = 0; v < V; v++)
    sum += exp ((double) logits[v] - max);
  double log_sum = log (sum);
  *loss = next >= 0 ? (float) (log_sum - ((double) logits[next] - max)) : NAN;
  *next_prob = next >= 0 ? (float) exp (-(double) *loss) : NAN;

  int count = MIN (TOKEN_ANALYSIS_TOP, V);
  int chosen[TOKEN_ANALYSIS_TOP];
  for (int r = 0; r < count; r++)
    {
      int best = -1;
      for (int v = 0; v < V; v++)
        {
          gboolean taken = FALSE;
          for (int s = 0; s < r && !taken; s++)
            taken = chosen[s] == v;
          if (!taken && (best < 0 || logits[v] > logits[best]))
            best = v;
        }
      chosen[r] = best;
      top_byte[r] = (uint8_t) best;
      top_prob[r] = (float) exp ((double) logits[best] - max - log_sum);
    }
  for (int r = count; r < TOKEN_ANALYSIS_TOP; r++)
    {
      top_byte[r] = 0;
      top_prob[r] = NAN;
    }
}

typedef struct {
  const peer_model *model;
  PeerTokenLayerPaths *paths;
  int start; /* the window's first token */
  int T;     /* the window's length */
  gboolean *failed; /* (T) */
} TraceWindow;

/* One task per token of the window: each writes its own tokens' slots. */
static void
trace_token (void *data, int t, int thread)
{
  TraceWindow *w = data;
  PeerTokenLayerPaths *paths = w->paths;
  const peer_model *model = w->model;
  int l = paths->layer, D = model->cfg.d_model, T = w->T;
  int h = paths->cfg.heads, k = paths->cfg.topk, dk = paths->cfg.d_key;
  size_t HK = (size_t) h * dk;
  const float *x = model->acts.ln2 + ((size_t) l * T + (size_t) t) * D;
  const float *query = model->acts.peer[l].query_normed + (size_t) t * HK;
  peer_token_trace trace;
  peer_error err;
  if (!peer_token_trace_compute (&trace, &paths->cfg, &model->params.blocks[l].peer, x, query,
                                 &err))
    {
      w->failed[t] = TRUE;
      return;
    }
  for (int j = 0; j < h; j++)
    {
      size_t index = (size_t) (w->start + t) * h + j;
      peer_head_trace packed;
      head_point (&packed, paths->floats + index * paths->float_stride,
                  paths->ints + index * paths->int_stride, paths->side, k, dk);
      head_copy (&packed, &trace.head[j], paths->side, k, dk);
    }
  peer_token_trace_free (&trace);
}

static char *
format_megabytes (size_t bytes)
{
  return g_strdup_printf ("%.0f MB", (double) bytes / (1 << 20));
}

PeerTokenAnalysis *
peer_token_analysis_compute (peer_model *model, const corpus *data,
                             const PeerTokenRequest *request, long step, thread_pool *pool,
                             GError **error)
{
  const model_config *cfg = &model->cfg;
  SourceText text;
  if (!source_text (model, data, request, pool, &text, error))
    return NULL;

  g_autoptr (PeerTokenAnalysis) analysis = g_new0 (PeerTokenAnalysis, 1);
  analysis->step = step;
  analysis->window = model->seq;
  analysis->source_length = text.length;
  analysis->passage = text.passage;
  analysis->n_passages = text.n_passages;

  /* What one token's retrieval paths take, for the cut. */
  size_t per_token = 0;
  int traceable = 0;
  for (int l = 0; l < cfg->n_layers; l++)
    if (is_traceable (&cfg->layers[l]))
      {
        const peer_layer_config *p = &cfg->layers[l].peer;
        size_t per_head = head_float_stride (p) * sizeof (float) +
                          head_int_stride (p) * sizeof (int32_t);
        per_token += (size_t) p->heads * per_head;
        traceable++;
      }
  size_t budget = request->memory_budget ? request->memory_budget : TOKEN_ANALYSIS_MEMORY_BUDGET;
  size_t length = text.length;
  if (length > TOKEN_ANALYSIS_MAX_BYTES)
    {
      length = TOKEN_ANALYSIS_MAX_BYTES;
      analysis->cut_reason = g_strdup_printf ("the workbench reads at most %d bytes at once",
                                              TOKEN_ANALYSIS_MAX_BYTES);
    }
  if (per_token > 0 && length * per_token > budget)
    {
      g_autofree char *one = format_megabytes (per_token);
      g_autofree char *limit = format_megabytes (budget);
      if (per_token > budget)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                       "The retrieval paths of a single token of this model take %s, more than "
                       "the %s the Tokens page may use", one, limit);
          g_free (text.bytes);
          return NULL;
        }
      length = budget / per_token;
      g_free (analysis->cut_reason);
      analysis->cut_reason = g_strdup_printf ("the retrieval paths of more would take more "
                                              "than %s", limit);
    }
  analysis->n_tokens = (int) length;
  analysis->final_next = length < text.length ? text.bytes[length] : text.final_next;
  analysis->bytes = g_realloc (text.bytes, length);

  int n = analysis->n_tokens, V = cfg->vocab_size;
  analysis->loss = g_try_new (float, n);
  analysis->next_prob = g_try_new (float, n);
  analysis->top_byte = g_try_new (uint8_t, (size_t) n * TOKEN_ANALYSIS_TOP);
  analysis->top_prob = g_try_new (float, (size_t) n * TOKEN_ANALYSIS_TOP);
  analysis->layers = g_new0 (PeerTokenLayerPaths, MAX (traceable, 1));
  gboolean allocated = analysis->loss && analysis->next_prob && analysis->top_byte &&
                       analysis->top_prob;
  for (int l = 0; l < cfg->n_layers && allocated; l++)
    {
      if (!is_traceable (&cfg->layers[l]))
        continue;
      PeerTokenLayerPaths *paths = &analysis->layers[analysis->n_layers++];
      paths->layer = l;
      paths->kind = cfg->layers[l].kind;
      paths->cfg = cfg->layers[l].peer;
      paths->cfg.d_model = cfg->d_model;
      paths->side = peer_layer_side (&paths->cfg);
      paths->float_stride = head_float_stride (&paths->cfg);
      paths->int_stride = head_int_stride (&paths->cfg);
      size_t slots = (size_t) n * paths->cfg.heads;
      paths->floats = g_try_new (float, slots * paths->float_stride);
      paths->ints = g_try_new (int32_t, slots * paths->int_stride);
      paths->key_group = g_new (int, paths->cfg.heads);
      for (int j = 0; j < paths->cfg.heads; j++)
        paths->key_group[j] = paths->cfg.shared_keys ? 0 : j;
      allocated = paths->floats && paths->ints;
    }
  if (!allocated)
    {
      g_autofree char *need = format_megabytes ((size_t) n * per_token);
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                   "Out of memory keeping the retrieval paths of %d tokens (%s)", n, need);
      return NULL;
    }

  int window = model->seq;
  g_autofree gboolean *failed = g_new0 (gboolean, window);
  for (int start = 0; start < n; start += window)
    {
      int T = MIN (window, n - start);
      peer_model_forward (model, analysis->bytes + start, NULL, 1, T, PEER_MODE_EVAL, pool);
      for (int t = 0; t < T; t++)
        {
          int index = start + t;
          read_predictions (model->acts.logits + (size_t) t * V, V,
                            peer_token_analysis_next_byte (analysis, index), &analysis->loss[index],
                            &analysis->next_prob[index],
                            analysis->top_byte + (size_t) index * TOKEN_ANALYSIS_TOP,
                            analysis->top_prob + (size_t) index * TOKEN_ANALYSIS_TOP);
        }
      for (int s = 0; s < analysis->n_layers; s++)
        {
          memset (failed, 0, (size_t) T * sizeof (gboolean));
          TraceWindow w = { model, &analysis->layers[s], start, T, failed };
          thread_pool_run (pool, T, trace_token, &w);
          for (int t = 0; t < T; t++)
            if (failed[t])
              {
                g_set_error (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                             "Out of memory tracing token %d of layer %d", start + t,
                             analysis->layers[s].layer);
                return NULL;
              }
        }
    }
  return g_steal_pointer (&analysis);
}

gpointer
peer_token_analysis_inspect (const PeerInspectContext *context, gpointer data, GError **error)
{
  return peer_token_analysis_compute (context->model, context->data, data, context->step,
                                      context->pool, error);
}
