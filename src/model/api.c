/* The public model and session API (include/attamba/attamba.h) over model.h and kv_cache.h. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kv_cache.h"
#include "ops/loss.h"
#include "tokenizer.h"

attamba_status attamba_model_load(attamba_context *ctx, const char *dir, attamba_model **out) {
    return model_load(ctx, dir, out);
}

attamba_status attamba_model_init(attamba_context *ctx, const char *config, uint64_t seed, attamba_model **out) {
    *out = NULL;
    if (!config) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_model_init: NULL config");
    model_config cfg;
    char err[600];
    int path = strchr(config, '/') || strchr(config, '.'); /* preset names have neither */
    attamba_status s = path ? model_config_load(config, &cfg, err, sizeof err)
                            : model_config_preset(config, &cfg, err, sizeof err);
    if (s) return rt_fail(ctx, s, "attamba_model_init: %s", err);
    model *m;
    RT_TRY(model_create(ctx, &cfg, &m));
    s = model_init_random(m, seed);
    if (s) model_destroy(m);
    else *out = m;
    return s;
}

attamba_status attamba_model_save(const attamba_model *m, const char *dir) {
    if (!dir) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_model_save: NULL dir");
    return model_save(m, dir);
}

attamba_model_params attamba_model_params_default(void) {
    return (attamba_model_params){NULL, 0, ATTAMBA_SPLIT_NONE, NULL};
}

/* A row split: a whole copy of the model in dir on every device (replicas[0], the model itself, on
 * devices[0]), with the devices' shares of a batch's rows. */
static attamba_status load_rows(const char *dir, const attamba_model_params *p, attamba_model **out) {
    rt_ctx *ctx = p->devices[0];
    int n = p->n_devices;
    if (n > ATTAMBA_MAX_DEVICES)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_model_load_with: %d devices (at most %d)", n,
                       ATTAMBA_MAX_DEVICES);
    for (int i = 0; i < n; i++) {
        if (!p->devices[i])
            return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_model_load_with: device %d is NULL", i);
        if (p->tensor_split && !(p->tensor_split[i] >= 0 && p->tensor_split[i] <= 1e9))
            return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_model_load_with: tensor_split[%d] = %g", i,
                           p->tensor_split[i]);
    }
    model *m;
    RT_TRY(model_load(ctx, dir, &m));
    m->replicas = calloc((size_t)n, sizeof *m->replicas);
    m->row_share = p->tensor_split ? malloc((size_t)n * sizeof *m->row_share) : NULL;
    attamba_status s = !m->replicas || (p->tensor_split && !m->row_share)
                           ? rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory")
                           : ATTAMBA_OK;
    if (!s) {
        m->replicas[0] = m;
        m->n_replicas = n;
        if (m->row_share) memcpy(m->row_share, p->tensor_split, (size_t)n * sizeof *m->row_share);
    }
    for (int i = 1; i < n && !s; i++)
        if ((s = model_load(p->devices[i], dir, &m->replicas[i]))) rt_fail_from(ctx, s, p->devices[i]);
    if (s) attamba_model_destroy(m);
    else *out = m;
    return s;
}

attamba_status attamba_model_load_with(const char *dir, const attamba_model_params *p, attamba_model **out) {
    *out = NULL;
    if (!p || !p->devices || p->n_devices < 1 || !p->devices[0]) return ATTAMBA_ERR_INVALID_ARG;
    if (!dir) return rt_fail(p->devices[0], ATTAMBA_ERR_INVALID_ARG, "attamba_model_load_with: NULL dir");
    if (p->split_mode == ATTAMBA_SPLIT_LAYER)
        return model_load_split(p->devices, p->n_devices, dir, p->tensor_split, out);
    if (p->split_mode == ATTAMBA_SPLIT_ROWS) return load_rows(dir, p, out);
    if (p->split_mode != ATTAMBA_SPLIT_NONE || p->n_devices != 1)
        return rt_fail(p->devices[0], ATTAMBA_ERR_INVALID_ARG,
                       "attamba_model_load_with: %d devices need split_mode ATTAMBA_SPLIT_LAYER or ATTAMBA_SPLIT_ROWS",
                       p->n_devices);
    return model_load(p->devices[0], dir, out);
}

