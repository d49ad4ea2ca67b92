/* conv1d.cl: the causal depthwise conv of the K/V SSM (SPEC 3.1) with segment restarts.
 * Inputs may have strided rows (a column slice of a wider projection); the last dim is contiguous.
 * One work-item per output element, channel fastest, so neighbours read neighbouring floats.
 * The tap loop runs W times in every work-item (a select zeroes the taps before the segment
 * start) so PoCL can vectorise across work-items. */

inline float conv_act(float v, int silu) { return silu ? v * atb_sigmoid(v) : v; }

__kernel void conv1d_f32(__global float *out, int oo, __global const float *x, int xo, int x_rs, int x_bs,
                         __global const float *w, int wo, __global const int *seg, int so,
                         int B, int T, int C, int W, int silu) {
    int i = get_global_id(0);
    if (i >= B * T * C) return;
    int c = i % C, bt = i / C, t = bt % T, b = bt / T;
    int lo = max(seg[so + t], 0);
    __global const float *xc = x + xo + b * x_bs + c;
    __global const float *wc = w + wo + c * W;
    float acc = 0.0f;
    for (int j = 0; j < W; j++) {
        int s = t - (W - 1) + j;
        float v = xc[max(s, 0) * x_rs];
        acc += s >= lo ? wc[j] * v : 0.0f;
    }
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
