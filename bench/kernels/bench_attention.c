/* attamba bench attention: compressed (Attamba, SPEC 3.3) prefill attention against dense causal
 * attention through the same kernel, measured in the same run, with the exact number of key visits
 * the mask allows and the closed form T^2/(2P) + T(L+1). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "cli.h"
#include "ops/attention.h"
#include "ops/boundaries.h"
#include "ref/ref_attention.h"

typedef struct {
    rt_ctx *ctx;
    tensor *q, *k, *v, *out;
    int H;
    attn_mask mask;
} attn_run;

static int run_prefill(void *p) {
    attn_run *r = p;
    if (ops_attention_prefill(r->ctx, r->q, r->k, r->v, r->H, r->H, &r->mask, r->out)) return 1;
    return rt_finish(r->ctx) != ATTAMBA_OK;
}

/* The yardstick of issue 12 (compressed attention at half our GEMM's FLOP rate): ops_gemm on a
 * d-wide projection of M rows (nn, 4096 unless --gemm-rows), in the same run. GFLOP/s, or -1
 * (ctx->err says why). */
typedef struct {
    rt_ctx *ctx;
    tensor a, b, c;
} gemm_run;

static int run_gemm(void *p) {
    gemm_run *g = p;
    if (ops_gemm(g->ctx, 0, 0, 1.0f, &g->a, &g->b, 0.0f, &g->c)) return 1;
    return rt_finish(g->ctx) != ATTAMBA_OK;
}

static double gemm_rate(rt_ctx *ctx, int64_t M, int d, double seconds) {
    gemm_run g = {ctx, {0}, {0}, {0}};
    float *h = malloc((size_t)(M * d) * sizeof *h);
    double s = -1;
    if (h) {
        core_rng rng;
        core_rng_seed(&rng, 7);
        for (int64_t i = 0; i < M * d; i++) h[i] = core_rng_uniform(&rng) * 2.0f - 1.0f;
        int64_t sa[2] = {M, d}, sb[2] = {d, d};
        if (!tensor_alloc_f32(ctx, &g.a, 2, sa) && !tensor_upload(&g.a, h) && !tensor_alloc_f32(ctx, &g.b, 2, sb) &&
            !tensor_upload(&g.b, h) && !tensor_alloc_f32(ctx, &g.c, 2, sa)) {
            bench_timing tm;
            s = bench_time(run_gemm, &g, 3, seconds, &tm);
        }
    }
    free(h);
    tensor_free(&g.a);
    tensor_free(&g.b);
    tensor_free(&g.c);
    return s > 0 ? 2.0 * M * d * d / s * 1e-9 : -1;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: attamba bench attention [--seq T --chunk P --window L] [--heads H] [--head-dim dh]\n"
            "       [--batch B] [--boundaries uniform|cyclic|random[:SEED]] [--dense-max T] [--max-gflop G]\n"
            "       [--gemm-rows M] [--seconds S] [--device P:D] [--json FILE|-]\n\n"
            "Times compressed attention (boundaries of chunk P plus a window of L) against dense causal\n"
            "attention, f32, d = H * dh (default 8 x 64), B = 1. key_visits is counted pair by pair from the\n"
            "mask; key_visits_formula = T^2/(2P) + T(L+1). GFLOP/s counts 4*dh FLOPs per visited key and head.\n"
            "Without --seq/--chunk/--window: T in 1K..16K, P in {1,4,8,16,64}, L in {P, 32}; dense runs only\n"
            "up to T = --dense-max (default 4096 in the sweep) and compressed runs only up to --max-gflop\n"
            "(default 40) per call, so the sweep finishes in minutes on 2 CPU cores. of_gemm: GF/s_cmp\n"
            "over our GEMM's rate on M x d x d (nn; --gemm-rows, default 4096, 0 skips it: simulators),\n"
            "measured once at the start of the run. With --json - the table goes to stderr and stdout\n"
            "holds only the JSON array.\n");
}

/* Exact count from the mask, and the closed form. */
static int64_t count_visits(int T, int mode, int L, const int64_t *b, int64_t nb) {
    uint8_t *flags = malloc((size_t)T);
    if (!flags) return -1;
    ref_boundary_flags(T, b, nb, flags);
    int64_t n = ref_attention_key_visits(T, mode, L, flags);
    free(flags);
    return n;
}

