/* Several devices (CTest runs this suite with POCL_DEVICES="pthread basic" POCL_MAX_PTHREAD_COUNT=1:
 * two one-core CPU devices of different PoCL drivers): device-set selection, ops refusing tensors of
 * another device, explicit transfers, data-parallel training giving the one-device losses, and a
 * layer split giving the whole model's logits.
 * Tolerances: data-parallel losses within 1e-5 relative of one device's (the same global batch; only
 * the order of the float sums over rows differs); layer-split logits within 1e-5 (the same kernels
 * on two drivers of one CPU; only the hand-over through host memory differs, which is exact). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/parallel.h"
#include "train/run.h"
#include "testutil.h"

/* The suite needs two devices; the second is opened here (the first is tu_ctx()). */
static rt_ctx *second_ctx(void) {
    static rt_ctx *c;
    char err[512];
    if (!c) ck_assert_msg(attamba_context_create("0:1", &c, err, sizeof err) == ATTAMBA_OK,
                          "a second device (POCL_DEVICES=\"pthread basic\"): %s", err);
    return c;
}

START_TEST(device_sets_are_selected_by_type_list_or_all) {
    rt_device devs[] = {tu_fake_device(0, 0, ATTAMBA_DEVICE_CPU), tu_fake_device(1, 0, ATTAMBA_DEVICE_GPU), tu_fake_device(1, 1, ATTAMBA_DEVICE_GPU),
                        tu_fake_device(2, 0, ATTAMBA_DEVICE_ACCELERATOR)};
    int idx[8], n;
    char err[300];
    ck_assert_int_eq(rt_device_select_set(devs, 4, "all", idx, 8, &n, err, sizeof err), ATTAMBA_OK);
    ck_assert_int_eq(n, 4);
    ck_assert_int_eq(rt_device_select_set(devs, 4, "gpu", idx, 8, &n, err, sizeof err), ATTAMBA_OK);
    ck_assert_int_eq(n, 2);
    ck_assert(idx[0] == 1 && idx[1] == 2);
    ck_assert_int_eq(rt_device_select_set(devs, 4, "2:0,0:0", idx, 8, &n, err, sizeof err), ATTAMBA_OK);
    ck_assert(n == 2 && idx[0] == 3 && idx[1] == 0); /* in the order given: device 0 of the set first */
    ck_assert_int_eq(rt_device_select_set(devs, 4, "cpu,gpu", idx, 8, &n, err, sizeof err), ATTAMBA_OK);
    ck_assert(n == 2 && idx[0] == 0 && idx[1] == 1);
    ck_assert_int_eq(rt_device_select_set(devs, 4, NULL, idx, 8, &n, err, sizeof err), ATTAMBA_OK);
    ck_assert(n == 1 && idx[0] == 1); /* the default single device: the first GPU */
    /* refused, each with its reason */
    static const struct {
        const char *spec, *says;
        attamba_status s;
    } bad[] = {{"0:0,0:0", "twice", ATTAMBA_ERR_INVALID_ARG},   {"gpu,1:0", "twice", ATTAMBA_ERR_INVALID_ARG},
               {"0:0,", "bad device list", ATTAMBA_ERR_INVALID_ARG}, {",0:0", "bad device list", ATTAMBA_ERR_INVALID_ARG},
               {"0:0;1:0", "bad device", ATTAMBA_ERR_INVALID_ARG},  {"5:0", "no device 5:0", ATTAMBA_ERR_NO_DEVICE},
               {"all", "more than 3", ATTAMBA_ERR_INVALID_ARG}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        ck_assert_int_eq(rt_device_select_set(devs, 4, bad[i].spec, idx, 3, &n, err, sizeof err), bad[i].s);
        ck_assert_msg(strstr(err, bad[i].says), "'%s' said: %s", bad[i].spec, err);
    }
    rt_device cpus[] = {tu_fake_device(0, 0, ATTAMBA_DEVICE_CPU)};
    ck_assert_int_eq(rt_device_select_set(cpus, 1, "gpu", idx, 8, &n, err, sizeof err), ATTAMBA_ERR_NO_DEVICE);
    ck_assert_ptr_nonnull(strstr(err, "no gpu device"));
}
END_TEST

