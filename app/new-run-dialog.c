#include "new-run-dialog.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "corpus.h"
#include "format.h"
#include "model.h"
#include "run-inputs.h"
#include "thread-pool.h"

/* ---- the fields ------------------------------------------------------------------------------ */

typedef enum { FIELD_INT, FIELD_LONG, FIELD_FLOAT, FIELD_SEED } FieldType;

typedef enum { SCOPE_MODEL, SCOPE_TRAINING, SCOPE_LAYER, SCOPE_THREADS } FieldScope;

#define KIND_BIT(kind) (1u << (kind))

typedef struct {
  const char *key;   /* the engine's name, as its messages and the run files spell it */
  const char *title;
  FieldType type;
  size_t offset;     /* into model_config, train_settings or ffn_config */
  unsigned kinds;    /* layer fields: the ffn kinds that have the field */
} FieldSpec;

static const FieldSpec model_fields[] = {
  { "d_model", "Width (d_model)", FIELD_INT, offsetof (model_config, d_model), 0 },
  { "n_layers", "Blocks (n_layers)", FIELD_INT, offsetof (model_config, n_layers), 0 },
  { "n_heads", "Attention heads (n_heads)", FIELD_INT, offsetof (model_config, n_heads), 0 },
  { "context", "Context in bytes (context)", FIELD_INT, offsetof (model_config, context), 0 },
};

static const FieldSpec training_fields[] = {
  { "steps", "Steps (steps)", FIELD_LONG, offsetof (train_settings, steps), 0 },
  { "batch_size", "Sequences per step (batch_size)", FIELD_INT,
    offsetof (train_settings, batch_size), 0 },
  { "seq_len", "Bytes per sequence (seq_len)", FIELD_INT, offsetof (train_settings, seq_len), 0 },
  { "lr", "Peak learning rate (lr)", FIELD_FLOAT, offsetof (train_settings, lr), 0 },
  { "min_lr", "Final learning rate (min_lr)", FIELD_FLOAT, offsetof (train_settings, min_lr), 0 },
  { "warmup", "Warm-up steps (warmup)", FIELD_LONG, offsetof (train_settings, warmup), 0 },
  { "expert_lr", "Expert learning rate (expert_lr)", FIELD_FLOAT,
    offsetof (train_settings, expert_lr), 0 },
  { "grad_clip", "Gradient clipping norm (grad_clip)", FIELD_FLOAT,
    offsetof (train_settings, grad_clip), 0 },
  { "beta1", "Adam β₁ (beta1)", FIELD_FLOAT, offsetof (train_settings, adam.beta1), 0 },
  { "beta2", "Adam β₂ (beta2)", FIELD_FLOAT, offsetof (train_settings, adam.beta2), 0 },
  { "eps", "Adam ε (eps)", FIELD_FLOAT, offsetof (train_settings, adam.eps), 0 },
  { "weight_decay", "Weight decay (weight_decay)", FIELD_FLOAT,
    offsetof (train_settings, adam.weight_decay), 0 },
  { "moe_aux_weight", "MoE balancing loss weight (moe_aux_weight)", FIELD_FLOAT,
    offsetof (train_settings, moe_aux_weight), 0 },
  { "eval_interval", "Steps between evaluations (eval_interval)", FIELD_LONG,
    offsetof (train_settings, eval_interval), 0 },
  { "eval_windows", "Windows per evaluation (eval_windows)", FIELD_INT,
    offsetof (train_settings, eval_windows), 0 },
  { "seed", "Random seed (seed)", FIELD_SEED, offsetof (train_settings, seed), 0 },
};

enum {
  LAYER_D_FF,
  LAYER_MOE_EXPERTS,
  LAYER_MOE_TOPK,
  LAYER_PEER_EXPERTS,
  LAYER_PEER_HEADS,
  LAYER_PEER_TOPK,
  LAYER_PEER_D_KEY,
  N_LAYER_FIELDS,
};

static const FieldSpec layer_fields[N_LAYER_FIELDS] = {
  [LAYER_D_FF] = { "d_ff", "Hidden size (d_ff)", FIELD_INT, offsetof (ffn_config, d_ff),
                   KIND_BIT (FFN_DENSE) | KIND_BIT (FFN_MOE) },
  [LAYER_MOE_EXPERTS] = { "n_experts", "Experts (n_experts)", FIELD_INT,
                          offsetof (ffn_config, moe_experts), KIND_BIT (FFN_MOE) },
  [LAYER_MOE_TOPK] = { "topk", "Experts per token (topk)", FIELD_INT,
                       offsetof (ffn_config, moe_topk), KIND_BIT (FFN_MOE) },
  [LAYER_PEER_EXPERTS] = { "n_experts", "Experts, a square n² (n_experts)", FIELD_INT,
                           offsetof (ffn_config, peer.n_experts),
                           KIND_BIT (FFN_PEER) | KIND_BIT (FFN_PKM) },
  [LAYER_PEER_HEADS] = { "heads", "Retrieval heads (heads)", FIELD_INT,
                         offsetof (ffn_config, peer.heads),
                         KIND_BIT (FFN_PEER) | KIND_BIT (FFN_PKM) },
  [LAYER_PEER_TOPK] = { "topk", "Experts per head (topk)", FIELD_INT,
                        offsetof (ffn_config, peer.topk),
                        KIND_BIT (FFN_PEER) | KIND_BIT (FFN_PKM) },
  [LAYER_PEER_D_KEY] = { "d_key", "Key size (d_key)", FIELD_INT, offsetof (ffn_config, peer.d_key),
                         KIND_BIT (FFN_PEER) | KIND_BIT (FFN_PKM) },
};

