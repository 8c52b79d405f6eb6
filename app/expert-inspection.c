#include "expert-inspection.h"

#include <gio/gio.h>

#define CONTEXT_BEFORE 48
#define CONTEXT_AFTER 16

PeerExpertRequest *
peer_expert_request_new (PeerExpertInspectionKind kind, int layer, int expert)
{
  PeerExpertRequest *request = g_new0 (PeerExpertRequest, 1);
  request->kind = kind;
  expert_inspect_settings_default (&request->settings, layer, expert);
  request->context_before = CONTEXT_BEFORE;
  request->context_after = CONTEXT_AFTER;
  return request;
}

void
peer_expert_request_free (gpointer request)
{
  g_free (request);
}

void
peer_expert_inspection_free (gpointer data)
{
  PeerExpertInspection *inspection = data;
  if (!inspection)
    return;
  for (int i = 0; inspection->contexts && i < inspection->details.n_contexts; i++)
    g_free (inspection->contexts[i].bytes);
  g_free (inspection->contexts);
  g_free (inspection->usage_steps);
  g_free (inspection->usage_per_step);
  expert_inspection_free (&inspection->details);
  g_free (inspection);
}

/* The expert's selections per step in each interval of the monitor's history. */
static void
copy_usage_history (PeerExpertInspection *inspection, const expert_monitor *monitor, int layer,
                    int expert)
{
  if (!monitor)
    return;
  int n = expert_monitor_history (monitor, layer, expert, NULL, NULL, NULL);
  if (n <= 0)
    return;
  g_autofree long *first = g_new (long, n);
  g_autofree long *end = g_new (long, n);
  g_autofree uint32_t *count = g_new (uint32_t, n);
  n = expert_monitor_history (monitor, layer, expert, first, end, count);
  inspection->usage_steps = g_new (double, MAX (n, 1));
  inspection->usage_per_step = g_new (double, MAX (n, 1));
  guint kept = 0;
  for (int i = 0; i < n; i++)
    {
      if (end[i] <= first[i])
        continue;
      inspection->usage_steps[kept] = 0.5 * (double) (first[i] + end[i] - 1);
      inspection->usage_per_step[kept] = (double) count[i] / (double) (end[i] - first[i]);
      kept++;
    }
  inspection->n_usage = kept;
}

/* Copies the text around each context out of the corpus. */
static void
copy_contexts (PeerExpertInspection *inspection, const PeerExpertRequest *request,
               const corpus *data)
{
  int n = inspection->details.n_contexts;
  inspection->contexts = g_new0 (PeerContextText, MAX (n, 1));
  gsize before = (gsize) MAX (request->context_before, 0);
  gsize after = (gsize) MAX (request->context_after, 0);
  for (int i = 0; i < n; i++)
    {
      const expert_context *c = &inspection->details.contexts[i];
      gsize start = c->offset > before ? c->offset - before : 0;
      gsize end = MIN (data->size, c->offset + 1 + after);
      PeerContextText *text = &inspection->contexts[i];
      text->bytes = g_memdup2 (data->bytes + start, end - start);
      text->size = end - start;
      text->token = c->offset - start;
      text->seen_from = c->window_start > start ? c->window_start - start : 0;
    }
}

gpointer
peer_expert_inspection_run (const PeerInspectContext *context, gpointer data, GError **error)
{
  const PeerExpertRequest *request = data;
  PeerExpertInspection *inspection = g_new0 (PeerExpertInspection, 1);
  inspection->kind = request->kind;
  inspection->step = context->step;
  peer_error err = { { 0 } };
  gboolean ok;
  if (request->kind == PEER_EXPERT_INSPECTION_ABLATION)
    ok = expert_ablate (context->model, context->data, request->settings.layer,
                        request->settings.expert, request->settings.windows,
                        &inspection->ablation, context->pool, &err);
  else
    ok = expert_inspect (context->model, context->data, &request->settings,
                         &inspection->details, context->pool, &err);
  if (!ok)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, err.message);
      peer_expert_inspection_free (inspection);
      return NULL;
    }
  if (request->kind == PEER_EXPERT_INSPECTION_DETAILS)
    {
      copy_contexts (inspection, request, context->data);
      copy_usage_history (inspection, context->experts, request->settings.layer,
                          request->settings.expert);
    }
  return inspection;
}
