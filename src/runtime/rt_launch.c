/* Kernel launches and per-kernel profiling. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

size_t rt_round_up(size_t x, size_t m) { return m ? (x + m - 1) / m * m : x; }

size_t rt_local_1d(rt_ctx *ctx, cl_kernel k, size_t cap) {
    size_t kmax = 0;
    clGetKernelWorkGroupInfo(k, ctx->dev.device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kmax, &kmax, NULL);
    size_t wg = CORE_MIN(ctx->dev.info.max_work_group_size, cap);
    if (kmax) wg = CORE_MIN(wg, kmax);
    if (wg >= 8) wg -= wg % 8;
    return wg ? wg : 1;
}

static void profile_add(rt_ctx *ctx, const char *label, double seconds) {
    for (int i = 0; i < ctx->n_profile; i++)
        if (!strcmp(ctx->profile[i].name, label)) {
            ctx->profile[i].launches++;
            ctx->profile[i].seconds += seconds;
            return;
        }
    rt_profile_entry *grown = realloc(ctx->profile, (size_t)(ctx->n_profile + 1) * sizeof *grown);
    if (!grown) return;
    ctx->profile = grown;
    grown[ctx->n_profile].name = strdup(label);
    if (!grown[ctx->n_profile].name) return;
    grown[ctx->n_profile].launches = 1;
    grown[ctx->n_profile].seconds = seconds;
    ctx->n_profile++;
}

attamba_status rt_launch(rt_ctx *ctx, cl_kernel k, const char *label, cl_uint dims,
                         const size_t *global, const size_t *local, int n_args, const rt_arg *args) {
    for (int i = 0; i < n_args; i++) {
        cl_context owner = NULL;
        if (args[i].is_mem && *(const cl_mem *)args[i].value &&
            clGetMemObjectInfo(*(const cl_mem *)args[i].value, CL_MEM_CONTEXT, sizeof owner, &owner, NULL) ==
                CL_SUCCESS &&
            owner != ctx->context)
            return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG,
                           "%s: argument %d is a buffer of another device than %d:%d (%s); copy it over first "
                           "(tensor_transfer)",
                           label, i, ctx->dev.info.platform_index, ctx->dev.info.device_index, ctx->dev.info.name);
        cl_int err = clSetKernelArg(k, (cl_uint)i, args[i].size, args[i].value);
        if (err != CL_SUCCESS)
            return rt_fail(ctx, ATTAMBA_ERR_INTERNAL, "%s: argument %d: %s", label, i, rt_cl_error_name(err));
    }
    size_t g[3];
    for (cl_uint d = 0; d < dims; d++) {
        if (global[d] == 0) return ATTAMBA_OK; /* nothing to do */
        g[d] = local ? rt_round_up(global[d], local[d]) : global[d];
    }
    cl_event ev = NULL;
    cl_int err = ctx->fail_launch && --ctx->fail_launch == 0
                     ? CL_OUT_OF_RESOURCES /* fault injection (tests) */
                     : clEnqueueNDRangeKernel(ctx->queue, k, dims, NULL, g, local, 0, NULL, ctx->profiling ? &ev : NULL);
    ctx->counters.launches++;
    if (err != CL_SUCCESS) {
        char what[160];
        snprintf(what, sizeof what, "launching %s", label);
        attamba_status s = rt_check(ctx, err, what);
        return rt_kernel_failed(ctx, s, what);
    }
    if (ev) {
        cl_ulong t0 = 0, t1 = 0;
        clWaitForEvents(1, &ev);
        clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL);
        clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL);
        clReleaseEvent(ev);
        profile_add(ctx, label, 1e-9 * (double)(t1 - t0));
    }
    return ATTAMBA_OK;
}

attamba_status rt_finish(rt_ctx *ctx) {
    ctx->counters.blocking_reads++;
    return rt_check(ctx, clFinish(ctx->queue), "clFinish");
}

