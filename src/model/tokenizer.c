#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "tokenizer.h"

static attamba_status bytes_encode(const tokenizer *t, const char *text, size_t len, int32_t *ids, int64_t cap,
                                   int64_t *n) {
    (void)t;
    for (size_t i = 0; i < len && (int64_t)i < cap; i++) ids[i] = (unsigned char)text[i];
    *n = (int64_t)len;
    return ATTAMBA_OK;
}

static int bytes_decode(const tokenizer *t, int32_t id, char *out, int cap) {
    (void)t;
    if (id < 0 || id > 255 || cap < 1) return 0;
    out[0] = (char)id;
    return 1;
}

static void plain_destroy(tokenizer *t) { free(t); }

attamba_status tokenizer_create(const char *name, int vocab_size, int bos_id, int eos_id, tokenizer **out,
                                char *err, size_t err_size) {
    *out = NULL;
    if (strcmp(name, "bytes") != 0)
        return core_errbuf(err, err_size, ATTAMBA_ERR_UNSUPPORTED, "unknown tokenizer '%s' (bytes)", name);
    if (vocab_size < 258 || bos_id < 256 || eos_id < 256 || bos_id >= vocab_size || eos_id >= vocab_size ||
        bos_id == eos_id)
        return core_errbuf(err, err_size, ATTAMBA_ERR_INVALID_ARG,
                           "byte tokenizer needs vocab_size >= 258 and distinct bos/eos ids in [256, vocab_size); "
                           "got vocab %d, bos %d, eos %d", vocab_size, bos_id, eos_id);
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) return core_errbuf(err, err_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    *t = (tokenizer){"bytes", vocab_size, bos_id, eos_id, bytes_encode, bytes_decode, plain_destroy};
    *out = t;
    return ATTAMBA_OK;
}

void tokenizer_destroy(tokenizer *t) {
    if (t) t->destroy(t);
}
