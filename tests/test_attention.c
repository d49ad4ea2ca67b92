/* Attention (prefill, decode, gather) against the dense reference with the SPEC 3.3 mask.
 * Inputs are uniform in [-1, 1), so scores are bounded by sqrt(dh) and every output is a convex
 * combination of values in [-1, 1]. Tolerances:
 *  - kernel vs the double-precision reference: 2e-5 absolute + 1e-4 relative (f32 dot products of
 *    up to 64 terms, f32 exp and a running sum over up to a few hundred keys: observed errors are
 *    below 2e-6);
 *  - kernel vs kernel (different key orders / variants / decode vs prefill): the same 2e-5 + 1e-4,
 *    as both sides carry independent f32 rounding;
 *  - gather: exact (a copy). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/attention.h"
#include "ops/boundaries.h"
#include "ops/layer.h"
#include "ops/tuning.h"
#include "ref/ref_attention.h"
#include "ref/ref_layer.h"
#include "tensor/quant.h"
#include "testutil.h"

#define RTOL 1e-4
#define ATOL 2e-5

/* ---- helpers ---- */

/* Boundaries of layer `layer` of 4 in [0, T) from a spec. */
static tu_bset bset_make(const boundary_spec *spec, int layer, int T) {
    return tu_bset_make(spec, layer, 4, T);
}

/* Random q, k, v on host and device. */
typedef struct {
    int B, T, H, Hkv, dh;
    float *q, *k, *v;
    tensor tq, tk, tv, out;
} qkv;

static qkv qkv_make(int B, int T, int H, int Hkv, int dh, uint64_t seed) {
    qkv x = {B, T, H, Hkv, dh, NULL, NULL, NULL, {0}, {0}, {0}, {0}};
    int64_t nq = (int64_t)B * T * H * dh, nk = (int64_t)B * T * Hkv * dh;
    x.q = tu_random(nq, seed, -1, 1);
    x.k = tu_random(nk, seed + 1, -1, 1);
    x.v = tu_random(nk, seed + 2, -1, 1);
    int64_t qs[3] = {B, T, (int64_t)H * dh}, ks[3] = {B, T, (int64_t)Hkv * dh};
    x.tq = tu_tensor(3, qs, x.q);
    x.tk = tu_tensor(3, ks, x.k);
    x.tv = tu_tensor(3, ks, x.v);
    x.out = tu_zeros(3, qs);
    return x;
}

static void qkv_free(qkv *x) {
    free(x->q);
    free(x->k);
    free(x->v);
    tensor_free(&x->tq);
    tensor_free(&x->tk);
    tensor_free(&x->tv);
    tensor_free(&x->out);
}

static int64_t qkv_nout(const qkv *x) { return (int64_t)x->B * x->T * x->H * x->dh; }

/* Runs the kernel (variant opts, NULL = default) and returns the downloaded output. */
static float *run_prefill(qkv *x, attn_mode mode, int window, const tu_bset *bs, const attn_prefill_opts *opts) {
    /* The GEMM path plans compressed blocks from the host copy of the boundaries when the mask has one
     * (the model's way), else from a download: blocks of 16 take the first, the others the second. */
    const int32_t *host = bs && opts && opts->gemm_block == 16 ? bs->pos32 : NULL;
    attn_mask m = {mode, window, bs ? &bs->t : NULL, 0, host};
    tu_ok(ops_attention_prefill_with(tu_ctx(), &x->tq, &x->tk, &x->tv, x->H, x->Hkv, &m, opts, &x->out));
    return tu_download(&x->out);
}

static float *run_ref(const qkv *x, attn_mode mode, int window, const tu_bset *bs) {
    float *want = malloc((size_t)qkv_nout(x) * sizeof *want);
    ref_attention(x->B, x->T, x->H, x->Hkv, x->dh, x->q, x->k, x->v, (int)mode, window, bs ? bs->flags : NULL,
                  want);
    return want;
}

/* Variants every shape runs through: the device default, one query per group, and both tilings
 * with tile sizes that do not divide the key ranges, narrower head-dim vectors, and boundary rows
 * read in place or from the compact gathered copy; dense causal also with the keys-along-lanes
 * kernel at 3 and 1 queries per work-item (the default takes the table's, 16 on CPUs) and without it;
 * every mask through the GEMM in blocks of 5 and 16 queries (on CPUs the default takes the table's
 * 128 where the mask leaves the GEMMs enough work, so the four kernel variants turn it off); and the
 * sliced kernel (the GPU rows' default) at up to 8, 4 and 64 work-items per query (dh 8: 8, dh 24: 8
 * and 4, dh 64: 64), with query blocks of 16, 5 and 3 and tiles of 8, 4 and 16 keys; compressed and
 * sliding masks also with the queries along the lanes (attn_lanes) at 8 and 16 per work-item, 8 and 4
 * keys per group (the default takes the table's on CPUs, so the other variants turn it off). */
static const attn_prefill_opts variants[] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 0, 0},      {1, 1, 2, 0, 1, -1, -1, -1, -1, 0},  {32, 2, 1, 4, 2, 3, -1, -1, -1, 0},
    {8, 16, 2, 8, 0, -1, -1, -1, -1, 0}, {16, 8, 1, 0, 1, 1, -1, -1, -1, 0},  {0, 0, 0, 0, 0, 0, 5, -1, 0, 0},
    {0, 0, 0, 0, 0, 0, 16, -1, 0, 0},    {16, 8, 0, 0, 0, -1, -1, 8, -1, 0},  {5, 4, 0, 0, 2, -1, -1, 4, -1, 0},
    {3, 16, 0, 0, 1, -1, -1, 64, -1, 0}, {0, 0, 0, 0, 0, 0, 0, 0, 1, 8},      {0, 0, 0, 0, 0, 0, 0, 0, 2, 8},
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 4},      {0, 0, 0, 0, 0, 0, 0, 0, 2, 4},
};
#define N_VARIANTS ((int)(sizeof variants / sizeof variants[0]))

/* ---- prefill vs the reference ---- */

typedef struct {
    int B, T, H, Hkv, dh;
    attn_mode mode;
    int window;
    boundary_strategy strategy;
    int chunk;
} pcase;

static const int64_t explicit_pos[] = {0, 3, 4, 17, 30};

