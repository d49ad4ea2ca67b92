/* Layer ops (RMSNorm, gated RMSNorm, RoPE, SwiGLU, embedding, bias add) against src/ref.
 *
 * Tolerances (the reference accumulates in double):
 * - norms: rtol 1e-5, atol 1e-7. The device sums squares in f32 (a few items per work-item, then a
 *   tree), then sqrt, divide and two multiplies: ~1e-6 relative in all at C = 1000; the gated
 *   norm adds exp (a few ulp). Each output is a product of factors, so the error stays relative.
 * - SwiGLU: rtol 2e-6, atol 1e-7 (exp to a few ulp plus two roundings).
 * - bias add and embedding: exact (one f32 add; a copy).
 * - RoPE: angles are pos * freq in f32 (as in PyTorch; kept in half-turns for sinpi/cospi). Within
 *   OpenCL 1.2's accuracy limits (exp2 3 ulp, sinpi/cospi 4 ulp) the angle is off by at most
 *   ~5e-7 * pos radians (freq error times pos, plus an ulp of the angle); we allow 1e-6 * (pos + 1)
 *   per rotation. With |x| <= 1 a pair has norm <= sqrt 2, so an output may be off by
 *   1.5e-6 * (max pos + 1) + 1e-6 (sin/cos, products). PoCL measures ~1e-7 * pos, so a wrong
 *   frequency or position still fails by far. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/layer.h"
#include "ops/tuning.h"
#include "ref/ref_layer.h"
#include "testutil.h"

/* ---- rows x C over several leading-dim layouts ---- */
static const int64_t test_rows[] = {1, 3, 1000};
static const int64_t test_widths[] = {1, 7, 100, 512, 1000};
enum { N_ROWS = 3, N_WIDTHS = 5 };

/* A shape with `rows` rows of C, laid out as 1-D, 2-D, 3-D or 4-D depending on variant. */
static int layout(int64_t rows, int64_t C, int variant, int64_t *shape) {
    switch (variant % 3) {
    case 0:
        if (rows == 1) {
            shape[0] = C;
            return 1;
        }
        shape[0] = rows;
        shape[1] = C;
        return 2;
    case 1:
        shape[0] = rows == 1000 ? 10 : 1;
        shape[1] = rows == 1000 ? 100 : rows;
        shape[2] = C;
        return 3;
    default:
        shape[0] = rows == 1000 ? 2 : 1;
        shape[1] = rows == 1000 ? 5 : rows;
        shape[2] = rows == 1000 ? 100 : 1;
        shape[3] = C;
        return 4;
    }
}

START_TEST(norms_match_reference_on_awkward_shapes) {
    rt_ctx *ctx = tu_ctx();
    int64_t rows = test_rows[_i / N_WIDTHS], C = test_widths[_i % N_WIDTHS], n = rows * C, shape[4];
    int nd = layout(rows, C, _i, shape);
    float *x = tu_random(n, 100 + (uint64_t)_i, -2, 2), *z = tu_random(n, 200 + (uint64_t)_i, -6, 6);
    float *w = tu_random(C, 300 + (uint64_t)_i, 0.5f, 1.5f), *want = malloc((size_t)n * sizeof *want);
    tensor tx = tu_tensor(nd, shape, x), tz = tu_tensor(nd, shape, z), tw = tu_tensor(1, &C, w);
    tensor out = tu_zeros(nd, shape);

    tu_ok(ops_rmsnorm(ctx, &tx, &tw, 1e-5f, &out));
    ref_rmsnorm(rows, C, x, w, 1e-5f, want);
    float *got = tu_download(&out);
    tu_assert_close(got, want, n, 1e-5, 1e-7, "rmsnorm");
    free(got);

    tu_ok(ops_gated_rmsnorm(ctx, &tx, &tz, &tw, 1e-5f, &out));
    ref_gated_rmsnorm(rows, C, x, z, w, 1e-5f, want);
    got = tu_download(&out);
    tu_assert_close(got, want, n, 1e-5, 1e-7, "gated_rmsnorm");
    free(got);

    tensor_free(&tx);
    tensor_free(&tz);
    tensor_free(&tw);
    tensor_free(&out);
    free(x);
    free(z);
    free(w);
    free(want);
}
END_TEST

