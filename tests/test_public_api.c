/* The public API alone (include/attamba/attamba.h), as a program linking libattamba would use it:
 * load a golden model, compare its logits with PyTorch's, decode with a session and compare with
 * the forward pass, and get clear errors for bad input. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attamba/attamba.h"

static attamba_context *open_ctx(void) {
    attamba_context *ctx;
    char err[300];
    ck_assert_msg(attamba_context_create(NULL, &ctx, err, sizeof err) == ATTAMBA_OK, "%s", err);
    return ctx;
}

START_TEST(session_decoding_matches_the_forward_pass) {
    attamba_context *ctx = open_ctx();
    attamba_model *m;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/attamba_cyclic", GOLDEN_DIR);
    ck_assert_msg(attamba_model_load(ctx, dir, &m) == ATTAMBA_OK, "%s", attamba_context_last_error(ctx));
    int V = attamba_model_vocab_size(m), T = 15;
    int32_t tok[15];
    for (int t = 0; t < T; t++) tok[t] = (t * 13 + 2) % V;
    float *full = malloc((size_t)T * V * sizeof *full), *step = malloc((size_t)V * sizeof *step);
    ck_assert_int_eq(attamba_model_forward(m, tok, 1, T, full), ATTAMBA_OK);
    attamba_session *s;
    ck_assert_int_eq(attamba_session_create(m, 64, &s), ATTAMBA_OK);
    ck_assert_int_eq(attamba_session_feed(s, tok, 6, step), ATTAMBA_OK); /* prefill */
    for (int v = 0; v < V; v++) ck_assert_msg(fabsf(step[v] - full[5 * V + v]) < 1e-4f, "prefill logit %d", v);
    for (int t = 6; t < T; t++) {
        ck_assert_int_eq(attamba_session_feed(s, &tok[t], 1, step), ATTAMBA_OK);
        for (int v = 0; v < V; v++)
            ck_assert_msg(fabsf(step[v] - full[(size_t)t * V + v]) < 1e-4f, "position %d logit %d", t, v);
    }
    ck_assert_int_eq(attamba_session_position(s), T);
    ck_assert_int_gt(attamba_session_cache_bytes(s), 0);
    ck_assert_int_eq(attamba_model_set_attention(m, 2, 1, "uniform"), ATTAMBA_OK);
    ck_assert_int_eq(attamba_model_set_attention(m, -1, -1, "nonsense"), ATTAMBA_ERR_INVALID_ARG);
    int32_t bad = V;
    ck_assert_int_eq(attamba_model_forward(m, &bad, 1, 1, full), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(attamba_context_last_error(ctx), "outside"));
    attamba_session_destroy(s);
    attamba_model_destroy(m);
    free(full);
    free(step);
    ck_assert_int_eq(attamba_model_load(ctx, "/nonexistent", &m), ATTAMBA_ERR_IO);
    ck_assert_ptr_nonnull(strstr(attamba_context_last_error(ctx), "/nonexistent"));
    uint64_t cur;
    attamba_context_memory(ctx, &cur, NULL);
    ck_assert_uint_eq(cur, 0);
    attamba_context_destroy(ctx);
}
END_TEST

START_TEST(status_strings_and_version) {
    ck_assert_str_eq(attamba_status_str(ATTAMBA_OK), "ok");
    ck_assert_str_eq(attamba_status_str(ATTAMBA_ERR_OUT_OF_MEMORY), "out of memory");
    ck_assert_str_eq(attamba_status_str((attamba_status)999), "unknown status");
    ck_assert_str_eq(attamba_version(), "0.1.0");
    ck_assert_str_eq(attamba_device_type_name(ATTAMBA_DEVICE_GPU), "gpu");
    ck_assert_str_eq(attamba_device_type_name(ATTAMBA_DEVICE_ACCELERATOR), "accelerator");
    ck_assert_str_eq(attamba_device_type_name((attamba_device_type)0), "other");
}
END_TEST

int main(void) {
    Suite *s = suite_create("public_api");
    TCase *t = tcase_create("api");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, session_decoding_matches_the_forward_pass);
    tcase_add_test(t, status_strings_and_version);
    suite_add_tcase(s, t);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
