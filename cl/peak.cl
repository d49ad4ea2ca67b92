/* peak.cl: the device's ceilings (bench peak): FMA throughput, device-memory copy, launch latency. */

/* peak_fmaW(out, n_iter, a, b): every work-item runs 8 independent chains x = x * a + b on floatW,
 * n_iter times: 2 x W x 8 x n_iter FLOP. Eight chains cover two FMA pipes of 4-cycle latency (AVX2,
 * AVX-512) in 8 registers, leaving room for a and b (twelve spilled under PoCL on AVX2); on a GPU
 * every lane is a chain of its own. The expression, contracted into one FMA (FP_CONTRACT, the default
 * of OpenCL C, said here), rather than the builtins: under PoCL mad() is a multiply and an add, and
 * fma() on float16 warns of its ABI without AVX-512. a and b are arguments so the compiler cannot fold
 * the chains; with 0 < a < 1 the values converge to b / (1 - a), never overflowing or going
 * subnormal. Every lane of the sum is written (an unused lane would be dead code); out holds one float
 * per work-item and the launch has exactly that many. */
#pragma OPENCL FP_CONTRACT ON
#define PEAK_STEP(x) x = x * a + b
#define PEAK_FMA(W, HSUM)                                                                               \
    __kernel void peak_fma##W(__global float *out, int n_iter, float a, float b) {                     \
        float##W x0 = (float##W)((float)get_global_id(0) * 1e-9f), x1 = x0 + 0.1f, x2 = x0 + 0.2f,    \
                 x3 = x0 + 0.3f, x4 = x0 + 0.4f, x5 = x0 + 0.5f, x6 = x0 + 0.6f, x7 = x0 + 0.7f;       \
        for (int i = 0; i < n_iter; i++) {                                                              \
            PEAK_STEP(x0); PEAK_STEP(x1); PEAK_STEP(x2); PEAK_STEP(x3);                                 \
            PEAK_STEP(x4); PEAK_STEP(x5); PEAK_STEP(x6); PEAK_STEP(x7);                                 \
        }                                                                                               \
        float##W s = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7));                                 \
        out[get_global_id(0)] = dot(HSUM, (float4)(1.0f));                                             \
    }

PEAK_FMA(4, s)
PEAK_FMA(8, s.lo + s.hi)
PEAK_FMA(16, (s.lo.lo + s.lo.hi) + (s.hi.lo + s.hi.hi))

/* Device-memory copy, one float4 per work-item: 32 bytes moved each (16 read + 16 written). */
__kernel void peak_copy(__global float4 *dst, __global const float4 *src, int n) {
    int i = get_global_id(0);
    if (i < n) dst[i] = src[i];
}

/* Launch latency: a kernel that does nothing. */
__kernel void peak_empty(void) {}
