/* bench_util.c: timing and JSON output shared by the benchmarks (public API only). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "cli.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_time(int (*fn)(void *arg), void *arg, int min_reps, double min_seconds, bench_timing *stats) {
    if (fn(arg)) return -1;
    enum { MAX_REPS = 1000 };
    double times[MAX_REPS], start = cli_now();
    int n = 0;
    while (n < MAX_REPS && (n < min_reps || cli_now() - start < min_seconds)) {
        double t0 = cli_now();
        if (fn(arg)) return -1;
        times[n++] = cli_now() - t0;
    }
    qsort(times, (size_t)n, sizeof times[0], cmp_double);
    if (stats) *stats = (bench_timing){times[n / 2], times[0], n};
    return times[n / 2];
}

double bench_median(double *x, int n) {
    qsort(x, (size_t)n, sizeof x[0], cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

bench_timing bench_timing_once(double seconds) { return (bench_timing){seconds, seconds, 1}; }

attamba_counters bench_count(attamba_context *ctx, int (*fn)(void *arg), void *arg, int *failed) {
    attamba_counters a, b;
    attamba_context_counters(ctx, &a);
    *failed = fn(arg) != 0;
    attamba_context_counters(ctx, &b);
    return (attamba_counters){b.launches - a.launches, b.allocations - a.allocations, b.uploads - a.uploads,
                              b.copies - a.copies, b.blocking_reads - a.blocking_reads};
}

void bench_entry_counters(cJSON *o, const attamba_counters *c, double per) {
    cJSON *k = cJSON_AddObjectToObject(o, "counters");
    cJSON_AddNumberToObject(k, "launches", (double)c->launches / per);
    cJSON_AddNumberToObject(k, "allocations", (double)c->allocations / per);
    cJSON_AddNumberToObject(k, "uploads", (double)c->uploads / per);
    cJSON_AddNumberToObject(k, "copies", (double)c->copies / per);
    cJSON_AddNumberToObject(k, "blocking_reads", (double)c->blocking_reads / per);
}

int bench_entry_count(cJSON *o, attamba_context *ctx, int (*fn)(void *arg), void *arg) {
    int failed;
    attamba_counters c = bench_count(ctx, fn, arg, &failed);
    if (!failed) bench_entry_counters(o, &c, 1);
    return failed;
}

cJSON *bench_entry(const attamba_context *ctx, const char *bench, const char *op, const char *shape, const char *variant,
                   const bench_timing *t, double flop, double bytes) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "bench", bench);
    cJSON_AddStringToObject(o, "op", op);
    cJSON_AddStringToObject(o, "shape", shape);
    cJSON_AddStringToObject(o, "variant", variant ? variant : "");
    const attamba_device_info *d = attamba_context_device(ctx);
    cJSON_AddStringToObject(o, "device", d->name);
    cJSON_AddStringToObject(o, "platform", d->platform_name);
    cJSON_AddNumberToObject(o, "reps", t->reps);
    cJSON_AddNumberToObject(o, "ms", 1e3 * t->median);
    cJSON_AddNumberToObject(o, "min_ms", 1e3 * t->min);
    cJSON_AddNumberToObject(o, "flop", flop);
    cJSON_AddNumberToObject(o, "bytes", bytes);
    cJSON_AddNumberToObject(o, "gflops", flop / t->median * 1e-9);
    cJSON_AddNumberToObject(o, "gbs", bytes / t->median * 1e-9);
    return o;
}

void bench_entry_rate(cJSON *o, double rate, const char *unit) {
    cJSON_AddNumberToObject(o, "rate", rate);
    cJSON_AddStringToObject(o, "rate_unit", unit);
}

double bench_max_rel_err(const float *x, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)x[i] - ref[i]));
        den = fmax(den, fabs((double)ref[i]));
    }
    return den > 0 ? num / den : num;
}

double bench_json_number(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

int bench_listed(const char *list, const char *name) {
    if (!list) return 1;
    size_t n = strlen(name);
    for (const char *p = list; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (!strncmp(p, name, n) && (p[n] == ',' || p[n] == 0)) return 1;
    return 0;
}

int bench_write_json(cJSON *array, const char *path) {
    char *text = cJSON_Print(array);
    if (!text) return -1;
    int ok;
    if (!strcmp(path, "-")) {
        ok = printf("%s\n", text) > 0;
    } else {
        ok = cli_write_file("bench", path, text, strlen(text)) == 0;
    }
    free(text);
    return ok ? 0 : -1;
}

double bench_measure(bench_env *env, int (*fn)(void *arg), void *arg, const char *op, const char *shape,
                     const char *variant, double bytes, int is_copy, double check, const char *check_name,
                     double *gbs, double *ratio) {
    bench_timing tm;
    double t = bench_time(fn, arg, 3, env->seconds, &tm);
    if (t < 0) return t;
    int failed;
    attamba_counters cnt = bench_count(env->ctx, fn, arg, &failed);
    if (failed) return -1;
    *gbs = bytes / t * 1e-9;
    if (is_copy) env->copy_gbs = *gbs;
    *ratio = env->copy_gbs > 0 ? *gbs / env->copy_gbs : 0;
    cJSON *o = bench_entry(env->ctx, env->bench, op, shape, variant, &tm, 0, bytes);
    cJSON_AddNumberToObject(o, "copy_gbs", env->copy_gbs);
    if (!is_copy) cJSON_AddNumberToObject(o, "ratio_to_copy", *ratio);
    if (check >= 0) cJSON_AddNumberToObject(o, check_name, check);
    bench_entry_counters(o, &cnt, 1);
    cJSON_AddItemToArray(env->out, o);
    return t;
}
