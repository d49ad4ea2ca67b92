/* The layer program (SPEC 3): the one place that says which ops an Attamba or transformer layer
 * runs, in what order. Prefill, decode and the trainer's forward all run model_layer_forward; they
 * differ only in the op variants picked at three points (the SSMs' conv, scan and gated norm: over
 * the sequence, or one fused step from the cached state; the cache: filled by a prefill, appended
 * to by decode; attention: over the sequence or over the cache) and in whether activations are kept
 * per layer (training). Projections that share an input run together (linear_shared): one launch
 * in decode, batched pairs otherwise. */
#include <stdlib.h>
#include <string.h>

#include "kv_cache.h"
#include "model.h"
#include "ops/attention.h"
#include "ops/layer.h"
#include "ops/ops.h"
#include "ops/ssm.h"

/* ---- activations ---- */

static attamba_status take3(tensor_arena *ar, tensor *t, int64_t B, int64_t T, int64_t w) {
    return tensor_arena_take(ar, t, TENSOR_F32, 3, (int64_t[]){B, T, w});
}

static attamba_status ssm_acts_take(const model_config *c, tensor_arena *ar, int64_t B, int64_t T, ssm_acts *a) {
    int64_t E = c->ssm_inner, GN = (int64_t)c->ssm_groups * c->ssm_state, nh = c->ssm_heads;
    RT_TRY(take3(ar, &a->z, B, T, E));
    RT_TRY(take3(ar, &a->xbcdt, B, T, E + 2 * GN + nh));
    RT_TRY(tensor_columns(&a->xbcdt, 0, E + 2 * GN, &a->xbc_in));
    RT_TRY(tensor_columns(&a->xbcdt, E + 2 * GN, nh, &a->dt));
    if (c->ssm_conv > 0) RT_TRY(take3(ar, &a->xbc, B, T, E + 2 * GN));
    else if (a->xbc_in.buf) RT_TRY(tensor_columns(&a->xbc_in, 0, E + 2 * GN, &a->xbc)); /* SPEC 3.1: no conv, no SiLU */
    const tensor *pre[2] = {&a->xbc_in, &a->xbc};
    tensor *parts[2][3] = {{&a->xs_in, &a->b_in, &a->c_in}, {&a->xs, &a->bm, &a->cm}};
    for (int k = 0; k < 2; k++) {
        RT_TRY(tensor_columns(pre[k], 0, E, parts[k][0]));
        RT_TRY(tensor_columns(pre[k], E, GN, parts[k][1]));
        RT_TRY(tensor_columns(pre[k], E + GN, GN, parts[k][2]));
    }
    RT_TRY(take3(ar, &a->y, B, T, E));
    return take3(ar, &a->g, B, T, E);
}

static void ssm_acts_release(ssm_acts *a) {
    tensor *all[] = {&a->z,   &a->xbcdt, &a->xbc_in, &a->xs_in, &a->b_in, &a->c_in, &a->dt,
                     &a->xbc, &a->xs,    &a->bm,     &a->cm,    &a->y,    &a->g};
    for (size_t i = 0; i < CORE_LEN(all); i++) tensor_free(all[i]);
}

attamba_status model_acts_take(const model_config *c, tensor_arena *ar, int64_t B, int64_t T, layer_acts *a) {
    int64_t d = c->dim, qw = (int64_t)c->n_heads * c->head_dim, kvw = (int64_t)c->n_kv_heads * c->head_dim,
            F = c->ffn_dim;
    struct { tensor *t; int64_t w; } all[] = {{&a->x, d}, {&a->q, qw}, {&a->k, kvw}, {&a->v, kvw}, {&a->o, qw},
                                              {&a->y, d}, {&a->f1, F}, {&a->f3, F},   {&a->hid, F}};
    for (size_t i = 0; i < CORE_LEN(all); i++) RT_TRY(take3(ar, all[i].t, B, T, all[i].w));
    for (int i = 0; i < 2 && c->kind == MODEL_ATTAMBA; i++) RT_TRY(ssm_acts_take(c, ar, B, T, &a->ssm[i]));
    return ATTAMBA_OK;
}

