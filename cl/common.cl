/* common.cl: prepended to every program. Helpers shared by all kernels.
 * Conventions: OpenCL C 1.2, no required extensions; 1-D launches are rounded up to the
 * work-group size, so every kernel bounds-checks its global id; no barrier sits in divergent
 * control flow (PoCL miscompiles that). */

/* Offset of element i (row-major over shape s0..s3) under strides t0..t3. */
static inline int atb_offset4(int i, int s1, int s2, int s3, int t0, int t1, int t2, int t3) {
    int i3 = i % s3; i /= s3;
    int i2 = i % s2; i /= s2;
    int i1 = i % s1; i /= s1;
    return i * t0 + i1 * t1 + i2 * t2 + i3 * t3;
}

static inline float atb_sigmoid(float x) { return 1.0f / (1.0f + exp(-x)); }

/* 8-lane horizontal sum, pairwise. */
static inline float atb_hsum8(float8 v) {
    float4 a = v.lo + v.hi;
    float2 b = a.lo + a.hi;
    return b.x + b.y;
}

/* The sums of eight float8 rows as one float8 (lane i: the sum of r_i), by three rounds of pairwise
 * adds across the rows instead of eight horizontal sums. */
static inline float8 atb_hsum8x8(float8 r0, float8 r1, float8 r2, float8 r3, float8 r4, float8 r5, float8 r6,
                                 float8 r7) {
    float8 a0 = (float8)(r0.even + r0.odd, r1.even + r1.odd), a1 = (float8)(r2.even + r2.odd, r3.even + r3.odd);
    float8 a2 = (float8)(r4.even + r4.odd, r5.even + r5.odd), a3 = (float8)(r6.even + r6.odd, r7.even + r7.odd);
    float8 b0 = (float8)(a0.even + a0.odd, a1.even + a1.odd), b1 = (float8)(a2.even + a2.odd, a3.even + a3.odd);
    return (float8)(b0.even + b0.odd, b1.even + b1.odd);
}

/* RoPE of pair indices 4jq .. 4jq+3 of a head of 8*quads floats at position pos (see rope_f32 in
 * layer.cl: angles in half-turns, the frequency from log2(theta) and log2(pi)): the cosines and sign *
 * sines of the four angles, and the rotation of those pairs, 8 consecutive floats. */
static inline void atb_rope_angles4(float pos, int jq, int quads, float log2_theta, float log2_pi, float sign,
                                    float4 *c, float4 *s) {
    float4 j = (float4)(4 * jq) + (float4)(0.0f, 1.0f, 2.0f, 3.0f);
    float4 half_turns = pos * exp2(-(j / (float)(4 * quads)) * log2_theta - log2_pi);
    *c = cospi(half_turns);
    *s = sign * sinpi(half_turns);
}

static inline float8 atb_rope8(float8 v, float4 c, float4 s) {
    float4 e = v.even * c - v.odd * s, o = v.even * s + v.odd * c;
    return shuffle2(e, o, (uint8)(0, 4, 1, 5, 2, 6, 3, 7));
}

/* softplus(v) = log(1 + exp(v)), exactly v above 20 (where the f32 difference is below an ulp). */
static inline float atb_softplus(float v) { return v > 20.0f ? v : log1p(exp(v)); }

/* NAME(x) = e^x on vectors of type VT (IT the matching int vector, AS_I / AS_F the reinterpretations)
 * to about 2 ulp for x in [-87, 88] (clamped there: e^-87 ~ 1.6e-38, e^88 ~ 1.7e38; a NaN comes back
 * clamped, so callers keep x's NaN elsewhere): x = n ln 2 + r with |r| <= ln 2 / 2 (n rounded by
 * adding 1.5 x 2^23), e^r by its Taylor series to r^7 (remainder < 1e-8), times 2^n built in the
 * exponent bits. Vector arithmetic only: PoCL's library exp handles what cannot occur here (20% of
 * attn_lanes), and a float16 argument of a library call changes the ABI on CPUs without AVX-512. */
