/* The K/V-SSM kernels (conv1d, SSM scan, their decode steps) against src/ref, property tests of the
 * reference itself, prefill == token-by-token decode, and refused arguments.
 * Tolerances: the kernels accumulate in f32, the reference in double. conv1d sums W <= 4 products:
 * 1e-5 relative + 1e-6 absolute. The scan sums up to T decayed terms of N products per token, so its
 * error grows with the output's scale: every scan comparison uses rtol 2e-4 and atol 2e-5 * max|ref|
 * (measured worst cases are ~10x below this). Two kernel paths differ only in summation order
 * and get the same bound. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/attention.h"
#include "ops/boundaries.h"
#include "ops/ssm.h"
#include "ops/tuning.h"
#include "ref/ref_layer.h"
#include "ref/ref_ssm.h"
#include "tensor/quant.h"
#include "testutil.h"

/* ------------------------------------------------------------------------------------------ helpers */

static tensor i32_tensor(int64_t n, const int32_t *host) { return tu_i32(1, &n, host); }

/* A row view of token t of a [B,T,C] tensor as [B,C] (row stride T*C); not owned, never freed. */
static tensor token_view(const tensor *full, int64_t t) {
    tensor v = *full;
    v.ndim = 2;
    v.shape[0] = full->shape[0];
    v.shape[1] = full->shape[2];
    v.stride[0] = full->shape[1] * full->shape[2];
    v.stride[1] = 1;
    v.offset = full->offset + t * full->shape[2];
    return v;
}

enum { SEG_UNIFORM, SEG_CYCLIC, SEG_RANDOM, SEG_EXPLICIT, SEG_ONE };

typedef struct {
    int kind, P;
} seg_case;

static const int64_t explicit_b[] = {0, 2, 3, 40, 41, 90};

static boundary_spec spec_of(seg_case s) {
    boundary_spec b = {.chunk = s.P};
    switch (s.kind) {
    case SEG_UNIFORM: b.strategy = BOUNDARY_UNIFORM; break;
    case SEG_CYCLIC: b.strategy = BOUNDARY_CYCLIC; break;
    case SEG_RANDOM: b.strategy = BOUNDARY_RANDOM, b.seed = 7; break;
    default:
        b.strategy = BOUNDARY_EXPLICIT, b.positions = explicit_b;
        b.n_positions = (int)(sizeof explicit_b / sizeof explicit_b[0]);
    }
    return b;
}

/* seg_start of layer 3 of 8 (so cyclic is really shifted); SEG_ONE = one segment over all of T,
 * which no boundary set gives (0 is always a boundary): the pure Mamba-2 case. */
static int32_t *make_segs(seg_case s, int T) {
    int32_t *seg = malloc((size_t)T * sizeof *seg);
    ck_assert_ptr_nonnull(seg);
    if (s.kind == SEG_ONE) {
        memset(seg, 0, (size_t)T * sizeof *seg);
        return seg;
    }
    boundary_spec b = spec_of(s);
    int64_t *pos = malloc((size_t)T * sizeof *pos);
    int64_t nb = boundary_positions(&b, 3, 8, T, pos, T);
    ck_assert_int_ge(nb, 1);
    boundary_segment_starts(pos, nb, T, seg);
    for (int t = 0; t < T; t++) /* the decode steps' restart flag, as the model derives it */
        ck_assert_int_eq(seg[t] == t, t == 0 || boundary_is_boundary(&b, 3, 8, t - 1));
    free(pos);
    return seg;
}

