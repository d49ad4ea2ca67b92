/* layer.cl: the small ops of one Attamba/transformer layer (SPEC 3): RMSNorm, the gated RMSNorm
 * of Mamba-2, RoPE, SwiGLU, the embedding gather, a broadcast bias add. Offsets in elements.
 *
 * The two norms run one work-group per row: each work-item sums a strided share of the row,
 * then a __local tree reduction of any group size (not only powers of two). Every barrier sits
 * in straight-line code or in a loop whose trip count depends on the group size only, so all
 * work-items reach each barrier the same number of times (PoCL miscompiles anything else). */

/* atb_group_sum (the __local tree of any group size) is in common.cl. */

/* The norms work on float4 (vload4 needs only float alignment, so any row offset is fine): PoCL's
 * work-item vectoriser gives up on loops like these, so explicit vectors are what make exp and
 * the squares SIMD on a CPU; on a GPU they are harmless. A row has C4 = C / 4 full vectors and a
 * tail of C % 4 < 4 scalars, which work-items 0..C%4-1 take. */

/* out[r, :] = x[r, :] * rsqrt(mean(x[r, :]^2) + eps) * w. One group per row. Each work-item
 * rereads exactly the elements it writes, so out may alias x. */
__kernel void rmsnorm_f32(__global float *out, int oo, __global const float *x, int xo,
                          __global const float *w, int wo, int C, float eps, __local float *scratch) {
    int r = get_group_id(0), lid = get_local_id(0), n = get_local_size(0);
    int C4 = C >> 2, tail = 4 * C4 + lid;
    __global const float *xr = x + xo + (size_t)r * C;
    __global const float *wr = w + wo;
    __global float *outr = out + oo + (size_t)r * C;
    float part = 0.0f;
    for (int q = lid; q < C4; q += n) {
        float4 v = vload4(q, xr);
        part += dot(v, v);
    }
    if (tail < C) part += xr[tail] * xr[tail];
    float inv = 1.0f / sqrt(atb_group_sum(part, scratch) / (float)C + eps);
    for (int q = lid; q < C4; q += n) vstore4(vload4(q, xr) * inv * vload4(q, wr), q, outr);
    if (tail < C) outr[tail] = xr[tail] * inv * wr[tail];
}

/* g = y * silu(z); out = g * rsqrt(mean(g^2) + eps) * w. The first pass parks g in out, the
 * second scales it there: one exp per element. Each work-item reads y and z at exactly the
 * elements it writes, so out may alias y or z. */
__kernel void gated_rmsnorm_f32(__global float *out, int oo, __global const float *y, int yo,
                                __global const float *z, int zo, __global const float *w, int wo, int C,
                                float eps, __local float *scratch) {
    int r = get_group_id(0), lid = get_local_id(0), n = get_local_size(0);
    int C4 = C >> 2, tail = 4 * C4 + lid;
    __global const float *yr = y + yo + (size_t)r * C;
    __global const float *zr = z + zo + (size_t)r * C;
    __global const float *wr = w + wo;
    __global float *outr = out + oo + (size_t)r * C;
    float part = 0.0f;
    for (int q = lid; q < C4; q += n) {
        float4 zv = vload4(q, zr), g = vload4(q, yr) * zv / (1.0f + exp(-zv));
        vstore4(g, q, outr);
        part += dot(g, g);
    }
    if (tail < C) {
        float zv = zr[tail], g = yr[tail] * zv * atb_sigmoid(zv);
        outr[tail] = g;
        part += g * g;
    }
    float inv = 1.0f / sqrt(atb_group_sum(part, scratch) / (float)C + eps);
    for (int q = lid; q < C4; q += n) vstore4(vload4(q, outr) * inv * vload4(q, wr), q, outr);
    if (tail < C) outr[tail] = outr[tail] * inv * wr[tail];
}

/* One work-item per (token, pair index j): the angle is the same in every head, so sin and cos
 * are computed once and applied to the H pairs. x is [B, T, H*dh]; item i is token row
 * i / half_dh, pair j = i % half_dh. The angle is kept in half-turns, pos * theta^(-2j/dh) / pi,
 * so sinpi/cospi reduce it exactly (x mod 2) instead of a costly reduction mod pi of a large
 * radian value; the f32 error is the same (an ulp of the angle). The frequency is
 * exp2(-(j/half_dh) * log2(theta) - log2(pi)) with both logarithms from the host. sign = -1
 * rotates the other way: the backward pass (a rotation's gradient is the inverse rotation). */
