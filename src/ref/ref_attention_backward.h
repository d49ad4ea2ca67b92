/* ref_attention_backward.h: plain-C dense backward of the masked attention of ref_attention.h:
 * the oracle for ops_attention_prefill_backward. Visits all T x T (query, key) pairs, applies
 * the SPEC 3.3 mask explicitly and accumulates in double. */
#ifndef ATTAMBA_REF_ATTENTION_BACKWARD_H
#define ATTAMBA_REF_ATTENTION_BACKWARD_H

#include <stdint.h>

/* Gradients of out = softmax(q k^T / sqrt(dh) + mask) v (ref_attention, same arguments) given
 * dout [B,T,H*dh]: dq [B,T,H*dh], dk, dv [B,T,Hkv*dh] (overwritten; with GQA dk/dv sum over the
 * query heads of each kv head). mode as attn_mode (0 causal, 1 sliding, 2 compressed);
 * is_boundary [T] flags (may be NULL for modes 0 and 1). The probabilities and the output are
 * recomputed here in double, so no forward result is needed. */
void ref_attention_backward(int B, int T, int H, int Hkv, int dh, const float *q, const float *k,
                            const float *v, const float *dout, int mode, int window,
                            const uint8_t *is_boundary, float *dq, float *dk, float *dv);

#endif
