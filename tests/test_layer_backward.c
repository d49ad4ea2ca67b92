/* Backward passes of the layer ops (src/ops/layer_backward.h).
 *
 * Two steps of trust: (1) the plain-C references (src/ref/ref_layer_backward.c) against central
 * finite differences of the forwards, computed in double here (each double forward is first
 * checked against the float ref forward of src/ref/ref_layer.c, so it is the same function);
 * (2) the kernels against the references on awkward shapes, plus properties (rope backward undoes
 * rope), accumulation, aliasing and bad arguments.
 *
 * Tolerances:
 * - finite differences: step h = 1e-5 on each element, loss L = sum(dout * out) in double. The
 *   difference quotient's error is ~h^2 |f'''| / 6 + 1e-16 |L| / h, ~1e-10 for these O(1) inputs;
 *   the ref rounds its double result to f32 once (3e-8 relative). We allow rtol 1e-6, atol 1e-7:
 *   a wrong term of any formula is off by far more.
 * - kernels vs ref: see each test (f32 sums on the device vs double in the ref).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/layer.h"
#include "ops/layer_backward.h"
#include "ref/ref_layer.h"
#include "ref/ref_layer_backward.h"
#include "testutil.h"

static double *to_double(const float *x, int64_t n) {
    double *d = malloc((size_t)n * sizeof *d);
    ck_assert_ptr_nonnull(d);
    for (int64_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

static double dsig(double v) { return 1.0 / (1.0 + exp(-v)); }

/* ---- double-precision forwards, as losses L = sum(dout * forward(...)) ---- */
typedef struct {
    int64_t rows, C, n_ids, V;
    int B, T, H, dh;
    double eps, theta;
    double *a, *z, *w; /* norms: x or y, z (gated only), w; swiglu: gate, up; silu: x; embedding: table */
    const int32_t *ids, *pos0;
    const double *dout;
    double *out; /* forward output, n elements */
} problem;

static void norm_fwd(const problem *p) {
    for (int64_t r = 0; r < p->rows; r++) {
        double ss = 0;
        for (int64_t c = 0; c < p->C; c++) {
            int64_t e = r * p->C + c;
            double g = p->z ? p->a[e] * p->z[e] * dsig(p->z[e]) : p->a[e];
            ss += g * g;
        }
        double inv = 1.0 / sqrt(ss / (double)p->C + p->eps);
        for (int64_t c = 0; c < p->C; c++) {
            int64_t e = r * p->C + c;
            double g = p->z ? p->a[e] * p->z[e] * dsig(p->z[e]) : p->a[e];
            p->out[e] = g * inv * p->w[c];
        }
    }
}

static void rope_fwd(const problem *p) {
    int64_t width = (int64_t)p->H * p->dh;
    for (int64_t b = 0; b < p->B; b++)
        for (int64_t t = 0; t < p->T; t++)
            for (int h = 0; h < p->H; h++)
                for (int i = 0; i < p->dh / 2; i++) {
                    double ang = (double)(p->pos0[b] + t) * pow(p->theta, -2.0 * i / p->dh);
                    int64_t e = (b * p->T + t) * width + (int64_t)h * p->dh + 2 * i;
                    double x0 = p->a[e], x1 = p->a[e + 1];
                    p->out[e] = x0 * cos(ang) - x1 * sin(ang);
                    p->out[e + 1] = x0 * sin(ang) + x1 * cos(ang);
                }
}

static void swiglu_fwd(const problem *p) {
    for (int64_t i = 0; i < p->rows * p->C; i++) p->out[i] = p->a[i] * dsig(p->a[i]) * p->z[i];
}

static void silu_fwd(const problem *p) {
    for (int64_t i = 0; i < p->rows * p->C; i++) p->out[i] = p->a[i] * dsig(p->a[i]);
}

static void embedding_fwd(const problem *p) {
    for (int64_t r = 0; r < p->n_ids; r++)
        for (int64_t c = 0; c < p->C; c++) p->out[r * p->C + c] = p->a[p->ids[r] * p->C + c];
}

static double loss(const problem *p, void (*fwd)(const problem *), int64_t n_out) {
    fwd(p);
    double L = 0;
    for (int64_t i = 0; i < n_out; i++) L += p->dout[i] * p->out[i];
    return L;
}

/* Central differences of the loss w.r.t. every element of v (a member of p) against grad. */
static void fd_check(const problem *p, void (*fwd)(const problem *), int64_t n_out, double *v, int64_t n,
                     const float *grad, const char *what) {
    const double h = 1e-5;
    for (int64_t i = 0; i < n; i++) {
        double keep = v[i];
        v[i] = keep + h;
        double lp = loss(p, fwd, n_out);
        v[i] = keep - h;
        double lm = loss(p, fwd, n_out);
        v[i] = keep;
        double fd = (lp - lm) / (2 * h);
        ck_assert_msg(fabs(grad[i] - fd) <= 1e-7 + 1e-6 * fabs(fd), "%s[%lld]: ref %.9g, finite differences %.9g",
                      what, (long long)i, (double)grad[i], fd);
    }
}

/* The double forward (left in p->out) equals the float ref forward (rtol 1e-6, atol 1e-7:
 * the ref rounds once to f32). */
static void same_forward(const problem *p, const float *ref_out, int64_t n, const char *what) {
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabs(p->out[i] - ref_out[i]) <= 1e-7 + 1e-6 * fabs(p->out[i]),
                      "%s forward [%lld]: double %.9g, ref %.9g", what, (long long)i, p->out[i],
                      (double)ref_out[i]);
}

/* ---- (1) references vs finite differences ---- */
static const struct {
    int64_t rows, C;
    float eps;
} fd_norm_cases[] = {{3, 6, 1e-5f}, {2, 1, 0.5f}, {1, 17, 1e-3f}};

START_TEST(ref_norm_backwards_match_finite_differences) {
    int64_t rows = fd_norm_cases[_i].rows, C = fd_norm_cases[_i].C, n = rows * C;
    float eps = fd_norm_cases[_i].eps;
    float *x = tu_random(n, 10 + (uint64_t)_i, -2, 2), *z = tu_random(n, 20 + (uint64_t)_i, -4, 4);
    float *w = tu_random(C, 30 + (uint64_t)_i, 0.5f, 1.5f), *dout = tu_random(n, 40 + (uint64_t)_i, -1, 1);
    float *dx = malloc((size_t)n * sizeof *dx), *dz = malloc((size_t)n * sizeof *dz);
    float *dw = calloc((size_t)C, sizeof *dw), *fout = malloc((size_t)n * sizeof *fout);
    double *xd = to_double(x, n), *zd = to_double(z, n), *wd = to_double(w, C), *gd = to_double(dout, n);
    double *out = malloc((size_t)n * sizeof *out);
    problem p = {.rows = rows, .C = C, .eps = eps, .a = xd, .w = wd, .dout = gd, .out = out};

    ref_rmsnorm_backward(rows, C, x, w, eps, dout, dx, dw);
    norm_fwd(&p);
    ref_rmsnorm(rows, C, x, w, eps, fout);
    same_forward(&p, fout, n, "rmsnorm");
    fd_check(&p, norm_fwd, n, xd, n, dx, "rmsnorm dx");
    fd_check(&p, norm_fwd, n, wd, C, dw, "rmsnorm dw");

    memset(dw, 0, (size_t)C * sizeof *dw);
    ref_gated_rmsnorm_backward(rows, C, x, z, w, eps, dout, dx, dz, dw);
    p.z = zd;
    norm_fwd(&p);
    ref_gated_rmsnorm(rows, C, x, z, w, eps, fout);
    same_forward(&p, fout, n, "gated_rmsnorm");
    fd_check(&p, norm_fwd, n, xd, n, dx, "gated dy");
    fd_check(&p, norm_fwd, n, zd, n, dz, "gated dz");
    fd_check(&p, norm_fwd, n, wd, C, dw, "gated dw");

    free(x), free(z), free(w), free(dout), free(dx), free(dz), free(dw), free(fout);
    free(xd), free(zd), free(wd), free(gd), free(out);
}
END_TEST

