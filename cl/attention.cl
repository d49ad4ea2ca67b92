/* attention.cl: causal / sliding / compressed (Attamba) attention, forward, f32.
 * Options: -DDH=<head dim> -DBQ=<queries per work-group> -DTK=<keys per tile> -DUSE_LOCAL=0|1
 *          (decode: -DWG=<work-items per (sequence, head)>); -DDS=<work-items per query> builds
 *          attn_prefill_slices instead of attn_prefill, -DDECODE_SLICES=1 the sliced attn_decode (GPUs:
 *          no per-work-item rows of DH floats; see there).
 *
 * Prefill: a work-group is a block of BQ consecutive queries of one head of one sequence, one
 * work-item per query. The keys a block needs are the union of its queries' keys, split in two:
 *   phase A: keys every query of the block sees unmasked: all of [0, t0) for CAUSAL, the boundaries
 *            before the first query's window (b < t0 - L) for COMPRESSED, none for SLIDING;
 *   phase B: the dense range [t0 - L, t0 + BQ) (CAUSAL: [t0, t0 + BQ)) masked per query by the
 *            SPEC 3.3 rule, a key of it being a boundary found by walking the sorted list along.
 * So a query visits about #boundaries-before-its-window + L + BQ keys and no T x T mask exists.
 * Keys come in tiles of TK: scores of the tile first, then one online-softmax rescale per tile.
 * All trip counts depend only on the group (t0) and the data, never on the work-item, so the
 * barriers of the __local variant sit in uniform loops, and PoCL can vectorise across work-items
 * with the key rows as uniform (broadcast) loads. */
/* A variant builds the query kernel its options ask for (the host passes BQ with a prefill's, WG with a
 * decode's); the gathers', kv_append's and attn_causal_lanes' variants build neither. */
#ifdef BQ
#define ATTN_PREFILL 1
#endif
#ifdef WG
#define ATTN_DECODE 1
#endif
#ifndef DH
#define DH 64
#endif
#ifndef BQ
#define BQ 16
#endif
#ifndef TK
#define TK 8
#endif
#ifndef USE_LOCAL
#define USE_LOCAL 0
#endif
#ifndef WG
#define WG 16
#endif

/* ATTN_CAUSAL / ATTN_SLIDING / ATTN_COMPRESSED, ATTN_NEG and the key-tile walks attn_tile_all /
 * attn_tile_window are in common.cl: the backward dq kernel walks the same tiles. */

/* Head-dim vectors: each work-item holds its query and accumulator as DV vectors of VW floats
 * (explicit vectors: PoCL then needs no cross-work-item vectorisation, GPUs just see registers). */
#ifndef VW /* the host passes attn_vec_width(); this default serves the builds without options (gathers) */
#if DH % 8 == 0
#define VW 8
#elif DH % 4 == 0
#define VW 4
#else
#define VW 1
#endif
#endif
#define DV (DH / VW)
#if VW == 16
typedef float16 vec;
/* float16 moved as float8 halves: a float16 argument or return of a library call (vload16, fma)
 * changes the ABI on CPUs without AVX-512, and PoCL warns about each; the arithmetic is the same */
#define VLOAD(p) ((float16)(vload8(0, (p)), vload8(1, (p))))
#define VSTORE(x, p) (vstore8((x).lo, 0, (p)), vstore8((x).hi, 1, (p)))
#define VFMA(a, b, c) ((float16)(fma((a).lo, (b).lo, (c).lo), fma((a).hi, (b).hi, (c).hi)))
#define HSUM(x) attn_hsum4(((x).lo.lo + (x).lo.hi) + ((x).hi.lo + (x).hi.hi))
#elif VW == 8
typedef float8 vec;
#define VLOAD(p) vload8(0, (p))
#define VSTORE(x, p) vstore8((x), 0, (p))
#define VFMA(a, b, c) fma((a), (b), (c))
#define HSUM(x) attn_hsum4((x).lo + (x).hi)
#elif VW == 4
typedef float4 vec;
#define VLOAD(p) vload4(0, (p))
#define VSTORE(x, p) vstore4((x), 0, (p))
#define VFMA(a, b, c) fma((a), (b), (c))
#define HSUM(x) attn_hsum4(x)
#else
typedef float vec;
#define VLOAD(p) (*(p))
#define VFMA(a, b, c) fma((a), (b), (c))
#define HSUM(x) (x)
#endif
static inline float attn_hsum4(float4 x) { return (x.x + x.y) + (x.z + x.w); }

/* A tile's TK scores as one vector, so exp runs vectorised (it dominates a scalar loop). */
#if TK == 16
typedef float16 tvec;
typedef int16 itvec;
#elif TK == 8
typedef float8 tvec;
typedef int8 itvec;
#elif TK == 4
typedef float4 tvec;
typedef int4 itvec;
#elif TK == 2
typedef float2 tvec;
typedef int2 itvec;
#elif TK == 1
typedef float tvec;
typedef int itvec;
#define ATTN_TK1 1
#else
#error "TK must be 1, 2, 4, 8 or 16"
#endif
#ifdef ATTN_TK1
#define TV(x, j) (x)
#else
#define TV(x, j) ((x)[j])
#endif

