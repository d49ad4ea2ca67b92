/* The command-line tool as a user runs it: the reproducers of the hardening campaign (issue 13), each
 * a test named after its finding. Every one must end with a clear message and a non-zero exit. */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model/tokenizer.h"
#include "testutil.h"

/* Runs `attamba ARGS` (through sh, stderr folded into stdout); returns the exit status and keeps the
 * output in out. */
static int cli(char *out, size_t cap, const char *fmt, ...) {
    char args[1024], cmd[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "timeout 300 '%s' %s 2>&1", ATTAMBA_CLI, args); /* a hang fails as exit 124 */
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static char *temp_dir(void) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/attamba-cli-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(path));
    return path;
}

static void write_text(const char *path, int bytes) {
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < bytes; i++) fputc("In the beginning God created the heaven and the earth. "[i % 55], f);
    fclose(f);
}

#define EXPECT_FAILS(rc, out, needle)                                                                 \
    do {                                                                                              \
        ck_assert_msg((rc) != 0 && (rc) < 128, "exit %d (want a clean non-zero exit): %s", (rc), (out)); \
        ck_assert_msg(strstr((out), (needle)), "message lacks '%s': %s", (needle), (out));           \
    } while (0)

/* Finding 1: a resumed run checks its data against the checkpoint's window length, not --seq. */
START_TEST(finding_1_resume_on_data_shorter_than_the_saved_window_is_refused) {
    char out[8192], *dir = temp_dir(), big[128], small[128], run[128];
    snprintf(big, sizeof big, "%s/big.txt", dir);
    snprintf(small, sizeof small, "%s/small.txt", dir);
    snprintf(run, sizeof run, "%s/run", dir);
    write_text(big, 3000);
    write_text(small, 60);
    int rc = cli(out, sizeof out, "train --preset tiny --seq 100 --batch 1 --steps 1 --data %s --out %s", big, run);
    ck_assert_msg(rc == 0, "training failed: %s", out);
    rc = cli(out, sizeof out, "train --resume --seq 2 --steps 2 --data %s --out %s", small, run);
    EXPECT_FAILS(rc, out, "too few for windows of 100");
}
END_TEST

/* Finding 2: --resume on a directory without a checkpoint says so (and reads no uninitialised config). */
START_TEST(finding_2_resume_without_a_checkpoint_says_so) {
    char out[8192], *dir = temp_dir(), data[128];
    snprintf(data, sizeof data, "%s/d.txt", dir);
    write_text(data, 3000);
    int rc = cli(out, sizeof out, "train --resume --steps 2 --data %s --out %s/none", data, dir);
    EXPECT_FAILS(rc, out, "no checkpoint in");
}
END_TEST

/* Finding 3: eval with a token buffer it cannot allocate (2 x 16 GiB under an 8 GB address-space limit, or past
 * ASan's 4 GiB allocation limit in the sanitized build) says so instead of writing through NULL. */
START_TEST(finding_3_eval_refuses_a_batch_it_cannot_allocate) {
    char out[8192], *dir = temp_dir(), data[128];
    int rc = cli(out, sizeof out, "init --preset tiny --out %s/m", dir);
    ck_assert_msg(rc == 0, "init failed: %s", out);
    snprintf(data, sizeof data, "%s/d.txt", dir);
    write_text(data, 1100000); /* one window of 2^20 tokens */
    char cmd[1024];
#ifdef ATTAMBA_SANITIZED /* ASan needs its address space: its allocator refuses past 4 GiB instead */
    const char *limit = "export ASAN_OPTIONS=allocator_may_return_null=1:max_allocation_size_mb=4096";
#else
    const char *limit = "ulimit -v 8000000";
#endif
    snprintf(cmd, sizeof cmd, "%s; '%s' eval --model %s/m --data %s --batch 4096 --seq 1048576 2>&1", limit,
             ATTAMBA_CLI, dir, data);
    FILE *p = popen(cmd, "r");
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    int st = pclose(p);
    rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
    EXPECT_FAILS(rc, out, "out of host memory for --batch 4096");
}
END_TEST

