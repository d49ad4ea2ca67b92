/*
 * attamba.h: the public C API of libattamba.
 *
 * Every fallible function returns an attamba_status (0 = ATTAMBA_OK). After a failure,
 * attamba_context_last_error() gives the whole message, with the OpenCL error name and the
 * compiler log where relevant. The library never calls exit() or abort() on bad input.
 */
#ifndef ATTAMBA_ATTAMBA_H
#define ATTAMBA_ATTAMBA_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ATTAMBA_VERSION_MAJOR 0
#define ATTAMBA_VERSION_MINOR 3
#define ATTAMBA_VERSION_PATCH 0

typedef enum attamba_status {
    ATTAMBA_OK = 0,
    ATTAMBA_ERR_INVALID_ARG = 1,    /* a bad value or string from the caller */
    ATTAMBA_ERR_SHAPE = 2,          /* tensor shapes that do not fit together */
    ATTAMBA_ERR_NO_PLATFORM = 3,    /* no OpenCL platform (no ICD installed) */
    ATTAMBA_ERR_NO_DEVICE = 4,      /* no device matches the selection */
    ATTAMBA_ERR_OUT_OF_MEMORY = 5,  /* host or device allocation failed */
    ATTAMBA_ERR_BUILD = 6,          /* an OpenCL program did not compile; message has the log */
    ATTAMBA_ERR_OPENCL = 7,         /* any other OpenCL error; message names it */
    ATTAMBA_ERR_IO = 8,             /* a file could not be read or written */
    ATTAMBA_ERR_FORMAT = 9,         /* a file or config is corrupt or inconsistent */
    ATTAMBA_ERR_UNSUPPORTED = 10,   /* valid, but not supported by this device or build */
    ATTAMBA_ERR_INTERNAL = 11,      /* a bug: please report it */
    ATTAMBA_ERR_INTERRUPTED = 12    /* stopped on request (e.g. SIGINT) after saving what it could */
} attamba_status;

/* A static English description of a status code. Never NULL. */
const char *attamba_status_str(attamba_status s);

/* "major.minor.patch" of the library. */
const char *attamba_version(void);

/* ---- Devices ------------------------------------------------------------------------------ */

typedef enum attamba_device_type {
    ATTAMBA_DEVICE_CPU = 1,
    ATTAMBA_DEVICE_GPU = 2,
    ATTAMBA_DEVICE_ACCELERATOR = 4,
    ATTAMBA_DEVICE_OTHER = 8
} attamba_device_type;

/* "cpu", "gpu", "accelerator" or "other": the names device selections use. */
const char *attamba_device_type_name(attamba_device_type t);

typedef struct attamba_device_info {
    int platform_index;            /* position in clGetPlatformIDs order */
    int device_index;              /* position inside its platform */
    char platform_name[128];
    char name[128];
    char vendor[128];
    char driver_version[64];
    char opencl_c_version[64];     /* e.g. "OpenCL C 1.2 PoCL" */
    attamba_device_type type;
    unsigned compute_units;
    uint64_t global_mem_bytes;
    uint64_t max_alloc_bytes;
    uint64_t local_mem_bytes;
    size_t max_work_group_size;
    int has_fp16;                  /* cl_khr_fp16 */
    int has_fp64;                  /* cl_khr_fp64 */
    int has_subgroups;             /* cl_khr_subgroups or cl_intel_subgroups */
} attamba_device_info;

/* Lists every OpenCL device of every platform. *out is malloc'd and owned by the caller (free() or
 * attamba_devices_free).
 * No platform is ATTAMBA_ERR_NO_PLATFORM; *count may be 0 otherwise. The message, if any, is
 * written to errbuf (may be NULL). */
attamba_status attamba_devices_list(attamba_device_info **out, int *count, char *errbuf,
                                    size_t errbuf_size);
/* Frees what attamba_devices_list gave (the same as free(); for callers without the C library's). */
void attamba_devices_free(attamba_device_info *list);

/* ---- Context ------------------------------------------------------------------------------ */

/* One device, its OpenCL context and in-order queue, the program cache and memory accounting. */
typedef struct attamba_context attamba_context;

/* device: NULL or "" = $ATTAMBA_DEVICE, else the default (first GPU, then accelerator, then CPU);
 * "P:D" = platform P, device D (indices from attamba_devices_list); "gpu", "cpu", "accelerator" =
 * the first device of that type. On failure *out is NULL and errbuf (may be NULL) says why. */
attamba_status attamba_context_create(const char *device, attamba_context **out, char *errbuf,
                                      size_t errbuf_size);
void attamba_context_destroy(attamba_context *ctx);

/* A device set: one context per device (each its own OpenCL context and queue; data moves between
 * them through host memory). devices: NULL or "" = $ATTAMBA_DEVICES, else the one default device;
 * "all" = every device; "gpu", "cpu", "accelerator" = every device of that type; or a list
 * "P:D,P:D,..." whose entries are single selections as for attamba_context_create (no device twice).
 * out has room for max contexts; *count gets how many were opened. On failure none stays open. */
