/* GEMM: argument checks, then CLBlast or the own kernel (cl/gemm.cl). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer.h"
#include "ops.h"
#include "tuning.h"
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
    int off, ld, stride; /* in elements of the storage (q8: blocks) */
    int64_t rows, cols;  /* in values */
} gemm_operand;

/* The -DWT of a B of this type (cl/gemm.cl): 0 f32, 1 f16, 2 q8. */
static int weight_wt(tensor_dtype t) { return t == TENSOR_F16 ? 1 : t == TENSOR_Q8 ? 2 : 0; }

static attamba_status operand(rt_ctx *ctx, const char *name, const tensor *t, int64_t batch, gemm_operand *o) {
    char d[96];
    if (!t || !t->buf) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "ops_gemm: %s is an empty tensor", name);
    int lowp_ok = name[0] == 'B' && (t->dtype == TENSOR_F16 || t->dtype == TENSOR_Q8);
    if ((t->dtype != TENSOR_F32 && !lowp_ok) || t->ndim < 2 || t->ndim > 3)
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "ops_gemm: %s must be a 2-D or 3-D f32 tensor%s, got %s", name,
                       name[0] == 'B' ? " (or f16 / q8)" : "", tensor_describe(t, d, sizeof d));
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
    o->cols = t->shape[r + 1] * (t->dtype == TENSOR_Q8 ? TENSOR_Q8_BLOCK : 1);
    return ATTAMBA_OK;
}

/* " -DWT=n" for a low-precision B, nothing for f32 (whose programs keep their option strings). */
static const char *wt_option(int wt) { return wt == 1 ? " -DWT=1" : wt == 2 ? " -DWT=2" : ""; }

/* The dot kernels' extra option: 8-bit weights on a 16-wide device (gemm.vw) convert 16 at a time. */
static const char *dot_vw_option(rt_ctx *ctx, int wt) {
    return wt == 2 && ops_tune(ctx, TUNE_GEMM_VW) == 16 ? " -DDOT_VW=16" : "";
}

const char *ops_dot_weight_options(rt_ctx *ctx, tensor_dtype t) {
    if (t == TENSOR_Q8) return *dot_vw_option(ctx, 2) ? " -DWT=2 -DDOT_VW=16" : " -DWT=2";
    return t == TENSOR_F16 ? " -DWT=1" : "";
}
/* Parameters of the own kernels for one device (see cl/gemm.cl). */
typedef struct {
    int rm, vw, nv; /* gemm_tiles: RM rows x NV vectors of VW floats per work-item */
    int lt, lw, kt; /* gemm_local: LT x LT block of C per LW x LW group, KT-deep __local slices */
    int kc_kib, pb; /* gemm_tiles: KiB of a B panel per pass over K, panels per block of the launch order */
    int inplace_b_kib; /* gemm_tiles: a plain f32 B under this many KiB is read in place */
} gemm_tuning;

/* The device's parameters (ops/tuning.c). */
static gemm_tuning tuning_for(rt_ctx *ctx) {
    return (gemm_tuning){ops_tune(ctx, TUNE_GEMM_RM), ops_tune(ctx, TUNE_GEMM_VW), ops_tune(ctx, TUNE_GEMM_NV),
                         ops_tune(ctx, TUNE_GEMM_LT), ops_tune(ctx, TUNE_GEMM_LW), ops_tune(ctx, TUNE_GEMM_KT),
                         ops_tune(ctx, TUNE_GEMM_KC_KIB), ops_tune(ctx, TUNE_GEMM_PB),
                         ops_tune(ctx, TUNE_GEMM_INPLACE_B_KIB)};
}

/* gemm_local for these options, refused (UNSUPPORTED) where the device cannot run its LW x LW
 * work-groups (some drivers allow fewer, e.g. rusticl 32). */
static attamba_status local_kernel(rt_ctx *ctx, const gemm_tuning *t, int ta, int tb, int wt, cl_kernel *k) {
    char opts[112];
    snprintf(opts, sizeof opts, "-DTRANS_A=%d -DTRANS_B=%d -DLT=%d -DLW=%d -DKT=%d%s", ta, tb, t->lt, t->lw, t->kt,
             wt_option(wt));
    RT_TRY(rt_kernel(ctx, "gemm", opts, "gemm_local", k));
    size_t kmax = 0;
    clGetKernelWorkGroupInfo(*k, ctx->dev.device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kmax, &kmax, NULL);
    if (kmax < (size_t)(t->lw * t->lw) || t->lt % t->lw)
        return rt_fail(ctx, ATTAMBA_ERR_UNSUPPORTED, "ops_gemm: gemm_local needs %dx%d work-groups (LT %d), %s allows %zu",
                       t->lw, t->lw, t->lt, ctx->dev.info.name, kmax);
    return ATTAMBA_OK;
}

