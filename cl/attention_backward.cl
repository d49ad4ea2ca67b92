/* attention_backward.cl: gradients of the causal / sliding / compressed (Attamba) prefill attention
 * of attention.cl, f32, flash-style: only the (query, key) pairs the forward visits, no T x T
 * matrix, no atomics (every output row has exactly one writer, so results are deterministic).
 * Options: -DDH=<head dim> -DBQ=<queries per group> -DTK=<keys per tile>        (attn_bwd_dq)
 *          -DBK=<keys per group>    -DTQ=<queries per tile>                     (attn_bwd_dkv)
 *          -DUSE_LOCAL=0|1 (tiles through __local), -DPER_ITEM=0|1 (see below).
 *
 * attn_bwd_dq, query-centred, the forward's block structure (phase A: keys every query of the
 * block sees; phase B: the block's window range masked per query). With D = dout . out known up
 * front, dq_t = scale / l * sum_s exp(sc_s - m) (dout . v_s - D) k_s is an online-softmax sum like
 * the forward's, so one pass gives dq and the row log-sum-exp lse = m + log(l) (and D), which it
 * stores for the second kernel.
 *
 * attn_bwd_dkv, key-centred: a group owns BK keys of one kv head and walks the queries that see
 * them, for every query head of the kv head (GQA sums there), recomputing P = exp(sc - lse):
 *   dv_s = sum_t P dout_t,  dk_s = scale * sum_t P (dout_t . v_s - D_t) q_t.
 * It runs in two launches with disjoint (query, key) pairs:
 *   near: BK consecutive keys, queries t in [s0, s0 + BK + lw) masked by s <= t <= s + lw, where
 *         lw = window (CAUSAL: T, so that is every later query); overwrites dk, dv;
 *   far:  (COMPRESSED) BK consecutive boundaries b_i, queries t in [b_i0 + L + 1, T) masked by
 *         t - b_i > L; adds to the rows the near launch wrote (the in-order queue orders them).
 * So each key's queries are visited once, plus the block's masked triangle, as in the forward.
 * Every loop trip count depends on the group and the data only, never on the work-item, so the
 * barriers of the __local variant sit in uniform control flow.
 *
 * PER_ITEM (the CPU default): each work-item walks exactly its own pairs, in loops whose lengths
 * differ per work-item (so no barriers, no __local). On a CPU a work-item runs as its own thread of
 * explicit vector code, so nothing is lost to divergence and the masked triangles go away:
 *   dq:  query t walks the boundaries before t - L (COMPRESSED), then every key of [t - L, t]
 *        (CAUSAL: [0, t]), unmasked;
 *   dkv: key s walks queries [s, s + lw], or [s, T) when s is a boundary (its near and far queries
 *        together), one launch that overwrites dk, dv: no far launch. */
#ifndef DH
#define DH 64
#endif
#ifndef BQ
#define BQ 16
#endif
#ifndef TK
#define TK 8
#endif
#ifndef BK
#define BK 16
#endif
#ifndef TQ
#define TQ 8
#endif
#ifndef USE_LOCAL
#define USE_LOCAL 0
#endif
#ifndef PER_ITEM
#define PER_ITEM 0
#endif
#if PER_ITEM && USE_LOCAL
#error "PER_ITEM walks differ per work-item: no barriers, so no __local tiles"
#endif

/* The modes, ATTN_NEG and the forward's key-tile walks (attn_tile_all, attn_tile_window) come from
 * common.cl. */

/* Head-dim vectors, as in the forward: each work-item holds its rows (q, dout and dq's accumulator;
 * k, v and the dk, dv accumulators) as DV vectors of VW floats. PoCL then needs no vectorisation
 * across work-items (which it does not manage on these loops), GPUs just see registers. */
