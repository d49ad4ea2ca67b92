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
} weight_info;

/* The canonical list for a config: *out malloc'd, *n entries, in file order. */
attamba_status weights_list(const model_config *c, weight_info **out, int *n);
/* Index of name in the list, or -1. */
int weights_find(const weight_info *list, int n, const char *name);

typedef struct model_weights {
    weight_info *info;
    int n;
    int64_t numel;    /* of the whole model (info's offsets) */
    tensor flat;      /* [held]: the weights held on this device; all of them (held == numel) but for a stage */
    tensor *t;        /* views into flat, shaped as info[i]; empty for weights another stage holds */
    int64_t held;
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
/* Writes host values (laid out as list, numel floats) as an f32 safetensors file. */
attamba_status weights_save_host(const weight_info *list, int n, const float *host, const char *path, char *err,
                                 size_t err_size);
/* Writes w as an f32 safetensors file (temporary file + rename). */
attamba_status weights_save(const model_weights *w, const char *path, char *err, size_t err_size);

#endif
