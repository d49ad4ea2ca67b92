/* ref_layer.h: plain-C reference of the layer ops (src/ops/layer.h), on host arrays, row-major,
 * accumulating in double. The oracle of tests/test_layer.c. */
#ifndef ATTAMBA_REF_LAYER_H
#define ATTAMBA_REF_LAYER_H

#include <stdint.h>

/* out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w over rows x C; out may equal x. */
void ref_rmsnorm(int64_t rows, int64_t C, const float *x, const float *w, float eps, float *out);
/* g = y * silu(z); out = g / sqrt(mean(g^2) + eps) * w, per row; out may equal y or z. */
void ref_gated_rmsnorm(int64_t rows, int64_t C, const float *y, const float *z, const float *w, float eps,
                       float *out);
/* In place on x [B, T, n_heads*dh]: pair (2i, 2i+1) of each head rotates by the angle
 * (pos0[b] + t) * theta^(-2i/dh). */
void ref_rope(int64_t B, int64_t T, int n_heads, int dh, float *x, const int32_t *pos0, float theta);
/* The rotation by sign * angle (sign -1: the backward pass, the transpose of the rotation). */
void ref_rope_rotate(int64_t B, int64_t T, int n_heads, int dh, float *x, const int32_t *pos0, float theta,
                     double sign);
/* out = silu(gate) * up over n elements. */
void ref_swiglu(int64_t n, const float *gate, const float *up, float *out);
/* out[r, :] = table[ids[r], :] for r < n_ids, a zero row for ids outside [0, V). */
void ref_embedding(int64_t n_ids, const int32_t *ids, int64_t V, int64_t d, const float *table, float *out);
/* out[r, :] = x[r, :] + bias over rows x C. */
void ref_add_bias(int64_t rows, int64_t C, const float *x, const float *bias, float *out);

#endif
