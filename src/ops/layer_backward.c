/* Layer ops backward (src/ops/layer_backward.h): argument checks, then the kernels of
 * cl/layer_backward.cl. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/layer.h"
#include "ops/layer_backward.h"

#define PROGRAM "layer_backward"

/* Rows per block of the weight-gradient partial sums. Fixed (not from the device), so the order of
 * the f32 additions, hence the result, depends on the shape only. */
enum { DW_ROWS_PER_BLOCK = 32 };

/* An output may be the very same elements as an input when the kernels allow it (allow_exact),
 * never a shifted or partial overlap: a work-item would then read what another one writes. */
static attamba_status expect_apart(rt_ctx *ctx, const char *op, const char *out_name, const tensor *out,
                                   const char *in_name, const tensor *in, int allow_exact) {
    if (!ops_overlap(out, in)) return ATTAMBA_OK;
    if (allow_exact && out->offset == in->offset && tensor_numel(out) == tensor_numel(in)) return ATTAMBA_OK;
    return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: %s overlaps %s%s", op, out_name, in_name,
                   allow_exact ? " without being the same elements" : " (not allowed)");
}

/* One work-group per row, sized as the forward norms'. */
static attamba_status launch_rows(rt_ctx *ctx, const char *kernel, int64_t rows, int64_t C, int n_args,
                                  rt_arg *args) {
    return ops_launch_rows(ctx, PROGRAM, kernel, rows, C, 2 * sizeof(cl_float), n_args, args);
}

/* A (ceil(C / 4), rows) grid of a kernel taking four columns per work-item. */
static attamba_status launch_quads(rt_ctx *ctx, const char *kernel, int64_t rows, int64_t C, int n_args,
                                   const rt_arg *args) {
    cl_kernel k;
    RT_TRY(rt_kernel(ctx, PROGRAM, "", kernel, &k));
    return ops_launch_grid(ctx, k, kernel, (C + 3) / 4, rows, 1, n_args, args);
}

/* dw[c] += sum over rows of dout[r, c] * g[r, c] * stats[2r], g = a or a * silu(z) (z non-NULL).
 * One block of rows: straight into dw. Several: partials [nblk, C] in a scratch tensor (released
 * once enqueued; OpenCL keeps it alive until the kernels ran), then a fixed-order column sum. */
static attamba_status norm_dw(rt_ctx *ctx, const tensor *dout, const tensor *a, const tensor *z,
                              const tensor *stats, int64_t rows, int64_t C, tensor *dw) {
    int64_t nblk = (rows + DW_ROWS_PER_BLOCK - 1) / DW_ROWS_PER_BLOCK;
    const tensor *zz = z ? z : a; /* a valid buffer for the unused argument */
    tensor part = {0};
    if (nblk > 1) RT_TRY(tensor_scratch(ctx, &part, TENSOR_F32, 2, ((int64_t[]){nblk, C})));
    const tensor *dst = nblk > 1 ? &part : dw;
    rt_arg args[] = {RT_MEM(dst->buf->mem), RT_I32(dst->offset), RT_MEM(dout->buf->mem), RT_I32(dout->offset),
                     RT_MEM(a->buf->mem),   RT_I32(a->offset),   RT_MEM(zz->buf->mem),   RT_I32(zz->offset),
                     RT_MEM(stats->buf->mem), RT_I32(rows),      RT_I32(C),
                     RT_I32(DW_ROWS_PER_BLOCK), RT_I32(z != NULL), RT_I32(nblk == 1), RT_I32(nblk)};
    attamba_status s = launch_quads(ctx, "norm_dw_partial_f32", nblk, C, (int)CORE_LEN(args), args);
    if (!s && nblk > 1) {
        rt_arg sargs[] = {RT_MEM(dw->buf->mem), RT_I32(dw->offset), RT_MEM(part.buf->mem), RT_I32(nblk),
                          RT_I32(C)};
        s = ops_launch_1d(ctx, PROGRAM, "", "colsum_acc_f32", C, (int)CORE_LEN(sargs), sargs);
    }
    tensor_free(&part);
    return s;
}

