/*
 * attamba.h: the public C API of libattamba.
 *
 * Every fallible function returns an attamba_status (0 = ATTAMBA_OK). After a failure,
 * attamba_context_last_error() gives the whole message, with the OpenCL error name and the
 * compiler log where relevant. The library never calls exit() or abort() on bad input.
 */
#ifndef ATTAMBA_ATTAMBA_H
#define ATTAMBA_ATTAMBA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ATTAMBA_VERSION_MAJOR 0
#define ATTAMBA_VERSION_MINOR 1
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

/* Lists every OpenCL device of every platform. *out is malloc'd and owned by the caller (free()).
 * No platform is ATTAMBA_ERR_NO_PLATFORM; *count may be 0 otherwise. The message, if any, is
 * written to errbuf (may be NULL). */
attamba_status attamba_devices_list(attamba_device_info **out, int *count, char *errbuf,
                                    size_t errbuf_size);

/* ---- Context ------------------------------------------------------------------------------ */

/* One device, its OpenCL context and in-order queue, the program cache and memory accounting. */
typedef struct rt_ctx attamba_context;

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

/* ---- Models ------------------------------------------------------------------------------- */

/* An Attamba model or transformer baseline on a context's device (docs/weights.md: a directory
 * with config.json and model.safetensors). */
typedef struct model attamba_model;

/* Loads dir/config.json and dir/model.safetensors; refuses corrupt or inconsistent files with a
 * message (attamba_context_last_error). The model must be destroyed before its context. */
attamba_status attamba_model_load(attamba_context *ctx, const char *dir, attamba_model **out);
/* Where a model lives (as llama.cpp's devices / split_mode / tensor_split). Start from
 * attamba_model_params_default() and set what you need. */
typedef enum attamba_split_mode {
    ATTAMBA_SPLIT_NONE = 0,   /* the whole model on devices[0] */
    ATTAMBA_SPLIT_LAYER = 1   /* the layers spread over the devices: each holds only its layers' weights
                                 and their KV caches; the hidden state moves between them through host
                                 memory (a model or cache larger than one device fits) */
} attamba_split_mode;
typedef struct attamba_model_params {
    attamba_context *const *devices; /* n_devices contexts (attamba_contexts_create) */
    int n_devices;
    attamba_split_mode split_mode;
    const double *tensor_split;      /* ATTAMBA_SPLIT_LAYER: each device's share of the layers (NULL: equal) */
} attamba_model_params;
attamba_model_params attamba_model_params_default(void);
/* attamba_model_load with the placement of p; forward and sessions work as on one device; messages
 * go to devices[0]. */
attamba_status attamba_model_load_with(const char *dir, const attamba_model_params *p, attamba_model **out);
void attamba_model_destroy(attamba_model *m);
int attamba_model_vocab_size(const attamba_model *m);
/* Test-time attention pattern: chunk P (<= 0 keeps), window L (< 0 keeps), boundaries "uniform",
 * "cyclic", "random" or "random:SEED" (NULL keeps). */
attamba_status attamba_model_set_attention(attamba_model *m, int chunk, int window, const char *boundaries);

/* Logits of B sequences of T tokens (tokens: B*T ids in [0, vocab)), written to logits: B*T*vocab
 * floats, row-major. All sequences start at position 0. */
attamba_status attamba_model_forward(attamba_model *m, const int32_t *tokens, int batch, int T, float *logits);

/* ---- Decoding sessions -------------------------------------------------------------------- */

/* One sequence's compressed KV cache (SPEC 4) for up to max_tokens tokens. */
typedef struct kv_cache attamba_session;

attamba_status attamba_session_create(attamba_model *m, int64_t max_tokens, attamba_session **out);
void attamba_session_destroy(attamba_session *s);
/* Feeds n tokens (n >= 1; a prefill when the session is empty, else one decode step per token) and
 * writes the logits after the last one (vocab floats) when logits is not NULL. */
attamba_status attamba_session_feed(attamba_session *s, const int32_t *tokens, int n, float *logits);
/* Tokens fed so far, and the bytes the cache holds now. */
int64_t attamba_session_position(const attamba_session *s);
int64_t attamba_session_cache_bytes(const attamba_session *s);

#ifdef __cplusplus
}
#endif
#endif