void attamba_model_destroy(attamba_model *m) {
    if (!m) return;
    for (int i = 1; i < m->n_replicas; i++) model_destroy(m->replicas[i]);
    free(m->replicas);
    free(m->row_share);
    model_destroy(m);
}

int attamba_model_vocab_size(const attamba_model *m) { return m->cfg.vocab_size; }

const char *attamba_model_config(attamba_model *m) {
    char *text = model_config_to_json(&m->cfg);
    if (!text) {
        rt_fail(m->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "attamba_model_config: out of host memory");
        return NULL;
    }
    free(m->config_json);
    m->config_json = text;
    return text;
}

attamba_status attamba_model_set_attention(attamba_model *m, int chunk, int window, const char *boundaries) {
    if (m->n_sessions) /* their caches are sized and filled for the pattern in force */
        return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG,
                       "attamba_model_set_attention: %d session(s) of this model are open; destroy them first",
                       m->n_sessions);
    RT_TRY(model_set_attention(m, chunk, window, boundaries));
    for (int i = 1; i < m->n_replicas; i++) /* the copies of a row split: the same pattern, already checked */
        RT_TRY(rt_fail_from(m->ctx, model_set_attention(m->replicas[i], chunk, window, boundaries),
                            m->replicas[i]->ctx));
    return ATTAMBA_OK;
}

/* ---- rows of a batch over the replicas of a row split ---- */

typedef struct {
    model *r;
    int i, row, rows;
    model_rows_fn fn;
    void *user;
    attamba_status s;
} rows_job;

/* Tuned kernel parameters dropped so far on the devices of m's stages (rt.h: on_kernel_failure). */
static int fallbacks(const model *m) {
    int n = 0;
    for (; m; m = m->next) n += m->ctx->tuning_fallbacks;
    return n;
}

/* fn on rows of r; a failure that dropped the device's tuned parameters runs once more with the defaults
 * (forward, loss and argmax change nothing but their outputs, so a second run is safe). */
static attamba_status rows_once(model *r, int i, int row, int rows, model_rows_fn fn, void *user) {
    int before = fallbacks(r);
    attamba_status s = fn(r, i, row, rows, user);
    if (s && fallbacks(r) != before) s = fn(r, i, row, rows, user);
    return s;
}

static void *rows_work(void *arg) {
    rows_job *j = arg;
    j->s = rows_once(j->r, j->i, j->row, j->rows, j->fn, j->user);
    return NULL;
}

attamba_status model_rows_run(model *m, int B, model_rows_fn fn, void *user) {
    if (B < 1) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "a batch of %d rows", B);
    if (m->n_replicas <= 1) return rows_once(m, 0, 0, B, fn, user);
    int n = m->n_replicas, rows[CORE_SPLIT_MAX], started[CORE_SPLIT_MAX] = {0};
    double equal[CORE_SPLIT_MAX] = {0};
    rows_job job[CORE_SPLIT_MAX];
    pthread_t th[CORE_SPLIT_MAX];
    core_split(m->row_share ? m->row_share : equal, n, B, rows);
    for (int i = 0, row = 0; i < n; row += rows[i], i++) {
        job[i] = (rows_job){m->replicas[i], i, row, rows[i], fn, user, ATTAMBA_OK};
        if (i > 0 && rows[i]) started[i] = pthread_create(&th[i], NULL, rows_work, &job[i]) == 0;
        if (i > 0 && rows[i] && !started[i]) rows_work(&job[i]); /* no thread to be had: here */
    }
    if (rows[0]) rows_work(&job[0]);
    attamba_status s = ATTAMBA_OK;
    for (int i = 0; i < n; i++) {
        if (started[i]) pthread_join(th[i], NULL);
        if (job[i].s && !s) s = rt_fail_from(m->ctx, job[i].s, m->replicas[i]->ctx);
    }
    return s;
}

