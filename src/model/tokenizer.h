/* tokenizer.h: text <-> token ids behind a small interface. Two kinds: "bytes" (256 byte values plus
 * BOS and EOS; the default) and "sentencepiece" (a SentencePiece model file, when the build has
 * libsentencepiece: spm_shim.h). Both are lossless: the bytes of the ids of a text are the text. */
#ifndef ATTAMBA_TOKENIZER_H
#define ATTAMBA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "attamba/attamba.h"
#include "config.h"

typedef struct tokenizer tokenizer;
struct tokenizer {
    const char *name;
    int vocab_size, bos_id, eos_id;
    /* Writes at most cap ids; *n is the number the whole text needs. */
    attamba_status (*encode)(const tokenizer *t, const char *text, size_t len, int32_t *ids, int64_t cap, int64_t *n);
    /* The bytes of one token (specials decode to nothing): writes at most cap of them and returns how
     * many the token has. */
    int (*decode)(const tokenizer *t, int32_t id, char *out, int cap);
    void (*destroy)(tokenizer *t);
};

/* "bytes": bos_id/eos_id must be >= 256 and < vocab_size. */
attamba_status tokenizer_create(const char *name, int vocab_size, int bos_id, int eos_id, tokenizer **out,
                                char *err, size_t err_size);
/* A SentencePiece model (the bytes of its .model file): vocabulary, BOS and EOS from the model. It must
 * have byte fallback (pieces <0x00>..<0xFF>) and give text back exactly (no normalization, no dummy
 * prefix, spaces kept), as `attamba tokenizer train` makes it. Its ids decode to their exact bytes:
 * "▁" (U+2581) is a space, "<0xNN>" the byte NN, control and unknown pieces nothing. Bytes that are not
 * UTF-8, and a literal U+2581, are encoded as byte pieces. ATTAMBA_ERR_UNSUPPORTED in a build without
 * SentencePiece; ATTAMBA_ERR_FORMAT for a file that is not such a model. */
attamba_status tokenizer_create_sentencepiece(const void *model, size_t size, tokenizer **out, char *err,
                                              size_t err_size);
/* The same from the path of a .model file (messages name it). */
attamba_status tokenizer_load_sentencepiece(const char *path, tokenizer **out, char *err, size_t err_size);
/* Trains a SentencePiece model of vocab_size pieces (fewer if the text is too small) on text[0, len)
 * with the options above (unigram, byte fallback, "\n" a piece): *model gets the .model file's bytes
 * (malloc'd, *size of them). ATTAMBA_ERR_UNSUPPORTED without SentencePiece. */
attamba_status tokenizer_train_sentencepiece(const char *text, size_t len, int vocab_size, void **model,
                                             size_t *size, char *err, size_t err_size);
/* Whether this build has SentencePiece. */
int tokenizer_have_sentencepiece(void);
void tokenizer_destroy(tokenizer *t);

/* The tokenizer a config names: "bytes" from its vocab_size, bos_id and eos_id; "sentencepiece" from
 * the file's bytes (file, size), whose vocabulary size, BOS and EOS must equal the config's. */
attamba_status tokenizer_for_config(const model_config *c, const void *file, size_t size, tokenizer **out,
                                    char *err, size_t err_size);
/* The tokenizer file of a sentencepiece config (c->tokenizer_path), read whole: malloc'd, *size bytes. */
attamba_status tokenizer_file_read(const model_config *c, void **file, size_t *size, char *err, size_t err_size);
/* Writes those bytes to dir/c->tokenizer_file (temporary name, then rename). */
attamba_status tokenizer_file_write(const model_config *c, const char *dir, const void *file, size_t size, char *err,
                                    size_t err_size);

/* The public attamba_tokenizer: a model's (attamba_model_tokenizer) or one loaded alone
 * (attamba_tokenizer_load: ctx NULL). */
struct attamba_tokenizer {
    tokenizer *t;
    struct attamba_context *ctx; /* the model's: where messages go; NULL for a tokenizer loaded alone */
};

#endif
