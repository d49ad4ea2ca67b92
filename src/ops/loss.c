/* The language-model head's ops: argument checks, then the row kernels of cl/loss.cl; the sampling
 * cut and draw run on the host through src/ref/ref_loss.c (see loss.h for why). */
#include <math.h>
#include <stdlib.h>

#include "loss.h"
#include "ref/ref_loss.h"

/* Checks that logits is a contiguous f32 tensor of >= 2 dims; *rows = product of the leading dims,
 * *V = the last dim, rshape/rndim = the shape of a per-row tensor. */
static attamba_status expect_logits(rt_ctx *ctx, const char *op, const tensor *logits, int64_t *rows, int *V,
                                    int64_t *rshape, int *rndim) {
    char d[96];
    if (!logits || !logits->buf) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: logits is an empty tensor", op);
    if (logits->ndim < 2)
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: logits must be [N, V] (or [B, T, V]), got %s", op,
                       tensor_describe(logits, d, sizeof d));
    RT_TRY(ops_expect(ctx, op, "logits", logits, TENSOR_F32, logits->ndim, logits->shape));
    *rndim = logits->ndim - 1;
    *rows = 1;
    for (int i = 0; i < *rndim; i++) {
        rshape[i] = logits->shape[i];
        *rows *= rshape[i];
    }
    *V = (int)logits->shape[logits->ndim - 1];
    if (*V < 1) return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: logits has an empty vocabulary (V = 0)", op);
    return ATTAMBA_OK;
}

/* The local size of a one-group-per-row kernel: a power of two (the tree reductions halve it), no
 * larger than the device allows for k nor than 256, and small enough that each work-item scans
 * about 8 or more elements of a V-wide row: with one element per item (V = 258 on 256 items) the
 * three tree reductions cost more than the scan (measured ~3x slower on PoCL). */
static size_t row_group_size(rt_ctx *ctx, cl_kernel k, int64_t V) {
    enum { MIN_PER_ITEM = 8 };
    size_t cap = rt_local_1d(ctx, k, 256), wg = 1;
    while (wg * 2 <= cap && (int64_t)(wg * 2 * MIN_PER_ITEM) <= V) wg *= 2;
    return wg;
}

static attamba_status launch_rows(rt_ctx *ctx, const char *kernel, int64_t rows, int64_t V, size_t local_per_item,
                                  int n_args, rt_arg *args) {
    cl_kernel k;
    RT_TRY(rt_kernel(ctx, "loss", "", kernel, &k));
    size_t local = row_group_size(ctx, k, V), global = (size_t)rows * local;
    args[n_args - 1] = RT_LOCAL(local * local_per_item);
    return rt_launch(ctx, k, kernel, 1, &global, &local, n_args, args);
}

attamba_status ops_cross_entropy(rt_ctx *ctx, const tensor *logits, const tensor *targets, int ignore_id,
                                 tensor *losses, tensor *lse) {
    static const char *op = "ops_cross_entropy";
    int64_t rows = 0, rshape[TENSOR_MAX_DIMS] = {0};
    int V = 0, rndim = 0;
    RT_TRY(expect_logits(ctx, op, logits, &rows, &V, rshape, &rndim));
    RT_TRY(ops_expect(ctx, op, "targets", targets, TENSOR_I32, rndim, rshape));
    RT_TRY(ops_expect(ctx, op, "losses", losses, TENSOR_F32, rndim, rshape));
    if (lse) RT_TRY(ops_expect(ctx, op, "lse", lse, TENSOR_F32, rndim, rshape));
    /* Without lse the kernel gets losses' buffer as a never-written placeholder. */
    const tensor *e = lse ? lse : losses;
    rt_arg args[] = {RT_MEM(logits->buf->mem), RT_I32(logits->offset), RT_I32(V), RT_MEM(targets->buf->mem),
                     RT_I32(targets->offset), RT_I32(ignore_id), RT_MEM(losses->buf->mem),
                     RT_I32(losses->offset), RT_MEM(e->buf->mem), RT_I32(e->offset), RT_I32(lse != NULL),
                     RT_LOCAL(0)};
    return launch_rows(ctx, "cross_entropy_rows", rows, V, sizeof(cl_float), (int)CORE_LEN(args), args);
}

