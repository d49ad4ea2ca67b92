/* autotune.c: attamba_tune, the search of the tuning table's parameters (tuning.c) on a device for the
 * shapes a model uses; the winners are kept in the kernel cache directory keyed by device and driver,
 * where every later run finds them. Per group of parameters: every candidate the device allows is
 * first checked against src/ref on awkward shapes, then timed on the model's shapes next to the values
 * in force; a winner must beat them by 3% in interleaved rounds, else they stay.
 * attamba_tuning_print prints the table in force and where each value came from. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/config.h"
#include "ops/attention.h"
#include "ops/attention_backward.h"
#include "ops/boundaries.h"
#include "ops/layer.h"
#include "ops/ops.h"
#include "ops/ssm.h"
#include "ops/tuning.h"
#include "ref/ref.h"
#include "ref/ref_attention.h"
#include "ref/ref_attention_backward.h"
#include "ref/ref_layer.h"
#include "ref/ref_ssm.h"

enum { MAX_PARAMS = 4, MAX_CANDIDATES = 64 };

/* A group of parameters searched together over a list of value tuples. check(): ATTAMBA_OK when the
 * values in force compute what src/ref does; run(): one timed call on the model's shapes (waits). */
typedef struct group {
    const char *name;
    int n_params;
    tune_param params[MAX_PARAMS];
    int n_cand;
    int cand[MAX_CANDIDATES][MAX_PARAMS];
    attamba_status (*check)(struct group *g);
    attamba_status (*run)(struct group *g);
    rt_ctx *ctx;
    model_config cfg;
    int tokens;
    tensor t[8];  /* the timed case's tensors */
    tensor bnd;   /* compressed attention: boundaries */
    int32_t *bnd_host;
    attn_mask mask;
    int64_t longest;            /* the SSM groups: the model's longest segment over the tuned tokens */
    attamba_status run_failure; /* what the last failed timed run returned */
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

static attamba_status no_host_memory(group *g) {
    return rt_fail(g->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
}

/* ATTAMBA_OK when got matches want to tol in the largest error relative to the largest |want|. */
static attamba_status compare(group *g, const float *got, const float *want, size_t n, double tol) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)got[i] - want[i]));
        den = fmax(den, fabs((double)want[i]));
    }
    double err = den > 0 ? num / den : num;
    if (err <= tol) return ATTAMBA_OK; /* a NaN fails here too */
    return rt_fail(g->ctx, ATTAMBA_ERR_INTERNAL, "a relative error of %.3g against src/ref (at most %g)", err, tol);
}

static float *random_host(int64_t n, uint64_t seed) {
    float *x = malloc((size_t)n * sizeof *x);
    core_rng r;
    core_rng_seed(&r, seed);
    for (int64_t i = 0; x && i < n; i++) x[i] = 2 * core_rng_uniform(&r) - 1;
    return x;
}

static attamba_status upload_random(group *g, tensor *t, int nd, const int64_t *shape, uint64_t seed) {
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    float *h = random_host(n, seed);
    attamba_status s = h ? tensor_alloc_f32(g->ctx, t, nd, shape) : no_host_memory(g);
    if (!s) s = tensor_upload(t, h);
    free(h);
    return s;
}

/* An f32 tensor of the given shape with the host values x. */
static attamba_status upload(rt_ctx *ctx, tensor *t, int nd, const int64_t *shape, const float *x) {
    attamba_status s = tensor_alloc_f32(ctx, t, nd, shape);
    return s ? s : tensor_upload(t, x);
}

/* ---- GEMM register tiles: every layout the model uses (nn forward, nt and tn backward) ---- */

static attamba_status gemm_check(group *g) {
    static const int shapes[][3] = {{37, 45, 29}, {70, 17, 64}};
    attamba_status s = ATTAMBA_OK;
    for (size_t i = 0; i < CORE_LEN(shapes) && !s; i++)
        for (int l = 0; l < 3 && !s; l++) {
            int M = shapes[i][0], N = shapes[i][1], K = shapes[i][2], ta = l == 2, tb = l == 1;
            float *a = random_host((int64_t)M * K, 1), *b = random_host((int64_t)K * N, 2);
            float *want = malloc((size_t)M * N * sizeof *want), *got = malloc((size_t)M * N * sizeof *got);
            tensor A = {0}, B = {0}, C = {0};
            int64_t sa[2] = {ta ? K : M, ta ? M : K}, sb[2] = {tb ? N : K, tb ? K : N}, sc[2] = {M, N};
            s = a && b && want && got ? upload(g->ctx, &A, 2, sa, a) : no_host_memory(g);
            if (!s) s = upload(g->ctx, &B, 2, sb, b);
            if (!s) s = tensor_alloc_f32(g->ctx, &C, 2, sc);
            if (!s) s = ops_gemm_own(g->ctx, OPS_GEMM_KERNEL_TILES, ta, tb, 1.0f, &A, &B, 0.0f, &C);
            if (!s) s = tensor_download(&C, got);
            if (!s) {
                ref_gemm(ta, tb, M, N, K, 1.0f, a, (int)sa[1], b, (int)sb[1], 0.0f, want, N);
                s = compare(g, got, want, (size_t)M * N, 1e-4);
            }
            tensor_free(&A), tensor_free(&B), tensor_free(&C);
            free(a), free(b), free(want), free(got);
        }
    return s;
}

