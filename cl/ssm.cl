/* ssm.cl: the Mamba-2 SSM scan of the K/V SSM (SPEC 3.1) with state restarts at segment starts.
 * Compiled with -DSSM_N=<state size>: a work-item keeps one row S[pi, 0..N-1] of a head's state in
 * private memory, and every loop over N has that compile-time trip count.
 * Work-items are numbered (b, block, head, pi) with pi fastest: neighbours read neighbouring xs/y
 * floats and share the same Bm/Cm row (one group of heads).
 * Inputs xs, Bm, Cm, dt_raw may have strided rows (column slices of a wider projection).
 *
 * Two prefill paths over blocks of Q tokens:
 *  - sequential (mode 0): the work-item of block k scans, token by token, every segment that STARTS
 *    in block k to its end (possibly far beyond the block). Parallel over segments; one launch.
 *  - chunked (mode 1 + ssm_pass + ssm_fix): each block is scanned from a zero state (restarting at
 *    starts inside it), its end state and its total decay are stored; ssm_pass carries states across
 *    blocks (E_k = S_k + decay_k E_{k-1}); ssm_fix adds the carried state's contribution to the
 *    block's tokens before its first segment start. Parallel over blocks even inside one segment. */

#ifndef SSM_N
#error "compile with -DSSM_N=<state size>"
#endif

#define SSM_IN_ARGS                                                                                   \
    __global const float *xs, int xo, int x_rs, int x_bs, __global const float *Bm, int bo, int b_rs,   \
        int b_bs, __global const float *Cm, int co, int c_rs, int c_bs, __global const float *dtr, int dto, \
        int dt_rs, int dt_bs, __global const float *dt_bias, int dbo, int has_bias,                    \
        __global const float *A_log, int ao, __global const float *D, int Do

/* dt of (b, t, h): softplus(dt_raw + bias). */
#define SSM_DT(b, t, h) atb_softplus(dtr[dto + (b) * dt_bs + (t) * dt_rs + (h)] + bias)

/* A state row is SSM_N8 float8 vectors plus SSM_NT scalars: the vector part is explicit because PoCL
 * cannot vectorise across work-items whose token loops differ in length. */
#define SSM_N8 (SSM_N / 8)
#define SSM_NT (SSM_N % 8)
#define SSM_ROW(S8, St) ATB_VEC8(S8, St, SSM_N)

static inline void ssm_load(float8 *S8, float *St, __global const float *src) {
    for (int j = 0; j < SSM_N8; j++) S8[j] = vload8(j, src);
    for (int j = 0; j < SSM_NT; j++) St[j] = src[SSM_N8 * 8 + j];
}

static inline void ssm_store(const float8 *S8, const float *St, __global float *dst) {
    for (int j = 0; j < SSM_N8; j++) vstore8(S8[j], j, dst);
    for (int j = 0; j < SSM_NT; j++) dst[SSM_N8 * 8 + j] = St[j];
}

/* One token: ssm_token(S8, St, decay, u, B_t, C_t) makes S = decay * S + u B and returns S . C;
 * decay == 0 restarts the state. ssm_token_zero(S8, St): S = 0. */
ATB_DEFINE_VEC_STEP(ssm_token, SSM_N)

/* S *= decay; returns S . C (the carried state's contribution in ssm_fix). */
static inline float ssm_decay_dot(float8 *S8, float *St, float decay, __global const float *Ct) {
    float8 acc8 = (float8)(0.0f);
    for (int j = 0; j < SSM_N8; j++) {
        S8[j] *= decay;
        acc8 += S8[j] * vload8(j, Ct);
    }
    float acc = atb_hsum8(acc8);
    for (int j = 0; j < SSM_NT; j++) {
        St[j] *= decay;
        acc += St[j] * Ct[SSM_N8 * 8 + j];
    }
    return acc;
}

/* A block-scan work-item's channels and state (-DSSM_VP, default 1):
 *  - SSM_VP = 1: one channel pi, its state row S[pi, 0..N-1] along the vector lanes (SSM_ROW);
 *  - SSM_VP = 2..16 (p % SSM_VP == 0): SSM_VP neighbouring channels of a head, which share dt, B and C,
 *    as one vector, and their state as SSM_N such vectors (column n of the rows): a token is then 2 SSM_N
 *    vector FMAs with B[n] and C[n] broadcast, and y needs no horizontal sum (CPUs: ssm.vp).
 * SSM_XT is the channels' type; SSM_STATE declares S, SSM_ZERO clears it, SSM_TOKEN(S, decay, u, Bt, Ct)
 * makes S = decay S + u B and returns S . C, SSM_STORE(S, dst) writes the rows (SSM_N floats each). */