int ops_dot_max_rows(rt_ctx *ctx) { return ops_tune(ctx, TUNE_GEMM_DOT_M); }

/* Rows of A per work-item of the dot-product kernels: the power of two that covers M, at most the
 * table's gemm.dot_rm. */
static int dot_rows_per_item(rt_ctx *ctx, int M) {
    int cap = ops_tune(ctx, TUNE_GEMM_DOT_RM), r = 1;
    while (r < M && r < cap) r *= 2;
    return r;
}

/* The __local kernel where the table asks for it and the device can run it, else register tiles. */
static ops_gemm_kernel auto_kernel(rt_ctx *ctx, const gemm_tuning *t, int M, int ta, int tb, int wt) {
    /* rows of A and B^T are both contiguous: dot products; for B itself tiles read rows of B */
    if (M < ops_dot_max_rows(ctx) && tb && !ta) return OPS_GEMM_KERNEL_DOT;
    cl_kernel k;
    if (ops_tune(ctx, TUNE_GEMM_KERNEL) == 1 && local_kernel(ctx, t, ta, tb, wt, &k) == ATTAMBA_OK)
        return OPS_GEMM_KERNEL_LOCAL;
    return OPS_GEMM_KERNEL_TILES;
}

#define GEMM_A_ARGS(a) RT_MEM((a)->mem), RT_I32((a)->off), RT_I32((a)->ld), RT_I32((a)->stride)

/* gemm_f32 (rows = 8) or gemm_dot (rows = 1): x = column, y = block of rows, z = batch. */
static attamba_status gemm_columns(rt_ctx *ctx, const char *kernel, int rows, int ta, int tb, int wt, int M, int N,
                                   int K, float alpha, const gemm_operand *a, const gemm_operand *b, float beta,
                                   const gemm_operand *c, int batch) {
    char opts[96];
    snprintf(opts, sizeof opts, "-DTRANS_A=%d -DTRANS_B=%d -DRM=%d%s%s", ta, tb, rows, wt_option(wt),
             !strcmp(kernel, "gemm_dot") ? dot_vw_option(ctx, wt) : "");
    cl_kernel k;
    RT_TRY(rt_kernel(ctx, "gemm", opts, kernel, &k));
    size_t lx = rt_local_1d(ctx, k, 64);
    size_t local[3] = {lx, 1, 1};
    size_t global[3] = {(size_t)N, (size_t)((M + rows - 1) / rows), (size_t)batch};
    rt_arg args[] = {RT_I32(M), RT_I32(N), RT_I32(K), RT_F32(alpha), GEMM_A_ARGS(a), GEMM_A_ARGS(b),
                     RT_F32(beta), GEMM_A_ARGS(c)};
    return rt_launch(ctx, k, kernel, 3, global, local, (int)CORE_LEN(args), args);
}

/* Work-groups of a packing pass: up to 64 items, x first; a narrow x (few panels) takes several y
 * (rows of B) per group, since a group per row of a small B cost more than its copy (PoCL). */
static void pack_local(rt_ctx *ctx, cl_kernel k, size_t x, size_t local[3]) {
    size_t lmax = rt_local_1d(ctx, k, 64), lx = CORE_MIN(lmax, x < 64 ? rt_round_up(x, 8) : 64);
    local[0] = lx;
    local[1] = CORE_MAX(1, lmax / lx);
    local[2] = 1;
}

/* Register tiles. Unless B is not transposed and small next to the work (M <= 64) or small enough
 * to read in place on this device (gemm.inplace_b_kib), op(B) is first copied into zero-padded
 * panels. A transposed A is copied into panels of RM rows unless it fits in a CPU's L2 (PACK_A_MIN
 * floats: the weight gradients of narrow layers), where reading it in place saves a launch and a
 * pass (measured: 0.77x against 0.67x OpenBLAS, median of five shapes). A plain B read in place is
 * another matter: with one-line panel rows (16 floats) its rows, ldb apart, fall into few cache sets
 * and evict each other, so a larger one is read in place only under gemm.inplace_b_kib (1 MiB with
 * 32-float panels, else 0; `attamba tune` measures it). The copies are scratch tensors, released once
 * enqueued: OpenCL keeps them alive until the kernels that use them have run. */
enum { PACK_A_MIN = 128 * 1024, PACK_KB = 8 /* k per packing work-item, as in cl/gemm.cl */ };

/* Whether gemm_tiles packs op(B) (K x N) for M rows of A, rather than reading B in place. */
static int b_packed(const gemm_tuning *t, int tb, int wt, int M, int N, int K) {
    return tb || wt || (M > 64 && (int64_t)K * N * 4 >= t->inplace_b_kib * 1024LL);
}

