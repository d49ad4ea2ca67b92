/* The language-model head's ops (cross-entropy, argmax, sampling) against src/ref/ref_loss.c.
 *
 * Tolerances:
 * - cross-entropy on logits in [-8, 8]: |loss - ref| <= 3e-5 + 3e-6 |ref|, same for lse. The kernel
 *   sums exp() in f32 (each item ~V/256 terms in sequence, then an 8-level tree): relative error of
 *   the sum <= ~(125 + 8) * 6e-8 = 8e-6 at V = 32000 in the worst case, ~1e-6 typically, which
 *   log() turns into that absolute error; exp/log add a few ulp of values <= ~26.
 * - huge logits (|x| = 1e4): loss within 1e-5 absolute + 1e-6 relative (the kernel forms
 *   (max - x_t) + log(sum), exact for the difference); lse within 1e-6 relative (one f32 ulp at
 *   1e4 is ~1e-3, i.e. 1e-7 relative).
 * - uniform logits: loss == log(V) within 1e-6 relative (the f32 sum of V ones is exact).
 * - argmax: exact.
 * - sampling frequencies: chi-square over the kept tokens below the 0.999 quantile of the
 *   chi-square distribution with (kept - 1) degrees of freedom (the seed is fixed, so the test is
 *   deterministic; a correct sampler fails it with probability 0.001 over seeds), and no draw ever
 *   lands on a token the filter dropped. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/loss.h"
#include "ref/ref_loss.h"
#include "testutil.h"

static tensor alloc_as(tensor_dtype dt, int ndim, const int64_t *shape) {
    tensor t;
    tu_ok(tensor_alloc(tu_ctx(), &t, dt, ndim, shape));
    tu_ok(tensor_fill(&t, 0));
    return t;
}

static float *to_float(const double *x, int64_t n) {
    float *f = malloc((size_t)n * sizeof *f);
    ck_assert_ptr_nonnull(f);
    for (int64_t i = 0; i < n; i++) f[i] = (float)x[i];
    return f;
}

/* Runs ops_cross_entropy (and _mean) on host data and checks both against the reference. */
static void check_ce(int64_t N, int V, const float *logits, const int32_t *targets, int ignore_id, double rtol,
                     double atol, const char *what) {
    rt_ctx *ctx = tu_ctx();
    tensor tl = tu_tensor(2, ((int64_t[]){N, V}), logits), tt = tu_i32(1, &N, targets);
    tensor loss = tu_zeros(1, &N), lse = tu_zeros(1, &N);
    tu_ok(ops_cross_entropy(ctx, &tl, &tt, ignore_id, &loss, &lse));
    double *wl = malloc((size_t)N * sizeof *wl), *we = malloc((size_t)N * sizeof *we), want_mean;
    int64_t want_count = ref_cross_entropy(N, V, logits, targets, ignore_id, wl, we, &want_mean);
    float *gl = tu_download(&loss), *ge = tu_download(&lse), *fl = to_float(wl, N), *fe = to_float(we, N);
    tu_assert_close(gl, fl, N, rtol, atol, what);
    tu_assert_close(ge, fe, N, rtol, atol, what);
    for (int64_t i = 0; i < N; i++)
        if (targets[i] == ignore_id) ck_assert_msg(gl[i] == 0.0f, "%s: ignored row %lld has loss %g", what, (long long)i,
                                                   gl[i]);
    double mean;
    int64_t count;
    tu_ok(ops_cross_entropy_mean(ctx, &tl, &tt, ignore_id, &mean, &count));
    ck_assert_int_eq(count, want_count);
    /* The mean of values each within the per-row tolerance, plus the f32 Kahan sum (~1e-7). */
    ck_assert_msg(fabs(mean - want_mean) <= atol + rtol * fabs(want_mean) + 1e-6 * fabs(want_mean),
                  "%s: mean %.9g, expected %.9g", what, mean, want_mean);
    free(wl), free(we), free(gl), free(ge), free(fl), free(fe);
    tensor_free(&tl), tensor_free(&tt), tensor_free(&loss), tensor_free(&lse);
}

static const int64_t ce_rows[] = {1, 5, 300};
static const int ce_vocab[] = {1, 3, 258, 32000};

START_TEST(cross_entropy_matches_reference_on_awkward_shapes) {
    int64_t N = ce_rows[_i / 4];
    int V = ce_vocab[_i % 4];
    float *x = tu_random(N * V, 100 + (uint64_t)_i, -8, 8);
    int32_t *t = malloc((size_t)N * sizeof *t);
    core_rng r;
    core_rng_seed(&r, 7 + (uint64_t)_i);
    for (int64_t i = 0; i < N; i++) t[i] = (int32_t)(core_rng_next(&r) % (uint64_t)V);
    char what[64];
    snprintf(what, sizeof what, "cross-entropy N=%lld V=%d", (long long)N, V);
    check_ce(N, V, x, t, -1, 3e-6, 3e-5, what);
    free(x);
    free(t);
}
END_TEST