#ifndef VW /* the host passes attn_vec_width(); without it, the widest that divides DH */
#if DH % 16 == 0
#define VW 16
#elif DH % 8 == 0
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
#define HSUM(x) bwd_hsum4(((x).lo.lo + (x).lo.hi) + ((x).hi.lo + (x).hi.hi))
#elif VW == 8
typedef float8 vec;
#define VLOAD(p) vload8(0, (p))
#define VSTORE(x, p) vstore8((x), 0, (p))
#define VFMA(a, b, c) fma((a), (b), (c))
#define HSUM(x) bwd_hsum4((x).lo + (x).hi)
#elif VW == 4
typedef float4 vec;
#define VLOAD(p) vload4(0, (p))
#define VSTORE(x, p) vstore4((x), 0, (p))
#define VFMA(a, b, c) fma((a), (b), (c))
#define HSUM(x) bwd_hsum4(x)
#else
typedef float vec;
#define VLOAD(p) (*(p))
#define VFMA(a, b, c) fma((a), (b), (c))
#define VSTORE(x, p) (*(p) = (x))
#define HSUM(x) (x)
#endif
static inline float bwd_hsum4(float4 x) { return (x.x + x.y) + (x.z + x.w); }

/* A tile's scores as one vector (so exp runs vectorised: scalar exp dominated the loops). The
 * vector is the tile size rounded up to 2, 4, 8 or 16 lanes; lanes beyond the tile are masked. */
#define BWD_CAT_(a, b) a##b
#define BWD_CAT(a, b) BWD_CAT_(a, b)
#if TK <= 2
#define KW 2
#elif TK <= 4
#define KW 4
#elif TK <= 8
#define KW 8
#else
#define KW 16
#endif
#if TQ <= 2
#define QW 2
#elif TQ <= 4
#define QW 4
#elif TQ <= 8
#define QW 8
#else
#define QW 16
#endif
typedef BWD_CAT(float, KW) ktvec; /* dq pass: one lane per key of the tile */
typedef BWD_CAT(int, KW) ktmask;
typedef BWD_CAT(float, QW) qtvec; /* dk/dv pass: one lane per query of the tile */
typedef BWD_CAT(int, QW) qtmask;

/* ---------------------------------------------------------------- dq (query-centred) */

/* One tile of TK keys for one query: scores and dout . v, then the online rescale of (m, l, acc).
 * KPTR(j) / VPTR(j) point at key / value row j of the tile; ok[j]: the query sees it. Masked
 * scores become ATTN_NEG before the max and get probability 0 explicitly. */
#define BWD_DQ_TILE(KPTR, VPTR)                                               \
    do {                                                                      \
        ktvec sc = (ktvec)(0.0f), dp = (ktvec)(0.0f);                         \
        ktmask okv = (ktmask)(0);                                             \
        for (int j = 0; j < TK; j++) {                                        \
            vec s_ = qv[0] * VLOAD(KPTR(j)), g_ = gv[0] * VLOAD(VPTR(j));     \
            for (int c = 1; c < DV; c++) {                                    \
                s_ = VFMA(qv[c], VLOAD(KPTR(j) + c * VW), s_);                 \
                g_ = VFMA(gv[c], VLOAD(VPTR(j) + c * VW), g_);                 \
            }                                                                 \
            sc[j] = HSUM(s_);                                                 \
            dp[j] = HSUM(g_);                                                 \
            okv[j] = ok[j] ? -1 : 0;                                          \
        }                                                                     \
        sc = okv ? sc : (ktvec)(ATTN_NEG);                                    \
        float mt = m;                                                         \
        for (int j = 0; j < TK; j++) mt = fmax(mt, sc[j]);                    \
        float corr = exp(m - mt);                                             \
        ktvec p = exp(sc - (ktvec)(mt));                                      \
        p = okv ? p : (ktvec)(0.0f); /* all-masked tile before any key: exp(0) */ \
        float ls = 0.0f;                                                      \
        for (int j = 0; j < TK; j++) ls += p[j];                              \
        ktvec w = p * (dp - (ktvec)(dd));                                     \
        l = l * corr + ls;                                                    \
        m = mt;                                                               \
        for (int c = 0; c < DV; c++) {                                        \
            vec a = acc[c] * corr;                                            \
            for (int j = 0; j < TK; j++) a = VFMA((vec)(w[j]), VLOAD(KPTR(j) + c * VW), a); \
            acc[c] = a;                                                       \
        }                                                                     \
    } while (0)