typedef struct {
    const int32_t *tokens, *targets;
    int T;
    float *logits;
    double sum[CORE_SPLIT_MAX];
    int64_t count[CORE_SPLIT_MAX];
} rows_args;

static attamba_status forward_rows(model *r, int i, int row, int rows, void *user) {
    (void)i;
    rows_args *a = user;
    int64_t V = r->cfg.vocab_size;
    tensor out;
    RT_TRY(model_forward(r, a->tokens + (int64_t)row * a->T, rows, a->T, &out));
    attamba_status s = tensor_download(&out, a->logits + (int64_t)row * a->T * V);
    tensor_free(&out);
    return s;
}

attamba_status attamba_model_forward(attamba_model *m, const int32_t *tokens, int batch, int T, float *logits) {
    if (!tokens || !logits) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_model_forward: NULL buffer");
    if (batch < 1 || T < 1) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "forward: B = %d, T = %d", batch, T);
    rows_args a = {.tokens = tokens, .T = T, .logits = logits};
    return model_rows_run(m, batch, forward_rows, &a);
}

static attamba_status loss_rows(model *r, int i, int row, int rows, void *user) {
    rows_args *a = user;
    int64_t at = (int64_t)row * a->T;
    return model_loss(r, a->tokens + at, a->targets + at, rows, a->T, &a->sum[i], &a->count[i]);
}

attamba_status attamba_model_loss(attamba_model *m, const int32_t *tokens, const int32_t *targets, int batch, int T,
                                  double *sum, int64_t *count) {
    static const char *op = "attamba_model_loss";
    if (!tokens || !targets || !sum || !count) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "%s: NULL buffer", op);
    if (batch < 1 || T < 1) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "%s: B = %d, T = %d", op, batch, T);
    *sum = 0;
    *count = 0;
    /* every negative target is "not scored", which the loss op spells -1 */
    int32_t *own = NULL;
    int64_t n = (int64_t)batch * T;
    for (int64_t i = 0; i < n && !own; i++)
        if (targets[i] < -1) {
            if (!(own = malloc((size_t)n * sizeof *own)))
                return rt_fail(m->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "%s: out of host memory", op);
            for (int64_t j = 0; j < n; j++) own[j] = targets[j] < 0 ? -1 : targets[j];
        }
    rows_args a = {.tokens = tokens, .targets = own ? own : targets, .T = T};
    attamba_status s = model_rows_run(m, batch, loss_rows, &a);
    for (int i = 0; i < CORE_SPLIT_MAX && !s; i++) {
        *sum += a.sum[i];
        *count += a.count[i];
    }
    free(own);
    return s;
}

/* ---- tokenizer ---- */

void model_tokenizer_free(model *m) {
    if (!m->tok) return;
    tokenizer_destroy(m->tok->t);
    free(m->tok);
    m->tok = NULL;
}

attamba_status attamba_model_tokenizer(attamba_model *m, const attamba_tokenizer **out) {
    *out = NULL;
    if (!m->tok) {
        char err[800];
        attamba_tokenizer *t = calloc(1, sizeof *t);
        if (!t) return rt_fail(m->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "tokenizer: out of host memory");
        attamba_status s = tokenizer_for_config(&m->cfg, m->tok_file, m->tok_file_size, &t->t, err, sizeof err);
        if (s) {
            free(t);
            return rt_fail(m->ctx, s, "the model's tokenizer: %s", err);
        }
        t->ctx = m->ctx;
        m->tok = t;
    }
    *out = m->tok;
    return ATTAMBA_OK;
}

int attamba_tokenizer_vocab_size(const attamba_tokenizer *t) { return t->t->vocab_size; }
int32_t attamba_tokenizer_bos(const attamba_tokenizer *t) { return t->t->bos_id; }
int32_t attamba_tokenizer_eos(const attamba_tokenizer *t) { return t->t->eos_id; }