static attamba_status gemm_run(group *g) {
    /* x [T, d] W [d, ffn]; dx = dy W^T; dW = x^T dy */
    attamba_status s = ops_gemm_own(g->ctx, OPS_GEMM_KERNEL_TILES, 0, 0, 1.0f, &g->t[0], &g->t[1], 0.0f, &g->t[2]);
    if (!s) s = ops_gemm_own(g->ctx, OPS_GEMM_KERNEL_TILES, 0, 1, 1.0f, &g->t[2], &g->t[1], 0.0f, &g->t[3]);
    if (!s) s = ops_gemm_own(g->ctx, OPS_GEMM_KERNEL_TILES, 1, 0, 1.0f, &g->t[0], &g->t[2], 0.0f, &g->t[4]);
    return s ? s : rt_finish(g->ctx);
}

static attamba_status gemm_setup(group *g, int quick) {
    int vw0 = ops_tune(g->ctx, TUNE_GEMM_VW), n = 0;
    for (int vw = 4; vw <= 16; vw *= 2) {
        if (quick && vw != vw0 && vw != vw0 / 2) continue;
        for (int nv = 1; nv <= (quick ? 3 : 4); nv++)
            for (int rm = quick ? 4 : 2; rm <= 8; rm += 2)
                if (n < MAX_CANDIDATES) g->cand[n][0] = vw, g->cand[n][1] = nv, g->cand[n++][2] = rm;
    }
    g->n_cand = n;
    int64_t T = g->tokens, d = g->cfg.dim, f = g->cfg.ffn_dim;
    attamba_status s = upload_random(g, &g->t[0], 2, ((int64_t[]){T, d}), 3);
    if (!s) s = upload_random(g, &g->t[1], 2, ((int64_t[]){d, f}), 4);
    if (!s) s = tensor_alloc_f32(g->ctx, &g->t[2], 2, ((int64_t[]){T, f}));
    if (!s) s = tensor_alloc_f32(g->ctx, &g->t[3], 2, ((int64_t[]){T, d}));
    if (!s) s = tensor_alloc_f32(g->ctx, &g->t[4], 2, ((int64_t[]){d, f}));
    return s;
}

/* ---- GEMM: the plain B sizes read in place instead of packed, on the same shapes ---- */

static attamba_status gemm_inplace_setup(group *g, int quick) {
    static const int kib[] = {0, 256, 1024, 4096};
    attamba_status s = gemm_setup(g, quick);
    g->n_cand = (int)CORE_LEN(kib);
    for (int c = 0; c < g->n_cand; c++) g->cand[c][0] = kib[c];
    return s;
}

/* ---- norms: the largest work-group ---- */

static attamba_status norm_check(group *g) {
    static const int64_t widths[] = {7, 100, 1000};
    attamba_status s = ATTAMBA_OK;
    for (size_t i = 0; i < CORE_LEN(widths) && !s; i++) {
        int64_t C = widths[i], n = 3 * C;
        float *x = random_host(n, 5), *w = random_host(C, 6);
        float *want = malloc((size_t)n * 4), *got = malloc((size_t)n * 4);
        tensor tx = {0}, tw = {0}, out = {0};
        s = x && w && want && got ? upload(g->ctx, &tx, 2, ((int64_t[]){3, C}), x) : no_host_memory(g);
        if (!s) s = upload(g->ctx, &tw, 1, &C, w);
        if (!s) s = tensor_alloc_f32(g->ctx, &out, 2, ((int64_t[]){3, C}));
        if (!s) s = ops_rmsnorm(g->ctx, &tx, &tw, 1e-5f, &out);
        if (!s) s = tensor_download(&out, got);
        if (!s) {
            ref_rmsnorm(3, C, x, w, 1e-5f, want);
            s = compare(g, got, want, (size_t)n, 1e-5);
        }
        tensor_free(&tx), tensor_free(&tw), tensor_free(&out);
        free(x), free(w), free(want), free(got);
    }
    return s;
}

static attamba_status norm_run(group *g) {
    attamba_status s = ops_rmsnorm(g->ctx, &g->t[0], &g->t[1], 1e-5f, &g->t[2]);
    return s ? s : rt_finish(g->ctx);
}

static attamba_status norm_setup(group *g, int quick) {
    (void)quick;
    for (int w = 8; w <= 256 && (size_t)w <= g->ctx->dev.info.max_work_group_size; w *= 2) g->cand[g->n_cand++][0] = w;
    int64_t T = g->tokens, d = g->cfg.dim;
    attamba_status s = upload_random(g, &g->t[0], 2, ((int64_t[]){T, d}), 7);
    if (!s) s = upload_random(g, &g->t[1], 1, &d, 8);
    if (!s) s = tensor_alloc_f32(g->ctx, &g->t[2], 2, ((int64_t[]){T, d}));
    return s;
}

/* ---- prefill attention with the model's mask ---- */

/* The model's mask over T tokens (COMPRESSED with its boundaries for Attamba, else CAUSAL); the
 * boundaries go to bnd and, malloc'd, to *host (the mask's host copy; NULL for CAUSAL). */
