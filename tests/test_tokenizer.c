/* SentencePiece tokenizers (src/model/tokenizer.h): trained here with the lossless options, every text
 * comes back byte for byte (held-out text, awkward whitespace, emoji, bytes that are not UTF-8); a model
 * keeps its tokenizer file beside its config and refuses a missing, corrupt or disagreeing one. Without
 * SentencePiece in the build, the cases that need it say so and pass, and the kind is refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "testutil.h"

#define VOCAB 512

/* Made once by the fixture (before the cases fork): the training and held-out texts and the model. */
static char *train_text, *held_text;
static size_t train_len, held_len;
static void *spm_model;
static size_t spm_size;
static char model_path[128];

#define NEED_SENTENCEPIECE()                                                                              \
    do {                                                                                                  \
        if (!tokenizer_have_sentencepiece()) {                                                            \
            printf("%s: skipped: this build has no SentencePiece (libsentencepiece-dev)\n", __func__);   \
            return;                                                                                       \
        }                                                                                                 \
    } while (0)

/* n bytes of the bundled corpus (build/corpus/kjv.txt, scripts/corpus.sh) from offset, if it is there. */
static char *corpus_part(size_t offset, size_t n, size_t *len) {
    char path[512], err[600];
    const char *slash = strrchr(ATTAMBA_CLI, '/');
    snprintf(path, sizeof path, "%.*s/corpus/kjv.txt", slash ? (int)(slash - ATTAMBA_CLI) : 1,
             slash ? ATTAMBA_CLI : ".");
    size_t all = 0;
    char *text = core_read_file(path, offset + n, &all, err, sizeof err);
    if (!text || all < offset + n) {
        free(text);
        return NULL;
    }
    memmove(text, text + offset, n);
    text[n] = 0;
    *len = n;
    return text;
}

/* Else sentences of common words, numbers and punctuation from a seed, one or two a line. */
static char *generated(uint64_t seed, size_t n, size_t *len) {
    static const char *words[] = {"the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "was", "with",
                                  "he", "be", "on", "by", "as", "at", "his", "from", "they", "we", "her", "were",
                                  "which", "all", "one", "there", "light", "water", "earth", "said", "unto"};
    core_rng r;
    core_rng_seed(&r, seed);
    char *text = malloc(n + 64);
    size_t w = 0;
    while (w < n) {
        int k = 3 + (int)(core_rng_next(&r) % 10);
        for (int i = 0; i < k && w < n; i++) {
            const char *word = words[core_rng_next(&r) % CORE_LEN(words)];
            w += (size_t)sprintf(text + w, "%s%c%s", i ? " " : "", i ? word[0] : word[0] - 32, word + 1);
        }
        if (core_rng_next(&r) % 4 == 0) w += (size_t)sprintf(text + w, " %u", (unsigned)(core_rng_next(&r) % 1000));
        w += (size_t)sprintf(text + w, "%s", (const char *[]){".\n", "; ", "!\n", ", and "}[core_rng_next(&r) % 4]);
    }
    text[n] = 0;
    *len = n;
    return text;
}

static void setup(void) {
    if (!tokenizer_have_sentencepiece() || spm_model) return;
    if (!(train_text = corpus_part(0, 300000, &train_len)) || !(held_text = corpus_part(3500000, 20000, &held_len))) {
        free(train_text);
        train_text = generated(1, 200000, &train_len);
        held_text = generated(2, 20000, &held_len);
    }
    char err[800];
    attamba_status s =
        tokenizer_train_sentencepiece(train_text, train_len, VOCAB, &spm_model, &spm_size, err, sizeof err);
    ck_assert_msg(s == ATTAMBA_OK, "training: %s", err);
    strcpy(model_path, "/tmp/attamba-spm-XXXXXX");
    int fd = mkstemp(model_path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, spm_model, spm_size), (ssize_t)spm_size);
    close(fd);
}

static tokenizer *load(void) {
    tokenizer *t = NULL;
    char err[800];
    attamba_status s = tokenizer_create_sentencepiece(spm_model, spm_size, &t, err, sizeof err);
    ck_assert_msg(s == ATTAMBA_OK, "loading: %s", err);
    return t;
}