START_TEST(contexts_open_for_a_device_set) {
    attamba_context *c[ATTAMBA_MAX_DEVICES];
    int n;
    char err[512];
    ck_assert_int_eq(attamba_contexts_create("all", c, ATTAMBA_MAX_DEVICES, &n, err, sizeof err), ATTAMBA_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(attamba_context_device(c[1])->device_index, 1);
    for (int i = 0; i < n; i++) attamba_context_destroy(c[i]);
    setenv("ATTAMBA_DEVICES", "0:1,0:0", 1);
    ck_assert_int_eq(attamba_contexts_create(NULL, c, ATTAMBA_MAX_DEVICES, &n, err, sizeof err), ATTAMBA_OK);
    unsetenv("ATTAMBA_DEVICES");
    ck_assert(n == 2 && attamba_context_device(c[0])->device_index == 1);
    for (int i = 0; i < n; i++) attamba_context_destroy(c[i]);
    ck_assert_int_eq(attamba_contexts_create("all", c, 1, &n, err, sizeof err), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(attamba_contexts_create("0:0,0:7", c, 4, &n, err, sizeof err), ATTAMBA_ERR_NO_DEVICE);
    ck_assert_int_eq(n, 0);
}
END_TEST

START_TEST(ops_refuse_another_devices_tensors_and_transfers_are_explicit) {
    rt_ctx *c0 = tu_ctx(), *c1 = second_ctx();
    int64_t shape[] = {3, 37};
    float *x = tu_random(3 * 37, 5, -1, 1), *y = malloc(3 * 37 * sizeof *y);
    tensor a = tu_tensor(2, shape, x), out = tu_zeros(2, shape), b;
    tu_ok(tensor_alloc_f32(c1, &b, 2, shape));
    /* an op on device 0 given a tensor of device 1: refused, saying where each lives */
    ck_assert_int_eq(ops_add(c0, &a, &b, &out), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_msg(strstr(c0->err, "lives on device 0:1") && strstr(c0->err, "tensor_transfer"), "%s", c0->err);
    ck_assert_int_eq(tensor_copy(&b, &a), ATTAMBA_ERR_INVALID_ARG);
    /* ... and moved explicitly: the values arrive, a strided source too */
    tu_ok(tensor_transfer(&b, &a));
    tu_ok(tensor_download(&b, y));
    ck_assert_int_eq(memcmp(x, y, 3 * 37 * sizeof *y), 0);
    tensor col, col1;
    int64_t cshape[] = {3, 5};
    tu_ok(tensor_slice(&a, 1, 10, 5, &col));
    tu_ok(tensor_alloc_f32(c1, &col1, 2, cshape));
    tu_ok(tensor_transfer(&col1, &col));
    tu_ok(tensor_download(&col1, y));
    for (int r = 0; r < 3; r++)
        for (int k = 0; k < 5; k++) ck_assert(y[r * 5 + k] == x[r * 37 + 10 + k]);
    /* the launch itself refuses a foreign buffer (ops that take no shape check) */
    ck_assert_int_eq(ops_add(c1, &b, &b, &out), ATTAMBA_ERR_INVALID_ARG);
    tensor_free(&a);
    tensor_free(&b);
    tensor_free(&out);
    tensor_free(&col);
    tensor_free(&col1);
    free(x);
    free(y);
}
END_TEST

START_TEST(rows_split_in_proportion_to_speed) {
    int rows[4];
    core_split((double[]){5, 3}, 2, 8, rows);
    ck_assert(rows[0] == 5 && rows[1] == 3);
    core_split((double[]){1, 1, 1}, 3, 8, rows); /* 2.67 each: the two largest remainders, lowest first */
    ck_assert(rows[0] == 3 && rows[1] == 3 && rows[2] == 2);
    core_split((double[]){10, 0.1}, 2, 8, rows); /* a device worth under half a row gets none */
    ck_assert(rows[0] == 8 && rows[1] == 0);
    core_split((double[]){0, 0}, 2, 5, rows); /* nothing measured: equal */
    ck_assert(rows[0] == 3 && rows[1] == 2);
    for (int B = 1; B <= 33; B += 4) {
        double w[4] = {0.3, 2.9, 1.0, 0.05};
        core_split(w, 4, B, rows);
        int sum = 0;
        for (int i = 0; i < 4; i++) {
            sum += rows[i];
            ck_assert_msg(fabs(rows[i] - w[i] / 4.25 * B) < 1.0, "B %d device %d: %d rows", B, i, rows[i]);
        }
        ck_assert_int_eq(sum, B);
    }
}
END_TEST

/* Trains `steps` steps of a 2-layer small preset from one init on the given devices; writes each
 * step's loss; returns device 0's final weights (malloc'd). */
static float *train_on(rt_ctx *const *ctxs, int n, int steps, int accum, double *loss) {
    model_config c;
    char err[300];
    ck_assert_int_eq(model_config_preset("small", &c, err, sizeof err), ATTAMBA_OK);
    c.n_layers = 2; /* the preset's widths, fewer layers: the test's time goes to the steps */
    model *m;
    tu_ok(model_create(ctxs[0], &c, &m));
    tu_ok(model_init_random(m, 11));
    train_hparams h;
    train_hparams_default(&h, steps);
    h.batch = 7; /* odd, so a split is never trivially even */
    h.seq = 48;
    h.accum = accum;
    dp_trainer *g;
    tu_ok(dp_create(ctxs, n, m, &h, NULL, &g));
    int64_t bt = (int64_t)h.batch * h.seq;
    int32_t *tok = malloc((size_t)bt * sizeof *tok), *tgt = malloc((size_t)bt * sizeof *tgt);
    core_rng rng;
    core_rng_seed(&rng, 3);
    for (int s = 1; s <= steps; s++) {
        tu_ok(dp_zero_grad(g));
        double sum = 0;
        for (int a = 0; a < accum; a++) {
            for (int64_t i = 0; i < bt; i++) { /* a learnable stream: mostly i mod 17, some noise */
                tok[i] = (int32_t)((i + core_rng_next(&rng) % 3) % 17);
                tgt[i] = i % 11 == 0 ? -1 : (int32_t)((tok[i] + 1) % 17);
            }
            double l;
            int64_t count;
            tu_ok(dp_forward_backward(g, tok, tgt, 1.0f / (float)accum, &l, &count));
            sum += l;
        }
        double norm;
        float lr;
        tu_ok(dp_apply(g, s, &norm, &lr));
        loss[s - 1] = sum / accum;
    }
    float *w = tu_download(&m->w.flat);
    dp_destroy(g);
    model_destroy(m);
    free(tok);
    free(tgt);
    return w;
}

START_TEST(data_parallel_training_gives_the_one_device_losses) {
    rt_ctx *ctxs[2] = {tu_ctx(), second_ctx()};
    int accum = _i ? 2 : 1;
    enum { STEPS = 20 };
    double one[STEPS], two[STEPS];
    float *w1 = train_on(ctxs, 1, STEPS, accum, one), *w2 = train_on(ctxs, 2, STEPS, accum, two);
    for (int s = 0; s < STEPS; s++)
        ck_assert_msg(fabs(one[s] - two[s]) <= 1e-5 * fabs(one[s]), "step %d (accum %d): one device %.8f, two %.8f",
                      s + 1, accum, one[s], two[s]);
    ck_assert_msg(one[STEPS - 1] < 0.8 * one[0], "the loss fell: %.4f -> %.4f", one[0], one[STEPS - 1]);
    free(w1);
    free(w2);
}
END_TEST

START_TEST(replicas_hold_device_0s_weights_after_each_step) {
    rt_ctx *ctxs[2] = {tu_ctx(), second_ctx()};
    model_config c;
    model_config_default(&c);
    model *m;
    tu_ok(model_create(ctxs[0], &c, &m));
    tu_ok(model_init_random(m, 2));
    train_hparams h;
    train_hparams_default(&h, 3);
    h.batch = 3;
    h.seq = 16;
    dp_trainer *g;
    tu_ok(dp_create(ctxs, 2, m, &h, NULL, &g));
    int32_t tok[48], tgt[48];
    for (int i = 0; i < 48; i++) tok[i] = i % 50, tgt[i] = (i * 7) % 50;
    int64_t numel = tensor_numel(&m->w.flat);
    float *w0 = malloc((size_t)numel * sizeof *w0), *w1 = malloc((size_t)numel * sizeof *w1);
    for (int s = 1; s <= 3; s++) {
        double l, norm;
        int64_t count;
        float lr;
        tu_ok(dp_zero_grad(g));
        tu_ok(dp_forward_backward(g, tok, tgt, 1.0f, &l, &count));
        ck_assert_int_eq(count, 48);
        tu_ok(dp_apply(g, s, &norm, &lr));
        ck_assert_msg(norm > 0, "gradient norm %g", norm);
        /* device 1's replica holds device 0's weights bit for bit */
        tu_ok(tensor_download(&m->w.flat, w0));
        tu_ok(tensor_download(&dp_replica(g, 1)->w.flat, w1));
        ck_assert_int_eq(memcmp(w0, w1, (size_t)numel * sizeof *w0), 0);
    }
    char split[300];
    ck_assert_int_eq(dp_describe_split(g, split, sizeof split), 1);
    ck_assert_msg(strstr(split, "0:0") && strstr(split, "0:1") && strstr(split, "rows"), "%s", split);
    ck_assert_int_eq(dp_describe_split(g, split, sizeof split), 0); /* said once per change */
    free(w0);
    free(w1);
    dp_destroy(g);
    model_destroy(m);
}
END_TEST

START_TEST(a_two_device_run_resumes_on_one_device) {
    rt_ctx *ctxs[2] = {tu_ctx(), second_ctx()};
    char *full = tu_temp_dir(), *cut = tu_temp_dir();
    model_config c;
    model_config_default(&c);
    train_hparams h;
    train_hparams_default(&h, 8);
    h.batch = 5;
    h.seq = 32;
    h.warmup = 2;
    train_run_opts o = {.data = tu_corpus_path(), .val_frac = 0.1, .out = full, .seed = 7, .val_windows = 5};
    double val_one, val_two;
    tu_ok(train_run(ctxs, 1, &c, &h, &o, &val_one));
    /* the same run on both devices validates on both (windows shared out): the same validation loss */
    char *two = tu_temp_dir();
    o.out = two;
    tu_ok(train_run(ctxs, 2, &c, &h, &o, &val_two));
    ck_assert_msg(fabs(val_one - val_two) <= 1e-5 * fabs(val_one), "validation: one device %.8f, two %.8f", val_one,
                  val_two);
    free(two);
    o.out = cut;
    o.stop_at = 3;
    ck_assert_int_eq(train_run(ctxs, 2, &c, &h, &o, NULL), ATTAMBA_ERR_INTERRUPTED);
    o.stop_at = 0;
    o.resume = 1;
    tu_ok(train_run(ctxs, 1, &c, &h, &o, NULL));
    double a[16], b[16];
    ck_assert_int_eq(tu_read_losses(full, a, 16), 8);
    ck_assert_int_eq(tu_read_losses(cut, b, 16), 8);
    for (int s = 0; s < 8; s++)
        ck_assert_msg(fabs(a[s] - b[s]) <= 1e-5 * fabs(a[s]), "step %d: one device %.8f, two then one %.8f", s + 1,
                      a[s], b[s]);
    free(full);
    free(cut);
}
END_TEST

/* A layer split over the two devices gives the whole model's logits, and decodes as it prefills; each
 * stage holds its share of the weights. */
START_TEST(layer_split_gives_the_whole_models_logits) {
    rt_ctx *ctxs[2] = {tu_ctx(), second_ctx()};
    static const struct {
        model_kind kind;
        int tied, layers;
        double share[2];
    } cases[] = {{MODEL_ATTAMBA, 0, 4, {1, 1}}, {MODEL_ATTAMBA, 1, 3, {3, 1}}, {MODEL_TRANSFORMER, 0, 3, {1, 2}},
                 {MODEL_TRANSFORMER_SWA, 1, 2, {1, 1}}};
    model_config c;
    model_config_default(&c);
    c.kind = cases[_i].kind;
    c.tie_embeddings = cases[_i].tied;
    c.n_layers = cases[_i].layers;
    char *dir = tu_temp_dir();
    model *whole, *split;
    tu_ok(model_create(ctxs[0], &c, &whole));
    tu_ok(model_init_random(whole, 9));
    tu_ok(model_save(whole, dir));
    tu_ok(model_load_split(ctxs, 2, dir, cases[_i].share, &split));
    /* the stages: layers in proportion to the shares, each on its device, holding only its weights */
    int layers[2];
    core_split(cases[_i].share, 2, c.n_layers, layers);
    ck_assert_ptr_nonnull(split->next);
    ck_assert_ptr_null(split->next->next);
    ck_assert(split->ctx == ctxs[0] && split->next->ctx == ctxs[1]);
    ck_assert(split->first_layer == 0 && split->end_layer == layers[0] && split->next->end_layer == c.n_layers);
    ck_assert_int_lt(split->w.held, whole->w.held);
    ck_assert_int_lt(split->next->w.held, whole->w.held);
    int B = 2, T = 37;
    int32_t tok[74];
    for (int i = 0; i < B * T; i++) tok[i] = (i * 31 + 7) % c.vocab_size;
    tensor a, b;
    tu_ok(model_forward(whole, tok, B, T, &a));
    tu_ok(model_forward(split, tok, B, T, &b));
    ck_assert_ptr_eq(b.buf->ctx, ctxs[1]); /* the logits come from the last stage */
    float *x = tu_download(&a), *y = tu_download(&b);
    tu_assert_close(y, x, tensor_numel(&a), 1e-5, 1e-5, "layer split vs whole");
    /* decoding over the split: each layer's cache on its device; decode == prefill still holds */
    tu_check_decode_matches_prefill(split, 23, 9, "layer split");
    /* what needs a whole model refuses a split one with a message */
    ck_assert_int_eq(model_save(split, dir), ATTAMBA_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(ctxs[0]->err, "layer-split"));
    free(x);
    free(y);
    tensor_free(&a);
    tensor_free(&b);
    model_destroy(whole);
    model_destroy(split);
    free(dir);
}
END_TEST

START_TEST(a_device_whose_share_rounds_to_no_layer_is_left_out) {
    rt_ctx *ctxs[2] = {tu_ctx(), second_ctx()};
    model_config c;
    model_config_default(&c);
    c.n_layers = 2;
    char *dir = tu_temp_dir();
    model *whole, *split;
    tu_ok(model_create(ctxs[0], &c, &whole));
    tu_ok(model_init_random(whole, 3));
    tu_ok(model_save(whole, dir));
    tu_ok(model_load_split(ctxs, 2, dir, (double[]){10, 1}, &split));
    ck_assert_ptr_null(split->next);
    ck_assert(split->w.held == whole->w.held && split->end_layer == 2);
    model_destroy(split);
    model_destroy(whole);
    free(dir);
}
END_TEST

/* The public API: a params struct places the model; forward and a session agree with one device. */
START_TEST(public_api_places_a_model_by_params) {
    attamba_context *c[ATTAMBA_MAX_DEVICES];
    int n;
    char err[512];
    ck_assert_int_eq(attamba_contexts_create("all", c, ATTAMBA_MAX_DEVICES, &n, err, sizeof err), ATTAMBA_OK);
    model_config cfg;
    model_config_default(&cfg);
    cfg.n_layers = 3;
    char *dir = tu_temp_dir();
    model *m0;
    tu_ok(model_create(tu_ctx(), &cfg, &m0));
    tu_ok(model_init_random(m0, 4));
    tu_ok(model_save(m0, dir));
    model_destroy(m0);
    attamba_model_params p = attamba_model_params_default();
    attamba_model *whole, *split;
    p.devices = c;
    p.n_devices = 1;
    ck_assert_int_eq(attamba_model_load_with(dir, &p, &whole), ATTAMBA_OK);
    p.n_devices = n;
    ck_assert_int_eq(attamba_model_load_with(dir, &p, &split), ATTAMBA_ERR_INVALID_ARG); /* 2 devices, no split */
    ck_assert_ptr_nonnull(strstr(attamba_context_last_error(c[0]), "ATTAMBA_SPLIT_LAYER"));
    p.split_mode = ATTAMBA_SPLIT_LAYER;
    p.tensor_split = (double[]){2, 1};
    ck_assert_int_eq(attamba_model_load_with(dir, &p, &split), ATTAMBA_OK);
    int V = attamba_model_vocab_size(whole), T = 11;
    int32_t tok[11];
    for (int i = 0; i < T; i++) tok[i] = (i * 13 + 1) % V;
    float *a = malloc((size_t)T * V * sizeof *a), *b = malloc((size_t)T * V * sizeof *b), la[512], lb[512];
    ck_assert_int_eq(attamba_model_forward(whole, tok, 1, T, a), ATTAMBA_OK);
    ck_assert_int_eq(attamba_model_forward(split, tok, 1, T, b), ATTAMBA_OK);
    tu_assert_close(b, a, (int64_t)T * V, 1e-5, 1e-5, "public forward over a split");
    attamba_session *sa, *sb;
    ck_assert_int_eq(attamba_session_create(whole, 32, &sa), ATTAMBA_OK);
    ck_assert_int_eq(attamba_session_create(split, 32, &sb), ATTAMBA_OK);
    ck_assert_int_eq(attamba_session_feed(sa, tok, 6, la), ATTAMBA_OK);
    ck_assert_int_eq(attamba_session_feed(sb, tok, 6, lb), ATTAMBA_OK);
    for (int i = 6; i < T; i++) {
        ck_assert_int_eq(attamba_session_feed(sa, &tok[i], 1, la), ATTAMBA_OK);
        ck_assert_int_eq(attamba_session_feed(sb, &tok[i], 1, lb), ATTAMBA_OK);
        tu_assert_close(lb, la, V, 1e-5, 1e-5, "public session over a split");
    }
    ck_assert_int_eq(attamba_session_cache_bytes(sb, 0), attamba_session_cache_bytes(sa, 0));
    attamba_session_destroy(sa);
    attamba_session_destroy(sb);
    attamba_model_destroy(whole);
    attamba_model_destroy(split);
    for (int i = 0; i < n; i++) attamba_context_destroy(c[i]);
    free(a);
    free(b);
    free(dir);
}
END_TEST

int main(void) {
    Suite *s = suite_create("multi");
    TCase *tc = tcase_create("multi");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, device_sets_are_selected_by_type_list_or_all);
    tcase_add_test(tc, contexts_open_for_a_device_set);
    tcase_add_test(tc, ops_refuse_another_devices_tensors_and_transfers_are_explicit);
    tcase_add_test(tc, rows_split_in_proportion_to_speed);
    tcase_add_loop_test(tc, data_parallel_training_gives_the_one_device_losses, 0, 2);
    tcase_add_test(tc, replicas_hold_device_0s_weights_after_each_step);
    tcase_add_test(tc, a_two_device_run_resumes_on_one_device);
    tcase_add_loop_test(tc, layer_split_gives_the_whole_models_logits, 0, 4);
    tcase_add_test(tc, a_device_whose_share_rounds_to_no_layer_is_left_out);
    tcase_add_test(tc, public_api_places_a_model_by_params);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