static attamba_status attn_mask_for(group *g, int T, tensor *bnd, int32_t **host, attn_mask *m) {
    *host = NULL;
    if (g->cfg.kind != MODEL_ATTAMBA) {
        *m = (attn_mask){ATTN_CAUSAL, 0, NULL, 0, NULL};
        return ATTAMBA_OK;
    }
    boundary_spec spec = model_config_boundaries(&g->cfg);
    int64_t nb = boundary_positions(&spec, 0, g->cfg.n_layers, T, NULL, 0);
    int64_t *b = malloc((size_t)nb * sizeof *b);
    int32_t *b32 = *host = malloc((size_t)nb * sizeof *b32);
    attamba_status s = b && b32 ? ATTAMBA_OK : no_host_memory(g);
    if (!s) {
        boundary_positions(&spec, 0, g->cfg.n_layers, T, b, nb);
        for (int64_t i = 0; i < nb; i++) b32[i] = (int32_t)b[i];
        s = tensor_alloc(g->ctx, bnd, TENSOR_I32, 1, &nb);
        if (!s) s = tensor_upload(bnd, b32);
    }
    free(b);
    *m = (attn_mask){ATTN_COMPRESSED, g->cfg.window, bnd, 0, b32};
    return s;
}

/* src/ref's boundary flags of m over T tokens (bnd: its boundaries, b32 their host copy; all zero for
 * masks without boundaries), malloc'd; NULL when out of host memory. */
static uint8_t *ref_flags(int T, const attn_mask *m, const tensor *bnd, const int32_t *b32) {
    uint8_t *flags = calloc((size_t)T, 1);
    if (!flags || m->mode != ATTN_COMPRESSED) return flags;
    int64_t nb = bnd->shape[0];
    int64_t *b = malloc((size_t)nb * 8);
    if (b) {
        for (int64_t i = 0; i < nb; i++) b[i] = b32[i];
        ref_boundary_flags(T, b, nb, flags);
    } else {
        free(flags), flags = NULL;
    }
    free(b);
    return flags;
}

/* Downloads t (n floats) and compares it with want. */
static attamba_status check_tensor(group *g, const tensor *t, const float *want, int64_t n, double tol) {
    float *got = malloc((size_t)n * sizeof *got);
    attamba_status s = got ? tensor_download(t, got) : no_host_memory(g);
    if (!s) s = compare(g, got, want, (size_t)n, tol);
    free(got);
    return s;
}

/* The prefill (variant opts, NULL: the defaults) against src/ref on a short sequence of the model's
 * widths and mask; with bopts (non-NULL) its backward's dq, dk and dv too. */
static attamba_status attn_check_with(group *g, const attn_prefill_opts *opts, const attn_backward_opts *bopts) {
    int T = 67, H = g->cfg.n_heads, Hkv = g->cfg.n_kv_heads, dh = g->cfg.dim / H;
    int64_t nq = (int64_t)T * H * dh, nk = (int64_t)T * Hkv * dh, qshape[3] = {1, T, H * dh}, kshape[3] = {1, T, Hkv * dh};
    float *q = random_host(nq, 9), *k = random_host(nk, 10), *v = random_host(nk, 11), *dout = random_host(nq, 16);
    float *want = malloc((size_t)(2 * nq + 2 * nk) * sizeof *want); /* out (then dq), dk, dv */
    tensor t[8] = {{0}}, bnd = {0}; /* q, k, v, out, dout, dq, dk, dv */
    int32_t *b32 = NULL;
    uint8_t *flags = NULL;
    attn_mask m;
    attamba_status s = q && k && v && dout && want ? attn_mask_for(g, T, &bnd, &b32, &m) : no_host_memory(g);
    if (!s && !(flags = ref_flags(T, &m, &bnd, b32))) s = no_host_memory(g);
    if (!s) s = upload(g->ctx, &t[0], 3, qshape, q);
    if (!s) s = upload(g->ctx, &t[1], 3, kshape, k);
    if (!s) s = upload(g->ctx, &t[2], 3, kshape, v);
    if (!s) s = upload(g->ctx, &t[4], 3, qshape, dout);
    for (int i = 3; i < 8 && !s; i += i == 3 ? 2 : 1) s = tensor_alloc_f32(g->ctx, &t[i], 3, i < 6 ? qshape : kshape);
    if (!s) s = ops_attention_prefill_with(g->ctx, &t[0], &t[1], &t[2], H, Hkv, &m, opts, &t[3]);
    if (!s) ref_attention(1, T, H, Hkv, dh, q, k, v, (int)m.mode, m.window, flags, want);
    if (!s) s = check_tensor(g, &t[3], want, nq, 1e-4);
    if (!s && bopts) {
        s = ops_attention_prefill_backward_with(g->ctx, &t[0], &t[1], &t[2], H, Hkv, &m, &t[3], &t[4], bopts, &t[5],
                                                &t[6], &t[7]);
        float *wk = want + 2 * nq, *wv = wk + nk;
        if (!s) ref_attention_backward(1, T, H, Hkv, dh, q, k, v, dout, (int)m.mode, m.window, flags, want, wk, wv);
        if (!s) s = check_tensor(g, &t[5], want, nq, 1e-4);
        if (!s) s = check_tensor(g, &t[6], wk, nk, 1e-4);
        if (!s) s = check_tensor(g, &t[7], wv, nk, 1e-4);
    }
    for (int i = 0; i < 8; i++) tensor_free(&t[i]);
    tensor_free(&bnd);
    free(q), free(k), free(v), free(dout), free(want), free(b32), free(flags);
    return s;
}

static attamba_status attn_check(group *g) { return attn_check_with(g, NULL, NULL); }

/* The attention group's values are the per-query kernels' (the lanes kernel left out); the lanes group
 * times the table in force. */
static const attn_prefill_opts no_lanes = {.qv = -1};

static attamba_status prefill_run(group *g, const attn_prefill_opts *opts) {
    attamba_status s = ops_attention_prefill_with(g->ctx, &g->t[0], &g->t[1], &g->t[2], g->cfg.n_heads,
                                                  g->cfg.n_kv_heads, &g->mask, opts, &g->t[3]);
    return s ? s : rt_finish(g->ctx);
}