static const FieldSpec threads_field = { "threads", "Worker threads", FIELD_INT, 0, 0 };

typedef struct {
  const char *name;
  const char *label;
} Preset;

static const Preset presets[] = {
  { "peer-small", "PEER, 128² experts" },
  { "dense-small", "Dense baseline" },
  { "pkm-small", "Product-key memory" },
  { "moe-small", "Mixture of experts" },
  { "peer-million", "A million experts, 1024²" },
};

typedef struct {
  const FieldSpec *spec;
  FieldScope scope;
  int layer;
  GtkWidget *row; /* AdwEntryRow */
} FieldRow;

typedef struct {
  AdwExpanderRow *expander;
  AdwComboRow *kind_row;
  FieldRow *fields[N_LAYER_FIELDS];
  GtkWidget *shared_keys_row;
  GtkSwitch *shared_keys_switch;
  AdwComboRow *norm_row;
  AdwComboRow *activation_row;
} LayerRows;

struct _PeerNewRunDialog {
  AdwWindow parent_instance;

  GSettings *settings;
  /* Kinds, norms, activations and switches take effect here at once; numbers are read from
   * their rows at each check and stored here when they all parse. */
  model_config cfg;
  train_settings train;
  int threads;
  GPtrArray *fields;  /* FieldRow, every number row */
  GPtrArray *layers;  /* LayerRows, one per block */
  gboolean filling;   /* rows are being filled in: no checks until done */
  char *preset_name;  /* the name the current preset suggested, to follow preset changes */

  GBytes *text;
  char *text_name;
  GBytes *checked_text;  /* the text and sequence length the last corpus check was for */
  int checked_seq_len;
  char *text_problem;

  gboolean valid;
  char *message;
  GtkNativeDialog *chooser;
  GCancellable *cancellable; /* loading a chosen text */

  GtkButton *create_button;
  GtkRevealer *error_revealer;
  GtkLabel *error_label;
  AdwPreferencesPage *page;
  AdwEntryRow *name_row;
  AdwComboRow *preset_row;
  AdwActionRow *text_row;
  GtkButton *text_reset_button;
  AdwActionRow *size_row;
  AdwPreferencesGroup *model_group;
  AdwPreferencesGroup *layers_group;
  AdwPreferencesGroup *training_group;
};

G_DEFINE_FINAL_TYPE (PeerNewRunDialog, peer_new_run_dialog, ADW_TYPE_WINDOW)

enum { SIGNAL_CREATE, N_SIGNALS };
static guint signals[N_SIGNALS];

static void check (PeerNewRunDialog *self);

/* ---- numbers as text ------------------------------------------------------------------------- */

static char *
format_field (const FieldSpec *spec, const void *base)
{
  const char *place = (const char *) base + spec->offset;
  switch (spec->type)
    {
    case FIELD_INT: return g_strdup_printf ("%d", *(const int *) place);
    case FIELD_LONG: return g_strdup_printf ("%ld", *(const long *) place);
    case FIELD_SEED: return g_strdup_printf ("%" G_GUINT64_FORMAT, *(const guint64 *) place);
    case FIELD_FLOAT:
      {
        char buffer[G_ASCII_DTOSTR_BUF_SIZE];
        return g_strdup (g_ascii_formatd (buffer, sizeof buffer, "%g",
                                          (double) *(const float *) place));
      }
    }
  return g_strdup ("");
}

/* Reads text into base's field; on failure writes why to message. */
static gboolean
parse_field (const FieldSpec *spec, const char *text, void *base, char *message, gsize size)
{
  g_autofree char *trimmed = g_strstrip (g_strdup (text));
  char *place = (char *) base + spec->offset;
  char *end = NULL;
  if (!*trimmed)
    {
      g_snprintf (message, size, "%s is empty: give it a value", spec->key);
      return FALSE;
    }
  errno = 0;
  switch (spec->type)
    {
    case FIELD_INT:
    case FIELD_LONG:
      {
        gint64 value = g_ascii_strtoll (trimmed, &end, 10);
        if (*end || end == trimmed)
          {
            g_snprintf (message, size, "%s = “%s” is not a whole number", spec->key, trimmed);
            return FALSE;
          }
        gint64 limit = spec->type == FIELD_INT ? G_MAXINT : G_MAXLONG;
        if (errno == ERANGE || value > limit || value < -limit)
          {
            g_snprintf (message, size, "%s = %s is far out of range", spec->key, trimmed);
            return FALSE;
          }
        if (spec->type == FIELD_INT)
          *(int *) place = (int) value;
        else
          *(long *) place = (long) value;
        return TRUE;
      }
    case FIELD_SEED:
      {
        guint64 value = g_ascii_strtoull (trimmed, &end, 10);
        if (*end || end == trimmed || trimmed[0] == '-' || errno == ERANGE)
          {
            g_snprintf (message, size, "%s = “%s”: use a non-negative whole number", spec->key,
                        trimmed);
            return FALSE;
          }
        *(guint64 *) place = value;
        return TRUE;
      }
    case FIELD_FLOAT:
      {
        double value = g_ascii_strtod (trimmed, &end);
        if (*end || end == trimmed)
          {
            g_snprintf (message, size, "%s = “%s” is not a number (write 0.003 or 3e-3)",
                        spec->key, trimmed);
            return FALSE;
          }
        *(float *) place = (float) value;
        return TRUE;
      }
    }
  return FALSE;
}

static void *
field_base (FieldRow *field, model_config *cfg, train_settings *train, int *threads)
{
  switch (field->scope)
    {
    case SCOPE_MODEL: return cfg;
    case SCOPE_TRAINING: return train;
    case SCOPE_LAYER: return &cfg->layers[field->layer];
    case SCOPE_THREADS: return threads;
    }
  return NULL;
}