static const pcase pcases[] = {
    {2, 37, 2, 2, 8, ATTN_COMPRESSED, 3, BOUNDARY_CYCLIC, 4},     /* T not a multiple of P, batch */
    {1, 50, 4, 1, 24, ATTN_COMPRESSED, 0, BOUNDARY_RANDOM, 5},    /* L = 0, odd dh, H = 4 Hkv */
    {1, 20, 2, 1, 64, ATTN_COMPRESSED, 2, BOUNDARY_UNIFORM, 1},   /* P = 1 */
    {1, 19, 1, 1, 8, ATTN_COMPRESSED, 4, BOUNDARY_UNIFORM, 32},   /* P >= T: only boundary 0 */
    {2, 33, 4, 4, 64, ATTN_COMPRESSED, 40, BOUNDARY_CYCLIC, 8},   /* L >= T */
    {1, 41, 8, 2, 8, ATTN_COMPRESSED, 5, BOUNDARY_EXPLICIT, 0},   /* explicit list */
    {1, 300, 2, 1, 64, ATTN_COMPRESSED, 8, BOUNDARY_RANDOM, 6},   /* many blocks, phase-A tails */
    {1, 90, 2, 1, 40, ATTN_COMPRESSED, 6, BOUNDARY_CYCLIC, 8},    /* dh 40: the row pass in 32s and 8s */
    {2, 45, 4, 2, 24, ATTN_CAUSAL, 0, BOUNDARY_UNIFORM, 1},
    {1, 70, 2, 1, 64, ATTN_CAUSAL, 0, BOUNDARY_UNIFORM, 1},       /* tiles of 16 keys, T past them */
    {2, 17, 3, 3, 8, ATTN_CAUSAL, 0, BOUNDARY_UNIFORM, 1},        /* dh = 8: one vector */
    {1, 70, 2, 1, 64, ATTN_SLIDING, 6, BOUNDARY_UNIFORM, 1},
    {1, 23, 3, 3, 8, ATTN_SLIDING, 0, BOUNDARY_UNIFORM, 1},       /* L = 0: each query sees itself */
    {3, 1, 2, 1, 8, ATTN_COMPRESSED, 2, BOUNDARY_CYCLIC, 4},      /* T = 1 */
};
#define N_PCASES ((int)(sizeof pcases / sizeof pcases[0]))

START_TEST(prefill_matches_dense_reference_on_awkward_shapes) {
    const pcase *c = &pcases[_i];
    qkv x = qkv_make(c->B, c->T, c->H, c->Hkv, c->dh, 100 + (uint64_t)_i * 7);
    boundary_spec spec = {c->strategy, c->chunk > 0 ? c->chunk : 1, 11, explicit_pos, 5};
    tu_bset bs = bset_make(&spec, 2, c->T);
    float *want = run_ref(&x, c->mode, c->window, &bs);
    for (int v = 0; v < N_VARIANTS; v++) {
        float *got = run_prefill(&x, c->mode, c->window, &bs, &variants[v]);
        char what[96];
        snprintf(what, sizeof what, "case %d (mode %d, T %d, dh %d) variant %d", _i, (int)c->mode, c->T, c->dh, v);
        tu_assert_close(got, want, qkv_nout(&x), RTOL, ATOL, what);
        free(got);
    }
    free(want);
    tu_bset_free(&bs);
    qkv_free(&x);
}
END_TEST

/* ---- properties ---- */

/* The queries along the lanes at the widest head (dh = 256: 2 x 256 x 16 private floats per work-item),
 * 8 or 16 queries per work-item and 4 or 8 keys per group, compressed and sliding, against the reference. */
START_TEST(query_lanes_at_the_widest_head_match_the_reference) {
    qkv x = qkv_make(1, 41, 2, 1, 256, 61);
    boundary_spec spec = {BOUNDARY_CYCLIC, 4, 0, NULL, 0};
    tu_bset bs = bset_make(&spec, 1, x.T);
    for (int mode = 0; mode < 2; mode++) {
        attn_mode m = mode ? ATTN_SLIDING : ATTN_COMPRESSED;
        float *want = run_ref(&x, m, 5, mode ? NULL : &bs);
        for (int qv = 1; qv <= 2; qv++)
            for (int rk = 4; rk <= 8; rk += 4) {
                attn_prefill_opts o = {.qv = qv, .rk = rk};
                float *got = run_prefill(&x, m, 5, mode ? NULL : &bs, &o);
                tu_assert_close(got, want, qkv_nout(&x), RTOL, ATOL, mode ? "sliding, dh 256" : "compressed, dh 256");
                free(got);
            }
        free(want);
    }
    tu_bset_free(&bs);
    qkv_free(&x);
}
END_TEST

START_TEST(chunk_one_and_window_at_least_t_equal_causal) {
    qkv x = qkv_make(2, 53, 4, 2, 24, 7);
    float *causal = run_prefill(&x, ATTN_CAUSAL, 0, NULL, NULL);
    boundary_spec p1 = {BOUNDARY_UNIFORM, 1, 0, NULL, 0};
    tu_bset all = bset_make(&p1, 0, x.T);
    ck_assert_int_eq(all.n, x.T);
    for (int L = 0; L <= 5; L += 5) {
        float *got = run_prefill(&x, ATTN_COMPRESSED, L, &all, NULL);
        tu_assert_close(got, causal, qkv_nout(&x), RTOL, ATOL, "P = 1 vs causal");
        free(got);
    }
    boundary_spec p8 = {BOUNDARY_CYCLIC, 8, 0, NULL, 0};
    tu_bset some = bset_make(&p8, 3, x.T);
    for (int L = x.T - 1; L <= x.T + 10; L += 11) {
        float *got = run_prefill(&x, ATTN_COMPRESSED, L, &some, NULL);
        tu_assert_close(got, causal, qkv_nout(&x), RTOL, ATOL, "L >= T-1 vs causal");
        free(got);
        got = run_prefill(&x, ATTN_SLIDING, L, NULL, NULL);
        tu_assert_close(got, causal, qkv_nout(&x), RTOL, ATOL, "sliding L >= T-1 vs causal");
        free(got);
    }
    free(causal);
    tu_bset_free(&all);
    tu_bset_free(&some);
    qkv_free(&x);
}
END_TEST

/* COMPRESSED with only boundary 0 is SLIDING plus key 0: the same rows while key 0 is inside the
 * window (t <= L), different rows after it (the extra key changes a softmax over random data). */
START_TEST(compressed_with_only_boundary_zero_is_sliding_plus_key_zero) {
    int L = 4;
    qkv x = qkv_make(1, 30, 2, 2, 8, 9);
    boundary_spec big = {BOUNDARY_UNIFORM, 1000, 0, NULL, 0};
    tu_bset zero = bset_make(&big, 0, x.T);
    ck_assert_int_eq(zero.n, 1);
    float *comp = run_prefill(&x, ATTN_COMPRESSED, L, &zero, NULL);
    float *slid = run_prefill(&x, ATTN_SLIDING, L, NULL, NULL);
    int row = x.H * x.dh;
    tu_assert_close(comp, slid, (int64_t)(L + 1) * row, RTOL, ATOL, "rows t <= L");
    for (int t = L + 1; t < x.T; t++) {
        double diff = 0;
        for (int i = 0; i < row; i++) diff = fmax(diff, fabs(comp[t * row + i] - slid[t * row + i]));
        ck_assert_msg(diff > 1e-4, "row %d: compressed equals sliding (max diff %g) though it sees key 0", t, diff);
    }
    free(comp);
    free(slid);
    tu_bset_free(&zero);
    qkv_free(&x);
}
END_TEST

