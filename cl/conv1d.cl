/* conv1d.cl: the causal depthwise conv of the K/V SSM (SPEC 3.1) with segment restarts.
 * Compiled with -DCONV_W=<taps>. Inputs may have strided rows (a column slice of a wider projection);
 * the last dim is contiguous.
 * Prefill: one work-item per output, channel fastest (neighbours read neighbouring floats); the tap
 * loop has the same compile-time trip count everywhere (a select zeroes taps before the segment
 * start). A variant sliding a private window down tiles of 16 tokens measured 3-4x slower on PoCL. */

#ifndef CONV_W
#error "compile with -DCONV_W=<taps>"
#endif

inline float conv_act(float v, int silu) { return silu ? v * atb_sigmoid(v) : v; }

/* Pre-activation of output t of one channel: taps of x column xc (row stride x_rs) times wc, the
 * taps before the segment start lo selected to 0. Shared by the forward and the backward's
 * recomputation, so both see the same float. */
inline float conv_pre(__global const float *xc, int x_rs, __global const float *wc, int t, int lo) {
    float acc = 0.0f;
    for (int j = 0; j < CONV_W; j++) {
        int s = t - (CONV_W - 1) + j;
        float v = xc[max(s, 0) * x_rs];
        acc += s >= lo ? wc[j] * v : 0.0f;
    }
    return acc;
}

__kernel void conv1d_f32(__global float *out, int oo, __global const float *x, int xo, int x_rs, int x_bs,
                         __global const float *w, int wo, __global const int *seg, int so,
                         int B, int T, int C, int silu) {
    int i = get_global_id(0);
    if (i >= B * T * C) return;
    int c = i % C, bt = i / C, t = bt % T, b = bt / T;
    float acc = conv_pre(x + xo + b * x_bs + c, x_rs, w + wo + c * CONV_W, t, seg[so + t]);
    out[oo + i] = conv_act(acc, silu);
}

/* Decode: one token per sequence. Each work-item owns one (b, c) column of the window, so the
 * in-place shift needs no synchronisation. */
__kernel void conv1d_step_f32(__global float *out, int oo, __global const float *x, int xo, int x_rs,
                              __global const float *w, int wo, __global float *state, int sto,
                              __global const int *restart, int ro, int B, int C, int W, int silu) {
    int i = get_global_id(0);
    if (i >= B * C) return;
    int c = i % C, b = i / C;
    int r = restart[ro + b] != 0;
    float xv = x[xo + b * x_rs + c];
    __global const float *wc = w + wo + c * W;
    __global float *st = state + sto + b * (W - 1) * C + c;
    float acc = wc[W - 1] * xv;
    for (int j = 0; j < W - 1; j++) acc += r ? 0.0f : wc[j] * st[j * C];
    for (int j = 0; j < W - 2; j++) st[j * C] = r ? 0.0f : st[(j + 1) * C];
    if (W > 1) st[(W - 2) * C] = xv;
    out[oo + i] = conv_act(acc, silu);
}

/* ---- backward (training). With silu, conv1d_bwd_g first turns dout into g = dL/d(pre-activation),
 * recomputing the pre-activation (W taps), into a [B,T,C] scratch; without silu g is dout itself.
 * The other two kernels read g (row-strided). Recomputing g inside them instead (no scratch) cost
 * W times the taps and measured ~5x the forward on PoCL. ---- */

/* g[b, t, c] = dout * silu'(pre), pre recomputed; one work-item per (b, t, c), channel fastest. */
__kernel void conv1d_bwd_g(__global float *g, __global const float *x, int xo, int x_rs, int x_bs,
                           __global const float *w, int wo, __global const int *seg, int so, __global const float *dout,
                           int go, int g_rs, int g_bs, int B, int T, int C) {
    int i = get_global_id(0);
    if (i >= B * T * C) return;
    int c = i % C, bt = i / C, t = bt % T, b = bt / T;
    float pre = conv_pre(x + xo + b * x_bs + c, x_rs, w + wo + c * CONV_W, t, seg[so + t]);
    float sg = atb_sigmoid(pre);
    g[i] = dout[go + b * g_bs + t * g_rs + c] * sg * (1.0f + pre * (1.0f - sg));
}

/* dx[b, s, c] = sum over the outputs t = s + W-1-j that read x[b, s, c] (t < T, s >= seg_start[t]) of
 * w[c, j] g[b, t, c]. One work-item per (b, s, c), channel fastest. */
__kernel void conv1d_bwd_dx(__global float *dx, int gxo, int gx_rs, int gx_bs, __global const float *w, int wo,
                            __global const int *seg, int so, __global const float *g, int go, int g_rs, int g_bs,
                            int B, int T, int C) {
    int i = get_global_id(0);
    if (i >= B * T * C) return;
    int c = i % C, bt = i / C, s = bt % T, b = bt / T;
    __global const float *wc = w + wo + c * CONV_W, *gc = g + go + b * g_bs + c;
    float acc = 0.0f;
    for (int j = 0; j < CONV_W; j++) {
        int t = s + (CONV_W - 1) - j;
        acc += t < T && s >= seg[so + min(t, T - 1)] ? wc[j] * gc[min(t, T - 1) * g_rs] : 0.0f;
    }
    dx[gxo + b * gx_bs + s * gx_rs + c] = acc;
}

/* dw, first pass: partial sums over R consecutive (b, t) rows per work-item (k, c), channel fastest;
 * part [nk, C, W]. Fixed row order: the result does not depend on scheduling. */
__kernel void conv1d_bwd_dw_part(__global float *part, __global const float *x, int xo, int x_rs, int x_bs,
                                 __global const int *seg, int so, __global const float *g, int go, int g_rs,
                                 int g_bs, int B, int T, int C, int R, int nk) {
    int i = get_global_id(0);
    if (i >= nk * C) return;
    int c = i % C, k = i / C;
    float acc[CONV_W];
    for (int j = 0; j < CONV_W; j++) acc[j] = 0.0f;
    int r1 = min(B * T, (k + 1) * R);
    for (int r = k * R; r < r1; r++) {
        int t = r % T, b = r / T, lo = seg[so + t];
        __global const float *xc = x + xo + b * x_bs + c;
        float gv = g[go + b * g_bs + t * g_rs + c];
        for (int j = 0; j < CONV_W; j++) {
            int s = t - (CONV_W - 1) + j;
            acc[j] += s >= lo ? gv * xc[max(s, 0) * x_rs] : 0.0f;
        }
    }
    for (int j = 0; j < CONV_W; j++) part[(k * C + c) * CONV_W + j] = acc[j];
}

/* dw, second pass: dw[c, j] += sum over k of part[k, c, j], in k order. */
__kernel void conv1d_bwd_dw_sum(__global float *dw, int dwo, __global const float *part, int C, int nk) {
    int i = get_global_id(0);
    if (i >= C * CONV_W) return;
    float acc = 0.0f;
    for (int k = 0; k < nk; k++) acc += part[k * C * CONV_W + i];
    dw[dwo + i] += acc;
}