/* The default group sizes are powers of two on some devices; the tuning table's norm.group forces
 * others (24, 40, 200: the tree then has work-items without a partner) and tiny ones, against rows
 * shorter and longer than the group. Same tolerance as above. */
START_TEST(norms_reduce_correctly_with_any_group_size) {
    rt_ctx *ctx = tu_ctx();
    static const char *const groups[] = {"8", "24", "40", "200"};
    static const int64_t widths[] = {1, 7, 100, 1000};
    int group = ops_tune(ctx, TUNE_NORM_GROUP);
    for (int gi = 0; gi < 4; gi++) {
        tu_ok(ops_tune_set(ctx, TUNE_NORM_GROUP, atoi(groups[gi]), "test"));
        for (int wi = 0; wi < 4; wi++) {
            int64_t C = widths[wi], shape[2] = {3, C}, n = 3 * C;
            float *x = tu_random(n, 900 + (uint64_t)wi, -2, 2), *z = tu_random(n, 950 + (uint64_t)wi, -6, 6);
            float *w = tu_random(C, 990, 0.5f, 1.5f), *want = malloc((size_t)n * sizeof *want);
            tensor tx = tu_tensor(2, shape, x), tz = tu_tensor(2, shape, z), tw = tu_tensor(1, &C, w);
            tensor out = tu_zeros(2, shape);
            tu_ok(ops_rmsnorm(ctx, &tx, &tw, 1e-5f, &out));
            ref_rmsnorm(3, C, x, w, 1e-5f, want);
            float *got = tu_download(&out);
            tu_assert_close(got, want, n, 1e-5, 1e-7, groups[gi]);
            free(got);
            tu_ok(ops_gated_rmsnorm(ctx, &tx, &tz, &tw, 1e-5f, &out));
            ref_gated_rmsnorm(3, C, x, z, w, 1e-5f, want);
            got = tu_download(&out);
            tu_assert_close(got, want, n, 1e-5, 1e-7, groups[gi]);
            free(got);
            tensor_free(&tx);
            tensor_free(&tz);
            tensor_free(&tw);
            tensor_free(&out);
            free(x);
            free(z);
            free(w);
            free(want);
        }
    }
    tu_ok(ops_tune_set(ctx, TUNE_NORM_GROUP, group, "test"));
}
END_TEST

START_TEST(swiglu_and_bias_match_reference_on_awkward_shapes) {
    rt_ctx *ctx = tu_ctx();
    int64_t rows = test_rows[_i / N_WIDTHS], C = test_widths[_i % N_WIDTHS], n = rows * C, shape[4];
    int nd = layout(rows, C, _i + 1, shape);
    float *a = tu_random(n, 400 + (uint64_t)_i, -8, 8), *b = tu_random(n, 500 + (uint64_t)_i, -3, 3);
    float *bias = tu_random(C, 600 + (uint64_t)_i, -1, 1), *want = malloc((size_t)n * sizeof *want);
    tensor ta = tu_tensor(nd, shape, a), tb = tu_tensor(nd, shape, b), tbias = tu_tensor(1, &C, bias);
    tensor out = tu_zeros(nd, shape);

    tu_ok(ops_swiglu(ctx, &ta, &tb, &out));
    ref_swiglu(n, a, b, want);
    float *got = tu_download(&out);
    tu_assert_close(got, want, n, 2e-6, 1e-7, "swiglu");
    free(got);

    tu_ok(ops_add_bias(ctx, &ta, &tbias, &out));
    ref_add_bias(rows, C, a, bias, want);
    got = tu_download(&out);
    tu_assert_close(got, want, n, 0, 0, "add_bias");
    free(got);

    tensor_free(&ta);
    tensor_free(&tb);
    tensor_free(&tbias);
    tensor_free(&out);
    free(a);
    free(b);
    free(bias);
    free(want);
}
END_TEST

/* Every op that allows out to alias an input, run in place on a view with an offset (rows 1..3 of
 * a [5, C] tensor), leaving the rows around it alone. */