static attamba_status attn_run(group *g) { return prefill_run(g, &no_lanes); }

static attamba_status no_lanes_check(group *g) { return attn_check_with(g, &no_lanes, NULL); }

static attamba_status lanes_run(group *g) { return prefill_run(g, NULL); }

/* The timed case: q, k, v, out of the model's widths over its tokens, and its mask. */
static attamba_status attn_tensors(group *g) {
    int64_t T = g->tokens, H = g->cfg.n_heads, Hkv = g->cfg.n_kv_heads, dh = g->cfg.dim / H;
    attamba_status s = upload_random(g, &g->t[0], 3, ((int64_t[]){1, T, H * dh}), 12);
    if (!s) s = upload_random(g, &g->t[1], 3, ((int64_t[]){1, T, Hkv * dh}), 13);
    if (!s) s = upload_random(g, &g->t[2], 3, ((int64_t[]){1, T, Hkv * dh}), 14);
    if (!s) s = tensor_alloc_f32(g->ctx, &g->t[3], 3, ((int64_t[]){1, T, H * dh}));
    if (!s) s = attn_mask_for(g, (int)T, &g->bnd, &g->bnd_host, &g->mask);
    g->mask.trusted = 1;
    return s;
}

static attamba_status attn_setup(group *g, int quick) {
    for (int tk = 4; tk <= 16; tk *= 2)
        for (int bq = 8; bq <= (quick ? 32 : 64); bq *= 2)
            g->cand[g->n_cand][0] = tk, g->cand[g->n_cand++][1] = bq;
    return attn_tensors(g);
}

/* The timed case of a training step's attention: attn_tensors' q, k, v, out, then dout, dq, dk, dv. */
static attamba_status training_tensors(group *g) {
    attamba_status s = attn_tensors(g);
    if (!s) s = upload_random(g, &g->t[4], 3, g->t[0].shape, 15);
    for (int i = 5; i < 8 && !s; i++) s = tensor_alloc_f32(g->ctx, &g->t[i], 3, g->t[i == 5 ? 0 : 1].shape);
    return s;
}

/* The queries along the lanes (attn.qv: 8 or 16 per work-item, attn.rk: 4 or 8 keys per group) or not
 * (qv 0: the GEMM path or the kernels), the forward with the model's mask; only compressed and sliding
 * masks take it. */
static attamba_status lanes_setup(group *g, int quick) {
    (void)quick;
    static const int qv_rk[][2] = {{0, 8}, {1, 8}, {1, 4}, {2, 8}, {2, 4}}; /* rk does nothing at qv 0 */
    for (size_t i = 0; i < CORE_LEN(qv_rk); i++, g->n_cand++)
        g->cand[g->n_cand][0] = qv_rk[i][0], g->cand[g->n_cand][1] = qv_rk[i][1];
    return attn_tensors(g);
}

/* The kernels (attn.gemm_bq 0) or the GEMM path in blocks of 64 to 256 queries, taken while its scores
 * stay within attn.gemm_waste % of the allowed pairs (at the tuned length only the bounds below and
 * above this mask's share differ; the winner's bound then applies to every length). Timed as training
 * runs them: forward and backward, one wait. */
static attamba_status path_setup(group *g, int quick) {
    (void)quick;
    static const int waste[] = {160, 200, 400, 1000};
    g->cand[g->n_cand][0] = 0, g->cand[g->n_cand++][1] = ops_tune(g->ctx, TUNE_ATTN_GEMM_WASTE);
    for (int bq = 64; bq <= 256; bq *= 2)
        for (size_t w = 0; w < CORE_LEN(waste); w++) g->cand[g->n_cand][0] = bq, g->cand[g->n_cand++][1] = waste[w];
    return training_tensors(g);
}

static attamba_status path_run(group *g) {
    tensor *t = g->t; /* q, k, v, out, dout, dq, dk, dv */
    int H = g->cfg.n_heads, Hkv = g->cfg.n_kv_heads;
    attamba_status s = ops_attention_prefill(g->ctx, &t[0], &t[1], &t[2], H, Hkv, &g->mask, &t[3]);
    if (!s) s = ops_attention_prefill_backward(g->ctx, &t[0], &t[1], &t[2], H, Hkv, &g->mask, &t[3], &t[4], &t[5],
                                               &t[6], &t[7]);
    return s ? s : rt_finish(g->ctx);
}

/* Rows of head dims over 0 (one work-item per row), 4, 8 or 16 work-items (attn.slices): timed as training
 * runs the kernels, forward and backward, with the GEMM path off (the kernels are what the value changes;
 * the decode takes the same value). */
static attamba_status slices_setup(group *g, int quick) {
    static const int slices[] = {0, 4, 8, 16};
    for (size_t i = 0; i < CORE_LEN(slices) - (quick ? 1 : 0); i++) g->cand[g->n_cand++][0] = slices[i];
    return training_tensors(g);
}

static const attn_prefill_opts kernels_only = {.gemm_block = -1, .qv = -1};

static const attn_backward_opts bwd_kernels_only = {.gemm_block = -1};

static attamba_status kernels_check(group *g) { return attn_check_with(g, &kernels_only, &bwd_kernels_only); }