#ifndef SSM_VP
#define SSM_VP 1
#endif
#if SSM_VP > 1
#define SSM_CAT_(a, b) a##b
#define SSM_CAT(a, b) SSM_CAT_(a, b)
#define SSM_XT SSM_CAT(float, SSM_VP)
#define SSM_XLOAD(p) SSM_CAT(vload, SSM_VP)(0, (p))
#define SSM_YSTORE(v, p) SSM_CAT(vstore, SSM_VP)((v), 0, (p))
#define SSM_STATE(S) SSM_XT S[SSM_N]
#define SSM_ZERO(S) for (int n_ = 0; n_ < SSM_N; n_++) S[n_] = (SSM_XT)(0.0f)
#define SSM_TOKEN(S, decay, u, Bt, Ct) ssm_token_lanes(S, decay, u, Bt, Ct)
#define SSM_STORE(S, dst) ssm_store_lanes(S, dst)

ATB_DEFINE_LANES_STEP(ssm_token_lanes, SSM_XT, SSM_N)

/* Column n of S is lane l of row l. */
static inline void ssm_store_lanes(const SSM_XT *S, __global float *dst) {
    for (int n = 0; n < SSM_N; n++) {
        float lanes[SSM_VP];
        SSM_CAT(vstore, SSM_VP)(S[n], 0, lanes);
        for (int l = 0; l < SSM_VP; l++) dst[l * SSM_N + n] = lanes[l];
    }
}
#else
#define SSM_XT float
#define SSM_XLOAD(p) (*(p))
#define SSM_YSTORE(v, p) (*(p) = (v))
#define SSM_STATE(S) SSM_ROW(S##8, S##t)
#define SSM_ZERO(S) ssm_token_zero(S##8, S##t)
#define SSM_TOKEN(S, decay, u, Bt, Ct) ssm_token(S##8, S##t, decay, u, Bt, Ct)
#define SSM_STORE(S, dst) ssm_store(S##8, S##t, dst)
#endif

/* dt and exp(dt A) of every (b, t, h) once, instead of once per channel of the head; a work-item takes
 * SSM_VP tokens of one (b, h) as one vector (PoCL runs exp and log1p scalar unless written on vectors:
 * one token per work-item took ~1 ms at T = 4096, 8 heads, longer than the scan). */
__kernel void ssm_dt(__global float2 *dd, __global const float *dtr, int dto, int dt_rs, int dt_bs,
                     __global const float *dt_bias, int dbo, int has_bias, __global const float *A_log, int ao,
                     int B, int T, int nh) {
    int i = get_global_id(0), nt = (T + SSM_VP - 1) / SSM_VP;
    if (i >= B * nt * nh) return;
    int h = i % nh, r = i / nh, t0 = r % nt * SSM_VP, b = r / nt;
    float bias = has_bias ? dt_bias[dbo + h] : 0.0f, v[SSM_VP], o[2 * SSM_VP];
    for (int l = 0; l < SSM_VP; l++) v[l] = dtr[dto + b * dt_bs + min(t0 + l, T - 1) * dt_rs + h] + bias;
    SSM_XT x = SSM_XLOAD(v), dt = x > 20.0f ? x : log1p(exp(x)); /* atb_softplus on the lanes */
    SSM_YSTORE(dt, o);
    SSM_YSTORE(exp(-dt * exp(A_log[ao + h])), o + SSM_VP);
    for (int l = 0; l < SSM_VP && t0 + l < T; l++) dd[(b * T + t0 + l) * nh + h] = (float2)(o[l], o[SSM_VP + l]);
}

/* Scans blocks of Q tokens; see the header for the two modes.
 * mode 0: st = final_state [B,nh,p,N] (written by whoever scans token T-1 when want_final).
 * mode 1: st = block end states [B,nblk,nh,p,N], dec = block decays [B,nblk,nh]. */
