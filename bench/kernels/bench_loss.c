/* attamba bench loss: the language-model head's ops on training and decode shapes: cross-entropy
 * on [4096, 32000] and [4096, 258] (per-row losses + lse, and the blocking mean), argmax and
 * sampling on [8, 32000]. Each is reported in ms and GB/s (bytes the op must move at least once:
 * logits read once plus the per-row inputs/outputs) against the device's copy bandwidth measured
 * in the same run (tensor_copy of a 256 MiB tensor: bytes read + written). Sampling includes its
 * host part (download of the probabilities, top-k/top-p cut, draw). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "cli.h"
#include "ops/loss.h"
#include "ref/ref_loss.h"

typedef enum { RUN_COPY, RUN_CE, RUN_CE_MEAN, RUN_ARGMAX, RUN_SAMPLE } run_kind;

typedef struct {
    rt_ctx *ctx;
    run_kind kind;
    tensor *a, *b, *targets, *losses, *lse, *idx;
    sampler *s;
    int32_t *tokens;
    double mean;
    int64_t count;
} loss_run;

static int run_once(void *p) {
    loss_run *r = p;
    attamba_status s = ATTAMBA_OK;
    switch (r->kind) {
    case RUN_COPY: s = tensor_copy(r->b, r->a); break;
    case RUN_CE: s = ops_cross_entropy(r->ctx, r->a, r->targets, -1, r->losses, r->lse); break;
    case RUN_CE_MEAN: s = ops_cross_entropy_mean(r->ctx, r->a, r->targets, -1, &r->mean, &r->count); break;
    case RUN_ARGMAX: s = ops_argmax(r->ctx, r->a, r->idx); break;
    case RUN_SAMPLE: s = ops_sample(r->ctx, r->a, r->s, r->tokens); break;
    }
    if (s) return 1;
    return rt_finish(r->ctx) != ATTAMBA_OK;
}

static void usage(FILE *f) {
    fprintf(f, "usage: attamba bench loss [--device P:D] [--rows N] [--seconds S] [--json FILE|-]\n\n"
               "Times cross-entropy on [N, 32000] and [N, 258] (N = 4096 unless --rows), argmax and\n"
               "sampling on [8, 32000], in ms and GB/s against the copy bandwidth (tensor_copy, 256 MiB)\n"
               "of the same run.\n"
               "GB/s counts the logits read once; the cross-entropy kernel reads each row twice (max,\n"
               "then sum of exp), mostly from cache. 'check' is the max |error| against src/ref on the\n"
               "first 16 rows (cross-entropy) or the number of rows that differ (argmax).\n");
}

/* Times one case, prints a row and adds a JSON record; returns 0 or 1 on failure. */
static int report(bench_env *env, loss_run *r, const char *op, const char *shape, const char *variant,
                  double bytes, double check, const char *check_name) {
    double gbs, ratio, t = bench_measure(env, run_once, r, op, shape, variant, bytes, r->kind == RUN_COPY, check,
                                        check_name, &gbs, &ratio);
    if (t < 0) return cli_error("bench loss", "%s %s failed: %s", op, shape, env->ctx->err);
    char chk[32] = "";
    if (check >= 0) snprintf(chk, sizeof chk, "%.1e", check);
    printf("%-14s %-14s %-22s %10.3f %9.2f %8.2f %10s\n", op, shape, variant, 1e3 * t, gbs, ratio, chk);
    fflush(stdout);
    return 0;
}

static int bench_copy(bench_env *env) {
    int64_t n = 64 << 20; /* 256 MiB of f32 */
    tensor a = {0}, b = {0};
    int rc = 0;
    if (tensor_alloc_f32(env->ctx, &a, 1, &n) || tensor_alloc_f32(env->ctx, &b, 1, &n) || tensor_fill(&a, 1.0)) {
        rc = cli_error("bench loss", "copy: %s", env->ctx->err);
    } else {
        loss_run r = {.ctx = env->ctx, .kind = RUN_COPY, .a = &a, .b = &b};
        rc = report(env, &r, "copy", "[67108864]", "tensor_copy", 8.0 * (double)n, -1, NULL);
    }
    tensor_free(&a);
    tensor_free(&b);
    return rc;
}