attamba_status ops_rmsnorm_backward(rt_ctx *ctx, const tensor *x, const tensor *w, float eps, const tensor *dout,
                                    tensor *dx, tensor *dw) {
    static const char op[] = "ops_rmsnorm_backward";
    int64_t rows = 0, C = 0;
    RT_TRY(ops_expect_rows(ctx, op, "x", x, &rows, &C));
    RT_TRY(ops_expect(ctx, op, "w", w, TENSOR_F32, 1, &C));
    RT_TRY(ops_expect_same(ctx, op, "dout", dout, x));
    if (dx) RT_TRY(ops_expect_same(ctx, op, "dx", dx, x));
    if (dw) RT_TRY(ops_expect(ctx, op, "dw", dw, TENSOR_F32, 1, &C));
    RT_TRY(ops_expect_nonneg(ctx, op, "eps", eps));
    if (dx) {
        RT_TRY(expect_apart(ctx, op, "dx", dx, "x", x, 1));
        RT_TRY(expect_apart(ctx, op, "dx", dx, "dout", dout, 1));
        RT_TRY(expect_apart(ctx, op, "dx", dx, "w", w, 0));
    }
    if (dw) {
        RT_TRY(expect_apart(ctx, op, "dw", dw, "x", x, 0));
        RT_TRY(expect_apart(ctx, op, "dw", dw, "w", w, 0));
        RT_TRY(expect_apart(ctx, op, "dw", dw, "dout", dout, 0));
        RT_TRY(expect_apart(ctx, op, "dw", dw, "dx", dx, 0));
    }
    if (!dx && !dw) return ATTAMBA_OK;

    tensor stats;
    RT_TRY(tensor_scratch(ctx, &stats, TENSOR_F32, 1, ((int64_t[]){2 * rows})));
    /* Without dw the row kernel writes dx itself; with dw, dx waits until dw has read x and dout. */
    int fused = dx && !dw;
    const tensor *dxa = dx ? dx : x; /* a valid buffer for the unused argument */
    rt_arg args[] = {RT_MEM(dxa->buf->mem), RT_I32(dxa->offset), RT_MEM(stats.buf->mem), RT_MEM(x->buf->mem),
                     RT_I32(x->offset), RT_MEM(w->buf->mem), RT_I32(w->offset), RT_MEM(dout->buf->mem),
                     RT_I32(dout->offset), RT_I32(C), RT_F32(eps), RT_I32(fused), RT_LOCAL(0)};
    attamba_status s = launch_rows(ctx, "rmsnorm_bwd_rows_f32", rows, C, (int)CORE_LEN(args), args);
    if (!s && dw) s = norm_dw(ctx, dout, x, NULL, &stats, rows, C, dw);
    if (!s && dx && !fused) {
        int64_t n = rows * C;
        rt_arg dargs[] = {RT_MEM(dx->buf->mem), RT_I32(dx->offset), RT_MEM(stats.buf->mem), RT_MEM(x->buf->mem),
                          RT_I32(x->offset),    RT_MEM(w->buf->mem), RT_I32(w->offset),   RT_MEM(dout->buf->mem),
                          RT_I32(dout->offset), RT_I32(C),          RT_I32(n)};
        s = ops_launch_1d(ctx, PROGRAM, "", "rmsnorm_bwd_dx_f32", n, (int)CORE_LEN(dargs), dargs);
    }
    tensor_free(&stats);
    return s;
}