START_TEST(ref_rope_swiglu_silu_embedding_backwards_match_finite_differences) {
    /* RoPE: two heads of dh 4, per-sequence starts */
    enum { B = 2, T = 3, H = 2, DH = 4, N = B * T * H * DH };
    int32_t pos0[B] = {0, 7};
    float *x = tu_random(N, 50, -1, 1), *up = tu_random(N, 51, -2, 2), *dout = tu_random(N, 52, -1, 1);
    float g1[N], g2[N], fout[N];
    double *xd = to_double(x, N), *ud = to_double(up, N), *gd = to_double(dout, N), out[N];
    problem p = {.B = B, .T = T, .H = H, .dh = DH, .theta = 10000.0, .a = xd, .pos0 = pos0, .dout = gd,
                 .out = out};
    memcpy(g1, dout, sizeof g1);
    ref_rope_backward(B, T, H, DH, g1, pos0, 10000.0f);
    rope_fwd(&p);
    memcpy(fout, x, sizeof fout);
    ref_rope(B, T, H, DH, fout, pos0, 10000.0f);
    same_forward(&p, fout, N, "rope");
    fd_check(&p, rope_fwd, N, xd, N, g1, "rope dx");

    /* SwiGLU and SiLU over the same N elements, gates spread over [-8, 8) */
    for (int i = 0; i < N; i++) xd[i] = x[i] *= 8.0f;
    p = (problem){.rows = 1, .C = N, .a = xd, .z = ud, .dout = gd, .out = out};
    ref_swiglu_backward(N, x, up, dout, g1, g2);
    swiglu_fwd(&p);
    ref_swiglu(N, x, up, fout);
    same_forward(&p, fout, N, "swiglu");
    fd_check(&p, swiglu_fwd, N, xd, N, g1, "swiglu dgate");
    fd_check(&p, swiglu_fwd, N, ud, N, g2, "swiglu dup");
    ref_silu_backward(N, x, dout, g1);
    silu_fwd(&p);
    ref_silu(N, x, fout);
    same_forward(&p, fout, N, "silu");
    fd_check(&p, silu_fwd, N, xd, N, g1, "silu dx");

    /* embedding: V 5, d 3, ids with a repeat and an unused id (3) */
    enum { V = 5, D = 3, NI = 6 };
    int32_t ids[NI] = {4, 1, 4, 0, 2, 4};
    float *table = tu_random(V * D, 53, -1, 1), dt[V * D] = {0}, eout[NI * D];
    double *td = to_double(table, V * D), eo[NI * D];
    p = (problem){.n_ids = NI, .V = V, .C = D, .a = td, .ids = ids, .dout = gd, .out = eo};
    ref_embedding_backward(NI, ids, V, D, dout, dt);
    embedding_fwd(&p);
    ref_embedding(NI, ids, V, D, table, eout);
    same_forward(&p, eout, NI * D, "embedding");
    fd_check(&p, embedding_fwd, NI * D, td, V * D, dt, "embedding dtable");
    for (int c = 0; c < D; c++) ck_assert(dt[3 * D + c] == 0.0f);

    free(x), free(up), free(dout), free(xd), free(ud), free(gd), free(table), free(td);
}
END_TEST

/* ---- (2) kernels vs references ---- */
static const int64_t test_rows[] = {1, 3, 300};
static const int64_t test_widths[] = {1, 7, 100, 512, 1000};
enum { N_ROWS = 3, N_WIDTHS = 5 };

/* rows x C as [rows, C] or, for odd variants, [1, rows, C]. */
static int layout(int64_t rows, int64_t C, int variant, int64_t *shape) {
    if (variant % 2) {
        shape[0] = 1, shape[1] = rows, shape[2] = C;
        return 3;
    }
    shape[0] = rows, shape[1] = C;
    return 2;
}

/* |got - want| <= rtol * scale + atol everywhere; the message names the worst element. */
static void assert_scaled(const float *got, const float *want, const double *scale, int64_t n, double rtol,
                          double atol, const char *what) {
    int64_t worst = -1;
    double excess = 0;
    for (int64_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]), tol = rtol * scale[i] + atol;
        if (isnan(got[i]) || err > tol + excess) worst = i, excess = isnan(got[i]) ? INFINITY : err - tol;
    }
    if (worst >= 0)
        ck_abort_msg("%s: element %lld is %.8g, expected %.8g, allowed %.3g", what, (long long)worst,
                     (double)got[worst], (double)want[worst], rtol * scale[worst] + atol);
}

/* Norms, input gradients. Error model: dg = r * dout * w - g * r^3 s / C, with s = sum dout w g
 * summed in f32 on the device (strided partials, then a tree: a dozen roundings on the way), so s
 * is off by ~1e-6 of sum |dout w g| and r by a few ulp. Hence scale = r |dout w| +
 * |g| r^3 sum|dout w g| / C (times |silu(z)| for dy, |y| s (1 + |z| (1 - s)) for dz, s =
 * sigmoid(z): silu' = s (1 + z (1 - s)) crosses zero near z = -1.28, where 1 - s's rounding is all
 * that is left), rtol 1e-5 of that, atol 1e-8. Where the two terms cancel (C = 1:
 * dx = r dout w eps / (x^2 + eps)) a tolerance relative to the result itself would be wrong.
 * a = x or y; z NULL for the plain norm. */
static void check_norm_grads(int64_t rows, int64_t C, const float *a, const float *z, const float *w,
                             float eps, const float *dout, const float *got_a, const float *want_a,
                             const float *got_z, const float *want_z, const char *what) {
    int64_t n = rows * C;
    double *sa = malloc((size_t)n * sizeof *sa), *sz = malloc((size_t)n * sizeof *sz);
    for (int64_t r = 0; r < rows; r++) {
        double ss = 0, sabs = 0;
        for (int64_t c = 0; c < C; c++) {
            int64_t e = r * C + c;
            double g = z ? a[e] * z[e] * dsig(z[e]) : a[e];
            ss += g * g;
            sabs += fabs(dout[e] * w[c] * g);
        }
        double inv = 1.0 / sqrt(ss / (double)C + eps);
        for (int64_t c = 0; c < C; c++) {
            int64_t e = r * C + c;
            double sg = z ? dsig(z[e]) : 1.0, silu = z ? z[e] * sg : 1.0, g = a[e] * silu;
            double t = inv * fabs(dout[e] * w[c]) + fabs(g) * inv * inv * inv * sabs / (double)C;
            sa[e] = t * fabs(silu);
            sz[e] = z ? t * fabs(a[e]) * sg * (1.0 + fabs(z[e]) * (1.0 - sg)) : 0.0;
        }
    }
    if (got_a) assert_scaled(got_a, want_a, sa, n, 1e-5, 1e-8, what);
    if (got_z) assert_scaled(got_z, want_z, sz, n, 1e-5, 1e-8, what);
    free(sa);
    free(sz);
}