#define ATTAMBA_MAX_DEVICES 16
attamba_status attamba_contexts_create(const char *devices, attamba_context **out, int max, int *count,
                                       char *errbuf, size_t errbuf_size);

/* The message of the last failed call on this context ("" if none). Owned by the context. */
const char *attamba_context_last_error(const attamba_context *ctx);

/* The selected device. Owned by the context. */
const attamba_device_info *attamba_context_device(const attamba_context *ctx);

/* Bytes of device memory in use by this context (weights, caches, activations and the scratch of
 * calls in flight), and the peak since creation. Scratch buffers kept idle for reuse by later calls
 * are not counted (like PyTorch's memory_allocated, not memory_reserved). */
void attamba_context_memory(const attamba_context *ctx, uint64_t *current, uint64_t *peak);

/* What the context has asked of the device since creation: cheap counters, always on. Take two
 * readings and subtract them to see what one call costs (e.g. per decoded token). */
typedef struct attamba_counters {
    uint64_t launches;        /* kernels enqueued */
    uint64_t allocations;     /* device buffers created (clCreateBuffer) */
    uint64_t uploads;         /* host -> device writes */
    uint64_t copies;          /* device -> device buffer copies */
    uint64_t blocking_reads;  /* host waits for the queue: device -> host reads and clFinish */
} attamba_counters;
void attamba_context_counters(const attamba_context *ctx, attamba_counters *out);
/* Waits until the work queued on the context's device is done (to time asynchronous calls). */
attamba_status attamba_context_finish(attamba_context *ctx);

/* Kernel profiles: a context created with ATTAMBA_PROFILE=1 in the environment times every launch on
 * the device (OpenCL profiling events) and sums the time per kernel. The events are read after the
 * fact (at the host's waits, the older half once 256 are in flight, and when the profile is read), so launches do not
 * wait for their kernels; the report also sums the device's idle time between kernels. */
typedef struct attamba_profile_entry {
    const char *name;   /* the kernel's label */
    uint64_t launches;
    double seconds;     /* device time, summed */
} attamba_profile_entry;
/* Whether ctx profiles; *entries and *count (may be NULL) get the sums so far, one entry per kernel
 * (owned by ctx, valid until its next launch). */
int attamba_context_profile(const attamba_context *ctx, const attamba_profile_entry **entries, int *count);
/* A table of the sums, one line per kernel by total time, then the counters; with steps > 0, per step
 * of a repeated piece of work of step_seconds (wall time) each: launches and ms per step and each
 * kernel's share of the step. */
void attamba_context_profile_print(const attamba_context *ctx, FILE *out, int64_t steps, double step_seconds);
/* Zeroes the sums (to profile from a point on, e.g. after a warm-up). */
void attamba_context_profile_reset(attamba_context *ctx);

/* ---- Configs (no device needed) --------------------------------------------------------- */

/* A model's architecture and attention pattern: the fields of config.json (docs/weights.md). */
typedef struct attamba_config attamba_config;

/* spec: a preset name ("tiny", "small", "paper-60m"), a config file (anything ending in ".json"), or a
 * model directory (its config.json). On failure *out is NULL and errbuf (may be NULL) says why. */
attamba_status attamba_config_load(const char *spec, attamba_config **out, char *errbuf, size_t errbuf_size);
void attamba_config_destroy(attamba_config *c);
/* Sets one field of config.json: value is JSON text ("8", "true", "\"q8\"") or a bare word taken as a
 * string ("transformer", "q8"); "boundaries" also takes "random:SEED" (sets boundary_seed). key NULL:
 * value is a JSON object whose fields are all set at once (a wider model: {"dim": 1024, "n_heads": 16,
 * ...}, where one field at a time would pass through invalid configs). The whole config must stay valid,
 * else nothing changes and errbuf says why. */
attamba_status attamba_config_set(attamba_config *c, const char *key, const char *value, char *errbuf,
                                  size_t errbuf_size);
/* Makes the SentencePiece model file at path the config's tokenizer: tokenizer "sentencepiece",
 * tokenizer_file "tokenizer.model", and vocab_size, bos_id and eos_id from the file.
 * ATTAMBA_ERR_UNSUPPORTED in a build without SentencePiece. */
attamba_status attamba_config_use_tokenizer(attamba_config *c, const char *path, char *errbuf, size_t errbuf_size);
/* The config as config.json text: malloc'd, the caller frees it (free()); NULL when out of memory. */
char *attamba_config_json(const attamba_config *c);

/* The main fields of a config, and what they imply. */
typedef struct attamba_config_info {
    char kind[24];        /* "attamba", "transformer", "transformer-swa" */
    char boundaries[24];  /* "uniform", "cyclic", "random" */
    char tokenizer[24];   /* "bytes", "sentencepiece" */
    char weights[8];      /* how projections are stored: "f32", "f16", "q8" */
    int vocab_size, d_model, n_layers, n_heads, n_kv_heads, head_dim;
    int chunk, window, pseudo;   /* attamba: P, L, pseudo-chunking; transformer-swa: window L */
    int32_t bos, eos;
    int64_t parameters;
} attamba_config_info;
void attamba_config_describe(const attamba_config *c, attamba_config_info *out);

