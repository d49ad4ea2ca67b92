/* attamba compile: an ahead-of-time bundle of every OpenCL program variant a model needs on a device,
 * so that later runs compile nothing (ATTAMBA_PROGRAM_DIR=DIR; the FPGA flow, and a cold start). The
 * variants depend on shapes (GEMM layouts and whether M is small, the attention head width and
 * block sizes) and on the tuning table in force, so they are found by running the model once through
 * the public API, the way generate, eval and train do (prefills of 1, 13, 100 and --max-prompt
 * tokens, decode steps with f32 and f16 caches, batched decode steps, a loss, a training step); then
 * attamba_context_save_programs writes every program the context built as DIR/<program>.bin or
 * DIR/<program>@<hash of its options>.bin, with DIR/bundle.json listing them. A run that needs a
 * variant the bundle lacks compiles it where it can, else fails naming it. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f, "usage: attamba compile (--model DIR | --preset NAME) --out DIR [--device P:D] [--max-prompt N]\n"
               "                       [--train-seq T] [--weight-type f32|f16|q8]\n\n"
               "Runs the model once on the device (prefills of 1, 13, 100 and N tokens, default N 512,\n"
               "decode steps with f32 and f16 caches, a loss, a training step of T tokens, default 128) and\n"
               "writes every OpenCL program variant it built to DIR as binaries, with DIR/bundle.json. Then\n"
               "ATTAMBA_PROGRAM_DIR=DIR serves them: with ATTAMBA_CACHE_DIR=off, generate, eval and train\n"
               "compile nothing (ATTAMBA_LOG=info says where each program came from). Shapes outside\n"
               "these (e.g. much longer prompts) may need variants the bundle lacks. --weight-type: the\n"
               "preset with its projections stored so (a quantized model trains nothing: no training step).\n");
}

/* A prompt of T tokens, then two decode steps of sampled tokens (on the host, as generate does), with
 * the cache's stored keys and values of type cache. */
static attamba_status prompt_and_decode(attamba_model *m, attamba_sampler *smp, const int32_t *tok, int T,
                                        attamba_cache_type cache, float *logits) {
    attamba_session *sess = NULL;
    int32_t next = 0;
    int vocab = attamba_model_vocab_size(m);
    attamba_session_params p = attamba_session_params_default(T + 4);
    p.cache_type = cache;
    attamba_status s = attamba_session_create_with(m, &p, &sess);
    if (!s) s = attamba_session_feed(sess, tok, T, logits);
    if (!s) s = attamba_sampler_sample(smp, logits, vocab, &next);
    for (int d = 0; d < 2 && !s; d++) {
        s = attamba_session_feed(sess, &next, 1, logits);
        if (!s) s = attamba_sampler_sample(smp, logits, vocab, &next);
    }
    attamba_session_destroy(sess);
    return s;
}

/* One training step of one row of seq tokens, where the weights are f32 (quantized models do not
 * train). */
static attamba_status train_step(attamba_model *m, const int32_t *tok, const int32_t *tgt, int seq) {
    attamba_config *c = NULL;
    attamba_config_info info;
    attamba_status s = attamba_model_get_config(m, &c);
    if (s) return s;
    attamba_config_describe(c, &info);
    attamba_config_destroy(c);
    if (strcmp(info.weights, "f32")) return ATTAMBA_OK;
    attamba_train_params h = attamba_train_params_default(10);
    h.batch = 1;
    h.seq = seq;
    attamba_trainer *t = NULL;
    s = attamba_trainer_create(m, &h, &t);
    if (!s) s = attamba_trainer_step(t, tok, tgt, NULL);
    attamba_trainer_destroy(t);
    return s;
}

/* What generate, eval and train run, once each, and a batched decode step of 2, 4, 8 and 16 sequences
 * (attamba_session_step: the dot kernels' variants by rows per work-item). The old device sampler
 * is not among them: generate samples on the host. */