static void
fill_row (PeerNewRunDialog *self, FieldRow *field)
{
  g_autofree char *text = format_field (field->spec,
                                        field_base (field, &self->cfg, &self->train,
                                                    &self->threads));
  gboolean filling = self->filling;
  self->filling = TRUE;
  gtk_editable_set_text (GTK_EDITABLE (field->row), text);
  self->filling = filling;
}

/* ---- rows ------------------------------------------------------------------------------------ */

static void
on_field_changed (PeerNewRunDialog *self, GtkEditable *editable);

static FieldRow *
add_field_row (PeerNewRunDialog *self, const FieldSpec *spec, FieldScope scope, int layer)
{
  FieldRow *field = g_new0 (FieldRow, 1);
  field->spec = spec;
  field->scope = scope;
  field->layer = layer;
  field->row = adw_entry_row_new ();
  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (field->row), spec->title);
  /* A mixture of experts has an n_experts and a topk of its own beside PEER's. */
  const char *kind = spec->kinds == KIND_BIT (FFN_MOE) ? "moe-" : "";
  g_autofree char *name = scope == SCOPE_LAYER
                              ? g_strdup_printf ("layer-%d-%s%s", layer, kind, spec->key)
                              : g_strdup (spec->key);
  gtk_widget_set_name (field->row, name);
  gtk_editable_set_alignment (GTK_EDITABLE (field->row), 0.0f);
  g_object_set_data (G_OBJECT (field->row), "peer-field", field);
  g_signal_connect_swapped (field->row, "changed", G_CALLBACK (on_field_changed), self);
  g_ptr_array_add (self->fields, field);
  fill_row (self, field);
  return field;
}

static const char *
layer_kind_label (ffn_kind kind)
{
  switch (kind)
    {
    case FFN_DENSE: return "Dense";
    case FFN_PEER: return "PEER";
    case FFN_PKM: return "PKM";
    case FFN_MOE: return "MoE";
    }
  return "?";
}

static void
update_layer_summary (PeerNewRunDialog *self, int l)
{
  LayerRows *rows = g_ptr_array_index (self->layers, l);
  const ffn_config *ffn = &self->cfg.layers[l];
  g_autofree char *summary = NULL;
  switch (ffn->kind)
    {
    case FFN_DENSE:
      summary = g_strdup_printf ("Dense · d_ff %d", ffn->d_ff);
      break;
    case FFN_MOE:
      summary = g_strdup_printf ("MoE · %d experts, top %d · d_ff %d", ffn->moe_experts,
                                 ffn->moe_topk, ffn->d_ff);
      break;
    case FFN_PEER:
    case FFN_PKM:
      {
        g_autofree char *count = peer_format_count (ffn->peer.n_experts);
        summary = g_strdup_printf ("%s · %s %s · %d heads × top %d",
                                   layer_kind_label (ffn->kind), count,
                                   ffn->kind == FFN_PEER ? "experts" : "memories",
                                   ffn->peer.heads, ffn->peer.topk);
        break;
      }
    }
  adw_expander_row_set_subtitle (rows->expander, summary ? summary : "");
}

/* Shows the rows the layer's kind has. */
static void
update_layer_rows (PeerNewRunDialog *self, int l)
{
  LayerRows *rows = g_ptr_array_index (self->layers, l);
  ffn_kind kind = self->cfg.layers[l].kind;
  for (int f = 0; f < N_LAYER_FIELDS; f++)
    gtk_widget_set_visible (rows->fields[f]->row, (layer_fields[f].kinds & KIND_BIT (kind)) != 0);
  gboolean retrieval = kind == FFN_PEER || kind == FFN_PKM;
  gtk_widget_set_visible (rows->shared_keys_row, retrieval);
  gtk_widget_set_visible (GTK_WIDGET (rows->norm_row), retrieval);
  gtk_widget_set_visible (GTK_WIDGET (rows->activation_row), kind == FFN_PEER);
  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (rows->fields[LAYER_PEER_EXPERTS]->row),
                                 kind == FFN_PKM ? "Memories, a square n² (n_memories)"
                                                 : layer_fields[LAYER_PEER_EXPERTS].title);
  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (rows->fields[LAYER_PEER_TOPK]->row),
                                 kind == FFN_PKM ? "Memories per head (topk)"
                                                 : layer_fields[LAYER_PEER_TOPK].title);
  update_layer_summary (self, l);
}

/* A layer that becomes PEER, PKM or MoE starts from the presets' values for the fields it never
 * had, rather than from zeros. */
static void
give_layer_defaults (PeerNewRunDialog *self, int l)
{
  ffn_config *ffn = &self->cfg.layers[l];
  if (ffn->d_ff <= 0)
    ffn->d_ff = 4 * self->cfg.d_model;
  if (ffn->kind == FFN_MOE && ffn->moe_experts <= 0)
    {
      ffn->moe_experts = 8;
      ffn->moe_topk = 2;
    }
  if ((ffn->kind == FFN_PEER || ffn->kind == FFN_PKM) && ffn->peer.n_experts <= 0)
    {
      ffn->peer.n_experts = 16384;
      ffn->peer.heads = ffn->kind == FFN_PEER ? 8 : 4;
      ffn->peer.topk = ffn->kind == FFN_PEER ? 8 : 32;
      ffn->peer.d_key = 64;
      ffn->peer.shared_keys = false;
      ffn->peer.query_norm = PEER_NORM_BATCH;
      ffn->peer.activation = PEER_ACTIVATION_GELU;
    }
}

