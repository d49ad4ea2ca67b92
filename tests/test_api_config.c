/* The public API of API 0.3 for configs and model files, as a program linking libattamba would use it:
 * configs loaded (preset, file, directory), changed field by field (a bad key or value changes nothing),
 * described and costed; their device memory measured; model directories written from a config (the
 * same weights as attamba_model_init for the seed) and quantized; the loss of a batch (negative targets
 * not scored), shared over the copies of a row split; and a session filled synthetically. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apiutil.h"


START_TEST(configs_load_set_describe_and_estimate) {
    attamba_config *c, *bad = (attamba_config *)&bad;
    char err[600] = "";
    ck_assert_msg(attamba_config_load("tiny", &c, err, sizeof err) == ATTAMBA_OK, "%s", err);
    ck_assert_int_ne(attamba_config_load("no-such-preset", &bad, err, sizeof err), ATTAMBA_OK);
    ck_assert_ptr_null(bad);
    ck_assert_ptr_nonnull(strstr(err, "no-such-preset"));
    ck_assert_int_eq(attamba_config_load("/nonexistent/config.json", &bad, err, sizeof err), ATTAMBA_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/config.json"));
    ck_assert_int_ne(attamba_config_load("/nonexistent/model", &bad, err, sizeof err), ATTAMBA_OK);
    ck_assert_int_ne(attamba_config_load(NULL, &bad, NULL, 0), ATTAMBA_OK);

    attamba_config_info info;
    attamba_config_describe(c, &info);
    ck_assert_str_eq(info.kind, "attamba");
    ck_assert_str_eq(info.tokenizer, "bytes");
    ck_assert_str_eq(info.weights, "f32");
    ck_assert_int_eq(info.bos, 256);
    ck_assert_int_eq(info.eos, 257);
    ck_assert_int_gt(info.parameters, 0);

    /* one field at a time: JSON values, bare words, "random:SEED" */
    ck_assert_msg(attamba_config_set(c, "n_layers", "5", err, sizeof err) == ATTAMBA_OK, "%s", err);
    ck_assert_msg(attamba_config_set(c, "weight_type", "q8", err, sizeof err) == ATTAMBA_OK, "%s", err);
    ck_assert_msg(attamba_config_set(c, "pseudo", "false", err, sizeof err) == ATTAMBA_OK, "%s", err);
    ck_assert_msg(attamba_config_set(c, "boundaries", "random:42", err, sizeof err) == ATTAMBA_OK, "%s", err);
    attamba_config_describe(c, &info);
    ck_assert_int_eq(info.n_layers, 5);
    ck_assert_str_eq(info.weights, "q8");
    ck_assert_str_eq(info.boundaries, "random");
    char *json = attamba_config_json(c);
    ck_assert_ptr_nonnull(strstr(json, "random:42"));

    /* refused: an unknown key, a wrong type, an invalid config; nothing changes */
    ck_assert_int_ne(attamba_config_set(c, "no_such_field", "1", err, sizeof err), ATTAMBA_OK);
    ck_assert_ptr_nonnull(strstr(err, "no_such_field"));
    ck_assert_int_ne(attamba_config_set(c, "n_layers", "many", err, sizeof err), ATTAMBA_OK);
    ck_assert_int_ne(attamba_config_set(c, "n_heads", "7", err, sizeof err), ATTAMBA_OK); /* dim % heads */
    ck_assert_int_ne(attamba_config_set(c, "kind", "lstm", err, sizeof err), ATTAMBA_OK);
    ck_assert_int_ne(attamba_config_set(c, "boundaries", "random:x", err, sizeof err), ATTAMBA_OK);
    ck_assert_int_ne(attamba_config_set(c, "chunk", "0", err, sizeof err), ATTAMBA_OK);
    char *after = attamba_config_json(c);
    ck_assert_str_eq(after, json);
    free(after);
    free(json);

    /* a tokenizer file that is not there: refused, unchanged (or unsupported in this build) */
    ck_assert_int_ne(attamba_config_use_tokenizer(c, "/nonexistent/tokenizer.model", err, sizeof err), ATTAMBA_OK);
    attamba_config_describe(c, &info);
    ck_assert_str_eq(info.tokenizer, "bytes");

    /* costs: an attamba cache is smaller than a full one; a transformer's is the full one */
    attamba_config_cost k;
    attamba_config_estimate(c, 4096, &k);
    ck_assert_int_gt(k.cache_bytes, 0);
    ck_assert_int_lt(k.cache_bytes, k.cache_bytes_full);
    ck_assert(k.key_visits > 0 && k.key_visits < 4096);
    ck_assert(k.attention_flops > 0);
    ck_assert_msg(attamba_config_set(c, "kind", "transformer", err, sizeof err) == ATTAMBA_OK, "%s", err);
    attamba_config_estimate(c, 4096, &k);
    ck_assert_int_eq(k.cache_bytes, k.cache_bytes_full);
    attamba_config_describe(c, &info);
    ck_assert_int_eq(k.cache_bytes_full, 4096LL * 2 * info.n_kv_heads * info.head_dim * 4 * info.n_layers);
    attamba_config_destroy(c);

    /* a config file and a model directory */
    char *dir = tu_temp_dir(), path[300];
    ck_assert_int_eq(attamba_config_load("small", &c, err, sizeof err), ATTAMBA_OK);
    ck_assert_msg(attamba_model_create_file(c, 1, dir, err, sizeof err) == ATTAMBA_OK, "%s", err);
    json = attamba_config_json(c);
    attamba_config_destroy(c);
    ck_assert_msg(attamba_config_load(dir, &c, err, sizeof err) == ATTAMBA_OK, "%s", err);
    after = attamba_config_json(c);
    ck_assert_str_eq(after, json);
    free(after);
    attamba_config_destroy(c);
    snprintf(path, sizeof path, "%s/config.json", dir);
    ck_assert_msg(attamba_config_load(path, &c, err, sizeof err) == ATTAMBA_OK, "%s", err);
    after = attamba_config_json(c);
    ck_assert_str_eq(after, json);
    free(after);
    free(json);
    attamba_config_destroy(c);
    tu_remove_dir(dir);
}
END_TEST

