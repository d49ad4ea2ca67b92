/* GEMM (CLBlast and the own kernel) against ref_gemm on awkward shapes, all transposes, batches,
 * shared operands, strided rows, alpha/beta.
 * Tolerance: |C - ref| <= 1e-4 |ref| + 2e-6 K (inputs in [-1, 1]; float accumulation error grows
 * about linearly in K in the worst case, the reference accumulates in double). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/tuning.h"
#include "ref/ref_layer.h"
#include "testutil.h"

static const int shapes[][3] = {{1, 1, 1},    {3, 7, 33},     {33, 129, 7},  {129, 3, 1000}, {1000, 33, 129},
                                {7, 1000, 3}, {1, 1000, 129}, {1000, 1, 33}, {64, 64, 64},   {301, 20, 500},
                                {50, 1100, 9}, {70, 40, 2100}};
#define N_SHAPES (int)(sizeof shapes / sizeof shapes[0])
/* Edges of the own kernels' tiles: register tiles are 8 (6) rows x 32 (16) columns on CPUs,
 * __local tiles 64 x 64 x 16: exact multiples, one past, one short. */
static const int tile_shapes[][3] = {{8, 32, 16}, {9, 33, 17}, {17, 31, 15}, {16, 64, 64},
                                     {65, 65, 65}, {63, 97, 1}, {48, 16, 5}};
#define N_TILE_SHAPES (int)(sizeof tile_shapes / sizeof tile_shapes[0])
static const ops_gemm_kernel kernels[] = {OPS_GEMM_KERNEL_SIMPLE, OPS_GEMM_KERNEL_TILES, OPS_GEMM_KERNEL_LOCAL,
                                          OPS_GEMM_KERNEL_DOT};
#define N_KERNELS (int)(sizeof kernels / sizeof kernels[0])
static const char *const kernel_names[] = {"auto", "simple", "tiles", "local", "dot"};

/* ops_gemm_with(be), or for be == OWN with an explicit kernel, ops_gemm_own(kern). */
static attamba_status run(ops_gemm_backend be, ops_gemm_kernel kern, int ta, int tb, float alpha, const tensor *a,
                          const tensor *b, float beta, tensor *c) {
    rt_ctx *ctx = tu_ctx();
    if (be == OPS_GEMM_OWN && kern != OPS_GEMM_KERNEL_AUTO) return ops_gemm_own(ctx, kern, ta, tb, alpha, a, b, beta, c);
    return ops_gemm_with(ctx, be, ta, tb, alpha, a, b, beta, c);
}

static void check_kernel(ops_gemm_backend be, ops_gemm_kernel kern, int ta, int tb, int M, int N, int K, float alpha,
                         float beta) {
    uint64_t seed = (uint64_t)(M * 131 + N * 17 + K + ta * 7 + tb * 3);
    float *a = tu_random((int64_t)M * K, seed, -1, 1), *b = tu_random((int64_t)K * N, seed + 1, -1, 1);
    float *c = tu_random((int64_t)M * N, seed + 2, -1, 1), *want = malloc((size_t)M * N * sizeof *want);
    memcpy(want, c, (size_t)M * N * sizeof *want);
    tensor A = tu_tensor(2, ta ? (int64_t[]){K, M} : (int64_t[]){M, K}, a);
    tensor B = tu_tensor(2, tb ? (int64_t[]){N, K} : (int64_t[]){K, N}, b);
    tensor C = tu_tensor(2, (int64_t[]){M, N}, c);
    tu_ok(run(be, kern, ta, tb, alpha, &A, &B, beta, &C));
    ref_gemm(ta, tb, M, N, K, alpha, a, ta ? M : K, b, tb ? K : N, beta, want, N);
    float *got = tu_download(&C);
    char what[128];
    snprintf(what, sizeof what, "%s/%s gemm %dx%dx%d ta=%d tb=%d", be == OPS_GEMM_OWN ? "own" : "clblast",
             kernel_names[kern], M, N, K, ta, tb);
    tu_assert_close(got, want, (int64_t)M * N, 1e-4, 2e-6 * K + 1e-6, what);
    free(got);
    free(a);
    free(b);
    free(c);
    free(want);
    tensor_free(&A);
    tensor_free(&B);
    tensor_free(&C);
}

