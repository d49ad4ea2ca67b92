/* Recall tasks (src/train/task.c): the generators are deterministic by seed and make the committed
 * small files byte for byte; every answer is what the prompt says it is; a predictor that copies
 * the answer from the prompt scores 100% and a uniform random one scores chance; task files train as
 * whole examples with only the answers scored; bad files are refused; `attamba eval --task` runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "train/data.h"
#include "train/run.h"
#include "train/task.h"
#include "train/train.h"
#include "testutil.h"

static char *filler;
static size_t filler_len;

static task_params mqar_small(void) {
    return (task_params){.kind = TASK_MQAR, .example = 40, .examples = 4, .seed = 7, .vocab = 64,
                         .pairs = {2, 5}, .n_pairs = 2};
}

static task_params passkey_small(void) {
    if (!filler) filler = tu_slurp(GOLDEN_DIR "/tasks/filler.txt"), filler_len = strlen(filler);
    return (task_params){.kind = TASK_PASSKEY, .example = 200, .examples = 3, .seed = 7, .digits = 4,
                         .depth = {0, 0.5, 1}, .n_depth = 3, .filler = (const uint8_t *)filler,
                         .filler_len = (int64_t)filler_len};
}

static task_set generate(task_params p) {
    task_set t;
    char err[300];
    ck_assert_msg(task_generate(&p, &t, err, sizeof err) == ATTAMBA_OK, "%s", err);
    return t;
}

static int same_sets(const task_set *a, const task_set *b) {
    return a->kind == b->kind && a->example == b->example && a->n == b->n && a->n_items == b->n_items &&
           !memcmp(a->tok, b->tok, (size_t)a->n * 2) && !memcmp(a->scored, b->scored, (size_t)a->n) &&
           !memcmp(a->items, b->items, (size_t)a->n_items * sizeof *a->items);
}

/* The file's bytes, for comparing whole files. */
static char *bytes_of(const char *path, size_t *len) {
    char err[300];
    char *b = core_read_file(path, 0, len, err, sizeof err);
    ck_assert_msg(b != NULL, "%s", err);
    return b;
}

START_TEST(generators_are_deterministic_and_make_the_committed_files) {
    const char *names[2] = {"mqar-small.task", "passkey-small.task"};
    for (int k = 0; k < 2; k++) {
        task_params p = k ? passkey_small() : mqar_small();
        task_set a = generate(p), b = generate(p);
        ck_assert_msg(same_sets(&a, &b), "%s: the same seed made two different sets", names[k]);
        p.seed = 8;
        task_set c = generate(p);
        ck_assert_msg(!same_sets(&a, &c), "%s: seeds 7 and 8 made the same set", names[k]);
        /* written, the set is the committed file byte for byte, and reads back as itself */
        char *dir = tu_temp_dir(), path[600], golden[600], err[300];
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        snprintf(golden, sizeof golden, "%s/tasks/%s", GOLDEN_DIR, names[k]);
        ck_assert_int_eq(task_write(path, &a, err, sizeof err), ATTAMBA_OK);
        size_t la, lg;
        char *x = bytes_of(path, &la), *y = bytes_of(golden, &lg);
        ck_assert_msg(la == lg && !memcmp(x, y, la), "%s differs from %s (%zu vs %zu bytes)", path, golden, la, lg);
        task_set r;
        ck_assert_int_eq(task_read(golden, &r, err, sizeof err), ATTAMBA_OK);
        ck_assert(same_sets(&a, &r));
        free(x), free(y), free(dir);
        task_free(&a), task_free(&b), task_free(&c), task_free(&r);
    }
}
END_TEST