static void
fill_layer (PeerNewRunDialog *self, int l)
{
  LayerRows *rows = g_ptr_array_index (self->layers, l);
  const ffn_config *ffn = &self->cfg.layers[l];
  gboolean filling = self->filling;
  self->filling = TRUE;
  adw_combo_row_set_selected (rows->kind_row, ffn->kind);
  for (int f = 0; f < N_LAYER_FIELDS; f++)
    fill_row (self, rows->fields[f]);
  gtk_switch_set_active (rows->shared_keys_switch, ffn->peer.shared_keys);
  adw_combo_row_set_selected (rows->norm_row, ffn->peer.query_norm);
  adw_combo_row_set_selected (rows->activation_row, ffn->peer.activation);
  self->filling = filling;
  update_layer_rows (self, l);
}

static int
layer_of_widget (PeerNewRunDialog *self, GtkWidget *widget)
{
  return GPOINTER_TO_INT (g_object_get_data (G_OBJECT (widget), "peer-layer"));
}

/* The numbers of every row that parses, kept before the kind changes the rows on show. */
static void
store_numbers (PeerNewRunDialog *self)
{
  char message[PEER_ERROR_SIZE];
  for (guint i = 0; i < self->fields->len; i++)
    {
      FieldRow *field = g_ptr_array_index (self->fields, i);
      parse_field (field->spec, gtk_editable_get_text (GTK_EDITABLE (field->row)),
                   field_base (field, &self->cfg, &self->train, &self->threads), message,
                   sizeof message);
    }
}

static void
on_kind_selected (PeerNewRunDialog *self, GParamSpec *pspec, AdwComboRow *row)
{
  if (self->filling)
    return;
  int l = layer_of_widget (self, GTK_WIDGET (row));
  store_numbers (self);
  self->cfg.layers[l].kind = (ffn_kind) adw_combo_row_get_selected (row);
  give_layer_defaults (self, l);
  fill_layer (self, l);
  check (self);
}

static void
on_norm_selected (PeerNewRunDialog *self, GParamSpec *pspec, AdwComboRow *row)
{
  if (self->filling)
    return;
  self->cfg.layers[layer_of_widget (self, GTK_WIDGET (row))].peer.query_norm =
      (peer_query_norm) adw_combo_row_get_selected (row);
  check (self);
}

static void
on_activation_selected (PeerNewRunDialog *self, GParamSpec *pspec, AdwComboRow *row)
{
  if (self->filling)
    return;
  self->cfg.layers[layer_of_widget (self, GTK_WIDGET (row))].peer.activation =
      (peer_activation) adw_combo_row_get_selected (row);
  check (self);
}

static void
on_shared_keys_toggled (PeerNewRunDialog *self, GParamSpec *pspec, GtkSwitch *widget)
{
  if (self->filling)
    return;
  self->cfg.layers[layer_of_widget (self, GTK_WIDGET (widget))].peer.shared_keys =
      gtk_switch_get_active (widget);
  check (self);
}

static AdwComboRow *
add_combo_row (LayerRows *rows, int l, const char *title, const char *const *labels,
               const char *name)
{
  GtkWidget *row = adw_combo_row_new ();
  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (row), title);
  g_autoptr (GtkStringList) model = gtk_string_list_new (labels);
  adw_combo_row_set_model (ADW_COMBO_ROW (row), G_LIST_MODEL (model));
  g_autofree char *widget_name = g_strdup_printf ("layer-%d-%s", l, name);
  gtk_widget_set_name (row, widget_name);
  g_object_set_data (G_OBJECT (row), "peer-layer", GINT_TO_POINTER (l));
  adw_expander_row_add_row (rows->expander, row);
  return ADW_COMBO_ROW (row);
}

static void
add_layer (PeerNewRunDialog *self, int l)
{
  static const char *const kinds[] = { "Dense", "PEER: single-neuron experts",
                                       "PKM: product-key memory", "MoE: mixture of experts",
                                       NULL };
  static const char *const norms[] = { "None", "Layer norm", "Batch norm", NULL };
  static const char *const activations[] = { "GELU", "ReLU", NULL };
  LayerRows *rows = g_new0 (LayerRows, 1);
  g_ptr_array_add (self->layers, rows);

  rows->expander = ADW_EXPANDER_ROW (adw_expander_row_new ());
  g_autofree char *title = g_strdup_printf ("Layer %d", l);
  g_autofree char *name = g_strdup_printf ("layer-%d", l);
  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (rows->expander), title);
  gtk_widget_set_name (GTK_WIDGET (rows->expander), name);
  adw_preferences_group_add (self->layers_group, GTK_WIDGET (rows->expander));

  rows->kind_row = add_combo_row (rows, l, "Feed-forward", kinds, "kind");
  for (int f = 0; f < N_LAYER_FIELDS; f++)
    {
      rows->fields[f] = add_field_row (self, &layer_fields[f], SCOPE_LAYER, l);
      adw_expander_row_add_row (rows->expander, rows->fields[f]->row);
    }
  rows->shared_keys_row = adw_action_row_new ();
  adw_preferences_row_set_title (ADW_PREFERENCES_ROW (rows->shared_keys_row),
                                 "Shared keys (shared_keys)");
  adw_action_row_set_subtitle (ADW_ACTION_ROW (rows->shared_keys_row),
                               "One set of product keys for all heads, as the paper's text has it");
  rows->shared_keys_switch = GTK_SWITCH (gtk_switch_new ());
  gtk_widget_set_valign (GTK_WIDGET (rows->shared_keys_switch), GTK_ALIGN_CENTER);
  g_object_set_data (G_OBJECT (rows->shared_keys_switch), "peer-layer", GINT_TO_POINTER (l));
  adw_action_row_add_suffix (ADW_ACTION_ROW (rows->shared_keys_row),
                             GTK_WIDGET (rows->shared_keys_switch));
  adw_action_row_set_activatable_widget (ADW_ACTION_ROW (rows->shared_keys_row),
                                         GTK_WIDGET (rows->shared_keys_switch));
  adw_expander_row_add_row (rows->expander, rows->shared_keys_row);
  rows->norm_row = add_combo_row (rows, l, "Query norm (query_norm)", norms, "query_norm");
  rows->activation_row = add_combo_row (rows, l, "Expert activation (activation)", activations,
                                        "activation");

  fill_layer (self, l);
  g_signal_connect_swapped (rows->kind_row, "notify::selected", G_CALLBACK (on_kind_selected),
                            self);
  g_signal_connect_swapped (rows->norm_row, "notify::selected", G_CALLBACK (on_norm_selected),
                            self);
  g_signal_connect_swapped (rows->activation_row, "notify::selected",
                            G_CALLBACK (on_activation_selected), self);
  g_signal_connect_swapped (rows->shared_keys_switch, "notify::active",
                            G_CALLBACK (on_shared_keys_toggled), self);
}