/* The element type of a session's stored keys and values (the boundaries of an Attamba model, every
 * token of a transformer); the window's ring and the SSM states stay f32. */
typedef enum attamba_cache_type {
    ATTAMBA_CACHE_F32 = 0, /* exact: decoding gives the logits of attamba_model_forward */
    ATTAMBA_CACHE_F16 = 1  /* half the bytes to hold and to read per step (what long contexts are bound by);
                              the stored keys and values rounded to the nearest half, as llama.cpp's default
                              cache */
} attamba_cache_type;
/* What a sequence of `context` tokens costs (SPEC 4): per sequence, all layers. */
typedef struct attamba_config_cost {
    int64_t cache_bytes;      /* the compressed KV cache (boundary keys, window, SSM state) */
    int64_t cache_bytes_full; /* a full-attention cache of the same width and depth */
    double key_visits;        /* keys a query visits per layer, mean over the positions */
    double attention_flops;   /* attention FLOPs per token, mean over the positions */
} attamba_config_cost;
void attamba_config_estimate(const attamba_config *c, int64_t context, attamba_config_cost *out);
/* The same with the stored keys and values of both caches as cache_type (attamba_session_params). */
void attamba_config_estimate_with(const attamba_config *c, int64_t context, attamba_cache_type cache_type,
                                  attamba_config_cost *out);

/* Device memory a model of config c needs at batch x context, measured on ctx: a model with random
 * weights runs a prefill of batch x context and a decode step with caches of batch sequences of
 * context tokens, and the context's accounting (attamba_context_memory) is read around each. */
typedef struct attamba_memory_report {
    uint64_t weights;        /* the weights */
    uint64_t prefill_arena;  /* the prefill's activations (one arena, kept for the next prefill) */
    uint64_t prefill_peak;   /* weights + arena + logits + op scratch in use */
    uint64_t kv_cache;       /* the caches of batch sequences of context + 1 tokens */
    uint64_t decode_arena;   /* a decode step's activations */
    uint64_t decode_peak;    /* all of the above at once */
    uint64_t idle_scratch;   /* scratch kept for reuse, not counted in use */
} attamba_memory_report;
attamba_status attamba_config_measure_memory(attamba_context *ctx, const attamba_config *c, int batch,
                                             int64_t context, attamba_memory_report *out);
/* The same with caches of cache_type (attamba_session_params). */
attamba_status attamba_config_measure_memory_with(attamba_context *ctx, const attamba_config *c, int batch,
                                                  int64_t context, attamba_cache_type cache_type,
                                                  attamba_memory_report *out);

/* Writes dir/config.json and dir/model.safetensors of a model of config c with seeded random weights
 * (the same as attamba_model_init's for the seed), and the tokenizer file a SentencePiece config names;
 * no device is needed. Creates dir; every file through a temporary name. */
attamba_status attamba_model_create_file(const attamba_config *c, uint64_t seed, const char *dir, char *errbuf,
                                         size_t errbuf_size);
/* Writes the model in in_dir to out_dir with its projection matrices and output layer stored as type
 * ("f16", "q8", or "f32": back to f32, the rounded values); embeddings, norms, convs and SSM parameters
 * stay f32. *n_converted / *n_f32 (may be NULL) get the parameter counts of each. A non-finite weight
 * is refused. No device is needed. */
attamba_status attamba_model_quantize(const char *in_dir, const char *out_dir, const char *type,
                                      int64_t *n_converted, int64_t *n_f32, char *errbuf, size_t errbuf_size);

/* ---- Models ------------------------------------------------------------------------------- */

/* An Attamba model or transformer baseline on a context's device (docs/weights.md: a directory
 * with config.json and model.safetensors). */
typedef struct attamba_model attamba_model;

/* Loads dir/config.json and dir/model.safetensors; refuses corrupt or inconsistent files with a
 * message (attamba_context_last_error). The model must be destroyed before its context. */
attamba_status attamba_model_load(attamba_context *ctx, const char *dir, attamba_model **out);
/* A new model with seeded random weights (SPEC 3.1 init) on ctx's device: config is a preset name
 * ("tiny", "small", "paper-60m") or the path of a config file (anything with a '/' or a '.'). The
 * same seed gives the same weights as `attamba init`. */
attamba_status attamba_model_init(attamba_context *ctx, const char *config, uint64_t seed, attamba_model **out);
/* Writes dir/config.json and dir/model.safetensors (each through a temporary file); creates dir.
 * A model split over devices cannot be saved. */
attamba_status attamba_model_save(const attamba_model *m, const char *dir);
/* Where a model lives (as llama.cpp's devices / split_mode / tensor_split). Start from
 * attamba_model_params_default() and set what you need. */
