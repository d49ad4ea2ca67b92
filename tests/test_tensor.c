/* Tensors: round trips, fills, views that share memory, strided copies, bad shapes. */
#include <stdlib.h>
#include <string.h>

#include "tensor/quant.h"
#include "testutil.h"

START_TEST(upload_download_round_trip_f32_and_i32) {
    rt_ctx *ctx = tu_ctx();
    int64_t shape[] = {3, 5, 7};
    float *h = tu_random(105, 1, -10, 10);
    tensor t = tu_tensor(3, shape, h);
    float *back = tu_download(&t);
    ck_assert(memcmp(h, back, 105 * sizeof(float)) == 0);
    tensor ti;
    tu_ok(tensor_alloc(ctx, &ti, TENSOR_I32, 1, ((int64_t[]){9})));
    int32_t hi[9] = {-4, 0, 1, 2147483647, -2147483647, 5, 6, 7, 8}, bi[9];
    tu_ok(tensor_upload(&ti, hi));
    tu_ok(tensor_download(&ti, bi));
    ck_assert(memcmp(hi, bi, sizeof hi) == 0);
    tensor_free(&t);
    tensor_free(&ti);
    free(h);
    free(back);
}
END_TEST

START_TEST(fill_sets_every_element) {
    tensor t = tu_zeros(2, ((int64_t[]){13, 17}));
    tu_ok(tensor_fill(&t, -2.5));
    float *x = tu_download(&t);
    for (int i = 0; i < 13 * 17; i++) ck_assert_float_eq(x[i], -2.5f);
    free(x);
    tensor_free(&t);
}
END_TEST

/* The contiguous fill writes 16 elements per work-item: lengths around multiples of 16, at odd
 * offsets, must set exactly their elements (the neighbours keep theirs), f32 and i32. */
START_TEST(contiguous_fill_touches_exactly_its_elements) {
    static const int64_t lens[] = {1, 3, 15, 16, 17, 31, 33, 257, 1000};
    int64_t total = 1100;
    float *h = tu_random(total, 3, -1, 1);
    for (size_t c = 0; c < sizeof lens / sizeof lens[0]; c++)
        for (int64_t off = 0; off < 3; off++) {
            tensor all = tu_tensor(1, &total, h), part;
            tu_ok(tensor_slice(&all, 0, 7 + off, lens[c], &part));
            tu_ok(tensor_fill(&part, 4.25));
            float *x = tu_download(&all);
            for (int64_t i = 0; i < total; i++) {
                int inside = i >= 7 + off && i < 7 + off + lens[c];
                ck_assert_msg(x[i] == (inside ? 4.25f : h[i]), "length %lld offset %lld: element %lld is %g",
                              (long long)lens[c], (long long)(7 + off), (long long)i, x[i]);
            }
            free(x);
            tensor_free(&part);
            tensor_free(&all);
        }
    tensor ti;
    tu_ok(tensor_alloc(tu_ctx(), &ti, TENSOR_I32, 1, ((int64_t[]){37})));
    tu_ok(tensor_fill(&ti, -7));
    int32_t got[37];
    tu_ok(tensor_download(&ti, got));
    for (int i = 0; i < 37; i++) ck_assert_int_eq(got[i], -7);
    tensor_free(&ti);
    free(h);
}
END_TEST

