/* Runtime: device listing and selection, program builds, the binary cache, prebuilt binaries,
 * out-of-memory as a status, profiling. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

START_TEST(devices_are_listed_with_sane_properties) {
    attamba_device_info *d;
    int n;
    char err[512];
    ck_assert_int_eq(attamba_devices_list(&d, &n, err, sizeof err), ATTAMBA_OK);
    ck_assert_int_ge(n, 1);
    for (int i = 0; i < n; i++) {
        ck_assert(strlen(d[i].name) > 0);
        ck_assert(strlen(d[i].platform_name) > 0);
        ck_assert_uint_ge(d[i].compute_units, 1);
        ck_assert(d[i].global_mem_bytes > 0 && d[i].max_alloc_bytes > 0);
        ck_assert_uint_ge(d[i].max_work_group_size, 1);
        ck_assert(strncmp(d[i].opencl_c_version, "OpenCL C ", 9) == 0);
    }
    free(d);
}
END_TEST

START_TEST(default_selection_prefers_gpu_then_accelerator_then_cpu) {
    rt_device devs[] = {tu_fake_device(0, 0, ATTAMBA_DEVICE_CPU), tu_fake_device(1, 0, ATTAMBA_DEVICE_ACCELERATOR),
                        tu_fake_device(1, 1, ATTAMBA_DEVICE_GPU)};
    int i = -1;
    ck_assert_int_eq(rt_device_select(devs, 3, NULL, &i, NULL, 0), ATTAMBA_OK);
    ck_assert_int_eq(i, 2);
    ck_assert_int_eq(rt_device_select(devs, 2, "", &i, NULL, 0), ATTAMBA_OK);
    ck_assert_int_eq(i, 1);
    ck_assert_int_eq(rt_device_select(devs, 1, NULL, &i, NULL, 0), ATTAMBA_OK);
    ck_assert_int_eq(i, 0);
}
END_TEST

START_TEST(selection_by_type_and_index) {
    rt_device devs[] = {tu_fake_device(0, 0, ATTAMBA_DEVICE_CPU), tu_fake_device(0, 1, ATTAMBA_DEVICE_CPU), tu_fake_device(2, 0, ATTAMBA_DEVICE_GPU)};
    int i = -1;
    ck_assert_int_eq(rt_device_select(devs, 3, "cpu", &i, NULL, 0), ATTAMBA_OK);
    ck_assert_int_eq(i, 0);
    ck_assert_int_eq(rt_device_select(devs, 3, "gpu", &i, NULL, 0), ATTAMBA_OK);
    ck_assert_int_eq(i, 2);
    ck_assert_int_eq(rt_device_select(devs, 3, "0:1", &i, NULL, 0), ATTAMBA_OK);
    ck_assert_int_eq(i, 1);
    ck_assert_int_eq(rt_device_select(devs, 3, "2:0", &i, NULL, 0), ATTAMBA_OK);
    ck_assert_int_eq(i, 2);
    char err[256] = "";
    ck_assert_int_eq(rt_device_select(devs, 3, "accelerator", &i, err, sizeof err), ATTAMBA_ERR_NO_DEVICE);
    ck_assert_ptr_nonnull(strstr(err, "accelerator"));
    ck_assert_int_eq(rt_device_select(devs, 3, "1:0", &i, err, sizeof err), ATTAMBA_ERR_NO_DEVICE);
    ck_assert_ptr_nonnull(strstr(err, "1:0"));
    ck_assert_int_eq(rt_device_select(devs, 3, "0:7", &i, err, sizeof err), ATTAMBA_ERR_NO_DEVICE);
    ck_assert_int_eq(rt_device_select(devs, 0, NULL, &i, err, sizeof err), ATTAMBA_ERR_NO_DEVICE);
}
END_TEST

START_TEST(malformed_device_strings_are_refused) {
    rt_device devs[] = {tu_fake_device(0, 0, ATTAMBA_DEVICE_CPU)};
    const char *bad[] = {"abc", "0", "0:", ":0", "0:x", "-1:0", "0:-1", "1:2:3", "0:0 ", " 0:0", "GPU", "0x0:0",
                         "99999999:0"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        char err[256] = "";
        int i = -1;
        ck_assert_msg(rt_device_select(devs, 1, bad[k], &i, err, sizeof err) == ATTAMBA_ERR_INVALID_ARG,
                      "'%s' was accepted", bad[k]);
        ck_assert_msg(strstr(err, "P:D") != NULL, "message for '%s' does not explain the syntax: %s", bad[k], err);
    }
}
END_TEST

START_TEST(context_create_reports_bad_device_strings) {
    attamba_context *ctx = (attamba_context *)1;
    char err[256] = "";
    ck_assert_int_eq(attamba_context_create("nonsense", &ctx, err, sizeof err), ATTAMBA_ERR_INVALID_ARG);
    ck_assert_ptr_null(ctx);
    ck_assert_ptr_nonnull(strstr(err, "nonsense"));
    ck_assert_int_eq(attamba_context_create("57:3", &ctx, err, sizeof err), ATTAMBA_ERR_NO_DEVICE);
    ck_assert_ptr_null(ctx);
}
END_TEST

START_TEST(syntax_error_returns_the_compiler_log) {
    rt_ctx *ctx = tu_ctx();
    rt_program *p = NULL;
    const char *src = "__kernel void broken(__global float *x) { x[0] = undeclared_thing + ; }\n";
    ck_assert_int_eq(rt_program_from_source(ctx, "broken", src, "", &p), ATTAMBA_ERR_BUILD);
    ck_assert_ptr_nonnull(strstr(ctx->err, "broken"));
    ck_assert_ptr_nonnull(strstr(ctx->err, "compiler log"));
    ck_assert_msg(strstr(ctx->err, "error") != NULL, "no compiler error text in: %s", ctx->err);
}
END_TEST

/* A fresh temporary cache directory for one context. */
static char *temp_dir(void) {
    char tmpl[] = "/tmp/attamba-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    ck_assert_ptr_nonnull(d);
    return strdup(d);
}

