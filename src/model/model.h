/* model.h: the Attamba language model and its transformer baselines (SPEC 3) on one device:
 * weights, prefill (a batch of sequences to logits), run-time overrides of P, L and boundaries.
 * The model never mentions OpenCL: it calls ops on tensors. */
#ifndef ATTAMBA_MODEL_H
#define ATTAMBA_MODEL_H

#include "config.h"
#include "tensor/tensor.h"
#include "weights.h"
#include "ops/attention.h"
#include "ops/boundaries.h"

struct attamba_session;

typedef struct ssm_weights {
    tensor in_z, in_xbcdt;   /* row blocks of in_proj [E | E+2GN+nh, d]: the gate, then xs, B, C and dt */
    const tensor *conv;      /* conv1d.weight [E+2GN, w] over xs, B, C; NULL when w = 0 */
    const tensor *dt_bias, *A_log, *D, *norm, *out_proj;
} ssm_weights;

typedef struct layer_weights {
    const tensor *attn_norm, *wq, *wk, *wv, *wo, *ffn_norm, *w1, *w2, *w3;
    ssm_weights ssm[2];  /* K and V (attamba only) */
} layer_weights;

struct model_workspace;

/* The public attamba_model (include/attamba/attamba.h). */
typedef struct attamba_model model;
struct attamba_model {
    rt_ctx *ctx;
    model_config cfg;  /* as trained, plus any run-time overrides of chunk/window/boundaries */
    model_weights w;
    layer_weights *layers;
    const tensor *tok_emb, *norm, *output;
    struct model_workspace *ws; /* prefill activations, kept between calls (layer.c) */
    /* Layer split (model_load_split): this model holds layers [first_layer, end_layer) only (with the
     * embedding when first, the final norm and output layer when last) and hands its hidden state to
     * `next`, the stage on the next device. A whole model: [0, n_layers), next NULL. */
    int first_layer, end_layer;
    model *next;
    struct attamba_tokenizer *tok; /* made by attamba_model_tokenizer on first use (api.c) */
    void *tok_file;                /* a sentencepiece config's tokenizer file, read whole (first stage only): */
    size_t tok_file_size;          /* model_save writes it beside the config */
    int n_sessions;                /* public sessions open on the model (api.c) */
    char *config_json;             /* attamba_model_config's text, made on each call (api.c) */
    /* Row split (ATTAMBA_SPLIT_ROWS, api.c): whole copies of the model, replicas[0] being this one and
     * the others on the other devices, and each one's share of a batch's rows (NULL: equal); n_replicas
     * is 0 for a model that is not row-split. attamba_model_destroy destroys the copies. */
    model **replicas;
    double *row_share;
    int n_replicas;
};

/* A model with allocated, uninitialised weights (and the tokenizer file of a sentencepiece config, read
 * from cfg->tokenizer_path and checked). */
attamba_status model_create(rt_ctx *ctx, const model_config *cfg, model **out);
void model_destroy(model *m);
/* Internal (api.c): frees m->tok. */
void model_tokenizer_free(model *m);
/* Seeded init of all weights (weights_init_host), uploaded. */
attamba_status model_init_random(model *m, uint64_t seed);
/* dir/config.json and dir/model.safetensors (and the tokenizer file a sentencepiece config names, which
 * must agree with the config's vocab_size, bos_id and eos_id). Messages go to the context
 * (attamba_context_last_error). */
attamba_status model_load(rt_ctx *ctx, const char *dir, model **out);
/* Writes dir/config.json and dir/model.safetensors (and the tokenizer file), each via a temporary file;
 * creates dir. */
attamba_status model_save(const model *m, const char *dir);

/* The model in dir with its layers spread over the devices ctxs[0..n-1], in proportion to share
 * (NULL: equal; llama.cpp's --tensor-split), each device holding only its layers' weights: a pipeline
 * of stages linked by `next`, whose forward hands the hidden state from device to device (through
 * host memory), and whose KV caches keep each layer's state on that layer's device. A device whose
 * share rounds to no layer is left out. Training and saving need a whole model (they refuse a split
 * one). Messages go to ctxs[0]. */
attamba_status model_load_split(rt_ctx *const *ctxs, int n, const char *dir, const double *share, model **out);
/* The same for a config, with uninitialised weights (model_init_random fills every stage). */
attamba_status model_create_split(rt_ctx *const *ctxs, int n, const model_config *cfg, const double *share,
                                  model **out);

/* The stage holding layer l (the model itself unless it is layer-split), and the number of stages. */
model *model_stage(model *m, int l);
int model_stages(const model *m);

/* Test-time overrides (the paper's "smooth transition"): chunk <= 0 / window < 0 / boundaries NULL
 * keep the current value; boundaries is "uniform", "cyclic", "random" or "random:SEED". */
attamba_status model_set_attention(model *m, int chunk, int window, const char *boundaries);

/* Logits [B,T,V] for tokens (host, B*T ids, row-major; every id in [0, V)). All sequences start at
 * position 0; a shorter sequence can be padded at the end, since padding never affects earlier
 * positions. *logits comes from the context's scratch pool; the caller frees it. */
attamba_status model_forward(model *m, const int32_t *tokens, int B, int T, tensor *logits);

/* The summed cross-entropy of the scored targets (ids != -1; B*T host ids as for the tokens) under
 * the model, and how many were scored. */
attamba_status model_loss(model *m, const int32_t *tokens, const int32_t *targets, int B, int T, double *sum,
                          int64_t *count);
/* The same with the B rows shared out over n replicas of one model (one per device, each on its own
 * host thread; equal shares): evaluation over a device set. Messages go to ms[0]'s context. */