START_TEST(key_visits_match_the_closed_form) {
    /* Per query t: min(t, L) + 1 window keys plus the boundaries b < t - L. */
    int T = 200, L = 7;
    boundary_spec spec = {BOUNDARY_RANDOM, 5, 3, NULL, 0};
    int64_t b[200];
    int64_t nb = boundary_positions(&spec, 1, 4, T, b, 200);
    uint8_t flags[200];
    ref_boundary_flags(T, b, nb, flags);
    int64_t want = 0;
    for (int t = 0; t < T; t++) {
        want += (t < L ? t : L) + 1;
        for (int64_t i = 0; i < nb; i++) want += b[i] < t - L;
    }
    ck_assert_int_eq(ref_attention_key_visits(T, 2, L, flags), want);
    ck_assert_int_eq(ref_attention_key_visits(T, 0, L, flags), (int64_t)T * (T + 1) / 2);
}
END_TEST

/* The table's attn.gemm_waste decides between the GEMM path (a launch per product per block) and the
 * kernels: compressed P = 8, L = 8 at T = 256 in blocks of 64 with the window through the GEMM
 * (attn.gemm_row_window -1) computes ~3x the pairs its mask allows, so a 150% bound leaves it to the
 * kernels and a 1000% one takes the GEMMs; with the window in the row pass (L <= 32) it computes
 * ~1.1x, so 150% takes the GEMMs. Each matches the reference. */
START_TEST(the_waste_bound_chooses_the_gemm_path) {
    rt_ctx *ctx = tu_ctx();
    int T = 256, L = 8;
    boundary_spec spec = {BOUNDARY_CYCLIC, 8, 0, NULL, 0};
    tu_bset bs = bset_make(&spec, 1, T);
    qkv x = qkv_make(1, T, 2, 2, 12, 77); /* dh % 8 != 0: the row pass's partial float8s too */
    float *want = run_ref(&x, ATTN_COMPRESSED, L, &bs);
    int was_bq = ops_tune(ctx, TUNE_ATTN_GEMM_BQ), was_waste = ops_tune(ctx, TUNE_ATTN_GEMM_WASTE);
    int was_row = ops_tune(ctx, TUNE_ATTN_GEMM_ROW_WINDOW), was_qv = ops_tune(ctx, TUNE_ATTN_QV);
    tu_ok(ops_tune_set(ctx, TUNE_ATTN_QV, 0, "test"));
    unsigned long long launches[3];
    for (int i = 0; i < 3; i++) {
        tu_ok(ops_tune_set(ctx, TUNE_ATTN_GEMM_BQ, 64, "test"));
        tu_ok(ops_tune_set(ctx, TUNE_ATTN_GEMM_WASTE, i == 1 ? 1000 : 150, "test"));
        tu_ok(ops_tune_set(ctx, TUNE_ATTN_GEMM_ROW_WINDOW, i == 2 ? 32 : -1, "test"));
        attamba_counters c0, c1;
        attamba_context_counters(ctx, &c0);
        float *got = run_prefill(&x, ATTN_COMPRESSED, L, &bs, NULL);
        attamba_context_counters(ctx, &c1);
        launches[i] = (unsigned long long)(c1.launches - c0.launches);
        tu_assert_close(got, want, qkv_nout(&x), RTOL, ATOL, i == 2 ? "row window" : i ? "waste 1000%" : "waste 150%");
        free(got);
    }
    tu_ok(ops_tune_set(ctx, TUNE_ATTN_GEMM_BQ, was_bq, "test"));
    tu_ok(ops_tune_set(ctx, TUNE_ATTN_GEMM_WASTE, was_waste, "test"));
    tu_ok(ops_tune_set(ctx, TUNE_ATTN_GEMM_ROW_WINDOW, was_row, "test"));
    tu_ok(ops_tune_set(ctx, TUNE_ATTN_QV, was_qv, "test"));
    /* four blocks through the GEMMs: more than 12 launches; the kernels: a gather and the prefill */
    ck_assert_msg(launches[0] <= 4 && launches[1] > 12 && launches[2] > 12,
                  "launches: %llu at 150%%, %llu at 1000%%, %llu with the row window", launches[0], launches[1],
                  launches[2]);
    free(want);
    tu_bset_free(&bs);
    qkv_free(&x);
}
END_TEST

/* ---- decode vs prefill ---- */

typedef struct {
    attn_mode mode; /* of the prefill it is compared with */
    int window;
    boundary_strategy strategy;
    int chunk;
} dcase;

static const dcase dcases[] = {
    {ATTN_COMPRESSED, 3, BOUNDARY_CYCLIC, 4},
    {ATTN_COMPRESSED, 0, BOUNDARY_RANDOM, 3},
    {ATTN_CAUSAL, 0, BOUNDARY_UNIFORM, 1},  /* window 0, every token a boundary */
    {ATTN_SLIDING, 5, BOUNDARY_UNIFORM, 1}, /* no boundary cache */
};
#define N_DCASES ((int)(sizeof dcases / sizeof dcases[0]))

