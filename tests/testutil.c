#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/kv_cache.h"
#include "ref/ref_attention.h"
#include "tensor/quant.h"
#include "testutil.h"

/* The suite's context, made on first use. tu_run destroys it after the run, while the driver is
 * whole: an atexit handler registered here would run after destructors the driver registers later
 * (Oclgrind's LLVM state; rusticl's JIT threads), and releasing into a torn-down driver crashed or
 * hung there. A forked test's process leaves it to the exit. */
static rt_ctx *the_ctx;

rt_ctx *tu_ctx(void) {
    if (!the_ctx) {
        char err[1024];
        attamba_status s = attamba_context_create(NULL, &the_ctx, err, sizeof err);
        ck_assert_msg(s == ATTAMBA_OK, "cannot open the test device: %s", err);
    }
    return the_ctx;
}

void tu_fill_uniform(float *x, int64_t n, uint64_t seed, float lo, float hi) {
    core_rng r;
    core_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * core_rng_uniform(&r);
}

float *tu_random(int64_t n, uint64_t seed, float lo, float hi) {
    float *x = malloc((size_t)(n ? n : 1) * sizeof *x);
    ck_assert_ptr_nonnull(x);
    tu_fill_uniform(x, n, seed, lo, hi);
    return x;
}

tensor tu_tensor(int ndim, const int64_t *shape, const float *host) {
    tensor t;
    tu_ok(tensor_alloc_f32(tu_ctx(), &t, ndim, shape));
    tu_ok(tensor_upload(&t, host));
    return t;
}

tensor tu_i32(int ndim, const int64_t *shape, const int32_t *host) {
    tensor t;
    tu_ok(tensor_alloc(tu_ctx(), &t, TENSOR_I32, ndim, shape));
    tu_ok(tensor_upload(&t, host));
    return t;
}

tensor tu_zeros(int ndim, const int64_t *shape) {
    tensor t;
    tu_ok(tensor_alloc_f32(tu_ctx(), &t, ndim, shape));
    tu_ok(tensor_fill(&t, 0.0));
    return t;
}

tensor tu_weight(tensor_dtype t, int64_t rows, int64_t K, uint64_t seed, float **vals) {
    float *w = tu_random(rows * K, seed, -1, 1);
    tensor out;
    if (t == TENSOR_F32) {
        out = tu_tensor(2, ((int64_t[]){rows, K}), w);
    } else {
        void *q = malloc(quant_bytes(t, rows * K));
        quant_encode(t, w, rows * K, q);
        quant_decode(t, q, rows * K, w);
        tu_ok(tensor_alloc(tu_ctx(), &out, t, 2, ((int64_t[]){rows, t == TENSOR_Q8 ? K / TENSOR_Q8_BLOCK : K})));
        tu_ok(tensor_upload(&out, q));
        free(q);
    }
    *vals = w;
    return out;
}

float *tu_download(const tensor *t) {
    int64_t n = tensor_numel(t);
    float *x = malloc((size_t)n * tensor_dtype_size(t->dtype));
    ck_assert_ptr_nonnull(x);
    tu_ok(tensor_download(t, x));
    return x;
}

void tu_assert_close_at(const float *got, const float *want, int64_t n, double rtol, double atol,
                        const char *what, const char *file, int line) {
    int64_t worst = -1;
    double worst_excess = 0;
    for (int64_t i = 0; i < n; i++) {
        double g = got[i], w = want[i], tol = atol + rtol * fabs(w);
        double excess = isnan(g) != isnan(w) ? INFINITY : (isnan(g) ? 0 : fabs(g - w) - tol);
        if (excess > 0 && excess > worst_excess) {
            worst_excess = excess;
            worst = i;
        }
    }
    if (worst >= 0)
        ck_abort_msg("%s:%d: %s: element %lld is %.8g, expected %.8g (rtol %.1e, atol %.1e)", file, line, what,
                     (long long)worst, got[worst], want[worst], rtol, atol);
}

tu_bset tu_bset_make(const boundary_spec *spec, int layer, int n_layers, int T) {
    tu_bset s = {0};
    int64_t n = boundary_positions(spec, layer, n_layers, T, NULL, 0);
    ck_assert_int_ge(n, 1);
    s.pos = malloc((size_t)n * sizeof *s.pos);
    s.flags = malloc((size_t)T);
    int32_t *h = s.pos32 = malloc((size_t)n * sizeof *h);
    ck_assert(s.pos && s.flags && h);
    ck_assert_int_eq(boundary_positions(spec, layer, n_layers, T, s.pos, n), n);
    s.n = (int)n;
    ref_boundary_flags(T, s.pos, n, s.flags);
    for (int i = 0; i < s.n; i++) h[i] = (int32_t)s.pos[i];
    tu_ok(tensor_alloc(tu_ctx(), &s.t, TENSOR_I32, 1, (int64_t[]){n}));
    tu_ok(tensor_upload(&s.t, h));
    return s;
}