__kernel void ssm_scan_blocks(__global float *y, int yo, SSM_IN_ARGS, __global const float2 *dd,
                              __global const int *seg, int so,
                              __global float *st, int sto, __global float *dec, int deo, int B, int T, int nh,
                              int p, int hpg, int Q, int nblk, int mode, int want_final) {
    int gid = get_global_id(0), pv = p / SSM_VP;
    if (gid >= B * nblk * nh * pv) return;
    int pi = (gid % pv) * SSM_VP, r = gid / pv;
    int h = r % nh;
    r /= nh;
    int k = r % nblk, b = r / nblk;
    int E = nh * p, g = h / hpg;
    float a = -exp(A_log[ao + h]), dh = D[Do + h];
    int t0 = k * Q, t1 = min(T, t0 + Q);
    SSM_STATE(S);
    SSM_ZERO(S);

    int t = t0, end = t1;
    if (mode == 0) {
        /* skip the tail of a segment begun in an earlier block; run past t1 to our last segment's end */
        while (t < t1 && seg[so + t] != t) t++;
        if (t == t1) return;
        end = atb_next_start(seg, so, t1, T);
    }
    float logdec = 0.0f;
    int cont = 1;
    for (; t < end; t++) {
        float2 d = dd[(b * T + t) * nh + h];
        int restart = seg[so + t] == t;
        cont &= !restart;
        logdec += d.x * a;
        SSM_XT xv = SSM_XLOAD(xs + xo + b * x_bs + t * x_rs + h * p + pi);
        SSM_XT acc = SSM_TOKEN(S, restart ? 0.0f : d.y, d.x * xv, Bm + bo + b * b_bs + t * b_rs + g * SSM_N,
                               Cm + co + b * c_bs + t * c_rs + g * SSM_N);
        SSM_YSTORE(acc + dh * xv, y + yo + (b * T + t) * E + h * p + pi);
    }
    if (mode == 0) {
        if (end == T && want_final) SSM_STORE(S, st + sto + ((b * nh + h) * p + pi) * SSM_N);
        return;
    }
    /* the end state is needed when the segment runs on into the next block, or for final_state */
    int need = t1 < T ? seg[so + t1] != t1 : want_final;
    if (need) SSM_STORE(S, st + sto + (((b * nblk + k) * nh + h) * p + pi) * SSM_N);
    if (pi == 0) dec[deo + (b * nblk + k) * nh + h] = cont ? exp(logdec) : 0.0f;
}

/* Carries states across blocks: one work-item per (b, h, pi, n), sequential over blocks. Block k's
 * stored state becomes E_k = S_k + decay_k E_{k-1} (only where someone reads it); E of the last
 * block is the final state. */
__kernel void ssm_pass(__global float *st, int sto, __global const float *dec, int deo, __global const int *seg,
                       int so, __global float *fin, int fo, int B, int T, int nh, int p, int Q, int nblk,
                       int want_final) {
    int gid = get_global_id(0);
    if (gid >= B * nh * p * SSM_N) return;
    int n = gid % SSM_N, r = gid / SSM_N;
    int pi = r % p;
    r /= p;
    int h = r % nh, b = r / nh;
    float carry = 0.0f;
    for (int k = 0; k < nblk; k++) {
        int t1 = (k + 1) * Q;
        int need = t1 < T ? seg[so + t1] != t1 : want_final;
        if (!need) {
            carry = 0.0f; /* the next block starts a segment: nothing flows on */
            continue;
        }
        float f = dec[deo + (b * nblk + k) * nh + h];
        int i = sto + (((b * nblk + k) * nh + h) * p + pi) * SSM_N + n;
        float e = st[i] + f * carry;
        if (f != 0.0f) st[i] = e;
        carry = e;
    }
    if (want_final) fin[fo + gid] = carry;
}

/* Adds the carried state E_{k-1} to block k's tokens before its first segment start. */
__kernel void ssm_fix(__global float *y, int yo, SSM_IN_ARGS, __global const float2 *dd, __global const int *seg,
                      int so,
                      __global const float *st, int sto, int B, int T, int nh, int p, int hpg, int Q, int nblk) {
    int gid = get_global_id(0);
    if (gid >= B * (nblk - 1) * nh * p) return;
    int pi = gid % p, r = gid / p;
    int h = r % nh;
    r /= nh;
    int k = 1 + r % (nblk - 1), b = r / (nblk - 1);
    int t0 = k * Q, t1 = min(T, t0 + Q), E = nh * p, g = h / hpg;
    if (seg[so + t0] == t0) return;
    SSM_ROW(S8, St);
    ssm_load(S8, St, st + sto + (((b * nblk + k - 1) * nh + h) * p + pi) * SSM_N);
    for (int t = t0; t < t1 && seg[so + t] != t; t++)
        y[yo + (b * T + t) * E + h * p + pi] +=
            ssm_decay_dot(S8, St, dd[(b * T + t) * nh + h].y, Cm + co + b * c_bs + t * c_rs + g * SSM_N);
}