START_TEST(ignored_rows_get_zero_loss_and_are_not_counted) {
    /* The pad id lies inside [0, V): rows with it are ignored, not scored as token 7. */
    int64_t N = 64;
    int V = 258, pad = 7;
    float *x = tu_random(N * V, 5, -4, 4);
    int32_t t[64];
    for (int i = 0; i < N; i++) t[i] = i % 3 == 0 ? pad : 8 + (i * 37) % (V - 8); /* never 7 by chance */
    check_ce(N, V, x, t, pad, 3e-6, 3e-5, "ignore pad id 7");
    double mean;
    int64_t count;
    tensor tl = tu_tensor(2, ((int64_t[]){N, V}), x), tt = tu_i32(1, &N, t);
    tu_ok(ops_cross_entropy_mean(tu_ctx(), &tl, &tt, pad, &mean, &count));
    ck_assert_int_eq(count, N - 22); /* rows 0, 3, ..., 63 are pads */
    /* Every row ignored: nothing counted, mean 0. */
    for (int i = 0; i < N; i++) t[i] = pad;
    tu_ok(tensor_upload(&tt, t));
    tu_ok(ops_cross_entropy_mean(tu_ctx(), &tl, &tt, pad, &mean, &count));
    ck_assert_int_eq(count, 0);
    ck_assert(mean == 0.0);
    tensor_free(&tl), tensor_free(&tt);
    free(x);
}
END_TEST

START_TEST(huge_logits_do_not_overflow) {
    enum { N = 6, V = 258 };
    static float x[N * V];
    int32_t t[N] = {0, 0, 1, 100, 257, 3};
    for (int j = 0; j < V; j++) {
        x[0 * V + j] = 1e4f;                        /* all huge: log(V) */
        x[1 * V + j] = j == 0 ? 1e4f : -1e4f;       /* one huge, target it: ~0 */
        x[2 * V + j] = j == 0 ? 1e4f : -1e4f;       /* target a tiny one: 2e4 */
        x[3 * V + j] = (j % 2 ? 1e4f : -1e4f) - (float)(j % 5); /* near-ties at the top */
        x[4 * V + j] = -1e4f;                       /* all tiny: log(V) */
        x[5 * V + j] = j == 3 ? 1e4f - 1.0f : (j == 9 ? 1e4f : 0.0f);
    }
    check_ce(N, V, x, t, -1, 1e-6, 1e-5, "huge logits");
    tensor tl = tu_tensor(2, ((int64_t[]){N, V}), x), tt = tu_i32(1, (int64_t[]){N}, t);
    tensor loss = tu_zeros(1, (int64_t[]){N});
    tu_ok(ops_cross_entropy(tu_ctx(), &tl, &tt, -1, &loss, NULL));
    float *g = tu_download(&loss);
    for (int i = 0; i < N; i++) ck_assert_msg(isfinite(g[i]), "row %d loss %g", i, g[i]);
    ck_assert_float_eq_tol(g[2], 2e4f, 1e-2f);
    ck_assert_float_eq_tol(g[5], (float)log1p(exp(1.0)), 1e-5f); /* lse - (1e4 - 1) with two tops */
    free(g);
    tensor_free(&tl), tensor_free(&tt), tensor_free(&loss);
}
END_TEST

START_TEST(uniform_logits_give_log_v) {
    static const int vs[] = {3, 258, 32000};
    for (int k = 0; k < 3; k++) {
        int V = vs[k];
        int64_t N = 3;
        float *x = malloc((size_t)(N * V) * sizeof *x);
        for (int64_t i = 0; i < N * V; i++) x[i] = i < V ? 2.5f : (i < 2 * V ? -300.0f : 4000.0f);
        int32_t t[3] = {0, V - 1, V / 2};
        tensor tl = tu_tensor(2, ((int64_t[]){N, V}), x), tt = tu_i32(1, &N, t), loss = tu_zeros(1, &N);
        tu_ok(ops_cross_entropy(tu_ctx(), &tl, &tt, -1, &loss, NULL));
        float *g = tu_download(&loss);
        for (int i = 0; i < N; i++)
            ck_assert_msg(fabs(g[i] - log((double)V)) <= 1e-6 * log((double)V), "V=%d row %d: %.9g vs log V %.9g",
                          V, i, g[i], log((double)V));
        free(g);
        free(x);
        tensor_free(&tl), tensor_free(&tt), tensor_free(&loss);
    }
}
END_TEST

START_TEST(targets_outside_the_vocabulary_give_nan_and_the_mean_reports_them) {
    int64_t N = 4;
    int V = 3;
    float x[12] = {1, 2, 3, 0, 0, 0, -1, 5, 2, 7, 7, 7};
    int32_t t[4] = {2, 3, -5, 1};
    tensor tl = tu_tensor(2, ((int64_t[]){N, V}), x), tt = tu_i32(1, &N, t), loss = tu_zeros(1, &N);
    tu_ok(ops_cross_entropy(tu_ctx(), &tl, &tt, -1, &loss, NULL));
    float *g = tu_download(&loss);
    ck_assert(isfinite(g[0]) && isnan(g[1]) && isnan(g[2]) && isfinite(g[3]));
    ck_assert_float_eq_tol(g[3], (float)log(3.0), 1e-6f);
    double mean;
    int64_t count;
    ck_assert_int_eq(ops_cross_entropy_mean(tu_ctx(), &tl, &tt, -1, &mean, &count), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(tu_ctx()->err, "2 of 4 targets are outside [0, 3)"));
    ck_assert_int_eq(count, 2);
    ck_assert(isnan(mean));
    free(g);
    tensor_free(&tl), tensor_free(&tt), tensor_free(&loss);
}
END_TEST

