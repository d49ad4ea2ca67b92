/* The public API alone (include/attamba/attamba.h), as a program linking libattamba would use it:
 * load a golden model, compare its logits with PyTorch's, decode with a session (one sequence, and a
 * batch against the sequences alone) and compare with the forward pass, the tokenizer and the
 * sampler, train (the loss falls, a checkpoint resumes exactly), and get clear errors for bad input. */
#include <check.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apiutil.h"

START_TEST(session_decoding_matches_the_forward_pass) {
    attamba_context *ctx = tu_api_context();
    attamba_model *m;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/attamba_cyclic", GOLDEN_DIR);
    ck_assert_msg(attamba_model_load(ctx, dir, &m) == ATTAMBA_OK, "%s", attamba_context_last_error(ctx));
    int V = attamba_model_vocab_size(m), T = 15;
    int32_t tok[15];
    for (int t = 0; t < T; t++) tok[t] = (t * 13 + 2) % V;
    float *full = malloc((size_t)T * V * sizeof *full), *step = malloc((size_t)V * sizeof *step);
    ck_assert_int_eq(attamba_model_forward(m, tok, 1, T, full), ATTAMBA_OK);
    attamba_session *s;
    ck_assert_int_eq(attamba_session_create(m, 64, &s), ATTAMBA_OK);
    ck_assert_int_eq(attamba_session_feed(s, tok, 6, step), ATTAMBA_OK); /* prefill */
    for (int v = 0; v < V; v++) ck_assert_msg(fabsf(step[v] - full[5 * V + v]) < 1e-4f, "prefill logit %d", v);
    for (int t = 6; t < T; t++) {
        ck_assert_int_eq(attamba_session_feed(s, &tok[t], 1, step), ATTAMBA_OK);
        for (int v = 0; v < V; v++)
            ck_assert_msg(fabsf(step[v] - full[(size_t)t * V + v]) < 1e-4f, "position %d logit %d", t, v);
    }
    ck_assert_int_eq(attamba_session_position(s, 0), T);
    ck_assert_int_gt(attamba_session_cache_bytes(s, 0), 0);
    ck_assert_int_eq(attamba_model_set_attention(m, 2, 1, "uniform"), ATTAMBA_ERR_INVALID_ARG); /* s is open */
    ck_assert_ptr_nonnull(strstr(attamba_context_last_error(ctx), "destroy them first"));
    attamba_session_destroy(s);
    ck_assert_int_eq(attamba_model_set_attention(m, 2, 1, "uniform"), ATTAMBA_OK);
    ck_assert_int_eq(attamba_model_set_attention(m, -1, -1, "nonsense"), ATTAMBA_ERR_INVALID_ARG);
    int32_t bad = V;
    ck_assert_int_eq(attamba_model_forward(m, &bad, 1, 1, full), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(attamba_context_last_error(ctx), "outside"));
    attamba_model_destroy(m);
    free(full);
    free(step);
    ck_assert_int_eq(attamba_model_load(ctx, "/nonexistent", &m), ATTAMBA_ERR_IO);
    ck_assert_ptr_nonnull(strstr(attamba_context_last_error(ctx), "/nonexistent"));
    uint64_t cur;
    attamba_context_memory(ctx, &cur, NULL);
    ck_assert_uint_eq(cur, 0);
    attamba_context_destroy(ctx);
}
END_TEST

static attamba_model *load_golden(attamba_context *ctx, const char *name) {
    attamba_model *m;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", GOLDEN_DIR, name);
    ck_assert_msg(attamba_model_load(ctx, dir, &m) == ATTAMBA_OK, "%s", attamba_context_last_error(ctx));
    return m;
}

/* A session with an f16 store decodes (prompt, then steps past several boundaries; a batch of two)
 * within f16 rounding of the forward pass and holds fewer bytes than an f32 one; bad parameters are
 * refused with a message. */
