/* layer.h: the small ops one Attamba/transformer layer needs (SPEC 3), forward only.
 * f32 and contiguous unless said; `out` is allocated by the caller with the shape given. Argument
 * errors return ATTAMBA_ERR_SHAPE (shapes, dtypes, strides) or ATTAMBA_ERR_INVALID_ARG (empty
 * tensors, bad scalars) with a message on the context. Nothing blocks the host. */
#ifndef ATTAMBA_OPS_LAYER_H
#define ATTAMBA_OPS_LAYER_H

#include "ops/ops.h"

/* out = x / sqrt(mean(x^2 over the last dim) + eps) * w. x [..., C] (1 to 4 dims), w [C],
 * out like x; eps >= 0. out may alias x. One work-group per row. */
attamba_status ops_rmsnorm(rt_ctx *ctx, const tensor *x, const tensor *w, float eps, tensor *out);

/* Gated RMSNorm of Mamba-2: g = y * silu(z); out = g / sqrt(mean(g^2) + eps) * w.
 * y, z [..., C] of one shape, w [C], out like y; eps >= 0. out may alias y or z. */
attamba_status ops_gated_rmsnorm(rt_ctx *ctx, const tensor *y, const tensor *z, const tensor *w, float eps,
                                 tensor *out);

/* RoPE in place on x [B, T, n_heads*dh] (dh even): within each head, pairs (2i, 2i+1) rotate by
 * the angle pos * theta^(-2i/dh), pos = pos0[b] + t, where pos0 (i32 [B]) is the absolute
 * position of token 0 of each sequence (decode passes the current positions). theta > 0.
 * Angles are computed in f32 (as PyTorch does), so their error grows with pos: about pos * 5e-7
 * radians. */
attamba_status ops_rope(rt_ctx *ctx, tensor *x, int n_heads, const tensor *pos0, float theta);
/* RoPE of q [B, T, q_heads*dh] and k [B, T, k_heads*dh] (the same B, T, dh) in one launch. */
attamba_status ops_rope2(rt_ctx *ctx, tensor *q, int q_heads, tensor *k, int k_heads, const tensor *pos0, float theta);
/* RoPE by sign * angle (sign -1 is the backward pass) of x and, unless NULL, x2; op names the caller
 * in messages. */
attamba_status ops_rope_rotate(rt_ctx *ctx, const char *op, tensor *x, int n_heads, tensor *x2, int n_heads2,
                               const tensor *pos0, float theta, float sign);
/* ops_rope_rotate's checks of its arguments, alone (for ops that rotate inside another kernel); *half_dh
 * gets half the head width. */
attamba_status ops_rope_check(rt_ctx *ctx, const char *op, const tensor *x, int n_heads, const tensor *x2,
                              int n_heads2, const tensor *pos0, float theta, int *half_dh);

/* out = silu(gate) * up; all three of one shape; out may alias either input. */
attamba_status ops_swiglu(rt_ctx *ctx, const tensor *gate, const tensor *up, tensor *out);

/* out[b, t, :] = table[ids[b, t], :]: ids i32 [B, T], table [V, d], out [B, T, d]. Ids outside
 * [0, V) give a zero row: the kernel cannot report them, so callers validate ids on the host. */
attamba_status ops_embedding(rt_ctx *ctx, const tensor *ids, const tensor *table, tensor *out);

/* out[r, :] = x[r, :] + bias[:] over every row r: x [..., C], bias [C], out like x (may alias x). */
attamba_status ops_add_bias(rt_ctx *ctx, const tensor *x, const tensor *bias, tensor *out);

#endif