#if USE_LOCAL
#define BWD_LOAD_KV() ATTN_LOCAL_TILE(kt, vt, k, v, krow, TK, DH, lid, BQ)
#define BWD_KPTR(j) (kt + (j) * DH)
#define BWD_VPTR(j) (vt + (j) * DH)
#else
#define BWD_LOAD_KV() do { } while (0)
#define BWD_KPTR(j) (k + krow[j])
#define BWD_VPTR(j) (v + krow[j])
#endif

#ifndef DS
/* q, out, dout, dq [B,T,H*DH]; k, v [B,T,Hkv*DH]; lse, dsum [B,H,T] (written: row log-sum-exp of
 * the scaled scores, and D = dout . out). bnd: nbnd sorted boundaries. Global (ceil(T/BQ)*BQ, H, B),
 * local (BQ, 1, 1). */
__kernel __attribute__((reqd_work_group_size(BQ, 1, 1)))
void attn_bwd_dq(__global const float *q, int qo, __global const float *k, int ko, __global const float *v, int vo,
                 __global const float *out, int oo, __global const float *dout, int go, __global float *dq, int dqo,
                 __global float *lse, __global float *dsum, __global const int *bnd, int bo, int nbnd, int T, int H,
                 int Hkv, int mode, int window, float scale) {
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
    const int row = (b * T + t) * qs + h * DH;
#if USE_LOCAL
    __local float kt[TK * DH], vt[TK * DH];
#endif

    vec qv[DV], gv[DV], acc[DV];
    vec dd_ = (vec)(0.0f);
    for (int c = 0; c < DV; c++) {
        qv[c] = VLOAD(q + qo + row + c * VW) * scale;
        gv[c] = VLOAD(dout + go + row + c * VW);
        dd_ = VFMA(gv[c], VLOAD(out + oo + row + c * VW), dd_);
        acc[c] = (vec)(0.0f);
    }
    const float dd = HSUM(dd_);
    float m = ATTN_NEG, l = 0.0f;
    int krow[TK], ok[TK];

#if PER_ITEM
    if (t0 + lid >= T) return; /* no barrier follows */
    /* The boundaries before this query's window, then the window [wlo, t], all visible. */
    const int wlo = mode == ATTN_CAUSAL ? 0 : max(0, t - window);
    const int na = mode == ATTN_COMPRESSED ? atb_count_below(bnd, nbnd, wlo) : 0;
    for (int i0 = 0; i0 < na; i0 += TK) {
        attn_tile_all(krow, ok, TK, i0, na, 1, bnd, ks);
        BWD_DQ_TILE(BWD_KPTR, BWD_VPTR);
    }
    for (int s0 = wlo; s0 <= t; s0 += TK) {
        for (int j = 0; j < TK; j++) {
            krow[j] = min(s0 + j, t) * ks;
            ok[j] = s0 + j <= t;
        }
        BWD_DQ_TILE(BWD_KPTR, BWD_VPTR);
    }
#else
    /* Phase A: keys every query of the block sees. */
    const int wlo = mode == ATTN_CAUSAL ? t0 : max(0, t0 - window);
    const int na = mode == ATTN_CAUSAL ? t0 : mode == ATTN_COMPRESSED ? atb_count_below(bnd, nbnd, wlo) : 0;
    const int indirect = mode == ATTN_COMPRESSED;
    for (int i0 = 0; i0 < na; i0 += TK) {
        attn_tile_all(krow, ok, TK, i0, na, indirect, bnd, ks);
        BWD_LOAD_KV();
        BWD_DQ_TILE(BWD_KPTR, BWD_VPTR);
    }

    /* Phase B: the block's window range, masked per query; bi walks the boundaries >= wlo. */
    const int whi = min(T, t0 + BQ);
    const int lwin = mode == ATTN_CAUSAL ? T : window;
    int bi = mode == ATTN_COMPRESSED ? na : nbnd;
    for (int s0 = wlo; s0 < whi; s0 += TK) {
        attn_tile_window(krow, ok, TK, s0, whi, t, lwin, bnd, nbnd, &bi, ks);
        BWD_LOAD_KV();
        BWD_DQ_TILE(BWD_KPTR, BWD_VPTR);
    }
#endif

    if (t0 + lid < T) {
        /* l >= 1: every query sees itself, the key at the running max contributing exp(0). */
        float f = scale / l;
        for (int c = 0; c < DV; c++) VSTORE(acc[c] * f, dq + dqo + row + c * VW);
        lse[(b * H + h) * T + t] = m + log(l);
        dsum[(b * H + h) * T + t] = dd;
    }
}