#define ATB_DEFINE_EXP(NAME, VT, IT, AS_I, AS_F)                                                          \
    static inline VT NAME(VT x) {                                                                         \
        x = fmin(fmax(x, (VT)(-87.0f)), (VT)(88.0f));                                                     \
        const VT big = (VT)(12582912.0f), y = x * 1.44269504f + big, n = y - big;                         \
        const VT r = (x - n * 0.693145752f) - n * 1.42860677e-6f; /* ln 2 in two parts, n x the first exact */ \
        VT p = r * (1.0f / 5040.0f) + (1.0f / 720.0f);                                                    \
        p = p * r + (1.0f / 120.0f);                                                                      \
        p = p * r + (1.0f / 24.0f);                                                                       \
        p = p * r + (1.0f / 6.0f);                                                                        \
        p = p * r + 0.5f;                                                                                 \
        p = p * r + 1.0f;                                                                                 \
        p = p * r + 1.0f;                                                                                 \
        return p * AS_F((AS_I(y) - AS_I(big) + 127) << 23);                                               \
    }

/* ---- work-group reductions */

/* NAME(part, scratch): sum of part of type T over the group into scratch[0], returned to every
 * work-item; scratch holds one T per work-item. The tree runs over the next power of two >= the
 * group size (any size, not only powers of two); work-items whose partner lies beyond the group add
 * nothing. Every barrier sits in a loop whose trip count depends on the group size only, and the
 * last one lets the caller reuse scratch. */
#define ATB_DEFINE_GROUP_SUM(NAME, T)                                         \
    static inline T NAME(T part, __local T *scratch) {                               \
        int lid = get_local_id(0), n = get_local_size(0);                     \
        int p2 = 1;                                                           \
        while (p2 < n) p2 <<= 1;                                              \
        scratch[lid] = part;                                                  \
        for (int s = p2 >> 1; s > 0; s >>= 1) {                               \
            barrier(CLK_LOCAL_MEM_FENCE);                                     \
            if (lid < s && lid + s < n) scratch[lid] += scratch[lid + s];     \
        }                                                                     \
        barrier(CLK_LOCAL_MEM_FENCE);                                         \
        T total = scratch[0];                                                 \
        barrier(CLK_LOCAL_MEM_FENCE);                                         \
        return total;                                                         \
    }
ATB_DEFINE_GROUP_SUM(atb_group_sum, float)
ATB_DEFINE_GROUP_SUM(atb_group_sum2, float2)

/* ---- private vectors (SSM forward and backward) */

/* A private vector of LEN floats as LEN/8 float8 plus LEN%8 scalars: explicit vectors, because PoCL
 * does not vectorise across work-items whose token loops differ in length. */
#define ATB_VEC8(V8, Vt, LEN) float8 V8[(LEN) / 8 > 0 ? (LEN) / 8 : 1]; float Vt[(LEN) % 8 > 0 ? (LEN) % 8 : 1]

/* NAME_zero(V8, Vt): V = 0. NAME(V8, Vt, a, s, v1, v2): V = a V + s v1; returns V . v2 (a == 0
 * restarts V). LEN is expanded where the pair is defined, so it may be a -D option. */
#define ATB_DEFINE_VEC_STEP(NAME, LEN)                                                                   \
    static inline void NAME##_zero(float8 *V8, float *Vt) {                                                     \
        for (int j = 0; j < (LEN) / 8; j++) V8[j] = (float8)(0.0f);                                      \
        for (int j = 0; j < (LEN) % 8; j++) Vt[j] = 0.0f;                                                \
    }                                                                                                    \
    static inline float NAME(float8 *V8, float *Vt, float a, float s, __global const float *v1,                 \
                      __global const float *v2) {                                                        \
        float8 acc8 = (float8)(0.0f);                                                                    \
        for (int j = 0; j < (LEN) / 8; j++) {                                                            \
            V8[j] = a * V8[j] + s * vload8(j, v1);                                                       \
            acc8 += V8[j] * vload8(j, v2);                                                               \
        }                                                                                                \
        float acc = atb_hsum8(acc8);                                                                     \
        for (int j = 0; j < (LEN) % 8; j++) {                                                            \
            Vt[j] = a * Vt[j] + s * v1[(LEN) / 8 * 8 + j];                                               \
            acc += Vt[j] * v2[(LEN) / 8 * 8 + j];                                                        \
        }                                                                                                \
        return acc;                                                                                      \
    }

/* The same over LEN vectors of type VT (a work-item's neighbouring channels as lanes, the other operand
 * broadcast): V = a V + s v1, returns V . v2 per lane (the SSM scans, forward and backward). */
#define ATB_DEFINE_LANES_STEP(NAME, VT, LEN)                                                             \
    static inline VT NAME(VT *V, float a, VT s, __global const float *v1, __global const float *v2) {          \
        VT acc = (VT)(0.0f);                                                                            \
        for (int i = 0; i < (LEN); i++) {                                                               \
            V[i] = fma(s, (VT)(v1[i]), a * V[i]);                                                       \
            acc = fma(V[i], (VT)(v2[i]), acc);                                                          \
        }                                                                                               \
        return acc;                                                                                     \
    }

