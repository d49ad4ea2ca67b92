/* Device tuning and program bundles through the public API: attamba_tune searches a group and stores
 * what is in force where a new context finds it, refuses groups it does not know, and
 * attamba_context_save_programs writes a bundle whose manifest lists every program it says it wrote. */
#include <check.h>
#include <cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apiutil.h"

/* A context whose kernel cache (and so its tuned values) lives in cache_dir, not the shared cache
 * (NULL: the shared one). */
static attamba_context *open_ctx(const char *cache_dir) {
    const char *before = getenv("ATTAMBA_CACHE_DIR");
    char *saved = before ? strdup(before) : NULL;
    if (cache_dir) setenv("ATTAMBA_CACHE_DIR", cache_dir, 1);
    attamba_context *ctx;
    char err[300];
    attamba_status s = attamba_context_create(NULL, &ctx, err, sizeof err);
    if (saved) setenv("ATTAMBA_CACHE_DIR", saved, 1);
    else unsetenv("ATTAMBA_CACHE_DIR");
    free(saved);
    ck_assert_msg(s == ATTAMBA_OK, "%s", err);
    return ctx;
}

/* attamba_tuning_print's row of `param` (up to its newline) into row. */
static void table_row(attamba_context *ctx, const char *param, char *row, size_t size) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(attamba_tuning_print(ctx, f), ATTAMBA_OK);
    fclose(f);
    char *p = strstr(text, param);
    ck_assert_msg(p != NULL, "no %s in\n%s", param, text);
    size_t n = strcspn(p, "\n");
    snprintf(row, size, "%.*s", (int)(n < size ? n : size - 1), p);
    free(text);
}

/* The name of the tuned-values file in dir ("" if none). */
static void tuning_file(const char *dir, char *name, size_t size) {
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    name[0] = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (!strncmp(e->d_name, "tuning-", 7) && strstr(e->d_name, ".json")) snprintf(name, size, "%s", e->d_name);
    closedir(d);
}

/* A quick search of the norms' group keeps the values in force or a tuned winner, stores them in the
 * cache directory, and a new context there starts from the same values. */
START_TEST(a_search_stores_what_it_leaves_in_force) {
    char *cache = tu_temp_dir(), err[300], before[256], after[256], again[256], file[256];
    attamba_context *ctx = open_ctx(cache);
    attamba_config *c;
    ck_assert_msg(attamba_config_load("tiny", &c, err, sizeof err) == ATTAMBA_OK, "%s", err);
    table_row(ctx, "norm.group", before, sizeof before);
    attamba_tune_params p = {.config = c, .tokens = 64, .quick = 1, .only = "norm"};
    char *log = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&log, &len);
    ck_assert_msg(attamba_tune(ctx, &p, f) == ATTAMBA_OK, "%s", attamba_context_last_error(ctx));
    fclose(f);
    ck_assert_msg(strstr(log, "norm ") && strstr(log, "tuned values ->") && !strstr(log, "gemm"), "%s", log);
    table_row(ctx, "norm.group", after, sizeof after);
    /* the winner says "tuned"; values kept keep their row as it was */
    ck_assert_msg(strstr(after, "tuned") || !strcmp(after, before), "before: %s\nafter: %s\n%s", before, after, log);
    tuning_file(cache, file, sizeof file);
    ck_assert_msg(file[0], "no tuning file in %s", cache);
    attamba_context *fresh = open_ctx(cache);
    table_row(fresh, "norm.group", again, sizeof again);
    ck_assert_str_eq(again, after);
    attamba_context_destroy(fresh);
    attamba_context_destroy(ctx);
    attamba_config_destroy(c);
    free(log);
    tu_remove_dir(cache);
}
END_TEST

/* The K/V SSM's groups search an Attamba model (every candidate checked against src/ref first) and
 * are skipped, with a word, for a transformer, which has no SSM. */
START_TEST(the_ssm_groups_search_attamba_models_only) {
    char *cache = tu_temp_dir(), err[300];
    attamba_context *ctx = open_ctx(cache);
    attamba_config *c;
    ck_assert_msg(attamba_config_load("tiny", &c, err, sizeof err) == ATTAMBA_OK, "%s", err);
    for (int kind = 0; kind < 2; kind++) {
        if (kind) ck_assert_msg(attamba_config_set(c, "kind", "transformer", err, sizeof err) == ATTAMBA_OK, "%s", err);
        attamba_tune_params p = {.config = c, .tokens = 64, .quick = 1, .only = "conv,ssm-scan", .verbose = 1};
        char *log = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&log, &len);
        ck_assert_msg(attamba_tune(ctx, &p, f) == ATTAMBA_OK, "%s", attamba_context_last_error(ctx));
        fclose(f);
        if (kind) {
            ck_assert_msg(strstr(log, "conv       skipped: the model has no SSM"), "%s", log);
            ck_assert_msg(strstr(log, "ssm-scan   skipped: the model has no SSM"), "%s", log);
        } else {
            /* every candidate passed its check and was timed: none "failed" */
            ck_assert_msg(strstr(log, "conv.vc=4 conv.tt=8") && strstr(log, "ssm.quad_max=0"), "%s", log);
            const char *a = strstr(log, " 0 failed"), *b = a ? strstr(a + 1, " 0 failed") : NULL;
            ck_assert_msg(b, "%s", log);
        }
        free(log);
    }
    attamba_context_destroy(ctx);
    attamba_config_destroy(c);
    tu_remove_dir(cache);
}
END_TEST

