/* The trainer's ops outside the layers (src/ops/optim.c) against src/ref/ref_optim.c and hand values.
 *
 * Tolerances:
 * - sum of squares: |got - ref| <= 2e-6 * ref. Every term is >= 0, so relative error bounds add up:
 *   each square rounds once (6e-8), each lane's Kahan sum is within ~2 ulp (1.2e-7) whatever its
 *   length, the 4-level sum of the 16 lanes adds <= 4 * 6e-8, the second pass's Kahan sums another
 *   1.2e-7 and its 8-level __local tree <= 8 * 6e-8: <= ~1.1e-6 in all. (A plain f32 running sum of
 *   the 60M-element case would be off by far more: it stops growing at 2^24 ulps.)
 * - column sums: |got - want| <= 3e-7 * (|out before| + sum_r |x[r, c]|) + 1.2e-7 |want|: two Kahan
 *   sums (chunks, then chunk totals) are each within ~2 ulp of the sum of magnitudes, plus the final
 *   add into out and its rounding.
 * - AdamW vs the reference over 5 steps: the reference computes each step in double from the same f32
 *   state and rounds the state to f32, so the two differ by the kernel's f32 arithmetic within a step
 *   (a few ulp of m, v and of the update) carried over the steps: asserted |dp| <= 1e-6 |p| +
 *   1e-5 * lr, |dm| <= 1e-6 |m| + 1e-6 * gmax, |dv| <= 1e-6 |v| + 1e-7 * gmax^2 (gmax = the largest
 *   |grad_scale * grad|); the m and v terms are relative to the terms m and v are made of, since m can
 *   cancel to near 0.
 * - AdamW vs hand-computed values (exact decimal arithmetic; betas exact in f32, lr, wd and eps off by
 *   their f32 rounding, ~3e-8 relative, plus a few f32 roundings per step): 1e-6 relative.
 * - schedule: 1e-6 relative (f32 result of a double computation). Clip factor: 1e-7 relative. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops/optim.h"
#include "ref/ref_optim.h"
#include "testutil.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void assert_rel(double got, double want, double rtol, const char *what) {
    ck_assert_msg(fabs(got - want) <= rtol * fabs(want), "%s: got %.10g, want %.10g (rel err %.3g > %.3g)", what,
                  got, want, fabs(got - want) / fabs(want), rtol);
}

/* ---- sum of squares ---- */

/* Sizes around the float16 blocks: tail only, one exact block, blocks + tails. */
static const int64_t ss_sizes[] = {1, 7, 16, 1000, 1000003};

START_TEST(sum_squares_matches_double_and_is_deterministic) {
    int64_t n = ss_sizes[_i];
    /* Values of mixed magnitudes: most in [-1, 1), every 97th one 1000x larger. */
    float *x = tu_random(n, 60 + (uint64_t)_i, -1, 1);
    for (int64_t i = 0; i < n; i += 97) x[i] *= 1000.0f;
    tensor t = tu_tensor(1, &n, x);
    double want = ref_sum_squares(n, x);
    /* Both splits of the first pass (the device picks one; the other is what other devices run). */
    for (ops_sumsq_split sp = OPS_SUMSQ_AUTO; sp <= OPS_SUMSQ_INTERLEAVED; sp++) {
        double got = 0, again = 1;
        tu_ok(ops_sum_squares_with(tu_ctx(), sp, &t, &got));
        tu_ok(ops_sum_squares_with(tu_ctx(), sp, &t, &again));
        char what[48];
        snprintf(what, sizeof what, "sum_squares n=%lld split %d", (long long)n, (int)sp);
        assert_rel(got, want, 2e-6, what);
        ck_assert_msg(memcmp(&got, &again, sizeof got) == 0, "%s: two runs differ (%.17g vs %.17g)", what, got,
                      again);
    }
    free(x);
    tensor_free(&t);
}
END_TEST