static double max_abs(const float *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

#define SCAN_RTOL 2e-4
#define SCAN_ATOL(ref, n) (2e-5 * max_abs((ref), (n)) + 1e-6)

/* ------------------------------------------------------------------------------------------- conv1d */

typedef struct {
    int B, T, C, W, silu;
    seg_case seg;
} conv_case;

static const conv_case conv_cases[] = {
    {1, 1, 1, 4, 1, {SEG_UNIFORM, 4}},    {2, 37, 5, 4, 1, {SEG_UNIFORM, 5}},   {1, 50, 64, 4, 0, {SEG_CYCLIC, 8}},
    {3, 33, 3, 3, 1, {SEG_UNIFORM, 1}},   {2, 91, 17, 4, 1, {SEG_RANDOM, 6}},   {1, 100, 9, 2, 0, {SEG_EXPLICIT, 0}},
    {2, 20, 8, 1, 1, {SEG_CYCLIC, 3}},    {1, 60, 12, 4, 1, {SEG_ONE, 0}},
};

/* Each case with every vector width a work-item may take (the table's conv.vc). */
static const int conv_widths[] = {4, 8, 16};
#define N_CONV_WIDTHS ((int)CORE_LEN(conv_widths))

START_TEST(conv1d_matches_reference_and_restarts_at_segment_starts) {
    const conv_case *cc = &conv_cases[_i / N_CONV_WIDTHS];
    rt_ctx *ctx = tu_ctx();
    int was_vc = ops_tune(ctx, TUNE_CONV_VC);
    tu_ok(ops_tune_set(ctx, TUNE_CONV_VC, conv_widths[_i % N_CONV_WIDTHS], "test"));
    int64_t n = (int64_t)cc->B * cc->T * cc->C;
    float *x = tu_random(n, 100 + (uint64_t)_i, -2, 2), *w = tu_random((int64_t)cc->C * cc->W, 200 + (uint64_t)_i, -1, 1);
    float *want = malloc((size_t)n * sizeof *want);
    int32_t *seg = make_segs(cc->seg, cc->T);
    tensor tx = tu_tensor(3, ((int64_t[]){cc->B, cc->T, cc->C}), x), tw = tu_tensor(2, ((int64_t[]){cc->C, cc->W}), w);
    tensor ts = i32_tensor(cc->T, seg), out = tu_zeros(3, tx.shape);
    tu_ok(ops_conv1d(ctx, &tx, &tw, &ts, cc->silu, &out));
    ref_conv1d(cc->B, cc->T, cc->C, cc->W, x, w, seg, cc->silu, want);
    float *got = tu_download(&out);
    tu_assert_close(got, want, n, 1e-5, 1e-6, "conv1d");
    /* the window really restarts: the first token of a segment sees only itself */
    for (int t = 0; t < cc->T; t++)
        if (seg[t] == t && !cc->silu)
            for (int c = 0; c < cc->C; c++)
                ck_assert_float_eq_tol(got[(int64_t)t * cc->C + c], w[c * cc->W + cc->W - 1] * x[(int64_t)t * cc->C + c],
                                       1e-5f);

    /* decode: stepping token by token from a zero window gives the prefill rows */
    tensor state = {0}, restart = {0}, o1 = tu_zeros(2, ((int64_t[]){cc->B, cc->C}));
    if (cc->W > 1) state = tu_zeros(3, ((int64_t[]){cc->B, cc->W - 1, cc->C}));
    int32_t *r = malloc((size_t)cc->B * sizeof *r);
    tu_ok(tensor_alloc(ctx, &restart, TENSOR_I32, 1, ((int64_t[]){cc->B})));
    float *steps = malloc((size_t)n * sizeof *steps), *row = malloc((size_t)cc->B * cc->C * sizeof *row);
    for (int t = 0; t < cc->T; t++) {
        for (int b = 0; b < cc->B; b++) r[b] = seg[t] == t;
        tu_ok(tensor_upload(&restart, r));
        tensor xt = token_view(&tx, t);
        tu_ok(ops_conv1d_step(ctx, &xt, &tw, cc->W > 1 ? &state : NULL, &restart, cc->silu, &o1));
        tu_ok(tensor_download(&o1, row));
        for (int b = 0; b < cc->B; b++)
            memcpy(steps + ((int64_t)b * cc->T + t) * cc->C, row + (int64_t)b * cc->C, (size_t)cc->C * sizeof *row);
    }
    tu_assert_close(steps, got, n, 1e-5, 1e-6, "conv1d_step vs conv1d");
    tu_ok(ops_tune_set(ctx, TUNE_CONV_VC, was_vc, "test"));
    free(steps), free(row), free(r), free(got), free(want), free(seg), free(x), free(w);
    tensor_free(&tx), tensor_free(&tw), tensor_free(&ts), tensor_free(&out), tensor_free(&state);
    tensor_free(&restart), tensor_free(&o1);
}
END_TEST

START_TEST(conv1d_step_matches_reference_with_mixed_restarts) {
    rt_ctx *ctx = tu_ctx();
    int B = 3, C = 10, W = 4;
    float *x = tu_random(B * C, 1, -2, 2), *w = tu_random(C * W, 2, -1, 1), *st = tu_random(B * (W - 1) * C, 3, -1, 1);
    int32_t r[3] = {0, 1, 0};
    float want[30];
    tensor tx = tu_tensor(2, ((int64_t[]){B, C}), x), tw = tu_tensor(2, ((int64_t[]){C, W}), w);
    tensor ts = tu_tensor(3, ((int64_t[]){B, W - 1, C}), st), tr = i32_tensor(B, r), out = tu_zeros(2, tx.shape);
    tu_ok(ops_conv1d_step(ctx, &tx, &tw, &ts, &tr, 1, &out));
    ref_conv1d_step(B, C, W, x, w, st, r, 1, want);
    float *got = tu_download(&out), *gst = tu_download(&ts);
    tu_assert_close(got, want, B * C, 1e-5, 1e-6, "conv1d_step");
    tu_assert_close(gst, st, B * (W - 1) * C, 0, 0, "conv1d_step state");
    free(got), free(gst), free(x), free(w), free(st);
    tensor_free(&tx), tensor_free(&tw), tensor_free(&ts), tensor_free(&tr), tensor_free(&out);
}
END_TEST

/* ------------------------------------------------------------------------------------------ scan */

typedef struct {
    int B, T, nh, p, G, N, bias;
    seg_case seg;
} scan_case;

static const scan_case scan_cases[] = {
    {1, 37, 1, 8, 1, 32, 1, {SEG_UNIFORM, 5}},   /* one head, T not a multiple of P */
    {2, 50, 4, 4, 2, 128, 0, {SEG_CYCLIC, 8}},   /* G > 1, batch, N = 128, no bias */
    {1, 33, 2, 6, 1, 7, 1, {SEG_UNIFORM, 1}},    /* P = 1, odd N */
    {2, 70, 4, 8, 4, 32, 1, {SEG_UNIFORM, 500}}, /* P >= T */
    {3, 91, 2, 5, 1, 13, 0, {SEG_RANDOM, 6}},    /* random boundaries, odd p and N */
    {1, 100, 8, 4, 2, 32, 1, {SEG_EXPLICIT, 0}}, /* explicit boundaries */
    {1, 130, 2, 4, 1, 32, 0, {SEG_ONE, 0}},      /* one segment: pure Mamba-2 */
    {2, 45, 2, 32, 1, 24, 1, {SEG_CYCLIC, 8}},   /* p = 32: 16 channels per work-item on 16-lane CPUs */
    {1, 40, 3, 48, 3, 9, 1, {SEG_UNIFORM, 6}},   /* p = 48 (16 lanes), G = 3, odd N */
};

typedef struct {
    int64_t nx, nb, nd;
    float *xs, *Bm, *Cm, *dt, *bias, *A_log, *D, *y, *fin;
    int32_t *seg;
} scan_data;

static scan_data make_data(const scan_case *c, uint64_t seed) {
    scan_data d;
    int E = c->nh * c->p, GN = c->G * c->N;
    d.nx = (int64_t)c->B * c->T * E, d.nb = (int64_t)c->B * c->T * GN, d.nd = (int64_t)c->B * c->T * c->nh;
    d.xs = tu_random(d.nx, seed, -1, 1);
    d.Bm = tu_random(d.nb, seed + 1, -1, 1);
    d.Cm = tu_random(d.nb, seed + 2, -1, 1);
    d.dt = tu_random(d.nd, seed + 3, -4, 1); /* softplus: dt in ~[0.02, 1.3] */
    d.bias = c->bias ? tu_random(c->nh, seed + 4, -1, 0.5f) : NULL;
    /* A_log = log(U[0.01, 2]) as the reference initialises it */
    d.A_log = tu_random(c->nh, seed + 5, 0.01f, 2.0f);
    for (int h = 0; h < c->nh; h++) d.A_log[h] = logf(d.A_log[h]);
    d.D = tu_random(c->nh, seed + 6, 0.5f, 1.5f);
    d.y = malloc((size_t)d.nx * sizeof *d.y);
    d.fin = malloc((size_t)c->B * c->nh * c->p * c->N * sizeof *d.fin);
    d.seg = make_segs(c->seg, c->T);
    ref_ssm_scan(c->B, c->T, c->nh, c->p, c->G, c->N, d.xs, d.Bm, d.Cm, d.dt, d.bias, d.A_log, d.D, d.seg, d.y, d.fin);
    return d;
}

static void free_data(scan_data *d) {
    free(d->xs), free(d->Bm), free(d->Cm), free(d->dt), free(d->bias), free(d->A_log), free(d->D), free(d->y);
    free(d->fin), free(d->seg);
}

typedef struct {
    tensor xs, Bm, Cm, dt, bias, A_log, D, seg, y, fin;
} scan_dev;

static scan_dev upload(const scan_case *c, const scan_data *d) {
    scan_dev v = {0};
    int64_t E = c->nh * c->p, GN = c->G * c->N, nh = c->nh;
    v.xs = tu_tensor(3, ((int64_t[]){c->B, c->T, E}), d->xs);
    v.Bm = tu_tensor(3, ((int64_t[]){c->B, c->T, GN}), d->Bm);
    v.Cm = tu_tensor(3, ((int64_t[]){c->B, c->T, GN}), d->Cm);
    v.dt = tu_tensor(3, ((int64_t[]){c->B, c->T, nh}), d->dt);
    if (d->bias) v.bias = tu_tensor(1, &nh, d->bias);
    v.A_log = tu_tensor(1, &nh, d->A_log);
    v.D = tu_tensor(1, &nh, d->D);
    v.seg = i32_tensor(c->T, d->seg);
    v.y = tu_zeros(3, v.xs.shape);
    v.fin = tu_zeros(4, ((int64_t[]){c->B, nh, c->p, c->N}));
    return v;
}

static void free_dev(scan_dev *v) {
    tensor *all[] = {&v->xs, &v->Bm, &v->Cm, &v->dt, &v->bias, &v->A_log, &v->D, &v->seg, &v->y, &v->fin};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tensor_free(all[i]);
}

static const tensor *bias_of(const scan_dev *v) { return v->bias.buf ? &v->bias : NULL; }

/* The test's own oracle: token by token over the whole sequence, zeroing the state wherever
 * seg_start says a segment begins; no segment bookkeeping at all. */
static void naive_scan(const scan_case *c, const scan_data *d, float *y, float *fin) {
    int E = c->nh * c->p, GN = c->G * c->N, hpg = c->nh / c->G, SN = c->p * c->N;
    double *S = calloc((size_t)c->B * c->nh * SN, sizeof *S);
    for (int t = 0; t < c->T; t++)
        for (int b = 0; b < c->B; b++)
            for (int h = 0; h < c->nh; h++) {
                double *s = S + ((int64_t)b * c->nh + h) * SN;
                int64_t bt = (int64_t)b * c->T + t;
                double dt = d->dt[bt * c->nh + h] + (d->bias ? d->bias[h] : 0.0);
                dt = dt > 20 ? dt : log(1.0 + exp(dt));
                double decay = d->seg[t] == t ? 0.0 : exp(-dt * exp(d->A_log[h]));
                const float *Bt = d->Bm + bt * GN + (h / hpg) * c->N, *Ct = d->Cm + bt * GN + (h / hpg) * c->N;
                for (int i = 0; i < c->p; i++) {
                    double xv = d->xs[bt * E + h * c->p + i], acc = 0;
                    for (int n = 0; n < c->N; n++) {
                        s[i * c->N + n] = decay * s[i * c->N + n] + dt * xv * Bt[n];
                        acc += s[i * c->N + n] * Ct[n];
                    }
                    y[bt * E + h * c->p + i] = (float)(acc + d->D[h] * xv);
                }
            }
    for (int64_t i = 0; i < (int64_t)c->B * c->nh * SN; i++) fin[i] = (float)S[i];
    free(S);
}

/* The closed (SSD, quadratic) form: y_t = sum_{s in seg, s <= t} (C_t . B_s) exp(A sum_{r=s+1..t} dt_r)
 * dt_s x_s + D x_t. Independent of any recurrence. */
static void quadratic_scan(const scan_case *c, const scan_data *d, float *y) {
    int E = c->nh * c->p, GN = c->G * c->N, hpg = c->nh / c->G;
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->nh; h++) {
            double A = -exp(d->A_log[h]);
            for (int t = 0; t < c->T; t++) {
                int64_t bt = (int64_t)b * c->T + t;
                for (int i = 0; i < c->p; i++) {
                    double acc = d->D[h] * d->xs[bt * E + h * c->p + i], cum = 0; /* cum = A sum dt over (s, t] */
                    for (int s = t; s >= d->seg[t]; s--) {
                        int64_t bs = (int64_t)b * c->T + s;
                        double dts = ref_softplus(d->dt[bs * c->nh + h] + (d->bias ? d->bias[h] : 0.0)), cb = 0;
                        for (int n = 0; n < c->N; n++)
                            cb += (double)d->Cm[bt * GN + (h / hpg) * c->N + n] * d->Bm[bs * GN + (h / hpg) * c->N + n];
                        acc += cb * exp(cum) * dts * d->xs[bs * E + h * c->p + i];
                        cum += A * dts;
                    }
                    y[bt * E + h * c->p + i] = (float)acc;
                }
            }
        }
}

