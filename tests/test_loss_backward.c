/* Cross-entropy backward (ops_cross_entropy_backward) against finite differences of the reference
 * loss in double, and against src/ref/ref_loss.c on training shapes.
 *
 * Tolerances (p = softmax probability of the element, s = scale):
 * - reference vs central finite differences in double, h = 1e-5 on logits in [-4, 4]: truncation
 *   h^2/6 |f'''| <= ~1e-11 (|f'''| <= 1 per unit scale), rounding ~1e-16 * |f| / h <= ~1e-10; asserted
 *   |ref - fd| <= 1e-8 * (1 + |s|).
 * - kernel vs reference: the kernel forms p = exp(x - lse) in f32. lse from the forward carries a
 *   relative error of its exp-sum (<= ~1e-6 for V <= 258, <= 8e-6 worst case at V = 32000, see
 *   test_loss.c) as an absolute error, x - lse rounds by <= 1e-6 (|x - lse| < 32), exp() adds a few
 *   ulp: so |dp| <= rel * p with rel = 1e-5 (small V) or 3e-5 (V = 32000), plus the f32 rounding of
 *   p - 1 and of the product with s (<= 1.2e-7 absolute per unit scale). Asserted element-wise as
 *   |got - want| <= |s| * (rel * p + 2e-7), so the tiny probabilities of a 32000 vocabulary are
 *   checked relatively, not drowned in an absolute tolerance.
 * - in place vs out of place, lse passed vs recomputed: bit-identical (same kernels, same inputs). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/loss.h"
#include "ref/ref_loss.h"
#include "testutil.h"

/* Random targets in [0, V), with every `every`-th row (if > 0) set to ignore_id. */
static int32_t *make_targets(int64_t N, int V, uint64_t seed, int every, int ignore_id) {
    int32_t *t = malloc((size_t)N * sizeof *t);
    ck_assert_ptr_nonnull(t);
    core_rng r;
    core_rng_seed(&r, seed);
    for (int64_t i = 0; i < N; i++) t[i] = (int32_t)(core_rng_next(&r) % (uint64_t)V);
    if (every > 0)
        for (int64_t i = 0; i < N; i += every) t[i] = ignore_id;
    return t;
}

static int64_t count_rows(int64_t N, const int32_t *t, int ignore_id) {
    int64_t c = 0;
    for (int64_t i = 0; i < N; i++) c += t[i] != ignore_id;
    return c;
}

/* Asserts |got - want| <= |s| * (rel * p + 2e-7) with p recovered from want (see the header). */
static void check_grad(const float *got, const double *want, int64_t N, int V, const int32_t *targets,
                       int ignore_id, double scale, double rel, const char *what) {
    for (int64_t i = 0; i < N; i++)
        for (int j = 0; j < V; j++) {
            size_t k = (size_t)i * V + j;
            double p = targets[i] == ignore_id || scale == 0 ? 0 : want[k] / scale + (j == targets[i]);
            double tol = fabs(scale) * (rel * fabs(p) + 2e-7);
            ck_assert_msg(fabs(got[k] - want[k]) <= tol, "%s: row %lld col %d: got %.9g, want %.9g (tol %.3g)", what,
                          (long long)i, j, got[k], want[k], tol);
        }
}

/* Runs the op on host data (with lse from the forward, and with lse recomputed) and returns the
 * downloaded gradient of the first run; asserts both runs agree bit for bit. */
static float *run_backward(int ndim, const int64_t *shape, const float *x, const int32_t *t, int ignore_id,
                           float scale) {
    rt_ctx *ctx = tu_ctx();
    int64_t N = 1;
    for (int d = 0; d < ndim - 1; d++) N *= shape[d];
    tensor tl = tu_tensor(ndim, shape, x), tt = tu_i32(ndim - 1, shape, t);
    tensor loss = tu_zeros(ndim - 1, shape), lse = tu_zeros(ndim - 1, shape);
    tensor d1 = tu_zeros(ndim, shape), d2 = tu_zeros(ndim, shape);
    tu_ok(ops_cross_entropy(ctx, &tl, &tt, ignore_id, &loss, &lse));
    tu_ok(ops_cross_entropy_backward(ctx, &tl, &tt, ignore_id, &lse, scale, &d1));
    tu_ok(ops_cross_entropy_backward(ctx, &tl, &tt, ignore_id, NULL, scale, &d2));
    float *g1 = tu_download(&d1), *g2 = tu_download(&d2);
    ck_assert_msg(!memcmp(g1, g2, (size_t)tensor_numel(&d1) * sizeof *g1), "lse passed vs recomputed differ");
    (void)N;
    free(g2);
    tensor_free(&tl), tensor_free(&tt), tensor_free(&loss), tensor_free(&lse), tensor_free(&d1), tensor_free(&d2);
    return g1;
}

