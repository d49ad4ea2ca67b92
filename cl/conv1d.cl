/* conv1d.cl: the causal depthwise conv of the K/V SSM (SPEC 3.1) with segment restarts.
 * Compiled with -DCONV_W=<taps>. Inputs may have strided rows (a column slice of a wider projection);
 * the last dim is contiguous.
 * Prefill and g of the backward: a 3-D launch (c / CONV_VC, t / CONV_TT, b); each work-item takes CONV_VC
 * neighbouring channels as one vector (cvec) down CONV_TT tokens, reading each output's CONV_W tap rows
 * (conv_at; each row comes from memory once, the later reads hit L1). No division per element, and the
 * SiLU's exp is common.cl's vector one (PoCL runs exp() scalar unless the code is written on vectors:
 * the scalar one-output-per-item version ran at 3-5% of copy bandwidth; its library exp on vectors
 * cost ~8% more at T = 4096 on AVX2). The last item of a row takes the C % CONV_VC tail channel by
 * channel. Taps before the segment start are selected to 0. */

#ifndef CONV_W
#error "compile with -DCONV_W=<taps>"
#endif
#ifndef CONV_TT
#define CONV_TT 8 /* tokens per work-item (the table's conv.tt); the host launches ceil(T / CONV_TT) along dim 1 */
#endif
#ifndef CONV_VC
#define CONV_VC 4 /* channels per work-item as one vector (the table's conv.vc: 4, 8 or 16) */
#endif
#define CONV_CAT_(a, b) a##b
#define CONV_CAT(a, b) CONV_CAT_(a, b)
typedef CONV_CAT(float, CONV_VC) cvec;
typedef CONV_CAT(int, CONV_VC) civec;
ATB_DEFINE_EXP(conv_exp, cvec, civec, CONV_CAT(as_int, CONV_VC), CONV_CAT(as_float, CONV_VC))
#define CLOAD(p) CONV_CAT(vload, CONV_VC)(0, (p))
#define CSTORE(v, p) CONV_CAT(vstore, CONV_VC)((v), 0, (p))

static inline float conv_act(float v, int silu) { return silu ? v * atb_sigmoid(v) : v; }
static inline cvec conv_actv(cvec v, int silu) { return silu ? v / (1.0f + conv_exp(-v)) : v; }

/* Pre-activation of output t of one channel: taps of x column xc (row stride x_rs) times wc, the
 * taps before the segment start lo selected to 0 (the tail channels' path). */
static inline float conv_pre(__global const float *xc, int x_rs, __global const float *wc, int t, int lo) {
    float acc = 0.0f;
    for (int j = 0; j < CONV_W; j++) {
        int s = t - (CONV_W - 1) + j;
        float v = xc[max(s, 0) * x_rs];
        acc += s >= lo ? wc[j] * v : 0.0f;
    }
    return acc;
}

/* The weights of tap j for the CONV_VC channels at wc (channel k's taps at wc[k * CONV_W]), built as a
 * vector literal: through a private float array PoCL (AVX2) kept them, and every product with them, in
 * 8-byte pieces (the forward 1.4x slower). */
#define CONV_WK(k) wc[(k) * CONV_W + j]
static inline cvec conv_wv(__global const float *wc, int j) {
#if CONV_VC == 4
    return (float4)(CONV_WK(0), CONV_WK(1), CONV_WK(2), CONV_WK(3));
#elif CONV_VC == 8
    return (float8)(CONV_WK(0), CONV_WK(1), CONV_WK(2), CONV_WK(3), CONV_WK(4), CONV_WK(5), CONV_WK(6), CONV_WK(7));
#else
    return (float16)(CONV_WK(0), CONV_WK(1), CONV_WK(2), CONV_WK(3), CONV_WK(4), CONV_WK(5), CONV_WK(6), CONV_WK(7),
                     CONV_WK(8), CONV_WK(9), CONV_WK(10), CONV_WK(11), CONV_WK(12), CONV_WK(13), CONV_WK(14),
                     CONV_WK(15));
#endif
}

/* The weights of the CONV_VC channels at wc, tap by tap. */
static inline void conv_weights(__global const float *wc, cvec *wv) {
#pragma unroll
    for (int j = 0; j < CONV_W; j++) wv[j] = conv_wv(wc, j);
}

