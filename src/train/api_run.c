/* The public whole training run (include/attamba/attamba.h) over run.h: what `attamba train` does, with
 * the caller's devices, config and communicator. */
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "run.h"

attamba_train_run_params attamba_train_run_params_default(int64_t steps) {
    return (attamba_train_run_params){.train = attamba_train_params_default(steps), .val_frac = 0.05,
                                      .val_windows = 32, .progress = 1};
}

attamba_status attamba_train_run(attamba_context *const *ctxs, int n_ctx, const attamba_config *c,
                                 const attamba_train_run_params *p, double *final_val) {
    static const char *op = "attamba_train_run";
    if (!ctxs || n_ctx < 1 || !ctxs[0]) return ATTAMBA_ERR_INVALID_ARG; /* nowhere to say it */
    rt_ctx *ctx = ctxs[0];
    if (n_ctx > ATTAMBA_MAX_DEVICES)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: %d devices, at most %d", op, n_ctx, ATTAMBA_MAX_DEVICES);
    for (int i = 1; i < n_ctx; i++)
        if (!ctxs[i]) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: device %d is NULL", op, i);
    if (!p || !p->data || !p->out) return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: NULL params, data or out", op);
    if (!(p->val_frac >= 0 && p->val_frac < 1) || p->val_windows < 1 || p->val_every < 0 || p->ckpt_every < 0)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: val_frac %g (want [0, 1)), val_windows %d (want >= 1), "
                       "val_every %lld and ckpt_every %lld (want >= 0)", op, p->val_frac, p->val_windows,
                       (long long)p->val_every, (long long)p->ckpt_every);
    if (!p->resume && p->train.steps < 1)
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: %lld steps (want >= 1)", op, (long long)p->train.steps);
    if (!c && !(p->resume && checkpoint_exists(p->out)))
        return rt_fail(ctx, ATTAMBA_ERR_INVALID_ARG, "%s: no config, and no checkpoint in %s to resume", op, p->out);
    train_hparams h = train_hparams_from_api(&p->train);
    train_run_opts o = {.data = p->data, .val_frac = p->val_frac, .out = p->out, .resume = p->resume,
                        .seed = p->seed, .val_every = p->val_every, .val_windows = p->val_windows,
                        .ckpt_every = p->ckpt_every, .progress = p->progress, .stop = p->stop, .comm = p->comm};
    return train_run(ctxs, n_ctx, c ? &c->c : NULL, &h, &o, final_val);
}

int attamba_checkpoint_exists(const char *dir) { return dir && checkpoint_exists(dir); }
