/* Training: the forward pass keeping every layer's activations, the backward pass through the
 * whole model (SPEC 3, in reverse), global-norm clipping and AdamW.
 * Backward ops write input gradients and accumulate parameter gradients, so every weight's
 * gradient lands in its view of one flat buffer, shaped like the weights. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/attention.h"
#include "ops/attention_backward.h"
#include "ops/layer.h"
#include "ops/layer_backward.h"
#include "ops/loss.h"
#include "ops/ops.h"
#include "ops/optim.h"
#include "ops/ssm.h"
#include "train.h"

void train_hparams_default(train_hparams *h, int64_t steps) {
    h->batch = 8;
    h->seq = 256;
    h->accum = 1;
    h->lr = 3e-3f;
    h->min_lr = 3e-4f;
    h->steps = steps;
    h->warmup = steps / 20 > 0 ? steps / 20 : 1;
    h->beta1 = 0.9f;
    h->beta2 = 0.95f;
    h->eps = 1e-8f;
    h->weight_decay = 0.033f;
    h->clip = 1.0f;
    h->ignore_id = -1;
}

/* Gradients of one SSM (K or V) of a layer, shaped like its activations: dxbcdt is the gradient of the
 * projection [xs, B, C | dt] (dxbc_in and ddt its column views); dxbc that of the conv output (dxs, dbm,
 * dcm its views), which without a conv is dxbc_in itself. */
typedef struct {
    tensor dg, dy, dz, dxbcdt, dxbc_in, ddt, dxbc, dxs, dbm, dcm;
} ssm_grads;

struct trainer {
    model *m;
    train_hparams h;
    model *g, *mom[2];        /* gradients and AdamW moments, as models: the same views as the weights */
    int L;
    tensor_arena arena;       /* every tensor below: carved once, so a step creates no device buffer */
    layer_acts *acts;         /* one per layer */
    tensor *hs;               /* residual stream: hs[2l] enters layer l, hs[2l+1] after its attention */
    boundary_plan plan;
    tensor ids, targets, pos0, xf, logits, lse, losses;
    int32_t *ids_host;
    float *losses_host;
    /* gradient scratch */
    tensor dh, dx, dtmp, dq, dk, dv, dout, dhid, df1, df3;
    ssm_grads sg;
};

const model_weights *trainer_grads(const trainer *t) { return &t->g->w; }
model *trainer_model(const trainer *t) { return t->m; }
tensor *trainer_moment(trainer *t, int which) { return t->mom[0] ? &t->mom[which & 1]->w.flat : NULL; }

static void release(trainer *t) {
    for (int l = 0; t->acts && l < t->L; l++) model_acts_release(&t->acts[l]);
    for (int i = 0; t->hs && i < 2 * t->L + 1; i++) tensor_free(&t->hs[i]);
    ssm_grads *g = &t->sg;
    tensor *all[] = {&t->ids,  &t->targets, &t->pos0,   &t->xf,     &t->logits, &t->lse,  &t->losses, &t->dh,
                     &t->dx,   &t->dtmp,    &t->dq,     &t->dk,     &t->dv,     &t->dout, &t->dhid,   &t->df1,
                     &t->df3,  &g->dg,      &g->dy,     &g->dz,     &g->dxbcdt, &g->dxbc_in, &g->ddt, &g->dxbc,
                     &g->dxs,  &g->dbm,     &g->dcm,    &t->plan.all};
    for (size_t i = 0; i < CORE_LEN(all); i++) tensor_free(all[i]);
}

void trainer_destroy(trainer *t) {
    if (!t) return;
    model_destroy(t->g);
    model_destroy(t->mom[0]);
    model_destroy(t->mom[1]);
    release(t);
    boundary_plan_release(&t->plan);
    tensor_arena_free(&t->arena);
    free(t->acts);
    free(t->hs);
    free(t->ids_host);
    free(t->losses_host);
    free(t);
}

