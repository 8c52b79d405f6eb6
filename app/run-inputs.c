#include "run-inputs.h"

#include <stdlib.h>
#include <string.h>

#include "cli-common.h"
#include "peer-workbench-resources.h"

#define RESOURCE_ROOT "/org/peerworkbench/Workbench"
#define RUNS_RESOURCE RESOURCE_ROOT "/runs/"
#define CORPUS_RESOURCE RESOURCE_ROOT "/corpus/austen.txt"
#define RUN_SUFFIX ".json"

static GBytes *lookup_resource(const char *path, GError **error)
{
    return g_resource_lookup_data(peer_workbench_get_resource(), path,
                                  G_RESOURCE_LOOKUP_FLAGS_NONE, error);
}

bool run_inputs_has_preset(const char *name)
{
    if (!name || !*name || strchr(name, '/'))
        return false;
    g_autofree char *path = g_strconcat(RUNS_RESOURCE, name, RUN_SUFFIX, NULL);
    return g_resource_get_info(peer_workbench_get_resource(), path, G_RESOURCE_LOOKUP_FLAGS_NONE,
                               NULL, NULL, NULL);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char *run_inputs_list_presets(void)
{
    g_auto(GStrv) children = g_resource_enumerate_children(
        peer_workbench_get_resource(), RUNS_RESOURCE, G_RESOURCE_LOOKUP_FLAGS_NONE, NULL);
    if (!children)
        return g_strdup("");
    guint count = g_strv_length(children);
    qsort(children, count, sizeof *children, compare_names);
    GString *names = g_string_new(NULL);
    for (guint i = 0; i < count; i++) {
        if (!g_str_has_suffix(children[i], RUN_SUFFIX))
            continue;
        if (names->len)
            g_string_append(names, ", ");
        g_string_append_len(names, children[i], (gssize)(strlen(children[i]) - strlen(RUN_SUFFIX)));
    }
    return g_string_free(names, FALSE);
}

bool run_inputs_load_config(const char *path, const char *preset, model_config *cfg,
                            train_settings *settings, peer_error *err)
{
    g_autoptr(GBytes) bytes = NULL;
    g_autofree char *name = NULL;
    if (path) {
        if (!cli_read_file(path, &bytes, err))
            return false;
        name = g_strdup(path);
    } else {
        if (!preset)
            preset = RUN_INPUTS_DEFAULT_PRESET;
        g_autoptr(GError) error = NULL;
        g_autofree char *resource = g_strconcat(RUNS_RESOURCE, preset, RUN_SUFFIX, NULL);
        bytes = lookup_resource(resource, &error);
        if (!bytes)
            return peer_error_set(err, "the built-in run “%s” is missing: %s", preset,
                                  error->message);
        name = g_strdup_printf("the built-in run “%s”", preset);
    }
    /* The parser wants a NUL-terminated string; the file may hold a NUL of its own, which the
     * parser then reports as the end of the text. */
    gsize size = 0;
    const char *data = g_bytes_get_data(bytes, &size);
    g_autofree char *json = g_strndup(data ? data : "", size);
    peer_error inner = { 0 };
    if (!run_config_from_json(cfg, settings, json, &inner))
        return peer_error_set(err, "%s: %s", name, inner.message);
    return true;
}

bool run_inputs_load_text(const char *path, GBytes **text, char **name, peer_error *err)
{
    if (path) {
        if (!cli_read_file(path, text, err))
            return false;
        *name = g_strdup(path);
        return true;
    }
    g_autoptr(GError) error = NULL;
    *text = lookup_resource(CORPUS_RESOURCE, &error);
    if (!*text)
        return peer_error_set(err, "the built-in corpus is missing: %s", error->message);
    *name = g_strdup(RUN_INPUTS_DEFAULT_TEXT_NAME);
    return true;
}
