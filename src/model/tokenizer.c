#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "tokenizer.h"
#ifdef ATTAMBA_HAVE_SENTENCEPIECE
#include "spm_shim.h"
#endif

/* ---- bytes ---- */

static attamba_status bytes_encode(const tokenizer *t, const char *text, size_t len, int32_t *ids, int64_t cap,
                                   int64_t *n) {
    (void)t;
    for (size_t i = 0; i < len && (int64_t)i < cap; i++) ids[i] = (unsigned char)text[i];
    *n = (int64_t)len;
    return ATTAMBA_OK;
}

static int bytes_decode(const tokenizer *t, int32_t id, char *out, int cap) {
    (void)t;
    if (id < 0 || id > 255) return 0;
    if (cap >= 1) out[0] = (char)id;
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

/* ---- sentencepiece ---- */

#ifdef ATTAMBA_HAVE_SENTENCEPIECE

typedef struct {
    tokenizer base; /* first: the interface's functions get &base */
    spm_processor *p;
    int32_t *off;   /* [V + 1]: the bytes of id are text[off[id], off[id + 1]) */
    char *text;
    int32_t byte_id[256];
    int space_piece; /* whether "▁" is a piece: else spaces go as <0x20> (byte fallback would give U+2581) */
} spm_tokenizer;

int tokenizer_have_sentencepiece(void) { return 1; }

/* The length of the well-formed UTF-8 character at s (RFC 3629: no overlong forms, no surrogates, at most
 * U+10FFFF), or 0. */
static size_t utf8_char(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t k = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!k || k > n) return 0;
    for (size_t i = 1; i < k; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F) || (c == 0xF0 && s[1] < 0x90) ||
        (c == 0xF4 && s[1] > 0x8F))
        return 0;
    return k;
}

static const char SPACE_MARK[] = "\xE2\x96\x81"; /* U+2581, SentencePiece's space */

/* Whether SentencePiece would not give the character at s (k bytes) back exactly: a literal U+2581 (it
 * would read a space), or a space when the model has no "▁" piece. */
static int inexact(const spm_tokenizer *t, const unsigned char *s, size_t k) {
    return (k == 3 && !memcmp(s, SPACE_MARK, 3)) || (k == 1 && s[0] == ' ' && !t->space_piece);
}

/* Text is encoded a line at a time (no piece spans a newline: the trainer sees lines), with what
 * SentencePiece would not give back exactly going through the byte pieces: bytes that are not UTF-8
 * (it would read U+FFFD) and the inexact characters above. */
static attamba_status spm_encode_text(const tokenizer *base, const char *text, size_t len, int32_t *ids, int64_t cap,
                                      int64_t *n) {
    const spm_tokenizer *t = (const spm_tokenizer *)base;
    const unsigned char *s = (const unsigned char *)text;
    int64_t total = 0;
    for (size_t i = 0; i < len;) {
        size_t j = i, k;
        while (j < len && (k = utf8_char(s + j, len - j)) && !inexact(t, s + j, k)) {
            j += k;
            if (s[j - 1] == '\n') break;
        }
        if (j == i) { /* one byte as its byte piece */
            k = utf8_char(s + i, len - i);
            for (size_t b = 0; b < (k ? k : 1); b++, total++)
                if (total < cap) ids[total] = t->byte_id[s[i + b]];
            i += k ? k : 1;
            continue;
        }
        int64_t got = 0;
        char err[300];
        if (spm_encode(t->p, text + i, j - i, total < cap ? ids + total : NULL, total < cap ? cap - total : 0, &got,
                       err, sizeof err)) { /* no message channel here: the log, and the caller says what failed */
            core_log(CORE_LOG_ERROR, "%s", err);
            return strstr(err, "out of host memory") ? ATTAMBA_ERR_OUT_OF_MEMORY : ATTAMBA_ERR_INTERNAL;
        }
        total += got;
        i = j;
    }
    *n = total;
    return ATTAMBA_OK;
}

static int spm_decode(const tokenizer *base, int32_t id, char *out, int cap) {
    const spm_tokenizer *t = (const spm_tokenizer *)base;
    if (id < 0 || id >= base->vocab_size) return 0;
    int n = t->off[id + 1] - t->off[id];
    memcpy(out, t->text + t->off[id], (size_t)CORE_MIN(n, CORE_MAX(cap, 0)));
    return n;
}