typedef enum attamba_split_mode {
    ATTAMBA_SPLIT_NONE = 0,   /* the whole model on devices[0] */
    ATTAMBA_SPLIT_LAYER = 1,  /* the layers spread over the devices: each holds only its layers' weights
                                 and their KV caches; the hidden state moves between them through host
                                 memory (a model or cache larger than one device fits) */
    ATTAMBA_SPLIT_ROWS = 2    /* a whole copy of the model on every device: forward, loss and argmax share
                                 each batch's rows out over them (tensor_split: the shares; NULL: equal);
                                 sessions use devices[0]'s copy; a trainer refuses such a model
                                 (attamba_trainer_create_parallel trains over several devices) */
} attamba_split_mode;
typedef struct attamba_model_params {
    attamba_context *const *devices; /* n_devices contexts (attamba_contexts_create) */
    int n_devices;
    attamba_split_mode split_mode;
    const double *tensor_split;      /* each device's share of the layers (SPLIT_LAYER) or of the rows
                                        (SPLIT_ROWS); NULL: equal */
} attamba_model_params;
attamba_model_params attamba_model_params_default(void);
/* attamba_model_load with the placement of p; forward and sessions work as on one device; messages
 * go to devices[0]. */
attamba_status attamba_model_load_with(const char *dir, const attamba_model_params *p, attamba_model **out);
void attamba_model_destroy(attamba_model *m);
/* A model of config c with seeded random weights (as attamba_model_init) placed as p says
 * (ATTAMBA_SPLIT_NONE or ATTAMBA_SPLIT_LAYER; split rows is for saved models: attamba_model_load_with). */
attamba_status attamba_model_create(const attamba_config *c, const attamba_model_params *p, uint64_t seed,
                                    attamba_model **out);
/* Starts the peak of attamba_context_memory again from the memory in use now. */
void attamba_context_memory_reset_peak(attamba_context *ctx);
int attamba_model_vocab_size(const attamba_model *m);
/* The model's config as config.json text (docs/weights.md: kind, sizes, the chunk, window and
 * boundaries in force, tokenizer): owned by the model, valid until the next call or its destruction;
 * NULL (and a message) when out of memory. */
const char *attamba_model_config(attamba_model *m);
/* Test-time attention pattern: chunk P (<= 0 keeps), window L (< 0 keeps), boundaries "uniform",
 * "cyclic", "random" or "random:SEED" (NULL keeps). Refused while sessions of the model are open
 * (their caches are sized for the pattern in force). attamba_model_save writes the pattern in force. */
attamba_status attamba_model_set_attention(attamba_model *m, int chunk, int window, const char *boundaries);

/* Logits of B sequences of T tokens (tokens: B*T ids in [0, vocab)), written to logits: B*T*vocab
 * floats, row-major. All sequences start at position 0. */
attamba_status attamba_model_forward(attamba_model *m, const int32_t *tokens, int batch, int T, float *logits);

/* The model's config as it is in force (after attamba_model_set_attention): a copy the caller
 * destroys. */
attamba_status attamba_model_get_config(const attamba_model *m, attamba_config **out);

/* The summed cross-entropy (nats) of B sequences of T tokens over their scored targets (targets:
 * B*T ids; a target < 0 is not scored), and how many were scored: what perplexity and bits per byte
 * are made of. No gradients, nothing changes. */
attamba_status attamba_model_loss(attamba_model *m, const int32_t *tokens, const int32_t *targets, int batch, int T,
                                  double *sum, int64_t *count);
/* The greedy prediction after every position of B sequences of T tokens: argmax (B*T ids) of the
 * logits, computed on the device (only the ids come back). */
attamba_status attamba_model_argmax(attamba_model *m, const int32_t *tokens, int batch, int T, int32_t *argmax);

/* ---- Tokenizer ---------------------------------------------------------------------------- */

/* Text <-> token ids: the tokenizer a model's config names. "bytes": ids 0..255 are the byte values,
 * BOS and EOS come from the config (256 and 257 by default). "sentencepiece": the SentencePiece model
 * file in the model directory (docs/weights.md); ATTAMBA_ERR_UNSUPPORTED in a build without it. Both
 * are lossless: the bytes of the ids of a text are the text, and each id decodes to its own bytes. */
typedef struct attamba_tokenizer attamba_tokenizer;

/* The model's tokenizer, owned by the model (valid until attamba_model_destroy). */
attamba_status attamba_model_tokenizer(attamba_model *m, const attamba_tokenizer **out);
int attamba_tokenizer_vocab_size(const attamba_tokenizer *t);
int32_t attamba_tokenizer_bos(const attamba_tokenizer *t);
int32_t attamba_tokenizer_eos(const attamba_tokenizer *t);
/* The ids of text[0..len), BOS first when add_bos: at most cap are written to ids; *n gets how many
 * the whole text needs (so cap 0 sizes the buffer). */
attamba_status attamba_tokenizer_encode(const attamba_tokenizer *t, const char *text, size_t len, int add_bos,
                                        int32_t *ids, int64_t cap, int64_t *n);