START_TEST(ops_work_in_place_on_views_with_offsets) {
    rt_ctx *ctx = tu_ctx();
    enum { R = 5, C = 37, VR = 3 };
    int64_t shape[2] = {R, C}, c = C, n = R * C, vn = VR * C;
    float *x = tu_random(n, 1, -2, 2), *z = tu_random(n, 2, -4, 4), *w = tu_random(C, 3, 0.5f, 1.5f);
    float want[R * C];
    tensor tw = tu_tensor(1, &c, w), tz = tu_tensor(2, shape, z);

    for (int which = 0; which < 6; which++) {
        tensor tx = tu_tensor(2, shape, x), vx, vz;
        tu_ok(tensor_slice(&tx, 0, 1, VR, &vx));
        tu_ok(tensor_slice(&tz, 0, 1, VR, &vz));
        memcpy(want, x, sizeof want);
        float *wx = want + C, *hz = z + C;
        const char *what = "";
        switch (which) {
        case 0:
            tu_ok(ops_rmsnorm(ctx, &vx, &tw, 1e-5f, &vx));
            ref_rmsnorm(VR, C, wx, w, 1e-5f, wx);
            what = "rmsnorm in place";
            break;
        case 1:
            tu_ok(ops_gated_rmsnorm(ctx, &vx, &vz, &tw, 1e-5f, &vx));
            ref_gated_rmsnorm(VR, C, wx, hz, w, 1e-5f, wx);
            what = "gated_rmsnorm with out = y";
            break;
        case 2: /* out = z: the gate input is overwritten, so use x's rows as the gate here */
            tu_ok(ops_gated_rmsnorm(ctx, &vz, &vx, &tw, 1e-5f, &vx));
            ref_gated_rmsnorm(VR, C, hz, wx, w, 1e-5f, wx);
            what = "gated_rmsnorm with out = z";
            break;
        case 3:
            tu_ok(ops_swiglu(ctx, &vx, &vz, &vx));
            ref_swiglu(vn, wx, hz, wx);
            what = "swiglu with out = gate";
            break;
        case 4:
            tu_ok(ops_swiglu(ctx, &vz, &vx, &vx));
            ref_swiglu(vn, hz, wx, wx);
            what = "swiglu with out = up";
            break;
        default:
            tu_ok(ops_add_bias(ctx, &vx, &tw, &vx));
            ref_add_bias(VR, C, wx, w, wx);
            what = "add_bias in place";
            break;
        }
        float *got = tu_download(&tx);
        tu_assert_close(got, want, n, 1e-5, 1e-7, what); /* the norms' tolerance covers all six */
        ck_assert_mem_eq(got, x, C * sizeof(float));                       /* row 0 untouched */
        ck_assert_mem_eq(got + (R - 1) * C, x + (R - 1) * C, C * sizeof(float)); /* last row too */
        free(got);
        tensor_free(&vx);
        tensor_free(&vz);
        tensor_free(&tx);
    }
    tensor_free(&tw);
    tensor_free(&tz);
    free(x);
    free(z);
    free(w);
}
END_TEST

START_TEST(eps_keeps_zero_rows_finite_and_shifts_small_rows) {
    rt_ctx *ctx = tu_ctx();
    enum { C = 100 };
    int64_t shape[2] = {3, C}, c = C;
    float x[3 * C], w[C], want[3 * C];
    for (int i = 0; i < C; i++) {
        x[i] = 0.0f;             /* all-zero row */
        x[C + i] = 1e-3f;        /* small row: mean square 1e-6, comparable to eps */
        x[2 * C + i] = i % 2 ? 3.0f : -3.0f;
        w[i] = 1.0f + 0.01f * (float)i;
    }
    tensor tx = tu_tensor(2, shape, x), tw = tu_tensor(1, &c, w), out = tu_zeros(2, shape);
    const float eps_list[] = {1e-5f, 1e-6f, 1.0f};
    for (int e = 0; e < 3; e++) {
        tu_ok(ops_rmsnorm(ctx, &tx, &tw, eps_list[e], &out));
        float *got = tu_download(&out);
        ref_rmsnorm(3, C, x, w, eps_list[e], want);
        for (int i = 0; i < C; i++)
            ck_assert_msg(got[i] == 0.0f, "zero row gave %g at %d", (double)got[i], i);
        tu_assert_close(got, want, 3 * C, 1e-5, 1e-7, "rmsnorm with eps");
        /* the small row's scale is 1e-3 / sqrt(1e-6 + eps): eps visibly matters there */
        double scale = 1e-3 / sqrt(1e-6 + eps_list[e]);
        ck_assert_double_eq_tol(got[C] / w[0], scale, 1e-5 * scale);
        free(got);
    }
    /* gated: y = 0 or z = 0 gives g = 0 everywhere in the row */
    tensor tz = tu_zeros(2, shape);
    tu_ok(ops_gated_rmsnorm(ctx, &tx, &tz, &tw, 1e-5f, &out));
    float *got = tu_download(&out);
    for (int i = 0; i < 3 * C; i++) ck_assert_msg(got[i] == 0.0f, "gated zero row gave %g", (double)got[i]);
    free(got);
    tensor_free(&tx);
    tensor_free(&tz);
    tensor_free(&tw);
    tensor_free(&out);
}
END_TEST

