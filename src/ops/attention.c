/* Attention ops: prefill (causal / sliding / compressed), decode over boundary cache + ring,
 * gather of boundary rows. Kernels in cl/attention.cl. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "attention.h"
#include "ops/layer.h"
#include "ops/tuning.h"

/* Private arrays of dh floats per work-item (q and the accumulator): beyond this they spill
 * badly everywhere and the kernel is the wrong tool. */
#define ATTN_MAX_DH 256


static attamba_status check_heads(rt_ctx *ctx, const char *op, int n_heads, int n_kv_heads, int64_t width,
                                  int *dh) {
    if (n_heads < 1 || n_kv_heads < 1)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: n_heads (%d) and n_kv_heads (%d) must be >= 1", op,
                       n_heads, n_kv_heads);
    if (n_heads % n_kv_heads)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: n_heads (%d) must be a multiple of n_kv_heads (%d)", op,
                       n_heads, n_kv_heads);
    if (width % n_heads)
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: q width %lld is not a multiple of n_heads (%d)", op,
                       (long long)width, n_heads);
    *dh = (int)(width / n_heads);
    if (*dh < 1 || *dh > ATTN_MAX_DH)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: head dim %d outside [1, %d]", op, *dh, ATTN_MAX_DH);
    return ATTAMBA_OK;
}

int attn_vec_width_max(int dh, int most) {
    static const int widths[] = {16, 8, 4};
    for (size_t i = 0; i < CORE_LEN(widths); i++)
        if (widths[i] <= most && dh % widths[i] == 0) return widths[i];
    return 1;
}

int attn_vec_width(int dh) { return attn_vec_width_max(dh, 16); }

int attn_slices_per_row(int dh, int most) {
    int p = 1;
    while (p * 2 <= most && dh % (p * 2) == 0) p *= 2;
    return p;
}

/* Declared in attention.h: attention_backward.c checks its arguments the same way. */
attamba_status attn_check_boundaries(rt_ctx *ctx, const char *op, const tensor *bt, int trusted, int64_t T, int *nb) {
    if (!bt || !bt->buf)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: COMPRESSED needs a boundaries tensor", op);
    if (bt->ndim != 1 || bt->dtype != TENSOR_I32 || !tensor_is_contiguous(bt) || bt->shape[0] < 1) {
        char have[96];
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: boundaries must be a contiguous non-empty [nb] i32, got %s",
                       op, tensor_describe(bt, have, sizeof have));
    }
    if (bt->shape[0] > T)
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: %lld boundaries for %lld positions", op,
                       (long long)bt->shape[0], (long long)T);
    int n = (int)bt->shape[0];
    *nb = n;
    if (trusted) return ATTAMBA_OK;
    int32_t *h = malloc((size_t)n * sizeof *h);
    if (!h) return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "%s: no host memory for %d boundaries", op, n);
    attamba_status s = tensor_download(bt, h);
    if (s == ATTAMBA_OK && h[0] != 0)
        s = rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: boundaries[0] is %d, position 0 must be a boundary", op,
                    h[0]);
    for (int i = 1; s == ATTAMBA_OK && i < n; i++)
        if (h[i] <= h[i - 1])
            s = rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG,
                        "%s: boundaries not strictly increasing: [%d] = %d after [%d] = %d", op, i, h[i], i - 1,
                        h[i - 1]);
    if (s == ATTAMBA_OK && h[n - 1] >= T)
        s = rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: boundary %d is not below T = %lld", op, h[n - 1],
                    (long long)T);
    free(h);
    *nb = n;
    return s;
}

attamba_status attn_check_prefill(rt_ctx *ctx, const char *op, const tensor *q, const tensor *k, const tensor *v,
                                  int n_heads, int n_kv_heads, const attn_mask *mask, int *dh) {
    if (!mask) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: mask is NULL", op);
    if (mask->mode != ATTN_CAUSAL && mask->mode != ATTN_SLIDING && mask->mode != ATTN_COMPRESSED)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: unknown mask mode %d", op, (int)mask->mode);
    if (mask->window < 0)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: window %d < 0", op, mask->window);
    if (!q || !q->buf) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: q is an empty tensor", op);
    if (q->ndim != 3) {
        char have[96];
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: q must be [B, T, H*dh], got %s", op,
                       tensor_describe(q, have, sizeof have));
    }
    RT_TRY(ops_expect(ctx, op, "q", q, TENSOR_F32, 3, q->shape));
    RT_TRY(check_heads(ctx, op, n_heads, n_kv_heads, q->shape[2], dh));
    int64_t kvshape[3] = {q->shape[0], q->shape[1], (int64_t)n_kv_heads * *dh};
    RT_TRY(ops_expect(ctx, op, "k", k, TENSOR_F32, 3, kvshape));
    return ops_expect(ctx, op, "v", v, TENSOR_F32, 3, kvshape);
}

/* Dense causal prefill through attn_causal_lanes (cl/attention.cl): the keys transposed into a
 * scratch [B, Hkv, dh, Tp], then rq queries per work-item. */
