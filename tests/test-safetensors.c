/* The checkpoint file format: what is written reads back bit for bit, a failed write leaves the
 * old file as it was, and every malformed file of the fuzzing corpus (fuzz/corpus/safetensors,
 * found through PEER_FUZZ_CORPUS) is refused with a message rather than a crash. */
#include <errno.h>
#include <glib/gstdio.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"
#include "test-util.h"

/* ---- helpers --------------------------------------------------------------------------------- */

static char *make_temp_dir(void)
{
    GError *error = NULL;
    char *dir = g_dir_make_tmp("test-safetensors-XXXXXX", &error);
    g_assert_no_error(error);
    return dir;
}

/* Removes dir and the files in it. */
static void remove_temp_dir(const char *dir)
{
    GDir *listing = g_dir_open(dir, 0, NULL);
    g_assert_nonnull(listing);
    for (const char *name; (name = g_dir_read_name(listing));) {
        char *path = g_build_filename(dir, name, NULL);
        if (g_file_test(path, G_FILE_TEST_IS_DIR))
            g_assert_cmpint(g_rmdir(path), ==, 0);
        else
            g_assert_cmpint(g_unlink(path), ==, 0);
        g_free(path);
    }
    g_dir_close(listing);
    g_assert_cmpint(g_rmdir(dir), ==, 0);
}

/* Sorted names in dir, NULL-terminated; g_strfreev them. */
static char **list_dir(const char *dir)
{
    GDir *listing = g_dir_open(dir, 0, NULL);
    g_assert_nonnull(listing);
    GPtrArray *names = g_ptr_array_new();
    for (const char *name; (name = g_dir_read_name(listing));)
        g_ptr_array_add(names, g_strdup(name));
    g_dir_close(listing);
    g_ptr_array_sort(names, (GCompareFunc)g_strcmp0);
    g_ptr_array_add(names, NULL);
    return (char **)g_ptr_array_free(names, FALSE);
}

static void assert_contains(const char *message, const char *word)
{
    if (!strstr(message, word))
        test_fail("the message lacks \"%s\": %s", word, message);
}

/* A file in memory: the 8-byte little-endian header length, header, data. g_free it. */
static uint8_t *build_file(const char *header, const void *data, size_t data_size, size_t *size)
{
    size_t header_length = strlen(header);
    *size = 8 + header_length + data_size;
    uint8_t *bytes = g_malloc(*size);
    for (int i = 0; i < 8; i++)
        bytes[i] = (uint8_t)((uint64_t)header_length >> (8 * i));
    memcpy(bytes + 8, header, header_length);
    if (data_size)
        memcpy(bytes + 8 + header_length, data, data_size);
    return bytes;
}

static void expect_parse_refused(const char *header, size_t data_floats, const char *word1,
                                 const char *word2)
{
    float *data = g_new0(float, data_floats + 1);
    size_t size;
    uint8_t *bytes = build_file(header, data, data_floats * sizeof(float), &size);
    safetensors_file file;
    peer_error err = { "" };
    bool ok = safetensors_parse(&file, bytes, size, &err);
    g_test_message("%s -> %s", header, err.message);
    if (ok)
        test_fail("accepted: %s", header);
    assert_contains(err.message, word1);
    if (word2)
        assert_contains(err.message, word2);
    g_assert_null(file.buffer);
    g_assert_cmpint(file.n_tensors, ==, 0);
    g_free(bytes);
    g_free(data);
}

/* Every float bit pattern that a careless copy through arithmetic would change. */
static float *awkward_floats(size_t n, uint32_t seed)
{
    static const uint32_t specials[] = {
        0x00000000u, 0x80000000u, 0x00000001u, 0x807fffffu, 0x7f800000u,
        0xff800000u, 0x7fc00001u, 0xffbfffffu, 0x7f7fffffu, 0x3f800000u,
    };
    float *values = g_new(float, n ? n : 1);
    peer_rng rng;
    peer_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) {
        uint32_t bits = i < G_N_ELEMENTS(specials) ? specials[i]
                                                   : (uint32_t)(peer_rng_next(&rng) >> 32);
        memcpy(&values[i], &bits, sizeof bits);
    }
    return values;
}

/* ---- the corpus ------------------------------------------------------------------------------ */

