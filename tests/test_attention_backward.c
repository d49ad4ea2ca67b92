/* Attention backward: the dense reference against finite differences of a dense masked forward
 * written here in double, then the kernels against the reference on awkward shapes.
 * Inputs and dout are uniform in [-1, 1). Tolerances:
 *  - reference vs central differences (step 1e-4, in double): 1e-6 absolute + 1e-5 relative. The
 *    truncation error is ~ step^2 |f'''| ~ 1e-8 and the cancellation error ~ 1e-16 / step; the
 *    reference's float outputs add 6e-8 relative. A wrong mask or a missing term is off by > 1e-2.
 *  - kernel vs the double-precision reference: 2e-5 absolute + 1e-4 relative (as the forward's
 *    test). f32 dot products of up to 64 terms, an f32 log-sum-exp, and sums over up to T * H/Hkv
 *    (query, head) pairs for the dk / dv rows of early boundaries (|dv| up to ~4 here); observed
 *    errors are below 2e-6.
 *  - the same kernel run twice: bitwise equal (no atomics, fixed reduction order). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/attention.h"
#include "ops/attention_backward.h"
#include "ops/boundaries.h"
#include "ref/ref_attention.h"
#include "ref/ref_attention_backward.h"
#include "testutil.h"

#define FD_STEP 1e-4
#define FD_RTOL 1e-5
#define FD_ATOL 1e-6
#define RTOL 1e-4
#define ATOL 2e-5

/* ---- boundaries ---- */

static const int64_t explicit_pos[] = {0, 3, 4, 17, 30, 31, 40};


/* Boundaries of layer 1 of 4 in [0, T). */
static tu_bset bset_make(boundary_strategy strategy, int chunk, int T) {
    boundary_spec spec = {strategy, chunk > 0 ? chunk : 1, 7, explicit_pos,
                          (int)(sizeof explicit_pos / sizeof explicit_pos[0])};
    return tu_bset_make(&spec, 1, 4, T);
}

/* ---- (1) the reference against finite differences ---- */

/* The SPEC 3.3 rule, written out again here so the check does not trust ref_attention_allowed. */
static int fd_sees(int mode, int L, const uint8_t *isb, int t, int s) {
    if (s > t) return 0;
    if (mode == ATTN_CAUSAL) return 1;
    if (t - s <= L) return 1;
    return mode == ATTN_COMPRESSED && isb[s];
}

/* sum over all outputs of g * softmax(q k^T / sqrt(dh) + mask) v, dense, in double. */
static double fd_loss(int B, int T, int H, int Hkv, int dh, const double *q, const double *k, const double *v,
                      const double *g, int mode, int L, const uint8_t *isb) {
    double total = 0, w[64];
    ck_assert_int_le(T, 64);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int kh = h / (H / Hkv);
            for (int t = 0; t < T; t++) {
                const double *qr = q + ((b * T + t) * H + h) * dh;
                double mx = -INFINITY, sum = 0;
                for (int s = 0; s <= t; s++) {
                    if (!fd_sees(mode, L, isb, t, s)) continue;
                    const double *kr = k + ((b * T + s) * Hkv + kh) * dh;
                    double dot = 0;
                    for (int d = 0; d < dh; d++) dot += qr[d] * kr[d];
                    w[s] = dot / sqrt((double)dh);
                    mx = fmax(mx, w[s]);
                }
                for (int s = 0; s <= t; s++)
                    if (fd_sees(mode, L, isb, t, s)) sum += exp(w[s] - mx);
                for (int s = 0; s <= t; s++) {
                    if (!fd_sees(mode, L, isb, t, s)) continue;
                    double p = exp(w[s] - mx) / sum;
                    const double *vr = v + ((b * T + s) * Hkv + kh) * dh;
                    const double *gr = g + ((b * T + t) * H + h) * dh;
                    for (int d = 0; d < dh; d++) total += p * vr[d] * gr[d];
                }
            }
        }
    return total;
}

