#include "token-text.h"

#include <glib.h>
#include <stdio.h>
#include <string.h>

#define OPEN_BOX "\u2423"          /* ␣ */
#define CONTINUATION_MARK "\u22ef" /* ⋯ */
#define DOTTED_CIRCLE "\u25cc"     /* ◌ */

static bool is_continuation(uint8_t byte)
{
    return (byte & 0xc0) == 0x80;
}

int token_text_sequence_length(const uint8_t *bytes, size_t size, size_t start,
                               uint32_t *code_point)
{
    uint8_t lead = bytes[start];
    int length;
    uint32_t value;
    /* The second byte's range for the leads that restrict it (RFC 3629's table): E0 and F0 rule
     * out overlong forms, ED the surrogates, F4 everything above U+10FFFF. */
    uint8_t low = 0x80, high = 0xbf;
    if (lead < 0x80) {
        *code_point = lead;
        return 1;
    } else if (lead >= 0xc2 && lead <= 0xdf) {
        length = 2;
        value = lead & 0x1f;
    } else if (lead >= 0xe0 && lead <= 0xef) {
        length = 3;
        value = lead & 0x0f;
        if (lead == 0xe0)
            low = 0xa0;
        else if (lead == 0xed)
            high = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        length = 4;
        value = lead & 0x07;
        if (lead == 0xf0)
            low = 0x90;
        else if (lead == 0xf4)
            high = 0x8f;
    } else {
        return 0;
    }
    if (size - start < (size_t)length)
        return 0;
    for (int i = 1; i < length; i++) {
        uint8_t byte = bytes[start + (size_t)i];
        if (i == 1 ? byte < low || byte > high : !is_continuation(byte))
            return 0;
        value = value << 6 | (byte & 0x3f);
    }
    *code_point = value;
    return length;
}

static void set_text(TokenText *out, TokenTextKind kind, const char *text)
{
    out->kind = kind;
    g_strlcpy(out->text, text, sizeof out->text);
}

static void describe_ascii(uint8_t byte, TokenText *out)
{
    out->length = 1;
    out->code_point = byte;
    if (byte == ' ')
        set_text(out, TOKEN_TEXT_SPACE, OPEN_BOX);
    else if (byte == '\n')
        set_text(out, TOKEN_TEXT_ESCAPE, "\\n");
    else if (byte == '\t')
        set_text(out, TOKEN_TEXT_ESCAPE, "\\t");
    else if (byte == '\r')
        set_text(out, TOKEN_TEXT_ESCAPE, "\\r");
    else if (byte < 0x20 || byte == 0x7f) {
        out->kind = TOKEN_TEXT_ESCAPE;
        snprintf(out->text, sizeof out->text, "\\x%02x", byte);
    } else {
        out->kind = TOKEN_TEXT_PLAIN;
        out->text[0] = (char)byte;
        out->text[1] = '\0';
    }
}

static void describe_invalid(uint8_t byte, size_t index, TokenText *out)
{
    out->kind = TOKEN_TEXT_INVALID;
    out->lead = index;
    out->length = 1;
    out->code_point = byte;
    snprintf(out->text, sizeof out->text, "\\x%02x", byte);
}

/* Whether a character shows nothing, or only space, when drawn alone. */
static bool is_invisible(gunichar c)
{
    switch (g_unichar_type(c)) {
    case G_UNICODE_CONTROL:
    case G_UNICODE_FORMAT:
    case G_UNICODE_UNASSIGNED:
    case G_UNICODE_PRIVATE_USE:
    case G_UNICODE_SURROGATE:
    case G_UNICODE_SPACE_SEPARATOR:
    case G_UNICODE_LINE_SEPARATOR:
    case G_UNICODE_PARAGRAPH_SEPARATOR:
        return true;
    default:
        return !g_unichar_isprint(c) || g_unichar_iszerowidth(c);
    }
}

/* Variation selectors are marks that change the look of the character before them and show
 * nothing alone. */
static bool is_variation_selector(gunichar c)
{
    return (c >= 0xfe00 && c <= 0xfe0f) || (c >= 0xe0100 && c <= 0xe01ef) ||
           (c >= 0x180b && c <= 0x180d);
}

static void describe_character(const uint8_t *bytes, size_t lead, int length, uint32_t c,
                               TokenText *out)
{
    out->lead = lead;
    out->length = length;
    out->code_point = c;
    if (g_unichar_ismark(c) && !is_variation_selector(c)) {
        out->kind = TOKEN_TEXT_PLAIN;
        g_strlcpy(out->text, DOTTED_CIRCLE, sizeof out->text);
        memcpy(out->text + strlen(DOTTED_CIRCLE), bytes + lead, (size_t)length);
        out->text[strlen(DOTTED_CIRCLE) + (size_t)length] = '\0';
    } else if (is_invisible(c)) {
        out->kind = TOKEN_TEXT_ESCAPE;
        snprintf(out->text, sizeof out->text, "U+%04X", (unsigned)c);
    } else {
        out->kind = TOKEN_TEXT_PLAIN;
        memcpy(out->text, bytes + lead, (size_t)length);
        out->text[length] = '\0';
    }
}

void token_text_describe(const uint8_t *bytes, size_t size, size_t index, TokenText *out)
{
    uint8_t byte = bytes[index];
    out->lead = index;
    if (byte < 0x80) {
        describe_ascii(byte, out);
        return;
    }
    /* The character this byte belongs to starts at most three bytes back, at a byte that is not
     * a continuation; there is at most one such start whose sequence reaches this byte. */
    for (size_t back = 0; back < 4 && back <= index; back++) {
        size_t start = index - back;
        if (back > 0 && !is_continuation(bytes[start + 1]))
            break;
        uint32_t c;
        int length = token_text_sequence_length(bytes, size, start, &c);
        if (length > (int)back) {
            if (back == 0)
                describe_character(bytes, start, length, c, out);
            else {
                out->kind = TOKEN_TEXT_CONTINUATION;
                g_strlcpy(out->text, CONTINUATION_MARK, sizeof out->text);
                out->lead = start;
                out->length = length;
                out->code_point = c;
            }
            return;
        }
        if (!is_continuation(bytes[start]))
            break;
    }
    describe_invalid(byte, index, out);
}

void token_text_describe_byte(uint8_t byte, TokenText *out)
{
    out->lead = 0;
    if (byte < 0x80)
        describe_ascii(byte, out);
    else
        describe_invalid(byte, 0, out);
}
