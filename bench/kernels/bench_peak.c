/* attamba bench peak: each device's ceilings, measured with the dedicated kernels of cl/peak.cl: fp32
 * FMA throughput, device-memory copy, host<->device transfers and the launch latency, beside the
 * nominal peak the device states. They are the denominators of the suite's roofline fractions. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_peak.h"
#include "bench_util.h"
#include "cli.h"
#include "runtime/rt.h"
#include "tensor/tensor.h"

enum { FMA_CHAINS = 8, FMA_WAVES = 8, MAX_COUNT = 1 << 24 };

/* One timed kernel case: `launches` launches of k, then rt_finish. fma: out (a float per work-item),
 * n = iterations; copy: out = dst, in = src, n = float4s; the empty kernel: neither. */
typedef struct {
    rt_ctx *ctx;
    cl_kernel k;
    const char *label;
    size_t global, local;
    cl_mem out, in;
    int n, launches;
} peak_launch;

static int run_launch(void *p) {
    peak_launch *r = p;
    rt_arg fma[] = {RT_MEM(r->out), RT_I32(r->n), RT_F32(0.999f), RT_F32(0.001f)};
    rt_arg copy[] = {RT_MEM(r->out), RT_MEM(r->in), RT_I32(r->n)};
    int n_args = r->in ? 3 : r->out ? 4 : 0;
    for (int i = 0; i < r->launches; i++)
        if (rt_launch(r->ctx, r->k, r->label, 1, &r->global, &r->local, n_args, r->in ? copy : fma)) return 1;
    return rt_finish(r->ctx) != ATTAMBA_OK;
}

/* Scales *count (r's iterations or launches) so that one run takes about `target` seconds: a warm-up
 * run first (PoCL compiles a kernel for its work-group size at the first launch), then x8 steps until
 * a run is long enough to extrapolate from. */
static int calibrate(peak_launch *r, int *count, double target) {
    if (run_launch(r)) return 1;
    for (;;) {
        double t0 = core_now();
        if (run_launch(r)) return 1;
        double t = core_now() - t0;
        if (t >= target / 4 || *count >= MAX_COUNT / 8) {
            *count = (int)CORE_MIN(CORE_MAX(*count * target / t, 1.0), (double)MAX_COUNT);
            return 0;
        }
        *count *= 8;
    }
}

/* A blocking host->device write or device->host read of the whole buffer. */
typedef struct {
    rt_ctx *ctx;
    cl_mem buf;
    size_t bytes;
    void *host;
    int write;
} peak_transfer;

static int run_transfer(void *p) {
    peak_transfer *r = p;
    return (r->write ? rt_buffer_write(r->ctx, r->buf, 0, r->bytes, r->host)
                     : rt_buffer_read(r->ctx, r->buf, 0, r->bytes, r->host)) != ATTAMBA_OK;
}

/* clEnqueueCopyBuffer of the whole buffer: the driver's own copy, often faster than a kernel's on a
 * CPU (non-temporal stores); the copy ceiling is the better of the two. */
typedef struct {
    rt_ctx *ctx;
    cl_mem src, dst;
    size_t bytes;
} peak_buffer_copy;

static int run_buffer_copy(void *p) {
    peak_buffer_copy *r = p;
    return rt_buffer_copy(r->ctx, r->src, 0, r->dst, 0, r->bytes) || rt_finish(r->ctx);
}

/* Times fn(arg) for `seconds` (at least 3 runs) and adds its entry to `entries` (may be NULL); the
 * median seconds per run, negative when fn failed. */
static double timed(rt_ctx *ctx, double seconds, cJSON *entries, int (*fn)(void *), void *arg, const char *op,
                    const char *shape, const char *variant, double flop, double bytes) {
    bench_timing tm;
    if (bench_time(fn, arg, 3, seconds, &tm) < 0) return -1;
    if (entries) cJSON_AddItemToArray(entries, bench_entry(ctx, "peak", op, shape, variant, &tm, flop, bytes));
    return tm.median;
}

