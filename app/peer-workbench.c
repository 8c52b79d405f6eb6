/* peer-workbench: until the workbench window exists, the program trains the default run (the
 * built-in peer-small model) on the built-in Jane Austen corpus, through peer-train's own code,
 * and shows a text sample from the model at every evaluation. */
#include "train-cli.h"

int main(int argc, char **argv)
{
    const train_cli_defaults defaults = {
        .program = "peer-workbench",
        .summary = "Trains the default PEER model (4 layers, one of them a PEER layer of 128²\n"
                   "experts) on the six novels of Jane Austen built into the program, showing\n"
                   "its progress, its validation loss and expert usage, and a sample of its\n"
                   "text at each evaluation. Takes every option of peer-train.",
        .sample_bytes = 240,
    };
    return train_cli_main(argc, argv, &defaults);
}