/* A group it does not know (a typo would search nothing), no config, or a batch out of range are
 * refused before anything runs. */
START_TEST(bad_requests_are_refused) {
    char *cache = tu_temp_dir(), err[300];
    attamba_context *ctx = open_ctx(cache);
    attamba_config *c;
    ck_assert_msg(attamba_config_load("tiny", &c, err, sizeof err) == ATTAMBA_OK, "%s", err);
    attamba_tune_params p = {.config = c, .quick = 1, .only = "norm,nrom"};
    ck_assert_int_eq(attamba_tune(ctx, &p, NULL), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(attamba_context_last_error(ctx), "'nrom'") && strstr(attamba_context_last_error(ctx), "ssm-scan"),
                  "%s", attamba_context_last_error(ctx));
    p.only = "norm,";
    ck_assert_int_eq(attamba_tune(ctx, &p, NULL), ATTAMBA_ERR_INVALID_ARG);
    p.only = "norm";
    p.tokens = 8;
    ck_assert_int_eq(attamba_tune(ctx, &p, NULL), ATTAMBA_ERR_INVALID_ARG);
    p.tokens = 0;
    p.config = NULL;
    ck_assert_int_eq(attamba_tune(ctx, &p, NULL), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_int_eq(attamba_tune(ctx, NULL, NULL), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_int_eq(attamba_tuning_print(ctx, NULL), ATTAMBA_ERR_INVALID_ARG);
    char file[256];
    tuning_file(cache, file, sizeof file);
    ck_assert_msg(!file[0], "a refused search wrote %s", file);
    attamba_context_destroy(ctx);
    attamba_config_destroy(c);
    tu_remove_dir(cache);
}
END_TEST

/* After a forward pass the context holds programs; the bundle has a binary of each, listed in
 * bundle.json; the counters account for every one of them; a directory that cannot exist is an I/O
 * error. */
START_TEST(a_bundle_lists_every_program_it_wrote) {
    char *out = tu_temp_dir(), path[1024];
    attamba_context *ctx = open_ctx(NULL);
    attamba_model *m;
    ck_assert_msg(attamba_model_init(ctx, "tiny", 1, &m) == ATTAMBA_OK, "%s", attamba_context_last_error(ctx));
    int32_t tok[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    float *logits = malloc((size_t)8 * attamba_model_vocab_size(m) * sizeof *logits);
    ck_assert_msg(attamba_model_forward(m, tok, 1, 8, logits) == ATTAMBA_OK, "%s", attamba_context_last_error(ctx));
    int n = -1;
    snprintf(path, sizeof path, "%s/bundle", out);
    ck_assert_msg(attamba_context_save_programs(ctx, path, &n) == ATTAMBA_OK, "%s", attamba_context_last_error(ctx));
    ck_assert_int_gt(n, 0);
    attamba_cache_stats st;
    attamba_context_cache_stats(ctx, &st);
    ck_assert_uint_ge(st.misses + st.hits + st.prebuilt, (uint64_t)n);
    snprintf(path, sizeof path, "%s/bundle/bundle.json", out);
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    char text[1 << 16];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = 0;
    cJSON *o = cJSON_Parse(text);
    ck_assert_ptr_nonnull(o);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(o, "schema")->valuestring, "attamba-bundle");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(o, "programs"), *e;
    ck_assert_int_eq(cJSON_GetArraySize(list), n);
    cJSON_ArrayForEach(e, list) {
        struct stat sb;
        snprintf(path, sizeof path, "%s/bundle/%s", out, cJSON_GetObjectItemCaseSensitive(e, "file")->valuestring);
        ck_assert_msg(stat(path, &sb) == 0 && sb.st_size > 0, "%s is missing or empty", path);
    }
    cJSON_Delete(o);
    /* a directory under a regular file */
    snprintf(path, sizeof path, "%s/file", out);
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    snprintf(path, sizeof path, "%s/file/bundle", out);
    ck_assert_int_eq(attamba_context_save_programs(ctx, path, &n), ATTAMBA_ERR_IO);
    ck_assert_int_eq(n, 0);
    ck_assert_msg(strstr(attamba_context_last_error(ctx), path), "%s", attamba_context_last_error(ctx));
    attamba_model_destroy(m);
    attamba_context_destroy(ctx);
    free(logits);
    tu_remove_dir(out);
}
END_TEST

int main(void) {
    Suite *s = suite_create("api_tune");
    TCase *t = tcase_create("tune");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, a_search_stores_what_it_leaves_in_force);
    tcase_add_test(t, bad_requests_are_refused);
    tcase_add_test(t, the_ssm_groups_search_attamba_models_only);
    tcase_add_test(t, a_bundle_lists_every_program_it_wrote);
    suite_add_tcase(s, t);
    return tu_run(s);
}