static void check_one(ops_gemm_backend be, int ta, int tb, int M, int N, int K, float alpha, float beta) {
    check_kernel(be, OPS_GEMM_KERNEL_AUTO, ta, tb, M, N, K, alpha, beta);
}

static void all_transposes(ops_gemm_backend be, int s) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) check_one(be, ta, tb, shapes[s][0], shapes[s][1], shapes[s][2], 1.0f, 0.0f);
}

START_TEST(own_kernel_matches_reference) { all_transposes(OPS_GEMM_OWN, _i); }
END_TEST

/* Every own kernel (not only the one AUTO picks on this device) on the awkward shapes and on its
 * tile edges, all transposes; _i enumerates kernel x shape. */
START_TEST(each_own_kernel_matches_reference_at_tile_edges) {
    int n_all = N_SHAPES + N_TILE_SHAPES, s = _i % n_all;
    const int *shape = s < N_SHAPES ? shapes[s] : tile_shapes[s - N_SHAPES];
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            check_kernel(OPS_GEMM_OWN, kernels[_i / n_all], ta, tb, shape[0], shape[1], shape[2], 1.0f, 0.0f);
}
END_TEST

START_TEST(each_own_kernel_applies_alpha_and_beta_on_full_and_partial_tiles) {
    for (int i = 0; i < N_KERNELS; i++) {
        check_kernel(OPS_GEMM_OWN, kernels[i], 0, 0, 17, 70, 31, -0.5f, 0.75f);
        check_kernel(OPS_GEMM_OWN, kernels[i], 1, 1, 70, 64, 9, 2.0f, 1.0f);
    }
}
END_TEST

START_TEST(clblast_matches_reference) {
    if (!ops_gemm_have_clblast()) return;
    all_transposes(OPS_GEMM_CLBLAST, _i);
}
END_TEST

START_TEST(alpha_and_beta_accumulate) {
    check_one(OPS_GEMM_OWN, 0, 1, 17, 23, 31, -0.5f, 0.75f);
    check_one(OPS_GEMM_OWN, 1, 0, 17, 23, 31, 2.0f, 1.0f);
    if (ops_gemm_have_clblast()) check_one(OPS_GEMM_CLBLAST, 1, 1, 17, 23, 31, -0.5f, 0.75f);
}
END_TEST

/* Batched C[b] = op(A[b]) op(W) with W shared (the model's case), with both batched, and with A
 * shared instead (the A operand is [K, M] when transposed: the weight gradient's layout). */
static void check_batched_m(ops_gemm_backend be, ops_gemm_kernel kern, int shared_b, int tb, int M, int K, int ta,
                            int shared_a) {
    int Bn = 3, N = 45;
    float *a = tu_random((int64_t)(shared_a ? 1 : Bn) * M * K, 5, -1, 1);
    float *b = tu_random((int64_t)(shared_b ? 1 : Bn) * K * N, 6, -1, 1);
    float *want = calloc((size_t)Bn * M * N, sizeof *want);
    int64_t ar = ta ? K : M, ac = ta ? M : K;
    tensor A = shared_a ? tu_tensor(2, (int64_t[]){ar, ac}, a) : tu_tensor(3, (int64_t[]){Bn, ar, ac}, a);
    tensor B = shared_b ? tu_tensor(2, tb ? (int64_t[]){N, K} : (int64_t[]){K, N}, b)
                        : tu_tensor(3, tb ? (int64_t[]){Bn, N, K} : (int64_t[]){Bn, K, N}, b);
    tensor C = tu_zeros(3, (int64_t[]){Bn, M, N});
    tu_ok(run(be, kern, ta, tb, 1.0f, &A, &B, 0.0f, &C));
    for (int i = 0; i < Bn; i++)
        ref_gemm(ta, tb, M, N, K, 1.0f, a + (shared_a ? 0 : (int64_t)i * M * K), (int)ac,
                 b + (shared_b ? 0 : (int64_t)i * K * N), tb ? K : N, 0.0f, want + (int64_t)i * M * N, N);
    float *got = tu_download(&C);
    char what[96];
    snprintf(what, sizeof what, "batched M=%d K=%d ta=%d tb=%d, shared %s", M, K, ta, tb,
             shared_a ? "A" : shared_b ? "B" : "neither");
    tu_assert_close(got, want, (int64_t)Bn * M * N, 1e-4, 1e-4, what);
    free(got);
    free(a);
    free(b);
    free(want);
    tensor_free(&A);
    tensor_free(&B);
    tensor_free(&C);
}

