#!/usr/bin/env python3
"""Experiment (issue 12; the engine's version is attn_causal_lanes in cl/attention.cl, with GQA, any T
and the table's attn.rq): causal attention on a CPU OpenCL device with the
keys along the vector lanes. K is transposed to [H, DH, T] so a tile of 16 keys' d-th components is
two float8 loads; each work-item takes RQ consecutive queries (scores RQ x 16 per tile, online
softmax, P.V with the value rows along the lanes). Checked against numpy; GFLOP/s counts 4 * DH per
visited (query, key) pair, as `attamba bench attention` does.

    python3 tools/experiments/attn_lanes_over_keys.py [T=2048] [RQ=4]    (needs pyopencl, numpy)

Measured 2026-12-01 on the 2-core AVX2 EPYC, PoCL 3.1, H=8, DH=64, T=2048, minutes apart from
`attamba bench attention --seq 2048` (whose dense causal kernel, one query per work-item with the
head dim along the lanes, ran at 16.6-19.8 GFLOP/s): RQ=1 14.5, RQ=2 18.1, RQ=4 21.4, RQ=8 25.8,
RQ=16 29.8, RQ=32 27.3 GFLOP/s; T=4096 RQ=8 26.4; max error 6.6e-7 to 9.5e-7. So about 1.5-1.8x
the engine's kernel, not the 3x a register-tile count suggests: the RQ x DH accumulators and the
P tile live on the stack. A kernel for the engine would need the compressed keys (a transposed
gather of the boundary keys), the sliding window, GQA, the backward, and a tuning-table choice
between this CPU shape and the GPU one.
"""
import sys
import time

import numpy as np
import pyopencl as cl

T, H, DH = int(sys.argv[1]) if len(sys.argv) > 1 else 2048, 8, 64  # DH is fixed in the kernel
RQ = int(sys.argv[2]) if len(sys.argv) > 2 else 4

SRC = r"""
#define DH 64
#define DV 8
inline float hmax8(float8 v) { float4 a = fmax(v.lo, v.hi); float2 b = fmax(a.lo, a.hi); return fmax(b.lo, b.hi); }
inline float hsum8(float8 v) { float4 a = v.lo + v.hi; float2 b = a.lo + a.hi; return b.lo + b.hi; }
__kernel void attn_kt(__global const float *q, __global const float *kt, __global const float *v,
                      __global float *out, int T, int Tp, int H, float scale) {
    int qb = get_global_id(0), h = get_global_id(1);
    int t0 = qb * RQ;
    if (t0 >= T) return;
    float qs[RQ][DH];
    for (int r = 0; r < RQ; r++)
        for (int d = 0; d < DH; d++) qs[r][d] = q[(min(t0 + r, T - 1) * H + h) * DH + d] * scale;
    float m[RQ], l[RQ];
    float8 acc[RQ][DV];
    for (int r = 0; r < RQ; r++) {
        m[r] = -1e30f; l[r] = 0.0f;
        for (int c = 0; c < DV; c++) acc[r][c] = (float8)(0.0f);
    }
    int kend = min(T, t0 + RQ);
    const float8 lane = (float8)(0, 1, 2, 3, 4, 5, 6, 7);
    __global const float *kh = kt + h * DH * Tp;
    for (int s0 = 0; s0 < kend; s0 += 16) {
        float8 sa[RQ], sb[RQ];
        for (int r = 0; r < RQ; r++) { sa[r] = (float8)(0.0f); sb[r] = (float8)(0.0f); }
        for (int d = 0; d < DH; d++) {
            float8 ka = vload8(0, kh + d * Tp + s0), kb = vload8(0, kh + d * Tp + s0 + 8);
            for (int r = 0; r < RQ; r++) {
                sa[r] = fma((float8)(qs[r][d]), ka, sa[r]);
                sb[r] = fma((float8)(qs[r][d]), kb, sb[r]);
            }
        }
        float p[RQ][16];
        for (int r = 0; r < RQ; r++) {
            float t = (float)(t0 + r);
            float8 ia = lane + (float)s0, ib = ia + 8.0f;
            sa[r] = ia <= t ? sa[r] : (float8)(-1e30f);
            sb[r] = ib <= t ? sb[r] : (float8)(-1e30f);
            float mt = fmax(m[r], fmax(hmax8(sa[r]), hmax8(sb[r])));
            float corr = exp(m[r] - mt);
            float8 pa = ia <= t ? exp(sa[r] - mt) : (float8)(0.0f), pb = ib <= t ? exp(sb[r] - mt) : (float8)(0.0f);
            l[r] = l[r] * corr + hsum8(pa) + hsum8(pb);
            m[r] = mt;
            vstore8(pa, 0, p[r]);
            vstore8(pb, 1, p[r]);
            for (int c = 0; c < DV; c++) acc[r][c] *= corr;
        }
        int jn = min(16, kend - s0);
        for (int c = 0; c < DV; c++) {
            float8 a[RQ];
            for (int r = 0; r < RQ; r++) a[r] = acc[r][c];
            for (int j = 0; j < jn; j++) {
                float8 vv = vload8(c, v + ((s0 + j) * H + h) * DH);
                for (int r = 0; r < RQ; r++) a[r] = fma((float8)(p[r][j]), vv, a[r]);
            }
            for (int r = 0; r < RQ; r++) acc[r][c] = a[r];
        }
    }
    for (int r = 0; r < RQ && t0 + r < T; r++)
        for (int c = 0; c < DV; c++) vstore8(acc[r][c] / l[r], c, out + ((t0 + r) * H + h) * DH);
}
"""