START_TEST(sum_squares_takes_views_and_any_shape) {
    /* A [7, 11, 13] view at element offset 5 of a larger buffer whose other elements are huge: a wrong
     * offset or bound would show. */
    enum { OFF = 5, N = 7 * 11 * 13 };
    int64_t total = N + 2 * OFF;
    float *x = tu_random(total, 70, -2, 2);
    for (int i = 0; i < OFF; i++) x[i] = x[total - 1 - i] = 1e6f;
    tensor big = tu_tensor(1, &total, x), flat, view;
    tu_ok(tensor_slice(&big, 0, OFF, N, &flat));
    tu_ok(tensor_reshape(&flat, 3, (int64_t[]){7, 11, 13}, &view));
    for (ops_sumsq_split sp = OPS_SUMSQ_AUTO; sp <= OPS_SUMSQ_INTERLEAVED; sp++) {
        double got = 0;
        tu_ok(ops_sum_squares_with(tu_ctx(), sp, &view, &got));
        assert_rel(got, ref_sum_squares(N, x + OFF), 2e-6, "sum_squares of a view");
    }
    free(x);
    tensor_free(&big), tensor_free(&flat), tensor_free(&view);
}
END_TEST

START_TEST(sum_squares_stays_accurate_on_60_million_elements) {
    /* 60M copies of 0.1f, then a second tensor of the paper-60m parameter count with a ramp of values;
     * each case runs only if allocating and filling it took under ~5 s here (the device is a shared
     * CPU). The exact answer for the constant is n * (double)0.1f^2. */
    rt_ctx *ctx = tu_ctx();
    int64_t n = 60000000;
    double t0 = now_s();
    tensor t;
    tu_ok(tensor_alloc_f32(ctx, &t, 1, &n));
    tu_ok(tensor_fill(&t, 0.1));
    tu_ok(rt_finish(ctx));
    double fill_s = now_s() - t0;
    if (fill_s > 5.0) {
        fprintf(stderr, "sum_squares_stays_accurate_on_60_million_elements: skipped (fill took %.1f s)\n", fill_s);
    } else {
        double got = 0, c = (double)0.1f;
        t0 = now_s();
        tu_ok(ops_sum_squares(ctx, &t, &got));
        double sum_s = now_s() - t0;
        assert_rel(got, (double)n * c * c, 2e-6, "sum_squares of 60M x 0.1f");
        /* Random values: the host part (generate 60M, reference) is the slow bit, ~1-2 s. */
        float *x = tu_random(n, 80, -1, 1);
        tu_ok(tensor_upload(&t, x));
        double want = ref_sum_squares(n, x);
        tu_ok(ops_sum_squares(ctx, &t, &got));
        assert_rel(got, want, 2e-6, "sum_squares of 60M uniform");
        tu_ok(ops_sum_squares_with(ctx, OPS_SUMSQ_INTERLEAVED, &t, &got));
        assert_rel(got, want, 2e-6, "sum_squares of 60M uniform, interleaved");
        free(x);
        fprintf(stderr, "sum_squares 60M: fill %.2f s, reduce %.3f s\n", fill_s, sum_s);
    }
    tensor_free(&t);
}
END_TEST

/* ---- column sums ---- */

static const int64_t sr_shapes[][3] = {{1, 1, 5}, {1, 7, 3}, {1, 1000, 17}, {4, 256, 512}, {1, 3000, 1}, {2, 3, 300}};