typedef struct {
    int B, T, H, Hkv, dh;
    attn_mode mode;
    int window;
    boundary_strategy strategy;
    int chunk;
} bcase;

static const bcase fd_cases[] = {
    {2, 7, 2, 1, 4, ATTN_CAUSAL, 0, BOUNDARY_UNIFORM, 1}, /* batch, GQA */
    {1, 9, 2, 2, 3, ATTN_SLIDING, 2, BOUNDARY_UNIFORM, 1},
    {1, 8, 2, 1, 4, ATTN_SLIDING, 0, BOUNDARY_UNIFORM, 1},      /* L = 0: out = v, dq = dk = 0 */
    {1, 11, 2, 1, 4, ATTN_COMPRESSED, 2, BOUNDARY_CYCLIC, 3},   /* GQA */
    {2, 10, 4, 2, 2, ATTN_COMPRESSED, 0, BOUNDARY_RANDOM, 3},   /* L = 0, GQA */
    {1, 8, 2, 2, 4, ATTN_COMPRESSED, 1, BOUNDARY_UNIFORM, 1},   /* P = 1 */
    {1, 10, 2, 1, 4, ATTN_COMPRESSED, 2, BOUNDARY_UNIFORM, 16}, /* P >= T: only boundary 0 */
};
#define N_FD_CASES ((int)(sizeof fd_cases / sizeof fd_cases[0]))

/* Central differences of fd_loss in every element of x (a copy of one of q, k, v), compared with
 * the reference gradient `want` for it. */
static void fd_check(const bcase *c, const uint8_t *isb, double *q, double *k, double *v, const double *g,
                     double *x, int64_t n, const float *grad, const char *name, int case_no) {
    double worst = 0;
    int64_t at = -1;
    for (int64_t i = 0; i < n; i++) {
        double x0 = x[i];
        x[i] = x0 + FD_STEP;
        double fp = fd_loss(c->B, c->T, c->H, c->Hkv, c->dh, q, k, v, g, c->mode, c->window, isb);
        x[i] = x0 - FD_STEP;
        double fm = fd_loss(c->B, c->T, c->H, c->Hkv, c->dh, q, k, v, g, c->mode, c->window, isb);
        x[i] = x0;
        double fd = (fp - fm) / (2 * FD_STEP), err = fabs(fd - grad[i]);
        double excess = err - (FD_ATOL + FD_RTOL * fabs(fd));
        if (excess > worst) {
            worst = excess;
            at = i;
        }
    }
    ck_assert_msg(at < 0, "case %d: d%s[%lld] = %.8g, finite differences give a different value", case_no,
                  name, (long long)at, at >= 0 ? grad[at] : 0.0);
}

START_TEST(reference_backward_matches_finite_differences) {
    const bcase *c = &fd_cases[_i];
    int64_t nq = (int64_t)c->B * c->T * c->H * c->dh, nk = (int64_t)c->B * c->T * c->Hkv * c->dh;
    float *q = tu_random(nq, 10 + _i, -1, 1), *k = tu_random(nk, 20 + _i, -1, 1),
          *v = tu_random(nk, 30 + _i, -1, 1);
    float *g = tu_random(nq, 40 + _i, -1, 1);
    float *dq = malloc((size_t)nq * sizeof *dq), *dk = malloc((size_t)nk * sizeof *dk);
    float *dv = malloc((size_t)nk * sizeof *dv);
    double *qd = malloc((size_t)nq * sizeof *qd), *kd = malloc((size_t)nk * sizeof *kd);
    double *vd = malloc((size_t)nk * sizeof *vd), *gd = malloc((size_t)nq * sizeof *gd);
    ck_assert(dq && dk && dv && qd && kd && vd && gd);
    for (int64_t i = 0; i < nq; i++) {
        qd[i] = q[i];
        gd[i] = g[i];
    }
    for (int64_t i = 0; i < nk; i++) {
        kd[i] = k[i];
        vd[i] = v[i];
    }
    tu_bset bs = bset_make(c->strategy, c->chunk, c->T);
    ref_attention_backward(c->B, c->T, c->H, c->Hkv, c->dh, q, k, v, g, (int)c->mode, c->window, bs.flags, dq,
                           dk, dv);
    fd_check(c, bs.flags, qd, kd, vd, gd, qd, nq, dq, "q", _i);
    fd_check(c, bs.flags, qd, kd, vd, gd, kd, nk, dk, "k", _i);
    fd_check(c, bs.flags, qd, kd, vd, gd, vd, nk, dv, "v", _i);
    if (c->mode == ATTN_SLIDING && c->window == 0) /* each query sees only itself: P = 1, dS = 0 */
        for (int64_t i = 0; i < nq; i++) ck_assert(dq[i] == 0.0f);
    tu_bset_free(&bs);
    free(q);
    free(k);
    free(v);
    free(g);
    free(dq);
    free(dk);
    free(dv);
    free(qd);
    free(kd);
    free(vd);
    free(gd);
}
END_TEST

