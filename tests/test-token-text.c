/* How byte tokens read on screen (app/token-text.h): printable ASCII as itself, the space as an
 * open box, control bytes as escapes, a multi-byte character whole on its first byte with
 * continuation marks on the rest, and every byte of an invalid sequence as a hex escape. */
#include <glib.h>
#include <string.h>

#include "rng.h"
#include "token-text.h"

#define CONTINUATION "\u22ef"

static void describe(const char *bytes, size_t size, size_t index, TokenText *out)
{
    token_text_describe((const uint8_t *)bytes, size, index, out);
}

static void assert_token(const char *bytes, size_t size, size_t index, TokenTextKind kind,
                         const char *text)
{
    TokenText shown;
    describe(bytes, size, index, &shown);
    if (shown.kind != kind || strcmp(shown.text, text) != 0)
        g_error("byte %zu of a %zu-byte text: shown as “%s” (kind %d), expected “%s” (kind %d)",
                index, size, shown.text, shown.kind, text, kind);
}

static void test_ascii(void)
{
    const char text[] = "a Z~{";
    assert_token(text, 5, 0, TOKEN_TEXT_PLAIN, "a");
    assert_token(text, 5, 1, TOKEN_TEXT_SPACE, "\u2423");
    assert_token(text, 5, 2, TOKEN_TEXT_PLAIN, "Z");
    assert_token(text, 5, 3, TOKEN_TEXT_PLAIN, "~");
    assert_token(text, 5, 4, TOKEN_TEXT_PLAIN, "{");
    /* The backslash is itself: an escape is one token, "\n" typed is two. */
    assert_token("\\n", 2, 0, TOKEN_TEXT_PLAIN, "\\");
    assert_token("\\n", 2, 1, TOKEN_TEXT_PLAIN, "n");
}

static void test_controls(void)
{
    const char text[] = "\n\t\r\x00\x1b\x7f\x01";
    size_t size = sizeof text - 1;
    assert_token(text, size, 0, TOKEN_TEXT_ESCAPE, "\\n");
    assert_token(text, size, 1, TOKEN_TEXT_ESCAPE, "\\t");
    assert_token(text, size, 2, TOKEN_TEXT_ESCAPE, "\\r");
    assert_token(text, size, 3, TOKEN_TEXT_ESCAPE, "\\x00");
    assert_token(text, size, 4, TOKEN_TEXT_ESCAPE, "\\x1b");
    assert_token(text, size, 5, TOKEN_TEXT_ESCAPE, "\\x7f");
    assert_token(text, size, 6, TOKEN_TEXT_ESCAPE, "\\x01");
}

static void test_multibyte(void)
{
    /* é (2 bytes), — (3), 😀 (4), then ASCII. */
    const char text[] = "\xc3\xa9\xe2\x80\x94\xf0\x9f\x98\x80z";
    size_t size = sizeof text - 1;
    TokenText shown;
    describe(text, size, 0, &shown);
    g_assert_cmpint(shown.kind, ==, TOKEN_TEXT_PLAIN);
    g_assert_cmpstr(shown.text, ==, "é");
    g_assert_cmpint(shown.length, ==, 2);
    g_assert_cmpuint(shown.lead, ==, 0);
    g_assert_cmpuint(shown.code_point, ==, 0xe9);
    describe(text, size, 1, &shown);
    g_assert_cmpint(shown.kind, ==, TOKEN_TEXT_CONTINUATION);
    g_assert_cmpstr(shown.text, ==, CONTINUATION);
    g_assert_cmpuint(shown.lead, ==, 0);
    g_assert_cmpint(shown.length, ==, 2);

    assert_token(text, size, 2, TOKEN_TEXT_PLAIN, "—");
    assert_token(text, size, 3, TOKEN_TEXT_CONTINUATION, CONTINUATION);
    assert_token(text, size, 4, TOKEN_TEXT_CONTINUATION, CONTINUATION);
    describe(text, size, 4, &shown);
    g_assert_cmpuint(shown.lead, ==, 2);
    g_assert_cmpuint(shown.code_point, ==, 0x2014);

    assert_token(text, size, 5, TOKEN_TEXT_PLAIN, "😀");
    for (size_t i = 6; i < 9; i++) {
        assert_token(text, size, i, TOKEN_TEXT_CONTINUATION, CONTINUATION);
        describe(text, size, i, &shown);
        g_assert_cmpuint(shown.lead, ==, 5);
        g_assert_cmpint(shown.length, ==, 4);
        g_assert_cmpuint(shown.code_point, ==, 0x1f600);
    }
    assert_token(text, size, 9, TOKEN_TEXT_PLAIN, "z");
}

static void test_invalid(void)
{
    /* A lead without its continuation. */
    assert_token("\xc3" "a", 2, 0, TOKEN_TEXT_INVALID, "\\xc3");
    assert_token("\xc3" "a", 2, 1, TOKEN_TEXT_PLAIN, "a");
    /* A stray continuation byte, at the start and after ASCII. */
    assert_token("\x80", 1, 0, TOKEN_TEXT_INVALID, "\\x80");
    assert_token("a\xbf", 2, 1, TOKEN_TEXT_INVALID, "\\xbf");
    /* A sequence cut by the end of the text. */
    assert_token("\xe2\x80", 2, 0, TOKEN_TEXT_INVALID, "\\xe2");
    assert_token("\xe2\x80", 2, 1, TOKEN_TEXT_INVALID, "\\x80");
    /* Overlong forms, a surrogate, beyond U+10FFFF, and bytes that never lead. */
    const char *invalid[] = {"\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xed\xa0\x80",
                             "\xf0\x80\x80\x80", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80",
                             "\xff", "\xfe"};
    for (size_t i = 0; i < G_N_ELEMENTS(invalid); i++) {
        size_t size = strlen(invalid[i]);
        for (size_t b = 0; b < size; b++) {
            char expected[8];
            g_snprintf(expected, sizeof expected, "\\x%02x", (uint8_t)invalid[i][b]);
            assert_token(invalid[i], size, b, TOKEN_TEXT_INVALID, expected);
        }
    }
    /* Four continuation bytes after a valid 2-byte character: only the first belongs to it. */
    const char text[] = "\xc3\xa9\xa9";
    assert_token(text, 3, 1, TOKEN_TEXT_CONTINUATION, CONTINUATION);
    assert_token(text, 3, 2, TOKEN_TEXT_INVALID, "\\xa9");
}