static void
remove_last_layer (PeerNewRunDialog *self)
{
  int l = (int) self->layers->len - 1;
  LayerRows *rows = g_ptr_array_index (self->layers, l);
  for (guint i = self->fields->len; i-- > 0;)
    {
      FieldRow *field = g_ptr_array_index (self->fields, i);
      if (field->scope == SCOPE_LAYER && field->layer == l)
        g_ptr_array_remove_index (self->fields, i);
    }
  adw_preferences_group_remove (self->layers_group, GTK_WIDGET (rows->expander));
  g_ptr_array_remove_index (self->layers, l);
}

/* Grows or shrinks the layer list to n blocks; a new block repeats the one before it. */
static void
resize_layers (PeerNewRunDialog *self, int n)
{
  store_numbers (self);
  while ((int) self->layers->len > n)
    remove_last_layer (self);
  while ((int) self->layers->len < n)
    {
      int l = (int) self->layers->len;
      if (l > 0)
        self->cfg.layers[l] = self->cfg.layers[l - 1];
      else
        {
          memset (&self->cfg.layers[0], 0, sizeof self->cfg.layers[0]);
          self->cfg.layers[0].kind = FFN_DENSE;
          give_layer_defaults (self, 0);
        }
      add_layer (self, l);
    }
  self->cfg.n_layers = n;
}

/* ---- checking -------------------------------------------------------------------------------- */

/* The row an engine message is about: it starts with the field's key ("seq_len = 1000: ...",
 * "layer 2 (peer): n_experts = 1000 ..."). */
static FieldRow *
row_for_message (PeerNewRunDialog *self, const char *message)
{
  int layer = -1;
  const char *rest = message;
  if (sscanf (message, "layer %d", &layer) == 1)
    {
      const char *colon = strstr (message, ": ");
      rest = colon ? colon + 2 : message;
    }
  for (guint i = 0; i < self->fields->len; i++)
    {
      FieldRow *field = g_ptr_array_index (self->fields, i);
      if ((layer >= 0) != (field->scope == SCOPE_LAYER) || (layer >= 0 && field->layer != layer))
        continue;
      if (!gtk_widget_get_visible (field->row))
        continue;
      const char *keys[] = { field->spec->key,
                             field->spec == &layer_fields[LAYER_PEER_EXPERTS] ? "n_memories"
                                                                              : NULL };
      for (guint k = 0; k < G_N_ELEMENTS (keys); k++)
        {
          gsize length = keys[k] ? strlen (keys[k]) : 0;
          if (keys[k] && strncmp (rest, keys[k], length) == 0 && rest[length] == ' ')
            return field;
        }
    }
  return NULL;
}

/* The training text must hold a sequence and its next byte in both parts; the engine says so,
 * checked only when the text or the sequence length changes (it copies the text). */
static const char *
check_text (PeerNewRunDialog *self, int seq_len)
{
  if (self->checked_text == self->text && self->checked_seq_len == seq_len)
    return self->text_problem;
  g_clear_pointer (&self->text_problem, g_free);
  g_clear_pointer (&self->checked_text, g_bytes_unref);
  self->checked_text = g_bytes_ref (self->text);
  self->checked_seq_len = seq_len;
  corpus data;
  peer_error err;
  gsize size = 0;
  const guint8 *bytes = g_bytes_get_data (self->text, &size);
  if (corpus_from_bytes (&data, bytes, size, seq_len, self->text_name, &err))
    corpus_free (&data);
  else
    self->text_problem = g_strdup (err.message);
  return self->text_problem;
}

static void
update_size (PeerNewRunDialog *self, const model_config *cfg, const train_settings *train)
{
  int count = 0;
  model_tensor *tensors = peer_model_list_tensors (cfg, &count);
  double params = 0;
  for (int i = 0; tensors && i < count; i++)
    params += (double) tensors[i].n_elements;
  free (tensors);
  double flops = 3.0 * peer_model_forward_flops_per_token (cfg, train->seq_len) *
                 train->batch_size * train->seq_len;
  g_autofree char *params_text = peer_format_si (params);
  g_autofree char *bytes_text = g_format_size ((guint64) (params * sizeof (float)));
  g_autofree char *flops_text = peer_format_si (flops);
  g_autofree char *size = g_strdup_printf ("%s parameters (%s of weights) · %sFLOP a step",
                                           params_text, bytes_text, flops_text);
  adw_action_row_set_subtitle (self->size_row, size);
}