/* ---- RoPE ---- */
static const struct {
    int B, T, H, dh;
    int32_t pos0[3];
} rope_cases[] = {
    {1, 1, 1, 2, {0}},             /* the smallest head (scalar kernel) */
    {2, 4, 2, 12, {7, 300}},       /* dh % 8 != 0: the scalar kernel */
    {3, 5, 3, 8, {0, 17, 250}},    /* several starts per batch; dh % 8 == 0: the float4 kernel */
    {2, 7, 8, 64, {3, 0}},         /* the paper's heads */
    {2, 3, 2, 64, {100000, 4095}}, /* far positions */
};

START_TEST(rope_matches_reference_with_per_sequence_starts) {
    rt_ctx *ctx = tu_ctx();
    int B = rope_cases[_i].B, T = rope_cases[_i].T, H = rope_cases[_i].H, dh = rope_cases[_i].dh;
    int64_t shape[3] = {B, T, (int64_t)H * dh}, n = (int64_t)B * T * H * dh, b64 = B;
    float *x = tu_random(n, 700 + (uint64_t)_i, -1, 1), *want = malloc((size_t)n * sizeof *want);
    memcpy(want, x, (size_t)n * sizeof *want);
    tensor tx = tu_tensor(3, shape, x), tp = tu_i32(1, &b64, rope_cases[_i].pos0);
    tu_ok(ops_rope(ctx, &tx, H, &tp, 10000.0f));
    ref_rope(B, T, H, dh, want, rope_cases[_i].pos0, 10000.0f);
    int32_t max_pos = 0;
    for (int b = 0; b < B; b++)
        if (rope_cases[_i].pos0[b] + T - 1 > max_pos) max_pos = rope_cases[_i].pos0[b] + T - 1;
    float *got = tu_download(&tx);
    tu_assert_close(got, want, n, 0, 1.5e-6 * (max_pos + 1) + 1e-6, "rope"); /* see the header */
    free(got);
    tensor_free(&tx);
    tensor_free(&tp);
    free(x);
    free(want);
}
END_TEST

/* q and k in one launch: bit for bit what two single launches give, for both kernel variants
 * (dh = 6: scalar pairs; dh = 16: quads), and a mismatched k is refused. */