START_TEST(every_answer_is_what_the_prompt_says) {
    task_params p = mqar_small();
    p.examples = 200, p.example = 96, p.pairs[1] = 20, p.seed = 3;
    task_set t = generate(p);
    int64_t scored = 0;
    for (int64_t i = 0; i < t.n; i++) scored += t.scored[i];
    ck_assert_int_eq(scored, t.n_items); /* one scored token per query, nothing else */
    for (int64_t i = 0; i < t.n_items; i++) {
        const task_item *it = &t.items[i];
        int64_t ex = it->start / t.example * t.example;
        const uint16_t *e = t.tok + ex;
        int q = (int)(it->start - ex) - 1, v = it->source;
        ck_assert_int_eq(it->len, 1);
        ck_assert(it->group == 2 || it->group == 20);
        ck_assert_msg(e[q] == e[v - 1] && e[q + 1] == e[v], "item %lld: query %d/%d, pair %d/%d", (long long)i, e[q],
                      e[q + 1], e[v - 1], e[v]);
        ck_assert(e[v - 1] >= 1 && e[v - 1] < 32 && e[v] >= 32 && e[v] < 64); /* keys and values apart */
        ck_assert_int_eq(it->distance, q + 1 - v);
        for (int j = 0; j < v - 1; j++) ck_assert(e[j] != e[q]); /* the pair is the key's first occurrence */
    }
    task_free(&t);
    task_set k = generate(passkey_small());
    for (int64_t i = 0; i < k.n_items; i++) {
        const task_item *it = &k.items[i];
        int64_t ex = it->start / k.example * k.example;
        ck_assert_int_eq(it->start + it->len, ex + k.example); /* the digits end the example */
        ck_assert_int_eq(it->group, (int)i == 0 ? 0 : (int)i == 1 ? 50 : 100);
        for (int j = 0; j < it->len; j++) /* the needle's digits (ending at source) are the answer */
            ck_assert_int_eq(k.tok[ex + it->source - (it->len - 1) + j], k.tok[it->start + j]);
    }
    task_free(&k);
}
END_TEST

/* Copies the answer from the prompt, as a perfect recall model would, from the tokens alone. mqar: after
 * a key seen before as a key (followed by a value), that value. passkey: after "pass key is " seen
 * twice, the digits that followed it the first time. */
static int predict_copy(void *user, const int32_t *tokens, int B, int T, int32_t *argmax) {
    const task_set *t = user;
    static const char cue[] = "pass key is ";
    int cl = (int)strlen(cue);
    for (int b = 0; b < B; b++) {
        const int32_t *x = tokens + b * T;
        for (int i = 0; i < T; i++) {
            int32_t guess = 0;
            if (t->kind == TASK_MQAR) {
                for (int j = 1; j < i; j += 1)
                    if (x[j] == x[i] && x[j] >= 1 && x[j] < 128 && x[j + 1] >= 128) {
                        guess = x[j + 1];
                        break;
                    }
            } else {
                int cues = 0, first = -1, done = 0; /* digits typed so far since the last cue */
                for (int j = 1; j + cl <= i + 1; j++) {
                    int match = 1;
                    for (int c = 0; c < cl && match; c++) match = x[j + c] == cue[c];
                    if (match) cues++, first = first < 0 ? j + cl : first, done = i + 1 - (j + cl);
                }
                if (cues >= 2 && done >= 0) guess = x[first + done];
            }
            argmax[b * T + i] = guess;
        }
    }
    return 0;
}

static int predict_uniform(void *user, const int32_t *tokens, int B, int T, int32_t *argmax) {
    core_rng *rng = user;
    (void)tokens;
    for (int i = 0; i < B * T; i++) argmax[i] = (int32_t)(core_rng_next(rng) % 128);
    return 0;
}