START_TEST(decode_token_by_token_equals_prefill_rows) {
    const dcase *c = &dcases[_i];
    const int B = 2, T = 23, H = 4, Hkv = 2, dh = 24, C = Hkv * dh, lag = 3;
    qkv x = qkv_make(B, T, H, Hkv, dh, 300 + (uint64_t)_i);
    boundary_spec spec = {c->strategy, c->chunk, 5, NULL, 0};
    tu_bset bs = bset_make(&spec, 1, T);
    float *pre = run_prefill(&x, c->mode, c->window, c->mode == ATTN_COMPRESSED ? &bs : NULL, NULL);
    int R = c->window + 1, cap = T;
    /* Unwritten cache slots hold NaN: reading one would poison the output. */
    float *kb = malloc((size_t)B * cap * C * sizeof(float)), *vb = malloc((size_t)B * cap * C * sizeof(float));
    float *kr = malloc((size_t)B * R * C * sizeof(float)), *vr = malloc((size_t)B * R * C * sizeof(float));
    float *qd = malloc((size_t)B * H * dh * sizeof(float));
    int32_t *bpos = malloc((size_t)B * cap * sizeof(int32_t)), nb[2], pos[2];
    tensor tkb, tvb, tkr, tvr, tbpos, tnb, tpos, tq, tout;
    tu_ok(tensor_alloc_f32(tu_ctx(), &tkb, 3, ((int64_t[]){B, cap, C})));
    tu_ok(tensor_alloc_f32(tu_ctx(), &tvb, 3, ((int64_t[]){B, cap, C})));
    tu_ok(tensor_alloc_f32(tu_ctx(), &tkr, 3, ((int64_t[]){B, R, C})));
    tu_ok(tensor_alloc_f32(tu_ctx(), &tvr, 3, ((int64_t[]){B, R, C})));
    tu_ok(tensor_alloc(tu_ctx(), &tbpos, TENSOR_I32, 2, ((int64_t[]){B, cap})));
    tu_ok(tensor_alloc(tu_ctx(), &tnb, TENSOR_I32, 1, ((int64_t[]){B})));
    tu_ok(tensor_alloc(tu_ctx(), &tpos, TENSOR_I32, 1, ((int64_t[]){B})));
    tu_ok(tensor_alloc_f32(tu_ctx(), &tq, 2, ((int64_t[]){B, H * dh})));
    tu_ok(tensor_alloc_f32(tu_ctx(), &tout, 2, ((int64_t[]){B, H * dh})));
    for (int step = 0; step < T + lag; step++) {
        for (int i = 0; i < B * cap * C; i++) kb[i] = vb[i] = NAN;
        for (int i = 0; i < B * R * C; i++) kr[i] = vr[i] = NAN;
        for (int i = 0; i < B * cap; i++) bpos[i] = 1 << 30;
        /* Sequence b lags b * lag tokens behind: the batch decodes at different positions. */
        for (int b = 0; b < B; b++) {
            pos[b] = step - b * lag < 0 ? 0 : step - b * lag >= T ? T - 1 : step - b * lag;
            nb[b] = 0;
            for (int p = 0; p <= pos[b]; p++) { /* the cache as filled token by token */
                const float *kp = x.k + ((int64_t)b * T + p) * C, *vp = x.v + ((int64_t)b * T + p) * C;
                memcpy(kr + ((int64_t)b * R + p % R) * C, kp, (size_t)C * sizeof(float));
                memcpy(vr + ((int64_t)b * R + p % R) * C, vp, (size_t)C * sizeof(float));
                int is_b = c->mode == ATTN_CAUSAL || (c->mode == ATTN_COMPRESSED && bs.flags[p]);
                if (is_b) {
                    memcpy(kb + ((int64_t)b * cap + nb[b]) * C, kp, (size_t)C * sizeof(float));
                    memcpy(vb + ((int64_t)b * cap + nb[b]) * C, vp, (size_t)C * sizeof(float));
                    bpos[b * cap + nb[b]++] = p;
                }
            }
            memcpy(qd + (int64_t)b * H * dh, x.q + ((int64_t)b * T + pos[b]) * H * dh,
                   (size_t)H * dh * sizeof(float));
        }
        tu_ok(tensor_upload(&tkb, kb));
        tu_ok(tensor_upload(&tvb, vb));
        tu_ok(tensor_upload(&tkr, kr));
        tu_ok(tensor_upload(&tvr, vr));
        tu_ok(tensor_upload(&tbpos, bpos));
        tu_ok(tensor_upload(&tnb, nb));
        tu_ok(tensor_upload(&tpos, pos));
        tu_ok(tensor_upload(&tq, qd));
        tu_ok(ops_attention_decode(tu_ctx(), &tq, &tkb, &tvb, &tbpos, &tnb, &tkr, &tvr, &tpos, H, Hkv, c->window,
                                   &tout));
        float *got = tu_download(&tout);
        for (int b = 0; b < B; b++) {
            char what[96];
            snprintf(what, sizeof what, "decode case %d, sequence %d at %d", _i, b, pos[b]);
            tu_assert_close(got + (int64_t)b * H * dh, pre + ((int64_t)b * T + pos[b]) * H * dh, H * dh, RTOL,
                            ATOL, what);
        }
        free(got);
        /* split-K: each (sequence, head)'s keys over about (cap + R) / keys groups (many of them empty
         * early on), merged by a second pass */
        rt_ctx *ctx = tu_ctx();
        int groups = ops_tune(ctx, TUNE_ATTN_DECODE_GROUPS), split_keys = ops_tune(ctx, TUNE_ATTN_DECODE_SPLIT_KEYS);
        for (int keys = 1; keys <= 9; keys += 4) {
            tu_ok(ops_tune_set(ctx, TUNE_ATTN_DECODE_GROUPS, 1024, "test"));
            tu_ok(ops_tune_set(ctx, TUNE_ATTN_DECODE_SPLIT_KEYS, keys, "test"));
            attamba_counters c0, c1;
            attamba_context_counters(ctx, &c0);
            tu_ok(ops_attention_decode(ctx, &tq, &tkb, &tvb, &tbpos, &tnb, &tkr, &tvr, &tpos, H, Hkv, c->window,
                                       &tout));
            attamba_context_counters(ctx, &c1);
            ck_assert_uint_eq(c1.launches - c0.launches, 2); /* the split and the merge */
            got = tu_download(&tout);
            for (int b = 0; b < B; b++) {
                char what[96];
                snprintf(what, sizeof what, "split-K decode (%d keys), case %d, sequence %d at %d", keys, _i, b,
                         pos[b]);
                tu_assert_close(got + (int64_t)b * H * dh, pre + ((int64_t)b * T + pos[b]) * H * dh, H * dh, RTOL,
                                ATOL, what);
            }
            free(got);
        }
        tu_ok(ops_tune_set(ctx, TUNE_ATTN_DECODE_GROUPS, groups, "test"));
        tu_ok(ops_tune_set(ctx, TUNE_ATTN_DECODE_SPLIT_KEYS, split_keys, "test"));
    }
    /* a device with little local memory: the merge's group shrinks to fit and the result holds; with
     * too little for one work-item the op refuses, naming the sizes */
    rt_ctx *ctx = tu_ctx();
    uint64_t local = ctx->dev.info.local_mem_bytes;
    ctx->dev.info.local_mem_bytes = 250; /* two work-items of dh + 2 = 26 floats (sliced: dh + 32) */
    tu_ok(ops_attention_decode(ctx, &tq, &tkb, &tvb, &tbpos, &tnb, &tkr, &tvr, &tpos, H, Hkv, c->window, &tout));
    float *got = tu_download(&tout);
    for (int b = 0; b < B; b++)
        tu_assert_close(got + (int64_t)b * H * dh, pre + ((int64_t)b * T + pos[b]) * H * dh, H * dh, RTOL, ATOL,
                        "decode with 250 bytes of local memory");
    free(got);
    ctx->dev.info.local_mem_bytes = 50;
    ck_assert_int_eq(ops_attention_decode(ctx, &tq, &tkb, &tvb, &tbpos, &tnb, &tkr, &tvr, &tpos, H, Hkv, c->window,
                                          &tout),
                     ATTAMBA_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(ctx->err, "local memory"), "%s", ctx->err);
    ctx->dev.info.local_mem_bytes = local;
    tensor_free(&tkb);
    tensor_free(&tvb);
    tensor_free(&tkr);
    tensor_free(&tvr);
    tensor_free(&tbpos);
    tensor_free(&tnb);
    tensor_free(&tpos);
    tensor_free(&tq);
    tensor_free(&tout);
    free(kb);
    free(vb);
    free(kr);
    free(vr);
    free(qd);
    free(bpos);
    free(pre);
    tu_bset_free(&bs);
    qkv_free(&x);
}
END_TEST

/* ---- gather ---- */

START_TEST(gather_rows_copies_the_indexed_rows) {
    const int B = 2, T = 9, C = 5, n = 5;
    float *src = tu_random(B * T * C, 77, -1, 1);
    int32_t idx[5] = {0, 3, 8, 3, 99}; /* 99: out of range, clamped to T - 1 */
    tensor ts = tu_tensor(3, ((int64_t[]){B, T, C}), src), ti = tu_i32(1, ((int64_t[]){n}), idx);
    tensor to = tu_zeros(3, ((int64_t[]){B, n, C}));
    tu_ok(ops_gather_rows(tu_ctx(), &ts, &ti, &to));
    float *got = tu_download(&to), want[2 * 5 * 5];
    for (int b = 0; b < B; b++)
        for (int i = 0; i < n; i++)
            for (int c = 0; c < C; c++)
                want[(b * n + i) * C + c] = src[(b * T + (idx[i] < T ? idx[i] : T - 1)) * C + c];
    tu_assert_close(got, want, B * n * C, 0, 0, "gather");
    free(got);
    free(src);
    tensor_free(&ts);
    tensor_free(&ti);
    tensor_free(&to);
}
END_TEST