/* The decode store's element type (-DKV_F16=1: half, read with vload_half / written with vstore_half,
 * core OpenCL 1.2: no cl_khr_fp16 needed), and KV_LOAD, VLOAD for it. */
#ifndef KV_F16
#define KV_F16 0
#endif
#if KV_F16
#define KV_T half
#if VW == 16
#define KV_LOAD(p) ((float16)(vload_half8(0, (p)), vload_half8(1, (p))))
#elif VW == 8
#define KV_LOAD(p) vload_half8(0, (p))
#elif VW == 4
#define KV_LOAD(p) vload_half4(0, (p))
#else
#define KV_LOAD(p) vload_half(0, (p))
#endif
#else
#define KV_T float
#define KV_LOAD(p) VLOAD(p)
#endif

/* One tile of TK keys for one query: scores, online-softmax update of (m, l, acc).
 * KPTR(j) / VPTR(j) point at key/value row j of the tile, ok[j] says whether the query sees it, and
 * LOAD reads VW elements of a row as a vec. Masked scores become ATTN_NEG before the max and get
 * probability 0 explicitly. */
#define ATTN_TILE_UPDATE(KPTR, VPTR) ATTN_TILE_UPDATE_L(KPTR, VPTR, VLOAD)
#define ATTN_TILE_UPDATE_L(KPTR, VPTR, LOAD)                                  \
    do {                                                                      \
        tvec sc;                                                              \
        itvec okv;                                                            \
        for (int j = 0; j < TK; j++) {                                        \
            vec s_ = qv[0] * LOAD(KPTR(j));                                   \
            for (int c = 1; c < DV; c++) s_ = VFMA(qv[c], LOAD(KPTR(j) + c * VW), s_); \
            TV(sc, j) = HSUM(s_);                                             \
            TV(okv, j) = ok[j] ? -1 : 0;                                      \
        }                                                                     \
        sc = okv ? sc : (tvec)(ATTN_NEG);                                     \
        float mt = m;                                                         \
        for (int j = 0; j < TK; j++) mt = fmax(mt, TV(sc, j));                \
        float corr = exp(m - mt), ls = 0.0f;                                  \
        tvec p = exp(sc - (tvec)(mt));                                        \
        p = okv ? p : (tvec)(0.0f); /* all-masked tile before any key: exp(0) */ \
        for (int j = 0; j < TK; j++) ls += TV(p, j);                          \
        l = l * corr + ls;                                                    \
        m = mt;                                                               \
        for (int c = 0; c < DV; c++) {                                        \
            vec a = acc[c] * corr;                                            \
            for (int j = 0; j < TK; j++) a = VFMA((vec)(TV(p, j)), LOAD(VPTR(j) + c * VW), a); \
            acc[c] = a;                                                       \
        }                                                                     \
    } while (0)

#if USE_LOCAL
#define ATTN_LOAD_TILE() ATTN_LOCAL_TILE(kt, vt, kbase, vbase, krow, TK, DH, lid, BQ)
#define KPTR_(j) (kt + (j) * DH)
#define VPTR_(j) (vt + (j) * DH)
#else
#define ATTN_LOAD_TILE() do { } while (0)
#define KPTR_(j) (kbase + krow[j])
#define VPTR_(j) (vbase + krow[j])
#endif

/* q [B,T,H*DH], k/v [B,T,Hkv*DH], out [B,T,H*DH]; bnd: nbnd sorted boundary positions.
 * window: L (CAUSAL: ignored). Global (ceil(T/BQ)*BQ, H, B), local (BQ, 1, 1). */
