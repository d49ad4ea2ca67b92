/* ref_optim.h: plain-C reference of the trainer's ops outside the layers (sum of squares, column
 * sums, the AdamW step), accumulating in double. */
#ifndef ATTAMBA_REF_OPTIM_H
#define ATTAMBA_REF_OPTIM_H

#include <stdint.h>

/* Sum of x[i]^2 over n elements, in double (squares of the f32 values, exact in double). */
double ref_sum_squares(int64_t n, const float *x);

/* out[c] += sum over r of x[r, c] for x [R, C] row-major: the column sum in double, added to out[c]
 * in double and rounded once. */
void ref_sum_rows(int64_t R, int64_t C, const float *x, float *out);

/* One AdamW step (PyTorch's decoupled formulation) on n elements, in double from the f32 state,
 * the state stored back in f32:
 *   g = grad_scale * grad; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 *   mhat = m / (1 - b1^step); vhat = v / (1 - b2^step);
 *   p = p - lr * wd * p - lr * mhat / (sqrt(vhat) + eps). */
void ref_adamw(int64_t n, float *p, const float *grad, float *m, float *v, float lr, float beta1, float beta2,
               float eps, float weight_decay, float grad_scale, int64_t step);

#endif