START_TEST(rope2_rotates_q_and_k_like_two_single_calls) {
    rt_ctx *ctx = tu_ctx();
    const int dhs[2] = {6, 16};
    for (int v = 0; v < 2; v++) {
        int B = 2, T = 5, H = 3, Hk = 1, dh = dhs[v];
        int64_t qs[3] = {B, T, (int64_t)H * dh}, ks[3] = {B, T, (int64_t)Hk * dh}, b64 = B;
        float *q = tu_random(B * T * H * dh, 40 + (uint64_t)v, -1, 1), *k = tu_random(B * T * Hk * dh, 50, -1, 1);
        tensor q1 = tu_tensor(3, qs, q), k1 = tu_tensor(3, ks, k), q2 = tu_tensor(3, qs, q), k2 = tu_tensor(3, ks, k);
        tensor tp = tu_i32(1, &b64, (int32_t[]){3, 700});
        tu_ok(ops_rope(ctx, &q1, H, &tp, 10000.0f));
        tu_ok(ops_rope(ctx, &k1, Hk, &tp, 10000.0f));
        tu_ok(ops_rope2(ctx, &q2, H, &k2, Hk, &tp, 10000.0f));
        float *a = tu_download(&q1), *b = tu_download(&q2), *c = tu_download(&k1), *d = tu_download(&k2);
        tu_assert_close(b, a, B * T * H * dh, 0, 0, "rope2 q");
        tu_assert_close(d, c, B * T * Hk * dh, 0, 0, "rope2 k");
        ck_assert_int_eq(ops_rope2(ctx, &q2, H, &q2, H, &tp, 10000.0f), ATTAMBA_ERR_INVALID_ARG); /* overlap */
        tensor *all[] = {&q1, &k1, &q2, &k2, &tp};
        for (size_t i = 0; i < CORE_LEN(all); i++) tensor_free(all[i]);
        free(a), free(b), free(c), free(d), free(q), free(k);
    }
}
END_TEST

/* Rotation by angle 0 is the identity, exactly: token 0 of a sequence starting at 0. */
START_TEST(rope_leaves_position_zero_unchanged) {
    rt_ctx *ctx = tu_ctx();
    int64_t shape[3] = {2, 4, 64}, n = 2 * 4 * 64, b2 = 2;
    float *x = tu_random(n, 9, -1, 1);
    tensor tx = tu_tensor(3, shape, x), tp = tu_i32(1, &b2, (int32_t[]){0, 0});
    tu_ok(ops_rope(ctx, &tx, 2, &tp, 10000.0f));
    float *got = tu_download(&tx);
    ck_assert_mem_eq(got, x, 64 * sizeof(float));
    ck_assert_mem_eq(got + 4 * 64, x + 4 * 64, 64 * sizeof(float));
    ck_assert(memcmp(got + 64, x + 64, 64 * sizeof(float)) != 0); /* position 1 does rotate */
    free(got);
    tensor_free(&tx);
    tensor_free(&tp);
    free(x);
}
END_TEST

/* Decode applies RoPE one token at a time with pos0 = the current positions; it must give the
 * very same bits as the prefill over the whole sequence (the same f32 angle either way). */
START_TEST(rope_one_token_at_a_time_equals_whole_sequence) {
    rt_ctx *ctx = tu_ctx();
    enum { B = 2, T = 6, H = 4, DH = 16, W = H * DH };
    int64_t shape[3] = {B, T, W}, one[3] = {B, 1, W}, b2 = B;
    int32_t start[B] = {0, 1234};
    float *x = tu_random(B * T * W, 11, -1, 1), step[B * W], *whole;
    tensor tx = tu_tensor(3, shape, x), tp = tu_i32(1, &b2, start);
    tu_ok(ops_rope(ctx, &tx, H, &tp, 10000.0f));
    whole = tu_download(&tx);
    for (int t = 0; t < T; t++) {
        for (int b = 0; b < B; b++) memcpy(step + b * W, x + (b * T + t) * W, W * sizeof(float));
        int32_t pos[B] = {start[0] + t, start[1] + t};
        tensor ts = tu_tensor(3, one, step), tq = tu_i32(1, &b2, pos);
        tu_ok(ops_rope(ctx, &ts, H, &tq, 10000.0f));
        float *got = tu_download(&ts);
        for (int b = 0; b < B; b++)
            ck_assert_msg(!memcmp(got + b * W, whole + (b * T + t) * W, W * sizeof(float)),
                          "decode step t=%d b=%d differs from prefill", t, b);
        free(got);
        tensor_free(&ts);
        tensor_free(&tq);
    }
    free(whole);
    free(x);
    tensor_free(&tx);
    tensor_free(&tp);
}
END_TEST

/* The point of RoPE: <rope(q, i), rope(k, j)> depends only on i - j. Every token holds the same q
 * (and k), sequences start at different positions, and each head's dot product for every (i, j)
 * is checked against the closed form sum_p (q0 k0 + q1 k1) cos((i-j) f_p) + (q0 k1 - q1 k0) sin((i-j) f_p)
 * in double. Tolerance: each rotation is off by up to 1e-6 (pos + 1) radians (header), so a dot
 * product moves by at most |q_h| |k_h| times the sum of both. */
