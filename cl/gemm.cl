/* gemm.cl: the portable GEMM of our own.
 * C[b] = alpha * op(A[b]) op(B[b]) + beta * C[b], row-major, offsets/strides in elements;
 * beta == 0 never reads C. src/ops/gemm.c picks one of three schemes:
 *   gemm_f32                  one column x RM rows per work-item, no pre-pass (the original kernel).
 *   gemm_dot                  one element per work-item, two float8 dot products: tiny M with B^T.
 *   gemm_pack_b + gemm_tiles  register tiles for CPUs: op(B) is first copied into zero-padded panels
 *                             [panel][K][NW] so that a work-item streams one contiguous panel, then
 *                             each work-item keeps an RM x NW block of C in RM*NV explicit vectors of
 *                             VW floats (PoCL's implicit vectoriser cannot widen a loop nest this
 *                             deep; explicit vectors map straight onto AVX/AVX-512 registers).
 *   gemm_local                __local tiles for GPUs: a work-group of LW x LW items computes an
 *                             LT x LT block of C from LT x KT slices of A and B staged in __local.
 * Options: -DTRANS_A=0|1 -DTRANS_B=0|1, -DWT=0|1|2 (B's storage), and per scheme RM; RM VW NV PACKED PACKED_A
 * PB; LT LW KT. */
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
/* B's loads in the generic kernels (the storage type, BT and B_STEP come from dot.cl): q8 only as a
 * transposed B (a weight W [N, K] in x W^T), its offsets and strides counting blocks. */
#if WT == 0
#define B_LOAD(i) B[i]
#elif WT == 1
#define B_LOAD(i) vload_half((i), B)
#else
#if !TRANS_B
#error "q8 B needs TRANS_B"
#endif
/* value k of the row whose first block is row_blk blocks from B */
static inline float q8_at(__global const uchar *B, int row_blk, int k) {
    __global const uchar *blk = B + (row_blk + k / Q8_BLOCK) * Q8_BYTES;
    return *(__global const float *)blk * (float)((__global const char *)blk)[4 + k % Q8_BLOCK];
}
#endif
#if WT == 2
#define B_AT(k, n) q8_at(B, (n) * ldb, (k))
#elif TRANS_B
#define B_AT(k, n) B_LOAD((n) * ldb + (k))
#else
#define B_AT(k, n) B_LOAD((k) * ldb + (n))
#endif

/* y[r * ldy] = alpha * (row r of A . w) + beta * y[r * ldy] (y not read when beta is 0) for the first
 * min(RM, nrows) rows of A (a: the first, rows lda apart) and one row of B (w): two rows at a time
 * (dot_pair), so the row of B comes from memory for the first pair and from the cache for the rest
 * (a decode step of RM sequences reads the weights once). Each result is stored as it comes: no
 * private array (a GPU would keep one in local memory). */
static inline void dot_rows(const A_SPACE float *a, int lda, int nrows, const __global BT *w, int K, __global float *y,
                     int ldy, float alpha, float beta) {
    if (RM == 1 || nrows == 1) {
        *y = alpha * dot_row(a, w, K) + (beta != 0.0f ? beta * *y : 0.0f);
        return;
    }
    int r = 0;
#if RM >= 4
    for (; r + 2 < RM && r + 2 < nrows; r += 4) { /* three or four rows left: four at a time */
        float4 d = dot_quad(a + r * lda, a + (r + 1) * lda, a + (r + 2) * lda, a + min(r + 3, nrows - 1) * lda,
                            w, K);
        float dv[4] = {d.x, d.y, d.z, d.w};
        for (int j = 0; j < 4 && r + j < nrows; j++) {
            __global float *yj = y + (r + j) * ldy;
            *yj = alpha * dv[j] + (beta != 0.0f ? beta * *yj : 0.0f);
        }
    }
#endif
    for (; r < RM && r < nrows; r += 2) {
        float2 d = dot_pair(a + r * lda, a + min(r + 1, nrows - 1) * lda, w, K);
        __global float *y0 = y + r * ldy, *y1 = y0 + ldy;
        *y0 = alpha * d.x + (beta != 0.0f ? beta * *y0 : 0.0f);
        if (r + 1 < nrows) *y1 = alpha * d.y + (beta != 0.0f ? beta * *y1 : 0.0f);
    }
}

