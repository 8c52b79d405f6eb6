/* The training program: peer-train's options, its loop with progress, evaluations, run log and
 * checkpoints; the defaults say which program runs it and whether it samples text at each
 * evaluation. */
#pragma once

typedef struct {
    const char *program;
    const char *summary;   /* --help's description */
    int sample_bytes;      /* default of --sample: bytes generated at each evaluation, 0 for none */
} train_cli_defaults;

/* The whole program: returns its exit status (0, 1 for a failure, 2 for a usage error). */
int train_cli_main(int argc, char **argv, const train_cli_defaults *defaults);
