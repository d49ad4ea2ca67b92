/* attamba compile: an ahead-of-time bundle of every OpenCL program variant a model needs on a device,
 * so that later runs compile nothing (ATTAMBA_PROGRAM_DIR=DIR; the FPGA flow, and a cold start). The
 * variants depend on shapes (GEMM layouts and whether M is small, the attention head width and
 * block sizes) and on the tuning table in force, so they are found by running the model once, the
 * way generate, eval and train do (prefills of 1, 13, 100 and --max-prompt tokens, decode steps, a
 * loss, a training step), then every program the context built is written as DIR/<program>.bin or
 * DIR/<program>@<hash of its options>.bin, with DIR/bundle.json listing them. A run that needs a
 * variant the bundle lacks compiles it where it can, else fails naming it. */
#include <cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "model/kv_cache.h"
#include "ops/loss.h"
#include "train/parallel.h"

static void usage(FILE *f) {
    fprintf(f, "usage: attamba compile (--model DIR | --preset NAME) --out DIR [--device P:D] [--max-prompt N]\n"
               "                       [--train-seq T] [--weight-type f32|f16|q8]\n\n"
               "Runs the model once on the device (prefills of 1, 13, 100 and N tokens, default N 512,\n"
               "decode steps, a loss, a training step of T tokens, default 128) and writes every OpenCL\n"
               "program variant it built to DIR as binaries, with DIR/bundle.json. Then\n"
               "ATTAMBA_PROGRAM_DIR=DIR serves them: with ATTAMBA_CACHE_DIR=off, generate, eval and train\n"
               "compile nothing (ATTAMBA_LOG=info says where each program came from). Shapes outside\n"
               "these (e.g. much longer prompts) may need variants the bundle lacks. --weight-type: the\n"
               "preset with its projections stored so (a quantized model trains nothing: no training step).\n");
}

/* What generate, eval and train run, once each, and a batched decode step of 2, 4, 8 and 16 sequences
 * (attamba_session_step: the dot kernels' variants by rows per work-item). */
static attamba_status exercise(model *m, int max_prompt, int train_seq) {
    rt_ctx *ctx = m->ctx;
    static const int lengths[] = {1, 13, 100};
    int n = max_prompt + 2;
    int32_t *tok = malloc((size_t)n * sizeof *tok), *tgt = malloc((size_t)n * sizeof *tgt);
    if (!tok || !tgt) {
        free(tok), free(tgt);
        return rt_fail(ctx, ATTAMBA_ERR_OUT_OF_MEMORY, "compile: out of host memory");
    }
    for (int i = 0; i < n; i++) tok[i] = (int32_t)((i * 7919 + 13) % m->cfg.vocab_size);
    for (int i = 0; i < n; i++) tgt[i] = tok[(i + 1) % n];
    attamba_status s = ATTAMBA_OK;
    for (int li = 0; li < 4 && !s; li++) {
        int T = li < 3 ? lengths[li] : max_prompt;
        if (li < 3 && T >= max_prompt) continue;
        kv_cache *c = NULL;
        tensor last = {0}, lg = {0};
        sampler smp;
        sampler_init(&smp, 0.8f, 40, 0.95f, 1);
        int32_t next = 0;
        s = kv_cache_create(m, 1, T + 4, &c);
        if (!s) s = model_prefill_last(m, c, 0, tok, T, &last);
        if (!s) s = ops_sample(ctx, &last, &smp, &next);
        for (int d = 0; d < 2 && !s; d++) {
            s = model_decode_step(m, c, &next, &lg);
            if (!s) s = ops_sample(ctx, &lg, &smp, &next);
            tensor_free(&lg);
        }
        tensor_free(&last);
        kv_cache_destroy(c);
    }
    int32_t ids[16];
    for (int i = 0; i < 16; i++) ids[i] = i % m->cfg.vocab_size;
    for (int B = 2; B <= 16 && !s; B *= 2) {
        kv_cache *c = NULL;
        tensor lg = {0};
        s = kv_cache_create(m, B, 4, &c);
        if (!s) s = model_decode_step(m, c, ids, &lg);
        tensor_free(&lg);
        kv_cache_destroy(c);
    }
    double sum;
    int64_t count;
    if (!s) s = model_loss(m, tok, tgt, 1, max_prompt, &sum, &count);
    if (!s && train_seq > 0 && m->cfg.weights == WEIGHTS_F32) { /* quantized models do not train */
        train_hparams h;
        train_hparams_default(&h, 10);
        h.batch = 1;
        h.seq = train_seq;
        dp_trainer *g = NULL;
        double loss;
        s = dp_create(&ctx, 1, m, &h, NULL, &g);
        if (!s) s = dp_zero_grad(g);
        if (!s) s = dp_forward_backward(g, tok, tgt, 1.0f, &loss, &count);
        if (!s) s = dp_apply(g, 1, NULL, NULL);
        dp_destroy(g);
    }
    if (!s) s = rt_finish(ctx);
    free(tok);
    free(tgt);
    return s;
}

