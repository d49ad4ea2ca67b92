/* data.h: token streams for training. A UTF-8 text file is tokenised byte by byte; large corpora
 * can be stored once as a binary token file ("ATBTOK01", u64 count, u16 ids) that is mapped, not
 * read. A task file (task.h, `attamba data`) holds fixed-length examples: windows are whole
 * examples and only the answers are scored. The last part of the stream is held out for validation. */
#ifndef ATTAMBA_DATA_H
#define ATTAMBA_DATA_H

#include <stdint.h>

#include "core/core.h"

typedef struct dataset {
    const uint16_t *tok;
    int64_t n;
    void *map;        /* binary files: the mapping */
    size_t map_size;
    uint16_t *owned;  /* text and task files: the tokens */
    int example;      /* task files: tokens per example (windows are whole examples); 0: a stream */
    uint8_t *scored;  /* task files: 1 where a target is scored (an answer); NULL: every target */
} dataset;

/* The target of a position that is not scored (the trainer's default ignore_id). */
#define DATA_UNSCORED (-1)

/* A binary token file or a task file (by their magic), or else a text file, as bytes. */
attamba_status data_open(const char *path, dataset *d, char *err, size_t err_size);
void data_close(dataset *d);
/* Writes tokens as a binary token file (temporary file + rename). */
attamba_status data_write_tokens(const char *path, const uint16_t *tok, int64_t n, char *err, size_t err_size);

/* The split: [0, train_end) trains, [train_end, n) validates (whole examples each). */
int64_t data_train_end(const dataset *d, double val_frac);

/* One window of T positions starting at token s: tokens = [bos, d[s], ..., d[s+T-2]] and
 * targets = [d[s], ..., d[s+T-1]], so every position predicts the next byte (DATA_UNSCORED where a
 * task file does not score it). */
void data_window(const dataset *d, int64_t s, int T, int bos, int32_t *tokens, int32_t *targets);
/* A uniformly random window start in [begin, end - T] from rng (a task file: an example's first token). */
int64_t data_random_start(const dataset *d, core_rng *rng, int64_t begin, int64_t end, int T);

#endif