static void check_batched(ops_gemm_backend be, ops_gemm_kernel kern, int shared_b, int tb) {
    check_batched_m(be, kern, shared_b, tb, 19, 27, 0, 0);
}

START_TEST(batched_and_shared_operands) {
    for (int tb = 0; tb < 2; tb++) {
        check_batched(OPS_GEMM_OWN, OPS_GEMM_KERNEL_AUTO, 1, tb);
        check_batched(OPS_GEMM_OWN, OPS_GEMM_KERNEL_AUTO, 0, tb);
        for (int i = 0; i < N_KERNELS; i++) {
            check_batched(OPS_GEMM_OWN, kernels[i], 1, tb);
            check_batched(OPS_GEMM_OWN, kernels[i], 0, tb);
        }
        /* M > 64: the tiles kernel packs B per batch (or once when shared). A transposed A is
         * packed per batch (or once when shared) when K * M > 128K floats, else read in place:
         * K = 27 and 2100 take both ways (and K = 2100 runs in passes over K) */
        for (int K = 27; K <= 2100; K += 2073) {
            check_batched_m(OPS_GEMM_OWN, OPS_GEMM_KERNEL_TILES, 1, tb, 70, K, 0, 0);
            check_batched_m(OPS_GEMM_OWN, OPS_GEMM_KERNEL_TILES, 0, tb, 70, K, 0, 0);
            for (int M = 19; M <= 70; M += 51) {
                check_batched_m(OPS_GEMM_OWN, OPS_GEMM_KERNEL_TILES, 1, tb, M, K, 1, 0);
                check_batched_m(OPS_GEMM_OWN, OPS_GEMM_KERNEL_TILES, 0, tb, M, K, 1, 0);
                check_batched_m(OPS_GEMM_OWN, OPS_GEMM_KERNEL_TILES, 0, tb, M, K, 1, 1);
            }
        }
        if (ops_gemm_have_clblast()) {
            check_batched(OPS_GEMM_CLBLAST, OPS_GEMM_KERNEL_AUTO, 1, tb);
            check_batched(OPS_GEMM_CLBLAST, OPS_GEMM_KERNEL_AUTO, 0, tb);
        }
    }
}
END_TEST

/* Register tiles in many passes over K (gemm.kc_kib = 1: 8-16 k per pass), with a remainder pass,
 * alpha, beta and a batch: the same C as the reference, on any device's panel width. */
START_TEST(passes_over_k_accumulate) {
    rt_ctx *ctx = tu_ctx();
    int kept = ops_tune(ctx, TUNE_GEMM_KC_KIB);
    tu_ok(ops_tune_set(ctx, TUNE_GEMM_KC_KIB, 1, "test"));
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            check_kernel(OPS_GEMM_OWN, OPS_GEMM_KERNEL_TILES, ta, tb, 70, 40, 101, 0.5f, 1.5f);
            check_kernel(OPS_GEMM_OWN, OPS_GEMM_KERNEL_TILES, ta, tb, 9, 33, 37, 1.0f, 0.0f);
        }
    check_batched_m(OPS_GEMM_OWN, OPS_GEMM_KERNEL_TILES, 0, 0, 70, 101, 1, 0);
    check_batched_m(OPS_GEMM_OWN, OPS_GEMM_KERNEL_TILES, 1, 1, 19, 101, 0, 0);
    tu_ok(ops_tune_set(ctx, TUNE_GEMM_KC_KIB, kept, "test"));
}
END_TEST

/* A plain B with M > 64 both packed (gemm.inplace_b_kib = 0) and read in place (any size), with
 * a partial last panel, alpha, beta and batches: the same C either way. */