START_TEST(reference_scan_equals_naive_recurrence_and_quadratic_form) {
    const scan_case *c = &scan_cases[_i];
    scan_data d = make_data(c, 1000 + 10 * (uint64_t)_i);
    int64_t nf = (int64_t)c->B * c->nh * c->p * c->N;
    float *y = malloc((size_t)d.nx * sizeof *y), *fin = malloc((size_t)nf * sizeof *fin);
    naive_scan(c, &d, y, fin);
    /* both in double: only the final rounding to float differs */
    tu_assert_close(d.y, y, d.nx, 1e-6, 1e-6, "ref vs naive y");
    tu_assert_close(d.fin, fin, nf, 1e-6, 1e-6, "ref vs naive final state");
    quadratic_scan(c, &d, y);
    tu_assert_close(d.y, y, d.nx, 1e-6, 1e-6 * max_abs(y, d.nx), "ref vs quadratic form");
    free(y), free(fin);
    free_data(&d);
}
END_TEST

/* Each path with its default block and with blocks small enough that segments span many blocks; AUTO
 * told the longest segment too (a wrong figure may slow the scan, never change it). */
static const ops_ssm_opts runs[] = {
    {OPS_SSM_AUTO, 0, 0},       {OPS_SSM_AUTO, 0, 3},       {OPS_SSM_SEQUENTIAL, 0, 0}, {OPS_SSM_SEQUENTIAL, 1, 0},
    {OPS_SSM_SEQUENTIAL, 7, 0}, {OPS_SSM_CHUNKED, 0, 0},    {OPS_SSM_CHUNKED, 1, 0},    {OPS_SSM_CHUNKED, 4, 0},
    {OPS_SSM_CHUNKED, 9, 0},    {OPS_SSM_QUADRATIC, 0, 0}};

START_TEST(scan_paths_match_reference_on_awkward_shapes) {
    const scan_case *c = &scan_cases[_i];
    rt_ctx *ctx = tu_ctx();
    scan_data d = make_data(c, 2000 + 10 * (uint64_t)_i);
    scan_dev v = upload(c, &d);
    int64_t nf = (int64_t)c->B * c->nh * c->p * c->N;
    float *first = NULL;
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        tu_ok(tensor_fill(&v.y, NAN));
        tu_ok(tensor_fill(&v.fin, NAN));
        tu_ok(ops_ssm_scan_with(ctx, &runs[r], &v.xs, &v.Bm, &v.Cm, &v.dt, bias_of(&v), &v.A_log, &v.D, &v.seg, c->G,
                                &v.y, &v.fin));
        float *y = tu_download(&v.y), *fin = tu_download(&v.fin);
        char what[96];
        snprintf(what, sizeof what, "case %d, %s block %d: y", _i, ops_ssm_path_name(runs[r].path), runs[r].block);
        tu_assert_close(y, d.y, d.nx, SCAN_RTOL, SCAN_ATOL(d.y, d.nx), what);
        strcat(what, " final state");
        tu_assert_close(fin, d.fin, nf, SCAN_RTOL, SCAN_ATOL(d.fin, nf), what);
        if (!first) first = y;
        else {
            tu_assert_close(y, first, d.nx, SCAN_RTOL, SCAN_ATOL(d.y, d.nx), "paths agree");
            free(y);
        }
        free(fin);
    }
    /* without final_state the outputs are the same */
    for (int path = OPS_SSM_CHUNKED; path <= OPS_SSM_QUADRATIC; path++) {
        tu_ok(ops_ssm_scan_with(ctx, &(ops_ssm_opts){(ops_ssm_path)path, 4, 0}, &v.xs, &v.Bm, &v.Cm, &v.dt,
                                bias_of(&v), &v.A_log, &v.D, &v.seg, c->G, &v.y, NULL));
        float *y = tu_download(&v.y);
        tu_assert_close(y, d.y, d.nx, SCAN_RTOL, SCAN_ATOL(d.y, d.nx), "without final_state");
        free(y);
    }
    free(first);
    free_dev(&v);
    free_data(&d);
}
END_TEST

/* Decode: stepping token by token (restart where a segment starts) from the state a prefill of the
 * first T0 tokens leaves gives the full prefill's outputs and final state; T0 = 0 starts from zeros. */
