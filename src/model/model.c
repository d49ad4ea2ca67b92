/* The LM forward pass (SPEC 3): embedding, n_layers of [RMSNorm, Q/K/V (SSMs for attamba),
 * RoPE, attention, output projection, SwiGLU FFN], final norm, output projection. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model.h"
#include "ops/attention.h"
#include "ops/layer.h"
#include "ops/ops.h"
#include "ops/ssm.h"
#include "kv_cache.h"

/* ---- construction ---- */

static attamba_status rows(const tensor *w, int64_t start, int64_t n, tensor *out) {
    return tensor_slice(w, 0, start, n, out);
}

static attamba_status bind_layer(model *m, int l) {
    const model_config *c = &m->cfg;
    layer_weights *L = &m->layers[l];
    char name[WEIGHT_NAME_MAX];
#define GET(field, fmt)                                            \
    do {                                                           \
        snprintf(name, sizeof name, fmt, l);                       \
        L->field = weights_get(&m->w, name);                       \
    } while (0)
    GET(attn_norm, "layers.%d.attention_norm.weight");
    GET(wq, "layers.%d.attention.wq.weight");
    GET(wk, "layers.%d.attention.wk.weight");
    GET(wv, "layers.%d.attention.wv.weight");
    GET(wo, "layers.%d.attention.wo.weight");
    GET(ffn_norm, "layers.%d.ffn_norm.weight");
    GET(w1, "layers.%d.feed_forward.w1.weight");
    GET(w2, "layers.%d.feed_forward.w2.weight");
    GET(w3, "layers.%d.feed_forward.w3.weight");
#undef GET
    if (c->kind != MODEL_ATTAMBA) return ATTAMBA_OK;
    int64_t E = c->ssm_inner, GN = (int64_t)c->ssm_groups * c->ssm_state, nh = c->ssm_heads;
    for (int s = 0; s < 2; s++) {
        ssm_weights *S = &L->ssm[s];
        const char *which = s ? "ssm_v" : "ssm_k";
#define SSM(field, suffix)                                                  \
    do {                                                                    \
        snprintf(name, sizeof name, "layers.%d.%s." suffix, l, which);      \
        S->field = weights_get(&m->w, name);                                \
    } while (0)
        SSM(dt_bias, "dt_bias");
        SSM(A_log, "A_log");
        SSM(D, "D");
        SSM(norm, "norm.weight");
        SSM(out_proj, "out_proj.weight");
        const tensor *in, *conv;
        snprintf(name, sizeof name, "layers.%d.%s.in_proj.weight", l, which);
        in = weights_get(&m->w, name);
        snprintf(name, sizeof name, "layers.%d.%s.conv1d.weight", l, which);
        conv = weights_get(&m->w, name);
#undef SSM
        RT_TRY(rows(in, 0, E, &S->in_z));
        RT_TRY(rows(in, E, E, &S->in_xs));
        RT_TRY(rows(in, 2 * E, GN, &S->in_b));
        RT_TRY(rows(in, 2 * E + GN, GN, &S->in_c));
        RT_TRY(rows(in, 2 * E + 2 * GN, nh, &S->in_dt));
        if (conv) {
            RT_TRY(rows(conv, 0, E, &S->conv_xs));
            RT_TRY(rows(conv, E, GN, &S->conv_b));
            RT_TRY(rows(conv, E + GN, GN, &S->conv_c));
        }
    }
    return ATTAMBA_OK;
}