static attamba_status prefill_lanes(rt_ctx *ctx, const tensor *q, const tensor *k, const tensor *v, int n_heads,
                                    int n_kv_heads, int dh, int rq, tensor *out) {
    int64_t B = q->shape[0], T = q->shape[1], Tp = (T + 15) / 16 * 16;
    char options[48];
    snprintf(options, sizeof options, "-DDH=%d -DRQ=%d", dh, rq);
    cl_kernel kt_kern, kern;
    RT_TRY(rt_kernel(ctx, "attention", options, "attn_transpose_k", &kt_kern));
    RT_TRY(rt_kernel(ctx, "attention", options, "attn_causal_lanes", &kern));
    tensor kt = {0};
    RT_TRY(tensor_scratch(ctx, &kt, TENSOR_F32, 4, (int64_t[]){B, n_kv_heads, dh, Tp}));
    rt_arg targs[] = {RT_MEM(kt.buf->mem), RT_MEM(k->buf->mem), RT_I32(k->offset), RT_I32(T), RT_I32(Tp),
                      RT_I32(n_kv_heads)};
    attamba_status s = ops_launch_grid(ctx, kt_kern, "attn_transpose_k", Tp, dh, B * n_kv_heads,
                                       (int)CORE_LEN(targs), targs);
    if (!s) {
        size_t lx = rt_local_1d(ctx, kern, 8), items = (size_t)((T + rq - 1) / rq);
        size_t global[3] = {rt_round_up(items, lx), (size_t)n_heads, (size_t)B}, local[3] = {lx, 1, 1};
        rt_arg args[] = {RT_MEM(q->buf->mem), RT_I32(q->offset), RT_MEM(kt.buf->mem), RT_MEM(v->buf->mem),
                         RT_I32(v->offset), RT_MEM(out->buf->mem), RT_I32(out->offset), RT_I32(T), RT_I32(Tp),
                         RT_I32(n_heads), RT_I32(n_kv_heads), RT_F32(1.0 / sqrt((double)dh))};
        s = rt_launch(ctx, kern, "attn_causal_lanes", 3, global, local, (int)CORE_LEN(args), args);
    }
    tensor_free(&kt); /* the queue keeps it alive until the kernel has run */
    return s;
}

/* Compressed and sliding prefill through attn_lanes (cl/attention_lanes.cl): 8 qv queries per work-item
 * along the lanes, rk keys per group; the boundary keys and values from compact head-major copies, the
 * window's in place. */
static attamba_status prefill_query_lanes(rt_ctx *ctx, const tensor *q, const tensor *k, const tensor *v,
                                          int n_heads, int n_kv_heads, int dh, const attn_mask *mask, int qv,
                                          int rk, tensor *out) {
    int64_t B = q->shape[0], T = q->shape[1];
    char options[48];
    snprintf(options, sizeof options, "-DDH=%d -DQV=%d -DRK=%d", dh, qv, rk);
    cl_kernel kern;
    RT_TRY(rt_kernel(ctx, "attention_lanes", options, "attn_lanes", &kern));
    int compressed = mask->mode == ATTN_COMPRESSED;
    int64_t nb = compressed ? mask->boundaries->shape[0] : 0;
    tensor kv[2] = {{0}};
    attamba_status s = ATTAMBA_OK;
    for (int i = 0; i < 2 && compressed && !s; i++) {
        s = tensor_scratch(ctx, &kv[i], TENSOR_F32, 4, (int64_t[]){B, n_kv_heads, nb, dh});
        if (!s) s = attn_bnd_move(ctx, mask, &kv[i], i ? v : k, 1);
    }
    const tensor *bt = compressed ? mask->boundaries : q, *kc = compressed ? &kv[0] : k, *vc = compressed ? &kv[1] : v;
    size_t lx = rt_local_1d(ctx, kern, 8), items = (size_t)((T + 8 * qv - 1) / (8 * qv));
    size_t global[3] = {rt_round_up((size_t)n_heads, lx), items, (size_t)B}, local[3] = {lx, 1, 1};
    rt_arg args[] = {RT_MEM(q->buf->mem),   RT_I32(q->offset),   RT_MEM(k->buf->mem),   RT_I32(k->offset),
                     RT_MEM(v->buf->mem),   RT_I32(v->offset),   RT_MEM(kc->buf->mem),  RT_I32(kc->offset),
                     RT_MEM(vc->buf->mem),  RT_I32(vc->offset),  RT_MEM(out->buf->mem), RT_I32(out->offset),
                     RT_MEM(bt->buf->mem),  RT_I32(compressed ? bt->offset : 0), RT_I32(nb), RT_I32(T),
                     RT_I32(n_heads), RT_I32(n_kv_heads), RT_I32(CORE_MIN((int64_t)mask->window, T)),
                     RT_F32(1.0 / sqrt((double)dh))};
    if (!s) s = rt_launch(ctx, kern, "attn_lanes", 3, global, local, (int)CORE_LEN(args), args);
    for (int i = 0; i < 2; i++) tensor_free(&kv[i]); /* the queue keeps them alive until the kernel has run */
    return s;
}