START_TEST(cross_entropy_takes_batched_logits_and_views) {
    /* [B, T, V] logits with [B, T] targets, and a row slice (a view with an offset). */
    int64_t B = 2, T = 3;
    int V = 40;
    float *x = tu_random(B * T * V, 9, -3, 3);
    int32_t t[6] = {0, 39, 5, 6, 7, 8};
    tensor tl = tu_tensor(3, ((int64_t[]){B, T, V}), x), tt = tu_i32(2, ((int64_t[]){B, T}), t);
    tensor loss = tu_zeros(2, ((int64_t[]){B, T}));
    tu_ok(ops_cross_entropy(tu_ctx(), &tl, &tt, -1, &loss, NULL));
    double want[6];
    ref_cross_entropy(B * T, V, x, t, -1, want, NULL, NULL);
    float *g = tu_download(&loss), *fw = to_float(want, 6);
    tu_assert_close(g, fw, 6, 3e-6, 3e-5, "[B,T,V]");
    free(g);

    tensor flat, rows, tsub, lsub;
    tu_ok(tensor_reshape(&tl, 2, ((int64_t[]){6, V}), &flat));
    tu_ok(tensor_slice(&flat, 0, 2, 3, &rows));
    tensor t1 = tu_i32(1, (int64_t[]){6}, t), l1 = tu_zeros(1, (int64_t[]){6});
    tu_ok(tensor_slice(&t1, 0, 2, 3, &tsub));
    tu_ok(tensor_slice(&l1, 0, 1, 3, &lsub));
    tu_ok(ops_cross_entropy(tu_ctx(), &rows, &tsub, -1, &lsub, NULL));
    g = tu_download(&l1);
    ck_assert(g[0] == 0.0f && g[4] == 0.0f && g[5] == 0.0f);
    tu_assert_close(g + 1, fw + 2, 3, 3e-6, 3e-5, "row views");
    free(g), free(fw), free(x);
    tensor_free(&lsub), tensor_free(&tsub), tensor_free(&rows), tensor_free(&flat);
    tensor_free(&t1), tensor_free(&l1), tensor_free(&tl), tensor_free(&tt), tensor_free(&loss);
}
END_TEST

static const int64_t am_rows[] = {1, 5, 37};

START_TEST(argmax_matches_reference_and_takes_the_first_of_ties) {
    int64_t B = am_rows[_i / 4];
    int V = ce_vocab[_i % 4];
    /* Values on a grid of 4 levels: ties everywhere, across work-items and group halves. */
    float *x = tu_random(B * V, 200 + (uint64_t)_i, 0, 4);
    for (int64_t i = 0; i < B * V; i++) x[i] = floorf(x[i]);
    tensor tl = tu_tensor(2, ((int64_t[]){B, V}), x), out = alloc_as(TENSOR_I32, 1, &B);
    tu_ok(ops_argmax(tu_ctx(), &tl, &out));
    int32_t *got = (int32_t *)tu_download(&out), *want = malloc((size_t)B * sizeof *want);
    ref_argmax(B, V, x, want);
    for (int64_t b = 0; b < B; b++) {
        ck_assert_msg(got[b] == want[b], "row %lld: %d, expected %d (V=%d)", (long long)b, got[b], want[b], V);
        for (int j = 0; j < want[b]; j++) ck_assert(x[b * V + j] < x[b * V + want[b]]); /* the first max */
    }
    free(got), free(want), free(x);
    tensor_free(&tl), tensor_free(&out);
}
END_TEST

START_TEST(argmax_handles_hand_made_ties_nan_and_minus_infinity) {
    enum { B = 4, V = 32000 };
    float *x = malloc((size_t)B * V * sizeof *x);
    for (int j = 0; j < V; j++) {
        x[0 * V + j] = (j == 31999 || j == 17 || j == 5000 || j == 300) ? 9.0f : 1.0f; /* first max: 17 */
        x[1 * V + j] = -INFINITY;                                                    /* all -inf: 0 */
        x[2 * V + j] = j == 900 || j == 40 ? NAN : (j == 3 ? INFINITY : 0.0f);       /* first NaN: 40 */
        x[3 * V + j] = (float)(j % 1000);                                            /* 999 */
    }
    tensor tl = tu_tensor(2, ((int64_t[]){B, V}), x), out = alloc_as(TENSOR_I32, 1, (int64_t[]){B});
    tu_ok(ops_argmax(tu_ctx(), &tl, &out));
    int32_t *got = (int32_t *)tu_download(&out), want[B];
    ref_argmax(B, V, x, want);
    ck_assert_int_eq(got[0], 17);
    ck_assert_int_eq(got[1], 0);
    ck_assert_int_eq(got[2], 40);
    ck_assert_int_eq(got[3], 999);
    for (int b = 0; b < B; b++) ck_assert_int_eq(got[b], want[b]);
    free(got), free(x);
    tensor_free(&tl), tensor_free(&out);
}
END_TEST