attamba_status attamba_tokenizer_encode(const attamba_tokenizer *t, const char *text, size_t len, int add_bos,
                                        int32_t *ids, int64_t cap, int64_t *n) {
    if ((!text && len) || (!ids && cap > 0) || cap < 0 || !n)
        return rt_fail(t->ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_tokenizer_encode: NULL buffer or negative cap");
    int64_t first = add_bos ? 1 : 0;
    if (add_bos && cap > 0) ids[0] = t->t->bos_id;
    attamba_status s =
        t->t->encode(t->t, text ? text : "", len, ids + first * (cap > 0), cap > first ? cap - first : 0, n);
    if (s) return rt_fail(t->ctx, s, "attamba_tokenizer_encode: the %s tokenizer failed (see the log)", t->t->name);
    *n += first;
    return ATTAMBA_OK;
}

attamba_status attamba_tokenizer_decode(const attamba_tokenizer *t, const int32_t *ids, int64_t n, char *out,
                                        size_t cap, size_t *len) {
    if ((!ids && n > 0) || n < 0 || (!out && cap > 0) || !len)
        return rt_fail(t->ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_tokenizer_decode: NULL buffer or negative count");
    size_t w = 0;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->t->vocab_size)
            return rt_fail(t->ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_tokenizer_decode: id %d at %lld outside [0, %d)",
                           ids[i], (long long)i, t->t->vocab_size);
        char piece[64];
        int k = t->t->decode(t->t, ids[i], piece, (int)sizeof piece);
        if (k > (int)sizeof piece) { /* a long piece: straight into out, as far as it fits */
            if (w < cap) t->t->decode(t->t, ids[i], out + w, (int)CORE_MIN((size_t)k, cap - w));
            w += (size_t)k;
            continue;
        }
        for (int j = 0; j < k; j++, w++)
            if (w < cap) out[w] = piece[j];
    }
    if (w < cap) out[w] = '\0';
    *len = w;
    return ATTAMBA_OK;
}

/* ---- sampler ---- */

struct attamba_sampler {
    rt_ctx *ctx;
    attamba_sampler_params p;
    sampler s;
    float *row; /* the caller's logits, copied (the penalty works in place) */
    int cap;
};

attamba_sampler_params attamba_sampler_params_default(void) {
    return (attamba_sampler_params){.temperature = 0.8f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f,
                                    .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 0};
}

attamba_status attamba_sampler_create(attamba_context *ctx, const attamba_sampler_params *p, attamba_sampler **out) {
    static const char *op = "attamba_sampler_create";
    *out = NULL;
    if (!p) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: NULL params", op);
    if (!isfinite(p->temperature))
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: temperature must be finite, got %g", op, (double)p->temperature);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: top_p must be in (0, 1], got %g", op, (double)p->top_p);
    attamba_sampler *sm = calloc(1, sizeof *sm);
    if (!sm) return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "%s: out of host memory", op);
    *sm = (attamba_sampler){.ctx = ctx, .p = *p};
    sampler_init(&sm->s, p->temperature, p->top_k, p->top_p, p->seed);
    attamba_status s = sampler_set_filters(ctx, &sm->s, p->min_p, p->repeat_penalty, p->repeat_last_n);
    if (s) {
        free(sm);
        return s;
    }
    *out = sm;
    return ATTAMBA_OK;
}

void attamba_sampler_destroy(attamba_sampler *s) {
    if (!s) return;
    sampler_free(&s->s);
    free(s->row);
    free(s);
}