attamba_status ops_cross_entropy_mean(rt_ctx *ctx, const tensor *logits, const tensor *targets, int ignore_id,
                                      double *mean, int64_t *count) {
    static const char *op = "ops_cross_entropy_mean";
    int64_t rows = 0, rshape[TENSOR_MAX_DIMS] = {0};
    int V = 0, rndim = 0;
    if (!mean || !count) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: mean and count must not be NULL", op);
    RT_TRY(expect_logits(ctx, op, logits, &rows, &V, rshape, &rndim));
    RT_TRY(ops_expect(ctx, op, "targets", targets, TENSOR_I32, rndim, rshape));
    tensor losses = {0}, sum = {0}, cnt = {0};
    float h_sum = 0;
    int32_t h_cnt[2] = {0, 0};
    attamba_status s = tensor_scratch(ctx, &losses, TENSOR_F32, rndim, rshape);
    if (!s) s = tensor_scratch(ctx, &sum, TENSOR_F32, 1, ((int64_t[]){1}));
    if (!s) s = tensor_scratch(ctx, &cnt, TENSOR_I32, 1, ((int64_t[]){2}));
    if (!s) s = ops_cross_entropy(ctx, logits, targets, ignore_id, &losses, NULL);
    if (!s) {
        cl_kernel k;
        s = rt_kernel(ctx, "loss", "", "cross_entropy_sum", &k);
        if (!s) {
            /* One group: a power of two for the tree, <= 256 items. */
            size_t cap = rt_local_1d(ctx, k, 256), local = 1;
            while (local * 2 <= cap) local *= 2;
            rt_arg args[] = {RT_MEM(losses.buf->mem), RT_I32(0), RT_MEM(targets->buf->mem), RT_I32(targets->offset),
                             RT_I32(rows), RT_I32(V), RT_I32(ignore_id), RT_MEM(sum.buf->mem), RT_MEM(cnt.buf->mem),
                             RT_LOCAL(local * sizeof(cl_float)), RT_LOCAL(2 * local * sizeof(cl_int))};
            s = rt_launch(ctx, k, "cross_entropy_sum", 1, &local, &local, (int)CORE_LEN(args), args);
        }
    }
    if (!s) s = tensor_download(&sum, &h_sum);
    if (!s) s = tensor_download(&cnt, h_cnt);
    tensor_free(&losses);
    tensor_free(&sum);
    tensor_free(&cnt);
    if (s) return s;
    *count = h_cnt[0];
    *mean = h_cnt[0] ? (double)h_sum / h_cnt[0] : 0.0;
    if (h_cnt[1]) {
        *mean = NAN;
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: %d of %lld targets are outside [0, %d) and not ignore_id (%d)",
                       op, h_cnt[1], (long long)rows, V, ignore_id);
    }
    return ATTAMBA_OK;
}

attamba_status ops_cross_entropy_backward(rt_ctx *ctx, const tensor *logits, const tensor *targets, int ignore_id,
                                          const tensor *lse, float scale, tensor *dlogits) {
    static const char *op = "ops_cross_entropy_backward";
    int64_t rows = 0, rshape[TENSOR_MAX_DIMS] = {0};
    int V = 0, rndim = 0;
    RT_TRY(expect_logits(ctx, op, logits, &rows, &V, rshape, &rndim));
    RT_TRY(ops_expect(ctx, op, "targets", targets, TENSOR_I32, rndim, rshape));
    if (lse) RT_TRY(ops_expect(ctx, op, "lse", lse, TENSOR_F32, rndim, rshape));
    RT_TRY(ops_expect_same(ctx, op, "dlogits", dlogits, logits));
    if (!isfinite(scale)) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: scale must be finite, got %g", op,
                                         (double)scale);
    /* In place is the same elements; a shifted overlap would read logits another item already overwrote. */
    if (ops_overlap(dlogits, logits) && dlogits->offset != logits->offset)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: dlogits overlaps logits without being the same elements",
                       op);
    if (ops_overlap(dlogits, targets) || (lse && ops_overlap(dlogits, lse)))
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: dlogits overlaps %s", op,
                       ops_overlap(dlogits, targets) ? "targets" : "lse");
    /* Without lse: the forward kernel recomputes it into a temporary (its per-row losses are a by-product).
     * The temporaries may be released right after the launches: OpenCL keeps a buffer alive until the
     * commands queued on it have finished. */
    tensor tmp_loss = {0}, tmp_lse = {0};
    attamba_status s = ATTAMBA_OK;
    if (!lse) {
        s = tensor_scratch(ctx, &tmp_loss, TENSOR_F32, rndim, rshape);
        if (!s) s = tensor_scratch(ctx, &tmp_lse, TENSOR_F32, rndim, rshape);
        if (!s) s = ops_cross_entropy(ctx, logits, targets, ignore_id, &tmp_loss, &tmp_lse);
        lse = &tmp_lse;
    }
    cl_kernel k;
    if (!s) s = rt_kernel(ctx, "loss", "", "cross_entropy_backward", &k);
    if (!s) {
        size_t lx = rt_local_1d(ctx, k, 256), local[2] = {lx, 1};
        size_t global[2] = {rt_round_up((size_t)(V + 7) / 8, lx), (size_t)rows};
        rt_arg args[] = {RT_MEM(logits->buf->mem), RT_I32(logits->offset), RT_I32(V), RT_MEM(targets->buf->mem),
                         RT_I32(targets->offset), RT_I32(ignore_id), RT_MEM(lse->buf->mem), RT_I32(lse->offset),
                         RT_F32(scale), RT_MEM(dlogits->buf->mem), RT_I32(dlogits->offset)};
        s = rt_launch(ctx, k, "cross_entropy_backward", 2, global, local, (int)CORE_LEN(args), args);
    }
    tensor_free(&tmp_loss);
    tensor_free(&tmp_lse);
    return s;
}