START_TEST(copying_scores_all_and_guessing_scores_chance) {
    task_params p = mqar_small();
    p.vocab = 256, p.example = 128, p.examples = 300, p.pairs[0] = 8, p.pairs[1] = 24;
    task_set m = generate(p), k = generate(passkey_small());
    task_report r;
    ck_assert_int_eq(task_score(&m, 256, predict_copy, &m, 7, 4, &r), 0);
    ck_assert_int_eq(r.all.total, 150 * 8 + 150 * 24);
    ck_assert_int_eq(r.all.right, r.all.total);
    ck_assert_int_eq(r.n_group, 2);
    ck_assert_int_eq(r.n_offset, 4); /* facts at every offset of a chunk of 4 */
    ck_assert_int_eq(task_score(&k, 256, predict_copy, &k, 2, 0, &r), 0);
    ck_assert_int_eq(r.all.total, 3);
    ck_assert_int_eq(r.all.right, 3);
    ck_assert_int_eq(r.tokens.total, 12); /* 4 digits each */
    ck_assert_int_eq(r.tokens.right, 12);
    ck_assert_int_eq(r.n_group, 3);
    /* values are 128 of 256 tokens; a uniform guess among 128 tokens that include none of them
     * scores 0, and among the values (shifted) 1/128 */
    core_rng rng;
    core_rng_seed(&rng, 11);
    ck_assert_int_eq(task_score(&m, 256, predict_uniform, &rng, 16, 0, &r), 0);
    ck_assert_int_eq(r.all.right, 0);
    for (int64_t i = 0; i < m.n; i++) /* the same set with values moved into [0, 128) */
        if (m.tok[i] >= 128) m.tok[i] -= 128;
    ck_assert_int_eq(task_score(&m, 256, predict_uniform, &rng, 16, 0, &r), 0);
    double lo, hi;
    task_wilson(r.all.right, r.all.total, &lo, &hi);
    ck_assert_msg(lo <= 1.0 / 128 && 1.0 / 128 <= hi, "%lld of %lld: [%.4f, %.4f] misses chance 1/128",
                  (long long)r.all.right, (long long)r.all.total, lo, hi);
    ck_assert_msg(hi - lo < 0.01, "interval [%.4f, %.4f] too wide to mean anything", lo, hi);
    task_free(&m), task_free(&k);
}
END_TEST

START_TEST(task_files_train_as_whole_examples) {
    char err[300];
    dataset d;
    ck_assert_int_eq(data_open(GOLDEN_DIR "/tasks/mqar-small.task", &d, err, sizeof err), ATTAMBA_OK);
    ck_assert_int_eq(d.example, 40);
    ck_assert_int_eq(d.n, 160);
    ck_assert_int_eq(data_train_end(&d, 0.3), 80); /* 112 rounded down to whole examples */
    core_rng rng;
    core_rng_seed(&rng, 1);
    for (int i = 0; i < 50; i++) {
        int64_t s = data_random_start(&d, &rng, 0, 120, 40);
        ck_assert(s % 40 == 0 && s >= 0 && s < 120);
    }
    int32_t tok[40], tgt[40];
    data_window(&d, 40, 40, 1, tok, tgt);
    int scored = 0;
    for (int t = 0; t < 40; t++) {
        ck_assert_int_eq(tok[t], t ? d.tok[40 + t - 1] : 1);
        ck_assert_int_eq(tgt[t], d.scored[40 + t] ? d.tok[40 + t] : DATA_UNSCORED);
        scored += tgt[t] != DATA_UNSCORED;
    }
    ck_assert_int_eq(scored, 5); /* the second example has 5 pairs */
    data_close(&d);
    /* training on it: --seq must be the example length */
    rt_ctx *ctx = tu_ctx();
    char *out = tu_temp_dir();
    model_config c;
    train_hparams h;
    train_run_opts o = {.data = GOLDEN_DIR "/tasks/mqar-small.task", .out = out, .val_frac = 0.25, .seed = 1,
                        .val_windows = 1};
    model_config_default(&c);
    train_hparams_default(&h, 2);
    h.batch = 2, h.seq = 32, h.warmup = 1;
    ck_assert_int_eq(train_run(&ctx, 1, &c, &h, &o, NULL), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(ctx->err, "--seq 40") != NULL, "%s", ctx->err);
    h.seq = 40;
    double val;
    tu_ok(train_run(&ctx, 1, &c, &h, &o, &val));
    /* only answers scored: an untrained model is near ln(258) on them */
    ck_assert_msg(val > 4 && val < 7, "validation loss %.3f on the answers", val);
    free(out);
}
END_TEST

