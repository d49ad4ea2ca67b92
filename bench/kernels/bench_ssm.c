/* attamba bench ssm: the K/V-SSM kernels at the paper's sizes (E=256, nh=8, p=32, N=32, G=1, w=4):
 * conv1d over [xs, Bm, Cm], the SSM scan on its paths (sequential over segments, chunked over
 * blocks, quadratic within segments up to QUAD_BENCH_MAX tokens), and the decode steps (conv1d_step and
 * ssm_step one call at a time, each waited for; ssm_decode, both SSMs of a layer in one launch, 64 calls
 * back to back as a model step enqueues them), next to the device's copy bandwidth measured in the same run.
 * Byte model (compulsory traffic, f32): conv1d reads x and writes out once (2*B*T*C*4, C = E+2GN);
 * the scan reads xs, Bm, Cm, dt_raw once and writes y and final_state once
 * (B*T*(2E+2GN+nh)*4 + B*nh*p*N*4). The chunked path's scratch states are extra traffic not
 * credited, so its GB/s understate what it moves. Yardsticks: tensor_copy of 64 MiB (reads + writes;
 * clEnqueueCopyBuffer, one thread on PoCL) and the device's ceilings (bench peak: the better of a copy
 * kernel and that, the FMA peak); "of copy" is against the copy ceiling, "of roof" against the time the
 * ceilings allow for the entry's bytes and FLOPs (the scan's recurrence does 5 p N FLOPs per token and
 * head, more than its bytes allow on CPUs: it is FMA-bound there).
 * Backward (training): conv1d_bwd (silu, dx and dw) reads x and dout and writes dx (3*B*T*C*4);
 * ssm_scan_bwd (all gradients) reads xs, Bm, Cm, dt_raw, dy and writes dxs, dBm, dCm, ddt_raw
 * (B*T*(3E+4GN+2nh)*4); its scratch (2*B*T*nh*N + 8*B*T*nh floats) is not credited. Their "ratio"
 * column is backward time / forward time (the faster forward path for the scan). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_peak.h"
#include "bench_util.h"
#include "cli.h"
#include "ops/boundaries.h"
#include "ops/ssm.h"

enum { QUAD_BENCH_MAX = 256 };

typedef struct {
    rt_ctx *ctx;
    int which; /* 0 copy, 1 conv1d, 2 scan, 3 conv1d_step, 4 ssm_step, 5 conv1d_backward, 6 scan backward,
                * 7 ssm_decode of two SSMs, `queue` calls back to back */
    ops_ssm_path path;
    tensor *a, *b, *c, *d, *e, *f, *g, *h, *i, *j, *k, *l, *m, *n;
    int G, queue;
    const ops_ssm_decode_io *io;
} ssm_run;

static int run(void *arg) {
    ssm_run *r = arg;
    attamba_status s = ATTAMBA_OK;
    switch (r->which) {
    case 0: s = tensor_copy(r->b, r->a); break;
    case 1: s = ops_conv1d(r->ctx, r->a, r->b, r->c, 1, r->d); break;
    case 2: s = ops_ssm_scan_with(r->ctx, &(ops_ssm_opts){r->path, 0, 0}, r->a, r->b, r->c, r->d, NULL, r->e, r->f, r->g, r->G, r->h, r->i); break;
    case 3: s = ops_conv1d_step(r->ctx, r->a, r->b, r->c, r->d, 1, r->e); break;
    case 4: s = ops_ssm_step(r->ctx, r->a, r->b, r->c, r->d, NULL, r->e, r->f, r->g, r->G, r->h, r->i); break;
    case 5: s = ops_conv1d_backward(r->ctx, r->a, r->b, r->c, 1, r->d, r->e, r->f); break;
    case 7:
        for (int i = 0; i < r->queue && !s; i++) s = ops_ssm_decode(r->ctx, 2, r->io, r->a, r->b, r->G, 1e-5f);
        break;
    case 6:
        s = ops_ssm_scan_backward(r->ctx, r->a, r->b, r->c, r->d, NULL, r->e, r->f, r->g, r->G, r->h, r->i, r->j, r->k,
                                  r->l, NULL, r->m, r->n);
        break;
    }
    if (s) return 1;
    return rt_finish(r->ctx) != ATTAMBA_OK;
}

