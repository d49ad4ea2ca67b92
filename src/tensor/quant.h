/* quant.h: host conversions between f32 and the low-precision weight storage types (f16 and the
 * q8 blocks of tensor.h; layouts in docs/weights.md). Plain C: the load path uses them to store
 * weights, the tests as the reference that the kernels' dequantisation must match. */
#ifndef ATTAMBA_TENSOR_QUANT_H
#define ATTAMBA_TENSOR_QUANT_H

#include "tensor.h"

/* IEEE binary16, rounded to nearest even; overflow gives infinity, NaN stays NaN. */
uint16_t quant_f16_from_f32(float x);
float quant_f32_from_f16(uint16_t h);

/* Bytes of n values stored as t (f32, f16 or q8; q8 needs n % TENSOR_Q8_BLOCK == 0). */
size_t quant_bytes(tensor_dtype t, int64_t n);
/* n values of src into dst (quant_bytes(t, n) bytes). q8: per block of 32, d = max|x| / 127 and
 * q = round(x / d) (all zero for an all-zero block). */
void quant_encode(tensor_dtype t, const float *src, int64_t n, void *dst);
/* The values dst as the kernels read them back: n floats. */
void quant_decode(tensor_dtype t, const void *src, int64_t n, float *dst);

#endif
