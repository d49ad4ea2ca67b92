/* The LM forward pass (SPEC 3): embedding, n_layers of [RMSNorm, Q/K/V (SSMs for attamba),
 * RoPE, attention, output projection, SwiGLU FFN], final norm, output projection. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model.h"
#include "ops/attention.h"
#include "ops/loss.h"
#include "ops/layer.h"
#include "ops/ops.h"
#include "ops/ssm.h"
#include "kv_cache.h"
#include "tokenizer.h"

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
        snprintf(name, sizeof name, "layers.%d.%s.in_proj.weight", l, which);
        const tensor *in = weights_get(&m->w, name);
        snprintf(name, sizeof name, "layers.%d.%s.conv1d.weight", l, which);
        S->conv = weights_get(&m->w, name);
#undef SSM
        RT_TRY(rows(in, 0, E, &S->in_z));
        RT_TRY(rows(in, E, E + 2 * GN + nh, &S->in_xbcdt));
    }
    return ATTAMBA_OK;
}

/* Points the model's weight fields at the views of what it holds (layers [first_layer, end_layer)). */
static attamba_status bind(model *m) {
    m->layers = calloc((size_t)m->cfg.n_layers, sizeof *m->layers);
    if (!m->layers) return rt_fail(m->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    m->tok_emb = weights_get(&m->w, "tok_embeddings.weight");
    m->norm = weights_get(&m->w, "norm.weight");
    m->output = m->cfg.tie_embeddings ? m->tok_emb : weights_get(&m->w, "output.weight");
    for (int l = m->first_layer; l < m->end_layer; l++) RT_TRY(bind_layer(m, l));
    return ATTAMBA_OK;
}

/* A sentencepiece config's tokenizer file, read into m and checked against the config. */
static attamba_status load_tokenizer(model *m) {
    if (m->cfg.tokenizer == TOKENIZER_BYTES) return ATTAMBA_OK;
    char err[800];
    tokenizer *t = NULL;
    attamba_status s = tokenizer_file_read(&m->cfg, &m->tok_file, &m->tok_file_size, err, sizeof err);
    if (!s) s = tokenizer_for_config(&m->cfg, m->tok_file, m->tok_file_size, &t, err, sizeof err);
    tokenizer_destroy(t);
    return s ? rt_fail(m->ctx, s, "%s", err) : ATTAMBA_OK;
}

/* A model (or the stage of layers [l0, l1)) with allocated, uninitialised weights. */
static attamba_status create(rt_ctx *ctx, const model_config *cfg, int l0, int l1, model **out) {
    *out = NULL;
    char err[400];
    if (model_config_validate(cfg, err, sizeof err)) return rt_fail(ctx, ATTAMBA_ERR_FORMAT, "%s", err);
    model *m = calloc(1, sizeof *m);
    if (!m) return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    m->ctx = ctx;
    m->cfg = *cfg;
    m->first_layer = l0;
    m->end_layer = l1;
    attamba_status s = l0 == 0 ? load_tokenizer(m) : ATTAMBA_OK;
    if (!s) s = weights_alloc_layers(ctx, cfg, l0, l1, &m->w);
    if (!s) s = bind(m);
    if (s) {
        model_destroy(m);
        return s;
    }
    *out = m;
    return ATTAMBA_OK;
}

attamba_status model_create(rt_ctx *ctx, const model_config *cfg, model **out) {
    return create(ctx, cfg, 0, cfg->n_layers, out);
}

void model_destroy(model *m) {
    if (!m) return;
    model_destroy(m->next);
    if (m->layers)
        for (int l = 0; l < m->cfg.n_layers; l++)
            for (int s = 0; s < 2; s++) {
                ssm_weights *S = &m->layers[l].ssm[s];
                tensor_free(&S->in_z);
                tensor_free(&S->in_xbcdt);
            }
    free(m->layers);
    model_tokenizer_free(m);
    free(m->config_json);
    free(m->tok_file);
    model_workspace_free(m->ws);
    free(m->ws);
    weights_free(&m->w);
    free(m);
}

attamba_status model_init_random(model *m, uint64_t seed) {
    float *host = malloc((size_t)m->w.numel * sizeof *host);
    if (!host) return rt_fail(m->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    weights_init_host(&m->cfg, m->w.info, m->w.n, seed, host);
    attamba_status s = ATTAMBA_OK;
    for (model *stage = m; stage && !s; stage = stage->next) s = weights_upload_host(&stage->w, host);
    free(host);
    return s;
}

model *model_stage(model *m, int l) {
    while (m->next && l >= m->end_layer) m = m->next;
    return m;
}

int model_stages(const model *m) {
    int n = 0;
    for (; m; m = m->next) n++;
    return n;
}

attamba_status model_create_split(rt_ctx *const *ctxs, int n, const model_config *cfg, const double *share,
                                  model **out) {
    *out = NULL;
    if (n < 1 || n > CORE_SPLIT_MAX) return rt_fail(ctxs[0], ATTAMBA_ERR_INVALID_ARG, "a layer split over %d devices", n);
    int layers[CORE_SPLIT_MAX];
    double equal[CORE_SPLIT_MAX] = {0};
    core_split(share ? share : equal, n, cfg->n_layers, layers);
    model **tail = out;
    attamba_status s = ATTAMBA_OK;
    for (int k = 0, l0 = 0; k < n && !s; l0 += layers[k], k++) {
        if (!layers[k]) continue;
        s = create(ctxs[k], cfg, l0, l0 + layers[k], tail);
        if (s) rt_fail_from(ctxs[0], s, ctxs[k]);
        if (*tail) tail = &(*tail)->next;
    }
    if (s) {
        model_destroy(*out);
        *out = NULL;
    }
    return s;
}

attamba_status model_load_split(rt_ctx *const *ctxs, int n, const char *dir, const double *share, model **out) {
    *out = NULL;
    rt_ctx *ctx = ctxs[0];
    char err[600], *cpath = core_strdup_printf("%s/config.json", dir), *wpath = core_strdup_printf("%s/model.safetensors", dir);
    model_config cfg;
    float *host = NULL;
    attamba_status s = !cpath || !wpath ? ATTAMBA_ERR_OUT_OF_MEMORY : model_config_load(cpath, &cfg, err, sizeof err);
    if (!s) s = weights_read_host(&cfg, wpath, &host, err, sizeof err);
    if (s) rt_fail(ctx, s, "%s", s == ATTAMBA_ERR_OUT_OF_MEMORY ? "out of host memory" : err);
    if (!s) s = model_create_split(ctxs, n, &cfg, share, out);
    for (model *st = *out; st && !s; st = st->next)
        s = rt_fail_from(ctx, weights_upload_host(&st->w, host), st->ctx);
    free(host);
    free(cpath);
    free(wpath);
    if (s) {
        model_destroy(*out);
        *out = NULL;
    }
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
        m->end_layer = cfg.n_layers;
        s = load_tokenizer(m);
        if (!s && (s = weights_load(ctx, &cfg, wpath, &m->w, err, sizeof err))) rt_fail(ctx, s, "%s", err);
        if (!s) s = bind(m);
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
    if (m->next || m->w.held != m->w.numel)
        return rt_fail(m->ctx, ATTAMBA_ERR_UNSUPPORTED, "saving a layer-split model: save the whole model it was loaded from");
    if (core_mkdirs(dir) != 0)
        return rt_fail(m->ctx, ATTAMBA_ERR_IO, "cannot create directory %s", dir);
    char err[400], *cpath = core_strdup_printf("%s/config.json", dir), *wpath = core_strdup_printf("%s/model.safetensors", dir);
    attamba_status s = !cpath || !wpath ? ATTAMBA_ERR_OUT_OF_MEMORY : weights_save(&m->w, wpath, err, sizeof err);
    if (!s && m->tok_file) s = tokenizer_file_write(&m->cfg, dir, m->tok_file, m->tok_file_size, err, sizeof err);
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
    for (model *stage = m; stage; stage = stage->next) stage->cfg = c;
    return ATTAMBA_OK;
}

/* ---- building blocks ---- */

attamba_status model_linear(model *m, const tensor *x, const tensor *W, int accumulate, tensor *y) {
    tensor x2 = {0}, y2 = {0};
    RT_TRY(tensor_rows(x, &x2));
    attamba_status s = tensor_rows(y, &y2);
    if (!s) s = ops_gemm(m->ctx, 0, 1, 1.0f, &x2, W, accumulate ? 1.0f : 0.0f, &y2);
    tensor_free(&x2);
    tensor_free(&y2);
    return s;
}

static attamba_status head(model *m, int B, int T, tensor *logits, int last_only);

/* The forward pass over the model's workspace; with a cache (B = 1) it also leaves sequence b's
 * decode state there. Logits [B, T, V], or [B, V] of each sequence's last position when last_only
 * (generation reads nothing else: that skips (T-1)/T of the output layer). */
static attamba_status forward(model *m, const int32_t *tokens, int B, int T, tensor *logits, int last_only,
                              kv_cache *cache, int b) {
    const model_config *c = &m->cfg;
    if (B < 1 || T < 1) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "forward: B = %d, T = %d", B, T);
    for (int64_t i = 0; i < (int64_t)B * T; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "forward: token %d at index %lld is outside [0, %d)",
                           tokens[i], (long long)i, c->vocab_size);
    /* every stage of a layer split in turn (a whole model is one stage), the hidden state handed over */
    model *prev = NULL;
    for (model *st = m; st; prev = st, st = st->next) {
        if (!st->ws && !(st->ws = calloc(1, sizeof *st->ws)))
            return rt_fail(st->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
        model_workspace *ws = st->ws;
        RT_TRY(model_workspace_carve(st, ws, B, T, 0));
        RT_TRY(boundary_plan_update(st, &ws->plan));
        if (prev) RT_TRY(tensor_transfer(&ws->h, &prev->ws->h));
        else RT_TRY(tensor_upload(&ws->ids, tokens));
        layer_mode md = {.pos = &ws->pos, .plan = &ws->plan, .cache = cache, .b = b};
        attamba_status s = model_trunk(st, &ws->ids, &ws->acts, 0, &md, &ws->xf);
        RT_TRY(rt_fail_from(m->ctx, s, st->ctx));
    }
    if (cache) cache->pos[b] = T;
    if (!logits) return ATTAMBA_OK;
    return rt_fail_from(m->ctx, head(prev, B, T, logits, last_only), prev->ctx); /* on the last stage's device */
}

/* Logits from the final norm's output of the model's workspace: [B, T, V], or [B, V] of each
 * sequence's last position. */
static attamba_status head(model *m, int B, int T, tensor *logits, int last_only) {
    const model_config *c = &m->cfg;
    model_workspace *ws = m->ws;
    if (!last_only) {
        RT_TRY(tensor_scratch(m->ctx, logits, TENSOR_F32, 3, (int64_t[]){B, T, c->vocab_size}));
        attamba_status s = model_linear(m, &ws->xf, m->output, 0, logits);
        if (s) tensor_free(logits);
        return s;
    }
    tensor last = {0}; /* [B, d]: row T-1 of every sequence, rows T*d apart */
    RT_TRY(tensor_slice(&ws->xf, 1, T - 1, 1, &last));
    last.ndim = 2;
    last.shape[1] = c->dim;
    last.stride[1] = 1;
    attamba_status s = tensor_scratch(m->ctx, logits, TENSOR_F32, 2, (int64_t[]){B, c->vocab_size});
    if (!s) s = ops_gemm(m->ctx, 0, 1, 1.0f, &last, m->output, 0.0f, logits);
    if (s) tensor_free(logits);
    tensor_free(&last);
    return s;
}

attamba_status model_forward(model *m, const int32_t *tokens, int B, int T, tensor *logits) {
    memset(logits, 0, sizeof *logits);
    return forward(m, tokens, B, T, logits, 0, NULL, 0);
}

static attamba_status prefill(model *m, kv_cache *c, int b, const int32_t *tokens, int T, tensor *logits, int last_only) {
    if (logits) memset(logits, 0, sizeof *logits);
    if (c->m != m) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "model_prefill: the cache was made for another model");
    if (b < 0 || b >= c->B) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "model_prefill: sequence %d of %d", b, c->B);
    if (c->pos[b] != 0) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "model_prefill: sequence %d is not empty", b);
    if (T > c->max_tokens)
        return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "model_prefill: %d tokens exceed the cache's %lld", T,
                       (long long)c->max_tokens);
    return forward(m, tokens, 1, T, logits, last_only, c, b);
}

