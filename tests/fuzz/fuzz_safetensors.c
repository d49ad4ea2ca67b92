/* libFuzzer target: a safetensors file -> st_open (header, offsets, dtypes), then every tensor read
 * as f32. The bytes go through a temporary file, as the loader maps files. Built by scripts/fuzz.sh. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/attamba-fuzz-%ld.safetensors", (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, n, f);
    fclose(f);
    st_file st;
    char err[600];
    if (st_open(path, &st, err, sizeof err) == ATTAMBA_OK) {
        for (int i = 0; i < st.n_tensors; i++) {
            int64_t numel = st_numel(&st.tensors[i]);
            float *out = numel > 0 && numel < (1 << 24) ? malloc((size_t)numel * sizeof *out) : NULL;
            if (out) st_read_f32(&st, &st.tensors[i], out);
            free(out);
        }
        st_close(&st);
    }
    remove(path);
    return 0;
}