/* The longest K of one pass of gemm_tiles (0: any K in one pass). */
static int pass_k(const gemm_tuning *t) {
    return t->kc_kib ? (int)CORE_MAX(8, t->kc_kib * 1024LL / (4 * t->vw * t->nv)) : 0;
}

/* The options of the gemm_tiles program (its pack kernels included). */
static void tiles_options(const gemm_tuning *t, int ta, int tb, int wt, int packed, int packed_a, char *opts,
                          size_t n) {
    snprintf(opts, n, "-DTRANS_A=%d -DTRANS_B=%d -DRM=%d -DVW=%d -DNV=%d -DPACKED=%d -DPACKED_A=%d -DPB=%d%s", ta, tb,
             t->rm, t->vw, t->nv, packed, packed_a, t->pb, wt_option(wt));
}

/* op(B) (K x N, b_batch of them) into zero-padded panels [b_batch][panels][K][NW] in a new scratch
 * tensor; *bt then reads them. */
static attamba_status pack_b(rt_ctx *ctx, const char *opts, const gemm_tuning *t, int tb, int N, int K,
                             const gemm_operand *b, int b_batch, tensor *scratch, gemm_operand *bt) {
    int nw = t->vw * t->nv, panels = (N + nw - 1) / nw;
    size_t kblocks = (size_t)(K + PACK_KB - 1) / PACK_KB; /* the packing pass's blocks of k */
    cl_kernel kp;
    RT_TRY(rt_kernel(ctx, "gemm", opts, "gemm_pack_b", &kp));
    RT_TRY(tensor_scratch(ctx, scratch, TENSOR_F32, 2, ((int64_t[]){(int64_t)b_batch * panels * K, nw})));
    *bt = (gemm_operand){scratch->buf->mem, 0, nw, b->stride ? panels * K * nw : 0, K, nw};
    /* x = block of k for a transposed B, x = panel for a plain one (cl/gemm.cl) */
    size_t x = tb ? kblocks : (size_t)panels, y = tb ? (size_t)panels : kblocks;
    size_t pglobal[3] = {x, y, (size_t)b_batch}, plocal[3];
    pack_local(ctx, kp, x, plocal);
    rt_arg pargs[] = {RT_I32(N), RT_I32(K), RT_I32(panels), GEMM_A_ARGS(b), RT_MEM(bt->mem)};
    return rt_launch(ctx, kp, "gemm_pack_b", 3, pglobal, plocal, (int)CORE_LEN(pargs), pargs);
}

/* The gemm_tiles launch: C (M x N, batch of them) from A (or its panels) and B (or its panels). */
static attamba_status tiles_launch(rt_ctx *ctx, const char *opts, const gemm_tuning *t, int M, int N, int K,
                                   float alpha, const gemm_operand *a, const gemm_operand *b, float beta,
                                   const gemm_operand *c, int batch) {
    cl_kernel kt;
    RT_TRY(rt_kernel(ctx, "gemm", opts, "gemm_tiles", &kt));
    /* 8 row blocks per group: enough to amortise a group's start on PoCL, small enough that M = 4096
     * still gives dozens of groups per column panel to share among the cores */
    size_t lx = rt_local_1d(ctx, kt, 8), nw = (size_t)(t->vw * t->nv);
    size_t global[3] = {(size_t)(M + t->rm - 1) / t->rm, ((size_t)N + nw - 1) / nw, (size_t)batch};
    size_t local[3] = {lx, 1, 1};
    rt_arg args[] = {RT_I32(M), RT_I32(N), RT_I32(K), RT_F32(alpha), GEMM_A_ARGS(a), GEMM_A_ARGS(b),
                     RT_F32(beta), GEMM_A_ARGS(c)};
    return rt_launch(ctx, kt, "gemm_tiles", 3, global, local, (int)CORE_LEN(args), args);
}

