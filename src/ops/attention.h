/* attention.h: causal, sliding-window and compressed (Attamba, SPEC 3.3) attention, forward, f32.
 * Prefill visits only the keys the mask allows (flash-style online softmax, no T x T mask);
 * decode reads a compact boundary cache plus a ring of the last window+1 tokens. */
#ifndef ATTAMBA_OPS_ATTENTION_H
#define ATTAMBA_OPS_ATTENTION_H

#include "ops.h"

typedef enum { ATTN_CAUSAL = 0, ATTN_SLIDING = 1, ATTN_COMPRESSED = 2 } attn_mode;

/* Query t may see key s iff s <= t and: CAUSAL: always; SLIDING: t - s <= window;
 * COMPRESSED: s is a boundary (in `boundaries`) or t - s <= window. ("pseudo" Attamba == CAUSAL.) */
typedef struct attn_mask {
    attn_mode mode;
    int window;                 /* L >= 0 (unused for CAUSAL) */
    const tensor *boundaries;   /* COMPRESSED: i32 [nb], sorted absolute positions, boundaries[0] == 0 */
    int trusted;                /* the caller made and checked the boundaries (the model's boundary plan):
                                   skip reading them back to check them */
    const int32_t *host;        /* COMPRESSED, optional: the same boundaries on the host, for the GEMM path's
                                   plan (without them it downloads the list: a wait for the queue) */
} attn_mask;

/* q [B,T,H*dh], k,v [B,T,Hkv*dh], out [B,T,H*dh]; H % Hkv == 0; query head j uses kv head j/(H/Hkv);
 * softmax(q k^T / sqrt(dh) + mask) v. Never builds or scans a T x T mask: per query the work is
 * about (#boundaries before its window) + (window + 1) keys, plus the rest of its query block.
 * COMPRESSED downloads the (small) boundaries tensor to check it is sorted, starts at 0 and stays
 * below T (that one read waits for the queue), unless mask->trusted. */
attamba_status ops_attention_prefill(rt_ctx *ctx, const tensor *q, const tensor *k, const tensor *v, int n_heads,
                                     int n_kv_heads, const attn_mask *mask, tensor *out);

/* Kernel variants, for tests and benchmarks; zero fields mean "the device's default".
 * block_q: queries per work-group (1..256); tile_k: keys per tile (1, 2, 4, 8 or 16);
 * use_local: 1 = key tiles through __local, 2 = keys straight from global (the defaults depend on the
 * device and on how many keys a query block shares: see attention.c);
 * vec_width: floats per vector in the head dim (1, 4, 8 or 16, dividing dh; default the largest);
 * compact (COMPRESSED only): 1 = first gather the boundary rows into a head-major copy and stream
 * that (the default; two temporary [B, Hkv, nb, dh] buffers), 2 = read them from k/v in place. */
typedef struct attn_prefill_opts {
    int block_q;
    int tile_k;
    int use_local;
    int vec_width;
    int compact;
    int lanes;  /* dense causal: queries per work-item of attn_causal_lanes; 0 the table's attn.rq, -1 off */
    int gemm_block; /* through the GEMM: queries per block; 0 the table's attn.gemm_bq, -1 off */
    int slices; /* attn_prefill_slices: work-items per query (at most); 0 the table's attn.slices, -1 off.
                 * block_q and tile_k apply; use_local and vec_width do not. */
    int qv;     /* compressed and sliding: float8s of queries per work-item of attn_lanes; 0 the table's
                 * attn.qv (unless gemm_block > 0), -1 off */
    int rk;     /* attn_lanes: keys per group (1 to 16); 0 the table's attn.rk */
} attn_prefill_opts;
attamba_status ops_attention_prefill_with(rt_ctx *ctx, const tensor *q, const tensor *k, const tensor *v,
                                          int n_heads, int n_kv_heads, const attn_mask *mask,
                                          const attn_prefill_opts *opts, tensor *out);

/* Argument checks shared by the prefill forward (attention.c) and backward (attention_backward.c).
 * attn_check_prefill: mask mode and window, q contiguous f32 [B, T, H*dh], head counts (H a multiple
 * of Hkv, dh in [1, 256]), k and v contiguous f32 [B, T, Hkv*dh]; sets *dh.
 * attn_check_boundaries: checks the boundary list is a contiguous 1-D i32 of at most T and, unless
 * trusted, downloads it (small) to check it starts at 0, strictly increases and stays < T; sets *nb. */
attamba_status attn_check_prefill(rt_ctx *ctx, const char *op, const tensor *q, const tensor *k, const tensor *v,
                                  int n_heads, int n_kv_heads, const attn_mask *mask, int *dh);
/* Floats per vector along the head dim: the largest of 16, 8, 4, 1 dividing dh (16 measured 10-20%
 * faster than 8 on an AVX2 CPU too; the kernels move float16 as float8 halves), or the largest of them
 * at most `most`. */
int attn_vec_width(int dh);
int attn_vec_width_max(int dh, int most);
/* Work-items sharing a row of dh in the sliced kernels: the largest power of two up to `most` dividing dh. */
int attn_slices_per_row(int dh, int most);
attamba_status attn_check_boundaries(rt_ctx *ctx, const char *op, const tensor *bt, int trusted, int64_t T, int *nb);

