/* Backward of the prefill attention (causal / sliding / compressed). Kernels in
 * cl/attention_backward.cl; the pass structure is described there. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "attention_backward.h"
#include "ops/tuning.h"

static const char *OP = "ops_attention_prefill_backward";


/* The kernels read some tensors while others are being written by other work-groups: an output
 * overlapping anything else would be read half-updated. (Disjoint views of one buffer, as an arena
 * hands out, are fine.) */
static attamba_status check_no_alias(rt_ctx *ctx, const tensor *const *ts, const char *const *names, int n) {
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < n; j++)
            if (j != i && ops_overlap(ts[i], ts[j]))
                return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: %s shares its buffer with %s", OP, names[i],
                               names[j]);
    return ATTAMBA_OK;
}

/* __local bytes of the sliced kernels: dq's queries and douts, a key and a value tile (rows of dh + 1),
 * two bq x tk score tiles, D and tk row offsets; dkv's keys and values, a query and a dout tile, two
 * bk x tq tiles, lse and D, and its row offsets and key positions. */
static uint64_t dq_slices_lmem(int bq, int tk, int dh) {
    return (uint64_t)((2 * bq + 2 * tk) * (dh + 1) + 2 * bq * tk + bq + tk) * sizeof(float);
}

static uint64_t dkv_slices_lmem(int bk, int tq, int dh) {
    return (uint64_t)((2 * bk + 2 * tq) * (dh + 1) + 2 * bk * tq + 2 * tq + (bk > tq ? bk : tq) + bk) * sizeof(float);
}

