/* Context lifetime, error messages and the public context API. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

attamba_status rt_fail(rt_ctx *ctx, attamba_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *msg = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (msg) {
        va_start(ap, fmt);
        vsnprintf(msg, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    if (!ctx) { /* no context to keep the message (a tokenizer loaded alone): the log has it */
        core_log(CORE_LOG_WARN, "%s", msg ? msg : "?");
        free(msg);
        return s;
    }
    if (msg) {
        free(ctx->err);
        ctx->err = msg;
    }
    core_log(CORE_LOG_DEBUG, "%s", ctx->err ? ctx->err : "?");
    return s;
}

attamba_status rt_fail_from(rt_ctx *to, attamba_status s, const rt_ctx *from) {
    if (s == ATTAMBA_OK || from == to) return s;
    const attamba_device_info *d = &from->dev.info;
    return rt_fail(to, s, "device %d:%d (%s): %s", d->platform_index, d->device_index, d->name, from->err);
}

attamba_status rt_check(rt_ctx *ctx, cl_int err, const char *what) {
    if (err == CL_SUCCESS) return ATTAMBA_OK;
    switch (err) {
    case CL_MEM_OBJECT_ALLOCATION_FAILURE:
    case CL_OUT_OF_RESOURCES:
    case CL_OUT_OF_HOST_MEMORY:
    case CL_INVALID_BUFFER_SIZE:
        return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "%s: %s (device out of memory)", what,
                       rt_cl_error_name(err));
    default:
        return rt_fail(ctx, ATTAMBA_ERR_OPENCL, "%s: %s (%d)", what, rt_cl_error_name(err), (int)err);
    }
}

/* $ATTAMBA_CACHE_DIR ("0"/"off" disables), else $XDG_CACHE_HOME/attamba, else ~/.cache/attamba. */
static char *cache_dir_from_env(void) {
    const char *e = getenv("ATTAMBA_CACHE_DIR");
    if (e && *e) {
        if (!strcmp(e, "0") || !strcmp(e, "off")) return NULL;
        return strdup(e);
    }
    if ((e = getenv("XDG_CACHE_HOME")) && *e) return core_strdup_printf("%s/attamba", e);
    if ((e = getenv("HOME")) && *e) return core_strdup_printf("%s/.cache/attamba", e);
    return NULL;
}

/* Opens a context on one enumerated device. */
static attamba_status context_open(const rt_device *dev, rt_ctx **out, char *errbuf, size_t errbuf_size) {
    *out = NULL;
    rt_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    ctx->dev = *dev;
    ctx->err = strdup("");
    const char *prof = getenv("ATTAMBA_PROFILE");
    ctx->profiling = prof && *prof && strcmp(prof, "0") != 0;

    cl_int err;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)ctx->dev.platform, 0};
    ctx->context = clCreateContext(props, 1, &ctx->dev.device, NULL, NULL, &err);
    if (err == CL_SUCCESS)
        ctx->queue = clCreateCommandQueue(ctx->context, ctx->dev.device,
                                          ctx->profiling ? CL_QUEUE_PROFILING_ENABLE : 0, &err);
    if (err != CL_SUCCESS) {
        core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_OPENCL, "cannot open device %s: %s",
                    ctx->dev.info.name, rt_cl_error_name(err));
        attamba_context_destroy(ctx);
        return ATTAMBA_ERR_OPENCL;
    }
    ctx->device_options = core_strdup_printf("-cl-std=CL1.2 -DATB_HAS_FP16=%d -DATB_HAS_FP64=%d",
                                             ctx->dev.info.has_fp16, ctx->dev.info.has_fp64);
    ctx->cache_dir = cache_dir_from_env();
    const char *pd = getenv("ATTAMBA_PROGRAM_DIR");
    ctx->program_dir = pd && *pd ? strdup(pd) : NULL;
    if (!ctx->err || !ctx->device_options) {
        attamba_context_destroy(ctx);
        return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    core_log(CORE_LOG_INFO, "device %d:%d %s (%s)", ctx->dev.info.platform_index,
             ctx->dev.info.device_index, ctx->dev.info.name, ctx->dev.info.platform_name);
    *out = ctx;
    return ATTAMBA_OK;
}

