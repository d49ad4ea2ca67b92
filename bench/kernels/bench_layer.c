/* attamba bench layer: the small ops of one layer (RMSNorm, gated RMSNorm, RoPE, SwiGLU, embedding,
 * bias add) on a d=512 model's activations ([4096, 512] by default), each in ms and GB/s of the
 * bytes it must move, against the device's copy bandwidth measured in the same run (tensor_copy
 * of a large tensor). These ops are memory-bound, so the ratio to copy is the figure of merit. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "cli.h"
#include "ops/layer.h"

enum { OP_COPY, OP_RMSNORM, OP_GATED, OP_ROPE, OP_SWIGLU, OP_EMBEDDING, OP_BIAS, N_OPS };
static const char *const op_names[N_OPS] = {"copy", "rmsnorm", "gated_rmsnorm", "rope", "swiglu", "embedding",
                                            "add_bias"};

typedef struct {
    rt_ctx *ctx;
    int op, heads;
    tensor x, z, w, out, out3, rope_x, pos0, ids, table, big_src, big_dst;
} layer_run;

static int run_op(void *p) {
    layer_run *r = p;
    attamba_status s = ATTAMBA_OK;
    switch (r->op) {
    case OP_COPY: s = tensor_copy(&r->big_dst, &r->big_src); break;
    case OP_RMSNORM: s = ops_rmsnorm(r->ctx, &r->x, &r->w, 1e-5f, &r->out); break;
    case OP_GATED: s = ops_gated_rmsnorm(r->ctx, &r->x, &r->z, &r->w, 1e-5f, &r->out); break;
    case OP_ROPE: s = ops_rope(r->ctx, &r->rope_x, r->heads, &r->pos0, 10000.0f); break;
    case OP_SWIGLU: s = ops_swiglu(r->ctx, &r->x, &r->z, &r->out); break;
    case OP_EMBEDDING: s = ops_embedding(r->ctx, &r->ids, &r->table, &r->out3); break;
    default: s = ops_add_bias(r->ctx, &r->x, &r->w, &r->out); break;
    }
    if (s) return 1;
    return rt_finish(r->ctx) != ATTAMBA_OK;
}

static void usage(FILE *f) {
    fprintf(f, "usage: attamba bench layer [--device P:D] [--rows N] [--width C] [--heads H] [--vocab V]\n"
               "                           [--copy-mib M] [--seconds S] [--json FILE|-]\n\n"
               "Times each layer op on [rows, width] f32 activations (default 4096 x 512; RoPE with H heads\n"
               "of width/H, default 8; the embedding gathers rows from a [V, width] table, default V 32000)\n"
               "and reports GB/s against tensor_copy of an M MiB tensor (default 128) in the same run.\n");
}

/* Bytes an op must move at least: each input read once, each output written once. */
static double op_bytes(int op, double n, double rows, double width, double copy_bytes) {
    switch (op) {
    case OP_COPY: return 2 * copy_bytes;
    case OP_RMSNORM: return 4 * (2 * n + width);
    case OP_GATED: return 4 * (3 * n + width);
    case OP_ROPE: return 4 * (2 * n) + 4;
    case OP_SWIGLU: return 4 * (3 * n);
    case OP_EMBEDDING: return 4 * (2 * n + rows);
    default: return 4 * (2 * n + width);
    }
}

