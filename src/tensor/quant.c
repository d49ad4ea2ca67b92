#include <math.h>
#include <string.h>

#include "quant.h"

uint16_t quant_f16_from_f32(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    uint32_t sign = (b >> 16) & 0x8000u, exp = (b >> 23) & 0xffu, man = b & 0x7fffffu;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0)); /* inf, NaN (quiet) */
    int e = (int)exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) { /* subnormal half (or zero): shift the full mantissa, round to nearest even */
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000u;
        int shift = 14 - e;
        uint32_t h = man >> shift, rest = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rest > half || (rest == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (man >> 13), rest = man & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1))) h++; /* a carry into the exponent is right, up to inf */
    return (uint16_t)(sign | h);
}

float quant_f32_from_f16(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                exp--;
            }
            bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

size_t quant_bytes(tensor_dtype t, int64_t n) {
    return t == TENSOR_Q8 ? (size_t)(n / TENSOR_Q8_BLOCK) * TENSOR_Q8_BYTES : (size_t)n * tensor_dtype_size(t);
}

void quant_encode(tensor_dtype t, const float *src, int64_t n, void *dst) {
    unsigned char *out = dst;
    if (t == TENSOR_F16) {
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = quant_f16_from_f32(src[i]);
            memcpy(out + 2 * i, &h, 2);
        }
    } else if (t == TENSOR_Q8) {
        for (int64_t b = 0; b < n / TENSOR_Q8_BLOCK; b++, out += TENSOR_Q8_BYTES) {
            const float *x = src + b * TENSOR_Q8_BLOCK;
            float amax = 0.0f;
            for (int i = 0; i < TENSOR_Q8_BLOCK; i++) amax = fmaxf(amax, fabsf(x[i]));
            float d = amax / 127.0f;
            memcpy(out, &d, 4);
            for (int i = 0; i < TENSOR_Q8_BLOCK; i++) {
                float q = d > 0.0f ? roundf(x[i] / d) : 0.0f;
                out[4 + i] = (unsigned char)(signed char)fmaxf(-127.0f, fminf(127.0f, q));
            }
        }
    } else {
        memcpy(dst, src, (size_t)n * sizeof *src);
    }
}

void quant_decode(tensor_dtype t, const void *src, int64_t n, float *dst) {
    const unsigned char *in = src;
    if (t == TENSOR_F16) {
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, in + 2 * i, 2);
            dst[i] = quant_f32_from_f16(h);
        }
    } else if (t == TENSOR_Q8) {
        for (int64_t b = 0; b < n / TENSOR_Q8_BLOCK; b++, in += TENSOR_Q8_BYTES) {
            float d;
            memcpy(&d, in, 4);
            for (int i = 0; i < TENSOR_Q8_BLOCK; i++) dst[b * TENSOR_Q8_BLOCK + i] = d * (float)(signed char)in[4 + i];
        }
    } else {
        memcpy(dst, src, (size_t)n * sizeof *dst);
    }
}
