/* attention_lanes.cl: compressed and sliding-window prefill with the queries along the vector lanes
 * (CPUs). Options: -DDH=<head dim> -DQV=<float8s of queries per work-item>.
 *
 * A work-item takes NQ = 8 * QV consecutive queries t0 .. t0 + NQ - 1 of one head and walks the keys
 * any of them sees: the boundaries below the last query's window (ascending; query t sees bnd < t - win)
 * and then the window range [max(0, t0 - win), last] (query t sees [t - win, t]), RK keys at a time.
 * A group's scores are RK x QV float8s, one lane per query: for each of the DH dims, QV loads of the
 * transposed queries and RK broadcasts of the keys' elements, RK x QV FMAs; no lane reduction anywhere.
 * Each lane's online softmax is lane-wise (max, exp, sum), and the output accumulates transposed,
 * o[d] += p_j * v_j[d], again from broadcasts of the value rows. Keys a lane does not see get
 * probability 0 (selected, never multiplied). The boundary keys and values come from compact
 * head-major copies kc, vc [B, Hkv, nb, DH] (attn_rows_gather: in place, rows P x Hkv x DH floats apart
 * fall into one L1 set), the window's from k and v in place. The queries' and the accumulator's
 * DH x NQ floats are private arrays (a CPU's stack, in L1), transposed in and out by 8 x 8 blocks.
 * GPUs do not take this kernel (the table's attn.qv is 0 there). No barriers; a work-item past H
 * returns. Global (ceil(H / lx) * lx, ceil(T / NQ), B): the heads along the work-group, so a group's
 * items read their queries' and outputs' rows (all heads of them) and the window's in turn, 1.13x
 * over tiles along it.
 *
 * Against the GEMM path's ~25 launches per call at T = 1024 (P = L = 8): one launch and two gathers,
 * no score buffers; 1.2-1.4x at T <= 1024, even at 2048, 0.95x at 4096, 3x the per-query kernels on
 * windows the GEMM path leaves to them (docs/benchmarks.md). RK = 12 or 16 ran slower (registers). */
#ifndef DH
#define DH 64
#endif
#ifndef QV
#define QV 2
#endif
#define RK 8
#define NQ (8 * QV)
#define LANES_NEG (-1e30f)
#define LANES_SLACK 8.0f

