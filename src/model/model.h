/* model.h: the Attamba language model and its transformer baselines (SPEC 3) on one device:
 * weights, prefill (a batch of sequences to logits), run-time overrides of P, L and boundaries.
 * The model never mentions OpenCL: it calls ops on tensors. */
#ifndef ATTAMBA_MODEL_H
#define ATTAMBA_MODEL_H

#include "config.h"
#include "tensor/tensor.h"
#include "weights.h"

struct kv_cache;

typedef struct ssm_weights {
    tensor in_z, in_xs, in_b, in_c, in_dt;  /* row blocks of in_proj: [E|E|GN|GN|nh, d] */
    tensor conv_xs, conv_b, conv_c;         /* row blocks of conv1d.weight [E|GN|GN, w]; empty when w = 0 */
    const tensor *dt_bias, *A_log, *D, *norm, *out_proj;
} ssm_weights;

typedef struct layer_weights {
    const tensor *attn_norm, *wq, *wk, *wv, *wo, *ffn_norm, *w1, *w2, *w3;
    ssm_weights ssm[2];  /* K and V (attamba only) */
} layer_weights;

typedef struct model {
    rt_ctx *ctx;
    model_config cfg;  /* as trained, plus any run-time overrides of chunk/window/boundaries */
    model_weights w;
    layer_weights *layers;
    const tensor *tok_emb, *norm, *output;
} model;

/* A model with allocated, uninitialised weights. */
attamba_status model_create(rt_ctx *ctx, const model_config *cfg, model **out);
void model_destroy(model *m);
/* Seeded init of all weights (weights_init_host), uploaded. */
attamba_status model_init_random(model *m, uint64_t seed);
/* dir/config.json and dir/model.safetensors. Messages go to the context (attamba_context_last_error). */
attamba_status model_load(rt_ctx *ctx, const char *dir, model **out);
/* Writes dir/config.json and dir/model.safetensors (each via a temporary file); creates dir. */
attamba_status model_save(const model *m, const char *dir);

/* Test-time overrides (the paper's "smooth transition"): chunk <= 0 / window < 0 / boundaries NULL
 * keep the current value; boundaries is "uniform", "cyclic", "random" or "random:SEED". */
attamba_status model_set_attention(model *m, int chunk, int window, const char *boundaries);

/* Logits [B,T,V] for tokens (host, B*T ids, row-major; every id in [0, V)). All sequences start at
 * position 0; a shorter sequence can be padded at the end, since padding never affects earlier
 * positions. *logits is allocated here; the caller frees it. */
attamba_status model_forward(model *m, const int32_t *tokens, int B, int T, tensor *logits);

/* ---- internal, shared with the KV cache and the trainer ---- */

/* Where the prefill of one sequence leaves an SSM's decode state: views into the cache
 * ([1, w-1, E|GN|GN] conv inputs, [1, nh, p, N] state) and the first position of the segment the
 * last token belongs to. */
typedef struct ssm_tail {
    tensor conv[3];
    tensor state;
    int64_t seg_first;
} ssm_tail;

/* One SSM's activations over [B,T]: projections z [E], xs_in [E], b_in, c_in [GN], dt [nh]; conv
 * (+SiLU) outputs xs, bm, cm; scan output y [E]; gated-norm output g [E]. */
typedef struct ssm_acts {
    tensor z, xs_in, b_in, c_in, dt, xs, bm, cm, y, g;
} ssm_acts;

/* One layer's activations. Inference shares one set across layers with h_in == h_mid == h_out
 * (the residual stream is updated in place); training keeps a set per layer and distinct streams. */
typedef struct layer_acts {
    tensor *h_in, *h_mid, *h_out;  /* residual stream before the layer, after attention, after the FFN */
    tensor x, q, k, v, o, y, f1, f3; /* x, y: the normed inputs of attention and FFN; q, k roped */
    tensor hid;                     /* silu(f1) * f3, the input of W2 */
    ssm_acts ssm[2];
    tensor bpos, seg;               /* attamba: boundary positions and segment starts of this layer */
} layer_acts;

/* Allocates every tensor of a (not the h_* pointers) for B sequences of T tokens. */
attamba_status model_acts_alloc(model *m, int B, int T, layer_acts *a);
void model_acts_free(layer_acts *a);
/* Layer l over a->h_in (positions pos0 [B] + t), writing the activations, a->h_mid and a->h_out.
 * With a cache (B = 1) it also stores sequence b's decode state for this layer. */
attamba_status model_layer_forward(model *m, int l, layer_acts *a, const tensor *pos0, struct kv_cache *cache,
                                   int b);
/* kv = x + SSM(x) over x [B,T,d] with segment starts, keeping the activations in a. With tail (B = 1),
 * also the decode state after the last token. */
attamba_status model_ssm_forward(model *m, const ssm_weights *w, const tensor *x, const tensor *seg_start,
                                 ssm_acts *a, tensor *kv, const ssm_tail *tail);
/* y = x W^T (+ y when accumulate): x [..., in], W [out, in], y [..., out]. */
attamba_status model_linear(model *m, const tensor *x, const tensor *W, int accumulate, tensor *y);
/* The boundary positions of layer l below T as a new i32 tensor [nb] (nb >= 1), and the segment
 * starts [T] when seg is not NULL. */
attamba_status model_boundaries(model *m, int layer, int T, tensor *positions, tensor *seg);

#endif
