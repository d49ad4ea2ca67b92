/* ops.h: the op layer. Each op checks its arguments (returning ATTAMBA_ERR_SHAPE or
 * ATTAMBA_ERR_INVALID_ARG with a message on the context), then enqueues kernels. Ops know
 * nothing about models. Unless said otherwise, tensors are f32 and contiguous, and `out` is
 * allocated by the caller with the documented shape; out may alias an input for elementwise ops. */
#ifndef ATTAMBA_OPS_H
#define ATTAMBA_OPS_H

#include "tensor/tensor.h"

/* ---- checks shared by the ops (ops_check.c) ---- */
/* t is f32 (or dtype), contiguous, and has exactly the given dims; name is used in messages. */
attamba_status ops_expect(rt_ctx *ctx, const char *op, const char *name, const tensor *t, tensor_dtype dtype,
                          int ndim, const int64_t *shape);
attamba_status ops_expect_same(rt_ctx *ctx, const char *op, const char *name, const tensor *t,
                               const tensor *like);
/* Whether a and b may share device memory: the same buffer and intersecting byte extents (from the
 * first to the last element each view can reach; exact for contiguous views, conservative for
 * strided ones). NULL or empty tensors overlap nothing. */
int ops_overlap(const tensor *a, const tensor *b);
/* x is a non-empty contiguous f32 tensor of at least one dim; *C gets its last dim and *rows the
 * product of the others (0 when C is 0). */
attamba_status ops_expect_rows(rt_ctx *ctx, const char *op, const char *name, const tensor *x, int64_t *rows,
                               int64_t *C);
/* v is finite and >= 0 (a NaN fails); name is used in the message. */
attamba_status ops_expect_nonneg(rt_ctx *ctx, const char *op, const char *name, double v);
/* The norms' row kernels (forward and backward), one work-group per row of C floats taken as float4s:
 * the group size is capped by the row's vector count (rounded up to 8) and by the tuning table's
 * norm.group (why 8 on CPUs and 256 on GPUs: ops/tuning.c); the last argument becomes the group's
 * __local scratch of bytes_per_item bytes per work-item. */
attamba_status ops_launch_rows(rt_ctx *ctx, const char *program, const char *kernel, int64_t rows, int64_t C,
                               size_t bytes_per_item, int n_args, rt_arg *args);
/* Launches kernel k (named `name` in the profile) over a (x, y, z) grid whose work-groups span lx
 * of x (the width of 64, 32, 16, 8 that pads x least) by as many y as fill the kernel's group size
 * (at most 256): for kernels that take a few columns per work-item down rows (PoCL pays per
 * work-group, so one narrow row per group costs as much as the arithmetic). */
attamba_status ops_launch_grid(rt_ctx *ctx, cl_kernel k, const char *name, int64_t x, int64_t y, int64_t z,
                               int n_args, const rt_arg *args);
/* Launches a 1-D kernel of `program` over n items with the device's work-group size. */
attamba_status ops_launch_1d(rt_ctx *ctx, const char *program, const char *options, const char *kernel,
                             int64_t n, int n_args, const rt_arg *args);

/* ---- elementwise (elementwise.c): same-shape f32 tensors ---- */
attamba_status ops_add(rt_ctx *ctx, const tensor *a, const tensor *b, tensor *out);
attamba_status ops_mul(rt_ctx *ctx, const tensor *a, const tensor *b, tensor *out);
attamba_status ops_scale(rt_ctx *ctx, const tensor *x, float alpha, tensor *out);
attamba_status ops_silu(rt_ctx *ctx, const tensor *x, tensor *out);

/* ---- GEMM (gemm.c) ----
 * C = alpha * op(A) op(B) + beta * C. A is [M,K] ([K,M] when trans_a), B is [K,N] ([N,K] when
 * trans_b), C is [M,N]; with a leading batch dim all three are batched, and a 2-D A or B is
 * shared by every batch. Rows may be strided (views), elements within a row must be adjacent.
 * beta == 0 overwrites C without reading it. All f32, except that B may be a weight stored as f16 or
 * q8 (tensor.h; a q8 [N, K] is [N, K / 32] blocks) when read transposed (x W^T): the own kernels
 * convert it as they load it; CLBlast refuses it (the automatic choice takes the own kernel). */
typedef enum { OPS_GEMM_AUTO = 0, OPS_GEMM_CLBLAST = 1, OPS_GEMM_OWN = 2 } ops_gemm_backend;
attamba_status ops_gemm(rt_ctx *ctx, int trans_a, int trans_b, float alpha, const tensor *a, const tensor *b,
                        float beta, tensor *c);
/* Same with an explicit backend. AUTO = the tuning table's gemm.backend (ops/tuning.c: the own
 * kernels on CPU devices, CLBlast elsewhere when built with it; $ATTAMBA_GEMM=clblast|own), falling
 * back to the own kernels (with a warning, once) if CLBlast fails on this device. */
attamba_status ops_gemm_with(rt_ctx *ctx, ops_gemm_backend backend, int trans_a, int trans_b, float alpha,
                             const tensor *a, const tensor *b, float beta, tensor *c);
