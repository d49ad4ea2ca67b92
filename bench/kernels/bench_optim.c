/* attamba bench optim: the training step's ops outside the layers on the paper-60m model's sizes:
 * zeroing the gradients and AdamW over 62.75M parameters (param, grad, m, v: four f32 tensors,
 * ~1 GB), the sum of squares of
 * the same gradient (global-norm clipping), column sums of a [16384, 512] gradient (bias grads), and
 * cross-entropy backward in place on [1024, 32000] logits. Each in ms and GB/s (bytes the op must
 * move at least once) against the device's copy bandwidth measured in the same run (tensor_copy of
 * a 62.75M-element tensor: bytes read + written). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "cli.h"
#include "ops/loss.h"
#include "ops/optim.h"
#include "ref/ref_loss.h"
#include "ref/ref_optim.h"

typedef enum { RUN_COPY, RUN_ZERO, RUN_ADAMW, RUN_SUMSQ, RUN_SUM_ROWS, RUN_CE_BWD } run_kind;

typedef struct {
    rt_ctx *ctx;
    run_kind kind;
    tensor *p, *g, *m, *v, *out, *targets, *lse;
    adamw_params ap;
    double result;
} optim_run;

static int run_once(void *arg) {
    optim_run *r = arg;
    attamba_status s = ATTAMBA_OK;
    switch (r->kind) {
    case RUN_COPY: s = tensor_copy(r->m, r->g); break;
    case RUN_ZERO: s = tensor_fill(r->m, 0.0); break; /* what trainer_zero_grad does to the gradients */
    case RUN_ADAMW:
        /* The step count grows as in training (bias corrections change; the work does not). */
        r->ap.step++;
        s = ops_adamw(r->ctx, r->p, r->g, r->m, r->v, &r->ap);
        break;
    case RUN_SUMSQ: s = ops_sum_squares(r->ctx, r->g, &r->result); break;
    case RUN_SUM_ROWS: s = ops_sum_rows(r->ctx, r->g, r->out); break;
    case RUN_CE_BWD: s = ops_cross_entropy_backward(r->ctx, r->p, r->targets, -1, r->lse, 1e-3f, r->p); break;
    }
    if (s) return 1;
    return rt_finish(r->ctx) != ATTAMBA_OK;
}

static void usage(FILE *f) {
    fprintf(f, "usage: attamba bench optim [--device P:D] [--seconds S] [--params N] [--json FILE|-]\n\n"
               "Times AdamW and the sum of squares over N parameters (default 62750000, the paper-60m\n"
               "model; four f32 tensors of N elements are allocated), column sums of a [16384, 512]\n"
               "gradient and cross-entropy backward in place on [1024, 32000], in ms and GB/s against\n"
               "the copy bandwidth (tensor_copy of N elements) of the same run. GB/s counts the bytes\n"
               "each op must move once: AdamW 28 per parameter (read param, grad, m, v; write param,\n"
               "m, v), sum of squares 4, column sums 4 per element, cross-entropy backward 8 per logit.\n"
               "'check' is the relative error of the sum of squares against its exact value, and the\n"
               "max |error| against src/ref of the first 4096 parameters after one AdamW step, of the\n"
               "column sums and of the first 4 gradient rows.\n");
}

static int report(bench_env *env, optim_run *r, const char *op, const char *shape, double bytes, double check,
                  const char *check_name) {
    double gbs, ratio, t = bench_measure(env, run_once, r, op, shape, NULL, bytes, r->kind == RUN_COPY, check,
                                        check_name, &gbs, &ratio);
    if (t < 0) return cli_error("bench optim", "%s %s failed: %s", op, shape, env->ctx->err);
    char chk[32] = "";
    if (check >= 0) snprintf(chk, sizeof chk, "%.1e", check);
    printf("%-16s %-16s %10.3f %9.2f %8.2f %10s\n", op, shape, 1e3 * t, gbs, ratio, chk);
    fflush(stdout);
    return 0;
}

/* Max |a - b| over n elements. */
static double max_abs_diff(const float *a, const float *b, int64_t n) {
    double e = 0;
    for (int64_t i = 0; i < n; i++) e = fmax(e, fabs((double)a[i] - b[i]));
    return e;
}