static attamba_status kernels_run(group *g) {
    tensor *t = g->t; /* q, k, v, out, dout, dq, dk, dv */
    int H = g->cfg.n_heads, Hkv = g->cfg.n_kv_heads;
    attamba_status s =
        ops_attention_prefill_with(g->ctx, &t[0], &t[1], &t[2], H, Hkv, &g->mask, &kernels_only, &t[3]);
    if (!s)
        s = ops_attention_prefill_backward_with(g->ctx, &t[0], &t[1], &t[2], H, Hkv, &g->mask, &t[3], &t[4],
                                                &bwd_kernels_only, &t[5], &t[6], &t[7]);
    return s ? s : rt_finish(g->ctx);
}

/* The backward kernels' blocks and tiles, both passes alike (bwd.bq = bwd.bk, bwd.tk = bwd.tq), timed and
 * checked as the attention-slices group (the forward's share is the same for every candidate). */
static attamba_status bwd_setup(group *g, int quick) {
    for (int b = 16; b <= (quick ? 32 : 64); b *= 2)
        for (int t = 4; t <= 16; t *= 2) {
            int *c = g->cand[g->n_cand++];
            c[0] = c[2] = b, c[1] = c[3] = t;
        }
    return training_tensors(g);
}

/* ---- the K/V SSM (Attamba): conv1d's work-item shape, the scan's quadratic path ---- */

/* Segment starts of layer 0's boundaries over T tokens into seg (i32 [T]) and, when host is non-NULL,
 * into host[0 .. T); the longest segment to *longest. */
static attamba_status ssm_segments(group *g, int64_t T, tensor *seg, int32_t *host, int64_t *longest) {
    boundary_spec spec = model_config_boundaries(&g->cfg);
    int64_t *b = malloc((size_t)T * sizeof *b);
    int32_t *starts = host ? host : malloc((size_t)T * sizeof *starts);
    attamba_status s = b && starts ? ATTAMBA_OK : no_host_memory(g);
    if (!s) {
        int64_t nb = boundary_positions(&spec, 0, g->cfg.n_layers, T, b, T);
        boundary_segment_starts(b, nb, T, starts);
        *longest = boundary_longest_segment(b, nb, T);
        s = tensor_alloc(g->ctx, seg, TENSOR_I32, 1, &T);
        if (!s) s = tensor_upload(seg, starts);
    }
    free(b);
    if (!host) free(starts);
    return s;
}

static int64_t conv_channels(const model_config *c) { return c->ssm_inner + 2 * c->ssm_groups * c->ssm_state; }

/* conv1d with SiLU and its backward (dx, dw) against src/ref on 2 x 37 tokens of 21 channels (every
 * vector width leaves a tail), segments from the model's boundaries. */
static attamba_status conv_check(group *g) {
    int B = 2, T = 37, C = 21, W = g->cfg.ssm_conv;
    int64_t n = (int64_t)B * T * C, shape[3] = {B, T, C}, wshape[2] = {C, W};
    float *x = random_host(n, 30), *w = random_host((int64_t)C * W, 31), *dout = random_host(n, 32);
    float *want = malloc((size_t)n * sizeof *want), *dx = malloc((size_t)n * sizeof *dx);
    float *dw = calloc((size_t)C * W, sizeof *dw);
    int32_t *seg = malloc((size_t)T * sizeof *seg);
    tensor t[6] = {{0}}, ts = {0}; /* x, w, out, dout, dx, dw */
    int64_t longest;
    int ok = x && w && dout && want && dx && dw && seg;
    attamba_status s = ok ? ssm_segments(g, T, &ts, seg, &longest) : no_host_memory(g);
    if (!s) s = upload(g->ctx, &t[0], 3, shape, x);
    if (!s) s = upload(g->ctx, &t[1], 2, wshape, w);
    if (!s) s = tensor_alloc_f32(g->ctx, &t[2], 3, shape);
    if (!s) s = upload(g->ctx, &t[3], 3, shape, dout);
    if (!s) s = tensor_alloc_f32(g->ctx, &t[4], 3, shape);
    if (!s) s = upload(g->ctx, &t[5], 2, wshape, dw);
    if (!s) s = ops_conv1d(g->ctx, &t[0], &t[1], &ts, 1, &t[2]);
    if (!s) s = ops_conv1d_backward(g->ctx, &t[0], &t[1], &ts, 1, &t[3], &t[4], &t[5]);
    if (!s) {
        ref_conv1d(B, T, C, W, x, w, seg, 1, want);
        s = check_tensor(g, &t[2], want, n, 1e-5);
    }
    if (!s) {
        ref_conv1d_backward(B, T, C, W, x, w, seg, 1, dout, dx, dw);
        s = check_tensor(g, &t[4], dx, n, 1e-5);
    }
    if (!s) s = check_tensor(g, &t[5], dw, (int64_t)C * W, 1e-5);
    for (int i = 0; i < 6; i++) tensor_free(&t[i]);
    tensor_free(&ts);
    free(x), free(w), free(dout), free(want), free(dx), free(dw), free(seg);
    return s;
}

/* As training runs it: the forward and the backward over the model's tokens, one wait. */
static attamba_status conv_run(group *g) {
    tensor *t = g->t; /* x, w, out, dout, dx, dw */
    attamba_status s = ops_conv1d(g->ctx, &t[0], &t[1], &g->bnd, 1, &t[2]);
    if (!s) s = ops_conv1d_backward(g->ctx, &t[0], &t[1], &g->bnd, 1, &t[3], &t[4], &t[5]);
    return s ? s : rt_finish(g->ctx);
}

