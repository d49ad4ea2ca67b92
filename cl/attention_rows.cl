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
 * One work-item per row, on float8 vectors; no work-item reads what another wrote (the window kernels'
 * barriers only order the work: see below). Global (nq, nh heads), padded to any local
 * size. Without boundary columns (nbb = 0) bnd is never read. */

/* Which columns of [j, j + 8) the row sees. */
static inline int8 rows_visible(int j, int cb, int lo, int hi) {
    const int8 jj = (int8)(0, 1, 2, 3, 4, 5, 6, 7) + j;
    return (jj < cb) | ((jj >= lo) & (jj <= hi));
}

/* The sum of a float8's lanes. */
static inline float rows_hsum(float8 a) {
    const float4 a4 = a.lo + a.hi;
    return (a4.x + a4.y) + (a4.z + a4.w);
}

/* Softmax over the visible columns of row x in place; zeros elsewhere in [0, ld). [j0, j1) are the
 * float8s that may hold visible columns; those below jm are whole float8s of seen boundary columns and
 * skip the mask (most of a long row: the lanes' sums are the same as with it). */
static inline void rows_softmax(__global float *x, int ld, int j0, int j1, int cb, int lo, int hi) {
    const int jm = max(j0, cb & ~7);
    float8 mx = (float8)(-INFINITY);
    for (int j = j0; j < jm; j += 8) mx = fmax(mx, vload8(0, x + j));
    for (int j = jm; j < j1; j += 8)
        mx = rows_visible(j, cb, lo, hi) ? fmax(mx, vload8(0, x + j)) : mx;
    const float4 m4 = fmax(mx.lo, mx.hi);
    const float m = fmax(fmax(m4.x, m4.y), fmax(m4.z, m4.w)); /* finite: the query sees itself */
    float8 sum = (float8)(0.0f);
    for (int j = j0; j < jm; j += 8) {
        const float8 e = exp(vload8(0, x + j) - (float8)(m));
        vstore8(e, 0, x + j);
        sum += e;
    }
    for (int j = jm; j < j1; j += 8) {
        const int8 ok = rows_visible(j, cb, lo, hi);
        const float8 e = ok ? exp(vload8(0, x + j) - (float8)(m)) : (float8)(0.0f);
        vstore8(e, 0, x + j);
        sum += e;
    }
    const float inv = 1.0f / rows_hsum(sum);
    for (int j = j0; j < j1; j += 8) vstore8(vload8(0, x + j) * inv, 0, x + j);
    for (int j = 0; j < j0; j += 8) vstore8((float8)(0.0f), 0, x + j);
    for (int j = j1; j < ld; j += 8) vstore8((float8)(0.0f), 0, x + j);
}

/* The row's geometry from the kernel arguments (see the top). */
#define ROWS_SETUP()                                                                     \
    const int i = get_global_id(0), h = get_global_id(1);                                \
    if (i >= nq || h >= nh) return;                                                      \
    const int hi = nbb + i + off, lo = win < 0 ? nbb : max(nbb, hi - win);               \
    const int cb = nbb ? atb_count_below(bnd + bo, nbb, t0 + i - win) : 0;               \
    const int j0 = cb ? 0 : lo & ~7, j1 = (hi + 8) & ~7;                                 \
    const int row = (h * nq + i) * ld

/* Scores -> probabilities P, in place (the forward). */
__kernel void attn_rows_softmax(__global float *s, int so, int ld, int nq, int nh, int off, int win, int t0,
                                int nbb, __global const int *bnd, int bo) {
    ROWS_SETUP();
    rows_softmax(s + so + row, ld, j0, j1, cb, lo, hi);
}

/* dS = P * (dP - D), D = sum_j P dP, over g (dP on entry) with the probabilities p of the same row. P is
 * exactly 0 where the query does not see the key, so P != 0 selects what to keep (a visible P that
 * underflowed to 0 has dS = 0 either way). */