/* One AdamW step from constant state checked on the first CHECK elements against the reference. */
static double adamw_check(rt_ctx *ctx, tensor *p, tensor *g, tensor *m, tensor *v, const adamw_params *ap) {
    enum { CHECK = 4096 };
    static float hp[CHECK], hg[CHECK], hm[CHECK], hv[CHECK], dp[CHECK];
    tensor head = {0};
    if (tensor_fill(p, 0.5) || tensor_fill(g, 0.01) || tensor_fill(m, 0.002) || tensor_fill(v, 1e-5)) return -1;
    for (int i = 0; i < CHECK; i++) hp[i] = 0.5f, hg[i] = 0.01f, hm[i] = 0.002f, hv[i] = 1e-5f;
    int64_t n = CORE_MIN(CHECK, tensor_numel(p));
    double err = -1;
    if (!ops_adamw(ctx, p, g, m, v, ap) && !tensor_slice(p, 0, 0, n, &head) && !tensor_download(&head, dp)) {
        ref_adamw(n, hp, hg, hm, hv, ap->lr, ap->beta1, ap->beta2, ap->eps, ap->weight_decay, ap->grad_scale,
                  ap->step);
        err = max_abs_diff(dp, hp, n);
    }
    tensor_free(&head);
    return err;
}

static int bench_params(bench_env *env, int64_t n) {
    tensor p = {0}, g = {0}, m = {0}, v = {0};
    int rc = 0;
    if (tensor_alloc_f32(env->ctx, &p, 1, &n) || tensor_alloc_f32(env->ctx, &g, 1, &n) ||
        tensor_alloc_f32(env->ctx, &m, 1, &n) || tensor_alloc_f32(env->ctx, &v, 1, &n) || tensor_fill(&g, 0.25)) {
        rc = cli_error("bench optim", "allocating 4 x %lld parameters: %s", (long long)n, env->ctx->err);
        goto done;
    }
    char shape[32];
    snprintf(shape, sizeof shape, "[%lld]", (long long)n);
    optim_run r = {.ctx = env->ctx, .kind = RUN_COPY, .p = &p, .g = &g, .m = &m, .v = &v};
    rc = report(env, &r, "copy", shape, 8.0 * (double)n, -1, NULL);
    r.kind = RUN_ZERO;
    if (!rc) rc = report(env, &r, "zero", shape, 4.0 * (double)n, -1, NULL);
    /* The sum of squares of n copies of 0.25f is exactly n / 16. */
    double err = -1;
    if (!rc && !ops_sum_squares(env->ctx, &g, &r.result))
        err = fabs(r.result - (double)n / 16.0) / ((double)n / 16.0);
    r.kind = RUN_SUMSQ;
    if (!rc) rc = report(env, &r, "sum_squares", shape, 4.0 * (double)n, err, "rel_err");
    r.ap = (adamw_params){.lr = 6e-4f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                          .grad_scale = 0.5f, .step = 7};
    if (!rc) {
        err = adamw_check(env->ctx, &p, &g, &m, &v, &r.ap);
        r.kind = RUN_ADAMW;
        rc = report(env, &r, "adamw", shape, 28.0 * (double)n, err, "max_abs_err");
    }
done:
    tensor_free(&p);
    tensor_free(&g);
    tensor_free(&m);
    tensor_free(&v);
    return rc;
}

static int bench_sum_rows(bench_env *env, int64_t R, int64_t C) {
    float *x = malloc((size_t)(R * C) * sizeof *x), *want = calloc((size_t)C, sizeof *want);
    float *got = malloc((size_t)C * sizeof *got);
    tensor tx = {0}, to = {0};
    int rc = 0;
    if (!x || !want || !got) {
        rc = cli_error("bench optim", "out of host memory");
        goto done;
    }
    core_rng rng;
    core_rng_seed(&rng, 6);
    for (int64_t i = 0; i < R * C; i++) x[i] = 2.0f * core_rng_uniform(&rng) - 1.0f;
    if (tensor_alloc_f32(env->ctx, &tx, 2, ((int64_t[]){R, C})) || tensor_upload(&tx, x) ||
        tensor_alloc_f32(env->ctx, &to, 1, &C) || tensor_fill(&to, 0.0)) {
        rc = cli_error("bench optim", "sum_rows: %s", env->ctx->err);
        goto done;
    }
    double err = -1;
    if (!ops_sum_rows(env->ctx, &tx, &to) && !tensor_download(&to, got)) {
        ref_sum_rows(R, C, x, want);
        err = max_abs_diff(got, want, C);
    }
    char shape[32];
    snprintf(shape, sizeof shape, "[%lld, %lld]", (long long)R, (long long)C);
    optim_run r = {.ctx = env->ctx, .kind = RUN_SUM_ROWS, .g = &tx, .out = &to};
    rc = report(env, &r, "sum_rows", shape, 4.0 * (double)(R * C), err, "max_abs_err");
done:
    tensor_free(&tx);
    tensor_free(&to);
    free(x);
    free(want);
    free(got);
    return rc;
}

