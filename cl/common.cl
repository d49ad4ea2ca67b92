/* common.cl: prepended to every program. Helpers shared by all kernels.
 * Conventions: OpenCL C 1.2, no required extensions; 1-D launches are rounded up to the
 * work-group size, so every kernel bounds-checks its global id; no barrier sits in divergent
 * control flow (PoCL miscompiles that). */

/* Offset of element i (row-major over shape s0..s3) under strides t0..t3. */
inline int atb_offset4(int i, int s1, int s2, int s3, int t0, int t1, int t2, int t3) {
    int i3 = i % s3; i /= s3;
    int i2 = i % s2; i /= s2;
    int i1 = i % s1; i /= s1;
    return i * t0 + i1 * t1 + i2 * t2 + i3 * t3;
}

inline float atb_sigmoid(float x) { return 1.0f / (1.0f + exp(-x)); }
