/* rt.h: the OpenCL runtime. Device discovery and selection, one context and in-order queue per
 * device, program builds with an on-disk binary cache, kernel lookup, launches, profiling.
 * Everything above this layer is OpenCL-free except for the cl_mem handles tensors carry. */
#ifndef ATTAMBA_RT_H
#define ATTAMBA_RT_H

#define CL_TARGET_OPENCL_VERSION 120
#ifndef CL_USE_DEPRECATED_OPENCL_1_2_APIS
#define CL_USE_DEPRECATED_OPENCL_1_2_APIS
#endif
#include <CL/cl.h>

#include "core/core.h"

/* One device as discovered, with its OpenCL handles. */
typedef struct rt_device {
    attamba_device_info info;
    cl_platform_id platform;
    cl_device_id device;
} rt_device;

typedef struct rt_kernel_entry {
    char *name;
    cl_kernel kernel;
} rt_kernel_entry;

typedef struct { uint64_t lo, hi; } rt_key;

typedef struct rt_program {
    char *name;      /* embedded source name, or a caller's label */
    char *options;   /* the caller's options (device options are added on top) */
    cl_program program;
    char *cached_from; /* loaded from the binary cache: its source (to rebuild if the entry proves stale) */
    rt_key key;        /* ... and the entry's key */
    rt_kernel_entry *kernels;
    int n_kernels;
} rt_program;

typedef struct attamba_profile_entry rt_profile_entry; /* include/attamba/attamba.h */
/* Profiled launches kept in flight before their times are read (the older half then is). */
#define RT_PROFILE_PENDING 256

typedef struct rt_cache_stats {
    unsigned hits;        /* programs loaded from the on-disk cache */
    unsigned misses;      /* programs built from source (and then stored) */
    unsigned rejected;    /* cache entries found corrupt or stale, then rebuilt */
    unsigned prebuilt;    /* programs loaded from $ATTAMBA_PROGRAM_DIR */
    unsigned warned;      /* programs built from source whose build log has a warning */
} rt_cache_stats;

/* The public attamba_context (include/attamba/attamba.h). */
struct attamba_context {
    rt_device dev;
    cl_context context;
    cl_command_queue queue;
    char *err;                 /* last error message, malloc'd; never NULL after create */
    char *device_options;      /* compile options every program gets (std, fp16 macro, ...) */
    char *cache_dir;           /* NULL = binary cache disabled */
    char *program_dir;         /* NULL = no prebuilt binaries */
    rt_program *programs;
    int n_programs, cap_programs;
    rt_cache_stats cache;
    uint64_t mem_current, mem_peak;  /* bytes of live tensors (idle pooled scratch excluded) */
    uint64_t mem_pool_idle;          /* bytes of idle scratch buffers kept in the pool */
    attamba_counters counters; /* launches, buffer creations, copies, blocking reads */
    struct rt_pooled *pool;    /* scratch buffers kept for reuse (tensor_scratch) */
    int n_pool;
    uint64_t mem_limit;        /* 0 = the device's global memory */
    uint64_t fail_allocation;  /* fault injection (tests): the allocation this many creations from now fails; 0 = none */
    uint64_t fail_launch;      /* fault injection (tests): the launch this many launches from now fails with
                                  CL_OUT_OF_RESOURCES; 0 = none */
    /* Set by the op layer (ops/tuning.c): called after a program failed to build or a kernel to launch;
     * returns 1 when it changed what later calls build (the device's tuned parameters dropped for the
     * defaults), and counts that in tuning_fallbacks, so that a call that changes nothing else can run
     * once more. */
    int (*on_kernel_failure)(struct attamba_context *ctx, const char *what);
    int tuning_fallbacks;
    int profiling;             /* per-kernel timing through profiling events */
    int gemm_clblast_broken;   /* CLBlast failed here once: ops_gemm uses the own kernel */
    rt_profile_entry *profile;
    double *profile_wait;      /* per entry of profile: the device's idle time right before its launches */
    int n_profile;
    /* Profiled launches whose events are read later (rt_profile_drain), so that profiling does not
     * make every launch wait for its kernel: the event and its profile entry, in queue order. */
    struct rt_pending_launch {
        cl_event ev;
        int entry;
    } pending[RT_PROFILE_PENDING];
    int n_pending;
    cl_ulong prof_last_end;    /* device time at which the last drained kernel ended (0: none yet) */
    uint64_t prof_gaps;        /* gaps between consecutive profiled kernels summed into profile_wait */
    void *tuning;              /* the op layer's tuning table (ops/tuning.c), one malloc'd block */
    /* Set by a layer above that holds driver objects of this context outside it (CLBlast's program
     * cache): called by attamba_context_destroy after the queue has finished, before anything of
     * the context is released, so nothing of it outlives the call (a driver may be gone by the time
     * library destructors run at exit). */
    void (*release_outside)(void);
};
typedef struct attamba_context rt_ctx;

