/* Dense causal and sliding-window attention through the GEMM (the CPU path; declared in
 * attention.h). The queries of a sequence go in blocks of bq. For a block, one batched GEMM writes
 * the scores of every head against the block's keys into a scratch [H, bq, keys] (keys: all earlier
 * ones, or the window's), a row pass (cl/attention_rows.cl) turns them into probabilities with exact
 * zeros where the mask hides a key, and a second GEMM multiplies them by V. The backward recomputes
 * P the same way and runs three more GEMMs (dP = dout V^T; dq = dS K; dk += dS^T q, dv += P^T dout).
 * The register-tiled GEMM runs these shapes at ~3.5x the per-query kernels' FLOP rate on CPUs,
 * which repays the masked triangle each block computes: a fraction (bq + 1) / (2 bq) of the block's
 * scores is wasted for causal. Scratch: one or two [H, bq, keys] buffers per call, never T x T. */
#include <math.h>

#include "attention.h"
#include "ops/tuning.h"

/* Each score buffer stays under 64 MiB: the block shrinks to fit, else the kernels serve the call. */
#define ATTN_GEMM_MAX_FLOATS ((int64_t)16 << 20)
#define ATTN_GEMM_MIN_BQ 16

/* The keys of one query block: queries [t0, t0 + nq) see keys [kb, kb + nk); score rows of ld floats. */
typedef struct gemm_block {
    int64_t t0, nq, kb, nk, ld;
} gemm_block;

static int64_t round8(int64_t n) { return (n + 7) / 8 * 8; }

static gemm_block block_at(const attn_mask *mask, int64_t T, int64_t t0, int bq) {
    gemm_block g = {.t0 = t0, .nq = CORE_MIN((int64_t)bq, T - t0)};
    g.kb = mask->mode == ATTN_SLIDING ? CORE_MAX(0, t0 - mask->window) : 0;
    g.nk = t0 + g.nq - g.kb;
    g.ld = round8(g.nk);
    return g;
}

int attn_gemm_block(rt_ctx *ctx, const attn_mask *mask, int64_t T, int n_heads, int want) {
    int bq = want ? want : ops_tune(ctx, TUNE_ATTN_GEMM_BQ);
    if (bq <= 0 || mask->mode == ATTN_COMPRESSED) return 0;
    /* A window shorter than the block computes more masked scores than visible ones. */
    if (!want && mask->mode == ATTN_SLIDING && mask->window < bq) return 0;
    for (;; bq /= 2) {
        /* the widest score row: the last block's */
        gemm_block g = block_at(mask, T, CORE_MAX(0, T - bq), bq);
        if (n_heads * (int64_t)bq * g.ld <= ATTN_GEMM_MAX_FLOATS) return bq;
        if (bq / 2 < ATTN_GEMM_MIN_BQ) return 0;
    }
}

/* A view [n, rows, cols] of t's storage from element off: head stride hs, row stride ld. */
static tensor view3(const tensor *t, int64_t off, int64_t n, int64_t rows, int64_t cols, int64_t hs, int64_t ld) {
    tensor v = *t;
    v.ndim = 3;
    v.shape[0] = n, v.shape[1] = rows, v.shape[2] = cols;
    v.stride[0] = hs, v.stride[1] = ld, v.stride[2] = 1;
    v.offset = t->offset + off;
    return v;
}

/* Heads [first, first + n) of a view [heads, rows, cols]; n = 0: head `first` alone, as a 2-D view. */
static tensor heads(const tensor *t, int64_t first, int64_t n) {
    tensor v = *t;
    v.offset += first * t->stride[0];
    if (n) {
        v.shape[0] = n;
        return v;
    }
    v.ndim = 2;
    v.shape[0] = t->shape[1], v.shape[1] = t->shape[2];
    v.stride[0] = t->stride[1], v.stride[1] = 1;
    return v;
}

/* C_h = alpha op(A_h) op(B_{h / grp}) + beta C_h for every query head h: A and C hold the query heads,
 * B the kv heads. One batched GEMM without grouping; with it, one per kv head, its grp query heads
 * batched against the shared B. */