static void usage(FILE *f) {
    fprintf(f, "usage: attamba bench ssm [--device P:D] [--T 1024,4096] [--P 8,64,T] [--batch B]\n"
               "                         [--state N] [--seconds S] [--json FILE|-]\n\n"
               "Times conv1d, the SSM scan (sequential and chunked paths), their backward passes and the\n"
               "decode steps (ssm_decode: a layer's two SSMs in one launch, per call of 64 back to back)\n"
               "at the paper's sizes (E=256, nh=8, p=32, G=1, w=4; N=32 unless --state),\n"
               "uniform boundaries every P tokens (P=T: one long segment), next to a copy kernel's\n"
               "bandwidth. ratio: chunked speedup vs sequential; for *_bwd, backward / forward time.\n");
}

static tensor rand_tensor(rt_ctx *ctx, int ndim, const int64_t *shape, float lo, float hi, uint64_t seed, int *fail) {
    tensor t = {0};
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    float *h = malloc((size_t)n * sizeof *h);
    core_rng rng;
    core_rng_seed(&rng, seed);
    for (int64_t i = 0; h && i < n; i++) h[i] = lo + (hi - lo) * core_rng_uniform(&rng);
    if (!h || tensor_alloc_f32(ctx, &t, ndim, shape) || tensor_upload(&t, h)) *fail = 1;
    free(h);
    return t;
}

/* The yardsticks: tensor_copy of 64 MiB, and the device's ceilings (bench peak: the better of a copy
 * kernel and clEnqueueCopyBuffer, the FMA throughput). */
typedef struct {
    double tensor_copy_gbs, copy_gbs, fma_gflops;
} yardstick;

/* ratio_seq: printed in the last column and stored under ratio_key (speedup vs sequential, or
 * backward / forward time); 0 = none. "of copy" is against the copy ceiling, "of roof" the time the
 * ceilings allow (bytes at the copy ceiling or flop at the FMA peak, the longer) over the time taken. */
static void record(cJSON *out, ssm_run *r, const char *op, const char *path, int B, int T, int P, int N,
                   const bench_timing *tm, double bytes, double flop, const yardstick *y, double ratio_seq,
                   const char *ratio_key) {
    double s = tm->median, gbs = bytes / s * 1e-9, roof = fmax(bytes / y->copy_gbs, flop / y->fma_gflops) * 1e-9 / s;
    printf("%-12s %-11s %3d %6d %6d %10.3f %9.2f %8.0f%% %8.2f %7.0f%%", op, path, B, T, P, 1e3 * s, gbs,
           100 * gbs / y->copy_gbs, flop / s * 1e-9, 100 * roof);
    if (ratio_seq > 0) printf(" %9.2fx", ratio_seq);
    printf("\n");
    fflush(stdout);
    char shape[64];
    snprintf(shape, sizeof shape, "B=%d T=%d P=%d N=%d", B, T, P, N);
    cJSON *o = bench_entry(r->ctx, "ssm", op, shape, path, tm, flop, bytes);
    bench_entry_count(o, r->ctx, run, r);
    cJSON_AddStringToObject(o, "path", path);
    cJSON_AddNumberToObject(o, "B", B);
    cJSON_AddNumberToObject(o, "T", T);
    cJSON_AddNumberToObject(o, "P", P);
    cJSON_AddNumberToObject(o, "E", 256);
    cJSON_AddNumberToObject(o, "nh", 8);
    cJSON_AddNumberToObject(o, "N", N);
    cJSON_AddNumberToObject(o, "ratio_to_copy", gbs / y->copy_gbs);
    cJSON_AddNumberToObject(o, "ratio_to_tensor_copy", gbs / y->tensor_copy_gbs);
    cJSON_AddNumberToObject(o, "ratio_to_roofline", roof);
    if (ratio_seq > 0) cJSON_AddNumberToObject(o, ratio_key, ratio_seq);
    cJSON_AddItemToArray(out, o);
}