/* The quadratic path: y_t = sum over s from t's segment start to t of (C_t . B_s) dt_s x_s times the
 * decay prod_{r=s+1..t} exp(dt_r A), plus D x_t; the state itself is never formed. A work-item per
 * (b, t, h) holds C_t and the head's SSM_P channels as SSM_P / SSM_VP vectors and walks its segment
 * back from t (the decay one product per step). A token's work grows with its place in its segment,
 * so the host takes this path only for short segments (ssm.quad_max: Attamba's chunks), where it does
 * (P + 1) / 2 x (N + p) multiply-adds per token and head against the recurrence's 3 p N. */
#ifdef SSM_P
static inline float ssm_dot(const float8 *C8, const float *Ct, __global const float *Bs) {
    float8 acc8 = (float8)(0.0f);
    for (int j = 0; j < SSM_N8; j++) acc8 = fma(C8[j], vload8(j, Bs), acc8);
    float acc = atb_hsum8(acc8);
    for (int j = 0; j < SSM_NT; j++) acc = fma(Ct[j], Bs[SSM_N8 * 8 + j], acc);
    return acc;
}

#ifndef SSM_QH
#define SSM_QH 1 /* heads per work-item (of one group: they share B and C, so C_t . B_s once for all) */
#endif
#ifndef SSM_QC
#define SSM_QC 16 /* the C_t . B_s a work-item keeps (its segment's last SSM_QC tokens; ssm.quad_max's 16) */
#endif
/* The heads one after another, each with its SSM_P / SSM_VP accumulators in registers, the products
 * C_t . B_s computed once for all of them (kept for the last SSM_QC tokens of the segment, recomputed
 * per head beyond: longer segments take this path only when asked to). Walking the heads inside the
 * token loop instead kept SSM_QH x SSM_P / SSM_VP accumulators, 32 vectors at 8 heads on AVX2, on the
 * stack, a load and a store per multiply-add. */
__kernel void ssm_scan_quad(__global float *y, int yo, SSM_IN_ARGS, __global const float2 *dd,
                            __global const int *seg, int so, int B, int T, int nh, int hpg) {
    int gid = get_global_id(0), nq = nh / SSM_QH;
    if (gid >= B * T * nq) return;
    int h0 = gid % nq * SSM_QH, bt = gid / nq, t = bt % T, b = bt / T, g = h0 / hpg;
    SSM_ROW(C8, Ct);
    ssm_load(C8, Ct, Cm + co + b * c_bs + t * c_rs + g * SSM_N);
    __global const float *xh = xs + xo + b * x_bs + h0 * SSM_P, *bg = Bm + bo + b * b_bs + g * SSM_N;
    __global const float2 *dh = dd + b * T * nh + h0;
    __global float *yt = y + yo + bt * nh * SSM_P + h0 * SSM_P;
    const int n = t - seg[so + t] + 1; /* tokens t, t - 1, .., the segment start */
#if SSM_QH > 1
    float cbs[SSM_QC];
    for (int i = 0; i < min(n, SSM_QC); i++) cbs[i] = ssm_dot(C8, Ct, bg + (t - i) * b_rs);
#define SSM_CB(i, s) ((i) < SSM_QC ? cbs[i] : ssm_dot(C8, Ct, bg + (s) * b_rs))
#else /* one head: each product used once (an array would be GPU stack) */
#define SSM_CB(i, s) ssm_dot(C8, Ct, bg + (s) * b_rs)
#endif
    for (int q = 0; q < SSM_QH; q++) {
        SSM_XT acc[SSM_P / SSM_VP];
        _Pragma("unroll") for (int j = 0; j < SSM_P / SSM_VP; j++) acc[j] = (SSM_XT)(0.0f);
        float w = 1.0f;
        for (int i = 0; i < n; i++) {
            const int s = t - i;
            const float2 d = dh[s * nh + q];
            const float cb = SSM_CB(i, s);
            const SSM_XT coef = (SSM_XT)(w * d.x * cb);
            _Pragma("unroll") for (int j = 0; j < SSM_P / SSM_VP; j++)
                acc[j] = fma(coef, SSM_XLOAD(xh + s * x_rs + q * SSM_P + j * SSM_VP), acc[j]);
            w *= d.y;
        }
        _Pragma("unroll") for (int j = 0; j < SSM_P / SSM_VP; j++)
            SSM_YSTORE(acc[j] + D[Do + h0 + q] * SSM_XLOAD(xh + t * x_rs + q * SSM_P + j * SSM_VP),
                       yt + q * SSM_P + j * SSM_VP);
    }
#undef SSM_CB
}
#endif