/* ---------------------------------------------------------------- dk, dv (key-centred) */

/* One tile of TQ queries for one key: P and dS per query (as vectors over the tile), then
 * dv += P dout, dk += dS q. QPTR(j) / GPTR(j) point at q / dout of query j of the tile, LSE(j) /
 * DS(j) are its lse and D; ok[j]: the query sees this work-item's key. */
#define BWD_DKV_TILE(QPTR, GPTR, LSE, DS)                                     \
    do {                                                                      \
        qtvec sc = (qtvec)(0.0f), dp = (qtvec)(0.0f), lv = (qtvec)(0.0f), dv_ = (qtvec)(0.0f); \
        qtmask okv = (qtmask)(0);                                             \
        for (int j = 0; j < TQ; j++) {                                        \
            vec s_ = kv[0] * VLOAD(QPTR(j)), g_ = vv[0] * VLOAD(GPTR(j));     \
            for (int c = 1; c < DV; c++) {                                    \
                s_ = VFMA(kv[c], VLOAD(QPTR(j) + c * VW), s_);                 \
                g_ = VFMA(vv[c], VLOAD(GPTR(j) + c * VW), g_);                 \
            }                                                                 \
            sc[j] = HSUM(s_);                                                 \
            dp[j] = HSUM(g_);                                                 \
            lv[j] = LSE(j);                                                   \
            dv_[j] = DS(j);                                                   \
            okv[j] = ok[j] ? -1 : 0;                                          \
        }                                                                     \
        qtvec p = exp(sc * scale - lv);                                       \
        p = okv ? p : (qtvec)(0.0f);                                          \
        qtvec ds = p * (dp - dv_);                                            \
        for (int c = 0; c < DV; c++) {                                        \
            vec a = gvacc[c], b_ = gkacc[c];                                  \
            for (int j = 0; j < TQ; j++) {                                    \
                a = VFMA((vec)(p[j]), VLOAD(GPTR(j) + c * VW), a);             \
                b_ = VFMA((vec)(ds[j]), VLOAD(QPTR(j) + c * VW), b_);          \
            }                                                                 \
            gvacc[c] = a;                                                     \
            gkacc[c] = b_;                                                    \
        }                                                                     \
    } while (0)

#if USE_LOCAL
#define BWD_LOAD_QG()                                                         \
    do {                                                                      \
        barrier(CLK_LOCAL_MEM_FENCE);                                         \
        for (int e = lid; e < TQ * DH; e += BK) {                             \
            int j_ = e / DH, d_ = e - j_ * DH;                                \
            qt[e] = q[qrow[j_] + d_];                                         \
            gt[e] = dout[qrow[j_] + d_];                                      \
        }                                                                     \
        for (int j_ = lid; j_ < TQ; j_ += BK) {                               \
            lt[j_] = lse[srow[j_]];                                           \
            dt[j_] = dsum[srow[j_]];                                          \
        }                                                                     \
        barrier(CLK_LOCAL_MEM_FENCE);                                         \
    } while (0)