static rt_ctx *ctx_with_cache(const char *dir) {
    setenv("ATTAMBA_CACHE_DIR", dir, 1);
    rt_ctx *ctx;
    char err[512];
    ck_assert_int_eq(attamba_context_create(NULL, &ctx, err, sizeof err), ATTAMBA_OK);
    return ctx;
}

static const char *cache_src = "__kernel void twice(__global float *x) { x[get_global_id(0)] *= 2.0f; }\n";

START_TEST(second_build_hits_the_binary_cache) {
    char *dir = temp_dir();
    rt_program *p;
    rt_ctx *a = ctx_with_cache(dir);
    ck_assert_int_eq(rt_program_from_source(a, "twice", cache_src, "", &p), ATTAMBA_OK);
    ck_assert_uint_eq(a->cache.misses, 1);
    ck_assert_uint_eq(a->cache.hits, 0);
    attamba_context_destroy(a);
    rt_ctx *b = ctx_with_cache(dir);
    ck_assert_int_eq(rt_program_from_source(b, "twice", cache_src, "", &p), ATTAMBA_OK);
    ck_assert_uint_eq(b->cache.hits, 1);
    ck_assert_uint_eq(b->cache.misses, 0);
    /* other options are another program */
    ck_assert_int_eq(rt_program_from_source(b, "twice", cache_src, "-DUNUSED=1", &p), ATTAMBA_OK);
    ck_assert_uint_eq(b->cache.misses, 1);
    attamba_context_destroy(b);
    free(dir);
}
END_TEST

/* Finding 9 of the hardening campaign: an entry whose header is consistent but whose payload is
 * another program's binary must not poison later runs: the missing kernel marks it stale, and it is
 * deleted and rebuilt. */