START_TEST(plain_b_in_place_and_packed) {
    rt_ctx *ctx = tu_ctx();
    int kept = ops_tune(ctx, TUNE_GEMM_INPLACE_B_KIB);
    for (int kib = 0; kib <= 1 << 20; kib += 1 << 20) {
        tu_ok(ops_tune_set(ctx, TUNE_GEMM_INPLACE_B_KIB, kib, "test"));
        for (int ta = 0; ta < 2; ta++) {
            check_kernel(OPS_GEMM_OWN, OPS_GEMM_KERNEL_TILES, ta, 0, 70, 40, 101, 0.5f, 1.5f);
            check_kernel(OPS_GEMM_OWN, OPS_GEMM_KERNEL_TILES, ta, 0, 130, 7, 2100, 1.0f, 0.0f);
            check_batched_m(OPS_GEMM_OWN, OPS_GEMM_KERNEL_TILES, 1, 0, 70, 27, ta, 0);
            check_batched_m(OPS_GEMM_OWN, OPS_GEMM_KERNEL_TILES, 0, 0, 70, 27, ta, 0);
        }
    }
    tu_ok(ops_tune_set(ctx, TUNE_GEMM_INPLACE_B_KIB, kept, "test"));
}
END_TEST

START_TEST(strided_row_views) {
    /* A is columns [5, 5+K) of a wider matrix: row stride 40, not K */
    rt_ctx *ctx = tu_ctx();
    int M = 9, K = 11, N = 13, W = 40;
    float *wide = tu_random((int64_t)M * W, 8, -1, 1), *b = tu_random((int64_t)K * N, 9, -1, 1);
    float want[9 * 13];
    tensor Wt = tu_tensor(2, (int64_t[]){M, W}, wide), A, B = tu_tensor(2, (int64_t[]){K, N}, b),
           C = tu_zeros(2, (int64_t[]){M, N});
    tu_ok(tensor_slice(&Wt, 1, 5, K, &A));
    ref_gemm(0, 0, M, N, K, 1.0f, wide + 5, W, b, N, 0.0f, want, N);
    for (int be = OPS_GEMM_CLBLAST; be <= OPS_GEMM_OWN; be++) {
        if (be == OPS_GEMM_CLBLAST && !ops_gemm_have_clblast()) continue;
        tu_ok(ops_gemm_with(ctx, (ops_gemm_backend)be, 0, 0, 1.0f, &A, &B, 0.0f, &C));
        float *got = tu_download(&C);
        tu_assert_close(got, want, M * N, 1e-4, 1e-4, "strided A");
        free(got);
    }
    free(wide);
    free(b);
    tensor_free(&A);
    tensor_free(&Wt);
    tensor_free(&B);
    tensor_free(&C);
}
END_TEST

/* C is columns [7, 7+N) of a wider matrix with beta != 0: every kernel must read and write only
 * inside the view (N = 40: one full 32-column panel and a partial one). */
START_TEST(strided_output_view_is_written_only_inside) {
    int M = 11, K = 21, N = 40, W = 56;
    float *a = tu_random((int64_t)M * K, 11, -1, 1), *b = tu_random((int64_t)K * N, 12, -1, 1);
    float *wide = tu_random((int64_t)M * W, 13, -1, 1);
    tensor A = tu_tensor(2, (int64_t[]){M, K}, a), B = tu_tensor(2, (int64_t[]){K, N}, b);
    for (int i = 0; i <= N_KERNELS; i++) {
        ops_gemm_kernel kern = i < N_KERNELS ? kernels[i] : OPS_GEMM_KERNEL_AUTO;
        tensor Wt = tu_tensor(2, (int64_t[]){M, W}, wide), Cv;
        tu_ok(tensor_slice(&Wt, 1, 7, N, &Cv));
        tu_ok(run(OPS_GEMM_OWN, kern, 0, 0, 1.5f, &A, &B, -1.0f, &Cv));
        float *want = malloc((size_t)M * W * sizeof *want);
        memcpy(want, wide, (size_t)M * W * sizeof *want);
        ref_gemm(0, 0, M, N, K, 1.5f, a, K, b, N, -1.0f, want + 7, W);
        float *got = tu_download(&Wt);
        tu_assert_close(got, want, (int64_t)M * W, 1e-4, 1e-4, kernel_names[kern]);
        free(got);
        free(want);
        tensor_free(&Cv);
        tensor_free(&Wt);
    }
    free(a);
    free(b);
    free(wide);
    tensor_free(&A);
    tensor_free(&B);
}
END_TEST