static attamba_status bind(model *m) {
    m->layers = calloc((size_t)m->cfg.n_layers, sizeof *m->layers);
    if (!m->layers) return rt_fail(m->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    m->tok_emb = weights_get(&m->w, "tok_embeddings.weight");
    m->norm = weights_get(&m->w, "norm.weight");
    m->output = m->cfg.tie_embeddings ? m->tok_emb : weights_get(&m->w, "output.weight");
    for (int l = 0; l < m->cfg.n_layers; l++) RT_TRY(bind_layer(m, l));
    return ATTAMBA_OK;
}

attamba_status model_create(rt_ctx *ctx, const model_config *cfg, model **out) {
    *out = NULL;
    char err[400];
    if (model_config_validate(cfg, err, sizeof err)) return rt_fail(ctx, ATTAMBA_ERR_FORMAT, "%s", err);
    model *m = calloc(1, sizeof *m);
    if (!m) return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    m->ctx = ctx;
    m->cfg = *cfg;
    attamba_status s = weights_alloc(ctx, cfg, &m->w);
    if (!s) s = bind(m);
    if (s) {
        model_destroy(m);
        return s;
    }
    *out = m;
    return ATTAMBA_OK;
}

void model_destroy(model *m) {
    if (!m) return;
    if (m->layers)
        for (int l = 0; l < m->cfg.n_layers; l++)
            for (int s = 0; s < 2; s++) {
                ssm_weights *S = &m->layers[l].ssm[s];
                tensor *views[] = {&S->in_z, &S->in_xs, &S->in_b, &S->in_c, &S->in_dt, &S->conv_xs, &S->conv_b, &S->conv_c};
                for (size_t i = 0; i < CORE_LEN(views); i++) tensor_free(views[i]);
            }
    free(m->layers);
    weights_free(&m->w);
    free(m);
}

attamba_status model_init_random(model *m, uint64_t seed) {
    float *host = malloc((size_t)m->w.numel * sizeof *host);
    if (!host) return rt_fail(m->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    weights_init_host(&m->cfg, m->w.info, m->w.n, seed, host);
    attamba_status s = tensor_upload(&m->w.flat, host);
    free(host);
    return s;
}

attamba_status model_load(rt_ctx *ctx, const char *dir, model **out) {
    *out = NULL;
    char err[600], *cpath = core_strdup_printf("%s/config.json", dir), *wpath = core_strdup_printf("%s/model.safetensors", dir);
    model_config cfg;
    attamba_status s = !cpath || !wpath ? ATTAMBA_ERR_OUT_OF_MEMORY : model_config_load(cpath, &cfg, err, sizeof err);
    model *m = NULL;
    if (s) {
        rt_fail(ctx, s, "%s", s == ATTAMBA_ERR_OUT_OF_MEMORY ? "out of host memory" : err);
    } else if (!(m = calloc(1, sizeof *m))) {
        s = rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    } else {
        m->ctx = ctx;
        m->cfg = cfg;
        s = weights_load(ctx, &cfg, wpath, &m->w, err, sizeof err);
        if (s) rt_fail(ctx, s, "%s", err);
        else s = bind(m);
    }
    free(cpath);
    free(wpath);
    if (s) {
        model_destroy(m);
        return s;
    }
    *out = m;
    return ATTAMBA_OK;
}

attamba_status model_save(const model *m, const char *dir) {
    if (core_mkdirs(dir) != 0)
        return rt_fail(m->ctx, ATTAMBA_ERR_IO, "cannot create directory %s", dir);
    char err[400], *cpath = core_strdup_printf("%s/config.json", dir), *wpath = core_strdup_printf("%s/model.safetensors", dir);
    attamba_status s = !cpath || !wpath ? ATTAMBA_ERR_OUT_OF_MEMORY : weights_save(&m->w, wpath, err, sizeof err);
    if (!s) s = model_config_save(&m->cfg, cpath, err, sizeof err);
    if (s) rt_fail(m->ctx, s, "%s", s == ATTAMBA_ERR_OUT_OF_MEMORY ? "out of host memory" : err);
    free(cpath);
    free(wpath);
    return s;
}

attamba_status model_set_attention(model *m, int chunk, int window, const char *boundaries) {
    model_config c = m->cfg;
    char err[300];
    if (chunk > 0) c.chunk = chunk;
    if (window >= 0) c.window = window;
    if (boundaries) {
        boundary_spec b = model_config_boundaries(&c);
        if (boundary_parse(boundaries, &b, err, sizeof err)) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "%s", err);
        c.boundaries = b.strategy;
        c.boundary_seed = b.seed;
    }
    if (model_config_validate(&c, err, sizeof err))
        return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "attention override: %s", err);
    m->cfg = c;
    return ATTAMBA_OK;
}

/* ---- building blocks ---- */

/* A view of t with its leading dims merged: [..., C] -> [rows, C]. */
static attamba_status flat2(const tensor *t, tensor *out) {
    int64_t shape[2] = {tensor_numel(t) / t->shape[t->ndim - 1], t->shape[t->ndim - 1]};
    return tensor_reshape(t, 2, shape, out);
}

attamba_status model_linear(model *m, const tensor *x, const tensor *W, int accumulate, tensor *y) {
    tensor x2 = {0}, y2 = {0};
    RT_TRY(flat2(x, &x2));
    attamba_status s = flat2(y, &y2);
    if (!s) s = ops_gemm(m->ctx, 0, 1, 1.0f, &x2, W, accumulate ? 1.0f : 0.0f, &y2);
    tensor_free(&x2);
    tensor_free(&y2);
    return s;
}