/* Finding 6: devices and FIFOs are refused at once instead of read without end or blocked on. */
START_TEST(finding_6_non_regular_files_are_refused_without_blocking) {
    char out[8192], *dir = temp_dir();
    int rc = cli(out, sizeof out, "init --preset tiny --out %s/m", dir);
    ck_assert_msg(rc == 0, "init failed: %s", out);
    rc = cli(out, sizeof out, "eval --model %s/m --data /dev/zero --max-tokens 100", dir);
    EXPECT_FAILS(rc, out, "not a regular file");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "mkdir %s/fifo && cp %s/m/model.safetensors %s/fifo/ && mkfifo %s/fifo/config.json", dir, dir,
             dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    rc = cli(out, sizeof out, "info --model %s/fifo", dir);
    EXPECT_FAILS(rc, out, "not a regular file");
    snprintf(cmd, sizeof cmd, "mkdir %s/fifo2 && cp %s/m/config.json %s/fifo2/ && mkfifo %s/fifo2/model.safetensors", dir,
             dir, dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    rc = cli(out, sizeof out, "generate --model %s/fifo2 --prompt x -n 1", dir);
    EXPECT_FAILS(rc, out, "not a regular file");
}
END_TEST

/* Finding 7: token ids are parsed with range checks; nothing wraps to a valid id. */
START_TEST(finding_7_token_ids_out_of_range_are_refused) {
    char out[8192], *dir = temp_dir(), in[128];
    int rc = cli(out, sizeof out, "init --preset tiny --out %s/m", dir);
    ck_assert_msg(rc == 0, "init failed: %s", out);
    snprintf(in, sizeof in, "%s/tok.txt", dir);
    FILE *f = fopen(in, "w");
    fputs("1 2 4294967297\n", f);
    fclose(f);
    rc = cli(out, sizeof out, "forward --model %s/m --input %s --output %s/o.bin", dir, in, dir);
    EXPECT_FAILS(rc, out, "out of range");
    f = fopen(in, "w");
    fputs("1 2x\n", f);
    fclose(f);
    rc = cli(out, sizeof out, "forward --model %s/m --input %s --output %s/o.bin", dir, in, dir);
    EXPECT_FAILS(rc, out, "is not a token id");
}
END_TEST

/* Finding 8: "too few tokens" names how many there are. */
START_TEST(finding_8_too_few_tokens_names_the_count) {
    char out[8192], *dir = temp_dir(), data[128];
    snprintf(data, sizeof data, "%s/d.txt", dir);
    write_text(data, 40);
    int rc = cli(out, sizeof out, "train --preset tiny --seq 64 --steps 2 --data %s --out %s/run", data, dir);
    EXPECT_FAILS(rc, out, ": 40 tokens are too few");
}
END_TEST

/* Finding 10: a model made from any preset is accepted by generate. */
START_TEST(finding_10_generate_accepts_every_preset) {
    char out[8192], *dir = temp_dir();
    int rc = cli(out, sizeof out, "init --preset paper-60m --out %s/m", dir);
    ck_assert_msg(rc == 0, "init failed: %s", out);
    rc = cli(out, sizeof out, "generate --model %s/m --prompt 'In the' -n 2 --seed 1", dir);
    ck_assert_msg(rc == 0, "generate refused a paper-60m model: %s", out);
}
END_TEST

/* generate's sampling filters: out-of-range values are refused by name; min-p and the repetition
 * penalty run (their semantics: test_loss). */
START_TEST(generate_checks_and_runs_its_sampling_filters) {
    char out[8192], *dir = temp_dir();
    int rc = cli(out, sizeof out, "init --preset tiny --out %s/m", dir);
    ck_assert_msg(rc == 0, "init failed: %s", out);
    const char *bad[] = {"--min-p 2", "--min-p -0.1", "--repeat-penalty 0", "--repeat-last-n 0"};
    const char *name[] = {"min-p", "min-p", "repeat-penalty", "repeat-last-n"};
    for (int i = 0; i < 4; i++) {
        rc = cli(out, sizeof out, "generate --model %s/m --prompt x -n 2 %s", dir, bad[i]);
        ck_assert_msg(rc == 2 && strstr(out, name[i]), "%s: exit %d: %s", bad[i], rc, out);
    }
    rc = cli(out, sizeof out, "generate --model %s/m --prompt 'In the' -n 8 --min-p 0.1 --repeat-penalty 1.5 "
                              "--repeat-last-n 4 --seed 3", dir);
    ck_assert_msg(rc == 0 && strstr(out, "\nprefill "), "generate with filters: exit %d: %s", rc, out);
    /* warm-up runs (a prefill and a decode step each) change nothing the generation writes (greedy: the
     * same text before the timings); -1 is refused */
    char warm[8192];
    const char *greedy = "generate --model %s/m --prompt 'In the' -n 12 --temperature 0 %s";
    rc = cli(out, sizeof out, greedy, dir, "");
    ck_assert_msg(rc == 0 && strstr(out, "\nprefill "), "generate: %s", out);
    rc = cli(warm, sizeof warm, greedy, dir, "--warmup 2");
    ck_assert_msg(rc == 0 && strstr(warm, "\nprefill "), "generate --warmup 2: %s", warm);
    *strstr(out, "\nprefill ") = *strstr(warm, "\nprefill ") = 0;
    ck_assert_msg(!strcmp(out, warm), "--warmup 2 changed the text:\n%s\n---\n%s", out, warm);
    rc = cli(out, sizeof out, "generate --model %s/m --prompt x --warmup -1", dir);
    ck_assert_msg(rc == 2 && strstr(out, "warmup"), "--warmup -1: exit %d: %s", rc, out);
    /* an f16 cache holds fewer bytes (tiny's stored boundaries); q8 is refused */
    long long bytes[2];
    for (int i = 0; i < 2; i++) {
        rc = cli(out, sizeof out, greedy, dir, i ? "--cache-type f16" : "--cache-type f32");
        const char *at = strstr(out, "KV cache ");
        ck_assert_msg(rc == 0 && at && sscanf(at, "KV cache %lld bytes", &bytes[i]) == 1, "generate: %s", out);
    }
    ck_assert_msg(bytes[1] < bytes[0], "f16 cache %lld bytes, f32 %lld", bytes[1], bytes[0]);
    rc = cli(out, sizeof out, "generate --model %s/m --prompt x --cache-type q8", dir);
    ck_assert_msg(rc == 2 && strstr(out, "cache-type"), "--cache-type q8: exit %d: %s", rc, out);
    /* info's estimate for the 18 tokens the runs held (bos and the 6-byte prompt, then 11 of the 12
     * generated: the last is never fed back) is what they held, for both caches */
    for (int i = 0; i < 2; i++) {
        long long est;
        rc = cli(out, sizeof out, "info --model %s/m --context 18 --cache-type %s", dir, i ? "f16" : "f32");
        const char *at = strstr(out, "\n18 ");
        ck_assert_msg(rc == 0 && at && sscanf(at, "\n18 %lld", &est) == 1, "info: %s", out);
        ck_assert_msg(est == bytes[i], "info --cache-type %s: %lld bytes, generate held %lld", i ? "f16" : "f32",
                      est, bytes[i]);
    }
    rc = cli(out, sizeof out, "info --model %s/m --cache-type q8", dir);
    ck_assert_msg(rc == 2 && strstr(out, "cache-type"), "info --cache-type q8: exit %d: %s", rc, out);
}
END_TEST

/* Device sets: refused lists say why; a one-device set trains as --device does. */
START_TEST(device_sets_are_checked_before_anything_runs) {
    char out[8192], *dir = temp_dir(), data[128];
    snprintf(data, sizeof data, "%s/d.txt", dir);
    write_text(data, 3000);
    const char *run = "train --preset tiny --seq 32 --batch 2 --steps 1 --val-windows 1";
    int rc = cli(out, sizeof out, "%s --data %s --out %s/a --device 0:0 --devices all", run, data, dir);
    EXPECT_FAILS(rc, out, "not both");
    rc = cli(out, sizeof out, "%s --data %s --out %s/a --devices 0:0,0:0", run, data, dir);
    EXPECT_FAILS(rc, out, "twice");
    rc = cli(out, sizeof out, "%s --data %s --out %s/a --devices 0:0,", run, data, dir);
    EXPECT_FAILS(rc, out, "bad device list");
    setenv("ATTAMBA_DEVICES", "9:9", 1);
    rc = cli(out, sizeof out, "%s --data %s --out %s/a", run, data, dir);
    EXPECT_FAILS(rc, out, "no device 9:9");
    unsetenv("ATTAMBA_DEVICES");
    rc = cli(out, sizeof out, "%s --data %s --out %s/b --devices 0:0", run, data, dir);
    ck_assert_msg(rc == 0 && strstr(out, "device 0:0"), "exit %d: %s", rc, out);
}
END_TEST

/* tune --show prints the table with its sources; an environment override shows as such; a tuner run
 * ends by saying where it stored its values. */
START_TEST(tune_shows_the_table_in_force) {
    char out[16384];
    setenv("ATTAMBA_NORM_GROUP", "40", 1);
    int rc = cli(out, sizeof out, "tune --show");
    unsetenv("ATTAMBA_NORM_GROUP");
    ck_assert_msg(rc == 0 && strstr(out, "class ") && strstr(out, "gemm.backend") && strstr(out, "ssm.decode_wg"),
                  "exit %d: %s", rc, out);
    char *row = strstr(out, "norm.group");
    ck_assert_msg(row && strstr(row, "40") && strstr(row, "env ATTAMBA_NORM_GROUP"), "%s", out);
    rc = cli(out, sizeof out, "tune --preset nosuch");
    EXPECT_FAILS(rc, out, "nosuch");
    /* a (short) search stores its result where --show then finds it */
    char *dir = temp_dir();
    setenv("ATTAMBA_CACHE_DIR", dir, 1);
    rc = cli(out, sizeof out, "tune --preset tiny --quick --tokens 64 --only norm");
    ck_assert_msg(rc == 0 && strstr(out, "norm") && strstr(out, "tuned values ->"), "exit %d: %s", rc, out);
    rc = cli(out, sizeof out, "tune --show");
    unsetenv("ATTAMBA_CACHE_DIR");
    ck_assert_msg(rc == 0 && strstr(out, "norm.group"), "exit %d: %s", rc, out);
}
END_TEST

/* compile writes every variant a model needs; with the bundle and the cache off, generate and a
 * training step compile nothing (ATTAMBA_LOG=info names each program's origin). */
START_TEST(a_compiled_bundle_serves_every_program) {
    char out[65536], *dir = temp_dir(), data[256];
    snprintf(data, sizeof data, "%s/d.txt", dir);
    write_text(data, 4000);
    int rc = cli(out, sizeof out, "init --preset tiny --out %s/m", dir);
    ck_assert_msg(rc == 0, "init: %s", out);
    rc = cli(out, sizeof out, "compile --model %s/m --out %s/bundle --max-prompt 64 --train-seq 32", dir, dir);
    ck_assert_msg(rc == 0 && strstr(out, "program variants"), "exit %d: %s", rc, out);
    setenv("ATTAMBA_CACHE_DIR", "off", 1);
    setenv("ATTAMBA_LOG", "info", 1);
    char bundle[300];
    snprintf(bundle, sizeof bundle, "%s/bundle", dir);
    setenv("ATTAMBA_PROGRAM_DIR", bundle, 1);
    rc = cli(out, sizeof out, "generate --model %s/m --prompt 'In the beginn' -n 4", dir);
    ck_assert_msg(rc == 0 && strstr(out, "from the bundle") && !strstr(out, "from source"), "exit %d: %s", rc, out);
    rc = cli(out, sizeof out, "train --preset tiny --data %s --out %s/t --steps 1 --batch 2 --seq 32 --val-windows 1",
             data, dir);
    ck_assert_msg(rc == 0 && strstr(out, "from the bundle") && !strstr(out, "from source"), "exit %d: %s", rc, out);
    unsetenv("ATTAMBA_PROGRAM_DIR");
    unsetenv("ATTAMBA_LOG");
    unsetenv("ATTAMBA_CACHE_DIR");
    rc = cli(out, sizeof out, "compile --preset tiny --model %s/m --out %s/b2", dir, dir);
    EXPECT_FAILS(rc, out, "usage");
}
END_TEST

/* attamba quantize: f16 and q8 models run generate and eval; an f16 model generates the text of the
 * f32 model of its rounded values (quantize --type f32); training one, or a bad type, is refused. */
START_TEST(quantized_models_run_and_refuse_training) {
    char out[8192], back[8192], *dir = temp_dir(), data[128];
    snprintf(data, sizeof data, "%s/d.txt", dir);
    write_text(data, 4000);
    int rc = cli(out, sizeof out, "init --preset tiny --out %s/m", dir);
    ck_assert_msg(rc == 0, "init: %s", out);
    rc = cli(out, sizeof out, "quantize --type q4 --in %s/m --out %s/x", dir, dir);
    EXPECT_FAILS(rc, out, "bad --type q4");
    rc = cli(out, sizeof out, "quantize --type q8 --in %s/nothing --out %s/x", dir, dir);
    EXPECT_FAILS(rc, out, "nothing/config.json");
    const char *types[2] = {"f16", "q8"};
    for (int i = 0; i < 2; i++) {
        rc = cli(out, sizeof out, "quantize --type %s --in %s/m --out %s/%s", types[i], dir, dir, types[i]);
        ck_assert_msg(rc == 0 && strstr(out, types[i]), "quantize %s: %s", types[i], out);
        rc = cli(out, sizeof out, "eval --model %s/%s --data %s", dir, types[i], data);
        ck_assert_msg(rc == 0 && strstr(out, "perplexity"), "eval %s: %s", types[i], out);
        rc = cli(out, sizeof out, "train --config %s/%s/config.json --data %s --out %s/t --steps 1 --batch 2 --seq 32",
                 dir, types[i], data, dir);
        EXPECT_FAILS(rc, out, "quantize");
    }
    rc = cli(out, sizeof out, "quantize --type f32 --in %s/f16 --out %s/back", dir, dir);
    ck_assert_msg(rc == 0, "quantize back: %s", out);
    /* the text alone (stdout, as hex: a random model's bytes may include NUL), not the timing line */
    rc = cli(out, sizeof out, "generate --model %s/f16 --prompt 'In the beginn' -n 24 --temperature 0 2>/dev/null | od -An -tx1",
             dir);
    ck_assert_msg(rc == 0 && strlen(out) > 24, "generate f16: %s", out);
    rc = cli(back, sizeof back, "generate --model %s/back --prompt 'In the beginn' -n 24 --temperature 0 2>/dev/null | od -An -tx1",
             dir);
    ck_assert_msg(rc == 0, "generate back: %s", back);
    ck_assert_msg(!strcmp(out, back), "f16 and its f32 twin generate differently:\n%s\n---\n%s", out, back);
}
END_TEST

/* A layer split over two devices evaluates to the whole model's loss and generates its text; a split
 * of the rows evaluates to the same loss. */
START_TEST(eval_and_generate_over_a_layer_split_match_one_device) {
    char out[8192], whole[8192], *dir = temp_dir(), data[128];
    snprintf(data, sizeof data, "%s/d.txt", dir);
    write_text(data, 4000);
    setenv("POCL_DEVICES", "pthread basic", 1); /* two devices for the commands below */
    setenv("POCL_MAX_PTHREAD_COUNT", "1", 1);
    int rc = cli(out, sizeof out, "init --preset tiny --out %s/m", dir);
    ck_assert_msg(rc == 0, "init: %s", out);
    rc = cli(whole, sizeof whole, "eval --model %s/m --data %s --seq 64", dir, data);
    ck_assert_msg(rc == 0 && strstr(whole, "tokens "), "eval: %s", whole);
    rc = cli(out, sizeof out, "eval --model %s/m --data %s --seq 64 --devices all --split layer --tensor-split 1,3", dir,
             data);
    ck_assert_msg(rc == 0, "eval over a split: %s", out);
    ck_assert_msg(!strcmp(strstr(out, "tokens "), strstr(whole, "tokens ")), "split: %s\nwhole: %s", out, whole);
    rc = cli(out, sizeof out, "eval --model %s/m --data %s --seq 64 --batch 3 --devices all --split rows", dir, data);
    ck_assert_msg(rc == 0, "eval split by rows: %s", out);
    ck_assert_msg(!strcmp(strstr(out, "tokens "), strstr(whole, "tokens ")), "rows: %s\nwhole: %s", out, whole);
    rc = cli(out, sizeof out, "eval --model %s/m --data %s --devices all", dir, data);
    EXPECT_FAILS(rc, out, "--split layer");
    rc = cli(out, sizeof out, "generate --model %s/m --prompt hi --devices all --split rows", dir);
    EXPECT_FAILS(rc, out, "--split rows is for eval");
    rc = cli(out, sizeof out, "eval --model %s/m --data %s --devices all --split layer --tensor-split 1,x", dir, data);
    EXPECT_FAILS(rc, out, "--tensor-split '1,x'");
    /* greedy generation over the split (each layer's cache on its device) writes the whole model's text */
    rc = cli(whole, sizeof whole, "generate --model %s/m --prompt 'In the' -n 16 --temperature 0", dir);
    ck_assert_msg(rc == 0 && strstr(whole, "\nprefill "), "generate: %s", whole);
    rc = cli(out, sizeof out, "generate --model %s/m --prompt 'In the' -n 16 --temperature 0 --devices all --split layer",
             dir);
    ck_assert_msg(rc == 0 && strstr(out, "\nprefill "), "generate over a split: %s", out);
    *strstr(out, "\nprefill ") = *strstr(whole, "\nprefill ") = 0; /* the text, without the timings */
    ck_assert_msg(!strcmp(out, whole), "generate over a split: '%s', whole: '%s'", out, whole);
}
END_TEST

/* Sentences of common words and numbers, one or two a line: a text a tokenizer can learn pieces from. */
static void write_sentences(const char *path, int bytes, unsigned seed) {
    static const char *words[] = {"the", "and", "of", "to", "in", "that", "he", "it", "was", "for", "with", "light",
                                  "earth", "water", "said", "unto", "them", "upon", "day", "night", "God", "made"};
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int w = 0; w < bytes;) {
        seed = seed * 1103515245u + 12345u;
        const char *word = words[(seed >> 16) % (sizeof words / sizeof words[0])];
        w += fprintf(f, "%s%s", word, (seed >> 8) % 11 == 0 ? ".\n" : (seed >> 8) % 13 == 0 ? ", 7 " : " ");
    }
    fclose(f);
}