START_TEST(ssm_step_continues_a_prefill_exactly) {
    const scan_case *c = &scan_cases[_i];
    rt_ctx *ctx = tu_ctx();
    scan_data d = make_data(c, 3000 + 10 * (uint64_t)_i);
    scan_dev v = upload(c, &d);
    int64_t E = c->nh * c->p, nf = (int64_t)c->B * c->nh * c->p * c->N;
    /* no prefill, then prefills of each path */
    int T0s[4] = {0, c->T / 2 + 1, c->T / 2 + 1, c->T / 3 + 1};
    ops_ssm_path paths[4] = {OPS_SSM_AUTO, OPS_SSM_CHUNKED, OPS_SSM_QUADRATIC, OPS_SSM_SEQUENTIAL};
    tensor yt = tu_zeros(2, ((int64_t[]){c->B, E})), restart;
    tu_ok(tensor_alloc(ctx, &restart, TENSOR_I32, 1, ((int64_t[]){c->B})));
    int32_t *r = malloc((size_t)c->B * sizeof *r);
    float *ys = malloc((size_t)d.nx * sizeof *ys), *row = malloc((size_t)c->B * E * sizeof *row);
    for (int k = 0; k < 4; k++) {
        int T0 = T0s[k];
        tu_ok(tensor_fill(&v.fin, 0.0));
        if (T0 > 0) {
            tensor px[4], ps;
            tensor *full[4] = {&v.xs, &v.Bm, &v.Cm, &v.dt};
            for (int i = 0; i < 4; i++) tu_ok(tensor_slice(full[i], 1, 0, T0, &px[i])); /* batch-strided views */
            tu_ok(tensor_slice(&v.seg, 0, 0, T0, &ps));
            tensor py;
            tu_ok(tensor_alloc_f32(ctx, &py, 3, ((int64_t[]){c->B, T0, E})));
            tu_ok(ops_ssm_scan_with(ctx, &(ops_ssm_opts){paths[k], 4, 0}, &px[0], &px[1], &px[2], &px[3], bias_of(&v),
                                    &v.A_log, &v.D, &ps, c->G, &py, &v.fin));
            float *hy = tu_download(&py);
            for (int b = 0; b < c->B; b++)
                memcpy(ys + (int64_t)b * c->T * E, hy + (int64_t)b * T0 * E, (size_t)(T0 * E) * sizeof *hy);
            free(hy);
            tensor_free(&py), tensor_free(&ps);
            for (int i = 0; i < 4; i++) tensor_free(&px[i]);
        }
        for (int t = T0; t < c->T; t++) {
            for (int b = 0; b < c->B; b++) r[b] = d.seg[t] == t;
            tu_ok(tensor_upload(&restart, r));
            tensor xt = token_view(&v.xs, t), bt = token_view(&v.Bm, t), ct = token_view(&v.Cm, t);
            tensor dtt = token_view(&v.dt, t);
            tu_ok(ops_ssm_step(ctx, &xt, &bt, &ct, &dtt, bias_of(&v), &v.A_log, &v.D, &restart, c->G, &v.fin, &yt));
            tu_ok(tensor_download(&yt, row));
            for (int b = 0; b < c->B; b++)
                memcpy(ys + ((int64_t)b * c->T + t) * E, row + (int64_t)b * E, (size_t)E * sizeof *row);
        }
        float *fin = tu_download(&v.fin);
        tu_assert_close(ys, d.y, d.nx, SCAN_RTOL, SCAN_ATOL(d.y, d.nx), T0 ? "prefill + steps: y" : "steps: y");
        tu_assert_close(fin, d.fin, nf, SCAN_RTOL, SCAN_ATOL(d.fin, nf), "steps: final state");
        free(fin);
    }
    free(r), free(ys), free(row);
    tensor_free(&yt), tensor_free(&restart);
    free_dev(&v);
    free_data(&d);
}
END_TEST

START_TEST(ssm_step_matches_reference_with_mixed_restarts) {
    rt_ctx *ctx = tu_ctx();
    int B = 3, nh = 4, p = 3, G = 2, N = 9, E = nh * p;
    float *x = tu_random(B * E, 1, -1, 1), *bm = tu_random(B * G * N, 2, -1, 1), *cm = tu_random(B * G * N, 3, -1, 1);
    float *dt = tu_random(B * nh, 4, -3, 1), *al = tu_random(nh, 5, -2, 0.5f), *D = tu_random(nh, 6, 0, 1);
    float *st = tu_random(B * nh * p * N, 7, -1, 1), *want = malloc((size_t)B * E * sizeof *want);
    int32_t r[3] = {1, 0, 1};
    int64_t nh64 = nh;
    tensor tx = tu_tensor(2, ((int64_t[]){B, E}), x), tb = tu_tensor(2, ((int64_t[]){B, G * N}), bm);
    tensor tc = tu_tensor(2, ((int64_t[]){B, G * N}), cm), tdt = tu_tensor(2, ((int64_t[]){B, nh}), dt);
    tensor ta = tu_tensor(1, &nh64, al), tD = tu_tensor(1, &nh64, D), tr = i32_tensor(B, r);
    tensor ts = tu_tensor(4, ((int64_t[]){B, nh, p, N}), st), ty = tu_zeros(2, tx.shape);
    tu_ok(ops_ssm_step(ctx, &tx, &tb, &tc, &tdt, NULL, &ta, &tD, &tr, G, &ts, &ty));
    ref_ssm_step(B, nh, p, G, N, x, bm, cm, dt, NULL, al, D, r, st, want);
    float *got = tu_download(&ty), *gst = tu_download(&ts);
    /* one token: a dot product of N terms, so 1e-5 relative + 1e-5 absolute */
    tu_assert_close(got, want, B * E, 1e-5, 1e-5, "ssm_step y");
    tu_assert_close(gst, st, B * nh * p * N, 1e-5, 1e-5, "ssm_step state");
    free(got), free(gst), free(x), free(bm), free(cm), free(dt), free(al), free(D), free(st), free(want);
    tensor *all[] = {&tx, &tb, &tc, &tdt, &ta, &tD, &tr, &ts, &ty};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tensor_free(all[i]);
}
END_TEST

/* xs, Bm, Cm, dt_raw as column slices of one [B,T,F] projection (as x W_in produces them). */
START_TEST(scan_and_conv_read_column_slices_of_a_projection) {
    rt_ctx *ctx = tu_ctx();
    const scan_case *c = &scan_cases[1];
    scan_data d = make_data(c, 4000);
    int64_t E = c->nh * c->p, GN = c->G * c->N, F = E + 2 * GN + c->nh + 3, BT = (int64_t)c->B * c->T;
    float *proj = tu_random(BT * F, 9, -1, 1);
    for (int64_t i = 0; i < BT; i++) {
        memcpy(proj + i * F + 1, d.xs + i * E, (size_t)E * sizeof(float));
        memcpy(proj + i * F + 1 + E, d.Bm + i * GN, (size_t)GN * sizeof(float));
        memcpy(proj + i * F + 1 + E + GN, d.Cm + i * GN, (size_t)GN * sizeof(float));
        memcpy(proj + i * F + 1 + E + 2 * GN, d.dt + i * c->nh, (size_t)c->nh * sizeof(float));
    }
    tensor tp = tu_tensor(3, ((int64_t[]){c->B, c->T, F}), proj), vx, vb, vc, vd;
    tu_ok(tensor_slice(&tp, 2, 1, E, &vx));
    tu_ok(tensor_slice(&tp, 2, 1 + E, GN, &vb));
    tu_ok(tensor_slice(&tp, 2, 1 + E + GN, GN, &vc));
    tu_ok(tensor_slice(&tp, 2, 1 + E + 2 * GN, c->nh, &vd));
    scan_dev v = upload(c, &d);
    for (int path = OPS_SSM_SEQUENTIAL; path <= OPS_SSM_QUADRATIC; path++) {
        tu_ok(ops_ssm_scan_with(ctx, &(ops_ssm_opts){(ops_ssm_path)path, 8, 0}, &vx, &vb, &vc, &vd, bias_of(&v),
                                &v.A_log, &v.D, &v.seg, c->G, &v.y, &v.fin));
        float *y = tu_download(&v.y);
        tu_assert_close(y, d.y, d.nx, SCAN_RTOL, SCAN_ATOL(d.y, d.nx), "scan on column slices");
        free(y);
    }
    /* conv over the xs slice */
    float *w = tu_random(E * 4, 11, -1, 1), *want = malloc((size_t)d.nx * sizeof *want);
    tensor tw = tu_tensor(2, ((int64_t[]){E, 4}), w), out = tu_zeros(3, ((int64_t[]){c->B, c->T, E}));
    tu_ok(ops_conv1d(ctx, &vx, &tw, &v.seg, 1, &out));
    ref_conv1d(c->B, c->T, (int)E, 4, d.xs, w, d.seg, 1, want);
    float *got = tu_download(&out);
    tu_assert_close(got, want, d.nx, 1e-5, 1e-6, "conv on a column slice");
    free(got), free(want), free(w), free(proj);
    tensor_free(&tw), tensor_free(&out), tensor_free(&vx), tensor_free(&vb), tensor_free(&vc), tensor_free(&vd);
    tensor_free(&tp);
    free_dev(&v);
    free_data(&d);
}
END_TEST

/* ---- the fused decode step ---- */

/* Half i of t [2, ...] as a view without the leading dim: the twins of a K/V pair in one buffer. */
static tensor half(const tensor *t, int i) {
    tensor v;
    tu_ok(tensor_index(t, i, &v));
    return v;
}

