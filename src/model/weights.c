#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "safetensors.h"
#include "tensor/quant.h"
#include "weights.h"

typedef struct {
    weight_info *v;
    int n, cap;
    int64_t offset;
} builder;

static int add(builder *b, int decay, int64_t r, int64_t cols, const char *fmt, ...) CORE_PRINTF(5, 6);
static int add(builder *b, int decay, int64_t r, int64_t cols, const char *fmt, ...) {
    if (b->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 64;
        weight_info *g = realloc(b->v, (size_t)cap * sizeof *g);
        if (!g) return -1;
        b->v = g;
        b->cap = cap;
    }
    weight_info *w = &b->v[b->n++];
    memset(w, 0, sizeof *w);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->name, sizeof w->name, fmt, ap);
    va_end(ap);
    w->ndim = cols ? 2 : 1;
    w->shape[0] = r;
    w->shape[1] = cols;
    w->offset = b->offset;
    w->decay = decay;
    b->offset += r * (cols ? cols : 1);
    return 0;
}

attamba_status weights_list(const model_config *c, weight_info **out, int *n) {
    builder b = {0};
    int64_t d = c->dim, V = c->vocab_size, qw = (int64_t)c->n_heads * c->head_dim,
            kvw = (int64_t)c->n_kv_heads * c->head_dim, Fd = c->ffn_dim;
    int64_t E = c->ssm_inner, nh = c->ssm_heads, GN = (int64_t)c->ssm_groups * c->ssm_state;
    int err = add(&b, 1, V, d, "tok_embeddings.weight");
    for (int l = 0; l < c->n_layers && !err; l++) {
        err |= add(&b, 0, d, 0, "layers.%d.attention_norm.weight", l);
        err |= add(&b, 1, qw, d, "layers.%d.attention.wq.weight", l);
        if (c->kind == MODEL_ATTAMBA) {
            for (int s = 0; s < 2; s++) {
                const char *m = s ? "ssm_v" : "ssm_k";
                err |= add(&b, 1, 2 * E + 2 * GN + nh, d, "layers.%d.%s.in_proj.weight", l, m);
                if (c->ssm_conv > 0) err |= add(&b, 1, E + 2 * GN, c->ssm_conv, "layers.%d.%s.conv1d.weight", l, m);
                if (c->ssm_dt_bias) err |= add(&b, 0, nh, 0, "layers.%d.%s.dt_bias", l, m);
                err |= add(&b, 0, nh, 0, "layers.%d.%s.A_log", l, m);
                err |= add(&b, 0, nh, 0, "layers.%d.%s.D", l, m);
                err |= add(&b, 0, E, 0, "layers.%d.%s.norm.weight", l, m);
                err |= add(&b, 1, d, E, "layers.%d.%s.out_proj.weight", l, m);
            }
        } else {
            err |= add(&b, 1, kvw, d, "layers.%d.attention.wk.weight", l);
            err |= add(&b, 1, kvw, d, "layers.%d.attention.wv.weight", l);
        }
        err |= add(&b, 1, d, qw, "layers.%d.attention.wo.weight", l);
        err |= add(&b, 0, d, 0, "layers.%d.ffn_norm.weight", l);
        err |= add(&b, 1, Fd, d, "layers.%d.feed_forward.w1.weight", l);
        err |= add(&b, 1, d, Fd, "layers.%d.feed_forward.w2.weight", l);
        err |= add(&b, 1, Fd, d, "layers.%d.feed_forward.w3.weight", l);
    }
    err |= add(&b, 0, d, 0, "norm.weight");
    if (!c->tie_embeddings) err |= add(&b, 1, V, d, "output.weight");
    if (err) {
        free(b.v);
        return ATTAMBA_ERR_OUT_OF_MEMORY;
    }
    /* low precision for the matrices the GEMMs read as x W^T: not the embedding (gathered by rows, and
     * a tied output layer with it), nor the short conv taps */
    tensor_dtype lowp = c->weights == WEIGHTS_F16 ? TENSOR_F16 : c->weights == WEIGHTS_Q8 ? TENSOR_Q8 : TENSOR_F32;
    for (int i = 0; i < b.n; i++) {
        weight_info *w = &b.v[i];
        int matrix = w->ndim == 2 && w->decay && i > 0 && !strstr(w->name, "conv1d");
        int fits = lowp != TENSOR_Q8 || w->shape[1] % TENSOR_Q8_BLOCK == 0;
        w->dtype = matrix && fits ? lowp : TENSOR_F32;
    }
    *out = b.v;
    *n = b.n;
    return ATTAMBA_OK;
}