static attamba_status gemm_tiles_pass(rt_ctx *ctx, const gemm_tuning *t, int ta, int tb, int wt, int M, int N,
                                      int K, float alpha, const gemm_operand *a, const gemm_operand *b, float beta,
                                      const gemm_operand *c, int batch) {
    int mpanels = (M + t->rm - 1) / t->rm, a_batch = a->stride ? batch : 1;
    int packed = b_packed(t, tb, wt, M, N, K);
    int packed_a = ta && (int64_t)K * M > PACK_A_MIN;
    char opts[176];
    tiles_options(t, ta, tb, wt, packed, packed_a, opts, sizeof opts);
    gemm_operand at = *a, bt = *b;
    tensor scratch = {0}, scratch_a = {0};
    attamba_status s = ATTAMBA_OK;
    if (packed) s = pack_b(ctx, opts, t, tb, N, K, b, b->stride ? batch : 1, &scratch, &bt);
    if (!s && packed_a) {
        cl_kernel kp;
        s = rt_kernel(ctx, "gemm", opts, "gemm_pack_a", &kp);
        if (!s)
            s = tensor_scratch(ctx, &scratch_a, TENSOR_F32, 2, ((int64_t[]){(int64_t)a_batch * mpanels * K, t->rm}));
        if (!s) {
            at = (gemm_operand){scratch_a.buf->mem, 0, t->rm, a->stride ? mpanels * K * t->rm : 0, M, K};
            /* x = block of RM rows, y = block of k */
            size_t kblocks = (size_t)(K + PACK_KB - 1) / PACK_KB;
            size_t pglobal[3] = {(size_t)mpanels, kblocks, (size_t)a_batch}, plocal[3];
            pack_local(ctx, kp, (size_t)mpanels, plocal);
            rt_arg pargs[] = {RT_I32(M), RT_I32(K), RT_I32(mpanels), GEMM_A_ARGS(a), RT_MEM(at.mem)};
            s = rt_launch(ctx, kp, "gemm_pack_a", 3, pglobal, plocal, (int)CORE_LEN(pargs), pargs);
        }
    }
    if (!s) s = tiles_launch(ctx, opts, t, M, N, K, alpha, &at, &bt, beta, c, batch);
    tensor_free(&scratch);
    tensor_free(&scratch_a);
    return s;
}

/* Register tiles in passes over K of at most kc: a work-item streams a whole packed panel of B (K x NW
 * floats), and the items of a group each stream it again, which stays in L2 only up to gemm.kc_kib
 * (128 KiB on CPUs: K = 2048 for 16-float panels). Longer K (the output layer's dy W, whose K is the
 * vocabulary, and the weight gradients of large batches, whose K is the token count) ran at
 * 0.72-0.84x OpenBLAS in one pass. Each later pass adds to C (beta = 1). A low-precision B runs in
 * one pass: a q8 B's offsets count 32-value blocks, not values. */
static attamba_status gemm_tiles(rt_ctx *ctx, const gemm_tuning *t, int ta, int tb, int wt, int M, int N, int K,
                                 float alpha, const gemm_operand *a, const gemm_operand *b, float beta,
                                 const gemm_operand *c, int batch) {
    int kc = pass_k(t);
    if (wt || !kc || K <= kc) return gemm_tiles_pass(ctx, t, ta, tb, wt, M, N, K, alpha, a, b, beta, c, batch);
    for (int k0 = 0; k0 < K; k0 += kc) {
        gemm_operand ak = *a, bk = *b; /* columns k0.. of op(A), rows k0.. of op(B) */
        ak.off += ta ? k0 * a->ld : k0;
        bk.off += tb ? k0 : k0 * b->ld;
        RT_TRY(gemm_tiles_pass(ctx, t, ta, tb, wt, M, N, CORE_MIN(kc, K - k0), alpha, &ak, &bk, k0 ? 1.0f : beta, c,
                               batch));
    }
    return ATTAMBA_OK;
}

static attamba_status gemm_local(rt_ctx *ctx, const gemm_tuning *t, int ta, int tb, int wt, int M, int N, int K,
                                 float alpha, const gemm_operand *a, const gemm_operand *b, float beta,
                                 const gemm_operand *c, int batch) {
    cl_kernel k;
    RT_TRY(local_kernel(ctx, t, ta, tb, wt, &k));
    size_t local[3] = {(size_t)t->lw, (size_t)t->lw, 1};
    size_t global[3] = {(size_t)((N + t->lt - 1) / t->lt * t->lw), (size_t)((M + t->lt - 1) / t->lt * t->lw),
                        (size_t)batch};
    rt_arg args[] = {RT_I32(M), RT_I32(N), RT_I32(K), RT_F32(alpha), GEMM_A_ARGS(a), GEMM_A_ARGS(b),
                     RT_F32(beta), GEMM_A_ARGS(c)};
    return rt_launch(ctx, k, "gemm_local", 3, global, local, (int)CORE_LEN(args), args);
}

static attamba_status gemm_own(rt_ctx *ctx, ops_gemm_kernel kernel, int ta, int tb, int wt, int M, int N, int K,
                               float alpha, const gemm_operand *a, const gemm_operand *b, float beta,
                               const gemm_operand *c, int batch) {
    gemm_tuning t = tuning_for(ctx);
    if (kernel == OPS_GEMM_KERNEL_AUTO) kernel = auto_kernel(ctx, &t, M, ta, tb, wt);
    switch (kernel) {
    case OPS_GEMM_KERNEL_TILES: return gemm_tiles(ctx, &t, ta, tb, wt, M, N, K, alpha, a, b, beta, c, batch);
    case OPS_GEMM_KERNEL_LOCAL: return gemm_local(ctx, &t, ta, tb, wt, M, N, K, alpha, a, b, beta, c, batch);
    case OPS_GEMM_KERNEL_SIMPLE:
        return gemm_columns(ctx, "gemm_f32", 8, ta, tb, wt, M, N, K, alpha, a, b, beta, c, batch);
    case OPS_GEMM_KERNEL_DOT:
        return gemm_columns(ctx, "gemm_dot", dot_rows_per_item(ctx, M), ta, tb, wt, M, N, K, alpha, a, b, beta, c,
                            batch);
    default: return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "ops_gemm: unknown own kernel %d", (int)kernel);
    }
}

