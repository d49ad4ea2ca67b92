#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref_layer.h"
#include "ref_ssm.h"

static double silu(double v) { return v / (1.0 + exp(-v)); }

double ref_softplus(double x) { return x > 20.0 ? x : log1p(exp(x)); }

void ref_conv1d(int B, int T, int C, int W, const float *x, const float *w, const int32_t *seg_start, int silu_on,
                float *out) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) {
                double acc = 0;
                for (int j = 0; j < W; j++) {
                    int s = t - (W - 1) + j;
                    if (s < 0 || s < seg_start[t]) continue;
                    acc += (double)w[(int64_t)c * W + j] * x[((int64_t)b * T + s) * C + c];
                }
                out[((int64_t)b * T + t) * C + c] = (float)(silu_on ? silu(acc) : acc);
            }
}

void ref_conv1d_step(int B, int C, int W, const float *x, const float *w, float *state, const int32_t *restart,
                     int silu_on, float *out) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            float *st = state + (int64_t)b * (W - 1) * C + c;
            double acc = (double)w[(int64_t)c * W + W - 1] * x[(int64_t)b * C + c];
            for (int j = 0; j < W - 1; j++)
                if (!restart[b]) acc += (double)w[(int64_t)c * W + j] * st[(int64_t)j * C];
            /* the window slides by one: oldest out, this token in (a restart forgets the rest) */
            for (int j = 0; j < W - 2; j++) st[(int64_t)j * C] = restart[b] ? 0.0f : st[(int64_t)(j + 1) * C];
            if (W > 1) st[(int64_t)(W - 2) * C] = x[(int64_t)b * C + c];
            out[(int64_t)b * C + c] = (float)(silu_on ? silu(acc) : acc);
        }
}

/* One token of one head: S [p,N] in double, updated; y row written. */
static void head_token(int p, int N, double dt, double A, double Dh, const float *x, const float *Bt,
                       const float *Ct, double *S, float *y) {
    double decay = exp(dt * A);
    for (int i = 0; i < p; i++) {
        double acc = 0, u = dt * x[i];
        for (int n = 0; n < N; n++) {
            double *s = &S[(int64_t)i * N + n];
            *s = decay * *s + u * Bt[n];
            acc += *s * Ct[n];
        }
        y[i] = (float)(acc + Dh * x[i]);
    }
}

void ref_ssm_scan(int B, int T, int nh, int p, int G, int N, const float *xs, const float *Bm, const float *Cm,
                  const float *dt_raw, const float *dt_bias, const float *A_log, const float *D,
                  const int32_t *seg_start, float *y, float *final_state) {
    int E = nh * p, GN = G * N, hpg = nh / G;
    double *S = malloc((size_t)p * N * sizeof *S);
    if (!S) abort();
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nh; h++) {
            int g = h / hpg;
            double A = -exp((double)A_log[h]);
            /* walk the segments: [t0, t1) is one run sharing seg_start */
            for (int t0 = 0; t0 < T;) {
                int t1 = t0 + 1;
                while (t1 < T && seg_start[t1] == seg_start[t0]) t1++;
                memset(S, 0, (size_t)p * N * sizeof *S);
                for (int t = t0; t < t1; t++) {
                    int64_t bt = (int64_t)b * T + t;
                    double dt = ref_softplus((double)dt_raw[bt * nh + h] + (dt_bias ? dt_bias[h] : 0.0));
                    head_token(p, N, dt, A, D[h], xs + bt * E + (int64_t)h * p, Bm + bt * GN + (int64_t)g * N,
                               Cm + bt * GN + (int64_t)g * N, S, y + bt * E + (int64_t)h * p);
                }
                if (t1 == T && final_state)
                    for (int64_t i = 0; i < (int64_t)p * N; i++)
                        final_state[((int64_t)b * nh + h) * p * N + i] = (float)S[i];
                t0 = t1;
            }
        }
    free(S);
}

void ref_ssm_step(int B, int nh, int p, int G, int N, const float *xs, const float *Bm, const float *Cm,
                  const float *dt_raw, const float *dt_bias, const float *A_log, const float *D,
                  const int32_t *restart, float *state, float *y) {
    int E = nh * p, GN = G * N, hpg = nh / G;
    double *S = malloc((size_t)p * N * sizeof *S);
    if (!S) abort();
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nh; h++) {
            int g = h / hpg;
            float *st = state + ((int64_t)b * nh + h) * p * N;
            for (int64_t i = 0; i < (int64_t)p * N; i++) S[i] = restart[b] ? 0.0 : st[i];
            double dt = ref_softplus((double)dt_raw[(int64_t)b * nh + h] + (dt_bias ? dt_bias[h] : 0.0));
            head_token(p, N, dt, -exp((double)A_log[h]), D[h], xs + (int64_t)b * E + (int64_t)h * p,
                       Bm + (int64_t)b * GN + (int64_t)g * N, Cm + (int64_t)b * GN + (int64_t)g * N, S,
                       y + (int64_t)b * E + (int64_t)h * p);
            for (int64_t i = 0; i < (int64_t)p * N; i++) st[i] = (float)S[i];
        }
    free(S);
}