START_TEST(greedy_and_top_k_one_sampling_equal_argmax) {
    int64_t B = 8;
    int V = 32000;
    float *x = tu_random(B * V, 31, -5, 5);
    tensor tl = tu_tensor(2, ((int64_t[]){B, V}), x), out = alloc_as(TENSOR_I32, 1, &B);
    tu_ok(ops_argmax(tu_ctx(), &tl, &out));
    int32_t *am = (int32_t *)tu_download(&out), tok[8];
    const struct { float temperature; int top_k; float top_p; } cases[] = {{0, 0, 1}, {-1, 50, 0.5f}, {1, 1, 1},
                                                                          {3, 1, 0.2f}};
    for (size_t c = 0; c < CORE_LEN(cases); c++) {
        sampler s;
        sampler_init(&s, cases[c].temperature, cases[c].top_k, cases[c].top_p, 1234);
        memset(tok, 0xff, sizeof tok);
        tu_ok(ops_sample(tu_ctx(), &tl, &s, tok));
        for (int b = 0; b < B; b++) ck_assert_msg(tok[b] == am[b], "case %zu row %d: %d vs argmax %d", c, b, tok[b], am[b]);
    }
    /* The host filter alone with top_k = 1 (the op's general path) is one-hot at the argmax too. */
    double *p = malloc((size_t)V * sizeof *p);
    int32_t *order = malloc((size_t)V * sizeof *order);
    for (int b = 0; b < B; b++) {
        ck_assert_int_eq(ref_sample_probs(V, x + b * V, 0.7f, 1, 1.0f, p, order), 1);
        ck_assert(p[am[b]] == 1.0);
    }
    free(p), free(order), free(am), free(x);
    tensor_free(&tl), tensor_free(&out);
}
END_TEST

START_TEST(the_same_seed_gives_the_same_tokens_and_different_seeds_differ) {
    int64_t B = 8;
    int V = 32000;
    float *x = tu_random(B * V, 77, -1, 1); /* flat: any two seeds agreeing on 8 rows would be a bug */
    tensor tl = tu_tensor(2, ((int64_t[]){B, V}), x);
    const struct { float temperature; int top_k; float top_p; } cases[] = {{1, 0, 1}, {0.8f, 500, 0.9f}, {1.5f, 0, 0.5f}};
    for (size_t c = 0; c < CORE_LEN(cases); c++) {
        sampler a, b, d;
        sampler_init(&a, cases[c].temperature, cases[c].top_k, cases[c].top_p, 42);
        sampler_init(&b, cases[c].temperature, cases[c].top_k, cases[c].top_p, 42);
        sampler_init(&d, cases[c].temperature, cases[c].top_k, cases[c].top_p, 43);
        int32_t ta[8], tb[8], td[8], ta2[8];
        tu_ok(ops_sample(tu_ctx(), &tl, &a, ta));
        tu_ok(ops_sample(tu_ctx(), &tl, &b, tb));
        tu_ok(ops_sample(tu_ctx(), &tl, &d, td));
        tu_ok(ops_sample(tu_ctx(), &tl, &a, ta2)); /* the RNG moved on */
        ck_assert_mem_eq(ta, tb, sizeof ta);
        ck_assert(memcmp(ta, td, sizeof ta) != 0);
        ck_assert(memcmp(ta, ta2, sizeof ta) != 0);
        for (int i = 0; i < B; i++) ck_assert(ta[i] >= 0 && ta[i] < V && td[i] >= 0 && td[i] < V);
    }
    free(x);
    tensor_free(&tl);
}
END_TEST

/* 0.999 quantiles of chi-square with 1..7 degrees of freedom. */
static const double chi2_999[] = {0, 10.828, 13.816, 16.266, 18.467, 20.515, 22.458, 24.322};

/* Draws `calls` x B tokens from B identical rows of x [V] and checks the counts against the
 * reference distribution (chi-square) and that dropped tokens never appear. */
static void check_frequencies(int V, const float *x, float temperature, int top_k, float top_p, float min_p, int B,
                              int calls) {
    float *rows = malloc((size_t)B * V * sizeof *rows);
    for (int b = 0; b < B; b++) memcpy(rows + (size_t)b * V, x, (size_t)V * sizeof *x);
    tensor tl = tu_tensor(2, ((int64_t[]){B, V}), rows);
    double p[16];
    int32_t order[16], *tok = malloc((size_t)B * sizeof *tok);
    int kept = ref_sample_probs(V, x, temperature, top_k, top_p, p, order);
    if (min_p > 0) kept = ref_sample_min_p(V, p, min_p);
    ck_assert(V <= 16 && kept >= 2 && kept <= 8);
    long counts[16] = {0};
    sampler s;
    sampler_init(&s, temperature, top_k, top_p, 2024);
    tu_ok(sampler_set_filters(tu_ctx(), &s, min_p, 1.0f, 64));
    for (int c = 0; c < calls; c++) {
        tu_ok(ops_sample(tu_ctx(), &tl, &s, tok));
        for (int b = 0; b < B; b++) {
            ck_assert(tok[b] >= 0 && tok[b] < V);
            ck_assert_msg(p[tok[b]] > 0, "drew token %d, which the filter dropped", tok[b]);
            counts[tok[b]]++;
        }
    }
    double n = (double)B * calls, chi2 = 0;
    for (int i = 0; i < V; i++)
        if (p[i] > 0) chi2 += (counts[i] - n * p[i]) * (counts[i] - n * p[i]) / (n * p[i]);
    ck_assert_msg(chi2 < chi2_999[kept - 1], "chi-square %.3f with %d dof exceeds %.3f (T=%g k=%d p=%g)", chi2,
                  kept - 1, chi2_999[kept - 1], temperature, top_k, top_p);
    free(rows), free(tok);
    tensor_free(&tl);
}