#if defined(ATTN_PREFILL) && !defined(DS)
__kernel __attribute__((reqd_work_group_size(BQ, 1, 1)))
void attn_prefill(__global const float *q, int qo, __global const float *k, int ko,
                  __global const float *v, int vo, __global float *out, int oo,
                  __global const int *bnd, int bo, int nbnd, int T, int H, int Hkv, int mode, int window,
                  float scale, __global const float *kc, int kco, __global const float *vc, int vco, int compact) {
    const int lid = get_local_id(0);
    const int t0 = get_group_id(0) * BQ;
    const int h = get_global_id(1), b = get_global_id(2);
    const int kvh = h / (H / Hkv);
    const int qs = H * DH, ks = Hkv * DH;
    /* Padding lanes of the last block compute a copy of the last query and never store it. */
    const int t = min(t0 + lid, T - 1);
    bnd += bo;
    k += ko + b * T * ks + kvh * DH;
    v += vo + b * T * ks + kvh * DH;
    __global const float *qp = q + qo + (b * T + t) * qs + h * DH;
#if USE_LOCAL
    __local float kt[TK * DH], vt[TK * DH];
#endif

    vec qv[DV], acc[DV];
    for (int c = 0; c < DV; c++) {
        qv[c] = VLOAD(qp + c * VW) * scale;
        acc[c] = (vec)(0.0f);
    }
    float m = ATTN_NEG, l = 0.0f;
    int krow[TK], ok[TK];

    /* Phase A: keys every query of the block sees. */
    const int wlo = mode == ATTN_CAUSAL ? t0 : max(0, t0 - window);
    const int na = mode == ATTN_CAUSAL ? t0
                 : mode == ATTN_COMPRESSED ? atb_count_below(bnd, nbnd, wlo) : 0;
    /* Boundary rows from k/v at their positions, or (compact) from the head-major gathered copy
     * kc/vc [B, Hkv, nbnd, DH], where the block's phase-A keys are one contiguous stream. */
    const int indirect = mode == ATTN_COMPRESSED && !compact;
    __global const float *kbase = k, *vbase = v;
    int rstride = ks;
    if (mode == ATTN_COMPRESSED && compact) {
        kbase = kc + kco + (b * Hkv + kvh) * nbnd * DH;
        vbase = vc + vco + (b * Hkv + kvh) * nbnd * DH;
        rstride = DH;
    }
    for (int i0 = 0; i0 < na; i0 += TK) {
        attn_tile_all(krow, ok, TK, i0, na, indirect, bnd, rstride);
        ATTN_LOAD_TILE();
        ATTN_TILE_UPDATE(KPTR_, VPTR_);
    }

    /* Phase B: the block's window range, masked per query. bi walks the boundaries >= wlo. */
    kbase = k;
    vbase = v;
    const int whi = min(T, t0 + BQ);
    const int lwin = mode == ATTN_CAUSAL ? T : window;
    int bi = mode == ATTN_COMPRESSED ? na : nbnd;
    for (int s0 = wlo; s0 < whi; s0 += TK) {
        attn_tile_window(krow, ok, TK, s0, whi, t, lwin, bnd, nbnd, &bi, ks);
        ATTN_LOAD_TILE();
        ATTN_TILE_UPDATE(KPTR_, VPTR_);
    }

    if (t0 + lid < T) {
        /* l >= 1: every query sees itself, the key at the running max contributing exp(0). */
        float inv = 1.0f / l;
        __global float *op = out + oo + (b * T + t) * qs + h * DH;
        for (int c = 0; c < DV; c++) {
            vec o = acc[c] * inv;
#if VW == 1
            op[c] = o;
#else
            VSTORE(o, op + c * VW);
#endif
        }
    }
}

#elif defined(ATTN_PREFILL) /* DS: the prefill with each query's head dims split over DS work-items */

/* GPUs: attn_prefill keeps a query and its accumulator as 2 x DH private floats per work-item, which
 * spill at DH = 128 on gfx90a and live on the stack on sm_90 (docs/portability.md). Here a group of
 * BQ x DS work-items takes BQ queries, and work-item (query qi, slice sl) owns the head dims
 * d = sl + DS * i (DHS of them; lanes of one query read consecutive floats). Per tile of TK keys:
 *   1. the group copies the key and value rows into __local kt, vt (phase A's keys, then phase B's, as
 *      one walk);
 *   2. the BQ x TK scores, one dot product over DH each, from the block's queries qs (__local, scaled,
 *      loaded once) and kt, masked by the same rule as attn_prefill, go to __local sc;
 *   3. each work-item updates its query's running max and sum (the DS work-items of a query compute
 *      the same ones) and its DHS accumulator dims from sc and vt.
 * Same keys and masks as attn_prefill; every loop trip count depends on the group only, so all
 * barriers are reached by the whole group. __local rows are DH + 1 floats apart: the score loop's lanes
 * (consecutive keys) read distinct banks. Global (ceil(T/BQ) * BQ * DS, H, B), local (BQ * DS, 1, 1). */
#define NW (BQ * DS)
#define DHP (DH + 1)
#define DHS (DH / DS) /* the host picks DS dividing DH */

/* Copies keys i0 .. i0 + TK - 1 of the block's walk and their values into kt / vt: key i < na from
 * kbase / vbase at row (rows ? rows[i] : i) * rstride (phase A), the others from k / v at position
 * wlo + i - na (phase B); keys past nkeys repeat the last one (their scores are masked). */
static inline void attn_slices_tile(__local float *kt, __local float *vt, int i0, int na, int nkeys,
                             __global const float *kbase, __global const float *vbase, __global const int *rows,
                             int rstride, __global const float *k, __global const float *v, int wlo, int ks, int lid) {
    for (int e = lid; e < TK * DH; e += NW) {
        const int j = e / DH, d = e - j * DH, i = min(i0 + j, nkeys - 1);
        const int a = i < na, off = (a ? (rows ? rows[i] : i) * rstride : (wlo + i - na) * ks) + d;
        kt[j * DHP + d] = (a ? kbase : k)[off];
        vt[j * DHP + d] = (a ? vbase : v)[off];
    }
}

/* Step 3 for work-item (qi, sl): the online-softmax update with the tile's scores (masked ones are
 * exactly ATTN_NEG and get probability 0, so an all-masked tile before any key adds nothing). */
static inline void attn_slices_update(__local const float *sc, __local const float *vt, int qi, int sl, float *m, float *l,
                               float *acc) {
    float mt = *m;
    for (int j = 0; j < TK; j++) mt = fmax(mt, sc[qi * TK + j]);
    const float corr = exp(*m - mt);
    for (int i = 0; i < DHS; i++) acc[i] *= corr;
    float ls = 0.0f;
    /* not unrolled: clang otherwise hoists the TK x DHS value loads (gfx90a, DH = 128: 172 VGPRs, 64 so) */
#pragma unroll 1
    for (int j = 0; j < TK; j++) {
        const float x = sc[qi * TK + j], p = x > ATTN_NEG ? exp(x - mt) : 0.0f;
        ls += p;
        for (int i = 0; i < DHS; i++) acc[i] = fma(p, vt[j * DHP + sl + DS * i], acc[i]);
    }
    *l = *l * corr + ls;
    *m = mt;
}