/* ---- kv append ---- */

static int32_t *tu_download_i32(const tensor *t) {
    int32_t *h = malloc((size_t)tensor_numel(t) * sizeof *h);
    tu_ok(tensor_download(t, h));
    return h;
}

START_TEST(kv_append_writes_the_ring_and_the_chosen_store_rows) {
    /* awkward sizes: C not a multiple of 4, a ring of 3, one sequence storing nothing, one storing
     * in its last row, one wrapping the ring */
    const int B = 3, C = 7, R = 3, cap = 5;
    float *k = tu_random(B * C, 5, -1, 1), *v = tu_random(B * C, 6, -1, 1);
    float *kr = tu_random(B * R * C, 7, -1, 1), *vr = tu_random(B * R * C, 8, -1, 1);
    float *kb = tu_random(B * cap * C, 9, -1, 1), *vb = tu_random(B * cap * C, 10, -1, 1);
    int32_t pos[3] = {0, 11, 4}, store[3] = {0, -1, 4}, bpos[15], nb[3] = {9, 9, 9};
    for (int i = 0; i < B * cap; i++) bpos[i] = -7;
    tensor tk = tu_tensor(2, ((int64_t[]){B, C}), k), tv = tu_tensor(2, ((int64_t[]){B, C}), v);
    tensor tkr = tu_tensor(3, ((int64_t[]){B, R, C}), kr), tvr = tu_tensor(3, ((int64_t[]){B, R, C}), vr);
    tensor tkb = tu_tensor(3, ((int64_t[]){B, cap, C}), kb), tvb = tu_tensor(3, ((int64_t[]){B, cap, C}), vb);
    tensor tp = tu_i32(1, ((int64_t[]){B}), pos), ts = tu_i32(1, ((int64_t[]){B}), store);
    tensor tbp = tu_i32(2, ((int64_t[]){B, cap}), bpos), tnb = tu_i32(1, ((int64_t[]){B}), nb);
    tu_ok(ops_kv_append(tu_ctx(), &tk, &tv, &tp, &ts, &tkr, &tvr, &tkb, &tvb, &tbp, &tnb));
    ref_kv_append(B, C, R, cap, k, v, pos, store, kr, vr, kb, vb, bpos, nb);
    float *got[4] = {tu_download(&tkr), tu_download(&tvr), tu_download(&tkb), tu_download(&tvb)};
    tu_assert_close(got[0], kr, B * R * C, 0, 0, "ring keys");
    tu_assert_close(got[1], vr, B * R * C, 0, 0, "ring values");
    tu_assert_close(got[2], kb, B * cap * C, 0, 0, "stored keys");
    tu_assert_close(got[3], vb, B * cap * C, 0, 0, "stored values");
    int32_t *gp = tu_download_i32(&tbp), *gn = tu_download_i32(&tnb);
    for (int i = 0; i < B * cap; i++) ck_assert_int_eq(gp[i], bpos[i]);
    for (int b = 0; b < B; b++) ck_assert_int_eq(gn[b], nb[b]);
    ck_assert_int_eq(gn[1], 9); /* not stored: the count is left alone */
    /* a store row is refused as a shape mismatch, never written out of bounds */
    tensor bad = tu_zeros(3, ((int64_t[]){B, cap, C + 1}));
    ck_assert_int_eq(ops_kv_append(tu_ctx(), &tk, &tv, &tp, &ts, &tkr, &tvr, &bad, &tvb, &tbp, &tnb), ATTAMBA_ERR_SHAPE);
    tensor *all[] = {&tk, &tv, &tkr, &tvr, &tkb, &tvb, &tp, &ts, &tbp, &tnb, &bad};
    for (size_t i = 0; i < CORE_LEN(all); i++) tensor_free(all[i]);
    for (int i = 0; i < 4; i++) free(got[i]);
    free(gp), free(gn), free(k), free(v), free(kr), free(vr), free(kb), free(vb);
}
END_TEST

/* [B, cap, Hkv*dh] -> [B, Hkv, cap, dh] on the host. */
static float *head_major(const float *x, int B, int cap, int Hkv, int dh) {
    float *y = malloc((size_t)B * cap * Hkv * dh * sizeof *y);
    for (int b = 0; b < B; b++)
        for (int e = 0; e < cap; e++)
            for (int h = 0; h < Hkv; h++)
                for (int d = 0; d < dh; d++)
                    y[(((size_t)b * Hkv + h) * cap + e) * dh + d] = x[(((size_t)b * cap + e) * Hkv + h) * dh + d];
    return y;
}

START_TEST(head_major_store_decodes_and_appends_like_row_major) {
    rt_ctx *ctx = tu_ctx();
    const int B = 2, H = 4, Hkv = 2, dh = 8, cap = 6, window = 2, R = window + 1, C = Hkv * dh;
    float *q = tu_random(B * H * dh, 21, -1, 1), *kb = tu_random(B * cap * C, 22, -1, 1);
    float *vb = tu_random(B * cap * C, 23, -1, 1), *kr = tu_random(B * R * C, 24, -1, 1);
    float *vr = tu_random(B * R * C, 25, -1, 1), *k = tu_random(B * C, 26, -1, 1), *v = tu_random(B * C, 27, -1, 1);
    float *kb4 = head_major(kb, B, cap, Hkv, dh), *vb4 = head_major(vb, B, cap, Hkv, dh);
    int32_t bpos[12] = {0, 3, 7, 9, 0, 0, 0, 2, 5, 6, 8, 11}, nb[2] = {4, 6}, pos[2] = {12, 13}, store[2] = {4, -1};
    tensor tq = tu_tensor(2, ((int64_t[]){B, H * dh}), q), tkr = tu_tensor(3, ((int64_t[]){B, R, C}), kr);
    tensor tvr = tu_tensor(3, ((int64_t[]){B, R, C}), vr), tk = tu_tensor(2, ((int64_t[]){B, C}), k);
    tensor tv = tu_tensor(2, ((int64_t[]){B, C}), v);
    tensor t3[2] = {tu_tensor(3, ((int64_t[]){B, cap, C}), kb), tu_tensor(3, ((int64_t[]){B, cap, C}), vb)};
    tensor t4[2] = {tu_tensor(4, ((int64_t[]){B, Hkv, cap, dh}), kb4), tu_tensor(4, ((int64_t[]){B, Hkv, cap, dh}), vb4)};
    tensor tbp = tu_i32(2, ((int64_t[]){B, cap}), bpos), tnb = tu_i32(1, ((int64_t[]){B}), nb);
    tensor tp = tu_i32(1, ((int64_t[]){B}), pos), ts = tu_i32(1, ((int64_t[]){B}), store);
    tensor o3 = tu_zeros(2, ((int64_t[]){B, H * dh})), o4 = tu_zeros(2, ((int64_t[]){B, H * dh}));
    /* append to both layouts, then decode from both: the same keys, so the same outputs */
    tu_ok(ops_kv_append(ctx, &tk, &tv, &tp, &ts, &tkr, &tvr, &t3[0], &t3[1], &tbp, &tnb));
    tu_ok(ops_kv_append(ctx, &tk, &tv, &tp, &ts, &tkr, &tvr, &t4[0], &t4[1], &tbp, &tnb));
    tu_ok(ops_attention_decode(ctx, &tq, &t3[0], &t3[1], &tbp, &tnb, &tkr, &tvr, &tp, H, Hkv, window, &o3));
    tu_ok(ops_attention_decode(ctx, &tq, &t4[0], &t4[1], &tbp, &tnb, &tkr, &tvr, &tp, H, Hkv, window, &o4));
    float *a = tu_download(&o3), *b4 = tu_download(&o4), *s3 = tu_download(&t3[0]), *s4 = tu_download(&t4[0]);
    float *want4 = head_major(s3, B, cap, Hkv, dh);
    tu_assert_close(b4, a, B * H * dh, 0, 0, "head-major decode");
    tu_assert_close(s4, want4, B * cap * C, 0, 0, "head-major append");
    tensor *all[] = {&tq, &tkr, &tvr, &tk, &tv, &t3[0], &t3[1], &t4[0], &t4[1], &tbp, &tnb, &tp, &ts, &o3, &o4};
    for (size_t i = 0; i < CORE_LEN(all); i++) tensor_free(all[i]);
    float *fr[] = {q, kb, vb, kr, vr, k, v, kb4, vb4, a, b4, s3, s4, want4};
    for (size_t i = 0; i < CORE_LEN(fr); i++) free(fr[i]);
}
END_TEST