/* Tuning/testing hook: the own backend with an explicit kernel (cl/gemm.cl). AUTO = DOT for
 * M < gemm.dot_m (17 on CPUs, 8 elsewhere) with trans_b, else LOCAL on GPUs, TILES elsewhere. LOCAL fails with ATTAMBA_ERR_UNSUPPORTED on devices whose
 * work-groups cannot hold 16 x 16 items. */
typedef enum {
    OPS_GEMM_KERNEL_AUTO = 0,
    OPS_GEMM_KERNEL_SIMPLE = 1, /* one column x 8 rows per work-item, no pre-pass */
    OPS_GEMM_KERNEL_TILES = 2,  /* B packed into panels, register tiles of explicit vectors (CPUs) */
    OPS_GEMM_KERNEL_LOCAL = 3,  /* __local-memory tiles (GPUs) */
    OPS_GEMM_KERNEL_DOT = 4     /* dot products of up to gemm.dot_rm rows per work-item, vectorised for A B^T */
} ops_gemm_kernel;
attamba_status ops_gemm_own(rt_ctx *ctx, ops_gemm_kernel kernel, int trans_a, int trans_b, float alpha,
                            const tensor *a, const tensor *b, float beta, tensor *c);
/* op(B) packed once for several products A op(B) that each take its first n columns (attention's
 * query blocks and the boundary keys before them: ops/attention_gemm.c), where ops_gemm would pack it
 * again for every product. Where the device's GEMM does not pack such a B (CLBlast, kernels other than
 * the register tiles, B over one pass of K, a small plain B read in place) nothing is packed and each
 * product is ops_gemm on B itself. B is f32, 2-D or batched; it must stay unchanged while in use. */
typedef struct ops_gemm_panels {
    const tensor *b;
    int trans_b, packed, K, N, vw, nv;
    int64_t stride; /* floats between the panels of consecutive batch entries */
    tensor buf;     /* the panels, when packed */
} ops_gemm_panels;
/* m: the rows of the A the products will have (the kernel's choice depends on it). */
attamba_status ops_gemm_panels_make(rt_ctx *ctx, int trans_b, const tensor *b, int m, ops_gemm_panels *p);
/* C = alpha A op(B)[:, :n] + beta C, A [M, K] not transposed, C [M, n]. entry < 0: A and C batched as
 * B is (or B shared); entry >= 0: batch entry `entry` of B for every batch entry of C. */
attamba_status ops_gemm_panels_apply(rt_ctx *ctx, float alpha, const tensor *a, const ops_gemm_panels *p, int entry,
                                     int n, float beta, tensor *c);
void ops_gemm_panels_free(ops_gemm_panels *p);
/* y_i = x W_i^T (+ y_i where accumulate[i]) for n matrices sharing the input x [..., K]: W_i [N_i, K]
 * (rows contiguous; row blocks of a larger matrix are fine), y_i [..., N_i] with x's leading dims.
 * With a few rows of x (decode: fewer than gemm.dot_m) and n <= 6, one launch for all (the decode step's
 * projections); otherwise one ops_gemm each. W_i may be f16 or q8 as in ops_gemm (one launch when
 * all have the same type). */
#define OPS_GEMV_MAX 6 /* ops_gemm_group: one launch for up to this many matrices ... */
/* ... and below this many rows of x (the tuning row gemm.dot_m; where ops_gemm takes the dot kernel). */
int ops_dot_max_rows(rt_ctx *ctx);
/* norm (may be NULL): x is RMS-normalised first, as ops_rmsnorm(x, gain, eps, out): in the same launch
 * where it is one (the normalised rows then written to out only when keep), else by ops_rmsnorm into out
 * first. out: x's shape, apart from x. out2 (may be NULL): with keep, a second copy of them (a residual
 * that two sums start from), apart from x and out. */
typedef struct {
    const tensor *gain;
    float eps;
    tensor *out;
    int keep;
    tensor *out2;
} ops_gemv_norm;
attamba_status ops_gemm_group(rt_ctx *ctx, const tensor *x, const ops_gemv_norm *norm, int n, const tensor *const *W,
                              tensor *const *y, const int *accumulate);
/* hid = silu(x W1^T) * (x W3^T) (ops_swiglu of the two products), x RMS-normalised first when norm is given
 * (as in ops_gemm_group): one launch for decode rows where W1 and W3 are of one type and width; otherwise
 * ops_gemm_group into f1, f3 (which it then writes), then ops_swiglu. */
attamba_status ops_gemm_swiglu(rt_ctx *ctx, const tensor *x, const ops_gemv_norm *norm, const tensor *W1,
                               const tensor *W3, tensor *f1, tensor *f3, tensor *hid);
/* The options of a dot-product kernel (cl/dot.cl) reading weights of type t: "" (f32), " -DWT=1" (f16),
 * " -DWT=2" (q8, with " -DDOT_VW=16" on a 16-wide device: the table's gemm.vw). */
const char *ops_dot_weight_options(rt_ctx *ctx, tensor_dtype t);
/* Whether this build has CLBlast. */
int ops_gemm_have_clblast(void);

#endif
