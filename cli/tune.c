/* attamba tune: searches the tuning table's parameters (src/ops/tuning.c) on this device for the
 * shapes a model uses, and keeps the winners in the kernel cache directory keyed by device and
 * driver, where every later run finds them. Per group of parameters: every candidate the device
 * allows is first checked against src/ref on awkward shapes, then timed on the model's shapes next
 * to the values in force; a winner must beat them by 3% in interleaved rounds, else they stay.
 * attamba tune --show prints the table in force and where each value came from. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "cli.h"
#include "model/config.h"
#include "ops/attention.h"
#include "ops/boundaries.h"
#include "ops/layer.h"
#include "ops/ops.h"
#include "ops/tuning.h"
#include "ref/ref.h"
#include "ref/ref_attention.h"
#include "ref/ref_layer.h"

enum { MAX_PARAMS = 3, MAX_CANDIDATES = 64 };

/* A group of parameters searched together over a list of value tuples. check(): 0 when the values
 * in force compute what src/ref does; run(): one timed call on the model's shapes (waits). */
typedef struct group {
    const char *name;
    int n_params;
    tune_param params[MAX_PARAMS];
    int n_cand;
    int cand[MAX_CANDIDATES][MAX_PARAMS];
    int (*check)(struct group *g);
    int (*run)(void *g);
    rt_ctx *ctx;
    model_config cfg;
    int tokens;
    tensor t[6];  /* the timed case's tensors */
    tensor bnd;   /* compressed attention: boundaries */
    int32_t *bnd_host;
    attn_mask mask;
} group;

static void set_all(group *g, const int *v, const char *source) {
    for (int i = 0; i < g->n_params; i++) ops_tune_set(g->ctx, g->params[i], v[i], source);
}

static void describe(const group *g, const int *v, char *out, size_t size) {
    size_t n = 0;
    out[0] = 0;
    for (int i = 0; i < g->n_params && n < size; i++)
        n += (size_t)snprintf(out + n, size - n, "%s%s=%d", i ? " " : "", ops_tune_name(g->params[i]), v[i]);
}

static float *random_host(int64_t n, uint64_t seed) {
    float *x = malloc((size_t)n * sizeof *x);
    core_rng r;
    core_rng_seed(&r, seed);
    for (int64_t i = 0; x && i < n; i++) x[i] = 2 * core_rng_uniform(&r) - 1;
    return x;
}

static int upload_random(rt_ctx *ctx, tensor *t, int nd, const int64_t *shape, uint64_t seed) {
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    float *h = random_host(n, seed);
    int bad = !h || tensor_alloc_f32(ctx, t, nd, shape) || tensor_upload(t, h);
    free(h);
    return bad;
}

/* ---- GEMM register tiles: every layout the model uses (nn forward, nt and tn backward) ---- */

static int gemm_check(group *g) {
    static const int shapes[][3] = {{37, 45, 29}, {70, 17, 64}};
    int bad = 0;
    for (size_t s = 0; s < CORE_LEN(shapes) && !bad; s++)
        for (int l = 0; l < 3 && !bad; l++) {
            int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], ta = l == 2, tb = l == 1;
            float *a = random_host((int64_t)M * K, 1), *b = random_host((int64_t)K * N, 2);
            float *want = malloc((size_t)M * N * sizeof *want), *got = malloc((size_t)M * N * sizeof *got);
            tensor A = {0}, B = {0}, C = {0};
            int64_t sa[2] = {ta ? K : M, ta ? M : K}, sb[2] = {tb ? N : K, tb ? K : N}, sc[2] = {M, N};
            bad = !a || !b || !want || !got || tensor_alloc_f32(g->ctx, &A, 2, sa) || tensor_upload(&A, a) ||
                  tensor_alloc_f32(g->ctx, &B, 2, sb) || tensor_upload(&B, b) || tensor_alloc_f32(g->ctx, &C, 2, sc) ||
                  ops_gemm_own(g->ctx, OPS_GEMM_KERNEL_TILES, ta, tb, 1.0f, &A, &B, 0.0f, &C) ||
                  tensor_download(&C, got);
            if (!bad) {
                ref_gemm(ta, tb, M, N, K, 1.0f, a, (int)sa[1], b, (int)sb[1], 0.0f, want, N);
                bad = bench_max_rel_err(got, want, (size_t)M * N) > 1e-4;
            }
            tensor_free(&A), tensor_free(&B), tensor_free(&C);
            free(a), free(b), free(want), free(got);
        }
    return bad;
}

