/* A text as a strip of byte tokens: one cell per token, wrapped into rows like text, each cell
 * coloured by the token's loss on a fixed scale (a legend at the top says which), and one
 * current token outlined. ← and → step one token, ↑ and ↓ one row, Home and End go to the
 * ends, a click picks a token; the strip scrolls (it is a GtkScrollable: put it in a
 * GtkScrolledWindow) to keep the current token in view. The caller decides what each token
 * reads as: the strip draws the labels it is given. */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

typedef enum {
    PEER_TOKEN_CELL_TEXT,   /* drawn as it is */
    PEER_TOKEN_CELL_SYMBOL, /* a stand-in (a visible space, a continuation mark): drawn dimmer */
    PEER_TOKEN_CELL_ESCAPE, /* an escape (\n, \x07, U+200D): drawn dimmer and smaller */
} PeerTokenCellStyle;

/* Losses at and above this many nats get the scale's last colour (ln 256 ≈ 5.5 is a guess
 * among all bytes). */
#define PEER_TOKEN_STRIP_LOSS_MAX 5.0

#define PEER_TYPE_TOKEN_STRIP (peer_token_strip_get_type())
G_DECLARE_FINAL_TYPE(PeerTokenStrip, peer_token_strip, PEER, TOKEN_STRIP, GtkWidget)

GtkWidget *peer_token_strip_new(void);

/* The tokens, copied: labels (n) UTF-8, styles (n), loss (n) in nats, NaN for a token without
 * one (drawn uncoloured). The position goes back to 0 (or -1 when n is 0). */
void peer_token_strip_set_tokens(PeerTokenStrip *self, guint n, const char *const *labels,
                                 const PeerTokenCellStyle *styles, const float *loss);
guint peer_token_strip_get_n_tokens(PeerTokenStrip *self);
/* The label of token index as given, or NULL out of range. */
const char *peer_token_strip_get_label(PeerTokenStrip *self, guint index);

/* The current token, -1 when there are none. Setting it (clamped to the tokens) scrolls it into
 * view and emits ::position-changed when it changes. */
int peer_token_strip_get_position(PeerTokenStrip *self);
void peer_token_strip_set_position(PeerTokenStrip *self, int position);

/* The colour of a loss on the strip's scale; NaN gives none (transparent). */
void peer_token_strip_loss_color(double loss, GdkRGBA *color);

/* Where token index is drawn, in the strip's coordinates as now scrolled; FALSE when out of
 * range. */
gboolean peer_token_strip_get_cell_bounds(PeerTokenStrip *self, int index,
                                          graphene_rect_t *bounds);

G_END_DECLS
