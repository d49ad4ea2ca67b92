/* Attention through the GEMM (the CPU path; declared in attention.h), for every mask. The queries of
 * a sequence go in blocks of bq. A block's keys are its window range (all earlier keys for causal)
 * and, for compressed masks, the boundaries before it, gathered once per call into a head-major copy.
 * Batched GEMMs write the scores of every head against those keys into a scratch [H, bq, keys], a row
 * pass (cl/attention_rows.cl) turns them into probabilities with exact zeros where the mask hides a
 * key, and GEMMs multiply them by V. The backward recomputes P the same way and runs the GEMMs of
 * dP = dout V^T, dq = dS K, dk += dS^T q and dv += P^T dout (the boundary keys' gradients into the
 * compact copy, then added to their rows).
 *
 * Compressed masks with short windows (up to the table's attn.gemm_row_window) keep the window out of
 * the GEMMs: a block's window columns are bq + L per row of which the query sees L + 1, so the row
 * pass computes each query's L + 1 window scores and their products with v itself (the GEMMs then
 * run over the boundary columns alone and add their part); the backward's row pass also keeps the
 * window slots' P and dS of every row, from which one pass over the keys assigns dk and dv before the
 * boundary keys' parts are added.
 *
 * The register-tiled GEMM runs these shapes at ~3.5x the per-query kernels' FLOP rate on CPUs, which
 * repays the masked scores a block computes (for causal, the triangle: (bq - 1) / (2 bq) of them).
 * Where the mask hides most of the block's scores (short windows, few boundaries) the kernels are
 * faster: the path is taken only while the scores computed are at most the tuning table's
 * attn.gemm_waste per cent of the (query, key) pairs the mask allows (causal: ~106%; why the bound
 * is a device's: ops/tuning.c). Scratch: [H, bq, keys] score buffers (never T x T) and the boundary
 * copies. The boundary keys (and, in the backward, values) enter their products transposed; their GEMM
 * panels are packed once per sequence (ops_gemm_panels), each block taking its first columns, where
 * ops_gemm would pack them again for every block. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "attention.h"
#include "ops/tuning.h"

/* Each score buffer stays under 64 MiB: the block shrinks to fit, else the kernels serve the call. */
#define ATTN_GEMM_MAX_FLOATS ((int64_t)16 << 20)
#define ATTN_GEMM_MIN_BQ 16

/* The keys of one query block: queries [t0, t0 + nq) see the boundaries bnd[0 .. nbb) and the window
 * keys [kb, kb + nw); score rows of nk = nbb + nw columns, ld floats apart. With the window in the row
 * pass nw = 0, and the rows hold each query's win + 1 window slots after the boundary columns. */
typedef struct gemm_block {
    int64_t t0, nq, kb, nw, nbb, nk, ld;
} gemm_block;

/* The call's geometry: block size, window (-1: causal), the boundaries (host copy), the widest score
 * row of its blocks (floats), and whether the row pass computes each query's window keys itself
 * (row_win: compressed masks with windows up to the table's attn.gemm_row_window; the GEMMs then see
 * only boundary columns, not a block's bq + win window columns). */
typedef struct gemm_plan {
    int64_t T, row;
    int bq, win, nb, row_win;
    const int32_t *bnd;
    int32_t *owned; /* bnd when downloaded here */
} gemm_plan;