#ifdef ATTAMBA_HAVE_CLBLAST
/* CLBlast keeps its compiled programs (each holding the context) in a process-wide cache that it
 * would release from a library destructor at exit, after the driver may have torn itself down
 * (Oclgrind aborts there). Cleared when a context that used it is destroyed; another live
 * context's entries are rebuilt on its next call. */
static void clblast_release(void) { CLBlastClearCache(); }

static attamba_status gemm_clblast(rt_ctx *ctx, int ta, int tb, int M, int N, int K, float alpha,
                                   const gemm_operand *a, const gemm_operand *b, float beta,
                                   const gemm_operand *c, int batch) {
    ctx->release_outside = clblast_release;
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

/* The tuning table's gemm.backend; CLBlast only when this build has it. */
static ops_gemm_backend auto_backend(rt_ctx *ctx) {
    return ops_tune(ctx, TUNE_GEMM_BACKEND) == 1 && ops_gemm_have_clblast() ? OPS_GEMM_CLBLAST : OPS_GEMM_OWN;
}

/* Checks the operands of C = alpha op(A) op(B) + beta C and returns the problem's sizes. */
static attamba_status gemm_check(rt_ctx *ctx, int trans_a, int trans_b, const tensor *a, const tensor *b,
                                 tensor *c, gemm_operand *A, gemm_operand *B, gemm_operand *C, int *M, int *N,
                                 int *K, int *batch, int *wt) {
    RT_TRY(operand(ctx, "C", c, c && c->ndim == 3 ? c->shape[0] : 1, C));
    *batch = c->ndim == 3 ? (int)c->shape[0] : 1;
    if (c->ndim == 2 && ((a && a->ndim == 3) || (b && b->ndim == 3)))
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "ops_gemm: batched A or B needs a batched C");
    RT_TRY(operand(ctx, "A", a, *batch, A));
    RT_TRY(operand(ctx, "B", b, *batch, B));
    *wt = weight_wt(b->dtype);
    if (*wt && !trans_b)
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "ops_gemm: a B stored as %s must be a weight read transposed (x W^T)",
                       tensor_dtype_name(b->dtype));
    int64_t m = trans_a ? A->cols : A->rows, k = trans_a ? A->rows : A->cols;
    int64_t kb = trans_b ? B->cols : B->rows, n = trans_b ? B->rows : B->cols;
    if (k != kb || C->rows != m || C->cols != n)
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE,
                       "ops_gemm: op(A) is %lldx%lld, op(B) is %lldx%lld, C is %lldx%lld", (long long)m,
                       (long long)k, (long long)kb, (long long)n, (long long)C->rows, (long long)C->cols);
    if (C->stride == 0 && *batch > 1) return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "ops_gemm: C batch stride is 0");
    *M = (int)m;
    *N = (int)n;
    *K = (int)k;
    return ATTAMBA_OK;
}

attamba_status ops_gemm_with(rt_ctx *ctx, ops_gemm_backend backend, int trans_a, int trans_b, float alpha,
                             const tensor *a, const tensor *b, float beta, tensor *c) {
    gemm_operand A, B, C;
    int M = 0, N = 0, K = 0, batch = 1, wt = 0;
    RT_TRY(gemm_check(ctx, trans_a, trans_b, a, b, c, &A, &B, &C, &M, &N, &K, &batch, &wt));
    int fallback = backend == OPS_GEMM_AUTO;
    if (backend == OPS_GEMM_AUTO) backend = ctx->gemm_clblast_broken || wt ? OPS_GEMM_OWN : auto_backend(ctx);
    if (backend == OPS_GEMM_CLBLAST && wt)
        return rt_fail(ctx, ATTAMBA_ERR_UNSUPPORTED, "ops_gemm: CLBlast takes no %s operand", tensor_dtype_name(b->dtype));
    if (backend == OPS_GEMM_CLBLAST) {
#ifdef ATTAMBA_HAVE_CLBLAST
        attamba_status s = gemm_clblast(ctx, trans_a, trans_b, M, N, K, alpha, &A, &B, beta, &C, batch);
        if (s != ATTAMBA_ERR_OPENCL || !fallback) return s;
        core_log(CORE_LOG_WARN, "%s; using the own GEMM kernel on this device from now on", ctx->err);
        ctx->gemm_clblast_broken = 1;
#else
        (void)fallback;
        return rt_fail(ctx, ATTAMBA_ERR_UNSUPPORTED, "ops_gemm: this build has no CLBlast");
#endif
    }
    return gemm_own(ctx, OPS_GEMM_KERNEL_AUTO, trans_a, trans_b, wt, M, N, K, alpha, &A, &B, beta, &C, batch);
}

