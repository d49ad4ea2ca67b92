/* Low-precision weights (f16, q8 blocks): the host conversions against exact values, every GEMM
 * kernel and the grouped decode projections reading them against ref_gemm on the dequantised
 * matrix, the safetensors round trip, and whole models: an f16 / q8 model computes what the f32
 * model of its rounded values does, decode agrees with prefill, training and saving are refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "model/safetensors.h"
#include "model/weights.h"
#include "tensor/quant.h"
#include "testutil.h"
#include "train/train.h"

static float f16_round_trip(float x) { return quant_f32_from_f16(quant_f16_from_f32(x)); }

START_TEST(f16_conversion_is_exact_and_rounds_to_nearest_even) {
    ck_assert_uint_eq(quant_f16_from_f32(1.0f), 0x3c00);
    ck_assert_uint_eq(quant_f16_from_f32(-2.0f), 0xc000);
    ck_assert_uint_eq(quant_f16_from_f32(65504.0f), 0x7bff);       /* the largest half */
    ck_assert_uint_eq(quant_f16_from_f32(65520.0f), 0x7c00);       /* half-way past it: infinity */
    ck_assert_uint_eq(quant_f16_from_f32(ldexpf(1, -24)), 0x0001); /* the smallest subnormal */
    ck_assert_uint_eq(quant_f16_from_f32(ldexpf(1, -25)), 0x0000); /* half of it: ties to even, zero */
    ck_assert_uint_eq(quant_f16_from_f32(ldexpf(3, -25)), 0x0002); /* 1.5 ulp: to even, 2 */
    ck_assert_uint_eq(quant_f16_from_f32(1.0f + ldexpf(1, -11)), 0x3c00); /* tie below: even */
    ck_assert_uint_eq(quant_f16_from_f32(1.0f + ldexpf(3, -11)), 0x3c02); /* tie above: even */
    ck_assert(isnan(f16_round_trip(NAN)));
    ck_assert(isinf(f16_round_trip(INFINITY)));
    for (uint32_t h = 0; h < 0x10000; h++) { /* every half that is a number survives f32 and back */
        float x = quant_f32_from_f16((uint16_t)h);
        if (!isnan(x)) ck_assert_uint_eq(quant_f16_from_f32(x), h);
    }
}
END_TEST

START_TEST(q8_blocks_keep_each_value_within_half_a_step) {
    enum { N = 4 * TENSOR_Q8_BLOCK };
    float *x = tu_random(N, 5, -3, 3), back[N];
    for (int i = 0; i < TENSOR_Q8_BLOCK; i++) x[TENSOR_Q8_BLOCK + i] = 0.0f; /* an all-zero block */
    x[2 * TENSOR_Q8_BLOCK + 7] = -9.0f;                                     /* a block's extreme, negative */
    unsigned char q[4 * TENSOR_Q8_BYTES];
    ck_assert_uint_eq(quant_bytes(TENSOR_Q8, N), sizeof q);
    quant_encode(TENSOR_Q8, x, N, q);
    quant_decode(TENSOR_Q8, q, N, back);
    for (int b = 0; b < 4; b++) {
        float d, amax = 0;
        memcpy(&d, q + b * TENSOR_Q8_BYTES, 4);
        for (int i = 0; i < TENSOR_Q8_BLOCK; i++) amax = fmaxf(amax, fabsf(x[b * TENSOR_Q8_BLOCK + i]));
        ck_assert_float_eq(d, amax / 127.0f);
        for (int i = 0; i < TENSOR_Q8_BLOCK; i++) {
            int k = b * TENSOR_Q8_BLOCK + i;
            ck_assert_msg(fabsf(back[k] - x[k]) <= 0.5f * d * (1 + 1e-6f), "value %d: %g -> %g (d %g)", k, x[k],
                          back[k], d);
        }
    }
    ck_assert_float_eq(back[2 * TENSOR_Q8_BLOCK + 7], -9.0f); /* -127 d exactly */
    for (int i = 0; i < TENSOR_Q8_BLOCK; i++) ck_assert_float_eq(back[TENSOR_Q8_BLOCK + i], 0.0f);
    free(x);
}
END_TEST