START_TEST(empirical_frequencies_match_the_filtered_distribution) {
    const float x[6] = {1.0f, -0.5f, 0.3f, 2.0f, -2.0f, 0.9f};
    check_frequencies(6, x, 1.0f, 0, 1.0f, 0, 2000, 10);  /* no filter: 6 tokens */
    check_frequencies(6, x, 0.7f, 4, 1.0f, 0, 2000, 10);  /* top-k 4 */
    check_frequencies(6, x, 1.3f, 5, 0.8f, 0, 2000, 10);  /* top-k then top-p */
    check_frequencies(6, x, 2.0f, 0, 0.6f, 0, 2000, 10);  /* top-p only */
    check_frequencies(6, x, 1.0f, 0, 1.0f, 0.2f, 2000, 10); /* min-p: 3 of 6 tokens */
    check_frequencies(6, x, 1.3f, 5, 0.9f, 0.3f, 2000, 10); /* top-k, top-p, then min-p */
}
END_TEST

START_TEST(top_p_keeps_the_smallest_set_whose_mass_reaches_p) {
    /* Exact in binary: p = [0.25, 0.25, 0.5]; top_p 0.75 keeps 2 then the first 0.25 (ties go to the
     * smaller index): 0.5 + 0.25 >= 0.75 exactly. */
    double q[3] = {0.25, 0.25, 0.5};
    int32_t order[8];
    ck_assert_int_eq(ref_sample_filter(3, q, 0, 0.75f, order), 2);
    ck_assert(q[0] == 0.25 / 0.75 && q[1] == 0.0 && q[2] == 0.5 / 0.75);

    /* Through logits: probabilities 0.05, 0.5, 0.1, 0.2, 0.15 (sorted: 1, 3, 4, 2, 0). */
    const double pr[5] = {0.05, 0.5, 0.1, 0.2, 0.15};
    float x[5];
    for (int i = 0; i < 5; i++) x[i] = (float)log(pr[i]);
    const struct { float top_p; int top_k; int n; int keep[5]; } cases[] = {
        {0.45f, 0, 1, {1}}, {0.6f, 0, 2, {1, 3}}, {0.8f, 0, 3, {1, 3, 4}}, {0.9f, 0, 4, {1, 3, 4, 2}},
        {1.0f, 0, 5, {1, 3, 4, 2, 0}},
        /* top-k first, then top-p on the renormalised top-k: {0.5, 0.2} -> {0.714, 0.286};
         * {0.5, 0.2, 0.15} -> {0.588, 0.235, 0.176}, so 0.8 keeps two and 0.85 three. */
        {0.7f, 2, 1, {1}}, {0.75f, 2, 2, {1, 3}}, {0.8f, 3, 2, {1, 3}}, {0.85f, 3, 3, {1, 3, 4}}};
    for (size_t c = 0; c < CORE_LEN(cases); c++) {
        double p[5];
        ck_assert_int_eq(ref_sample_probs(5, x, 1.0f, cases[c].top_k, cases[c].top_p, p, order), cases[c].n);
        double mass = 0;
        for (int j = 0; j < cases[c].n; j++) mass += pr[cases[c].keep[j]];
        for (int j = 0; j < cases[c].n; j++) {
            int i = cases[c].keep[j];
            ck_assert_msg(fabs(p[i] - pr[i] / mass) < 1e-6, "case %zu token %d: %g vs %g", c, i, p[i], pr[i] / mass);
        }
    }
    /* The op with top_p 0.6 draws only tokens 1 and 3, at 5/7 and 2/7. */
    check_frequencies(5, x, 1.0f, 0, 0.6f, 0, 2000, 5);
}
END_TEST

START_TEST(min_p_keeps_tokens_within_a_fraction_of_the_best) {
    /* Exact in binary after renormalising: 0.5 and 0.25 of 1 - 0.125 - 0.125. */
    double q[4] = {0.5, 0.25, 0.125, 0.125};
    ck_assert_int_eq(ref_sample_min_p(4, q, 0.5f), 2); /* the cut is 0.25: kept, not below */
    ck_assert(q[0] == 0.5 / 0.75 && q[1] == 0.25 / 0.75 && q[2] == 0 && q[3] == 0);
    double r[3] = {0.4, 0.4, 0.2};
    ck_assert_int_eq(ref_sample_min_p(3, r, 1.0f), 2); /* only the best: both of the tie */
    ck_assert(r[0] == 0.5 && r[1] == 0.5 && r[2] == 0);
    double z[3] = {0.2, 0.3, 0.5};
    ck_assert_int_eq(ref_sample_min_p(3, z, 0.0f), 3); /* off */
    ck_assert(z[0] == 0.2 && z[1] == 0.3 && z[2] == 0.5);
}
END_TEST