START_TEST(sum_rows_accumulates_column_sums_like_the_reference) {
    const int64_t *sh = sr_shapes[_i];
    int64_t R = sh[0] * sh[1], C = sh[2], n = R * C;
    float *x = tu_random(n, 90 + (uint64_t)_i, -1, 1), *out0 = tu_random(C, 91 + (uint64_t)_i, -3, 3);
    float *want = malloc((size_t)C * sizeof *want);
    memcpy(want, out0, (size_t)C * sizeof *want);
    ref_sum_rows(R, C, x, want);
    /* x as [B, T, C] when B > 1, else [T, C] (or [C] when a single row). */
    int ndim = sh[0] > 1 ? 3 : R > 1 ? 2 : 1;
    const int64_t *shape = sh + (3 - ndim);
    tensor tx = tu_tensor(ndim, shape, x), to = tu_tensor(1, &C, out0), t2 = tu_tensor(1, &C, out0);
    tu_ok(ops_sum_rows(tu_ctx(), &tx, &to));
    tu_ok(ops_sum_rows(tu_ctx(), &tx, &t2));
    float *got = tu_download(&to), *got2 = tu_download(&t2);
    ck_assert_msg(!memcmp(got, got2, (size_t)C * sizeof *got), "two runs differ");
    for (int64_t c = 0; c < C; c++) {
        double mag = fabs(out0[c]);
        for (int64_t r = 0; r < R; r++) mag += fabs(x[r * C + c]);
        double tol = 3e-7 * mag + 1.2e-7 * fabs(want[c]);
        ck_assert_msg(fabs(got[c] - want[c]) <= tol, "[%lld rows, %lld cols] col %lld: got %.9g, want %.9g",
                      (long long)R, (long long)C, (long long)c, got[c], want[c]);
    }
    /* A second call adds again: out = out0 + 2 * column sum. */
    tu_ok(ops_sum_rows(tu_ctx(), &tx, &to));
    free(got);
    got = tu_download(&to);
    ref_sum_rows(R, C, x, want);
    for (int64_t c = 0; c < C; c++) {
        double mag = fabs(out0[c]);
        for (int64_t r = 0; r < R; r++) mag += 2 * fabs(x[r * C + c]);
        ck_assert(fabs(got[c] - want[c]) <= 3e-7 * mag + 1.2e-7 * fabs(want[c]));
    }
    free(x), free(out0), free(want), free(got), free(got2);
    tensor_free(&tx), tensor_free(&to), tensor_free(&t2);
}
END_TEST

START_TEST(sum_rows_takes_views) {
    /* x [40, 24] and out [24] both slices of one flat buffer, not overlapping. */
    enum { R = 40, C = 24, XO = 3, OO = XO + R * C + 2 };
    int64_t total = OO + C + 4;
    float *h = tu_random(total, 95, -1, 1), *want = malloc(C * sizeof *want);
    memcpy(want, h + OO, C * sizeof *want);
    ref_sum_rows(R, C, h + XO, want);
    tensor big = tu_tensor(1, &total, h), xs, xv, os;
    tu_ok(tensor_slice(&big, 0, XO, R * C, &xs));
    tu_ok(tensor_reshape(&xs, 2, (int64_t[]){R, C}, &xv));
    tu_ok(tensor_slice(&big, 0, OO, C, &os));
    tu_ok(ops_sum_rows(tu_ctx(), &xv, &os));
    float *all = tu_download(&big);
    /* tolerance as above with |x| <= 1 and |out| <= 1: 3e-7 * 41 + 1.2e-7 * 41 */
    tu_assert_close(all + OO, want, C, 0, 2e-5, "sum_rows on views");
    ck_assert(!memcmp(all, h, OO * sizeof *h));                 /* x and the gap are untouched */
    ck_assert(!memcmp(all + OO + C, h + OO + C, 4 * sizeof *h)); /* and the tail */
    free(h), free(want), free(all);
    tensor_free(&big), tensor_free(&xs), tensor_free(&xv), tensor_free(&os);
}
END_TEST

/* ---- AdamW ---- */

typedef struct {
    float wd, gscale, lr;
} adamw_case;
static const adamw_case aw_cases[] = {{0.0f, 1.0f, 1e-2f}, {0.1f, 1.0f, 1e-2f}, {0.1f, 0.37f, 3e-3f},
                                      {0.0f, 4.0f, 1e-3f}};

