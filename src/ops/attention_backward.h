/* attention_backward.h: gradients of ops_attention_prefill (causal, sliding, compressed; SPEC 3.3),
 * for training. Flash-style: the kernels visit the (query, key) pairs the forward visits and no
 * others, never build a T x T matrix or a dense mask, use no atomics and are deterministic. */
#ifndef ATTAMBA_OPS_ATTENTION_BACKWARD_H
#define ATTAMBA_OPS_ATTENTION_BACKWARD_H

#include "attention.h"

/* Gradients of ops_attention_prefill (same q, k, v, heads, mask): given the forward output
 * out [B,T,H*dh] and dout [B,T,H*dh], writes dq [B,T,H*dh], dk, dv [B,T,Hkv*dh] (overwritten; with
 * GQA, dk/dv sum over the query heads of each kv head). The row log-sum-exp is recomputed here
 * (online, in the same pass over the keys that computes dq), so the forward needs no change.
 * Three launches: a query-centred pass (dq, and the row log-sum-exp and dout . out into two [B,H,T]
 * scratch tensors), a key-centred pass over each key's window queries (dk, dv), and for COMPRESSED a
 * key-centred pass over each boundary's later queries (added to its row); on CPUs (per_item below)
 * the second pass takes each boundary's later queries too, so two launches. dq, dk, dv must not share
 * a buffer with each other or with the inputs. COMPRESSED downloads the boundaries to check them
 * (one wait for the queue), like the forward. */
attamba_status ops_attention_prefill_backward(rt_ctx *ctx, const tensor *q, const tensor *k, const tensor *v,
                                              int n_heads, int n_kv_heads, const attn_mask *mask,
                                              const tensor *out, const tensor *dout, tensor *dq, tensor *dk,
                                              tensor *dv);

/* Kernel variants, for tests and benchmarks; zero fields mean "the device's default".
 * block_q: queries per work-group of the dq pass (1..256), tile_k: keys per tile there (1..16);
 * block_k: keys per work-group of the dk/dv passes (1..256), tile_q: queries per tile there (1..16);
 * use_local: 1 = tiles through __local (GPU default), 2 = straight from global (CPU default);
 * per_item: 1 = every work-item walks exactly its own (query, key) pairs, no masked triangles, one
 * dk/dv launch (CPU default; needs use_local off), 2 = the group's uniform walk (GPU default). */
typedef struct attn_backward_opts {
    int block_q;
    int tile_k;
    int block_k;
    int tile_q;
    int use_local;
    int per_item;
    int gemm_block; /* through the GEMM (attention.h): queries per block; 0 the table's attn.gemm_bq, -1 off */
    int slices; /* attn_bwd_*_slices: work-items per row (at most); 0 the table's attn.slices, -1 off.
                 * The group walk with __local rows: use_local and per_item do not apply. */
} attn_backward_opts;
attamba_status ops_attention_prefill_backward_with(rt_ctx *ctx, const tensor *q, const tensor *k,
                                                   const tensor *v, int n_heads, int n_kv_heads,
                                                   const attn_mask *mask, const tensor *out,
                                                   const tensor *dout, const attn_backward_opts *opts,
                                                   tensor *dq, tensor *dk, tensor *dv);

#endif