/* conv.vc (4, 8, 16 channels as one vector) x conv.tt (8, 32 tokens per work-item). */
static attamba_status conv_setup(group *g, int quick) {
    (void)quick;
    for (int vc = 4; vc <= 16; vc *= 2)
        for (int tt = 8; tt <= 32; tt *= 4) g->cand[g->n_cand][0] = vc, g->cand[g->n_cand++][1] = tt;
    int64_t T = g->tokens, C = conv_channels(&g->cfg), shape[3] = {1, T, C}, wshape[2] = {C, g->cfg.ssm_conv};
    attamba_status s = ssm_segments(g, T, &g->bnd, NULL, &g->longest);
    if (!s) s = upload_random(g, &g->t[0], 3, shape, 33);
    if (!s) s = upload_random(g, &g->t[1], 2, wshape, 34);
    if (!s) s = tensor_alloc_f32(g->ctx, &g->t[2], 3, shape);
    if (!s) s = upload_random(g, &g->t[3], 3, shape, 35);
    if (!s) s = tensor_alloc_f32(g->ctx, &g->t[4], 3, shape);
    if (!s) s = upload_random(g, &g->t[5], 2, wshape, 36);
    return s;
}

/* The scan's inputs for B x T tokens of the model's SSM shape into t[0..5] (xs, Bm, Cm, dt_raw, A_log,
 * D), the host copies to h[0..5] when h is non-NULL (malloc'd). */
static attamba_status scan_inputs(group *g, int64_t B, int64_t T, tensor *t, float **h) {
    const model_config *c = &g->cfg;
    int64_t nh = c->ssm_heads, GN = (int64_t)c->ssm_groups * c->ssm_state;
    int64_t shapes[6][3] = {{B, T, c->ssm_inner}, {B, T, GN}, {B, T, GN}, {B, T, nh}, {nh}, {nh}};
    attamba_status s = ATTAMBA_OK;
    for (int i = 0; i < 6 && !s; i++) {
        int nd = i < 4 ? 3 : 1;
        int64_t n = i < 4 ? shapes[i][0] * shapes[i][1] * shapes[i][2] : nh;
        float *x = random_host(n, 40 + (uint64_t)i);
        if (x && i == 4)
            for (int64_t k = 0; k < n; k++) x[k] = 0.5f * x[k]; /* A = -exp(A_log) around -1 */
        s = x ? upload(g->ctx, &t[i], nd, shapes[i], x) : no_host_memory(g);
        if (h) h[i] = x;
        else free(x);
    }
    return s;
}

/* The scan (as ops_ssm_scan picks its path, told the segments) against src/ref on 45 tokens of the
 * model's SSM shape, y and the final state. */
static attamba_status scan_check(group *g) {
    const model_config *c = &g->cfg;
    int B = 1, T = 45, nh = c->ssm_heads, p = c->ssm_inner / nh, G = c->ssm_groups, N = c->ssm_state;
    int64_t ny = (int64_t)B * T * nh * p, nf = (int64_t)B * nh * p * N, longest;
    tensor t[8] = {{0}}, ts = {0}; /* xs, Bm, Cm, dt_raw, A_log, D, y, final state */
    float *h[6] = {NULL}, *want = malloc((size_t)(ny + nf) * sizeof *want);
    int32_t *seg = malloc((size_t)T * sizeof *seg);
    attamba_status s = want && seg ? ssm_segments(g, T, &ts, seg, &longest) : no_host_memory(g);
    if (!s) s = scan_inputs(g, B, T, t, h);
    if (!s) s = tensor_alloc_f32(g->ctx, &t[6], 3, ((int64_t[]){B, T, (int64_t)nh * p}));
    if (!s) s = tensor_alloc_f32(g->ctx, &t[7], 4, ((int64_t[]){B, nh, p, N}));
    if (!s)
        s = ops_ssm_scan_with(g->ctx, &(ops_ssm_opts){.longest_segment = longest}, &t[0], &t[1], &t[2], &t[3], NULL,
                              &t[4], &t[5], &ts, G, &t[6], &t[7]);
    if (!s) {
        ref_ssm_scan(B, T, nh, p, G, N, h[0], h[1], h[2], h[3], NULL, h[4], h[5], seg, want, want + ny);
        s = check_tensor(g, &t[6], want, ny, 1e-4);
    }
    if (!s) s = check_tensor(g, &t[7], want + ny, nf, 1e-4);
    for (int i = 0; i < 8; i++) tensor_free(&t[i]);
    for (int i = 0; i < 6; i++) free(h[i]);
    tensor_free(&ts);
    free(want), free(seg);
    return s;
}

static attamba_status scan_run(group *g) {
    tensor *t = g->t; /* xs, Bm, Cm, dt_raw, A_log, D, y */
    attamba_status s = ops_ssm_scan_with(g->ctx, &(ops_ssm_opts){.longest_segment = g->longest}, &t[0], &t[1], &t[2],
                                         &t[3], NULL, &t[4], &t[5], &g->bnd, g->cfg.ssm_groups, &t[6], NULL);
    return s ? s : rt_finish(g->ctx);
}

/* The quadratic path off (ssm.quad_max 0: the recurrence) or on for the model's segments, with 1, 2, 4
 * or 8 heads per work-item. */
