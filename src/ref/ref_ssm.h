/* ref_ssm.h: plain-C reference of the Mamba-2 K/V-SSM pieces (SPEC 3.1): the causal depthwise conv1d
 * with segment restarts and the SSM scan, each with its single-token decode step. Host arrays,
 * contiguous row-major, accumulating in double. seg_start is [T] (docs/ops.md); restart is [B]. */
#ifndef ATTAMBA_REF_SSM_H
#define ATTAMBA_REF_SSM_H

#include <stdint.h>

/* out[b,t,c] = (silu?)(sum_j w[c*W+j] x[b, t-(W-1)+j, c]), taps before seg_start[t] or 0 are zero.
 * x, out [B,T,C]; w [C,W]. */
void ref_conv1d(int B, int T, int C, int W, const float *x, const float *w, const int32_t *seg_start, int silu,
                float *out);
/* One token: x [B,C], state [B,W-1,C] (oldest first, updated), restart [B], out [B,C]. */
void ref_conv1d_step(int B, int C, int W, const float *x, const float *w, float *state, const int32_t *restart,
                     int silu, float *out);

/* softplus as the kernels compute it: x above 20 passes through (exp would overflow nothing, but
 * log1p(exp(x)) == x to float precision there). */
double ref_softplus(double x);

/* The SSM scan, segment by segment: xs [B,T,nh*p], Bm/Cm [B,T,G*N], dt_raw [B,T,nh], dt_bias [nh]
 * or NULL, A_log/D [nh]; y [B,T,nh*p]; final_state [B,nh,p,N] or NULL (state after token T-1). */
void ref_ssm_scan(int B, int T, int nh, int p, int G, int N, const float *xs, const float *Bm, const float *Cm,
                  const float *dt_raw, const float *dt_bias, const float *A_log, const float *D,
                  const int32_t *seg_start, float *y, float *final_state);
/* One token: xs [B,nh*p], Bm/Cm [B,G*N], dt_raw [B,nh], restart [B], state [B,nh,p,N] in/out,
 * y [B,nh*p]. */
void ref_ssm_step(int B, int nh, int p, int G, int N, const float *xs, const float *Bm, const float *Cm,
                  const float *dt_raw, const float *dt_bias, const float *A_log, const float *D,
                  const int32_t *restart, float *state, float *y);

/* ops_ssm_decode for one SSM: xbcdt [B, E+2GN+nh] (rows x_rs apart), z [B,E], conv_w [E+2GN, W] or
 * NULL (W = 0), window [B, W, E+2GN] ring in/out, pos/seg_first [B], state [B,nh,p,N] in/out, g [B,E]:
 * the ring conv + SiLU, ref_ssm_step (restart where pos == seg_first) and ref_gated_rmsnorm. */
void ref_ssm_decode(int B, int nh, int p, int G, int N, int W, const float *xbcdt, int x_rs, const float *z,
                    const float *conv_w, float *window, const float *dt_bias, const float *A_log, const float *D,
                    const float *norm_w, float eps, const int32_t *pos, const int32_t *seg_first, float *state,
                    float *g);

/* ---- backward (training). Input gradients are written, parameter gradients accumulated (+=);
 * any gradient may be NULL (not computed). Written from the chain rule directly: the conv's taps
 * transposed, the scan's states stored per segment and the state gradient G run backwards. ---- */

/* Gradients of ref_conv1d given dout [B,T,C]: dx [B,T,C] written, dw [C,W] accumulated. */
void ref_conv1d_backward(int B, int T, int C, int W, const float *x, const float *w, const int32_t *seg_start,
                         int silu, const float *dout, float *dx, float *dw);
/* Gradients of ref_ssm_scan given dy [B,T,nh*p]: dxs, dBm, dCm, ddt_raw written (shapes of the inputs);
 * ddt_bias (needs dt_bias), dA_log, dD [nh] accumulated. */
void ref_ssm_scan_backward(int B, int T, int nh, int p, int G, int N, const float *xs, const float *Bm,
                           const float *Cm, const float *dt_raw, const float *dt_bias, const float *A_log,
                           const float *D, const int32_t *seg_start, const float *dy, float *dxs, float *dBm,
                           float *dCm, float *ddt_raw, float *ddt_bias, float *dA_log, float *dD);

#endif
