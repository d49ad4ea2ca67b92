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
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
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
    tensor x2, y2;
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

/* Scratch tensors of one call, freed together. */
typedef struct {
    tensor t[32];
    int n;
} scratch;

static attamba_status scratch_f32(model *m, scratch *s, tensor **out, int ndim, const int64_t *shape) {
    if (s->n == (int)CORE_LEN(s->t)) return rt_fail(m->ctx, ATTAMBA_ERR_INTERNAL, "scratch full");
    *out = &s->t[s->n];
    RT_TRY(tensor_alloc_f32(m->ctx, *out, ndim, shape));
    s->n++;
    return ATTAMBA_OK;
}

static void scratch_free(scratch *s) {
    for (int i = 0; i < s->n; i++) tensor_free(&s->t[i]);
    s->n = 0;
}

/* dst [1, w-1, C] = the rows T-w+1 .. T-1 of src [1, T, C] that lie in the last segment; zeros elsewhere. */
static attamba_status conv_tail(const tensor *src, const tensor *dst, int64_t seg_first) {
    int64_t T = src->shape[1], W1 = dst->shape[1];
    for (int64_t j = 0; j < W1; j++) {
        int64_t p = T - W1 + j;
        tensor d, sr;
        RT_TRY(tensor_slice(dst, 1, j, 1, &d));
        attamba_status s = p >= 0 && p >= seg_first ? tensor_slice(src, 1, p, 1, &sr) : ATTAMBA_OK;
        if (!s) s = p >= 0 && p >= seg_first ? tensor_copy(&d, &sr) : tensor_fill(&d, 0.0);
        tensor_free(&d);
        tensor_free(&sr);
        RT_TRY(s);
    }
    return ATTAMBA_OK;
}

attamba_status model_ssm_prefill(model *m, const ssm_weights *w, const tensor *x, const tensor *seg_start,
                                 tensor *kv, const ssm_tail *tail) {
    const model_config *c = &m->cfg;
    int64_t B = x->shape[0], T = x->shape[1], E = c->ssm_inner, GN = (int64_t)c->ssm_groups * c->ssm_state;
    scratch s = {0};
    tensor *z = NULL, *xs_in = NULL, *b_in = NULL, *c_in = NULL, *dt = NULL;
    tensor *xs = NULL, *bm = NULL, *cm = NULL, *y = NULL;
    attamba_status st;
#define TRY(e) do { if ((st = (e))) goto done; } while (0)
    TRY(scratch_f32(m, &s, &z, 3, (int64_t[]){B, T, E}));
    TRY(scratch_f32(m, &s, &xs_in, 3, (int64_t[]){B, T, E}));
    TRY(scratch_f32(m, &s, &b_in, 3, (int64_t[]){B, T, GN}));
    TRY(scratch_f32(m, &s, &c_in, 3, (int64_t[]){B, T, GN}));
    TRY(scratch_f32(m, &s, &dt, 3, (int64_t[]){B, T, c->ssm_heads}));
    TRY(scratch_f32(m, &s, &xs, 3, (int64_t[]){B, T, E}));
    TRY(scratch_f32(m, &s, &bm, 3, (int64_t[]){B, T, GN}));
    TRY(scratch_f32(m, &s, &cm, 3, (int64_t[]){B, T, GN}));
    TRY(scratch_f32(m, &s, &y, 3, (int64_t[]){B, T, E}));
    TRY(model_linear(m, x, &w->in_z, 0, z));
    TRY(model_linear(m, x, &w->in_xs, 0, xs_in));
    TRY(model_linear(m, x, &w->in_b, 0, b_in));
    TRY(model_linear(m, x, &w->in_c, 0, c_in));
    TRY(model_linear(m, x, &w->in_dt, 0, dt));
    if (tail && c->ssm_conv > 1) { /* the decode cache keeps the last pre-conv rows */
        TRY(conv_tail(xs_in, &tail->conv[0], tail->seg_first));
        TRY(conv_tail(b_in, &tail->conv[1], tail->seg_first));
        TRY(conv_tail(c_in, &tail->conv[2], tail->seg_first));
    }
    if (c->ssm_conv > 0) {
        TRY(ops_conv1d(m->ctx, xs_in, &w->conv_xs, seg_start, 1, xs));
        TRY(ops_conv1d(m->ctx, b_in, &w->conv_b, seg_start, 1, bm));
        TRY(ops_conv1d(m->ctx, c_in, &w->conv_c, seg_start, 1, cm));
    } else {
        TRY(ops_silu(m->ctx, xs_in, xs));
        TRY(ops_silu(m->ctx, b_in, bm));
        TRY(ops_silu(m->ctx, c_in, cm));
    }
    TRY(ops_ssm_scan(m->ctx, xs, bm, cm, dt, w->dt_bias, w->A_log, w->D, seg_start, c->ssm_groups, y,
                     tail ? (tensor *)&tail->state : NULL));
    TRY(ops_gated_rmsnorm(m->ctx, y, z, w->norm, c->norm_eps, xs)); /* xs is free again: reuse it */
    TRY(tensor_copy(kv, x));
    TRY(model_linear(m, xs, w->out_proj, 1, kv));
#undef TRY
done:
    scratch_free(&s);
    return st;
}

/* ---- the forward pass ---- */