START_TEST(slice_is_a_view_sharing_memory) {
    rt_ctx *ctx = tu_ctx();
    float h[4 * 6];
    for (int i = 0; i < 24; i++) h[i] = (float)i;
    tensor t = tu_tensor(2, ((int64_t[]){4, 6}), h);
    uint64_t before;
    attamba_context_memory(ctx, &before, NULL);
    tensor rows, cols;
    tu_ok(tensor_slice(&t, 0, 1, 2, &rows)); /* rows 1..2 */
    tu_ok(tensor_slice(&t, 1, 2, 3, &cols)); /* columns 2..4 */
    uint64_t after;
    attamba_context_memory(ctx, &after, NULL);
    ck_assert_uint_eq(before, after);
    ck_assert_ptr_eq(rows.buf, t.buf);
    ck_assert(tensor_is_contiguous(&rows));
    ck_assert(!tensor_is_contiguous(&cols));
    float r[12], c[12];
    tu_ok(tensor_download(&rows, r));
    tu_ok(tensor_download(&cols, c));
    for (int i = 0; i < 12; i++) ck_assert_float_eq(r[i], (float)(6 + i));
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) ck_assert_float_eq(c[i * 3 + j], (float)(i * 6 + 2 + j));
    /* writing through a strided view changes the parent */
    tu_ok(tensor_fill(&cols, -1.0));
    float *all = tu_download(&t);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 6; j++) ck_assert_float_eq(all[i * 6 + j], (j >= 2 && j < 5) ? -1.0f : (float)(i * 6 + j));
    /* the buffer lives until its last view goes */
    tensor_free(&t);
    tu_ok(tensor_download(&rows, r));
    tensor_free(&rows);
    tensor_free(&cols);
    attamba_context_memory(ctx, &after, NULL);
    ck_assert_uint_eq(after, before - 24 * sizeof(float));
    free(all);
}
END_TEST

START_TEST(transpose_view_and_contiguous_copy) {
    float *h = tu_random(2 * 3 * 5, 3, -1, 1);
    tensor t = tu_tensor(3, ((int64_t[]){2, 3, 5}), h);
    tensor tt, c;
    tu_ok(tensor_transpose(&t, 1, 2, &tt));
    ck_assert_int_eq(tt.shape[1], 5);
    ck_assert_int_eq(tt.shape[2], 3);
    tu_ok(tensor_contiguous(&tt, &c));
    ck_assert_ptr_ne(c.buf, t.buf);
    float *x = tu_download(&c);
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 3; j++) ck_assert_float_eq(x[(b * 5 + i) * 3 + j], h[(b * 3 + j) * 5 + i]);
    free(x);
    tensor_free(&c);
    tensor_free(&tt);
    tensor_free(&t);
    free(h);
}
END_TEST

START_TEST(reshape_views_contiguous_and_copies_strided) {
    float *h = tu_random(24, 4, -1, 1);
    tensor t = tu_tensor(2, ((int64_t[]){4, 6}), h);
    tensor r, tt, r2;
    tu_ok(tensor_reshape(&t, 3, ((int64_t[]){2, 3, 4}), &r));
    ck_assert_ptr_eq(r.buf, t.buf);
    tu_ok(tensor_transpose(&t, 0, 1, &tt));
    tu_ok(tensor_reshape(&tt, 1, ((int64_t[]){24}), &r2));
    ck_assert_ptr_ne(r2.buf, t.buf);
    float *x = tu_download(&r2);
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 4; j++) ck_assert_float_eq(x[i * 4 + j], h[j * 6 + i]);
    tensor bad;
    ck_assert_int_eq(tensor_reshape(&t, 2, ((int64_t[]){5, 5}), &bad), ATTAMBA_ERR_SHAPE);
    free(x);
    tensor_free(&r);
    tensor_free(&r2);
    tensor_free(&tt);
    tensor_free(&t);
    free(h);
}
END_TEST

START_TEST(strided_upload_and_copy) {
    tensor t = tu_zeros(2, ((int64_t[]){3, 4}));
    tensor v;
    tu_ok(tensor_transpose(&t, 0, 1, &v)); /* [4, 3] view */
    float h[12];
    for (int i = 0; i < 12; i++) h[i] = (float)i;
    tu_ok(tensor_upload(&v, h));
    float *x = tu_download(&t);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) ck_assert_float_eq(x[j * 4 + i], h[i * 3 + j]);
    tensor d = tu_zeros(2, ((int64_t[]){4, 3}));
    tu_ok(tensor_copy(&d, &v));
    float *y = tu_download(&d);
    ck_assert(memcmp(y, h, sizeof h) == 0);
    free(x);
    free(y);
    tensor_free(&d);
    tensor_free(&v);
    tensor_free(&t);
}
END_TEST

/* Strided copies whose last dim is contiguous on both sides and whole quads long take the uint4 kernel:
 * a permutation of the middle dims (as the KV-cache fill does) and a column slice of a wider matrix. */
