/* attamba bench attention-backward: forward vs backward prefill attention on a d = 512 layer
 * (8 heads of 64, B = 1; --shape for others, e.g. the `small` preset's training batch), causal
 * against compressed (P = 1 and 8, L = 8), T = 1024 and 4096.
 * Each row: ms of ops_attention_prefill and of ops_attention_prefill_backward (median, each ended
 * by a queue wait), their ratio, the (query, key) pairs the mask allows (so time per pair can be
 * compared across masks), and a sanity check of the gradients measured in the run: since every
 * softmax row sums to 1, sum_s dv_s = sum_t dout_t per channel; 'check' is the worst |difference|
 * relative to sum_t |dout_t|. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "cli.h"
#include "ops/attention.h"
#include "ops/attention_backward.h"
#include "ops/boundaries.h"
#include "ref/ref_attention.h"

typedef struct {
    rt_ctx *ctx;
    int backward, H;
    const attn_mask *mask;
    const attn_backward_opts *opts;
    tensor *q, *k, *v, *out, *dout, *dq, *dk, *dv;
} attn_run;

static int run_once(void *p) {
    attn_run *r = p;
    attamba_status s =
        r->backward ? ops_attention_prefill_backward_with(r->ctx, r->q, r->k, r->v, r->H, r->H, r->mask,
                                                          r->out, r->dout, r->opts, r->dq, r->dk, r->dv)
                    : ops_attention_prefill(r->ctx, r->q, r->k, r->v, r->H, r->H, r->mask, r->out);
    if (s) return 1;
    return rt_finish(r->ctx) != ATTAMBA_OK;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: attamba bench attention-backward [--device P:D] [--seconds S] [--reps N] [--t T[,T...]]\n"
            "                                        [--shape B,H,DH] [--variant BQ,TK,BK,TQ,LOCAL[,ITEM[,GEMM]]]\n"
            "                                        [--json FILE|-]\n\n"
            "Times the prefill attention forward and backward on d = 512 (8 heads of 64), B = 1, for\n"
            "causal and compressed masks (P = 1 and 8 with cyclic boundaries, L = 8), T = 1024,4096 by\n"
            "default. 'pairs' counts the (query, key) pairs the mask allows; 'check' is the worst\n"
            "|sum_s dv_s - sum_t dout_t| / sum_t |dout_t| over channels (softmax rows sum to 1).\n"
            "--seconds: minimum time per measurement (default 1); --reps: minimum repetitions (3).\n"
            "--shape: batch, heads, head dim (default 1,8,64; the `small` preset trains 8,4,32).\n"
            "--variant: the backward's attn_backward_opts (0 = the device default; LOCAL 1 = __local\n"
            "tiles, 2 = global; ITEM 1 = per-work-item walks, 2 = group walks; GEMM: queries per block\n"
            "through the GEMM, -1 = the kernels), e.g. 16,8,16,8,2,1,-1.\n");
}

typedef struct {
    rt_ctx *ctx;
    cJSON *out;
    double seconds;
    int reps;
    int B, H, dh; /* --shape */
    const attn_backward_opts *opts;
} bwd_env;