static int gemm_run(void *p) {
    group *g = p;
    /* x [T, d] W [d, ffn]; dx = dy W^T; dW = x^T dy */
    return ops_gemm_own(g->ctx, OPS_GEMM_KERNEL_TILES, 0, 0, 1.0f, &g->t[0], &g->t[1], 0.0f, &g->t[2]) ||
           ops_gemm_own(g->ctx, OPS_GEMM_KERNEL_TILES, 0, 1, 1.0f, &g->t[2], &g->t[1], 0.0f, &g->t[3]) ||
           ops_gemm_own(g->ctx, OPS_GEMM_KERNEL_TILES, 1, 0, 1.0f, &g->t[0], &g->t[2], 0.0f, &g->t[4]) ||
           rt_finish(g->ctx);
}

static int gemm_setup(group *g, int quick) {
    int vw0 = ops_tune(g->ctx, TUNE_GEMM_VW), n = 0;
    for (int vw = 4; vw <= 16; vw *= 2) {
        if (quick && vw != vw0 && vw != vw0 / 2) continue;
        for (int nv = 1; nv <= (quick ? 3 : 4); nv++)
            for (int rm = quick ? 4 : 2; rm <= 8; rm += 2)
                if (n < MAX_CANDIDATES) g->cand[n][0] = vw, g->cand[n][1] = nv, g->cand[n++][2] = rm;
    }
    g->n_cand = n;
    int64_t T = g->tokens, d = g->cfg.dim, f = g->cfg.ffn_dim;
    return upload_random(g->ctx, &g->t[0], 2, ((int64_t[]){T, d}), 3) ||
           upload_random(g->ctx, &g->t[1], 2, ((int64_t[]){d, f}), 4) ||
           tensor_alloc_f32(g->ctx, &g->t[2], 2, ((int64_t[]){T, f})) ||
           tensor_alloc_f32(g->ctx, &g->t[3], 2, ((int64_t[]){T, d})) ||
           tensor_alloc_f32(g->ctx, &g->t[4], 2, ((int64_t[]){d, f}));
}

/* ---- GEMM: the plain B sizes read in place instead of packed, on the same shapes ---- */

static int gemm_inplace_setup(group *g, int quick) {
    static const int kib[] = {0, 256, 1024, 4096};
    int rc = gemm_setup(g, quick);
    g->n_cand = (int)CORE_LEN(kib);
    for (int c = 0; c < g->n_cand; c++) g->cand[c][0] = kib[c];
    return rc;
}

/* ---- norms: the largest work-group ---- */

static int norm_check(group *g) {
    static const int64_t widths[] = {7, 100, 1000};
    int bad = 0;
    for (size_t i = 0; i < CORE_LEN(widths) && !bad; i++) {
        int64_t C = widths[i], n = 3 * C;
        float *x = random_host(n, 5), *w = random_host(C, 6), *want = malloc((size_t)n * 4), *got = malloc((size_t)n * 4);
        tensor tx = {0}, tw = {0}, out = {0};
        bad = !x || !w || !want || !got || tensor_alloc_f32(g->ctx, &tx, 2, ((int64_t[]){3, C})) ||
              tensor_upload(&tx, x) || tensor_alloc_f32(g->ctx, &tw, 1, &C) || tensor_upload(&tw, w) ||
              tensor_alloc_f32(g->ctx, &out, 2, ((int64_t[]){3, C})) || ops_rmsnorm(g->ctx, &tx, &tw, 1e-5f, &out) ||
              tensor_download(&out, got);
        if (!bad) {
            ref_rmsnorm(3, C, x, w, 1e-5f, want);
            bad = bench_max_rel_err(got, want, (size_t)n) > 1e-5;
        }
        tensor_free(&tx), tensor_free(&tw), tensor_free(&out);
        free(x), free(w), free(want), free(got);
    }
    return bad;
}

static int norm_run(void *p) {
    group *g = p;
    return ops_rmsnorm(g->ctx, &g->t[0], &g->t[1], 1e-5f, &g->t[2]) || rt_finish(g->ctx);
}

