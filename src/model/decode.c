/* One decode step over the compressed KV cache: every sequence of the batch appends one token at
 * its own position. The same math as the prefill (model.c), one token at a time:
 * conv and SSM states continue the open segment (restarting after a boundary), keys are stored if
 * their position is a boundary, and attention reads the stored boundaries plus the ring. */
#include <stdlib.h>
#include <string.h>

#include "kv_cache.h"
#include "ops/attention.h"
#include "ops/layer.h"
#include "ops/ops.h"
#include "ops/ssm.h"

typedef struct {
    tensor t[24];
    int n;
} step_scratch;

static attamba_status tmp(model *m, step_scratch *s, tensor **out, int ndim, const int64_t *shape) {
    *out = &s->t[s->n];
    RT_TRY(tensor_alloc_f32(m->ctx, *out, ndim, shape));
    s->n++;
    return ATTAMBA_OK;
}

static attamba_status upload_i32(model *m, tensor *t, const int32_t *host, int64_t n) {
    RT_TRY(tensor_alloc(m->ctx, t, TENSOR_I32, 1, &n));
    return tensor_upload(t, host);
}

/* kv [B,1,d] = x + SSM(x) for one token per sequence, continuing the cached state. */
static attamba_status ssm_step(model *m, kv_cache *c, int l, int i, const tensor *x, const tensor *restart,
                               tensor *kv) {
    const model_config *cfg = &m->cfg;
    const ssm_weights *w = &m->layers[l].ssm[i];
    kv_layer *L = &c->layers[l];
    int64_t B = c->B, E = cfg->ssm_inner, GN = (int64_t)cfg->ssm_groups * cfg->ssm_state;
    step_scratch s = {0};
    tensor *z = NULL, *in[3], *out[3], *dt = NULL, *y = NULL;
    int64_t widths[3] = {E, GN, GN};
    const tensor *conv_w[3] = {&w->conv_xs, &w->conv_b, &w->conv_c}, *in_w[3] = {&w->in_xs, &w->in_b, &w->in_c};
    attamba_status st;
#define TRY(e) do { if ((st = (e))) goto done; } while (0)
    TRY(tmp(m, &s, &z, 2, (int64_t[]){B, E}));
    TRY(tmp(m, &s, &dt, 2, (int64_t[]){B, cfg->ssm_heads}));
    TRY(tmp(m, &s, &y, 2, (int64_t[]){B, E}));
    TRY(model_linear(m, x, &w->in_z, 0, z));
    TRY(model_linear(m, x, &w->in_dt, 0, dt));
    for (int j = 0; j < 3; j++) {
        TRY(tmp(m, &s, &in[j], 2, (int64_t[]){B, widths[j]}));
        TRY(tmp(m, &s, &out[j], 2, (int64_t[]){B, widths[j]}));
        TRY(model_linear(m, x, in_w[j], 0, in[j]));
        if (cfg->ssm_conv > 1) TRY(ops_conv1d_step(m->ctx, in[j], conv_w[j], &L->conv[i][j], restart, 1, out[j]));
        else TRY(ops_silu(m->ctx, in[j], out[j]));
    }
    TRY(ops_ssm_step(m->ctx, out[0], out[1], out[2], dt, w->dt_bias, w->A_log, w->D, restart, cfg->ssm_groups,
                     &L->state[i], y));
    TRY(ops_gated_rmsnorm(m->ctx, y, z, w->norm, cfg->norm_eps, in[0]));
    TRY(tensor_copy(kv, x));
    TRY(model_linear(m, in[0], w->out_proj, 1, kv));
#undef TRY
done:
    for (int k = 0; k < s.n; k++) tensor_free(&s.t[k]);
    return st;
}

/* Appends this step's k, v to the ring and, where the position is stored, to the boundary store. */
static attamba_status cache_append(kv_cache *c, int l, const tensor *k, const tensor *v) {
    const model_config *cfg = &c->m->cfg;
    kv_layer *L = &c->layers[l];
    boundary_spec bs = model_config_boundaries(cfg);
    int changed = 0;
    for (int b = 0; b < c->B; b++) {
        int64_t p = c->pos[b];
        RT_TRY(kv_copy_rows(k, b, 0, &L->kr, b, p % c->R, 1));
        RT_TRY(kv_copy_rows(v, b, 0, &L->vr, b, p % c->R, 1));
        int store = c->store_all || (cfg->kind == MODEL_ATTAMBA && boundary_is_boundary(&bs, l, cfg->n_layers, p));
        if (!store) continue;
        int64_t n = L->nb_host[b];
        if (n >= c->cap) return rt_fail(c->m->ctx, ATTAMBA_ERR_INVALID_ARG, "kv cache full (%d rows)", c->cap);
        RT_TRY(kv_copy_rows(k, b, 0, &L->kb, b, n, 1));
        RT_TRY(kv_copy_rows(v, b, 0, &L->vb, b, n, 1));
        int32_t p32 = (int32_t)p;
        RT_TRY(kv_cache_set_positions(L, b, n, 1, &p32));
        L->nb_host[b] = n + 1;
        changed = 1;
    }
    return changed ? kv_cache_upload_counts(c, L) : ATTAMBA_OK;
}