ctx = cl.create_some_context(interactive=False)
qu = cl.CommandQueue(ctx, properties=cl.command_queue_properties.PROFILING_ENABLE)
prg = cl.Program(ctx, SRC).build(options=["-DRQ=%d" % RQ, "-cl-std=CL1.2"])
rng = np.random.default_rng(0)
q = rng.standard_normal((T, H, DH), dtype=np.float32)
k = rng.standard_normal((T, H, DH), dtype=np.float32)
v = rng.standard_normal((T, H, DH), dtype=np.float32)
Tp = (T + 15) // 16 * 16
kt = np.zeros((H, DH, Tp), dtype=np.float32)
kt[:, :, :T] = k.transpose(1, 2, 0)
mf = cl.mem_flags
bq = cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=q)
bk = cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=kt)
bv = cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=v)
bo = cl.Buffer(ctx, mf.WRITE_ONLY, q.nbytes)
scale = 1.0 / np.sqrt(DH)
nq = (T + RQ - 1) // RQ
gx = (nq + 7) // 8 * 8
knl = cl.Kernel(prg, "attn_kt")
times = []
for it in range(6):
    ev = knl(qu, (gx, H), (8, 1), bq, bk, bv, bo, np.int32(T), np.int32(Tp), np.int32(H), np.float32(scale))
    ev.wait()
    times.append((ev.profile.end - ev.profile.start) * 1e-9)
out = np.empty_like(q)
cl.enqueue_copy(qu, out, bo).wait()
# numpy reference on a few heads/rows
ref = np.empty_like(q)
for h in range(H):
    s = (q[:, h, :] @ k[:, h, :].T) * scale
    s[np.triu_indices(T, 1)] = -np.inf
    s -= s.max(1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(1, keepdims=True)
    ref[:, h, :] = p @ v[:, h, :]
err = np.abs(out - ref).max()
t = sorted(times[1:])[len(times[1:]) // 2]
pairs = H * T * (T + 1) / 2
print("T=%d RQ=%d: %.2f ms, %.1f GFLOP/s, max err %.2e" % (T, RQ, t * 1e3, 4 * DH * pairs / t * 1e-9, err))
