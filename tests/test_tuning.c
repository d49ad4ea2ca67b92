/* The tuning table (src/ops/tuning.c): device classes, class rows, environment overrides, values set
 * at run time, and the rule that no other file of the op, model or training layers decides by device
 * type. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "ops/layer.h"
#include "ops/tuning.h"
#include "ref/ref_layer.h"
#include "testutil.h"

START_TEST(device_classes_by_type_and_vendor) {
    static const struct {
        attamba_device_type type;
        const char *vendor;
        tune_class want;
    } cases[] = {
        {ATTAMBA_DEVICE_CPU, "AuthenticAMD", TUNE_CPU},
        {ATTAMBA_DEVICE_GPU, "NVIDIA Corporation", TUNE_NVIDIA},
        {ATTAMBA_DEVICE_GPU, "Advanced Micro Devices, Inc.", TUNE_AMD},
        {ATTAMBA_DEVICE_GPU, "AMD", TUNE_AMD},
        {ATTAMBA_DEVICE_GPU, "Intel(R) Corporation", TUNE_INTEL_GPU},
        {ATTAMBA_DEVICE_GPU, "Mesa", TUNE_GPU},
        {ATTAMBA_DEVICE_ACCELERATOR, "Intel(R) Corporation", TUNE_ACCELERATOR},
        {ATTAMBA_DEVICE_OTHER, "x", TUNE_OTHER},
    };
    for (size_t i = 0; i < CORE_LEN(cases); i++) {
        rt_device d = tu_fake_device(0, 0, cases[i].type);
        snprintf(d.info.vendor, sizeof d.info.vendor, "%s", cases[i].vendor);
        ck_assert_msg(ops_tune_class(&d.info) == cases[i].want, "%s: class %s", cases[i].vendor,
                      ops_tune_class_name(ops_tune_class(&d.info)));
    }
}
END_TEST

START_TEST(names_are_unique_and_found) {
    for (int p = 0; p < TUNE_N; p++) {
        ck_assert_int_eq(ops_tune_find(ops_tune_name((tune_param)p)), p);
        for (int q = 0; q < p; q++) ck_assert_str_ne(ops_tune_name((tune_param)p), ops_tune_name((tune_param)q));
    }
    ck_assert_int_eq(ops_tune_find("no.such"), -1);
}
END_TEST

/* This device (a PoCL CPU in CI) gets the CPU row; a value set at run time wins and is shown with its
 * source; one outside the parameter's range is refused with a message. */
START_TEST(the_table_in_force_on_this_device) {
    rt_ctx *ctx = tu_ctx();
    if (ops_tune_class(&ctx->dev.info) == TUNE_CPU) {
        ck_assert_int_eq(ops_tune(ctx, TUNE_NORM_GROUP), 8);
        ck_assert_int_eq(ops_tune(ctx, TUNE_GEMM_BACKEND), 0);
        ck_assert_int_eq(ops_tune(ctx, TUNE_ATTN_DECODE_WG), 8);
    }
    int vw = ops_tune(ctx, TUNE_GEMM_VW);
    ck_assert_msg(vw == 4 || vw == 8 || vw == 16, "gemm.vw %d", vw);
    ck_assert_int_eq(ops_tune(ctx, TUNE_GEMM_RM), vw == 16 ? 8 : 6);

    int old = ops_tune(ctx, TUNE_SSM_PER_CU);
    tu_ok(ops_tune_set(ctx, TUNE_SSM_PER_CU, 123, "test"));
    ck_assert_int_eq(ops_tune(ctx, TUNE_SSM_PER_CU), 123);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ops_tuning_print(ctx, f);
    fclose(f);
    ck_assert_msg(strstr(text, "ssm.per_cu") && strstr(text, "123") && strstr(text, "test"), "%s", text);
    free(text);
    ck_assert_int_eq(ops_tune_set(ctx, TUNE_SSM_PER_CU, 0, "test"), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(ctx->err, "ssm.per_cu"), "%s", ctx->err);
    ck_assert_int_eq(ops_tune(ctx, TUNE_SSM_PER_CU), 123);
    tu_ok(ops_tune_set(ctx, TUNE_SSM_PER_CU, old, "test"));
}
END_TEST