__kernel __attribute__((reqd_work_group_size(NW, 1, 1)))
void attn_prefill_slices(__global const float *q, int qo, __global const float *k, int ko,
                         __global const float *v, int vo, __global float *out, int oo,
                         __global const int *bnd, int bo, int nbnd, int T, int H, int Hkv, int mode, int window,
                         float scale, __global const float *kc, int kco, __global const float *vc, int vco,
                         int compact) {
    const int lid = get_local_id(0), sl = lid % DS, qi = lid / DS;
    const int t0 = get_group_id(0) * BQ;
    const int h = get_global_id(1), b = get_global_id(2);
    const int kvh = h / (H / Hkv);
    const int qs_ = H * DH, ks = Hkv * DH;
    bnd += bo;
    k += ko + b * T * ks + kvh * DH;
    v += vo + b * T * ks + kvh * DH;
    __local float qs[BQ * DHP], kt[TK * DHP], vt[TK * DHP], sc[BQ * TK];
    /* the block's queries, scaled; rows past T repeat the last query and are never stored */
    for (int e = lid; e < BQ * DH; e += NW) {
        const int r = e / DH, d = e - r * DH;
        qs[r * DHP + d] = q[qo + (b * T + min(t0 + r, T - 1)) * qs_ + h * DH + d] * scale;
    }
    float acc[DHS];
    for (int i = 0; i < DHS; i++) acc[i] = 0.0f;
    float m = ATTN_NEG, l = 0.0f;

    /* Phase A (keys every query of the block sees: attn_prefill's, boundary rows through bnd or the
     * compact copy), then phase B (the window range [wlo, whi), masked per query), as one walk. */
    const int wlo = mode == ATTN_CAUSAL ? t0 : max(0, t0 - window);
    const int na = mode == ATTN_CAUSAL ? t0
                 : mode == ATTN_COMPRESSED ? atb_count_below(bnd, nbnd, wlo) : 0;
    const int whi = min(T, t0 + BQ), nkeys = na + whi - wlo;
    const int lwin = mode == ATTN_CAUSAL ? T : window;
    const int nb_b = mode == ATTN_COMPRESSED ? nbnd : 0;
    __global const float *kbase = k, *vbase = v;
    __global const int *rows = mode == ATTN_COMPRESSED && !compact ? bnd : 0;
    int rstride = ks;
    if (mode == ATTN_COMPRESSED && compact) {
        kbase = kc + kco + (b * Hkv + kvh) * nbnd * DH;
        vbase = vc + vco + (b * Hkv + kvh) * nbnd * DH;
        rstride = DH;
    }
    for (int i0 = 0; i0 < nkeys; i0 += TK) {
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile is done with (and, first, qs is written) */
        attn_slices_tile(kt, vt, i0, na, nkeys, kbase, vbase, rows, rstride, k, v, wlo, ks, lid);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int e = lid; e < BQ * TK; e += NW) {
            const int r = e / TK, j = e - r * TK, i = i0 + j, t = min(t0 + r, T - 1);
            float x = ATTN_NEG;
            if (attn_walk_sees(i, na, nkeys, wlo + i - na, t, lwin, bnd, nb_b)) {
                x = 0.0f;
                for (int d = 0; d < DH; d++) x = fma(qs[r * DHP + d], kt[j * DHP + d], x);
            }
            sc[e] = x;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        attn_slices_update(sc, vt, qi, sl, &m, &l, acc);
    }

    if (t0 + qi < T) {
        const float inv = 1.0f / l; /* l >= 1: every query sees itself */
        __global float *op = out + oo + (b * T + t0 + qi) * qs_ + h * DH + sl;
        for (int i = 0; i < DHS; i++) op[DS * i] = acc[i] * inv;
    }
}
#endif

/* Dense causal prefill with the keys along the vector lanes (CPUs; -DRQ=<queries per work-item>,
 * DH % 8 == 0). A work-item takes RQ consecutive queries of one head and walks the keys in tiles of
 * 16: the tile's scores for all RQ queries come from 2 x DH float8 loads of the transposed keys
 * kt [B, Hkv, DH, Tp] (attn_transpose_k; Tp a multiple of 16, zeros past T), each load shared by the
 * RQ queries; then an online-softmax update per query and P.V with the value rows as float8 along
 * the head dim. One query per work-item (attn_prefill) re-reads every key for each query and
 * reduces each score across lanes; here the RQ x 16 scores need no reduction and each key row is
 * read once per RQ queries (1.38x attn_prefill at T = 2048 on AVX2, 1.22x at 512: docs/benchmarks.md). Masked scores (key s > query t) get probability 0; rows past T compute
 * a copy of the last query and are never stored. No barriers: a work-item past T returns.
 * Global (ceil(ceil(T / RQ) / 8) * 8, H, B), local (8, 1, 1) or what the device allows. */