START_TEST(adamw_matches_the_reference_over_several_steps) {
    adamw_case cs = aw_cases[_i];
    enum { N = 10007, STEPS = 5 };
    rt_ctx *ctx = tu_ctx();
    float *p = tu_random(N, 100 + (uint64_t)_i, -1, 1), *m = calloc(N, sizeof *m), *v = calloc(N, sizeof *v);
    tensor tp = tu_tensor(1, (int64_t[]){N}, p), tg = tu_zeros(1, (int64_t[]){N});
    tensor tm = tu_zeros(1, (int64_t[]){N}), tv = tu_zeros(1, (int64_t[]){N});
    adamw_params ap = {.lr = cs.lr, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = cs.wd,
                       .grad_scale = cs.gscale};
    double gmax = fabs(cs.gscale);
    for (int s = 1; s <= STEPS; s++) {
        /* Gradients of varying size per step (some tiny, where eps matters less than v's accuracy). */
        float *g = tu_random(N, 200 + (uint64_t)(s * 10 + _i), -1, 1);
        for (int i = 0; i < N; i += 13) g[i] *= 1e-4f;
        tu_ok(tensor_upload(&tg, g));
        ap.step = s;
        tu_ok(ops_adamw(ctx, &tp, &tg, &tm, &tv, &ap));
        ref_adamw(N, p, g, m, v, ap.lr, ap.beta1, ap.beta2, ap.eps, ap.weight_decay, ap.grad_scale, s);
        free(g);
    }
    float *gp = tu_download(&tp), *gm = tu_download(&tm), *gv = tu_download(&tv);
    char what[64];
    snprintf(what, sizeof what, "adamw wd=%g gscale=%g", (double)cs.wd, (double)cs.gscale);
    tu_assert_close(gp, p, N, 1e-6, 1e-5 * cs.lr, what);
    tu_assert_close(gm, m, N, 1e-6, 1e-6 * gmax, what);
    tu_assert_close(gv, v, N, 1e-6, 1e-7 * gmax * gmax, what);
    /* The parameters did move: by about lr per step. */
    float *p0 = tu_random(N, 100 + (uint64_t)_i, -1, 1);
    double moved = 0;
    for (int i = 0; i < N; i++) moved += fabs(gp[i] - p0[i]);
    ck_assert_msg(moved / N > 0.3 * cs.lr, "mean |dp| = %g", moved / N);
    free(p), free(m), free(v), free(gp), free(gm), free(gv), free(p0);
    tensor_free(&tp), tensor_free(&tg), tensor_free(&tm), tensor_free(&tv);
}
END_TEST

START_TEST(adamw_matches_hand_computed_values_for_one_element) {
    /* p = 1, lr = 0.1, betas (0.5, 0.75) (exact in f32, so m and v come out exact), eps = 1e-8,
     * wd = 0.01, grad_scale = 2; grads 0.5, 0.25, -1.
     * Step 1: g = 1, m = 0.5, v = 0.25, mhat = 0.5 / 0.5 = 1, vhat = 0.25 / 0.25 = 1:
     *   p = 1 - 0.1 * 0.01 * 1 - 0.1 * 1 / (1 + 1e-8) = 0.899000001.
     * Step 2: g = 0.5, m = 0.25 + 0.25 = 0.5, v = 0.1875 + 0.0625 = 0.25,
     *   mhat = 0.5 / 0.75 = 2/3, vhat = 0.25 / 0.4375 = 4/7, mhat / sqrt(vhat) = 0.8819171036881969:
     *   p = 0.899000001 * 0.999 - 0.1 * 0.8819171036881969 = 0.809909291796847.
     * Step 3: g = -2, m = 0.25 - 1 = -0.75, v = 0.1875 + 1 = 1.1875,
     *   mhat = -0.75 / 0.875 = -6/7, vhat = 1.1875 / 0.578125 = 76/37, mhat / sqrt(vhat) = -0.5980634699351662:
     *   p = 0.809909291796847 * 0.999 + 0.1 * 0.5980634699351662 = 0.8689057290812736. */
    static const double want_p[] = {0.899000001, 0.809909291796847, 0.8689057290812736};
    static const double want_m[] = {0.5, 0.5, -0.75}, want_v[] = {0.25, 0.25, 1.1875};
    static const float grads[] = {0.5f, 0.25f, -1.0f};
    rt_ctx *ctx = tu_ctx();
    tensor tp = tu_tensor(1, (int64_t[]){1}, (float[]){1.0f}), tg = tu_zeros(1, (int64_t[]){1});
    tensor tm = tu_zeros(1, (int64_t[]){1}), tv = tu_zeros(1, (int64_t[]){1});
    adamw_params ap = {.lr = 0.1f, .beta1 = 0.5f, .beta2 = 0.75f, .eps = 1e-8f, .weight_decay = 0.01f,
                       .grad_scale = 2.0f};
    for (int s = 0; s < 3; s++) {
        tu_ok(tensor_upload(&tg, &grads[s]));
        ap.step = s + 1;
        tu_ok(ops_adamw(ctx, &tp, &tg, &tm, &tv, &ap));
        float p, m, v;
        tu_ok(tensor_download(&tp, &p));
        tu_ok(tensor_download(&tm, &m));
        tu_ok(tensor_download(&tv, &v));
        assert_rel(p, want_p[s], 1e-6, "hand p");
        assert_rel(m, want_m[s], 1e-6, "hand m");
        assert_rel(v, want_v[s], 1e-6, "hand v");
    }
    tensor_free(&tp), tensor_free(&tg), tensor_free(&tm), tensor_free(&tv);
}
END_TEST

