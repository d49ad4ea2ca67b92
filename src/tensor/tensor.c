#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "tensor.h"

size_t tensor_dtype_size(tensor_dtype t) {
    return t == TENSOR_Q8 ? TENSOR_Q8_BYTES : (t == TENSOR_F16 || t == TENSOR_BF16) ? 2 : 4;
}

const char *tensor_dtype_name(tensor_dtype t) {
    static const char *names[] = {"f32", "f16", "bf16", "i32", "q8"};
    return (unsigned)t < CORE_LEN(names) ? names[t] : "?";
}

int64_t tensor_numel(const tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

int tensor_is_contiguous(const tensor *t) {
    int64_t expect = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->stride[d] != expect) return 0;
        expect *= t->shape[d];
    }
    return 1;
}

int tensor_same_shape(const tensor *a, const tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return 1;
}

char *tensor_describe(const tensor *t, char *buf, size_t n) {
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < t->ndim && used < n; d++)
        used += (size_t)snprintf(buf + used, n - used, d ? ", %lld" : "%lld", (long long)t->shape[d]);
    if (used < n) snprintf(buf + used, n - used, "] %s", tensor_dtype_name(t->dtype));
    return buf;
}

static void set_contiguous_strides(tensor *t) {
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        t->stride[d] = s;
        s *= t->shape[d];
    }
}

static attamba_status alloc(rt_ctx *ctx, tensor *out, tensor_dtype dtype, int ndim, const int64_t *shape, int pooled) {
    memset(out, 0, sizeof *out);
    if (ndim < 1 || ndim > TENSOR_MAX_DIMS)
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "tensor_alloc: %d dims (1..%d allowed)", ndim, TENSOR_MAX_DIMS);
    if ((unsigned)dtype > TENSOR_Q8) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "tensor_alloc: bad dtype");
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 1 || shape[d] > ((int64_t)1 << 40))
            return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "tensor_alloc: dimension %d has size %lld", d,
                           (long long)shape[d]);
        numel *= shape[d];
        if (numel > INT32_MAX)
            return rt_fail(ctx, ATTAMBA_ERR_UNSUPPORTED,
                           "tensor_alloc: %lld+ elements; kernels index with 32-bit ints (max %d)",
                           (long long)numel, INT32_MAX);
    }
    size_t bytes = (size_t)numel * tensor_dtype_size(dtype);
    tensor_buffer *b = calloc(1, sizeof *b);
    if (!b) return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    attamba_status s = pooled ? rt_pool_acquire(ctx, bytes, &b->mem, &bytes) : rt_buffer_create(ctx, bytes, &b->mem);
    if (s) {
        free(b);
        return s;
    }
    b->ctx = ctx;
    b->bytes = bytes;
    b->refs = 1;
    b->pooled = pooled;
    out->buf = b;
    out->dtype = dtype;
    out->ndim = ndim;
    for (int d = 0; d < ndim; d++) out->shape[d] = shape[d];
    set_contiguous_strides(out);
    return ATTAMBA_OK;
}

attamba_status tensor_alloc(rt_ctx *ctx, tensor *out, tensor_dtype dtype, int ndim, const int64_t *shape) {
    return alloc(ctx, out, dtype, ndim, shape, 0);
}

attamba_status tensor_scratch(rt_ctx *ctx, tensor *out, tensor_dtype dtype, int ndim, const int64_t *shape) {
    return alloc(ctx, out, dtype, ndim, shape, 1);
}

void tensor_free(tensor *t) {
    tensor_buffer *b = t->buf;
    if (b && --b->refs == 0) {
        if (b->pooled) rt_pool_release(b->ctx, b->mem);
        else rt_buffer_release(b->ctx, b->mem, b->bytes);
        free(b);
    }
    memset(t, 0, sizeof *t);
}

static tensor view_of(const tensor *src) {
    tensor v = *src;
    if (v.buf) v.buf->refs++;
    return v;
}

/* Pads shape/strides to 4 dims on the left, as the strided kernels expect. */
static void dims4(const tensor *t, int *s, int *st) {
    int pad = TENSOR_MAX_DIMS - t->ndim;
    for (int d = 0; d < TENSOR_MAX_DIMS; d++) {
        s[d] = d < pad ? 1 : (int)t->shape[d - pad];
        st[d] = d < pad ? 0 : (int)t->stride[d - pad];
    }
}

