/* bench_util.h: timing and JSON output shared by the benchmarks. */
#ifndef ATTAMBA_BENCH_UTIL_H
#define ATTAMBA_BENCH_UTIL_H

#include <cJSON.h>
#include <stdio.h>

#include "attamba/attamba.h"

/* How a case's runs went: the median and the fastest (seconds per call) over reps runs. */
typedef struct bench_timing {
    double median, min;
    int reps;
} bench_timing;

/* Runs fn(arg) once to warm up, then repeats until min_seconds have passed (at least min_reps
 * times); returns the median seconds per call, or a negative value if fn failed; *stats (may be
 * NULL) gets median, min and reps. fn must wait for its own work (e.g. end with rt_finish). */
double bench_time(int (*fn)(void *arg), void *arg, int min_reps, double min_seconds, bench_timing *stats);
/* The median of n values (x is left sorted). */
double bench_median(double *x, int n);
/* One run's time as a timing (for cases measured once, e.g. a prefill). */
bench_timing bench_timing_once(double seconds);

/* One measured case in the form every benchmark writes (docs/bench/schema.json, definitions/entry):
 * bench, op, shape, variant, device, platform, reps, ms (median), min_ms, flop and bytes per run (exact
 * counts of what it computes and must move; 0 where none), gflops and gbs at the median. Benchmarks
 * add their own fields beside these. */
cJSON *bench_entry(const attamba_context *ctx, const char *bench, const char *op, const char *shape, const char *variant,
                   const bench_timing *t, double flop, double bytes);
/* The case's natural throughput beside the entry (e.g. 1234 "tokens/s"). */
void bench_entry_rate(cJSON *o, double rate, const char *unit);
/* Adds the counters divided by `per` as the entry's "counters" object (per run). */
void bench_entry_counters(cJSON *o, const attamba_counters *c, double per);
/* Runs fn(arg) once more and adds what that run asked of ctx's device as the entry's counters;
 * nonzero when fn failed (no counters then). */
int bench_entry_count(cJSON *o, attamba_context *ctx, int (*fn)(void *arg), void *arg);
/* max |x - ref| over max |ref| (the absolute error when ref is all zeros): a result against src/ref. */
double bench_max_rel_err(const float *x, const float *ref, size_t n);
/* o[key] when it is a number, else 0. */
double bench_json_number(const cJSON *o, const char *key);
/* Whether name is one of the comma-separated names of list (a NULL list holds every name). */
int bench_listed(const char *list, const char *name);
/* Writes the array as JSON to path ("-" = stdout) via a temporary file and rename; 0 on success. */
int bench_write_json(cJSON *array, const char *path);

/* What one call of fn(arg) asks of the device: the context's counters after minus before. */
attamba_counters bench_count(attamba_context *ctx, int (*fn)(void *arg), void *arg, int *failed);
/* The device's copy bandwidth (GB/s, bytes read + written) from tensor_copy of an M MiB tensor: the
 * yardstick of memory-bound work, measured in the run that uses it. Negative on failure. A kernel-level
 * measurement: bench/kernels/bench_peak.c. */
double bench_copy_gbs(attamba_context *ctx, int mib, double seconds);

/* What the bandwidth-bound benchmarks share: the device, the JSON array, the time per case, and the
 * copy bandwidth measured in the same run (the yardstick). */
typedef struct bench_env {
    attamba_context *ctx;
    const char *bench; /* the benchmark's name in its entries */
    cJSON *out;
    double seconds, copy_gbs;
} bench_env;

/* Times fn(arg) (at least 3 runs, env->seconds), computes *gbs for `bytes` moved and *ratio to
 * env->copy_gbs (is_copy: this case is the yardstick and sets it), and adds a JSON record (op,
 * shape, variant unless NULL, ms, gbs, copy_gbs, ratio_to_copy, and check_name = check when
 * check >= 0). Returns the seconds per run, negative when fn failed. */
double bench_measure(bench_env *env, int (*fn)(void *arg), void *arg, const char *op, const char *shape,
                     const char *variant, double bytes, int is_copy, double check, const char *check_name,
                     double *gbs, double *ratio);

#endif