static const int fd_vocab[] = {1, 2, 3, 17};

START_TEST(the_gradient_matches_finite_differences_of_the_loss) {
    /* 5 rows, rows 1 and 4 ignored (pad id 0, which is inside the vocabulary). Two scales: the mean's
     * 1/count and an arbitrary negative one. */
    enum { N = 5 };
    int V = fd_vocab[_i % 4], pad = 0;
    double scale = _i < 4 ? 1.0 / 3.0 : -0.37;
    float *x = tu_random(N * V, 40 + (uint64_t)_i, -4, 4);
    int32_t t[N];
    for (int i = 0; i < N; i++) t[i] = V > 1 ? 1 + (i * 7) % (V - 1) : 0;
    t[1] = t[4] = pad;
    int ignore = V > 1 ? pad : -1; /* with V = 1 the only target is 0: nothing ignored */
    if (V == 1) t[1] = t[4] = 0;
    double *xd = malloc((size_t)N * V * sizeof *xd), *want = malloc((size_t)N * V * sizeof *want);
    for (int k = 0; k < N * V; k++) xd[k] = x[k];
    ref_cross_entropy_backward(N, V, x, t, ignore, scale, want);
    const double h = 1e-5;
    for (int k = 0; k < N * V; k++) {
        double keep = xd[k];
        xd[k] = keep + h;
        double up = ref_cross_entropy_loss_d(N, V, xd, t, ignore, scale);
        xd[k] = keep - h;
        double down = ref_cross_entropy_loss_d(N, V, xd, t, ignore, scale);
        xd[k] = keep;
        double fd = (up - down) / (2 * h);
        ck_assert_msg(fabs(want[k] - fd) <= 1e-8 * (1 + fabs(scale)), "V=%d element %d: ref %.12g, fd %.12g", V, k,
                      want[k], fd);
    }
    float *got = run_backward(2, (int64_t[]){N, V}, x, t, ignore, (float)scale);
    char what[48];
    snprintf(what, sizeof what, "backward V=%d scale=%g", V, scale);
    /* The kernel gets scale rounded to f32: relative 6e-8, inside the 2e-7 per unit scale. */
    check_grad(got, want, N, V, t, ignore, scale, 1e-5, what);
    if (ignore >= 0)
        for (int j = 0; j < V; j++) ck_assert(got[1 * V + j] == 0.0f && got[4 * V + j] == 0.0f);
    /* V = 1: the loss is identically 0, so is its gradient. */
    if (V == 1)
        for (int k = 0; k < N; k++) ck_assert(fabs(got[k]) <= 1e-7);
    free(x), free(xd), free(want), free(got);
}
END_TEST

/* Kernel vs reference on a training shape, every 7th row ignored, scale = 1/count; also checks that
 * each counted row of the gradient sums to 0 (softmax sums to 1). */
static void check_shape(int64_t N, int V, double rel, uint64_t seed) {
    int pad = 3;
    float *x = tu_random(N * V, seed, -8, 8);
    int32_t *t = make_targets(N, V, seed + 1, 7, pad);
    double scale = 1.0 / (double)count_rows(N, t, pad);
    double *want = malloc((size_t)(N * V) * sizeof *want);
    ck_assert_ptr_nonnull(want);
    ref_cross_entropy_backward(N, V, x, t, pad, scale, want);
    float *got = run_backward(2, (int64_t[]){N, V}, x, t, pad, (float)scale);
    char what[48];
    snprintf(what, sizeof what, "backward [%lld, %d]", (long long)N, V);
    check_grad(got, want, N, V, t, pad, scale, rel, what);
    for (int64_t i = 0; i < N; i++) {
        double sum = 0;
        for (int j = 0; j < V; j++) sum += got[i * V + j];
        if (t[i] == pad) {
            ck_assert(sum == 0.0);
        } else {
            /* V roundings of size <= 2e-7 * scale * p each, plus the target's, sum to <= ~1e-6 * scale. */
            ck_assert_msg(fabs(sum) <= 1e-6 * scale + rel * scale, "%s: row %lld sums to %g", what, (long long)i, sum);
        }
    }
    free(x), free(t), free(want), free(got);
}

START_TEST(the_kernel_matches_the_reference_on_a_32000_vocabulary) { check_shape(300, 32000, 3e-5, 11); }
END_TEST