static int norm_setup(group *g, int quick) {
    (void)quick;
    for (int w = 8; w <= 256 && (size_t)w <= g->ctx->dev.info.max_work_group_size; w *= 2) g->cand[g->n_cand++][0] = w;
    int64_t T = g->tokens, d = g->cfg.dim;
    return upload_random(g->ctx, &g->t[0], 2, ((int64_t[]){T, d}), 7) || upload_random(g->ctx, &g->t[1], 1, &d, 8) ||
           tensor_alloc_f32(g->ctx, &g->t[2], 2, ((int64_t[]){T, d}));
}

/* ---- prefill attention with the model's mask ---- */

/* The model's mask over T tokens (COMPRESSED with its boundaries for Attamba, else CAUSAL); the
 * boundaries go to bnd and, malloc'd, to *host (the mask's host copy; NULL for CAUSAL). */
static int attn_mask_for(group *g, int T, tensor *bnd, int32_t **host, attn_mask *m) {
    *host = NULL;
    if (g->cfg.kind != MODEL_ATTAMBA) {
        *m = (attn_mask){ATTN_CAUSAL, 0, NULL, 0, NULL};
        return 0;
    }
    boundary_spec spec = model_config_boundaries(&g->cfg);
    int64_t nb = boundary_positions(&spec, 0, g->cfg.n_layers, T, NULL, 0);
    int64_t *b = malloc((size_t)nb * sizeof *b);
    int32_t *b32 = *host = malloc((size_t)nb * sizeof *b32);
    int bad = !b || !b32;
    if (!bad) {
        boundary_positions(&spec, 0, g->cfg.n_layers, T, b, nb);
        for (int64_t i = 0; i < nb; i++) b32[i] = (int32_t)b[i];
        bad = tensor_alloc(g->ctx, bnd, TENSOR_I32, 1, &nb) || tensor_upload(bnd, b32);
    }
    free(b);
    *m = (attn_mask){ATTN_COMPRESSED, g->cfg.window, bnd, 0, b32};
    return bad;
}

static int attn_check(group *g) {
    int T = 67, H = g->cfg.n_heads, Hkv = g->cfg.n_kv_heads, dh = g->cfg.dim / H;
    int64_t nq = (int64_t)T * H * dh, nk = (int64_t)T * Hkv * dh;
    float *q = random_host(nq, 9), *k = random_host(nk, 10), *v = random_host(nk, 11);
    float *want = malloc((size_t)nq * 4), *got = malloc((size_t)nq * 4);
    tensor tq = {0}, tk = {0}, tv = {0}, out = {0}, bnd = {0};
    int32_t *b32 = NULL;
    attn_mask m;
    int bad = !q || !k || !v || !want || !got || attn_mask_for(g, T, &bnd, &b32, &m) ||
              tensor_alloc_f32(g->ctx, &tq, 3, ((int64_t[]){1, T, H * dh})) || tensor_upload(&tq, q) ||
              tensor_alloc_f32(g->ctx, &tk, 3, ((int64_t[]){1, T, Hkv * dh})) || tensor_upload(&tk, k) ||
              tensor_alloc_f32(g->ctx, &tv, 3, ((int64_t[]){1, T, Hkv * dh})) || tensor_upload(&tv, v) ||
              tensor_alloc_f32(g->ctx, &out, 3, ((int64_t[]){1, T, H * dh})) ||
              ops_attention_prefill(g->ctx, &tq, &tk, &tv, H, Hkv, &m, &out) || tensor_download(&out, got);
    if (!bad) {
        uint8_t *flags = calloc((size_t)T, 1);
        if (m.mode == ATTN_COMPRESSED) {
            int64_t nb = bnd.shape[0];
            int64_t *b = malloc((size_t)nb * 8);
            bad = !flags || !b;
            for (int64_t i = 0; !bad && i < nb; i++) b[i] = b32[i];
            if (!bad) ref_boundary_flags(T, b, nb, flags);
            free(b);
        }
        if (!bad) {
            ref_attention(1, T, H, Hkv, dh, q, k, v, (int)m.mode, m.window, flags, want);
            bad = bench_max_rel_err(got, want, (size_t)nq) > 1e-4;
        }
        free(flags);
    }
    tensor_free(&tq), tensor_free(&tk), tensor_free(&tv), tensor_free(&out), tensor_free(&bnd);
    free(q), free(k), free(v), free(want), free(got), free(b32);
    return bad;
}