/* Encodes text and checks that its tokens' bytes, one token at a time, are the text; the token count. */
static int64_t check_round_trip(const tokenizer *t, const char *text, size_t len, const char *what) {
    int64_t n = -1, n2 = -1;
    ck_assert_int_eq(t->encode(t, text, len, NULL, 0, &n), ATTAMBA_OK); /* sizing */
    ck_assert_msg(n >= (len > 0) && n <= (int64_t)len, "%s: %lld tokens for %zu bytes", what, (long long)n, len);
    int32_t *ids = malloc((size_t)(n + 1) * sizeof *ids);
    char *back = malloc(len + 1);
    ck_assert_int_eq(t->encode(t, text, len, ids, n, &n2), ATTAMBA_OK);
    ck_assert_int_eq(n2, n);
    size_t w = 0;
    for (int64_t i = 0; i < n; i++) {
        ck_assert_msg(ids[i] >= 0 && ids[i] < t->vocab_size, "%s: id %d", what, ids[i]);
        ck_assert_msg(ids[i] != t->bos_id && ids[i] != t->eos_id && ids[i] != 0, "%s: special id %d", what, ids[i]);
        int k = t->decode(t, ids[i], back + w, (int)(len - w));
        ck_assert_msg(k >= 1 && w + (size_t)k <= len, "%s: token %lld (id %d) gives %d bytes", what, (long long)i,
                      ids[i], k);
        w += (size_t)k;
    }
    ck_assert_msg(w == len && !memcmp(back, text, len), "%s: the text does not come back (%zu of %zu bytes)", what,
                  w, len);
    free(ids);
    free(back);
    return n;
}

START_TEST(held_out_and_awkward_text_comes_back_exactly) {
    NEED_SENTENCEPIECE();
    tokenizer *t = load();
    ck_assert_int_eq(t->vocab_size, VOCAB);
    ck_assert_int_eq(t->bos_id, 1);
    ck_assert_int_eq(t->eos_id, 2);
    int64_t n = check_round_trip(t, train_text, train_len, "training text");
    int64_t h = check_round_trip(t, held_text, held_len, "held-out text");
    printf("vocab %d: training text %.4f tokens per byte, held-out %.4f\n", t->vocab_size,
           (double)n / (double)train_len, (double)h / (double)held_len);
    ck_assert_msg(h < (int64_t)held_len * 6 / 10, "held-out text: %lld tokens for %zu bytes (no merges learned?)",
                  (long long)h, held_len);
    static const char *awkward[] = {
        " leading space", "trailing space ", "double  spaces  inside", "   ", "\ttabs\tand\t\ttabs\t",
        "crlf\r\nline\r\n",
        "\n\n\nnewlines only\n", "emoji \xF0\x9F\x98\x80\xF0\x9F\x8E\x89 and \xE4\xB8\xAD\xE6\x96\x87 (CJK)",
        "accents: \xC3\xA9\xC3\xA0\xC3\xBC \xC3\x85ngstr\xC3\xB6m", "ZWJ \xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9",
        "a literal \xE2\x96\x81 (U+2581) and \xE2\x96\x81\xE2\x96\x81", "control \x01\x02\x1b[0m", "\xEF\xBB\xBF" "BOM",
        "<s></s><unk><0x41> piece names as text", "x"};
    for (size_t i = 0; i < CORE_LEN(awkward); i++) check_round_trip(t, awkward[i], strlen(awkward[i]), awkward[i]);
    /* NUL and bytes that are not UTF-8 (stray continuation, overlong, surrogate, above U+10FFFF, cut short) */
    static const struct { const char *s; size_t n; } raw[] = {
        {"a\0b\0", 4}, {"\xFF\xFE\x80", 3}, {"\xC0\x80", 2}, {"\xED\xA0\x80", 3}, {"\xF4\x90\x80\x80", 4},
        {"cut \xE2\x96", 6}, {"\xF0\x9F\x98", 3}, {"mixed \xC3\xA9\xC3 \xA9\n", 11}};
    for (size_t i = 0; i < CORE_LEN(raw); i++) check_round_trip(t, raw[i].s, raw[i].n, "not UTF-8");
    check_round_trip(t, "", 0, "empty");
    tokenizer_destroy(t);
}
END_TEST