/* attn_prefill_slices' __local bytes: bq queries and two tk-key tiles in rows of dh + 1, bq x tk scores */
static uint64_t slices_lmem(int bq, int tk, int dh) {
    return (uint64_t)((bq + 2 * tk) * (dh + 1) + bq * tk) * sizeof(float);
}

attamba_status ops_attention_prefill_with(rt_ctx *ctx, const tensor *q, const tensor *k, const tensor *v,
                                          int n_heads, int n_kv_heads, const attn_mask *mask,
                                          const attn_prefill_opts *opts, tensor *out) {
    static const char *op = "ops_attention_prefill";
    int dh;
    RT_TRY(attn_check_prefill(ctx, op, q, k, v, n_heads, n_kv_heads, mask, &dh));
    int64_t B = q->shape[0], T = q->shape[1];
    RT_TRY(ops_expect_same(ctx, op, "out", out, q));
    int nb = 0;
    if (mask->mode == ATTN_COMPRESSED) RT_TRY(attn_check_boundaries(ctx, op, mask->boundaries, mask->trusted, T, &nb));
    if (B * T == 0) return ATTAMBA_OK;

    /* Compressed and sliding masks on CPUs (the table's attn.qv): the queries along the lanes (an explicit
     * GEMM block keeps the GEMM path: tests). */
    int qv = opts && opts->qv ? opts->qv : opts && opts->gemm_block > 0 ? 0 : ops_tune(ctx, TUNE_ATTN_QV);
    if (qv > 2) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: qv %d must be 1 or 2 (float8s of queries)", op, qv);
    int rk = opts && opts->rk ? opts->rk : ops_tune(ctx, TUNE_ATTN_RK);
    if (rk < 1 || rk > 16)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: rk %d must be 1 to 16 (keys per group)", op, rk);
    if (mask->mode != ATTN_CAUSAL && qv > 0)
        return prefill_query_lanes(ctx, q, k, v, n_heads, n_kv_heads, dh, mask, qv, rk, out);

    /* On CPUs through the GEMM (the table's attn.gemm_bq), unless the mask hides most of its work. */
    int taken;
    RT_TRY(attn_gemm_prefill(ctx, q, k, v, n_heads, n_kv_heads, dh, mask, opts ? opts->gemm_block : 0, out, &taken));
    if (taken) return ATTAMBA_OK;

    /* Dense causal on CPUs (the table's attn.rq): queries per work-item with the keys along the lanes,
     * for head widths of whole float8s; their RQ x dh private floats are capped at 2048. */
    int rq = opts && opts->lanes ? opts->lanes : ops_tune(ctx, TUNE_ATTN_RQ);
    if (mask->mode == ATTN_CAUSAL && rq > 0 && dh % 8 == 0)
        return prefill_lanes(ctx, q, k, v, n_heads, n_kv_heads, dh, CORE_MIN(rq, 2048 / dh), out);

    /* GPUs (the table's attn.slices): each query's head dims over several work-items. */
    int ds = opts && opts->slices ? CORE_MAX(opts->slices, 0) : ops_tune(ctx, TUNE_ATTN_SLICES);
    /* Defaults (ops/tuning.c): __local key tiles and the long query block when the keys all queries
     * of a block share (all earlier keys for CAUSAL, the boundaries for COMPRESSED) exceed attn.long_kib
     * of K+V per head (GPUs: always), else straight from global with the short block, whose window
     * range (L + BQ keys per query) wastes less. */
    int64_t shared = mask->mode == ATTN_CAUSAL ? T : mask->mode == ATTN_COMPRESSED ? nb : 0;
    int long_stream = shared * dh * 2 * (int64_t)sizeof(float) > (int64_t)ops_tune(ctx, TUNE_ATTN_LONG_KIB) * 1024;
    int bq = opts && opts->block_q ? opts->block_q : ops_tune(ctx, long_stream ? TUNE_ATTN_BQ_LONG : TUNE_ATTN_BQ_SHORT);
    int tk = opts && opts->tile_k ? opts->tile_k : ops_tune(ctx, TUNE_ATTN_TK);
    int use_local = opts && opts->use_local ? opts->use_local == 1 : long_stream;
    int vw = opts && opts->vec_width ? opts->vec_width : attn_vec_width(dh);
    if ((vw != 1 && vw != 4 && vw != 8 && vw != 16) || dh % vw)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: vec_width %d must be 1, 4, 8 or 16 and divide dh %d", op,
                       vw, dh);
    if (bq < 1 || bq > 256 || tk < 1 || tk > 16 || (tk & (tk - 1)))
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: block_q %d (1..256) or tile_k %d (1, 2, 4, 8, 16) out of range",
                       op, bq, tk);
    char options[96];
    const char *kname = "attn_prefill";
    size_t per_query = 1; /* work-items */
    if (ds > 0) {
        /* bq x per_query work-items; the queries, two key tiles (rows of dh + 1) and the scores in
         * __local: halve bq, then tk, until they fit */
        per_query = (size_t)attn_slices_per_row(dh, ds);
        while ((size_t)bq * per_query > ctx->dev.info.max_work_group_size && bq > 1) bq /= 2;
        uint64_t lmem = ctx->dev.info.local_mem_bytes;
        while (slices_lmem(bq, tk, dh) > lmem && bq > 1) bq /= 2;
        while (slices_lmem(bq, tk, dh) > lmem && tk > 1) tk /= 2;
        if (slices_lmem(bq, tk, dh) > lmem || (size_t)bq * per_query > ctx->dev.info.max_work_group_size)
            return rt_fail(ctx, ATTAMBA_ERR_UNSUPPORTED, "%s: head width %d does not fit %s's local memory (%llu bytes)",
                           op, dh, ctx->dev.info.name, (unsigned long long)lmem);
        snprintf(options, sizeof options, "-DDH=%d -DBQ=%d -DTK=%d -DDS=%d", dh, bq, tk, (int)per_query);
        kname = "attn_prefill_slices";
    } else {
        if ((size_t)bq > ctx->dev.info.max_work_group_size) bq = (int)ctx->dev.info.max_work_group_size;
        /* Two TK x dh tiles must fit the device's local memory, else read keys from global. */
        if (use_local && (uint64_t)2 * tk * dh * sizeof(float) > ctx->dev.info.local_mem_bytes) use_local = 0;
        snprintf(options, sizeof options, "-DDH=%d -DBQ=%d -DTK=%d -DUSE_LOCAL=%d -DVW=%d", dh, bq, tk, use_local,
                 vw);
    }

    /* The compact copy costs one gather but turns each block's boundary keys into a contiguous
     * stream: ~5% less CPU time at T = 4096, P = 8, L = 8 on PoCL (3 of 3 interleaved pairs). */
    int want_compact = opts && opts->compact ? opts->compact == 1 : 1;
    int compact = mask->mode == ATTN_COMPRESSED && want_compact;

    cl_kernel kern;
    RT_TRY(rt_kernel(ctx, "attention", options, kname, &kern));
    const tensor *bt = mask->mode == ATTN_COMPRESSED ? mask->boundaries : q; /* q: a buffer never read */
    tensor kc = {0}, vc = {0};
    if (compact) {
        int64_t cshape[4] = {B, n_kv_heads, nb, dh};
        attamba_status s = tensor_scratch(ctx, &kc, TENSOR_F32, 4, cshape);
        if (s == ATTAMBA_OK) s = tensor_scratch(ctx, &vc, TENSOR_F32, 4, cshape);
        if (s == ATTAMBA_ERR_OUT_OF_MEMORY && !(opts && opts->compact)) {
            /* Only a default: without room for the copy, read the rows in place. */
            tensor_free(&kc);
            compact = 0;
            s = ATTAMBA_OK;
        }
        int64_t total = B * n_kv_heads * nb * dh;
        for (int which = 0; which < 2 && s == ATTAMBA_OK && compact; which++) {
            const tensor *src = which ? v : k;
            tensor *dst = which ? &vc : &kc;
            rt_arg gargs[] = {RT_MEM(dst->buf->mem), RT_MEM(src->buf->mem), RT_I32(src->offset),
                              RT_MEM(bt->buf->mem), RT_I32(bt->offset), RT_I32(nb), RT_I32(T), RT_I32(n_kv_heads),
                              RT_I32(total)};
            s = ops_launch_1d(ctx, "attention", options, "attn_gather_heads", total, 9, gargs);
        }
        if (s != ATTAMBA_OK) {
            tensor_free(&kc);
            tensor_free(&vc);
            return s;
        }
    }
    const tensor *kcp = compact ? &kc : k, *vcp = compact ? &vc : v;
    int64_t nblk = (T + bq - 1) / bq;
    size_t global[3] = {(size_t)(nblk * bq) * per_query, (size_t)n_heads, (size_t)B};
    size_t local[3] = {(size_t)bq * per_query, 1, 1};
    rt_arg args[] = {RT_MEM(q->buf->mem), RT_I32(q->offset), RT_MEM(k->buf->mem), RT_I32(k->offset),
                     RT_MEM(v->buf->mem), RT_I32(v->offset), RT_MEM(out->buf->mem), RT_I32(out->offset),
                     RT_MEM(bt->buf->mem), RT_I32(mask->mode == ATTN_COMPRESSED ? bt->offset : 0), RT_I32(nb),
                     RT_I32(T), RT_I32(n_heads), RT_I32(n_kv_heads), RT_I32(mask->mode), RT_I32(mask->window),
                     RT_F32(1.0 / sqrt((double)dh)), RT_MEM(kcp->buf->mem), RT_I32(compact ? 0 : kcp->offset),
                     RT_MEM(vcp->buf->mem), RT_I32(compact ? 0 : vcp->offset), RT_I32(compact)};
    attamba_status s = rt_launch(ctx, kern, kname, 3, global, local, (int)CORE_LEN(args), args);
    /* The queue keeps the buffers alive until the kernel has run (OpenCL retains enqueued memory). */
    tensor_free(&kc);
    tensor_free(&vc);
    return s;
}

