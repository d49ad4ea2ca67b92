/* ref_layer_backward.h: plain-C reference of the layer ops' backward passes
 * (src/ops/layer_backward.h), on host arrays, row-major, accumulating in double. The oracle of
 * tests/test_layer_backward.c, itself checked there against finite differences.
 * Input gradients are written, parameter gradients (dw, dtable) accumulated (+=); NULL = not
 * wanted. Each output element is written after every input it depends on was read, so input
 * gradients may equal (not partially overlap) the inputs or dout, as the ops allow. */
#ifndef ATTAMBA_REF_LAYER_BACKWARD_H
#define ATTAMBA_REF_LAYER_BACKWARD_H

#include <stdint.h>

/* out = x / sqrt(mean(x^2) + eps) * w per row of C: dx [rows, C], dw [C] += . */
void ref_rmsnorm_backward(int64_t rows, int64_t C, const float *x, const float *w, float eps, const float *dout,
                          float *dx, float *dw);
/* g = y * silu(z); out = g / sqrt(mean(g^2) + eps) * w: dy, dz [rows, C], dw [C] += . */
void ref_gated_rmsnorm_backward(int64_t rows, int64_t C, const float *y, const float *z, const float *w,
                                float eps, const float *dout, float *dy, float *dz, float *dw);
/* In place on dx [B, T, n_heads*dh]: pair (2i, 2i+1) rotates by -(pos0[b] + t) * theta^(-2i/dh). */
void ref_rope_backward(int64_t B, int64_t T, int n_heads, int dh, float *dx, const int32_t *pos0, float theta);
/* out = silu(gate) * up over n elements. */
void ref_swiglu_backward(int64_t n, const float *gate, const float *up, const float *dout, float *dgate,
                         float *dup);
/* out = silu(x) over n elements. */
void ref_silu_backward(int64_t n, const float *x, const float *dout, float *dx);
/* dtable[ids[r], :] += dout[r, :] for r < n_ids; ids outside [0, V) are skipped. Sums per id in
 * double, added to dtable once. */
void ref_embedding_backward(int64_t n_ids, const int32_t *ids, int64_t V, int64_t d, const float *dout,
                            float *dtable);

#endif