void tu_bset_free(tu_bset *s) {
    free(s->pos);
    free(s->pos32);
    free(s->flags);
    tensor_free(&s->t);
}

int tu_run(Suite *s) {
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    attamba_context_destroy(the_ctx);
    the_ctx = NULL;
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

char *tu_slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(fread(s, 1, (size_t)n, f), n);
    s[n] = 0;
    fclose(f);
    return s;
}

const char *const tu_golden_cases[] = {"attamba_cyclic",  "attamba_explicit_tied", "attamba_long_chunk",
                                       "attamba_pseudo",  "attamba_random_noconv", "attamba_uniform_gqa_groups",
                                       "transformer_gqa", "transformer_swa"};
const int tu_n_golden_cases = (int)(sizeof tu_golden_cases / sizeof tu_golden_cases[0]);

const char *tu_corpus_path(void) {
    static char path[64];
    if (path[0]) return path;
    strcpy(path, "/tmp/attamba-corpus-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "w");
    static const char *lines[] = {"the cat sat on the mat. ", "a dog ran in the park. ", "the sun is warm today. ",
                                  "we read a book at night. "};
    for (int i = 0; i < 400; i++) fputs(lines[(i * 7) % 4], f);
    fclose(f);
    return path;
}

char *tu_temp_dir(void) {
    char tmpl[] = "/tmp/attamba-test-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    return strdup(tmpl);
}

void tu_remove_dir(char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    free(dir);
}

attamba_context *tu_api_context(void) {
    attamba_context *ctx;
    char err[1024];
    attamba_status s = attamba_context_create(NULL, &ctx, err, sizeof err);
    ck_assert_msg(s == ATTAMBA_OK, "cannot open the test device: %s", err);
    return ctx;
}

int tu_read_losses(const char *out, double *loss, int cap) {
    char path[512];
    snprintf(path, sizeof path, "%s/metrics.jsonl", out);
    char *text = tu_slurp(path);
    int n = 0;
    for (char *line = strtok(text, "\n"); line && n < cap; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *l = cJSON_GetObjectItem(j, "loss");
        if (cJSON_IsNumber(l)) loss[n++] = l->valuedouble;
        cJSON_Delete(j);
    }
    free(text);
    return n;
}

void tu_check_decode_matches_prefill(model *m, int T, int n0, const char *what) {
    int32_t *tok = malloc((size_t)T * sizeof *tok);
    core_rng r;
    core_rng_seed(&r, 11);
    for (int t = 0; t < T; t++) tok[t] = (int32_t)(core_rng_next(&r) % (uint64_t)m->cfg.vocab_size);
    tensor full;
    tu_ok(model_forward(m, tok, 1, T, &full));
    float *want = tu_download(&full);
    kv_cache *c;
    tu_ok(kv_cache_create(m, 1, T, TENSOR_F32, &c));
    int V = m->cfg.vocab_size;
    tensor pre;
    tu_ok(model_prefill(m, c, 0, tok, n0, &pre));
    float *got = tu_download(&pre);
    char msg[160];
    snprintf(msg, sizeof msg, "%s: prefill of %d", what, n0);
    tu_assert_close(got, want, (int64_t)n0 * V, 1e-4, 1e-4, msg);
    free(got);
    tensor_free(&pre);
    for (int t = n0; t < T; t++) {
        tensor lg;
        tu_ok(model_decode_step(m, c, &tok[t], &lg));
        got = tu_download(&lg);
        snprintf(msg, sizeof msg, "%s: decode at position %d", what, t);
        tu_assert_close(got, want + (int64_t)t * V, V, 1e-4, 1e-4, msg);
        free(got);
        tensor_free(&lg);
    }
    /* SPEC 4: cache bytes */
    model_config cc = m->cfg;
    ck_assert_int_eq(kv_cache_bytes_used(c, 0), model_config_cache_bytes(&cc, T, (int)tensor_dtype_size(c->layers[0].kb.dtype)));
    kv_cache_destroy(c);
    tensor_free(&full);
    free(want);
    free(tok);
}

rt_device tu_fake_device(int platform, int device, attamba_device_type type) {
    rt_device r;
    memset(&r, 0, sizeof r);
    r.info.platform_index = platform;
    r.info.device_index = device;
    r.info.type = type;
    return r;
}