static inline void rows_dscores(__global const float *p, __global float *g, int ld, int j0, int j1) {
    float8 d8 = (float8)(0.0f);
    for (int j = j0; j < j1; j += 8) {
        const float8 pv = vload8(0, p + j);
        d8 += pv != (float8)(0.0f) ? pv * vload8(0, g + j) : (float8)(0.0f);
    }
    const float d = rows_hsum(d8);
    for (int j = j0; j < j1; j += 8) {
        const float8 pv = vload8(0, p + j);
        vstore8(pv != (float8)(0.0f) ? pv * (vload8(0, g + j) - (float8)(d)) : (float8)(0.0f), 0, g + j);
    }
    for (int j = 0; j < j0; j += 8) vstore8((float8)(0.0f), 0, g + j);
    for (int j = j1; j < ld; j += 8) vstore8((float8)(0.0f), 0, g + j);
}

/* The backward's row pass: scores -> P in place, then with dP = dout . v (dp, same layout) the
 * score gradient dS written over dp (D = dout . out: the forward's out is not read). */
__kernel void attn_rows_dsoftmax(__global float *s, __global float *dp, int so, int ld, int nq, int nh, int off,
                                 int win, int t0, int nbb, __global const int *bnd, int bo) {
    ROWS_SETUP();
    rows_softmax(s + so + row, ld, j0, j1, cb, lo, hi);
    rows_dscores(s + so + row, dp + so + row, ld, j0, j1);
}

/* ---- short windows in the row pass (compressed masks; src/ops/attention_gemm.c "row window") ----
 * The GEMMs then compute only the boundary columns [0, nbb); the row holds the query's win + 1 window
 * slots after them, slot j for key position t - win + j (the slots before position 0 are not seen),
 * whose scores and products with v the work-item computes itself: win + 1 dot products of dh where
 * the GEMM would have computed a block's bq + win window columns per row. q, k, v, out, dout, dq:
 * [T, nh * dh] and [T, nh / grp * dh] rows of one sequence from their offsets.
 *
 * The window kernels run in phases with a barrier between them, though no work-item reads another's
 * data: a CPU driver (PoCL) runs a work-group phase by phase, each over all its items, so the rows of
 * k that a head's consecutive queries share stay in L1 while that phase walks them. Without the
 * barriers every item walked its k rows, then its v rows, and rows nh * dh floats apart (2 KiB at
 * d = 512) fall into a few cache sets: the v rows evicted the k rows the next query wanted. T = 1024,
 * P = 8, L = 8: the forward 1.2x (docs/benchmarks.md). The barriers are at the top level, reached by
 * every item (those outside the block skip the work). */

/* The dot products of a with the n rows b + j * bs, j < n, over dh floats, times scale, into x[0, n).
 * Four rows at a time, four independent chains sharing each load of a (one chain's latency would
 * bound the loop); a group's rows past n repeat its last row and are not stored. */
static inline void rows_dots(__global float *x, float scale, __global const float *a, __global const float *b, int bs,
                             int n, int dh) {
    for (int j = 0; j < n; j += 4) {
        __global const float *b0 = b + j * bs, *b1 = b0 + min(1, n - 1 - j) * bs;
        __global const float *b2 = b0 + min(2, n - 1 - j) * bs, *b3 = b0 + min(3, n - 1 - j) * bs;
        float8 c0 = (float8)(0.0f), c1 = c0, c2 = c0, c3 = c0;
        int d = 0;
        for (; d + 8 <= dh; d += 8) {
            const float8 av = vload8(0, a + d);
            c0 = fma(av, vload8(0, b0 + d), c0);
            c1 = fma(av, vload8(0, b1 + d), c1);
            c2 = fma(av, vload8(0, b2 + d), c2);
            c3 = fma(av, vload8(0, b3 + d), c3);
        }
        float4 r = (float4)(rows_hsum(c0), rows_hsum(c1), rows_hsum(c2), rows_hsum(c3));
        for (; d < dh; d++) r = fma((float4)(a[d]), (float4)(b0[d], b1[d], b2[d], b3[d]), r);
        r *= scale;
        x[j] = r.x;
        if (j + 1 < n) x[j + 1] = r.y;
        if (j + 2 < n) x[j + 2] = r.z;
        if (j + 3 < n) x[j + 3] = r.w;
    }
}

/* y = alpha sum_{j < n} w[j] x_j, x_j = x + j * xs (dh floats each); assigns y. 32 dims at a time: four
 * independent chains over j. */