START_TEST(the_kernel_matches_the_reference_on_a_byte_vocabulary) { check_shape(64, 258, 1e-5, 12); }
END_TEST

START_TEST(in_place_gives_the_same_gradient_as_out_of_place) {
    /* [B, T, V] logits as a view at an offset inside a larger buffer; dlogits is that same view. */
    rt_ctx *ctx = tu_ctx();
    enum { B = 3, T = 5, V = 258, PAD = 1000 };
    int64_t n = B * T * V, total = n + 2 * PAD;
    float *x = tu_random(total, 21, -6, 6);
    int32_t *t = make_targets(B * T, V, 22, 4, -100);
    tensor big = tu_tensor(1, &total, x), flat, view, tt = tu_i32(2, (int64_t[]){B, T}, t);
    tu_ok(tensor_slice(&big, 0, PAD, n, &flat));
    tu_ok(tensor_reshape(&flat, 3, (int64_t[]){B, T, V}, &view));
    tensor out = tu_zeros(3, (int64_t[]){B, T, V}), lse = tu_zeros(2, (int64_t[]){B, T});
    tensor loss = tu_zeros(2, (int64_t[]){B, T});
    tu_ok(ops_cross_entropy(ctx, &view, &tt, -100, &loss, &lse));
    tu_ok(ops_cross_entropy_backward(ctx, &view, &tt, -100, &lse, 0.25f, &out));
    tu_ok(ops_cross_entropy_backward(ctx, &view, &tt, -100, &lse, 0.25f, &view));
    float *want = tu_download(&out), *all = tu_download(&big);
    ck_assert(!memcmp(all + PAD, want, (size_t)n * sizeof *want));
    /* The elements around the view are untouched. */
    ck_assert(!memcmp(all, x, PAD * sizeof *x));
    ck_assert(!memcmp(all + PAD + n, x + PAD + n, PAD * sizeof *x));
    /* And the in-place result is the gradient. */
    double *ref = malloc((size_t)n * sizeof *ref);
    ref_cross_entropy_backward(B * T, V, x + PAD, t, -100, 0.25, ref);
    check_grad(all + PAD, ref, B * T, V, t, -100, 0.25, 1e-5, "in place");
    /* In place with lse recomputed (the forward reads the row before the backward overwrites it). */
    tu_ok(tensor_upload(&big, x));
    tu_ok(ops_cross_entropy_backward(ctx, &view, &tt, -100, NULL, 0.25f, &view));
    free(all);
    all = tu_download(&big);
    ck_assert(!memcmp(all + PAD, want, (size_t)n * sizeof *want));
    free(x), free(t), free(want), free(all), free(ref);
    tensor_free(&big), tensor_free(&flat), tensor_free(&view), tensor_free(&tt), tensor_free(&out);
    tensor_free(&lse), tensor_free(&loss);
}
END_TEST

START_TEST(ignored_rows_get_zero_even_with_infinite_logits_and_bad_targets_get_nan) {
    enum { N = 4, V = 10 };
    float x[N * V];
    for (int k = 0; k < N * V; k++) x[k] = (float)(k % 7) - 3.0f;
    x[0 * V + 2] = INFINITY; /* row 0 is ignored */
    x[0 * V + 5] = NAN;
    int32_t t[N] = {-1, 4, 10, -5}; /* row 2: t == V, row 3: negative but not the ignore id */
    rt_ctx *ctx = tu_ctx();
    tensor tl = tu_tensor(2, (int64_t[]){N, V}, x), tt = tu_i32(1, (int64_t[]){N}, t);
    tensor d = tu_zeros(2, (int64_t[]){N, V});
    tu_ok(ops_cross_entropy_backward(ctx, &tl, &tt, -1, NULL, 1.0f, &d));
    float *g = tu_download(&d);
    for (int j = 0; j < V; j++) {
        ck_assert(g[0 * V + j] == 0.0f);
        ck_assert(isfinite(g[1 * V + j]));
        ck_assert(isnan(g[2 * V + j]) && isnan(g[3 * V + j]));
    }
    free(g);
    tensor_free(&tl), tensor_free(&tt), tensor_free(&d);
}
END_TEST

