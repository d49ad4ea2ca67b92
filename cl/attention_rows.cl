/* attention_rows.cl: the row passes of attention through the GEMM (src/ops/attention_gemm.c).
 *
 * A block of nq queries t = t0 + i of one sequence meets nk keys. The GEMMs write every (head, query)
 * score row of the block, head-major: row (h * nq + i) at s + so + row * ld, ld a multiple of 8 (so
 * whole float8s stay inside the row). Columns [0, nbb) are boundary keys (compressed masks), at
 * ascending positions bnd[bo + c], seen by query t when the position is below t - win (a prefix of
 * them, found once per row by bisection); columns from nbb on are
 * the window keys kb, kb + 1, ..., seen in [lo, hi]: hi = nbb + i + off (off = t0 - kb: the query
 * itself) and lo = max(nbb, hi - win), or nbb when win < 0 (causal). These kernels turn the scores
 * into what the next GEMMs need, with exact zeros in every column the query does not see, so the
 * GEMMs run over whole rows. Lanes outside are selected away, never multiplied: the padding past nk
 * and the masked scores may hold anything.
 *
 * One work-item per row, on float8 vectors; no barriers. Global (nq, nh heads), padded to any local
 * size. Without boundary columns (nbb = 0) bnd is never read. */

/* How many of the (ascending) boundaries bnd[0 .. nbb) lie below lim = t - win: the row sees boundary
 * columns [0, cb). */
inline int rows_below(__global const int *bnd, int nbb, int lim) {
    int lo = 0, hi = nbb;
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (bnd[mid] < lim) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Which columns of [j, j + 8) the row sees. */
inline int8 rows_visible(int j, int cb, int lo, int hi) {
    const int8 jj = (int8)(0, 1, 2, 3, 4, 5, 6, 7) + j;
    return (jj < cb) | ((jj >= lo) & (jj <= hi));
}

/* Softmax over the visible columns of row x in place; zeros elsewhere in [0, ld). [j0, j1) are the
 * float8s that may hold visible columns. */
inline void rows_softmax(__global float *x, int ld, int j0, int j1, int cb, int lo, int hi) {
    float8 mx = (float8)(-INFINITY);
    for (int j = j0; j < j1; j += 8)
        mx = rows_visible(j, cb, lo, hi) ? fmax(mx, vload8(0, x + j)) : mx;
    const float4 m4 = fmax(mx.lo, mx.hi);
    const float m = fmax(fmax(m4.x, m4.y), fmax(m4.z, m4.w)); /* finite: the query sees itself */
    float8 sum = (float8)(0.0f);
    for (int j = j0; j < j1; j += 8) {
        const int8 ok = rows_visible(j, cb, lo, hi);
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

/* The row's geometry from the kernel arguments (see the top). */
#define ROWS_SETUP()                                                                     \
    const int i = get_global_id(0), h = get_global_id(1);                                \
    if (i >= nq || h >= nh) return;                                                      \
    const int hi = nbb + i + off, lo = win < 0 ? nbb : max(nbb, hi - win);               \
    const int cb = nbb ? rows_below(bnd + bo, nbb, t0 + i - win) : 0;                   \
    const int j0 = cb ? 0 : lo & ~7, j1 = (hi + 8) & ~7;                                 \
    const int row = (h * nq + i) * ld

/* Scores -> probabilities P, in place (the forward). */
__kernel void attn_rows_softmax(__global float *s, int so, int ld, int nq, int nh, int off, int win, int t0,
                                int nbb, __global const int *bnd, int bo) {
    ROWS_SETUP();
    rows_softmax(s + so + row, ld, j0, j1, cb, lo, hi);
}

/* The backward's row pass: scores -> P in place, then with dP = dout . v (dp, same layout) the
 * score gradient dS = P * (dP - D), D = sum_j P dP (= dout . out), written over dp. P is exactly 0
 * where the query does not see the key, so P != 0 selects what to keep (a visible P that underflowed
 * to 0 has dS = 0 either way). */
__kernel void attn_rows_dsoftmax(__global float *s, __global float *dp, int so, int ld, int nq, int nh, int off,
                                 int win, int t0, int nbb, __global const int *bnd, int bo) {
    ROWS_SETUP();
    __global float *p = s + so + row, *g = dp + so + row;
    rows_softmax(p, ld, j0, j1, cb, lo, hi);
    float8 d8 = (float8)(0.0f);
    for (int j = j0; j < j1; j += 8) {
        const float8 pv = vload8(0, p + j);
        d8 += pv != (float8)(0.0f) ? pv * vload8(0, g + j) : (float8)(0.0f);
    }
    const float4 d4 = d8.lo + d8.hi;
    const float d = (d4.x + d4.y) + (d4.z + d4.w);
    for (int j = j0; j < j1; j += 8) {
        const float8 pv = vload8(0, p + j);
        vstore8(pv != (float8)(0.0f) ? pv * (vload8(0, g + j) - (float8)(d)) : (float8)(0.0f), 0, g + j);
    }
    for (int j = 0; j < j0; j += 8) vstore8((float8)(0.0f), 0, g + j);
    for (int j = j1; j < ld; j += 8) vstore8((float8)(0.0f), 0, g + j);
}

/* The boundary rows of x [B, T, nh * dh] (from xo), head-major: xc[b, h, r, d] = x[b, bnd[bo + r], h * dh + d]
 * (xc [B, nh, nb, dh]). Work-item (r, g, b * nh + h) moves dims [8g, 8g + 8).
 * Global (nb, ceil(dh / 8), B * nh). */
__kernel void attn_rows_gather(__global float *xc, __global const float *x, int xo, __global const int *bnd, int bo,
                               int nb, int T, int nh, int dh, int nbh) {
    const int r = get_global_id(0), d0 = 8 * get_global_id(1), bh = get_global_id(2);
    if (r >= nb || d0 >= dh || bh >= nbh) return;
    const int b = bh / nh, h = bh - b * nh;
    __global const float *src = x + xo + (b * T + bnd[bo + r]) * nh * dh + h * dh + d0;
    __global float *dst = xc + (bh * nb + r) * dh + d0;
    if (d0 + 8 <= dh)
        vstore8(vload8(0, src), 0, dst);
    else
        for (int j = 0; j < dh - d0; j++) dst[j] = src[j];
}

/* The way back, adding: x[b, bnd[bo + r], h * dh + d] += xc[b, h, r, d]. The boundaries are distinct,
 * so every element has one writer. Same arguments (in the same order) and grid. */
__kernel void attn_rows_scatter_add(__global const float *xc, __global float *x, int xo, __global const int *bnd,
                                    int bo, int nb, int T, int nh, int dh, int nbh) {
    const int r = get_global_id(0), d0 = 8 * get_global_id(1), bh = get_global_id(2);
    if (r >= nb || d0 >= dh || bh >= nbh) return;
    const int b = bh / nh, h = bh - b * nh;
    __global float *dst = x + xo + (b * T + bnd[bo + r]) * nh * dh + h * dh + d0;
    __global const float *src = xc + (bh * nb + r) * dh + d0;
    if (d0 + 8 <= dh)
        vstore8(vload8(0, dst) + vload8(0, src), 0, dst);
    else
        for (int j = 0; j < dh - d0; j++) dst[j] += src[j];
}
