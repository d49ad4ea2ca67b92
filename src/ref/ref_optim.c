/* Reference sum of squares, column sums and AdamW step; see ref_optim.h. */
#include <math.h>

#include "ref_optim.h"

double ref_sum_squares(int64_t n, const float *x) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

void ref_sum_rows(int64_t R, int64_t C, const float *x, float *out) {
    for (int64_t c = 0; c < C; c++) {
        double s = out[c];
        for (int64_t r = 0; r < R; r++) s += x[r * C + c];
        out[c] = (float)s;
    }
}

void ref_adamw(int64_t n, float *p, const float *grad, float *m, float *v, float lr, float beta1, float beta2,
               float eps, float weight_decay, float grad_scale, int64_t step) {
    double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
    for (int64_t i = 0; i < n; i++) {
        double g = (double)grad_scale * grad[i];
        double mi = beta1 * (double)m[i] + (1.0 - beta1) * g;
        double vi = beta2 * (double)v[i] + (1.0 - beta2) * g * g;
        double mhat = mi / bc1, vhat = vi / bc2, pi = p[i];
        p[i] = (float)(pi - (double)lr * weight_decay * pi - lr * mhat / (sqrt(vhat) + eps));
        m[i] = (float)mi;
        v[i] = (float)vi;
    }
}