#define BWD_QPTR(j) (qt + (j) * DH)
#define BWD_GPTR(j) (gt + (j) * DH)
#define BWD_LSE(j) lt[j]
#define BWD_DS(j) dt[j]
#else
#define BWD_LOAD_QG() do { } while (0)
#define BWD_QPTR(j) (q + qrow[j])
#define BWD_GPTR(j) (dout + qrow[j])
#define BWD_LSE(j) lse[srow[j]]
#define BWD_DS(j) dsum[srow[j]]
#endif

/* q, dout [B,T,H*DH]; k, v, dk, dv [B,T,Hkv*DH]; lse, dsum [B,H,T] from attn_bwd_dq.
 * far = 0 (near): group g owns keys [g*BK, g*BK + BK); lw as above; overwrites dk, dv.
 * far = 1: group g owns boundaries bnd[g*BK .. g*BK + BK); adds to dk, dv.
 * PER_ITEM: only far = 0, and key g*BK + lid walks exactly its queries (see the top).
 * Global (ceil(n/BK)*BK, Hkv, B) with n = T (near) or nbnd (far), local (BK, 1, 1). */
__kernel __attribute__((reqd_work_group_size(BK, 1, 1)))
void attn_bwd_dkv(__global const float *q, int qo, __global const float *k, int ko, __global const float *v, int vo,
                  __global const float *dout, int go, __global const float *lse, __global const float *dsum,
                  __global float *dk, int dko, __global float *dv, int dvo, __global const int *bnd, int bo,
                  int nbnd, int T, int H, int Hkv, int far, int lw, float scale) {
    const int lid = get_local_id(0);
    const int g0 = get_group_id(0) * BK;
    const int kvh = get_global_id(1), b = get_global_id(2);
    const int grp = H / Hkv;
    const int qs = H * DH, ks = Hkv * DH;
    bnd += bo;
#if PER_ITEM
    if (g0 + lid >= T) return; /* no barrier follows */
    const int mine = 1, s = g0 + lid;
    const int ib = atb_count_below(bnd, nbnd, s);
    /* s + lw + 1 does not overflow: the host passes lw <= T. */
    const int qlo = s, qhi = ib < nbnd && bnd[ib] == s ? T : min(T, s + lw + 1);
#else
    /* Padding lanes work on a copy of the last key and never store it. */
    const int n = far ? nbnd : T;
    const int mine = g0 + lid < n;
    const int s = far ? bnd[min(g0 + lid, n - 1)] : min(g0 + lid, n - 1);
    /* Queries of the group: near [g0, g0 + BK + lw), far (bnd[g0] + lw, T); lw = L there. */
    const int qlo = far ? bnd[g0] + lw + 1 : g0;
    const int qhi = far ? T : min(T, g0 + BK + lw);
#endif
    const int krow = (b * T + s) * ks + kvh * DH;
    q += qo + b * T * qs;
    dout += go + b * T * qs;
#if USE_LOCAL
    __local float qt[TQ * DH], gt[TQ * DH], lt[TQ], dt[TQ];
#endif

    vec kv[DV], vv[DV], gkacc[DV], gvacc[DV];
    for (int c = 0; c < DV; c++) {
        kv[c] = VLOAD(k + ko + krow + c * VW);
        vv[c] = VLOAD(v + vo + krow + c * VW);
        gkacc[c] = (vec)(0.0f);
        gvacc[c] = (vec)(0.0f);
    }
    int qrow[TQ], srow[TQ], ok[TQ];
    for (int hh = 0; hh < grp; hh++) {
        const int h = kvh * grp + hh;
        for (int t0 = qlo; t0 < qhi; t0 += TQ) {
            for (int j = 0; j < TQ; j++) {
                int t = min(t0 + j, qhi - 1);
                qrow[j] = t * qs + h * DH;
                srow[j] = (b * H + h) * T + t;
#if PER_ITEM
                ok[j] = t0 + j < qhi;
#else
                ok[j] = t0 + j < qhi && (far ? t - s > lw : t >= s && t - s <= lw);
#endif
            }
            BWD_LOAD_QG();
            BWD_DKV_TILE(BWD_QPTR, BWD_GPTR, BWD_LSE, BWD_DS);
        }
    }
    if (mine)
        for (int c = 0; c < DV; c++) {
            /* far: the near launch's part of this boundary row comes first, in the same order always. */
            __global float *kp = dk + dko + krow + c * VW, *vp = dv + dvo + krow + c * VW;
            vec k0 = far ? VLOAD(kp) : (vec)(0.0f), v0 = far ? VLOAD(vp) : (vec)(0.0f);
            VSTORE(VFMA(gkacc[c], (vec)(scale), k0), kp);
            VSTORE(v0 + gvacc[c], vp);
        }
}
#else /* DS: the same two passes with each row's head dims split over DS work-items */