/* ---- errors ---- */
const char *rt_cl_error_name(cl_int err);
/* Records a message on the context and returns s (ctx NULL: the message goes to the log at warn level). */
attamba_status rt_fail(rt_ctx *ctx, attamba_status s, const char *fmt, ...) CORE_PRINTF(3, 4);
/* Returns s; when s is a failure on another context `from`, first records its message on `to`,
 * naming its device (a failure on one device of a set, reported where the caller looks). */
attamba_status rt_fail_from(rt_ctx *to, attamba_status s, const rt_ctx *from);
/* ok for CL_SUCCESS; otherwise records "<what>: <CL name>" and maps the code to a status. */
attamba_status rt_check(rt_ctx *ctx, cl_int err, const char *what);
#define RT_TRY(expr)                                  \
    do {                                              \
        attamba_status rt_try_s_ = (expr);            \
        if (rt_try_s_ != ATTAMBA_OK) return rt_try_s_; \
    } while (0)
#define RT_CL(ctx, expr, what) RT_TRY(rt_check((ctx), (expr), (what)))

/* ---- devices ---- */
/* All devices of all platforms; *out malloc'd. */
attamba_status rt_devices_enumerate(rt_device **out, int *count, char *errbuf, size_t errbuf_size);
/* Picks one of devs by spec (see attamba_context_create); pure, no OpenCL calls. */
attamba_status rt_device_select(const rt_device *devs, int n, const char *spec, int *index,
                                char *errbuf, size_t errbuf_size);

/* Picks up to max distinct devices by spec (see attamba_contexts_create) into index; pure. */
attamba_status rt_device_select_set(const rt_device *devs, int n, const char *spec, int *index, int max,
                                    int *count, char *errbuf, size_t errbuf_size);

/* ---- programs and kernels ---- */
/* The embedded source of cl/<name>.cl, or NULL. */
const char *rt_embedded_source(const char *name);
/* The names of all embedded sources, NULL-terminated. */
const char *const *rt_embedded_names(void);

/* The file of a prebuilt variant in a bundle directory: dir/name.bin without options, else
 * dir/name@<64-bit hash of the options>.bin. */
char *rt_bundle_file(const char *dir, const char *name, const char *options);
/* Builds (or finds) the program of embedded source `name` compiled with `options`: from the bundle
 * in $ATTAMBA_PROGRAM_DIR when it has the variant, else the binary cache, else the source. */
attamba_status rt_program_get(rt_ctx *ctx, const char *name, const char *options, rt_program **out);
/* Same for a caller-provided source; label names it in messages and in the in-memory table. */
attamba_status rt_program_from_source(rt_ctx *ctx, const char *label, const char *source,
                                      const char *options, rt_program **out);
/* Registers a prebuilt device binary (e.g. from an FPGA toolchain) as program (name, options). */
attamba_status rt_program_from_binary_file(rt_ctx *ctx, const char *name, const char *options,
                                           const char *path, rt_program **out);
/* Writes the device binary of a built program to path (temp file + rename). */
attamba_status rt_program_save_binary(rt_ctx *ctx, rt_program *p, const char *path);
attamba_status rt_kernel_get(rt_ctx *ctx, rt_program *p, const char *kernel, cl_kernel *out);
/* Shorthand: program `name` with `options`, then its kernel. */
attamba_status rt_kernel(rt_ctx *ctx, const char *program, const char *options, const char *kernel,
                         cl_kernel *out);

/* ---- binary cache (rt_cache.c) ---- */
rt_key rt_program_key(const rt_ctx *ctx, const char *const *sources, int n_sources, const char *options);
/* Loads a cached binary; NULL when absent. Corrupt entries are removed and counted as rejected. */
unsigned char *rt_cache_load(rt_ctx *ctx, rt_key key, size_t *size);
void rt_cache_store(rt_ctx *ctx, rt_key key, const unsigned char *bin, size_t size);
/* Deletes an entry that proved stale (counted as rejected). */
void rt_cache_remove(rt_ctx *ctx, rt_key key);