static void test_corpus(void)
{
    const char *root = g_getenv("PEER_FUZZ_CORPUS");
    if (!root) {
        g_test_skip("PEER_FUZZ_CORPUS is not set (meson test sets it to fuzz/corpus)");
        return;
    }
    char *dir = g_build_filename(root, "safetensors", NULL);
    char **names = list_dir(dir);
    int valid = 0, refused = 0;
    for (char **name = names; *name; name++) {
        char *path = g_build_filename(dir, *name, NULL);
        char *contents;
        gsize size;
        g_assert_true(g_file_get_contents(path, &contents, &size, NULL));
        bool expect_valid = g_str_has_prefix(*name, "valid-");

        safetensors_file parsed, read;
        peer_error parse_err = { "" }, read_err = { "" };
        bool parse_ok = safetensors_parse(&parsed, (const uint8_t *)contents, size, &parse_err);
        bool read_ok = safetensors_read(&read, path, &read_err);
        g_test_message("%s: %s", *name, parse_ok ? "accepted" : parse_err.message);
        if (parse_ok != expect_valid)
            test_fail("%s was %s: %s", *name, parse_ok ? "accepted" : "refused",
                      parse_err.message);
        if (read_ok != parse_ok)
            test_fail("%s: safetensors_read and safetensors_parse disagree: %s", *name,
                      read_err.message);
        if (expect_valid) {
            g_assert_cmpint(parsed.n_tensors, ==, read.n_tensors);
            for (int i = 0; i < parsed.n_tensors; i++) {
                const safetensors_tensor *t = &parsed.tensors[i];
                g_assert_true((uintptr_t)t->data % sizeof(float) == 0);
                g_assert_true((const uint8_t *)t->data >= parsed.buffer);
                g_assert_true((const uint8_t *)(t->data + t->n_elements) <=
                              parsed.buffer + parsed.size);
                g_assert_cmpstr(t->name, ==, read.tensors[i].name);
                g_assert_cmpmem(t->data, t->n_elements * sizeof(float), read.tensors[i].data,
                                read.tensors[i].n_elements * sizeof(float));
                g_assert_true(safetensors_find(&parsed, t->name) == t);
            }
            safetensors_free(&parsed);
            safetensors_free(&read);
            valid++;
        } else {
            g_assert_cmpuint(strlen(parse_err.message), >, 0);
            assert_contains(read_err.message, path);
            g_assert_null(parsed.buffer);
            g_assert_null(read.buffer);
            refused++;
        }
        g_free(contents);
        g_free(path);
    }
    g_test_message("%d valid files read, %d bad files refused", valid, refused);
    /* An emptied or misplaced corpus must not pass silently. */
    g_assert_cmpint(valid, >=, 5);
    g_assert_cmpint(refused, >=, 40);
    g_strfreev(names);
    g_free(dir);
}

/* ---- writing and reading back ---------------------------------------------------------------- */

static void test_round_trip(void)
{
    char *dir = make_temp_dir();
    char *path = g_build_filename(dir, "model.safetensors", NULL);
    safetensors_entry entries[] = {
        { "tok_emb", 2, { 256, 7 }, NULL },
        { "blocks.0.ffn.keys", 4, { 3, 2, 5, 3 }, NULL },
        { "scalar", 0, { 0 }, NULL },
        { "empty", 2, { 0, 9 }, NULL },
        { "odd", 1, { 13 }, NULL },
        { "eight.dims", 8, { 1, 2, 1, 2, 1, 3, 1, 1 }, NULL },
    };
    int n = G_N_ELEMENTS(entries);
    size_t counts[G_N_ELEMENTS(entries)];
    for (int i = 0; i < n; i++) {
        counts[i] = 1;
        for (int d = 0; d < entries[i].n_dims; d++)
            counts[i] *= (size_t)entries[i].shape[d];
        entries[i].data = awkward_floats(counts[i], 100 + (uint32_t)i);
    }
    peer_error err = { "" };
    if (!safetensors_write(path, entries, n, NULL, 0, &err))
        test_fail("%s", err.message);

    safetensors_file file;
    if (!safetensors_read(&file, path, &err))
        test_fail("%s", err.message);
    g_assert_cmpint(file.n_tensors, ==, n);
    g_assert_cmpint(file.n_meta, ==, 0);
    size_t data_bytes = 0;
    for (int i = 0; i < n; i++) {
        /* Written in the given order with consecutive offsets, so file order is the same. */
        const safetensors_tensor *t = &file.tensors[i];
        g_assert_cmpstr(t->name, ==, entries[i].name);
        g_assert_cmpint(t->n_dims, ==, entries[i].n_dims);
        for (int d = 0; d < t->n_dims; d++)
            g_assert_cmpint(t->shape[d], ==, entries[i].shape[d]);
        g_assert_cmpuint(t->n_elements, ==, counts[i]);
        g_assert_cmpmem(t->data, counts[i] * sizeof(float), entries[i].data,
                        counts[i] * sizeof(float));
        g_assert_true((uintptr_t)t->data % sizeof(float) == 0);
        data_bytes += counts[i] * sizeof(float);
    }
    g_assert_null(safetensors_find(&file, "missing"));

    /* The layout the reference implementation writes: a header padded with spaces to a multiple
     * of 8 bytes, then the data. */
    uint64_t header_length = 0;
    for (int i = 7; i >= 0; i--)
        header_length = header_length << 8 | file.buffer[i];
    g_assert_cmpuint(header_length % 8, ==, 0);
    g_assert_cmpuint(file.size, ==, 8 + header_length + data_bytes);
    g_assert_cmpint(file.buffer[8], ==, '{');
    g_assert_true(g_str_has_prefix((const char *)file.buffer + 8,
                                   "{\"tok_emb\":{\"dtype\":\"F32\",\"shape\":[256,7],"
                                   "\"data_offsets\":[0,7168]}"));
    safetensors_free(&file);
    g_assert_null(file.buffer);

    /* Rewriting the file's own tensors gives the same bytes. */
    gchar *first;
    gsize first_size;
    g_assert_true(g_file_get_contents(path, &first, &first_size, NULL));
    if (!safetensors_write(path, entries, n, NULL, 0, &err))
        test_fail("%s", err.message);
    gchar *second;
    gsize second_size;
    g_assert_true(g_file_get_contents(path, &second, &second_size, NULL));
    g_assert_cmpmem(first, first_size, second, second_size);
    g_free(first);
    g_free(second);

    for (int i = 0; i < n; i++)
        g_free((float *)entries[i].data);
    g_free(path);
    remove_temp_dir(dir);
    g_free(dir);
}