/* What the device states: compute units x clock x native float width x 2 (one FMA a cycle per lane). */
static void nominal(const rt_ctx *ctx, bench_peak *p) {
    cl_uint mhz = 0, width = 0, cu = ctx->dev.info.compute_units;
    if (clGetDeviceInfo(ctx->dev.device, CL_DEVICE_MAX_CLOCK_FREQUENCY, sizeof mhz, &mhz, NULL)) mhz = 0;
    if (clGetDeviceInfo(ctx->dev.device, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT, sizeof width, &width, NULL)) width = 0;
    p->clock_mhz = mhz;
    p->nominal_gflops = cu && mhz && width ? 2e-3 * cu * mhz * width : -1;
    if (p->nominal_gflops < 0)
        snprintf(p->nominal_note, sizeof p->nominal_note,
                 "unknown: the device states %u compute units, %u MHz, native float width %u", cu, mhz, width);
    else
        snprintf(p->nominal_note, sizeof p->nominal_note,
                 "%u CU x %u MHz x %u lanes x 2: one FMA unit per CU assumed, which OpenCL cannot tell (CPU cores "
                 "often have 2, GPU CUs many lanes); turbo may exceed the clock", cu, mhz, width);
}

/* The transfer and copy size: 256 MiB, at most a quarter of the largest allocation and an eighth of
 * the memory; whole float4s. */
static size_t buffer_bytes(const rt_ctx *ctx) {
    uint64_t b = CORE_MIN((uint64_t)256 << 20, ctx->dev.info.max_alloc_bytes / 4);
    b = CORE_MIN(b, ctx->dev.info.global_mem_bytes / 8);
    return (size_t)CORE_MAX(b / 16 * 16, 16);
}

/* Every ceiling of ctx's device into *p, each case's entry into `entries` (may be NULL). */
static int measure(rt_ctx *ctx, double seconds, bench_peak *p, cJSON *entries) {
    memset(p, 0, sizeof *p);
    nominal(ctx, p);
    double target = CORE_MIN(0.02, seconds / 3), t; /* seconds per run */
    size_t bytes = buffer_bytes(ctx), items = 0;
    void *host = malloc(bytes);
    cl_mem a = NULL, b = NULL, res = NULL;
    char shape[96], variant[64];
    int rc = 1;
    snprintf(shape, sizeof shape, "[%zu]", bytes / 4);
    if (!host) {
        rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "bench peak: %zu bytes of host memory", bytes);
        goto done;
    }
    memset(host, 1, bytes); /* touched: the write does not time page faults */
    if (rt_buffer_create(ctx, bytes, &a) || rt_buffer_create(ctx, bytes, &b)) goto done;

    /* host <-> device: pageable host memory, as the engine's uploads and reads use */
    peak_transfer tr = {ctx, a, bytes, host, 1};
    if ((t = timed(ctx, seconds, entries, run_transfer, &tr, "write", shape, "clEnqueueWriteBuffer", 0, bytes)) < 0)
        goto done;
    p->write_gbs = bytes / t * 1e-9;
    tr.write = 0;
    if ((t = timed(ctx, seconds, entries, run_transfer, &tr, "read", shape, "clEnqueueReadBuffer", 0, bytes)) < 0)
        goto done;
    p->read_gbs = bytes / t * 1e-9;

    /* device-memory copy a -> b, several launches a run where one is short (a fast GPU) */
    peak_launch cp = {ctx, NULL, "peak_copy", 0, 0, b, a, (int)(bytes / 16), 1};
    if (rt_kernel(ctx, "peak", "", "peak_copy", &cp.k)) goto done;
    cp.local = rt_local_1d(ctx, cp.k, 256);
    cp.global = rt_round_up(bytes / 16, cp.local);
    if (calibrate(&cp, &cp.launches, target)) goto done;
    snprintf(variant, sizeof variant, "float4, %d per run", cp.launches);
    double moved = 2.0 * (double)bytes * cp.launches;
    if ((t = timed(ctx, seconds, entries, run_launch, &cp, "copy", shape, variant, 0, moved)) < 0) goto done;
    p->copy_gbs = moved / t * 1e-9;
    peak_buffer_copy bc = {ctx, a, b, bytes};
    if ((t = timed(ctx, seconds, entries, run_buffer_copy, &bc, "copy", shape, "clEnqueueCopyBuffer", 0,
                   2.0 * (double)bytes)) < 0)
        goto done;
    p->copy_gbs = CORE_MAX(p->copy_gbs, 2.0 * (double)bytes / t * 1e-9);

    /* FMA: FMA_WAVES work-groups per compute unit; each vector width, the best counts */
    static const int widths[] = {4, 8, 16};
    for (int w = 0; w < 3; w++) {
        char name[32];
        snprintf(name, sizeof name, "peak_fma%d", widths[w]);
        peak_launch f = {ctx, NULL, name, 0, 0, NULL, NULL, 256, 1};
        if (rt_kernel(ctx, "peak", "", name, &f.k)) goto done;
        f.local = rt_local_1d(ctx, f.k, 256);
        f.global = (size_t)CORE_MAX(ctx->dev.info.compute_units, 1) * f.local * FMA_WAVES;
        if (f.global != items) { /* the result buffer, one float per work-item of this grid */
            if (res) rt_buffer_release(ctx, res, items * sizeof(float));
            res = NULL;
            if (rt_buffer_create(ctx, f.global * sizeof(float), &res)) goto done;
            items = f.global;
        }
        f.out = res;
        if (calibrate(&f, &f.n, target)) goto done;
        double flop = 2.0 * widths[w] * FMA_CHAINS * (double)f.n * (double)f.global;
        snprintf(shape, sizeof shape, "[%zu items x %d chains x %d iterations]", f.global, FMA_CHAINS, f.n);
        snprintf(variant, sizeof variant, "float%d", widths[w]);
        if ((t = timed(ctx, seconds, entries, run_launch, &f, "fma", shape, variant, flop, 0)) < 0) goto done;
        p->fma_gflops = CORE_MAX(p->fma_gflops, flop / t * 1e-9);
    }

    /* launch latency: one empty work-item, enqueue to completion */
    peak_launch e = {ctx, NULL, "peak_empty", 1, 1, NULL, NULL, 0, 1};
    if (rt_kernel(ctx, "peak", "", "peak_empty", &e.k)) goto done;
    if ((t = timed(ctx, seconds, entries, run_launch, &e, "launch", "[1]", "empty kernel", 0, 0)) < 0) goto done;
    p->launch_us = t * 1e6;
    rc = 0;