static attamba_status scan_setup(group *g, int quick) {
    (void)quick;
    attamba_status s = ssm_segments(g, g->tokens, &g->bnd, NULL, &g->longest);
    int qm = ops_tune(g->ctx, TUNE_SSM_QUAD_MAX), on = qm >= g->longest ? qm : (int)CORE_MIN(g->longest, 4096);
    g->cand[g->n_cand][0] = 0, g->cand[g->n_cand++][1] = ops_tune(g->ctx, TUNE_SSM_QUAD_HEADS);
    for (int qh = 1; qh <= 8; qh *= 2) g->cand[g->n_cand][0] = on, g->cand[g->n_cand++][1] = qh;
    if (!s) s = scan_inputs(g, 1, g->tokens, g->t, NULL);
    if (!s)
        s = tensor_alloc_f32(g->ctx, &g->t[6], 3, ((int64_t[]){1, g->tokens, g->cfg.ssm_inner}));
    return s;
}

/* ---- the search ---- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median seconds of g->run over at least 3 calls and `seconds`, after one untimed call (kernel
 * builds, first allocations); negative on failure (the message on the context). */
static double timed(group *g, double seconds) {
    enum { MAX_REPS = 1000 };
    double times[MAX_REPS];
    if ((g->run_failure = g->run(g)) != ATTAMBA_OK) return -1;
    int n = 0;
    double start = core_now();
    while (n < MAX_REPS && (n < 3 || core_now() - start < seconds)) {
        double t0 = core_now();
        if ((g->run_failure = g->run(g)) != ATTAMBA_OK) return -1;
        times[n++] = core_now() - t0;
    }
    qsort(times, (size_t)n, sizeof times[0], cmp_double);
    return times[n / 2];
}

/* Searches g: a result line on log, the winner set as "tuned" or the old values kept. Fails only
 * when the values in force themselves fail. verbose: a line per candidate. */
static attamba_status search(group *g, double seconds, int verbose, FILE *log) {
    int cur[MAX_PARAMS] = {0}, best[MAX_PARAMS];
    char cur_src[MAX_PARAMS][48];
    for (int i = 0; i < g->n_params; i++) {
        cur[i] = ops_tune(g->ctx, g->params[i]);
        snprintf(cur_src[i], sizeof cur_src[i], "%s", ops_tune_source(g->ctx, g->params[i]));
    }
    attamba_status s = g->check(g);
    if (s) return rt_fail(g->ctx, s, "%s: the values in force fail their check: %s", g->name, g->ctx->err);
    double t_cur = timed(g, seconds), t_best = t_cur;
    if (t_cur <= 0)
        return rt_fail(g->ctx, g->run_failure ? g->run_failure : ATTAMBA_ERR_INTERNAL, "%s: %s", g->name, g->ctx->err);
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
        if (verbose && log) {
            char d[160];
            describe(g, g->cand[c], d, sizeof d);
            fprintf(log, "  %-10s %-40s %9.3f ms (in force %.3f)\n", g->name, d, 1e3 * t, 1e3 * t_cur);
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
        for (int k = 0; k < 2; k++) qsort(rounds[k], 3, sizeof rounds[k][0], cmp_double);
        t_cur = rounds[0][1], t_best = rounds[1][1];
    }
    int other = memcmp(best, cur, sizeof best) != 0, won = other && t_best > 0 && t_best < 0.97 * t_cur;
    if (log) {
        char a[160], b[160];
        describe(g, cur, a, sizeof a);
        describe(g, best, b, sizeof b);
        fprintf(log, "%-10s %3d tried %2d failed  in force %-34s %9.3f ms  ->  %-34s %9.3f ms  %.2fx%s\n", g->name,
                tried + 1, failed + wrong, a, 1e3 * t_cur, b, 1e3 * t_best, t_cur / t_best,
                won ? "  tuned" : other ? "  kept (under 3% in the interleaved rounds)" : "  kept (the fastest)");
        fflush(log);
    }
    if (won) set_all(g, best, "tuned");
    else
        for (int i = 0; i < g->n_params; i++) ops_tune_set(g->ctx, g->params[i], cur[i], cur_src[i]);
    return ATTAMBA_OK;
}

/* The groups, in the order they are searched. */
typedef struct group_def {
    const char *name;
    int n;
    tune_param p[MAX_PARAMS];
    attamba_status (*setup)(group *, int);
    attamba_status (*check)(group *);
    attamba_status (*run)(group *);
} group_def;

static const group_def defs[] = {
    {"gemm", 3, {TUNE_GEMM_VW, TUNE_GEMM_NV, TUNE_GEMM_RM}, gemm_setup, gemm_check, gemm_run},
    {"gemm-inplace", 1, {TUNE_GEMM_INPLACE_B_KIB}, gemm_inplace_setup, gemm_check, gemm_run},
    {"norm", 1, {TUNE_NORM_GROUP}, norm_setup, norm_check, norm_run},
    {"attention", 2, {TUNE_ATTN_TK, TUNE_ATTN_BQ_SHORT}, attn_setup, no_lanes_check, attn_run},
    {"attention-slices", 1, {TUNE_ATTN_SLICES}, slices_setup, kernels_check, kernels_run},
    {"attention-backward", 4, {TUNE_BWD_BQ, TUNE_BWD_TK, TUNE_BWD_BK, TUNE_BWD_TQ}, bwd_setup, kernels_check,
     kernels_run},
    {"attention-lanes", 2, {TUNE_ATTN_QV, TUNE_ATTN_RK}, lanes_setup, attn_check, lanes_run},
    {"attention-path", 2, {TUNE_ATTN_GEMM_BQ, TUNE_ATTN_GEMM_WASTE}, path_setup, attn_check, path_run},
    {"conv", 2, {TUNE_CONV_VC, TUNE_CONV_TT}, conv_setup, conv_check, conv_run},
    {"ssm-scan", 2, {TUNE_SSM_QUAD_MAX, TUNE_SSM_QUAD_HEADS}, scan_setup, scan_check, scan_run},
};

