/* layer_backward.cl: backward passes of the layer ops of layer.cl (RMSNorm, gated RMSNorm, RoPE,
 * SwiGLU, SiLU, embedding), for training. Offsets in elements.
 *
 * Norms: with r = rsqrt(mean(g^2) + eps) (g = x, or y * silu(z) for the gated norm) and
 * s = dot(dout * w, g) over the row, the input gradient is dg = r * dout * w - g * (r^3 s / C).
 * A row kernel (one work-group per row, the __local tree reduction of common.cl) computes the two
 * per-row numbers (r, r^3 s / C) and either writes the gradients itself or leaves them to an
 * elementwise kernel that runs after the weight gradient, which reads x and dout: that order lets
 * dx alias x or dout. The weight gradient dw[c] = sum_r dout[r, c] g[r, c] r_r is a column sum:
 * partial sums over fixed blocks of rows, then one work-item per column adds the partials in
 * block order. No float atomics, so results are bitwise reproducible for a given shape.
 *
 * Barriers only in straight-line code or loops whose trip count depends on the group size. */

/* The row's pair of sums (sum g^2, sum dout * w * g), group-reduced with atb_group_sum2 (common.cl),
 * gives r = rsqrt(mean(g^2) + eps) and coef = r^3 s / C; work-item 0 stores both in stats[2 row],
 * stats[2 row + 1]. Returns r, and coef through *coef. */
static inline float norm_bwd_stats(float2 part, __local float2 *scratch, int C, float eps, __global float *stats,
                            int row, float *coef) {
    float2 tot = atb_group_sum2(part, scratch);
    float inv = 1.0f / sqrt(tot.x / (float)C + eps);
    *coef = inv * inv * inv * tot.y / (float)C;
    if (get_local_id(0) == 0) {
        stats[2 * row] = inv;
        stats[2 * row + 1] = *coef;
    }
    return inv;
}

/* d silu(z) / dz = sigmoid(z) (1 + z (1 - sigmoid(z))). */
static inline float atb_dsilu(float z) {
    float sg = atb_sigmoid(z);
    return sg * (1.0f + z * (1.0f - sg));
}

/* Row statistics of RMSNorm backward into stats[2r], stats[2r+1] = (r, r^3 s / C); with
 * write_dx the row's dx as well (each work-item rereads exactly what it writes: dx may alias x
 * or dout). On float4 with a C % 4 tail, as the forward norms (layer.cl). */
__kernel void rmsnorm_bwd_rows_f32(__global float *dx, int dxo, __global float *stats,
                                   __global const float *x, int xo, __global const float *w, int wo,
                                   __global const float *dout, int go, int C, float eps, int write_dx,
                                   __local float2 *scratch) {
    int r = get_group_id(0), lid = get_local_id(0), n = get_local_size(0);
    int C4 = C >> 2, tail = 4 * C4 + lid;
    __global const float *xr = x + xo + (size_t)r * C;
    __global const float *gr = dout + go + (size_t)r * C;
    __global const float *wr = w + wo;
    float2 part = (float2)(0.0f, 0.0f);
    for (int q = lid; q < C4; q += n) {
        float4 v = vload4(q, xr);
        part += (float2)(dot(v, v), dot(vload4(q, gr) * vload4(q, wr), v));
    }
    if (tail < C) part += (float2)(xr[tail] * xr[tail], gr[tail] * wr[tail] * xr[tail]);
    float coef;
    float inv = norm_bwd_stats(part, scratch, C, eps, stats, r, &coef);
    if (write_dx) {
        __global float *dr = dx + dxo + (size_t)r * C;
        for (int q = lid; q < C4; q += n) vstore4(inv * vload4(q, gr) * vload4(q, wr) - vload4(q, xr) * coef, q, dr);
        if (tail < C) dr[tail] = inv * gr[tail] * wr[tail] - xr[tail] * coef;
    }
}

/* dx from the row statistics, one work-item per element. */
__kernel void rmsnorm_bwd_dx_f32(__global float *dx, int dxo, __global const float *stats,
                                 __global const float *x, int xo, __global const float *w, int wo,
                                 __global const float *dout, int go, int C, int n) {
    int i = get_global_id(0);
    if (i >= n) return;
    int r = i / C, c = i - r * C;
    dx[dxo + i] = stats[2 * r] * dout[go + i] * w[wo + c] - x[xo + i] * stats[2 * r + 1];
}

/* Gated: the same with g = y * silu(z); dy = dg * silu(z), dz = dg * y * silu'(z), here for four
 * elements (PoCL runs the scalar exp of silu unvectorised; the C % 4 tails use lane x). */