START_TEST(bad_arguments_return_a_status_and_a_message) {
    rt_ctx *ctx = tu_ctx();
    tensor lg = tu_zeros(2, (int64_t[]){4, 10}), d = tu_zeros(2, (int64_t[]){4, 10});
    tensor d5 = tu_zeros(2, (int64_t[]){5, 10});
    tensor lse = tu_zeros(1, (int64_t[]){4}), lse5 = tu_zeros(1, (int64_t[]){5}), tf = tu_zeros(1, (int64_t[]){4});
    int32_t h[4] = {0, 1, 2, 3};
    tensor t = tu_i32(1, (int64_t[]){4}, h), empty = {0}, tr, big = tu_zeros(1, (int64_t[]){60}), s1, s1v;
    ck_assert_int_eq(ops_cross_entropy_backward(ctx, &lg, &t, -1, &lse, 1.0f, &d5), ATTAMBA_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(ctx->err, "dlogits must be contiguous [4, 10] f32"));
    ck_assert_int_eq(ops_cross_entropy_backward(ctx, &lg, &t, -1, &lse5, 1.0f, &d), ATTAMBA_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(ctx->err, "lse"));
    ck_assert_int_eq(ops_cross_entropy_backward(ctx, &lg, &tf, -1, &lse, 1.0f, &d), ATTAMBA_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(ctx->err, "targets must be contiguous [4] i32"));
    ck_assert_int_eq(ops_cross_entropy_backward(ctx, &empty, &t, -1, &lse, 1.0f, &d), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_int_eq(ops_cross_entropy_backward(ctx, &lg, &t, -1, &lse, 1.0f, &empty), ATTAMBA_ERR_INVALID_ARG);
    /* A non-contiguous dlogits: the transpose of a [10, 4]. */
    tensor d104 = tu_zeros(2, (int64_t[]){10, 4});
    tu_ok(tensor_transpose(&d104, 0, 1, &tr));
    ck_assert_int_eq(ops_cross_entropy_backward(ctx, &lg, &t, -1, &lse, 1.0f, &tr), ATTAMBA_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(ctx->err, "strided"));
    ck_assert_int_eq(ops_cross_entropy_backward(ctx, &lg, &t, -1, &lse, NAN, &d), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ctx->err, "scale must be finite"));
    /* dlogits shifted by one element against logits in the same buffer. */
    tensor l0, l0v;
    tu_ok(tensor_slice(&big, 0, 0, 40, &l0));
    tu_ok(tensor_reshape(&l0, 2, (int64_t[]){4, 10}, &l0v));
    tu_ok(tensor_slice(&big, 0, 1, 40, &s1));
    tu_ok(tensor_reshape(&s1, 2, (int64_t[]){4, 10}, &s1v));
    ck_assert_int_eq(ops_cross_entropy_backward(ctx, &l0v, &t, -1, &lse, 1.0f, &s1v), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ctx->err, "overlaps logits"));
    /* dlogits over lse's elements. */
    tensor e, lse_in;
    tu_ok(tensor_slice(&big, 0, 45, 4, &e));
    tu_ok(tensor_reshape(&e, 1, (int64_t[]){4}, &lse_in));
    tensor s2, s2v;
    tu_ok(tensor_slice(&big, 0, 20, 40, &s2));
    tu_ok(tensor_reshape(&s2, 2, (int64_t[]){4, 10}, &s2v));
    ck_assert_int_eq(ops_cross_entropy_backward(ctx, &lg, &t, -1, &lse_in, 1.0f, &s2v), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(ctx->err, "overlaps lse"));
    tensor_free(&lg), tensor_free(&d), tensor_free(&d5), tensor_free(&lse), tensor_free(&lse5), tensor_free(&tf);
    tensor_free(&t), tensor_free(&tr), tensor_free(&d104), tensor_free(&big), tensor_free(&s1), tensor_free(&s1v);
    tensor_free(&l0), tensor_free(&l0v), tensor_free(&e), tensor_free(&lse_in), tensor_free(&s2), tensor_free(&s2v);
}
END_TEST

int main(void) {
    Suite *s = suite_create("loss_backward");
    TCase *c = tcase_create("cross_entropy_backward");
    tcase_add_loop_test(c, the_gradient_matches_finite_differences_of_the_loss, 0, 8);
    tcase_add_test(c, the_kernel_matches_the_reference_on_a_32000_vocabulary);
    tcase_add_test(c, the_kernel_matches_the_reference_on_a_byte_vocabulary);
    tcase_add_test(c, in_place_gives_the_same_gradient_as_out_of_place);
    tcase_add_test(c, ignored_rows_get_zero_even_with_infinite_logits_and_bad_targets_get_nan);
    tcase_add_test(c, bad_arguments_return_a_status_and_a_message);
    suite_add_tcase(s, c);
    return tu_run(s);
}
