/* loss.cl: the language-model head's row kernels over the vocabulary (cross-entropy forward and
 * backward, argmax, softmax).
 * One work-group per row; the host launches exactly rows * local items with a power-of-two local
 * size, so there are no partial groups. Each work-item first scans a strided slice of its row
 * (no barrier inside that loop), then the group combines the partial results with a __local tree
 * whose loop bound (the local size) is uniform, so every work-item reaches every barrier equally
 * often. The exp-heavy scans use explicit float8 vectors (below); argmax steps over the row in
 * chunks of the local size with a predicated tail, so its trip count is uniform (PoCL vectorises
 * across work-items only then). Offsets are in elements. */

/* Tree-reduce red[0..n) to red[0] with max; every work-item of the group must call this. */
static inline float loss_group_max(__local float *red, float v) {
    int lid = get_local_id(0), n = get_local_size(0);
    red[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = n / 2; s > 0; s >>= 1) {
        if (lid < s) red[lid] = fmax(red[lid], red[lid + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE); /* red is reused by the next reduction */
    return r;
}

static inline float loss_group_sum(__local float *red, float v) {
    int lid = get_local_id(0), n = get_local_size(0);
    red[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = n / 2; s > 0; s >>= 1) {
        if (lid < s) red[lid] += red[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

static inline float loss_hmax8(float8 v) {
    float4 a = fmax(v.lo, v.hi);
    float2 b = fmax(a.lo, a.hi);
    return fmax(b.lo, b.hi);
}

/* The row scans below read eight floats at a time with vload8 (element alignment is enough) and
 * call the vector exp: PoCL does not vectorise exp() across work-items inside these loops, and the
 * scalar exp made the cross-entropy kernels ~15x slower than copying the logits. Each work-item
 * takes every n-th group of eight; the V % 8 tail goes element by element. */

/* Max of one row over the group, returned to every work-item. */
static inline float loss_row_max(__global const float *row, int V, __local float *red) {
    int lid = get_local_id(0), n = get_local_size(0), nv = V / 8;
    float8 m8 = (float8)(-INFINITY);
    for (int jv = lid; jv < nv; jv += n) m8 = fmax(m8, vload8(jv, row));
    float m = loss_hmax8(m8);
    for (int j = 8 * nv + lid; j < V; j += n) m = fmax(m, row[j]);
    return loss_group_max(red, m);
}

/* Max, then sum of exp(scale * (x - max)) over one row: the numerically stable log-sum-exp.
 * With scale > 0 the max of scale * x is scale * max(x). A row of all -inf gives max -inf, and
 * then the sum is NaN (exp(NaN)): such a row has no distribution. */
static inline void loss_row_max_sum(__global const float *row, int V, float scale, __local float *red,
                             float *max_out, float *sum_out) {
    int lid = get_local_id(0), n = get_local_size(0), nv = V / 8;
    float m = loss_row_max(row, V, red);
    float8 s8 = (float8)(0.0f);
    for (int jv = lid; jv < nv; jv += n) s8 += exp(scale * (vload8(jv, row) - m));
    float s = atb_hsum8(s8);
    for (int j = 8 * nv + lid; j < V; j += n) s += exp(scale * (row[j] - m));
    *max_out = m;
    *sum_out = loss_group_sum(red, s);
}

/* losses[r] = lse(row) - row[t]; 0 when t == ignore_id; NaN when t is outside [0, V).
 * lse[r] = log-sum-exp of the row when has_lse. The loss is formed as (max - x_t) + log(sum)
 * rather than lse - x_t so that huge logits (|x| ~ 1e4, where one f32 ulp is ~1e-3) do not lose
 * the small difference to cancellation. */
__kernel void cross_entropy_rows(__global const float *logits, int lo, int V, __global const int *targets,
                                 int to, int ignore_id, __global float *losses, int so,
                                 __global float *lse, int eo, int has_lse, __local float *red) {
    int r = get_group_id(0);
    __global const float *row = logits + lo + r * V;
    float m, s;
    loss_row_max_sum(row, V, 1.0f, red, &m, &s);
    if (get_local_id(0) == 0) {
        int t = targets[to + r];
        float ls = log(s);
        float loss;
        if (t == ignore_id) loss = 0.0f;
        else if (t < 0 || t >= V) loss = NAN;
        else loss = (m - row[t]) + ls;
        losses[so + r] = loss;
        if (has_lse) lse[eo + r] = m + ls;
    }
}

/* One work-group sums the losses of the counted rows (target != ignore_id and inside [0, V)) and
 * counts them, and counts the rows whose target is invalid. Each work-item accumulates with
 * Kahan compensation over its strided slice (N can be large), then the group tree-reduces.
 * out_f[0] = sum; out_i[0] = counted rows, out_i[1] = invalid rows. */
__kernel void cross_entropy_sum(__global const float *losses, int so, __global const int *targets, int to,
                                int N, int V, int ignore_id, __global float *out_f, __global int *out_i,
                                __local float *red, __local int *cnt) {
    int lid = get_local_id(0), n = get_local_size(0);
    float s = 0.0f, c = 0.0f;
    int counted = 0, bad = 0;
    for (int i = lid; i < N; i += n) {
        int t = targets[to + i];
        if (t == ignore_id) continue;
        if (t < 0 || t >= V) {
            bad++;
            continue;
        }
        float y = losses[so + i] - c, u = s + y;
        c = (u - s) - y;
        s = u;
        counted++;
    }
    float total = loss_group_sum(red, s);
    /* Two int tree reductions share one __local array: counted in [0, n), bad in [n, 2n). */
    cnt[lid] = counted;
    cnt[n + lid] = bad;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int k = n / 2; k > 0; k >>= 1) {
        if (lid < k) {
            cnt[lid] += cnt[lid + k];
            cnt[n + lid] += cnt[n + lid + k];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) {
        out_f[0] = total;
        out_i[0] = cnt[0];
        out_i[1] = cnt[n];
    }
}

/* Whether (v, i) comes before (w, j) in the argmax order: NaN beats every number (as in NumPy and
 * PyTorch), then larger values, then the smaller index; i < 0 marks "no element yet". */
static inline int loss_before(float v, int i, float w, int j) {
    if (j < 0) return i >= 0;
    if (i < 0) return 0;
    if (isnan(v) || isnan(w)) return isnan(v) && (!isnan(w) || i < j);
    return v > w || (v == w && i < j);
}

/* out[r] = index of the first max of row r. */
__kernel void argmax_rows(__global const float *logits, int lo, int V, __global int *out, int oo,
                          __local float *rv, __local int *ri) {
    int r = get_group_id(0), lid = get_local_id(0), n = get_local_size(0);
    __global const float *row = logits + lo + r * V;
    float bv = -INFINITY;
    int bi = -1;
    /* This item's indices increase, so only a strictly better value replaces the best. */
    for (int base = 0; base < V; base += n) {
        int j = base + lid;
        float x = j < V ? row[j] : 0.0f;
        if (j < V && loss_before(x, j, bv, bi)) {
            bv = x;
            bi = j;
        }
    }
    rv[lid] = bv;
    ri[lid] = bi;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = n / 2; s > 0; s >>= 1) {
        if (lid < s && loss_before(rv[lid + s], ri[lid + s], rv[lid], ri[lid])) {
            rv[lid] = rv[lid + s];
            ri[lid] = ri[lid + s];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) out[oo + r] = ri[0];
}

/* probs[r, :] = softmax(row / temperature), max-subtracted; inv_t = 1 / temperature > 0.
 * The sum pass stores each exp() it computes, and after the reduction every work-item rescales
 * the elements it stored itself (its own global writes are visible to it without a barrier):
 * one exp per element instead of two, which is what bounds this kernel on a CPU. */
__kernel void softmax_temperature_rows(__global const float *logits, int lo, int V, float inv_t,
                                       __global float *probs, int po, __local float *red) {
    int r = get_group_id(0), lid = get_local_id(0), n = get_local_size(0);
    __global const float *row = logits + lo + r * V;
    __global float *p = probs + po + r * V;
    int nv = V / 8;
    float m = loss_row_max(row, V, red);
    float8 s8 = (float8)(0.0f);
    for (int jv = lid; jv < nv; jv += n) {
        float8 e = exp(inv_t * (vload8(jv, row) - m));
        vstore8(e, jv, p);
        s8 += e;
    }
    float s = atb_hsum8(s8);
    for (int j = 8 * nv + lid; j < V; j += n) {
        float e = exp(inv_t * (row[j] - m));
        p[j] = e;
        s += e;
    }
    float inv_s = 1.0f / loss_group_sum(red, s);
    for (int jv = lid; jv < nv; jv += n) vstore8(vload8(jv, p) * inv_s, jv, p);
    for (int j = 8 * nv + lid; j < V; j += n) p[j] *= inv_s;
}

/* dlogits[r, j] = scale * (exp(x[r, j] - lse[r]) - (j == t)): the gradient of scale * loss[r], eight
 * elements per work-item of a 2-D launch (j / 8, r), so the row needs no division and exp runs on
 * float8 (the last item of a row takes the V % 8 tail one by one). Ignored rows get 0 (whatever
 * their logits); targets outside [0, V) get NaN. dlogits may be the very same elements as logits: each work-item reads its
 * elements before it writes them and touches no other element, and the one-hot term needs only the index t,
 * not x[t]; so neither pointer is restrict. */
__kernel void cross_entropy_backward(__global const float *logits, int lo, int V, __global const int *targets,
                                     int to, int ignore_id, __global const float *lse, int eo, float scale,
                                     __global float *dlogits, int dlo) {
    int j8 = get_global_id(0), r = get_global_id(1), j = 8 * j8;
    if (j >= V) return;
    int t = targets[to + r];
    int ignored = t == ignore_id;
    float s = (t < 0 || t >= V) && !ignored ? NAN : scale, l = lse[eo + r];
    __global const float *x = logits + lo + r * V;
    __global float *d = dlogits + dlo + r * V;
    if (j + 8 <= V) {
        float8 e = exp(vload8(j8, x) - l);
        int8 hot = (int8)(0, 1, 2, 3, 4, 5, 6, 7) + j == (int8)t;
        float8 g = s * (e - select((float8)0.0f, (float8)1.0f, hot));
        vstore8(ignored ? (float8)0.0f : g, j8, d);
    } else {
        for (int k = j; k < V; k++) {
            float g = s * (exp(x[k] - l) - (k == t ? 1.0f : 0.0f));
            d[k] = ignored ? 0.0f : g;
        }
    }
}
