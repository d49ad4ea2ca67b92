/* Program builds: in-memory table, then prebuilt binaries, then the on-disk cache, then source. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "rt.h"

static rt_program *find_program(rt_ctx *ctx, const char *name, const char *options) {
    for (int i = 0; i < ctx->n_programs; i++)
        if (!strcmp(ctx->programs[i].name, name) && !strcmp(ctx->programs[i].options, options))
            return &ctx->programs[i];
    return NULL;
}

static attamba_status add_program(rt_ctx *ctx, const char *name, const char *options, cl_program prog,
                                  rt_program **out) {
    if (ctx->n_programs == ctx->cap_programs) {
        int cap = ctx->cap_programs ? 2 * ctx->cap_programs : 16;
        rt_program *grown = realloc(ctx->programs, (size_t)cap * sizeof *grown);
        if (!grown) {
            clReleaseProgram(prog);
            return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
        }
        ctx->programs = grown;
        ctx->cap_programs = cap;
    }
    /* Kernels hold pointers into their own arrays only, so growing the table is safe. */
    rt_program *p = &ctx->programs[ctx->n_programs];
    memset(p, 0, sizeof *p);
    p->name = strdup(name);
    p->options = strdup(options);
    p->program = prog;
    if (!p->name || !p->options) {
        free(p->name);
        free(p->options);
        clReleaseProgram(prog);
        return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    ctx->n_programs++;
    *out = p;
    return ATTAMBA_OK;
}

static char *build_log(rt_ctx *ctx, cl_program prog) {
    size_t n = 0;
    clGetProgramBuildInfo(prog, ctx->dev.device, CL_PROGRAM_BUILD_LOG, 0, NULL, &n);
    char *log = malloc(n + 1);
    if (!log) return NULL;
    log[0] = 0;
    if (n) clGetProgramBuildInfo(prog, ctx->dev.device, CL_PROGRAM_BUILD_LOG, n, log, NULL);
    log[n] = 0;
    return log;
}

/* A program from a device binary; NULL if the driver refuses it (stale or foreign binary). */
static cl_program program_from_binary(rt_ctx *ctx, const unsigned char *bin, size_t size,
                                      const char *options) {
    cl_int err, bin_status = CL_SUCCESS;
    cl_program prog = clCreateProgramWithBinary(ctx->context, 1, &ctx->dev.device, &size, &bin,
                                                &bin_status, &err);
    if (err != CL_SUCCESS || bin_status != CL_SUCCESS) {
        if (prog) clReleaseProgram(prog);
        return NULL;
    }
    if (clBuildProgram(prog, 1, &ctx->dev.device, options, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(prog);
        return NULL;
    }
    return prog;
}

static unsigned char *program_binary(rt_ctx *ctx, cl_program prog, size_t *size) {
    *size = 0;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof *size, size, NULL) != CL_SUCCESS || !*size)
        return NULL;
    unsigned char *bin = malloc(*size);
    if (bin && clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) != CL_SUCCESS) {
        free(bin);
        bin = NULL;
    }
    (void)ctx;
    return bin;
}

static unsigned char *read_file(const char *path, size_t *size) {
    FILE *f = core_fopen_regular(path);
    if (!f) return NULL;
    unsigned char *buf = NULL;
    long n;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n);
        if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        }
        *size = (size_t)n;
    }
    fclose(f);
    return buf;
}

/* Compiles sources with the full options; stores the binary in the cache under key. */
static attamba_status compile(rt_ctx *ctx, const char *label, const char *const *sources, int n_sources,
                              const char *full, rt_key key, cl_program *out) {
    cl_int err;
    cl_program prog = clCreateProgramWithSource(ctx->context, (cl_uint)n_sources, (const char **)sources, NULL, &err);
    if (err != CL_SUCCESS) return rt_check(ctx, err, "clCreateProgramWithSource");
    double t0 = core_now();
    err = clBuildProgram(prog, 1, &ctx->dev.device, full, NULL, NULL);
    if (err != CL_SUCCESS) {
        char *log = build_log(ctx, prog);
        attamba_status s = rt_fail(ctx, ATTAMBA_ERR_BUILD,
                                   "building OpenCL program '%s' for %s failed (%s) with options "
                                   "'%s'; compiler log:\n%s",
                                   label, ctx->dev.info.name, rt_cl_error_name(err), full, log ? log : "(no log)");
        free(log);
        clReleaseProgram(prog);
        return s;
    }
    core_log(CORE_LOG_INFO, "program %s: built from source in %.2f s", label, core_now() - t0);
    char *log = build_log(ctx, prog); /* warnings, for whoever asks (ATTAMBA_LOG=debug) */
    if (log && log[strspn(log, " \n\r\t")]) core_log(CORE_LOG_DEBUG, "build log of %s (%s):\n%s", label, full, log);
    if (log && strstr(log, "warning")) ctx->cache.warned++;
    free(log);
    ctx->cache.misses++;
    size_t size;
    unsigned char *b = program_binary(ctx, prog, &size);
    if (b) rt_cache_store(ctx, key, b, size);
    free(b);
    *out = prog;
    return ATTAMBA_OK;
}

