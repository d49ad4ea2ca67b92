/* Data-parallel training over a device set: one host thread per device for its share of each
 * micro-batch, gradients summed on the host, the update made once on device 0 and broadcast. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "parallel.h"

enum { REBALANCE_EVERY = 8 }; /* micro-batches between re-splits */

typedef struct replica {
    model *m;          /* device 0: the caller's model */
    trainer *t;
    int rows;          /* of each micro-batch */
    int touched;       /* got rows since the last zero_grad: its gradients count (devices 1..) */
    double rate;       /* rows/s, smoothed; 0 = not measured yet */
    /* one micro-batch's work, filled by dp_forward_backward, run by work() */
    const int32_t *tok, *tgt;
    float weight;
    double loss, seconds;
    int64_t count;
    attamba_status s;
} replica;

struct dp_trainer {
    int n, B, T;
    const train_comm *comm; /* NULL: one process */
    int ranks;              /* processes (1 without comm) */
    int64_t calls;     /* micro-batches so far */
    int reported;      /* the split has been described since it last changed */
    replica *r;
    float *host, *sum; /* flat staging for the gradient reduction and the weight broadcast */
    tensor incoming;   /* device 0: the other devices' summed gradients */
};

trainer *dp_primary(dp_trainer *g) { return g->r[0].t; }
model *dp_replica(dp_trainer *g, int i) { return g->r[i].m; }

static attamba_status set_split(dp_trainer *g, const int *rows) {
    for (int i = 0; i < g->n; i++) {
        if (rows[i] == g->r[i].rows) continue;
        g->reported = 0;
        g->r[i].rows = rows[i];
        if (rows[i] > 0) RT_TRY(trainer_resize(g->r[i].t, rows[i]));
    }
    return ATTAMBA_OK;
}

static void replica_free(replica *r, int primary) {
    trainer_destroy(r->t);
    if (!primary) model_destroy(r->m);
}

void dp_destroy(dp_trainer *g) {
    if (!g) return;
    for (int i = 0; g->r && i < g->n; i++) replica_free(&g->r[i], i == 0);
    tensor_free(&g->incoming);
    free(g->r);
    free(g->host);
    free(g->sum);
    free(g);
}

attamba_status dp_create(rt_ctx *const *ctxs, int n, model *m0, const train_hparams *h, const train_comm *comm,
                         dp_trainer **out) {
    *out = NULL;
    rt_ctx *ctx = m0->ctx;
    if (n < 1 || n > ATTAMBA_MAX_DEVICES || ctxs[0] != ctx)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "data-parallel: need 1..%d devices, the first the model's",
                       ATTAMBA_MAX_DEVICES);
    for (int i = 0; i < n; i++) /* a context serves one host thread at a time */
        for (int k = 0; k < i; k++)
            if (ctxs[i] == ctxs[k]) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "data-parallel: device %d given twice", i);
    dp_trainer *g = calloc(1, sizeof *g);
    if (!g || !(g->r = calloc((size_t)n, sizeof *g->r))) {
        free(g);
        return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    g->n = n;
    g->comm = comm;
    g->ranks = comm && comm->size > 1 ? comm->size : 1;
    g->B = h->batch;
    g->T = h->seq;
    int rows[ATTAMBA_MAX_DEVICES];
    double ones[ATTAMBA_MAX_DEVICES];
    for (int i = 0; i < n; i++) ones[i] = 1;
    core_split(ones, n, g->B, rows);
    attamba_status s = ATTAMBA_OK;
    for (int i = 0; i < n && !s; i++) {
        replica *r = &g->r[i];
        train_hparams hi = *h;
        hi.batch = h->batch < 1 ? h->batch : rows[i] > 0 ? rows[i] : 1; /* a bad batch meets trainer_create's check */
        r->rows = rows[i];
        if (i == 0) {
            r->m = m0;
            s = trainer_create(m0, &hi, &r->t);
            continue;
        }
        s = model_create(ctxs[i], &m0->cfg, &r->m);
        if (!s) s = tensor_transfer(&r->m->w.flat, &m0->w.flat);
        if (!s) s = trainer_create_replica(r->m, &hi, &r->t);
        if (s) rt_fail_from(ctx, s, ctxs[i]);
    }
    if (!s && (n > 1 || g->ranks > 1)) {
        int64_t numel = tensor_numel(&m0->w.flat);
        g->host = malloc((size_t)numel * sizeof *g->host);
        g->sum = malloc((size_t)numel * sizeof *g->sum);
        if (!g->host || !g->sum) s = rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
        if (!s && g->ranks == 1) s = tensor_alloc(ctx, &g->incoming, TENSOR_F32, 1, &numel);
    }
    if (s) {
        dp_destroy(g);
        return s;
    }
    *out = g;
    return ATTAMBA_OK;
}