attamba_status attamba_sampler_sample(attamba_sampler *s, const float *logits, int n_vocab, int32_t *token) {
    if (!logits || !token || n_vocab < 1)
        return rt_fail(s->ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_sampler_sample: NULL buffer or n_vocab %d < 1", n_vocab);
    if (n_vocab > s->cap) {
        float *row = realloc(s->row, (size_t)n_vocab * sizeof *row);
        if (!row) return rt_fail(s->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "attamba_sampler_sample: out of host memory");
        s->row = row, s->cap = n_vocab;
    }
    memcpy(s->row, logits, (size_t)n_vocab * sizeof *logits);
    RT_TRY(sampler_sample_host(s->ctx, &s->s, s->row, 1, n_vocab, token));
    sampler_accept(&s->s, *token);
    return ATTAMBA_OK;
}

void attamba_sampler_accept(attamba_sampler *s, int32_t token) { sampler_accept(&s->s, token); }

void attamba_sampler_reset(attamba_sampler *s) {
    core_rng_seed(&s->s.rng, s->p.seed);
    s->s.n_seen = 0;
}

void attamba_sampler_set_seed(attamba_sampler *s, uint64_t seed) {
    s->p.seed = seed;
    attamba_sampler_reset(s);
}

/* ---- sessions ---- */

attamba_session_params attamba_session_params_default(int64_t max_tokens) {
    attamba_session_params p = {.n_seq = 1, .max_tokens = max_tokens, .cache_type = ATTAMBA_CACHE_F32};
    return p;
}

attamba_status attamba_session_create_with(attamba_model *m, const attamba_session_params *p, attamba_session **out) {
    static const char *op = "attamba_session_create";
    *out = NULL;
    if (p->n_seq < 1 || p->n_seq > 4096)
        return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "%s: n_seq %d outside [1, 4096]", op, p->n_seq);
    tensor_dtype store;
    RT_TRY(kv_cache_store_type(m->ctx, op, p->cache_type, &store));
    RT_TRY(kv_cache_create(m, p->n_seq, p->max_tokens, store, out));
    m->n_sessions++;
    return ATTAMBA_OK;
}

attamba_status attamba_session_create(attamba_model *m, int64_t max_tokens, attamba_session **out) {
    attamba_session_params p = attamba_session_params_default(max_tokens);
    return attamba_session_create_with(m, &p, out);
}

attamba_status attamba_session_create_batch(attamba_model *m, int n_seq, int64_t max_tokens, attamba_session **out) {
    attamba_session_params p = attamba_session_params_default(max_tokens);
    p.n_seq = n_seq;
    return attamba_session_create_with(m, &p, out);
}

void attamba_session_destroy(attamba_session *s) {
    if (!s) return;
    s->m->n_sessions--;
    kv_cache_destroy(s);
}

int attamba_session_sequences(const attamba_session *s) { return s->B; }

static attamba_status check_seq(const attamba_session *s, const char *op, int seq) {
    if (seq < 0 || seq >= s->B)
        return rt_fail(s->m->ctx, ATTAMBA_ERR_INVALID_ARG, "%s: sequence %d outside [0, %d)", op, seq, s->B);
    return ATTAMBA_OK;
}

/* Sequence seq's logits [1, V] from the rows of lg ([B, V] or [1, V]) to the host. */
static attamba_status download_row(const tensor *lg, int row, float *logits) {
    tensor r = {0};
    attamba_status s = tensor_slice(lg, 0, row, 1, &r);
    if (!s) s = tensor_download(&r, logits);
    tensor_free(&r);
    return s;
}

attamba_status attamba_session_prefill(attamba_session *s, int seq, const int32_t *tokens, int n, float *logits) {
    static const char *op = "attamba_session_prefill";
    model *m = s->m;
    if (!tokens || n < 1) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "%s: no tokens", op);
    RT_TRY(check_seq(s, op, seq));
    if (s->pos[seq] != 0)
        return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "%s: sequence %d is not empty (%lld tokens; reset it first)",
                       op, seq, (long long)s->pos[seq]);
    tensor lg = {0};
    attamba_status st = model_prefill_last(m, s, seq, tokens, n, logits ? &lg : NULL);
    if (!st && logits) st = download_row(&lg, 0, logits);
    tensor_free(&lg);
    return st;
}