attamba_status ops_gated_rmsnorm_backward(rt_ctx *ctx, const tensor *y, const tensor *z, const tensor *w, float eps,
                                          const tensor *dout, tensor *dy, tensor *dz, tensor *dw) {
    static const char op[] = "ops_gated_rmsnorm_backward";
    int64_t rows = 0, C = 0;
    RT_TRY(ops_expect_rows(ctx, op, "y", y, &rows, &C));
    RT_TRY(ops_expect_same(ctx, op, "z", z, y));
    RT_TRY(ops_expect(ctx, op, "w", w, TENSOR_F32, 1, &C));
    RT_TRY(ops_expect_same(ctx, op, "dout", dout, y));
    if (dy) RT_TRY(ops_expect_same(ctx, op, "dy", dy, y));
    if (dz) RT_TRY(ops_expect_same(ctx, op, "dz", dz, y));
    if (dw) RT_TRY(ops_expect(ctx, op, "dw", dw, TENSOR_F32, 1, &C));
    RT_TRY(ops_expect_nonneg(ctx, op, "eps", eps));
    const struct { const char *name; const tensor *t; } ins[] = {{"y", y}, {"z", z}, {"dout", dout}};
    for (int i = 0; i < 3; i++) {
        if (dy) RT_TRY(expect_apart(ctx, op, "dy", dy, ins[i].name, ins[i].t, 1));
        if (dz) RT_TRY(expect_apart(ctx, op, "dz", dz, ins[i].name, ins[i].t, 1));
        if (dw) RT_TRY(expect_apart(ctx, op, "dw", dw, ins[i].name, ins[i].t, 0));
    }
    if (dy) RT_TRY(expect_apart(ctx, op, "dy", dy, "w", w, 0));
    if (dz) RT_TRY(expect_apart(ctx, op, "dz", dz, "w", w, 0));
    if (dy && dz) RT_TRY(expect_apart(ctx, op, "dy", dy, "dz", dz, 0));
    if (dw) {
        RT_TRY(expect_apart(ctx, op, "dw", dw, "w", w, 0));
        RT_TRY(expect_apart(ctx, op, "dw", dw, "dy", dy, 0));
        RT_TRY(expect_apart(ctx, op, "dw", dw, "dz", dz, 0));
    }
    if (!dy && !dz && !dw) return ATTAMBA_OK;

    tensor stats;
    RT_TRY(tensor_scratch(ctx, &stats, TENSOR_F32, 1, ((int64_t[]){2 * rows})));
    int fused = !dw, want_dy = dy != NULL, want_dz = dz != NULL;
    const tensor *dya = dy ? dy : y, *dza = dz ? dz : y; /* valid buffers for unused arguments */
    rt_arg args[] = {RT_MEM(dya->buf->mem), RT_I32(dya->offset), RT_MEM(dza->buf->mem), RT_I32(dza->offset),
                     RT_MEM(stats.buf->mem), RT_MEM(y->buf->mem), RT_I32(y->offset),  RT_MEM(z->buf->mem),
                     RT_I32(z->offset),      RT_MEM(w->buf->mem), RT_I32(w->offset),  RT_MEM(dout->buf->mem),
                     RT_I32(dout->offset),   RT_I32(C),           RT_F32(eps),        RT_I32(fused && want_dy),
                     RT_I32(fused && want_dz), RT_LOCAL(0)};
    attamba_status s = launch_rows(ctx, "gated_rmsnorm_bwd_rows_f32", rows, C, (int)CORE_LEN(args), args);
    if (!s && dw) s = norm_dw(ctx, dout, y, z, &stats, rows, C, dw);
    if (!s && !fused && (dy || dz)) {
        rt_arg dargs[] = {RT_MEM(dya->buf->mem), RT_I32(dya->offset), RT_MEM(dza->buf->mem), RT_I32(dza->offset),
                          RT_MEM(stats.buf->mem), RT_MEM(y->buf->mem), RT_I32(y->offset), RT_MEM(z->buf->mem),
                          RT_I32(z->offset),      RT_MEM(w->buf->mem), RT_I32(w->offset), RT_MEM(dout->buf->mem),
                          RT_I32(dout->offset),   RT_I32(C),           RT_I32(want_dy),   RT_I32(want_dz),
                          RT_I32(rows)};
        s = launch_quads(ctx, "gated_rmsnorm_bwd_dyz_f32", rows, C, (int)CORE_LEN(dargs), dargs);
    }
    tensor_free(&stats);
    return s;
}