static void check_f16_cache(const char *name, float tol) {
    attamba_context *ctx = tu_api_context();
    attamba_model *m = load_golden(ctx, name);
    int V = attamba_model_vocab_size(m), T = 21;
    int32_t tok[21];
    for (int t = 0; t < T; t++) tok[t] = (t * 11 + 5) % V;
    float *full = malloc((size_t)T * V * sizeof *full), *step = malloc((size_t)2 * V * sizeof *step);
    ck_assert_int_eq(attamba_model_forward(m, tok, 1, T, full), ATTAMBA_OK);
    attamba_session_params p = attamba_session_params_default(32);
    p.cache_type = ATTAMBA_CACHE_F16;
    p.n_seq = 2;
    attamba_session *s, *s32;
    ck_assert_msg(attamba_session_create_with(m, &p, &s) == ATTAMBA_OK, "%s", attamba_context_last_error(ctx));
    ck_assert_int_eq(attamba_session_create_batch(m, 2, 32, &s32), ATTAMBA_OK);
    double worst = 0;
    for (int i = 0; i < 2; i++) { /* sequence 1 starts 3 tokens later */
        ck_assert_int_eq(attamba_session_prefill(s, i, tok, 4 + 3 * i, step), ATTAMBA_OK);
        ck_assert_int_eq(attamba_session_prefill(s32, i, tok, 4 + 3 * i, NULL), ATTAMBA_OK);
    }
    for (int t = 4; t + 3 < T; t++) {
        int32_t next[2] = {tok[t], tok[t + 3]};
        ck_assert_int_eq(attamba_session_step(s, next, step), ATTAMBA_OK);
        ck_assert_int_eq(attamba_session_step(s32, next, NULL), ATTAMBA_OK);
        for (int i = 0; i < 2; i++)
            for (int v = 0; v < V; v++) {
                double e = fabs(step[(size_t)i * V + v] - full[(size_t)(t + 3 * i) * V + v]);
                worst = e > worst ? e : worst;
            }
    }
    ck_assert_msg(worst < tol, "%s: f16 cache logits %.3g from the forward pass (tolerance %.3g)", name, worst, tol);
    /* the estimate from the config alone is what each session holds */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", GOLDEN_DIR, name);
    attamba_config *cfg;
    ck_assert_int_eq(attamba_config_load(dir, &cfg, NULL, 0), ATTAMBA_OK);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_lt(attamba_session_cache_bytes(s, i), attamba_session_cache_bytes(s32, i));
        int64_t tokens = 4 + 3 * i + (T - 7);
        attamba_config_cost c16, c32;
        attamba_config_estimate_with(cfg, tokens, ATTAMBA_CACHE_F16, &c16);
        attamba_config_estimate(cfg, tokens, &c32);
        ck_assert_int_eq(attamba_session_cache_bytes(s, i), c16.cache_bytes);
        ck_assert_int_eq(attamba_session_cache_bytes(s32, i), c32.cache_bytes);
    }
    attamba_config_destroy(cfg);
    attamba_session_destroy(s);
    attamba_session_destroy(s32);
    p.cache_type = (attamba_cache_type)7;
    ck_assert_int_eq(attamba_session_create_with(m, &p, &s), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(attamba_context_last_error(ctx), "cache_type"));
    p.cache_type = ATTAMBA_CACHE_F16;
    p.n_seq = 0;
    ck_assert_int_eq(attamba_session_create_with(m, &p, &s), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(attamba_context_last_error(ctx), "n_seq"));
    attamba_model_destroy(m);
    free(full);
    free(step);
    attamba_context_destroy(ctx);
}

START_TEST(an_f16_cache_decodes_within_rounding) {
    check_f16_cache("attamba_cyclic", 5e-3f); /* measured 1.3e-3 */
    check_f16_cache("transformer_gqa", 5e-3f); /* 1.8e-3; f32 caches agree to 1e-4 */
}
END_TEST

static int32_t argmax(const float *x, int V) {
    int32_t best = 0;
    for (int v = 1; v < V; v++)
        if (x[v] > x[best]) best = v;
    return best;
}

/* Sequences of different lengths decoded together give each the logits (and greedy tokens) it gets
 * alone, also after one is reset and given a new prompt mid-way. */