/* Projections sharing an input in one call: row blocks of one matrix (like in_proj's z | xBC+dt) and
 * another matrix, awkward widths (1, 7, 33; K = 37 is no multiple of 16 or 8), one accumulating; with
 * 1, 2 and 3 rows (one grouped launch) and 9 (one GEMM each); plain, and with the RMS norm of the input
 * first (in the same launch below 8 rows; its output written when kept, or when it ran on its own; kept
 * twice: into out and out2). */
static void check_group(int M, int norm_mode /* 0: none, 1: norm, 2: norm kept, 3: kept twice */) {
    rt_ctx *ctx = tu_ctx();
    const int K = 37, Ns[3] = {1, 7, 33};
    float *x = tu_random(M * K, 60 + (uint64_t)M, -1, 1), *w01 = tu_random(8 * K, 61, -1, 1);
    float *w2 = tu_random(33 * K, 62, -1, 1), *gain = tu_random(K, 63, 0.5, 1.5), *xn = malloc(M * K * sizeof *xn);
    tensor tx = tu_tensor(3, ((int64_t[]){M, 1, K}), x), tw01 = tu_tensor(2, ((int64_t[]){8, K}), w01);
    tensor tw2 = tu_tensor(2, ((int64_t[]){33, K}), w2), tw[3] = {{0}, {0}, tw2}, ty[3];
    tensor tg = tu_tensor(1, ((int64_t[]){K}), gain), tout = tu_zeros(3, ((int64_t[]){M, 1, K}));
    tensor tout2 = tu_zeros(3, ((int64_t[]){M, 1, K}));
    tu_ok(tensor_slice(&tw01, 0, 0, 1, &tw[0]));
    tu_ok(tensor_slice(&tw01, 0, 1, 7, &tw[1]));
    if (norm_mode) ref_rmsnorm(M, K, x, gain, 1e-5f, xn);
    else memcpy(xn, x, M * K * sizeof *xn);
    float *init[3], *want[3];
    const float *wsrc[3] = {w01, w01 + K, w2};
    for (int i = 0; i < 3; i++) {
        init[i] = tu_random(M * Ns[i], 70 + (uint64_t)i, -1, 1);
        want[i] = malloc((size_t)M * Ns[i] * sizeof *want[i]);
        memcpy(want[i], init[i], (size_t)M * Ns[i] * sizeof *want[i]);
        ty[i] = tu_tensor(3, ((int64_t[]){M, 1, Ns[i]}), init[i]);
    }
    const tensor *W[3] = {&tw[0], &tw[1], &tw[2]};
    tensor *Y[3] = {&ty[0], &ty[1], &ty[2]};
    int acc[3] = {0, 1, 0};
    ops_gemv_norm norm = {&tg, 1e-5f, &tout, norm_mode >= 2, norm_mode == 3 ? &tout2 : NULL};
    attamba_counters c0, c1;
    attamba_context_counters(ctx, &c0);
    tu_ok(ops_gemm_group(ctx, &tx, norm_mode ? &norm : NULL, 3, W, Y, acc));
    attamba_context_counters(ctx, &c1);
    int grouped = M < ops_dot_max_rows(ctx);
    if (grouped) ck_assert_uint_eq(c1.launches - c0.launches, 1);
    for (int i = 0; i < 3; i++) {
        ref_gemm(0, 1, M, Ns[i], K, 1.0f, xn, K, wsrc[i], K, acc[i] ? 1.0f : 0.0f, want[i], Ns[i]);
        float *got = tu_download(&ty[i]);
        tu_assert_close(got, want[i], M * Ns[i], 1e-4, 2e-6 * K + 1e-6, "grouped projection");
        free(got), free(init[i]), free(want[i]);
        tensor_free(&ty[i]);
    }
    if (norm_mode >= 2 || (norm_mode && !grouped)) {
        float *got = tu_download(&tout);
        tu_assert_close(got, xn, M * K, 1e-5, 1e-6, "the normalised input");
        free(got);
    }
    float *got2 = tu_download(&tout2), *zero = calloc((size_t)M * K, sizeof *zero);
    tu_assert_close(got2, norm_mode == 3 ? xn : zero, M * K, 1e-5, 1e-6, "the normalised input's second copy");
    free(got2), free(zero);
    if (norm_mode) { /* bad input: a gain of the wrong width, an out overlapping x */
        tensor g2 = tu_zeros(1, ((int64_t[]){K + 1}));
        ops_gemv_norm bad = {&g2, 1e-5f, &tout, 0, NULL};
        ck_assert_int_eq(ops_gemm_group(ctx, &tx, &bad, 3, W, Y, acc), ATTAMBA_ERR_SHAPE);
        bad = (ops_gemv_norm){&tg, 1e-5f, &tx, 0, NULL};
        ck_assert_int_eq(ops_gemm_group(ctx, &tx, &bad, 3, W, Y, acc), ATTAMBA_ERR_INVALID_ARG);
        bad = (ops_gemv_norm){&tg, 1e-5f, &tout, 1, &tout}; /* the second copy over the first */
        ck_assert_int_eq(ops_gemm_group(ctx, &tx, &bad, 3, W, Y, acc), ATTAMBA_ERR_INVALID_ARG);
        tensor_free(&g2);
    }
    tensor *all[] = {&tx, &tw01, &tw2, &tw[0], &tw[1], &tg, &tout, &tout2};
    for (size_t i = 0; i < CORE_LEN(all); i++) tensor_free(all[i]);
    free(x), free(w01), free(w2), free(gain), free(xn);
}