#ifdef RQ
#define DV8 (DH / 8)
__kernel void attn_causal_lanes(__global const float *q, int qo, __global const float *kt,
                                __global const float *v, int vo, __global float *out, int oo,
                                int T, int Tp, int H, int Hkv, float scale) {
    const int t0 = get_global_id(0) * RQ, h = get_global_id(1), b = get_global_id(2);
    if (t0 >= T) return;
    const int kvh = h / (H / Hkv), qs = H * DH, ks = Hkv * DH;
    __global const float *kh = kt + (b * Hkv + kvh) * DH * Tp;
    __global const float *vh = v + vo + b * T * ks + kvh * DH;
    float qv[RQ][DH], m[RQ], l[RQ];
    float8 acc[RQ][DV8];
    for (int r = 0; r < RQ; r++) {
        __global const float *qp = q + qo + (b * T + min(t0 + r, T - 1)) * qs + h * DH;
        for (int d = 0; d < DH; d++) qv[r][d] = qp[d] * scale;
        m[r] = ATTN_NEG;
        l[r] = 0.0f;
        for (int c = 0; c < DV8; c++) acc[r][c] = (float8)(0.0f);
    }
    const int kend = min(T, t0 + RQ); /* the last query's keys: 0 .. t0 + RQ - 1 */
    const int8 lane = (int8)(0, 1, 2, 3, 4, 5, 6, 7);
    for (int s0 = 0; s0 < kend; s0 += 16) {
        float8 sa[RQ], sb[RQ];
        for (int r = 0; r < RQ; r++) sa[r] = sb[r] = (float8)(0.0f);
        for (int d = 0; d < DH; d++) {
            float8 ka = vload8(0, kh + d * Tp + s0), kb = vload8(0, kh + d * Tp + s0 + 8);
            for (int r = 0; r < RQ; r++) {
                sa[r] = fma((float8)(qv[r][d]), ka, sa[r]);
                sb[r] = fma((float8)(qv[r][d]), kb, sb[r]);
            }
        }
        float p[RQ][16];
        const int8 ia = lane + s0, ib = ia + 8;
        for (int r = 0; r < RQ; r++) {
            const int8 t = (int8)(t0 + r);
            float8 xa = ia <= t ? sa[r] : (float8)(ATTN_NEG), xb = ib <= t ? sb[r] : (float8)(ATTN_NEG);
            float8 mx = fmax(xa, xb);
            float4 m4 = fmax(mx.lo, mx.hi);
            float mt = fmax(m[r], fmax(fmax(m4.x, m4.y), fmax(m4.z, m4.w)));
            float corr = exp(m[r] - mt);
            float8 pa = ia <= t ? exp(xa - (float8)(mt)) : (float8)(0.0f);
            float8 pb = ib <= t ? exp(xb - (float8)(mt)) : (float8)(0.0f);
            l[r] = l[r] * corr + atb_hsum8(pa + pb);
            m[r] = mt;
            vstore8(pa, 0, p[r]);
            vstore8(pb, 1, p[r]);
            for (int c = 0; c < DV8; c++) acc[r][c] *= corr;
        }
        const int jn = min(16, kend - s0);
        for (int c = 0; c < DV8; c++) {
            float8 a[RQ];
            for (int r = 0; r < RQ; r++) a[r] = acc[r][c];
            for (int j = 0; j < jn; j++) {
                float8 vv = vload8(c, vh + (s0 + j) * ks);
                for (int r = 0; r < RQ; r++) a[r] = fma((float8)(p[r][j]), vv, a[r]);
            }
            for (int r = 0; r < RQ; r++) acc[r][c] = a[r];
        }
    }
    for (int r = 0; r < RQ && t0 + r < T; r++) {
        /* l >= 1: every query sees key 0 .. itself, the running max contributing exp(0) */
        float inv = 1.0f / l[r];
        __global float *op = out + oo + (b * T + t0 + r) * qs + h * DH;
        for (int c = 0; c < DV8; c++) vstore8(acc[r][c] * inv, c, op);
    }
}
#endif

/* kt[b, h, d, s] = k[b, s, h * DH + d] for s < T, 0 for T <= s < Tp: the keys of attn_causal_lanes.
 * Global (Tp, DH, B * Hkv). */
__kernel void attn_transpose_k(__global float *kt, __global const float *k, int ko, int T, int Tp, int Hkv) {
    const int s = get_global_id(0), d = get_global_id(1), bh = get_global_id(2);
    if (s >= Tp || d >= DH) return; /* the launch pads both to its work-group */
    const int b = bh / Hkv, h = bh % Hkv;
    kt[(bh * DH + d) * Tp + s] = s < T ? k[ko + (b * T + s) * Hkv * DH + h * DH + d] : 0.0f;
}