START_TEST(finding_9_a_poisoned_cache_entry_is_rebuilt) {
    static const char *other_src = "__kernel void thrice(__global float *x) { x[get_global_id(0)] *= 3.0f; }\n";
    char *dir = temp_dir();
    rt_program *p, *q;
    rt_ctx *a = ctx_with_cache(dir);
    ck_assert_int_eq(rt_program_from_source(a, "twice", cache_src, "", &p), ATTAMBA_OK);
    ck_assert_int_eq(rt_program_from_source(a, "thrice", other_src, "", &q), ATTAMBA_OK);
    /* thrice's binary under twice's key, with a header that matches */
    char *full = core_strdup_printf("%s %s", a->device_options, "");
    rt_key key = rt_program_key(a, &cache_src, 1, full);
    size_t size = 0;
    ck_assert_int_eq(clGetProgramInfo(q->program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL), CL_SUCCESS);
    unsigned char *bin = malloc(size);
    ck_assert_int_eq(clGetProgramInfo(q->program, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL), CL_SUCCESS);
    rt_cache_store(a, key, bin, size);
    attamba_context_destroy(a);
    rt_ctx *b = ctx_with_cache(dir);
    cl_kernel k;
    ck_assert_int_eq(rt_program_from_source(b, "twice", cache_src, "", &p), ATTAMBA_OK);
    ck_assert_uint_eq(b->cache.hits, 1); /* the poisoned entry loads ... */
    ck_assert_int_eq(rt_kernel_get(b, p, "twice", &k), ATTAMBA_OK); /* ... and is replaced */
    ck_assert_uint_eq(b->cache.rejected, 1);
    ck_assert_uint_eq(b->cache.misses, 1);
    attamba_context_destroy(b);
    rt_ctx *c = ctx_with_cache(dir); /* the rebuilt entry is good */
    ck_assert_int_eq(rt_program_from_source(c, "twice", cache_src, "", &p), ATTAMBA_OK);
    ck_assert_int_eq(rt_kernel_get(c, p, "twice", &k), ATTAMBA_OK);
    ck_assert_uint_eq(c->cache.rejected, 0);
    attamba_context_destroy(c);
    free(bin);
    free(full);
    free(dir);
}
END_TEST

START_TEST(corrupt_cache_entry_is_rebuilt) {
    char *dir = temp_dir();
    rt_program *p;
    rt_ctx *a = ctx_with_cache(dir);
    ck_assert_int_eq(rt_program_from_source(a, "twice", cache_src, "", &p), ATTAMBA_OK);
    attamba_context_destroy(a);
    /* flip bytes in the middle of every entry */
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "for f in %s/*.bin; do printf 'garbage' | dd of=$f bs=1 seek=60 conv=notrunc 2>/dev/null; done", dir);
    ck_assert_int_eq(system(cmd), 0);
    rt_ctx *b = ctx_with_cache(dir);
    ck_assert_int_eq(rt_program_from_source(b, "twice", cache_src, "", &p), ATTAMBA_OK);
    ck_assert_uint_eq(b->cache.rejected, 1);
    ck_assert_uint_eq(b->cache.misses, 1);
    attamba_context_destroy(b);
    /* the rebuilt entry is good again; a truncated one is rejected too */
    rt_ctx *c = ctx_with_cache(dir);
    ck_assert_int_eq(rt_program_from_source(c, "twice", cache_src, "", &p), ATTAMBA_OK);
    ck_assert_uint_eq(c->cache.hits, 1);
    attamba_context_destroy(c);
    snprintf(cmd, sizeof cmd, "for f in %s/*.bin; do truncate -s 50 $f; done", dir);
    ck_assert_int_eq(system(cmd), 0);
    rt_ctx *d = ctx_with_cache(dir);
    ck_assert_int_eq(rt_program_from_source(d, "twice", cache_src, "", &p), ATTAMBA_OK);
    ck_assert_uint_eq(d->cache.rejected, 1);
    attamba_context_destroy(d);
    free(dir);
}
END_TEST