attamba_status ops_attention_prefill(rt_ctx *ctx, const tensor *q, const tensor *k, const tensor *v, int n_heads,
                                     int n_kv_heads, const attn_mask *mask, tensor *out) {
    return ops_attention_prefill_with(ctx, q, k, v, n_heads, n_kv_heads, mask, NULL, out);
}

attamba_status ops_gather_rows(rt_ctx *ctx, const tensor *src, const tensor *idx, tensor *out) {
    static const char *op = "ops_gather_rows";
    if (!src || !src->buf) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: src is an empty tensor", op);
    if (!idx || !idx->buf) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: idx is an empty tensor", op);
    if (src->ndim != 3 || idx->ndim != 1) {
        char a[96], b[96];
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: src must be [B, T, C] and idx [n], got %s and %s", op,
                       tensor_describe(src, a, sizeof a), tensor_describe(idx, b, sizeof b));
    }
    RT_TRY(ops_expect(ctx, op, "src", src, TENSOR_F32, 3, src->shape));
    RT_TRY(ops_expect(ctx, op, "idx", idx, TENSOR_I32, 1, idx->shape));
    int64_t B = src->shape[0], T = src->shape[1], C = src->shape[2], n = idx->shape[0];
    RT_TRY(ops_expect(ctx, op, "out", out, TENSOR_F32, 3, (int64_t[]){B, n, C}));
    int64_t total = B * n * C;
    if (total == 0) return ATTAMBA_OK;
    if (T == 0) return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: gathering %lld rows from an empty src", op,
                               (long long)n);
    rt_arg args[] = {RT_MEM(out->buf->mem), RT_I32(out->offset), RT_MEM(src->buf->mem), RT_I32(src->offset),
                     RT_MEM(idx->buf->mem), RT_I32(idx->offset), RT_I32(n), RT_I32(T), RT_I32(C), RT_I32(total)};
    return ops_launch_1d(ctx, "attention", "", "attn_gather_rows", total, 10, args);
}