/* Decode: one query per sequence at position pos[b]. kb/vb hold each sequence's stored keys (bs
 * floats apart), head kvh's row e at kvh * hs + e * es ([B,cap,Hkv*DH]: hs = DH, es = Hkv*DH;
 * head-major [B,Hkv,cap,DH]: hs = cap*DH, es = DH, so a head's keys are one contiguous stream), with
 * positions bpos [B,cap] (increasing) and counts nb [B]; kr/vr [B,R,Hkv*DH] holding position p in slot
 * p % R. The store's elements are KV_T (float, or half with -DKV_F16=1); the ring's are float. The query
 * sees ring positions max(0, pos-window)..pos and boundaries with
 * bpos < pos - window. With S = 1, WG work-items per (sequence, head) split those keys into
 * contiguous runs with an online softmax each, then merge through __local (one barrier, outside every
 * loop) into out. With S > 1 (split-K, for devices that need more groups than sequences x heads),
 * S groups share a (sequence, head): group s takes the s-th of S contiguous runs of the keys and
 * writes its unnormalised accumulator, running max and sum to part [B, H, S, DH + 2] (a group with
 * no key writes max ATTN_NEG and zeros); attn_decode_merge then combines them.
 * Global (WG, H * S, B), local (WG, 1, 1). */
#ifdef ATTN_DECODE
/* -DDECODE_SLICES=1: the head dims split over the group (GPUs: the above keeps a query and its
 * accumulator as 2 x DH private floats per work-item). Same keys, split-K parts and output; the query
 * goes to __local once (scaled) and the group walks its keys in tiles of WG: work-item lid takes key
 * e0 + lid's score (a dot product over DH with its key row, the store's elements KV_T, the ring's
 * float) into __local sc; then every work-item updates the running max and sum from sc (all compute
 * the same ones) and its DHW head dims d = lid + WG * i with the tile's value rows (consecutive lanes,
 * consecutive floats). Trip counts depend on the group only. */