/* The decode step of an Attamba layer's two SSMs in one launch (ops_ssm_decode: ring conv, SiLU, state
 * step, gated norm; the model's ssm_decode, or the SSM part of ssm_decode_append), B sequences
 * continuing a segment at position 100, timed as QUEUE calls back to back (as a model step enqueues them:
 * no wait per call, so PoCL's gap between kernels is in the time). Bytes: per SSM and sequence the
 * xbcdt and z rows, the window ring read and its slot written, the state read and written, g written;
 * per SSM the conv, norm and per-head weights. */
static int bench_decode_step(rt_ctx *ctx, cJSON *out, int B, int N, double seconds, const yardstick *ys) {
    enum { QUEUE = 64, E = 256, nh = 8, p = 32, G = 1, W = 4 };
    const int GN = G * N, C = E + 2 * GN, F = C + nh;
    int fail = 0, rc = 0;
    tensor x = rand_tensor(ctx, 3, (int64_t[]){2, B, F}, -2, 2, 21, &fail);
    tensor z = rand_tensor(ctx, 3, (int64_t[]){2, B, E}, -2, 2, 22, &fail);
    tensor cw = rand_tensor(ctx, 3, (int64_t[]){2, C, W}, -0.5f, 0.5f, 23, &fail);
    tensor win = rand_tensor(ctx, 4, (int64_t[]){2, B, W, C}, -1, 1, 24, &fail);
    tensor bias = rand_tensor(ctx, 2, (int64_t[]){2, nh}, -1, 1, 25, &fail);
    tensor al = rand_tensor(ctx, 2, (int64_t[]){2, nh}, -4, 0.7f, 26, &fail);
    tensor D = rand_tensor(ctx, 2, (int64_t[]){2, nh}, 0.5f, 1.5f, 27, &fail);
    tensor nw = rand_tensor(ctx, 2, (int64_t[]){2, E}, 0.5f, 1.5f, 28, &fail);
    tensor st = rand_tensor(ctx, 2, (int64_t[]){2, (int64_t)B * E * N}, -1, 1, 29, &fail);
    tensor g = rand_tensor(ctx, 3, (int64_t[]){2, B, E}, 0, 1, 30, &fail);
    tensor pos = {0}, sf = {0}, v[2][10];
    memset(v, 0, sizeof v);
    int32_t *hp = malloc((size_t)B * sizeof *hp), *hs = malloc((size_t)B * sizeof *hs);
    for (int b = 0; hp && hs && b < B; b++) hp[b] = 100, hs[b] = 96;
    if (fail || !hp || !hs || tensor_alloc(ctx, &pos, TENSOR_I32, 1, (int64_t[]){B}) || tensor_upload(&pos, hp) ||
        tensor_alloc(ctx, &sf, TENSOR_I32, 1, (int64_t[]){B}) || tensor_upload(&sf, hs))
        fail = 1;
    ops_ssm_decode_io io[2];
    const tensor *all[10] = {&x, &z, &cw, &win, &bias, &al, &D, &nw, &st, &g};
    for (int i = 0; i < 2 && !fail; i++) {
        for (int k = 0; k < 10; k++) fail |= tensor_index(all[k], i, &v[i][k]) != ATTAMBA_OK;
        tensor *sv = &v[i][8]; /* [B * E * N] as [B, nh, p, N] */
        int64_t ss[4] = {B, nh, p, N}, sst[4] = {(int64_t)E * N, (int64_t)p * N, N, 1};
        sv->ndim = 4;
        memcpy(sv->shape, ss, sizeof ss), memcpy(sv->stride, sst, sizeof sst);
        io[i] = (ops_ssm_decode_io){&v[i][0], &v[i][1], &v[i][2], &v[i][4], &v[i][5], &v[i][6], &v[i][7],
                                    &v[i][3], &v[i][8], &v[i][9]};
    }
    if (fail) {
        rc = cli_error("bench ssm", "decode step setup: %s", ctx->err);
    } else {
        ssm_run r = {.ctx = ctx, .which = 7, .a = &pos, .b = &sf, .G = G, .queue = QUEUE, .io = io};
        bench_timing tm;
        if (bench_time(run, &r, 3, seconds, &tm) < 0) {
            rc = cli_error("bench ssm", "decode step: %s", ctx->err);
        } else {
            tm.median /= QUEUE, tm.min /= QUEUE, r.queue = 1; /* per call; the counters of one call */
            double bytes = 2.0 * 4 * ((double)B * (F + E + W * C + C + 2.0 * E * N + E) + C * W + 3 * nh + E);
            double flop = 2.0 * B * (2.0 * W * C + 5.0 * E * N + 10.0 * E);
            record(out, &r, "ssm_decode", "2 SSMs", B, 1, 0, N, &tm, bytes, flop, ys, 0, NULL);
        }
    }
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 10; k++) tensor_free(&v[i][k]);
    for (int k = 0; k < 10; k++) tensor_free((tensor *)all[k]);
    tensor_free(&pos), tensor_free(&sf);
    free(hp), free(hs);
    return rc;
}