/* One shape of ssm_decode_matches_reference_for_both_ssms (B = 3). */
static void ssm_decode_case(int nh, int p, int G, int N) {
    rt_ctx *ctx = tu_ctx();
    enum { B = 3 };
    const int E = nh * p, GN = G * N, CH = E + 2 * GN, F = CH + nh;
    const int widths[2] = {3, 0};
    int32_t pos[B] = {5, 9, 2}, sf[B] = {5, 8, 0};
    for (int wi = 0; wi < 2; wi++) {
        int W = widths[wi], Wn = W ? W : 1;
        for (int mode = 0; mode < 2; mode++) { /* 0: one launch for both, 1: one launch each */
            uint64_t seed = 900 + (uint64_t)(100 * p + 10 * wi + mode);
            float *x = tu_random(2 * B * F, seed, -2, 2), *z = tu_random(2 * B * E, seed + 1, -2, 2);
            float *cw = tu_random(2 * CH * Wn, seed + 2, -0.5, 0.5), *win = tu_random(2 * B * Wn * CH, seed + 3, -1, 1);
            float *bias = tu_random(2 * nh, seed + 4, -1, 1), *alog = tu_random(2 * nh, seed + 5, -1, 1);
            float *dd = tu_random(2 * nh, seed + 6, -1, 1), *nw = tu_random(2 * E, seed + 7, 0.5, 1.5);
            float *st = tu_random(2 * B * E * N, seed + 8, -1, 1), *g = malloc(2 * B * E * sizeof *g);
            tensor tx = tu_tensor(3, ((int64_t[]){2, B, F}), x), tz = tu_tensor(3, ((int64_t[]){2, B, E}), z);
            tensor tcw = tu_tensor(3, ((int64_t[]){2, CH, Wn}), cw), twin = tu_tensor(4, ((int64_t[]){2, B, Wn, CH}), win);
            tensor tb = tu_tensor(2, ((int64_t[]){2, nh}), bias), ta = tu_tensor(2, ((int64_t[]){2, nh}), alog);
            tensor td = tu_tensor(2, ((int64_t[]){2, nh}), dd), tn = tu_tensor(2, ((int64_t[]){2, E}), nw);
            tensor tst = tu_tensor(2, ((int64_t[]){2, B * E * N}), st), tg = tu_zeros(3, ((int64_t[]){2, B, E}));
            tensor tp = i32_tensor(B, pos), tsf = i32_tensor(B, sf);
            tensor v[2][10];
            ops_ssm_decode_io io[2];
            for (int i = 0; i < 2; i++) {
                tensor *h = v[i];
                h[0] = half(&tx, i), h[1] = half(&tz, i), h[2] = half(&tcw, i), h[3] = half(&twin, i);
                h[4] = half(&tb, i), h[5] = half(&ta, i), h[6] = half(&td, i), h[7] = half(&tn, i);
                h[8] = half(&tst, i), h[9] = half(&tg, i);
                h[8].ndim = 4; /* [B * E * N] as [B, nh, p, N] (tensors have at most 4 dims) */
                int64_t ss[4] = {B, nh, p, N}, sst[4] = {E * N, p * N, N, 1};
                memcpy(h[8].shape, ss, sizeof ss);
                memcpy(h[8].stride, sst, sizeof sst);
                io[i] = (ops_ssm_decode_io){&h[0], &h[1], W ? &h[2] : NULL, &h[4], &h[5], &h[6], &h[7], &h[3], &h[8], &h[9]};
            }
            attamba_counters c0, c1;
            attamba_context_counters(ctx, &c0);
            if (mode == 0) tu_ok(ops_ssm_decode(ctx, 2, io, &tp, &tsf, G, 1e-5f));
            for (int i = 0; i < 2 && mode == 1; i++) tu_ok(ops_ssm_decode(ctx, 1, &io[i], &tp, &tsf, G, 1e-5f));
            attamba_context_counters(ctx, &c1);
            ck_assert_uint_eq(c1.launches - c0.launches, 2 - (mode == 0));
            float *gg = tu_download(&tg), *gs = tu_download(&tst), *gw = tu_download(&twin);
            for (int i = 0; i < 2; i++)
                ref_ssm_decode(B, nh, p, G, N, W, x + i * B * F, F, z + i * B * E, W ? cw + i * CH * W : NULL,
                               win + i * B * Wn * CH, bias + i * nh, alog + i * nh, dd + i * nh, nw + i * E, 1e-5f,
                               pos, sf, st + i * B * E * N, g + i * B * E);
            char what[64];
            snprintf(what, sizeof what, "g (p = %d, W = %d, mode %d)", p, W, mode);
            tu_assert_close(gg, g, 2 * B * E, 1e-4, 1e-5, what);
            tu_assert_close(gs, st, 2 * B * E * N, 1e-5, 1e-5, "state");
            if (W) tu_assert_close(gw, win, 2 * B * W * CH, 0, 0, "window");
            for (int i = 0; i < 2; i++)
                for (int k = 0; k < 10; k++) tensor_free(&v[i][k]);
            tensor *all[] = {&tx, &tz, &tcw, &twin, &tb, &ta, &td, &tn, &tst, &tg, &tp, &tsf};
            for (size_t k = 0; k < CORE_LEN(all); k++) tensor_free(all[k]);
            float *fr[] = {x, z, cw, win, bias, alog, dd, nw, st, g, gg, gs, gw};
            for (size_t k = 0; k < CORE_LEN(fr); k++) free(fr[k]);
        }
    }
}

/* The fused decode step (ring conv + SiLU + state step + gated norm) of two SSMs against the
 * reference, for sequences that restart, continue with every tap, and continue with a tap before
 * the segment start masked; in one launch (twins in one buffer), one launch each, and without a
 * conv (ssm_conv = 0: xs, B, C raw). Awkward sizes: N = 12 (a float8 and a tail), G = 2; p = 3 (a row
 * at a time) and p = 16 with E = 64 (on CPU rows, work-items of 8 rows or more: pieces of 8 rows as
 * vectors, and B, C 8 channels at a time). */
START_TEST(ssm_decode_matches_reference_for_both_ssms) {
    ssm_decode_case(4, 3, 2, 12);
    ssm_decode_case(4, 16, 2, 12);
}
END_TEST

/* One operand set of ssm_decode_append_is_decode_out_proj_then_append, uploaded from the same host data
 * twice: the SSMs' tensors as [2, ...] twins (views v), k and v as the twins of kv, q, the ring and a
 * head-major store (f32 or f16). */
enum { FB = 3, Fnh = 4, Fp = 16, FG = 2, FN = 12, FW = 3, FE = Fnh * Fp, FGN = FG * FN, FCH = FE + 2 * FGN,
       FF = FCH + Fnh, FH = 4, FHkv = 2, FR = 3, Fcap = 4 };
typedef struct {
    float *x, *z, *cw, *win, *bias, *alog, *dd, *nw, *st, *kv, *q, *kr, *vr, *kb, *vb;
    int32_t pos[FB], sf[FB], store[FB], bpos[FB * Fcap], nb[FB];
} fused_host;
typedef struct {
    tensor x, z, cw, win, bias, alog, dd, nw, st, g, kv, q, kr, vr, kb, vb, bpos, nb, pos, sf, store;
    tensor v[2][10], k[2];
    ops_ssm_decode_io io[2];
} fused_dev;

