/* attention_lanes.cl: compressed and sliding-window prefill with the queries along the vector lanes
 * (CPUs). Options: -DDH=<head dim> -DQV=<1 or 2: 8 or 16 queries per work-item> -DRK=<keys per group:
 * the table's attn.rk, 4 to 8, so that the RK score vectors of NQ floats take 8 of the device's registers>.
 *
 * A work-item takes NQ = 8 * QV consecutive queries t0 .. t0 + NQ - 1 of one head and walks the keys
 * any of them sees: the boundaries below the last query's window (ascending; query t sees bnd < t - win)
 * and then the window range [max(0, t0 - win), last] (query t sees [t - win, t]), RK keys at a time.
 * A group's scores are RK vectors of NQ lanes, one lane per query: for each of the DH dims, one load of
 * the transposed queries and RK broadcasts of the keys' elements, RK FMAs; no lane reduction anywhere.
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
 * no score buffers; 1.3x at T = 1024 and 1.2x at 4096 on AVX-512 with 16 queries as one float16 (as
 * two float8s: 1.2x and 0.9x), 3x the per-query kernels on windows the GEMM path leaves to them
 * (docs/benchmarks.md). 12 or 16 keys per group ran slower (registers), as 16 queries x 8 keys on AVX2. */
#ifndef DH
#define DH 64
#endif
#ifndef QV
#define QV 2
#endif
#ifndef RK
#define RK 8
#endif
#define NQ (8 * QV)
#define LANES_NEG (-1e30f)
#define LANES_SLACK 8.0f

/* A work-item's queries as one vector: float16 for QV = 2 (one AVX-512 register), float8 for QV = 1.
 * exp is common.cl's vector one (see ATB_DEFINE_EXP). */
#if QV == 2
#ifdef __clang__
/* float16 values passed between inlined functions and builtins: clang warns that the ABI of such a call
 * differs without AVX-512 (no call is left after inlining; PoCL printed "6 warnings generated"). */
#pragma clang diagnostic ignored "-Wpsabi"
#endif
typedef float16 fq;
typedef int16 iq;
#define LANE_IDS ((int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
#define HALF(x, c) ((c) ? (x).hi : (x).lo)
#define JOIN(a, b) ((float16)((a), (b)))
#define AS_IQ(x) as_int16(x)
#define AS_FQ(x) as_float16(x)
#else
typedef float8 fq;
typedef int8 iq;
#define LANE_IDS ((int8)(0, 1, 2, 3, 4, 5, 6, 7))
#define HALF(x, c) (x)
#define JOIN(a, b) (a)
#define AS_IQ(x) as_int8(x)
#define AS_FQ(x) as_float8(x)
#endif

