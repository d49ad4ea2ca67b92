/* attamba tokenizer train: a SentencePiece tokenizer for a text, trained with the options that give
 * every text back exactly (src/model/tokenizer.h), checked on that text, written as a .model file. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/core.h"
#include "model/tokenizer.h"

static int usage(FILE *f) {
    fprintf(f, "usage: attamba tokenizer train --vocab N --data TEXT --out FILE.model\n\n"
               "Trains a SentencePiece tokenizer (unigram, byte fallback, identity normalization, no dummy\n"
               "prefix, spaces kept, \"\\n\" a piece of its own) of N pieces (fewer if TEXT is too small) on\n"
               "TEXT, one sentence per line; checks that TEXT comes back exactly; says the vocabulary and\n"
               "the tokens per byte on TEXT. Use it with `attamba tokenize --tokenizer` and\n"
               "`attamba init --tokenizer`.%s\n", tokenizer_have_sentencepiece() ? "" :
               "\n(This build has no SentencePiece: install libsentencepiece-dev and rebuild.)");
    return f == stdout ? 0 : 2;
}

/* The ids of text, then its bytes again: whether they are the text; *n gets the token count. */
static int round_trip(const tokenizer *t, const char *text, size_t len, int64_t *n, char *err, size_t err_size) {
    int32_t *ids = malloc((len ? len : 1) * sizeof *ids); /* a piece is at least one byte */
    char *back = malloc(len + 1);
    size_t w = 0;
    int ok = ids && back && !t->encode(t, text, len, ids, (int64_t)len, n) && *n <= (int64_t)len;
    for (int64_t i = 0; ok && i < *n; i++) {
        size_t k = (size_t)t->decode(t, ids[i], back + w, (int)CORE_MIN(len - w, (size_t)INT32_MAX));
        ok = w + k <= len;
        w += k;
    }
    ok = ok && w == len && !memcmp(back, text, len);
    if (!ok) core_errbuf(err, err_size, ATTAMBA_ERR_INTERNAL, "the text does not come back exactly from its tokens");
    free(ids);
    free(back);
    return ok;
}

static int train(int argc, char **argv) {
    static const struct option opts[] = {{"vocab", required_argument, 0, 'v'}, {"data", required_argument, 0, 'd'},
                                         {"out", required_argument, 0, 'o'},   {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *data = NULL, *out = NULL;
    double vocab = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "v:d:o:h", opts, NULL)) != -1) {
        if (c == 'v') {
            if (!cli_number("tokenizer", "vocab", optarg, 260, 1 << 20, 1, &vocab)) return 2;
        } else if (c == 'd') data = optarg;
        else if (c == 'o') out = optarg;
        else if (c == 'h') return usage(stdout);
        else return 2;
    }
    if (!data || !out || !vocab) return cli_error("tokenizer", "--vocab, --data and --out are required"), 2;
    char err[1024];
    size_t len = 0, size = 0;
    char *text = core_read_file(data, 0, &len, err, sizeof err);
    if (!text) return cli_error("tokenizer", "%s", err);
    void *model = NULL;
    tokenizer *t = NULL;
    int64_t n = 0;
    int rc = 0;
    if (!len) rc = cli_error("tokenizer", "%s is empty", data);
    else if (tokenizer_train_sentencepiece(text, len, (int)vocab, &model, &size, err, sizeof err) ||
             tokenizer_create_sentencepiece(model, size, &t, err, sizeof err) ||
             !round_trip(t, text, len, &n, err, sizeof err))
        rc = cli_error("tokenizer", "%s", err);
    else if (core_write_bytes_atomic(out, model, size) != 0)
        rc = cli_error("tokenizer", "cannot write %s", out);
    else
        printf("wrote %s: vocab %d (bos %d, eos %d); %s: %zu bytes -> %lld tokens, %.4f tokens per byte "
               "(%.2f bytes per token), back exactly\n", out, t->vocab_size, t->bos_id, t->eos_id, data, len,
               (long long)n, (double)n / (double)len, (double)len / (double)(n ? n : 1));
    tokenizer_destroy(t);
    free(model);
    free(text);
    return rc;
}

int cli_tokenizer(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "train")) return train(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "--help") && strcmp(argv[1], "-h"))
        cli_error("tokenizer", "unknown subcommand '%s'", argv[1]);
    return usage(argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? stdout : stderr);
}
