#include <math.h>
#include <stdlib.h>
#include <string.h>

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
