/* Elementwise ops against src/ref. Tolerance: exact for add/mul/scale (one rounding, same as C);
 * 1e-6 relative for silu (exp differs by a few ulp between libm and the device). */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static const int64_t sizes[] = {1, 7, 1000, 100003};

START_TEST(binary_and_unary_ops_match_reference) {
    rt_ctx *ctx = tu_ctx();
    int64_t n = sizes[_i];
    float *a = tu_random(n, 10 + (uint64_t)n, -8, 8), *b = tu_random(n, 20 + (uint64_t)n, -8, 8);
    float *want = malloc((size_t)n * sizeof *want);
    tensor ta = tu_tensor(1, &n, a), tb = tu_tensor(1, &n, b), out = tu_zeros(1, &n);
    float *got;

    tu_ok(ops_add(ctx, &ta, &tb, &out));
    ref_add(n, a, b, want);
    got = tu_download(&out);
    tu_assert_close(got, want, n, 0, 0, "add");
    free(got);

    tu_ok(ops_mul(ctx, &ta, &tb, &out));
    ref_mul(n, a, b, want);
    got = tu_download(&out);
    tu_assert_close(got, want, n, 0, 0, "mul");
    free(got);

    tu_ok(ops_scale(ctx, &ta, -0.37f, &out));
    ref_scale(n, a, -0.37f, want);
    got = tu_download(&out);
    tu_assert_close(got, want, n, 0, 0, "scale");
    free(got);

    tu_ok(ops_silu(ctx, &ta, &out));
    ref_silu(n, a, want);
    got = tu_download(&out);
    tu_assert_close(got, want, n, 1e-6, 1e-7, "silu");
    free(got);

    tensor_free(&ta);
    tensor_free(&tb);
    tensor_free(&out);
    free(a);
    free(b);
    free(want);
}
END_TEST

START_TEST(ops_work_in_place_and_on_views) {
    rt_ctx *ctx = tu_ctx();
    float h[12];
    for (int i = 0; i < 12; i++) h[i] = (float)i;
    tensor t = tu_tensor(2, ((int64_t[]){3, 4}), h), row;
    tu_ok(tensor_slice(&t, 0, 1, 1, &row)); /* a contiguous view with an offset */
    tu_ok(ops_add(ctx, &row, &row, &row));
    float *x = tu_download(&t);
    for (int i = 0; i < 12; i++) ck_assert_float_eq(x[i], (i >= 4 && i < 8) ? 2.0f * i : (float)i);
    free(x);
    tensor_free(&row);
    tensor_free(&t);
}
END_TEST

START_TEST(mismatched_shapes_are_refused) {
    rt_ctx *ctx = tu_ctx();
    tensor a = tu_zeros(2, ((int64_t[]){3, 4})), b = tu_zeros(2, ((int64_t[]){4, 3})), v;
    ck_assert_int_eq(ops_add(ctx, &a, &b, &a), ATTAMBA_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(ctx->err, "ops_add"));
    ck_assert_ptr_nonnull(strstr(ctx->err, "[3, 4]"));
    tu_ok(tensor_transpose(&a, 0, 1, &v));
    ck_assert_int_eq(ops_silu(ctx, &v, &b), ATTAMBA_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(ctx->err, "strided"));
    tensor empty = {0};
    ck_assert_int_eq(ops_scale(ctx, &empty, 1.0f, &a), ATTAMBA_ERR_INVALID_ARG);
    tensor_free(&v);
    tensor_free(&a);
    tensor_free(&b);
}
END_TEST

int main(void) {
    Suite *s = suite_create("elementwise");
    TCase *t = tcase_create("elementwise");
    tcase_add_loop_test(t, binary_and_unary_ops_match_reference, 0, (int)(sizeof sizes / sizeof sizes[0]));
    tcase_add_test(t, ops_work_in_place_and_on_views);
    tcase_add_test(t, mismatched_shapes_are_refused);
    suite_add_tcase(s, t);
    return tu_run(s);
}
