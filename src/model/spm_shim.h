/* spm_shim.h: the C face of SentencePiece (libsentencepiece's C++ API), compiled only when CMake
 * finds it (ATTAMBA_HAVE_SENTENCEPIECE). spm_shim.cc is the project's one C++ file: every function
 * catches whatever the C++ side throws and returns 0 on success, -1 with a message in err. */
#ifndef ATTAMBA_SPM_SHIM_H
#define ATTAMBA_SPM_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct spm_processor spm_processor;

/* What a piece is: text, a control symbol (BOS, EOS), the unknown symbol, one byte ("<0xNN>"), or
 * unused. */
typedef enum { SPM_PIECE_TEXT, SPM_PIECE_CONTROL, SPM_PIECE_UNKNOWN, SPM_PIECE_BYTE, SPM_PIECE_UNUSED } spm_piece_kind;

/* A processor for a serialized model (the bytes of a .model file). */
int spm_load(const void *model, size_t size, spm_processor **out, char *err, size_t err_size);
void spm_free(spm_processor *p);
/* Vocabulary size; BOS and EOS ids (-1 when the model has none). */
int spm_vocab_size(const spm_processor *p);
int spm_bos_id(const spm_processor *p);
int spm_eos_id(const spm_processor *p);
/* Piece id in [0, vocab): its text (NUL-terminated UTF-8, owned by p) and kind. */
const char *spm_piece(const spm_processor *p, int id, spm_piece_kind *kind);
/* The ids of text[0, len): at most cap written to ids, *n = how many the text needs. */
int spm_encode(const spm_processor *p, const char *text, size_t len, int32_t *ids, int64_t cap, int64_t *n,
               char *err, size_t err_size);

/* Trains a model of vocab_size pieces (fewer when the text has too few) on text[0, len), one sentence
 * per line, with the options that keep the text exact (identity normalization, no dummy prefix, spaces
 * kept, byte fallback, "\n" a piece of its own). *model gets the serialized model (malloc'd, *size
 * bytes); threads: the trainer's worker threads. SentencePiece's log lines are silenced. */
int spm_train(const char *text, size_t len, int vocab_size, int threads, void **model, size_t *size, char *err,
              size_t err_size);

#ifdef __cplusplus
}
#endif

#endif