/* The forward pass; with a cache (B = 1) it also leaves sequence b's decode state there. */
static attamba_status forward(model *m, const int32_t *tokens, int B, int T, tensor *logits, kv_cache *cache, int b) {
    const model_config *c = &m->cfg;
    if (B < 1 || T < 1) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "forward: B = %d, T = %d", B, T);
    for (int64_t i = 0; i < (int64_t)B * T; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "forward: token %d at index %lld is outside [0, %d)",
                           tokens[i], (long long)i, c->vocab_size);
    int64_t d = c->dim, qw = (int64_t)c->n_heads * c->head_dim, kvw = (int64_t)c->n_kv_heads * c->head_dim;
    scratch s = {0};
    tensor ids = {0}, pos0 = {0}, bpos = {0}, seg = {0};
    ssm_tail tails[2];
    memset(tails, 0, sizeof tails);
    tensor *h = NULL, *x = NULL, *q = NULL, *k = NULL, *v = NULL, *o = NULL, *f1 = NULL, *f3 = NULL;
    attamba_status st;
#define TRY(e) do { if ((st = (e))) goto done; } while (0)
    TRY(tensor_alloc(m->ctx, &ids, TENSOR_I32, 2, (int64_t[]){B, T}));
    TRY(tensor_upload(&ids, tokens));
    TRY(tensor_alloc(m->ctx, &pos0, TENSOR_I32, 1, (int64_t[]){B}));
    TRY(tensor_fill(&pos0, 0));
    TRY(scratch_f32(m, &s, &h, 3, (int64_t[]){B, T, d}));
    TRY(scratch_f32(m, &s, &x, 3, (int64_t[]){B, T, d}));
    TRY(scratch_f32(m, &s, &q, 3, (int64_t[]){B, T, qw}));
    TRY(scratch_f32(m, &s, &k, 3, (int64_t[]){B, T, kvw}));
    TRY(scratch_f32(m, &s, &v, 3, (int64_t[]){B, T, kvw}));
    TRY(scratch_f32(m, &s, &o, 3, (int64_t[]){B, T, qw}));
    TRY(scratch_f32(m, &s, &f1, 3, (int64_t[]){B, T, c->ffn_dim}));
    TRY(scratch_f32(m, &s, &f3, 3, (int64_t[]){B, T, c->ffn_dim}));
    TRY(ops_embedding(m->ctx, &ids, m->tok_emb, h));
    for (int l = 0; l < c->n_layers; l++) {
        const layer_weights *L = &m->layers[l];
        TRY(ops_rmsnorm(m->ctx, h, L->attn_norm, c->norm_eps, x));
        TRY(model_linear(m, x, L->wq, 0, q));
        attn_mask mask = {ATTN_CAUSAL, c->window, NULL};
        if (c->kind == MODEL_ATTAMBA) {
            TRY(model_boundaries(m, l, T, &bpos, &seg));
            for (int i = 0; i < 2 && cache; i++) TRY(kv_cache_ssm_tail(cache, b, l, i, T, &tails[i]));
            TRY(model_ssm_prefill(m, &L->ssm[0], x, &seg, k, cache ? &tails[0] : NULL));
            TRY(model_ssm_prefill(m, &L->ssm[1], x, &seg, v, cache ? &tails[1] : NULL));
            if (!c->pseudo) {
                mask.mode = ATTN_COMPRESSED;
                mask.boundaries = &bpos;
            }
        } else {
            TRY(model_linear(m, x, L->wk, 0, k));
            TRY(model_linear(m, x, L->wv, 0, v));
            if (c->kind == MODEL_TRANSFORMER_SWA) mask.mode = ATTN_SLIDING;
        }
        TRY(ops_rope(m->ctx, q, c->n_heads, &pos0, c->rope_theta));
        TRY(ops_rope(m->ctx, k, c->n_kv_heads, &pos0, c->rope_theta));
        if (cache) TRY(kv_cache_fill_layer(cache, b, l, k, v));
        TRY(ops_attention_prefill(m->ctx, q, k, v, c->n_heads, c->n_kv_heads, &mask, o));
        TRY(model_linear(m, o, L->wo, 1, h));
        TRY(ops_rmsnorm(m->ctx, h, L->ffn_norm, c->norm_eps, x));
        TRY(model_linear(m, x, L->w1, 0, f1));
        TRY(model_linear(m, x, L->w3, 0, f3));
        TRY(ops_swiglu(m->ctx, f1, f3, f1));
        TRY(model_linear(m, f1, L->w2, 1, h));
        tensor_free(&bpos);
        tensor_free(&seg);
        for (int i = 0; i < 2; i++) ssm_tail_free(&tails[i]);
    }
    if (logits) {
        TRY(ops_rmsnorm(m->ctx, h, m->norm, c->norm_eps, x));
        TRY(tensor_alloc_f32(m->ctx, logits, 3, ((int64_t[]){B, T, c->vocab_size})));
        TRY(model_linear(m, x, m->output, 0, logits));
    }
    if (cache) cache->pos[b] = T;
#undef TRY
done:
    if (st && logits) tensor_free(logits);
    tensor_free(&ids);
    tensor_free(&pos0);
    tensor_free(&bpos);
    tensor_free(&seg);
    for (int i = 0; i < 2; i++) ssm_tail_free(&tails[i]);
    scratch_free(&s);
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