/* ---- (2) kernels against the reference ---- */

typedef struct {
    int B, T, H, Hkv, dh;
    float *q, *k, *v, *g;
    tensor tq, tk, tv, tg, out, dq, dk, dv;
} prob;

static prob prob_make(int B, int T, int H, int Hkv, int dh, uint64_t seed) {
    prob x = {B, T, H, Hkv, dh, NULL, NULL, NULL, NULL, {0}, {0}, {0}, {0}, {0}, {0}, {0}, {0}};
    int64_t nq = (int64_t)B * T * H * dh, nk = (int64_t)B * T * Hkv * dh;
    x.q = tu_random(nq, seed, -1, 1);
    x.k = tu_random(nk, seed + 1, -1, 1);
    x.v = tu_random(nk, seed + 2, -1, 1);
    x.g = tu_random(nq, seed + 3, -1, 1);
    int64_t qs[3] = {B, T, (int64_t)H * dh}, ks[3] = {B, T, (int64_t)Hkv * dh};
    x.tq = tu_tensor(3, qs, x.q);
    x.tk = tu_tensor(3, ks, x.k);
    x.tv = tu_tensor(3, ks, x.v);
    x.tg = tu_tensor(3, qs, x.g);
    x.out = tu_zeros(3, qs);
    x.dq = tu_zeros(3, qs);
    x.dk = tu_zeros(3, ks);
    x.dv = tu_zeros(3, ks);
    return x;
}

static void prob_free(prob *x) {
    free(x->q);
    free(x->k);
    free(x->v);
    free(x->g);
    tensor *ts[] = {&x->tq, &x->tk, &x->tv, &x->tg, &x->out, &x->dq, &x->dk, &x->dv};
    for (int i = 0; i < 8; i++) tensor_free(ts[i]);
}

/* Forward, then backward with variant opts (NULL = default) into NaN-filled gradients (so every
 * element must be written); downloads the three gradients. */
static void run_backward(prob *x, const attn_mask *m, const attn_backward_opts *opts, float **dq, float **dk,
                         float **dv) {
    rt_ctx *ctx = tu_ctx();
    tu_ok(ops_attention_prefill(ctx, &x->tq, &x->tk, &x->tv, x->H, x->Hkv, m, &x->out));
    tu_ok(tensor_fill(&x->dq, NAN));
    tu_ok(tensor_fill(&x->dk, NAN));
    tu_ok(tensor_fill(&x->dv, NAN));
    tu_ok(ops_attention_prefill_backward_with(ctx, &x->tq, &x->tk, &x->tv, x->H, x->Hkv, m, &x->out, &x->tg,
                                              opts, &x->dq, &x->dk, &x->dv));
    *dq = tu_download(&x->dq);
    *dk = tu_download(&x->dk);
    *dv = tu_download(&x->dv);
}

