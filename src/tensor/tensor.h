/* tensor.h: device tensors. A tensor is a small value (dtype, up to 4 dims, strides in elements,
 * an element offset) over a reference-counted device buffer, so views share memory and cost
 * nothing. All work is enqueued on the context's in-order queue; uploads return once the host
 * memory may be reused, downloads once the data is in host memory.
 * Shapes are row-major: shape[ndim-1] is the fastest-varying dimension. */
#ifndef ATTAMBA_TENSOR_H
#define ATTAMBA_TENSOR_H

#include "runtime/rt.h"

#define TENSOR_MAX_DIMS 4

/* TENSOR_Q8: 8-bit block-quantised weights (docs/weights.md). One element is a block of
 * TENSOR_Q8_BLOCK consecutive values along a row, stored in TENSOR_Q8_BYTES bytes: an f32 scale d, then
 * 32 int8 q (value = d * q). So a [N, K] weight matrix is a q8 tensor of shape [N, K / 32], and views,
 * offsets and strides count blocks. */
typedef enum { TENSOR_F32 = 0, TENSOR_F16 = 1, TENSOR_BF16 = 2, TENSOR_I32 = 3, TENSOR_Q8 = 4 } tensor_dtype;
#define TENSOR_Q8_BLOCK 32
#define TENSOR_Q8_BYTES 36

typedef struct tensor_buffer {
    rt_ctx *ctx;
    cl_mem mem;
    size_t bytes;
    int refs;
    int pooled;     /* from the context's scratch pool: returned there, not released */
} tensor_buffer;

typedef struct tensor {
    tensor_buffer *buf;   /* NULL for an empty tensor */
    tensor_dtype dtype;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    int64_t stride[TENSOR_MAX_DIMS];  /* in elements */
    int64_t offset;                   /* in elements, from the start of buf */
} tensor;

/* Bytes per element (a q8 element is a block of 32 values). */
size_t tensor_dtype_size(tensor_dtype t);
const char *tensor_dtype_name(tensor_dtype t);

/* A new contiguous tensor. Refuses sizes over the device's single-allocation limit or the memory
 * left on the device with ATTAMBA_ERR_OUT_OF_MEMORY. Contents are undefined. */
attamba_status tensor_alloc(rt_ctx *ctx, tensor *out, tensor_dtype dtype, int ndim, const int64_t *shape);
/* The same from the context's scratch pool (rt_pool_acquire): for temporaries released soon, such
 * as an op's scratch. A call repeated at a size the pool has seen creates no device buffer. */
attamba_status tensor_scratch(rt_ctx *ctx, tensor *out, tensor_dtype dtype, int ndim, const int64_t *shape);
/* Shorthands for up to 4 dims: tensor_alloc_f32(ctx, &t, 2, (int64_t[]){M, N}). */
#define tensor_alloc_f32(ctx, out, ndim, shape) tensor_alloc((ctx), (out), TENSOR_F32, (ndim), (shape))
/* Drops this tensor's reference; the buffer goes when its last view does. Safe on empty tensors. */
void tensor_free(tensor *t);

int64_t tensor_numel(const tensor *t);
int tensor_is_contiguous(const tensor *t);
int tensor_same_shape(const tensor *a, const tensor *b);
/* "[2, 3, 5] f32" into buf; returns buf. */
char *tensor_describe(const tensor *t, char *buf, size_t n);

/* Host <-> device for a whole tensor (any strides): host holds numel elements, row-major. */
attamba_status tensor_upload(tensor *t, const void *host);
attamba_status tensor_download(const tensor *t, void *host);
/* Fills every element with value (converted to the dtype: f32, f16 or i32). */
attamba_status tensor_fill(tensor *t, double value);
/* Elementwise copy between tensors of the same shape and dtype, any strides; also f32 into f16
 * (rounded to the nearest half, ties to even). */
attamba_status tensor_copy(tensor *dst, const tensor *src);

/* The same between tensors of any two devices: a device copy on one device, else through host
 * memory (a blocking download from src's device, then an upload to dst's). tensor_copy and every op
 * refuse tensors of another device than their own. */
attamba_status tensor_transfer(tensor *dst, const tensor *src);

/* Views: share the buffer, no copy. out must not alias src. */
attamba_status tensor_slice(const tensor *src, int dim, int64_t start, int64_t len, tensor *out);
attamba_status tensor_transpose(const tensor *src, int d0, int d1, tensor *out);
/* Entry i of src's first dim as a view of the remaining dims (twins [2, ...] stored as one tensor). */
attamba_status tensor_index(const tensor *src, int64_t i, tensor *out);
/* A view when src is contiguous; otherwise a contiguous copy. */
attamba_status tensor_reshape(const tensor *src, int ndim, const int64_t *shape, tensor *out);
/* t with its leading dims merged, [..., C] -> [rows, C] (tensor_reshape: a view when contiguous). */
attamba_status tensor_rows(const tensor *t, tensor *out);
/* Columns [from, from + n) of x [B, T, C] as a row-strided view; an empty tensor for an empty x
 * (an arena that is only measuring). */
attamba_status tensor_columns(const tensor *x, int64_t from, int64_t n, tensor *out);
/* src itself (a new view) when contiguous, else a contiguous copy. */
attamba_status tensor_contiguous(const tensor *src, tensor *out);

/* An arena: tensors carved as views out of one device buffer that grows, never shrinks
 * (llm.c / ggml-alloc style). Carving is a pass of tensor_arena_take calls after tensor_arena_begin;
 * when the buffer is too small the pass only measures (the tensors it gives are empty) and
 * tensor_arena_end grows the buffer (one allocation) and says to carve again. So a plan that
 * repeats, or asks for less, creates no device buffer. */
typedef struct tensor_arena {
    rt_ctx *ctx;
    tensor base;       /* f32 [capacity]; i32 views share it (same element size) */
    int64_t used;      /* elements taken in this pass (aligned) */
} tensor_arena;

void tensor_arena_begin(tensor_arena *a, rt_ctx *ctx);
/* A view of the arena (or, while measuring, an empty tensor) of a dtype of 4 bytes. */
attamba_status tensor_arena_take(tensor_arena *a, tensor *out, tensor_dtype dtype, int ndim, const int64_t *shape);
/* 0 when every take of this pass fit; 1 when the buffer was grown and the pass must be repeated. */
attamba_status tensor_arena_end(tensor_arena *a, int *again);
int64_t tensor_arena_bytes(const tensor_arena *a);
void tensor_arena_free(tensor_arena *a);

#endif
