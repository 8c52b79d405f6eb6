/* Training texts: empty, too short and binary inputs refused with messages that say why and
 * what to give instead; the split into training (first 90 %) and validation (last 10 %) parts;
 * training batches drawn only from the training part and reproducible from their seed; the
 * validation windows; and the default corpus (found through PEER_RESOURCES). */
#define _GNU_SOURCE /* memmem */

#include <glib/gstdio.h>
#include <stdlib.h>
#include <string.h>

#include "corpus.h"
#include "test-util.h"

static void assert_contains(const char *message, const char *word)
{
    if (!strstr(message, word))
        test_fail("the message lacks \"%s\": %s", word, message);
}

/* n bytes of lowercase letters and spaces; g_free it. */
static uint8_t *random_text(peer_rng *rng, size_t n)
{
    uint8_t *text = g_malloc(n);
    for (size_t i = 0; i < n; i++) {
        uint64_t r = peer_rng_next(rng) % 27;
        text[i] = r == 26 ? ' ' : (uint8_t)('a' + r);
    }
    return text;
}

static void expect_refused(const uint8_t *data, size_t size, int seq_len, const char *word1,
                           const char *word2)
{
    corpus c;
    peer_error err = { { 0 } };
    g_assert_false(corpus_from_bytes(&c, data, size, seq_len, "notes.txt", &err));
    g_assert_null(c.bytes);
    g_test_message("%s", err.message);
    assert_contains(err.message, "notes.txt");
    assert_contains(err.message, word1);
    if (word2)
        assert_contains(err.message, word2);
}

static void test_empty(void)
{
    expect_refused((const uint8_t *)"", 0, 64, "empty", "at least");

    /* The same through a file. */
    GError *error = NULL;
    char *dir = g_dir_make_tmp("test-corpus-XXXXXX", &error);
    g_assert_no_error(error);
    char *path = g_build_filename(dir, "empty.txt", NULL);
    g_assert_true(g_file_set_contents(path, "", 0, &error));
    g_assert_no_error(error);
    corpus c;
    peer_error err = { { 0 } };
    g_assert_false(corpus_load_file(&c, path, 64, &err));
    assert_contains(err.message, path);
    assert_contains(err.message, "empty");
    g_assert_cmpint(g_unlink(path), ==, 0);
    g_assert_cmpint(g_rmdir(dir), ==, 0);
    g_free(path);
    g_free(dir);
}

static void test_missing_file(void)
{
    corpus c;
    peer_error err = { { 0 } };
    g_assert_false(corpus_load_file(&c, "/nonexistent/folder/austen.txt", 64, &err));
    assert_contains(err.message, "/nonexistent/folder/austen.txt");
    assert_contains(err.message, "No such file");
}

/* Shorter than one sequence, and long enough for training but not for a validation window: the
 * message states the minimum, and that minimum is accepted. */
static void test_too_short(void)
{
    const char *hello = "Hello, world.\n";
    expect_refused((const uint8_t *)hello, strlen(hello), 64, "too short", "64");

    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED);
    uint8_t *text = random_text(&rng, 4096);
    corpus c;
    peer_error err = { { 0 } };
    g_assert_false(corpus_from_bytes(&c, text, 400, 64, "notes.txt", &err));
    assert_contains(err.message, "validation");
    const char *least = strstr(err.message, "at least ");
    g_assert_nonnull(least);
    least = strstr(least + 1, "at least ");
    g_assert_nonnull(least);
    size_t minimum = strtoul(least + strlen("at least "), NULL, 10);
    g_assert_cmpuint(minimum, >, 400);
    g_assert_cmpuint(minimum, <=, 4096);
    g_assert_true(corpus_from_bytes(&c, text, minimum, 64, "notes.txt", &err));
    g_assert_cmpuint(corpus_validation_windows(&c, 64), >=, 1);
    corpus_free(&c);
    g_free(text);
}

/* A NUL byte, bytes that are not UTF-8, a truncated sequence at the end, an overlong form and
 * a PNG's signature are binary; the message gives the byte and its offset. */
