/* Backward of the K/V-SSM kernels (conv1d, SSM scan): the plain-C reference against central finite
 * differences of a double-precision forward written here, the kernels against the reference on
 * awkward shapes (with the accumulate / overwrite conventions), and refused arguments.
 * Finite differences: step h = 1e-5 on O(1) inputs; truncation error ~h^2 |f'''| ~ 1e-10 and roundoff
 * ~1e-16 |L| / h ~ 1e-11 |L|, far below the reference's own float rounding (6e-8 relative), so
 * FD_RTOL = 1e-5 and FD_ATOL = 1e-6 * (1 + max |fd|) leave a wide margin yet catch any wrong term. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ssm.h"
#include "ops/tuning.h"
#include "ref/ref_ssm.h"
#include "testutil.h"

#define FD_H 1e-5
#define FD_RTOL 1e-5

/* ------------------------------------------------------------------------------------------ helpers */

static tensor i32_tensor(int64_t n, const int32_t *host) {
    tensor t;
    tu_ok(tensor_alloc(tu_ctx(), &t, TENSOR_I32, 1, &n));
    tu_ok(tensor_upload(&t, host));
    return t;
}

enum { SEG_UNIFORM, SEG_RANDOM, SEG_EXPLICIT, SEG_ONE };

/* seg_start [T]: segments of P tokens (UNIFORM), starts drawn with probability 1/P (RANDOM),
 * starts at 0, 1, 2, 9, 10 and 17 + 31k (EXPLICIT: lengths 1, 1, 7, 1, 7, 31...), or one segment. */
static int32_t *make_segs(int kind, int P, int T, uint64_t seed) {
    int32_t *seg = malloc((size_t)T * sizeof *seg);
    ck_assert_ptr_nonnull(seg);
    float *r = tu_random(T, seed, 0, 1);
    int cur = 0;
    for (int t = 0; t < T; t++) {
        int start = t == 0;
        switch (kind) {
        case SEG_UNIFORM: start |= t % P == 0; break;
        case SEG_RANDOM: start |= r[t] < 1.0f / P; break;
        case SEG_EXPLICIT: start |= t == 1 || t == 2 || t == 9 || t == 10 || (t >= 17 && (t - 17) % 31 == 0); break;
        default: break;
        }
        if (start) cur = t;
        seg[t] = cur;
    }
    free(r);
    return seg;
}