attamba_status model_decode_step(model *m, kv_cache *c, const int32_t *tokens, tensor *logits) {
    const model_config *cfg = &m->cfg;
    memset(logits, 0, sizeof *logits);
    int64_t B = c->B, d = cfg->dim, qw = (int64_t)cfg->n_heads * cfg->head_dim, kvw = (int64_t)cfg->n_kv_heads * cfg->head_dim;
    for (int b = 0; b < B; b++) {
        if (tokens[b] < 0 || tokens[b] >= cfg->vocab_size)
            return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "decode: token %d outside [0, %d)", tokens[b], cfg->vocab_size);
        if (c->pos[b] >= c->max_tokens)
            return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "decode: sequence %d is at the cache's capacity (%lld tokens)",
                           b, (long long)c->max_tokens);
    }
    step_scratch s = {0};
    tensor ids = {0}, pos = {0}, restart = {0};
    tensor *h = NULL, *x = NULL, *q = NULL, *k = NULL, *v = NULL, *o = NULL, *f1 = NULL, *f3 = NULL;
    int32_t *host = malloc((size_t)B * sizeof *host);
    attamba_status st = host ? ATTAMBA_OK : rt_fail(m->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    boundary_spec bs = model_config_boundaries(cfg);
#define TRY(e) do { if ((st = (e))) goto done; } while (0)
    TRY(st);
    TRY(tensor_alloc(m->ctx, &ids, TENSOR_I32, 2, (int64_t[]){B, 1}));
    TRY(tensor_upload(&ids, tokens));
    for (int b = 0; b < B; b++) host[b] = (int32_t)c->pos[b];
    TRY(upload_i32(m, &pos, host, B));
    TRY(tmp(m, &s, &h, 3, (int64_t[]){B, 1, d}));
    TRY(tmp(m, &s, &x, 3, (int64_t[]){B, 1, d}));
    TRY(tmp(m, &s, &q, 3, (int64_t[]){B, 1, qw}));
    TRY(tmp(m, &s, &k, 3, (int64_t[]){B, 1, kvw}));
    TRY(tmp(m, &s, &v, 3, (int64_t[]){B, 1, kvw}));
    TRY(tmp(m, &s, &o, 3, (int64_t[]){B, 1, qw}));
    TRY(tmp(m, &s, &f1, 3, (int64_t[]){B, 1, cfg->ffn_dim}));
    TRY(tmp(m, &s, &f3, 3, (int64_t[]){B, 1, cfg->ffn_dim}));
    TRY(ops_embedding(m->ctx, &ids, m->tok_emb, h));
    for (int l = 0; l < cfg->n_layers; l++) {
        const layer_weights *L = &m->layers[l];
        kv_layer *C = &c->layers[l];
        TRY(ops_rmsnorm(m->ctx, h, L->attn_norm, cfg->norm_eps, x));
        TRY(model_linear(m, x, L->wq, 0, q));
        if (cfg->kind == MODEL_ATTAMBA) {
            /* a token starts a segment at position 0 or right after a boundary */
            for (int b = 0; b < B; b++)
                host[b] = c->pos[b] == 0 || boundary_is_boundary(&bs, l, cfg->n_layers, c->pos[b] - 1);
            TRY(upload_i32(m, &restart, host, B));
            TRY(ssm_step(m, c, l, 0, x, &restart, k));
            TRY(ssm_step(m, c, l, 1, x, &restart, v));
            tensor_free(&restart);
        } else {
            TRY(model_linear(m, x, L->wk, 0, k));
            TRY(model_linear(m, x, L->wv, 0, v));
        }
        TRY(ops_rope(m->ctx, q, cfg->n_heads, &pos, cfg->rope_theta));
        TRY(ops_rope(m->ctx, k, cfg->n_kv_heads, &pos, cfg->rope_theta));
        TRY(cache_append(c, l, k, v));
        tensor q2 = {0}, o2 = {0};
        TRY(tensor_reshape(q, 2, (int64_t[]){B, qw}, &q2));
        st = tensor_reshape(o, 2, (int64_t[]){B, qw}, &o2);
        if (!st)
            st = ops_attention_decode(m->ctx, &q2, &C->kb, &C->vb, &C->bpos, &C->nb, &C->kr, &C->vr, &pos,
                                      cfg->n_heads, cfg->n_kv_heads, c->window, &o2);
        tensor_free(&q2);
        tensor_free(&o2);
        TRY(st);
        TRY(model_linear(m, o, L->wo, 1, h));
        TRY(ops_rmsnorm(m->ctx, h, L->ffn_norm, cfg->norm_eps, x));
        TRY(model_linear(m, x, L->w1, 0, f1));
        TRY(model_linear(m, x, L->w3, 0, f3));
        TRY(ops_swiglu(m->ctx, f1, f3, f1));
        TRY(model_linear(m, f1, L->w2, 1, h));
    }
    TRY(ops_rmsnorm(m->ctx, h, m->norm, cfg->norm_eps, x));
    TRY(tensor_alloc_f32(m->ctx, logits, 2, ((int64_t[]){B, cfg->vocab_size})));
    TRY(model_linear(m, x, m->output, 0, logits));
    for (int b = 0; b < B; b++) c->pos[b]++;
#undef TRY
done:
    if (st) tensor_free(logits);
    tensor_free(&ids);
    tensor_free(&pos);
    tensor_free(&restart);
    for (int i = 0; i < s.n; i++) tensor_free(&s.t[i]);
    free(host);
    return st;
}
