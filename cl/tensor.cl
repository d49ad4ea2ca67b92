/* tensor.cl: strided copy and fill over up to 4 dims (shape s0..s3, strides in elements).
 * Copies move raw bits, so one kernel per element width serves every dtype; the convert_ ones round f32
 * to f16. */

/* MOVE(d, s) is the element move: raw bits, or f32 -> f16 (vstore_half_rte: round to nearest even,
 * core OpenCL 1.2, no cl_khr_fp16 needed). */
#define MOVE_BITS(d, s) (*(d) = *(s))
#define MOVE_F16(d, s) vstore_half_rte(*(s), 0, (d))
#define STRIDED_COPY(NAME, DT, ST, MOVE)                                                        \
__kernel void NAME(__global DT *dst, int doff, int d0, int d1, int d2, int d3,                   \
                   __global const ST *src, int soff, int t0, int t1, int t2, int t3,             \
                   int n, int s1, int s2, int s3) {                                              \
    int i = get_global_id(0);                                                                    \
    if (i >= n) return;                                                                          \
    MOVE(dst + doff + atb_offset4(i, s1, s2, s3, d0, d1, d2, d3),                                \
         src + soff + atb_offset4(i, s1, s2, s3, t0, t1, t2, t3));                               \
}
STRIDED_COPY(copy_strided_u32, uint, uint, MOVE_BITS)
STRIDED_COPY(copy_strided_u16, ushort, ushort, MOVE_BITS)
STRIDED_COPY(convert_strided_f32_f16, half, float, MOVE_F16)

/* The same for 32-bit elements whose last dim is contiguous on both sides and a multiple of 4 long, on
 * a 3-D grid (quad of the row, dim 2, dims 0 and 1 together): one uint4 and one division per work-item
 * (the divisions dominate the one-element kernel: a KV-cache fill of 512 x 512 floats took ~1.1 ms,
 * with quads on a 1-D grid 0.42). Global (s3 / 4, s2, s0 * s1), padded to any local size. */
#define MOVE4_BITS(d, s) vstore4(vload4(0, (s)), 0, (d))
#define MOVE4_F16(d, s) vstore_half4_rte(vload4(0, (s)), 0, (d))
#define STRIDED_COPY4(NAME, DT, ST, MOVE4)                                                              \
__kernel void NAME(__global DT *dst, int doff, int d0, int d1, int d2, __global const ST *src, int soff, \
                   int t0, int t1, int t2, int s1, int s2, int q3, int s01) {                            \
    const int q = get_global_id(0), i2 = get_global_id(1), i01 = get_global_id(2);                       \
    if (q >= q3 || i2 >= s2 || i01 >= s01) return;                                                       \
    const int i0 = i01 / s1, i1 = i01 - i0 * s1;                                                         \
    MOVE4(dst + doff + i0 * d0 + i1 * d1 + i2 * d2 + 4 * q, src + soff + i0 * t0 + i1 * t1 + i2 * t2 + 4 * q); \
}
STRIDED_COPY4(copy_strided4_u32, uint, uint, MOVE4_BITS)
STRIDED_COPY4(convert_strided4_f32_f16, half, float, MOVE4_F16)

/* A contiguous fill: 16 elements per work-item, written as four uint4 (vstore4 needs only the
 * element's alignment); the last work-item's short tail element by element. */
__kernel void fill_u32(__global uint *dst, int doff, uint bits, int n) {
    int i = get_global_id(0) * 16;
    if (i >= n) return;
    __global uint *p = dst + doff + i;
    if (i + 16 <= n) {
        uint4 v = (uint4)(bits);
        vstore4(v, 0, p);
        vstore4(v, 1, p);
        vstore4(v, 2, p);
        vstore4(v, 3, p);
    } else {
        for (int k = 0; k < n - i; k++) p[k] = bits;
    }
}

#define FILL_STRIDED(NAME, T)                                                                          \
__kernel void NAME(__global T *dst, int doff, int d0, int d1, int d2, int d3, uint bits, int n, int s1, int s2, \
                   int s3) {                                                                            \
    int i = get_global_id(0);                                                                           \
    if (i >= n) return;                                                                                 \
    dst[doff + atb_offset4(i, s1, s2, s3, d0, d1, d2, d3)] = (T)bits;                                   \
}
FILL_STRIDED(fill_strided_u32, uint)
FILL_STRIDED(fill_strided_u16, ushort)