static inline void gated_dyz(float4 yv, float4 zv, float4 gv, float4 wv, float inv, float coef, float4 *dy, float4 *dz) {
    float4 sg = 1.0f / (1.0f + exp(-zv)), silu = zv * sg;
    float4 dg = inv * gv * wv - yv * silu * coef;
    *dz = dg * yv * sg * (1.0f + zv * (1.0f - sg));
    *dy = dg * silu;
}

__kernel void gated_rmsnorm_bwd_rows_f32(__global float *dy, int dyo, __global float *dz, int dzo,
                                         __global float *stats, __global const float *y, int yo,
                                         __global const float *z, int zo, __global const float *w, int wo,
                                         __global const float *dout, int go, int C, float eps, int write_dy,
                                         int write_dz, __local float2 *scratch) {
    int r = get_group_id(0), lid = get_local_id(0), n = get_local_size(0);
    int C4 = C >> 2, tail = 4 * C4 + lid;
    __global const float *yr = y + yo + (size_t)r * C;
    __global const float *zr = z + zo + (size_t)r * C;
    __global const float *gr = dout + go + (size_t)r * C;
    __global const float *wr = w + wo;
    float2 part = (float2)(0.0f, 0.0f);
    for (int q = lid; q < C4; q += n) {
        float4 zv = vload4(q, zr), g = vload4(q, yr) * zv / (1.0f + exp(-zv));
        part += (float2)(dot(g, g), dot(vload4(q, gr) * vload4(q, wr), g));
    }
    if (tail < C) {
        float zv = zr[tail], g = yr[tail] * zv * atb_sigmoid(zv);
        part += (float2)(g * g, gr[tail] * wr[tail] * g);
    }
    float coef;
    float inv = norm_bwd_stats(part, scratch, C, eps, stats, r, &coef);
    if (write_dy || write_dz) { /* every input element is read before this item writes its outputs:
                                   dy/dz may alias y, z or dout */
        __global float *dyr = dy + dyo + (size_t)r * C, *dzr = dz + dzo + (size_t)r * C;
        float4 vy, vz;
        for (int q = lid; q < C4; q += n) {
            gated_dyz(vload4(q, yr), vload4(q, zr), vload4(q, gr), vload4(q, wr), inv, coef, &vy, &vz);
            if (write_dy) vstore4(vy, q, dyr);
            if (write_dz) vstore4(vz, q, dzr);
        }
        if (tail < C) {
            gated_dyz((float4)(yr[tail]), (float4)(zr[tail]), (float4)(gr[tail]), (float4)(wr[tail]), inv, coef, &vy,
                      &vz);
            if (write_dy) dyr[tail] = vy.x;
            if (write_dz) dzr[tail] = vz.x;
        }
    }
}

/* dy and dz from the row statistics: a 2-D launch (c / 4, r), four columns per work-item, the
 * C % 4 tail one column at a time. */
__kernel void gated_rmsnorm_bwd_dyz_f32(__global float *dy, int dyo, __global float *dz, int dzo,
                                        __global const float *stats, __global const float *y, int yo,
                                        __global const float *z, int zo, __global const float *w, int wo,
                                        __global const float *dout, int go, int C, int write_dy, int write_dz,
                                        int rows) {
    int c = 4 * get_global_id(0), r = get_global_id(1);
    if (c >= C || r >= rows) return;
    size_t e = (size_t)r * C + c;
    float inv = stats[2 * r], coef = stats[2 * r + 1];
    float4 vy, vz;
    if (c + 4 <= C) {
        gated_dyz(vload4(0, y + yo + e), vload4(0, z + zo + e), vload4(0, dout + go + e), vload4(0, w + wo + c), inv,
                  coef, &vy, &vz);
        if (write_dy) vstore4(vy, 0, dy + dyo + e);
        if (write_dz) vstore4(vz, 0, dz + dzo + e);
    } else {
        for (int k = 0; k < C - c; k++) {
            gated_dyz((float4)(y[yo + e + k]), (float4)(z[zo + e + k]), (float4)(dout[go + e + k]),
                      (float4)(w[wo + c + k]), inv, coef, &vy, &vz);
            if (write_dy) dy[dyo + e + k] = vy.x;
            if (write_dz) dz[dzo + e + k] = vz.x;
        }
    }
}

/* Weight-gradient partials: work-item (c / 4, blk) sums dout[r, c] * g[r, c] * stats[2r] for four
 * columns (float4; the C % 4 tail one column at a time) over the rows r of block blk (rb rows),
 * g = a (gated = 0) or a * silu(z) (gated = 1). With accumulate it adds the sum to
 * out[blk * C + c] (the single-block case writes straight into dw), else stores it. */