/* The quadratic path's state after token T-1 (final_state [B,nh,p,N]): the sum over the last segment
 * of dt_s x_s B_s^T and its decay to T-1, a work-item per (b, h, pi) walking the segment back. */
__kernel void ssm_final(__global float *st, int sto, SSM_IN_ARGS, __global const float2 *dd,
                        __global const int *seg, int so, int B, int T, int nh, int p, int hpg) {
    int gid = get_global_id(0);
    if (gid >= B * nh * p) return;
    int pi = gid % p, r = gid / p;
    int h = r % nh, b = r / nh, g = h / hpg;
    SSM_ROW(S8, St);
    ssm_token_zero(S8, St);
    float w = 1.0f;
    for (int s = T - 1, lo = seg[so + T - 1]; s >= lo; s--) {
        float2 d = dd[(b * T + s) * nh + h];
        __global const float *Bs = Bm + bo + b * b_bs + s * b_rs + g * SSM_N;
        ssm_token(S8, St, 1.0f, w * d.x * xs[xo + b * x_bs + s * x_rs + h * p + pi], Bs, Bs);
        w *= d.y;
    }
    ssm_store(S8, St, st + sto + gid * SSM_N);
}

/* Decode: one token per sequence; one work-item per (b, h, pi), state row updated in place. */
__kernel void ssm_step(__global float *y, int yo, SSM_IN_ARGS, __global const int *restart, int ro,
                       __global float *st, int sto, int B, int nh, int p, int hpg) {
    int gid = get_global_id(0);
    if (gid >= B * nh * p) return;
    int pi = gid % p, r = gid / p;
    int h = r % nh, b = r / nh, g = h / hpg;
    float a = -exp(A_log[ao + h]), bias = has_bias ? dt_bias[dbo + h] : 0.0f;
    int rs = restart[ro + b] != 0;
    __global float *row = st + sto + gid * SSM_N;
    SSM_ROW(S8, St);
    if (rs) /* a restart ignores the stored state, whatever it holds */
        ssm_token_zero(S8, St);
    else
        ssm_load(S8, St, row);
    float dt = atb_softplus(dtr[dto + b * dt_rs + h] + bias);
    float xv = xs[xo + b * x_rs + h * p + pi];
    float acc = ssm_token(S8, St, rs ? 0.0f : exp(dt * a), dt * xv, Bm + bo + b * b_rs + g * SSM_N,
                          Cm + co + b * c_rs + g * SSM_N);
    ssm_store(S8, St, row);
    y[yo + gid] = acc + D[Do + h] * xv;
}

/* ---- decode: the whole SSM of one token per sequence in one launch ---- */

/* One causal-conv output of channel c at position t: the new input xc plus the window ring's taps
 * (position q in slot q % W; taps before the segment's first position sf count as zero); the new
 * input then takes slot tw = t % W (unless keep: a skipped sequence), which no tap of this step reads.
 * tw comes from the caller, once per work-item: no integer division per channel and tap. */
static inline float ssm_conv_ring(__global const float *w, __global float *win, int c, int CH, int W, int t, int tw,
                                  int sf, float xc, int keep) {
    float acc = w[c * W + W - 1] * xc;
    for (int k = 1; k < W && t - k >= sf; k++) {
        int slot = tw - k;
        slot += slot < 0 ? W : 0;
        acc += w[c * W + W - 1 - k] * win[slot * CH + c];
    }
    if (!keep) win[tw * CH + c] = xc;
    return acc * atb_sigmoid(acc); /* SiLU */
}

/* One row of the state, S = decay S + u B (S = u B when fresh: a restart ignores the stored state,
 * whatever it holds), stored unless keep; returns S . C as a float8 of partial sums plus *tail, the
 * part past the last whole float8. */
static inline float8 ssm_row_step(__global float *row, __local const float *Bg, __local const float *Cg, float u,
                                  float decay, int fresh, int keep, float *tail) {
    float8 acc8 = (float8)(0.0f);
    for (int j = 0; j < SSM_N8; j++) {
        float8 v = (fresh ? (float8)(0.0f) : decay * vload8(j, row)) + u * vload8(j, Bg);
        if (!keep) vstore8(v, j, row);
        acc8 += v * vload8(j, Cg);
    }
    float y = 0.0f;
    for (int j = SSM_N8 * 8; j < SSM_N; j++) {
        float v = (fresh ? 0.0f : decay * row[j]) + u * Bg[j];
        if (!keep) row[j] = v;
        y += v * Cg[j];
    }
    *tail = y;
    return acc8;
}

