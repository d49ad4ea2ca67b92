/* Layer ops (SPEC 3): argument checks, then the kernels of cl/layer.cl. */
#include <math.h>
#include <stdlib.h>

#include "ops/layer.h"

static attamba_status launch_rows(rt_ctx *ctx, const char *kernel, int64_t rows, int64_t C, int n_args,
                                  rt_arg *args) {
    return ops_launch_rows(ctx, "layer", kernel, rows, C, sizeof(cl_float), n_args, args);
}

/* A 2-D launch over (column, row) of a rows x C matrix, the group spanning columns. */
static attamba_status launch_matrix(rt_ctx *ctx, const char *kernel, int64_t rows, int64_t C, int n_args,
                                    const rt_arg *args) {
    cl_kernel k;
    RT_TRY(rt_kernel(ctx, "layer", "", kernel, &k));
    size_t lx = rt_local_1d(ctx, k, C < 256 ? rt_round_up((size_t)C, 8) : 256);
    size_t local[2] = {lx, 1}, global[2] = {(size_t)C, (size_t)rows};
    return rt_launch(ctx, k, kernel, 2, global, local, n_args, args);
}

attamba_status ops_rmsnorm(rt_ctx *ctx, const tensor *x, const tensor *w, float eps, tensor *out) {
    static const char op[] = "ops_rmsnorm";
    int64_t rows = 0, C = 0;
    RT_TRY(ops_expect_rows(ctx, op, "x", x, &rows, &C));
    RT_TRY(ops_expect(ctx, op, "w", w, TENSOR_F32, 1, &C));
    RT_TRY(ops_expect_same(ctx, op, "out", out, x));
    RT_TRY(ops_expect_nonneg(ctx, op, "eps", eps));
    rt_arg args[] = {RT_MEM(out->buf->mem), RT_I32(out->offset), RT_MEM(x->buf->mem), RT_I32(x->offset),
                     RT_MEM(w->buf->mem), RT_I32(w->offset), RT_I32(C), RT_F32(eps), RT_LOCAL(0)};
    return launch_rows(ctx, "rmsnorm_f32", rows, C, (int)CORE_LEN(args), args);
}

attamba_status ops_gated_rmsnorm(rt_ctx *ctx, const tensor *y, const tensor *z, const tensor *w, float eps,
                                 tensor *out) {
    static const char op[] = "ops_gated_rmsnorm";
    int64_t rows = 0, C = 0;
    RT_TRY(ops_expect_rows(ctx, op, "y", y, &rows, &C));
    RT_TRY(ops_expect_same(ctx, op, "z", z, y));
    RT_TRY(ops_expect(ctx, op, "w", w, TENSOR_F32, 1, &C));
    RT_TRY(ops_expect_same(ctx, op, "out", out, y));
    RT_TRY(ops_expect_nonneg(ctx, op, "eps", eps));
    rt_arg args[] = {RT_MEM(out->buf->mem), RT_I32(out->offset), RT_MEM(y->buf->mem), RT_I32(y->offset),
                     RT_MEM(z->buf->mem), RT_I32(z->offset), RT_MEM(w->buf->mem), RT_I32(w->offset),
                     RT_I32(C), RT_F32(eps), RT_LOCAL(0)};
    return launch_rows(ctx, "gated_rmsnorm_f32", rows, C, (int)CORE_LEN(args), args);
}

attamba_status ops_rope(rt_ctx *ctx, tensor *x, int n_heads, const tensor *pos0, float theta) {
    return ops_rope_rotate(ctx, "ops_rope", x, n_heads, NULL, 0, pos0, theta, 1.0f);
}

attamba_status ops_rope2(rt_ctx *ctx, tensor *q, int q_heads, tensor *k, int k_heads, const tensor *pos0, float theta) {
    return ops_rope_rotate(ctx, "ops_rope2", q, q_heads, k, k_heads, pos0, theta, 1.0f);
}

/* Checks x [B, T, n_heads * dh] (dh even); sets *half_dh. */
static attamba_status rope_check(rt_ctx *ctx, const char *op, const char *name, const tensor *x, int n_heads,
                                 int *half_dh) {
    char d[96];
    if (!x || !x->buf) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: %s is an empty tensor", op, name);
    if (x->ndim != 3)
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: %s must be [B, T, n_heads*dh], got %s", op, name,
                       tensor_describe(x, d, sizeof d));
    RT_TRY(ops_expect(ctx, op, name, x, TENSOR_F32, 3, x->shape));
    if (n_heads < 1)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: n_heads must be >= 1, got %d", op, n_heads);
    int64_t width = x->shape[2];
    if (width % n_heads || (width / n_heads) % 2)
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: %s %s: width %lld is not n_heads (%d) times an even dh",
                       op, name, tensor_describe(x, d, sizeof d), (long long)width, n_heads);
    *half_dh = (int)(width / n_heads / 2);
    return ATTAMBA_OK;
}

attamba_status ops_rope_check(rt_ctx *ctx, const char *op, const tensor *x, int n_heads, const tensor *x2,
                              int n_heads2, const tensor *pos0, float theta, int *half_dh) {
    int half2 = 0;
    RT_TRY(rope_check(ctx, op, "x", x, n_heads, half_dh));
    if (x2) {
        RT_TRY(rope_check(ctx, op, "x2", x2, n_heads2, &half2));
        if (half2 != *half_dh || x2->shape[0] != x->shape[0] || x2->shape[1] != x->shape[1])
            return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: x2 needs x's B, T and head dim", op);
        if (ops_overlap(x, x2)) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: x and x2 overlap", op);
    }
    if (!(theta > 0.0f) || isinf(theta))
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: theta must be finite and > 0, got %g", op,
                       (double)theta);
    return ops_expect(ctx, op, "pos0", pos0, TENSOR_I32, 1, x->shape);
}

