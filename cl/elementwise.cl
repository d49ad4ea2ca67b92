/* elementwise.cl: contiguous elementwise ops; offsets in elements. */

__kernel void add_f32(__global float *out, int oo, __global const float *a, int ao,
                      __global const float *b, int bo, int n) {
    int i = get_global_id(0);
    if (i < n) out[oo + i] = a[ao + i] + b[bo + i];
}

__kernel void mul_f32(__global float *out, int oo, __global const float *a, int ao,
                      __global const float *b, int bo, int n) {
    int i = get_global_id(0);
    if (i < n) out[oo + i] = a[ao + i] * b[bo + i];
}

__kernel void scale_f32(__global float *out, int oo, __global const float *x, int xo, float alpha, int n) {
    int i = get_global_id(0);
    if (i < n) out[oo + i] = alpha * x[xo + i];
}

__kernel void silu_f32(__global float *out, int oo, __global const float *x, int xo, int n) {
    int i = get_global_id(0);
    if (i < n) {
        float v = x[xo + i];
        out[oo + i] = v * atb_sigmoid(v);
    }
}