START_TEST(strided_copy_with_a_contiguous_last_dim) {
    float h[2 * 3 * 5 * 8];
    for (int i = 0; i < 240; i++) h[i] = (float)i;
    tensor t = tu_tensor(4, ((int64_t[]){2, 3, 5, 8}), h), v, d = tu_zeros(4, ((int64_t[]){2, 5, 3, 8}));
    tu_ok(tensor_transpose(&t, 1, 2, &v)); /* [2, 5, 3, 8], last dim contiguous */
    tu_ok(tensor_copy(&d, &v));
    float *y = tu_download(&d);
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 5; b++)
            for (int c = 0; c < 3; c++)
                for (int e = 0; e < 8; e++)
                    ck_assert_float_eq(y[((a * 5 + b) * 3 + c) * 8 + e], h[((a * 3 + c) * 5 + b) * 8 + e]);
    tensor w = tu_tensor(2, ((int64_t[]){6, 12}), h), col, out = tu_zeros(2, ((int64_t[]){6, 8}));
    tu_ok(tensor_slice(&w, 1, 4, 8, &col)); /* columns 4..11: rows 12 apart */
    tu_ok(tensor_copy(&out, &col));
    float *z = tu_download(&out);
    for (int r = 0; r < 6; r++)
        for (int c = 0; c < 8; c++) ck_assert_float_eq(z[r * 8 + c], h[r * 12 + 4 + c]);
    free(y);
    free(z);
    tensor *ts[] = {&t, &v, &d, &w, &col, &out};
    for (int i = 0; i < 6; i++) tensor_free(ts[i]);
}
END_TEST

static uint16_t *download_u16(const tensor *t) {
    uint16_t *h = malloc((size_t)tensor_numel(t) * sizeof *h);
    tu_ok(tensor_download(t, h));
    return h;
}

/* f32 into f16 copies round as quant_f16_from_f32 (nearest, ties to even; overflow to infinity),
 * through the quad kernel (a transposed view with a contiguous last dim of 8) and the one-element one
 * (rows of 7); the other direction is refused; f16 fills reach exactly their elements. */
START_TEST(f32_into_f16_copies_round_and_f16_fills) {
    rt_ctx *ctx = tu_ctx();
    float h[2 * 3 * 5 * 8];
    const float odd[] = {1.0f / 3, 65504.0f, 70000.0f, -1e-8f, 1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, -2.5e-5f, 0.0f};
    for (int i = 0; i < 240; i++) h[i] = i < 8 ? odd[i] : (float)(i - 120) * 0.37f;
    tensor t = tu_tensor(4, ((int64_t[]){2, 3, 5, 8}), h), v, d;
    tu_ok(tensor_transpose(&t, 1, 2, &v));
    tu_ok(tensor_alloc(ctx, &d, TENSOR_F16, 4, ((int64_t[]){2, 5, 3, 8})));
    tu_ok(tensor_copy(&d, &v));
    uint16_t *y = download_u16(&d);
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 5; b++)
            for (int c = 0; c < 3; c++)
                for (int e = 0; e < 8; e++)
                    ck_assert_uint_eq(y[((a * 5 + b) * 3 + c) * 8 + e],
                                      quant_f16_from_f32(h[((a * 3 + c) * 5 + b) * 8 + e]));
    tensor w = tu_tensor(2, ((int64_t[]){8, 30}), h), cols, out;
    tu_ok(tensor_slice(&w, 1, 3, 7, &cols)); /* rows of 7 columns, 30 apart */
    tu_ok(tensor_alloc(ctx, &out, TENSOR_F16, 2, ((int64_t[]){8, 7})));
    tu_ok(tensor_copy(&out, &cols));
    uint16_t *z = download_u16(&out);
    for (int r = 0; r < 8; r++)
        for (int c = 0; c < 7; c++) ck_assert_uint_eq(z[r * 7 + c], quant_f16_from_f32(h[r * 30 + 3 + c]));
    tensor back = tu_zeros(2, ((int64_t[]){8, 7}));
    ck_assert_int_eq(tensor_copy(&back, &out), ATTAMBA_ERR_SHAPE);
    /* a fill of columns 2..4 of the f16 [8, 7], then of all of it */
    tensor mid;
    tu_ok(tensor_slice(&out, 1, 2, 3, &mid));
    tu_ok(tensor_fill(&mid, -0.1));
    uint16_t *f = download_u16(&out);
    for (int r = 0; r < 8; r++)
        for (int c = 0; c < 7; c++)
            ck_assert_uint_eq(f[r * 7 + c], c >= 2 && c < 5 ? quant_f16_from_f32(-0.1f) : z[r * 7 + c]);
    tu_ok(tensor_fill(&out, 3.0));
    free(f);
    f = download_u16(&out);
    for (int i = 0; i < 56; i++) ck_assert_uint_eq(f[i], 0x4200); /* 3.0 */
    free(y), free(z), free(f);
    tensor *ts[] = {&t, &v, &d, &w, &cols, &out, &back, &mid};
    for (size_t i = 0; i < CORE_LEN(ts); i++) tensor_free(ts[i]);
}
END_TEST