static inline void rows_combine(__global float *y, float alpha, __global const float *w, __global const float *x,
                                int xs, int n, int dh) {
    int d = 0;
    for (; d + 32 <= dh; d += 32) {
        float8 a0 = (float8)(0.0f), a1 = a0, a2 = a0, a3 = a0;
        for (int j = 0; j < n; j++) {
            const float8 wj = (float8)(w[j]);
            __global const float *xj = x + j * xs + d;
            a0 = fma(wj, vload8(0, xj), a0);
            a1 = fma(wj, vload8(1, xj), a1);
            a2 = fma(wj, vload8(2, xj), a2);
            a3 = fma(wj, vload8(3, xj), a3);
        }
        vstore8(alpha * a0, 0, y + d);
        vstore8(alpha * a1, 1, y + d);
        vstore8(alpha * a2, 2, y + d);
        vstore8(alpha * a3, 3, y + d);
    }
    for (; d + 8 <= dh; d += 8) {
        float8 acc = (float8)(0.0f);
        for (int j = 0; j < n; j++) acc = fma((float8)(w[j]), vload8(0, x + j * xs + d), acc);
        vstore8(alpha * acc, 0, y + d);
    }
    for (; d < dh; d++) {
        float acc = 0.0f;
        for (int j = 0; j < n; j++) acc = fma(w[j], x[j * xs + d], acc);
        y[d] = alpha * acc;
    }
}

/* The row's geometry: query t, kv head g, visible boundary columns [0, cb), window slots from jw (the
 * first at a position >= 0) at columns [lo, hi]; qt, the query row; base, the offset of slot jw's key
 * and value rows in k and v (position t - win + jw); nw, the slots from jw on. */
#define ROWS_WINDOW_SETUP()                                                                        \
    const int i = get_global_id(0), h = get_global_id(1), on = i < nq && h < nh;                   \
    const int t = t0 + i, g = h / grp, qs = nh * dh, ks = nh / grp * dh;                           \
    const int cb = nbb ? atb_count_below(bnd + bo, nbb, t - win) : 0;                              \
    const int jw = max(0, win - t), lo = nbb + jw, hi = nbb + win;                                 \
    const int j0 = cb ? 0 : lo & ~7, j1 = (hi + 8) & ~7;                                           \
    const int row = (h * nq + i) * ld, base = (t - win + jw) * ks + g * dh, nw = win + 1 - jw;     \
    __global const float *qt = q + qo + t * qs + h * dh

/* Both window kernels take these arguments: the score rows s (and dP rows dp, so apart), the block, the
 * boundaries, the window, q, k, v, dout, y (out or dq) and the slots pw, dsw [nh, T, win + 1]. */
#define ROWS_WINDOW_ARGS                                                                                 \
    __global float *s, __global float *dp, int so, int ld, int nq, int nh, int t0, int nbb,              \
        __global const int *bnd, int bo, int win, float scale, int grp, int dh, __global const float *q, \
        int qo, __global const float *k, int ko, __global const float *v, int vo,                        \
        __global const float *dout, int go, __global float *y, int yo, __global float *pw, int pwo,      \
        __global float *dsw, int dswo, int T

/* The forward: the window slots' scores, the softmax over the row, and y = out = P v over the window
 * (the boundary columns' P Vc follows as a GEMM adding to out). dp, dout and the slots are not used. */
__kernel void attn_rows_window_softmax(ROWS_WINDOW_ARGS) {
    ROWS_WINDOW_SETUP();
    __global float *x = s + so + row;
    if (on) rows_dots(x + lo, scale, qt, k + ko + base, ks, nw, dh);
    barrier(CLK_GLOBAL_MEM_FENCE);
    if (on) rows_softmax(x, ld, j0, j1, cb, lo, hi);
    barrier(CLK_GLOBAL_MEM_FENCE);
    if (on) rows_combine(y + yo + t * qs + h * dh, 1.0f, x + lo, v + vo + base, ks, nw, dh);
}

/* The backward: the window slots' scores and dP = dout . v, then P and dS over the row (as
 * attn_rows_dsoftmax); the window slots' P and dS also go to pw, dsw (zeros before position 0) for
 * attn_window_dkv, and y = dq = scale dS k over the window (the boundary columns' part follows as a
 * GEMM adding to dq). */
