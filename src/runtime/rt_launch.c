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

/* The profile entry of label (created with no launches yet); -1 when out of memory. */
static int profile_entry(rt_ctx *ctx, const char *label) {
    for (int i = 0; i < ctx->n_profile; i++)
        if (!strcmp(ctx->profile[i].name, label)) return i;
    size_t n = (size_t)ctx->n_profile + 1;
    rt_profile_entry *grown = realloc(ctx->profile, n * sizeof *grown);
    if (!grown) return -1;
    ctx->profile = grown;
    double *wait = realloc(ctx->profile_wait, n * sizeof *wait);
    if (!wait) return -1;
    ctx->profile_wait = wait;
    grown[ctx->n_profile].name = strdup(label);
    if (!grown[ctx->n_profile].name) return -1;
    grown[ctx->n_profile].launches = 0;
    grown[ctx->n_profile].seconds = 0;
    wait[ctx->n_profile] = 0;
    return ctx->n_profile++;
}

void rt_profile_drain(rt_ctx *ctx, int keep) {
    int n = ctx->n_pending - keep;
    for (int i = 0; i < n; i++) {
        struct rt_pending_launch *p = &ctx->pending[i];
        cl_ulong t0 = 0, t1 = 0;
        if (clWaitForEvents(1, &p->ev) == CL_SUCCESS &&
            clGetEventProfilingInfo(p->ev, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL) == CL_SUCCESS &&
            clGetEventProfilingInfo(p->ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL) == CL_SUCCESS &&
            t1 >= t0) {
            ctx->profile[p->entry].launches++;
            ctx->profile[p->entry].seconds += 1e-9 * (double)(t1 - t0);
            /* in-order queue: the device had nothing of ours running from the last kernel's end to this
             * one's start (the host's work, transfers, the launch itself) */
            if (ctx->prof_last_end && t0 > ctx->prof_last_end) {
                ctx->profile_wait[p->entry] += 1e-9 * (double)(t0 - ctx->prof_last_end);
                ctx->prof_gaps++;
            }
            ctx->prof_last_end = t1;
        }
        clReleaseEvent(p->ev);
    }
    if (n <= 0) return;
    memmove(ctx->pending, ctx->pending + n, (size_t)keep * sizeof *ctx->pending);
    ctx->n_pending = keep;
}

double rt_profile_idle(const rt_ctx *ctx) {
    double idle = 0;
    for (int i = 0; i < ctx->n_profile; i++) idle += ctx->profile_wait[i];
    return idle;
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
    if (ev) { /* read later: waiting here would serialise the host with every kernel */
        int entry = profile_entry(ctx, label);
        if (entry < 0) {
            clReleaseEvent(ev);
            return ATTAMBA_OK;
        }
        if (ctx->n_pending == RT_PROFILE_PENDING) rt_profile_drain(ctx, RT_PROFILE_PENDING / 2);
        ctx->pending[ctx->n_pending++] = (struct rt_pending_launch){ev, entry};
    }
    return ATTAMBA_OK;
}

attamba_status rt_finish(rt_ctx *ctx) {
    ctx->counters.blocking_reads++;
    attamba_status s = rt_check(ctx, clFinish(ctx->queue), "clFinish");
    rt_profile_drain(ctx, 0);
    return s;
}

void rt_profile_reset(rt_ctx *ctx) {
    rt_profile_drain(ctx, 0); /* launches before the reset count for nothing after it */
    ctx->prof_last_end = 0;
    ctx->prof_gaps = 0;
    for (int i = 0; i < ctx->n_profile; i++) {
        ctx->profile[i].launches = 0;
        ctx->profile[i].seconds = 0;
        ctx->profile_wait[i] = 0;
    }
}

/* A label's sums and the device's idle time right before its launches. */
typedef struct {
    rt_profile_entry e;
    double wait;
} profile_row;

static int by_time(const void *a, const void *b) {
    double x = ((const profile_row *)a)->e.seconds, y = ((const profile_row *)b)->e.seconds;
    return (x < y) - (x > y);
}

/* The labels that ran, sorted by total time (malloc'd; NULL when none or out of memory). */
static profile_row *profile_sorted(const rt_ctx *ctx, int *n) {
    profile_row *sorted = ctx->n_profile ? malloc((size_t)ctx->n_profile * sizeof *sorted) : NULL;
    *n = 0;
    if (!sorted) return NULL;
    for (int i = 0; i < ctx->n_profile; i++)
        if (ctx->profile[i].launches) sorted[(*n)++] = (profile_row){ctx->profile[i], ctx->profile_wait[i]};
    qsort(sorted, (size_t)*n, sizeof *sorted, by_time);
    return sorted;
}