done:
    if (res) rt_buffer_release(ctx, res, items * sizeof(float));
    if (b) rt_buffer_release(ctx, b, bytes);
    if (a) rt_buffer_release(ctx, a, bytes);
    free(host);
    return rc;
}

int bench_peak_measure(rt_ctx *ctx, double seconds, bench_peak *out) { return measure(ctx, seconds, out, NULL); }

cJSON *bench_peak_json(const bench_peak *p) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "fma_gflops", p->fma_gflops);
    cJSON_AddNumberToObject(o, "copy_gbs", p->copy_gbs);
    cJSON_AddNumberToObject(o, "write_gbs", p->write_gbs);
    cJSON_AddNumberToObject(o, "read_gbs", p->read_gbs);
    cJSON_AddNumberToObject(o, "launch_us", p->launch_us);
    if (p->nominal_gflops < 0) cJSON_AddNullToObject(o, "nominal_gflops");
    else cJSON_AddNumberToObject(o, "nominal_gflops", p->nominal_gflops);
    cJSON_AddStringToObject(o, "nominal_note", p->nominal_note);
    return o;
}

static const char *string(const cJSON *o, const char *key) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(o, key));
    return s ? s : "";
}

/* The device's rows (its entries from index `first` of out), then the summary and its JSON object. */
static void print_device(const bench_peak *p, const cJSON *out, int first) {
    const char *best = "";
    double best_gflops = 0;
    printf("  %-7s %-22s %-44s %6s %10s %12s\n", "op", "variant", "shape", "reps", "ms", "rate");
    for (int i = first; i < cJSON_GetArraySize(out); i++) {
        const cJSON *o = cJSON_GetArrayItem(out, i);
        const char *op = string(o, "op");
        int fma = !strcmp(op, "fma"), launch = !strcmp(op, "launch");
        double rate = bench_json_number(o, fma ? "gflops" : launch ? "ms" : "gbs") * (launch ? 1e3 : 1);
        if (fma && rate > best_gflops) best_gflops = rate, best = string(o, "variant");
        printf("  %-7s %-22s %-44s %6.0f %10.3f %12.2f %s\n", op, string(o, "variant"), string(o, "shape"),
               bench_json_number(o, "reps"), bench_json_number(o, "ms"), rate, fma ? "GFLOP/s" : launch ? "us" : "GB/s");
    }
    printf("  fma %.1f GFLOP/s (%s)", p->fma_gflops, best);
    if (p->nominal_gflops > 0)
        printf(", nominal %.1f GFLOP/s, measured/nominal %.2f", p->nominal_gflops, p->fma_gflops / p->nominal_gflops);
    printf("\n  copy %.2f GB/s, write %.2f GB/s, read %.2f GB/s, launch %.1f us\n  nominal: %s\n", p->copy_gbs,
           p->write_gbs, p->read_gbs, p->launch_us, p->nominal_note);
    cJSON *j = bench_peak_json(p);
    char *text = cJSON_PrintUnformatted(j);
    printf("  peak %s\n", text ? text : "?");
    free(text);
    cJSON_Delete(j);
}

