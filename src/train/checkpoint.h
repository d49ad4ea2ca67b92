/* checkpoint.h: what a training run needs to continue exactly: the model (config + weights, so a
 * checkpoint is also a loadable model directory), the AdamW moments, the hyper-parameters, the
 * step, the data RNG and counters. Layout: OUT/ckpt-<step>/{config.json, model.safetensors,
 * optimizer.safetensors, trainer.json}; OUT/latest names the newest. Written to a temporary
 * directory, then renamed; `latest` is replaced by rename too. */
#ifndef ATTAMBA_CHECKPOINT_H
#define ATTAMBA_CHECKPOINT_H

#include "train.h"

typedef struct train_progress {
    int64_t step;         /* optimiser steps done */
    core_rng rng;         /* the data order's RNG after those steps */
    int64_t tokens;       /* training tokens seen */
    double seconds;       /* training time so far */
    uint64_t seed;
} train_progress;

/* Saves, then keeps only the newest `keep` checkpoints. */
attamba_status checkpoint_save(const char *out, trainer *t, const train_hparams *h, const train_progress *p,
                               int keep, char *err, size_t err_size);
/* Whether OUT/latest exists. */
int checkpoint_exists(const char *out);
/* trainer.json's text into the hyper-parameters and progress, every number range-checked. */
attamba_status checkpoint_parse_state(const char *text, train_hparams *h, train_progress *p, char *err,
                                      size_t err_size);
/* Loads the newest checkpoint: a new model (*m) and trainer (*t) with the saved hyper-parameters
 * (*h, whose steps may then be raised by the caller before use) and progress. */
attamba_status checkpoint_load(rt_ctx *ctx, const char *out, model **m, train_hparams *h, train_progress *p,
                               char *err, size_t err_size);
/* Restores the AdamW moments of the newest checkpoint into t. */
attamba_status checkpoint_load_moments(const char *out, trainer *t, char *err, size_t err_size);

#endif