attamba_status attamba_session_step(attamba_session *s, const int32_t *tokens, float *logits) {
    if (!tokens) return rt_fail(s->m->ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_session_step: no tokens");
    tensor lg = {0};
    attamba_status st = model_decode_step(s->m, s, tokens, &lg);
    if (!st && logits) st = tensor_download(&lg, logits);
    tensor_free(&lg);
    return st;
}

attamba_status attamba_session_step_sample(attamba_session *s, const int32_t *tokens,
                                           attamba_sampler *const *samplers, int32_t *next) {
    static const char op[] = "attamba_session_step_sample";
    model *m = s->m;
    if (!tokens || !samplers || !next)
        return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "%s: NULL tokens, samplers or next", op);
    int B = s->B, V = m->cfg.vocab_size, on_device = 0;
    for (int b = 0; b < B; b++)
        on_device |= tokens[b] != ATTAMBA_TOKEN_SKIP && samplers[b] && sampler_takes_argmax(&samplers[b]->s);
    tensor lg = {0};
    int32_t *argmax = on_device ? malloc((size_t)B * sizeof *argmax) : NULL;
    float *row = NULL;
    attamba_status st = on_device && !argmax ? rt_fail(m->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "%s: out of host memory", op)
                                             : ATTAMBA_OK;
    if (!st) st = model_decode_step(m, s, tokens, &lg);
    if (!st && on_device) /* every row's argmax in one launch, on the last stage's device */
        st = rt_fail_from(m->ctx, ops_argmax_host(lg.buf->ctx, &lg, argmax), lg.buf->ctx);
    for (int b = 0; !st && b < B; b++) {
        attamba_sampler *sm = tokens[b] == ATTAMBA_TOKEN_SKIP ? NULL : samplers[b];
        next[b] = ATTAMBA_TOKEN_SKIP; /* tokens[b] is read: next may be tokens */
        if (!sm) continue;
        if (sampler_takes_argmax(&sm->s)) {
            next[b] = argmax[b];
            sampler_accept(&sm->s, next[b]);
            continue;
        }
        if (!row && !(row = malloc((size_t)V * sizeof *row)))
            st = rt_fail(m->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "%s: out of host memory", op);
        if (!st) st = download_row(&lg, b, row);
        if (!st) st = rt_fail_from(m->ctx, attamba_sampler_sample(sm, row, V, &next[b]), sm->ctx);
    }
    tensor_free(&lg);
    free(argmax);
    free(row);
    return st;
}

attamba_status attamba_session_feed(attamba_session *s, const int32_t *tokens, int n, float *logits) {
    model *m = s->m;
    if (!tokens || n < 1) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_session_feed: no tokens");
    if (s->B != 1)
        return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG,
                       "attamba_session_feed: a batch of %d sequences is fed by attamba_session_prefill and "
                       "attamba_session_step", s->B);
    if (s->pos[0] == 0) return attamba_session_prefill(s, 0, tokens, n, logits); /* the whole prompt at once */
    for (int i = 0; i < n; i++) RT_TRY(attamba_session_step(s, &tokens[i], i == n - 1 ? logits : NULL));
    return ATTAMBA_OK;
}

attamba_status attamba_session_fill_synthetic(attamba_session *s, int64_t tokens) {
    static const char *op = "attamba_session_fill_synthetic";
    model *m = s->m;
    if (tokens < 0 || tokens > s->max_tokens)
        return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "%s: %lld tokens outside [0, %lld] (the session's capacity)",
                       op, (long long)tokens, (long long)s->max_tokens);
    for (int b = 0; b < s->B; b++)
        if (s->pos[b] != 0)
            return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG,
                           "%s: sequence %d is not empty (%lld tokens; reset it first)", op, b, (long long)s->pos[b]);
    attamba_status st = kv_cache_fill_synthetic(s, tokens);
    if (st) kv_cache_reset(s, -1); /* half filled is no state to decode from */
    return st;
}

attamba_status attamba_session_reset(attamba_session *s, int seq) {
    if (seq >= 0) RT_TRY(check_seq(s, "attamba_session_reset", seq));
    kv_cache_reset(s, seq);
    return ATTAMBA_OK;
}

int64_t attamba_session_position(const attamba_session *s, int seq) {
    return seq >= 0 && seq < s->B ? s->pos[seq] : -1;
}

int64_t attamba_session_cache_bytes(const attamba_session *s, int seq) {
    return seq >= 0 && seq < s->B ? kv_cache_bytes_used(s, seq) : -1;
}