START_TEST(encode_sizes_and_truncates_like_the_byte_tokenizer) {
    NEED_SENTENCEPIECE();
    tokenizer *t = load();
    const char *text = "In the beginning God created the heaven and the earth.\n";
    int64_t n = 0, m = 0;
    int32_t all[64], few[3] = {-7, -7, -7};
    ck_assert_int_eq(t->encode(t, text, strlen(text), all, 64, &n), ATTAMBA_OK);
    ck_assert_int_eq(t->encode(t, text, strlen(text), few, 2, &m), ATTAMBA_OK);
    ck_assert_int_eq(m, n); /* the whole text's count */
    ck_assert_int_eq(few[0], all[0]);
    ck_assert_int_eq(few[1], all[1]);
    ck_assert_int_eq(few[2], -7); /* nothing past cap */
    char piece[8];
    ck_assert_int_eq(t->decode(t, t->bos_id, piece, sizeof piece), 0); /* specials have no bytes */
    ck_assert_int_eq(t->decode(t, t->eos_id, piece, sizeof piece), 0);
    ck_assert_int_eq(t->decode(t, 0, piece, sizeof piece), 0); /* <unk> */
    ck_assert_int_eq(t->decode(t, VOCAB, piece, sizeof piece), 0);
    tokenizer_destroy(t);
}
END_TEST

/* A text without spaces gives a model without "▁": spaces then go through the byte pieces. */
START_TEST(a_model_that_never_saw_a_space_still_gives_spaces_back) {
    NEED_SENTENCEPIECE();
    char text[2000] = "", err[800];
    for (int i = 0; i < 100; i++) strcat(text, i % 2 ? "abc\n" : "abcdef,ab\n");
    void *file;
    size_t size;
    tokenizer *t;
    tu_ok(tokenizer_train_sentencepiece(text, strlen(text), 300, &file, &size, err, sizeof err));
    ck_assert_msg(tokenizer_create_sentencepiece(file, size, &t, err, sizeof err) == ATTAMBA_OK, "%s", err);
    ck_assert_int_lt(t->vocab_size, 300); /* a small text: fewer pieces than asked */
    const char *s = " ab c  abc\xE2\x96\x81 \n";
    check_round_trip(t, s, strlen(s), "spaces without a space piece");
    tokenizer_destroy(t);
    free(file);
}
END_TEST

START_TEST(files_that_are_not_sentencepiece_models_are_refused) {
    NEED_SENTENCEPIECE();
    tokenizer *t = (tokenizer *)1;
    char err[800] = "";
    ck_assert_int_eq(tokenizer_create_sentencepiece("not a model", 11, &t, err, sizeof err), ATTAMBA_ERR_FORMAT);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(err, "not a SentencePiece model"), "%s", err);
    ck_assert_int_eq(tokenizer_create_sentencepiece(spm_model, spm_size / 2, &t, err, sizeof err), ATTAMBA_ERR_FORMAT);
    ck_assert_int_eq(tokenizer_create_sentencepiece("", 0, &t, err, sizeof err), ATTAMBA_ERR_FORMAT);
    ck_assert_int_eq(tokenizer_load_sentencepiece("/nonexistent/t.model", &t, err, sizeof err), ATTAMBA_ERR_IO);
    ck_assert_msg(strstr(err, "/nonexistent/t.model"), "%s", err);
}
END_TEST

START_TEST(a_build_without_sentencepiece_refuses_the_kind) {
    if (tokenizer_have_sentencepiece()) {
        printf("%s: skipped: this build has SentencePiece\n", __func__);
        return;
    }
    tokenizer *t = NULL;
    void *m = NULL;
    size_t size = 0;
    char err[400] = "";
    ck_assert_int_eq(tokenizer_create_sentencepiece("x", 1, &t, err, sizeof err), ATTAMBA_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err, "no SentencePiece"), "%s", err);
    ck_assert_int_eq(tokenizer_train_sentencepiece("x", 1, 300, &m, &size, err, sizeof err), ATTAMBA_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err, "no SentencePiece"), "%s", err);
}
END_TEST