START_TEST(bad_task_files_are_refused) {
    char *dir = tu_temp_dir(), path[600], err[300];
    size_t len;
    char *good = bytes_of(GOLDEN_DIR "/tasks/mqar-small.task", &len);
    task_set t;
    ck_assert_int_eq(task_read(GOLDEN_DIR "/tasks/mqar-small.task", &t, err, sizeof err), ATTAMBA_OK);
    int first_answer = 32 + 2 * (int)t.n + (int)t.items[0].start; /* its scored flag */
    task_free(&t);
    struct {
        const char *what;
        size_t size;
        int at, value;
    } cases[] = {{"truncated", len - 5, -1, 0},
                 {"header count", len, 16, 0x7f},          /* tokens count */
                 {"item outside", len, (int)len - 24 + 4, 0x7f}, /* the last item's start, high bytes */
                 {"unscored answer", len, first_answer, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(path, sizeof path, "%s/bad.task", dir);
        char *b = malloc(len);
        memcpy(b, good, len);
        if (cases[i].at >= 0) b[cases[i].at] = (char)cases[i].value;
        FILE *f = fopen(path, "wb");
        fwrite(b, 1, cases[i].size, f);
        fclose(f);
        ck_assert_msg(task_read(path, &t, err, sizeof err) == ATTAMBA_ERR_FORMAT, "%s: read", cases[i].what);
        ck_assert_msg(strstr(err, "bad.task") != NULL, "%s: %s", cases[i].what, err);
        free(b);
    }
    task_params p = mqar_small();
    p.pairs[0] = 11; /* 4 x 11 > 40 tokens */
    ck_assert_int_eq(task_generate(&p, &t, err, sizeof err), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(err, "11 pairs") != NULL, "%s", err);
    p = passkey_small();
    p.filler_len = 10;
    ck_assert_int_eq(task_generate(&p, &t, err, sizeof err), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(err, "filler") != NULL, "%s", err);
    free(good);
    free(dir);
}
END_TEST

START_TEST(eval_task_runs_from_the_command_line) {
    char *dir = tu_temp_dir(), cmd[2048], line[512];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && '%s' init --preset tiny --out m > /dev/null && '%s' data mqar --seq 48 --pairs 4 "
             "--examples 20 --vocab 258 --seed 5 --out t.task > /dev/null && '%s' eval --model m --task mqar "
             "--data t.task --json e.json 2>&1 && '%s' eval --model m --task passkey --data t.task 2>&1",
             dir, ATTAMBA_CLI, ATTAMBA_CLI, ATTAMBA_CLI, ATTAMBA_CLI);
    FILE *p = popen(cmd, "r");
    int saw_total = 0, saw_refusal = 0;
    while (fgets(line, sizeof line, p)) {
        saw_total |= strstr(line, "of 80 answers exact") != NULL;
        saw_refusal |= strstr(line, "holds mqar examples") != NULL;
    }
    ck_assert_int_ne(pclose(p), 0); /* the second eval refuses the wrong task */
    ck_assert_msg(saw_total && saw_refusal, "output: total %d, refusal %d", saw_total, saw_refusal);
    snprintf(cmd, sizeof cmd, "%s/e.json", dir);
    char *json = tu_slurp(cmd);
    ck_assert_ptr_nonnull(strstr(json, "\"by_offset\""));
    free(json);
    free(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("task");
    TCase *t = tcase_create("task");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, generators_are_deterministic_and_make_the_committed_files);
    tcase_add_test(t, every_answer_is_what_the_prompt_says);
    tcase_add_test(t, copying_scores_all_and_guessing_scores_chance);
    tcase_add_test(t, task_files_train_as_whole_examples);
    tcase_add_test(t, bad_task_files_are_refused);
    tcase_add_test(t, eval_task_runs_from_the_command_line);
    suite_add_tcase(s, t);
    return tu_run(s);
}