attamba_status model_boundaries(model *m, int layer, int T, tensor *positions, tensor *seg) {
    boundary_spec b = model_config_boundaries(&m->cfg);
    int64_t nb = boundary_positions(&b, layer, m->cfg.n_layers, T, NULL, 0);
    if (nb < 1) return rt_fail(m->ctx, ATTAMBA_ERR_INTERNAL, "no boundaries for layer %d", layer);
    int64_t *pos = malloc((size_t)nb * sizeof *pos);
    int32_t *p32 = malloc((size_t)(nb > T ? nb : T) * sizeof *p32);
    attamba_status s = pos && p32 ? ATTAMBA_OK : rt_fail(m->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    if (!s) {
        boundary_positions(&b, layer, m->cfg.n_layers, T, pos, nb);
        for (int64_t i = 0; i < nb; i++) p32[i] = (int32_t)pos[i];
        s = tensor_alloc(m->ctx, positions, TENSOR_I32, 1, &nb);
        if (!s) s = tensor_upload(positions, p32);
    }
    if (!s && seg) {
        int64_t t64 = T;
        boundary_segment_starts(pos, nb, T, p32);
        s = tensor_alloc(m->ctx, seg, TENSOR_I32, 1, &t64);
        if (!s) s = tensor_upload(seg, p32);
    }
    free(pos);
    free(p32);
    return s;
}

/* dst [1, w-1, C] = the rows T-w+1 .. T-1 of src [1, T, C] that lie in the last segment; zeros elsewhere. */
static attamba_status conv_tail(const tensor *src, const tensor *dst, int64_t seg_first) {
    int64_t T = src->shape[1], W1 = dst->shape[1];
    for (int64_t j = 0; j < W1; j++) {
        int64_t p = T - W1 + j;
        tensor d = {0}, sr = {0};
        RT_TRY(tensor_slice(dst, 1, j, 1, &d));
        attamba_status s = p >= 0 && p >= seg_first ? tensor_slice(src, 1, p, 1, &sr) : ATTAMBA_OK;
        if (!s) s = p >= 0 && p >= seg_first ? tensor_copy(&d, &sr) : tensor_fill(&d, 0.0);
        tensor_free(&d);
        tensor_free(&sr);
        RT_TRY(s);
    }
    return ATTAMBA_OK;
}

static attamba_status ssm_acts_alloc(model *m, int64_t B, int64_t T, ssm_acts *a) {
    const model_config *c = &m->cfg;
    int64_t E = c->ssm_inner, GN = (int64_t)c->ssm_groups * c->ssm_state, nh = c->ssm_heads;
    struct { tensor *t; int64_t w; } all[] = {{&a->z, E},  {&a->xs_in, E}, {&a->b_in, GN}, {&a->c_in, GN}, {&a->dt, nh},
                                              {&a->xs, E}, {&a->bm, GN},   {&a->cm, GN},   {&a->y, E},     {&a->g, E}};
    for (size_t i = 0; i < CORE_LEN(all); i++) RT_TRY(tensor_alloc_f32(m->ctx, all[i].t, 3, ((int64_t[]){B, T, all[i].w})));
    return ATTAMBA_OK;
}

static void ssm_acts_free(ssm_acts *a) {
    tensor *all[] = {&a->z, &a->xs_in, &a->b_in, &a->c_in, &a->dt, &a->xs, &a->bm, &a->cm, &a->y, &a->g};
    for (size_t i = 0; i < CORE_LEN(all); i++) tensor_free(all[i]);
}

attamba_status model_acts_alloc(model *m, int B, int T, layer_acts *a) {
    const model_config *c = &m->cfg;
    int64_t d = c->dim, qw = (int64_t)c->n_heads * c->head_dim, kvw = (int64_t)c->n_kv_heads * c->head_dim, F = c->ffn_dim;
    memset(a, 0, sizeof *a);
    struct { tensor *t; int64_t w; } all[] = {{&a->x, d}, {&a->q, qw}, {&a->k, kvw}, {&a->v, kvw}, {&a->o, qw},
                                              {&a->y, d}, {&a->f1, F}, {&a->f3, F},   {&a->hid, F}};
    attamba_status s = ATTAMBA_OK;
    for (size_t i = 0; i < CORE_LEN(all) && !s; i++) s = tensor_alloc_f32(m->ctx, all[i].t, 3, ((int64_t[]){B, T, all[i].w}));
    for (int i = 0; i < 2 && !s && c->kind == MODEL_ATTAMBA; i++) s = ssm_acts_alloc(m, B, T, &a->ssm[i]);
    if (s) model_acts_free(a);
    return s;
}

void model_acts_free(layer_acts *a) {
    tensor *all[] = {&a->x, &a->q, &a->k, &a->v, &a->o, &a->y, &a->f1, &a->f3, &a->hid, &a->bpos, &a->seg};
    for (size_t i = 0; i < CORE_LEN(all); i++) tensor_free(all[i]);
    for (int i = 0; i < 2; i++) ssm_acts_free(&a->ssm[i]);
}

attamba_status model_ssm_forward(model *m, const ssm_weights *w, const tensor *x, const tensor *seg_start,
                                 ssm_acts *a, tensor *kv, const ssm_tail *tail) {
    const model_config *c = &m->cfg;
    RT_TRY(model_linear(m, x, &w->in_z, 0, &a->z));
    RT_TRY(model_linear(m, x, &w->in_xs, 0, &a->xs_in));
    RT_TRY(model_linear(m, x, &w->in_b, 0, &a->b_in));
    RT_TRY(model_linear(m, x, &w->in_c, 0, &a->c_in));
    RT_TRY(model_linear(m, x, &w->in_dt, 0, &a->dt));
    if (tail && c->ssm_conv > 1) { /* the decode cache keeps the last pre-conv rows */
        RT_TRY(conv_tail(&a->xs_in, &tail->conv[0], tail->seg_first));
        RT_TRY(conv_tail(&a->b_in, &tail->conv[1], tail->seg_first));
        RT_TRY(conv_tail(&a->c_in, &tail->conv[2], tail->seg_first));
    }
    if (c->ssm_conv > 0) {
        RT_TRY(ops_conv1d(m->ctx, &a->xs_in, &w->conv_xs, seg_start, 1, &a->xs));
        RT_TRY(ops_conv1d(m->ctx, &a->b_in, &w->conv_b, seg_start, 1, &a->bm));
        RT_TRY(ops_conv1d(m->ctx, &a->c_in, &w->conv_c, seg_start, 1, &a->cm));
    } else {
        RT_TRY(ops_silu(m->ctx, &a->xs_in, &a->xs));
        RT_TRY(ops_silu(m->ctx, &a->b_in, &a->bm));
        RT_TRY(ops_silu(m->ctx, &a->c_in, &a->cm));
    }
    RT_TRY(ops_ssm_scan(m->ctx, &a->xs, &a->bm, &a->cm, &a->dt, w->dt_bias, w->A_log, w->D, seg_start, c->ssm_groups,
                        &a->y, tail ? (tensor *)&tail->state : NULL));
    RT_TRY(ops_gated_rmsnorm(m->ctx, &a->y, &a->z, w->norm, c->norm_eps, &a->g));
    RT_TRY(tensor_copy(kv, x));
    return model_linear(m, &a->g, w->out_proj, 1, kv);
}

/* ---- the forward pass ---- */

/* dst = src + x W^T; in place when dst is src. */
static attamba_status residual(model *m, tensor *dst, const tensor *src, const tensor *x, const tensor *W) {
    if (dst != src) RT_TRY(tensor_copy(dst, src));
    return model_linear(m, x, W, 1, dst);
}

attamba_status model_layer_forward(model *m, int l, layer_acts *a, const tensor *pos0, kv_cache *cache, int b) {
    const model_config *c = &m->cfg;
    const layer_weights *L = &m->layers[l];
    int T = (int)a->h_in->shape[1];
    ssm_tail tails[2];
    memset(tails, 0, sizeof tails);
    attamba_status st;
#define TRY(e) do { if ((st = (e))) goto done; } while (0)
    TRY(ops_rmsnorm(m->ctx, a->h_in, L->attn_norm, c->norm_eps, &a->x));
    TRY(model_linear(m, &a->x, L->wq, 0, &a->q));
    attn_mask mask = {ATTN_CAUSAL, c->window, NULL};
    if (c->kind == MODEL_ATTAMBA) {
        tensor_free(&a->bpos);
        tensor_free(&a->seg);
        TRY(model_boundaries(m, l, T, &a->bpos, &a->seg));
        for (int i = 0; i < 2 && cache; i++) TRY(kv_cache_ssm_tail(cache, b, l, i, T, &tails[i]));
        TRY(model_ssm_forward(m, &L->ssm[0], &a->x, &a->seg, &a->ssm[0], &a->k, cache ? &tails[0] : NULL));
        TRY(model_ssm_forward(m, &L->ssm[1], &a->x, &a->seg, &a->ssm[1], &a->v, cache ? &tails[1] : NULL));
        if (!c->pseudo) {
            mask.mode = ATTN_COMPRESSED;
            mask.boundaries = &a->bpos;
        }
    } else {
        TRY(model_linear(m, &a->x, L->wk, 0, &a->k));
        TRY(model_linear(m, &a->x, L->wv, 0, &a->v));
        if (c->kind == MODEL_TRANSFORMER_SWA) mask.mode = ATTN_SLIDING;
    }
    TRY(ops_rope(m->ctx, &a->q, c->n_heads, pos0, c->rope_theta));
    TRY(ops_rope(m->ctx, &a->k, c->n_kv_heads, pos0, c->rope_theta));
    if (cache) TRY(kv_cache_fill_layer(cache, b, l, &a->k, &a->v));
    TRY(ops_attention_prefill(m->ctx, &a->q, &a->k, &a->v, c->n_heads, c->n_kv_heads, &mask, &a->o));
    TRY(residual(m, a->h_mid, a->h_in, &a->o, L->wo));
    TRY(ops_rmsnorm(m->ctx, a->h_mid, L->ffn_norm, c->norm_eps, &a->y));
    TRY(model_linear(m, &a->y, L->w1, 0, &a->f1));
    TRY(model_linear(m, &a->y, L->w3, 0, &a->f3));
    TRY(ops_swiglu(m->ctx, &a->f1, &a->f3, &a->hid));
    TRY(residual(m, a->h_out, a->h_mid, &a->hid, L->w2));
#undef TRY
done:
    for (int i = 0; i < 2; i++) ssm_tail_free(&tails[i]);
    return st;
}

/* The forward pass; with a cache (B = 1) it also leaves sequence b's decode state there. */
static attamba_status forward(model *m, const int32_t *tokens, int B, int T, tensor *logits, kv_cache *cache, int b) {
    const model_config *c = &m->cfg;
    if (B < 1 || T < 1) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "forward: B = %d, T = %d", B, T);
    for (int64_t i = 0; i < (int64_t)B * T; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "forward: token %d at index %lld is outside [0, %d)",
                           tokens[i], (long long)i, c->vocab_size);
    tensor ids = {0}, pos0 = {0}, h = {0};
    layer_acts a;
    attamba_status st = model_acts_alloc(m, B, T, &a);
    if (st) return st;
    a.h_in = a.h_mid = a.h_out = &h;
#define TRY(e) do { if ((st = (e))) goto done; } while (0)
    TRY(tensor_alloc(m->ctx, &ids, TENSOR_I32, 2, (int64_t[]){B, T}));
    TRY(tensor_upload(&ids, tokens));
    TRY(tensor_alloc(m->ctx, &pos0, TENSOR_I32, 1, (int64_t[]){B}));
    TRY(tensor_fill(&pos0, 0));
    TRY(tensor_alloc_f32(m->ctx, &h, 3, ((int64_t[]){B, T, c->dim})));
    TRY(ops_embedding(m->ctx, &ids, m->tok_emb, &h));
    for (int l = 0; l < c->n_layers; l++) TRY(model_layer_forward(m, l, &a, &pos0, cache, b));
    if (logits) {
        TRY(ops_rmsnorm(m->ctx, &h, m->norm, c->norm_eps, &a.x));
        TRY(tensor_alloc_f32(m->ctx, logits, 3, ((int64_t[]){B, T, c->vocab_size})));
        TRY(model_linear(m, &a.x, m->output, 0, logits));
    }
    if (cache) cache->pos[b] = T;
#undef TRY
done:
    if (st && logits) tensor_free(logits);
    tensor_free(&ids);
    tensor_free(&pos0);
    tensor_free(&h);
    model_acts_free(&a);
    return st;
}

attamba_status model_forward(model *m, const int32_t *tokens, int B, int T, tensor *logits) {
    memset(logits, 0, sizeof *logits);
    return forward(m, tokens, B, T, logits, NULL, 0);
}

attamba_status model_prefill(model *m, kv_cache *c, int b, const int32_t *tokens, int T, tensor *logits) {
    if (logits) memset(logits, 0, sizeof *logits);
    if (b < 0 || b >= c->B) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "model_prefill: sequence %d of %d", b, c->B);
    if (c->pos[b] != 0) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "model_prefill: sequence %d is not empty", b);
    if (T > c->max_tokens)
        return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "model_prefill: %d tokens exceed the cache's %lld", T,
                       (long long)c->max_tokens);
    return forward(m, tokens, 1, T, logits, c, b);
}