int bench_layer_main(int argc, char **argv) {
    static const struct option opts[] = {
        {"device", required_argument, 0, 'd'}, {"rows", required_argument, 0, 'r'},
        {"width", required_argument, 0, 'c'},  {"heads", required_argument, 0, 'H'},
        {"vocab", required_argument, 0, 'v'},  {"copy-mib", required_argument, 0, 'm'},
        {"seconds", required_argument, 0, 't'}, {"json", required_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    const char *device = NULL, *json = NULL;
    int rows = 4096, width = 512, heads = 8, vocab = 32000, copy_mib = 128;
    double seconds = 0.5;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:r:c:H:v:m:t:j:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': device = optarg; break;
        case 'r': rows = atoi(optarg); break;
        case 'c': width = atoi(optarg); break;
        case 'H': heads = atoi(optarg); break;
        case 'v': vocab = atoi(optarg); break;
        case 'm': copy_mib = atoi(optarg); break;
        case 't': seconds = atof(optarg); break;
        case 'j': json = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (rows < 1 || width < 1 || heads < 1 || vocab < 1 || copy_mib < 1 || width % heads ||
        (width / heads) % 2)
        return cli_error("bench layer", "need rows, width, heads, vocab, copy-mib >= 1 and width = heads * "
                                        "an even dh");
    rt_ctx *ctx = cli_open_device(device);
    if (!ctx) return 1;
    printf("device: %s (%s)\n", ctx->dev.info.name, ctx->dev.info.platform_name);

    layer_run r = {.ctx = ctx, .heads = heads};
    int64_t n = (int64_t)rows * width, C = width, big = (int64_t)copy_mib << 18; /* floats in M MiB */
    int64_t shape[2] = {rows, width}, rope_shape[3] = {1, rows, width}, ids_shape[2] = {1, rows}, one = 1;
    float *hx = malloc((size_t)n * sizeof *hx), *hz = malloc((size_t)n * sizeof *hz);
    float *hw = malloc((size_t)width * sizeof *hw), *ht = malloc((size_t)vocab * width * sizeof *ht);
    int32_t *hid = malloc((size_t)rows * sizeof *hid);
    cJSON *out = cJSON_CreateArray();
    int rc = 0;
    if (!hx || !hz || !hw || !ht || !hid) {
        rc = cli_error("bench layer", "out of host memory");
        goto done;
    }
    core_rng rng;
    core_rng_seed(&rng, 1);
    for (int64_t i = 0; i < n; i++) hx[i] = 4 * core_rng_uniform(&rng) - 2;
    for (int64_t i = 0; i < n; i++) hz[i] = 4 * core_rng_uniform(&rng) - 2;
    for (int i = 0; i < width; i++) hw[i] = 0.5f + core_rng_uniform(&rng);
    for (int64_t i = 0; i < (int64_t)vocab * width; i++) ht[i] = core_rng_uniform(&rng) - 0.5f;
    for (int i = 0; i < rows; i++) hid[i] = (int32_t)(core_rng_uniform(&rng) * (float)vocab) % vocab;
    if (tensor_alloc_f32(ctx, &r.x, 2, shape) || tensor_alloc_f32(ctx, &r.z, 2, shape) ||
        tensor_alloc_f32(ctx, &r.out, 2, shape) || tensor_reshape(&r.out, 3, rope_shape, &r.out3) ||
        tensor_alloc_f32(ctx, &r.w, 1, &C) ||
        tensor_alloc_f32(ctx, &r.rope_x, 3, rope_shape) || tensor_alloc(ctx, &r.pos0, TENSOR_I32, 1, &one) ||
        tensor_alloc(ctx, &r.ids, TENSOR_I32, 2, ids_shape) ||
        tensor_alloc_f32(ctx, &r.table, 2, ((int64_t[]){vocab, width})) ||
        tensor_alloc_f32(ctx, &r.big_src, 1, &big) || tensor_alloc_f32(ctx, &r.big_dst, 1, &big) ||
        tensor_upload(&r.x, hx) || tensor_upload(&r.z, hz) || tensor_upload(&r.w, hw) ||
        tensor_upload(&r.rope_x, hx) || tensor_fill(&r.pos0, 0) || tensor_upload(&r.ids, hid) ||
        tensor_upload(&r.table, ht) || tensor_fill(&r.big_src, 1.0)) {
        rc = cli_error("bench layer", "%s", ctx->err);
        goto done;
    }

    printf("%-14s %-22s %10s %10s %9s\n", "op", "shape", "ms", "GB/s", "vs copy");
    double copy_gbs = 0;
    for (int op = 0; op < N_OPS; op++) {
        r.op = op;
        bench_timing tm;
        double t = bench_time(run_op, &r, 3, seconds, &tm);
        int failed = 0;
        attamba_counters per_run = t < 0 ? (attamba_counters){0} : bench_count(ctx, run_op, &r, &failed);
        if (t < 0 || failed) {
            rc = cli_error("bench layer", "%s failed: %s", op_names[op], ctx->err);
            break;
        }
        char desc[64];
        if (op == OP_COPY)
            snprintf(desc, sizeof desc, "[%lld]", (long long)big);
        else if (op == OP_ROPE)
            snprintf(desc, sizeof desc, "[1, %d, %dx%d]", rows, heads, width / heads);
        else if (op == OP_EMBEDDING)
            snprintf(desc, sizeof desc, "%d of [%d, %d]", rows, vocab, width);
        else
            snprintf(desc, sizeof desc, "[%d, %d]", rows, width);
        double bytes = op_bytes(op, (double)n, rows, width, 4.0 * (double)big), gbs = bytes / t * 1e-9;
        if (op == OP_COPY) copy_gbs = gbs;
        printf("%-14s %-22s %10.3f %10.1f %8.0f%%\n", op_names[op], desc, 1e3 * t, gbs, 100 * gbs / copy_gbs);
        fflush(stdout);
        cJSON *o = bench_entry(ctx, "layer", op_names[op], desc, NULL, &tm, 0, bytes);
        cJSON_AddNumberToObject(o, "rows", op == OP_COPY ? 1 : rows);
        cJSON_AddNumberToObject(o, "width", op == OP_COPY ? (double)big : width);
        cJSON_AddNumberToObject(o, "copy_gbs", copy_gbs);
        cJSON_AddNumberToObject(o, "ratio_to_copy", gbs / copy_gbs);
        bench_entry_counters(o, &per_run, 1);
        cJSON_AddItemToArray(out, o);
    }
    if (!rc && json && bench_write_json(out, json)) rc = cli_error("bench layer", "cannot write %s", json);
done:;
    tensor *all[] = {&r.x, &r.z, &r.w, &r.out, &r.out3, &r.rope_x, &r.pos0, &r.ids, &r.table, &r.big_src,
                     &r.big_dst};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tensor_free(all[i]);
    cJSON_Delete(out);
    free(hx);
    free(hz);
    free(hw);
    free(ht);
    free(hid);
    attamba_context_destroy(ctx);
    return rc;
}
