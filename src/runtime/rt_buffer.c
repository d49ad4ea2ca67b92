/* Device buffers: creation with memory accounting, reads, writes and copies, each counted
 * (attamba_counters), and the scratch pool that lets repeated calls create none. */
#include <stdio.h>
#include <stdlib.h>

#include "rt.h"

void attamba_context_counters(const attamba_context *ctx, attamba_counters *out) { *out = ctx->counters; }

static attamba_status create(rt_ctx *ctx, size_t bytes, cl_mem *out) {
    const attamba_device_info *di = &ctx->dev.info;
    if (ctx->fail_allocation && --ctx->fail_allocation == 0)
        return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "device out of memory: injected failure of a %zu-byte allocation",
                       bytes);
    uint64_t limit = ctx->mem_limit ? ctx->mem_limit : di->global_mem_bytes;
    if (di->max_alloc_bytes && bytes > di->max_alloc_bytes)
        return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY,
                       "device out of memory: a tensor of %zu bytes exceeds %s's largest allocation "
                       "(%llu bytes)", bytes, di->name, (unsigned long long)di->max_alloc_bytes);
    if (limit && ctx->mem_current + ctx->mem_pool_idle + bytes > limit)
        return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY,
                       "device out of memory: %zu more bytes with %llu in use exceeds %llu available on %s",
                       bytes, (unsigned long long)ctx->mem_current, (unsigned long long)limit, di->name);
    cl_int err;
    *out = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS) {
        char what[96];
        snprintf(what, sizeof what, "allocating %zu bytes on the device", bytes);
        return rt_check(ctx, err, what);
    }
    ctx->counters.allocations++;
    ctx->mem_current += bytes;
    if (ctx->mem_current > ctx->mem_peak) ctx->mem_peak = ctx->mem_current;
    return ATTAMBA_OK;
}

void rt_pool_trim(rt_ctx *ctx) {
    int kept = 0;
    for (int i = 0; i < ctx->n_pool; i++) {
        if (ctx->pool[i].busy) {
            ctx->pool[kept++] = ctx->pool[i];
            continue;
        }
        clReleaseMemObject(ctx->pool[i].mem);
        ctx->mem_pool_idle -= ctx->pool[i].bytes;
    }
    ctx->n_pool = kept;
}

attamba_status rt_buffer_create(rt_ctx *ctx, size_t bytes, cl_mem *out) {
    attamba_status s = create(ctx, bytes, out);
    if (s == ATTAMBA_OK || s != ATTAMBA_ERR_OUT_OF_MEMORY || !ctx->n_pool) return s;
    rt_pool_trim(ctx); /* idle scratch gives way to a buffer someone keeps */
    return create(ctx, bytes, out);
}

void rt_buffer_release(rt_ctx *ctx, cl_mem mem, size_t bytes) {
    clReleaseMemObject(mem);
    ctx->mem_current -= bytes;
}

attamba_status rt_buffer_write(rt_ctx *ctx, cl_mem mem, size_t offset, size_t bytes, const void *host) {
    ctx->counters.uploads++;
    return rt_check(ctx, clEnqueueWriteBuffer(ctx->queue, mem, CL_TRUE, offset, bytes, host, 0, NULL, NULL),
                    "writing to the device");
}

attamba_status rt_buffer_read(rt_ctx *ctx, cl_mem mem, size_t offset, size_t bytes, void *host) {
    ctx->counters.blocking_reads++;
    attamba_status s = rt_check(ctx, clEnqueueReadBuffer(ctx->queue, mem, CL_TRUE, offset, bytes, host, 0, NULL, NULL),
                                "reading from the device");
    rt_profile_drain(ctx, 0); /* the queue is done up to here: reading the profiled launches waits for nothing */
    return s;
}

attamba_status rt_buffer_copy(rt_ctx *ctx, cl_mem src, size_t src_offset, cl_mem dst, size_t dst_offset,
                              size_t bytes) {
    ctx->counters.copies++;
    return rt_check(ctx, clEnqueueCopyBuffer(ctx->queue, src, dst, src_offset, dst_offset, bytes, 0, NULL, NULL),
                    "copying on the device");
}

/* Sizes are rounded up to an eighth of their power of two, so that nearby sizes share buffers. */
static size_t size_class(size_t bytes) {
    size_t p = 256;
    while (p < bytes) p <<= 1;
    size_t step = p >= 2048 ? p / 8 : 256;
    return rt_round_up(bytes, step);
}

attamba_status rt_pool_acquire(rt_ctx *ctx, size_t bytes, cl_mem *mem, size_t *capacity) {
    int best = -1;
    for (int i = 0; i < ctx->n_pool; i++)
        if (!ctx->pool[i].busy && ctx->pool[i].bytes >= bytes && (best < 0 || ctx->pool[i].bytes < ctx->pool[best].bytes))
            best = i;
    if (best >= 0) {
        ctx->mem_pool_idle -= ctx->pool[best].bytes;
        ctx->mem_current += ctx->pool[best].bytes;
        if (ctx->mem_current > ctx->mem_peak) ctx->mem_peak = ctx->mem_current;
    } else {
        rt_pooled *grown = realloc(ctx->pool, (size_t)(ctx->n_pool + 1) * sizeof *grown);
        if (!grown) return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
        ctx->pool = grown;
        size_t cap = size_class(bytes);
        cl_mem m;
        RT_TRY(rt_buffer_create(ctx, cap, &m));
        best = ctx->n_pool++;
        ctx->pool[best] = (rt_pooled){m, cap, 0};
    }
    ctx->pool[best].busy = 1;
    *mem = ctx->pool[best].mem;
    *capacity = ctx->pool[best].bytes;
    return ATTAMBA_OK;
}

void rt_pool_release(rt_ctx *ctx, cl_mem mem) {
    for (int i = 0; i < ctx->n_pool; i++)
        if (ctx->pool[i].mem == mem && ctx->pool[i].busy) {
            ctx->pool[i].busy = 0;
            ctx->mem_current -= ctx->pool[i].bytes;
            ctx->mem_pool_idle += ctx->pool[i].bytes;
        }
}

void rt_pool_destroy(rt_ctx *ctx) {
    rt_pool_trim(ctx);
    free(ctx->pool);
    ctx->pool = NULL;
    ctx->n_pool = 0;
}