/* ---- a model with a SentencePiece tokenizer ---- */

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* A saved tiny model whose tokenizer is the trained one: its directory (malloc'd). */
static char *saved_model(void) {
    model_config c;
    model_config_default(&c);
    c.tokenizer = TOKENIZER_SENTENCEPIECE;
    c.vocab_size = VOCAB, c.bos_id = 1, c.eos_id = 2;
    strcpy(c.tokenizer_file, "tokenizer.model");
    strcpy(c.tokenizer_path, model_path);
    model *m;
    tu_ok(model_create(tu_ctx(), &c, &m));
    tu_ok(model_init_random(m, 3));
    char *dir = tu_temp_dir();
    tu_ok(model_save(m, dir));
    model_destroy(m);
    return dir;
}

static char *dir_file(const char *dir, const char *name) {
    static char path[4][300];
    static int k;
    k = (k + 1) % 4;
    snprintf(path[k], sizeof path[k], "%s/%s", dir, name);
    return path[k];
}

START_TEST(a_saved_model_keeps_its_tokenizer_beside_the_config) {
    NEED_SENTENCEPIECE();
    char *dir = saved_model(), *text = tu_slurp(dir_file(dir, "config.json"));
    ck_assert_msg(strstr(text, "\"sentencepiece\"") && strstr(text, "\"tokenizer.model\""), "%s", text);
    free(text);
    model *m;
    tu_ok(model_load(tu_ctx(), dir, &m));
    const attamba_tokenizer *t;
    tu_ok(attamba_model_tokenizer(m, &t));
    ck_assert_int_eq(attamba_tokenizer_vocab_size(t), VOCAB);
    ck_assert_int_eq(attamba_tokenizer_bos(t), 1);
    const char *s = "  And God saw the light, that it was good.\r\n\t\xF0\x9F\x98\x80 ";
    int32_t ids[128];
    int64_t n;
    tu_ok(attamba_tokenizer_encode(t, s, strlen(s), 1, ids, 128, &n));
    ck_assert_int_eq(ids[0], 1);
    char back[128];
    size_t len;
    tu_ok(attamba_tokenizer_decode(t, ids, n, back, sizeof back, &len));
    ck_assert_uint_eq(len, strlen(s));
    ck_assert_str_eq(back, s);
    /* saved again elsewhere after the original file is gone: the model holds the file's bytes */
    char *again = tu_temp_dir();
    ck_assert_int_eq(unlink(dir_file(dir, "tokenizer.model")), 0);
    tu_ok(model_save(m, again));
    model_destroy(m);
    tu_ok(model_load(tu_ctx(), again, &m));
    model_destroy(m);
    free(dir);
    free(again);
}
END_TEST

START_TEST(a_missing_or_corrupt_tokenizer_file_is_refused) {
    NEED_SENTENCEPIECE();
    char *dir = saved_model();
    model *m = NULL;
    ck_assert_int_eq(unlink(dir_file(dir, "tokenizer.model")), 0);
    ck_assert_int_eq(model_load(tu_ctx(), dir, &m), ATTAMBA_ERR_IO);
    ck_assert_ptr_null(m);
    ck_assert_msg(strstr(tu_ctx()->err, "tokenizer") && strstr(tu_ctx()->err, "tokenizer.model"), "%s", tu_ctx()->err);
    write_file(dir_file(dir, "tokenizer.model"), "garbage, not a protobuf", 23);
    ck_assert_int_eq(model_load(tu_ctx(), dir, &m), ATTAMBA_ERR_FORMAT);
    ck_assert_msg(strstr(tu_ctx()->err, "not a SentencePiece model"), "%s", tu_ctx()->err);
    write_file(dir_file(dir, "tokenizer.model"), spm_model, spm_size - 100); /* cut short */
    ck_assert_int_eq(model_load(tu_ctx(), dir, &m), ATTAMBA_ERR_FORMAT);
    ck_assert_msg(strstr(tu_ctx()->err, "tokenizer.model"), "%s", tu_ctx()->err);
    ck_assert_ptr_null(m);
    free(dir);
}
END_TEST

START_TEST(a_config_that_disagrees_with_its_tokenizer_is_refused) {
    NEED_SENTENCEPIECE();
    char *dir = saved_model();
    model_config c;
    char err[800];
    tu_ok(model_config_load(dir_file(dir, "config.json"), &c, err, sizeof err));
    ck_assert_str_eq(c.tokenizer_path, dir_file(dir, "tokenizer.model")); /* beside the config */
    static const struct { int vocab, bos, eos; } bad[] = {{600, 1, 2}, {VOCAB, 2, 1}, {VOCAB, 1, 3}};
    for (size_t i = 0; i < CORE_LEN(bad); i++) {
        model_config d = c;
        d.vocab_size = bad[i].vocab, d.bos_id = bad[i].bos, d.eos_id = bad[i].eos;
        tu_ok(model_config_save(&d, dir_file(dir, "config.json"), err, sizeof err));
        model *m = NULL;
        ck_assert_int_eq(model_load(tu_ctx(), dir, &m), ATTAMBA_ERR_FORMAT);
        ck_assert_msg(strstr(tu_ctx()->err, "512 pieces, bos 1, eos 2") && strstr(tu_ctx()->err, "config says"), "%s",
                      tu_ctx()->err);
        ck_assert_int_eq(model_create(tu_ctx(), &d, &m), ATTAMBA_ERR_FORMAT); /* the same from a config */
    }
    free(dir);
}
END_TEST

START_TEST(config_fields_of_the_tokenizer_are_checked) {
    static const struct { const char *json, *needle; } bad[] = {
        {"{\"tokenizer\": \"bpe\"}", "'tokenizer'"},
        {"{\"tokenizer\": \"sentencepiece\"}", "'tokenizer_file'"},
        {"{\"tokenizer\": \"sentencepiece\", \"tokenizer_file\": \"../t.model\"}", "'tokenizer_file'"},
        {"{\"tokenizer\": \"sentencepiece\", \"tokenizer_file\": \"\"}", "'tokenizer_file'"},
        {"{\"tokenizer_file\": \"t.model\"}", "'tokenizer_file'"},
        {"{\"tokenizer\": \"sentencepiece\", \"tokenizer_file\": 3}", "'tokenizer_file'"},
    };
    for (size_t i = 0; i < CORE_LEN(bad); i++) {
        model_config c;
        char err[400] = "";
        ck_assert_int_eq(model_config_from_json(bad[i].json, &c, err, sizeof err), ATTAMBA_ERR_FORMAT);
        ck_assert_msg(strstr(err, bad[i].needle), "%s: %s", bad[i].json, err);
    }
    model_config c;
    char err[400], *json;
    tu_ok(model_config_from_json("{\"tokenizer\": \"sentencepiece\", \"tokenizer_file\": \"t.model\"}", &c, err,
                                 sizeof err));
    ck_assert_int_eq(c.tokenizer, TOKENIZER_SENTENCEPIECE);
    ck_assert_str_eq(c.tokenizer_file, "t.model");
    ck_assert_ptr_nonnull(json = model_config_to_json(&c));
    ck_assert_msg(strstr(json, "\"tokenizer_file\"") && strstr(json, "\"t.model\""), "%s", json);
    free(json);
}
END_TEST

int main(void) {
    Suite *s = suite_create("tokenizer");
    TCase *t = tcase_create("sentencepiece");
    tcase_add_unchecked_fixture(t, setup, NULL);
    tcase_add_test(t, held_out_and_awkward_text_comes_back_exactly);
    tcase_add_test(t, encode_sizes_and_truncates_like_the_byte_tokenizer);
    tcase_add_test(t, a_model_that_never_saw_a_space_still_gives_spaces_back);
    tcase_add_test(t, files_that_are_not_sentencepiece_models_are_refused);
    tcase_add_test(t, a_build_without_sentencepiece_refuses_the_kind);
    suite_add_tcase(s, t);
    t = tcase_create("model");
    tcase_add_unchecked_fixture(t, setup, NULL);
    tcase_add_test(t, a_saved_model_keeps_its_tokenizer_beside_the_config);
    tcase_add_test(t, a_missing_or_corrupt_tokenizer_file_is_refused);
    tcase_add_test(t, a_config_that_disagrees_with_its_tokenizer_is_refused);
    tcase_add_test(t, config_fields_of_the_tokenizer_are_checked);
    suite_add_tcase(s, t);
    int rc = tu_run(s);
    if (model_path[0]) unlink(model_path);
    return rc;
}
