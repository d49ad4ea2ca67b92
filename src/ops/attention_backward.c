/* Backward of the prefill attention (causal / sliding / compressed). Kernels in
 * cl/attention_backward.cl; the pass structure is described there. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "attention_backward.h"

/* Private arrays of dh floats per work-item (four in the dk/dv pass): beyond this they spill
 * badly everywhere. The same limit as the forward. */
#define BWD_MAX_DH 256

static const char *OP = "ops_attention_prefill_backward";

static int is_gpu(const rt_ctx *ctx) { return ctx->dev.info.type == ATTAMBA_DEVICE_GPU; }

/* Boundary list: 1-D contiguous i32, starts at 0, strictly increasing, < T. Downloads it (small). */
static attamba_status check_bounds(rt_ctx *ctx, const tensor *bt, int64_t T, int *nb) {
    if (!bt || !bt->buf)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: COMPRESSED needs a boundaries tensor", OP);
    if (bt->ndim != 1 || bt->dtype != TENSOR_I32 || !tensor_is_contiguous(bt) || bt->shape[0] < 1) {
        char have[96];
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE,
                       "%s: boundaries must be a contiguous non-empty [nb] i32, got %s", OP,
                       tensor_describe(bt, have, sizeof have));
    }
    if (bt->shape[0] > T)
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: %lld boundaries for %lld positions", OP,
                       (long long)bt->shape[0], (long long)T);
    int n = (int)bt->shape[0];
    int32_t *h = malloc((size_t)n * sizeof *h);
    if (!h) return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "%s: no host memory for %d boundaries", OP, n);
    attamba_status s = tensor_download(bt, h);
    if (s == ATTAMBA_OK && h[0] != 0)
        s = rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: boundaries[0] is %d, position 0 must be a boundary",
                    OP, h[0]);
    for (int i = 1; s == ATTAMBA_OK && i < n; i++)
        if (h[i] <= h[i - 1])
            s = rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG,
                        "%s: boundaries not strictly increasing: [%d] = %d after %d", OP, i, h[i], h[i - 1]);
    if (s == ATTAMBA_OK && h[n - 1] >= T)
        s = rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: boundary %d is not below T = %lld", OP, h[n - 1],
                    (long long)T);
    free(h);
    *nb = n;
    return s;
}

/* The kernels read some tensors while others are being written by other work-groups: an output
 * sharing a buffer with anything else would be read half-updated. Views of one buffer are refused
 * even when they do not overlap (simple and conservative). */
static attamba_status check_no_alias(rt_ctx *ctx, const tensor *const *ts, const char *const *names, int n) {
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < n; j++)
            if (j != i && ts[i]->buf == ts[j]->buf)
                return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: %s shares its buffer with %s", OP, names[i],
                               names[j]);
    return ATTAMBA_OK;
}