START_TEST(adamw_updates_views_of_flat_buffers_and_nothing_else) {
    /* Two parameter tensors packed in one flat buffer (and their grads, m, v in three more); each is
     * stepped on its own; the flat buffers' other elements stay as they were. Also lr = 0 leaves the
     * parameters bit-identical while m and v still move, and a zero gradient at step 1 only decays. */
    enum { A = 300, B = 77, GAP = 5, TOTAL = A + GAP + B + 3 };
    rt_ctx *ctx = tu_ctx();
    float *p = tu_random(TOTAL, 300, -1, 1), *g = tu_random(TOTAL, 301, -1, 1);
    for (int i = A; i < A + GAP; i++) g[i] = 0.0f;
    float *m = calloc(TOTAL, sizeof *m), *v = calloc(TOTAL, sizeof *v);
    tensor fp = tu_tensor(1, (int64_t[]){TOTAL}, p), fg = tu_tensor(1, (int64_t[]){TOTAL}, g);
    tensor fm = tu_zeros(1, (int64_t[]){TOTAL}), fv = tu_zeros(1, (int64_t[]){TOTAL});
    tensor vp[2], vg[2], vm[2], vv[2];
    const int64_t start[2] = {0, A + GAP}, len[2] = {A, B};
    for (int k = 0; k < 2; k++) {
        tu_ok(tensor_slice(&fp, 0, start[k], len[k], &vp[k]));
        tu_ok(tensor_slice(&fg, 0, start[k], len[k], &vg[k]));
        tu_ok(tensor_slice(&fm, 0, start[k], len[k], &vm[k]));
        tu_ok(tensor_slice(&fv, 0, start[k], len[k], &vv[k]));
    }
    adamw_params ap = {.lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.1f,
                       .grad_scale = 1.0f, .step = 1};
    for (int k = 0; k < 2; k++) {
        tu_ok(ops_adamw(ctx, &vp[k], &vg[k], &vm[k], &vv[k], &ap));
        ref_adamw(len[k], p + start[k], g + start[k], m + start[k], v + start[k], ap.lr, ap.beta1, ap.beta2,
                  ap.eps, ap.weight_decay, ap.grad_scale, 1);
    }
    float *gp = tu_download(&fp), *gm = tu_download(&fm);
    tu_assert_close(gp, p, TOTAL, 1e-6, 1e-7, "adamw on views"); /* the gap and tail compare exactly */
    for (int i = A; i < A + GAP; i++) ck_assert(gm[i] == 0.0f);
    for (int i = A + GAP + B; i < TOTAL; i++) ck_assert(gm[i] == 0.0f);
    free(gp), free(gm);
    /* lr = 0: p unchanged bit for bit, m and v still updated. */
    float *before = tu_download(&fp), *mb = tu_download(&fm);
    ap.lr = 0.0f;
    ap.step = 2;
    tu_ok(ops_adamw(ctx, &vp[0], &vg[0], &vm[0], &vv[0], &ap));
    float *after = tu_download(&fp), *ma = tu_download(&fm);
    ck_assert(!memcmp(before, after, TOTAL * sizeof *after));
    ck_assert(memcmp(mb, ma, A * sizeof *ma) != 0);
    free(before), free(after), free(mb), free(ma);
    /* Zero gradient, fresh moments, step 1: p *= 1 - lr * wd exactly enough (mhat = 0, the update is 0/eps). */
    float one = 2.0f, zero = 0.0f;
    tensor q = tu_tensor(1, (int64_t[]){1}, &one), qg = tu_tensor(1, (int64_t[]){1}, &zero);
    tensor qm = tu_zeros(1, (int64_t[]){1}), qv = tu_zeros(1, (int64_t[]){1});
    ap.lr = 0.01f;
    ap.step = 1;
    tu_ok(ops_adamw(ctx, &q, &qg, &qm, &qv, &ap));
    float qp;
    tu_ok(tensor_download(&q, &qp));
    assert_rel(qp, 2.0 * (1.0 - 0.01 * 0.1), 1e-7, "pure decay");
    free(p), free(g), free(m), free(v);
    tensor_free(&fp), tensor_free(&fg), tensor_free(&fm), tensor_free(&fv);
    tensor_free(&q), tensor_free(&qg), tensor_free(&qm), tensor_free(&qv);
    for (int k = 0; k < 2; k++) tensor_free(&vp[k]), tensor_free(&vg[k]), tensor_free(&vm[k]), tensor_free(&vv[k]);
}
END_TEST