/* The text of ids[0..n) (specials such as BOS and EOS give no text): at most cap bytes are written to
 * out, then a NUL when there is room; *len gets how many bytes the whole text needs (without the NUL).
 * An id outside the vocabulary is ATTAMBA_ERR_INVALID_ARG. */
attamba_status attamba_tokenizer_decode(const attamba_tokenizer *t, const int32_t *ids, int64_t n, char *out,
                                        size_t cap, size_t *len);

/* A SentencePiece model file on its own (no model): for tokenizing data before a model exists.
 * Destroy it with attamba_tokenizer_destroy (never a model's). It has no context for messages: a failed
 * encode or decode writes its message to stderr (the log's warnings) and returns the status. */
attamba_status attamba_tokenizer_load(const char *path, attamba_tokenizer **out, char *errbuf, size_t errbuf_size);
void attamba_tokenizer_destroy(attamba_tokenizer *t);
/* Whether this build reads and trains SentencePiece models. */
int attamba_have_sentencepiece(void);
/* Trains a SentencePiece model of vocab_size pieces (unigram, byte fallback, every byte sequence
 * representable) on the text file at text_path and writes it to out_path (through a temporary name)
 * after checking that the text comes back exactly from its ids. */
attamba_status attamba_tokenizer_train(const char *text_path, int vocab_size, const char *out_path, char *errbuf,
                                       size_t errbuf_size);
/* Writes a binary token file (docs/training.md: "ATBTOK01", u64 count, u16 ids) for training: the ids
 * of the text file at in_path under t, or with t NULL the file as training reads it (a text file's
 * bytes, a token or task file's tokens). *n_tokens and *n_bytes (may be NULL): ids written, bytes read. */
attamba_status attamba_tokenize_file(const attamba_tokenizer *t, const char *in_path, const char *out_path,
                                     int64_t *n_tokens, int64_t *n_bytes, char *errbuf, size_t errbuf_size);

/* ---- Sampling ----------------------------------------------------------------------------- */

/* Chooses tokens from logits on the host (any logits: a model's, or the caller's own), in llama.cpp's
 * order: repetition penalty, temperature softmax, top-k, top-p, min-p, then a seeded draw. The same
 * seed and inputs give the same tokens on every device. */
typedef struct attamba_sampler attamba_sampler;
typedef struct attamba_sampler_params {
    float temperature;     /* <= 0: greedy (the argmax, after the penalty) */
    int top_k;             /* <= 0: off */
    float top_p;           /* in (0, 1]; 1: off */
    float min_p;           /* in [0, 1]; 0: off */
    float repeat_penalty;  /* > 0; 1: off. Each distinct token of the last repeat_last_n: positive
                              logits divided by it, negative ones multiplied */
    int repeat_last_n;     /* 1..65536 */
    uint64_t seed;
} attamba_sampler_params;
/* temperature 0.8, top_k 0, top_p 1, min_p 0, repeat_penalty 1, repeat_last_n 64, seed 0 (the
 * defaults of `attamba generate`). */
attamba_sampler_params attamba_sampler_params_default(void);
/* Messages of this sampler's failures go to ctx (attamba_context_last_error): destroy the sampler
 * before the context. */
attamba_status attamba_sampler_create(attamba_context *ctx, const attamba_sampler_params *p, attamba_sampler **out);
void attamba_sampler_destroy(attamba_sampler *s);
/* One token from n_vocab logits (not modified); the token is then counted for the penalty as
 * attamba_sampler_accept does. A draw from logits with no finite softmax (NaN, +inf, all -inf) is
 * refused; greedy takes the argmax as it is (a NaN counts as the largest, as in NumPy). */
attamba_status attamba_sampler_sample(attamba_sampler *s, const float *logits, int n_vocab, int32_t *token);
/* Counts a token for the repetition penalty without drawing it (the prompt's tokens). */
void attamba_sampler_accept(attamba_sampler *s, int32_t token);
/* Forgets the accepted tokens and restarts the random numbers from the seed. */
void attamba_sampler_reset(attamba_sampler *s);
/* The same with a new seed (a server giving a slot's sampler to its next request). */
void attamba_sampler_set_seed(attamba_sampler *s, uint64_t seed);

/* ---- Decoding sessions -------------------------------------------------------------------- */

/* The compressed KV caches (SPEC 4) of one sequence, or of a batch of sequences decoded together,
 * each up to max_tokens tokens. */
typedef struct attamba_session attamba_session;

/* One sequence. */
attamba_status attamba_session_create(attamba_model *m, int64_t max_tokens, attamba_session **out);
/* n_seq sequences, each with its own cache and position, advanced together by attamba_session_step
 * (what a server needs: one pass over the weights per step for all of them). */
attamba_status attamba_session_create_batch(attamba_model *m, int n_seq, int64_t max_tokens,
                                            attamba_session **out);
