/* weights.h: the parameter tensors of a model (names and shapes in docs/weights.md), carved out of
 * one device allocation so optimisers and checkpoints see one flat buffer (llm.c style). */
#ifndef ATTAMBA_MODEL_WEIGHTS_H
#define ATTAMBA_MODEL_WEIGHTS_H

#include "config.h"
#include "tensor/tensor.h"

#define WEIGHT_NAME_MAX 64

typedef struct weight_info {
    char name[WEIGHT_NAME_MAX];
    int ndim;
    int64_t shape[2];
    int64_t offset;   /* in elements, inside the flat buffer */
    int decay;        /* AdamW weight decay applies (matrices and embeddings; not norms, A_log, D, biases) */
    tensor_dtype dtype; /* storage on the device: f32, or the config's weight type for the projections */
} weight_info;

/* The canonical list for a config: *out malloc'd, *n entries, in file order. Offsets count the f32
 * layout of the whole model (the host arrays); dtype says how each weight is stored on the device:
 * with weight_type f16 / q8, every projection matrix and the output layer (q8: those whose rows are a
 * whole number of 32-value blocks), the rest f32. */
attamba_status weights_list(const model_config *c, weight_info **out, int *n);
/* Parameters of one weight (rows x cols, or rows). */
int64_t weight_numel(const weight_info *w);
/* Index of name in the list, or -1. */
int weights_find(const weight_info *list, int n, const char *name);

typedef struct model_weights {
    weight_info *info;
    int n;
    int64_t numel;    /* of the whole model (info's offsets) */
    tensor flat;      /* the f32 weights held on this device, in order: all of them (the model's layout) unless
                         a stage or low-precision storage holds fewer */
    tensor lowp;      /* the f16 / q8 weights held, in order; empty for an f32 model */
    tensor *t;        /* views into flat or lowp, shaped as info[i] (q8: [rows, cols / 32] blocks); empty for
                         weights another stage holds */
    int64_t held;     /* parameters held (of any type) */
    int first, end;   /* flat holds info[first, end) ... */
    int tied_copy;    /* ... and then a copy of the embedding (a tied output layer on the last stage) */
} model_weights;

/* Allocates the flat buffer and the views of every weight (contents undefined). */
attamba_status weights_alloc(rt_ctx *ctx, const model_config *c, model_weights *w);
/* The same for a stage of a layer split: the weights of layers [l0, l1), with the embedding when
 * l0 == 0 and the final norm and output layer when l1 == n_layers (a tied one as a copy). */
attamba_status weights_alloc_layers(rt_ctx *ctx, const model_config *c, int l0, int l1, model_weights *w);
/* Uploads the held weights from host values in the whole model's layout (numel floats). */
attamba_status weights_upload_host(model_weights *w, const float *host);
/* Reads a safetensors file for config c into *host (malloc'd, numel floats), checking every tensor's
 * presence and shape, refusing extra ones; f16/bf16 are converted. */
attamba_status weights_read_host(const model_config *c, const char *path, float **host, char *err, size_t err_size);
void weights_free(model_weights *w);
/* Device bytes of the weights held (f32 and low-precision buffers). */
int64_t weights_bytes(const model_weights *w);
/* The view named name; NULL when the model has no such weight. */
const tensor *weights_get(const model_weights *w, const char *name);

/* Host-side seeded init (SPEC 3.1): truncated normals (std fan_in^-1/2, clipped at 3 std) for
 * matrices and the embedding, ones for norms, A_log = log U[a_init_min, a_init_max], D = 1, conv
 * weights U(+-1/sqrt(w)), dt_bias = softplus^-1 of a log-uniform dt in [1e-3, 1e-1]. host: numel floats. */
void weights_init_host(const model_config *c, const weight_info *list, int n, uint64_t seed, float *host);

/* Reads a safetensors file into w (allocated for c), checking every tensor's presence and shape;
 * f16/bf16 files are converted. Extra tensors are refused too (a different model). */
attamba_status weights_load(rt_ctx *ctx, const model_config *c, const char *path, model_weights *w, char *err,
                            size_t err_size);
/* Writes host values (laid out as list, numel floats) as a safetensors file, each weight as the list
 * stores it: F32; F16; or q8 as an I8 tensor of the values and an F32 '<name>.scales' [rows, cols / 32].
 * weights_read_host reads each of these back. */
attamba_status weights_save_host(const weight_info *list, int n, const float *host, const char *path, char *err,
                                 size_t err_size);
/* Writes w as an f32 safetensors file (temporary file + rename); refuses low-precision weights (written by
 * `attamba quantize` from the f32 file). */
attamba_status weights_save(const model_weights *w, const char *path, char *err, size_t err_size);

#endif
