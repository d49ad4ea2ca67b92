/* train.h: training on any OpenCL device. A trainer owns the model's gradients (one flat buffer in
 * the weights' layout), the AdamW moments, and the activations of one micro-batch [B, T], which
 * the backward pass reads (docs/training.md says what is stored and what is recomputed). */
#ifndef ATTAMBA_TRAIN_H
#define ATTAMBA_TRAIN_H

#include "model/model.h"

typedef struct train_hparams {
    int batch, seq;           /* micro-batch [B, T] */
    int accum;                /* micro-batches per optimiser step */
    float lr, min_lr;         /* peak and floor of the schedule */
    int64_t warmup, steps;    /* linear warmup, then cosine decay to min_lr at `steps` */
    float beta1, beta2, eps, weight_decay, clip;
    int ignore_id;            /* target id that is not scored (-1: none) */
} train_hparams;

/* The paper's optimiser settings (SPEC 5) at a small scale: lr 3e-3, betas 0.9/0.95, wd 0.033,
 * clip 1.0, eps 1e-8, warmup 5% of the steps. */
void train_hparams_default(train_hparams *h, int64_t steps);
/* The public API's parameters as hyper-parameters (src/train/api.c). */
train_hparams train_hparams_from_api(const attamba_train_params *p);

typedef struct trainer trainer;

attamba_status trainer_create(model *m, const train_hparams *h, trainer **out);
/* A trainer without optimiser moments (a data-parallel replica: forward and backward only; its
 * gradients are applied elsewhere). trainer_apply refuses it; trainer_moment gives NULL. */
attamba_status trainer_create_replica(model *m, const train_hparams *h, trainer **out);
/* Micro-batches of `batch` rows from now on (the activations are carved again; a smaller batch
 * creates no device buffer). */
attamba_status trainer_resize(trainer *t, int batch);
const train_hparams *trainer_hparams(const trainer *t);
void trainer_destroy(trainer *t);

/* Zeroes the gradients (start of an optimiser step). */
attamba_status trainer_zero_grad(trainer *t);
/* Forward and backward of one micro-batch: tokens and targets are B*T host ids (targets equal to
 * ignore_id are not scored). Gradients of mean(loss) * grad_weight are added to the trainer's
 * gradients. *loss is the micro-batch's mean loss, *count the scored targets. */
attamba_status trainer_forward_backward(trainer *t, const int32_t *tokens, const int32_t *targets, float grad_weight,
                                        double *loss, int64_t *count);
/* Clips by global norm and applies AdamW with the schedule's lr at optimiser step `step` (1-based).
 * *grad_norm (may be NULL) is the norm before clipping; *lr the rate used. */
attamba_status trainer_apply(trainer *t, int64_t step, double *grad_norm, float *lr);

/* The model being trained. */
model *trainer_model(const trainer *t);
/* The gradient views (as weights: same names and shapes), and the AdamW moments as flat tensors
 * (NULL for a replica). */
const model_weights *trainer_grads(const trainer *t);
tensor *trainer_moment(trainer *t, int which /* 0 = m, 1 = v */);

#endif