static const ops_gemm_kernel kernels[] = {OPS_GEMM_KERNEL_AUTO, OPS_GEMM_KERNEL_SIMPLE, OPS_GEMM_KERNEL_TILES,
                                          OPS_GEMM_KERNEL_LOCAL, OPS_GEMM_KERNEL_DOT};
/* M x N x K: one row (decode), a few, one past a register tile, more than a tile of rows; K a
 * multiple of 32 (q8 blocks) with and without a multiple of 16 left for the vector loops */
static const int shapes[][3] = {{1, 5, 32}, {3, 33, 96}, {9, 17, 64}, {70, 40, 160}, {1, 100, 256}};

/* C = alpha x W^T + beta C with W stored as t, each own kernel, against ref_gemm on W's values. */
static void check_lowp_gemm(tensor_dtype t, int kernel, int M, int N, int K) {
    rt_ctx *ctx = tu_ctx();
    uint64_t seed = (uint64_t)(M * 7 + N * 3 + K + kernel);
    float *wv, *x = tu_random((int64_t)M * K, seed, -1, 1), *c = tu_random((int64_t)M * N, seed + 1, -1, 1);
    float *want = malloc((size_t)M * N * sizeof *want);
    memcpy(want, c, (size_t)M * N * sizeof *want);
    tensor W = tu_weight(t, N, K, seed + 2, &wv), X = tu_tensor(2, (int64_t[]){M, K}, x);
    tensor C = tu_tensor(2, (int64_t[]){M, N}, c);
    tu_ok(ops_gemm_own(ctx, kernels[kernel], 0, 1, 0.5f, &X, &W, 2.0f, &C));
    ref_gemm(0, 1, M, N, K, 0.5f, x, K, wv, K, 2.0f, want, N);
    float *got = tu_download(&C);
    char what[96];
    snprintf(what, sizeof what, "%s gemm (kernel %d) %dx%dx%d", tensor_dtype_name(t), kernel, M, N, K);
    tu_assert_close(got, want, (int64_t)M * N, 1e-4, 2e-6 * K + 1e-6, what);
    free(got), free(x), free(c), free(want), free(wv);
    tensor_free(&W), tensor_free(&X), tensor_free(&C);
}

START_TEST(every_gemm_kernel_reads_f16_and_q8_weights) {
    int n_shapes = (int)CORE_LEN(shapes), kernel = _i % (int)CORE_LEN(kernels), shape = _i / (int)CORE_LEN(kernels);
    ck_assert_int_lt(shape, n_shapes);
    check_lowp_gemm(TENSOR_F16, kernel, shapes[shape][0], shapes[shape][1], shapes[shape][2]);
    check_lowp_gemm(TENSOR_Q8, kernel, shapes[shape][0], shapes[shape][1], shapes[shape][2]);
}
END_TEST

/* f16 takes any K (the vector loops' scalar tails); both take a batched pair of weights of one
 * buffer (the K and V projections as one launch) with its batch stride in elements (q8: blocks). */
START_TEST(f16_odd_widths_and_batched_weight_pairs) {
    rt_ctx *ctx = tu_ctx();
    for (int k = 0; k < (int)CORE_LEN(kernels); k++) {
        check_lowp_gemm(TENSOR_F16, k, 3, 7, 37);
        check_lowp_gemm(TENSOR_F16, k, 1, 7, 37); /* one row (decode): the dot kernels' 16-wide tails */
        check_lowp_gemm(TENSOR_F16, k, 1, 5, 80);
    }
    const tensor_dtype types[2] = {TENSOR_F16, TENSOR_Q8};
    for (int ti = 0; ti < 2; ti++) {
        const int M = 10, N = 24, K = 64;
        float *wv, *x = tu_random(2 * M * K, 90, -1, 1), *want = calloc(2 * M * N, sizeof *want);
        tensor Wb = tu_weight(types[ti], 2 * N, K, 91, &wv), W3;
        tensor X = tu_tensor(3, (int64_t[]){2, M, K}, x), C = tu_zeros(3, (int64_t[]){2, M, N});
        tu_ok(tensor_reshape(&Wb, 3, (int64_t[]){2, N, Wb.shape[1]}, &W3));
        for (int m = 1; m >= 0; m--) { /* M = 10 rows: tiles; then with one row each: dot products */
            int rows = m ? M : 1;
            tensor Xs, Cs;
            tu_ok(tensor_slice(&X, 1, 0, rows, &Xs));
            tu_ok(tensor_slice(&C, 1, 0, rows, &Cs));
            tu_ok(ops_gemm(ctx, 0, 1, 1.0f, &Xs, &W3, 0.0f, &Cs));
            for (int b = 0; b < 2; b++)
                ref_gemm(0, 1, M, N, K, 1.0f, x + b * M * K, K, wv + b * N * K, K, 0.0f, want + b * M * N, N);
            float *got = tu_download(&C);
            for (int b = 0; b < 2; b++)
                tu_assert_close(got + b * M * N, want + b * M * N, (int64_t)rows * N, 1e-4, 2e-6 * K + 1e-6,
                                "batched low-precision pair");
            free(got);
            tensor_free(&Xs), tensor_free(&Cs);
        }
        free(wv), free(x), free(want);
        tensor_free(&Wb), tensor_free(&W3), tensor_free(&X), tensor_free(&C);
    }
}
END_TEST