/* GPUs: the kernels above keep 3-4 rows of DH floats per work-item (dq: q, dout, the accumulator;
 * dkv: k, v and two accumulators), which spill at DH = 128 on gfx90a. Here a row belongs to DS
 * work-items, work-item (row r, slice sl) holding its accumulators' dims d = sl + DS * i; the rows
 * the dot products need sit in __local (rows DH + 1 floats apart: the dot loops' lanes read distinct
 * banks), and each tile's products go through __local: one dot product per (row, tile entry) pair
 * by the group's work-items in turn, then every work-item updates its dims. The same pairs, phases,
 * launches and masks as attn_bwd_dq / attn_bwd_dkv (not PER_ITEM); trip counts depend on the group
 * only. dq: local (BQ * DS); dkv: local (BK * DS). */
#define DHP (DH + 1)
#define DHS (DH / DS) /* the host picks DS dividing DH */

static inline float bwd_dot(__local const float *a, __local const float *b) {
    float s = 0.0f;
    for (int d = 0; d < DH; d++) s = fma(a[d], b[d], s);
    return s;
}

/* Copies n rows of DH floats, row j from src + rows[j] (rows[j] < 0: zeros), into dst (rows DHP
 * apart) with nw work-items. */
static inline void bwd_rows_to_local(__local float *dst, __global const float *src, __local const int *rows, int n, int lid,
                              int nw) {
    for (int e = lid; e < n * DH; e += nw) {
        const int j = e / DH, d = e - j * DH;
        dst[j * DHP + d] = src[rows[j] + d];
    }
}