static char *join(const char *const *sources, int n) {
    size_t len = 1;
    for (int i = 0; i < n; i++) len += strlen(sources[i]);
    char *all = malloc(len);
    if (all) *all = 0;
    for (int i = 0; i < n && all; i++) strcat(all, sources[i]);
    return all;
}

static attamba_status build(rt_ctx *ctx, const char *label, const char *const *sources, int n_sources,
                            const char *options, rt_program **out) {
    char *full = core_strdup_printf("%s %s", ctx->device_options, options);
    if (!full) return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    rt_key key = rt_program_key(ctx, sources, n_sources, full);
    cl_program prog = NULL;
    size_t size;
    unsigned char *bin = rt_cache_load(ctx, key, &size);
    if (bin) {
        prog = program_from_binary(ctx, bin, size, full);
        free(bin);
        if (prog) {
            ctx->cache.hits++;
            core_log(CORE_LOG_INFO, "program %s [%s]: from the cache", label, options);
        } else {
            ctx->cache.rejected++;
            core_log(CORE_LOG_WARN, "cached binary of %s refused by the driver; rebuilding", label);
        }
    }
    int cached = prog != NULL;
    attamba_status s = cached ? ATTAMBA_OK : compile(ctx, label, sources, n_sources, full, key, &prog);
    free(full);
    if (!s) s = add_program(ctx, label, options, prog, out);
    if (!s && cached) {
        (*out)->key = key;
        (*out)->cached_from = join(sources, n_sources); /* NULL only costs the rebuild below */
    }
    return s;
}

/* p's program becomes prog, in place (callers keep their rt_program pointers); its kernels belonged
 * to the old program and go with it. */
static void replace_program(rt_program *p, cl_program prog) {
    for (int k = 0; k < p->n_kernels; k++) {
        clReleaseKernel(p->kernels[k].kernel);
        free(p->kernels[k].name);
    }
    free(p->kernels);
    p->kernels = NULL;
    p->n_kernels = 0;
    clReleaseProgram(p->program);
    p->program = prog;
    free(p->cached_from);
    p->cached_from = NULL;
}

/* A binary from the cache lacks a kernel its source has (a payload of another program, or a
 * driver's stale one): delete the entry, rebuild the program from its source, go on. */
static attamba_status rebuild_stale(rt_ctx *ctx, rt_program *p, const char *kernel) {
    core_log(CORE_LOG_WARN, "cached binary of %s has no kernel %s; rebuilding", p->name, kernel);
    rt_cache_remove(ctx, p->key);
    char *full = core_strdup_printf("%s %s", ctx->device_options, p->options);
    const char *src = p->cached_from;
    cl_program prog = NULL;
    attamba_status s = full ? compile(ctx, p->name, &src, 1, full, p->key, &prog)
                            : rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    free(full);
    if (!s) replace_program(p, prog);
    return s;
}

attamba_status rt_program_from_source(rt_ctx *ctx, const char *label, const char *source,
                                      const char *options, rt_program **out) {
    if (!options) options = "";
    if ((*out = find_program(ctx, label, options))) return ATTAMBA_OK;
    return build(ctx, label, &source, 1, options, out);
}

attamba_status rt_program_from_binary_file(rt_ctx *ctx, const char *name, const char *options,
                                           const char *path, rt_program **out) {
    if (!options) options = "";
    size_t size = 0;
    unsigned char *bin = read_file(path, &size);
    if (!bin) return rt_fail(ctx, ATTAMBA_ERR_IO, "cannot read program binary %s", path);
    char *full = core_strdup_printf("%s %s", ctx->device_options, options);
    cl_program prog = full ? program_from_binary(ctx, bin, size, full) : NULL;
    free(full);
    free(bin);
    if (!prog)
        return rt_fail(ctx, ATTAMBA_ERR_FORMAT,
                       "program binary %s is not a valid binary for %s (%s)", path, ctx->dev.info.name,
                       ctx->dev.info.driver_version);
    rt_program *old = find_program(ctx, name, options);
    if (old) {
        replace_program(old, prog);
        *out = old;
        return ATTAMBA_OK;
    }
    return add_program(ctx, name, options, prog, out);
}

