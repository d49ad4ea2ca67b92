/* API 0.3's data, task and training-run functions through the public header alone
 * (include/attamba/attamba.h): greedy predictions on the device, validation on a file's held-out tail,
 * standalone tokenizers and token files, task files generated and scored, and whole training runs
 * that resume exactly. Bad input gets a status and a message, never an abort. */
#include <check.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apiutil.h"

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
    attamba_context *ctx = tu_api_context();
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
    /* a row split over two contexts shares the rows out and gives the same ids */
    attamba_context *two[2] = {ctx, tu_api_context()};
    char *dir = tu_temp_dir();
    ck_assert_int_eq(attamba_model_save(m, dir), ATTAMBA_OK);
    attamba_model_params mp = attamba_model_params_default();
    mp.devices = two, mp.n_devices = 2, mp.split_mode = ATTAMBA_SPLIT_ROWS;
    attamba_model *split;
    ck_assert_msg(attamba_model_load_with(dir, &mp, &split) == ATTAMBA_OK, "%s", attamba_context_last_error(ctx));
    int32_t shared[48];
    ck_assert_msg(attamba_model_argmax(split, tok, B, T, shared) == ATTAMBA_OK, "%s", attamba_context_last_error(ctx));
    ck_assert_int_eq(memcmp(shared, best, sizeof shared), 0);
    char text[128];
    snprintf(text, sizeof text, "%s/text.txt", dir);
    write_text(text, 3000);
    double alone = 0, both = 0;
    ck_assert_int_eq(attamba_model_validate(m, text, 0.1, 32, 4, 9, &alone), ATTAMBA_OK);
    ck_assert_msg(attamba_model_validate(split, text, 0.1, 32, 4, 9, &both) == ATTAMBA_OK, "%s",
                  attamba_context_last_error(ctx));
    ck_assert_msg(fabs(both - alone) < 1e-5 * alone, "row split %g, one device %g", both, alone);
    attamba_model_destroy(split);
    attamba_context_destroy(two[1]);
    tu_remove_dir(dir);
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
    attamba_context *ctx = tu_api_context();
    attamba_model *m;
    ck_assert_int_eq(attamba_model_init(ctx, "tiny", 1, &m), ATTAMBA_OK);
    char *dir = tu_temp_dir(), path[128];
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
    tu_remove_dir(dir);
}
END_TEST