/* dw is a sum over rows of O(1) terms in f32 (32-row blocks, then the blocks): atol 2e-6 * rows,
 * rtol 1e-5. */
START_TEST(norm_backwards_match_reference_on_awkward_shapes) {
    rt_ctx *ctx = tu_ctx();
    int64_t rows = test_rows[_i / N_WIDTHS], C = test_widths[_i % N_WIDTHS], n = rows * C, shape[3];
    int nd = layout(rows, C, _i, shape);
    const float eps = 1e-5f;
    float *x = tu_random(n, 100 + (uint64_t)_i, -2, 2), *z = tu_random(n, 200 + (uint64_t)_i, -6, 6);
    float *w = tu_random(C, 300 + (uint64_t)_i, 0.5f, 1.5f), *dout = tu_random(n, 400 + (uint64_t)_i, -1, 1);
    float *dw0 = tu_random(C, 500 + (uint64_t)_i, -1, 1); /* dw accumulates onto this */
    float *want = malloc((size_t)n * sizeof *want), *want2 = malloc((size_t)n * sizeof *want2);
    float *wdw = malloc((size_t)C * sizeof *wdw);
    tensor tx = tu_tensor(nd, shape, x), tz = tu_tensor(nd, shape, z), tw = tu_tensor(1, &C, w);
    tensor tg = tu_tensor(nd, shape, dout), tdx = tu_zeros(nd, shape), tdz = tu_zeros(nd, shape);
    tensor tdw = tu_tensor(1, &C, dw0);
    double dw_atol = 2e-6 * (double)rows;

    /* rmsnorm with dw (separate dx kernel), then without (dx fused in the row kernel) */
    tu_ok(ops_rmsnorm_backward(ctx, &tx, &tw, eps, &tg, &tdx, &tdw));
    memcpy(wdw, dw0, (size_t)C * sizeof *wdw);
    ref_rmsnorm_backward(rows, C, x, w, eps, dout, want, wdw);
    float *got = tu_download(&tdx), *gdw = tu_download(&tdw);
    check_norm_grads(rows, C, x, NULL, w, eps, dout, got, want, NULL, NULL, "rmsnorm dx");
    tu_assert_close(gdw, wdw, C, 1e-5, dw_atol, "rmsnorm dw");
    free(got), free(gdw);
    tu_ok(tensor_fill(&tdx, NAN));
    tu_ok(ops_rmsnorm_backward(ctx, &tx, &tw, eps, &tg, &tdx, NULL));
    got = tu_download(&tdx);
    check_norm_grads(rows, C, x, NULL, w, eps, dout, got, want, NULL, NULL, "rmsnorm dx without dw");
    free(got);
    /* dw only */
    tu_ok(tensor_upload(&tdw, dw0));
    tu_ok(ops_rmsnorm_backward(ctx, &tx, &tw, eps, &tg, NULL, &tdw));
    gdw = tu_download(&tdw);
    tu_assert_close(gdw, wdw, C, 1e-5, dw_atol, "rmsnorm dw without dx");
    free(gdw);

    /* gated: all three, then dy and dz without dw, then dz alone */
    tu_ok(tensor_upload(&tdw, dw0));
    tu_ok(ops_gated_rmsnorm_backward(ctx, &tx, &tz, &tw, eps, &tg, &tdx, &tdz, &tdw));
    memcpy(wdw, dw0, (size_t)C * sizeof *wdw);
    ref_gated_rmsnorm_backward(rows, C, x, z, w, eps, dout, want, want2, wdw);
    got = tu_download(&tdx);
    float *gdz = tu_download(&tdz);
    gdw = tu_download(&tdw);
    check_norm_grads(rows, C, x, z, w, eps, dout, got, want, gdz, want2, "gated dy, dz");
    tu_assert_close(gdw, wdw, C, 1e-5, dw_atol, "gated dw");
    free(got), free(gdz), free(gdw);
    tu_ok(tensor_fill(&tdx, NAN));
    tu_ok(tensor_fill(&tdz, NAN));
    tu_ok(ops_gated_rmsnorm_backward(ctx, &tx, &tz, &tw, eps, &tg, &tdx, &tdz, NULL));
    got = tu_download(&tdx);
    gdz = tu_download(&tdz);
    check_norm_grads(rows, C, x, z, w, eps, dout, got, want, gdz, want2, "gated dy, dz without dw");
    free(got), free(gdz);
    tu_ok(tensor_fill(&tdx, 7.0));
    tu_ok(tensor_fill(&tdz, NAN));
    tu_ok(ops_gated_rmsnorm_backward(ctx, &tx, &tz, &tw, eps, &tg, NULL, &tdz, NULL));
    got = tu_download(&tdx);
    gdz = tu_download(&tdz);
    check_norm_grads(rows, C, x, z, w, eps, dout, NULL, NULL, gdz, want2, "gated dz alone");
    for (int64_t i = 0; i < n; i++) ck_assert_msg(got[i] == 7.0f, "dy written though NULL was passed");
    free(got), free(gdz);

    tensor *all[] = {&tx, &tz, &tw, &tg, &tdx, &tdz, &tdw};
    for (size_t i = 0; i < CORE_LEN(all); i++) tensor_free(all[i]);
    free(x), free(z), free(w), free(dout), free(dw0), free(want), free(want2), free(wdw);
}
END_TEST

/* dw may be a view into a flat gradient buffer: the neighbours stay, and two calls add twice.
 * Same shapes, same bits: run on two buffers, the results are identical (fixed-order sums). Rows
 * 33 = one full block of 32 plus one row, 300 = ten blocks (the last partial). */