attamba_status ops_rope_rotate(rt_ctx *ctx, const char *op, tensor *x, int n_heads, tensor *x2, int n_heads2,
                               const tensor *pos0, float theta, float sign) {
    int half_dh = 0;
    RT_TRY(ops_rope_check(ctx, op, x, n_heads, x2, n_heads2, pos0, theta, &half_dh));
    int64_t B = x->shape[0], T = x->shape[1];
    /* one work-item per (token, pair index), or per four pair indices when dh % 8 == 0; each
     * loops over the heads of x, then of x2 (the same angles) */
    int vec = half_dh % 4 ? 1 : 4;
    int64_t n_items = B * T * (half_dh / vec);
    const tensor *y = x2 ? x2 : x;
    rt_arg args[] = {RT_MEM(x->buf->mem), RT_I32(x->offset), RT_MEM(y->buf->mem), RT_I32(y->offset),
                     RT_I32(x2 ? n_heads2 : 0), RT_MEM(pos0->buf->mem), RT_I32(pos0->offset),
                     RT_I32(T), RT_I32(n_heads), RT_I32(half_dh / vec), RT_F32(log2((double)theta)),
                     RT_F32(log2(3.14159265358979323846)), RT_F32(sign), RT_I32(n_items)};
    return ops_launch_1d(ctx, "layer", "", vec == 4 ? "rope4_f32" : "rope_f32", n_items, (int)CORE_LEN(args),
                         args);
}

attamba_status ops_swiglu(rt_ctx *ctx, const tensor *gate, const tensor *up, tensor *out) {
    static const char op[] = "ops_swiglu";
    int64_t rows = 0, C = 0;
    RT_TRY(ops_expect_rows(ctx, op, "gate", gate, &rows, &C));
    RT_TRY(ops_expect_same(ctx, op, "up", up, gate));
    RT_TRY(ops_expect_same(ctx, op, "out", out, gate));
    int64_t n = tensor_numel(gate);
    rt_arg args[] = {RT_MEM(out->buf->mem), RT_I32(out->offset), RT_MEM(gate->buf->mem), RT_I32(gate->offset),
                     RT_MEM(up->buf->mem), RT_I32(up->offset), RT_I32(n)};
    return ops_launch_1d(ctx, "layer", "", "swiglu_f32", n / 4 + n % 4, (int)CORE_LEN(args), args);
}

attamba_status ops_embedding(rt_ctx *ctx, const tensor *ids, const tensor *table, tensor *out) {
    static const char op[] = "ops_embedding";
    char d[96];
    if (!ids || !ids->buf || !table || !table->buf)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: %s is an empty tensor", op,
                       ids && ids->buf ? "table" : "ids");
    if (ids->ndim != 2)
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: ids must be i32 [B, T], got %s", op,
                       tensor_describe(ids, d, sizeof d));
    RT_TRY(ops_expect(ctx, op, "ids", ids, TENSOR_I32, 2, ids->shape));
    if (table->ndim != 2)
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: table must be f32 [V, d], got %s", op,
                       tensor_describe(table, d, sizeof d));
    RT_TRY(ops_expect(ctx, op, "table", table, TENSOR_F32, 2, table->shape));
    int64_t V = table->shape[0], width = table->shape[1];
    int64_t out_shape[3] = {ids->shape[0], ids->shape[1], width};
    RT_TRY(ops_expect(ctx, op, "out", out, TENSOR_F32, 3, out_shape));
    int64_t rows = tensor_numel(ids);
    rt_arg args[] = {RT_MEM(out->buf->mem), RT_I32(out->offset), RT_MEM(ids->buf->mem), RT_I32(ids->offset),
                     RT_MEM(table->buf->mem), RT_I32(table->offset), RT_I32(V),
                     RT_I32(width % 4 ? width : width / 4), RT_I32(rows)};
    if (width % 4) return launch_matrix(ctx, "embedding_f32", rows, width, (int)CORE_LEN(args), args);
    return launch_matrix(ctx, "embedding4_f32", rows, width / 4, (int)CORE_LEN(args), args);
}

attamba_status ops_add_bias(rt_ctx *ctx, const tensor *x, const tensor *bias, tensor *out) {
    static const char op[] = "ops_add_bias";
    int64_t rows = 0, C = 0;
    RT_TRY(ops_expect_rows(ctx, op, "x", x, &rows, &C));
    RT_TRY(ops_expect(ctx, op, "bias", bias, TENSOR_F32, 1, &C));
    RT_TRY(ops_expect_same(ctx, op, "out", out, x));
    rt_arg args[] = {RT_MEM(out->buf->mem), RT_I32(out->offset), RT_MEM(x->buf->mem), RT_I32(x->offset),
                     RT_MEM(bias->buf->mem), RT_I32(bias->offset), RT_I32(C), RT_I32(rows)};
    return launch_matrix(ctx, "add_bias_f32", rows, C, (int)CORE_LEN(args), args);
}