START_TEST(prebuilt_binary_is_loaded_and_runs) {
    rt_ctx *ctx = tu_ctx();
    char *dir = temp_dir();
    rt_program *p;
    ck_assert_int_eq(rt_program_get(ctx, "elementwise", "", &p), ATTAMBA_OK);
    char path[512];
    snprintf(path, sizeof path, "%s/elementwise.bin", dir);
    tu_ok(rt_program_save_binary(ctx, p, path));

    setenv("ATTAMBA_PROGRAM_DIR", dir, 1);
    rt_ctx *b;
    char err[512];
    ck_assert_int_eq(attamba_context_create(NULL, &b, err, sizeof err), ATTAMBA_OK);
    unsetenv("ATTAMBA_PROGRAM_DIR");
    tensor x, y;
    float h[5] = {1, 2, 3, 4, 5}, out[5];
    ck_assert_int_eq(tensor_alloc_f32(b, &x, 1, ((int64_t[]){5})), ATTAMBA_OK);
    ck_assert_int_eq(tensor_alloc_f32(b, &y, 1, ((int64_t[]){5})), ATTAMBA_OK);
    ck_assert_int_eq(tensor_upload(&x, h), ATTAMBA_OK);
    ck_assert_int_eq(ops_add(b, &x, &x, &y), ATTAMBA_OK);
    ck_assert_int_eq(tensor_download(&y, out), ATTAMBA_OK);
    ck_assert_uint_eq(b->cache.prebuilt, 1);
    for (int i = 0; i < 5; i++) ck_assert_float_eq(out[i], 2 * h[i]);
    tensor_free(&x);
    tensor_free(&y);
    attamba_context_destroy(b);

    /* a file that is not a binary is refused with a message */
    FILE *f = fopen(path, "wb");
    fputs("not a binary", f);
    fclose(f);
    ck_assert_int_eq(rt_program_from_binary_file(ctx, "junk", "", path, &p), ATTAMBA_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(ctx->err, path));
    free(dir);
}
END_TEST

START_TEST(device_out_of_memory_is_a_status) {
    rt_ctx *ctx = tu_ctx();
    tensor t;
    /* Where the largest allocation holds more floats than kernels index with 32-bit ints (PoCL on a 24 GB
     * host: 8 GiB), the sizes below would be refused as unsupported first: the accounting is then tested
     * against smaller recorded limits (restored at the end). */
    const attamba_device_info kept = ctx->dev.info;
    if (ctx->dev.info.max_alloc_bytes / 4 + 1024 > INT32_MAX) {
        ctx->dev.info.max_alloc_bytes = (uint64_t)256 << 20;
        ctx->dev.info.global_mem_bytes = (uint64_t)1 << 30;
    }
    int64_t too_big = (int64_t)(ctx->dev.info.max_alloc_bytes / 4) + 1024;
    ck_assert_int_eq(tensor_alloc_f32(ctx, &t, 1, &too_big), ATTAMBA_ERR_OUT_OF_MEMORY);
    ck_assert_ptr_nonnull(strstr(ctx->err, "out of memory"));
    ck_assert_ptr_null(t.buf);
    /* allocations that together exceed the device's memory fail cleanly, leaving the rest usable */
    int64_t chunk = (int64_t)(ctx->dev.info.max_alloc_bytes / 4);
    int cap = (int)(ctx->dev.info.global_mem_bytes / ctx->dev.info.max_alloc_bytes) + 2;
    tensor *ts = calloc((size_t)cap, sizeof *ts);
    int n = 0;
    attamba_status s = ATTAMBA_OK;
    while (n < cap && (s = tensor_alloc_f32(ctx, &ts[n], 1, &chunk)) == ATTAMBA_OK) n++;
    ck_assert_int_eq(s, ATTAMBA_ERR_OUT_OF_MEMORY);
    for (int i = 0; i < n; i++) tensor_free(&ts[i]);
    free(ts);
    uint64_t cur;
    attamba_context_memory(ctx, &cur, NULL);
    ck_assert_uint_eq(cur, 0);
    ck_assert_int_eq(tensor_alloc_f32(ctx, &t, 1, ((int64_t[]){16})), ATTAMBA_OK);
    tensor_free(&t);
    ctx->dev.info = kept;
}
END_TEST

