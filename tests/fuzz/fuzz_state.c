/* libFuzzer target: a checkpoint's trainer.json text -> checkpoint_parse_state (every number
 * range-checked before it is cast). Built by scripts/fuzz.sh. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "train/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char *text = malloc(n + 1);
    if (!text) return 0;
    memcpy(text, data, n);
    text[n] = 0;
    train_hparams h;
    train_progress p;
    char err[300];
    (void)checkpoint_parse_state(text, &h, &p, err, sizeof err);
    free(text);
    return 0;
}
