/* ref_attention.h: plain-C dense attention with the SPEC 3.3 mask applied explicitly: the oracle
 * for ops_attention_prefill / ops_attention_decode. Visits all T x T (query, key) pairs. */
#ifndef ATTAMBA_REF_ATTENTION_H
#define ATTAMBA_REF_ATTENTION_H

#include <stdint.h>

/* mode as attn_mode: 0 causal, 1 sliding, 2 compressed. is_boundary[s] (T flags, may be NULL for
 * modes 0 and 1): whether key s is a boundary. */
int ref_attention_allowed(int mode, int window, const uint8_t *is_boundary, int t, int s);

/* q [B,T,H*dh], k,v [B,T,Hkv*dh], out [B,T,H*dh]; query head j uses kv head j / (H/Hkv).
 * out = softmax(q k^T / sqrt(dh) + mask) v, in double, the mask built from ref_attention_allowed. */
void ref_attention(int B, int T, int H, int Hkv, int dh, const float *q, const float *k, const float *v, int mode,
                   int window, const uint8_t *is_boundary, float *out);

/* The number of (query, key) pairs the mask allows over t, s in [0, T), counted pair by pair. */
int64_t ref_attention_key_visits(int T, int mode, int window, const uint8_t *is_boundary);

/* is_boundary flags [T] from a sorted list of nb positions (positions >= T are ignored). */
void ref_boundary_flags(int T, const int64_t *b, int64_t nb, uint8_t *is_boundary);

/* ops_kv_append: k, v [B,C] into ring kr, vr [B,R,C] at slot pos[b] % R and, where 0 <= store[b] < cap,
 * into kb, vb [B,cap,C] row store[b], with bpos[b*cap + store[b]] = pos[b], nb[b] = store[b] + 1. */
void ref_kv_append(int B, int C, int R, int cap, const float *k, const float *v, const int32_t *pos,
                   const int32_t *store, float *kr, float *vr, float *kb, float *vb, int32_t *bpos, int32_t *nb);

#endif