attamba_status attamba_context_create(const char *device, attamba_context **out, char *errbuf,
                                      size_t errbuf_size) {
    *out = NULL;
    if (!device || !*device) device = getenv("ATTAMBA_DEVICE");
    rt_device *devs;
    int n, pick;
    attamba_status s = rt_devices_enumerate(&devs, &n, errbuf, errbuf_size);
    if (s) return s;
    s = rt_device_select(devs, n, device, &pick, errbuf, errbuf_size);
    if (!s) s = context_open(&devs[pick], out, errbuf, errbuf_size);
    free(devs);
    return s;
}

attamba_status attamba_contexts_create(const char *devices, attamba_context **out, int max, int *count,
                                       char *errbuf, size_t errbuf_size) {
    *count = 0;
    if (!devices || !*devices) devices = getenv("ATTAMBA_DEVICES");
    if (!devices || !*devices) {
        if (max < 1) return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_INVALID_ARG, "no room for a device");
        attamba_status s = attamba_context_create(NULL, &out[0], errbuf, errbuf_size);
        if (!s) *count = 1;
        return s;
    }
    rt_device *devs;
    int n, picks[ATTAMBA_MAX_DEVICES], k = 0;
    attamba_status s = rt_devices_enumerate(&devs, &n, errbuf, errbuf_size);
    if (s) return s;
    s = rt_device_select_set(devs, n, devices, picks, CORE_MIN(max, ATTAMBA_MAX_DEVICES), &k, errbuf, errbuf_size);
    for (int i = 0; i < k && !s; i++) {
        s = context_open(&devs[picks[i]], &out[i], errbuf, errbuf_size);
        if (!s) *count = i + 1;
    }
    free(devs);
    if (s) {
        for (int i = 0; i < *count; i++) attamba_context_destroy(out[i]);
        *count = 0;
    }
    return s;
}

void attamba_context_destroy(attamba_context *ctx) {
    if (!ctx) return;
    if (ctx->queue) clFinish(ctx->queue);
    rt_profile_drain(ctx, 0); /* releases the events of the profiled launches in flight */
    if (ctx->release_outside) ctx->release_outside();
    for (int i = 0; i < ctx->n_programs; i++) {
        rt_program *p = &ctx->programs[i];
        for (int k = 0; k < p->n_kernels; k++) {
            clReleaseKernel(p->kernels[k].kernel);
            free(p->kernels[k].name);
        }
        free(p->kernels);
        if (p->program) clReleaseProgram(p->program);
        free(p->name);
        free(p->options);
        free(p->cached_from);
    }
    free(ctx->programs);
    rt_pool_destroy(ctx);
    for (int i = 0; i < ctx->n_profile; i++) free((char *)ctx->profile[i].name);
    free(ctx->profile);
    free(ctx->profile_wait);
    if (ctx->queue) clReleaseCommandQueue(ctx->queue);
    if (ctx->context) clReleaseContext(ctx->context);
    free(ctx->err);
    free(ctx->device_options);
    free(ctx->cache_dir);
    free(ctx->program_dir);
    free(ctx->tuning);
    free(ctx);
}

const char *attamba_context_last_error(const attamba_context *ctx) {
    return ctx && ctx->err ? ctx->err : "";
}

const attamba_device_info *attamba_context_device(const attamba_context *ctx) { return &ctx->dev.info; }

void attamba_context_memory(const attamba_context *ctx, uint64_t *current, uint64_t *peak) {
    if (current) *current = ctx->mem_current;
    if (peak) *peak = ctx->mem_peak;
}