static void spm_destroy(tokenizer *base) {
    spm_tokenizer *t = (spm_tokenizer *)base;
    spm_free(t->p);
    free(t->off);
    free(t->text);
    free(t);
}

/* The byte string of every piece: text pieces with U+2581 as a space, byte pieces their byte, others
 * nothing; and the id of each byte piece. */
static attamba_status build_table(spm_tokenizer *t, char *err, size_t err_size) {
    int V = t->base.vocab_size;
    size_t total = 0;
    spm_piece_kind kind;
    for (int id = 0; id < V; id++) total += strlen(spm_piece(t->p, id, &kind));
    t->off = malloc(((size_t)V + 1) * sizeof *t->off);
    t->text = malloc(total + 1);
    if (!t->off || !t->text || total > INT32_MAX)
        return core_errbuf(err, err_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory for %d pieces", V);
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    int32_t w = 0;
    for (int id = 0; id < V; id++) {
        const char *p = spm_piece(t->p, id, &kind);
        unsigned byte;
        char end;
        t->off[id] = w;
        if (kind == SPM_PIECE_BYTE && sscanf(p, "<0x%2X%c", &byte, &end) == 2 && end == '>' && byte < 256) {
            t->byte_id[byte] = id;
            t->text[w++] = (char)byte;
        } else if (kind == SPM_PIECE_TEXT) {
            t->space_piece |= !strcmp(p, SPACE_MARK);
            for (; *p; p++)
                if (!strncmp(p, SPACE_MARK, 3)) t->text[w++] = ' ', p += 2;
                else t->text[w++] = *p;
        }
    }
    t->off[V] = w;
    for (int b = 0; b < 256; b++)
        if (t->byte_id[b] < 0)
            return core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT,
                               "the SentencePiece model has no byte fallback (no piece <0x%02X>), so it cannot encode "
                               "every text: train one with `attamba tokenizer train`", b);
    return ATTAMBA_OK;
}

/* Whether a probe of awkward text comes back byte for byte (a model trained with a dummy prefix,
 * normalization or whitespace removal does not). */
static attamba_status check_exact(const tokenizer *t, char *err, size_t err_size) {
    static const char probe[] = "  Ab  c\t\r\n\n x\xF0\x9F\x98\x80 \xC3\xA9! ";
    int32_t ids[2 * sizeof probe];
    char back[4 * sizeof probe];
    int64_t n = 0;
    size_t len = 0;
    if (t->encode(t, probe, sizeof probe - 1, ids, (int64_t)CORE_LEN(ids), &n) || n > (int64_t)CORE_LEN(ids))
        return core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT, "the SentencePiece model cannot encode a probe text");
    for (int64_t i = 0; i < n; i++) {
        char piece[64];
        int k = t->decode(t, ids[i], piece, (int)sizeof piece);
        for (int j = 0; j < k && j < (int)sizeof piece && len < sizeof back; j++) back[len++] = piece[j];
    }
    if (len != sizeof probe - 1 || memcmp(back, probe, len))
        return core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT,
                           "the SentencePiece model does not give text back exactly (trained with normalization, a "
                           "dummy prefix or whitespace removal?): train one with `attamba tokenizer train`");
    return ATTAMBA_OK;
}

attamba_status tokenizer_create_sentencepiece(const void *model, size_t size, tokenizer **out, char *err,
                                              size_t err_size) {
    *out = NULL;
    spm_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return core_errbuf(err, err_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    char why[300];
    if (spm_load(model, size, &t->p, why, sizeof why)) {
        free(t);
        return core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT, "%s", why);
    }
    t->base = (tokenizer){"sentencepiece", spm_vocab_size(t->p), spm_bos_id(t->p), spm_eos_id(t->p),
                          spm_encode_text, spm_decode, spm_destroy};
    attamba_status s = ATTAMBA_OK;
    if (t->base.bos_id < 0 || t->base.eos_id < 0)
        s = core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT, "the SentencePiece model has no BOS or no EOS piece");
    if (!s) s = build_table(t, err, err_size);
    if (!s) s = check_exact(&t->base, err, err_size);
    if (s) {
        spm_destroy(&t->base);
        return s;
    }
    *out = &t->base;
    return ATTAMBA_OK;
}