/* One pass of carving everything the trainer keeps out of its arena. */
static attamba_status carve(trainer *t) {
    const model_config *c = &t->m->cfg;
    tensor_arena *ar = &t->arena;
    int64_t B = t->h.batch, T = t->h.seq, d = c->dim, qw = (int64_t)c->n_heads * c->head_dim,
            kvw = (int64_t)c->n_kv_heads * c->head_dim, F = c->ffn_dim, E = c->ssm_inner,
            GN = (int64_t)c->ssm_groups * c->ssm_state, nh = c->ssm_heads;
    for (int l = 0; l < t->L; l++) RT_TRY(model_acts_take(c, ar, B, T, &t->acts[l]));
    struct { tensor *x; int64_t w; } f32[] = {{&t->xf, d},    {&t->logits, c->vocab_size}, {&t->dh, d}, {&t->dx, d},
                                              {&t->dtmp, d},  {&t->dq, qw},  {&t->dk, kvw}, {&t->dv, kvw},
                                              {&t->dout, qw}, {&t->dhid, F}, {&t->df1, F},  {&t->df3, F}};
    for (int i = 0; i < 2 * t->L + 1; i++) RT_TRY(tensor_arena_take(ar, &t->hs[i], TENSOR_F32, 3, (int64_t[]){B, T, d}));
    for (size_t i = 0; i < CORE_LEN(f32); i++)
        RT_TRY(tensor_arena_take(ar, f32[i].x, TENSOR_F32, 3, (int64_t[]){B, T, f32[i].w}));
    RT_TRY(tensor_arena_take(ar, &t->lse, TENSOR_F32, 2, (int64_t[]){B, T}));
    RT_TRY(tensor_arena_take(ar, &t->losses, TENSOR_F32, 2, (int64_t[]){B, T}));
    RT_TRY(tensor_arena_take(ar, &t->ids, TENSOR_I32, 2, (int64_t[]){B, T}));
    RT_TRY(tensor_arena_take(ar, &t->targets, TENSOR_I32, 2, (int64_t[]){B, T}));
    RT_TRY(tensor_arena_take(ar, &t->pos0, TENSOR_I32, 1, &B));
    RT_TRY(boundary_plan_take(c, ar, T, &t->plan));
    if (c->kind != MODEL_ATTAMBA) return ATTAMBA_OK;
    ssm_grads *g = &t->sg;
    struct { tensor *x; int64_t w; } sg[] = {{&g->dg, E}, {&g->dy, E}, {&g->dz, E}, {&g->dxbcdt, E + 2 * GN + nh}};
    for (size_t i = 0; i < CORE_LEN(sg); i++)
        RT_TRY(tensor_arena_take(ar, sg[i].x, TENSOR_F32, 3, (int64_t[]){B, T, sg[i].w}));
    RT_TRY(tensor_columns(&g->dxbcdt, 0, E + 2 * GN, &g->dxbc_in));
    RT_TRY(tensor_columns(&g->dxbcdt, E + 2 * GN, nh, &g->ddt));
    if (c->ssm_conv > 0) RT_TRY(tensor_arena_take(ar, &g->dxbc, TENSOR_F32, 3, (int64_t[]){B, T, E + 2 * GN}));
    else RT_TRY(tensor_columns(&g->dxbc_in, 0, E + 2 * GN, &g->dxbc));
    RT_TRY(tensor_columns(&g->dxbc, 0, E, &g->dxs));
    RT_TRY(tensor_columns(&g->dxbc, E, GN, &g->dbm));
    return tensor_columns(&g->dxbc, E + GN, GN, &g->dcm);
}

/* (Re)carves the arena for t->h.batch rows (a smaller batch reuses the buffer) and the host staging. */
static attamba_status plan(trainer *t) {
    rt_ctx *ctx = t->m->ctx;
    int64_t n = (int64_t)t->h.batch * t->h.seq;
    free(t->ids_host);
    free(t->losses_host);
    t->ids_host = malloc((size_t)n * sizeof *t->ids_host);
    t->losses_host = malloc((size_t)n * sizeof *t->losses_host);
    if (!t->ids_host || !t->losses_host) return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    attamba_status s = ATTAMBA_OK;
    for (int again = 1; again && !s;) {
        release(t);
        tensor_arena_begin(&t->arena, ctx);
        s = carve(t);
        if (!s) s = tensor_arena_end(&t->arena, &again);
    }
    for (int l = 0; l < t->L && !s; l++) {
        t->acts[l].h_in = &t->hs[2 * l];
        t->acts[l].h_mid = &t->hs[2 * l + 1];
        t->acts[l].h_out = &t->hs[2 * l + 2];
    }
    return s ? s : tensor_fill(&t->pos0, 0);
}