__kernel void attn_rows_window_dsoftmax(ROWS_WINDOW_ARGS) {
    ROWS_WINDOW_SETUP();
    __global float *x = s + so + row, *gr = dp + so + row;
    __global const float *gt = dout + go + t * qs + h * dh;
    if (on) rows_dots(gr + lo, 1.0f, gt, v + vo + base, ks, nw, dh);
    barrier(CLK_GLOBAL_MEM_FENCE); /* the phase over v rows, then the phases over k rows */
    if (!on) return;
    rows_dots(x + lo, scale, qt, k + ko + base, ks, nw, dh);
    rows_softmax(x, ld, j0, j1, cb, lo, hi);
    rows_dscores(x, gr, ld, j0, j1);
    __global float *pr = pw + pwo + (h * T + t) * (win + 1), *dr = dsw + dswo + (h * T + t) * (win + 1);
    for (int j = 0; j <= win; j++) {
        pr[j] = x[nbb + j];
        dr[j] = gr[nbb + j];
    }
    rows_combine(y + yo + t * qs + h * dh, scale, gr + lo, k + ko + base, ks, nw, dh);
}

/* The first n (1..8) floats at p as a float8 (zeros past n), and the way back; no private array (it
 * would take scratch memory on GPUs). */
static inline float8 rows_load(__global const float *p, int n) {
    if (n == 8) return vload8(0, p);
    return (float8)(p[0], n > 1 ? p[1] : 0.0f, n > 2 ? p[2] : 0.0f, n > 3 ? p[3] : 0.0f, n > 4 ? p[4] : 0.0f,
                    n > 5 ? p[5] : 0.0f, n > 6 ? p[6] : 0.0f, 0.0f);
}

static inline void rows_store(float8 v, __global float *p, int n) {
    if (n == 8) {
        vstore8(v, 0, p);
        return;
    }
    p[0] = v.s0;
    if (n > 1) p[1] = v.s1;
    if (n > 2) p[2] = v.s2;
    if (n > 3) p[3] = v.s3;
    if (n > 4) p[4] = v.s4;
    if (n > 5) p[5] = v.s5;
    if (n > 6) p[6] = v.s6;
}

/* The window keys' gradients, assigned (every key is in its own window): for key s of kv head g,
 * dk[s] = scale sum_h sum_t dS[h, t, win - (t - s)] q[t, h] and dv[s] = sum_h sum_t P[h, t, ..] dout[t, h]
 * over the grp query heads h of g and the queries t in [s, min(s + win, T - 1)], from the window slots
 * pw, dsw [B, nh, T, win + 1] that attn_rows_window_dsoftmax stored. Work-item (s, c, b * Hkv + g)
 * writes dims [8c, 8c + 8). Global (T, ceil(dh / 8), B * Hkv). */
__kernel void attn_window_dkv(__global const float *pw, int pwo, __global const float *dsw, int dswo,
                              __global const float *q, int qo,
                              __global const float *dout, int go, __global float *dk, int dko, __global float *dv,
                              int dvo, int T, int nh, int grp, int dh, int win, float scale, int nbh) {
    const int s = get_global_id(0), d0 = 8 * get_global_id(1), bg = get_global_id(2);
    const int hkv = nh / grp;
    if (s >= T || d0 >= dh || bg >= nbh) return;
    const int b = bg / hkv, g = bg - b * hkv, qs = nh * dh, ks = hkv * dh, n = min(8, dh - d0);
    const int t1 = min(s + win, T - 1), o = (b * T + s) * ks + g * dh + d0;
    float8 ak = (float8)(0.0f), av = (float8)(0.0f);
    for (int h = g * grp; h < (g + 1) * grp; h++) {
        __global const float *ws = pw + pwo + (b * nh + h) * T * (win + 1);
        __global const float *wd = dsw + dswo + (b * nh + h) * T * (win + 1);
        for (int t = s; t <= t1; t++) {
            const int wi = t * (win + 1) + win - (t - s), r = (b * T + t) * qs + h * dh + d0;
            ak = fma((float8)(wd[wi]), rows_load(q + qo + r, n), ak);
            av = fma((float8)(ws[wi]), rows_load(dout + go + r, n), av);
        }
    }
    rows_store(scale * ak, dk + dko + o, n);
    rows_store(av, dv + dvo + o, n);
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
    const int n = min(8, dh - d0);
    rows_store(rows_load(src, n), dst, n);
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
    const int n = min(8, dh - d0);
    rows_store(rows_load(dst, n) + rows_load(src, n), dst, n);
}
