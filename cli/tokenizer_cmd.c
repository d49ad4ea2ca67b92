/* attamba tokenizer train: a SentencePiece tokenizer for a text, trained with the options that give
 * every text back exactly (src/model/tokenizer.h), checked on that text, written as a .model file. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int usage(FILE *f) {
    fprintf(f, "usage: attamba tokenizer train --vocab N --data TEXT --out FILE.model\n\n"
               "Trains a SentencePiece tokenizer (unigram, byte fallback, identity normalization, no dummy\n"
               "prefix, spaces kept, \"\\n\" a piece of its own) of N pieces (fewer if TEXT is too small) on\n"
               "TEXT, one sentence per line; checks that TEXT comes back exactly; says the vocabulary and\n"
               "the tokens per byte on TEXT. Use it with `attamba tokenize --tokenizer` and\n"
               "`attamba init --tokenizer`.%s\n", attamba_have_sentencepiece() ? "" :
               "\n(This build has no SentencePiece: install libsentencepiece-dev and rebuild.)");
    return f == stdout ? 0 : 2;
}

/* The vocabulary, BOS and EOS of the tokenizer at path, and the tokens of the text at data under it;
 * non-zero (said) on failure. */
static int describe(const char *path, const char *data, int *vocab, int *bos, int *eos, size_t *len, int64_t *n) {
    char err[1024];
    attamba_tokenizer *t;
    if (attamba_tokenizer_load(path, &t, err, sizeof err)) return cli_error("tokenizer", "%s", err);
    *vocab = attamba_tokenizer_vocab_size(t), *bos = attamba_tokenizer_bos(t), *eos = attamba_tokenizer_eos(t);
    char *text = cli_read_file("tokenizer", data, 0, len);
    int rc = !text;
    if (text && attamba_tokenizer_encode(t, text, *len, 0, NULL, 0, n)) /* cap 0: the count alone */
        rc = cli_error("tokenizer", "%s: encoding failed", data);
    free(text);
    attamba_tokenizer_destroy(t);
    return rc;
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
    if (attamba_tokenizer_train(data, (int)vocab, out, err, sizeof err)) return cli_error("tokenizer", "%s", err);
    int v = 0, bos = 0, eos = 0;
    size_t len = 0;
    int64_t n = 0;
    if (describe(out, data, &v, &bos, &eos, &len, &n)) return 1;
    printf("wrote %s: vocab %d (bos %d, eos %d); %s: %zu bytes -> %lld tokens, %.4f tokens per byte "
           "(%.2f bytes per token), back exactly\n", out, v, bos, eos, data, len, (long long)n, (double)n / (double)len,
           (double)len / (double)(n ? n : 1));
    return 0;
}

int cli_tokenizer(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "train")) return train(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "--help") && strcmp(argv[1], "-h"))
        cli_error("tokenizer", "unknown subcommand '%s'", argv[1]);
    return usage(argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? stdout : stderr);
}