/* The boundary store of the decode ops: [B, cap, Hkv*dh] (row-major) or [B, Hkv, cap, dh] (head-major),
 * kb and vb alike, contiguous, f32 or f16; the strides the kernels take. */
typedef struct {
    int64_t cap;
    int bs, hs, es;     /* elements between sequences, heads, rows */
    const char *option; /* the kernels' element type: "" (f32) or " -DKV_F16=1" */
} store_layout;

static attamba_status store_check(rt_ctx *ctx, const char *op, const tensor *kb, const tensor *vb, int64_t B,
                                  int Hkv, int dh, store_layout *st) {
    if (!kb || !kb->buf || (kb->ndim != 3 && kb->ndim != 4))
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: kb must be a [B, cap, Hkv*dh] or [B, Hkv, cap, dh] tensor", op);
    int head_major = kb->ndim == 4;
    st->cap = kb->shape[head_major ? 2 : 1];
    int64_t C = (int64_t)Hkv * dh, shape[4] = {B, st->cap, C};
    if (head_major) shape[1] = Hkv, shape[2] = st->cap, shape[3] = dh;
    tensor_dtype t = kb->dtype == TENSOR_F16 ? TENSOR_F16 : TENSOR_F32;
    RT_TRY(ops_expect(ctx, op, "kb", kb, t, kb->ndim, shape));
    RT_TRY(ops_expect(ctx, op, "vb", vb, t, kb->ndim, shape));
    st->option = t == TENSOR_F16 ? " -DKV_F16=1" : "";
    st->bs = (int)(st->cap * C);
    st->hs = head_major ? (int)(st->cap * dh) : dh;
    st->es = head_major ? dh : (int)C;
    return ATTAMBA_OK;
}

/* attn_decode's __local bytes: the sliced kernel's query and wg scores, or the merge's wg x (dh + 2) */
static uint64_t decode_lmem(int sliced, int dh, int wg) {
    return (uint64_t)(sliced ? dh + wg : wg * (dh + 2)) * sizeof(float);
}