typedef struct {
    rt_ctx *ctx;
    int B, T, H, dh;
    tensor q, k, v, out;
} bench_data;

static int data_make(bench_data *d) {
    int64_t shape[3] = {d->B, d->T, (int64_t)d->H * d->dh};
    int64_t n = shape[0] * shape[1] * shape[2];
    float *h = malloc((size_t)n * sizeof *h);
    if (!h) return 1;
    core_rng rng;
    core_rng_seed(&rng, 42);
    int rc = 0;
    tensor *ts[4] = {&d->q, &d->k, &d->v, &d->out};
    for (int i = 0; i < 4 && !rc; i++) {
        for (int64_t j = 0; j < n; j++) h[j] = core_rng_uniform(&rng) * 2.0f - 1.0f;
        rc = tensor_alloc_f32(d->ctx, ts[i], 3, shape) || tensor_upload(ts[i], h);
    }
    free(h);
    return rc;
}

static void data_free(bench_data *d) {
    tensor_free(&d->q);
    tensor_free(&d->k);
    tensor_free(&d->v);
    tensor_free(&d->out);
}

int bench_attention_main(int argc, char **argv) {
    static const struct option opts[] = {
        {"seq", required_argument, 0, 'T'},        {"chunk", required_argument, 0, 'P'},
        {"window", required_argument, 0, 'L'},     {"heads", required_argument, 0, 'H'},
        {"head-dim", required_argument, 0, 'D'},   {"batch", required_argument, 0, 'B'},
        {"boundaries", required_argument, 0, 'b'}, {"dense-max", required_argument, 0, 'm'},
        {"max-gflop", required_argument, 0, 'g'},  {"seconds", required_argument, 0, 't'},
        {"device", required_argument, 0, 'd'},     {"json", required_argument, 0, 'j'},
        {"gemm-rows", required_argument, 0, 'G'},
        {"help", no_argument, 0, 'h'},             {0, 0, 0, 0}};
    int seq = 0, chunk = 0, window = -1, H = 8, dh = 64, B = 1, dense_max = -1, gemm_rows = 4096;
    double seconds = 0.5, max_gflop = -1;
    const char *device = NULL, *json = NULL, *strategy = "uniform";
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "T:P:L:H:D:B:b:m:g:G:t:d:j:h", opts, NULL)) != -1) {
        switch (c) {
        case 'T': seq = atoi(optarg); break;
        case 'P': chunk = atoi(optarg); break;
        case 'L': window = atoi(optarg); break;
        case 'H': H = atoi(optarg); break;
        case 'D': dh = atoi(optarg); break;
        case 'B': B = atoi(optarg); break;
        case 'b': strategy = optarg; break;
        case 'm': dense_max = atoi(optarg); break;
        case 'g': max_gflop = atof(optarg); break;
        case 'G': gemm_rows = atoi(optarg); break;
        case 't': seconds = atof(optarg); break;
        case 'd': device = optarg; break;
        case 'j': json = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    boundary_spec spec = {BOUNDARY_UNIFORM, 1, 1, NULL, 0};
    char err[256];
    if (boundary_parse(strategy, &spec, err, sizeof err)) return cli_error("bench attention", "%s", err);
    if (spec.strategy == BOUNDARY_EXPLICIT) return cli_error("bench attention", "explicit boundaries not supported");
    int sweep = !seq && !chunk && window < 0;
    if (!sweep && (seq < 1 || chunk < 1 || window < 0))
        return cli_error("bench attention", "give all of --seq T >= 1, --chunk P >= 1 and --window L >= 0, or none");
    if (H < 1 || dh < 1 || B < 1) return cli_error("bench attention", "--heads, --head-dim, --batch must be >= 1");
    if (gemm_rows < 0) return cli_error("bench attention", "--gemm-rows must be >= 0");
    /* A single measurement runs whatever is asked; the sweep caps the slow ends by default. */
    if (dense_max < 0) dense_max = sweep ? 4096 : 1 << 30;
    if (max_gflop < 0) max_gflop = sweep ? 40 : 1e30;

    static const int sweep_T[] = {1024, 2048, 4096, 8192, 16384}, sweep_P[] = {1, 4, 8, 16, 64};
    int nT = sweep ? 5 : 1, nP = sweep ? 5 : 1, nL = sweep ? 2 : 1;

    rt_ctx *ctx = cli_open_device(device);
    if (!ctx) return 1;
    FILE *tab = json && !strcmp(json, "-") ? stderr : stdout;
    fprintf(tab, "device: %s (%s); B=%d H=%d dh=%d, boundaries %s; timings are medians, noisy on a shared host\n",
            ctx->dev.info.name, ctx->dev.info.platform_name, B, H, dh, boundary_strategy_name(spec.strategy));
    if (sweep)
        fprintf(tab, "sweep: dense causal only for T <= %d, compressed only up to %.0f GFLOP per call "
                     "(--dense-max, --max-gflop to change)\n", dense_max, max_gflop);
    double gemm_gflops = gemm_rows ? gemm_rate(ctx, gemm_rows, H * dh, seconds) : 0;
    if (gemm_gflops < 0) {
        int rc = cli_error("bench attention", "the GEMM yardstick: %s", ctx->err);
        attamba_context_destroy(ctx);
        return rc;
    }
    if (gemm_rows)
        fprintf(tab, "our GEMM %dx%dx%d (nn): %.1f GFLOP/s in this run\n", gemm_rows, H * dh, H * dh, gemm_gflops);
    fprintf(tab, "%6s %4s %4s %10s %10s %8s %12s %12s %8s %9s %9s %7s\n", "T", "P", "L", "ms_comp", "ms_dense",
            "speedup", "key_visits", "formula", "ratio", "GF/s_cmp", "GF/s_dns", "of_gemm");
    cJSON *out = cJSON_CreateArray();
    int rc = 0;
    for (int it = 0; it < nT && !rc; it++) {
        int T = sweep ? sweep_T[it] : seq;
        bench_data d = {ctx, B, T, H, dh, {0}, {0}, {0}, {0}};
        if (data_make(&d)) {
            rc = cli_error("bench attention", "T=%d: %s", T, ctx->err);
            data_free(&d);
            break;
        }
        double flop_per_visit = 4.0 * dh * H * B;
        int64_t dense_visits = (int64_t)T * (T + 1) / 2;
        attn_run r = {ctx, &d.q, &d.k, &d.v, &d.out, H, {ATTN_CAUSAL, 0, NULL, 0, NULL}};
        double ms_dense = -1, bytes = 16.0 * B * T * H * dh; /* q, k, v read, out written once */
        char shape[64];
        snprintf(shape, sizeof shape, "B=%d H=%d T=%d dh=%d", B, H, T, dh);
        bench_timing tm;
        if (T <= dense_max) {
            double s = bench_time(run_prefill, &r, 2, seconds, &tm);
            if (s < 0) {
                rc = cli_error("bench attention", "dense T=%d: %s", T, ctx->err);
            } else {
                ms_dense = 1e3 * s;
                cJSON *o = bench_entry(ctx, "attention", "attention_prefill", shape, "dense", &tm,
                                       (double)dense_visits * flop_per_visit, bytes);
                cJSON_AddNumberToObject(o, "key_visits", (double)dense_visits);
                if (gemm_gflops > 0) {
                    cJSON_AddNumberToObject(o, "gemm_gflops", gemm_gflops);
                    cJSON_AddNumberToObject(o, "ratio_to_gemm", dense_visits * flop_per_visit / s * 1e-9 / gemm_gflops);
                }
                bench_entry_count(o, ctx, run_prefill, &r);
                cJSON_AddItemToArray(out, o);
            }
        }
        for (int ip = 0; ip < nP && !rc; ip++)
            for (int il = 0; il < nL && !rc; il++) {
                int P = sweep ? sweep_P[ip] : chunk, L = sweep ? (il ? 32 : P) : window;
                if (sweep && il && P == 32) continue;
                spec.chunk = P;
                int64_t nb = boundary_positions(&spec, 0, 1, T, NULL, 0);
                int64_t *b = malloc((size_t)nb * sizeof *b);
                int32_t *b32 = malloc((size_t)nb * sizeof *b32);
                tensor tb = {0};
                if (!b || !b32) {
                    rc = cli_error("bench attention", "out of host memory");
                    goto next;
                }
                boundary_positions(&spec, 0, 1, T, b, nb);
                for (int64_t i = 0; i < nb; i++) b32[i] = (int32_t)b[i];
                int64_t visits = count_visits(T, ATTN_COMPRESSED, L, b, nb);
                double formula = (double)T * T / (2.0 * P) + (double)T * (L + 1);
                double ms_comp = -1;
                if (visits * flop_per_visit * 1e-9 <= max_gflop) {
                    if (tensor_alloc(ctx, &tb, TENSOR_I32, 1, (int64_t[]){nb}) || tensor_upload(&tb, b32)) {
                        rc = cli_error("bench attention", "%s", ctx->err);
                        goto next;
                    }
                    r.mask = (attn_mask){ATTN_COMPRESSED, L, &tb, 0, b32};
                    double s = bench_time(run_prefill, &r, 2, seconds, &tm);
                    if (s < 0) {
                        rc = cli_error("bench attention", "compressed T=%d P=%d L=%d: %s", T, P, L, ctx->err);
                        goto next;
                    }
                    ms_comp = 1e3 * s;
                }
                double speedup = ms_comp > 0 && ms_dense > 0 ? ms_dense / ms_comp : 0;
                double ratio = (double)dense_visits / (double)visits;
                double gf_c = ms_comp > 0 ? visits * flop_per_visit / ms_comp * 1e-6 : 0;
                double gf_d = ms_dense > 0 ? dense_visits * flop_per_visit / ms_dense * 1e-6 : 0;
                char sc[16] = "skipped", sd[16] = "skipped", ss[16] = "-";
                if (ms_comp > 0) snprintf(sc, sizeof sc, "%.2f", ms_comp);
                if (ms_dense > 0) snprintf(sd, sizeof sd, "%.2f", ms_dense);
                if (speedup > 0) snprintf(ss, sizeof ss, "%.2fx", speedup);
                char sg[16] = "-";
                if (gemm_gflops > 0 && gf_c > 0) snprintf(sg, sizeof sg, "%.2f", gf_c / gemm_gflops);
                fprintf(tab, "%6d %4d %4d %10s %10s %8s %12lld %12.0f %7.2fx %9.2f %9.2f %7s\n", T, P, L, sc, sd, ss,
                        (long long)visits, formula, ratio, gf_c, gf_d, sg);
                fflush(tab);
                if (ms_comp > 0) {
                    char variant[48];
                    snprintf(variant, sizeof variant, "compressed P=%d L=%d", P, L);
                    cJSON *o = bench_entry(ctx, "attention", "attention_prefill", shape, variant, &tm,
                                           (double)visits * flop_per_visit, bytes);
                    cJSON_AddNumberToObject(o, "seq", T);
                    cJSON_AddNumberToObject(o, "chunk", P);
                    cJSON_AddNumberToObject(o, "window", L);
                    cJSON_AddNumberToObject(o, "batch", B);
                    cJSON_AddNumberToObject(o, "heads", H);
                    cJSON_AddNumberToObject(o, "head_dim", dh);
                    cJSON_AddStringToObject(o, "boundaries", boundary_strategy_name(spec.strategy));
                    if (speedup > 0) cJSON_AddNumberToObject(o, "speedup_vs_dense", speedup);
                    cJSON_AddNumberToObject(o, "key_visits", (double)visits);
                    cJSON_AddNumberToObject(o, "key_visits_formula", formula);
                    cJSON_AddNumberToObject(o, "key_visits_dense", (double)dense_visits);
                    cJSON_AddNumberToObject(o, "visit_ratio", ratio);
                    if (gemm_gflops > 0) {
                        cJSON_AddNumberToObject(o, "gemm_gflops", gemm_gflops);
                        cJSON_AddNumberToObject(o, "ratio_to_gemm", gf_c / gemm_gflops);
                    }
                    bench_entry_count(o, ctx, run_prefill, &r);
                    cJSON_AddItemToArray(out, o);
                }
            next:
                tensor_free(&tb);
                free(b);
                free(b32);
            }
        data_free(&d);
    }
    if (!rc && json && bench_write_json(out, json)) rc = cli_error("bench attention", "cannot write %s", json);
    if (ctx->profiling) rt_profile_print(ctx, stderr); /* ATTAMBA_PROFILE=1: where the time went, per kernel */
    cJSON_Delete(out);
    attamba_context_destroy(ctx);
    return rc;
}
