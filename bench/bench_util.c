#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "tensor/tensor.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_time(int (*fn)(void *arg), void *arg, int min_reps, double min_seconds) {
    if (fn(arg)) return -1;
    enum { MAX_REPS = 1000 };
    double times[MAX_REPS], start = core_now();
    int n = 0;
    while (n < MAX_REPS && (n < min_reps || core_now() - start < min_seconds)) {
        double t0 = core_now();
        if (fn(arg)) return -1;
        times[n++] = core_now() - t0;
    }
    qsort(times, (size_t)n, sizeof times[0], cmp_double);
    return times[n / 2];
}

attamba_counters bench_count(rt_ctx *ctx, int (*fn)(void *arg), void *arg, int *failed) {
    attamba_counters a, b;
    attamba_context_counters(ctx, &a);
    *failed = fn(arg) != 0;
    attamba_context_counters(ctx, &b);
    return (attamba_counters){b.launches - a.launches, b.allocations - a.allocations, b.uploads - a.uploads,
                              b.copies - a.copies, b.blocking_reads - a.blocking_reads};
}

void bench_add_counters(cJSON *o, const attamba_counters *c, double per, const char *unit) {
    const char *names[] = {"launches", "allocations", "uploads", "copies", "blocking_reads"};
    uint64_t v[] = {c->launches, c->allocations, c->uploads, c->copies, c->blocking_reads};
    for (size_t i = 0; i < CORE_LEN(names); i++) {
        char key[64];
        snprintf(key, sizeof key, "%s_per_%s", names[i], unit);
        cJSON_AddNumberToObject(o, key, (double)v[i] / per);
    }
}

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
        t = bench_time(run_copy, &r, 3, seconds);
    tensor_free(&r.src);
    tensor_free(&r.dst);
    return t > 0 ? 8.0 * (double)n / t * 1e-9 : -1;
}

cJSON *bench_record(const rt_ctx *ctx, const char *op) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "device", ctx->dev.info.name);
    cJSON_AddStringToObject(o, "platform", ctx->dev.info.platform_name);
    cJSON_AddStringToObject(o, "op", op);
    return o;
}

int bench_write_json(cJSON *array, const char *path) {
    char *text = cJSON_Print(array);
    if (!text) return -1;
    int ok;
    if (!strcmp(path, "-")) {
        ok = printf("%s\n", text) > 0;
    } else {
        char *tmp = core_strdup_printf("%s.tmp", path);
        FILE *f = tmp ? fopen(tmp, "w") : NULL;
        ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
        if (f) ok = fclose(f) == 0 && ok;
        ok = ok && rename(tmp, path) == 0;
        if (!ok && tmp) remove(tmp);
        free(tmp);
    }
    free(text);
    return ok ? 0 : -1;
}

double bench_measure(bench_env *env, int (*fn)(void *arg), void *arg, const char *op, const char *shape,
                     const char *variant, double bytes, int is_copy, double check, const char *check_name,
                     double *gbs, double *ratio) {
    double t = bench_time(fn, arg, 3, env->seconds);
    if (t < 0) return t;
    int failed;
    attamba_counters cnt = bench_count(env->ctx, fn, arg, &failed);
    if (failed) return -1;
    *gbs = bytes / t * 1e-9;
    if (is_copy) env->copy_gbs = *gbs;
    *ratio = env->copy_gbs > 0 ? *gbs / env->copy_gbs : 0;
    cJSON *o = bench_record(env->ctx, op);
    cJSON_AddStringToObject(o, "shape", shape);
    if (variant) cJSON_AddStringToObject(o, "variant", variant);
    cJSON_AddNumberToObject(o, "ms", 1e3 * t);
    cJSON_AddNumberToObject(o, "gbs", *gbs);
    cJSON_AddNumberToObject(o, "copy_gbs", env->copy_gbs);
    if (!is_copy) cJSON_AddNumberToObject(o, "ratio_to_copy", *ratio);
    if (check >= 0) cJSON_AddNumberToObject(o, check_name, check);
    bench_add_counters(o, &cnt, 1, "run");
    cJSON_AddItemToArray(env->out, o);
    return t;
}