static attamba_status launch_1d(rt_ctx *ctx, const char *kernel, int n, int n_args, const rt_arg *args) {
    cl_kernel k;
    RT_TRY(rt_kernel(ctx, "tensor", "", kernel, &k));
    size_t local = rt_local_1d(ctx, k, 256);
    size_t global = (size_t)n;
    return rt_launch(ctx, k, kernel, 1, &global, &local, n_args, args);
}

attamba_status tensor_copy(tensor *dst, const tensor *src) {
    rt_ctx *ctx = dst->buf ? dst->buf->ctx : NULL;
    if (!ctx || !src->buf) return ATTAMBA_ERR_INVALID_ARG;
    char a[64], b[64];
    int to_f16 = dst->dtype == TENSOR_F16 && src->dtype == TENSOR_F32; /* a conversion */
    if (!tensor_same_shape(dst, src) || (dst->dtype != src->dtype && !to_f16))
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "tensor_copy: %s from %s", tensor_describe(dst, a, sizeof a),
                       tensor_describe(src, b, sizeof b));
    if (src->buf->ctx != ctx)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "tensor_copy: the source lives on another device (%s); "
                       "tensor_transfer copies between devices", src->buf->ctx->dev.info.name);
    size_t es = tensor_dtype_size(src->dtype);
    if (!to_f16 && tensor_is_contiguous(dst) && tensor_is_contiguous(src)) {
        size_t bytes = (size_t)tensor_numel(src) * es;
        return rt_buffer_copy(ctx, src->buf->mem, (size_t)src->offset * es, dst->buf->mem, (size_t)dst->offset * es,
                              bytes);
    }
    if (es != 4 && es != 2)
        return rt_fail(ctx, ATTAMBA_ERR_UNSUPPORTED, "tensor_copy: strided %s tensors", tensor_dtype_name(src->dtype));
    int s[4], ds[4], ss[4];
    dims4(dst, s, ds);
    dims4(src, s, ss);
    int n = (int)tensor_numel(src);
    if (es == 4 && ds[3] == 1 && ss[3] == 1 && s[3] % 4 == 0) { /* whole quads along a contiguous last dim */
        const char *name = to_f16 ? "convert_strided4_f32_f16" : "copy_strided4_u32";
        cl_kernel k;
        RT_TRY(rt_kernel(ctx, "tensor", "", name, &k));
        int q3 = s[3] / 4, s01 = s[0] * s[1];
        rt_arg args[] = {RT_MEM(dst->buf->mem), RT_I32(dst->offset), RT_I32(ds[0]), RT_I32(ds[1]), RT_I32(ds[2]),
                         RT_MEM(src->buf->mem), RT_I32(src->offset), RT_I32(ss[0]), RT_I32(ss[1]), RT_I32(ss[2]),
                         RT_I32(s[1]), RT_I32(s[2]), RT_I32(q3), RT_I32(s01)};
        /* a group of about 64 work-items: the row's quads (up to 64), then rows of dim 2 */
        size_t lx = 1, cap = rt_local_1d(ctx, k, 64);
        while (lx < (size_t)q3 && 2 * lx <= cap) lx *= 2;
        size_t local[3] = {lx, CORE_MAX((size_t)1, cap / lx), 1};
        size_t global[3] = {(size_t)q3, (size_t)s[2], (size_t)s01};
        return rt_launch(ctx, k, name, 3, global, local, (int)CORE_LEN(args), args);
    }
    rt_arg args[] = {RT_MEM(dst->buf->mem), RT_I32(dst->offset), RT_I32(ds[0]), RT_I32(ds[1]), RT_I32(ds[2]),
                     RT_I32(ds[3]), RT_MEM(src->buf->mem), RT_I32(src->offset), RT_I32(ss[0]),
                     RT_I32(ss[1]), RT_I32(ss[2]), RT_I32(ss[3]), RT_I32(n), RT_I32(s[1]), RT_I32(s[2]),
                     RT_I32(s[3])};
    const char *name = to_f16 ? "convert_strided_f32_f16" : es == 4 ? "copy_strided_u32" : "copy_strided_u16";
    return launch_1d(ctx, name, n, (int)CORE_LEN(args), args);
}

attamba_status tensor_transfer(tensor *dst, const tensor *src) {
    if (!dst->buf || !src->buf) return ATTAMBA_ERR_INVALID_ARG;
    if (dst->buf->ctx == src->buf->ctx) return tensor_copy(dst, src);
    rt_ctx *ctx = dst->buf->ctx;
    char a[64], b[64];
    if (!tensor_same_shape(dst, src) || dst->dtype != src->dtype)
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "tensor_transfer: %s from %s", tensor_describe(dst, a, sizeof a),
                       tensor_describe(src, b, sizeof b));
    void *host = malloc((size_t)(tensor_numel(src) ? tensor_numel(src) : 1) * tensor_dtype_size(src->dtype));
    if (!host) return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "tensor_transfer: out of host memory");
    attamba_status s = tensor_download(src, host);
    if (s) rt_fail(ctx, s, "tensor_transfer: %s", src->buf->ctx->err);
    else s = tensor_upload(dst, host);
    free(host);
    return s;
}

