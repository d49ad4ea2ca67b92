/* task.h: synthetic recall tasks (issue 16): seeded generators of fixed-length examples, and exact-match
 * scoring of a predictor on them.
 *
 *  mqar     multi-query associative recall (Arora et al. 2023, Zoology): `pairs` key-value pairs
 *           k1 v1 ... kn vn (distinct keys from [1, V/2), values from [V/2, V)), starting 0-7 tokens in,
 *           then every key queried once, in random order, at random places in the rest of the example,
 *           each followed by its value; token 0 fills the gaps. Scored: the value after each query (one
 *           item per query).
 *  passkey  a number of `digits` digits hidden at a chosen depth in filler text (byte tokens), asked
 *           for at the end ("... What is the pass key? The pass key is 71432"). Scored: the digits
 *           (one item per example: all of them right).
 *
 * Examples are written back to back; an example of T tokens trains as one window (BOS + its first T-1
 * tokens predicting all T), and eval scores an item as right when the argmax at each of its positions
 * is the answer token: under teacher forcing that is exactly what greedy decoding would produce. */
#ifndef ATTAMBA_TRAIN_TASK_H
#define ATTAMBA_TRAIN_TASK_H

#include <stdint.h>

#include "core/core.h"

typedef enum { TASK_MQAR = 1, TASK_PASSKEY = 2 } task_kind;

/* What a generator makes. Positions count from the example's first token (its model position is one
 * more: BOS comes first). */
typedef struct task_item {
    int64_t start;      /* the answer's first token, in the whole token stream */
    int32_t len;        /* answer tokens */
    int32_t source;     /* where the fact sits in its example (mqar: the value; passkey: the needle's last digit) */
    int32_t group;      /* mqar: pairs in the example; passkey: depth in percent */
    int32_t distance;   /* answer start - source */
} task_item;

typedef struct task_set {
    task_kind kind;
    int example;        /* tokens per example */
    int64_t n;          /* tokens (examples * example) */
    uint16_t *tok;
    uint8_t *scored;    /* 1 where the token is an answer (a scored target) */
    task_item *items;
    int64_t n_items;
} task_set;

typedef struct task_params {
    task_kind kind;
    int example, examples;
    uint64_t seed;
    /* mqar */
    int vocab;
    int pairs[16], n_pairs;  /* example e has pairs[e % n_pairs] */
    /* passkey */
    int digits;
    double depth[16];        /* example e hides the key at depth[e % n_depth]; none: uniform at random */
    int n_depth;
    const uint8_t *filler;   /* text the filler windows are cut from */
    int64_t filler_len;
} task_params;

const char *task_kind_name(task_kind k);
/* "mqar" / "passkey" -> kind; 0 when neither. */
task_kind task_kind_from_name(const char *name);

/* Generates p->examples examples into *out (freed with task_free); the message says which parameter
 * cannot work (too many pairs for the vocabulary or the length, filler too short, ...). */
attamba_status task_generate(const task_params *p, task_set *out, char *err, size_t err_size);
void task_free(task_set *t);

/* Task file: "ATBTSK01", u32 kind, u32 example, u64 tokens, u64 items, then u16 tokens, u8 scored flags,
 * zero padding to 8 bytes and the items (task_item, little-endian, in stream order). Written to a
 * temporary name and renamed; read checks every size and item against the file. */
attamba_status task_write(const char *path, const task_set *t, char *err, size_t err_size);
attamba_status task_read(const char *path, task_set *t, char *err, size_t err_size);

/* Predictor: fills argmax[b * T + t] with the token it predicts after tokens[b * T .. b * T + t]
 * (rows of T = the example length: BOS, then the example's first T-1 tokens); non-zero on failure. */
typedef int (*task_predict_fn)(void *user, const int32_t *tokens, int B, int T, int32_t *argmax);

/* Exact-match accuracy, overall and by group, by offset in a chunk of `chunk` tokens (0: not reported)
 * and by distance bucket (powers of two). */
#define TASK_MAX_GROUPS 64
typedef struct task_tally {
    int key;
    int64_t right, total;
} task_tally;
typedef struct task_report {
    task_tally all;
    task_tally tokens; /* answer tokens right, each on its own (a partial credit for multi-token answers) */
    task_tally group[TASK_MAX_GROUPS], offset[TASK_MAX_GROUPS], distance[TASK_MAX_GROUPS];
    int n_group, n_offset, n_distance;
} task_report;

/* Runs predict on every example (batches of `batch`) and tallies the items; non-zero when predict
 * failed. chunk: the model's P, for the offset table (the model position of the fact, mod P). */
int task_score(const task_set *t, int bos, task_predict_fn predict, void *user, int batch, int chunk,
               task_report *r);
/* The 95% Wilson score interval of right / total. */
void task_wilson(int64_t right, int64_t total, double *lo, double *hi);

#endif