START_TEST(norm_weight_gradients_accumulate_into_views_reproducibly) {
    rt_ctx *ctx = tu_ctx();
    static const int64_t rows_list[] = {33, 300};
    enum { C = 100, PAD = 5, FLAT = C + 2 * PAD };
    int64_t rows = rows_list[_i], n = rows * C, shape[2] = {rows, C}, c = C, flat_n = FLAT;
    float *x = tu_random(n, 61, -2, 2), *z = tu_random(n, 62, -6, 6), *w = tu_random(C, 63, 0.5f, 1.5f);
    float *dout = tu_random(n, 64, -1, 1), *flat = tu_random(FLAT, 65, -1, 1);
    float wdw[C];
    tensor tx = tu_tensor(2, shape, x), tz = tu_tensor(2, shape, z), tw = tu_tensor(1, &c, w);
    tensor tg = tu_tensor(2, shape, dout);
    for (int gated = 0; gated < 2; gated++) {
        float *res[2];
        for (int run = 0; run < 2; run++) {
            tensor tflat = tu_tensor(1, &flat_n, flat), dw;
            tu_ok(tensor_slice(&tflat, 0, PAD, C, &dw));
            for (int k = 0; k < 2; k++) {
                if (gated) tu_ok(ops_gated_rmsnorm_backward(ctx, &tx, &tz, &tw, 1e-5f, &tg, NULL, NULL, &dw));
                else tu_ok(ops_rmsnorm_backward(ctx, &tx, &tw, 1e-5f, &tg, NULL, &dw));
            }
            res[run] = tu_download(&tflat);
            tensor_free(&dw);
            tensor_free(&tflat);
        }
        memcpy(wdw, flat + PAD, sizeof wdw);
        for (int k = 0; k < 2; k++) {
            if (gated) ref_gated_rmsnorm_backward(rows, C, x, z, w, 1e-5f, dout, NULL, NULL, wdw);
            else ref_rmsnorm_backward(rows, C, x, w, 1e-5f, dout, NULL, wdw);
        }
        tu_assert_close(res[0] + PAD, wdw, C, 1e-5, 4e-6 * (double)rows, "dw accumulated twice");
        ck_assert_mem_eq(res[0], flat, PAD * sizeof(float));
        ck_assert_mem_eq(res[0] + PAD + C, flat + PAD + C, PAD * sizeof(float));
        ck_assert_msg(!memcmp(res[0], res[1], FLAT * sizeof(float)), "two identical runs differ (gated %d)",
                      gated);
        free(res[0]), free(res[1]);
    }
    tensor *all[] = {&tx, &tz, &tw, &tg};
    for (size_t i = 0; i < CORE_LEN(all); i++) tensor_free(all[i]);
    free(x), free(z), free(w), free(dout), free(flat);
}
END_TEST

/* Input gradients written over their inputs (views with offsets: rows 1..3 of [5, C]), with and
 * without dw, leave the rows around alone and match the ref. */
START_TEST(norm_input_gradients_may_overwrite_inputs) {
    rt_ctx *ctx = tu_ctx();
    enum { R = 5, C = 37, VR = 3, VN = VR * C };
    int64_t shape[2] = {R, C}, c = C, n = R * C;
    float *x = tu_random(n, 71, -2, 2), *z = tu_random(n, 72, -4, 4), *w = tu_random(C, 73, 0.5f, 1.5f);
    float *dout = tu_random(n, 74, -1, 1);
    float wa[VN], wb[VN], wdw[C];
    tensor tw = tu_tensor(1, &c, w);
    for (int which = 0; which < 8; which++) {
        int with_dw = which & 1, mode = which >> 1;
        tensor tx = tu_tensor(2, shape, x), tz = tu_tensor(2, shape, z), tg = tu_tensor(2, shape, dout);
        tensor dw = tu_zeros(1, &c), vx, vz, vg;
        tu_ok(tensor_slice(&tx, 0, 1, VR, &vx));
        tu_ok(tensor_slice(&tz, 0, 1, VR, &vz));
        tu_ok(tensor_slice(&tg, 0, 1, VR, &vg));
        tensor *dwp = with_dw ? &dw : NULL;
        memset(wdw, 0, sizeof wdw);
        const char *what = "";
        tensor *out_a = NULL, *out_b = NULL;
        switch (mode) {
        case 0:
            tu_ok(ops_rmsnorm_backward(ctx, &vx, &tw, 1e-5f, &vg, &vx, dwp));
            ref_rmsnorm_backward(VR, C, x + C, w, 1e-5f, dout + C, wa, wdw);
            out_a = &tx, what = "rmsnorm dx = x";
            break;
        case 1:
            tu_ok(ops_rmsnorm_backward(ctx, &vx, &tw, 1e-5f, &vg, &vg, dwp));
            ref_rmsnorm_backward(VR, C, x + C, w, 1e-5f, dout + C, wa, wdw);
            out_a = &tg, what = "rmsnorm dx = dout";
            break;
        case 2:
            tu_ok(ops_gated_rmsnorm_backward(ctx, &vx, &vz, &tw, 1e-5f, &vg, &vx, &vz, dwp));
            ref_gated_rmsnorm_backward(VR, C, x + C, z + C, w, 1e-5f, dout + C, wa, wb, wdw);
            out_a = &tx, out_b = &tz, what = "gated dy = y, dz = z";
            break;
        default:
            tu_ok(ops_gated_rmsnorm_backward(ctx, &vx, &vz, &tw, 1e-5f, &vg, &vz, &vg, dwp));
            ref_gated_rmsnorm_backward(VR, C, x + C, z + C, w, 1e-5f, dout + C, wa, wb, wdw);
            out_a = &tz, out_b = &tg, what = "gated dy = z, dz = dout";
            break;
        }
        const float *orig_a = out_a == &tx ? x : out_a == &tz ? z : dout;
        float *got = tu_download(out_a);
        const float *gz = mode >= 2 ? z + C : NULL;
        check_norm_grads(VR, C, x + C, gz, w, 1e-5f, dout + C, got + C, wa, NULL, NULL, what);
        ck_assert_mem_eq(got, orig_a, C * sizeof(float));
        ck_assert_mem_eq(got + (R - 1) * C, orig_a + (R - 1) * C, C * sizeof(float));
        free(got);
        if (out_b) {
            const float *orig_b = out_b == &tz ? z : dout;
            got = tu_download(out_b);
            check_norm_grads(VR, C, x + C, gz, w, 1e-5f, dout + C, NULL, NULL, got + C, wb, what);
            ck_assert_mem_eq(got, orig_b, C * sizeof(float));
            free(got);
        }
        if (with_dw) {
            got = tu_download(&dw);
            tu_assert_close(got, wdw, C, 1e-5, 2e-6 * VR, what);
            free(got);
        }
        tensor *all[] = {&vx, &vz, &vg, &tx, &tz, &tg, &dw};
        for (size_t i = 0; i < CORE_LEN(all); i++) tensor_free(all[i]);
    }
    tensor_free(&tw);
    free(x), free(z), free(w), free(dout);
}
END_TEST

/* A zero row (x = 0, or z = 0 in the gated norm) has r = 1/sqrt(eps): the gradients stay finite
 * and match the ref (dx = dout w / sqrt(eps), dw gets nothing from that row). */