attamba_status model_prefill(model *m, kv_cache *c, int b, const int32_t *tokens, int T, tensor *logits) {
    return prefill(m, c, b, tokens, T, logits, 0);
}

attamba_status model_prefill_last(model *m, kv_cache *c, int b, const int32_t *tokens, int T, tensor *logits) {
    return prefill(m, c, b, tokens, T, logits, 1);
}

/* ---- losses ---- */

attamba_status model_loss(model *m, const int32_t *tokens, const int32_t *targets, int B, int T, double *sum,
                          int64_t *count) {
    tensor logits = {0}, targets_d = {0};
    double mean = 0;
    RT_TRY(model_forward(m, tokens, B, T, &logits));
    rt_ctx *ctx = logits.buf->ctx; /* the last stage's device with a layer split */
    attamba_status s = tensor_alloc(ctx, &targets_d, TENSOR_I32, 2, ((int64_t[]){B, T}));
    if (!s) s = tensor_upload(&targets_d, targets);
    if (!s) s = ops_cross_entropy_mean(ctx, &logits, &targets_d, -1, &mean, count);
    if (s) rt_fail_from(m->ctx, s, ctx);
    if (!s) *sum = mean * (double)*count;
    tensor_free(&logits);
    tensor_free(&targets_d);
    return s;
}