START_TEST(model_files_created_and_quantized) {
    attamba_context *ctx = tu_api_context();
    attamba_config *c;
    char err[600] = "", *dir = tu_temp_dir(), mdir[300], qdir[300];
    snprintf(mdir, sizeof mdir, "%s/m/sub", dir); /* created, parents too */
    snprintf(qdir, sizeof qdir, "%s/q8", dir);
    ck_assert_int_eq(attamba_config_load("tiny", &c, err, sizeof err), ATTAMBA_OK);
    ck_assert_msg(attamba_model_create_file(c, 7, mdir, err, sizeof err) == ATTAMBA_OK, "%s", err);

    /* the file's weights are attamba_model_init's for the seed */
    attamba_model *a, *b;
    API_OK(attamba_model_load(ctx, mdir, &a), ctx);
    API_OK(attamba_model_init(ctx, "tiny", 7, &b), ctx);
    int V = attamba_model_vocab_size(a), T = 9;
    int32_t tok[9];
    for (int t = 0; t < T; t++) tok[t] = (t * 31 + 5) % V;
    float *la = malloc((size_t)T * V * sizeof *la), *lb = malloc((size_t)T * V * sizeof *lb);
    API_OK(attamba_model_forward(a, tok, 1, T, la), ctx);
    API_OK(attamba_model_forward(b, tok, 1, T, lb), ctx);
    for (int i = 0; i < T * V; i++) ck_assert_msg(la[i] == lb[i], "logit %d: %g vs %g", i, la[i], lb[i]);

    /* the model's config in force */
    attamba_config *mc;
    API_OK(attamba_model_set_attention(b, 4, 2, "cyclic"), ctx);
    API_OK(attamba_model_get_config(b, &mc), ctx);
    attamba_config_info info;
    attamba_config_describe(mc, &info);
    ck_assert_int_eq(info.chunk, 4);
    ck_assert_int_eq(info.window, 2);
    ck_assert_str_eq(info.boundaries, "cyclic");
    attamba_config_destroy(mc);
    attamba_model_destroy(b);

    /* quantized: the projections in q8, the rest f32, and it loads and runs close to the original */
    int64_t low = -1, kept = -1;
    ck_assert_int_eq(attamba_model_quantize(mdir, qdir, "q4", &low, &kept, err, sizeof err), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(err, "q4"));
    ck_assert_int_eq(attamba_model_quantize("/nonexistent/model", qdir, "q8", &low, &kept, err, sizeof err),
                     ATTAMBA_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/model"));
    ck_assert_int_eq(access(qdir, F_OK), -1); /* nothing written */
    ck_assert_msg(attamba_model_quantize(mdir, qdir, "q8", &low, &kept, err, sizeof err) == ATTAMBA_OK, "%s", err);
    attamba_config_describe(c, &info);
    ck_assert_int_gt(low, 0);
    ck_assert_int_gt(kept, 0);
    ck_assert_int_eq(low + kept, info.parameters);
    attamba_config *qc;
    ck_assert_msg(attamba_config_load(qdir, &qc, err, sizeof err) == ATTAMBA_OK, "%s", err);
    attamba_config_describe(qc, &info);
    ck_assert_str_eq(info.weights, "q8");
    attamba_config_destroy(qc);
    API_OK(attamba_model_load(ctx, qdir, &b), ctx);
    API_OK(attamba_model_forward(b, tok, 1, T, lb), ctx);
    double worst = 0;
    for (int i = 0; i < T * V; i++) worst = fmax(worst, fabs((double)la[i] - lb[i]));
    ck_assert_msg(worst < 0.2, "q8 logits differ by %g", worst);
    attamba_model_destroy(b);
    attamba_model_destroy(a);

    /* a create into a path that cannot be a directory */
    char file[320];
    snprintf(file, sizeof file, "%s/m/sub/config.json/x", dir);
    ck_assert_int_ne(attamba_model_create_file(c, 1, file, err, sizeof err), ATTAMBA_OK);
    ck_assert_int_ne(attamba_model_create_file(NULL, 1, mdir, err, sizeof err), ATTAMBA_OK);
    attamba_config_destroy(c);
    free(la);
    free(lb);
    attamba_context_destroy(ctx);
    tu_remove_dir(dir);
}
END_TEST

START_TEST(memory_measured) {
    attamba_context *ctx = tu_api_context();
    attamba_config *c;
    char err[600];
    ck_assert_int_eq(attamba_config_load("tiny", &c, err, sizeof err), ATTAMBA_OK);
    attamba_memory_report r;
    API_OK(attamba_config_measure_memory(ctx, c, 2, 64, &r), ctx);
    ck_assert_uint_gt(r.weights, 0);
    ck_assert_uint_gt(r.prefill_arena, 0);
    ck_assert_uint_ge(r.prefill_peak, r.weights + r.prefill_arena);
    ck_assert_uint_gt(r.kv_cache, 0);
    ck_assert_uint_gt(r.decode_arena, 0);
    ck_assert_uint_ge(r.decode_peak, r.kv_cache);
    ck_assert_int_eq(attamba_config_measure_memory(ctx, c, 0, 64, &r), ATTAMBA_ERR_INVALID_ARG);
    uint64_t cur;
    attamba_context_memory(ctx, &cur, NULL);
    ck_assert_uint_eq(cur, 0); /* the model and caches measured are gone */
    attamba_config_destroy(c);
    attamba_context_destroy(ctx);
}
END_TEST

/* The loss from the logits on the host: log-sum-exp minus the target's logit, over targets >= 0. */
static double host_loss(const float *logits, const int32_t *targets, int n, int V, int64_t *count) {
    double sum = 0;
    *count = 0;
    for (int i = 0; i < n; i++) {
        if (targets[i] < 0) continue;
        const float *row = logits + (size_t)i * V;
        double mx = row[0], s = 0;
        for (int v = 1; v < V; v++) mx = fmax(mx, row[v]);
        for (int v = 0; v < V; v++) s += exp(row[v] - mx);
        sum += mx + log(s) - row[targets[i]];
        (*count)++;
    }
    return sum;
}

START_TEST(loss_on_one_device_and_split_by_rows) {
    /* two contexts (two devices when there are: POCL_DEVICES="pthread pthread"; else two on one) */
    attamba_context *ctxs[2];
    int n = 0;
    char err[600];
    if (attamba_contexts_create("all", ctxs, 2, &n, err, sizeof err) != ATTAMBA_OK || n < 2) {
        for (int i = 0; i < n; i++) attamba_context_destroy(ctxs[i]);
        ctxs[0] = tu_api_context();
        ctxs[1] = tu_api_context();
    }
    attamba_context *ctx = ctxs[0];
    char *dir = tu_temp_dir();
    attamba_config *c;
    ck_assert_int_eq(attamba_config_load("tiny", &c, err, sizeof err), ATTAMBA_OK);
    ck_assert_msg(attamba_model_create_file(c, 3, dir, err, sizeof err) == ATTAMBA_OK, "%s", err);
    attamba_config_destroy(c);
    attamba_model *m, *rows;
    API_OK(attamba_model_load(ctx, dir, &m), ctx);
    int V = attamba_model_vocab_size(m), B = 3, T = 12, N = B * T;
    int32_t tok[36], tgt[36];
    for (int i = 0; i < N; i++) {
        tok[i] = (i * 37 + 11) % V;
        tgt[i] = i % 5 == 0 ? -1 : i % 7 == 0 ? -3 : (i * 53 + 1) % V; /* every negative one not scored */
    }
    float *logits = malloc((size_t)N * V * sizeof *logits), *lr = malloc((size_t)N * V * sizeof *lr);
    API_OK(attamba_model_forward(m, tok, B, T, logits), ctx);
    int64_t want_count;
    double want = host_loss(logits, tgt, N, V, &want_count), sum;
    int64_t count;
    API_OK(attamba_model_loss(m, tok, tgt, B, T, &sum, &count), ctx);
    ck_assert_int_eq(count, want_count);
    ck_assert_msg(fabs(sum - want) < 1e-4 * want, "loss %g, from the logits %g", sum, want);
    int32_t bad[36];
    memcpy(bad, tgt, sizeof bad);
    bad[4] = V;
    ck_assert_int_ne(attamba_model_loss(m, tok, bad, B, T, &sum, &count), ATTAMBA_OK);
    ck_assert_int_ne(attamba_model_loss(m, tok, tgt, 0, T, &sum, &count), ATTAMBA_OK);

    /* the same model split by rows (3:1 of the batch): the same loss and logits */
    double share[2] = {3, 1};
    attamba_model_params p = attamba_model_params_default();
    p.devices = ctxs, p.n_devices = 2, p.split_mode = ATTAMBA_SPLIT_ROWS, p.tensor_split = share;
    API_OK(attamba_model_load_with(dir, &p, &rows), ctx);
    double sum_rows;
    int64_t count_rows;
    API_OK(attamba_model_loss(rows, tok, tgt, B, T, &sum_rows, &count_rows), ctx);
    ck_assert_int_eq(count_rows, want_count);
    API_OK(attamba_model_loss(m, tok, tgt, B, T, &sum, &count), ctx);
    ck_assert_msg(fabs(sum_rows - sum) < 1e-5 * sum, "split rows %g, one device %g", sum_rows, sum);
    API_OK(attamba_model_forward(rows, tok, B, T, lr), ctx);
    for (int i = 0; i < N * V; i++) ck_assert_msg(fabsf(lr[i] - logits[i]) < 1e-4f, "logit %d", i);
    /* one row: only the first copy works; the attention pattern reaches every copy */
    API_OK(attamba_model_loss(rows, tok, tgt, 1, T, &sum_rows, &count_rows), ctx);
    API_OK(attamba_model_set_attention(rows, 4, 1, "uniform"), ctx);
    API_OK(attamba_model_set_attention(m, 4, 1, "uniform"), ctx);
    API_OK(attamba_model_loss(rows, tok, tgt, B, T, &sum_rows, &count_rows), ctx);
    API_OK(attamba_model_loss(m, tok, tgt, B, T, &sum, &count), ctx);
    ck_assert_msg(fabs(sum_rows - sum) < 1e-5 * sum, "after set_attention: split rows %g, one device %g", sum_rows,
                  sum);
    /* sessions use the first copy */
    attamba_session *s;
    API_OK(attamba_session_create(rows, 32, &s), ctx);
    API_OK(attamba_session_feed(s, tok, T, lr), ctx);
    attamba_session_destroy(s);
    /* training would update the first copy only: refused */
    attamba_train_params tp = attamba_train_params_default(10);
    attamba_trainer *tr = NULL;
    ck_assert_int_eq(attamba_trainer_create(rows, &tp, &tr), ATTAMBA_ERR_UNSUPPORTED);
    ck_assert_ptr_null(tr);
    ck_assert_ptr_nonnull(strstr(attamba_context_last_error(ctx), "row-split"));
    attamba_model_destroy(rows);
    attamba_model_destroy(m);
    free(logits);
    free(lr);
    attamba_context_destroy(ctxs[1]);
    attamba_context_destroy(ctxs[0]);
    tu_remove_dir(dir);
}
END_TEST

START_TEST(sessions_filled_synthetically) {
    attamba_context *ctx = tu_api_context();
    attamba_model *m;
    API_OK(attamba_model_init(ctx, "tiny", 1, &m), ctx);
    attamba_session *s;
    API_OK(attamba_session_create_batch(m, 2, 128, &s), ctx);
    API_OK(attamba_session_fill_synthetic(s, 100), ctx);
    ck_assert_int_eq(attamba_session_position(s, 0), 100);
    ck_assert_int_eq(attamba_session_position(s, 1), 100);
    ck_assert_int_gt(attamba_session_cache_bytes(s, 1), 0);
    int V = attamba_model_vocab_size(m);
    int32_t next[2] = {1, 2};
    float *logits = malloc((size_t)2 * V * sizeof *logits);
    API_OK(attamba_session_step(s, next, logits), ctx);
    ck_assert_int_eq(attamba_session_position(s, 0), 101);
    /* not on a session that holds tokens, nor past its capacity */
    ck_assert_int_eq(attamba_session_fill_synthetic(s, 10), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(attamba_context_last_error(ctx), "not empty"));
    API_OK(attamba_session_reset(s, -1), ctx);
    ck_assert_int_eq(attamba_session_fill_synthetic(s, 129), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_int_eq(attamba_session_fill_synthetic(s, -1), ATTAMBA_ERR_INVALID_ARG);
    API_OK(attamba_session_fill_synthetic(s, 128), ctx);
    ck_assert_int_eq(attamba_session_position(s, 1), 128);
    attamba_session_destroy(s);
    free(logits);
    attamba_model_destroy(m);
    attamba_context_destroy(ctx);
}
END_TEST

int main(void) {
    Suite *s = suite_create("api_config");
    TCase *t = tcase_create("api");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, configs_load_set_describe_and_estimate);
    tcase_add_test(t, model_files_created_and_quantized);
    tcase_add_test(t, memory_measured);
    tcase_add_test(t, loss_on_one_device_and_split_by_rows);
    tcase_add_test(t, sessions_filled_synthetically);
    suite_add_tcase(s, t);
    return tu_run(s);
}
