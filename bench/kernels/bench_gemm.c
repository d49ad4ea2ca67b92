/* attamba bench gemm: GEMM throughput of CLBlast, the own kernels and the host's CBLAS (OpenBLAS),
 * measured in the same run on the same shapes (by default those of a d=512 model with 4096 tokens
 * per batch), with each one's ratio to the host BLAS. --trans nt,tn times A B^T and A^T B (the
 * backward pass), --batch a strided batch, --kernels every own kernel, not only the default one.
 *
 * Why the own kernels are the default on CPU devices: on PoCL 3.1 (2 AVX-512 cores) CLBlast's
 * kernels, tuned for GPUs, reach 11-18 GFLOP/s on the default shapes, the own register-tile
 * kernel 100-200 GFLOP/s, about OpenBLAS (see the report of branch op/gemm). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef ATTAMBA_HAVE_CBLAS
#include <cblas.h>
#endif

#include "bench_util.h"
#include "cli.h"
#include "model/weights.h"
#include "ops/ops.h"

typedef struct {
    rt_ctx *ctx;
    ops_gemm_backend backend;
    ops_gemm_kernel kernel; /* for backend OWN */
    tensor *a, *b, *c;
    int M, N, K, batch, ta, tb;
    int queue; /* GEMMs enqueued back to back per timed call, then one wait */
    const float *ha, *hb;
    float *hc;
} gemm_run;

static int run_device(void *p) {
    gemm_run *r = p;
    for (int i = 0; i < r->queue; i++) {
        attamba_status s = r->backend == OPS_GEMM_OWN
                               ? ops_gemm_own(r->ctx, r->kernel, r->ta, r->tb, 1.0f, r->a, r->b, 0.0f, r->c)
                               : ops_gemm_with(r->ctx, r->backend, r->ta, r->tb, 1.0f, r->a, r->b, 0.0f, r->c);
        if (s) return 1;
    }
    return rt_finish(r->ctx) != ATTAMBA_OK;
}

#ifdef ATTAMBA_HAVE_CBLAS
static int run_host(void *p) {
    gemm_run *r = p;
    size_t sa = (size_t)r->M * r->K, sb = (size_t)r->K * r->N, sc = (size_t)r->M * r->N;
    for (int i = 0; i < r->batch * r->queue; i++)
        cblas_sgemm(CblasRowMajor, r->ta ? CblasTrans : CblasNoTrans, r->tb ? CblasTrans : CblasNoTrans, r->M, r->N,
                    r->K, 1.0f, r->ha + i % r->batch * sa, r->ta ? r->M : r->K, r->hb + i % r->batch * sb,
                    r->tb ? r->K : r->N, 0.0f, r->hc + i % r->batch * sc, r->N);
    return 0;
}
#endif

enum { N_BACKENDS = 7, MAX_ROUNDS = 32 };
static const char *const backend_names[N_BACKENDS] = {"host-blas", "clblast",   "own",    "own-simple",
                                                      "own-tiles", "own-local", "own-dot"};

/* Points r at device backend `which` (1 CLBlast, 2 the own default, 3.. one own kernel). */
static void use_backend(gemm_run *r, int which) {
    r->backend = which == 1 ? OPS_GEMM_CLBLAST : OPS_GEMM_OWN;
    r->kernel = which >= 3 ? (ops_gemm_kernel)(which - 2) : OPS_GEMM_KERNEL_AUTO;
}

/* Whether --backends (NULL: all) names this one; the own-* kernels only with --kernels. */
static int backend_wanted(int which, const char *backends, int all_kernels) {
    if (which == 1 && !ops_gemm_have_clblast()) return 0;
#ifndef ATTAMBA_HAVE_CBLAS
    if (which == 0) return 0;
#endif
    if (which >= 3 && !all_kernels) return 0;
    return bench_listed(backends, backend_names[which]);
}

/* Appends "MxNxK:op" to the comma-separated list out (capacity cap) unless it is there already. */
static void add_case(char *out, size_t cap, int64_t M, int64_t N, int64_t K, const char *op) {
    char tok[64], padded[80], list[cap + 2];
    snprintf(tok, sizeof tok, "%lldx%lldx%lld:%s", (long long)M, (long long)N, (long long)K, op);
    snprintf(padded, sizeof padded, ",%s,", tok);
    snprintf(list, sizeof list, ",%s,", out);
    if (strstr(list, padded) || strlen(out) + strlen(tok) + 2 > cap) return;
    if (*out) strcat(out, ",");
    strcat(out, tok);
}