attamba_status ops_gemm_own(rt_ctx *ctx, ops_gemm_kernel kernel, int trans_a, int trans_b, float alpha,
                            const tensor *a, const tensor *b, float beta, tensor *c) {
    gemm_operand A, B, C;
    int M = 0, N = 0, K = 0, batch = 1, wt = 0;
    RT_TRY(gemm_check(ctx, trans_a, trans_b, a, b, c, &A, &B, &C, &M, &N, &K, &batch, &wt));
    return gemm_own(ctx, kernel, trans_a, trans_b, wt, M, N, K, alpha, &A, &B, beta, &C, batch);
}

attamba_status ops_gemm(rt_ctx *ctx, int trans_a, int trans_b, float alpha, const tensor *a, const tensor *b,
                        float beta, tensor *c) {
    return ops_gemm_with(ctx, OPS_GEMM_AUTO, trans_a, trans_b, alpha, a, b, beta, c);
}

attamba_status ops_gemm_panels_make(rt_ctx *ctx, int trans_b, const tensor *b, int m, ops_gemm_panels *p) {
    *p = (ops_gemm_panels){.b = b, .trans_b = trans_b};
    gemm_operand B;
    RT_TRY(operand(ctx, "B", b, b && b->ndim == 3 ? b->shape[0] : 1, &B));
    gemm_tuning t = tuning_for(ctx);
    p->K = (int)(trans_b ? B.cols : B.rows), p->N = (int)(trans_b ? B.rows : B.cols);
    int kc = pass_k(&t), own = ctx->gemm_clblast_broken || auto_backend(ctx) == OPS_GEMM_OWN;
    if (b->dtype != TENSOR_F32 || !own || auto_kernel(ctx, &t, m, 0, trans_b, 0) != OPS_GEMM_KERNEL_TILES ||
        (kc && p->K > kc) || !b_packed(&t, trans_b, 0, m, p->N, p->K))
        return ATTAMBA_OK; /* ops_gemm would not pack it either */
    char opts[176];
    tiles_options(&t, 0, trans_b, 0, 1, 0, opts, sizeof opts);
    gemm_operand bt;
    RT_TRY(pack_b(ctx, opts, &t, trans_b, p->N, p->K, &B, b->ndim == 3 ? (int)b->shape[0] : 1, &p->buf, &bt));
    p->packed = 1, p->vw = t.vw, p->nv = t.nv, p->stride = bt.stride;
    return ATTAMBA_OK;
}

attamba_status ops_gemm_panels_apply(rt_ctx *ctx, float alpha, const tensor *a, const ops_gemm_panels *p, int entry,
                                     int n, float beta, tensor *c) {
    int entries = p->b->ndim == 3 ? (int)p->b->shape[0] : 1;
    if (n < 0 || n > p->N || entry >= entries)
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "ops_gemm_panels_apply: columns %d of %d, entry %d of %d", n, p->N,
                       entry, entries);
    if (!p->packed) { /* B's first n columns of op(B), of one entry or all */
        tensor v = *p->b;
        int r = v.ndim - 2;
        v.shape[r + !p->trans_b] = n;
        if (entry >= 0 && v.ndim == 3) {
            v.offset += entry * v.stride[0];
            v.ndim = 2;
            for (int d = 0; d < 2; d++) v.shape[d] = v.shape[d + 1], v.stride[d] = v.stride[d + 1];
        }
        return ops_gemm(ctx, 0, p->trans_b, alpha, a, &v, beta, c);
    }
    gemm_operand A, C;
    int batch = c && c->ndim == 3 ? (int)c->shape[0] : 1, shared = entry >= 0 || !p->stride;
    RT_TRY(operand(ctx, "C", c, batch, &C));
    RT_TRY(operand(ctx, "A", a, batch, &A));
    if (A.cols != p->K || C.rows != A.rows || C.cols != n || (!shared && entries != batch))
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "ops_gemm_panels_apply: A is %lldx%lld, op(B) %dx%d (%d entries), C is "
                       "%lldx%lld (%d)", (long long)A.rows, (long long)A.cols, p->K, n, shared ? 1 : entries,
                       (long long)C.rows, (long long)C.cols, batch);
    gemm_tuning t = tuning_for(ctx);
    t.vw = p->vw, t.nv = p->nv; /* the panels' width, whatever the table says now */
    char opts[176];
    tiles_options(&t, 0, p->trans_b, 0, 1, 0, opts, sizeof opts);
    int nw = p->vw * p->nv;
    gemm_operand bt = {p->buf.buf->mem, (int)(entry >= 0 ? entry * p->stride : 0), nw, shared ? 0 : (int)p->stride,
                       p->K, nw};
    return tiles_launch(ctx, opts, &t, (int)A.rows, n, p->K, alpha, &A, &bt, beta, &C, batch);
}

