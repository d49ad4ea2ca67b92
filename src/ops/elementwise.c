/* Elementwise ops: add, mul, scale, silu. */
#include "ops.h"

static attamba_status binary(rt_ctx *ctx, const char *op, const char *kernel, const tensor *a,
                             const tensor *b, tensor *out) {
    RT_TRY(ops_expect(ctx, op, "a", a, TENSOR_F32, a->ndim, a->shape));
    RT_TRY(ops_expect_same(ctx, op, "b", b, a));
    RT_TRY(ops_expect_same(ctx, op, "out", out, a));
    int64_t n = tensor_numel(a);
    rt_arg args[] = {RT_MEM(out->buf->mem), RT_I32(out->offset), RT_MEM(a->buf->mem), RT_I32(a->offset),
                     RT_MEM(b->buf->mem), RT_I32(b->offset), RT_I32(n)};
    return ops_launch_1d(ctx, "elementwise", "", kernel, n, 7, args);
}

attamba_status ops_add(rt_ctx *ctx, const tensor *a, const tensor *b, tensor *out) {
    return binary(ctx, "ops_add", "add_f32", a, b, out);
}

attamba_status ops_mul(rt_ctx *ctx, const tensor *a, const tensor *b, tensor *out) {
    return binary(ctx, "ops_mul", "mul_f32", a, b, out);
}

attamba_status ops_scale(rt_ctx *ctx, const tensor *x, float alpha, tensor *out) {
    RT_TRY(ops_expect(ctx, "ops_scale", "x", x, TENSOR_F32, x->ndim, x->shape));
    RT_TRY(ops_expect_same(ctx, "ops_scale", "out", out, x));
    int64_t n = tensor_numel(x);
    rt_arg args[] = {RT_MEM(out->buf->mem), RT_I32(out->offset), RT_MEM(x->buf->mem), RT_I32(x->offset),
                     RT_F32(alpha), RT_I32(n)};
    return ops_launch_1d(ctx, "elementwise", "", "scale_f32", n, 6, args);
}

attamba_status ops_silu(rt_ctx *ctx, const tensor *x, tensor *out) {
    RT_TRY(ops_expect(ctx, "ops_silu", "x", x, TENSOR_F32, x->ndim, x->shape));
    RT_TRY(ops_expect_same(ctx, "ops_silu", "out", out, x));
    int64_t n = tensor_numel(x);
    rt_arg args[] = {RT_MEM(out->buf->mem), RT_I32(out->offset), RT_MEM(x->buf->mem), RT_I32(x->offset),
                     RT_I32(n)};
    return ops_launch_1d(ctx, "elementwise", "", "silu_f32", n, 5, args);
}