static void
set_message (PeerNewRunDialog *self, const char *message, FieldRow *culprit)
{
  g_free (self->message);
  self->message = g_strdup (message);
  self->valid = message == NULL;
  gtk_label_set_label (self->error_label, message ? message : "");
  gtk_revealer_set_reveal_child (self->error_revealer, message != NULL);
  gtk_widget_set_sensitive (GTK_WIDGET (self->create_button), self->valid);
  for (guint i = 0; i < self->fields->len; i++)
    {
      FieldRow *field = g_ptr_array_index (self->fields, i);
      if (field == culprit)
        gtk_widget_add_css_class (field->row, "error");
      else
        gtk_widget_remove_css_class (field->row, "error");
    }
  for (guint l = 0; l < self->layers->len; l++)
    {
      LayerRows *rows = g_ptr_array_index (self->layers, l);
      gboolean holds = culprit && culprit->scope == SCOPE_LAYER && culprit->layer == (int) l;
      if (holds)
        {
          adw_expander_row_set_expanded (rows->expander, TRUE);
          gtk_widget_add_css_class (GTK_WIDGET (rows->expander), "error");
        }
      else
        gtk_widget_remove_css_class (GTK_WIDGET (rows->expander), "error");
    }
  if (message)
    gtk_accessible_update_property (GTK_ACCESSIBLE (self->error_label),
                                    GTK_ACCESSIBLE_PROPERTY_DESCRIPTION, message, -1);
}

static void
check (PeerNewRunDialog *self)
{
  if (self->filling)
    return;
  model_config cfg = self->cfg;
  train_settings train = self->train;
  int threads = self->threads;
  char message[PEER_ERROR_SIZE];
  for (guint i = 0; i < self->fields->len; i++)
    {
      FieldRow *field = g_ptr_array_index (self->fields, i);
      if (!gtk_widget_get_visible (field->row))
        continue;
      if (!parse_field (field->spec, gtk_editable_get_text (GTK_EDITABLE (field->row)),
                        field_base (field, &cfg, &train, &threads), message, sizeof message))
        {
          if (field->scope == SCOPE_LAYER)
            {
              ffn_kind kind = cfg.layers[field->layer].kind;
              g_autofree char *where = g_strdup_printf ("layer %d (%s): %s", field->layer,
                                                        ffn_kind_name (kind), message);
              g_strlcpy (message, where, sizeof message);
            }
          set_message (self, message, field);
          return;
        }
    }
  /* The layer rows follow n_layers only while it is in range; beyond, the engine's message
   * says what is wrong. */
  for (int l = 0; l < MIN (cfg.n_layers, MODEL_MAX_LAYERS); l++)
    cfg.layers[l].peer.d_model = cfg.d_model;
  self->cfg = cfg;
  self->train = train;
  self->threads = threads;
  for (guint l = 0; l < self->layers->len; l++)
    update_layer_summary (self, (int) l);

  const char *typed = gtk_editable_get_text (GTK_EDITABLE (self->name_row));
  g_autofree char *name = g_strstrip (g_strdup (typed));
  peer_error err;
  if (!*name)
    {
      set_message (self, "Give the run a name.", NULL);
      gtk_widget_add_css_class (GTK_WIDGET (self->name_row), "error");
      return;
    }
  gtk_widget_remove_css_class (GTK_WIDGET (self->name_row), "error");
  if (!model_config_validate (&cfg, &err) || !train_settings_validate (&train, &cfg, &err))
    {
      set_message (self, err.message, row_for_message (self, err.message));
      return;
    }
  if (threads < 1 || threads > THREAD_POOL_MAX_THREADS)
    {
      g_snprintf (message, sizeof message,
                  "threads = %d is out of range: use 1 to %d (this computer has %d processors)",
                  threads, THREAD_POOL_MAX_THREADS, thread_pool_default_threads ());
      set_message (self, message, row_for_message (self, message));
      return;
    }
  const char *problem = check_text (self, train.seq_len);
  update_size (self, &cfg, &train);
  set_message (self, problem, problem ? row_for_message (self, "seq_len ") : NULL);
}

static void
on_field_changed (PeerNewRunDialog *self, GtkEditable *editable)
{
  if (self->filling)
    return;
  FieldRow *field = g_object_get_data (G_OBJECT (editable), "peer-field");
  if (field && field->scope == SCOPE_MODEL && strcmp (field->spec->key, "n_layers") == 0)
    {
      char message[PEER_ERROR_SIZE];
      model_config probe = self->cfg;
      if (parse_field (field->spec, gtk_editable_get_text (editable), &probe, message,
                       sizeof message) &&
          probe.n_layers >= 1 && probe.n_layers <= MODEL_MAX_LAYERS &&
          probe.n_layers != (int) self->layers->len)
        resize_layers (self, probe.n_layers);
    }
  check (self);
}

/* The name sticks to the preset's until the user types one. */
static void
on_name_changed (PeerNewRunDialog *self)
{
  if (!self->filling)
    check (self);
}

/* ---- the training text ----------------------------------------------------------------------- */

static void
set_text (PeerNewRunDialog *self, GBytes *text, const char *name, gboolean built_in)
{
  g_clear_pointer (&self->text, g_bytes_unref);
  self->text = g_bytes_ref (text);
  g_free (self->text_name);
  self->text_name = g_strdup (name);
  g_autofree char *size = g_format_size (g_bytes_get_size (text));
  g_autofree char *subtitle = g_strdup_printf ("%s · %s", name, size);
  adw_action_row_set_subtitle (self->text_row, subtitle);
  gtk_widget_set_visible (GTK_WIDGET (self->text_reset_button), !built_in);
  check (self);
}

static void
use_built_in_text (PeerNewRunDialog *self)
{
  g_autoptr (GBytes) text = NULL;
  g_autofree char *name = NULL;
  peer_error err;
  if (!run_inputs_load_text (NULL, &text, &name, &err))
    {
      set_message (self, err.message, NULL);
      return;
    }
  set_text (self, text, name, TRUE);
}