START_TEST(grouped_projections_match_reference) {
    const int rows[] = {1, 2, 3, 9};
    for (int r = 0; r < 4; r++)
        for (int norm = 0; norm < 4; norm++) check_group(rows[r], norm);
}
END_TEST

/* The decode FFN's gate and up products and their SwiGLU (ops_gemm_swiglu) against src/ref: N = 45, with
 * and without the RMS norm first, on 1-3 rows (one launch) and 9 (the group into f1, f3, then the SwiGLU),
 * weights stored as t (K = 37 for f32 / f16, 64 for q8 blocks). */
static void check_swiglu(int M, int with_norm, tensor_dtype t) {
    rt_ctx *ctx = tu_ctx();
    const int K = t == TENSOR_Q8 ? 64 : 37, N = 45;
    float *x = tu_random(M * K, 80 + (uint64_t)M, -1, 1), *gain = tu_random(K, 83, 0.5, 1.5), *w1, *w3;
    float *xn = malloc(M * K * sizeof *xn), *g = malloc(M * N * sizeof *g), *u = malloc(M * N * sizeof *u);
    float *want = malloc(M * N * sizeof *want);
    tensor t1 = tu_weight(t, N, K, 81, &w1), t3 = tu_weight(t, N, K, 82, &w3);
    tensor tx = tu_tensor(2, ((int64_t[]){M, K}), x), tg = tu_tensor(1, ((int64_t[]){K}), gain);
    tensor tout = tu_zeros(2, ((int64_t[]){M, K})), f1 = tu_zeros(2, ((int64_t[]){M, N}));
    tensor f3 = tu_zeros(2, ((int64_t[]){M, N})), hid = tu_zeros(2, ((int64_t[]){M, N}));
    if (with_norm) ref_rmsnorm(M, K, x, gain, 1e-5f, xn);
    else memcpy(xn, x, M * K * sizeof *xn);
    ref_gemm(0, 1, M, N, K, 1.0f, xn, K, w1, K, 0.0f, g, N);
    ref_gemm(0, 1, M, N, K, 1.0f, xn, K, w3, K, 0.0f, u, N);
    ref_swiglu((int64_t)M * N, g, u, want);
    ops_gemv_norm norm = {&tg, 1e-5f, &tout, 0, NULL};
    attamba_counters c0, c1;
    attamba_context_counters(ctx, &c0);
    tu_ok(ops_gemm_swiglu(ctx, &tx, with_norm ? &norm : NULL, &t1, &t3, &f1, &f3, &hid));
    attamba_context_counters(ctx, &c1);
    if (M < ops_dot_max_rows(ctx)) ck_assert_uint_eq(c1.launches - c0.launches, 1);
    float *got = tu_download(&hid);
    char what[64];
    snprintf(what, sizeof what, "fused swiglu, %s weights, %d rows", tensor_dtype_name(t), M);
    tu_assert_close(got, want, M * N, 1e-4, 2e-6 * K + 1e-6, what);
    tensor *all[] = {&tx, &tg, &t1, &t3, &tout, &f1, &f3, &hid};
    for (size_t i = 0; i < CORE_LEN(all); i++) tensor_free(all[i]);
    free(x), free(w1), free(w3), free(gain), free(xn), free(g), free(u), free(want), free(got);
}