static fused_host fused_data(int dh, uint64_t seed) {
    const int C = FHkv * dh, nst = FB * FHkv * Fcap * dh;
    fused_host h = {tu_random(2 * FB * FF, seed, -2, 2), tu_random(2 * FB * FE, seed + 1, -2, 2),
                    tu_random(2 * FCH * FW, seed + 2, -0.5, 0.5), tu_random(2 * FB * FW * FCH, seed + 3, -1, 1),
                    tu_random(2 * Fnh, seed + 4, -1, 1), tu_random(2 * Fnh, seed + 5, -1, 1),
                    tu_random(2 * Fnh, seed + 6, -1, 1), tu_random(2 * FE, seed + 7, 0.5, 1.5),
                    tu_random(2 * FB * FE * FN, seed + 8, -1, 1), tu_random(2 * FB * C, seed + 9, -1, 1),
                    tu_random(FB * FH * dh, seed + 10, -1, 1), tu_random(FB * FR * C, seed + 11, -1, 1),
                    tu_random(FB * FR * C, seed + 12, -1, 1), tu_random(nst, seed + 13, -1, 1),
                    tu_random(nst, seed + 14, -1, 1), {5, 9, 2}, {5, 8, 0}, {0, -1, 3}, {0}, {1, 3, 2}};
    for (int i = 0; i < FB * Fcap; i++) h.bpos[i] = -7;
    return h;
}

static void fused_host_free(fused_host *h) {
    float *fr[] = {h->x, h->z, h->cw, h->win, h->bias, h->alog, h->dd, h->nw, h->st, h->kv, h->q, h->kr, h->vr,
                   h->kb, h->vb};
    for (size_t i = 0; i < CORE_LEN(fr); i++) free(fr[i]);
}

static tensor store_tensor(tensor_dtype t, int dh, const float *x) {
    int64_t shape[4] = {FB, FHkv, Fcap, dh}, n = (int64_t)FB * FHkv * Fcap * dh;
    if (t == TENSOR_F32) return tu_tensor(4, shape, x);
    uint16_t *h = malloc((size_t)n * sizeof *h);
    for (int64_t i = 0; i < n; i++) h[i] = quant_f16_from_f32(x[i]);
    tensor out;
    tu_ok(tensor_alloc(tu_ctx(), &out, TENSOR_F16, 4, shape));
    tu_ok(tensor_upload(&out, h));
    free(h);
    return out;
}

static void fused_upload(fused_dev *d, const fused_host *h, int dh, tensor_dtype store_type) {
    const int C = FHkv * dh;
    d->x = tu_tensor(3, ((int64_t[]){2, FB, FF}), h->x), d->z = tu_tensor(3, ((int64_t[]){2, FB, FE}), h->z);
    d->cw = tu_tensor(3, ((int64_t[]){2, FCH, FW}), h->cw);
    d->win = tu_tensor(4, ((int64_t[]){2, FB, FW, FCH}), h->win);
    d->bias = tu_tensor(2, ((int64_t[]){2, Fnh}), h->bias), d->alog = tu_tensor(2, ((int64_t[]){2, Fnh}), h->alog);
    d->dd = tu_tensor(2, ((int64_t[]){2, Fnh}), h->dd), d->nw = tu_tensor(2, ((int64_t[]){2, FE}), h->nw);
    d->st = tu_tensor(2, ((int64_t[]){2, FB * FE * FN}), h->st), d->g = tu_zeros(3, ((int64_t[]){2, FB, FE}));
    d->kv = tu_tensor(3, ((int64_t[]){2, FB, C}), h->kv), d->q = tu_tensor(2, ((int64_t[]){FB, FH * dh}), h->q);
    d->kr = tu_tensor(3, ((int64_t[]){FB, FR, C}), h->kr), d->vr = tu_tensor(3, ((int64_t[]){FB, FR, C}), h->vr);
    d->kb = store_tensor(store_type, dh, h->kb), d->vb = store_tensor(store_type, dh, h->vb);
    d->bpos = tu_i32(2, ((int64_t[]){FB, Fcap}), h->bpos), d->nb = i32_tensor(FB, h->nb);
    d->pos = i32_tensor(FB, h->pos), d->sf = i32_tensor(FB, h->sf), d->store = i32_tensor(FB, h->store);
    for (int i = 0; i < 2; i++) {
        tensor *v = d->v[i];
        v[0] = half(&d->x, i), v[1] = half(&d->z, i), v[2] = half(&d->cw, i), v[3] = half(&d->win, i);
        v[4] = half(&d->bias, i), v[5] = half(&d->alog, i), v[6] = half(&d->dd, i), v[7] = half(&d->nw, i);
        v[8] = half(&d->st, i), v[9] = half(&d->g, i);
        v[8].ndim = 4;
        int64_t ss[4] = {FB, Fnh, Fp, FN}, sst[4] = {FE * FN, Fp * FN, FN, 1};
        memcpy(v[8].shape, ss, sizeof ss);
        memcpy(v[8].stride, sst, sizeof sst);
        d->io[i] = (ops_ssm_decode_io){&v[0], &v[1], &v[2], &v[4], &v[5], &v[6], &v[7], &v[3], &v[8], &v[9]};
        d->k[i] = half(&d->kv, i);
    }
}

static void fused_free(fused_dev *d) {
    for (int i = 0; i < 2; i++) {
        for (int k = 0; k < 10; k++) tensor_free(&d->v[i][k]);
        tensor_free(&d->k[i]);
    }
    tensor *all[] = {&d->x, &d->z, &d->cw, &d->win, &d->bias, &d->alog, &d->dd, &d->nw, &d->st, &d->g, &d->kv,
                     &d->q, &d->kr, &d->vr, &d->kb, &d->vb, &d->bpos, &d->nb, &d->pos, &d->sf, &d->store};
    for (size_t i = 0; i < CORE_LEN(all); i++) tensor_free(all[i]);
}

static ops_kv_step fused_step(fused_dev *d, const tensor W[2]) {
    return (ops_kv_step){{&W[0], &W[1]}, &d->q, &d->k[0], &d->k[1], FH, FHkv, 10000.0f, &d->store,
                         &d->kr, &d->vr, &d->kb, &d->vb, &d->bpos, &d->nb};
}

/* An output of both sets as floats (f16 stores decoded, i32 converted). */
static float *fused_floats(const tensor *t) {
    int64_t n = tensor_numel(t);
    float *f = malloc((size_t)n * sizeof *f);
    if (t->dtype == TENSOR_F32) {
        tu_ok(tensor_download(t, f));
    } else {
        void *raw = malloc((size_t)n * tensor_dtype_size(t->dtype));
        tu_ok(tensor_download(t, raw));
        for (int64_t i = 0; i < n; i++)
            f[i] = t->dtype == TENSOR_F16 ? quant_f32_from_f16(((uint16_t *)raw)[i]) : (float)((int32_t *)raw)[i];
        free(raw);
    }
    return f;
}

/* The one-launch decode step of an Attamba layer (ops_ssm_decode_append) against its three ops
 * (ops_ssm_decode, the out_proj by ops_gemm, ops_kv_append_rope) on a second copy of every operand,
 * and k, v, q against the host reference (ref_ssm_decode, the products with the weights the kernels
 * see, ref_rope): f32, f16 and q8 out_proj, f32 and f16 head-major stores; sequences that restart,
 * continue, and skip the store (store -1). Heads of 6 (no whole pieces of 8) decline with nothing
 * launched, and so is a step of more sequences than the device's table takes (ssm.decode_append, set here
 * for the test: the GPU rows have it off but their work-groups are checked too). Awkward sizes: N = 12 (a
 * float8 and a tail), G = 2, B = 3. */
