/* Finding 11 of the hardening campaign (issue 13): the kernels a model runs build without a compiler
 * warning (PoCL printed "N warnings generated." into every cold start). Both caches are off here,
 * so every program of a forward pass, a prefill + decode step and a training step is compiled. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "model/kv_cache.h"
#include "model/model.h"
#include "testutil.h"
#include "train/train.h"

static void run_everything(model_kind kind) {
    rt_ctx *ctx = tu_ctx();
    model_config c;
    model_config_default(&c);
    c.kind = kind;
    model *m;
    tu_ok(model_create(ctx, &c, &m));
    tu_ok(model_init_random(m, 1));
    int32_t tok[24], tgt[24];
    for (int i = 0; i < 24; i++) tok[i] = (5 * i + 1) % c.vocab_size, tgt[i] = (5 * i + 6) % c.vocab_size;
    tensor lg;
    tu_ok(model_forward(m, tok, 2, 12, &lg));
    tensor_free(&lg);
    kv_cache *cache;
    tu_ok(kv_cache_create(m, 1, 16, TENSOR_F32, &cache));
    tu_ok(model_prefill_last(m, cache, 0, tok, 9, &lg));
    tensor_free(&lg);
    tu_ok(model_decode_step(m, cache, tok + 9, &lg));
    tensor_free(&lg);
    kv_cache_destroy(cache);
    train_hparams h;
    train_hparams_default(&h, 4);
    h.batch = 2;
    h.seq = 12;
    trainer *t;
    tu_ok(trainer_create(m, &h, &t));
    double loss, norm;
    int64_t count;
    tu_ok(trainer_zero_grad(t));
    tu_ok(trainer_forward_backward(t, tok, tgt, 1.0f, &loss, &count));
    tu_ok(trainer_apply(t, 1, &norm, NULL));
    trainer_destroy(t);
    model_destroy(m);
}

START_TEST(the_kernels_a_model_runs_build_without_warnings) {
    run_everything(MODEL_ATTAMBA);
    run_everything(MODEL_TRANSFORMER);
    rt_ctx *ctx = tu_ctx();
    ck_assert_uint_gt(ctx->cache.misses, 5); /* really compiled, not loaded */
    ck_assert_msg(ctx->cache.warned == 0, "%u of %u programs built with warnings (ATTAMBA_LOG=debug shows them)",
                  ctx->cache.warned, ctx->cache.misses);
}
END_TEST

int main(void) {
    /* before the first OpenCL call: no binary from either cache */
    setenv("POCL_KERNEL_CACHE", "0", 1);
    setenv("ATTAMBA_CACHE_DIR", "off", 1);
    Suite *s = suite_create("warnings");
    TCase *t = tcase_create("builds");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, the_kernels_a_model_runs_build_without_warnings);
    suite_add_tcase(s, t);
    return tu_run(s);
}