static double max_abs(const float *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

static double *to_double(const float *x, int64_t n) {
    double *d = malloc((size_t)n * sizeof *d);
    ck_assert_ptr_nonnull(d);
    for (int64_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

/* Checks an analytic gradient (float) against central differences of loss() over the n doubles at v. */
static void check_fd(double (*loss)(void *), void *arg, double *v, int64_t n, const float *grad, int may_be_zero,
                     const char *what) {
    double *fd = malloc((size_t)n * sizeof *fd), m = 0;
    for (int64_t i = 0; i < n; i++) {
        double keep = v[i];
        v[i] = keep + FD_H;
        double lp = loss(arg);
        v[i] = keep - FD_H;
        double lm = loss(arg);
        v[i] = keep;
        fd[i] = (lp - lm) / (2 * FD_H);
        m = fmax(m, fabs(fd[i]));
    }
    float *f = malloc((size_t)n * sizeof *f);
    for (int64_t i = 0; i < n; i++) f[i] = (float)fd[i];
    /* every gradient must be really exercised: an all-zero one proves nothing (unless it is zero by
     * construction: no decay survives when every token starts a segment) */
    ck_assert_msg(may_be_zero || m > 1e-3, "%s: finite differences are all ~0 (max %g)", what, m);
    tu_assert_close(grad, f, n, FD_RTOL, 1e-6 * (1 + m), what);
    free(fd), free(f);
}

/* ------------------------------------------------------------------------- conv1d: ref vs FD */

typedef struct {
    int B, T, C, W, silu;
    const int32_t *seg;
    double *x, *w, *dout;
} conv_fd;

static double conv_loss(void *arg) {
    const conv_fd *c = arg;
    double L = 0;
    for (int b = 0; b < c->B; b++)
        for (int t = 0; t < c->T; t++)
            for (int ch = 0; ch < c->C; ch++) {
                double pre = 0;
                for (int j = 0; j < c->W; j++) {
                    int s = t - (c->W - 1) + j;
                    if (s >= c->seg[t]) pre += c->w[ch * c->W + j] * c->x[((int64_t)b * c->T + s) * c->C + ch];
                }
                double out = c->silu ? pre / (1 + exp(-pre)) : pre;
                L += out * c->dout[((int64_t)b * c->T + t) * c->C + ch];
            }
    return L;
}

typedef struct {
    int B, T, C, W, silu, seg_kind, P;
} conv_case;

static const conv_case conv_fd_cases[] = {
    {2, 11, 3, 4, 1, SEG_UNIFORM, 4}, {1, 12, 2, 4, 0, SEG_UNIFORM, 1}, {2, 9, 3, 2, 1, SEG_ONE, 0},
    {1, 20, 2, 2, 0, SEG_EXPLICIT, 0}, {2, 14, 3, 4, 0, SEG_RANDOM, 3}, {1, 10, 2, 3, 1, SEG_UNIFORM, 3},
};

START_TEST(reference_conv1d_backward_matches_finite_differences) {
    const conv_case *k = &conv_fd_cases[_i];
    int64_t n = (int64_t)k->B * k->T * k->C, nw = (int64_t)k->C * k->W;
    float *x = tu_random(n, 10 + (uint64_t)_i, -2, 2), *w = tu_random(nw, 20 + (uint64_t)_i, -1, 1);
    float *dout = tu_random(n, 30 + (uint64_t)_i, -1, 1);
    int32_t *seg = make_segs(k->seg_kind, k->P, k->T, 40 + (uint64_t)_i);
    float *dx = malloc((size_t)n * sizeof *dx), *dw = calloc((size_t)nw, sizeof *dw);
    ref_conv1d_backward(k->B, k->T, k->C, k->W, x, w, seg, k->silu, dout, dx, dw);
    conv_fd c = {k->B, k->T, k->C, k->W, k->silu, seg, to_double(x, n), to_double(w, nw), to_double(dout, n)};
    check_fd(conv_loss, &c, c.x, n, dx, 0, "conv dx vs FD");
    check_fd(conv_loss, &c, c.w, nw, dw, 0, "conv dw vs FD");
    free(c.x), free(c.w), free(c.dout), free(x), free(w), free(dout), free(seg), free(dx), free(dw);
}
END_TEST

/* ----------------------------------------------------------------------------- scan: ref vs FD */

typedef struct {
    int B, T, nh, p, G, N, bias;
    int seg_kind, P;
} scan_case;

typedef struct {
    const scan_case *c;
    const int32_t *seg;
    double *xs, *Bm, *Cm, *dt, *bias, *A_log, *D, *dy;
} scan_fd;

/* The forward in double, token by token over the whole sequence (the state zeroed at segment
 * starts), dotted with dy. */
static double scan_loss(void *arg) {
    const scan_fd *f = arg;
    const scan_case *c = f->c;
    int E = c->nh * c->p, GN = c->G * c->N, hpg = c->nh / c->G, SN = c->p * c->N;
    double *S = calloc((size_t)c->B * c->nh * SN, sizeof *S), L = 0;
    for (int t = 0; t < c->T; t++)
        for (int b = 0; b < c->B; b++)
            for (int h = 0; h < c->nh; h++) {
                double *s = S + ((int64_t)b * c->nh + h) * SN;
                int64_t bt = (int64_t)b * c->T + t;
                double v = f->dt[bt * c->nh + h] + (f->bias ? f->bias[h] : 0.0), dt = log1p(exp(v));
                double decay = f->seg[t] == t ? 0.0 : exp(-dt * exp(f->A_log[h]));
                const double *Bt = f->Bm + bt * GN + (h / hpg) * c->N, *Ct = f->Cm + bt * GN + (h / hpg) * c->N;
                for (int i = 0; i < c->p; i++) {
                    double xv = f->xs[bt * E + h * c->p + i], y = f->D[h] * xv;
                    for (int n = 0; n < c->N; n++) {
                        s[i * c->N + n] = decay * s[i * c->N + n] + dt * xv * Bt[n];
                        y += s[i * c->N + n] * Ct[n];
                    }
                    L += y * f->dy[bt * E + h * c->p + i];
                }
            }
    free(S);
    return L;
}

typedef struct {
    int64_t nx, nb, nd;
    float *xs, *Bm, *Cm, *dt, *bias, *A_log, *D, *dy;
    int32_t *seg;
} scan_data;

static scan_data make_data(const scan_case *c, uint64_t seed) {
    scan_data d;
    int E = c->nh * c->p, GN = c->G * c->N;
    d.nx = (int64_t)c->B * c->T * E, d.nb = (int64_t)c->B * c->T * GN, d.nd = (int64_t)c->B * c->T * c->nh;
    d.xs = tu_random(d.nx, seed, -1, 1);
    d.Bm = tu_random(d.nb, seed + 1, -1, 1);
    d.Cm = tu_random(d.nb, seed + 2, -1, 1);
    d.dt = tu_random(d.nd, seed + 3, -3, 1); /* softplus: dt in ~[0.05, 1.3] */
    d.bias = c->bias ? tu_random(c->nh, seed + 4, -1, 0.5f) : NULL;
    d.A_log = tu_random(c->nh, seed + 5, 0.01f, 2.0f); /* A_log = log(U[0.01, 2]) */
    for (int h = 0; h < c->nh; h++) d.A_log[h] = logf(d.A_log[h]);
    d.D = tu_random(c->nh, seed + 6, 0.5f, 1.5f);
    d.dy = tu_random(d.nx, seed + 7, -1, 1);
    d.seg = make_segs(c->seg_kind, c->P, c->T, seed + 8);
    return d;
}

static void free_data(scan_data *d) {
    free(d->xs), free(d->Bm), free(d->Cm), free(d->dt), free(d->bias), free(d->A_log), free(d->D), free(d->dy);
    free(d->seg);
}

/* Gradients of one scan, host side; params start at whatever the caller put there. */
typedef struct {
    float *dxs, *dBm, *dCm, *ddt, *dbias, *dA, *dD;
} scan_grads;

static scan_grads alloc_grads(const scan_case *c, const scan_data *d, uint64_t seed) {
    scan_grads g;
    g.dxs = malloc((size_t)d->nx * sizeof(float));
    g.dBm = malloc((size_t)d->nb * sizeof(float));
    g.dCm = malloc((size_t)d->nb * sizeof(float));
    g.ddt = malloc((size_t)d->nd * sizeof(float));
    /* nonzero starting values: parameter gradients accumulate */
    g.dbias = tu_random(c->nh, seed, -1, 1);
    g.dA = tu_random(c->nh, seed + 1, -1, 1);
    g.dD = tu_random(c->nh, seed + 2, -1, 1);
    return g;
}

static void free_grads(scan_grads *g) {
    free(g->dxs), free(g->dBm), free(g->dCm), free(g->ddt), free(g->dbias), free(g->dA), free(g->dD);
}

static void ref_grads(const scan_case *c, const scan_data *d, scan_grads *g) {
    ref_ssm_scan_backward(c->B, c->T, c->nh, c->p, c->G, c->N, d->xs, d->Bm, d->Cm, d->dt, d->bias, d->A_log, d->D,
                          d->seg, d->dy, g->dxs, g->dBm, g->dCm, g->ddt, d->bias ? g->dbias : NULL, g->dA, g->dD);
}

static const scan_case fd_cases[] = {
    {2, 13, 4, 3, 2, 5, 1, SEG_UNIFORM, 5}, /* several segments, G > 1, batch */
    {1, 9, 2, 2, 1, 3, 0, SEG_UNIFORM, 1},  /* P = 1: every token restarts; no bias */
    {1, 15, 2, 3, 1, 4, 1, SEG_ONE, 0},     /* a single segment */
    {2, 12, 4, 2, 4, 3, 0, SEG_RANDOM, 4},  /* random starts, G = nh */
    {1, 21, 3, 2, 3, 2, 1, SEG_EXPLICIT, 0},
};

START_TEST(reference_scan_backward_matches_finite_differences) {
    const scan_case *c = &fd_cases[_i];
    scan_data d = make_data(c, 100 + 20 * (uint64_t)_i);
    scan_grads g = alloc_grads(c, &d, 7);
    /* parameters from zero here: the FD gives the gradient itself */
    memset(g.dbias, 0, (size_t)c->nh * sizeof(float));
    memset(g.dA, 0, (size_t)c->nh * sizeof(float));
    memset(g.dD, 0, (size_t)c->nh * sizeof(float));
    ref_grads(c, &d, &g);
    scan_fd f = {c, d.seg, to_double(d.xs, d.nx), to_double(d.Bm, d.nb), to_double(d.Cm, d.nb), to_double(d.dt, d.nd),
                 d.bias ? to_double(d.bias, c->nh) : NULL, to_double(d.A_log, c->nh), to_double(d.D, c->nh),
                 to_double(d.dy, d.nx)};
    check_fd(scan_loss, &f, f.xs, d.nx, g.dxs, 0, "scan dxs vs FD");
    check_fd(scan_loss, &f, f.Bm, d.nb, g.dBm, 0, "scan dBm vs FD");
    check_fd(scan_loss, &f, f.Cm, d.nb, g.dCm, 0, "scan dCm vs FD");
    check_fd(scan_loss, &f, f.dt, d.nd, g.ddt, 0, "scan ddt_raw vs FD");
    if (f.bias) check_fd(scan_loss, &f, f.bias, c->nh, g.dbias, 0, "scan ddt_bias vs FD");
    check_fd(scan_loss, &f, f.A_log, c->nh, g.dA, c->P == 1 && c->seg_kind == SEG_UNIFORM, "scan dA_log vs FD");
    check_fd(scan_loss, &f, f.D, c->nh, g.dD, 0, "scan dD vs FD");
    free(f.xs), free(f.Bm), free(f.Cm), free(f.dt), free(f.bias), free(f.A_log), free(f.D), free(f.dy);
    free_grads(&g);
    free_data(&d);
}
END_TEST

/* ------------------------------------------------------------------------ conv1d: kernel vs ref */

/* Kernel vs ref: rtol 1e-5 and atol 1e-5 * max|ref| (a gradient sums at most W products for dx, B*T
 * rows for dw; measured errors are ~10x below). */
static const conv_case conv_cases[] = {
    {1, 1, 1, 4, 1, SEG_UNIFORM, 4},   {2, 37, 5, 4, 1, SEG_UNIFORM, 5}, {3, 33, 3, 3, 0, SEG_UNIFORM, 1},
    {2, 91, 17, 4, 1, SEG_RANDOM, 6},  {1, 300, 9, 2, 0, SEG_EXPLICIT, 0}, {2, 20, 8, 1, 1, SEG_UNIFORM, 3},
    {1, 130, 12, 4, 1, SEG_ONE, 0},
};

/* Each case with every vector width a work-item may take (the table's conv.vc). */
static const int conv_widths[] = {4, 8, 16};

START_TEST(conv1d_backward_matches_reference_and_accumulates_dw) {
    const conv_case *k = &conv_cases[_i / (int)CORE_LEN(conv_widths)];
    rt_ctx *ctx = tu_ctx();
    int was_vc = ops_tune(ctx, TUNE_CONV_VC);
    tu_ok(ops_tune_set(ctx, TUNE_CONV_VC, conv_widths[_i % (int)CORE_LEN(conv_widths)], "test"));
    int64_t n = (int64_t)k->B * k->T * k->C, nw = (int64_t)k->C * k->W;
    float *x = tu_random(n, 50 + (uint64_t)_i, -2, 2), *w = tu_random(nw, 60 + (uint64_t)_i, -1, 1);
    float *dout = tu_random(n, 70 + (uint64_t)_i, -1, 1), *dw = tu_random(nw, 80 + (uint64_t)_i, -1, 1);
    int32_t *seg = make_segs(k->seg_kind, k->P, k->T, 90 + (uint64_t)_i);
    tensor tx = tu_tensor(3, ((int64_t[]){k->B, k->T, k->C}), x), tw = tu_tensor(2, ((int64_t[]){k->C, k->W}), w);
    tensor tg = tu_tensor(3, tx.shape, dout), tdw = tu_tensor(2, tw.shape, dw), ts = i32_tensor(k->T, seg);
    tensor tdx = tu_zeros(3, tx.shape);
    tu_ok(tensor_fill(&tdx, NAN)); /* overwritten everywhere */
    float *want_dx = malloc((size_t)n * sizeof *want_dx);
    ref_conv1d_backward(k->B, k->T, k->C, k->W, x, w, seg, k->silu, dout, want_dx, dw); /* dw += ... */
    tu_ok(ops_conv1d_backward(ctx, &tx, &tw, &ts, k->silu, &tg, &tdx, &tdw));
    float *gdx = tu_download(&tdx), *gdw = tu_download(&tdw);
    tu_assert_close(gdx, want_dx, n, 1e-5, 1e-5 * max_abs(want_dx, n), "conv dx");
    tu_assert_close(gdw, dw, nw, 1e-5, 1e-5 * max_abs(dw, nw), "conv dw (accumulated)");
    /* dx alone, dw alone: the same numbers; dw accumulates a second time */
    tu_ok(tensor_fill(&tdx, NAN));
    tu_ok(ops_conv1d_backward(ctx, &tx, &tw, &ts, k->silu, &tg, &tdx, NULL));
    float *gdx2 = tu_download(&tdx);
    tu_assert_close(gdx2, gdx, n, 0, 0, "conv dx alone (deterministic)");
    tu_ok(ops_conv1d_backward(ctx, &tx, &tw, &ts, k->silu, &tg, NULL, &tdw));
    ref_conv1d_backward(k->B, k->T, k->C, k->W, x, w, seg, k->silu, dout, NULL, dw);
    free(gdw);
    gdw = tu_download(&tdw);
    tu_assert_close(gdw, dw, nw, 1e-5, 1e-5 * max_abs(dw, nw), "conv dw accumulated twice");
    tu_ok(ops_tune_set(ctx, TUNE_CONV_VC, was_vc, "test"));
    free(x), free(w), free(dout), free(dw), free(seg), free(want_dx), free(gdx), free(gdx2), free(gdw);
    tensor_free(&tx), tensor_free(&tw), tensor_free(&tg), tensor_free(&tdw), tensor_free(&ts), tensor_free(&tdx);
}
END_TEST

/* -------------------------------------------------------------------------- scan: kernel vs ref */

/* Kernel (f32) vs ref (double): the state gradients sum up to a segment's length of decayed terms,
 * dA_log and ddt_bias sum over all B*T tokens, and the kernel's decay gradient is a reverse
 * cumulative sum of differences (the ref's is direct). Measured worst: ~2e-5 relative (dA_log,
 * ddt_bias at T = 130..300); bound: rtol 5e-4 and atol 5e-5 * max|ref|. */
#define BWD_RTOL 5e-4
#define BWD_ATOL(ref, n) (5e-5 * max_abs((ref), (n)) + 1e-7)

static const scan_case kern_cases[] = {
    {1, 37, 1, 8, 1, 32, 1, SEG_UNIFORM, 5},    /* one head, T not a multiple of P */
    {2, 50, 4, 4, 2, 7, 0, SEG_UNIFORM, 8},     /* G > 1, batch, N = 7, no bias */
    {1, 33, 2, 6, 1, 7, 1, SEG_UNIFORM, 1},     /* P = 1 */
    {3, 91, 2, 5, 1, 32, 0, SEG_RANDOM, 6},     /* random boundaries, odd p */
    {1, 300, 4, 8, 2, 32, 1, SEG_EXPLICIT, 0},  /* long T, explicit boundaries */
    {2, 130, 2, 4, 1, 7, 1, SEG_ONE, 0},        /* one segment: pure Mamba-2 */
    {1, 70, 4, 3, 4, 32, 1, SEG_UNIFORM, 500},  /* P >= T, G = nh */
    {2, 45, 2, 32, 1, 48, 1, SEG_UNIFORM, 8},   /* p = 32, N = 48: 16 lanes a work-item on 16-lane CPUs */
};

typedef struct {
    tensor xs, Bm, Cm, dt, bias, A_log, D, seg, dy;
    tensor dxs, dBm, dCm, ddt, dbias, dA, dD;
} scan_dev;

static scan_dev upload(const scan_case *c, const scan_data *d, const scan_grads *g) {
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
    v.dy = tu_tensor(3, v.xs.shape, d->dy);
    v.dxs = tu_zeros(3, v.xs.shape);
    v.dBm = tu_zeros(3, v.Bm.shape);
    v.dCm = tu_zeros(3, v.Cm.shape);
    v.ddt = tu_zeros(3, v.dt.shape);
    tensor *ins[] = {&v.dxs, &v.dBm, &v.dCm, &v.ddt};
    for (int i = 0; i < 4; i++) tu_ok(tensor_fill(ins[i], NAN)); /* must be overwritten everywhere */
    v.dbias = tu_tensor(1, &nh, g->dbias);
    v.dA = tu_tensor(1, &nh, g->dA);
    v.dD = tu_tensor(1, &nh, g->dD);
    return v;
}

static void free_dev(scan_dev *v) {
    tensor *all[] = {&v->xs, &v->Bm, &v->Cm, &v->dt, &v->bias, &v->A_log, &v->D, &v->seg, &v->dy,
                     &v->dxs, &v->dBm, &v->dCm, &v->ddt, &v->dbias, &v->dA, &v->dD};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tensor_free(all[i]);
}

static void compare(const scan_case *c, const scan_data *d, const scan_dev *v, const scan_grads *want, int which,
                    const char *tag) {
    const tensor *t[7] = {&v->dxs, &v->dBm, &v->dCm, &v->ddt, &v->dbias, &v->dA, &v->dD};
    const float *w[7] = {want->dxs, want->dBm, want->dCm, want->ddt, want->dbias, want->dA, want->dD};
    int64_t n[7] = {d->nx, d->nb, d->nb, d->nd, c->nh, c->nh, c->nh};
    const char *name[7] = {"dxs", "dBm", "dCm", "ddt_raw", "ddt_bias", "dA_log", "dD"};
    for (int i = 0; i < 7; i++) {
        if (!(which & (1 << i)) || (i == 4 && !d->bias)) continue;
        float *got = tu_download(t[i]);
        char what[64];
        snprintf(what, sizeof what, "%s: %s", tag, name[i]);
        tu_assert_close(got, w[i], n[i], BWD_RTOL, BWD_ATOL(w[i], n[i]), what);
        free(got);
    }
}

START_TEST(scan_backward_matches_reference_on_awkward_shapes) {
    const scan_case *c = &kern_cases[_i];
    rt_ctx *ctx = tu_ctx();
    scan_data d = make_data(c, 500 + 20 * (uint64_t)_i);
    scan_grads g = alloc_grads(c, &d, 600 + (uint64_t)_i);
    scan_dev v = upload(c, &d, &g);
    ref_grads(c, &d, &g); /* parameters: initial values + gradient */
    const tensor *bias = d.bias ? &v.bias : NULL;
    tu_ok(ops_ssm_scan_backward(ctx, &v.xs, &v.Bm, &v.Cm, &v.dt, bias, &v.A_log, &v.D, &v.seg, c->G, &v.dy, &v.dxs,
                                &v.dBm, &v.dCm, &v.ddt, d.bias ? &v.dbias : NULL, &v.dA, &v.dD));
    compare(c, &d, &v, &g, 0x7f, "all grads");

    /* run again: input grads overwritten with the same values (bitwise: deterministic), parameter
     * grads accumulate a second gradient */
    float *first = tu_download(&v.dBm);
    tu_ok(ops_ssm_scan_backward(ctx, &v.xs, &v.Bm, &v.Cm, &v.dt, bias, &v.A_log, &v.D, &v.seg, c->G, &v.dy, &v.dxs,
                                &v.dBm, &v.dCm, &v.ddt, d.bias ? &v.dbias : NULL, &v.dA, &v.dD));
    float *again = tu_download(&v.dBm);
    tu_assert_close(again, first, d.nb, 0, 0, "dBm of two runs (deterministic)");
    ref_ssm_scan_backward(c->B, c->T, c->nh, c->p, c->G, c->N, d.xs, d.Bm, d.Cm, d.dt, d.bias, d.A_log, d.D, d.seg,
                          d.dy, NULL, NULL, NULL, NULL, d.bias ? g.dbias : NULL, g.dA, g.dD);
    compare(c, &d, &v, &g, 0x7f, "second run");
    free(first), free(again);

    /* subsets (NULL = not computed): each requested gradient is still right */
    tensor *in_grads[4] = {&v.dxs, &v.dBm, &v.dCm, &v.ddt};
    for (int i = 0; i < 4; i++) tu_ok(tensor_fill(in_grads[i], NAN));
    tu_ok(ops_ssm_scan_backward(ctx, &v.xs, &v.Bm, &v.Cm, &v.dt, bias, &v.A_log, &v.D, &v.seg, c->G, &v.dy, &v.dxs,
                                NULL, NULL, NULL, NULL, NULL, NULL));
    compare(c, &d, &v, &g, 0x01, "dxs alone");
    tu_ok(ops_ssm_scan_backward(ctx, &v.xs, &v.Bm, &v.Cm, &v.dt, bias, &v.A_log, &v.D, &v.seg, c->G, &v.dy, NULL,
                                NULL, &v.dCm, &v.ddt, NULL, NULL, NULL));
    compare(c, &d, &v, &g, 0x0c, "dCm and ddt_raw");
    float *untouched = tu_download(&v.dBm);
    ck_assert_msg(isnan(untouched[0]) && isnan(untouched[d.nb - 1]), "dBm was not requested but written");
    free(untouched);
    tu_ok(ops_ssm_scan_backward(ctx, &v.xs, &v.Bm, &v.Cm, &v.dt, bias, &v.A_log, &v.D, &v.seg, c->G, &v.dy, NULL,
                                &v.dBm, NULL, NULL, NULL, NULL, NULL));
    compare(c, &d, &v, &g, 0x7f, "dBm alone (params unchanged)");
    free_dev(&v);
    free_grads(&g);
    free_data(&d);
}
END_TEST

/* Inputs and input gradients as column slices of wider projections, as the model lays them out. */
START_TEST(scan_and_conv_backward_use_column_slices) {
    rt_ctx *ctx = tu_ctx();
    const scan_case *c = &kern_cases[1];
    scan_data d = make_data(c, 900);
    scan_grads g = alloc_grads(c, &d, 950);
    scan_dev v = upload(c, &d, &g);
    ref_grads(c, &d, &g);
    int64_t E = c->nh * c->p, GN = c->G * c->N, nh = c->nh, F = E + 2 * GN + nh + 3, BT = (int64_t)c->B * c->T;
    float *proj = tu_random(BT * F, 9, -1, 1);
    const float *src[4] = {d.xs, d.Bm, d.Cm, d.dt};
    int64_t off[4] = {1, 1 + E, 1 + E + GN, 1 + E + 2 * GN}, wid[4] = {E, GN, GN, nh};
    for (int64_t i = 0; i < BT; i++)
        for (int k = 0; k < 4; k++) memcpy(proj + i * F + off[k], src[k] + i * wid[k], (size_t)wid[k] * sizeof(float));
    tensor tp = tu_tensor(3, ((int64_t[]){c->B, c->T, F}), proj), gp = tu_zeros(3, tp.shape), vi[4], vg[4];
    tu_ok(tensor_fill(&gp, NAN));
    for (int k = 0; k < 4; k++) {
        tu_ok(tensor_slice(&tp, 2, off[k], wid[k], &vi[k]));
        tu_ok(tensor_slice(&gp, 2, off[k], wid[k], &vg[k]));
    }
    tu_ok(ops_ssm_scan_backward(ctx, &vi[0], &vi[1], &vi[2], &vi[3], NULL, &v.A_log, &v.D, &v.seg, c->G, &v.dy,
                                &vg[0], &vg[1], &vg[2], &vg[3], NULL, &v.dA, &v.dD));
    float *gg = tu_download(&gp);
    const float *want[4] = {g.dxs, g.dBm, g.dCm, g.ddt};
    for (int k = 0; k < 4; k++) {
        float *col = malloc((size_t)(BT * wid[k]) * sizeof *col);
        for (int64_t i = 0; i < BT; i++) memcpy(col + i * wid[k], gg + i * F + off[k], (size_t)wid[k] * sizeof(float));
        tu_assert_close(col, want[k], BT * wid[k], BWD_RTOL, BWD_ATOL(want[k], BT * wid[k]), "gradient slice");
        free(col);
    }
    /* the columns outside the four slices are never written */
    for (int64_t i = 0; i < BT; i++) ck_assert(isnan(gg[i * F]) && isnan(gg[i * F + F - 1]));
    free(gg);

    /* conv: x a slice of the projection, dx a slice of its gradient */
    float *w = tu_random(E * 4, 11, -1, 1), *want_dx = malloc((size_t)d.nx * sizeof *want_dx);
    float *dw = calloc((size_t)E * 4, sizeof *dw);
    tensor tw = tu_tensor(2, ((int64_t[]){E, 4}), w), tdw = tu_zeros(2, tw.shape);
    tu_ok(ops_conv1d_backward(ctx, &vi[0], &tw, &v.seg, 1, &v.dy, &vg[0], &tdw));
    ref_conv1d_backward(c->B, c->T, (int)E, 4, d.xs, w, d.seg, 1, d.dy, want_dx, dw);
    gg = tu_download(&gp);
    float *col = malloc((size_t)d.nx * sizeof *col), *gdw = tu_download(&tdw);
    for (int64_t i = 0; i < BT; i++) memcpy(col + i * E, gg + i * F + 1, (size_t)E * sizeof(float));
    tu_assert_close(col, want_dx, d.nx, 1e-5, 1e-5 * max_abs(want_dx, d.nx), "conv dx slice");
    tu_assert_close(gdw, dw, E * 4, 1e-5, 1e-5 * max_abs(dw, E * 4), "conv dw from a slice");
    free(gg), free(col), free(gdw), free(w), free(want_dx), free(dw), free(proj);
    for (int k = 0; k < 4; k++) tensor_free(&vi[k]), tensor_free(&vg[k]);
    tensor_free(&tp), tensor_free(&gp), tensor_free(&tw), tensor_free(&tdw);
    free_dev(&v);
    free_grads(&g);
    free_data(&d);
}
END_TEST

/* ----------------------------------------------------------------------------- refused arguments */

START_TEST(bad_arguments_are_refused_with_a_message) {
    rt_ctx *ctx = tu_ctx();
    int B = 2, T = 6, nh = 4, p = 2, G = 2, N = 8, E = nh * p;
    tensor xs = tu_zeros(3, ((int64_t[]){B, T, E})), bm = tu_zeros(3, ((int64_t[]){B, T, G * N}));
    tensor dt = tu_zeros(3, ((int64_t[]){B, T, nh})), al = tu_zeros(1, ((int64_t[]){nh}));
    tensor D = tu_zeros(1, ((int64_t[]){nh})), dy = tu_zeros(3, xs.shape), dxs = tu_zeros(3, xs.shape);
    tensor dbm = tu_zeros(3, bm.shape), dnh = tu_zeros(1, ((int64_t[]){nh})), short_nh = tu_zeros(1, ((int64_t[]){3}));
    tensor wide = tu_zeros(3, ((int64_t[]){B, T, E + 1})), big_p = tu_zeros(3, ((int64_t[]){B, T, 300}));
    tensor one = tu_zeros(1, ((int64_t[]){1})), dt1 = tu_zeros(3, ((int64_t[]){B, T, 1}));
    tensor big_bm = tu_zeros(3, ((int64_t[]){B, T, 300})), dbig = tu_zeros(3, big_p.shape);
    int32_t zs[8] = {0};
    tensor seg = i32_tensor(T, zs), short_seg = i32_tensor(T - 1, zs);
    tensor w = tu_zeros(2, ((int64_t[]){E, 4})), wbad = tu_zeros(2, ((int64_t[]){E + 1, 4}));
    tensor dw = tu_zeros(2, w.shape), fseg = tu_zeros(1, ((int64_t[]){T}));

#define REFUSED(expr, status, text)                                                                         \
    do {                                                                                                    \
        ck_assert_int_eq((expr), (status));                                                                 \
        ck_assert_msg(strstr(ctx->err, (text)) != NULL, "message '%s' lacks '%s'", ctx->err, (text));         \
    } while (0)
    /* scan */
    REFUSED(ops_ssm_scan_backward(ctx, &xs, &bm, &bm, &dt, NULL, &al, &D, &seg, G, &wide, &dxs, NULL, NULL, NULL,
                                  NULL, NULL, NULL),
            ATTAMBA_ERR_SHAPE, "dy");
    REFUSED(ops_ssm_scan_backward(ctx, &xs, &bm, &bm, &dt, NULL, &al, &D, &seg, G, &dy, &wide, NULL, NULL, NULL,
                                  NULL, NULL, NULL),
            ATTAMBA_ERR_SHAPE, "dxs");
    REFUSED(ops_ssm_scan_backward(ctx, &xs, &bm, &bm, &dt, NULL, &al, &D, &seg, G, &dy, NULL, &dxs, NULL, NULL,
                                  NULL, NULL, NULL),
            ATTAMBA_ERR_SHAPE, "dBm");
    REFUSED(ops_ssm_scan_backward(ctx, &xs, &bm, &bm, &dt, NULL, &al, &D, &seg, G, &dy, NULL, NULL, NULL, NULL, &dnh,
                                  NULL, NULL),
            ATTAMBA_ERR_INVALID_ARG, "no dt_bias");
    REFUSED(ops_ssm_scan_backward(ctx, &xs, &bm, &bm, &dt, &al, &al, &D, &seg, G, &dy, NULL, NULL, NULL, NULL,
                                  &short_nh, NULL, NULL),
            ATTAMBA_ERR_SHAPE, "ddt_bias");
    REFUSED(ops_ssm_scan_backward(ctx, &xs, &bm, &bm, &dt, NULL, &al, &D, &seg, G, &dy, NULL, NULL, NULL, NULL, NULL,
                                  NULL, &short_nh),
            ATTAMBA_ERR_SHAPE, "dD");
    REFUSED(ops_ssm_scan_backward(ctx, &xs, &bm, &bm, &dt, NULL, &al, &D, &seg, G, &dy, &dy, NULL, NULL, NULL, NULL,
                                  NULL, NULL),
            ATTAMBA_ERR_INVALID_ARG, "dxs must not share");
    REFUSED(ops_ssm_scan_backward(ctx, &xs, &bm, &bm, &dt, NULL, &al, &D, &seg, G, &dy, NULL, NULL, NULL, NULL, NULL,
                                  &al, NULL),
            ATTAMBA_ERR_INVALID_ARG, "dA_log must not share");
    REFUSED(ops_ssm_scan_backward(ctx, &xs, &bm, &bm, &dt, NULL, &al, &D, &seg, G, &dy, NULL, NULL, NULL, NULL, NULL,
                                  &dnh, &dnh),
            ATTAMBA_ERR_INVALID_ARG, "dA_log and dD overlap");
    REFUSED(ops_ssm_scan_backward(ctx, &xs, &bm, &bm, &dt, NULL, &al, &D, &short_seg, G, &dy, &dxs, NULL, NULL, NULL,
                                  NULL, NULL, NULL),
            ATTAMBA_ERR_SHAPE, "seg_start");
    REFUSED(ops_ssm_scan_backward(ctx, &xs, &bm, &bm, &dt, NULL, &al, &D, &fseg, G, &dy, &dxs, NULL, NULL, NULL,
                                  NULL, NULL, NULL),
            ATTAMBA_ERR_SHAPE, "seg_start");
    REFUSED(ops_ssm_scan_backward(ctx, &xs, &bm, &bm, &dt, NULL, &al, &D, &seg, 3, &dy, &dxs, NULL, NULL, NULL, NULL,
                                  NULL, NULL),
            ATTAMBA_ERR_INVALID_ARG, "n_groups");
    REFUSED(ops_ssm_scan_backward(ctx, NULL, &bm, &bm, &dt, NULL, &al, &D, &seg, G, &dy, &dxs, NULL, NULL, NULL, NULL,
                                  NULL, NULL),
            ATTAMBA_ERR_INVALID_ARG, "required");
    REFUSED(ops_ssm_scan_backward(ctx, &big_p, &bm, &bm, &dt1, NULL, &one, &one, &seg, 1, &dbig, &dbig, NULL, NULL,
                                  NULL, NULL, NULL, NULL),
            ATTAMBA_ERR_INVALID_ARG, "head dim");
    REFUSED(ops_ssm_scan_backward(ctx, &xs, &big_bm, &big_bm, &dt, NULL, &al, &D, &seg, 1, &dy, &dxs, NULL, NULL,
                                  NULL, NULL, NULL, NULL),
            ATTAMBA_ERR_INVALID_ARG, "state size");
    /* conv */
    REFUSED(ops_conv1d_backward(ctx, &xs, &wbad, &seg, 1, &dy, &dxs, &dw), ATTAMBA_ERR_SHAPE, "w must be");
    REFUSED(ops_conv1d_backward(ctx, &xs, &w, &seg, 1, &wide, &dxs, &dw), ATTAMBA_ERR_SHAPE, "dout");
    REFUSED(ops_conv1d_backward(ctx, &xs, &w, &seg, 1, &dy, &wide, &dw), ATTAMBA_ERR_SHAPE, "dx");
    REFUSED(ops_conv1d_backward(ctx, &xs, &w, &seg, 1, &dy, &dxs, &wbad), ATTAMBA_ERR_SHAPE, "dw");
    REFUSED(ops_conv1d_backward(ctx, &xs, &w, &short_seg, 1, &dy, &dxs, &dw), ATTAMBA_ERR_SHAPE, "seg_start");
    REFUSED(ops_conv1d_backward(ctx, &xs, &w, &seg, 1, &dy, &dy, &dw), ATTAMBA_ERR_INVALID_ARG, "dx must not share");
    REFUSED(ops_conv1d_backward(ctx, &xs, &w, &seg, 1, &dy, &dxs, &w), ATTAMBA_ERR_INVALID_ARG, "dw must not share");
    REFUSED(ops_conv1d_backward(ctx, &xs, &w, &seg, 1, NULL, &dxs, &dw), ATTAMBA_ERR_INVALID_ARG, "required");
    /* nothing requested: a valid no-op */
    tu_ok(ops_conv1d_backward(ctx, &xs, &w, &seg, 1, &dy, NULL, NULL));
    tu_ok(ops_ssm_scan_backward(ctx, &xs, &bm, &bm, &dt, NULL, &al, &D, &seg, G, &dy, NULL, NULL, NULL, NULL, NULL,
                                NULL, NULL));
    tensor *all[] = {&xs, &bm, &dt, &al, &D, &dy, &dxs, &dbm, &dnh, &short_nh, &wide, &big_p, &one, &dt1, &big_bm,
                     &dbig, &seg, &short_seg, &w, &wbad, &dw, &fseg};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tensor_free(all[i]);
}
END_TEST

int main(void) {
    Suite *s = suite_create("ssm_backward");
    TCase *t = tcase_create("ssm_backward");
    tcase_set_timeout(t, 600);
#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))
    tcase_add_loop_test(t, reference_conv1d_backward_matches_finite_differences, 0, N_OF(conv_fd_cases));
    tcase_add_loop_test(t, reference_scan_backward_matches_finite_differences, 0, N_OF(fd_cases));
    tcase_add_loop_test(t, conv1d_backward_matches_reference_and_accumulates_dw, 0,
                        N_OF(conv_cases) * (int)CORE_LEN(conv_widths));
    tcase_add_loop_test(t, scan_backward_matches_reference_on_awkward_shapes, 0, N_OF(kern_cases));
    tcase_add_test(t, scan_and_conv_backward_use_column_slices);
    tcase_add_test(t, bad_arguments_are_refused_with_a_message);
    suite_add_tcase(s, t);
    return tu_run(s);
}