/* The device default, one work-item per group with tiles of one, and __local / global tilings
 * whose tile sizes do not divide the ranges or the group sizes (tile sizes 3 and 5 also leave
 * padding lanes in the tile vectors). On a CPU the global ones walk per work-item by default; the
 * fifth variant forces the group walk (masked triangles, separate far launch) from global memory.
 * Then two go through the GEMM in blocks of 7 and 32 queries (the default on CPUs where the mask
 * leaves the GEMMs enough work, so the kernel variants turn it off), and three through the sliced
 * kernels (the GPU rows' default) at up to 8, 4 and 64 work-items per row, the last with groups of
 * one row narrower than its 16-row tiles. */
static const attn_backward_opts variants[] = {
    {0, 0, 0, 0, 0, 0, 0, 0},      {1, 1, 1, 1, 2, 0, -1, -1},  {32, 3, 8, 5, 1, 0, -1, -1},
    {8, 16, 24, 3, 2, 0, -1, -1},  {8, 16, 24, 3, 2, 2, -1, -1}, {0, 0, 0, 0, 0, 0, 7, -1},
    {0, 0, 0, 0, 0, 0, 32, -1},    {16, 8, 16, 8, 0, 0, -1, 8},  {5, 3, 7, 5, 0, 0, -1, 4},
    {1, 16, 1, 16, 0, 0, -1, 64},
};
#define N_VARIANTS ((int)(sizeof variants / sizeof variants[0]))

static const bcase kcases[] = {
    {2, 37, 2, 1, 8, ATTN_COMPRESSED, 3, BOUNDARY_CYCLIC, 4},    /* T % P != 0, batch, GQA */
    {1, 100, 4, 2, 24, ATTN_COMPRESSED, 5, BOUNDARY_RANDOM, 6},  /* odd dh, GQA */
    {1, 257, 2, 1, 64, ATTN_COMPRESSED, 8, BOUNDARY_CYCLIC, 8},  /* many blocks, far pass */
    {2, 100, 2, 2, 8, ATTN_COMPRESSED, 0, BOUNDARY_UNIFORM, 1},  /* P = 1, L = 0 */
    {1, 37, 2, 1, 24, ATTN_COMPRESSED, 4, BOUNDARY_UNIFORM, 64}, /* P >= T: only boundary 0 */
    {2, 41, 4, 1, 8, ATTN_COMPRESSED, 2, BOUNDARY_EXPLICIT, 0},  /* explicit list, H = 4 Hkv */
    {1, 33, 2, 2, 24, ATTN_COMPRESSED, 40, BOUNDARY_CYCLIC, 8},  /* L >= T: no far pass */
    {1, 50, 2, 1, 12, ATTN_COMPRESSED, 3, BOUNDARY_CYCLIC, 4},   /* dh % 8 != 0: partial float8s */
    {1, 90, 2, 1, 40, ATTN_COMPRESSED, 6, BOUNDARY_CYCLIC, 8},   /* dh 40: the row pass in 32s and 8s */
    {2, 45, 4, 2, 24, ATTN_CAUSAL, 0, BOUNDARY_UNIFORM, 1},
    {1, 257, 2, 2, 8, ATTN_CAUSAL, 0, BOUNDARY_UNIFORM, 1},
    {1, 100, 2, 1, 64, ATTN_SLIDING, 6, BOUNDARY_UNIFORM, 1},
    {1, 23, 3, 3, 8, ATTN_SLIDING, 0, BOUNDARY_UNIFORM, 1},  /* L = 0 */
    {3, 1, 2, 1, 8, ATTN_COMPRESSED, 2, BOUNDARY_CYCLIC, 4}, /* T = 1 */
};
#define N_KCASES ((int)(sizeof kcases / sizeof kcases[0]))