static int64_t count_below(const int32_t *a, int64_t n, int64_t x) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = (lo + hi) / 2;
        if (a[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static gemm_block block_at(const gemm_plan *pl, int64_t t0) {
    gemm_block g = {.t0 = t0, .nq = CORE_MIN((int64_t)pl->bq, pl->T - t0)};
    int64_t last = t0 + g.nq - 1; /* the block's last query */
    g.kb = pl->win < 0 ? 0 : CORE_MAX(0, t0 - pl->win);
    g.nw = pl->row_win ? 0 : last + 1 - g.kb;
    /* boundaries some query of the block sees as such: below last - win (the rest are window keys) */
    g.nbb = pl->nb && pl->win >= 0 ? count_below(pl->bnd, pl->nb, last - pl->win) : 0;
    g.nk = g.nbb + g.nw;
    g.ld = (g.nk + (pl->row_win ? pl->win + 1 : 0) + 7) / 8 * 8;
    return g;
}

/* The widest score row of the call's blocks, in floats. */
static int64_t widest_row(const gemm_plan *pl) {
    int64_t rows = 0;
    for (int64_t t0 = 0; t0 < pl->T; t0 += pl->bq) rows = CORE_MAX(rows, block_at(pl, t0).ld);
    return rows;
}

/* Whether the GEMMs' scores stay within waste % of the (query, key) pairs the mask allows. */
static int plan_pays(const gemm_plan *pl, int waste) {
    double computed = 0, allowed = 0;
    for (int64_t t0 = 0; t0 < pl->T; t0 += pl->bq) {
        gemm_block g = block_at(pl, t0);
        computed += (double)g.nq * g.nk;
    }
    for (int64_t t = 0; t < pl->T; t++) {
        int64_t near = pl->win < 0 ? t + 1 : CORE_MIN(t, (int64_t)pl->win) + 1; /* the row pass's, if row_win */
        allowed += near + (pl->nb ? count_below(pl->bnd, pl->nb, t - pl->win) : 0);
        computed += pl->row_win ? near : 0;
    }
    return computed <= waste / 100.0 * allowed;
}

/* Decides the path: *taken = 0 leaves the call to the kernels. The caller checked the arguments.
 * Only memory shrinks the block: smaller blocks waste less of a short window, but run the GEMM at a
 * lower rate (T = 512, P = 8, L = 8 at 32 queries: no faster than the kernels). */
static attamba_status plan_make(rt_ctx *ctx, const attn_mask *mask, int64_t T, int n_heads, int want, gemm_plan *pl,
                                int *taken) {
    *pl = (gemm_plan){.T = T, .bq = want ? want : ops_tune(ctx, TUNE_ATTN_GEMM_BQ)};
    pl->win = mask->mode == ATTN_CAUSAL ? -1 : (int)CORE_MIN((int64_t)mask->window, T);
    pl->row_win = mask->mode == ATTN_COMPRESSED && pl->win <= ops_tune(ctx, TUNE_ATTN_GEMM_ROW_WINDOW);
    *taken = 0;
    if (pl->bq <= 0) return ATTAMBA_OK;
    if (mask->mode == ATTN_COMPRESSED) {
        pl->nb = (int)mask->boundaries->shape[0];
        if (!(pl->bnd = mask->host)) {
            if (!(pl->bnd = pl->owned = malloc((size_t)pl->nb * sizeof *pl->owned)))
                return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "ops_attention: out of host memory");
            RT_TRY(tensor_download(mask->boundaries, pl->owned)); /* small; waits for the queue */
        }
    }
    while (n_heads * (int64_t)pl->bq * (pl->row = widest_row(pl)) > ATTN_GEMM_MAX_FLOATS)
        if ((pl->bq /= 2) < ATTN_GEMM_MIN_BQ) return ATTAMBA_OK;
    /* an explicit block is taken whatever it wastes (tests) */
    *taken = want > 0 || plan_pays(pl, ops_tune(ctx, TUNE_ATTN_GEMM_WASTE));
    return ATTAMBA_OK;
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
static tensor head_slice(const tensor *t, int64_t first, int64_t n) {
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

/* Columns [c0, c0 + n) of a view [heads, rows, cols]. */
static tensor cols(const tensor *t, int64_t c0, int64_t n) {
    tensor v = *t;
    v.offset += c0;
    v.shape[2] = n;
    return v;
}

/* C_h = alpha op(A_h) op(B_{h / grp}) + beta C_h for every query head h: A and C hold the query heads,
 * B the kv heads. One batched GEMM without grouping; with it, one per kv head, its grp query heads
 * batched against the shared B. Nothing for an empty B. */
static attamba_status heads_gemm(rt_ctx *ctx, int ta, int tb, float alpha, const tensor *A, const tensor *B,
                                 float beta, tensor *C, int grp) {
    if (B->shape[1] == 0 || B->shape[2] == 0) return ATTAMBA_OK;
    if (grp == 1) return ops_gemm(ctx, ta, tb, alpha, A, B, beta, C);
    for (int64_t kh = 0; kh < B->shape[0]; kh++) {
        tensor a = head_slice(A, kh * grp, grp), b = head_slice(B, kh, 0), c = head_slice(C, kh * grp, grp);
        RT_TRY(ops_gemm(ctx, ta, tb, alpha, &a, &b, beta, &c));
    }
    return ATTAMBA_OK;
}

/* C_h = alpha A_h op(B_{h / grp})[:, :n] for every query head h, op(B) from its panels (B: the kv
 * heads' boundary rows, packed once per sequence for all its query blocks). Nothing for n = 0. */
static attamba_status heads_panels(rt_ctx *ctx, float alpha, const tensor *A, const ops_gemm_panels *p, int64_t n,
                                   tensor *C, int grp) {
    if (n == 0) return ATTAMBA_OK;
    if (grp == 1) return ops_gemm_panels_apply(ctx, alpha, A, p, -1, (int)n, 0.0f, C);
    for (int64_t kh = 0; kh < p->b->shape[0]; kh++) {
        tensor a = head_slice(A, kh * grp, grp), c = head_slice(C, kh * grp, grp);
        RT_TRY(ops_gemm_panels_apply(ctx, alpha, &a, p, (int)kh, (int)n, 0.0f, &c));
    }
    return ATTAMBA_OK;
}

/* C_g += alpha op(A_h) op(B_h) summed over the query heads h of each kv head g (C holds the kv heads). */
static attamba_status heads_gemm_sum(rt_ctx *ctx, int ta, int tb, float alpha, const tensor *A, const tensor *B,
                                     tensor *C, int grp) {
    if (C->shape[1] == 0) return ATTAMBA_OK;
    if (grp == 1) return ops_gemm(ctx, ta, tb, alpha, A, B, 1.0f, C);
    for (int64_t h = 0; h < A->shape[0]; h++) {
        tensor a = head_slice(A, h, 0), b = head_slice(B, h, 0), c = head_slice(C, h / grp, 0);
        RT_TRY(ops_gemm(ctx, ta, tb, alpha, &a, &b, 1.0f, &c));
    }
    return ATTAMBA_OK;
}

/* Rows [r0, r0 + n) of sequence b of x [B, T, nh * dh]: a view [nh, n, dh]. */
static tensor rows_of(const tensor *x, int64_t b, int64_t r0, int64_t n, int64_t nh) {
    int64_t w = x->shape[2], dh = w / nh;
    return view3(x, (b * x->shape[1] + r0) * w, nh, n, dh, dh, w);
}

/* The first n boundary rows of sequence b of a compact copy [B, nh, nb, dh]: a view [nh, n, dh]. */
static tensor bnd_rows(const tensor *xc, int64_t b, int64_t n) {
    int64_t nh = xc->shape[1], nb = xc->shape[2], dh = xc->shape[3];
    return view3(xc, b * nh * nb * dh, nh, n, dh, nb * dh, dh);
}

/* The panels of sequence b's boundary rows in each of the first n compact copies xc (those of the
 * previous sequence freed); rows[i] holds the view that p[i] reads. */
static attamba_status seq_panels(rt_ctx *ctx, const gemm_plan *pl, const tensor *xc, int n, int64_t b, tensor *rows,
                                 ops_gemm_panels *p) {
    for (int i = 0; i < n; i++) {
        ops_gemm_panels_free(&p[i]);
        rows[i] = bnd_rows(&xc[i], b, pl->nb);
        if (pl->nb) RT_TRY(ops_gemm_panels_make(ctx, 1, &rows[i], pl->bq, &p[i]));
    }
    return ATTAMBA_OK;
}

/* A block's score rows [H, nq, nk] in a scratch: all of them, and their boundary and window columns. */
typedef struct block_scores {
    tensor all, bnd, win;
} block_scores;

static block_scores scores(const tensor *scratch, int64_t H, const gemm_block *g) {
    block_scores r = {.all = view3(scratch, 0, H, g->nq, g->nk, g->nq * g->ld, g->ld)};
    r.bnd = cols(&r.all, 0, g->nbb);
    r.win = cols(&r.all, g->nbb, g->nw);
    return r;
}

attamba_status attn_bnd_move(rt_ctx *ctx, const attn_mask *mask, tensor *xc, const tensor *x, int to) {
    int64_t B = x->shape[0], T = x->shape[1], nh = xc->shape[1], nb = xc->shape[2], dh = xc->shape[3];
    const char *name = to ? "attn_rows_gather" : "attn_rows_scatter_add";
    cl_kernel k;
    RT_TRY(rt_kernel(ctx, "attention_rows", "", name, &k));
    const tensor *bt = mask->boundaries;
    rt_arg args[] = {RT_MEM(xc->buf->mem), RT_MEM(x->buf->mem), RT_I32(x->offset), RT_MEM(bt->buf->mem),
                     RT_I32(bt->offset), RT_I32(nb), RT_I32(T), RT_I32(nh), RT_I32(dh), RT_I32(B * nh)};
    return ops_launch_grid(ctx, k, name, nb, (dh + 7) / 8, B * nh, (int)CORE_LEN(args), args);
}

/* Compact copies [B, nh, nb, dh] of the boundary rows of each x (NULL x: only allocated). */
static attamba_status bnd_copies(rt_ctx *ctx, const attn_mask *mask, const gemm_plan *pl, const tensor *like,
                                 int64_t nh, int n, const tensor *const *x, tensor *out) {
    int64_t shape[4] = {like->shape[0], nh, pl->nb, like->shape[2] / nh};
    for (int i = 0; i < n; i++) {
        RT_TRY(tensor_scratch(ctx, &out[i], TENSOR_F32, 4, shape));
        RT_TRY(x[i] ? attn_bnd_move(ctx, mask, &out[i], x[i], 1) : tensor_fill(&out[i], 0.0));
    }
    return ATTAMBA_OK;
}

/* The row pass over a block's scores (and, for the backward, dP). */
static attamba_status rows_pass(rt_ctx *ctx, cl_kernel kern, const char *name, const tensor *sc, const tensor *dp,
                                const gemm_block *g, int n_heads, const gemm_plan *pl, const attn_mask *mask) {
    const tensor *bt = g->nbb ? mask->boundaries : sc; /* never read without boundary columns */
    rt_arg tail[] = {RT_I32(g->ld), RT_I32(g->nq), RT_I32(n_heads), RT_I32(g->t0 - g->kb), RT_I32(pl->win),
                     RT_I32(g->t0), RT_I32(g->nbb), RT_MEM(bt->buf->mem), RT_I32(g->nbb ? bt->offset : 0)};
    rt_arg args[12];
    int n = 0;
    args[n++] = RT_MEM(sc->buf->mem);
    if (dp) args[n++] = RT_MEM(dp->buf->mem);
    args[n++] = RT_I32(sc->offset);
    for (size_t i = 0; i < CORE_LEN(tail); i++) args[n++] = tail[i];
    return ops_launch_grid(ctx, kern, name, g->nq, n_heads, 1, n, args);
}

static attamba_status score_scratch(rt_ctx *ctx, const gemm_plan *pl, int n_heads, tensor *out) {
    return tensor_scratch(ctx, out, TENSOR_F32, 1, (int64_t[]){(int64_t)n_heads * pl->bq * pl->row});
}

/* What the forward and the backward share: the plan, the head grouping, the score scale and the row
 * kernel (only when taken; its attn_rows_window_ variant when the plan has the window in the row pass). */
typedef struct gemm_call {
    gemm_plan pl;
    int grp;
    float scale;
    cl_kernel rows;
} gemm_call;

static attamba_status call_begin(rt_ctx *ctx, const attn_mask *mask, const tensor *q, int n_heads, int n_kv_heads,
                                 int dh, int want, const char *rows_kernel, gemm_call *c, int *taken) {
    *c = (gemm_call){.grp = n_heads / n_kv_heads, .scale = (float)(1.0 / sqrt((double)dh))};
    RT_TRY(plan_make(ctx, mask, q->shape[1], n_heads, want, &c->pl, taken));
    char name[64];
    snprintf(name, sizeof name, "attn_rows_%s%s", c->pl.row_win ? "window_" : "", rows_kernel);
    return *taken ? rt_kernel(ctx, "attention_rows", "", name, &c->rows) : ATTAMBA_OK;
}

/* The row pass with the window in it (plan row_win) over block g of sequence b: the forward (dp NULL)
 * assigns the window's part of out (y), the backward dq's (y) and the window slots pw, dsw. Both
 * kernels take the same arguments (the forward ignores dp, dout and the slots: sc stands in). */
typedef struct window_io {
    const tensor *q, *k, *v, *y, *dout, *pw, *dsw;
} window_io;

static attamba_status window_rows(rt_ctx *ctx, const gemm_call *c, const gemm_block *g, int64_t b, int n_heads,
                                  const attn_mask *mask, const tensor *sc, const tensor *dp, const window_io *io) {
    int64_t T = c->pl.T, qs = io->q->shape[2], ks = io->k->shape[2], dh = qs / n_heads;
    int64_t wo = b * n_heads * T * (c->pl.win + 1); /* sequence b's slots */
    const tensor *bt = g->nbb ? mask->boundaries : sc; /* never read without boundary columns */
    const tensor *pw = dp ? io->pw : sc, *dsw = dp ? io->dsw : sc, *dout = dp ? io->dout : io->q;
    rt_arg args[] = {RT_MEM(sc->buf->mem), RT_MEM((dp ? dp : sc)->buf->mem), RT_I32(sc->offset),
                     RT_I32(g->ld), RT_I32(g->nq), RT_I32(n_heads), RT_I32(g->t0), RT_I32(g->nbb),
                     RT_MEM(bt->buf->mem), RT_I32(g->nbb ? bt->offset : 0), RT_I32(c->pl.win), RT_F32(c->scale),
                     RT_I32(c->grp), RT_I32(dh), RT_MEM(io->q->buf->mem), RT_I32(io->q->offset + b * T * qs),
                     RT_MEM(io->k->buf->mem), RT_I32(io->k->offset + b * T * ks), RT_MEM(io->v->buf->mem),
                     RT_I32(io->v->offset + b * T * ks), RT_MEM(dout->buf->mem), RT_I32(dout->offset + b * T * qs),
                     RT_MEM(io->y->buf->mem), RT_I32(io->y->offset + b * T * qs), RT_MEM(pw->buf->mem),
                     RT_I32(pw->offset + wo), RT_MEM(dsw->buf->mem), RT_I32(dsw->offset + wo), RT_I32(T)};
    return ops_launch_grid(ctx, c->rows, dp ? "attn_rows_window_dsoftmax" : "attn_rows_window_softmax", g->nq,
                           n_heads, 1, (int)CORE_LEN(args), args);
}

/* The window keys' dk and dv (assigned) from the slots of every row (plan row_win). */
static attamba_status window_dkv(rt_ctx *ctx, const gemm_call *c, int n_heads, const tensor *pw, const tensor *dsw,
                                 const tensor *q, const tensor *dout, tensor *dk, tensor *dv) {
    int64_t B = q->shape[0], T = q->shape[1], dh = q->shape[2] / n_heads, hkv = n_heads / c->grp;
    cl_kernel k;
    RT_TRY(rt_kernel(ctx, "attention_rows", "", "attn_window_dkv", &k));
    rt_arg args[] = {RT_MEM(pw->buf->mem),   RT_I32(pw->offset),   RT_MEM(dsw->buf->mem), RT_I32(dsw->offset),
                     RT_MEM(q->buf->mem),    RT_I32(q->offset),
                     RT_MEM(dout->buf->mem), RT_I32(dout->offset), RT_MEM(dk->buf->mem), RT_I32(dk->offset),
                     RT_MEM(dv->buf->mem), RT_I32(dv->offset), RT_I32(T), RT_I32(n_heads), RT_I32(c->grp),
                     RT_I32(dh), RT_I32(c->pl.win), RT_F32(c->scale), RT_I32(B * hkv)};
    return ops_launch_grid(ctx, k, "attn_window_dkv", T, (dh + 7) / 8, B * hkv, (int)CORE_LEN(args), args);
}

attamba_status attn_gemm_prefill(rt_ctx *ctx, const tensor *q, const tensor *k, const tensor *v, int n_heads,
                                 int n_kv_heads, int dh, const attn_mask *mask, int want, tensor *out, int *taken) {
    int64_t B = q->shape[0], T = q->shape[1];
    gemm_call c;
    tensor sc = {0}, kv[2] = {{0}}, kb_all = {0};
    ops_gemm_panels kp = {0}; /* the boundary keys' panels, per sequence */
    attamba_status s = call_begin(ctx, mask, q, n_heads, n_kv_heads, dh, want, "softmax", &c, taken);
    if (!s && *taken) s = score_scratch(ctx, &c.pl, n_heads, &sc);
    if (!s && *taken && c.pl.nb) s = bnd_copies(ctx, mask, &c.pl, k, n_kv_heads, 2, (const tensor *[]){k, v}, kv);
    for (int64_t b = 0; b < B && !s && *taken; b++) {
        s = seq_panels(ctx, &c.pl, kv, 1, b, &kb_all, &kp);
        for (int64_t t0 = 0; t0 < T && !s; t0 += c.pl.bq) {
            gemm_block g = block_at(&c.pl, t0);
            tensor qb = rows_of(q, b, t0, g.nq, n_heads), ob = rows_of(out, b, t0, g.nq, n_heads);
            tensor kw = rows_of(k, b, g.kb, g.nw, n_kv_heads), vw = rows_of(v, b, g.kb, g.nw, n_kv_heads);
            tensor vc = bnd_rows(&kv[1], b, g.nbb);
            block_scores p = scores(&sc, n_heads, &g);
            s = heads_panels(ctx, c.scale, &qb, &kp, g.nbb, &p.bnd, c.grp);
            if (c.pl.row_win) { /* the window's part of out from the row pass, the boundaries' added */
                window_io io = {.q = q, .k = k, .v = v, .y = out};
                if (!s) s = window_rows(ctx, &c, &g, b, n_heads, mask, &p.all, NULL, &io);
                if (!s) s = heads_gemm(ctx, 0, 0, 1.0f, &p.bnd, &vc, 1.0f, &ob, c.grp);
                continue;
            }
            if (!s) s = heads_gemm(ctx, 0, 1, c.scale, &qb, &kw, 0.0f, &p.win, c.grp);
            if (!s) s = rows_pass(ctx, c.rows, "attn_rows_softmax", &p.all, NULL, &g, n_heads, &c.pl, mask);
            if (!s) s = heads_gemm(ctx, 0, 0, 1.0f, &p.bnd, &vc, 0.0f, &ob, c.grp);
            if (!s) s = heads_gemm(ctx, 0, 0, 1.0f, &p.win, &vw, g.nbb ? 1.0f : 0.0f, &ob, c.grp);
        }
    }
    /* the queue keeps the scratch alive until its kernels have run */
    tensor_free(&sc);
    ops_gemm_panels_free(&kp);
    for (int i = 0; i < 2; i++) tensor_free(&kv[i]);
    free(c.pl.owned);
    return s;
}

attamba_status attn_gemm_backward(rt_ctx *ctx, const tensor *q, const tensor *k, const tensor *v, int n_heads,
                                  int n_kv_heads, int dh, const attn_mask *mask, int want, const tensor *dout,
                                  tensor *dq, tensor *dk, tensor *dv, int *taken) {
    int64_t B = q->shape[0], T = q->shape[1];
    gemm_call c;
    /* kv[0..1]: the boundary rows of k and v; kv[2..3]: their gradients, added to dk, dv at the end;
     * pw, dsw: the window slots' P and dS of every row (row_win) */
    tensor sc = {0}, gsc = {0}, kv[4] = {{0}}, pw = {0}, dsw = {0}, kv_all[2] = {{0}};
    ops_gemm_panels kvp[2] = {{0}}; /* the boundary keys' and values' panels, per sequence */
    attamba_status s = call_begin(ctx, mask, q, n_heads, n_kv_heads, dh, want, "dsoftmax", &c, taken);
    int row_win = *taken && c.pl.row_win;
    /* dk and dv gather from every block that sees their key: zero, then accumulate (row_win: the
     * window pass assigns them after the blocks, then the boundary parts are added). */
    if (!s && *taken && !row_win) s = tensor_fill(dk, 0.0);
    if (!s && *taken && !row_win) s = tensor_fill(dv, 0.0);
    int64_t nslots = row_win ? B * n_heads * T * (c.pl.win + 1) : 0;
    if (!s && row_win) s = tensor_scratch(ctx, &pw, TENSOR_F32, 1, &nslots);
    if (!s && row_win) s = tensor_scratch(ctx, &dsw, TENSOR_F32, 1, &nslots);
    if (!s && *taken) s = score_scratch(ctx, &c.pl, n_heads, &sc);
    if (!s && *taken) s = score_scratch(ctx, &c.pl, n_heads, &gsc);
    if (!s && *taken && c.pl.nb)
        s = bnd_copies(ctx, mask, &c.pl, k, n_kv_heads, 4, (const tensor *[]){k, v, NULL, NULL}, kv);
    for (int64_t b = 0; b < B && !s && *taken; b++) {
        s = seq_panels(ctx, &c.pl, kv, 2, b, kv_all, kvp);
        for (int64_t t0 = 0; t0 < T && !s; t0 += c.pl.bq) {
            gemm_block g = block_at(&c.pl, t0);
            tensor qb = rows_of(q, b, t0, g.nq, n_heads), gb = rows_of(dout, b, t0, g.nq, n_heads);
            tensor dqb = rows_of(dq, b, t0, g.nq, n_heads);
            tensor kw = rows_of(k, b, g.kb, g.nw, n_kv_heads), vw = rows_of(v, b, g.kb, g.nw, n_kv_heads);
            tensor dkw = rows_of(dk, b, g.kb, g.nw, n_kv_heads), dvw = rows_of(dv, b, g.kb, g.nw, n_kv_heads);
            tensor kc = bnd_rows(&kv[0], b, g.nbb);
            tensor dkc = bnd_rows(&kv[2], b, g.nbb), dvc = bnd_rows(&kv[3], b, g.nbb);
            block_scores p = scores(&sc, n_heads, &g), ds = scores(&gsc, n_heads, &g);
            s = heads_panels(ctx, c.scale, &qb, &kvp[0], g.nbb, &p.bnd, c.grp);
            if (row_win) { /* the window's part of dq and its slots from the row pass, the boundaries' GEMMs */
                window_io io = {.q = q, .k = k, .v = v, .y = dq, .dout = dout, .pw = &pw, .dsw = &dsw};
                if (!s) s = heads_panels(ctx, 1.0f, &gb, &kvp[1], g.nbb, &ds.bnd, c.grp);
                if (!s) s = window_rows(ctx, &c, &g, b, n_heads, mask, &p.all, &ds.all, &io);
                if (!s) s = heads_gemm(ctx, 0, 0, c.scale, &ds.bnd, &kc, 1.0f, &dqb, c.grp);
                if (!s) s = heads_gemm_sum(ctx, 1, 0, c.scale, &ds.bnd, &qb, &dkc, c.grp);
                if (!s) s = heads_gemm_sum(ctx, 1, 0, 1.0f, &p.bnd, &gb, &dvc, c.grp);
                continue;
            }
            if (!s) s = heads_gemm(ctx, 0, 1, c.scale, &qb, &kw, 0.0f, &p.win, c.grp);
            if (!s) s = heads_panels(ctx, 1.0f, &gb, &kvp[1], g.nbb, &ds.bnd, c.grp);
            if (!s) s = heads_gemm(ctx, 0, 1, 1.0f, &gb, &vw, 0.0f, &ds.win, c.grp);
            if (!s) s = rows_pass(ctx, c.rows, "attn_rows_dsoftmax", &p.all, &ds.all, &g, n_heads, &c.pl, mask);
            if (!s) s = heads_gemm(ctx, 0, 0, c.scale, &ds.bnd, &kc, 0.0f, &dqb, c.grp);
            if (!s) s = heads_gemm(ctx, 0, 0, c.scale, &ds.win, &kw, g.nbb ? 1.0f : 0.0f, &dqb, c.grp);
            if (!s) s = heads_gemm_sum(ctx, 1, 0, c.scale, &ds.bnd, &qb, &dkc, c.grp);
            if (!s) s = heads_gemm_sum(ctx, 1, 0, c.scale, &ds.win, &qb, &dkw, c.grp);
            if (!s) s = heads_gemm_sum(ctx, 1, 0, 1.0f, &p.bnd, &gb, &dvc, c.grp);
            if (!s) s = heads_gemm_sum(ctx, 1, 0, 1.0f, &p.win, &gb, &dvw, c.grp);
        }
    }
    if (!s && row_win) s = window_dkv(ctx, &c, n_heads, &pw, &dsw, q, dout, dk, dv);
    if (!s && *taken && c.pl.nb) s = attn_bnd_move(ctx, mask, &kv[2], dk, 0);
    if (!s && *taken && c.pl.nb) s = attn_bnd_move(ctx, mask, &kv[3], dv, 0);
    tensor_free(&sc);
    tensor_free(&gsc);
    tensor_free(&pw);
    tensor_free(&dsw);
    for (int i = 0; i < 2; i++) ops_gemm_panels_free(&kvp[i]);
    for (int i = 0; i < 4; i++) tensor_free(&kv[i]);
    free(c.pl.owned);
    return s;
}