/* The pre-activation of token t for CONV_VC channels at xc: each tap's row read straight from x (the
 * rows are in L1 after the first output). A private window slid from row to row was slower on PoCL
 * (AVX2, 1.5-2x): the shift went through the stack, and a row stored there as two halves and reloaded
 * whole stalls store-to-load forwarding. The tap loops are unrolled by pragma (PoCL left them loops).
 * The forward and the backward's recomputation both call it, so they see the same float. */
static inline cvec conv_at(__global const float *xc, int x_rs, const cvec *wv, int t, int lo) {
    cvec acc = (cvec)(0.0f);
#pragma unroll
    for (int j = 0; j < CONV_W; j++) {
        int s = t - (CONV_W - 1) + j;
        acc += s >= lo ? wv[j] * CLOAD(xc + max(s, 0) * x_rs) : (cvec)(0.0f);
    }
    return acc;
}

__kernel void conv1d_f32(__global float *out, int oo, __global const float *x, int xo, int x_rs, int x_bs,
                         __global const float *w, int wo, __global const int *seg, int so,
                         int B, int T, int C, int silu) {
    int c = CONV_VC * get_global_id(0), t0 = CONV_TT * get_global_id(1), b = get_global_id(2);
    if (c >= C || t0 >= T || b >= B) return;
    int t1 = min(T, t0 + CONV_TT);
    __global const float *xc = x + xo + b * x_bs + c, *wc = w + wo + c * CONV_W;
    __global float *o = out + oo + b * T * C + c;
    if (c + CONV_VC <= C) {
        cvec wv[CONV_W];
        conv_weights(wc, wv);
        for (int t = t0; t < t1; t++) CSTORE(conv_actv(conv_at(xc, x_rs, wv, t, seg[so + t]), silu), o + t * C);
    } else {
        for (int t = t0; t < t1; t++)
            for (int k = 0; k < C - c; k++)
                o[t * C + k] = conv_act(conv_pre(xc + k, x_rs, wc + k * CONV_W, t, seg[so + t]), silu);
    }
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

/* g[b, t, c] = dout * silu'(pre), pre recomputed; launched like conv1d_f32. */
__kernel void conv1d_bwd_g(__global float *g, __global const float *x, int xo, int x_rs, int x_bs,
                           __global const float *w, int wo, __global const int *seg, int so, __global const float *dout,
                           int go, int g_rs, int g_bs, int B, int T, int C) {
    int c = CONV_VC * get_global_id(0), t0 = CONV_TT * get_global_id(1), b = get_global_id(2);
    if (c >= C || t0 >= T || b >= B) return;
    int t1 = min(T, t0 + CONV_TT);
    __global const float *xc = x + xo + b * x_bs + c, *wc = w + wo + c * CONV_W;
    __global const float *d = dout + go + b * g_bs + c;
    __global float *gr = g + b * T * C + c;
    if (c + CONV_VC <= C) {
        cvec wv[CONV_W];
        conv_weights(wc, wv);
        for (int t = t0; t < t1; t++) {
            cvec pre = conv_at(xc, x_rs, wv, t, seg[so + t]), sg = 1.0f / (1.0f + conv_exp(-pre));
            CSTORE(CLOAD(d + t * g_rs) * sg * (1.0f + pre * (1.0f - sg)), gr + t * C);
        }
    } else {
        for (int t = t0; t < t1; t++)
            for (int k = 0; k < C - c; k++) {
                float pre = conv_pre(xc + k, x_rs, wc + k * CONV_W, t, seg[so + t]), sg = atb_sigmoid(pre);
                gr[t * C + k] = d[t * g_rs + k] * sg * (1.0f + pre * (1.0f - sg));
            }
    }
}

/* dx[b, s, c] = sum over the outputs t = s + W-1-j that read x[b, s, c] (t < T, s >= seg_start[t]) of
 * w[c, j] g[b, t, c]; launched like conv1d_f32, each item reading the g rows s .. s + W-1 (and
 * their segment starts) for each of its tokens. */
__kernel void conv1d_bwd_dx(__global float *dx, int gxo, int gx_rs, int gx_bs, __global const float *w, int wo,
                            __global const int *seg, int so, __global const float *g, int go, int g_rs, int g_bs,
                            int B, int T, int C) {
    int c = CONV_VC * get_global_id(0), s0 = CONV_TT * get_global_id(1), b = get_global_id(2);
    if (c >= C || s0 >= T || b >= B) return;
    int s1 = min(T, s0 + CONV_TT);
    __global const float *wc = w + wo + c * CONV_W, *gc = g + go + b * g_bs + c;
    __global float *o = dx + gxo + b * gx_bs + c;
    if (c + CONV_VC <= C) {
        cvec wv[CONV_W];
        conv_weights(wc, wv);
        for (int s = s0; s < s1; s++) {
            cvec acc = (cvec)(0.0f);
#pragma unroll
            for (int j = 0; j < CONV_W; j++) { /* output t = s + j reads x[s] through tap W-1-j */
                int t = s + j, tc = min(t, T - 1), lo = t < T ? seg[so + tc] : T;
                acc += s >= lo ? wv[CONV_W - 1 - j] * CLOAD(gc + tc * g_rs) : (cvec)(0.0f);
            }
            CSTORE(acc, o + s * gx_rs);
        }
    } else {
        for (int s = s0; s < s1; s++)
            for (int k = 0; k < C - c; k++) {
                float acc = 0.0f;
                for (int j = 0; j < CONV_W; j++) {
                    int t = s + (CONV_W - 1) - j, tc = min(t, T - 1);
                    acc += t < T && s >= seg[so + tc] ? wc[k * CONV_W + j] * gc[tc * g_rs + k] : 0.0f;
                }
                o[s * gx_rs + k] = acc;
            }
    }
}

/* dw, first pass: partial sums over the R tokens [k R, (k + 1) R) of one sequence b per work-item,
 * a 3-D launch (c / CONV_VC, k, b), each token's tap rows read as in conv_at; part [B, nk, C, W].
 * Fixed token order: the result does not depend on scheduling. */
__kernel void conv1d_bwd_dw_part(__global float *part, __global const float *x, int xo, int x_rs, int x_bs,
                                 __global const int *seg, int so, __global const float *g, int go, int g_rs,
                                 int g_bs, int B, int T, int C, int R, int nk) {
    int c = CONV_VC * get_global_id(0), k = get_global_id(1), b = get_global_id(2);
    if (c >= C || k >= nk || b >= B) return;
    int t0 = k * R, t1 = min(T, t0 + R);
    __global const float *xc = x + xo + b * x_bs + c, *gc = g + go + b * g_bs + c;
    __global float *pc = part + ((b * nk + k) * C + c) * CONV_W;
    if (c + CONV_VC <= C) {
        cvec acc[CONV_W];
        for (int j = 0; j < CONV_W; j++) acc[j] = (cvec)(0.0f);
        for (int t = t0; t < t1; t++) {
            cvec gv = CLOAD(gc + t * g_rs);
            int lo = seg[so + t];
#pragma unroll
            for (int j = 0; j < CONV_W; j++) {
                int s = t - (CONV_W - 1) + j;
                acc[j] += s >= lo ? gv * CLOAD(xc + max(s, 0) * x_rs) : (cvec)(0.0f);
            }
        }
        for (int j = 0; j < CONV_W; j++) {
            float t[CONV_VC];
            CSTORE(acc[j], t);
            for (int k = 0; k < CONV_VC; k++) pc[k * CONV_W + j] = t[k];
        }
    } else {
        for (int q = 0; q < C - c; q++) {
            float acc[CONV_W];
            for (int j = 0; j < CONV_W; j++) acc[j] = 0.0f;
            for (int t = t0; t < t1; t++) {
                int lo = seg[so + t];
                float gv = gc[t * g_rs + q];
                for (int j = 0; j < CONV_W; j++) {
                    int s = t - (CONV_W - 1) + j;
                    acc[j] += s >= lo ? gv * xc[max(s, 0) * x_rs + q] : 0.0f;
                }
            }
            for (int j = 0; j < CONV_W; j++) pc[q * CONV_W + j] = acc[j];
        }
    }
}

/* dw, second pass: dw[c, j] += sum over k of part[k, c, j], in k order (k over B x nk). */
__kernel void conv1d_bwd_dw_sum(__global float *dw, int dwo, __global const float *part, int C, int nk) {
    int i = get_global_id(0);
    if (i >= C * CONV_W) return;
    float acc = 0.0f;
    for (int k = 0; k < nk; k++) acc += part[k * C * CONV_W + i];
    dw[dwo + i] += acc;
}