START_TEST(bad_shapes_are_refused_with_a_message) {
    rt_ctx *ctx = tu_ctx();
    tensor t = tu_zeros(2, ((int64_t[]){4, 6})), v, u;
    ck_assert_int_eq(tensor_slice(&t, 0, 3, 2, &v), ATTAMBA_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(ctx->err, "tensor_slice"));
    ck_assert_int_eq(tensor_slice(&t, 2, 0, 1, &v), ATTAMBA_ERR_SHAPE);
    ck_assert_int_eq(tensor_slice(&t, 1, 0, 0, &v), ATTAMBA_ERR_SHAPE);
    ck_assert_int_eq(tensor_transpose(&t, 0, 5, &v), ATTAMBA_ERR_SHAPE);
    ck_assert_int_eq(tensor_alloc_f32(ctx, &u, 0, ((int64_t[]){1})), ATTAMBA_ERR_SHAPE);
    ck_assert_int_eq(tensor_alloc_f32(ctx, &u, 5, ((int64_t[]){1, 1, 1, 1, 1})), ATTAMBA_ERR_SHAPE);
    ck_assert_int_eq(tensor_alloc_f32(ctx, &u, 2, ((int64_t[]){3, 0})), ATTAMBA_ERR_SHAPE);
    ck_assert_int_eq(tensor_alloc_f32(ctx, &u, 2, ((int64_t[]){3, -2})), ATTAMBA_ERR_SHAPE);
    tensor other = tu_zeros(2, ((int64_t[]){6, 4}));
    ck_assert_int_eq(tensor_copy(&other, &t), ATTAMBA_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(ctx->err, "[6, 4]"));
    tensor_free(&other);
    tensor_free(&t);
}
END_TEST

START_TEST(peak_memory_is_tracked) {
    rt_ctx *ctx = tu_ctx();
    uint64_t cur0, peak0, cur, peak;
    attamba_context_memory(ctx, &cur0, &peak0);
    tensor a = tu_zeros(1, ((int64_t[]){1000})), b = tu_zeros(1, ((int64_t[]){500}));
    attamba_context_memory(ctx, &cur, &peak);
    ck_assert_uint_eq(cur, cur0 + 6000);
    tensor_free(&a);
    tensor_free(&b);
    attamba_context_memory(ctx, &cur, &peak);
    ck_assert_uint_eq(cur, cur0);
    ck_assert_uint_ge(peak, cur0 + 6000);
}
END_TEST

int main(void) {
    Suite *s = suite_create("tensor");
    TCase *t = tcase_create("tensor");
    tcase_add_test(t, upload_download_round_trip_f32_and_i32);
    tcase_add_test(t, fill_sets_every_element);
    tcase_add_test(t, contiguous_fill_touches_exactly_its_elements);
    tcase_add_test(t, slice_is_a_view_sharing_memory);
    tcase_add_test(t, transpose_view_and_contiguous_copy);
    tcase_add_test(t, reshape_views_contiguous_and_copies_strided);
    tcase_add_test(t, strided_upload_and_copy);
    tcase_add_test(t, strided_copy_with_a_contiguous_last_dim);
    tcase_add_test(t, f32_into_f16_copies_round_and_f16_fills);
    tcase_add_test(t, bad_shapes_are_refused_with_a_message);
    tcase_add_test(t, peak_memory_is_tracked);
    suite_add_tcase(s, t);
    return tu_run(s);
}