static void test_metadata_round_trip(void)
{
    char *dir = make_temp_dir();
    char *path = g_build_filename(dir, "meta.safetensors", NULL);
    const char *config = "{\"vocab_size\":256,\"context\":8,\"d_model\":4,\"n_layers\":1,"
                         "\"n_heads\":1,\"layers\":[{\"ffn\":\"dense\",\"d_ff\":8}]}";
    safetensors_meta meta[] = {
        { "format", "peer-workbench" },
        { "format_version", "1" },
        { "config", (char *)config },
        { "empty", "" },
        { "quotes \"and\" \\ slashes", "line\nbreak\ttab \u00e9\u4e2d\U0001F600" },
    };
    float value = 3.5f;
    safetensors_entry entry = { "x", 1, { 1 }, &value };
    peer_error err = { "" };
    if (!safetensors_write(path, &entry, 1, meta, G_N_ELEMENTS(meta), &err))
        test_fail("%s", err.message);
    safetensors_file file;
    if (!safetensors_read(&file, path, &err))
        test_fail("%s", err.message);
    g_assert_cmpint(file.n_meta, ==, G_N_ELEMENTS(meta));
    for (size_t i = 0; i < G_N_ELEMENTS(meta); i++) {
        g_assert_cmpstr(file.meta[i].key, ==, meta[i].key);
        g_assert_cmpstr(safetensors_meta_get(&file, meta[i].key), ==, meta[i].value);
    }
    g_assert_null(safetensors_meta_get(&file, "absent"));
    g_assert_cmpfloat(file.tensors[0].data[0], ==, 3.5f);
    safetensors_free(&file);

    /* A file with no tensors at all. */
    if (!safetensors_write(path, NULL, 0, meta, 1, &err))
        test_fail("%s", err.message);
    if (!safetensors_read(&file, path, &err))
        test_fail("%s", err.message);
    g_assert_cmpint(file.n_tensors, ==, 0);
    g_assert_cmpstr(safetensors_meta_get(&file, "format"), ==, "peer-workbench");
    safetensors_free(&file);

    g_free(path);
    remove_temp_dir(dir);
    g_free(dir);
}

/* ---- failures -------------------------------------------------------------------------------- */

static const float old_values[4] = { 1.0f, 2.0f, 3.0f, 4.0f };

static void write_old_file(const char *path)
{
    safetensors_entry entry = { "old", 1, { 4 }, old_values };
    peer_error err = { "" };
    if (!safetensors_write(path, &entry, 1, NULL, 0, &err))
        test_fail("%s", err.message);
}

static void assert_old_file(const char *path)
{
    safetensors_file file;
    peer_error err = { "" };
    if (!safetensors_read(&file, path, &err))
        test_fail("the old file was damaged: %s", err.message);
    g_assert_cmpint(file.n_tensors, ==, 1);
    g_assert_cmpstr(file.tensors[0].name, ==, "old");
    g_assert_cmpmem(file.tensors[0].data, sizeof old_values, old_values, sizeof old_values);
    safetensors_free(&file);
}