static attamba_status create(model *m, const train_hparams *h, int moments, trainer **out) {
    *out = NULL;
    rt_ctx *ctx = m->ctx;
    const model_config *c = &m->cfg;
    if (h->batch < 1 || h->seq < 2 || h->accum < 1 || h->steps < 1 || !(h->lr > 0) || !(h->min_lr >= 0) ||
        h->warmup < 0 || !(h->beta1 >= 0 && h->beta1 < 1) || !(h->beta2 >= 0 && h->beta2 < 1) || !(h->eps > 0) ||
        !(h->weight_decay >= 0) || !(h->clip >= 0))
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG,
                       "trainer: need batch >= 1, seq >= 2, accum >= 1, steps >= 1, lr > 0, min_lr >= 0, "
                       "warmup >= 0, betas in [0, 1), eps > 0, weight decay >= 0, clip >= 0");
    if (m->next || m->first_layer || m->end_layer != c->n_layers)
        return rt_fail(ctx, ATTAMBA_ERR_UNSUPPORTED, "training a layer-split model: train on a device set instead (--devices)");
    if (c->weights != WEIGHTS_F32)
        return rt_fail(ctx, ATTAMBA_ERR_UNSUPPORTED, "training a model with %s weights: train the f32 model, then quantize it",
                       model_weight_type_name(c->weights));
    trainer *t = calloc(1, sizeof *t);
    if (!t) return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    t->m = m;
    t->h = *h;
    t->L = c->n_layers;
    attamba_status s = model_create(ctx, c, &t->g);
    for (int i = 0; i < 2 * moments && !s; i++) s = model_create(ctx, c, &t->mom[i]);
    for (int i = 0; i < 2 * moments && !s; i++) s = tensor_fill(&t->mom[i]->w.flat, 0.0);
    t->acts = calloc((size_t)t->L, sizeof *t->acts);
    t->hs = calloc((size_t)(2 * t->L + 1), sizeof *t->hs);
    if (!s && (!t->acts || !t->hs)) s = rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    if (!s) s = plan(t);
    if (s) {
        trainer_destroy(t);
        return s;
    }
    *out = t;
    return ATTAMBA_OK;
}

attamba_status trainer_create(model *m, const train_hparams *h, trainer **out) { return create(m, h, 1, out); }

attamba_status trainer_create_replica(model *m, const train_hparams *h, trainer **out) { return create(m, h, 0, out); }

attamba_status trainer_resize(trainer *t, int batch) {
    if (batch < 1) return rt_fail(t->m->ctx, ATTAMBA_ERR_INVALID_ARG, "trainer: batch %d < 1", batch);
    if (batch == t->h.batch) return ATTAMBA_OK;
    t->h.batch = batch;
    return plan(t);
}

const train_hparams *trainer_hparams(const trainer *t) { return &t->h; }

attamba_status trainer_zero_grad(trainer *t) { return tensor_fill(&t->g->w.flat, 0.0); }

/* ---- backward building blocks ---- */

/* For y = x W^T: dW += dy^T x, and dx = dy W (dx += when accumulate; skipped when dx is NULL). */
static attamba_status linear_backward(trainer *t, const tensor *x, const tensor *W, const tensor *dy, tensor *dW,
                                      tensor *dx, int accumulate) {
    rt_ctx *ctx = t->m->ctx;
    tensor x2, dy2, dx2 = {0};
    RT_TRY(tensor_rows(x, &x2));
    attamba_status s = tensor_rows(dy, &dy2);
    if (!s) s = ops_gemm(ctx, 1, 0, 1.0f, &dy2, &x2, 1.0f, dW);
    if (!s && dx) {
        s = tensor_rows(dx, &dx2);
        if (!s) s = ops_gemm(ctx, 0, 0, 1.0f, &dy2, W, accumulate ? 1.0f : 0.0f, &dx2);
    }
    tensor_free(&x2);
    tensor_free(&dy2);
    tensor_free(&dx2);
    return s;
}