void ops_gemm_panels_free(ops_gemm_panels *p) { tensor_free(&p->buf); }

/* Whether n products of M rows sharing their input go in one gemv_group launch: few rows (decode), at most
 * OPS_GEMV_MAX matrices, one storage type (one kernel reads one type). */
static int group_in_one_launch(rt_ctx *ctx, int64_t M, int n, const tensor *const *W) {
    int mixed = 0;
    for (int i = 1; i < n; i++) mixed |= W[i] && W[0] && W[i]->dtype != W[0]->dtype;
    return n <= OPS_GEMV_MAX && M < ops_dot_max_rows(ctx) && !mixed;
}

/* ops_gemm_group, or with glu (n = 2, y[0] = y[1]: the product's output) ops_gemm_swiglu's one launch. */
static attamba_status gemm_group(rt_ctx *ctx, const char *op, const tensor *x, const ops_gemv_norm *norm, int n,
                                 const tensor *const *W, tensor *const *y, const int *accumulate, int glu) {
    if (n < 1 || !x || !x->buf || x->ndim < 1 || !tensor_is_contiguous(x))
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: need n >= 1 and a contiguous x", op);
    int64_t K = x->shape[x->ndim - 1], M = tensor_numel(x) / K;
    int rows = dot_rows_per_item(ctx, (int)M), grouped = group_in_one_launch(ctx, M, n, W);
    if (norm) {
        RT_TRY(ops_expect(ctx, op, "gain", norm->gain, TENSOR_F32, 1, &K));
        RT_TRY(ops_expect_same(ctx, op, "out", norm->out, x));
        RT_TRY(ops_expect_nonneg(ctx, op, "eps", norm->eps));
        if (ops_overlap(norm->out, x)) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: out overlaps x", op);
        if (norm->out2) {
            RT_TRY(ops_expect_same(ctx, op, "out2", norm->out2, x));
            if (ops_overlap(norm->out2, x) || ops_overlap(norm->out2, norm->out))
                return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: out2 overlaps x or out", op);
        }
        /* the group's normalised rows in half the local memory */
        if (!grouped || (uint64_t)rows * K * sizeof(cl_float) > ctx->dev.info.local_mem_bytes / 2) {
            RT_TRY(ops_rmsnorm(ctx, x, norm->gain, norm->eps, norm->out));
            if (norm->keep && norm->out2) RT_TRY(tensor_copy(norm->out2, norm->out));
            x = norm->out;
            norm = NULL;
        }
    }
    if (!grouped) { /* one GEMM each */
        tensor x2 = {0};
        RT_TRY(tensor_rows(x, &x2));
        attamba_status s = ATTAMBA_OK;
        for (int i = 0; i < n && !s; i++) {
            tensor y2 = {0};
            s = tensor_rows(y[i], &y2);
            if (!s) s = ops_gemm(ctx, 0, 1, 1.0f, &x2, W[i], accumulate && accumulate[i] ? 1.0f : 0.0f, &y2);
            tensor_free(&y2);
        }
        tensor_free(&x2);
        return s;
    }
    rt_arg args[5 + 8 * OPS_GEMV_MAX + 9]; /* x, the members, the norm */
    cl_int ints[OPS_GEMV_MAX][6];
    int k = 0;
    int64_t total = 0;
    args[k++] = RT_I32(M), args[k++] = RT_I32(K);
    args[k++] = RT_MEM(x->buf->mem), args[k++] = RT_I32(x->offset), args[k++] = RT_I32(K);
    for (int i = 0; i < OPS_GEMV_MAX; i++) {
        const tensor *w = W[i < n ? i : 0], *yi = y[i < n ? i : 0];
        if (i < n) {
            char a[96];
            int wt = w && w->buf ? weight_wt(w->dtype) : 0;
            int64_t cols = w && w->buf && w->ndim == 2 ? w->shape[1] * (wt == 2 ? TENSOR_Q8_BLOCK : 1) : -1;
            if (!w || !w->buf || w->ndim != 2 || cols != K || w->stride[1] != 1 ||
                (w->dtype != TENSOR_F32 && !wt))
                return rt_fail(ctx, ATTAMBA_ERR_SHAPE,
                               "%s: W[%d] must be f32, f16 or q8 [N, %lld] with contiguous rows, got %s", op, i,
                               (long long)K, w && w->buf ? tensor_describe(w, a, sizeof a) : "nothing");
            int64_t N = w->shape[0];
            if (!yi || !yi->buf || yi->dtype != TENSOR_F32 || !tensor_is_contiguous(yi) ||
                yi->shape[yi->ndim - 1] != N || tensor_numel(yi) != M * N)
                return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: y[%d] must be contiguous f32 [..., %lld] with x's rows", op, i,
                               (long long)N);
            if (ops_overlap(yi, x) ||
                (norm && norm->keep && (ops_overlap(yi, norm->out) || ops_overlap(yi, norm->out2))))
                return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: y[%d] overlaps x", op, i);
            total += N;
        }
        cl_int *v = ints[i];
        v[0] = (cl_int)w->offset, v[1] = (cl_int)w->stride[0], v[2] = i < n ? (cl_int)w->shape[0] : 0;
        v[3] = (cl_int)yi->offset, v[4] = (cl_int)yi->shape[yi->ndim - 1], v[5] = i < n && accumulate && accumulate[i];
        args[k++] = RT_MEM(w->buf->mem), args[k++] = RT_I32_AT(&v[0]);
        args[k++] = RT_I32_AT(&v[1]), args[k++] = RT_I32_AT(&v[2]);
        args[k++] = RT_MEM(yi->buf->mem), args[k++] = RT_I32_AT(&v[3]);
        args[k++] = RT_I32_AT(&v[4]), args[k++] = RT_I32_AT(&v[5]);
    }
    if (glu) total = W[0]->shape[0];
    cl_kernel kern;
    char opts[128];
    int wt = weight_wt(W[0]->dtype);
    snprintf(opts, sizeof opts, "-DTRANS_A=0 -DTRANS_B=1 -DRM=%d%s%s%s%s", rows, wt_option(wt), dot_vw_option(ctx, wt),
             norm ? " -DNORM=1" : "", glu ? " -DGLU=1" : "");
    RT_TRY(rt_kernel(ctx, "gemm", opts, "gemv_group", &kern));
    size_t lx = rt_local_1d(ctx, kern, 64);
    cl_int nv[4]; /* the norm's offsets and copies kept: alive until the launch */
    cl_float eps = norm ? norm->eps : 0.0f;
    if (norm) {
        const tensor *g = norm->gain, *o = norm->out, *o2 = norm->out2 ? norm->out2 : o;
        nv[0] = (cl_int)g->offset, nv[1] = (cl_int)o->offset, nv[2] = (cl_int)o2->offset;
        nv[3] = norm->keep ? 1 + (norm->out2 != NULL) : 0;
        args[k++] = RT_MEM(g->buf->mem), args[k++] = RT_I32_AT(&nv[0]);
        args[k++] = (rt_arg){sizeof eps, &eps, 0};
        args[k++] = RT_MEM(o->buf->mem), args[k++] = RT_I32_AT(&nv[1]);
        args[k++] = RT_MEM(o2->buf->mem), args[k++] = RT_I32_AT(&nv[2]), args[k++] = RT_I32_AT(&nv[3]);
        args[k++] = RT_LOCAL((size_t)rows * K * sizeof(cl_float));
    }
    size_t local[2] = {lx, 1}, global[2] = {(size_t)total, (size_t)((M + rows - 1) / rows)};
    return rt_launch(ctx, kern, glu ? "gemv_swiglu" : "gemv_group", 2, global, local, k, args);
}