attamba_status tokenizer_train_sentencepiece(const char *text, size_t len, int vocab_size, void **model,
                                             size_t *size, char *err, size_t err_size) {
    char why[600];
    if (spm_train(text, len, vocab_size, 2, model, size, why, sizeof why))
        return core_errbuf(err, err_size, ATTAMBA_ERR_INVALID_ARG, "%s", why);
    return ATTAMBA_OK;
}

#else /* no SentencePiece in this build */

#define NO_SPM "this build of libattamba has no SentencePiece (install libsentencepiece-dev and rebuild)"

int tokenizer_have_sentencepiece(void) { return 0; }

attamba_status tokenizer_create_sentencepiece(const void *model, size_t size, tokenizer **out, char *err,
                                              size_t err_size) {
    (void)model, (void)size;
    *out = NULL;
    return core_errbuf(err, err_size, ATTAMBA_ERR_UNSUPPORTED, "a SentencePiece tokenizer: %s", NO_SPM);
}

attamba_status tokenizer_train_sentencepiece(const char *text, size_t len, int vocab_size, void **model,
                                             size_t *size, char *err, size_t err_size) {
    (void)text, (void)len, (void)vocab_size;
    *model = NULL;
    *size = 0;
    return core_errbuf(err, err_size, ATTAMBA_ERR_UNSUPPORTED, "training a SentencePiece tokenizer: %s", NO_SPM);
}

#endif

attamba_status tokenizer_load_sentencepiece(const char *path, tokenizer **out, char *err, size_t err_size) {
    *out = NULL;
    char why[700];
    size_t size = 0;
    char *file = core_read_file(path, 0, &size, why, sizeof why);
    if (!file) return core_errbuf(err, err_size, ATTAMBA_ERR_IO, "%s", why);
    attamba_status s = tokenizer_create_sentencepiece(file, size, out, why, sizeof why);
    free(file);
    return s ? core_errbuf(err, err_size, s, "%s: %s", path, why) : ATTAMBA_OK;
}

/* ---- a model's tokenizer ---- */

attamba_status tokenizer_for_config(const model_config *c, const void *file, size_t size, tokenizer **out,
                                    char *err, size_t err_size) {
    *out = NULL;
    if (c->tokenizer == TOKENIZER_BYTES)
        return tokenizer_create("bytes", c->vocab_size, c->bos_id, c->eos_id, out, err, err_size);
    char why[400];
    tokenizer *t;
    attamba_status s = tokenizer_create_sentencepiece(file, size, &t, why, sizeof why);
    if (s) return core_errbuf(err, err_size, s, "tokenizer %s: %s", c->tokenizer_file, why);
    if (t->vocab_size != c->vocab_size || t->bos_id != c->bos_id || t->eos_id != c->eos_id) {
        core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT,
                    "tokenizer %s has %d pieces, bos %d, eos %d, but the config says vocab_size %d, bos_id %d, "
                    "eos_id %d",
                    c->tokenizer_file, t->vocab_size, t->bos_id, t->eos_id, c->vocab_size, c->bos_id, c->eos_id);
        tokenizer_destroy(t);
        return ATTAMBA_ERR_FORMAT;
    }
    *out = t;
    return ATTAMBA_OK;
}

attamba_status tokenizer_file_read(const model_config *c, void **file, size_t *size, char *err, size_t err_size) {
    char why[600];
    *file = core_read_file(c->tokenizer_path, 0, size, why, sizeof why);
    if (!*file) return core_errbuf(err, err_size, ATTAMBA_ERR_IO, "the tokenizer file: %s", why);
    return ATTAMBA_OK;
}

attamba_status tokenizer_file_write(const model_config *c, const char *dir, const void *file, size_t size, char *err,
                                    size_t err_size) {
    char *path = core_strdup_printf("%s/%s", dir, c->tokenizer_file);
    int bad = !path || core_write_bytes_atomic(path, file, size) != 0;
    if (bad) core_errbuf(err, err_size, ATTAMBA_ERR_IO, "cannot write the tokenizer file %s", path ? path : dir);
    free(path);
    return bad ? ATTAMBA_ERR_IO : ATTAMBA_OK;
}