ATB_DEFINE_EXP(ssm_exp8, float8, int8, as_int8, as_float8) /* common.cl */

static inline float8 ssm_sigmoid8(float8 x) { return 1.0f / (1.0f + ssm_exp8(-x)); }

/* ssm_conv_ring of channels c .. c + 7 as one vector (their taps, W apart in w, gathered). */
static inline float8 ssm_conv_ring8(__global const float *w, __global float *win, int c, int CH, int W, int t,
                                    int tw, int sf, float8 xc, int keep) {
    float wk[8];
    for (int i = 0; i < 8; i++) wk[i] = w[(c + i) * W + W - 1];
    float8 acc = vload8(0, wk) * xc;
    for (int k = 1; k < W && t - k >= sf; k++) {
        int slot = tw - k;
        slot += slot < 0 ? W : 0;
        for (int i = 0; i < 8; i++) wk[i] = w[(c + i) * W + W - 1 - k];
        acc += vload8(0, wk) * vload8(0, win + slot * CH + c);
    }
    if (!keep) vstore8(xc, 0, win + tw * CH + c);
    return acc * ssm_sigmoid8(acc); /* SiLU */
}

/* Decode step of up to two SSMs of one shape (K and V: get_global_id(2), their tensors ps floats
 * apart), one work-group per (sequence b, SSM). For token t = pos[b] with segment start sf:
 *   xbc = SiLU(conv(xbcdt[:, :CH])) (raw when W == 0), dt = softplus(dt_raw + bias),
 *   S = exp(dt A) S + dt xs B^T (S = dt xs B^T when t == sf), y = S C + D xs,
 *   g = rmsnorm(y * silu(z)) * norm.
 * B and C of every group go through __local once; each work-item then takes rows r = (h, pi) of
 * the state (a run of consecutive rows each). xbcdt and z rows are x_rs / z_rs apart; window
 * [B, W, CH]; state [B, nh, p, SSM_N]; g [B, E]. sf < 0 marks a sequence that skips this step: its
 * window and state are left as they are (its g is computed from no history and not used). Global
 * (WG, B, n), local (WG, 1, 1); lbc holds 2*G*SSM_N + 2*nh floats (B, C, then dt and exp(dt A) per
 * head), red one per item. */
#define SSM_DECODE_ARGS                                                                                   \
    __global const float *xbcdt, int xo, int x_ps, int x_rs, __global const float *z, int zo, int z_ps, int z_rs, \
        __global const float *cw, int cwo, int cw_ps, int W, __global float *win, int wio, int wi_ps,           \
        __global const float *dt_bias, int dbo, int db_ps, int has_bias, __global const float *A_log, int ao,   \
        int a_ps, __global const float *D, int Do, int d_ps, __global const float *nw, int nwo, int nw_ps,    \
        __global float *st, int sto, int st_ps, __global float *g, int go, int g_ps, __global const int *posv, \
        int po, __global const int *sfv, int sfo, int nh, int p, int G, float eps, __local float *lbc,         \
        __local float *red
#define SSM_DECODE_PASS                                                                                   \
    xbcdt, xo, x_ps, x_rs, z, zo, z_ps, z_rs, cw, cwo, cw_ps, W, win, wio, wi_ps, dt_bias, dbo, db_ps, has_bias, \
        A_log, ao, a_ps, D, Do, d_ps, nw, nwo, nw_ps, st, sto, st_ps, g, go, g_ps, posv, po, sfv, sfo, nh, p, G, \
        eps, lbc, red