/* An f16 store tensor of n values, and the values it holds (x rounded to the nearest half) in r. */
static tensor f16_tensor(int ndim, const int64_t *shape, const float *x, int64_t n, float *r) {
    uint16_t *h = malloc((size_t)n * sizeof *h);
    for (int64_t i = 0; i < n; i++) r[i] = quant_f32_from_f16(h[i] = quant_f16_from_f32(x[i]));
    tensor t;
    tu_ok(tensor_alloc(tu_ctx(), &t, TENSOR_F16, ndim, shape));
    tu_ok(tensor_upload(&t, h));
    free(h);
    return t;
}

/* An f16 store (head-major, as the cache keeps it) holds what kv_append writes rounded to the nearest
 * half, and decodes exactly as an f32 store holding those rounded values: every vector width of the
 * store's loads (dh 6, 8, 12, 16: widths 1, 8, 4, 16), the ring staying f32. */
START_TEST(f16_store_appends_and_decodes_its_rounded_values) {
    static const int dhs[] = {6, 8, 12, 16};
    rt_ctx *ctx = tu_ctx();
    const int B = 2, H = 4, Hkv = 2, dh = dhs[_i], cap = 6, window = 2, R = window + 1, C = Hkv * dh;
    const int64_t n = (int64_t)B * cap * C, shape[4] = {B, Hkv, cap, dh};
    float *q = tu_random(B * H * dh, 31, -1, 1), *kb = tu_random(n, 32, -1, 1), *vb = tu_random(n, 33, -1, 1);
    float *kr = tu_random(B * R * C, 34, -1, 1), *vr = tu_random(B * R * C, 35, -1, 1);
    float *k = tu_random(B * C, 36, -1, 1), *v = tu_random(B * C, 37, -1, 1);
    float *kb_r = malloc((size_t)n * sizeof *kb_r), *vb_r = malloc((size_t)n * sizeof *vb_r);
    int32_t bpos[12] = {0, 3, 7, 9, 0, 0, 0, 2, 5, 6, 8, 11}, nb[2] = {4, 6}, pos[2] = {12, 13}, store[2] = {4, -1};
    tensor tq = tu_tensor(2, ((int64_t[]){B, H * dh}), q), tkr = tu_tensor(3, ((int64_t[]){B, R, C}), kr);
    tensor tvr = tu_tensor(3, ((int64_t[]){B, R, C}), vr), tk = tu_tensor(2, ((int64_t[]){B, C}), k);
    tensor tv = tu_tensor(2, ((int64_t[]){B, C}), v);
    tensor h16[2] = {f16_tensor(4, shape, kb, n, kb_r), f16_tensor(4, shape, vb, n, vb_r)};
    tensor tbp = tu_i32(2, ((int64_t[]){B, cap}), bpos), tnb = tu_i32(1, ((int64_t[]){B}), nb);
    tensor tp = tu_i32(1, ((int64_t[]){B}), pos), ts = tu_i32(1, ((int64_t[]){B}), store);
    tensor o16 = tu_zeros(2, ((int64_t[]){B, H * dh})), o32 = tu_zeros(2, ((int64_t[]){B, H * dh}));
    tu_ok(ops_kv_append(ctx, &tk, &tv, &tp, &ts, &tkr, &tvr, &h16[0], &h16[1], &tbp, &tnb));
    /* the append: sequence 0's row 4 of every head holds k, v rounded; everything else is unchanged */
    for (int h = 0; h < Hkv; h++)
        for (int d = 0; d < dh; d++) {
            int64_t at = (((int64_t)0 * Hkv + h) * cap + 4) * dh + d;
            kb_r[at] = quant_f32_from_f16(quant_f16_from_f32(k[h * dh + d]));
            vb_r[at] = quant_f32_from_f16(quant_f16_from_f32(v[h * dh + d]));
        }
    uint16_t *got16 = malloc((size_t)n * sizeof *got16);
    float *got = malloc((size_t)n * sizeof *got);
    for (int i = 0; i < 2; i++) {
        tu_ok(tensor_download(&h16[i], got16));
        for (int64_t j = 0; j < n; j++) got[j] = quant_f32_from_f16(got16[j]);
        tu_assert_close(got, i ? vb_r : kb_r, n, 0, 0, i ? "f16 store values after the append" : "f16 store keys");
    }
    /* the decode: as from an f32 store holding the same values */
    tensor t32[2] = {tu_tensor(4, shape, kb_r), tu_tensor(4, shape, vb_r)};
    tu_ok(ops_attention_decode(ctx, &tq, &h16[0], &h16[1], &tbp, &tnb, &tkr, &tvr, &tp, H, Hkv, window, &o16));
    tu_ok(ops_attention_decode(ctx, &tq, &t32[0], &t32[1], &tbp, &tnb, &tkr, &tvr, &tp, H, Hkv, window, &o32));
    float *a = tu_download(&o16), *b = tu_download(&o32);
    tu_assert_close(a, b, B * H * dh, 1e-6, 1e-7, "decode from the f16 store");
    /* stores of two types are refused */
    ck_assert_int_eq(ops_attention_decode(ctx, &tq, &h16[0], &t32[1], &tbp, &tnb, &tkr, &tvr, &tp, H, Hkv, window,
                                          &o16),
                     ATTAMBA_ERR_SHAPE);
    tensor *all[] = {&tq, &tkr, &tvr, &tk, &tv, &h16[0], &h16[1], &t32[0], &t32[1], &tbp, &tnb, &tp, &ts, &o16, &o32};
    for (size_t i = 0; i < CORE_LEN(all); i++) tensor_free(all[i]);
    float *fr[] = {q, kb, vb, kr, vr, k, v, kb_r, vb_r, got, a, b};
    for (size_t i = 0; i < CORE_LEN(fr); i++) free(fr[i]);
    free(got16);
}
END_TEST