START_TEST(norm_backwards_are_finite_on_zero_rows) {
    rt_ctx *ctx = tu_ctx();
    enum { R = 3, C = 50, N = R * C };
    int64_t shape[2] = {R, C}, c = C;
    float *x = tu_random(N, 181, -2, 2), *w = tu_random(C, 182, 0.5f, 1.5f), *dout = tu_random(N, 183, -1, 1);
    float *z = tu_random(N, 184, -4, 4), wa[N], wb[N], wdw[C] = {0};
    for (int i = 0; i < C; i++) x[C + i] = 0.0f, z[2 * C + i] = 0.0f; /* row 1: x = 0; row 2: z = 0 */
    tensor tx = tu_tensor(2, shape, x), tz = tu_tensor(2, shape, z), tw = tu_tensor(1, &c, w);
    tensor tg = tu_tensor(2, shape, dout), ta = tu_zeros(2, shape), tb = tu_zeros(2, shape), dw = tu_zeros(1, &c);
    tu_ok(ops_rmsnorm_backward(ctx, &tx, &tw, 1e-5f, &tg, &ta, &dw));
    ref_rmsnorm_backward(R, C, x, w, 1e-5f, dout, wa, wdw);
    float *got = tu_download(&ta), *gdw = tu_download(&dw);
    check_norm_grads(R, C, x, NULL, w, 1e-5f, dout, got, wa, NULL, NULL, "rmsnorm with a zero row");
    tu_assert_close(gdw, wdw, C, 1e-5, 2e-6 * R, "rmsnorm dw with a zero row");
    for (int i = 0; i < C; i++) /* 1/sqrt(1e-5) = 316.2: the row is scaled, not zeroed or NaN */
        ck_assert_double_eq_tol(got[C + i], dout[C + i] * w[i] / sqrt(1e-5),
                                1e-5 * 316.3 * fabs(dout[C + i]) + 1e-6);
    free(got), free(gdw);
    memset(wdw, 0, sizeof wdw);
    tu_ok(tensor_fill(&dw, 0.0));
    tu_ok(ops_gated_rmsnorm_backward(ctx, &tx, &tz, &tw, 1e-5f, &tg, &ta, &tb, &dw));
    ref_gated_rmsnorm_backward(R, C, x, z, w, 1e-5f, dout, wa, wb, wdw);
    got = tu_download(&ta), gdw = tu_download(&dw);
    float *gdz = tu_download(&tb);
    check_norm_grads(R, C, x, z, w, 1e-5f, dout, got, wa, gdz, wb, "gated with zero rows");
    tu_assert_close(gdw, wdw, C, 1e-5, 2e-6 * R, "gated dw with zero rows");
    for (int i = 0; i < N; i++) ck_assert(isfinite(got[i]) && isfinite(gdz[i]));
    free(got), free(gdw), free(gdz);
    tensor *all[] = {&tx, &tz, &tw, &tg, &ta, &tb, &dw};
    for (size_t i = 0; i < CORE_LEN(all); i++) tensor_free(all[i]);
    free(x), free(w), free(dout), free(z);
}
END_TEST

/* ---- RoPE ---- */
static const struct {
    int B, T, H, dh;
    int32_t pos0[3];
} rope_cases[] = {
    {1, 1, 1, 2, {0}},
    {3, 5, 3, 8, {0, 17, 250}},
    {2, 7, 8, 64, {3, 0}},
    {2, 3, 2, 64, {100000, 4095}},
};

/* Against the ref: the same tolerance as the forward's (tests/test_layer.c): the f32 angle is off
 * by up to 1e-6 (pos + 1) radians, so with |dx| <= 1 an output may be off by
 * 1.5e-6 (max pos + 1) + 1e-6. */
START_TEST(rope_backward_matches_reference) {
    rt_ctx *ctx = tu_ctx();
    int B = rope_cases[_i].B, T = rope_cases[_i].T, H = rope_cases[_i].H, dh = rope_cases[_i].dh;
    int64_t shape[3] = {B, T, (int64_t)H * dh}, n = (int64_t)B * T * H * dh, b64 = B;
    float *g = tu_random(n, 80 + (uint64_t)_i, -1, 1), *want = malloc((size_t)n * sizeof *want);
    memcpy(want, g, (size_t)n * sizeof *want);
    tensor tg = tu_tensor(3, shape, g), tp = tu_i32(1, &b64, rope_cases[_i].pos0);
    tu_ok(ops_rope_backward(ctx, &tg, H, &tp, 10000.0f));
    ref_rope_backward(B, T, H, dh, want, rope_cases[_i].pos0, 10000.0f);
    int32_t max_pos = 0;
    for (int b = 0; b < B; b++)
        if (rope_cases[_i].pos0[b] + T - 1 > max_pos) max_pos = rope_cases[_i].pos0[b] + T - 1;
    float *got = tu_download(&tg);
    tu_assert_close(got, want, n, 0, 1.5e-6 * (max_pos + 1) + 1e-6, "rope backward");
    free(got);
    tensor_free(&tg);
    tensor_free(&tp);
    free(g);
    free(want);
}
END_TEST

/* backward(forward(x)) = x: both kernels use bit-identical angles, so the result is
 * x (cos^2 + sin^2) up to rounding, whatever the position. With |x| <= 1, sin and cos within 4 ulp
 * (OpenCL 1.2) and four roundings: 3e-6 absolute, also at position 100000 where the angle itself
 * is off by ~0.05 rad. A sign error in either direction rotates by twice the angle and fails. */
START_TEST(rope_backward_undoes_rope_forward) {
    rt_ctx *ctx = tu_ctx();
    int B = rope_cases[_i].B, T = rope_cases[_i].T, H = rope_cases[_i].H, dh = rope_cases[_i].dh;
    int64_t shape[3] = {B, T, (int64_t)H * dh}, n = (int64_t)B * T * H * dh, b64 = B;
    float *x = tu_random(n, 90 + (uint64_t)_i, -1, 1);
    tensor tx = tu_tensor(3, shape, x), tp = tu_i32(1, &b64, rope_cases[_i].pos0);
    tu_ok(ops_rope(ctx, &tx, H, &tp, 10000.0f));
    float *mid = tu_download(&tx);
    tu_ok(ops_rope_backward(ctx, &tx, H, &tp, 10000.0f));
    float *got = tu_download(&tx);
    tu_assert_close(got, x, n, 0, 3e-6, "rope backward of rope");
    if (n > 2 * dh) /* the forward did move something (position 1 onwards rotates) */
        ck_assert(memcmp(mid, x, (size_t)n * sizeof *x) != 0);
    free(mid);
    free(got);
    tensor_free(&tx);
    tensor_free(&tp);
    free(x);
}
END_TEST

/* ---- SwiGLU and SiLU ----
 * dgate = dout up s (1 + g (1 - s)), s = sigmoid(g); dup = dout g s. Error model: s within a few
 * ulp (exp), 1 - s off by an ulp of 1 (absolute), scaled by |g| <= 8, then a handful of roundings.
 * The bracket crosses zero (g ~ -1.28), so the scale is |dout up| s (1 + |g|) for dgate and
 * |dout g s| for dup, rtol 2e-6, atol 1e-8. up = NULL: SiLU (up = 1). */
static void check_swiglu_grads(int64_t n, const float *g, const float *up, const float *dout, const float *got_g,
                               const float *want_g, const float *got_u, const float *want_u, const char *what) {
    double *sg = malloc((size_t)n * sizeof *sg), *su = malloc((size_t)n * sizeof *su);
    for (int64_t i = 0; i < n; i++) {
        double s = dsig(g[i]), u = up ? up[i] : 1.0;
        sg[i] = fabs(dout[i] * u) * s * (1.0 + fabs(g[i]));
        su[i] = fabs(dout[i] * g[i]) * s;
    }
    if (got_g) assert_scaled(got_g, want_g, sg, n, 2e-6, 1e-8, what);
    if (got_u) assert_scaled(got_u, want_u, su, n, 2e-6, 1e-8, what);
    free(sg);
    free(su);
}