START_TEST(rope_dot_products_depend_only_on_relative_position) {
    rt_ctx *ctx = tu_ctx();
    enum { B = 3, T = 12, H = 2, DH = 64, W = H * DH };
    int64_t shape[3] = {B, T, W}, b3 = B;
    int32_t start[B] = {0, 5, 1000};
    float *q1 = tu_random(W, 21, -1, 1), *k1 = tu_random(W, 22, -1, 1);
    float *q = malloc(B * T * W * sizeof *q), *k = malloc(B * T * W * sizeof *k);
    for (int r = 0; r < B * T; r++) {
        memcpy(q + r * W, q1, W * sizeof(float));
        memcpy(k + r * W, k1, W * sizeof(float));
    }
    tensor tq = tu_tensor(3, shape, q), tk = tu_tensor(3, shape, k), tp = tu_i32(1, &b3, start);
    tu_ok(ops_rope(ctx, &tq, H, &tp, 10000.0f));
    tu_ok(ops_rope(ctx, &tk, H, &tp, 10000.0f));
    float *rq = tu_download(&tq), *rk = tu_download(&tk);
    for (int h = 0; h < H; h++) {
        const float *qh = q1 + h * DH, *kh = k1 + h * DH;
        double nq = 0, nk = 0;
        for (int c = 0; c < DH; c++) {
            nq += (double)qh[c] * qh[c];
            nk += (double)kh[c] * kh[c];
        }
        for (int a = 0; a < B * T; a++)
            for (int b = 0; b < B * T; b++) {
                int pi = start[a / T] + a % T, pj = start[b / T] + b % T;
                double got = 0, want = 0;
                for (int c = 0; c < DH; c++) got += (double)rq[a * W + h * DH + c] * rk[b * W + h * DH + c];
                for (int p = 0; p < DH / 2; p++) {
                    double ang = (double)(pi - pj) * pow(10000.0, -2.0 * p / DH);
                    double q0 = qh[2 * p], q1v = qh[2 * p + 1], k0 = kh[2 * p], k1v = kh[2 * p + 1];
                    want += (q0 * k0 + q1v * k1v) * cos(ang) + (q0 * k1v - q1v * k0) * sin(ang);
                }
                double tol = sqrt(nq * nk) * 1e-6 * (pi + pj + 2) + 1e-5;
                ck_assert_msg(fabs(got - want) <= tol,
                              "head %d, positions %d and %d: dot %.7g, expected %.7g", h, pi, pj, got, want);
            }
    }
    free(rq);
    free(rk);
    free(q);
    free(k);
    free(q1);
    free(k1);
    tensor_free(&tq);
    tensor_free(&tk);
    tensor_free(&tp);
}
END_TEST

/* ---- embedding ---- */
START_TEST(embedding_gathers_rows_and_zeroes_out_of_range_ids) {
    rt_ctx *ctx = tu_ctx();
    static const int64_t widths[] = {1, 7, 512};
    enum { V = 50, B = 3, T = 7 };
    int64_t d = widths[_i], ids_shape[2] = {B, T}, out_shape[3] = {B, T, d}, table_shape[2] = {V, d};
    int32_t ids[B * T] = {0, 49, 3, -1, 50, 7, 7, INT32_MIN, INT32_MAX, 25, 1,
                          2, 3, 4, 1000, 48, 0, 0, 13, -50, 12};
    float *table = tu_random(V * d, 800 + (uint64_t)_i, -1, 1), *want = malloc(B * T * d * sizeof *want);
    tensor tt = tu_tensor(2, table_shape, table), ti = tu_i32(2, ids_shape, ids);
    tensor out;
    tu_ok(tensor_alloc_f32(ctx, &out, 3, out_shape));
    tu_ok(tensor_fill(&out, NAN)); /* out-of-range rows must be written as zeros, not left alone */
    tu_ok(ops_embedding(ctx, &ti, &tt, &out));
    ref_embedding(B * T, ids, V, d, table, want);
    float *got = tu_download(&out);
    tu_assert_close(got, want, B * T * d, 0, 0, "embedding");
    for (int r = 0; r < B * T; r++)
        if (ids[r] < 0 || ids[r] >= V)
            for (int c = 0; c < d; c++) ck_assert_msg(got[r * d + c] == 0.0f, "id %d not a zero row", ids[r]);
    free(got);
    tensor_free(&tt);
    tensor_free(&ti);
    tensor_free(&out);
    free(table);
    free(want);
}
END_TEST