void model_acts_release(layer_acts *a) {
    tensor *all[] = {&a->x, &a->q, &a->k, &a->v, &a->o, &a->y, &a->f1, &a->f3, &a->hid, &a->bpos, &a->seg};
    for (size_t i = 0; i < CORE_LEN(all); i++) tensor_free(all[i]);
    for (int i = 0; i < 2; i++) ssm_acts_release(&a->ssm[i]);
}

/* ---- boundaries ---- */

/* Elements [off, off + n) of contiguous t as a 1-D view. */
static attamba_status span(const tensor *t, int64_t off, int64_t n, tensor *out) {
    tensor flat = {0};
    RT_TRY(tensor_reshape(t, 1, (int64_t[]){tensor_numel(t)}, &flat));
    attamba_status s = tensor_slice(&flat, 0, off, n, out);
    tensor_free(&flat);
    return s;
}

/* Views of layer l's boundaries [nb] and segment starts [T]. */
static attamba_status plan_layer(const boundary_plan *p, int L, int l, tensor *bpos, tensor *seg) {
    tensor_free(bpos);
    tensor_free(seg);
    RT_TRY(span(&p->all, l * p->T, p->nb[l], bpos));
    return span(&p->all, (L + l) * p->T, p->T, seg);
}

/* Row r of the decode step table (i32 [2 + 2L, B]) as a [B] view. */
static attamba_status step_row(const tensor *step, int64_t r, tensor *out) {
    return span(step, r * step->shape[1], step->shape[1], out);
}

static int same_spec(const boundary_spec *a, const boundary_spec *b) {
    return a->strategy == b->strategy && a->chunk == b->chunk && a->seed == b->seed && a->positions == b->positions &&
           a->n_positions == b->n_positions;
}