static void test_non_printing(void)
{
    /* A zero-width joiner, a no-break space, a C1 control, a line separator, a private use
     * character, a byte-order mark and a variation selector: shown by their code point on the
     * first byte. */
    struct {
        const char *bytes;
        const char *shown;
    } cases[] = {
        {"\xe2\x80\x8d", "U+200D"}, {"\xc2\xa0", "U+00A0"},     {"\xc2\x85", "U+0085"},
        {"\xe2\x80\xa8", "U+2028"}, {"\xee\x80\x80", "U+E000"}, {"\xef\xbb\xbf", "U+FEFF"},
        {"\xef\xb8\x8f", "U+FE0F"},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        size_t size = strlen(cases[i].bytes);
        assert_token(cases[i].bytes, size, 0, TOKEN_TEXT_ESCAPE, cases[i].shown);
        for (size_t b = 1; b < size; b++)
            assert_token(cases[i].bytes, size, b, TOKEN_TEXT_CONTINUATION, CONTINUATION);
    }
    /* A combining acute accent alone, on a dotted circle. */
    assert_token("\xcc\x81", 2, 0, TOKEN_TEXT_PLAIN, "\u25cc\xcc\x81");
}

static void test_lone_byte(void)
{
    TokenText shown;
    token_text_describe_byte('e', &shown);
    g_assert_cmpstr(shown.text, ==, "e");
    token_text_describe_byte('\n', &shown);
    g_assert_cmpstr(shown.text, ==, "\\n");
    g_assert_cmpint(shown.kind, ==, TOKEN_TEXT_ESCAPE);
    token_text_describe_byte(' ', &shown);
    g_assert_cmpstr(shown.text, ==, "\u2423");
    token_text_describe_byte(0xc3, &shown);
    g_assert_cmpstr(shown.text, ==, "\\xc3");
    g_assert_cmpint(shown.kind, ==, TOKEN_TEXT_INVALID);
}

/* On random bytes, mostly valid UTF-8 with damage: every byte shows something, a continuation
 * points back to a lead that shows the whole character, and the characters the leads show are
 * exactly the valid sequences GLib finds. */
static void test_random_text(void)
{
    peer_rng rng;
    peer_rng_seed(&rng, 20240707);
    const char *pieces[] = {"a", " ", "\n", "é", "—", "😀", "\xe2\x80\x8d", "\xc3", "\x80",
                            "\xff", "Z", "\t"};
    for (int round = 0; round < 200; round++) {
        GString *text = g_string_new(NULL);
        int count = 1 + (int)(peer_rng_next(&rng) % 24);
        for (int i = 0; i < count; i++)
            g_string_append(text, pieces[peer_rng_next(&rng) % G_N_ELEMENTS(pieces)]);
        const uint8_t *bytes = (const uint8_t *)text->str;
        size_t size = text->len;
        for (size_t i = 0; i < size; i++) {
            TokenText shown;
            token_text_describe(bytes, size, i, &shown);
            g_assert_cmpuint(strlen(shown.text), >, 0);
            g_assert_true(g_utf8_validate(shown.text, -1, NULL));
            if (shown.kind == TOKEN_TEXT_CONTINUATION) {
                g_assert_cmpuint(shown.lead, <, i);
                g_assert_cmpuint(shown.lead + (size_t)shown.length, >, i);
                TokenText lead;
                token_text_describe(bytes, size, shown.lead, &lead);
                g_assert_cmpint(lead.length, ==, shown.length);
                g_assert_cmpuint(lead.code_point, ==, shown.code_point);
                g_assert_cmpint(lead.kind, !=, TOKEN_TEXT_INVALID);
                g_assert_cmpint(lead.kind, !=, TOKEN_TEXT_CONTINUATION);
            } else if (shown.length > 1) {
                const char *end = NULL;
                g_assert_true(g_utf8_validate((const char *)bytes + i, shown.length, &end));
                g_assert_cmpuint(g_utf8_get_char((const char *)bytes + i), ==, shown.code_point);
            } else if (bytes[i] >= 0x80) {
                g_assert_cmpint(shown.kind, ==, TOKEN_TEXT_INVALID);
                g_assert_false(g_utf8_validate((const char *)bytes + i, 1, NULL));
            }
        }
        g_string_free(text, TRUE);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/token-text/ascii", test_ascii);
    g_test_add_func("/token-text/controls", test_controls);
    g_test_add_func("/token-text/multibyte", test_multibyte);
    g_test_add_func("/token-text/invalid", test_invalid);
    g_test_add_func("/token-text/non-printing", test_non_printing);
    g_test_add_func("/token-text/lone-byte", test_lone_byte);
    g_test_add_func("/token-text/random-text", test_random_text);
    return g_test_run();
}
