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
#include "ops/ops.h"

typedef struct {
    rt_ctx *ctx;
    ops_gemm_backend backend;
    ops_gemm_kernel kernel; /* for backend OWN */
    tensor *a, *b, *c;
    int M, N, K, batch, ta, tb;
    const float *ha, *hb;
    float *hc;
} gemm_run;

static int run_device(void *p) {
    gemm_run *r = p;
    attamba_status s = r->backend == OPS_GEMM_OWN
                           ? ops_gemm_own(r->ctx, r->kernel, r->ta, r->tb, 1.0f, r->a, r->b, 0.0f, r->c)
                           : ops_gemm_with(r->ctx, r->backend, r->ta, r->tb, 1.0f, r->a, r->b, 0.0f, r->c);
    if (s) return 1;
    return rt_finish(r->ctx) != ATTAMBA_OK;
}

#ifdef ATTAMBA_HAVE_CBLAS
static int run_host(void *p) {
    gemm_run *r = p;
    size_t sa = (size_t)r->M * r->K, sb = (size_t)r->K * r->N, sc = (size_t)r->M * r->N;
    for (int i = 0; i < r->batch; i++)
        cblas_sgemm(CblasRowMajor, r->ta ? CblasTrans : CblasNoTrans, r->tb ? CblasTrans : CblasNoTrans, r->M, r->N,
                    r->K, 1.0f, r->ha + i * sa, r->ta ? r->M : r->K, r->hb + i * sb, r->tb ? r->K : r->N, 0.0f,
                    r->hc + i * sc, r->N);
    return 0;
}
#endif

static void usage(FILE *f) {
    fprintf(f, "usage: attamba bench gemm [--device P:D] [--shapes MxNxK,...] [--trans nn,nt,tn,tt] [--batch B]\n"
               "                         [--kernels] [--seconds S] [--json FILE|-]\n\n"
               "Times C = op(A) op(B) (f32, row-major; t = transposed operand) with CLBlast, the own\n"
               "OpenCL kernels and the host CBLAS in the same run. Default shapes:\n"
               "4096x512x512,4096x1536x512,4096x32000x512, trans nn, batch 1. --kernels also times every\n"
               "own kernel (simple, tiles, local, dot) besides the one chosen for the device.\n");
}

int bench_gemm_main(int argc, char **argv) {
    static const struct option opts[] = {{"device", required_argument, 0, 'd'}, {"shapes", required_argument, 0, 's'},
                                         {"seconds", required_argument, 0, 't'}, {"json", required_argument, 0, 'j'},
                                         {"trans", required_argument, 0, 'T'}, {"batch", required_argument, 0, 'b'},
                                         {"kernels", no_argument, 0, 'k'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *device = NULL, *shapes = "4096x512x512,4096x1536x512,4096x32000x512", *json = NULL;
    const char *trans = "nn";
    double seconds = 1.0;
    int c, batch = 1, all_kernels = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:s:t:j:T:b:kh", opts, NULL)) != -1) {
        switch (c) {
        case 'd': device = optarg; break;
        case 's': shapes = optarg; break;
        case 'T': trans = optarg; break;
        case 'b': batch = atoi(optarg); break;
        case 'k': all_kernels = 1; break;
        case 't': seconds = atof(optarg); break;
        case 'j': json = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (batch < 1) {
        usage(stderr);
        return 2;
    }
    rt_ctx *ctx = cli_open_device(device);
    if (!ctx) return 1;
    printf("device: %s (%s)\n", ctx->dev.info.name, ctx->dev.info.platform_name);
    printf("%-18s %-5s %-12s %10s %10s %9s %10s %9s\n", "MxNxK", "op", "backend", "ms", "GFLOP/s", "GB/s", "vs host",
           "max err");
    cJSON *out = cJSON_CreateArray();
    int rc = 0;
    char *list = strdup(shapes), *tlist = strdup(trans);
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        int M, N, K;
        if (sscanf(tok, "%dx%dx%d", &M, &N, &K) != 3 || M < 1 || N < 1 || K < 1) {
            rc = cli_error("bench gemm", "bad shape '%s' (want MxNxK)", tok);
            break;
        }
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
        for (char *tsave = NULL, *op = strtok_r(strcpy(tlist, trans), ",", &tsave); op && !rc;
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
            gemm_run r = {ctx, OPS_GEMM_AUTO, OPS_GEMM_KERNEL_AUTO, &a, &b, &cc, M, N, K, batch, ta, tb, ha, hb, hc};
            double flop = 2.0 * batch * M * N * K, bytes = 4.0 * (double)(ta_ + tb_ + tc_), host_s = -1;
            static const char *const names[] = {"host-blas", "clblast", "own", "own-simple", "own-tiles", "own-local",
                                                 "own-dot"};
            for (int which = 0; which < 7; which++) {
                double t;
                double err = 0;
                bench_timing tm;
                if (which == 0) {
#ifdef ATTAMBA_HAVE_CBLAS
                    t = bench_time(run_host, &r, 2, seconds, &tm);
#else
                    continue;
#endif
                } else {
                    if (which == 1 && !ops_gemm_have_clblast()) continue;
                    if (which >= 3 && !all_kernels) break;
                    r.backend = which == 1 ? OPS_GEMM_CLBLAST : OPS_GEMM_OWN;
                    r.kernel = which >= 3 ? (ops_gemm_kernel)(which - 2) : OPS_GEMM_KERNEL_AUTO;
                    t = bench_time(run_device, &r, 2, seconds, &tm);
                    if (t < 0) {
                        fprintf(stderr, "attamba bench gemm: %s failed: %s\n", names[which], ctx->err);
                        continue;
                    }
                    if (tensor_download(&cc, dc) == ATTAMBA_OK && host_s > 0) err = bench_max_rel_err(dc, hc, tc_);
                }
                if (which == 0) host_s = t;
                double ratio = host_s > 0 ? host_s / t : 0;
                char label[64];
                if (batch > 1)
                    snprintf(label, sizeof label, "%dx%s", batch, tok);
                else
                    snprintf(label, sizeof label, "%s", tok);
                printf("%-18s %-5s %-12s %10.2f %10.1f %9.1f %9.2fx %9.1e\n", label, op, names[which], 1e3 * t,
                       flop / t * 1e-9, bytes / t * 1e-9, ratio, err);
                fflush(stdout);
                char variant[32];
                snprintf(variant, sizeof variant, "%s %s", names[which], op);
                cJSON *o = bench_entry(ctx, "gemm", "gemm", label, variant, &tm, flop, bytes);
                if (which == 0) cJSON_AddBoolToObject(o, "on_host", 1);
                else bench_entry_count(o, ctx, run_device, &r);
                cJSON_AddStringToObject(o, "backend", names[which]);
                cJSON_AddNumberToObject(o, "M", M);
                cJSON_AddNumberToObject(o, "N", N);
                cJSON_AddNumberToObject(o, "K", K);
                cJSON_AddNumberToObject(o, "batch", batch);
                cJSON_AddBoolToObject(o, "trans_a", ta);
                cJSON_AddBoolToObject(o, "trans_b", tb);
                if (ratio > 0) cJSON_AddNumberToObject(o, "ratio_to_host_blas", ratio);
                if (which) cJSON_AddNumberToObject(o, "max_rel_err", err);
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
    free(list);
    free(tlist);
    if (!rc && json && bench_write_json(out, json)) rc = cli_error("bench gemm", "cannot write %s", json);
    cJSON_Delete(out);
    attamba_context_destroy(ctx);
    return rc;
}
