/* optim.h: the trainer's ops outside the layers: reductions (sum of squares for the global gradient
 * norm, column sums for bias gradients), the AdamW step, and the host-side learning-rate schedule
 * and clipping factor. Kernels in cl/optim.cl; reference in src/ref/ref_optim.c.
 *
 * Tensors are f32 and contiguous; they may be views into flat buffers (offsets are honoured).
 * Reductions are deterministic: the same input on the same device gives the same bits. */
#ifndef ATTAMBA_OPS_OPTIM_H
#define ATTAMBA_OPS_OPTIM_H

#include "ops.h"

/* Sum of squares of all elements of x (any shape, contiguous f32), reduced on the device, read back (blocks).
 * Two passes: per-work-item partial sums (sixteen Kahan-compensated lanes over float16 blocks, added
 * pairwise) into a buffer, then one work-group Kahan-sums those and adds its items with a __local tree.
 * Relative error ~1e-7 typically, <= ~2e-6 worst case (two Kahan sums, a 4-level and an 8-level tree of
 * non-negative terms), whatever the size. */
attamba_status ops_sum_squares(rt_ctx *ctx, const tensor *x, double *out);

/* Tuning/testing hook: ops_sum_squares with the first pass's split of the blocks among work-items forced.
 * AUTO = contiguous chunks on CPU devices, interleaved elsewhere (see cl/optim.cl). The splits agree up to
 * rounding; each is deterministic. */
typedef enum { OPS_SUMSQ_AUTO = 0, OPS_SUMSQ_CHUNKED = 1, OPS_SUMSQ_INTERLEAVED = 2 } ops_sumsq_split;
attamba_status ops_sum_squares_with(rt_ctx *ctx, ops_sumsq_split split, const tensor *x, double *out);

/* out[c] += sum over rows r of x[r, c]: x [..., C] (every leading dim is a row; a 1-D x is one row), out [C]
 * (bias gradients: accumulated, like every parameter gradient). Deterministic: rows are split into fixed
 * chunks summed in order (Kahan), then the chunk sums are added in order. out must not overlap x. */
attamba_status ops_sum_rows(rt_ctx *ctx, const tensor *x, tensor *out);

typedef struct adamw_params {
    float lr, beta1, beta2, eps, weight_decay; /* decoupled weight decay: p -= lr * wd * p */
    float grad_scale;                          /* multiply gradients first (global-norm clipping, accumulation) */
    int64_t step;                              /* 1-based, for bias correction */
} adamw_params;

/* One AdamW step on a parameter tensor and its gradient and moments (same shapes, contiguous f32, may be
 * views into flat buffers). m, v updated in place. PyTorch's AdamW:
 *   g = grad_scale * grad; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 *   mhat = m / (1 - b1^t); vhat = v / (1 - b2^t); p = p - lr*wd*p - lr*mhat / (sqrt(vhat) + eps).
 * Refuses (ATTAMBA_ERR_INVALID_ARG): lr or weight_decay negative or not finite, betas outside [0, 1), eps
 * negative or not finite, grad_scale not finite, step < 1, and any two of the four tensors sharing memory. */
attamba_status ops_adamw(rt_ctx *ctx, tensor *param, const tensor *grad, tensor *m, tensor *v, const adamw_params *p);

/* Learning rate at step (1-based): linear warmup from 0 to lr_max over `warmup` steps (lr_max * step /
 * warmup, so step 1 already moves and step == warmup gives lr_max), then cosine decay to lr_min at `total`
 * steps, constant lr_min after. warmup <= 0: no warmup; total <= warmup: lr_min right after the warmup.
 * step <= 0 gives 0 (before training). Pure host function. */
float optim_lr_schedule(int64_t step, int64_t warmup, int64_t total, float lr_max, float lr_min);

/* Global-norm clipping factor: min(1, max_norm / (norm + 1e-6)); max_norm <= 0 (or NaN) disables (returns 1).
 * An infinite norm gives 0 and a NaN norm gives NaN, so a poisoned gradient stays visible. */
float optim_clip_scale(double grad_norm, float max_norm);

#endif