START_TEST(swiglu_and_silu_backwards_match_reference) {
    rt_ctx *ctx = tu_ctx();
    int64_t rows = test_rows[_i / N_WIDTHS], C = test_widths[_i % N_WIDTHS], n = rows * C, shape[3];
    int nd = layout(rows, C, _i + 1, shape);
    float *g = tu_random(n, 110 + (uint64_t)_i, -8, 8), *u = tu_random(n, 120 + (uint64_t)_i, -2, 2);
    float *d = tu_random(n, 130 + (uint64_t)_i, -2, 2);
    float *wa = malloc((size_t)n * sizeof *wa), *wb = malloc((size_t)n * sizeof *wb);
    tensor tg = tu_tensor(nd, shape, g), tu = tu_tensor(nd, shape, u), td = tu_tensor(nd, shape, d);
    tensor ta = tu_zeros(nd, shape), tb = tu_zeros(nd, shape);

    ref_swiglu_backward(n, g, u, d, wa, wb);
    tu_ok(ops_swiglu_backward(ctx, &tg, &tu, &td, &ta, &tb));
    float *ga = tu_download(&ta), *gb = tu_download(&tb);
    check_swiglu_grads(n, g, u, d, ga, wa, gb, wb, "swiglu");
    free(ga), free(gb);
    /* one output at a time: the other is left alone */
    tu_ok(tensor_fill(&ta, 3.0));
    tu_ok(tensor_fill(&tb, NAN));
    tu_ok(ops_swiglu_backward(ctx, &tg, &tu, &td, NULL, &tb));
    ga = tu_download(&ta), gb = tu_download(&tb);
    check_swiglu_grads(n, g, u, d, NULL, NULL, gb, wb, "swiglu dup alone");
    for (int64_t i = 0; i < n; i++) ck_assert(ga[i] == 3.0f);
    free(ga), free(gb);

    ref_silu_backward(n, g, d, wa);
    tu_ok(ops_silu_backward(ctx, &tg, &td, &ta));
    ga = tu_download(&ta);
    check_swiglu_grads(n, g, NULL, d, ga, wa, NULL, NULL, "silu dx");
    free(ga);

    tensor *all[] = {&tg, &tu, &td, &ta, &tb};
    for (size_t i = 0; i < CORE_LEN(all); i++) tensor_free(all[i]);
    free(g), free(u), free(d), free(wa), free(wb);
}
END_TEST

/* dgate over gate and dup over up at once (and dx over x, dx over dout), on views with offsets. */
START_TEST(swiglu_and_silu_backwards_work_in_place) {
    rt_ctx *ctx = tu_ctx();
    enum { R = 5, C = 41, VR = 3, VN = VR * C };
    int64_t shape[2] = {R, C}, n = R * C;
    float *g = tu_random(n, 141, -8, 8), *u = tu_random(n, 142, -2, 2), *d = tu_random(n, 143, -2, 2);
    float wa[VN], wb[VN];
    for (int which = 0; which < 3; which++) {
        tensor tg = tu_tensor(2, shape, g), tu = tu_tensor(2, shape, u), td = tu_tensor(2, shape, d);
        tensor vg, vu, vd;
        tu_ok(tensor_slice(&tg, 0, 1, VR, &vg));
        tu_ok(tensor_slice(&tu, 0, 1, VR, &vu));
        tu_ok(tensor_slice(&td, 0, 1, VR, &vd));
        tensor *first = &tg, *second = NULL;
        const float *orig = g;
        if (which == 0) {
            tu_ok(ops_swiglu_backward(ctx, &vg, &vu, &vd, &vg, &vu));
            ref_swiglu_backward(VN, g + C, u + C, d + C, wa, wb);
            second = &tu;
        } else if (which == 1) {
            tu_ok(ops_silu_backward(ctx, &vg, &vd, &vg));
            ref_silu_backward(VN, g + C, d + C, wa);
        } else {
            tu_ok(ops_silu_backward(ctx, &vg, &vd, &vd));
            ref_silu_backward(VN, g + C, d + C, wa);
            first = &td, orig = d;
        }
        float *got = tu_download(first);
        check_swiglu_grads(VN, g + C, which == 0 ? u + C : NULL, d + C, got + C, wa, NULL, NULL,
                           which == 0 ? "dgate = gate" : "silu in place");
        ck_assert_mem_eq(got, orig, C * sizeof(float));
        ck_assert_mem_eq(got + (R - 1) * C, orig + (R - 1) * C, C * sizeof(float));
        free(got);
        if (second) {
            got = tu_download(second);
            check_swiglu_grads(VN, g + C, u + C, d + C, NULL, NULL, got + C, wb, "dup = up");
            ck_assert_mem_eq(got, u, C * sizeof(float));
            free(got);
        }
        tensor *all[] = {&vg, &vu, &vd, &tg, &tu, &td};
        for (size_t i = 0; i < CORE_LEN(all); i++) tensor_free(all[i]);
    }
    free(g), free(u), free(d);
}
END_TEST

/* ---- embedding ----
 * Values are multiples of 1/256 in [-1, 1] and at most 21 are added per element, so every f32 sum
 * is exact: the kernel must match the ref bit for bit, and unused rows keep their bits. */
static void dyadic(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = roundf(x[i] * 256.0f) / 256.0f;
}

START_TEST(embedding_backward_sums_repeated_ids_and_leaves_unused_rows) {
    rt_ctx *ctx = tu_ctx();
    static const int64_t widths[] = {1, 7, 512};
    enum { V = 50, B = 3, T = 7 };
    int64_t d = widths[_i], ids_shape[2] = {B, T}, dshape[3] = {B, T, d}, tshape[2] = {V, d};
    /* 7 appears 5 times, 0 three times, 49 (the last id) twice; most ids are unused */
    int32_t ids[B * T] = {7, 0, 49, 7, 3, 7, 12, 0, 49, 25, 1, 2, 7, 4, 30, 48, 0, 7, 13, 40, 11};
    float *dout = tu_random(B * T * d, 150 + (uint64_t)_i, -1, 1);
    float *table = tu_random(V * d, 160 + (uint64_t)_i, -1, 1);
    dyadic(dout, B * T * d);
    dyadic(table, V * d);
    float *want = malloc((size_t)(V * d) * sizeof *want);
    memcpy(want, table, (size_t)(V * d) * sizeof *want);
    tensor ti = tu_i32(2, ids_shape, ids), tg = tu_tensor(3, dshape, dout), tt = tu_tensor(2, tshape, table);
    tu_ok(ops_embedding_backward(ctx, &ti, ids, &tg, &tt));
    ref_embedding_backward(B * T, ids, V, d, dout, want);
    float *got = tu_download(&tt);
    ck_assert_mem_eq(got, want, (size_t)(V * d) * sizeof *got);
    /* and the rows did change where ids were used: dtable row 7 = table row 7 + 5 rows of dout */
    for (int c = 0; c < d; c++) {
        float s = table[7 * d + c];
        for (int r = 0; r < B * T; r++)
            if (ids[r] == 7) s += dout[r * d + c];
        ck_assert_msg(got[7 * d + c] == s, "row 7 col %d: %g, expected %g", c, (double)got[7 * d + c], (double)s);
    }
    free(got);
    tensor_free(&ti);
    tensor_free(&tg);
    tensor_free(&tt);
    free(dout), free(table), free(want);
}
END_TEST

/* Random f32 data, 1200 positions over V 1000 (many repeats, many unused ids), d 100. Tolerance:
 * a row gets at most a few dozen O(1) terms summed in f32 (each rounding <= 6e-8 of the partial
 * sum): atol 1e-5, rtol 1e-6. */
