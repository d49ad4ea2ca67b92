#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref_attention.h"

int ref_attention_allowed(int mode, int window, const uint8_t *is_boundary, int t, int s) {
    if (s > t) return 0;
    switch (mode) {
    case 0: return 1;
    case 1: return t - s <= window;
    default: return t - s <= window || is_boundary[s];
    }
}

void ref_attention(int B, int T, int H, int Hkv, int dh, const float *q, const float *k, const float *v, int mode,
                   int window, const uint8_t *is_boundary, float *out) {
    double *w = malloc((size_t)(T ? T : 1) * sizeof *w);
    if (!w) abort();
    double scale = 1.0 / sqrt((double)dh);
    int64_t qs = (int64_t)H * dh, ks = (int64_t)Hkv * dh;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int kvh = h / (H / Hkv);
            for (int t = 0; t < T; t++) {
                const float *qr = q + ((int64_t)b * T + t) * qs + (int64_t)h * dh;
                double mx = -INFINITY;
                for (int s = 0; s < T; s++) {
                    if (!ref_attention_allowed(mode, window, is_boundary, t, s)) {
                        w[s] = -INFINITY;
                        continue;
                    }
                    const float *kr = k + ((int64_t)b * T + s) * ks + (int64_t)kvh * dh;
                    double dot = 0;
                    for (int d = 0; d < dh; d++) dot += (double)qr[d] * kr[d];
                    w[s] = dot * scale;
                    if (w[s] > mx) mx = w[s];
                }
                double sum = 0;
                for (int s = 0; s < T; s++) {
                    w[s] = w[s] == -INFINITY ? 0.0 : exp(w[s] - mx);
                    sum += w[s];
                }
                float *o = out + ((int64_t)b * T + t) * qs + (int64_t)h * dh;
                for (int d = 0; d < dh; d++) {
                    double a = 0;
                    for (int s = 0; s < T; s++)
                        if (w[s] != 0.0) a += w[s] * v[((int64_t)b * T + s) * ks + (int64_t)kvh * dh + d];
                    o[d] = (float)(a / sum);
                }
            }
        }
    free(w);
}

int64_t ref_attention_key_visits(int T, int mode, int window, const uint8_t *is_boundary) {
    int64_t n = 0;
    for (int t = 0; t < T; t++)
        for (int s = 0; s <= t; s++) n += ref_attention_allowed(mode, window, is_boundary, t, s);
    return n;
}

void ref_boundary_flags(int T, const int64_t *b, int64_t nb, uint8_t *is_boundary) {
    memset(is_boundary, 0, (size_t)T);
    for (int64_t i = 0; i < nb; i++)
        if (b[i] >= 0 && b[i] < T) is_boundary[b[i]] = 1;
}

void ref_kv_append(int B, int C, int R, int cap, const float *k, const float *v, const int32_t *pos,
                   const int32_t *store, float *kr, float *vr, float *kb, float *vb, int32_t *bpos, int32_t *nb) {
    for (int b = 0; b < B; b++) {
        int64_t slot = ((int64_t)b * R + pos[b] % R) * C, row = store[b];
        for (int c = 0; c < C; c++) {
            kr[slot + c] = k[b * C + c];
            vr[slot + c] = v[b * C + c];
        }
        if (row < 0 || row >= cap) continue;
        for (int c = 0; c < C; c++) {
            kb[((int64_t)b * cap + row) * C + c] = k[b * C + c];
            vb[((int64_t)b * cap + row) * C + c] = v[b * C + c];
        }
        bpos[(int64_t)b * cap + row] = pos[b];
        nb[b] = (int32_t)row + 1;
    }
}
