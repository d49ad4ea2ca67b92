/* dot.cl: dot products of a row of floats with a row of weights stored as f32, f16 or 8-bit blocks,
 * joined after common.cl to the programs that take weights (src/runtime/rt_program.c: gemm, ssm).
 * The weights' storage (-DWT): 0 f32; 1 f16, read with vload_half (core OpenCL 1.2: no cl_khr_fp16
 * needed); 2 q8 blocks (tensor.h: per 32 values along a row, an f32 scale d and 32 int8 q, 36 bytes;
 * value d * q), a row's offset counting blocks. BT is the element type the kernels take weights as;
 * B_STEP(x) advances a weight pointer by x elements. */
#ifndef WT
#define WT 0
#endif
#if WT == 0
#define BT float
#define B_STEP(x) (x)
#elif WT == 1
#define BT half
#define B_STEP(x) (x)
#elif WT == 2
#define BT uchar
#define Q8_BLOCK 32
#define Q8_BYTES 36
#define B_STEP(x) ((x) * Q8_BYTES)
#else
#error "WT must be 0, 1 or 2"
#endif

/* The dot helpers' A: global memory, or the __local rows gemv_group normalises first (-DNORM=1, a
 * program of gemv_group alone). */
#if NORM
#define A_SPACE __local
#else
#define A_SPACE __global
#endif

/* What the dot kernels share. DOT_PIECES(ACCS) walks row w of B a piece at a time from k, ACCS
 * adding the piece to rows of A: q8, a block of 32 as w0..w3 and its scale d; f32 / f16, 16 weights as
 * w0, w1. DOT_ACC(a, s0, s1) is one row's share (two accumulators); DOT_W(k) one weight of the tail
 * (f32 / f16: K need not be a multiple of 16); dot_hsum the sum of a row's two accumulators. */
#if WT == 2
#define DOT_PIECES(ACCS)                                                                              \
    for (; k < K; k += Q8_BLOCK, w += Q8_BYTES) {                                                     \
        __global const char *q = (__global const char *)(w + 4);                                      \
        float8 w0 = convert_float8(vload8(0, q)), w1 = convert_float8(vload8(1, q));                  \
        float8 w2 = convert_float8(vload8(2, q)), w3 = convert_float8(vload8(3, q));                  \
        float8 d = (float8)(*(__global const float *)w);                                              \
        ACCS                                                                                          \
    }
#define DOT_ACC(a, s0, s1)                                                                            \
    s0 = fma(d, fma(vload8(2, (a) + k), w2, vload8(0, (a) + k) * w0), s0);                            \
    s1 = fma(d, fma(vload8(3, (a) + k), w3, vload8(1, (a) + k) * w1), s1);
#else
#if WT == 1
#define DOT_W8(k) vload_half8(0, w + (k))
#define DOT_W(k) vload_half((k), w)
#else
#define DOT_W8(k) vload8(0, w + (k))
#define DOT_W(k) w[k]
#endif
#define DOT_PIECES(ACCS)                                                                              \
    for (; k + 16 <= K; k += 16) {                                                                    \
        float8 w0 = DOT_W8(k), w1 = DOT_W8(k + 8);                                                    \
        ACCS                                                                                          \
    }
#define DOT_ACC(a, s0, s1)                                                                            \
    s0 = fma(vload8(0, (a) + k), w0, s0);                                                             \
    s1 = fma(vload8(0, (a) + k + 8), w1, s1);
#endif

static inline float dot_hsum(float8 s0, float8 s1) {
    float8 h8 = s0 + s1;
    float4 h4 = h8.lo + h8.hi;
    return h4.x + h4.y + h4.z + h4.w;
}

/* The dot product of K floats at a with a row of B (w: its start, B_STEP(row * ldb) from B): the
 * stored type converted as it is loaded (q8: K is a multiple of 32, one scale per block), two float8
 * accumulators (AVX2 has no 16-wide ABI), except for 8-bit weights on 16-wide devices (-DDOT_VW=16:
 * the table's gemm.vw), where the conversions, not memory, bound the loop and a float16 converts half
 * a block at once (8-bit decode of paper-60m 1.3-1.5x on AVX-512; f16 weights so measured no faster). */
static inline float dot_row(const A_SPACE float *a, const __global BT *w, int K) {
#if DOT_VW == 16 && WT == 2
    float16 s = (float16)(0.0f);
    for (int k = 0; k < K; k += Q8_BLOCK, w += Q8_BYTES) {
        __global const char *q = (__global const char *)(w + 4);
        float16 t = vload16(0, a + k) * convert_float16(vload16(0, q));
        t = fma(vload16(1, a + k), convert_float16(vload16(1, q)), t);
        s = fma((float16)(*(__global const float *)w), t, s);
    }
    return dot_hsum(s.lo, s.hi);
#else
    float8 s0 = (float8)(0.0f), s1 = s0;
    int k = 0;
    DOT_PIECES(DOT_ACC(a, s0, s1))
    float s = dot_hsum(s0, s1);
#if WT != 2
    for (; k < K; k++) s = fma(a[k], DOT_W(k), s);
#endif
    return s;
#endif
}

/* Two rows of A (a0, a1) against one row of B, as dot_row: each piece of B loaded once for both,
 * four independent accumulators (one pair of chains per row hides the FMA latency). */
static inline float2 dot_pair(const A_SPACE float *a0, const A_SPACE float *a1, const __global BT *w, int K) {
    float8 s0 = (float8)(0.0f), s1 = s0, t0 = s0, t1 = s0;
    int k = 0;
    DOT_PIECES(DOT_ACC(a0, s0, s1) DOT_ACC(a1, t0, t1))
    float2 r = (float2)(dot_hsum(s0, s1), dot_hsum(t0, t1));
#if WT != 2
    for (; k < K; k++) r = fma((float2)(a0[k], a1[k]), (float2)(DOT_W(k)), r);
#endif
    return r;
}

/* Four rows of A against one row of B, as dot_pair: each piece of B loaded once for the four. */
static inline float4 dot_quad(const A_SPACE float *a0, const A_SPACE float *a1, const A_SPACE float *a2,
                              const A_SPACE float *a3, const __global BT *w, int K) {
    float8 s0 = (float8)(0.0f), s1 = s0, t0 = s0, t1 = s0, u0 = s0, u1 = s0, v0 = s0, v1 = s0;
    int k = 0;
    DOT_PIECES(DOT_ACC(a0, s0, s1) DOT_ACC(a1, t0, t1) DOT_ACC(a2, u0, u1) DOT_ACC(a3, v0, v1))
    float4 r = (float4)(dot_hsum(s0, s1), dot_hsum(t0, t1), dot_hsum(u0, u1), dot_hsum(v0, v1));
#if WT != 2
    for (; k < K; k++) r = fma((float4)(a0[k], a1[k], a2[k], a3[k]), (float4)(DOT_W(k)), r);
#endif
    return r;
}