#define DHW ((DH + WG - 1) / WG)
#if KV_F16
#define KV_AT(p, d) vload_half((d), (p))
#else
#define KV_AT(p, d) ((p)[d])
#endif
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void attn_decode(__global const float *q, int qo, __global const KV_T *kb, int kbo,
                 __global const KV_T *vb, int vbo, __global const int *bpos, int bpo,
                 __global const int *nbv, int nbo, __global const float *kr, int kro,
                 __global const float *vr, int vro, __global const int *posv, int poso,
                 __global float *out, int oo, int cap, int bs, int hs, int es, int R, int H, int Hkv,
                 int window, float scale, int S, __global float *part, int po) {
    const int lid = get_local_id(0);
    const int h = get_global_id(1) / S, split = get_global_id(1) % S, b = get_global_id(2);
    const int kvh = h / (H / Hkv);
    const int ks = Hkv * DH;
    const int pos = posv[poso + b];
    const int nb = clamp(nbv[nbo + b], 0, cap);      /* defensive: never read past the cache */
    const int plo = max(0, pos - window);
    /* Boundaries strictly before the window; the ones inside it are in the ring. */
    const int nvis = atb_count_below(bpos + bpo + b * cap, nb, plo);
    const int nring = min(pos - plo + 1, R);
    const int n = nvis + nring;
    kb += kbo + b * bs + kvh * hs;
    vb += vbo + b * bs + kvh * hs;
    kr += kro + b * R * ks + kvh * DH;
    vr += vro + b * R * ks + kvh * DH;
    const int per_s = (n + S - 1) / S, k0 = min(n, split * per_s), k1 = min(n, k0 + per_s); /* this group's */
    float m = ATTN_NEG, l = 0.0f;
#if defined(DECODE_SLICES)
    __local float qs[DH], sc[WG];
    for (int d = lid; d < DH; d += WG) qs[d] = q[qo + b * H * DH + h * DH + d] * scale;
    float acc[DHW];
    for (int i = 0; i < DHW; i++) acc[i] = 0.0f;
    for (int e0 = k0; e0 < k1; e0 += WG) {
        barrier(CLK_LOCAL_MEM_FENCE); /* sc is free again (and, first, qs is written) */
        const int e = e0 + lid;
        float x = ATTN_NEG;
        if (e < k1) {
            x = 0.0f;
            if (e < nvis) {
                __global const KV_T *kp = kb + e * es;
                for (int d = 0; d < DH; d++) x = fma(qs[d], KV_AT(kp, d), x);
            } else {
                __global const float *kp = kr + ((plo + e - nvis) % R) * ks;
                for (int d = 0; d < DH; d++) x = fma(qs[d], kp[d], x);
            }
        }
        sc[lid] = x;
        barrier(CLK_LOCAL_MEM_FENCE);
        const int jn = min(WG, k1 - e0);
        float mt = m;
        for (int j = 0; j < jn; j++) mt = fmax(mt, sc[j]);
        const float corr = exp(m - mt);
        for (int i = 0; i < DHW; i++) acc[i] *= corr;
        float ls = 0.0f;
        for (int j = 0; j < jn; j++) {
            const float p = exp(sc[j] - mt);
            const int ej = e0 + j;
            ls += p;
            if (ej < nvis) { /* the same branch for the whole group */
                __global const KV_T *vp = vb + ej * es;
                for (int i = 0; i < DHW; i++)
                    if (lid + WG * i < DH) acc[i] = fma(p, KV_AT(vp, lid + WG * i), acc[i]);
            } else {
                __global const float *vp = vr + ((plo + ej - nvis) % R) * ks;
                for (int i = 0; i < DHW; i++)
                    if (lid + WG * i < DH) acc[i] = fma(p, vp[lid + WG * i], acc[i]);
            }
        }
        l = l * corr + ls;
        m = mt;
    }
    __global float *pp = part + po + ((b * H + h) * S + split) * (DH + 2);
    const float inv = S == 1 ? 1.0f / l : 1.0f; /* split: the merge normalises */
    for (int i = 0; i < DHW; i++) {
        const int d = lid + WG * i;
        if (d >= DH) break;
        if (S == 1) out[oo + b * H * DH + h * DH + d] = acc[i] * inv;
        else pp[d] = acc[i];
    }
    if (S > 1 && lid == 0) pp[DH] = m, pp[DH + 1] = l;
#else
    __global const float *qp = q + qo + b * H * DH + h * DH;

    vec qv[DV], acc[DV];
    for (int c = 0; c < DV; c++) {
        qv[c] = VLOAD(qp + c * VW) * scale;
        acc[c] = (vec)(0.0f);
    }
    const int per = (k1 - k0 + WG - 1) / WG;
    const int lo = min(k1, k0 + lid * per), hi = min(k1, lo + per);
    int ok[TK];
    /* this work-item's keys [lo, hi): the stored ones [lo, shi), then the ring's */
    const int shi = min(hi, nvis);
    __global const KV_T *sk[TK], *sv[TK];
    for (int e0 = lo; e0 < shi; e0 += TK) {
        for (int j = 0; j < TK; j++) {
            int e = min(e0 + j, shi - 1);
            ok[j] = e0 + j < shi;
            sk[j] = kb + e * es;
            sv[j] = vb + e * es;
        }
#define KPTR_S(j) sk[j]
#define VPTR_S(j) sv[j]
        ATTN_TILE_UPDATE_L(KPTR_S, VPTR_S, KV_LOAD);
#undef KPTR_S
#undef VPTR_S
    }
    __global const float *kp[TK], *vp[TK];
    for (int e0 = max(lo, nvis); e0 < hi; e0 += TK) {
        for (int j = 0; j < TK; j++) {
            int slot = (plo + min(e0 + j, hi - 1) - nvis) % R;
            ok[j] = e0 + j < hi;
            kp[j] = kr + slot * ks;
            vp[j] = vr + slot * ks;
        }
#define KPTR_D(j) kp[j]
#define VPTR_D(j) vp[j]
        ATTN_TILE_UPDATE(KPTR_D, VPTR_D);
#undef KPTR_D
#undef VPTR_D
    }

    __local float lm[WG], ll[WG], lacc[WG * DH];
    lm[lid] = m;
    ll[lid] = l;
    for (int c = 0; c < DV; c++) {
#if VW == 1
        lacc[lid * DH + c] = acc[c];
#else
        VSTORE(acc[c], lacc + lid * DH + c * VW);
#endif
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    float M = ATTN_NEG;
    for (int w = 0; w < WG; w++) M = fmax(M, lm[w]);
    barrier(CLK_LOCAL_MEM_FENCE); /* all have read lm: each item's entry becomes its scale e^(m - M), */
    lm[lid] = exp(lm[lid] - M);   /* one exp per item, not one per head dim and item */
    barrier(CLK_LOCAL_MEM_FENCE);
    float L = 0.0f;
    for (int w = 0; w < WG; w++) L += ll[w] * lm[w];
    __global float *pp = part + po + ((b * H + h) * S + split) * (DH + 2);
    const float inv = S == 1 ? 1.0f / L : 1.0f; /* split: the merge normalises */
    for (int d = lid; d < DH; d += WG) {
        float a = 0.0f;
        for (int w = 0; w < WG; w++) a += lacc[w * DH + d] * lm[w];
        if (S == 1) out[oo + b * H * DH + h * DH + d] = a * inv;
        else pp[d] = a;
    }
    if (S > 1 && lid == 0) pp[DH] = M, pp[DH + 1] = L;
#endif
}
#endif /* ATTN_DECODE */

/* Split-K decode, second pass: out[b, h*DH + d] = sum_s acc_s[d] e^(m_s - M) / sum_s l_s e^(m_s - M)
 * over the S partial results of attn_decode (M: their largest max; a group without keys has max
 * ATTN_NEG and adds nothing). Global (DH, H, B). */
__kernel void attn_decode_merge(__global const float *part, int po, int S, int H, __global float *out, int oo) {
    const int d = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
    if (d >= DH) return; /* the launch pads DH to its work-group */
    __global const float *pp = part + po + (b * H + h) * S * (DH + 2);
    float M = ATTN_NEG;
    for (int s = 0; s < S; s++) M = fmax(M, pp[s * (DH + 2) + DH]);
    float L = 0.0f, a = 0.0f;
    for (int s = 0; s < S; s++) {
        float w = exp(pp[s * (DH + 2) + DH] - M);
        L += pp[s * (DH + 2) + DH + 1] * w;
        a += pp[s * (DH + 2) + d] * w;
    }
    out[oo + b * H * DH + h * DH + d] = a / L;
}

/* out[b, i, :] = src[b, idx[i], :]; src [B,T,C], idx [n], out [B,n,C]. Out-of-range indices are
 * clamped into [0, T) so a bad list can never read outside src. Global B*n*C. */
__kernel void attn_gather_rows(__global float *out, int oo, __global const float *src, int so,
                               __global const int *idx, int io, int n, int T, int C, int total) {
    int i = get_global_id(0);
    if (i >= total) return;
    int c = i % C, r = (i / C) % n, b = i / (C * n);
    int row = clamp(idx[io + r], 0, T - 1);
    out[oo + i] = src[so + (b * T + row) * C + c];
}

/* Head-major copy of the boundary rows: out[b, h, i, :] = src[b, bnd[i], h*DH : (h+1)*DH];
 * src [B,T,Hkv*DH], out [B,Hkv,nb,DH]. Global B*Hkv*nb*DH. */
__kernel void attn_gather_heads(__global float *out, __global const float *src, int so,
                                __global const int *bnd, int bo, int nb, int T, int Hkv, int total) {
    int i = get_global_id(0);
    if (i >= total) return;
    int d = i % DH, r = (i / DH) % nb, h = (i / (DH * nb)) % Hkv, b = i / (DH * nb * Hkv);
    out[i] = src[so + (b * T + bnd[bo + r]) * Hkv * DH + h * DH + d];
}

/* Decode, one step: k, v [B, C] go to the ring (slot pos % R) and, where store[b] >= 0, to the
 * store's row store[b] (laid out as for attn_decode: sequence b at b * bs, head c / dh at
 * (c / dh) * hs, row at row * es; KV_T elements, rounded to the nearest half with -DKV_F16=1) with
 * their position; nb[b] becomes store[b] + 1. Work-item (b, c) writes element c; the c == 0 ones also
 * write the position and the count. Global B*C. */
__kernel void kv_append(__global const float *k, int ko, __global const float *v, int vo,
                        __global const int *pos, int po, __global const int *store, int so,
                        __global float *kr, int kro, __global float *vr, int vro, int R,
                        __global KV_T *kb, int kbo, __global KV_T *vb, int vbo, int cap, int bs, int hs, int es,
                        int dh, __global int *bpos, int bpo, __global int *nb, int nbo, int C, int total) {
    int i = get_global_id(0);
    if (i >= total) return;
    int c = i % C, b = i / C, p = pos[po + b], row = store[so + b];
    float kv = k[ko + i], vv = v[vo + i];
    int slot = (b * R + p % R) * C + c;
    kr[kro + slot] = kv;
    vr[vro + slot] = vv;
    if (row < 0 || row >= cap) return;
    int at = b * bs + (c / dh) * hs + row * es + c % dh;
#if KV_F16
    vstore_half_rte(kv, kbo + at, kb);
    vstore_half_rte(vv, vbo + at, vb);
#else
    kb[kbo + at] = kv;
    vb[vbo + at] = vv;
#endif
    if (c == 0) {
        bpos[bpo + b * cap + row] = p;
        nb[nbo + b] = row + 1;
    }
}

/* Decode, one step: RoPE of q [B, H*DQ] and k [B, Hkv*DQ] at positions pos (in place, as rope4_f32 with
 * T = 1), then kv_append of k, v (the store's heads sdh floats wide: DQ, or Hkv*DQ for a row-major
 * store). Work-item (b, jq) takes the 8 floats at 8*jq of every head of q, k and v (DQ = 8 * quads). */
__kernel void kv_append_rope(__global float *q, int qo, int H, __global float *k, int ko, __global const float *v,
                             int vo, __global const int *pos, int po, __global const int *store, int so,
                             __global float *kr, int kro, __global float *vr, int vro, int R,
                             __global KV_T *kb, int kbo, __global KV_T *vb, int vbo, int cap, int bs, int hs,
                             int es, int sdh, __global int *bpos, int bpo, __global int *nb, int nbo, int Hkv,
                             int quads, float log2_theta, float log2_pi, int total) {
    int i = get_global_id(0);
    if (i >= total) return;
    int jq = i % quads, b = i / quads, p = pos[po + b], row = store[so + b], dq = 8 * quads, C = Hkv * dq;
    float4 c, s;
    atb_rope_angles4((float)p, jq, quads, log2_theta, log2_pi, 1.0f, &c, &s);
    __global float *qp = q + qo + b * H * dq + 8 * jq;
    for (int h = 0; h < H; h++, qp += dq) vstore8(atb_rope8(vload8(0, qp), c, s), 0, qp);
    int stored = row >= 0 && row < cap;
    for (int h = 0; h < Hkv; h++) {
        int col = h * dq + 8 * jq, slot = (b * R + p % R) * C + col;
        __global float *kp = k + ko + b * C + col;
        float8 kv = atb_rope8(vload8(0, kp), c, s), vv = vload8(0, v + vo + b * C + col);
        vstore8(kv, 0, kp);
        vstore8(kv, 0, kr + kro + slot);
        vstore8(vv, 0, vr + vro + slot);
        if (!stored) continue;
        int at = b * bs + (col / sdh) * hs + row * es + col % sdh;
#if KV_F16
        vstore_half8_rte(kv, 0, kb + kbo + at);
        vstore_half8_rte(vv, 0, vb + vbo + at);
#else
        vstore8(kv, 0, kb + kbo + at);
        vstore8(vv, 0, vb + vbo + at);
#endif
    }
    if (jq == 0 && stored) {
        bpos[bpo + b * cap + row] = p;
        nb[nbo + b] = row + 1;
    }
}