attamba_status ops_attention_decode(rt_ctx *ctx, const tensor *q, const tensor *kb, const tensor *vb,
                                    const tensor *bpos, const tensor *nb, const tensor *kr, const tensor *vr,
                                    const tensor *pos, int n_heads, int n_kv_heads, int window, tensor *out) {
    static const char *op = "ops_attention_decode";
    if (window < 0) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: window %d < 0", op, window);
    if (!q || !q->buf) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: q is an empty tensor", op);
    if (q->ndim != 2) {
        char have[96];
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: q must be [B, H*dh], got %s", op,
                       tensor_describe(q, have, sizeof have));
    }
    RT_TRY(ops_expect(ctx, op, "q", q, TENSOR_F32, 2, q->shape));
    int dh;
    RT_TRY(check_heads(ctx, op, n_heads, n_kv_heads, q->shape[1], &dh));
    int64_t B = q->shape[0], C = (int64_t)n_kv_heads * dh, R = (int64_t)window + 1;
    store_layout st;
    RT_TRY(store_check(ctx, op, kb, vb, B, n_kv_heads, dh, &st));
    int64_t cap = st.cap;
    RT_TRY(ops_expect(ctx, op, "bpos", bpos, TENSOR_I32, 2, (int64_t[]){B, cap}));
    RT_TRY(ops_expect(ctx, op, "nb", nb, TENSOR_I32, 1, (int64_t[]){B}));
    RT_TRY(ops_expect(ctx, op, "kr", kr, TENSOR_F32, 3, (int64_t[]){B, R, C}));
    RT_TRY(ops_expect(ctx, op, "vr", vr, TENSOR_F32, 3, (int64_t[]){B, R, C}));
    RT_TRY(ops_expect(ctx, op, "pos", pos, TENSOR_I32, 1, (int64_t[]){B}));
    RT_TRY(ops_expect_same(ctx, op, "out", out, q));
    if (B == 0) return ATTAMBA_OK;

    int wg = ops_tune(ctx, TUNE_ATTN_DECODE_WG);
    if ((size_t)wg > ctx->dev.info.max_work_group_size) wg = (int)ctx->dev.info.max_work_group_size;
    /* GPUs (attn.slices): the group shares the query's head dims, dh + wg floats of __local. Else the
     * merge keeps WG x (DH + 2) floats in __local: halve the group until they fit the device (DH = 256
     * at 32 work-items needs 33 KB, more than some GPUs have). */
    int sliced = ops_tune(ctx, TUNE_ATTN_SLICES) > 0;
    uint64_t lmem = ctx->dev.info.local_mem_bytes;
    while (wg > 1 && decode_lmem(sliced, dh, wg) > lmem) wg /= 2;
    if (decode_lmem(sliced, dh, wg) > lmem)
        return rt_fail(ctx, ATTAMBA_ERR_UNSUPPORTED, "%s: head width %d needs %llu bytes of local memory, %s has %llu",
                       op, dh, (unsigned long long)decode_lmem(sliced, dh, wg), ctx->dev.info.name,
                       (unsigned long long)lmem);
    /* split-K: each (sequence, head) over S groups when there are too few pairs for the device; a
     * sequence has at most cap stored keys and R in the ring */
    int64_t S = 1, want = (int64_t)ops_tune(ctx, TUNE_ATTN_DECODE_GROUPS) * ctx->dev.info.compute_units;
    if (want > B * n_heads) {
        int64_t most = CORE_MAX(1, (cap + R) / ops_tune(ctx, TUNE_ATTN_DECODE_SPLIT_KEYS));
        S = CORE_MIN(CORE_MIN(most, (want + B * n_heads - 1) / (B * n_heads)), 4096);
    }
    tensor part = {0};
    if (S > 1) RT_TRY(tensor_scratch(ctx, &part, TENSOR_F32, 1, (int64_t[]){B * n_heads * S * (dh + 2)}));
    const tensor *pt = S > 1 ? &part : out; /* unused when S = 1 */
    char options[96];
    if (sliced)
        snprintf(options, sizeof options, "-DDH=%d -DWG=%d -DDECODE_SLICES=1%s", dh, wg, st.option);
    else
        snprintf(options, sizeof options, "-DDH=%d -DTK=4 -DWG=%d -DVW=%d%s", dh, wg, attn_vec_width(dh), st.option);
    cl_kernel kern, merge;
    attamba_status s = rt_kernel(ctx, "attention", options, "attn_decode", &kern);
    if (!s && S > 1) s = rt_kernel(ctx, "attention", options, "attn_decode_merge", &merge);
    if (s) {
        tensor_free(&part);
        return s;
    }
    size_t global[3] = {(size_t)wg, (size_t)(n_heads * S), (size_t)B}, local[3] = {(size_t)wg, 1, 1};
    rt_arg args[] = {RT_MEM(q->buf->mem),    RT_I32(q->offset),    RT_MEM(kb->buf->mem),  RT_I32(kb->offset),
                     RT_MEM(vb->buf->mem),   RT_I32(vb->offset),   RT_MEM(bpos->buf->mem), RT_I32(bpos->offset),
                     RT_MEM(nb->buf->mem),   RT_I32(nb->offset),   RT_MEM(kr->buf->mem),  RT_I32(kr->offset),
                     RT_MEM(vr->buf->mem),   RT_I32(vr->offset),   RT_MEM(pos->buf->mem), RT_I32(pos->offset),
                     RT_MEM(out->buf->mem),  RT_I32(out->offset),  RT_I32(cap),           RT_I32(st.bs),
                     RT_I32(st.hs),          RT_I32(st.es),        RT_I32(R),
                     RT_I32(n_heads),        RT_I32(n_kv_heads),   RT_I32(window),
                     RT_F32(1.0 / sqrt((double)dh)), RT_I32(S),  RT_MEM(pt->buf->mem), RT_I32(pt->offset)};
    s = rt_launch(ctx, kern, "attn_decode", 3, global, local, (int)CORE_LEN(args), args);
    if (!s && S > 1) {
        size_t lx = rt_local_1d(ctx, merge, 64);
        size_t mglobal[3] = {rt_round_up((size_t)dh, lx), (size_t)n_heads, (size_t)B}, mlocal[3] = {lx, 1, 1};
        rt_arg margs[] = {RT_MEM(part.buf->mem), RT_I32(part.offset), RT_I32(S), RT_I32(n_heads),
                          RT_MEM(out->buf->mem), RT_I32(out->offset)};
        s = rt_launch(ctx, merge, "attn_decode_merge", 3, mglobal, mlocal, (int)CORE_LEN(margs), margs);
    }
    tensor_free(&part); /* enqueued: OpenCL keeps the buffer until the kernels have run */
    return s;
}