/* Decode's grouped projections: row blocks of one q8 / f16 matrix and another matrix in one launch;
 * members of different types (an f32 one among them) fall back to one GEMM each. */
START_TEST(grouped_projections_read_low_precision_members) {
    rt_ctx *ctx = tu_ctx();
    const int M = 3, K = 96, Ns[3] = {5, 27, 33};
    for (int ti = 0; ti < 3; ti++) {
        tensor_dtype t = ti == 1 ? TENSOR_Q8 : TENSOR_F16;
        int mixed = ti == 2;
        float *w01, *w2, *x = tu_random(M * K, 80, -1, 1);
        tensor tw01 = tu_weight(t, 32, K, 81, &w01), tw2;
        if (mixed) {
            w2 = tu_random(33 * K, 82, -1, 1);
            tw2 = tu_tensor(2, (int64_t[]){33, K}, w2);
        } else {
            tw2 = tu_weight(t, 33, K, 82, &w2);
        }
        tensor tx = tu_tensor(2, (int64_t[]){M, K}, x), tw[2], ty[3];
        tu_ok(tensor_slice(&tw01, 0, 0, 5, &tw[0]));
        tu_ok(tensor_slice(&tw01, 0, 5, 27, &tw[1]));
        for (int i = 0; i < 3; i++) ty[i] = tu_zeros(2, (int64_t[]){M, Ns[i]});
        const tensor *W[3] = {&tw[0], &tw[1], &tw2};
        tensor *Y[3] = {&ty[0], &ty[1], &ty[2]};
        attamba_counters c0, c1;
        attamba_context_counters(ctx, &c0);
        tu_ok(ops_gemm_group(ctx, &tx, NULL, 3, W, Y, NULL));
        attamba_context_counters(ctx, &c1);
        if (!mixed) ck_assert_uint_eq(c1.launches - c0.launches, 1);
        const float *wsrc[3] = {w01, w01 + 5 * K, w2};
        for (int i = 0; i < 3; i++) {
            float *want = calloc((size_t)M * Ns[i], sizeof *want), *got = tu_download(&ty[i]);
            ref_gemm(0, 1, M, Ns[i], K, 1.0f, x, K, wsrc[i], K, 0.0f, want, Ns[i]);
            tu_assert_close(got, want, M * Ns[i], 1e-4, 2e-6 * K + 1e-6, "grouped low-precision projection");
            free(want), free(got);
            tensor_free(&ty[i]);
        }
        free(w01), free(w2), free(x);
        tensor_free(&tw01), tensor_free(&tw2), tensor_free(&tx), tensor_free(&tw[0]), tensor_free(&tw[1]);
    }
}
END_TEST