static void
on_text_reset_clicked (PeerNewRunDialog *self)
{
  use_built_in_text (self);
}

static void
on_text_loaded (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (GError) error = NULL;
  char *contents = NULL;
  gsize length = 0;
  if (!g_file_load_contents_finish (G_FILE (source), result, &contents, &length, NULL, &error))
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        set_message (PEER_NEW_RUN_DIALOG (data), error->message, NULL);
      return;
    }
  PeerNewRunDialog *self = data;
  g_autoptr (GBytes) text = g_bytes_new_take (contents, length);
  g_autofree char *path = g_file_get_path (G_FILE (source));
  set_text (self, text, path ? path : g_file_peek_path (G_FILE (source)), FALSE);
}

static void
on_chooser_response (PeerNewRunDialog *self, int response, GtkNativeDialog *chooser)
{
  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr (GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (chooser));
      g_autoptr (GFile) folder = g_file_get_parent (file);
      g_autofree char *folder_path = folder ? g_file_get_path (folder) : NULL;
      if (self->settings && folder_path)
        g_settings_set_string (self->settings, "last-corpus-folder", folder_path);
      g_cancellable_cancel (self->cancellable);
      g_clear_object (&self->cancellable);
      self->cancellable = g_cancellable_new ();
      g_file_load_contents_async (file, self->cancellable, on_text_loaded, self);
    }
  g_clear_object (&self->chooser);
}

static void
on_text_choose_clicked (PeerNewRunDialog *self)
{
  GtkFileChooserNative *chooser = gtk_file_chooser_native_new ("Choose a Training Text",
                                                               GTK_WINDOW (self),
                                                               GTK_FILE_CHOOSER_ACTION_OPEN,
                                                               "_Open", "_Cancel");
  g_autoptr (GtkFileFilter) text_filter = gtk_file_filter_new ();
  gtk_file_filter_set_name (text_filter, "Text files");
  gtk_file_filter_add_mime_type (text_filter, "text/*");
  gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (chooser), text_filter);
  g_autoptr (GtkFileFilter) all_filter = gtk_file_filter_new ();
  gtk_file_filter_set_name (all_filter, "All files");
  gtk_file_filter_add_pattern (all_filter, "*");
  gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (chooser), all_filter);
  g_autofree char *folder = self->settings
                                ? g_settings_get_string (self->settings, "last-corpus-folder")
                                : NULL;
  if (folder && *folder)
    {
      g_autoptr (GFile) start = g_file_new_for_path (folder);
      gtk_file_chooser_set_current_folder (GTK_FILE_CHOOSER (chooser), start, NULL);
    }
  g_set_object (&self->chooser, GTK_NATIVE_DIALOG (chooser));
  g_object_unref (chooser);
  g_signal_connect_swapped (chooser, "response", G_CALLBACK (on_chooser_response), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (chooser));
}

/* ---- presets --------------------------------------------------------------------------------- */

gboolean
peer_new_run_dialog_set_preset (PeerNewRunDialog *self, const char *preset)
{
  guint index = G_N_ELEMENTS (presets);
  for (guint i = 0; i < G_N_ELEMENTS (presets); i++)
    if (g_strcmp0 (presets[i].name, preset) == 0)
      index = i;
  model_config cfg;
  train_settings train;
  peer_error err;
  if (index == G_N_ELEMENTS (presets) || !run_inputs_load_config (NULL, preset, &cfg, &train, &err))
    return FALSE;

  gboolean filling = self->filling;
  self->filling = TRUE;
  if (adw_combo_row_get_selected (self->preset_row) != index)
    adw_combo_row_set_selected (self->preset_row, index);
  const char *name = gtk_editable_get_text (GTK_EDITABLE (self->name_row));
  if (!*name || g_strcmp0 (name, self->preset_name) == 0)
    gtk_editable_set_text (GTK_EDITABLE (self->name_row), preset);
  g_free (self->preset_name);
  self->preset_name = g_strdup (preset);
  g_autofree char *subtitle = g_strdup_printf ("%s: fills in every setting below", preset);
  adw_action_row_set_subtitle (ADW_ACTION_ROW (self->preset_row), subtitle);

  while (self->layers->len > 0)
    remove_last_layer (self);
  self->cfg = cfg;
  self->train = train;
  for (guint i = 0; i < self->fields->len; i++)
    fill_row (self, g_ptr_array_index (self->fields, i));
  for (int l = 0; l < cfg.n_layers; l++)
    add_layer (self, l);
  self->filling = filling;
  check (self);
  return TRUE;
}

static void
on_preset_selected (PeerNewRunDialog *self)
{
  guint index = adw_combo_row_get_selected (self->preset_row);
  if (!self->filling && index < G_N_ELEMENTS (presets))
    peer_new_run_dialog_set_preset (self, presets[index].name);
}

/* ---- public ---------------------------------------------------------------------------------- */

static void
on_create_clicked (PeerNewRunDialog *self)
{
  check (self);
  if (!self->valid)
    return;
  g_signal_emit (self, signals[SIGNAL_CREATE], 0);
  gtk_window_close (GTK_WINDOW (self));
}