/* The environment overrides apply when a context's table is built; a bad value is ignored. */
START_TEST(environment_overrides) {
    rt_ctx *c = tu_ctx();
    int group = ops_tune(c, TUNE_NORM_GROUP); /* c's table: built before the variables are set */
    setenv("ATTAMBA_NORM_GROUP", "24", 1);
    setenv("ATTAMBA_GEMM", "own", 1);
    setenv("ATTAMBA_SSM_PATH", "seq", 1);
    rt_ctx *a = NULL;
    tu_ok(attamba_context_create(NULL, &a, NULL, 0));
    ck_assert_int_eq(ops_tune(a, TUNE_NORM_GROUP), 24);
    ck_assert_int_eq(ops_tune(a, TUNE_GEMM_BACKEND), 0);
    ck_assert_int_eq(ops_tune(a, TUNE_SSM_PATH), 1);
    attamba_context_destroy(a);
    setenv("ATTAMBA_TUNE_CLASS", "nvidia", 1); /* another class's rows on this device */
    tu_ok(attamba_context_create(NULL, &a, NULL, 0));
    ck_assert_int_eq(ops_tune(a, TUNE_GEMM_KERNEL), 1);
    ck_assert_int_eq(ops_tune(a, TUNE_ATTN_DECODE_WG), 32);
    ck_assert_int_eq(ops_tune(a, TUNE_NORM_GROUP), 24); /* the variable above still wins */
    attamba_context_destroy(a);
    unsetenv("ATTAMBA_TUNE_CLASS");
    setenv("ATTAMBA_NORM_GROUP", "-3", 1);
    setenv("ATTAMBA_SSM_PATH", "fastest", 1);
    rt_ctx *b = NULL;
    tu_ok(attamba_context_create(NULL, &b, NULL, 0));
    ck_assert_int_eq(ops_tune(b, TUNE_NORM_GROUP), group);
    ck_assert_int_eq(ops_tune(c, TUNE_NORM_GROUP), group);
    ck_assert_int_eq(ops_tune(b, TUNE_SSM_PATH), 0);
    attamba_context_destroy(b);
    unsetenv("ATTAMBA_NORM_GROUP");
    unsetenv("ATTAMBA_GEMM");
    unsetenv("ATTAMBA_SSM_PATH");
}
END_TEST

/* The tuner's values are saved in the cache directory and loaded by the next context on this device
 * (source "tuned"); a value out of range or a corrupt file is ignored with a warning. */
START_TEST(tuned_values_persist_per_device) {
    char *dir = tu_temp_dir();
    setenv("ATTAMBA_CACHE_DIR", dir, 1);
    rt_ctx *a = NULL, *b = NULL, *c = NULL;
    tu_ok(attamba_context_create(NULL, &a, NULL, 0));
    int tk = ops_tune(a, TUNE_ATTN_TK) == 4 ? 16 : 4;
    tu_ok(ops_tune_set(a, TUNE_ATTN_TK, tk, "tuned"));
    tu_ok(ops_tune_set(a, TUNE_NORM_GROUP, 24, "test")); /* not "tuned": not saved */
    tu_ok(ops_tuning_save(a));
    tu_ok(attamba_context_create(NULL, &b, NULL, 0));
    ck_assert_int_eq(ops_tune(b, TUNE_ATTN_TK), tk);
    ck_assert_str_eq(ops_tune_source(b, TUNE_ATTN_TK), "tuned");
    ck_assert_int_ne(ops_tune(b, TUNE_NORM_GROUP), 24);
    char *path = ops_tuning_path(b);
    ck_assert_ptr_nonnull(path);
    FILE *f = fopen(path, "w");
    fputs("{\"params\": {\"attn.tk\": 3000, \"no.such\": 1, \"norm.group\": 16}}", f);
    fclose(f);
    tu_ok(attamba_context_create(NULL, &c, NULL, 0));
    ck_assert_int_eq(ops_tune(c, TUNE_ATTN_TK), ops_tune(tu_ctx(), TUNE_ATTN_TK)); /* 3000: out of range */
    ck_assert_int_eq(ops_tune(c, TUNE_NORM_GROUP), 16);
    attamba_context_destroy(c);
    f = fopen(path, "w");
    fputs("not json", f);
    fclose(f);
    tu_ok(attamba_context_create(NULL, &c, NULL, 0));
    ck_assert_str_ne(ops_tune_source(c, TUNE_ATTN_TK), "tuned");
    attamba_context_destroy(a);
    attamba_context_destroy(b);
    attamba_context_destroy(c);
    free(path);
    free(dir);
    unsetenv("ATTAMBA_CACHE_DIR");
}
END_TEST

/* No file of the op, model or training layers but tuning.c decides by device type or reads the
 * tuning environment variables. */
START_TEST(device_decisions_live_only_in_the_table) {
    static const char *const dirs[] = {"src/ops", "src/model", "src/train"};
    static const char *const banned[] = {"ATTAMBA_DEVICE_CPU", "ATTAMBA_DEVICE_GPU", "ATTAMBA_DEVICE_ACCELERATOR",
                                         "info.type", "ATTAMBA_GEMM", "ATTAMBA_NORM_GROUP", "ATTAMBA_SSM_PATH"};
    int files = 0;
    for (size_t i = 0; i < CORE_LEN(dirs); i++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/../../%s", GOLDEN_DIR, dirs[i]);
        DIR *d = opendir(dir);
        ck_assert_msg(d != NULL, "cannot read %s", dir);
        for (struct dirent *e; (e = readdir(d));) {
            size_t n = strlen(e->d_name);
            if (n < 3 || strcmp(e->d_name + n - 2, ".c") || !strcmp(e->d_name, "tuning.c")) continue;
            char path[2048], err[256];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            size_t len;
            char *text = core_read_file(path, 0, &len, err, sizeof err);
            ck_assert_msg(text != NULL, "%s", err);
            for (size_t b = 0; b < CORE_LEN(banned); b++)
                ck_assert_msg(!strstr(text, banned[b]), "%s/%s decides by '%s': ask ops_tune (src/ops/tuning.c)",
                              dirs[i], e->d_name, banned[b]);
            free(text);
            files++;
        }
        closedir(d);
    }
    ck_assert_int_gt(files, 20);
}
END_TEST