attamba_status ops_gemm_group(rt_ctx *ctx, const tensor *x, const ops_gemv_norm *norm, int n, const tensor *const *W,
                              tensor *const *y, const int *accumulate) {
    return gemm_group(ctx, "ops_gemm_group", x, norm, n, W, y, accumulate, 0);
}

attamba_status ops_gemm_swiglu(rt_ctx *ctx, const tensor *x, const ops_gemv_norm *norm, const tensor *W1,
                               const tensor *W3, tensor *f1, tensor *f3, tensor *hid) {
    static const char op[] = "ops_gemm_swiglu";
    const tensor *W[2] = {W1, W3};
    int64_t K = x && x->buf && x->ndim ? x->shape[x->ndim - 1] : 0;
    int one = K > 0 && W1 && W3 && W1->buf && W3->buf && W1->ndim == 2 && W3->ndim == 2 &&
              W1->shape[0] == W3->shape[0] && group_in_one_launch(ctx, tensor_numel(x) / K, 2, W);
    if (!one) {
        tensor *f[2] = {f1, f3};
        RT_TRY(gemm_group(ctx, op, x, norm, 2, W, f, NULL, 0));
        return ops_swiglu(ctx, f1, f3, hid);
    }
    tensor *y[2] = {hid, hid};
    return gemm_group(ctx, op, x, norm, 2, W, y, NULL, 1);
}
