/* testutil.h: what every Check suite shares: one device per process, random data, tolerant
 * comparisons that name the worst element. */
#ifndef ATTAMBA_TESTUTIL_H
#define ATTAMBA_TESTUTIL_H

#include <check.h>
#include <stdint.h>

#include "apiutil.h"
#include "ops/boundaries.h"
#include "ops/ops.h"
#include "ref/ref.h"

/* The device under test ($ATTAMBA_DEVICE or the default), opened once per process. */
rt_ctx *tu_ctx(void);
/* n values uniform in [lo, hi) from seed. */
void tu_fill_uniform(float *x, int64_t n, uint64_t seed, float lo, float hi);
/* malloc'd n uniform values; freed by the caller. */
float *tu_random(int64_t n, uint64_t seed, float lo, float hi);
/* A new device tensor holding host data (ck_assert on failure). */
tensor tu_tensor(int ndim, const int64_t *shape, const float *host);
/* A new i32 device tensor holding host data. */
tensor tu_i32(int ndim, const int64_t *shape, const int32_t *host);
/* A new zero-filled f32 device tensor. */
tensor tu_zeros(int ndim, const int64_t *shape);
/* A [rows, K] weight of random values in [-1, 1] stored as t (f32, f16, q8: K a multiple of 32) on the
 * device; *vals (malloc'd): the floats the kernels must see (the stored values decoded). */
tensor tu_weight(tensor_dtype t, int64_t rows, int64_t K, uint64_t seed, float **vals);
/* malloc'd copy of the tensor's elements. */
float *tu_download(const tensor *t);
/* Asserts |got - want| <= atol + rtol * |want| everywhere; the message names the worst element. */
void tu_assert_close_at(const float *got, const float *want, int64_t n, double rtol, double atol,
                        const char *what, const char *file, int line);
#define tu_assert_close(got, want, n, rtol, atol, what) \
    tu_assert_close_at((got), (want), (n), (rtol), (atol), (what), __FILE__, __LINE__)
/* ck_assert that s is ATTAMBA_OK, printing the context's message otherwise. */
#define tu_ok(expr)                                                                                   \
    do {                                                                                              \
        attamba_status tu_s_ = (expr);                                                                \
        ck_assert_msg(tu_s_ == ATTAMBA_OK, "%s -> %s: %s", #expr, attamba_status_str(tu_s_),          \
                      tu_ctx()->err);                                                                 \
    } while (0)
/* malloc'd NUL-terminated contents of the file at path (ck_assert on failure); freed by the caller. */
char *tu_slurp(const char *path);
/* The model cases under tests/golden (scripts write them from PyTorch): names of its sub-folders. */
extern const char *const tu_golden_cases[];
extern const int tu_n_golden_cases;
/* The boundaries of one layer (of n_layers) in [0, T): the positions, per-position flags (1 at a
 * boundary) and the i32 device tensor the attention ops take. */
typedef struct tu_bset {
    int64_t *pos;
    int32_t *pos32; /* the same as i32 (what t holds; an attn_mask's host copy) */
    int n;
    uint8_t *flags;
    tensor t;
} tu_bset;
tu_bset tu_bset_make(const boundary_spec *spec, int layer, int n_layers, int T);
void tu_bset_free(tu_bset *s);

/* Training fixtures: a small fixed corpus (a few sentences repeated with variations, enough to learn
 * in seconds; written once per process) and the "loss" values of DIR/metrics.jsonl in order (how many);
 * temporary directories: apiutil.h. */
const char *tu_corpus_path(void);
int tu_read_losses(const char *out, double *loss, int cap);

/* Prefill of n0 of T random tokens into a cache, then decode one by one: the logits at every position
 * equal those of one forward pass over the whole sequence (1e-4 abs + rel), and the cache holds
 * SPEC 4's bytes. */
struct attamba_model;
void tu_check_decode_matches_prefill(struct attamba_model *m, int T, int n0, const char *what);

/* A device as enumeration would list it (no OpenCL handles): for the pure selection functions. */
rt_device tu_fake_device(int platform, int device, attamba_device_type type);


#endif