attamba_status rt_program_save_binary(rt_ctx *ctx, rt_program *p, const char *path) {
    size_t size;
    unsigned char *bin = program_binary(ctx, p->program, &size);
    if (!bin) return rt_fail(ctx, ATTAMBA_ERR_OPENCL, "the driver gave no binary for program %s", p->name);
    char *tmp = core_strdup_printf("%s.tmp", path);
    FILE *f = tmp ? fopen(tmp, "wb") : NULL;
    int ok = f && fwrite(bin, 1, size, f) == size;
    if (f) ok = (fclose(f) == 0) && ok;
    ok = ok && rename(tmp, path) == 0;
    if (!ok && tmp) remove(tmp);
    free(tmp);
    free(bin);
    return ok ? ATTAMBA_OK : rt_fail(ctx, ATTAMBA_ERR_IO, "cannot write program binary %s", path);
}

char *rt_bundle_file(const char *dir, const char *name, const char *options) {
    if (!options || !*options) return core_strdup_printf("%s/%s.bin", dir, name);
    return core_strdup_printf("%s/%s@%016llx.bin", dir, name, (unsigned long long)XXH64(options, strlen(options), 0));
}

/* The sources of program name (its own, src), as the compiler gets them: common.cl first, then dot.cl
 * for the programs that read weights (scripts/portability.py joins them alike). */
static int program_sources(const char *name, const char *src, const char *sources[3]) {
    int n = 0;
    const char *common = rt_embedded_source("common"), *dot = rt_embedded_source("dot");
    if (common && strcmp(name, "common")) sources[n++] = common;
    if (dot && (!strcmp(name, "gemm") || !strcmp(name, "ssm"))) sources[n++] = dot;
    sources[n++] = src;
    return n;
}

attamba_status rt_program_get(rt_ctx *ctx, const char *name, const char *options, rt_program **out) {
    if (!options) options = "";
    if ((*out = find_program(ctx, name, options))) return ATTAMBA_OK;
    const char *src = rt_embedded_source(name);
    if (!src) return rt_fail(ctx, ATTAMBA_ERR_INTERNAL, "no embedded OpenCL source named '%s'", name);
    if (ctx->program_dir) {
        /* prebuilt binaries (the FPGA flow, `attamba compile` bundles): one file per variant */
        char *path = rt_bundle_file(ctx->program_dir, name, options);
        FILE *f = path ? core_fopen_regular(path) : NULL;
        if (f) {
            fclose(f);
            attamba_status s = rt_program_from_binary_file(ctx, name, options, path, out);
            free(path);
            if (s == ATTAMBA_OK) {
                ctx->cache.prebuilt++;
                core_log(CORE_LOG_INFO, "program %s [%s]: from the bundle", name, options);
            }
            return s;
        }
        free(path);
    }
    const char *sources[3];
    int n_sources = program_sources(name, src, sources);
    attamba_status s = build(ctx, name, sources, n_sources, options, out);
    if (s == ATTAMBA_ERR_BUILD) {
        char what[160];
        snprintf(what, sizeof what, "building %s", name);
        rt_kernel_failed(ctx, s, what);
    }
    if (s && ctx->program_dir) /* the variant a bundle lacks, named, when it cannot be built here either */
        rt_fail(ctx, s, "program %s with options '%s' is not in the prebuilt bundle %s (make one with `attamba "
                "compile` for this model and device), and building it here failed: %.600s",
                name, options, ctx->program_dir, ctx->err);
    return s;
}

attamba_status rt_kernel_get(rt_ctx *ctx, rt_program *p, const char *kernel, cl_kernel *out) {
    for (int i = 0; i < p->n_kernels; i++)
        if (!strcmp(p->kernels[i].name, kernel)) {
            *out = p->kernels[i].kernel;
            return ATTAMBA_OK;
        }
    cl_int err;
    cl_kernel k = clCreateKernel(p->program, kernel, &err);
    if (err != CL_SUCCESS && p->cached_from && rebuild_stale(ctx, p, kernel) == ATTAMBA_OK)
        k = clCreateKernel(p->program, kernel, &err);
    if (err != CL_SUCCESS)
        return rt_fail(ctx, ATTAMBA_ERR_OPENCL, "kernel '%s' of program '%s': %s", kernel, p->name,
                       rt_cl_error_name(err));
    rt_kernel_entry *grown = realloc(p->kernels, (size_t)(p->n_kernels + 1) * sizeof *grown);
    char *name = strdup(kernel);
    if (!grown || !name) {
        free(name);
        if (grown) p->kernels = grown;
        clReleaseKernel(k);
        return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "out of host memory");
    }
    p->kernels = grown;
    p->kernels[p->n_kernels].name = name;
    p->kernels[p->n_kernels].kernel = k;
    p->n_kernels++;
    *out = k;
    return ATTAMBA_OK;
}

attamba_status rt_kernel(rt_ctx *ctx, const char *program, const char *options, const char *kernel,
                         cl_kernel *out) {
    rt_program *p;
    RT_TRY(rt_program_get(ctx, program, options, &p));
    return rt_kernel_get(ctx, p, kernel, out);
}