int bench_ssm_main(int argc, char **argv) {
    static const struct option opts[] = {{"device", required_argument, 0, 'd'}, {"T", required_argument, 0, 'T'},
                                         {"P", required_argument, 0, 'P'},      {"batch", required_argument, 0, 'b'},
                                         {"state", required_argument, 0, 'n'},  {"seconds", required_argument, 0, 't'},
                                         {"json", required_argument, 0, 'j'},   {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *device = NULL, *Ts = "1024,4096", *Ps = "8,64,T", *json = NULL;
    double seconds = 0.5;
    int B = 1, N = 32, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:T:P:b:n:t:j:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': device = optarg; break;
        case 'T': Ts = optarg; break;
        case 'P': Ps = optarg; break;
        case 'b': B = atoi(optarg); break;
        case 'n': N = atoi(optarg); break;
        case 't': seconds = atof(optarg); break;
        case 'j': json = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (B < 1 || N < 1 || N > 256) return cli_error("bench ssm", "need --batch >= 1 and 1 <= --state <= 256");
    const int E = 256, nh = 8, p = 32, G = 1, W = 4, GN = G * N, C = E + 2 * GN;
    rt_ctx *ctx = cli_open_device(device);
    if (!ctx) return 1;
    printf("device: %s (%s)\n", ctx->dev.info.name, ctx->dev.info.platform_name);
    cJSON *out = cJSON_CreateArray();
    int rc = 0, fail = 0;
    yardstick ys = {1, 1, 1};
    bench_timing tm;

    /* the yardstick: a streaming copy of 64 MiB */
    int64_t ncopy = 16 << 20;
    tensor c0 = rand_tensor(ctx, 1, &ncopy, 0, 1, 1, &fail), c1 = {0};
    if (fail || tensor_alloc_f32(ctx, &c1, 1, &ncopy)) {
        rc = cli_error("bench ssm", "%s", ctx->err);
        goto done_copy;
    }
    ssm_run cr = {.ctx = ctx, .which = 0, .a = &c0, .b = &c1};
    double copy_s = bench_time(run, &cr, 3, seconds, &tm);
    if (copy_s <= 0) {
        rc = cli_error("bench ssm", "copy: %s", ctx->err);
        goto done_copy;
    }
    ys.tensor_copy_gbs = 8.0 * ncopy / copy_s * 1e-9;
    bench_peak pk;
    if (bench_peak_measure(ctx, 0.25, &pk)) {
        rc = cli_error("bench ssm", "the device's ceilings: %s", ctx->err);
        goto done_copy;
    }
    ys.copy_gbs = fmax(pk.copy_gbs, ys.tensor_copy_gbs), ys.fma_gflops = pk.fma_gflops;
    printf("tensor_copy of 64 MiB: %.3f ms, %.2f GB/s (read + write); ceilings (bench peak): copy %.2f GB/s, FMA "
           "%.1f GFLOP/s\n\n", 1e3 * copy_s, ys.tensor_copy_gbs, ys.copy_gbs, ys.fma_gflops);
    printf("%-12s %-11s %3s %6s %6s %10s %9s %9s %8s %8s %10s\n", "op", "path", "B", "T", "P", "ms", "GB/s", "of copy",
           "GFLOP/s", "of roof", "ratio");
    cJSON *co = bench_entry(ctx, "ssm", "copy", "[16777216]", "tensor_copy", &tm, 0, 8.0 * ncopy);
    bench_entry_count(co, ctx, run, &cr);
    cJSON_AddItemToArray(out, co);
done_copy:
    tensor_free(&c0);
    tensor_free(&c1);

    char *tl = strdup(Ts);
    for (char *s1 = NULL, *tt = strtok_r(tl, ",", &s1); tt && !rc; tt = strtok_r(NULL, ",", &s1)) {
        int T = atoi(tt);
        if (T < 1) {
            rc = cli_error("bench ssm", "bad T '%s'", tt);
            break;
        }
        char *pl = strdup(Ps);
        for (char *s2 = NULL, *pp = strtok_r(pl, ",", &s2); pp && !rc; pp = strtok_r(NULL, ",", &s2)) {
            int P = !strcmp(pp, "T") ? T : atoi(pp);
            if (P < 1) {
                rc = cli_error("bench ssm", "bad P '%s' (a number or T)", pp);
                break;
            }
            boundary_spec spec = {.strategy = BOUNDARY_UNIFORM, .chunk = P};
            int64_t *pos = malloc((size_t)T * sizeof *pos);
            int32_t *seg = malloc((size_t)T * sizeof *seg);
            int64_t nb = boundary_positions(&spec, 0, 1, T, pos, T);
            boundary_segment_starts(pos, nb, T, seg);
            free(pos);
            fail = 0;
            int64_t Ti = T;
            tensor ts = {0}, x = rand_tensor(ctx, 3, (int64_t[]){B, T, C}, -1, 1, 2, &fail);
            tensor w = rand_tensor(ctx, 2, (int64_t[]){C, W}, -0.5f, 0.5f, 3, &fail);
            tensor xs = rand_tensor(ctx, 3, (int64_t[]){B, T, E}, -1, 1, 4, &fail);
            tensor bm = rand_tensor(ctx, 3, (int64_t[]){B, T, GN}, -1, 1, 5, &fail);
            tensor cm = rand_tensor(ctx, 3, (int64_t[]){B, T, GN}, -1, 1, 6, &fail);
            tensor dt = rand_tensor(ctx, 3, (int64_t[]){B, T, nh}, -4, 1, 7, &fail);
            tensor al = rand_tensor(ctx, 1, (int64_t[]){nh}, -4, 0.7f, 8, &fail);
            tensor D = rand_tensor(ctx, 1, (int64_t[]){nh}, 0.5f, 1.5f, 9, &fail);
            tensor conv_out = {0}, y = {0}, y2 = {0}, fin = {0};
            if (fail || tensor_alloc(ctx, &ts, TENSOR_I32, 1, &Ti) || tensor_upload(&ts, seg) ||
                tensor_alloc_f32(ctx, &conv_out, 3, x.shape) || tensor_alloc_f32(ctx, &y, 3, xs.shape) ||
                tensor_alloc_f32(ctx, &y2, 3, xs.shape) ||
                tensor_alloc_f32(ctx, &fin, 4, ((int64_t[]){B, nh, p, N}))) {
                rc = cli_error("bench ssm", "setup: %s", ctx->err);
                goto next;
            }
            ssm_run r = {.ctx = ctx, .which = 1, .a = &x, .b = &w, .c = &ts, .d = &conv_out};
            double t = bench_time(run, &r, 3, seconds, &tm);
            if (t < 0) {
                rc = cli_error("bench ssm", "conv1d: %s", ctx->err);
                goto next;
            }
            record(out, &r, "conv1d", "-", B, T, P, N, &tm, 2.0 * B * T * C * 4, 2.0 * W * B * T * C, &ys, 0, NULL);
            double bytes = 4.0 * B * T * (2 * E + 2 * GN + nh) + 4.0 * B * nh * p * N, seq_s = 0, fwd_s = 0;
            double conv_s = t;
            /* the recurrence: S = a S + u B^T (a multiply, a multiply-add) and y = S C (a multiply-add) per
             * state element; the quadratic form: per pair (s <= t in a segment) C_t . B_s once per group and
             * a multiply-add per channel of each head */
            double scan_flop = 5.0 * B * T * nh * p * N, pairs = 0;
            for (int i = 0; i < T; i++) pairs += i - seg[i] + 1;
            double quad_flop = B * pairs * (2.0 * G * N + 2.0 * nh * p);
            /* the quadratic path does (P + 1) / 2 steps per token: timed for segments up to QUAD_BENCH_MAX */
            for (int path = OPS_SSM_SEQUENTIAL; path <= OPS_SSM_QUADRATIC && !rc; path++) {
                if (path == OPS_SSM_QUADRATIC && P > QUAD_BENCH_MAX) continue;
                ssm_run sr = {ctx, 2, (ops_ssm_path)path, &xs, &bm, &cm, &dt, &al, &D, &ts,
                              path == OPS_SSM_SEQUENTIAL ? &y : &y2, &fin, .G = G};
                t = bench_time(run, &sr, 3, seconds, &tm);
                if (t < 0) {
                    rc = cli_error("bench ssm", "scan: %s", ctx->err);
                    break;
                }
                fwd_s = path == OPS_SSM_SEQUENTIAL ? t : fmin(fwd_s, t);
                if (path == OPS_SSM_SEQUENTIAL) seq_s = t;
                record(out, &sr, "ssm_scan", ops_ssm_path_name((ops_ssm_path)path), B, T, P, N, &tm, bytes,
                       path == OPS_SSM_QUADRATIC ? quad_flop : scan_flop, &ys, path != OPS_SSM_SEQUENTIAL ? seq_s / t : 0,
                       "speedup_vs_sequential");
                if (path != OPS_SSM_SEQUENTIAL) { /* paths must agree; a benchmark of wrong answers is worthless */
                    size_t n = (size_t)B * T * E;
                    float *a = malloc(n * 4), *b2 = malloc(n * 4);
                    double md = 0, mx = 0;
                    if (a && b2 && !tensor_download(&y, a) && !tensor_download(&y2, b2))
                        for (size_t i = 0; i < n; i++) md = fmax(md, fabs(a[i] - b2[i])), mx = fmax(mx, fabs(a[i]));
                    printf("%-12s max |sequential - %s| = %.2e (max |y| = %.2f)\n", "",
                           ops_ssm_path_name((ops_ssm_path)path), md, mx);
                    free(a), free(b2);
                }
            }
            if (!rc) { /* backward: all gradients, as training needs them */
                tensor gx = {0}, gw = {0}, gxs = {0}, gbm = {0}, gcm = {0}, gdt = {0}, ga = {0}, gD = {0};
                if (tensor_alloc_f32(ctx, &gx, 3, x.shape) || tensor_alloc_f32(ctx, &gw, 2, w.shape) ||
                    tensor_fill(&gw, 0) || tensor_alloc_f32(ctx, &gxs, 3, xs.shape) ||
                    tensor_alloc_f32(ctx, &gbm, 3, bm.shape) || tensor_alloc_f32(ctx, &gcm, 3, cm.shape) ||
                    tensor_alloc_f32(ctx, &gdt, 3, dt.shape) || tensor_alloc_f32(ctx, &ga, 1, (int64_t[]){nh}) ||
                    tensor_fill(&ga, 0) || tensor_alloc_f32(ctx, &gD, 1, (int64_t[]){nh}) || tensor_fill(&gD, 0)) {
                    rc = cli_error("bench ssm", "backward setup: %s", ctx->err);
                } else {
                    /* dout / dy: the forward outputs serve as any upstream gradient */
                    ssm_run br = {.ctx = ctx, .which = 5, .a = &x, .b = &w, .c = &ts, .d = &conv_out, .e = &gx, .f = &gw};
                    t = bench_time(run, &br, 3, seconds, &tm);
                    if (t < 0) rc = cli_error("bench ssm", "conv1d backward: %s", ctx->err);
                    else record(out, &br, "conv1d_bwd", "-", B, T, P, N, &tm, 3.0 * B * T * C * 4,
                                6.0 * W * B * T * C, &ys, t / conv_s, "ratio_to_forward");
                    ssm_run sr = {ctx, 6, OPS_SSM_AUTO, &xs, &bm, &cm, &dt, &al, &D, &ts, &y, &gxs, &gbm, &gcm,
                                  &gdt, &ga, &gD, .G = G};
                    t = rc ? -1 : bench_time(run, &sr, 3, seconds, &tm);
                    if (!rc && t < 0) rc = cli_error("bench ssm", "scan backward: %s", ctx->err);
                    else if (!rc)
                        record(out, &sr, "ssm_scan_bwd", "-", B, T, P, N, &tm, 4.0 * B * T * (3 * E + 4 * GN + 2 * nh),
                               3 * scan_flop, &ys, t / fwd_s, "ratio_to_forward");
                }
                tensor *gs[] = {&gx, &gw, &gxs, &gbm, &gcm, &gdt, &ga, &gD};
                for (size_t i = 0; i < sizeof gs / sizeof gs[0]; i++) tensor_free(gs[i]);
            }
        next:
            free(seg);
            tensor *all[] = {&ts, &x, &w, &xs, &bm, &cm, &dt, &al, &D, &conv_out, &y, &y2, &fin};
            for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tensor_free(all[i]);
        }
        free(pl);
    }
    free(tl);

    if (!rc) { /* decode: one token per sequence, the per-layer state update of one SSM */
        fail = 0;
        int32_t *zr = calloc((size_t)B, sizeof *zr);
        tensor x = rand_tensor(ctx, 2, (int64_t[]){B, C}, -1, 1, 2, &fail), w = rand_tensor(ctx, 2, (int64_t[]){C, W}, -1, 1, 3, &fail);
        tensor cst = rand_tensor(ctx, 3, (int64_t[]){B, W - 1, C}, -1, 1, 4, &fail);
        tensor xs = rand_tensor(ctx, 2, (int64_t[]){B, E}, -1, 1, 5, &fail), bm = rand_tensor(ctx, 2, (int64_t[]){B, GN}, -1, 1, 6, &fail);
        tensor dt = rand_tensor(ctx, 2, (int64_t[]){B, nh}, -4, 1, 7, &fail), al = rand_tensor(ctx, 1, (int64_t[]){nh}, -4, 0.7f, 8, &fail);
        tensor D = rand_tensor(ctx, 1, (int64_t[]){nh}, 0.5f, 1.5f, 9, &fail);
        tensor st = rand_tensor(ctx, 4, (int64_t[]){B, nh, p, N}, -1, 1, 10, &fail);
        tensor o1 = rand_tensor(ctx, 2, (int64_t[]){B, C}, 0, 1, 11, &fail), o2 = rand_tensor(ctx, 2, (int64_t[]){B, E}, 0, 1, 12, &fail);
        tensor rs = {0};
        if (fail || tensor_alloc(ctx, &rs, TENSOR_I32, 1, (int64_t[]){B}) || tensor_upload(&rs, zr)) {
            rc = cli_error("bench ssm", "decode setup: %s", ctx->err);
        } else {
            ssm_run r1 = {.ctx = ctx, .which = 3, .a = &x, .b = &w, .c = &cst, .d = &rs, .e = &o1};
            double t1 = bench_time(run, &r1, 10, seconds, &tm);
            record(out, &r1, "conv1d_step", "-", B, 1, 0, N, &tm, 4.0 * B * (2 * C + 2 * (W - 1) * C), 2.0 * W * B * C, &ys,
                   0, NULL);
            ssm_run r2 = {ctx, 4, OPS_SSM_AUTO, &xs, &bm, &bm, &dt, &al, &D, &rs, &st, &o2, .G = G};
            double t2 = bench_time(run, &r2, 10, seconds, &tm);
            record(out, &r2, "ssm_step", "-", B, 1, 0, N, &tm, 4.0 * B * (2 * E + 2 * GN + nh + 2 * nh * p * N),
                   5.0 * B * nh * p * N, &ys, 0, NULL);
            if (t1 < 0 || t2 < 0) rc = cli_error("bench ssm", "decode: %s", ctx->err);
        }
        free(zr);
        if (!rc) rc = bench_decode_step(ctx, out, B, N, seconds, &ys);
        tensor *all[] = {&x, &w, &cst, &xs, &bm, &dt, &al, &D, &st, &o1, &o2, &rs};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tensor_free(all[i]);
    }
    if (!rc && json && bench_write_json(out, json)) rc = cli_error("bench ssm", "cannot write %s", json);
    if (ctx->profiling) rt_profile_print(ctx, stderr); /* ATTAMBA_PROFILE=1: each path's kernels apart */
    cJSON_Delete(out);
    attamba_context_destroy(ctx);
    return rc;
}
