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

__kernel void conv1d_f32(__global float *out, int oo, __global const float *x, int xo, int x_rs, int x_bs,
                         __global const float *w, int wo, __global const int *seg, int so,
                         int B, int T, int C, int silu) {
    int i = get_global_id(0);
    if (i >= B * T * C) return;
    int c = i % C, bt = i / C, t = bt % T, b = bt / T;
    int lo = seg[so + t];
    __global const float *xc = x + xo + b * x_bs + c;
    float acc = 0.0f;
    for (int j = 0; j < CONV_W; j++) {
        int s = t - (CONV_W - 1) + j;
        float v = xc[max(s, 0) * x_rs];
        acc += s >= lo ? w[wo + c * CONV_W + j] * v : 0.0f;
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