attamba_status dp_zero_grad(dp_trainer *g) {
    for (int i = 0; i < g->n; i++) {
        g->r[i].touched = 0;
        RT_TRY(trainer_zero_grad(g->r[i].t));
    }
    return ATTAMBA_OK;
}

/* One device's share of a micro-batch, timed to the end of its queue. */
static void *work(void *arg) {
    replica *r = arg;
    double t0 = core_now();
    r->s = trainer_forward_backward(r->t, r->tok, r->tgt, r->weight, &r->loss, &r->count);
    if (!r->s) r->s = rt_finish(r->m->ctx);
    r->seconds = core_now() - t0;
    return NULL;
}

/* Moves the failure of device i into device 0's message. */
static attamba_status device_failed(dp_trainer *g, int i, attamba_status s) {
    return rt_fail_from(g->r[0].m->ctx, s, g->r[i].m->ctx);
}

/* Folds the timings of the last micro-batch into the rates and re-splits when it is time: after
 * the second micro-batch (the first compiles the kernels), then every REBALANCE_EVERY. */
static attamba_status rebalance(dp_trainer *g) {
    g->calls++;
    if (g->n == 1 || g->calls < 2) return ATTAMBA_OK;
    double sum = 0, weight[ATTAMBA_MAX_DEVICES];
    int measured = 0, rows[ATTAMBA_MAX_DEVICES];
    for (int i = 0; i < g->n; i++) {
        replica *r = &g->r[i];
        if (r->rows > 0 && r->seconds > 0) {
            double rate = r->rows / r->seconds;
            r->rate = r->rate > 0 ? 0.5 * r->rate + 0.5 * rate : rate;
        }
        if (r->rate > 0) sum += r->rate, measured++;
    }
    if (!measured || (g->calls != 2 && g->calls % REBALANCE_EVERY)) return ATTAMBA_OK;
    if (g->calls == 2) g->reported = 0; /* the first measured split is worth saying even if unchanged */
    for (int i = 0; i < g->n; i++) weight[i] = g->r[i].rate > 0 ? g->r[i].rate : sum / measured;
    core_split(weight, g->n, g->B, rows);
    /* a micro-batch takes as long as its slowest device: move rows only for a 5% gain (timings are noisy) */
    double now = 0, next = 0;
    for (int i = 0; i < g->n; i++) {
        now = CORE_MAX(now, g->r[i].rows / weight[i]);
        next = CORE_MAX(next, rows[i] / weight[i]);
    }
    return g->calls == 2 || next < 0.95 * now ? set_split(g, rows) : ATTAMBA_OK;
}

attamba_status dp_forward_backward(dp_trainer *g, const int32_t *tokens, const int32_t *targets, float grad_weight,
                                   double *loss, int64_t *count) {
    if (g->n == 1) {
        return trainer_forward_backward(g->r[0].t, tokens, targets, grad_weight, loss, count);
    }
    /* each device's gradient is weighted by its share of the scored targets, so the sum is the
     * gradient of the global batch's mean loss */
    int ignore = trainer_hparams(g->r[0].t)->ignore_id;
    int64_t total = 0, counts[ATTAMBA_MAX_DEVICES] = {0};
    for (int i = 0, row = 0; i < g->n; row += g->r[i].rows, i++) {
        for (int64_t k = (int64_t)row * g->T; k < (int64_t)(row + g->r[i].rows) * g->T; k++)
            counts[i] += targets[k] != ignore;
        total += counts[i];
    }
    pthread_t th[ATTAMBA_MAX_DEVICES];
    int started[ATTAMBA_MAX_DEVICES] = {0};
    for (int i = 0, row = 0; i < g->n; row += g->r[i].rows, i++) {
        replica *r = &g->r[i];
        r->s = ATTAMBA_OK;
        r->loss = r->seconds = 0;
        r->count = 0;
        if (!r->rows) continue;
        r->tok = tokens + (int64_t)row * g->T;
        r->tgt = targets + (int64_t)row * g->T;
        r->weight = total ? grad_weight * (float)((double)counts[i] / (double)total) : 0.0f;
        r->touched = 1;
        if (i > 0) started[i] = pthread_create(&th[i], NULL, work, r) == 0;
        if (i > 0 && !started[i]) work(r); /* no thread to be had: run it here */
    }
    if (g->r[0].rows) work(&g->r[0]);
    double sum = 0;
    attamba_status s = ATTAMBA_OK;
    for (int i = 0; i < g->n; i++) {
        if (started[i]) pthread_join(th[i], NULL);
        if (g->r[i].s && !s) s = device_failed(g, i, g->r[i].s);
        sum += g->r[i].loss * (double)g->r[i].count;
    }
    RT_TRY(s);
    *loss = total ? sum / (double)total : 0.0;
    *count = total;
    return rebalance(g);
}

