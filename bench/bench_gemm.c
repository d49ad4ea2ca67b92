/* attamba bench gemm: GEMM throughput of CLBlast, the own kernel and the host's CBLAS (OpenBLAS),
 * measured in the same run on the same shapes (by default those of a d=512 model with 4096 tokens
 * per batch), with each one's ratio to the host BLAS. */
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
    tensor *a, *b, *c;
    int M, N, K;
    const float *ha, *hb;
    float *hc;
} gemm_run;

static int run_device(void *p) {
    gemm_run *r = p;
    if (ops_gemm_with(r->ctx, r->backend, 0, 0, 1.0f, r->a, r->b, 0.0f, r->c)) return 1;
    return rt_finish(r->ctx) != ATTAMBA_OK;
}

#ifdef ATTAMBA_HAVE_CBLAS
static int run_host(void *p) {
    gemm_run *r = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r->M, r->N, r->K, 1.0f, r->ha, r->K, r->hb, r->N,
                0.0f, r->hc, r->N);
    return 0;
}
#endif

static void usage(FILE *f) {
    fprintf(f, "usage: attamba bench gemm [--device P:D] [--shapes MxNxK,...] [--seconds S] [--json FILE|-]\n\n"
               "Times C = A B (f32, row-major) with CLBlast, the own OpenCL kernel and the host CBLAS\n"
               "in the same run. Default shapes: 4096x512x512,4096x1536x512,4096x32000x512.\n");
}

static double max_rel_err(const float *x, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)x[i] - ref[i]));
        den = fmax(den, fabs((double)ref[i]));
    }
    return den > 0 ? num / den : num;
}

int bench_gemm_main(int argc, char **argv) {
    static const struct option opts[] = {{"device", required_argument, 0, 'd'}, {"shapes", required_argument, 0, 's'},
                                         {"seconds", required_argument, 0, 't'}, {"json", required_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *device = NULL, *shapes = "4096x512x512,4096x1536x512,4096x32000x512", *json = NULL;
    double seconds = 1.0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:s:t:j:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': device = optarg; break;
        case 's': shapes = optarg; break;
        case 't': seconds = atof(optarg); break;
        case 'j': json = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    rt_ctx *ctx = cli_open_device(device);
    if (!ctx) return 1;
    printf("device: %s (%s)\n", ctx->dev.info.name, ctx->dev.info.platform_name);
    printf("%-18s %-10s %10s %10s %9s %10s %9s\n", "MxNxK", "backend", "ms", "GFLOP/s", "GB/s", "vs host", "max err");
    cJSON *out = cJSON_CreateArray();
    int rc = 0;
    char *list = strdup(shapes);
    for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        int M, N, K;
        if (sscanf(tok, "%dx%dx%d", &M, &N, &K) != 3 || M < 1 || N < 1 || K < 1) {
            rc = cli_error("bench gemm", "bad shape '%s' (want MxNxK)", tok);
            break;
        }
        size_t na = (size_t)M * K, nb = (size_t)K * N, nc = (size_t)M * N;
        float *ha = malloc(na * 4), *hb = malloc(nb * 4), *hc = malloc(nc * 4), *dc = malloc(nc * 4);
        tensor a = {0}, b = {0}, cc = {0};
        if (!ha || !hb || !hc || !dc) {
            rc = cli_error("bench gemm", "out of host memory for %s", tok);
            goto next;
        }
        core_rng rng;
        core_rng_seed(&rng, 1);
        for (size_t i = 0; i < na; i++) ha[i] = core_rng_uniform(&rng) - 0.5f;
        for (size_t i = 0; i < nb; i++) hb[i] = core_rng_uniform(&rng) - 0.5f;
        if (tensor_alloc_f32(ctx, &a, 2, ((int64_t[]){M, K})) || tensor_alloc_f32(ctx, &b, 2, ((int64_t[]){K, N})) ||
            tensor_alloc_f32(ctx, &cc, 2, ((int64_t[]){M, N})) || tensor_upload(&a, ha) || tensor_upload(&b, hb)) {
            rc = cli_error("bench gemm", "%s", ctx->err);
            goto next;
        }
        gemm_run r = {ctx, OPS_GEMM_AUTO, &a, &b, &cc, M, N, K, ha, hb, hc};
        double flop = 2.0 * M * N * K, bytes = 4.0 * (double)(na + nb + nc), host_s = -1;
        const char *names[3] = {"host-blas", "clblast", "own"};
        for (int which = 0; which < 3; which++) {
            double t;
            double err = 0;
            if (which == 0) {
#ifdef ATTAMBA_HAVE_CBLAS
                t = bench_time(run_host, &r, 2, seconds);
#else
                continue;
#endif
            } else {
                if (which == 1 && !ops_gemm_have_clblast()) continue;
                r.backend = which == 1 ? OPS_GEMM_CLBLAST : OPS_GEMM_OWN;
                t = bench_time(run_device, &r, 2, seconds);
                if (t < 0) {
                    fprintf(stderr, "attamba bench gemm: %s failed: %s\n", names[which], ctx->err);
                    continue;
                }
                if (tensor_download(&cc, dc) == ATTAMBA_OK && host_s > 0) err = max_rel_err(dc, hc, nc);
            }
            if (which == 0) host_s = t;
            double ratio = host_s > 0 ? host_s / t : 0;
            printf("%-18s %-10s %10.2f %10.1f %9.1f %9.2fx %9.1e\n", tok, names[which], 1e3 * t, flop / t * 1e-9,
                   bytes / t * 1e-9, ratio, err);
            fflush(stdout);
            cJSON *o = bench_record(ctx, "gemm");
            cJSON_AddStringToObject(o, "backend", names[which]);
            cJSON_AddNumberToObject(o, "M", M);
            cJSON_AddNumberToObject(o, "N", N);
            cJSON_AddNumberToObject(o, "K", K);
            cJSON_AddNumberToObject(o, "ms", 1e3 * t);
            cJSON_AddNumberToObject(o, "gflops", flop / t * 1e-9);
            cJSON_AddNumberToObject(o, "gbs", bytes / t * 1e-9);
            if (ratio > 0) cJSON_AddNumberToObject(o, "ratio_to_host_blas", ratio);
            if (which) cJSON_AddNumberToObject(o, "max_rel_err", err);
            cJSON_AddItemToArray(out, o);
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
    if (!rc && json && bench_write_json(out, json)) rc = cli_error("bench gemm", "cannot write %s", json);
    cJSON_Delete(out);
    attamba_context_destroy(ctx);
    return rc;
}