START_TEST(repetition_penalty_divides_positive_and_multiplies_negative_logits) {
    float x[4] = {2.0f, -1.0f, 0.5f, 3.0f};
    const int32_t hist[] = {0, 1, 0, 7, -1}; /* token 0 twice: penalised once; 7 and -1 outside V = 4 */
    ref_repetition_penalty(4, x, hist, 5, 2.0f);
    ck_assert(x[0] == 1.0f && x[1] == -2.0f && x[2] == 0.5f && x[3] == 3.0f);

    /* Through the op: greedy takes the argmax of the penalised logits; only the last last_n count. */
    rt_ctx *ctx = tu_ctx();
    const float row[3] = {2.0f, 1.9f, 1.0f};
    tensor tl = tu_tensor(2, ((int64_t[]){1, 3}), row);
    int32_t tok = -1;
    sampler s;
    sampler_init(&s, 0.0f, 0, 1.0f, 1);
    tu_ok(sampler_set_filters(ctx, &s, 0.0f, 1.5f, 2));
    tu_ok(ops_sample(ctx, &tl, &s, &tok));
    ck_assert_int_eq(tok, 0); /* no history yet */
    sampler_accept(&s, 0);
    tu_ok(ops_sample(ctx, &tl, &s, &tok));
    ck_assert_int_eq(tok, 1); /* 2.0 / 1.5 < 1.9 */
    sampler_accept(&s, 2);
    sampler_accept(&s, 2); /* token 0 left the last two */
    tu_ok(ops_sample(ctx, &tl, &s, &tok));
    ck_assert_int_eq(tok, 0);
    sampler_free(&s);
    tensor_free(&tl);
}
END_TEST

/* With a penalty the op draws on the host from the penalised logits: the same tokens as the
 * reference steps with the same seed, row by row, with every filter on. */
START_TEST(penalised_sampling_draws_what_the_reference_steps_draw) {
    enum { B = 4, V = 258 };
    rt_ctx *ctx = tu_ctx();
    float *x = tu_random(B * V, 91, -3, 3);
    tensor tl = tu_tensor(2, ((int64_t[]){B, V}), x);
    const int32_t hist[] = {5, 17, 5, 200, 31};
    sampler s, r;
    sampler_init(&s, 0.9f, 50, 0.95f, 7);
    sampler_init(&r, 0.9f, 50, 0.95f, 7); /* the reference's RNG */
    tu_ok(sampler_set_filters(ctx, &s, 0.05f, 1.3f, 4)); /* the last four: 17, 5, 200, 31 */
    for (size_t i = 0; i < CORE_LEN(hist); i++) sampler_accept(&s, hist[i]);
    double *p = malloc(V * sizeof *p);
    int32_t *order = malloc(V * sizeof *order), tok[B];
    for (int call = 0; call < 3; call++) {
        tu_ok(ops_sample(ctx, &tl, &s, tok));
        for (int b = 0; b < B; b++) {
            float row[V];
            memcpy(row, x + b * V, sizeof row);
            ref_repetition_penalty(V, row, hist + 1, 4, 1.3f);
            ref_sample_probs(V, row, 0.9f, 50, 0.95f, p, order);
            ref_sample_min_p(V, p, 0.05f);
            int want = ref_sample_draw(V, p, ref_uniform53(core_rng_next(&r.rng)));
            ck_assert_msg(tok[b] == want, "call %d row %d: %d, expected %d", call, b, tok[b], want);
        }
    }
    sampler_free(&s);
    free(p), free(order), free(x);
    tensor_free(&tl);
}
END_TEST

/* Brute force of the documented filter: a full sort, then top-k, renormalise, top-p. */
static const double *bf_p;
static int bf_cmp(const void *a, const void *b) {
    int i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (bf_p[i] != bf_p[j]) return bf_p[i] > bf_p[j] ? -1 : 1;
    return i < j ? -1 : i > j;
}