int weights_find(const weight_info *list, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(list[i].name, name)) return i;
    return -1;
}

int64_t weight_numel(const weight_info *w) { return w->shape[0] * (w->ndim == 2 ? w->shape[1] : 1); }

/* Index of layer l's first weight (l = n_layers: the final norm's). */
static int layer_start(const model_weights *w, const model_config *c, int l) {
    char name[WEIGHT_NAME_MAX];
    if (l == c->n_layers) return weights_find(w->info, w->n, "norm.weight");
    snprintf(name, sizeof name, "layers.%d.attention_norm.weight", l);
    return weights_find(w->info, w->n, name);
}

/* Elements of weight w in its storage type (q8: blocks). */
static int64_t stored_numel(const weight_info *w) {
    return weight_numel(w) / (w->dtype == TENSOR_Q8 ? TENSOR_Q8_BLOCK : 1);
}

attamba_status weights_alloc_layers(rt_ctx *ctx, const model_config *c, int l0, int l1, model_weights *w) {
    memset(w, 0, sizeof *w);
    if (weights_list(c, &w->info, &w->n)) return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    w->numel = w->info[w->n - 1].offset + weight_numel(&w->info[w->n - 1]);
    /* the held weights: info[first, end) (from the embedding for the first layers, to the output layer
     * for the last), then a tied output layer's copy of the embedding when the embedding is elsewhere */
    int L = c->n_layers;
    w->first = l0 == 0 ? 0 : layer_start(w, c, l0);
    w->end = l1 == L ? w->n : layer_start(w, c, l1);
    w->tied_copy = l1 == L && l0 > 0 && c->tie_embeddings;
    int64_t n32 = 0, nlow = 0; /* elements of flat and of lowp */
    tensor_dtype lowp = TENSOR_F32;
    for (int i = 0; i < w->n; i++) {
        if (!((i >= w->first && i < w->end) || (i == 0 && w->tied_copy))) continue;
        w->held += weight_numel(&w->info[i]);
        if (w->info[i].dtype == TENSOR_F32) n32 += weight_numel(&w->info[i]);
        else nlow += stored_numel(&w->info[i]), lowp = w->info[i].dtype;
    }
    const attamba_device_info *di = &ctx->dev.info;
    double need = 4.0 * (double)n32 + (double)nlow * (double)tensor_dtype_size(lowp), gib = 1024.0 * 1024.0 * 1024.0;
    if (w->numel > INT32_MAX || (di->global_mem_bytes && need > (double)di->global_mem_bytes)) {
        weights_free(w);
        return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY,
                       "the model needs %.2f GiB of weights (%lld parameters), %s has %.2f GiB%s", need / gib,
                       (long long)(need / 4), di->name, (double)di->global_mem_bytes / gib,
                       w->numel > INT32_MAX ? " (and kernels index weights with 32-bit ints: 2^31 parameters at most)" : "");
    }
    w->t = calloc((size_t)w->n, sizeof *w->t);
    attamba_status s = w->t ? tensor_alloc_f32(ctx, &w->flat, 1, &n32)
                            : rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    if (!s && nlow) s = tensor_alloc(ctx, &w->lowp, lowp, 1, &nlow);
    /* in list order, the tied copy last, each in its buffer */
    int64_t at32 = 0, atlow = 0;
    for (int k = 0; k <= w->n && !s; k++) {
        int i = k < w->n ? k : 0, here = k < w->n && i >= w->first && i < w->end, copy = k == w->n && w->tied_copy;
        if (!here && !copy) continue; /* held by another stage: an empty view */
        const weight_info *wi = &w->info[i];
        int low = wi->dtype != TENSOR_F32;
        int64_t *at = low ? &atlow : &at32, shape[2] = {wi->shape[0], wi->shape[1]};
        if (wi->dtype == TENSOR_Q8) shape[1] /= TENSOR_Q8_BLOCK;
        tensor slice;
        s = tensor_slice(low ? &w->lowp : &w->flat, 0, *at, stored_numel(wi), &slice);
        if (!s) s = tensor_reshape(&slice, wi->ndim, shape, &w->t[i]);
        tensor_free(&slice);
        *at += stored_numel(wi);
    }
    if (s) weights_free(w);
    return s;
}