static void check_batch(const char *name) {
    enum { NS = 3, STEPS = 7, RESET_AT = 3 };
    attamba_context *ctx = tu_api_context();
    attamba_model *m = load_golden(ctx, name);
    int V = attamba_model_vocab_size(m);
    const int len[NS] = {5, 11, 1}, len2 = 6; /* sequence 1 gets a prompt of len2 after RESET_AT steps */
    int32_t prompt[NS][16], prompt2[16];
    for (int i = 0; i < NS; i++)
        for (int t = 0; t < len[i]; t++) prompt[i][t] = (t * (7 + 2 * i) + 3 * i + 1) % V;
    for (int t = 0; t < len2; t++) prompt2[t] = (t * 5 + 2) % V;
    /* alone: each sequence's logits after every step, greedy; pre2: sequence 1's after prompt2 */
    float *alone = malloc((size_t)NS * (STEPS + 1) * V * sizeof *alone), *pre2 = malloc((size_t)V * sizeof *pre2);
    for (int i = 0; i < NS; i++) {
        attamba_session *s;
        ck_assert_int_eq(attamba_session_create(m, 64, &s), ATTAMBA_OK);
        float *row = alone + (size_t)i * (STEPS + 1) * V;
        ck_assert_int_eq(attamba_session_feed(s, prompt[i], len[i], row), ATTAMBA_OK);
        for (int k = 1; k <= STEPS; k++) {
            const float *prev = row + (size_t)(k - 1) * V;
            if (i == 1 && k == RESET_AT + 1) { /* the new prompt replaces the old sequence */
                attamba_session_destroy(s);
                ck_assert_int_eq(attamba_session_create(m, 64, &s), ATTAMBA_OK);
                ck_assert_int_eq(attamba_session_feed(s, prompt2, len2, pre2), ATTAMBA_OK);
                prev = pre2;
            }
            int32_t next = argmax(prev, V);
            ck_assert_int_eq(attamba_session_feed(s, &next, 1, row + (size_t)k * V), ATTAMBA_OK);
        }
        attamba_session_destroy(s);
    }
    /* together */
    attamba_session *b;
    ck_assert_int_eq(attamba_session_create_batch(m, NS, 64, &b), ATTAMBA_OK);
    ck_assert_int_eq(attamba_session_sequences(b), NS);
    float *got = malloc((size_t)NS * V * sizeof *got), *one = malloc((size_t)V * sizeof *one);
    for (int i = 0; i < NS; i++) {
        ck_assert_int_eq(attamba_session_prefill(b, i, prompt[i], len[i], one), ATTAMBA_OK);
        for (int v = 0; v < V; v++) ck_assert_msg(fabsf(one[v] - alone[(size_t)i * (STEPS + 1) * V + v]) < 1e-4f,
                                                  "%s: prefill of sequence %d, logit %d", name, i, v);
    }
    ck_assert_int_eq(attamba_session_prefill(b, 0, prompt[0], 1, NULL), ATTAMBA_ERR_INVALID_ARG); /* not empty */
    ck_assert_ptr_nonnull(strstr(attamba_context_last_error(ctx), "not empty"));
    ck_assert_int_eq(attamba_session_prefill(b, NS, prompt[0], 1, NULL), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_int_eq(attamba_session_feed(b, prompt[0], 1, NULL), ATTAMBA_ERR_INVALID_ARG);
    int32_t tok[NS];
    for (int k = 1; k <= STEPS; k++) {
        for (int i = 0; i < NS; i++) tok[i] = argmax(alone + ((size_t)i * (STEPS + 1) + k - 1) * V, V);
        if (k == RESET_AT + 1) { /* sequence 1 starts over with prompt2 */
            ck_assert_int_eq(attamba_session_reset(b, 1), ATTAMBA_OK);
            ck_assert_int_eq(attamba_session_position(b, 1), 0);
            ck_assert_int_eq(attamba_session_prefill(b, 1, prompt2, len2, one), ATTAMBA_OK);
            for (int v = 0; v < V; v++) ck_assert_msg(fabsf(one[v] - pre2[v]) < 1e-4f, "%s: new prompt", name);
            tok[1] = argmax(one, V);
        }
        ck_assert_int_eq(attamba_session_step(b, tok, got), ATTAMBA_OK);
        for (int i = 0; i < NS; i++) {
            const float *want = alone + ((size_t)i * (STEPS + 1) + k) * V;
            const float *have = got + (size_t)i * V;
            for (int v = 0; v < V; v++)
                ck_assert_msg(fabsf(have[v] - want[v]) < 1e-4f, "%s: step %d, sequence %d, logit %d: %g vs %g", name,
                              k, i, v, (double)have[v], (double)want[v]);
        }
    }
    ck_assert_int_eq(attamba_session_position(b, 0), len[0] + STEPS);
    ck_assert_int_eq(attamba_session_position(b, NS), -1);
    ck_assert_int_gt(attamba_session_cache_bytes(b, 2), 0);
    attamba_session_destroy(b);
    attamba_model_destroy(m);
    attamba_context_destroy(ctx);
    free(alone), free(pre2), free(got), free(one);
}

/* Sequences given ATTAMBA_TOKEN_SKIP stay where they are: each sequence's logits at its own steps
 * equal those of the same tokens fed alone, whatever the others did. */
static void check_skips(const char *name) {
    enum { NS = 3, STEPS = 6 };
    static const int skip[NS][STEPS] = {{0, 1, 1, 0, 0, 1}, {0, 0, 0, 0, 0, 0}, {1, 0, 0, 0, 1, 1}};
    attamba_context *ctx = tu_api_context();
    attamba_model *m = load_golden(ctx, name);
    int V = attamba_model_vocab_size(m);
    const int len[NS] = {5, 8, 3};
    attamba_session *alone[NS], *b;
    float *want = malloc((size_t)V * sizeof *want), *got = malloc((size_t)NS * V * sizeof *got);
    float *last = malloc((size_t)NS * V * sizeof *last);
    ck_assert_int_eq(attamba_session_create_batch(m, NS, 32, &b), ATTAMBA_OK);
    for (int i = 0; i < NS; i++) {
        int32_t prompt[8];
        for (int t = 0; t < len[i]; t++) prompt[t] = (t * (5 + i) + 2 * i + 1) % V;
        ck_assert_int_eq(attamba_session_create(m, 32, &alone[i]), ATTAMBA_OK);
        ck_assert_int_eq(attamba_session_feed(alone[i], prompt, len[i], want), ATTAMBA_OK);
        ck_assert_int_eq(attamba_session_prefill(b, i, prompt, len[i], last + (size_t)i * V), ATTAMBA_OK);
    }
    for (int k = 0; k < STEPS; k++) {
        int32_t tok[NS];
        for (int i = 0; i < NS; i++) tok[i] = skip[i][k] ? ATTAMBA_TOKEN_SKIP : argmax(last + (size_t)i * V, V);
        ck_assert_int_eq(attamba_session_step(b, tok, got), ATTAMBA_OK);
        for (int i = 0; i < NS; i++) {
            if (skip[i][k]) continue;
            ck_assert_int_eq(attamba_session_feed(alone[i], &tok[i], 1, want), ATTAMBA_OK);
            for (int v = 0; v < V; v++)
                ck_assert_msg(fabsf(got[(size_t)i * V + v] - want[v]) < 1e-4f, "%s: step %d, sequence %d, logit %d",
                              name, k, i, v);
            memcpy(last + (size_t)i * V, want, (size_t)V * sizeof *want);
        }
    }
    for (int i = 0; i < NS; i++) {
        int ran = 0;
        for (int k = 0; k < STEPS; k++) ran += !skip[i][k];
        ck_assert_int_eq(attamba_session_position(b, i), len[i] + ran);
        ck_assert_int_eq(attamba_session_cache_bytes(b, i), attamba_session_cache_bytes(alone[i], 0));
        attamba_session_destroy(alone[i]);
    }
    int32_t bad[NS] = {ATTAMBA_TOKEN_SKIP, -2, 0};
    ck_assert_int_eq(attamba_session_step(b, bad, NULL), ATTAMBA_ERR_INVALID_ARG);
    attamba_session_destroy(b);
    attamba_model_destroy(m);
    attamba_context_destroy(ctx);
    free(want), free(got), free(last);
}

/* attamba_session_step_sample draws what attamba_session_step's logits and attamba_sampler_sample draw
 * with twin samplers, step after step on the drawn tokens: greedy (the argmax on the device), a seeded
 * temperature draw and a greedy one with a repetition penalty (both on the host, the penalty once it
 * has a history), a NULL sampler and a skipped sequence (no token). With greedy samplers only, a step
 * reads back once (the tokens, not the logits). */
static void check_step_sample(const char *name) {
    enum { NS = 4, STEPS = 8 };
    attamba_context *ctx = tu_api_context();
    attamba_model *m = load_golden(ctx, name);
    int V = attamba_model_vocab_size(m);
    attamba_session *a, *b;
    ck_assert_int_eq(attamba_session_create_batch(m, NS, 32, &a), ATTAMBA_OK);
    ck_assert_int_eq(attamba_session_create_batch(m, NS, 32, &b), ATTAMBA_OK);
    attamba_sampler *sa[NS] = {0}, *sb[NS] = {0};
    for (int i = 0; i < 3; i++) {
        attamba_sampler_params p = attamba_sampler_params_default();
        p.temperature = i == 1 ? 0.9f : 0.0f, p.seed = 7, p.repeat_penalty = i == 2 ? 1.3f : 1.0f;
        ck_assert_int_eq(attamba_sampler_create(ctx, &p, &sa[i]), ATTAMBA_OK);
        ck_assert_int_eq(attamba_sampler_create(ctx, &p, &sb[i]), ATTAMBA_OK);
    }
    float *logits = malloc((size_t)NS * V * sizeof *logits);
    int32_t ta[NS], tb[NS];
    for (int i = 0; i < NS; i++) {
        int32_t prompt[4];
        for (int t = 0; t < 4; t++) prompt[t] = (t * (3 + i) + i + 1) % V;
        ck_assert_int_eq(attamba_session_prefill(a, i, prompt, 4, NULL), ATTAMBA_OK);
        ck_assert_int_eq(attamba_session_prefill(b, i, prompt, 4, NULL), ATTAMBA_OK);
        ta[i] = tb[i] = prompt[3];
    }
    for (int k = 0; k < STEPS; k++) {
        ta[3] = tb[3] = k % 2 ? ATTAMBA_TOKEN_SKIP : k % V; /* no sampler: the caller picks its tokens */
        int32_t na[NS], nb[NS];
        attamba_counters c0, c1;
        attamba_context_counters(ctx, &c0);
        ck_assert_int_eq(attamba_session_step_sample(a, ta, sa, na), ATTAMBA_OK);
        attamba_context_counters(ctx, &c1);
        ck_assert_int_eq(attamba_session_step(b, tb, logits), ATTAMBA_OK);
        for (int i = 0; i < NS; i++) {
            nb[i] = ATTAMBA_TOKEN_SKIP;
            if (sb[i] && tb[i] != ATTAMBA_TOKEN_SKIP)
                ck_assert_int_eq(attamba_sampler_sample(sb[i], logits + (size_t)i * V, V, &nb[i]), ATTAMBA_OK);
            ck_assert_msg(na[i] == nb[i], "%s: step %d, sequence %d: %d, expected %d", name, k, i, na[i], nb[i]);
            if (i < 3) ta[i] = tb[i] = na[i];
        }
        /* reads: the argmax, then the temperature row, then the penalised row (once it has a history) */
        ck_assert_uint_eq(c1.blocking_reads - c0.blocking_reads, 2 + (k > 0));
    }
    attamba_sampler *greedy[NS] = {sa[0], sa[0], NULL, NULL};
    int32_t one[NS] = {1, 2, 3, ATTAMBA_TOKEN_SKIP}, got[NS];
    attamba_counters c0, c1;
    attamba_context_counters(ctx, &c0);
    ck_assert_int_eq(attamba_session_step_sample(a, one, greedy, got), ATTAMBA_OK);
    attamba_context_counters(ctx, &c1);
    ck_assert_uint_eq(c1.blocking_reads - c0.blocking_reads, 1);
    ck_assert_int_eq(got[2], ATTAMBA_TOKEN_SKIP);
    ck_assert_int_eq(got[3], ATTAMBA_TOKEN_SKIP);
    ck_assert_int_eq(attamba_session_step_sample(a, one, NULL, got), ATTAMBA_ERR_INVALID_ARG);
    for (int i = 0; i < 3; i++) attamba_sampler_destroy(sa[i]), attamba_sampler_destroy(sb[i]);
    attamba_session_destroy(a);
    attamba_session_destroy(b);
    attamba_model_destroy(m);
    attamba_context_destroy(ctx);
    free(logits);
}

START_TEST(step_sample_draws_as_the_host_sampler) {
    check_step_sample("attamba_cyclic");
    check_step_sample("transformer_gqa");
}
END_TEST

START_TEST(skipped_sequences_stay_where_they_are) {
    check_skips("attamba_cyclic");
    check_skips("transformer_gqa");
    check_skips("transformer_swa");
}
END_TEST

START_TEST(batched_sessions_match_sessions_alone) {
    check_batch("attamba_cyclic");
    check_batch("transformer_gqa");
}
END_TEST

/* Whether the JSON text has "key": value (any spacing), value given as its text. */
static int json_field_is(const char *json, const char *key, const char *value) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\"", key);
    const char *p = strstr(json, k);
    if (!p) return 0;
    p += strlen(k);
    while (*p == ' ' || *p == '\t' || *p == ':') p++;
    return !strncmp(p, value, strlen(value)) && !isalnum((unsigned char)p[strlen(value)]);
}