/* How many of the ascending bnd[0 .. n) lie below lim. */
static inline int lanes_below(__global const int *bnd, int n, int lim) {
    int lo = 0, hi = n;
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (bnd[mid] < lim) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* The 8 x 8 transpose of rows r[0..8) (r[i].s_j <-> r[j].s_i): three rounds of row m <- the even
 * elements of rows 2m, 2m + 1 (m < 4; their odd ones for m >= 4), each moving the element of row
 * (i2 i1 i0), column (j2 j1 j0) to row (j0 i2 i1), column (i0 j2 j1). Swizzles, so the compiler sees
 * the two-vector shuffles (PoCL's shuffle2 goes through memory). */
static inline void lanes_transpose8(float8 *r) {
    _Pragma("unroll") for (int round = 0; round < 3; round++) {
        float8 t[8];
        _Pragma("unroll") for (int m = 0; m < 4; m++) {
            t[m] = (float8)(r[2 * m].even, r[2 * m + 1].even);
            t[m + 4] = (float8)(r[2 * m].odd, r[2 * m + 1].odd);
        }
        _Pragma("unroll") for (int m = 0; m < 8; m++) r[m] = t[m];
    }
}

/* q, out [B, T, H * DH] and k, v [B, T, Hkv * DH] from their offsets; the sequence's boundaries bnd[bo ..
 * bo + nb) (nb = 0: a sliding window, bnd not read); win the window (<= T). */
__kernel void attn_lanes(__global const float *q, int qo, __global const float *k, int ko, __global const float *v,
                         int vo, __global const float *kc, int kco, __global const float *vc, int vco,
                         __global float *out, int oo, __global const int *bnd, int bo, int nb, int T, int H,
                         int Hkv, int win, float scale) {
    const int h = get_global_id(0), t0 = get_global_id(1) * NQ, b = get_global_id(2);
    if (h >= H) return;
    const int qs = H * DH, ks = Hkv * DH, last = min(t0 + NQ, T) - 1;
    const int g = h / (H / Hkv);
    __global const float *kh = k + ko + b * T * ks + g * DH, *vh = v + vo + b * T * ks + g * DH;
    __global const float *kch = kc + kco + (b * Hkv + g) * nb * DH, *vch = vc + vco + (b * Hkv + g) * nb * DH;
    /* the queries transposed and scaled, and the accumulator: [d][c], lane r of float8 c is query t0 + 8c + r */
    float8 qt[DH][QV], o[DH][QV];
    _Pragma("unroll") for (int c = 0; c < QV; c++) {
        __global const float *p[8];
        _Pragma("unroll") for (int r = 0; r < 8; r++)
            p[r] = q + qo + (b * T + min(t0 + 8 * c + r, last)) * qs + h * DH;
        int d = 0;
        for (; d + 8 <= DH; d += 8) {
            float8 x[8];
            _Pragma("unroll") for (int r = 0; r < 8; r++) x[r] = vload8(0, p[r] + d);
            lanes_transpose8(x);
            _Pragma("unroll") for (int e = 0; e < 8; e++) qt[d + e][c] = x[e] * scale;
        }
        for (; d < DH; d++)
            qt[d][c] = (float8)(p[0][d], p[1][d], p[2][d], p[3][d], p[4][d], p[5][d], p[6][d], p[7][d]) * scale;
        for (d = 0; d < DH; d++) o[d][c] = (float8)(0.0f);
    }
    float8 m[QV], l[QV];
    _Pragma("unroll") for (int c = 0; c < QV; c++) {
        m[c] = (float8)(LANES_NEG);
        l[c] = (float8)(0.0f);
    }
    const int cb = nb ? lanes_below(bnd + bo, nb, last - win) : 0; /* the boundaries the last query sees */
    const int s0 = max(0, t0 - win), n = cb + last + 1 - s0;
    for (int j0 = 0; j0 < n; j0 += RK) {
        /* key j: its row, and the queries [lo, hi] that see it (none past n) */
        __global const float *kr[RK], *vr[RK];
        int lo[RK], hi[RK];
        _Pragma("unroll") for (int j = 0; j < RK; j++) {
            const int i = j0 + j, p = i < cb ? bnd[bo + i] : min(s0 + i - cb, last);
            kr[j] = i < cb ? kch + i * DH : kh + p * ks;
            vr[j] = i < cb ? vch + i * DH : vh + p * ks;
            lo[j] = i >= n ? T : i < cb ? p + win + 1 : p;
            hi[j] = i < cb ? T : p + win;
        }
        float8 s[RK][QV];
        _Pragma("unroll") for (int j = 0; j < RK; j++)
            _Pragma("unroll") for (int c = 0; c < QV; c++) s[j][c] = (float8)(0.0f);
        for (int d = 0; d < DH; d++) {
            float8 qd[QV];
            _Pragma("unroll") for (int c = 0; c < QV; c++) qd[c] = qt[d][c];
            _Pragma("unroll") for (int j = 0; j < RK; j++) {
                const float8 kd = (float8)(kr[j][d]);
                _Pragma("unroll") for (int c = 0; c < QV; c++) s[j][c] = fma(qd[c], kd, s[j][c]);
            }
        }
        /* each lane's reference max m moves only when a score passes it by LANES_SLACK (then the
         * accumulator is rescaled): exp(s - m) <= e^LANES_SLACK, and most groups skip the rescale */
        float8 alpha[QV];
        int moved = 0;
        _Pragma("unroll") for (int c = 0; c < QV; c++) {
            const int8 t = (int8)(0, 1, 2, 3, 4, 5, 6, 7) + (t0 + 8 * c);
            float8 mx = m[c];
            _Pragma("unroll") for (int j = 0; j < RK; j++)
                mx = t >= lo[j] && t <= hi[j] ? fmax(mx, s[j][c]) : mx;
            const int8 up = mx > m[c] + LANES_SLACK;
            moved |= any(up);
            mx = up ? mx : m[c];
            alpha[c] = exp(m[c] - mx);
            m[c] = mx;
            l[c] *= alpha[c];
            _Pragma("unroll") for (int j = 0; j < RK; j++) {
                s[j][c] = t >= lo[j] && t <= hi[j] ? exp(s[j][c] - mx) : (float8)(0.0f);
                l[c] += s[j][c];
            }
        }
        if (moved)
            for (int d = 0; d < DH; d++)
                _Pragma("unroll") for (int c = 0; c < QV; c++) o[d][c] *= alpha[c];
        _Pragma("unroll 2") for (int d = 0; d < DH; d++) {
            _Pragma("unroll") for (int c = 0; c < QV; c++) {
                float8 a = o[d][c];
                _Pragma("unroll") for (int j = 0; j < RK; j++) a = fma(s[j][c], (float8)(vr[j][d]), a);
                o[d][c] = a;
            }
        }
    }
    _Pragma("unroll") for (int c = 0; c < QV; c++) {
        const float8 inv = 1.0f / l[c]; /* l >= 1 in every stored lane: each query sees itself */
        __global float *p[8];
        _Pragma("unroll") for (int r = 0; r < 8; r++)
            p[r] = out + oo + (b * T + min(t0 + 8 * c + r, last)) * qs + h * DH;
        const int n = last + 1 - (t0 + 8 * c); /* lanes of real queries */
        if (n >= 8) {
            int d = 0;
            for (; d + 8 <= DH; d += 8) {
                float8 x[8];
                _Pragma("unroll") for (int e = 0; e < 8; e++) x[e] = o[d + e][c] * inv;
                lanes_transpose8(x);
                _Pragma("unroll") for (int r = 0; r < 8; r++) vstore8(x[r], 0, p[r] + d);
            }
            for (; d < DH; d++) {
                const float8 y = o[d][c] * inv;
                p[0][d] = y.s0, p[1][d] = y.s1, p[2][d] = y.s2, p[3][d] = y.s3;
                p[4][d] = y.s4, p[5][d] = y.s5, p[6][d] = y.s6, p[7][d] = y.s7;
            }
        } else if (n > 0) {
            for (int d = 0; d < DH; d++) {
                const float8 y = o[d][c] * inv;
                p[0][d] = y.s0;
                if (n > 1) p[1][d] = y.s1;
                if (n > 2) p[2][d] = y.s2;
                if (n > 3) p[3][d] = y.s3;
                if (n > 4) p[4][d] = y.s4;
                if (n > 5) p[5][d] = y.s5;
                if (n > 6) p[6][d] = y.s6;
            }
        }
    }
}
