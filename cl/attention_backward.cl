/* attention_backward.cl: gradients of the causal / sliding / compressed (Attamba) prefill attention
 * of attention.cl, f32, flash-style: only the (query, key) pairs the forward visits, no T x T
 * matrix, no atomics (every output row has exactly one writer, so results are deterministic).
 * Options: -DDH=<head dim> -DBQ=<queries per group> -DTK=<keys per tile>        (attn_bwd_dq)
 *          -DBK=<keys per group>    -DTQ=<queries per tile>                     (attn_bwd_dkv)
 *          -DUSE_LOCAL=0|1 (tiles through __local).
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
 * barriers of the __local variant sit in uniform control flow. */
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

/* The modes, ATTN_NEG and the forward's key-tile walks (attn_tile_all, attn_tile_window) come from
 * common.cl. */

/* ---------------------------------------------------------------- dq (query-centred) */

/* One tile of TK keys for one query: scores and dout . v, then the online rescale of (m, l, acc).
 * KAT(j, d) / VAT(j, d) read key / value j of the tile; ok[j]: the query sees it. */
#define BWD_DQ_TILE(KAT, VAT)                                                 \
    do {                                                                      \
        float sc[TK], dp[TK];                                                 \
        for (int j = 0; j < TK; j++) sc[j] = dp[j] = 0.0f;                    \
        for (int d = 0; d < DH; d++) {                                        \
            float qd = qv[d], gd = gv[d];                                     \
            for (int j = 0; j < TK; j++) {                                    \
                sc[j] = fma(qd, KAT(j, d), sc[j]);                            \
                dp[j] = fma(gd, VAT(j, d), dp[j]);                            \
            }                                                                 \
        }                                                                     \
        float mt = m;                                                         \
        for (int j = 0; j < TK; j++)                                          \
            if (ok[j]) mt = fmax(mt, sc[j]);                                  \
        float corr = exp(m - mt), ls = 0.0f;                                  \
        float w[TK];                                                          \
        for (int j = 0; j < TK; j++) {                                        \
            float p = ok[j] ? exp(sc[j] - mt) : 0.0f;                         \
            ls += p;                                                          \
            w[j] = p * (dp[j] - dd);                                          \
        }                                                                     \
        l = l * corr + ls;                                                    \
        m = mt;                                                               \
        for (int d = 0; d < DH; d++) {                                        \
            float a = acc[d] * corr;                                          \
            for (int j = 0; j < TK; j++) a = fma(w[j], KAT(j, d), a);         \
            acc[d] = a;                                                       \
        }                                                                     \
    } while (0)

#if USE_LOCAL
/* The first barrier keeps the previous tile alive until every work-item is done with it; the
 * copy loop has no barrier inside, so TK * DH need not be a multiple of the group size. */
#define BWD_LOAD_KV()                                                         \
    do {                                                                      \
        barrier(CLK_LOCAL_MEM_FENCE);                                         \
        for (int e = lid; e < TK * DH; e += BQ) {                             \
            int j_ = e / DH, d_ = e - j_ * DH;                                \
            kt[e] = k[krow[j_] + d_];                                         \
            vt[e] = v[krow[j_] + d_];                                         \
        }                                                                     \
        barrier(CLK_LOCAL_MEM_FENCE);                                         \
    } while (0)
#define BWD_KAT(j, d) kt[(j) * DH + (d)]
#define BWD_VAT(j, d) vt[(j) * DH + (d)]
#else
#define BWD_LOAD_KV() do { } while (0)
#define BWD_KAT(j, d) k[krow[j] + (d)]
#define BWD_VAT(j, d) v[krow[j] + (d)]
#endif

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

    float qv[DH], gv[DH], acc[DH];
    float dd = 0.0f;
    for (int d = 0; d < DH; d++) {
        qv[d] = q[qo + row + d] * scale;
        gv[d] = dout[go + row + d];
        dd = fma(gv[d], out[oo + row + d], dd);
        acc[d] = 0.0f;
    }
    float m = ATTN_NEG, l = 0.0f;
    int krow[TK], ok[TK];

    /* Phase A: keys every query of the block sees. */
    const int wlo = mode == ATTN_CAUSAL ? t0 : max(0, t0 - window);
    const int na = mode == ATTN_CAUSAL ? t0 : mode == ATTN_COMPRESSED ? atb_count_below(bnd, nbnd, wlo) : 0;
    const int indirect = mode == ATTN_COMPRESSED;
    for (int i0 = 0; i0 < na; i0 += TK) {
        attn_tile_all(krow, ok, TK, i0, na, indirect, bnd, ks);
        BWD_LOAD_KV();
        BWD_DQ_TILE(BWD_KAT, BWD_VAT);
    }

    /* Phase B: the block's window range, masked per query; bi walks the boundaries >= wlo. */
    const int whi = min(T, t0 + BQ);
    const int lwin = mode == ATTN_CAUSAL ? T : window;
    int bi = mode == ATTN_COMPRESSED ? na : nbnd;
    for (int s0 = wlo; s0 < whi; s0 += TK) {
        attn_tile_window(krow, ok, TK, s0, whi, t, lwin, bnd, nbnd, &bi, ks);
        BWD_LOAD_KV();
        BWD_DQ_TILE(BWD_KAT, BWD_VAT);
    }

    if (t0 + lid < T) {
        /* l >= 1: every query sees itself, the key at the running max contributing exp(0). */
        float f = scale / l;
        for (int d = 0; d < DH; d++) dq[dqo + row + d] = acc[d] * f;
        lse[(b * H + h) * T + t] = m + log(l);
        dsum[(b * H + h) * T + t] = dd;
    }
}