START_TEST(fused_swiglu_matches_reference) {
    const int rows[] = {1, 2, 3, 9};
    const tensor_dtype types[] = {TENSOR_F32, TENSOR_F16, TENSOR_Q8};
    for (int r = 0; r < 4; r++)
        for (int norm = 0; norm < 2; norm++)
            for (int t = 0; t < 3; t++) check_swiglu(rows[r], norm, types[t]);
}
END_TEST

/* ops_gemm_panels: B [3, 40, 24] (op(B) = B^T per batch entry) or [3, 24, 40] packed once, then
 * products with its first n columns: all entries batched, and entry 1 shared by a batch of 2 (the
 * grouped heads of attention), against ref_gemm; packed on the own tiles and unpacked (CLBlast, or a
 * small plain B that the tiles read in place). */
static void check_panels(int tb, int M, int want_packed /* -1: either */) {
    rt_ctx *ctx = tu_ctx();
    const int NB = 3, N = 40, K = 24, ns[] = {1, 17, 40};
    float *b = tu_random((int64_t)NB * N * K, 91 + tb, -1, 1), *a = tu_random((int64_t)NB * M * K, 92, -1, 1);
    tensor Bt = tu_tensor(3, tb ? (int64_t[]){NB, N, K} : (int64_t[]){NB, K, N}, b);
    ops_gemm_panels p;
    tu_ok(ops_gemm_panels_make(ctx, tb, &Bt, M, &p));
    if (want_packed >= 0) ck_assert_int_eq(p.packed, want_packed);
    for (int i = 0; i < 3; i++)
        for (int entry = -1; entry <= 1; entry += 2) {
            int n = ns[i], batch = entry < 0 ? NB : 2;
            tensor A = tu_tensor(3, (int64_t[]){batch, M, K}, a), C = tu_zeros(3, (int64_t[]){batch, M, n});
            tu_ok(ops_gemm_panels_apply(ctx, 0.5f, &A, &p, entry, n, 0.0f, &C));
            float *got = tu_download(&C), *want = malloc((size_t)M * n * sizeof *want);
            for (int e = 0; e < batch; e++) {
                const float *be = b + (int64_t)(entry < 0 ? e : entry) * N * K;
                ref_gemm(0, tb, M, n, K, 0.5f, a + (int64_t)e * M * K, K, be, tb ? K : N, 0.0f, want, n);
                char what[96];
                snprintf(what, sizeof what, "panels tb %d packed %d n %d entry %d batch %d", tb, p.packed, n, entry, e);
                tu_assert_close(got + (int64_t)e * M * n, want, (int64_t)M * n, 1e-4, 1e-5, what);
            }
            free(got);
            free(want);
            tensor_free(&A);
            tensor_free(&C);
        }
    tensor A = tu_zeros(2, (int64_t[]){M, K}), C = tu_zeros(2, (int64_t[]){M, N + 1});
    ck_assert_int_eq(ops_gemm_panels_apply(ctx, 1.0f, &A, &p, 0, N + 1, 0.0f, &C), ATTAMBA_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(ctx->err, "columns 41 of 40"));
    tensor_free(&A);
    tensor_free(&C);
    ops_gemm_panels_free(&p);
    tensor_free(&Bt);
    free(a);
    free(b);
}