__kernel void rope_f32(__global float *x, int xo, __global float *x2, int x2o, int H2, __global const int *pos0,
                       int po, int T, int H, int half_dh, float log2_theta, float log2_pi, float sign,
                       int n_items) {
    int i = get_global_id(0);
    if (i >= n_items) return;
    int j = i % half_dh, row = i / half_dh;
    int b = row / T, t = row - b * T;
    float pos = (float)(pos0[po + b] + t);
    float half_turns = pos * exp2(-((float)j / (float)half_dh) * log2_theta - log2_pi);
    float c = cospi(half_turns), s = sign * sinpi(half_turns);
    __global float *p = x + xo + (size_t)row * H * 2 * half_dh + 2 * j;
    for (int h = 0; h < H; h++, p += 2 * half_dh) {
        float2 v = vload2(0, p);
        vstore2((float2)(v.x * c - v.y * s, v.x * s + v.y * c), 0, p);
    }
    p = x2 + x2o + (size_t)row * H2 * 2 * half_dh + 2 * j;
    for (int h = 0; h < H2; h++, p += 2 * half_dh) {
        float2 v = vload2(0, p);
        vstore2((float2)(v.x * c - v.y * s, v.x * s + v.y * c), 0, p);
    }
}

/* The same for four consecutive pair indices per work-item (half_dh % 4 == 0), with float4
 * sinpi/cospi: PoCL does not vectorise the scalar calls across work-items, explicit vectors it
 * does. Element for element the formula of rope_f32. quads = half_dh / 4. */
__kernel void rope4_f32(__global float *x, int xo, __global float *x2, int x2o, int H2, __global const int *pos0,
                        int po, int T, int H, int quads, float log2_theta, float log2_pi, float sign,
                        int n_items) {
    int i = get_global_id(0);
    if (i >= n_items) return;
    int jq = i % quads, row = i / quads;
    int b = row / T, t = row - b * T;
    float pos = (float)(pos0[po + b] + t);
    float4 c, s;
    atb_rope_angles4(pos, jq, quads, log2_theta, log2_pi, sign, &c, &s);
    __global float *p = x + xo + (size_t)row * H * 8 * quads + 8 * jq;
    for (int h = 0; h < H; h++, p += 8 * quads) vstore8(atb_rope8(vload8(0, p), c, s), 0, p);
    p = x2 + x2o + (size_t)row * H2 * 8 * quads + 8 * jq;
    for (int h = 0; h < H2; h++, p += 8 * quads) vstore8(atb_rope8(vload8(0, p), c, s), 0, p);
}

/* Work-items 0..n/4-1 take a float4 each, the next n % 4 one scalar each (explicit vectors:
 * PoCL leaves the scalar exp unvectorised). */
__kernel void swiglu_f32(__global float *out, int oo, __global const float *gate, int go,
                         __global const float *up, int uo, int n) {
    int i = get_global_id(0), n4 = n >> 2;
    if (i < n4) {
        float4 g = vload4(i, gate + go);
        vstore4(g / (1.0f + exp(-g)) * vload4(i, up + uo), i, out + oo);
    } else if (i < n4 + (n & 3)) {
        int e = 4 * n4 + (i - n4);
        float g = gate[go + e];
        out[oo + e] = g * atb_sigmoid(g) * up[uo + e];
    }
}

/* out[r, c] = table[ids[r], c], or 0 when ids[r] is outside [0, V): a kernel cannot report, the
 * host validates ids where it matters. 2-D launch (c, r): no division per element. */
__kernel void embedding_f32(__global float *out, int oo, __global const int *ids, int io,
                            __global const float *table, int to, int V, int d, int rows) {
    int c = get_global_id(0), r = get_global_id(1);
    if (c >= d || r >= rows) return;
    int id = ids[io + r], safe = clamp(id, 0, V - 1);
    /* an unconditional load of a clamped row, then a select: a load under a branch keeps PoCL
     * from vectorising (measured ~10x slower) */
    float v = table[to + (size_t)safe * d + c];
    out[oo + (size_t)r * d + c] = (id >= 0 && id < V) ? v : 0.0f;
}

/* The same over float4 columns when d % 4 == 0 (d4 = d / 4): PoCL leaves the scalar gather
 * unvectorised, explicit vectors make it ~3x faster. */
__kernel void embedding4_f32(__global float *out, int oo, __global const int *ids, int io,
                             __global const float *table, int to, int V, int d4, int rows) {
    int q = get_global_id(0), r = get_global_id(1);
    if (q >= d4 || r >= rows) return;
    int id = ids[io + r], safe = clamp(id, 0, V - 1);
    float4 v = vload4(q, table + to + (size_t)safe * 4 * d4);
    vstore4((id >= 0 && id < V) ? v : (float4)(0.0f), q, out + oo + (size_t)r * 4 * d4);
}

/* 2-D launch (c, r) like the embedding: no modulo per element. */
__kernel void add_bias_f32(__global float *out, int oo, __global const float *x, int xo,
                           __global const float *bias, int bo, int C, int rows) {
    int c = get_global_id(0), r = get_global_id(1);
    if (c >= C || r >= rows) return;
    size_t i = (size_t)r * C + c;
    out[oo + i] = x[xo + i] + bias[bo + c];
}