attamba_status tensor_fill(tensor *t, double value) {
    if (!t->buf) return ATTAMBA_ERR_INVALID_ARG;
    rt_ctx *ctx = t->buf->ctx;
    uint32_t bits;
    if (t->dtype == TENSOR_F32) {
        float f = (float)value;
        memcpy(&bits, &f, 4);
    } else if (t->dtype == TENSOR_I32) {
        int32_t i = (int32_t)value;
        memcpy(&bits, &i, 4);
    } else if (t->dtype == TENSOR_F16) {
        bits = quant_f16_from_f32((float)value);
    } else {
        return rt_fail(ctx, ATTAMBA_ERR_UNSUPPORTED, "tensor_fill: %s", tensor_dtype_name(t->dtype));
    }
    int n = (int)tensor_numel(t), wide = t->dtype != TENSOR_F16;
    if (wide && tensor_is_contiguous(t)) { /* vector stores; the strided kernel divides per element */
        rt_arg args[] = {RT_MEM(t->buf->mem), RT_I32(t->offset), RT_I32_AT(&bits), RT_I32(n)};
        return launch_1d(ctx, "fill_u32", (n + 15) / 16, (int)CORE_LEN(args), args);
    }
    int s[4], st[4];
    dims4(t, s, st);
    rt_arg args[] = {RT_MEM(t->buf->mem), RT_I32(t->offset), RT_I32(st[0]), RT_I32(st[1]), RT_I32(st[2]),
                     RT_I32(st[3]), RT_I32_AT(&bits), RT_I32(n), RT_I32(s[1]), RT_I32(s[2]),
                     RT_I32(s[3])};
    return launch_1d(ctx, wide ? "fill_strided_u32" : "fill_strided_u16", n, (int)CORE_LEN(args), args);
}

attamba_status tensor_upload(tensor *t, const void *host) {
    if (!t->buf) return ATTAMBA_ERR_INVALID_ARG;
    rt_ctx *ctx = t->buf->ctx;
    size_t es = tensor_dtype_size(t->dtype), bytes = (size_t)tensor_numel(t) * es;
    if (tensor_is_contiguous(t))
        return rt_buffer_write(ctx, t->buf->mem, (size_t)t->offset * es, bytes, host);
    tensor tmp;
    RT_TRY(tensor_alloc(ctx, &tmp, t->dtype, t->ndim, t->shape));
    attamba_status s = tensor_upload(&tmp, host);
    if (!s) s = tensor_copy(t, &tmp);
    tensor_free(&tmp); /* the in-order queue keeps the buffer alive until the copy ran */
    return s;
}

attamba_status tensor_download(const tensor *t, void *host) {
    if (!t->buf) return ATTAMBA_ERR_INVALID_ARG;
    rt_ctx *ctx = t->buf->ctx;
    size_t es = tensor_dtype_size(t->dtype), bytes = (size_t)tensor_numel(t) * es;
    if (tensor_is_contiguous(t))
        return rt_buffer_read(ctx, t->buf->mem, (size_t)t->offset * es, bytes, host);
    tensor tmp;
    RT_TRY(tensor_contiguous(t, &tmp));
    attamba_status s = tensor_download(&tmp, host);
    tensor_free(&tmp);
    return s;
}

attamba_status tensor_slice(const tensor *src, int dim, int64_t start, int64_t len, tensor *out) {
    rt_ctx *ctx = src->buf->ctx;
    if (dim < 0 || dim >= src->ndim || start < 0 || len < 1 || start + len > src->shape[dim]) {
        char a[64];
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "tensor_slice: dim %d, [%lld, %lld) of %s", dim,
                       (long long)start, (long long)(start + len), tensor_describe(src, a, sizeof a));
    }
    *out = view_of(src);
    out->offset += start * src->stride[dim];
    out->shape[dim] = len;
    return ATTAMBA_OK;
}