static int attn_run(void *p) {
    group *g = p;
    return ops_attention_prefill(g->ctx, &g->t[0], &g->t[1], &g->t[2], g->cfg.n_heads, g->cfg.n_kv_heads, &g->mask,
                                 &g->t[3]) ||
           rt_finish(g->ctx);
}

/* The timed case: q, k, v, out of the model's widths over its tokens, and its mask. */
static int attn_tensors(group *g) {
    int64_t T = g->tokens, H = g->cfg.n_heads, Hkv = g->cfg.n_kv_heads, dh = g->cfg.dim / H;
    int bad = upload_random(g->ctx, &g->t[0], 3, ((int64_t[]){1, T, H * dh}), 12) ||
              upload_random(g->ctx, &g->t[1], 3, ((int64_t[]){1, T, Hkv * dh}), 13) ||
              upload_random(g->ctx, &g->t[2], 3, ((int64_t[]){1, T, Hkv * dh}), 14) ||
              tensor_alloc_f32(g->ctx, &g->t[3], 3, ((int64_t[]){1, T, H * dh})) ||
              attn_mask_for(g, (int)T, &g->bnd, &g->bnd_host, &g->mask);
    g->mask.trusted = 1;
    return bad;
}

static int attn_setup(group *g, int quick) {
    for (int tk = 4; tk <= 16; tk *= 2)
        for (int bq = 8; bq <= (quick ? 32 : 64); bq *= 2)
            g->cand[g->n_cand][0] = tk, g->cand[g->n_cand++][1] = bq;
    return attn_tensors(g);
}

/* Kernels (0) or the GEMM path in blocks of 64 to 256 queries, where the mask lets it pay. */
static int path_setup(group *g, int quick) {
    (void)quick;
    for (int bq = 0; bq <= 256; bq = bq ? 2 * bq : 64) g->cand[g->n_cand++][0] = bq;
    return attn_tensors(g);
}

/* ---- the search ---- */

/* Median seconds of run over at least 3 calls and `seconds`; negative on failure. */
static double timed(group *g, double seconds) { return bench_time(g->run, g, 3, seconds, NULL); }

/* Searches g; returns 0 (a result line printed, the winner set as "tuned" or the old values kept),
 * or nonzero when the values in force themselves fail. verbose: a line per candidate. */