/* Work-item (x = column n, y = block of RM rows, z = batch): consecutive work-items read consecutive
 * B elements while the RM values of A are shared by the whole group. */
__kernel void gemm_f32(int M, int N, int K, float alpha,
                       __global const float *A, int ao, int lda, int sa,
                       __global const BT *B, int bo, int ldb, int sb, float beta,
                       __global float *C, int co, int ldc, int sc) {
    int n = get_global_id(0);
    int m0 = get_global_id(1) * RM;
    int batch = get_global_id(2);
    if (n >= N || m0 >= M) return;
    A += ao + batch * sa;
    B += B_STEP(bo + batch * sb);
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

#if !NORM
/* One column of RM rows of C per work-item (x = column n, y = block of RM rows, z = batch): dot products
 * of rows of A and a row of B^T, both contiguous along k when !TRANS_A && TRANS_B, so they run on
 * float8 loads (decode: x W^T with one or a few rows, dot_rows); other layouts take the scalar loop. */
__kernel void gemm_dot(int M, int N, int K, float alpha,
                       __global const float *A, int ao, int lda, int sa,
                       __global const BT *B, int bo, int ldb, int sb, float beta,
                       __global float *C, int co, int ldc, int sc) {
    int n = get_global_id(0), m0 = get_global_id(1) * RM, batch = get_global_id(2);
    if (n >= N || m0 >= M) return;
    A += ao + batch * sa;
    B += B_STEP(bo + batch * sb);
    C += co + batch * sc;
#if !TRANS_A && TRANS_B
    dot_rows(A + m0 * lda, lda, M - m0, B + B_STEP(n * ldb), K, C + m0 * ldc + n, ldc, alpha, beta);
#else
    for (int m = m0; m < m0 + RM && m < M; m++) {
        float s = 0.0f;
        for (int k = 0; k < K; k++) s = fma(A_AT(m, k), B_AT(k, n), s);
        __global float *c = C + m * ldc + n;
        *c = alpha * s + (beta != 0.0f ? beta * *c : 0.0f);
    }
#endif
}
#endif

/* Decode projections sharing their input: y_i = x W_i^T (+ y_i when acc_i) for up to 6 (OPS_GEMV_MAX)
 * matrices W_i [N_i, K] (rows ldw_i apart) in one launch, x [M, K] (rows ldx apart), y_i [M, N_i] (rows
 * ldy_i apart). Work-item x = an output column of the concatenation [N_0 | N_1 | ...], y = row m;
 * each is a float8 dot product, as gemm_dot. Members past n_members have N_i = 0.
 * -DNORM=1: x is first RMS-normalised with the gain G (as rmsnorm_f32, the sum in another order): every
 * work-group does its RM rows into __local xn (RM x K floats) and reads them from there; the first group
 * of a row block also writes them to XN when keep >= 1 and to XN2 when keep == 2 (for residuals that
 * start from them). One launch, not two.
 * -DGLU=1: the SwiGLU of members 0 and 1 (below) in the same launch, one work-item per output column. */
#define GEMV_MEMBER(i) __global const BT *W##i, int wo##i, int ldw##i, int n##i, __global float *Y##i, int yo##i, \
                       int ldy##i, int acc##i
#define GEMV_PICK(i)                                                                                   \
    if (member < 0) {                                                                                 \
        if (n < n##i) {                                                                               \
            W = W##i + B_STEP(wo##i + n * ldw##i);                                                    \
            Y = Y##i + yo##i + m * ldy##i + n;                                                        \
            acc = acc##i;                                                                             \
            ldy = ldy##i;                                                                             \
            member = i;                                                                               \
        } else {                                                                                      \
            n -= n##i;                                                                                \
        }                                                                                             \
    }
__kernel void gemv_group(int M, int K, __global const float *X, int xo, int ldx, GEMV_MEMBER(0), GEMV_MEMBER(1),
                         GEMV_MEMBER(2), GEMV_MEMBER(3), GEMV_MEMBER(4), GEMV_MEMBER(5)
#if NORM
                         , __global const float *G, int go, float eps, __global float *XN, int xno,
                         __global float *XN2, int xn2o, int keep,
                         __local float *xn
#endif
) {
    int n = get_global_id(0), m = get_global_id(1) * RM;
#if NORM /* the group's rows (m is the same for all its items: local y is 1) by its first item, float8 at
          * a time (a barrier tree per group cost more than the launch saved on PoCL) */
    if (get_local_id(0) == 0) {
        for (int r = 0; r < RM && m + r < M; r++) {
            __global const float *xr = X + xo + (m + r) * ldx;
            __local float *o = xn + r * K;
            float8 s8 = (float8)(0.0f);
            int k = 0;
            for (; k + 8 <= K; k += 8) {
                float8 v = vload8(0, xr + k);
                s8 = fma(v, v, s8);
            }
            float ss = dot_hsum(s8, (float8)(0.0f));
            for (int j = k; j < K; j++) ss = fma(xr[j], xr[j], ss);
            float inv = 1.0f / sqrt(ss / (float)K + eps);
            for (k = 0; k + 8 <= K; k += 8) vstore8(vload8(0, xr + k) * inv * vload8(0, G + go + k), 0, o + k);
            for (; k < K; k++) o[k] = xr[k] * inv * G[go + k];
            if (keep && get_group_id(0) == 0) {
                __global float *out = XN + xno + (m + r) * K, *out2 = XN2 + xn2o + (m + r) * K;
                for (k = 0; k < K; k++) out[k] = o[k];
                for (k = 0; keep == 2 && k < K; k++) out2[k] = o[k];
            }
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    const __local float *A = xn;
    int lda = K;
#else
    if (m >= M) return;
    __global const float *A = X + xo + m * ldx;
    int lda = ldx;
#endif
#if GLU /* members 0 and 1 are a gate and an up matrix of one width: Y0 = silu(x W0^T) * (x W1^T), as swiglu_f32 */
    if (n >= n0) return;
    __global const BT *wg = W0 + B_STEP(wo0 + n * ldw0), *wu = W1 + B_STEP(wo1 + n * ldw1);
    for (int r = 0; r < RM && m + r < M; r++) {
        float g = dot_row(A + r * lda, wg, K), u = dot_row(A + r * lda, wu, K);
        Y0[yo0 + (m + r) * ldy0 + n] = g / (1.0f + exp(-g)) * u;
    }
#else
    int member = -1, acc = 0, ldy = 0;
    __global const BT *W = W0;
    __global float *Y = Y0;
    GEMV_PICK(0) GEMV_PICK(1) GEMV_PICK(2) GEMV_PICK(3) GEMV_PICK(4) GEMV_PICK(5)
    if (member < 0) return; /* past the last column */
    dot_rows(A, lda, M - m, W, K, Y, ldy, 1.0f, acc ? 1.0f : 0.0f);
#endif
}

#ifdef VW
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define vecf CAT(float, VW)
#define VLOAD CAT(vload, VW)
#define VSTORE CAT(vstore, VW)
#define NW (VW * NV) /* columns per work-item = panel width */
#ifndef PB
#define PB 64 /* gemm_tiles: panels per block of the launch order (gemm.pb) */
#endif

#define PACK_KB 8 /* k per work-item of the packing passes (src/ops/gemm.c's PACK_KB launches ceil(K / 8)) */

/* P[b][panel][k][j] = op(B[b])[k][panel * NW + j], 0 past column N. Each work-item copies PACK_KB
 * consecutive k of one panel (one item per k cost PoCL more in items than in copying: a 256 KB B
 * packed at 3-6 GB/s). Work-item (x = block of k, y = panel, z = batch of B) for a transposed B:
 * each reads PACK_KB contiguous floats from each of the panel's NW rows (neighbours read
 * neighbouring pieces of a row) and transposes VW of them at a time in registers into PACK_KB
 * vectors of P (stored one float at a time down P's columns, 512x32000x512 nt took 96 ms, now 93:
 * medians of four interleaved pairs). A plain B swaps x and y (x = panel): neighbours read neighbouring
 * NW-float pieces of row k, as vectors (with x = k, PoCL gathered one float per row, 2 KB and more
 * apart: 4.6 GB/s). P's batch stride is panels * K * NW. */
__kernel void gemm_pack_b(int N, int K, int panels, __global const BT *B, int bo, int ldb, int sb,
                          __global float *P) {
#if TRANS_B
    int k0 = get_global_id(0) * PACK_KB, panel = get_global_id(1), batch = get_global_id(2);
#else
    int panel = get_global_id(0), k0 = get_global_id(1) * PACK_KB, batch = get_global_id(2);
#endif
    if (k0 >= K || panel >= panels) return;
    int n0 = panel * NW, k1 = min(k0 + PACK_KB, K);
    B += B_STEP(bo + batch * sb);
    P += (batch * panels + panel) * K * NW;
    if (n0 + NW <= N) {
#if TRANS_B && WT == 0
        if (k1 - k0 == PACK_KB) { /* VW row pieces of 8 transposed in registers into 8 vectors of P */
            for (int v = 0; v < NV; v++) {
                float t[PACK_KB][VW];
#pragma unroll
                for (int l = 0; l < VW; l++) {
                    float8 r = vload8(0, B + (n0 + v * VW + l) * ldb + k0);
                    t[0][l] = r.s0, t[1][l] = r.s1, t[2][l] = r.s2, t[3][l] = r.s3;
                    t[4][l] = r.s4, t[5][l] = r.s5, t[6][l] = r.s6, t[7][l] = r.s7;
                }
#pragma unroll
                for (int k = 0; k < PACK_KB; k++) VSTORE(VLOAD(0, t[k]), v, P + (k0 + k) * NW);
            }
            return;
        }
#endif
        for (int k = k0; k < k1; k++) {
#if TRANS_B || WT
            for (int j = 0; j < NW; j++) P[k * NW + j] = B_AT(k, n0 + j);
#else
            for (int v = 0; v < NV; v++) VSTORE(VLOAD(v, B + k * ldb + n0), v, P + k * NW);
#endif
        }
    } else {
        for (int k = k0; k < k1; k++)
            for (int j = 0; j < NW; j++) P[k * NW + j] = n0 + j < N ? B_AT(k, n0 + j) : 0.0f;
    }
}

#if TRANS_A
/* P[b][mp][k][r] = op(A[b])[mp * RM + r][k] = A[b][k][mp * RM + r] (rows past M repeat the last): each
 * gemm_tiles work-item then streams RM contiguous floats per k instead of reading rows of A lda apart
 * (op(A) = A^T, the weight gradient dW = dY^T X: without it that layout ran at a third of the others).
 * Work-item (x = block of RM rows, y = PACK_KB consecutive k, z = batch of A): neighbours read
 * neighbouring pieces of a row of A and each writes PACK_KB * RM contiguous floats (with x = k, each
 * read 24 bytes from rows far apart: 1.8 GB/s at M = 32000). P's batch stride is mpanels * K * RM. */
__kernel void gemm_pack_a(int M, int K, int mpanels, __global const float *A, int ao, int lda, int sa,
                          __global float *P) {
    int mp = get_global_id(0), k0 = get_global_id(1) * PACK_KB, batch = get_global_id(2);
    if (mp >= mpanels || k0 >= K) return;
    A += ao + batch * sa;
    P += (batch * mpanels + mp) * K * RM;
    int full = mp * RM + RM <= M, k1 = min(k0 + PACK_KB, K);
    for (int k = k0; k < k1; k++) {
        __global float *p = P + k * RM;
        int r = 0;
        if (full) /* rows mp * RM .. are contiguous in A: explicit vectors */
            for (; r + 4 <= RM; r += 4) vstore4(vload4(0, &A_AT(mp * RM + r, k)), 0, p + r);
        for (; r < RM; r++) p[r] = A_AT(min(mp * RM + r, M - 1), k);
    }
}
#endif

/* Work-item: an RM x NW block of C (a block of RM rows, a panel of NW columns; z = batch), the
 * groups in the launch order described below. -DPACKED=1: B is gemm_pack_b's output (ldb = NW, sb = its
 * batch stride or 0 when shared); -DPACKED=0: B itself, not transposed (for small M, where a
 * pre-pass over all of B would cost more than the strided rows). -DPACKED_A=1: A is gemm_pack_a's
 * output (sa = its batch stride or 0); a transposed A with -DPACKED_A=0 is read in place, RM
 * contiguous floats per k (small A only: rows lda apart cost a cache line per k and item). */
__kernel void gemm_tiles(int M, int N, int K, float alpha,
                         __global const float *A, int ao, int lda, int sa,
                         __global const float *B, int bo, int ldb, int sb, float beta,
                         __global float *C, int co, int ldc, int sc) {
    /* The groups in launch order (x fastest, as PoCL hands them out) walk PB panels over one group
     * of rows before the next group of rows: the group's rows of A (local size * RM * K floats) stay
     * in the core's L2 and the PB panels of B (PB * K * NW) in L3, where running down all rows per
     * panel streamed all of A from L3, or memory, once per panel (2000 times at N = 32000). */
    int G = get_num_groups(0), L = get_group_id(0) + get_group_id(1) * G;
    int pb0 = L / (G * PB) * PB, pbn = min(PB, (int)get_num_groups(1) - pb0), rem = L - pb0 * G;
    int mp = rem / pbn * get_local_size(0) + get_local_id(0), panel = pb0 + rem % pbn, batch = get_global_id(2);
    int m0 = mp * RM;
    if (m0 >= M) return;
    int n0 = panel * NW, full = n0 + NW <= N;
    A += ao + batch * sa;
#if PACKED
    B += bo + batch * sb + panel * K * NW; /* ldb == NW */
#else
    B += bo + batch * sb + n0;
#endif
    C += co + batch * sc;
#if PACKED_A /* gemm_pack_a's panels */
#define A_KSTEP RM
#elif TRANS_A /* A^T in place: RM contiguous floats per k, rows lda apart */
#define A_KSTEP lda
#else
#define A_KSTEP 1
#endif
    const __global float *a[RM];
    vecf acc[RM][NV];
#pragma unroll
    for (int r = 0; r < RM; r++) {
#if PACKED_A
        a[r] = A + mp * K * RM + r;
#else
        a[r] = &A_AT(min(m0 + r, M - 1), 0); /* clamped: the extra rows compute but never store */
#endif
#pragma unroll
        for (int v = 0; v < NV; v++) acc[r][v] = (vecf)(0.0f);
    }
    for (int k = 0; k < K; k++, B += ldb) {
        vecf b[NV];
#if PACKED
#pragma unroll
        for (int v = 0; v < NV; v++) b[v] = VLOAD(v, B);
#else
        if (full) {
#pragma unroll
            for (int v = 0; v < NV; v++) b[v] = VLOAD(v, B);
        } else {
            float t[NW];
            for (int j = 0; j < NW; j++) t[j] = n0 + j < N ? B[j] : 0.0f;
#pragma unroll
            for (int v = 0; v < NV; v++) b[v] = VLOAD(v, t);
        }
#endif
#pragma unroll
        for (int r = 0; r < RM; r++) {
            vecf x = (vecf)(a[r][k * A_KSTEP]);
#pragma unroll
            for (int v = 0; v < NV; v++) acc[r][v] = fma(x, b[v], acc[r][v]);
        }
    }
    for (int r = 0; r < RM && m0 + r < M; r++) {
        __global float *c = C + (m0 + r) * ldc + n0;
#pragma unroll
        for (int v = 0; v < NV; v++) {
            vecf x = alpha * acc[r][v];
            if (full) {
                if (beta != 0.0f) x = fma((vecf)(beta), VLOAD(v, c), x);
                VSTORE(x, v, c);
            } else {
                float t[VW];
                VSTORE(x, 0, t);
                for (int j = 0; j < VW && n0 + v * VW + j < N; j++) {
                    __global float *cj = c + v * VW + j;
                    *cj = t[j] + (beta != 0.0f ? beta * *cj : 0.0f);
                }
            }
        }
    }
}
#endif

#ifdef LT
#define WPT (LT / LW) /* rows (and columns) of C per work-item */
/* Work-group (LW x LW, z = batch) computes C[m0 .. m0+LT) x [n0 .. n0+LT); item (lx, ly) owns rows
 * ly + LW*i and columns lx + LW*j, so that its __local reads and global stores are consecutive
 * across the group's x. Every item reaches every barrier: out-of-range items load zeros and skip
 * only the final store. */
__kernel void gemm_local(int M, int N, int K, float alpha,
                         __global const float *A, int ao, int lda, int sa,
                         __global const BT *B, int bo, int ldb, int sb, float beta,
                         __global float *C, int co, int ldc, int sc) {
    __local float As[KT][LT], Bs[KT][LT];
    int lx = get_local_id(0), ly = get_local_id(1), tid = ly * LW + lx, batch = get_global_id(2);
    int m0 = get_group_id(1) * LT, n0 = get_group_id(0) * LT;
    A += ao + batch * sa;
    B += B_STEP(bo + batch * sb);
    C += co + batch * sc;
    float acc[WPT][WPT];
    for (int i = 0; i < WPT; i++)
        for (int j = 0; j < WPT; j++) acc[i][j] = 0.0f;
    for (int k0 = 0; k0 < K; k0 += KT) {
        /* LT * KT elements of each operand, LW * LW items: the index runs along the operand's
         * contiguous dimension so that neighbouring items read neighbouring addresses */
        for (int e = tid; e < LT * KT; e += LW * LW) {
#if TRANS_A
            int m = e % LT, k = e / LT;
#else
            int m = e / KT, k = e % KT;
#endif
#if TRANS_B
            int n = e / KT, kb = e % KT;
#else
            int n = e % LT, kb = e / LT;
#endif
            As[k][m] = m0 + m < M && k0 + k < K ? A_AT(m0 + m, k0 + k) : 0.0f;
            Bs[kb][n] = n0 + n < N && k0 + kb < K ? B_AT(k0 + kb, n0 + n) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int k = 0; k < KT; k++) {
            float av[WPT], bv[WPT];
            for (int i = 0; i < WPT; i++) av[i] = As[k][ly + LW * i];
            for (int j = 0; j < WPT; j++) bv[j] = Bs[k][lx + LW * j];
            for (int i = 0; i < WPT; i++)
                for (int j = 0; j < WPT; j++) acc[i][j] = fma(av[i], bv[j], acc[i][j]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    for (int i = 0; i < WPT; i++) {
        int m = m0 + ly + LW * i;
        if (m >= M) break;
        for (int j = 0; j < WPT; j++) {
            int n = n0 + lx + LW * j;
            if (n >= N) break;
            __global float *c = C + m * ldc + n;
            *c = alpha * acc[i][j] + (beta != 0.0f ? beta * *c : 0.0f);
        }
    }
}
#endif