/* The GEMMs that training the presets in names (comma-separated; attamba and transformer kinds)
 * runs on `rows` tokens, as "MxNxK:op,...": for each linear layer W [out, in], the forward x W^T
 * (nt), the input gradient dy W (nn) and the weight gradient dy^T x (tn). NULL (and a message) for
 * an unknown preset. */
static char *preset_cases(const char *names, int rows) {
    size_t cap = 8192;
    char *out = calloc(cap, 1), *list = strdup(names), err[256];
    for (char *save = NULL, *name = strtok_r(list, ",", &save); name && out; name = strtok_r(NULL, ",", &save))
        for (int kind = 0; kind < 2 && out; kind++) {
            model_config cfg;
            weight_info *w = NULL;
            int n = 0;
            if (model_config_preset(name, &cfg, err, sizeof err) ||
                (cfg.kind = kind ? MODEL_TRANSFORMER : MODEL_ATTAMBA, weights_list(&cfg, &w, &n))) {
                cli_error("bench gemm", "%s", err);
                free(out);
                out = NULL;
                break;
            }
            for (int i = 0; i < n; i++) {
                int tok_emb = !strcmp(w[i].name, "tok_embeddings.weight");
                if (w[i].ndim != 2 || strstr(w[i].name, "conv1d") || (tok_emb && !cfg.tie_embeddings)) continue;
                int64_t o = w[i].shape[0], in = w[i].shape[1];
                add_case(out, cap, rows, o, in, "nt");
                add_case(out, cap, rows, in, o, "nn");
                add_case(out, cap, o, in, rows, "tn");
            }
            free(w);
        }
    free(list);
    return out;
}

static void usage(FILE *f) {
    fprintf(f, "usage: attamba bench gemm [--device P:D] [--shapes MxNxK[:op],...] [--trans nn,nt,tn,tt] [--batch B]\n"
               "                         [--preset NAME,... [--seq T]]\n"
               "                         [--kernels] [--backends LIST] [--rounds R] [--queue Q] [--seconds S]\n"
               "                         [--json FILE|-]\n\n"
               "Times C = op(A) op(B) (f32, row-major; t = transposed operand) with CLBlast, the own\n"
               "OpenCL kernels and the host CBLAS in the same run. Default shapes:\n"
               "4096x512x512,4096x1536x512,4096x32000x512, trans nn, batch 1; a shape with :op (e.g. :tn)\n"
               "runs in that layout only. --preset small,paper-60m takes the training GEMMs of those presets\n"
               "on T tokens (default 512) instead: per linear layer, x W^T (nt), dy W (nn), dy^T x (tn);\n"
               "--trans then keeps the layouts it names. --kernels also times every own kernel (simple,\n"
               "tiles, local, dot) besides the one chosen for the device; --backends keeps those named\n"
               "(host-blas, clblast, own, own-tiles, ...). --rounds R (default 1, at most\n"
               "32) interleaves the backends: R rounds of S/R seconds each, medians of times and of the\n"
               "per-round ratios to the host BLAS (for a shared, noisy machine). A device time is per GEMM\n"
               "in a queue of Q calls enqueued back to back and waited for once, as training runs them\n"
               "(default: enough calls for 0.5 GFLOP, at most 64; --queue 1 times each call with its own\n"
               "wait, the latency a synchronous caller sees).\n");
}