START_TEST(kernel_backward_matches_reference_on_awkward_shapes) {
    const bcase *c = &kcases[_i];
    prob x = prob_make(c->B, c->T, c->H, c->Hkv, c->dh, 500 + (uint64_t)_i * 11);
    tu_bset bs = bset_make(c->strategy, c->chunk, c->T);
    int64_t nq = (int64_t)c->B * c->T * c->H * c->dh, nk = (int64_t)c->B * c->T * c->Hkv * c->dh;
    float *wq = malloc((size_t)nq * sizeof *wq), *wk = malloc((size_t)nk * sizeof *wk);
    float *wv = malloc((size_t)nk * sizeof *wv);
    ck_assert(wq && wk && wv);
    ref_attention_backward(c->B, c->T, c->H, c->Hkv, c->dh, x.q, x.k, x.v, x.g, (int)c->mode, c->window,
                           bs.flags, wq, wk, wv);
    attn_mask m = {c->mode, c->window, c->mode == ATTN_COMPRESSED ? &bs.t : NULL, 0, NULL};
    for (int vi = 0; vi < N_VARIANTS; vi++) {
        float *dq, *dk, *dv;
        /* the GEMM path's plan from the boundaries' host copy (blocks of 32) or a download (7) */
        m.host = c->mode == ATTN_COMPRESSED && variants[vi].gemm_block == 32 ? bs.pos32 : NULL;
        run_backward(&x, &m, &variants[vi], &dq, &dk, &dv);
        char what[128];
        snprintf(what, sizeof what, "case %d (mode %d, T %d, dh %d, nb %d) variant %d dq", _i, (int)c->mode,
                 c->T, c->dh, bs.n, vi);
        tu_assert_close(dq, wq, nq, RTOL, ATOL, what);
        what[strlen(what) - 1] = 'k';
        tu_assert_close(dk, wk, nk, RTOL, ATOL, what);
        what[strlen(what) - 1] = 'v';
        tu_assert_close(dv, wv, nk, RTOL, ATOL, what);
        free(dq);
        free(dk);
        free(dv);
    }
    free(wq);
    free(wk);
    free(wv);
    tu_bset_free(&bs);
    prob_free(&x);
}
END_TEST

START_TEST(kernel_backward_is_deterministic) {
    prob x = prob_make(2, 150, 4, 2, 24, 77);
    tu_bset bs = bset_make(BOUNDARY_RANDOM, 5, x.T);
    attn_mask m = {ATTN_COMPRESSED, 4, &bs.t, 0, NULL};
    float *a[3], *b[3];
    run_backward(&x, &m, NULL, &a[0], &a[1], &a[2]);
    run_backward(&x, &m, NULL, &b[0], &b[1], &b[2]);
    int64_t n[3] = {tensor_numel(&x.dq), tensor_numel(&x.dk), tensor_numel(&x.dv)};
    for (int i = 0; i < 3; i++) {
        ck_assert_msg(!memcmp(a[i], b[i], (size_t)n[i] * sizeof(float)), "gradient %d differs between runs",
                      i);
        free(a[i]);
        free(b[i]);
    }
    tu_bset_free(&bs);
    prob_free(&x);
}
END_TEST

/* sum_s P_ts = 1 for every query, so summing dv over keys gives sum_t dout_t per kv head (GQA:
 * over the group's heads), whatever the mask: a check that no (query, key) pair is dropped or
 * visited twice by the near / far split, with a tolerance of 1e-3 on sums of ~300 terms of
 * magnitude <= 1 (f32 rounding is ~1e-5 there). */
START_TEST(dv_summed_over_keys_equals_dout_summed_over_queries) {
    prob x = prob_make(1, 300, 2, 1, 8, 91);
    tu_bset bs = bset_make(BOUNDARY_CYCLIC, 7, x.T);
    attn_mask m = {ATTN_COMPRESSED, 3, &bs.t, 0, NULL};
    float *dq, *dk, *dv;
    run_backward(&x, &m, NULL, &dq, &dk, &dv);
    for (int d = 0; d < x.dh; d++) {
        double got = 0, want = 0;
        for (int s = 0; s < x.T; s++) got += dv[s * x.dh + d];
        for (int t = 0; t < x.T; t++)
            for (int h = 0; h < x.H; h++) want += x.g[(t * x.H + h) * x.dh + d];
        ck_assert_msg(fabs(got - want) < 1e-3, "column %d: sum dv %g, sum dout %g", d, got, want);
    }
    free(dq);
    free(dk);
    free(dv);
    tu_bset_free(&bs);
    prob_free(&x);
}
END_TEST

