#include <math.h>
#include <stdlib.h>

#include "ref_layer.h"
#include "ref_layer_backward.h"

static double sigmoid(double v) { return 1.0 / (1.0 + exp(-v)); }
/* d/dv of v * sigmoid(v) */
static double dsilu(double v) {
    double s = sigmoid(v);
    return s * (1.0 + v * (1.0 - s));
}

/* Shared by both norms: g is the normalized quantity of each row (x, or y * silu(z)).
 * With r = 1/sqrt(mean(g^2) + eps) and s = sum_c dout_c w_c g_c:
 *   dg_c = r dout_c w_c - g_c r^3 s / C,   dw_c += dout_c g_c r. */
static void norm_backward(int64_t rows, int64_t C, const float *a, const float *z, const float *w, float eps,
                          const float *dout, float *da, float *dz, float *dw) {
    double *acc = dw ? calloc((size_t)C, sizeof *acc) : NULL;
    for (int64_t r = 0; r < rows; r++) {
        const float *ar = a + r * C, *zr = z ? z + r * C : NULL, *gr = dout + r * C;
        double ss = 0, s = 0;
        for (int64_t c = 0; c < C; c++) {
            double g = zr ? ar[c] * zr[c] * sigmoid(zr[c]) : ar[c];
            ss += g * g;
            s += (double)gr[c] * w[c] * g;
        }
        double inv = 1.0 / sqrt(ss / (double)C + eps), coef = inv * inv * inv * s / (double)C;
        for (int64_t c = 0; c < C; c++) {
            double silu = zr ? zr[c] * sigmoid(zr[c]) : 1.0, g = ar[c] * silu;
            double dg = inv * gr[c] * w[c] - g * coef;
            if (acc) acc[c] += gr[c] * g * inv;
            double dzv = zr ? dg * ar[c] * dsilu(zr[c]) : 0.0;
            /* all reads of element c are done: the outputs may be the inputs' storage */
            if (da) da[r * C + c] = (float)(dg * silu);
            if (dz) dz[r * C + c] = (float)dzv;
        }
    }
    if (acc)
        for (int64_t c = 0; c < C; c++) dw[c] = (float)(dw[c] + acc[c]);
    free(acc);
}

void ref_rmsnorm_backward(int64_t rows, int64_t C, const float *x, const float *w, float eps, const float *dout,
                          float *dx, float *dw) {
    norm_backward(rows, C, x, NULL, w, eps, dout, dx, NULL, dw);
}

void ref_gated_rmsnorm_backward(int64_t rows, int64_t C, const float *y, const float *z, const float *w,
                                float eps, const float *dout, float *dy, float *dz, float *dw) {
    norm_backward(rows, C, y, z, w, eps, dout, dy, dz, dw);
}

void ref_rope_backward(int64_t B, int64_t T, int n_heads, int dh, float *dx, const int32_t *pos0, float theta) {
    ref_rope_rotate(B, T, n_heads, dh, dx, pos0, theta, -1.0); /* the transpose of a rotation: its inverse */
}

void ref_swiglu_backward(int64_t n, const float *gate, const float *up, const float *dout, float *dgate,
                         float *dup) {
    for (int64_t i = 0; i < n; i++) {
        double g = gate[i], u = up[i], d = dout[i];
        if (dgate) dgate[i] = (float)(d * u * dsilu(g));
        if (dup) dup[i] = (float)(d * g * sigmoid(g));
    }
}

void ref_silu_backward(int64_t n, const float *x, const float *dout, float *dx) {
    for (int64_t i = 0; i < n; i++) dx[i] = (float)(dout[i] * dsilu(x[i]));
}

void ref_embedding_backward(int64_t n_ids, const int32_t *ids, int64_t V, int64_t d, const float *dout,
                            float *dtable) {
    double *acc = calloc((size_t)(V * d), sizeof *acc);
    char *used = calloc((size_t)V, 1);
    for (int64_t r = 0; r < n_ids; r++) {
        if (ids[r] < 0 || ids[r] >= V) continue;
        used[ids[r]] = 1;
        for (int64_t c = 0; c < d; c++) acc[ids[r] * d + c] += dout[r * d + c];
    }
    /* only used rows are touched, so unused rows keep their bits */
    for (int64_t v = 0; v < V; v++)
        if (used[v])
            for (int64_t c = 0; c < d; c++) dtable[v * d + c] = (float)(dtable[v * d + c] + acc[v * d + c]);
    free(acc);
    free(used);
}