/* ---- bad arguments ---- */
static void expect_refusal(attamba_status got, attamba_status want, const char *op, const char *detail) {
    rt_ctx *ctx = tu_ctx();
    ck_assert_msg(got == want, "%s: got %s, expected %s", op, attamba_status_str(got),
                  attamba_status_str(want));
    ck_assert_msg(strstr(ctx->err, op) != NULL, "message '%s' does not name %s", ctx->err, op);
    if (detail) ck_assert_msg(strstr(ctx->err, detail) != NULL, "message '%s' lacks '%s'", ctx->err, detail);
}

START_TEST(bad_arguments_are_refused_with_a_message) {
    rt_ctx *ctx = tu_ctx();
    int64_t s34[2] = {3, 4}, s35[2] = {3, 5}, c4 = 4, c5 = 5, b2 = 2;
    tensor x = tu_zeros(2, s34), y = tu_zeros(2, s35), w4 = tu_zeros(1, &c4), w5 = tu_zeros(1, &c5);
    tensor empty = {0};
    tensor xt, ids_f = tu_zeros(2, ((int64_t[]){2, 3}));

    /* norms: weight width, out shape, strided input, eps, empty */
    expect_refusal(ops_rmsnorm(ctx, &x, &w5, 1e-5f, &x), ATTAMBA_ERR_SHAPE, "ops_rmsnorm", "w must be");
    expect_refusal(ops_rmsnorm(ctx, &x, &w4, 1e-5f, &y), ATTAMBA_ERR_SHAPE, "ops_rmsnorm", "out must be");
    tu_ok(tensor_transpose(&y, 0, 1, &xt));
    expect_refusal(ops_rmsnorm(ctx, &xt, &w4, 1e-5f, &xt), ATTAMBA_ERR_SHAPE, "ops_rmsnorm", "strided");
    expect_refusal(ops_rmsnorm(ctx, &x, &w4, -1.0f, &x), ATTAMBA_ERR_INVALID_ARG, "ops_rmsnorm", "eps");
    expect_refusal(ops_rmsnorm(ctx, &x, &w4, NAN, &x), ATTAMBA_ERR_INVALID_ARG, "ops_rmsnorm", "eps");
    expect_refusal(ops_rmsnorm(ctx, &empty, &w4, 1e-5f, &x), ATTAMBA_ERR_INVALID_ARG, "ops_rmsnorm", "empty");
    expect_refusal(ops_gated_rmsnorm(ctx, &x, &y, &w4, 1e-5f, &x), ATTAMBA_ERR_SHAPE, "ops_gated_rmsnorm",
                   "z must be");
    expect_refusal(ops_gated_rmsnorm(ctx, &x, &x, &w5, 1e-5f, &x), ATTAMBA_ERR_SHAPE, "ops_gated_rmsnorm",
                   "w must be");

    /* RoPE: odd dh, width not a multiple of the heads, pos0 dtype and length, 2-D x, theta, heads */
    tensor q6 = tu_zeros(3, ((int64_t[]){2, 3, 6})), q8 = tu_zeros(3, ((int64_t[]){2, 3, 8})), pos, pos3;
    tu_ok(tensor_alloc(ctx, &pos, TENSOR_I32, 1, &b2));
    tu_ok(tensor_fill(&pos, 0));
    tu_ok(tensor_alloc(ctx, &pos3, TENSOR_I32, 1, ((int64_t[]){3})));
    tensor posf = tu_zeros(1, &b2);
    expect_refusal(ops_rope(ctx, &q6, 2, &pos, 10000.0f), ATTAMBA_ERR_SHAPE, "ops_rope", "even dh");
    expect_refusal(ops_rope(ctx, &q8, 3, &pos, 10000.0f), ATTAMBA_ERR_SHAPE, "ops_rope", "even dh");
    expect_refusal(ops_rope(ctx, &q8, 2, &posf, 10000.0f), ATTAMBA_ERR_SHAPE, "ops_rope", "i32");
    expect_refusal(ops_rope(ctx, &q8, 2, &pos3, 10000.0f), ATTAMBA_ERR_SHAPE, "ops_rope", "pos0");
    expect_refusal(ops_rope(ctx, &x, 1, &pos, 10000.0f), ATTAMBA_ERR_SHAPE, "ops_rope", "[B, T");
    expect_refusal(ops_rope(ctx, &q8, 2, &pos, 0.0f), ATTAMBA_ERR_INVALID_ARG, "ops_rope", "theta");
    expect_refusal(ops_rope(ctx, &q8, 0, &pos, 10000.0f), ATTAMBA_ERR_INVALID_ARG, "ops_rope", "n_heads");

    /* embedding: ids not i32, wrong table width, 1-D ids, empty table */
    tensor ids, table = tu_zeros(2, ((int64_t[]){10, 4})), emb = tu_zeros(3, ((int64_t[]){2, 3, 5}));
    tu_ok(tensor_alloc(ctx, &ids, TENSOR_I32, 2, ((int64_t[]){2, 3})));
    tu_ok(tensor_fill(&ids, 1));
    expect_refusal(ops_embedding(ctx, &ids_f, &table, &emb), ATTAMBA_ERR_SHAPE, "ops_embedding", "i32");
    expect_refusal(ops_embedding(ctx, &ids, &table, &emb), ATTAMBA_ERR_SHAPE, "ops_embedding", "out must be");
    expect_refusal(ops_embedding(ctx, &pos, &table, &emb), ATTAMBA_ERR_SHAPE, "ops_embedding", "[B, T]");
    expect_refusal(ops_embedding(ctx, &ids, &empty, &emb), ATTAMBA_ERR_INVALID_ARG, "ops_embedding", "table");

    /* swiglu and bias: shape mismatches */
    expect_refusal(ops_swiglu(ctx, &x, &y, &x), ATTAMBA_ERR_SHAPE, "ops_swiglu", "up must be");
    expect_refusal(ops_add_bias(ctx, &x, &w5, &x), ATTAMBA_ERR_SHAPE, "ops_add_bias", "bias must be");
    expect_refusal(ops_add_bias(ctx, &x, &w4, &y), ATTAMBA_ERR_SHAPE, "ops_add_bias", "out must be");

    tensor *all[] = {&x, &y, &w4, &w5, &xt, &ids_f, &q6, &q8, &pos, &pos3, &posf, &ids, &table, &emb};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tensor_free(all[i]);
}
END_TEST