/* Only the expected files remain: no temporary was left behind. */
static void assert_dir_holds(const char *dir, const char *only)
{
    char **names = list_dir(dir);
    g_assert_cmpuint(g_strv_length(names), ==, only ? 1 : 0);
    if (only)
        g_assert_cmpstr(names[0], ==, only);
    g_strfreev(names);
}

static void test_failed_write_keeps_old_file(void)
{
    char *dir = make_temp_dir();
    char *path = g_build_filename(dir, "model.safetensors", NULL);
    write_old_file(path);
    size_t n = 1 << 16;
    float *big = awkward_floats(n, 7);
    safetensors_entry entry = { "new", 1, { (int64_t)n }, big };
    peer_error err = { "" };

    /* A write that runs out of room part way: the file size limit makes write(2) stop short
     * and then fail with EFBIG, as a full disk would with ENOSPC. */
    struct rlimit saved;
    g_assert_cmpint(getrlimit(RLIMIT_FSIZE, &saved), ==, 0);
    struct rlimit small = { 4096, saved.rlim_max };
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &small), ==, 0);
    bool ok = safetensors_write(path, &entry, 1, NULL, 0, &err);
    g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &saved), ==, 0);
    signal(SIGXFSZ, old_handler);
    g_test_message("short write: %s", err.message);
    g_assert_false(ok);
    assert_contains(err.message, path);
    assert_contains(err.message, g_strerror(EFBIG));
    assert_old_file(path);
    assert_dir_holds(dir, "model.safetensors");

    /* The rename fails after the temporary was written in full: a directory is in the way. */
    char *blocked = g_build_filename(dir, "blocked", NULL);
    g_assert_cmpint(g_mkdir(blocked, 0755), ==, 0);
    g_assert_false(safetensors_write(blocked, &entry, 1, NULL, 0, &err));
    g_test_message("directory in the way: %s", err.message);
    assert_contains(err.message, blocked);
    assert_contains(err.message, g_strerror(EISDIR));
    g_assert_cmpint(g_rmdir(blocked), ==, 0);
    assert_dir_holds(dir, "model.safetensors");

    /* A missing folder, and a path through a regular file. */
    char *missing = g_build_filename(dir, "no-such-folder", "model.safetensors", NULL);
    g_assert_false(safetensors_write(missing, &entry, 1, NULL, 0, &err));
    g_test_message("missing folder: %s", err.message);
    assert_contains(err.message, missing);
    assert_contains(err.message, g_strerror(ENOENT));
    char *through_file = g_build_filename(path, "model.safetensors", NULL);
    g_assert_false(safetensors_write(through_file, &entry, 1, NULL, 0, &err));
    assert_contains(err.message, through_file);
    assert_contains(err.message, g_strerror(ENOTDIR));

    /* A folder without write permission; root ignores permissions, so only others can check. */
    if (geteuid() != 0) {
        g_assert_cmpint(g_chmod(dir, 0555), ==, 0);
        g_assert_false(safetensors_write(path, &entry, 1, NULL, 0, &err));
        g_assert_cmpint(g_chmod(dir, 0755), ==, 0);
        g_test_message("read-only folder: %s", err.message);
        assert_contains(err.message, path);
        assert_contains(err.message, g_strerror(EACCES));
    }
    assert_old_file(path);
    assert_dir_holds(dir, "model.safetensors");

    /* Overwriting keeps the old file's permissions. */
    g_assert_cmpint(g_chmod(path, 0640), ==, 0);
    if (!safetensors_write(path, &entry, 1, NULL, 0, &err))
        test_fail("%s", err.message);
    struct stat st;
    g_assert_cmpint(g_stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 07777, ==, 0640);

    g_free(through_file);
    g_free(missing);
    g_free(blocked);
    g_free(big);
    g_free(path);
    remove_temp_dir(dir);
    g_free(dir);
}