/* ---- schedule and clipping (host) ---- */

START_TEST(the_schedule_warms_up_linearly_then_follows_a_cosine_to_the_floor) {
    const float hi = 6e-4f, lo = 6e-5f;
    const int64_t W = 100, T = 1100;
    ck_assert(optim_lr_schedule(0, W, T, hi, lo) == 0.0f);
    assert_rel(optim_lr_schedule(1, W, T, hi, lo), hi / 100.0, 1e-6, "step 1");
    assert_rel(optim_lr_schedule(50, W, T, hi, lo), hi / 2.0, 1e-6, "mid warmup");
    assert_rel(optim_lr_schedule(W, W, T, hi, lo), hi, 1e-6, "end of warmup");
    assert_rel(optim_lr_schedule(W + (T - W) / 2, W, T, hi, lo), (hi + lo) / 2.0, 1e-6, "cosine midpoint");
    /* A quarter of the way: lo + (hi - lo) (1 + cos(pi/4)) / 2. */
    assert_rel(optim_lr_schedule(W + (T - W) / 4, W, T, hi, lo), lo + (hi - lo) * (1 + sqrt(0.5)) / 2, 1e-6,
               "cosine quarter");
    assert_rel(optim_lr_schedule(T, W, T, hi, lo), lo, 1e-6, "at total");
    assert_rel(optim_lr_schedule(T + 5000, W, T, hi, lo), lo, 1e-6, "after total");
    /* Non-increasing after the warmup, non-decreasing during it. */
    for (int64_t s = 1; s < T + 10; s++) {
        float a = optim_lr_schedule(s, W, T, hi, lo), b = optim_lr_schedule(s + 1, W, T, hi, lo);
        ck_assert_msg(s < W ? b > a : b <= a, "step %lld: %g then %g", (long long)s, a, b);
    }
    /* No warmup: step 1 is just below lr_max. Warmup longer than total: lr_min right after it. */
    float first = optim_lr_schedule(1, 0, T, hi, lo);
    ck_assert(first < hi && first > 0.999f * hi);
    assert_rel(optim_lr_schedule(10, 10, 5, hi, lo), hi, 1e-6, "warmup past total");
    assert_rel(optim_lr_schedule(11, 10, 5, hi, lo), lo, 1e-6, "after warmup past total");
}
END_TEST

START_TEST(the_clip_scale_is_min_one_and_max_norm_over_norm) {
    ck_assert(optim_clip_scale(0.5, 1.0f) == 1.0f);
    ck_assert(optim_clip_scale(0.0, 1.0f) == 1.0f);
    assert_rel(optim_clip_scale(4.0, 1.0f), 1.0 / (4.0 + 1e-6), 1e-7, "norm 4");
    assert_rel(optim_clip_scale(1e6, 0.5f), 0.5 / (1e6 + 1e-6), 1e-7, "norm 1e6");
    /* Exactly at max_norm the 1e-6 guard makes it a hair below 1. */
    ck_assert(optim_clip_scale(1.0, 1.0f) < 1.0f && optim_clip_scale(1.0, 1.0f) > 0.999998f);
    ck_assert(optim_clip_scale(100.0, 0.0f) == 1.0f);
    ck_assert(optim_clip_scale(100.0, -1.0f) == 1.0f);
    ck_assert(optim_clip_scale(100.0, NAN) == 1.0f);
    ck_assert(optim_clip_scale(INFINITY, 1.0f) == 0.0f);
    ck_assert(isnan(optim_clip_scale(NAN, 1.0f)));
}
END_TEST