#define IDLE_LABEL "(device idle between kernels)"

void rt_profile_print_steps(rt_ctx *ctx, void *file, int64_t steps, double step_seconds) {
    FILE *f = file;
    int n;
    rt_profile_drain(ctx, 0);
    if (steps <= 0) return;
    profile_row *sorted = profile_sorted(ctx, &n);
    double per = 1e3 / (double)steps, share = 100.0 / (double)steps / step_seconds;
    fprintf(f, "%-32s %12s %10s %8s %14s\n", "kernel", "launches/step", "ms/step", "of step", "idle before ms");
    for (int i = 0; i < n; i++)
        fprintf(f, "%-32s %12.1f %10.2f %7.1f%% %14.3f\n", sorted[i].e.name, (double)sorted[i].e.launches / (double)steps,
                per * sorted[i].e.seconds, share * sorted[i].e.seconds, per * sorted[i].wait);
    double idle = rt_profile_idle(ctx);
    if (ctx->prof_gaps)
        fprintf(f, "%-32s %12.1f %10.2f %7.1f%%\n", IDLE_LABEL, (double)ctx->prof_gaps / (double)steps, per * idle,
                share * idle);
    free(sorted);
}

void rt_profile_print(rt_ctx *ctx, void *file) {
    FILE *f = file;
    rt_profile_drain(ctx, 0);
    if (!ctx->n_profile) {
        fprintf(f, "no kernel profile (set ATTAMBA_PROFILE=1)\n");
        return;
    }
    int n;
    profile_row *sorted = profile_sorted(ctx, &n);
    fprintf(f, "%-32s %10s %12s %12s %14s\n", "kernel", "launches", "total ms", "mean us", "idle before us");
    for (int i = 0; i < n; i++) {
        double k = (double)sorted[i].e.launches;
        fprintf(f, "%-32s %10llu %12.3f %12.1f %14.1f\n", sorted[i].e.name, (unsigned long long)sorted[i].e.launches,
                1e3 * sorted[i].e.seconds, 1e6 * sorted[i].e.seconds / k, 1e6 * sorted[i].wait / k);
    }
    double idle = rt_profile_idle(ctx);
    if (ctx->prof_gaps)
        fprintf(f, "%-32s %10llu %12.3f %12.1f\n", IDLE_LABEL, (unsigned long long)ctx->prof_gaps, 1e3 * idle,
                1e6 * idle / (double)ctx->prof_gaps);
    free(sorted);
    const attamba_counters *c = &ctx->counters;
    fprintf(f, "counters: %llu launches, %llu buffers created, %llu uploads, %llu device copies, %llu blocking reads\n",
            (unsigned long long)c->launches, (unsigned long long)c->allocations, (unsigned long long)c->uploads,
            (unsigned long long)c->copies, (unsigned long long)c->blocking_reads);
}

/* The public readers take a const context: reading the launches in flight into the sums first changes
 * nothing else of it (the context itself is never a const object). */
int attamba_context_profile(const attamba_context *ctx, const attamba_profile_entry **entries, int *count) {
    rt_profile_drain((rt_ctx *)ctx, 0);
    if (entries) *entries = ctx->profile;
    if (count) *count = ctx->n_profile;
    return ctx->profiling;
}

void attamba_context_profile_print(const attamba_context *ctx, FILE *out, int64_t steps, double step_seconds) {
    if (steps > 0) rt_profile_print_steps((rt_ctx *)ctx, out, steps, step_seconds);
    else rt_profile_print((rt_ctx *)ctx, out);
}

void attamba_context_profile_reset(attamba_context *ctx) { rt_profile_reset(ctx); }

attamba_status attamba_context_finish(attamba_context *ctx) { return rt_finish(ctx); }

attamba_status rt_kernel_failed(rt_ctx *ctx, attamba_status s, const char *what) {
    if (!ctx->on_kernel_failure || !ctx->on_kernel_failure(ctx, what)) return s;
    return rt_fail(ctx, s, "%s (the tuned kernel parameters of this device are off from now on: the defaults "
                   "are used)", ctx->err);
}