static void test_write_refuses_bad_entries(void)
{
    char *dir = make_temp_dir();
    char *path = g_build_filename(dir, "model.safetensors", NULL);
    float x[2] = { 1.0f, 2.0f };
    peer_error err = { "" };
    struct {
        safetensors_entry entries[2];
        int n;
        const char *word;
    } cases[] = {
        { { { "w", 1, { 1 }, x }, { "w", 1, { 1 }, x } }, 2, "twice" },
        { { { "__metadata__", 1, { 1 }, x } }, 1, "__metadata__" },
        { { { "blocks.2.ffn.up", 2, { 2, -1 }, x } }, 1, "blocks.2.ffn.up" },
        { { { "nine", 9, { 1 }, x } }, 1, "nine" },
        { { { "no-data", 1, { 2 }, NULL } }, 1, "no-data" },
        { { { "bad\xff utf-8", 1, { 1 }, x } }, 1, "UTF-8" },
        { { { NULL, 1, { 1 }, x } }, 1, "no name" },
        { { { "huge", 2, { INT64_MAX, INT64_MAX }, x } }, 1, "huge" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_assert_false(safetensors_write(path, cases[i].entries, cases[i].n, NULL, 0, &err));
        g_test_message("%s", err.message);
        assert_contains(err.message, cases[i].word);
        assert_contains(err.message, path);
    }
    safetensors_meta twice[] = { { "k", "1" }, { "k", "2" } };
    g_assert_false(safetensors_write(path, NULL, 0, twice, 2, &err));
    assert_contains(err.message, "twice");
    safetensors_meta no_value[] = { { "k", NULL } };
    g_assert_false(safetensors_write(path, NULL, 0, no_value, 1, &err));
    assert_contains(err.message, "no value");
    assert_dir_holds(dir, NULL);
    g_free(path);
    remove_temp_dir(dir);
    g_free(dir);
}

static void test_read_errors(void)
{
    char *dir = make_temp_dir();
    char *path = g_build_filename(dir, "absent.safetensors", NULL);
    safetensors_file file;
    peer_error err = { "" };
    g_assert_false(safetensors_read(&file, path, &err));
    assert_contains(err.message, path);
    assert_contains(err.message, g_strerror(ENOENT));
    g_assert_false(safetensors_read(&file, dir, &err));
    assert_contains(err.message, dir);
    assert_contains(err.message, "not a regular file");
    g_assert_null(file.buffer);
    g_free(path);
    remove_temp_dir(dir);
    g_free(dir);
}

/* A loader must be able to tell the user which tensor is wrong and how. */
static void test_messages_name_the_tensor(void)
{
    expect_parse_refused("{\"blocks.3.ffn.keys\":{\"dtype\":\"F16\",\"shape\":[2],"
                         "\"data_offsets\":[0,4]}}",
                         1, "blocks.3.ffn.keys", "F16");
    expect_parse_refused("{\"blocks.3.ffn.keys\":{\"dtype\":\"F32\",\"shape\":[3],"
                         "\"data_offsets\":[0,8]}}",
                         2, "blocks.3.ffn.keys", "12 bytes");
    expect_parse_refused("{\"blocks.3.ffn.keys\":{\"dtype\":\"F32\",\"shape\":[2,-1],"
                         "\"data_offsets\":[0,8]}}",
                         2, "blocks.3.ffn.keys", "negative");
    expect_parse_refused("{\"blocks.3.ffn.keys\":{\"dtype\":\"F32\",\"shape\":[4],"
                         "\"data_offsets\":[0,16]}}",
                         2, "blocks.3.ffn.keys", "past the data");
    expect_parse_refused("{\"ln_f.weight\":{\"dtype\":\"F32\",\"shape\":[2],"
                         "\"data_offsets\":[0,8]},"
                         "\"ln_f.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                         3, "ln_f.bias", "overlap");
    expect_parse_refused("{\"ln_f.weight\":{\"dtype\":\"F32\",\"shape\":[1],"
                         "\"data_offsets\":[0,4]},"
                         "\"ln_f.bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                         3, "ln_f.weight' and 'ln_f.bias", "holes");
    expect_parse_refused("{\"tok_emb\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                         "\"tok_emb\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                         2, "tok_emb", "duplicate");
    expect_parse_refused("{\"pos_emb\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],"
                         "\"strides\":[1]}}",
                         1, "pos_emb", "strides");
    expect_parse_refused("{\"__metadata__\":{\"format_version\":1}}", 0, "format_version",
                         "string");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/safetensors/corpus", test_corpus);
    g_test_add_func("/safetensors/round-trip", test_round_trip);
    g_test_add_func("/safetensors/metadata-round-trip", test_metadata_round_trip);
    g_test_add_func("/safetensors/failed-write-keeps-old-file", test_failed_write_keeps_old_file);
    g_test_add_func("/safetensors/write-refuses-bad-entries", test_write_refuses_bad_entries);
    g_test_add_func("/safetensors/read-errors", test_read_errors);
    g_test_add_func("/safetensors/messages-name-the-tensor", test_messages_name_the_tensor);
    return g_test_run();
}