/* ---- (3) bad arguments ---- */

static void expect_fail(attamba_status s, attamba_status want, const char *needle) {
    ck_assert_msg(s == want, "got %s, want %s (%s)", attamba_status_str(s), attamba_status_str(want),
                  tu_ctx()->err);
    ck_assert_msg(strstr(tu_ctx()->err, needle), "message '%s' lacks '%s'", tu_ctx()->err, needle);
}

START_TEST(bad_arguments_return_a_status_and_a_message) {
    rt_ctx *ctx = tu_ctx();
    prob x = prob_make(1, 10, 4, 2, 8, 5);
    attn_mask causal = {ATTN_CAUSAL, 0, NULL, 0, NULL};
#define BWD(H, Hkv, mask, out, dout, dq, dk, dv)                                                             \
    ops_attention_prefill_backward(ctx, &x.tq, &x.tk, &x.tv, H, Hkv, mask, out, dout, dq, dk, dv)
    tu_ok(BWD(4, 2, &causal, &x.out, &x.tg, &x.dq, &x.dk, &x.dv));
    expect_fail(BWD(4, 3, &causal, &x.out, &x.tg, &x.dq, &x.dk, &x.dv), ATTAMBA_ERR_INVALID_ARG,
                "multiple of n_kv_heads");
    expect_fail(BWD(0, 1, &causal, &x.out, &x.tg, &x.dq, &x.dk, &x.dv), ATTAMBA_ERR_INVALID_ARG, "n_heads");
    expect_fail(BWD(3, 1, &causal, &x.out, &x.tg, &x.dq, &x.dk, &x.dv), ATTAMBA_ERR_SHAPE,
                "multiple of n_heads");
    /* k built for Hkv = 2 passed as Hkv = 1 */
    expect_fail(BWD(4, 1, &causal, &x.out, &x.tg, &x.dq, &x.dk, &x.dv), ATTAMBA_ERR_SHAPE, "k must be");
    expect_fail(BWD(4, 2, &causal, &x.out, &x.tk, &x.dq, &x.dk, &x.dv), ATTAMBA_ERR_SHAPE, "dout");
    expect_fail(BWD(4, 2, &causal, NULL, &x.tg, &x.dq, &x.dk, &x.dv), ATTAMBA_ERR_INVALID_ARG,
                "out is an empty");
    expect_fail(BWD(4, 2, &causal, &x.out, &x.tg, &x.dk, &x.dk, &x.dv), ATTAMBA_ERR_SHAPE, "dq");
    expect_fail(BWD(4, 2, &causal, &x.out, &x.tg, &x.dq, &x.dq, &x.dv), ATTAMBA_ERR_SHAPE, "dk");
    expect_fail(BWD(4, 2, &causal, &x.out, &x.tg, &x.dq, &x.dk, &x.dk), ATTAMBA_ERR_INVALID_ARG,
                "dk shares its buffer with dv");
    expect_fail(BWD(4, 2, &causal, &x.out, &x.tg, &x.tg, &x.dk, &x.dv), ATTAMBA_ERR_INVALID_ARG,
                "dq shares its buffer with dout");
    expect_fail(BWD(4, 2, NULL, &x.out, &x.tg, &x.dq, &x.dk, &x.dv), ATTAMBA_ERR_INVALID_ARG, "mask is NULL");
    attn_mask bad = {(attn_mode)7, 0, NULL, 0, NULL};
    expect_fail(BWD(4, 2, &bad, &x.out, &x.tg, &x.dq, &x.dk, &x.dv), ATTAMBA_ERR_INVALID_ARG, "mode 7");
    attn_mask neg = {ATTN_SLIDING, -1, NULL, 0, NULL};
    expect_fail(BWD(4, 2, &neg, &x.out, &x.tg, &x.dq, &x.dk, &x.dv), ATTAMBA_ERR_INVALID_ARG, "window -1");
    attn_mask missing = {ATTN_COMPRESSED, 2, NULL, 0, NULL};
    expect_fail(BWD(4, 2, &missing, &x.out, &x.tg, &x.dq, &x.dk, &x.dv), ATTAMBA_ERR_INVALID_ARG,
                "boundaries");
    int32_t unsorted[3] = {0, 5, 3}, nozero[2] = {1, 5}, beyond[2] = {0, 10};
    tensor tu, tz, tb;
    tu_ok(tensor_alloc(ctx, &tu, TENSOR_I32, 1, (int64_t[]){3}));
    tu_ok(tensor_upload(&tu, unsorted));
    tu_ok(tensor_alloc(ctx, &tz, TENSOR_I32, 1, (int64_t[]){2}));
    tu_ok(tensor_upload(&tz, nozero));
    tu_ok(tensor_alloc(ctx, &tb, TENSOR_I32, 1, (int64_t[]){2}));
    tu_ok(tensor_upload(&tb, beyond));
    attn_mask m = {ATTN_COMPRESSED, 2, &tu, 0, NULL};
    expect_fail(BWD(4, 2, &m, &x.out, &x.tg, &x.dq, &x.dk, &x.dv), ATTAMBA_ERR_INVALID_ARG, "increasing");
    m.boundaries = &tz;
    expect_fail(BWD(4, 2, &m, &x.out, &x.tg, &x.dq, &x.dk, &x.dv), ATTAMBA_ERR_INVALID_ARG, "position 0");
    m.boundaries = &tb;
    expect_fail(BWD(4, 2, &m, &x.out, &x.tg, &x.dq, &x.dk, &x.dv), ATTAMBA_ERR_INVALID_ARG, "below T");
    m.boundaries = &x.tk; /* f32, 3-D */
    expect_fail(BWD(4, 2, &m, &x.out, &x.tg, &x.dq, &x.dk, &x.dv), ATTAMBA_ERR_SHAPE, "i32");
    attn_backward_opts opts = {0, 0, 300, 0, 0, 0, -1, 0};
    expect_fail(ops_attention_prefill_backward_with(ctx, &x.tq, &x.tk, &x.tv, 4, 2, &causal, &x.out, &x.tg,
                                                    &opts, &x.dq, &x.dk, &x.dv),
                ATTAMBA_ERR_INVALID_ARG, "out of range");
    attn_backward_opts item_local = {0, 0, 0, 0, 1, 1, -1, -1}, item_bad = {0, 0, 0, 0, 0, 3, -1, -1};
    expect_fail(ops_attention_prefill_backward_with(ctx, &x.tq, &x.tk, &x.tv, 4, 2, &causal, &x.out, &x.tg,
                                                    &item_local, &x.dq, &x.dk, &x.dv),
                ATTAMBA_ERR_INVALID_ARG, "__local");
    expect_fail(ops_attention_prefill_backward_with(ctx, &x.tq, &x.tk, &x.tv, 4, 2, &causal, &x.out, &x.tg,
                                                    &item_bad, &x.dq, &x.dk, &x.dv),
                ATTAMBA_ERR_INVALID_ARG, "per_item 3");
#undef BWD
    tensor_free(&tu);
    tensor_free(&tz);
    tensor_free(&tb);
    prob_free(&x);
}
END_TEST

int main(void) {
    Suite *s = suite_create("attention_backward");
    TCase *t = tcase_create("attention_backward");
    /* A cold kernel cache compiles five variants (plus the forward) inside one loop iteration:
     * several seconds each on 2 shared cores, beyond Check's 4 s default. */
    tcase_set_timeout(t, 300);
    tcase_add_loop_test(t, reference_backward_matches_finite_differences, 0, N_FD_CASES);
    tcase_add_loop_test(t, kernel_backward_matches_reference_on_awkward_shapes, 0, N_KCASES);
    tcase_add_test(t, kernel_backward_is_deterministic);
    tcase_add_test(t, dv_summed_over_keys_equals_dout_summed_over_queries);
    tcase_add_test(t, bad_arguments_return_a_status_and_a_message);
    suite_add_tcase(s, t);
    return tu_run(s);
}