static void test_binary(void)
{
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED + 1);
    size_t n = 2000;
    uint8_t *text = random_text(&rng, n);
    static const struct {
        size_t offset;
        const char *bytes;
        size_t length;
        const char *what;
    } cases[] = {
        { 1234, "\0", 1, "0x00 at offset 1234" },
        { 10, "\xff", 1, "0xff at offset 10" },
        { 1999, "\xc3", 1, "0xc3 at offset 1999" },        /* a lead byte with no continuation */
        { 500, "\xe2\x82", 2, "0xe2 at offset 500" },     /* a three-byte form cut short */
        { 7, "\xc0\xaf", 2, "0xc0 at offset 7" },         /* overlong '/' */
        { 0, "\x89PNG\r\n\x1a\n", 8, "0x89 at offset 0" }, /* an image */
        { 300, "\x80", 1, "0x80 at offset 300" },          /* a stray continuation byte */
        { 301, "\xf8\x88\x80\x80\x80", 5, "0xf8 at offset 301" }, /* five-byte form */
    };
    for (size_t k = 0; k < G_N_ELEMENTS(cases); k++) {
        uint8_t *bad = g_memdup2(text, n);
        memcpy(bad + cases[k].offset, cases[k].bytes, cases[k].length);
        expect_refused(bad, n, 64, "UTF-8", cases[k].what);
        g_free(bad);
    }
    g_free(text);
}

/* Multi-byte UTF-8 (accents, the euro sign, an emoji) is text. */
static void test_utf8_accepted(void)
{
    GString *s = g_string_new(NULL);
    while (s->len < 3000)
        g_string_append(s, "Café crème, 5 € — déjà vu 🙂. ");
    corpus c;
    peer_error err = { { 0 } };
    g_assert_true(corpus_from_bytes(&c, (const uint8_t *)s->str, s->len, 32, "accents", &err));
    g_assert_cmpuint(c.size, ==, s->len);
    g_assert_cmpmem(c.bytes, c.size, s->str, s->len);
    corpus_free(&c);
    g_string_free(s, TRUE);
}

/* The validation part is the last 10 % (rounded down), the rest trains; the corpus keeps its own
 * copy. */
static void test_split(void)
{
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED + 2);
    size_t sizes[] = { 1000, 1001, 1009, 12345, 99999 };
    for (size_t k = 0; k < G_N_ELEMENTS(sizes); k++) {
        size_t n = sizes[k];
        uint8_t *text = random_text(&rng, n);
        corpus a, b;
        peer_error err = { { 0 } };
        g_assert_true(corpus_from_bytes(&a, text, n, 32, "text", &err));
        g_assert_true(corpus_from_bytes(&b, text, n, 32, "text", &err));
        g_assert_cmpuint(a.size, ==, n);
        g_assert_cmpuint(a.train_size, ==, n - n / 10);
        g_assert_cmpuint(b.train_size, ==, a.train_size);
        memset(text, 'x', n);
        g_assert_cmpmem(a.bytes, a.size, b.bytes, b.size);
        g_assert_true(a.bytes[0] != 'x' || a.bytes[1] != 'x' || a.bytes[2] != 'x');
        corpus_free(&a);
        corpus_free(&b);
        g_free(text);
    }
}

/* Windows of T + 1 bytes, consecutive and non-overlapping from the start of the validation part:
 * tokens are the first T, targets the last T. */
static void test_validation_windows(void)
{
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED + 3);
    size_t n = 5003;
    uint8_t *text = random_text(&rng, n);
    corpus c;
    peer_error err = { { 0 } };
    int T = 16;
    g_assert_true(corpus_from_bytes(&c, text, n, T, "text", &err));
    size_t part = n - c.train_size;
    size_t windows = corpus_validation_windows(&c, T);
    g_assert_cmpuint(windows, ==, part / (T + 1));
    uint8_t tokens[16], targets[16];
    for (size_t w = 0; w < windows; w++) {
        corpus_validation_window(&c, w, T, tokens, targets);
        const uint8_t *start = text + c.train_size + w * (T + 1);
        g_assert_cmpmem(tokens, T, start, T);
        g_assert_cmpmem(targets, T, start + 1, T);
    }
    g_assert_cmpuint(c.train_size + windows * (T + 1), <=, n);
    corpus_free(&c);
    g_free(text);
}