attamba_status weights_alloc(rt_ctx *ctx, const model_config *c, model_weights *w) {
    return weights_alloc_layers(ctx, c, 0, c->n_layers, w);
}

attamba_status weights_upload_host(model_weights *w, const float *host) {
    if (w->held == w->numel && !w->lowp.buf) return tensor_upload(&w->flat, host);
    void *tmp = NULL;
    attamba_status s = ATTAMBA_OK;
    for (int i = 0; i < w->n && !s; i++) {
        const weight_info *wi = &w->info[i];
        if (!w->t[i].buf) continue;
        if (wi->dtype == TENSOR_F32) {
            s = tensor_upload(&w->t[i], host + wi->offset);
            continue;
        }
        void *q = realloc(tmp, quant_bytes(wi->dtype, weight_numel(wi)));
        if (!q) {
            s = rt_fail(w->flat.buf->ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
            break;
        }
        tmp = q;
        quant_encode(wi->dtype, host + wi->offset, weight_numel(wi), tmp);
        s = tensor_upload(&w->t[i], tmp); /* blocking: tmp may be reused after it */
    }
    free(tmp);
    return s;
}

void weights_free(model_weights *w) {
    if (w->t)
        for (int i = 0; i < w->n; i++) tensor_free(&w->t[i]);
    tensor_free(&w->flat);
    tensor_free(&w->lowp);
    free(w->t);
    free(w->info);
    memset(w, 0, sizeof *w);
}

int64_t weights_bytes(const model_weights *w) {
    int64_t b = w->flat.buf ? tensor_numel(&w->flat) * 4 : 0;
    return b + (w->lowp.buf ? tensor_numel(&w->lowp) * (int64_t)tensor_dtype_size(w->lowp.dtype) : 0);
}

const tensor *weights_get(const model_weights *w, const char *name) {
    int i = weights_find(w->info, w->n, name);
    return i < 0 ? NULL : &w->t[i];
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static float trunc_normal(core_rng *r, float std) {
    float x;
    do x = core_rng_normal(r);
    while (x < -3.0f || x > 3.0f);
    return x * std;
}

void weights_init_host(const model_config *c, const weight_info *list, int n, uint64_t seed, float *host) {
    for (int i = 0; i < n; i++) {
        const weight_info *w = &list[i];
        float *x = host + w->offset;
        int64_t numel = weight_numel(w);
        core_rng r; /* one stream per tensor: adding a tensor never changes the others */
        core_rng_seed(&r, seed ^ (0x51ed270b27a5ULL * (uint64_t)(i + 1)));
        if (ends_with(w->name, "norm.weight") || ends_with(w->name, ".D")) {
            for (int64_t j = 0; j < numel; j++) x[j] = 1.0f;
        } else if (ends_with(w->name, "A_log")) {
            for (int64_t j = 0; j < numel; j++)
                x[j] = logf(c->a_init_min + (c->a_init_max - c->a_init_min) * core_rng_uniform(&r));
        } else if (ends_with(w->name, "dt_bias")) {
            for (int64_t j = 0; j < numel; j++) {
                float dt = expf(logf(1e-3f) + (logf(1e-1f) - logf(1e-3f)) * core_rng_uniform(&r));
                x[j] = dt + logf(-expm1f(-dt)); /* softplus^-1 */
            }
        } else if (ends_with(w->name, "conv1d.weight")) {
            float bound = 1.0f / sqrtf((float)w->shape[1]);
            for (int64_t j = 0; j < numel; j++) x[j] = bound * (2.0f * core_rng_uniform(&r) - 1.0f);
        } else { /* [out, in] matrices and the [V, d] embedding: std = in^-1/2 */
            float std = 1.0f / sqrtf((float)w->shape[1]);
            for (int64_t j = 0; j < numel; j++) x[j] = trunc_normal(&r, std);
        }
    }
}

static void fmt_shape(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t u = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && u < n; d++) u += (size_t)snprintf(buf + u, n - u, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (u < n) snprintf(buf + u, n - u, "]");
}

/* A q8 weight in a file: its I8 values (read as floats) times the F32 scales of '<name>.scales'. */
static attamba_status read_q8_scales(const st_file *f, const char *path, const weight_info *wi, float *x, char *err,
                                     size_t err_size) {
    char name[WEIGHT_NAME_MAX + 8];
    snprintf(name, sizeof name, "%s.scales", wi->name);
    const st_tensor *t = st_find(f, name);
    int64_t nblk = wi->ndim == 2 ? wi->shape[1] / TENSOR_Q8_BLOCK : 0;
    if (!t || t->dtype != ST_F32 || t->ndim != 2 || t->shape[0] != wi->shape[0] || t->shape[1] != nblk ||
        nblk * TENSOR_Q8_BLOCK != wi->shape[1])
        return core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT,
                           "%s: I8 tensor '%s' needs F32 scales '%s' of shape [%lld, %lld] (blocks of %d values)", path,
                           wi->name, name, (long long)wi->shape[0], (long long)nblk, TENSOR_Q8_BLOCK);
    float *d = malloc((size_t)(wi->shape[0] * nblk) * sizeof *d);
    if (!d) return core_errbuf(err, err_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    st_read_f32(f, t, d);
    for (int64_t b = 0; b < wi->shape[0] * nblk; b++)
        for (int j = 0; j < TENSOR_Q8_BLOCK; j++) x[b * TENSOR_Q8_BLOCK + j] *= d[b];
    free(d);
    return ATTAMBA_OK;
}

/* Whether the file's tensor named name is the scales of one of its I8 weights. */
static int is_q8_scales(const st_file *f, const weight_info *info, int n, const char *name) {
    size_t len = strlen(name);
    if (len < 8 || strcmp(name + len - 7, ".scales") || len - 7 >= WEIGHT_NAME_MAX) return 0;
    char base[WEIGHT_NAME_MAX];
    memcpy(base, name, len - 7);
    base[len - 7] = 0;
    const st_tensor *t = st_find(f, base);
    return t && t->dtype == ST_I8 && weights_find(info, n, base) >= 0;
}

attamba_status weights_read_host(const model_config *c, const char *path, float **out, char *err, size_t err_size) {
    *out = NULL;
    weight_info *info;
    int n;
    if (weights_list(c, &info, &n)) return core_errbuf(err, err_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    st_file f;
    attamba_status s = st_open(path, &f, err, err_size);
    if (s) {
        free(info);
        return s;
    }
    float *host = malloc((size_t)(info[n - 1].offset + weight_numel(&info[n - 1])) * sizeof *host);
    if (!host) s = core_errbuf(err, err_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    for (int i = 0; i < n && !s; i++) {
        const weight_info *wi = &info[i];
        const st_tensor *t = st_find(&f, wi->name);
        if (!t) {
            s = core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT, "%s: missing tensor '%s' (the config says it exists)",
                            path, wi->name);
            break;
        }
        int same = t->ndim == wi->ndim && t->shape[0] == wi->shape[0] && (wi->ndim == 1 || t->shape[1] == wi->shape[1]);
        if (!same) {
            char have[96], want[96];
            fmt_shape(t->ndim, t->shape, have, sizeof have);
            fmt_shape(wi->ndim, wi->shape, want, sizeof want);
            s = core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT, "%s: tensor '%s' has shape %s, the config needs %s",
                            path, wi->name, have, want);
            break;
        }
        st_read_f32(&f, t, host + wi->offset);
        if (t->dtype == ST_I8) s = read_q8_scales(&f, path, wi, host + wi->offset, err, err_size);
    }
    for (int i = 0; i < f.n_tensors && !s; i++)
        if (weights_find(info, n, f.tensors[i].name) < 0 && !is_q8_scales(&f, info, n, f.tensors[i].name))
            s = core_errbuf(err, err_size, ATTAMBA_ERR_FORMAT, "%s: unexpected tensor '%s' (config and weights disagree)",
                            path, f.tensors[i].name);
    st_close(&f);
    free(info);
    if (s) free(host);
    else *out = host;
    return s;
}

attamba_status weights_load(rt_ctx *ctx, const model_config *c, const char *path, model_weights *w, char *err,
                            size_t err_size) {
    float *host = NULL;
    attamba_status s = weights_alloc(ctx, c, w); /* first: a model too large for the device is refused unread */
    if (s) return core_errbuf(err, err_size, s, "%s", ctx->err);
    s = weights_read_host(c, path, &host, err, err_size);
    if (!s && (s = weights_upload_host(w, host))) core_errbuf(err, err_size, s, "%s", ctx->err);
    if (s) weights_free(w);
    free(host);
    return s;
}

attamba_status weights_save_host(const weight_info *list, int n, const float *host, const char *path, char *err,
                                 size_t err_size) {
    /* room for the entries (a q8 weight is two) and the converted low-precision values */
    size_t bytes = 0;
    for (int i = 0; i < n; i++) bytes += list[i].dtype == TENSOR_F32 ? 0 : quant_bytes(list[i].dtype, weight_numel(&list[i]));
    st_entry *e = calloc((size_t)(2 * n), sizeof *e);
    unsigned char *low = bytes ? malloc(bytes) : NULL;
    int64_t(*scale_shape)[2] = calloc((size_t)n, sizeof *scale_shape);
    char(*scale_name)[WEIGHT_NAME_MAX + 8] = calloc((size_t)n, sizeof *scale_name);
    attamba_status s = e && (low || !bytes) && scale_shape && scale_name
                           ? ATTAMBA_OK : core_errbuf(err, err_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    int ne = 0;
    unsigned char *at = low;
    for (int i = 0; i < n && !s; i++) {
        const weight_info *w = &list[i];
        const float *x = host + w->offset;
        int64_t numel = weight_numel(w);
        e[ne++] = (st_entry){w->name, w->ndim, w->shape, x, ST_F32};
        if (w->dtype == TENSOR_F16) {
            quant_encode(TENSOR_F16, x, numel, at);
            e[ne - 1].data = at;
            e[ne - 1].dtype = ST_F16;
        } else if (w->dtype == TENSOR_Q8) {
            /* blocks [d, q0..q31] split into the values (in place, packed to the front) and the scales */
            int64_t nblk = numel / TENSOR_Q8_BLOCK;
            float *d = malloc((size_t)nblk * sizeof *d);
            if (!d) {
                s = core_errbuf(err, err_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
                break;
            }
            quant_encode(TENSOR_Q8, x, numel, at);
            for (int64_t b = 0; b < nblk; b++) {
                memcpy(&d[b], at + b * TENSOR_Q8_BYTES, 4);
                memmove(at + b * TENSOR_Q8_BLOCK, at + b * TENSOR_Q8_BYTES + 4, TENSOR_Q8_BLOCK);
            }
            memcpy(at + numel, d, (size_t)nblk * sizeof *d); /* numel + 4 nblk <= 36 nblk bytes */
            free(d);
            e[ne - 1].data = at;
            e[ne - 1].dtype = ST_I8;
            snprintf(scale_name[i], sizeof scale_name[i], "%s.scales", w->name);
            scale_shape[i][0] = w->shape[0];
            scale_shape[i][1] = w->shape[1] / TENSOR_Q8_BLOCK;
            e[ne++] = (st_entry){scale_name[i], 2, scale_shape[i], at + numel, ST_F32};
        }
        if (w->dtype != TENSOR_F32) at += quant_bytes(w->dtype, numel);
    }
    const char *meta[] = {"format", "attamba", NULL};
    if (!s) s = st_write(path, e, ne, meta, err, err_size);
    free(e);
    free(low);
    free(scale_shape);
    free(scale_name);
    return s;
}

attamba_status weights_save(const model_weights *w, const char *path, char *err, size_t err_size) {
    if (w->lowp.buf)
        return core_errbuf(err, err_size, ATTAMBA_ERR_UNSUPPORTED,
                           "saving %s weights: quantized models are written by `attamba quantize` from f32 weights",
                           tensor_dtype_name(w->lowp.dtype));
    float *host = malloc((size_t)w->numel * sizeof *host);
    attamba_status s = host ? ATTAMBA_OK : core_errbuf(err, err_size, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    if (!s && tensor_download(&w->flat, host))
        s = core_errbuf(err, err_size, ATTAMBA_ERR_OPENCL, "%s", w->flat.buf->ctx->err);
    if (!s) s = weights_save_host(w->info, w->n, host, path, err, err_size);
    free(host);
    return s;
}
