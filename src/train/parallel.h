/* parallel.h: data-parallel training over a device set in one process (docs/multi-device.md).
 * Each device holds a replica of the model and a trainer for its share of the rows of every
 * micro-batch; the shares follow each device's measured throughput (equal for the first micro-batch,
 * which also compiles the kernels; measured from the second; re-measured every few micro-batches).
 * Gradients are summed (through host memory, in device order) into device 0's, which clips and
 * applies AdamW (it alone keeps the optimiser moments) and sends the new weights to the others, so
 * the replicas stay identical even across vendors. A step's loss and update are the same functions
 * of the global batch as on one device (up to the order of float sums). One device: the plain
 * trainer, nothing copied. */
#ifndef ATTAMBA_TRAIN_PARALLEL_H
#define ATTAMBA_TRAIN_PARALLEL_H

#include "train.h"

/* The processes of a job (MPI ranks across machines), each running a dp_trainer on its devices. The
 * CLI provides it (cli/mpi.c); the library never links MPI. Every call returns 0 on success and is
 * made by every process in the same order. NULL or size 1: one process. */
typedef struct attamba_comm train_comm; /* include/attamba/attamba.h */

typedef struct dp_trainer dp_trainer;

/* Replicates m0 (which lives on ctxs[0] and stays the caller's) on ctxs[1..n-1]; h->batch is this
 * process's share of the global micro-batch. comm (may be NULL) joins the processes: dp_apply sums
 * the gradients of all of them, and each applies the same update. */
attamba_status dp_create(rt_ctx *const *ctxs, int n, model *m0, const train_hparams *h, const train_comm *comm,
                         dp_trainer **out);
void dp_destroy(dp_trainer *g);

/* Device 0's trainer: the optimiser state checkpoints save and resumes load. */
trainer *dp_primary(dp_trainer *g);
/* Device i's model (i = 0: the caller's m0). */
model *dp_replica(dp_trainer *g, int i);

/* As trainer_zero_grad, trainer_forward_backward (tokens and targets: this process's h->batch rows;
 * grad_weight already scaled by its share of the job's scored targets) and trainer_apply, over
 * every device (and process). */
attamba_status dp_zero_grad(dp_trainer *g);
attamba_status dp_forward_backward(dp_trainer *g, const int32_t *tokens, const int32_t *targets, float grad_weight,
                                   double *loss, int64_t *count);
attamba_status dp_apply(dp_trainer *g, int64_t step, double *grad_norm, float *lr);

/* Makes every process's model and optimiser state rank 0's (a broadcast; with one process, a no-op):
 * after a resume, and at checkpoints so that processes on different drivers cannot drift apart. */
attamba_status dp_sync(dp_trainer *g);

/* The current split, e.g. "0:0 pthread 5 rows (41.2 rows/s), 0:1 basic 3 rows (24.9 rows/s)"; returns
 * whether it changed since the last call (so a caller prints it once per change). */
int dp_describe_split(dp_trainer *g, char *buf, size_t n);

#endif