/* One (T, mask) case: times forward and backward, prints a row, adds a JSON record. */
static int bench_case(bwd_env *env, int T, attn_mode mode, int P, int L, double causal_bwd_ms,
                      double *bwd_ms_out) {
    const int B = env->B, H = env->H, dh = env->dh, C = H * dh;
    rt_ctx *ctx = env->ctx;
    int64_t shape[3] = {B, T, C}, n = (int64_t)B * T * C;
    tensor ts[8] = {{0}};
    tensor bt = {0};
    float *x = malloc((size_t)n * sizeof *x), *dv = malloc((size_t)n * sizeof *dv);
    int64_t *b64 = malloc((size_t)T * sizeof *b64);
    int32_t *b32 = malloc((size_t)T * sizeof *b32);
    uint8_t *flags = malloc((size_t)T);
    int rc = 0;
    if (!x || !dv || !b64 || !b32 || !flags) {
        rc = cli_error("bench attention-backward", "out of host memory");
        goto done;
    }
    core_rng rng;
    core_rng_seed(&rng, (uint64_t)T * 31 + (uint64_t)P);
    for (int i = 0; i < 8 && !rc; i++) {
        if (tensor_alloc_f32(ctx, &ts[i], 3, shape)) rc = 1;
        if (!rc && i != 3 && i < 5) { /* q, k, v, dout random; out, dq, dk, dv written by the ops */
            for (int64_t j = 0; j < n; j++) x[j] = 2.0f * core_rng_uniform(&rng) - 1.0f;
            if (tensor_upload(&ts[i], x)) rc = 1;
        }
    }
    /* dout (ts[4]) is still in x: the check needs its column sums. */
    boundary_spec spec = {BOUNDARY_CYCLIC, P, 0, NULL, 0};
    int64_t nb = boundary_positions(&spec, 1, 8, T, b64, T);
    for (int64_t i = 0; i < nb; i++) b32[i] = (int32_t)b64[i];
    if (!rc && mode == ATTN_COMPRESSED &&
        (tensor_alloc(ctx, &bt, TENSOR_I32, 1, (int64_t[]){nb}) || tensor_upload(&bt, b32)))
        rc = 1;
    if (rc) {
        rc = cli_error("bench attention-backward", "T %d: %s", T, ctx->err);
        goto done;
    }
    ref_boundary_flags(T, b64, nb, flags);
    attn_mask mask = {mode, L, mode == ATTN_COMPRESSED ? &bt : NULL, 0, mode == ATTN_COMPRESSED ? b32 : NULL};
    attn_run r = {ctx, 0, H, &mask, env->opts, &ts[0], &ts[1], &ts[2], &ts[3], &ts[4], &ts[5], &ts[6],
                  &ts[7]};
    bench_timing tf, tb;
    double fwd = bench_time(run_once, &r, env->reps, env->seconds, &tf);
    r.backward = 1;
    double bwd = fwd < 0 ? -1 : bench_time(run_once, &r, env->reps, env->seconds, &tb);
    if (bwd < 0) {
        rc = cli_error("bench attention-backward", "T %d mode %d: %s", T, (int)mode, ctx->err);
        goto done;
    }
    double check = -1;
    if (!tensor_download(&ts[7], dv)) {
        check = 0;
        for (int c = 0; c < C; c++) {
            double sv = 0, sg = 0, ag = 0;
            for (int64_t t = 0; t < (int64_t)B * T; t++) { /* every sequence's rows sum to 1 */
                sv += dv[(int64_t)t * C + c];
                sg += x[(int64_t)t * C + c];
                ag += fabs(x[(int64_t)t * C + c]);
            }
            check = fmax(check, fabs(sv - sg) / ag);
        }
    }
    int64_t pairs = B * ref_attention_key_visits(T, (int)mode, L, flags);
    const char *name = mode == ATTN_CAUSAL ? "causal" : "compressed";
    char pl[32] = "-";
    if (mode == ATTN_COMPRESSED) snprintf(pl, sizeof pl, "P=%d L=%d", P, L);
    double vs_causal = causal_bwd_ms > 0 ? 1e3 * bwd / causal_bwd_ms : 1.0;
    printf("%6d %-11s %-10s %12lld %10.2f %10.2f %8.2f %10.3f %9.1e\n", T, name, pl, (long long)pairs,
           1e3 * fwd, 1e3 * bwd, bwd / fwd, vs_causal, check);
    fflush(stdout);
    /* per visited (query, key) pair and head: forward QK^T and PV, 4 dh; backward recomputes QK^T and
     * forms dP = dO V^T, dQ, dK and dV, 10 dh. Bytes: every [B, T, H dh] operand once. */
    char desc[64], variant[48];
    snprintf(desc, sizeof desc, "B=%d H=%d T=%d dh=%d", B, H, T, dh);
    if (mode == ATTN_COMPRESSED) snprintf(variant, sizeof variant, "compressed P=%d L=%d", P, L);
    else snprintf(variant, sizeof variant, "%s", name);
    const attn_backward_opts *vo = env->opts;
    char vs[64];
    snprintf(vs, sizeof vs, "%d,%d,%d,%d,%d,%d", vo->block_q, vo->tile_k, vo->block_k, vo->tile_q,
             vo->use_local, vo->per_item);
    double operand = 4.0 * (double)n;
    for (int pass = 0; pass < 2; pass++) {
        cJSON *o = pass ? bench_entry(ctx, "attention-backward", "attention_prefill_backward", desc, variant, &tb,
                                      10.0 * dh * H * (double)pairs, 8 * operand)
                        : bench_entry(ctx, "attention-backward", "attention_prefill", desc, variant, &tf,
                                      4.0 * dh * H * (double)pairs, 4 * operand);
        cJSON_AddNumberToObject(o, "T", T);
        cJSON_AddNumberToObject(o, "batch", B);
        cJSON_AddNumberToObject(o, "heads", H);
        cJSON_AddNumberToObject(o, "head_dim", dh);
        cJSON_AddStringToObject(o, "mask", name);
        if (mode == ATTN_COMPRESSED) {
            cJSON_AddNumberToObject(o, "P", P);
            cJSON_AddNumberToObject(o, "L", L);
            cJSON_AddNumberToObject(o, "boundaries", (double)nb);
        }
        cJSON_AddStringToObject(o, "opts", vs); /* BQ,TK,BK,TQ,LOCAL,ITEM as given; 0 = device default */
        cJSON_AddNumberToObject(o, "pairs", (double)pairs);
        r.backward = pass;
        bench_entry_count(o, ctx, run_once, &r);
        if (pass) {
            cJSON_AddNumberToObject(o, "backward_over_forward", bwd / fwd);
            cJSON_AddNumberToObject(o, "backward_vs_causal", vs_causal);
            cJSON_AddNumberToObject(o, "dv_sum_rel_err", check);
        }
        cJSON_AddItemToArray(env->out, o);
    }
    *bwd_ms_out = 1e3 * bwd;
done:
    for (int i = 0; i < 8; i++) tensor_free(&ts[i]);
    tensor_free(&bt);
    free(x);
    free(dv);
    free(b64);
    free(b32);
    free(flags);
    return rc;
}