/* A kernel that fails with tuned values in force drops them for the defaults (a warning, and the
 * message says so); the failing call of an op fails, the next runs; a forward runs once more itself. */
START_TEST(tuned_values_that_fail_fall_back_to_the_defaults) {
    char *dir = tu_temp_dir(); /* no tuning file: the defaults are the rows */
    setenv("ATTAMBA_CACHE_DIR", dir, 1);
    rt_ctx *ctx = NULL, *plain = NULL;
    tu_ok(attamba_context_create(NULL, &ctx, NULL, 0));
    tu_ok(attamba_context_create(NULL, &plain, NULL, 0));
    unsetenv("ATTAMBA_CACHE_DIR");
    int def = ops_tune(ctx, TUNE_NORM_GROUP), group = def == 32 ? 64 : 32;
    tu_ok(ops_tune_set(ctx, TUNE_NORM_GROUP, group, "tuned"));
    enum { ROWS = 5, C = 96 };
    float *x = tu_random(ROWS * C, 1, -1, 1), *w = tu_random(C, 2, 0.5f, 1.5f), want[ROWS * C], got[ROWS * C];
    ref_rmsnorm(ROWS, C, x, w, 1e-5f, want);
    tensor tx = {0}, tw = {0}, to = {0};
    const int64_t xs[2] = {ROWS, C}, ws[1] = {C};
    tu_ok(tensor_alloc_f32(ctx, &tx, 2, xs));
    tu_ok(tensor_alloc_f32(ctx, &tw, 1, ws));
    tu_ok(tensor_alloc_f32(ctx, &to, 2, xs));
    tu_ok(tensor_upload(&tx, x));
    tu_ok(tensor_upload(&tw, w));
    ctx->fail_launch = 1;
    ck_assert_int_ne(ops_rmsnorm(ctx, &tx, &tw, 1e-5f, &to), ATTAMBA_OK);
    ck_assert_msg(strstr(ctx->err, "tuned kernel parameters of this device are off"), "%s", ctx->err);
    ck_assert_int_eq(ctx->tuning_fallbacks, 1);
    ck_assert_int_eq(ops_tune(ctx, TUNE_NORM_GROUP), def);
    ck_assert_str_eq(ops_tune_source(ctx, TUNE_NORM_GROUP), "default: the tuned value failed");
    tu_ok(ops_rmsnorm(ctx, &tx, &tw, 1e-5f, &to));
    tu_ok(tensor_download(&to, got));
    tu_assert_close(got, want, ROWS * C, 1e-5, 1e-6, "rmsnorm after the fallback");
    /* with nothing tuned left, a failure is only a failure */
    ctx->fail_launch = 1;
    ck_assert_int_ne(ops_rmsnorm(ctx, &tx, &tw, 1e-5f, &to), ATTAMBA_OK);
    ck_assert_int_eq(ctx->tuning_fallbacks, 1);
    ck_assert_ptr_null(strstr(ctx->err, "tuned"));
    /* a forward pass (it changes nothing but its logits) runs once more with the defaults */
    tu_ok(ops_tune_set(ctx, TUNE_NORM_GROUP, group, "tuned"));
    enum { B = 2, T = 9 };
    int32_t tok[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (i * 37 + 5) % 256;
    attamba_model *m = NULL, *mp = NULL;
    tu_ok(attamba_model_init(ctx, "tiny", 3, &m));
    tu_ok(attamba_model_init(plain, "tiny", 3, &mp));
    int V = attamba_model_vocab_size(m);
    float *l = malloc((size_t)B * T * V * sizeof *l), *lp = malloc((size_t)B * T * V * sizeof *lp);
    tu_ok(attamba_model_forward(mp, tok, B, T, lp));
    ctx->fail_launch = 3;
    tu_ok(attamba_model_forward(m, tok, B, T, l));
    ck_assert_int_eq(ctx->tuning_fallbacks, 2);
    tu_assert_close(l, lp, B * T * V, 1e-4, 1e-4, "forward after the fallback");
    free(l);
    free(lp);
    attamba_model_destroy(m);
    attamba_model_destroy(mp);
    tensor_free(&tx);
    tensor_free(&tw);
    tensor_free(&to);
    free(x);
    free(w);
    attamba_context_destroy(ctx);
    attamba_context_destroy(plain);
    tu_remove_dir(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("tuning");
    TCase *t = tcase_create("table");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, device_classes_by_type_and_vendor);
    tcase_add_test(t, names_are_unique_and_found);
    tcase_add_test(t, the_table_in_force_on_this_device);
    tcase_add_test(t, environment_overrides);
    tcase_add_test(t, tuned_values_persist_per_device);
    tcase_add_test(t, device_decisions_live_only_in_the_table);
    tcase_add_test(t, tuned_values_that_fail_fall_back_to_the_defaults);
    suite_add_tcase(s, t);
    return tu_run(s);
}