START_TEST(embedding_backward_matches_reference_on_random_data) {
    rt_ctx *ctx = tu_ctx();
    enum { V = 1000, B = 4, T = 300, D = 100, N = B * T };
    int64_t ids_shape[2] = {B, T}, dshape[3] = {B, T, D}, tshape[2] = {V, D};
    int32_t *ids = malloc(N * sizeof *ids);
    core_rng r;
    core_rng_seed(&r, 170);
    for (int i = 0; i < N; i++) ids[i] = (int32_t)(core_rng_next(&r) % (i % 3 ? 40 : V)); /* skewed */
    float *dout = tu_random(N * D, 171, -1, 1), *table = tu_random(V * D, 172, -1, 1);
    float *want = malloc((size_t)V * D * sizeof *want);
    memcpy(want, table, (size_t)V * D * sizeof *want);
    tensor ti = tu_i32(2, ids_shape, ids), tg = tu_tensor(3, dshape, dout), tt = tu_tensor(2, tshape, table);
    tu_ok(ops_embedding_backward(ctx, &ti, ids, &tg, &tt));
    ref_embedding_backward(N, ids, V, D, dout, want);
    float *got = tu_download(&tt);
    tu_assert_close(got, want, V * D, 1e-6, 1e-5, "embedding backward");
    free(got);
    tensor_free(&ti);
    tensor_free(&tg);
    tensor_free(&tt);
    free(ids), free(dout), free(table), free(want);
}
END_TEST

/* ---- (3) bad arguments ---- */
static void expect_refusal(attamba_status got, attamba_status want, const char *op, const char *detail) {
    rt_ctx *ctx = tu_ctx();
    ck_assert_msg(got == want, "%s: got %s, expected %s (%s)", op, attamba_status_str(got),
                  attamba_status_str(want), ctx->err);
    ck_assert_msg(strstr(ctx->err, op) != NULL, "message '%s' does not name %s", ctx->err, op);
    if (detail) ck_assert_msg(strstr(ctx->err, detail) != NULL, "message '%s' lacks '%s'", ctx->err, detail);
}