static int search(group *g, double seconds, int verbose) {
    int cur[MAX_PARAMS], best[MAX_PARAMS];
    char cur_src[MAX_PARAMS][48];
    for (int i = 0; i < g->n_params; i++) {
        cur[i] = ops_tune(g->ctx, g->params[i]);
        snprintf(cur_src[i], sizeof cur_src[i], "%s", ops_tune_source(g->ctx, g->params[i]));
    }
    if (g->check(g)) return cli_error("tune", "%s: the values in force fail their check: %s", g->name, g->ctx->err);
    double t_cur = timed(g, seconds), t_best = t_cur;
    if (t_cur <= 0) return cli_error("tune", "%s: %s", g->name, g->ctx->err);
    memcpy(best, cur, sizeof best);
    int tried = 0, wrong = 0, failed = 0;
    for (int c = 0; c < g->n_cand; c++) {
        if (!memcmp(g->cand[c], cur, (size_t)g->n_params * sizeof(int))) continue;
        set_all(g, g->cand[c], "candidate");
        if (g->check(g)) { /* a candidate the device cannot build or that computes wrong is skipped */
            failed++;
            continue;
        }
        tried++;
        double t = timed(g, seconds);
        if (verbose) {
            char d[160];
            describe(g, g->cand[c], d, sizeof d);
            printf("  %-10s %-40s %9.3f ms (in force %.3f)\n", g->name, d, 1e3 * t, 1e3 * t_cur);
        }
        if (t <= 0) wrong++;
        else if (t < t_best) t_best = t, memcpy(best, g->cand[c], sizeof best);
    }
    /* the winner against the values in force, interleaved: medians of 3 rounds each */
    double rounds[2][3] = {{0}};
    if (memcmp(best, cur, sizeof best)) {
        for (int r = 0; r < 3; r++) {
            set_all(g, cur, "candidate");
            rounds[0][r] = timed(g, seconds);
            set_all(g, best, "candidate");
            rounds[1][r] = timed(g, seconds);
        }
        for (int k = 0; k < 2; k++) /* sort three */
            for (int i = 0; i < 2; i++)
                for (int j = i + 1; j < 3; j++)
                    if (rounds[k][j] < rounds[k][i]) {
                        double x = rounds[k][i];
                        rounds[k][i] = rounds[k][j], rounds[k][j] = x;
                    }
        t_cur = rounds[0][1], t_best = rounds[1][1];
    }
    int other = memcmp(best, cur, sizeof best) != 0, won = other && t_best > 0 && t_best < 0.97 * t_cur;
    char a[160], b[160];
    describe(g, cur, a, sizeof a);
    describe(g, best, b, sizeof b);
    printf("%-10s %3d tried %2d failed  in force %-34s %9.3f ms  ->  %-34s %9.3f ms  %.2fx%s\n", g->name, tried + 1,
           failed + wrong, a, 1e3 * t_cur, b, 1e3 * t_best, t_cur / t_best,
           won ? "  tuned" : other ? "  kept (under 3% in the interleaved rounds)" : "  kept (the fastest)");
    fflush(stdout);
    if (won) set_all(g, best, "tuned");
    else
        for (int i = 0; i < g->n_params; i++) ops_tune_set(g->ctx, g->params[i], cur[i], cur_src[i]);
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: attamba tune [--preset NAME | --model DIR] [--quick] [--tokens N] [--verbose]\n"
               "                    [--only gemm,gemm-inplace,norm,attention,attention-path]\n"
               "                    [--device P:D | --devices LIST]\n"
               "       attamba tune --show [--device P:D | --devices LIST]\n\n"
               "Searches the device-dependent kernel parameters (src/ops/tuning.c) on each device for the\n"
               "shapes of a model (default preset paper-60m; N tokens per batch, default 512): the GEMM\n"
               "register tiles (gemm.vw, gemm.nv, gemm.rm; nn, nt, tn) and the plain B sizes they read in\n"
               "place (gemm.inplace_b_kib: 0, 256, 1024, 4096), the norms' group (norm.group) and\n"
               "the prefill attention tiles (attn.tk, attn.bq_short) with the model's mask, then whether that\n"
               "attention (prefill and backward) goes through the GEMM and in blocks of how many queries\n"
               "(attn.gemm_bq: 0 = the kernels, 64, 128, 256). Each candidate is\n"
               "checked against src/ref, then timed next to the values in force; a winner must beat them by\n"
               "3%% in interleaved rounds. Winners are stored in the kernel cache directory, keyed by device\n"
               "and driver, and used by every later run there (source 'tuned' in --show). --quick: fewer\n"
               "candidates and shorter timings; --verbose: every candidate's time.\n\n"
               "--show prints, per device, its class and every parameter: its value and where it came from\n"
               "(the class row, the default, the device, tuned, or $ATTAMBA_GEMM, $ATTAMBA_NORM_GROUP,\n"
               "$ATTAMBA_SSM_PATH).\n");
}

/* The groups for ctx's device: the register-tile GEMM's (those checked by gemm_check) only where the
 * own tiles run it. */