START_TEST(token_files_and_standalone_tokenizers) {
    char *dir = tu_temp_dir(), text[128], tok[128], back[128], spm[128];
    snprintf(text, sizeof text, "%s/text.txt", dir);
    snprintf(tok, sizeof tok, "%s/bytes.tok", dir);
    snprintf(back, sizeof back, "%s/again.tok", dir);
    snprintf(spm, sizeof spm, "%s/t.model", dir);
    write_text(text, 20000);
    char err[1024] = "";
    int64_t n = 0, bytes = 0, n2 = 0;
    /* without a tokenizer: the file as training reads it (bytes), and a token file's tokens again */
    ck_assert_msg(attamba_tokenize_file(NULL, text, tok, &n, &bytes, err, sizeof err) == ATTAMBA_OK, "%s", err);
    ck_assert_int_ge(bytes, 20000);
    ck_assert_int_eq(n, bytes);
    ck_assert_msg(attamba_tokenize_file(NULL, tok, back, &n2, NULL, err, sizeof err) == ATTAMBA_OK, "%s", err);
    ck_assert_int_eq(n2, n);
    /* a model validates a token file as it does the text it came from */
    attamba_context *ctx = tu_api_context();
    attamba_model *m;
    ck_assert_int_eq(attamba_model_init(ctx, "tiny", 1, &m), ATTAMBA_OK);
    double a = 0, b = 0;
    ck_assert_int_eq(attamba_model_validate(m, text, 0.05, 32, 4, 6, &a), ATTAMBA_OK);
    ck_assert_msg(attamba_model_validate(m, tok, 0.05, 32, 4, 6, &b) == ATTAMBA_OK, "%s",
                  attamba_context_last_error(ctx));
    ck_assert_msg(a == b, "text %g, token file %g", a, b);
    attamba_model_destroy(m);
    attamba_context_destroy(ctx);
    /* bad input */
    char missing[128];
    snprintf(missing, sizeof missing, "%s/missing.txt", dir);
    ck_assert_int_eq(attamba_tokenize_file(NULL, missing, back, NULL, NULL, err, sizeof err), ATTAMBA_ERR_IO);
    ck_assert_msg(strstr(err, "missing.txt"), "%s", err);
    ck_assert_int_eq(attamba_tokenize_file(NULL, NULL, back, NULL, NULL, err, sizeof err), ATTAMBA_ERR_INVALID_ARG);
    attamba_tokenizer *t = NULL;
    ck_assert_int_ne(attamba_tokenizer_load(missing, &t, err, sizeof err), ATTAMBA_OK);
    ck_assert_ptr_null(t);

    if (!attamba_have_sentencepiece()) {
        ck_assert_int_eq(attamba_tokenizer_train(text, 300, spm, err, sizeof err), ATTAMBA_ERR_UNSUPPORTED);
        printf("token_files_and_standalone_tokenizers: skipping the SentencePiece part (a build without it)\n");
        tu_remove_dir(dir);
        return;
    }
    ck_assert_msg(attamba_tokenizer_train(text, 300, spm, err, sizeof err) == ATTAMBA_OK, "%s", err);
    ck_assert_msg(attamba_tokenizer_load(spm, &t, err, sizeof err) == ATTAMBA_OK, "%s", err);
    int V = attamba_tokenizer_vocab_size(t);
    ck_assert_msg(V > 256 && V <= 300, "vocab %d", V);
    ck_assert_int_ge(attamba_tokenizer_bos(t), 0);
    static const char sample[] = "the cat sat on the mat.\nbird \xff\xfe in tree \xe2\x96\x81 ok";
    size_t len = sizeof sample - 1, got = 0;
    int64_t k = 0;
    ck_assert_int_eq(attamba_tokenizer_encode(t, sample, len, 1, NULL, 0, &k), ATTAMBA_OK);
    int32_t ids[128];
    ck_assert_int_le(k, 128);
    ck_assert_int_eq(attamba_tokenizer_encode(t, sample, len, 1, ids, 128, &k), ATTAMBA_OK);
    ck_assert_int_eq(ids[0], attamba_tokenizer_bos(t));
    char out[128];
    ck_assert_int_eq(attamba_tokenizer_decode(t, ids, k, out, sizeof out, &got), ATTAMBA_OK);
    ck_assert_int_eq(got, len);
    ck_assert_int_eq(memcmp(out, sample, len), 0);
    /* failures without a context to hold the message: a status (the message goes to the log) */
    int32_t outside = attamba_tokenizer_vocab_size(t);
    ck_assert_int_eq(attamba_tokenizer_decode(t, &outside, 1, out, sizeof out, &got), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_int_eq(attamba_tokenizer_encode(t, sample, len, 0, NULL, 4, &k), ATTAMBA_ERR_INVALID_ARG);
    /* the token file of the text under the tokenizer: fewer tokens than bytes */
    snprintf(tok, sizeof tok, "%s/pieces.tok", dir);
    ck_assert_msg(attamba_tokenize_file(t, text, tok, &n2, &bytes, err, sizeof err) == ATTAMBA_OK, "%s", err);
    ck_assert_int_eq(bytes, n);
    ck_assert_msg(n2 > 0 && n2 < n, "%lld tokens of %lld bytes", (long long)n2, (long long)n);
    ck_assert_int_eq(attamba_tokenize_file(t, missing, tok, NULL, NULL, err, sizeof err), ATTAMBA_ERR_IO);
    attamba_tokenizer_destroy(t);
    /* an empty text trains nothing; a file that is not a model is refused */
    FILE *f = fopen(missing, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    ck_assert_int_ne(attamba_tokenizer_train(missing, 300, spm, err, sizeof err), ATTAMBA_OK);
    ck_assert_msg(strstr(err, "is empty"), "%s", err);
    ck_assert_int_ne(attamba_tokenizer_load(text, &t, err, sizeof err), ATTAMBA_OK);
    ck_assert_ptr_null(t);
    tu_remove_dir(dir);
}
END_TEST

/* Each table's totals add up to the answers, and every interval holds its accuracy. */
static void check_tallies(const attamba_tally *t, int n, int64_t total, const char *what) {
    int64_t sum = 0;
    for (int i = 0; i < n; i++) {
        double acc = (double)t[i].right / (double)t[i].total;
        ck_assert_msg(t[i].total > 0 && t[i].right <= t[i].total, "%s %d", what, t[i].key);
        ck_assert_msg(t[i].lo <= acc + 1e-12 && acc <= t[i].hi + 1e-12 && t[i].lo >= 0 && t[i].hi <= 1,
                      "%s %d: %g not in [%g, %g]", what, t[i].key, acc, t[i].lo, t[i].hi);
        sum += t[i].total;
    }
    ck_assert_msg(sum == total, "%s: %lld items of %lld", what, (long long)sum, (long long)total);
}

START_TEST(tasks_generated_and_scored) {
    char *dir = tu_temp_dir(), mqar[128], passkey[128], big[128], filler[128];
    snprintf(mqar, sizeof mqar, "%s/mqar.task", dir);
    snprintf(passkey, sizeof passkey, "%s/passkey.task", dir);
    snprintf(big, sizeof big, "%s/big.task", dir);
    snprintf(filler, sizeof filler, "%s/filler.txt", dir);
    char err[1024] = "";
    attamba_task_params p = attamba_task_params_default("mqar");
    ck_assert_int_eq(p.example, 256);
    ck_assert_int_eq(p.examples, 1000);
    ck_assert_int_eq(p.pairs[0], 8);
    p.example = 64, p.examples = 12, p.vocab = 128, p.pairs[0] = 2, p.pairs[1] = 4, p.n_pairs = 2;
    int64_t answers = 0;
    ck_assert_msg(attamba_task_generate(&p, mqar, &answers, err, sizeof err) == ATTAMBA_OK, "%s", err);
    ck_assert_int_eq(answers, 6 * 2 + 6 * 4); /* every key asked once */

    attamba_context *ctx = tu_api_context();
    attamba_model *m;
    ck_assert_int_eq(attamba_model_init(ctx, "tiny", 1, &m), ATTAMBA_OK);
    attamba_task_report r;
    ck_assert_msg(attamba_model_score_task(m, mqar, NULL, 5, &r) == ATTAMBA_OK, "%s", attamba_context_last_error(ctx));
    ck_assert_str_eq(r.kind, "mqar");
    ck_assert_int_eq(r.example, 64);
    ck_assert_int_eq(r.examples, 12);
    ck_assert_int_eq(r.all.total, answers);
    ck_assert_int_eq(r.tokens.total, answers); /* one token per answer */
    check_tallies(&r.all, 1, answers, "all");
    check_tallies(r.group, r.n_group, answers, "pairs");
    ck_assert_int_eq(r.n_group, 2);
    ck_assert_int_eq(r.group[0].key, 2);
    ck_assert_int_eq(r.group[1].key, 4);
    ck_assert_int_gt(r.n_offset, 0); /* tiny is an attamba model */
    check_tallies(r.offset, r.n_offset, answers, "offset");
    check_tallies(r.distance, r.n_distance, answers, "distance");
    attamba_task_report again;
    ck_assert_int_eq(attamba_model_score_task(m, mqar, NULL, 12, &again), ATTAMBA_OK); /* other batches, same answers */
    ck_assert_int_eq(again.all.right, r.all.right);

    /* passkey: the digits of a number hidden in a text */
    write_text(filler, 4000);
    p = attamba_task_params_default("passkey");
    p.example = 128, p.examples = 6, p.filler = filler, p.depth[0] = 0, p.depth[1] = 1, p.n_depth = 2;
    ck_assert_msg(attamba_task_generate(&p, passkey, &answers, err, sizeof err) == ATTAMBA_OK, "%s", err);
    ck_assert_int_eq(answers, 6);
    ck_assert_msg(attamba_model_score_task(m, passkey, NULL, 4, &r) == ATTAMBA_OK, "%s", attamba_context_last_error(ctx));
    ck_assert_str_eq(r.kind, "passkey");
    ck_assert_int_eq(r.tokens.total, 6 * 5);
    check_tallies(r.group, r.n_group, 6, "depth");
    check_tallies(r.distance, r.n_distance, 6, "distance");

    /* bad input: a vocabulary too small for the file, missing files, unknown kinds */
    p = attamba_task_params_default("mqar");
    p.example = 64, p.examples = 4, p.vocab = 4096, p.pairs[0] = 4;
    ck_assert_msg(attamba_task_generate(&p, big, NULL, err, sizeof err) == ATTAMBA_OK, "%s", err);
    ck_assert_int_eq(attamba_model_score_task(m, big, NULL, 4, &r), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(attamba_context_last_error(ctx), "outside the model's vocabulary"), "%s",
                  attamba_context_last_error(ctx));
    ck_assert_int_ne(attamba_model_score_task(m, filler, NULL, 4, &r), ATTAMBA_OK); /* not a task file */
    ck_assert_msg(strstr(attamba_context_last_error(ctx), "not a task file"), "%s", attamba_context_last_error(ctx));
    ck_assert_int_eq(attamba_model_score_task(m, mqar, NULL, 0, &r), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_int_eq(attamba_model_score_task(m, mqar, "passkey", 4, &r), ATTAMBA_ERR_INVALID_ARG); /* other kind */
    ck_assert_ptr_nonnull(strstr(attamba_context_last_error(ctx), "holds mqar examples, not passkey"));
    p.kind = "recall";
    ck_assert_int_eq(attamba_task_generate(&p, big, NULL, err, sizeof err), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(err, "unknown task 'recall'"), "%s", err);
    p = attamba_task_params_default("passkey");
    p.filler = "/nonexistent/filler.txt";
    ck_assert_int_eq(attamba_task_generate(&p, big, NULL, err, sizeof err), ATTAMBA_ERR_IO);
    ck_assert_msg(strstr(err, "the filler text") && strstr(err, "/nonexistent/filler.txt"), "%s", err);
    p = attamba_task_params_default("mqar");
    p.pairs[0] = 500; /* more pairs than 256 tokens hold */
    ck_assert_int_eq(attamba_task_generate(&p, big, NULL, err, sizeof err), ATTAMBA_ERR_INVALID_ARG);
    attamba_model_destroy(m);
    attamba_context_destroy(ctx);
    tu_remove_dir(dir);
}
END_TEST

/* The last "val_loss" of DIR/metrics.jsonl (NAN when none). */
static double last_val(const char *dir) {
    char path[256], line[2048];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    double v = NAN;
    while (f && fgets(line, sizeof line, f)) {
        const char *at = strstr(line, "\"val_loss\"");
        if (at && (at = strchr(at, ':'))) v = strtod(at + 1, NULL);
    }
    if (f) fclose(f);
    return v;
}

START_TEST(training_runs_resume_exactly) {
    char *dir = tu_temp_dir(), text[128], once[128], split[128], none[128];
    snprintf(text, sizeof text, "%s/text.txt", dir);
    snprintf(once, sizeof once, "%s/once", dir);
    snprintf(split, sizeof split, "%s/split", dir);
    snprintf(none, sizeof none, "%s/none", dir);
    write_text(text, 20000);
    attamba_context *ctx = tu_api_context();
    char err[600];
    attamba_config *c;
    ck_assert_msg(attamba_config_load("tiny", &c, err, sizeof err) == ATTAMBA_OK, "%s", err);
    attamba_train_run_params p = attamba_train_run_params_default(8);
    ck_assert(p.val_frac == 0.05 && p.val_windows == 32 && p.progress == 1 && !p.resume && !p.comm && !p.stop);
    ck_assert_int_eq(p.train.batch, 8);
    /* a constant rate, so that a run of 4 steps extended to 8 follows the schedule of a run of 8 */
    p.train.batch = 2, p.train.seq = 32, p.train.warmup = 0, p.train.min_lr = p.train.lr;
    p.data = text, p.seed = 7, p.val_windows = 8, p.progress = 0;
    ck_assert(!attamba_checkpoint_exists(once));
    p.out = once;
    double whole = 0, resumed = 0, first = 0;
    ck_assert_msg(attamba_train_run(&ctx, 1, c, &p, &whole) == ATTAMBA_OK, "%s", attamba_context_last_error(ctx));
    ck_assert(attamba_checkpoint_exists(once));
    ck_assert_msg(whole > 0 && whole < 5.6, "validation loss %g after 8 steps", whole);
    ck_assert_msg(fabs(last_val(once) - whole) < 1e-3, "metrics.jsonl %g, returned %g", last_val(once), whole);
    attamba_model *m;
    ck_assert_int_eq(attamba_model_load(ctx, once, &m), ATTAMBA_OK); /* the final model */
    double v = 0;
    ck_assert_int_eq(attamba_model_validate(m, text, 0.05, 32, 2, 8, &v), ATTAMBA_OK);
    ck_assert_msg(fabs(v - whole) < 1e-5, "attamba_model_validate %g, the run's %g", v, whole);
    attamba_model_destroy(m);

    p.out = split;
    p.train.steps = 4;
    ck_assert_msg(attamba_train_run(&ctx, 1, c, &p, &first) == ATTAMBA_OK, "%s", attamba_context_last_error(ctx));
    p.train.steps = 8, p.resume = 1;
    ck_assert_msg(attamba_train_run(&ctx, 1, NULL, &p, &resumed) == ATTAMBA_OK, "%s",
                  attamba_context_last_error(ctx));
    ck_assert_msg(resumed == whole, "4 + 4 steps: %.9g, 8 steps at once: %.9g", resumed, whole);
    ck_assert_msg(resumed < first, "after 8 steps %g, after 4 %g", resumed, first);

    /* a stop request: a checkpoint, then ATTAMBA_ERR_INTERRUPTED */
    volatile sig_atomic_t stop = 1;
    p.out = none, p.resume = 0, p.stop = &stop;
    ck_assert_int_eq(attamba_train_run(&ctx, 1, c, &p, NULL), ATTAMBA_ERR_INTERRUPTED);
    ck_assert(attamba_checkpoint_exists(none));
    p.stop = NULL;

    /* bad input */
    char missing[128];
    snprintf(missing, sizeof missing, "%s/missing.txt", dir);
    p.data = missing, p.out = split;
    ck_assert_int_eq(attamba_train_run(&ctx, 1, c, &p, NULL), ATTAMBA_ERR_IO);
    ck_assert_msg(strstr(attamba_context_last_error(ctx), "missing.txt"), "%s", attamba_context_last_error(ctx));
    p.data = text, p.resume = 1;
    snprintf(missing, sizeof missing, "%s/no-run", dir);
    p.out = missing;
    ck_assert_int_eq(attamba_train_run(&ctx, 1, NULL, &p, NULL), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(attamba_context_last_error(ctx), "no checkpoint"), "%s", attamba_context_last_error(ctx));
    p.resume = 0, p.train.seq = 4096; /* windows longer than the validation tail */
    ck_assert_int_eq(attamba_train_run(&ctx, 1, c, &p, NULL), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(attamba_context_last_error(ctx), "too few"), "%s", attamba_context_last_error(ctx));
    p.train.seq = 32, p.train.batch = 0;
    ck_assert_int_eq(attamba_train_run(&ctx, 1, c, &p, NULL), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_int_eq(attamba_train_run(&ctx, 1, c, NULL, NULL), ATTAMBA_ERR_INVALID_ARG);
    ck_assert(!attamba_checkpoint_exists(NULL));
    attamba_config_destroy(c);
    uint64_t cur;
    attamba_context_memory(ctx, &cur, NULL);
    ck_assert_uint_eq(cur, 0);
    attamba_context_destroy(ctx);
    tu_remove_dir(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("api_train");
    TCase *t = tcase_create("api");
    tcase_set_timeout(t, 900);
    tcase_add_test(t, argmax_is_the_forward_pass_argmax);
    tcase_add_test(t, validate_on_a_short_file);
    tcase_add_test(t, token_files_and_standalone_tokenizers);
    tcase_add_test(t, tasks_generated_and_scored);
    tcase_add_test(t, training_runs_resume_exactly);
    suite_add_tcase(s, t);
    return tu_run(s);
}
