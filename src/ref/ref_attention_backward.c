#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ref_attention.h"
#include "ref_attention_backward.h"

/* Per (sequence, head, query): the masked softmax row P, then with dP_s = dout . v_s and
 * D = sum_s P_s dP_s (= dout . out), dS_s = P_s (dP_s - D); dq += dS_s k_s, dk_s += dS_s q,
 * dv_s += P_s dout, the first two scaled by 1/sqrt(dh). Gradients accumulate in double arrays. */
void ref_attention_backward(int B, int T, int H, int Hkv, int dh, const float *q, const float *k,
                            const float *v, const float *dout, int mode, int window,
                            const uint8_t *is_boundary, float *dq, float *dk, float *dv) {
    int64_t qs = (int64_t)H * dh, ks = (int64_t)Hkv * dh;
    int64_t nq = (int64_t)B * T * qs, nk = (int64_t)B * T * ks;
    size_t rows = (size_t)(T ? T : 1);
    double *p = malloc(rows * sizeof *p), *dp = malloc(rows * sizeof *dp);
    double *gq = calloc((size_t)(nq ? nq : 1), sizeof *gq);
    double *gk = calloc((size_t)(nk ? nk : 1), sizeof *gk), *gv = calloc((size_t)(nk ? nk : 1), sizeof *gv);
    if (!p || !dp || !gq || !gk || !gv) abort();
    double scale = 1.0 / sqrt((double)dh);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int64_t kvo = (int64_t)(h / (H / Hkv)) * dh;
            for (int t = 0; t < T; t++) {
                int64_t qrow = ((int64_t)b * T + t) * qs + (int64_t)h * dh;
                const float *qr = q + qrow, *gr = dout + qrow;
                double mx = -INFINITY;
                for (int s = 0; s < T; s++) {
                    p[s] = -INFINITY;
                    if (!ref_attention_allowed(mode, window, is_boundary, t, s)) continue;
                    const float *kr = k + ((int64_t)b * T + s) * ks + kvo;
                    double dot = 0;
                    for (int d = 0; d < dh; d++) dot += (double)qr[d] * kr[d];
                    p[s] = dot * scale;
                    if (p[s] > mx) mx = p[s];
                }
                double sum = 0;
                for (int s = 0; s < T; s++) {
                    p[s] = p[s] == -INFINITY ? 0.0 : exp(p[s] - mx);
                    sum += p[s];
                }
                double D = 0;
                for (int s = 0; s < T; s++) {
                    p[s] /= sum;
                    dp[s] = 0;
                    if (p[s] == 0.0) continue;
                    const float *vr = v + ((int64_t)b * T + s) * ks + kvo;
                    for (int d = 0; d < dh; d++) dp[s] += (double)gr[d] * vr[d];
                    D += p[s] * dp[s];
                }
                for (int s = 0; s < T; s++) {
                    if (p[s] == 0.0) continue;
                    int64_t krow = ((int64_t)b * T + s) * ks + kvo;
                    double ds = p[s] * (dp[s] - D) * scale;
                    for (int d = 0; d < dh; d++) {
                        gq[qrow + d] += ds * k[krow + d];
                        gk[krow + d] += ds * qr[d];
                        gv[krow + d] += p[s] * gr[d];
                    }
                }
            }
        }
    for (int64_t i = 0; i < nq; i++) dq[i] = (float)gq[i];
    for (int64_t i = 0; i < nk; i++) {
        dk[i] = (float)gk[i];
        dv[i] = (float)gv[i];
    }
    free(p);
    free(dp);
    free(gq);
    free(gk);
    free(gv);
}
