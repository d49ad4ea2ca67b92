/* The compressed KV cache (SPEC 4): what it holds, how a prefill fills it, and its byte counts.
 * The decode step that extends it is decode.c. */
#include <stdlib.h>
#include <string.h>

#include "kv_cache.h"
#include "ops/attention.h"
#include "ops/ops.h"

static int64_t kv_width(const model_config *c) { return (int64_t)c->n_kv_heads * c->head_dim; }

static int stores_all(const model_config *c) {
    return c->kind == MODEL_TRANSFORMER || (c->kind == MODEL_ATTAMBA && c->pseudo);
}

int kv_cache_stores(const kv_cache *c, int l, int64_t p) {
    const model_config *cfg = &c->m->cfg;
    if (c->store_all) return 1;
    if (cfg->kind != MODEL_ATTAMBA) return 0;
    boundary_spec b = model_config_boundaries(cfg);
    return boundary_is_boundary(&b, l, cfg->n_layers, p);
}

attamba_status kv_cache_store_type(rt_ctx *ctx, const char *op, attamba_cache_type t, tensor_dtype *out) {
    if (t != ATTAMBA_CACHE_F32 && t != ATTAMBA_CACHE_F16)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: cache_type %d is neither ATTAMBA_CACHE_F32 nor _F16", op,
                       (int)t);
    *out = t == ATTAMBA_CACHE_F16 ? TENSOR_F16 : TENSOR_F32;
    return ATTAMBA_OK;
}

