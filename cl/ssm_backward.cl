/* ssm_backward.cl: gradients of the SSM scan of cl/ssm.cl (SPEC 3.1), for training.
 * Compiled with -DSSM_N=<state size> -DSSM_P=<head dim>. Per head, within a segment (t0 .. t1-1):
 *   S_t = a_t S_{t-1} + dt_t x_t B_t^T (a_t0 = 0),  y_t = S_t C_t + D x_t,
 *   G_t = dL/dS_t = dy_t C_t^T + a_{t+1} G_{t+1}     (G = 0 after the segment's last token).
 * States are recomputed, never stored. Three scans, each parallel over (batch, segment, head, lane):
 *  - ssmb_cols, lane = state column n (a work-item holds S[:, n], then G[:, n], p floats): forward
 *    for dCh_t[n] = sum_i S_t[i,n] dy_t[i], backward for U_t[n] = sum_i G_t[i,n] x_t[i]; both per
 *    head into scratch [B,T,nh,N], summed over the heads of a group by ssmb_bc (dC = sum dCh,
 *    dB = sum dt U): no cross-work-item reduction inside a scan.
 *  - ssmb_rows, lane = state row i (G[i, :], N floats): dx_t[i] = D dy_t[i] + dt_t G_t[i,:] . B_t.
 * The decay gradient needs <G_t, S_{t-1}>, which no single scan holds. It comes from the identity
 * (pairs s <= t of the quadratic form; l_r = dt_r A is the log-decay of token r)
 *   dL/dl_r = sum_{t >= r in the segment} (Y_t - X_t),  Y_t = dy_t . (S_t C_t) = dCh_t . C_t,
 *   X_t = dt_t x_t . (G_t B_t) = dt_t U_t . B_t,
 * a reverse cumulative sum per (b, h) (ssmb_params); dL/dl = 0 at a segment's first token.
 * Then d dt_t = U_t . B_t + A dL/dl_t and dA = sum_t dt_t dL/dl_t.
 * Segments are assigned as in the sequential forward path: the work-item of block k (Q tokens)
 * handles every segment that STARTS in block k, to its end. */

#ifndef SSM_N
#error "compile with -DSSM_N=<state size> -DSSM_P=<head dim>"
#endif
#ifndef SSM_P
#error "compile with -DSSM_N=<state size> -DSSM_P=<head dim>"
#endif

/* A row-strided input or output: buffer, offset, row stride, batch stride. */
#define SSMB_ROWS(name, pre) __global const float *name, int pre##o, int pre##_rs, int pre##_bs
#define SSMB_AT(pre, b, t) (pre##o + (b) * pre##_bs + (t) * pre##_rs)

/* Private vectors (ATB_VEC8) and the one update all three scans make (ATB_DEFINE_VEC_STEP:
 * V = a V + s v1, returning V . v2) are in common.cl, shared with the forward scan of cl/ssm.cl. */
ATB_DEFINE_VEC_STEP(ssmb_step_p, SSM_P)
ATB_DEFINE_VEC_STEP(ssmb_step_n, SSM_N)

/* The scans' work-item layouts. -DSSM_VN (column scans) and -DSSM_VP (row scan), default 1: one column
 * (row) per work-item with its state along the vector lanes (ATB_VEC8: p, resp. N floats); 2..16 (dividing
 * N, resp. p; CPUs: ssm.vp): that many columns (rows) as one vector, the state p (N) such vectors, the
 * other operand broadcast, and the results as vectors without a horizontal sum. SSMB_CT is a work-item's
 * columns (SSMB_RT rows); STEP(S, a, s, v1, v2) makes S = a S + s v1 and returns S . v2 per lane. */
