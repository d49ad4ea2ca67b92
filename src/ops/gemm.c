/* GEMM: argument checks, then CLBlast or the own kernel (cl/gemm.cl). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#ifdef ATTAMBA_HAVE_CLBLAST
#include <clblast_c.h>
#endif

int ops_gemm_have_clblast(void) {
#ifdef ATTAMBA_HAVE_CLBLAST
    return 1;
#else
    return 0;
#endif
}

/* One operand as the kernels see it: buffer, offset, row stride, batch stride (0 = shared). */
typedef struct {
    cl_mem mem;
    int off, ld, stride;
    int64_t rows, cols;
} gemm_operand;

static attamba_status operand(rt_ctx *ctx, const char *name, const tensor *t, int64_t batch, gemm_operand *o) {
    char d[96];
    if (!t || !t->buf) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "ops_gemm: %s is an empty tensor", name);
    if (t->dtype != TENSOR_F32 || t->ndim < 2 || t->ndim > 3)
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "ops_gemm: %s must be a 2-D or 3-D f32 tensor, got %s", name,
                       tensor_describe(t, d, sizeof d));
    int r = t->ndim - 2;
    if (t->stride[r + 1] != 1 || t->stride[r] < t->shape[r + 1])
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE,
                       "ops_gemm: %s %s has non-adjacent row elements; use the trans flags or "
                       "tensor_contiguous", name, tensor_describe(t, d, sizeof d));
    if (t->ndim == 3 && t->shape[0] != batch)
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "ops_gemm: %s %s has batch %lld, C has %lld", name,
                       tensor_describe(t, d, sizeof d), (long long)t->shape[0], (long long)batch);
    o->mem = t->buf->mem;
    o->off = (int)t->offset;
    o->ld = (int)t->stride[r];
    o->stride = t->ndim == 3 ? (int)t->stride[0] : 0;
    o->rows = t->shape[r];
    o->cols = t->shape[r + 1];
    return ATTAMBA_OK;
}

static attamba_status gemm_own(rt_ctx *ctx, int ta, int tb, int M, int N, int K, float alpha,
                               const gemm_operand *a, const gemm_operand *b, float beta, const gemm_operand *c,
                               int batch) {
    enum { ROWS = 8 };
    char opts[64];
    snprintf(opts, sizeof opts, "-DTRANS_A=%d -DTRANS_B=%d -DRM=%d", ta, tb, ROWS);
    cl_kernel k;
    RT_TRY(rt_kernel(ctx, "gemm", opts, "gemm_f32", &k));
    size_t lx = rt_local_1d(ctx, k, 64);
    size_t local[3] = {lx, 1, 1};
    size_t global[3] = {(size_t)N, (size_t)((M + ROWS - 1) / ROWS), (size_t)batch};
    rt_arg args[] = {RT_I32(M), RT_I32(N), RT_I32(K), RT_F32(alpha),
                     RT_MEM(a->mem), RT_I32(a->off), RT_I32(a->ld), RT_I32(a->stride),
                     RT_MEM(b->mem), RT_I32(b->off), RT_I32(b->ld), RT_I32(b->stride), RT_F32(beta),
                     RT_MEM(c->mem), RT_I32(c->off), RT_I32(c->ld), RT_I32(c->stride)};
    return rt_launch(ctx, k, "gemm_f32", 3, global, local, (int)CORE_LEN(args), args);
}