__kernel __attribute__((reqd_work_group_size(BQ * DS, 1, 1)))
void attn_bwd_dq_slices(__global const float *q, int qo, __global const float *k, int ko, __global const float *v,
                        int vo, __global const float *out, int oo, __global const float *dout, int go,
                        __global float *dq, int dqo, __global float *lse, __global float *dsum,
                        __global const int *bnd, int bo, int nbnd, int T, int H, int Hkv, int mode, int window,
                        float scale) {
    const int lid = get_local_id(0), sl = lid % DS, qi = lid / DS, nw = BQ * DS;
    const int t0 = get_group_id(0) * BQ;
    const int h = get_global_id(1), b = get_global_id(2);
    const int kvh = h / (H / Hkv);
    const int qs_ = H * DH, ks = Hkv * DH;
    bnd += bo;
    k += ko + b * T * ks + kvh * DH;
    v += vo + b * T * ks + kvh * DH;
    __local float qt[BQ * DHP], gt[BQ * DHP], kt[TK * DHP], vt[TK * DHP], sc[BQ * TK], dp[BQ * TK], dd[BQ];
    __local int rows[TK];
    /* the block's queries (scaled) and douts; rows past T repeat the last query, never stored */
    for (int e = lid; e < BQ * DH; e += nw) {
        const int r = e / DH, d = e - r * DH, row = (b * T + min(t0 + r, T - 1)) * qs_ + h * DH + d;
        qt[r * DHP + d] = q[qo + row] * scale;
        gt[r * DHP + d] = dout[go + row];
    }
    if (lid < BQ) { /* D = dout . out */
        const int row = (b * T + min(t0 + lid, T - 1)) * qs_ + h * DH;
        float x = 0.0f;
        for (int d = 0; d < DH; d++) x = fma(dout[go + row + d], out[oo + row + d], x);
        dd[lid] = x;
    }
    float acc[DHS];
    for (int i = 0; i < DHS; i++) acc[i] = 0.0f;
    float m = ATTN_NEG, l = 0.0f;

    /* Phase A (keys every query of the block sees), then phase B (the window range, masked per
     * query by the SPEC 3.3 rule), as attn_bwd_dq: one loop over both, key i of the walk being
     * boundary i (phase A) or position wlo + i - na (phase B). */
    const int wlo = mode == ATTN_CAUSAL ? t0 : max(0, t0 - window);
    const int na = mode == ATTN_CAUSAL ? t0 : mode == ATTN_COMPRESSED ? atb_count_below(bnd, nbnd, wlo) : 0;
    const int whi = min(T, t0 + BQ), nkeys = na + whi - wlo;
    const int lwin = mode == ATTN_CAUSAL ? T : window;
    const int nb_b = mode == ATTN_COMPRESSED ? nbnd : 0;
    for (int i0 = 0; i0 < nkeys; i0 += TK) {
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile is done with (first: qt, gt, dd written) */
        for (int j = lid; j < TK; j += nw) { /* a group can be narrower than a tile */
            const int i = min(i0 + j, nkeys - 1);
            rows[j] = (i < na ? (mode == ATTN_COMPRESSED ? bnd[i] : i) : wlo + i - na) * ks;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        bwd_rows_to_local(kt, k, rows, TK, lid, nw);
        bwd_rows_to_local(vt, v, rows, TK, lid, nw);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int e = lid; e < BQ * TK; e += nw) {
            const int r = e / TK, j = e - r * TK, i = i0 + j, t = min(t0 + r, T - 1);
            const int ok = attn_walk_sees(i, na, nkeys, wlo + i - na, t, lwin, bnd, nb_b);
            sc[e] = ok ? bwd_dot(qt + r * DHP, kt + j * DHP) : ATTN_NEG;
            dp[e] = ok ? bwd_dot(gt + r * DHP, vt + j * DHP) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        float mt = m;
        for (int j = 0; j < TK; j++) mt = fmax(mt, sc[qi * TK + j]);
        const float corr = exp(m - mt);
        for (int i = 0; i < DHS; i++) acc[i] *= corr;
        float ls = 0.0f;
#pragma unroll 1 /* as in attn_prefill_slices: unrolled, clang hoists every key load */
        for (int j = 0; j < TK; j++) {
            const float x = sc[qi * TK + j], p = x > ATTN_NEG ? exp(x - mt) : 0.0f, w = p * (dp[qi * TK + j] - dd[qi]);
            ls += p;
            for (int i = 0; i < DHS; i++) acc[i] = fma(w, kt[j * DHP + sl + DS * i], acc[i]);
        }
        l = l * corr + ls;
        m = mt;
    }

    if (t0 + qi < T) {
        const int row = (b * T + t0 + qi) * qs_ + h * DH + sl;
        const float f = scale / l; /* l >= 1: every query sees itself */
        for (int i = 0; i < DHS; i++) dq[dqo + row + DS * i] = acc[i] * f;
        if (sl == 0) {
            lse[(b * H + h) * T + t0 + qi] = m + log(l);
            dsum[(b * H + h) * T + t0 + qi] = dd[qi];
        }
    }
}

__kernel __attribute__((reqd_work_group_size(BK * DS, 1, 1)))
void attn_bwd_dkv_slices(__global const float *q, int qo, __global const float *k, int ko, __global const float *v,
                         int vo, __global const float *dout, int go, __global const float *lse,
                         __global const float *dsum, __global float *dk, int dko, __global float *dv, int dvo,
                         __global const int *bnd, int bo, int nbnd, int T, int H, int Hkv, int far, int lw,
                         float scale) {
    const int lid = get_local_id(0), sl = lid % DS, ki = lid / DS, nw = BK * DS;
    const int g0 = get_group_id(0) * BK;
    const int kvh = get_global_id(1), b = get_global_id(2);
    const int grp = H / Hkv;
    const int qs_ = H * DH, ks = Hkv * DH;
    bnd += bo;
    /* Keys of the group (far: boundaries); padding rows repeat the last key and are never stored. */
    const int n = far ? nbnd : T;
    const int qlo = far ? bnd[g0] + lw + 1 : g0;
    const int qhi = far ? T : min(T, g0 + BK + lw);
    __local float kt[BK * DHP], vt[BK * DHP], qt[TQ * DHP], gt[TQ * DHP], pt[BK * TQ], dst[BK * TQ], lt[TQ], dt[TQ];
    __local int rows[BK > TQ ? BK : TQ], spos[BK];
    if (lid < BK) {
        const int s = far ? bnd[min(g0 + lid, n - 1)] : min(g0 + lid, n - 1);
        spos[lid] = s;
        rows[lid] = (b * T + s) * ks + kvh * DH;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    bwd_rows_to_local(kt, k + ko, rows, BK, lid, nw);
    bwd_rows_to_local(vt, v + vo, rows, BK, lid, nw);
    const int s = spos[ki], krow = rows[ki];
    float gk[DHS], gv[DHS];
    for (int i = 0; i < DHS; i++) gk[i] = gv[i] = 0.0f;
    for (int hh = 0; hh < grp; hh++) {
        const int h = kvh * grp + hh;
        for (int t0 = qlo; t0 < qhi; t0 += TQ) {
            barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile (first: kt, vt, rows) is done with */
            for (int j = lid; j < TQ; j += nw) {
                const int t = min(t0 + j, qhi - 1);
                rows[j] = (b * T + t) * qs_ + h * DH;
                lt[j] = lse[(b * H + h) * T + t];
                dt[j] = dsum[(b * H + h) * T + t];
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            bwd_rows_to_local(qt, q + qo, rows, TQ, lid, nw);
            bwd_rows_to_local(gt, dout + go, rows, TQ, lid, nw);
            barrier(CLK_LOCAL_MEM_FENCE);
            for (int e = lid; e < BK * TQ; e += nw) {
                const int r = e / TQ, j = e - r * TQ, t = t0 + j, sr = spos[r];
                const int ok = t < qhi && (far ? t - sr > lw : t >= sr && t - sr <= lw);
                float p = 0.0f, g = 0.0f;
                if (ok) {
                    p = exp(bwd_dot(kt + r * DHP, qt + j * DHP) * scale - lt[j]);
                    g = p * (bwd_dot(vt + r * DHP, gt + j * DHP) - dt[j]);
                }
                pt[e] = p;
                dst[e] = g;
            }
            barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll 1
            for (int j = 0; j < TQ; j++) {
                const float p = pt[ki * TQ + j], g = dst[ki * TQ + j];
                for (int i = 0; i < DHS; i++) {
                    gv[i] = fma(p, gt[j * DHP + sl + DS * i], gv[i]);
                    gk[i] = fma(g, qt[j * DHP + sl + DS * i], gk[i]);
                }
            }
        }
    }
    if (g0 + ki < n)
#pragma unroll /* else nvptx keeps gk and gv in a stack frame (sm_90, DH = 128: 128 bytes) */
        for (int i = 0; i < DHS; i++) {
            /* far: the near launch's part of this boundary row comes first, in the same order always */
            const int at = krow + sl + DS * i;
            dk[dko + at] = (far ? dk[dko + at] : 0.0f) + gk[i] * scale;
            dv[dvo + at] = (far ? dv[dvo + at] : 0.0f) + gv[i];
        }
}
#endif /* DS */