/* ---- segments and boundaries */

/* First position >= e that starts a segment (seg[so + p] == p), or T. */
static inline int atb_next_start(__global const int *seg, int so, int e, int T) {
    while (e < T && seg[so + e] != e) e++;
    return e;
}

/* Number of entries of the sorted list a[0..n) that are < x. */
static inline int atb_count_below(__global const int *a, int n, int x) {
    int lo = 0, hi = n;
    while (lo < hi) {
        int mid = (lo + hi) >> 1;
        if (a[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Whether s is one of the sorted boundaries bnd[0 .. n). */
static inline int attn_is_boundary(__global const int *bnd, int n, int s) {
    const int i = atb_count_below(bnd, n, s);
    return i < n && bnd[i] == s;
}

/* Whether query t sees key i of a sliced kernel's walk over a query block's keys: the na phase-A keys
 * (every query of the block sees them), then the window range's positions s = wlo + i - na up to
 * nkeys, by the SPEC 3.3 rule (s <= t and (t - s <= lwin or s is one of the nb boundaries)). */
static inline int attn_walk_sees(int i, int na, int nkeys, int s, int t, int lwin, __global const int *bnd, int nb) {
    return i < na || (i < nkeys && s <= t && (t - s <= lwin || attn_is_boundary(bnd, nb, s)));
}

/* ---- prefill attention key tiles (attention.cl forward, attention_backward.cl dq) */

#define ATTN_CAUSAL 0
#define ATTN_SLIDING 1
#define ATTN_COMPRESSED 2
/* Running-max start: finite so that exp(m - m_new) never sees inf - inf. Masked keys get
 * probability 0 explicitly, never through exp(-inf). */
#define ATTN_NEG (-1e30f)

/* Phase A tile of n keys from i0: key i < na (row bnd[i] when indirect, else i) at row offset
 * key * stride; padding entries repeat the last key with ok = 0. */
static inline void attn_tile_all(int *krow, int *ok, int n, int i0, int na, int indirect, __global const int *bnd,
                          int stride) {
    for (int j = 0; j < n; j++) {
        int i = min(i0 + j, na - 1);
        krow[j] = (indirect ? bnd[i] : i) * stride;
        ok[j] = i0 + j < na;
    }
}

/* Copies the n_rows key and value rows of a tile (element offsets krow[j], width dh) into __local
 * kt and vt with a group of n_items work-items (this one is lid). The first barrier keeps the
 * previous tile alive until every work-item is done with it; the copy loop has no barrier inside,
 * so n_rows * dh need not be a multiple of n_items. Call it from uniform control flow only. */
#define ATTN_LOCAL_TILE(kt, vt, ksrc, vsrc, krow, n_rows, dh, lid, n_items) \
    do {                                                                      \
        barrier(CLK_LOCAL_MEM_FENCE);                                         \
        for (int e_ = (lid); e_ < (n_rows) * (dh); e_ += (n_items)) {          \
            int j_ = e_ / (dh), d_ = e_ - j_ * (dh);                          \
            (kt)[e_] = (ksrc)[(krow)[j_] + d_];                               \
            (vt)[e_] = (vsrc)[(krow)[j_] + d_];                               \
        }                                                                     \
        barrier(CLK_LOCAL_MEM_FENCE);                                         \
    } while (0)

/* Phase B tile of n keys s0.. of the block's window range [.., whi), masked for query t by the
 * SPEC 3.3 rule (s <= t and (t - s <= lwin or s is a boundary)). *bi walks the sorted boundaries
 * along with s, so it must start at the first boundary >= the range's start. Row offset s * stride. */
static inline void attn_tile_window(int *krow, int *ok, int n, int s0, int whi, int t, int lwin,
                             __global const int *bnd, int nbnd, int *bi, int stride) {
    for (int j = 0; j < n; j++) {
        int s = s0 + j;
        int isb = 0;
        if (s < whi) {
            while (*bi < nbnd && bnd[*bi] < s) (*bi)++;
            isb = *bi < nbnd && bnd[*bi] == s;
        }
        krow[j] = min(s, whi - 1) * stride;
        ok[j] = s < whi && s <= t && (t - s <= lwin || isb);
    }
}