/* ---- launches ---- */
typedef struct { size_t size; const void *value; int is_mem; } rt_arg;
#define RT_MEM(m) ((rt_arg){sizeof(cl_mem), &(m), 1})
#define RT_I32(v) ((rt_arg){sizeof(cl_int), &(cl_int){(cl_int)(v)}, 0})
#define RT_F32(v) ((rt_arg){sizeof(cl_float), &(cl_float){(cl_float)(v)}, 0})
#define RT_LOCAL(bytes) ((rt_arg){(bytes), NULL, 0})
/* A cl_int the caller keeps alive until the launch (an array of them filled in a loop). */
#define RT_I32_AT(p) ((rt_arg){sizeof(cl_int), (p), 0})

/* Sets args and enqueues. global is rounded up to a multiple of local; local NULL = device's
 * choice. `label` names the kernel in profiles and messages. */
attamba_status rt_launch(rt_ctx *ctx, cl_kernel k, const char *label, cl_uint dims,
                         const size_t *global, const size_t *local, int n_args, const rt_arg *args);
/* A 1-D work-group size for k: a multiple of 8 when the device allows, at most `cap`. */
size_t rt_local_1d(rt_ctx *ctx, cl_kernel k, size_t cap);
size_t rt_round_up(size_t x, size_t m);
attamba_status rt_finish(rt_ctx *ctx);
/* After a failed launch or build (s, already on the context): lets the op layer drop the tuned
 * parameters (on_kernel_failure) and says so in the message; returns s. */
attamba_status rt_kernel_failed(rt_ctx *ctx, attamba_status s, const char *what);

/* Reads the times of the profiled launches in flight (ATTAMBA_PROFILE) into the profile, all but the
 * newest `keep` of them, waiting for those kernels to finish. The report and the public accessors call
 * it with keep = 0, and so do the host's waits (rt_finish, blocking reads), where it waits for nothing. */
void rt_profile_drain(rt_ctx *ctx, int keep);
/* The device's idle time between the profiled kernels drained so far, summed over every label. */
double rt_profile_idle(const rt_ctx *ctx);
/* Profiling report: one line per kernel label, sorted by total time, the device's idle time between
 * kernels, then the counters. */
void rt_profile_print(rt_ctx *ctx, void *file /* FILE* */);
/* The same per step of a repeated piece of work: launches and kernel ms per step over `steps`
 * steps, and each label's share of a step of step_seconds (wall time); the idle time as a last row. */
void rt_profile_print_steps(rt_ctx *ctx, void *file /* FILE* */, int64_t steps, double step_seconds);
/* Zeroes every label's launches and time (to profile from a point on, e.g. after a warm-up). */
void rt_profile_reset(rt_ctx *ctx);

/* ---- device buffers (the only place that creates, reads, writes or copies them) ---- */
/* A new buffer, refused with ATTAMBA_ERR_OUT_OF_MEMORY beyond the device's largest allocation or
 * its memory; counted in the context's memory until rt_buffer_release. */
attamba_status rt_buffer_create(rt_ctx *ctx, size_t bytes, cl_mem *out);
void rt_buffer_release(rt_ctx *ctx, cl_mem mem, size_t bytes);
/* Blocking write (the host memory may be reused on return) and blocking read. */
attamba_status rt_buffer_write(rt_ctx *ctx, cl_mem mem, size_t offset, size_t bytes, const void *host);
attamba_status rt_buffer_read(rt_ctx *ctx, cl_mem mem, size_t offset, size_t bytes, void *host);
attamba_status rt_buffer_copy(rt_ctx *ctx, cl_mem src, size_t src_offset, cl_mem dst, size_t dst_offset,
                              size_t bytes);

/* The scratch pool: device buffers released by tensor_scratch views wait here, on the device,
 * for the next request that fits, so a call repeated at a size already seen creates no buffer.
 * Reuse right after release is safe because every command goes through one in-order queue. */
typedef struct rt_pooled {
    cl_mem mem;
    size_t bytes;
    int busy;
} rt_pooled;
/* A buffer of at least `bytes`: a free pooled one (the smallest that fits), else a new one. */
attamba_status rt_pool_acquire(rt_ctx *ctx, size_t bytes, cl_mem *mem, size_t *capacity);
void rt_pool_release(rt_ctx *ctx, cl_mem mem);
void rt_pool_destroy(rt_ctx *ctx);
/* Releases the pool's idle buffers. */
void rt_pool_trim(rt_ctx *ctx);

#endif