/* The decode step's RoPE and append in one call: bit for bit ops_rope2 then ops_kv_append (dh 8 and 16: one
 * launch; dh 6: the two-launch fallback), into row-major f32, head-major f32 and head-major f16 stores; q and
 * k as the host reference rotates them; bad arguments refused before anything is written. */
START_TEST(kv_append_rope_is_rope2_then_append) {
    static const int dhs[] = {8, 16, 6};
    rt_ctx *ctx = tu_ctx();
    const int dh = dhs[_i / 3], layout = _i % 3, B = 3, H = 4, Hkv = 2, C = Hkv * dh, R = 3, cap = 5;
    const float theta = 10000.0f;
    const int64_t n = (int64_t)B * cap * C, rows[3] = {B, cap, C}, heads[4] = {B, Hkv, cap, dh};
    float *q = tu_random(B * H * dh, 41, -1, 1), *k = tu_random(B * C, 42, -1, 1), *v = tu_random(B * C, 43, -1, 1);
    float *kr = tu_random(B * R * C, 44, -1, 1), *vr = tu_random(B * R * C, 45, -1, 1);
    float *kb = tu_random(n, 46, -1, 1), *vb = tu_random(n, 47, -1, 1), *r16 = malloc((size_t)n * sizeof *r16);
    int32_t pos[3] = {0, 11, 4}, store[3] = {0, -1, 4}, bpos[15], nb[3] = {9, 9, 9};
    for (int i = 0; i < B * cap; i++) bpos[i] = -7;
    tensor tp = tu_i32(1, ((int64_t[]){B}), pos), ts = tu_i32(1, ((int64_t[]){B}), store);
    tensor t[2][9]; /* [0]: the fused call's operands, [1]: the two-call path's (q k v kr vr kb vb bpos nb) */
    for (int w = 0; w < 2; w++) {
        tensor *x = t[w];
        x[0] = tu_tensor(2, ((int64_t[]){B, H * dh}), q);
        x[1] = tu_tensor(2, ((int64_t[]){B, C}), k), x[2] = tu_tensor(2, ((int64_t[]){B, C}), v);
        x[3] = tu_tensor(3, ((int64_t[]){B, R, C}), kr), x[4] = tu_tensor(3, ((int64_t[]){B, R, C}), vr);
        if (layout == 2) {
            x[5] = f16_tensor(4, heads, kb, n, r16), x[6] = f16_tensor(4, heads, vb, n, r16);
        } else {
            x[5] = tu_tensor(layout ? 4 : 3, layout ? heads : rows, kb);
            x[6] = tu_tensor(layout ? 4 : 3, layout ? heads : rows, vb);
        }
        x[7] = tu_i32(2, ((int64_t[]){B, cap}), bpos), x[8] = tu_i32(1, ((int64_t[]){B}), nb);
    }
    tensor *f = t[0], *u = t[1];
    tu_ok(ops_kv_append_rope(ctx, &f[0], H, &f[1], Hkv, &f[2], &tp, theta, &ts, &f[3], &f[4], &f[5], &f[6], &f[7],
                             &f[8]));
    /* each two-call operand as a [B, 1, width] sequence of one token for ops_rope2 */
    tensor q3, k3;
    tu_ok(tensor_reshape(&u[0], 3, ((int64_t[]){B, 1, H * dh}), &q3));
    tu_ok(tensor_reshape(&u[1], 3, ((int64_t[]){B, 1, C}), &k3));
    tu_ok(ops_rope2(ctx, &q3, H, &k3, Hkv, &tp, theta));
    tu_ok(ops_kv_append(ctx, &u[1], &u[2], &tp, &ts, &u[3], &u[4], &u[5], &u[6], &u[7], &u[8]));
    for (int i = 0; i < 9; i++) {
        size_t bytes = (size_t)tensor_numel(&f[i]) * tensor_dtype_size(f[i].dtype);
        unsigned char *a = malloc(bytes), *b = malloc(bytes);
        tu_ok(tensor_download(&f[i], a));
        tu_ok(tensor_download(&u[i], b));
        ck_assert_msg(!memcmp(a, b, bytes), "dh %d layout %d: operand %d differs from rope2 + append", dh, layout, i);
        free(a), free(b);
    }
    ref_rope(B, 1, H, dh, q, pos, theta);
    ref_rope(B, 1, Hkv, dh, k, pos, theta);
    float *gq = tu_download(&f[0]), *gk = tu_download(&f[1]);
    tu_assert_close(gq, q, B * H * dh, 0, 1.5e-6 * 12 + 1e-6, "rotated q"); /* positions to 11: see test_layer */
    tu_assert_close(gk, k, B * C, 0, 1.5e-6 * 12 + 1e-6, "rotated k");
    /* refused: an odd head width, a q of another batch, theta 0, q overlapping k */
    tensor oq = tu_zeros(2, ((int64_t[]){B, H * 3})), ok = tu_zeros(2, ((int64_t[]){B, Hkv * 3}));
    tensor one = tu_zeros(2, ((int64_t[]){1, H * dh}));
    ck_assert_int_eq(ops_kv_append_rope(ctx, &oq, H, &ok, Hkv, &f[2], &tp, theta, &ts, &f[3], &f[4], &f[5], &f[6],
                                        &f[7], &f[8]),
                     ATTAMBA_ERR_SHAPE);
    ck_assert_int_eq(ops_kv_append_rope(ctx, &one, H, &f[1], Hkv, &f[2], &tp, theta, &ts, &f[3], &f[4], &f[5], &f[6],
                                        &f[7], &f[8]),
                     ATTAMBA_ERR_SHAPE);
    ck_assert_int_eq(ops_kv_append_rope(ctx, &f[0], H, &f[1], Hkv, &f[2], &tp, 0.0f, &ts, &f[3], &f[4], &f[5], &f[6],
                                        &f[7], &f[8]),
                     ATTAMBA_ERR_INVALID_ARG);
    tensor qk;
    tu_ok(tensor_reshape(&f[1], 2, ((int64_t[]){B, C}), &qk));
    ck_assert_int_eq(ops_kv_append_rope(ctx, &qk, Hkv, &f[1], Hkv, &f[2], &tp, theta, &ts, &f[3], &f[4], &f[5],
                                        &f[6], &f[7], &f[8]),
                     ATTAMBA_ERR_INVALID_ARG);
    float *after = tu_download(&f[1]);
    tu_assert_close(after, gk, B * C, 0, 0, "k after the refused calls");
    tensor *all[] = {&tp, &ts, &oq, &ok, &one, &q3, &k3, &qk};
    for (size_t i = 0; i < CORE_LEN(all); i++) tensor_free(all[i]);
    for (int w = 0; w < 2; w++)
        for (int i = 0; i < 9; i++) tensor_free(&t[w][i]);
    float *fr[] = {q, k, v, kr, vr, kb, vb, r16, gq, gk, after};
    for (size_t i = 0; i < CORE_LEN(fr); i++) free(fr[i]);
}
END_TEST

