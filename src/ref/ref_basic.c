#include <math.h>

#include "ref.h"

void ref_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double acc = 0;
            for (int k = 0; k < K; k++) {
                double a = trans_a ? A[(int64_t)k * lda + m] : A[(int64_t)m * lda + k];
                double b = trans_b ? B[(int64_t)n * ldb + k] : B[(int64_t)k * ldb + n];
                acc += a * b;
            }
            float *c = &C[(int64_t)m * ldc + n];
            /* beta == 0 ignores C, as BLAS does, so NaN garbage in C does not leak through */
            *c = (float)(alpha * acc + (beta != 0.0f ? (double)beta * *c : 0.0));
        }
}

void ref_add(int64_t n, const float *a, const float *b, float *out) {
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void ref_mul(int64_t n, const float *a, const float *b, float *out) {
    for (int64_t i = 0; i < n; i++) out[i] = a[i] * b[i];
}

void ref_scale(int64_t n, const float *x, float alpha, float *out) {
    for (int64_t i = 0; i < n; i++) out[i] = alpha * x[i];
}

void ref_silu(int64_t n, const float *x, float *out) {
    for (int64_t i = 0; i < n; i++) out[i] = (float)((double)x[i] / (1.0 + exp(-(double)x[i])));
}
