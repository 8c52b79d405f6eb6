/* How a byte token reads on screen. Every token is one byte, and the byte alone is often not a
 * character, so each is shown by a fixed rule:
 *
 *   a printable ASCII byte         itself                  "a", "7", "{"
 *   the space                      an open box              "␣"
 *   \n, \t, \r                     their C escapes          "\n", "\t", "\r"
 *   any other control byte, DEL    a hex escape             "\x00", "\x1b", "\x7f"
 *   the first byte of a valid      the whole character      "é", "—", "😀"
 *     multi-byte UTF-8 sequence
 *   its later bytes                a continuation mark      "⋯"
 *   a byte of no valid sequence    a hex escape             "\xc3", "\x80"
 *
 * A multi-byte character that does not print (a C1 control, a format character such as a
 * zero-width joiner, a separator other than the ASCII space, a private or unassigned code point)
 * is shown by its code point, "U+200D", on its first byte; a combining mark on its own is drawn
 * on a dotted circle, "◌́". Valid means strict UTF-8: no overlong forms, no surrogates, nothing
 * above U+10FFFF, and every continuation byte present. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    TOKEN_TEXT_PLAIN,        /* printable ASCII, or a printing multi-byte character */
    TOKEN_TEXT_SPACE,        /* the ASCII space */
    TOKEN_TEXT_ESCAPE,       /* a control byte, DEL, or a non-printing character's code point */
    TOKEN_TEXT_CONTINUATION, /* a later byte of a multi-byte character */
    TOKEN_TEXT_INVALID,      /* a byte of no valid UTF-8 sequence */
} TokenTextKind;

#define TOKEN_TEXT_MAX 24 /* bytes of the longest display string, with its NUL */

typedef struct {
    TokenTextKind kind;
    char text[TOKEN_TEXT_MAX]; /* UTF-8, NUL-terminated */
    size_t lead;               /* the first byte of the character this byte belongs to */
    int length;                /* bytes of that character: 1 to 4 */
    uint32_t code_point;       /* of that character; the byte itself when invalid */
} TokenText;

/* The display of bytes[index] among bytes (size): a byte's neighbours decide whether it is part
 * of a character. index < size. */
void token_text_describe(const uint8_t *bytes, size_t size, size_t index, TokenText *out);

/* The display of a byte on its own (a predicted next byte): the same rules, where a byte of
 * 0x80 or more, being no character alone, is a hex escape. */
void token_text_describe_byte(uint8_t byte, TokenText *out);

/* Bytes in the valid UTF-8 sequence that starts at bytes[start], or 0 when none starts there
 * (ASCII counts as a sequence of 1). Fills *code_point when not 0. */
int token_text_sequence_length(const uint8_t *bytes, size_t size, size_t start,
                               uint32_t *code_point);
