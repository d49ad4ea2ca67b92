/* Fault injection (issue 13): the Nth device buffer creation fails, for every N a forward pass, a
 * prefill + decode step and a training step make. Every run must end with ATTAMBA_OK or a clean
 * out-of-memory status naming the injected failure, and give back every byte it took. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "model/kv_cache.h"
#include "model/model.h"
#include "testutil.h"
#include "train/train.h"

/* Everything a user does with a model, stopping at the first failure. */
static attamba_status scenario(rt_ctx *ctx, model_kind kind) {
    model_config c;
    model_config_default(&c);
    c.kind = kind;
    model *m = NULL;
    kv_cache *cache = NULL;
    trainer *t = NULL;
    int32_t tok[24], tgt[24];
    for (int i = 0; i < 24; i++) tok[i] = (7 * i + 1) % c.vocab_size, tgt[i] = (7 * i + 8) % c.vocab_size;
    tensor lg = {0};
    attamba_status s = model_create(ctx, &c, &m);
    if (!s) s = model_init_random(m, 1);
    if (!s) s = model_forward(m, tok, 2, 12, &lg);
    tensor_free(&lg);
    if (!s) s = kv_cache_create(m, 1, 16, TENSOR_F32, &cache);
    if (!s) s = model_prefill_last(m, cache, 0, tok, 9, &lg);
    tensor_free(&lg);
    if (!s) s = model_decode_step(m, cache, tok + 9, &lg);
    tensor_free(&lg);
    train_hparams h;
    train_hparams_default(&h, 4);
    h.batch = 2;
    h.seq = 12;
    if (!s) s = trainer_create(m, &h, &t);
    double loss, norm;
    int64_t count;
    if (!s) s = trainer_zero_grad(t);
    if (!s) s = trainer_forward_backward(t, tok, tgt, 1.0f, &loss, &count);
    if (!s) s = trainer_apply(t, 1, &norm, NULL);
    trainer_destroy(t);
    kv_cache_destroy(cache);
    model_destroy(m);
    return s;
}

static void inject_everywhere(model_kind kind) {
    rt_ctx *ctx = tu_ctx();
    uint64_t base, now;
    rt_pool_trim(ctx);
    attamba_context_memory(ctx, &base, NULL);
    attamba_counters c0, c1;
    attamba_context_counters(ctx, &c0);
    tu_ok(scenario(ctx, kind));
    attamba_context_counters(ctx, &c1);
    uint64_t n = c1.allocations - c0.allocations;
    ck_assert_uint_gt(n, 5);
    int failed = 0;
    for (uint64_t k = 1; k <= n; k++) {
        rt_pool_trim(ctx); /* the same allocations every time */
        ctx->fail_allocation = k;
        attamba_status s = scenario(ctx, kind);
        ctx->fail_allocation = 0;
        if (s != ATTAMBA_OK) {
            ck_assert_msg(s == ATTAMBA_ERR_OUT_OF_MEMORY, "allocation %llu: %s (%s)", (unsigned long long)k,
                          attamba_status_str(s), ctx->err);
            ck_assert_msg(strstr(ctx->err, "injected"), "allocation %llu: %s", (unsigned long long)k, ctx->err);
            failed++;
        }
        attamba_context_memory(ctx, &now, NULL);
        ck_assert_msg(now == base, "allocation %llu failed: %llu bytes left on the device (%llu before)",
                      (unsigned long long)k, (unsigned long long)now, (unsigned long long)base);
    }
    ck_assert_int_gt(failed, 0);
}

START_TEST(every_allocation_of_an_attamba_run_may_fail_cleanly) { inject_everywhere(MODEL_ATTAMBA); }
END_TEST

START_TEST(every_allocation_of_a_transformer_run_may_fail_cleanly) { inject_everywhere(MODEL_TRANSFORMER); }
END_TEST

int main(void) {
    Suite *s = suite_create("faults");
    TCase *t = tcase_create("allocations");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, every_allocation_of_an_attamba_run_may_fail_cleanly);
    tcase_add_test(t, every_allocation_of_a_transformer_run_may_fail_cleanly);
    suite_add_tcase(s, t);
    return tu_run(s);
}