#ifdef ATTAMBA_HAVE_CLBLAST
static attamba_status gemm_clblast(rt_ctx *ctx, int ta, int tb, int M, int N, int K, float alpha,
                                   const gemm_operand *a, const gemm_operand *b, float beta,
                                   const gemm_operand *c, int batch) {
    CLBlastTranspose ta_ = ta ? CLBlastTransposeYes : CLBlastTransposeNo;
    CLBlastTranspose tb_ = tb ? CLBlastTransposeYes : CLBlastTransposeNo;
    CLBlastStatusCode s;
    if (batch == 1)
        s = CLBlastSgemm(CLBlastLayoutRowMajor, ta_, tb_, (size_t)M, (size_t)N, (size_t)K, alpha, a->mem,
                         (size_t)a->off, (size_t)a->ld, b->mem, (size_t)b->off, (size_t)b->ld, beta, c->mem,
                         (size_t)c->off, (size_t)c->ld, &ctx->queue, NULL);
    else
        s = CLBlastSgemmStridedBatched(CLBlastLayoutRowMajor, ta_, tb_, (size_t)M, (size_t)N, (size_t)K,
                                       alpha, a->mem, (size_t)a->off, (size_t)a->ld, (size_t)a->stride,
                                       b->mem, (size_t)b->off, (size_t)b->ld, (size_t)b->stride, beta, c->mem,
                                       (size_t)c->off, (size_t)c->ld, (size_t)c->stride, (size_t)batch,
                                       &ctx->queue, NULL);
    if (s == CLBlastSuccess) return ATTAMBA_OK;
    if (s == CLBlastOpenCLOutOfResources || s == CLBlastOpenCLOutOfHostMemory || s == -4 /* CL_MEM_OBJECT_ALLOCATION_FAILURE */)
        return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "CLBlast GEMM: out of memory (CLBlast status %d)", (int)s);
    return rt_fail(ctx, ATTAMBA_ERR_OPENCL, "CLBlast GEMM %dx%dx%d failed with CLBlast status %d", M, N, K,
                   (int)s);
}
#endif

static ops_gemm_backend auto_backend(void) {
    const char *e = getenv("ATTAMBA_GEMM");
    if (e && !strcmp(e, "own")) return OPS_GEMM_OWN;
    return ops_gemm_have_clblast() ? OPS_GEMM_CLBLAST : OPS_GEMM_OWN;
}

attamba_status ops_gemm_with(rt_ctx *ctx, ops_gemm_backend backend, int trans_a, int trans_b, float alpha,
                             const tensor *a, const tensor *b, float beta, tensor *c) {
    gemm_operand A, B, C;
    RT_TRY(operand(ctx, "C", c, c && c->ndim == 3 ? c->shape[0] : 1, &C));
    int batch = c->ndim == 3 ? (int)c->shape[0] : 1;
    if (c->ndim == 2 && (a->ndim == 3 || b->ndim == 3))
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "ops_gemm: batched A or B needs a batched C");
    RT_TRY(operand(ctx, "A", a, batch, &A));
    RT_TRY(operand(ctx, "B", b, batch, &B));
    int64_t M = trans_a ? A.cols : A.rows, K = trans_a ? A.rows : A.cols;
    int64_t Kb = trans_b ? B.cols : B.rows, N = trans_b ? B.rows : B.cols;
    if (K != Kb || C.rows != M || C.cols != N)
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE,
                       "ops_gemm: op(A) is %lldx%lld, op(B) is %lldx%lld, C is %lldx%lld", (long long)M,
                       (long long)K, (long long)Kb, (long long)N, (long long)C.rows, (long long)C.cols);
    if (C.stride == 0 && batch > 1) return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "ops_gemm: C batch stride is 0");
    int fallback = backend == OPS_GEMM_AUTO;
    if (backend == OPS_GEMM_AUTO) backend = ctx->gemm_clblast_broken ? OPS_GEMM_OWN : auto_backend();
    if (backend == OPS_GEMM_CLBLAST) {
#ifdef ATTAMBA_HAVE_CLBLAST
        attamba_status s = gemm_clblast(ctx, trans_a, trans_b, (int)M, (int)N, (int)K, alpha, &A, &B, beta, &C,
                                        batch);
        if (s != ATTAMBA_ERR_OPENCL || !fallback) return s;
        core_log(CORE_LOG_WARN, "%s; using the own GEMM kernel on this device from now on", ctx->err);
        ctx->gemm_clblast_broken = 1;
#else
        (void)fallback;
        return rt_fail(ctx, ATTAMBA_ERR_UNSUPPORTED, "ops_gemm: this build has no CLBlast");
#endif
    }
    return gemm_own(ctx, trans_a, trans_b, (int)M, (int)N, (int)K, alpha, &A, &B, beta, &C, batch);
}

attamba_status ops_gemm(rt_ctx *ctx, int trans_a, int trans_b, float alpha, const tensor *a, const tensor *b,
                        float beta, tensor *c) {
    return ops_gemm_with(ctx, OPS_GEMM_AUTO, trans_a, trans_b, alpha, a, b, beta, c);
}