static int by_time(const void *a, const void *b) {
    double x = ((const rt_profile_entry *)a)->seconds, y = ((const rt_profile_entry *)b)->seconds;
    return (x < y) - (x > y);
}

void rt_profile_reset(rt_ctx *ctx) {
    for (int i = 0; i < ctx->n_profile; i++) {
        ctx->profile[i].launches = 0;
        ctx->profile[i].seconds = 0;
    }
}

/* The labels that ran, sorted by total time (malloc'd; NULL when none or out of memory). */
static rt_profile_entry *profile_sorted(const rt_ctx *ctx, int *n) {
    rt_profile_entry *sorted = ctx->n_profile ? malloc((size_t)ctx->n_profile * sizeof *sorted) : NULL;
    *n = 0;
    if (!sorted) return NULL;
    for (int i = 0; i < ctx->n_profile; i++)
        if (ctx->profile[i].launches) sorted[(*n)++] = ctx->profile[i];
    qsort(sorted, (size_t)*n, sizeof *sorted, by_time);
    return sorted;
}

void rt_profile_print_steps(const rt_ctx *ctx, void *file, int64_t steps, double step_seconds) {
    FILE *f = file;
    int n;
    rt_profile_entry *sorted = profile_sorted(ctx, &n);
    fprintf(f, "%-32s %12s %10s %8s\n", "kernel", "launches/step", "ms/step", "of step");
    for (int i = 0; i < n && steps > 0; i++)
        fprintf(f, "%-32s %12.1f %10.2f %7.1f%%\n", sorted[i].name, (double)sorted[i].launches / (double)steps,
                1e3 * sorted[i].seconds / (double)steps, 100.0 * sorted[i].seconds / (double)steps / step_seconds);
    free(sorted);
}

void rt_profile_print(const rt_ctx *ctx, void *file) {
    FILE *f = file;
    if (!ctx->n_profile) {
        fprintf(f, "no kernel profile (set ATTAMBA_PROFILE=1)\n");
        return;
    }
    int n;
    rt_profile_entry *sorted = profile_sorted(ctx, &n);
    fprintf(f, "%-32s %10s %12s %12s\n", "kernel", "launches", "total ms", "mean us");
    for (int i = 0; i < n; i++)
        fprintf(f, "%-32s %10llu %12.3f %12.1f\n", sorted[i].name, (unsigned long long)sorted[i].launches,
                1e3 * sorted[i].seconds, 1e6 * sorted[i].seconds / (double)sorted[i].launches);
    free(sorted);
    const attamba_counters *c = &ctx->counters;
    fprintf(f, "counters: %llu launches, %llu buffers created, %llu uploads, %llu device copies, %llu blocking reads\n",
            (unsigned long long)c->launches, (unsigned long long)c->allocations, (unsigned long long)c->uploads,
            (unsigned long long)c->copies, (unsigned long long)c->blocking_reads);
}

int attamba_context_profile(const attamba_context *ctx, const attamba_profile_entry **entries, int *count) {
    if (entries) *entries = ctx->profile;
    if (count) *count = ctx->n_profile;
    return ctx->profiling;
}

void attamba_context_profile_print(const attamba_context *ctx, FILE *out, int64_t steps, double step_seconds) {
    if (steps > 0) rt_profile_print_steps(ctx, out, steps, step_seconds);
    else rt_profile_print(ctx, out);
}

void attamba_context_profile_reset(attamba_context *ctx) { rt_profile_reset(ctx); }

attamba_status attamba_context_finish(attamba_context *ctx) { return rt_finish(ctx); }

attamba_status rt_kernel_failed(rt_ctx *ctx, attamba_status s, const char *what) {
    if (!ctx->on_kernel_failure || !ctx->on_kernel_failure(ctx, what)) return s;
    return rt_fail(ctx, s, "%s (the tuned kernel parameters of this device are off from now on: the defaults "
                   "are used)", ctx->err);
}