#ifndef SSM_VN
#define SSM_VN 1
#endif
#ifndef SSM_VP
#define SSM_VP 1
#endif
#define SSMB_CAT_(a, b) a##b
#define SSMB_CAT(a, b) SSMB_CAT_(a, b)
#if SSM_VN > 1
#define SSMB_CT SSMB_CAT(float, SSM_VN)
#define SSMB_CLOAD(p) SSMB_CAT(vload, SSM_VN)(0, (p))
#define SSMB_CSTORE(v, p) SSMB_CAT(vstore, SSM_VN)((v), 0, (p))
#define SSMB_CSTATE(S) SSMB_CT S[SSM_P]
#define SSMB_CZERO(S) for (int i_ = 0; i_ < SSM_P; i_++) S[i_] = (SSMB_CT)(0.0f)
#define SSMB_CSTEP(S, a, s, v1, v2) ssmb_cols_step(S, a, s, v1, v2)
ATB_DEFINE_LANES_STEP(ssmb_cols_step, SSMB_CT, SSM_P)
#else
#define SSMB_CT float
#define SSMB_CLOAD(p) (*(p))
#define SSMB_CSTORE(v, p) (*(p) = (v))
#define SSMB_CSTATE(S) ATB_VEC8(S##8, S##t, SSM_P)
#define SSMB_CZERO(S) ssmb_step_p_zero(S##8, S##t)
#define SSMB_CSTEP(S, a, s, v1, v2) ssmb_step_p(S##8, S##t, a, s, v1, v2)
#endif
#if SSM_VP > 1
#define SSMB_RT SSMB_CAT(float, SSM_VP)
#define SSMB_RLOAD(p) SSMB_CAT(vload, SSM_VP)(0, (p))
#define SSMB_RSTORE(v, p) SSMB_CAT(vstore, SSM_VP)((v), 0, (p))
#define SSMB_RSTATE(G) SSMB_RT G[SSM_N]
#define SSMB_RZERO(G) for (int n_ = 0; n_ < SSM_N; n_++) G[n_] = (SSMB_RT)(0.0f)
#define SSMB_RSTEP(G, a, s, v1, v2) ssmb_rows_step(G, a, s, v1, v2)
ATB_DEFINE_LANES_STEP(ssmb_rows_step, SSMB_RT, SSM_N)
#else
#define SSMB_RT float
#define SSMB_RLOAD(p) (*(p))
#define SSMB_RSTORE(v, p) (*(p) = (v))
#define SSMB_RSTATE(G) ATB_VEC8(G##8, G##t, SSM_N)
#define SSMB_RZERO(G) ssmb_step_n_zero(G##8, G##t)
#define SSMB_RSTEP(G, a, s, v1, v2) ssmb_step_n(G##8, G##t, a, s, v1, v2)
#endif

/* Per (b, t, h): dt, decay exp(dt A), d dt / d dt_raw (softplus' as the forward computes softplus); a
 * work-item takes SSM_VP tokens of one (b, h) as one vector, as ssm_dt does (PoCL's exp is scalar
 * unless written on vectors). */
__kernel void ssmb_dt(__global float4 *dd, SSMB_ROWS(dtr, dt), __global const float *dt_bias, int dbo, int has_bias,
                      __global const float *A_log, int ao, int B, int T, int nh) {
    int i = get_global_id(0), nt = (T + SSM_VP - 1) / SSM_VP;
    if (i >= B * nt * nh) return;
    int h = i % nh, r = i / nh, t0 = r % nt * SSM_VP, b = r / nt;
    float bias = has_bias ? dt_bias[dbo + h] : 0.0f, v[SSM_VP], o[3 * SSM_VP];
    for (int l = 0; l < SSM_VP; l++) v[l] = dtr[SSMB_AT(dt, b, min(t0 + l, T - 1)) + h] + bias;
    SSMB_RT x = SSMB_RLOAD(v), dt = x > 20.0f ? x : log1p(exp(x));
    SSMB_RSTORE(dt, o);
    SSMB_RSTORE(exp(-dt * exp(A_log[ao + h])), o + SSM_VP);
    SSMB_RSTORE(x > 20.0f ? (SSMB_RT)(1.0f) : 1.0f / (1.0f + exp(-x)), o + 2 * SSM_VP);
    for (int l = 0; l < SSM_VP && t0 + l < T; l++)
        dd[(b * T + t0 + l) * nh + h] = (float4)(o[l], o[SSM_VP + l], o[2 * SSM_VP + l], 0.0f);
}

/* Column scans: one work-item per (b, block, h, SSM_VN columns from n), n fastest (neighbours share the
 * xs/dy rows). */