START_TEST(global_norm_clipping_end_to_end) {
    /* sum_squares -> norm -> clip factor -> AdamW's grad_scale equals clipping the gradient first. */
    enum { N = 5000 };
    rt_ctx *ctx = tu_ctx();
    float *g = tu_random(N, 400, -1, 1), *p = tu_random(N, 401, -1, 1), *m = calloc(N, 4), *v = calloc(N, 4);
    tensor tg = tu_tensor(1, (int64_t[]){N}, g), tp = tu_tensor(1, (int64_t[]){N}, p);
    tensor tm = tu_zeros(1, (int64_t[]){N}), tv = tu_zeros(1, (int64_t[]){N});
    double ss = 0;
    tu_ok(ops_sum_squares(ctx, &tg, &ss));
    float scale = optim_clip_scale(sqrt(ss), 1.0f);
    ck_assert(scale < 0.1f); /* |g| ~ sqrt(N / 3) ~ 40 */
    adamw_params ap = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                       .grad_scale = scale, .step = 1};
    tu_ok(ops_adamw(ctx, &tp, &tg, &tm, &tv, &ap));
    double norm = sqrt(ref_sum_squares(N, g));
    for (int i = 0; i < N; i++) g[i] = (float)(g[i] * (1.0 / (norm + 1e-6)));
    ref_adamw(N, p, g, m, v, ap.lr, ap.beta1, ap.beta2, ap.eps, ap.weight_decay, 1.0f, 1);
    float *gm = tu_download(&tm);
    /* m = (1 - b1) * clipped g. The device norm is within 1e-6 relative (half the sum of squares' 2e-6),
     * and the f32 scale and the f32 pre-clipped g round differently (~2e-7): 2e-6 relative. */
    tu_assert_close(gm, m, N, 2e-6, 1e-9, "clipped first moment");
    free(g), free(p), free(m), free(v), free(gm);
    tensor_free(&tg), tensor_free(&tp), tensor_free(&tm), tensor_free(&tv);
}
END_TEST