PeerNewRunDialog *
peer_new_run_dialog_new (GtkWindow *parent, GSettings *settings, int threads)
{
  PeerNewRunDialog *self = g_object_new (PEER_TYPE_NEW_RUN_DIALOG, "transient-for", parent,
                                         NULL);
  g_set_object (&self->settings, settings);
  self->threads = threads;
  self->filling = TRUE;
  for (guint i = 0; i < G_N_ELEMENTS (model_fields); i++)
    adw_preferences_group_add (self->model_group,
                               add_field_row (self, &model_fields[i], SCOPE_MODEL, -1)->row);
  for (guint i = 0; i < G_N_ELEMENTS (training_fields); i++)
    adw_preferences_group_add (self->training_group,
                               add_field_row (self, &training_fields[i], SCOPE_TRAINING, -1)->row);
  FieldRow *threads_row = add_field_row (self, &threads_field, SCOPE_THREADS, -1);
  adw_preferences_group_add (self->training_group, threads_row->row);
  use_built_in_text (self);
  self->filling = FALSE;
  peer_new_run_dialog_set_preset (self, RUN_INPUTS_DEFAULT_PRESET);
  return self;
}

gboolean
peer_new_run_dialog_is_valid (PeerNewRunDialog *self, const char **message)
{
  if (message)
    *message = self->message;
  return self->valid;
}

const char *
peer_new_run_dialog_get_name (PeerNewRunDialog *self)
{
  return gtk_editable_get_text (GTK_EDITABLE (self->name_row));
}

void
peer_new_run_dialog_get_config (PeerNewRunDialog *self, model_config *cfg,
                                train_settings *settings)
{
  *cfg = self->cfg;
  *settings = self->train;
}

GBytes *
peer_new_run_dialog_get_text (PeerNewRunDialog *self, const char **name)
{
  if (name)
    *name = self->text_name;
  return self->text;
}

int
peer_new_run_dialog_get_threads (PeerNewRunDialog *self)
{
  return self->threads;
}

/* ---- GObject --------------------------------------------------------------------------------- */

static void
peer_new_run_dialog_dispose (GObject *object)
{
  PeerNewRunDialog *self = PEER_NEW_RUN_DIALOG (object);
  if (self->chooser)
    {
      gtk_native_dialog_destroy (self->chooser);
      g_clear_object (&self->chooser);
    }
  g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  g_clear_object (&self->settings);
  gtk_widget_dispose_template (GTK_WIDGET (object), PEER_TYPE_NEW_RUN_DIALOG);
  G_OBJECT_CLASS (peer_new_run_dialog_parent_class)->dispose (object);
}

static void
peer_new_run_dialog_finalize (GObject *object)
{
  PeerNewRunDialog *self = PEER_NEW_RUN_DIALOG (object);
  g_ptr_array_unref (self->fields);
  g_ptr_array_unref (self->layers);
  g_clear_pointer (&self->text, g_bytes_unref);
  g_clear_pointer (&self->checked_text, g_bytes_unref);
  g_free (self->text_name);
  g_free (self->text_problem);
  g_free (self->message);
  g_free (self->preset_name);
  G_OBJECT_CLASS (peer_new_run_dialog_parent_class)->finalize (object);
}

static void
peer_new_run_dialog_class_init (PeerNewRunDialogClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  object_class->dispose = peer_new_run_dialog_dispose;
  object_class->finalize = peer_new_run_dialog_finalize;

  /* The user created the run; the getters hold what was entered. */
  signals[SIGNAL_CREATE] = g_signal_new ("create", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                                         0, NULL, NULL, NULL, G_TYPE_NONE, 0);

  gtk_widget_class_set_template_from_resource (
      widget_class, "/org/peerworkbench/Workbench/ui/new-run-dialog.ui");
  gtk_widget_class_bind_template_child (widget_class, PeerNewRunDialog, create_button);
  gtk_widget_class_bind_template_child (widget_class, PeerNewRunDialog, error_revealer);
  gtk_widget_class_bind_template_child (widget_class, PeerNewRunDialog, error_label);
  gtk_widget_class_bind_template_child (widget_class, PeerNewRunDialog, page);
  gtk_widget_class_bind_template_child (widget_class, PeerNewRunDialog, name_row);
  gtk_widget_class_bind_template_child (widget_class, PeerNewRunDialog, preset_row);
  gtk_widget_class_bind_template_child (widget_class, PeerNewRunDialog, text_row);
  gtk_widget_class_bind_template_child (widget_class, PeerNewRunDialog, text_reset_button);
  gtk_widget_class_bind_template_child (widget_class, PeerNewRunDialog, size_row);
  gtk_widget_class_bind_template_child (widget_class, PeerNewRunDialog, model_group);
  gtk_widget_class_bind_template_child (widget_class, PeerNewRunDialog, layers_group);
  gtk_widget_class_bind_template_child (widget_class, PeerNewRunDialog, training_group);
  gtk_widget_class_bind_template_callback (widget_class, on_create_clicked);
  gtk_widget_class_bind_template_callback (widget_class, on_text_choose_clicked);
  gtk_widget_class_bind_template_callback (widget_class, on_text_reset_clicked);
  gtk_widget_class_add_binding_action (widget_class, GDK_KEY_Escape, 0, "window.close", NULL);
}

static void
peer_new_run_dialog_init (PeerNewRunDialog *self)
{
  self->fields = g_ptr_array_new_with_free_func (g_free);
  self->layers = g_ptr_array_new_with_free_func (g_free);
  gtk_widget_init_template (GTK_WIDGET (self));

  g_autoptr (GtkStringList) labels = gtk_string_list_new (NULL);
  for (guint i = 0; i < G_N_ELEMENTS (presets); i++)
    gtk_string_list_append (labels, presets[i].label);
  adw_combo_row_set_model (self->preset_row, G_LIST_MODEL (labels));
  g_signal_connect_swapped (self->preset_row, "notify::selected", G_CALLBACK (on_preset_selected),
                            self);
  g_signal_connect_swapped (self->name_row, "changed", G_CALLBACK (on_name_changed), self);
}