__kernel void ssmb_cols(__global float *dch, __global float *u, SSMB_ROWS(xs, x), SSMB_ROWS(Bm, b),
                        SSMB_ROWS(Cm, c), SSMB_ROWS(dy, gy), __global const float4 *dd, __global const int *seg,
                        int so, int B, int T, int nh, int hpg, int Q, int nblk) {
    int gid = get_global_id(0), nv = SSM_N / SSM_VN;
    if (gid >= B * nblk * nh * nv) return;
    int n = (gid % nv) * SSM_VN, r = gid / nv;
    int h = r % nh;
    r /= nh;
    int k = r % nblk, bb = r / nblk;
    int col = (h / hpg) * SSM_N + n, hp = h * SSM_P;
    int t1 = min(T, (k + 1) * Q);
    SSMB_CSTATE(S);
    for (int t = k * Q; t < t1; t++) {
        if (seg[so + t] != t) continue;
        int e = atb_next_start(seg, so, t + 1, T);
        /* forward: S[:, n] += dt B[n] x */
        SSMB_CZERO(S);
        for (int s = t; s < e; s++) {
            float4 d = dd[(bb * T + s) * nh + h];
            __global const float *xr = xs + SSMB_AT(x, bb, s) + hp, *gr = dy + SSMB_AT(gy, bb, s) + hp;
            SSMB_CT acc = SSMB_CSTEP(S, s > t ? d.y : 0.0f, d.x * SSMB_CLOAD(Bm + SSMB_AT(b, bb, s) + col), xr, gr);
            SSMB_CSTORE(acc, dch + ((bb * T + s) * nh + h) * SSM_N + n);
        }
        /* backward: G[:, n] = a_{s+1} G[:, n] + C[n] dy */
        SSMB_CZERO(S);
        float an = 0.0f; /* a_{s+1} */
        for (int s = e - 1; s >= t; s--) {
            __global const float *xr = xs + SSMB_AT(x, bb, s) + hp, *gr = dy + SSMB_AT(gy, bb, s) + hp;
            SSMB_CT acc = SSMB_CSTEP(S, an, SSMB_CLOAD(Cm + SSMB_AT(c, bb, s) + col), gr, xr);
            SSMB_CSTORE(acc, u + ((bb * T + s) * nh + h) * SSM_N + n);
            an = dd[(bb * T + s) * nh + h].y;
        }
        t = e - 1; /* the loop's t++ lands on the next segment's start */
    }
}

/* Row scan: one work-item per (b, block, h, SSM_VP rows from i), i fastest; writes dx (row-strided). */
__kernel void ssmb_rows(__global float *dx, int dxo, int dx_rs, int dx_bs, SSMB_ROWS(Bm, b), SSMB_ROWS(Cm, c),
                        SSMB_ROWS(dy, gy), __global const float4 *dd, __global const int *seg, int so,
                        __global const float *D, int Do, int B, int T, int nh, int p, int hpg, int Q, int nblk) {
    int gid = get_global_id(0), pv = p / SSM_VP;
    if (gid >= B * nblk * nh * pv) return;
    int pi = (gid % pv) * SSM_VP, r = gid / pv;
    int h = r % nh;
    r /= nh;
    int k = r % nblk, bb = r / nblk;
    int go = (h / hpg) * SSM_N, col = h * p + pi;
    float dh = D[Do + h];
    int t1 = min(T, (k + 1) * Q);
    SSMB_RSTATE(G);
    for (int t = k * Q; t < t1; t++) {
        if (seg[so + t] != t) continue;
        int e = atb_next_start(seg, so, t + 1, T);
        SSMB_RZERO(G);
        float an = 0.0f;
        for (int s = e - 1; s >= t; s--) {
            float4 d = dd[(bb * T + s) * nh + h];
            SSMB_RT gv = SSMB_RLOAD(dy + SSMB_AT(gy, bb, s) + col);
            SSMB_RT acc = SSMB_RSTEP(G, an, gv, Cm + SSMB_AT(c, bb, s) + go, Bm + SSMB_AT(b, bb, s) + go);
            SSMB_RSTORE(dh * gv + d.x * acc, dx + dxo + bb * dx_bs + s * dx_rs + col);
            an = d.y;
        }
        t = e - 1;
    }
}