int bench_gemm_main(int argc, char **argv) {
    static const struct option opts[] = {{"device", required_argument, 0, 'd'}, {"shapes", required_argument, 0, 's'},
                                         {"seconds", required_argument, 0, 't'}, {"json", required_argument, 0, 'j'},
                                         {"trans", required_argument, 0, 'T'}, {"batch", required_argument, 0, 'b'},
                                         {"kernels", no_argument, 0, 'k'}, {"help", no_argument, 0, 'h'},
                                         {"rounds", required_argument, 0, 'r'}, {"backends", required_argument, 0, 'B'},
                                         {"preset", required_argument, 0, 'p'}, {"seq", required_argument, 0, 'S'},
                                         {"queue", required_argument, 0, 'q'},
                                         {0, 0, 0, 0}};
    const char *device = NULL, *shapes = "4096x512x512,4096x1536x512,4096x32000x512", *json = NULL;
    const char *trans = "nn", *backends = NULL, *presets = NULL;
    double seconds = 1.0;
    int c, batch = 1, all_kernels = 0, rounds = 1, seq = 512, trans_given = 0, queue = 0; /* 0: by FLOPs */
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:s:t:j:T:b:khr:B:p:S:q:", opts, NULL)) != -1) {
        switch (c) {
        case 'd': device = optarg; break;
        case 's': shapes = optarg; break;
        case 'T': trans = optarg, trans_given = 1; break;
        case 'b': batch = atoi(optarg); break;
        case 'k': all_kernels = 1; break;
        case 'r': rounds = atoi(optarg); break;
        case 'B': backends = optarg; break;
        case 'p': presets = optarg; break;
        case 'S': seq = atoi(optarg); break;
        case 'q': queue = atoi(optarg); break;
        case 't': seconds = atof(optarg); break;
        case 'j': json = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (batch < 1 || rounds < 1 || rounds > MAX_ROUNDS || !(seconds > 0) || seq < 1 || queue < 0 || queue > 64) {
        usage(stderr);
        return 2;
    }
    char *cases = presets ? preset_cases(presets, seq) : strdup(shapes);
    rt_ctx *ctx = cases ? cli_open_device(device) : NULL;
    if (!ctx) {
        free(cases);
        return 1;
    }
    printf("device: %s (%s)\n", ctx->dev.info.name, ctx->dev.info.platform_name);
    printf("%-18s %-5s %-12s %10s %10s %9s %10s %9s\n", "MxNxK", "op", "backend", "ms", "GFLOP/s", "GB/s", "vs host",
           "max err");
    cJSON *out = cJSON_CreateArray();
    int rc = 0;
    char *tlist = malloc(strlen(trans) + 4);
    for (char *save = NULL, *tok = strtok_r(cases, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        int M, N, K;
        char *layout = strchr(tok, ':'); /* this shape's one layout */
        if (layout) *layout++ = 0;
        if (sscanf(tok, "%dx%dx%d", &M, &N, &K) != 3 || M < 1 || N < 1 || K < 1 || (layout && strlen(layout) > 2)) {
            rc = cli_error("bench gemm", "bad shape '%s' (want MxNxK)", tok);
            break;
        }
        if (layout && trans_given && !bench_listed(trans, layout)) continue; /* --trans picks layouts */
        size_t na = (size_t)M * K, nb = (size_t)K * N, nc = (size_t)M * N;
        size_t ta_ = (size_t)batch * na, tb_ = (size_t)batch * nb, tc_ = (size_t)batch * nc;
        float *ha = malloc(ta_ * 4), *hb = malloc(tb_ * 4), *hc = malloc(tc_ * 4), *dc = malloc(tc_ * 4);
        tensor a = {0}, b = {0}, cc = {0};
        if (!ha || !hb || !hc || !dc) {
            rc = cli_error("bench gemm", "out of host memory for %s", tok);
            goto next;
        }
        core_rng rng;
        core_rng_seed(&rng, 1);
        for (size_t i = 0; i < ta_; i++) ha[i] = core_rng_uniform(&rng) - 0.5f;
        for (size_t i = 0; i < tb_; i++) hb[i] = core_rng_uniform(&rng) - 0.5f;
        for (char *tsave = NULL, *op = strtok_r(strcpy(tlist, layout ? layout : trans), ",", &tsave); op && !rc;
             op = strtok_r(NULL, ",", &tsave)) {
            if (strlen(op) != 2 || !strchr("nt", op[0]) || !strchr("nt", op[1])) {
                rc = cli_error("bench gemm", "bad --trans '%s' (want nn, nt, tn or tt)", op);
                break;
            }
            int ta = op[0] == 't', tb = op[1] == 't', nd = batch > 1 ? 3 : 2;
            /* host arrays hold op(A), op(B) stored as [K, M] / [N, K] when transposed: same numbers */
            int64_t sa[3] = {batch, ta ? K : M, ta ? M : K}, sb[3] = {batch, tb ? N : K, tb ? K : N},
                    sc[3] = {batch, M, N};
            if (tensor_alloc_f32(ctx, &a, nd, sa + 3 - nd) || tensor_alloc_f32(ctx, &b, nd, sb + 3 - nd) ||
                tensor_alloc_f32(ctx, &cc, nd, sc + 3 - nd) || tensor_upload(&a, ha) || tensor_upload(&b, hb)) {
                rc = cli_error("bench gemm", "%s", ctx->err);
                break;
            }
            double flop = 2.0 * batch * M * N * K, bytes = 4.0 * (double)(ta_ + tb_ + tc_);
            int q = queue ? queue : (int)CORE_MAX(1.0, CORE_MIN(64.0, ceil(0.5e9 / flop)));
            gemm_run r = {ctx, OPS_GEMM_AUTO, OPS_GEMM_KERNEL_AUTO, &a, &b, &cc, M, N, K, batch, ta, tb, q, ha, hb, hc};
            /* rounds x backends, interleaved: each round times every backend once (seconds / rounds
             * each), so a neighbour's load on a shared machine falls on all of them alike; ratios to
             * the host BLAS are taken within a round, then their median */
            double times[N_BACKENDS][MAX_ROUNDS], err[N_BACKENDS] = {0};
            bench_timing tm[N_BACKENDS] = {{0}};
            int failed[N_BACKENDS] = {0};
            for (int round = 0; round < rounds; round++)
                for (int which = 0; which < N_BACKENDS; which++) {
                    bench_timing t = {-1, -1, 0};
                    if (!backend_wanted(which, backends, all_kernels) || failed[which]) continue;
                    if (which == 0) {
#ifdef ATTAMBA_HAVE_CBLAS
                        bench_time(run_host, &r, 2, seconds / rounds, &t);
#endif
                    } else {
                        use_backend(&r, which);
                        if (bench_time(run_device, &r, 2, seconds / rounds, &t) < 0) {
                            fprintf(stderr, "attamba bench gemm: %s failed: %s\n", backend_names[which], ctx->err);
                            failed[which] = 1;
                            continue;
                        }
                        if (round == 0 && tm[0].reps && tensor_download(&cc, dc) == ATTAMBA_OK)
                            err[which] = bench_max_rel_err(dc, hc, tc_);
                    }
                    times[which][round] = t.median / q;
                    if (!tm[which].reps || t.min / q < tm[which].min) tm[which].min = t.min / q;
                    tm[which].reps += t.reps * q;
                }
            char label[64];
            if (batch > 1)
                snprintf(label, sizeof label, "%dx%s", batch, tok);
            else
                snprintf(label, sizeof label, "%s", tok);
            for (int which = 0; which < N_BACKENDS; which++) {
                if (!tm[which].reps) continue;
                double ratios[MAX_ROUNDS]; /* before the median sorts times[which] */
                for (int i = 0; i < rounds; i++) ratios[i] = tm[0].reps ? times[0][i] / times[which][i] : 0;
                tm[which].median = bench_median(times[which], rounds);
                double t = tm[which].median, ratio = bench_median(ratios, rounds);
                printf("%-18s %-5s %-12s %10.2f %10.1f %9.1f %9.2fx %9.1e\n", label, op, backend_names[which],
                       1e3 * t, flop / t * 1e-9, bytes / t * 1e-9, ratio, err[which]);
                fflush(stdout);
                char variant[32];
                snprintf(variant, sizeof variant, "%s %s", backend_names[which], op);
                cJSON *o = bench_entry(ctx, "gemm", "gemm", label, variant, &tm[which], flop, bytes);
                if (which == 0) {
                    cJSON_AddBoolToObject(o, "on_host", 1);
                } else {
                    use_backend(&r, which);
                    int bad;
                    attamba_counters k = bench_count(ctx, run_device, &r, &bad);
                    if (!bad) bench_entry_counters(o, &k, q);
                }
                cJSON_AddStringToObject(o, "backend", backend_names[which]);
                cJSON_AddNumberToObject(o, "M", M);
                cJSON_AddNumberToObject(o, "N", N);
                cJSON_AddNumberToObject(o, "K", K);
                cJSON_AddNumberToObject(o, "batch", batch);
                cJSON_AddNumberToObject(o, "rounds", rounds);
                cJSON_AddNumberToObject(o, "queue", q);
                cJSON_AddBoolToObject(o, "trans_a", ta);
                cJSON_AddBoolToObject(o, "trans_b", tb);
                if (ratio > 0) cJSON_AddNumberToObject(o, "ratio_to_host_blas", ratio);
                if (which) cJSON_AddNumberToObject(o, "max_rel_err", err[which]);
                cJSON_AddItemToArray(out, o);
            }
            tensor_free(&a);
            tensor_free(&b);
            tensor_free(&cc);
        }
    next:
        tensor_free(&a);
        tensor_free(&b);
        tensor_free(&cc);
        free(ha);
        free(hb);
        free(hc);
        free(dc);
    }
    free(cases);
    free(tlist);
    if (!rc && json && bench_write_json(out, json)) rc = cli_error("bench gemm", "cannot write %s", json);
    if (ctx->profiling) rt_profile_print(ctx, stderr); /* ATTAMBA_PROFILE=1: the packing passes apart */
    cJSON_Delete(out);
    attamba_context_destroy(ctx);
    return rc;
}
