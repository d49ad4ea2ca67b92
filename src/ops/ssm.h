/* ssm.h: the Mamba-2 K/V-SSM kernels of Attamba (SPEC 3.1), forward: the causal depthwise conv1d
 * with segment restarts and the chunk-wise SSM scan, each with a single-token decode step.
 * f32 throughout. Outputs and states are contiguous; the inputs x (conv), xs, Bm, Cm and dt_raw may
 * also be row-strided views (a column slice of a wider projection: the last dim contiguous, any
 * row and batch stride), which saves a copy after the input projection. seg_start is the i32 [T]
 * tensor of docs/ops.md (the first position of each token's segment); restart is i32 [B]. */
#ifndef ATTAMBA_OPS_SSM_H
#define ATTAMBA_OPS_SSM_H

#include "ops.h"

/* out[b,t,c] = (silu?)(sum_{j=0..W-1} w[c*W + j] * x[b, t-(W-1)+j, c]) where taps before seg_start[t]
 * (or before 0) count as zero. x [B,T,C], w [C,W], seg_start i32 [T], out [B,T,C]. */
attamba_status ops_conv1d(rt_ctx *ctx, const tensor *x, const tensor *w, const tensor *seg_start, int silu,
                          tensor *out);
/* Decode: x [B,C] one token per sequence; state [B,W-1,C] holds the previous W-1 inputs (oldest first),
 * updated in place (NULL allowed when W == 1); restart i32 [B]: nonzero when this token starts a new
 * segment (the state is treated as zeros). out [B,C]. */
attamba_status ops_conv1d_step(rt_ctx *ctx, const tensor *x, const tensor *w, tensor *state, const tensor *restart,
                               int silu, tensor *out);

/* SSM scan. xs [B,T,nh*p], Bm [B,T,G*N], Cm [B,T,G*N], dt_raw [B,T,nh], dt_bias [nh] or NULL, A_log [nh],
 * D [nh], seg_start i32 [T]. Head h uses group h / (nh/G). dt = softplus(dt_raw + dt_bias), A = -exp(A_log);
 * per head inside a segment (state S [p,N] = 0 at the segment's first token):
 *   S_t = exp(dt_t*A) S_{t-1} + dt_t xs_t Bm_t^T ;  y_t = S_t Cm_t + D xs_t.
 * y [B,T,nh*p] (must not alias an input). final_state [B,nh,p,N] or NULL: the state after token T-1. */
attamba_status ops_ssm_scan(rt_ctx *ctx, const tensor *xs, const tensor *Bm, const tensor *Cm, const tensor *dt_raw,
                            const tensor *dt_bias, const tensor *A_log, const tensor *D, const tensor *seg_start,
                            int n_groups, tensor *y, tensor *final_state);
/* Decode: one token per sequence: xs [B,nh*p], Bm/Cm [B,G*N], dt_raw [B,nh]; restart i32 [B]; state
 * [B,nh,p,N] in/out; y [B,nh*p]. */
attamba_status ops_ssm_step(rt_ctx *ctx, const tensor *xs, const tensor *Bm, const tensor *Cm, const tensor *dt_raw,
                            const tensor *dt_bias, const tensor *A_log, const tensor *D, const tensor *restart,
                            int n_groups, tensor *state, tensor *y);

/* Decode, the whole Mamba-2 mixer of one token per sequence (SPEC 3.1) in one launch, for n = 1 or 2
 * SSMs of one shape (Attamba's K and V). For each SSM i and sequence b at position pos[b] (i32 [B])
 * whose segment starts at seg_first[b] (i32 [B]; the token restarts the state when they are equal):
 *   xbc = SiLU(causal conv over the window and xbcdt[b, :E+2GN]) (xbcdt's columns raw when conv_w is
 *   NULL: SPEC's ssm_conv = 0), split into xs [E], B, C [GN]; dt = softplus(xbcdt[b, E+2GN:] + dt_bias);
 *   the state step of ops_ssm_step; g[b] = gated RMSNorm (y, z[b], norm_w, eps) of ops_gated_rmsnorm.
 * xbcdt [B, E+2GN+nh] and z [B, E] may have strided rows. window [B, W, E+2GN] (W = conv width) is a
 * ring: position q's input in slot q % W, positions before seg_first never read; the step writes
 * slot pos % W. state [B, nh, p, N] in/out, g [B, E] out. Two SSMs run in one launch when each of
 * their tensors shares a buffer with its twin at a fixed distance (one flat weight buffer, one
 * arena, one cache allocation), else one launch each. */
typedef struct ops_ssm_decode_io {
    const tensor *xbcdt, *z, *conv_w, *dt_bias, *A_log, *D, *norm_w;
    tensor *window, *state, *g;
} ops_ssm_decode_io;
attamba_status ops_ssm_decode(rt_ctx *ctx, int n, const ops_ssm_decode_io *io, const tensor *pos,
                              const tensor *seg_first, int n_groups, float eps);

/* Decode, an Attamba layer from its SSMs to its cache (SPEC 3.2) in one launch: ops_ssm_decode of the K
 * and V SSMs (io[0], io[1]), then k = RoPE(k + g_K out_w[0]^T) and v += g_V out_w[1]^T (k, v [B, C] hold
 * x on entry; out_w [C, E], f32, f16 or q8), q [B, q_heads * dq] rotated too, and the append of k and v to
 * the cache: ops_kv_append_rope's arguments and results (k_heads heads of dq in k). Taken where the
 * device's table asks for it (ssm.decode_append: up to that many sequences) and one launch can: the SSMs
 * paired as in ops_ssm_decode,
 * v and out_w[1] their twins' fixed distance after k and out_w[0], heads of whole pieces of 8 floats.
 * Otherwise nothing is launched and *done = 0: the caller runs ops_ssm_decode, the out_proj and
 * ops_kv_append_rope. Bad arguments fail as those would (above the table's limit, there: this op then
 * declines before checking). */
