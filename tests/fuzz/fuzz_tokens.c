/* libFuzzer target: a training data file (text, an ATBTOK01 token file or an ATBTSK01 task file) -> data_open, then
 * windows at its start, middle and end, as the trainer reads them. Built by scripts/fuzz.sh. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "train/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/attamba-fuzz-%ld.tok", (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, n, f);
    fclose(f);
    dataset d;
    char err[600];
    if (data_open(path, &d, err, sizeof err) == ATTAMBA_OK) {
        enum { T = 8 };
        int32_t tok[T], tgt[T];
        if (d.n > T) {
            int64_t starts[3] = {0, (d.n - T - 1) / 2, d.n - T - 1};
            for (int i = 0; i < 3; i++) data_window(&d, starts[i], T, 256, tok, tgt);
        }
        (void)data_train_end(&d, 0.05);
        data_close(&d);
    }
    remove(path);
    return 0;
}
