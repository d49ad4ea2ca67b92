/* ref_loss.h: plain-C reference of the language-model head's ops (cross-entropy, argmax) and the
 * sampling filter (temperature, top-k, top-p) with its seeded draw. The filter and the draw are
 * also what ops_sample runs on the host, so the op and the tests share one definition. */
#ifndef ATTAMBA_REF_LOSS_H
#define ATTAMBA_REF_LOSS_H

#include <stdint.h>

/* Per-row cross-entropy of logits [N,V] (row-major) against targets [N], in double:
 * losses[i] = logsumexp(logits[i]) - logits[i, t_i]; 0 for rows with t_i == ignore_id; NaN for
 * t_i outside [0, V). lse [N] (may be NULL) gets the log-sum-exp of every row. Returns the number
 * of counted rows (neither ignored nor invalid); *mean (may be NULL) gets their mean loss, 0 when
 * there are none. */
int64_t ref_cross_entropy(int64_t N, int V, const float *logits, const int32_t *targets, int ignore_id,
                          double *losses, double *lse, double *mean);

/* The gradient of scale * sum of the counted rows' losses w.r.t. logits [N,V], in double:
 * dlogits[i,:] = scale * (softmax(logits[i]) - onehot(t_i)); 0 for rows with t_i == ignore_id; NaN
 * for t_i outside [0, V). */
void ref_cross_entropy_backward(int64_t N, int V, const float *logits, const int32_t *targets, int ignore_id,
                                double scale, double *dlogits);

/* scale * the sum of the counted rows' losses for double logits (the function whose gradient
 * ref_cross_entropy_backward is; finite differences need logits perturbed finer than f32). Ignored
 * rows add nothing; a target outside [0, V) makes the result NaN. */
double ref_cross_entropy_loss_d(int64_t N, int V, const double *logits, const int32_t *targets, int ignore_id,
                                double scale);

/* out[i] = index of the max of row i of logits [B,V]; the first one on ties; NaN counts as the max
 * (as in NumPy and PyTorch). */
void ref_argmax(int64_t B, int V, const float *logits, int32_t *out);

/* Applies top-k then top-p to one row of probabilities p [V] (non-negative; need not sum to 1),
 * in place: dropped entries become 0 and the kept ones are renormalised to sum to 1.
 * Tokens are ranked by probability, ties by the smaller index. top_k <= 0 or >= V keeps all;
 * then, on the top-k set renormalised, top_p < 1 keeps the smallest prefix of the ranking whose
 * mass is >= top_p. At least one token is always kept. order is scratch for V ints.
 * Returns the number of tokens kept. */
int ref_sample_filter(int V, double *p, int top_k, float top_p, int32_t *order);

/* Min-p, after ref_sample_filter: drops every token whose probability is below min_p times the
 * largest one and renormalises the rest, in place (p as ref_sample_filter leaves it). min_p <= 0
 * keeps all; the most probable token always stays (min_p <= 1). Returns the number kept. */
int ref_sample_min_p(int V, double *p, float min_p);

/* The repetition penalty (Keskar et al., 2019, as llama.cpp applies it): each distinct token of
 * hist [n] has its logit divided by penalty when positive, multiplied by it otherwise. In place on
 * one row of logits [V]; ids outside [0, V) are ignored. */
void ref_repetition_penalty(int V, float *logits, const int32_t *hist, int n, float penalty);

/* The distribution a token is drawn from, for one row of logits [V]: softmax(logits / temperature)
 * filtered by ref_sample_filter; with temperature <= 0, a one-hot at ref_argmax (greedy).
 * order is scratch for V ints. Returns the number of tokens with non-zero probability. */
int ref_sample_probs(int V, const float *logits, float temperature, int top_k, float top_p, double *probs,
                     int32_t *order);

/* Inverse-CDF draw from p [V] (non-negative, not all zero; need not sum to 1) with u in [0, 1):
 * the first index whose cumulative mass exceeds u * total. Never returns a zero-probability index. */
int ref_sample_draw(int V, const double *p, double u);

/* u in [0, 1) with 53 random bits from one 64-bit draw. */
double ref_uniform53(uint64_t bits);

#endif