attamba_status ops_attention_prefill_backward_with(rt_ctx *ctx, const tensor *q, const tensor *k,
                                                   const tensor *v, int n_heads, int n_kv_heads,
                                                   const attn_mask *mask, const tensor *out,
                                                   const tensor *dout, const attn_backward_opts *opts,
                                                   tensor *dq, tensor *dk, tensor *dv) {
    int dh; /* at most 256, the forward's limit: the dk/dv pass keeps four private arrays of dh floats */
    RT_TRY(attn_check_prefill(ctx, OP, q, k, v, n_heads, n_kv_heads, mask, &dh));
    int64_t B = q->shape[0], T = q->shape[1];
    int64_t kvshape[3] = {B, T, (int64_t)n_kv_heads * dh};
    RT_TRY(ops_expect_same(ctx, OP, "out", out, q));
    RT_TRY(ops_expect_same(ctx, OP, "dout", dout, q));
    RT_TRY(ops_expect_same(ctx, OP, "dq", dq, q));
    RT_TRY(ops_expect(ctx, OP, "dk", dk, TENSOR_F32, 3, kvshape));
    RT_TRY(ops_expect(ctx, OP, "dv", dv, TENSOR_F32, 3, kvshape));
    const tensor *all[] = {dq, dk, dv, q, k, v, out, dout};
    const char *names[] = {"dq", "dk", "dv", "q", "k", "v", "out", "dout"};
    RT_TRY(check_no_alias(ctx, all, names, 8));
    int nb = 0;
    if (mask->mode == ATTN_COMPRESSED) RT_TRY(attn_check_boundaries(ctx, OP, mask->boundaries, mask->trusted, T, &nb));
    if (B * T == 0) return ATTAMBA_OK;

    int taken;
    RT_TRY(attn_gemm_backward(ctx, q, k, v, n_heads, n_kv_heads, dh, mask, opts ? opts->gemm_block : 0, dout, dq, dk,
                              dv, &taken));
    if (taken) return ATTAMBA_OK;

    int bq = opts && opts->block_q ? opts->block_q : ops_tune(ctx, TUNE_BWD_BQ);
    int tk = opts && opts->tile_k ? opts->tile_k : ops_tune(ctx, TUNE_BWD_TK);
    int bk = opts && opts->block_k ? opts->block_k : ops_tune(ctx, TUNE_BWD_BK);
    int tq = opts && opts->tile_q ? opts->tile_q : ops_tune(ctx, TUNE_BWD_TQ);
    int use_local = opts && opts->use_local ? opts->use_local == 1 : ops_tune(ctx, TUNE_BWD_LOCAL);
    int per_item = opts && opts->per_item ? opts->per_item == 1 : ops_tune(ctx, TUNE_BWD_PER_ITEM) && !use_local;
    if (per_item && use_local)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: per_item walks cannot use __local tiles", OP);
    if (opts && (opts->use_local < 0 || opts->use_local > 2 || opts->per_item < 0 || opts->per_item > 2))
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: use_local %d, per_item %d: want 0, 1 or 2", OP,
                       opts->use_local, opts->per_item);
    if (bq < 1 || bq > 256 || tk < 1 || tk > 16 || bk < 1 || bk > 256 || tq < 1 || tq > 16)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG,
                       "%s: block_q %d, block_k %d (1..256) or tile_k %d, tile_q %d (1..16) out of range", OP,
                       bq, bk, tk, tq);
    size_t maxwg = ctx->dev.info.max_work_group_size;
    if ((size_t)bq > maxwg) bq = (int)maxwg;
    if ((size_t)bk > maxwg) bk = (int)maxwg;
    /* Two tiles of rows (plus two short vectors) must fit the device's local memory. */
    int64_t tile_rows = tk > tq ? tk : tq;
    if (use_local && (uint64_t)(2 * tile_rows * dh + 2 * tq) * sizeof(float) > ctx->dev.info.local_mem_bytes)
        use_local = 0;

    int most = ops_tune(ctx, TUNE_BWD_VW), vw = attn_vec_width_max(dh, most > 0 ? most : 16);

    /* GPUs (the table's attn.slices): each row's head dims over ds work-items, the rows in __local */
    int ds = opts && opts->slices ? CORE_MAX(opts->slices, 0) : ops_tune(ctx, TUNE_ATTN_SLICES);
    char options[160];
    if (ds > 0) {
        ds = attn_slices_per_row(dh, ds);
        uint64_t lmem = ctx->dev.info.local_mem_bytes;
        while ((size_t)bq * ds > maxwg && bq > 1) bq /= 2;
        while ((size_t)bk * ds > maxwg && bk > 1) bk /= 2;
        while (dq_slices_lmem(bq, tk, dh) > lmem && bq > 1) bq /= 2;
        while (dq_slices_lmem(bq, tk, dh) > lmem && tk > 1) tk /= 2;
        while (dkv_slices_lmem(bk, tq, dh) > lmem && bk > 1) bk /= 2;
        while (dkv_slices_lmem(bk, tq, dh) > lmem && tq > 1) tq /= 2;
        if (dq_slices_lmem(bq, tk, dh) > lmem || dkv_slices_lmem(bk, tq, dh) > lmem || (size_t)bq * ds > maxwg ||
            (size_t)bk * ds > maxwg)
            return rt_fail(ctx, ATTAMBA_ERR_UNSUPPORTED, "%s: head width %d does not fit %s's local memory (%llu bytes)",
                           OP, dh, ctx->dev.info.name, (unsigned long long)lmem);
        snprintf(options, sizeof options, "-DDH=%d -DBQ=%d -DTK=%d -DBK=%d -DTQ=%d -DDS=%d", dh, bq, tk, bk, tq, ds);
        per_item = 0; /* the group walk: masked triangles and the far launch */
    } else {
        snprintf(options, sizeof options,
                 "-DDH=%d -DBQ=%d -DTK=%d -DBK=%d -DTQ=%d -DUSE_LOCAL=%d -DPER_ITEM=%d -DVW=%d", dh, bq, tk, bk, tq,
                 use_local, per_item, vw);
    }
    cl_kernel kq, kkv;
    RT_TRY(rt_kernel(ctx, "attention_backward", options, ds > 0 ? "attn_bwd_dq_slices" : "attn_bwd_dq", &kq));
    RT_TRY(rt_kernel(ctx, "attention_backward", options, ds > 0 ? "attn_bwd_dkv_slices" : "attn_bwd_dkv", &kkv));
    size_t per_row = ds > 0 ? (size_t)ds : 1; /* work-items */

    /* Per (sequence, head, query): the row log-sum-exp and D = dout . out, from the dq pass. */
    tensor lse = {0}, dsum = {0};
    int64_t sshape[3] = {B, n_heads, T};
    attamba_status s = tensor_scratch(ctx, &lse, TENSOR_F32, 3, sshape);
    if (s == ATTAMBA_OK) s = tensor_scratch(ctx, &dsum, TENSOR_F32, 3, sshape);
    const tensor *bt = mask->mode == ATTN_COMPRESSED ? mask->boundaries : q; /* q: a buffer never read */
    int bo = mask->mode == ATTN_COMPRESSED ? (int)bt->offset : 0;
    float scale = (float)(1.0 / sqrt((double)dh));
    /* A window >= T is the same as T and keeps b + window + 1 from overflowing in the kernel. */
    int win = mask->window < T ? mask->window : (int)T;
    if (s == ATTAMBA_OK) {
        int64_t nblk = (T + bq - 1) / bq;
        size_t global[3] = {(size_t)(nblk * bq) * per_row, (size_t)n_heads, (size_t)B};
        size_t local[3] = {(size_t)bq * per_row, 1, 1};
        rt_arg args[] = {RT_MEM(q->buf->mem), RT_I32(q->offset), RT_MEM(k->buf->mem), RT_I32(k->offset),
                         RT_MEM(v->buf->mem), RT_I32(v->offset), RT_MEM(out->buf->mem), RT_I32(out->offset),
                         RT_MEM(dout->buf->mem), RT_I32(dout->offset), RT_MEM(dq->buf->mem),
                         RT_I32(dq->offset), RT_MEM(lse.buf->mem), RT_MEM(dsum.buf->mem),
                         RT_MEM(bt->buf->mem), RT_I32(bo), RT_I32(nb), RT_I32(T), RT_I32(n_heads),
                         RT_I32(n_kv_heads), RT_I32(mask->mode), RT_I32(win), RT_F32(scale)};
        s = rt_launch(ctx, kq, "attn_bwd_dq", 3, global, local, (int)(sizeof args / sizeof args[0]), args);
    }
    /* near: every key's window queries (CAUSAL: all later ones); far: each boundary's later queries
     * (per_item: the near launch does both). */
    for (int far = 0; far <= 1 && s == ATTAMBA_OK; far++) {
        if (far && (per_item || mask->mode != ATTN_COMPRESSED || win >= T - 1)) break; /* nothing beyond */
        int64_t n = far ? nb : T;
        int lw = mask->mode == ATTN_CAUSAL ? (int)T : win;
        int64_t nblk = (n + bk - 1) / bk;
        size_t global[3] = {(size_t)(nblk * bk) * per_row, (size_t)n_kv_heads, (size_t)B};
        size_t local[3] = {(size_t)bk * per_row, 1, 1};
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
