/* bench_util.h: timing and JSON output shared by the benchmarks. */
#ifndef ATTAMBA_BENCH_UTIL_H
#define ATTAMBA_BENCH_UTIL_H

#include <cJSON.h>
#include <stdio.h>

#include "runtime/rt.h"

/* Runs fn(arg) once to warm up, then repeats until min_seconds have passed (at least min_reps
 * times); returns the median seconds per call, or a negative value if fn failed. fn must wait
 * for its own work (e.g. end with rt_finish). */
double bench_time(int (*fn)(void *arg), void *arg, int min_reps, double min_seconds);

/* A JSON object with the fields every measurement carries (device, op). */
cJSON *bench_record(const rt_ctx *ctx, const char *op);
/* Writes the array as JSON to path ("-" = stdout) via a temporary file and rename; 0 on success. */
int bench_write_json(cJSON *array, const char *path);

#endif