START_TEST(bad_arguments_return_a_status_and_a_message) {
    rt_ctx *ctx = tu_ctx();
    tensor a = tu_zeros(2, (int64_t[]){4, 6}), b = tu_zeros(2, (int64_t[]){4, 6}), c = tu_zeros(2, (int64_t[]){4, 6});
    tensor d = tu_zeros(2, (int64_t[]){4, 6}), e5 = tu_zeros(2, (int64_t[]){4, 5});
    tensor t64 = tu_zeros(2, (int64_t[]){6, 4});
    tensor tr, i32, empty = {0}, o6 = tu_zeros(1, (int64_t[]){6}), o5 = tu_zeros(1, (int64_t[]){5});
    tu_ok(tensor_transpose(&t64, 0, 1, &tr));
    tu_ok(tensor_alloc(ctx, &i32, TENSOR_I32, 1, (int64_t[]){6}));
    adamw_params ok = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-8f, .weight_decay = 0.1f,
                       .grad_scale = 1.0f, .step = 1};
    tu_ok(ops_adamw(ctx, &a, &b, &c, &d, &ok));
    ck_assert_int_eq(ops_adamw(ctx, &a, &e5, &c, &d, &ok), ATTAMBA_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(ctx->err, "grad must be contiguous [4, 6] f32"));
    ck_assert_int_eq(ops_adamw(ctx, &a, &b, &tr, &d, &ok), ATTAMBA_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(ctx->err, "strided"));
    ck_assert_int_eq(ops_adamw(ctx, &empty, &b, &c, &d, &ok), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_int_eq(ops_adamw(ctx, &a, &b, &c, &d, NULL), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_int_eq(ops_adamw(ctx, &a, &b, &c, &c, &ok), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ctx->err, "m and v share memory"));
    ck_assert_int_eq(ops_adamw(ctx, &a, &a, &c, &d, &ok), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ctx->err, "param and grad share memory"));
    struct {
        adamw_params p;
        const char *msg;
    } bad[8];
    for (int i = 0; i < 8; i++) bad[i].p = ok;
    bad[0].p.lr = NAN, bad[0].msg = "lr must be finite";
    bad[1].p.lr = -1e-3f, bad[1].msg = "lr must be finite and >= 0";
    bad[2].p.step = 0, bad[2].msg = "step is 1-based";
    bad[3].p.beta1 = 1.0f, bad[3].msg = "beta1 and beta2 must be in [0, 1)";
    bad[4].p.beta2 = NAN, bad[4].msg = "beta1 and beta2";
    bad[5].p.eps = -1.0f, bad[5].msg = "eps must be finite";
    bad[6].p.weight_decay = INFINITY, bad[6].msg = "weight_decay";
    bad[7].p.grad_scale = NAN, bad[7].msg = "grad_scale must be finite";
    for (int i = 0; i < 8; i++) {
        ck_assert_int_eq(ops_adamw(ctx, &a, &b, &c, &d, &bad[i].p), ATTAMBA_ERR_INVALID_ARG);
        ck_assert_msg(strstr(ctx->err, bad[i].msg), "case %d: message '%s'", i, ctx->err);
    }
    double out;
    ck_assert_int_eq(ops_sum_squares(ctx, &a, NULL), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_int_eq(ops_sum_squares(ctx, &tr, &out), ATTAMBA_ERR_SHAPE);
    ck_assert_int_eq(ops_sum_squares(ctx, &i32, &out), ATTAMBA_ERR_SHAPE);
    ck_assert_int_eq(ops_sum_squares(ctx, &empty, &out), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_int_eq(ops_sum_squares_with(ctx, (ops_sumsq_split)7, &a, &out), ATTAMBA_ERR_INVALID_ARG);
    tu_ok(ops_sum_rows(ctx, &a, &o6));
    ck_assert_int_eq(ops_sum_rows(ctx, &a, &o5), ATTAMBA_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(ctx->err, "out must be contiguous [6] f32"));
    ck_assert_int_eq(ops_sum_rows(ctx, &tr, &o6), ATTAMBA_ERR_SHAPE);
    ck_assert_int_eq(ops_sum_rows(ctx, &a, &i32), ATTAMBA_ERR_SHAPE);
    tensor row0;
    tu_ok(tensor_slice(&a, 0, 1, 1, &row0)); /* [1, 6]: not [6] */
    ck_assert_int_eq(ops_sum_rows(ctx, &a, &row0), ATTAMBA_ERR_SHAPE);
    tensor flat, out_in_x;
    tu_ok(tensor_reshape(&a, 1, (int64_t[]){24}, &flat));
    tu_ok(tensor_slice(&flat, 0, 6, 6, &out_in_x));
    ck_assert_int_eq(ops_sum_rows(ctx, &a, &out_in_x), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ctx->err, "out overlaps x"));
    tensor_free(&a), tensor_free(&b), tensor_free(&c), tensor_free(&d), tensor_free(&e5), tensor_free(&t64);
    tensor_free(&tr), tensor_free(&i32), tensor_free(&o6), tensor_free(&o5), tensor_free(&row0);
    tensor_free(&flat), tensor_free(&out_in_x);
}
END_TEST

int main(void) {
    Suite *s = suite_create("optim");
    TCase *red = tcase_create("reductions"), *aw = tcase_create("adamw"), *host = tcase_create("host");
    tcase_add_loop_test(red, sum_squares_matches_double_and_is_deterministic, 0, 5);
    tcase_add_test(red, sum_squares_takes_views_and_any_shape);
    tcase_add_test(red, sum_squares_stays_accurate_on_60_million_elements);
    tcase_add_loop_test(red, sum_rows_accumulates_column_sums_like_the_reference, 0, 6);
    tcase_add_test(red, sum_rows_takes_views);
    tcase_add_loop_test(aw, adamw_matches_the_reference_over_several_steps, 0, 4);
    tcase_add_test(aw, adamw_matches_hand_computed_values_for_one_element);
    tcase_add_test(aw, adamw_updates_views_of_flat_buffers_and_nothing_else);
    tcase_add_test(aw, global_norm_clipping_end_to_end);
    tcase_add_test(aw, bad_arguments_return_a_status_and_a_message);
    tcase_add_test(host, the_schedule_warms_up_linearly_then_follows_a_cosine_to_the_floor);
    tcase_add_test(host, the_clip_scale_is_min_one_and_max_norm_over_norm);
    suite_add_tcase(s, red);
    suite_add_tcase(s, aw);
    suite_add_tcase(s, host);
    return tu_run(s);
}