attamba_status ops_argmax(rt_ctx *ctx, const tensor *logits, tensor *out) {
    static const char *op = "ops_argmax";
    int64_t rows = 0, rshape[TENSOR_MAX_DIMS] = {0};
    int V = 0, rndim = 0;
    RT_TRY(expect_logits(ctx, op, logits, &rows, &V, rshape, &rndim));
    RT_TRY(ops_expect(ctx, op, "out", out, TENSOR_I32, rndim, rshape));
    cl_kernel k;
    RT_TRY(rt_kernel(ctx, "loss", "", "argmax_rows", &k));
    size_t local = row_group_size(ctx, k, V), global = (size_t)rows * local;
    rt_arg args[] = {RT_MEM(logits->buf->mem), RT_I32(logits->offset), RT_I32(V), RT_MEM(out->buf->mem),
                     RT_I32(out->offset), RT_LOCAL(local * sizeof(cl_float)), RT_LOCAL(local * sizeof(cl_int))};
    return rt_launch(ctx, k, "argmax_rows", 1, &global, &local, (int)CORE_LEN(args), args);
}

void sampler_init(sampler *s, float temperature, int top_k, float top_p, uint64_t seed) {
    *s = (sampler){.temperature = temperature, .top_k = top_k, .top_p = top_p, .penalty = 1.0f};
    core_rng_seed(&s->rng, seed);
}

attamba_status sampler_set_filters(rt_ctx *ctx, sampler *s, float min_p, float penalty, int last_n) {
    static const char *op = "sampler_set_filters";
    if (!(min_p >= 0.0f && min_p <= 1.0f))
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: min_p must be in [0, 1], got %g", op, (double)min_p);
    if (!(penalty > 0.0f) || !isfinite(penalty))
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: the repetition penalty must be finite and > 0, got %g", op,
                       (double)penalty);
    if (last_n < 1 || last_n > 65536)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: last_n must be in [1, 65536], got %d", op, last_n);
    int32_t *hist = penalty != 1.0f ? malloc((size_t)last_n * sizeof *hist) : NULL;
    if (penalty != 1.0f && !hist) return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "%s: out of host memory", op);
    free(s->hist);
    s->hist = hist;
    s->min_p = min_p, s->penalty = penalty, s->last_n = last_n, s->n_seen = 0;
    return ATTAMBA_OK;
}

void sampler_accept(sampler *s, int32_t token) {
    if (s->hist) s->hist[s->n_seen % s->last_n] = token;
    s->n_seen++;
}

void sampler_free(sampler *s) {
    free(s->hist);
    s->hist = NULL;
    s->penalty = 1.0f;
}

/* The tokens the penalty counts (their order does not matter). */
static int sampler_history(const sampler *s) { return s->hist ? (int)CORE_MIN(s->n_seen, (int64_t)s->last_n) : 0; }

int sampler_takes_argmax(const sampler *s) {
    return !sampler_history(s) && (s->temperature <= 0.0f || s->top_k == 1);
}

/* One row's token from its (unfiltered, unnormalised) probabilities p [V], in place: top-k, top-p,
 * min-p, then a draw from sm's RNG. A row whose mass is not finite and positive (NaN or +inf
 * logits, or all -inf) has no distribution to draw from. */
static attamba_status draw_row(rt_ctx *ctx, sampler *sm, int V, double *p, int32_t *order, int64_t b,
                               int32_t *token) {
    double total = 0;
    for (int i = 0; i < V; i++) total += p[i];
    if (!isfinite(total) || !(total > 0))
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG,
                       "ops_sample: row %lld of logits has no finite softmax (NaN or +inf logits, or all -inf)",
                       (long long)b);
    ref_sample_filter(V, p, sm->top_k, sm->top_p, order);
    if (sm->min_p > 0.0f) ref_sample_min_p(V, p, sm->min_p);
    *token = ref_sample_draw(V, p, ref_uniform53(core_rng_next(&sm->rng)));
    return ATTAMBA_OK;
}

