/* optim.cl: what the trainer needs outside the layers: deterministic reductions (sum of squares for
 * the global gradient norm, column sums for bias gradients) and the AdamW step. Offsets are in
 * elements. Reductions accumulate with Kahan compensation, so a work-item's sum of many terms is as
 * good as a pairwise tree; work-items are then combined by a __local tree whose loop bound (the
 * power-of-two local size) is uniform, so every work-item reaches every barrier equally often. */

/* s + x with the running compensation c (the negated low part lost so far); s - c is the sum. */
static inline void optim_kahan(float *s, float *c, float x) {
    float y = x - *c, t = *s + y;
    *c = (t - *s) - y;
    *s = t;
}

static inline void optim_kahan8(float8 *s, float8 *c, float8 x) {
    float8 y = x - *c, t = *s + y;
    *c = (t - *s) - y;
    *s = t;
}

/* First pass of the sum of squares: partial[po + gid] = sum of the squares of this work-item's share
 * of x[xo .. xo + n), read as blocks of 16 floats (vload needs only element alignment). Which blocks an
 * item takes is fixed by n, the launch size and `chunk`, never by scheduling, so the result is
 * deterministic: chunk > 0 gives item gid the contiguous blocks [gid * chunk, (gid + 1) * chunk)
 * (CPUs: one work-item runs at a time per core, and a linear scan is what their caches and
 * prefetchers want; measured 2.6x faster than interleaved on PoCL); chunk == 0 gives it blocks gid,
 * gid + global size, ... (GPUs: adjacent items read adjacent blocks). Each item keeps sixteen Kahan
 * sums (one per lane: explicit SIMD whatever the compiler does across items, and sixteen independent
 * dependency chains; float8 measured 2x slower on PoCL, latency-bound), adds the lanes pairwise,
 * then the < 16 elements past the last block go one each to the first items. No barrier, no
 * __local; the trip count is uniform (a predicated tail). The host guarantees that the block
 * indices stay below 2^31. */
__kernel void sum_squares_blocks(__global const float *x, int xo, int n, int chunk, __global float *partial,
                                 int po) {
    int gid = get_global_id(0), total = get_global_size(0);
    int nb = n / 16;
    int first = chunk > 0 ? gid * chunk : gid, step = chunk > 0 ? 1 : total;
    int trips = chunk > 0 ? chunk : (nb + total - 1) / total;
    /* the sixteen lanes as two float8 halves (a float16 crosses function boundaries badly on AVX2);
     * lane for lane the same sums */
    float8 s0 = (float8)(0.0f), c0 = (float8)(0.0f), s1 = (float8)(0.0f), c1 = (float8)(0.0f);
    for (int k = 0; k < trips; k++) {
        int b = first + k * step;
        float8 v0 = b < nb ? vload8(2 * b, x + xo) : (float8)(0.0f);
        float8 v1 = b < nb ? vload8(2 * b + 1, x + xo) : (float8)(0.0f);
        optim_kahan8(&s0, &c0, v0 * v0);
        optim_kahan8(&s1, &c1, v1 * v1);
    }
    float8 r8 = (s0 - c0) + (s1 - c1);
    float4 r4 = r8.lo + r8.hi;
    float2 r2 = r4.lo + r4.hi;
    float r = r2.x + r2.y;
    if (gid < n - 16 * nb) {
        float t = x[xo + 16 * nb + gid];
        r += t * t;
    }
    partial[po + gid] = r;
}

/* out[oo + group] = sum over this group's share of x[xo .. xo + n): element i goes to work-item
 * i % global_size (deterministic, as above), each item Kahan-sums its elements, then the group adds
 * its items with a tree. Used with one group as the second pass of the sum of squares. */
__kernel void reduce_sum(__global const float *x, int xo, int n, __global float *out, int oo, __local float *red) {
    int gid = get_global_id(0), total = get_global_size(0), lid = get_local_id(0), nl = get_local_size(0);
    int trips = (n + total - 1) / total;
    float s = 0.0f, c = 0.0f;
    for (int k = 0; k < trips; k++) {
        int i = gid + k * total;
        optim_kahan(&s, &c, i < n ? x[xo + i] : 0.0f);
    }
    red[lid] = s - c;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int h = nl / 2; h > 0; h >>= 1) {
        if (lid < h) red[lid] += red[lid + h];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) out[oo + get_group_id(0)] = red[0];
}