static int tune_device(rt_ctx *ctx, const model_config *cfg, int tokens, int quick, int verbose, const char *only) {
    const struct {
        const char *name;
        int n;
        tune_param p[MAX_PARAMS];
        int (*setup)(group *, int);
        int (*check)(group *);
        int (*run)(void *);
    } defs[] = {
        {"gemm", 3, {TUNE_GEMM_VW, TUNE_GEMM_NV, TUNE_GEMM_RM}, gemm_setup, gemm_check, gemm_run},
        {"gemm-inplace", 1, {TUNE_GEMM_INPLACE_B_KIB}, gemm_inplace_setup, gemm_check, gemm_run},
        {"norm", 1, {TUNE_NORM_GROUP}, norm_setup, norm_check, norm_run},
        {"attention", 2, {TUNE_ATTN_TK, TUNE_ATTN_BQ_SHORT}, attn_setup, attn_check, attn_run},
        {"attention-path", 1, {TUNE_ATTN_GEMM_BQ}, path_setup, attn_check, attn_run},
    };
    double seconds = quick ? 0.15 : 0.5, t0 = core_now();
    int rc = 0;
    const attamba_device_info *d = &ctx->dev.info;
    printf("device %d:%d %s (%s), %d tokens of %s %s\n", d->platform_index, d->device_index, d->name,
           d->platform_name, tokens, model_kind_name(cfg->kind), quick ? "(quick)" : "");
    for (size_t i = 0; i < CORE_LEN(defs) && !rc; i++) {
        if (!bench_listed(only, defs[i].name)) continue;
        if (defs[i].check == gemm_check && (ops_tune(ctx, TUNE_GEMM_KERNEL) != 0 ||
                       (ops_tune(ctx, TUNE_GEMM_BACKEND) == 1 && ops_gemm_have_clblast()))) {
            printf("%-10s skipped: this device's GEMM runs through CLBlast or the __local kernel\n", defs[i].name);
            continue;
        }
        group *g = calloc(1, sizeof *g);
        if (!g) return cli_error("tune", "out of host memory");
        *g = (group){.name = defs[i].name, .n_params = defs[i].n, .check = defs[i].check, .run = defs[i].run,
                     .ctx = ctx, .cfg = *cfg, .tokens = tokens};
        memcpy(g->params, defs[i].p, sizeof g->params);
        if (defs[i].setup(g, quick)) rc = cli_error("tune", "%s: %s", g->name, ctx->err);
        else rc = search(g, seconds, verbose);
        for (size_t k = 0; k < CORE_LEN(g->t); k++) tensor_free(&g->t[k]);
        tensor_free(&g->bnd);
        free(g->bnd_host);
        free(g);
    }
    if (!rc && ops_tuning_save(ctx)) rc = cli_error("tune", "%s", ctx->err);
    if (!rc) {
        char *path = ops_tuning_path(ctx);
        printf("tuned values -> %s (%.0f s)\n", path ? path : "?", core_now() - t0);
        free(path);
    }
    return rc;
}

int cli_tune(int argc, char **argv) {
    static const struct option opts[] = {{"show", no_argument, 0, 's'},        {"device", required_argument, 0, 'd'},
                                         {"devices", required_argument, 0, 'D'}, {"preset", required_argument, 0, 'p'},
                                         {"model", required_argument, 0, 'm'},   {"quick", no_argument, 0, 'q'},
                                         {"tokens", required_argument, 0, 't'},  {"verbose", no_argument, 0, 'v'},
                                         {"only", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *device = NULL, *devices = NULL, *preset = NULL, *model_dir = NULL, *only = NULL;
    int show = 0, quick = 0, verbose = 0, c;
    double tokens = 512;
    optind = 1;
    while ((c = getopt_long(argc, argv, "sd:D:p:m:qt:vo:h", opts, NULL)) != -1) {
        switch (c) {
        case 's': show = 1; break;
        case 'd': device = optarg; break;
        case 'D': devices = optarg; break;
        case 'p': preset = optarg; break;
        case 'm': model_dir = optarg; break;
        case 'q': quick = 1; break;
        case 'v': verbose = 1; break;
        case 'o': only = optarg; break;
        case 't':
            if (!cli_number("tune", "tokens", optarg, 16, 65536, 1, &tokens)) return 2;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc || (preset && model_dir)) {
        usage(stderr);
        return 2;
    }
    model_config cfg;
    char err[512];
    if (!show) {
        attamba_status s;
        if (model_dir) {
            char *path = core_strdup_printf("%s/config.json", model_dir);
            s = model_config_load(path, &cfg, err, sizeof err);
            free(path);
        } else {
            s = model_config_preset(preset ? preset : "paper-60m", &cfg, err, sizeof err);
        }
        if (s) return cli_error("tune", "%s", err);
    }
    rt_ctx *ctxs[ATTAMBA_MAX_DEVICES];
    int n = cli_open_devices(devices, device, ctxs), rc = n ? 0 : 1;
    for (int i = 0; i < n && !rc; i++) {
        if (i) printf("\n");
        if (show) ops_tuning_print(ctxs[i], stdout);
        else rc = tune_device(ctxs[i], &cfg, (int)tokens, quick, verbose, only);
    }
    cli_close_devices(ctxs, n);
    return rc;
}