attamba_status ops_rope_backward(rt_ctx *ctx, tensor *dx, int n_heads, const tensor *pos0, float theta) {
    /* the forward kernel with the angle negated: bit-identical angles in both directions */
    return ops_rope_rotate(ctx, "ops_rope_backward", dx, n_heads, NULL, 0, pos0, theta, -1.0f);
}

attamba_status ops_swiglu_backward(rt_ctx *ctx, const tensor *gate, const tensor *up, const tensor *dout,
                                   tensor *dgate, tensor *dup) {
    static const char op[] = "ops_swiglu_backward";
    int64_t rows = 0, C = 0;
    RT_TRY(ops_expect_rows(ctx, op, "gate", gate, &rows, &C));
    RT_TRY(ops_expect_same(ctx, op, "up", up, gate));
    RT_TRY(ops_expect_same(ctx, op, "dout", dout, gate));
    if (dgate) RT_TRY(ops_expect_same(ctx, op, "dgate", dgate, gate));
    if (dup) RT_TRY(ops_expect_same(ctx, op, "dup", dup, gate));
    const struct { const char *name; const tensor *t; } ins[] = {{"gate", gate}, {"up", up}, {"dout", dout}};
    for (int i = 0; i < 3; i++) {
        if (dgate) RT_TRY(expect_apart(ctx, op, "dgate", dgate, ins[i].name, ins[i].t, 1));
        if (dup) RT_TRY(expect_apart(ctx, op, "dup", dup, ins[i].name, ins[i].t, 1));
    }
    if (dgate && dup) RT_TRY(expect_apart(ctx, op, "dgate", dgate, "dup", dup, 0));
    if (!dgate && !dup) return ATTAMBA_OK;
    const tensor *dga = dgate ? dgate : gate, *dua = dup ? dup : gate; /* valid buffers when unused */
    int64_t n = tensor_numel(gate);
    rt_arg args[] = {RT_MEM(dga->buf->mem),  RT_I32(dga->offset),  RT_MEM(dua->buf->mem), RT_I32(dua->offset),
                     RT_MEM(gate->buf->mem), RT_I32(gate->offset), RT_MEM(up->buf->mem),  RT_I32(up->offset),
                     RT_MEM(dout->buf->mem), RT_I32(dout->offset), RT_I32(dgate != NULL), RT_I32(dup != NULL),
                     RT_I32(n)};
    return ops_launch_1d(ctx, PROGRAM, "", "swiglu_bwd_f32", n / 4 + n % 4, (int)CORE_LEN(args), args);
}

attamba_status ops_silu_backward(rt_ctx *ctx, const tensor *x, const tensor *dout, tensor *dx) {
    static const char op[] = "ops_silu_backward";
    int64_t rows = 0, C = 0;
    RT_TRY(ops_expect_rows(ctx, op, "x", x, &rows, &C));
    RT_TRY(ops_expect_same(ctx, op, "dout", dout, x));
    if (!dx) return ATTAMBA_OK;
    RT_TRY(ops_expect_same(ctx, op, "dx", dx, x));
    RT_TRY(expect_apart(ctx, op, "dx", dx, "x", x, 1));
    RT_TRY(expect_apart(ctx, op, "dx", dx, "dout", dout, 1));
    int64_t n = tensor_numel(x);
    rt_arg args[] = {RT_MEM(dx->buf->mem),   RT_I32(dx->offset),   RT_MEM(x->buf->mem), RT_I32(x->offset),
                     RT_MEM(dout->buf->mem), RT_I32(dout->offset), RT_I32(n)};
    return ops_launch_1d(ctx, PROGRAM, "", "silu_bwd_f32", n, (int)CORE_LEN(args), args);
}