/* Per (b, t, g, n), n fastest: dC = sum over the group's heads of dCh, dB = sum of dt U. */
__kernel void ssmb_bc(__global float *dB, int dbo_, int dB_rs, int dB_bs, int want_b, __global float *dC, int dco_,
                      int dC_rs, int dC_bs, int want_c, __global const float *dch, __global const float *u,
                      __global const float4 *dd, int B, int T, int nh, int hpg) {
    int gid = get_global_id(0);
    int G = nh / hpg;
    if (gid >= B * T * G * SSM_N) return;
    int n = gid % SSM_N, r = gid / SSM_N;
    int g = r % G, bt = r / G, t = bt % T, b = bt / T;
    float sb = 0.0f, sc = 0.0f;
    for (int h = g * hpg; h < (g + 1) * hpg; h++) {
        int i = (bt * nh + h) * SSM_N + n;
        sc += dch[i];
        sb += dd[bt * nh + h].x * u[i];
    }
    if (want_b) dB[dbo_ + b * dB_bs + t * dB_rs + g * SSM_N + n] = sb;
    if (want_c) dC[dco_ + b * dC_bs + t * dC_rs + g * SSM_N + n] = sc;
}

/* Per (b, t, h): tok = (Y_t - X_t, U_t . B_t, dy_t . x_t) (see the header). */
__kernel void ssmb_tok(__global float4 *tok, __global const float *dch, __global const float *u,
                       __global const float4 *dd, SSMB_ROWS(xs, x), SSMB_ROWS(Bm, b), SSMB_ROWS(Cm, c),
                       SSMB_ROWS(dy, gy), int B, int T, int nh, int hpg) {
    int i = get_global_id(0);
    if (i >= B * T * nh) return;
    int h = i % nh, bt = i / nh, t = bt % T, bb = bt / T;
    int go = (h / hpg) * SSM_N, hp = h * SSM_P;
    __global const float *br = Bm + SSMB_AT(b, bb, t) + go, *cr = Cm + SSMB_AT(c, bb, t) + go;
    __global const float *xr = xs + SSMB_AT(x, bb, t) + hp, *gr = dy + SSMB_AT(gy, bb, t) + hp;
    float y = 0.0f, xd = 0.0f, dD = 0.0f;
    for (int n = 0; n < SSM_N; n++) {
        y += dch[i * SSM_N + n] * cr[n];
        xd += u[i * SSM_N + n] * br[n];
    }
    for (int j = 0; j < SSM_P; j++) dD += gr[j] * xr[j];
    tok[i] = (float4)(y - dd[i].x * xd, xd, dD, 0.0f);
}

/* Per head h: the reverse cumulative sum over each segment gives dL/dl_t; writes ddt_raw (when
 * want_dt) and accumulates ddt_bias, dA_log, dD (when wanted), summing over (b, t) in a fixed order. */
__kernel void ssmb_params(__global const float4 *tok, __global const float4 *dd, __global const int *seg, int so,
                          __global const float *A_log, int ao, __global float *ddt, int gto, int gt_rs, int gt_bs,
                          int want_dt, __global float *dbias, int gbo, int want_bias, __global float *dA_log,
                          int gao, int want_a, __global float *dD, int gdo, int want_d, int B, int T, int nh) {
    int h = get_global_id(0);
    if (h >= nh) return;
    float A = -exp(A_log[ao + h]), sa = 0.0f, sbias = 0.0f, sd = 0.0f;
    for (int b = 0; b < B; b++) {
        float run = 0.0f;
        for (int t = T - 1; t >= 0; t--) {
            int i = (b * T + t) * nh + h;
            float4 q = tok[i], d = dd[i];
            int start = seg[so + t] == t;
            run += q.x;
            float dl = start ? 0.0f : run;
            if (start) run = 0.0f;
            float graw = (q.y + A * dl) * d.z;
            if (want_dt) ddt[gto + b * gt_bs + t * gt_rs + h] = graw;
            sbias += graw;
            sa += d.x * dl;
            sd += q.z;
        }
    }
    if (want_bias) dbias[gbo + h] += sbias;
    if (want_a) dA_log[gao + h] += sa * A;
    if (want_d) dD[gdo + h] += sd;
}
