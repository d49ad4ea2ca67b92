/* kv_cache.h: what decoding keeps per layer (SPEC 4). Attamba: the K/V of every boundary seen so far
 * (grows ~T/P), a ring of the last L+1 K/V, the conv windows and SSM states of the open segment.
 * Transformer: every token's K/V (the "boundary" store with L = 0). Sliding window: the ring only.
 * Each sequence of the batch has its own position. */
#ifndef ATTAMBA_KV_CACHE_H
#define ATTAMBA_KV_CACHE_H

#include "model.h"

typedef struct kv_layer {
    tensor kb, vb;          /* [B, Hkv, cap, dh] stored keys/values (boundaries, or all tokens), head-major, f32/f16 */
    tensor bpos;            /* i32 [B, cap] their positions */
    tensor nb;              /* i32 [B] how many are stored */
    int64_t *nb_host;       /* [B] the same on the host */
    tensor kr, vr;          /* [B, R, kvw] the ring: position p in slot p % R */
    tensor conv[2];         /* attamba: [B, w, E+2GN] pre-conv inputs (xs, B, C) of the K and V SSMs: a ring,
                               position q in slot q % w (the last w-1 are the state; the step writes the w-th) */
    tensor state[2];        /* attamba: [B, nh, p, N] SSM states */
    tensor conv_all, state_all; /* the allocations conv[] and state[] are views of: K's, then V's */
    int64_t *seg_first;     /* attamba: [B] the first position of the segment of each sequence's last token */
} kv_layer;

/* The public attamba_session (include/attamba/attamba.h): B = 1, or a batch of sequences. */
typedef struct attamba_session {
    model *m;
    int B;
    int64_t max_tokens;     /* capacity per sequence */
    int cap, R;             /* stored-row capacity, ring length */
    int window;             /* the window the decode kernel uses (0 for a full cache) */
    int store_all;          /* transformer or pseudo: every token is stored */
    int64_t *pos;           /* [B] next position of each sequence */
    kv_layer *layers;
    model_workspace *ws;    /* the decode step's activations and step table, resident on the device: one per
                               stage of a layer split (each layer's cache lives on its stage's device) */
    int n_ws;
    int32_t *step_host;     /* [(2 + 2L) * B] the step table on the host */
} kv_cache;

/* A cache for B sequences of up to max_tokens tokens under the model's current P, L, boundaries, its
 * stored keys and values of type store (TENSOR_F32, or TENSOR_F16: half the bytes; the ring and the SSM
 * states stay f32). */
attamba_status kv_cache_create(model *m, int B, int64_t max_tokens, tensor_dtype store, kv_cache **out);
/* The store type of a public attamba_cache_type; ATTAMBA_ERR_INVALID_ARG (the message naming op) for
 * any other value. */
attamba_status kv_cache_store_type(rt_ctx *ctx, const char *op, attamba_cache_type t, tensor_dtype *out);
void kv_cache_destroy(kv_cache *c);
/* Forgets sequence b (or all when b < 0). */
void kv_cache_reset(kv_cache *c, int b);
/* Bytes the cache holds now for sequence b (SPEC 4: (|B| + min(pos, L+1)) * 2 * kvw * 4 + constant
 * per layer; 2 bytes instead of 4 for the |B| stored rows of an f16 store), and the bytes allocated for
 * the whole batch. */
int64_t kv_cache_bytes_used(const kv_cache *c, int b);
int64_t kv_cache_bytes_allocated(const kv_cache *c);

/* Puts every sequence at position T as if T tokens had been decoded, with every stored row and
 * state set to a constant: for measuring decode speed at long contexts (a step's cost depends on
 * how many rows it reads, not on their values) without prefilling T tokens. */
attamba_status kv_cache_fill_synthetic(kv_cache *c, int64_t T);

/* The first position of the segment holding position p in layer l. */
int64_t kv_cache_segment_first(const kv_cache *c, int l, int64_t p);
/* Whether layer l keeps position p's key and value in its store (a boundary, or every token). */
int kv_cache_stores(const kv_cache *c, int l, int64_t p);

/* Prefill: sequence b of the cache (which must be empty) takes tokens[0..T); logits [1,T,V] when not
 * NULL. Same math as model_forward. */
attamba_status model_prefill(model *m, kv_cache *c, int b, const int32_t *tokens, int T, tensor *logits);
/* The same, with the logits of the last position only: [1, V] (what generation reads). */
attamba_status model_prefill_last(model *m, kv_cache *c, int b, const int32_t *tokens, int T, tensor *logits);
/* One decode step: tokens[b] is appended to every sequence but those given ATTAMBA_TOKEN_SKIP, which
 * stay as they are (their row of logits is computed and meaningless); logits [B,V] allocated here. */
attamba_status model_decode_step(model *m, kv_cache *c, const int32_t *tokens, tensor *logits);

/* Where the prefill of one sequence leaves an SSM's decode state: views into the cache
 * ([1, w, E+2GN] conv input ring, [1, nh, p, N] state) and the first position of the segment the
 * last token belongs to. */
typedef struct ssm_tail {
    tensor conv;
    tensor state;
    int64_t seg_first;
} ssm_tail;
/* Internal (layer.c): views of sequence b's decode state of SSM i (0 = K, 1 = V) in layer l, for a
 * prefill of T tokens; free with ssm_tail_free. */
attamba_status kv_cache_ssm_tail(kv_cache *c, int b, int l, int i, int64_t T, ssm_tail *tail);
void ssm_tail_free(ssm_tail *t);
/* Internal: rows [from, from+n) of batch sb of src [B, T, C] to rows [to, to+n) of batch db of dst. */
attamba_status kv_copy_rows(const tensor *src, int sb, int64_t from, tensor *dst, int db, int64_t to, int64_t n);
/* Internal (model.c): stores sequence b's roped k, v [1, T, kvw] of layer l after a prefill. */
attamba_status kv_cache_fill_layer(kv_cache *c, int b, int l, const tensor *k, const tensor *v);

#endif