/* Column sums of rows [p * rpc, min(R, (p + 1) * rpc)) of x [R, C] for chunk p = get_global_id(1):
 * dst[dso + p * C + c] = that sum, or += it when accumulate. One work-item per (column, chunk), rows
 * in order: deterministic, and adjacent items read adjacent columns. No barrier, so the early
 * return of the padding columns is harmless. */
__kernel void sum_rows_chunk(__global const float *x, int xo, int R, int C, int rpc, __global float *dst, int dso,
                             int accumulate) {
    int c = get_global_id(0), p = get_global_id(1);
    if (c >= C) return;
    int r0 = p * rpc, r1 = min(R, r0 + rpc);
    float s = 0.0f, comp = 0.0f;
    for (int r = r0; r < r1; r++) optim_kahan(&s, &comp, x[xo + r * C + c]);
    int o = dso + p * C + c;
    dst[o] = accumulate ? dst[o] + (s - comp) : s - comp;
}

/* sum_rows_chunk for C % 8 == 0 with eight adjacent columns per work-item as one float8 (explicit
 * SIMD: PoCL does not vectorise across work-items around a loop whose trip count it cannot see is
 * uniform). Lane by lane the same additions in the same order as sum_rows_chunk. */
__kernel void sum_rows_chunk8(__global const float *x, int xo, int R, int C, int rpc, __global float *dst,
                              int dso, int accumulate) {
    int cb = get_global_id(0), p = get_global_id(1);
    if (cb >= C / 8) return;
    int r0 = p * rpc, r1 = min(R, r0 + rpc);
    float8 s = (float8)(0.0f), comp = (float8)(0.0f);
    for (int r = r0; r < r1; r++) optim_kahan8(&s, &comp, vload8(cb, x + xo + r * C));
    __global float *d = dst + dso + p * C;
    vstore8(accumulate ? vload8(cb, d) + (s - comp) : s - comp, cb, d);
}

/* One decoupled-weight-decay Adam step (PyTorch's AdamW) per element:
 *   g = gscale * grad; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 *   p = p - lr_wd * p - step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps)
 * with step_size = lr / (1 - b1^t), inv_sqrt_bc2 = 1 / sqrt(1 - b2^t) and lr_wd = lr * wd computed on
 * the host in double (mhat / (sqrt(vhat) + eps) rewritten without dividing m and v). The decay is
 * subtracted as lr_wd * p rather than multiplied as (1 - lr_wd) * p: with lr_wd ~ 1e-5, 1 - lr_wd in
 * f32 would keep only ~3 digits of the decay. 1 - b1 and 1 - b2 are exact in f32 for betas in
 * [0.5, 1). The four tensors are distinct (the host refuses overlaps). */
static inline float8 adamw8(float8 pi, float8 g, float8 *m, float8 *v, float b1, float b2, float eps, float lr_wd,
                     float step_size, float inv_sqrt_bc2) {
    *m = b1 * *m + (1.0f - b1) * g;
    *v = b2 * *v + (1.0f - b2) * (g * g);
    return pi - lr_wd * pi - step_size * *m / (sqrt(*v) * inv_sqrt_bc2 + eps);
}

/* Eight elements per work-item on float8 (PoCL leaves the scalar sqrt and division unvectorised:
 * 0.63 of copy bandwidth before); the last item takes the n % 8 tail through the same arithmetic
 * one element at a time, so every element sees the same operations. */
__kernel void adamw_step(__global float *p, int po, __global const float *grad, int go, __global float *m, int mo,
                         __global float *v, int vo, int n, float gscale, float b1, float b2, float eps, float lr_wd,
                         float step_size, float inv_sqrt_bc2) {
    int i8 = get_global_id(0), i = 8 * i8;
    if (i >= n) return;
    p += po;
    grad += go;
    m += mo;
    v += vo;
    if (i + 8 <= n) {
        float8 mi = vload8(i8, m), vi = vload8(i8, v);
        float8 pn = adamw8(vload8(i8, p), gscale * vload8(i8, grad), &mi, &vi, b1, b2, eps, lr_wd, step_size,
                           inv_sqrt_bc2);
        vstore8(mi, i8, m);
        vstore8(vi, i8, v);
        vstore8(pn, i8, p);
    } else {
        for (int k = i; k < n; k++) {
            float8 mi = (float8)(m[k]), vi = (float8)(v[k]);
            float8 pn = adamw8((float8)(p[k]), (float8)(gscale * grad[k]), &mi, &vi, b1, b2, eps, lr_wd, step_size,
                               inv_sqrt_bc2);
            m[k] = mi.s0;
            v[k] = vi.s0;
            p[k] = pn.s0;
        }
    }
}