/* Whether name is an entry of the comma list (NULL: every name is). */
static int listed(const char *list, const char *name) {
    if (!list) return 1;
    size_t n = strlen(name);
    for (const char *p = list; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (!strncmp(p, name, n) && (p[n] == ',' || p[n] == 0)) return 1;
    return 0;
}

/* Refuses an entry of the comma list `only` that names no group (a typo would tune nothing). */
static attamba_status check_only(rt_ctx *ctx, const char *only) {
    for (const char *p = only; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
        size_t n = strcspn(p, ",");
        int known = 0;
        for (size_t i = 0; i < CORE_LEN(defs) && !known; i++)
            known = strlen(defs[i].name) == n && !strncmp(p, defs[i].name, n);
        if (!known) {
            char names[256];
            size_t u = 0;
            for (size_t i = 0; i < CORE_LEN(defs) && u < sizeof names; i++)
                u += (size_t)snprintf(names + u, sizeof names - u, "%s%s", i ? ", " : "", defs[i].name);
            return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "no group '%.*s' to tune (only: a comma list of %s)",
                           (int)CORE_MIN(n, 64), p, names);
        }
    }
    return ATTAMBA_OK;
}

/* Sets up and searches one group: the register-tile GEMM's (those checked by gemm_check) only where
 * the own tiles run it. */
static attamba_status tune_group(rt_ctx *ctx, const group_def *def, const model_config *cfg, int tokens, int quick,
                                 int verbose, FILE *log) {
    if (def->check == gemm_check && (ops_tune(ctx, TUNE_GEMM_KERNEL) != 0 ||
                                     (ops_tune(ctx, TUNE_GEMM_BACKEND) == 1 && ops_gemm_have_clblast()))) {
        if (log)
            fprintf(log, "%-10s skipped: this device's GEMM runs through CLBlast or the __local kernel\n", def->name);
        return ATTAMBA_OK;
    }
    if ((def->check == conv_check || def->check == scan_check) && cfg->kind != MODEL_ATTAMBA) {
        if (log) fprintf(log, "%-10s skipped: the model has no SSM\n", def->name);
        return ATTAMBA_OK;
    }
    group *g = calloc(1, sizeof *g);
    if (!g) return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    *g = (group){.name = def->name, .n_params = def->n, .check = def->check, .run = def->run, .ctx = ctx,
                 .cfg = *cfg, .tokens = tokens};
    memcpy(g->params, def->p, sizeof g->params);
    attamba_status s = def->setup(g, quick);
    if (s) s = rt_fail(ctx, s, "%s: %s", g->name, ctx->err);
    else s = search(g, quick ? 0.15 : 0.5, verbose, log);
    for (size_t k = 0; k < CORE_LEN(g->t); k++) tensor_free(&g->t[k]);
    tensor_free(&g->bnd);
    free(g->bnd_host);
    free(g);
    return s;
}

attamba_status attamba_tune(attamba_context *ctx, const attamba_tune_params *p, FILE *log) {
    if (!ctx) return ATTAMBA_ERR_INVALID_ARG;
    if (!p || !p->config) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_tune: NULL params or config");
    int tokens = p->tokens ? p->tokens : 512;
    if (tokens < 16 || tokens > 65536)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_tune: tokens %d outside [16, 65536]", p->tokens);
    RT_TRY(check_only(ctx, p->only));
    /* the winners can only be kept in the kernel cache directory: say so before the search, not after */
    char *path = ops_tuning_path(ctx);
    if (!path)
        return rt_fail(ctx, ATTAMBA_ERR_UNSUPPORTED,
                       "tuned values live in the kernel cache directory, which is off ($ATTAMBA_CACHE_DIR)");
    const model_config *cfg = &p->config->c;
    const attamba_device_info *d = &ctx->dev.info;
    double t0 = core_now();
    if (log)
        fprintf(log, "device %d:%d %s (%s), %d tokens of %s %s\n", d->platform_index, d->device_index, d->name,
                d->platform_name, tokens, model_kind_name(cfg->kind), p->quick ? "(quick)" : "");
    attamba_status s = ATTAMBA_OK;
    /* a candidate that fails is the search's to judge: it must not drop the winners found so far */
    ops_tune(ctx, TUNE_GEMM_BACKEND); /* the table (and its failure hook) exist from here */
    int (*hook)(rt_ctx *, const char *) = ctx->on_kernel_failure;
    ctx->on_kernel_failure = NULL;
    for (size_t i = 0; i < CORE_LEN(defs) && !s; i++)
        if (listed(p->only, defs[i].name)) s = tune_group(ctx, &defs[i], cfg, tokens, p->quick, p->verbose, log);
    ctx->on_kernel_failure = hook;
    if (!s) s = ops_tuning_save(ctx);
    if (!s && log) {
        fprintf(log, "tuned values -> %s (%.0f s)\n", path, core_now() - t0);
        fflush(log);
    }
    free(path);
    return s;
}

attamba_status attamba_tuning_print(attamba_context *ctx, FILE *out) {
    if (!ctx) return ATTAMBA_ERR_INVALID_ARG;
    if (!out) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_tuning_print: NULL stream");
    ops_tuning_print(ctx, out);
    fflush(out);
    return ferror(out) ? rt_fail(ctx, ATTAMBA_ERR_IO, "attamba_tuning_print: cannot write the table") : ATTAMBA_OK;
}
