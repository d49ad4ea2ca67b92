/* loss.h: the language-model head's ops: per-row cross-entropy (with the row log-sum-exp kept for
 * the backward pass) and its gradient, argmax, and sampling with temperature, top-k and top-p from
 * a seeded RNG. Row reductions run one work-group per row (cl/loss.cl).
 *
 * Shapes: logits is f32, contiguous, [N, V] (or [B, T, V]: any leading dims, rows are the last
 * dim); targets, losses, lse and argmax outputs have the logits' shape without the last dim. */
#ifndef ATTAMBA_OPS_LOSS_H
#define ATTAMBA_OPS_LOSS_H

#include "ops.h"

/* Per-row cross-entropy of logits [N,V] against targets i32 [N]: losses[i] = logsumexp(logits[i]) -
 * logits[i, t_i]; rows whose target == ignore_id (e.g. a pad id; pass -1 for none) get loss 0 and are not
 * counted. Also writes lse [N] (log-sum-exp per row, kept for the backward pass later) when non-NULL.
 * Targets outside [0,V) other than ignore_id: the kernel writes NaN for that row; the op does not read
 * the targets back (it never blocks), so validating them is the caller's job (or use
 * ops_cross_entropy_mean, which reports them). */
attamba_status ops_cross_entropy(rt_ctx *ctx, const tensor *logits, const tensor *targets, int ignore_id,
                                 tensor *losses, tensor *lse);

/* Mean loss over counted rows, computed on the device and read back (blocks): *mean and *count.
 * A row is counted when its target is in [0, V) and != ignore_id. With no counted row *mean is 0.
 * Targets outside [0, V) other than ignore_id: ATTAMBA_ERR_INVALID_ARG naming how many, with *mean
 * NaN and *count the valid rows. */
attamba_status ops_cross_entropy_mean(rt_ctx *ctx, const tensor *logits, const tensor *targets, int ignore_id,
                                      double *mean, int64_t *count);

/* d(mean loss)/d(logits): dlogits[i,:] = scale * (softmax(logits[i]) - onehot(t_i)) for counted rows, 0 for
 * rows whose target == ignore_id. lse [N] from ops_cross_entropy (pass it in; recompute when NULL). scale is
 * usually 1/count. logits/dlogits [N,V] or [B,T,V]; dlogits may alias logits (the very same elements: in-place
 * saves memory on a 32000 vocab); any other overlap between dlogits and an input is refused.
 * Gradients w.r.t. inputs are written, not accumulated. Targets outside [0, V) other than ignore_id give a row
 * of NaN (as the forward's loss; the op does not read targets back). softmax is formed as exp(x - lse), so
 * with huge logits (|x| ~ 1e4) each probability carries the f32 rounding of lse (~1e-3 absolute in the
 * exponent); logits of that size need the max-subtracted forward for their loss, and their gradient is
 * only as good as lse. */
attamba_status ops_cross_entropy_backward(rt_ctx *ctx, const tensor *logits, const tensor *targets, int ignore_id,
                                          const tensor *lse, float scale, tensor *dlogits);

/* out i32 [B]: index of the max of each row of logits [B,V] (first one on ties; NaN counts as the max,
 * as in NumPy and PyTorch). */
attamba_status ops_argmax(rt_ctx *ctx, const tensor *logits, tensor *out);
/* The same, the indices sent to the host (tokens: one int per row); blocks. */
attamba_status ops_argmax_host(rt_ctx *ctx, const tensor *logits, int32_t *tokens);

typedef struct sampler {
    float temperature;
    int top_k;
    float top_p;
    float min_p;    /* 0: off */
    float penalty;  /* repetition penalty; 1: off */
    int last_n;     /* the penalty looks at the last last_n accepted tokens */
    int32_t *hist;  /* ring of the last min(n_seen, last_n) accepted tokens */
    int64_t n_seen; /* tokens accepted so far */
    core_rng rng;
} sampler;

/* temperature <= 0 means greedy (argmax); top_k <= 0 or >= V means no top-k; top_p >= 1 means no top-p.
 * Seeds the RNG; the same seed gives the same draws. No min-p, no repetition penalty. */
void sampler_init(sampler *s, float temperature, int top_k, float top_p, uint64_t seed);

/* Min-p (0 = off, else in (0, 1]) and the repetition penalty (1 = off, else > 0) over the last
 * last_n (1..65536) tokens given to sampler_accept. Checks the values; forgets the history. */
attamba_status sampler_set_filters(rt_ctx *ctx, sampler *s, float min_p, float penalty, int last_n);

/* A token the penalty should count (the prompt's and each generated one). */
void sampler_accept(sampler *s, int32_t token);

/* Whether s draws the argmax of the logits as they are (greedy or top-k 1, and no penalty history):
 * a draw the device can make without sending the logits back. */
int sampler_takes_argmax(const sampler *s);

/* Frees the history; the sampler can be set up again. */
void sampler_free(sampler *s);

/* What ops_sample does with a penalty, on host logits x [rows, V] (penalised in place): the penalty,
 * then the argmax (greedy) or the temperature softmax, top-k, top-p, min-p and a draw per row. */
attamba_status sampler_sample_host(rt_ctx *ctx, sampler *s, float *x, int64_t rows, int V, int32_t *tokens);

/* One token per row of logits [B,V], written to tokens (host, B ints); blocks.
 *
 * Split: the device computes the temperature softmax of every row (max-subtracted; the O(B*V)
 * bandwidth-bound pass, the same whatever the filter); the host then does the top-k/top-p cut and
 * the seeded draw on the downloaded probabilities with ref_sample_filter / ref_sample_draw (one
 * definition shared with the tests). Why: the cut needs a ranking of the row (a selection or a sort
 * over V up to 32000), which does not fit one work-group's local memory and would be a multi-pass
 * kernel for what is a few rows per decode step; and drawing on the host from core_rng makes the
 * tokens identical on every device for a given seed. The cost is one B*V float download per call.
 * Greedy (temperature <= 0) and top_k == 1 take the argmax kernel and download only B ints; they use
 * no random numbers. Otherwise each row consumes one 64-bit draw from s->rng.
 *
 * Top-k is applied first; top-p then keeps the smallest prefix of the ranking (probability
 * descending, ties to the smaller index) whose renormalised mass is >= top_p; at least one token;
 * then min-p drops what is below min_p times the most probable token (ref_sample_min_p).
 * With a repetition penalty and a history, every row's logits are downloaded instead and the host
 * applies ref_repetition_penalty, then the same steps (greedy: the argmax of the penalised logits).
 * Validates: s and tokens non-NULL, temperature finite, top_p in (0, 1], and every row's softmax
 * finite (no NaN or +inf logit, not all -inf;
 * -inf logits are fine and mask tokens out). */
attamba_status ops_sample(rt_ctx *ctx, const tensor *logits, sampler *s, int32_t *tokens);

#endif