attamba_status boundary_plan_take(const model_config *c, tensor_arena *ar, int64_t T, boundary_plan *p) {
    p->T = T;
    p->spec.chunk = 0;
    if (c->kind != MODEL_ATTAMBA) return ATTAMBA_OK;
    free(p->host);
    p->host = calloc((size_t)(2 * c->n_layers * T), sizeof *p->host);
    if (!p->nb) p->nb = calloc((size_t)c->n_layers, sizeof *p->nb);
    if (!p->longest) p->longest = calloc((size_t)c->n_layers, sizeof *p->longest);
    if (!p->nb || !p->longest || !p->host) return rt_fail(ar->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    return tensor_arena_take(ar, &p->all, TENSOR_I32, 3, (int64_t[]){2, c->n_layers, T});
}

void boundary_plan_release(boundary_plan *p) {
    tensor_free(&p->all);
    free(p->host);
    free(p->nb);
    free(p->longest);
    memset(p, 0, sizeof *p);
}

attamba_status boundary_plan_update(model *m, boundary_plan *p) {
    const model_config *c = &m->cfg;
    boundary_spec b = model_config_boundaries(c);
    if (c->kind != MODEL_ATTAMBA || same_spec(&b, &p->spec)) return ATTAMBA_OK;
    int L = c->n_layers;
    int64_t T = p->T, *pos = malloc((size_t)T * sizeof *pos);
    int32_t *host = p->host;
    attamba_status s = pos ? ATTAMBA_OK : rt_fail(m->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    for (int l = 0; l < L && !s; l++) {
        int64_t nb = boundary_positions(&b, l, L, T, pos, T);
        /* what attention relies on (ops_attention_prefill checks the same of untrusted lists) */
        int ok = nb >= 1 && pos[0] == 0;
        for (int64_t i = 1; i < nb && ok; i++) ok = pos[i] > pos[i - 1] && pos[i] < T;
        if (!ok) {
            s = rt_fail(m->ctx, ATTAMBA_ERR_INTERNAL, "boundaries of layer %d below %lld are not sorted from 0", l,
                        (long long)T);
            break;
        }
        p->nb[l] = nb;
        p->longest[l] = boundary_longest_segment(pos, nb, T);
        for (int64_t i = 0; i < nb; i++) host[(int64_t)l * T + i] = (int32_t)pos[i];
        boundary_segment_starts(pos, nb, T, host + (int64_t)(L + l) * T);
    }
    if (!s) s = tensor_upload(&p->all, host);
    if (!s) p->spec = b;
    free(pos);
    return s;
}

attn_mask boundary_plan_mask(const model_config *c, const boundary_plan *p, int l, const tensor *bpos) {
    attn_mask mask = {ATTN_CAUSAL, c->window, NULL, 1, NULL};
    if (c->kind == MODEL_ATTAMBA && !c->pseudo) {
        mask.mode = ATTN_COMPRESSED;
        mask.boundaries = bpos;
        mask.host = p->host + (int64_t)l * p->T;
    } else if (c->kind == MODEL_TRANSFORMER_SWA) {
        mask.mode = ATTN_SLIDING;
    }
    return mask;
}

/* ---- the layer ---- */

/* t as a [rows, cols] view (its leading dims merged); t must be contiguous or a row-block view. */
static int rows_cols(const tensor *t, int64_t *rows, int64_t *cols, int64_t *ld) {
    int n = t->ndim;
    *cols = t->shape[n - 1];
    *ld = n >= 2 ? t->stride[n - 2] : *cols;
    *rows = 1;
    for (int d = 0; d < n - 1; d++) *rows *= t->shape[d];
    if (t->stride[n - 1] != 1) return 0;
    for (int d = 0; d + 2 < n; d++)
        if (t->shape[d] > 1 && t->stride[d] != t->shape[d + 1] * t->stride[d + 1]) return 0;
    return 1;
}

/* t0 and t1 (the same shape, one buffer, t1 after t0) as one [2, rows, cols] view whose batch
 * stride is the distance between them; t0 alone (2-D, shared by both) when t1 is t0. */
static int pair_view(const tensor *t0, const tensor *t1, tensor *out) {
    int64_t r0, c0, l0, r1, c1, l1;
    if (!rows_cols(t0, &r0, &c0, &l0) || !rows_cols(t1, &r1, &c1, &l1)) return 0;
    if (r0 != r1 || c0 != c1 || l0 != l1 || t0->dtype != t1->dtype || t0->buf != t1->buf) return 0;
    int64_t stride = t1->offset - t0->offset;
    if (t1 != t0 && stride < r0 * l0) return 0; /* overlapping (or t1 first): no pair */
    *out = *t0;
    out->buf->refs++;
    int shared = t1 == t0;
    out->ndim = shared ? 2 : 3;
    int64_t shape[3] = {2, r0, c0}, strides[3] = {stride, l0, 1};
    for (int d = 0; d < out->ndim; d++) {
        out->shape[d] = shape[d + shared];
        out->stride[d] = strides[d + shared];
    }
    return 1;
}

/* y_i = x_i W_i^T (+ y_i when accumulate) for i = 0, 1: one batched GEMM launch when the pairs
 * share buffers (weights of one flat buffer, activations of one arena), else two. */
static attamba_status linear_pair(model *m, const tensor *x0, const tensor *x1, const tensor *W0, const tensor *W1,
                                  int accumulate, tensor *y0, tensor *y1) {
    tensor x = {0}, W = {0}, y = {0};
    int paired = pair_view(x0, x1, &x) && pair_view(W0, W1, &W) && pair_view(y0, y1, &y) && y.ndim == 3;
    attamba_status s = paired ? ops_gemm(m->ctx, 0, 1, 1.0f, &x, &W, accumulate ? 1.0f : 0.0f, &y) : ATTAMBA_OK;
    tensor_free(&x);
    tensor_free(&W);
    tensor_free(&y);
    if (paired || s) return s;
    RT_TRY(model_linear(m, x0, W0, accumulate, y0));
    return model_linear(m, x1, W1, accumulate, y1);
}

/* A [B, 1, C] tensor (or a column view of one) as [B, C], for the decode-step ops. */
static attamba_status rows2(const tensor *t, tensor *out) {
    RT_TRY(tensor_slice(t, 1, 0, 1, out));
    out->ndim = 2;
    out->shape[1] = t->shape[2];
    out->stride[1] = t->stride[2];
    return ATTAMBA_OK;
}

/* The conv inputs a decode step continues from: rows T-w+1 .. T-1 of src [1, T, C] that lie in the
 * last segment (from seg_first) go to their slots p % w of the ring dst [1, w, C]. */
static attamba_status conv_tail(const tensor *src, const tensor *dst, int64_t seg_first) {
    int64_t T = src->shape[1], W = dst->shape[1];
    for (int64_t p = CORE_MAX(seg_first, T - W + 1); p < T; p++) {
        tensor d = {0}, sr = {0};
        attamba_status s = tensor_slice(dst, 1, p % W, 1, &d);
        if (!s) s = tensor_slice(src, 1, p, 1, &sr);
        if (!s) s = tensor_copy(&d, &sr);
        tensor_free(&d);
        tensor_free(&sr);
        RT_TRY(s);
    }
    return ATTAMBA_OK;
}

/* y_i = rmsnorm(h) W_i^T for projections sharing their input (the norm into x, and into x2 too unless
 * NULL): in decode (a few rows) one launch for all, the norm included (ops_gemm_group; x, x2 written only
 * when keep_x: what training's backward or a residual reads); otherwise the norm, then consecutive twins
 * (K's and V's, W1 and W3) as one batched GEMM each. */
static attamba_status linear_shared(model *m, const tensor *h, const tensor *gain, tensor *x, tensor *x2, int keep_x,
                                    int n, const tensor *const *W, tensor *const *y) {
    if (tensor_numel(h) / h->shape[h->ndim - 1] < ops_dot_max_rows(m->ctx) && n <= OPS_GEMV_MAX) {
        ops_gemv_norm norm = {gain, m->cfg.norm_eps, x, keep_x, x2};
        return ops_gemm_group(m->ctx, h, &norm, n, W, y, NULL);
    }
    RT_TRY(ops_rmsnorm(m->ctx, h, gain, m->cfg.norm_eps, x));
    if (x2) RT_TRY(tensor_copy(x2, x));
    for (int i = 0; i < n; i++) {
        int twins = i + 1 < n && W[i]->shape[0] == W[i + 1]->shape[0];
        if (twins) RT_TRY(linear_pair(m, x, x, W[i], W[i + 1], 0, y[i], y[i + 1]));
        else RT_TRY(model_linear(m, x, W[i], 0, y[i]));
        i += twins;
    }
    return ATTAMBA_OK;
}

/* The conv and scan of SSM i over the whole sequence (prefill, training), from segment starts; a
 * prefill into a cache leaves the conv window and the state there for the decode steps to come. */
static attamba_status ssm_scan_sequence(model *m, int l, int i, const tensor *seg, ssm_acts *a, const layer_mode *md) {
    const model_config *c = &m->cfg;
    const ssm_weights *w = &m->layers[l].ssm[i];
    ssm_tail tail;
    memset(&tail, 0, sizeof tail);
    if (md->cache) RT_TRY(kv_cache_ssm_tail(md->cache, md->b, l, i, a->z.shape[1], &tail));
    attamba_status s = md->cache && w->conv ? conv_tail(&a->xbc_in, &tail.conv, tail.seg_first) : ATTAMBA_OK;
    if (!s && w->conv) s = ops_conv1d(m->ctx, &a->xbc_in, w->conv, seg, 1, &a->xbc);
    if (!s)
        s = ops_ssm_scan_with(m->ctx, &(ops_ssm_opts){.longest_segment = md->plan->longest[l]}, &a->xs, &a->bm, &a->cm,
                              &a->dt, w->dt_bias, w->A_log, w->D, seg, c->ssm_groups, &a->y,
                              md->cache ? &tail.state : NULL);
    if (!s) s = ops_gated_rmsnorm(m->ctx, &a->y, &a->z, w->norm, c->norm_eps, &a->g);
    ssm_tail_free(&tail);
    return s;
}

/* Decode: both SSMs' conv window, state step and gated norm for one token per sequence, in one
 * launch (ops_ssm_decode; the cache keeps K's and V's states in one allocation); where the device
 * takes it, the out_proj, RoPE and cache append in the same launch (ops_ssm_decode_append: *appended). */
static attamba_status ssm_step_both(model *m, int l, layer_acts *la, const tensor *seg_first, const tensor *store,
                                    const layer_mode *md, int *appended) {
    const model_config *c = &m->cfg;
    kv_layer *C = &md->cache->layers[l];
    ssm_acts *a = la->ssm;
    const ssm_weights *w = m->layers[l].ssm;
    tensor v[2][3], q = {0}, k = {0}, vv = {0};
    ops_ssm_decode_io io[2];
    memset(v, 0, sizeof v);
    attamba_status s = ATTAMBA_OK;
    for (int i = 0; i < 2 && !s; i++) {
        s = rows2(&a[i].xbcdt, &v[i][0]);
        if (!s) s = rows2(&a[i].z, &v[i][1]);
        if (!s) s = rows2(&a[i].g, &v[i][2]);
        io[i] = (ops_ssm_decode_io){&v[i][0], &v[i][1], w[i].conv, w[i].dt_bias, w[i].A_log, w[i].D, w[i].norm,
                                    &C->conv[i], &C->state[i], &v[i][2]};
    }
    if (!s) s = rows2(&la->q, &q);
    if (!s) s = rows2(&la->k, &k);
    if (!s) s = rows2(&la->v, &vv);
    ops_kv_step kv = {{w[0].out_proj, w[1].out_proj}, &q, &k, &vv, c->n_heads, c->n_kv_heads, c->rope_theta, store,
                      &C->kr, &C->vr, &C->kb, &C->vb, &C->bpos, &C->nb};
    if (!s) s = ops_ssm_decode_append(m->ctx, io, &kv, md->pos, seg_first, c->ssm_groups, c->norm_eps, appended);
    if (!s && !*appended) s = ops_ssm_decode(m->ctx, 2, io, md->pos, seg_first, c->ssm_groups, c->norm_eps);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++) tensor_free(&v[i][j]);
    tensor_free(&q);
    tensor_free(&k);
    tensor_free(&vv);
    return s;
}

/* y0 = y1 = x: one strided copy (x seen twice, batch stride 0) where y0 and y1 pair up, else two. */
static attamba_status copy_twice(const tensor *x, tensor *y0, tensor *y1) {
    tensor y = {0};
    int64_t r, c, l;
    attamba_status s;
    if (pair_view(y0, y1, &y) && y.ndim == 3 && rows_cols(x, &r, &c, &l) && r == y.shape[1] && c == y.shape[2]) {
        tensor xx = *x; /* a view without a reference of its own */
        xx.ndim = 3;
        xx.shape[0] = 2, xx.shape[1] = r, xx.shape[2] = c;
        xx.stride[0] = 0, xx.stride[1] = l, xx.stride[2] = 1;
        s = tensor_copy(&y, &xx);
    } else {
        s = tensor_copy(y0, x);
        if (!s) s = tensor_copy(y1, x);
    }
    tensor_free(&y);
    return s;
}

/* k = x + SSM_K(x), v = x + SSM_V(x) after their in_proj (done with q's): conv (+SiLU), scan, gated
 * norm, out_proj; the two SSMs run side by side (one launch for both where the buffers allow). Decoding,
 * k and v already hold x (written with the in_proj), and *appended says whether the step's RoPE and
 * cache append came with the SSMs (ssm_step_both). */
static attamba_status ssm_forward(model *m, int l, layer_acts *a, const tensor *seg_first, const tensor *store,
                                  const layer_mode *md, int *appended) {
    const ssm_weights *w = m->layers[l].ssm;
    ssm_acts *s = a->ssm;
    *appended = 0;
    if (md->decode) RT_TRY(ssm_step_both(m, l, a, seg_first, store, md, appended));
    else
        for (int i = 0; i < 2; i++) RT_TRY(ssm_scan_sequence(m, l, i, &a->seg, &s[i], md));
    if (*appended) return ATTAMBA_OK;
    if (!md->decode) RT_TRY(copy_twice(&a->x, &a->k, &a->v));
    return linear_pair(m, &s[0].g, &s[1].g, w[0].out_proj, w[1].out_proj, 1, &a->k, &a->v);
}

/* dst = src + x W^T; in place when dst is src. */
static attamba_status residual(model *m, tensor *dst, const tensor *src, const tensor *x, const tensor *W) {
    if (dst != src) RT_TRY(tensor_copy(dst, src));
    return model_linear(m, x, W, 1, dst);
}

/* Attention over the sequence (prefill, training; a prefill into a cache stores k, v there first) or,
 * decoding, over the cache after rotating this step's q, k (RoPE) and appending k, v (unless appended
 * already). */
static attamba_status attend(model *m, int l, layer_acts *a, const tensor *store, const layer_mode *md,
                             int appended) {
    const model_config *c = &m->cfg;
    if (md->decode) {
        kv_cache *cache = md->cache;
        kv_layer *C = &cache->layers[l];
        tensor q = {0}, k = {0}, v = {0}, o = {0};
        attamba_status s = rows2(&a->q, &q);
        if (!s) s = rows2(&a->k, &k);
        if (!s) s = rows2(&a->v, &v);
        if (!s) s = rows2(&a->o, &o);
        if (!s && !appended)
            s = ops_kv_append_rope(m->ctx, &q, c->n_heads, &k, c->n_kv_heads, &v, md->pos, c->rope_theta, store,
                                   &C->kr, &C->vr, &C->kb, &C->vb, &C->bpos, &C->nb);
        if (!s)
            s = ops_attention_decode(m->ctx, &q, &C->kb, &C->vb, &C->bpos, &C->nb, &C->kr, &C->vr, md->pos,
                                     c->n_heads, c->n_kv_heads, cache->window, &o);
        tensor *all[] = {&q, &k, &v, &o};
        for (size_t i = 0; i < CORE_LEN(all); i++) tensor_free(all[i]);
        return s;
    }
    if (md->cache) RT_TRY(kv_cache_fill_layer(md->cache, md->b, l, &a->k, &a->v));
    attn_mask mask = boundary_plan_mask(c, md->plan, l, &a->bpos);
    return ops_attention_prefill(m->ctx, &a->q, &a->k, &a->v, c->n_heads, c->n_kv_heads, &mask, &a->o);
}

attamba_status model_layer_forward(model *m, int l, layer_acts *a, const layer_mode *md) {
    const model_config *c = &m->cfg;
    const layer_weights *L = &m->layers[l];
    tensor seg_first = {0}, store = {0};
    int appended = 0; /* decoding: the cache append done with the SSMs */
    attamba_status st;
#define TRY(e) do { if ((st = (e))) goto done; } while (0)
    if (md->decode) {
        TRY(step_row(md->step, 2 + 2 * (int64_t)l, &seg_first));
        TRY(step_row(md->step, 3 + 2 * (int64_t)l, &store));
    } else if (c->kind == MODEL_ATTAMBA) {
        TRY(plan_layer(md->plan, c->n_layers, l, &a->bpos, &a->seg));
    }
    if (c->kind == MODEL_ATTAMBA) { /* q and the SSMs' in_proj: z and [xs, B, C | dt] of K, then of V */
        const ssm_weights *w = L->ssm;
        ssm_acts *s = a->ssm;
        const tensor *W[5] = {L->wq, &w[0].in_z, &w[1].in_z, &w[0].in_xbcdt, &w[1].in_xbcdt};
        tensor *y[5] = {&a->q, &s[0].z, &s[1].z, &s[0].xbcdt, &s[1].xbcdt};
        /* x: the SSMs' residual; decoding, it is written straight into k and v, where their outputs add to it */
        tensor *x = md->decode ? &a->k : &a->x, *x2 = md->decode ? &a->v : NULL;
        TRY(linear_shared(m, a->h_in, L->attn_norm, x, x2, 1, 5, W, y));
        TRY(ssm_forward(m, l, a, &seg_first, &store, md, &appended));
    } else {
        const tensor *W[3] = {L->wq, L->wk, L->wv};
        tensor *y[3] = {&a->q, &a->k, &a->v};
        TRY(linear_shared(m, a->h_in, L->attn_norm, &a->x, NULL, !md->decode, 3, W, y));
    }
    if (!md->decode) TRY(ops_rope2(m->ctx, &a->q, c->n_heads, &a->k, c->n_kv_heads, md->pos, c->rope_theta));
    TRY(attend(m, l, a, &store, md, appended)); /* decoding, RoPE comes with the append */
    TRY(residual(m, a->h_mid, a->h_in, &a->o, L->wo));
    if (md->decode) { /* nothing reads y, f1, f3 afterwards: norm, projections and SwiGLU in one launch */
        ops_gemv_norm norm = {L->ffn_norm, c->norm_eps, &a->y, 0, NULL};
        TRY(ops_gemm_swiglu(m->ctx, a->h_mid, &norm, L->w1, L->w3, &a->f1, &a->f3, &a->hid));
    } else {
        const tensor *W13[2] = {L->w1, L->w3};
        tensor *f13[2] = {&a->f1, &a->f3};
        TRY(linear_shared(m, a->h_mid, L->ffn_norm, &a->y, NULL, 1, 2, W13, f13));
        TRY(ops_swiglu(m->ctx, &a->f1, &a->f3, &a->hid));
    }
    TRY(residual(m, a->h_out, a->h_mid, &a->hid, L->w2));
#undef TRY
done:
    tensor_free(&seg_first);
    tensor_free(&store);
    return st;
}

attamba_status model_trunk(model *m, const tensor *ids, layer_acts *acts, int per_layer, const layer_mode *md,
                           tensor *xf) {
    const model_config *c = &m->cfg;
    if (m->first_layer == 0) RT_TRY(ops_embedding(m->ctx, ids, m->tok_emb, acts[0].h_in));
    for (int l = m->first_layer; l < m->end_layer; l++) RT_TRY(model_layer_forward(m, l, &acts[per_layer ? l : 0], md));
    if (m->end_layer < c->n_layers) return ATTAMBA_OK;
    return ops_rmsnorm(m->ctx, acts[per_layer ? c->n_layers - 1 : 0].h_out, m->norm, c->norm_eps, xf);
}

/* ---- the inference workspace ---- */

void model_workspace_free(model_workspace *ws) {
    if (!ws) return;
    model_workspace_release(ws);
    boundary_plan_release(&ws->plan);
    tensor_arena_free(&ws->arena);
}

void model_workspace_release(model_workspace *ws) {
    model_acts_release(&ws->acts);
    tensor *all[] = {&ws->h, &ws->xf, &ws->ids, &ws->pos, &ws->step};
    for (size_t i = 0; i < CORE_LEN(all); i++) tensor_free(all[i]);
    tensor_free(&ws->plan.all);
    ws->plan.spec.chunk = 0;
    ws->B = ws->T = 0;
}

attamba_status model_workspace_carve(model *m, model_workspace *ws, int64_t B, int64_t T, int decode) {
    const model_config *c = &m->cfg;
    if (ws->B == B && ws->T == T && ws->decode == decode) return ATTAMBA_OK;
    for (int again = 1; again;) {
        model_workspace_release(ws);
        tensor_arena *ar = &ws->arena;
        tensor_arena_begin(ar, m->ctx);
        RT_TRY(model_acts_take(c, ar, B, T, &ws->acts));
        RT_TRY(take3(ar, &ws->h, B, T, c->dim));
        RT_TRY(take3(ar, &ws->xf, B, T, c->dim));
        if (decode) {
            RT_TRY(tensor_arena_take(ar, &ws->step, TENSOR_I32, 2, (int64_t[]){2 + 2 * (int64_t)c->n_layers, B}));
            if (ws->step.buf) RT_TRY(step_row(&ws->step, 0, &ws->ids));
            if (ws->step.buf) RT_TRY(step_row(&ws->step, 1, &ws->pos));
        } else {
            RT_TRY(tensor_arena_take(ar, &ws->ids, TENSOR_I32, 2, (int64_t[]){B, T}));
            RT_TRY(tensor_arena_take(ar, &ws->pos, TENSOR_I32, 1, &B));
            RT_TRY(boundary_plan_take(c, ar, T, &ws->plan));
        }
        RT_TRY(tensor_arena_end(ar, &again));
    }
    ws->acts.h_in = ws->acts.h_mid = ws->acts.h_out = &ws->h;
    if (decode) { /* ids as [B, 1] for the embedding */
        ws->ids.ndim = 2;
        ws->ids.shape[1] = 1;
        ws->ids.stride[1] = 1;
        ws->ids.stride[0] = 1;
    }
    if (!decode) RT_TRY(tensor_fill(&ws->pos, 0));
    ws->B = B;
    ws->T = T;
    ws->decode = decode;
    return ATTAMBA_OK;
}
