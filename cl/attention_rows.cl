/* attention_rows.cl: the row passes of attention through the GEMM (src/ops/attention_gemm.c).
 *
 * A block of nq queries t0 + i meets the keys kb + j, j < nk, of one sequence. The GEMM writes
 * every (head, query) score row of the block, head-major: row (h * nq + i) at s + so + row * ld,
 * ld a multiple of 8 (so whole float8s stay inside the row). Query i sees keys j in [lo, hi] with
 * hi = i + off (off = t0 - kb: key j is the query itself at j = hi) and lo = max(0, hi - win), or
 * lo = 0 when win < 0 (causal). These kernels turn the scores into what the next GEMMs need, with
 * exact zeros outside [lo, hi], so the GEMMs run over whole rows. Lanes outside [lo, hi] are selected
 * away, never multiplied: the padding past nk and the masked scores may hold anything.
 *
 * One work-item per row, on float8 vectors; no integer division, no barriers.
 * Global (nq, nh heads), padded to any local size. */

/* Softmax over [lo, hi] of row x in place; zeros elsewhere in [0, ld). Returns nothing: the row is
 * P afterwards. */
inline void rows_softmax(__global float *x, int lo, int hi, int ld) {
    const int8 lane = (int8)(0, 1, 2, 3, 4, 5, 6, 7);
    const int j0 = lo & ~7, j1 = (hi + 8) & ~7; /* the float8s covering [lo, hi] */
    float8 mx = (float8)(-INFINITY);
    for (int j = j0; j < j1; j += 8) {
        const int8 jj = lane + j, ok = (jj >= lo) & (jj <= hi);
        mx = ok ? fmax(mx, vload8(0, x + j)) : mx;
    }
    const float4 m4 = fmax(mx.lo, mx.hi);
    const float m = fmax(fmax(m4.x, m4.y), fmax(m4.z, m4.w)); /* finite: hi >= lo always */
    float8 sum = (float8)(0.0f);
    for (int j = j0; j < j1; j += 8) {
        const int8 jj = lane + j, ok = (jj >= lo) & (jj <= hi);
        const float8 e = ok ? exp(vload8(0, x + j) - (float8)(m)) : (float8)(0.0f);
        vstore8(e, 0, x + j);
        sum += e;
    }
    const float4 s4 = sum.lo + sum.hi;
    const float inv = 1.0f / ((s4.x + s4.y) + (s4.z + s4.w));
    for (int j = j0; j < j1; j += 8) vstore8(vload8(0, x + j) * inv, 0, x + j);
    for (int j = 0; j < j0; j += 8) vstore8((float8)(0.0f), 0, x + j);
    for (int j = j1; j < ld; j += 8) vstore8((float8)(0.0f), 0, x + j);
}

/* Scores -> probabilities P, in place (the forward). */
__kernel void attn_rows_softmax(__global float *s, int so, int ld, int nq, int nh, int off, int win) {
    const int i = get_global_id(0), h = get_global_id(1);
    if (i >= nq || h >= nh) return;
    const int hi = i + off, lo = win < 0 ? 0 : max(0, hi - win);
    rows_softmax(s + so + (h * nq + i) * ld, lo, hi, ld);
}

/* The backward's row pass: scores -> P in place, then with dP = dout . v (dp, same layout) the
 * score gradient dS = P * (dP - D), D = sum_j P dP (= dout . out), written over dp. */
__kernel void attn_rows_dsoftmax(__global float *s, __global float *dp, int so, int ld, int nq, int nh, int off,
                                 int win) {
    const int i = get_global_id(0), h = get_global_id(1);
    if (i >= nq || h >= nh) return;
    const int hi = i + off, lo = win < 0 ? 0 : max(0, hi - win);
    __global float *p = s + so + (h * nq + i) * ld, *g = dp + so + (h * nq + i) * ld;
    rows_softmax(p, lo, hi, ld);
    const int8 lane = (int8)(0, 1, 2, 3, 4, 5, 6, 7);
    const int j0 = lo & ~7, j1 = (hi + 8) & ~7;
    float8 d8 = (float8)(0.0f);
    for (int j = j0; j < j1; j += 8) {
        const int8 jj = lane + j, ok = (jj >= lo) & (jj <= hi);
        d8 += ok ? vload8(0, p + j) * vload8(0, g + j) : (float8)(0.0f);
    }
    const float4 d4 = d8.lo + d8.hi;
    const float d = (d4.x + d4.y) + (d4.z + d4.w);
    for (int j = j0; j < j1; j += 8) {
        const int8 jj = lane + j, ok = (jj >= lo) & (jj <= hi);
        const float8 pv = vload8(0, p + j);
        vstore8(ok ? pv * (vload8(0, g + j) - (float8)(d)) : (float8)(0.0f), 0, g + j);
    }
    for (int j = 0; j < j0; j += 8) vstore8((float8)(0.0f), 0, g + j);
    for (int j = j1; j < ld; j += 8) vstore8((float8)(0.0f), 0, g + j);
}