static attamba_status heads_gemm(rt_ctx *ctx, int ta, int tb, float alpha, const tensor *A, const tensor *B,
                                 float beta, tensor *C, int grp) {
    if (grp == 1) return ops_gemm(ctx, ta, tb, alpha, A, B, beta, C);
    for (int64_t kh = 0; kh < B->shape[0]; kh++) {
        tensor a = heads(A, kh * grp, grp), b = heads(B, kh, 0), c = heads(C, kh * grp, grp);
        RT_TRY(ops_gemm(ctx, ta, tb, alpha, &a, &b, beta, &c));
    }
    return ATTAMBA_OK;
}

/* C_g += alpha op(A_h) op(B_h) summed over the query heads h of each kv head g (C holds the kv heads). */
static attamba_status heads_gemm_sum(rt_ctx *ctx, int ta, int tb, float alpha, const tensor *A, const tensor *B,
                                     tensor *C, int grp) {
    if (grp == 1) return ops_gemm(ctx, ta, tb, alpha, A, B, 1.0f, C);
    for (int64_t h = 0; h < A->shape[0]; h++) {
        tensor a = heads(A, h, 0), b = heads(B, h, 0), c = heads(C, h / grp, 0);
        RT_TRY(ops_gemm(ctx, ta, tb, alpha, &a, &b, 1.0f, &c));
    }
    return ATTAMBA_OK;
}

/* The operands of one block of sequence b: q-like views [H, nq, dh] at the block's queries, k-like
 * [Hkv, nk, dh] at its keys, and the score rows [H, nq, nk] of a scratch. */
typedef struct block_views {
    int64_t qoff, koff; /* element offsets of the block's first query row / key row, before a tensor's own */
    int64_t H, Hkv, dh, qs, ks;
} block_views;

static tensor qview(const block_views *bv, const gemm_block *g, const tensor *t) {
    return view3(t, bv->qoff, bv->H, g->nq, bv->dh, bv->dh, bv->qs);
}
static tensor kview(const block_views *bv, const gemm_block *g, const tensor *t) {
    return view3(t, bv->koff, bv->Hkv, g->nk, bv->dh, bv->dh, bv->ks);
}
static tensor sview(const block_views *bv, const gemm_block *g, const tensor *scratch) {
    return view3(scratch, 0, bv->H, g->nq, g->nk, g->nq * g->ld, g->ld);
}

static block_views views_at(int64_t T, int n_heads, int n_kv_heads, int dh, int64_t b, const gemm_block *g) {
    block_views bv = {.H = n_heads, .Hkv = n_kv_heads, .dh = dh, .qs = (int64_t)n_heads * dh,
                      .ks = (int64_t)n_kv_heads * dh};
    bv.qoff = (b * T + g->t0) * bv.qs;
    bv.koff = (b * T + g->kb) * bv.ks;
    return bv;
}

/* The row pass over a block's scores (and, for the backward, dP). */
static attamba_status rows_pass(rt_ctx *ctx, cl_kernel kern, const char *name, const tensor *sc, const tensor *dp,
                                const gemm_block *g, int n_heads, const attn_mask *mask) {
    int win = mask->mode == ATTN_SLIDING ? mask->window : -1;
    rt_arg fwd[] = {RT_MEM(sc->buf->mem), RT_I32(sc->offset), RT_I32(g->ld), RT_I32(g->nq), RT_I32(n_heads),
                    RT_I32(g->t0 - g->kb), RT_I32(win)};
    if (!dp) return ops_launch_grid(ctx, kern, name, g->nq, n_heads, 1, (int)CORE_LEN(fwd), fwd);
    rt_arg bwd[] = {RT_MEM(sc->buf->mem), RT_MEM(dp->buf->mem), RT_I32(sc->offset), RT_I32(g->ld), RT_I32(g->nq),
                    RT_I32(n_heads), RT_I32(g->t0 - g->kb), RT_I32(win)};
    return ops_launch_grid(ctx, kern, name, g->nq, n_heads, 1, (int)CORE_LEN(bwd), bwd);
}

static attamba_status score_scratch(rt_ctx *ctx, const attn_mask *mask, int64_t T, int n_heads, int bq,
                                    tensor *out) {
    gemm_block last = block_at(mask, T, CORE_MAX(0, T - bq), bq);
    return tensor_scratch(ctx, out, TENSOR_F32, 1, (int64_t[]){(int64_t)n_heads * bq * last.ld});
}

