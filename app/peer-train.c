/* peer-train: trains a byte-level model from a run file (or a built-in run) on a text, with
 * progress on the terminal, periodic evaluations, a JSON-lines run log and checkpoints. */
#include "train-cli.h"

int main(int argc, char **argv)
{
    const train_cli_defaults defaults = {
        .program = "peer-train",
        .summary = "Trains a byte-level transformer whose feed-forward blocks may be PEER layers\n"
                   "(a pool of single-neuron experts chosen by product-key retrieval), PKM\n"
                   "memories, mixtures of experts or dense layers, as its run file says.",
        .sample_bytes = 0,
    };
    return train_cli_main(argc, argv, &defaults);
}