attamba_status ops_attention_prefill_backward_with(rt_ctx *ctx, const tensor *q, const tensor *k,
                                                   const tensor *v, int n_heads, int n_kv_heads,
                                                   const attn_mask *mask, const tensor *out,
                                                   const tensor *dout, const attn_backward_opts *opts,
                                                   tensor *dq, tensor *dk, tensor *dv) {
    if (!mask) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: mask is NULL", OP);
    if (mask->mode != ATTN_CAUSAL && mask->mode != ATTN_SLIDING && mask->mode != ATTN_COMPRESSED)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: unknown mask mode %d", OP, (int)mask->mode);
    if (mask->window < 0) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: window %d < 0", OP, mask->window);
    if (!q || !q->buf) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: q is an empty tensor", OP);
    if (q->ndim != 3) {
        char have[96];
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: q must be [B, T, H*dh], got %s", OP,
                       tensor_describe(q, have, sizeof have));
    }
    RT_TRY(ops_expect(ctx, OP, "q", q, TENSOR_F32, 3, q->shape));
    if (n_heads < 1 || n_kv_heads < 1)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: n_heads (%d) and n_kv_heads (%d) must be >= 1", OP,
                       n_heads, n_kv_heads);
    if (n_heads % n_kv_heads)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: n_heads (%d) must be a multiple of n_kv_heads (%d)",
                       OP, n_heads, n_kv_heads);
    if (q->shape[2] % n_heads)
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: q width %lld is not a multiple of n_heads (%d)", OP,
                       (long long)q->shape[2], n_heads);
    int dh = (int)(q->shape[2] / n_heads);
    if (dh < 1 || dh > BWD_MAX_DH)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: head dim %d outside [1, %d]", OP, dh, BWD_MAX_DH);
    int64_t B = q->shape[0], T = q->shape[1];
    int64_t kvshape[3] = {B, T, (int64_t)n_kv_heads * dh};
    RT_TRY(ops_expect(ctx, OP, "k", k, TENSOR_F32, 3, kvshape));
    RT_TRY(ops_expect(ctx, OP, "v", v, TENSOR_F32, 3, kvshape));
    RT_TRY(ops_expect_same(ctx, OP, "out", out, q));
    RT_TRY(ops_expect_same(ctx, OP, "dout", dout, q));
    RT_TRY(ops_expect_same(ctx, OP, "dq", dq, q));
    RT_TRY(ops_expect(ctx, OP, "dk", dk, TENSOR_F32, 3, kvshape));
    RT_TRY(ops_expect(ctx, OP, "dv", dv, TENSOR_F32, 3, kvshape));
    const tensor *all[] = {dq, dk, dv, q, k, v, out, dout};
    const char *names[] = {"dq", "dk", "dv", "q", "k", "v", "out", "dout"};
    RT_TRY(check_no_alias(ctx, all, names, 8));
    int nb = 0;
    if (mask->mode == ATTN_COMPRESSED) RT_TRY(check_bounds(ctx, mask->boundaries, T, &nb));
    if (B * T == 0) return ATTAMBA_OK;

    int gpu = is_gpu(ctx);
    int bq = opts && opts->block_q ? opts->block_q : gpu ? 64 : 16;
    int tk = opts && opts->tile_k ? opts->tile_k : gpu ? 16 : 8;
    int bk = opts && opts->block_k ? opts->block_k : gpu ? 64 : 16;
    int tq = opts && opts->tile_q ? opts->tile_q : gpu ? 16 : 8;
    int use_local = opts && opts->use_local ? opts->use_local == 1 : gpu;
    if (bq < 1 || bq > 256 || tk < 1 || tk > 32 || bk < 1 || bk > 256 || tq < 1 || tq > 32)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG,
                       "%s: block_q %d, block_k %d (1..256) or tile_k %d, tile_q %d (1..32) out of range", OP,
                       bq, bk, tk, tq);
    size_t maxwg = ctx->dev.info.max_work_group_size;
    if ((size_t)bq > maxwg) bq = (int)maxwg;
    if ((size_t)bk > maxwg) bk = (int)maxwg;
    /* Two tiles of rows (plus two short vectors) must fit the device's local memory. */
    int64_t tile_rows = tk > tq ? tk : tq;
    if (use_local && (uint64_t)(2 * tile_rows * dh + 2 * tq) * sizeof(float) > ctx->dev.info.local_mem_bytes)
        use_local = 0;

    char options[128];
    snprintf(options, sizeof options, "-DDH=%d -DBQ=%d -DTK=%d -DBK=%d -DTQ=%d -DUSE_LOCAL=%d", dh, bq, tk,
             bk, tq, use_local);
    cl_kernel kq, kkv;
    RT_TRY(rt_kernel(ctx, "attention_backward", options, "attn_bwd_dq", &kq));
    RT_TRY(rt_kernel(ctx, "attention_backward", options, "attn_bwd_dkv", &kkv));

    /* Per (sequence, head, query): the row log-sum-exp and D = dout . out, from the dq pass. */
    tensor lse = {0}, dsum = {0};
    int64_t sshape[3] = {B, n_heads, T};
    attamba_status s = tensor_alloc_f32(ctx, &lse, 3, sshape);
    if (s == ATTAMBA_OK) s = tensor_alloc_f32(ctx, &dsum, 3, sshape);
    const tensor *bt = mask->mode == ATTN_COMPRESSED ? mask->boundaries : q; /* q: a buffer never read */
    int bo = mask->mode == ATTN_COMPRESSED ? (int)bt->offset : 0;
    float scale = (float)(1.0 / sqrt((double)dh));
    /* A window >= T is the same as T and keeps b + window + 1 from overflowing in the kernel. */
    int win = mask->window < T ? mask->window : (int)T;
    if (s == ATTAMBA_OK) {
        int64_t nblk = (T + bq - 1) / bq;
        size_t global[3] = {(size_t)(nblk * bq), (size_t)n_heads, (size_t)B}, local[3] = {(size_t)bq, 1, 1};
        rt_arg args[] = {RT_MEM(q->buf->mem), RT_I32(q->offset), RT_MEM(k->buf->mem), RT_I32(k->offset),
                         RT_MEM(v->buf->mem), RT_I32(v->offset), RT_MEM(out->buf->mem), RT_I32(out->offset),
                         RT_MEM(dout->buf->mem), RT_I32(dout->offset), RT_MEM(dq->buf->mem),
                         RT_I32(dq->offset), RT_MEM(lse.buf->mem), RT_MEM(dsum.buf->mem),
                         RT_MEM(bt->buf->mem), RT_I32(bo), RT_I32(nb), RT_I32(T), RT_I32(n_heads),
                         RT_I32(n_kv_heads), RT_I32(mask->mode), RT_I32(win), RT_F32(scale)};
        s = rt_launch(ctx, kq, "attn_bwd_dq", 3, global, local, (int)(sizeof args / sizeof args[0]), args);
    }
    /* near: every key's window queries (CAUSAL: all later ones); far: each boundary's later queries. */
    for (int far = 0; far <= 1 && s == ATTAMBA_OK; far++) {
        if (far && (mask->mode != ATTN_COMPRESSED || win >= T - 1)) break; /* no query beyond any window */
        int64_t n = far ? nb : T;
        int lw = mask->mode == ATTN_CAUSAL ? (int)T : win;
        int64_t nblk = (n + bk - 1) / bk;
        size_t global[3] = {(size_t)(nblk * bk), (size_t)n_kv_heads, (size_t)B},
               local[3] = {(size_t)bk, 1, 1};
        rt_arg args[] = {RT_MEM(q->buf->mem), RT_I32(q->offset), RT_MEM(k->buf->mem), RT_I32(k->offset),
                         RT_MEM(v->buf->mem), RT_I32(v->offset), RT_MEM(dout->buf->mem), RT_I32(dout->offset),
                         RT_MEM(lse.buf->mem), RT_MEM(dsum.buf->mem), RT_MEM(dk->buf->mem),
                         RT_I32(dk->offset), RT_MEM(dv->buf->mem), RT_I32(dv->offset), RT_MEM(bt->buf->mem),
                         RT_I32(bo), RT_I32(nb), RT_I32(T), RT_I32(n_heads), RT_I32(n_kv_heads), RT_I32(far),
                         RT_I32(lw), RT_F32(scale)};
        s = rt_launch(ctx, kkv, far ? "attn_bwd_dkv_far" : "attn_bwd_dkv_near", 3, global, local,
                      (int)(sizeof args / sizeof args[0]), args);
    }
    /* Released once enqueued: OpenCL keeps the buffers alive until the kernels using them finish. */
    tensor_free(&lse);
    tensor_free(&dsum);
    return s;
}

attamba_status ops_attention_prefill_backward(rt_ctx *ctx, const tensor *q, const tensor *k, const tensor *v,
                                              int n_heads, int n_kv_heads, const attn_mask *mask,
                                              const tensor *out, const tensor *dout, tensor *dq, tensor *dk,
                                              tensor *dv) {
    return ops_attention_prefill_backward_with(ctx, q, k, v, n_heads, n_kv_heads, mask, out, dout, NULL, dq,
                                               dk, dv);
}