attamba_status model_loss_replicas(model *const *ms, int n, const int32_t *tokens, const int32_t *targets, int B,
                                   int T, double *sum, int64_t *count);

/* Runs fn(r, i, row, rows, user) for the B rows of a batch: on m itself (i 0, all rows), or for a row
 * split on each replica r = m->replicas[i] with its share [row, row + rows) of them, each on its own
 * host thread (a replica given no rows is skipped). The first failure's message goes to m's context
 * (api.c). */
typedef attamba_status (*model_rows_fn)(model *r, int i, int row, int rows, void *user);
attamba_status model_rows_run(model *m, int B, model_rows_fn fn, void *user);

/* ---- the layer program (layer.c), shared by prefill, decode and the trainer ---- */

/* One SSM's activations over [B,T]: the projections z [E] and xbcdt [E+2GN+nh] with its column views
 * xs_in, b_in, c_in (the conv's input xbc_in) and dt; the conv output xbc [E+2GN] with views xs, bm, cm
 * (without a conv, xbc is xbc_in: SPEC 3.1 passes them raw); scan output y [E]; gated-norm output g [E]. */
typedef struct ssm_acts {
    tensor z, xbcdt, xbc_in, xs_in, b_in, c_in, dt, xbc, xs, bm, cm, y, g;
} ssm_acts;

/* One layer's activations. Inference shares one set across layers with h_in == h_mid == h_out
 * (the residual stream is updated in place); training keeps a set per layer and distinct streams. */
typedef struct layer_acts {
    tensor *h_in, *h_mid, *h_out;  /* residual stream before the layer, after attention, after the FFN */
    tensor x, q, k, v, o, y, f1, f3; /* x, y: the normed inputs of attention and FFN; q, k roped */
    tensor hid;                     /* silu(f1) * f3, the input of W2 */
    ssm_acts ssm[2];
    tensor bpos, seg;               /* attamba prefill: views of this layer's boundaries and segment starts */
} layer_acts;

/* Carves a's tensors for B sequences of T tokens out of an arena (tensor_arena_take), and drops them. */
attamba_status model_acts_take(const model_config *c, tensor_arena *ar, int64_t B, int64_t T, layer_acts *a);
void model_acts_release(layer_acts *a);

/* Every layer's boundaries and segment starts below T (attamba), on the device: one upload when T or
 * the attention pattern changes, none otherwise. Boundaries are validated where they are made, here,
 * so attention trusts them without reading them back. */
typedef struct boundary_plan {
    tensor all;          /* i32 [2, L, T]: [0, l, :nb[l]] boundaries, [1, l, :] segment starts */
    int32_t *host;       /* [2, L, T]: the same on the host (attention plans its blocks with the boundaries) */
    int64_t *nb;         /* [L] */
    int64_t *longest;    /* [L]: each layer's longest segment (the SSM scan picks its path by it) */
    int64_t T;
    boundary_spec spec;  /* what `all` holds; chunk 0 = nothing yet */
} boundary_plan;
attamba_status boundary_plan_take(const model_config *c, tensor_arena *ar, int64_t T, boundary_plan *p);
attamba_status boundary_plan_update(model *m, boundary_plan *p);
void boundary_plan_release(boundary_plan *p);
/* Layer l's prefill / training attention mask (trusted): compressed over the plan's boundaries, bpos
 * being the layer's view of them (Attamba), sliding (transformer-swa), else causal. */
attn_mask boundary_plan_mask(const model_config *c, const boundary_plan *p, int l, const tensor *bpos);

/* What differs between the ways the layer runs: the op variants, never the sequence of ops. */
typedef struct layer_mode {
    const tensor *pos;             /* i32 [B]: the position of each sequence's first token */
    const boundary_plan *plan;     /* prefill / training, attamba: boundaries and segment starts */
    struct attamba_session *cache;        /* prefill: leaves sequence b's decode state there (B = 1) */
    int b;
    int decode;                    /* one token per sequence continuing the cache (conv/SSM steps, cached attention) */
    const tensor *step;            /* decode: i32 [2 + 2L, B]: ids, positions, then per layer the first positions
                                      of the tokens' segments and the store slots */
} layer_mode;

/* Layer l over a->h_in, writing the activations, a->h_mid and a->h_out. */
attamba_status model_layer_forward(model *m, int l, layer_acts *a, const layer_mode *mode);
/* Embedding of ids [B,T] into acts[0].h_in, every layer (acts[l] when per_layer, else acts[0] shared),
 * then the final norm into xf [B,T,d]; for a stage of a layer split, only what it holds (its layers,
 * the embedding if first, the norm if last). */
attamba_status model_trunk(model *m, const tensor *ids, layer_acts *acts, int per_layer, const layer_mode *mode,
                           tensor *xf);
/* y = x W^T (+ y when accumulate): x [..., in], W [out, in], y [..., out]. */
attamba_status model_linear(model *m, const tensor *x, const tensor *W, int accumulate, tensor *y);

/* The inference workspace: activations, ids, positions and the boundary plan of the last [B, T]
 * (or of a decode step), carved from one arena. */
typedef struct model_workspace {
    tensor_arena arena;
    int64_t B, T;
    int decode;
    layer_acts acts;
    tensor h, xf, ids, pos;
    boundary_plan plan;
    tensor step;     /* decode: i32 [2 + 2L, B] */
} model_workspace;
/* Carves ws for [B, T] (or a decode step of B sequences), unless it already is. */
attamba_status model_workspace_carve(model *m, model_workspace *ws, int64_t B, int64_t T, int decode);
void model_workspace_release(model_workspace *ws);
void model_workspace_free(model_workspace *ws);

#endif
