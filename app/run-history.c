#include "run-history.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

#include "session.h"

#define LOG_NAME "log.jsonl"
#define CONFIG_NAME "config.json"
#define CHECKPOINT_NAME "model.safetensors"

gboolean
peer_run_history_is_run (const char *path)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      g_autofree char *log = g_build_filename (path, LOG_NAME, NULL);
      return g_file_test (log, G_FILE_TEST_IS_REGULAR);
    }
  return g_str_has_suffix (path, ".jsonl") && g_file_test (path, G_FILE_TEST_IS_REGULAR);
}

void
peer_run_history_free (PeerRunHistory *history)
{
  if (!history)
    return;
  g_free (history->dir);
  g_free (history->log_path);
  g_free (history->checkpoint_path);
  g_clear_pointer (&history->loss_points, g_array_unref);
  g_clear_pointer (&history->eval_points, g_array_unref);
  g_free (history);
}

static double
number_or_nan (json_t *object, const char *key)
{
  json_t *value = json_object_get (object, key);
  return json_is_number (value) ? json_number_value (value) : NAN;
}

static gboolean
read_config (PeerRunHistory *history, GError **error)
{
  g_autofree char *path = g_build_filename (history->dir, CONFIG_NAME, NULL);
  g_autofree char *text = NULL;
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    return TRUE;
  if (!g_file_get_contents (path, &text, NULL, error))
    return FALSE;
  peer_error err;
  if (!run_config_from_json (&history->cfg, &history->settings, text, &err))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s: %s", path, err.message);
      return FALSE;
    }
  history->has_config = TRUE;
  return TRUE;
}

static gboolean
read_log (PeerRunHistory *history, GError **error)
{
  g_autofree char *text = NULL;
  gsize length = 0;
  if (!g_file_get_contents (history->log_path, &text, &length, error))
    return FALSE;
  g_auto (GStrv) lines = g_strsplit (text, "\n", -1);
  for (guint i = 0; lines[i]; i++)
    {
      const char *line = lines[i];
      if (!*g_strstrip (lines[i]))
        continue;
      json_error_t json_error;
      json_t *object = json_loads (line, 0, &json_error);
      const char *type = json_string_value (json_object_get (object, "type"));
      json_t *step = json_object_get (object, "step");
      if (!type || !json_is_integer (step))
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                       "%s, line %u: not a line of a peer-train log (%s)", history->log_path,
                       i + 1, object ? "no \"type\" or \"step\"" : json_error.text);
          json_decref (object);
          return FALSE;
        }
      if (strcmp (type, "step") == 0)
        {
          PeerLossPoint point = { .step = (long) json_integer_value (step),
                                  .loss = number_or_nan (object, "loss"),
                                  .tokens = number_or_nan (object, "tokens"),
                                  .flops = number_or_nan (object, "flops"),
                                  .lr = number_or_nan (object, "lr"),
                                  .grad_norm = number_or_nan (object, "grad_norm"),
                                  .seconds = number_or_nan (object, "time") };
          g_array_append_val (history->loss_points, point);
        }
      else if (strcmp (type, "eval") == 0)
        {
          PeerEvalPoint point = { .step = (long) json_integer_value (step),
                                  .loss = number_or_nan (object, "loss"),
                                  .bits_per_byte = number_or_nan (object, "bits_per_byte") };
          size_t index;
          json_t *layer;
          json_array_foreach (json_object_get (object, "layers"), index, layer)
            {
              json_t *number = json_object_get (layer, "layer");
              if (!json_is_integer (number))
                continue;
              json_int_t l = json_integer_value (number);
              if (l < 0 || l >= MODEL_MAX_LAYERS)
                continue;
              point.usage[l] = number_or_nan (layer, "usage");
              point.unevenness[l] = number_or_nan (layer, "unevenness");
            }
          g_array_append_val (history->eval_points, point);
        }
      json_decref (object);
    }
  return TRUE;
}

/* An evaluation line counts the tokens it evaluated, not those trained on; the training tokens
 * and FLOPs at its step follow from any step line (both grow by the same amount every step), or
 * from the run's settings when there is none. */
static void
place_evaluations (PeerRunHistory *history)
{
  double tokens_per_step = NAN, flops_per_step = NAN;
  for (guint i = 0; i < history->loss_points->len; i++)
    {
      const PeerLossPoint *p = &g_array_index (history->loss_points, PeerLossPoint, i);
      if (p->step > 0 && isfinite (p->tokens) && isfinite (p->flops))
        {
          tokens_per_step = p->tokens / p->step;
          flops_per_step = p->flops / p->step;
        }
    }
  if (!isfinite (tokens_per_step) && history->has_config)
    {
      const train_settings *s = &history->settings;
      tokens_per_step = (double) s->batch_size * s->seq_len;
      flops_per_step = 3.0 * tokens_per_step *
                       peer_model_forward_flops_per_token (&history->cfg, s->seq_len);
    }
  for (guint i = 0; i < history->eval_points->len; i++)
    {
      PeerEvalPoint *e = &g_array_index (history->eval_points, PeerEvalPoint, i);
      e->tokens = e->step * tokens_per_step;
      e->flops = e->step * flops_per_step;
    }
}

PeerRunHistory *
peer_run_history_load (const char *path, GError **error)
{
  g_autoptr (PeerRunHistory) history = g_new0 (PeerRunHistory, 1);
  history->loss_points = g_array_new (FALSE, FALSE, sizeof (PeerLossPoint));
  history->eval_points = g_array_new (FALSE, FALSE, sizeof (PeerEvalPoint));
  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      history->dir = g_strdup (path);
      history->log_path = g_build_filename (path, LOG_NAME, NULL);
    }
  else
    {
      history->dir = g_path_get_dirname (path);
      history->log_path = g_strdup (path);
    }
  g_autofree char *checkpoint = g_build_filename (history->dir, CHECKPOINT_NAME, NULL);
  if (g_file_test (checkpoint, G_FILE_TEST_IS_REGULAR))
    history->checkpoint_path = g_steal_pointer (&checkpoint);

  if (!read_config (history, error) || !read_log (history, error))
    return NULL;
  place_evaluations (history);
  return g_steal_pointer (&history);
}