/* A SentencePiece model from end to end: tokenizer train -> tokenize -> init --tokenizer -> train on
 * the token file (a text file is refused) -> eval (perplexity per token and bits per byte) ->
 * generate. */
START_TEST(a_sentencepiece_model_from_tokenizer_to_generate) {
    char out[8192], *dir = temp_dir(), text[128], held[128];
    snprintf(text, sizeof text, "%s/text.txt", dir);
    snprintf(held, sizeof held, "%s/held.txt", dir);
    write_sentences(text, 60000, 1);
    write_sentences(held, 6000, 2);
    int rc = cli(out, sizeof out, "tokenizer train --vocab 300 --data %s --out %s/t.model", text, dir);
    if (!tokenizer_have_sentencepiece()) {
        EXPECT_FAILS(rc, out, "no SentencePiece");
        printf("%s: skipped the rest: this build has no SentencePiece\n", __func__);
        return;
    }
    ck_assert_msg(rc == 0 && strstr(out, "vocab 300") && strstr(out, "tokens per byte") && strstr(out, "back exactly"),
                  "tokenizer train: %s", out);
    printf("%s", out);
    rc = cli(out, sizeof out, "tokenize --tokenizer %s/t.model --data %s --out %s/text.tok", dir, text, dir);
    ck_assert_msg(rc == 0 && strstr(out, "tokens per byte"), "tokenize: %s", out);
    rc = cli(out, sizeof out, "tokenize --tokenizer %s --data %s --out %s/x.tok", text, text, dir);
    EXPECT_FAILS(rc, out, "not a SentencePiece model");
    rc = cli(out, sizeof out, "init --preset tiny --tokenizer %s/t.model --out %s/m", dir, dir);
    ck_assert_msg(rc == 0, "init: %s", out);
    char path[300];
    snprintf(path, sizeof path, "%s/m/tokenizer.model", dir);
    ck_assert_msg(access(path, R_OK) == 0, "init did not copy the tokenizer: %s", out);
    rc = cli(out, sizeof out, "train --config %s/m/config.json --data %s --steps 1 --batch 2 --seq 32 --out %s/bad",
             dir, text, dir);
    EXPECT_FAILS(rc, out, "attamba tokenize --tokenizer");
    rc = cli(out, sizeof out,
             "train --config %s/m/config.json --data %s/text.tok --steps 6 --batch 4 --seq 32 --out %s/run", dir, dir,
             dir);
    ck_assert_msg(rc == 0 && strstr(out, "per token"), "train: %s", out);
    rc = cli(out, sizeof out, "eval --model %s/run --data %s --seq 32", dir, held);
    const char *bpb = strstr(out, "bits/byte ");
    ck_assert_msg(rc == 0 && bpb && strstr(out, "perplexity ") && strstr(out, "sentencepiece"), "eval: %s", out);
    double bits = atof(bpb + 10);
    ck_assert_msg(bits > 0 && bits < 16, "eval: bits per byte %g: %s", bits, out);
    printf("%s", strstr(out, "tokens "));
    rc = cli(out, sizeof out, "generate --model %s/run --prompt 'And God' -n 8 --seed 1", dir);
    ck_assert_msg(rc == 0 && !strncmp(out, "And God", 7) && strstr(out, "\nprefill ") > out + 7, "generate: %s", out);
}
END_TEST

