/* The public training API alone (include/attamba/attamba.h): a trainer lowers the loss on a repetitive
 * text, evaluate agrees with the step's losses, a saved checkpoint resumes exactly, bad input is
 * refused with a message. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attamba/attamba.h"

enum { B = 2, T = 32, ACCUM = 2, WINDOW = B * T * ACCUM };

/* Windows of a repetitive text: row r starts at byte (r * 7) % len; targets are the next bytes. */
static void windows(int first_row, int rows, int32_t *tok, int32_t *tgt) {
    static const char text[] = "the cat sat on the mat. a dog ran in the park. the sun is warm today. ";
    const int len = (int)sizeof text - 1;
    for (int r = 0; r < rows; r++)
        for (int t = 0; t < T; t++) {
            int at = ((first_row + r) * 7 + t) % len;
            tok[r * T + t] = (unsigned char)text[at];
            tgt[r * T + t] = (unsigned char)text[(at + 1) % len];
        }
}

static attamba_context *open_ctx(void) {
    attamba_context *ctx;
    char err[300];
    ck_assert_msg(attamba_context_create(NULL, &ctx, err, sizeof err) == ATTAMBA_OK, "%s", err);
    return ctx;
}

START_TEST(training_lowers_the_loss_and_resumes_exactly) {
    attamba_context *ctx = open_ctx();
    attamba_model *m;
    ck_assert_int_eq(attamba_model_init(ctx, "tiny", 1, &m), ATTAMBA_OK);
    attamba_train_params p = attamba_train_params_default(40);
    ck_assert_int_eq(p.batch, 8);
    p.batch = B, p.seq = T, p.accum = ACCUM, p.warmup = 2;
    attamba_trainer *tr;
    ck_assert_msg(attamba_trainer_create(m, &p, &tr) == ATTAMBA_OK, "%s", attamba_context_last_error(ctx));
    int32_t tok[WINDOW], tgt[WINDOW], vtok[4 * T], vtgt[4 * T];
    windows(1000, 4, vtok, vtgt);
    double before, after, first = 0;
    ck_assert_int_eq(attamba_trainer_evaluate(tr, vtok, vtgt, 4, &before), ATTAMBA_OK);
    ck_assert(before > 4.0); /* about ln 258 for a random model */
    attamba_train_stats st = {0};
    for (int s = 0; s < 30; s++) {
        windows(s * B * ACCUM, B * ACCUM, tok, tgt);
        ck_assert_msg(attamba_trainer_step(tr, tok, tgt, &st) == ATTAMBA_OK, "%s", attamba_context_last_error(ctx));
        if (s == 0) first = st.loss;
        ck_assert(isfinite(st.loss) && st.grad_norm > 0 && st.lr > 0);
    }
    ck_assert_int_eq(st.step, 30);
    ck_assert_int_eq(attamba_trainer_steps_done(tr), 30);
    ck_assert_msg(st.loss < 0.6 * first, "loss %g after 30 steps, %g at the first", st.loss, first);
    ck_assert_int_eq(attamba_trainer_evaluate(tr, vtok, vtgt, 4, &after), ATTAMBA_OK);
    ck_assert_msg(after < 0.6 * before, "held-out loss %g after, %g before", after, before);

    /* a checkpoint resumes exactly: the next step's loss, and the weights after it */
    char dir[] = "/tmp/attamba_train_api_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    ck_assert_int_eq(attamba_trainer_save(tr, dir), ATTAMBA_OK);
    attamba_model *m2;
    attamba_trainer *tr2;
    ck_assert_msg(attamba_trainer_load(ctx, dir, &m2, &tr2) == ATTAMBA_OK, "%s", attamba_context_last_error(ctx));
    ck_assert_int_eq(attamba_trainer_steps_done(tr2), 30);
    attamba_train_stats a, b;
    windows(777, B * ACCUM, tok, tgt);
    ck_assert_int_eq(attamba_trainer_step(tr, tok, tgt, &a), ATTAMBA_OK);
    ck_assert_int_eq(attamba_trainer_step(tr2, tok, tgt, &b), ATTAMBA_OK);
    ck_assert_int_eq(a.step, 31);
    ck_assert_int_eq(b.step, 31);
    ck_assert_msg(a.loss == b.loss && a.grad_norm == b.grad_norm && a.lr == b.lr, "resumed: loss %.9g vs %.9g",
                  b.loss, a.loss);
    int V = attamba_model_vocab_size(m);
    float *la = malloc((size_t)T * V * sizeof *la), *lb = malloc((size_t)T * V * sizeof *lb);
    ck_assert_int_eq(attamba_model_forward(m, vtok, 1, T, la), ATTAMBA_OK);
    ck_assert_int_eq(attamba_model_forward(m2, vtok, 1, T, lb), ATTAMBA_OK);
    ck_assert_int_eq(memcmp(la, lb, (size_t)T * V * sizeof *la), 0);
    free(la), free(lb);

    /* bad input */
    tgt[5] = V;
    ck_assert_int_eq(attamba_trainer_step(tr, tok, tgt, NULL), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(attamba_context_last_error(ctx), "outside"));
    ck_assert_int_eq(attamba_trainer_steps_done(tr), 31); /* nothing happened */
    ck_assert_int_eq(attamba_trainer_evaluate(tr, vtok, vtgt, 0, &after), ATTAMBA_ERR_INVALID_ARG);
    attamba_train_params bad = p;
    bad.batch = 0;
    attamba_trainer *none;
    ck_assert_int_eq(attamba_trainer_create(m, &bad, &none), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_null(none);
    ck_assert_ptr_nonnull(strstr(attamba_context_last_error(ctx), "batch >= 1"));
    attamba_model *m3;
    ck_assert_int_eq(attamba_trainer_load(ctx, "/nonexistent", &m3, &none), ATTAMBA_ERR_IO);
    ck_assert_ptr_null(m3);

    attamba_trainer_destroy(tr2);
    attamba_model_destroy(m2);
    attamba_trainer_destroy(tr);
    attamba_model_destroy(m);
    attamba_context_destroy(ctx);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void) {
    Suite *s = suite_create("public_train");
    TCase *t = tcase_create("train");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, training_lowers_the_loss_and_resumes_exactly);
    suite_add_tcase(s, t);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