START_TEST(init_save_load_and_the_tokenizer) {
    attamba_context *ctx = tu_api_context();
    attamba_model *a, *b, *c;
    ck_assert_int_eq(attamba_model_init(ctx, "tiny", 5, &a), ATTAMBA_OK);
    ck_assert_int_eq(attamba_model_init(ctx, "tiny", 6, &c), ATTAMBA_OK);
    char *dir = tu_temp_dir();
    ck_assert_int_eq(attamba_model_save(a, dir), ATTAMBA_OK);
    ck_assert_int_eq(attamba_model_load(ctx, dir, &b), ATTAMBA_OK);
    int V = attamba_model_vocab_size(a), T = 9;
    int32_t tok[9];
    for (int t = 0; t < T; t++) tok[t] = (t * 31 + 7) % V;
    float *la = malloc((size_t)T * V * sizeof *la), *lb = malloc((size_t)T * V * sizeof *lb);
    float *lc = malloc((size_t)T * V * sizeof *lc);
    ck_assert_int_eq(attamba_model_forward(a, tok, 1, T, la), ATTAMBA_OK);
    ck_assert_int_eq(attamba_model_forward(b, tok, 1, T, lb), ATTAMBA_OK);
    ck_assert_int_eq(attamba_model_forward(c, tok, 1, T, lc), ATTAMBA_OK);
    ck_assert_int_eq(memcmp(la, lb, (size_t)T * V * sizeof *la), 0); /* saved and loaded bit for bit */
    const char *cfg = attamba_model_config(b);
    ck_assert_ptr_nonnull(cfg);
    ck_assert(json_field_is(cfg, "kind", "\"attamba\""));
    ck_assert(json_field_is(cfg, "vocab_size", "258"));
    ck_assert_int_eq(attamba_model_set_attention(b, 16, 3, NULL), ATTAMBA_OK);
    ck_assert(json_field_is(attamba_model_config(b), "chunk", "16"));
    ck_assert(json_field_is(attamba_model_config(b), "window", "3"));
    ck_assert_int_ne(memcmp(la, lc, (size_t)T * V * sizeof *la), 0); /* another seed, other weights */
    attamba_model *none = c;
    ck_assert_int_eq(attamba_model_init(ctx, "huge", 5, &none), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_null(none); /* a failed call leaves no model */
    ck_assert_ptr_nonnull(strstr(attamba_context_last_error(ctx), "unknown preset"));
    ck_assert_int_eq(attamba_model_init(ctx, "/nonexistent/config.json", 5, &none), ATTAMBA_ERR_IO);
    ck_assert_int_eq(attamba_model_init(ctx, "/nonexistent/conf", 5, &none), ATTAMBA_ERR_IO); /* a path all the same */

    const attamba_tokenizer *t;
    ck_assert_int_eq(attamba_model_tokenizer(a, &t), ATTAMBA_OK);
    ck_assert_int_eq(attamba_tokenizer_vocab_size(t), V);
    ck_assert_int_eq(attamba_tokenizer_bos(t), 256);
    ck_assert_int_eq(attamba_tokenizer_eos(t), 257);
    const char *text = "Caf\xc3\xa9 au lait\n";
    int64_t n;
    ck_assert_int_eq(attamba_tokenizer_encode(t, text, strlen(text), 1, NULL, 0, &n), ATTAMBA_OK); /* sizing */
    ck_assert_int_eq(n, (int64_t)strlen(text) + 1);
    int32_t ids[32], few[4];
    ck_assert_int_eq(attamba_tokenizer_encode(t, text, strlen(text), 1, ids, 32, &n), ATTAMBA_OK);
    ck_assert_int_eq(ids[0], 256);
    ck_assert_int_eq(ids[4], 0xc3);
    ck_assert_int_eq(attamba_tokenizer_encode(t, text, strlen(text), 1, few, 4, &n), ATTAMBA_OK); /* truncated */
    ck_assert_int_eq(n, (int64_t)strlen(text) + 1);
    ck_assert_int_eq(few[3], 'f');
    ids[n] = 257; /* EOS: no text */
    char out[64];
    size_t len;
    ck_assert_int_eq(attamba_tokenizer_decode(t, ids, n + 1, out, sizeof out, &len), ATTAMBA_OK);
    ck_assert_str_eq(out, text);
    ck_assert_int_eq(len, strlen(text));
    ck_assert_int_eq(attamba_tokenizer_decode(t, ids, n, out, 3, &len), ATTAMBA_OK); /* truncated, no NUL */
    ck_assert_int_eq(len, strlen(text));
    ck_assert_int_eq(memcmp(out, "Caf", 3), 0);
    ids[2] = V;
    ck_assert_int_eq(attamba_tokenizer_decode(t, ids, n, out, sizeof out, &len), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(attamba_context_last_error(ctx), "outside"));
    attamba_model *g = load_golden(ctx, "attamba_cyclic"); /* vocab 61: no byte tokenizer */
    ck_assert_int_eq(attamba_model_tokenizer(g, &t), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(attamba_context_last_error(ctx), "byte tokenizer"));
    attamba_model_destroy(g);
    attamba_model_destroy(a), attamba_model_destroy(b), attamba_model_destroy(c);
    attamba_context_destroy(ctx);
    free(la), free(lb), free(lc);
    tu_remove_dir(dir);
}
END_TEST

START_TEST(the_sampler) {
    attamba_context *ctx = tu_api_context();
    enum { V = 50 };
    float x[V];
    for (int v = 0; v < V; v++) x[v] = 0.1f * (float)((v * 17) % 53); /* distinct */
    int32_t top = argmax(x, V), tok, draws[2][40];
    attamba_sampler_params p = attamba_sampler_params_default();
    ck_assert(p.temperature > 0 && p.top_p == 1.0f && p.repeat_penalty == 1.0f && p.repeat_last_n == 64);
    attamba_sampler *s;
    /* the same seed draws the same tokens; reset starts them over; they are not all the argmax */
    p.seed = 11;
    ck_assert_int_eq(attamba_sampler_create(ctx, &p, &s), ATTAMBA_OK);
    int differ = 0;
    for (int r = 0; r < 2; r++) {
        for (int i = 0; i < 40; i++) ck_assert_int_eq(attamba_sampler_sample(s, x, V, &draws[r][i]), ATTAMBA_OK);
        attamba_sampler_reset(s);
    }
    for (int i = 0; i < 40; i++) {
        ck_assert_int_eq(draws[0][i], draws[1][i]);
        ck_assert(draws[0][i] >= 0 && draws[0][i] < V);
        differ += draws[0][i] != top;
    }
    ck_assert_int_gt(differ, 0);
    attamba_sampler_set_seed(s, 12); /* another seed: other draws; back to 11: the same again */
    for (int i = 0; i < 40; i++) ck_assert_int_eq(attamba_sampler_sample(s, x, V, &draws[1][i]), ATTAMBA_OK);
    ck_assert_int_ne(memcmp(draws[0], draws[1], sizeof draws[0]), 0);
    attamba_sampler_set_seed(s, 11);
    for (int i = 0; i < 40; i++) ck_assert_int_eq(attamba_sampler_sample(s, x, V, &draws[1][i]), ATTAMBA_OK);
    ck_assert_int_eq(memcmp(draws[0], draws[1], sizeof draws[0]), 0);
    attamba_sampler_destroy(s);
    /* greedy, min-p 1 and top-k 1 all give the argmax */
    for (int c = 0; c < 3; c++) {
        attamba_sampler_params q = attamba_sampler_params_default();
        if (c == 0) q.temperature = 0;
        if (c == 1) q.min_p = 1.0f;
        if (c == 2) q.top_k = 1;
        ck_assert_int_eq(attamba_sampler_create(ctx, &q, &s), ATTAMBA_OK);
        for (int i = 0; i < 5; i++) {
            ck_assert_int_eq(attamba_sampler_sample(s, x, V, &tok), ATTAMBA_OK);
            ck_assert_int_eq(tok, top);
        }
        attamba_sampler_destroy(s);
    }
    /* greedy with a penalty: a token once drawn (or accepted) loses to the runner-up */
    attamba_sampler_params g = attamba_sampler_params_default();
    g.temperature = 0, g.repeat_penalty = 100.0f, g.repeat_last_n = 4;
    ck_assert_int_eq(attamba_sampler_create(ctx, &g, &s), ATTAMBA_OK);
    ck_assert_int_eq(attamba_sampler_sample(s, x, V, &tok), ATTAMBA_OK);
    ck_assert_int_eq(tok, top);
    ck_assert_int_eq(attamba_sampler_sample(s, x, V, &tok), ATTAMBA_OK);
    ck_assert_int_ne(tok, top);
    attamba_sampler_reset(s);
    attamba_sampler_accept(s, top);
    ck_assert_int_eq(attamba_sampler_sample(s, x, V, &tok), ATTAMBA_OK);
    ck_assert_int_ne(tok, top);
    attamba_sampler_destroy(s);
    /* bad parameters and logits */
    attamba_sampler_params bad = attamba_sampler_params_default();
    bad.top_p = 0;
    ck_assert_int_eq(attamba_sampler_create(ctx, &bad, &s), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_null(s);
    bad = attamba_sampler_params_default(), bad.repeat_penalty = -1;
    ck_assert_int_eq(attamba_sampler_create(ctx, &bad, &s), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(attamba_context_last_error(ctx), "penalty"));
    ck_assert_int_eq(attamba_sampler_create(ctx, &p, &s), ATTAMBA_OK);
    x[3] = NAN;
    ck_assert_int_eq(attamba_sampler_sample(s, x, V, &tok), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(attamba_context_last_error(ctx), "finite"));
    ck_assert_int_eq(attamba_sampler_sample(s, x, 0, &tok), ATTAMBA_ERR_INVALID_ARG);
    attamba_sampler_destroy(s);
    attamba_context_destroy(ctx);
}
END_TEST

/* ---- training ---- */

enum { TB = 2, TT = 32, ACCUM = 2, WINDOW = TB * TT * ACCUM };

/* Windows of a repetitive text: row r starts at byte (r * 7) % len; targets are the next bytes. */
static void windows(int first_row, int rows, int32_t *tok, int32_t *tgt) {
    static const char text[] = "the cat sat on the mat. a dog ran in the park. the sun is warm today. ";
    const int len = (int)sizeof text - 1;
    for (int r = 0; r < rows; r++)
        for (int t = 0; t < TT; t++) {
            int at = ((first_row + r) * 7 + t) % len;
            tok[r * TT + t] = (unsigned char)text[at];
            tgt[r * TT + t] = (unsigned char)text[(at + 1) % len];
        }
}

START_TEST(training_lowers_the_loss_and_resumes_exactly) {
    attamba_context *ctx = tu_api_context();
    attamba_model *m;
    ck_assert_int_eq(attamba_model_init(ctx, "tiny", 1, &m), ATTAMBA_OK);
    attamba_train_params p = attamba_train_params_default(40);
    ck_assert_int_eq(p.batch, 8);
    p.batch = TB, p.seq = TT, p.accum = ACCUM, p.warmup = 2;
    attamba_trainer *tr;
    ck_assert_msg(attamba_trainer_create(m, &p, &tr) == ATTAMBA_OK, "%s", attamba_context_last_error(ctx));
    int32_t tok[WINDOW], tgt[WINDOW], vtok[4 * TT], vtgt[4 * TT];
    windows(1000, 4, vtok, vtgt);
    double before, after, first = 0;
    ck_assert_int_eq(attamba_trainer_evaluate(tr, vtok, vtgt, 4, &before), ATTAMBA_OK);
    ck_assert(before > 4.0); /* about ln 258 for a random model */
    attamba_train_stats st = {0};
    for (int s = 0; s < 30; s++) {
        windows(s * TB * ACCUM, TB * ACCUM, tok, tgt);
        ck_assert_msg(attamba_trainer_step(tr, tok, tgt, &st) == ATTAMBA_OK, "%s", attamba_context_last_error(ctx));
        if (s == 0) first = st.loss;
        ck_assert(isfinite(st.loss) && st.grad_norm > 0 && st.lr > 0);
    }
    ck_assert_int_eq(st.step, 30);
    ck_assert_int_eq(attamba_trainer_steps_done(tr), 30);
    ck_assert_msg(st.loss < 0.6 * first, "loss %g after 30 steps, %g at the first", st.loss, first);
    ck_assert_int_eq(attamba_trainer_evaluate(tr, vtok, vtgt, 4, &after), ATTAMBA_OK);
    ck_assert_msg(after < 0.6 * before, "held-out loss %g after, %g before", after, before);

    /* a checkpoint resumes exactly: the next step's loss, and the weights after it */
    char *dir = tu_temp_dir();
    ck_assert_int_eq(attamba_trainer_save(tr, dir), ATTAMBA_OK);
    attamba_model *m2;
    attamba_trainer *tr2;
    ck_assert_msg(attamba_trainer_load(ctx, dir, &m2, &tr2) == ATTAMBA_OK, "%s", attamba_context_last_error(ctx));
    ck_assert_int_eq(attamba_trainer_steps_done(tr2), 30);
    attamba_train_stats a, b;
    windows(777, TB * ACCUM, tok, tgt);
    ck_assert_int_eq(attamba_trainer_step(tr, tok, tgt, &a), ATTAMBA_OK);
    ck_assert_int_eq(attamba_trainer_step(tr2, tok, tgt, &b), ATTAMBA_OK);
    ck_assert_int_eq(a.step, 31);
    ck_assert_int_eq(b.step, 31);
    ck_assert_msg(a.loss == b.loss && a.grad_norm == b.grad_norm && a.lr == b.lr, "resumed: loss %.9g vs %.9g",
                  b.loss, a.loss);
    int V = attamba_model_vocab_size(m);
    float *la = malloc((size_t)TT * V * sizeof *la), *lb = malloc((size_t)TT * V * sizeof *lb);
    ck_assert_int_eq(attamba_model_forward(m, vtok, 1, TT, la), ATTAMBA_OK);
    ck_assert_int_eq(attamba_model_forward(m2, vtok, 1, TT, lb), ATTAMBA_OK);
    ck_assert_int_eq(memcmp(la, lb, (size_t)TT * V * sizeof *la), 0);
    free(la), free(lb);

    /* bad input */
    tgt[5] = V;
    ck_assert_int_eq(attamba_trainer_step(tr, tok, tgt, NULL), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(attamba_context_last_error(ctx), "outside"));
    ck_assert_int_eq(attamba_trainer_steps_done(tr), 31); /* nothing happened */
    ck_assert_int_eq(attamba_trainer_evaluate(tr, vtok, vtgt, 0, &after), ATTAMBA_ERR_INVALID_ARG);
    attamba_train_params bad = p;
    bad.batch = 0;
    attamba_trainer *none;
    ck_assert_int_eq(attamba_trainer_create(m, &bad, &none), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_null(none);
    ck_assert_ptr_nonnull(strstr(attamba_context_last_error(ctx), "batch >= 1"));
    attamba_model *m3;
    ck_assert_int_eq(attamba_trainer_load(ctx, "/nonexistent", &m3, &none), ATTAMBA_ERR_IO);
    ck_assert_ptr_null(m3);

    attamba_trainer_destroy(tr2);
    attamba_model_destroy(m2);
    attamba_trainer_destroy(tr);
    attamba_model_destroy(m);
    attamba_context_destroy(ctx);
    tu_remove_dir(dir);
}
END_TEST

START_TEST(status_strings_and_version) {
    ck_assert_str_eq(attamba_status_str(ATTAMBA_OK), "ok");
    ck_assert_str_eq(attamba_status_str(ATTAMBA_ERR_OUT_OF_MEMORY), "out of memory");
    ck_assert_str_eq(attamba_status_str((attamba_status)999), "unknown status");
    ck_assert_str_eq(attamba_version(), "0.3.0");
    ck_assert_str_eq(attamba_device_type_name(ATTAMBA_DEVICE_GPU), "gpu");
    ck_assert_str_eq(attamba_device_type_name(ATTAMBA_DEVICE_ACCELERATOR), "accelerator");
    ck_assert_str_eq(attamba_device_type_name((attamba_device_type)0), "other");
}
END_TEST

int main(void) {
    Suite *s = suite_create("public_api");
    TCase *t = tcase_create("api");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, session_decoding_matches_the_forward_pass);
    tcase_add_test(t, status_strings_and_version);
    tcase_add_test(t, batched_sessions_match_sessions_alone);
    tcase_add_test(t, skipped_sequences_stay_where_they_are);
    tcase_add_test(t, step_sample_draws_as_the_host_sampler);
    tcase_add_test(t, an_f16_cache_decodes_within_rounding);
    tcase_add_test(t, init_save_load_and_the_tokenizer);
    tcase_add_test(t, the_sampler);
    tcase_add_test(t, training_lowers_the_loss_and_resumes_exactly);
    suite_add_tcase(s, t);
    return tu_run(s);
}