/* ---------------------------------------------------------------- dk, dv (key-centred) */

/* One tile of TQ queries for one key: P and dS per query, then dv += P dout, dk += dS q.
 * QAT(j, d) / GAT(j, d) read q / dout of query j of the tile, LSE(j) / DS(j) its lse and D;
 * ok[j]: the query sees this work-item's key. */
#define BWD_DKV_TILE(QAT, GAT, LSE, DS)                                       \
    do {                                                                      \
        float sc[TQ], dp[TQ];                                                 \
        for (int j = 0; j < TQ; j++) sc[j] = dp[j] = 0.0f;                    \
        for (int d = 0; d < DH; d++) {                                        \
            float kd = kv[d], vd = vv[d];                                     \
            for (int j = 0; j < TQ; j++) {                                    \
                sc[j] = fma(kd, QAT(j, d), sc[j]);                            \
                dp[j] = fma(vd, GAT(j, d), dp[j]);                            \
            }                                                                 \
        }                                                                     \
        float p[TQ], ds[TQ];                                                  \
        for (int j = 0; j < TQ; j++) {                                        \
            p[j] = ok[j] ? exp(sc[j] * scale - LSE(j)) : 0.0f;                \
            ds[j] = p[j] * (dp[j] - DS(j));                                   \
        }                                                                     \
        for (int d = 0; d < DH; d++) {                                        \
            float a = gvacc[d], c = gkacc[d];                                 \
            for (int j = 0; j < TQ; j++) {                                    \
                a = fma(p[j], GAT(j, d), a);                                  \
                c = fma(ds[j], QAT(j, d), c);                                 \
            }                                                                 \
            gvacc[d] = a;                                                     \
            gkacc[d] = c;                                                     \
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
#define BWD_QAT(j, d) qt[(j) * DH + (d)]
#define BWD_GAT(j, d) gt[(j) * DH + (d)]
#define BWD_LSE(j) lt[j]
#define BWD_DS(j) dt[j]
#else
#define BWD_LOAD_QG() do { } while (0)
#define BWD_QAT(j, d) q[qrow[j] + (d)]
#define BWD_GAT(j, d) dout[qrow[j] + (d)]
#define BWD_LSE(j) lse[srow[j]]
#define BWD_DS(j) dsum[srow[j]]
#endif

/* q, dout [B,T,H*DH]; k, v, dk, dv [B,T,Hkv*DH]; lse, dsum [B,H,T] from attn_bwd_dq.
 * far = 0 (near): group g owns keys [g*BK, g*BK + BK); lw as above; overwrites dk, dv.
 * far = 1: group g owns boundaries bnd[g*BK .. g*BK + BK); adds to dk, dv.
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
    /* Padding lanes work on a copy of the last key and never store it. */
    const int n = far ? nbnd : T;
    const int mine = g0 + lid < n;
    const int s = far ? bnd[min(g0 + lid, n - 1)] : min(g0 + lid, n - 1);
    /* Queries of the group: near [g0, g0 + BK + lw), far (bnd[g0] + lw, T); lw = L there. */
    const int qlo = far ? bnd[g0] + lw + 1 : g0;
    const int qhi = far ? T : min(T, g0 + BK + lw);
    const int krow = (b * T + s) * ks + kvh * DH;
    q += qo + b * T * qs;
    dout += go + b * T * qs;
#if USE_LOCAL
    __local float qt[TQ * DH], gt[TQ * DH], lt[TQ], dt[TQ];
#endif

    float kv[DH], vv[DH], gkacc[DH], gvacc[DH];
    for (int d = 0; d < DH; d++) {
        kv[d] = k[ko + krow + d];
        vv[d] = v[vo + krow + d];
        gkacc[d] = 0.0f;
        gvacc[d] = 0.0f;
    }
    int qrow[TQ], srow[TQ], ok[TQ];
    for (int hh = 0; hh < grp; hh++) {
        const int h = kvh * grp + hh;
        for (int t0 = qlo; t0 < qhi; t0 += TQ) {
            for (int j = 0; j < TQ; j++) {
                int t = min(t0 + j, qhi - 1);
                qrow[j] = t * qs + h * DH;
                srow[j] = (b * H + h) * T + t;
                ok[j] = t0 + j < qhi && (far ? t - s > lw : t >= s && t - s <= lw);
            }
            BWD_LOAD_QG();
            BWD_DKV_TILE(BWD_QAT, BWD_GAT, BWD_LSE, BWD_DS);
        }
    }
    if (mine)
        for (int d = 0; d < DH; d++) {
            /* far: the near launch's part of this boundary row comes first, in the same order always. */
            float k0 = far ? dk[dko + krow + d] : 0.0f, v0 = far ? dv[dvo + krow + d] : 0.0f;
            dk[dko + krow + d] = fma(gkacc[d], scale, k0);
            dv[dvo + krow + d] = v0 + gvacc[d];
        }
}