START_TEST(the_host_filter_matches_a_brute_force_sort) {
    const int vs[] = {3, 258, 32000};
    const struct { int top_k; float top_p; } cases[] = {{0, 0.5f}, {0, 0.95f}, {0, 0.999f}, {10, 1.0f},
                                                        {100, 0.3f}, {300, 0.97f}, {1, 1.0f}, {0, 1e-6f}};
    for (int v = 0; v < 3; v++)
        for (size_t c = 0; c < CORE_LEN(cases); c++) {
            int V = vs[v];
            float *x = tu_random(V, 500 + (uint64_t)(v * 10 + c), -3, 3);
            double *p = malloc((size_t)V * sizeof *p), *w = malloc((size_t)V * sizeof *w);
            int32_t *order = malloc((size_t)V * sizeof *order), *idx = malloc((size_t)V * sizeof *idx);
            for (int i = 0; i < V; i++) w[i] = p[i] = exp(x[i]);
            ref_sample_filter(V, p, cases[c].top_k, cases[c].top_p, order);
            for (int i = 0; i < V; i++) idx[i] = i;
            bf_p = w;
            qsort(idx, (size_t)V, sizeof *idx, bf_cmp);
            int k = cases[c].top_k > 0 && cases[c].top_k < V ? cases[c].top_k : V;
            double mass = 0, cum = 0;
            for (int j = 0; j < k; j++) mass += w[idx[j]];
            int n = 0;
            while (n < k && !(cum >= (double)cases[c].top_p * mass && n > 0)) cum += w[idx[n++]];
            if (cases[c].top_p >= 1.0f) n = k;
            double kept = 0;
            for (int j = 0; j < n; j++) kept += w[idx[j]];
            for (int j = 0; j < V; j++) {
                double want = j < n ? w[idx[j]] / kept : 0.0;
                ck_assert_msg(fabs(p[idx[j]] - want) <= 1e-12,
                              "V=%d k=%d p=%g: rank %d token %d: %g vs %g", V, cases[c].top_k,
                              cases[c].top_p, j, idx[j], p[idx[j]], want);
            }
            free(x), free(p), free(w), free(order), free(idx);
        }
}
END_TEST

START_TEST(sampled_tokens_never_come_from_outside_the_top_k) {
    int64_t B = 300;
    int V = 258, K = 10;
    float *x = tu_random(B * V, 61, -4, 4);
    tensor tl = tu_tensor(2, ((int64_t[]){B, V}), x);
    int32_t *tok = malloc((size_t)B * sizeof *tok);
    sampler s;
    sampler_init(&s, 2.0f, K, 1.0f, 99);
    int distinct_ranks[10] = {0};
    for (int c = 0; c < 5; c++) {
        tu_ok(ops_sample(tu_ctx(), &tl, &s, tok));
        for (int b = 0; b < B; b++) {
            const float *r = x + b * V;
            int above = 0;
            for (int j = 0; j < V; j++) above += r[j] > r[tok[b]];
            ck_assert_msg(above < K, "row %d drew token %d of rank %d", b, tok[b], above);
            distinct_ranks[above] = 1;
        }
    }
    /* At temperature 2 the top 10 are close: every rank gets drawn somewhere in 1500 draws. */
    for (int k = 0; k < K; k++) ck_assert_msg(distinct_ranks[k], "rank %d never drawn", k);
    free(tok), free(x);
    tensor_free(&tl);
}
END_TEST