void ref_ssm_decode(int B, int nh, int p, int G, int N, int W, const float *xbcdt, int x_rs, const float *z,
                    const float *conv_w, float *window, const float *dt_bias, const float *A_log, const float *D,
                    const float *norm_w, float eps, const int32_t *pos, const int32_t *seg_first, float *state,
                    float *g) {
    int E = nh * p, GN = G * N, CH = E + 2 * GN;
    float *xbc = malloc((size_t)B * CH * sizeof *xbc), *dt = malloc((size_t)B * nh * sizeof *dt);
    float *y = malloc((size_t)B * E * sizeof *y);
    int32_t *restart = malloc((size_t)B * sizeof *restart);
    if (!xbc || !dt || !y || !restart) abort();
    for (int b = 0; b < B; b++) {
        const float *xr = xbcdt + (int64_t)b * x_rs;
        int t = pos[b], sf = seg_first[b];
        restart[b] = t == sf;
        for (int h = 0; h < nh; h++) dt[b * nh + h] = xr[CH + h];
        for (int c = 0; c < CH; c++) {
            if (!conv_w) {
                xbc[(int64_t)b * CH + c] = xr[c];
                continue;
            }
            float *win = window + (int64_t)b * W * CH;
            double acc = (double)conv_w[c * W + W - 1] * xr[c];
            for (int k = 1; k < W; k++)
                if (t - k >= sf) acc += (double)conv_w[c * W + W - 1 - k] * win[((t - k) % W) * CH + c];
            xbc[(int64_t)b * CH + c] = (float)silu(acc);
        }
        if (conv_w)
            for (int c = 0; c < CH; c++) window[(int64_t)b * W * CH + (t % W) * CH + c] = xr[c];
    }
    /* xs, B, C are column blocks of xbc: gather them for ref_ssm_step */
    float *xs = malloc((size_t)B * E * sizeof *xs), *Bm = malloc((size_t)B * GN * sizeof *Bm),
          *Cm = malloc((size_t)B * GN * sizeof *Cm);
    if (!xs || !Bm || !Cm) abort();
    for (int b = 0; b < B; b++) {
        memcpy(xs + (int64_t)b * E, xbc + (int64_t)b * CH, (size_t)E * sizeof *xs);
        memcpy(Bm + (int64_t)b * GN, xbc + (int64_t)b * CH + E, (size_t)GN * sizeof *Bm);
        memcpy(Cm + (int64_t)b * GN, xbc + (int64_t)b * CH + E + GN, (size_t)GN * sizeof *Cm);
    }
    ref_ssm_step(B, nh, p, G, N, xs, Bm, Cm, dt, dt_bias, A_log, D, restart, state, y);
    ref_gated_rmsnorm(B, E, y, z, norm_w, eps, g);
    free(xbc), free(dt), free(y), free(restart), free(xs), free(Bm), free(Cm);
}

/* ------------------------------------------------------------------------------------- backward */

/* d softplus(v) / dv as the forward computes softplus: the identity above 20. */
static double dsoftplus(double v) { return v > 20.0 ? 1.0 : 1.0 / (1.0 + exp(-v)); }

void ref_conv1d_backward(int B, int T, int C, int W, const float *x, const float *w, const int32_t *seg_start,
                         int silu_on, const float *dout, float *dx, float *dw) {
    int64_t n = (int64_t)B * T * C;
    double *g = malloc((size_t)n * sizeof *g), *gx = calloc((size_t)n, sizeof *gx);
    double *gw = calloc((size_t)C * W, sizeof *gw);
    if (!g || !gx || !gw) abort();
    /* g = dL/d(pre-activation) */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) {
                int64_t i = ((int64_t)b * T + t) * C + c;
                double pre = 0;
                for (int j = 0; j < W; j++) {
                    int s = t - (W - 1) + j;
                    if (s >= 0 && s >= seg_start[t]) pre += (double)w[(int64_t)c * W + j] * x[i + (int64_t)(s - t) * C];
                }
                double sg = 1.0 / (1.0 + exp(-pre));
                g[i] = dout[i] * (silu_on ? sg * (1.0 + pre * (1.0 - sg)) : 1.0);
            }
    /* every live tap (t, j) reads x at s = t-(W-1)+j with weight w[c, j] */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) {
                int64_t i = ((int64_t)b * T + t) * C + c;
                for (int j = 0; j < W; j++) {
                    int s = t - (W - 1) + j;
                    if (s < 0 || s < seg_start[t]) continue;
                    int64_t is = i + (int64_t)(s - t) * C;
                    gx[is] += g[i] * w[(int64_t)c * W + j];
                    gw[(int64_t)c * W + j] += g[i] * x[is];
                }
            }
    if (dx)
        for (int64_t i = 0; i < n; i++) dx[i] = (float)gx[i];
    if (dw)
        for (int64_t i = 0; i < (int64_t)C * W; i++) dw[i] = (float)(dw[i] + gw[i]);
    free(g), free(gx), free(gw);
}