START_TEST(bad_arguments_are_refused_with_a_message) {
    rt_ctx *ctx = tu_ctx();
    int64_t s34[2] = {3, 4}, s35[2] = {3, 5}, c4 = 4, c5 = 5;
    tensor x = tu_zeros(2, s34), x2 = tu_zeros(2, s34), y = tu_zeros(2, s35), w4 = tu_zeros(1, &c4);
    tensor w5 = tu_zeros(1, &c5), dx = tu_zeros(2, s34), dz = tu_zeros(2, s34), empty = {0}, xt, shifted;
    tu_ok(tensor_transpose(&y, 0, 1, &xt));
    const char *rn = "ops_rmsnorm_backward", *gn = "ops_gated_rmsnorm_backward";

    /* norms: weight width, dout/dx/dw shapes, strided, eps, empty, overlaps */
    expect_refusal(ops_rmsnorm_backward(ctx, &x, &w5, 1e-5f, &x2, &dx, NULL), ATTAMBA_ERR_SHAPE, rn, "w must be");
    expect_refusal(ops_rmsnorm_backward(ctx, &x, &w4, 1e-5f, &y, &dx, NULL), ATTAMBA_ERR_SHAPE, rn, "dout must be");
    expect_refusal(ops_rmsnorm_backward(ctx, &x, &w4, 1e-5f, &x2, &y, NULL), ATTAMBA_ERR_SHAPE, rn, "dx must be");
    expect_refusal(ops_rmsnorm_backward(ctx, &x, &w4, 1e-5f, &x2, &dx, &w5), ATTAMBA_ERR_SHAPE, rn, "dw must be");
    expect_refusal(ops_rmsnorm_backward(ctx, &xt, &w4, 1e-5f, &xt, NULL, NULL), ATTAMBA_ERR_SHAPE, rn, "strided");
    expect_refusal(ops_rmsnorm_backward(ctx, &x, &w4, -1.0f, &x2, &dx, NULL), ATTAMBA_ERR_INVALID_ARG, rn, "eps");
    expect_refusal(ops_rmsnorm_backward(ctx, &x, &w4, INFINITY, &x2, &dx, NULL), ATTAMBA_ERR_INVALID_ARG, rn, "eps");
    expect_refusal(ops_rmsnorm_backward(ctx, &empty, &w4, 1e-5f, &x2, &dx, NULL), ATTAMBA_ERR_INVALID_ARG, rn,
                   "empty");
    expect_refusal(ops_rmsnorm_backward(ctx, &x, &w4, 1e-5f, &x2, &dx, &empty), ATTAMBA_ERR_INVALID_ARG, rn,
                   "empty");
    /* dx one element off from x: a partial overlap */
    tensor big = tu_zeros(1, ((int64_t[]){13})), flat_x, flat_dx, base;
    tu_ok(tensor_slice(&big, 0, 0, 12, &flat_x));
    tu_ok(tensor_slice(&big, 0, 1, 12, &flat_dx));
    tu_ok(tensor_reshape(&flat_x, 2, s34, &base));
    tu_ok(tensor_reshape(&flat_dx, 2, s34, &shifted));
    expect_refusal(ops_rmsnorm_backward(ctx, &base, &w4, 1e-5f, &x, &shifted, NULL), ATTAMBA_ERR_INVALID_ARG, rn,
                   "dx overlaps x without being the same elements");
    expect_refusal(ops_rmsnorm_backward(ctx, &x, &w4, 1e-5f, &x2, &dx, &w4), ATTAMBA_ERR_INVALID_ARG, rn,
                   "dw overlaps w");
    expect_refusal(ops_gated_rmsnorm_backward(ctx, &x, &y, &w4, 1e-5f, &x2, &dx, &dz, NULL), ATTAMBA_ERR_SHAPE,
                   gn, "z must be");
    expect_refusal(ops_gated_rmsnorm_backward(ctx, &x, &x2, &w4, 1e-5f, &x2, &dx, &dx, NULL),
                   ATTAMBA_ERR_INVALID_ARG, gn, "dy overlaps dz");
    expect_refusal(ops_gated_rmsnorm_backward(ctx, &x, &x2, &w4, 1e-5f, &x2, &dx, &y, NULL), ATTAMBA_ERR_SHAPE,
                   gn, "dz must be");
    expect_refusal(ops_gated_rmsnorm_backward(ctx, &x, &x2, &w4, NAN, &x2, &dx, &dz, NULL),
                   ATTAMBA_ERR_INVALID_ARG, gn, "eps");

    /* RoPE: odd dh, heads not dividing, 2-D, pos0 dtype and length, theta, heads */
    tensor q6 = tu_zeros(3, ((int64_t[]){2, 3, 6})), q8 = tu_zeros(3, ((int64_t[]){2, 3, 8})), pos, pos3;
    tu_ok(tensor_alloc(ctx, &pos, TENSOR_I32, 1, ((int64_t[]){2})));
    tu_ok(tensor_fill(&pos, 0));
    tu_ok(tensor_alloc(ctx, &pos3, TENSOR_I32, 1, ((int64_t[]){3})));
    tensor posf = tu_zeros(1, ((int64_t[]){2}));
    const char *pn = "ops_rope_backward";
    expect_refusal(ops_rope_backward(ctx, &q6, 2, &pos, 10000.0f), ATTAMBA_ERR_SHAPE, pn, "even dh");
    expect_refusal(ops_rope_backward(ctx, &q8, 3, &pos, 10000.0f), ATTAMBA_ERR_SHAPE, pn, "even dh");
    expect_refusal(ops_rope_backward(ctx, &x, 1, &pos, 10000.0f), ATTAMBA_ERR_SHAPE, pn, "[B, T");
    expect_refusal(ops_rope_backward(ctx, &q8, 2, &posf, 10000.0f), ATTAMBA_ERR_SHAPE, pn, "i32");
    expect_refusal(ops_rope_backward(ctx, &q8, 2, &pos3, 10000.0f), ATTAMBA_ERR_SHAPE, pn, "pos0");
    expect_refusal(ops_rope_backward(ctx, &q8, 2, &pos, -1.0f), ATTAMBA_ERR_INVALID_ARG, pn, "theta");
    expect_refusal(ops_rope_backward(ctx, &q8, 0, &pos, 10000.0f), ATTAMBA_ERR_INVALID_ARG, pn, "n_heads");
    expect_refusal(ops_rope_backward(ctx, &empty, 1, &pos, 10000.0f), ATTAMBA_ERR_INVALID_ARG, pn, "empty");

    /* SwiGLU, SiLU: shapes, dgate = dup, partial overlap */
    const char *sn = "ops_swiglu_backward", *ln = "ops_silu_backward";
    expect_refusal(ops_swiglu_backward(ctx, &x, &y, &x2, &dx, &dz), ATTAMBA_ERR_SHAPE, sn, "up must be");
    expect_refusal(ops_swiglu_backward(ctx, &x, &x2, &y, &dx, &dz), ATTAMBA_ERR_SHAPE, sn, "dout must be");
    expect_refusal(ops_swiglu_backward(ctx, &x, &x2, &x2, &y, &dz), ATTAMBA_ERR_SHAPE, sn, "dgate must be");
    expect_refusal(ops_swiglu_backward(ctx, &x, &x2, &x2, &dx, &dx), ATTAMBA_ERR_INVALID_ARG, sn,
                   "dgate overlaps dup");
    expect_refusal(ops_silu_backward(ctx, &x, &y, &dx), ATTAMBA_ERR_SHAPE, ln, "dout must be");
    expect_refusal(ops_silu_backward(ctx, &x, &x2, &y), ATTAMBA_ERR_SHAPE, ln, "dx must be");
    expect_refusal(ops_silu_backward(ctx, &empty, &x2, &dx), ATTAMBA_ERR_INVALID_ARG, ln, "empty");

    /* embedding: ids out of range (both sides), NULL host ids, dtype, widths, 1-D ids */
    const char *en = "ops_embedding_backward";
    int64_t ids_shape[2] = {2, 3};
    int32_t good[6] = {0, 1, 2, 9, 9, 0}, neg[6] = {0, 1, -1, 2, 3, 4}, high[6] = {0, 1, 2, 3, 10, 4};
    tensor ids = tu_i32(2, ids_shape, good), ids_f = tu_zeros(2, ids_shape);
    tensor table = tu_zeros(2, ((int64_t[]){10, 4})), dout4 = tu_zeros(3, ((int64_t[]){2, 3, 4}));
    tensor dout5 = tu_zeros(3, ((int64_t[]){2, 3, 5}));
    float before[40], *after;
    tu_ok(tensor_fill(&table, 1.5));
    expect_refusal(ops_embedding_backward(ctx, &ids, neg, &dout4, &table), ATTAMBA_ERR_INVALID_ARG, en, "= -1");
    expect_refusal(ops_embedding_backward(ctx, &ids, high, &dout4, &table), ATTAMBA_ERR_INVALID_ARG, en,
                   "ids_host[4] = 10 is outside [0, 10)");
    after = tu_download(&table);
    for (int i = 0; i < 40; i++) before[i] = 1.5f;
    ck_assert_mem_eq(after, before, sizeof before); /* refused before anything ran */
    free(after);
    expect_refusal(ops_embedding_backward(ctx, &ids, NULL, &dout4, &table), ATTAMBA_ERR_INVALID_ARG, en,
                   "ids_host");
    expect_refusal(ops_embedding_backward(ctx, &ids_f, good, &dout4, &table), ATTAMBA_ERR_SHAPE, en, "i32");
    expect_refusal(ops_embedding_backward(ctx, &ids, good, &dout5, &table), ATTAMBA_ERR_SHAPE, en, "dout must be");
    expect_refusal(ops_embedding_backward(ctx, &pos, good, &dout4, &table), ATTAMBA_ERR_SHAPE, en, "[B, T]");
    expect_refusal(ops_embedding_backward(ctx, &ids, good, &dout4, &empty), ATTAMBA_ERR_INVALID_ARG, en, "dtable");
    expect_refusal(ops_embedding_backward(ctx, &ids, good, &dout4, &w4), ATTAMBA_ERR_SHAPE, en, "dtable must be");
    tu_ok(ops_embedding_backward(ctx, &ids, good, &dout4, &table)); /* the good ids do pass */

    tensor *all[] = {&x,  &x2,  &y,    &w4,   &w5,   &dx,  &dz,    &xt, &shifted, &base, &big,  &flat_x,
                     &flat_dx, &q6, &q8, &pos, &pos3, &posf, &ids, &ids_f, &table, &dout4, &dout5};
    for (size_t i = 0; i < CORE_LEN(all); i++) tensor_free(all[i]);
}
END_TEST

int main(void) {
    Suite *s = suite_create("layer_backward");
    TCase *t = tcase_create("layer_backward");
    tcase_add_loop_test(t, ref_norm_backwards_match_finite_differences, 0, (int)CORE_LEN(fd_norm_cases));
    tcase_add_test(t, ref_rope_swiglu_silu_embedding_backwards_match_finite_differences);
    tcase_add_loop_test(t, norm_backwards_match_reference_on_awkward_shapes, 0, N_ROWS * N_WIDTHS);
    tcase_add_loop_test(t, norm_weight_gradients_accumulate_into_views_reproducibly, 0, 2);
    tcase_add_test(t, norm_input_gradients_may_overwrite_inputs);
    tcase_add_test(t, norm_backwards_are_finite_on_zero_rows);
    tcase_add_loop_test(t, rope_backward_matches_reference, 0, (int)CORE_LEN(rope_cases));
    tcase_add_loop_test(t, rope_backward_undoes_rope_forward, 0, (int)CORE_LEN(rope_cases));
    tcase_add_loop_test(t, swiglu_and_silu_backwards_match_reference, 0, N_ROWS * N_WIDTHS);
    tcase_add_test(t, swiglu_and_silu_backwards_work_in_place);
    tcase_add_loop_test(t, embedding_backward_sums_repeated_ids_and_leaves_unused_rows, 0, 3);
    tcase_add_test(t, embedding_backward_matches_reference_on_random_data);
    tcase_add_test(t, bad_arguments_are_refused_with_a_message);
    suite_add_tcase(s, t);
    return tu_run(s);
}