int main(void) {
    Suite *s = suite_create("layer");
    TCase *t = tcase_create("layer");
    tcase_add_loop_test(t, norms_match_reference_on_awkward_shapes, 0, N_ROWS * N_WIDTHS);
    tcase_add_test(t, norms_reduce_correctly_with_any_group_size);
    tcase_add_loop_test(t, swiglu_and_bias_match_reference_on_awkward_shapes, 0, N_ROWS * N_WIDTHS);
    tcase_add_test(t, ops_work_in_place_on_views_with_offsets);
    tcase_add_test(t, eps_keeps_zero_rows_finite_and_shifts_small_rows);
    tcase_add_loop_test(t, rope_matches_reference_with_per_sequence_starts, 0,
                        (int)(sizeof rope_cases / sizeof rope_cases[0]));
    tcase_add_test(t, rope_leaves_position_zero_unchanged);
    tcase_add_test(t, rope2_rotates_q_and_k_like_two_single_calls);
    tcase_add_test(t, rope_one_token_at_a_time_equals_whole_sequence);
    tcase_add_test(t, rope_dot_products_depend_only_on_relative_position);
    tcase_add_loop_test(t, embedding_gathers_rows_and_zeroes_out_of_range_ids, 0, 3);
    tcase_add_test(t, bad_arguments_are_refused_with_a_message);
    suite_add_tcase(s, t);
    return tu_run(s);
}
