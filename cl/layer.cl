/* layer.cl: the small ops of one Attamba/transformer layer (SPEC 3): RMSNorm, the gated RMSNorm
 * of Mamba-2, RoPE, SwiGLU, the embedding gather, a broadcast bias add. Offsets in elements.
 *
 * The two norms run one work-group per row: each work-item sums a strided share of the row,
 * then a __local tree reduction of any group size (not only powers of two). Every barrier sits
 * in straight-line code or in a loop whose trip count depends on the group size only, so all
 * work-items reach each barrier the same number of times (PoCL miscompiles anything else). */

/* Sum of part over the group into scratch[0], returned to every work-item. The tree runs over
 * the next power of two >= the group size; work-items whose partner lies beyond the group add
 * nothing. Ends with a barrier, so scratch may be reused afterwards. */
inline float atb_group_sum(float part, __local float *scratch) {
    int lid = get_local_id(0), n = get_local_size(0);
    int p2 = 1;
    while (p2 < n) p2 <<= 1;
    scratch[lid] = part;
    for (int s = p2 >> 1; s > 0; s >>= 1) {
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < s && lid + s < n) scratch[lid] += scratch[lid + s];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    float total = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return total;
}

/* out[r, :] = x[r, :] * rsqrt(mean(x[r, :]^2) + eps) * w. One group per row. Each work-item
 * rereads exactly the elements it writes, so out may alias x. */
__kernel void rmsnorm_f32(__global float *out, int oo, __global const float *x, int xo,
                          __global const float *w, int wo, int C, float eps, __local float *scratch) {
    int r = get_group_id(0), lid = get_local_id(0), n = get_local_size(0);
    __global const float *xr = x + xo + (size_t)r * C;
    __global float *outr = out + oo + (size_t)r * C;
    float part = 0.0f;
    for (int c = lid; c < C; c += n) {
        float v = xr[c];
        part += v * v;
    }
    float inv = 1.0f / sqrt(atb_group_sum(part, scratch) / (float)C + eps);
    for (int c = lid; c < C; c += n) outr[c] = xr[c] * inv * w[wo + c];
}

/* g = y * silu(z); out = g * rsqrt(mean(g^2) + eps) * w. g is recomputed in the second pass
 * rather than stored, so out may alias y or z (same per-work-item element ownership). */
__kernel void gated_rmsnorm_f32(__global float *out, int oo, __global const float *y, int yo,
                                __global const float *z, int zo, __global const float *w, int wo, int C,
                                float eps, __local float *scratch) {
    int r = get_group_id(0), lid = get_local_id(0), n = get_local_size(0);
    __global const float *yr = y + yo + (size_t)r * C;
    __global const float *zr = z + zo + (size_t)r * C;
    __global float *outr = out + oo + (size_t)r * C;
    float part = 0.0f;
    for (int c = lid; c < C; c += n) {
        float zv = zr[c], g = yr[c] * zv * atb_sigmoid(zv);
        part += g * g;
    }
    float inv = 1.0f / sqrt(atb_group_sum(part, scratch) / (float)C + eps);
    for (int c = lid; c < C; c += n) {
        float zv = zr[c], g = yr[c] * zv * atb_sigmoid(zv);
        outr[c] = g * inv * w[wo + c];
    }
}

/* One work-item per rotated pair. x is [B, T, H*dh] and pairs are adjacent, so pair i starts at
 * element 2i; its index inside the head is i % (dh/2) and its token row is i / (H*dh/2).
 * The frequency theta^(-2j/dh) is exp2(-(2j/dh) * log2(theta)) with log2(theta) from the host. */
__kernel void rope_f32(__global float *x, int xo, __global const int *pos0, int po, int T, int half_dh,
                       int pairs_per_row, float log2_theta, int n_pairs) {
    int i = get_global_id(0);
    if (i >= n_pairs) return;
    int j = i % half_dh, row = i / pairs_per_row;
    int b = row / T, t = row - b * T;
    float pos = (float)(pos0[po + b] + t);
    float freq = exp2(-((float)j / (float)half_dh) * log2_theta);
    float ang = pos * freq, c = cos(ang), s = sin(ang);
    __global float *p = x + xo + 2 * (size_t)i;
    float a = p[0], bb = p[1];
    p[0] = a * c - bb * s;
    p[1] = a * s + bb * c;
}

__kernel void swiglu_f32(__global float *out, int oo, __global const float *gate, int go,
                         __global const float *up, int uo, int n) {
    int i = get_global_id(0);
    if (i < n) {
        float g = gate[go + i];
        out[oo + i] = g * atb_sigmoid(g) * up[uo + i];
    }
}

/* out[r, c] = table[ids[r], c], or 0 when ids[r] is outside [0, V): a kernel cannot report, the
 * host validates ids where it matters. */
__kernel void embedding_f32(__global float *out, int oo, __global const int *ids, int io,
                            __global const float *table, int to, int V, int d, int n) {
    int i = get_global_id(0);
    if (i >= n) return;
    int r = i / d, c = i - r * d;
    int id = ids[io + r];
    out[oo + i] = (id >= 0 && id < V) ? table[to + (size_t)id * d + c] : 0.0f;
}

__kernel void add_bias_f32(__global float *out, int oo, __global const float *x, int xo,
                           __global const float *bias, int bo, int C, int n) {
    int i = get_global_id(0);
    if (i < n) out[oo + i] = x[xo + i] + bias[bo + i % C];
}