/* ---- bad arguments ---- */

static void expect_fail(attamba_status s, attamba_status want, const char *needle) {
    ck_assert_msg(s == want, "got %s, want %s (%s)", attamba_status_str(s), attamba_status_str(want), tu_ctx()->err);
    ck_assert_msg(strstr(tu_ctx()->err, needle), "message '%s' lacks '%s'", tu_ctx()->err, needle);
}

START_TEST(bad_arguments_return_a_status_and_a_message) {
    rt_ctx *ctx = tu_ctx();
    qkv x = qkv_make(1, 10, 4, 2, 8, 5);
    attn_mask causal = {ATTN_CAUSAL, 0, NULL, 0, NULL};
    expect_fail(ops_attention_prefill(ctx, &x.tq, &x.tk, &x.tv, 4, 3, &causal, &x.out), ATTAMBA_ERR_INVALID_ARG,
                "multiple of n_kv_heads");
    /* k built for Hkv = 2 passed as Hkv = 1 (mismatched shapes) */
    expect_fail(ops_attention_prefill(ctx, &x.tq, &x.tk, &x.tv, 4, 1, &causal, &x.out), ATTAMBA_ERR_SHAPE, "k");
    expect_fail(ops_attention_prefill(ctx, &x.tq, &x.tk, &x.tv, 4, 2, &causal, &x.tk), ATTAMBA_ERR_SHAPE, "out");
    attn_mask neg = {ATTN_SLIDING, -1, NULL, 0, NULL};
    expect_fail(ops_attention_prefill(ctx, &x.tq, &x.tk, &x.tv, 4, 2, &neg, &x.out), ATTAMBA_ERR_INVALID_ARG,
                "window -1");
    attn_mask missing = {ATTN_COMPRESSED, 2, NULL, 0, NULL};
    expect_fail(ops_attention_prefill(ctx, &x.tq, &x.tk, &x.tv, 4, 2, &missing, &x.out), ATTAMBA_ERR_INVALID_ARG,
                "boundaries");
    int32_t unsorted[3] = {0, 5, 3}, nozero[2] = {1, 5}, beyond[2] = {0, 10};
    tensor tu = tu_i32(1, ((int64_t[]){3}), unsorted), tz = tu_i32(1, ((int64_t[]){2}), nozero);
    tensor tb = tu_i32(1, ((int64_t[]){2}), beyond);
    attn_mask m = {ATTN_COMPRESSED, 2, &tu, 0, NULL};
    expect_fail(ops_attention_prefill(ctx, &x.tq, &x.tk, &x.tv, 4, 2, &m, &x.out), ATTAMBA_ERR_INVALID_ARG,
                "increasing");
    m.boundaries = &tz;
    expect_fail(ops_attention_prefill(ctx, &x.tq, &x.tk, &x.tv, 4, 2, &m, &x.out), ATTAMBA_ERR_INVALID_ARG,
                "position 0");
    m.boundaries = &tb;
    expect_fail(ops_attention_prefill(ctx, &x.tq, &x.tk, &x.tv, 4, 2, &m, &x.out), ATTAMBA_ERR_INVALID_ARG,
                "below T");
    m.boundaries = &x.tk; /* f32, 3-D */
    expect_fail(ops_attention_prefill(ctx, &x.tq, &x.tk, &x.tv, 4, 2, &m, &x.out), ATTAMBA_ERR_SHAPE, "i32");

    /* decode: ring not window + 1 rows, H % Hkv */
    tensor q = tu_zeros(2, ((int64_t[]){1, 32})), kb = tu_zeros(3, ((int64_t[]){1, 4, 16}));
    tensor ring = tu_zeros(3, ((int64_t[]){1, 3, 16}));
    int32_t zero4[4] = {0, 0, 0, 0};
    tensor bpos = tu_i32(2, ((int64_t[]){1, 4}), zero4), nb = tu_i32(1, ((int64_t[]){1}), zero4);
    tensor pos = tu_i32(1, ((int64_t[]){1}), zero4);
    expect_fail(ops_attention_decode(ctx, &q, &kb, &kb, &bpos, &nb, &ring, &ring, &pos, 4, 2, 4, &q),
                ATTAMBA_ERR_SHAPE, "kr");
    tu_ok(ops_attention_decode(ctx, &q, &kb, &kb, &bpos, &nb, &ring, &ring, &pos, 4, 2, 2, &q));
    /* Wait for it (by reading the result, zero values -> zero output): a kernel still compiling
     * when the process exits crashes PoCL's LLVM, whose lazily made statics are gone by then. */
    float *zq = tu_download(&q);
    for (int i = 0; i < 32; i++) ck_assert_float_eq(zq[i], 0.0f);
    free(zq);
    expect_fail(ops_attention_decode(ctx, &q, &kb, &kb, &bpos, &nb, &ring, &ring, &pos, 4, 3, 2, &q),
                ATTAMBA_ERR_INVALID_ARG, "multiple");
    expect_fail(ops_attention_decode(ctx, &q, &kb, &kb, &bpos, &nb, &ring, &ring, &pos, 4, 2, -1, &q),
                ATTAMBA_ERR_INVALID_ARG, "window");
    /* gather: idx must be i32 */
    expect_fail(ops_gather_rows(ctx, &kb, &q, &kb), ATTAMBA_ERR_SHAPE, "idx");
    tensor_free(&tu);
    tensor_free(&tz);
    tensor_free(&tb);
    tensor_free(&q);
    tensor_free(&kb);
    tensor_free(&ring);
    tensor_free(&bpos);
    tensor_free(&nb);
    tensor_free(&pos);
    qkv_free(&x);
}
END_TEST

int main(void) {
    Suite *s = suite_create("attention");
    TCase *t = tcase_create("attention");
    tcase_add_loop_test(t, prefill_matches_dense_reference_on_awkward_shapes, 0, N_PCASES);
    tcase_add_test(t, query_lanes_at_the_widest_head_match_the_reference);
    tcase_add_test(t, chunk_one_and_window_at_least_t_equal_causal);
    tcase_add_test(t, compressed_with_only_boundary_zero_is_sliding_plus_key_zero);
    tcase_add_test(t, key_visits_match_the_closed_form);
    tcase_add_test(t, the_waste_bound_chooses_the_gemm_path);
    tcase_add_loop_test(t, decode_token_by_token_equals_prefill_rows, 0, N_DCASES);
    tcase_add_test(t, gather_rows_copies_the_indexed_rows);
    tcase_add_test(t, kv_append_writes_the_ring_and_the_chosen_store_rows);
    tcase_add_test(t, head_major_store_decodes_and_appends_like_row_major);
    tcase_add_loop_test(t, f16_store_appends_and_decodes_its_rounded_values, 0, 4);
    tcase_add_loop_test(t, kv_append_rope_is_rope2_then_append, 0, 9);
    tcase_add_test(t, bad_arguments_return_a_status_and_a_message);
    suite_add_tcase(s, t);
    return tu_run(s);
}