typedef struct {
    model *m;
    const int32_t *tokens, *targets;
    int B, T;
    double sum;
    int64_t count;
    attamba_status s;
} loss_job;

static void *loss_work(void *arg) {
    loss_job *j = arg;
    j->s = j->B ? model_loss(j->m, j->tokens, j->targets, j->B, j->T, &j->sum, &j->count) : ATTAMBA_OK;
    return NULL;
}

attamba_status model_loss_replicas(model *const *ms, int n, const int32_t *tokens, const int32_t *targets, int B,
                                   int T, double *sum, int64_t *count) {
    if (n < 1 || n > CORE_SPLIT_MAX) return rt_fail(ms[0]->ctx, ATTAMBA_ERR_INVALID_ARG, "model_loss: %d replicas", n);
    double equal[CORE_SPLIT_MAX] = {0};
    int rows[CORE_SPLIT_MAX], started[CORE_SPLIT_MAX] = {0};
    loss_job job[CORE_SPLIT_MAX];
    pthread_t th[CORE_SPLIT_MAX];
    core_split(equal, n, B, rows);
    for (int i = 0, row = 0; i < n; row += rows[i], i++) {
        job[i] = (loss_job){ms[i], tokens + (int64_t)row * T, targets + (int64_t)row * T, rows[i], T, 0, 0, ATTAMBA_OK};
        if (i > 0) started[i] = pthread_create(&th[i], NULL, loss_work, &job[i]) == 0;
        if (i > 0 && !started[i]) loss_work(&job[i]); /* no thread to be had: here */
    }
    loss_work(&job[0]);
    attamba_status s = ATTAMBA_OK;
    *sum = 0;
    *count = 0;
    for (int i = 0; i < n; i++) {
        if (started[i]) pthread_join(th[i], NULL);
        if (job[i].s && !s) s = rt_fail_from(ms[0]->ctx, job[i].s, ms[i]->ctx);
        *sum += job[i].sum;
        *count += job[i].count;
    }
    return s;
}
