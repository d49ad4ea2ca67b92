/* The trainer's ops outside the layers: argument checks, then the kernels of cl/optim.cl; the
 * schedule and the clipping factor are plain host arithmetic. */
#include <math.h>

#include "optim.h"
#include "ops/tuning.h"

/* The largest power of two <= the device's 1-D work-group size for k (capped at 256): the __local
 * trees halve it. */
static size_t pow2_local(rt_ctx *ctx, cl_kernel k) {
    size_t cap = rt_local_1d(ctx, k, 256), local = 1;
    while (local * 2 <= cap) local *= 2;
    return local;
}

attamba_status ops_sum_squares(rt_ctx *ctx, const tensor *x, double *out) {
    return ops_sum_squares_with(ctx, OPS_SUMSQ_AUTO, x, out);
}

attamba_status ops_sum_squares_with(rt_ctx *ctx, ops_sumsq_split split, const tensor *x, double *out) {
    static const char *op = "ops_sum_squares";
    if (split < OPS_SUMSQ_AUTO || split > OPS_SUMSQ_INTERLEAVED)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: unknown split %d", op, (int)split);
    if (!out) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: out must not be NULL", op);
    if (!x || !x->buf) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: x is an empty tensor", op);
    RT_TRY(ops_expect(ctx, op, "x", x, TENSOR_F32, x->ndim, x->shape));
    int64_t n = tensor_numel(x);
    cl_kernel k1, k2;
    RT_TRY(rt_kernel(ctx, "optim", "", "sum_squares_blocks", &k1));
    RT_TRY(rt_kernel(ctx, "optim", "", "reduce_sum", &k2));
    /* Pass 1: enough work-items to fill a GPU, each with >= 16 blocks of 16 so that small tensors do
     * not launch idle groups; at least 16 items so the < 16 tail elements have an item each. */
    enum { MAX_ITEMS = 65536, MIN_BLOCKS = 16 };
    size_t l1 = rt_local_1d(ctx, k1, 256), l2 = pow2_local(ctx, k2);
    int64_t want = CORE_MAX(16, CORE_MIN(MAX_ITEMS, (n / 16 + MIN_BLOCKS - 1) / MIN_BLOCKS));
    size_t items = rt_round_up((size_t)want, l1);
    /* CPUs scan contiguous chunks, GPUs interleave (see cl/optim.cl); chunk * items covers every block. */
    if (split == OPS_SUMSQ_AUTO)
        split = ops_tune(ctx, TUNE_SUMSQ_SPLIT) == 0 ? OPS_SUMSQ_CHUNKED : OPS_SUMSQ_INTERLEAVED;
    int64_t nb = n / 16, chunk = split == OPS_SUMSQ_CHUNKED ? (nb + (int64_t)items - 1) / (int64_t)items : 0;
    if (nb + (int64_t)items * (chunk ? chunk : 1) > INT32_MAX)
        return rt_fail(ctx, ATTAMBA_ERR_UNSUPPORTED, "%s: %lld elements are too many for 32-bit indexing", op,
                       (long long)n);
    tensor part = {0};
    float result = 0;
    /* part[1 .. items] holds the partial sums; one group then adds them into part[0]. */
    attamba_status s = tensor_scratch(ctx, &part, TENSOR_F32, 1, (int64_t[]){(int64_t)items + 1});
    if (!s) {
        rt_arg args[] = {RT_MEM(x->buf->mem), RT_I32(x->offset), RT_I32(n), RT_I32(chunk), RT_MEM(part.buf->mem),
                         RT_I32(1)};
        s = rt_launch(ctx, k1, "sum_squares_blocks", 1, &items, &l1, (int)CORE_LEN(args), args);
    }
    if (!s) {
        rt_arg args[] = {RT_MEM(part.buf->mem), RT_I32(1), RT_I32(items), RT_MEM(part.buf->mem), RT_I32(0),
                         RT_LOCAL(l2 * sizeof(cl_float))};
        s = rt_launch(ctx, k2, "sum_squares_final", 1, &l2, &l2, (int)CORE_LEN(args), args);
    }
    if (!s) {
        tensor first;
        s = tensor_slice(&part, 0, 0, 1, &first);
        if (!s) s = tensor_download(&first, &result);
        tensor_free(&first);
    }
    tensor_free(&part);
    if (!s) *out = result;
    return s;
}

/* Launches sum_rows_chunk over x [R, C] (at offset xo of buffer xm) in P chunks of rpc rows into dst. */
static attamba_status sum_rows_launch(rt_ctx *ctx, cl_mem xm, int64_t xo, int64_t R, int64_t C, int64_t P,
                                      int64_t rpc, cl_mem dm, int64_t dso, int accumulate) {
    /* Eight columns per work-item when rows are whole float8 blocks. */
    int vec = C % 8 == 0;
    const char *name = vec ? "sum_rows_chunk8" : "sum_rows_chunk";
    cl_kernel k;
    RT_TRY(rt_kernel(ctx, "optim", "", name, &k));
    size_t lx = rt_local_1d(ctx, k, 64);
    size_t global[2] = {rt_round_up((size_t)(vec ? C / 8 : C), lx), (size_t)P}, local[2] = {lx, 1};
    rt_arg args[] = {RT_MEM(xm), RT_I32(xo), RT_I32(R), RT_I32(C), RT_I32(rpc), RT_MEM(dm), RT_I32(dso),
                     RT_I32(accumulate)};
    return rt_launch(ctx, k, name, 2, global, local, (int)CORE_LEN(args), args);
}

