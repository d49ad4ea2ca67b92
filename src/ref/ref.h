/* ref.h: plain-C reference of every op, forward and backward: the oracle the tests compare the
 * kernels against. Written for clarity, accumulating in double; never on a hot path. */
#ifndef ATTAMBA_REF_H
#define ATTAMBA_REF_H

#include <stdint.h>

/* C[M,N] = alpha * op(A) op(B) + beta * C, row-major; op(A) is [M,K] (A stored [K,M] when
 * trans_a), op(B) is [K,N] (B stored [N,K] when trans_b). lda/ldb/ldc are row strides. */
void ref_gemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);

void ref_add(int64_t n, const float *a, const float *b, float *out);
void ref_mul(int64_t n, const float *a, const float *b, float *out);
void ref_scale(int64_t n, const float *x, float alpha, float *out);
void ref_silu(int64_t n, const float *x, float *out);

#endif