attamba_status ops_embedding_backward(rt_ctx *ctx, const tensor *ids, const int32_t *ids_host, const tensor *dout,
                                      tensor *dtable) {
    static const char op[] = "ops_embedding_backward";
    char d[96];
    if (!ids || !ids->buf) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: ids is an empty tensor", op);
    if (ids->ndim != 2)
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: ids must be i32 [B, T], got %s", op,
                       tensor_describe(ids, d, sizeof d));
    RT_TRY(ops_expect(ctx, op, "ids", ids, TENSOR_I32, 2, ids->shape));
    if (!ids_host) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: ids_host is NULL", op);
    if (!dtable) return ATTAMBA_OK; /* nothing wanted; still checked ids above */
    if (!dtable->buf) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: dtable is an empty tensor", op);
    if (dtable->ndim != 2)
        return rt_fail(ctx, ATTAMBA_ERR_SHAPE, "%s: dtable must be f32 [V, d], got %s", op,
                       tensor_describe(dtable, d, sizeof d));
    RT_TRY(ops_expect(ctx, op, "dtable", dtable, TENSOR_F32, 2, dtable->shape));
    int64_t V = dtable->shape[0], width = dtable->shape[1], n_ids = tensor_numel(ids);
    int64_t dshape[3] = {ids->shape[0], ids->shape[1], width};
    RT_TRY(ops_expect(ctx, op, "dout", dout, TENSOR_F32, 3, dshape));
    RT_TRY(expect_apart(ctx, op, "dtable", dtable, "dout", dout, 0));
    for (int64_t i = 0; i < n_ids; i++)
        if (ids_host[i] < 0 || ids_host[i] >= V)
            return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: ids_host[%lld] = %d is outside [0, %lld)", op,
                           (long long)i, ids_host[i], (long long)V);

    /* CSR by counting sort: [used ids (n_used) | starts (n_used + 1) | positions (n_ids)], the
     * positions of each id in increasing order. */
    int32_t *count = calloc((size_t)V, sizeof *count), *slot = malloc((size_t)V * sizeof *slot);
    int32_t *csr = malloc((size_t)(3 * n_ids + 1) * sizeof *csr); /* n_used <= n_ids */
    if (!count || !slot || !csr) {
        free(count);
        free(slot);
        free(csr);
        return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "%s: no host memory for the CSR of %lld ids", op,
                       (long long)n_ids);
    }
    for (int64_t i = 0; i < n_ids; i++) count[ids_host[i]]++;
    int32_t n_used = 0;
    for (int64_t v = 0; v < V; v++)
        if (count[v]) csr[n_used++] = (int32_t)v;
    int32_t *start = csr + n_used, *pos = start + n_used + 1;
    start[0] = 0;
    for (int32_t u = 0; u < n_used; u++) {
        slot[csr[u]] = start[u];
        start[u + 1] = start[u] + count[csr[u]];
    }
    for (int64_t i = 0; i < n_ids; i++) pos[slot[ids_host[i]]++] = (int32_t)i;
    free(count);
    free(slot);

    tensor tcsr = {0};
    int64_t len = 2 * (int64_t)n_used + 1 + n_ids;
    attamba_status s = tensor_scratch(ctx, &tcsr, TENSOR_I32, 1, &len);
    if (!s) s = tensor_upload(&tcsr, csr);
    free(csr);
    if (!s) {
        int64_t n = (int64_t)n_used * width;
        rt_arg args[] = {RT_MEM(dtable->buf->mem), RT_I32(dtable->offset), RT_MEM(dout->buf->mem),
                         RT_I32(dout->offset),     RT_MEM(tcsr.buf->mem),   RT_I32(n_used),
                         RT_I32(width),            RT_I32(n)};
        s = ops_launch_1d(ctx, PROGRAM, "", "embedding_bwd_f32", n, (int)CORE_LEN(args), args);
    }
    tensor_free(&tcsr);
    return s;
}