attamba_status ops_kv_check(rt_ctx *ctx, const char *op, const tensor *k, const tensor *v, const tensor *pos,
                            const tensor *store, const tensor *kr, const tensor *vr, const tensor *kb,
                            const tensor *vb, const tensor *bpos, const tensor *nb, ops_kv_layout *L) {
    if (!k || !k->buf || k->ndim != 2) return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: k must be a [B, C] tensor", op);
    int64_t B = k->shape[0], C = k->shape[1];
    if (!kr || !kr->buf || kr->ndim != 3)
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: kr must be a [B, R, C] tensor", op);
    int64_t R = kr->shape[1];
    int Hkv = kb && kb->buf && kb->ndim == 4 ? (int)kb->shape[1] : 1, dh = (int)(C / Hkv);
    store_layout st;
    RT_TRY(store_check(ctx, op, kb, vb, B, Hkv, dh, &st));
    int64_t cap = st.cap;
    RT_TRY(ops_expect(ctx, op, "k", k, TENSOR_F32, 2, k->shape));
    RT_TRY(ops_expect(ctx, op, "v", v, TENSOR_F32, 2, k->shape));
    RT_TRY(ops_expect(ctx, op, "pos", pos, TENSOR_I32, 1, &B));
    RT_TRY(ops_expect(ctx, op, "store", store, TENSOR_I32, 1, &B));
    RT_TRY(ops_expect(ctx, op, "kr", kr, TENSOR_F32, 3, (int64_t[]){B, R, C}));
    RT_TRY(ops_expect(ctx, op, "vr", vr, TENSOR_F32, 3, (int64_t[]){B, R, C}));
    RT_TRY(ops_expect(ctx, op, "bpos", bpos, TENSOR_I32, 2, (int64_t[]){B, cap}));
    RT_TRY(ops_expect(ctx, op, "nb", nb, TENSOR_I32, 1, &B));
    *L = (ops_kv_layout){B, C, R, cap, dh, st.bs, st.hs, st.es, st.option};
    return ATTAMBA_OK;
}

/* q [B, Hq*dh] and k [B, Hkv*dh] as the one-token sequences [B, 1, ...] the RoPE ops take (views). */
static attamba_status token_views(const tensor *q, const tensor *k, tensor *q3, tensor *k3) {
    attamba_status s = tensor_reshape(q, 3, (int64_t[]){q->shape[0], 1, q->shape[1]}, q3);
    return s ? s : tensor_reshape(k, 3, (int64_t[]){k->shape[0], 1, k->shape[1]}, k3);
}

attamba_status ops_kv_rope_check(rt_ctx *ctx, const char *op, const tensor *q, int q_heads, const tensor *k,
                                 int k_heads, const tensor *v, const tensor *pos, float theta, int *dq) {
    if (!q || !q->buf || q->ndim != 2 || !k || !k->buf || k->ndim != 2)
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: q and k must be [B, heads*dh] tensors", op);
    RT_TRY(ops_expect(ctx, op, "q", q, TENSOR_F32, 2, q->shape)); /* contiguous: the views below are views */
    RT_TRY(ops_expect(ctx, op, "k", k, TENSOR_F32, 2, k->shape));
    if (ops_overlap(q, v)) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: q overlaps v", op);
    tensor q3 = {0}, k3 = {0};
    int half_dh = 0;
    attamba_status s = token_views(q, k, &q3, &k3);
    if (!s) s = ops_rope_check(ctx, op, &q3, q_heads, &k3, k_heads, pos, theta, &half_dh);
    tensor_free(&q3);
    tensor_free(&k3);
    *dq = 2 * half_dh;
    return s;
}

