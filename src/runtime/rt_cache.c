/* On-disk cache of program binaries.
 * File <dir>/<key>.bin: a 40-byte header (magic, key, payload size, payload hash seeded with the
 * key, so a payload belongs to its key), then the driver's binary. The key hashes the sources, the full options and the device's identity (name,
 * vendor, driver and platform version), so a driver update never loads a stale binary. Entries are
 * written to a temporary name and renamed; a corrupt entry is deleted and rebuilt, never fatal. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "rt.h"

#define CACHE_MAGIC "ATBBIN02"
#define CACHE_FORMAT 1

typedef struct {
    char magic[8];
    uint64_t key_lo, key_hi;
    uint64_t size;
    uint64_t hash;
} cache_header;

rt_key rt_program_key(const rt_ctx *ctx, const char *const *sources, int n_sources, const char *options) {
    XXH3_state_t *st = XXH3_createState();
    rt_key k = {0, 0};
    if (!st) return k;
    XXH3_128bits_reset(st);
    const int format = CACHE_FORMAT;
    XXH3_128bits_update(st, &format, sizeof format);
    const char *parts[] = {options, ctx->dev.info.name, ctx->dev.info.vendor,
                           ctx->dev.info.driver_version, ctx->dev.info.platform_name};
    for (size_t i = 0; i < CORE_LEN(parts); i++) XXH3_128bits_update(st, parts[i], strlen(parts[i]) + 1);
    char pv[128] = "";
    clGetPlatformInfo(ctx->dev.platform, CL_PLATFORM_VERSION, sizeof pv - 1, pv, NULL);
    XXH3_128bits_update(st, pv, strlen(pv) + 1);
    for (int i = 0; i < n_sources; i++) XXH3_128bits_update(st, sources[i], strlen(sources[i]) + 1);
    XXH128_hash_t h = XXH3_128bits_digest(st);
    XXH3_freeState(st);
    k.lo = h.low64;
    k.hi = h.high64;
    return k;
}

static uint64_t payload_hash(rt_key key, const unsigned char *bin, size_t size) {
    return XXH3_64bits_withSeed(bin, size, key.lo ^ (key.hi * 0x9e3779b97f4a7c15ULL));
}

static char *entry_path(const rt_ctx *ctx, rt_key key, const char *suffix) {
    return core_strdup_printf("%s/%016llx%016llx.bin%s", ctx->cache_dir, (unsigned long long)key.hi,
                              (unsigned long long)key.lo, suffix);
}

unsigned char *rt_cache_load(rt_ctx *ctx, rt_key key, size_t *size) {
    if (!ctx->cache_dir) return NULL;
    char *path = entry_path(ctx, key, "");
    if (!path) return NULL;
    FILE *f = core_fopen_regular(path);
    if (!f) {
        free(path);
        return NULL;
    }
    cache_header h;
    unsigned char *bin = NULL;
    struct stat st;
    /* the payload size must be what the file holds: a header cannot make us allocate more */
    int ok = fstat(fileno(f), &st) == 0 && fread(&h, sizeof h, 1, f) == 1 && !memcmp(h.magic, CACHE_MAGIC, 8) &&
             h.key_lo == key.lo && h.key_hi == key.hi && h.size > 0 &&
             (uint64_t)st.st_size >= sizeof h && h.size == (uint64_t)st.st_size - sizeof h;
    if (ok) {
        bin = malloc((size_t)h.size);
        ok = bin && fread(bin, 1, (size_t)h.size, f) == h.size && fgetc(f) == EOF &&
             payload_hash(key, bin, (size_t)h.size) == h.hash;
    }
    fclose(f);
    if (!ok) {
        core_log(CORE_LOG_WARN, "removing corrupt program cache entry %s", path);
        remove(path);
        ctx->cache.rejected++;
        free(bin);
        bin = NULL;
    } else {
        *size = (size_t)h.size;
    }
    free(path);
    return bin;
}

void rt_cache_store(rt_ctx *ctx, rt_key key, const unsigned char *bin, size_t size) {
    if (!ctx->cache_dir) return;
    if (core_mkdirs(ctx->cache_dir) != 0) {
        core_log(CORE_LOG_WARN, "cannot create program cache dir %s; caching disabled", ctx->cache_dir);
        free(ctx->cache_dir);
        ctx->cache_dir = NULL;
        return;
    }
    char *path = entry_path(ctx, key, "");
    /* the pid and the context keep concurrent processes, and contexts on two threads of one process
     * (two identical devices store the same key), from writing the same temporary file */
    char *tmp = path ? core_strdup_printf("%s.%ld.%p.tmp", path, (long)getpid(), (void *)ctx) : NULL;
    FILE *f = tmp ? fopen(tmp, "wb") : NULL;
    cache_header h;
    memcpy(h.magic, CACHE_MAGIC, 8);
    h.key_lo = key.lo;
    h.key_hi = key.hi;
    h.size = size;
    h.hash = payload_hash(key, bin, size);
    int ok = f && fwrite(&h, sizeof h, 1, f) == 1 && fwrite(bin, 1, size, f) == size;
    if (f) ok = (fclose(f) == 0) && ok;
    if (ok) ok = rename(tmp, path) == 0;
    if (!ok) {
        core_log(CORE_LOG_WARN, "cannot write program cache entry %s", path ? path : "?");
        if (tmp) remove(tmp);
    }
    free(tmp);
    free(path);
}

void rt_cache_remove(rt_ctx *ctx, rt_key key) {
    if (!ctx->cache_dir) return;
    char *path = entry_path(ctx, key, "");
    if (path && remove(path) == 0) {
        core_log(CORE_LOG_WARN, "removed stale program cache entry %s", path);
        ctx->cache.rejected++;
    }
    free(path);
}