typedef struct ops_kv_step {
    const tensor *out_w[2];
    tensor *q, *k, *v;
    int q_heads, k_heads;
    float theta;
    const tensor *store;
    tensor *kr, *vr, *kb, *vb, *bpos, *nb;
} ops_kv_step;
attamba_status ops_ssm_decode_append(rt_ctx *ctx, const ops_ssm_decode_io io[2], const ops_kv_step *kv,
                                     const tensor *pos, const tensor *seg_first, int n_groups, float eps, int *done);

/* The prefill scan paths (cl/ssm.cl):
 * SEQUENTIAL: one work-item per (batch, segment, head, channel) scans its whole segment token by token;
 *   one launch, no scratch. Best when segments are short (P up to a few hundred).
 * CHUNKED: blocks of `block` tokens are scanned in parallel from zero states, block end states are
 *   carried across blocks, then each block's head (the tokens before its first segment start) gets
 *   the carried state's contribution. Three launches and a scratch of B*ceil(T/block)*nh*p*N floats;
 *   parallel over blocks even inside one long segment (P >= T: pure Mamba-2).
 * QUADRATIC: one work-item per (batch, token, head) sums its segment's earlier tokens directly, y_t =
 *   sum_s (C_t . B_s) decay(s..t) dt_s x_s + D x_t, the state never formed (Mamba-2's diagonal blocks):
 *   (P + 1) / 2 x (N + p) multiply-adds per token and head for segments of P tokens against the
 *   recurrence's 3 p N, so the fastest for Attamba's short chunks and quadratic in the segment length.
 * AUTO: the tuning table's ssm.path ($ATTAMBA_SSM_PATH seq|chunked|quadratic) if set, else
 *   ops_ssm_choose_path with the caller's longest segment (T when it passes 0: the op does not read
 *   seg_start back, that would stall the queue). */
typedef enum { OPS_SSM_AUTO = 0, OPS_SSM_SEQUENTIAL = 1, OPS_SSM_CHUNKED = 2, OPS_SSM_QUADRATIC = 3 } ops_ssm_path;
typedef struct ops_ssm_opts {
    ops_ssm_path path;
    int block;               /* <= 0: the path's default (16 sequential, 64 chunked) */
    int64_t longest_segment; /* the longest segment of seg_start, for AUTO; <= 0: unknown (T) */
} ops_ssm_opts;
/* ops_ssm_scan with options (NULL: AUTO, nothing known of the segments). */
attamba_status ops_ssm_scan_with(rt_ctx *ctx, const ops_ssm_opts *opts, const tensor *xs, const tensor *Bm,
                                 const tensor *Cm, const tensor *dt_raw, const tensor *dt_bias, const tensor *A_log,
                                 const tensor *D, const tensor *seg_start, int n_groups, tensor *y,
                                 tensor *final_state);
/* The path for a scan of `rows` = B*nh*p independent channels over T tokens whose longest segment has
 * `longest_segment` tokens (callers that know their boundaries pass the real figure). Quadratic up to
 * ssm.quad_max tokens; sequential when segments are short or when the sequential path alone has
 * enough work-items for the device; else chunked. */
ops_ssm_path ops_ssm_choose_path(rt_ctx *ctx, int64_t rows, int64_t T, int64_t longest_segment);
const char *ops_ssm_path_name(ops_ssm_path path);

/* ---- backward (training) ----
 * Gradients w.r.t. inputs are written (overwritten), gradients w.r.t. parameters accumulated (+=);
 * pass NULL for a gradient that is not needed. Input-gradient outputs may be row-strided views like
 * the inputs (e.g. column slices of one projection gradient; several may share a buffer when their
 * columns are disjoint) but must not share a buffer with any input. dout/dy may be row-strided. */

/* Gradients of ops_conv1d (out = (silu?)(conv(x))): given dout [B,T,C], writes dx [B,T,C] and accumulates
 * dw [C,W]. With silu, the pre-activation is recomputed from x and w. dw is reduced in two passes
 * (partial sums over fixed row ranges, then over ranges in order): deterministic. */
attamba_status ops_conv1d_backward(rt_ctx *ctx, const tensor *x, const tensor *w, const tensor *seg_start, int silu,
                                   const tensor *dout, tensor *dx, tensor *dw);
/* Gradients of ops_ssm_scan (y = scan(...), see above): given dy [B,T,nh*p], writes dxs, dBm, dCm, ddt_raw (same
 * shapes as the inputs) and accumulates ddt_bias [nh] (only with a dt_bias; refused without one),
 * dA_log [nh], dD [nh]. States are recomputed segment by segment, never stored (docs/training.md,
 * "SSM backward"); the work is parallel over (batch, segment, head, state row or column), like the
 * sequential forward path, so one long segment runs B*nh*max(p, N) scans of T tokens. Scratch:
 * 2*B*T*nh*N + 8*B*T*nh floats. Deterministic (no atomics; fixed summation orders). */
attamba_status ops_ssm_scan_backward(rt_ctx *ctx, const tensor *xs, const tensor *Bm, const tensor *Cm,
                                     const tensor *dt_raw, const tensor *dt_bias, const tensor *A_log, const tensor *D,
                                     const tensor *seg_start, int n_groups, const tensor *dy, tensor *dxs, tensor *dBm,
                                     tensor *dCm, tensor *ddt_raw, tensor *ddt_bias, tensor *dA_log, tensor *dD);

#endif