static attamba_status exercise(attamba_context *ctx, attamba_model *m, int max_prompt, int train_seq) {
    static const int lengths[] = {1, 13, 100};
    int n = max_prompt + 2, vocab = attamba_model_vocab_size(m);
    int32_t *tok = malloc((size_t)n * sizeof *tok), *tgt = malloc((size_t)n * sizeof *tgt);
    float *logits = malloc((size_t)16 * vocab * sizeof *logits);
    attamba_sampler_params sp = attamba_sampler_params_default();
    sp.temperature = 0.8f, sp.top_k = 40, sp.top_p = 0.95f, sp.seed = 1;
    attamba_sampler *smp = NULL;
    if (!tok || !tgt || !logits) {
        free(tok), free(tgt), free(logits);
        return cli_error("compile", "out of host memory"), ATTAMBA_ERR_OUT_OF_MEMORY;
    }
    for (int i = 0; i < n; i++) tok[i] = (int32_t)((i * 7919 + 13) % vocab);
    for (int i = 0; i < n; i++) tgt[i] = tok[(i + 1) % n];
    attamba_status s = attamba_sampler_create(ctx, &sp, &smp);
    for (int li = 0; li < 4 && !s; li++) {
        int T = li < 3 ? lengths[li] : max_prompt;
        if (li < 3 && T >= max_prompt) continue;
        s = prompt_and_decode(m, smp, tok, T, ATTAMBA_CACHE_F32, logits);
    }
    if (!s) s = prompt_and_decode(m, smp, tok, CLI_MIN(13, max_prompt), ATTAMBA_CACHE_F16, logits); /* its kernels */
    int32_t ids[16];
    for (int i = 0; i < 16; i++) ids[i] = i % vocab;
    for (int B = 2; B <= 16 && !s; B *= 2) {
        attamba_session *sess = NULL;
        s = attamba_session_create_batch(m, B, 4, &sess);
        if (!s) s = attamba_session_step(sess, ids, logits);
        attamba_session_destroy(sess);
    }
    double sum;
    int64_t count;
    if (!s) s = attamba_model_loss(m, tok, tgt, 1, max_prompt, &sum, &count);
    if (!s && train_seq > 0) s = train_step(m, tok, tgt, train_seq);
    if (s) cli_error("compile", "%s", attamba_context_last_error(ctx));
    attamba_sampler_destroy(smp);
    free(tok), free(tgt), free(logits);
    return s;
}

/* The model to exercise: DIR's, or the preset's with seeded random weights (stored as wtype). */
static attamba_status open_model(attamba_context *ctx, const char *model_dir, const char *preset, const char *wtype,
                                 attamba_model **m) {
    if (model_dir) {
        attamba_status s = attamba_model_load(ctx, model_dir, m);
        if (s) cli_error("compile", "%s", attamba_context_last_error(ctx));
        return s;
    }
    attamba_config *c = NULL;
    char err[512];
    attamba_status s = attamba_config_load(preset, &c, err, sizeof err);
    if (!s && wtype) s = attamba_config_set(c, "weight_type", wtype, err, sizeof err);
    if (s) {
        attamba_config_destroy(c);
        return cli_error("compile", "%s", err), s;
    }
    attamba_model_params p = attamba_model_params_default();
    p.devices = &ctx;
    p.n_devices = 1;
    s = attamba_model_create(c, &p, 1, m);
    if (s) cli_error("compile", "%s", attamba_context_last_error(ctx));
    attamba_config_destroy(c);
    return s;
}

int cli_compile(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},      {"preset", required_argument, 0, 'p'},
        {"out", required_argument, 0, 'o'},        {"device", required_argument, 0, 'd'},
        {"max-prompt", required_argument, 0, 'T'}, {"train-seq", required_argument, 0, 's'},
        {"weight-type", required_argument, 0, 'w'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *model_dir = NULL, *preset = NULL, *out = NULL, *device = NULL, *wtype = NULL;
    double max_prompt = 512, train_seq = 128;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:p:o:d:T:s:w:h", opts, NULL)) != -1) {
        switch (c) {
        case 'w':
            if (strcmp(optarg, "f32") && strcmp(optarg, "f16") && strcmp(optarg, "q8"))
                return cli_error("compile", "bad --weight-type %s (f32, f16 or q8)", optarg), 2;
            wtype = optarg;
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
    if (model_dir && wtype && strcmp(wtype, "f32"))
        return cli_error("compile", "--weight-type is for --preset; a model's config says its own (attamba quantize)"),
               2;
    attamba_context *ctx = cli_open_device(device);
    if (!ctx) return 1;
    double t0 = cli_now();
    attamba_model *m = NULL;
    int n_programs = 0, rc = open_model(ctx, model_dir, preset, model_dir ? NULL : wtype, &m) != ATTAMBA_OK;
    if (!rc) rc = exercise(ctx, m, (int)max_prompt, (int)train_seq) != ATTAMBA_OK;
    if (!rc && attamba_context_save_programs(ctx, out, &n_programs))
        rc = cli_error("compile", "%s", attamba_context_last_error(ctx));
    if (!rc) {
        const attamba_device_info *d = attamba_context_device(ctx);
        printf("%d program variants for %s (%s) -> %s (%.1f s); run with ATTAMBA_PROGRAM_DIR=%s\n", n_programs,
               d->name, d->driver_version, out, cli_now() - t0, out);
    }
    attamba_model_destroy(m);
    attamba_context_destroy(ctx);
    return rc;
}