static inline void ssm_decode_group(SSM_DECODE_ARGS) {
    const int lid = get_local_id(0), n = get_local_size(0), b = get_global_id(1), s = get_global_id(2);
    const int E = nh * p, GN = G * SSM_N, CH = E + 2 * GN, hpg = nh / G;
    const int t = posv[po + b], keep = sfv[sfo + b] < 0, sf = keep ? t : sfv[sfo + b], tw = W ? t % W : 0;
    __global const float *xr = xbcdt + xo + s * x_ps + b * x_rs;
    __global const float *zr = z + zo + s * z_ps + b * z_rs;
    __global float *wr = win + wio + s * wi_ps + b * W * CH;
    __global float *gr = g + go + s * g_ps + b * E;
    cw += cwo + s * cw_ps;
    dt_bias += dbo + s * db_ps;
    A_log += ao + s * a_ps;
    D += Do + s * d_ps;
    nw += nwo + s * nw_ps;
    st += sto + s * st_ps + b * E * SSM_N;
    if (W && GN % 4 == 0) /* B and C, 8 channels at a time */
        for (int c = E + 8 * lid; c < CH; c += 8 * n)
            vstore8(ssm_conv_ring8(cw, wr, c, CH, W, t, tw, sf, vload8(0, xr + c), keep), 0, lbc + c - E);
    else
        for (int c = E + lid; c < CH; c += n)
            lbc[c - E] = W ? ssm_conv_ring(cw, wr, c, CH, W, t, tw, sf, xr[c], keep) : xr[c];
    __local float *ldt = lbc + 2 * GN, *ldecay = ldt + nh; /* once per head, not per channel */
    for (int h = lid; h < nh; h += n) {
        float dt = atb_softplus(xr[CH + h] + (has_bias ? dt_bias[h] : 0.0f));
        ldt[h] = dt;
        ldecay[h] = exp(-dt * exp(A_log[h]));
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    /* Each work-item takes a run of consecutive rows [unit u0, unit u1): one stream through the state (rows
     * lid, lid + n, ... were 1 KB strides on a CPU, where the state comes from memory after a step's
     * weights went through the cache: its loads were 56% of the kernel), normalised by the same item at
     * the end (no other item's global writes read). Work-items of 8 rows or more (CPUs) take pieces of 8
     * rows of one head as vectors when p % 8 == 0: conv, SiLU, gate and outputs with the vector exp (a row
     * at a time spent most of the step in scalar exp, its divisions and horizontal sums). */
    const int vec = p % 8 == 0 && 8 * n <= E, unit = vec ? 8 : 1, units = E / unit, per = (units + n - 1) / n;
    const int u0 = min(units, lid * per), u1 = min(units, u0 + per), fresh = t == sf;
    float part = 0.0f;
    if (vec) {
        for (int j = u0; j < u1; j++) {
            const int r = 8 * j, h = r / p, grp = h / hpg;
            float8 x8 = vload8(j, xr);
            if (W) x8 = ssm_conv_ring8(cw, wr, r, CH, W, t, tw, sf, x8, keep);
            float xs[8], acc[8 * 8], yt[8];
            vstore8(x8, 0, xs);
            const float dt = ldt[h], decay = ldecay[h];
            __local const float *Bg = lbc + grp * SSM_N, *Cg = lbc + GN + grp * SSM_N;
            for (int i = 0; i < 8; i++)
                vstore8(ssm_row_step(st + (r + i) * SSM_N, Bg, Cg, dt * xs[i], decay, fresh, keep, &yt[i]), i, acc);
            float8 y = atb_hsum8x8(vload8(0, acc), vload8(1, acc), vload8(2, acc), vload8(3, acc), vload8(4, acc),
                                   vload8(5, acc), vload8(6, acc), vload8(7, acc)) + vload8(0, yt) + D[h] * x8;
            float8 zv = vload8(j, zr), gv = y * zv * ssm_sigmoid8(zv);
            vstore8(gv, j, gr);
            part += atb_hsum8(gv * gv);
        }
    } else {
        int h = u0 / p, pi = u0 - h * p, grp = h / hpg; /* row r = (h, pi), advanced without dividing */
        for (int r = u0; r < u1; r++, pi++) {
            if (pi == p) pi = 0, h++, grp = h / hpg;
            float xs = W ? ssm_conv_ring(cw, wr, r, CH, W, t, tw, sf, xr[r], keep) : xr[r];
            float dt = ldt[h], decay = ldecay[h];
            __local const float *Bg = lbc + grp * SSM_N, *Cg = lbc + GN + grp * SSM_N;
            float tail, y = atb_hsum8(ssm_row_step(st + r * SSM_N, Bg, Cg, dt * xs, decay, fresh, keep, &tail));
            y += tail + D[h] * xs;
            float zv = zr[r], gv = y * zv * atb_sigmoid(zv);
            gr[r] = gv;
            part += gv * gv;
        }
    }
    float inv = 1.0f / sqrt(atb_group_sum(part, red) / (float)E + eps);
    for (int r = unit * u0; r < unit * u1; r++) gr[r] = gr[r] * inv * nw[r];
}

__kernel void ssm_decode(SSM_DECODE_ARGS) { ssm_decode_group(SSM_DECODE_PASS); }

#ifdef SSM_APPEND
/* -DSSM_APPEND=1 (dot.cl's -DWT for the weights, -DKV_F16=1 for a half store): the decode step of
 * the K and V SSMs as above, then in the same group what follows them in an Attamba layer (SPEC 3.2),
 * sequence b, SSM s: y_s = x + g_s Wo_s^T (y_0 = k, y_1 = v [B, C], holding x; Wo_s [C, E] rows ldw
 * apart, the pair wo_ps apart), RoPE of k and q at position pos[b] (heads of DQ = 8 * quads floats,
 * pairs adjacent; k by SSM 0's group, q [B, Hq * DQ] too) and the append of k, v as kv_append_rope
 * (attention.cl): the ring kr/vr [B, R, C] at slot pos % R, the store kb/vb at row store[b] (sequence at
 * b * bs, head c / sdh at (c / sdh) * hs, row at row * es) when 0 <= store[b] < cap, with bpos and nb.
 * Each work-item takes a run of pieces of 8 consecutive columns (8 dot products each of g_s, read back
 * from global memory after a barrier, with weight rows). One launch where there were three: on a CPU the two
 * groups of a sequence are the two cores' work, and the launches cost more than the out_proj does. */
#if KV_F16
#define KV_T half
#else
#define KV_T float
#endif
__kernel void ssm_decode_append(SSM_DECODE_ARGS, __global const BT *Wo, int woo, int wo_ps, int ldw,
                                __global float *kv, int kvo, int kv_ps, int C, __global float *q, int qo, int Hq,
                                int quads, float log2_theta, float log2_pi, __global const int *store, int so,
                                __global float *kr, int kro, __global float *vr, int vro, int R,
                                __global KV_T *kb, int kbo, __global KV_T *vb, int vbo, int cap, int bs, int hs,
                                int es, int sdh, __global int *bpos, int bpo, __global int *nb, int nbo) {
    ssm_decode_group(SSM_DECODE_PASS);
    barrier(CLK_GLOBAL_MEM_FENCE); /* the group's g, written by all its items, read by all below */
    const int lid = get_local_id(0), n = get_local_size(0), b = get_global_id(1), s = get_global_id(2);
    const int E = nh * p, t = posv[po + b], row = store[so + b], DQ = 8 * quads;
    const int stored = row >= 0 && row < cap;
    __global const float *gr = g + go + s * g_ps + b * E;
    __global float *y = kv + kvo + s * kv_ps + b * C;
    __global float *ring = (s ? vr + vro : kr + kro) + (b * R + t % R) * C;
    __global KV_T *kvs = (s ? vb + vbo : kb + kbo) + b * bs;
    Wo += B_STEP(woo + s * wo_ps);
    const int per = (C / 8 + n - 1) / n, j1 = min(C / 8, (lid + 1) * per);
    for (int j = lid * per; j < j1; j++) { /* a run of consecutive pieces: one stream through Wo (a CPU) */
        float o[8];
        for (int i = 0; i < 8; i++) o[i] = y[8 * j + i] + dot_row(gr, Wo + B_STEP((8 * j + i) * ldw), E);
        float8 v = vload8(0, o);
        if (s == 0) {
            float4 c, sn;
            atb_rope_angles4((float)t, j % quads, quads, log2_theta, log2_pi, 1.0f, &c, &sn);
            v = atb_rope8(v, c, sn);
        }
        vstore8(v, j, y);
        vstore8(v, j, ring);
        if (!stored) continue;
        const int col = 8 * j, at = (col / sdh) * hs + row * es + col % sdh;
#if KV_F16
        vstore_half8_rte(v, 0, kvs + at);
#else
        vstore8(v, 0, kvs + at);
#endif
    }
    if (s) return;
    for (int j = lid; j < Hq * quads; j += n) { /* q's pieces: head j / quads, piece j % quads */
        __global float *qp = q + qo + b * Hq * DQ + 8 * j;
        float4 c, sn;
        atb_rope_angles4((float)t, j % quads, quads, log2_theta, log2_pi, 1.0f, &c, &sn);
        vstore8(atb_rope8(vload8(0, qp), c, sn), 0, qp);
    }
    if (lid == 0 && stored) {
        bpos[bpo + b * cap + row] = t;
        nb[nbo + b] = row + 1;
    }
}
#endif