/* Attention through the GEMM (attention_gemm.c, the CPU path), every mask: per block of queries, batched
 * GEMMs of the scores of every head against the block's keys (its window range, and for compressed
 * masks the boundaries before it, gathered once) into a scratch [H, bq, keys], a row pass
 * (cl/attention_rows.cl), GEMMs by V; the backward the GEMMs of dP, dq, dk and dv. Each decides
 * first: *taken = 0 (and nothing enqueued) leaves the call to the kernels, when the table's
 * attn.gemm_bq is 0 (GPUs), when the block's scores would be more than 1.6x the (query, key) pairs the
 * mask allows (short windows with few boundaries), or when a score buffer would pass 64 MiB even at 16
 * queries. want > 0: that block size, whatever it wastes; want < 0: the kernels. A compressed mask's
 * boundaries come from mask->host, else they are downloaded (a wait for the queue). The arguments
 * must have passed attn_check_prefill (and the boundary checks). */
attamba_status attn_gemm_prefill(rt_ctx *ctx, const tensor *q, const tensor *k, const tensor *v, int n_heads,
                                 int n_kv_heads, int dh, const attn_mask *mask, int want, tensor *out, int *taken);
attamba_status attn_gemm_backward(rt_ctx *ctx, const tensor *q, const tensor *k, const tensor *v, int n_heads,
                                  int n_kv_heads, int dh, const attn_mask *mask, int want, const tensor *dout,
                                  tensor *dq, tensor *dk, tensor *dv, int *taken);

/* The boundary rows of x [B, T, nh * dh] into a compact head-major copy xc [B, nh, nb, dh] (to), or
 * added back to x's rows (!to); the mask's boundaries, on the device (attn_rows_gather and
 * attn_rows_scatter_add, cl/attention_rows.cl). */
attamba_status attn_bnd_move(rt_ctx *ctx, const attn_mask *mask, tensor *xc, const tensor *x, int to);

/* out[b,i,:] = src[b, idx[i], :]: src [B,T,C], idx i32 [n], out [B,n,C] (gathers boundary K/V).
 * Indices outside [0, T) are clamped (the device cannot report them without a host wait). */
attamba_status ops_gather_rows(rt_ctx *ctx, const tensor *src, const tensor *idx, tensor *out);

/* Decode: one query per sequence at absolute position pos[b] (i32 [B]). The KV cache layout:
 * boundary cache kb,vb [B,cap,Hkv*dh], or head-major [B,Hkv,cap,dh] (each head's keys one contiguous
 * stream: about 2x faster on CPUs at long contexts), f32 or f16 (half the bytes to read), with positions
 * bpos i32 [B,cap] (increasing) and counts nb i32 [B]; a ring kr,vr [B,R,Hkv*dh] (R = window+1) holding
 * positions p in slot p % R, the current token already written. The query sees ring entries for
 * positions max(0,pos-window)..pos and boundary entries with bpos < pos - window (so nothing is visited
 * twice). With window = 0 and every token a boundary this is a plain full-cache transformer; with nb = 0
 * a sliding-window one.
 * q [B,H*dh], out [B,H*dh]. nb is clamped to [0, cap] on the device. */
attamba_status ops_attention_decode(rt_ctx *ctx, const tensor *q, const tensor *kb, const tensor *vb,
                                    const tensor *bpos, const tensor *nb, const tensor *kr, const tensor *vr,
                                    const tensor *pos, int n_heads, int n_kv_heads, int window, tensor *out);

/* Decode: appends one step's k, v [B, Hkv*dh] (contiguous) to the cache of ops_attention_decode:
 * to the ring kr, vr [B, R, C] at slot pos[b] % R and, where store[b] >= 0 (i32 [B]), to row store[b]
 * of kb, vb ([B, cap, C] or head-major [B, Hkv, cap, dh]; f16 ones take k, v rounded to the nearest half)
 * with bpos[b, store[b]] = pos[b] and nb[b] = store[b] + 1. One launch, no
 * host round-trip: the caller (who knows the counts) decides the rows. */
attamba_status ops_kv_append(rt_ctx *ctx, const tensor *k, const tensor *v, const tensor *pos, const tensor *store,
                             tensor *kr, tensor *vr, tensor *kb, tensor *vb, tensor *bpos, tensor *nb);
/* The decode step's RoPE and append: ops_rope2 of q [B, q_heads*dh] and k [B, k_heads*dh] (contiguous) at
 * positions pos (both rotated in place), then ops_kv_append of k and v. One launch where dh % 8 == 0,
 * else two. */
attamba_status ops_kv_append_rope(rt_ctx *ctx, tensor *q, int q_heads, tensor *k, int k_heads, const tensor *v,
                                  const tensor *pos, float theta, const tensor *store, tensor *kr, tensor *vr,
                                  tensor *kb, tensor *vb, tensor *bpos, tensor *nb);

/* The checks of ops_kv_append (op names the caller in messages), and the cache's layout they find: for
 * kernels that append as kv_append does (ops_ssm_decode_append). */
typedef struct ops_kv_layout {
    int64_t B, C, R, cap; /* sequences, k's width, ring slots, store rows */
    int dh, bs, hs, es;   /* the store's head width; elements between its sequences, heads, rows */
    const char *option;   /* the kernels' store type: "" (f32) or " -DKV_F16=1" */
} ops_kv_layout;
attamba_status ops_kv_check(rt_ctx *ctx, const char *op, const tensor *k, const tensor *v, const tensor *pos,
                            const tensor *store, const tensor *kr, const tensor *vr, const tensor *kb,
                            const tensor *vb, const tensor *bpos, const tensor *nb, ops_kv_layout *L);
/* ... and those of ops_kv_append_rope's RoPE (q, k contiguous, q apart from v): *dq, the heads' width. */
attamba_status ops_kv_rope_check(rt_ctx *ctx, const char *op, const tensor *q, int q_heads, const tensor *k,
                                 int k_heads, const tensor *v, const tensor *pos, float theta, int *dq);

#endif