void ref_ssm_scan_backward(int B, int T, int nh, int p, int G, int N, const float *xs, const float *Bm,
                           const float *Cm, const float *dt_raw, const float *dt_bias, const float *A_log,
                           const float *D, const int32_t *seg_start, const float *dy, float *dxs, float *dBm,
                           float *dCm, float *ddt_raw, float *ddt_bias, float *dA_log, float *dD) {
    int E = nh * p, GN = G * N, hpg = nh / G;
    int64_t pN = (int64_t)p * N, nbn = (int64_t)B * T * GN;
    /* the states S_t of one segment, the state gradient G_t, and double sums over heads */
    double *S = malloc((size_t)T * pN * sizeof *S), *Gr = malloc((size_t)pN * sizeof *Gr);
    double *gB = calloc((size_t)nbn, sizeof *gB), *gC = calloc((size_t)nbn, sizeof *gC);
    if (!S || !Gr || !gB || !gC) abort();
    for (int h = 0; h < nh; h++) {
        int g = h / hpg;
        double A = -exp((double)A_log[h]), sumA = 0, sumbias = 0, sumD = 0;
        for (int b = 0; b < B; b++)
            for (int t0 = 0; t0 < T;) {
                int t1 = t0 + 1;
                while (t1 < T && seg_start[t1] != t1) t1++;
                /* forward over [t0, t1): S_t = decay_t S_{t-1} + dt_t x_t B_t^T, S_{t0-1} = 0 */
                for (int t = t0; t < t1; t++) {
                    int64_t bt = (int64_t)b * T + t;
                    double dt = ref_softplus((double)dt_raw[bt * nh + h] + (dt_bias ? dt_bias[h] : 0.0));
                    double decay = t > t0 ? exp(dt * A) : 0.0;
                    double *s = S + (int64_t)t * pN;
                    for (int i = 0; i < p; i++)
                        for (int n = 0; n < N; n++)
                            s[i * N + n] = (t > t0 ? decay * s[i * N + n - pN] : 0.0) +
                                           dt * xs[bt * E + h * p + i] * Bm[bt * GN + g * N + n];
                }
                /* backward: G_t = dy_t C_t^T + decay_{t+1} G_{t+1}, zero after the segment's last token */
                memset(Gr, 0, (size_t)pN * sizeof *Gr);
                for (int t = t1 - 1; t >= t0; t--) {
                    int64_t bt = (int64_t)b * T + t;
                    double v = (double)dt_raw[bt * nh + h] + (dt_bias ? dt_bias[h] : 0.0);
                    double dt = ref_softplus(v), decay = t > t0 ? exp(dt * A) : 0.0;
                    if (t + 1 < t1) {
                        double vn = (double)dt_raw[(bt + 1) * nh + h] + (dt_bias ? dt_bias[h] : 0.0);
                        double dn = exp(ref_softplus(vn) * A);
                        for (int64_t k = 0; k < pN; k++) Gr[k] *= dn;
                    }
                    const float *x = xs + bt * E + h * p, *dyt = dy + bt * E + h * p;
                    const float *Bt = Bm + bt * GN + g * N, *Ct = Cm + bt * GN + g * N;
                    for (int i = 0; i < p; i++)
                        for (int n = 0; n < N; n++) Gr[i * N + n] += (double)dyt[i] * Ct[n];
                    const double *s = S + (int64_t)t * pN, *sp = S + (int64_t)(t - 1) * pN;
                    double gxb = 0, gsp = 0;
                    for (int n = 0; n < N; n++) {
                        double c = 0, bb = 0;
                        for (int i = 0; i < p; i++) {
                            c += s[i * N + n] * dyt[i];
                            bb += Gr[i * N + n] * x[i];
                        }
                        gC[bt * GN + g * N + n] += c;
                        gB[bt * GN + g * N + n] += dt * bb;
                    }
                    for (int i = 0; i < p; i++) {
                        double gb = 0;
                        for (int n = 0; n < N; n++) {
                            gb += Gr[i * N + n] * Bt[n];
                            if (t > t0) gsp += Gr[i * N + n] * sp[i * N + n];
                        }
                        gxb += gb * x[i];
                        if (dxs) dxs[bt * E + h * p + i] = (float)(D[h] * dyt[i] + dt * gb);
                        sumD += (double)dyt[i] * x[i];
                    }
                    /* dt enters through u = dt x and through decay = exp(dt A) */
                    double gdt = gxb + A * decay * gsp, graw = gdt * dsoftplus(v);
                    if (ddt_raw) ddt_raw[bt * nh + h] = (float)graw;
                    sumbias += graw;
                    sumA += dt * decay * gsp;
                }
                t0 = t1;
            }
        if (ddt_bias && dt_bias) ddt_bias[h] = (float)(ddt_bias[h] + sumbias);
        if (dA_log) dA_log[h] = (float)(dA_log[h] + sumA * A);
        if (dD) dD[h] = (float)(dD[h] + sumD);
    }
    for (int64_t i = 0; i < nbn; i++) {
        if (dBm) dBm[i] = (float)gB[i];
        if (dCm) dCm[i] = (float)gC[i];
    }
    free(S), free(Gr), free(gB), free(gC);
}
