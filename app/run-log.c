#include "run-log.h"

#include <errno.h>
#include <glib.h>
#include <jansson.h>
#include <string.h>

#include "eval-report.h"
#include "json-output.h"

#define LOG_DUMP_FLAGS (JSON_COMPACT | JSON_OUTPUT_FLAGS)

bool run_log_open(run_log *log, const char *path, bool append, peer_error *err)
{
    log->path = g_strdup(path);
    log->file = fopen(path, append ? "a" : "w");
    if (!log->file) {
        int saved = errno;
        g_clear_pointer(&log->path, g_free);
        return peer_error_set(err, "cannot write the run log %s: %s", path, strerror(saved));
    }
    return true;
}

void run_log_close(run_log *log)
{
    if (log->file)
        fclose(log->file);
    log->file = NULL;
    g_clear_pointer(&log->path, g_free);
}

/* Writes object (taking it) as one line. */
static bool write_line(run_log *log, json_t *object, peer_error *err)
{
    char *text = object ? json_dumps(object, LOG_DUMP_FLAGS) : NULL;
    json_decref(object);
    if (!text)
        return peer_error_set(err, "out of memory writing the run log %s", log->path);
    bool ok = fprintf(log->file, "%s\n", text) >= 0 && fflush(log->file) == 0;
    int saved = errno;
    free(text);
    if (!ok)
        return peer_error_set(err, "cannot write the run log %s: %s", log->path,
                              strerror(saved));
    return true;
}

bool run_log_write_step(run_log *log, const trainer *tr, double tokens_per_second, double time,
                        peer_error *err)
{
    json_t *object = json_pack("{s:s, s:I, s:o, s:o, s:o, s:I, s:o, s:o, s:o}", "type", "step",
                               "step", (json_int_t)tr->step, "loss",
                               json_output_number(tr->last_loss), "lr",
                               json_output_float(tr->last_lr), "grad_norm",
                               json_output_number(tr->last_grad_norm), "tokens",
                               (json_int_t)tr->tokens, "flops",
                               json_output_number(tr->flops), "tokens_per_second",
                               json_output_number(tokens_per_second), "time",
                               json_output_number(time));
    return write_line(log, object, err);
}

bool run_log_write_eval(run_log *log, long step, const model_config *cfg,
                        const eval_result *result, peer_error *err)
{
    json_t *report = eval_report_to_json(cfg, result);
    json_t *object = report ? json_pack("{s:s, s:I}", "type", "eval", "step", (json_int_t)step)
                            : NULL;
    if (object && json_object_update(object, report) != 0)
        g_clear_pointer(&object, json_decref);
    json_decref(report);
    return write_line(log, object, err);
}