/* kv = x + g W_out^T, g = gated_rmsnorm(scan(conv(x W_in^T))): dx += dkv + (the SSM's input gradient). */
static attamba_status ssm_backward(trainer *t, int l, int i, const tensor *x, const tensor *seg, const tensor *dkv,
                                   tensor *dx) {
    model *m = t->m;
    const model_config *c = &m->cfg;
    const ssm_weights *w = &m->layers[l].ssm[i], *gw = &t->g->layers[l].ssm[i];
    const ssm_acts *a = &t->acts[l].ssm[i];
    ssm_grads *g = &t->sg;
    RT_TRY(linear_backward(t, &a->g, w->out_proj, dkv, (tensor *)gw->out_proj, &g->dg, 0));
    RT_TRY(ops_gated_rmsnorm_backward(m->ctx, &a->y, &a->z, w->norm, c->norm_eps, &g->dg, &g->dy, &g->dz,
                                      (tensor *)gw->norm));
    RT_TRY(ops_ssm_scan_backward(m->ctx, &a->xs, &a->bm, &a->cm, &a->dt, w->dt_bias, w->A_log, w->D, seg,
                                 c->ssm_groups, &g->dy, &g->dxs, &g->dbm, &g->dcm, &g->ddt, (tensor *)gw->dt_bias,
                                 (tensor *)gw->A_log, (tensor *)gw->D));
    if (w->conv)
        RT_TRY(ops_conv1d_backward(m->ctx, &a->xbc_in, w->conv, seg, 1, &g->dxbc, &g->dxbc_in, (tensor *)gw->conv));
    RT_TRY(ops_add(m->ctx, dx, dkv, dx)); /* the residual path k = x + ... */
    RT_TRY(linear_backward(t, x, &w->in_z, &g->dz, (tensor *)&gw->in_z, dx, 1));
    return linear_backward(t, x, &w->in_xbcdt, &g->dxbcdt, (tensor *)&gw->in_xbcdt, dx, 1);
}

/* t->dh holds dL/dh_out of layer l; leaves dL/dh_in there. */
static attamba_status layer_backward(trainer *t, int l) {
    model *m = t->m;
    const model_config *c = &m->cfg;
    const layer_weights *W = &m->layers[l], *G = &t->g->layers[l];
    layer_acts *a = &t->acts[l];
    rt_ctx *ctx = m->ctx;
    /* FFN: h_out = h_mid + W2 (silu(f1) * f3), f1 = W1 y, f3 = W3 y, y = rmsnorm(h_mid) */
    RT_TRY(linear_backward(t, &a->hid, W->w2, &t->dh, (tensor *)G->w2, &t->dhid, 0));
    RT_TRY(ops_swiglu_backward(ctx, &a->f1, &a->f3, &t->dhid, &t->df1, &t->df3));
    RT_TRY(linear_backward(t, &a->y, W->w1, &t->df1, (tensor *)G->w1, &t->dx, 0));
    RT_TRY(linear_backward(t, &a->y, W->w3, &t->df3, (tensor *)G->w3, &t->dx, 1));
    RT_TRY(ops_rmsnorm_backward(ctx, a->h_mid, W->ffn_norm, c->norm_eps, &t->dx, &t->dtmp, (tensor *)G->ffn_norm));
    RT_TRY(ops_add(ctx, &t->dh, &t->dtmp, &t->dh));
    /* attention: h_mid = h_in + Wo attn(rope(q), rope(k), v), q = Wq x, x = rmsnorm(h_in) */
    RT_TRY(linear_backward(t, &a->o, W->wo, &t->dh, (tensor *)G->wo, &t->dout, 0));
    attn_mask mask = boundary_plan_mask(c, &t->plan, l, &a->bpos); /* the trainer's plan, checked when made */
    RT_TRY(ops_attention_prefill_backward(ctx, &a->q, &a->k, &a->v, c->n_heads, c->n_kv_heads, &mask, &a->o,
                                          &t->dout, &t->dq, &t->dk, &t->dv));
    RT_TRY(ops_rope_rotate(ctx, "ops_rope_backward", &t->dq, c->n_heads, &t->dk, c->n_kv_heads, &t->pos0,
                           c->rope_theta, -1.0f));
    RT_TRY(linear_backward(t, &a->x, W->wq, &t->dq, (tensor *)G->wq, &t->dx, 0));
    if (c->kind == MODEL_ATTAMBA) {
        RT_TRY(ssm_backward(t, l, 0, &a->x, &a->seg, &t->dk, &t->dx));
        RT_TRY(ssm_backward(t, l, 1, &a->x, &a->seg, &t->dv, &t->dx));
    } else {
        RT_TRY(linear_backward(t, &a->x, W->wk, &t->dk, (tensor *)G->wk, &t->dx, 1));
        RT_TRY(linear_backward(t, &a->x, W->wv, &t->dv, (tensor *)G->wv, &t->dx, 1));
    }
    RT_TRY(ops_rmsnorm_backward(ctx, a->h_in, W->attn_norm, c->norm_eps, &t->dx, &t->dtmp, (tensor *)G->attn_norm));
    return ops_add(ctx, &t->dh, &t->dtmp, &t->dh);
}

