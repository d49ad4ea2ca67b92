/* The public training API (include/attamba/attamba.h) over parallel.h (one device: the plain trainer)
 * and checkpoint.h. */
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "parallel.h"

struct attamba_trainer {
    dp_trainer *g;
    trainer *t; /* device 0's: the optimiser state */
    train_hparams h;
    train_progress p; /* the step; the data RNG is the caller's and stays zero */
};

train_hparams train_hparams_from_api(const attamba_train_params *p) {
    return (train_hparams){.batch = p->batch, .seq = p->seq, .accum = p->accum, .lr = p->lr, .min_lr = p->min_lr,
                           .warmup = p->warmup, .steps = p->steps, .beta1 = p->beta1, .beta2 = p->beta2,
                           .eps = p->eps, .weight_decay = p->weight_decay, .clip = p->clip, .ignore_id = p->ignore_id};
}

static attamba_train_params from_hparams(const train_hparams *h) {
    return (attamba_train_params){.batch = h->batch, .seq = h->seq, .accum = h->accum, .lr = h->lr,
                                  .min_lr = h->min_lr, .warmup = h->warmup, .steps = h->steps, .beta1 = h->beta1,
                                  .beta2 = h->beta2, .eps = h->eps, .weight_decay = h->weight_decay,
                                  .clip = h->clip, .ignore_id = h->ignore_id};
}

attamba_train_params attamba_train_params_default(int64_t steps) {
    train_hparams h;
    train_hparams_default(&h, steps);
    return from_hparams(&h);
}

/* A trainer of m over ctxs[0..n-1] (ctxs[0] m's), at progress p. */
static attamba_status wrap(model *m, rt_ctx *const *ctxs, int n, const train_hparams *h, const train_progress *p,
                           attamba_trainer **out) {
    if (m->n_replicas > 1) /* only devices[0]'s copy would learn; the others would go stale */
        return rt_fail(m->ctx, ATTAMBA_ERR_UNSUPPORTED,
                       "training a row-split model: load it on one device and train with "
                       "attamba_trainer_create_parallel over the devices");
    attamba_trainer *a = calloc(1, sizeof *a);
    if (!a) return rt_fail(m->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "trainer: out of host memory");
    *a = (attamba_trainer){.h = *h, .p = *p};
    attamba_status s = dp_create(ctxs, n, m, h, NULL, &a->g);
    if (s) {
        free(a);
        return s;
    }
    a->t = dp_primary(a->g);
    *out = a;
    return ATTAMBA_OK;
}

attamba_status attamba_trainer_create_parallel(attamba_model *m, attamba_context *const *devices, int n,
                                               const attamba_train_params *p, attamba_trainer **out) {
    *out = NULL;
    if (!p || !devices) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_trainer_create: NULL params or devices");
    train_hparams h = train_hparams_from_api(p);
    return wrap(m, devices, n, &h, &(train_progress){0}, out);
}

attamba_status attamba_trainer_create(attamba_model *m, const attamba_train_params *p, attamba_trainer **out) {
    return attamba_trainer_create_parallel(m, &m->ctx, 1, p, out);
}

void attamba_trainer_destroy(attamba_trainer *t) {
    if (!t) return;
    dp_destroy(t->g);
    free(t);
}

int attamba_trainer_split(attamba_trainer *t, char *buf, size_t size) { return dp_describe_split(t->g, buf, size); }

/* Each of the n rows' targets: ignore_id, or an id of the vocabulary (tokens are checked by the forward). */
static attamba_status check_targets(attamba_trainer *t, const char *op, const int32_t *targets, int64_t n) {
    const model *m = trainer_model(t->t);
    for (int64_t i = 0; i < n; i++)
        if (targets[i] != t->h.ignore_id && (targets[i] < 0 || targets[i] >= m->cfg.vocab_size))
            return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "%s: target %d at %lld outside [0, %d) and not ignore_id %d",
                           op, targets[i], (long long)i, m->cfg.vocab_size, t->h.ignore_id);
    return ATTAMBA_OK;
}