START_TEST(panels_packed_once_serve_every_product) {
    rt_ctx *ctx = tu_ctx();
    int kept = ops_tune(ctx, TUNE_GEMM_BACKEND);
    tu_ok(ops_tune_set(ctx, TUNE_GEMM_BACKEND, 0, "test"));
    /* M = 70: the register tiles pack; __local tiles (GPU rows) do not, where the device runs them */
    int tiles = ops_tune(ctx, TUNE_GEMM_KERNEL) == 0;
    check_panels(1, 70, tiles ? 1 : -1);
    check_panels(1, 9, 0); /* few rows: the dot kernel */
    /* a small plain B (24 x 40 floats): read in place where the table's gemm.inplace_b_kib covers it (0 on
     * 8-lane CPUs, which pack it at M > 64) */
    check_panels(0, 70, tiles ? ops_tune(ctx, TUNE_GEMM_INPLACE_B_KIB) * 1024 <= 24 * 40 * 4 : -1);
    if (ops_gemm_have_clblast()) {
        tu_ok(ops_tune_set(ctx, TUNE_GEMM_BACKEND, 1, "test"));
        check_panels(1, 70, 0);
    }
    tu_ok(ops_tune_set(ctx, TUNE_GEMM_BACKEND, kept, "test"));
}
END_TEST

START_TEST(mismatched_shapes_are_refused) {
    rt_ctx *ctx = tu_ctx();
    tensor A = tu_zeros(2, (int64_t[]){4, 5}), B = tu_zeros(2, (int64_t[]){6, 7}), C = tu_zeros(2, (int64_t[]){4, 7}), T;
    ck_assert_int_eq(ops_gemm(ctx, 0, 0, 1, &A, &B, 0, &C), ATTAMBA_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(ctx->err, "op(A) is 4x5"));
    tu_ok(tensor_transpose(&B, 0, 1, &T));
    ck_assert_int_eq(ops_gemm(ctx, 0, 0, 1, &A, &T, 0, &C), ATTAMBA_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(ctx->err, "trans flags"));
    tensor B3 = tu_zeros(3, (int64_t[]){2, 5, 7});
    ck_assert_int_eq(ops_gemm(ctx, 0, 0, 1, &A, &B3, 0, &C), ATTAMBA_ERR_SHAPE);
    tensor C3 = tu_zeros(3, (int64_t[]){3, 4, 7});
    ck_assert_int_eq(ops_gemm(ctx, 0, 0, 1, &A, &B3, 0, &C3), ATTAMBA_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(ctx->err, "batch 2"));
    tensor_free(&A);
    tensor_free(&B);
    tensor_free(&C);
    tensor_free(&T);
    tensor_free(&B3);
    tensor_free(&C3);
}
END_TEST

int main(void) {
    Suite *s = suite_create("gemm");
    TCase *t = tcase_create("gemm");
    tcase_set_timeout(t, 600);
    tcase_add_loop_test(t, own_kernel_matches_reference, 0, N_SHAPES);
    tcase_add_loop_test(t, clblast_matches_reference, 0, N_SHAPES);
    tcase_add_loop_test(t, each_own_kernel_matches_reference_at_tile_edges, 0,
                        N_KERNELS * (N_SHAPES + N_TILE_SHAPES));
    tcase_add_test(t, each_own_kernel_applies_alpha_and_beta_on_full_and_partial_tiles);
    tcase_add_test(t, alpha_and_beta_accumulate);
    tcase_add_test(t, batched_and_shared_operands);
    tcase_add_test(t, passes_over_k_accumulate);
    tcase_add_test(t, plain_b_in_place_and_packed);
    tcase_add_test(t, strided_row_views);
    tcase_add_test(t, strided_output_view_is_written_only_inside);
    tcase_add_test(t, grouped_projections_match_reference);
    tcase_add_test(t, fused_swiglu_matches_reference);
    tcase_add_test(t, panels_packed_once_serve_every_product);
    tcase_add_test(t, mismatched_shapes_are_refused);
    suite_add_tcase(s, t);
    return tu_run(s);
}
