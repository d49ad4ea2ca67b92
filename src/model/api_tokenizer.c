/* The public standalone tokenizers and token files (include/attamba/attamba.h): a SentencePiece model
 * file loaded without a model, trained on a text, and the binary token files training maps. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tokenizer.h"
#include "train/data.h"

attamba_status attamba_tokenizer_load(const char *path, attamba_tokenizer **out, char *errbuf, size_t errbuf_size) {
    if (!out) return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_INVALID_ARG, "attamba_tokenizer_load: NULL out");
    *out = NULL;
    if (!path) return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_INVALID_ARG, "attamba_tokenizer_load: NULL path");
    attamba_tokenizer *a = calloc(1, sizeof *a);
    if (!a) return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_OUT_OF_MEMORY, "tokenizer: out of host memory");
    char err[1024];
    attamba_status s = tokenizer_load_sentencepiece(path, &a->t, err, sizeof err);
    if (s) {
        free(a);
        return core_errbuf(errbuf, errbuf_size, s, "%s", err);
    }
    *out = a; /* ctx NULL: a tokenizer of no model */
    return ATTAMBA_OK;
}

void attamba_tokenizer_destroy(attamba_tokenizer *t) {
    if (!t || t->ctx) return; /* a model's tokenizer is the model's to free */
    tokenizer_destroy(t->t);
    free(t);
}

int attamba_have_sentencepiece(void) { return tokenizer_have_sentencepiece(); }

/* The ids of text, then its bytes again: whether they are the text; *n gets the token count. */
static attamba_status round_trip(const tokenizer *t, const char *text, size_t len, int64_t *n, char *err,
                                 size_t err_size) {
    int32_t *ids = malloc((len ? len : 1) * sizeof *ids); /* a piece is at least one byte */
    char *back = malloc(len + 1);
    size_t w = 0;
    if (!ids || !back) {
        free(ids);
        free(back);
        return core_errbuf(err, err_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory for the round trip of %zu "
                           "bytes", len);
    }
    int ok = !t->encode(t, text, len, ids, (int64_t)len, n) && *n <= (int64_t)len;
    for (int64_t i = 0; ok && i < *n; i++) {
        size_t k = (size_t)t->decode(t, ids[i], back + w, (int)CORE_MIN(len - w, (size_t)INT32_MAX));
        ok = w + k <= len;
        w += k;
    }
    ok = ok && w == len && !memcmp(back, text, len);
    free(ids);
    free(back);
    return ok ? ATTAMBA_OK
              : core_errbuf(err, err_size, ATTAMBA_ERR_INTERNAL, "the text does not come back exactly from its tokens");
}

attamba_status attamba_tokenizer_train(const char *text_path, int vocab_size, const char *out_path, char *errbuf,
                                       size_t errbuf_size) {
    if (!text_path || !out_path)
        return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_INVALID_ARG, "attamba_tokenizer_train: NULL path");
    char err[1024];
    size_t len = 0, size = 0;
    char *text = core_read_file(text_path, 0, &len, err, sizeof err);
    if (!text) return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_IO, "%s", err);
    void *model = NULL;
    tokenizer *t = NULL;
    int64_t n = 0;
    attamba_status s = ATTAMBA_OK;
    if (!len) s = core_errbuf(err, sizeof err, ATTAMBA_ERR_INVALID_ARG, "%s is empty", text_path);
    if (!s) s = tokenizer_train_sentencepiece(text, len, vocab_size, &model, &size, err, sizeof err);
    if (!s) s = tokenizer_create_sentencepiece(model, size, &t, err, sizeof err);
    if (!s) s = round_trip(t, text, len, &n, err, sizeof err);
    if (!s && core_write_bytes_atomic(out_path, model, size) != 0)
        s = core_errbuf(err, sizeof err, ATTAMBA_ERR_IO, "cannot write %s", out_path);
    if (s) core_errbuf(errbuf, errbuf_size, s, "%s", err);
    tokenizer_destroy(t);
    free(model);
    free(text);
    return s;
}

/* The ids of the text file at path under t, as u16: *tok malloc'd, *n of them, *bytes the text's size. */
static attamba_status encode_file(const tokenizer *t, const char *path, uint16_t **tok, int64_t *n, int64_t *bytes,
                                  char *err, size_t err_size) {
    if (t->vocab_size > 65535)
        return core_errbuf(err, err_size, ATTAMBA_ERR_INVALID_ARG, "the tokenizer has %d pieces: token files hold u16 "
                           "ids, at most 65535", t->vocab_size);
    size_t len = 0;
    char *text = core_read_file(path, 0, &len, err, err_size);
    if (!text) return ATTAMBA_ERR_IO;
    int32_t *ids = malloc((len ? len : 1) * sizeof *ids); /* a piece is at least one byte */
    *tok = ids ? malloc((len ? len : 1) * sizeof **tok) : NULL;
    attamba_status s = ATTAMBA_OK;
    if (!*tok) s = core_errbuf(err, err_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory for the tokens of %zu "
                               "bytes", len);
    else if (t->encode(t, text, len, ids, (int64_t)len, n) || *n > (int64_t)len)
        s = core_errbuf(err, err_size, ATTAMBA_ERR_INTERNAL, "%s: encoding failed", path);
    for (int64_t i = 0; !s && i < *n; i++) (*tok)[i] = (uint16_t)ids[i];
    if (s) {
        free(*tok);
        *tok = NULL;
    }
    *bytes = (int64_t)len;
    free(ids);
    free(text);
    return s;
}

attamba_status attamba_tokenize_file(const attamba_tokenizer *t, const char *in_path, const char *out_path,
                                     int64_t *n_tokens, int64_t *n_bytes, char *errbuf, size_t errbuf_size) {
    if (!in_path || !out_path)
        return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_INVALID_ARG, "attamba_tokenize_file: NULL path");
    char err[1024];
    int64_t n = 0, bytes = 0;
    attamba_status s;
    if (t) {
        uint16_t *tok = NULL;
        s = encode_file(t->t, in_path, &tok, &n, &bytes, err, sizeof err);
        if (!s) s = data_write_tokens(out_path, tok, n, err, sizeof err);
        free(tok);
    } else { /* the file as training reads it: a text's bytes, a token or task file's tokens */
        dataset d;
        s = data_open(in_path, &d, err, sizeof err);
        if (!s) {
            struct stat st;
            bytes = stat(in_path, &st) == 0 ? (int64_t)st.st_size : 0;
            n = d.n;
            s = data_write_tokens(out_path, d.tok, d.n, err, sizeof err);
            data_close(&d);
        }
    }
    if (s) return core_errbuf(errbuf, errbuf_size, s, "%s", err);
    if (n_tokens) *n_tokens = n;
    if (n_bytes) *n_bytes = bytes;
    return ATTAMBA_OK;
}