START_TEST(ssm_decode_append_is_decode_out_proj_then_append) {
    static const tensor_dtype wts[] = {TENSOR_F32, TENSOR_F16, TENSOR_Q8};
    rt_ctx *ctx = tu_ctx();
    const tensor_dtype wt = wts[_i % 3], store_type = _i < 3 ? TENSOR_F32 : TENSOR_F16;
    const int dh = 16, C = FHkv * dh;
    fused_host h = fused_data(dh, 1200 + (uint64_t)_i);
    float *wv;
    tensor Wall = tu_weight(wt, 2 * C, FE, 1300 + (uint64_t)_i, &wv), W[2];
    for (int i = 0; i < 2; i++) tu_ok(tensor_slice(&Wall, 0, i * C, C, &W[i]));
    fused_dev f, u;
    fused_upload(&f, &h, dh, store_type);
    fused_upload(&u, &h, dh, store_type);
    ops_kv_step fs = fused_step(&f, W), us = fused_step(&u, W);
    attamba_counters c0, c1;
    int table = ops_tune(ctx, TUNE_SSM_DECODE_APPEND), done = -1; /* the GPU rows say 0: set here, restored */
    tu_ok(ops_tune_set(ctx, TUNE_SSM_DECODE_APPEND, FB, "test"));
    attamba_context_counters(ctx, &c0);
    tu_ok(ops_ssm_decode_append(ctx, f.io, &fs, &f.pos, &f.sf, FG, 1e-5f, &done));
    attamba_context_counters(ctx, &c1);
    ck_assert_int_eq(done, 1);
    ck_assert_uint_eq(c1.launches - c0.launches, 1);
    tu_ok(ops_ssm_decode(ctx, 2, u.io, &u.pos, &u.sf, FG, 1e-5f));
    for (int i = 0; i < 2; i++) tu_ok(ops_gemm(ctx, 0, 1, 1.0f, &u.v[i][9], us.out_w[i], 1.0f, i ? us.v : us.k));
    tu_ok(ops_kv_append_rope(ctx, us.q, us.q_heads, us.k, us.k_heads, us.v, &u.pos, us.theta, us.store, us.kr, us.vr,
                             us.kb, us.vb, us.bpos, us.nb));
    const tensor *fo[] = {&f.g, &f.st, &f.win, &f.kv, &f.q, &f.kr, &f.vr, &f.kb, &f.vb, &f.bpos, &f.nb};
    const tensor *uo[] = {&u.g, &u.st, &u.win, &u.kv, &u.q, &u.kr, &u.vr, &u.kb, &u.vb, &u.bpos, &u.nb};
    for (size_t i = 0; i < CORE_LEN(fo); i++) {
        float *a = fused_floats(fo[i]), *b = fused_floats(uo[i]);
        char what[96];
        snprintf(what, sizeof what, "weights %d, store %d: operand %zu against the three ops", (int)wt,
                 (int)store_type, i);
        tu_assert_close(a, b, tensor_numel(fo[i]), 1e-5, 1e-6, what);
        free(a), free(b);
    }
    /* the host reference: g, then k = RoPE(x + g_K W_K^T), v = x + g_V W_V^T, q rotated */
    float *g = malloc(2 * FB * FE * sizeof *g);
    for (int i = 0; i < 2; i++)
        ref_ssm_decode(FB, Fnh, Fp, FG, FN, FW, h.x + i * FB * FF, FF, h.z + i * FB * FE, h.cw + i * FCH * FW,
                       h.win + i * FB * FW * FCH, h.bias + i * Fnh, h.alog + i * Fnh, h.dd + i * Fnh, h.nw + i * FE,
                       1e-5f, h.pos, h.sf, h.st + i * FB * FE * FN, g + i * FB * FE);
    for (int i = 0; i < 2; i++)
        for (int b = 0; b < FB; b++)
            for (int c = 0; c < C; c++) {
                double acc = h.kv[(i * FB + b) * C + c];
                for (int e = 0; e < FE; e++) acc += (double)g[(i * FB + b) * FE + e] * wv[(i * C + c) * FE + e];
                h.kv[(i * FB + b) * C + c] = (float)acc;
            }
    ref_rope(FB, 1, FHkv, dh, h.kv, h.pos, 10000.0f);
    ref_rope(FB, 1, FH, dh, h.q, h.pos, 10000.0f);
    float *gk = tu_download(&f.kv), *gq = tu_download(&f.q);
    tu_assert_close(gk, h.kv, 2 * FB * C, 1e-4, 2e-5, "k and v against the host reference");
    tu_assert_close(gq, h.q, FB * FH * dh, 0, 1.5e-6 * 10 + 1e-6, "q against the host reference");
    /* refused before anything is written: theta 0, an out_proj of another width, k overlapping g */
    ops_kv_step bad = fs;
    bad.theta = 0.0f;
    ck_assert_int_eq(ops_ssm_decode_append(ctx, f.io, &bad, &f.pos, &f.sf, FG, 1e-5f, &done), ATTAMBA_ERR_INVALID_ARG);
    tensor narrow;
    tu_ok(tensor_slice(&W[1], 0, 0, C / 2, &narrow));
    bad = fs, bad.out_w[1] = &narrow;
    ck_assert_int_eq(ops_ssm_decode_append(ctx, f.io, &bad, &f.pos, &f.sf, FG, 1e-5f, &done), ATTAMBA_ERR_SHAPE);
    tensor gflat, gpart, gview; /* k's shape [FB, C] on g's first FB * C floats */
    tu_ok(tensor_reshape(&f.v[0][9], 1, ((int64_t[]){FB * FE}), &gflat));
    tu_ok(tensor_slice(&gflat, 0, 0, FB * C, &gpart));
    tu_ok(tensor_reshape(&gpart, 2, ((int64_t[]){FB, C}), &gview));
    bad = fs, bad.k = &gview;
    ck_assert_int_eq(ops_ssm_decode_append(ctx, f.io, &bad, &f.pos, &f.sf, FG, 1e-5f, &done), ATTAMBA_ERR_INVALID_ARG);
    /* a table that stops below B = 3 sequences: declined, nothing launched */
    tu_ok(ops_tune_set(ctx, TUNE_SSM_DECODE_APPEND, FB - 1, "test"));
    attamba_context_counters(ctx, &c0);
    tu_ok(ops_ssm_decode_append(ctx, f.io, &fs, &f.pos, &f.sf, FG, 1e-5f, &done));
    attamba_context_counters(ctx, &c1);
    ck_assert_int_eq(done, 0);
    ck_assert_uint_eq(c1.launches - c0.launches, 0);
    tu_ok(ops_tune_set(ctx, TUNE_SSM_DECODE_APPEND, FB, "test"));
    float *after = tu_download(&f.kv);
    tu_assert_close(after, gk, 2 * FB * C, 0, 0, "k and v after the refused and declined calls");
    tensor_free(&narrow), tensor_free(&gflat), tensor_free(&gpart), tensor_free(&gview);
    free(after), free(gk), free(gq), free(g), free(wv);
    fused_free(&f);
    fused_free(&u);
    fused_host_free(&h);
    /* heads of 6 floats: declined, nothing launched or written */
    fused_host h6 = fused_data(6, 1400);
    tensor W6all = tu_weight(wt, 2 * FHkv * 6, FE, 1401, &wv), W6[2];
    for (int i = 0; i < 2; i++) tu_ok(tensor_slice(&W6all, 0, i * FHkv * 6, FHkv * 6, &W6[i]));
    fused_dev d6;
    fused_upload(&d6, &h6, 6, store_type);
    ops_kv_step s6 = fused_step(&d6, W6);
    attamba_context_counters(ctx, &c0);
    tu_ok(ops_ssm_decode_append(ctx, d6.io, &s6, &d6.pos, &d6.sf, FG, 1e-5f, &done));
    attamba_context_counters(ctx, &c1);
    ck_assert_int_eq(done, 0);
    ck_assert_uint_eq(c1.launches - c0.launches, 0);
    float *kv6 = tu_download(&d6.kv);
    tu_assert_close(kv6, h6.kv, 2 * FB * FHkv * 6, 0, 0, "k and v after the declined call");
    free(kv6), free(wv);
    fused_free(&d6);
    fused_host_free(&h6);
    tu_ok(ops_tune_set(ctx, TUNE_SSM_DECODE_APPEND, table, "restored"));
    tensor *ws[] = {&Wall, &W[0], &W[1], &W6all, &W6[0], &W6[1]};
    for (size_t i = 0; i < CORE_LEN(ws); i++) tensor_free(ws[i]);
}
END_TEST

