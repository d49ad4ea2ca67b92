/* run.h: the training loop behind `attamba train`: random windows from a token stream, gradient
 * accumulation, the optimiser, a live progress line, metrics.jsonl, validation perplexity every K
 * steps, and checkpoints (weights, optimiser moments, data RNG and step) written to a temporary
 * directory and renamed, so a kill -9 never leaves one half written; --resume continues from the
 * newest one exactly (same device: the same losses as an uninterrupted run). */
#ifndef ATTAMBA_TRAIN_RUN_H
#define ATTAMBA_TRAIN_RUN_H

#include <signal.h>

#include "train.h"

typedef struct train_run_opts {
    const char *data;           /* text or binary token file */
    double val_frac;            /* held-out tail of the stream */
    const char *out;            /* output directory: checkpoints, metrics.jsonl, final model */
    int resume;                 /* continue from out/latest when present */
    uint64_t seed;              /* init and data order */
    int64_t val_every;          /* 0: only at the end */
    int val_windows;            /* validation windows per evaluation */
    int64_t ckpt_every;         /* 0: only at the end (and on interrupt) */
    int progress;               /* draw the progress line */
    volatile sig_atomic_t *stop; /* set by the caller (SIGINT): checkpoint and return ATTAMBA_ERR_INTERRUPTED */
    int64_t stop_at;            /* > 0: behave as if interrupted after this step (tests) */
    const struct attamba_comm *comm; /* the job's processes (parallel.h); NULL: this one only */
} train_run_opts;

/* Trains a new model of config cfg (ignored when resuming) with hyper-parameters h on the devices
 * ctxs[0..n_ctx-1] (data-parallel when more than one: parallel.h; errors are reported on ctxs[0],
 * which also validates and checkpoints). With o->comm, every process of the job calls this: each
 * draws the same global batches and computes its share of the rows; rank 0 alone writes metrics,
 * checkpoints and the model, and validates. On success out/config.json and out/model.safetensors
 * hold the final model. *final_val (may be NULL) gets the last validation loss (rank 0). */
attamba_status train_run(rt_ctx *const *ctxs, int n_ctx, const model_config *cfg, const train_hparams *h,
                         const train_run_opts *o, double *final_val);

/* Mean loss of model m on n windows of T tokens taken in order from [begin, end) of d. */
struct dataset;
attamba_status train_eval(model *m, const struct dataset *d, int64_t begin, int64_t end, int T, int B, int n_windows,
                          double *loss);
/* The same with each batch's windows shared out over n replicas of one model (model_loss_replicas). */
attamba_status train_eval_replicas(model *const *ms, int n, const struct dataset *d, int64_t begin, int64_t end, int T,
                                   int B, int n_windows, double *loss);

#endif