typedef struct attamba_session_params {
    int n_seq;                     /* sequences, as attamba_session_create_batch (1) */
    int64_t max_tokens;            /* capacity of each */
    attamba_cache_type cache_type; /* ATTAMBA_CACHE_F32 */
} attamba_session_params;
attamba_session_params attamba_session_params_default(int64_t max_tokens);
/* A session as p says (what attamba_session_create and _create_batch are with the defaults). */
attamba_status attamba_session_create_with(attamba_model *m, const attamba_session_params *p,
                                           attamba_session **out);
/* A session must be destroyed before its model. */
void attamba_session_destroy(attamba_session *s);
int attamba_session_sequences(const attamba_session *s);
/* One sequence only: feeds n tokens (n >= 1; a prefill when the session is empty, else one decode
 * step per token) and writes the logits after the last one (vocab floats) when logits is not NULL. */
attamba_status attamba_session_feed(attamba_session *s, const int32_t *tokens, int n, float *logits);
/* The prompt of sequence seq, which must be empty (new or reset); the others are untouched. Logits
 * after the last token (vocab floats) when logits is not NULL. */
attamba_status attamba_session_prefill(attamba_session *s, int seq, const int32_t *tokens, int n, float *logits);
/* One decode step of every sequence: sequence i appends tokens[i] (n_seq ids) at its own position;
 * logits (n_seq x vocab floats, sequence-major) when not NULL. A sequence given ATTAMBA_TOKEN_SKIP
 * does not advance: its cache, state and position stay as they are, and its row of logits means
 * nothing (an idle slot of a server, or one waiting for its next prompt). */
#define ATTAMBA_TOKEN_SKIP (-1)
attamba_status attamba_session_step(attamba_session *s, const int32_t *tokens, float *logits);
/* attamba_session_step, then sequence i's next token drawn by samplers[i] (n_seq entries) from its
 * logits as attamba_sampler_sample would draw it (and counted for the sampler's penalty): a greedy
 * sampler (temperature <= 0 or top_k 1) with no penalty history takes the argmax where the logits are,
 * so only the tokens come back from the device, not vocab floats a sequence; the others read their
 * sequence's logits. A NULL sampler, or a sequence given ATTAMBA_TOKEN_SKIP, draws nothing:
 * next[i] = ATTAMBA_TOKEN_SKIP. next may be tokens (the drawn tokens replace the fed ones). */
attamba_status attamba_session_step_sample(attamba_session *s, const int32_t *tokens,
                                           attamba_sampler *const *samplers, int32_t *next);
/* Every sequence (which must be empty) as if `tokens` tokens had been fed: its cache filled with
 * deterministic pseudo-random keys, values and SSM states, its position `tokens`. For measuring decode
 * at a long context without its prefill (the cost of a step depends on the position, not the values);
 * the logits that follow mean nothing. */
attamba_status attamba_session_fill_synthetic(attamba_session *s, int64_t tokens);
/* Forgets sequence seq (all when seq < 0); its cache is then empty. */
attamba_status attamba_session_reset(attamba_session *s, int seq);
/* Tokens sequence seq has been fed, and the bytes its cache holds now (-1 for a bad seq). */
int64_t attamba_session_position(const attamba_session *s, int seq);
int64_t attamba_session_cache_bytes(const attamba_session *s, int seq);

/* ---- Training ----------------------------------------------------------------------------- */

/* Trains a model in place (SPEC 5: AdamW with a linear warmup and a cosine decay, gradient clipping,
 * gradient accumulation), on batches the caller supplies: what `attamba train` does, minus the data
 * sampling, validation schedule and logging, which are the caller's. */
typedef struct attamba_trainer attamba_trainer;
typedef struct attamba_train_params {
    int batch, seq;          /* micro-batch: batch rows of seq tokens */
    int accum;               /* micro-batches per optimiser step */
    float lr, min_lr;        /* peak and floor of the schedule */
    int64_t warmup, steps;   /* linear warmup over `warmup` steps, then cosine decay to min_lr at `steps` */
    float beta1, beta2, eps, weight_decay, clip; /* AdamW; clip: the global gradient norm (0: off) */
    int32_t ignore_id;       /* a target with this id is not scored (-1: every target is) */
} attamba_train_params;
/* `attamba train`'s defaults for a run of `steps` optimiser steps: batch 8, seq 256, accum 1, lr 3e-3
 * down to 3e-4, warmup 5% of the steps, betas 0.9 / 0.95, eps 1e-8, weight decay 0.033, clip 1. */
attamba_train_params attamba_train_params_default(int64_t steps);

/* A trainer of m (f32 weights, on one device): its gradients, AdamW moments and the activations of
 * one micro-batch. Destroy it before the model. */
attamba_status attamba_trainer_create(attamba_model *m, const attamba_train_params *p, attamba_trainer **out);
/* A data-parallel trainer of m (which lives on devices[0]) over devices[0..n-1]: a replica of the model on
 * each other device; each micro-batch's rows are shared out by measured speed (equal for the first, then
 * re-measured every few), the gradients summed into devices[0]'s, which applies AdamW and sends the new
 * weights back (docs/multi-device.md). A step's loss and update are those of the whole micro-batch, as on
 * one device (up to the order of float sums). n = 1 is attamba_trainer_create. */