static int bench_ce(bench_env *env, int64_t N, int V) {
    enum { CHECK_ROWS = 16 };
    size_t n = (size_t)N * V;
    float *x = malloc(n * sizeof *x), *loss = malloc((size_t)N * sizeof *loss);
    int32_t *t = malloc((size_t)N * sizeof *t);
    tensor a = {0}, tt = {0}, tl = {0}, te = {0};
    int rc = 0;
    if (!x || !t || !loss) {
        rc = cli_error("bench loss", "out of host memory");
        goto done;
    }
    core_rng rng;
    core_rng_seed(&rng, 3);
    for (size_t i = 0; i < n; i++) x[i] = 8.0f * core_rng_uniform(&rng) - 4.0f;
    for (int64_t i = 0; i < N; i++) t[i] = (int32_t)(core_rng_next(&rng) % (uint64_t)V);
    if (tensor_alloc_f32(env->ctx, &a, 2, ((int64_t[]){N, V})) || tensor_upload(&a, x) ||
        tensor_alloc(env->ctx, &tt, TENSOR_I32, 1, &N) || tensor_upload(&tt, t) ||
        tensor_alloc_f32(env->ctx, &tl, 1, &N) || tensor_alloc_f32(env->ctx, &te, 1, &N)) {
        rc = cli_error("bench loss", "cross-entropy: %s", env->ctx->err);
        goto done;
    }
    char shape[32];
    snprintf(shape, sizeof shape, "[%lld, %d]", (long long)N, V);
    loss_run r = {.ctx = env->ctx, .kind = RUN_CE, .a = &a, .targets = &tt, .losses = &tl, .lse = &te};
    double err = -1, want[CHECK_ROWS], bytes = 4.0 * (double)n + 12.0 * (double)N;
    if (!ops_cross_entropy(env->ctx, &a, &tt, -1, &tl, &te) && !tensor_download(&tl, loss)) {
        int rows = N < CHECK_ROWS ? (int)N : CHECK_ROWS;
        ref_cross_entropy(rows, V, x, t, -1, want, NULL, NULL);
        err = 0;
        for (int i = 0; i < rows; i++) err = fmax(err, fabs(loss[i] - want[i]));
    }
    rc = report(env, &r, "cross_entropy", shape, "losses+lse", bytes, err, "max_abs_err");
    if (!rc) {
        r.kind = RUN_CE_MEAN;
        double mean_ref;
        err = -1;
        if (!run_once(&r)) {
            ref_cross_entropy(N, V, x, t, -1, NULL, NULL, &mean_ref);
            err = fabs(r.mean - mean_ref);
        }
        rc = report(env, &r, "cross_entropy", shape, "mean (blocking)", bytes - 8.0 * (double)N, err, "mean_abs_err");
    }
done:
    tensor_free(&a);
    tensor_free(&tt);
    tensor_free(&tl);
    tensor_free(&te);
    free(x);
    free(t);
    free(loss);
    return rc;
}

static int bench_decode(bench_env *env, int64_t B, int V) {
    size_t n = (size_t)B * V;
    float *x = malloc(n * sizeof *x);
    int32_t *got = malloc((size_t)B * sizeof *got), *want = malloc((size_t)B * sizeof *want);
    tensor a = {0}, idx = {0};
    int rc = 0;
    if (!x || !got || !want) {
        rc = cli_error("bench loss", "out of host memory");
        goto done;
    }
    core_rng rng;
    core_rng_seed(&rng, 4);
    for (size_t i = 0; i < n; i++) x[i] = 10.0f * core_rng_normal(&rng);
    if (tensor_alloc_f32(env->ctx, &a, 2, ((int64_t[]){B, V})) || tensor_upload(&a, x) ||
        tensor_alloc(env->ctx, &idx, TENSOR_I32, 1, &B)) {
        rc = cli_error("bench loss", "decode: %s", env->ctx->err);
        goto done;
    }
    char shape[32];
    snprintf(shape, sizeof shape, "[%lld, %d]", (long long)B, V);
    loss_run r = {.ctx = env->ctx, .kind = RUN_ARGMAX, .a = &a, .idx = &idx, .tokens = got};
    double diff = -1, bytes = 4.0 * (double)n + 4.0 * (double)B;
    if (!ops_argmax(env->ctx, &a, &idx) && !tensor_download(&idx, got)) {
        ref_argmax(B, V, x, want);
        diff = 0;
        for (int64_t b = 0; b < B; b++) diff += got[b] != want[b];
    }
    rc = report(env, &r, "argmax", shape, "", bytes, diff, "rows_differing");
    const struct { const char *name; float temperature; int top_k; float top_p; } modes[] = {
        {"greedy", 0.0f, 0, 1.0f}, {"T=1", 1.0f, 0, 1.0f}, {"T=0.8 k=50 p=0.9", 0.8f, 50, 0.9f},
        {"T=1 p=0.95", 1.0f, 0, 0.95f}};
    for (size_t m = 0; !rc && m < sizeof modes / sizeof modes[0]; m++) {
        sampler s;
        sampler_init(&s, modes[m].temperature, modes[m].top_k, modes[m].top_p, 5);
        r.kind = RUN_SAMPLE;
        r.s = &s;
        rc = report(env, &r, "sample", shape, modes[m].name, bytes, -1, NULL);
    }
done:
    tensor_free(&a);
    tensor_free(&idx);
    free(x);
    free(got);
    free(want);
    return rc;
}

int bench_loss_main(int argc, char **argv) {
    static const struct option opts[] = {{"device", required_argument, 0, 'd'}, {"seconds", required_argument, 0, 't'},
                                         {"json", required_argument, 0, 'j'}, {"rows", required_argument, 0, 'r'},
                                         {"help", no_argument, 0, 'h'},       {0, 0, 0, 0}};
    const char *device = NULL, *json = NULL;
    double seconds = 1.0, rows = 4096;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:t:j:r:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': device = optarg; break;
        case 'r':
            if (!cli_number("bench loss", "rows", optarg, 16, 1 << 20, 1, &rows)) return 2;
            break;
        case 't': seconds = atof(optarg); break;
        case 'j': json = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    rt_ctx *ctx = cli_open_device(device);
    if (!ctx) return 1;
    printf("device: %s (%s)\n", ctx->dev.info.name, ctx->dev.info.platform_name);
    printf("%-14s %-14s %-22s %10s %9s %8s %10s\n", "op", "shape", "variant", "ms", "GB/s", "vs copy", "check");
    bench_env env = {ctx, "loss", cJSON_CreateArray(), seconds, 0};
    int rc = bench_copy(&env);
    if (!rc) rc = bench_ce(&env, (int64_t)rows, 32000);
    if (!rc) rc = bench_ce(&env, (int64_t)rows, 258);
    if (!rc) rc = bench_decode(&env, 8, 32000);
    if (!rc && json && bench_write_json(env.out, json)) rc = cli_error("bench loss", "cannot write %s", json);
    cJSON_Delete(env.out);
    attamba_context_destroy(ctx);
    return rc;
}