attamba_status ops_sum_rows(rt_ctx *ctx, const tensor *x, tensor *out) {
    static const char *op = "ops_sum_rows";
    if (!x || !x->buf) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: x is an empty tensor", op);
    RT_TRY(ops_expect(ctx, op, "x", x, TENSOR_F32, x->ndim, x->shape));
    int64_t C = x->shape[x->ndim - 1], R = tensor_numel(x) / C;
    RT_TRY(ops_expect(ctx, op, "out", out, TENSOR_F32, 1, &C));
    if (ops_overlap(x, out)) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: out overlaps x", op);
    /* Chunks of >= 32 rows, enough of them for ~16k work-items in all; a single chunk adds straight
     * into out, more go through a [P, C] buffer whose rows are then summed into out. */
    enum { MIN_ROWS = 32, TARGET_ITEMS = 16384 };
    int64_t cols = C % 8 == 0 ? C / 8 : C; /* work-items per chunk */
    int64_t P = CORE_MIN((TARGET_ITEMS + cols - 1) / cols, (R + MIN_ROWS - 1) / MIN_ROWS);
    P = CORE_MAX(P, 1);
    int64_t rpc = (R + P - 1) / P;
    P = (R + rpc - 1) / rpc;
    if (P == 1) return sum_rows_launch(ctx, x->buf->mem, x->offset, R, C, 1, R, out->buf->mem, out->offset, 1);
    tensor part = {0};
    attamba_status s = tensor_scratch(ctx, &part, TENSOR_F32, 2, ((int64_t[]){P, C}));
    if (!s) s = sum_rows_launch(ctx, x->buf->mem, x->offset, R, C, P, rpc, part.buf->mem, 0, 0);
    if (!s) s = sum_rows_launch(ctx, part.buf->mem, 0, P, C, 1, P, out->buf->mem, out->offset, 1);
    tensor_free(&part); /* released once the queued kernels are done with it */
    return s;
}

attamba_status ops_adamw(rt_ctx *ctx, tensor *param, const tensor *grad, tensor *m, tensor *v,
                         const adamw_params *p) {
    static const char *op = "ops_adamw";
    if (!p) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: params must not be NULL", op);
    RT_TRY(ops_expect_nonneg(ctx, op, "lr", p->lr));
    if (!(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1))
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: beta1 and beta2 must be in [0, 1), got %g and %g", op,
                       (double)p->beta1, (double)p->beta2);
    RT_TRY(ops_expect_nonneg(ctx, op, "eps", p->eps));
    RT_TRY(ops_expect_nonneg(ctx, op, "weight_decay", p->weight_decay));
    if (!isfinite(p->grad_scale))
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: grad_scale must be finite, got %g", op,
                       (double)p->grad_scale);
    if (p->step < 1)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: step is 1-based, got %lld", op, (long long)p->step);
    if (!param || !param->buf) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: param is an empty tensor", op);
    RT_TRY(ops_expect(ctx, op, "param", param, TENSOR_F32, param->ndim, param->shape));
    RT_TRY(ops_expect_same(ctx, op, "grad", grad, param));
    RT_TRY(ops_expect_same(ctx, op, "m", m, param));
    RT_TRY(ops_expect_same(ctx, op, "v", v, param));
    const tensor *all[4] = {param, grad, m, v};
    static const char *names[4] = {"param", "grad", "m", "v"};
    for (int i = 0; i < 4; i++)
        for (int j = i + 1; j < 4; j++)
            if (ops_overlap(all[i], all[j]))
                return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: %s and %s share memory", op, names[i], names[j]);
    /* Bias corrections in double: 1 - b^t for t in the millions stays accurate (pow, not repeated
     * products), and 1 - b2^1 = 1e-3 keeps its digits. */
    double t = (double)p->step, bc1 = 1.0 - pow(p->beta1, t), bc2 = 1.0 - pow(p->beta2, t);
    int64_t n = tensor_numel(param);
    rt_arg args[] = {RT_MEM(param->buf->mem), RT_I32(param->offset), RT_MEM(grad->buf->mem), RT_I32(grad->offset),
                     RT_MEM(m->buf->mem), RT_I32(m->offset), RT_MEM(v->buf->mem), RT_I32(v->offset), RT_I32(n),
                     RT_F32(p->grad_scale), RT_F32(p->beta1), RT_F32(p->beta2), RT_F32(p->eps),
                     RT_F32((double)p->lr * p->weight_decay), RT_F32(p->lr / bc1), RT_F32(1.0 / sqrt(bc2))};
    return ops_launch_1d(ctx, "optim", "", "adamw_step", (n + 7) / 8, (int)CORE_LEN(args), args);
}

float optim_lr_schedule(int64_t step, int64_t warmup, int64_t total, float lr_max, float lr_min) {
    static const double pi = 3.14159265358979323846;
    if (step <= 0) return 0.0f;
    if (warmup < 0) warmup = 0;
    if (step <= warmup) return (float)((double)lr_max * (double)step / (double)warmup);
    if (step >= total) return lr_min;
    /* warmup < step < total, so the cosine phase has a positive length. */
    double progress = (double)(step - warmup) / (double)(total - warmup);
    return (float)(lr_min + 0.5 * ((double)lr_max - lr_min) * (1.0 + cos(pi * progress)));
}

float optim_clip_scale(double grad_norm, float max_norm) {
    if (!(max_norm > 0)) return 1.0f;
    if (isnan(grad_norm)) return NAN;
    double s = max_norm / (grad_norm + 1e-6);
    return s < 1.0 ? (float)s : 1.0f;
}