attamba_status trainer_forward_backward(trainer *t, const int32_t *tokens, const int32_t *targets, float grad_weight,
                                        double *loss, int64_t *count) {
    model *m = t->m;
    const model_config *c = &m->cfg;
    rt_ctx *ctx = m->ctx;
    int64_t n = (int64_t)t->h.batch * t->h.seq, counted = 0;
    for (int64_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "train: token %d outside [0, %d)", tokens[i], c->vocab_size);
        if (targets[i] == t->h.ignore_id) continue;
        if (targets[i] < 0 || targets[i] >= c->vocab_size)
            return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "train: target %d outside [0, %d)", targets[i], c->vocab_size);
        counted++;
    }
    memcpy(t->ids_host, tokens, (size_t)n * sizeof *tokens);
    RT_TRY(tensor_upload(&t->ids, tokens));
    RT_TRY(tensor_upload(&t->targets, targets));
    RT_TRY(boundary_plan_update(m, &t->plan));
    /* forward, keeping every layer's activations */
    layer_mode md = {.pos = &t->pos0, .plan = &t->plan};
    RT_TRY(model_trunk(m, &t->ids, t->acts, 1, &md, &t->xf));
    tensor *hL = &t->hs[2 * t->L];
    RT_TRY(model_linear(m, &t->xf, m->output, 0, &t->logits));
    RT_TRY(ops_cross_entropy(ctx, &t->logits, &t->targets, t->h.ignore_id, &t->losses, &t->lse));
    RT_TRY(tensor_download(&t->losses, t->losses_host));
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += t->losses_host[i];
    *loss = counted ? sum / (double)counted : 0.0;
    *count = counted;
    if (!counted) return ATTAMBA_OK;
    /* backward: logits -> final norm -> layers in reverse -> embedding */
    RT_TRY(ops_cross_entropy_backward(ctx, &t->logits, &t->targets, t->h.ignore_id, &t->lse,
                                      grad_weight / (float)counted, &t->logits));
    const tensor *g_out = c->tie_embeddings ? t->g->tok_emb : t->g->output;
    RT_TRY(linear_backward(t, &t->xf, m->output, &t->logits, (tensor *)g_out, &t->dx, 0));
    RT_TRY(ops_rmsnorm_backward(ctx, hL, m->norm, c->norm_eps, &t->dx, &t->dh, (tensor *)t->g->norm));
    for (int l = t->L - 1; l >= 0; l--) RT_TRY(layer_backward(t, l));
    return ops_embedding_backward(ctx, &t->ids, t->ids_host, &t->dh, (tensor *)t->g->tok_emb);
}

attamba_status trainer_apply(trainer *t, int64_t step, double *grad_norm, float *lr_out) {
    rt_ctx *ctx = t->m->ctx;
    if (!t->mom[0]) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "trainer: a replica keeps no optimiser state");
    double sq;
    RT_TRY(ops_sum_squares(ctx, &t->g->w.flat, &sq));
    double norm = sqrt(sq);
    if (!isfinite(norm)) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "train: gradient norm is %g at step %lld", norm, (long long)step);
    float lr = optim_lr_schedule(step, t->h.warmup, t->h.steps, t->h.lr, t->h.min_lr);
    adamw_params p = {lr, t->h.beta1, t->h.beta2, t->h.eps, 0.0f, optim_clip_scale(norm, t->h.clip), step};
    model_weights *w = &t->m->w;
    for (int i = 0; i < w->n; i++) {
        p.weight_decay = w->info[i].decay ? t->h.weight_decay : 0.0f;
        RT_TRY(ops_adamw(ctx, &w->t[i], &t->g->w.t[i], &t->mom[0]->w.t[i], &t->mom[1]->w.t[i], &p));
    }
    if (grad_norm) *grad_norm = norm;
    if (lr_out) *lr_out = lr;
    return ATTAMBA_OK;
}
