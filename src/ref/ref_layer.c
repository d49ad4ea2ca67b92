#include <math.h>

#include "ref_layer.h"

static double silu(double v) { return v / (1.0 + exp(-v)); }

void ref_rmsnorm(int64_t rows, int64_t C, const float *x, const float *w, float eps, float *out) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * C;
        double ss = 0;
        for (int64_t c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
        double inv = 1.0 / sqrt(ss / (double)C + eps);
        for (int64_t c = 0; c < C; c++) out[r * C + c] = (float)(xr[c] * inv * w[c]);
    }
}

void ref_gated_rmsnorm(int64_t rows, int64_t C, const float *y, const float *z, const float *w, float eps,
                       float *out) {
    for (int64_t r = 0; r < rows; r++) {
        double ss = 0;
        for (int64_t c = 0; c < C; c++) {
            double g = y[r * C + c] * silu(z[r * C + c]);
            ss += g * g;
        }
        double inv = 1.0 / sqrt(ss / (double)C + eps);
        for (int64_t c = 0; c < C; c++)
            out[r * C + c] = (float)(y[r * C + c] * silu(z[r * C + c]) * inv * w[c]);
    }
}

void ref_rope(int64_t B, int64_t T, int n_heads, int dh, float *x, const int32_t *pos0, float theta) {
    ref_rope_rotate(B, T, n_heads, dh, x, pos0, theta, 1.0);
}

void ref_rope_rotate(int64_t B, int64_t T, int n_heads, int dh, float *x, const int32_t *pos0, float theta,
                     double sign) {
    int64_t width = (int64_t)n_heads * dh;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int h = 0; h < n_heads; h++)
                for (int i = 0; i < dh / 2; i++) {
                    double ang = sign * (double)(pos0[b] + t) * pow(theta, -2.0 * i / dh);
                    float *p = x + (b * T + t) * width + (int64_t)h * dh + 2 * i;
                    double a = p[0], c = p[1];
                    p[0] = (float)(a * cos(ang) - c * sin(ang));
                    p[1] = (float)(a * sin(ang) + c * cos(ang));
                }
}

void ref_swiglu(int64_t n, const float *gate, const float *up, float *out) {
    for (int64_t i = 0; i < n; i++) out[i] = (float)(silu(gate[i]) * up[i]);
}

void ref_embedding(int64_t n_ids, const int32_t *ids, int64_t V, int64_t d, const float *table, float *out) {
    for (int64_t r = 0; r < n_ids; r++)
        for (int64_t c = 0; c < d; c++)
            out[r * d + c] = ids[r] >= 0 && ids[r] < V ? table[ids[r] * d + c] : 0.0f;
}

void ref_add_bias(int64_t rows, int64_t C, const float *x, const float *bias, float *out) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < C; c++) out[r * C + c] = x[r * C + c] + bias[c];
}