int bench_attention_backward_main(int argc, char **argv) {
    static const struct option opts[] = {
        {"device", required_argument, 0, 'd'},  {"seconds", required_argument, 0, 's'},
        {"reps", required_argument, 0, 'r'},    {"t", required_argument, 0, 't'},
        {"variant", required_argument, 0, 'v'}, {"json", required_argument, 0, 'j'},
        {"shape", required_argument, 0, 'S'},   {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *device = NULL, *json = NULL, *tlist = "1024,4096";
    double seconds = 1.0;
    int reps = 3, c, B = 1, H = 8, dh = 64;
    attn_backward_opts variant = {0};
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:s:r:t:v:j:S:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': device = optarg; break;
        case 's': seconds = atof(optarg); break;
        case 'r': reps = atoi(optarg); break;
        case 't': tlist = optarg; break;
        case 'v':
            if (sscanf(optarg, "%d,%d,%d,%d,%d,%d,%d", &variant.block_q, &variant.tile_k, &variant.block_k,
                       &variant.tile_q, &variant.use_local, &variant.per_item, &variant.gemm_block) < 5)
                return cli_error("bench attention-backward",
                                 "bad --variant '%s' (want BQ,TK,BK,TQ,LOCAL[,ITEM[,GEMM]])", optarg);
            break;
        case 'j': json = optarg; break;
        case 'S':
            if (sscanf(optarg, "%d,%d,%d", &B, &H, &dh) != 3 || B < 1 || H < 1 || dh < 1 || dh > 256)
                return cli_error("bench attention-backward", "bad --shape '%s' (want B,H,DH)", optarg);
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    int ts[16], nt = 0;
    for (const char *p = tlist; *p && nt < 16;) {
        char *end;
        long t = strtol(p, &end, 10);
        if (end == p || t < 1 || t > (1 << 20))
            return cli_error("bench attention-backward", "bad --t '%s'", tlist);
        ts[nt++] = (int)t;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return cli_error("bench attention-backward", "bad --t '%s'", tlist);
    }
    if (reps < 1) reps = 1;
    rt_ctx *ctx = cli_open_device(device);
    if (!ctx) return 1;
    printf("device: %s (%s)\n", ctx->dev.info.name, ctx->dev.info.platform_name);
    printf("shape: B %d, %d heads of %d\n", B, H, dh);
    printf("%6s %-11s %-10s %12s %10s %10s %8s %10s %9s\n", "T", "mask", "P, L", "pairs", "fwd ms", "bwd ms",
           "bwd/fwd", "vs causal", "check");
    bwd_env env = {ctx, cJSON_CreateArray(), seconds, reps, B, H, dh, &variant};
    int rc = 0;
    for (int i = 0; i < nt && !rc; i++) {
        double causal_ms = 0, ms;
        rc = bench_case(&env, ts[i], ATTN_CAUSAL, 1, 0, 0, &causal_ms);
        if (!rc) rc = bench_case(&env, ts[i], ATTN_COMPRESSED, 1, 8, causal_ms, &ms);
        if (!rc) rc = bench_case(&env, ts[i], ATTN_COMPRESSED, 8, 8, causal_ms, &ms);
    }
    if (ctx->profiling) rt_profile_print(ctx, stderr); /* ATTAMBA_PROFILE=1: the three passes apart */
    if (!rc && json && bench_write_json(env.out, json))
        rc = cli_error("bench attention-backward", "cannot write %s", json);
    cJSON_Delete(env.out);
    attamba_context_destroy(ctx);
    return rc;
}
