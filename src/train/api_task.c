/* The public synthetic recall tasks (include/attamba/attamba.h) over task.h: task files generated from
 * parameters, and a model's greedy answers on them scored exactly, with 95% Wilson intervals. */
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "task.h"

_Static_assert(TASK_MAX_GROUPS == ATTAMBA_TASK_MAX_GROUPS, "the public report holds every tally of task_report");

attamba_task_params attamba_task_params_default(const char *kind) {
    return (attamba_task_params){.kind = kind, .example = 256, .examples = 1000, .seed = 1, .vocab = 256,
                                 .pairs = {8}, .n_pairs = 1, .digits = 5};
}

attamba_status attamba_task_generate(const attamba_task_params *p, const char *path, int64_t *n_answers,
                                     char *errbuf, size_t errbuf_size) {
    static const char *op = "attamba_task_generate";
    if (!p || !path) return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_INVALID_ARG, "%s: NULL params or path", op);
    task_kind kind = p->kind ? task_kind_from_name(p->kind) : (task_kind)0;
    if (!kind)
        return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_INVALID_ARG, "unknown task '%s' (want mqar or passkey)",
                           p->kind ? p->kind : "(null)");
    if (p->n_pairs < 1 || p->n_pairs > 16 || p->n_depth < 0 || p->n_depth > 16)
        return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_INVALID_ARG, "%s: %d pair counts and %d depths (want 1-16 "
                           "and 0-16)", op, p->n_pairs, p->n_depth);
    task_params tp = {.kind = kind, .example = p->example, .examples = p->examples, .seed = p->seed,
                      .vocab = p->vocab, .n_pairs = p->n_pairs, .digits = p->digits, .n_depth = p->n_depth};
    memcpy(tp.pairs, p->pairs, sizeof tp.pairs);
    memcpy(tp.depth, p->depth, sizeof tp.depth);
    char err[1024];
    uint8_t *text = NULL;
    if (kind == TASK_PASSKEY) {
        size_t len = 0;
        if (!p->filler)
            return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_INVALID_ARG, "passkey: no filler text file given");
        if (!(text = (uint8_t *)core_read_file(p->filler, 0, &len, err, sizeof err)))
            return core_errbuf(errbuf, errbuf_size, ATTAMBA_ERR_IO, "the filler text: %s", err);
        tp.filler = text, tp.filler_len = (int64_t)len;
    }
    task_set t;
    attamba_status s = task_generate(&tp, &t, err, sizeof err);
    if (!s) {
        s = task_write(path, &t, err, sizeof err);
        if (!s && n_answers) *n_answers = t.n_items;
        task_free(&t);
    }
    free(text);
    return s ? core_errbuf(errbuf, errbuf_size, s, "%s", err) : ATTAMBA_OK;
}

/* The predictor task_score calls: the model's greedy ids; a failure's status is kept (its message is on
 * the context). */
typedef struct predictor {
    model *m;
    attamba_status s;
} predictor;

static int predict_argmax(void *user, const int32_t *tokens, int B, int T, int32_t *argmax) {
    predictor *p = user;
    p->s = attamba_model_argmax(p->m, tokens, B, T, argmax);
    return p->s != ATTAMBA_OK;
}

/* A tally with its interval. */
static attamba_tally public_tally(const task_tally *t) {
    attamba_tally a = {.key = t->key, .right = t->right, .total = t->total};
    task_wilson(t->right, t->total, &a.lo, &a.hi);
    return a;
}

attamba_status attamba_model_score_task(attamba_model *m, const char *path, const char *kind, int batch,
                                        attamba_task_report *out) {
    static const char *op = "attamba_model_score_task";
    if (!path || !out) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "%s: NULL path or report", op);
    if (batch < 1) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "%s: batch %d (want >= 1)", op, batch);
    char err[1024];
    task_set t;
    attamba_status s = task_read(path, &t, err, sizeof err);
    if (s) return rt_fail(m->ctx, s, "%s", err);
    if (kind && task_kind_from_name(kind) != t.kind)
        s = rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "%s holds %s examples, not %s", path, task_kind_name(t.kind), kind);
    for (int64_t i = 0; i < t.n && !s; i++)
        if (t.tok[i] >= m->cfg.vocab_size)
            s = rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "%s has token %d, outside the model's vocabulary of %d", path,
                        t.tok[i], m->cfg.vocab_size);
    task_report r;
    predictor p = {m, ATTAMBA_OK};
    int chunk = m->cfg.kind == MODEL_ATTAMBA ? m->cfg.chunk : 0;
    if (!s && task_score(&t, m->cfg.bos_id, predict_argmax, &p, batch, chunk, &r))
        s = p.s ? p.s : rt_fail(m->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "%s: out of host memory", op);
    if (!s) {
        memset(out, 0, sizeof *out);
        snprintf(out->kind, sizeof out->kind, "%s", task_kind_name(t.kind));
        out->example = t.example;
        out->examples = t.n / t.example;
        out->all = public_tally(&r.all);
        out->tokens = public_tally(&r.tokens);
        out->n_group = r.n_group, out->n_offset = r.n_offset, out->n_distance = r.n_distance;
        for (int i = 0; i < r.n_group; i++) out->group[i] = public_tally(&r.group[i]);
        for (int i = 0; i < r.n_offset; i++) out->offset[i] = public_tally(&r.offset[i]);
        for (int i = 0; i < r.n_distance; i++) out->distance[i] = public_tally(&r.distance[i]);
    }
    task_free(&t);
    return s;
}