ATB_DEFINE_EXP(lanes_exp, fq, iq, AS_IQ, AS_FQ) /* common.cl */

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
    /* the queries transposed and scaled, and the accumulator: lane r of [d] is query t0 + r's dim d */
    fq qt[DH], o[DH];
    __global const float *p[NQ];
    _Pragma("unroll") for (int r = 0; r < NQ; r++) p[r] = q + qo + (b * T + min(t0 + r, last)) * qs + h * DH;
    int d = 0;
    for (; d + 8 <= DH; d += 8) {
        float8 x[QV][8];
        _Pragma("unroll") for (int c = 0; c < QV; c++) {
            _Pragma("unroll") for (int r = 0; r < 8; r++) x[c][r] = vload8(0, p[8 * c + r] + d);
            lanes_transpose8(x[c]);
        }
        _Pragma("unroll") for (int e = 0; e < 8; e++) qt[d + e] = JOIN(x[0][e], x[QV - 1][e]) * scale;
    }
    for (; d < DH; d++) {
        float8 x[QV];
        _Pragma("unroll") for (int c = 0; c < QV; c++)
            x[c] = (float8)(p[8 * c][d], p[8 * c + 1][d], p[8 * c + 2][d], p[8 * c + 3][d], p[8 * c + 4][d],
                            p[8 * c + 5][d], p[8 * c + 6][d], p[8 * c + 7][d]);
        qt[d] = JOIN(x[0], x[QV - 1]) * scale;
    }
    for (d = 0; d < DH; d++) o[d] = (fq)(0.0f);
    fq m = (fq)(LANES_NEG), l = (fq)(0.0f);
    const int cb = nb ? atb_count_below(bnd + bo, nb, last - win) : 0; /* the boundaries the last query sees */
    const int s0 = max(0, t0 - win), n = cb + last + 1 - s0;
    for (int j0 = 0; j0 < n; j0 += RK) {
        /* key j: its row, and the queries [lo, hi] that see it (none past n) */
        __global const float *kr[RK], *vr[RK];
        int lo[RK], hi[RK];
        _Pragma("unroll") for (int j = 0; j < RK; j++) {
            const int i = j0 + j, pos = i < cb ? bnd[bo + i] : min(s0 + i - cb, last);
            kr[j] = i < cb ? kch + i * DH : kh + pos * ks;
            vr[j] = i < cb ? vch + i * DH : vh + pos * ks;
            lo[j] = i >= n ? T : i < cb ? pos + win + 1 : pos;
            hi[j] = i < cb ? T : pos + win;
        }
        fq sc[RK];
        _Pragma("unroll") for (int j = 0; j < RK; j++) sc[j] = (fq)(0.0f);
        for (int e = 0; e < DH; e++) {
            const fq qd = qt[e];
            _Pragma("unroll") for (int j = 0; j < RK; j++) sc[j] = qd * (fq)(kr[j][e]) + sc[j];
        }
        /* each lane's reference max m moves only when a score passes it by LANES_SLACK (then the
         * accumulator is rescaled): exp(s - m) <= e^LANES_SLACK, and most groups skip the rescale */
        const iq t = LANE_IDS + t0;
        fq mx = m;
        _Pragma("unroll") for (int j = 0; j < RK; j++) mx = t >= lo[j] && t <= hi[j] ? fmax(mx, sc[j]) : mx;
        const iq up = mx > m + LANES_SLACK;
        mx = up ? mx : m;
        const fq alpha = lanes_exp(m - mx);
        m = mx;
        l *= alpha;
        _Pragma("unroll") for (int j = 0; j < RK; j++) {
            sc[j] = t >= lo[j] && t <= hi[j] ? lanes_exp(sc[j] - mx) : (fq)(0.0f);
            l += sc[j];
        }
        if (any(up))
            for (int e = 0; e < DH; e++) o[e] *= alpha;
        _Pragma("unroll 2") for (int e = 0; e < DH; e++) {
            fq a = o[e];
            _Pragma("unroll") for (int j = 0; j < RK; j++) a = sc[j] * (fq)(vr[j][e]) + a;
            o[e] = a;
        }
    }
    const fq inv = 1.0f / l; /* l >= 1 in every stored lane: each query sees itself */
    _Pragma("unroll") for (int c = 0; c < QV; c++) {
        const float8 iv = HALF(inv, c);
        __global float *p[8];
        _Pragma("unroll") for (int r = 0; r < 8; r++)
            p[r] = out + oo + (b * T + min(t0 + 8 * c + r, last)) * qs + h * DH;
        const int n = last + 1 - (t0 + 8 * c); /* lanes of real queries */
        if (n >= 8) {
            int d = 0;
            for (; d + 8 <= DH; d += 8) {
                float8 x[8];
                _Pragma("unroll") for (int e = 0; e < 8; e++) x[e] = HALF(o[d + e], c) * iv;
                lanes_transpose8(x);
                _Pragma("unroll") for (int r = 0; r < 8; r++) vstore8(x[r], 0, p[r] + d);
            }
            for (; d < DH; d++) {
                const float8 y = HALF(o[d], c) * iv;
                p[0][d] = y.s0, p[1][d] = y.s1, p[2][d] = y.s2, p[3][d] = y.s3;
                p[4][d] = y.s4, p[5][d] = y.s5, p[6][d] = y.s6, p[7][d] = y.s7;
            }
        } else if (n > 0) {
            for (int d = 0; d < DH; d++) {
                const float8 y = HALF(o[d], c) * iv;
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