attamba_status tensor_index(const tensor *src, int64_t i, tensor *out) {
    if (src->ndim < 2) {
        char a[64];
        return rt_fail(src->buf->ctx, ATTAMBA_ERR_SHAPE, "tensor_index: %s has no dim to keep",
                       tensor_describe(src, a, sizeof a));
    }
    RT_TRY(tensor_slice(src, 0, i, 1, out));
    for (int d = 0; d + 1 < out->ndim; d++) out->shape[d] = out->shape[d + 1], out->stride[d] = out->stride[d + 1];
    out->ndim--;
    return ATTAMBA_OK;
}

attamba_status tensor_transpose(const tensor *src, int d0, int d1, tensor *out) {
    if (d0 < 0 || d1 < 0 || d0 >= src->ndim || d1 >= src->ndim)
        return rt_fail(src->buf->ctx, ATTAMBA_ERR_SHAPE, "tensor_transpose: dims %d, %d of %d", d0, d1, src->ndim);
    *out = view_of(src);
    out->shape[d0] = src->shape[d1];
    out->shape[d1] = src->shape[d0];
    out->stride[d0] = src->stride[d1];
    out->stride[d1] = src->stride[d0];
    return ATTAMBA_OK;
}

attamba_status tensor_contiguous(const tensor *src, tensor *out) {
    if (tensor_is_contiguous(src)) {
        *out = view_of(src);
        return ATTAMBA_OK;
    }
    RT_TRY(tensor_alloc(src->buf->ctx, out, src->dtype, src->ndim, src->shape));
    attamba_status s = tensor_copy(out, src);
    if (s) tensor_free(out);
    return s;
}

attamba_status tensor_reshape(const tensor *src, int ndim, const int64_t *shape, tensor *out) {
    rt_ctx *ctx = src->buf->ctx;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    if (ndim < 1 || ndim > TENSOR_MAX_DIMS || n != tensor_numel(src)) {
        char a[64];
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "tensor_reshape: %d dims with %lld elements from %s", ndim,
                       (long long)n, tensor_describe(src, a, sizeof a));
    }
    RT_TRY(tensor_contiguous(src, out));
    out->ndim = ndim;
    for (int d = 0; d < ndim; d++) out->shape[d] = shape[d];
    set_contiguous_strides(out);
    return ATTAMBA_OK;
}

attamba_status tensor_rows(const tensor *t, tensor *out) {
    int64_t shape[2] = {tensor_numel(t) / t->shape[t->ndim - 1], t->shape[t->ndim - 1]};
    return tensor_reshape(t, 2, shape, out);
}

attamba_status tensor_columns(const tensor *x, int64_t from, int64_t n, tensor *out) {
    memset(out, 0, sizeof *out);
    return x->buf ? tensor_slice(x, 2, from, n, out) : ATTAMBA_OK;
}

/* ---- arenas ---- */

/* Views start at multiples of 64 elements (256 bytes): every kernel's vector loads stay aligned. */
#define ARENA_ALIGN 64

void tensor_arena_begin(tensor_arena *a, rt_ctx *ctx) {
    a->ctx = ctx;
    a->used = 0;
}

static int64_t arena_capacity(const tensor_arena *a) { return a->base.buf ? a->base.shape[0] : 0; }

attamba_status tensor_arena_take(tensor_arena *a, tensor *out, tensor_dtype dtype, int ndim, const int64_t *shape) {
    memset(out, 0, sizeof *out);
    if (tensor_dtype_size(dtype) != 4 || ndim < 1 || ndim > TENSOR_MAX_DIMS)
        return rt_fail(a->ctx, ATTAMBA_ERR_INTERNAL, "tensor_arena_take: %s, %d dims", tensor_dtype_name(dtype), ndim);
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    int64_t at = a->used;
    a->used = (int64_t)rt_round_up((size_t)(at + n), ARENA_ALIGN);
    if (a->used > arena_capacity(a)) return ATTAMBA_OK; /* measuring */
    RT_TRY(tensor_slice(&a->base, 0, at, n, out));
    out->dtype = dtype;
    out->ndim = ndim;
    for (int d = 0; d < ndim; d++) out->shape[d] = shape[d];
    set_contiguous_strides(out);
    return ATTAMBA_OK;
}

attamba_status tensor_arena_end(tensor_arena *a, int *again) {
    *again = a->used > arena_capacity(a);
    if (!*again) return ATTAMBA_OK;
    tensor_free(&a->base); /* views still held keep the old buffer alive until they go */
    return tensor_alloc(a->ctx, &a->base, TENSOR_F32, 1, &a->used);
}

int64_t tensor_arena_bytes(const tensor_arena *a) { return arena_capacity(a) * 4; }

void tensor_arena_free(tensor_arena *a) {
    tensor_free(&a->base);
    a->used = 0;
}