/* Every program ctx built, as binaries in dir, and dir/bundle.json. */
static int write_bundle(rt_ctx *ctx, const char *dir) {
    cJSON *o = cJSON_CreateObject(), *list = cJSON_CreateArray();
    const attamba_device_info *d = &ctx->dev.info;
    cJSON_AddStringToObject(o, "schema", "attamba-bundle");
    cJSON_AddNumberToObject(o, "version", 1);
    cJSON_AddStringToObject(o, "library", attamba_version());
    cJSON_AddStringToObject(o, "device", d->name);
    cJSON_AddStringToObject(o, "platform", d->platform_name);
    cJSON_AddStringToObject(o, "driver", d->driver_version);
    cJSON_AddItemToObject(o, "programs", list);
    int rc = 0;
    for (int i = 0; i < ctx->n_programs && !rc; i++) {
        rt_program *p = &ctx->programs[i];
        char *path = rt_bundle_file(dir, p->name, p->options);
        if (!path || rt_program_save_binary(ctx, p, path)) rc = cli_error("compile", "%s", ctx->err);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "program", p->name);
        cJSON_AddStringToObject(e, "options", p->options);
        cJSON_AddStringToObject(e, "file", path ? strrchr(path, '/') + 1 : "?");
        cJSON_AddItemToArray(list, e);
        free(path);
    }
    char *text = cJSON_Print(o), *manifest = core_strdup_printf("%s/bundle.json", dir);
    if (!rc && (!text || !manifest || core_write_file_atomic(manifest, text)))
        rc = cli_error("compile", "cannot write %s", manifest ? manifest : dir);
    free(text);
    free(manifest);
    cJSON_Delete(o);
    return rc;
}

int cli_compile(int argc, char **argv) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},      {"preset", required_argument, 0, 'p'},
                                         {"out", required_argument, 0, 'o'},        {"device", required_argument, 0, 'd'},
                                         {"max-prompt", required_argument, 0, 'T'}, {"train-seq", required_argument, 0, 's'},
                                         {"weight-type", required_argument, 0, 'w'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *model_dir = NULL, *preset = NULL, *out = NULL, *device = NULL;
    double max_prompt = 512, train_seq = 128;
    int c, wtype = WEIGHTS_F32;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:p:o:d:T:s:w:h", opts, NULL)) != -1) {
        switch (c) {
        case 'w':
            if ((wtype = model_weight_type_parse(optarg)) < 0)
                return cli_error("compile", "bad --weight-type %s (f32, f16 or q8)", optarg), 2;
            break;
        case 'm': model_dir = optarg; break;
        case 'p': preset = optarg; break;
        case 'o': out = optarg; break;
        case 'd': device = optarg; break;
        case 'T':
            if (!cli_number("compile", "max-prompt", optarg, 2, 1 << 20, 1, &max_prompt)) return 2;
            break;
        case 's':
            if (!cli_number("compile", "train-seq", optarg, 0, 1 << 16, 1, &train_seq)) return 2;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!out || !model_dir == !preset || optind < argc) {
        usage(stderr);
        return 2;
    }
    if (model_dir && wtype != WEIGHTS_F32)
        return cli_error("compile", "--weight-type is for --preset; a model's config says its own (attamba quantize)"), 2;
    if (core_mkdirs(out)) return cli_error("compile", "cannot create %s", out);
    rt_ctx *ctx = cli_open_device(device);
    if (!ctx) return 1;
    double t0 = core_now();
    model *m = NULL;
    int rc = 0;
    if (model_dir) {
        if (model_load(ctx, model_dir, &m)) rc = cli_error("compile", "%s", ctx->err);
    } else {
        model_config cfg;
        char err[300];
        if (model_config_preset(preset, &cfg, err, sizeof err)) rc = cli_error("compile", "%s", err);
        cfg.weights = (weight_type)wtype;
        if (!rc && (model_create(ctx, &cfg, &m) || model_init_random(m, 1))) rc = cli_error("compile", "%s", ctx->err);
    }
    if (!rc && exercise(m, (int)max_prompt, (int)train_seq)) rc = cli_error("compile", "%s", ctx->err);
    if (!rc) rc = write_bundle(ctx, out);
    if (!rc)
        printf("%d program variants for %s (%s) -> %s (%.1f s); run with ATTAMBA_PROGRAM_DIR=%s\n", ctx->n_programs,
               ctx->dev.info.name, ctx->dev.info.driver_version, out, core_now() - t0, out);
    model_destroy(m);
    attamba_context_destroy(ctx);
    return rc;
}
