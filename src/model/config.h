/* config.h: a model's shape and behaviour (SPEC 2-3), as a JSON file beside the weights.
 * Every field has a JSON name (docs/weights.md lists them); load validates and names the field
 * at fault; save writes every field. */
#ifndef ATTAMBA_MODEL_CONFIG_H
#define ATTAMBA_MODEL_CONFIG_H

#include <stdint.h>

#include "attamba/attamba.h"
#include "ops/boundaries.h"

typedef enum {
    MODEL_ATTAMBA = 0,          /* K, V from residual SSMs; compressed attention (SPEC 3) */
    MODEL_TRANSFORMER = 1,      /* K = x Wk, V = x Wv, causal; narrow heads give the iso-KV baseline */
    MODEL_TRANSFORMER_SWA = 2   /* same, sliding window of `window` earlier tokens */
} model_kind;

/* How the projection matrices and the output layer are stored (docs/weights.md): f32, f16, or q8
 * (8-bit blocks of 32 with an f32 scale). Embeddings, norms, convs and SSM parameters stay f32. */
typedef enum { WEIGHTS_F32 = 0, WEIGHTS_F16 = 1, WEIGHTS_Q8 = 2 } weight_type;

/* The tokenizer (tokenizer.h): bytes, or a SentencePiece model file kept in the model directory. */
typedef enum { TOKENIZER_BYTES = 0, TOKENIZER_SENTENCEPIECE = 1 } tokenizer_kind;
#define MODEL_TOKENIZER_FILE_MAX 256
#define MODEL_TOKENIZER_PATH_MAX 4096

#define MODEL_MAX_EXPLICIT 4096

typedef struct model_config {
    model_kind kind;
    int vocab_size, dim, n_layers;
    int n_heads, n_kv_heads, head_dim;  /* attention width = n_heads * head_dim */
    int ffn_dim;
    /* K/V SSMs (attamba only) */
    int ssm_inner, ssm_heads, ssm_state, ssm_groups, ssm_conv, ssm_dt_bias;
    float a_init_min, a_init_max;
    /* attention pattern */
    int chunk, window, pseudo;
    boundary_strategy boundaries;
    uint64_t boundary_seed;
    int n_explicit;
    int64_t explicit_positions[MODEL_MAX_EXPLICIT];
    float rope_theta, norm_eps;
    int tie_embeddings;
    int bos_id, eos_id;  /* tokenizer specials (byte tokenizer: 256, 257) */
    weight_type weights; /* JSON "weight_type": "f32" (default), "f16", "q8" */
    tokenizer_kind tokenizer; /* JSON "tokenizer": "bytes" (default) or "sentencepiece" */
    /* sentencepiece: the model file's name in the model directory (JSON "tokenizer_file", a plain
     * name without '/'), and where to read it from (not saved: model_config_load puts the config's
     * directory in front; model_config_from_json leaves the name, relative to the working directory) */
    char tokenizer_file[MODEL_TOKENIZER_FILE_MAX];
    char tokenizer_path[MODEL_TOKENIZER_PATH_MAX];
} model_config;

/* The fields' defaults: a tiny byte-level Attamba model (the `tiny` preset). */
void model_config_default(model_config *c);
/* "tiny" (tests), "small" (the demo) or "paper-60m" (SPEC 5: d=512, 8 layers, 32000 vocab). */
attamba_status model_config_preset(const char *name, model_config *c, char *err, size_t err_size);
/* Every constraint of SPEC 2-3 (positivity, d % heads, Hkv | H, attamba: d == Hkv*dh, E % nh,
 * nh % G, ...). The message names the field. */
attamba_status model_config_validate(const model_config *c, char *err, size_t err_size);
/* JSON text <-> config. Unknown fields and wrong types are refused. load = defaults + the file. */
attamba_status model_config_from_json(const char *text, model_config *c, char *err, size_t err_size);
attamba_status model_config_load(const char *path, model_config *c, char *err, size_t err_size);
/* Malloc'd JSON text with every field. */
char *model_config_to_json(const model_config *c);
/* Writes to a temporary file, then renames. */
attamba_status model_config_save(const model_config *c, const char *path, char *err, size_t err_size);

const char *model_kind_name(model_kind k);
/* "f32", "f16", "q8"; and back (-1 for an unknown name). */
const char *model_weight_type_name(weight_type t);
int model_weight_type_parse(const char *name);
/* "bytes", "sentencepiece". */
const char *model_tokenizer_name(tokenizer_kind k);
/* The boundary spec of this config (pointing into c for explicit lists). */
boundary_spec model_config_boundaries(const model_config *c);
/* Parameter count (every tensor of docs/weights.md). */
int64_t model_config_param_count(const model_config *c);
/* KV-cache bytes of all layers after `tokens` tokens (SPEC 4; the layer matters for cyclic shifts):
 * stored keys and values of store_bytes per element (4: f32, 2: f16), the window's ring and the SSM
 * states f32. */
int64_t model_config_cache_bytes(const model_config *c, int64_t tokens, int store_bytes);

/* Mean number of keys a query visits per layer over positions [0, T) (SPEC 3.3 masks), and the
 * attention FLOPs per token of the whole model at that context (QK^T and PV: 4 * H * dh per key). */
double model_config_key_visits(const model_config *c, int64_t T);
double model_config_attention_flops(const model_config *c, int64_t T);

/* The public attamba_config (include/attamba/attamba.h): a config, owned by the caller. */
struct attamba_config {
    model_config c;
};

#endif
