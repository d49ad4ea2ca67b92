/* api_programs.c: program bundles (attamba_context_save_programs) and the program cache counters of
 * the public API. A bundle is every program a context built, as device binaries in one directory:
 * DIR/<program>.bin, or DIR/<program>@<hash of its options>.bin for a variant with options (the names
 * rt_program_get looks for under $ATTAMBA_PROGRAM_DIR), and DIR/bundle.json listing them with the
 * device and driver they were built for. */
#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/rt.h"

/* bundle.json: the schema, the library, the device and driver, and per program its name, options and
 * file; NULL when out of memory. */
static cJSON *manifest_begin(const rt_ctx *ctx, cJSON **list) {
    cJSON *o = cJSON_CreateObject();
    const attamba_device_info *d = &ctx->dev.info;
    *list = cJSON_CreateArray();
    if (!o || !*list) {
        cJSON_Delete(o);
        cJSON_Delete(*list);
        return NULL;
    }
    cJSON_AddStringToObject(o, "schema", "attamba-bundle");
    cJSON_AddNumberToObject(o, "version", 1);
    cJSON_AddStringToObject(o, "library", attamba_version());
    cJSON_AddStringToObject(o, "device", d->name);
    cJSON_AddStringToObject(o, "platform", d->platform_name);
    cJSON_AddStringToObject(o, "driver", d->driver_version);
    cJSON_AddItemToObject(o, "programs", *list);
    return o;
}

attamba_status attamba_context_save_programs(attamba_context *ctx, const char *dir, int *n_programs) {
    if (n_programs) *n_programs = 0;
    if (!ctx) return ATTAMBA_ERR_INVALID_ARG;
    if (!dir || !*dir) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_context_save_programs: no directory");
    if (core_mkdirs(dir)) return rt_fail(ctx, ATTAMBA_ERR_IO, "cannot create the bundle directory %s", dir);
    cJSON *list, *o = manifest_begin(ctx, &list);
    if (!o) return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    attamba_status s = ATTAMBA_OK;
    for (int i = 0; i < ctx->n_programs && !s; i++) {
        rt_program *p = &ctx->programs[i];
        char *path = rt_bundle_file(dir, p->name, p->options);
        cJSON *e = cJSON_CreateObject();
        s = path && e ? rt_program_save_binary(ctx, p, path)
                      : rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
        if (!s) {
            cJSON_AddStringToObject(e, "program", p->name);
            cJSON_AddStringToObject(e, "options", p->options);
            cJSON_AddStringToObject(e, "file", strrchr(path, '/') + 1);
            cJSON_AddItemToArray(list, e);
        } else {
            cJSON_Delete(e);
        }
        free(path);
    }
    /* the manifest last, through a temporary name: a reader never sees one that lists a missing file */
    char *text = s ? NULL : cJSON_Print(o), *manifest = s ? NULL : core_strdup_printf("%s/bundle.json", dir);
    if (!s && (!text || !manifest)) s = rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    if (!s && core_write_file_atomic(manifest, text)) s = rt_fail(ctx, ATTAMBA_ERR_IO, "cannot write %s", manifest);
    if (!s && n_programs) *n_programs = ctx->n_programs;
    free(text);
    free(manifest);
    cJSON_Delete(o);
    return s;
}

void attamba_context_cache_stats(const attamba_context *ctx, attamba_cache_stats *out) {
    if (!out) return;
    *out = (attamba_cache_stats){0, 0, 0};
    if (ctx) *out = (attamba_cache_stats){ctx->cache.misses, ctx->cache.hits, ctx->cache.prebuilt};
}