attamba_status kv_cache_create(model *m, int B, int64_t max_tokens, tensor_dtype store, kv_cache **out) {
    const model_config *cfg = &m->cfg;
    *out = NULL;
    if (B < 1 || max_tokens < 1 || max_tokens > INT32_MAX) /* positions are i32 on the device */
        return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "kv_cache_create: B = %d, max_tokens = %lld (1 .. 2^31-1)", B,
                       (long long)max_tokens);
    if (store != TENSOR_F32 && store != TENSOR_F16)
        return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "kv_cache_create: stored keys and values are f32 or f16, "
                       "not %s", tensor_dtype_name(store));
    kv_cache *c = calloc(1, sizeof *c);
    if (!c) return rt_fail(m->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    c->m = m;
    c->B = B;
    c->max_tokens = max_tokens;
    c->store_all = stores_all(cfg);
    c->window = c->store_all ? 0 : cfg->window;
    c->R = c->window + 1; /* the decode kernel addresses the ring modulo window + 1 */
    c->cap = 1;
    if (c->store_all) {
        c->cap = (int)max_tokens;
    } else if (cfg->kind == MODEL_ATTAMBA) {
        boundary_spec bs = model_config_boundaries(cfg);
        for (int l = 0; l < cfg->n_layers; l++)
            c->cap = (int)CORE_MAX(c->cap, boundary_positions(&bs, l, cfg->n_layers, max_tokens, NULL, 0));
    }
    c->pos = calloc((size_t)B, sizeof *c->pos);
    c->layers = calloc((size_t)cfg->n_layers, sizeof *c->layers);
    c->step_host = malloc((size_t)(2 + 2 * cfg->n_layers) * (size_t)B * sizeof *c->step_host);
    c->n_ws = model_stages(m);
    c->ws = calloc((size_t)c->n_ws, sizeof *c->ws);
    attamba_status s = c->pos && c->layers && c->step_host && c->ws ? ATTAMBA_OK
                                                                    : rt_fail(m->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    int64_t kvw = kv_width(cfg), E = cfg->ssm_inner, GN = (int64_t)cfg->ssm_groups * cfg->ssm_state;
    rt_ctx *ctx = m->ctx;
    for (int l = 0; l < cfg->n_layers && !s; l++) {
        kv_layer *L = &c->layers[l];
        ctx = model_stage(m, l)->ctx; /* the layer's device */
        if (!(L->nb_host = calloc((size_t)B, sizeof *L->nb_host))) s = rt_fail(m->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "oom");
        int64_t head_major[4] = {B, cfg->n_kv_heads, c->cap, cfg->head_dim};
        if (!s) s = tensor_alloc(ctx, &L->kb, store, 4, head_major);
        if (!s) s = tensor_alloc(ctx, &L->vb, store, 4, head_major);
        if (!s) s = tensor_alloc(ctx, &L->bpos, TENSOR_I32, 2, ((int64_t[]){B, c->cap}));
        if (!s) s = tensor_alloc(ctx, &L->nb, TENSOR_I32, 1, ((int64_t[]){B}));
        if (!s) s = tensor_fill(&L->nb, 0);
        if (!s) s = tensor_fill(&L->bpos, 0);
        if (!s) s = tensor_alloc_f32(ctx, &L->kr, 3, ((int64_t[]){B, c->R, kvw}));
        if (!s) s = tensor_alloc_f32(ctx, &L->vr, 3, ((int64_t[]){B, c->R, kvw}));
        if (cfg->kind != MODEL_ATTAMBA) continue;
        /* K's and V's states in one allocation each, so one decode launch serves both */
        if (!s && !(L->seg_first = calloc((size_t)B, sizeof *L->seg_first))) s = rt_fail(m->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "oom");
        if (!s && cfg->ssm_conv > 1) s = tensor_alloc_f32(ctx, &L->conv_all, 3, ((int64_t[]){2 * B, cfg->ssm_conv, E + 2 * GN}));
        if (!s && cfg->ssm_conv > 1) s = tensor_fill(&L->conv_all, 0.0);
        if (!s) s = tensor_alloc_f32(ctx, &L->state_all, 4, ((int64_t[]){2 * B, cfg->ssm_heads, E / cfg->ssm_heads, cfg->ssm_state}));
        if (!s) s = tensor_fill(&L->state_all, 0.0);
        for (int i = 0; i < 2 && !s; i++) {
            if (cfg->ssm_conv > 1) s = tensor_slice(&L->conv_all, 0, (int64_t)i * B, B, &L->conv[i]);
            if (!s) s = tensor_slice(&L->state_all, 0, (int64_t)i * B, B, &L->state[i]);
        }
    }
    if (s) {
        rt_fail_from(m->ctx, s, ctx);
        kv_cache_destroy(c);
        return s;
    }
    *out = c;
    return ATTAMBA_OK;
}

void kv_cache_destroy(kv_cache *c) {
    if (!c) return;
    for (int l = 0; c->layers && l < c->m->cfg.n_layers; l++) {
        kv_layer *L = &c->layers[l];
        tensor *all[] = {&L->kb,       &L->vb,       &L->bpos,    &L->nb,      &L->kr,       &L->vr,
                         &L->state[0], &L->state[1], &L->conv[0], &L->conv[1], &L->state_all, &L->conv_all};
        for (size_t i = 0; i < CORE_LEN(all); i++) tensor_free(all[i]);
        free(L->nb_host);
        free(L->seg_first);
    }
    for (int k = 0; c->ws && k < c->n_ws; k++) model_workspace_free(&c->ws[k]);
    free(c->ws);
    free(c->step_host);
    free(c->layers);
    free(c->pos);
    free(c);
}

void kv_cache_reset(kv_cache *c, int b) {
    for (int i = 0; i < c->B; i++) {
        if (b >= 0 && i != b) continue;
        c->pos[i] = 0;
        for (int l = 0; l < c->m->cfg.n_layers; l++) c->layers[l].nb_host[i] = 0;
    }
    /* device counters follow at the next write (kv_cache_fill_layer / decode upload them) */
}

int64_t kv_cache_bytes_used(const kv_cache *c, int b) {
    const model_config *cfg = &c->m->cfg;
    int64_t kvw = kv_width(cfg), total = 0;
    for (int l = 0; l < cfg->n_layers; l++) {
        const kv_layer *L = &c->layers[l];
        int64_t ring = c->store_all ? 0 : CORE_MIN(c->pos[b], (int64_t)c->R);
        total += (L->nb_host[b] * (int64_t)tensor_dtype_size(L->kb.dtype) + ring * 4) * 2 * kvw;
        for (int i = 0; i < 2; i++) { /* SPEC 4's state: w-1 conv inputs (the ring keeps one slot more) */
            if (L->conv[i].buf) total += (L->conv[i].shape[1] - 1) * L->conv[i].shape[2] * 4;
            if (L->state[i].buf) total += tensor_numel(&L->state[i]) / c->B * 4;
        }
    }
    return total;
}

int64_t kv_cache_bytes_allocated(const kv_cache *c) {
    int64_t total = 0;
    for (int l = 0; l < c->m->cfg.n_layers; l++) {
        const kv_layer *L = &c->layers[l];
        const tensor *all[] = {&L->kb, &L->vb, &L->bpos, &L->nb, &L->kr, &L->vr, &L->state_all, &L->conv_all};
        for (size_t i = 0; i < CORE_LEN(all); i++)
            if (all[i]->buf) total += tensor_numel(all[i]) * (int64_t)tensor_dtype_size(all[i]->dtype);
    }
    return total;
}

/* ---- prefill hooks ---- */

void ssm_tail_free(ssm_tail *t) {
    tensor_free(&t->conv);
    tensor_free(&t->state);
    t->seg_first = 0;
}

attamba_status kv_cache_ssm_tail(kv_cache *c, int b, int l, int i, int64_t T, ssm_tail *tail) {
    const model_config *cfg = &c->m->cfg;
    kv_layer *L = &c->layers[l];
    memset(tail, 0, sizeof *tail);
    if (cfg->ssm_conv > 1) RT_TRY(tensor_slice(&L->conv[i], 0, b, 1, &tail->conv));
    RT_TRY(tensor_slice(&L->state[i], 0, b, 1, &tail->state));
    tail->seg_first = L->seg_first[b] = kv_cache_segment_first(c, l, T - 1);
    return ATTAMBA_OK;
}

int64_t kv_cache_segment_first(const kv_cache *c, int l, int64_t p) {
    const model_config *cfg = &c->m->cfg;
    boundary_spec bs = model_config_boundaries(cfg);
    for (int64_t q = p - 1; q >= 0; q--) /* one past the last boundary before p */
        if (boundary_is_boundary(&bs, l, cfg->n_layers, q)) return q + 1;
    return 0;
}

attamba_status kv_copy_rows(const tensor *src, int sb, int64_t from, tensor *dst, int db, int64_t to, int64_t n) {
    tensor s1 = {0}, s2 = {0}, d1 = {0}, d2 = {0};
    attamba_status s = tensor_slice(src, 0, sb, 1, &s1);
    if (!s) s = tensor_slice(&s1, 1, from, n, &s2);
    if (!s) s = tensor_slice(dst, 0, db, 1, &d1);
    if (!s) s = tensor_slice(&d1, 1, to, n, &d2);
    if (!s) s = tensor_copy(&d2, &s2);
    tensor *all[] = {&s1, &s2, &d1, &d2};
    for (size_t i = 0; i < CORE_LEN(all); i++) tensor_free(all[i]);
    return s;
}

static attamba_status set_positions(kv_layer *L, int b, int64_t first, int64_t n, const int32_t *pos) {
    tensor row = {0}, cells = {0};
    attamba_status s = tensor_slice(&L->bpos, 0, b, 1, &row);
    if (!s) s = tensor_slice(&row, 1, first, n, &cells);
    if (!s) s = tensor_upload(&cells, pos);
    tensor_free(&row);
    tensor_free(&cells);
    return s;
}

static attamba_status upload_counts(kv_cache *c, kv_layer *L) {
    int32_t *n = malloc((size_t)c->B * sizeof *n);
    if (!n) return rt_fail(c->m->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    for (int b = 0; b < c->B; b++) n[b] = (int32_t)L->nb_host[b];
    attamba_status s = tensor_upload(&L->nb, n);
    free(n);
    return s;
}

/* Rows [0, n) of src [1, >= n, Hkv*dh] into rows [0, n) of sequence b of the head-major store
 * dst [B, Hkv, cap, dh]: one strided copy, viewing both as [Hkv, n, dh]. */
static attamba_status store_rows(const tensor *src, int64_t n, tensor *dst, int b) {
    int64_t Hkv = dst->shape[1], dh = dst->shape[3];
    tensor s = *src, d = *dst;
    s.ndim = d.ndim = 3;
    s.shape[0] = d.shape[0] = Hkv;
    s.shape[1] = d.shape[1] = n;
    s.shape[2] = d.shape[2] = dh;
    s.stride[0] = dh, s.stride[1] = src->stride[1], s.stride[2] = 1;
    d.offset += b * dst->stride[0];
    d.stride[0] = dst->stride[1], d.stride[1] = dst->stride[2], d.stride[2] = 1;
    return tensor_copy(&d, &s); /* plain struct copies: views without a reference of their own */
}

attamba_status kv_cache_fill_layer(kv_cache *c, int b, int l, const tensor *k, const tensor *v) {
    kv_layer *L = &c->layers[l];
    rt_ctx *ctx = L->kb.buf->ctx; /* the layer's device */
    int64_t T = k->shape[1];
    int64_t *pos = malloc((size_t)T * sizeof *pos);
    int32_t *p32 = malloc((size_t)T * sizeof *p32);
    attamba_status s = pos && p32 ? ATTAMBA_OK : rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    int64_t n = 0;
    for (int64_t p = 0; p < T && !s; p++)
        if (kv_cache_stores(c, l, p)) pos[n++] = p;
    if (!s && n > c->cap) s = rt_fail(ctx, ATTAMBA_ERR_INTERNAL, "kv cache: %lld rows > capacity %d", (long long)n, c->cap);
    if (!s && n == T) { /* every token */
        s = store_rows(k, T, &L->kb, b);
        if (!s) s = store_rows(v, T, &L->vb, b);
    } else if (!s && n > 0) {
        tensor idx = {0}, gk = {0}, gv = {0};
        for (int64_t i = 0; i < n; i++) p32[i] = (int32_t)pos[i];
        s = tensor_scratch(ctx, &idx, TENSOR_I32, 1, &n);
        if (!s) s = tensor_upload(&idx, p32);
        if (!s) s = tensor_scratch(ctx, &gk, TENSOR_F32, 3, ((int64_t[]){1, n, k->shape[2]}));
        if (!s) s = tensor_scratch(ctx, &gv, TENSOR_F32, 3, ((int64_t[]){1, n, k->shape[2]}));
        if (!s) s = ops_gather_rows(ctx, k, &idx, &gk);
        if (!s) s = ops_gather_rows(ctx, v, &idx, &gv);
        if (!s) s = store_rows(&gk, n, &L->kb, b);
        if (!s) s = store_rows(&gv, n, &L->vb, b);
        tensor_free(&idx);
        tensor_free(&gk);
        tensor_free(&gv);
    }
    if (!s && n > 0) {
        for (int64_t i = 0; i < n; i++) p32[i] = (int32_t)pos[i];
        s = set_positions(L, b, 0, n, p32);
    }
    for (int64_t p = CORE_MAX(0, T - c->R); p < T && !s && !c->store_all; p++) {
        s = kv_copy_rows(k, 0, p, &L->kr, b, p % c->R, 1);
        if (!s) s = kv_copy_rows(v, 0, p, &L->vr, b, p % c->R, 1);
    }
    if (!s) {
        L->nb_host[b] = n;
        s = upload_counts(c, L);
    }
    free(pos);
    free(p32);
    return s;
}

attamba_status kv_cache_fill_synthetic(kv_cache *c, int64_t T) {
    model *m = c->m;
    const model_config *cfg = &m->cfg;
    boundary_spec bs = model_config_boundaries(cfg);
    if (T > c->max_tokens) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "kv cache: %lld > capacity", (long long)T);
    int32_t *pos = malloc((size_t)c->cap * sizeof *pos);
    if (!pos) return rt_fail(c->m->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    attamba_status s = ATTAMBA_OK;
    for (int l = 0; l < cfg->n_layers && !s; l++) {
        kv_layer *L = &c->layers[l];
        int64_t n = 0;
        if (c->store_all) {
            n = T;
            for (int64_t i = 0; i < n; i++) pos[i] = (int32_t)i;
        } else if (cfg->kind == MODEL_ATTAMBA) {
            int64_t *p64 = malloc((size_t)c->cap * sizeof *p64);
            n = p64 ? boundary_positions(&bs, l, cfg->n_layers, T, p64, c->cap) : 0;
            for (int64_t i = 0; i < n; i++) pos[i] = (int32_t)p64[i];
            free(p64);
        }
        for (int b = 0; b < c->B && !s; b++) {
            L->nb_host[b] = n;
            if (n) s = set_positions(L, b, 0, n, pos);
        }
        for (int b = 0; b < c->B && cfg->kind == MODEL_ATTAMBA; b++) L->seg_first[b] = kv_cache_segment_first(c, l, T - 1);
        tensor *fill[] = {&L->kb, &L->vb, &L->kr, &L->vr, &L->state_all, &L->conv_all};
        for (size_t i = 0; i < sizeof fill / sizeof fill[0] && !s; i++)
            if (fill[i]->buf) s = tensor_fill(fill[i], 0.01);
        if (!s) s = upload_counts(c, L);
    }
    for (int b = 0; b < c->B; b++) c->pos[b] = T;
    free(pos);
    return s;
}