START_TEST(bad_arguments_are_refused_with_a_message) {
    rt_ctx *ctx = tu_ctx();
    int B = 2, T = 6, nh = 4, p = 2, G = 2, N = 8, E = nh * p;
    tensor xs = tu_zeros(3, ((int64_t[]){B, T, E})), bm = tu_zeros(3, ((int64_t[]){B, T, G * N}));
    tensor dt = tu_zeros(3, ((int64_t[]){B, T, nh})), al = tu_zeros(1, ((int64_t[]){nh})), D = tu_zeros(1, ((int64_t[]){nh}));
    tensor y = tu_zeros(3, xs.shape), fin = tu_zeros(4, ((int64_t[]){B, nh, p, N}));
    tensor odd = tu_zeros(3, ((int64_t[]){B, T, E + 1})), bad_al = tu_zeros(1, ((int64_t[]){3}));
    tensor fseg = tu_zeros(1, ((int64_t[]){T})), big = tu_zeros(3, ((int64_t[]){B, T, G * 300}));
    int32_t zs[8] = {0};
    tensor seg = i32_tensor(T, zs), short_seg = i32_tensor(T - 1, zs), restart = i32_tensor(B, zs);

#define REFUSED(expr, status, text)                                                                         \
    do {                                                                                                    \
        ck_assert_int_eq((expr), (status));                                                                 \
        ck_assert_msg(strstr(ctx->err, (text)) != NULL, "message '%s' lacks '%s'", ctx->err, (text));         \
    } while (0)
    REFUSED(ops_ssm_scan(ctx, &odd, &bm, &bm, &dt, NULL, &al, &D, &seg, G, &y, NULL), ATTAMBA_ERR_SHAPE, "multiple of nh");
    REFUSED(ops_ssm_scan(ctx, &xs, &bm, &bm, &dt, NULL, &bad_al, &D, &seg, 1, &y, NULL), ATTAMBA_ERR_SHAPE, "xs width");
    REFUSED(ops_ssm_scan(ctx, &xs, &bm, &bm, &dt, NULL, &al, &D, &seg, 3, &y, NULL), ATTAMBA_ERR_INVALID_ARG, "n_groups");
    REFUSED(ops_ssm_scan(ctx, &xs, &bm, &bm, &dt, NULL, &al, &D, &short_seg, G, &y, NULL), ATTAMBA_ERR_SHAPE, "seg_start");
    REFUSED(ops_ssm_scan(ctx, &xs, &bm, &bm, &dt, NULL, &al, &D, &fseg, G, &y, NULL), ATTAMBA_ERR_SHAPE, "i32");
    REFUSED(ops_ssm_scan(ctx, &xs, &bm, &bm, &dt, &D, &al, &D, &seg, G, &y, &y), ATTAMBA_ERR_SHAPE, "final_state");
    REFUSED(ops_ssm_scan(ctx, &xs, &bm, &bm, &xs, NULL, &al, &D, &seg, G, &y, NULL), ATTAMBA_ERR_SHAPE, "dt_raw");
    REFUSED(ops_ssm_scan(ctx, &xs, &bm, &bm, &dt, &fseg, &al, &D, &seg, G, &y, NULL), ATTAMBA_ERR_SHAPE, "dt_bias");
    REFUSED(ops_ssm_scan(ctx, &xs, &bm, &bm, &dt, NULL, &al, &D, &seg, G, &xs, NULL), ATTAMBA_ERR_INVALID_ARG, "share");
    REFUSED(ops_ssm_scan(ctx, NULL, &bm, &bm, &dt, NULL, &al, &D, &seg, G, &y, NULL), ATTAMBA_ERR_INVALID_ARG, "required");
    REFUSED(ops_ssm_scan(ctx, &xs, &big, &big, &dt, NULL, &al, &D, &seg, G, &y, NULL), ATTAMBA_ERR_INVALID_ARG, "N = 300");
    REFUSED(ops_ssm_scan_with(ctx, &(ops_ssm_opts){(ops_ssm_path)7, 0, 0}, &xs, &bm, &bm, &dt, NULL, &al, &D, &seg, G, &y, &fin),
            ATTAMBA_ERR_INVALID_ARG, "path");
    tensor x1 = token_view(&xs, 0), b1 = token_view(&bm, 0), d1 = token_view(&dt, 0);
    REFUSED(ops_ssm_step(ctx, &x1, &b1, &b1, &d1, NULL, &al, &D, &restart, G, &y, &x1), ATTAMBA_ERR_SHAPE, "state");
    REFUSED(ops_ssm_step(ctx, &x1, &b1, &b1, &d1, NULL, &al, &D, &seg, G, &fin, &x1), ATTAMBA_ERR_SHAPE, "restart");

    tensor w = tu_zeros(2, ((int64_t[]){E, 4})), wbad = tu_zeros(2, ((int64_t[]){E + 1, 4}));
    tensor cst = tu_zeros(3, ((int64_t[]){B, 3, E})), o2 = tu_zeros(2, ((int64_t[]){B, E}));
    REFUSED(ops_conv1d(ctx, &xs, &wbad, &seg, 1, &y), ATTAMBA_ERR_SHAPE, "ops_conv1d: w");
    REFUSED(ops_conv1d(ctx, &xs, &w, &short_seg, 1, &y), ATTAMBA_ERR_SHAPE, "seg_start");
    REFUSED(ops_conv1d(ctx, &xs, &w, &seg, 1, &dt), ATTAMBA_ERR_SHAPE, "out");
    REFUSED(ops_conv1d(ctx, &xs, &w, &seg, 1, &xs), ATTAMBA_ERR_INVALID_ARG, "share");
    tensor x2 = token_view(&xs, 1);
    REFUSED(ops_conv1d_step(ctx, &x2, &w, NULL, &restart, 1, &o2), ATTAMBA_ERR_INVALID_ARG, "state is required");
    REFUSED(ops_conv1d_step(ctx, &x2, &w, &xs, &restart, 1, &o2), ATTAMBA_ERR_SHAPE, "state");
    REFUSED(ops_conv1d_step(ctx, &x2, &w, &cst, &short_seg, 1, &o2), ATTAMBA_ERR_SHAPE, "restart");
    tu_ok(ops_conv1d_step(ctx, &x2, &w, &cst, &restart, 1, &o2));
    tensor *all[] = {&xs, &bm, &dt, &al, &D, &y, &fin, &odd, &bad_al, &fseg, &big, &seg, &short_seg, &restart, &w,
                     &wbad, &cst, &o2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tensor_free(all[i]);
}
END_TEST

int main(void) {
    Suite *s = suite_create("ssm");
    TCase *t = tcase_create("ssm");
    tcase_set_timeout(t, 600);
    int nconv = (int)(sizeof conv_cases / sizeof conv_cases[0]), nscan = (int)(sizeof scan_cases / sizeof scan_cases[0]);
    tcase_add_loop_test(t, conv1d_matches_reference_and_restarts_at_segment_starts, 0, nconv * N_CONV_WIDTHS);
    tcase_add_test(t, conv1d_step_matches_reference_with_mixed_restarts);
    tcase_add_loop_test(t, reference_scan_equals_naive_recurrence_and_quadratic_form, 0, nscan);
    tcase_add_loop_test(t, scan_paths_match_reference_on_awkward_shapes, 0, nscan);
    tcase_add_loop_test(t, ssm_step_continues_a_prefill_exactly, 0, nscan);
    tcase_add_test(t, ssm_step_matches_reference_with_mixed_restarts);
    tcase_add_test(t, scan_and_conv_read_column_slices_of_a_projection);
    tcase_add_test(t, ssm_decode_matches_reference_for_both_ssms);
    tcase_add_loop_test(t, ssm_decode_append_is_decode_out_proj_then_append, 0, 6);
    tcase_add_test(t, bad_arguments_are_refused_with_a_message);
    suite_add_tcase(s, t);
    return tu_run(s);
}