static int bench_ce_backward(bench_env *env, int64_t N, int V) {
    enum { CHECK_ROWS = 4 };
    size_t n = (size_t)N * V;
    float *x = malloc(n * sizeof *x), *got = malloc((size_t)CHECK_ROWS * V * sizeof *got);
    double *want = malloc((size_t)CHECK_ROWS * V * sizeof *want);
    int32_t *t = malloc((size_t)N * sizeof *t);
    tensor a = {0}, tt = {0}, tl = {0}, te = {0}, head = {0};
    int rc = 0;
    if (!x || !got || !want || !t) {
        rc = cli_error("bench optim", "out of host memory");
        goto done;
    }
    core_rng rng;
    core_rng_seed(&rng, 7);
    for (size_t i = 0; i < n; i++) x[i] = 8.0f * core_rng_uniform(&rng) - 4.0f;
    for (int64_t i = 0; i < N; i++) t[i] = (int32_t)(core_rng_next(&rng) % (uint64_t)V);
    if (tensor_alloc_f32(env->ctx, &a, 2, ((int64_t[]){N, V})) || tensor_upload(&a, x) ||
        tensor_alloc(env->ctx, &tt, TENSOR_I32, 1, &N) || tensor_upload(&tt, t) ||
        tensor_alloc_f32(env->ctx, &tl, 1, &N) || tensor_alloc_f32(env->ctx, &te, 1, &N) ||
        ops_cross_entropy(env->ctx, &a, &tt, -1, &tl, &te)) {
        rc = cli_error("bench optim", "cross-entropy backward: %s", env->ctx->err);
        goto done;
    }
    double err = -1;
    int64_t rows = CORE_MIN(CHECK_ROWS, N);
    if (!ops_cross_entropy_backward(env->ctx, &a, &tt, -1, &te, 1e-3f, &a) &&
        !tensor_slice(&a, 0, 0, rows, &head) && !tensor_download(&head, got)) {
        ref_cross_entropy_backward(rows, V, x, t, -1, 1e-3, want);
        err = 0;
        for (int64_t i = 0; i < rows * V; i++) err = fmax(err, fabs(got[i] - want[i]));
    }
    /* Timed in place on the gradient of the previous call: the values change, the work does not
     * (lse stays that of the original logits, so the exp()s see values of the same range). */
    char shape[32];
    snprintf(shape, sizeof shape, "[%lld, %d]", (long long)N, V);
    optim_run r = {.ctx = env->ctx, .kind = RUN_CE_BWD, .p = &a, .targets = &tt, .lse = &te};
    rc = report(env, &r, "ce_backward", shape, 8.0 * (double)n + 8.0 * (double)N, err, "max_abs_err");
done:
    tensor_free(&a);
    tensor_free(&tt);
    tensor_free(&tl);
    tensor_free(&te);
    tensor_free(&head);
    free(x);
    free(got);
    free(want);
    free(t);
    return rc;
}

int bench_optim_main(int argc, char **argv) {
    static const struct option opts[] = {{"device", required_argument, 0, 'd'}, {"seconds", required_argument, 0, 't'},
                                         {"params", required_argument, 0, 'n'}, {"json", required_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *device = NULL, *json = NULL;
    double seconds = 1.0;
    int64_t params = 62750000;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:t:n:j:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': device = optarg; break;
        case 't': seconds = atof(optarg); break;
        case 'n': params = atoll(optarg); break;
        case 'j': json = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (params < 1) return cli_error("bench optim", "--params must be >= 1");
    rt_ctx *ctx = cli_open_device(device);
    if (!ctx) return 1;
    printf("device: %s (%s)\n", ctx->dev.info.name, ctx->dev.info.platform_name);
    printf("%-16s %-16s %10s %9s %8s %10s\n", "op", "shape", "ms", "GB/s", "vs copy", "check");
    bench_env env = {ctx, "optim", cJSON_CreateArray(), seconds, 0};
    int rc = bench_params(&env, params);
    if (!rc) rc = bench_sum_rows(&env, 16384, 512);
    if (!rc) rc = bench_ce_backward(&env, 1024, 32000);
    if (!rc && json && bench_write_json(env.out, json)) rc = cli_error("bench optim", "cannot write %s", json);
    cJSON_Delete(env.out);
    attamba_context_destroy(ctx);
    return rc;
}