START_TEST(bad_arguments_return_a_status_and_a_message) {
    rt_ctx *ctx = tu_ctx();
    tensor lg = tu_zeros(2, ((int64_t[]){4, 10})), t = alloc_as(TENSOR_I32, 1, (int64_t[]){4});
    tensor tf = tu_zeros(1, (int64_t[]){4}), t5 = alloc_as(TENSOR_I32, 1, (int64_t[]){5});
    tensor l4 = tu_zeros(1, (int64_t[]){4}), l5 = tu_zeros(1, (int64_t[]){5}), flat = tu_zeros(1, (int64_t[]){40});
    tensor empty = {0};
    ck_assert_int_eq(ops_cross_entropy(ctx, &flat, &t, -1, &l4, NULL), ATTAMBA_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(ctx->err, "[N, V]"));
    ck_assert_int_eq(ops_cross_entropy(ctx, &lg, &tf, -1, &l4, NULL), ATTAMBA_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(ctx->err, "targets must be contiguous [4] i32"));
    ck_assert_int_eq(ops_cross_entropy(ctx, &lg, &t5, -1, &l4, NULL), ATTAMBA_ERR_SHAPE);
    ck_assert_int_eq(ops_cross_entropy(ctx, &lg, &t, -1, &l5, NULL), ATTAMBA_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(ctx->err, "losses"));
    ck_assert_int_eq(ops_cross_entropy(ctx, &lg, &t, -1, &l4, &l5), ATTAMBA_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(ctx->err, "lse"));
    ck_assert_int_eq(ops_cross_entropy(ctx, &empty, &t, -1, &l4, NULL), ATTAMBA_ERR_INVALID_ARG);
    double mean;
    int64_t count;
    ck_assert_int_eq(ops_cross_entropy_mean(ctx, &lg, &t, -1, NULL, &count), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_int_eq(ops_cross_entropy_mean(ctx, &lg, &t5, -1, &mean, &count), ATTAMBA_ERR_SHAPE);
    ck_assert_int_eq(ops_argmax(ctx, &lg, &l4), ATTAMBA_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(ctx->err, "ops_argmax: out"));
    ck_assert_int_eq(ops_argmax(ctx, &lg, &t5), ATTAMBA_ERR_SHAPE);

    int32_t tok[4];
    sampler s;
    sampler_init(&s, NAN, 0, 1.0f, 1);
    ck_assert_int_eq(ops_sample(ctx, &lg, &s, tok), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ctx->err, "temperature"));
    sampler_init(&s, INFINITY, 0, 1.0f, 1);
    ck_assert_int_eq(ops_sample(ctx, &lg, &s, tok), ATTAMBA_ERR_INVALID_ARG);
    const float bad_p[] = {0.0f, -0.5f, NAN, 1.5f};
    for (size_t i = 0; i < CORE_LEN(bad_p); i++) {
        sampler_init(&s, 1.0f, 0, bad_p[i], 1);
        ck_assert_int_eq(ops_sample(ctx, &lg, &s, tok), ATTAMBA_ERR_INVALID_ARG);
        ck_assert_ptr_nonnull(strstr(ctx->err, "top_p must be in (0, 1]"));
    }
    const struct { float min_p, penalty; int last_n; const char *what; } bad_f[] = {
        {1.5f, 1, 64, "min_p"}, {-0.1f, 1, 64, "min_p"}, {NAN, 1, 64, "min_p"}, {0, 0, 64, "penalty"},
        {0, NAN, 64, "penalty"}, {0, INFINITY, 64, "penalty"}, {0, 1.2f, 0, "last_n"}, {0, 1.2f, 70000, "last_n"}};
    for (size_t i = 0; i < CORE_LEN(bad_f); i++) {
        ck_assert_int_eq(sampler_set_filters(ctx, &s, bad_f[i].min_p, bad_f[i].penalty, bad_f[i].last_n),
                         ATTAMBA_ERR_INVALID_ARG);
        ck_assert_ptr_nonnull(strstr(ctx->err, bad_f[i].what));
    }
    sampler_init(&s, 1.0f, 0, 1.0f, 1);
    ck_assert_int_eq(ops_sample(ctx, &lg, &s, NULL), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_int_eq(ops_sample(ctx, &lg, NULL, tok), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_int_eq(ops_sample(ctx, &flat, &s, tok), ATTAMBA_ERR_SHAPE);
    /* Logits with no distribution: a NaN in row 1, all -inf in row 2. -inf elsewhere is fine. */
    float h[40];
    for (int i = 0; i < 40; i++) h[i] = i % 10 == 0 ? -INFINITY : 0.0f;
    h[13] = NAN;
    tu_ok(tensor_upload(&lg, h));
    ck_assert_int_eq(ops_sample(ctx, &lg, &s, tok), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ctx->err, "row 1"));
    h[13] = 0.0f;
    for (int i = 20; i < 30; i++) h[i] = -INFINITY;
    tu_ok(tensor_upload(&lg, h));
    ck_assert_int_eq(ops_sample(ctx, &lg, &s, tok), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ctx->err, "row 2"));
    for (int i = 20; i < 30; i++) h[i] = 0.0f;
    tu_ok(tensor_upload(&lg, h));
    tu_ok(ops_sample(ctx, &lg, &s, tok));
    for (int b = 0; b < 4; b++) ck_assert(tok[b] % 10 != 0); /* masked tokens are never drawn */
    tensor_free(&lg), tensor_free(&t), tensor_free(&tf), tensor_free(&t5), tensor_free(&l4), tensor_free(&l5);
    tensor_free(&flat);
}
END_TEST

int main(void) {
    Suite *s = suite_create("loss");
    TCase *ce = tcase_create("cross_entropy"), *am = tcase_create("argmax"), *sm = tcase_create("sampling");
    tcase_add_loop_test(ce, cross_entropy_matches_reference_on_awkward_shapes, 0, 12);
    tcase_add_test(ce, ignored_rows_get_zero_loss_and_are_not_counted);
    tcase_add_test(ce, huge_logits_do_not_overflow);
    tcase_add_test(ce, uniform_logits_give_log_v);
    tcase_add_test(ce, targets_outside_the_vocabulary_give_nan_and_the_mean_reports_them);
    tcase_add_test(ce, cross_entropy_takes_batched_logits_and_views);
    tcase_add_loop_test(am, argmax_matches_reference_and_takes_the_first_of_ties, 0, 12);
    tcase_add_test(am, argmax_handles_hand_made_ties_nan_and_minus_infinity);
    tcase_add_test(sm, greedy_and_top_k_one_sampling_equal_argmax);
    tcase_add_test(sm, the_same_seed_gives_the_same_tokens_and_different_seeds_differ);
    tcase_add_test(sm, empirical_frequencies_match_the_filtered_distribution);
    tcase_add_test(sm, top_p_keeps_the_smallest_set_whose_mass_reaches_p);
    tcase_add_test(sm, the_host_filter_matches_a_brute_force_sort);
    tcase_add_test(sm, min_p_keeps_tokens_within_a_fraction_of_the_best);
    tcase_add_test(sm, repetition_penalty_divides_positive_and_multiplies_negative_logits);
    tcase_add_test(sm, penalised_sampling_draws_what_the_reference_steps_draw);
    tcase_add_test(sm, sampled_tokens_never_come_from_outside_the_top_k);
    tcase_add_test(sm, bad_arguments_return_a_status_and_a_message);
    suite_add_tcase(s, ce);
    suite_add_tcase(s, am);
    suite_add_tcase(s, sm);
    return tu_run(s);
}