int main(void) {
    Suite *s = suite_create("cli");
    TCase *t = tcase_create("findings");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, finding_1_resume_on_data_shorter_than_the_saved_window_is_refused);
    tcase_add_test(t, finding_2_resume_without_a_checkpoint_says_so);
    tcase_add_test(t, finding_3_eval_refuses_a_batch_it_cannot_allocate);
    tcase_add_test(t, finding_6_non_regular_files_are_refused_without_blocking);
    tcase_add_test(t, finding_7_token_ids_out_of_range_are_refused);
    tcase_add_test(t, finding_8_too_few_tokens_names_the_count);
    tcase_add_test(t, finding_10_generate_accepts_every_preset);
    tcase_add_test(t, generate_checks_and_runs_its_sampling_filters);
    tcase_add_test(t, device_sets_are_checked_before_anything_runs);
    tcase_add_test(t, tune_shows_the_table_in_force);
    tcase_add_test(t, a_compiled_bundle_serves_every_program);
    tcase_add_test(t, quantized_models_run_and_refuse_training);
    tcase_add_test(t, eval_and_generate_over_a_layer_split_match_one_device);
    tcase_add_test(t, a_sentencepiece_model_from_tokenizer_to_generate);
    suite_add_tcase(s, t);
    return tu_run(s);
}
