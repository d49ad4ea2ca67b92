/* bench_peak.h: a device's ceilings measured with dedicated kernels (cl/peak.cl), the denominators of
 * the roofline fractions of the benchmark suite. */
#ifndef ATTAMBA_BENCH_PEAK_H
#define ATTAMBA_BENCH_PEAK_H

#include <cJSON.h>

#include "attamba/attamba.h"

typedef struct bench_peak {
    double fma_gflops;          /* measured fp32 FMA throughput (the best of float4, float8, float16) */
    double copy_gbs;            /* device-memory copy, bytes read + written */
    double write_gbs, read_gbs; /* host->device (clEnqueueWriteBuffer), device->host */
    double launch_us;           /* enqueue + finish of an empty kernel, median */
    double nominal_gflops;      /* compute units x clock (CL_DEVICE_MAX_CLOCK_FREQUENCY) x native float vector
                                   width x 2; < 0 when the device does not state them */
    unsigned clock_mhz;
    char nominal_note[200];     /* how nominal was computed, or why it is unknown, and the caveat (FMA units
                                   per core not queryable) */
} bench_peak;

/* Measures every ceiling of ctx's device, each case for about `seconds` (at least 3 runs); 0 on success,
 * else nonzero with ctx->err set. */
int bench_peak_measure(attamba_context *ctx, double seconds, bench_peak *out);
/* The "peak" object of docs/bench/schema.json (definitions/peak): fma_gflops, copy_gbs, write_gbs,
 * read_gbs, launch_us, nominal_gflops (null when unknown), nominal_note. The caller owns it. */
cJSON *bench_peak_json(const bench_peak *p);
/* attamba bench peak [--device P:D | --devices LIST] [--seconds S] [--json FILE|-] */
int bench_peak_main(int argc, char **argv);

#endif