attamba_status attamba_trainer_create_parallel(attamba_model *m, attamba_context *const *devices, int n,
                                               const attamba_train_params *p, attamba_trainer **out);
void attamba_trainer_destroy(attamba_trainer *t);
/* How a parallel trainer shares the rows now, e.g. "0:0 pthread 5 rows (41.2 rows/s), 0:1 basic 3 rows
 * (24.9 rows/s)"; returns whether that changed since the last call (so a caller prints it once per change). */
int attamba_trainer_split(attamba_trainer *t, char *buf, size_t size);
typedef struct attamba_train_stats {
    int64_t step;      /* optimiser steps done, this one included */
    double loss;       /* the step's mean cross-entropy (nats per scored target) */
    double grad_norm;  /* before clipping */
    float lr;          /* the rate this step used */
} attamba_train_stats;
/* One optimiser step over accum micro-batches: tokens and targets hold accum * batch * seq ids each
 * (row-major; usually targets[i] = the token after tokens[i]). A step past `steps` keeps min_lr.
 * stats may be NULL. */
attamba_status attamba_trainer_step(attamba_trainer *t, const int32_t *tokens, const int32_t *targets,
                                    attamba_train_stats *stats);
/* The mean loss of the model on n_rows rows of seq tokens (no gradients, no change). */
attamba_status attamba_trainer_evaluate(attamba_trainer *t, const int32_t *tokens, const int32_t *targets, int n_rows,
                                        double *loss);
int64_t attamba_trainer_steps_done(const attamba_trainer *t);
/* The parameters in force (after attamba_trainer_load: the saved run's). */
attamba_train_params attamba_trainer_params(const attamba_trainer *t);
/* A checkpoint in dir (dir/ckpt-<step>, dir/latest; the previous one kept): the model, the AdamW
 * moments, the parameters and the step, written to a temporary directory and renamed. The
 * checkpoint is also a model directory (attamba_model_load). */
attamba_status attamba_trainer_save(attamba_trainer *t, const char *dir);
/* Resumes dir's newest checkpoint: a new model on ctx and its trainer, which continue exactly where
 * the saved one stopped (the same batches give the same losses). */
attamba_status attamba_trainer_load(attamba_context *ctx, const char *dir, attamba_model **m, attamba_trainer **t);

/* A whole training run, as `attamba train` does it: random windows of a text, token or task file,
 * a held-out tail validated every val_every steps, metrics in out/metrics.jsonl, checkpoints in
 * out/ckpt-* (through temporary directories; out/latest names the newest) and the final model in out.
 * Several contexts train data-parallel (each micro-batch's rows shared out by measured speed; device
 * 0 applies AdamW and sends the weights back: docs/multi-device.md); several processes join through
 * a communicator the caller provides (the CLI's is MPI; the library links none). */
typedef struct attamba_comm {
    int rank, size;
    void *user;
    /* each returns 0 on success; every process calls them in the same order */
    int (*sum_f32)(void *user, float *buf, int64_t n);   /* in place: the sum over the processes */
    int (*sum_f64)(void *user, double *buf, int64_t n);
    int (*bcast)(void *user, void *buf, size_t bytes);    /* rank 0's bytes to every process */
} attamba_comm;
typedef struct attamba_train_run_params {
    attamba_train_params train; /* micro-batch (this process's rows), accumulation, schedule, AdamW */
    const char *data;           /* text, token or task file (a task file: whole examples, answers scored) */
    double val_frac;            /* held-out tail of the data (0.05) */
    const char *out;            /* the run's directory */
    int resume;                 /* continue from out/latest (the config is then the checkpoint's) */
    uint64_t seed;              /* init and data order */
    int64_t val_every;          /* 0: validate only at the end */
    int val_windows;            /* windows per validation (32) */
    int64_t ckpt_every;         /* 0: checkpoint only at the end and when stopped */
    int progress;               /* draw a live progress line on stderr */
    volatile sig_atomic_t *stop; /* may be NULL; set (a signal handler): checkpoint, then return
                                    ATTAMBA_ERR_INTERRUPTED */
    const attamba_comm *comm;   /* NULL: this process only */
} attamba_train_run_params;
/* train_run's defaults for `steps` steps: attamba_train_params_default(steps), val_frac 0.05,
 * val_windows 32, progress on, the rest 0 / NULL. */
attamba_train_run_params attamba_train_run_params_default(int64_t steps);
/* Trains a new model of config c (NULL when resuming) on ctxs[0..n_ctx-1]; errors are reported on
 * ctxs[0]. *final_val (may be NULL) gets the last validation loss (rank 0). */
attamba_status attamba_train_run(attamba_context *const *ctxs, int n_ctx, const attamba_config *c,
                                 const attamba_train_run_params *p, double *final_val);
/* Whether dir holds a checkpoint a run can resume. */
int attamba_checkpoint_exists(const char *dir);

