/* layer_backward.h: backward passes of the layer ops (src/ops/layer.h, ops_silu of ops.h), for
 * training. f32 and contiguous unless said. Conventions:
 * - gradients w.r.t. inputs (dx, dy, dz, dgate, dup) are written (overwritten);
 * - gradients w.r.t. parameters (dw, dtable) are ACCUMULATED (+=): the trainer zeroes them once
 *   per step, and several uses of one weight add up;
 * - a NULL output is not computed (all NULL: nothing is done, ATTAMBA_OK).
 * Parameter gradients are column sums over all rows done without float atomics (fixed-order
 * partial sums), so every op here is bitwise reproducible for given shapes on a given device.
 * Argument errors return ATTAMBA_ERR_SHAPE (shapes, dtypes, strides) or ATTAMBA_ERR_INVALID_ARG
 * (empty tensors, bad scalars, ids out of range, forbidden aliasing) with a message on the context.
 * Nothing blocks the host except ops_embedding_backward's small upload. */
#ifndef ATTAMBA_OPS_LAYER_BACKWARD_H
#define ATTAMBA_OPS_LAYER_BACKWARD_H

#include <stdint.h>

#include "ops/ops.h"

/* out = x / rms(x) * w (see ops_rmsnorm): given dout [..., C] (x's shape), writes dx (x's shape)
 * and accumulates dw [C]. dx may alias x or dout. */
attamba_status ops_rmsnorm_backward(rt_ctx *ctx, const tensor *x, const tensor *w, float eps, const tensor *dout,
                                    tensor *dx, tensor *dw);

/* Gated RMSNorm (see ops_gated_rmsnorm, g = y * silu(z)): writes dy, dz (y's shape), accumulates
 * dw [C]. dy and dz may alias y, z or dout, but not each other. */
attamba_status ops_gated_rmsnorm_backward(rt_ctx *ctx, const tensor *y, const tensor *z, const tensor *w, float eps,
                                          const tensor *dout, tensor *dy, tensor *dz, tensor *dw);

/* RoPE is a rotation: its backward rotates the gradient by the opposite angle (computed exactly as
 * ops_rope computes it), in place on dx [B, T, n_heads*dh]; pos0 and theta as in ops_rope. */
attamba_status ops_rope_backward(rt_ctx *ctx, tensor *dx, int n_heads, const tensor *pos0, float theta);

/* out = silu(gate) * up: writes dgate, dup (gate's shape). dgate may alias gate and dup may alias
 * up (saves memory); either may alias dout; dgate and dup must differ. */
attamba_status ops_swiglu_backward(rt_ctx *ctx, const tensor *gate, const tensor *up, const tensor *dout,
                                   tensor *dgate, tensor *dup);

/* out = silu(x): writes dx = dout * silu'(x) (may alias x or dout). */
attamba_status ops_silu_backward(rt_ctx *ctx, const tensor *x, const tensor *dout, tensor *dx);

/* Embedding: dtable[id, :] += sum of dout[b, t, :] over positions with ids[b, t] == id, added in
 * increasing position order. ids i32 [B, T] on the device (checked for shape only) and ids_host,
 * the same B*T ids on the host, from which the op builds a list of positions per used id (CSR) and
 * launches one work-item per (used id, channel): deterministic, no float atomics. dout [B, T, d],
 * dtable [V, d]. Ids outside [0, V) are refused (ATTAMBA_ERR_INVALID_ARG) before anything runs.
 * Blocks the host only to upload the CSR (B*T + 2 * used ids + 1 ints). */
attamba_status ops_embedding_backward(rt_ctx *ctx, const tensor *ids, const int32_t *ids_host, const tensor *dout,
                                      tensor *dtable);

#endif