attamba_status attn_gemm_prefill(rt_ctx *ctx, const tensor *q, const tensor *k, const tensor *v, int n_heads,
                                 int n_kv_heads, int dh, const attn_mask *mask, int bq, tensor *out) {
    int64_t B = q->shape[0], T = q->shape[1];
    int grp = n_heads / n_kv_heads;
    float scale = (float)(1.0 / sqrt((double)dh));
    cl_kernel kern;
    RT_TRY(rt_kernel(ctx, "attention_rows", "", "attn_rows_softmax", &kern));
    tensor sc = {0};
    attamba_status s = score_scratch(ctx, mask, T, n_heads, bq, &sc);
    for (int64_t b = 0; b < B && s == ATTAMBA_OK; b++)
        for (int64_t t0 = 0; t0 < T && s == ATTAMBA_OK; t0 += bq) {
            gemm_block g = block_at(mask, T, t0, bq);
            block_views bv = views_at(T, n_heads, n_kv_heads, dh, b, &g);
            tensor qb = qview(&bv, &g, q), kb = kview(&bv, &g, k), vb = kview(&bv, &g, v);
            tensor ob = qview(&bv, &g, out), p = sview(&bv, &g, &sc);
            s = heads_gemm(ctx, 0, 1, scale, &qb, &kb, 0.0f, &p, grp);
            if (!s) s = rows_pass(ctx, kern, "attn_rows_softmax", &p, NULL, &g, n_heads, mask);
            if (!s) s = heads_gemm(ctx, 0, 0, 1.0f, &p, &vb, 0.0f, &ob, grp);
        }
    tensor_free(&sc); /* the queue keeps it alive until its kernels have run */
    return s;
}

attamba_status attn_gemm_backward(rt_ctx *ctx, const tensor *q, const tensor *k, const tensor *v, int n_heads,
                                  int n_kv_heads, int dh, const attn_mask *mask, int bq, const tensor *dout,
                                  tensor *dq, tensor *dk, tensor *dv) {
    int64_t B = q->shape[0], T = q->shape[1];
    int grp = n_heads / n_kv_heads;
    float scale = (float)(1.0 / sqrt((double)dh));
    cl_kernel kern;
    RT_TRY(rt_kernel(ctx, "attention_rows", "", "attn_rows_dsoftmax", &kern));
    /* dk and dv gather from every block that sees their key: zero, then accumulate. */
    RT_TRY(tensor_fill(dk, 0.0));
    RT_TRY(tensor_fill(dv, 0.0));
    tensor sc = {0}, gsc = {0};
    attamba_status s = score_scratch(ctx, mask, T, n_heads, bq, &sc);
    if (!s) s = score_scratch(ctx, mask, T, n_heads, bq, &gsc);
    for (int64_t b = 0; b < B && s == ATTAMBA_OK; b++)
        for (int64_t t0 = 0; t0 < T && s == ATTAMBA_OK; t0 += bq) {
            gemm_block g = block_at(mask, T, t0, bq);
            block_views bv = views_at(T, n_heads, n_kv_heads, dh, b, &g);
            tensor qb = qview(&bv, &g, q), kb = kview(&bv, &g, k), vb = kview(&bv, &g, v);
            tensor gb = qview(&bv, &g, dout), dqb = qview(&bv, &g, dq);
            tensor dkb = kview(&bv, &g, dk), dvb = kview(&bv, &g, dv);
            tensor p = sview(&bv, &g, &sc), ds = sview(&bv, &g, &gsc);
            s = heads_gemm(ctx, 0, 1, scale, &qb, &kb, 0.0f, &p, grp);
            if (!s) s = heads_gemm(ctx, 0, 1, 1.0f, &gb, &vb, 0.0f, &ds, grp);
            if (!s) s = rows_pass(ctx, kern, "attn_rows_dsoftmax", &p, &ds, &g, n_heads, mask);
            if (!s) s = heads_gemm(ctx, 0, 0, scale, &ds, &kb, 0.0f, &dqb, grp);
            if (!s) s = heads_gemm_sum(ctx, 1, 0, scale, &ds, &qb, &dkb, grp);
            if (!s) s = heads_gemm_sum(ctx, 1, 0, 1.0f, &p, &gb, &dvb, grp);
        }
    tensor_free(&sc);
    tensor_free(&gsc);
    return s;
}