START_TEST(low_precision_operands_are_refused_where_unsupported) {
    rt_ctx *ctx = tu_ctx();
    float *wv;
    tensor W = tu_weight(TENSOR_Q8, 8, 32, 3, &wv), X = tu_zeros(2, (int64_t[]){4, 32});
    tensor C = tu_zeros(2, (int64_t[]){4, 8});
    tensor Xt = tu_zeros(2, (int64_t[]){4, 8}), Ct = tu_zeros(2, (int64_t[]){4, 32});
    ck_assert_int_eq(ops_gemm(ctx, 0, 0, 1, &Xt, &W, 0, &Ct), ATTAMBA_ERR_SHAPE); /* not read as W^T */
    ck_assert_ptr_nonnull(strstr(ctx->err, "transposed"));
    ck_assert_int_eq(ops_gemm(ctx, 0, 1, 1, &W, &X, 0, &Ct), ATTAMBA_ERR_SHAPE); /* as A */
    if (ops_gemm_have_clblast()) {
        ck_assert_int_eq(ops_gemm_with(ctx, OPS_GEMM_CLBLAST, 0, 1, 1, &X, &W, 0, &C), ATTAMBA_ERR_UNSUPPORTED);
        ck_assert_ptr_nonnull(strstr(ctx->err, "CLBlast"));
    }
    tu_ok(ops_gemm(ctx, 0, 1, 1, &X, &W, 0, &C)); /* the automatic choice takes the own kernel */
    free(wv);
    tensor_free(&W), tensor_free(&X), tensor_free(&C), tensor_free(&Xt), tensor_free(&Ct);
}
END_TEST

static int64_t list_numel(const weight_info *list, int n) {
    return list[n - 1].offset + weight_numel(&list[n - 1]);
}

/* The tiny preset with weight type t; its f32 twin holds the values t rounds them to. */
static void typed_config(weight_type t, model_config *c) {
    tu_ok(model_config_preset("tiny", c, NULL, 0));
    c->weights = t;
}

/* Seeded host weights of c, rounded as c stores them (the values an f32 model must hold to match). */
static float *rounded_host(const model_config *c, uint64_t seed, int64_t *numel) {
    weight_info *list;
    int n;
    tu_ok(weights_list(c, &list, &n));
    *numel = list_numel(list, n);
    float *host = malloc((size_t)*numel * sizeof *host);
    weights_init_host(c, list, n, seed, host);
    for (int i = 0; i < n; i++) {
        if (list[i].dtype == TENSOR_F32) continue;
        int64_t k = weight_numel(&list[i]);
        void *q = malloc(quant_bytes(list[i].dtype, k));
        quant_encode(list[i].dtype, host + list[i].offset, k, q);
        quant_decode(list[i].dtype, q, k, host + list[i].offset);
        free(q);
    }
    free(list);
    return host;
}

/* An f16 / q8 model and the f32 model of its rounded values give the same logits (prefill: the
 * weights become f32 panels, so the same sums); decode (dot products over the stored weights)
 * matches its own prefill; training and saving it are refused with a message. */