/* The mean loss of m on n_windows windows of T tokens (BOS, then T-1 tokens of the file) taken in
 * order from the held-out tail (the last val_frac) of a training file: attamba_train_run's validation.
 * batch windows per forward. */
attamba_status attamba_model_validate(attamba_model *m, const char *data, double val_frac, int T, int batch,
                                      int n_windows, double *loss);

/* ---- Tasks: synthetic recall benchmarks ---------------------------------------------------- */

/* Files of fixed-length examples whose answers are scored exactly (docs/tasks.md): "mqar" (pairs of
 * key and value, each key asked once) and "passkey" (a number hidden in filler text). */
typedef struct attamba_task_params {
    const char *kind;         /* "mqar" or "passkey" */
    int example, examples;    /* tokens per example (256), how many (1000) */
    uint64_t seed;            /* (1) */
    int vocab;                /* mqar: keys from [1, vocab/2), values from [vocab/2, vocab) (256) */
    int pairs[16], n_pairs;   /* mqar: example e has pairs[e % n_pairs] pairs ({8}, 1) */
    int digits;               /* passkey: digits of the number (5) */
    double depth[16];         /* passkey: example e hides it at depth[e % n_depth] of the filler */
    int n_depth;              /* (0: uniform at random) */
    const char *filler;       /* passkey: the text file the filler comes from */
} attamba_task_params;
attamba_task_params attamba_task_params_default(const char *kind);
/* Writes a task file of p's examples to path (through a temporary name); *n_answers (may be NULL)
 * gets the answers asked (a passkey's answer is one, however many digit tokens it has). */
attamba_status attamba_task_generate(const attamba_task_params *p, const char *path, int64_t *n_answers,
                                     char *errbuf, size_t errbuf_size);
/* Exact-match accuracy with its 95% Wilson interval. */
typedef struct attamba_tally {
    int key;
    int64_t right, total;
    double lo, hi;
} attamba_tally;
#define ATTAMBA_TASK_MAX_GROUPS 64
typedef struct attamba_task_report {
    char kind[16];
    int example;              /* tokens per example */
    int64_t examples;
    attamba_tally all;        /* answers right as a whole (greedy) */
    attamba_tally tokens;     /* answer tokens right one by one */
    attamba_tally group[ATTAMBA_TASK_MAX_GROUPS];    /* mqar: by pairs; passkey: by depth (%) */
    attamba_tally offset[ATTAMBA_TASK_MAX_GROUPS];   /* attamba: by the fact's position mod P */
    attamba_tally distance[ATTAMBA_TASK_MAX_GROUPS]; /* by tokens from the fact to the answer (from) */
    int n_group, n_offset, n_distance;
} attamba_task_report;
/* Scores m on the task file at path (greedy answers, batches of `batch` examples). kind: "mqar" or
 * "passkey", and a file of the other kind is refused before anything runs; NULL takes either. A file
 * whose tokens fall outside the model's vocabulary is refused. */
attamba_status attamba_model_score_task(attamba_model *m, const char *path, const char *kind, int batch,
                                        attamba_task_report *out);

/* ---- Device tuning and program bundles ----------------------------------------------------- */

/* Searches the device-dependent kernel parameters (docs/tuning.md) on ctx's device for the shapes of
 * config (tokens per batch): each candidate is checked against the plain-C reference, then timed next
 * to the values in force; a winner must beat them by 3% in interleaved rounds. The winners are stored
 * in the kernel cache directory, keyed by device and driver, where every later run finds them.
 * only: a comma list of "gemm", "gemm-inplace", "norm", "attention", "attention-slices",
 * "attention-backward", "attention-path" (NULL: all).
 * log (may be NULL): a line per group, and per candidate when verbose. */
typedef struct attamba_tune_params {
    const attamba_config *config;
    int tokens;    /* 512 */
    int quick;     /* fewer candidates, shorter timings */
    int verbose;
    const char *only;
} attamba_tune_params;
attamba_status attamba_tune(attamba_context *ctx, const attamba_tune_params *p, FILE *log);
/* The device's class and every tuning parameter in force with where its value came from. */
attamba_status attamba_tuning_print(attamba_context *ctx, FILE *out);

/* Writes every OpenCL program the context has built (after running what a deployment runs) to dir as
 * binaries, with dir/bundle.json listing them; ATTAMBA_PROGRAM_DIR=dir then serves them, so later
 * runs compile nothing (docs/portability.md). *n_programs (may be NULL) gets how many. */
attamba_status attamba_context_save_programs(attamba_context *ctx, const char *dir, int *n_programs);

/* Program cache counters since the context was created: built from source, loaded from the kernel
 * cache, loaded from a bundle. */
typedef struct attamba_cache_stats {
    uint64_t misses, hits, prebuilt;
} attamba_cache_stats;
void attamba_context_cache_stats(const attamba_context *ctx, attamba_cache_stats *out);

#ifdef __cplusplus
}
#endif
#endif