attamba_status attamba_trainer_step(attamba_trainer *t, const int32_t *tokens, const int32_t *targets,
                                    attamba_train_stats *stats) {
    static const char *op = "attamba_trainer_step";
    rt_ctx *ctx = trainer_model(t->t)->ctx;
    const train_hparams *h = &t->h;
    int64_t rows = (int64_t)h->batch * h->seq;
    if (!tokens || !targets) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: NULL tokens or targets", op);
    RT_TRY(check_targets(t, op, targets, rows * h->accum));
    double sum = 0, grad_norm = 0;
    float lr = 0;
    RT_TRY(dp_zero_grad(t->g));
    for (int a = 0; a < h->accum; a++) {
        double loss;
        int64_t count;
        RT_TRY(dp_forward_backward(t->g, tokens + a * rows, targets + a * rows, 1.0f / (float)h->accum, &loss, &count));
        sum += loss;
    }
    RT_TRY(dp_apply(t->g, t->p.step + 1, &grad_norm, &lr));
    t->p.step++;
    t->p.tokens += rows * h->accum;
    if (stats) *stats = (attamba_train_stats){t->p.step, sum / h->accum, grad_norm, lr};
    return ATTAMBA_OK;
}

attamba_status attamba_trainer_evaluate(attamba_trainer *t, const int32_t *tokens, const int32_t *targets, int n_rows,
                                        double *loss) {
    static const char *op = "attamba_trainer_evaluate";
    model *m = trainer_model(t->t);
    if (!tokens || !targets || !loss || n_rows < 1)
        return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "%s: NULL buffer or n_rows %d < 1", op, n_rows);
    RT_TRY(check_targets(t, op, targets, (int64_t)n_rows * t->h.seq));
    double sum = 0, total = 0;
    int64_t count = 0, scored = 0;
    for (int r = 0; r < n_rows; r += t->h.batch) { /* at most a micro-batch at a time: the memory training has */
        int b = CORE_MIN(t->h.batch, n_rows - r);
        size_t at = (size_t)r * t->h.seq;
        RT_TRY(model_loss(m, tokens + at, targets + at, b, t->h.seq, &sum, &count));
        total += sum, scored += count;
    }
    if (!scored) return rt_fail(m->ctx, ATTAMBA_ERR_INVALID_ARG, "%s: no target is scored", op);
    *loss = total / (double)scored;
    return ATTAMBA_OK;
}

int64_t attamba_trainer_steps_done(const attamba_trainer *t) { return t->p.step; }

attamba_train_params attamba_trainer_params(const attamba_trainer *t) { return from_hparams(&t->h); }

attamba_status attamba_trainer_save(attamba_trainer *t, const char *dir) {
    rt_ctx *ctx = trainer_model(t->t)->ctx;
    char err[400];
    if (!dir) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_trainer_save: NULL dir");
    attamba_status s = checkpoint_save(dir, t->t, &t->h, &t->p, 2, err, sizeof err);
    return s ? rt_fail(ctx, s, "attamba_trainer_save: %s", err) : ATTAMBA_OK;
}

attamba_status attamba_trainer_load(attamba_context *ctx, const char *dir, attamba_model **m, attamba_trainer **t) {
    *m = NULL, *t = NULL;
    char err[400];
    train_hparams h;
    train_progress p;
    if (!dir) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "attamba_trainer_load: NULL dir");
    attamba_status s = checkpoint_load(ctx, dir, m, &h, &p, err, sizeof err);
    if (s) return rt_fail(ctx, s, "attamba_trainer_load: %s", err);
    s = wrap(*m, &ctx, 1, &h, &p, t);
    if (!s && (s = checkpoint_load_moments(dir, (*t)->t, err, sizeof err))) rt_fail(ctx, s, "attamba_trainer_load: %s", err);
    if (s) {
        attamba_trainer_destroy(*t);
        *t = NULL;
        model_destroy(*m);
        *m = NULL;
    }
    return s;
}
