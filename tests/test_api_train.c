/* API 0.3's data, task and training-run functions through the public header alone
 * (include/attamba/attamba.h): greedy predictions on the device, validation on a file's held-out tail,
 * standalone tokenizers and token files, task files generated and scored, and whole training runs
 * that resume exactly. Bad input gets a status and a message, never an abort. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attamba/attamba.h"

static attamba_context *open_ctx(void) {
    attamba_context *ctx;
    char err[300];
    ck_assert_msg(attamba_context_create(NULL, &ctx, err, sizeof err) == ATTAMBA_OK, "%s", err);
    return ctx;
}

/* A new temporary directory, its path written to dir. */
static void temp_dir(char *dir, size_t n) {
    snprintf(dir, n, "/tmp/attamba_api_train_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void remove_dir(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Writes a small English text of about `bytes` bytes (sentences repeated with variations) to path. */
static void write_text(const char *path, int bytes) {
    static const char *const words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to",
                                        "house", "by", "river", "while", "bird", "sang", "in", "tree"};
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    uint64_t x = 12345;
    int n = 0;
    while (n < bytes) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        const char *w = words[(x >> 33) % (sizeof words / sizeof *words)];
        n += fprintf(f, "%s%s", w, (x >> 40) % 9 == 0 ? ".\n" : " ");
    }
    ck_assert_int_eq(fclose(f), 0);
}

START_TEST(argmax_is_the_forward_pass_argmax) {
    attamba_context *ctx = open_ctx();
    attamba_model *m;
    ck_assert_int_eq(attamba_model_init(ctx, "tiny", 3, &m), ATTAMBA_OK);
    int V = attamba_model_vocab_size(m), B = 2, T = 24;
    int32_t tok[48], best[48];
    for (int i = 0; i < B * T; i++) tok[i] = (i * 37 + 5) % 256;
    float *logits = malloc((size_t)B * T * V * sizeof *logits);
    ck_assert_int_eq(attamba_model_forward(m, tok, B, T, logits), ATTAMBA_OK);
    ck_assert_msg(attamba_model_argmax(m, tok, B, T, best) == ATTAMBA_OK, "%s", attamba_context_last_error(ctx));
    for (int r = 0; r < B * T; r++) {
        int want = 0;
        for (int v = 1; v < V; v++)
            if (logits[(size_t)r * V + v] > logits[(size_t)r * V + want]) want = v;
        ck_assert_msg(best[r] == want, "row %d: argmax %d, the logits' %d", r, best[r], want);
    }
    free(logits);
    tok[7] = V;
    ck_assert_int_eq(attamba_model_argmax(m, tok, B, T, best), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(attamba_context_last_error(ctx), "outside"));
    ck_assert_int_eq(attamba_model_argmax(m, tok, 0, T, best), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_int_eq(attamba_model_argmax(m, NULL, B, T, best), ATTAMBA_ERR_INVALID_ARG);
    attamba_model_destroy(m);
    uint64_t cur;
    attamba_context_memory(ctx, &cur, NULL);
    ck_assert_uint_eq(cur, 0);
    attamba_context_destroy(ctx);
}
END_TEST

START_TEST(validate_on_a_short_file) {
    attamba_context *ctx = open_ctx();
    attamba_model *m;
    ck_assert_int_eq(attamba_model_init(ctx, "tiny", 1, &m), ATTAMBA_OK);
    char dir[64], path[128];
    temp_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/text.txt", dir);
    write_text(path, 3000);
    double loss = 0;
    /* the tail is 10% of 3000 bytes: 300 bytes, nine windows of 32 */
    ck_assert_msg(attamba_model_validate(m, path, 0.1, 32, 4, 100, &loss) == ATTAMBA_OK, "%s",
                  attamba_context_last_error(ctx));
    ck_assert_msg(loss > 4.0 && loss < 7.0, "a random model's loss %g (about ln 258)", loss);
    double again = 0;
    ck_assert_int_eq(attamba_model_validate(m, path, 0.1, 32, 3, 9, &again), ATTAMBA_OK); /* other batches */
    ck_assert_msg(fabs(again - loss) < 1e-5 * loss, "batch 3: %g, batch 4: %g", again, loss);
    ck_assert_int_eq(attamba_model_validate(m, path, 0.1, 512, 4, 8, &loss), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(attamba_context_last_error(ctx), "fewer than one window"));
    snprintf(path, sizeof path, "%s/missing.txt", dir);
    ck_assert_int_eq(attamba_model_validate(m, path, 0.1, 32, 4, 8, &loss), ATTAMBA_ERR_IO);
    ck_assert_ptr_nonnull(strstr(attamba_context_last_error(ctx), "missing.txt"));
    ck_assert_int_eq(attamba_model_validate(m, path, 1.5, 32, 4, 8, &loss), ATTAMBA_ERR_INVALID_ARG);
    attamba_model_destroy(m);
    attamba_context_destroy(ctx);
    remove_dir(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("api_train");
    TCase *t = tcase_create("api");
    tcase_set_timeout(t, 900);
    tcase_add_test(t, argmax_is_the_forward_pass_argmax);
    tcase_add_test(t, validate_on_a_short_file);
    suite_add_tcase(s, t);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