/* The append, with the RoPE of q (q_heads) and k (k_heads) first when q is given. */
static attamba_status kv_append(rt_ctx *ctx, const char *op, tensor *q, int q_heads, int k_heads, float theta,
                                const tensor *k, const tensor *v, const tensor *pos, const tensor *store, tensor *kr,
                                tensor *vr, tensor *kb, tensor *vb, tensor *bpos, tensor *nb) {
    int dq = 0;
    if (q) RT_TRY(ops_kv_rope_check(ctx, op, q, q_heads, k, k_heads, v, pos, theta, &dq));
    ops_kv_layout L;
    RT_TRY(ops_kv_check(ctx, op, k, v, pos, store, kr, vr, kb, vb, bpos, nb, &L));
    if (q && (dq % 8 || L.dh % dq)) { /* no whole pieces of 8 floats in a head: the RoPE launch first */
        tensor q3 = {0}, k3 = {0};
        attamba_status s = token_views(q, k, &q3, &k3);
        if (!s) s = ops_rope_rotate(ctx, op, &q3, q_heads, &k3, k_heads, pos, theta, 1.0f);
        tensor_free(&q3);
        tensor_free(&k3);
        RT_TRY(s);
        q = NULL;
    }
    int64_t B = L.B, C = L.C;
    if (!q) {
        rt_arg args[] = {RT_MEM(k->buf->mem),   RT_I32(k->offset),      RT_MEM(v->buf->mem),     RT_I32(v->offset),
                         RT_MEM(pos->buf->mem), RT_I32(pos->offset),    RT_MEM(store->buf->mem), RT_I32(store->offset),
                         RT_MEM(kr->buf->mem),  RT_I32(kr->offset),     RT_MEM(vr->buf->mem),    RT_I32(vr->offset),
                         RT_I32(L.R),           RT_MEM(kb->buf->mem),   RT_I32(kb->offset),      RT_MEM(vb->buf->mem),
                         RT_I32(vb->offset),    RT_I32(L.cap),          RT_I32(L.bs),            RT_I32(L.hs),
                         RT_I32(L.es),          RT_I32(L.dh),           RT_MEM(bpos->buf->mem),  RT_I32(bpos->offset),
                         RT_MEM(nb->buf->mem),  RT_I32(nb->offset),     RT_I32(C),               RT_I32(B * C)};
        return ops_launch_1d(ctx, "attention", L.option, "kv_append", B * C, (int)CORE_LEN(args), args);
    }
    int quads = dq / 8;
    rt_arg args[] = {RT_MEM(q->buf->mem),      RT_I32(q->offset),       RT_I32(q_heads),
                     RT_MEM(k->buf->mem),      RT_I32(k->offset),       RT_MEM(v->buf->mem),
                     RT_I32(v->offset),        RT_MEM(pos->buf->mem),   RT_I32(pos->offset),
                     RT_MEM(store->buf->mem),  RT_I32(store->offset),   RT_MEM(kr->buf->mem),
                     RT_I32(kr->offset),       RT_MEM(vr->buf->mem),    RT_I32(vr->offset),
                     RT_I32(L.R),              RT_MEM(kb->buf->mem),    RT_I32(kb->offset),
                     RT_MEM(vb->buf->mem),     RT_I32(vb->offset),      RT_I32(L.cap),
                     RT_I32(L.bs),             RT_I32(L.hs),            RT_I32(L.es),
                     RT_I32(L.dh),             RT_MEM(bpos->buf->mem),  RT_I32(bpos->offset),
                     RT_MEM(nb->buf->mem),     RT_I32(nb->offset),      RT_I32(k_heads),
                     RT_I32(quads),            RT_F32(log2((double)theta)),
                     RT_F32(log2(3.14159265358979323846)), RT_I32(B * quads)};
    return ops_launch_1d(ctx, "attention", L.option, "kv_append_rope", B * quads, (int)CORE_LEN(args), args);
}

attamba_status ops_kv_append(rt_ctx *ctx, const tensor *k, const tensor *v, const tensor *pos, const tensor *store,
                             tensor *kr, tensor *vr, tensor *kb, tensor *vb, tensor *bpos, tensor *nb) {
    return kv_append(ctx, "ops_kv_append", NULL, 0, 0, 0.0f, k, v, pos, store, kr, vr, kb, vb, bpos, nb);
}

attamba_status ops_kv_append_rope(rt_ctx *ctx, tensor *q, int q_heads, tensor *k, int k_heads, const tensor *v,
                                  const tensor *pos, float theta, const tensor *store, tensor *kr, tensor *vr,
                                  tensor *kb, tensor *vb, tensor *bpos, tensor *nb) {
    if (!q) return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "ops_kv_append_rope: q and k must be [B, heads*dh] tensors");
    return kv_append(ctx, "ops_kv_append_rope", q, q_heads, k_heads, theta, k, v, pos, store, kr, vr, kb, vb, bpos,
                     nb);
}
