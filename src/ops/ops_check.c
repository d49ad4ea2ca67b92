#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ops.h"
#include "ops/tuning.h"

/* Refuses a tensor of another device than the op's (tensors move between devices only explicitly). */
static attamba_status expect_here(rt_ctx *ctx, const char *op, const char *name, const tensor *t) {
    if (t->buf->ctx == ctx) return ATTAMBA_OK;
    const attamba_device_info *a = &t->buf->ctx->dev.info, *b = &ctx->dev.info;
    return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG,
                   "%s: %s lives on device %d:%d (%s) but the op runs on %d:%d (%s); copy it over first "
                   "(tensor_transfer)",
                   op, name, a->platform_index, a->device_index, a->name, b->platform_index, b->device_index, b->name);
}

attamba_status ops_expect(rt_ctx *ctx, const char *op, const char *name, const tensor *t, tensor_dtype dtype,
                          int ndim, const int64_t *shape) {
    char have[96];
    if (!t || !t->buf) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: %s is an empty tensor", op, name);
    RT_TRY(expect_here(ctx, op, name, t));
    int ok = t->dtype == dtype && t->ndim == ndim && tensor_is_contiguous(t);
    for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == shape[d];
    if (ok) return ATTAMBA_OK;
    char want[96];
    size_t u = (size_t)snprintf(want, sizeof want, "[");
    for (int d = 0; d < ndim && u < sizeof want; d++)
        u += (size_t)snprintf(want + u, sizeof want - u, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (u < sizeof want) snprintf(want + u, sizeof want - u, "] %s", tensor_dtype_name(dtype));
    return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: %s must be contiguous %s, got %s%s", op, name, want,
                   tensor_describe(t, have, sizeof have), tensor_is_contiguous(t) ? "" : " (strided)");
}

attamba_status ops_expect_same(rt_ctx *ctx, const char *op, const char *name, const tensor *t,
                               const tensor *like) {
    return ops_expect(ctx, op, name, t, like->dtype, like->ndim, like->shape);
}

attamba_status ops_expect_rows(rt_ctx *ctx, const char *op, const char *name, const tensor *x, int64_t *rows,
                               int64_t *C) {
    if (!x || !x->buf) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: %s is an empty tensor", op, name);
    if (x->ndim < 1) return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: %s must have at least one dim", op, name);
    RT_TRY(ops_expect(ctx, op, name, x, TENSOR_F32, x->ndim, x->shape));
    *C = x->shape[x->ndim - 1];
    *rows = *C ? tensor_numel(x) / *C : 0;
    return ATTAMBA_OK;
}

attamba_status ops_expect_nonneg(rt_ctx *ctx, const char *op, const char *name, double v) {
    if (!(v >= 0.0) || isinf(v))
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: %s must be finite and >= 0, got %g", op, name, v);
    return ATTAMBA_OK;
}

attamba_status ops_launch_rows(rt_ctx *ctx, const char *program, const char *kernel, int64_t rows, int64_t C,
                               size_t bytes_per_item, int n_args, rt_arg *args) {
    cl_kernel k;
    RT_TRY(rt_kernel(ctx, program, "", kernel, &k));
    size_t limit = (size_t)ops_tune(ctx, TUNE_NORM_GROUP);
    size_t vecs = ((size_t)C + 3) / 4, cap = vecs < limit ? rt_round_up(vecs, 8) : limit;
    size_t local = rt_local_1d(ctx, k, cap), global = (size_t)rows * local;
    args[n_args - 1] = RT_LOCAL(local * bytes_per_item);
    return rt_launch(ctx, k, kernel, 1, &global, &local, n_args, args);
}

attamba_status ops_launch_grid(rt_ctx *ctx, cl_kernel k, const char *name, int64_t x, int64_t y, int64_t z,
                               int n_args, const rt_arg *args) {
    size_t cap = rt_local_1d(ctx, k, 256), lx = 1, ly = 1;
    for (size_t w = 64; w >= 8; w /= 2)
        if (w <= cap && (lx == 1 || rt_round_up((size_t)x, w) < rt_round_up((size_t)x, lx))) lx = w;
    while (ly * 2 * lx <= cap && ly < (size_t)y) ly *= 2;
    size_t local[3] = {lx, ly, 1}, global[3] = {(size_t)x, (size_t)y, (size_t)z};
    return rt_launch(ctx, k, name, 3, global, local, n_args, args);
}

attamba_status ops_launch_1d(rt_ctx *ctx, const char *program, const char *options, const char *kernel,
                             int64_t n, int n_args, const rt_arg *args) {
    cl_kernel k;
    RT_TRY(rt_kernel(ctx, program, options, kernel, &k));
    size_t local = rt_local_1d(ctx, k, 256), global = (size_t)n;
    return rt_launch(ctx, k, kernel, 1, &global, &local, n_args, args);
}

int ops_overlap(const tensor *a, const tensor *b) {
    if (!a || !b || !a->buf || !b->buf || a->buf->mem != b->buf->mem) return 0;
    int64_t ext[2][2];
    const tensor *t[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        int64_t last = t[i]->offset;
        for (int d = 0; d < t[i]->ndim; d++) last += (t[i]->shape[d] - 1) * t[i]->stride[d];
        int64_t es = (int64_t)tensor_dtype_size(t[i]->dtype);
        ext[i][0] = t[i]->offset * es;
        ext[i][1] = (last + 1) * es;
    }
    return ext[0][0] < ext[1][1] && ext[1][0] < ext[0][1];
}