START_TEST(low_precision_model_matches_the_f32_model_of_its_values) {
    rt_ctx *ctx = tu_ctx();
    weight_type t = _i ? WEIGHTS_Q8 : WEIGHTS_F16;
    model_config cq, cf;
    typed_config(t, &cq);
    typed_config(WEIGHTS_F32, &cf);
    int64_t numel;
    float *host = rounded_host(&cq, 11, &numel);
    model *mq = NULL, *mf = NULL;
    tu_ok(model_create(ctx, &cq, &mq));
    tu_ok(model_create(ctx, &cf, &mf));
    ck_assert_ptr_nonnull(mq->w.lowp.buf);
    ck_assert_int_eq(mq->w.held, numel);
    ck_assert_int_lt(tensor_numel(&mq->w.flat), numel); /* the f32 buffer holds only the f32 weights */
    tu_ok(weights_upload_host(&mq->w, host));
    tu_ok(weights_upload_host(&mf->w, host));
    const int B = 2, T = 19;
    int32_t tok[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (i * 37 + 5) % cq.vocab_size;
    tensor lq, lf;
    tu_ok(model_forward(mq, tok, B, T, &lq));
    tu_ok(model_forward(mf, tok, B, T, &lf));
    float *gq = tu_download(&lq), *gf = tu_download(&lf);
    tu_assert_close(gq, gf, tensor_numel(&lf), 1e-5, 1e-5, "low-precision model vs the f32 model of its values");
    free(gq), free(gf);
    tensor_free(&lq), tensor_free(&lf);
    tu_check_decode_matches_prefill(mq, 24, 5, t == WEIGHTS_Q8 ? "q8 decode" : "f16 decode");

    train_hparams h;
    train_hparams_default(&h, 10);
    trainer *tr = NULL;
    ck_assert_int_eq(trainer_create(mq, &h, &tr), ATTAMBA_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(ctx->err, "quantize"));
    char *dir = tu_temp_dir();
    ck_assert_int_eq(model_save(mq, dir), ATTAMBA_ERR_UNSUPPORTED);
    free(dir);
    free(host);
    model_destroy(mq);
    model_destroy(mf);
}
END_TEST

/* weights_save_host writes F16, or I8 values with F32 '.scales'; weights_read_host gives back the
 * rounded values exactly, and refuses an I8 weight without its scales. */
START_TEST(quantized_safetensors_round_trip) {
    weight_type t = _i ? WEIGHTS_Q8 : WEIGHTS_F16;
    model_config c;
    typed_config(t, &c);
    weight_info *list;
    int n;
    tu_ok(weights_list(&c, &list, &n));
    int64_t numel = list_numel(list, n);
    float *host = malloc((size_t)numel * sizeof *host), *back = NULL;
    weights_init_host(&c, list, n, 4, host);
    int64_t rn;
    float *rounded = rounded_host(&c, 4, &rn);
    char *dir = tu_temp_dir(), path[512], err[300];
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    tu_ok(weights_save_host(list, n, host, path, err, sizeof err));
    ck_assert_int_eq(weights_read_host(&c, path, &back, err, sizeof err), ATTAMBA_OK);
    ck_assert_int_eq(memcmp(back, rounded, (size_t)numel * sizeof *back), 0);
    st_file f;
    tu_ok(st_open(path, &f, err, sizeof err));
    const st_tensor *wq = st_find(&f, "layers.0.attention.wq.weight");
    ck_assert_ptr_nonnull(wq);
    ck_assert_int_eq(wq->dtype, t == WEIGHTS_Q8 ? ST_I8 : ST_F16);
    ck_assert_int_eq(st_find(&f, "layers.0.attention.wq.weight.scales") != NULL, t == WEIGHTS_Q8);
    ck_assert_int_eq(st_find(&f, "tok_embeddings.weight")->dtype, ST_F32);
    st_close(&f);
    if (t == WEIGHTS_Q8) { /* an I8 weight without its scales: a clear error */
        st_entry *e = calloc((size_t)n, sizeof *e);
        signed char *zeros = calloc((size_t)numel, 1);
        for (int i = 0; i < n; i++) {
            int q = !strcmp(list[i].name, "layers.0.attention.wq.weight");
            e[i] = (st_entry){list[i].name, list[i].ndim, list[i].shape, q ? (const void *)zeros : host + list[i].offset,
                              q ? ST_I8 : ST_F32};
        }
        tu_ok(st_write(path, e, n, NULL, err, sizeof err));
        free(back);
        back = NULL;
        ck_assert_int_eq(weights_read_host(&c, path, &back, err, sizeof err), ATTAMBA_ERR_FORMAT);
        ck_assert_msg(strstr(err, "wq.weight.scales") != NULL, "%s", err);
        ck_assert_ptr_null(back);
        free(e), free(zeros);
    }
    free(back), free(host), free(rounded), free(list), free(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("quant");
    TCase *t = tcase_create("quant");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, f16_conversion_is_exact_and_rounds_to_nearest_even);
    tcase_add_test(t, q8_blocks_keep_each_value_within_half_a_step);
    tcase_add_loop_test(t, every_gemm_kernel_reads_f16_and_q8_weights, 0, (int)(CORE_LEN(shapes) * CORE_LEN(kernels)));
    tcase_add_test(t, f16_odd_widths_and_batched_weight_pairs);
    tcase_add_test(t, grouped_projections_read_low_precision_members);
    tcase_add_test(t, low_precision_operands_are_refused_where_unsupported);
    tcase_add_loop_test(t, low_precision_model_matches_the_f32_model_of_its_values, 0, 2);
    tcase_add_loop_test(t, quantized_safetensors_round_trip, 0, 2);
    suite_add_tcase(s, t);
    return tu_run(s);
}
