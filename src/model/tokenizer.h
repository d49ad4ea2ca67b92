/* tokenizer.h: text <-> token ids behind a small interface; the byte tokenizer (256 byte values
 * plus BOS and EOS) is the default and the only one so far. */
#ifndef ATTAMBA_TOKENIZER_H
#define ATTAMBA_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "attamba/attamba.h"

typedef struct tokenizer tokenizer;
struct tokenizer {
    const char *name;
    int vocab_size, bos_id, eos_id;
    /* Writes at most cap ids; *n is the number the whole text needs. */
    attamba_status (*encode)(const tokenizer *t, const char *text, size_t len, int32_t *ids, int64_t cap, int64_t *n);
    /* The bytes of one token (specials decode to nothing); returns how many were written. */
    int (*decode)(const tokenizer *t, int32_t id, char *out, int cap);
    void (*destroy)(tokenizer *t);
};

/* "bytes": bos_id/eos_id must be >= 256 and < vocab_size. */
attamba_status tokenizer_create(const char *name, int vocab_size, int bos_id, int eos_id, tokenizer **out,
                                char *err, size_t err_size);
void tokenizer_destroy(tokenizer *t);

#endif