/* Device 0's weights to every other device of this process. */
static attamba_status broadcast_weights(dp_trainer *g) {
    if (g->n == 1) return ATTAMBA_OK;
    RT_TRY(tensor_download(&g->r[0].m->w.flat, g->host));
    for (int i = 1; i < g->n; i++) {
        attamba_status s = tensor_upload(&g->r[i].m->w.flat, g->host);
        if (s) return device_failed(g, i, s);
    }
    return ATTAMBA_OK;
}

attamba_status dp_apply(dp_trainer *g, int64_t step, double *grad_norm, float *lr) {
    replica *r0 = &g->r[0];
    rt_ctx *c0 = r0->m->ctx;
    tensor *grads = (tensor *)&trainer_grads(r0->t)->flat;
    int64_t numel = tensor_numel(grads);
    /* the sum on the host, in device order: the other devices' gradients only, or with several
     * processes device 0's too (the all-reduce needs them all) */
    float *acc = NULL;
    for (int i = g->ranks > 1 ? 0 : 1; i < g->n; i++) {
        if (i > 0 && !g->r[i].touched) continue;
        attamba_status s = tensor_download(&trainer_grads(g->r[i].t)->flat, acc ? g->host : g->sum);
        if (s) return device_failed(g, i, s);
        if (acc)
            for (int64_t k = 0; k < numel; k++) acc[k] += g->host[k];
        acc = g->sum;
    }
    if (g->ranks > 1) {
        if (g->comm->sum_f32(g->comm->user, g->sum, numel))
            return rt_fail(c0, ATTAMBA_ERR_IO, "the gradient all-reduce over %d processes failed", g->ranks);
        RT_TRY(tensor_upload(grads, g->sum));
    } else if (acc) {
        RT_TRY(tensor_upload(&g->incoming, g->sum));
        RT_TRY(ops_add(c0, grads, &g->incoming, grads));
    }
    RT_TRY(trainer_apply(r0->t, step, grad_norm, lr));
    return broadcast_weights(g);
}

attamba_status dp_sync(dp_trainer *g) {
    if (g->ranks == 1) return ATTAMBA_OK;
    rt_ctx *c0 = g->r[0].m->ctx;
    tensor *state[] = {&g->r[0].m->w.flat, trainer_moment(g->r[0].t, 0), trainer_moment(g->r[0].t, 1)};
    for (size_t i = 0; i < CORE_LEN(state); i++) {
        RT_TRY(tensor_download(state[i], g->host));
        if (g->comm->bcast(g->comm->user, g->host, (size_t)tensor_numel(state[i]) * sizeof *g->host))
            return rt_fail(c0, ATTAMBA_ERR_IO, "the broadcast of rank 0's training state failed");
        RT_TRY(tensor_upload(state[i], g->host));
    }
    return broadcast_weights(g);
}

int dp_describe_split(dp_trainer *g, char *buf, size_t n) {
    size_t u = 0;
    buf[0] = 0;
    for (int i = 0; i < g->n && u < n; i++) {
        const attamba_device_info *d = &g->r[i].m->ctx->dev.info;
        u += (size_t)snprintf(buf + u, n - u, "%s%d:%d %s %d rows", i ? ", " : "", d->platform_index, d->device_index,
                              d->name, g->r[i].rows);
        if (u < n && g->r[i].rate > 0) u += (size_t)snprintf(buf + u, n - u, " (%.1f rows/s)", g->r[i].rate);
    }
    int changed = !g->reported;
    g->reported = 1;
    return changed;
}
