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

inline float ssm_softplus(float v) { return v > 20.0f ? v : log1p(exp(v)); }

/* dt of (b, t, h): softplus(dt_raw + bias). */
#define SSM_DT(b, t, h) ssm_softplus(dtr[dto + (b) * dt_bs + (t) * dt_rs + (h)] + bias)

/* One token: S = decay * S + dt x B; returns S . C. decay == 0 restarts the state. */
inline float ssm_token(float *S, float decay, float u, __global const float *Bt, __global const float *Ct) {
    float acc = 0.0f;
    for (int n = 0; n < SSM_N; n++) {
        S[n] = decay * S[n] + u * Bt[n];
        acc += S[n] * Ct[n];
    }
    return acc;
}

/* Scans blocks of Q tokens; see the header for the two modes.
 * mode 0: st = final_state [B,nh,p,N] (written by whoever scans token T-1 when want_final).
 * mode 1: st = block end states [B,nblk,nh,p,N], dec = block decays [B,nblk,nh]. */
__kernel void ssm_scan_blocks(__global float *y, int yo, SSM_IN_ARGS, __global const int *seg, int so,
                              __global float *st, int sto, __global float *dec, int deo, int B, int T, int nh,
                              int p, int hpg, int Q, int nblk, int mode, int want_final) {
    int gid = get_global_id(0);
    if (gid >= B * nblk * nh * p) return;
    int pi = gid % p, r = gid / p;
    int h = r % nh;
    r /= nh;
    int k = r % nblk, b = r / nblk;
    int E = nh * p, g = h / hpg;
    float a = -exp(A_log[ao + h]), dh = D[Do + h], bias = has_bias ? dt_bias[dbo + h] : 0.0f;
    int t0 = k * Q, t1 = min(T, t0 + Q);
    float S[SSM_N];
    for (int n = 0; n < SSM_N; n++) S[n] = 0.0f;

    int t = t0, end = t1;
    if (mode == 0) {
        /* skip the tail of a segment begun in an earlier block; run past t1 to our last segment's end */
        while (t < t1 && seg[so + t] != t) t++;
        if (t == t1) return;
        end = t1;
        while (end < T && seg[so + end] != end) end++;
    }
    float logdec = 0.0f;
    int cont = 1;
    for (; t < end; t++) {
        float dt = SSM_DT(b, t, h);
        int restart = seg[so + t] == t;
        cont &= !restart;
        logdec += dt * a;
        float xv = xs[xo + b * x_bs + t * x_rs + h * p + pi];
        float acc = ssm_token(S, restart ? 0.0f : exp(dt * a), dt * xv, Bm + bo + b * b_bs + t * b_rs + g * SSM_N,
                              Cm + co + b * c_bs + t * c_rs + g * SSM_N);
        y[yo + (b * T + t) * E + h * p + pi] = acc + dh * xv;
    }
    if (mode == 0) {
        if (end == T && want_final) {
            __global float *f = st + sto + ((b * nh + h) * p + pi) * SSM_N;
            for (int n = 0; n < SSM_N; n++) f[n] = S[n];
        }
        return;
    }
    /* the end state is needed when the segment runs on into the next block, or for final_state */
    int need = t1 < T ? seg[so + t1] != t1 : want_final;
    if (need) {
        __global float *f = st + sto + (((b * nblk + k) * nh + h) * p + pi) * SSM_N;
        for (int n = 0; n < SSM_N; n++) f[n] = S[n];
    }
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
__kernel void ssm_fix(__global float *y, int yo, SSM_IN_ARGS, __global const int *seg, int so,
                      __global const float *st, int sto, int B, int T, int nh, int p, int hpg, int Q, int nblk) {
    int gid = get_global_id(0);
    if (gid >= B * (nblk - 1) * nh * p) return;
    int pi = gid % p, r = gid / p;
    int h = r % nh;
    r /= nh;
    int k = 1 + r % (nblk - 1), b = r / (nblk - 1);
    int t0 = k * Q, t1 = min(T, t0 + Q), E = nh * p, g = h / hpg;
    if (seg[so + t0] == t0) return;
    float a = -exp(A_log[ao + h]), bias = has_bias ? dt_bias[dbo + h] : 0.0f;
    float S[SSM_N];
    __global const float *e = st + sto + (((b * nblk + k - 1) * nh + h) * p + pi) * SSM_N;
    for (int n = 0; n < SSM_N; n++) S[n] = e[n];
    for (int t = t0; t < t1 && seg[so + t] != t; t++) {
        float decay = exp(SSM_DT(b, t, h) * a);
        __global const float *Ct = Cm + co + b * c_bs + t * c_rs + g * SSM_N;
        float acc = 0.0f;
        for (int n = 0; n < SSM_N; n++) {
            S[n] *= decay;
            acc += S[n] * Ct[n];
        }
        y[yo + (b * T + t) * E + h * p + pi] += acc;
    }
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
    float S[SSM_N];
    for (int n = 0; n < SSM_N; n++) S[n] = rs ? 0.0f : row[n];
    float dt = ssm_softplus(dtr[dto + b * dt_rs + h] + bias);
    float xv = xs[xo + b * x_rs + h * p + pi];
    float acc = ssm_token(S, exp(dt * a), dt * xv, Bm + bo + b * b_rs + g * SSM_N, Cm + co + b * c_rs + g * SSM_N);
    for (int n = 0; n < SSM_N; n++) row[n] = S[n];
    y[yo + gid] = acc + D[Do + h] * xv;
}