attamba_status sampler_sample_host(rt_ctx *ctx, sampler *sm, float *x, int64_t rows, int V, int32_t *tokens) {
    double *p = malloc((size_t)V * sizeof *p);
    int32_t *order = malloc((size_t)V * sizeof *order);
    attamba_status s = p && order ? ATTAMBA_OK : rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "ops_sample: out of host memory");
    for (int64_t b = 0; !s && b < rows; b++) {
        float *row = x + (size_t)b * V;
        ref_repetition_penalty(V, row, sm->hist, sampler_history(sm), sm->penalty);
        if (sm->temperature <= 0.0f || sm->top_k == 1) {
            ref_argmax(1, V, row, &tokens[b]);
            continue;
        }
        ref_sample_probs(V, row, sm->temperature, 0, 1.0f, p, order); /* the softmax alone */
        s = draw_row(ctx, sm, V, p, order, b, &tokens[b]);
    }
    free(p), free(order);
    return s;
}

/* The general path for a penalty: every row's logits downloaded, then sampler_sample_host. */
static attamba_status sample_penalised(rt_ctx *ctx, const tensor *logits, int64_t rows, int V, sampler *sm,
                                       int32_t *tokens) {
    float *x = malloc((size_t)rows * (size_t)V * sizeof *x);
    attamba_status s = x ? ATTAMBA_OK : rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "ops_sample: out of host memory");
    if (!s) s = tensor_download(logits, x); /* contiguous (expect_logits) */
    if (!s) s = sampler_sample_host(ctx, sm, x, rows, V, tokens);
    free(x);
    return s;
}

attamba_status ops_argmax_host(rt_ctx *ctx, const tensor *logits, int32_t *tokens) {
    int64_t rows = 0, rshape[TENSOR_MAX_DIMS] = {0};
    int V = 0, rndim = 0;
    RT_TRY(expect_logits(ctx, "ops_argmax_host", logits, &rows, &V, rshape, &rndim));
    tensor out = {0};
    attamba_status s = tensor_scratch(ctx, &out, TENSOR_I32, rndim, rshape);
    if (!s) s = ops_argmax(ctx, logits, &out);
    if (!s) s = tensor_download(&out, tokens);
    tensor_free(&out);
    return s;
}

attamba_status ops_sample(rt_ctx *ctx, const tensor *logits, sampler *sm, int32_t *tokens) {
    static const char *op = "ops_sample";
    int64_t rows = 0, rshape[TENSOR_MAX_DIMS] = {0};
    int V = 0, rndim = 0;
    if (!sm || !tokens) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: sampler and tokens must not be NULL", op);
    if (!isfinite(sm->temperature))
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: temperature must be finite, got %g", op,
                       (double)sm->temperature);
    if (!(sm->top_p > 0.0f && sm->top_p <= 1.0f))
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: top_p must be in (0, 1], got %g", op, (double)sm->top_p);
    RT_TRY(expect_logits(ctx, op, logits, &rows, &V, rshape, &rndim));
    if (sampler_takes_argmax(sm)) return ops_argmax_host(ctx, logits, tokens);
    if (sampler_history(sm)) return sample_penalised(ctx, logits, rows, V, sm, tokens); /* a penalty is set */

    size_t n = (size_t)rows * (size_t)V;
    float *probs = malloc(n * sizeof *probs);
    double *row = malloc((size_t)V * sizeof *row);
    int32_t *order = malloc((size_t)V * sizeof *order);
    tensor dp = {0};
    attamba_status s = probs && row && order ? ATTAMBA_OK
                                             : rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "%s: out of host memory", op);
    if (!s) s = tensor_scratch(ctx, &dp, TENSOR_F32, logits->ndim, logits->shape);
    if (!s) {
        rt_arg args[] = {RT_MEM(logits->buf->mem), RT_I32(logits->offset), RT_I32(V),
                         RT_F32(1.0f / sm->temperature), RT_MEM(dp.buf->mem), RT_I32(0), RT_LOCAL(0)};
        s = launch_rows(ctx, "softmax_temperature_rows", rows, V, sizeof(cl_float), (int)CORE_LEN(args), args);
    }
    if (!s) s = tensor_download(&dp, probs);
    for (int64_t b = 0; !s && b < rows; b++) {
        const float *pb = probs + (size_t)b * V;
        for (int i = 0; i < V; i++) row[i] = pb[i];
        s = draw_row(ctx, sm, V, row, order, b, &tokens[b]);
    }
    tensor_free(&dp);
    free(probs);
    free(row);
    free(order);
    return s;
}