int bench_peak_main(int argc, char **argv) {
    static const struct option opts[] = {{"device", required_argument, 0, 'd'}, {"devices", required_argument, 0, 'D'},
                                         {"seconds", required_argument, 0, 's'}, {"json", required_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    const char *device = NULL, *devices = NULL, *json = NULL;
    double seconds = 0.5;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:D:s:j:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': device = optarg; break;
        case 'D': devices = optarg; break;
        case 's': if (!cli_number("bench peak", "seconds", optarg, 0.01, 3600, 0, &seconds)) return 2; break;
        case 'j': json = optarg; break;
        case 'h':
            printf("usage: attamba bench peak [--device P:D | --devices all|gpu|cpu|P:D,...] [--seconds 0.5]\n"
                   "                          [--json FILE|-]\n\n"
                   "Each device's ceilings with dedicated kernels (cl/peak.cl): fp32 FMA throughput (float4,\n"
                   "float8 and float16 chains; the best counts), device-memory copy (bytes read + written; the\n"
                   "better of a float4 kernel and clEnqueueCopyBuffer),\n"
                   "host->device and device->host transfers, and the latency of an empty kernel (enqueue to\n"
                   "finish, median); each case about --seconds. Beside them the nominal peak the device states\n"
                   "(compute units x clock x native float width x 2) and the ratio. --json: one entry per case.\n");
            return 0;
        default: return 2;
        }
    }
    rt_ctx *ctxs[ATTAMBA_MAX_DEVICES];
    int n_ctx = cli_open_devices(devices, device, ctxs);
    if (!n_ctx) return 1;
    cJSON *out = cJSON_CreateArray();
    int rc = 0;
    for (int d = 0; d < n_ctx; d++) {
        rt_ctx *ctx = ctxs[d];
        const attamba_device_info *info = &ctx->dev.info;
        bench_peak p;
        int first = cJSON_GetArraySize(out);
        printf("%d:%d %s (%s): %u compute units\n", info->platform_index, info->device_index, info->name,
               info->platform_name, info->compute_units);
        fflush(stdout);
        if (measure(ctx, seconds, &p, out)) {
            rc = cli_error("bench peak", "%d:%d %s: %s", info->platform_index, info->device_index, info->name,
                           ctx->err);
            continue;
        }
        print_device(&p, out, first);
        fflush(stdout);
    }
    if (!rc && json && bench_write_json(out, json)) rc = cli_error("bench peak", "cannot write %s", json);
    cJSON_Delete(out);
    cli_close_devices(ctxs, n_ctx);
    return rc;
}

/* ---- the copy bandwidth (bench_util.h): the yardstick of the bandwidth-bound benchmarks ---- */

typedef struct {
    tensor src, dst;
} copy_run;

static int run_copy(void *p) {
    copy_run *r = p;
    return tensor_copy(&r->dst, &r->src) || rt_finish(r->src.buf->ctx);
}

double bench_copy_gbs(rt_ctx *ctx, int mib, double seconds) {
    copy_run r = {{0}, {0}};
    int64_t n = (int64_t)mib << 18;
    double t = -1;
    if (!tensor_alloc_f32(ctx, &r.src, 1, &n) && !tensor_alloc_f32(ctx, &r.dst, 1, &n) && !tensor_fill(&r.src, 1.0))
        t = bench_time(run_copy, &r, 3, seconds, NULL);
    tensor_free(&r.src);
    tensor_free(&r.dst);
    return t > 0 ? 8.0 * (double)n / t * 1e-9 : -1;
}