/* Batches: each sequence and its targets are T + 1 consecutive bytes of the training part, never
 * of the validation part (written in capitals here, to be seen), the offsets reach both ends of
 * the part, and a seed reproduces them. */
static void test_batches(void)
{
    peer_rng rng;
    peer_rng_seed(&rng, TEST_SEED + 4);
    size_t n = 1500;
    uint8_t *text = random_text(&rng, n);
    size_t train = n - n / 10;
    for (size_t i = train; i < n; i++)
        text[i] = text[i] == ' ' ? '.' : (uint8_t)(text[i] - 'a' + 'A');
    corpus c;
    peer_error err = { { 0 } };
    int B = 8, T = 24;
    g_assert_true(corpus_from_bytes(&c, text, n, T, "text", &err));
    g_assert_cmpuint(c.train_size, ==, train);

    uint8_t tokens[8 * 24], targets[8 * 24], again_tokens[8 * 24], again_targets[8 * 24];
    peer_rng batch_rng, again_rng;
    peer_rng_seed(&batch_rng, 42);
    peer_rng_seed(&again_rng, 42);
    size_t lowest = n, highest = 0;
    for (int round = 0; round < 500; round++) {
        corpus_train_batch(&c, &batch_rng, B, T, tokens, targets);
        corpus_train_batch(&c, &again_rng, B, T, again_tokens, again_targets);
        g_assert_cmpmem(tokens, sizeof tokens, again_tokens, sizeof again_tokens);
        g_assert_cmpmem(targets, sizeof targets, again_targets, sizeof again_targets);
        for (int b = 0; b < B; b++) {
            const uint8_t *seq = tokens + b * T, *next = targets + b * T;
            g_assert_cmpmem(seq + 1, T - 1, next, T - 1);
            uint8_t window[25];
            memcpy(window, seq, T);
            window[T] = next[T - 1];
            for (int i = 0; i <= T; i++)
                if (!(window[i] >= 'a' && window[i] <= 'z') && window[i] != ' ')
                    test_fail("batch byte %d of sequence %d is '%c', from the validation part", i,
                              b, window[i]);
            /* 25 random letters occur once: find where the window came from */
            const uint8_t *found = memmem(text, train, window, (size_t)T + 1);
            g_assert_nonnull(found);
            size_t offset = (size_t)(found - text);
            g_assert_cmpuint(offset + T + 1, <=, train);
            lowest = MIN(lowest, offset);
            highest = MAX(highest, offset);
        }
    }
    /* 4000 draws over ~1300 offsets: both ends are reached within a few bytes */
    g_assert_cmpuint(lowest, <, 10);
    g_assert_cmpuint(highest + T + 1, >, train - 10);
    corpus_free(&c);
    g_free(text);
}

/* The default corpus: six novels, 4,025,029 bytes of UTF-8, split at 3,622,527. */
static void test_default_corpus(void)
{
    const char *resources = g_getenv("PEER_RESOURCES");
    if (!resources) {
        g_test_skip("PEER_RESOURCES is not set (meson test sets it to resources/)");
        return;
    }
    char *path = g_build_filename(resources, "corpus", "austen.txt", NULL);
    corpus c;
    peer_error err = { { 0 } };
    if (!corpus_load_file(&c, path, 1024, &err))
        test_fail("the default corpus is refused: %s", err.message);
    g_assert_cmpuint(c.size, ==, 4025029);
    g_assert_cmpuint(c.train_size, ==, 4025029 - 402502);
    g_assert_cmpmem(c.bytes, 21, "SENSE AND SENSIBILITY", 21);
    g_assert_cmpuint(corpus_validation_windows(&c, 128), ==, 402502 / 129);
    corpus_free(&c);
    g_free(path);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/corpus/empty", test_empty);
    g_test_add_func("/corpus/missing-file", test_missing_file);
    g_test_add_func("/corpus/too-short", test_too_short);
    g_test_add_func("/corpus/binary", test_binary);
    g_test_add_func("/corpus/utf8-accepted", test_utf8_accepted);
    g_test_add_func("/corpus/split", test_split);
    g_test_add_func("/corpus/validation-windows", test_validation_windows);
    g_test_add_func("/corpus/batches", test_batches);
    g_test_add_func("/corpus/default", test_default_corpus);
    return g_test_run();
}