START_TEST(profiling_records_kernel_times) {
    setenv("ATTAMBA_PROFILE", "1", 1);
    rt_ctx *ctx;
    char err[512];
    ck_assert_int_eq(attamba_context_create(NULL, &ctx, err, sizeof err), ATTAMBA_OK);
    unsetenv("ATTAMBA_PROFILE");
    tensor x;
    ck_assert_int_eq(tensor_alloc_f32(ctx, &x, 1, ((int64_t[]){1000})), ATTAMBA_OK);
    ck_assert_int_eq(tensor_fill(&x, 1.0), ATTAMBA_OK);
    ck_assert_int_eq(ops_scale(ctx, &x, 3.0f, &x), ATTAMBA_OK);
    ck_assert_int_eq(ops_scale(ctx, &x, 3.0f, &x), ATTAMBA_OK);
    /* the launches did not wait for their kernels: their times are read when the profile is */
    ck_assert_int_ge(ctx->n_pending, 2);
    const attamba_profile_entry *e;
    int n, found = 0;
    ck_assert(attamba_context_profile(ctx, &e, &n));
    ck_assert_int_eq(ctx->n_pending, 0);
    for (int i = 0; i < n; i++)
        if (!strcmp(e[i].name, "scale_f32")) {
            found = 1;
            ck_assert_uint_eq(e[i].launches, 2);
            ck_assert(e[i].seconds >= 0);
        }
    ck_assert(found);
    /* more launches than are kept in flight: the older half is read as they come, none is lost; a
     * reset drops what ran before it */
    attamba_context_profile_reset(ctx);
    for (int i = 0; i < RT_PROFILE_PENDING + 45; i++) {
        ck_assert_int_eq(ops_scale(ctx, &x, 1.0f, &x), ATTAMBA_OK);
        ck_assert_int_le(ctx->n_pending, RT_PROFILE_PENDING);
    }
    float host[1000];
    ck_assert_int_eq(tensor_download(&x, host), ATTAMBA_OK); /* a host wait reads them all */
    ck_assert_int_eq(ctx->n_pending, 0);
    ck_assert(attamba_context_profile(ctx, &e, &n));
    for (int i = 0; i < n; i++)
        ck_assert_uint_eq(e[i].launches, !strcmp(e[i].name, "scale_f32") ? RT_PROFILE_PENDING + 45 : 0);
    ck_assert(rt_profile_idle(ctx) >= 0 && ctx->prof_gaps <= RT_PROFILE_PENDING + 44);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    attamba_context_profile_print(ctx, f, 0, 0);
    fclose(f);
    ck_assert_msg(strstr(text, "scale_f32") && strstr(text, "idle before") && strstr(text, "counters:"), "%s", text);
    free(text);
    f = open_memstream(&text, &len); /* per step: RT_PROFILE_PENDING + 45 launches over 3 steps */
    attamba_context_profile_print(ctx, f, 3, 1.0);
    fclose(f);
    ck_assert_msg(strstr(text, "launches/step") && strstr(text, "100.3"), "%s", text);
    free(text);
    ops_scale(ctx, &x, 3.0f, &x); /* in flight when the context goes: its event is released */
    tensor_free(&x);
    attamba_context_destroy(ctx);
}
END_TEST

int main(void) {
    Suite *s = suite_create("runtime");
    TCase *t = tcase_create("devices");
    tcase_add_test(t, devices_are_listed_with_sane_properties);
    tcase_add_test(t, default_selection_prefers_gpu_then_accelerator_then_cpu);
    tcase_add_test(t, selection_by_type_and_index);
    tcase_add_test(t, malformed_device_strings_are_refused);
    tcase_add_test(t, context_create_reports_bad_device_strings);
    suite_add_tcase(s, t);
    t = tcase_create("programs");
    tcase_add_test(t, syntax_error_returns_the_compiler_log);
    tcase_add_test(t, second_build_hits_the_binary_cache);
    tcase_add_test(t, corrupt_cache_entry_is_rebuilt);
    tcase_add_test(t, finding_9_a_poisoned_cache_entry_is_rebuilt);
    tcase_add_test(t, prebuilt_binary_is_loaded_and_runs);
    tcase_add_test(t, profiling_records_kernel_times);
    suite_add_tcase(s, t);
    t = tcase_create("memory");
    tcase_add_test(t, device_out_of_memory_is_a_status);
    suite_add_tcase(s, t);
    return tu_run(s);
}