static inline float4 norm_dw_term(float4 d, float4 a, float4 z, float st, int gated) {
    return d * (gated ? a * z / (1.0f + exp(-z)) : a) * st;
}

__kernel void norm_dw_partial_f32(__global float *out, int oo, __global const float *dout, int go,
                                  __global const float *a, int ao, __global const float *z, int zo,
                                  __global const float *stats, int rows, int C, int rb, int gated,
                                  int accumulate, int nblk) {
    int c = 4 * get_global_id(0), blk = get_global_id(1);
    if (c >= C || blk >= nblk) return;
    int r0 = blk * rb, r1 = min(rows, r0 + rb);
    __global float *o = out + oo + (size_t)blk * C + c;
    if (c + 4 <= C) {
        float4 sum = (float4)(0.0f);
        for (int r = r0; r < r1; r++) {
            size_t e = (size_t)r * C + c;
            sum += norm_dw_term(vload4(0, dout + go + e), vload4(0, a + ao + e), vload4(0, z + zo + e), stats[2 * r],
                                gated);
        }
        vstore4(accumulate ? vload4(0, o) + sum : sum, 0, o);
    } else {
        for (int k = 0; k < C - c; k++) {
            float sum = 0.0f;
            for (int r = r0; r < r1; r++) {
                size_t e = (size_t)r * C + c + k;
                sum += norm_dw_term((float4)(dout[go + e]), (float4)(a[ao + e]), (float4)(z[zo + e]), stats[2 * r],
                                    gated).x;
            }
            o[k] = accumulate ? o[k] + sum : sum;
        }
    }
}

/* dw[c] += sum over blocks of part[blk * C + c], in block order. */
__kernel void colsum_acc_f32(__global float *dw, int dwo, __global const float *part, int nblk, int C) {
    int c = get_global_id(0);
    if (c >= C) return;
    float sum = 0.0f;
    for (int b = 0; b < nblk; b++) sum += part[(size_t)b * C + c];
    dw[dwo + c] += sum;
}

/* out = silu(gate) * up: dgate = dout * up * silu'(gate), dup = dout * silu(gate). Inputs are
 * read before either output is written, so dgate/dup may alias gate, up or dout. */
/* Work-items 0..n/4-1 take a float4 each, the next n % 4 one element each (as swiglu_f32). */
static inline void swiglu_bwd4(float4 g, float4 u, float4 d, float4 *dg, float4 *du) {
    float4 sg = 1.0f / (1.0f + exp(-g));
    *dg = d * u * sg * (1.0f + g * (1.0f - sg));
    *du = d * g * sg;
}

__kernel void swiglu_bwd_f32(__global float *dgate, int dgo, __global float *dup, int duo,
                             __global const float *gate, int go, __global const float *up, int uo,
                             __global const float *dout, int oo, int write_dgate, int write_dup, int n) {
    int i = get_global_id(0), n4 = n >> 2;
    float4 dg, du;
    if (i < n4) {
        swiglu_bwd4(vload4(i, gate + go), vload4(i, up + uo), vload4(i, dout + oo), &dg, &du);
        if (write_dgate) vstore4(dg, i, dgate + dgo);
        if (write_dup) vstore4(du, i, dup + duo);
    } else if (i < n4 + (n & 3)) {
        int e = 4 * n4 + (i - n4);
        swiglu_bwd4((float4)(gate[go + e]), (float4)(up[uo + e]), (float4)(dout[oo + e]), &dg, &du);
        if (write_dgate) dgate[dgo + e] = dg.x;
        if (write_dup) dup[duo + e] = du.x;
    }
}

__kernel void silu_bwd_f32(__global float *dx, int dxo, __global const float *x, int xo,
                           __global const float *dout, int oo, int n) {
    int i = get_global_id(0);
    if (i < n) dx[dxo + i] = dout[oo + i] * atb_dsilu(x[xo + i]);
}

/* Embedding backward over a host-built CSR: used id u (ids[u]) owns positions
 * pos[start[u] .. start[u+1]) in increasing order; work-item (u, c) adds their dout[p, c] in that
 * order to dtable[ids[u], c]. Each (id, c) has exactly one writer: no atomics, deterministic. */
__kernel void embedding_bwd_f32(__global float *dtable, int to, __global const float *dout, int go,
                                __global const int *csr, int n_used, int d, int n) {
    int i = get_global_id(0);
    if (i >= n) return;
    int u = i / d, c = i - u * d;
    __global const int *ids = csr, *start = csr + n_used, *pos = csr + 2 * n_used + 1;
    float sum = 0.0f;
    for (int k = start[u]; k < start[u + 1]; k++) sum += dout[go + (size_t)pos[k] * d + c];
    dtable[to + (size_t)ids[u] * d + c] += sum;
}
