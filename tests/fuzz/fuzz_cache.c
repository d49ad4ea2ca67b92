/* libFuzzer target: a kernel-cache entry file -> rt_cache_load (header, size, key, payload hash).
 * Loading an entry needs no device: a context with only a cache directory stands in. Built by
 * scripts/fuzz.sh. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/rt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    static char dir[64];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/attamba-fuzz-cache-%ld", (long)getpid());
        mkdir(dir, 0700);
    }
    rt_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.cache_dir = dir;
    rt_key key = {0x0123456789abcdefULL, 0xfedcba9876543210ULL};
    char path[128];
    snprintf(path, sizeof path, "%s/%016llx%016llx.bin", dir, (unsigned long long)key.hi, (unsigned long long)key.lo);
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, n, f);
    fclose(f);
    size_t size = 0;
    free(rt_cache_load(&ctx, key, &size));
    remove(path);
    return 0;
}
