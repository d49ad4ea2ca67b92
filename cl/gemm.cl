/* gemm.cl: the portable GEMM of our own, used when CLBlast is missing or fails.
 * C[b] = alpha * op(A[b]) op(B[b]) + beta * C[b], row-major, offsets/strides in elements.
 * Options: -DTRANS_A=0|1 -DTRANS_B=0|1 -DRM=<rows per work-item>.
 * Work-item (x = column n, y = block of RM rows, z = batch): consecutive work-items of a
 * work-group read consecutive B elements (coalesced on GPUs, vectorised across work-items by
 * PoCL on CPUs) while the RM values of A are shared by the whole group. */
#ifndef TRANS_A
#define TRANS_A 0
#endif
#ifndef TRANS_B
#define TRANS_B 0
#endif
#ifndef RM
#define RM 8
#endif

#if TRANS_A
#define A_AT(m, k) A[(k) * lda + (m)]
#else
#define A_AT(m, k) A[(m) * lda + (k)]
#endif
#if TRANS_B
#define B_AT(k, n) B[(n) * ldb + (k)]
#else
#define B_AT(k, n) B[(k) * ldb + (n)]
#endif

__kernel void gemm_f32(int M, int N, int K, float alpha,
                       __global const float *A, int ao, int lda, int sa,
                       __global const float *B, int bo, int ldb, int sb, float beta,
                       __global float *C, int co, int ldc, int sc) {
    int n = get_global_id(0);
    int m0 = get_global_id(1) * RM;
    int batch = get_global_id(2);
    if (n >= N || m0 >= M) return;
    A += ao + batch * sa;
    B += bo + batch * sb;
    C += co + batch * sc;
    int rows[RM];
    float acc[RM];
    for (int r = 0; r < RM; r++) {
        rows[r] = min(m0 + r, M - 1); /* clamped: the extra rows compute but never store */
        acc[r] = 0.0f;
    }
    for (int k = 0; k < K; k++) {
        float b = B_AT(k, n);
        for (int r = 0; r < RM; r++) acc[r] = fma(A_AT(rows[r], k), b, acc[r]);
    }
    for (int r = 0; r < RM; r++) {
        if (m0 + r >= M) break;
        __global float *c = C + (m0 + r) * ldc + n;
        *c = alpha * acc[r] + (beta != 0.0f ? beta * *c : 0.0f);
    }
}
